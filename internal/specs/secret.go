package specs

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// DefaultFileThreshold is cachelib's and spec.filesystem.threshold's default.
const DefaultFileThreshold = 500

// SecretKeyRef is one key of a Secret that a SessionStore references.
type SecretKeyRef struct {
	// Field is the spec field that references it, for messages.
	Field string
	Name  string
	Key   string
}

// Keys of the Secret named by postgresql.credentialsSecretRef, as in a
// kubernetes.io/basic-auth Secret.
const (
	UsernameKey = corev1.BasicAuthUsernameKey
	PasswordKey = corev1.BasicAuthPasswordKey
)

// ReferencedSecrets lists the Secret keys store's spec points at, in a stable
// order. The controller reads exactly these and indexes stores by their names.
func ReferencedSecrets(store *v1.SessionStore) []SecretKeyRef {
	var refs []SecretKeyRef
	add := func(field string, sel *v1.SecretKeySelector) {
		if sel != nil {
			refs = append(refs, SecretKeyRef{Field: field, Name: sel.Name, Key: sel.Key})
		}
	}
	spec := store.Spec
	switch {
	case spec.Redis != nil:
		add("spec.redis.urlSecretRef", spec.Redis.URLSecretRef)
		add("spec.redis.passwordSecretRef", spec.Redis.PasswordSecretRef)
	case spec.MongoDB != nil:
		add("spec.mongodb.uriSecretRef", &spec.MongoDB.URISecretRef)
	case spec.PostgreSQL != nil:
		add("spec.postgresql.urlSecretRef", spec.PostgreSQL.URLSecretRef)
		if ref := spec.PostgreSQL.CredentialsSecretRef; ref != nil {
			refs = append(refs,
				SecretKeyRef{Field: "spec.postgresql.credentialsSecretRef", Name: ref.Name, Key: UsernameKey},
				SecretKeyRef{Field: "spec.postgresql.credentialsSecretRef", Name: ref.Name, Key: PasswordKey})
		}
	case spec.MySQL != nil:
		add("spec.mysql.urlSecretRef", spec.MySQL.URLSecretRef)
		if ref := spec.MySQL.CredentialsSecretRef; ref != nil {
			refs = append(refs,
				SecretKeyRef{Field: "spec.mysql.credentialsSecretRef", Name: ref.Name, Key: UsernameKey},
				SecretKeyRef{Field: "spec.mysql.credentialsSecretRef", Name: ref.Name, Key: PasswordKey})
		}
	}
	return refs
}

// SecretValues holds the referenced keys' values, by Secret name and key.
type SecretValues map[string]map[string][]byte

func (v SecretValues) get(name, key string) string { return string(v[name][key]) }

// ConnectionSecret builds the Secret apps load with envFrom: the store's
// SESSION_STORE_* keys and Flask's own FLASK_* settings, so a Flask app can
// call app.config.from_prefixed_env(). data is what ConnectionData built.
func ConnectionSecret(store *v1.SessionStore, data map[string]string) *corev1.Secret {
	secret := &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      ConnectionSecretName(store),
			Namespace: store.Namespace,
			Labels:    Labels(store, "connection"),
		},
		Type: corev1.SecretTypeOpaque,
		Data: make(map[string][]byte, len(data)),
	}
	for k, v := range data {
		secret.Data[k] = []byte(v)
	}
	return secret
}

// ConnectionData is the connection Secret's data as strings. values must
// hold every key that ReferencedSecrets lists.
func ConnectionData(store *v1.SessionStore, values SecretValues) (map[string]string, error) {
	spec := store.Spec
	lifetime := int64(spec.LifetimeOrDefault().Seconds())
	d := map[string]string{
		sessionstore.EnvBackend:         string(spec.Backend),
		sessionstore.EnvKeyPrefix:       spec.KeyPrefix,
		sessionstore.EnvLifetimeSeconds: strconv.FormatInt(lifetime, 10),
		sessionstore.EnvFlaskKeyPrefix:  flaskString(spec.KeyPrefix),
		sessionstore.EnvFlaskLifetime:   strconv.FormatInt(lifetime, 10),
	}
	var err error
	switch spec.Backend {
	case v1.BackendRedis:
		err = redisData(d, spec.Redis, values)
	case v1.BackendMemcached:
		err = memcachedData(d, spec.Memcached)
	case v1.BackendMongoDB:
		err = mongoData(d, spec.MongoDB, values)
	case v1.BackendPostgreSQL:
		err = postgresData(d, spec.PostgreSQL, values)
	case v1.BackendMySQL:
		err = mysqlData(d, spec.MySQL, values)
	case v1.BackendFilesystem:
		err = filesystemData(d, spec.Filesystem)
	default:
		err = fmt.Errorf("spec.backend %q is not supported", spec.Backend)
	}
	if err != nil {
		return nil, err
	}
	if err := validateAsCleanupReads(store, d); err != nil {
		return nil, err
	}
	return d, nil
}

// validateAsCleanupReads holds the Secret to the rules the cleanup applies
// when it reads it (sessionstore's Config.Validate, the one home of those
// rules), so a store the cleanup would refuse is refused here first.
func validateAsCleanupReads(store *v1.SessionStore, d map[string]string) error {
	cfg, err := sessionstore.ConfigFromMap(CleanupPodEnv(store, d))
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return fmt.Errorf("the connection settings would be refused by the cleanup: %w", err)
	}
	return nil
}

func redisData(d map[string]string, spec *v1.RedisSpec, values SecretValues) error {
	if spec == nil {
		return fmt.Errorf("spec.redis is required for backend redis")
	}
	d[sessionstore.EnvFlaskSessionType] = "redis"
	if ref := spec.URLSecretRef; ref != nil {
		raw := strings.TrimSpace(values.get(ref.Name, ref.Key))
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
			return fmt.Errorf("key %q of Secret %q (spec.redis.urlSecretRef) is not a redis://, rediss:// or unix:// URL", ref.Key, ref.Name)
		}
		d[sessionstore.EnvURL] = raw
		return nil
	}
	scheme := "redis"
	if spec.TLS {
		scheme = "rediss"
	}
	userinfo := ""
	password := ""
	if ref := spec.PasswordSecretRef; ref != nil {
		password = values.get(ref.Name, ref.Key)
	}
	switch {
	case password != "":
		userinfo = escapeUserinfo(spec.Username) + ":" + escapeUserinfo(password) + "@"
	case spec.Username != "":
		userinfo = escapeUserinfo(spec.Username) + "@"
	}
	d[sessionstore.EnvURL] = fmt.Sprintf("%s://%s%s/%d", scheme, userinfo, spec.Address, spec.DB)
	return nil
}

func memcachedData(d map[string]string, spec *v1.MemcachedSpec) error {
	if spec == nil || len(spec.Servers) == 0 {
		return fmt.Errorf("spec.memcached.servers needs at least one host:port")
	}
	d[sessionstore.EnvFlaskSessionType] = "memcached"
	d[sessionstore.EnvURL] = "memcached://" + strings.Join(spec.Servers, ",")
	return nil
}

func mongoData(d map[string]string, spec *v1.MongoDBSpec, values SecretValues) error {
	if spec == nil {
		return fmt.Errorf("spec.mongodb is required for backend mongodb")
	}
	ref := spec.URISecretRef
	raw := strings.TrimSpace(values.get(ref.Name, ref.Key))
	if !strings.HasPrefix(raw, "mongodb://") && !strings.HasPrefix(raw, "mongodb+srv://") {
		return fmt.Errorf("key %q of Secret %q (spec.mongodb.uriSecretRef) is not a mongodb:// or mongodb+srv:// URI", ref.Key, ref.Name)
	}
	d[sessionstore.EnvFlaskSessionType] = "mongodb"
	d[sessionstore.EnvURL] = raw
	d[sessionstore.EnvDatabase] = spec.Database
	d[sessionstore.EnvCollection] = spec.Collection
	d[sessionstore.EnvFlaskMongoDB] = flaskString(spec.Database)
	d[sessionstore.EnvFlaskMongoCollection] = flaskString(spec.Collection)
	return nil
}

func postgresData(d map[string]string, spec *v1.PostgreSQLSpec, values SecretValues) error {
	if spec == nil {
		return fmt.Errorf("spec.postgresql is required for backend postgresql")
	}
	var dsn string
	if ref := spec.URLSecretRef; ref != nil {
		dsn = strings.TrimSpace(values.get(ref.Name, ref.Key))
		if !strings.HasPrefix(dsn, "postgresql://") && !strings.HasPrefix(dsn, "postgres://") {
			return fmt.Errorf("key %q of Secret %q (spec.postgresql.urlSecretRef) is not a postgresql:// URL", ref.Key, ref.Name)
		}
	} else {
		userinfo := ""
		if ref := spec.CredentialsSecretRef; ref != nil {
			user := values.get(ref.Name, UsernameKey)
			if user == "" {
				return fmt.Errorf("key %q of Secret %q (spec.postgresql.credentialsSecretRef) is empty", UsernameKey, ref.Name)
			}
			userinfo = escapeUserinfo(user)
			if pw := values.get(ref.Name, PasswordKey); pw != "" {
				userinfo += ":" + escapeUserinfo(pw)
			}
			userinfo += "@"
		}
		sslMode := spec.SSLMode
		if sslMode == "" {
			sslMode = "prefer"
		}
		dsn = fmt.Sprintf("postgresql://%s%s:%d/%s?sslmode=%s", userinfo, spec.Host, spec.Port,
			url.PathEscape(spec.Database), sslMode)
	}
	d[sessionstore.EnvFlaskSessionType] = "sqlalchemy"
	d[sessionstore.EnvURL] = dsn
	d[sessionstore.EnvTable] = spec.Table
	d[sessionstore.EnvFlaskSQLAlchemyTable] = flaskString(spec.Table)
	// SQLAlchemy >= 1.4 refuses the postgres:// scheme that libpq accepts.
	d[sessionstore.EnvFlaskSQLAlchemyURI] = "postgresql://" + strings.TrimPrefix(strings.TrimPrefix(dsn, "postgresql://"), "postgres://")
	if spec.Schema != "" {
		d[sessionstore.EnvSchema] = spec.Schema
		d[sessionstore.EnvFlaskSQLAlchemySchema] = flaskString(spec.Schema)
	}
	if spec.Sequence != "" {
		d[sessionstore.EnvSequence] = spec.Sequence
		d[sessionstore.EnvFlaskSQLAlchemySequence] = flaskString(spec.Sequence)
	}
	return nil
}

// mysqlData writes the store's mysql:// URL, which the cleanup reads, and
// the same connection as SQLAlchemy's mysql+pymysql:// URI for the app.
func mysqlData(d map[string]string, spec *v1.MySQLSpec, values SecretValues) error {
	if spec == nil {
		return fmt.Errorf("spec.mysql is required for backend mysql")
	}
	raw, err := mysqlURL(spec, values)
	if err != nil {
		return err
	}
	parsed, err := sessionstore.ParseMySQLURL(raw)
	if err != nil {
		// The message never quotes the URL.
		return fmt.Errorf("the mysql:// URL of spec.mysql: %w", err)
	}
	d[sessionstore.EnvFlaskSessionType] = "sqlalchemy"
	d[sessionstore.EnvURL] = raw
	d[sessionstore.EnvTable] = spec.Table
	d[sessionstore.EnvFlaskSQLAlchemyTable] = flaskString(spec.Table)
	d[sessionstore.EnvFlaskSQLAlchemyURI] = MySQLSQLAlchemyURI(parsed)
	if spec.Sequence != "" {
		d[sessionstore.EnvSequence] = spec.Sequence
		d[sessionstore.EnvFlaskSQLAlchemySequence] = flaskString(spec.Sequence)
	}
	return nil
}

func mysqlURL(spec *v1.MySQLSpec, values SecretValues) (string, error) {
	if ref := spec.URLSecretRef; ref != nil {
		raw := strings.TrimSpace(values.get(ref.Name, ref.Key))
		if !strings.HasPrefix(raw, "mysql://") {
			return "", fmt.Errorf("key %q of Secret %q (spec.mysql.urlSecretRef) is not a mysql:// URL", ref.Key, ref.Name)
		}
		return raw, nil
	}
	userinfo := ""
	if ref := spec.CredentialsSecretRef; ref != nil {
		user := values.get(ref.Name, UsernameKey)
		if user == "" {
			return "", fmt.Errorf("key %q of Secret %q (spec.mysql.credentialsSecretRef) is empty", UsernameKey, ref.Name)
		}
		userinfo = escapeUserinfo(user)
		if pw := values.get(ref.Name, PasswordKey); pw != "" {
			userinfo += ":" + escapeUserinfo(pw)
		}
		userinfo += "@"
	}
	port, tls := spec.Port, string(spec.TLS)
	if port == 0 {
		port = 3306
	}
	if tls == "" {
		tls = sessionstore.MySQLTLSPreferred
	}
	return fmt.Sprintf("mysql://%s%s:%d/%s?tls=%s", userinfo, spec.Host, port, url.PathEscape(spec.Database), tls), nil
}

// MySQLSystemCABundle is where Debian, Ubuntu, Alpine and the images built
// on them keep the system's CA certificates: PyMySQL verifies a server only
// when given a CA file, so tls verify-identity names this one.
const MySQLSystemCABundle = "/etc/ssl/certs/ca-certificates.crt"

// MySQLSQLAlchemyURI is u as SQLAlchemy's mysql+pymysql:// URI, credentials
// escaped so SQLAlchemy reads back exactly what the Go driver does, and the
// TLS mode as the ssl_* parameters SQLAlchemy hands PyMySQL: disabled sets
// none (PyMySQL's default is no TLS); preferred and required ask for TLS
// without verification (PyMySQL uses it when the server offers it; unlike
// the cleanup, it cannot refuse a server without TLS); verify-identity
// checks the certificate against the system's CAs and the host name.
func MySQLSQLAlchemyURI(u sessionstore.MySQLURL) string {
	userinfo := ""
	if u.User != "" || u.HasPassword {
		userinfo = escapeUserinfo(u.User)
		if u.HasPassword {
			userinfo += ":" + escapeUserinfo(u.Password)
		}
		userinfo += "@"
	}
	uri := "mysql+pymysql://" + userinfo + net.JoinHostPort(u.Host, strconv.Itoa(u.Port)) + "/" + url.PathEscape(u.Database)
	switch u.TLS {
	case sessionstore.MySQLTLSDisabled:
		return uri
	case sessionstore.MySQLTLSVerifyIdentity:
		return uri + "?ssl_ca=" + url.QueryEscape(MySQLSystemCABundle) + "&ssl_check_hostname=true"
	default:
		return uri + "?ssl_check_hostname=false"
	}
}

func filesystemData(d map[string]string, spec *v1.FilesystemSpec) error {
	if spec == nil {
		return fmt.Errorf("spec.filesystem is required for backend filesystem")
	}
	mode, err := strconv.ParseUint(spec.Mode, 8, 32)
	if err != nil {
		return fmt.Errorf("spec.filesystem.mode %q is not an octal file mode", spec.Mode)
	}
	d[sessionstore.EnvFlaskSessionType] = "filesystem"
	d[sessionstore.EnvURL] = (&url.URL{Scheme: "file", Path: spec.Path}).String()
	d[sessionstore.EnvDir] = spec.Path
	d[sessionstore.EnvFlaskFileDir] = flaskString(spec.Path)
	d[sessionstore.EnvFlaskFileThreshold] = strconv.Itoa(int(ptr.Deref(spec.Threshold, DefaultFileThreshold)))
	// Flask parses the value as JSON: a decimal number, as os.chmod wants it.
	d[sessionstore.EnvFlaskFileMode] = strconv.FormatUint(mode, 10)
	return nil
}

// escapeUserinfo percent-encodes every byte but RFC 3986's unreserved
// characters, so any password survives every URL parser (libpq, SQLAlchemy,
// redis-py, Go's net/url), which disagree on the reserved ones.
func escapeUserinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// flaskString returns s as Flask's from_prefixed_env() must see it: Flask
// parses each value as JSON when it can, so a string that would parse as
// anything at all ("123", "true", "null", "\"x\"") is written JSON-quoted.
func flaskString(s string) string {
	if !json.Valid([]byte(s)) {
		return s
	}
	quoted, _ := json.Marshal(s)
	return string(quoted)
}
