package mysql

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/storetest"
)

// The tests run against a real server that hack/start-services.sh starts,
// root with an empty password: MariaDB on 127.0.0.1:3306 unless
// SESSIONSTORE_MYSQL_TEST_ADDR names another (make test reruns them against
// MySQL 8.0 on 127.0.0.1:3307). Each makes a database of its own and drops
// it afterwards.
var myTestHost = cmp.Or(os.Getenv("SESSIONSTORE_MYSQL_TEST_ADDR"), "127.0.0.1:3306")

const myTestFlaskPy = "flask_sqlalchemy_mysql.py"

func myTestRandom() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func myTestCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// myTestOpen opens a pool as root on database db ("" for none).
func myTestOpen(t testing.TB, db string) *sql.DB {
	t.Helper()
	c := mysql.NewConfig()
	c.User, c.Net, c.Addr, c.DBName = "root", "tcp", myTestHost, db
	c.Logger = myNopLogger{}
	connector, err := mysql.NewConnector(c)
	if err != nil {
		t.Fatal(err)
	}
	pool := sql.OpenDB(connector)
	t.Cleanup(func() { pool.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pool.PingContext(ctx); err != nil {
		t.Fatalf("MySQL/MariaDB at %s is not reachable (%v); run hack/start-services.sh", myTestHost, err)
	}
	return pool
}

func myTestExec(t testing.TB, db interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, query string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// myTestDatabase creates a database of the test's own and returns its name.
func myTestDatabase(t testing.TB) string {
	t.Helper()
	admin := myTestOpen(t, "")
	name := "mytest_" + myTestRandom()
	myTestExec(t, admin, "CREATE DATABASE "+name)
	t.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return name
}

func myTestURL(db string) string { return "mysql://root@" + myTestHost + "/" + db }

func myTestSQLAlchemyURI(db string) string { return "mysql+pymysql://root@" + myTestHost + "/" + db }

func myTestStore(t testing.TB, cfg sessionstore.Config) sessionstore.Store {
	t.Helper()
	cfg.Backend = sessionstore.BackendMySQL
	return storetest.NewStore(t, cfg)
}

// myTestSessionsTable makes a database with Flask-Session's table in it,
// made by EnsureSchema; it returns the database, a store on it and a pool.
func myTestSessionsTable(t *testing.T) (string, sessionstore.Store, *sql.DB) {
	t.Helper()
	db := myTestDatabase(t)
	s := myTestStore(t, sessionstore.Config{URL: myTestURL(db), CreateTable: true})
	if _, err := s.EnsureSchema(myTestCtx(t)); err != nil {
		t.Fatalf("EnsureSchema: %v", err)
	}
	return db, s, myTestOpen(t, db)
}

// myTestRows inserts one row per session id into table, expiry being the
// SQL expression given for it.
func myTestRows(t *testing.T, pool *sql.DB, table string, rows map[string]string) {
	t.Helper()
	for sid, expiry := range rows {
		myTestExec(t, pool, "INSERT INTO "+table+" (session_id, data, expiry) VALUES (?, x'80', "+expiry+")", sid)
	}
}

// myTestFill writes n sessions named prefix1..prefixN with expiry =
// UTC_TIMESTAMP() + offset (an SQL interval such as "INTERVAL 1 HOUR").
func myTestFill(t *testing.T, pool *sql.DB, prefix string, n int, offset string) {
	t.Helper()
	myTestExec(t, pool, `INSERT INTO sessions (session_id, data, expiry)
		SELECT CONCAT(?, seq), x'80049500', UTC_TIMESTAMP() + `+offset+` FROM `+myTestSeq(n), prefix)
}

// myTestSeq is a derived table of the integers 1..n in a column seq, made
// of cross-joined digits: MariaDB's seq_1_to_<n> tables do not exist on
// MySQL, and its recursive CTEs stop at 1000 rows by default.
func myTestSeq(n int) string {
	const digits = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4" +
		" UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
	expr, from := "1", ""
	for i, scale := 0, 1; scale < n; i, scale = i+1, scale*10 {
		expr += fmt.Sprintf(" + %d * d%d.d", scale, i)
		from += fmt.Sprintf(", %s AS d%d", digits, i)
	}
	return fmt.Sprintf("(SELECT * FROM (SELECT %s AS seq FROM (SELECT 1) AS one%s) AS all_seq WHERE seq <= %d) AS seqs", expr, from, n)
}

// myTestMariaDB tells whether the server under test is MariaDB (else it
// is MySQL), as the store does, for the tests whose outcome differs.
func myTestMariaDB(t testing.TB) bool {
	t.Helper()
	var version string
	if err := myTestOpen(t, "").QueryRow("SELECT VERSION()").Scan(&version); err != nil {
		t.Fatal(err)
	}
	return myParseVersion(version).mariaDB
}

// myTestLeft lists the session_ids left in table, sorted.
func myTestLeft(t *testing.T, pool *sql.DB, table string) []string {
	t.Helper()
	rows, err := pool.Query("SELECT session_id FROM " + table + " ORDER BY session_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var left []string
	for rows.Next() {
		var sid string
		if err := rows.Scan(&sid); err != nil {
			t.Fatal(err)
		}
		left = append(left, sid)
	}
	return left
}

func myTestCount(t *testing.T, pool *sql.DB, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// myTestWantKind fails unless err is a store error of kind want that does
// not give away secret.
func myTestWantKind(t *testing.T, err error, want sessionstore.ErrorKind, secret string) {
	t.Helper()
	storetest.WantKind(t, err, want)
	if secret == "" {
		return
	}
	for _, s := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret), url.UserPassword("", secret).String()[1:]} {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("error gives the password away: %v", err)
		}
	}
}

// myTestUser creates a user who may use database db, with password, and
// drops it when the test ends.
func myTestUser(t *testing.T, db, password string) string {
	t.Helper()
	admin := myTestOpen(t, "")
	user := "mytest_" + myTestRandom()
	for _, host := range []string{"'%'", "localhost"} {
		account := user + "@" + host
		myTestExec(t, admin, "CREATE USER "+account+" IDENTIFIED BY "+myTestQuote(password))
		myTestExec(t, admin, "GRANT ALL ON "+db+".* TO "+account)
		t.Cleanup(func() { admin.Exec("DROP USER IF EXISTS " + account) })
	}
	return user
}

func myTestFlaskWrite(t *testing.T, uri, table string, lifetimeSeconds, count int, permanent bool) []storetest.FlaskSession {
	t.Helper()
	return storetest.FlaskWrite(t, myTestFlaskPy, count, uri, table, fmt.Sprint(lifetimeSeconds), fmt.Sprint(count), fmt.Sprint(permanent))
}

// myTestQuote makes s an SQL string literal (with backslash escapes on).
func myTestQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", "''").Replace(s) + "'"
}
