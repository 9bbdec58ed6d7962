//go:build unix

package filesystem

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/filesystem/cachelib"
)

// cachelib updates its count without a lock: _update_count reads the count
// file, then writes the value plus or minus one. An update that read the
// count before the cleanup rewrote it and writes after puts back the old,
// too high count (plus one), and cachelib then evicts its oldest live
// sessions on every new one until the next run. So after a rewrite the
// count file is looked at again after each of these pauses; when the app
// replaced it with a value above the true count, it is rewritten (a count
// too low is harmless: cachelib merely prunes later).
var defaultCountRechecks = []time.Duration{20 * time.Millisecond, 200 * time.Millisecond, time.Second}

// maxCountCorrections bounds the rewrites after the first.
const maxCountCorrections = 3

// countFile is a count file as read: its content, and its inode's metadata.
type countFile struct {
	cachelib.CountFile
	st unix.Stat_t
}

// fixCounts sets each count file there is (cachelib keeps none with
// threshold 0; one per hash method in use) to the number of entries that
// cachelib counts (see FileSystemCache._list_dir), written the way cachelib
// writes it: a temporary file, given the count file's mode and owner,
// renamed over it.
func (r *cleanupRun) fixCounts(ctx context.Context, batchSize int) error {
	for _, name := range cachelib.CountFiles {
		if err := r.fixCount(ctx, name, batchSize); err != nil {
			return err
		}
	}
	return nil
}

func (r *cleanupRun) fixCount(ctx context.Context, name string, batchSize int) error {
	cf, present, err := r.readCountFile(name)
	if err != nil || !present {
		return err
	}
	if cf.Format == cachelib.FormatNone {
		r.countResults = append(r.countResults, "the count file "+name+" is in neither of cachelib's layouts and was left alone")
		return nil
	}
	count, err := r.countEntries(name, batchSize)
	if err != nil || cf.Known && cf.Count == count {
		return err
	}
	ino, err := r.replaceCountFile(name, cf, count)
	if err != nil {
		return err
	}
	if cf.Known {
		r.countResults = append(r.countResults, fmt.Sprintf("count file set to %d (was %d)", count, cf.Count))
	} else {
		r.countResults = append(r.countResults, fmt.Sprintf("count file set to %d (its value was unreadable)", count))
	}
	if r.store.afterCountWrite != nil {
		r.store.afterCountWrite()
	}
	return r.recheckCount(ctx, name, ino, batchSize)
}

// recheckCount looks at the count file name again after each pause of
// countRechecks, as long as it is the inode ino that the cleanup wrote,
// and rewrites it when the app put a count above the true one there
// meanwhile.
func (r *cleanupRun) recheckCount(ctx context.Context, name string, ino uint64, batchSize int) error {
	corrections := 0
	for i := 0; i < len(r.store.countRechecks); i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.store.countRechecks[i]):
		}
		var st unix.Stat_t
		if unix.Fstatat(r.dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Ino == ino {
			continue
		}
		cf, present, err := r.readCountFile(name)
		if err != nil || !present || !cf.Known {
			return err
		}
		count, err := r.countEntries(name, batchSize)
		if err != nil {
			return err
		}
		ino = cf.st.Ino
		if cf.Count <= count || corrections == maxCountCorrections {
			continue
		}
		if ino, err = r.replaceCountFile(name, cf, count); err != nil {
			return err
		}
		corrections++
		r.countResults = append(r.countResults, fmt.Sprintf(
			"count file set to %d again: the app's own update of it raced the rewrite and left %d", count, cf.Count))
		i = -1 // a fresh write: look again from the first pause
	}
	return nil
}

// readCountFile reads the count file name; present is false when there is
// none, and cf.Format FormatNone when it is in neither of cachelib's layouts.
func (r *cleanupRun) readCountFile(name string) (cf countFile, present bool, err error) {
	fd, err := openRead(r.dirfd, name)
	if errors.Is(err, unix.ENOENT) {
		return cf, false, nil
	}
	if err != nil {
		return cf, false, osError("cleanup", "read the count file "+name, err)
	}
	defer unix.Close(fd)
	buf := make([]byte, cachelib.CountFileMax)
	var content []byte
	err = unix.Fstat(fd, &cf.st)
	if err == nil {
		content, err = readHeader(fd, buf)
	}
	if err != nil {
		return cf, false, osError("cleanup", "read the count file "+name, err)
	}
	cf.CountFile, _ = cachelib.ParseCountFile(content)
	return cf, true, nil
}

// countEntries counts what cachelib counts: every name but the count file
// and those ending in its TempSuffix.
func (r *cleanupRun) countEntries(countName string, batchSize int) (int64, error) {
	d, err := os.Open(r.store.dir)
	if err != nil {
		return 0, osError("cleanup", "count the session files", err)
	}
	defer d.Close()
	var count int64
	for {
		names, err := d.Readdirnames(batchSize)
		for _, name := range names {
			if name != countName && !strings.HasSuffix(name, cachelib.TempSuffix) {
				count++
			}
		}
		if err == io.EOF {
			return count, nil
		}
		if err != nil {
			return 0, osError("cleanup", "count the session files", err)
		}
	}
}

// replaceCountFile writes count over the count file name in old's layout,
// mode and owner, and returns the new file's inode number.
func (r *cleanupRun) replaceCountFile(name string, old countFile, count int64) (uint64, error) {
	var random [4]byte
	_, _ = rand.Read(random[:])
	tmp := "tmp" + hex.EncodeToString(random[:]) + cachelib.TempSuffix
	fd, err := createNew(r.dirfd, tmp, 0o600)
	if err != nil {
		return 0, osError("cleanup", "write the count file", err)
	}
	var st unix.Stat_t
	err = writeAll(fd, old.Bytes(count))
	if err == nil {
		err = unix.Fchmod(fd, uint32(old.st.Mode)&0o7777)
	}
	if err == nil && (int(old.st.Uid) != os.Geteuid() || int(old.st.Gid) != os.Getegid()) {
		// The app must be able to read it back; only root may give it away.
		r.countOwnerLost = unix.Fchown(fd, int(old.st.Uid), int(old.st.Gid)) != nil
	}
	if err == nil {
		err = unix.Fstat(fd, &st)
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(r.dirfd, tmp, r.dirfd, name)
	}
	if err != nil {
		_ = unix.Unlinkat(r.dirfd, tmp, 0)
		return 0, osError("cleanup", "write the count file", err)
	}
	return st.Ino, nil
}
