package v1

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Backend names a kind of session store, as Flask-Session's SESSION_TYPE does.
// +kubebuilder:validation:Enum=redis;memcached;mongodb;postgresql;mysql;filesystem
type Backend string

const (
	BackendRedis      Backend = "redis"
	BackendMemcached  Backend = "memcached"
	BackendMongoDB    Backend = "mongodb"
	BackendPostgreSQL Backend = "postgresql"
	BackendMySQL      Backend = "mysql"
	BackendFilesystem Backend = "filesystem"
)

// SessionStoreSpec declares a session store: which backend, where it is, how
// its sessions are laid out, how long they live and when they are cleaned up.
//
// Exactly one backend block is set, the one that backend names.
// +kubebuilder:validation:XValidation:rule="has(self.redis) == (self.backend == 'redis')",message="spec.redis must be set when, and only when, spec.backend is redis"
// +kubebuilder:validation:XValidation:rule="has(self.memcached) == (self.backend == 'memcached')",message="spec.memcached must be set when, and only when, spec.backend is memcached"
// +kubebuilder:validation:XValidation:rule="has(self.mongodb) == (self.backend == 'mongodb')",message="spec.mongodb must be set when, and only when, spec.backend is mongodb"
// +kubebuilder:validation:XValidation:rule="has(self.postgresql) == (self.backend == 'postgresql')",message="spec.postgresql must be set when, and only when, spec.backend is postgresql"
// +kubebuilder:validation:XValidation:rule="has(self.mysql) == (self.backend == 'mysql')",message="spec.mysql must be set when, and only when, spec.backend is mysql"
// +kubebuilder:validation:XValidation:rule="has(self.filesystem) == (self.backend == 'filesystem')",message="spec.filesystem must be set when, and only when, spec.backend is filesystem"
type SessionStoreSpec struct {
	// Backend is the kind of store. It cannot be changed: make a new
	// SessionStore to move sessions to another backend.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.backend is immutable"
	Backend Backend `json:"backend"`

	// KeyPrefix is prepended to every session id (Flask-Session's SESSION_KEY_PREFIX).
	// +optional
	// +kubebuilder:default="session:"
	// +kubebuilder:validation:MaxLength=64
	KeyPrefix string `json:"keyPrefix,omitempty"`

	// Lifetime is how long a session lives (Flask's PERMANENT_SESSION_LIFETIME),
	// as a duration such as 744h or 30m. At least one minute.
	// +optional
	// +kubebuilder:default="744h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="spec.lifetime must be at least 1m"
	Lifetime *metav1.Duration `json:"lifetime,omitempty"`

	// Redis: sessions expire by Redis's own TTL.
	// +optional
	Redis *RedisSpec `json:"redis,omitempty"`
	// Memcached: sessions expire by memcached's own expiry.
	// +optional
	Memcached *MemcachedSpec `json:"memcached,omitempty"`
	// MongoDB (or a MongoDB-wire server such as FerretDB).
	// +optional
	MongoDB *MongoDBSpec `json:"mongodb,omitempty"`
	// PostgreSQL, in Flask-Session's SQLAlchemy table layout.
	// +optional
	PostgreSQL *PostgreSQLSpec `json:"postgresql,omitempty"`
	// MySQL 8 or MariaDB 10.6+, in Flask-Session's SQLAlchemy table layout.
	// +optional
	MySQL *MySQLSpec `json:"mysql,omitempty"`
	// Filesystem: a cachelib FileSystemCache directory on a PersistentVolumeClaim.
	// +optional
	Filesystem *FilesystemSpec `json:"filesystem,omitempty"`

	// Cleanup says when expired sessions are removed, for backends without
	// native expiry (mongodb, postgresql, mysql, filesystem).
	// +optional
	// +kubebuilder:default={}
	Cleanup CleanupSpec `json:"cleanup,omitempty"`

	// ConnectionSecretName names the Secret the operator writes for apps to
	// load with envFrom. Defaults to <name>-session-store.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern="^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
	ConnectionSecretName string `json:"connectionSecretName,omitempty"`
}

// SecretKeySelector names one key of a Secret in the SessionStore's namespace.
type SecretKeySelector struct {
	// Name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Key within the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern="^[-._a-zA-Z0-9]+$"
	Key string `json:"key"`
}

// SecretReference names a Secret in the SessionStore's namespace.
type SecretReference struct {
	// Name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// RedisSpec says where a Redis server is.
// +kubebuilder:validation:XValidation:rule="has(self.address) != has(self.urlSecretRef)",message="spec.redis needs exactly one of address or urlSecretRef"
type RedisSpec struct {
	// Address is host:port.
	// +optional
	// +kubebuilder:validation:MaxLength=261
	// +kubebuilder:validation:Pattern="^[^\\s/@]+:[0-9]{1,5}$"
	// +kubebuilder:validation:XValidation:rule="int(self.substring(self.lastIndexOf(':') + 1)) >= 1 && int(self.substring(self.lastIndexOf(':') + 1)) <= 65535",message="spec.redis.address: the port must be from 1 to 65535"
	Address string `json:"address,omitempty"`
	// URLSecretRef points at a key holding a whole redis:// or rediss:// URL,
	// used as given.
	// +optional
	URLSecretRef *SecretKeySelector `json:"urlSecretRef,omitempty"`
	// DB is the database number.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=15
	DB int32 `json:"db,omitempty"`
	// TLS connects with rediss://.
	// +optional
	TLS bool `json:"tls,omitempty"`
	// Username for Redis ACLs.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Username string `json:"username,omitempty"`
	// PasswordSecretRef points at the password.
	// +optional
	PasswordSecretRef *SecretKeySelector `json:"passwordSecretRef,omitempty"`
}

// MemcachedSpec says where the memcached servers are.
type MemcachedSpec struct {
	// Servers are host:port addresses.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=261
	// +kubebuilder:validation:items:Pattern="^[^\\s/@,]+:[0-9]{1,5}$"
	// +kubebuilder:validation:XValidation:rule="self.all(s, int(s.substring(s.lastIndexOf(':') + 1)) >= 1 && int(s.substring(s.lastIndexOf(':') + 1)) <= 65535)",message="spec.memcached.servers: each port must be from 1 to 65535"
	Servers []string `json:"servers"`
}

// MongoDBSpec says where a MongoDB (or MongoDB-wire) server is.
type MongoDBSpec struct {
	// URISecretRef points at a key holding the mongodb:// URI, credentials included.
	// +required
	URISecretRef SecretKeySelector `json:"uriSecretRef"`
	// Database holding the sessions (SESSION_MONGODB_DB).
	// +optional
	// +kubebuilder:default="flask_session"
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern="^[A-Za-z0-9_-]+$"
	Database string `json:"database,omitempty"`
	// Collection holding the sessions (SESSION_MONGODB_COLLECT).
	// +optional
	// +kubebuilder:default="sessions"
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern="^[A-Za-z_][A-Za-z0-9_]*$"
	Collection string `json:"collection,omitempty"`
	// TTLIndex asks for a TTL index on expiration, where the server has them.
	// +optional
	// +kubebuilder:default=true
	TTLIndex *bool `json:"ttlIndex,omitempty"`
}

// SSLMode is libpq's sslmode.
// +kubebuilder:validation:Enum=disable;allow;prefer;require;verify-ca;verify-full
type SSLMode string

// PostgreSQLSpec says where a PostgreSQL server is and which table holds sessions.
// +kubebuilder:validation:XValidation:rule="has(self.host) != has(self.urlSecretRef)",message="spec.postgresql needs exactly one of host or urlSecretRef"
// +kubebuilder:validation:XValidation:rule="!has(self.host) || (has(self.database) && has(self.credentialsSecretRef))",message="spec.postgresql.host needs database and credentialsSecretRef"
type PostgreSQLSpec struct {
	// Host name or address of the server.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern="^[^\\s/@:?#]+$"
	Host string `json:"host,omitempty"`
	// Port of the server.
	// +optional
	// +kubebuilder:default=5432
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`
	// Database name.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern="^[A-Za-z_][A-Za-z0-9_-]*$"
	Database string `json:"database,omitempty"`
	// CredentialsSecretRef names a Secret with keys username and password,
	// as in a kubernetes.io/basic-auth Secret.
	// +optional
	CredentialsSecretRef *SecretReference `json:"credentialsSecretRef,omitempty"`
	// URLSecretRef points at a key holding a whole postgresql:// URL, used as given.
	// +optional
	URLSecretRef *SecretKeySelector `json:"urlSecretRef,omitempty"`
	// SSLMode as libpq reads it.
	// +optional
	// +kubebuilder:default=prefer
	SSLMode SSLMode `json:"sslMode,omitempty"`
	// Table holding the sessions (SESSION_SQLALCHEMY_TABLE).
	// +optional
	// +kubebuilder:default="sessions"
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern="^[A-Za-z_][A-Za-z0-9_]*$"
	Table string `json:"table,omitempty"`
	// Schema of the table (SESSION_SQLALCHEMY_SCHEMA); the search path's when empty.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern="^[A-Za-z_][A-Za-z0-9_]*$"
	Schema string `json:"schema,omitempty"`
	// CreateTable creates the table in Flask-Session's layout when missing.
	// +optional
	// +kubebuilder:default=true
	CreateTable *bool `json:"createTable,omitempty"`
	// CreateExpiryIndex creates <table>_expiry_idx on expiry, concurrently,
	// from a cleanup run (never from the operator, since a build waits for
	// every open transaction). Off by default: the cleanup walks the table by
	// ctid and does not need it, while every session write pays for it.
	// +optional
	// +kubebuilder:default=false
	CreateExpiryIndex *bool `json:"createExpiryIndex,omitempty"`
	// Sequence is the sequence the id column draws from, as the app's
	// SESSION_SQLALCHEMY_SEQUENCE names it. When the operator creates the
	// table it creates this sequence too, as SQLAlchemy would; an app that
	// sets it cannot insert into a table made without it.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern="^[A-Za-z_][A-Za-z0-9_]*$"
	Sequence string `json:"sequence,omitempty"`
}

// MySQLTLSMode is MySQL's --ssl-mode, in lower case.
// +kubebuilder:validation:Enum=disabled;preferred;required;verify-identity
type MySQLTLSMode string

// MySQLSpec says where a MySQL or MariaDB server is and which table holds sessions.
// +kubebuilder:validation:XValidation:rule="has(self.host) != has(self.urlSecretRef)",message="spec.mysql needs exactly one of host or urlSecretRef"
// +kubebuilder:validation:XValidation:rule="!has(self.host) || (has(self.database) && has(self.credentialsSecretRef))",message="spec.mysql.host needs database and credentialsSecretRef"
type MySQLSpec struct {
	// Host name or address of the server.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern="^[^\\s/@:?#\\[\\]]+$"
	Host string `json:"host,omitempty"`
	// Port of the server.
	// +optional
	// +kubebuilder:default=3306
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`
	// Database name.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern="^[A-Za-z0-9_$-]+$"
	Database string `json:"database,omitempty"`
	// CredentialsSecretRef names a Secret with keys username and password,
	// as in a kubernetes.io/basic-auth Secret.
	// +optional
	CredentialsSecretRef *SecretReference `json:"credentialsSecretRef,omitempty"`
	// URLSecretRef points at a key holding a whole
	// mysql://user:password@host:port/database[?tls=mode] URL, credentials
	// percent-encoded, used as given.
	// +optional
	URLSecretRef *SecretKeySelector `json:"urlSecretRef,omitempty"`
	// TLS is MySQL's ssl-mode: disabled, preferred (TLS when the server
	// offers it), required (TLS, the certificate unchecked) or
	// verify-identity (TLS, the certificate and host name checked).
	// +optional
	// +kubebuilder:default=preferred
	TLS MySQLTLSMode `json:"tls,omitempty"`
	// Table holding the sessions (SESSION_SQLALCHEMY_TABLE).
	// +optional
	// +kubebuilder:default="sessions"
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern="^[A-Za-z_][A-Za-z0-9_]*$"
	Table string `json:"table,omitempty"`
	// CreateTable creates the table in Flask-Session's layout when missing.
	// +optional
	// +kubebuilder:default=true
	CreateTable *bool `json:"createTable,omitempty"`
	// Sequence is the app's SESSION_SQLALCHEMY_SEQUENCE. On MariaDB,
	// SQLAlchemy gives such a table a real sequence, and the operator
	// creates it with the table as SQLAlchemy would; MySQL has no
	// sequences, and SQLAlchemy (and the operator) use AUTO_INCREMENT there.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern="^[A-Za-z_][A-Za-z0-9_]*$"
	Sequence string `json:"sequence,omitempty"`
}

// FilesystemSpec says where a cachelib FileSystemCache directory is.
type FilesystemSpec struct {
	// ClaimName is the PersistentVolumeClaim holding the session files,
	// shared with the app (ReadWriteMany, or the app's node).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	ClaimName string `json:"claimName"`
	// Path where apps and the cleanup mount the claim (SESSION_FILE_DIR).
	// +optional
	// +kubebuilder:default="/flask_session"
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern="^/[^:]*$"
	Path string `json:"path,omitempty"`
	// Threshold is cachelib's maximum number of files (SESSION_FILE_THRESHOLD).
	// 0 turns cachelib's own pruning off, which is the recommended setting
	// with the cleanup CronJob doing expiry: past the threshold cachelib
	// evicts the oldest files, live sessions included.
	// +optional
	// +kubebuilder:default=500
	// +kubebuilder:validation:Minimum=0
	Threshold *int32 `json:"threshold,omitempty"`
	// Mode is the session files' octal mode (SESSION_FILE_MODE).
	// +optional
	// +kubebuilder:default="0600"
	// +kubebuilder:validation:Pattern="^0?[0-7]{3}$"
	Mode string `json:"mode,omitempty"`
	// RunAsUser and RunAsGroup for the cleanup pod: session files are written
	// with Mode by the app's user, so the cleanup must run as that user to
	// read them. Default: the image's non-root user (65532).
	// +optional
	// +kubebuilder:validation:Minimum=1
	RunAsUser *int64 `json:"runAsUser,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=0
	RunAsGroup *int64 `json:"runAsGroup,omitempty"`
	// FSGroup for the cleanup pod, when the volume needs one.
	// +optional
	// +kubebuilder:validation:Minimum=0
	FSGroup *int64 `json:"fsGroup,omitempty"`
}

// CleanupSpec says when and how expired sessions are removed.
type CleanupSpec struct {
	// Schedule in standard 5-field cron syntax or @hourly-style. Empty means
	// hourly at a minute hashed from namespace/name, so many stores do not
	// all clean up at once; status.cleanup.effectiveSchedule shows it.
	// +optional
	// +kubebuilder:validation:MaxLength=100
	// +kubebuilder:validation:XValidation:rule="self == '' || self.matches('^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$') || self.matches('^ *([*]|[0-5]?[0-9](-[0-5]?[0-9])?)(/[0-9]{1,2})?(,([*]|[0-5]?[0-9](-[0-5]?[0-9])?)(/[0-9]{1,2})?)* +([*]|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/[0-9]{1,2})?(,([*]|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/[0-9]{1,2})?)* +([?]|([*]|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/[0-9]{1,2})?)(,([?]|([*]|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/[0-9]{1,2})?))* +([*]|(0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))(-(0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)))?)(/[0-9]{1,2})?(,([*]|(0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))(-(0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)))?)(/[0-9]{1,2})?)* +([?]|([*]|([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat))(-([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat)))?)(/[0-9]{1,2})?)(,([?]|([*]|([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat))(-([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat)))?)(/[0-9]{1,2})?))* *$')",message="spec.cleanup.schedule must be a 5-field cron expression (minute hour day-of-month month day-of-week) or one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly; set the time zone in spec.cleanup.timeZone"
	Schedule string `json:"schedule,omitempty"`
	// TimeZone of the schedule, an IANA name such as Europe/Paris.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern="^[A-Za-z0-9_+/-]+$"
	TimeZone *string `json:"timeZone,omitempty"`
	// Suspend stops scheduling new cleanup runs.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
	// BatchSize is how many sessions one delete removes at most. On MySQL
	// and MariaDB it is the first delete's: later ones grow (up to 32768)
	// or shrink so that each holds its locks about 100 ms.
	// +optional
	// +kubebuilder:default=1000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	BatchSize int32 `json:"batchSize,omitempty"`
	// GracePeriod is how long past its expiry a session must be before the
	// cleanup deletes it: a margin for the skew between the app's clock,
	// which wrote the expiry, and the store's or the cleanup pod's. The
	// filesystem cleanup refuses to run (reason ClockSkew) when the pod's
	// clock and the volume's differ by more than this. 0 deletes on the dot.
	// +optional
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^(0|([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"
	// +kubebuilder:validation:XValidation:rule="self == '0' || duration(self) <= duration('24h')",message="spec.cleanup.gracePeriod must be at most 24h"
	GracePeriod *metav1.Duration `json:"gracePeriod,omitempty"`
	// ActiveDeadlineSeconds bounds one cleanup run; it stops after its
	// current batch when the deadline comes.
	// +optional
	// +kubebuilder:default=3600
	// +kubebuilder:validation:Minimum=60
	ActiveDeadlineSeconds int64 `json:"activeDeadlineSeconds,omitempty"`
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	SuccessfulJobsHistoryLimit *int32 `json:"successfulJobsHistoryLimit,omitempty"`
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	FailedJobsHistoryLimit *int32 `json:"failedJobsHistoryLimit,omitempty"`
	// Resources of the cleanup container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
	// PodTemplate places the cleanup pod and gives it an identity: next to
	// the app on a ReadWriteOnce claim (affinity), on tainted nodes, under a
	// ServiceAccount bound to a cloud database identity. Its security
	// settings stay the operator's (the restricted Pod Security profile).
	// +optional
	PodTemplate *CleanupPodTemplate `json:"podTemplate,omitempty"`
}

// CleanupPodTemplate is what may be set on the cleanup pod, in the style of
// CloudNativePG's and cert-manager's pod overrides.
type CleanupPodTemplate struct {
	// Metadata adds labels and annotations to the pod; the operator's own
	// labels win over any of the same name.
	// +optional
	Metadata CleanupPodMetadata `json:"metadata,omitempty"`
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// +optional
	// +listType=atomic
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
	// +optional
	// +listType=atomic
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PriorityClassName string `json:"priorityClassName,omitempty"`
	// ServiceAccountName runs the pod under that ServiceAccount, for
	// workload identity to a cloud database; its token is then mounted as
	// the ServiceAccount says. Unset, the pod gets no token at all.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern="^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
}

// CleanupPodMetadata is the labels and annotations added to the cleanup pod.
type CleanupPodMetadata struct {
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// SessionStoreStatus is what the operator last saw of a SessionStore.
type SessionStoreStatus struct {
	// ObservedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready, ConnectionSecretReady, CleanupScheduled,
	// StoreReachable, SchemaReady, LastCleanupSucceeded.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ConnectionSecretName is the Secret apps load with envFrom.
	// +optional
	ConnectionSecretName string `json:"connectionSecretName,omitempty"`
	// Cleanup is the state of the cleanup CronJob.
	// +optional
	Cleanup CleanupStatus `json:"cleanup,omitempty"`
}

// CleanupStatus is the state of a store's cleanup.
type CleanupStatus struct {
	// CronJobName is the cleanup CronJob, empty for backends with native expiry.
	// +optional
	CronJobName string `json:"cronJobName,omitempty"`
	// EffectiveSchedule is the schedule in force, hashed when spec left it empty.
	// +optional
	EffectiveSchedule string `json:"effectiveSchedule,omitempty"`
	// LastScheduleTime is when the CronJob last started a run.
	// +optional
	LastScheduleTime *metav1.Time `json:"lastScheduleTime,omitempty"`
	// LastSuccessfulTime is when a run last succeeded.
	// +optional
	LastSuccessfulTime *metav1.Time `json:"lastSuccessfulTime,omitempty"`
	// LastResult is what the last finished run reported.
	// +optional
	LastResult *CleanupResult `json:"lastResult,omitempty"`

	// Policy is the ClusterSessionCleanupPolicy governing the cleanup;
	// empty when none does.
	// +optional
	Policy string `json:"policy,omitempty"`
	// Server is the database server the cleanup loads, as the policy's
	// maxPerServer counts it: lower-cased host:port (sorted, for several
	// hosts), or pvc:<namespace>/<claim> for the filesystem.
	// +optional
	Server string `json:"server,omitempty"`
	// NextRunTime is when the schedule next comes due (governed stores).
	// +optional
	NextRunTime *metav1.Time `json:"nextRunTime,omitempty"`
	// WindowState is the governing policy's: Open, Closed, Denied,
	// Suspended or Invalid.
	// +optional
	WindowState string `json:"windowState,omitempty"`
	// LastSkipTime and LastSkipReason say when and why a run was last
	// dropped without starting (its starting deadline passed at the gate).
	// +optional
	LastSkipTime *metav1.Time `json:"lastSkipTime,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	LastSkipReason string `json:"lastSkipReason,omitempty"`
	// LastHandledRunRequest is the last sessionstore.dev/run-now value a
	// run was created for.
	// +optional
	LastHandledRunRequest string `json:"lastHandledRunRequest,omitempty"`
}

// CleanupResult is what one cleanup run did, from the report it wrote as its
// termination message.
type CleanupResult struct {
	// JobName is the Job of the run.
	JobName string `json:"jobName"`
	// Succeeded is true when the run finished without error.
	Succeeded bool `json:"succeeded"`
	// CompletionTime is when the run finished (or failed).
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// Scanned, Expired, Deleted and Kept count sessions: looked at, found
	// expired, removed, and left alone for a reason other than being live
	// (no expiry, unreadable, no TTL).
	// +optional
	Scanned int64 `json:"scanned,omitempty"`
	// +optional
	Expired int64 `json:"expired,omitempty"`
	// +optional
	Deleted int64 `json:"deleted"`
	// +optional
	Kept int64 `json:"kept,omitempty"`
	// Duration of the run.
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`
	// Message says what happened, for people; never a credential.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// SessionStore is the session store of a web application: the operator
// writes a connection Secret for apps and runs a cleanup CronJob for
// backends without native expiry.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sst
// +kubebuilder:printcolumn:name="Backend",type=string,JSONPath=".spec.backend"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=".status.conditions[?(@.type==\"Ready\")].status"
// +kubebuilder:printcolumn:name="Reachable",type=string,JSONPath=".status.conditions[?(@.type==\"StoreReachable\")].status"
// +kubebuilder:printcolumn:name="Last Cleanup",type=date,JSONPath=".status.cleanup.lastResult.completionTime"
// +kubebuilder:printcolumn:name="Deleted",type=integer,JSONPath=".status.cleanup.lastResult.deleted"
// +kubebuilder:printcolumn:name="Schedule",type=string,JSONPath=".status.cleanup.effectiveSchedule"
// +kubebuilder:printcolumn:name="Policy",type=string,JSONPath=".status.cleanup.policy",priority=1
// +kubebuilder:printcolumn:name="Server",type=string,JSONPath=".status.cleanup.server",priority=1
// +kubebuilder:printcolumn:name="Window",type=string,JSONPath=".status.cleanup.windowState",priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 44",message="metadata.name must be at most 44 characters: the cleanup CronJob <name>-cleanup may have at most 52"
type SessionStore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec SessionStoreSpec `json:"spec"`
	// +optional
	Status SessionStoreStatus `json:"status,omitempty"`
}

// SessionStoreList is a list of SessionStores.
// +kubebuilder:object:root=true
type SessionStoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SessionStore `json:"items"`
}

func init() {
	SchemeBuilder.Register(&SessionStore{}, &SessionStoreList{})
}

// DefaultLifetime is Flask's PERMANENT_SESSION_LIFETIME default, 31 days.
const DefaultLifetime = 31 * 24 * time.Hour

// DefaultGracePeriod is spec.cleanup.gracePeriod's default.
const DefaultGracePeriod = 5 * time.Minute

// GracePeriodOrDefault is the cleanup's grace period, defaulted as admission
// does; an explicit 0 stays 0.
func (s *SessionStoreSpec) GracePeriodOrDefault() time.Duration {
	if s.Cleanup.GracePeriod == nil || s.Cleanup.GracePeriod.Duration < 0 {
		return DefaultGracePeriod
	}
	return s.Cleanup.GracePeriod.Duration
}

// LifetimeOrDefault is the session lifetime, defaulted as admission does.
func (s *SessionStoreSpec) LifetimeOrDefault() time.Duration {
	if s.Lifetime == nil || s.Lifetime.Duration <= 0 {
		return DefaultLifetime
	}
	return s.Lifetime.Duration
}
