package mysql

import (
	"context"
	"database/sql"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/storetest"
)

// TestMySQLCleanupFlaskInterop has the real Flask-Session write live,
// expired and non-permanent (NULL expiry) sessions into a table EnsureSchema
// made, and checks that Cleanup removes exactly the expired ones while the
// app still reads every live one; with and without an index on expiry.
func TestMySQLCleanupFlaskInterop(t *testing.T) {
	for _, index := range []bool{false, true} {
		t.Run(map[bool]string{false: "no expiry index", true: "expiry index"}[index], func(t *testing.T) {
			ctx := myTestCtx(t)
			db, s, pool := myTestSessionsTable(t)
			if index {
				myTestExec(t, pool, "CREATE INDEX sessions_expiry_idx ON sessions (expiry)")
			}
			uri := myTestSQLAlchemyURI(db)
			live := myTestFlaskWrite(t, uri, "sessions", 3600, 30, true)
			expired := myTestFlaskWrite(t, uri, "sessions", -3600, 20, true)
			noExpiry := myTestFlaskWrite(t, uri, "sessions", 3600, 5, false)
			// Live now, expired in two minutes: it must survive.
			live = append(live, myTestFlaskWrite(t, uri, "sessions", 120, 1, true)...)
			if n := myTestCount(t, pool, "SELECT COUNT(*) FROM sessions WHERE expiry IS NULL"); n != int64(len(noExpiry)) {
				t.Fatalf("setup: %d rows with NULL expiry, want %d", n, len(noExpiry))
			}
			total := int64(len(live) + len(expired) + len(noExpiry))
			s.(*myStore).maxBatch = 4 // batches of 4 throughout, so there are several

			dry, err := s.Cleanup(ctx, sessionstore.CleanupOptions{DryRun: true, BatchSize: 4})
			if err != nil || !dry.DryRun || dry.Scanned != total || dry.Expired != int64(len(expired)) || dry.Deleted != 0 ||
				dry.Kept["noExpiry"] != int64(len(noExpiry)) {
				t.Fatalf("dry run: %+v, %v", dry, err)
			}
			if n := myTestCount(t, pool, "SELECT COUNT(*) FROM sessions"); n != total {
				t.Fatalf("the dry run deleted rows: %d left of %d", n, total)
			}

			var progress []sessionstore.Report
			rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{
				Now:       time.Now().AddDate(50, 0, 0), // the server's clock is used, not the job's
				BatchSize: 4,
				Progress:  func(r sessionstore.Report) { progress = append(progress, r) },
			})
			if err != nil {
				t.Fatalf("Cleanup: %v", err)
			}
			t.Logf("report: %+v", rep)
			if rep.Scanned != total || rep.Expired != int64(len(expired)) || rep.Deleted != int64(len(expired)) ||
				rep.Kept["noExpiry"] != int64(len(noExpiry)) || rep.Batches < len(expired)/4 || len(progress) != rep.Batches {
				t.Fatalf("report %+v (%d progress calls)", rep, len(progress))
			}
			if !strings.Contains(rep.Message, "kept 5 with no expiry") {
				t.Errorf("message does not count the NULL-expiry rows: %s", rep.Message)
			}
			for _, e := range expired {
				if n := myTestCount(t, pool, "SELECT COUNT(*) FROM sessions WHERE session_id = ?", "session:"+e.SID); n != 0 {
					t.Errorf("expired session %s is still there", e.SID)
				}
			}
			// Flask-Session 0.3.2 cannot read back its own NULL-expiry rows
			// (it compares None with a datetime), so only the live ones are read
			// (a read of a gone session saves a new, empty one).
			read := storetest.FlaskRead(t, myTestFlaskPy, live, uri, "sessions")
			for _, l := range live {
				if v := read[l.SID]; v == nil || *v != l.Value {
					t.Errorf("live session %s: the app reads %v, want %s", l.SID, v, l.Value)
				}
			}
			// Reads add no rows: nothing is left to do.
			again, err := s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 4})
			if err != nil || again.Expired != 0 || again.Deleted != 0 || again.Scanned != total-int64(len(expired)) {
				t.Fatalf("second run: %+v, %v; want nothing to do", again, err)
			}
		})
	}
}

// TestMySQLCleanupOnATableSQLAlchemyMade: an app that came first made its
// table itself (db.create_all() on Flask-Session's model, SQLAlchemy's own
// DDL, no EnsureSchema); a store pointed at it without createTable cleans it the
// same: exactly the expired sessions go, live and NULL-expiry ones stay.
func TestMySQLCleanupOnATableSQLAlchemyMade(t *testing.T) {
	ctx := myTestCtx(t)
	db := myTestDatabase(t)
	pool := myTestOpen(t, db)
	uri := myTestSQLAlchemyURI(db)
	storetest.RunFlask(t, myTestFlaskPy, "", "create", uri, "app_sessions")
	live := myTestFlaskWrite(t, uri, "app_sessions", 3600, 12, true)
	expired := myTestFlaskWrite(t, uri, "app_sessions", -3600, 9, true)
	noExpiry := myTestFlaskWrite(t, uri, "app_sessions", 3600, 3, false)
	s := myTestStore(t, sessionstore.Config{URL: myTestURL(db), Table: "app_sessions"})
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping on the table SQLAlchemy made: %v", err)
	}
	rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 4})
	total := int64(len(live) + len(expired) + len(noExpiry))
	if err != nil || rep.Scanned != total || rep.Expired != int64(len(expired)) || rep.Deleted != int64(len(expired)) ||
		rep.Kept["noExpiry"] != int64(len(noExpiry)) {
		t.Fatalf("Cleanup: %+v, %v; want %d scanned, %d deleted, %d kept with no expiry", rep, err, total, len(expired), len(noExpiry))
	}
	if n := myTestCount(t, pool, "SELECT COUNT(*) FROM app_sessions"); n != int64(len(live)+len(noExpiry)) {
		t.Fatalf("%d rows left, want %d", n, len(live)+len(noExpiry))
	}
	read := storetest.FlaskRead(t, myTestFlaskPy, live, uri, "app_sessions")
	for _, l := range live {
		if v := read[l.SID]; v == nil || *v != l.Value {
			t.Errorf("live session %s: the app reads %v, want %s", l.SID, v, l.Value)
		}
	}
}

// TestMySQLCleanupGracePeriod: only sessions that expired at least the
// grace period ago go, by the server's clock, and the report says when
// that was.
func TestMySQLCleanupGracePeriod(t *testing.T) {
	ctx := myTestCtx(t)
	_, s, pool := myTestSessionsTable(t)
	myTestRows(t, pool, "sessions", map[string]string{
		"expired-1m":  "UTC_TIMESTAMP() - INTERVAL 1 MINUTE",
		"expired-10m": "UTC_TIMESTAMP() - INTERVAL 10 MINUTE",
		"live":        "UTC_TIMESTAMP() + INTERVAL 1 HOUR",
	})
	rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{Grace: 5 * time.Minute})
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if left := myTestLeft(t, pool, "sessions"); !slices.Equal(left, []string{"expired-1m", "live"}) {
		t.Fatalf("grace 5m: left %v, want expired-1m and live", left)
	}
	var dbNow string
	pool.QueryRow("SELECT DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%d %H:%i:%s.%f')").Scan(&dbNow)
	now, _ := time.Parse(myTimeLayout, dbNow)
	if d := now.Sub(rep.Now); rep.Now.Location() != time.UTC || d < 0 || d > time.Minute {
		t.Fatalf("report.Now %v is not the server's clock (%v)", rep.Now, now)
	}
	if want := rep.Now.Add(-5 * time.Minute); !rep.Cutoff.Equal(want) {
		t.Fatalf("report.Cutoff %v, want Now less 5m: %v", rep.Cutoff, want)
	}
	if rep.Deleted != 1 || rep.Expired != 1 {
		t.Fatalf("report %+v; want 1 expired past the grace, 1 deleted", rep)
	}
	rep, err = s.Cleanup(ctx, sessionstore.CleanupOptions{Grace: 0})
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if left := myTestLeft(t, pool, "sessions"); !slices.Equal(left, []string{"live"}) || !rep.Cutoff.Equal(rep.Now) {
		t.Fatalf("grace 0: left %v, cutoff %v, now %v; want only live, cutoff = now", left, rep.Cutoff, rep.Now)
	}
}

// TestMySQLCleanupOnANonUTCServer runs the cleanup on a server whose time
// zone is west and east of UTC. A DATETIME holds naive UTC (what
// Flask-Session writes, real 0.3.2 sessions included) or the connection's
// local wall clock (NOW() + ttl); which is not recorded, so no row may go
// before it expired under either reading: a row is only ever deleted late.
// A TIMESTAMP column holds instants: the reading is exact.
func TestMySQLCleanupOnANonUTCServer(t *testing.T) {
	for _, tc := range []struct {
		tz      string
		deleted []string
	}{
		// West of UTC the local clock is the earlier reading: UTC rows that
		// expired an hour ago are kept until 5 hours more have passed.
		{"-05:00", []string{"local-expired-1d", "local-expired-1h", "utc-expired-1d"}},
		// East of UTC, UTC is the earlier: local rows go 9 hours late.
		{"+09:00", []string{"local-expired-1d", "utc-expired-1d", "utc-expired-1h"}},
	} {
		t.Run(tc.tz, func(t *testing.T) {
			ctx := myTestCtx(t)
			myTestGlobalTimeZone(t, tc.tz)
			db, s, pool := myTestSessionsTable(t)
			myTestRows(t, pool, "sessions", map[string]string{
				"utc-live-2h":      "UTC_TIMESTAMP() + INTERVAL 2 HOUR",
				"utc-expired-1h":   "UTC_TIMESTAMP() - INTERVAL 1 HOUR",
				"utc-expired-1d":   "UTC_TIMESTAMP() - INTERVAL 1 DAY",
				"local-live-2h":    "NOW() + INTERVAL 2 HOUR",
				"local-expired-1h": "NOW() - INTERVAL 1 HOUR",
				"local-expired-1d": "NOW() - INTERVAL 1 DAY",
			})
			flask := myTestFlaskWrite(t, myTestSQLAlchemyURI(db), "sessions", 7200, 5, true)
			rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{Grace: sessionstore.DefaultGracePeriod, BatchSize: 3})
			if err != nil {
				t.Fatalf("Cleanup: %v", err)
			}
			left := myTestLeft(t, pool, "sessions")
			for _, f := range flask {
				if !slices.Contains(left, "session:"+f.SID) {
					t.Errorf("live Flask-Session 0.3.2 session %s (2 hours left) was deleted", f.SID)
				}
			}
			var gone []string
			for _, sid := range []string{"local-expired-1d", "local-expired-1h", "local-live-2h", "utc-expired-1d", "utc-expired-1h", "utc-live-2h"} {
				if !slices.Contains(left, sid) {
					gone = append(gone, sid)
				}
			}
			if !slices.Equal(gone, tc.deleted) || rep.Deleted != int64(len(tc.deleted)) {
				t.Fatalf("deleted %v (report %d), want %v", gone, rep.Deleted, tc.deleted)
			}
			myTestTimestampColumn(t, db, pool)
		})
	}
}

// myTestTimestampColumn: in a TIMESTAMP column the cut-off is exact.
func myTestTimestampColumn(t *testing.T, db string, pool *sql.DB) {
	t.Helper()
	myTestExec(t, pool, "CREATE TABLE sessions_ts (id int AUTO_INCREMENT PRIMARY KEY, session_id varchar(255) UNIQUE, data blob, expiry timestamp NULL)")
	myTestRows(t, pool, "sessions_ts", map[string]string{
		"ts-live-2h": "NOW() + INTERVAL 2 HOUR", "ts-live-1m": "NOW() + INTERVAL 1 MINUTE",
		"ts-expired-10m": "NOW() - INTERVAL 10 MINUTE", "ts-expired-1d": "NOW() - INTERVAL 1 DAY",
	})
	s := myTestStore(t, sessionstore.Config{URL: myTestURL(db), Table: "sessions_ts"})
	if _, err := s.Cleanup(myTestCtx(t), sessionstore.CleanupOptions{Grace: sessionstore.DefaultGracePeriod}); err != nil {
		t.Fatalf("Cleanup of the TIMESTAMP table: %v", err)
	}
	if left := myTestLeft(t, pool, "sessions_ts"); !slices.Equal(left, []string{"ts-live-1m", "ts-live-2h"}) {
		t.Errorf("TIMESTAMP table: left %v, want the two live rows", left)
	}
}

// myTestGlobalTimeZone sets the server's time zone for connections opened
// from now on, and puts it back when the test ends.
func myTestGlobalTimeZone(t *testing.T, tz string) {
	t.Helper()
	admin := myTestOpen(t, "")
	var was string
	if err := admin.QueryRow("SELECT @@GLOBAL.time_zone").Scan(&was); err != nil {
		t.Fatal(err)
	}
	myTestExec(t, admin, "SET GLOBAL time_zone = ?", tz)
	t.Cleanup(func() { admin.ExecContext(context.Background(), "SET GLOBAL time_zone = ?", was) })
}

// TestMySQLBatchesFollowTheShareOfExpiredRows: where one row in ten has
// expired, a batch still deletes up to BatchSize sessions (never more): the
// lockless read takes as many rows as it needs, so there are about
// expired/BatchSize transactions rather than rows/BatchSize, each row is
// counted once, and none is missed.
func TestMySQLBatchesFollowTheShareOfExpiredRows(t *testing.T) {
	ctx := myTestCtx(t)
	_, s, pool := myTestSessionsTable(t)
	s.(*myStore).maxBatch = 10 // the batch does not grow: this is about the reads
	myTestExec(t, pool, `INSERT INTO sessions (session_id, data, expiry)
		SELECT CONCAT('session:', seq), x'80', UTC_TIMESTAMP() + INTERVAL IF(seq % 10 = 0, -1, 1) HOUR FROM `+myTestSeq(2000))
	var perBatch []int64
	var last int64
	rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 10, Progress: func(r sessionstore.Report) {
		perBatch = append(perBatch, r.Deleted-last)
		last = r.Deleted
	}})
	if err != nil || rep.Scanned != 2000 || rep.Expired != 200 || rep.Deleted != 200 {
		t.Fatalf("Cleanup: %+v, %v; want 2000 scanned, 200 expired and deleted", rep, err)
	}
	t.Logf("deleted per batch: %v", perBatch)
	for i, n := range perBatch {
		if n > 10 {
			t.Fatalf("batch %d deleted %d sessions, more than the batch size 10", i+1, n)
		}
	}
	if rep.Batches > 30 {
		t.Fatalf("%d batches for 200 expired sessions in batches of 10: the reads did not grow", rep.Batches)
	}
	if n := myTestCount(t, pool, "SELECT COUNT(*) FROM sessions WHERE expiry <= UTC_TIMESTAMP()"); n != 0 {
		t.Fatalf("%d expired sessions left", n)
	}
}
