package sessionstore

// Keys of the connection Secret that the controller writes and the cleanup
// command reads (apps load the Secret with envFrom). Changing one is a
// breaking change for every app that uses the Secret.
const (
	EnvBackend         = "SESSION_STORE_BACKEND"
	EnvURL             = "SESSION_STORE_URL"
	EnvKeyPrefix       = "SESSION_STORE_KEY_PREFIX"
	EnvLifetimeSeconds = "SESSION_STORE_LIFETIME_SECONDS"
	EnvDatabase        = "SESSION_STORE_DATABASE"
	EnvCollection      = "SESSION_STORE_COLLECTION"
	EnvTable           = "SESSION_STORE_TABLE"
	EnvSchema          = "SESSION_STORE_SCHEMA"
	EnvSequence        = "SESSION_STORE_SEQUENCE"
	EnvGraceSeconds    = "SESSION_STORE_GRACE_SECONDS"
	EnvDir             = "SESSION_STORE_DIR"
	// Whether the store should be prepared: "true" or "false".
	EnvCreateTable       = "SESSION_STORE_CREATE_TABLE"
	EnvCreateExpiryIndex = "SESSION_STORE_CREATE_EXPIRY_INDEX"
	EnvTTLIndex          = "SESSION_STORE_TTL_INDEX"

	// Set on the cleanup CronJob's container, not in the Secret.
	EnvBatchSize     = "SESSION_STORE_BATCH_SIZE"
	EnvFixMissingTTL = "SESSION_STORE_FIX_MISSING_TTL"

	// Flask's own settings, for app.config.from_prefixed_env().
	EnvFlaskSessionType        = "FLASK_SESSION_TYPE"
	EnvFlaskKeyPrefix          = "FLASK_SESSION_KEY_PREFIX"
	EnvFlaskLifetime           = "FLASK_PERMANENT_SESSION_LIFETIME"
	EnvFlaskMongoDB            = "FLASK_SESSION_MONGODB_DB"
	EnvFlaskMongoCollection    = "FLASK_SESSION_MONGODB_COLLECT"
	EnvFlaskSQLAlchemyURI      = "FLASK_SQLALCHEMY_DATABASE_URI"
	EnvFlaskSQLAlchemyTable    = "FLASK_SESSION_SQLALCHEMY_TABLE"
	EnvFlaskSQLAlchemySchema   = "FLASK_SESSION_SQLALCHEMY_SCHEMA"
	EnvFlaskSQLAlchemySequence = "FLASK_SESSION_SQLALCHEMY_SEQUENCE"
	EnvFlaskFileDir            = "FLASK_SESSION_FILE_DIR"
	EnvFlaskFileThreshold      = "FLASK_SESSION_FILE_THRESHOLD"
	EnvFlaskFileMode           = "FLASK_SESSION_FILE_MODE"
)
