package cleanupcmd

import (
	"context"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// Cancelling the context during the first batch's progress report stops
// the run after that batch: exit 1, a message saying so, and a report that
// matches what is on disk.
func TestCancelStopsAfterCurrentBatch(t *testing.T) {
	dir := t.TempDir()
	files := writeExpiredFiles(t, dir, 200)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stderr := &lockedBuffer{onWrite: func(s string) {
		if strings.Contains(s, "progress:") {
			cancel()
		}
	}}
	r := run(t, ctx, Main, fsEnv(dir), stderr, "--batch-size=1", "--output=json")
	if r.code != ExitStoreFailed {
		t.Fatalf("want exit 1:\n%s", r)
	}
	if !strings.Contains(r.stderr, "stopped early (cancelled) after 1 batch:") || !strings.Contains(r.stderr, "rerun to finish") {
		t.Errorf("stderr does not say it stopped early after one batch: %q", r.stderr)
	}
	res := decodeResult(t, "stdout", []byte(r.stdout))
	gone := len(files) - countExisting(files)
	if res.Report == nil || !res.StoppedEarly || res.Batches != 1 || int(res.Deleted) != gone || gone > 1 {
		t.Errorf("want 1 batch and the report matching the disk (%d gone): %s", gone, r.stdout)
	}
	term := decodeResult(t, "termination message", r.termination)
	if !term.StoppedEarly || !strings.Contains(term.Error, "stopped early") {
		t.Errorf("termination message: %s", r.termination)
	}
}

func TestSIGTERMStopsTheRun(t *testing.T) {
	// Keep the test process alive whatever the timing of the signal.
	caught := make(chan os.Signal, 1)
	signal.Notify(caught, syscall.SIGTERM)
	defer signal.Stop(caught)

	dir := t.TempDir()
	files := writeExpiredFiles(t, dir, 2000)
	var once sync.Once
	stderr := &lockedBuffer{onWrite: func(s string) {
		if strings.Contains(s, "progress:") {
			once.Do(func() { syscall.Kill(os.Getpid(), syscall.SIGTERM) })
		}
	}}
	r := run(t, t.Context(), Main, fsEnv(dir), stderr, "--batch-size=1", "--output=json")
	if r.code != ExitStoreFailed {
		t.Fatalf("want exit 1:\n%s", r)
	}
	if !strings.Contains(r.stderr, "stopped early (terminated signal received)") {
		t.Errorf("stderr does not say SIGTERM stopped it: %q", r.stderr)
	}
	res := decodeResult(t, "stdout", []byte(r.stdout))
	gone := len(files) - countExisting(files)
	if res.Report == nil || res.Batches >= len(files) || gone == len(files) || int(res.Deleted) != gone {
		t.Errorf("the run did not stop early, or its report does not match the disk (%d gone): %s", gone, r.stdout)
	}
}

func TestTimeoutStopsTheRun(t *testing.T) {
	requireServer(t, "redis", "127.0.0.1:6379")
	env := map[string]string{sessionstore.EnvBackend: "redis", sessionstore.EnvURL: testRedisURL, sessionstore.EnvKeyPrefix: "cmdtest:" + randomName(t) + ":"}
	r := run(t, t.Context(), Main, env, nil, "--timeout=1ns")
	if r.code != ExitStoreFailed || !strings.Contains(r.stderr, "stopped early (the --timeout of 1ns was reached)") {
		t.Fatalf("want exit 1 saying the timeout stopped it:\n%s", r)
	}
}

func TestBatchStopper(t *testing.T) {
	const grace = 10 * time.Millisecond
	// No stop asked: a batch boundary changes nothing.
	stop, cancelStop := context.WithCancel(t.Context())
	b := newBatchStopper(stop, grace)
	b.atBatchEnd()
	if b.ctx.Err() != nil {
		t.Fatal("cleanup context ended without a stop")
	}
	// Stopped: the next boundary ends the cleanup context at once.
	cancelStop()
	b.atBatchEnd()
	if b.ctx.Err() == nil || context.Cause(b.ctx) != context.Canceled {
		t.Fatalf("boundary after a stop: err %v cause %v", b.ctx.Err(), context.Cause(b.ctx))
	}
	b.release()

	// Stopped and no boundary comes: the grace runs out.
	stop, cancelStop = context.WithCancel(t.Context())
	b = newBatchStopper(stop, grace)
	defer b.release()
	cancelStop()
	select {
	case <-b.ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the grace never ran out")
	}
	if cause := context.Cause(b.ctx); cause == nil || !strings.Contains(cause.Error(), "did not finish within 10ms") {
		t.Errorf("cause: %v", cause)
	}
}

// The same stop on PostgreSQL, whose batches are transactions: cancelled
// after its first batch, the run deletes exactly that batch's rows.
func TestCancelStopsPostgreSQLAfterCurrentBatch(t *testing.T) {
	requireServer(t, "postgresql", "127.0.0.1:5432")
	old := progressInterval
	progressInterval = 0 // a line per batch, so the test can stop after the first
	t.Cleanup(func() { progressInterval = old })

	ctx := t.Context()
	conn, err := pgx.Connect(ctx, testPostgresURL)
	if err != nil {
		t.Fatalf("postgresql: %v (run hack/start-services.sh)", err)
	}
	defer conn.Close(context.Background())
	table := "cmd_cancel_" + randomName(t)
	quoted := pgx.Identifier{table}.Sanitize()
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+quoted) })
	_, err = conn.Exec(ctx, `CREATE TABLE `+quoted+` (id SERIAL PRIMARY KEY, session_id VARCHAR(255) UNIQUE, data BYTEA, expiry TIMESTAMP WITHOUT TIME ZONE);
		INSERT INTO `+quoted+` (session_id, data, expiry)
		SELECT 'session:' || g, '\x00', (now() AT TIME ZONE 'UTC') - interval '1 hour' FROM generate_series(1, 2000) g`)
	if err != nil {
		t.Fatal(err)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stderr := &lockedBuffer{onWrite: func(s string) {
		if strings.Contains(s, "progress:") && strings.Contains(s, "; 1 batch so far") {
			cancel()
		}
	}}
	env := map[string]string{sessionstore.EnvBackend: "postgresql", sessionstore.EnvURL: testPostgresURL, sessionstore.EnvTable: table,
		sessionstore.EnvCreateExpiryIndex: "false"}
	r := run(t, runCtx, Main, env, stderr, "--batch-size=10", "--output=json")
	if r.code != ExitStoreFailed || !strings.Contains(r.stderr, "stopped early (cancelled) after 1 batch:") {
		t.Fatalf("want exit 1 after one batch:\n%s", r)
	}
	res := decodeResult(t, "stdout", []byte(r.stdout))
	var left int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+quoted).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if res.Report == nil || res.Batches != 1 || res.Deleted != 2000-left || res.Deleted == 0 || left == 0 {
		t.Errorf("want one batch deleted and the report matching the table (%d rows left): %s", left, r.stdout)
	}

	// A rerun finishes the job.
	if r := run(t, ctx, Main, env, nil); r.code != ExitOK {
		t.Fatalf("rerun:\n%s", r)
	}
	conn.QueryRow(ctx, "SELECT count(*) FROM "+quoted).Scan(&left)
	if left != 0 {
		t.Errorf("%d expired rows left after the rerun", left)
	}
}
