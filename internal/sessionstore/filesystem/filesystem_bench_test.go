//go:build unix

package filesystem

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

const fsBenchFiles = 200_000

var fsBenchRound int

// fsBenchValue is what Flask-Session pickles for a small session:
// pickle.dumps({'_permanent': True, 'user_id': 'a'*32, 'csrf_token': 'b'*40}, 5).
var fsBenchValue = []byte("\x80\x05\x95x\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\n_permanent\x94\x88\x8c\x07user_id\x94\x8c " +
	strings.Repeat("a", 32) + "\x94\x8c\ncsrf_token\x94\x8c(" + strings.Repeat("b", 40) + "\x94u.")

// fsBenchFill makes fsBenchFiles session files in cachelib >= 0.7's layout,
// every other one expired, flushes them to disk as a store's files would
// long have been, and returns the expired names in the order the directory
// lists them (the order `find dir` would give, and the one Cleanup visits).
// It reads no file back: a read would update access times, and writing
// those back would burden whatever runs next.
func fsBenchFill(b *testing.B, dir string, now time.Time) []string {
	b.Helper()
	d, err := os.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	dirfd := int(d.Fd())
	content := append(make([]byte, 4), fsBenchValue...)
	isExpired := make(map[string]bool, fsBenchFiles)
	for i := range fsBenchFiles {
		expires := now.Unix() + 3600
		if i%2 == 0 {
			expires = now.Unix() - 3600
		}
		binary.NativeEndian.PutUint32(content, uint32(expires))
		name := fsTestName(fmt.Sprintf("session:bench-%d", i))
		isExpired[name] = i%2 == 0
		fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
		if err == nil {
			_, err = unix.Write(fd, content)
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
	expired := names[:0]
	for _, name := range names {
		if isExpired[name] {
			expired = append(expired, name)
		}
	}
	if len(expired) != fsBenchFiles/2 {
		b.Fatalf("fill: %d expired files, want %d", len(expired), fsBenchFiles/2)
	}
	unix.Sync()
	return expired
}

// BenchmarkFilesystemCleanup runs Cleanup on 200,000 session files, half
// expired, beside the baseline: unlinking the same expired files from a
// precomputed list, with os.Remove in a loop and with `xargs rm` (and, for
// information, os.Remove from as many goroutines as Cleanup has workers).
// Each op fills a directory alike for each (not timed) and runs them on
// those in turn, so a machine whose load drifts over the run touches all
// alike;
// ns/op is Cleanup's, and the metrics give each one's seconds and Cleanup's
// ratio to each baseline. Run with -benchtime 1x: one op takes minutes.
func BenchmarkFilesystemCleanup(b *testing.B) {
	type approach struct {
		name   string
		remove func(b *testing.B, dir string, expired []string, now time.Time)
	}
	approaches := []approach{
		{"cleanup", func(b *testing.B, dir string, expired []string, now time.Time) {
			store, err := sessionstore.New(sessionstore.Config{Backend: sessionstore.BackendFilesystem, Dir: dir})
			if err != nil {
				b.Fatal(err)
			}
			rep, err := store.Cleanup(context.Background(), sessionstore.CleanupOptions{Now: now, BatchSize: 1000})
			if err != nil || rep.Deleted != int64(len(expired)) || rep.Scanned != fsBenchFiles {
				b.Fatalf("Cleanup: %+v, %v", rep, err)
			}
		}},
		{"remove-list", func(b *testing.B, dir string, expired []string, _ time.Time) {
			for _, name := range expired {
				if err := os.Remove(filepath.Join(dir, name)); err != nil {
					b.Fatal(err)
				}
			}
		}},
		// Not the baseline the target is set against, but shown beside it:
		// Cleanup removes with workerCount goroutines, so here is the unlink
		// rate of that many.
		{"remove-list-parallel", func(b *testing.B, dir string, expired []string, _ time.Time) {
			var wg sync.WaitGroup
			errs := make([]error, workerCount)
			for w := range workerCount {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < len(expired) && errs[w] == nil; i += workerCount {
						errs[w] = os.Remove(filepath.Join(dir, expired[i]))
					}
				}()
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				b.Fatal(err)
			}
		}},
		{"xargs-rm", func(b *testing.B, dir string, expired []string, _ time.Time) {
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
	seconds := make([]float64, len(approaches))
	b.StopTimer()
	for range b.N {
		// Each op starts with the next approach, so that none always runs
		// right after another's removal of the leftover files.
		fsBenchRound++
		for k := range approaches {
			i := (k + fsBenchRound) % len(approaches)
			a := approaches[i]
			dir, err := os.MkdirTemp(b.TempDir(), a.name)
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			expired := fsBenchFill(b, dir, now)
			if i == 0 {
				b.StartTimer()
			}
			start := time.Now()
			a.remove(b, dir, expired, now)
			seconds[i] += time.Since(start).Seconds()
			b.StopTimer()
			if n := fsBenchCount(b, dir); n != fsBenchFiles/2 {
				b.Fatalf("%s: %d files left, want %d", a.name, n, fsBenchFiles/2)
			}
			if err := os.RemoveAll(dir); err != nil {
				b.Fatal(err)
			}
		}
	}
	for i, a := range approaches {
		b.ReportMetric(seconds[i]/float64(b.N), a.name+"-s/op")
		if i > 0 {
			b.ReportMetric(seconds[0]/seconds[i], "x-"+a.name)
		}
	}
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
