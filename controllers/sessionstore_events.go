package controllers

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// recordTransitions emits an event for each change between the status the
// API server holds and the one about to be written.
func (r *sessionStoreReconciler) recordTransitions(store *v1.SessionStore, before, after *v1.SessionStoreStatus) {
	if r.Recorder == nil {
		return
	}
	was := func(t string) *metav1.Condition { return meta.FindStatusCondition(before.Conditions, t) }
	now := func(t string) *metav1.Condition { return meta.FindStatusCondition(after.Conditions, t) }

	if n := now(v1.ConditionStoreReachable); n != nil {
		w := was(v1.ConditionStoreReachable)
		switch {
		case n.Status == metav1.ConditionFalse && (w == nil || w.Status != metav1.ConditionFalse):
			r.Recorder.Eventf(store, nil, corev1.EventTypeWarning, v1.EventStoreUnreachable, "Probe", "%s: %s", n.Reason, n.Message)
		case n.Status == metav1.ConditionTrue && w != nil && w.Status == metav1.ConditionFalse:
			r.Recorder.Eventf(store, nil, corev1.EventTypeNormal, v1.EventStoreReachable, "Probe", "reachable again: %s", n.Message)
		}
	}
	if n := now(v1.ConditionSchemaReady); n != nil && n.Reason == v1.ReasonSchemaCreated {
		if w := was(v1.ConditionSchemaReady); w == nil || w.Reason != v1.ReasonSchemaCreated {
			r.Recorder.Eventf(store, nil, corev1.EventTypeNormal, v1.EventSchemaCreated, "EnsureSchema", "%s", n.Message)
		}
	}
	if res := after.Cleanup.LastResult; res != nil && !res.Succeeded {
		if prev := before.Cleanup.LastResult; prev == nil || prev.JobName != res.JobName {
			r.Recorder.Eventf(store, nil, corev1.EventTypeWarning, v1.EventCleanupFailed, "Cleanup", "Job %s: %s", res.JobName, res.Message)
		}
	}
	if n := now(v1.ConditionConnectionSecretReady); n != nil && n.Reason == v1.ReasonSecretConflict {
		if w := was(v1.ConditionConnectionSecretReady); w == nil || w.Reason != v1.ReasonSecretConflict {
			r.Recorder.Eventf(store, nil, corev1.EventTypeWarning, v1.EventSecretConflict, "WriteSecret", "%s", n.Message)
		}
	}
}
