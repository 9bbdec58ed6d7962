package controllers

import (
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
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
	g.Expect(testReconciler.Prober.Holds(key)).To(BeTrue())
	g.Eventually(func() uint64 { return probeCount(t, ns, "held") }, eventually, poll).Should(BeNumerically(">", 0))

	g.Expect(k8sClient.Delete(ctx(), store)).To(Succeed())
	g.Eventually(func() bool { return testReconciler.Prober.Holds(key) }, eventually, poll).Should(BeFalse())
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
	waitCondition(t, ns, "locked", v1.ConditionStoreReachable, metav1.ConditionFalse, v1.ReasonSecretNotFound)
	g.Eventually(func() bool { return testReconciler.Prober.Holds(key) }, eventually, poll).Should(BeFalse())
	g.Eventually(func() uint64 { return probeCount(t, ns, "locked") }, eventually, poll).Should(BeZero())
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
