package mysql

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

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
