package mongodb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/storetest"
	"github.com/sessionstore/sessionstore-operator/internal/testservers"
)

// The tests use the FerretDB (MongoDB wire protocol) that
// hack/start-services.sh starts; each one works in a database of its own.
const testURL = "mongodb://127.0.0.1:27017/"

func testClient(t testing.TB, url string) *mongo.Client {
	t.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(url))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Disconnect(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Ping(ctx, nil); err != nil {
		t.Fatalf("FerretDB/MongoDB is not reachable at %s (%v); run hack/start-services.sh", url, err)
	}
	return client
}

// testDatabase returns a database name of the test's own, dropped when
// the test ends.
func testDatabase(t testing.TB, client *mongo.Client) string {
	t.Helper()
	b := make([]byte, 5)
	rand.Read(b)
	name := "sstest_" + hex.EncodeToString(b)
	t.Cleanup(func() { client.Database(name).Drop(context.Background()) })
	return name
}

func testStore(t testing.TB, cfg sessionstore.Config) sessionstore.Store {
	t.Helper()
	cfg.Backend = sessionstore.BackendMongoDB
	if cfg.URL == "" {
		cfg.URL = testURL
	}
	if cfg.Collection == "" {
		cfg.Collection = sessionstore.DefaultCollection
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = sessionstore.DefaultKeyPrefix
	}
	return storetest.NewStore(t, cfg)
}

// rangeStore is a store that deletes the way it does on MongoDB (by _id
// range) though its server is FerretDB, so that this way is tested too.
func rangeStore(t testing.TB, cfg sessionstore.Config) sessionstore.Store {
	t.Helper()
	s := testStore(t, cfg)
	s.(*store).forceMode = modeRanges
	return s
}

// bothModes runs test once per way of deleting: one document per command
// (what FerretDB gets) and by _id range (what MongoDB gets).
func bothModes(t *testing.T, test func(t *testing.T, newStore func(testing.TB, sessionstore.Config) sessionstore.Store)) {
	t.Run("one by one", func(t *testing.T) { test(t, testStore) })
	t.Run("ranges", func(t *testing.T) { test(t, rangeStore) })
}

// flaskWrite has the real Flask-Session write count sessions that
// expire after lifetime (negative: already expired).
func flaskWrite(t *testing.T, db string, lifetime time.Duration, count int, extra ...string) []storetest.FlaskSession {
	t.Helper()
	args := append([]string{testURL, db, sessionstore.DefaultCollection, sessionstore.DefaultKeyPrefix, fmt.Sprint(int(lifetime.Seconds())), fmt.Sprint(count)}, extra...)
	return storetest.FlaskWrite(t, "flask_mongodb_sessions.py", count, args...)
}

func flaskRead(t *testing.T, db string, sessions []storetest.FlaskSession) map[string]*string {
	t.Helper()
	return storetest.FlaskRead(t, "flask_mongodb_sessions.py", sessions, testURL, db, sessionstore.DefaultCollection, sessionstore.DefaultKeyPrefix)
}

// storedIDs returns the storage ids of the documents in coll.
func storedIDs(t testing.TB, coll *mongo.Collection) map[string]bool {
	t.Helper()
	cur, err := coll.Find(context.Background(), bson.D{}, options.Find().SetProjection(bson.D{{Key: "id", Value: 1}}))
	if err != nil {
		t.Fatal(err)
	}
	var docs []struct {
		ID string `bson:"id"`
	}
	if err := cur.All(context.Background(), &docs); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, d := range docs {
		ids[d.ID] = true
	}
	return ids
}

func TestPing(t *testing.T) {
	testClient(t, testURL)
	ctx := context.Background()
	if err := testStore(t, sessionstore.Config{Database: "sstest_ping"}).Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}

	t.Run("refused", func(t *testing.T) {
		t.Parallel() // each waits for its deadline
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		err := testStore(t, sessionstore.Config{URL: "mongodb://sess:s3cr%40t@" + testservers.FreeAddr(t) + "/", Database: "d"}).Ping(ctx)
		storetest.WantKind(t, err, sessionstore.ErrRefused)
		if strings.Contains(err.Error(), "s3cr") {
			t.Fatalf("error quotes the password: %v", err)
		}
	})
	t.Run("dns", func(t *testing.T) {
		t.Parallel() // each waits for its deadline
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := testStore(t, sessionstore.Config{URL: "mongodb://no-such-host.invalid:27017/", Database: "d"}).Ping(ctx)
		storetest.WantKind(t, err, sessionstore.ErrDNS)
	})
	t.Run("timeout", func(t *testing.T) {
		t.Parallel() // each waits for its deadline
		// A listener that accepts and never answers.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		err = testStore(t, sessionstore.Config{URL: "mongodb://" + ln.Addr().String() + "/", Database: "d"}).Ping(ctx)
		storetest.WantKind(t, err, sessionstore.ErrTimeout)
	})
	t.Run("tls certificate not trusted", func(t *testing.T) {
		t.Parallel() // each waits for its deadline
		srv := httptest.NewUnstartedServer(http.NotFoundHandler())
		srv.StartTLS()
		defer srv.Close()
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		err := testStore(t, sessionstore.Config{URL: "mongodb://" + srv.Listener.Addr().String() + "/?tls=true", Database: "d"}).Ping(ctx)
		storetest.WantKind(t, err, sessionstore.ErrTLS)
	})
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  sessionstore.Config
		key  string
	}{
		{"wrong scheme", sessionstore.Config{URL: "postgres://h/", Database: "d", Collection: "c"}, sessionstore.EnvURL},
		{"database with a dot", sessionstore.Config{URL: testURL, Database: "a.b", Collection: "c"}, sessionstore.EnvDatabase},
		{"database with a dollar", sessionstore.Config{URL: testURL, Database: "a$b", Collection: "c"}, sessionstore.EnvDatabase},
		{"empty database", sessionstore.Config{URL: testURL, Collection: "c"}, sessionstore.EnvDatabase},
		{"long database", sessionstore.Config{URL: testURL, Database: strings.Repeat("d", 64), Collection: "c"}, sessionstore.EnvDatabase},
		{"collection with a dot", sessionstore.Config{URL: testURL, Database: "d", Collection: "system.x"}, sessionstore.EnvCollection},
		{"collection with a dollar", sessionstore.Config{URL: testURL, Database: "d", Collection: "c$"}, sessionstore.EnvCollection},
		{"empty collection", sessionstore.Config{URL: testURL, Database: "d"}, sessionstore.EnvCollection},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Backend = sessionstore.BackendMongoDB
			_, err := sessionstore.New(tc.cfg)
			storetest.WantKind(t, err, sessionstore.ErrConfig)
			var se *sessionstore.Error
			if !errors.As(err, &se) || se.Op != tc.key {
				t.Fatalf("error %v does not name %s", err, tc.key)
			}
		})
	}

	t.Run("unparsable URL is not quoted", func(t *testing.T) {
		err := testStore(t, sessionstore.Config{URL: "mongodb://u:pa%zzword@h:27017/", Database: "d"}).Ping(context.Background())
		storetest.WantKind(t, err, sessionstore.ErrConfig)
		if strings.Contains(err.Error(), "zzword") {
			t.Fatalf("error quotes the URL: %v", err)
		}
	})
}

func TestEnsureSchemaReportsTTLUnsupported(t *testing.T) {
	client := testClient(t, testURL)
	db := testDatabase(t, client)
	ctx := context.Background()

	store := testStore(t, sessionstore.Config{Database: db, TTLIndex: true})
	for i := range 2 { // the second call finds the same answer
		res, err := store.EnsureSchema(ctx)
		if err != nil {
			t.Fatalf("EnsureSchema #%d: %v", i+1, err)
		}
		if !res.TTLUnsupported || !res.Present || len(res.Created) != 0 || !strings.Contains(res.Message, "TTL unsupported") {
			t.Fatalf("EnsureSchema #%d on FerretDB = %+v; want TTL unsupported, not an error", i+1, res)
		}
	}

	res, err := testStore(t, sessionstore.Config{Database: db}).EnsureSchema(ctx)
	if err != nil || !res.Present || res.TTLUnsupported || len(res.Created) != 0 {
		t.Fatalf("EnsureSchema without TTLIndex = %+v, %v; want present, nothing created", res, err)
	}
	specs, err := client.Database(db).Collection(sessionstore.DefaultCollection).Indexes().ListSpecifications(ctx)
	if err == nil {
		for _, spec := range specs {
			if spec.ExpireAfterSeconds != nil {
				t.Fatalf("a TTL index appeared: %+v", spec)
			}
		}
	}
}

// checkFlaskLayout checks what Flask-Session 0.3.2 writes, read back as
// stored, for a live and a non-permanent session.
func checkFlaskLayout(t *testing.T, coll *mongo.Collection, live, nonPermanent storetest.FlaskSession) {
	t.Helper()
	ctx := context.Background()
	var doc bson.M
	if err := coll.FindOne(ctx, bson.D{{Key: "id", Value: sessionstore.DefaultKeyPrefix + live.SID}}).Decode(&doc); err != nil {
		t.Fatalf("the live session's document: %v", err)
	}
	if _, ok := doc["_id"].(bson.ObjectID); !ok {
		t.Errorf("_id is %T, want the ObjectId the server assigns on upsert", doc["_id"])
	}
	if _, ok := doc["val"].(bson.Binary); !ok {
		t.Errorf("val is %T, want binary (a pickle)", doc["val"])
	}
	if exp, ok := doc["expiration"].(bson.DateTime); !ok || time.Until(exp.Time()) < 50*time.Minute {
		t.Errorf("expiration is %v (%T), want a date an hour ahead", doc["expiration"], doc["expiration"])
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "id", Value: sessionstore.DefaultKeyPrefix + nonPermanent.SID}}).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if v, ok := doc["expiration"]; !ok || v != nil {
		t.Errorf("non-permanent session's expiration is %v (present %v), want null", v, ok)
	}
}

// checkFlaskLeft checks that of the sessions the app wrote, the expired are
// gone and the others there, as are the two documents without a date.
func checkFlaskLeft(t *testing.T, coll *mongo.Collection, expired, kept []storetest.FlaskSession) {
	t.Helper()
	ids := storedIDs(t, coll)
	for _, s := range expired {
		if ids[sessionstore.DefaultKeyPrefix+s.SID] {
			t.Errorf("expired session %s was not deleted", s.SID)
		}
	}
	for _, s := range kept {
		if !ids[sessionstore.DefaultKeyPrefix+s.SID] {
			t.Errorf("session %s that had not expired was deleted", s.SID)
		}
	}
	if !ids[sessionstore.DefaultKeyPrefix+"no-field"] || !ids[sessionstore.DefaultKeyPrefix+"string-date"] {
		t.Errorf("a document without a date expiration was deleted")
	}
}

func TestCleanupFlaskSessions(t *testing.T) { bothModes(t, testCleanupFlaskSessions) }

func testCleanupFlaskSessions(t *testing.T, newStore func(testing.TB, sessionstore.Config) sessionstore.Store) {
	client := testClient(t, testURL)
	db := testDatabase(t, client)
	coll := client.Database(db).Collection(sessionstore.DefaultCollection)
	ctx := context.Background()

	live := flaskWrite(t, db, time.Hour, 6)
	expired := flaskWrite(t, db, -time.Hour, 5)
	nonPermanent := flaskWrite(t, db, time.Hour, 3, "non-permanent")

	checkFlaskLayout(t, coll, live[0], nonPermanent[0])

	// Documents the app did not write: no expiration field, and one that is not a date.
	if _, err := coll.InsertMany(ctx, []any{
		bson.D{{Key: "id", Value: sessionstore.DefaultKeyPrefix + "no-field"}, {Key: "val", Value: bson.Binary{Data: []byte("x")}}},
		bson.D{{Key: "id", Value: sessionstore.DefaultKeyPrefix + "string-date"}, {Key: "val", Value: bson.Binary{Data: []byte("x")}}, {Key: "expiration", Value: "2001-01-01"}},
	}); err != nil {
		t.Fatal(err)
	}

	store := newStore(t, sessionstore.Config{Database: db})
	rep, err := store.Cleanup(ctx, sessionstore.CleanupOptions{Now: time.Now(), BatchSize: 2, DryRun: true})
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if rep.Expired != 5 || rep.Deleted != 0 || len(storedIDs(t, coll)) != 16 {
		t.Fatalf("dry run %+v: want 5 expired found and nothing deleted", rep)
	}

	var batches int
	rep, err = store.Cleanup(ctx, sessionstore.CleanupOptions{Now: time.Now(), BatchSize: 2, Progress: func(sessionstore.Report) { batches++ }})
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	t.Logf("report: %+v", rep)
	if rep.Scanned != 16 || rep.Expired != 5 || rep.Deleted != 5 || rep.Batches != 3 || batches != 3 {
		t.Fatalf("report %+v: want 16 scanned, 5 expired and deleted in 3 batches of 2", rep)
	}
	if rep.Kept["noExpiry"] != 4 || rep.Kept["unreadable"] != 1 || rep.NativeExpiry {
		t.Fatalf("kept %v: want 4 without expiration (3 null, 1 missing) and 1 unreadable", rep.Kept)
	}

	checkFlaskLeft(t, coll, expired, append(append([]storetest.FlaskSession{}, live...), nonPermanent...))

	read := flaskRead(t, db, live)
	for _, s := range live {
		if got := read[s.SID]; got == nil || *got != s.Value {
			t.Errorf("the app reads %v for live session %s, want %q", got, s.SID, s.Value)
		}
	}

	rep, err = store.Cleanup(ctx, sessionstore.CleanupOptions{Now: time.Now(), BatchSize: 2})
	if err != nil || rep.Expired != 0 || rep.Deleted != 0 {
		t.Fatalf("second run %+v, %v: want nothing left to delete", rep, err)
	}
}

// Deletes go by _id ranges of one type; _ids of several types, as a
// collection written by other tools may hold, must neither be missed nor
// widen a range onto a live session.
func TestCleanupMixedIDTypes(t *testing.T) { bothModes(t, testCleanupMixedIDTypes) }

func testCleanupMixedIDTypes(t *testing.T, newStore func(testing.TB, sessionstore.Config) sessionstore.Store) {
	client := testClient(t, testURL)
	db := testDatabase(t, client)
	coll := client.Database(db).Collection(sessionstore.DefaultCollection)
	ctx := context.Background()
	now := time.Now()

	var docs []any
	wantLeft := map[string]bool{}
	ids := []any{int32(7), int64(8), 9.5, "a", "b", "c", bson.NewObjectID(), bson.NewObjectID(), bson.D{{Key: "k", Value: 1}}}
	for i, id := range ids {
		for j, expiration := range []time.Time{now.Add(-time.Hour), now.Add(time.Hour)} {
			key := fmt.Sprintf("session:%d-%d", i, j)
			docID := id
			if j == 1 { // a live neighbour of the same type
				switch v := id.(type) {
				case string:
					docID = v + "0"
				case bson.ObjectID:
					docID = bson.NewObjectID()
				case bson.D:
					docID = bson.D{{Key: "k", Value: 2}}
				default:
					docID = fmt.Sprint(v) // another type again
				}
				wantLeft[key] = true
			}
			docs = append(docs, append(bson.D{{Key: "_id", Value: docID}}, sessionDoc(key, expiration)...))
		}
	}
	// Inside the range of the expired "a" and "b": not Flask's layout, so
	// never deleted, though $lte alone matches an array holding an old date.
	docs = append(docs, append(bson.D{{Key: "_id", Value: "a1"}}, sessionDoc("session:array", bson.A{now.Add(-time.Hour)})...))
	wantLeft["session:array"] = true
	insertDocs(t, coll, docs)

	rep, err := newStore(t, sessionstore.Config{Database: db}).Cleanup(ctx, sessionstore.CleanupOptions{Now: now, BatchSize: 2})
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	left := storedIDs(t, coll)
	if rep.Kept["unreadable"] != 1 || rep.Expired != int64(len(ids)) || rep.Deleted != int64(len(ids)) || len(left) != len(wantLeft) {
		t.Fatalf("report %+v, %d left: want the %d expired deleted and the live kept", rep, len(left), len(ids))
	}
	for key := range wantLeft {
		if !left[key] {
			t.Errorf("live session %s was deleted", key)
		}
	}
}

// sessionDoc is a document as Flask-Session writes it.
func sessionDoc(id string, expiration any) bson.D {
	return bson.D{{Key: "id", Value: id}, {Key: "val", Value: bson.Binary{Data: []byte(id)}}, {Key: "expiration", Value: expiration}}
}

// replaceSession writes a session the way Flask-Session 0.3.2 does:
// update({'id': id}, {id, val, expiration}, upsert=True).
func replaceSession(ctx context.Context, coll *mongo.Collection, id string, expiration time.Time) error {
	_, err := coll.ReplaceOne(ctx, bson.D{{Key: "id", Value: id}}, sessionDoc(id, expiration), options.Replace().SetUpsert(true))
	return err
}

func insertDocs(t testing.TB, coll *mongo.Collection, docs []any) {
	t.Helper()
	for chunk := range func(yield func([]any) bool) {
		for len(docs) > 0 {
			n := min(len(docs), 5000)
			if !yield(docs[:n]) {
				return
			}
			docs = docs[n:]
		}
	} {
		if _, err := coll.InsertMany(context.Background(), chunk); err != nil {
			t.Fatal(err)
		}
	}
}

// meanwhileLayout is the collection TestCleanupKeepsSessionsRefreshedMeanwhile
// cleans, in natural (insertion) order: the expired sessions come first, so
// the refreshed ones are still ahead of the cleanup when they are refreshed.
type meanwhileLayout struct {
	expired, refreshed, live []string
	// soonest is the earliest expiry of the live sessions.
	soonest time.Time
}

// writeMeanwhileLayout writes sessions around a cut-off of about now less
// grace: the live ones are due to cross it within a second or so after the
// cleanup starts.
func writeMeanwhileLayout(t *testing.T, coll *mongo.Collection, grace time.Duration) meanwhileLayout {
	cutoff := time.Now().Add(-grace)
	var l meanwhileLayout
	var docs []any
	for i := range 300 {
		l.expired = append(l.expired, fmt.Sprintf("session:expired-%d", i))
		docs = append(docs, sessionDoc(l.expired[i], cutoff.Add(-time.Hour)))
	}
	for i := range 40 {
		l.refreshed = append(l.refreshed, fmt.Sprintf("session:refreshed-%d", i))
		docs = append(docs, sessionDoc(l.refreshed[i], cutoff.Add(-time.Second)))
	}
	l.soonest = cutoff.Add(5 * time.Second)
	for i := range 100 {
		l.live = append(l.live, fmt.Sprintf("session:live-%d", i))
		docs = append(docs, sessionDoc(l.live[i], l.soonest.Add(time.Duration(i)*10*time.Millisecond)))
	}
	insertDocs(t, coll, docs)
	return l
}

// appWriters re-save live sessions and add new ones until stop is called,
// which returns how many writes were made and the ids of the new sessions.
func appWriters(t *testing.T, coll *mongo.Collection, live []string) (stop func() (int64, []string)) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var writes atomic.Int64
	var mu sync.Mutex
	var created []string
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i += 3 {
				id, isNew := live[i%len(live)], i%10 == 0
				if isNew {
					id = fmt.Sprintf("session:new-%d-%d", w, i)
				}
				if err := replaceSession(ctx, coll, id, time.Now().Add(time.Hour)); err != nil {
					if ctx.Err() == nil {
						t.Errorf("writer: %v", err)
					}
					return
				}
				writes.Add(1)
				if isNew {
					mu.Lock()
					created = append(created, id)
					mu.Unlock()
				}
			}
		}()
	}
	return func() (int64, []string) {
		cancel()
		wg.Wait()
		return writes.Load(), created
	}
}

// Writers keep refreshing live sessions (some due to expire right after the
// cut-off) and adding new ones while the cleanup runs in batches of 10; some
// expired sessions are refreshed between two batches. None of them may be
// lost.
func TestCleanupKeepsSessionsRefreshedMeanwhile(t *testing.T) {
	bothModes(t, testCleanupKeepsSessionsRefreshedMeanwhile)
}

func testCleanupKeepsSessionsRefreshedMeanwhile(t *testing.T, newStore func(testing.TB, sessionstore.Config) sessionstore.Store) {
	client := testClient(t, testURL)
	db := testDatabase(t, client)
	coll := client.Database(db).Collection(sessionstore.DefaultCollection)
	ctx := context.Background()
	const grace = time.Hour
	l := writeMeanwhileLayout(t, coll, grace)

	stopWriters := appWriters(t, coll, l.live)
	var once sync.Once
	rep, err := newStore(t, sessionstore.Config{Database: db}).Cleanup(ctx, sessionstore.CleanupOptions{
		Grace:     grace,
		BatchSize: 10,
		Progress: func(sessionstore.Report) {
			// After the first batch: the app refreshes sessions that had
			// expired by the cut-off and that the cleanup has not reached.
			once.Do(func() {
				for _, id := range l.refreshed {
					if err := replaceSession(ctx, coll, id, time.Now().Add(time.Hour)); err != nil {
						t.Errorf("refresh %s: %v", id, err)
					}
				}
			})
		},
	})
	writes, created := stopWriters()
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	t.Logf("report %+v; %d writes by the app meanwhile", rep, writes)
	if writes < 50 {
		t.Fatalf("only %d writes happened during the cleanup; the test did not exercise concurrency", writes)
	}
	if !rep.Cutoff.Before(l.soonest) {
		t.Fatalf("cut-off %v is not before the live sessions' expiry %v: the setup took too long", rep.Cutoff, l.soonest)
	}

	ids := storedIDs(t, coll)
	lost := 0
	for _, id := range append(append(append([]string{}, l.live...), l.refreshed...), created...) {
		if !ids[id] {
			lost++
			t.Errorf("session %s was live or refreshed and is gone", id)
		}
	}
	for _, id := range l.expired {
		if ids[id] {
			t.Errorf("expired session %s was not deleted", id)
		}
	}
	if lost > 0 || rep.Deleted != 300 {
		t.Fatalf("%d live sessions lost, %d deleted (want 300)", lost, rep.Deleted)
	}
}

func TestCleanupStopsOnCancel(t *testing.T) {
	client := testClient(t, testURL)
	db := testDatabase(t, client)
	coll := client.Database(db).Collection(sessionstore.DefaultCollection)
	var docs []any
	for i := range 50 {
		docs = append(docs, sessionDoc(fmt.Sprintf("session:%d", i), time.Now().Add(-time.Hour)))
	}
	insertDocs(t, coll, docs)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rep, err := testStore(t, sessionstore.Config{Database: db}).Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 10, Progress: func(sessionstore.Report) { cancel() }})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if n, _ := coll.CountDocuments(context.Background(), bson.D{}); rep.Batches != 1 || rep.Deleted != 10 || n != 40 {
		t.Fatalf("report %+v, %d left: want one whole batch of 10 deleted, then a stop", rep, n)
	}
}

// The CRD allows batches of 100000; FerretDB refuses to delete more than
// 32766 documents at once, so larger batches are split. FerretDB gets one
// delete per document now, but another server may bind one variable per _id
// too.
func TestCleanupBatchOverFerretDBLimit(t *testing.T) {
	client := testClient(t, testURL)
	db := testDatabase(t, client)
	coll := client.Database(db).Collection(sessionstore.DefaultCollection)
	// Over SQLite's limit, so that without the split FerretDB refuses it.
	expired := 32766 + 10
	docs := make([]any, expired)
	for i := range docs {
		docs[i] = sessionDoc(fmt.Sprintf("session:%d", i), time.Now().Add(-time.Hour))
	}
	insertDocs(t, coll, docs)

	rep, err := rangeStore(t, sessionstore.Config{Database: db}).Cleanup(context.Background(), sessionstore.CleanupOptions{BatchSize: 100000})
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if rep.Deleted != int64(expired) || rep.Batches != 2 {
		t.Fatalf("report %+v: want %d deleted in 2 batches", rep, expired)
	}
}

// ferretDB is a FerretDB of the test's own, which it can stop and start.
type ferretDB struct {
	t    *testing.T
	addr string
	dir  string
	cmd  *exec.Cmd
}

func startFerretDB(t *testing.T, addr, dir string) *ferretDB {
	t.Helper()
	bin, _ := filepath.Abs("../../../bin/ferretdb")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no FerretDB binary at %s (%v); run hack/start-services.sh", bin, err)
	}
	f := &ferretDB{t: t, addr: addr, dir: dir}
	f.cmd = exec.Command(bin, "--handler=sqlite", "--sqlite-url=file:"+dir+"/", "--listen-addr="+addr,
		"--state-dir="+dir, "--debug-addr=-", "--telemetry=disable", "--log-level=error")
	f.cmd.Stdout, f.cmd.Stderr = os.Stderr, os.Stderr
	if err := f.cmd.Start(); err != nil {
		t.Fatalf("start FerretDB: %v", err)
	}
	t.Cleanup(f.kill)
	for range 100 {
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			return f
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("FerretDB did not listen on %s", addr)
	return nil
}

func (f *ferretDB) kill() {
	if f.cmd.ProcessState == nil {
		f.cmd.Process.Kill()
		f.cmd.Wait()
	}
}

func TestCleanupServerGoesAway(t *testing.T) {
	dir := t.TempDir()
	addr := testservers.FreeAddr(t)
	server := startFerretDB(t, addr, dir)
	url := "mongodb://" + addr + "/"
	client := testClient(t, url)
	coll := client.Database("sessions_db").Collection(sessionstore.DefaultCollection)
	ctx := context.Background()

	var docs []any
	for i := range 200 {
		docs = append(docs, sessionDoc(fmt.Sprintf("session:expired-%d", i), time.Now().Add(-time.Hour)))
	}
	for i := range 50 {
		docs = append(docs, sessionDoc(fmt.Sprintf("session:live-%d", i), time.Now().Add(time.Hour)))
	}
	insertDocs(t, coll, docs)

	cfg := sessionstore.Config{URL: url, Database: "sessions_db"}
	rep, err := testStore(t, cfg).Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 10, Progress: func(r sessionstore.Report) {
		if r.Batches == 2 {
			server.kill()
		}
	}})
	t.Logf("report when the server went away: %+v; error: %v", rep, err)
	if err == nil {
		t.Fatalf("Cleanup succeeded with its server gone")
	}
	if kind := sessionstore.KindOf(err); kind != sessionstore.ErrRefused {
		t.Fatalf("error kind %s (%v), want %s", kind, err, sessionstore.ErrRefused)
	}
	if rep.Deleted != 20 || rep.Batches != 2 {
		t.Fatalf("report %+v: want the 2 batches done before the server went away", rep)
	}

	startFerretDB(t, addr, dir)
	client = testClient(t, url)
	coll = client.Database("sessions_db").Collection(sessionstore.DefaultCollection)
	rep, err = testStore(t, cfg).Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 10})
	if err != nil {
		t.Fatalf("rerun: %v", err)
	}
	if rep.Deleted != 180 {
		t.Fatalf("rerun %+v: want the other 180 expired sessions deleted", rep)
	}
	ids := storedIDs(t, coll)
	for i := range 50 {
		if !ids[fmt.Sprintf("session:live-%d", i)] {
			t.Errorf("live session %d is gone", i)
		}
	}
	if len(ids) != 50 {
		t.Fatalf("%d documents left, want the 50 live ones", len(ids))
	}
}
