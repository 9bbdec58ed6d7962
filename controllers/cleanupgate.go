package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/policy"
	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

// The gate starts a governed Job by un-suspending it, and deletes one whose
// starting deadline passed; it writes the policies' status.
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=patch;delete
// +kubebuilder:rbac:groups=sessionstore.dev,resources=clustersessioncleanuppolicies/status,verbs=patch

// gateKey is the gate's one work item: every decision weighs every governed
// Job (a server's limit spans namespaces and policies), so decisions are
// made one at a time, over all of them.
var gateKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "cleanup-gate"}}

// cleanupGate un-suspends the suspended cleanup Jobs of governed stores when
// their policy allows: not suspended, in an open window, under its limits.
type cleanupGate struct {
	Client   client.Client
	Recorder events.EventRecorder
	Clock    clock.PassiveClock

	mu sync.Mutex
	// started and deleted remember the gate's own writes until the cache
	// shows them, so a reconcile on a stale cache never starts one run too
	// many nor records one skip twice.
	started, deleted map[types.UID]bool
	// written is each policy's status as last written, so that managers
	// that see different namespaces do not overwrite each other in a loop.
	written map[string]v1.ClusterSessionCleanupPolicyStatus
}

// SetupWithManager registers the gate.
func (g *cleanupGate) SetupWithManager(mgr ctrl.Manager) error {
	g.initMemory()
	toGate := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{gateKey}
	})
	governed := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetLabels()[specs.PolicyLabel] != "" })
	return ctrl.NewControllerManagedBy(mgr).
		Named("cleanupgate").
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Watches(&v1.ClusterSessionCleanupPolicy{}, toGate, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&batchv1.Job{}, toGate, builder.WithPredicates(governed)).
		Watches(&v1.SessionStore{}, toGate, builder.WithPredicates(policyCountsChanged{})).
		Complete(g)
}

// initMemory empties what the gate remembers of its own writes.
func (g *cleanupGate) initMemory() {
	g.started, g.deleted, g.written = map[types.UID]bool{}, map[types.UID]bool{}, map[string]v1.ClusterSessionCleanupPolicyStatus{}
}

// policyCountsChanged passes the store changes that move a policy's totals.
type policyCountsChanged struct{ predicate.Funcs }

func (policyCountsChanged) Update(e event.UpdateEvent) bool {
	o, n := e.ObjectOld.(*v1.SessionStore), e.ObjectNew.(*v1.SessionStore)
	return o.Status.Cleanup.Policy != n.Status.Cleanup.Policy || !o.Status.Cleanup.LastSkipTime.Equal(n.Status.Cleanup.LastSkipTime)
}

// Reconcile weighs every governed Job: deletes those whose starting deadline
// passed, starts those the gate lets through, and writes the policies' status.
func (g *cleanupGate) Reconcile(ctx context.Context, _ reconcile.Request) (ctrl.Result, error) {
	now := g.Clock.Now()
	policies := &v1.ClusterSessionCleanupPolicyList{}
	if err := g.Client.List(ctx, policies); err != nil {
		return ctrl.Result{}, err
	}
	views := policyViews(policies.Items, now)
	runs, err := g.governedRuns(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	gate := gateOf(views)
	held := gate.Admit(runs.running, runs.waiting).Held
	expired, waiting, early := runs.splitExpired(views, now)
	errs := []error{g.skip(ctx, expired, held, early)}
	decision := gate.Admit(runs.running, waiting)
	errs = append(errs, g.start(ctx, decision.Start))
	errs = append(errs, g.writePolicyStatus(ctx, views, runs, decision, now))
	if err := errors.Join(errs...); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: nextWake(views, waiting, now)}, nil
}

// policyView is a policy with what the gate makes of it now.
type policyView struct {
	policy      *v1.ClusterSessionCleanupPolicy
	windowState string
	nextChange  time.Time
	invalid     error
	// windows are the policy's parsed windows; nil when invalid.
	windows *policy.Windows
}

func policyViews(items []v1.ClusterSessionCleanupPolicy, now time.Time) map[string]*policyView {
	views := map[string]*policyView{}
	for i := range items {
		p := &items[i]
		windows, err := policy.ParseWindows(&p.Spec, now)
		v := &policyView{policy: p, windows: windows}
		switch {
		case err != nil:
			v.windowState, v.invalid = v1.WindowStateInvalid, err
		case p.Spec.Suspend:
			v.windowState, v.nextChange = windows.State(now)
			v.windowState = v1.WindowStateSuspended
		default:
			v.windowState, v.nextChange = windows.State(now)
		}
		views[p.Name] = v
	}
	return views
}

// outsideWindows tells whether a run made at created, due to start by
// deadline, came while the policy's allow windows were closed and stays
// outside them until after its deadline: then only the windows hold it, and
// waiting would only end in a skip. A run held by a deny window, a
// suspension, an invalid window or the limits (even one whose window closed
// while it waited) is not: any of those may end sooner, and it waits.
func (v *policyView) outsideWindows(created, deadline time.Time) bool {
	return v.windowState == v1.WindowStateClosed && v.windows != nil && v.windows.AllowClosedThrough(created, deadline)
}

// gateOf turns the policies into the pure gate.
func gateOf(views map[string]*policyView) policy.Gate {
	g := policy.Gate{Policies: map[string]policy.PolicyGate{}}
	for name, v := range views {
		pg := policy.PolicyGate{}
		if c := v.policy.Spec.Concurrency.MaxPerServer; c != nil {
			pg.MaxPerServer = *c
		}
		if c := v.policy.Spec.Concurrency.MaxTotal; c != nil {
			pg.MaxTotal = *c
		}
		switch v.windowState {
		case v1.WindowStateInvalid:
			pg.Closed = fmt.Sprintf("policy %s has an invalid window: %v", name, v.invalid)
		case v1.WindowStateSuspended:
			pg.Closed = fmt.Sprintf("policy %s is suspended", name)
		case v1.WindowStateDenied:
			pg.Closed = fmt.Sprintf("a deny window of policy %s is open", name)
		case v1.WindowStateClosed:
			pg.Closed = fmt.Sprintf("no allow window of policy %s is open", name)
		}
		g.Policies[name] = pg
	}
	return g
}

// nextWake is when the gate must look again without an event: a window
// opening or closing, or a waiting run's starting deadline.
func nextWake(views map[string]*policyView, waiting []policy.Run, now time.Time) time.Duration {
	var next time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, v := range views {
		earlier(v.nextChange)
	}
	for _, r := range waiting {
		if v := views[r.Policy]; v != nil {
			earlier(r.Created.Add(startingDeadline(v.policy)))
		}
	}
	if next.IsZero() {
		return 0
	}
	return max(next.Sub(now), 0) + time.Second
}

func startingDeadline(p *v1.ClusterSessionCleanupPolicy) time.Duration {
	if p.Spec.StartingDeadlineSeconds > 0 {
		return time.Duration(p.Spec.StartingDeadlineSeconds) * time.Second
	}
	return 600 * time.Second
}
