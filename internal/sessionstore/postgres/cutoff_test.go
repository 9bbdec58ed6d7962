package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// pgTestRows inserts one row per name into table, expiry being the SQL
// expression given for it.
func pgTestRows(t *testing.T, conn *pgx.Conn, table string, rows map[string]string) {
	t.Helper()
	for sid, expiry := range rows {
		pgTestExec(t, conn, "INSERT INTO "+table+" (session_id, data, expiry) VALUES ($1, '\\x80'::bytea, "+expiry+")", sid)
	}
}

// pgTestLeft lists the session_ids left in table, sorted.
func pgTestLeft(t *testing.T, conn *pgx.Conn, table string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT session_id FROM "+table+" ORDER BY session_id")
	if err != nil {
		t.Fatal(err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return left
}

// TestPostgresCleanupOnANonUTCDatabase runs the cleanup on databases whose
// TimeZone is west and east of UTC, over the three layouts apps write:
//   - naive UTC in a timestamp column, as Flask-Session 0.8 writes
//     (utcnow() + lifetime);
//   - the session TimeZone's wall clock in a timestamp column, as the
//     development head's PostgreSQL backend writes (expiry = NOW() + ttl),
//     and as Debian's Flask-Session 0.3.2 does too (an aware UTC datetime
//     that psycopg2 sends as timestamptz, stored in the connection's
//     TimeZone): real 0.3.2 sessions are written here;
//   - a timestamptz column.
//
// Which clock a timestamp column holds is not recorded, so no row may go
// before it expired under either reading; a row is only ever deleted late.
func TestPostgresCleanupOnANonUTCDatabase(t *testing.T) {
	for _, tc := range []struct {
		tz string
		// deleted lists the rows gone after a cleanup with the default
		// grace; every other row must be left.
		deleted []string
	}{
		// West of UTC the local clock is the earlier reading: rows in UTC
		// that expired an hour ago are kept until 5 hours more have passed.
		{"America/New_York", []string{"local-expired-1h", "local-expired-1d", "utc-expired-1d"}},
		// East of UTC, UTC is the earlier: local rows go 9 hours late.
		{"Asia/Tokyo", []string{"local-expired-1d", "utc-expired-1d", "utc-expired-1h"}},
	} {
		t.Run(tc.tz, func(t *testing.T) {
			ctx := pgTestCtx(t)
			db := pgTestDatabase(t, "")
			admin := pgTestConnect(t, pgTestAdminURL)
			pgTestExec(t, admin, "ALTER DATABASE "+db+" SET timezone = "+pgTestQuoteLiteral(tc.tz))
			s := pgTestStore(t, sessionstore.Config{URL: pgTestURL(db), CreateTable: true})
			if _, err := s.EnsureSchema(ctx); err != nil {
				t.Fatalf("EnsureSchema: %v", err)
			}
			conn := pgTestConnect(t, pgTestURL(db))
			var tz string
			if err := conn.QueryRow(ctx, "SHOW timezone").Scan(&tz); err != nil || tz != tc.tz {
				t.Fatalf("the database's TimeZone is %q (%v), want %s", tz, err, tc.tz)
			}
			pgTestRows(t, conn, "sessions", map[string]string{
				"utc-live-2h":      "now() AT TIME ZONE 'utc' + interval '2 hours'",
				"utc-expired-1h":   "now() AT TIME ZONE 'utc' - interval '1 hour'",
				"utc-expired-1d":   "now() AT TIME ZONE 'utc' - interval '1 day'",
				"local-live-2h":    "now() + interval '2 hours'",
				"local-expired-1h": "now() - interval '1 hour'",
				"local-expired-1d": "now() - interval '1 day'",
			})
			// The real Flask-Session 0.3.2 writes local wall clock here.
			flask := pgTestFlaskWrite(t, pgTestSQLAlchemyURI(db, ""), "sessions", 7200, 5, true)

			rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{Grace: sessionstore.DefaultGracePeriod, BatchSize: 3})
			if err != nil {
				t.Fatalf("Cleanup: %v", err)
			}
			t.Logf("report: %+v", rep)
			left := pgTestLeft(t, conn, "sessions")
			for _, f := range flask {
				if !slices.Contains(left, "session:"+f.SID) {
					t.Errorf("live Flask-Session 0.3.2 session %s (2 hours left) was deleted", f.SID)
				}
			}
			for _, sid := range []string{"utc-live-2h", "utc-expired-1h", "utc-expired-1d", "local-live-2h", "local-expired-1h", "local-expired-1d"} {
				if want, got := !slices.Contains(tc.deleted, sid), slices.Contains(left, sid); got != want {
					t.Errorf("row %s: left=%v, want left=%v", sid, got, want)
				}
			}
			if rep.Deleted != int64(len(tc.deleted)) {
				t.Errorf("report says %d deleted, want %d", rep.Deleted, len(tc.deleted))
			}

			pgTestCleanupTimestamptz(t, db, conn)
		})
	}
}

// pgTestCleanupTimestamptz: a timestamptz column holds instants, so the
// clock reading is exact whatever the TimeZone.
func pgTestCleanupTimestamptz(t *testing.T, db string, conn *pgx.Conn) {
	t.Helper()
	ctx := pgTestCtx(t)
	pgTestExec(t, conn, "CREATE TABLE sessions_tz (id serial PRIMARY KEY, session_id varchar(255) UNIQUE, data bytea, expiry timestamptz)")
	pgTestRows(t, conn, "sessions_tz", map[string]string{
		"tz-live-2h": "now() + interval '2 hours'", "tz-live-1m": "now() + interval '1 minute'",
		"tz-expired-10m": "now() - interval '10 minutes'", "tz-expired-1d": "now() - interval '1 day'",
	})
	tzStore := pgTestStore(t, sessionstore.Config{URL: pgTestURL(db), Table: "sessions_tz"})
	if _, err := tzStore.Cleanup(ctx, sessionstore.CleanupOptions{Grace: sessionstore.DefaultGracePeriod}); err != nil {
		t.Fatalf("Cleanup of the timestamptz table: %v", err)
	}
	if left := pgTestLeft(t, conn, "sessions_tz"); !slices.Equal(left, []string{"tz-live-1m", "tz-live-2h"}) {
		t.Errorf("timestamptz table: left %v, want the two live rows", left)
	}
}

// TestPostgresCleanupGracePeriod: only sessions that expired at least the
// grace period ago go, by the database's clock, and the report says when
// that was.
func TestPostgresCleanupGracePeriod(t *testing.T) {
	ctx := pgTestCtx(t)
	_, s, conn := pgTestSessionsTable(t)
	pgTestRows(t, conn, "sessions", map[string]string{
		"expired-1m":  "now() AT TIME ZONE 'utc' - interval '1 minute'",
		"expired-10m": "now() AT TIME ZONE 'utc' - interval '10 minutes'",
		"live":        "now() AT TIME ZONE 'utc' + interval '1 hour'",
	})
	rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{Grace: 5 * time.Minute})
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if left := pgTestLeft(t, conn, "sessions"); !slices.Equal(left, []string{"expired-1m", "live"}) {
		t.Fatalf("grace 5m: left %v, want expired-1m and live", left)
	}
	var dbNow time.Time
	conn.QueryRow(ctx, "SELECT now()").Scan(&dbNow)
	if d := dbNow.Sub(rep.Now); rep.Now.Location() != time.UTC || d < 0 || d > time.Minute {
		t.Fatalf("report.Now %v is not the database's clock (%v)", rep.Now, dbNow)
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
	if left := pgTestLeft(t, conn, "sessions"); !slices.Equal(left, []string{"live"}) || !rep.Cutoff.Equal(rep.Now) {
		t.Fatalf("grace 0: left %v, cutoff %v, now %v; want only live, cutoff = now", left, rep.Cutoff, rep.Now)
	}
}

// TestPostgresCleanupRequiresFlaskSessionsTable: a table is Flask-Session's
// only with session_id, data and a timestamp expiry; any other is someone
// else's data, and nothing in it is deleted.
func TestPostgresCleanupRequiresFlaskSessionsTable(t *testing.T) {
	ctx := pgTestCtx(t)
	db := pgTestDatabase(t, "")
	conn := pgTestConnect(t, pgTestURL(db))
	for _, tc := range []struct{ name, columns, want string }{
		{"no_session_id", "id serial PRIMARY KEY, token varchar(255), data bytea, expiry timestamp", "no session_id column"},
		{"no_data", "id serial PRIMARY KEY, session_id varchar(255), payload bytea, expiry timestamp", "no data column"},
		{"text_expiry", "id serial PRIMARY KEY, session_id varchar(255), data bytea, expiry text", "expiry is not a timestamp"},
		{"date_expiry", "id serial PRIMARY KEY, session_id varchar(255), data bytea, expiry date", "expiry is not a timestamp"},
		{"no_expiry", "id serial PRIMARY KEY, session_id varchar(255), data bytea, valid_until timestamp", "no expiry column"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pgTestExec(t, conn, "CREATE TABLE "+tc.name+" ("+tc.columns+")")
			pgTestExec(t, conn, "INSERT INTO "+tc.name+" SELECT FROM generate_series(1, 10)")
			if strings.Contains(tc.columns, "expiry timestamp") {
				pgTestExec(t, conn, "UPDATE "+tc.name+" SET expiry = '2000-01-01'")
			}
			s := pgTestStore(t, sessionstore.Config{URL: pgTestURL(db), Table: tc.name})
			for _, call := range []struct {
				op  string
				err error
			}{
				{"Ping", s.Ping(ctx)},
				{"Cleanup", func() error { _, err := s.Cleanup(ctx, sessionstore.CleanupOptions{}); return err }()},
				{"EnsureSchema", func() error { _, err := s.EnsureSchema(ctx); return err }()},
			} {
				if sessionstore.KindOf(call.err) != sessionstore.ErrTableMismatch || !strings.Contains(fmt.Sprint(call.err), tc.want) {
					t.Errorf("%s: %v; want %s saying %q", call.op, call.err, sessionstore.ErrTableMismatch, tc.want)
				}
			}
			if n := pgTestCount(t, conn, tc.name); n != 10 {
				t.Fatalf("%d of 10 rows left", n)
			}
		})
	}
}
