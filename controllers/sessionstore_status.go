package controllers

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// readinessConditions are summarised by Ready, in the order their problems
// are named.
var readinessConditions = []string{
	v1.ConditionConnectionSecretReady, v1.ConditionStoreReachable, v1.ConditionSchemaReady,
	v1.ConditionCleanupScheduled, v1.ConditionLastCleanupSucceeded,
}

// fineReasons lists reasons for which a condition that is not True is not a
// problem for Ready.
var fineReasons = map[string]bool{
	v1.ReasonNativeExpiry: true, v1.ReasonSuspended: true, v1.ReasonAwaitingCleanupRun: true,
	v1.ReasonNotRunYet: true, v1.ReasonRunning: true, v1.ReasonSchemaPending: true,
}

// stallReasons are the reasons of a not-Ready store that the operator cannot
// fix by retrying: a spec, a Secret or a store needs a person.
var stallReasons = map[string]bool{
	v1.ReasonInvalidSchedule: true, v1.ReasonInvalidConfig: true, v1.ReasonInvalidSecretValue: true,
	v1.ReasonSecretConflict: true, v1.ReasonCronJobConflict: true, v1.ReasonApplyFailed: true,
	string(sessionstore.ErrTableMismatch): true, string(sessionstore.ErrClockSkew): true,
}

// optionalConditions may be absent without making the store unready.
var optionalConditions = map[string]bool{v1.ConditionLastCleanupSucceeded: true}

func setCondition(s *reconcileScope, condType string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&s.status.Conditions, metav1.Condition{
		Type:               condType,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: s.store.Generation,
	})
}

// setConditionIfAbsent sets a condition only where there is none, so a
// previous finding stays shown until a new one replaces it.
func setConditionIfAbsent(s *reconcileScope, condType string, status metav1.ConditionStatus, reason, message string) {
	if meta.FindStatusCondition(s.status.Conditions, condType) == nil {
		setCondition(s, condType, status, reason, message)
	}
}

// summarizeReady sets Ready from the other conditions; its message names the
// first thing that is wrong.
func summarizeReady(s *reconcileScope, reconcileErr error) {
	if reconcileErr != nil {
		// A failed API call says nothing about the store: Ready (and its
		// gauge) stay as last observed, and the failure is reported where
		// kstatus looks for it.
		keepReady(s)
		setCondition(s, v1.ConditionReconciling, metav1.ConditionTrue, v1.ReasonReconcileError,
			truncate("retrying with backoff: "+reconcileErr.Error(), 1024))
		return
	}
	meta.RemoveStatusCondition(&s.status.Conditions, v1.ConditionReconciling)
	status, reason, message := readiness(s)
	setCondition(s, v1.ConditionReady, status, reason, message)
	if status == metav1.ConditionFalse && stallReasons[reason] {
		setCondition(s, v1.ConditionStalled, metav1.ConditionTrue, reason, message)
	} else {
		meta.RemoveStatusCondition(&s.status.Conditions, v1.ConditionStalled)
	}
}

// readiness summarises the other conditions, naming the first problem.
func readiness(s *reconcileScope) (metav1.ConditionStatus, string, string) {
	for _, condType := range readinessConditions {
		c := meta.FindStatusCondition(s.status.Conditions, condType)
		if c == nil {
			if optionalConditions[condType] {
				continue
			}
			return metav1.ConditionFalse, v1.ReasonNotReady, condType + " is not known yet"
		}
		if c.Status != metav1.ConditionTrue && !fineReasons[c.Reason] {
			return metav1.ConditionFalse, c.Reason, fmt.Sprintf("%s: %s", condType, c.Message)
		}
	}
	return metav1.ConditionTrue, v1.ReasonReady, "the session store is ready for apps"
}

// keepReady leaves Ready as the API server holds it, or Unknown when it was
// never known.
func keepReady(s *reconcileScope) {
	if meta.FindStatusCondition(s.status.Conditions, v1.ConditionReady) != nil {
		return
	}
	setCondition(s, v1.ConditionReady, metav1.ConditionUnknown, v1.ReasonReconcileError,
		"not known yet: the first reconcile failed and is retried")
}

// writeStatus writes the status built by the phases, once, and only when it
// differs from what the API server holds: a reconcile with nothing to do
// makes no write at all.
func (r *sessionStoreReconciler) writeStatus(ctx context.Context, s *reconcileScope, reconcileErr error) error {
	summarizeReady(s, reconcileErr)
	// Every condition was reconsidered for this generation, so they and
	// the top level all say so, even when a phase failed (which
	// Reconciling reports).
	s.status.ObservedGeneration = s.store.Generation
	for i := range s.status.Conditions {
		s.status.Conditions[i].ObservedGeneration = s.store.Generation
	}
	r.Metrics.observeStatus(s.store, &s.status)
	if equality.Semantic.DeepEqual(s.store.Status, s.status) {
		return nil
	}
	before := s.store.DeepCopy()
	s.store.Status = s.status
	// Only against the status the transitions were worked out from: a
	// cached store older than our last write would otherwise emit its
	// events a second time.
	patch := client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})
	if err := r.Client.Status().Patch(ctx, s.store, patch); err != nil {
		if apierrors.IsConflict(err) {
			s.statusStale = true // done again once the cache has caught up
			return nil
		}
		if client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("writing status: %w", err)
		}
		return nil
	}
	r.recordTransitions(s.store, &before.Status, &s.status)
	r.awaitCachedStore(ctx, client.ObjectKeyFromObject(s.store), before.ResourceVersion)
	return nil
}

func ctrlLog(ctx context.Context) logr.Logger { return log.FromContext(ctx) }
