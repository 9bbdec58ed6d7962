package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The version the Makefile stamps with -ldflags is what --version prints,
// and what tags the default cleanup image.
func TestVersionIsStampedByTheLinker(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "sessionstore-operator")
	build := exec.Command("go", "build", "-ldflags",
		"-X github.com/sessionstore/sessionstore-operator/internal/version.Version=v9.8.7-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("--version: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != "v9.8.7-test" {
		t.Fatalf("--version printed %q, want v9.8.7-test", got)
	}
	help, _ := exec.Command(bin, "--help").CombinedOutput()
	if !strings.Contains(string(help), "sessionstore-operator:v9.8.7-test") {
		t.Errorf("the default --cleanup-image is not tagged by the version:\n%s", help)
	}
}
