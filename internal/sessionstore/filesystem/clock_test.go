//go:build unix

package filesystem

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/filesystem/cachelib"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/storetest"
)

// fsTestListing is the directory's names and sizes.
func fsTestListing(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %d\n", e.Name(), info.Size())
	}
	return b.String()
}

// A cleanup whose clock is far from the volume's (which set the mtime of
// the probe it writes) deletes nothing and says why, ahead or behind.
func TestFilesystemClockSkewRefused(t *testing.T) {
	dir := t.TempDir()
	expired := fsFlaskWrite(t, dir, -3600, 5)
	fsFlaskWrite(t, dir, 3600, 5)
	before := fsTestListing(t, dir)
	for _, shift := range []time.Duration{time.Hour, -time.Hour, 6 * time.Minute} {
		store := fsTestStore(t, dir)
		rep, err := store.Cleanup(context.Background(), sessionstore.CleanupOptions{Now: time.Now().Add(shift), Grace: 5 * time.Minute})
		storetest.WantKind(t, err, sessionstore.ErrClockSkew)
		if err != nil && !strings.Contains(err.Error(), "grace period of 5m0s") {
			t.Errorf("shift %s: message does not name the grace period: %v", shift, err)
		}
		if rep.Deleted != 0 || rep.Expired != 0 || rep.Scanned != 0 {
			t.Errorf("shift %s: report %+v, want nothing done", shift, rep)
		}
		if after := fsTestListing(t, dir); after != before {
			t.Errorf("shift %s: the directory changed:\nbefore %s\nafter %s", shift, before, after)
		}
	}
	for _, s := range expired {
		if !fsTestExists(t, dir, fsTestName("session:"+s.SID)) {
			t.Errorf("expired session %s was deleted on a skewed clock", s.SID)
		}
	}
}

// Within the grace period the run goes on, with its own clock: the cut-off
// is its now less the grace.
func TestFilesystemClockSkewWithinGrace(t *testing.T) {
	dir := t.TempDir()
	longExpired := fsFlaskWrite(t, dir, -600, 5)
	recent := fsFlaskWrite(t, dir, -60, 4)
	live := fsFlaskWrite(t, dir, 3600, 3)
	now := time.Now().Add(2 * time.Minute)
	rep := fsTestCleanup(t, fsTestStore(t, dir), sessionstore.CleanupOptions{Now: now, Grace: 5 * time.Minute})
	if rep.Scanned != 12 || rep.Expired != 5 || rep.Deleted != 5 {
		t.Errorf("report %+v: want 12 scanned, the 5 that expired 10 minutes ago deleted", rep)
	}
	if !rep.Now.Equal(now) || !rep.Cutoff.Equal(now.Add(-5*time.Minute)) {
		t.Errorf("report now %v cutoff %v, want %v and 5 minutes before", rep.Now, rep.Cutoff, now)
	}
	for _, s := range longExpired {
		if fsTestExists(t, dir, fsTestName("session:"+s.SID)) {
			t.Errorf("session %s, expired 10 minutes ago, is still there", s.SID)
		}
	}
	got := fsFlaskRead(t, dir, live)
	for _, s := range live {
		if v := got[s.SID]; v == nil || *v != s.Value {
			t.Errorf("live session %s reads back as %v", s.SID, v)
		}
	}
	for _, s := range recent {
		if !fsTestExists(t, dir, fsTestName("session:"+s.SID)) {
			t.Errorf("session %s, expired a minute ago, went within the grace period", s.SID)
		}
	}
}

// A session that expired a minute ago survives a grace period of 5 minutes
// and goes with none.
func TestFilesystemGracePeriod(t *testing.T) {
	dir := t.TempDir()
	recent := fsFlaskWrite(t, dir, -60, 3)
	store := fsTestStore(t, dir)
	rep := fsTestCleanup(t, store, sessionstore.CleanupOptions{Grace: 5 * time.Minute})
	if rep.Expired != 0 || rep.Deleted != 0 || rep.Scanned != 3 {
		t.Errorf("grace 5m: report %+v, want the 3 sessions kept", rep)
	}
	if d := rep.Now.Sub(rep.Cutoff); d != 5*time.Minute || time.Since(rep.Now) > time.Minute {
		t.Errorf("grace 5m: report now %v, cutoff %v", rep.Now, rep.Cutoff)
	}
	for _, s := range recent {
		if !fsTestExists(t, dir, fsTestName("session:"+s.SID)) {
			t.Errorf("session %s, expired a minute ago, went within the grace period", s.SID)
		}
	}
	rep = fsTestCleanup(t, store, sessionstore.CleanupOptions{})
	if rep.Expired != 3 || rep.Deleted != 3 || !rep.Cutoff.Equal(rep.Now) {
		t.Errorf("grace 0: report %+v, want the 3 sessions deleted", rep)
	}
}

// The clock probe ends with cachelib's temporary suffix, so cachelib never
// counts or lists it; one left by a run that crashed goes after an hour.
func TestFilesystemClockProbeLeftovers(t *testing.T) {
	dir := t.TempDir()
	fsFlaskWrite(t, dir, 3600, 3)
	oldProbe := probePrefix + "0123456789abcdef" + cachelib.TempSuffix
	youngProbe := probePrefix + "fedcba9876543210" + cachelib.TempSuffix
	for name, age := range map[string]time.Duration{oldProbe: 2 * time.Hour, youngProbe: time.Minute} {
		fsTestWrite(t, dir, name, []byte("clock probe of a session cleanup\n"))
		at := time.Now().Add(-age)
		if err := os.Chtimes(filepath.Join(dir, name), at, at); err != nil {
			t.Fatal(err)
		}
	}
	if n := fsTestRecount(t, dir); n != 3 {
		t.Errorf("cachelib counts %d files beside probes, want the 3 sessions", n)
	}
	rep := fsTestCleanup(t, fsTestStore(t, dir), sessionstore.CleanupOptions{})
	if rep.Scanned != 3 || fsTestExists(t, dir, oldProbe) || !fsTestExists(t, dir, youngProbe) {
		t.Errorf("report %+v: want the probe of 2 hours ago removed, the young one kept", rep)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), probePrefix) && e.Name() != youngProbe {
			t.Errorf("the run left its probe %s", e.Name())
		}
	}
}

// fsTestRecount is what cachelib counts when it starts.
func fsTestRecount(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	fsTestPythonJSON(t, &n, nil, "recount", dir)
	return n
}
