//go:build unix

package filesystem

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/storetest"
)

// fsReplacedCase is one way a refresh can meet the cleanup's take.
type fsReplacedCase struct {
	name        string
	beforeTake  func(t *testing.T, dir string)
	afterTake   func(t *testing.T, dir string)
	wantDeleted int64
	want        []byte // nil: gone
}

func fsReplacedCases(name string, live, newer []byte) []fsReplacedCase {
	return []fsReplacedCase{
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
		{name: "nothing happens", wantDeleted: 1},
	}
}

// A session refreshed between the read and the delete is kept, whether the
// refresh lands before the file is taken (a new inode), rewrites it in place,
// or comes right after it was taken (a newer file at the name).
func TestFilesystemReplacedAfterReadIsKept(t *testing.T) {
	now := uint32(time.Now().Unix())
	expired, live, newer := fsTestContent(now-10), fsTestContent(now+3600), append(fsTestContent(now+7200), 'n')
	name := fsTestName("session:refreshed")
	for _, c := range fsReplacedCases(name, live, newer) {
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
	var raced int64
	for round := range 3 {
		raced += fsConcurrentRound(t, round)
	}
	t.Logf("%d expired files were refreshed or replaced between their read and their removal, all kept", raced)
}

const (
	fsRaceFiles   = 2000
	fsRaceWriters = 3
	fsRaceBatch   = 10
)

// fsConcurrentRound runs one round of TestFilesystemConcurrentRefreshes
// and returns how many expired files were refreshed under the cleanup.
func fsConcurrentRound(t *testing.T, round int) int64 {
	dir := t.TempDir()
	now := time.Now()
	for i := range fsRaceFiles {
		expires := uint32(now.Unix() - 60)
		if i%3 == 0 {
			expires = uint32(now.Unix() + 3600)
		}
		fsTestWrite(t, dir, fsTestName(fmt.Sprintf("session:%d-%d", round, i)), fsTestContent(expires))
	}
	// The order the cleanup lists them in.
	names := fsTestListingNames(t, dir)
	initiallyLive := map[string]bool{}
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		initiallyLive[name] = binary.NativeEndian.Uint32(data) > uint32(now.Unix())
	}
	var position atomic.Int64 // entries the cleanup has listed so far
	refreshed, stop := fsStartWriters(t, dir, names, round, &position)
	rep, err := fsTestStore(t, dir).Cleanup(t.Context(), sessionstore.CleanupOptions{BatchSize: fsRaceBatch, Progress: func(p sessionstore.Report) {
		position.Store(int64(p.Batches * fsRaceBatch))
	}})
	stop()
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	var left, live int
	for _, name := range names {
		_, wasRefreshed := refreshed.Load(name)
		data, err := os.ReadFile(filepath.Join(dir, name))
		switch {
		case wasRefreshed || initiallyLive[name]:
			live++
			if err != nil || len(data) < 4 || binary.NativeEndian.Uint32(data) < uint32(now.Unix()+3600) {
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
	t.Logf("round %d: %d live or refreshed; report %+v", round, live, rep)
	return rep.Expired - rep.Deleted
}

// fsStartWriters refreshes names from fsRaceWriters goroutines, mostly
// near position, until stop is called; refreshed holds the names written.
func fsStartWriters(t *testing.T, dir string, names []string, round int, position *atomic.Int64) (refreshed *sync.Map, stop func()) {
	refreshed = &sync.Map{}
	var stopped atomic.Bool
	var wg sync.WaitGroup
	for w := range fsRaceWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(round), uint64(w)))
			for !stopped.Load() {
				i := rng.IntN(len(names))
				if rng.IntN(4) != 0 {
					i = min(len(names)-1, int(position.Load())+rng.IntN(2*fsRaceBatch))
				}
				fsTestReplace(t, dir, names[i], fsTestContent(uint32(time.Now().Unix()+3600)))
				refreshed.Store(names[i], true)
			}
		}()
	}
	return refreshed, func() { stopped.Store(true); wg.Wait() }
}

// The same with the real cachelib refreshing sessions from Python.
func TestFilesystemConcurrentCachelibRefreshes(t *testing.T) {
	const files = 3000
	dir := t.TempDir()
	keys := make([]string, files)
	for i := range keys {
		keys[i] = fmt.Sprintf("session:%d", i)
		fsTestWrite(t, dir, fsTestName(keys[i]), fsTestContent(uint32(time.Now().Unix()-60)))
	}
	refresher := fsStartRefresher(t, dir, keys)
	rep, cleanupErr := fsTestStore(t, dir).Cleanup(t.Context(), sessionstore.CleanupOptions{BatchSize: 10})
	last := refresher.stop()
	if cleanupErr != nil {
		t.Fatalf("Cleanup: %v", cleanupErr)
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

// fsRefresher is the script's refresh mode: cachelib setting keys again
// and again until stopped.
type fsRefresher struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr bytes.Buffer
}

func fsStartRefresher(t *testing.T, dir string, keys []string) *fsRefresher {
	r := &fsRefresher{t: t, cmd: exec.Command(storetest.Python, storetest.Script(fsFlaskScript), "refresh", dir)}
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
	keysJSON, _ := json.Marshal(keys)
	if _, err := r.stdin.Write(append(keysJSON, '\n')); err != nil {
		t.Fatal(err)
	}
	if line, err := r.stdout.ReadString('\n'); err != nil || line != "ready\n" {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		t.Fatalf("cachelib refresher did not start (%q, %v); run hack/start-services.sh flask\n%s", line, err, r.stderr.String())
	}
	return r
}

// stop ends the refresher and returns the last value it set for each key.
func (r *fsRefresher) stop() map[string]map[string]any {
	r.stdin.Close()
	rest, _ := io.ReadAll(r.stdout)
	if err := r.cmd.Wait(); err != nil {
		r.t.Fatalf("cachelib refresher: %v\n%s", err, r.stderr.String())
	}
	var last map[string]map[string]any
	if err := json.Unmarshal(rest, &last); err != nil {
		r.t.Fatalf("refresher printed %q: %v", rest, err)
	}
	return last
}
