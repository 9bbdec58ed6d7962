//go:build unix

package filesystem

import (
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/filesystem/cachelib"
)

const (
	// asideSuffix ends the names of files the cleanup sets aside; cachelib's
	// own listing skips names ending with its TempSuffix.
	asideSuffix = ".cleanup" + cachelib.TempSuffix
	// leftoverAge is how old a file set aside (or a clock probe) must be
	// before the cleanup takes it for the remains of an interrupted run
	// rather than the work of one still running; a running cleanup holds
	// one for microseconds.
	leftoverAge = time.Hour
	// orphanTempAge is how old one of cachelib's temporary files must be
	// before it is taken for the remains of a writer that was killed; a
	// younger one may be a write in progress.
	orphanTempAge = 24 * time.Hour
)

// asideName names a file set aside: the session's name, when, by which run
// (a random token: cleanup pods all run as PID 1) and which of its files, and
// the suffix that makes cachelib ignore it. Names never repeat, so two runs
// at once cannot take a file over each other's.
func (r *cleanupRun) asideName(name string) string {
	return name + "." + strconv.FormatInt(time.Now().Unix(), 10) + "-" + r.token + "-" +
		strconv.FormatUint(r.asideSeq.Add(1), 10) + asideSuffix
}

// parseAsideName returns the session name a file set aside belongs to and
// when it was set aside.
func parseAsideName(aside string) (string, time.Time, bool) {
	name, rest, ok := strings.Cut(strings.TrimSuffix(aside, asideSuffix), ".")
	if !ok || !cachelib.IsEntryName(name) {
		return "", time.Time{}, false
	}
	parts := strings.Split(rest, "-")
	if len(parts) != 3 {
		return "", time.Time{}, false
	}
	if _, err := hex.DecodeString(parts[1]); err != nil || parts[1] == "" {
		return "", time.Time{}, false
	}
	if _, err := strconv.ParseUint(parts[2], 10, 64); err != nil {
		return "", time.Time{}, false
	}
	unixSeconds, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return "", time.Time{}, false
	}
	return name, time.Unix(unixSeconds, 0), true
}

// leftover handles a file set aside by a cleanup run; see Cleanup.
func (w *worker) leftover(aside string) error {
	name, setAside, ok := parseAsideName(aside)
	if !ok || w.run.dryRun || time.Since(setAside) < leftoverAge {
		return nil
	}
	fd, err := openRead(w.run.dirfd, aside)
	if err != nil {
		// Gone (another run recovered it) or unreadable: leave it.
		return nil
	}
	defer unix.Close(fd)
	header, err := readHeader(fd, w.buf[:])
	state := cachelib.Unreadable
	if err == nil {
		state, _ = cachelib.Classify(header, w.run.cutoff)
	}
	w.t.scanned++
	switch state {
	case cachelib.Expired:
		w.t.expired++
		if err := unlinkIfThere(w.run.dirfd, aside); err != nil {
			return osError("cleanup", "delete expired session file "+aside, err)
		}
		w.t.deleted++
		return nil
	case cachelib.Never:
		w.t.noExpiry++
	case cachelib.Unreadable:
		w.t.unreadable++
	}
	w.t.recovered++
	return w.restore(aside, name)
}

// orphanTemp removes one of cachelib's temporary files once it is
// orphanTempAge old by the volume's clock (which set its mtime): the remains
// of a writer killed between writing and renaming, which nothing else ever
// removes. A clock probe of a crashed run goes after leftoverAge.
func (w *worker) orphanTemp(name string) error {
	maxAge := orphanTempAge
	if strings.HasPrefix(name, probePrefix) {
		maxAge = leftoverAge
	}
	var st unix.Stat_t
	if err := unix.Fstatat(w.run.dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	if w.run.volumeNow().Sub(time.Unix(st.Mtim.Unix())) < maxAge {
		return nil
	}
	w.t.orphans++
	if w.run.dryRun {
		return nil
	}
	if err := unlinkIfThere(w.run.dirfd, name); err != nil {
		return osError("cleanup", "remove cachelib's orphaned temporary file "+name, err)
	}
	return nil
}
