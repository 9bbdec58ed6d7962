package controllers

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// Event reasons: one event per change of state, never one per reconcile.
const (
	EventStoreUnreachable = "StoreUnreachable"
	EventStoreReachable   = "StoreReachable"
	EventSchemaCreated    = "SchemaCreated"
	EventCleanupFailed    = "CleanupFailed"
	EventSecretConflict   = "SecretConflict"
)

// recordTransitions emits an event for each change between the status the
// API server holds and the one about to be written.
func (r *SessionStoreReconciler) recordTransitions(store *v1.SessionStore, before, after *v1.SessionStoreStatus) {
	if r.Recorder == nil {
		return
	}
	was := func(t string) *metav1.Condition { return meta.FindStatusCondition(before.Conditions, t) }
	now := func(t string) *metav1.Condition { return meta.FindStatusCondition(after.Conditions, t) }

	if n := now(ConditionStoreReachable); n != nil {
		w := was(ConditionStoreReachable)
		switch {
		case n.Status == metav1.ConditionFalse && (w == nil || w.Status != metav1.ConditionFalse):
			r.Recorder.Eventf(store, nil, corev1.EventTypeWarning, EventStoreUnreachable, "Probe", "%s: %s", n.Reason, n.Message)
		case n.Status == metav1.ConditionTrue && w != nil && w.Status == metav1.ConditionFalse:
			r.Recorder.Eventf(store, nil, corev1.EventTypeNormal, EventStoreReachable, "Probe", "reachable again: %s", n.Message)
		}
	}
	if n := now(ConditionSchemaReady); n != nil && n.Reason == ReasonSchemaCreated {
		if w := was(ConditionSchemaReady); w == nil || w.Reason != ReasonSchemaCreated {
			r.Recorder.Eventf(store, nil, corev1.EventTypeNormal, EventSchemaCreated, "EnsureSchema", "%s", n.Message)
		}
	}
	if res := after.Cleanup.LastResult; res != nil && !res.Succeeded {
		if prev := before.Cleanup.LastResult; prev == nil || prev.JobName != res.JobName {
			r.Recorder.Eventf(store, nil, corev1.EventTypeWarning, EventCleanupFailed, "Cleanup", "Job %s: %s", res.JobName, res.Message)
		}
	}
	if n := now(ConditionConnectionSecretReady); n != nil && n.Reason == ReasonSecretConflict {
		if w := was(ConditionConnectionSecretReady); w == nil || w.Reason != ReasonSecretConflict {
			r.Recorder.Eventf(store, nil, corev1.EventTypeWarning, EventSecretConflict, "WriteSecret", "%s", n.Message)
		}
	}
}
