package mongodb

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// saveSession re-saves a session the way Flask-Session 0.8 does, and the
// way it re-saves an expired session it has just served (it never checks
// expiration on read): update_one({id}, {$set: {val, expiration}}, upsert).
func saveSession(ctx context.Context, coll *mongo.Collection, id string, expiration time.Time) error {
	_, err := coll.UpdateOne(ctx, bson.D{{Key: "id", Value: id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "val", Value: bson.Binary{Data: []byte(id)}}, {Key: "expiration", Value: expiration}}}},
		options.UpdateOne().SetUpsert(true))
	return err
}

// storedExpirations maps each document's id to its expiration.
func storedExpirations(t testing.TB, coll *mongo.Collection) map[string]time.Time {
	t.Helper()
	cur, err := coll.Find(context.Background(), bson.D{}, options.Find().SetProjection(bson.D{{Key: "id", Value: 1}, {Key: "expiration", Value: 1}}))
	if err != nil {
		t.Fatal(err)
	}
	var docs []struct {
		ID         string    `bson:"id"`
		Expiration time.Time `bson:"expiration"`
	}
	if err := cur.All(context.Background(), &docs); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]time.Time, len(docs))
	for _, d := range docs {
		out[d.ID] = d.Expiration
	}
	return out
}

// refreshLayout is the collection TestCleanupKeepsSessionsRefreshedDuringDeletes
// cleans. In _id order (the cleanup's): batch 1 is `first`; batch 2 is
// `before` then `targets`, which the app re-saves while batch 2's deletes
// run. In natural order (the order FerretDB reads) the targets come first, so
// that the app's update finds them at once, and `live` comes last, many
// enough that a command reading the whole collection takes a while.
type refreshLayout struct {
	first, before, targets, live []string
}

func writeRefreshLayout(t *testing.T, coll *mongo.Collection, batch, targets, live int) refreshLayout {
	var l refreshLayout
	expired := time.Now().Add(-time.Hour)
	docs := map[string][]any{}
	add := func(group *[]string, name string, n int, expiration time.Time) {
		for i := range n {
			id := fmt.Sprintf("session:%s-%d", name, i)
			*group = append(*group, id)
			// _ids rise in the order they are made.
			docs[name] = append(docs[name], append(bson.D{{Key: "_id", Value: bson.NewObjectID()}}, sessionDoc(id, expiration)...))
		}
	}
	add(&l.first, "first", batch, expired)
	add(&l.before, "before", batch-targets, expired)
	add(&l.targets, "target", targets, expired)
	add(&l.live, "live", live, time.Now().Add(time.Hour))
	for _, name := range []string{"target", "first", "before", "live"} {
		insertDocs(t, coll, docs[name])
	}
	return l
}

// resaver re-saves each target once, from several writers at a time, and
// records the expiration each acknowledged re-save set.
type resaver struct {
	wg      sync.WaitGroup
	mu      sync.Mutex
	saved   map[string]time.Time
	lastAck time.Time
}

func (r *resaver) start(t *testing.T, coll *mongo.Collection, targets []string, writers int) {
	for w := range writers {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for i := w; i < len(targets); i += writers {
				expiration := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
				if err := saveSession(context.Background(), coll, targets[i], expiration); err != nil {
					t.Errorf("re-save %s: %v", targets[i], err)
					return
				}
				r.mu.Lock()
				r.saved[targets[i]], r.lastAck = expiration, time.Now()
				r.mu.Unlock()
			}
		}()
	}
}

// wait returns the acknowledged re-saves and when the last one was.
func (r *resaver) wait() (map[string]time.Time, time.Time) {
	r.wg.Wait()
	return r.saved, r.lastAck
}

// Flask-Session 0.8 serves an expired session that is still stored and
// re-saves it with a new expiration; without TTL indexes (FerretDB) that is
// an everyday event. Here the app re-saves expired sessions while the
// cleanup's delete commands run, each re-save acknowledged and recorded:
// every one of them must be found afterwards with the expiration it set.
// FerretDB 1.x checks a delete's filter in a read that it closes before it
// deletes, so a range delete lost every re-save made during its read.
func TestCleanupKeepsSessionsRefreshedDuringDeletes(t *testing.T) {
	client := testClient(t, testURL)
	db := testDatabase(t, client)
	coll := client.Database(db).Collection(sessionstore.DefaultCollection)
	ctx := context.Background()
	const batch, targets, writers = 40, 10, 3
	l := writeRefreshLayout(t, coll, batch, targets, 8000)

	resaves := &resaver{saved: map[string]time.Time{}}
	var once sync.Once
	startWriters := func() { resaves.start(t, coll, l.targets, writers) }
	rep, err := testStore(t, sessionstore.Config{Database: db}).Cleanup(ctx, sessionstore.CleanupOptions{
		Now: time.Now(), BatchSize: batch,
		// After batch 1, not waiting: the re-saves land while batch 2's
		// deletes are under way.
		Progress: func(sessionstore.Report) { once.Do(startWriters) },
	})
	returned := time.Now()
	saved, lastAck := resaves.wait()
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	t.Logf("report: %+v; last re-save acknowledged %v before the cleanup returned", rep, returned.Sub(lastAck))
	if len(saved) != targets || !lastAck.Before(returned) {
		t.Fatalf("%d of %d re-saves were acknowledged before the cleanup returned; the test did not exercise concurrency", len(saved), targets)
	}

	stored := storedExpirations(t, coll)
	for _, id := range l.targets {
		want, ok := saved[id]
		if got, found := stored[id]; !ok || !found || !got.Equal(want) {
			t.Errorf("session %s re-saved with expiration %v (acknowledged %v) is stored with %v (present %v)", id, want, ok, got, found)
		}
	}
	for _, id := range append(append([]string{}, l.first...), l.before...) {
		if _, found := stored[id]; found {
			t.Errorf("expired session %s was not deleted", id)
		}
	}
	wantDeleted := int64(len(l.first) + len(l.before))
	if len(stored) != len(l.live)+targets || rep.Deleted != wantDeleted || rep.Expired != wantDeleted+targets {
		t.Fatalf("%d left, report %+v: want %d deleted of %d found expired, the live and re-saved kept",
			len(stored), rep, wantDeleted, wantDeleted+targets)
	}
}

// The cut-off comes from the server's clock: a pod whose clock runs hours
// ahead must not delete sessions that are live by the server's.
func TestCleanupCutoffFromServerClock(t *testing.T) {
	client := testClient(t, testURL)
	db := testDatabase(t, client)
	coll := client.Database(db).Collection(sessionstore.DefaultCollection)
	ctx := context.Background()
	// FerretDB runs on this machine: its clock is this one.
	now := time.Now()
	var docs []any
	for i := range 20 {
		docs = append(docs, sessionDoc(fmt.Sprintf("session:live-%d", i), now.Add(time.Hour)))
	}
	for i := range 10 {
		docs = append(docs, sessionDoc(fmt.Sprintf("session:expired-%d", i), now.Add(-time.Hour)))
	}
	insertDocs(t, coll, docs)

	before := time.Now().UTC().Truncate(time.Millisecond)
	rep, err := testStore(t, sessionstore.Config{Database: db}).Cleanup(ctx, sessionstore.CleanupOptions{
		Now: now.Add(3 * time.Hour), // the pod's clock, skewed
	})
	after := time.Now()
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	t.Logf("report: %+v", rep)
	left := storedIDs(t, coll)
	for i := range 20 {
		if !left[fmt.Sprintf("session:live-%d", i)] {
			t.Errorf("live session %d was deleted", i)
		}
	}
	if len(left) != 20 || rep.Deleted != 10 {
		t.Fatalf("%d left, report %+v: want the 10 expired deleted and the 20 live kept", len(left), rep)
	}
	if rep.Now.Before(before) || rep.Now.After(after) || !rep.Cutoff.Equal(rep.Now) {
		t.Fatalf("report now %v, cut-off %v: want the server's clock (between %v and %v), no grace", rep.Now, rep.Cutoff, before, after)
	}
	if !strings.Contains(rep.Message, "the pod's clock is 3h0m0s off") {
		t.Errorf("message %q does not tell of the pod's skewed clock", rep.Message)
	}
}

// Only sessions expired at least Grace ago (by the server's clock) go.
func TestCleanupGracePeriod(t *testing.T) {
	client := testClient(t, testURL)
	db := testDatabase(t, client)
	coll := client.Database(db).Collection(sessionstore.DefaultCollection)
	ctx := context.Background()
	insertDocs(t, coll, []any{
		sessionDoc("session:a-minute-ago", time.Now().Add(-time.Minute)),
		sessionDoc("session:ten-minutes-ago", time.Now().Add(-10*time.Minute)),
	})
	store := testStore(t, sessionstore.Config{Database: db})

	rep, err := store.Cleanup(ctx, sessionstore.CleanupOptions{Grace: 5 * time.Minute})
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	left := storedIDs(t, coll)
	if !left["session:a-minute-ago"] || len(left) != 1 || rep.Deleted != 1 {
		t.Fatalf("grace 5m: %v left, report %+v: want only the session expired a minute ago kept", left, rep)
	}
	if got := rep.Now.Sub(rep.Cutoff); got != 5*time.Minute {
		t.Fatalf("report now %v, cut-off %v: want the cut-off 5m before now", rep.Now, rep.Cutoff)
	}

	rep, err = store.Cleanup(ctx, sessionstore.CleanupOptions{Grace: 0})
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if left := storedIDs(t, coll); len(left) != 0 || rep.Deleted != 1 {
		t.Fatalf("grace 0: %v left, report %+v: want the last expired session deleted", left, rep)
	}
}

// A dry run changes nothing: no document, no index (though the config asks
// for a TTL index), no database or collection where there was none.
func TestCleanupDryRunChangesNothing(t *testing.T) {
	client := testClient(t, testURL)
	db := testDatabase(t, client)
	coll := client.Database(db).Collection(sessionstore.DefaultCollection)
	ctx := context.Background()
	insertDocs(t, coll, []any{
		sessionDoc("session:expired", time.Now().Add(-time.Hour)),
		sessionDoc("session:live", time.Now().Add(time.Hour)),
	})
	before := storedExpirations(t, coll)

	rep, err := testStore(t, sessionstore.Config{Database: db, TTLIndex: true}).Cleanup(ctx, sessionstore.CleanupOptions{DryRun: true})
	if err != nil || rep.Expired != 1 || rep.Deleted != 0 {
		t.Fatalf("dry run: %+v, %v; want 1 expired found, none deleted", rep, err)
	}
	if after := storedExpirations(t, coll); len(after) != len(before) || !after["session:expired"].Equal(before["session:expired"]) {
		t.Fatalf("documents changed by a dry run: %v, were %v", after, before)
	}
	specs, err := coll.Indexes().ListSpecifications(ctx)
	if err != nil || len(specs) != 1 || specs[0].Name != "_id_" {
		t.Fatalf("indexes after a dry run: %+v, %v; want only _id_", specs, err)
	}

	missing := testDatabase(t, client)
	if _, err := testStore(t, sessionstore.Config{Database: missing, TTLIndex: true}).Cleanup(ctx, sessionstore.CleanupOptions{DryRun: true}); err != nil {
		t.Fatalf("dry run on a missing database: %v", err)
	}
	names, err := client.ListDatabaseNames(ctx, bson.D{{Key: "name", Value: missing}})
	if err != nil || len(names) != 0 {
		t.Fatalf("databases named %s after a dry run: %v, %v; want none", missing, names, err)
	}
}
