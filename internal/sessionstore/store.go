// Package sessionstore holds the logic the operator bundles for each session
// store backend: reach it (Ping), prepare it (EnsureSchema) and remove the
// sessions that have expired (Cleanup), on the exact layouts Flask-Session
// writes. Each backend is a package of its own below this one, registered
// with New by importing internal/sessionstore/backends.
//
// The one rule every backend keeps: a session that has not expired is never
// deleted, even when it is refreshed while a cleanup runs.
package sessionstore

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"
)

// Backend names, as spec.backend and SESSION_STORE_BACKEND spell them.
const (
	BackendRedis      = "redis"
	BackendMemcached  = "memcached"
	BackendMongoDB    = "mongodb"
	BackendPostgreSQL = "postgresql"
	BackendMySQL      = "mysql"
	BackendFilesystem = "filesystem"
)

// Backends lists every supported backend name.
var Backends = []string{BackendRedis, BackendMemcached, BackendMongoDB, BackendPostgreSQL, BackendMySQL, BackendFilesystem}

// Config says which store to reach and how its sessions are laid out. It is
// read from the connection Secret's keys (see env.go) by the cleanup command,
// and built from a SessionStore and its Secrets by the controller.
type Config struct {
	Backend string
	// URL is the connection URL, credentials included; never log it.
	URL string
	// KeyPrefix is Flask-Session's SESSION_KEY_PREFIX ("session:").
	KeyPrefix string
	// Lifetime is the session lifetime (Flask's PERMANENT_SESSION_LIFETIME).
	Lifetime time.Duration

	// MongoDB.
	Database   string
	Collection string
	TTLIndex   bool

	// PostgreSQL and MySQL (Schema, CreateExpiryIndex and DeferIndexBuild
	// are PostgreSQL's only: a MySQL database is named in its URL).
	Table             string
	Schema            string
	CreateTable       bool
	CreateExpiryIndex bool
	// DeferIndexBuild is set by the manager's prober: EnsureSchema then
	// never builds the expiry index CreateExpiryIndex asks for (a build
	// waits for every open transaction in the database); it reports the
	// index as Pending until a cleanup run has built it.
	DeferIndexBuild bool
	// Sequence is Flask-Session's SESSION_SQLALCHEMY_SEQUENCE: the sequence
	// the id column draws from, created with the table when set.
	Sequence string

	// Filesystem (cachelib FileSystemCache).
	Dir string

	// Redis: give keys that have no TTL the lifetime (opt-in).
	FixMissingTTL bool

	// GracePeriod is how long past its expiry a session must be before a
	// cleanup deletes it: a margin for the skew between the app's clock,
	// which wrote the expiry, and the clock the cleanup compares with.
	GracePeriod time.Duration
}

// CleanupOptions tunes one cleanup run.
type CleanupOptions struct {
	// Now is the cleanup's clock. Backends whose server has a clock
	// (PostgreSQL, MongoDB) read the server's instead and report it in
	// Report.Now; the filesystem backend checks Now against the volume's.
	Now time.Time
	// Grace is subtracted from the clock's now to give the cut-off: only
	// sessions that expired at least Grace ago are deleted.
	Grace     time.Duration
	BatchSize int
	DryRun    bool
	// Progress, when set, is called after each batch.
	Progress func(Report)
}

// BatchSizeOr is BatchSize, or the backend's default when it is not set.
func (o CleanupOptions) BatchSizeOr(backendDefault int) int {
	if o.BatchSize <= 0 {
		return backendDefault
	}
	return o.BatchSize
}

// WriteOutcome opens a cleanup's message: what was (or would be) deleted of
// what had expired, and how many the app refreshed meanwhile. noun is what a
// session is in this store ("sessions", "session files"); of qualifies the
// scanned count ("of", or "of about" where it is an estimate). It tells
// whether it wrote the refreshed clause, which a backend may add to.
func WriteOutcome(b *strings.Builder, rep Report, noun, of string, err error) (refreshed bool) {
	if rep.DryRun {
		fmt.Fprintf(b, "dry run: %d %s %d %s have expired and would be deleted", rep.Expired, of, rep.Scanned, noun)
		return false
	}
	fmt.Fprintf(b, "deleted %d of %d expired %s (%s %d) in %d batches", rep.Deleted, rep.Expired, noun, of, rep.Scanned, rep.Batches)
	if err == nil && rep.Deleted < rep.Expired {
		fmt.Fprintf(b, "; %d were refreshed or removed by the app meanwhile", rep.Expired-rep.Deleted)
		return true
	}
	return false
}

// ReportProgress hands Progress a copy of rep so far, one it may keep.
func (o CleanupOptions) ReportProgress(rep Report, start time.Time) {
	if o.Progress == nil {
		return
	}
	rep.Kept = maps.Clone(rep.Kept)
	rep.Duration = time.Since(start)
	o.Progress(rep)
}

// Report is what one cleanup run saw and did. It is printed by the cleanup
// command and written as its termination message, so keep it small.
type Report struct {
	Backend string    `json:"backend"`
	DryRun  bool      `json:"dryRun,omitempty"`
	Now     time.Time `json:"now"`
	// Cutoff is Now less the grace period: what had expired by then went.
	Cutoff time.Time `json:"cutoff,omitzero"`
	// Scanned counts the sessions looked at. A session the app refreshed
	// during the run may be counted twice where the store writes a
	// refreshed row anew (PostgreSQL's heap walk can meet it again).
	Scanned int64 `json:"scanned"`
	// Expired counts the sessions found expired when their batch was
	// processed; Deleted those removed (fewer than Expired in a dry run, or
	// where a backend counts before deleting and the app refreshed a
	// session in between).
	Expired int64 `json:"expired"`
	Deleted int64 `json:"deleted"`
	// Kept counts sessions left alone for a reason other than being live,
	// by reason (for example "noExpiry", "unreadable", "noTTL").
	Kept    map[string]int64 `json:"kept,omitempty"`
	Batches int              `json:"batches"`
	// Duration is the wall time of the run.
	Duration time.Duration `json:"duration"`
	// NativeExpiry is true when the store expires sessions by itself
	// (Redis, Memcached, MongoDB with a TTL index) and nothing had to go.
	NativeExpiry bool `json:"nativeExpiry,omitempty"`
	// Message says in a sentence what happened, for people.
	Message string `json:"message,omitempty"`
}

// RunResult is what `cleanup` prints with --output json and leaves as its
// termination message, which the controller reads back: the Report's fields
// at the top level (absent when the run failed before it had a report), and
// the error when it failed.
type RunResult struct {
	*Report
	Schema       *SchemaResult `json:"schema,omitempty"`
	StoppedEarly bool          `json:"stoppedEarly,omitempty"`
	Error        string        `json:"error,omitempty"`
	ErrorKind    ErrorKind     `json:"errorKind,omitempty"`
}

// AddKept counts n sessions kept for reason.
func (r *Report) AddKept(reason string, n int64) {
	if n == 0 {
		return
	}
	if r.Kept == nil {
		r.Kept = map[string]int64{}
	}
	r.Kept[reason] += n
}

// SchemaResult says what EnsureSchema found and did.
type SchemaResult struct {
	// Present is true when the store holds what sessions need (table,
	// index) after the call.
	Present bool `json:"present"`
	// Created lists what this call created ("table", "expiry index", "ttl index").
	Created []string `json:"created,omitempty"`
	// TTLUnsupported is true for MongoDB-wire servers without TTL indexes
	// (FerretDB 1.x); not an error, the cleanup job covers them.
	TTLUnsupported bool `json:"ttlUnsupported,omitempty"`
	// Pending is true while something asked for is still being built (a
	// PostgreSQL index built concurrently); not an error.
	Pending bool   `json:"pending,omitempty"`
	Message string `json:"message,omitempty"`
}

// Store is one session store.
type Store interface {
	// Ping reaches the store within ctx's deadline; the error says what
	// failed (DNS, refused, auth, TLS, missing table).
	Ping(ctx context.Context) error
	// EnsureSchema creates what the Config asks for and is missing.
	EnsureSchema(ctx context.Context) (SchemaResult, error)
	// Cleanup removes expired sessions; see each backend for its rules.
	Cleanup(ctx context.Context, opts CleanupOptions) (Report, error)
	// Close releases connections.
	Close() error
}

// ErrorKind classifies a store error, so the controller can set a stable
// condition reason without parsing messages.
type ErrorKind string

const (
	ErrConfig       ErrorKind = "InvalidConfig"
	ErrDNS          ErrorKind = "DNSError"
	ErrRefused      ErrorKind = "ConnectionRefused"
	ErrTimeout      ErrorKind = "Timeout"
	ErrAuth         ErrorKind = "AuthenticationFailed"
	ErrTLS          ErrorKind = "TLSError"
	ErrMissingTable ErrorKind = "TableMissing"
	// ErrTableMismatch: the table exists but is not Flask-Session's layout.
	ErrTableMismatch ErrorKind = "TableMismatch"
	// ErrClockSkew: the cleanup's clock and the store's disagree by more
	// than the grace period, so expiry cannot be judged safely.
	ErrClockSkew ErrorKind = "ClockSkew"
	ErrUnknown   ErrorKind = "StoreError"
)

// Error is a store error with its kind. Its message never holds a credential.
type Error struct {
	Kind ErrorKind
	Op   string
	Err  error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("%s: %s", e.Op, e.Kind)
	}
	return fmt.Sprintf("%s: %v", e.Op, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// WantsSchema says whether cfg asks EnsureSchema to create anything; only
// PostgreSQL, MySQL and MongoDB have a schema to prepare.
func (c Config) WantsSchema() bool {
	switch c.Backend {
	case BackendPostgreSQL:
		return c.CreateTable || c.CreateExpiryIndex
	case BackendMySQL:
		return c.CreateTable
	case BackendMongoDB:
		return c.TTLIndex
	}
	return false
}

// WantsSchemaCheck says whether the backend has a schema that `check` can
// look at (a table, an index): the SQL backends and MongoDB.
func (c Config) WantsSchemaCheck() bool {
	switch c.Backend {
	case BackendPostgreSQL, BackendMySQL, BackendMongoDB:
		return true
	}
	return false
}

// SQLTableMessage is the message of a cleanup of Flask-Session's SQLAlchemy
// table, the same on every SQL backend: the outcome, the rows kept for
// having no expiry (and why they have none), and the error that stopped it.
func SQLTableMessage(rep Report, err error) string {
	var b strings.Builder
	WriteOutcome(&b, rep, "sessions", "of", err)
	if n := rep.Kept["noExpiry"]; n > 0 {
		fmt.Fprintf(&b, "; kept %d with no expiry (non-permanent sessions of Flask-Session 0.3/0.4, or rows written before 0.7:"+
			" 0.3/0.4 serve them until the browser drops the cookie, 0.7+ deletes one only when it reads it; delete them by hand once no app version needs them)", n)
	}
	if err != nil {
		fmt.Fprintf(&b, "; stopped: %v", err)
	}
	return b.String()
}
