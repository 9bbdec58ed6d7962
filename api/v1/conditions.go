package v1

// The conditions of SessionStore and ClusterSessionCleanupPolicy status, their
// reasons, and the reasons of the events the operator records. They are part of the API: tools alert on them, so they are
// stable (as cluster-api and CloudNativePG keep theirs with their types).

// Condition types. Tools alert on them: they are stable.
const (
	ConditionReady                 = "Ready"
	ConditionConnectionSecretReady = "ConnectionSecretReady"
	ConditionCleanupScheduled      = "CleanupScheduled"
	ConditionStoreReachable        = "StoreReachable"
	ConditionSchemaReady           = "SchemaReady"
	ConditionLastCleanupSucceeded  = "LastCleanupSucceeded"
	// ConditionReconciling is True while the last reconcile failed on an
	// API call and is being retried; ConditionStalled is True while Ready is
	// False for a reason only a person can fix. Both are kstatus's
	// abnormal-true conditions (read by Flux, kubectl wait, Argo CD).
	ConditionReconciling = "Reconciling"
	ConditionStalled     = "Stalled"
)

// Condition reasons, CamelCase and stable.
const (
	ReasonReady                    = "Ready"
	ReasonNotReady                 = "NotReady"
	ReasonReconcileError           = "ReconcileError"
	ReasonSecretReady              = "SecretReady"
	ReasonSecretNotFound           = "SecretNotFound"
	ReasonSecretKeyMissing         = "SecretKeyMissing"
	ReasonInvalidSecretValue       = "InvalidSecretValue"
	ReasonSecretConflict           = "SecretConflict"
	ReasonApplyFailed              = "ApplyFailed"
	ReasonScheduled                = "Scheduled"
	ReasonSuspended                = "Suspended"
	ReasonNativeExpiry             = "NativeExpiry"
	ReasonInvalidSchedule          = "InvalidSchedule"
	ReasonConnectionSecretNotReady = "ConnectionSecretNotReady"
	ReasonCronJobConflict          = "CronJobConflict"

	// StoreReachable. Probe failures use the store error's kind as reason
	// (ConnectionRefused, AuthenticationFailed, Timeout, DNSError,
	// TLSError, TableMissing, StoreError).
	ReasonReachable          = "Reachable"
	ReasonProbing            = "Probing"
	ReasonInvalidConfig      = "InvalidConfig"
	ReasonTableMissing       = "TableMissing"
	ReasonAwaitingCleanupRun = "AwaitingCleanupRun"
	ReasonCleanupRunReached  = "CleanupRunReachedStore"

	// SchemaReady.
	ReasonSchemaPresent  = "SchemaPresent"
	ReasonSchemaCreated  = "SchemaCreated"
	ReasonTTLUnsupported = "TTLUnsupported"
	// ReasonSchemaPending: the table is there, and the expiry index asked
	// for is missing or being built; a cleanup run builds it, the manager
	// never does. The store works meanwhile.
	ReasonSchemaPending = "SchemaPending"
	ReasonNotNeeded     = "NotNeeded"

	// LastCleanupSucceeded.
	ReasonSucceeded        = "Succeeded"
	ReasonFailed           = "Failed"
	ReasonDeadlineExceeded = "DeadlineExceeded"
	ReasonMissedSchedule   = "MissedSchedule"
	ReasonNotRunYet        = "NotRunYet"
	ReasonRunning          = "Running"
)

// Policy conditions.
const (
	// ConditionWindowsValid is False while a window (or the time zone)
	// cannot be read: the policy's runs are held until it is fixed.
	ConditionWindowsValid = "WindowsValid"
	ReasonValid           = "Valid"
	ReasonInvalidWindow   = "InvalidWindow"
)

// Event reasons of a SessionStore: one event per change of state, never one per reconcile.
const (
	EventStoreUnreachable = "StoreUnreachable"
	EventStoreReachable   = "StoreReachable"
	EventSchemaCreated    = "SchemaCreated"
	EventCleanupFailed    = "CleanupFailed"
	EventSecretConflict   = "SecretConflict"
)

// Event reasons of the cleanup gate, recorded on a SessionStore.
const (
	EventCleanupSkipped = "CleanupSkipped"
)
