package controllers

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

// The gate on an injected clock, against a fake client (no API server is
// needed to show what it decides at which instant): a run waits for its
// allow window to open, the gate asks to be woken when it does, and a run
// whose starting deadline passed while the window was closed is skipped.
func TestGateFollowsTheClock(t *testing.T) {
	g := NewWithT(t)
	paris, _ := time.LoadLocation("Europe/Paris")
	clk := clocktesting.NewFakeClock(time.Date(2026, 3, 1, 0, 59, 30, 0, paris))
	pol := &v1.ClusterSessionCleanupPolicy{ObjectMeta: metav1.ObjectMeta{Name: "nightly"}, Spec: v1.ClusterSessionCleanupPolicySpec{
		TimeZone: ptr.To("Europe/Paris"), StartingDeadlineSeconds: 600,
		Windows: []v1.CleanupWindow{{Kind: v1.WindowAllow, Schedule: "0 1 * * *", Duration: metav1.Duration{Duration: time.Hour}}},
	}}
	store := &v1.SessionStore{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "old"}}
	job := func(name, store string, scheduled time.Time) *batchv1.Job {
		return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{
			Namespace: "shop", Name: name, UID: types.UID(name),
			Labels:      map[string]string{specs.PolicyLabel: "nightly", specs.ServerLabel: "s", specs.StoreLabel: store},
			Annotations: map[string]string{scheduledTimeAnnotation: scheduled.UTC().Format(time.RFC3339)},
		}, Spec: batchv1.JobSpec{Suspend: ptr.To(true)}}
	}
	fresh := job("fresh", "new", clk.Now().Add(-10*time.Second))
	stale := job("stale", "old", clk.Now().Add(-time.Hour))
	c := fake.NewClientBuilder().WithScheme(testScheme).WithObjects(pol, store, fresh, stale).
		WithStatusSubresource(&v1.SessionStore{}, &v1.ClusterSessionCleanupPolicy{}).Build()
	recorder := events.NewFakeRecorder(10)
	gate := &cleanupGate{Client: c, Clock: clk, Recorder: recorder}
	gate.initMemory()

	res, err := gate.Reconcile(ctx(), gateKey)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(suspendedOf(g, c, "fresh")).To(BeTrue(), "the window opens at 01:00")
	g.Expect(res.RequeueAfter).To(Equal(31*time.Second), "woken when the window opens, not by polling")
	err = c.Get(ctx(), types.NamespacedName{Namespace: "shop", Name: "stale"}, &batchv1.Job{})
	g.Expect(err).To(MatchError(ContainSubstring("not found")), "an hour late: past its 600 s deadline")
	skipped := &v1.SessionStore{}
	g.Expect(c.Get(ctx(), client.ObjectKeyFromObject(store), skipped)).To(Succeed())
	g.Expect(skipped.Status.Cleanup.LastSkipReason).To(ContainSubstring("no allow window of policy nightly is open"))
	g.Expect(skipped.Status.Cleanup.LastSkipTime.Time).To(BeTemporally("==", clk.Now()))
	g.Expect(<-recorder.Events).To(HavePrefix("Warning CleanupSkipped run stale skipped: not started within its starting deadline"))
	p := &v1.ClusterSessionCleanupPolicy{}
	g.Expect(c.Get(ctx(), client.ObjectKeyFromObject(pol), p)).To(Succeed())
	g.Expect(p.Status.WindowState).To(Equal(v1.WindowStateClosed))
	g.Expect(p.Status.Waiting).To(BeEquivalentTo(1))
	g.Expect(p.Status.NextWindowChange.Time).To(BeTemporally("==", time.Date(2026, 3, 1, 1, 0, 0, 0, paris)))

	clk.Step(30 * time.Second) // 01:00:00
	_, err = gate.Reconcile(ctx(), gateKey)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(suspendedOf(g, c, "fresh")).To(BeFalse(), "started as the window opens")
	g.Expect(c.Get(ctx(), client.ObjectKeyFromObject(pol), p)).To(Succeed())
	g.Expect([]any{p.Status.WindowState, p.Status.Running, p.Status.Waiting}).To(Equal([]any{v1.WindowStateOpen, int32(1), int32(0)}))

	// At 02:30 the window is closed until 01:00 tomorrow, long after a new
	// run's 600 s deadline: it is skipped at once, not left to wait, and,
	// the store's cleanup having succeeded within the day, as the windows
	// doing their job (a Normal event), not a Warning.
	clk.SetTime(time.Date(2026, 3, 1, 2, 30, 0, 0, paris))
	before := skipped.DeepCopy()
	skipped.Status.Cleanup.LastSuccessfulTime = &metav1.Time{Time: time.Date(2026, 3, 1, 1, 5, 0, 0, paris)}
	g.Expect(c.Status().Patch(ctx(), skipped, client.MergeFrom(before))).To(Succeed())
	g.Expect(c.Create(ctx(), job("outside", "old", clk.Now()))).To(Succeed())
	_, err = gate.Reconcile(ctx(), gateKey)
	g.Expect(err).NotTo(HaveOccurred())
	err = c.Get(ctx(), types.NamespacedName{Namespace: "shop", Name: "outside"}, &batchv1.Job{})
	g.Expect(err).To(MatchError(ContainSubstring("not found")), "skipped as it came, outside the window")
	g.Expect(c.Get(ctx(), client.ObjectKeyFromObject(store), skipped)).To(Succeed())
	g.Expect(skipped.Status.Cleanup.LastSkipReason).To(Equal(
		"run outside skipped: no allow window of policy nightly opens before its starting deadline (2026-03-01T01:40:00Z)"))
	g.Expect(<-recorder.Events).To(HavePrefix("Normal CleanupSkipped run outside skipped"))

	// A day on without a success, its runs never meeting the windows: the
	// same skip warns.
	clk.SetTime(time.Date(2026, 3, 2, 2, 30, 0, 0, paris))
	g.Expect(c.Create(ctx(), job("never", "old", clk.Now()))).To(Succeed())
	_, err = gate.Reconcile(ctx(), gateKey)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(<-recorder.Events).To(HavePrefix("Warning CleanupSkipped run never skipped: no allow window"))
}

func suspendedOf(g Gomega, c client.Client, name string) bool {
	job := &batchv1.Job{}
	g.Expect(c.Get(ctx(), types.NamespacedName{Namespace: "shop", Name: name}, job)).To(Succeed())
	return ptr.Deref(job.Spec.Suspend, false)
}
