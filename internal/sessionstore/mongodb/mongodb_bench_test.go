package mongodb

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// BenchmarkCleanup times Cleanup in both its ways of deleting, beside the
// baseline, one deleteMany({expiration: {$lte: now}}), each on its own
// collection filled with the same documents, half of them expired. The data
// is written inside the benchmark, outside the timer, so `go test` without
// -bench stays fast.
//
//	go test ./internal/sessionstore/mongodb -run '^$' -bench Cleanup -benchtime 1x -timeout 2h
//
// SESSIONSTORE_BENCH_MONGO_DOCS sets the collection size (default 20000),
// SESSIONSTORE_BENCH_MONGO_BATCH the batch sizes (default "1000", the
// CronJob's default).
//
//   - one-by-one: what FerretDB gets, one checked delete per document, each
//     followed by as long a pause for the app.
//   - ranges: what MongoDB gets, one range delete per batch (forced here,
//     on FerretDB, where it is no longer used: it loses refreshes).
//
// FerretDB 1.24 reads the whole collection for every range delete, so a
// cleanup by ranges costs about one collection read per batch, and it
// refuses one deleteMany of more than 32766 documents (SQLite's limit on
// bound variables): past that size the baseline is skipped with the
// server's answer.
func BenchmarkCleanup(b *testing.B) {
	docs := benchInts(b, "SESSIONSTORE_BENCH_MONGO_DOCS", "20000")[0]
	batches := benchInts(b, "SESSIONSTORE_BENCH_MONGO_BATCH", "1000")
	client := testClient(b, testURL)
	for _, batch := range batches {
		b.Run(fmt.Sprintf("docs=%d/one-by-one/batch=%d", docs, batch), func(b *testing.B) {
			benchCleanup(b, client, docs, batch, testStore)
		})
		b.Run(fmt.Sprintf("docs=%d/ranges/batch=%d", docs, batch), func(b *testing.B) {
			benchCleanup(b, client, docs, batch, rangeStore)
		})
	}
	b.Run(fmt.Sprintf("docs=%d/deleteMany", docs), func(b *testing.B) {
		for range b.N {
			db, now := benchFill(b, client, docs)
			coll := client.Database(db).Collection(sessionstore.DefaultCollection)
			b.StartTimer()
			res, err := coll.DeleteMany(context.Background(), bson.D{{Key: "expiration", Value: bson.D{{Key: "$lte", Value: now}}}})
			b.StopTimer()
			if err != nil && strings.Contains(err.Error(), "too many SQL variables") {
				b.Skipf("the server cannot delete %d documents in one deleteMany: %v", docs/2, err)
			}
			if err != nil || res.DeletedCount != int64(docs/2) {
				b.Fatalf("deleteMany: %+v, %v; want %d deleted", res, err, docs/2)
			}
		}
	})
}

func benchCleanup(b *testing.B, client *mongo.Client, docs, batch int, newStore func(testing.TB, sessionstore.Config) sessionstore.Store) {
	for range b.N {
		db, now := benchFill(b, client, docs)
		store := newStore(b, sessionstore.Config{Database: db})
		b.StartTimer()
		rep, err := store.Cleanup(context.Background(), sessionstore.CleanupOptions{Now: now, BatchSize: batch})
		b.StopTimer()
		if err != nil || rep.Deleted != int64(docs/2) {
			b.Fatalf("Cleanup: %+v, %v; want %d deleted", rep, err, docs/2)
		}
		b.ReportMetric(float64(rep.Batches), "batches")
		b.ReportMetric(float64(rep.Duration.Microseconds())/float64(rep.Deleted), "µs/deleted")
	}
}

func benchInts(b *testing.B, key, dflt string) []int {
	b.Helper()
	v := os.Getenv(key)
	if v == "" {
		v = dflt
	}
	var out []int
	for _, field := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || n < 2 {
			b.Fatalf("%s=%q: want whole numbers over 1, separated by commas", key, v)
		}
		out = append(out, n)
	}
	return out
}

// benchFill writes docs sessions in Flask-Session's layout into a new
// database, every other one expired, and returns it with the cut-off. The
// timer is stopped on return.
func benchFill(b *testing.B, client *mongo.Client, docs int) (string, time.Time) {
	b.Helper()
	b.StopTimer()
	db := testDatabase(b, client)
	now := time.Now().UTC().Truncate(time.Millisecond)
	val := bson.Binary{Data: make([]byte, 80)} // about a small pickled session
	batch := make([]any, 0, 5000)
	flush := func() {
		if _, err := client.Database(db).Collection(sessionstore.DefaultCollection).InsertMany(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := range docs {
		expiration := now.Add(time.Duration(i%1000+1) * time.Minute)
		if i%2 == 0 {
			expiration = now.Add(-time.Duration(i%1000+1) * time.Minute)
		}
		batch = append(batch, bson.D{
			{Key: "id", Value: fmt.Sprintf("session:%08x-0000-4000-8000-%012x", i, i)},
			{Key: "val", Value: val},
			{Key: "expiration", Value: expiration},
		})
		if len(batch) == cap(batch) {
			flush()
		}
	}
	if len(batch) > 0 {
		flush()
	}
	return db, now
}
