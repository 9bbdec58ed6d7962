package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// A walk goes through the table once in batches. Each batch is one simple
// query, so one round trip and one transaction, even through a pooler; it
// deletes the batch's expired rows and counts its rows (scanned, NULL
// expiry, expired), so the counts cost no pass of their own.
// synchronous_commit is off for that transaction only (SET LOCAL): a batch
// whose commit a crash loses leaves only expired rows, which the next run
// deletes. The expiry condition is part of each DELETE: when the app
// refreshed a row meanwhile, PostgreSQL re-checks it on the row's newest
// version, so a refreshed session is kept.
//
// On PostgreSQL 14 and newer a batch is a range of ctid, read like a slice
// of a sequential scan: every page is read once, whatever the ids and with
// or without an index (ctidBatchSQL). Before 14 a ctid range is a full scan
// each time, so the walk goes over the primary key instead (keyset):
//
//	SET LOCAL synchronous_commit = off;
//	WITH r AS (SELECT <key> AS k, expiry FROM t WHERE <key> > $last ORDER BY <key> LIMIT $n),
//	     d AS (DELETE FROM t WHERE <key> = ANY (ARRAY(SELECT k FROM r WHERE expiry <= $cut))
//	                            AND expiry <= $cut RETURNING 1)
//	SELECT (SELECT count(*) FROM d), count(*), count(expiry), count(*) FILTER (WHERE expiry <= $cut), max(k) FROM r
//
// Values are written into the SQL as literals made here (ctids, the cut-off
// from a parsed time, keys dollar-quoted): the simple protocol has no
// parameters, and it is what lets SET LOCAL share the batch's transaction.

// pgMaxRangeGrowth caps how many batches' worth of rows a ctid range may
// read where few of them have expired.
const pgMaxRangeGrowth = 8

type pgWalk struct {
	store     *pgStore
	conn      *pgx.Conn
	cut       pgCutoff
	batchSize int
	progress  func()
	rep       *sessionstore.Report
}

// pgBatchCounts is what one batch saw and did.
type pgBatchCounts struct {
	deleted, scanned, withExpiry, expired int64
}

// batch runs one batch's SQL and adds its counts to the report; extra holds
// the result columns after the four counts.
func (w *pgWalk) batch(ctx context.Context, sql string, extra int) (pgBatchCounts, []*string, error) {
	if err := ctx.Err(); err != nil {
		return pgBatchCounts{}, nil, sessionstore.Classify("cleanup", fmt.Errorf("stopped after %d batches: %w", w.rep.Batches, err))
	}
	// A batch, once sent, is let finish: it is short, and stopping between
	// batches leaves nothing half done.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pgBatchTimeout)
	defer cancel()
	results, err := pgSimpleExec(bctx, w.conn, sql)
	var row []*string
	if err == nil {
		row, err = pgLastRow(results, 4+extra)
	}
	if err != nil {
		if w.conn.IsClosed() {
			err = fmt.Errorf("connection lost after %d batches (%d sessions deleted); a rerun finishes the job: %w", w.rep.Batches, w.rep.Deleted, err)
		}
		return pgBatchCounts{}, nil, w.store.pgError("cleanup", err)
	}
	var c pgBatchCounts
	for i, dst := range []*int64{&c.deleted, &c.scanned, &c.withExpiry, &c.expired} {
		if row[i] != nil {
			if *dst, err = strconv.ParseInt(*row[i], 10, 64); err != nil {
				return c, nil, w.store.pgError("cleanup", err)
			}
		}
	}
	// A DELETE of its own comes before the counts, which then see only
	// the rows it left: add what it deleted.
	for _, r := range results {
		if r.CommandTag.Delete() {
			n := r.CommandTag.RowsAffected()
			c.deleted, c.scanned, c.withExpiry, c.expired = c.deleted+n, c.scanned+n, c.withExpiry+n, c.expired+n
		}
	}
	w.rep.Batches++
	w.rep.Deleted += c.deleted
	w.rep.Scanned += c.scanned
	w.rep.Expired += c.expired
	w.rep.AddKept("noExpiry", c.scanned-c.withExpiry)
	w.progress()
	return c, row[4:], nil
}

// batchSQL is the keyset batch statement over the rows that from selects
// (with their key as k), deleting by key.
func (w *pgWalk) batchSQL(from, key, extraColumns string) string {
	cut := w.cut.literal
	table := w.store.pgIdent().Sanitize()
	return `SET LOCAL synchronous_commit = off;
WITH r AS (` + from + `),
d AS (DELETE FROM ` + table + ` WHERE ` + key + ` = ANY (ARRAY(SELECT k FROM r WHERE expiry <= ` + cut + `))
                AND expiry <= ` + cut + ` RETURNING 1)
SELECT (SELECT count(*) FROM d), count(*), count(expiry), count(*) FILTER (WHERE expiry <= ` + cut + `)` + extraColumns + ` FROM r`
}

// ctidBatchSQL deletes the expired rows of one ctid range, then counts
// the rows the DELETE left there, in the same transaction: the counts skip
// the rows just deleted without reading them, and the pages are already in
// shared buffers (read before the DELETE, every row of the range would be
// read twice).
func (w *pgWalk) ctidBatchSQL(lo, hi pgtype.TID) string {
	cut := w.cut.literal
	table := w.store.pgIdent().Sanitize()
	inRange := `ctid >= '` + pgTIDText(lo) + `'::tid AND ctid < '` + pgTIDText(hi) + `'::tid`
	return `SET LOCAL synchronous_commit = off;
DELETE FROM ` + table + ` WHERE ` + inRange + ` AND expiry <= ` + cut + `;
SELECT 0, count(*), count(expiry), count(*) FILTER (WHERE expiry <= ` + cut + `) FROM ` + table + ` WHERE ` + inRange
}

// ctid walks the heap in ranges of ctid that each delete about batchSize
// rows (see nextRangeRows). The heap's size is read first: rows expired at the cut-off are all
// within it, since rows written or refreshed later carry a later expiry.
func (w *pgWalk) ctid(ctx context.Context) error {
	table := w.store.pgIdent().Sanitize()
	var pages, rows float64
	err := w.conn.QueryRow(ctx, `SELECT pg_relation_size(c.oid) / current_setting('block_size')::int8,
	       greatest(c.reltuples, coalesce(s.n_live_tup, 0))
	  FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = to_regclass($1)`, table).Scan(&pages, &rows)
	if err != nil {
		return w.store.pgError("cleanup: read the table's size", err)
	}
	ranges := pgRangeCursor{pages: int64(pages), rowsPerPage: 50} // a guess, for a table never analyzed
	if rows > 0 && pages > 0 {
		ranges.rowsPerPage = rows / pages
	}
	rangeRows := w.batchSize
	for {
		lo, hi, ok := ranges.next(rangeRows)
		if !ok {
			return nil
		}
		c, _, err := w.batch(ctx, w.ctidBatchSQL(lo, hi), 0)
		if err != nil {
			return err
		}
		ranges.observe(lo, hi, c.scanned)
		rangeRows = w.nextRangeRows(rangeRows, c)
	}
}

// nextRangeRows sizes the next ctid range, in rows at the estimated
// density, from what the last one held: it grows while the ranges delete
// fewer than batchSize rows, so each statement's fixed cost is spread over
// about a batch of deletions where only part of the rows have expired; it
// shrinks after one that deleted more than batchSize (rows packed tighter
// than estimated) or read more than pgMaxRangeGrowth batches' worth.
func (w *pgWalk) nextRangeRows(asked int, c pgBatchCounts) int {
	batch, limit := int64(w.batchSize), int64(w.batchSize*pgMaxRangeGrowth)
	switch {
	case c.deleted > batch:
		return int(max(1, int64(asked)*batch/c.deleted))
	case c.scanned > limit:
		return int(max(1, int64(asked)*limit/c.scanned))
	case c.deleted < batch*3/4:
		grow := int64(2)
		if c.deleted > 0 {
			grow = min(2, batch/c.deleted)
		}
		return int(min(limit, max(1, int64(asked)*grow)))
	}
	return asked
}

// keyset walks the table in the order of a single-column unique key (the
// primary key: id, or session_id in the development head's table), each
// batch the next batchSize keys, read through the key's index.
func (w *pgWalk) keyset(ctx context.Context) error {
	table := w.store.pgIdent().Sanitize()
	var key string
	err := w.conn.QueryRow(ctx, `SELECT a.attname::text FROM pg_index i
	  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
	 WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indisvalid AND i.indnatts = 1
	   AND i.indpred IS NULL AND i.indexprs IS NULL
	 ORDER BY i.indisprimary DESC, a.attname LIMIT 1`, table).Scan(&key)
	if errors.Is(err, pgx.ErrNoRows) {
		return sessionstore.NewError(sessionstore.ErrTableMismatch, "cleanup",
			fmt.Errorf("table %s has no single-column primary key or unique index to walk (PostgreSQL before 14 needs one)", table))
	}
	if err != nil {
		return w.store.pgError("cleanup: find the table's key", err)
	}
	column := pgx.Identifier{key}.Sanitize()
	after := "" // the last key of the previous batch, as text
	for first := true; ; first = false {
		where := ""
		if !first {
			where = " WHERE " + column + " > " + pgDollarQuote(after)
		}
		from := `SELECT ` + column + ` AS k, expiry FROM ` + table + where + ` ORDER BY ` + column + ` LIMIT ` + strconv.Itoa(w.batchSize)
		c, extra, err := w.batch(ctx, w.batchSQL(from, column, ", max(k)::text"), 1)
		if err != nil {
			return err
		}
		// A short batch was the table's end.
		if c.scanned < int64(w.batchSize) || extra[0] == nil {
			return nil
		}
		after = *extra[0]
	}
}

// pgDollarQuote makes s an SQL string literal whatever it holds, with a
// dollar-quote tag that s does not contain.
func pgDollarQuote(s string) string {
	tag := "$k$"
	// The closing tag must be the first occurrence after the opening one,
	// including occurrences that start inside s.
	for strings.Index(s+tag, tag) != len(s) {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		tag = "$k" + hex.EncodeToString(b) + "$"
	}
	return tag + s + tag
}

// pgSimpleExec runs sql, which may be several statements, with the simple
// protocol: one round trip, one implicit transaction.
func pgSimpleExec(ctx context.Context, conn *pgx.Conn, sql string) ([]*pgconn.Result, error) {
	return conn.PgConn().Exec(ctx, sql).ReadAll()
}

// pgLastRow returns the first row of the last result that has one, as
// text (nil for NULL).
func pgLastRow(results []*pgconn.Result, columns int) ([]*string, error) {
	for i := len(results) - 1; i >= 0; i-- {
		if len(results[i].Rows) == 0 {
			continue
		}
		raw := results[i].Rows[0]
		if len(raw) != columns {
			return nil, fmt.Errorf("got %d columns, want %d", len(raw), columns)
		}
		row := make([]*string, columns)
		for j, v := range raw {
			if v != nil {
				s := string(v)
				row[j] = &s
			}
		}
		return row, nil
	}
	return nil, errors.New("the statement returned no row")
}

// pgSimpleCounts runs sql and returns its last row, of counts.
func pgSimpleCounts(ctx context.Context, conn *pgx.Conn, sql string, columns int) ([]int64, error) {
	results, err := pgSimpleExec(ctx, conn, sql)
	if err != nil {
		return nil, err
	}
	row, err := pgLastRow(results, columns)
	if err != nil {
		return nil, err
	}
	counts := make([]int64, columns)
	for i, v := range row {
		if v == nil {
			continue
		}
		if counts[i], err = strconv.ParseInt(*v, 10, 64); err != nil {
			return nil, err
		}
	}
	return counts, nil
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

func pgTIDText(t pgtype.TID) string {
	return "(" + strconv.FormatUint(uint64(t.BlockNumber), 10) + "," + strconv.FormatUint(uint64(t.OffsetNumber), 10) + ")"
}

// observe raises the density estimate when a range of whole pages held
// more rows than it assumed; it is never lowered, since a low estimate
// makes ranges span many pages, which a dense region would then fill.
func (c *pgRangeCursor) observe(lo, hi pgtype.TID, rows int64) {
	if lo.OffsetNumber != 0 || hi.OffsetNumber != 0 || hi.BlockNumber <= lo.BlockNumber {
		return
	}
	c.rowsPerPage = max(c.rowsPerPage, float64(rows)/float64(hi.BlockNumber-lo.BlockNumber))
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
