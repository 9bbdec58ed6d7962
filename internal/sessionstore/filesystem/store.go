//go:build unix

// Package filesystem cleans up Flask-Session's filesystem type: a directory
// kept by cachelib's FileSystemCache (see package cachelib for its layout).
//
// cachelib prunes only inside set() and only once its count of files passes
// its threshold, first expired files, then the oldest live ones; nothing
// removes expired files otherwise. This backend removes them, and makes the
// count right afterwards so that cachelib does not evict live sessions.
package filesystem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

func init() { sessionstore.Register(sessionstore.BackendFilesystem, newDirStore) }

// dirStore is one session directory.
type dirStore struct {
	dir string

	// Test hooks, nil in production: called (by a worker goroutine) after
	// an expired file was read, just before it is moved aside, and right
	// after; and right after the count file was rewritten.
	beforeTake      func(name string)
	afterTake       func(name string)
	afterCountWrite func()
	// countRechecks are the pauses after a count file rewrite before it is
	// looked at again (see recheckCount); tests shorten them.
	countRechecks []time.Duration

	mu sync.Mutex
}

func newDirStore(cfg sessionstore.Config) (sessionstore.Store, error) {
	dir, err := cfg.FilesystemDir()
	if err != nil {
		return nil, err
	}
	return &dirStore{dir: dir, countRechecks: defaultCountRechecks}, nil
}

// Ping checks that the directory exists and that this process may list,
// read and write it. Filesystem calls cannot be cancelled: a hung network
// mount makes Ping return at ctx's deadline and leaves the check behind.
func (s *dirStore) Ping(ctx context.Context) error {
	return within(ctx, "ping", func() error { return s.checkDir("ping") })
}

func (s *dirStore) checkDir(op string) error {
	fi, err := os.Stat(s.dir)
	if err != nil {
		return osError(op, "session directory "+s.dir, err)
	}
	if !fi.IsDir() {
		return sessionstore.NewError(sessionstore.ErrConfig, op, fmt.Errorf("session directory %s is not a directory", s.dir))
	}
	notReadable := func(err error) error {
		return osError(op, "session directory "+s.dir+" is not readable", err)
	}
	if err := unix.Access(s.dir, unix.R_OK|unix.X_OK); err != nil {
		return notReadable(err)
	}
	// access(2) can be wrong over NFS: list for real.
	d, err := os.Open(s.dir)
	if err != nil {
		return notReadable(err)
	}
	defer d.Close()
	if _, err := d.ReadDir(1); err != nil && err != io.EOF {
		return notReadable(err)
	}
	if err := unix.Access(s.dir, unix.W_OK); err != nil {
		return osError(op, "session directory "+s.dir+" is not writable", err)
	}
	return nil
}

// EnsureSchema reports whether the directory exists. It never creates it:
// it is the volume the app writes to, and creating it would hide a volume
// that is not mounted.
func (s *dirStore) EnsureSchema(ctx context.Context) (sessionstore.SchemaResult, error) {
	var res sessionstore.SchemaResult
	err := within(ctx, "ensure schema", func() error {
		fi, err := os.Stat(s.dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			res.Message = fmt.Sprintf("session directory %s does not exist; mount the volume the app writes its sessions to (it is not created here)", s.dir)
			return nil
		case err != nil:
			return osError("ensure schema", "session directory "+s.dir, err)
		case !fi.IsDir():
			return sessionstore.NewError(sessionstore.ErrConfig, "ensure schema", fmt.Errorf("session directory %s is not a directory", s.dir))
		}
		res.Present = true
		res.Message = fmt.Sprintf("session directory %s is present", s.dir)
		return nil
	})
	return res, err
}

func (s *dirStore) Close() error { return nil }
