//go:build e2e

package e2e

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// heldFor is how long a test watches for a start that must not come: the
// gate acts on a Job's events within a second.
const heldFor = 3 * time.Second

// testGateDenyWindowThenRunNow: under a deny window that is always open, a
// run asked for with the run-now annotation is made, suspended, and never
// started: no Pod. When the window is removed, that same Job passes the
// gate, a real Pod runs the cleanup, and the store echoes the token and
// reports the run.
func testGateDenyWindowThenRunNow(t *testing.T) {
	g := NewWithT(t)
	name := "e2e-deny-" + installMode
	ns := restrictedNamespace(t, name)
	pgSecret(t, ns)
	policy := createGatePolicy(t, name, v1.ClusterSessionCleanupPolicySpec{StartingDeadlineSeconds: 3600,
		Windows: []v1.CleanupWindow{{Kind: v1.WindowDeny, Schedule: "* * * * *", Duration: metav1.Duration{Duration: time.Hour}}}})
	store := gatedPostgresStore(t, ns, "held", policy)
	watcher := startJobWatch(t, ns)

	token := "e2e-run-now-" + installMode
	patch := client.MergeFrom(store.DeepCopy())
	store.Annotations = map[string]string{v1.RunNowAnnotation: token}
	g.Expect(k8sClient.Patch(ctx(), store, patch)).To(Succeed())
	var job batchv1.Job
	g.Eventually(func(g Gomega) {
		jobs := &batchv1.JobList{}
		g.Expect(k8sClient.List(ctx(), jobs, client.InNamespace(ns))).To(Succeed())
		g.Expect(jobs.Items).To(HaveLen(1), "run-now makes one Job")
		job = jobs.Items[0]
		st := getStore(g, ns, store.Name).Status.Cleanup
		g.Expect(st.LastHandledRunRequest).To(Equal(token))
		g.Expect(st.WindowState).To(Equal(v1.WindowStateDenied))
	}, e2eTimeout, poll).Should(Succeed())
	g.Expect(ptr.Deref(job.Spec.Suspend, false)).To(BeTrue(), "made suspended, for the gate")
	g.Consistently(func() int { _, started := watcher.Counts(); return started }, heldFor, poll).
		Should(BeZero(), "a deny window starts nothing, run-now included")
	g.Expect(podsOf(g, ns, job.Name)).To(BeZero())

	patch = client.MergeFrom(policy.DeepCopy())
	policy.Spec.Windows = nil
	g.Expect(k8sClient.Patch(ctx(), policy, patch)).To(Succeed())
	waitJobComplete(t, ns, job.Name)
	g.Eventually(func(g Gomega) {
		result := getStore(g, ns, store.Name).Status.Cleanup.LastResult
		g.Expect(result).NotTo(BeNil())
		g.Expect(result.JobName).To(Equal(job.Name))
		g.Expect(result.Succeeded).To(BeTrue(), "run-now's run: %s", result.Message)
	}, e2eTimeout, poll).Should(Succeed())
	// The watch may deliver the start after the poll saw the completion.
	g.Eventually(func() int { _, started := watcher.Counts(); return started }, e2eTimeout, poll).Should(Equal(1))
	most, started := watcher.Stop()
	g.Expect([]int{most, started}).To(Equal([]int{1, 1}), "the held Job started once, when the window went")
}

// testGateSkipsARunPastItsDeadline: under a suspended policy with a
// 5-second starting deadline, a run made with `kubectl create job --from`
// is never started; past the deadline the operator deletes it and records
// the skip with its reason, on the store and in the policy's totals.
func testGateSkipsARunPastItsDeadline(t *testing.T) {
	g := NewWithT(t)
	name := "e2e-late-" + installMode
	ns := restrictedNamespace(t, name)
	pgSecret(t, ns)
	policy := createGatePolicy(t, name, v1.ClusterSessionCleanupPolicySpec{Suspend: true, StartingDeadlineSeconds: 5})
	gatedPostgresStore(t, ns, "late", policy)
	watcher := startJobWatch(t, ns)

	kubectl(t, "create", "job", "-n", ns, "--from=cronjob/late-cleanup", "late-run")
	held := &batchv1.Job{}
	g.Expect(k8sClient.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "late-run"}, held)).To(Succeed())
	g.Expect(ptr.Deref(held.Spec.Suspend, false)).To(BeTrue(), "kubectl's Job copies the suspended template")
	var skipped *metav1.Time
	g.Eventually(func(g Gomega) {
		err := k8sClient.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "late-run"}, &batchv1.Job{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the Job not started within its deadline is deleted: %v", err)
		st := getStore(g, ns, "late").Status.Cleanup
		g.Expect(st.LastSkipTime).NotTo(BeNil())
		skipped = st.LastSkipTime
		g.Expect(st.LastSkipReason).To(ContainSubstring("late-run"))
		g.Expect(st.LastSkipReason).To(ContainSubstring("policy " + name + " is suspended"))
		p := &v1.ClusterSessionCleanupPolicy{}
		g.Expect(k8sClient.Get(ctx(), client.ObjectKey{Name: name}, p)).To(Succeed())
		g.Expect(p.Status.SkippedLastDay).To(BeEquivalentTo(1))
	}, e2eTimeout, poll).Should(Succeed())
	// Both times are whole seconds, as the API server keeps them.
	g.Expect(skipped.Sub(held.CreationTimestamp.Time)).To(BeNumerically(">=", 5*time.Second), "not skipped before its deadline")
	most, started := watcher.Stop()
	g.Expect([]int{most, started}).To(Equal([]int{0, 0}), "the skipped run never started")
	g.Expect(podsOf(g, ns, "late-run")).To(BeZero())
}
