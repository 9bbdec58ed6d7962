package mongodb

import (
	"context"
	"errors"
	"fmt"
	"net"
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

func init() { sessionstore.Register(sessionstore.BackendMongoDB, newStore) }

const (
	defaultBatchSize = 1000
	// FerretDB deletes the matched documents with one SQL statement that
	// binds one variable per _id, and SQLite refuses more than 32766 of them
	// (PostgreSQL 65535): a larger BatchSize is lowered to this.
	maxBatchSize = 30000
	// A delete once sent is let finish after a stop; this bounds it.
	batchTimeout = 5 * time.Minute
	// Flask-Session 0.7's create_index("expiration", expireAfterSeconds=0)
	// names the index this; using the same name keeps both idempotent.
	ttlIndexName = "expiration_1"

	codeUnauthorized         = 13
	codeAuthenticationFailed = 18
	codeNamespaceNotFound    = 26
	codeNotImplemented       = 238
)

type store struct {
	cfg sessionstore.Config

	mu     sync.Mutex
	client *mongo.Client

	// forceMode, set by tests only, overrides how Cleanup deletes, so that
	// the MongoDB way is tested on FerretDB too.
	forceMode deleteMode
}

func newStore(cfg sessionstore.Config) (sessionstore.Store, error) {
	if err := sessionstore.ValidateMongoURL(cfg.URL); err != nil {
		return nil, err
	}
	if err := sessionstore.ValidateMongoNames(cfg.Database, cfg.Collection); err != nil {
		return nil, err
	}
	return &store{cfg: cfg}, nil
}

// connect makes the client on first use, so that New does not resolve
// names (mongodb+srv:// looks up SRV records while parsing).
func (s *store) connect() (*mongo.Client, error) {
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

func (s *store) collection() (*mongo.Collection, error) {
	client, err := s.connect()
	if err != nil {
		return nil, err
	}
	return client.Database(s.cfg.Database).Collection(s.cfg.Collection), nil
}

func (s *store) Ping(ctx context.Context) error {
	client, err := s.connect()
	if err != nil {
		return err
	}
	return storeError("ping mongodb", client.Ping(ctx, nil))
}

// EnsureSchema creates the TTL index on expiration when Config.TTLIndex asks
// for it. A server without TTL indexes is not an error: the cleanup job
// removes expired sessions there.
func (s *store) EnsureSchema(ctx context.Context) (sessionstore.SchemaResult, error) {
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
		Options: options.Index().SetName(ttlIndexName).SetExpireAfterSeconds(0),
	})
	var serverErr mongo.ServerError
	if errors.As(err, &serverErr) && serverErr.HasErrorCode(codeNotImplemented) {
		return sessionstore.SchemaResult{
			Present:        true,
			TTLUnsupported: true,
			Message:        "TTL unsupported by this server (it answered NotImplemented to expireAfterSeconds, as FerretDB 1.x does); the cleanup job removes expired sessions",
		}, nil
	}
	if err != nil {
		return sessionstore.SchemaResult{}, storeError("ensure mongodb ttl index", err)
	}
	return sessionstore.SchemaResult{Present: true, Created: []string{"ttl index"}, Message: "created the TTL index on expiration (expireAfterSeconds 0)"}, nil
}

// expirationIndex returns the index whose key is exactly {expiration: 1},
// or nil.
func (s *store) expirationIndex(ctx context.Context, coll *mongo.Collection) (*mongo.IndexSpecification, error) {
	specs, err := coll.Indexes().ListSpecifications(ctx)
	var serverErr mongo.ServerError
	if errors.As(err, &serverErr) && serverErr.HasErrorCode(codeNamespaceNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, storeError("list mongodb indexes", err)
	}
	for _, spec := range specs {
		var keys bson.D
		if bson.Unmarshal(spec.KeysDocument, &keys) != nil || len(keys) != 1 || keys[0].Key != "expiration" {
			continue
		}
		if dir, ok := asInt(keys[0].Value); ok && dir == 1 {
			return &spec, nil
		}
	}
	return nil, nil
}

func asInt(v any) (int64, bool) {
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

// storeError classifies a driver error. A failed server selection carries
// the reason each server could not be reached; a connection lost during an
// operation is reported as the server being unreachable.
func storeError(op string, err error) error {
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
	if errors.As(err, &serverErr) && (serverErr.HasErrorCode(codeAuthenticationFailed) || serverErr.HasErrorCode(codeUnauthorized)) {
		return sessionstore.NewError(sessionstore.ErrAuth, op, err)
	}
	classified := sessionstore.Classify(op, err)
	if sessionstore.KindOf(classified) == sessionstore.ErrUnknown && mongo.IsNetworkError(err) {
		return sessionstore.NewError(sessionstore.ErrRefused, op, fmt.Errorf("lost the connection to the MongoDB server: %w", err))
	}
	return classified
}

func (s *store) Close() error {
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
