package mysql

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// TestMySQLServerKind: the store tells MariaDB from MySQL by VERSION(), and
// what it picks for each holds on the server under test: MariaDB's
// one-statement DELETE that never waits needs its SET STATEMENT, which
// MySQL 8 rejects as a syntax error (1064), so there the batches lock with
// SKIP LOCKED instead; sequences are MariaDB's alone.
func TestMySQLServerKind(t *testing.T) {
	ctx := myTestCtx(t)
	_, s, pool := myTestSessionsTable(t)
	store := s.(*myStore)
	conn, err := store.myConn(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	info, err := store.myInspect(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	var version string
	if err := pool.QueryRow("SELECT VERSION()").Scan(&version); err != nil {
		t.Fatal(err)
	}
	mariaDB := strings.Contains(version, "MariaDB")
	if info.server.mariaDB != mariaDB || !info.server.skipLocked() || info.server.sequences() != mariaDB {
		t.Fatalf("server %q read as %+v (SKIP LOCKED %v, sequences %v)", version, info.server, info.server.skipLocked(), info.server.sequences())
	}
	_, err = pool.Exec("SET STATEMENT innodb_lock_wait_timeout = 0 FOR DELETE FROM sessions WHERE id = 0")
	var myErr *mysql.MySQLError
	if mariaDB && err != nil || !mariaDB && !(errors.As(err, &myErr) && myErr.Number == 1064) {
		t.Fatalf("%s: SET STATEMENT ... FOR DELETE gave %v", version, err)
	}
	t.Logf("%s: %+v", version, info.server)
}

// TestMySQLInspectDoesNotWaitOnOtherDatabases: a CREATE TABLE ... AS SELECT
// in another database holds its new table's exclusive metadata lock until it
// ends. Ping and Cleanup, which read information_schema for their own
// table, must finish while it still runs (they waited for it when their
// query scanned every database).
func TestMySQLInspectDoesNotWaitOnOtherDatabases(t *testing.T) {
	ctx := myTestCtx(t)
	_, s, pool := myTestSessionsTable(t)
	myTestFill(t, pool, "session:expired-", 10, "INTERVAL -1 HOUR")
	other := myTestOpen(t, myTestDatabase(t))
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var connID int64
	if err := conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&connID); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := conn.ExecContext(context.Background(), "CREATE TABLE slow AS SELECT SLEEP(20) AS s")
		done <- err
	}()
	running := func() bool {
		return myTestCount(t, pool, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ? AND INFO LIKE 'CREATE TABLE slow%'", connID) == 1
	}
	for deadline := time.Now().Add(30 * time.Second); !running(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the CREATE TABLE ... AS SELECT did not start")
		}
	}

	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{})
	if err != nil || rep.Deleted != 10 {
		t.Fatalf("Cleanup: %+v, %v; want 10 deleted", rep, err)
	}
	if !running() {
		t.Fatal("Ping and Cleanup waited for the CREATE TABLE ... AS SELECT in another database to end")
	}
	myTestExec(t, pool, fmt.Sprintf("KILL QUERY %d", connID))
	<-done
}
