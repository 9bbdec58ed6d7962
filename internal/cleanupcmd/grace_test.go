package cleanupcmd

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// The grace period reaches the backend: a session that expired a minute ago
// is kept with the default grace (5m) and deleted with --grace 0 or
// SESSION_STORE_GRACE_SECONDS=0, on a real filesystem store.
func TestGraceReachesTheBackend(t *testing.T) {
	dir := t.TempDir()
	justExpired := writeSessionFile(t, dir, "session:just-expired", time.Now().Add(-time.Minute))
	longExpired := writeSessionFile(t, dir, "session:long-expired", time.Now().Add(-time.Hour))

	r := run(t, t.Context(), Main, fsEnv(dir), nil, "--output=json")
	if r.code != ExitOK {
		t.Fatalf("default grace: want exit 0:\n%s", r)
	}
	res := decodeResult(t, "stdout", []byte(r.stdout))
	if countExisting([]string{justExpired}) != 1 || countExisting([]string{longExpired}) != 0 || res.Deleted != 1 {
		t.Fatalf("default grace: want only the session expired an hour ago deleted:\n%s", r)
	}
	if got := res.Now.Sub(res.Cutoff); got != sessionstore.DefaultGracePeriod {
		t.Errorf("report: cutoff %s before now, want the default grace %s", got, sessionstore.DefaultGracePeriod)
	}

	r = run(t, t.Context(), Main, fsEnv(dir), nil, "--grace=0", "--output=json")
	if r.code != ExitOK || countExisting([]string{justExpired}) != 0 {
		t.Fatalf("--grace 0: want the session expired a minute ago deleted:\n%s", r)
	}

	again := writeSessionFile(t, dir, "session:just-expired-2", time.Now().Add(-time.Minute))
	env := fsEnv(dir)
	env[sessionstore.EnvGraceSeconds] = "0"
	if r := run(t, t.Context(), Main, env, nil); r.code != ExitOK || countExisting([]string{again}) != 0 {
		t.Fatalf("%s=0: want the session expired a minute ago deleted:\n%s", sessionstore.EnvGraceSeconds, r)
	}
}

// The test-only clock offset moves the Now the backend is given (Redis
// reports it as it got it).
func TestClockOffsetShiftsTheCleanupClock(t *testing.T) {
	requireServer(t, "redis", "127.0.0.1:6379")
	env := map[string]string{sessionstore.EnvBackend: "redis", sessionstore.EnvURL: testRedisURL, sessionstore.EnvKeyPrefix: "cmdtest:" + randomName(t) + ":"}
	for _, tc := range []struct {
		args   []string
		env    string
		offset time.Duration
	}{
		{[]string{"--clock-offset=48h"}, "", 48 * time.Hour},
		{nil, "-3h", -3 * time.Hour},
	} {
		env[EnvTestClockOffset] = tc.env
		before := time.Now()
		r := run(t, t.Context(), Main, env, nil, append(tc.args, "--output=json")...)
		after := time.Now()
		if r.code != ExitOK {
			t.Fatalf("want exit 0:\n%s", r)
		}
		now := decodeResult(t, "stdout", []byte(r.stdout)).Now
		if now.Before(before.Add(tc.offset)) || now.After(after.Add(tc.offset)) {
			t.Errorf("offset %s: the backend was given %s, want between %s and %s", tc.offset, now, before.Add(tc.offset), after.Add(tc.offset))
		}
	}
}

// A pod whose clock disagrees with the volume's by more than the grace
// period ends the run: exit 1, errorKind ClockSkew in the report and the
// termination message, one clear line, and nothing deleted.
func TestClockSkewEndsTheRun(t *testing.T) {
	dir := t.TempDir()
	expired := writeExpiredFiles(t, dir, 3)
	live := writeSessionFile(t, dir, "session:live", time.Now().Add(30*time.Minute))
	for _, offset := range []string{"1h", "-1h"} {
		r := run(t, t.Context(), Main, fsEnv(dir), nil, "--clock-offset="+offset, "--output=json")
		if r.code != ExitStoreFailed {
			t.Fatalf("clock %s off: want exit 1:\n%s", offset, r)
		}
		for what, data := range map[string]string{"stdout": r.stdout, "termination message": string(r.termination)} {
			if res := decodeResult(t, what, []byte(data)); res.ErrorKind != sessionstore.ErrClockSkew || !strings.Contains(res.Error, "--grace") {
				t.Errorf("clock %s off: %s: want errorKind ClockSkew and where the grace is set: %s", offset, what, data)
			}
		}
		wantShift := "cleanup: the clock is shifted by " + strings.Replace(offset, "h", "h0m0s", 1) + " (SESSION_STORE_TEST_CLOCK_OFFSET, for tests only)\n"
		shift, skewLine, _ := strings.Cut(r.stderr, "\n")
		if shift+"\n" != wantShift || !strings.HasPrefix(skewLine, "cleanup: ClockSkew: ") || strings.Count(skewLine, "\n") != 1 || !strings.Contains(skewLine, "grace period (5m0s)") {
			t.Errorf("clock %s off: want the shift said, then one line naming the skew and the grace period: %q", offset, r.stderr)
		}
		if countExisting(expired) != 3 || countExisting([]string{live}) != 1 {
			t.Fatalf("clock %s off: files were deleted", offset)
		}
	}
	// A grace period wider than the skew lets the run go on.
	r := run(t, t.Context(), Main, fsEnv(dir), nil, "--clock-offset=20m", "--grace=30m")
	if r.code != ExitOK || countExisting(expired) != 0 || countExisting([]string{live}) != 1 {
		t.Fatalf("skew within the grace: want exit 0, the expired files gone and the live one kept:\n%s", r)
	}
}

// The same on PostgreSQL, whose cut-off comes from the server's clock: a
// row that expired a minute ago stays with the default grace and goes with
// --grace 0.
func TestGraceReachesPostgreSQL(t *testing.T) {
	ctx := t.Context()
	conn, table, env := pgTestTable(t, "cmd_grace_")
	quoted := pgx.Identifier{table}.Sanitize()
	if r := run(t, ctx, Main, env, nil); r.code != ExitOK {
		t.Fatalf("cleanup creating the table:\n%s", r)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO `+quoted+` (session_id, data, expiry) VALUES
		('session:just', '\x00', (now() AT TIME ZONE 'UTC') - interval '1 minute'),
		('session:long', '\x00', (now() AT TIME ZONE 'UTC') - interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	left := func() string {
		var ids []string
		rows, _ := conn.Query(ctx, "SELECT session_id FROM "+quoted+" ORDER BY session_id")
		for rows.Next() {
			var id string
			rows.Scan(&id)
			ids = append(ids, id)
		}
		return strings.Join(ids, ",")
	}
	if r := run(t, ctx, Main, env, nil); r.code != ExitOK || left() != "session:just" {
		t.Fatalf("default grace: want only the row expired an hour ago deleted (left: %s):\n%s", left(), r)
	}
	if r := run(t, ctx, Main, env, nil, "--grace=0"); r.code != ExitOK || left() != "" {
		t.Fatalf("--grace 0: want the row expired a minute ago deleted (left: %s):\n%s", left(), r)
	}
}
