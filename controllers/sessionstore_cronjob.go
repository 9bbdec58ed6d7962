package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	batchv1ac "k8s.io/client-go/applyconfigurations/batch/v1"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

// reconcileCleanupCronJob keeps the cleanup CronJob as the spec says, for
// backends that need one, and announces a problem that needs a person.
func (r *sessionStoreReconciler) reconcileCleanupCronJob(ctx context.Context, s *reconcileScope) error {
	err := r.scheduleCleanup(ctx, s)
	r.announceCleanupProblem(ctx, s)
	return err
}

// scheduleCleanup writes the CronJob and sets CleanupScheduled.
func (r *sessionStoreReconciler) scheduleCleanup(ctx context.Context, s *reconcileScope) error {
	store := s.store
	if specs.HasNativeExpiry(store.Spec.Backend) {
		s.status.Cleanup.CronJobName = ""
		s.status.Cleanup.EffectiveSchedule = ""
		setCondition(s, v1.ConditionCleanupScheduled, metav1.ConditionFalse, v1.ReasonNativeExpiry,
			fmt.Sprintf("%s expires sessions by itself; no cleanup is needed", store.Spec.Backend))
		return nil
	}

	schedule := specs.EffectiveSchedule(store)
	if s.governance != nil {
		schedule = s.governance.Schedule
	}
	s.status.Cleanup.EffectiveSchedule = schedule
	if err := validateCleanupSchedule(schedule, time.Now()); err != nil {
		setCondition(s, v1.ConditionCleanupScheduled, metav1.ConditionFalse, v1.ReasonInvalidSchedule, err.Error())
		return nil
	}
	if !s.connectionSecretReady {
		// The CronJob's pods load the connection Secret: never point them at
		// one that is missing or belongs to someone else.
		setCondition(s, v1.ConditionCleanupScheduled, metav1.ConditionFalse, v1.ReasonConnectionSecretNotReady,
			"waiting for the connection Secret before scheduling the cleanup")
		return nil
	}
	written, err := r.applyCleanupCronJob(ctx, s)
	if !written {
		return err
	}
	name := specs.CleanupCronJobName(store)
	s.status.Cleanup.CronJobName = name
	if store.Spec.Cleanup.Suspend {
		setCondition(s, v1.ConditionCleanupScheduled, metav1.ConditionFalse, v1.ReasonSuspended,
			fmt.Sprintf("CronJob %s is suspended by spec.cleanup.suspend", name))
		return nil
	}
	setCondition(s, v1.ConditionCleanupScheduled, metav1.ConditionTrue, v1.ReasonScheduled,
		fmt.Sprintf("CronJob %s runs the cleanup at %q", name, schedule))
	return nil
}

// validateCleanupSchedule parses schedule as the CronJob controller will and
// refuses one that never comes due (such as "0 0 31 2 *", the 31st of
// February): Kubernetes accepts it, and the cleanup would silently never run.
func validateCleanupSchedule(schedule string, now time.Time) error {
	if err := specs.ValidateSchedule(schedule); err != nil {
		return err
	}
	parsed, err := specs.ParseSchedule(schedule)
	if err != nil {
		return err
	}
	if parsed.Next(now).IsZero() {
		return fmt.Errorf("spec.cleanup.schedule %q never comes due: no such date", schedule)
	}
	return nil
}

// applyCleanupCronJob writes the CronJob unless a foreign one has its name,
// and reports whether the CronJob is now as the spec says. A CronJob the API
// server rejects as invalid is a condition, not an error: only a change of
// spec fixes it, and the watch brings that change, so retrying in between
// would only repeat the rejection.
func (r *sessionStoreReconciler) applyCleanupCronJob(ctx context.Context, s *reconcileScope) (bool, error) {
	desired := specs.GovernedCleanupCronJob(s.store, r.CleanupImage, s.governance)
	if err := controllerutil.SetControllerReference(s.store, desired, r.Scheme); err != nil {
		return false, err
	}
	existing := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: desired.Namespace, Name: desired.Name}}
	owner, err := r.lookupOwned(ctx, s.store, existing)
	if err != nil {
		return false, err
	}
	if owner == foreign {
		setCondition(s, v1.ConditionCleanupScheduled, metav1.ConditionFalse, v1.ReasonCronJobConflict,
			fmt.Sprintf("CronJob %s exists and is not managed by this SessionStore; delete it or rename the SessionStore", desired.Name))
		return false, nil
	}
	want, owned, err := cronJobApplyConfigurations(desired, existing, owner)
	if err != nil {
		return false, err
	}
	applied, err := applyIfDrifted(ctx, r.Client, want, owned)
	if err != nil {
		setCondition(s, v1.ConditionCleanupScheduled, metav1.ConditionFalse, v1.ReasonApplyFailed,
			fmt.Sprintf("writing CronJob %s: %v", desired.Name, err))
		if apierrors.IsInvalid(err) {
			return false, nil
		}
		return false, err
	}
	if applied {
		ctrlLog(ctx).Info("cleanup CronJob written", "cronJob", desired.Name, "schedule", desired.Spec.Schedule)
		s.appliedCronJob = appliedObject(want)
	}
	return true, nil
}

// appliedObject is the CronJob the API server answered an apply with (the
// apply fills want with it), or nil. observeCleanupRuns reads it instead of
// the cache, which lacks a new CronJob for a few milliseconds: a new store
// then reports when its first run is due in its first status write, not in
// a second one once the CronJob's event has reached the cache.
func appliedObject(want runtime.ApplyConfiguration) *batchv1.CronJob {
	data, err := json.Marshal(want)
	if err != nil {
		return nil
	}
	cronJob := &batchv1.CronJob{}
	if err := json.Unmarshal(data, cronJob); err != nil || cronJob.CreationTimestamp.IsZero() {
		return nil
	}
	return cronJob
}

// cronJobApplyConfigurations returns desired as an apply configuration and,
// when existing is ours, what the operator's field manager owns of it.
func cronJobApplyConfigurations(desired, existing *batchv1.CronJob, owner ownership) (want, owned runtime.ApplyConfiguration, err error) {
	w := &batchv1ac.CronJobApplyConfiguration{}
	if err := toApplyConfiguration(desired, w); err != nil || owner != ours {
		return w, nil, err
	}
	restoreOwnerUID(existing)
	o, err := batchv1ac.ExtractCronJob(existing, specs.FieldManager)
	if err != nil {
		return nil, nil, err
	}
	return w, o, nil
}

// cleanupProblems are the CleanupScheduled reasons that need a person: each
// is announced by one event when it begins, never once per reconcile.
var cleanupProblems = map[string]bool{
	v1.ReasonCronJobConflict: true, v1.ReasonInvalidSchedule: true, v1.ReasonApplyFailed: true,
}

// announceCleanupProblem emits one Warning event, named by the condition's
// reason, when CleanupScheduled turns to one of cleanupProblems. The cached
// store can predate the status the last reconcile wrote (a reconcile that an
// owned object's event started), so a problem the API server's copy already
// shows is not announced again.
func (r *sessionStoreReconciler) announceCleanupProblem(ctx context.Context, s *reconcileScope) {
	now := meta.FindStatusCondition(s.status.Conditions, v1.ConditionCleanupScheduled)
	if r.Recorder == nil || now == nil || !cleanupProblems[now.Reason] ||
		hasConditionReason(s.store.Status.Conditions, v1.ConditionCleanupScheduled, now.Reason) {
		return
	}
	if stored := r.storedStatus(ctx, s.store); stored != nil &&
		hasConditionReason(stored.Conditions, v1.ConditionCleanupScheduled, now.Reason) {
		return
	}
	r.Recorder.Eventf(s.store, nil, corev1.EventTypeWarning, now.Reason, "ScheduleCleanup", "%s", now.Message)
}

func hasConditionReason(conditions []metav1.Condition, condType, reason string) bool {
	c := meta.FindStatusCondition(conditions, condType)
	return c != nil && c.Reason == reason
}
