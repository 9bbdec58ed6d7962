package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// TestMySQLCleanupKeepsRefreshedSessions refreshes sessions, as the app does
// on each request, while a cleanup runs in batches of 10; and the app holds
// a refresh of one expired session open (its row lock held) across the whole
// cleanup. Every refresh that took effect must leave its session alive, and
// the cleanup must never wait for the held lock.
//
// It runs for the server's own way of deleting (MariaDB's one DELETE that
// never waits, falling back to the locking transaction for the held row;
// MySQL's locking transaction) and for the locking transaction alone.
func TestMySQLCleanupKeepsRefreshedSessions(t *testing.T) {
	for _, lockPath := range []bool{false, true} {
		t.Run(map[bool]string{false: "server's own delete", true: "locking transaction"}[lockPath], func(t *testing.T) {
			myTestKeepsRefreshed(t, lockPath)
		})
	}
}

func myTestKeepsRefreshed(t *testing.T, lockPath bool) {
	out := myTestRefreshRace(t, false, lockPath)
	t.Logf("%+v", out)
	if out.waitedForHeldLock {
		t.Error("the cleanup waited for the row lock the app held")
	}
	if out.lost > 0 {
		t.Fatalf("%d refreshed sessions lost", out.lost)
	}
	if out.during == 0 || out.rep.Batches < 100 || out.rep.Deleted == out.rep.Expired {
		t.Fatalf("no session was refreshed between the cleanup's read and its delete (%d batches, %d refreshes during them), so the test proves nothing",
			out.rep.Batches, out.during)
	}
}

// TestMySQLRefreshRaceCatchesABrokenDelete runs the same race with the
// delete broken on purpose (the ids the lockless read found expired are
// deleted as they are, no lock, no re-check): the race must lose sessions,
// or TestMySQLCleanupKeepsRefreshedSessions would prove nothing.
func TestMySQLRefreshRaceCatchesABrokenDelete(t *testing.T) {
	out := myTestRefreshRace(t, true, false)
	t.Logf("%+v", out)
	if out.lost == 0 {
		t.Fatal("the broken delete lost no refreshed session: the race does not test the re-check")
	}
	// It deletes the held row without SKIP LOCKED, so it waits for it: the
	// watcher must see that, or it could not tell a correct cleanup waiting.
	if !out.waitedForHeldLock {
		t.Fatal("the watcher did not see the broken delete wait for the held row lock")
	}
}

type myRaceOutcome struct {
	rep               sessionstore.Report
	lost              int
	during            int64
	waitedForHeldLock bool
	longestAppWait    time.Duration
}

func myTestRefreshRace(t *testing.T, broken, lockPath bool) myRaceOutcome {
	ctx := myTestCtx(t)
	db, s, pool := myTestSessionsTable(t)
	s.(*myStore).skipRecheck = broken
	s.(*myStore).forceLockPath = lockPath
	// Batches of 10 throughout: many read-then-delete windows for the
	// writers to land in.
	s.(*myStore).maxBatch = 10
	const n = 3000
	myTestFill(t, pool, "session:live-", n, "INTERVAL 1 HOUR")
	myTestFill(t, pool, "session:expired-", n, "INTERVAL -1 HOUR")
	myTestFill(t, pool, "session:borderline-", n, "INTERVAL -1 SECOND")
	held := myTestHoldRefresh(t, pool, "session:expired-1500")

	var out myRaceOutcome
	var batches atomic.Int64
	refreshed, during, appWait, stopWriters := myTestStartWriters(t, ctx, db, n, &batches)
	watchDone := make(chan bool, 1)
	stopWatch := make(chan struct{})
	go func() { watchDone <- held.commitWhenWaitedFor(ctx, stopWatch) }()
	t.Cleanup(func() {
		if held.watchErr != nil {
			t.Errorf("the lock wait watcher: %v", held.watchErr)
		}
	})

	rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 10, Progress: func(r sessionstore.Report) { batches.Store(int64(r.Batches)) }})
	close(stopWatch)
	out.waitedForHeldLock = <-watchDone
	stopWriters()
	held.commit(t)
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	out.rep, out.during, out.longestAppWait = rep, during.Load(), time.Duration(appWait.Load())
	refreshed[held.sid] = true
	out.lost = myTestCheckSurvivors(t, pool, n, refreshed)
	return out
}

// myTestCheckSurvivors checks no expired session survived that was not
// refreshed and every live one did, and counts refreshed sessions lost.
func myTestCheckSurvivors(t *testing.T, pool *sql.DB, n int, refreshed map[string]bool) int {
	t.Helper()
	present := map[string]bool{}
	for _, sid := range myTestLeft(t, pool, "sessions") {
		present[sid] = true
		if strings.HasPrefix(sid, "session:expired-") && !refreshed[sid] {
			t.Errorf("expired session %s survived", sid)
		}
	}
	for i := 1; i <= n; i++ {
		if sid := fmt.Sprintf("session:live-%d", i); !present[sid] {
			t.Errorf("live session %s was deleted", sid)
		}
	}
	lost := 0
	for sid := range refreshed {
		if !present[sid] {
			lost++
		}
	}
	return lost
}

// myTestStartWriters starts 4 app connections refreshing live and
// borderline sessions; stop waits for them and fails the test on errors.
func myTestStartWriters(t *testing.T, ctx context.Context, db string, n int, batches *atomic.Int64) (
	refreshed map[string]bool, during, longestWait *atomic.Int64, stop func()) {
	var (
		halt sync.WaitGroup
		quit atomic.Bool
		mu   sync.Mutex
		errs = make(chan error, 4)
	)
	refreshed, during, longestWait = map[string]bool{}, new(atomic.Int64), new(atomic.Int64)
	app := myTestOpen(t, db)
	for w := range 4 {
		halt.Add(1)
		go func() {
			defer halt.Done()
			for i := w; !quit.Load(); i += 4 {
				// Half go to borderline sessions from the end of the table,
				// which the cleanup reaches last, so many land after it read
				// its clock and before their batch.
				sid := fmt.Sprintf("session:live-%d", 1+(i*7919)%n)
				if i%2 == 0 {
					sid = fmt.Sprintf("session:borderline-%d", n-(i/2)%n)
				}
				// As Flask-Session's SQLAlchemy model saves: the row is read by
				// session_id, then updated by its primary key.
				var id int64
				if err := app.QueryRowContext(ctx, "SELECT id FROM sessions WHERE session_id = ?", sid).Scan(&id); err != nil {
					continue // deleted meanwhile
				}
				start := time.Now()
				res, err := app.ExecContext(ctx, "UPDATE sessions SET expiry = UTC_TIMESTAMP() + INTERVAL 1 HOUR, data = ? WHERE id = ?",
					fmt.Sprint(i), id)
				if wait := int64(time.Since(start)); wait > longestWait.Load() {
					longestWait.Store(wait)
				}
				if err != nil {
					errs <- err
					return
				}
				if affected, _ := res.RowsAffected(); affected == 1 {
					mu.Lock()
					refreshed[sid] = true
					mu.Unlock()
					if batches.Load() > 0 {
						during.Add(1)
					}
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond) // let the writers start
	return refreshed, during, longestWait, func() {
		quit.Store(true)
		halt.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("writer: %v", err)
		}
	}
}

// myHeldRefresh is an app transaction that refreshed one session and has
// not committed, so it holds that row's lock.
type myHeldRefresh struct {
	sid   string
	conn  *sql.Conn
	trxID string
	pool  *sql.DB
	once  sync.Once
	// waitsSQL counts the transactions waiting for trxID's locks (one ?).
	waitsSQL string
	// watchErr is why the watcher stopped reading the lock waits.
	watchErr error
}

func myTestHoldRefresh(t *testing.T, pool *sql.DB, sid string) *myHeldRefresh {
	t.Helper()
	conn, err := pool.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h := &myHeldRefresh{sid: sid, conn: conn, pool: pool, waitsSQL: myTestLockWaitsSQL(myTestMariaDB(t))}
	myTestExec(t, conn, "START TRANSACTION")
	myTestExec(t, conn, "UPDATE sessions SET expiry = UTC_TIMESTAMP() + INTERVAL 1 HOUR WHERE session_id = ?", sid)
	// InnoDB fills INNODB_TRX from a cache it refreshes only when the last
	// read is over 100 ms old: right after the previous test's watcher
	// polled it, it does not list this transaction yet, and reads closer
	// together than that keep it stale.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := conn.QueryRowContext(context.Background(),
			"SELECT trx_id FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = CONNECTION_ID()").Scan(&h.trxID)
		if err == nil {
			return h
		}
		if !errors.Is(err, sql.ErrNoRows) || time.Now().After(deadline) {
			t.Fatalf("the held refresh's transaction: %v", err)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// commitWhenWaitedFor commits the refresh as soon as another transaction
// waits for its lock (and says so), or returns when stop closes.
func (h *myHeldRefresh) commitWhenWaitedFor(ctx context.Context, stop <-chan struct{}) bool {
	// A backstop, not the signal: MariaDB does not always list the wait
	// (seen with a long purge backlog), and a hold that never ends would
	// stall the broken delete until the test's deadline. The correct
	// cleanups finish in about 2 s without waiting, well inside it.
	backstop := time.After(10 * time.Second)
	for {
		select {
		case <-stop:
			return false
		case <-backstop:
			h.once.Do(func() { h.conn.ExecContext(ctx, "COMMIT") })
			return false
		// Over 100 ms apart: InnoDB refreshes what INNODB_TRX (and
		// MariaDB's INNODB_LOCK_WAITS) show only when their last read is older than
		// that, so closer polls would keep reading the first snapshot.
		case <-time.After(150 * time.Millisecond):
		}
		var waiters int
		if err := h.pool.QueryRowContext(ctx, h.waitsSQL, h.trxID).Scan(&waiters); err != nil {
			h.watchErr = err
			h.once.Do(func() { h.conn.ExecContext(ctx, "COMMIT") })
			return false
		}
		if waiters > 0 {
			h.once.Do(func() { h.conn.ExecContext(ctx, "COMMIT") })
			return true
		}
	}
}

// myTestLockWaitsSQL counts the transactions waiting for a lock of the
// transaction ?. MariaDB lists lock waits in information_schema's
// INNODB_LOCK_WAITS, which MySQL 8 dropped for performance_schema's
// data_lock_waits. INNODB_LOCK_WAITS does not always name the held
// transaction as the blocker (seen on MariaDB 10.11 with a long purge
// backlog): a cleanup DELETE waiting for a lock counts too.
func myTestLockWaitsSQL(mariaDB bool) string {
	waits := "SELECT COUNT(*) FROM performance_schema.data_lock_waits WHERE BLOCKING_ENGINE_TRANSACTION_ID = ?"
	if mariaDB {
		waits = "SELECT COUNT(*) FROM information_schema.INNODB_LOCK_WAITS WHERE blocking_trx_id = ?"
	}
	return "SELECT (" + waits + ") + (SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT' AND trx_query LIKE 'DELETE%')"
}

func (h *myHeldRefresh) commit(t *testing.T) {
	h.once.Do(func() { myTestExec(t, h.conn, "COMMIT") })
}

// TestMySQLCleanupRechecksARowRefreshedAfterItsRead: the app refreshes (and
// commits) an expired session after the batch's lockless read found it
// expired and before the batch deletes: the re-check under the lock keeps
// it. The broken delete, which trusts the read, loses it.
func TestMySQLCleanupRechecksARowRefreshedAfterItsRead(t *testing.T) {
	for _, tc := range []struct{ broken, lockPath bool }{{false, false}, {false, true}, {true, false}} {
		broken := tc.broken
		t.Run(fmt.Sprintf("broken=%v/locking transaction=%v", tc.broken, tc.lockPath), func(t *testing.T) {
			ctx := myTestCtx(t)
			_, s, pool := myTestSessionsTable(t)
			myTestFill(t, pool, "session:expired-", 100, "INTERVAL -1 HOUR")
			const sid = "session:expired-50"
			refreshes := 0
			s.(*myStore).skipRecheck = broken
			s.(*myStore).forceLockPath = tc.lockPath
			id := myTestCount(t, pool, "SELECT id FROM sessions WHERE session_id = ?", sid)
			s.(*myStore).afterSnapshot = func(expired []int64) {
				if !slices.Contains(expired, id) {
					return
				}
				res, err := pool.Exec("UPDATE sessions SET expiry = UTC_TIMESTAMP() + INTERVAL 1 HOUR WHERE session_id = ? AND expiry < UTC_TIMESTAMP()", sid)
				if err != nil {
					t.Errorf("refresh: %v", err)
					return
				}
				n, _ := res.RowsAffected()
				refreshes += int(n)
			}
			rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 10})
			if err != nil || refreshes != 1 {
				t.Fatalf("Cleanup: %+v, %v; %d refreshes", rep, err, refreshes)
			}
			kept := myTestCount(t, pool, "SELECT COUNT(*) FROM sessions WHERE session_id = ?", sid) == 1
			if broken {
				if kept {
					t.Fatal("the broken delete kept the refreshed session: the test does not test the re-check")
				}
				return
			}
			if !kept || rep.Expired != 100 || rep.Deleted != 99 {
				t.Fatalf("refreshed session kept=%v, report %+v; want it kept and 99 of 100 expired deleted", kept, rep)
			}
		})
	}
}

// TestMySQLCleanupPassesALiveRowHeldInALongTransaction: a live session the
// app holds in a long transaction lies among a batch's expired rows. No
// statement of the batch may wait for it: the cleanup ends within seconds,
// where a wait would last innodb_lock_wait_timeout, and deletes every
// expired session. With and without an index on expiry, for the server's
// own delete and for the locking transaction.
func TestMySQLCleanupPassesALiveRowHeldInALongTransaction(t *testing.T) {
	for _, index := range []bool{false, true} {
		for _, lockPath := range []bool{false, true} {
			t.Run(fmt.Sprintf("expiry index=%v/locking transaction=%v", index, lockPath), func(t *testing.T) {
				myTestPassesAHeldLiveRow(t, index, lockPath)
			})
		}
	}
}

func myTestPassesAHeldLiveRow(t *testing.T, index, lockPath bool) {
	ctx := myTestCtx(t)
	_, s, pool := myTestSessionsTable(t)
	if index {
		myTestExec(t, pool, "CREATE INDEX sessions_expiry_idx ON sessions (expiry)")
	}
	myTestFill(t, pool, "expired-a-", 50, "INTERVAL -1 HOUR")
	myTestFill(t, pool, "live-", 10, "INTERVAL 1 HOUR")
	myTestFill(t, pool, "expired-b-", 50, "INTERVAL -1 HOUR")
	s.(*myStore).forceLockPath = lockPath
	s.(*myStore).maxBatch = 200 // one batch: its ids are most of the table

	app, err := pool.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Rollback() //nolint:errcheck
	if _, err := app.ExecContext(ctx, "UPDATE sessions SET expiry = UTC_TIMESTAMP() + INTERVAL 2 HOUR WHERE session_id = 'live-5'"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 200})
	took := time.Since(start)
	if err != nil || rep.Deleted != 100 || rep.Batches != 1 {
		t.Fatalf("Cleanup beside a held live row: %+v, %v (after %v); want 100 deleted in one batch", rep, err, took)
	}
	if took > 5*time.Second {
		t.Fatalf("Cleanup took %v: it waited for the live row the app holds", took)
	}
	if n := myTestCount(t, pool, "SELECT COUNT(*) FROM sessions"); n != 10 {
		t.Fatalf("%d rows left, want the 10 live ones", n)
	}
}
