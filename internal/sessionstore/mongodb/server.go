package mongodb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// deleteMode is how expired documents are deleted; see Cleanup.
type deleteMode int

const (
	modeUnset deleteMode = iota
	// modeRanges: one deleteMany per batch, by _id range (MongoDB).
	modeRanges
	// modeOneByOne: one document per command (FerretDB 1.x).
	modeOneByOne
)

// maxYield bounds the pause after each document deleted one by one.
const maxYield = time.Second

// serverInfo is what the cleanup asks the server before it starts.
type serverInfo struct {
	// now is the server's clock; zero when it tells none.
	now time.Time
	// ferretDB is FerretDB's version, "" on other servers.
	ferretDB string
	mode     deleteMode
	// buildInfoErr is why the server's kind is not known (then mode is
	// modeOneByOne, safe everywhere).
	buildInfoErr error
}

// askServer reads the server's clock and tells FerretDB apart: its buildInfo
// answer carries ferretdbVersion (FerretDB 1.24: "v1.24.2") beside the
// MongoDB version it imitates.
func askServer(ctx context.Context, db *mongo.Database) (serverInfo, error) {
	var info serverInfo
	now, err := serverClock(ctx, db)
	if err != nil {
		return info, err
	}
	info.now = now
	var build struct {
		FerretDBVersion string `bson:"ferretdbVersion"`
	}
	info.buildInfoErr = db.RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&build)
	info.ferretDB = build.FerretDBVersion
	info.mode = modeRanges
	if info.buildInfoErr != nil || info.ferretDB != "" {
		info.mode = modeOneByOne
	}
	return info, nil
}

// serverClock returns the server's time from hello, or from isMaster on
// servers older than hello (MongoDB < 4.4); zero when the answer has none.
func serverClock(ctx context.Context, db *mongo.Database) (time.Time, error) {
	var reply struct {
		LocalTime time.Time `bson:"localTime"`
	}
	err := db.RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&reply)
	var serverErr mongo.ServerError
	if errors.As(err, &serverErr) {
		err = db.RunCommand(ctx, bson.D{{Key: "isMaster", Value: 1}}).Decode(&reply)
	}
	if err != nil {
		return time.Time{}, storeError("cleanup mongodb: read the server's clock", err)
	}
	return reply.LocalTime, nil
}

// deleteRange deletes, of batch (one _id type, in _id order), the documents
// whose expiration is still at or before cutoff, with one command that
// MongoDB checks document by document as it deletes. The delete is let
// finish when ctx ends, so a stop comes between batches.
func deleteRange(ctx context.Context, coll *mongo.Collection, cutoff time.Time, batch []expiredDoc) (int64, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
	defer cancel()
	// expiration first: FerretDB checks filter fields in order, and most
	// documents fail that test before the _id one is evaluated. $lte alone
	// would also match an array holding an old date, which the cursor
	// reported as unreadable and a range may cover.
	expired := bson.E{Key: "expiration", Value: bson.D{
		{Key: "$lte", Value: cutoff},
		{Key: "$not", Value: bson.D{{Key: "$type", Value: "array"}}},
	}}
	first, last := batch[0].id, batch[len(batch)-1].id
	filter := bson.D{expired, {Key: "_id", Value: bson.D{{Key: "$gte", Value: first}, {Key: "$lte", Value: last}}}}
	if !rangeable(first.Type) {
		ids := make(bson.A, len(batch))
		for i, d := range batch {
			ids[i] = d.id
		}
		filter = bson.D{expired, {Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}
	}
	res, err := coll.DeleteMany(ctx, filter)
	if err != nil {
		return 0, storeError("cleanup mongodb: delete expired sessions", err)
	}
	return res.DeletedCount, nil
}

// deleteOneByOne deletes each document of batch that still holds the
// expiration the cursor read, one command at a time; it stops between two
// documents when ctx ends.
//
// What remains on FerretDB 1.x, whose every write reads, closes its read,
// then writes by _id: a re-save that the app commits between this check and
// the delete of the same document is lost. That window is per document: the
// check (a find by _id; the expiration is compared here, because FerretDB
// hands SQLite only a filter that is exactly {_id: <string or ObjectId>}),
// the delete's own look-up, and a wait for one other write to commit. Both
// look-ups scan the table in SQLite (FerretDB 1.24's _id index is on
// sjson->"_id", its queries ask for sjson->'$._id', so the index is not
// used). Measured here: at 5,000 documents about 1 ms for the find and
// 27 ms for the delete, commit included; at 18,000 about 10 ms and 125 ms,
// so the window grows with the collection. FerretDB's own update has the same
// flaw: the app's re-save of a session that the cleanup deletes while the
// re-save is under way (Flask-Session finds the session by id, so FerretDB
// reads the collection up to it first) is acknowledged and lost. Only a
// server that deletes by TTL index, or re-checks as it deletes (MongoDB),
// closes both.
func deleteOneByOne(ctx context.Context, coll *mongo.Collection, batch []expiredDoc) (int64, error) {
	var deleted int64
	for _, doc := range batch {
		if err := ctx.Err(); err != nil {
			return deleted, err
		}
		start := time.Now()
		opCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
		n, err := deleteIfUnchanged(opCtx, coll, doc)
		cancel()
		deleted += n
		if err != nil {
			return deleted, err
		}
		yieldToApp(ctx, time.Since(start))
	}
	return deleted, nil
}

// yieldToApp leaves the database to the app for as long as the cleanup's
// commands for one document took (at most maxYield). On FerretDB's SQLite
// handler a delete holds the database's only write lock through its commit,
// and the app's writers wait for it with SQLite's backoff, sleeps of up to
// 100 ms: back-to-back deletes leave gaps too short for them, and their
// writes were seen to take seconds.
func yieldToApp(ctx context.Context, took time.Duration) {
	timer := time.NewTimer(min(took, maxYield))
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

// deleteIfUnchanged deletes doc when its expiration is still the one the
// cursor read.
func deleteIfUnchanged(ctx context.Context, coll *mongo.Collection, doc expiredDoc) (int64, error) {
	byID := bson.D{{Key: "_id", Value: doc.id}}
	if !rangeable(doc.id.Type) {
		// FerretDB reads and decodes the collection for any other _id: one
		// command that compares both, rather than two such reads.
		exact := append(byID, bson.E{Key: "expiration", Value: bson.D{
			{Key: "$eq", Value: doc.expiration},
			{Key: "$not", Value: bson.D{{Key: "$type", Value: "array"}}},
		}})
		res, err := coll.DeleteOne(ctx, exact)
		if err != nil {
			return 0, storeError("cleanup mongodb: delete an expired session", err)
		}
		return res.DeletedCount, nil
	}
	current, err := coll.FindOne(ctx, byID, options.FindOne().SetProjection(bson.D{{Key: "expiration", Value: 1}})).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 0, nil // the app deleted it
	}
	if err != nil {
		return 0, storeError("cleanup mongodb: check an expired session", err)
	}
	expiration := current.Lookup("expiration")
	if expiration.Type != bson.TypeDateTime || expiration.DateTime() != int64(doc.expiration) {
		return 0, nil // refreshed since the cursor read it
	}
	res, err := coll.DeleteOne(ctx, byID)
	if err != nil {
		return 0, storeError("cleanup mongodb: delete an expired session", err)
	}
	return res.DeletedCount, nil
}

func cleanupMessage(r *cleanupRun, err error) string {
	rep := r.rep
	var b strings.Builder
	sessionstore.WriteOutcome(&b, rep, "sessions", "of about", err)
	if err != nil {
		b.WriteString("; stopped by an error, rerun to finish")
	}
	if n := rep.Kept["noExpiry"]; n > 0 {
		fmt.Fprintf(&b, "; %d without an expiration (non-permanent sessions) kept", n)
	}
	if n := rep.Kept["unreadable"]; n > 0 {
		fmt.Fprintf(&b, "; %d whose expiration is not a date kept", n)
	}
	if !rep.Now.IsZero() {
		writeClockNote(&b, r)
	}
	switch {
	case r.server.ferretDB != "":
		fmt.Fprintf(&b, "; FerretDB %s: one delete per session, since its deletes do not re-check their filter (a TTL-capable server such as MongoDB is safer)", r.server.ferretDB)
	case r.server.buildInfoErr != nil:
		b.WriteString("; the server did not answer buildInfo: one delete per session, as on FerretDB")
	}
	if r.ttl {
		b.WriteString("; a TTL index on expiration also removes expired sessions (MongoDB checks every 60 s)")
	}
	return b.String()
}

// writeClockNote says which clock gave the cut-off, and how far the pod's
// clock is from the server's when that is more than the grace period.
func writeClockNote(b *strings.Builder, r *cleanupRun) {
	if r.server.now.IsZero() {
		fmt.Fprintf(b, "; the server tells no time (no localTime in hello): the cut-off %s is the pod's clock less %s",
			r.rep.Cutoff.Format(time.RFC3339), r.opts.Grace)
		return
	}
	fmt.Fprintf(b, "; cut-off %s (the server's clock less %s)", r.rep.Cutoff.Format(time.RFC3339), r.opts.Grace)
	if r.opts.Now.IsZero() {
		return
	}
	skew := r.opts.Now.Sub(r.server.now)
	if skew.Abs() > max(r.opts.Grace, time.Second) {
		fmt.Fprintf(b, "; the pod's clock is %s off the server's, not used", skew.Round(time.Second))
	}
}
