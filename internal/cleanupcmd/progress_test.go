package cleanupcmd

import (
	"bytes"
	"testing"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

func TestProgressIsLoggedFirstThenSpaced(t *testing.T) {
	var out bytes.Buffer
	boundaries := 0
	p := &progressLogger{out: &out, name: "cleanup", interval: time.Hour, atBatchEnd: func() { boundaries++ }}
	for i := 1; i <= 3; i++ {
		p.observe(sessionstore.Report{Batches: i, Scanned: int64(i * 10)})
	}
	if got := out.String(); got != "cleanup: progress: scanned 10, expired 0, deleted 0; 1 batch so far (0s)\n" {
		t.Errorf("want only the first batch logged within the interval, got %q", got)
	}
	if boundaries != 3 {
		t.Errorf("batch boundary seen %d times, want 3", boundaries)
	}
	// A backend that fails with an empty report still gets its progress reported.
	if r := p.complete(sessionstore.Report{}); r.Batches != 3 || r.Scanned != 30 {
		t.Errorf("complete: %+v", r)
	}
}
