package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

const pgBenchRows = 1_000_000

// BenchmarkPostgresCleanup measures Cleanup on 1,000,000 rows in
// Flask-Session's layout, half of them expired and interleaved with live ones,
// without and with the expiry index, each beside its baseline in the same run:
// one plain DELETE ... WHERE expiry <= now, as Flask-Session 0.8's cleanup
// does. Every run gets a fresh copy of the same rows, vacuumed and
// checkpointed, so each pays the same I/O; filling is not timed.
//
// Each iteration times the baseline (baseline-ms, which is also its one
// transaction) and then Cleanup (ns/op) on identical tables. Metrics:
// x-baseline is Cleanup's time over the baseline's; max-tx-ms is Cleanup's
// longest batch transaction, measured as the longest gap between two Progress
// calls, which bounds it from above.
//
//	go test ./internal/sessionstore -run '^$' -bench Postgres -benchtime 1x -count 3 -timeout 60m
func BenchmarkPostgresCleanup(b *testing.B) {
	ctx := context.Background()
	db := pgTestDatabase(b, "")
	conn := pgTestConnect(b, pgTestURL(db))
	pgTestExec(b, conn, `CREATE TABLE bench_template AS
		SELECT g AS id, 'session:' || md5(g::text) AS session_id, decode(repeat('80049510000000', 10), 'hex') AS data,
		       now() AT TIME ZONE 'utc' + CASE WHEN g % 2 = 0 THEN -1 ELSE 1 END * interval '1 hour' * (1 + random()) AS expiry
		  FROM generate_series(1, $1::int) g`, pgBenchRows)

	for _, withIndex := range []bool{false, true} {
		for _, batchSize := range []int{1000, 5000} {
			b.Run(fmt.Sprintf("index=%v/batch=%d", withIndex, batchSize), func(b *testing.B) {
				for range b.N {
					b.StopTimer()
					pgBenchFill(b, db, withIndex)
					start := time.Now()
					tag, err := conn.Exec(ctx, `DELETE FROM bench WHERE expiry <= now() AT TIME ZONE 'utc'`)
					baseline := time.Since(start)
					if err != nil || tag.RowsAffected() != pgBenchRows/2 {
						b.Fatalf("baseline deleted %d rows (%v), want %d", tag.RowsAffected(), err, pgBenchRows/2)
					}

					pgBenchFill(b, db, withIndex)
					s := pgTestStore(b, sessionstore.Config{URL: pgTestURL(db), Table: "bench"})
					var maxTx time.Duration
					var last time.Time
					opts := sessionstore.CleanupOptions{BatchSize: batchSize, Progress: func(r sessionstore.Report) {
						now := time.Now()
						if r.Batches > 0 {
							maxTx = max(maxTx, now.Sub(last))
						}
						last = now
					}}
					b.StartTimer()
					start = time.Now()
					rep, err := s.Cleanup(ctx, opts)
					took := time.Since(start)
					b.StopTimer()
					if err != nil || rep.Deleted != pgBenchRows/2 {
						b.Fatalf("cleanup: %+v, %v; want %d deleted", rep, err, pgBenchRows/2)
					}
					s.Close()
					b.ReportMetric(float64(baseline.Microseconds())/1000, "baseline-ms")
					b.ReportMetric(float64(took)/float64(baseline), "x-baseline")
					b.ReportMetric(float64(maxTx.Microseconds())/1000, "max-tx-ms")
					b.ReportMetric(float64(rep.Batches), "batches")
				}
			})
		}
	}
}

// pgBenchFill makes table bench a fresh copy of the template in
// Flask-Session's layout, with the expiry index when asked, and checkpoints
// so that the timed statement starts from the same state every time.
func pgBenchFill(b *testing.B, db string, withIndex bool) {
	b.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgTestURL(db))
	if err != nil {
		b.Fatalf("PostgreSQL at %s is not reachable (%v); run hack/start-services.sh", pgTestHost, err)
	}
	defer conn.Close(ctx)
	pgTestExec(b, conn, "DROP TABLE IF EXISTS bench")
	s := pgTestStore(b, sessionstore.Config{URL: pgTestURL(db), Table: "bench", CreateTable: true})
	if _, err := s.EnsureSchema(ctx); err != nil {
		b.Fatalf("EnsureSchema: %v", err)
	}
	// Autovacuum would run at a different moment in each run.
	pgTestExec(b, conn, "ALTER TABLE bench SET (autovacuum_enabled = false)")
	pgTestExec(b, conn, "INSERT INTO bench SELECT * FROM bench_template ORDER BY id")
	if withIndex {
		s := pgTestStore(b, sessionstore.Config{URL: pgTestURL(db), Table: "bench", CreateExpiryIndex: true})
		if _, err := s.EnsureSchema(ctx); err != nil {
			b.Fatalf("EnsureSchema: %v", err)
		}
	}
	pgTestExec(b, conn, "VACUUM (ANALYZE) bench")
	pgTestExec(b, conn, "CHECKPOINT")
}
