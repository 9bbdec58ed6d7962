// Package mysql is the session store on MySQL 8 and MariaDB 10.6+, in the
// table Flask-Session's SQLAlchemy backend gets from create_all() there:
// id INTEGER AUTO_INCREMENT PRIMARY KEY, session_id VARCHAR(255) UNIQUE,
// data BLOB, expiry DATETIME (naive UTC, as the app writes it). Nothing
// expires by itself and there is no index on expiry, so the cleanup walks
// the primary key and deletes the rows whose expiry has passed, in short
// transactions (cleanup.go, walk.go), and keeps rows with a NULL expiry.
//
// The package is split by concern: this file connects and classifies
// errors, schema.go checks and creates the table, cleanup.go reads the
// cut-off and counts, walk.go deletes.
//
// Nothing it sends changes the session's state: READ COMMITTED is asked for
// each batch transaction alone (SET TRANSACTION, which lasts one
// transaction), so a pooler (ProxySQL) that hands the connection on passes
// no setting to the next client.
package mysql

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

func init() { sessionstore.Register(sessionstore.BackendMySQL, newMySQL) }

const (
	myDefaultBatchSize = 1000
	// myConnectTimeout bounds dialing when ctx has no earlier deadline.
	myConnectTimeout = 15 * time.Second
	// myBatchTimeout bounds one batch, which normally takes milliseconds,
	// so a server that stops answering cannot hang the job.
	myBatchTimeout = 2 * time.Minute
)

type myStore struct {
	cfg     sessionstore.Config
	connCfg *mysql.Config
	// password is removed from every error message, however it is spelled.
	password string

	// skipRecheck deletes the ids the snapshot found expired without
	// locking them and re-checking expiry: the broken cleanup the
	// concurrency test must catch. Tests only.
	skipRecheck bool
	// afterSnapshot, when set, runs after each batch's lockless read with
	// the ids it found expired, before they are locked. Tests only.
	afterSnapshot func(expired []int64)
	// beforeCommit, when set, runs inside each batch transaction before
	// its COMMIT. Tests only.
	beforeCommit func(tx *sql.Tx)
	// forceLockPath makes every batch take the locking transaction that
	// MySQL gets, so tests on MariaDB exercise it. Tests only.
	forceLockPath bool
	// maxBatch, when set, caps the batch size below myMaxBatch, so the
	// race tests get many small batches. Tests only.
	maxBatch int
	// onBatch, when set, is told each batch's size and lock hold. Tests
	// and the benchmark only.
	onBatch func(size int, hold time.Duration)
	// longestHold is the longest a batch transaction of the last Cleanup
	// held its locks, for tests and the benchmark.
	longestHold time.Duration

	mu sync.Mutex
	db *sql.DB
}

func newMySQL(cfg sessionstore.Config) (sessionstore.Store, error) {
	if cfg.Table == "" {
		cfg.Table = sessionstore.DefaultTable
	}
	// A Config built in code is held to the rules the Secret's is.
	check := cfg
	check.Backend = sessionstore.BackendMySQL
	check.Lifetime = max(check.Lifetime, sessionstore.MinLifetime)
	check.GracePeriod = 0
	if err := check.Validate(); err != nil {
		return nil, err
	}
	parsed, err := sessionstore.ParseMySQLURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	return &myStore{cfg: cfg, connCfg: myDriverConfig(parsed), password: parsed.Password}, nil
}

// myDriverConfig maps the URL onto the Go driver's settings. The TLS
// modes are MySQL's --ssl-mode: preferred falls back to plain text when
// the server has no TLS, required insists on TLS but verifies nothing,
// verify-identity checks the certificate and the host name.
func myDriverConfig(u sessionstore.MySQLURL) *mysql.Config {
	c := mysql.NewConfig()
	c.User, c.Passwd = u.User, u.Password
	c.Net, c.Addr = "tcp", net.JoinHostPort(u.Host, strconv.Itoa(u.Port))
	c.DBName = u.Database
	c.Timeout = myConnectTimeout
	// The driver would log network errors on stderr by itself; they come
	// back as errors, classified and scrubbed.
	c.Logger = myNopLogger{}
	c.ConnectionAttributes = "program_name:sessionstore-cleanup"
	// Arguments are put in the text of each statement, as the driver
	// escapes them, rather than sent with server-side prepared statements:
	// one round trip instead of three (prepare, execute, close), and no
	// statement left in the session for a pooler to mishandle.
	c.InterpolateParams = true
	switch u.TLS {
	case sessionstore.MySQLTLSDisabled:
		c.TLSConfig = "false"
	case sessionstore.MySQLTLSRequired:
		c.TLSConfig = "skip-verify"
	case sessionstore.MySQLTLSVerifyIdentity:
		c.TLSConfig = "true"
	default:
		c.TLSConfig = "preferred"
	}
	return c
}

type myNopLogger struct{}

func (myNopLogger) Print(...any) {}

// myScrubbed removes the password from an error's message, raw and
// percent-encoded, on top of the URL scrubbing NewError does.
type myScrubbed struct {
	err      error
	password string
}

func (e myScrubbed) Error() string {
	msg := e.err.Error()
	if e.password != "" {
		for _, p := range []string{e.password, url.QueryEscape(e.password), url.PathEscape(e.password), url.UserPassword("", e.password).String()[1:]} {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return msg
}

func (e myScrubbed) Unwrap() error { return e.err }

// MySQL server error numbers the store tells apart.
const (
	myErAccessDenied       = 1045 // bad user or password
	myErDBAccessDenied     = 1044 // no rights on the database
	myErAccessDeniedNoPass = 1698 // MariaDB: an unknown user, or one its auth plugin refused
	myErBadDB              = 1049 // unknown database
	myErNoSuchTable        = 1146
	myErTableExists        = 1050
	myErLockWaitTimeout    = 1205
	myErLockDeadlock       = 1213
)

// myError classifies err, adding what only the server's error number tells.
func (s *myStore) myError(op string, err error) error {
	if err == nil {
		return nil
	}
	var se *sessionstore.Error
	if errors.As(err, &se) {
		return err
	}
	err = myScrubbed{err, s.password}
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		switch myErr.Number {
		case myErAccessDenied, myErDBAccessDenied, myErAccessDeniedNoPass:
			return sessionstore.NewError(sessionstore.ErrAuth, op, err)
		case myErBadDB, myErNoSuchTable:
			return sessionstore.NewError(sessionstore.ErrMissingTable, op, err)
		default:
			// A server's answer, not a network failure, whatever its words.
			return sessionstore.NewError(sessionstore.ErrUnknown, op, err)
		}
	}
	if errors.Is(err, mysql.ErrNoTLS) {
		return sessionstore.NewError(sessionstore.ErrTLS, op, err)
	}
	return sessionstore.Classify(op, err)
}

// myOpen returns the store's pool of one connection, opened lazily.
func (s *myStore) myOpen() (*sql.DB, error) {
	if s.db != nil {
		return s.db, nil
	}
	connector, err := mysql.NewConnector(s.connCfg.Clone())
	if err != nil {
		return nil, sessionstore.NewError(sessionstore.ErrConfig, sessionstore.EnvURL, myScrubbed{err, s.password})
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	s.db = db
	return db, nil
}

// myConn takes the one connection for a call, so that every statement of
// it runs in the same session.
func (s *myStore) myConn(ctx context.Context, op string) (*sql.Conn, error) {
	db, err := s.myOpen()
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, s.myError(op+": connect to mysql", err)
	}
	if err := conn.PingContext(ctx); err != nil {
		conn.Close()
		return nil, s.myError(op+": connect to mysql", err)
	}
	return conn, nil
}

// myQuoteIdent quotes a name for MySQL; names are validated plain
// identifiers already, this is the second fence.
func myQuoteIdent(name string) string {
	return "`" + strings.ReplaceAll(name, "`", "``") + "`"
}

func (s *myStore) myTable() string { return myQuoteIdent(s.cfg.Table) }

func (s *myStore) Ping(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	conn, err := s.myConn(ctx, "ping")
	if err != nil {
		return err
	}
	defer conn.Close()
	info, err := s.myInspect(ctx, conn)
	if err != nil {
		return err
	}
	return s.myUsable(info, "ping mysql")
}

func (s *myStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	return s.myError("close", err)
}
