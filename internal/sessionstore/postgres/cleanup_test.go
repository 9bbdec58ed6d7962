package postgres

import (
	"slices"
	"strings"
	"testing"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// TestPostgresKeysetWalkOnDevHeadLayout forces the walk PostgreSQL 13 and
// older get onto the development head's table, whose primary key is
// session_id (no id column), with ids that need quoting, batch by batch.
func TestPostgresKeysetWalkOnDevHeadLayout(t *testing.T) {
	ctx := pgTestCtx(t)
	db := pgTestDatabase(t, "")
	conn := pgTestConnect(t, pgTestURL(db))
	pgTestExec(t, conn, `CREATE TABLE flask_sessions (session_id VARCHAR(255) PRIMARY KEY, created TIMESTAMP DEFAULT NOW(),
		data BYTEA, expiry TIMESTAMP)`)
	pgTestExec(t, conn, "CREATE INDEX flask_sessions_expiry_idx ON flask_sessions (expiry)")
	rows := map[string]string{}
	var wantLeft []string
	for i, sid := range []string{"a", "b'quote", "c$k$dollar", "d$k", "e\\backslash", "f", "g", "h", "i", "j"} {
		if i%2 == 0 {
			rows[sid] = "NOW() - interval '1 hour'"
		} else {
			rows[sid] = "NOW() + interval '1 hour'"
			wantLeft = append(wantLeft, sid)
		}
	}
	pgTestRows(t, conn, "flask_sessions", rows)
	s := pgTestStore(t, sessionstore.Config{URL: pgTestURL(db), Table: "flask_sessions"})
	s.(*pgStore).forceKeysetWalk = true
	rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 3})
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if s.(*pgStore).lastWalk != "keyset" {
		t.Fatalf("walked by %q, want keyset", s.(*pgStore).lastWalk)
	}
	slices.Sort(wantLeft)
	if left := pgTestLeft(t, conn, "flask_sessions"); !slices.Equal(left, wantLeft) {
		t.Fatalf("left %q, want %q", left, wantLeft)
	}
	if rep.Scanned != 10 || rep.Expired != 5 || rep.Deleted != 5 || rep.Batches != 4 {
		t.Fatalf("report %+v; want 10 scanned, 5 expired and deleted, in 4 batches of 3", rep)
	}
}

// TestPostgresCleanupNoExpiryMessage: rows with a NULL expiry are kept and
// the message says why for every Flask-Session version: 0.3/0.4 serve
// non-permanent ones, 0.7+ deletes such a row when it reads it.
func TestPostgresCleanupNoExpiryMessage(t *testing.T) {
	ctx := pgTestCtx(t)
	db, s, conn := pgTestSessionsTable(t)
	noExpiry := pgTestFlaskWrite(t, pgTestSQLAlchemyURI(db, ""), "sessions", 3600, 3, false)
	pgTestRows(t, conn, "sessions", map[string]string{"expired": "now() AT TIME ZONE 'utc' - interval '1 day'"})
	rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{})
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if rep.Kept["noExpiry"] != int64(len(noExpiry)) || rep.Deleted != 1 {
		t.Fatalf("report %+v; want 1 deleted and %d kept with no expiry", rep, len(noExpiry))
	}
	t.Logf("message: %s", rep.Message)
	for _, want := range []string{"kept 3 with no expiry", "0.3/0.4", "0.7"} {
		if !strings.Contains(rep.Message, want) {
			t.Errorf("message does not say %q: %s", want, rep.Message)
		}
	}
	if strings.Contains(rep.Message, "never expires") {
		t.Errorf("message says the app never expires them, which 0.7+ does on read: %s", rep.Message)
	}
}

// TestPostgresDryRunChangesNothing runs dry runs with every setting that
// asks for something to be created: nothing is created, written or set.
func TestPostgresDryRunChangesNothing(t *testing.T) {
	ctx := pgTestCtx(t)
	db := pgTestDatabase(t, "")
	conn := pgTestConnect(t, pgTestURL(db))
	cfg := sessionstore.Config{URL: pgTestURL(db), Schema: "app", CreateTable: true, CreateExpiryIndex: true, Sequence: "sessions_seq"}
	relations := func() []string {
		rows, err := conn.Query(ctx, `SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') UNION ALL SELECT nspname FROM pg_namespace ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var r string
			rows.Scan(&r)
			out = append(out, r)
		}
		return out
	}

	before := relations()
	_, err := pgTestStore(t, cfg).Cleanup(ctx, sessionstore.CleanupOptions{DryRun: true})
	pgTestWantKind(t, err, sessionstore.ErrMissingTable, "")
	if after := relations(); !slices.Equal(before, after) {
		t.Fatalf("a dry run on a missing table created something:\nbefore %v\nafter  %v", before, after)
	}

	pgTestExec(t, conn, "CREATE SCHEMA app")
	pgTestExec(t, conn, "CREATE TABLE app.sessions (id serial PRIMARY KEY, session_id varchar(255) UNIQUE, data bytea, expiry timestamp)")
	pgTestRows(t, conn, "app.sessions", map[string]string{
		"expired": "now() AT TIME ZONE 'utc' - interval '1 day'", "live": "now() AT TIME ZONE 'utc' + interval '1 day'"})
	versions := func() string {
		var v string
		conn.QueryRow(ctx, "SELECT string_agg(session_id || ':' || xmin::text, ',' ORDER BY session_id) FROM app.sessions").Scan(&v)
		return v
	}
	before, rowsBefore := relations(), versions()
	rep, err := pgTestStore(t, cfg).Cleanup(ctx, sessionstore.CleanupOptions{DryRun: true, BatchSize: 1})
	if err != nil || rep.Expired != 1 || rep.Scanned != 2 || rep.Deleted != 0 || !rep.DryRun {
		t.Fatalf("dry run: %+v, %v", rep, err)
	}
	if after := relations(); !slices.Equal(before, after) {
		t.Fatalf("the dry run created something:\nbefore %v\nafter  %v", before, after)
	}
	if rowsAfter := versions(); rowsAfter != rowsBefore {
		t.Fatalf("the dry run wrote rows: %s, was %s", rowsAfter, rowsBefore)
	}
}
