package main

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// An image built from a binary runs it as its entrypoint, as 65532:65532,
// for linux/amd64, with the labels asked for, the CA bundle and a nonroot
// home, as the Dockerfile's distroless image has.
func TestImageIsTheDockerfilesEquivalent(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "operator")
	ca := filepath.Join(dir, "ca.crt")
	must(t, os.WriteFile(bin, []byte("\x7fELF fake binary"), 0o755))
	must(t, os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644))
	out := filepath.Join(dir, "image.tar")
	o := options{binary: bin, entrypoint: "/sessionstore-operator", caFile: ca, tag: "example.com/op:v1.2.3",
		out: out, user: "65532:65532", labels: labelFlags{"org.opencontainers.image.version": "v1.2.3"}}
	must(t, build(o))

	tag, _ := name.NewTag("example.com/op:v1.2.3")
	img, err := tarball.ImageFromPath(out, &tag)
	must(t, err)
	cfg, err := img.ConfigFile()
	must(t, err)
	if cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("platform %s/%s, want linux/amd64 (ctr import --platform needs it)", cfg.OS, cfg.Architecture)
	}
	if cfg.Config.User != "65532:65532" || len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/sessionstore-operator" {
		t.Errorf("user %q entrypoint %q", cfg.Config.User, cfg.Config.Entrypoint)
	}
	if cfg.Config.Labels["org.opencontainers.image.version"] != "v1.2.3" {
		t.Errorf("labels %v", cfg.Config.Labels)
	}
	files := layerFiles(t, img)
	want := map[string]struct {
		mode     int64
		uid, gid int
	}{
		"sessionstore-operator":             {0o755, 0, 0},
		"etc/ssl/certs/ca-certificates.crt": {0o644, 0, 0},
		"home/nonroot/":                     {0o700, 65532, 65532},
		"tmp/":                              {0o1777, 0, 0},
		"etc/passwd":                        {0o644, 0, 0},
	}
	for path, w := range want {
		h, ok := files[path]
		if !ok {
			t.Errorf("%s missing from the image", path)
			continue
		}
		if h.Mode != w.mode || h.Uid != w.uid || h.Gid != w.gid {
			t.Errorf("%s: mode %o %d:%d, want %o %d:%d", path, h.Mode, h.Uid, h.Gid, w.mode, w.uid, w.gid)
		}
	}
}

func layerFiles(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	layers, err := img.Layers()
	must(t, err)
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	must(t, err)
	defer rc.Close()
	files := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		must(t, err)
		files[h.Name] = h
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
