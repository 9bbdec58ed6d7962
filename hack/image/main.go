// Command image builds a container image as a docker-save tarball without a
// Docker engine or a registry: one layer holding a static binary, CA
// certificates and the nonroot user's files, under a config that runs the
// binary as 65532:65532. `make image` builds the operator's image with it;
// the e2e builds its pause image the same way. It is the Dockerfile's
// equivalent for machines with no Docker engine (see README.md, "The image").
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type options struct {
	binary, entrypoint, caFile, tag, out, user string
	labels                                     labelFlags
	created                                    time.Time
}

// labelFlags collects repeated -label key=value flags.
type labelFlags map[string]string

func (l labelFlags) String() string { return fmt.Sprint(map[string]string(l)) }
func (l labelFlags) Set(kv string) error {
	k, v, ok := strings.Cut(kv, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q is not key=value", kv)
	}
	l[k] = v
	return nil
}

func main() {
	o := options{labels: labelFlags{}}
	var epoch int64
	flag.StringVar(&o.binary, "binary", "", "static binary to run as the entrypoint")
	flag.StringVar(&o.entrypoint, "entrypoint", "/sessionstore-operator", "path of the binary in the image")
	flag.StringVar(&o.caFile, "ca-certificates", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to install (empty: none)")
	flag.StringVar(&o.tag, "tag", "", "image reference the tarball is tagged with")
	flag.StringVar(&o.out, "out", "bin/image.tar", "docker-save tarball to write")
	flag.StringVar(&o.user, "user", "65532:65532", "uid:gid the image runs as")
	flag.Var(o.labels, "label", "OCI label key=value (repeatable)")
	flag.Int64Var(&epoch, "created", 0, "image and file times, Unix seconds (SOURCE_DATE_EPOCH), for reproducible builds")
	flag.Parse()
	o.created = time.Unix(epoch, 0).UTC()
	if err := build(o); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func build(o options) error {
	if o.binary == "" || o.tag == "" {
		return fmt.Errorf("-binary and -tag are required")
	}
	ref, err := name.NewTag(o.tag)
	if err != nil {
		return err
	}
	layer, err := rootfsLayer(o)
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Created = v1.Time{Time: o.created}
	cfg.Config.Entrypoint = []string{o.entrypoint}
	cfg.Config.User = o.user
	cfg.Config.WorkingDir = "/"
	cfg.Config.Labels = o.labels
	cfg.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return err
	}
	return writeTarball(o.out, ref, img)
}

// writeTarball writes through a temporary file so a failed build never
// leaves a truncated tarball that a later import would take.
func writeTarball(out string, ref name.Tag, img v1.Image) error {
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, out)
}
