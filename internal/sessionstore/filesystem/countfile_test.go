//go:build unix

package filesystem

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/filesystem/cachelib"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/storetest"
)

// fsTestRacer is the real cachelib's side of a race on the count file,
// driven line by line (the script's racecount mode).
type fsTestRacer struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr bytes.Buffer
}

func fsStartRacer(t *testing.T, dir string, threshold int) *fsTestRacer {
	t.Helper()
	r := &fsTestRacer{t: t, cmd: exec.Command(storetest.Python, storetest.Script(fsFlaskScript), "racecount", dir, fmt.Sprint(threshold))}
	var err error
	if r.stdin, err = r.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r.stdout = bufio.NewReader(out)
	r.cmd.Stderr = &r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start python (run hack/start-services.sh flask): %v", err)
	}
	t.Cleanup(func() { _ = r.cmd.Process.Kill(); _ = r.cmd.Wait() })
	return r
}

// step sends a line (unless empty) and returns the next line printed.
// It may run on a worker goroutine: no t.Fatal.
func (r *fsTestRacer) step(send string) string {
	if send != "" {
		if _, err := io.WriteString(r.stdin, send+"\n"); err != nil {
			r.t.Errorf("racer: %v", err)
			return ""
		}
	}
	line, err := r.stdout.ReadString('\n')
	if err != nil {
		r.t.Errorf("racer: %v\n%s", err, r.stderr.String())
	}
	return strings.TrimSpace(line)
}

// The app reads the count (60, at its threshold), the cleanup deletes 20
// expired sessions and writes the true count, 40, then the app writes what
// it read plus one, as cachelib's unlocked _update_count does. Left so,
// cachelib believes it is over its threshold and evicts its oldest live
// session on every new one. The cleanup looks again and corrects it: five
// new sessions later, all 40 live ones are still there.
func TestFilesystemCountRaceWithCachelib(t *testing.T) {
	const threshold = 60
	dir := t.TempDir()
	live := fsFlaskWrite(t, dir, 3600, 40, threshold)
	fsFlaskWrite(t, dir, -60, 20, threshold)
	if n := fsCachelibCount(t, dir); n == nil || *n != threshold {
		t.Fatalf("test setup: cachelib counts %v, want %d", n, threshold)
	}
	racer := fsStartRacer(t, dir, threshold)
	if line := racer.step(""); line != fmt.Sprintf("read %d", threshold) {
		t.Fatalf("racer: %q\n%s", line, racer.stderr.String())
	}

	store := fsTestStore(t, dir)
	store.countRechecks = []time.Duration{10 * time.Millisecond, 50 * time.Millisecond}
	var raced int
	store.afterCountWrite = func() {
		// Only the first write races; the correction must stand.
		if raced++; raced == 1 {
			if line := racer.step("go"); line != "wrote" {
				t.Errorf("racer: %q", line)
			}
		}
	}
	rep := fsTestCleanup(t, store, sessionstore.CleanupOptions{})
	t.Logf("report: %+v", rep)
	if rep.Deleted != 20 || raced != 1 {
		t.Fatalf("report %+v, count written %d times: want 20 deleted and one raced write", rep, raced)
	}
	if n := fsCachelibCount(t, dir); n == nil || *n != 40 {
		t.Errorf("after the run cachelib reads a count of %s, want the true 40", fsTestShow(n))
	}
	if line := racer.step("go"); line != "done" {
		t.Fatalf("racer: %q\n%s", line, racer.stderr.String())
	}
	got := fsFlaskRead(t, dir, live)
	var evicted int
	for _, s := range live {
		if v := got[s.SID]; v == nil || *v != s.Value {
			evicted++
		}
	}
	if evicted > 0 {
		t.Errorf("cachelib evicted %d of the 40 live sessions while setting 5 new ones", evicted)
	}
	if n := fsCachelibCount(t, dir); n == nil || *n != 45 {
		t.Errorf("cachelib reads a count of %s, want 45", fsTestShow(n))
	}
}

// With threshold 0 (recommended when this cleanup does the expiry)
// cachelib keeps no count file; the cleanup deletes what expired and makes
// none.
func TestFilesystemThresholdZero(t *testing.T) {
	dir := t.TempDir()
	live := fsFlaskWrite(t, dir, 3600, 6, 0)
	expired := fsFlaskWrite(t, dir, -60, 4, 0)
	for _, name := range cachelib.CountFiles {
		if fsTestExists(t, dir, name) {
			t.Fatalf("test setup: cachelib with threshold 0 wrote a count file")
		}
	}
	rep := fsTestCleanup(t, fsTestStore(t, dir), sessionstore.CleanupOptions{})
	if rep.Scanned != 10 || rep.Deleted != 4 || strings.Contains(rep.Message, "count") {
		t.Errorf("report %+v: want 4 of 10 deleted and nothing said of a count", rep)
	}
	for _, s := range expired {
		if fsTestExists(t, dir, fsTestName("session:"+s.SID)) {
			t.Errorf("expired session %s is still there", s.SID)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 6 {
		t.Errorf("directory holds %d entries (%v), want the 6 live sessions and no count file", len(entries), err)
	}
	got := fsFlaskRead(t, dir, live)
	for _, s := range live {
		if v := got[s.SID]; v == nil || *v != s.Value {
			t.Errorf("live session %s reads back as %v", s.SID, v)
		}
	}
}

// cachelib with hash_method=hashlib.sha256 (FIPS setups) names files, the
// count file too, with 64 hex digits.
func TestFilesystemSHA256Names(t *testing.T) {
	dir := t.TempDir()
	type entry struct {
		Key     string         `json:"key"`
		Timeout int            `json:"timeout"`
		Value   map[string]any `json:"value"`
	}
	var entries []entry
	var liveKeys, expiredKeys []string
	for i := range 14 {
		e := entry{Key: fmt.Sprintf("session:sha-%d", i), Timeout: 3600, Value: map[string]any{"_permanent": true, "value": fmt.Sprint(i)}}
		if i%2 == 0 {
			e.Timeout = -60
			expiredKeys = append(expiredKeys, e.Key)
		} else {
			liveKeys = append(liveKeys, e.Key)
		}
		entries = append(entries, e)
	}
	fsTestPython(t, entries, "cacheset", dir, "sha256", "500")
	countName := cachelib.CountFiles[3]
	if !fsTestExists(t, dir, countName) || len(countName) != 64 {
		t.Fatalf("test setup: no sha256 count file %s", countName)
	}
	rep := fsTestCleanup(t, fsTestStore(t, dir), sessionstore.CleanupOptions{})
	if rep.Scanned != 14 || rep.Expired != 7 || rep.Deleted != 7 || len(rep.Kept) != 0 {
		t.Errorf("report %+v: want 7 of 14 deleted, nothing kept", rep)
	}
	var count *int64
	fsTestPythonJSON(t, &count, nil, "count", dir, "sha256")
	if count == nil || *count != 7 {
		t.Errorf("cachelib (sha256) reads a count of %s, want 7", fsTestShow(count))
	}
	var got map[string]map[string]any
	fsTestPythonJSON(t, &got, append(liveKeys, expiredKeys...), "cacheget", dir, "sha256")
	for i, key := range liveKeys {
		if fmt.Sprint(got[key]["value"]) != fmt.Sprint(2*i+1) {
			t.Errorf("live %s reads back as %v", key, got[key])
		}
	}
	for _, key := range expiredKeys {
		if fsTestExists(t, dir, cachelib.FileName(sha256.New, key)) {
			t.Errorf("expired %s is still there", key)
		}
	}
}

// cachelib's temporary files left by a writer killed before its rename go
// once a day old by the volume's clock; younger ones may be writes in
// progress, and a dry run only counts them.
func TestFilesystemOrphanedTemporaries(t *testing.T) {
	dir := t.TempDir()
	fsFlaskWrite(t, dir, 3600, 2)
	files := map[string]time.Duration{
		"tmpold12345" + cachelib.TempSuffix:   25 * time.Hour,
		"tmpyoung123" + cachelib.TempSuffix:   23 * time.Hour,
		"tmpfresh456" + cachelib.TempSuffix:   0,
		"tmpancient7" + cachelib.TempSuffix:   400 * 24 * time.Hour,
		fsTestName("x") + cachelib.TempSuffix: 48 * time.Hour,
	}
	for name, age := range files {
		fsTestWrite(t, dir, name, fsTestContent(uint32(time.Now().Unix()+3600)))
		at := time.Now().Add(-age)
		if err := os.Chtimes(filepath.Join(dir, name), at, at); err != nil {
			t.Fatal(err)
		}
	}
	oldDir := "tmpdirectory" + cachelib.TempSuffix
	if err := os.Mkdir(filepath.Join(dir, oldDir), 0o700); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-72 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, oldDir), at, at); err != nil {
		t.Fatal(err)
	}
	store := fsTestStore(t, dir)
	rep := fsTestCleanup(t, store, sessionstore.CleanupOptions{DryRun: true})
	if !strings.Contains(rep.Message, "would remove 3 of cachelib's temporary files") || len(fsTestListingNames(t, dir)) != 9 {
		t.Errorf("dry run: %s; directory %v", rep.Message, fsTestListingNames(t, dir))
	}
	rep = fsTestCleanup(t, store, sessionstore.CleanupOptions{})
	if rep.Scanned != 2 || !strings.Contains(rep.Message, "removed 3 of cachelib's temporary files") {
		t.Errorf("report %+v", rep)
	}
	for name, age := range files {
		if gone := !fsTestExists(t, dir, name); gone != (age > orphanTempAge) {
			t.Errorf("%s, %s old: gone %v", name, age, gone)
		}
	}
	if !fsTestExists(t, dir, oldDir) {
		t.Errorf("a directory named like a temporary file was removed")
	}
}

func fsTestListingNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// fsTestShow prints a count cachelib read, or none.
func fsTestShow(n *int64) string {
	if n == nil {
		return "none"
	}
	return fmt.Sprint(*n)
}
