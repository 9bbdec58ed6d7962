//go:build unix

package filesystem

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// openRead opens name in dirfd for reading without following a symlink or
// blocking on a FIFO that took a session's name.
func openRead(dirfd int, name string) (int, error) {
	return openReadFlags(dirfd, name, 0)
}

func openReadFlags(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// createNew creates name in dirfd, failing if anything is there.
func createNew(dirfd int, name string, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// readHeader reads from the start of fd until buf is full or the file ends.
func readHeader(fd int, buf []byte) ([]byte, error) {
	n := 0
	for n < len(buf) {
		m, err := unix.Pread(fd, buf[n:], int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return buf[:n], nil
}

func writeAll(fd int, data []byte) error {
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// unlinkIfThere removes name, which may be gone already.
func unlinkIfThere(dirfd int, name string) error {
	if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// within runs fn but returns at ctx's end.
func within(ctx context.Context, op string, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return sessionstore.Classify(op, fmt.Errorf("the session directory did not answer: %w", ctx.Err()))
	}
}

// osError names what failed on a file or the directory and classifies it.
func osError(op, what string, err error) error {
	errno := errnoOnly(err)
	switch {
	case errors.Is(errno, fs.ErrNotExist):
		return sessionstore.NewError(sessionstore.ErrConfig, op, fmt.Errorf("%s does not exist (is the volume mounted?): %w", what, errno))
	case errors.Is(errno, unix.ENOTDIR), errors.Is(errno, unix.EROFS):
		return sessionstore.NewError(sessionstore.ErrConfig, op, fmt.Errorf("%s: %w", what, errno))
	case errors.Is(errno, unix.EACCES), errors.Is(errno, unix.EPERM):
		return sessionstore.NewError(sessionstore.ErrAuth, op, fmt.Errorf("%s: %w (uid %d, gid %d)", what, errno, os.Geteuid(), os.Getegid()))
	}
	return sessionstore.Classify(op, fmt.Errorf("%s: %w", what, errno))
}

// errnoOnly drops the path of a *PathError, which the messages name
// already.
func errnoOnly(err error) error {
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		return pathErr.Err
	}
	return err
}
