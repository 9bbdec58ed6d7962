package sessionstore

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(key string) (string, bool) {
		v, ok := env[key]
		return v, ok
	}
}

func TestConfigFromEnvDefaults(t *testing.T) {
	cfg, err := ConfigFromEnv(lookupIn(map[string]string{EnvBackend: "postgresql", EnvURL: "postgres://h/db"}))
	if err != nil {
		t.Fatalf("ConfigFromEnv: %v", err)
	}
	want := Config{
		Backend:           "postgresql",
		URL:               "postgres://h/db",
		KeyPrefix:         "session:",
		Lifetime:          744 * time.Hour,
		Database:          "flask_session",
		Collection:        "sessions",
		Table:             "sessions",
		CreateTable:       true,
		CreateExpiryIndex: false,
		TTLIndex:          true,
		FixMissingTTL:     false,
		GracePeriod:       5 * time.Minute,
	}
	if cfg != want {
		t.Fatalf("defaults:\n got %+v\nwant %+v", cfg, want)
	}
}

func TestConfigFromEnvReadsEveryKey(t *testing.T) {
	env := map[string]string{
		EnvBackend:           "mongodb",
		EnvURL:               "mongodb://u:p@h:27017/",
		EnvKeyPrefix:         "app1:",
		EnvLifetimeSeconds:   "3600",
		EnvDatabase:          "db_1",
		EnvCollection:        "coll",
		EnvTable:             "tbl",
		EnvSchema:            "sch",
		EnvSequence:          "sessions_id_seq",
		EnvGraceSeconds:      "0",
		EnvDir:               "/var/sessions",
		EnvCreateTable:       "false",
		EnvCreateExpiryIndex: "false",
		EnvTTLIndex:          "false",
		EnvFixMissingTTL:     "true",
	}
	cfg, err := ConfigFromEnv(lookupIn(env))
	if err != nil {
		t.Fatalf("ConfigFromEnv: %v", err)
	}
	want := Config{
		Backend: "mongodb", URL: "mongodb://u:p@h:27017/", KeyPrefix: "app1:", Lifetime: time.Hour,
		Database: "db_1", Collection: "coll", Table: "tbl", Schema: "sch", Sequence: "sessions_id_seq", Dir: "/var/sessions",
		CreateTable: false, CreateExpiryIndex: false, TTLIndex: false, FixMissingTTL: true,
	}
	if cfg != want {
		t.Fatalf("\n got %+v\nwant %+v", cfg, want)
	}
}

func TestConfigFromEnvKeyPrefix(t *testing.T) {
	cfg, err := ConfigFromEnv(lookupIn(map[string]string{EnvKeyPrefix: ""}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.KeyPrefix != "" {
		t.Errorf("explicitly empty prefix: got %q, want empty (Flask-Session reads it as empty too)", cfg.KeyPrefix)
	}
	cfg, err = ConfigFromEnv(lookupIn(map[string]string{EnvKeyPrefix: " sp "}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.KeyPrefix != " sp " {
		t.Errorf("prefix must be used exactly as written: got %q", cfg.KeyPrefix)
	}
}

func TestConfigFromEnvTrimsNewlines(t *testing.T) {
	cfg, err := ConfigFromEnv(lookupIn(map[string]string{
		EnvBackend: "Redis\n", EnvURL: "redis://h:6379/0\n", EnvLifetimeSeconds: "120\n", EnvTTLIndex: "false\n",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Backend != "redis" || cfg.URL != "redis://h:6379/0" || cfg.Lifetime != 2*time.Minute || cfg.TTLIndex {
		t.Fatalf("got %+v", cfg)
	}
}

func TestConfigFromEnvDirFromFileURL(t *testing.T) {
	for _, tc := range []struct{ url, dir, want string }{
		{"file:///var/lib/sessions", "", "/var/lib/sessions"},
		{"file://localhost/var/lib/s%20x/", "", "/var/lib/s x"},
		{"file:///from/url", "/from/dir", "/from/dir"},
		{"", "", ""},
		{"redis://h/0", "", ""},
	} {
		cfg, err := ConfigFromEnv(lookupIn(map[string]string{EnvURL: tc.url, EnvDir: tc.dir}))
		if err != nil {
			t.Fatalf("url %q dir %q: %v", tc.url, tc.dir, err)
		}
		if cfg.Dir != tc.want {
			t.Errorf("url %q dir %q: Dir = %q, want %q", tc.url, tc.dir, cfg.Dir, tc.want)
		}
	}
	_, err := ConfigFromEnv(lookupIn(map[string]string{EnvURL: "file://otherhost/x"}))
	wantConfigError(t, err, EnvURL, "no host")
}

func TestConfigFromEnvParseErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		key, value string
	}{
		{EnvLifetimeSeconds, "1h"},
		{EnvLifetimeSeconds, "-5"},
		{EnvLifetimeSeconds, "99999999999999999999"},
		{EnvCreateTable, "yes please"},
		{EnvCreateExpiryIndex, "maybe"},
		{EnvTTLIndex, "2"},
		{EnvFixMissingTTL, "on"},
	} {
		_, err := ConfigFromEnv(lookupIn(map[string]string{tc.key: tc.value}))
		wantConfigError(t, err, tc.key, tc.value)
	}
}

func TestValidateAcceptsGoodConfigs(t *testing.T) {
	base := func(backend, url string) Config {
		cfg, err := ConfigFromEnv(lookupIn(map[string]string{EnvBackend: backend, EnvURL: url}))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	for _, cfg := range []Config{
		base("redis", "redis://127.0.0.1:6379/0"),
		base("redis", "rediss://:p%40ss@redis.example:6380"),
		base("redis", "unix:///run/redis.sock"),
		base("memcached", "memcached://127.0.0.1:11211"),
		base("memcached", "memcached://a:11211,b.example:11212,[::1]:11213/"),
		base("mongodb", "mongodb://user:p%2Fw@a:27017,b:27017/db?replicaSet=rs0"),
		base("mongodb", "mongodb+srv://cluster.example/"),
		base("postgresql", "postgres://u:pw@127.0.0.1:5432/test?sslmode=disable"),
		base("postgresql", "postgresql:///test?host=/run/postgresql"),
		base("filesystem", "file:///var/lib/flask_session"),
		base("mysql", "mysql://root@127.0.0.1:3306/test"),
		base("mysql", "mysql://u:p%40ss%3Aw%2Frd%3F%23@db.example/app_sessions-1?tls=verify-identity"),
		base("mysql", "mysql://u@[::1]:3307/test?tls=disabled"),
		{Backend: "mysql", URL: "mysql://h/db?tls=required", Table: "_t1", Sequence: "seq_1", Lifetime: time.Hour},
		{Backend: "filesystem", Dir: "/tmp/x", Lifetime: time.Minute},
		{Backend: "postgresql", URL: "postgres://h/db", Table: "_t1", Schema: "Public_2", Lifetime: time.Hour},
		{Backend: "postgresql", URL: "postgres://h/db", Table: strings.Repeat("t", 63), Lifetime: time.Hour},
		{Backend: "mongodb", URL: "mongodb://h", Database: "my-db_2", Collection: "c", Lifetime: time.Hour},
	} {
		if err := cfg.Validate(); err != nil {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}

func TestValidateRejectsAndNamesTheKey(t *testing.T) {
	pg := Config{Backend: "postgresql", URL: "postgres://h/db", Table: "sessions", Lifetime: time.Hour}
	mongo := Config{Backend: "mongodb", URL: "mongodb://h", Database: "flask_session", Collection: "sessions", Lifetime: time.Hour}
	my := Config{Backend: "mysql", URL: "mysql://h:3306/db", Table: "sessions", Lifetime: time.Hour}
	with := func(c Config, edit func(*Config)) Config { edit(&c); return c }
	for _, tc := range []struct {
		name    string
		cfg     Config
		key     string
		mention string
	}{
		{"no backend", Config{Lifetime: time.Hour}, EnvBackend, "not set"},
		{"unknown backend", Config{Backend: "dynamodb", Lifetime: time.Hour}, EnvBackend, "dynamodb"},
		{"short lifetime", with(pg, func(c *Config) { c.Lifetime = 59 * time.Second }), EnvLifetimeSeconds, "59"},
		{"redis no url", Config{Backend: "redis", Lifetime: time.Hour}, EnvURL, "not set"},
		{"redis wrong scheme", Config{Backend: "redis", URL: "http://h", Lifetime: time.Hour}, EnvURL, "http"},
		{"redis no host", Config{Backend: "redis", URL: "redis:///0", Lifetime: time.Hour}, EnvURL, "host"},
		{"redis bad db", Config{Backend: "redis", URL: "redis://h/zero", Lifetime: time.Hour}, EnvURL, "database number"},
		{"unix no path", Config{Backend: "redis", URL: "unix://", Lifetime: time.Hour}, EnvURL, "path"},
		{"redis fix ttl empty prefix", Config{Backend: "redis", URL: "redis://h", FixMissingTTL: true, Lifetime: time.Hour}, EnvKeyPrefix, "every key"},
		{"memcached no url", Config{Backend: "memcached", Lifetime: time.Hour}, EnvURL, "not set"},
		{"memcached wrong scheme", Config{Backend: "memcached", URL: "tcp://h:1", Lifetime: time.Hour}, EnvURL, "tcp"},
		{"memcached no port", Config{Backend: "memcached", URL: "memcached://h", Lifetime: time.Hour}, EnvURL, "host:port"},
		{"memcached bad port", Config{Backend: "memcached", URL: "memcached://h:1,h:99999", Lifetime: time.Hour}, EnvURL, "port"},
		{"memcached empty", Config{Backend: "memcached", URL: "memcached://", Lifetime: time.Hour}, EnvURL, "no server"},
		{"mongo wrong scheme", with(mongo, func(c *Config) { c.URL = "postgres://h" }), EnvURL, "postgres"},
		{"mongo no host", with(mongo, func(c *Config) { c.URL = "mongodb:///db" }), EnvURL, "host"},
		{"mongo bad database", with(mongo, func(c *Config) { c.Database = "a.b" }), EnvDatabase, `"a.b"`},
		{"mongo empty database", with(mongo, func(c *Config) { c.Database = "" }), EnvDatabase, "empty"},
		{"mongo long database", with(mongo, func(c *Config) { c.Database = strings.Repeat("d", 64) }), EnvDatabase, "63"},
		{"mongo bad collection", with(mongo, func(c *Config) { c.Collection = "sessions.x" }), EnvCollection, "plain identifier"},
		{"pg wrong scheme", with(pg, func(c *Config) { c.URL = "mysql://h/db" }), EnvURL, "mysql"},
		{"pg no url", with(pg, func(c *Config) { c.URL = "" }), EnvURL, "not set"},
		{"pg dsn", with(pg, func(c *Config) { c.URL = "host=h dbname=x" }), EnvURL, "postgres://"},
		{"pg bad table", with(pg, func(c *Config) { c.Table = "x;y" }), EnvTable, `"x;y" is not a plain identifier`},
		{"pg table digit", with(pg, func(c *Config) { c.Table = "1x" }), EnvTable, "plain identifier"},
		{"pg table quote", with(pg, func(c *Config) { c.Table = `a"b` }), EnvTable, "plain identifier"},
		{"pg long table", with(pg, func(c *Config) { c.Table = strings.Repeat("t", 64) }), EnvTable, "63"},
		{"pg empty table", with(pg, func(c *Config) { c.Table = "" }), EnvTable, "empty"},
		{"pg bad schema", with(pg, func(c *Config) { c.Schema = "public.x" }), EnvSchema, "plain identifier"},
		{"mysql no url", with(my, func(c *Config) { c.URL = "" }), EnvURL, "not set"},
		{"mysql wrong scheme", with(my, func(c *Config) { c.URL = "mariadb://h/db" }), EnvURL, "mariadb"},
		{"mysql sqlalchemy scheme", with(my, func(c *Config) { c.URL = "mysql+pymysql://h/db" }), EnvURL, "mysql+pymysql"},
		{"mysql upper-case scheme", with(my, func(c *Config) { c.URL = "MYSQL://h/db" }), EnvURL, "lower case"},
		{"mysql no host", with(my, func(c *Config) { c.URL = "mysql:///db" }), EnvURL, "host"},
		{"mysql bad port", with(my, func(c *Config) { c.URL = "mysql://h:70000/db" }), EnvURL, "65535"},
		{"mysql no database", with(my, func(c *Config) { c.URL = "mysql://h:3306" }), EnvURL, "no database"},
		{"mysql bad database", with(my, func(c *Config) { c.URL = "mysql://h/a.b" }), EnvURL, "plain name"},
		{"mysql bad tls", with(my, func(c *Config) { c.URL = "mysql://h/db?tls=true" }), EnvURL, "verify-identity"},
		{"mysql other parameter", with(my, func(c *Config) { c.URL = "mysql://h/db?parseTime=true" }), EnvURL, "no parameter but tls"},
		{"mysql schema", with(my, func(c *Config) { c.Schema = "app" }), EnvSchema, "database"},
		{"mysql bad table", with(my, func(c *Config) { c.Table = "x`y" }), EnvTable, "plain identifier"},
		{"mysql bad sequence", with(my, func(c *Config) { c.Sequence = "s;drop" }), EnvSequence, "plain identifier"},
		{"fs no dir", Config{Backend: "filesystem", Lifetime: time.Hour}, EnvDir, "not set"},
		{"fs relative dir", Config{Backend: "filesystem", Dir: "flask_session", Lifetime: time.Hour}, EnvDir, "absolute"},
		{"fs foreign url", Config{Backend: "filesystem", URL: "redis://h", Dir: "/x", Lifetime: time.Hour}, EnvURL, "file:///path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantConfigError(t, tc.cfg.Validate(), tc.key, tc.mention)
		})
	}
}

// The URL's credentials must never reach a message, whatever is wrong with it.
func TestValidateNeverEchoesURLCredentials(t *testing.T) {
	const secret = "Sup3rS3cret"
	for _, tc := range []struct{ backend, url string }{
		{"postgresql", "mysql://user:" + secret + "@h/db"},
		{"postgresql", "postgres://user:" + secret + "@h:5432:bad/db"},
		{"postgresql", "postgres://user:" + secret + "%zz@h/db"},
		{"postgresql", "user:" + secret + "@h/db"},
		{"redis", "http://:" + secret + "@h"},
		{"redis", "redis://:" + secret + "@/0"},
		{"redis", "redis://:" + secret + "@h/" + secret},
		{"redis", "redis://:" + secret + " @h"},
		{"mongodb", "mongo://u:" + secret + "@h"},
		{"mongodb", "mongodb://u:" + secret + "@/db"},
		{"memcached", "memcached://u:" + secret + "@h:1"},
		{"memcached", "memcache://u:" + secret + "@h:1"},
		{"memcached", "memcached://" + secret},
		{"filesystem", "s3://u:" + secret + "@bucket"},
		{"mysql", "mariadb://u:" + secret + "@h/db"},
		{"mysql", "mysql://u:" + secret + "@h:99999/db"},
		{"mysql", "mysql://u:" + secret + "@h/db?tls=" + secret},
		{"mysql", "mysql://u:" + secret + "@h/db?" + secret + "=1"},
		{"mysql", "mysql://u:" + secret + "@h/" + secret + ".x"},
		{"mysql", "mysql://u:" + secret + "%zz@h/db"},
	} {
		cfg := Config{Backend: tc.backend, URL: tc.url, Lifetime: time.Hour, Table: "t", Database: "d", Collection: "c", Dir: "/d"}
		err := cfg.Validate()
		if err == nil {
			t.Errorf("%s %q: accepted", tc.backend, tc.url)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: message leaks the credential: %v", tc.backend, err)
		}
		wantConfigError(t, err, EnvURL, "")
	}
}

func wantConfigError(t *testing.T, err error, key, mention string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error naming %s, got none", key)
	}
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("want *Error, got %T: %v", err, err)
	}
	if se.Kind != ErrConfig {
		t.Errorf("kind = %s, want %s (%v)", se.Kind, ErrConfig, err)
	}
	if se.Op != key || !strings.HasPrefix(err.Error(), key+": ") {
		t.Errorf("error does not name %s first: %v", key, err)
	}
	if !strings.Contains(err.Error(), mention) {
		t.Errorf("error %q does not mention %q", err, mention)
	}
}

// The cases on which config.go, the backends' constructors, the Secret
// builder and the CRD used to disagree; one rule each now, here.
func TestValidateOneRuleForOnceDisagreeingCases(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		mention string // "" when the config is good
	}{
		{"mongo upper-case scheme", Config{Backend: "mongodb", URL: "MONGODB://h"}, "lower case"},
		{"mongo+srv mixed case", Config{Backend: "mongodb", URL: "Mongodb+srv://h"}, "lower case"},
		{"postgres upper-case scheme", Config{Backend: "postgresql", URL: "POSTGRES://h/db"}, "lower case"},
		{"redis upper-case scheme", Config{Backend: "redis", URL: "REDIS://h:6379/0"}, "lower case"},
		{"memcached upper-case scheme", Config{Backend: "memcached", URL: "MEMCACHED://h:11211"}, "lower case"},
		{"memcached no port", Config{Backend: "memcached", URL: "memcached://cache"}, "host:port"},
		{"memcached ipv6 no port", Config{Backend: "memcached", URL: "memcached://[::1]"}, "host:port"},
		{"memcached port 0", Config{Backend: "memcached", URL: "memcached://h:0"}, "1 to 65535"},
		{"memcached port 65536", Config{Backend: "memcached", URL: "memcached://h:65536"}, "1 to 65535"},
		{"memcached slash in host", Config{Backend: "memcached", URL: "memcached://a/b:11211"}, "host:port"},
		{"memcached ipv6 with port", Config{Backend: "memcached", URL: "memcached://[::1]:11211"}, ""},
		{"redis fix ttl short lifetime", Config{Backend: "redis", URL: "redis://h", KeyPrefix: "s:", FixMissingTTL: true, Lifetime: 30 * time.Second}, "30"},
		{"redis port 0", Config{Backend: "redis", URL: "redis://h:0/0"}, "1 to 65535"},
		{"redis port 70000", Config{Backend: "redis", URL: "rediss://:pw@h:70000/0"}, "1 to 65535"},
		{"grace over the CRD's 24h", Config{Backend: "redis", URL: "redis://h", GracePeriod: 25 * time.Hour}, "24h"},
		{"grace of 24h", Config{Backend: "redis", URL: "redis://h", GracePeriod: 24 * time.Hour}, ""},
		{"grace of 0", Config{Backend: "redis", URL: "redis://h"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg.Lifetime == 0 {
				cfg.Lifetime = time.Hour
			}
			cfg.Database, cfg.Collection, cfg.Table = "flask_session", "sessions", "sessions"
			err := cfg.Validate()
			if tc.mention == "" {
				if err != nil {
					t.Fatalf("want accepted, got %v", err)
				}
				return
			}
			if err == nil || KindOf(err) != ErrConfig || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("want a config error mentioning %q, got %v", tc.mention, err)
			}
		})
	}
}

func TestMemcachedServersNormalises(t *testing.T) {
	got, err := MemcachedServers("memcached://a:11211,[::1]:11212/")
	if err != nil || strings.Join(got, " ") != "a:11211 [::1]:11212" {
		t.Fatalf("got %q, %v", got, err)
	}
}
