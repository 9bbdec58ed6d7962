//go:build unix

package filesystem

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/filesystem/cachelib"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/storetest"
)

// fsTestValue is pickle.dumps({}, 5): a value pickle as cachelib writes it.
var fsTestValue = []byte("\x80\x05}\x94.")

// fsTestStore is a store on dir. It looks at a rewritten count file again
// after shorter pauses than in production, so that the tests that do not
// race it do not wait a second each.
func fsTestStore(t *testing.T, dir string) *dirStore {
	t.Helper()
	store, err := sessionstore.New(sessionstore.Config{Backend: sessionstore.BackendFilesystem, Dir: dir})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s := store.(*dirStore)
	if len(s.countRechecks) == 0 {
		t.Fatal("the store looks at a rewritten count file no more")
	}
	s.countRechecks = []time.Duration{5 * time.Millisecond, 20 * time.Millisecond}
	return s
}

func fsTestName(key string) string {
	sum := md5.Sum([]byte(key))
	return hex.EncodeToString(sum[:])
}

// fsTestContent is a file in cachelib >= 0.7's layout.
func fsTestContent(expires uint32) []byte {
	return append(binary.NativeEndian.AppendUint32(nil, expires), fsTestValue...)
}

// fsTestReplace writes data as name the way cachelib does: a temporary file
// renamed over the target.
func fsTestReplace(t testing.TB, dir, name string, data []byte) {
	f, err := os.CreateTemp(dir, "tmp*"+cachelib.TempSuffix)
	if err == nil {
		_, err = f.Write(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		t.Errorf("write %s: %v", name, err)
	}
}

func fsTestWrite(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func fsTestExists(t *testing.T, dir, name string) bool {
	t.Helper()
	_, err := os.Lstat(filepath.Join(dir, name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func fsTestCleanup(t *testing.T, store *dirStore, opts sessionstore.CleanupOptions) sessionstore.Report {
	t.Helper()
	rep, err := store.Cleanup(context.Background(), opts)
	if err != nil {
		t.Fatalf("Cleanup: %v (report %+v)", err, rep)
	}
	return rep
}

func fsTestNoneAside(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), asideSuffix) {
			t.Errorf("file set aside is left behind: %s", e.Name())
		}
	}
}

// fsFlaskScript drives the real Flask-Session's filesystem type (cachelib).
const fsFlaskScript = "flask_filesystem_sessions.py"

// fsTestPython runs one of fsFlaskScript's commands with stdin, when not
// nil, as JSON.
func fsTestPython(t *testing.T, stdin any, args ...string) []byte {
	t.Helper()
	in := ""
	if stdin != nil {
		data, err := json.Marshal(stdin)
		if err != nil {
			t.Fatal(err)
		}
		in = string(data)
	}
	return storetest.RunFlask(t, fsFlaskScript, in, args...)
}

func fsTestPythonJSON(t *testing.T, dst any, stdin any, args ...string) {
	t.Helper()
	out := fsTestPython(t, stdin, args...)
	if err := json.Unmarshal(out, dst); err != nil {
		t.Fatalf("python %v printed %q: %v", args, out, err)
	}
}

// fsFlaskWrite makes count sessions through the app, with cachelib's
// threshold when given (default 500).
func fsFlaskWrite(t *testing.T, dir string, lifetimeSeconds, count int, threshold ...int) []storetest.FlaskSession {
	t.Helper()
	args := []string{dir, fmt.Sprint(lifetimeSeconds), fmt.Sprint(count)}
	for _, n := range threshold {
		args = append(args, fmt.Sprint(n))
	}
	return storetest.FlaskWrite(t, fsFlaskScript, count, args...)
}

func fsFlaskRead(t *testing.T, dir string, sessions []storetest.FlaskSession) map[string]*string {
	t.Helper()
	return storetest.FlaskRead(t, fsFlaskScript, sessions, dir)
}

// fsCachelibCount is the count file's value as cachelib reads it.
func fsCachelibCount(t *testing.T, dir string) *int64 {
	t.Helper()
	var n *int64
	fsTestPythonJSON(t, &n, nil, "count", dir)
	return n
}

func fsTestCountEntries(t *testing.T, dir string) int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range entries {
		if e.Name() != cachelib.CountFiles[0] && !strings.HasSuffix(e.Name(), cachelib.TempSuffix) {
			n++
		}
	}
	return n
}

func TestFilesystemCountFileName(t *testing.T) {
	if got := fsTestName("__wz_cache_count"); got != cachelib.CountFiles[0] {
		t.Fatalf("md5(__wz_cache_count) = %s, the code has %s", got, cachelib.CountFiles[0])
	}
}

// Sessions written by the real Flask-Session: live, expired (a lifetime in
// the past gives exactly the header of a session whose time has passed) and
// never-expiring (lifetime 0), beside foreign and broken files.
func TestFilesystemFlaskInterop(t *testing.T) {
	dir := t.TempDir()
	live := fsFlaskWrite(t, dir, 3600, 20)
	expired := fsFlaskWrite(t, dir, -60, 15)
	never := fsFlaskWrite(t, dir, 0, 3)
	fsTestWrite(t, dir, "notes.txt", []byte("not a session"))
	fsTestWrite(t, dir, fsTestName("garbage"), []byte("\x00\x01garbage that is no pickle at all"))
	fsTestWrite(t, dir, fsTestName("truncated"), []byte{0x10, 0x20, 0x30})
	fsTestWrite(t, dir, "tmpab12cd34"+cachelib.TempSuffix, fsTestContent(1))

	countBefore, err := os.ReadFile(filepath.Join(dir, cachelib.CountFiles[0]))
	if err != nil {
		t.Fatalf("Flask-Session wrote no count file: %v", err)
	}
	if n := fsCachelibCount(t, dir); n == nil || *n != 38 {
		t.Fatalf("test setup: cachelib counts %s files, want the 38 sessions the app wrote", fsTestShow(n))
	}

	store := fsTestStore(t, dir)
	rep := fsTestCleanup(t, store, sessionstore.CleanupOptions{BatchSize: 7})
	t.Logf("report: %+v", rep)
	if rep.Scanned != 41 || rep.Expired != 15 || rep.Deleted != 15 {
		t.Errorf("scanned %d, expired %d, deleted %d; want 41, 15, 15", rep.Scanned, rep.Expired, rep.Deleted)
	}
	wantKept := map[string]int64{"noExpiry": 3, "unreadable": 2, "foreign": 1}
	if fmt.Sprint(rep.Kept) != fmt.Sprint(wantKept) {
		t.Errorf("kept %v, want %v", rep.Kept, wantKept)
	}
	if rep.Batches != 7 {
		t.Errorf("%d batches, want 7 (43 entries, count file and temporary file included, by 7)", rep.Batches)
	}
	if rep.Backend != sessionstore.BackendFilesystem || rep.Duration <= 0 || rep.Now.IsZero() || rep.Message == "" {
		t.Errorf("report fields not filled: %+v", rep)
	}

	for _, name := range []string{"notes.txt", fsTestName("garbage"), fsTestName("truncated"), "tmpab12cd34" + cachelib.TempSuffix} {
		if !fsTestExists(t, dir, name) {
			t.Errorf("%s was deleted; foreign, broken and temporary files must be left alone", name)
		}
	}
	for _, s := range expired {
		if fsTestExists(t, dir, fsTestName("session:"+s.SID)) {
			t.Errorf("expired session %s is still there", s.SID)
		}
	}
	fsTestNoneAside(t, dir)

	fsCheckInteropCountFile(t, dir, store, countBefore)
	fsCheckReadBack(t, dir, append(live, never...), expired)
}

// fsCheckReadBack reads sessions back through the app: kept ones with
// their values, gone ones as no session.
func fsCheckReadBack(t *testing.T, dir string, kept, gone []storetest.FlaskSession) {
	t.Helper()
	got := fsFlaskRead(t, dir, append(append([]storetest.FlaskSession{}, kept...), gone...))
	for _, s := range kept {
		if v := got[s.SID]; v == nil || *v != s.Value {
			t.Errorf("live session %s reads back as %v, want %q", s.SID, v, s.Value)
		}
	}
	for _, s := range gone {
		if v := got[s.SID]; v != nil {
			t.Errorf("expired session %s reads back as %q", s.SID, *v)
		}
	}
}

// fsCheckInteropCountFile checks the count file after
// TestFilesystemFlaskInterop's run: cachelib reads the true count, 26
// entries it lists (20 live, 3 never, and the 3 other files it would count
// too), in its own layout and mode; a second run leaves it alone.
func fsCheckInteropCountFile(t *testing.T, dir string, store *dirStore, countBefore []byte) {
	t.Helper()
	if n := fsCachelibCount(t, dir); n == nil || *n != 26 {
		t.Errorf("cachelib reads a count of %s, want 26", fsTestShow(n))
	}
	if got := fsTestCountEntries(t, dir); got != 26 {
		t.Errorf("directory holds %d counted entries, want 26", got)
	}
	countAfter, err := os.ReadFile(filepath.Join(dir, cachelib.CountFiles[0]))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(countAfter[:4], countBefore[:4]) || !bytes.Equal(countAfter[4:6], countBefore[4:6]) {
		t.Errorf("count file %x has another header or protocol than cachelib's %x", countAfter, countBefore)
	}
	var pickled []string
	fsTestPythonJSON(t, &pickled, [][2]int{{26, 5}}, "pickle")
	if hex.EncodeToString(countAfter[4:]) != pickled[0] {
		t.Errorf("count file holds %x after its header, python's pickle.dumps(26, 5) is %s", countAfter[4:], pickled[0])
	}
	if fi, err := os.Stat(filepath.Join(dir, cachelib.CountFiles[0])); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("count file mode %v (%v), want Flask-Session's 0600", fi.Mode(), err)
	}

	// A second run finds nothing to do and leaves the count alone.
	countInode := fsTestInode(t, dir, cachelib.CountFiles[0])
	rep := fsTestCleanup(t, store, sessionstore.CleanupOptions{})
	if rep.Expired != 0 || rep.Deleted != 0 || rep.Scanned != 26 {
		t.Errorf("second run: %+v", rep)
	}
	if fsTestInode(t, dir, cachelib.CountFiles[0]) != countInode {
		t.Errorf("second run rewrote a count file that was right")
	}
}

func fsTestInode(t *testing.T, dir, name string) uint64 {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// fsWriteSpecialEntries puts a directory, a symlink to an expired file
// (returned) and a FIFO under session names.
func fsWriteSpecialEntries(t *testing.T, dir string) (target string) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(dir, fsTestName("dir")), 0o700); err != nil {
		t.Fatal(err)
	}
	target = filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, fsTestContent(1), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, fsTestName("symlink"))); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, fsTestName("fifo")), 0o600); err != nil {
		t.Fatal(err)
	}
	return target
}

// The count file and cachelib's temporaries are never touched, whatever
// they hold; broken and foreign entries are reported and kept.
func TestFilesystemHostileAndBookkeepingFiles(t *testing.T) {
	dir := t.TempDir()
	fsTestWrite(t, dir, cachelib.CountFiles[0], fsTestContent(1)) // even "expired"
	keep := map[string][]byte{
		"tmpexpired" + cachelib.TempSuffix:            fsTestContent(1),
		"tmp" + cachelib.TempSuffix:                   nil,
		fsTestName("empty"):                           nil,
		fsTestName("3 bytes"):                         {1, 2, 3},
		fsTestName("header only"):                     fsTestContent(1)[:4],
		fsTestName("header and half a PROTO"):         fsTestContent(1)[:5],
		fsTestName("garbage"):                         []byte("\x01\x00\x00\x00 this is not a pickle"),
		fsTestName("text"):                            []byte("session data in some other format\n"),
		strings.ToUpper(fsTestName("upper")):          fsTestContent(1),
		fsTestName("short")[:31]:                      fsTestContent(1),
		fsTestName("long") + "0":                      fsTestContent(1),
		fsTestName("with suffix") + ".bak":            fsTestContent(1),
		".hidden":                                     fsTestContent(1),
		fsTestName("x") + ".1-2-3" + ".other.__wz_ca": fsTestContent(1),
	}
	for name, data := range keep {
		fsTestWrite(t, dir, name, data)
	}
	target := fsWriteSpecialEntries(t, dir)
	fsTestWrite(t, dir, fsTestName("expired"), fsTestContent(1))

	store := fsTestStore(t, dir)
	rep := fsTestCleanup(t, store, sessionstore.CleanupOptions{BatchSize: 4})
	t.Logf("report: %+v", rep)
	wantKept := map[string]int64{"unreadable": 6, "foreign": 9}
	if fmt.Sprint(rep.Kept) != fmt.Sprint(wantKept) || rep.Scanned != 16 || rep.Expired != 1 || rep.Deleted != 1 {
		t.Errorf("report %+v: want 16 scanned, 1 expired and deleted, kept %v", rep, wantKept)
	}
	for name, data := range keep {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s was changed or removed (%v)", name, err)
		}
	}
	for _, name := range []string{fsTestName("dir"), fsTestName("symlink"), fsTestName("fifo"), cachelib.CountFiles[0]} {
		if !fsTestExists(t, dir, name) {
			t.Errorf("%s was removed", name)
		}
	}
	if _, err := os.Stat(target); err != nil {
		t.Errorf("the symlink's target was removed: %v", err)
	}
	if fsTestExists(t, dir, fsTestName("expired")) {
		t.Errorf("the expired session is still there")
	}
	// The count file, with an expired header and no int (cachelib never
	// writes that), is rewritten as cachelib writes it, with the true count.
	data, err := os.ReadFile(filepath.Join(dir, cachelib.CountFiles[0]))
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := cachelib.UnpickleInt(data[4:]); !ok || n != fsTestCountEntries(t, dir) {
		t.Errorf("count file holds %x, want the true count %d", data, fsTestCountEntries(t, dir))
	}
	if !bytes.Equal(data[:4], fsTestContent(0)[:4]) {
		t.Errorf("count file header is %x, want 0 (never expires)", data[:4])
	}
}

func TestFilesystemDryRunChangesNothing(t *testing.T) {
	dir := t.TempDir()
	fsFlaskWrite(t, dir, -60, 5)
	fsFlaskWrite(t, dir, 3600, 5)
	old := time.Now().Add(-2 * leftoverAge).Unix()
	fsTestWrite(t, dir, fsTestName("x")+fmt.Sprintf(".%d-abcd-1", old)+asideSuffix, fsTestContent(1))
	snapshot := func() map[string]string {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out[e.Name()] = fmt.Sprintf("%d %x", fsTestInode(t, dir, e.Name()), data)
		}
		return out
	}
	dirTimes := func() string {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(st.Mtim, st.Ctim)
	}
	before, beforeTimes := snapshot(), dirTimes()
	rep := fsTestCleanup(t, fsTestStore(t, dir), sessionstore.CleanupOptions{DryRun: true, BatchSize: 3})
	// Not even a file made and removed again (the clock probe's): the
	// directory's own times stay.
	if after := dirTimes(); after != beforeTimes {
		t.Errorf("dry run wrote to the directory: times %s, then %s", beforeTimes, after)
	}
	if !rep.DryRun || rep.Expired != 5 || rep.Deleted != 0 || rep.Scanned != 10 {
		t.Errorf("dry run report %+v: want 10 scanned, 5 expired, none deleted", rep)
	}
	if after := snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("dry run changed the directory:\nbefore %v\nafter  %v", before, after)
	}
}

func TestFilesystemCancelStopsAfterBatch(t *testing.T) {
	dir := t.TempDir()
	for i := range 100 {
		fsTestWrite(t, dir, fsTestName(fmt.Sprint(i)), fsTestContent(1))
	}
	fsTestWrite(t, dir, cachelib.CountFiles[0], append(cachelib.CountHeader(cachelib.FormatStruct), cachelib.PickleInt(100, 5)...))
	store := fsTestStore(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var progress int
	rep, err := store.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 10, Progress: func(p sessionstore.Report) {
		progress++
		if p.Batches != progress || p.Deleted < 9 {
			t.Errorf("progress %d: %+v", progress, p)
		}
		cancel()
	}})
	if !errors.Is(err, context.Canceled) || sessionstore.KindOf(err) != sessionstore.ErrUnknown {
		t.Fatalf("Cleanup after cancel: %v (%s), want context.Canceled", err, sessionstore.KindOf(err))
	}
	// The first batch of 10 entries may hold the count file.
	left := fsTestCountEntries(t, dir)
	if rep.Batches != 1 || rep.Deleted < 9 || left != 100-rep.Deleted || progress != 1 || !strings.Contains(rep.Message, "stopped") {
		t.Errorf("report %+v after %d progress calls, %d files left: want to stop after the first batch of 10", rep, progress, left)
	}
	// What was deleted is taken off the count even so.
	data, err := os.ReadFile(filepath.Join(dir, cachelib.CountFiles[0]))
	if n, ok := cachelib.UnpickleInt(data[4:]); err != nil || !ok || n != left {
		t.Errorf("count file holds %x (%v) after the stop, want %d", data, err, left)
	}
	rep = fsTestCleanup(t, store, sessionstore.CleanupOptions{BatchSize: 10})
	if rep.Deleted != left || fsTestCountEntries(t, dir) != 0 {
		t.Errorf("rerun: %+v, want the other %d deleted", rep, left)
	}
}

func TestFilesystemAsideNames(t *testing.T) {
	run := &cleanupRun{token: "00ff00ff00ff00ff"}
	name := fsTestName("session:x")
	seen := map[string]bool{}
	for range 3 {
		aside := run.asideName(name)
		got, at, ok := parseAsideName(aside)
		if !ok || got != name || time.Since(at) > time.Minute || !strings.HasSuffix(aside, cachelib.TempSuffix) || seen[aside] {
			t.Errorf("%s parses as %q, %v, %v", aside, got, at, ok)
		}
		seen[aside] = true
	}
	for _, bad := range []string{
		"tmpabc" + asideSuffix,
		name + asideSuffix,
		name + ".1-2" + asideSuffix,
		name + ".1-xyz-3" + asideSuffix,
		name + ".x-ab-3" + asideSuffix,
		name[:31] + ".1-ab-3" + asideSuffix,
	} {
		if _, _, ok := parseAsideName(bad); ok {
			t.Errorf("%s parses as a file set aside", bad)
		}
	}
}

// Files set aside by a cleanup that died are put back (live) or deleted
// (expired) once old enough; young ones belong to a run at work.
func TestFilesystemLeftoversOfInterruptedRun(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	old := now.Add(-2 * leftoverAge).Unix()
	aside := func(key string, at int64) (string, string) {
		return fsTestName(key), fmt.Sprintf("%s.%d-0123456789abcdef-7%s", fsTestName(key), at, asideSuffix)
	}
	live, newer := fsTestContent(uint32(now.Unix()+3600)), fsTestContent(uint32(now.Unix()+7200))
	expiredName, expiredAside := aside("expired", old)
	liveName, liveAside := aside("live", old)
	supersededName, supersededAside := aside("superseded", old)
	youngName, youngAside := aside("young", now.Unix())
	fsTestWrite(t, dir, expiredAside, fsTestContent(1))
	fsTestWrite(t, dir, liveAside, live)
	fsTestWrite(t, dir, supersededAside, live)
	fsTestWrite(t, dir, supersededName, newer)
	fsTestWrite(t, dir, youngAside, fsTestContent(1))

	rep := fsTestCleanup(t, fsTestStore(t, dir), sessionstore.CleanupOptions{Now: now})
	t.Logf("report %+v", rep)
	if rep.Expired != 1 || rep.Deleted != 1 || !strings.Contains(rep.Message, "recovered 2") {
		t.Errorf("report %+v: want the old expired one deleted and 2 put back", rep)
	}
	for name, want := range map[string][]byte{liveName: live, supersededName: newer, youngAside: fsTestContent(1)} {
		if got, err := os.ReadFile(filepath.Join(dir, name)); !bytes.Equal(got, want) {
			t.Errorf("%s holds %x (%v), want %x", name, got, err, want)
		}
	}
	for _, name := range []string{expiredAside, expiredName, liveAside, supersededAside, youngName} {
		if fsTestExists(t, dir, name) {
			t.Errorf("%s is there", name)
		}
	}
}

// A count file in another mode keeps it; no count file (threshold 0) is not
// created.
func TestFilesystemCountFileModeAndAbsence(t *testing.T) {
	dir := t.TempDir()
	fsTestWrite(t, dir, cachelib.CountFiles[0], append(fsTestContent(0)[:4], cachelib.PickleInt(50, 5)...))
	if err := os.Chmod(filepath.Join(dir, cachelib.CountFiles[0]), 0o640); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		fsTestWrite(t, dir, fsTestName(fmt.Sprint(i)), fsTestContent(uint32(1+i%2*math.MaxInt32)))
	}
	rep := fsTestCleanup(t, fsTestStore(t, dir), sessionstore.CleanupOptions{})
	if n := fsCachelibCount(t, dir); n == nil || *n != 2 {
		t.Errorf("cachelib reads a count of %v, want 2", n)
	}
	if !strings.Contains(rep.Message, "count file set to 2 (was 50)") {
		t.Errorf("message does not tell the count: %s", rep.Message)
	}
	if fi, err := os.Stat(filepath.Join(dir, cachelib.CountFiles[0])); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("count file mode %v (%v), want 0640 kept", fi.Mode(), err)
	}

	dir = t.TempDir()
	fsTestWrite(t, dir, fsTestName("a"), fsTestContent(1))
	rep = fsTestCleanup(t, fsTestStore(t, dir), sessionstore.CleanupOptions{})
	if rep.Deleted != 1 || fsTestExists(t, dir, cachelib.CountFiles[0]) {
		t.Errorf("report %+v: want the session deleted and no count file made", rep)
	}
}

func TestFilesystemPingAndSchema(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := fsTestStore(t, dir)
	if err := store.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
	if res, err := store.EnsureSchema(ctx); err != nil || !res.Present {
		t.Errorf("EnsureSchema: %+v, %v", res, err)
	}

	missing := filepath.Join(dir, "missing")
	store = fsTestStore(t, missing)
	err := store.Ping(ctx)
	if sessionstore.KindOf(err) != sessionstore.ErrConfig || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Ping on a missing dir: %v (%s)", err, sessionstore.KindOf(err))
	}
	res, err := store.EnsureSchema(ctx)
	if err != nil || res.Present || !strings.Contains(res.Message, "does not exist") {
		t.Errorf("EnsureSchema on a missing dir: %+v, %v", res, err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("EnsureSchema created the directory")
	}
	if _, err := store.Cleanup(ctx, sessionstore.CleanupOptions{}); sessionstore.KindOf(err) != sessionstore.ErrConfig {
		t.Errorf("Cleanup on a missing dir: %v", err)
	}

	file := filepath.Join(dir, "file")
	fsTestWrite(t, dir, "file", nil)
	err = fsTestStore(t, file).Ping(ctx)
	if sessionstore.KindOf(err) != sessionstore.ErrConfig || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Ping on a file: %v (%s)", err, sessionstore.KindOf(err))
	}

	if s, err := sessionstore.New(sessionstore.Config{Backend: sessionstore.BackendFilesystem, URL: "file://" + dir}); err != nil || s.(*dirStore).dir != dir {
		t.Errorf("file URL: %v", err)
	}
	for _, cfg := range []sessionstore.Config{
		{Backend: sessionstore.BackendFilesystem},
		{Backend: sessionstore.BackendFilesystem, Dir: "relative/dir"},
		{Backend: sessionstore.BackendFilesystem, URL: "redis://localhost"},
		{Backend: sessionstore.BackendFilesystem, URL: "file://host/dir"},
	} {
		if _, err := sessionstore.New(cfg); sessionstore.KindOf(err) != sessionstore.ErrConfig {
			t.Errorf("New(%+v): %v, want a config error", cfg, err)
		}
	}
}

// A live session comes out of a cleanup as it went in: same inode, content
// and times. On Linux the read does not even update its access time, which
// relatime would do here (the access time is older than the change).
func TestFilesystemLeavesLiveFilesUntouched(t *testing.T) {
	dir := t.TempDir()
	name := fsTestName("session:live")
	content := fsTestContent(uint32(time.Now().Unix() + 3600))
	fsTestWrite(t, dir, name, content)
	fsTestWrite(t, dir, fsTestName("session:expired"), fsTestContent(1))
	path := filepath.Join(dir, name)
	atime, mtime := time.Now().Add(-48*time.Hour).Truncate(time.Second), time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(path, atime, mtime); err != nil {
		t.Fatal(err)
	}
	before := fsTestInode(t, dir, name)
	rep := fsTestCleanup(t, fsTestStore(t, dir), sessionstore.CleanupOptions{})
	if rep.Deleted != 1 || rep.Scanned != 2 {
		t.Fatalf("report %+v", rep)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if gotAtime := time.Unix(st.Atim.Unix()); runtime.GOOS == "linux" && !gotAtime.Equal(atime) {
		t.Errorf("reading the header updated the access time to %v (was %v)", gotAtime, atime)
	}
	if gotMtime := time.Unix(st.Mtim.Unix()); st.Ino != before || !gotMtime.Equal(mtime) {
		t.Errorf("live session changed: inode %d (was %d), mtime %v (was %v)", st.Ino, before, gotMtime, mtime)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, content) {
		t.Errorf("live session holds %x, want %x", got, content)
	}
}
