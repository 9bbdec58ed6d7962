package mysql

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// myCutoff is the moment at or before which sessions go, read once from the
// server's clock, and the SQL condition that says a row expired by then.
type myCutoff struct {
	now    time.Time // the server's clock, UTC
	cutoff time.Time // for the report
	// expired is an SQL condition on expiry, true for a row that expired
	// at the cut-off; NULL (so false) for a NULL expiry.
	expired string
}

const myTimeLayout = "2006-01-02 15:04:05.999999"

var myDecimal = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

// myReadCutoff reads the server's clock and takes the grace period off.
//
// A DATETIME column holds a naive wall clock: UTC when Flask-Session wrote
// it (utcnow() + lifetime, or an aware UTC value that PyMySQL sends as its
// wall clock), or the connection's time zone when something wrote NOW() +
// ttl. Which one is not recorded, so the cut-off is the earlier of both
// readings of now, UTC_TIMESTAMP() and NOW(): no row is deleted before it
// expired under either reading, only ever late. A TIMESTAMP column holds
// instants: it is compared as Unix seconds, whatever the time zones.
func (s *myStore) myReadCutoff(ctx context.Context, conn *sql.Conn, info myTableInfo, grace time.Duration) (myCutoff, error) {
	var c myCutoff
	var now, naive, unix string
	err := conn.QueryRowContext(ctx, `SELECT DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%d %H:%i:%s.%f'),
	       DATE_FORMAT(LEAST(UTC_TIMESTAMP(6), NOW(6)) - INTERVAL ? MICROSECOND, '%Y-%m-%d %H:%i:%s.%f'),
	       CAST(UNIX_TIMESTAMP(NOW(6)) - ? / 1000000 AS DECIMAL(20, 6))`,
		grace.Microseconds(), grace.Microseconds()).Scan(&now, &naive, &unix)
	if err != nil {
		return c, s.myError("cleanup: read the database clock", err)
	}
	if c.now, err = time.Parse(myTimeLayout, now); err != nil {
		return c, s.myError("cleanup: read the database clock", err)
	}
	if c.cutoff, err = time.Parse(myTimeLayout, naive); err != nil {
		return c, s.myError("cleanup: read the database clock", err)
	}
	// The literal is made here from a parsed time, so it cannot carry
	// anything but a date-time into the SQL text.
	c.expired = "expiry <= '" + c.cutoff.Format(myTimeLayout) + "'"
	if info.expiryType == "timestamp" {
		c.cutoff = c.now.Add(-grace)
		if !myDecimal.MatchString(unix) {
			return c, s.myError("cleanup: read the database clock", fmt.Errorf("unexpected Unix time %q", unix))
		}
		c.expired = "UNIX_TIMESTAMP(expiry) <= " + unix
	}
	return c, nil
}

// Cleanup deletes the rows whose expiry is at or before the cut-off: the
// server's clock (so the app's and the job's cannot disagree; opts.Now is
// not used) less opts.Grace, read once (see myReadCutoff).
//
// It walks the primary key once in batches of about BatchSize rows (walk.go):
// each batch reads its rows without locking them, then deletes the expired
// ones in a short READ COMMITTED transaction that locks them first, skipping
// any the app holds, and re-checks expiry in the DELETE itself. A session
// refreshed meanwhile is kept. Rows with a NULL expiry never match and are
// reported as kept. A dry run counts in one read-only transaction.
func (s *myStore) Cleanup(ctx context.Context, opts sessionstore.CleanupOptions) (sessionstore.Report, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	rep := sessionstore.Report{Backend: sessionstore.BackendMySQL, DryRun: opts.DryRun}
	done := func(err error) (sessionstore.Report, error) {
		rep.Duration = time.Since(start)
		rep.Message = sessionstore.SQLTableMessage(rep, err)
		return rep, err
	}
	conn, err := s.myConn(ctx, "cleanup")
	if err != nil {
		return done(err)
	}
	defer conn.Close()
	info, err := s.myInspect(ctx, conn)
	if err != nil {
		return done(err)
	}
	if err := s.myUsable(info, "cleanup"); err != nil {
		return done(err)
	}
	cut, err := s.myReadCutoff(ctx, conn, info, opts.Grace)
	if err != nil {
		return done(err)
	}
	rep.Now, rep.Cutoff = cut.now, cut.cutoff
	if opts.DryRun {
		return done(s.myCount(ctx, conn, cut, &rep))
	}
	w := myWalk{store: s, conn: conn, cut: cut, key: myQuoteIdent(info.key), skipLocked: info.server.skipLocked(),
		noWait:    info.server.mariaDB && !s.forceLockPath,
		batchSize: opts.BatchSizeOr(myDefaultBatchSize), maxSize: cmp.Or(s.maxBatch, myMaxBatch),
		progress: func() { opts.ReportProgress(rep, start) }, rep: &rep}
	return done(w.run(ctx))
}

// myCount counts what a cleanup would delete, in a read-only transaction,
// so a dry run cannot change anything.
func (s *myStore) myCount(ctx context.Context, conn *sql.Conn, cut myCutoff, rep *sessionstore.Report) error {
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return s.myError("cleanup: count sessions", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only: nothing to keep
	var total, withExpiry, expired int64
	err = tx.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(expiry), COALESCE(SUM(`+cut.expired+`), 0) FROM `+s.myTable()).
		Scan(&total, &withExpiry, &expired)
	if err != nil {
		return s.myError("cleanup: count sessions", err)
	}
	rep.Scanned, rep.Expired = total, expired
	rep.AddKept("noExpiry", total-withExpiry)
	return nil
}
