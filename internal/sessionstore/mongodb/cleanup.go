package mongodb

import (
	"bytes"
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// Cleanup deletes the documents whose expiration is at or before the
// cut-off: the server's clock (hello's localTime) less opts.Grace. The pod's
// clock (opts.Now) is used only when the server tells no time.
//
// One cursor, sorted by _id, reads the collection once and returns _id and
// expiration of the documents that are expired or have no date to expire by.
// Documents whose expiration is null, missing or not a date are counted and
// never deleted. The expired ones are deleted in batches of up to BatchSize,
// in one of two ways (see deleteMode):
//
//   - MongoDB: each batch is one range delete,
//     deleteMany({expiration: {$lte: cutoff}, _id: {$gte: first, $lte: last}}).
//     MongoDB evaluates the filter on each document as it deletes it, so a
//     session the app refreshed after the cursor saw it is kept; every
//     document in the range that the cursor did not return had not expired,
//     and the same check keeps it.
//   - FerretDB 1.x: one document per command, and only while it still holds
//     the expiration the cursor read. FerretDB evaluates a delete's filter in
//     a read transaction, closes it, then deletes the _ids it found without
//     looking again: a range delete reads the whole collection, and a session
//     refreshed at any time during that read was deleted. See deleteOneByOne
//     for the window that remains.
func (s *store) Cleanup(ctx context.Context, opts sessionstore.CleanupOptions) (sessionstore.Report, error) {
	r := &cleanupRun{
		opts:      opts,
		start:     time.Now(),
		batchSize: min(opts.BatchSizeOr(defaultBatchSize), maxBatchSize),
		rep:       sessionstore.Report{Backend: sessionstore.BackendMongoDB, DryRun: opts.DryRun},
	}
	client, err := s.connect()
	if err != nil {
		return r.done(err)
	}
	r.coll = client.Database(s.cfg.Database).Collection(s.cfg.Collection)
	server, err := askServer(ctx, client.Database(s.cfg.Database))
	if err != nil {
		return r.done(err)
	}
	r.server = server
	if s.forceMode != modeUnset {
		r.server.mode = s.forceMode
	}
	r.setClock()
	// Only for the report's note: a user allowed to delete but not to list
	// indexes still gets the cleanup done.
	index, _ := s.expirationIndex(ctx, r.coll)
	r.ttl = index != nil && index.ExpireAfterSeconds != nil
	if r.rep.Scanned, err = collectionCount(ctx, r.coll); err != nil {
		return r.done(err)
	}
	return r.done(r.scan(ctx))
}

// cleanupRun is one Cleanup call's state.
type cleanupRun struct {
	opts      sessionstore.CleanupOptions
	start     time.Time
	batchSize int
	coll      *mongo.Collection
	server    serverInfo
	cutoff    time.Time
	ttl       bool
	rep       sessionstore.Report
	batch     []expiredDoc
}

// expiredDoc is what the cursor read of a document it found expired.
type expiredDoc struct {
	id         bson.RawValue
	expiration bson.DateTime
}

// setClock takes the cut-off from the server's clock, or from the pod's
// when the server tells none.
func (r *cleanupRun) setClock() {
	now := r.server.now
	if now.IsZero() {
		now = r.opts.Now
		if now.IsZero() {
			now = r.start
		}
	}
	// BSON dates hold milliseconds; rounding down keeps the cut-off early.
	r.rep.Now = now.UTC().Truncate(time.Millisecond)
	r.cutoff = r.rep.Now.Add(-max(r.opts.Grace, 0))
	r.rep.Cutoff = r.cutoff
}

func (r *cleanupRun) done(err error) (sessionstore.Report, error) {
	r.rep.Duration = time.Since(r.start)
	r.rep.NativeExpiry = r.ttl && r.rep.Expired == 0
	r.rep.Message = cleanupMessage(r, err)
	return r.rep, err
}

// scan reads the expired documents and deletes them batch by batch; after
// each batch a stop asked for is honoured.
func (r *cleanupRun) scan(ctx context.Context) error {
	filter := bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "expiration", Value: bson.D{{Key: "$lte", Value: r.cutoff}}}},
		bson.D{{Key: "expiration", Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$type", Value: "date"}}}}}},
	}}}
	cursor, err := r.coll.Find(ctx, filter, options.Find().
		SetSort(bson.D{{Key: "_id", Value: 1}}).
		SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "expiration", Value: 1}}).
		SetBatchSize(int32(r.batchSize)))
	if err != nil {
		return storeError("cleanup mongodb: find expired sessions", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		cursor.Close(closeCtx)
	}()
	flushOrStop := func() error {
		if err := r.flush(ctx); err != nil {
			return err
		}
		return ctx.Err()
	}
	r.batch = make([]expiredDoc, 0, r.batchSize)
	for cursor.Next(ctx) {
		doc, ok := r.expired(cursor.Current)
		if !ok {
			continue
		}
		// A range holds one type: MongoDB compares _ids of different types
		// by type order, and $gte/$lte match only their own type.
		if len(r.batch) > 0 && doc.id.Type != r.batch[0].id.Type {
			if err := flushOrStop(); err != nil {
				return err
			}
		}
		r.rep.Expired++
		r.batch = append(r.batch, doc)
		if len(r.batch) == r.batchSize {
			if err := flushOrStop(); err != nil {
				return err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := cursor.Err(); err != nil {
		return storeError("cleanup mongodb: read expired sessions", err)
	}
	return r.flush(ctx)
}

// expired returns the cursor's document when it is to be deleted, and
// counts the ones kept for want of a date.
func (r *cleanupRun) expired(raw bson.Raw) (expiredDoc, bool) {
	id, expiration := raw.Lookup("_id"), raw.Lookup("expiration")
	switch expiration.Type {
	case bson.TypeDateTime:
		if expiration.Time().After(r.cutoff) {
			return expiredDoc{}, false // not asked for; a server bug must not delete it
		}
	case 0, bson.TypeNull: // 0: no such field
		r.rep.AddKept("noExpiry", 1)
		return expiredDoc{}, false
	default:
		r.rep.AddKept("unreadable", 1)
		return expiredDoc{}, false
	}
	// The cursor reuses its buffer.
	return expiredDoc{
		id:         bson.RawValue{Type: id.Type, Value: bytes.Clone(id.Value)},
		expiration: bson.DateTime(expiration.DateTime()),
	}, true
}

// flush deletes the batch (in a dry run, only counts it) and reports
// progress.
func (r *cleanupRun) flush(ctx context.Context) error {
	if len(r.batch) == 0 {
		return nil
	}
	if !r.opts.DryRun {
		var deleted int64
		var err error
		if r.server.mode == modeOneByOne {
			deleted, err = deleteOneByOne(ctx, r.coll, r.batch)
		} else {
			deleted, err = deleteRange(ctx, r.coll, r.cutoff, r.batch)
		}
		r.rep.Deleted += deleted
		if err != nil {
			return err
		}
	}
	r.batch = r.batch[:0]
	r.rep.Batches++
	r.opts.ReportProgress(r.rep, r.start)
	return nil
}

// rangeable reports whether _ids of type t are compared in the same order
// by the sort and by $gte/$lte: the types Flask-Session and most apps use.
// Other _ids are deleted by $in. They are also the only _ids FerretDB hands
// to SQLite, for a filter that is exactly {_id: <string or ObjectId>}; for
// any other filter it reads and decodes every document itself.
func rangeable(t bson.Type) bool {
	return t == bson.TypeObjectID || t == bson.TypeString
}

// collectionCount returns the number of documents from the collection's
// statistics: the count command reads every document on FerretDB.
func collectionCount(ctx context.Context, coll *mongo.Collection) (int64, error) {
	cursor, err := coll.Aggregate(ctx, mongo.Pipeline{{{Key: "$collStats", Value: bson.D{{Key: "count", Value: bson.D{}}}}}})
	if err == nil {
		var stats []struct {
			Count int64 `bson:"count"`
		}
		// One result per shard.
		if err = cursor.All(ctx, &stats); err == nil {
			var total int64
			for _, s := range stats {
				total += s.Count
			}
			return total, nil
		}
	}
	n, err := coll.EstimatedDocumentCount(ctx)
	if err != nil {
		return 0, storeError("cleanup mongodb: count sessions", err)
	}
	return n, nil
}
