package mysql

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/testservers"
)

func TestMySQLNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		cfg       sessionstore.Config
	}{
		{"sql in the table name", sessionstore.EnvTable, sessionstore.Config{URL: "mysql://root:hunter2@h/db", Table: "sessions; DROP TABLE users"}},
		{"backquote in the table name", sessionstore.EnvTable, sessionstore.Config{URL: "mysql://root:hunter2@h/db", Table: "s`x"}},
		{"a schema", sessionstore.EnvSchema, sessionstore.Config{URL: "mysql://root:hunter2@h/db", Schema: "other"}},
		{"sql in the sequence", sessionstore.EnvSequence, sessionstore.Config{URL: "mysql://root:hunter2@h/db", Sequence: "s; DROP TABLE users"}},
		{"no URL", sessionstore.EnvURL, sessionstore.Config{}},
		{"not a mysql URL", sessionstore.EnvURL, sessionstore.Config{URL: "postgresql://root:hunter2@h/db"}},
		{"bad port", sessionstore.EnvURL, sessionstore.Config{URL: "mysql://root:hunter2@h:99999999/db"}},
		{"a DSN", sessionstore.EnvURL, sessionstore.Config{URL: "root:hunter2@tcp(h:3306)/db"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Backend = sessionstore.BackendMySQL
			_, err := sessionstore.New(tc.cfg)
			myTestWantKind(t, err, sessionstore.ErrConfig, "hunter2")
			var se *sessionstore.Error
			if !errors.As(err, &se) || se.Op != tc.key {
				t.Fatalf("error names %q, want the field %s: %v", se.Op, tc.key, err)
			}
		})
	}
}

// TestMySQLPing: each way of not reaching the store has its reason, and
// none gives the password away.
func TestMySQLPing(t *testing.T) {
	ctx := myTestCtx(t)
	db, _, _ := myTestSessionsTable(t)
	const password = "s3cret-Pw"
	user := myTestUser(t, db, password)
	at := func(host, database, query string) string {
		return "mysql://" + user + ":" + password + "@" + host + "/" + database + query
	}
	serverTLS := myTestServerTLS(t)
	ping := func(t *testing.T, rawURL string, pctx context.Context) error {
		return myTestStore(t, sessionstore.Config{URL: rawURL}).Ping(pctx)
	}
	t.Run("ok", func(t *testing.T) {
		if err := ping(t, at(myTestHost, db, ""), ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})
	for _, tc := range []struct {
		name, url string
		want      sessionstore.ErrorKind
	}{
		{"wrong password (1045)", "mysql://" + user + ":not-" + password + "@" + myTestHost + "/" + db, sessionstore.ErrAuth},
		{"no such user", "mysql://mytest_nosuchuser:" + password + "@" + myTestHost + "/" + db, sessionstore.ErrAuth},
		{"database not granted (1044)", at(myTestHost, "mysql", ""), sessionstore.ErrAuth},
		{"missing table", at(myTestHost, db, "") + "", sessionstore.ErrMissingTable},
		{"refused", at(testservers.FreeAddr(t), db, ""), sessionstore.ErrRefused},
		{"dns", at("mytest.invalid:3306", db, ""), sessionstore.ErrDNS},
		// Without TLS (Debian's MariaDB) required refuses the server; with
		// it (MySQL 8 makes itself a certificate) required takes it, below.
		{"tls required", at(myTestHost, db, "?tls=required"), sessionstore.ErrTLS},
		// No TLS, or a self-signed certificate: verify-identity refuses it.
		{"tls verify-identity", at(myTestHost, db, "?tls=verify-identity"), sessionstore.ErrTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "tls required" && serverTLS {
				myTestEncrypted(t, at(myTestHost, db, "?tls=required"))
				return
			}
			cfg := sessionstore.Config{URL: tc.url}
			if tc.want == sessionstore.ErrMissingTable {
				cfg.Table = "nosuchtable"
			}
			err := myTestStore(t, cfg).Ping(ctx)
			myTestWantKind(t, err, tc.want, password)
			t.Logf("%v", err)
		})
	}
	t.Run("missing database", func(t *testing.T) {
		err := ping(t, "mysql://root@"+myTestHost+"/mytest_nosuchdb", ctx)
		myTestWantKind(t, err, sessionstore.ErrMissingTable, "")
		if !strings.Contains(err.Error(), "mytest_nosuchdb") {
			t.Fatalf("error does not name the database: %v", err)
		}
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
		myTestWantKind(t, ping(t, at(l.Addr().String(), db, ""), short), sessionstore.ErrTimeout, password)
	})
}

// myTestServerTLS tells whether the server offers TLS.
func myTestServerTLS(t *testing.T) bool {
	t.Helper()
	var have string
	if err := myTestOpen(t, "").QueryRow("SELECT @@GLOBAL.have_ssl").Scan(&have); err != nil {
		t.Fatal(err)
	}
	return have == "YES"
}

// myTestEncrypted pings with rawURL and checks the store's connection is
// encrypted.
func myTestEncrypted(t *testing.T, rawURL string) {
	t.Helper()
	s := myTestStore(t, sessionstore.Config{URL: rawURL})
	if err := s.Ping(myTestCtx(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	db, err := s.(*myStore).myOpen()
	if err != nil {
		t.Fatal(err)
	}
	var name, cipher string
	if err := db.QueryRow("SHOW SESSION STATUS LIKE 'Ssl_cipher'").Scan(&name, &cipher); err != nil || cipher == "" {
		t.Fatalf("the connection is not encrypted (cipher %q, %v)", cipher, err)
	}
}

// TestMySQLCleanupLeavesNoSessionState: each batch transaction runs at READ
// COMMITTED, asked for that transaction alone (seen in the locking
// transaction, which the test hook forces), so the session (which a
// pooler may hand to another client) keeps every setting it had: the same
// session variables, and its next transaction at the server's default.
func TestMySQLCleanupLeavesNoSessionState(t *testing.T) {
	ctx := myTestCtx(t)
	_, s, pool := myTestSessionsTable(t)
	myTestFill(t, pool, "session:expired-", 50, "INTERVAL -1 HOUR")
	store := s.(*myStore)
	store.maxBatch = 20 // 50 sessions in 3 batches
	before, connID := myTestSessionVariables(t, store)

	var levels []string
	store.beforeCommit = func(tx *sql.Tx) {
		var id int64
		tx.QueryRow("SELECT CONNECTION_ID()").Scan(&id)
		if id != connID {
			t.Errorf("the batch ran on connection %d, not %d", id, connID)
		}
		levels = append(levels, myTestIsolation(t, tx, pool))
	}
	rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 20})
	if err != nil || rep.Deleted != 50 || len(levels) != 3 {
		t.Fatalf("Cleanup: %+v, %v; %d batch transactions seen, want 50 deleted in 3", rep, err, len(levels))
	}
	for _, level := range levels {
		if level != "READ COMMITTED" {
			t.Fatalf("a batch ran at %s, want READ COMMITTED", level)
		}
	}
	// And, on MariaDB, its one-statement batches, without the hook.
	store.beforeCommit = nil
	myTestFill(t, pool, "session:expired-again-", 50, "INTERVAL -1 HOUR")
	if rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 20}); err != nil || rep.Deleted != 50 {
		t.Fatalf("second Cleanup: %+v, %v", rep, err)
	}
	after, afterID := myTestSessionVariables(t, store)
	if afterID != connID {
		t.Fatalf("the store's connection changed (%d, was %d): nothing was checked", afterID, connID)
	}
	for name, value := range before {
		if after[name] != value {
			t.Errorf("session variable %s is %q after the cleanup, was %q", name, after[name], value)
		}
	}
	tx, err := store.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if level := myTestIsolation(t, tx, pool); level != "REPEATABLE READ" {
		t.Fatalf("the session's next transaction ran at %s, want the server's REPEATABLE READ", level)
	}
}

// myTestIsolation tells the isolation tx runs at by what it sees: a row
// another connection commits between two reads in tx shows in the second
// at READ COMMITTED only.
func myTestIsolation(t *testing.T, tx *sql.Tx, pool *sql.DB) string {
	t.Helper()
	count := func() int64 {
		var n int64
		if err := tx.QueryRow("SELECT COUNT(*) FROM sessions WHERE session_id LIKE 'probe-%'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	first := count()
	myTestExec(t, pool, "INSERT INTO sessions (session_id, expiry) VALUES (CONCAT('probe-', UUID()), UTC_TIMESTAMP() + INTERVAL 1 DAY)")
	if count() == first {
		return "REPEATABLE READ"
	}
	return "READ COMMITTED"
}

// myTestSessionVariables reads the session variables of the store's own
// connection, but those that change by themselves.
func myTestSessionVariables(t *testing.T, store *myStore) (map[string]string, int64) {
	t.Helper()
	db, err := store.myOpen()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var id int64
	if err := conn.QueryRowContext(context.Background(), "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.QueryContext(context.Background(), "SHOW SESSION VARIABLES")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	vars := map[string]string{}
	for rows.Next() {
		var name string
		var value sql.NullString
		if err := rows.Scan(&name, &value); err != nil {
			t.Fatal(err)
		}
		switch name {
		// statement_id: MySQL 8 numbers each statement.
		case "timestamp", "rand_seed1", "rand_seed2", "last_insert_id", "insert_id", "identity", "warning_count", "error_count", "statement_id":
			continue
		}
		vars[name] = value.String
	}
	if vars["tx_isolation"] == "" && vars["transaction_isolation"] == "" {
		t.Fatal("the session variables hold no isolation level")
	}
	return vars, id
}

// TestMySQLDryRunChangesNothing: a dry run creates nothing (not even a
// table it is asked to create) and writes no row.
func TestMySQLDryRunChangesNothing(t *testing.T) {
	ctx := myTestCtx(t)
	db := myTestDatabase(t)
	pool := myTestOpen(t, db)
	cfg := sessionstore.Config{URL: myTestURL(db), CreateTable: true, Sequence: "sessions_seq"}
	_, err := myTestStore(t, cfg).Cleanup(ctx, sessionstore.CleanupOptions{DryRun: true})
	myTestWantKind(t, err, sessionstore.ErrMissingTable, "")
	if n := myTestCount(t, pool, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", db); n != 0 {
		t.Fatalf("a dry run on a missing table created %d tables", n)
	}
	myTestExec(t, pool, "CREATE TABLE sessions (id int AUTO_INCREMENT PRIMARY KEY, session_id varchar(255) UNIQUE, data blob, expiry datetime)")
	myTestRows(t, pool, "sessions", map[string]string{"expired": "UTC_TIMESTAMP() - INTERVAL 1 DAY", "live": "UTC_TIMESTAMP() + INTERVAL 1 DAY"})
	checksum := func() string {
		var table, sum string
		pool.QueryRow("CHECKSUM TABLE sessions EXTENDED").Scan(&table, &sum)
		return sum
	}
	was := checksum()
	rep, err := myTestStore(t, cfg).Cleanup(ctx, sessionstore.CleanupOptions{DryRun: true, BatchSize: 1})
	if err != nil || rep.Expired != 1 || rep.Scanned != 2 || rep.Deleted != 0 || !rep.DryRun {
		t.Fatalf("dry run: %+v, %v", rep, err)
	}
	if now := checksum(); now != was || myTestCount(t, pool, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", db) != 1 {
		t.Fatalf("the dry run changed the database (checksum %s, was %s)", now, was)
	}
}

// TestMySQLCleanupStopsBetweenBatches: a cancelled run stops after the
// batch under way, says how far it got, and a rerun finishes the job.
func TestMySQLCleanupStopsBetweenBatches(t *testing.T) {
	_, s, pool := myTestSessionsTable(t)
	s.(*myStore).maxBatch = 50 // batches of 50 throughout
	myTestFill(t, pool, "session:expired-", 500, "INTERVAL -1 HOUR")
	myTestFill(t, pool, "session:live-", 100, "INTERVAL 1 HOUR")
	ctx, cancel := context.WithCancel(myTestCtx(t))
	rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 50, Progress: func(r sessionstore.Report) {
		if r.Batches == 2 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) || rep.Batches != 2 || rep.Deleted != 100 || !strings.Contains(rep.Message, "stopped") {
		t.Fatalf("got %+v, %v; want context.Canceled after 2 batches of 50", rep, err)
	}
	rep, err = s.Cleanup(myTestCtx(t), sessionstore.CleanupOptions{BatchSize: 50})
	if err != nil || rep.Deleted != 400 || myTestCount(t, pool, "SELECT COUNT(*) FROM sessions") != 100 {
		t.Fatalf("rerun: %+v, %v; want the other 400 deleted and 100 live left", rep, err)
	}
}
