//go:build unix

package filesystem

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

const (
	defaultBatchSize = 1000
	// workerCount workers visit a batch's entries at once. An unlink holds
	// the directory's lock only to remove the name; freeing the inode and
	// its blocks, which waits on the journal and the disk, comes after, so
	// several removals overlap their waits (on ext4, 4 workers unlink about
	// 30% faster than one, whatever the number of cores).
	workerCount = 4
)

// Cleanup deletes the session files whose expiry is at least opts.Grace
// before opts.Now (now when zero). It first checks that clock against the
// volume's (see checkClock). It lists the directory BatchSize entries at a
// time and reads only the header of each file; names that are not a hex
// digest, entries that are not regular files and headers in neither of
// cachelib's layouts are counted under Kept ("foreign", "unreadable") and
// never touched, nor are the count file and temporary files younger than
// orphanTempAge. Files that never expire are counted under Kept "noExpiry".
// Scanned is the sum of live, expired and kept.
//
// Deleting safely. cachelib takes no locks: a refresh renames a new file over
// the session's name at any moment. Comparing the inode at the name with the
// one read and then unlinking the name (cachelib's own pruning does not even
// compare) leaves a window between the two calls in which a refresh is
// deleted outright. So an expired file is first renamed to a private name in
// the same directory, one atomic step that takes whatever is at the name at
// that instant, and what was taken is then examined with nothing racing:
// when it is the inode that was read (its number cannot have been reused,
// since the descriptor opened for the read keeps it alive) and its header,
// read again, still says expired, it is deleted. Otherwise a refresh came in
// between, and the file is put back with link(2), which fails rather than
// overwrite a still newer version that the app wrote meanwhile (that one
// wins, as it would have without the cleanup).
//
// What remains, and why it is accepted: only when a refresh lands between
// the read and the rename (microseconds) is a live session off its name,
// until it is put back (microseconds more). A request of that very session
// reading within that instant gets an empty session, as if it had expired,
// and if it saves, its save wins over the put-back. Nothing live is ever
// deleted. A run killed in between leaves a file named
// <name>.<unix time>-<run>-<n>.cleanup.__wz_cache, which cachelib ignores; a
// later run puts it back when it is live (or deletes it when expired) once
// it is leftoverAge old.
//
// After a run that is not a dry run, the count file, when there is one, is
// set to the number of entries that cachelib itself counts (see fixCounts).
//
// Cancelling ctx stops the run after the current batch.
func (s *dirStore) Cleanup(ctx context.Context, opts sessionstore.CleanupOptions) (sessionstore.Report, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	run := s.newRun(opts, start)
	rep := run.rep
	done := func(err error) (sessionstore.Report, error) {
		rep.Duration = time.Since(start)
		rep.Message = run.message(err)
		return *rep, err
	}
	batchSize := opts.BatchSizeOr(defaultBatchSize)

	d, err := run.openDir()
	if err != nil {
		return done(err)
	}
	// d stays open (deferred Close) for as long as its descriptor is used.
	defer d.Close()
	if err := run.checkClock(start, opts.Grace); err != nil {
		return done(err)
	}
	err = run.scan(ctx, d, batchSize, func() { opts.ReportProgress(*rep, start) })
	// The count is made right after a run that stopped early too, as soon
	// as it deleted anything: a count left too high makes cachelib evict
	// live sessions.
	if !opts.DryRun && (err == nil || rep.Deleted > 0) {
		if countErr := run.fixCounts(ctx, batchSize); err == nil {
			err = countErr
		}
	}
	return done(err)
}

func (s *dirStore) newRun(opts sessionstore.CleanupOptions, start time.Time) *cleanupRun {
	now := opts.Now
	if now.IsZero() {
		now = start
	}
	cutoff := now.Add(-max(opts.Grace, 0))
	rep := &sessionstore.Report{Backend: sessionstore.BackendFilesystem, DryRun: opts.DryRun, Now: now.UTC(), Cutoff: cutoff.UTC()}
	var token [8]byte
	_, _ = rand.Read(token[:])
	run := &cleanupRun{store: s, now: now, cutoff: cutoff, dryRun: opts.DryRun, rep: rep, token: hex.EncodeToString(token[:])}
	run.noAtime.Store(noAtime != 0)
	return run
}

func (r *cleanupRun) openDir() (*os.File, error) {
	dir := r.store.dir
	d, err := os.Open(dir)
	if err != nil {
		return nil, osError("cleanup", "session directory "+dir, err)
	}
	fi, err := d.Stat()
	if err == nil && !fi.IsDir() {
		err = sessionstore.NewError(sessionstore.ErrConfig, "cleanup", fmt.Errorf("session directory %s is not a directory", dir))
	} else if err != nil {
		err = osError("cleanup", "session directory "+dir, err)
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	r.dirfd = int(d.Fd())
	return d, nil
}

// cleanupRun is the state of one Cleanup.
type cleanupRun struct {
	store *dirStore
	dirfd int
	// now is the cleanup's clock at its start; cutoff is now less the
	// grace period, what files are judged by.
	now    time.Time
	cutoff time.Time
	// volumeOffset is the volume's clock less this process's, as the clock
	// probe measured it.
	volumeOffset time.Duration
	// clockUnchecked: a dry run, which does not write the clock probe.
	clockUnchecked bool
	dryRun         bool
	rep            *sessionstore.Report
	token          string

	noAtime  atomic.Bool
	asideSeq atomic.Uint64

	oldFormat      int64
	putBack        int64
	recovered      int64
	orphans        int64
	unreadable     error
	countResults   []string
	countOwnerLost bool
}

// volumeNow is the volume's clock now, as far as the clock probe tells.
func (r *cleanupRun) volumeNow() time.Time {
	return time.Now().Add(r.volumeOffset)
}

// scan lists d in batches and hands each batch's entries to workerCount
// workers, until the end, an error, or ctx's end (checked between batches).
func (r *cleanupRun) scan(ctx context.Context, d *os.File, batchSize int, progress func()) error {
	rep := r.rep
	workers := make([]*worker, workerCount)
	for i := range workers {
		workers[i] = &worker{run: r}
	}
	for {
		if err := ctx.Err(); err != nil {
			return sessionstore.Classify("cleanup", fmt.Errorf("stopped after %d batches: %w", rep.Batches, err))
		}
		entries, readErr := d.ReadDir(batchSize)
		if err := r.visitAll(workers, entries); err != nil {
			return err
		}
		if len(entries) > 0 {
			rep.Batches++
			progress()
		}
		if readErr == io.EOF {
			return nil
		}
		if readErr != nil {
			return osError("cleanup", "list session directory "+r.store.dir, readErr)
		}
	}
}

// visitAll visits entries with the workers, each taking every
// len(workers)-th entry, and adds up what they saw. A worker that fails
// stops; the others finish their share, so the batch ends whole.
func (r *cleanupRun) visitAll(workers []*worker, entries []fs.DirEntry) error {
	n := min(len(workers), len(entries))
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := i; j < len(entries); j += n {
				if errs[i] = workers[i].visit(entries[j]); errs[i] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, w := range workers[:n] {
		r.add(&w.t)
		w.t = tally{}
	}
	return errors.Join(errs...)
}

func (r *cleanupRun) add(t *tally) {
	r.rep.Scanned += t.scanned
	r.rep.Expired += t.expired
	r.rep.Deleted += t.deleted
	r.rep.AddKept("noExpiry", t.noExpiry)
	r.rep.AddKept("unreadable", t.unreadable)
	r.rep.AddKept("foreign", t.foreign)
	r.oldFormat += t.oldFormat
	r.putBack += t.putBack
	r.recovered += t.recovered
	r.orphans += t.orphans
	if r.unreadable == nil {
		r.unreadable = t.unreadableErr
	}
}

func (r *cleanupRun) message(err error) string {
	rep := r.rep
	var b strings.Builder
	if sessionstore.WriteOutcome(&b, *rep, "session files", "of", err) && r.putBack > 0 {
		fmt.Fprintf(&b, " (%d of them refreshed just as they were taken, and put back)", r.putBack)
	}
	if n := rep.Kept["noExpiry"]; n > 0 {
		fmt.Fprintf(&b, "; kept %d that never expire (timeout 0)", n)
	}
	if n := rep.Kept["unreadable"]; n > 0 {
		fmt.Fprintf(&b, "; kept %d unreadable (truncated, or not in cachelib's layout)", n)
		if r.unreadable != nil {
			fmt.Fprintf(&b, ", e.g. %v", r.unreadable)
		}
	}
	if n := rep.Kept["foreign"]; n > 0 {
		fmt.Fprintf(&b, "; kept %d foreign entries (not named or made like cachelib's session files)", n)
	}
	r.writeHousekeeping(&b)
	if r.clockUnchecked {
		b.WriteString("; the volume's clock was not checked, since that writes a file: counted by this pod's clock")
	}
	if err != nil {
		fmt.Fprintf(&b, "; stopped: %v", err)
	}
	return b.String()
}

// writeHousekeeping tells what the run did besides sessions.
func (r *cleanupRun) writeHousekeeping(b *strings.Builder) {
	if r.oldFormat > 0 {
		fmt.Fprintf(b, "; %d files have the pickled header of cachelib < 0.7", r.oldFormat)
	}
	if r.recovered > 0 {
		fmt.Fprintf(b, "; recovered %d session files left aside by an interrupted cleanup (put back unless the app had written a newer one)", r.recovered)
	}
	if r.orphans > 0 {
		verb := "removed"
		if r.dryRun {
			verb = "would remove"
		}
		fmt.Fprintf(b, "; %s %d of cachelib's temporary files left over a day ago by writers that died", verb, r.orphans)
	}
	for _, result := range r.countResults {
		b.WriteString("; " + result)
	}
	if r.countOwnerLost {
		b.WriteString("; the count file now belongs to this job's user: run the job as the app's user so the app can read it")
	}
}
