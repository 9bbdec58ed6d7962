//go:build unix

package filesystem

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/filesystem/cachelib"
)

const (
	// probePrefix starts the name of the file that checkClock creates; it
	// ends with cachelib's TempSuffix so that cachelib neither lists nor
	// counts it.
	probePrefix = "cleanup-clock-"
	// clockSlack is what the probe cannot tell apart from no skew: file
	// servers and filesystems that keep whole seconds, coarse kernel clocks.
	clockSlack = 2 * time.Second
)

// checkClock compares the cleanup's clock with the volume's. Expiries were
// written by the app's clock, and the cut-off comes from this pod's: if this
// pod's runs ahead by more than the grace period, sessions would go before
// they expire. The volume's clock stands for the app's: the file server (on
// NFS) or the kernel the app shares sets the mtime of a file written there,
// so the check writes a probe file and reads its mtime back. It refuses to
// go on, with an ErrClockSkew, when the two clocks are further apart than
// grace (either way: a clock that runs behind is as broken, and a report
// built on it would mislead).
func (r *cleanupRun) checkClock(start time.Time, grace time.Duration) error {
	if r.dryRun {
		// The probe writes a file, and a dry run writes nothing (it may
		// even run on a read-only mount): it counts by this pod's clock.
		r.clockUnchecked = true
		return nil
	}
	volumeNow, probedAt, err := r.probeVolumeClock()
	if err != nil {
		return err
	}
	// The cleanup's clock at the probe: opts.Now moved on by the time since
	// the run started.
	cleanupNow := r.now.Add(probedAt.Sub(start))
	r.volumeOffset = volumeNow.Sub(probedAt)
	skew := cleanupNow.Sub(volumeNow)
	if skew.Abs() <= max(grace, 0)+clockSlack {
		return nil
	}
	direction := "ahead of"
	if skew < 0 {
		direction = "behind"
	}
	return sessionstore.NewError(sessionstore.ErrClockSkew, "cleanup", fmt.Errorf(
		"this job's clock (%s) is %s %s the session volume's (%s, the time the volume gave a file the job wrote there), more than the grace period of %s allows; nothing was deleted: sync the clocks (NTP) or raise the grace period",
		cleanupNow.UTC().Format(time.RFC3339), skew.Abs().Round(time.Second), direction, volumeNow.UTC().Format(time.RFC3339), max(grace, 0)))
}

// probeVolumeClock writes a probe file, reads its mtime and removes it. It
// returns the mtime and this process's clock when it was read. Writing a
// byte makes an NFS server set the mtime from its own clock.
func (r *cleanupRun) probeVolumeClock() (volumeNow, probedAt time.Time, err error) {
	name := probePrefix + r.token + cachelib.TempSuffix
	fd, err := createNew(r.dirfd, name, 0o600)
	if err != nil {
		return time.Time{}, time.Time{}, osError("cleanup", "create a file to read the volume's clock ("+name+")", err)
	}
	var st unix.Stat_t
	err = writeAll(fd, []byte("clock probe of a session cleanup\n"))
	if err == nil {
		err = unix.Fstat(fd, &st)
	}
	probedAt = time.Now()
	unix.Close(fd)
	if unlinkErr := unlinkIfThere(r.dirfd, name); err == nil {
		err = unlinkErr
	}
	if err != nil {
		return time.Time{}, time.Time{}, osError("cleanup", "read the volume's clock from "+name, err)
	}
	return time.Unix(st.Mtim.Unix()), probedAt, nil
}
