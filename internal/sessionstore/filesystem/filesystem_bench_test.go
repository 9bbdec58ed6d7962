//go:build unix

package filesystem

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// fsBenchSizes are the directory sizes benchmarked; SESSIONSTORE_BENCH_FS_FILES
// (a comma-separated list) picks others, e.g. 40000 alone for a quick run.
func fsBenchSizes(b *testing.B) []int {
	spec := os.Getenv("SESSIONSTORE_BENCH_FS_FILES")
	if spec == "" {
		return []int{40_000, 200_000}
	}
	var sizes []int
	for _, field := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || n < 2 {
			b.Fatalf("SESSIONSTORE_BENCH_FS_FILES=%q: %q is not a file count", spec, field)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// fsBenchRounds is how many rounds each op runs (SESSIONSTORE_BENCH_FS_ROUNDS,
// default 3); the figures reported are the rounds' medians.
func fsBenchRounds(b *testing.B) int {
	spec := os.Getenv("SESSIONSTORE_BENCH_FS_ROUNDS")
	if spec == "" {
		return 3
	}
	n, err := strconv.Atoi(spec)
	if err != nil || n < 1 {
		b.Fatalf("SESSIONSTORE_BENCH_FS_ROUNDS=%q is not a number of rounds", spec)
	}
	return n
}

// fsBenchValue is what Flask-Session pickles for a small session:
// pickle.dumps({'_permanent': True, 'user_id': 'a'*32, 'csrf_token': 'b'*40}, 5).
var fsBenchValue = []byte("\x80\x05\x95x\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\n_permanent\x94\x88\x8c\x07user_id\x94\x8c " +
	strings.Repeat("a", 32) + "\x94\x8c\ncsrf_token\x94\x8c(" + strings.Repeat("b", 40) + "\x94u.")

// fsBenchFill makes files session files in cachelib >= 0.7's layout, every
// other one expired, flushes them to disk as a store's files would long
// have been, and returns the expired names in the order the directory lists
// them (the order `find dir` would give, and the one Cleanup visits). It
// reads no file back: a read would update access times, and writing those
// back would burden whatever runs next.
func fsBenchFill(b *testing.B, dir string, files int, now time.Time) []string {
	b.Helper()
	d, err := os.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	content := append(make([]byte, 4), fsBenchValue...)
	isExpired := make(map[string]bool, files)
	for i := range files {
		expires := now.Unix() + 3600
		if i%2 == 0 {
			expires = now.Unix() - 3600
		}
		binary.NativeEndian.PutUint32(content, uint32(expires))
		name := fsTestName(fmt.Sprintf("session:bench-%d", i))
		isExpired[name] = i%2 == 0
		fd, err := createNew(int(d.Fd()), name, 0o600)
		if err == nil {
			err = writeAll(fd, content)
			unix.Close(fd)
		}
		if err != nil {
			b.Fatalf("fill: %v", err)
		}
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		b.Fatal(err)
	}
	expired := slices.DeleteFunc(names, func(name string) bool { return !isExpired[name] })
	if len(expired) != files/2 {
		b.Fatalf("fill: %d expired files, want %d", len(expired), files/2)
	}
	unix.Sync()
	return expired
}

// fsBenchApproach removes the expired files of a filled directory.
type fsBenchApproach struct {
	name   string
	remove func(b *testing.B, dir string, files int, expired []string)
}

var fsBenchApproaches = []fsBenchApproach{
	{"cleanup", func(b *testing.B, dir string, files int, expired []string) {
		store, err := sessionstore.New(sessionstore.Config{Backend: sessionstore.BackendFilesystem, Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		rep, err := store.Cleanup(context.Background(), sessionstore.CleanupOptions{BatchSize: 1000})
		if err != nil || rep.Deleted != int64(len(expired)) || rep.Scanned != int64(files) {
			b.Fatalf("Cleanup: %+v, %v", rep, err)
		}
	}},
	{"remove-list", func(b *testing.B, dir string, _ int, expired []string) {
		for _, name := range expired {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				b.Fatal(err)
			}
		}
	}},
	{"xargs-rm", func(b *testing.B, dir string, _ int, expired []string) {
		cmd := exec.Command("xargs", "-0", "rm", "-f", "--")
		cmd.Dir = dir
		cmd.Stdin = strings.NewReader(strings.Join(expired, "\x00"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			b.Fatalf("xargs rm: %v: %s", err, stderr.String())
		}
	}},
}

// BenchmarkFilesystemCleanup runs Cleanup on directories of session files,
// half expired (40,000 and 200,000 files unless SESSIONSTORE_BENCH_FS_FILES
// says otherwise), beside the baselines: unlinking the same expired files
// from a precomputed list, with os.Remove in a loop and with `xargs rm`.
// Each round fills a directory alike for each (not timed) and runs them on
// those in turn, starting with a different one each round, so that load
// drift on the machine touches all alike. ns/op is meaningless; the metrics
// give each one's median seconds and the median of Cleanup's per-round
// ratio to each baseline. Run with -benchtime 1x.
func BenchmarkFilesystemCleanup(b *testing.B) {
	for _, files := range fsBenchSizes(b) {
		b.Run(fmt.Sprintf("files=%d", files), func(b *testing.B) {
			rounds := fsBenchRounds(b)
			seconds := make([][]float64, len(fsBenchApproaches))
			for range b.N {
				for round := range rounds {
					for k := range fsBenchApproaches {
						i := (k + round) % len(fsBenchApproaches)
						seconds[i] = append(seconds[i], fsBenchTime(b, fsBenchApproaches[i], files))
					}
				}
			}
			fsBenchReport(b, seconds)
		})
	}
}

// fsBenchTime fills a fresh directory and times one approach on it.
func fsBenchTime(b *testing.B, a fsBenchApproach, files int) float64 {
	b.StopTimer()
	dir, err := os.MkdirTemp(b.TempDir(), a.name)
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	now := time.Now()
	expired := fsBenchFill(b, dir, files, now)
	start := time.Now()
	a.remove(b, dir, files, expired)
	elapsed := time.Since(start).Seconds()
	if n := fsBenchCount(b, dir); n != files-files/2 {
		b.Fatalf("%s: %d files left, want %d", a.name, n, files-files/2)
	}
	b.Logf("%s: %.2f s", a.name, elapsed)
	return elapsed
}

func fsBenchReport(b *testing.B, seconds [][]float64) {
	for i, a := range fsBenchApproaches {
		b.ReportMetric(fsMedian(seconds[i]), a.name+"-s")
		if i == 0 {
			continue
		}
		ratios := make([]float64, len(seconds[0]))
		for r := range ratios {
			ratios[r] = seconds[0][r] / seconds[i][r]
		}
		b.Logf("cleanup / %s per round: %.2f", a.name, ratios)
		b.ReportMetric(fsMedian(ratios), "x-"+a.name)
	}
}

func fsMedian(values []float64) float64 {
	sorted := slices.Sorted(slices.Values(values))
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func fsBenchCount(b *testing.B, dir string) int {
	d, err := os.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		b.Fatal(err)
	}
	return len(names)
}
