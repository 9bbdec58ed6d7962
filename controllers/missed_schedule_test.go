package controllers

import (
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// A run that never started is MissedSchedule only once its due time, in the
// CronJob's own time zone, plus the starting deadline and a margin, has
// passed; before that it is NotRunYet, due at the right instant. Summer and
// winter time in New York put 03:00 at different UTC instants.
func TestMissedScheduleAcrossTimeZones(t *testing.T) {
	cases := []struct {
		name, zone string
		created    time.Time
		due        time.Time
	}{
		{"UTC", "", time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC), time.Date(2026, 1, 11, 3, 0, 0, 0, time.UTC)},
		{"New York, winter", "America/New_York", time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC), time.Date(2026, 1, 11, 8, 0, 0, 0, time.UTC)},
		{"New York, summer", "America/New_York", time.Date(2026, 7, 10, 12, 0, 0, 0, time.UTC), time.Date(2026, 7, 11, 7, 0, 0, 0, time.UTC)},
		{"Tokyo", "Asia/Tokyo", time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC), time.Date(2026, 1, 10, 18, 0, 0, 0, time.UTC)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cj := &batchv1.CronJob{
				ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(tc.created)},
				Spec:       batchv1.CronJobSpec{Schedule: "0 3 * * *", StartingDeadlineSeconds: ptr.To[int64](600)},
			}
			if tc.zone != "" {
				cj.Spec.TimeZone = ptr.To(tc.zone)
			}
			missedAfter := tc.due.Add(600*time.Second + missedScheduleGrace)
			for _, at := range []struct {
				now    time.Time
				reason string
			}{
				{tc.due.Add(-time.Minute), v1.ReasonNotRunYet},
				{missedAfter.Add(-time.Second), v1.ReasonNotRunYet},
				{missedAfter, v1.ReasonMissedSchedule},
			} {
				reason, message := noRunReason(t, cj, at.now)
				if reason != at.reason {
					t.Errorf("at %s: %s (%s), want %s", at.now.UTC().Format(time.RFC3339), reason, message, at.reason)
				}
				if !strings.Contains(message, tc.due.UTC().Format(time.RFC3339)) {
					t.Errorf("at %s: %q does not name the due time %s", at.now.UTC().Format(time.RFC3339), message, tc.due.UTC().Format(time.RFC3339))
				}
			}
		})
	}
}

// noRunReason runs reportNoRun for a store owning cj, with the clock at now.
func noRunReason(t *testing.T, cj *batchv1.CronJob, now time.Time) (string, string) {
	t.Helper()
	store := &v1.SessionStore{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s", UID: "uid-1"}}
	cj.OwnerReferences = []metav1.OwnerReference{{APIVersion: "sessionstore.dev/v1", Kind: "SessionStore",
		Name: "s", UID: "uid-1", Controller: ptr.To(true)}}
	r := &sessionStoreReconciler{Clock: testingclock.NewFakePassiveClock(now)}
	s := &reconcileScope{store: store}
	r.reportNoRun(s, cj)
	c := meta.FindStatusCondition(s.status.Conditions, v1.ConditionLastCleanupSucceeded)
	if c == nil {
		t.Fatal("no LastCleanupSucceeded condition")
	}
	return c.Reason, c.Message
}

// Run selection: the newest finished Job by finish time (a failed one's
// from its condition), the newest running one by creation, and the last
// success among the finished.
func TestRunSelection(t *testing.T) {
	at := func(h int) metav1.Time { return metav1.NewTime(time.Date(2026, 5, 1, h, 0, 0, 0, time.UTC)) }
	job := func(name string, created int, cond batchv1.JobConditionType, finished int) batchv1.Job {
		j := batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: at(created)}}
		if cond != "" {
			j.Status.Conditions = []batchv1.JobCondition{{Type: cond, Status: "True", LastTransitionTime: at(finished)}}
			if cond == batchv1.JobComplete {
				j.Status.CompletionTime = ptr.To(at(finished))
			}
		}
		return j
	}
	jobs := []batchv1.Job{
		job("ok-early", 1, batchv1.JobComplete, 2),
		job("running-old", 3, "", 0),
		job("failed-late", 4, batchv1.JobFailed, 9),
		job("ok-created-last-finished-early", 6, batchv1.JobComplete, 7),
		job("running-new", 8, "", 0),
	}
	finished, running := splitJobs(jobs)
	var names []string
	for _, j := range finished {
		names = append(names, j.Name)
	}
	if strings.Join(names, ",") != "failed-late,ok-created-last-finished-early,ok-early" {
		t.Errorf("finished newest first: %v", names)
	}
	if running == nil || running.Name != "running-new" {
		t.Errorf("running: %v, want running-new", running)
	}
	if ok := lastSucceeded(finished); ok == nil || ok.Name != "ok-created-last-finished-early" {
		t.Errorf("last success: %v", ok)
	}
}
