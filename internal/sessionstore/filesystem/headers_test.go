//go:build unix

package filesystem

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/filesystem/cachelib"
)

// fsOldEntry is a file for the script's oldwrite mode.
type fsOldEntry struct {
	Key     string `json:"key"`
	Expires any    `json:"expires"`
	Value   any    `json:"value"`
	Proto   int    `json:"proto,omitempty"`
}

// fsOldEntries are int headers in each opcode pickle protocol 1 uses for
// them, floats, and 0 for never, around now.
func fsOldEntries(now int64) (expired, live, never []fsOldEntry) {
	expired = []fsOldEntry{
		{Key: "session:k1", Expires: 1},                                   // BININT1
		{Key: "session:m300", Expires: 300},                               // BININT2
		{Key: "session:j-past", Expires: now - 100},                       // BININT
		{Key: "session:negative", Expires: -5},                            // BININT, signed
		{Key: "session:float-past", Expires: float64(now) - 100.5},        // BINFLOAT
		{Key: "session:py2", Expires: now - 1000, Proto: 2},               // a Python 2 app's value pickle
		{Key: "session:float-just-past", Expires: float64(now) - 0.00001}, // still before the cut-off
	}
	live = []fsOldEntry{
		{Key: "session:j-future", Expires: now + 3600},
		{Key: "session:long-2038", Expires: int64(math.MaxInt32) + 5}, // LONG, text
		{Key: "session:float-future", Expires: float64(now) + 3600.25},
		{Key: "session:float-huge", Expires: 1e12},
	}
	never = []fsOldEntry{
		{Key: "session:never-int", Expires: 0},
		{Key: "session:never-float", Expires: 0.0},
	}
	for i, group := range [][]fsOldEntry{expired, live, never} {
		for j := range group {
			group[j].Value = map[string]any{"_permanent": true, "value": fmt.Sprintf("%d-%s", i, group[j].Key)}
		}
	}
	return expired, live, never
}

// fsWriteOldEntries writes entries with Python's own pickle, the way
// cachelib < 0.7 did, beside an old count file of 99 from Python 2.
func fsWriteOldEntries(t *testing.T, dir string, all []fsOldEntry) {
	// 1e12 and 0.0 would reach python as ints through JSON: force floats.
	in, _ := json.Marshal(all)
	in = bytes.ReplaceAll(in, []byte(`"expires":1000000000000,`), []byte(`"expires":1e12,`))
	in = bytes.Replace(in, []byte(`"key":"session:never-float","expires":0,`), []byte(`"key":"session:never-float","expires":0.0,`), 1)
	fsTestPython(t, json.RawMessage(in), "oldwrite", dir)
	fsTestPython(t, []fsOldEntry{{Key: "__wz_cache_count", Expires: 0, Value: 99, Proto: 2}}, "oldwrite", dir)
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
}

// Files in the layout of cachelib < 0.7 and werkzeug.contrib.cache, written
// by Python's own pickle; the count file in that layout too.
func TestFilesystemOldPickledHeaders(t *testing.T) {
	dir := t.TempDir()
	expired, live, never := fsOldEntries(time.Now().Unix())
	all := append(append(append([]fsOldEntry{}, expired...), live...), never...)
	fsWriteOldEntries(t, dir, all)

	rep := fsTestCleanup(t, fsTestStore(t, dir), sessionstore.CleanupOptions{BatchSize: 3})
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
	for _, e := range append(live, never...) {
		if fmt.Sprint(got[e.Key]) != fmt.Sprint(e.Value) {
			t.Errorf("%s (expires %v) reads back as %v, want %v", e.Key, e.Expires, got[e.Key], e.Value)
		}
	}
	fsCheckOldCountFile(t, dir, 6)
}

// fsCheckOldCountFile checks that the count file holds want, in the old
// layout with the value's protocol 2, as old cachelib reads it.
func fsCheckOldCountFile(t *testing.T, dir string, want int) {
	var count map[string]any
	fsTestPythonJSON(t, &count, []string{"__wz_cache_count"}, "oldget", dir)
	if fmt.Sprint(count["__wz_cache_count"]) != fmt.Sprint(want) {
		t.Errorf("old cachelib reads the count as %v, want %d", count["__wz_cache_count"], want)
	}
	data, err := os.ReadFile(filepath.Join(dir, cachelib.CountFiles[0]))
	if err != nil {
		t.Fatal(err)
	}
	var pickled []string
	fsTestPythonJSON(t, &pickled, [][2]any{{0, 1}, {want, 2}}, "pickle")
	if hex.EncodeToString(data) != pickled[0]+pickled[1] {
		t.Errorf("count file is %x, want pickle.dumps(0, 1) + pickle.dumps(%d, 2) = %s", data, want, pickled[0]+pickled[1])
	}
}

// Header forms, checked against Python's own pickle.dumps(x, 1), cut
// anywhere before the value's protocol byte too. (Hand-made forms, those of
// Python 2 and ambiguous ones are in package cachelib's table tests.)
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
	want := []cachelib.State{cachelib.Never, cachelib.Expired, cachelib.Expired, cachelib.Expired, cachelib.Expired, cachelib.Expired,
		cachelib.Expired, cachelib.Live, cachelib.Live, cachelib.Live, cachelib.Live, cachelib.Live, cachelib.Expired,
		cachelib.Expired, cachelib.Expired, cachelib.Expired, cachelib.Live, cachelib.Never, cachelib.Live, cachelib.Expired}
	for i, h := range pickled {
		header, _ := hex.DecodeString(h)
		file := append(header, fsTestValue...)
		state, format := cachelib.Classify(file, now)
		// 'M' x x '.' PROTO also reads as a 4-byte header; both say expired.
		if state != want[i] || format != cachelib.FormatPickle && header[0] != 'M' {
			t.Errorf("pickle.dumps(%v, 1) = %x: state %v format %v, want %v in the pickled layout", values[i], header, state, format, want[i])
		}
		for cut := 0; cut < len(header)+2; cut++ {
			if state, _ := cachelib.Classify(file[:cut], now); state != cachelib.Unreadable {
				t.Errorf("pickle.dumps(%v, 1) cut to %d bytes reads as %v", values[i], cut, state)
			}
		}
	}
	if !strings.HasPrefix(pickled[10], hex.EncodeToString([]byte("L2147483648L\n"))) {
		t.Errorf("python wrote 2**31 as %s; the test expects the LONG text form", pickled[10])
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
