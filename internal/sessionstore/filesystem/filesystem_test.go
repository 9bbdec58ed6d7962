//go:build unix

package filesystem

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
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

func fsTestStore(t *testing.T, dir string) *dirStore {
	t.Helper()
	store, err := sessionstore.New(sessionstore.Config{Backend: sessionstore.BackendFilesystem, Dir: dir})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return store.(*dirStore)
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
		t.Fatalf("test setup: cachelib counts %v files, want the 38 sessions the app wrote", n)
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

	// The count file: cachelib reads the true count, 26 entries it lists
	// (20 live, 3 never, and the 3 other files it would count too), in its own
	// layout and mode.
	if n := fsCachelibCount(t, dir); n == nil || *n != 26 {
		t.Errorf("cachelib reads a count of %v, want 26", n)
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
	rep = fsTestCleanup(t, store, sessionstore.CleanupOptions{})
	if rep.Expired != 0 || rep.Deleted != 0 || rep.Scanned != 26 {
		t.Errorf("second run: %+v", rep)
	}
	if fsTestInode(t, dir, cachelib.CountFiles[0]) != countInode {
		t.Errorf("second run rewrote a count file that was right")
	}

	all := append(append(append([]storetest.FlaskSession{}, live...), never...), expired...)
	got := fsFlaskRead(t, dir, all)
	for _, s := range append(append([]storetest.FlaskSession{}, live...), never...) {
		if v := got[s.SID]; v == nil || *v != s.Value {
			t.Errorf("live session %s reads back as %v, want %q", s.SID, v, s.Value)
		}
	}
	for _, s := range expired {
		if v := got[s.SID]; v != nil {
			t.Errorf("expired session %s reads back as %q", s.SID, *v)
		}
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

// Files in the layout of cachelib < 0.7 and werkzeug.contrib.cache, written
// by Python's own pickle: int headers in each opcode pickle protocol 1 uses
// for them, floats, and 0 for never; the count file in that layout too.
func TestFilesystemOldPickledHeaders(t *testing.T) {
	dir := t.TempDir()
	now := time.Now().Unix()
	type entry struct {
		Key     string `json:"key"`
		Expires any    `json:"expires"`
		Value   any    `json:"value"`
		Proto   int    `json:"proto,omitempty"`
	}
	expired := []entry{
		{Key: "session:k1", Expires: 1},                                   // BININT1
		{Key: "session:m300", Expires: 300},                               // BININT2
		{Key: "session:j-past", Expires: now - 100},                       // BININT
		{Key: "session:negative", Expires: -5},                            // BININT, signed
		{Key: "session:float-past", Expires: float64(now) - 100.5},        // BINFLOAT
		{Key: "session:py2", Expires: now - 1000, Proto: 2},               // a Python 2 app's value pickle
		{Key: "session:float-just-past", Expires: float64(now) - 0.00001}, // still before the cut-off
	}
	live := []entry{
		{Key: "session:j-future", Expires: now + 3600},
		{Key: "session:long-2038", Expires: int64(math.MaxInt32) + 5}, // LONG, text
		{Key: "session:float-future", Expires: float64(now) + 3600.25},
		{Key: "session:float-huge", Expires: 1e12},
	}
	never := []entry{
		{Key: "session:never-int", Expires: 0},
		{Key: "session:never-float", Expires: 0.0},
	}
	var all []entry
	for i, group := range [][]entry{expired, live, never} {
		for j := range group {
			group[j].Value = map[string]any{"_permanent": true, "value": fmt.Sprintf("%d-%s", i, group[j].Key)}
			all = append(all, group[j])
		}
	}
	// 1e12 and 0.0 would reach python as ints through JSON: force floats.
	in, _ := json.Marshal(all)
	in = bytes.ReplaceAll(in, []byte(`"expires":1000000000000,`), []byte(`"expires":1e12,`))
	in = bytes.Replace(in, []byte(`"key":"session:never-float","expires":0,`), []byte(`"key":"session:never-float","expires":0.0,`), 1)
	var raw json.RawMessage = in
	fsTestPython(t, raw, "oldwrite", dir)
	// An old count file: header pickle.dump(0, f, 1), value from Python 2.
	fsTestPython(t, []entry{{Key: "__wz_cache_count", Expires: 0, Value: 99, Proto: 2}}, "oldwrite", dir)

	for _, e := range all {
		data, err := os.ReadFile(filepath.Join(dir, fsTestName(e.Key)))
		if err != nil {
			t.Fatal(err)
		}
		// 'M' 300 '.' PROTO also reads as a 4-byte header (of 1994).
		if _, ok := cachelib.ParseStructHeader(data); ok && e.Key != "session:m300" {
			t.Fatalf("test setup: %s (%x) is not in the pickled layout", e.Key, data[:8])
		}
	}
	if data, _ := os.ReadFile(filepath.Join(dir, fsTestName("session:float-huge"))); data[0] != 'G' {
		t.Fatalf("test setup: 1e12 was not written as a float: %x", data)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, fsTestName("session:long-2038"))); data[0] != 'L' {
		t.Fatalf("test setup: 2**31+5 was not written as a LONG: %x", data)
	}

	store := fsTestStore(t, dir)
	rep := fsTestCleanup(t, store, sessionstore.CleanupOptions{BatchSize: 3})
	t.Logf("report: %+v", rep)
	if rep.Scanned != int64(len(all)) || rep.Expired != int64(len(expired)) || rep.Deleted != int64(len(expired)) {
		t.Errorf("scanned %d, expired %d, deleted %d; want %d, %d, %d", rep.Scanned, rep.Expired, rep.Deleted, len(all), len(expired), len(expired))
	}
	if len(rep.Kept) != 1 || rep.Kept["noExpiry"] != 2 {
		t.Errorf("kept %v, want 2 with no expiry", rep.Kept)
	}
	if !strings.Contains(rep.Message, fmt.Sprintf("%d files have the pickled header", len(all)-1)) {
		t.Errorf("message does not count the old layout: %s", rep.Message)
	}

	keys := make([]string, len(all))
	for i, e := range all {
		keys[i] = e.Key
	}
	var got map[string]any
	fsTestPythonJSON(t, &got, keys, "oldget", dir)
	for _, e := range expired {
		if fsTestExists(t, dir, fsTestName(e.Key)) {
			t.Errorf("expired %s (expires %v) is still there", e.Key, e.Expires)
		}
	}
	for _, e := range append(append([]entry{}, live...), never...) {
		if fmt.Sprint(got[e.Key]) != fmt.Sprint(e.Value) {
			t.Errorf("%s (expires %v) reads back as %v, want %v", e.Key, e.Expires, got[e.Key], e.Value)
		}
	}
	// The count: 6 files, written back in the old layout with the value's
	// protocol 2, as old cachelib reads it.
	var count map[string]any
	fsTestPythonJSON(t, &count, []string{"__wz_cache_count"}, "oldget", dir)
	if fmt.Sprint(count["__wz_cache_count"]) != "6" {
		t.Errorf("old cachelib reads the count as %v, want 6", count["__wz_cache_count"])
	}
	data, err := os.ReadFile(filepath.Join(dir, cachelib.CountFiles[0]))
	if err != nil {
		t.Fatal(err)
	}
	var pickled []string
	fsTestPythonJSON(t, &pickled, [][2]any{{0, 1}, {6, 2}}, "pickle")
	if want := pickled[0] + pickled[1]; hex.EncodeToString(data) != want {
		t.Errorf("count file is %x, want pickle.dumps(0, 1) + pickle.dumps(6, 2) = %s", data, want)
	}
}

// Header forms, checked against Python's own pickle.dumps(x, 1), and the
// forms Python 2 wrote (INT text for ints beyond 32 bits, longs with an L).
func TestFilesystemHeaderParsing(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	values := []any{0, 1, 255, 256, 65535, 65536, 1_699_999_999, 1_700_000_000, 1_700_000_001, math.MaxInt32,
		int64(math.MaxInt32) + 1, int64(1) << 40, -1, -300, -(int64(1) << 40), 1_699_999_999.5, 1_700_000_000.5, 0.0, 1e300, -1e300}
	var in [][2]any
	for _, v := range values {
		in = append(in, [2]any{v, 1})
	}
	raw, _ := json.Marshal(in)
	// JSON would hand python the float zero as an int.
	raw = bytes.Replace(raw, []byte("[0,1],[1e+300"), []byte("[0.0,1],[1e+300"), 1)
	var pickled []string
	fsTestPythonJSON(t, &pickled, json.RawMessage(raw), "pickle")
	want := []cachelib.State{cachelib.Never, cachelib.Expired, cachelib.Expired, cachelib.Expired, cachelib.Expired, cachelib.Expired, cachelib.Expired, cachelib.Live, cachelib.Live, cachelib.Live,
		cachelib.Live, cachelib.Live, cachelib.Expired, cachelib.Expired, cachelib.Expired, cachelib.Expired, cachelib.Live, cachelib.Never, cachelib.Live, cachelib.Expired}
	for i, h := range pickled {
		header, _ := hex.DecodeString(h)
		file := append(header, fsTestValue...)
		state, format := cachelib.Classify(file, now)
		// 'M' x x '.' PROTO also reads as a 4-byte header; both say expired.
		if state != want[i] || format != cachelib.FormatPickle && header[0] != 'M' {
			t.Errorf("pickle.dumps(%v, 1) = %x: state %v format %v, want %v in the pickled layout", values[i], header, state, format, want[i])
		}
		// Cut anywhere before the value's protocol byte: unreadable.
		for cut := 0; cut < len(header)+2; cut++ {
			if state, _ := cachelib.Classify(file[:cut], now); state != cachelib.Unreadable {
				t.Errorf("pickle.dumps(%v, 1) cut to %d bytes reads as %v", values[i], cut, state)
			}
		}
	}
	if !strings.HasPrefix(pickled[10], hex.EncodeToString([]byte("L2147483648L\n"))) {
		t.Errorf("python wrote 2**31 as %s; the test expects the LONG text form", pickled[10])
	}

	for _, c := range []struct {
		name   string
		header string
		want   cachelib.State
	}{
		{"python 2 int beyond 32 bits", "I1700000001\n.", cachelib.Live},
		{"python 2 int beyond 32 bits, past", "I1699999999\n.", cachelib.Expired},
		{"python 2 long", "L1700000001L\n.", cachelib.Live},
		{"python 2 bool (protocol 1 INT)", "I01\n.", cachelib.Expired},
		{"no STOP", "J\x01\x02\x03\x04", cachelib.Unreadable},
		{"LONG without newline", "L17000000017000000000000000000000000000", cachelib.Unreadable},
		{"LONG out of range", "L99999999999999999999999L\n.", cachelib.Unreadable},
		{"NaN", "G\x7f\xf8\x00\x00\x00\x00\x00\x00.", cachelib.Unreadable},
		{"None", "N.", cachelib.Unreadable},
	} {
		state, _ := cachelib.Classify(append([]byte(c.header), fsTestValue...), now)
		if state != c.want {
			t.Errorf("%s: %v, want %v", c.name, state, c.want)
		}
	}

	// cachelib >= 0.7: the cut-off is strict, as cachelib serves a file
	// while expires >= time().
	for _, c := range []struct {
		expires uint32
		now     time.Time
		want    cachelib.State
	}{
		{1_700_000_000, now, cachelib.Live},
		{1_700_000_000, now.Add(time.Nanosecond), cachelib.Expired},
		{1_699_999_999, now, cachelib.Expired},
		{0, now.Add(100 * 365 * 24 * time.Hour), cachelib.Never},
		{math.MaxUint32, now, cachelib.Live},
	} {
		state, format := cachelib.Classify(fsTestContent(c.expires), c.now)
		if state != c.want || format != cachelib.FormatStruct {
			t.Errorf("expires %d at %v: %v (format %v), want %v", c.expires, c.now, state, format, c.want)
		}
	}
	for _, b := range [][]byte{nil, {1}, {1, 2, 3, 4}, {1, 2, 3, 4, 0x80}, {1, 2, 3, 4, 0x80, 1}, {1, 2, 3, 4, '}', '.'}} {
		if state, _ := cachelib.Classify(b, now); state != cachelib.Unreadable {
			t.Errorf("%x reads as %v, want unreadable", b, state)
		}
	}

	// Both layouts fit: 'M' x x '.' then PROTO is also a 4-byte header. They
	// agree (both long past): the file is expired.
	both := []byte{'M', 0x10, 0x20, '.', 0x80, 5, '}', '.'}
	if state, format := cachelib.Classify(both, now); state != cachelib.Expired || format != cachelib.FormatStruct {
		t.Errorf("%x: %v %v, want expired", both, state, format)
	}
	// A float header whose bytes also read as a 4-byte header: they
	// disagree (the float is in the future, the 4 bytes in 2015), so the
	// file is kept as unreadable.
	float := make([]byte, 0, 16)
	float = append(float, 'G')
	float = binary.BigEndian.AppendUint64(float, math.Float64bits(1_700_000_000+30*86400))
	float[4], float[5] = 0x80, 5 // make bytes 4 and 5 look like PROTO 5
	f := math.Float64frombits(binary.BigEndian.Uint64(float[1:]))
	float = append(float, '.', 0x80, 5, '}', '.')
	if f < 1_700_000_000 || f > 1_800_000_000 {
		t.Fatalf("test setup: float %v is not a plausible future time", f)
	}
	if state, _ := cachelib.Classify(float, now); state != cachelib.Unreadable {
		t.Errorf("ambiguous float header %x reads as %v, want unreadable", float, state)
	}
}

func TestFilesystemPickleIntMatchesPython(t *testing.T) {
	values := []int64{0, 1, 26, 255, 256, 65535, 65536, 200_000, math.MaxInt32, int64(math.MaxInt32) + 1, 1 << 32, 1<<40 + 3, 1<<63 - 1}
	var in [][2]int64
	for _, v := range values {
		for proto := int64(2); proto <= 5; proto++ {
			in = append(in, [2]int64{v, proto})
		}
	}
	var want []string
	fsTestPythonJSON(t, &want, in, "pickle")
	for i, c := range in {
		got := cachelib.PickleInt(c[0], byte(c[1]))
		if hex.EncodeToString(got) != want[i] {
			t.Errorf("pickle.dumps(%d, %d): python %s, cachelib.PickleInt %x", c[0], c[1], want[i], got)
		}
		back, ok := cachelib.UnpickleInt(got)
		if !ok || back != c[0] {
			t.Errorf("cachelib.UnpickleInt(%x) = %d, %v; want %d", got, back, ok, c[0])
		}
	}
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
	// A directory, a symlink to an expired file and a FIFO under session names.
	if err := os.Mkdir(filepath.Join(dir, fsTestName("dir")), 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, fsTestContent(1), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, fsTestName("symlink"))); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, fsTestName("fifo")), 0o600); err != nil {
		t.Fatal(err)
	}
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

// A session refreshed between the read and the delete is kept, whether the
// refresh lands before the file is taken (a new inode), rewrites it in place,
// or comes right after it was taken (a newer file at the name).
func TestFilesystemReplacedAfterReadIsKept(t *testing.T) {
	now := uint32(time.Now().Unix())
	expired, live, newer := fsTestContent(now-10), fsTestContent(now+3600), append(fsTestContent(now+7200), 'n')
	name := fsTestName("session:refreshed")
	cases := []struct {
		name        string
		beforeTake  func(t *testing.T, dir string)
		afterTake   func(t *testing.T, dir string)
		wantDeleted int64
		want        []byte // nil: gone
	}{
		{
			name:       "replaced by a refresh before it is taken",
			beforeTake: func(t *testing.T, dir string) { fsTestReplace(t, dir, name, live) },
			want:       live,
		},
		{
			name: "rewritten in place before it is taken",
			beforeTake: func(t *testing.T, dir string) {
				// Hooks run on a worker goroutine: no t.Fatal.
				f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY, 0)
				if err != nil {
					t.Error(err)
					return
				}
				defer f.Close()
				if _, err := f.WriteAt(live[:4], 0); err != nil {
					t.Error(err)
				}
			},
			want: live,
		},
		{
			name:       "replaced before it is taken, then again right after",
			beforeTake: func(t *testing.T, dir string) { fsTestReplace(t, dir, name, live) },
			afterTake:  func(t *testing.T, dir string) { fsTestReplace(t, dir, name, newer) },
			want:       newer,
		},
		{
			name:        "taken while expired, a new session written right after",
			afterTake:   func(t *testing.T, dir string) { fsTestReplace(t, dir, name, newer) },
			wantDeleted: 1,
			want:        newer,
		},
		{
			name: "deleted by the app before it is taken",
			beforeTake: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, name)); err != nil {
					t.Error(err)
				}
			},
		},
		{
			name:        "nothing happens",
			wantDeleted: 1,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			fsTestWrite(t, dir, name, expired)
			store := fsTestStore(t, dir)
			var calls int
			if c.beforeTake != nil {
				store.beforeTake = func(got string) {
					calls++
					if got != name {
						t.Errorf("hook called for %s", got)
					}
					c.beforeTake(t, dir)
				}
			}
			if c.afterTake != nil {
				store.afterTake = func(string) { calls++; c.afterTake(t, dir) }
			}
			rep := fsTestCleanup(t, store, sessionstore.CleanupOptions{})
			if rep.Expired != 1 || rep.Deleted != c.wantDeleted {
				t.Errorf("report %+v: want 1 expired, %d deleted", rep, c.wantDeleted)
			}
			if want := btoi(c.beforeTake != nil) + btoi(c.afterTake != nil); calls != want {
				t.Fatalf("hooks called %d times, want %d", calls, want)
			}
			got, err := os.ReadFile(filepath.Join(dir, name))
			switch {
			case c.want == nil && !errors.Is(err, os.ErrNotExist):
				t.Errorf("session file is still there (%x, %v)", got, err)
			case c.want != nil && !bytes.Equal(got, c.want):
				t.Errorf("session file holds %x (%v), want %x", got, err, c.want)
			}
			fsTestNoneAside(t, dir)
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Writers keep refreshing sessions, expired ones included (a user coming
// back after expiry gets a new session under the same name), while cleanups
// run in batches of 10: every session written live survives, and every
// session never refreshed is deleted. Most refreshes aim at the batch the
// cleanup is working on, so that some land between a file's read and its
// removal.
func TestFilesystemConcurrentRefreshes(t *testing.T) {
	const (
		files   = 2000
		writers = 3
		rounds  = 3
		batch   = 10
	)
	var raced int64
	for round := range rounds {
		dir := t.TempDir()
		now := time.Now()
		for i := range files {
			expires := uint32(now.Unix() - 60)
			if i%3 == 0 {
				expires = uint32(now.Unix() + 3600)
			}
			fsTestWrite(t, dir, fsTestName(fmt.Sprintf("session:%d-%d", round, i)), fsTestContent(expires))
		}
		// The order the cleanup lists them in.
		d, err := os.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		names, err := d.Readdirnames(-1)
		d.Close()
		if err != nil {
			t.Fatal(err)
		}
		initiallyLive := map[string]bool{}
		for _, name := range names {
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			initiallyLive[name] = binary.NativeEndian.Uint32(data) > uint32(now.Unix())
		}

		var refreshed sync.Map
		var stop atomic.Bool
		var position atomic.Int64 // entries the cleanup has listed so far
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(round), uint64(w)))
				for !stop.Load() {
					i := rng.IntN(files)
					if rng.IntN(4) != 0 {
						i = min(files-1, int(position.Load())+rng.IntN(2*batch))
					}
					fsTestReplace(t, dir, names[i], fsTestContent(uint32(time.Now().Unix()+3600)))
					refreshed.Store(names[i], true)
				}
			}()
		}
		store := fsTestStore(t, dir)
		rep, err := store.Cleanup(context.Background(), sessionstore.CleanupOptions{BatchSize: batch, Progress: func(p sessionstore.Report) {
			position.Store(int64(p.Batches * batch))
		}})
		stop.Store(true)
		wg.Wait()
		if err != nil {
			t.Fatalf("Cleanup: %v", err)
		}
		var lost, left, live int
		for _, name := range names {
			_, wasRefreshed := refreshed.Load(name)
			data, err := os.ReadFile(filepath.Join(dir, name))
			switch {
			case wasRefreshed || initiallyLive[name]:
				live++
				if err != nil || len(data) < 4 || binary.NativeEndian.Uint32(data) < uint32(now.Unix()+3600) {
					lost++
					t.Errorf("live session %s lost (%x, %v)", name, data, err)
				}
			case err == nil:
				left++
			}
		}
		if left > 0 {
			t.Errorf("round %d: %d expired sessions never refreshed are still there", round, left)
		}
		fsTestNoneAside(t, dir)
		raced += rep.Expired - rep.Deleted
		t.Logf("round %d: %d live or refreshed, %d lost; report %+v", round, live, lost, rep)
	}
	t.Logf("%d expired files were refreshed or replaced between their read and their removal, all kept", raced)
}

// The same with the real cachelib refreshing sessions from Python.
func TestFilesystemConcurrentCachelibRefreshes(t *testing.T) {
	const files = 3000
	dir := t.TempDir()
	now := time.Now()
	keys := make([]string, files)
	for i := range keys {
		keys[i] = fmt.Sprintf("session:%d", i)
		fsTestWrite(t, dir, fsTestName(keys[i]), fsTestContent(uint32(now.Unix()-60)))
	}
	cmd := exec.Command(storetest.Python, storetest.Script(fsFlaskScript), "refresh", dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdoutPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start python (run hack/start-services.sh flask): %v", err)
	}
	stdout := bufio.NewReader(stdoutPipe)
	keysJSON, _ := json.Marshal(keys)
	if _, err := stdin.Write(append(keysJSON, '\n')); err != nil {
		t.Fatal(err)
	}
	if line, err := stdout.ReadString('\n'); err != nil || line != "ready\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("cachelib refresher did not start (%q, %v); run hack/start-services.sh flask\n%s", line, err, stderr.String())
	}

	store := fsTestStore(t, dir)
	rep, cleanupErr := store.Cleanup(context.Background(), sessionstore.CleanupOptions{BatchSize: 10})
	stdin.Close()
	rest, _ := io.ReadAll(stdout)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("cachelib refresher: %v\n%s", err, stderr.String())
	}
	if cleanupErr != nil {
		t.Fatalf("Cleanup: %v", cleanupErr)
	}
	var last map[string]map[string]any
	if err := json.Unmarshal(rest, &last); err != nil {
		t.Fatalf("refresher printed %q: %v", rest, err)
	}
	t.Logf("cachelib refreshed %d sessions during the run; report %+v", len(last), rep)
	if len(last) < 10 {
		t.Fatalf("only %d sessions refreshed during the cleanup: the test did not race", len(last))
	}
	var got map[string]map[string]any
	fsTestPythonJSON(t, &got, keys, "get", dir)
	var gone int
	for _, key := range keys {
		want, refreshed := last[key]
		switch {
		case refreshed && fmt.Sprint(got[key]) != fmt.Sprint(want):
			t.Errorf("refreshed session %s reads back as %v, want %v", key, got[key], want)
		case !refreshed:
			if fsTestExists(t, dir, fsTestName(key)) {
				t.Errorf("expired session %s, never refreshed, is still there", key)
			}
			gone++
		}
	}
	// Sessions deleted and then written anew by cachelib count as deleted too.
	if rep.Deleted < int64(gone) {
		t.Errorf("deleted %d, but %d never-refreshed sessions are gone", rep.Deleted, gone)
	}
	fsTestNoneAside(t, dir)
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
	before := snapshot()
	rep := fsTestCleanup(t, fsTestStore(t, dir), sessionstore.CleanupOptions{DryRun: true, BatchSize: 3})
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
