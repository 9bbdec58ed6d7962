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
	// DefaultGracePeriod covers the clock skew NTP-synced machines have,
	// and then some; spec.cleanup.gracePeriod sets it per store.
	DefaultGracePeriod = 5 * time.Minute
	// MaxGracePeriod is the CRD's limit on spec.cleanup.gracePeriod.
	MaxGracePeriod = 24 * time.Hour

	// MinLifetime rejects lifetimes that are surely a unit mistake
	// (minutes or hours written as seconds would still pass, days would not).
	MinLifetime = time.Minute
	// MaxIdentifierLength is PostgreSQL's limit (NAMEDATALEN-1), applied to
	// every SQL/Mongo name so one rule covers all backends.
	MaxIdentifierLength = 63
)

var (
	plainIdentifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// MongoDB forbids /\. "$ and more in database names; this is the safe subset.
	mongoDatabaseName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
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
		Database:   orDefault(get(EnvDatabase), DefaultDatabase),
		Collection: orDefault(get(EnvCollection), DefaultCollection),
		Table:      orDefault(get(EnvTable), DefaultTable),
		Schema:     get(EnvSchema),
		Sequence:   get(EnvSequence),
		Dir:        get(EnvDir),
	}
	if v, ok := lookup(EnvKeyPrefix); ok {
		cfg.KeyPrefix = v
	}

	var err error
	if cfg.Lifetime, err = secondsFrom(get, EnvLifetimeSeconds, DefaultLifetime); err != nil {
		return Config{}, err
	}
	if cfg.GracePeriod, err = secondsFrom(get, EnvGraceSeconds, DefaultGracePeriod); err != nil {
		return Config{}, err
	}

	if err := readBools(get, &cfg); err != nil {
		return Config{}, err
	}
	if cfg.Dir == "" && hasScheme(cfg.URL, "file") {
		dir, err := dirFromFileURL(cfg.URL)
		if err != nil {
			return Config{}, err
		}
		cfg.Dir = dir
	}
	return cfg, nil
}

// readBools reads the "true"/"false" keys into cfg, each with its default.
func readBools(get func(string) string, cfg *Config) error {
	bools := []struct {
		key  string
		dst  *bool
		dflt bool
	}{
		{EnvCreateTable, &cfg.CreateTable, true},
		// Off by default: the cleanup walks by ctid and never uses it,
		// while every session write pays for it.
		{EnvCreateExpiryIndex, &cfg.CreateExpiryIndex, false},
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
			return configError(b.key, "%q is not true or false", shorten(v))
		}
		*b.dst = parsed
	}
	return nil
}

// secondsFrom reads key as a whole, non-negative number of seconds, or
// dflt when it is absent.
func secondsFrom(get func(string) string, key string, dflt time.Duration) (time.Duration, error) {
	v := get(key)
	if v == "" {
		return dflt, nil
	}
	seconds, err := strconv.ParseInt(v, 10, 64)
	if err != nil || seconds < 0 || seconds > math.MaxInt64/int64(time.Second) {
		return 0, configError(key, "%q is not a whole number of seconds", shorten(v))
	}
	return time.Duration(seconds) * time.Second, nil
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
		return configError(EnvBackend, "not set (want one of %s)", strings.Join(Backends, ", "))
	}
	if !slices.Contains(Backends, c.Backend) {
		return configError(EnvBackend, "%q is not a known backend (want one of %s)", shorten(c.Backend), strings.Join(Backends, ", "))
	}
	if c.GracePeriod < 0 || c.GracePeriod > MaxGracePeriod {
		return configError(EnvGraceSeconds, "%s is not between 0 and %s", c.GracePeriod, MaxGracePeriod)
	}
	if c.Lifetime < MinLifetime {
		return configError(EnvLifetimeSeconds, "%d is under the minimum of %d seconds", int64(c.Lifetime/time.Second), int64(MinLifetime/time.Second))
	}

	switch c.Backend {
	case BackendRedis:
		if err := ValidateRedisURL(c.URL); err != nil {
			return err
		}
		return ValidateFixMissingTTL(c)
	case BackendMemcached:
		_, err := MemcachedServers(c.URL)
		return err
	case BackendMongoDB:
		if err := ValidateMongoURL(c.URL); err != nil {
			return err
		}
		return ValidateMongoNames(c.Database, c.Collection)
	case BackendPostgreSQL:
		if err := ValidatePostgresURL(c.URL); err != nil {
			return err
		}
		if err := ValidatePostgresNames(c.Table, c.Schema); err != nil {
			return err
		}
		if c.Sequence != "" {
			return validateName(EnvSequence, c.Sequence, plainIdentifier, "a plain identifier")
		}
	case BackendMySQL:
		return validateMySQL(c)
	case BackendFilesystem:
		_, err := c.FilesystemDir()
		return err
	}
	return nil
}

func validateMySQL(c Config) error {
	if _, err := ParseMySQLURL(c.URL); err != nil {
		return err
	}
	if err := ValidateMySQLNames(c.Table, c.Schema); err != nil {
		return err
	}
	if c.Sequence != "" {
		return validateName(EnvSequence, c.Sequence, plainIdentifier, "a plain identifier")
	}
	return nil
}

// The URL, name and directory checks below are shared by Validate and the
// backends' constructors, so a Config built in code is held to the same
// rules as one read from the Secret. URL schemes are matched exactly, in
// lower case, for every backend: pgx, the MongoDB drivers and pymongo
// compare them that way, so "MONGODB://" would pass here and fail there.

// ValidateFixMissingTTL refuses a Redis TTL fix with an empty prefix: SCAN
// MATCH "*" would then touch every key of the database, not only sessions.
func ValidateFixMissingTTL(c Config) error {
	if !c.FixMissingTTL {
		return nil
	}
	if c.KeyPrefix == "" {
		return configError(EnvKeyPrefix, "empty, so fixing missing TTLs would touch every key in the database; set the prefix the app uses")
	}
	if c.Lifetime < MinLifetime {
		return configError(EnvLifetimeSeconds, "fixing missing TTLs needs a session lifetime of at least %d seconds", int64(MinLifetime/time.Second))
	}
	return nil
}

func ValidateMongoNames(database, collection string) error {
	if err := validateName(EnvDatabase, database, mongoDatabaseName, "a plain database name (letters, digits, _ and -)"); err != nil {
		return err
	}
	return validateName(EnvCollection, collection, plainIdentifier, "a plain identifier")
}

// ValidatePostgresNames accepts only plain identifiers; they are quoted
// in SQL as well, but a name that needs quoting is almost surely a mistake
// or an attack.
func ValidatePostgresNames(table, schema string) error {
	if err := validateName(EnvTable, table, plainIdentifier, "a plain identifier"); err != nil {
		return err
	}
	if schema == "" {
		return nil
	}
	return validateName(EnvSchema, schema, plainIdentifier, "a plain identifier")
}

// ValidateMySQLNames accepts a plain table name and no schema: a MySQL
// schema is its database, which the URL names.
func ValidateMySQLNames(table, schema string) error {
	if schema != "" {
		return configError(EnvSchema, "not used by mysql, whose schema is the database the URL names (mysql://host:3306/database)")
	}
	return validateName(EnvTable, table, plainIdentifier, "a plain identifier")
}

// MySQL TLS modes, as spec.mysql.tls and the tls parameter of a mysql://
// URL name them (MySQL's own --ssl-mode values, in lower case).
const (
	MySQLTLSDisabled       = "disabled"
	MySQLTLSPreferred      = "preferred"
	MySQLTLSRequired       = "required"
	MySQLTLSVerifyIdentity = "verify-identity"
)

// MySQLTLSModes lists the TLS modes a mysql:// URL may ask for.
var MySQLTLSModes = []string{MySQLTLSDisabled, MySQLTLSPreferred, MySQLTLSRequired, MySQLTLSVerifyIdentity}

// MySQLURL is what a mysql://user:password@host:port/database?tls=mode URL
// says, decoded.
type MySQLURL struct {
	User, Password string
	HasPassword    bool
	Host           string
	Port           int
	Database       string
	// TLS is one of MySQLTLSModes; preferred when the URL does not say.
	TLS string
}

// mysqlDatabaseName is the safe subset of MySQL's database names.
var mysqlDatabaseName = regexp.MustCompile(`^[A-Za-z0-9_$-]+$`)

// ParseMySQLURL reads mysql://user:password@host[:port]/database[?tls=mode],
// credentials percent-encoded. It is strict, since the Go driver and
// SQLAlchemy must read the same thing from it: one host, a database, and no
// parameter but tls. Messages never quote the URL.
func ParseMySQLURL(raw string) (MySQLURL, error) {
	u, err := ParseURL(raw, "mysql://user:password@host:3306/database", "mysql")
	if err != nil {
		return MySQLURL{}, err
	}
	m := MySQLURL{Host: u.Hostname(), Port: 3306, TLS: MySQLTLSPreferred}
	if m.Host == "" || strings.Contains(u.Host, ",") {
		return MySQLURL{}, configError(EnvURL, "want one host in the mysql:// URL")
	}
	if port := u.Port(); port != "" {
		if m.Port, err = strconv.Atoi(port); err != nil || m.Port < 1 || m.Port > 65535 {
			return MySQLURL{}, configError(EnvURL, "the port of the mysql:// URL is not from 1 to 65535")
		}
	}
	if u.User != nil {
		m.User = u.User.Username()
		m.Password, m.HasPassword = u.User.Password()
	}
	m.Database = strings.TrimPrefix(u.Path, "/")
	if m.Database == "" {
		return MySQLURL{}, configError(EnvURL, "no database in the mysql:// URL (mysql://host:3306/database)")
	}
	if len(m.Database) > 64 || !mysqlDatabaseName.MatchString(m.Database) {
		return MySQLURL{}, configError(EnvURL, "the database of the mysql:// URL is not a plain name (letters, digits, _, $ and -, at most 64)")
	}
	return m, mysqlURLQuery(u.Query(), &m)
}

func mysqlURLQuery(query url.Values, m *MySQLURL) error {
	for key, values := range query {
		if key != "tls" {
			// The parameter is not named: a URL's every part may be a secret.
			return configError(EnvURL, "the mysql:// URL takes no parameter but tls (%s)", strings.Join(MySQLTLSModes, ", "))
		}
		if len(values) != 1 || !slices.Contains(MySQLTLSModes, values[0]) {
			return configError(EnvURL, "the tls parameter of the mysql:// URL must be one of %s", strings.Join(MySQLTLSModes, ", "))
		}
		m.TLS = values[0]
	}
	return nil
}

// FilesystemDir is the session directory c names: SESSION_STORE_DIR, or
// the path of a file:/// URL.
func (c Config) FilesystemDir() (string, error) {
	if c.URL != "" && !hasScheme(c.URL, "file") {
		return "", configError(EnvURL, "the filesystem backend takes no URL, or a file:///path one")
	}
	dir := c.Dir
	if dir == "" && c.URL != "" {
		var err error
		if dir, err = dirFromFileURL(c.URL); err != nil {
			return "", err
		}
	}
	if dir == "" {
		return "", configError(EnvDir, "not set (or give %s as file:///path)", EnvURL)
	}
	if !filepath.IsAbs(dir) {
		return "", configError(EnvDir, "%q is not an absolute path", shorten(dir))
	}
	return dir, nil
}

func validateName(key, value string, pattern *regexp.Regexp, what string) error {
	if value == "" {
		return configError(key, "empty")
	}
	if len(value) > MaxIdentifierLength {
		return configError(key, "%q is longer than %d characters", shorten(value), MaxIdentifierLength)
	}
	if !pattern.MatchString(value) {
		return configError(key, "%q is not %s", shorten(value), what)
	}
	return nil
}

// ValidateRedisURL accepts redis://host[:port][/db], rediss:// and
// unix:///path, as go-redis and redis-py read them.
func ValidateRedisURL(raw string) error {
	u, err := ParseURL(raw, "redis://, rediss:// or unix://", "redis", "rediss", "unix")
	if err != nil {
		return err
	}
	if u.Scheme == "unix" {
		if u.Path == "" {
			return configError(EnvURL, "a unix:// URL needs the socket's path (unix:///path/to/redis.sock)")
		}
		return nil
	}
	if u.Hostname() == "" {
		return configError(EnvURL, "no host in the %s:// URL", u.Scheme)
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return configError(EnvURL, "the port of the %s:// URL is not from 1 to 65535", u.Scheme)
		}
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 {
			return configError(EnvURL, "the path of a %s:// URL must be the database number (%s://host:6379/0)", u.Scheme, u.Scheme)
		}
	}
	return nil
}

// ValidatePostgresURL accepts postgres:// and postgresql:// URLs (not
// libpq's key=value strings, which SQLAlchemy does not take).
func ValidatePostgresURL(raw string) error {
	// The host may be empty: postgres:///db?host=/run/postgresql uses a socket.
	_, err := ParseURL(raw, "postgres:// or postgresql://", "postgres", "postgresql")
	return err
}

// ValidateMongoURL accepts mongodb:// and mongodb+srv:// URIs with a host.
func ValidateMongoURL(raw string) error {
	if raw == "" {
		return configError(EnvURL, "not set")
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || (scheme != "mongodb" && scheme != "mongodb+srv") {
		return configError(EnvURL, "%s; want mongodb:// or mongodb+srv://", describeScheme(raw, "mongodb", "mongodb+srv"))
	}
	// A seed list ("a:1,b:2") is not something net/url parses, so only look
	// for hosts between the credentials and the path.
	hosts, _, _ := strings.Cut(rest, "/")
	hosts, _, _ = strings.Cut(hosts, "?")
	if at := strings.LastIndex(hosts, "@"); at >= 0 {
		hosts = hosts[at+1:]
	}
	if hosts == "" {
		return configError(EnvURL, "no host in the %s:// URL", scheme)
	}
	return nil
}

// MemcachedServers reads memcached://host:port[,host:port...], the server
// list the memcached client takes, and returns the host:port of each. Every
// server needs its port (1 to 65535), as spec.memcached.servers does;
// memcached has no credentials. Messages count servers rather than quote
// them: no part of a URL is echoed.
func MemcachedServers(raw string) ([]string, error) {
	if raw == "" {
		return nil, configError(EnvURL, "not set")
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || scheme != "memcached" {
		return nil, configError(EnvURL, "%s; want memcached://host:port[,host:port...]", describeScheme(raw, "memcached"))
	}
	if strings.Contains(rest, "@") {
		return nil, configError(EnvURL, "memcached takes no user or password in its URL")
	}
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" {
		return nil, configError(EnvURL, "no server in the memcached:// URL; want memcached://host:port[,host:port...]")
	}
	parts := strings.Split(rest, ",")
	servers := make([]string, 0, len(parts))
	for i, server := range parts {
		host, port, err := net.SplitHostPort(server)
		if err != nil || host == "" || strings.ContainsAny(host, "/[] \t") {
			return nil, configError(EnvURL, "server %d of %d is not host:port", i+1, len(parts))
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, configError(EnvURL, "server %d of %d has no valid port (1 to 65535)", i+1, len(parts))
		}
		servers = append(servers, net.JoinHostPort(host, port))
	}
	return servers, nil
}

// ParseURL parses raw and checks its scheme without ever quoting raw
// (url.Parse's own errors repeat the URL, password included).
func ParseURL(raw, want string, schemes ...string) (*url.URL, error) {
	if raw == "" {
		return nil, configError(EnvURL, "not set")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, configError(EnvURL, "not a valid URL (percent-encode any special characters in the user name and password); want %s", want)
	}
	// url.Parse lower-cases the scheme; the drivers do not.
	scheme, _, _ := strings.Cut(raw, ":")
	if !slices.Contains(schemes, scheme) {
		return nil, configError(EnvURL, "%s; want %s", describeScheme(raw, schemes...), want)
	}
	return u, nil
}

func dirFromFileURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", configError(EnvURL, "not a valid file:///path URL")
	}
	if u.Host != "" && u.Host != "localhost" {
		return "", configError(EnvURL, "a file:// URL names a local directory: file:///path, with no host")
	}
	if u.Path == "" {
		return "", configError(EnvURL, "a file:// URL needs a path: file:///path")
	}
	return filepath.Clean(u.Path), nil
}

// describeScheme names the scheme of raw for a message; it is safe to
// show because it ends before any credentials.
// A scheme that differs from a wanted one only in case is named as such.
func describeScheme(raw string, wanted ...string) string {
	scheme, _, ok := strings.Cut(raw, "://")
	if !ok || scheme == "" || !isPlainScheme(scheme) {
		return "not a URL with a scheme"
	}
	if slices.Contains(wanted, strings.ToLower(scheme)) {
		return fmt.Sprintf("scheme %q must be written in lower case", scheme)
	}
	return fmt.Sprintf("scheme %q is not supported", scheme)
}

func isPlainScheme(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.') {
			return false
		}
	}
	return len(s) <= 20
}

func hasScheme(raw, scheme string) bool {
	s, _, ok := strings.Cut(raw, "://")
	return ok && strings.EqualFold(s, scheme)
}

func orDefault(v, dflt string) string {
	if v == "" {
		return dflt
	}
	return v
}

// shorten keeps a quoted value in a message to a readable length.
func shorten(v string) string {
	const limit = 80
	if len(v) <= limit {
		return v
	}
	return v[:limit] + "..."
}

func configError(key, format string, args ...any) error {
	return NewError(ErrConfig, key, fmt.Errorf(format, args...))
}
