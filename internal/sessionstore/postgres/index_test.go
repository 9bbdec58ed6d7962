package postgres

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// pgTestLongTransaction opens a transaction that holds a snapshot on a
// connection of its own, as an app's forgotten transaction does, and
// returns the connection and its backend pid.
func pgTestLongTransaction(t *testing.T, db string) (*pgx.Conn, int32) {
	t.Helper()
	blocker := pgTestConnect(t, pgTestURL(db))
	pgTestExec(t, blocker, "BEGIN ISOLATION LEVEL REPEATABLE READ")
	pgTestExec(t, blocker, "SELECT 1 FROM pg_class LIMIT 1")
	var pid int32
	if err := blocker.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return blocker, pid
}

// pgTestWaitFor polls query (one boolean) on conn until it is true.
func pgTestWaitFor(t *testing.T, conn *pgx.Conn, what, query string, args ...any) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var ok bool
		if err := conn.QueryRow(context.Background(), query, args...).Scan(&ok); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// pgTestIndexStore is a store asking for the expiry index, as the manager's
// probe (deferBuild) or the cleanup job configures it, with a short lock
// wait so the test need not wait seconds.
func pgTestIndexStore(t *testing.T, db string, deferBuild bool, lockWait time.Duration) sessionstore.Store {
	s := pgTestStore(t, sessionstore.Config{URL: pgTestURL(db), CreateExpiryIndex: true, DeferIndexBuild: deferBuild})
	s.(*pgStore).indexLockWait = lockWait
	return s
}

// pgTestEnsureQuickly runs EnsureSchema and fails unless it returns within
// limit (the context allows more, so an unbounded build shows as slow).
func pgTestEnsureQuickly(t *testing.T, s sessionstore.Store, limit time.Duration) sessionstore.SchemaResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit+30*time.Second)
	defer cancel()
	start := time.Now()
	res, err := s.EnsureSchema(ctx)
	if took := time.Since(start); took > limit {
		t.Fatalf("EnsureSchema took %v (%+v, %v), want under %v", took, res, err, limit)
	}
	if err != nil {
		t.Fatalf("EnsureSchema: %v", err)
	}
	return res
}

func pgTestWantPending(t *testing.T, res sessionstore.SchemaResult, says string) {
	t.Helper()
	if !res.Pending || res.Present || len(res.Created) != 0 || !strings.Contains(res.Message, says) {
		t.Fatalf("got %+v; want the index pending, not present, nothing created, a message saying %q", res, says)
	}
}

// TestPostgresIndexWithLongTransaction: with a transaction held open
// elsewhere, a concurrent index build would wait for it to end. The
// manager's probe reports the index pending at once; the cleanup job does
// not start a build that would wait, reports it pending and still deletes
// the expired rows within a bounded time.
func TestPostgresIndexWithLongTransaction(t *testing.T) {
	db, _, conn := pgTestSessionsTable(t)
	pgTestFill(t, conn, "session:expired-", 1000, "-1 hour")
	pgTestFill(t, conn, "session:live-", 500, "1 hour")
	_, pid := pgTestLongTransaction(t, db)
	const lockWait = 300 * time.Millisecond
	pgTestWaitFor(t, conn, "the transaction to be older than the lock wait",
		"SELECT clock_timestamp() - xact_start > make_interval(secs => $2) FROM pg_stat_activity WHERE pid = $1", pid, lockWait.Seconds())

	probe := pgTestEnsureQuickly(t, pgTestIndexStore(t, db, true, lockWait), 5*time.Second)
	pgTestWantPending(t, probe, "missing; the next cleanup run builds it")

	start := time.Now()
	job := pgTestIndexStore(t, db, false, lockWait)
	res := pgTestEnsureQuickly(t, job, 5*time.Second)
	pgTestWantPending(t, res, "a transaction open since")
	rep, err := job.Cleanup(pgTestCtx(t), sessionstore.CleanupOptions{})
	if err != nil || rep.Deleted != 1000 {
		t.Fatalf("Cleanup: %+v, %v; want the 1000 expired rows deleted", rep, err)
	}
	t.Logf("schema %q, then %s, in %v", res.Message, rep.Message, time.Since(start))
	if valid := pgTestIndexValid(t, conn, "sessions_expiry_idx"); valid != nil {
		t.Fatalf("an index was left behind (valid=%v)", *valid)
	}
}

// TestPostgresIndexBuildGivesUpOnLockWait: a transaction young enough not
// to stop the build from starting still holds it up; the cleanup job's
// build gives up after the lock wait and reports pending. The invalid index
// it leaves is reported, never dropped, by the probe, and rebuilt by the
// next job once the transaction is gone.
func TestPostgresIndexBuildGivesUpOnLockWait(t *testing.T) {
	db, _, conn := pgTestSessionsTable(t)
	pgTestFill(t, conn, "session:expired-", 100, "-1 hour")
	blocker, _ := pgTestLongTransaction(t, db)

	job := pgTestIndexStore(t, db, false, 2*time.Second)
	res := pgTestEnsureQuickly(t, job, 15*time.Second)
	pgTestWantPending(t, res, "in time")
	if rep, err := job.Cleanup(pgTestCtx(t), sessionstore.CleanupOptions{}); err != nil || rep.Deleted != 100 {
		t.Fatalf("Cleanup after the build gave up: %+v, %v", rep, err)
	}
	pgTestExec(t, blocker, "COMMIT")

	var oid uint32
	conn.QueryRow(context.Background(), "SELECT coalesce(to_regclass('sessions_expiry_idx')::oid, 0)").Scan(&oid)
	if valid := pgTestIndexValid(t, conn, "sessions_expiry_idx"); valid == nil || *valid {
		t.Fatalf("want the interrupted build's invalid index, got valid=%v", valid)
	}
	probe := pgTestEnsureQuickly(t, pgTestIndexStore(t, db, true, 2*time.Second), 5*time.Second)
	pgTestWantPending(t, probe, "left invalid")
	var after uint32
	conn.QueryRow(context.Background(), "SELECT coalesce(to_regclass('sessions_expiry_idx')::oid, 0)").Scan(&after)
	if after != oid {
		t.Fatalf("the probe dropped or replaced the index (oid %d, was %d)", after, oid)
	}
	again := pgTestEnsureQuickly(t, job, 15*time.Second)
	if !again.Present || again.Pending || !strings.Contains(again.Message, "rebuilt") {
		t.Fatalf("next job: %+v; want the index rebuilt", again)
	}
}

// TestPostgresIndexBeingBuiltIsNeverDropped: while another session builds
// the index (invalid until it is done), neither the probe nor the job
// drops it; the build finishes.
func TestPostgresIndexBeingBuiltIsNeverDropped(t *testing.T) {
	db, _, conn := pgTestSessionsTable(t)
	pgTestFill(t, conn, "session:expired-", 100, "-1 hour")
	blocker, _ := pgTestLongTransaction(t, db)
	builder := pgTestConnect(t, pgTestURL(db))
	built := make(chan error, 1)
	go func() {
		_, err := builder.Exec(context.Background(), "CREATE INDEX CONCURRENTLY sessions_expiry_idx ON sessions (expiry)")
		built <- err
	}()
	pgTestWaitFor(t, conn, "the other session's build", `SELECT EXISTS (SELECT 1 FROM pg_stat_progress_create_index WHERE relid = 'sessions'::regclass)
		AND to_regclass('sessions_expiry_idx') IS NOT NULL`)
	var oid uint32
	conn.QueryRow(context.Background(), "SELECT to_regclass('sessions_expiry_idx')::oid").Scan(&oid)

	for _, deferBuild := range []bool{true, false} {
		res := pgTestEnsureQuickly(t, pgTestIndexStore(t, db, deferBuild, time.Second), 5*time.Second)
		pgTestWantPending(t, res, "being built by another session")
		var now uint32
		conn.QueryRow(context.Background(), "SELECT coalesce(to_regclass('sessions_expiry_idx')::oid, 0)").Scan(&now)
		if now != oid {
			t.Fatalf("deferBuild=%v: the index being built was dropped (oid %d, was %d)", deferBuild, now, oid)
		}
	}
	pgTestExec(t, blocker, "COMMIT")
	if err := <-built; err != nil {
		t.Fatalf("the other session's build failed: %v", err)
	}
	if valid := pgTestIndexValid(t, conn, "sessions_expiry_idx"); valid == nil || !*valid {
		t.Fatalf("index after the other build: valid=%v", valid)
	}
}
