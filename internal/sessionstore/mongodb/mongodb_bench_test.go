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

// BenchmarkCleanup times Cleanup beside the baseline, one
// deleteMany({expiration: {$lte: now}}), each on its own collection filled
// with the same documents, half of them expired. The data is written inside
// the benchmark, outside the timer, so `go test` without -bench stays fast.
//
//	go test ./internal/sessionstore -run '^$' -bench MongoCleanup -benchtime 1x -timeout 2h
//
// SESSIONSTORE_BENCH_MONGO_DOCS sets the collection size (default 200000),
// SESSIONSTORE_BENCH_MONGO_BATCH the batch sizes (default "1000,30000", the
// CronJob's default and the largest batch FerretDB takes).
//
// FerretDB 1.24 reads the whole collection for every delete, so a cleanup in
// batches costs about one collection read per batch, and it refuses one
// deleteMany of more than 32766 documents (SQLite's limit on bound
// variables): at the default size that baseline cannot run and is skipped
// with the server's answer.
func BenchmarkCleanup(b *testing.B) {
	docs := benchInts(b, "SESSIONSTORE_BENCH_MONGO_DOCS", "200000")[0]
	batches := benchInts(b, "SESSIONSTORE_BENCH_MONGO_BATCH", "1000,30000")
	client := testClient(b, testURL)
	expired := int64(docs / 2)

	for _, batch := range batches {
		b.Run(fmt.Sprintf("docs=%d/cleanup/batch=%d", docs, batch), func(b *testing.B) {
			for range b.N {
				db, now := benchFill(b, client, docs)
				store := testStore(b, sessionstore.Config{Database: db})
				b.StartTimer()
				rep, err := store.Cleanup(context.Background(), sessionstore.CleanupOptions{Now: now, BatchSize: batch})
				b.StopTimer()
				if err != nil || rep.Deleted != expired {
					b.Fatalf("Cleanup: %+v, %v; want %d deleted", rep, err, expired)
				}
				b.ReportMetric(float64(rep.Batches), "batches")
			}
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
				b.Skipf("the server cannot delete %d documents in one deleteMany: %v", expired, err)
			}
			if err != nil || res.DeletedCount != expired {
				b.Fatalf("deleteMany: %+v, %v; want %d deleted", res, err, expired)
			}
		}
	})
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
