// Package version is the operator's build version, stamped by the linker:
//
//	go build -ldflags "-X github.com/sessionstore/sessionstore-operator/internal/version.Version=v0.2.0"
//
// The Makefile and the Dockerfile set it from `git describe`.
package version

// Version is the build's version; "dev" for a build that was not stamped.
var Version = "dev"

// Repository is where the operator's image is published; the image tag is
// the version.
const Repository = "ghcr.io/sessionstore/sessionstore-operator"

// Image is the operator's own image for this build: cleanup CronJobs run it
// unless told otherwise, pinned to the version, never :latest.
func Image() string { return Repository + ":" + Version }
