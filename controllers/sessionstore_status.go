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

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// Condition types. Tools alert on them: they are stable.
const (
	ConditionReady                 = "Ready"
	ConditionConnectionSecretReady = "ConnectionSecretReady"
	ConditionCleanupScheduled      = "CleanupScheduled"
	ConditionStoreReachable        = "StoreReachable"
	ConditionSchemaReady           = "SchemaReady"
	ConditionLastCleanupSucceeded  = "LastCleanupSucceeded"
	// ConditionReconciling is True while the last reconcile failed on an
	// API call and is being retried; ConditionStalled is True while Ready is
	// False for a reason only a person can fix. Both are kstatus's
	// abnormal-true conditions (read by Flux, kubectl wait, Argo CD).
	ConditionReconciling = "Reconciling"
	ConditionStalled     = "Stalled"
)

// Condition reasons, CamelCase and stable.
const (
	ReasonReady                    = "Ready"
	ReasonNotReady                 = "NotReady"
	ReasonReconcileError           = "ReconcileError"
	ReasonSecretReady              = "SecretReady"
	ReasonSecretNotFound           = "SecretNotFound"
	ReasonSecretKeyMissing         = "SecretKeyMissing"
	ReasonInvalidSecretValue       = "InvalidSecretValue"
	ReasonSecretConflict           = "SecretConflict"
	ReasonApplyFailed              = "ApplyFailed"
	ReasonScheduled                = "Scheduled"
	ReasonSuspended                = "Suspended"
	ReasonNativeExpiry             = "NativeExpiry"
	ReasonInvalidSchedule          = "InvalidSchedule"
	ReasonConnectionSecretNotReady = "ConnectionSecretNotReady"
	ReasonCronJobConflict          = "CronJobConflict"

	// StoreReachable. Probe failures use the store error's kind as reason
	// (ConnectionRefused, AuthenticationFailed, Timeout, DNSError,
	// TLSError, TableMissing, StoreError).
	ReasonReachable          = "Reachable"
	ReasonProbing            = "Probing"
	ReasonInvalidConfig      = "InvalidConfig"
	ReasonTableMissing       = "TableMissing"
	ReasonAwaitingCleanupRun = "AwaitingCleanupRun"
	ReasonCleanupRunReached  = "CleanupRunReachedStore"

	// SchemaReady.
	ReasonSchemaPresent  = "SchemaPresent"
	ReasonSchemaCreated  = "SchemaCreated"
	ReasonTTLUnsupported = "TTLUnsupported"
	// ReasonSchemaPending: the table is there, and the expiry index asked
	// for is missing or being built; a cleanup run builds it, the manager
	// never does. The store works meanwhile.
	ReasonSchemaPending = "SchemaPending"
	ReasonNotNeeded     = "NotNeeded"

	// LastCleanupSucceeded.
	ReasonSucceeded        = "Succeeded"
	ReasonFailed           = "Failed"
	ReasonDeadlineExceeded = "DeadlineExceeded"
	ReasonMissedSchedule   = "MissedSchedule"
	ReasonNotRunYet        = "NotRunYet"
	ReasonRunning          = "Running"
)

// readinessConditions are summarised by Ready, in the order their problems
// are named.
var readinessConditions = []string{
	ConditionConnectionSecretReady, ConditionStoreReachable, ConditionSchemaReady,
	ConditionCleanupScheduled, ConditionLastCleanupSucceeded,
}

// fineReasons lists reasons for which a condition that is not True is not a
// problem for Ready.
var fineReasons = map[string]bool{
	ReasonNativeExpiry: true, ReasonSuspended: true, ReasonAwaitingCleanupRun: true,
	ReasonNotRunYet: true, ReasonRunning: true, ReasonSchemaPending: true,
}

// stallReasons are the reasons of a not-Ready store that the operator cannot
// fix by retrying: a spec, a Secret or a store needs a person.
var stallReasons = map[string]bool{
	ReasonInvalidSchedule: true, ReasonInvalidConfig: true, ReasonInvalidSecretValue: true,
	ReasonSecretConflict: true, ReasonCronJobConflict: true, ReasonApplyFailed: true,
	string(sessionstore.ErrTableMismatch): true, string(sessionstore.ErrClockSkew): true,
}

// optionalConditions may be absent without making the store unready.
var optionalConditions = map[string]bool{ConditionLastCleanupSucceeded: true}

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
		setCondition(s, ConditionReconciling, metav1.ConditionTrue, ReasonReconcileError,
			truncate("retrying with backoff: "+reconcileErr.Error(), 1024))
		return
	}
	meta.RemoveStatusCondition(&s.status.Conditions, ConditionReconciling)
	status, reason, message := readiness(s)
	setCondition(s, ConditionReady, status, reason, message)
	if status == metav1.ConditionFalse && stallReasons[reason] {
		setCondition(s, ConditionStalled, metav1.ConditionTrue, reason, message)
	} else {
		meta.RemoveStatusCondition(&s.status.Conditions, ConditionStalled)
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
			return metav1.ConditionFalse, ReasonNotReady, condType + " is not known yet"
		}
		if c.Status != metav1.ConditionTrue && !fineReasons[c.Reason] {
			return metav1.ConditionFalse, c.Reason, fmt.Sprintf("%s: %s", condType, c.Message)
		}
	}
	return metav1.ConditionTrue, ReasonReady, "the session store is ready for apps"
}

// keepReady leaves Ready as the API server holds it, or Unknown when it was
// never known.
func keepReady(s *reconcileScope) {
	if meta.FindStatusCondition(s.status.Conditions, ConditionReady) != nil {
		return
	}
	setCondition(s, ConditionReady, metav1.ConditionUnknown, ReasonReconcileError,
		"not known yet: the first reconcile failed and is retried")
}

// writeStatus writes the status built by the phases, once, and only when it
// differs from what the API server holds: a reconcile with nothing to do
// makes no write at all.
func (r *SessionStoreReconciler) writeStatus(ctx context.Context, s *reconcileScope, reconcileErr error) error {
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
