package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/policy"
	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

// scheduledTimeAnnotation is set by the CronJob controller on the Jobs it
// makes: the starting deadline counts from it. Hand-made and run-now Jobs
// have none; theirs counts from their creation.
const scheduledTimeAnnotation = "batch.kubernetes.io/cronjob-scheduled-timestamp"

// governedRuns are the governed Jobs not finished: started or waiting.
type governedRuns struct {
	running, waiting []policy.Run
}

func (g *cleanupGate) governedRuns(ctx context.Context) (governedRuns, error) {
	jobs := &batchv1.JobList{}
	if err := g.Client.List(ctx, jobs, client.HasLabels{specs.PolicyLabel}); err != nil {
		return governedRuns{}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := map[types.UID]bool{}
	var runs governedRuns
	for i := range jobs.Items {
		job := &jobs.Items[i]
		seen[job.UID] = true
		suspended := ptr.Deref(job.Spec.Suspend, false)
		if !suspended {
			delete(g.started, job.UID) // the cache caught up
		}
		if jobFinished(job) || g.deleted[job.UID] || (suspended && !job.DeletionTimestamp.IsZero()) {
			continue
		}
		run := runOf(job)
		if suspended && !g.started[job.UID] {
			runs.waiting = append(runs.waiting, run)
		} else {
			runs.running = append(runs.running, run)
		}
	}
	forgetUnseen(g.started, seen)
	forgetUnseen(g.deleted, seen)
	return runs, nil
}

func forgetUnseen(m map[types.UID]bool, seen map[types.UID]bool) {
	for uid := range m {
		if !seen[uid] {
			delete(m, uid)
		}
	}
}

func jobFinished(job *batchv1.Job) bool {
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func runOf(job *batchv1.Job) policy.Run {
	created := job.CreationTimestamp.Time
	if at, err := time.Parse(time.RFC3339, job.Annotations[scheduledTimeAnnotation]); err == nil {
		created = at
	}
	l := job.Labels
	return policy.Run{
		Namespace: job.Namespace, Name: job.Name, UID: job.UID,
		Store: l[specs.StoreLabel], Server: l[specs.ServerLabel], Policy: l[specs.PolicyLabel], Created: created,
	}
}

// splitExpired separates the waiting runs that can no longer start in
// time: their starting deadline passed, or (early) their policy's allow
// windows stay closed until after it, so waiting would only end in a skip.
// A run whose policy is gone is not governed any more: it never expires.
func (r governedRuns) splitExpired(views map[string]*policyView, now time.Time) (expired, waiting []policy.Run, early map[types.UID]string) {
	early = map[types.UID]string{}
	for _, run := range r.waiting {
		v := views[run.Policy]
		if v == nil {
			waiting = append(waiting, run)
			continue
		}
		deadline := run.Created.Add(startingDeadline(v.policy))
		switch {
		case now.After(deadline):
			expired = append(expired, run)
		case v.outsideWindows(run.Created, deadline):
			expired = append(expired, run)
			early[run.UID] = fmt.Sprintf("no allow window of policy %s opens before its starting deadline (%s)",
				run.Policy, deadline.UTC().Format(time.RFC3339))
		default:
			waiting = append(waiting, run)
		}
	}
	return expired, waiting, early
}

// start un-suspends each run's Job. The patch carries the Job's UID, so a
// Job deleted and made again under the same name is not started unseen.
func (g *cleanupGate) start(ctx context.Context, runs []policy.Run) error {
	var errs []error
	for _, run := range runs {
		patch := []byte(fmt.Sprintf(`{"metadata":{"uid":%q},"spec":{"suspend":false}}`, run.UID))
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: run.Namespace, Name: run.Name}}
		if err := g.Client.Patch(ctx, job, client.RawPatch(types.MergePatchType, patch)); err != nil {
			if !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				errs = append(errs, fmt.Errorf("starting Job %s/%s: %w", run.Namespace, run.Name, err))
			}
			continue
		}
		g.remember(g.started, run.UID)
		ctrlLog(ctx).Info("cleanup run started by the gate", "job", run.Namespace+"/"+run.Name, "policy", run.Policy)
	}
	return errors.Join(errs...)
}

func (g *cleanupGate) remember(m map[types.UID]bool, uid types.UID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m[uid] = true
}

// skip deletes each expired run's Job and records on its store why it
// never started: held says what held it last, early why a run outside its
// policy's allow windows was not left to wait.
func (g *cleanupGate) skip(ctx context.Context, expired []policy.Run, held map[string]string, early map[types.UID]string) error {
	var errs []error
	for _, run := range expired {
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: run.Namespace, Name: run.Name}}
		err := g.Client.Delete(ctx, job, client.Preconditions{UID: &run.UID}, client.PropagationPolicy(metav1.DeletePropagationBackground))
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("deleting expired Job %s/%s: %w", run.Namespace, run.Name, err))
			continue
		}
		g.remember(g.deleted, run.UID)
		errs = append(errs, g.recordSkip(ctx, run, skipMessage(run, held, early)))
	}
	return errors.Join(errs...)
}

// skipMessage says why run never started, and whether that was the
// policy's windows doing what they are for rather than runs held past
// their deadline.
func skipMessage(run policy.Run, held map[string]string, early map[types.UID]string) skipNote {
	if reason, ok := early[run.UID]; ok {
		return skipNote{message: fmt.Sprintf("run %s skipped: %s", run.Name, reason), expected: true}
	}
	reason := held[run.Namespace+"/"+run.Name]
	if reason == "" {
		reason = "the gate did not start it in time"
	}
	return skipNote{message: fmt.Sprintf("run %s skipped: not started within its starting deadline: %s", run.Name, reason)}
}

type skipNote struct {
	message  string
	expected bool
}

// recordSkip writes the skip into the store's status and an event.
func (g *cleanupGate) recordSkip(ctx context.Context, run policy.Run, note skipNote) error {
	store := &v1.SessionStore{}
	if err := g.Client.Get(ctx, types.NamespacedName{Namespace: run.Namespace, Name: run.Store}, store); err != nil {
		return client.IgnoreNotFound(err)
	}
	before := store.DeepCopy()
	store.Status.Cleanup.LastSkipTime = &metav1.Time{Time: g.Clock.Now()}
	store.Status.Cleanup.LastSkipReason = note.message
	if err := g.Client.Status().Patch(ctx, store, client.MergeFrom(before)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("recording the skip of %s: %w", run.Name, err)
	}
	if g.Recorder != nil {
		eventType := corev1.EventTypeWarning
		if note.expected && cleanedWithinADay(store, g.Clock.Now()) {
			eventType = corev1.EventTypeNormal
		}
		g.Recorder.Eventf(store, nil, eventType, v1.EventCleanupSkipped, "SkipCleanup", "%s", note.message)
	}
	return nil
}

// cleanedWithinADay tells whether store's cleanup succeeded (or the store
// was made) within the last day: a run skipped outside the windows is then
// the windows doing their job; after a day without a success it is a
// schedule that never meets them, which warns.
func cleanedWithinADay(store *v1.SessionStore, now time.Time) bool {
	since := store.CreationTimestamp.Time
	if t := store.Status.Cleanup.LastSuccessfulTime; t != nil && t.After(since) {
		since = t.Time
	}
	return now.Sub(since) < 24*time.Hour
}
