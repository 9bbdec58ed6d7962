package controllers

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/policy"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

// Policies are read from the cache; the gate writes their status.
// +kubebuilder:rbac:groups=sessionstore.dev,resources=clustersessioncleanuppolicies,verbs=list;watch
// Namespaces' labels, for policies' namespaceSelector, from the cache.
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=list;watch

// governCleanup finds the policy governing the store's cleanup, if any, and
// what it makes of the store's CronJob (s.governance) and status. Without a
// governing policy (or in namespaced mode) nothing changes from before
// policies existed.
func (r *sessionStoreReconciler) governCleanup(ctx context.Context, s *reconcileScope) error {
	st := &s.status.Cleanup
	st.Policy, st.Server, st.NextRunTime, st.WindowState = "", "", nil, ""
	if !r.ClusterPolicies || specs.HasNativeExpiry(s.store.Spec.Backend) {
		return nil
	}
	p, err := r.governingPolicy(ctx, s.store)
	if p == nil || err != nil {
		return err
	}
	now := r.now()
	key := policy.ServerKey(s.store, s.podEnv[sessionstore.EnvURL])
	if key == "" {
		// Address not known yet (its Secret unread): counted on its own.
		key = "store:" + s.store.Namespace + "/" + s.store.Name
	}
	windowState, allowed := r.policyWindows(s, p, now)
	schedule := firstSet(s.store.Spec.Cleanup.Schedule, p.Spec.Defaults.Schedule, policy.DefaultSchedule)
	zone := firstZone(s.store.Spec.Cleanup.TimeZone, p.Spec.TimeZone)
	if allowed != nil && policy.Hashed(schedule) {
		// H is put inside the allow windows, whose clock is the policy's
		// zone: the run keeps to that clock, whatever zone the store has.
		zone = firstZone(p.Spec.TimeZone, ptr.To("UTC"))
	}
	if expanded, err := policy.ExpandH(schedule, s.store.Namespace+"/"+s.store.Name, allowed); err == nil {
		schedule = expanded
	}
	gov := &specs.Governance{
		Policy: p.Name, ServerHash: policy.ServerHash(key), Schedule: schedule,
		TimeZone:              zone,
		ActiveDeadlineSeconds: p.Spec.Defaults.ActiveDeadlineSeconds, Resources: p.Spec.Defaults.Resources,
		StartingDeadlineSeconds: p.Spec.StartingDeadlineSeconds,
	}
	s.governance = gov
	st.Policy, st.Server, st.WindowState = p.Name, key, windowState
	st.NextRunTime = scheduledNextRun(schedule, gov.TimeZone, now)
	return nil
}

// policyWindows is the policy's window state for the store's status, with
// a reconcile asked for when it changes, and the clock minutes its allow
// windows cover (nil: all).
func (r *sessionStoreReconciler) policyWindows(s *reconcileScope, p *v1.ClusterSessionCleanupPolicy, now time.Time) (string, []bool) {
	windows, err := policy.ParseWindows(&p.Spec, now)
	if err != nil {
		return v1.WindowStateInvalid, nil
	}
	state, change := windows.State(now)
	if !change.IsZero() {
		s.requeueWithin(change.Sub(now) + time.Second)
	}
	if p.Spec.Suspend {
		state = v1.WindowStateSuspended
	}
	return state, windows.AllowedClock()
}

// governingPolicy is the policy that governs store, or nil.
func (r *sessionStoreReconciler) governingPolicy(ctx context.Context, store *v1.SessionStore) (*v1.ClusterSessionCleanupPolicy, error) {
	policies := &v1.ClusterSessionCleanupPolicyList{}
	if err := r.Client.List(ctx, policies); err != nil {
		return nil, err
	}
	if len(policies.Items) == 0 {
		return nil, nil
	}
	ns := &corev1.Namespace{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: store.Namespace}, ns); err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	return policy.Select(policies.Items, store, ns.Labels), nil
}

func (r *sessionStoreReconciler) now() time.Time {
	if r.Clock != nil {
		return r.Clock.Now()
	}
	return time.Now()
}

func scheduledNextRun(schedule string, tz *string, now time.Time) *metav1.Time {
	loc, err := policy.Location(tz)
	if err != nil {
		return nil
	}
	parsed, err := specs.ParseSchedule(schedule)
	if err != nil {
		return nil
	}
	next := parsed.Next(now.In(loc))
	if next.IsZero() {
		return nil
	}
	return &metav1.Time{Time: next.UTC()}
}

func firstSet(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

func firstZone(zones ...*string) *string {
	for _, z := range zones {
		if z != nil && *z != "" {
			return z
		}
	}
	return nil
}

// storesAPolicyMayMove enqueues the stores a policy's change may move: those
// it governs now (its selector may have shrunk, or it is gone), those its
// selector matches, and every store when it is a default policy.
func (r *sessionStoreReconciler) storesAPolicyMayMove(ctx context.Context, obj client.Object) []reconcile.Request {
	p, ok := obj.(*v1.ClusterSessionCleanupPolicy)
	if !ok {
		return nil
	}
	stores := &v1.SessionStoreList{}
	if err := r.Client.List(ctx, stores); err != nil {
		ctrlLog(ctx).Error(err, "listing stores for a policy change")
		return nil
	}
	nsLabels := map[string]map[string]string{}
	var out []reconcile.Request
	for i := range stores.Items {
		st := &stores.Items[i]
		if _, seen := nsLabels[st.Namespace]; !seen {
			ns := &corev1.Namespace{}
			_ = r.Client.Get(ctx, types.NamespacedName{Name: st.Namespace}, ns) // unknown: no labels
			nsLabels[st.Namespace] = ns.Labels
		}
		if policy.IsDefault(p) || st.Status.Cleanup.Policy == p.Name || policy.Matches(p, st, nsLabels[st.Namespace]) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(st)})
		}
	}
	return out
}

// storesInNamespace enqueues the stores of a namespace whose labels changed.
func (r *sessionStoreReconciler) storesInNamespace(ctx context.Context, ns client.Object) []reconcile.Request {
	stores := &v1.SessionStoreList{}
	if err := r.Client.List(ctx, stores, client.InNamespace(ns.GetName())); err != nil {
		ctrlLog(ctx).Error(err, "listing stores for a namespace change")
		return nil
	}
	out := make([]reconcile.Request, 0, len(stores.Items))
	for _, st := range stores.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&st)})
	}
	return out
}
