package cleanupcmd

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

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
		CreateTable: true, CreateExpiryIndex: false, TTLIndex: true, FixMissingTTL: false,
		GracePeriod: sessionstore.DefaultGracePeriod,
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

// badConfigCase is a configuration that cleanup or check must refuse.
type badConfigCase struct {
	name string
	cmd  subcommand
	env  map[string]string
	args []string
	// wantLine is the whole stderr line after "<subcommand>: ".
	wantLine string
}

func badConfigCases() []badConfigCase {
	dir := os.TempDir()
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
	return []badConfigCase{
		{"table from env", Main, with(pg, sessionstore.EnvTable, "x;y"), nil,
			`SESSION_STORE_TABLE: "x;y" is not a plain identifier`},
		{"table from flag", Main, pg, []string{"--table", "x;y"},
			`--table: "x;y" is not a plain identifier`},
		{"no backend", Main, map[string]string{}, nil,
			"SESSION_STORE_BACKEND: not set (want one of redis, memcached, mongodb, postgresql, mysql, filesystem)"},
		{"unknown backend flag", Main, pg, []string{"--backend=dynamodb"},
			`--backend: "dynamodb" is not a known backend (want one of redis, memcached, mongodb, postgresql, mysql, filesystem)`},
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
	}
}

func TestBadConfigurationExits2NamingTheKey(t *testing.T) {
	for _, tc := range badConfigCases() {
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

// The grace period comes from SESSION_STORE_GRACE_SECONDS (5m when absent,
// 0 allowed) or --grace, and the test-only clock offset from its env key or
// --clock-offset; both reach the invocation that builds CleanupOptions.
func TestGraceAndClockOffsetFlags(t *testing.T) {
	fs := fsEnv("/sessions")
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range fs {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		grace  time.Duration
		offset time.Duration
	}{
		{"defaults", fs, nil, 5 * time.Minute, 0},
		{"env grace 0", with(sessionstore.EnvGraceSeconds, "0"), nil, 0, 0},
		{"env grace", with(sessionstore.EnvGraceSeconds, "120"), nil, 2 * time.Minute, 0},
		{"flag wins", with(sessionstore.EnvGraceSeconds, "120"), []string{"--grace=30s"}, 30 * time.Second, 0},
		{"flag grace 0", fs, []string{"--grace", "0"}, 0, 0},
		{"env offset", with(EnvTestClockOffset, "-2h"), nil, 5 * time.Minute, -2 * time.Hour},
		{"flag offset wins", with(EnvTestClockOffset, "-2h"), []string{"--clock-offset=90s"}, 5 * time.Minute, 90 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			inv, code, done := start("cleanup", tc.args, envOf(tc.env), &out, &errOut)
			if done {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			if inv.cfg.GracePeriod != tc.grace || inv.clockOffset != tc.offset {
				t.Errorf("grace %s offset %s, want %s %s", inv.cfg.GracePeriod, inv.clockOffset, tc.grace, tc.offset)
			}
		})
	}
}

func TestBadGraceAndClockOffsetExit2(t *testing.T) {
	for _, tc := range []struct {
		env      map[string]string
		args     []string
		wantLine string
	}{
		{fsEnv("/s"), []string{"--grace=-1s"}, "--grace: -1s is not between 0 and 24h0m0s"},
		{fsEnv("/s"), []string{"--grace=25h"}, "--grace: 25h0m0s is not between 0 and 24h0m0s"},
		{map[string]string{sessionstore.EnvBackend: "filesystem", sessionstore.EnvDir: "/s", sessionstore.EnvGraceSeconds: "5m"}, nil,
			`SESSION_STORE_GRACE_SECONDS: "5m" is not a whole number of seconds`},
		{map[string]string{sessionstore.EnvBackend: "filesystem", sessionstore.EnvDir: "/s", EnvTestClockOffset: "2 hours"}, nil,
			`SESSION_STORE_TEST_CLOCK_OFFSET: "2 hours" is not a duration such as -2h or 90s`},
		{fsEnv("/s"), []string{"--clock-offset=soon"}, `--clock-offset: "soon" is not a duration such as -2h or 90s`},
	} {
		r := run(t, t.Context(), Main, tc.env, nil, tc.args...)
		if r.code != ExitBadConfig || r.stderr != "cleanup: "+tc.wantLine+"\n" {
			t.Errorf("want exit 2 and %q:\n%s", tc.wantLine, r)
		}
	}
}

func TestHelpShowsGraceHidesClockOffset(t *testing.T) {
	r := run(t, t.Context(), Main, nil, nil, "-h")
	if r.code != ExitOK || !strings.Contains(r.stdout, "-grace duration") || !strings.Contains(r.stdout, sessionstore.EnvGraceSeconds) {
		t.Fatalf("help does not show --grace:\n%s", r)
	}
	if strings.Contains(r.stdout, "clock-offset") {
		t.Errorf("help shows the test-only --clock-offset:\n%s", r.stdout)
	}
	if r := run(t, t.Context(), Check, nil, nil, "-h"); strings.Contains(r.stdout, "-grace") {
		t.Errorf("check, which deletes nothing, offers --grace:\n%s", r.stdout)
	}
}

// Config.Validate (what cleanup and the Secret builder call) and each
// backend's constructor accept and refuse the same URLs: one set of rules.
func TestValidateAndConstructorsAgree(t *testing.T) {
	for _, cfg := range []sessionstore.Config{
		{Backend: "memcached", URL: "memcached://127.0.0.1"},
		{Backend: "memcached", URL: "memcached://127.0.0.1:11211"},
		{Backend: "memcached", URL: "memcached://[::1]:11211,cache:11212"},
		{Backend: "memcached", URL: "memcached://127.0.0.1:0"},
		{Backend: "memcached", URL: "Memcached://127.0.0.1:11211"},
		{Backend: "mongodb", URL: "MONGODB://h:27017/"},
		{Backend: "mongodb", URL: "mongodb://h:27017/"},
		{Backend: "mongodb", URL: "mongodb:///db"},
		{Backend: "mongodb", URL: "mongodb+srv://cluster.example/"},
		{Backend: "redis", URL: "REDIS://h:6379/0"},
		{Backend: "redis", URL: "redis://h:6379/x"},
		{Backend: "redis", URL: "redis://h:6379/0"},
		{Backend: "redis", URL: "redis://h:6379/0", FixMissingTTL: true},
		{Backend: "redis", URL: "redis://h:6379/0", FixMissingTTL: true, KeyPrefix: "s:", Lifetime: 30 * time.Second},
	} {
		if cfg.Lifetime == 0 {
			cfg.Lifetime = time.Hour
		}
		cfg.Database, cfg.Collection = sessionstore.DefaultDatabase, sessionstore.DefaultCollection
		validateErr := cfg.Validate()
		store, newErr := sessionstore.New(cfg)
		if store != nil {
			store.Close()
		}
		if (validateErr == nil) != (newErr == nil) {
			t.Errorf("%s %q: Validate says %v, the constructor %v", cfg.Backend, cfg.URL, validateErr, newErr)
		}
	}
}
