package postgres

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// pgBenchSizesEnv lists the table sizes to measure, comma-separated
// (default 400000,1000000); a smaller one makes a quick run.
const pgBenchSizesEnv = "SESSIONSTORE_PG_BENCH_ROWS"

func pgBenchSizes(b *testing.B) []int {
	raw := os.Getenv(pgBenchSizesEnv)
	if raw == "" {
		return []int{400_000, 1_000_000}
	}
	var sizes []int
	for _, f := range strings.Split(raw, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			b.Fatalf("%s=%q: want row counts like 400000,1000000", pgBenchSizesEnv, raw)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// BenchmarkPostgresCleanup measures Cleanup on tables of 400,000 and
// 1,000,000 rows (SESSIONSTORE_PG_BENCH_ROWS) in Flask-Session's layout,
// half of them expired and interleaved with live ones, without and with the
// expiry index, each beside its baseline in the same run: one plain
// DELETE ... WHERE expiry <= now, as Flask-Session 0.8's cleanup does. Every
// run gets a fresh copy of the same rows, vacuumed and checkpointed, so each
// pays the same I/O; filling is not timed.
//
// Each iteration times the baseline (baseline-ms, which is also its one
// transaction) and then Cleanup (ns/op) on identical tables. Metrics:
// x-baseline is Cleanup's time over the baseline's; max-tx-ms is Cleanup's
// longest batch transaction, measured as the longest gap between two Progress
// calls, which bounds it from above.
//
//	go test ./internal/sessionstore/postgres -run '^$' -bench Postgres -benchtime 1x -count 3 -timeout 60m
func BenchmarkPostgresCleanup(b *testing.B) {
	for _, rows := range pgBenchSizes(b) {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) { pgBenchCleanup(b, rows) })
	}
}

func pgBenchCleanup(b *testing.B, pgBenchRows int) {
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
					pgBenchOnce(b, db, conn, pgBenchRows, withIndex, batchSize)
				}
			})
		}
	}
}

// pgBenchOnce times the baseline and Cleanup on identical fresh tables.
// Besides wall time it reports the server backend's CPU time for each
// (cpu-x), which the machine's load disturbs much less.
func pgBenchOnce(b *testing.B, db string, conn *pgx.Conn, rows int, withIndex bool, batchSize int) {
	ctx := context.Background()
	b.StopTimer()
	pgBenchFill(b, db, withIndex)
	var pid int32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		b.Fatal(err)
	}
	cpu0, start := pgBenchCPU(b, pid), time.Now()
	tag, err := conn.Exec(ctx, `DELETE FROM bench WHERE expiry <= now() AT TIME ZONE 'utc'`)
	baseline, baselineCPU := time.Since(start), pgBenchCPU(b, pid)-cpu0
	if err != nil || tag.RowsAffected() != int64(rows/2) {
		b.Fatalf("baseline deleted %d rows (%v), want %d", tag.RowsAffected(), err, rows/2)
	}

	pgBenchFill(b, db, withIndex)
	s := pgTestStore(b, sessionstore.Config{URL: pgTestURL(db), Table: "bench"})
	defer s.Close()
	if err := s.Ping(ctx); err != nil { // connects, so the backend is there to watch
		b.Fatal(err)
	}
	pid = int32(s.(*pgStore).conn.PgConn().PID())
	var maxTx time.Duration
	var last time.Time
	opts := sessionstore.CleanupOptions{BatchSize: batchSize, Progress: func(r sessionstore.Report) {
		now := time.Now()
		maxTx = max(maxTx, now.Sub(last))
		last = now
	}}
	cpu0 = pgBenchCPU(b, pid)
	b.StartTimer()
	start = time.Now()
	last = start
	rep, err := s.Cleanup(ctx, opts)
	took := time.Since(start)
	b.StopTimer()
	cleanupCPU := pgBenchCPU(b, pid) - cpu0
	if err != nil || rep.Deleted != int64(rows/2) {
		b.Fatalf("cleanup: %+v, %v; want %d deleted", rep, err, rows/2)
	}
	b.ReportMetric(float64(baseline.Microseconds())/1000, "baseline-ms")
	b.ReportMetric(float64(took)/float64(baseline), "x-baseline")
	b.ReportMetric(float64(cleanupCPU)/float64(max(baselineCPU, 1)), "cpu-x")
	b.ReportMetric(float64(maxTx.Microseconds())/1000, "max-tx-ms")
	b.ReportMetric(float64(rep.Batches), "batches")
}

// pgBenchCPU is the user and system CPU time, in clock ticks, that the
// server process pid has used (it runs on this machine).
func pgBenchCPU(b *testing.B, pid int32) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("reading the backend's CPU time: %v", err)
	}
	// Fields after the command, which is in parentheses: state is the
	// first, utime and stime the 12th and 13th.
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return utime + stime
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
