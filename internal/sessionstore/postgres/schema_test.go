package postgres

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/storetest"
)

const pgTestSequencePy = "flask_sqlalchemy_sequence.py"

// TestPostgresCreatesTheAppsSequence: with Config.Sequence (the app's
// SESSION_SQLALCHEMY_SEQUENCE) the operator creates the table and the
// sequence exactly as SQLAlchemy's create_all() does for Flask-Session
// 0.8's model, and the app then inserts sessions into it. Flask-Session
// 0.6+ creates its table with checkfirst, so when the operator made the
// table first, the app never creates the sequence itself. Debian's
// Flask-Session (0.3.2) has no sequence setting: the script declares 0.8's
// model on the real Flask-SQLAlchemy and inserts as 0.8 does.
func TestPostgresCreatesTheAppsSequence(t *testing.T) {
	ctx := pgTestCtx(t)
	db := pgTestDatabase(t, "")
	conn := pgTestConnect(t, pgTestURL(db))
	const seq = "app_session_id_seq"
	s := pgTestStore(t, sessionstore.Config{URL: pgTestURL(db), CreateTable: true, Sequence: seq})
	res, err := s.EnsureSchema(ctx)
	if err != nil || !res.Present || !slices.Equal(res.Created, []string{"sequence", "table"}) {
		t.Fatalf("EnsureSchema: %+v, %v; want the sequence and the table created", res, err)
	}

	out := storetest.RunFlask(t, pgTestSequencePy, "", "write", pgTestSQLAlchemyURI(db, ""), "sessions", seq, "3")
	var ids []int
	if err := json.Unmarshal(out, &ids); err != nil || !slices.Equal(ids, []int{1, 2, 3}) {
		t.Fatalf("the app inserted ids %s (%v), want [1,2,3] from the sequence", out, err)
	}
	if n := pgTestCount(t, conn, "sessions"); n != 3 {
		t.Fatalf("%d sessions in the table, want 3", n)
	}

	// SQLAlchemy's own DDL, in a schema of its own (the sequence follows
	// search_path, as SQLAlchemy leaves it unqualified).
	pgTestExec(t, conn, "CREATE SCHEMA sqla")
	storetest.RunFlask(t, pgTestSequencePy, "", "create", pgTestSQLAlchemyURI(db, "sqla"), "sessions", seq)
	if sqla, ours := pgTestLayout(t, conn, "sqla"), pgTestLayout(t, conn, "public"); len(sqla) == 0 || !slices.Equal(sqla, ours) {
		t.Fatalf("table differs from SQLAlchemy's:\nsqlalchemy: %q\nours:       %q", sqla, ours)
	}
	if sqla, ours := pgTestSequence(t, conn, "sqla", seq), pgTestSequence(t, conn, "public", seq); sqla == "" || sqla != ours {
		t.Fatalf("sequence differs from SQLAlchemy's:\nsqlalchemy: %q\nours:       %q", sqla, ours)
	}
}

func pgTestSequence(t *testing.T, conn *pgx.Conn, schema, name string) string {
	t.Helper()
	var def string
	err := conn.QueryRow(pgTestCtx(t), `SELECT format('%s start %s min %s max %s by %s cycle %s cache %s', data_type, start_value,
		min_value, max_value, increment_by, cycle, cache_size) FROM pg_sequences WHERE schemaname = $1 AND sequencename = $2`, schema, name).Scan(&def)
	if err != nil {
		t.Fatalf("sequence %s.%s: %v", schema, name, err)
	}
	return def
}
