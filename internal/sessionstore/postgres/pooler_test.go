package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/testservers"
)

// pgTestPoolSize is the pooler's server connections per database: fewer
// than the clients, so they share them as an app's workers do.
const pgTestPoolSize = 2

// TestPostgresCleanupThroughTransactionPooler runs the cleanup and
// EnsureSchema through a real PgBouncer in transaction mode while app
// clients share its few server connections. The run must finish (pgx's
// cached prepared statements fail there with SQLSTATE 26000), and the
// server connections the app gets afterwards must have their default
// settings: nothing the cleanup SET may stay on them.
func TestPostgresCleanupThroughTransactionPooler(t *testing.T) {
	ctx := pgTestCtx(t)
	db, _, direct := pgTestSessionsTable(t)
	pgTestFill(t, direct, "session:expired-", 2000, "-1 hour")
	pgTestFill(t, direct, "session:live-", 1000, "1 hour")
	defaults := pgTestSettings(t, direct)

	pooler := testservers.PgBouncer(t, "127.0.0.1", 5432, pgTestPoolSize)
	pooled := "postgresql://postgres@" + pooler + "/" + db + "?sslmode=disable"

	var stop atomic.Bool
	var refreshes atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pgTestAppTraffic(ctx, pooled, &stop, &refreshes); err != nil {
				errs <- err
			}
		}()
	}
	s := pgTestStore(t, sessionstore.Config{URL: pooled, CreateTable: true, CreateExpiryIndex: true})
	res, schemaErr := s.EnsureSchema(ctx)
	rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 50})
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatalf("app client: %v", e)
	}
	if schemaErr != nil || !res.Present {
		t.Fatalf("EnsureSchema through the pooler: %+v, %v", res, schemaErr)
	}
	if err != nil {
		t.Fatalf("Cleanup through the pooler: %v", err)
	}
	// A refresh writes the row anew; where the new version lands in a
	// part of the heap not yet walked, the walk reads that session twice.
	// So Scanned is 3000 plus at most one per refresh, and exact only
	// without app traffic (TestPostgresCleanupFlaskInterop and others).
	t.Logf("scanned %d in %d batches, while the app made %d refreshes", rep.Scanned, rep.Batches, refreshes.Load())
	if rep.Deleted != 2000 || rep.Expired != 2000 || rep.Batches < 10 ||
		rep.Scanned < 3000 || rep.Scanned > 3000+refreshes.Load() {
		t.Fatalf("report %+v after %d refreshes; want 2000 of 3000 deleted in batches", rep, refreshes.Load())
	}
	if n := pgTestCount(t, direct, "sessions"); n != 1000 {
		t.Fatalf("%d rows left, want the 1000 live ones", n)
	}
	s.Close()

	// Hold every server connection of the pool at once, each in a
	// transaction, so each is looked at.
	var held []*pgx.Conn
	for i := range pgTestPoolSize {
		c := pgTestConnect(t, pooled)
		pgTestExec(t, c, "BEGIN")
		if got := pgTestSettings(t, c); got != defaults {
			t.Errorf("server connection %d of the pool has %s after the cleanup, want the defaults %s", i, got, defaults)
		}
		held = append(held, c)
	}
	for _, c := range held {
		pgTestExec(t, c, "ROLLBACK")
	}
}

// pgTestSettings is what the cleanup used to change for its session.
func pgTestSettings(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var out []string
	for _, name := range []string{"synchronous_commit", "enable_indexscan", "enable_bitmapscan", "lock_timeout", "statement_timeout"} {
		var v string
		if err := conn.QueryRow(context.Background(), "SHOW "+name, pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, name+"="+v)
	}
	return strings.Join(out, " ")
}

// pgTestAppTraffic reads and refreshes live sessions through url, as an app
// does, until stop; with the simple protocol, as apps behind PgBouncer must.
// It counts its refreshes in refreshes.
func pgTestAppTraffic(ctx context.Context, url string, stop *atomic.Bool, refreshes *atomic.Int64) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return err
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	for i := 0; !stop.Load(); i++ {
		sid := fmt.Sprintf("session:live-%d", 1+i%1000)
		if _, err := c.Exec(ctx, `UPDATE sessions SET data = data WHERE session_id = $1`, sid); err != nil {
			return err
		}
		refreshes.Add(1)
		var n int
		if err := c.QueryRow(ctx, `SELECT count(*) FROM sessions WHERE session_id = $1`, sid).Scan(&n); err != nil {
			return err
		}
	}
	return nil
}
