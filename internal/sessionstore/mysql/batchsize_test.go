package mysql

import (
	"database/sql"
	"testing"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// TestMySQLNextBatchSize: the batch doubles after a batch that held its
// locks under half of myHoldTarget (up to the cap), keeps its size up to
// the target, and shrinks in proportion over it, to half at most and never
// below myMinBatch.
func TestMySQLNextBatchSize(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		size    int
		hold    time.Duration
		maxSize int
		want    int
	}{
		{1000, 10 * ms, myMaxBatch, 2000},
		{1000, 49 * ms, myMaxBatch, 2000},
		{1000, 50 * ms, myMaxBatch, 1000},
		{1000, 100 * ms, myMaxBatch, 1000},
		{1000, 101 * ms, myMaxBatch, 500},
		{1000, 400 * ms, myMaxBatch, 250},
		{20000, 10 * ms, myMaxBatch, myMaxBatch},
		{myMaxBatch, ms, myMaxBatch, myMaxBatch},
		{1000, 10 * ms, 1000, 1000},
		{15, time.Second, myMaxBatch, myMinBatch},
		{200000, 10 * ms, myMaxBatch, 200000}, // a BatchSize above the cap stays
	} {
		if got := nextSize(tc.size, tc.hold, tc.maxSize); got != tc.want {
			t.Errorf("nextSize(%d, %v, %d) = %d, want %d", tc.size, tc.hold, tc.maxSize, got, tc.want)
		}
	}
}

type myBatchSeen struct {
	size    int
	hold    time.Duration
	deleted int64
}

// TestMySQLBatchSizeFollowsLockHold runs real cleanups from BatchSize 10
// and checks each batch's size against the one before: doubled after a
// quick batch, shrunk after a slow one. In the locking transaction, the 5th
// and 6th batches are made to hold their locks 150 ms (over the 100 ms
// target) before they commit: each must shrink the next batch to half or
// less. Every expired session goes, no live one, and no batch deletes more
// than its size.
func TestMySQLBatchSizeFollowsLockHold(t *testing.T) {
	for _, lockPath := range []bool{false, true} {
		t.Run(map[bool]string{false: "no-wait delete", true: "locking transaction, slow 5th and 6th batches"}[lockPath], func(t *testing.T) {
			ctx := myTestCtx(t)
			_, s, pool := myTestSessionsTable(t)
			myTestFill(t, pool, "session:expired-", 2000, "INTERVAL -1 HOUR")
			myTestFill(t, pool, "session:live-", 500, "INTERVAL 1 HOUR")
			store := s.(*myStore)
			var seen []myBatchSeen
			store.onBatch = func(size int, hold time.Duration) { seen = append(seen, myBatchSeen{size: size, hold: hold}) }
			const slow = 150 * time.Millisecond
			if lockPath {
				commits := 0
				store.beforeCommit = func(*sql.Tx) {
					if commits++; commits == 5 || commits == 6 {
						time.Sleep(slow) // holding the batch's locks
					}
				}
			}
			var last int64
			rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 10, Progress: func(r sessionstore.Report) {
				seen[len(seen)-1].deleted = r.Deleted - last
				last = r.Deleted
			}})
			if err != nil || rep.Expired != 2000 || rep.Deleted != 2000 || rep.Batches != len(seen) {
				t.Fatalf("Cleanup: %+v, %v; want 2000 expired and deleted, %d batches seen", rep, err, len(seen))
			}
			if n := myTestCount(t, pool, "SELECT COUNT(*) FROM sessions WHERE session_id LIKE 'session:live-%'"); n != 500 {
				t.Fatalf("%d live sessions left, want 500", n)
			}
			myTestCheckBatchSizes(t, seen, lockPath, slow)
		})
	}
}

func myTestCheckBatchSizes(t *testing.T, seen []myBatchSeen, slowBatches bool, slow time.Duration) {
	t.Helper()
	t.Logf("batches (size, hold, deleted): %v", seen)
	if seen[0].size != 10 {
		t.Errorf("the first batch's size is %d, want BatchSize 10", seen[0].size)
	}
	grew := false
	for i, b := range seen {
		if b.deleted > int64(b.size) {
			t.Errorf("batch %d deleted %d sessions, more than its size %d", i+1, b.deleted, b.size)
		}
		if i == len(seen)-1 {
			break
		}
		next := seen[i+1].size
		if want := nextSize(b.size, b.hold, myMaxBatch); next != want {
			t.Errorf("batch %d (size %d) held its locks %v: the next has size %d, want %d", i+1, b.size, b.hold, next, want)
		}
		grew = grew || next > b.size
		if slowBatches && (i == 4 || i == 5) && (b.hold < slow || next > b.size/2) {
			t.Errorf("slow batch %d (size %d) held its locks %v: the next has size %d, want at most half", i+1, b.size, b.hold, next)
		}
	}
	if !grew {
		t.Error("no batch grew: every batch held its locks 50 ms or more")
	}
}
