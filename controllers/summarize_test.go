package controllers

import (
	"errors"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// summarizeReady, case by case: Ready names the first problem, fine reasons
// are no problem, a person-only problem stalls, and a failed reconcile
// leaves Ready as it was.
func TestSummarizeReady(t *testing.T) {
	type cond struct {
		t, reason string
		status    metav1.ConditionStatus
	}
	allGood := []cond{
		{v1.ConditionConnectionSecretReady, v1.ReasonSecretReady, metav1.ConditionTrue},
		{v1.ConditionStoreReachable, v1.ReasonReachable, metav1.ConditionTrue},
		{v1.ConditionSchemaReady, v1.ReasonSchemaPresent, metav1.ConditionTrue},
		{v1.ConditionCleanupScheduled, v1.ReasonScheduled, metav1.ConditionTrue},
	}
	with := func(c cond) []cond {
		out := []cond{}
		for _, g := range allGood {
			if g.t == c.t {
				g = c
			}
			out = append(out, g)
		}
		return out
	}
	cases := []struct {
		name                 string
		conds                []cond
		err                  error
		ready                metav1.ConditionStatus
		reason               string
		stalled, reconciling bool
	}{
		{"all true", allGood, nil, metav1.ConditionTrue, v1.ReasonReady, false, false},
		{"unreachable", with(cond{v1.ConditionStoreReachable, "ConnectionRefused", metav1.ConditionFalse}), nil,
			metav1.ConditionFalse, "ConnectionRefused", false, false},
		{"index pending is fine", with(cond{v1.ConditionSchemaReady, v1.ReasonSchemaPending, metav1.ConditionFalse}), nil,
			metav1.ConditionTrue, v1.ReasonReady, false, false},
		{"native expiry is fine", with(cond{v1.ConditionCleanupScheduled, v1.ReasonNativeExpiry, metav1.ConditionFalse}), nil,
			metav1.ConditionTrue, v1.ReasonReady, false, false},
		{"conflict stalls", with(cond{v1.ConditionConnectionSecretReady, v1.ReasonSecretConflict, metav1.ConditionFalse}), nil,
			metav1.ConditionFalse, v1.ReasonSecretConflict, true, false},
		{"missing Secret waits", with(cond{v1.ConditionConnectionSecretReady, v1.ReasonSecretNotFound, metav1.ConditionFalse}), nil,
			metav1.ConditionFalse, v1.ReasonSecretNotFound, false, false},
		{"unknown condition", allGood[:3], nil, metav1.ConditionFalse, v1.ReasonNotReady, false, false},
		{"failed reconcile keeps Ready", append(allGood, cond{v1.ConditionReady, v1.ReasonReady, metav1.ConditionTrue}),
			errors.New("the API server is away"), metav1.ConditionTrue, v1.ReasonReady, false, true},
		{"failed first reconcile", nil, errors.New("the API server is away"),
			metav1.ConditionUnknown, v1.ReasonReconcileError, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &reconcileScope{store: &v1.SessionStore{ObjectMeta: metav1.ObjectMeta{Generation: 2}}}
			for _, c := range tc.conds {
				setCondition(s, c.t, c.status, c.reason, "m")
			}
			summarizeReady(s, tc.err)
			ready := meta.FindStatusCondition(s.status.Conditions, v1.ConditionReady)
			if ready == nil || ready.Status != tc.ready || ready.Reason != tc.reason {
				t.Fatalf("Ready: %+v, want %s/%s", ready, tc.ready, tc.reason)
			}
			if got := meta.IsStatusConditionTrue(s.status.Conditions, v1.ConditionStalled); got != tc.stalled {
				t.Errorf("Stalled: %v, want %v", got, tc.stalled)
			}
			if got := meta.IsStatusConditionTrue(s.status.Conditions, v1.ConditionReconciling); got != tc.reconciling {
				t.Errorf("Reconciling: %v, want %v", got, tc.reconciling)
			}
		})
	}
}
