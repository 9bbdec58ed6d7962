package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// controllers/ exports what main.go uses of it, and nothing more: the rest
// is the package's own business, free to change.
func TestControllersExportOnlyWhatMainUses(t *testing.T) {
	exported := map[string]bool{}
	for _, file := range parseDir(t, "controllers") {
		for _, decl := range file.Decls {
			for _, name := range topLevelNames(decl) {
				if ast.IsExported(name) {
					exported[name] = true
				}
			}
		}
	}
	used := map[string]bool{}
	mainFiles := parseDir(t, ".")
	for _, file := range mainFiles {
		ast.Inspect(file, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "controllers" {
					used[sel.Sel.Name] = true
				}
			}
			return true
		})
	}
	if extra := setDifference(exported, used); len(extra) > 0 {
		t.Errorf("controllers exports what main.go does not use: %v", extra)
	}
	if missing := setDifference(used, exported); len(missing) > 0 {
		t.Errorf("main.go uses what controllers does not export: %v", missing)
	}
}

// No function of the project's code is over 60 lines (tests aside): a
// longer one is split into named steps.
func TestNoFunctionOverSixtyLines(t *testing.T) {
	const limit = 60
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "bin" || strings.HasPrefix(d.Name(), ".")) && path != "." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") ||
			strings.HasPrefix(d.Name(), "zz_generated") {
			return nil
		}
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		for _, decl := range file.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok && fn.Body != nil {
				if lines := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1; lines > limit {
					t.Errorf("%s: %s is %d lines, over %d", path, fn.Name.Name, lines, limit)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// parseDir parses the non-test Go files of one directory.
func parseDir(t *testing.T, dir string) []*ast.File {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, path := range paths {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, file)
	}
	if len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return files
}

// topLevelNames lists the names a declaration adds to its package; methods
// add none.
func topLevelNames(decl ast.Decl) []string {
	switch d := decl.(type) {
	case *ast.FuncDecl:
		if d.Recv == nil {
			return []string{d.Name.Name}
		}
	case *ast.GenDecl:
		var names []string
		for _, spec := range d.Specs {
			switch s := spec.(type) {
			case *ast.TypeSpec:
				names = append(names, s.Name.Name)
			case *ast.ValueSpec:
				for _, n := range s.Names {
					names = append(names, n.Name)
				}
			}
		}
		return names
	}
	return nil
}

func setDifference(a, b map[string]bool) []string {
	var out []string
	for k := range a {
		if !b[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
