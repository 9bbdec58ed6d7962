package postgres

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// Flask-Session's SQLAlchemy backend keeps one row per session in a table
// (default "sessions"): id INTEGER PRIMARY KEY (SERIAL, or from
// SESSION_SQLALCHEMY_SEQUENCE), session_id VARCHAR(255) UNIQUE, data BYTEA,
// expiry TIMESTAMP. Nothing expires by itself and there is no index on
// expiry, so the cleanup deletes the rows whose expiry has passed, in short
// transactions (cleanup.go), and keeps rows with a NULL expiry.
//
// The package is split by concern: this file connects and classifies
// errors, schema.go checks and creates the table, index.go the optional
// expiry index, cleanup.go and walk.go delete.
//
// Everything it sends works through a transaction-mode pooler (PgBouncer):
// no prepared statements (QueryExecModeExec), and no session-level SET;
// settings are SET LOCAL inside the one transaction they are for.

func init() { sessionstore.Register(sessionstore.BackendPostgreSQL, newPostgreSQL) }

const (
	pgDefaultBatchSize = 1000
	// pgBatchTimeout bounds one batch statement, which normally takes
	// milliseconds, so a server that stops answering cannot hang the job.
	pgBatchTimeout = 2 * time.Minute
	// pgDefaultConnectTimeout applies when neither ctx nor the URL's
	// connect_timeout bounds connecting.
	pgDefaultConnectTimeout = 15 * time.Second
	pgApplicationName       = "sessionstore-cleanup"
	// pgIndexLockWait is how long the index build may wait on other
	// transactions' locks, and how old a transaction may be before a
	// build is not started at all (index.go).
	pgIndexLockWait = 5 * time.Second
	// pgIndexBuildBudget bounds a whole index build, waits included.
	pgIndexBuildBudget = 2 * time.Minute
)

type pgStore struct {
	cfg     sessionstore.Config
	connCfg *pgx.ConnConfig
	// password is removed from every error message, however it is spelled.
	password string

	// Bounds of the index build (index.go); tests shorten them.
	indexLockWait, indexBuildBudget time.Duration
	// forceKeysetWalk makes Cleanup walk the primary key as it does on
	// PostgreSQL 13 and older, so tests on a newer server exercise it.
	forceKeysetWalk bool
	// lastWalk names the walk the last Cleanup used, for tests.
	lastWalk string

	mu   sync.Mutex
	conn *pgx.Conn
}

func newPostgreSQL(cfg sessionstore.Config) (sessionstore.Store, error) {
	if cfg.Table == "" {
		cfg.Table = sessionstore.DefaultTable
	}
	if err := sessionstore.ValidatePostgresNames(cfg.Table, cfg.Schema); err != nil {
		return nil, err
	}
	connCfg, password, err := pgParseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	return &pgStore{cfg: cfg, connCfg: connCfg, password: password,
		indexLockWait: pgIndexLockWait, indexBuildBudget: pgIndexBuildBudget}, nil
}

// pgParseURL parses a postgres:// or postgresql:// URL without ever quoting
// it in an error: parsers' messages repeat the URL, password included.
func pgParseURL(raw string) (*pgx.ConnConfig, string, error) {
	u, err := sessionstore.ParseURL(raw, "postgres:// or postgresql://", "postgres", "postgresql")
	if err != nil {
		return nil, "", err
	}
	password, _ := u.User.Password()
	connCfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return nil, "", sessionstore.NewError(sessionstore.ErrConfig, sessionstore.EnvURL, pgScrubbed{err, password})
	}
	if connCfg.ConnectTimeout == 0 {
		connCfg.ConnectTimeout = pgDefaultConnectTimeout
	}
	if _, ok := connCfg.RuntimeParams["application_name"]; !ok {
		// Lets a DBA see (and tests find) the cleanup in pg_stat_activity.
		connCfg.RuntimeParams["application_name"] = pgApplicationName
	}
	if connCfg.DefaultQueryExecMode != pgx.QueryExecModeSimpleProtocol {
		// The default caches prepared statements per connection, which a
		// transaction-mode pooler breaks (SQLSTATE 26000) as soon as other
		// clients share its server connections; Exec sends each statement
		// unnamed, in one round trip.
		connCfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	}
	return connCfg, password, nil
}

// pgScrubbed removes the password from an error's message, raw and
// percent-encoded, on top of the URL scrubbing NewError does.
type pgScrubbed struct {
	err      error
	password string
}

func (e pgScrubbed) Error() string {
	msg := e.err.Error()
	if e.password != "" {
		for _, p := range []string{e.password, url.QueryEscape(e.password), url.PathEscape(e.password), url.UserPassword("", e.password).String()[1:]} {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return msg
}

func (e pgScrubbed) Unwrap() error { return e.err }

// pgError classifies err, adding what only PostgreSQL's SQLSTATE tells.
func (s *pgStore) pgError(op string, err error) error {
	if err == nil {
		return nil
	}
	var se *sessionstore.Error
	if errors.As(err, &se) {
		return err
	}
	err = pgScrubbed{err, s.password}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000": // invalid_password, invalid_authorization_specification
			return sessionstore.NewError(sessionstore.ErrAuth, op, err)
		case "3D000", "42P01", "3F000": // no such database, table or schema
			return sessionstore.NewError(sessionstore.ErrMissingTable, op, err)
		case "42501": // insufficient_privilege: a server answer, not a network failure
			return sessionstore.NewError(sessionstore.ErrUnknown, op, err)
		}
	}
	return sessionstore.Classify(op, err)
}

// pgConnect returns the open connection, or opens one when there is none or
// the last one broke (a rerun after a lost connection starts afresh).
func (s *pgStore) pgConnect(ctx context.Context) (*pgx.Conn, error) {
	if s.conn != nil && !s.conn.IsClosed() {
		return s.conn, nil
	}
	conn, err := pgx.ConnectConfig(ctx, s.connCfg.Copy())
	if err != nil {
		return nil, s.pgError("connect to postgresql", err)
	}
	s.conn = conn
	return conn, nil
}

func (s *pgStore) pgIdent() pgx.Identifier {
	if s.cfg.Schema != "" {
		return pgx.Identifier{s.cfg.Schema, s.cfg.Table}
	}
	return pgx.Identifier{s.cfg.Table}
}

func (s *pgStore) Ping(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	conn, err := s.pgConnect(ctx)
	if err != nil {
		return err
	}
	info, err := s.pgInspect(ctx, conn)
	if err != nil {
		return err
	}
	return s.pgUsable(info, "ping postgresql")
}

func (s *pgStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.conn.Close(ctx)
	s.conn = nil
	return s.pgError("close", err)
}
