package controllers

import (
	"encoding/json"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/runrecord"
	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

// There is no kubelet or Job controller here: the tests create the Job a
// CronJob would, and the Pod the Job would, and set their status as those
// controllers do.

type runEnding struct {
	succeeded         bool
	reason            string // the Job's Failed reason
	terminationReport string // what `cleanup` left as termination message
	exitCode          int32
	// finished is when the run ended; zero is a second ago. Runs a test
	// orders give their own, a few seconds apart (finish times have a
	// one-second grain), instead of sleeping between them.
	finished time.Time
}

// simulateRun makes a cleanup run of store's CronJob that ended as said,
// recorded as the Job controller and kubelet would (internal/runrecord).
func simulateRun(t *testing.T, store *v1.SessionStore, jobName string, end runEnding) *batchv1.Job {
	t.Helper()
	cj := waitCronJob(t, store.Namespace, specs.CleanupCronJobName(store))
	exit := int(end.exitCode)
	if !end.succeeded && exit == 0 {
		exit = 1
	}
	finished := end.finished
	if finished.IsZero() {
		finished = time.Now().Add(-time.Second)
	}
	run := &runrecord.Run{
		JobName: jobName, FailureReason: end.reason, ExitCode: exit,
		TerminationMessage: end.terminationReport,
		Started:            finished.Add(-30 * time.Second), Finished: finished,
	}
	job, err := runrecord.Record(ctx(), k8sClient, cj, run)
	if err != nil {
		t.Fatalf("recording run %s: %v", jobName, err)
	}
	return job
}

func reportJSON(t *testing.T, fields map[string]any) string {
	t.Helper()
	data, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestCleanupRunsAreReported(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	// The four runs end 2 s apart, in order, from now on: the manager
	// counts only runs that end after it started.
	first := time.Now()
	endsAt := func(i int) time.Time { return first.Add(time.Duration(2*i) * time.Second) }
	store := createStore(t, filesystemStore(ns, "runs"))
	got := waitConfigured(t, ns, "runs")
	g.Expect(condition(got, v1.ConditionLastCleanupSucceeded).Reason).To(Equal(v1.ReasonNotRunYet))
	g.Expect(condition(got, v1.ConditionStoreReachable).Reason).To(Equal(v1.ReasonAwaitingCleanupRun))

	// A run that succeeds.
	simulateRun(t, store, "runs-cleanup-29000001", runEnding{succeeded: true,
		terminationReport: reportJSON(t, map[string]any{"backend": "filesystem", "scanned": 1200, "expired": 400,
			"deleted": 398, "kept": map[string]int{"unreadable": 2}, "batches": 2, "duration": int64(1500 * time.Millisecond)}),
		finished: endsAt(0)})
	got = waitCondition(t, ns, "runs", v1.ConditionLastCleanupSucceeded, metav1.ConditionTrue, v1.ReasonSucceeded)
	res := got.Status.Cleanup.LastResult
	g.Expect(res).NotTo(BeNil())
	g.Expect(res.JobName).To(Equal("runs-cleanup-29000001"))
	g.Expect(res.Succeeded).To(BeTrue())
	g.Expect(res.Deleted).To(BeEquivalentTo(398))
	g.Expect(res.Scanned).To(BeEquivalentTo(1200))
	g.Expect(res.Expired).To(BeEquivalentTo(400))
	g.Expect(res.Kept).To(BeEquivalentTo(2))
	g.Expect(res.Duration.Duration).To(Equal(1500 * time.Millisecond))
	g.Expect(got.Status.Cleanup.LastSuccessfulTime).NotTo(BeNil())
	g.Expect(condition(got, v1.ConditionStoreReachable).Status).To(Equal(metav1.ConditionTrue), "a run that read the directory reached it")
	g.Expect(condition(got, v1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(metricValue(t, "sessionstore_last_cleanup_deleted_sessions", ns, "runs")).To(Equal(398.0))
	g.Expect(metricValue(t, "sessionstore_last_successful_cleanup_timestamp_seconds", ns, "runs")).
		To(BeNumerically("==", got.Status.Cleanup.LastSuccessfulTime.Unix()))
	lastSuccess := got.Status.Cleanup.LastSuccessfulTime

	// A run that fails: the store's error, not the success before it.
	simulateRun(t, store, "runs-cleanup-29000061", runEnding{reason: batchv1.JobReasonBackoffLimitExceeded, exitCode: 1,
		terminationReport: reportJSON(t, map[string]any{"backend": "filesystem", "error": "ping: /flask_session is not a directory",
			"errorKind": "InvalidConfig"}), finished: endsAt(1)})
	got = waitCondition(t, ns, "runs", v1.ConditionLastCleanupSucceeded, metav1.ConditionFalse, v1.ReasonFailed)
	g.Expect(condition(got, v1.ConditionLastCleanupSucceeded).Message).To(ContainSubstring("is not a directory"))
	g.Expect(got.Status.Cleanup.LastResult.Succeeded).To(BeFalse())
	g.Expect(got.Status.Cleanup.LastSuccessfulTime.Equal(lastSuccess)).To(BeTrue(), "the last success stays the last success")
	g.Expect(condition(got, v1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
	g.Expect(condition(got, v1.ConditionStoreReachable).Status).To(Equal(metav1.ConditionFalse))
	g.Eventually(func(g Gomega) {
		g.Expect(eventReasons(g, ns, "runs")).To(ContainElement(v1.EventCleanupFailed))
	}, eventually, poll).Should(Succeed())

	// A run stopped at its deadline, after deleting some.
	simulateRun(t, store, "runs-cleanup-29000121", runEnding{reason: batchv1.JobReasonDeadlineExceeded, exitCode: 1,
		terminationReport: reportJSON(t, map[string]any{"backend": "filesystem", "scanned": 5000, "expired": 5000,
			"deleted": 4000, "stoppedEarly": true, "error": "stopped early: deadline"}), finished: endsAt(2)})
	got = waitCondition(t, ns, "runs", v1.ConditionLastCleanupSucceeded, metav1.ConditionFalse, v1.ReasonDeadlineExceeded)
	g.Expect(got.Status.Cleanup.LastResult.Deleted).To(BeEquivalentTo(4000))
	g.Expect(condition(got, v1.ConditionLastCleanupSucceeded).Message).To(ContainSubstring("deadline"))

	// A run whose pod never wrote a report (killed before it started).
	simulateRun(t, store, "runs-cleanup-29000181", runEnding{reason: batchv1.JobReasonBackoffLimitExceeded, finished: endsAt(3)})
	got = waitCondition(t, ns, "runs", v1.ConditionLastCleanupSucceeded, metav1.ConditionFalse, v1.ReasonFailed)
	g.Expect(got.Status.Cleanup.LastResult.JobName).To(Equal("runs-cleanup-29000181"))

	g.Expect(runCount(t, ns, "runs", "succeeded")).To(Equal(1.0))
	g.Expect(runCount(t, ns, "runs", "failed")).To(Equal(2.0))
	g.Expect(runCount(t, ns, "runs", "deadline_exceeded")).To(Equal(1.0))
}

func TestCleanupThatNeverRan(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)

	suspended := filesystemStore(ns, "paused")
	suspended.Spec.Cleanup.Suspend = true
	createStore(t, suspended)
	got := waitCondition(t, ns, "paused", v1.ConditionLastCleanupSucceeded, metav1.ConditionUnknown, v1.ReasonSuspended)
	g.Expect(condition(got, v1.ConditionCleanupScheduled).Reason).To(Equal(v1.ReasonSuspended))

	// The CronJob controller last scheduled a run three hours ago and none
	// since, though the schedule is hourly: a run was missed.
	createStore(t, filesystemStore(ns, "missed"))
	waitConfigured(t, ns, "missed")
	cj := waitCronJob(t, ns, "missed-cleanup")
	cj.Status.LastScheduleTime = ptr.To(metav1.NewTime(time.Now().Add(-3 * time.Hour)))
	g.Expect(k8sClient.Status().Update(ctx(), cj)).To(Succeed())
	got = waitCondition(t, ns, "missed", v1.ConditionLastCleanupSucceeded, metav1.ConditionFalse, v1.ReasonMissedSchedule)
	g.Expect(got.Status.Cleanup.LastScheduleTime).NotTo(BeNil())
	g.Expect(condition(got, v1.ConditionReady).Reason).To(Equal(v1.ReasonMissedSchedule))
}

func runCount(t *testing.T, ns, name, result string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "sessionstore_cleanup_runs_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelValue(m.GetLabel(), "namespace") == ns && labelValue(m.GetLabel(), "name") == name &&
				labelValue(m.GetLabel(), "result") == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
