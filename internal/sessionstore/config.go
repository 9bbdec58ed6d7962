package sessionstore

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults of Flask-Session 0.8 (and Flask's PERMANENT_SESSION_LIFETIME), so a
// Secret that leaves a key out means what the app means by leaving it out.
const (
	DefaultKeyPrefix  = "session:"
	DefaultLifetime   = 31 * 24 * time.Hour
	DefaultDatabase   = "flask_session"
	DefaultCollection = "sessions"
	DefaultTable      = "sessions"

	// MinLifetime rejects lifetimes that are surely a unit mistake
	// (minutes or hours written as seconds would still pass, days would not).
	MinLifetime = time.Minute
	// MaxIdentifierLength is PostgreSQL's limit (NAMEDATALEN-1), applied to
	// every SQL/Mongo name so one rule covers all backends.
	MaxIdentifierLength = 63
)

var (
	cmdPlainIdentifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// MongoDB forbids /\. "$ and more in database names; this is the safe subset.
	cmdMongoDatabaseName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// ConfigFromEnv reads a Config from the connection Secret's keys (env.go)
// through lookup (os.LookupEnv, or a map in tests). A key that is absent or
// empty takes Flask-Session's default, except SESSION_STORE_KEY_PREFIX, where
// an explicitly empty value means an empty prefix, as it does to the app.
// It only parses; call Validate to check the result.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	get := func(key string) string {
		v, _ := lookup(key)
		// Secrets made with `echo value | base64` carry a trailing newline.
		return strings.TrimSpace(v)
	}
	cfg := Config{
		Backend:    strings.ToLower(get(EnvBackend)),
		URL:        get(EnvURL),
		KeyPrefix:  DefaultKeyPrefix,
		Lifetime:   DefaultLifetime,
		Database:   cmdOrDefault(get(EnvDatabase), DefaultDatabase),
		Collection: cmdOrDefault(get(EnvCollection), DefaultCollection),
		Table:      cmdOrDefault(get(EnvTable), DefaultTable),
		Schema:     get(EnvSchema),
		Dir:        get(EnvDir),
	}
	if v, ok := lookup(EnvKeyPrefix); ok {
		cfg.KeyPrefix = v
	}

	if v := get(EnvLifetimeSeconds); v != "" {
		seconds, err := strconv.ParseInt(v, 10, 64)
		if err != nil || seconds < 0 || seconds > math.MaxInt64/int64(time.Second) {
			return Config{}, cmdConfigError(EnvLifetimeSeconds, "%q is not a whole number of seconds", cmdShort(v))
		}
		cfg.Lifetime = time.Duration(seconds) * time.Second
	}

	bools := []struct {
		key  string
		dst  *bool
		dflt bool
	}{
		{EnvCreateTable, &cfg.CreateTable, true},
		{EnvCreateExpiryIndex, &cfg.CreateExpiryIndex, true},
		{EnvTTLIndex, &cfg.TTLIndex, true},
		{EnvFixMissingTTL, &cfg.FixMissingTTL, false},
	}
	for _, b := range bools {
		*b.dst = b.dflt
		v := get(b.key)
		if v == "" {
			continue
		}
		parsed, err := strconv.ParseBool(v)
		if err != nil {
			return Config{}, cmdConfigError(b.key, "%q is not true or false", cmdShort(v))
		}
		*b.dst = parsed
	}

	if cfg.Dir == "" && cmdHasScheme(cfg.URL, "file") {
		dir, err := cmdDirFromFileURL(cfg.URL)
		if err != nil {
			return Config{}, err
		}
		cfg.Dir = dir
	}
	return cfg, nil
}

// ConfigFromMap is ConfigFromEnv over a map of those keys, such as the
// environment a cleanup pod gets, which the controller probes with.
func ConfigFromMap(env map[string]string) (Config, error) {
	return ConfigFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
}

// Validate checks that c holds what its backend needs. The error is an
// *Error of kind ErrConfig whose Op is the env key at fault; it never quotes
// the URL or any part of it but its scheme, since it may hold a password.
func (c Config) Validate() error {
	if c.Backend == "" {
		return cmdConfigError(EnvBackend, "not set (want one of %s)", strings.Join(Backends, ", "))
	}
	if !slices.Contains(Backends, c.Backend) {
		return cmdConfigError(EnvBackend, "%q is not a known backend (want one of %s)", cmdShort(c.Backend), strings.Join(Backends, ", "))
	}
	if c.Lifetime < MinLifetime {
		return cmdConfigError(EnvLifetimeSeconds, "%d is under the minimum of %d seconds", int64(c.Lifetime/time.Second), int64(MinLifetime/time.Second))
	}

	switch c.Backend {
	case BackendRedis:
		if err := cmdValidateRedisURL(c.URL); err != nil {
			return err
		}
		// SCAN MATCH "*" with a TTL fix would touch every key of the
		// database, not only sessions.
		if c.FixMissingTTL && c.KeyPrefix == "" {
			return cmdConfigError(EnvKeyPrefix, "empty, so fixing missing TTLs would touch every key in the database; set the prefix the app uses")
		}
	case BackendMemcached:
		if err := cmdValidateMemcachedURL(c.URL); err != nil {
			return err
		}
	case BackendMongoDB:
		if err := cmdValidateMongoURL(c.URL); err != nil {
			return err
		}
		return cmdValidateMongoNames(c.Database, c.Collection)
	case BackendPostgreSQL:
		if err := cmdValidatePostgresURL(c.URL); err != nil {
			return err
		}
		return cmdValidatePostgresNames(c.Table, c.Schema)
	case BackendFilesystem:
		_, err := cmdFilesystemDir(c)
		return err
	}
	return nil
}

// The name and directory checks below are shared by Validate and the
// backends' constructors, so a Config built in code is held to the same
// rules as one read from the Secret.

func cmdValidateMongoNames(database, collection string) error {
	if err := cmdValidateName(EnvDatabase, database, cmdMongoDatabaseName, "a plain database name (letters, digits, _ and -)"); err != nil {
		return err
	}
	return cmdValidateName(EnvCollection, collection, cmdPlainIdentifier, "a plain identifier")
}

// cmdValidatePostgresNames accepts only plain identifiers; they are quoted
// in SQL as well, but a name that needs quoting is almost surely a mistake
// or an attack.
func cmdValidatePostgresNames(table, schema string) error {
	if err := cmdValidateName(EnvTable, table, cmdPlainIdentifier, "a plain identifier"); err != nil {
		return err
	}
	if schema == "" {
		return nil
	}
	return cmdValidateName(EnvSchema, schema, cmdPlainIdentifier, "a plain identifier")
}

// cmdFilesystemDir is the session directory c names: SESSION_STORE_DIR, or
// the path of a file:/// URL.
func cmdFilesystemDir(c Config) (string, error) {
	if c.URL != "" && !cmdHasScheme(c.URL, "file") {
		return "", cmdConfigError(EnvURL, "the filesystem backend takes no URL, or a file:///path one")
	}
	dir := c.Dir
	if dir == "" && c.URL != "" {
		var err error
		if dir, err = cmdDirFromFileURL(c.URL); err != nil {
			return "", err
		}
	}
	if dir == "" {
		return "", cmdConfigError(EnvDir, "not set (or give %s as file:///path)", EnvURL)
	}
	if !filepath.IsAbs(dir) {
		return "", cmdConfigError(EnvDir, "%q is not an absolute path", cmdShort(dir))
	}
	return dir, nil
}

func cmdValidateName(key, value string, pattern *regexp.Regexp, what string) error {
	if value == "" {
		return cmdConfigError(key, "empty")
	}
	if len(value) > MaxIdentifierLength {
		return cmdConfigError(key, "%q is longer than %d characters", cmdShort(value), MaxIdentifierLength)
	}
	if !pattern.MatchString(value) {
		return cmdConfigError(key, "%q is not %s", cmdShort(value), what)
	}
	return nil
}

func cmdValidateRedisURL(raw string) error {
	u, err := cmdParseURL(raw, "redis://, rediss:// or unix://", "redis", "rediss", "unix")
	if err != nil {
		return err
	}
	if u.Scheme == "unix" {
		if u.Path == "" {
			return cmdConfigError(EnvURL, "a unix:// URL needs the socket's path (unix:///path/to/redis.sock)")
		}
		return nil
	}
	if u.Hostname() == "" {
		return cmdConfigError(EnvURL, "no host in the %s:// URL", u.Scheme)
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 {
			return cmdConfigError(EnvURL, "the path of a %s:// URL must be the database number (%s://host:6379/0)", u.Scheme, u.Scheme)
		}
	}
	return nil
}

func cmdValidatePostgresURL(raw string) error {
	// The host may be empty: postgres:///db?host=/run/postgresql uses a socket.
	_, err := cmdParseURL(raw, "postgres:// or postgresql://", "postgres", "postgresql")
	return err
}

func cmdValidateMongoURL(raw string) error {
	if raw == "" {
		return cmdConfigError(EnvURL, "not set")
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	scheme = strings.ToLower(scheme)
	if !ok || (scheme != "mongodb" && scheme != "mongodb+srv") {
		return cmdConfigError(EnvURL, "%s; want mongodb:// or mongodb+srv://", cmdDescribeScheme(raw))
	}
	// A seed list ("a:1,b:2") is not something net/url parses, so only look
	// for hosts between the credentials and the path.
	hosts, _, _ := strings.Cut(rest, "/")
	hosts, _, _ = strings.Cut(hosts, "?")
	if at := strings.LastIndex(hosts, "@"); at >= 0 {
		hosts = hosts[at+1:]
	}
	if hosts == "" {
		return cmdConfigError(EnvURL, "no host in the %s:// URL", scheme)
	}
	return nil
}

// cmdValidateMemcachedURL accepts memcached://host:port[,host:port...], the
// server list the memcached client takes; memcached has no credentials.
func cmdValidateMemcachedURL(raw string) error {
	if raw == "" {
		return cmdConfigError(EnvURL, "not set")
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || strings.ToLower(scheme) != "memcached" {
		return cmdConfigError(EnvURL, "%s; want memcached://host:port[,host:port...]", cmdDescribeScheme(raw))
	}
	if strings.Contains(rest, "@") {
		return cmdConfigError(EnvURL, "memcached takes no user or password in its URL")
	}
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" {
		return cmdConfigError(EnvURL, "no server in the memcached:// URL; want memcached://host:port[,host:port...]")
	}
	// Messages count servers rather than quote them: no part of a URL is echoed.
	servers := strings.Split(rest, ",")
	for i, server := range servers {
		host, port, err := net.SplitHostPort(server)
		if err != nil || host == "" {
			return cmdConfigError(EnvURL, "server %d of %d is not host:port", i+1, len(servers))
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return cmdConfigError(EnvURL, "server %d of %d has no valid port", i+1, len(servers))
		}
	}
	return nil
}

// cmdParseURL parses raw and checks its scheme without ever quoting raw
// (url.Parse's own errors repeat the URL, password included).
func cmdParseURL(raw, want string, schemes ...string) (*url.URL, error) {
	if raw == "" {
		return nil, cmdConfigError(EnvURL, "not set")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, cmdConfigError(EnvURL, "not a valid URL (percent-encode any special characters in the user name and password); want %s", want)
	}
	if !slices.Contains(schemes, strings.ToLower(u.Scheme)) {
		return nil, cmdConfigError(EnvURL, "%s; want %s", cmdDescribeScheme(raw), want)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	return u, nil
}

func cmdDirFromFileURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", cmdConfigError(EnvURL, "not a valid file:///path URL")
	}
	if u.Host != "" && u.Host != "localhost" {
		return "", cmdConfigError(EnvURL, "a file:// URL names a local directory: file:///path, with no host")
	}
	if u.Path == "" {
		return "", cmdConfigError(EnvURL, "a file:// URL needs a path: file:///path")
	}
	return filepath.Clean(u.Path), nil
}

// cmdDescribeScheme names the scheme of raw for a message; it is safe to
// show because it ends before any credentials.
func cmdDescribeScheme(raw string) string {
	scheme, _, ok := strings.Cut(raw, "://")
	if !ok || scheme == "" || !cmdPlainScheme(scheme) {
		return "not a URL with a scheme"
	}
	return fmt.Sprintf("scheme %q is not supported", strings.ToLower(scheme))
}

func cmdPlainScheme(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.') {
			return false
		}
	}
	return len(s) <= 20
}

func cmdHasScheme(raw, scheme string) bool {
	s, _, ok := strings.Cut(raw, "://")
	return ok && strings.EqualFold(s, scheme)
}

func cmdOrDefault(v, dflt string) string {
	if v == "" {
		return dflt
	}
	return v
}

// cmdShort keeps a quoted value in a message to a readable length.
func cmdShort(v string) string {
	const limit = 80
	if len(v) <= limit {
		return v
	}
	return v[:limit] + "..."
}

func cmdConfigError(key, format string, args ...any) error {
	return newError(ErrConfig, key, fmt.Errorf(format, args...))
}
