package controllers

import (
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// problemWindow is how long a test watches a store that is stuck on a
// problem only a person can fix: a retry loop would show many reconciles
// and writes in it, even with backoff (5ms, 10ms, 20ms, ...).
const problemWindow = 3 * time.Second

// eventsOf lists the events regarding the store with that reason.
func eventsOf(g Gomega, ns, name, reason string) []eventsv1.Event {
	list := &eventsv1.EventList{}
	g.Expect(k8sClient.List(ctx(), list, client.InNamespace(ns))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// expectOneEvent waits for the event and then checks for a while that it
// stays the only one of its reason, recorded once (no series of repeats).
func expectOneEvent(t *testing.T, ns, name, reason string) {
	t.Helper()
	g := NewWithT(t)
	g.Eventually(func(g Gomega) { g.Expect(eventsOf(g, ns, name, reason)).NotTo(BeEmpty()) }, eventually, poll).Should(Succeed())
	g.Consistently(func(g Gomega) {
		events := eventsOf(g, ns, name, reason)
		g.Expect(events).To(HaveLen(1))
		g.Expect(events[0].Series).To(BeNil(), "the event was recorded again")
		g.Expect(events[0].Type).To(Equal(corev1.EventTypeWarning))
	}, 2*time.Second, 200*time.Millisecond).Should(Succeed())
}

// expectNoRetries checks over problemWindow that the stuck store is neither
// reconciled nor written again: it waits for a change instead.
func expectNoRetries(t *testing.T, ns string) {
	t.Helper()
	g := NewWithT(t)
	mark, reconciles := writeCount.Load(), reconcileTotal(t)
	g.Consistently(func() []string { return writesSince(mark, ns) }, problemWindow, poll).Should(BeEmpty())
	g.Expect(reconcileTotal(t)-reconciles).To(BeZero(), "reconciles in %s", problemWindow)
}

// patchStore changes a configured store's spec and returns the write count
// from before the change.
func patchStore(t *testing.T, ns, name string, change func(*v1.SessionStore)) int64 {
	t.Helper()
	g := NewWithT(t)
	waitNoWrites(t, ns)
	mark := writeCount.Load()
	store := getStore(g, ns, name)
	patch := client.MergeFrom(store.DeepCopy())
	change(store)
	g.Expect(k8sClient.Patch(ctx(), store, patch)).To(Succeed())
	return mark
}

func TestForeignCronJobIsAConflictNotALoop(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	foreign := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-cleanup"},
		Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "backup", Image: "backup:1"}}}}}}},
	}
	g.Expect(k8sClient.Create(ctx(), foreign)).To(Succeed())
	mark := writeCount.Load()
	createStore(t, filesystemStore(ns, "app"))

	store := waitCondition(t, ns, "app", v1.ConditionCleanupScheduled, metav1.ConditionFalse, v1.ReasonCronJobConflict)
	g.Expect(condition(store, v1.ConditionReady).Reason).To(Equal(v1.ReasonCronJobConflict))
	expectOneEvent(t, ns, "app", v1.ReasonCronJobConflict)
	expectNoRetries(t, ns)
	g.Expect(writesSince(mark, ns)).NotTo(ContainElement(ContainSubstring("CronJobApplyConfiguration")), "never applied over it")
	got := &batchv1.CronJob{}
	g.Expect(k8sClient.Get(ctx(), client.ObjectKeyFromObject(foreign), got)).To(Succeed())
	g.Expect(got.ResourceVersion).To(Equal(foreign.ResourceVersion))
}

func TestScheduleKubernetesAcceptsButNeverRunsIsInvalid(t *testing.T) {
	ns := newNamespace(t)
	for _, tc := range []struct{ name, schedule, says string }{
		// A step of 0 passes the CRD's pattern; the cron parser refuses it.
		{"zero-step", "*/0 * * * *", "step of range should be a positive number"},
		// The 31st of February parses, and the CronJob would never run.
		{"no-such-day", "0 0 31 2 *", "never comes due"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			createStore(t, filesystemStore(ns, tc.name))
			waitConfigured(t, ns, tc.name)
			cj := waitCronJob(t, ns, tc.name+"-cleanup")

			mark := patchStore(t, ns, tc.name, func(s *v1.SessionStore) { s.Spec.Cleanup.Schedule = tc.schedule })
			store := waitCondition(t, ns, tc.name, v1.ConditionCleanupScheduled, metav1.ConditionFalse, v1.ReasonInvalidSchedule)
			g.Expect(condition(store, v1.ConditionCleanupScheduled).Message).To(ContainSubstring(tc.says))
			g.Expect(condition(store, v1.ConditionReady).Reason).To(Equal(v1.ReasonInvalidSchedule))
			expectOneEvent(t, ns, tc.name, v1.ReasonInvalidSchedule)
			expectNoRetries(t, ns)
			g.Expect(writesSince(mark, ns)).To(Equal([]string{
				fmt.Sprintf("status patch *v1.SessionStore %s/%s", ns, tc.name)}), "one status write, no apply")
			got := &batchv1.CronJob{}
			g.Expect(k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: tc.name + "-cleanup"}, got)).To(Succeed())
			g.Expect(got.Spec.Schedule).To(Equal(cj.Spec.Schedule), "the last good schedule stays in force")
		})
	}
}

func TestCronJobTheAPIServerRejectsIsReportedOnce(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createStore(t, filesystemStore(ns, "mars"))
	waitConfigured(t, ns, "mars")
	waitCronJob(t, ns, "mars-cleanup")

	// The CRD's pattern takes any IANA-like name; the CronJob API knows
	// the real zones only.
	mark := patchStore(t, ns, "mars", func(s *v1.SessionStore) { s.Spec.Cleanup.TimeZone = ptr.To("Mars/Olympus") })
	store := waitCondition(t, ns, "mars", v1.ConditionCleanupScheduled, metav1.ConditionFalse, v1.ReasonApplyFailed)
	g.Expect(condition(store, v1.ConditionCleanupScheduled).Message).To(ContainSubstring("Mars/Olympus"))
	expectOneEvent(t, ns, "mars", v1.ReasonApplyFailed)
	expectNoRetries(t, ns)
	g.Expect(writesSince(mark, ns)).To(Equal([]string{
		fmt.Sprintf("apply *v1.CronJobApplyConfiguration %s/mars-cleanup", ns),
		fmt.Sprintf("status patch *v1.SessionStore %s/mars", ns),
	}), "one apply attempt for the one change of spec")

	// Fixing the spec schedules the cleanup again.
	patchStore(t, ns, "mars", func(s *v1.SessionStore) { s.Spec.Cleanup.TimeZone = ptr.To("Europe/Paris") })
	waitCondition(t, ns, "mars", v1.ConditionCleanupScheduled, metav1.ConditionTrue, v1.ReasonScheduled)
}
