package mongodb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// Flask-Session keeps one document per session in Database.Collection:
//
//	{_id: <ObjectId>, id: KeyPrefix+sid, val: <pickled session, binary>, expiration: <date, UTC>}
//
// written with an upsert on id (0.3.2: collection.update({'id': ...}, doc,
// upsert=True); the server assigns _id). A non-permanent session has
// expiration null (0.3.2 and 0.4 both write None then). 0.7+ adds a TTL index
// on expiration; older versions, and servers without TTL indexes (FerretDB
// 1.x), leave expired documents until the app happens to read them.

func init() { sessionstore.Register(sessionstore.BackendMongoDB, newMongoDB) }

const (
	mongoDefaultBatchSize = 1000
	// FerretDB deletes the matched documents with one SQL statement that
	// binds one variable per _id, and SQLite refuses more than 32766 of them
	// (PostgreSQL 65535): a larger BatchSize is lowered to this.
	mongoMaxBatchSize = 30000
	// A delete once sent is let finish after a stop; this bounds it.
	mongoBatchTimeout = 5 * time.Minute
	// Flask-Session 0.7's create_index("expiration", expireAfterSeconds=0)
	// names the index this; using the same name keeps both idempotent.
	mongoTTLIndexName = "expiration_1"

	mongoCodeUnauthorized         = 13
	mongoCodeAuthenticationFailed = 18
	mongoCodeNamespaceNotFound    = 26
	mongoCodeNotImplemented       = 238
)

type mongoStore struct {
	cfg sessionstore.Config

	mu     sync.Mutex
	client *mongo.Client
}

func newMongoDB(cfg sessionstore.Config) (sessionstore.Store, error) {
	if err := sessionstore.ValidateMongoURL(cfg.URL); err != nil {
		return nil, err
	}
	if err := sessionstore.ValidateMongoNames(cfg.Database, cfg.Collection); err != nil {
		return nil, err
	}
	return &mongoStore{cfg: cfg}, nil
}

// connect makes the client on first use, so that New does not resolve
// names (mongodb+srv:// looks up SRV records while parsing).
func (s *mongoStore) connect() (*mongo.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		return s.client, nil
	}
	// Defaults first: a value in the URL's query overrides them.
	opts := options.Client().
		SetServerSelectionTimeout(10 * time.Second).
		SetConnectTimeout(10 * time.Second).
		ApplyURI(s.cfg.URL)
	client, err := mongo.Connect(opts)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			return nil, sessionstore.NewError(sessionstore.ErrDNS, "connect mongodb", fmt.Errorf("looking up the servers: %w", dnsErr))
		}
		// The parser's messages quote parts of the URL, password included.
		return nil, sessionstore.NewError(sessionstore.ErrConfig, sessionstore.EnvURL, errors.New("not a valid MongoDB connection string (percent-encode special characters in the user name and password)"))
	}
	s.client = client
	return client, nil
}

func (s *mongoStore) collection() (*mongo.Collection, error) {
	client, err := s.connect()
	if err != nil {
		return nil, err
	}
	return client.Database(s.cfg.Database).Collection(s.cfg.Collection), nil
}

func (s *mongoStore) Ping(ctx context.Context) error {
	client, err := s.connect()
	if err != nil {
		return err
	}
	return mongoError("ping mongodb", client.Ping(ctx, nil))
}

// EnsureSchema creates the TTL index on expiration when Config.TTLIndex asks
// for it. A server without TTL indexes is not an error: the cleanup job
// removes expired sessions there.
func (s *mongoStore) EnsureSchema(ctx context.Context) (sessionstore.SchemaResult, error) {
	coll, err := s.collection()
	if err != nil {
		return sessionstore.SchemaResult{}, err
	}
	existing, err := s.expirationIndex(ctx, coll)
	if err != nil {
		return sessionstore.SchemaResult{}, err
	}
	if !s.cfg.TTLIndex {
		msg := "no TTL index asked for; the cleanup job removes expired sessions"
		if existing != nil && existing.ExpireAfterSeconds != nil {
			msg = "a TTL index on expiration exists; MongoDB removes expired sessions by itself"
		}
		return sessionstore.SchemaResult{Present: true, Message: msg}, nil
	}
	if existing != nil {
		if existing.ExpireAfterSeconds == nil || *existing.ExpireAfterSeconds != 0 {
			return sessionstore.SchemaResult{}, sessionstore.NewError(sessionstore.ErrUnknown, "ensure mongodb ttl index",
				fmt.Errorf("index %q on expiration exists without expireAfterSeconds 0; drop it or change it with collMod", existing.Name))
		}
		return sessionstore.SchemaResult{Present: true, Message: "TTL index on expiration present"}, nil
	}

	_, err = coll.Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys:    bson.D{{Key: "expiration", Value: 1}},
		Options: options.Index().SetName(mongoTTLIndexName).SetExpireAfterSeconds(0),
	})
	var serverErr mongo.ServerError
	if errors.As(err, &serverErr) && serverErr.HasErrorCode(mongoCodeNotImplemented) {
		return sessionstore.SchemaResult{
			Present:        true,
			TTLUnsupported: true,
			Message:        "TTL unsupported by this server (it answered NotImplemented to expireAfterSeconds, as FerretDB 1.x does); the cleanup job removes expired sessions",
		}, nil
	}
	if err != nil {
		return sessionstore.SchemaResult{}, mongoError("ensure mongodb ttl index", err)
	}
	return sessionstore.SchemaResult{Present: true, Created: []string{"ttl index"}, Message: "created the TTL index on expiration (expireAfterSeconds 0)"}, nil
}

// expirationIndex returns the index whose key is exactly {expiration: 1},
// or nil.
func (s *mongoStore) expirationIndex(ctx context.Context, coll *mongo.Collection) (*mongo.IndexSpecification, error) {
	specs, err := coll.Indexes().ListSpecifications(ctx)
	var serverErr mongo.ServerError
	if errors.As(err, &serverErr) && serverErr.HasErrorCode(mongoCodeNamespaceNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, mongoError("list mongodb indexes", err)
	}
	for _, spec := range specs {
		var keys bson.D
		if bson.Unmarshal(spec.KeysDocument, &keys) != nil || len(keys) != 1 || keys[0].Key != "expiration" {
			continue
		}
		if dir, ok := mongoAsInt(keys[0].Value); ok && dir == 1 {
			return &spec, nil
		}
	}
	return nil, nil
}

func mongoAsInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int32:
		return int64(n), true
	case int64:
		return n, true
	case float64:
		return int64(n), float64(int64(n)) == n
	}
	return 0, false
}

// Cleanup deletes the documents whose expiration is at or before opts.Now.
//
// One cursor, sorted by _id, reads the collection once and returns _id and
// expiration of the documents that are expired or have no date to expire by.
// Each run of up to BatchSize expired ids in that order is one delete:
//
//	deleteMany({expiration: {$lte: now}, _id: {$gte: first, $lte: last}})
//
// The expiry is checked again by the server at the moment of the delete, so a
// session the app refreshed after the cursor saw it is kept; every document
// between first and last that the cursor did not return had not expired, and
// the same check keeps it. A range, not a list of ids: FerretDB tests $in by
// walking the list for every document it reads, so lists cost time that grows
// with the square of the expired count. Documents whose expiration is null,
// missing or not a date are counted and never deleted.
func (s *mongoStore) Cleanup(ctx context.Context, opts sessionstore.CleanupOptions) (sessionstore.Report, error) {
	start := time.Now()
	now := opts.Now
	if now.IsZero() {
		now = start
	}
	// BSON dates hold milliseconds; rounding down keeps the cut-off early.
	now = now.UTC().Truncate(time.Millisecond)
	rep := sessionstore.Report{Backend: sessionstore.BackendMongoDB, DryRun: opts.DryRun, Now: now}
	batchSize := min(opts.BatchSizeOr(mongoDefaultBatchSize), mongoMaxBatchSize)
	ttl := false
	done := func(err error) (sessionstore.Report, error) {
		rep.Duration = time.Since(start)
		rep.NativeExpiry = ttl && rep.Expired == 0
		rep.Message = mongoMessage(rep, ttl, err)
		return rep, err
	}

	coll, err := s.collection()
	if err != nil {
		return done(err)
	}
	// Only for the report's note: a user allowed to delete but not to list
	// indexes still gets the cleanup done.
	index, _ := s.expirationIndex(ctx, coll)
	ttl = index != nil && index.ExpireAfterSeconds != nil
	if rep.Scanned, err = mongoCount(ctx, coll); err != nil {
		return done(err)
	}

	filter := bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "expiration", Value: bson.D{{Key: "$lte", Value: now}}}},
		bson.D{{Key: "expiration", Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$type", Value: "date"}}}}}},
	}}}
	cursor, err := coll.Find(ctx, filter, options.Find().
		SetSort(bson.D{{Key: "_id", Value: 1}}).
		SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "expiration", Value: 1}}).
		SetBatchSize(int32(batchSize)))
	if err != nil {
		return done(mongoError("cleanup mongodb: find expired sessions", err))
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		cursor.Close(closeCtx)
	}()

	ids := make([]bson.RawValue, 0, batchSize)
	flush := func() error {
		if len(ids) == 0 {
			return nil
		}
		if !opts.DryRun {
			deleted, err := s.deleteExpired(ctx, coll, now, ids)
			rep.Deleted += deleted
			if err != nil {
				return err
			}
		}
		ids = ids[:0]
		rep.Batches++
		opts.ReportProgress(rep, start)
		return nil
	}
	// Mid-scan, a batch is deleted and then a stop asked for is honoured.
	flushOrStop := func() error {
		if err := flush(); err != nil {
			return err
		}
		return ctx.Err()
	}

	for cursor.Next(ctx) {
		id, expiration := cursor.Current.Lookup("_id"), cursor.Current.Lookup("expiration")
		switch expiration.Type {
		case bson.TypeDateTime:
			if expiration.Time().After(now) {
				continue // not asked for; a server bug must not delete it
			}
		case 0, bson.TypeNull: // 0: no such field
			rep.AddKept("noExpiry", 1)
			continue
		default:
			rep.AddKept("unreadable", 1)
			continue
		}
		// A range holds one type: MongoDB compares _ids of different types
		// by type order, and $gte/$lte match only their own type.
		if len(ids) > 0 && id.Type != ids[0].Type {
			if err := flushOrStop(); err != nil {
				return done(err)
			}
		}
		rep.Expired++
		// The cursor reuses its buffer.
		ids = append(ids, bson.RawValue{Type: id.Type, Value: bytes.Clone(id.Value)})
		if len(ids) == batchSize {
			if err := flushOrStop(); err != nil {
				return done(err)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return done(err)
	}
	if err := cursor.Err(); err != nil {
		return done(mongoError("cleanup mongodb: read expired sessions", err))
	}
	return done(flush())
}

// mongoRangeable reports whether _ids of type t are compared in the same
// order by the sort and by $gte/$lte: the types Flask-Session and most apps
// use. Other _ids are deleted by $in.
func mongoRangeable(t bson.Type) bool {
	return t == bson.TypeObjectID || t == bson.TypeString
}

// mongoCount returns the number of documents from the collection's
// statistics: the count command reads every document on FerretDB.
func mongoCount(ctx context.Context, coll *mongo.Collection) (int64, error) {
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
		return 0, mongoError("cleanup mongodb: count sessions", err)
	}
	return n, nil
}

// deleteExpired deletes, of ids (one type, in _id order), those whose
// expiration is still at or before now. The delete is let finish when ctx
// ends, so a stop comes between batches.
func (s *mongoStore) deleteExpired(ctx context.Context, coll *mongo.Collection, now time.Time, ids []bson.RawValue) (int64, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), mongoBatchTimeout)
	defer cancel()
	// expiration first: FerretDB checks filter fields in order, and most
	// documents fail that test before the _id one is evaluated. $lte alone
	// would also match an array holding an old date, which the cursor
	// reported as unreadable and a range may cover.
	expired := bson.E{Key: "expiration", Value: bson.D{
		{Key: "$lte", Value: now},
		{Key: "$not", Value: bson.D{{Key: "$type", Value: "array"}}},
	}}
	filter := bson.D{expired, {Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}
	if mongoRangeable(ids[0].Type) {
		filter = bson.D{expired, {Key: "_id", Value: bson.D{{Key: "$gte", Value: ids[0]}, {Key: "$lte", Value: ids[len(ids)-1]}}}}
	}
	res, err := coll.DeleteMany(ctx, filter)
	if err != nil {
		return 0, mongoError("cleanup mongodb: delete expired sessions", err)
	}
	return res.DeletedCount, nil
}

func mongoMessage(rep sessionstore.Report, ttl bool, err error) string {
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
	if ttl {
		b.WriteString("; a TTL index on expiration also removes expired sessions (MongoDB checks every 60 s)")
	}
	return b.String()
}

// mongoError classifies a driver error. A failed server selection carries
// the reason each server could not be reached; a connection lost during an
// operation is reported as the server being unreachable.
func mongoError(op string, err error) error {
	if err == nil {
		return nil
	}
	var selErr topology.ServerSelectionError
	if errors.As(err, &selErr) {
		for _, server := range selErr.Desc.Servers {
			if server.LastError == nil {
				continue
			}
			if kind := sessionstore.ClassifyKind(server.LastError); kind != sessionstore.ErrUnknown {
				return sessionstore.NewError(kind, op, fmt.Errorf("no MongoDB server reachable: %s: %w", server.Addr, server.LastError))
			}
		}
		return sessionstore.NewError(sessionstore.ErrTimeout, op, fmt.Errorf("no MongoDB server reachable in time: %w", err))
	}
	var serverErr mongo.ServerError
	if errors.As(err, &serverErr) && (serverErr.HasErrorCode(mongoCodeAuthenticationFailed) || serverErr.HasErrorCode(mongoCodeUnauthorized)) {
		return sessionstore.NewError(sessionstore.ErrAuth, op, err)
	}
	classified := sessionstore.Classify(op, err)
	if sessionstore.KindOf(classified) == sessionstore.ErrUnknown && mongo.IsNetworkError(err) {
		return sessionstore.NewError(sessionstore.ErrRefused, op, fmt.Errorf("lost the connection to the MongoDB server: %w", err))
	}
	return classified
}

func (s *mongoStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.client.Disconnect(ctx)
	s.client = nil
	return err
}
