package controllers

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// TestSecretWatchRereadsEveryStoreAfterAGap: resumed from a version etcd
// has compacted away, as after a long disconnection, the watch brings every
// store of the namespace back (the API server replays what it holds before
// it answers 410 Gone, and the watch then re-reads the stores and starts
// from the present); from then on a changed Secret brings only the stores
// that use it.
func TestSecretWatchRereadsEveryStoreAfterAGap(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	creds := createSecret(t, ns, "pg-credentials", map[string]string{"username": "app", "password": "pw"})
	createStore(t, postgresStore(ns, "gap"))
	createStore(t, filesystemStore(ns, "gap-fs"))
	waitConfigured(t, ns, "gap")
	waitConfigured(t, ns, "gap-fs")

	meta, err := metadata.NewForConfig(testCfg)
	g.Expect(err).NotTo(HaveOccurred())
	w := &secretChangeWatch{
		secrets: meta.Resource(secretsResource), stores: k8sClient,
		storesUsing: testReconciler.storesUsingSecret, retry: 100 * time.Millisecond,
	}
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer queue.ShutDown()
	watchCtx, stop := context.WithCancel(context.Background())
	defer stop()
	// A version compacted away in etcd, as after a long disconnection.
	gone := compactEtcd(t)
	go w.follow(watchCtx, queue, ns, gone)

	g.Expect(drain(g, queue, 2, 10*time.Second)).To(ConsistOf(
		reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "gap"}},
		reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "gap-fs"}}))

	// From then on, only the store that uses the changed Secret (twice,
	// maybe: its connection Secret follows the rotation too).
	creds.StringData = map[string]string{"password": "rotated"}
	g.Expect(k8sClient.Update(ctx(), creds)).To(Succeed())
	gap := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "gap"}}
	g.Expect(drain(g, queue, 1, 10*time.Second)).To(HaveEach(gap))
	g.Consistently(func() []reconcile.Request { return drain(g, queue, 0, 0) }, time.Second, 100*time.Millisecond).
		Should(Or(BeEmpty(), HaveEach(gap)))
}

// compactEtcd compacts etcd up to its current revision, as the API server
// does every five minutes, and returns a version older than that.
func compactEtcd(t *testing.T) string {
	t.Helper()
	list := &corev1.SecretList{}
	if err := k8sClient.List(ctx(), list, client.Limit(1)); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"revision": %q, "physical": true}`, list.ResourceVersion)
	resp, err := http.Post(testEnv.ControlPlane.Etcd.URL.String()+"/v3/kv/compaction", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("compacting etcd: %s", resp.Status)
	}
	return "2"
}

// drain takes n requests off queue, waiting for them up to timeout.
func drain(g Gomega, queue workqueue.TypedRateLimitingInterface[reconcile.Request], n int, timeout time.Duration) []reconcile.Request {
	var got []reconcile.Request
	g.Eventually(func() int {
		for queue.Len() > 0 {
			req, _ := queue.Get()
			queue.Done(req)
			got = append(got, req)
		}
		return len(got)
	}, timeout, 20*time.Millisecond).Should(BeNumerically(">=", n))
	return got
}
