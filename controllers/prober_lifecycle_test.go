package controllers

import (
	"context"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/testservers"
)

// A store that is being deleted, held by someone else's finalizer, is no
// longer probed, and every series of it is gone.
func TestProberForgetsAStoreBeingDeleted(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	key := types.NamespacedName{Namespace: ns, Name: "held"}
	store := localRedisStore(ns, "held", 6379, false)
	store.Finalizers = []string{"example.com/hold"}
	createStore(t, store)
	waitReady(t, ns, "held")
	g.Expect(testReconciler.Prober.knows(key)).To(BeTrue())
	g.Eventually(func() uint64 { return probeCount(t, ns, "held") }, eventually, poll).Should(BeNumerically(">", 0))

	g.Expect(k8sClient.Delete(ctx(), store)).To(Succeed())
	g.Eventually(func() bool { return testReconciler.Prober.knows(key) }, eventually, poll).Should(BeFalse())
	g.Eventually(func() []string { return seriesOf(t, ns, "held") }, eventually, poll).Should(BeEmpty())

	held := getStore(g, ns, "held")
	g.Expect(held.DeletionTimestamp).NotTo(BeNil(), "the finalizer still holds it")
	held.Finalizers = nil
	g.Expect(k8sClient.Update(ctx(), held)).To(Succeed())
}

// When a store's credentials Secret is gone, the prober drops what it
// probed with (the credentials) and the store's probe series.
func TestProberForgetsAStoreWhoseCredentialsAreGone(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	key := types.NamespacedName{Namespace: ns, Name: "locked"}
	port := testservers.FreePort(t)
	startRedis(t, port, hostilePassword)
	secret := createSecret(t, ns, "redis-auth", map[string]string{"password": hostilePassword})
	createStore(t, localRedisStore(ns, "locked", port, true))
	waitReady(t, ns, "locked")
	g.Eventually(func() uint64 { return probeCount(t, ns, "locked") }, eventually, poll).Should(BeNumerically(">", 0))

	g.Expect(k8sClient.Delete(ctx(), secret)).To(Succeed())
	waitCondition(t, ns, "locked", ConditionStoreReachable, metav1.ConditionFalse, ReasonSecretNotFound)
	g.Eventually(func() bool { return testReconciler.Prober.knows(key) }, eventually, poll).Should(BeFalse())
	g.Eventually(func() uint64 { return probeCount(t, ns, "locked") }, eventually, poll).Should(BeZero())
}

// A probe worker never hangs on the change channel: at shutdown nobody
// drains it, and the worker must return when its context ends.
func TestProberDoesNotBlockOnAFullChangeChannel(t *testing.T) {
	p := NewProber(time.Minute, time.Second, time.Second, 1)
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
	NewWithT(t).Eventually(func() bool { return p.knows(key) && p.probedOnce(key) }, eventually, poll).Should(BeTrue())
	stop()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the probe worker still blocks on the change channel after its context ended")
	}
}

// seriesOf lists the sessionstore_* metric families that hold a series of
// the store.
func seriesOf(t *testing.T, ns, name string) []string {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if labelValue(m.GetLabel(), "namespace") == ns && labelValue(m.GetLabel(), "name") == name {
				found = append(found, f.GetName())
				break
			}
		}
	}
	return found
}

// knows tells whether the prober holds anything of a store.
func (p *Prober) knows(key types.NamespacedName) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, requested := p.requests[key]
	_, probed := p.outcomes[key]
	return requested || probed
}

// probedOnce tells whether the prober holds an outcome for a store.
func (p *Prober) probedOnce(key types.NamespacedName) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.outcomes[key] != nil
}
