package controllers

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/runrecord"
	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

// recordRemovedRun records a finished run of the store's CronJob as the Job
// controller and kubelet would, then removes its Job and Pod as the CronJob
// controller does at once when the history limit for the outcome is 0.
func recordRemovedRun(t *testing.T, ns, cronJobName string, run *runrecord.Run) {
	t.Helper()
	g := NewWithT(t)
	cj := waitCronJob(t, ns, cronJobName)
	job, err := runrecord.Record(ctx(), k8sClient, cj, run)
	g.Expect(err).NotTo(HaveOccurred())
	// envtest runs no garbage collector: the Pod goes by hand too.
	g.Expect(k8sClient.DeleteAllOf(ctx(), &corev1.Pod{}, client.InNamespace(ns),
		client.MatchingLabels{batchv1.JobNameLabel: job.Name})).To(Succeed())
	g.Expect(k8sClient.Delete(ctx(), job, client.PropagationPolicy(metav1.DeletePropagationBackground))).To(Succeed())
	g.Eventually(func(g Gomega) {
		jobs := &batchv1.JobList{}
		g.Expect(testMgr.GetCache().List(ctx(), jobs, client.InNamespace(ns))).To(Succeed())
		g.Expect(jobs.Items).To(BeEmpty())
	}, eventually, poll).Should(Succeed())
}

func TestHistoryLimitsOfZeroStillReportRuns(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	store := filesystemStore(ns, "nohistory")
	store.Spec.Cleanup.SuccessfulJobsHistoryLimit = ptr.To[int32](0)
	store.Spec.Cleanup.FailedJobsHistoryLimit = ptr.To[int32](0)
	createStore(t, store)
	got := waitConfigured(t, ns, "nohistory")
	g.Expect(condition(got, v1.ConditionLastCleanupSucceeded).Reason).To(Equal(v1.ReasonNotRunYet))

	// A run that succeeded five minutes ago, its Job gone.
	now := time.Now()
	recordRemovedRun(t, ns, "nohistory-cleanup", &runrecord.Run{
		Started: now.Add(-5 * time.Minute), Finished: now.Add(-5*time.Minute + 10*time.Second),
		TerminationMessage: reportJSON(t, map[string]any{"backend": "filesystem", "scanned": 10, "expired": 4, "deleted": 4}),
	})
	cj := waitCronJob(t, ns, "nohistory-cleanup")
	g.Expect(cj.Status.LastSuccessfulTime).NotTo(BeNil())
	expectLastCleanup(t, ns, "nohistory", metav1.ConditionTrue, v1.ReasonSucceeded, func(g Gomega, got *v1.SessionStore) {
		g.Expect(got.Status.Cleanup.LastSuccessfulTime).NotTo(BeNil())
		g.Expect(got.Status.Cleanup.LastSuccessfulTime.Equal(cj.Status.LastSuccessfulTime)).To(BeTrue())
		g.Expect(got.Status.Cleanup.LastResult.Succeeded).To(BeTrue())
	})

	// A run that failed a moment ago, its Job gone too: the failure stays
	// visible as the condition, the last result, Ready and one event.
	recordRemovedRun(t, ns, "nohistory-cleanup", &runrecord.Run{
		Started: now.Add(-30 * time.Second), Finished: now.Add(-time.Second), ExitCode: 1,
		TerminationMessage: reportJSON(t, map[string]any{"backend": "filesystem", "error": "ping: permission denied"}),
	})
	expectLastCleanup(t, ns, "nohistory", metav1.ConditionFalse, v1.ReasonFailed, func(g Gomega, got *v1.SessionStore) {
		g.Expect(got.Status.Cleanup.LastResult.Succeeded).To(BeFalse())
		g.Expect(got.Status.Cleanup.LastSuccessfulTime.Equal(cj.Status.LastSuccessfulTime)).To(BeTrue(), "the last success stays the last success")
		g.Expect(condition(got, v1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
	})
	// One Event object for the failed run. Its series count is not checked:
	// recordTransitions can repeat an event when the cached store predates
	// the last status write, a race outside this test's subject.
	g.Eventually(func(g Gomega) { g.Expect(eventsOf(g, ns, "nohistory", v1.EventCleanupFailed)).To(HaveLen(1)) }, eventually, poll).Should(Succeed())
	g.Consistently(func(g Gomega) { g.Expect(eventsOf(g, ns, "nohistory", v1.EventCleanupFailed)).To(HaveLen(1)) }, time.Second, poll).Should(Succeed())
}

// expectLastCleanup waits for LastCleanupSucceeded to say so, then checks
// for a while that it stays so, with check holding on the status.
func expectLastCleanup(t *testing.T, ns, name string, status metav1.ConditionStatus, reason string, check func(Gomega, *v1.SessionStore)) {
	t.Helper()
	assert := func(g Gomega) {
		got := getStore(g, ns, name)
		c := condition(got, v1.ConditionLastCleanupSucceeded)
		g.Expect(c.Status).To(Equal(status), "%+v", c)
		g.Expect(c.Reason).To(Equal(reason), "%+v", c)
		g.Expect(got.Status.Cleanup.LastResult).NotTo(BeNil())
		check(g, got)
	}
	NewWithT(t).Eventually(assert, eventually, poll).Should(Succeed())
	NewWithT(t).Consistently(assert, 2*time.Second, 100*time.Millisecond).Should(Succeed())
}

func TestLastRunRemoved(t *testing.T) {
	scheduled := metav1.NewTime(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	before, after := metav1.NewTime(scheduled.Add(-time.Hour)), metav1.NewTime(scheduled.Add(time.Minute))
	cronJob := func(success, failed int32, lastSuccess *metav1.Time, active bool) *batchv1.CronJob {
		cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: specs.CleanupContainerName}}
		cj.Spec.SuccessfulJobsHistoryLimit, cj.Spec.FailedJobsHistoryLimit = &success, &failed
		cj.Status.LastScheduleTime, cj.Status.LastSuccessfulTime = &scheduled, lastSuccess
		if active {
			cj.Status.Active = []corev1.ObjectReference{{Name: "running"}}
		}
		return cj
	}
	jobCreated := func(at metav1.Time) []batchv1.Job {
		return []batchv1.Job{{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: at}}}
	}
	for _, tc := range []struct {
		name               string
		cronJob            *batchv1.CronJob
		jobs               []batchv1.Job
		succeeded, removed bool
	}{
		{"success removed by limit 0", cronJob(0, 3, &after, false), nil, true, true},
		{"failure removed by limit 0", cronJob(3, 0, &before, false), jobCreated(before), false, true},
		{"failure with no success ever", cronJob(3, 0, nil, false), nil, false, true},
		{"the run's Job is still there", cronJob(0, 0, &after, false), jobCreated(after), false, false},
		{"a limit above 0 keeps the Job: gone means something else", cronJob(1, 1, &after, false), nil, false, false},
		{"still running", cronJob(0, 0, nil, true), nil, false, false},
	} {
		succeeded, removed := lastRunRemoved(tc.cronJob, tc.jobs)
		if removed != tc.removed || (removed && succeeded != tc.succeeded) {
			t.Errorf("%s: got succeeded=%v removed=%v, want %v %v", tc.name, succeeded, removed, tc.succeeded, tc.removed)
		}
	}
}
