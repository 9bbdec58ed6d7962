package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// Flask-Session's SQLAlchemy backend keeps one row per session in a table
// (default "sessions"): id SERIAL PRIMARY KEY, session_id VARCHAR(255) UNIQUE,
// data BYTEA, expiry TIMESTAMP (naive UTC). Nothing expires by itself and
// there is no index on expiry, so the cleanup deletes the rows whose expiry
// has passed, in short transactions, and keeps rows with a NULL expiry
// (written by 0.3/0.4 for non-permanent sessions), which the app never
// expires either.

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
)

type pgStore struct {
	cfg     sessionstore.Config
	connCfg *pgx.ConnConfig
	// password is removed from every error message, however it is spelled.
	password string

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
	return &pgStore{cfg: cfg, connCfg: connCfg, password: password}, nil
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

// pgTableInfo is what the catalog says about the configured table.
type pgTableInfo struct {
	exists    bool
	schema    string // where it is, or would be created
	kind      string // pg_class.relkind
	hasExpiry bool
}

func (t pgTableInfo) name(table string) string { return t.schema + "." + table }

func (s *pgStore) pgInspect(ctx context.Context, conn *pgx.Conn) (pgTableInfo, error) {
	var (
		info      pgTableInfo
		current   *string
		nspname   *string
		kind      *string
		hasExpiry *bool
	)
	// to_regclass resolves an unqualified name through search_path as the
	// app does, and answers NULL rather than an error when it is missing.
	err := conn.QueryRow(ctx, `
SELECT current_schema(), n.nspname, c.relkind::text,
       EXISTS (SELECT 1 FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attname = 'expiry' AND a.attnum > 0 AND NOT a.attisdropped)
  FROM (SELECT to_regclass($1) AS oid) r
  LEFT JOIN pg_class c ON c.oid = r.oid
  LEFT JOIN pg_namespace n ON n.oid = c.relnamespace`, s.pgIdent().Sanitize()).
		Scan(&current, &nspname, &kind, &hasExpiry)
	if err != nil {
		return info, s.pgError("inspect table", err)
	}
	switch {
	case nspname != nil:
		info.schema = *nspname
	case s.cfg.Schema != "":
		info.schema = s.cfg.Schema
	case current != nil:
		info.schema = *current
	default:
		info.schema = "(no schema on search_path)"
	}
	if kind == nil {
		return info, nil
	}
	info.exists, info.kind = true, *kind
	info.hasExpiry = hasExpiry != nil && *hasExpiry
	return info, nil
}

// pgUsable checks the table is one the cleanup can work on.
func (s *pgStore) pgUsable(info pgTableInfo, op string) error {
	name := info.name(s.cfg.Table)
	if !info.exists {
		return sessionstore.NewError(sessionstore.ErrMissingTable, op, fmt.Errorf("table %s does not exist in database %q", name, s.connCfg.Database))
	}
	if info.kind != "r" {
		// ctid ranges (see Cleanup) address one heap, which partitioned
		// tables and views do not have.
		return sessionstore.NewError(sessionstore.ErrConfig, sessionstore.EnvTable, fmt.Errorf("%s is not a plain table (relkind %q)", name, info.kind))
	}
	if !info.hasExpiry {
		return sessionstore.NewError(sessionstore.ErrConfig, sessionstore.EnvTable, fmt.Errorf("table %s has no expiry column, so it is not Flask-Session's", name))
	}
	return nil
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

// EnsureSchema creates the table in Flask-Session's layout when it is missing
// and Config.CreateTable asks for it, and the expiry index when
// Config.CreateExpiryIndex asks for it.
func (s *pgStore) EnsureSchema(ctx context.Context) (sessionstore.SchemaResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var res sessionstore.SchemaResult
	conn, err := s.pgConnect(ctx)
	if err != nil {
		return res, err
	}
	info, err := s.pgInspect(ctx, conn)
	if err != nil {
		return res, err
	}
	name := info.name(s.cfg.Table)
	if !info.exists {
		if !s.cfg.CreateTable {
			res.Message = fmt.Sprintf("table %s does not exist; the app creates it, or set createTable", name)
			return res, nil
		}
		created, err := s.pgCreateTable(ctx, conn)
		if err != nil {
			return res, err
		}
		res.Created = append(res.Created, created...)
		if info, err = s.pgInspect(ctx, conn); err != nil {
			return res, err
		}
	}
	if err := s.pgUsable(info, "ensure schema"); err != nil {
		return res, err
	}
	res.Present = true
	res.Message = fmt.Sprintf("table %s is present", name)
	if !s.cfg.CreateExpiryIndex {
		return res, nil
	}
	indexMsg, created, ready, err := s.pgEnsureExpiryIndex(ctx, conn, info)
	if err != nil {
		return res, err
	}
	if created {
		res.Created = append(res.Created, "expiry index")
	}
	res.Present = ready
	res.Message += "; " + indexMsg
	return res, nil
}

// pgCreateTable creates the table as SQLAlchemy's create_all() does for
// Flask-Session's model, so an unchanged app uses it.
func (s *pgStore) pgCreateTable(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	var created []string
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, s.pgError("create table", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	if s.cfg.Schema != "" {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, s.cfg.Schema).Scan(&exists); err != nil {
			return nil, s.pgError("create schema", err)
		}
		if !exists {
			if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{s.cfg.Schema}.Sanitize()); err != nil {
				return nil, s.pgError("create schema", err)
			}
			created = append(created, "schema")
		}
	}
	_, err = tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.pgIdent().Sanitize()+` (
	id SERIAL NOT NULL,
	session_id VARCHAR(255),
	data BYTEA,
	expiry TIMESTAMP WITHOUT TIME ZONE,
	PRIMARY KEY (id),
	UNIQUE (session_id)
)`)
	if err == nil {
		err = tx.Commit(ctx)
	}
	if err != nil {
		var pgErr *pgconn.PgError
		// Two creators at once: IF NOT EXISTS does not stop the loser from
		// failing on the catalog's unique index; the table is there anyway.
		if errors.As(err, &pgErr) && (pgErr.Code == "23505" || pgErr.Code == "42P07") {
			return nil, nil
		}
		return nil, s.pgError("create table", err)
	}
	return append(created, "table"), nil
}

// pgExpiryIndexName is "<table>_expiry_idx", cut to 63 bytes as PostgreSQL
// would cut it, so looking it up finds what CREATE INDEX made.
func pgExpiryIndexName(table string) string {
	name := table + "_expiry_idx"
	if len(name) > sessionstore.MaxIdentifierLength {
		name = name[:sessionstore.MaxIdentifierLength]
	}
	return name
}

// pgEnsureExpiryIndex creates the index with CREATE INDEX CONCURRENTLY, which
// does not block writers. An interrupted concurrent build leaves an INVALID
// index behind that IF NOT EXISTS would keep forever; it is dropped and built
// again.
func (s *pgStore) pgEnsureExpiryIndex(ctx context.Context, conn *pgx.Conn, info pgTableInfo) (msg string, created, ready bool, err error) {
	name := pgExpiryIndexName(s.cfg.Table)
	qualified := pgx.Identifier{info.schema, name}.Sanitize()
	table := pgx.Identifier{info.schema, s.cfg.Table}.Sanitize()

	var (
		valid    *bool
		other    *string
		building bool
	)
	err = conn.QueryRow(ctx, `
SELECT (SELECT i.indisvalid FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
         WHERE i.indrelid = to_regclass($1) AND ic.relname = $2),
       (SELECT ic.relname::text FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = to_regclass($1) AND a.attname = 'expiry' AND i.indisvalid AND i.indpred IS NULL
         ORDER BY ic.relname LIMIT 1),
       EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.relid = to_regclass($1))`,
		table, name).Scan(&valid, &other, &building)
	if err != nil {
		return "", false, false, s.pgError("inspect expiry index", err)
	}
	switch {
	case valid != nil && *valid:
		return fmt.Sprintf("expiry index %s is present", name), false, true, nil
	case valid == nil && other != nil:
		return fmt.Sprintf("index %s already covers expiry", *other), false, true, nil
	case valid != nil && building:
		// An index being built concurrently is invalid until it is done;
		// the next call finds it finished.
		return fmt.Sprintf("expiry index %s is being built by another session", name), false, false, nil
	case valid != nil:
		if _, err := conn.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+qualified); err != nil {
			return "", false, false, s.pgError("drop invalid expiry index", err)
		}
	}
	// No transaction: CREATE INDEX CONCURRENTLY refuses to run inside one.
	if _, err := conn.Exec(ctx, "CREATE INDEX CONCURRENTLY IF NOT EXISTS "+pgx.Identifier{name}.Sanitize()+" ON "+table+" (expiry)"); err != nil {
		return "", false, false, s.pgError("create expiry index", err)
	}
	msg = fmt.Sprintf("expiry index %s created", name)
	if valid != nil {
		msg = fmt.Sprintf("expiry index %s was left invalid by an interrupted build; rebuilt it", name)
	}
	return msg, true, true, nil
}

// Cleanup deletes the rows whose expiry is at or before the database's clock
// (read once, in UTC, since the column is naive UTC), so the app's and the
// job's clocks cannot disagree; opts.Now is not used.
//
// A first read-only pass counts the rows (scanned, expired, NULL expiry);
// opts.Progress is called after it (with no batch yet) and after each batch.
// Then the table's heap is walked in ranges of ctid that each hold about
// BatchSize rows (so a batch deletes at most about BatchSize: up to a page
// more where rows are packed unevenly), and each range is one DELETE, its
// own transaction:
//
//	DELETE FROM t WHERE ctid >= $lo AND ctid < $hi AND expiry <= $now
//
// A ctid range is read like a slice of a sequential scan, so the walk reads
// every page once, with or without an index on expiry and whatever the ids;
// a keyset walk on the primary key reads each row through the index and
// costs about twice as much. The expiry condition is part of the DELETE
// itself: when a concurrent refresh has changed a row, PostgreSQL re-checks it
// against the row's newest version, so a session refreshed meanwhile is kept.
// A refreshed row that moves to a later page is seen there with its new
// expiry. Rows with a NULL expiry never match and are reported as kept.
func (s *pgStore) Cleanup(ctx context.Context, opts sessionstore.CleanupOptions) (sessionstore.Report, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	rep := sessionstore.Report{Backend: sessionstore.BackendPostgreSQL, DryRun: opts.DryRun}
	done := func(err error) (sessionstore.Report, error) {
		rep.Duration = time.Since(start)
		rep.Message = s.pgMessage(rep, err)
		return rep, err
	}
	batchSize := opts.BatchSizeOr(pgDefaultBatchSize)

	conn, err := s.pgConnect(ctx)
	if err != nil {
		return done(err)
	}
	info, err := s.pgInspect(ctx, conn)
	if err != nil {
		return done(err)
	}
	if err := s.pgUsable(info, "cleanup"); err != nil {
		return done(err)
	}
	// synchronous_commit off: a batch whose commit a crash loses leaves only
	// expired rows, which the next run deletes. No index scans: a plan that
	// read the expiry index inside each range would reread every expired
	// row's entry once per batch.
	if _, err := conn.Exec(ctx, "SET synchronous_commit = off; SET enable_indexscan = off; SET enable_bitmapscan = off"); err != nil {
		return done(s.pgError("cleanup", err))
	}
	defer func() {
		if !conn.IsClosed() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_, _ = conn.Exec(ctx, "RESET synchronous_commit; RESET enable_indexscan; RESET enable_bitmapscan")
		}
	}()

	if err := conn.QueryRow(ctx, `SELECT now() AT TIME ZONE 'utc'`).Scan(&rep.Now); err != nil {
		return done(s.pgError("cleanup: read the database clock", err))
	}
	rep.Now = rep.Now.UTC()
	table := s.pgIdent().Sanitize()
	var withExpiry int64
	err = conn.QueryRow(ctx, `SELECT count(*), count(expiry), count(*) FILTER (WHERE expiry <= $1) FROM `+table, rep.Now).
		Scan(&rep.Scanned, &withExpiry, &rep.Expired)
	if err != nil {
		return done(s.pgError("cleanup: count sessions", err))
	}
	rep.AddKept("noExpiry", rep.Scanned-withExpiry)
	progress := func() { opts.ReportProgress(rep, start) }
	if opts.DryRun || rep.Expired == 0 {
		return done(nil)
	}
	// Counting a big table takes a while: say what is to come.
	progress()
	// The heap's size now: rows expired at rep.Now are all within it, since
	// rows written or refreshed later carry a later expiry.
	var pages int64
	if err := conn.QueryRow(ctx, `SELECT pg_relation_size(to_regclass($1)) / current_setting('block_size')::bigint`, table).Scan(&pages); err != nil {
		return done(s.pgError("cleanup: read the table's size", err))
	}

	deleteSQL := `DELETE FROM ` + table + ` WHERE ctid >= $1 AND ctid < $2 AND expiry <= $3`
	// A batch, once sent, is let finish: it is short, and stopping between
	// batches leaves nothing half done.
	batchCtx := context.WithoutCancel(ctx)
	ranges := pgRangeCursor{pages: pages, rowsPerPage: float64(rep.Scanned) / float64(max(pages, 1))}
	// Ranges hold batchSize rows at the table's average density; where rows
	// are packed tighter (the rest of the table emptied by an earlier purge
	// and not yet vacuumed), a range holds more, so after a batch that
	// deleted more than batchSize the ranges shrink, and grow back after.
	rangeRows := batchSize
	for {
		lo, hi, ok := ranges.next(rangeRows)
		if !ok {
			break
		}
		if err := ctx.Err(); err != nil {
			return done(sessionstore.Classify("cleanup", fmt.Errorf("stopped after %d batches: %w", rep.Batches, err)))
		}
		bctx, cancel := context.WithTimeout(batchCtx, pgBatchTimeout)
		tag, err := conn.Exec(bctx, deleteSQL, lo, hi, rep.Now)
		cancel()
		if err != nil {
			if conn.IsClosed() {
				err = fmt.Errorf("connection lost after %d batches (%d sessions deleted); a rerun finishes the job: %w", rep.Batches, rep.Deleted, err)
			}
			return done(s.pgError("cleanup", err))
		}
		deleted := tag.RowsAffected()
		rep.Batches++
		rep.Deleted += deleted
		switch {
		case deleted > int64(batchSize):
			rangeRows = max(1, int(int64(rangeRows)*int64(batchSize)/deleted))
		case deleted < int64(batchSize)/2:
			rangeRows = min(batchSize, rangeRows*2)
		}
		progress()
	}
	return done(nil)
}

// pgRangeCursor walks pages [0, pages) in ctid ranges [lo, hi) of about a
// given number of rows each, rowsPerPage being the table's average. A range
// is whole pages, or a slice of line pointers within a page when it should
// hold fewer rows than a page does; a page's last slice runs to its end, so
// together the ranges cover every row once.
type pgRangeCursor struct {
	pages       int64
	rowsPerPage float64
	page        int64
	offset      int // next line pointer of page; 0 = the page's start
}

func pgTID(page int64, offset int) pgtype.TID {
	return pgtype.TID{BlockNumber: uint32(page), OffsetNumber: uint16(offset), Valid: true}
}

func (c *pgRangeCursor) next(rows int) (lo, hi pgtype.TID, ok bool) {
	if c.page >= c.pages {
		return lo, hi, false
	}
	rows = max(rows, 1)
	lo = pgTID(c.page, c.offset)
	if c.offset == 0 && float64(rows) >= c.rowsPerPage {
		step := int64(1)
		if c.rowsPerPage > 0 {
			step = max(1, int64(float64(rows)/c.rowsPerPage))
		}
		c.page = min(c.page+step, c.pages)
		return lo, pgTID(c.page, 0), true
	}
	// Line pointers are numbered from 1.
	end := max(c.offset, 1) + rows
	if float64(end-1) >= c.rowsPerPage || end > math.MaxUint16 {
		c.page, c.offset = c.page+1, 0
		return lo, pgTID(c.page, 0), true
	}
	c.offset = end
	return lo, pgTID(c.page, end), true
}

func (s *pgStore) pgMessage(rep sessionstore.Report, err error) string {
	var b strings.Builder
	sessionstore.WriteOutcome(&b, rep, "sessions", "of", err)
	if n := rep.Kept["noExpiry"]; n > 0 {
		fmt.Fprintf(&b, "; kept %d with no expiry (written as non-permanent or by Flask-Session < 0.7; the app never expires them)", n)
	}
	if err != nil {
		fmt.Fprintf(&b, "; stopped: %v", err)
	}
	return b.String()
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
