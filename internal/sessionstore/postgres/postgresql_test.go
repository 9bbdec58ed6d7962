package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/storetest"
	"github.com/sessionstore/sessionstore-operator/internal/testservers"
)

// The PostgreSQL tests run against the real server hack/start-services.sh
// starts (trust auth on 127.0.0.1); each makes a database of its own and
// drops it afterwards.
const (
	pgTestHost     = "127.0.0.1:5432"
	pgTestAdminURL = "postgresql://postgres@" + pgTestHost + "/postgres?sslmode=disable"
	pgTestFlaskPy  = "flask_sqlalchemy_sessions.py"
)

func pgTestRandom() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func pgTestConnect(t testing.TB, rawURL string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, rawURL)
	if err != nil {
		t.Fatalf("PostgreSQL at %s is not reachable (%v); run hack/start-services.sh", pgTestHost, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func pgTestExec(t testing.TB, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// pgTestDatabase creates a database of the test's own and returns its name.
func pgTestDatabase(t testing.TB, owner string) string {
	t.Helper()
	admin := pgTestConnect(t, pgTestAdminURL)
	name := "pgtest_" + pgTestRandom()
	sql := "CREATE DATABASE " + name
	if owner != "" {
		sql += " OWNER " + pgx.Identifier{owner}.Sanitize()
	}
	pgTestExec(t, admin, sql)
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), pgTestAdminURL)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return name
}

// pgTestSessionsTable makes a database of the test's own with Flask-Session's
// table in it, made by EnsureSchema; it returns the database, a store on it
// and a connection to it.
func pgTestSessionsTable(t *testing.T) (string, sessionstore.Store, *pgx.Conn) {
	t.Helper()
	db := pgTestDatabase(t, "")
	s := pgTestStore(t, sessionstore.Config{URL: pgTestURL(db), CreateTable: true})
	if _, err := s.EnsureSchema(pgTestCtx(t)); err != nil {
		t.Fatalf("EnsureSchema: %v", err)
	}
	return db, s, pgTestConnect(t, pgTestURL(db))
}

func pgTestURL(db string) string {
	return "postgresql://postgres@" + pgTestHost + "/" + db + "?sslmode=disable"
}

func pgTestStore(t testing.TB, cfg sessionstore.Config) sessionstore.Store {
	t.Helper()
	cfg.Backend = sessionstore.BackendPostgreSQL
	return storetest.NewStore(t, cfg)
}

func pgTestCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// pgTestWantKind fails unless err is a store error of kind want that does
// not give away secret.
func pgTestWantKind(t *testing.T, err error, want sessionstore.ErrorKind, secret string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", want)
	}
	if got := sessionstore.KindOf(err); got != want {
		t.Fatalf("kind %s, want %s (error: %v)", got, want, err)
	}
	if secret != "" {
		encodings := []string{secret, url.QueryEscape(secret), url.PathEscape(secret), url.UserPassword("", secret).String()[1:]}
		for _, s := range encodings {
			if strings.Contains(err.Error(), s) {
				t.Fatalf("error gives the password away: %v", err)
			}
		}
	}
}

func TestPostgresNewRejectsBadConfig(t *testing.T) {
	db := pgTestDatabase(t, "")
	conn := pgTestConnect(t, pgTestURL(db))
	pgTestExec(t, conn, "CREATE TABLE users (id int)")

	for _, tc := range []struct {
		name, key string
		cfg       sessionstore.Config
	}{
		{"sql in the table name", sessionstore.EnvTable, sessionstore.Config{URL: pgTestURL(db), Table: "sessions; DROP TABLE users"}},
		{"quote in the table name", sessionstore.EnvTable, sessionstore.Config{URL: pgTestURL(db), Table: `sessions"`}},
		{"sql in the schema", sessionstore.EnvSchema, sessionstore.Config{URL: pgTestURL(db), Schema: "public; DROP TABLE users"}},
		{"table name too long", sessionstore.EnvTable, sessionstore.Config{URL: pgTestURL(db), Table: strings.Repeat("s", 64)}},
		{"no URL", sessionstore.EnvURL, sessionstore.Config{}},
		{"not a postgres URL", sessionstore.EnvURL, sessionstore.Config{URL: "mysql://root:hunter2@localhost/db"}},
		{"bad port", sessionstore.EnvURL, sessionstore.Config{URL: "postgresql://root:hunter2@localhost:99999999/db"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Backend = sessionstore.BackendPostgreSQL
			_, err := sessionstore.New(tc.cfg)
			pgTestWantKind(t, err, sessionstore.ErrConfig, "hunter2")
			var se *sessionstore.Error
			if !errors.As(err, &se) || se.Op != tc.key {
				t.Fatalf("error names %q, want the field %s: %v", se.Op, tc.key, err)
			}
		})
	}
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM users").Scan(&n); err != nil {
		t.Fatalf("table users is gone: %v", err)
	}
}

func TestPostgresPing(t *testing.T) {
	ctx := pgTestCtx(t)
	db := pgTestDatabase(t, "")
	const password = "s3cret-Pw"
	withPassword := "postgresql://postgres:" + password + "@" + pgTestHost + "/" + db + "?sslmode=disable"

	t.Run("ok", func(t *testing.T) {
		s := pgTestStore(t, sessionstore.Config{URL: withPassword, CreateTable: true})
		if _, err := s.EnsureSchema(ctx); err != nil {
			t.Fatalf("EnsureSchema: %v", err)
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})
	t.Run("missing table", func(t *testing.T) {
		err := pgTestStore(t, sessionstore.Config{URL: withPassword, Table: "nosuchtable"}).Ping(ctx)
		pgTestWantKind(t, err, sessionstore.ErrMissingTable, password)
		if !strings.Contains(err.Error(), "public.nosuchtable") {
			t.Fatalf("error does not name public.nosuchtable: %v", err)
		}
	})
	t.Run("missing table in a schema", func(t *testing.T) {
		err := pgTestStore(t, sessionstore.Config{URL: withPassword, Schema: "app_sessions", Table: "Sessions2"}).Ping(ctx)
		pgTestWantKind(t, err, sessionstore.ErrMissingTable, password)
		if !strings.Contains(err.Error(), "app_sessions.Sessions2") {
			t.Fatalf("error does not name app_sessions.Sessions2: %v", err)
		}
	})
	t.Run("missing database", func(t *testing.T) {
		u := "postgresql://postgres:" + password + "@" + pgTestHost + "/pgtest_nosuchdb?sslmode=disable"
		err := pgTestStore(t, sessionstore.Config{URL: u}).Ping(ctx)
		pgTestWantKind(t, err, sessionstore.ErrMissingTable, password)
		if !strings.Contains(err.Error(), "pgtest_nosuchdb") {
			t.Fatalf("error does not name the database: %v", err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		addr := testservers.FreeAddr(t)
		err := pgTestStore(t, sessionstore.Config{URL: "postgresql://postgres:" + password + "@" + addr + "/" + db}).Ping(ctx)
		pgTestWantKind(t, err, sessionstore.ErrRefused, password)
	})
	t.Run("timeout", func(t *testing.T) {
		// A server that accepts and then never answers.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		err = pgTestStore(t, sessionstore.Config{URL: "postgresql://postgres:" + password + "@" + l.Addr().String() + "/" + db}).Ping(short)
		pgTestWantKind(t, err, sessionstore.ErrTimeout, password)
	})
	t.Run("dns", func(t *testing.T) {
		err := pgTestStore(t, sessionstore.Config{URL: "postgresql://postgres:" + password + "@pgtest.invalid:5432/" + db}).Ping(ctx)
		pgTestWantKind(t, err, sessionstore.ErrDNS, password)
	})
	t.Run("tls", func(t *testing.T) {
		// The server's certificate is Debian's self-signed snakeoil one.
		u := "postgresql://postgres:" + password + "@" + pgTestHost + "/" + db + "?sslmode=verify-full"
		pgTestWantKind(t, pgTestStore(t, sessionstore.Config{URL: u}).Ping(ctx), sessionstore.ErrTLS, password)
	})
	t.Run("authentication", func(t *testing.T) {
		// The shared server trusts 127.0.0.1 and never checks a password
		// (TestPostgresPasswordIsChecked has the real 28P01); a role that
		// may not log in and one that does not exist get its own 28000.
		admin := pgTestConnect(t, pgTestAdminURL)
		role := "pgtest_nologin_" + pgTestRandom()
		pgTestExec(t, admin, "CREATE ROLE "+role+" NOLOGIN PASSWORD 'whatever'")
		t.Cleanup(func() { admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
		for _, user := range []string{role, "pgtest_nosuchrole"} {
			u := "postgresql://" + user + ":" + password + "@" + pgTestHost + "/" + db + "?sslmode=disable"
			pgTestWantKind(t, pgTestStore(t, sessionstore.Config{URL: u}).Ping(ctx), sessionstore.ErrAuth, password)
		}
	})
}

// TestPostgresPasswordWithURLSpecialCharacters connects as a role whose
// password holds every character that has a meaning in a URL.
func TestPostgresPasswordWithURLSpecialCharacters(t *testing.T) {
	ctx := pgTestCtx(t)
	admin := pgTestConnect(t, pgTestAdminURL)
	role := "pgtest_role_" + pgTestRandom()
	const password = "p@ss:w/rd?x#y%z 20 & more"
	pgTestExec(t, admin, "CREATE ROLE "+role+" LOGIN PASSWORD "+pgTestQuoteLiteral(password))
	t.Cleanup(func() { admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	db := pgTestDatabase(t, role) // dropped before the role: cleanups run last-in first-out

	u := (&url.URL{Scheme: "postgresql", User: url.UserPassword(role, password), Host: pgTestHost, Path: "/" + db, RawQuery: "sslmode=disable"}).String()
	if !strings.Contains(u, "%40") || !strings.Contains(u, "%23") {
		t.Fatalf("URL %q is not percent-encoded as the test expects", u)
	}
	s := pgTestStore(t, sessionstore.Config{URL: u, CreateTable: true})
	// The server trusts 127.0.0.1 and would accept a mangled password, so
	// check what the store will send.
	if got := s.(*pgStore).connCfg.Password; got != password {
		t.Fatalf("password parsed as %q, want %q", got, password)
	}
	if _, err := s.EnsureSchema(ctx); err != nil {
		t.Fatalf("EnsureSchema: %v", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	var owner string
	if err := pgTestConnect(t, pgTestURL(db)).QueryRow(ctx, "SELECT tableowner FROM pg_tables WHERE tablename = 'sessions'").Scan(&owner); err != nil || owner != role {
		t.Fatalf("sessions is owned by %q (%v), want %s: the store did not connect as the role", owner, err, role)
	}

	// The same URL towards a closed port: the error must not hold the password.
	bad := strings.Replace(u, pgTestHost, testservers.FreeAddr(t), 1)
	pgTestWantKind(t, pgTestStore(t, sessionstore.Config{URL: bad}).Ping(ctx), sessionstore.ErrRefused, password)
}

func pgTestQuoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func TestPostgresEnsureSchema(t *testing.T) {
	ctx := pgTestCtx(t)

	t.Run("missing table without createTable", func(t *testing.T) {
		s := pgTestStore(t, sessionstore.Config{URL: pgTestURL(pgTestDatabase(t, ""))})
		res, err := s.EnsureSchema(ctx)
		if err != nil {
			t.Fatalf("EnsureSchema: %v", err)
		}
		if res.Present || len(res.Created) != 0 || !strings.Contains(res.Message, "public.sessions") {
			t.Fatalf("got %+v, want not present, nothing created, a message naming public.sessions", res)
		}
		pgTestWantKind(t, s.Ping(ctx), sessionstore.ErrMissingTable, "")
	})

	for _, tc := range []struct{ schema, table, wantSchema, wantIndex string }{
		{"", "", "public", "sessions_expiry_idx"},
		{"app_sessions", "Sessions2", "app_sessions", "Sessions2_expiry_idx"},
	} {
		t.Run("creates "+tc.wantSchema+"."+pgTestOr(tc.table, "sessions"), func(t *testing.T) {
			db := pgTestDatabase(t, "")
			s := pgTestStore(t, sessionstore.Config{URL: pgTestURL(db), Schema: tc.schema, Table: tc.table, CreateTable: true, CreateExpiryIndex: true})
			res, err := s.EnsureSchema(ctx)
			if err != nil {
				t.Fatalf("EnsureSchema: %v", err)
			}
			want := []string{"table", "expiry index"}
			if tc.schema != "" {
				want = append([]string{"schema"}, want...)
			}
			if !res.Present || !slices.Equal(res.Created, want) {
				t.Fatalf("got %+v, want present and created %v", res, want)
			}
			conn := pgTestConnect(t, pgTestURL(db))
			var valid bool
			err = conn.QueryRow(ctx, `SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
				JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`, tc.wantSchema, tc.wantIndex).Scan(&valid)
			if err != nil || !valid {
				t.Fatalf("index %s.%s: valid=%v, %v", tc.wantSchema, tc.wantIndex, valid, err)
			}
			if err := s.Ping(ctx); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			again, err := s.EnsureSchema(ctx)
			if err != nil || !again.Present || len(again.Created) != 0 {
				t.Fatalf("second EnsureSchema: %+v, %v; want present, nothing created", again, err)
			}
		})
	}

	t.Run("same layout as SQLAlchemy", func(t *testing.T) {
		db := pgTestDatabase(t, "")
		conn := pgTestConnect(t, pgTestURL(db))
		pgTestExec(t, conn, "CREATE SCHEMA sqla")
		storetest.RunFlask(t, pgTestFlaskPy, "", "create", pgTestSQLAlchemyURI(db, "sqla"), "sessions")
		s := pgTestStore(t, sessionstore.Config{URL: pgTestURL(db), Schema: "ours", CreateTable: true})
		if _, err := s.EnsureSchema(ctx); err != nil {
			t.Fatalf("EnsureSchema: %v", err)
		}
		sqla, ours := pgTestLayout(t, conn, "sqla"), pgTestLayout(t, conn, "ours")
		if len(sqla) == 0 || !slices.Equal(sqla, ours) {
			t.Fatalf("layout differs from SQLAlchemy's:\nsqlalchemy: %q\nours:       %q", sqla, ours)
		}
	})

	t.Run("rebuilds an index an interrupted build left invalid", func(t *testing.T) {
		db, _, conn := pgTestSessionsTable(t)
		pgTestExec(t, conn, "INSERT INTO sessions (session_id, expiry) VALUES ('a', '2030-01-01'), ('b', '2030-01-01')")
		// A concurrent build that fails leaves its index behind, INVALID.
		if _, err := conn.Exec(ctx, "CREATE UNIQUE INDEX CONCURRENTLY sessions_expiry_idx ON sessions (expiry)"); err == nil {
			t.Fatal("the unique build on duplicate values succeeded")
		}
		if valid := pgTestIndexValid(t, conn, "sessions_expiry_idx"); valid == nil || *valid {
			t.Fatalf("setup: want an invalid index, got valid=%v", valid)
		}
		s2 := pgTestStore(t, sessionstore.Config{URL: pgTestURL(db), CreateExpiryIndex: true})
		res, err := s2.EnsureSchema(ctx)
		if err != nil {
			t.Fatalf("EnsureSchema: %v", err)
		}
		if !res.Present || !slices.Equal(res.Created, []string{"expiry index"}) || !strings.Contains(res.Message, "invalid") {
			t.Fatalf("got %+v, want the invalid index rebuilt", res)
		}
		if valid := pgTestIndexValid(t, conn, "sessions_expiry_idx"); valid == nil || !*valid {
			t.Fatalf("index after EnsureSchema: valid=%v", valid)
		}
		var unique bool
		conn.QueryRow(ctx, "SELECT indisunique FROM pg_index WHERE indexrelid = 'sessions_expiry_idx'::regclass").Scan(&unique)
		if unique {
			t.Fatal("the rebuilt index is still the unique one")
		}
	})

	t.Run("builds the index without blocking writers", func(t *testing.T) {
		db := pgTestDatabase(t, "")
		s := pgTestStore(t, sessionstore.Config{URL: pgTestURL(db), CreateTable: true, CreateExpiryIndex: true})
		conn := pgTestConnect(t, pgTestURL(db))
		pgTestExec(t, conn, "CREATE TABLE sessions (id serial PRIMARY KEY, session_id varchar(255) UNIQUE, data bytea, expiry timestamp)")
		// An open snapshot makes CREATE INDEX CONCURRENTLY wait before it
		// finishes, long enough to look at it; a plain CREATE INDEX would
		// not wait for it.
		blocker := pgTestConnect(t, pgTestURL(db))
		pgTestExec(t, blocker, "BEGIN ISOLATION LEVEL REPEATABLE READ")
		pgTestExec(t, blocker, "SELECT 1 FROM pg_class LIMIT 1")

		done := make(chan error, 1)
		go func() {
			_, err := s.EnsureSchema(ctx)
			done <- err
		}()
		// Index builds lock the table in one of these two modes.
		var mode string
		deadline := time.Now().Add(30 * time.Second)
		for mode == "" && time.Now().Before(deadline) {
			conn.QueryRow(ctx, `SELECT l.mode FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
				WHERE a.application_name = $1 AND a.datname = $2 AND l.relation = 'sessions'::regclass AND l.granted
				  AND l.mode IN ('ShareLock', 'ShareUpdateExclusiveLock')`,
				pgApplicationName, db).Scan(&mode)
			time.Sleep(10 * time.Millisecond)
		}
		if mode != "ShareUpdateExclusiveLock" {
			t.Fatalf("the index build holds %q on the table, want ShareUpdateExclusiveLock (CONCURRENTLY)", mode)
		}
		writer := pgTestConnect(t, pgTestURL(db))
		pgTestExec(t, writer, "SET lock_timeout = '5s'")
		pgTestExec(t, writer, "INSERT INTO sessions (session_id, expiry) VALUES ('written-during-build', now())")
		pgTestExec(t, writer, "UPDATE sessions SET expiry = now() WHERE session_id = 'written-during-build'")
		pgTestExec(t, blocker, "COMMIT")
		if err := <-done; err != nil {
			t.Fatalf("EnsureSchema: %v", err)
		}
		if valid := pgTestIndexValid(t, conn, "sessions_expiry_idx"); valid == nil || !*valid {
			t.Fatalf("index after EnsureSchema: valid=%v", valid)
		}
	})
}

func pgTestOr(a, b string) string {
	if a == "" {
		return b
	}
	return a
}

func pgTestIndexValid(t *testing.T, conn *pgx.Conn, name string) *bool {
	t.Helper()
	var valid *bool
	err := conn.QueryRow(context.Background(), "SELECT (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1))", name).Scan(&valid)
	if err != nil {
		t.Fatal(err)
	}
	return valid
}

// pgTestLayout describes the sessions table of schema: columns with types,
// nullability and defaults (sequence names aside), and constraints.
func pgTestLayout(t *testing.T, conn *pgx.Conn, schema string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `
SELECT format('%s %s %s %s %s', column_name, data_type, coalesce(character_maximum_length, 0), is_nullable,
              regexp_replace(coalesce(column_default, ''), '''[^'']*''', 'SEQ'))
  FROM information_schema.columns WHERE table_schema::text = $1::text AND table_name = 'sessions'
UNION ALL
SELECT format('%s %s', c.contype, pg_get_constraintdef(c.oid))
  FROM pg_constraint c WHERE c.conrelid = to_regclass($1::text || '.sessions')
ORDER BY 1`, schema)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// pgTestSQLAlchemyURI is the app's URI; Flask-Session 0.3.2 has no schema
// setting, so a schema is put first on the search_path, as users do.
func pgTestSQLAlchemyURI(db, schema string) string {
	u := "postgresql+psycopg2://postgres@" + pgTestHost + "/" + db
	if schema != "" {
		u += "?options=" + url.QueryEscape("-csearch_path="+schema)
	}
	return u
}

func pgTestFlaskWrite(t *testing.T, uri, table string, lifetimeSeconds, count int, permanent bool) []storetest.FlaskSession {
	t.Helper()
	return storetest.FlaskWrite(t, pgTestFlaskPy, count, uri, table, fmt.Sprint(lifetimeSeconds), fmt.Sprint(count), fmt.Sprint(permanent))
}

func pgTestFlaskRead(t *testing.T, uri, table string, sessions []storetest.FlaskSession) map[string]*string {
	t.Helper()
	return storetest.FlaskRead(t, pgTestFlaskPy, sessions, uri, table)
}

// TestPostgresCleanupFlaskInterop has the real Flask-Session write live,
// expired and non-permanent (NULL expiry) sessions into a table EnsureSchema
// made, and checks that Cleanup removes exactly the expired ones while the
// app still reads every live one.
func TestPostgresCleanupFlaskInterop(t *testing.T) {
	for _, tc := range []struct{ schema, table string }{{"", "sessions"}, {"app_sessions", "Sessions2"}} {
		t.Run(pgTestOr(tc.schema, "public")+"."+tc.table, func(t *testing.T) {
			ctx := pgTestCtx(t)
			db := pgTestDatabase(t, "")
			s := pgTestStore(t, sessionstore.Config{URL: pgTestURL(db), Schema: tc.schema, Table: tc.table, CreateTable: true})
			if _, err := s.EnsureSchema(ctx); err != nil {
				t.Fatalf("EnsureSchema: %v", err)
			}
			uri := pgTestSQLAlchemyURI(db, tc.schema)
			live := pgTestFlaskWrite(t, uri, tc.table, 3600, 30, true)
			expired := pgTestFlaskWrite(t, uri, tc.table, -3600, 20, true)
			noExpiry := pgTestFlaskWrite(t, uri, tc.table, 3600, 5, false)
			// An app whose lifetime is a few seconds wrote this one: live now,
			// expired soon; it must survive a cleanup that runs before then.
			soon := pgTestFlaskWrite(t, uri, tc.table, 120, 1, true)
			live = append(live, soon...)

			conn := pgTestConnect(t, pgTestURL(db))
			table := pgx.Identifier{pgTestOr(tc.schema, "public"), tc.table}.Sanitize()
			var nulls int
			conn.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE expiry IS NULL").Scan(&nulls)
			if nulls != len(noExpiry) {
				t.Fatalf("setup: %d rows with NULL expiry, want %d", nulls, len(noExpiry))
			}

			dry, err := s.Cleanup(ctx, sessionstore.CleanupOptions{DryRun: true, BatchSize: 4})
			if err != nil {
				t.Fatalf("dry run: %v", err)
			}
			wantTotal := int64(len(live) + len(expired) + len(noExpiry))
			if !dry.DryRun || dry.Scanned != wantTotal || dry.Expired != int64(len(expired)) || dry.Deleted != 0 || dry.Kept["noExpiry"] != int64(len(noExpiry)) {
				t.Fatalf("dry run report %+v", dry)
			}
			if n := pgTestCount(t, conn, table); n != wantTotal {
				t.Fatalf("the dry run deleted rows: %d left of %d", n, wantTotal)
			}

			var progress []sessionstore.Report
			var dbNow time.Time
			conn.QueryRow(ctx, "SELECT now() AT TIME ZONE 'utc'").Scan(&dbNow)
			rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{
				// A job clock far ahead must not matter: the database's is used.
				Now:       time.Now().AddDate(50, 0, 0),
				BatchSize: 4,
				Progress:  func(r sessionstore.Report) { progress = append(progress, r) },
			})
			if err != nil {
				t.Fatalf("Cleanup: %v", err)
			}
			t.Logf("report: %+v", rep)
			if rep.Scanned != wantTotal || rep.Expired != int64(len(expired)) || rep.Deleted != int64(len(expired)) ||
				rep.Kept["noExpiry"] != int64(len(noExpiry)) || rep.Batches < 2 || rep.Backend != sessionstore.BackendPostgreSQL {
				t.Fatalf("report %+v", rep)
			}
			if d := rep.Now.Sub(dbNow); rep.Now.Location() != time.UTC || d < 0 || d > time.Minute {
				t.Fatalf("report.Now %v is not the database's UTC clock (%v)", rep.Now, dbNow)
			}
			// One call after each batch, the counts growing as the walk goes.
			if len(progress) != rep.Batches || progress[0].Batches != 1 || progress[len(progress)-1].Expired != rep.Expired ||
				progress[len(progress)-1].Deleted != rep.Deleted {
				t.Fatalf("progress calls %+v for %d batches", progress, rep.Batches)
			}

			for _, e := range expired {
				if pgTestHasSession(t, conn, table, e.SID) {
					t.Errorf("expired session %s is still there", e.SID)
				}
			}
			for _, n := range noExpiry {
				if !pgTestHasSession(t, conn, table, n.SID) {
					t.Errorf("session %s with no expiry was deleted", n.SID)
				}
			}
			got := pgTestFlaskRead(t, uri, tc.table, live)
			for _, l := range live {
				if v := got[l.SID]; v == nil || *v != l.Value {
					t.Errorf("the app no longer reads live session %s (got %v, want %s)", l.SID, v, l.Value)
				}
			}

			again, err := s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 4})
			if err != nil || again.Expired != 0 || again.Deleted != 0 || again.Scanned != wantTotal-int64(len(expired)) {
				t.Fatalf("second run: %+v, %v; want nothing to do", again, err)
			}
		})
	}
}

func pgTestCount(t *testing.T, conn *pgx.Conn, table string) int64 {
	t.Helper()
	var n int64
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func pgTestHasSession(t *testing.T, conn *pgx.Conn, table, sid string) bool {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table+" WHERE session_id = $1", "session:"+sid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// pgTestFill writes n sessions with expiry = the database's now + offset.
func pgTestFill(t *testing.T, conn *pgx.Conn, prefix string, n int, offset string) {
	t.Helper()
	pgTestExec(t, conn, `INSERT INTO sessions (session_id, data, expiry)
		SELECT $1 || g, '\x80049500'::bytea, now() AT TIME ZONE 'utc' + $3::interval FROM generate_series(1, $2::int) g`,
		prefix, n, offset)
}

// TestPostgresCleanupKeepsRefreshedSessions refreshes sessions, as the app
// does on each request, while a cleanup runs in batches of 10. Some were
// expired when the cleanup read its clock and are refreshed before their
// batch comes: every refresh that took effect must leave its session alive.
//
// It runs for both walks: ctid ranges, and the keyset walk over the primary
// key that PostgreSQL 13 and older get (forced here, the server being newer).
func TestPostgresCleanupKeepsRefreshedSessions(t *testing.T) {
	for _, walk := range []string{"ctid", "keyset"} {
		t.Run(walk, func(t *testing.T) { pgTestKeepsRefreshed(t, walk) })
	}
}

func pgTestKeepsRefreshed(t *testing.T, walk string) {
	ctx := pgTestCtx(t)
	db, s, conn := pgTestSessionsTable(t)
	s.(*pgStore).forceKeysetWalk = walk == "keyset"
	const n = 3000
	pgTestFill(t, conn, "session:live-", n, "1 hour")
	pgTestFill(t, conn, "session:expired-", n, "-1 hour")
	pgTestFill(t, conn, "session:borderline-", n, "-1 second")

	var (
		stop      atomic.Bool
		batches   atomic.Int64
		mu        sync.Mutex
		refreshed = map[string]bool{} // sessions whose refresh took effect
		during    atomic.Int64        // refreshes that took effect between batches
		// refreshes, between batches, of sessions expired at the cut-off
		duringExpired atomic.Int64
		wg            sync.WaitGroup
		started       sync.WaitGroup // each writer connected, its first refresh done
		errs          = make(chan error, 8)
	)
	for w := range 4 {
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			markStarted := sync.OnceFunc(started.Done)
			defer markStarted() // a writer that fails does not hold the cleanup back
			c, err := pgx.Connect(ctx, pgTestURL(db))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(context.Background())
			for i := w; !stop.Load(); i += 4 {
				if i == w+4 {
					markStarted()
				}
				// Half the refreshes go to borderline sessions from the end
				// of the table, which the cleanup reaches last, so many
				// land after it read its clock and before their batch.
				sid := fmt.Sprintf("session:live-%d", 1+(i*7919)%n)
				if i%2 == 0 {
					sid = fmt.Sprintf("session:borderline-%d", n-(i/2)%n)
				}
				tag, err := c.Exec(ctx, `UPDATE sessions SET expiry = now() AT TIME ZONE 'utc' + interval '1 hour', data = '\x80049501'::bytea WHERE session_id = $1`, sid)
				if err != nil {
					errs <- err
					return
				}
				if tag.RowsAffected() == 1 {
					mu.Lock()
					refreshed[sid] = true
					mu.Unlock()
					if b := batches.Load(); b > 0 {
						during.Add(1)
						if strings.HasPrefix(sid, "session:borderline-") {
							duringExpired.Add(1)
						}
					}
				}
			}
		}()
	}
	started.Wait() // the cleanup starts among running writers
	rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 10, Progress: func(r sessionstore.Report) { batches.Store(int64(r.Batches)) }})
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatalf("writer: %v", e)
	}
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if got := s.(*pgStore).lastWalk; got != walk {
		t.Fatalf("the cleanup walked by %s, want %s", got, walk)
	}
	t.Logf("report: %+v; %d refreshes took effect, %d during the batches", rep, len(refreshed), during.Load())
	// Borderline sessions sit at the table's end, which the walk reaches
	// last: refreshed while it runs, they are refreshed before their batch.
	if duringExpired.Load() == 0 || rep.Batches < 100 {
		t.Fatalf("no expired session was refreshed between the cleanup's clock and its batch (%d batches, %d refreshes during them), so the test proves nothing",
			rep.Batches, duringExpired.Load())
	}

	rows, err := conn.Query(ctx, "SELECT session_id, expiry > now() AT TIME ZONE 'utc' FROM sessions")
	if err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	for rows.Next() {
		var sid string
		var live bool
		if err := rows.Scan(&sid, &live); err != nil {
			t.Fatal(err)
		}
		present[sid] = true
		if strings.HasPrefix(sid, "session:expired-") {
			t.Errorf("expired session %s survived", sid)
		}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	for i := 1; i <= n; i++ {
		if sid := fmt.Sprintf("session:live-%d", i); !present[sid] {
			t.Errorf("live session %s was deleted", sid)
		}
	}
	var lost int
	for sid := range refreshed {
		if !present[sid] {
			lost++
			t.Errorf("session %s was deleted after its refresh", sid)
		}
	}
	if lost > 0 {
		t.Fatalf("%d refreshed sessions lost", lost)
	}
	if rep.Deleted < n || rep.Deleted > rep.Expired {
		t.Fatalf("deleted %d, want between %d and expired %d", rep.Deleted, n, rep.Expired)
	}
}

// TestPostgresCleanupRechecksARowItWaitedFor holds a refresh open on an
// expired session, so that the batch's DELETE must wait for its row lock,
// then commits (or rolls back) the refresh: PostgreSQL re-checks the DELETE's
// condition on the refreshed row, which must survive.
func TestPostgresCleanupRechecksARowItWaitedFor(t *testing.T) {
	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprintf("refresh committed=%v", commit), func(t *testing.T) {
			ctx := pgTestCtx(t)
			db, s, conn := pgTestSessionsTable(t)
			pgTestFill(t, conn, "session:expired-", 100, "-1 hour")
			const sid = "session:expired-50"

			app := pgTestConnect(t, pgTestURL(db))
			pgTestExec(t, app, "BEGIN")
			pgTestExec(t, app, "UPDATE sessions SET expiry = now() AT TIME ZONE 'utc' + interval '1 hour' WHERE session_id = $1", sid)

			type result struct {
				rep sessionstore.Report
				err error
			}
			done := make(chan result, 1)
			go func() {
				rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 10})
				done <- result{rep, err}
			}()
			var waiting bool
			for deadline := time.Now().Add(30 * time.Second); !waiting && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
					WHERE datname = $1 AND application_name = $2 AND wait_event_type = 'Lock')`, db, pgApplicationName).Scan(&waiting)
			}
			if !waiting {
				t.Fatal("the cleanup never waited for the refreshed row's lock")
			}
			if commit {
				pgTestExec(t, app, "COMMIT")
			} else {
				pgTestExec(t, app, "ROLLBACK")
			}
			r := <-done
			if r.err != nil {
				t.Fatalf("Cleanup: %v", r.err)
			}
			kept := pgTestHasSession(t, conn, "sessions", strings.TrimPrefix(sid, "session:"))
			wantDeleted := int64(100)
			if commit {
				wantDeleted = 99
			}
			// Expired counts what was expired when its batch came: the
			// committed refresh is not.
			if kept != commit || r.rep.Deleted != wantDeleted || r.rep.Expired != wantDeleted {
				t.Fatalf("session kept=%v, report %+v; want kept=%v and %d deleted", kept, r.rep, commit, wantDeleted)
			}
		})
	}
}

func TestPostgresCleanupStopsAndResumes(t *testing.T) {
	setup := func(t *testing.T, password string) (sessionstore.Store, *pgx.Conn, string) {
		db := pgTestDatabase(t, "")
		u := "postgresql://postgres:" + password + "@" + pgTestHost + "/" + db + "?sslmode=disable"
		s := pgTestStore(t, sessionstore.Config{URL: u, CreateTable: true})
		if _, err := s.EnsureSchema(pgTestCtx(t)); err != nil {
			t.Fatalf("EnsureSchema: %v", err)
		}
		conn := pgTestConnect(t, pgTestURL(db))
		pgTestFill(t, conn, "session:expired-", 5000, "-1 hour")
		pgTestFill(t, conn, "session:live-", 1000, "1 hour")
		return s, conn, db
	}
	finish := func(t *testing.T, s sessionstore.Store, conn *pgx.Conn, first sessionstore.Report) {
		ctx := pgTestCtx(t)
		rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 50})
		if err != nil {
			t.Fatalf("rerun: %v", err)
		}
		if first.Deleted+rep.Deleted != 5000 || rep.Expired != 5000-first.Deleted {
			t.Fatalf("rerun report %+v after %d deleted; want the remaining %d", rep, first.Deleted, 5000-first.Deleted)
		}
		var expired, live int64
		conn.QueryRow(ctx, "SELECT count(*) FILTER (WHERE session_id LIKE 'session:expired-%'), count(*) FILTER (WHERE session_id LIKE 'session:live-%') FROM sessions").Scan(&expired, &live)
		if expired != 0 || live != 1000 {
			t.Fatalf("after the rerun: %d expired and %d of 1000 live sessions left", expired, live)
		}
	}

	t.Run("server goes away", func(t *testing.T) {
		const password = "s3cret-Pw"
		s, conn, db := setup(t, password)
		ctx := pgTestCtx(t)
		var terminated bool
		rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 50, Progress: func(r sessionstore.Report) {
			if r.Batches == 3 {
				err := conn.QueryRow(ctx, `SELECT bool_and(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity
					WHERE datname = $1 AND application_name = $2`, db, pgApplicationName).Scan(&terminated)
				if err != nil {
					t.Errorf("terminate: %v", err)
				}
			}
		}})
		if !terminated {
			t.Fatal("the cleanup's connection was not terminated")
		}
		pgTestWantKind(t, err, sessionstore.ErrUnknown, password)
		t.Logf("error: %v", err)
		if !strings.Contains(err.Error(), "connection lost after 3 batches") || !strings.Contains(err.Error(), "rerun") {
			t.Fatalf("error does not say the connection was lost and a rerun finishes: %v", err)
		}
		if rep.Batches != 3 || rep.Deleted == 0 || rep.Deleted >= 5000 || !strings.Contains(rep.Message, "stopped") {
			t.Fatalf("partial report %+v", rep)
		}
		if left := pgTestCount(t, conn, "sessions"); left != 6000-rep.Deleted {
			t.Fatalf("%d rows left, but the report says %d deleted", left, rep.Deleted)
		}
		finish(t, s, conn, rep)
	})

	t.Run("context cancelled", func(t *testing.T) {
		s, conn, _ := setup(t, "")
		ctx, cancel := context.WithCancel(pgTestCtx(t))
		rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 50, Progress: func(r sessionstore.Report) {
			if r.Batches == 2 {
				cancel()
			}
		}})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		if rep.Batches != 2 || rep.Deleted == 0 {
			t.Fatalf("partial report %+v; want 2 batches done", rep)
		}
		if left := pgTestCount(t, conn, "sessions"); left != 6000-rep.Deleted {
			t.Fatalf("%d rows left, but the report says %d deleted", left, rep.Deleted)
		}
		finish(t, s, conn, rep)
	})
}

func TestPostgresCleanupRefusesOtherTables(t *testing.T) {
	ctx := pgTestCtx(t)
	db := pgTestDatabase(t, "")
	conn := pgTestConnect(t, pgTestURL(db))
	pgTestExec(t, conn, "CREATE TABLE sessions (id serial PRIMARY KEY, session_id varchar(255), data bytea)")
	s := pgTestStore(t, sessionstore.Config{URL: pgTestURL(db)})
	_, err := s.Cleanup(ctx, sessionstore.CleanupOptions{})
	pgTestWantKind(t, err, sessionstore.ErrTableMismatch, "")
	pgTestWantKind(t, s.Ping(ctx), sessionstore.ErrTableMismatch, "")

	_, err = pgTestStore(t, sessionstore.Config{URL: pgTestURL(db), Table: "nosuchtable"}).Cleanup(ctx, sessionstore.CleanupOptions{})
	pgTestWantKind(t, err, sessionstore.ErrMissingTable, "")
}

// TestPostgresCleanupShrinksRangesWhereRowsAreDense runs a cleanup on a
// table whose live rows all sit in its last pages (the rest emptied and not
// vacuumed), where ranges sized by the average density hold several batches'
// worth of rows: after the first such batch the ranges must shrink.
func TestPostgresCleanupShrinksRangesWhereRowsAreDense(t *testing.T) {
	ctx := pgTestCtx(t)
	_, s, conn := pgTestSessionsTable(t)
	pgTestExec(t, conn, "ALTER TABLE sessions SET (autovacuum_enabled = false)")
	pgTestFill(t, conn, "session:purged-", 20000, "1 hour")
	pgTestExec(t, conn, "DELETE FROM sessions WHERE session_id LIKE 'session:purged-%'")
	pgTestFill(t, conn, "session:expired-", 3000, "-1 hour")
	pgTestFill(t, conn, "session:live-", 1000, "1 hour")

	const batchSize = 100
	var sizes []int64
	var last int64
	rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: batchSize, Progress: func(r sessionstore.Report) {
		if r.Batches > 0 {
			sizes = append(sizes, r.Deleted-last)
		}
		last = r.Deleted
	}})
	if err != nil || rep.Deleted != 3000 {
		t.Fatalf("Cleanup: %+v, %v; want 3000 deleted", rep, err)
	}
	var big int
	for _, n := range sizes {
		if n > 2*batchSize {
			big++
		}
	}
	t.Logf("deleted per batch: %v", sizes)
	if big > 1 {
		t.Fatalf("%d batches deleted more than %d sessions; the ranges did not shrink: %v", big, 2*batchSize, sizes)
	}
}

// TestPostgresRanges checks that the ctid ranges cover every page and line
// pointer exactly once, whether batches span pages or slice them.
func TestPostgresRanges(t *testing.T) {
	// Ranges of changing sizes, as the cleanup asks for when it adapts.
	c := pgRangeCursor{pages: 20, rowsPerPage: 50}
	sizes := []int{1000, 7, 100, 30, 60, 1, 49}
	prev := pgTID(0, 0)
	for i := 0; ; i++ {
		lo, hi, ok := c.next(sizes[i%len(sizes)])
		if !ok {
			if prev != pgTID(20, 0) {
				t.Fatalf("changing sizes: ended at %v, want (20,0)", prev)
			}
			break
		}
		if lo != prev || !(lo.BlockNumber < hi.BlockNumber || lo.BlockNumber == hi.BlockNumber && lo.OffsetNumber < hi.OffsetNumber) {
			t.Fatalf("changing sizes: range %d [%v, %v) does not follow %v", i, lo, hi, prev)
		}
		prev = hi
	}

	for _, tc := range []struct {
		pages       int64
		rowsPerPage float64
		batch       int
		wantRanges  int
	}{
		{0, 0, 1000, 0},
		{1, 3, 1000, 1},
		{100, 50, 1000, 5}, // 20 pages a batch
		{101, 50, 1000, 6}, // and a short last one
		{10, 50, 10, 50},   // 5 slices a page
		{10, 55, 10, 60},   // 6 slices, the last to the page's end
		{3, 2000, 1000, 6}, // 2 slices a page
		{7, 60, 60, 7},     // exactly a page
		{4, 0.5, 1000, 1},  // sparse
		{1000, 40, 1, 40000},
	} {
		var got [][2]pgtype.TID
		c := pgRangeCursor{pages: tc.pages, rowsPerPage: tc.rowsPerPage}
		for {
			lo, hi, ok := c.next(tc.batch)
			if !ok {
				break
			}
			got = append(got, [2]pgtype.TID{lo, hi})
		}
		if len(got) != tc.wantRanges {
			t.Fatalf("%+v: %d ranges, want %d", tc, len(got), tc.wantRanges)
		}
		if len(got) == 0 {
			continue
		}
		less := func(a, b pgtype.TID) bool {
			return a.BlockNumber < b.BlockNumber || a.BlockNumber == b.BlockNumber && a.OffsetNumber < b.OffsetNumber
		}
		if first := got[0][0]; first.BlockNumber != 0 || first.OffsetNumber != 0 {
			t.Fatalf("%+v: starts at %v", tc, first)
		}
		if last := got[len(got)-1][1]; int64(last.BlockNumber) != tc.pages || last.OffsetNumber != 0 {
			t.Fatalf("%+v: ends at %v, want (%d,0)", tc, last, tc.pages)
		}
		for i, r := range got {
			if !less(r[0], r[1]) || (i > 0 && r[0] != got[i-1][1]) {
				t.Fatalf("%+v: range %d %v does not follow %v", tc, i, r, got[max(i-1, 0)])
			}
		}
	}
}
