package controllers

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

// missedScheduleGrace is how long past a due run (and the CronJob's
// starting deadline) the operator waits before saying it never started.
const missedScheduleGrace = 2 * time.Minute

// observeCleanupRuns reads the Jobs the cleanup CronJob started and the Pods
// they ran, and reports the last run in status.
func (r *sessionStoreReconciler) observeCleanupRuns(ctx context.Context, s *reconcileScope) error {
	store := s.store
	if specs.HasNativeExpiry(store.Spec.Backend) {
		meta.RemoveStatusCondition(&s.status.Conditions, v1.ConditionLastCleanupSucceeded)
		s.status.Cleanup.LastScheduleTime, s.status.Cleanup.LastSuccessfulTime, s.status.Cleanup.LastResult = nil, nil, nil
		return nil
	}
	cronJob, err := r.cleanupCronJob(ctx, s)
	if err != nil {
		return err
	}
	owned := cronJob != nil && metav1.IsControlledBy(cronJob, store)
	if owned {
		s.status.Cleanup.LastScheduleTime = cronJob.Status.LastScheduleTime
		s.status.Cleanup.LastSuccessfulTime = latest(s.status.Cleanup.LastSuccessfulTime, cronJob.Status.LastSuccessfulTime)
	}

	jobs := &batchv1.JobList{}
	if err := r.Client.List(ctx, jobs, client.InNamespace(store.Namespace),
		client.MatchingLabels{specs.StoreLabel: store.Name, specs.ComponentLabel: "cleanup"}); err != nil {
		return err
	}
	finished, running := splitJobs(jobs.Items)
	if last := lastSucceeded(finished); last != nil {
		s.status.Cleanup.LastSuccessfulTime = latest(s.status.Cleanup.LastSuccessfulTime, last.Status.CompletionTime)
	}
	if owned {
		if succeeded, removed := lastRunRemoved(cronJob, jobs.Items); removed {
			r.reportRemovedRun(ctx, s, cronJob, succeeded)
			return nil
		}
	}
	if len(finished) > 0 {
		return r.reportRun(ctx, s, &finished[0])
	}
	if running != nil {
		setCondition(s, v1.ConditionLastCleanupSucceeded, metav1.ConditionUnknown, v1.ReasonRunning,
			fmt.Sprintf("the first run, Job %s, is under way", running.Name))
		return nil
	}
	r.reportNoRun(s, cronJob)
	return nil
}

// cleanupCronJob is the store's CronJob: the one this reconcile applied, or
// the cached one; nil when there is none.
func (r *sessionStoreReconciler) cleanupCronJob(ctx context.Context, s *reconcileScope) (*batchv1.CronJob, error) {
	if s.appliedCronJob != nil {
		return s.appliedCronJob, nil
	}
	cronJob := &batchv1.CronJob{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: s.store.Namespace, Name: specs.CleanupCronJobName(s.store)}, cronJob)
	if err != nil {
		return nil, ignoreNotFound(err)
	}
	return cronJob, nil
}

// lastRunRemoved tells whether the CronJob's last scheduled run has ended
// and its Job is gone because the history limit for its outcome is 0 (the
// CronJob controller then deletes it at once), and whether it succeeded,
// which the CronJob's status still tells: lastSuccessfulTime is at or after
// lastScheduleTime only when that run succeeded.
func lastRunRemoved(cronJob *batchv1.CronJob, jobs []batchv1.Job) (succeeded, removed bool) {
	scheduled := cronJob.Status.LastScheduleTime
	if scheduled == nil || len(cronJob.Status.Active) > 0 {
		return false, false
	}
	for i := range jobs {
		if !jobs[i].CreationTimestamp.Before(scheduled) {
			return false, false // the run's Job is still there to read
		}
	}
	succeeded = cronJob.Status.LastSuccessfulTime != nil && !cronJob.Status.LastSuccessfulTime.Before(scheduled)
	limit := cronJob.Spec.FailedJobsHistoryLimit
	if succeeded {
		limit = cronJob.Spec.SuccessfulJobsHistoryLimit
	}
	return succeeded, limit != nil && *limit == 0
}

// reportRemovedRun reports a run whose Job the history limit removed, from
// the CronJob's status: its outcome, not its counts or error. A run already
// reported, from its Job before the Job went, keeps that fuller report.
func (r *sessionStoreReconciler) reportRemovedRun(ctx context.Context, s *reconcileScope, cronJob *batchv1.CronJob, succeeded bool) {
	scheduled := cronJob.Status.LastScheduleTime
	// The CronJob controller names a run's Job by its scheduled minute.
	jobName := fmt.Sprintf("%s-%d", cronJob.Name, scheduled.Unix()/60)
	if r.keepReportedRun(ctx, s, jobName) {
		return
	}
	result := &v1.CleanupResult{JobName: jobName, Succeeded: succeeded}
	countedAt := scheduled // the run ended after that: enough to count it once
	if succeeded {
		result.CompletionTime = cronJob.Status.LastSuccessfulTime
		countedAt = result.CompletionTime
		result.Message = "succeeded; its Job was removed at once (successfulJobsHistoryLimit 0), so its counts are not known"
		setCondition(s, v1.ConditionLastCleanupSucceeded, metav1.ConditionTrue, v1.ReasonSucceeded,
			fmt.Sprintf("Job %s %s", jobName, result.Message))
	} else {
		result.Message = fmt.Sprintf("the run scheduled at %s did not succeed, and its Job was removed at once "+
			"(failedJobsHistoryLimit 0), so its error is not known; set failedJobsHistoryLimit to 1 or more to keep it",
			scheduled.UTC().Format(time.RFC3339))
		setCondition(s, v1.ConditionLastCleanupSucceeded, metav1.ConditionFalse, v1.ReasonFailed,
			fmt.Sprintf("Job %s failed: %s", jobName, result.Message))
	}
	s.status.Cleanup.LastResult = result
	counted := *result
	counted.CompletionTime = countedAt
	outcome := map[bool]string{true: "succeeded", false: "failed"}[succeeded]
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: jobName, UID: types.UID(string(cronJob.UID) + "/" + jobName)}}
	r.Metrics.observeRun(s.store, job, &counted, outcome)
}

// keepReportedRun tells whether the run of jobName is already the last
// result, and keeps it. The cached store can predate the status the last
// reconcile wrote, so before a new result replaces the cached one, the
// status stored on the API server is asked; this happens only at a change.
func (r *sessionStoreReconciler) keepReportedRun(ctx context.Context, s *reconcileScope, jobName string) bool {
	if last := s.status.Cleanup.LastResult; last != nil && last.JobName == jobName {
		return true
	}
	stored := r.storedStatus(ctx, s.store)
	if stored == nil || stored.Cleanup.LastResult == nil || stored.Cleanup.LastResult.JobName != jobName {
		return false
	}
	s.status.Cleanup.LastResult = stored.Cleanup.LastResult
	if c := meta.FindStatusCondition(stored.Conditions, v1.ConditionLastCleanupSucceeded); c != nil {
		meta.SetStatusCondition(&s.status.Conditions, *c)
	}
	return true
}

// latest returns the later of two times, either of which may be nil.
func latest(a, b *metav1.Time) *metav1.Time {
	if a == nil || (b != nil && a.Before(b)) {
		return b
	}
	return a
}

// splitJobs returns the finished Jobs, newest first, and the newest running one.
func splitJobs(jobs []batchv1.Job) (finished []batchv1.Job, running *batchv1.Job) {
	for i := range jobs {
		if _, done := jobOutcome(&jobs[i]); done {
			finished = append(finished, jobs[i])
		} else if running == nil || jobs[i].CreationTimestamp.After(running.CreationTimestamp.Time) {
			running = &jobs[i]
		}
	}
	sort.Slice(finished, func(a, b int) bool { return jobFinishTime(&finished[a]).After(jobFinishTime(&finished[b])) })
	return finished, running
}

func lastSucceeded(finished []batchv1.Job) *batchv1.Job {
	for i := range finished {
		if c, _ := jobOutcome(&finished[i]); c.Type == batchv1.JobComplete {
			return &finished[i]
		}
	}
	return nil
}

// jobOutcome returns the Job's Complete or Failed condition.
func jobOutcome(job *batchv1.Job) (batchv1.JobCondition, bool) {
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return c, true
		}
	}
	return batchv1.JobCondition{}, false
}

func jobFinishTime(job *batchv1.Job) time.Time {
	if job.Status.CompletionTime != nil {
		return job.Status.CompletionTime.Time
	}
	if c, ok := jobOutcome(job); ok {
		return c.LastTransitionTime.Time
	}
	return job.CreationTimestamp.Time
}

// reportRun puts a finished run's report in status.
func (r *sessionStoreReconciler) reportRun(ctx context.Context, s *reconcileScope, job *batchv1.Job) error {
	cond, _ := jobOutcome(job)
	report, err := r.runReport(ctx, s.store, job)
	if err != nil {
		return err
	}
	finishedAt := metav1.NewTime(jobFinishTime(job))
	result := &v1.CleanupResult{
		JobName:        job.Name,
		Succeeded:      cond.Type == batchv1.JobComplete,
		CompletionTime: &finishedAt,
	}
	if report != nil {
		result.Scanned, result.Expired, result.Deleted = report.Scanned, report.Expired, report.Deleted
		for _, n := range report.Kept {
			result.Kept += n
		}
		if report.Duration > 0 {
			result.Duration = &metav1.Duration{Duration: report.Duration.Round(time.Millisecond)}
		}
	}
	outcome := "failed"
	switch {
	case result.Succeeded:
		outcome = "succeeded"
		result.Message = truncate(runSummary(report, "the cleanup succeeded"), 1024)
		setCondition(s, v1.ConditionLastCleanupSucceeded, metav1.ConditionTrue, v1.ReasonSucceeded,
			fmt.Sprintf("Job %s: %s", job.Name, result.Message))
	case cond.Reason == batchv1.JobReasonDeadlineExceeded:
		outcome = "deadline_exceeded"
		result.Message = truncate(fmt.Sprintf("stopped at its deadline of %ds; %s", ptrInt64(job.Spec.ActiveDeadlineSeconds),
			runSummary(report, "no report")), 1024)
		setCondition(s, v1.ConditionLastCleanupSucceeded, metav1.ConditionFalse, v1.ReasonDeadlineExceeded,
			fmt.Sprintf("Job %s %s", job.Name, result.Message))
	default:
		why := cond.Message
		if report != nil && report.Error != "" {
			why = report.Error
		}
		result.Message = truncate(cmp.Or(why, "the cleanup failed"), 1024)
		setCondition(s, v1.ConditionLastCleanupSucceeded, metav1.ConditionFalse, failureReason(report),
			fmt.Sprintf("Job %s failed: %s", job.Name, result.Message))
	}
	s.status.Cleanup.LastResult = result
	r.Metrics.observeRun(s.store, job, result, outcome)
	if s.store.Spec.Backend == v1.BackendFilesystem {
		reachabilityFromRun(s, result, report)
	}
	return nil
}

// failureReason names a failed run's reason: the store's own kind where the
// cleanup refused to act on what it found (a skewed clock, a table that is
// not Flask-Session's), since those need a person, not a retry.
func failureReason(report *sessionstore.RunResult) string {
	if report != nil {
		switch report.ErrorKind {
		case sessionstore.ErrClockSkew, sessionstore.ErrTableMismatch:
			return string(report.ErrorKind)
		}
	}
	return v1.ReasonFailed
}

// reachabilityFromRun reports a filesystem store's reachability from its
// last run, since only the cleanup pods mount its claim.
func reachabilityFromRun(s *reconcileScope, result *v1.CleanupResult, report *sessionstore.RunResult) {
	switch {
	case result.Succeeded:
		setCondition(s, v1.ConditionStoreReachable, metav1.ConditionTrue, v1.ReasonCleanupRunReached,
			fmt.Sprintf("cleanup Job %s read the directory", result.JobName))
	case report != nil && report.ErrorKind != "":
		setCondition(s, v1.ConditionStoreReachable, metav1.ConditionFalse, string(report.ErrorKind),
			fmt.Sprintf("cleanup Job %s: %s", result.JobName, result.Message))
	}
}

// runReport reads the report `cleanup` left as the termination message of
// the Job's last Pod; nil when there is none (the pod never started).
func (r *sessionStoreReconciler) runReport(ctx context.Context, store *v1.SessionStore, job *batchv1.Job) (*sessionstore.RunResult, error) {
	pods := &corev1.PodList{}
	if err := r.Client.List(ctx, pods, client.InNamespace(store.Namespace),
		client.MatchingLabels{specs.StoreLabel: store.Name, batchv1.JobNameLabel: job.Name}); err != nil {
		return nil, err
	}
	sort.Slice(pods.Items, func(a, b int) bool {
		return pods.Items[a].CreationTimestamp.After(pods.Items[b].CreationTimestamp.Time)
	})
	for _, pod := range pods.Items {
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.Name != specs.CleanupContainerName || cs.State.Terminated == nil {
				continue
			}
			msg := strings.TrimSpace(cs.State.Terminated.Message)
			// A run that failed before it had a report leaves none: zeros.
			report := &sessionstore.RunResult{Report: &sessionstore.Report{}}
			if err := json.Unmarshal([]byte(msg), report); err != nil {
				// FallbackToLogsOnError: the message is the log's tail.
				report = &sessionstore.RunResult{Report: &sessionstore.Report{}, Error: lastLine(msg)}
			}
			return report, nil
		}
	}
	return nil, nil
}

// reportNoRun says why there is no run to report: suspended, not due yet,
// or due and never started (the CronJob controller missed it).
func (r *sessionStoreReconciler) reportNoRun(s *reconcileScope, cronJob *batchv1.CronJob) {
	if s.store.Spec.Cleanup.Suspend {
		setCondition(s, v1.ConditionLastCleanupSucceeded, metav1.ConditionUnknown, v1.ReasonSuspended,
			"no run: the cleanup is suspended")
		return
	}
	if cronJob == nil || !metav1.IsControlledBy(cronJob, s.store) {
		setConditionIfAbsent(s, v1.ConditionLastCleanupSucceeded, metav1.ConditionUnknown, v1.ReasonNotRunYet, "no cleanup CronJob yet")
		return
	}
	since := cronJob.CreationTimestamp.Time
	if t := cronJob.Status.LastScheduleTime; t != nil {
		since = t.Time
	}
	due, err := nextRun(cronJob, since)
	if err != nil {
		return // CleanupScheduled already says the schedule is invalid
	}
	deadline := due.Add(time.Duration(ptrInt64(cronJob.Spec.StartingDeadlineSeconds))*time.Second + missedScheduleGrace)
	if now := r.now(); now.Before(deadline) {
		setCondition(s, v1.ConditionLastCleanupSucceeded, metav1.ConditionUnknown, v1.ReasonNotRunYet,
			fmt.Sprintf("the first run is due at %s", due.UTC().Format(time.RFC3339)))
		s.requeueWithin(deadline.Sub(now) + time.Second)
		return
	}
	setCondition(s, v1.ConditionLastCleanupSucceeded, metav1.ConditionFalse, v1.ReasonMissedSchedule,
		fmt.Sprintf("a run was due at %s and never started; check the CronJob %s and the cluster's Job controller",
			due.UTC().Format(time.RFC3339), cronJob.Name))
}

// nextRun is the first time after since that the CronJob is due, in its
// time zone.
func nextRun(cronJob *batchv1.CronJob, since time.Time) (time.Time, error) {
	sched, err := specs.ParseSchedule(cronJob.Spec.Schedule)
	if err != nil {
		return time.Time{}, err
	}
	loc := time.UTC
	if tz := cronJob.Spec.TimeZone; tz != nil {
		if l, err := time.LoadLocation(*tz); err == nil {
			loc = l
		}
	}
	return sched.Next(since.In(loc)), nil
}

func runSummary(report *sessionstore.RunResult, fallback string) string {
	if report == nil {
		return fallback
	}
	if report.Message != "" && report.Error == "" {
		return fmt.Sprintf("deleted %d of %d expired sessions (%d scanned); %s",
			report.Deleted, report.Expired, report.Scanned, report.Message)
	}
	return fmt.Sprintf("deleted %d of %d expired sessions (%d scanned)", report.Deleted, report.Expired, report.Scanned)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

func ptrInt64(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}
