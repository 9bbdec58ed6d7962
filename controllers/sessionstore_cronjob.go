package controllers

import (
	"context"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	batchv1ac "k8s.io/client-go/applyconfigurations/batch/v1"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

// reconcileCleanupCronJob keeps the cleanup CronJob as the spec says, for
// backends that need one.
func (r *SessionStoreReconciler) reconcileCleanupCronJob(ctx context.Context, s *reconcileScope) error {
	store := s.store
	if specs.HasNativeExpiry(store.Spec.Backend) {
		s.status.Cleanup.CronJobName = ""
		s.status.Cleanup.EffectiveSchedule = ""
		setCondition(s, ConditionCleanupScheduled, metav1.ConditionFalse, ReasonNativeExpiry,
			fmt.Sprintf("%s expires sessions by itself; no cleanup is needed", store.Spec.Backend))
		return nil
	}

	schedule := specs.EffectiveSchedule(store)
	s.status.Cleanup.EffectiveSchedule = schedule
	if err := specs.ValidateSchedule(schedule); err != nil {
		setCondition(s, ConditionCleanupScheduled, metav1.ConditionFalse, ReasonInvalidSchedule, err.Error())
		return nil
	}
	if !s.connectionSecretReady {
		// The CronJob's pods load the connection Secret: never point them at
		// one that is missing or belongs to someone else.
		setCondition(s, ConditionCleanupScheduled, metav1.ConditionFalse, ReasonConnectionSecretNotReady,
			"waiting for the connection Secret before scheduling the cleanup")
		return nil
	}

	desired := specs.CleanupCronJob(store, r.CleanupImage)
	if err := controllerutil.SetControllerReference(store, desired, r.Scheme); err != nil {
		return err
	}
	existing := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: desired.Namespace, Name: desired.Name}}
	owner, err := r.lookupOwned(ctx, store, existing)
	if err != nil {
		return err
	}
	if owner == foreign {
		setCondition(s, ConditionCleanupScheduled, metav1.ConditionFalse, ReasonCronJobConflict,
			fmt.Sprintf("CronJob %s exists and is not managed by this SessionStore", desired.Name))
		return nil
	}
	want := &batchv1ac.CronJobApplyConfiguration{}
	if err := toApplyConfiguration(desired, want); err != nil {
		return err
	}
	var owned runtime.ApplyConfiguration
	if owner == ours {
		if owned, err = batchv1ac.ExtractCronJob(existing, specs.FieldManager); err != nil {
			return err
		}
	}
	applied, err := applyIfDrifted(ctx, r.Client, want, owned)
	if err != nil {
		setCondition(s, ConditionCleanupScheduled, metav1.ConditionFalse, ReasonApplyFailed,
			fmt.Sprintf("writing CronJob %s: %v", desired.Name, err))
		if apierrors.IsInvalid(err) {
			// Only a change of spec can fix it: report, do not retry in a loop.
			return nil
		}
		return err
	}
	if applied {
		ctrlLog(ctx).Info("cleanup CronJob written", "cronJob", desired.Name, "schedule", schedule)
	}
	s.status.Cleanup.CronJobName = desired.Name
	if store.Spec.Cleanup.Suspend {
		setCondition(s, ConditionCleanupScheduled, metav1.ConditionFalse, ReasonSuspended,
			fmt.Sprintf("CronJob %s is suspended by spec.cleanup.suspend", desired.Name))
		return nil
	}
	setCondition(s, ConditionCleanupScheduled, metav1.ConditionTrue, ReasonScheduled,
		fmt.Sprintf("CronJob %s runs the cleanup at %q", desired.Name, schedule))
	return nil
}
