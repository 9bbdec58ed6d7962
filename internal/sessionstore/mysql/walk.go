package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// A walk goes through the table once in the order of its integer primary
// key, a batch at a time:
//
//  1. SELECT id, expiry IS NULL, <expired> FROM t WHERE id > <last>
//     ORDER BY id LIMIT <scan>: a plain read of the next rows along the
//     clustered index, which locks nothing and counts every row once, up to
//     the one that makes <size> expired rows (how many sessions one delete
//     removes at most: BatchSize for the first batch, then set by how long
//     the last one held its locks, see nextSize); <scan> follows the share of
//     expired rows the last batch saw, so each batch reads about as many
//     rows as it needs, and never more than myMaxScanGrowth batches' worth;
//  2. when some had expired, on MariaDB, one statement that is its own
//     transaction at READ COMMITTED (asked for that transaction only):
//     SET STATEMENT innodb_lock_wait_timeout=0 FOR
//     DELETE FROM t WHERE id IN (<expired ids>) AND <expired>;
//     it re-checks expiry on each row's latest committed version, and fails
//     at once, deleting nothing, rather than wait for a row the app holds.
//     Then, and always on MySQL (which cannot bound a lock wait for one
//     statement), one transaction at READ COMMITTED:
//     SELECT id FROM t WHERE id > <first> AND id <= <last> AND <expired>
//     FOR UPDATE SKIP LOCKED;
//     DELETE FROM t WHERE id IN (<locked ids>) AND <expired>;
//     COMMIT.
//
// The locking read sees each row's latest committed version: a session the
// app refreshed since step 1 no longer matches and is left unlocked, and one
// the app is refreshing right now (its row lock held) is skipped rather
// than waited for, so no batch waits on the app and the app waits on a
// batch only for the milliseconds it holds its few locks. READ COMMITTED
// drops the lock of every row read that does not match at once and takes no
// gap locks, so live rows are never held. The DELETE re-checks expiry
// under those locks. Each batch reads only its own range of the clustered
// index, with or without an index on expiry: the cost is linear in the
// table's size.

const (
	// myLockBudget is the longest a batch may hold its locks.
	myLockBudget = 250 * time.Millisecond
	// myHoldTarget is the hold the batch size aims at: well under the
	// budget, so that a batch descheduled on a loaded machine stays in it,
	// and long enough that few commits (one fsync each) are paid.
	myHoldTarget = 100 * time.Millisecond
	myMinBatch   = 10
	// myMaxBatch caps the batch however quick it is: its id list (about 7
	// bytes an id) stays far below any server's max_allowed_packet.
	myMaxBatch = 32768
	// myMaxScanGrowth caps how many batches' worth of rows one lockless
	// read may take where few rows have expired.
	myMaxScanGrowth = 8
	// myBatchAttempts: a batch that loses a deadlock (or times out on a
	// lock) is retried this many times in all, then the run stops.
	myBatchAttempts = 3
)

type myWalk struct {
	store      *myStore
	conn       *sql.Conn
	cut        myCutoff
	key        string // the quoted primary key column
	skipLocked bool
	// noWait: the server bounds one statement's lock wait (MariaDB's SET
	// STATEMENT), so a batch can be one DELETE that never waits.
	noWait    bool
	batchSize int
	// maxSize is how large a batch may grow (myMaxBatch unless a test
	// pins it).
	maxSize  int
	progress func()
	rep      *sessionstore.Report
	// longestHold is the longest a batch transaction held its locks.
	longestHold time.Duration
}

// mySnapshot is what step 1 of a batch saw, up to its last row.
type mySnapshot struct {
	scanned, noExpiry int64
	expired           []int64
	last              int64
	// end is true when the read reached the end of the table.
	end bool
}

func (w *myWalk) run(ctx context.Context) error {
	size, scan := w.batchSize, w.batchSize
	after := int64(math.MinInt64)
	for {
		if err := ctx.Err(); err != nil {
			return sessionstore.Classify("cleanup", fmt.Errorf("stopped after %d batches: %w", w.rep.Batches, err))
		}
		// A batch, once begun, is let finish: it is short, and stopping
		// between batches leaves nothing half done.
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), myBatchTimeout)
		snap, deleted, hold, err := w.batch(bctx, after, size, scan)
		cancel()
		if err != nil {
			return w.store.myError("cleanup", fmt.Errorf("stopped after %d batches (%d sessions deleted); a rerun finishes the job: %w",
				w.rep.Batches, w.rep.Deleted, err))
		}
		w.rep.Batches++
		w.rep.Scanned += snap.scanned
		w.rep.Expired += int64(len(snap.expired))
		w.rep.Deleted += deleted
		w.rep.AddKept("noExpiry", snap.noExpiry)
		w.longestHold = max(w.longestHold, hold)
		w.store.longestHold = w.longestHold
		if w.store.onBatch != nil {
			w.store.onBatch(size, hold)
		}
		w.progress()
		if snap.end {
			return nil
		}
		after = snap.last
		size = nextSize(size, hold, w.maxSize)
		scan = nextScan(snap, size, scan)
	}
}

// nextSize sizes the next batch by how long this one held its locks: a
// batch over myHoldTarget shrinks the next one in proportion, to half or
// less; one under half of it doubles the next one, up to maxSize. The
// first batch is BatchSize. Fewer, larger batches pay fewer commits, the
// main cost of a cleanup; the target keeps each short.
func nextSize(size int, hold time.Duration, maxSize int) int {
	switch {
	case hold > myHoldTarget:
		scaled := int(int64(size) * int64(myHoldTarget) / int64(hold))
		return max(myMinBatch, min(size/2, scaled))
	case hold < myHoldTarget/2:
		return max(size, min(maxSize, size*2))
	}
	return size
}

// nextScan is how many rows the next read takes to find about size expired
// ones, going by the share of expired rows in the last one.
func nextScan(snap mySnapshot, size, scan int) int {
	limit := size * myMaxScanGrowth
	if len(snap.expired) == 0 {
		return min(limit, scan*2)
	}
	want := int64(size) * snap.scanned / int64(len(snap.expired))
	return int(min(int64(limit), max(int64(size), want+want/8+1)))
}

func (w *myWalk) batch(ctx context.Context, after int64, size, scan int) (mySnapshot, int64, time.Duration, error) {
	snap, err := w.snapshot(ctx, after, size, scan)
	if err != nil || len(snap.expired) == 0 {
		return snap, 0, 0, err
	}
	if w.store.afterSnapshot != nil {
		w.store.afterSnapshot(snap.expired)
	}
	for attempt := 1; ; attempt++ {
		start := time.Now()
		deleted, err := w.delete(ctx, snap.expired, keyRange{after, snap.last})
		hold := time.Since(start)
		var myErr *mysql.MySQLError
		retry := errors.As(err, &myErr) && (myErr.Number == myErLockDeadlock || myErr.Number == myErLockWaitTimeout)
		if !retry || attempt == myBatchAttempts {
			return snap, deleted, hold, err
		}
	}
}

// snapshot reads up to scan rows after the key after, locking nothing, and
// stops at the row that makes size expired ones.
func (w *myWalk) snapshot(ctx context.Context, after int64, size, scan int) (mySnapshot, error) {
	var snap mySnapshot
	rows, err := w.conn.QueryContext(ctx, `SELECT `+w.key+`, expiry IS NULL, `+w.cut.expired+` FROM `+w.store.myTable()+
		` WHERE `+w.key+` > ? ORDER BY `+w.key+` LIMIT ?`, after, scan)
	if err != nil {
		return snap, err
	}
	defer rows.Close()
	snap.end = true
	for len(snap.expired) < size && rows.Next() {
		var id int64
		var noExpiry bool
		var expired sql.NullBool
		if err := rows.Scan(&id, &noExpiry, &expired); err != nil {
			return snap, err
		}
		snap.scanned++
		snap.last = id
		if noExpiry {
			snap.noExpiry++
		}
		if expired.Valid && expired.Bool {
			snap.expired = append(snap.expired, id)
		}
	}
	// Stopped at size expired rows, or the read was full: there may be more.
	if len(snap.expired) == size || snap.scanned == int64(scan) {
		snap.end = false
	}
	return snap, rows.Err()
}

// delete deletes those of ids that are still expired: in one statement
// that never waits where the server allows it, else, or when that statement
// met a row the app holds, in a transaction that skips such rows.
func (w *myWalk) delete(ctx context.Context, ids []int64, span keyRange) (int64, error) {
	if !w.noWait || w.store.skipRecheck || w.store.beforeCommit != nil {
		return w.deleteExpired(ctx, ids, span)
	}
	deleted, err := w.deleteNoWait(ctx, ids)
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) && myErr.Number == myErLockWaitTimeout {
		// The failed statement deleted nothing.
		return w.deleteExpired(ctx, ids, span)
	}
	return deleted, err
}

// deleteNoWait deletes those of ids that are still expired in one
// statement, its own transaction at READ COMMITTED, which fails at once
// (ER_LOCK_WAIT_TIMEOUT) rather than wait for a row another transaction holds.
func (w *myWalk) deleteNoWait(ctx context.Context, ids []int64) (int64, error) {
	// SET TRANSACTION, without SESSION, is for the next transaction only:
	// the DELETE, or, if it fails, deleteExpired's, which asks again.
	if _, err := w.conn.ExecContext(ctx, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"); err != nil {
		return 0, err
	}
	res, err := w.conn.ExecContext(ctx, `SET STATEMENT innodb_lock_wait_timeout = 0 FOR `+w.deleteByKey()+
		` WHERE `+w.key+` IN (`+myIDList(ids)+`) AND `+w.cut.expired)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// deleteExpired deletes, in one READ COMMITTED transaction, those of ids
// that are still expired and not locked by the app.
func (w *myWalk) deleteExpired(ctx context.Context, ids []int64, span keyRange) (int64, error) {
	tx, err := w.conn.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	// skipRecheck is the broken cleanup tests must catch: what the
	// snapshot saw goes.
	if !w.store.skipRecheck {
		if ids, err = w.lock(ctx, tx, ids, span); err != nil || len(ids) == 0 {
			return 0, err
		}
	}
	where := w.key + ` IN (` + myIDList(ids) + `)`
	if !w.store.skipRecheck {
		where += ` AND ` + w.cut.expired
	}
	res, err := tx.ExecContext(ctx, w.deleteByKey()+` WHERE `+where)
	if err != nil {
		return 0, err
	}
	deleted, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	if w.store.beforeCommit != nil {
		w.store.beforeCommit(tx)
	}
	return deleted, tx.Commit()
}

// keyRange is the keys a batch's lockless read covered: after < key <= last.
type keyRange struct{ after, last int64 }

// lock locks the rows of the batch that are still expired, skipping rows the
// app holds, and returns their keys. With SKIP LOCKED it reads the batch's
// key range in order (the clustered index walked once, where a list of ids
// is one descent per id: this read took 40% less at 400,000 rows on MySQL 8);
// READ COMMITTED lets go of each live row as soon as it is read, and a row
// the app holds is skipped, live or not. Without SKIP LOCKED it locks only
// the listed ids, so that it can wait only for an expired row the app holds.
func (w *myWalk) lock(ctx context.Context, tx *sql.Tx, ids []int64, span keyRange) ([]int64, error) {
	which := w.key + ` IN (` + myIDList(ids) + `)`
	lockClause := " FOR UPDATE"
	if w.skipLocked {
		which = w.key + ` > ` + strconv.FormatInt(span.after, 10) + ` AND ` + w.key + ` <= ` + strconv.FormatInt(span.last, 10)
		lockClause += " SKIP LOCKED"
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+w.key+` FROM `+w.store.myTable()+` FORCE INDEX (PRIMARY) WHERE `+which+` AND `+
		w.cut.expired+lockClause)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	locked := make([]int64, 0, len(ids))
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		locked = append(locked, id)
	}
	return locked, rows.Err()
}

// deleteByKey begins a DELETE that finds its rows through the primary key
// alone. Left to choose, the optimizer scans the whole table when a batch's
// ids are much of it (or walks the expiry index), and a DELETE, unlike an
// UPDATE, waits for every row it scans that another transaction holds: a
// live session held in the app's long transaction stalled a batch for
// innodb_lock_wait_timeout, holding the locks of the rows it had deleted.
// (MySQL's single-table DELETE takes no index hint; the multiple-table form
// does, on MySQL and MariaDB.)
func (w *myWalk) deleteByKey() string {
	return `DELETE t FROM ` + w.store.myTable() + ` AS t FORCE INDEX (PRIMARY)`
}

// myIDList writes integer keys as an SQL list; integers carry nothing else.
func myIDList(ids []int64) string {
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(id, 10))
	}
	return b.String()
}
