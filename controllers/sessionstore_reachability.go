package controllers

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// observeStore reports whether the store answers and is prepared, from the
// prober's latest outcome; it never waits for a probe.
func (r *sessionStoreReconciler) observeStore(_ context.Context, s *reconcileScope) error {
	if s.connectionProblem != nil || s.podEnv == nil {
		reason, message := v1.ReasonConnectionSecretNotReady, "the connection settings are not known"
		if p := s.connectionProblem; p != nil {
			reason, message = p.reason, p.message
		}
		setCondition(s, v1.ConditionStoreReachable, metav1.ConditionFalse, reason, message)
		setCondition(s, v1.ConditionSchemaReady, metav1.ConditionUnknown, reason, "the store cannot be reached without its connection settings")
		// Nothing to probe with: drop the credentials the prober still holds.
		r.Prober.Forget(types.NamespacedName{Namespace: s.store.Namespace, Name: s.store.Name})
		return nil
	}
	if s.store.Spec.Backend == v1.BackendFilesystem {
		// The manager does not mount the claim: the cleanup runs tell
		// whether the directory is there (observeCleanupRuns).
		setCondition(s, v1.ConditionSchemaReady, metav1.ConditionTrue, v1.ReasonNotNeeded, "a directory needs no schema")
		setConditionIfAbsent(s, v1.ConditionStoreReachable, metav1.ConditionUnknown, v1.ReasonAwaitingCleanupRun,
			"the manager does not mount the claim; the first cleanup run will tell")
		return nil
	}
	outcome, current := r.Prober.Outcome(s.store, s.podEnv)
	if !current {
		// The prober tells us when it is done; look again anyway in case its
		// queue was full and the request must be made again.
		s.requeueWithin(2*r.Prober.Timeout + time.Second)
	}
	if outcome == nil {
		setConditionIfAbsent(s, v1.ConditionStoreReachable, metav1.ConditionUnknown, v1.ReasonProbing, "the first probe is under way")
		setConditionIfAbsent(s, v1.ConditionSchemaReady, metav1.ConditionUnknown, v1.ReasonProbing, "the first probe is under way")
		return nil
	}
	if outcome.Reachable {
		setCondition(s, v1.ConditionStoreReachable, metav1.ConditionTrue, v1.ReasonReachable, outcome.Message)
	} else {
		setCondition(s, v1.ConditionStoreReachable, metav1.ConditionFalse, outcome.Reason, outcome.Message)
	}
	cfgWantsSchema := wantsSchemaFromEnv(s.podEnv)
	switch {
	case outcome.Schema != nil && outcome.Schema.Reason == v1.ReasonSchemaPresent && createdBefore(s):
		// A new manager (a restart) finds present what its predecessor
		// created: the same fact, not worth a write.
	case outcome.Schema != nil && outcome.Schema.Ready:
		setCondition(s, v1.ConditionSchemaReady, metav1.ConditionTrue, outcome.Schema.Reason, outcome.Schema.Message)
	case outcome.Schema != nil:
		setCondition(s, v1.ConditionSchemaReady, metav1.ConditionFalse, outcome.Schema.Reason, outcome.Schema.Message)
	case !cfgWantsSchema:
		setCondition(s, v1.ConditionSchemaReady, metav1.ConditionTrue, v1.ReasonNotNeeded, "nothing to prepare")
	default:
		setConditionIfAbsent(s, v1.ConditionSchemaReady, metav1.ConditionUnknown, outcome.Reason,
			"the store must be reachable before it can be prepared")
	}
	return nil
}

// createdBefore tells whether SchemaReady already says the operator
// created the schema, for this generation.
func createdBefore(s *reconcileScope) bool {
	c := meta.FindStatusCondition(s.status.Conditions, v1.ConditionSchemaReady)
	return c != nil && c.Status == metav1.ConditionTrue && c.Reason == v1.ReasonSchemaCreated &&
		c.ObservedGeneration == s.store.Generation
}

func wantsSchemaFromEnv(env map[string]string) bool {
	cfg, err := sessionstore.ConfigFromMap(env)
	return err == nil && cfg.WantsSchema()
}
