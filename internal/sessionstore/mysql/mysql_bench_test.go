package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// myBenchSizesEnv lists the table sizes to measure, comma-separated
// (default 400000,1000000); a smaller one makes a quick run.
const myBenchSizesEnv = "SESSIONSTORE_MYSQL_BENCH_ROWS"

func myBenchSizes(b *testing.B) []int {
	raw := os.Getenv(myBenchSizesEnv)
	if raw == "" {
		return []int{400_000, 1_000_000}
	}
	var sizes []int
	for _, f := range strings.Split(raw, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			b.Fatalf("%s=%q: want row counts like 400000,1000000", myBenchSizesEnv, raw)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// BenchmarkMySQLCleanup measures Cleanup on tables of 400,000 and 1,000,000
// rows (SESSIONSTORE_MYSQL_BENCH_ROWS) in Flask-Session's layout, half of
// them expired and interleaved with live ones, without and with an index on
// expiry, each beside its baseline in the same run: one plain
// DELETE FROM sessions WHERE expiry <= UTC_TIMESTAMP(), as Flask-Session 0.8's
// cleanup does. Every timed statement gets a fresh copy of the same rows;
// filling is not timed.
//
// Each iteration times the baseline (baseline-ms) and Cleanup (ns/op) on
// identical tables, after InnoDB has settled (purged and flushed what came
// before), the first of the two alternating by iteration; x-baseline is
// their ratio. Then it runs both again while
// an app updates live sessions as fast as it can, one UPDATE at a time:
// app-wait-ms is the app's longest UPDATE during Cleanup, and
// baseline-app-wait-ms during the plain DELETE, and app-alone-wait-ms with
// nothing else running (what the machine's load alone costs it). max-tx-ms
// is the longest any Cleanup batch held its locks (its DELETE, or from its
// locking read to its commit), tx-over-250ms how many did longer than
// 250 ms in both runs, max-batch the largest batch size reached.
// lock-waits and lock-wait-ms are how often and how long any transaction on
// the server (the app's, on this machine) waited for a row lock during the
// Cleanup beside the app (baseline-lock-waits: during the plain DELETE
// beside it): the app's longest UPDATE less what was lock wait
// is the load's.
//
// It runs on the server the tests use (SESSIONSTORE_MYSQL_TEST_ADDR,
// MariaDB on 127.0.0.1:3306 by default, MySQL 8 on 127.0.0.1:3307).
//
//	go test ./internal/sessionstore/mysql -run '^$' -bench MySQL -benchtime 1x -count 1 -timeout 60m
func BenchmarkMySQLCleanup(b *testing.B) {
	for _, rows := range myBenchSizes(b) {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) { myBenchCleanup(b, rows) })
	}
}

func myBenchCleanup(b *testing.B, rows int) {
	db := myTestDatabase(b)
	pool := myTestOpen(b, db)
	// From cross-joined digits (myTestSeq), not MariaDB's seq_1_to_<n>,
	// so that it runs on MySQL 8 too.
	myTestExec(b, pool, `CREATE TABLE bench_template AS
		SELECT seq AS id, CONCAT('session:', MD5(seq)) AS session_id, UNHEX(REPEAT('80049510000000', 10)) AS data,
		       UTC_TIMESTAMP() + INTERVAL IF(seq % 2 = 0, -1, 1) * (3600 + FLOOR(RAND() * 3600)) SECOND AS expiry
		  FROM `+myTestSeq(rows))
	for _, withIndex := range []bool{false, true} {
		b.Run(fmt.Sprintf("index=%v", withIndex), func(b *testing.B) {
			for i := range b.N {
				myBenchOnce(b, db, pool, rows, withIndex, i)
			}
		})
	}
}

// myBenchOnce times the baseline and Cleanup on identical fresh tables (in
// turn first, by iteration), then measures how long an app waits during each.
func myBenchOnce(b *testing.B, db string, pool *sql.DB, rows int, withIndex bool, iteration int) {
	ctx := context.Background()
	b.StopTimer()
	s := myTestStore(b, sessionstore.Config{URL: myTestURL(db), Table: "bench"})
	var largest, over int
	s.(*myStore).onBatch = func(size int, hold time.Duration) {
		largest = max(largest, size)
		if hold > myLockBudget {
			over++
		}
	}
	var baseline, took time.Duration
	var rep sessionstore.Report
	var err error
	for i := range 2 {
		myBenchFill(b, db, pool, withIndex)
		if (i+iteration)%2 == 0 {
			baseline = myBenchBaseline(b, pool, rows)
			continue
		}
		b.StartTimer()
		start := time.Now()
		rep, err = s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: myDefaultBatchSize})
		took = time.Since(start)
		b.StopTimer()
		if err != nil || rep.Deleted != int64(rows/2) {
			b.Fatalf("cleanup: %+v, %v; want %d deleted", rep, err, rows/2)
		}
	}
	maxTx := s.(*myStore).longestHold

	myBenchFill(b, db, pool, withIndex)
	baseWaitsBefore, _ := myBenchLockWaits(b, pool)
	baselineWait := myBenchWithApp(b, db, rows, func() { myBenchBaseline(b, pool, rows) })
	baseWaitsAfter, _ := myBenchLockWaits(b, pool)
	myBenchFill(b, db, pool, withIndex)
	var appRep sessionstore.Report
	waitsBefore, waitMsBefore := myBenchLockWaits(b, pool)
	appWait := myBenchWithApp(b, db, rows, func() {
		appRep, err = s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: myDefaultBatchSize})
	})
	waitsAfter, waitMsAfter := myBenchLockWaits(b, pool)
	if err != nil || appRep.Deleted != int64(rows/2) {
		b.Fatalf("cleanup beside the app: %+v, %v; want %d deleted", appRep, err, rows/2)
	}
	maxTx = max(maxTx, s.(*myStore).longestHold)
	// The app alone, for as long (5 s at most): its longest UPDATE with
	// nothing else on the table is what the machine's load alone costs it.
	aloneWait := myBenchWithApp(b, db, rows, func() { time.Sleep(min(took, 5*time.Second)) })

	b.ReportMetric(float64(baseline.Microseconds())/1000, "baseline-ms")
	b.ReportMetric(float64(took)/float64(baseline), "x-baseline")
	b.ReportMetric(float64(maxTx.Microseconds())/1000, "max-tx-ms")
	b.ReportMetric(float64(appWait.Microseconds())/1000, "app-wait-ms")
	b.ReportMetric(float64(baselineWait.Microseconds())/1000, "baseline-app-wait-ms")
	b.ReportMetric(float64(rep.Batches), "batches")
	b.ReportMetric(float64(largest), "max-batch")
	b.ReportMetric(float64(over), "tx-over-250ms")
	b.ReportMetric(float64(aloneWait.Microseconds())/1000, "app-alone-wait-ms")
	b.ReportMetric(float64(waitsAfter-waitsBefore), "lock-waits")
	b.ReportMetric(float64(waitMsAfter-waitMsBefore), "lock-wait-ms")
	b.ReportMetric(float64(baseWaitsAfter-baseWaitsBefore), "baseline-lock-waits")
}

func myBenchBaseline(b *testing.B, pool *sql.DB, rows int) time.Duration {
	start := time.Now()
	res, err := pool.Exec("DELETE FROM bench WHERE expiry <= UTC_TIMESTAMP()")
	took := time.Since(start)
	if err != nil {
		b.Fatalf("baseline: %v", err)
	}
	if n, _ := res.RowsAffected(); n != int64(rows/2) {
		b.Fatalf("baseline deleted %d rows, want %d", n, rows/2)
	}
	return took
}

// myBenchWithApp runs work while an app refreshes random live sessions (the
// odd ids) one UPDATE at a time, and returns the app's longest UPDATE.
func myBenchWithApp(b *testing.B, db string, rows int, work func()) time.Duration {
	app := myTestOpen(b, db)
	var (
		stop    atomic.Bool
		longest time.Duration
		done    sync.WaitGroup
		appErr  error
	)
	done.Add(1)
	go func() {
		defer done.Done()
		for i := 0; !stop.Load(); i++ {
			id := 2*rand.IntN(rows/2) + 1
			start := time.Now()
			// By primary key, as Flask-Session's SQLAlchemy model saves.
			_, err := app.Exec("UPDATE bench SET expiry = UTC_TIMESTAMP() + INTERVAL 2 HOUR, data = ? WHERE id = ?", strconv.Itoa(i), id)
			longest = max(longest, time.Since(start))
			if err != nil {
				appErr = err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	work()
	stop.Store(true)
	done.Wait()
	if appErr != nil {
		b.Fatalf("app: %v", appErr)
	}
	return longest
}

// myBenchLockWaits reads how many times, and how many ms in all, any
// transaction on the server has waited for a row lock.
func myBenchLockWaits(b *testing.B, pool *sql.DB) (waits, ms int64) {
	b.Helper()
	var name string
	if err := pool.QueryRow("SHOW GLOBAL STATUS LIKE 'Innodb_row_lock_waits'").Scan(&name, &waits); err != nil {
		b.Fatal(err)
	}
	if err := pool.QueryRow("SHOW GLOBAL STATUS LIKE 'Innodb_row_lock_time'").Scan(&name, &ms); err != nil {
		b.Fatal(err)
	}
	return waits, ms
}

// myBenchFill makes table bench a fresh copy of the template in
// Flask-Session's layout (made by EnsureSchema), with an index on expiry
// when asked, its statistics current.
func myBenchFill(b *testing.B, db string, pool *sql.DB, withIndex bool) {
	b.Helper()
	myTestExec(b, pool, "DROP TABLE IF EXISTS bench")
	s := myTestStore(b, sessionstore.Config{URL: myTestURL(db), Table: "bench", CreateTable: true})
	if _, err := s.EnsureSchema(context.Background()); err != nil {
		b.Fatalf("EnsureSchema: %v", err)
	}
	s.Close()
	myTestExec(b, pool, "INSERT INTO bench SELECT * FROM bench_template ORDER BY id")
	if withIndex {
		myTestExec(b, pool, "CREATE INDEX bench_expiry_idx ON bench (expiry)")
	}
	myTestExec(b, pool, "ANALYZE TABLE bench")
	myBenchSettle(b, pool)
}

// myBenchFlushWhenIdle makes InnoDB write its dirty pages while
// myBenchSettle waits, where the server is set never to when idle
// (MariaDB's innodb_max_dirty_pages_pct_lwm = 0, its default): else the
// wait runs its whole minute each time, and every statement is timed with
// the last one's pages still to write. It returns what puts the setting
// back, before the timed statement, so that this runs as configured.
func myBenchFlushWhenIdle(b *testing.B, pool *sql.DB) (restore func()) {
	b.Helper()
	var lwm float64
	if err := pool.QueryRow("SELECT @@GLOBAL.innodb_max_dirty_pages_pct_lwm").Scan(&lwm); err != nil {
		b.Fatal(err)
	}
	if lwm > 0 {
		return func() {}
	}
	myTestExec(b, pool, "SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0.001")
	return func() { myTestExec(b, pool, "SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0") }
}

// myBenchSettle waits, up to a minute, until InnoDB has purged what earlier
// deletes left (history list) and written its dirty pages, so the timed
// statement does not share the disk and CPU with the last one's aftermath.
// The history list length is read from INNODB_METRICS, which MariaDB and
// MySQL 8 both have (only MariaDB has it as a status variable).
func myBenchSettle(b *testing.B, pool *sql.DB) {
	b.Helper()
	restore := myBenchFlushWhenIdle(b, pool)
	defer restore()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var history, dirty int64
		if err := pool.QueryRow("SELECT `COUNT` FROM information_schema.INNODB_METRICS WHERE NAME = 'trx_rseg_history_len'").Scan(&history); err != nil {
			b.Fatal(err)
		}
		var name string
		if err := pool.QueryRow("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'").Scan(&name, &dirty); err != nil {
			b.Fatal(err)
		}
		if history < 100 && dirty < 100 {
			return
		}
	}
	b.Logf("InnoDB did not settle within a minute; timing anyway")
}
