package cleanupcmd

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/testservers"
)

const (
	testPostgresURL = "postgres://root@127.0.0.1:5432/test?sslmode=disable"
	testRedisURL    = "redis://127.0.0.1:6379/0"
	testMemcacheURL = "memcached://127.0.0.1:11211"
	testMongoURL    = "mongodb://127.0.0.1:27017/"
)

// lockedBuffer is written from the backend's goroutines (progress lines).
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	// onWrite, when set, sees each write (under the lock).
	onWrite func(string)
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.onWrite != nil {
		b.onWrite(string(p))
	}
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type runResult struct {
	code           int
	stdout, stderr string
	termination    []byte
}

type subcommand func(context.Context, []string, func(string) (string, bool), io.Writer, io.Writer) int

func envOf(env map[string]string) func(string) (string, bool) {
	return func(key string) (string, bool) {
		v, ok := env[key]
		return v, ok
	}
}

// run runs a subcommand with env as its whole environment and its
// termination message written to a file of the test's own.
func run(t *testing.T, ctx context.Context, cmd subcommand, env map[string]string, stderr *lockedBuffer, args ...string) runResult {
	t.Helper()
	termPath := filepath.Join(t.TempDir(), "termination-log")
	if stderr == nil {
		stderr = &lockedBuffer{}
	}
	var stdout lockedBuffer
	code := cmd(ctx, append([]string{"--termination-log=" + termPath}, args...), envOf(env), &stdout, stderr)
	term, err := os.ReadFile(termPath)
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("reading the termination message: %v", err)
	}
	return runResult{code: code, stdout: stdout.String(), stderr: stderr.String(), termination: term}
}

func (r runResult) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s\ntermination: %s", r.code, r.stdout, r.stderr, r.termination)
}

func decodeResult(t *testing.T, what string, data []byte) sessionstore.RunResult {
	t.Helper()
	var res sessionstore.RunResult
	if err := json.Unmarshal(bytes.TrimSpace(data), &res); err != nil {
		t.Fatalf("%s is not the JSON report: %v\n%s", what, err, data)
	}
	return res
}

// captureProcessStderr returns what fn's callees wrote to file descriptor 2
// directly (drivers' default loggers), not through the writers they were given.
func captureProcessStderr(t *testing.T, fn func()) string {
	t.Helper()
	saved, err := syscall.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(saved)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Dup3(int(pw.Fd()), 2, 0); err != nil {
		t.Fatal(err)
	}
	captured := make(chan string)
	go func() {
		data, _ := io.ReadAll(pr)
		captured <- string(data)
	}()
	var restore sync.Once
	restoreStderr := func() {
		restore.Do(func() {
			syscall.Dup3(saved, 2, 0)
			pw.Close()
		})
	}
	defer restoreStderr() // also when fn fails the test
	fn()
	restoreStderr()
	return <-captured
}

func requireServer(t *testing.T, name, addr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatalf("%s is not listening on %s (%v): run hack/start-services.sh", name, addr, err)
	}
	conn.Close()
}

func randomName(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// closedPort returns a loopback port nothing listens on.
// writeSessionFile writes a session the way cachelib >= 0.7 does: the file
// is named md5(key), starts with the expiry as a native-endian uint32
// (little-endian here), then the pickle. expires 0 means never.
func writeSessionFile(t *testing.T, dir, key string, expires time.Time) string {
	t.Helper()
	sum := md5.Sum([]byte(key))
	path := filepath.Join(dir, hex.EncodeToString(sum[:]))
	var header [4]byte
	if !expires.IsZero() {
		binary.LittleEndian.PutUint32(header[:], uint32(expires.Unix()))
	}
	pickledEmptyDict := []byte("\x80\x02}q\x00.")
	if err := os.WriteFile(path, append(header[:], pickledEmptyDict...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeExpiredFiles(t *testing.T, dir string, n int) []string {
	t.Helper()
	paths := make([]string, n)
	for i := range paths {
		paths[i] = writeSessionFile(t, dir, fmt.Sprintf("session:expired-%d", i), time.Now().Add(-time.Hour))
	}
	return paths
}

func countExisting(paths []string) int {
	n := 0
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			n++
		}
	}
	return n
}

func fsEnv(dir string) map[string]string {
	return map[string]string{sessionstore.EnvBackend: "filesystem", sessionstore.EnvDir: dir}
}

func TestFlagsOverrideEnv(t *testing.T) {
	env := map[string]string{
		sessionstore.EnvBackend:         "redis",
		sessionstore.EnvURL:             "redis://envhost:6379/0",
		sessionstore.EnvTable:           "env_table",
		sessionstore.EnvSchema:          "env_schema",
		sessionstore.EnvDatabase:        "env_db",
		sessionstore.EnvCollection:      "env_coll",
		sessionstore.EnvDir:             "/env/dir",
		sessionstore.EnvKeyPrefix:       "env:",
		sessionstore.EnvBatchSize:       "50",
		sessionstore.EnvFixMissingTTL:   "true",
		sessionstore.EnvLifetimeSeconds: "7200",
	}
	var out, errOut bytes.Buffer
	inv, code, done := start("cleanup", []string{
		"--backend=postgresql", "--url=postgres://flaghost/db", "--table=flag_table", "--schema=flag_schema",
		"--database=flag_db", "--collection=flag_coll", "--dir=/flag/dir", "--key-prefix=", "--batch-size=7",
		"--fix-missing-ttl=false", "--dry-run", "--output=json", "--timeout=90s",
	}, envOf(env), &out, &errOut)
	if done {
		t.Fatalf("start ended the run with exit %d: %s", code, errOut.String())
	}
	want := sessionstore.Config{
		Backend: "postgresql", URL: "postgres://flaghost/db", KeyPrefix: "", Lifetime: 2 * time.Hour,
		Database: "flag_db", Collection: "flag_coll", Table: "flag_table", Schema: "flag_schema", Dir: "/flag/dir",
		CreateTable: true, CreateExpiryIndex: true, TTLIndex: true, FixMissingTTL: false,
	}
	if inv.cfg != want {
		t.Errorf("config:\n got %+v\nwant %+v", inv.cfg, want)
	}
	if inv.batch != 7 || !inv.dryRun || !inv.json || inv.timeout != 90*time.Second {
		t.Errorf("batch %d dryRun %v json %v timeout %s; want 7 true true 1m30s", inv.batch, inv.dryRun, inv.json, inv.timeout)
	}

	// Without flags the environment is used as is.
	inv, code, done = start("cleanup", nil, envOf(env), &out, &errOut)
	if done {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if inv.cfg.Backend != "redis" || inv.cfg.URL != "redis://envhost:6379/0" || inv.cfg.KeyPrefix != "env:" ||
		inv.batch != 50 || !inv.cfg.FixMissingTTL || inv.dryRun || inv.json {
		t.Errorf("env not used: %+v batch %d", inv.cfg, inv.batch)
	}
}

// The flag wins over the env on a real run: only the flag's directory is cleaned.
func TestDirFlagOverridesEnvOnARealRun(t *testing.T) {
	envDir, flagDir := t.TempDir(), t.TempDir()
	envFiles := writeExpiredFiles(t, envDir, 3)
	flagFiles := writeExpiredFiles(t, flagDir, 3)
	r := run(t, t.Context(), Main, fsEnv(envDir), nil, "--dir="+flagDir)
	if r.code != ExitOK {
		t.Fatalf("want exit 0:\n%s", r)
	}
	if n := countExisting(flagFiles); n != 0 {
		t.Errorf("%d expired files left in the --dir directory", n)
	}
	if n := countExisting(envFiles); n != 3 {
		t.Errorf("the env's directory was touched: %d of 3 files left", n)
	}
}

func TestBadConfigurationExits2NamingTheKey(t *testing.T) {
	dir := t.TempDir()
	pg := map[string]string{sessionstore.EnvBackend: "postgresql", sessionstore.EnvURL: "postgres://127.0.0.1/test"}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name string
		cmd  subcommand
		env  map[string]string
		args []string
		// wantLine is the whole stderr line after "<subcommand>: ".
		wantLine string
	}{
		{"table from env", Main, with(pg, sessionstore.EnvTable, "x;y"), nil,
			`SESSION_STORE_TABLE: "x;y" is not a plain identifier`},
		{"table from flag", Main, pg, []string{"--table", "x;y"},
			`--table: "x;y" is not a plain identifier`},
		{"no backend", Main, map[string]string{}, nil,
			"SESSION_STORE_BACKEND: not set (want one of redis, memcached, mongodb, postgresql, filesystem)"},
		{"unknown backend flag", Main, pg, []string{"--backend=dynamodb"},
			`--backend: "dynamodb" is not a known backend (want one of redis, memcached, mongodb, postgresql, filesystem)`},
		{"batch size env", Main, with(pg, sessionstore.EnvBatchSize, "0"), nil,
			`SESSION_STORE_BATCH_SIZE: "0" is not a whole number from 1 to 100000`},
		{"batch size flag", Main, pg, []string{"--batch-size=100001"},
			`--batch-size: "100001" is not a whole number from 1 to 100000`},
		{"lifetime", Main, with(pg, sessionstore.EnvLifetimeSeconds, "31d"), nil,
			`SESSION_STORE_LIFETIME_SECONDS: "31d" is not a whole number of seconds`},
		{"bool", Main, with(pg, sessionstore.EnvCreateTable, "yes"), nil,
			`SESSION_STORE_CREATE_TABLE: "yes" is not true or false`},
		{"output", Main, pg, []string{"--output=yaml"}, `--output: "yaml" is not text or json`},
		{"timeout", Main, pg, []string{"--timeout=-1s"}, `--timeout: -1s is negative`},
		{"unknown flag", Main, pg, []string{"--bogus"}, "flag provided but not defined: -bogus (see cleanup -h)"},
		{"extra argument", Main, pg, []string{"now"}, `unexpected argument "now" (see cleanup -h)`},
		{"relative dir", Main, fsEnv("flask_session"), nil, `SESSION_STORE_DIR: "flask_session" is not an absolute path`},
		{"redis scheme", Main, map[string]string{sessionstore.EnvBackend: "redis", sessionstore.EnvURL: "http://h"}, nil,
			`SESSION_STORE_URL: scheme "http" is not supported; want redis://, rediss:// or unix://`},
		{"check: no dir", Check, map[string]string{sessionstore.EnvBackend: "filesystem"}, nil,
			"SESSION_STORE_DIR: not set (or give SESSION_STORE_URL as file:///path)"},
		{"check: mongo database", Check, map[string]string{sessionstore.EnvBackend: "mongodb", sessionstore.EnvURL: testMongoURL, sessionstore.EnvDatabase: "a/b"}, nil,
			`SESSION_STORE_DATABASE: "a/b" is not a plain database name (letters, digits, _ and -)`},
		{"check: batch flag is cleanup's", Check, fsEnv(dir), []string{"--batch-size=5"},
			"flag provided but not defined: -batch-size (see check -h)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "cleanup"
			if strings.HasPrefix(tc.name, "check:") {
				name = "check"
			}
			r := run(t, t.Context(), tc.cmd, tc.env, nil, tc.args...)
			if r.code != ExitBadConfig {
				t.Fatalf("want exit 2:\n%s", r)
			}
			if want := name + ": " + tc.wantLine + "\n"; r.stderr != want {
				t.Errorf("stderr:\n got %q\nwant %q", r.stderr, want)
			}
			if r.stdout != "" {
				t.Errorf("text mode printed to stdout on a config error: %q", r.stdout)
			}
			res := decodeResult(t, "termination message", r.termination)
			if res.ErrorKind != sessionstore.ErrConfig || res.Error != tc.wantLine {
				t.Errorf("termination message: kind %q error %q; want %q %q", res.ErrorKind, res.Error, sessionstore.ErrConfig, tc.wantLine)
			}
		})
	}
}

func TestBadConfigurationWithJSONOutput(t *testing.T) {
	env := map[string]string{sessionstore.EnvBackend: "postgresql", sessionstore.EnvURL: "postgres://h/db", sessionstore.EnvTable: "a-b"}
	r := run(t, t.Context(), Main, env, nil, "--output=json")
	if r.code != ExitBadConfig {
		t.Fatalf("want exit 2:\n%s", r)
	}
	res := decodeResult(t, "stdout", []byte(r.stdout))
	if res.ErrorKind != sessionstore.ErrConfig || !strings.HasPrefix(res.Error, "SESSION_STORE_TABLE: ") {
		t.Errorf("stdout JSON: %+v", res)
	}
}

func TestHelpExits0(t *testing.T) {
	r := run(t, t.Context(), Main, nil, nil, "-h")
	if r.code != ExitOK || !strings.Contains(r.stdout, "-batch-size") || !strings.Contains(r.stdout, sessionstore.EnvBatchSize) {
		t.Fatalf("help:\n%s", r)
	}
}

// No credential may reach stdout, stderr or the termination message, from
// config errors, refused connections, or a server that rejects the login.
func TestNoCredentialInAnyOutput(t *testing.T) {
	requireServer(t, "redis", "127.0.0.1:6379")
	requireServer(t, "postgresql", "127.0.0.1:5432")
	old := pingTimeout
	pingTimeout = 5 * time.Second
	t.Cleanup(func() { pingTimeout = old })

	// A password with URL-special characters, percent-encoded as it must be:
	// neither form may leak.
	const encoded = "Pw%40cmd%2Fs3cr3t%3A"
	const decoded = "Pw@cmd/s3cr3t:"
	const queryPassword = "QueryPw0rd4cmd"
	port := testservers.FreePort(t)
	for _, tc := range []struct {
		name, backend, url string
		wantKind           sessionstore.ErrorKind
	}{
		{"postgresql refused", "postgresql", fmt.Sprintf("postgresql://cmduser:%s@127.0.0.1:%d/test?sslmode=disable", encoded, port), sessionstore.ErrRefused},
		{"postgresql password in query", "postgresql", fmt.Sprintf("postgres://cmduser@127.0.0.1:%d/test?sslmode=disable&password=%s", port, queryPassword), sessionstore.ErrRefused},
		{"postgresql server rejects", "postgresql", "postgresql://root:" + encoded + "@127.0.0.1:5432/cmd_no_such_database?sslmode=disable", ""},
		{"redis refused", "redis", fmt.Sprintf("redis://:%s@127.0.0.1:%d/0", encoded, port), sessionstore.ErrRefused},
		{"redis server rejects", "redis", "redis://cmduser:" + encoded + "@127.0.0.1:6379/0", sessionstore.ErrAuth},
		{"mongodb refused", "mongodb", fmt.Sprintf("mongodb://cmduser:%s@127.0.0.1:%d/?serverSelectionTimeoutMS=2000", encoded, port), ""},
	} {
		for _, cmd := range []struct {
			name string
			run  subcommand
		}{{"cleanup", Main}, {"check", Check}} {
			for _, output := range []string{"text", "json"} {
				t.Run(tc.name+"/"+cmd.name+"/"+output, func(t *testing.T) {
					env := map[string]string{sessionstore.EnvBackend: tc.backend, sessionstore.EnvURL: tc.url}
					var r runResult
					processStderr := captureProcessStderr(t, func() {
						r = run(t, t.Context(), cmd.run, env, nil, "--output="+output)
					})
					if processStderr != "" {
						t.Errorf("a driver wrote to the process's stderr, past the command's writers: %q", processStderr)
					}
					if r.code != ExitStoreFailed {
						t.Fatalf("want exit 1:\n%s", r)
					}
					for _, secret := range []string{encoded, decoded, queryPassword} {
						for where, text := range map[string]string{"stdout": r.stdout, "stderr": r.stderr, "termination message": string(r.termination)} {
							if strings.Contains(text, secret) {
								t.Errorf("%s holds the password %q:\n%s", where, secret, text)
							}
						}
					}
					res := decodeResult(t, "termination message", r.termination)
					if res.Error == "" {
						t.Errorf("termination message has no error: %s", r.termination)
					}
					if tc.wantKind != "" && res.ErrorKind != tc.wantKind {
						t.Errorf("error kind %q, want %q: %s", res.ErrorKind, tc.wantKind, res.Error)
					}
					if lines := strings.Count(r.stderr, "\n"); lines != 1 || !strings.HasPrefix(r.stderr, cmd.name+": ") {
						t.Errorf("want one stderr line starting %q, got %q", cmd.name+": ", r.stderr)
					}
				})
			}
		}
	}
}

func TestRedactor(t *testing.T) {
	redact := newRedactor("postgres://u:p%40ss%2Fword@h/db?sslpassword=qqqq1234&password=zz%2Bzz")
	in := "a p@ss/word b p%40ss%2Fword c qqqq1234 d zz+zz e zz%2Bzz f mongodb://x:other@h g"
	out := redact(in)
	for _, secret := range []string{"p@ss/word", "p%40ss%2Fword", "qqqq1234", "zz+zz", "zz%2Bzz", "other"} {
		if strings.Contains(out, secret) {
			t.Errorf("%q survived: %s", secret, out)
		}
	}
	// A URL that does not parse still has its password hidden.
	out = newRedactor("redis://:bad pass%zz@h:1")("dial redis://:bad pass%zz@h:1 failed; password bad pass%zz")
	if strings.Contains(out, "bad pass%zz") {
		t.Errorf("unparseable URL's password survived: %s", out)
	}
}

func TestTerminationMessageFitsKubernetesLimit(t *testing.T) {
	report := sessionstore.Report{Backend: "postgresql", Message: strings.Repeat("m", 10000), Deleted: 42}
	for i := range 300 {
		report.AddKept(fmt.Sprintf("reason-number-%03d", i), int64(i+1))
	}
	res := sessionstore.RunResult{
		Report: &report,
		Schema: &sessionstore.SchemaResult{Message: strings.Repeat("s", 5000)},
		Error:  strings.Repeat("é", 6000),
	}
	data := fitTerminationMessage(res)
	if len(data) > terminationMessageLimit {
		t.Fatalf("%d bytes, over %d", len(data), terminationMessageLimit)
	}
	back := decodeResult(t, "fitted message", data)
	if back.Report == nil || back.Deleted != 42 || back.Error == "" {
		t.Errorf("fitting lost the essentials: %s", data)
	}
	if len(report.Message) != 10000 || len(res.Schema.Message) != 5000 {
		t.Error("fitting changed the caller's report")
	}
}

// Outside a pod /dev/termination-log does not exist: the default path is
// written only when present, never created.
func TestDefaultTerminationLogIsNeverCreated(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "termination-log")
	old := defaultTerminationLog
	defaultTerminationLog = missing
	t.Cleanup(func() { defaultTerminationLog = old })

	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := Main(t.Context(), nil, envOf(fsEnv(dir)), &stdout, &stderr); code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("the default termination log was created (stat: %v)", err)
	}
	if strings.Contains(stderr.String(), "termination") {
		t.Errorf("complained about a missing default termination log: %s", stderr.String())
	}

	// Present, as Kubernetes makes it: written.
	if err := os.WriteFile(missing, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := Main(t.Context(), nil, envOf(fsEnv(dir)), &stdout, &stderr); code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	data, _ := os.ReadFile(missing)
	if res := decodeResult(t, "termination log", data); res.Report == nil || res.Backend != "filesystem" {
		t.Errorf("termination log: %s", data)
	}
}

// A successful run on the filesystem backend, end to end: exactly the
// expired files go, the report says so on stdout and in the termination file.
func TestCleanupFilesystemEndToEnd(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	var expired, kept []string
	for i := range 5 {
		expired = append(expired, writeSessionFile(t, dir, fmt.Sprintf("session:old-%d", i), now.Add(-time.Hour)))
	}
	for i := range 4 {
		kept = append(kept, writeSessionFile(t, dir, fmt.Sprintf("session:live-%d", i), now.Add(time.Hour)))
	}
	kept = append(kept, writeSessionFile(t, dir, "session:forever", time.Time{}))
	// cachelib's temporary and a truncated file: never deleted.
	tmp := filepath.Join(dir, "tmpab12cd.__wz_cache")
	garbage := filepath.Join(dir, strings.Repeat("ab", 16))
	for path, content := range map[string]string{tmp: "\x00\x00", garbage: "\x01"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		kept = append(kept, path)
	}

	r := run(t, t.Context(), Main, fsEnv(dir), nil)
	if r.code != ExitOK {
		t.Fatalf("want exit 0:\n%s", r)
	}
	if n := countExisting(expired); n != 0 {
		t.Errorf("%d expired files left", n)
	}
	if n := countExisting(kept); n != len(kept) {
		t.Errorf("%d of %d files that must stay were deleted", len(kept)-n, len(kept))
	}
	if !strings.HasPrefix(r.stdout, "filesystem: ") || !strings.Contains(r.stdout, "expired 5, deleted 5") {
		t.Errorf("text summary: %q", r.stdout)
	}
	res := decodeResult(t, "termination message", r.termination)
	if res.Report == nil || res.Backend != "filesystem" || res.Expired != 5 || res.Deleted != 5 || res.Error != "" || res.StoppedEarly {
		t.Errorf("termination message: %s", r.termination)
	}
	if bytes.Contains(r.termination, []byte("\n")) {
		t.Errorf("termination message is not compact: %q", r.termination)
	}

	// Nothing left to do the second time.
	r = run(t, t.Context(), Main, fsEnv(dir), nil, "--output=json")
	if r.code != ExitOK {
		t.Fatalf("second run:\n%s", r)
	}
	if res := decodeResult(t, "stdout", []byte(r.stdout)); res.Deleted != 0 || res.Expired != 0 {
		t.Errorf("second run deleted again: %s", r.stdout)
	}
}

func TestOutputJSONParsesBackAsReport(t *testing.T) {
	dir := t.TempDir()
	writeExpiredFiles(t, dir, 3)
	live := writeSessionFile(t, dir, "session:live", time.Now().Add(time.Hour))
	r := run(t, t.Context(), Main, fsEnv(dir), nil, "--output", "json", "--dry-run")
	if r.code != ExitOK {
		t.Fatalf("want exit 0:\n%s", r)
	}
	var report sessionstore.Report
	if err := json.Unmarshal([]byte(r.stdout), &report); err != nil {
		t.Fatalf("stdout is not a Report: %v\n%s", err, r.stdout)
	}
	if report.Backend != "filesystem" || !report.DryRun || report.Expired != 3 || report.Deleted != 0 || report.Scanned < 4 || report.Now.IsZero() {
		t.Errorf("report: %+v", report)
	}
	if strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("want one JSON line on stdout, got %q", r.stdout)
	}
	if n := countExisting([]string{live}); n != 1 {
		t.Error("dry run deleted a live file")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) < 4 {
		t.Errorf("dry run deleted files: %d left", len(entries))
	}
}

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

func TestCheckFilesystem(t *testing.T) {
	dir := t.TempDir()
	writeExpiredFiles(t, dir, 2)
	r := run(t, t.Context(), Check, fsEnv(dir), nil)
	if r.code != ExitOK || r.stdout != "ok: filesystem store reachable\n" {
		t.Fatalf("want exit 0 and ok:\n%s", r)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("check changed the directory: %d entries", len(entries))
	}
	// A missing directory fails; whether as bad configuration (2) or a
	// failed store (1) is the backend's call, and the exit code follows it.
	r = run(t, t.Context(), Check, fsEnv(filepath.Join(dir, "missing")), nil, "--output=json")
	var res checkResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.OK || !strings.Contains(res.Error, "missing") {
		t.Fatalf("check JSON does not name the missing directory: %v\n%s", err, r)
	}
	if wantCode := map[bool]int{true: ExitBadConfig, false: ExitStoreFailed}[res.ErrorKind == sessionstore.ErrConfig]; r.code != wantCode {
		t.Errorf("exit %d for error kind %s, want %d", r.code, res.ErrorKind, wantCode)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Error("check created the missing directory")
	}
}

func TestCleanupRedis(t *testing.T) {
	requireServer(t, "redis", "127.0.0.1:6379")
	ctx := t.Context()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer client.Close()
	prefix := "cmdtest:" + randomName(t) + ":"
	t.Cleanup(func() { client.Del(context.Background(), prefix+"a", prefix+"b", prefix+"c") })
	if err := client.Set(ctx, prefix+"a", "x", time.Hour).Err(); err != nil {
		t.Fatalf("redis: %v", err)
	}
	client.Set(ctx, prefix+"b", "x", 0)
	client.Set(ctx, prefix+"c", "x", 0)
	env := map[string]string{sessionstore.EnvBackend: "redis", sessionstore.EnvURL: testRedisURL, sessionstore.EnvKeyPrefix: prefix, sessionstore.EnvLifetimeSeconds: "600"}

	r := run(t, ctx, Main, env, nil, "--output=json", "--batch-size=1")
	if r.code != ExitOK {
		t.Fatalf("want exit 0:\n%s", r)
	}
	res := decodeResult(t, "stdout", []byte(r.stdout))
	if res.Scanned != 3 || res.Deleted != 0 {
		t.Errorf("want 3 keys scanned and none deleted: %s", r.stdout)
	}
	if ttl := client.TTL(ctx, prefix+"b").Val(); ttl != -1 {
		t.Errorf("TTL changed without --fix-missing-ttl: %s", ttl)
	}

	r = run(t, ctx, Main, env, nil, "--fix-missing-ttl")
	if r.code != ExitOK {
		t.Fatalf("--fix-missing-ttl: want exit 0:\n%s", r)
	}
	for _, key := range []string{"b", "c"} {
		if ttl := client.TTL(ctx, prefix+key).Val(); ttl <= 0 || ttl > 600*time.Second {
			t.Errorf("key %s: TTL %s after --fix-missing-ttl, want the lifetime (600s)", key, ttl)
		}
	}
	if r := run(t, ctx, Check, env, nil); r.code != ExitOK || !strings.HasPrefix(r.stdout, "ok: redis") {
		t.Errorf("check:\n%s", r)
	}
}

func TestCleanupMemcached(t *testing.T) {
	requireServer(t, "memcached", "127.0.0.1:11211")
	mc := memcache.New("127.0.0.1:11211")
	if err := mc.Ping(); err != nil {
		t.Fatalf("memcached: %v (run hack/start-services.sh)", err)
	}
	env := map[string]string{sessionstore.EnvBackend: "memcached", sessionstore.EnvURL: testMemcacheURL}
	r := run(t, t.Context(), Main, env, nil, "--output=json")
	if r.code != ExitOK {
		t.Fatalf("want exit 0:\n%s", r)
	}
	if res := decodeResult(t, "stdout", []byte(r.stdout)); !res.NativeExpiry || res.Deleted != 0 {
		t.Errorf("memcached report should say the store expires by itself: %s", r.stdout)
	}
	if r := run(t, t.Context(), Check, env, nil); r.code != ExitOK {
		t.Errorf("check:\n%s", r)
	}
}

func TestCleanupPostgreSQL(t *testing.T) {
	requireServer(t, "postgresql", "127.0.0.1:5432")
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, testPostgresURL)
	if err != nil {
		t.Fatalf("postgresql: %v (run hack/start-services.sh)", err)
	}
	defer conn.Close(context.Background())
	table := "cmd_sessions_" + randomName(t)
	t.Cleanup(func() {
		conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize())
	})
	env := map[string]string{sessionstore.EnvBackend: "postgresql", sessionstore.EnvURL: testPostgresURL, sessionstore.EnvTable: table}

	// A missing table: check says so; with creation off it is an error.
	noCreate := map[string]string{sessionstore.EnvCreateTable: "false", sessionstore.EnvCreateExpiryIndex: "false"}
	for k, v := range env {
		noCreate[k] = v
	}
	if r := run(t, ctx, Check, noCreate, nil); r.code != ExitStoreFailed {
		t.Errorf("check, table missing and not to be created: want exit 1:\n%s", r)
	}
	if r := run(t, ctx, Check, env, nil); r.code != ExitOK || !strings.Contains(r.stdout, "missing") {
		t.Errorf("check, table missing but cleanup creates it: want exit 0 saying it is missing:\n%s", r)
	}
	var exists bool
	conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists)
	if exists {
		t.Fatal("check created the table")
	}

	// The first cleanup creates the table and reports it.
	r := run(t, ctx, Main, env, nil, "--output=json")
	if r.code != ExitOK {
		t.Fatalf("first cleanup: want exit 0:\n%s", r)
	}
	res := decodeResult(t, "stdout", []byte(r.stdout))
	if res.Schema == nil || !res.Schema.Present || len(res.Schema.Created) == 0 {
		t.Errorf("schema not reported as created: %s", r.stdout)
	}
	if !strings.Contains(r.stderr, "schema: created") {
		t.Errorf("stderr does not say what was created: %q", r.stderr)
	}

	quoted := pgx.Identifier{table}.Sanitize()
	_, err = conn.Exec(ctx, `INSERT INTO `+quoted+` (session_id, data, expiry) VALUES
		('session:old1', '\x00', (now() AT TIME ZONE 'UTC') - interval '1 hour'),
		('session:old2', '\x00', (now() AT TIME ZONE 'UTC') - interval '1 day'),
		('session:live', '\x00', (now() AT TIME ZONE 'UTC') + interval '1 hour'),
		('session:null', '\x00', NULL)`)
	if err != nil {
		t.Fatalf("insert into the created table: %v", err)
	}
	r = run(t, ctx, Main, env, nil, "--output=json", "--batch-size=1")
	if r.code != ExitOK {
		t.Fatalf("cleanup: want exit 0:\n%s", r)
	}
	res = decodeResult(t, "stdout", []byte(r.stdout))
	if res.Expired != 2 || res.Deleted != 2 {
		t.Errorf("want 2 expired rows deleted: %s", r.stdout)
	}
	var left []string
	rows, _ := conn.Query(ctx, "SELECT session_id FROM "+quoted+" ORDER BY session_id")
	for rows.Next() {
		var id string
		rows.Scan(&id)
		left = append(left, id)
	}
	if strings.Join(left, ",") != "session:live,session:null" {
		t.Errorf("rows left: %v", left)
	}
	if r := run(t, ctx, Check, env, nil); r.code != ExitOK || !strings.Contains(r.stdout, "ok: postgresql") {
		t.Errorf("check after cleanup:\n%s", r)
	}
}

func TestProgressIsLoggedFirstThenSpaced(t *testing.T) {
	var out bytes.Buffer
	boundaries := 0
	p := &progressLogger{out: &out, name: "cleanup", interval: time.Hour, atBatchEnd: func() { boundaries++ }}
	for i := 1; i <= 3; i++ {
		p.observe(sessionstore.Report{Batches: i, Scanned: int64(i * 10)})
	}
	if got := out.String(); got != "cleanup: progress: scanned 10, expired 0, deleted 0; 1 batch so far (0s)\n" {
		t.Errorf("want only the first batch logged within the interval, got %q", got)
	}
	if boundaries != 3 {
		t.Errorf("batch boundary seen %d times, want 3", boundaries)
	}
	// A backend that fails with an empty report still gets its progress reported.
	if r := p.complete(sessionstore.Report{}); r.Batches != 3 || r.Scanned != 30 {
		t.Errorf("complete: %+v", r)
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

func TestCleanupMongoDB(t *testing.T) {
	requireServer(t, "mongodb (FerretDB)", "127.0.0.1:27017")
	ctx := t.Context()
	client, err := mongo.Connect(options.Client().ApplyURI(testMongoURL))
	if err != nil {
		t.Fatalf("mongodb: %v", err)
	}
	defer client.Disconnect(context.Background())
	database := "cmd_" + randomName(t)
	t.Cleanup(func() { client.Database(database).Drop(context.Background()) })
	coll := client.Database(database).Collection("sessions")
	now := time.Now().UTC()
	_, err = coll.InsertMany(ctx, []any{
		bson.M{"id": "session:old", "val": []byte{0}, "expiration": now.Add(-time.Hour)},
		bson.M{"id": "session:live", "val": []byte{0}, "expiration": now.Add(time.Hour)},
		bson.M{"id": "session:none", "val": []byte{0}, "expiration": nil},
	})
	if err != nil {
		t.Fatalf("mongodb insert: %v (run hack/start-services.sh)", err)
	}
	env := map[string]string{sessionstore.EnvBackend: "mongodb", sessionstore.EnvURL: testMongoURL, sessionstore.EnvDatabase: database}
	r := run(t, ctx, Main, env, nil, "--output=json")
	if r.code != ExitOK {
		t.Fatalf("want exit 0:\n%s", r)
	}
	res := decodeResult(t, "stdout", []byte(r.stdout))
	if res.Deleted != 1 || res.Schema == nil {
		t.Errorf("want 1 deleted and the TTL index outcome reported: %s", r.stdout)
	}
	if n, _ := coll.CountDocuments(ctx, bson.M{}); n != 2 {
		t.Errorf("%d documents left, want 2", n)
	}
	if r := run(t, ctx, Check, env, nil); r.code != ExitOK || !strings.HasPrefix(r.stdout, "ok: mongodb") {
		t.Errorf("check:\n%s", r)
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
