package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// myTableInfo is what information_schema says about the configured table.
type myTableInfo struct {
	exists   bool
	database string
	kind     string // TABLE_TYPE: BASE TABLE, VIEW, SEQUENCE...
	// expiryType is the expiry column's DATA_TYPE, "" when there is none.
	expiryType   string
	hasSessionID bool
	hasData      bool
	// key is the single integer primary key column the walk follows, ""
	// when the table has none.
	key string
	// server tells MariaDB from MySQL, for sequences and SKIP LOCKED.
	server myServer
}

type myServer struct {
	mariaDB             bool
	major, minor, patch int
}

func (v myServer) atLeast(major, minor, patch int) bool {
	if v.major != major {
		return v.major > major
	}
	if v.minor != minor {
		return v.minor > minor
	}
	return v.patch >= patch
}

// sequences: SQLAlchemy gives a Sequence column a real sequence on MariaDB
// 10.3+ only; on MySQL it ignores it and uses AUTO_INCREMENT.
func (v myServer) sequences() bool { return v.mariaDB && v.atLeast(10, 3, 0) }

// skipLocked: SELECT ... FOR UPDATE SKIP LOCKED, MySQL 8.0.1+ and MariaDB 10.6+.
func (v myServer) skipLocked() bool {
	if v.mariaDB {
		return v.atLeast(10, 6, 0)
	}
	return v.atLeast(8, 0, 1)
}

var myVersionNumbers = regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)`)

func myParseVersion(version string) myServer {
	v := myServer{mariaDB: strings.Contains(strings.ToLower(version), "mariadb")}
	if m := myVersionNumbers.FindStringSubmatch(version); m != nil {
		v.major, _ = strconv.Atoi(m[1])
		v.minor, _ = strconv.Atoi(m[2])
		v.patch, _ = strconv.Atoi(m[3])
	}
	return v
}

// myInspectSQL names the schema and the table in each subquery's WHERE, so
// that MariaDB looks up that one table: under a LEFT JOIN's ON it scans
// every database's tables, and waits on any table one of them is creating
// (a CREATE TABLE ... AS SELECT holds its table's exclusive lock throughout).
// Each ? is the table's name.
const myInspectSQL = `
SELECT DATABASE(), VERSION(),
       (SELECT t.TABLE_TYPE FROM information_schema.TABLES t
         WHERE t.TABLE_SCHEMA = DATABASE() AND t.TABLE_NAME = ?),
       (SELECT LOWER(c.DATA_TYPE) FROM information_schema.COLUMNS c
         WHERE c.TABLE_SCHEMA = DATABASE() AND c.TABLE_NAME = ? AND c.COLUMN_NAME = 'expiry'),
       EXISTS (SELECT 1 FROM information_schema.COLUMNS c
         WHERE c.TABLE_SCHEMA = DATABASE() AND c.TABLE_NAME = ? AND c.COLUMN_NAME = 'session_id'),
       EXISTS (SELECT 1 FROM information_schema.COLUMNS c
         WHERE c.TABLE_SCHEMA = DATABASE() AND c.TABLE_NAME = ? AND c.COLUMN_NAME = 'data'),
       (SELECT MIN(c.COLUMN_NAME) FROM information_schema.COLUMNS c
         WHERE c.TABLE_SCHEMA = DATABASE() AND c.TABLE_NAME = ? AND c.COLUMN_KEY = 'PRI'
           AND LOWER(c.DATA_TYPE) IN ('tinyint', 'smallint', 'mediumint', 'int', 'integer', 'bigint')
         HAVING (SELECT COUNT(*) FROM information_schema.COLUMNS p
                  WHERE p.TABLE_SCHEMA = DATABASE() AND p.TABLE_NAME = ? AND p.COLUMN_KEY = 'PRI') = 1)`

func (s *myStore) myInspect(ctx context.Context, conn *sql.Conn) (myTableInfo, error) {
	var (
		info                  myTableInfo
		database, version     string
		kind, expiryType, key sql.NullString
		hasSessionID, hasData sql.NullBool
	)
	name := s.cfg.Table
	err := conn.QueryRowContext(ctx, myInspectSQL, name, name, name, name, name, name).
		Scan(&database, &version, &kind, &expiryType, &hasSessionID, &hasData, &key)
	if err != nil {
		return info, s.myError("inspect table", err)
	}
	info.database, info.server = database, myParseVersion(version)
	if !kind.Valid {
		return info, nil
	}
	info.exists, info.kind = true, kind.String
	info.expiryType, info.key = expiryType.String, key.String
	info.hasSessionID, info.hasData = hasSessionID.Bool, hasData.Bool
	return info, nil
}

func (s *myStore) myName(info myTableInfo) string { return info.database + "." + s.cfg.Table }

// myUsable checks the table is Flask-Session's, one the cleanup may delete
// from: a base table with session_id, data, a date-time expiry, and an
// integer primary key to walk. A table that only happens to have an expiry
// column is someone else's data.
func (s *myStore) myUsable(info myTableInfo, op string) error {
	name := s.myName(info)
	if !info.exists {
		return sessionstore.NewError(sessionstore.ErrMissingTable, op, fmt.Errorf("table %s does not exist", name))
	}
	if info.kind != "BASE TABLE" {
		return sessionstore.NewError(sessionstore.ErrConfig, sessionstore.EnvTable, fmt.Errorf("%s is not a base table (%s)", name, strings.ToLower(info.kind)))
	}
	var missing []string
	if !info.hasSessionID {
		missing = append(missing, "no session_id column")
	}
	if !info.hasData {
		missing = append(missing, "no data column")
	}
	switch info.expiryType {
	case "datetime", "timestamp":
	case "":
		missing = append(missing, "no expiry column")
	default:
		missing = append(missing, "expiry is not a date-time")
	}
	if info.key == "" {
		missing = append(missing, "no single-column integer primary key")
	}
	if len(missing) > 0 {
		return sessionstore.NewError(sessionstore.ErrTableMismatch, op,
			fmt.Errorf("table %s is not Flask-Session's (%s); nothing was deleted", name, strings.Join(missing, ", ")))
	}
	return nil
}

// EnsureSchema creates the table in Flask-Session's layout when it is
// missing and Config.CreateTable asks for it.
func (s *myStore) EnsureSchema(ctx context.Context) (sessionstore.SchemaResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var res sessionstore.SchemaResult
	conn, err := s.myConn(ctx, "ensure schema")
	if err != nil {
		return res, err
	}
	defer conn.Close()
	info, err := s.myInspect(ctx, conn)
	if err != nil {
		return res, err
	}
	name := s.myName(info)
	if !info.exists {
		if !s.cfg.CreateTable {
			res.Message = fmt.Sprintf("table %s does not exist; the app creates it, or set createTable", name)
			return res, nil
		}
		if res.Created, err = s.myCreateTable(ctx, conn, info.server); err != nil {
			return res, err
		}
		if info, err = s.myInspect(ctx, conn); err != nil {
			return res, err
		}
	}
	if err := s.myUsable(info, "ensure schema"); err != nil {
		return res, err
	}
	res.Present = true
	res.Message = fmt.Sprintf("table %s is present", name)
	return res, nil
}

// myCreateTable creates the table as SQLAlchemy's create_all() does for
// Flask-Session's model on this server, so an unchanged app uses it. With a
// sequence on MariaDB that is, as for Column(Integer, Sequence(name),
// primary_key=True): CREATE SEQUENCE name, and id INTEGER NOT NULL with no
// AUTO_INCREMENT, SQLAlchemy calling NEXTVAL itself in each INSERT. MySQL
// has no sequences: SQLAlchemy ignores the setting there, and so does this.
func (s *myStore) myCreateTable(ctx context.Context, conn *sql.Conn, server myServer) ([]string, error) {
	var created []string
	idColumn := "id INTEGER NOT NULL AUTO_INCREMENT"
	if s.cfg.Sequence != "" && server.sequences() {
		idColumn = "id INTEGER NOT NULL"
		made, err := s.myCreateSequence(ctx, conn)
		if err != nil {
			return nil, err
		}
		if made {
			created = append(created, "sequence")
		}
	}
	_, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+s.myTable()+` (
	`+idColumn+`,
	session_id VARCHAR(255),
	data BLOB,
	expiry DATETIME,
	PRIMARY KEY (id),
	UNIQUE (session_id)
)`)
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) && myErr.Number == myErTableExists {
		// Made by another creator meanwhile: it is there anyway.
		return created, nil
	}
	if err != nil {
		return nil, s.myError("create table", err)
	}
	return append(created, "table"), nil
}

// myCreateSequence creates Config.Sequence in the URL's database, as
// SQLAlchemy's CREATE SEQUENCE does (its defaults: start 1, cache 1000).
func (s *myStore) myCreateSequence(ctx context.Context, conn *sql.Conn) (bool, error) {
	var n int
	err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.TABLES
		WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?`, s.cfg.Sequence).Scan(&n)
	if err != nil {
		return false, s.myError("create sequence", err)
	}
	if n > 0 {
		return false, nil
	}
	if _, err := conn.ExecContext(ctx, "CREATE SEQUENCE IF NOT EXISTS "+myQuoteIdent(s.cfg.Sequence)); err != nil {
		return false, s.myError("create sequence", err)
	}
	return true, nil
}
