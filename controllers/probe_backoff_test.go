package controllers

import (
	"context"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testingclock "k8s.io/utils/clock/testing"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/testservers"
)

// While a store stays down, each retry waits as long as it has been down:
// from MinBackoff, doubling, up to the interval; once it answers, the
// interval. The store is a real memcached port, refused, the clock a fake one stepped
// by exactly the wait asked for.
func TestProbeBackoffDoublesWhileDownThenSettles(t *testing.T) {
	fake := testingclock.NewFakePassiveClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	p := NewProber(8*time.Second, 2*time.Second, 500*time.Millisecond, 1)
	p.Clock = fake
	store := &v1.SessionStore{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s"}}
	down := memcachedEnv(testservers.FreePort(t))
	req := probeRequest{store: store, env: down, envHash: hashEnv(down)}

	want := []time.Duration{500 * time.Millisecond, 500 * time.Millisecond, time.Second,
		2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	var previous *ProbeOutcome
	for i, wait := range want {
		outcome := p.probe(context.Background(), req, previous)
		if outcome.Reachable {
			t.Fatalf("probe %d of a refused port: %+v", i, outcome)
		}
		if got := p.nextProbe(outcome); got != wait {
			t.Fatalf("retry %d after %s, want %s (down since %s, now %s)", i, got, wait, outcome.DownSince, outcome.At)
		}
		fake.SetTime(fake.Now().Add(wait))
		previous = outcome
	}

	up := memcachedEnv(11211)
	outcome := p.probe(context.Background(), probeRequest{store: store, env: up, envHash: hashEnv(up)}, previous)
	if !outcome.Reachable || p.nextProbe(outcome) != 8*time.Second {
		t.Fatalf("a reachable store: %+v, next probe %s, want the 8s interval", outcome, p.nextProbe(outcome))
	}
}

// memcachedEnv is a memcached store on a local port: a refused port fails
// at once, and the local memcached (hack/start-services.sh) answers.
func memcachedEnv(port int) map[string]string {
	return map[string]string{sessionstore.EnvBackend: "memcached",
		sessionstore.EnvURL: "memcached://127.0.0.1:" + strconv.Itoa(port)}
}
