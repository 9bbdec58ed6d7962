package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/policy"
)

// policyTotals counts, per policy, what its status shows.
type policyTotals struct {
	stores, running, waiting, skippedLastDay int32
}

// writePolicyStatus writes each policy's totals, window state and
// conditions when they differ from what this gate last wrote.
func (g *cleanupGate) writePolicyStatus(ctx context.Context, views map[string]*policyView, runs governedRuns, d policy.Decision, now time.Time) error {
	totals, err := g.countTotals(ctx, runs, d, now)
	if err != nil {
		return err
	}
	var errs []error
	for name, v := range views {
		want := desiredPolicyStatus(v, totals[name], now)
		g.mu.Lock()
		last, known := g.written[name]
		g.mu.Unlock()
		if known && equality.Semantic.DeepEqual(last, want) {
			continue
		}
		if !known && policyStatusEqual(v.policy.Status, want) {
			g.rememberStatus(name, want)
			continue
		}
		before := v.policy.DeepCopy()
		v.policy.Status = want
		patch, err := policyStatusPatch(before, v.policy)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := g.Client.Status().Patch(ctx, v.policy, patch); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("writing the status of policy %s: %w", name, err))
			continue
		}
		g.rememberStatus(name, want)
	}
	return errors.Join(errs...)
}

// policyStatusPatch is the merge patch from before to after, with the
// counters always in it: a merge patch leaves out a field that was 0 and
// still is, so a policy's first status would lack its zeros and kubectl
// would show <none> under RUNNING and WAITING.
func policyStatusPatch(before, after *v1.ClusterSessionCleanupPolicy) (client.Patch, error) {
	data, err := client.MergeFrom(before).Data(after)
	if err != nil {
		return nil, err
	}
	patch := map[string]any{}
	if err := json.Unmarshal(data, &patch); err != nil {
		return nil, err
	}
	status, _ := patch["status"].(map[string]any)
	if status == nil {
		status = map[string]any{}
		patch["status"] = status
	}
	st := after.Status
	status["stores"], status["running"], status["waiting"], status["skippedLastDay"] = st.Stores, st.Running, st.Waiting, st.SkippedLastDay
	data, err = json.Marshal(patch)
	return client.RawPatch(types.MergePatchType, data), err
}

func (g *cleanupGate) rememberStatus(name string, st v1.ClusterSessionCleanupPolicyStatus) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.written[name] = st
}

// policyStatusEqual compares statuses but for the conditions' transition
// times, which a fresh computation does not know.
func policyStatusEqual(a, b v1.ClusterSessionCleanupPolicyStatus) bool {
	a, b = *a.DeepCopy(), *b.DeepCopy()
	for _, s := range []*v1.ClusterSessionCleanupPolicyStatus{&a, &b} {
		for i := range s.Conditions {
			s.Conditions[i].LastTransitionTime = metav1.Time{}
		}
	}
	return equality.Semantic.DeepEqual(a, b)
}

// countTotals counts the stores each policy governs (from their status),
// those skipped in the last day, and the runs started and waiting after
// this pass.
func (g *cleanupGate) countTotals(ctx context.Context, runs governedRuns, d policy.Decision, now time.Time) (map[string]*policyTotals, error) {
	stores := &v1.SessionStoreList{}
	if err := g.Client.List(ctx, stores); err != nil {
		return nil, err
	}
	totals := map[string]*policyTotals{}
	of := func(name string) *policyTotals {
		if totals[name] == nil {
			totals[name] = &policyTotals{}
		}
		return totals[name]
	}
	for _, st := range stores.Items {
		c := st.Status.Cleanup
		if c.Policy == "" {
			continue
		}
		of(c.Policy).stores++
		if c.LastSkipTime != nil && now.Sub(c.LastSkipTime.Time) < 24*time.Hour {
			of(c.Policy).skippedLastDay++
		}
	}
	for _, r := range append(runs.running, d.Start...) {
		of(r.Policy).running++
	}
	for _, r := range runs.waiting {
		if _, held := d.Held[r.Namespace+"/"+r.Name]; held {
			of(r.Policy).waiting++
		}
	}
	return totals, nil
}

func desiredPolicyStatus(v *policyView, t *policyTotals, now time.Time) v1.ClusterSessionCleanupPolicyStatus {
	if t == nil {
		t = &policyTotals{}
	}
	st := v1.ClusterSessionCleanupPolicyStatus{
		ObservedGeneration: v.policy.Generation,
		Conditions:         append([]metav1.Condition(nil), v.policy.Status.Conditions...),
		Stores:             t.stores, Running: t.running, Waiting: t.waiting, SkippedLastDay: t.skippedLastDay,
		WindowState: v.windowState,
	}
	if !v.nextChange.IsZero() {
		st.NextWindowChange = &metav1.Time{Time: v.nextChange.UTC().Truncate(time.Second)}
	}
	cond := metav1.Condition{Type: v1.ConditionWindowsValid, Status: metav1.ConditionTrue, Reason: v1.ReasonValid,
		Message: "every window can be read", ObservedGeneration: v.policy.Generation}
	if v.invalid != nil {
		cond.Status, cond.Reason = metav1.ConditionFalse, v1.ReasonInvalidWindow
		cond.Message = fmt.Sprintf("%v; no run of this policy starts until it is fixed", v.invalid)
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	return st
}
