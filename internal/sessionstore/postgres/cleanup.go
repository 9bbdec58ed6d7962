package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// pgTIDRangeScanVersion is PostgreSQL 14, the first with TID range scans:
// before it, each ctid range is a full sequential scan.
const pgTIDRangeScanVersion = 140000

// pgCutoff is the moment before which sessions go, as an SQL literal of the
// expiry column's type, read once from the database's clock.
type pgCutoff struct {
	literal string
	now     time.Time // the database's clock, UTC
	cutoff  time.Time // for the report: the cut-off read as UTC
}

// pgReadCutoff reads the database's clock and takes the grace period off.
// A timestamp column may hold UTC (Flask-Session's SQLAlchemy backend,
// utcnow() + lifetime) or the session TimeZone's wall clock (the
// development head's PostgreSQL backend, NOW() + ttl); which one is not
// recorded, so the cut-off is the earlier of both readings of now, and no
// row is deleted before it expired under either. A timestamptz column
// holds instants: now() it is.
func (s *pgStore) pgReadCutoff(ctx context.Context, conn *pgx.Conn, info pgTableInfo, grace time.Duration) (pgCutoff, error) {
	var (
		c     pgCutoff
		naive string
	)
	cut := "LEAST(now() AT TIME ZONE 'utc', LOCALTIMESTAMP) - make_interval(secs => $1)"
	if info.expiryType == pgTimestamptzOID {
		cut = "(now() - make_interval(secs => $1)) AT TIME ZONE 'utc'"
	}
	err := conn.QueryRow(ctx, `SELECT now(), to_char(`+cut+`, 'YYYY-MM-DD"T"HH24:MI:SS.US')`, grace.Seconds()).Scan(&c.now, &naive)
	if err != nil {
		return c, s.pgError("cleanup: read the database clock", err)
	}
	c.now = c.now.UTC()
	if c.cutoff, err = time.Parse("2006-01-02T15:04:05.999999", naive); err != nil {
		return c, s.pgError("cleanup: read the database clock", err)
	}
	// The literal is made here from a parsed time, so it cannot carry
	// anything but a timestamp into the SQL text.
	c.literal = "'" + c.cutoff.Format("2006-01-02T15:04:05.999999") + "'::timestamp"
	if info.expiryType == pgTimestamptzOID {
		c.literal = "'" + c.cutoff.Format("2006-01-02T15:04:05.999999") + "+00'::timestamptz"
	}
	return c, nil
}

// Cleanup deletes the rows whose expiry is at or before the cut-off: the
// database's clock (so the app's and the job's cannot disagree; opts.Now is
// not used) less opts.Grace, read once (see pgReadCutoff).
//
// It walks the table once, in batches of about BatchSize rows, each one
// statement in its own short transaction that deletes the batch's expired
// rows and counts the batch's rows (scanned, expired, NULL expiry), so
// the counts cost no second pass (walk.go). opts.Progress is called after
// each batch. A dry run counts in one read-only statement.
//
// The expiry condition is part of each DELETE itself: when the app has
// refreshed a row meanwhile, PostgreSQL re-checks it against the row's
// newest version, so a session refreshed meanwhile is kept. Rows with a
// NULL expiry never match and are reported as kept.
func (s *pgStore) Cleanup(ctx context.Context, opts sessionstore.CleanupOptions) (sessionstore.Report, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	rep := sessionstore.Report{Backend: sessionstore.BackendPostgreSQL, DryRun: opts.DryRun}
	done := func(err error) (sessionstore.Report, error) {
		rep.Duration = time.Since(start)
		rep.Message = sessionstore.SQLTableMessage(rep, err)
		return rep, err
	}
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
	cut, err := s.pgReadCutoff(ctx, conn, info, opts.Grace)
	if err != nil {
		return done(err)
	}
	rep.Now, rep.Cutoff = cut.now, cut.cutoff
	if opts.DryRun {
		return done(s.pgCount(ctx, conn, cut, &rep))
	}
	w := pgWalk{store: s, conn: conn, cut: cut, batchSize: opts.BatchSizeOr(pgDefaultBatchSize),
		progress: func() { opts.ReportProgress(rep, start) }, rep: &rep}
	if s.forceKeysetWalk || info.serverVersion < pgTIDRangeScanVersion {
		s.lastWalk = "keyset"
		return done(w.keyset(ctx))
	}
	s.lastWalk = "ctid"
	return done(w.ctid(ctx))
}

// pgCount counts what a cleanup would delete, in a read-only transaction,
// so a dry run cannot change anything.
func (s *pgStore) pgCount(ctx context.Context, conn *pgx.Conn, cut pgCutoff, rep *sessionstore.Report) error {
	counts, err := pgSimpleCounts(ctx, conn, `SET LOCAL transaction_read_only = on;
SELECT count(*), count(expiry), count(*) FILTER (WHERE expiry <= `+cut.literal+`) FROM `+s.pgIdent().Sanitize(), 3)
	if err != nil {
		return s.pgError("cleanup: count sessions", err)
	}
	rep.Scanned, rep.Expired = counts[0], counts[2]
	rep.AddKept("noExpiry", counts[0]-counts[1])
	return nil
}
