package controllers

import (
	"testing"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/testservers"
)

// kstatusOf computes what Flux's health checks and `kubectl wait` (both
// sigs.k8s.io/cli-utils kstatus) make of a SessionStore as the API server
// holds it.
func kstatusOf(t *testing.T, store *v1.SessionStore) status.Status {
	t.Helper()
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(store)
	if err != nil {
		t.Fatal(err)
	}
	res, err := status.Compute(&unstructured.Unstructured{Object: obj})
	if err != nil {
		t.Fatalf("kstatus: %v", err)
	}
	return res.Status
}

// expectHealth checks what kstatus and the shipped Argo CD health check
// make of store.
func expectHealth(t *testing.T, store *v1.SessionStore, kstatus status.Status, argo string) {
	t.Helper()
	if got := kstatusOf(t, store); got != kstatus {
		t.Errorf("kstatus: got %s, want %s", got, kstatus)
	}
	if got := argoHealthOf(t, store); got != argo {
		t.Errorf("Argo CD health: got %s, want %s", got, argo)
	}
}

// TestKstatusReadsEachState feeds real SessionStores, in each state the
// controller puts them in, to kstatus and to the Argo CD health check in
// docs/argocd. The contract, as the README says:
// Ready is Current; a spec not yet observed is InProgress; an unreachable
// store is InProgress (the operator keeps probing and it may come back by
// itself); a spec or Secret only a person can fix is Failed (Stalled).
func TestKstatusReadsEachState(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createStore(t, localRedisStore(ns, "up", 6379, false))
	ready := waitReady(t, ns, "up")
	expectHealth(t, ready, status.CurrentStatus, "Healthy")

	// The object the API server returns for a spec change carries the new
	// generation beside the status of the old one.
	ready.Spec.KeyPrefix = "app:"
	g.Expect(k8sClient.Update(ctx(), ready)).To(Succeed())
	g.Expect(ready.Status.ObservedGeneration).To(BeNumerically("<", ready.Generation))
	expectHealth(t, ready, status.InProgressStatus, "Progressing")
	g.Eventually(func(g Gomega) {
		g.Expect(kstatusOf(t, getStore(g, ns, "up"))).To(Equal(status.CurrentStatus))
	}, eventually, poll).Should(Succeed())

	createStore(t, localRedisStore(ns, "down", testservers.FreePort(t), false))
	down := waitCondition(t, ns, "down", v1.ConditionStoreReachable, metav1.ConditionFalse, "ConnectionRefused")
	expectHealth(t, down, status.InProgressStatus, "Progressing")

	// A time zone the CRD's pattern lets through but the CronJob API refuses.
	bad := filesystemStore(ns, "badzone")
	bad.Spec.Cleanup.TimeZone = ptr.To("Mars/Olympus_Mons")
	createStore(t, bad)
	stalled := waitCondition(t, ns, "badzone", v1.ConditionStalled, metav1.ConditionTrue, v1.ReasonApplyFailed)
	g.Expect(condition(stalled, v1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
	expectHealth(t, stalled, status.FailedStatus, "Degraded")

	createSecret(t, ns, "mongo", map[string]string{"uri": "http://not-mongo.example"})
	createStore(t, &v1.SessionStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "badsecret"},
		Spec: v1.SessionStoreSpec{Backend: v1.BackendMongoDB,
			MongoDB: &v1.MongoDBSpec{URISecretRef: v1.SecretKeySelector{Name: "mongo", Key: "uri"}}},
	})
	stalled = waitCondition(t, ns, "badsecret", v1.ConditionStalled, metav1.ConditionTrue, v1.ReasonInvalidSecretValue)
	expectHealth(t, stalled, status.FailedStatus, "Degraded")
}

// A failed API call is not a fact about the store: Ready and its gauge hold,
// the failure shows as Reconciling (kstatus: InProgress), and it clears by
// itself once the API server accepts the write again. The failure is real:
// a ResourceQuota that allows no CronJobs refuses the operator's re-create.
func TestTransientAPIErrorDoesNotFlipReady(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createStore(t, filesystemStore(ns, "files"))
	before := waitReady(t, ns, "files")
	readySince := condition(before, v1.ConditionReady).LastTransitionTime
	g.Expect(metricValue(t, "sessionstore_ready", ns, "files")).To(Equal(1.0))

	noCronJobs(t, ns)
	cj := waitCronJob(t, ns, "files-cleanup")
	g.Expect(k8sClient.Delete(ctx(), cj)).To(Succeed())

	failing := waitCondition(t, ns, "files", v1.ConditionReconciling, metav1.ConditionTrue, v1.ReasonReconcileError)
	g.Expect(condition(failing, v1.ConditionReconciling).Message).To(ContainSubstring("quota"))
	ready := condition(failing, v1.ConditionReady)
	g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "Ready flipped on an API error")
	g.Expect(ready.LastTransitionTime).To(Equal(readySince))
	g.Expect(metricValue(t, "sessionstore_ready", ns, "files")).To(Equal(1.0))
	expectHealth(t, failing, status.InProgressStatus, "Progressing")
	expectGenerationsAgree(g, failing)

	g.Expect(k8sClient.Delete(ctx(), &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-cronjobs"}})).To(Succeed())
	waitCronJob(t, ns, "files-cleanup")
	g.Eventually(func(g Gomega) {
		s := getStore(g, ns, "files")
		g.Expect(condition(s, v1.ConditionReconciling).Type).To(BeEmpty(), "Reconciling cleared")
		g.Expect(kstatusOf(t, s)).To(Equal(status.CurrentStatus))
		g.Expect(argoHealthOf(t, s)).To(Equal("Healthy"))
		expectGenerationsAgree(g, s)
	}, eventually, poll).Should(Succeed())
}

// noCronJobs makes the API server refuse every new CronJob in ns. The quota
// controller is not running here, so the quota's status is written as it
// would: nothing used, nothing allowed.
func noCronJobs(t *testing.T, ns string) {
	t.Helper()
	g := NewWithT(t)
	name := corev1.ResourceName("count/cronjobs." + batchv1.GroupName)
	hard := corev1.ResourceList{name: resource.MustParse("0")}
	quota := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-cronjobs"},
		Spec:       corev1.ResourceQuotaSpec{Hard: hard},
	}
	g.Expect(k8sClient.Create(ctx(), quota)).To(Succeed())
	quota.Status = corev1.ResourceQuotaStatus{Hard: hard, Used: corev1.ResourceList{name: resource.MustParse("0")}}
	g.Expect(k8sClient.Status().Update(ctx(), quota)).To(Succeed())
	g.Expect(k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: quota.Name}, quota)).To(Succeed())
}

// expectGenerationsAgree checks that the top-level observedGeneration and
// every condition's say the same.
func expectGenerationsAgree(g Gomega, s *v1.SessionStore) {
	g.Expect(s.Status.ObservedGeneration).To(Equal(s.Generation))
	for _, c := range s.Status.Conditions {
		g.Expect(c.ObservedGeneration).To(Equal(s.Generation), "condition %s", c.Type)
	}
}
