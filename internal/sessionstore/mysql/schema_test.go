package mysql

import (
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/storetest"
)

// myTestShowCreate is SHOW CREATE TABLE (or SEQUENCE) of name, with the
// name itself taken out so two objects' DDL can be compared.
func myTestShowCreate(t *testing.T, pool *sql.DB, kind, name string) string {
	t.Helper()
	var got, ddl string
	if err := pool.QueryRow("SHOW CREATE "+kind+" "+myQuoteIdent(name)).Scan(&got, &ddl); err != nil {
		t.Fatalf("SHOW CREATE %s %s: %v", kind, name, err)
	}
	return strings.Replace(ddl, myQuoteIdent(name), "`NAME`", 1)
}

// TestMySQLEnsureSchemaMatchesSQLAlchemy: the table EnsureSchema creates is
// the one the real Flask-SQLAlchemy's create_all() creates for
// Flask-Session's model, DDL for DDL: id INTEGER AUTO_INCREMENT primary key,
// session_id VARCHAR(255) UNIQUE, data BLOB, expiry DATETIME.
func TestMySQLEnsureSchemaMatchesSQLAlchemy(t *testing.T) {
	ctx := myTestCtx(t)
	db := myTestDatabase(t)
	pool := myTestOpen(t, db)
	storetest.RunFlask(t, myTestFlaskPy, "", "create", myTestSQLAlchemyURI(db), "sqla_sessions")
	s := myTestStore(t, sessionstore.Config{URL: myTestURL(db), Table: "our_sessions", CreateTable: true})
	res, err := s.EnsureSchema(ctx)
	if err != nil || !res.Present || !slices.Equal(res.Created, []string{"table"}) {
		t.Fatalf("EnsureSchema: %+v, %v; want the table created", res, err)
	}
	sqla, ours := myTestShowCreate(t, pool, "TABLE", "sqla_sessions"), myTestShowCreate(t, pool, "TABLE", "our_sessions")
	t.Logf("SQLAlchemy's DDL: %s", sqla)
	if sqla != ours {
		t.Fatalf("DDL differs from SQLAlchemy's:\nsqlalchemy: %s\nours:       %s", sqla, ours)
	}
	// MySQL 8 no longer shows an integer's display width.
	id := map[bool]string{true: "`id` int(11) NOT NULL AUTO_INCREMENT", false: "`id` int NOT NULL AUTO_INCREMENT"}[myTestMariaDB(t)]
	for _, want := range []string{id, "`session_id` varchar(255)", "`data` blob", "`expiry` datetime",
		"PRIMARY KEY (`id`)", "UNIQUE KEY `session_id`"} {
		if !strings.Contains(ours, want) {
			t.Errorf("DDL lacks %q: %s", want, ours)
		}
	}
	again, err := s.EnsureSchema(ctx)
	if err != nil || !again.Present || len(again.Created) != 0 {
		t.Fatalf("second EnsureSchema: %+v, %v; want present, nothing created", again, err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// TestMySQLEnsureSchemaSequence: with SESSION_SQLALCHEMY_SEQUENCE, SQLAlchemy
// gives MariaDB a real sequence and an id without AUTO_INCREMENT; EnsureSchema
// makes the same, and Flask-Session 0.8's model then inserts through it.
// MySQL has no sequences: SQLAlchemy ignores the setting there, and so does
// EnsureSchema, making the AUTO_INCREMENT table alone.
func TestMySQLEnsureSchemaSequence(t *testing.T) {
	ctx := myTestCtx(t)
	db := myTestDatabase(t)
	pool := myTestOpen(t, db)
	uri := myTestSQLAlchemyURI(db)
	storetest.RunFlask(t, "flask_sqlalchemy_sequence.py", "", "create", uri, "sqla_sessions", "sqla_seq")
	s := myTestStore(t, sessionstore.Config{URL: myTestURL(db), Table: "our_sessions", Sequence: "our_seq", CreateTable: true})
	res, err := s.EnsureSchema(ctx)
	created, compare := []string{"sequence", "table"}, [][3]string{{"TABLE", "sqla_sessions", "our_sessions"}, {"SEQUENCE", "sqla_seq", "our_seq"}}
	if !myTestMariaDB(t) {
		created, compare = []string{"table"}, compare[:1]
		if n := myTestCount(t, pool, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", db); n != 2 {
			t.Fatalf("%d tables in the database, want the two session tables alone", n)
		}
	}
	if err != nil || !slices.Equal(res.Created, created) {
		t.Fatalf("EnsureSchema: %+v, %v; want %v created", res, err, created)
	}
	for _, obj := range compare {
		sqla, ours := myTestShowCreate(t, pool, obj[0], obj[1]), myTestShowCreate(t, pool, obj[0], obj[2])
		if sqla != ours {
			t.Fatalf("%s DDL differs from SQLAlchemy's:\nsqlalchemy: %s\nours:       %s", obj[0], sqla, ours)
		}
	}
	out := storetest.RunFlask(t, "flask_sqlalchemy_sequence.py", "", "write", uri, "our_sessions", "our_seq", "3")
	if strings.TrimSpace(string(out)) != "[1, 2, 3]" {
		t.Fatalf("the app's inserts through the sequence gave ids %s, want [1, 2, 3]", out)
	}
}

// TestMySQLCleanupRequiresFlaskSessionsTable: a table is Flask-Session's
// only with session_id, data, a date-time expiry and an integer key; any
// other is someone else's data, and nothing in it is deleted.
func TestMySQLCleanupRequiresFlaskSessionsTable(t *testing.T) {
	ctx := myTestCtx(t)
	db := myTestDatabase(t)
	pool := myTestOpen(t, db)
	for _, tc := range []struct{ name, columns, want string }{
		{"no_session_id", "id int AUTO_INCREMENT PRIMARY KEY, token varchar(255), data blob, expiry datetime", "no session_id column"},
		{"no_data", "id int AUTO_INCREMENT PRIMARY KEY, session_id varchar(255), payload blob, expiry datetime", "no data column"},
		{"text_expiry", "id int AUTO_INCREMENT PRIMARY KEY, session_id varchar(255), data blob, expiry varchar(40)", "expiry is not a date-time"},
		{"date_expiry", "id int AUTO_INCREMENT PRIMARY KEY, session_id varchar(255), data blob, expiry date", "expiry is not a date-time"},
		{"no_expiry", "id int AUTO_INCREMENT PRIMARY KEY, session_id varchar(255), data blob, valid_until datetime", "no expiry column"},
		{"text_key", "id varchar(40) PRIMARY KEY, session_id varchar(255), data blob, expiry datetime", "integer primary key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			myTestExec(t, pool, "CREATE TABLE "+tc.name+" ("+tc.columns+")")
			for i := range 10 {
				myTestExec(t, pool, "INSERT INTO "+tc.name+" (id) VALUES (?)", fmt.Sprint(i+1))
			}
			if strings.Contains(tc.columns, "expiry datetime") {
				myTestExec(t, pool, "UPDATE "+tc.name+" SET expiry = '2000-01-01'")
			}
			s := myTestStore(t, sessionstore.Config{URL: myTestURL(db), Table: tc.name})
			_, cleanupErr := s.Cleanup(ctx, sessionstore.CleanupOptions{})
			_, schemaErr := s.EnsureSchema(ctx)
			for op, err := range map[string]error{"Ping": s.Ping(ctx), "Cleanup": cleanupErr, "EnsureSchema": schemaErr} {
				if sessionstore.KindOf(err) != sessionstore.ErrTableMismatch || !strings.Contains(fmt.Sprint(err), tc.want) {
					t.Errorf("%s: %v; want %s saying %q", op, err, sessionstore.ErrTableMismatch, tc.want)
				}
			}
			if n := myTestCount(t, pool, "SELECT COUNT(*) FROM "+tc.name); n != 10 {
				t.Fatalf("%d of 10 rows left", n)
			}
		})
	}
	myTestExec(t, pool, "CREATE VIEW a_view AS SELECT 1 AS id, 'x' AS session_id, x'00' AS data, NOW() AS expiry")
	_, err := myTestStore(t, sessionstore.Config{URL: myTestURL(db), Table: "a_view"}).Cleanup(ctx, sessionstore.CleanupOptions{})
	myTestWantKind(t, err, sessionstore.ErrConfig, "")
}

// TestMySQLEnsureSchemaWithoutCreateTable: a missing table is reported, not
// created, and Ping says TableMissing naming the database and table.
func TestMySQLEnsureSchemaWithoutCreateTable(t *testing.T) {
	ctx := myTestCtx(t)
	db := myTestDatabase(t)
	s := myTestStore(t, sessionstore.Config{URL: myTestURL(db)})
	res, err := s.EnsureSchema(ctx)
	if err != nil || res.Present || len(res.Created) != 0 || !strings.Contains(res.Message, db+".sessions") {
		t.Fatalf("EnsureSchema: %+v, %v; want not present, nothing created, a message naming %s.sessions", res, err, db)
	}
	err = s.Ping(ctx)
	myTestWantKind(t, err, sessionstore.ErrMissingTable, "")
	if !strings.Contains(err.Error(), db+".sessions") {
		t.Fatalf("Ping's error does not name the table: %v", err)
	}
}
