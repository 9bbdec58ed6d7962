//go:build unix

package filesystem

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// Flask-Session's filesystem type keeps sessions in a directory with
// cachelib's FileSystemCache (werkzeug.contrib.cache before cachelib):
//
//   - one file per session, named md5(KeyPrefix+sid).hexdigest();
//   - cachelib >= 0.7 starts the file with struct.pack("I", expires): 4 bytes
//     in native byte order; older versions with pickle.dump(expires, f, 1).
//     expires is absolute Unix seconds, 0 for never; then comes the value,
//     pickled with the highest protocol of the app's Python (2 or more);
//   - md5("__wz_cache_count") holds the number of files (a cache entry
//     itself: header 0, then a pickled int); cachelib prunes, oldest live
//     sessions included, once that number passes its threshold;
//   - every write goes to a temporary "tmp*.__wz_cache" file that is then
//     renamed over the target, so a refreshed session is a new inode.
//
// cachelib serves a file while expires == 0 or expires >= time(), so a file is
// expired once its expiry is strictly before now: at the very second of its
// expiry the app would still read it.
//
// The job's clock decides, not the app's: a job whose clock runs ahead of the
// app's deletes sessions that early.

func init() { sessionstore.Register(sessionstore.BackendFilesystem, newFilesystem) }

const (
	fsDefaultBatchSize = 1000
	// fsWorkers visit a batch's entries at once. An unlink holds the
	// directory's lock only to remove the name; freeing the inode and its
	// blocks, which waits on the journal and the disk, comes after, so
	// several removals overlap their waits (on ext4, 4 workers unlink about
	// 30% faster than one, whatever the number of cores).
	fsWorkers = 4
	// fsCountFile is md5("__wz_cache_count").hexdigest().
	fsCountFile = "2029240f6d1128be89ddc32729463129"
	// fsTempSuffix ends cachelib's temporary files; cachelib's own listing
	// skips such names, so files set aside by the cleanup end with it too.
	fsTempSuffix  = ".__wz_cache"
	fsAsideSuffix = ".cleanup" + fsTempSuffix
	// fsHeaderBytes covers every header form (the longest, a pickled LONG
	// of a 64-bit number, is 25 bytes) and the start of the value after it.
	fsHeaderBytes = 64
	// fsLeftoverAge is how old a file set aside must be before the cleanup
	// takes it for the remains of an interrupted run rather than the work
	// of one still running; a running cleanup holds one for microseconds.
	fsLeftoverAge = time.Hour
	// fsCountFileMax bounds the read of the count file (about 20 bytes).
	fsCountFileMax = 4096
	// Python's pickle opcodes used here.
	fsPickleProto = 0x80
	fsPickleFrame = 0x95
	fsPickleLong1 = 0x8a
	fsPickleStop  = '.'
)

// fsNoAtime is Linux's O_NOATIME (0x40000 on every architecture Go runs
// Linux on), which x/sys/unix defines for Linux only; 0 elsewhere.
var fsNoAtime = func() int {
	if runtime.GOOS == "linux" {
		return 0x40000
	}
	return 0
}()

type fsState int

const (
	fsUnreadable fsState = iota
	fsLive
	fsExpired
	fsNever
)

type fsFormat int

const (
	fsFormatNone   fsFormat = iota
	fsFormatStruct          // cachelib >= 0.7: struct.pack("I", expires)
	fsFormatPickle          // cachelib < 0.7, werkzeug: pickle.dump(expires, f, 1)
)

type fsStore struct {
	dir string

	// Test hooks, nil in production: called (by a worker goroutine) after
	// an expired file was read, just before it is moved aside, and right
	// after.
	beforeTake func(name string)
	afterTake  func(name string)

	mu sync.Mutex
}

func newFilesystem(cfg sessionstore.Config) (sessionstore.Store, error) {
	dir, err := cfg.FilesystemDir()
	if err != nil {
		return nil, err
	}
	return &fsStore{dir: dir}, nil
}

// Ping checks that the directory exists and that this process may list,
// read and write it. Filesystem calls cannot be cancelled: a hung network
// mount makes Ping return at ctx's deadline and leaves the check behind.
func (s *fsStore) Ping(ctx context.Context) error {
	return fsWithin(ctx, "ping", func() error { return s.fsCheckDir("ping") })
}

func (s *fsStore) fsCheckDir(op string) error {
	fi, err := os.Stat(s.dir)
	if err != nil {
		return fsOSError(op, "session directory "+s.dir, err)
	}
	if !fi.IsDir() {
		return sessionstore.NewError(sessionstore.ErrConfig, op, fmt.Errorf("session directory %s is not a directory", s.dir))
	}
	notReadable := func(err error) error {
		return fsOSError(op, "session directory "+s.dir+" is not readable", err)
	}
	if err := unix.Access(s.dir, unix.R_OK|unix.X_OK); err != nil {
		return notReadable(err)
	}
	// access(2) can be wrong over NFS: list for real.
	d, err := os.Open(s.dir)
	if err != nil {
		return notReadable(err)
	}
	defer d.Close()
	if _, err := d.ReadDir(1); err != nil && err != io.EOF {
		return notReadable(err)
	}
	if err := unix.Access(s.dir, unix.W_OK); err != nil {
		return fsOSError(op, "session directory "+s.dir+" is not writable", err)
	}
	return nil
}

// EnsureSchema reports whether the directory exists. It never creates it:
// it is the volume the app writes to, and creating it would hide a volume
// that is not mounted.
func (s *fsStore) EnsureSchema(ctx context.Context) (sessionstore.SchemaResult, error) {
	var res sessionstore.SchemaResult
	err := fsWithin(ctx, "ensure schema", func() error {
		fi, err := os.Stat(s.dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			res.Message = fmt.Sprintf("session directory %s does not exist; mount the volume the app writes its sessions to (it is not created here)", s.dir)
			return nil
		case err != nil:
			return fsOSError("ensure schema", "session directory "+s.dir, err)
		case !fi.IsDir():
			return sessionstore.NewError(sessionstore.ErrConfig, "ensure schema", fmt.Errorf("session directory %s is not a directory", s.dir))
		}
		res.Present = true
		res.Message = fmt.Sprintf("session directory %s is present", s.dir)
		return nil
	})
	return res, err
}

func (s *fsStore) Close() error { return nil }

// Cleanup deletes the session files whose expiry is before opts.Now (now
// when zero). It lists the directory BatchSize entries at a time and reads
// only the header of each file; names that are not 32 hex digits, entries
// that are not regular files and headers in neither of cachelib's layouts
// are counted under Kept ("foreign", "unreadable") and never touched, nor are
// the count file and temporary files. Files that never expire are counted
// under Kept "noExpiry". Scanned is the sum of live, expired and kept.
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
// and if it saves, its save wins over the put-back. That takes two requests
// of one session within microseconds of the cleanup's rename, and costs one
// request a fresh session; check-then-unlink would lose the session for
// good on one such coincidence. Nothing live is ever deleted. For an expired
// file the instant without a name changes nothing: cachelib does not serve
// it either. A run killed in between leaves a file named
// <name>.<unix time>-<run>-<n>.cleanup.__wz_cache, which cachelib ignores; a
// later run puts it back when it is live (or deletes it when expired) once
// it is fsLeftoverAge old.
//
// After a run that is not a dry run, the count file, when there is one, is
// set to the number of entries that cachelib itself counts (all but the count
// file and names ending in .__wz_cache), in the layout it already has, so
// that cachelib does not evict live sessions for a count that is too high.
// cachelib updates the count without a lock as well; an update racing this
// write is lost, which leaves the count off by one until the next run.
//
// Cancelling ctx stops the run after the current batch.
func (s *fsStore) Cleanup(ctx context.Context, opts sessionstore.CleanupOptions) (sessionstore.Report, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	now := opts.Now
	if now.IsZero() {
		now = start
	}
	rep := sessionstore.Report{Backend: sessionstore.BackendFilesystem, DryRun: opts.DryRun, Now: now.UTC()}
	var token [8]byte
	_, _ = rand.Read(token[:])
	run := &fsRun{store: s, now: now, dryRun: opts.DryRun, rep: &rep, token: hex.EncodeToString(token[:])}
	run.noAtime.Store(fsNoAtime != 0)
	done := func(err error) (sessionstore.Report, error) {
		rep.Duration = time.Since(start)
		rep.Message = run.message(err)
		return rep, err
	}
	batchSize := opts.BatchSizeOr(fsDefaultBatchSize)

	d, err := os.Open(s.dir)
	if err != nil {
		return done(fsOSError("cleanup", "session directory "+s.dir, err))
	}
	defer d.Close()
	if fi, err := d.Stat(); err != nil {
		return done(fsOSError("cleanup", "session directory "+s.dir, err))
	} else if !fi.IsDir() {
		return done(sessionstore.NewError(sessionstore.ErrConfig, "cleanup", fmt.Errorf("session directory %s is not a directory", s.dir)))
	}
	// d stays open (deferred Close) for as long as its descriptor is used.
	run.dirfd = int(d.Fd())

	err = run.scan(ctx, d, batchSize, func() { opts.ReportProgress(rep, start) })
	// The count is made right after a run that stopped early too, as soon
	// as it deleted anything: a count left too high makes cachelib evict
	// live sessions.
	if !opts.DryRun && (err == nil || rep.Deleted > 0) {
		if countErr := run.fixCount(batchSize); err == nil {
			err = countErr
		}
	}
	return done(err)
}

// scan lists d in batches and hands each batch's entries to fsWorkers
// workers, until the end, an error, or ctx's end (checked between batches).
func (r *fsRun) scan(ctx context.Context, d *os.File, batchSize int, progress func()) error {
	rep := r.rep
	workers := make([]*fsWorker, fsWorkers)
	for i := range workers {
		workers[i] = &fsWorker{run: r}
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
			return fsOSError("cleanup", "list session directory "+r.store.dir, readErr)
		}
	}
}

// visitAll visits entries with the workers, each taking every
// len(workers)-th entry, and adds up what they saw. A worker that fails
// stops; the others finish their share, so the batch ends whole.
func (r *fsRun) visitAll(workers []*fsWorker, entries []fs.DirEntry) error {
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
		w.t = fsTally{}
	}
	return errors.Join(errs...)
}

func (r *fsRun) add(t *fsTally) {
	r.rep.Scanned += t.scanned
	r.rep.Expired += t.expired
	r.rep.Deleted += t.deleted
	r.rep.AddKept("noExpiry", t.noExpiry)
	r.rep.AddKept("unreadable", t.unreadable)
	r.rep.AddKept("foreign", t.foreign)
	r.oldFormat += t.oldFormat
	r.putBack += t.putBack
	r.recovered += t.recovered
	if r.unreadable == nil {
		r.unreadable = t.unreadableErr
	}
}

// fsRun is the state of one Cleanup.
type fsRun struct {
	store  *fsStore
	dirfd  int
	now    time.Time
	dryRun bool
	rep    *sessionstore.Report
	token  string

	noAtime  atomic.Bool
	asideSeq atomic.Uint64

	oldFormat   int64
	putBack     int64
	recovered   int64
	unreadable  error
	countResult string
	// countOwnerLost: the count file was rewritten but could not be given
	// back to its owner.
	countOwnerLost bool
}

// fsWorker visits entries of a batch; a run has fsWorkers of them, each
// with its own tally, added to the report after each batch.
type fsWorker struct {
	run *fsRun
	buf [fsHeaderBytes]byte
	t   fsTally
}

type fsTally struct {
	scanned, expired, deleted     int64
	noExpiry, unreadable, foreign int64
	oldFormat, putBack, recovered int64
	unreadableErr                 error
}

func (w *fsWorker) visit(entry fs.DirEntry) error {
	name := entry.Name()
	switch {
	case name == fsCountFile:
		return nil
	case strings.HasSuffix(name, fsAsideSuffix):
		return w.leftover(name)
	case strings.HasSuffix(name, fsTempSuffix):
		return nil
	}
	w.t.scanned++
	if !fsIsSessionName(name) || !entry.Type().IsRegular() {
		w.t.foreign++
		return nil
	}
	fd, err := w.openSession(name)
	switch {
	case errors.Is(err, unix.ENOENT):
		// Deleted by the app since it was listed.
		w.t.scanned--
		return nil
	case errors.Is(err, unix.ELOOP):
		w.t.foreign++
		return nil
	case err != nil:
		w.markUnreadable(name, err)
		return nil
	}
	defer unix.Close(fd)
	// A directory or FIFO that took the name since it was listed fails the
	// read or reads empty; the expired branch checks the type for sure.
	header, err := fsReadHeader(fd, w.buf[:])
	if err != nil {
		w.markUnreadable(name, err)
		return nil
	}
	state, format := fsClassify(header, w.run.now)
	if format == fsFormatPickle {
		w.t.oldFormat++
	}
	switch state {
	case fsLive:
	case fsNever:
		w.t.noExpiry++
	case fsUnreadable:
		w.t.unreadable++
	case fsExpired:
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			w.markUnreadable(name, err)
			return nil
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			w.t.foreign++
			return nil
		}
		w.t.expired++
		if w.run.dryRun {
			return nil
		}
		deleted, err := w.take(fd, &st, name)
		if deleted {
			w.t.deleted++
		}
		return err
	}
	return nil
}

// openSession opens a session file for reading, on Linux without updating
// its access time: the cleanup leaves live sessions as it found them, and
// does not make the filesystem write back the inode of every file it reads.
// O_NOATIME needs the file's owner (or CAP_FOWNER); without, it is dropped.
func (w *fsWorker) openSession(name string) (int, error) {
	if w.run.noAtime.Load() {
		fd, err := fsOpenFlags(w.run.dirfd, name, fsNoAtime)
		if err != unix.EPERM {
			return fd, err
		}
		w.run.noAtime.Store(false)
	}
	return fsOpen(w.run.dirfd, name)
}

func (w *fsWorker) markUnreadable(name string, err error) {
	w.t.unreadable++
	if w.t.unreadableErr == nil {
		w.t.unreadableErr = fmt.Errorf("%s: %w", name, err)
	}
}

// take deletes the expired file name, which fd has open and st describes,
// unless it was replaced or rewritten since it was read (see Cleanup).
func (w *fsWorker) take(fd int, st *unix.Stat_t, name string) (bool, error) {
	if w.run.store.beforeTake != nil {
		w.run.store.beforeTake(name)
	}
	aside := w.run.asideName(name)
	if err := unix.Renameat(w.run.dirfd, name, w.run.dirfd, aside); err != nil {
		if errors.Is(err, unix.ENOENT) {
			// Deleted by the app (logout) or by cachelib's own pruning.
			return false, nil
		}
		return false, fsOSError("cleanup", "move expired session file "+name+" aside", err)
	}
	if w.run.store.afterTake != nil {
		w.run.store.afterTake(name)
	}
	var got unix.Stat_t
	same := unix.Fstatat(w.run.dirfd, aside, &got, unix.AT_SYMLINK_NOFOLLOW) == nil &&
		got.Dev == st.Dev && got.Ino == st.Ino
	if same {
		// cachelib never writes in place, but nothing else is to be trusted
		// either: what is deleted is what the header says now.
		header, err := fsReadHeader(fd, w.buf[:])
		state, _ := fsClassify(header, w.run.now)
		same = err == nil && state == fsExpired
	}
	if !same {
		w.t.putBack++
		return false, w.restore(aside, name)
	}
	if err := unix.Unlinkat(w.run.dirfd, aside, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return false, fsOSError("cleanup", "delete expired session file "+name+" (moved aside as "+aside+")", err)
	}
	return true, nil
}

// restore puts the file set aside as aside back as name, unless a newer one
// was written at name meanwhile.
func (w *fsWorker) restore(aside, name string) error {
	err := unix.Linkat(w.run.dirfd, aside, w.run.dirfd, name, 0)
	switch {
	case err == nil, errors.Is(err, unix.EEXIST):
		// Back in place, or superseded by a newer write that wins.
	case errors.Is(err, unix.ENOENT):
		// Already put back by another cleanup run.
		return nil
	default:
		// No hard links on this filesystem: rename back unless a newer
		// version is present. A write landing between the check and the
		// rename is overwritten by this one, one request older: the session
		// stays, with its data from before that request.
		var st unix.Stat_t
		if unix.Fstatat(w.run.dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
			if err := unix.Renameat(w.run.dirfd, aside, w.run.dirfd, name); err != nil {
				return fsOSError("cleanup", "put back session file "+name+"; it is kept as "+aside+", rename it back", err)
			}
			return nil
		}
	}
	if err := unix.Unlinkat(w.run.dirfd, aside, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fsOSError("cleanup", "remove "+aside+", a copy of session file "+name, err)
	}
	return nil
}

// leftover handles a file set aside by a cleanup run; see Cleanup.
func (w *fsWorker) leftover(aside string) error {
	name, setAside, ok := fsParseAsideName(aside)
	if !ok || w.run.dryRun || time.Since(setAside) < fsLeftoverAge {
		return nil
	}
	fd, err := fsOpen(w.run.dirfd, aside)
	if err != nil {
		// Gone (another run recovered it) or unreadable: leave it.
		return nil
	}
	defer unix.Close(fd)
	header, err := fsReadHeader(fd, w.buf[:])
	state := fsUnreadable
	if err == nil {
		state, _ = fsClassify(header, w.run.now)
	}
	w.t.scanned++
	switch state {
	case fsExpired:
		w.t.expired++
		if err := unix.Unlinkat(w.run.dirfd, aside, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fsOSError("cleanup", "delete expired session file "+aside, err)
		}
		w.t.deleted++
		return nil
	case fsNever:
		w.t.noExpiry++
	case fsUnreadable:
		w.t.unreadable++
	}
	w.t.recovered++
	return w.restore(aside, name)
}

// fixCount sets the count file to the number of entries cachelib counts
// (see FileSystemCache._list_dir), written the way cachelib writes it: a
// temporary file, given the count file's mode and owner, renamed over it.
func (r *fsRun) fixCount(batchSize int) error {
	fd, err := fsOpen(r.dirfd, fsCountFile)
	if errors.Is(err, unix.ENOENT) {
		// cachelib keeps no count with threshold 0.
		return nil
	}
	if err != nil {
		return fsOSError("cleanup", "read the count file "+fsCountFile, err)
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	buf := make([]byte, fsCountFileMax)
	var content []byte
	if err == nil {
		content, err = fsReadHeader(fd, buf)
	}
	unix.Close(fd)
	if err != nil {
		return fsOSError("cleanup", "read the count file "+fsCountFile, err)
	}
	format, proto, stored, known, ok := fsParseCountFile(content)
	if !ok {
		r.countResult = "the count file is in neither of cachelib's layouts and was left alone"
		return nil
	}

	count, err := r.countEntries(batchSize)
	if err != nil {
		return err
	}
	if known && stored == count {
		return nil
	}
	data := append(fsCountHeader(format), fsPickleInt(count, proto)...)
	if err := r.replaceCountFile(data, &st); err != nil {
		return err
	}
	if known {
		r.countResult = fmt.Sprintf("count file set to %d (was %d)", count, stored)
	} else {
		r.countResult = fmt.Sprintf("count file set to %d (its value was unreadable)", count)
	}
	return nil
}

func (r *fsRun) countEntries(batchSize int) (int64, error) {
	d, err := os.Open(r.store.dir)
	if err != nil {
		return 0, fsOSError("cleanup", "count the session files", err)
	}
	defer d.Close()
	var count int64
	for {
		names, err := d.Readdirnames(batchSize)
		for _, name := range names {
			if name != fsCountFile && !strings.HasSuffix(name, fsTempSuffix) {
				count++
			}
		}
		if err == io.EOF {
			return count, nil
		}
		if err != nil {
			return 0, fsOSError("cleanup", "count the session files", err)
		}
	}
}

func (r *fsRun) replaceCountFile(data []byte, old *unix.Stat_t) error {
	var random [4]byte
	_, _ = rand.Read(random[:])
	tmp := "tmp" + hex.EncodeToString(random[:]) + fsTempSuffix
	fd, err := unix.Openat(r.dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fsOSError("cleanup", "write the count file", err)
	}
	err = fsWriteAll(fd, data)
	if err == nil {
		err = unix.Fchmod(fd, uint32(old.Mode)&0o7777)
	}
	if err == nil && (int(old.Uid) != os.Geteuid() || int(old.Gid) != os.Getegid()) {
		// The app must be able to read it back; only root may give it away.
		r.countOwnerLost = unix.Fchown(fd, int(old.Uid), int(old.Gid)) != nil
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(r.dirfd, tmp, r.dirfd, fsCountFile)
	}
	if err != nil {
		_ = unix.Unlinkat(r.dirfd, tmp, 0)
		return fsOSError("cleanup", "write the count file", err)
	}
	return nil
}

func (r *fsRun) message(err error) string {
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
	if r.oldFormat > 0 {
		fmt.Fprintf(&b, "; %d files have the pickled header of cachelib < 0.7", r.oldFormat)
	}
	if r.recovered > 0 {
		fmt.Fprintf(&b, "; recovered %d session files left aside by an interrupted cleanup (put back unless the app had written a newer one)", r.recovered)
	}
	if r.countResult != "" {
		b.WriteString("; " + r.countResult)
	}
	if r.countOwnerLost {
		b.WriteString("; the count file now belongs to this job's user: run the job as the app's user so the app can read it")
	}
	if err != nil {
		fmt.Fprintf(&b, "; stopped: %v", err)
	}
	return b.String()
}

// asideName names a file set aside: the session's name, when, by which run
// (a random token: cleanup pods all run as PID 1) and which of its files, and
// the suffix that makes cachelib ignore it. Names never repeat, so two runs
// at once cannot take a file over each other's.
func (r *fsRun) asideName(name string) string {
	return name + "." + strconv.FormatInt(time.Now().Unix(), 10) + "-" + r.token + "-" +
		strconv.FormatUint(r.asideSeq.Add(1), 10) + fsAsideSuffix
}

// fsParseAsideName returns the session name a file set aside belongs to and
// when it was set aside.
func fsParseAsideName(aside string) (string, time.Time, bool) {
	name, rest, ok := strings.Cut(strings.TrimSuffix(aside, fsAsideSuffix), ".")
	if !ok || !fsIsSessionName(name) {
		return "", time.Time{}, false
	}
	parts := strings.Split(rest, "-")
	if len(parts) != 3 {
		return "", time.Time{}, false
	}
	if _, err := hex.DecodeString(parts[1]); err != nil || parts[1] == "" {
		return "", time.Time{}, false
	}
	if _, err := strconv.ParseUint(parts[2], 10, 64); err != nil {
		return "", time.Time{}, false
	}
	unixSeconds, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return "", time.Time{}, false
	}
	return name, time.Unix(unixSeconds, 0), true
}

func fsIsSessionName(name string) bool {
	if len(name) != 32 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// fsOpen opens name in dirfd for reading without following a symlink or
// blocking on a FIFO that took a session's name.
func fsOpen(dirfd int, name string) (int, error) {
	return fsOpenFlags(dirfd, name, 0)
}

func fsOpenFlags(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// fsReadHeader reads from the start of fd until buf is full or the file ends.
func fsReadHeader(fd int, buf []byte) ([]byte, error) {
	n := 0
	for n < len(buf) {
		m, err := unix.Pread(fd, buf[n:], int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return buf[:n], nil
}

func fsWriteAll(fd int, data []byte) error {
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// fsExpiry is an expiry read from a header: an int, or a float in some
// hand-made files of cachelib < 0.7 (pickle keeps the type it is given).
type fsExpiry struct {
	isFloat bool
	seconds int64
	float   float64
}

// state follows cachelib's get(): served while expires == 0 or
// expires >= time().
func (e fsExpiry) state(now time.Time) fsState {
	if e.isFloat {
		switch {
		case e.float == 0:
			return fsNever
		case e.float < float64(now.Unix())+float64(now.Nanosecond())/1e9:
			return fsExpired
		}
		return fsLive
	}
	switch {
	case e.seconds == 0:
		return fsNever
	case e.seconds < now.Unix(), e.seconds == now.Unix() && now.Nanosecond() > 0:
		return fsExpired
	}
	return fsLive
}

// fsClassify reads a session file's header in either layout. The first bytes
// of a 4-byte header can look like a pickle (they are any number), so each
// layout is accepted only when the value's pickle (PROTO 2 or more) starts
// right after it; when both layouts fit and disagree, the file is unreadable.
func fsClassify(b []byte, now time.Time) (fsState, fsFormat) {
	structExp, structOK := fsParseStructHeader(b)
	pickleExp, _, pickleOK := fsParsePickleHeader(b)
	switch {
	case structOK && pickleOK:
		state := structExp.state(now)
		if state != pickleExp.state(now) {
			return fsUnreadable, fsFormatNone
		}
		return state, fsFormatStruct
	case structOK:
		return structExp.state(now), fsFormatStruct
	case pickleOK:
		return pickleExp.state(now), fsFormatPickle
	}
	return fsUnreadable, fsFormatNone
}

// fsParseStructHeader reads cachelib >= 0.7's struct.pack("I", expires).
func fsParseStructHeader(b []byte) (fsExpiry, bool) {
	if len(b) < 4 || !fsValueFollows(b[4:]) {
		return fsExpiry{}, false
	}
	return fsExpiry{seconds: int64(binary.NativeEndian.Uint32(b))}, true
}

// fsParsePickleHeader reads pickle.dump(expires, f, 1): BININT1 (K),
// BININT2 (M), BININT (J), BINFLOAT (G), and the text forms LONG (L, Python
// 3 and Python 2 longs) and INT (I, Python 2 ints beyond 32 bits), each
// followed by STOP. It returns the header's length.
func fsParsePickleHeader(b []byte) (fsExpiry, int, bool) {
	var e fsExpiry
	var n int // bytes before STOP
	if len(b) == 0 {
		return e, 0, false
	}
	switch b[0] {
	case 'K':
		if len(b) < 2 {
			return e, 0, false
		}
		e.seconds, n = int64(b[1]), 2
	case 'M':
		if len(b) < 3 {
			return e, 0, false
		}
		e.seconds, n = int64(binary.LittleEndian.Uint16(b[1:])), 3
	case 'J':
		if len(b) < 5 {
			return e, 0, false
		}
		e.seconds, n = int64(int32(binary.LittleEndian.Uint32(b[1:]))), 5
	case 'G':
		if len(b) < 9 {
			return e, 0, false
		}
		e.isFloat, e.float, n = true, math.Float64frombits(binary.BigEndian.Uint64(b[1:])), 9
		if math.IsNaN(e.float) {
			return e, 0, false
		}
	case 'L', 'I':
		end := strings.IndexByte(string(b[1:min(len(b), 32)]), '\n')
		if end < 0 {
			return e, 0, false
		}
		digits := string(b[1 : 1+end])
		if b[0] == 'L' {
			digits = strings.TrimSuffix(digits, "L")
		}
		if digits == "" || digits[0] == '+' {
			return e, 0, false
		}
		v, err := strconv.ParseInt(digits, 10, 64)
		if err != nil {
			return e, 0, false
		}
		e.seconds, n = v, 2+end
	default:
		return e, 0, false
	}
	if len(b) <= n || b[n] != fsPickleStop || !fsValueFollows(b[n+1:]) {
		return e, 0, false
	}
	return e, n + 1, true
}

// fsValueFollows tells whether b starts a pickle of protocol 2 or more, as
// cachelib and werkzeug write values (pickle.HIGHEST_PROTOCOL).
func fsValueFollows(b []byte) bool {
	return len(b) >= 2 && b[0] == fsPickleProto && b[1] >= 2 && b[1] <= 15
}

// fsParseCountFile reads the count file: the layout of its header, the
// protocol of its pickled int, and the int. known is false when the int is
// not one fsPickleInt writes.
func fsParseCountFile(b []byte) (format fsFormat, proto byte, count int64, known, ok bool) {
	n := 0
	if _, structOK := fsParseStructHeader(b); structOK {
		format, n = fsFormatStruct, 4
	} else if _, pickleLen, pickleOK := fsParsePickleHeader(b); pickleOK {
		format, n = fsFormatPickle, pickleLen
	} else {
		return fsFormatNone, 0, 0, false, false
	}
	// Both parsers checked that a PROTO opcode follows.
	proto = b[n+1]
	count, known = fsUnpickleInt(b[n:])
	return format, proto, count, known, true
}

// fsCountHeader is the header cachelib gives its count file: 0, never
// expires, in the layout of the given version.
func fsCountHeader(format fsFormat) []byte {
	if format == fsFormatPickle {
		return []byte{'K', 0, fsPickleStop} // pickle.dumps(0, 1)
	}
	return binary.NativeEndian.AppendUint32(nil, 0) // struct.pack("I", 0)
}

// fsPickleInt returns pickle.dumps(n, proto) for n >= 0 and proto >= 2, byte
// for byte as CPython writes it: the smallest integer opcode, and from
// protocol 4 on a FRAME around bodies of 4 bytes or more.
func fsPickleInt(n int64, proto byte) []byte {
	var body []byte
	switch {
	case n <= 0xff:
		body = []byte{'K', byte(n)}
	case n <= 0xffff:
		body = binary.LittleEndian.AppendUint16([]byte{'M'}, uint16(n))
	case n <= math.MaxInt32:
		body = binary.LittleEndian.AppendUint32([]byte{'J'}, uint32(n))
	default:
		digits := binary.LittleEndian.AppendUint64(nil, uint64(n))
		for len(digits) > 1 && digits[len(digits)-1] == 0 {
			digits = digits[:len(digits)-1]
		}
		if digits[len(digits)-1]&0x80 != 0 {
			digits = append(digits, 0)
		}
		body = append([]byte{fsPickleLong1, byte(len(digits))}, digits...)
	}
	body = append(body, fsPickleStop)
	out := []byte{fsPickleProto, proto}
	if proto >= 4 && len(body) >= 4 {
		out = append(out, fsPickleFrame)
		out = binary.LittleEndian.AppendUint64(out, uint64(len(body)))
	}
	return append(out, body...)
}

// fsUnpickleInt reads what fsPickleInt writes.
func fsUnpickleInt(b []byte) (int64, bool) {
	if len(b) < 3 || b[0] != fsPickleProto {
		return 0, false
	}
	b = b[2:]
	if b[0] == fsPickleFrame {
		if len(b) < 10 {
			return 0, false
		}
		b = b[9:]
	}
	var v int64
	var n int
	switch {
	case len(b) >= 2 && b[0] == 'K':
		v, n = int64(b[1]), 2
	case len(b) >= 3 && b[0] == 'M':
		v, n = int64(binary.LittleEndian.Uint16(b[1:])), 3
	case len(b) >= 5 && b[0] == 'J':
		v, n = int64(int32(binary.LittleEndian.Uint32(b[1:]))), 5
	case len(b) >= 2 && b[0] == fsPickleLong1:
		size := int(b[1])
		if size < 1 || size > 8 || len(b) < 2+size || b[1+size]&0x80 != 0 {
			return 0, false
		}
		var digits [8]byte
		copy(digits[:], b[2:2+size])
		v, n = int64(binary.LittleEndian.Uint64(digits[:])), 2+size
	default:
		return 0, false
	}
	if len(b) <= n || b[n] != fsPickleStop {
		return 0, false
	}
	return v, true
}

// fsWithin runs fn but returns at ctx's end.
func fsWithin(ctx context.Context, op string, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return sessionstore.Classify(op, fmt.Errorf("the session directory did not answer: %w", ctx.Err()))
	}
}

// fsOSError names what failed on a file or the directory and classifies it.
func fsOSError(op, what string, err error) error {
	errno := fsErrnoOnly(err)
	switch {
	case errors.Is(errno, fs.ErrNotExist):
		return sessionstore.NewError(sessionstore.ErrConfig, op, fmt.Errorf("%s does not exist (is the volume mounted?): %w", what, errno))
	case errors.Is(errno, unix.ENOTDIR), errors.Is(errno, unix.EROFS):
		return sessionstore.NewError(sessionstore.ErrConfig, op, fmt.Errorf("%s: %w", what, errno))
	case errors.Is(errno, unix.EACCES), errors.Is(errno, unix.EPERM):
		return sessionstore.NewError(sessionstore.ErrAuth, op, fmt.Errorf("%s: %w (uid %d, gid %d)", what, errno, os.Geteuid(), os.Getegid()))
	}
	return sessionstore.Classify(op, fmt.Errorf("%s: %w", what, errno))
}

// fsErrnoOnly drops the path of a *PathError, which the messages name
// already.
func fsErrnoOnly(err error) error {
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		return pathErr.Err
	}
	return err
}
