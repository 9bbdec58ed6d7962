//go:build unix

package filesystem

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/filesystem/cachelib"
)

// worker visits entries of a batch; a run has workerCount of them, each
// with its own tally, added to the report after each batch.
type worker struct {
	run *cleanupRun
	buf [cachelib.HeaderBytes]byte
	t   tally
}

type tally struct {
	scanned, expired, deleted     int64
	noExpiry, unreadable, foreign int64
	oldFormat, putBack, recovered int64
	orphans                       int64
	unreadableErr                 error
}

func (w *worker) visit(entry fs.DirEntry) error {
	name := entry.Name()
	switch {
	case cachelib.IsCountFile(name):
		return nil
	case strings.HasSuffix(name, asideSuffix):
		return w.leftover(name)
	case strings.HasSuffix(name, cachelib.TempSuffix):
		return w.orphanTemp(name)
	}
	w.t.scanned++
	if !cachelib.IsEntryName(name) || !entry.Type().IsRegular() {
		w.t.foreign++
		return nil
	}
	return w.visitSession(name)
}

// visitSession reads a session file's header and deletes it when expired.
func (w *worker) visitSession(name string) error {
	fd, err := w.openSession(name)
	switch {
	case errors.Is(err, unix.ENOENT):
		// Deleted by the app since it was listed.
		w.t.scanned--
		return nil
	case errors.Is(err, unix.ELOOP):
		w.t.foreign++
		return nil
	case err != nil:
		w.markUnreadable(name, err)
		return nil
	}
	defer unix.Close(fd)
	// A directory or FIFO that took the name since it was listed fails the
	// read or reads empty; takeExpired checks the type for sure.
	header, err := readHeader(fd, w.buf[:])
	if err != nil {
		w.markUnreadable(name, err)
		return nil
	}
	state, format := cachelib.Classify(header, w.run.cutoff)
	if format == cachelib.FormatPickle {
		w.t.oldFormat++
	}
	switch state {
	case cachelib.Never:
		w.t.noExpiry++
	case cachelib.Unreadable:
		w.t.unreadable++
	case cachelib.Expired:
		return w.takeExpired(fd, name)
	}
	return nil
}

// takeExpired deletes the expired regular file that fd has open as name.
func (w *worker) takeExpired(fd int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		w.markUnreadable(name, err)
		return nil
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		w.t.foreign++
		return nil
	}
	w.t.expired++
	if w.run.dryRun {
		return nil
	}
	deleted, err := w.take(fd, &st, name)
	if deleted {
		w.t.deleted++
	}
	return err
}

// openSession opens a session file for reading, on Linux without updating
// its access time: the cleanup leaves live sessions as it found them, and
// does not make the filesystem write back the inode of every file it reads.
// O_NOATIME needs the file's owner (or CAP_FOWNER); without, it is dropped.
func (w *worker) openSession(name string) (int, error) {
	if w.run.noAtime.Load() {
		fd, err := openReadFlags(w.run.dirfd, name, noAtime)
		if err != unix.EPERM {
			return fd, err
		}
		w.run.noAtime.Store(false)
	}
	return openRead(w.run.dirfd, name)
}

func (w *worker) markUnreadable(name string, err error) {
	w.t.unreadable++
	if w.t.unreadableErr == nil {
		w.t.unreadableErr = fmt.Errorf("%s: %w", name, err)
	}
}

// take deletes the expired file name, which fd has open and st describes,
// unless it was replaced or rewritten since it was read (see Cleanup).
func (w *worker) take(fd int, st *unix.Stat_t, name string) (bool, error) {
	run := w.run
	if run.store.beforeTake != nil {
		run.store.beforeTake(name)
	}
	aside := run.asideName(name)
	if err := unix.Renameat(run.dirfd, name, run.dirfd, aside); err != nil {
		if errors.Is(err, unix.ENOENT) {
			// Deleted by the app (logout) or by cachelib's own pruning.
			return false, nil
		}
		return false, osError("cleanup", "move expired session file "+name+" aside", err)
	}
	if run.store.afterTake != nil {
		run.store.afterTake(name)
	}
	var got unix.Stat_t
	same := unix.Fstatat(run.dirfd, aside, &got, unix.AT_SYMLINK_NOFOLLOW) == nil &&
		got.Dev == st.Dev && got.Ino == st.Ino
	if same {
		// cachelib never writes in place, but nothing else is to be trusted
		// either: what is deleted is what the header says now.
		header, err := readHeader(fd, w.buf[:])
		state, _ := cachelib.Classify(header, run.cutoff)
		same = err == nil && state == cachelib.Expired
	}
	if !same {
		w.t.putBack++
		return false, w.restore(aside, name)
	}
	if err := unlinkIfThere(run.dirfd, aside); err != nil {
		return false, osError("cleanup", "delete expired session file "+name+" (moved aside as "+aside+")", err)
	}
	return true, nil
}

// restore puts the file set aside as aside back as name, unless a newer one
// was written at name meanwhile.
func (w *worker) restore(aside, name string) error {
	dirfd := w.run.dirfd
	err := unix.Linkat(dirfd, aside, dirfd, name, 0)
	switch {
	case err == nil, errors.Is(err, unix.EEXIST):
		// Back in place, or superseded by a newer write that wins.
	case errors.Is(err, unix.ENOENT):
		// Already put back by another cleanup run.
		return nil
	default:
		// No hard links on this filesystem: rename back unless a newer
		// version is present. A write landing between the check and the
		// rename is overwritten by this one, one request older: the session
		// stays, with its data from before that request.
		var st unix.Stat_t
		if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
			if err := unix.Renameat(dirfd, aside, dirfd, name); err != nil {
				return osError("cleanup", "put back session file "+name+"; it is kept as "+aside+", rename it back", err)
			}
			return nil
		}
	}
	if err := unlinkIfThere(dirfd, aside); err != nil {
		return osError("cleanup", "remove "+aside+", a copy of session file "+name, err)
	}
	return nil
}
