package prober

import (
	"context"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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
	p := New(8*time.Second, 2*time.Second, 500*time.Millisecond, 1)
	p.Clock = fake
	store := &v1.SessionStore{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s"}}
	down := memcachedEnv(testservers.FreePort(t))
	req := probeRequest{store: store, env: down, envHash: hashEnv(down)}

	want := []time.Duration{500 * time.Millisecond, 500 * time.Millisecond, time.Second,
		2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	var previous *Outcome
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

// A probe worker never hangs on the change channel: at shutdown nobody
// drains it, and the worker must return when its context ends.
func TestProberDoesNotBlockOnAFullChangeChannel(t *testing.T) {
	p := New(time.Minute, time.Second, time.Second, 1)
	p.changed = make(chan event.TypedGenericEvent[*v1.SessionStore]) // nobody reads it
	key := types.NamespacedName{Namespace: "ns", Name: "s"}
	env := map[string]string{sessionstore.EnvBackend: "redis",
		sessionstore.EnvURL: "redis://127.0.0.1:" + strconv.Itoa(testservers.FreePort(t)) + "/0"}
	p.requests[key] = probeRequest{store: &v1.SessionStore{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s"}},
		env: env, envHash: hashEnv(env)}

	workerCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = p.Reconcile(workerCtx, reconcile.Request{NamespacedName: key})
	}()
	// The probe finds the port refused, a new outcome, and tries to tell.
	NewWithT(t).Eventually(func() bool { return p.Holds(key) && p.Latest(key) != nil }, 10*time.Second, 10*time.Millisecond).Should(BeTrue())
	stop()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the probe worker still blocks on the change channel after its context ended")
	}
}
