package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// The expiry index is opt-in (the cleanup walks by ctid and never needs it)
// and built with CREATE INDEX CONCURRENTLY, which does not block writers but
// waits for every transaction in the database that holds a snapshot older
// than the build. So:
//   - the manager's probe (Config.DeferIndexBuild) never builds or drops
//     it: it reports it Pending;
//   - the cleanup job builds it only when no transaction has been open
//     longer than indexLockWait, gives up after indexLockWait spent waiting
//     on locks or indexBuildBudget in all, and then reports Pending rather
//     than failing, so the cleanup still runs;
//   - an invalid index that another session may be building is never
//     dropped.

// pgIndexOutcome is what pgEnsureExpiryIndex found and did.
type pgIndexOutcome struct {
	message string
	created bool
	ready   bool
	pending bool
}

// pgIndexState is what the catalog says about the expiry index.
type pgIndexState struct {
	valid    *bool   // the named index: nil when missing
	other    *string // another valid index that leads with expiry
	building bool    // some other session may be building an index on the table
}

func pgExpiryIndexName(table string) string {
	// "<table>_expiry_idx", cut to 63 bytes as PostgreSQL would cut it, so
	// looking it up finds what CREATE INDEX made.
	name := table + "_expiry_idx"
	if len(name) > sessionstore.MaxIdentifierLength {
		name = name[:sessionstore.MaxIdentifierLength]
	}
	return name
}

func (s *pgStore) pgInspectIndex(ctx context.Context, conn *pgx.Conn, table, name string) (pgIndexState, error) {
	var st pgIndexState
	// A concurrent build holds SHARE UPDATE EXCLUSIVE on the table from
	// start to end, and shows in pg_stat_progress_create_index (whose
	// relid is hidden from other roles, so the lock is checked too).
	err := conn.QueryRow(ctx, `
SELECT (SELECT i.indisvalid FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
         WHERE i.indrelid = to_regclass($1) AND ic.relname = $2),
       (SELECT ic.relname::text FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = to_regclass($1) AND a.attname = 'expiry' AND i.indisvalid AND i.indpred IS NULL
         ORDER BY ic.relname LIMIT 1),
       EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.relid = to_regclass($1))
       OR EXISTS (SELECT 1 FROM pg_locks l WHERE l.relation = to_regclass($1) AND l.granted
                    AND l.mode = 'ShareUpdateExclusiveLock' AND l.pid <> pg_backend_pid())`,
		table, name).Scan(&st.valid, &st.other, &st.building)
	if err != nil {
		return st, s.pgError("inspect expiry index", err)
	}
	return st, nil
}

func (s *pgStore) pgEnsureExpiryIndex(ctx context.Context, conn *pgx.Conn, info pgTableInfo) (pgIndexOutcome, error) {
	name := pgExpiryIndexName(s.cfg.Table)
	table := pgx.Identifier{info.schema, s.cfg.Table}.Sanitize()
	st, err := s.pgInspectIndex(ctx, conn, table, name)
	if err != nil {
		return pgIndexOutcome{}, err
	}
	pending := func(format string, args ...any) (pgIndexOutcome, error) {
		return pgIndexOutcome{message: fmt.Sprintf(format, args...), pending: true}, nil
	}
	switch {
	case st.valid != nil && *st.valid:
		return pgIndexOutcome{message: fmt.Sprintf("expiry index %s is present", name), ready: true}, nil
	case st.valid == nil && st.other != nil:
		return pgIndexOutcome{message: fmt.Sprintf("index %s already covers expiry", *st.other), ready: true}, nil
	case st.valid != nil && st.building:
		return pending("expiry index %s is being built by another session", name)
	case s.cfg.DeferIndexBuild && st.valid != nil:
		return pending("expiry index %s was left invalid by an interrupted build; the next cleanup run rebuilds it", name)
	case s.cfg.DeferIndexBuild:
		return pending("expiry index %s is missing; the next cleanup run builds it", name)
	}
	if since, err := s.pgOldestTransaction(ctx, conn); err != nil {
		return pgIndexOutcome{}, err
	} else if !since.IsZero() {
		return pending("expiry index %s not built: a transaction open since %s would hold the build up; a later run builds it",
			name, since.UTC().Format(time.RFC3339))
	}
	rebuild := st.valid != nil
	if rebuild {
		if err := s.pgBoundedDDL(ctx, conn, "DROP INDEX CONCURRENTLY IF EXISTS "+pgx.Identifier{info.schema, name}.Sanitize()); err != nil {
			return s.pgIndexGaveUp(name, "drop the invalid", err)
		}
	}
	// No transaction: CREATE INDEX CONCURRENTLY refuses to run inside one.
	ddl := "CREATE INDEX CONCURRENTLY IF NOT EXISTS " + pgx.Identifier{name}.Sanitize() + " ON " + table + " (expiry)"
	if err := s.pgBoundedDDL(ctx, conn, ddl); err != nil {
		return s.pgIndexGaveUp(name, "build the", err)
	}
	msg := fmt.Sprintf("expiry index %s created", name)
	if rebuild {
		msg = fmt.Sprintf("expiry index %s was left invalid by an interrupted build; rebuilt it", name)
	}
	return pgIndexOutcome{message: msg, created: true, ready: true}, nil
}

// pgIndexGaveUp turns a build that ran out of time into Pending, so the
// cleanup runs anyway; other errors stay errors.
func (s *pgStore) pgIndexGaveUp(name, what string, err error) (pgIndexOutcome, error) {
	var pgErr *pgconn.PgError
	stopped := errors.Is(err, errPgLockWait) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &pgErr) && (pgErr.Code == "57014" || pgErr.Code == "55P03")) // query_canceled, lock_not_available
	if !stopped {
		return pgIndexOutcome{}, s.pgError("expiry index", err)
	}
	return pgIndexOutcome{pending: true, message: fmt.Sprintf(
		"could not %s expiry index %s in time (%v); a later run retries", what, name, sessionstore.ScrubURLs(err.Error()))}, nil
}

// pgOldestTransaction returns when the oldest transaction of this database
// that holds a snapshot began, if it has been open longer than
// indexLockWait: a concurrent index build would wait for it to end.
func (s *pgStore) pgOldestTransaction(ctx context.Context, conn *pgx.Conn) (time.Time, error) {
	var since *time.Time
	err := conn.QueryRow(ctx, `
SELECT min(xact_start) FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_xmin IS NOT NULL
   AND xact_start < now() - make_interval(secs => $1)`, s.indexLockWait.Seconds()).Scan(&since)
	if err != nil {
		return time.Time{}, s.pgError("look for long transactions", err)
	}
	if since == nil {
		return time.Time{}, nil
	}
	return *since, nil
}

var errPgLockWait = errors.New("waited too long for other transactions' locks")

// pgBoundedDDL runs ddl within indexBuildBudget, and cancels it once it has
// waited on locks for indexLockWait. The bounds are kept on the client (a
// deadline, and a watcher on another connection) because a session-level
// lock_timeout would stay on a pooler's server connection for other
// clients, and these statements cannot run in a transaction for SET LOCAL.
func (s *pgStore) pgBoundedDDL(ctx context.Context, conn *pgx.Conn, ddl string) error {
	budget := s.indexBuildBudget
	if deadline, ok := ctx.Deadline(); ok {
		// Leave the cleanup itself at least half of the run.
		budget = min(budget, time.Until(deadline)/2)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, budget, context.DeadlineExceeded)
	defer cancel()
	watchCtx, stopWatch := context.WithCancelCause(ctx)
	defer stopWatch(nil)
	go s.pgWatchLockWait(watchCtx, ddl, stopWatch)
	_, err := conn.Exec(watchCtx, ddl)
	if cause := context.Cause(watchCtx); err != nil && errors.Is(cause, errPgLockWait) {
		return fmt.Errorf("%w (%v)", errPgLockWait, err)
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("gave up after %v: %w", budget, context.DeadlineExceeded)
	}
	return err
}

// pgWatchLockWait polls, on a connection of its own, whether the session
// running ddl has been waiting on a lock for indexLockWait, and then stops
// it through stop.
func (s *pgStore) pgWatchLockWait(ctx context.Context, ddl string, stop context.CancelCauseFunc) {
	conn, err := pgx.ConnectConfig(ctx, s.connCfg.Copy())
	if err != nil {
		return // the budget still bounds the build
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var waitingSince time.Time
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var waiting bool
		err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND state = 'active' AND query = $1 AND wait_event_type = 'Lock')`, ddl).Scan(&waiting)
		switch {
		case err != nil || !waiting:
			waitingSince = time.Time{}
		case waitingSince.IsZero():
			waitingSince = time.Now()
		case time.Since(waitingSince) >= s.indexLockWait:
			stop(errPgLockWait)
			return
		}
	}
}
