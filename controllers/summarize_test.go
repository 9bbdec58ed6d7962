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
		{ConditionConnectionSecretReady, ReasonSecretReady, metav1.ConditionTrue},
		{ConditionStoreReachable, ReasonReachable, metav1.ConditionTrue},
		{ConditionSchemaReady, ReasonSchemaPresent, metav1.ConditionTrue},
		{ConditionCleanupScheduled, ReasonScheduled, metav1.ConditionTrue},
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
		{"all true", allGood, nil, metav1.ConditionTrue, ReasonReady, false, false},
		{"unreachable", with(cond{ConditionStoreReachable, "ConnectionRefused", metav1.ConditionFalse}), nil,
			metav1.ConditionFalse, "ConnectionRefused", false, false},
		{"index pending is fine", with(cond{ConditionSchemaReady, ReasonSchemaPending, metav1.ConditionFalse}), nil,
			metav1.ConditionTrue, ReasonReady, false, false},
		{"native expiry is fine", with(cond{ConditionCleanupScheduled, ReasonNativeExpiry, metav1.ConditionFalse}), nil,
			metav1.ConditionTrue, ReasonReady, false, false},
		{"conflict stalls", with(cond{ConditionConnectionSecretReady, ReasonSecretConflict, metav1.ConditionFalse}), nil,
			metav1.ConditionFalse, ReasonSecretConflict, true, false},
		{"missing Secret waits", with(cond{ConditionConnectionSecretReady, ReasonSecretNotFound, metav1.ConditionFalse}), nil,
			metav1.ConditionFalse, ReasonSecretNotFound, false, false},
		{"unknown condition", allGood[:3], nil, metav1.ConditionFalse, ReasonNotReady, false, false},
		{"failed reconcile keeps Ready", append(allGood, cond{ConditionReady, ReasonReady, metav1.ConditionTrue}),
			errors.New("the API server is away"), metav1.ConditionTrue, ReasonReady, false, true},
		{"failed first reconcile", nil, errors.New("the API server is away"),
			metav1.ConditionUnknown, ReasonReconcileError, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &reconcileScope{store: &v1.SessionStore{ObjectMeta: metav1.ObjectMeta{Generation: 2}}}
			for _, c := range tc.conds {
				setCondition(s, c.t, c.status, c.reason, "m")
			}
			summarizeReady(s, tc.err)
			ready := meta.FindStatusCondition(s.status.Conditions, ConditionReady)
			if ready == nil || ready.Status != tc.ready || ready.Reason != tc.reason {
				t.Fatalf("Ready: %+v, want %s/%s", ready, tc.ready, tc.reason)
			}
			if got := meta.IsStatusConditionTrue(s.status.Conditions, ConditionStalled); got != tc.stalled {
				t.Errorf("Stalled: %v, want %v", got, tc.stalled)
			}
			if got := meta.IsStatusConditionTrue(s.status.Conditions, ConditionReconciling); got != tc.reconciling {
				t.Errorf("Reconciling: %v, want %v", got, tc.reconciling)
			}
		})
	}
}
