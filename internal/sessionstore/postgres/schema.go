package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// Type OIDs of the expiry column that the cleanup accepts.
const (
	pgTimestampOID   = 1114 // timestamp without time zone: naive, UTC or local
	pgTimestamptzOID = 1184 // timestamp with time zone: an instant
)

// pgTableInfo is what the catalog says about the configured table.
type pgTableInfo struct {
	exists bool
	schema string // where it is, or would be created
	kind   string // pg_class.relkind
	// expiryType is the expiry column's type OID, 0 when there is none.
	expiryType    uint32
	hasSessionID  bool
	hasData       bool
	serverVersion int // server_version_num, e.g. 150020
}

func (t pgTableInfo) name(table string) string { return t.schema + "." + table }

func (s *pgStore) pgInspect(ctx context.Context, conn *pgx.Conn) (pgTableInfo, error) {
	var (
		info       pgTableInfo
		current    *string
		nspname    *string
		kind       *string
		expiryType *int64
		sessionID  *bool
		data       *bool
	)
	// to_regclass resolves an unqualified name through search_path as the
	// app does, and answers NULL rather than an error when it is missing.
	err := conn.QueryRow(ctx, `
SELECT current_schema(), n.nspname, c.relkind::text,
       (SELECT a.atttypid::int8 FROM pg_attribute a
         WHERE a.attrelid = c.oid AND a.attname = 'expiry' AND a.attnum > 0 AND NOT a.attisdropped),
       EXISTS (SELECT 1 FROM pg_attribute a
         WHERE a.attrelid = c.oid AND a.attname = 'session_id' AND a.attnum > 0 AND NOT a.attisdropped),
       EXISTS (SELECT 1 FROM pg_attribute a
         WHERE a.attrelid = c.oid AND a.attname = 'data' AND a.attnum > 0 AND NOT a.attisdropped),
       current_setting('server_version_num')::int
  FROM (SELECT to_regclass($1) AS oid) r
  LEFT JOIN pg_class c ON c.oid = r.oid
  LEFT JOIN pg_namespace n ON n.oid = c.relnamespace`, s.pgIdent().Sanitize()).
		Scan(&current, &nspname, &kind, &expiryType, &sessionID, &data, &info.serverVersion)
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
	if expiryType != nil {
		info.expiryType = uint32(*expiryType)
	}
	info.hasSessionID = sessionID != nil && *sessionID
	info.hasData = data != nil && *data
	return info, nil
}

// pgUsable checks the table is Flask-Session's, one the cleanup may delete
// from: a plain table with session_id, data and a timestamp expiry. A table
// that only happens to have an expiry column is someone else's data.
func (s *pgStore) pgUsable(info pgTableInfo, op string) error {
	name := info.name(s.cfg.Table)
	if !info.exists {
		return sessionstore.NewError(sessionstore.ErrMissingTable, op, fmt.Errorf("table %s does not exist in database %q", name, s.connCfg.Database))
	}
	if info.kind != "r" {
		// ctid ranges (see walk.go) address one heap, which partitioned
		// tables and views do not have.
		return sessionstore.NewError(sessionstore.ErrConfig, sessionstore.EnvTable, fmt.Errorf("%s is not a plain table (relkind %q)", name, info.kind))
	}
	var missing []string
	if !info.hasSessionID {
		missing = append(missing, "no session_id column")
	}
	if !info.hasData {
		missing = append(missing, "no data column")
	}
	switch info.expiryType {
	case pgTimestampOID, pgTimestamptzOID:
	case 0:
		missing = append(missing, "no expiry column")
	default:
		missing = append(missing, "expiry is not a timestamp")
	}
	if len(missing) > 0 {
		return sessionstore.NewError(sessionstore.ErrTableMismatch, op,
			fmt.Errorf("table %s is not Flask-Session's (%s); nothing was deleted", name, strings.Join(missing, ", ")))
	}
	return nil
}

// EnsureSchema creates the table in Flask-Session's layout when it is missing
// and Config.CreateTable asks for it, and sees to the expiry index when
// Config.CreateExpiryIndex asks for it (index.go).
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
	idx, err := s.pgEnsureExpiryIndex(ctx, conn, info)
	if err != nil {
		return res, err
	}
	if idx.created {
		res.Created = append(res.Created, "expiry index")
	}
	res.Present = idx.ready
	res.Pending = idx.pending
	res.Message += "; " + idx.message
	return res, nil
}

// pgCreateTable creates the table as SQLAlchemy's create_all() does for
// Flask-Session's model, so an unchanged app uses it. With a sequence that
// is, as for Column(Integer, Sequence(name), primary_key=True): CREATE
// SEQUENCE name, unqualified (SQLAlchemy does not give it the table's
// schema), and id INTEGER NOT NULL with no default, since SQLAlchemy calls
// nextval itself in each INSERT.
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
	idColumn := "id SERIAL NOT NULL"
	if s.cfg.Sequence != "" {
		idColumn = "id INTEGER NOT NULL"
		made, err := s.pgCreateSequence(ctx, tx)
		if err != nil {
			return nil, err
		}
		if made {
			created = append(created, "sequence")
		}
	}
	_, err = tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.pgIdent().Sanitize()+` (
	`+idColumn+`,
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

// pgCreateSequence creates Config.Sequence where SQLAlchemy would: on the
// search_path, unqualified.
func (s *pgStore) pgCreateSequence(ctx context.Context, tx pgx.Tx) (bool, error) {
	name := pgx.Identifier{s.cfg.Sequence}.Sanitize()
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&exists); err != nil {
		return false, s.pgError("create sequence", err)
	}
	if exists {
		return false, nil
	}
	if _, err := tx.Exec(ctx, "CREATE SEQUENCE "+name); err != nil {
		return false, s.pgError("create sequence", err)
	}
	return true, nil
}
