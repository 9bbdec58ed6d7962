// Package controllers reconciles SessionStores: for each one a connection
// Secret for apps and, for backends without native expiry, a cleanup
// CronJob, with what it sees reported in status.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/prober"
	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

// sessionStoreReconciler reconciles SessionStore objects.
type sessionStoreReconciler struct {
	// Client reads from the manager's cache (SessionStores, and only the
	// Secrets and CronJobs the operator labelled) and writes to the API server.
	Client client.Client
	// APIReader reads credential Secrets straight from the API server, so
	// they need not be cached.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  events.EventRecorder
	// SecretMetadata watches the metadata of Secrets, keeping none, to
	// learn when a referenced credential Secret changes.
	SecretMetadata metadata.Interface
	// Namespaces the manager watches; empty means all.
	Namespaces []string
	// MaxConcurrentReconciles is how many stores are reconciled at once.
	MaxConcurrentReconciles int
	// CleanupImage is the operator's own image, run by cleanup CronJobs.
	CleanupImage string
	// Prober reaches the stores, off the reconcile path.
	Prober *prober.Prober
	// Metrics are the per-store Prometheus series.
	Metrics *storeMetrics
	// ClusterPolicies: ClusterSessionCleanupPolicies govern cleanups (not in
	// namespaced mode, which cannot read cluster-scoped objects).
	ClusterPolicies bool
	// Clock tells the time of windows and next runs; nil is the real one.
	Clock clock.PassiveClock
}

// reconcileScope carries one reconcile's state between its phases.
type reconcileScope struct {
	store *v1.SessionStore
	// status is built up by the phases and written once at the end.
	status v1.SessionStoreStatus
	// connectionSecretReady tells the CronJob phase whether the Secret its
	// pods load is the operator's and current.
	connectionSecretReady bool
	// podEnv is what a cleanup pod sees (Secret data and container env),
	// credentials included: the probe uses it. Never logged or stored.
	podEnv map[string]string
	// connectionProblem says why podEnv could not be built.
	connectionProblem *secretProblem
	// requeueAfter asks for the next reconcile, when a phase waits for time.
	requeueAfter time.Duration
	// governance is what the governing cleanup policy makes of the
	// CronJob; nil when no policy governs the store.
	governance *specs.Governance
	// statusStale: the status write met a newer store than the cached one;
	// the reconcile is done again, on what the cache then holds.
	statusStale bool
	// appliedCronJob is the CronJob as this reconcile's apply left it (the
	// API server's answer), newer than the cache until its event arrives.
	appliedCronJob *batchv1.CronJob
}

// requeueWithin asks for a reconcile within d at the latest.
func (s *reconcileScope) requeueWithin(d time.Duration) {
	if d > 0 && (s.requeueAfter == 0 || d < s.requeueAfter) {
		s.requeueAfter = d
	}
}

// phase is one named step of a reconcile.
type phase struct {
	name string
	run  func(context.Context, *reconcileScope) error
}

// RBAC: only the verbs the code sends; rbac_test.go removes each rule in turn
// and shows the manager then fails. Reads through the cache need list and
// watch only (list where the API server does not stream lists to informers);
// "get" is for the few reads that go to the API server.
//
// SessionStores are read from the cache only.
// +kubebuilder:rbac:groups=sessionstore.dev,resources=sessionstores,verbs=list;watch
// Status is written with one merge patch (writeStatus).
// +kubebuilder:rbac:groups=sessionstore.dev,resources=sessionstores/status,verbs=patch
// Owner references with blockOwnerDeletion need it where the API server runs
// OwnerReferencesPermissionEnforcement (OpenShift does; the tests do).
// +kubebuilder:rbac:groups=sessionstore.dev,resources=sessionstores/finalizers,verbs=update
// Secrets: get for credential Secrets (APIReader) and for the name check of an
// uncached Secret (lookupOwned); list and watch for the labelled cache and
// the names-only metadata watch; patch is server-side apply, and create too
// because an apply that creates the object is also authorized as create;
// delete removes a connection Secret left under an old name. Never update.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;patch;delete
// CronJobs: get for lookupOwned, list and watch for the cache, patch and
// create to apply. The garbage collector deletes them with their store.
// +kubebuilder:rbac:groups=batch,resources=cronjobs,verbs=get;list;watch;create;patch
// Jobs and Pods of cleanup runs are read from the cache only.
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=list;watch
// Events (events.k8s.io, mgr.GetEventRecorder): create only. The recorder
// patches an event it has seen for the same version of the store (a
// series); events are recorded only after the status write they describe,
// against the version it made, so one never comes twice for a version.
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create

// Reconcile brings one SessionStore's owned objects to what its spec says and
// reports what it found. Errors that only a change of spec or of a referenced
// Secret can fix are conditions, not returned errors, so they do not retry in
// a loop; the watches bring the store back when something changes.
func (r *sessionStoreReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	store := &v1.SessionStore{}
	if err := r.Client.Get(ctx, req.NamespacedName, store); err != nil {
		if apierrors.IsNotFound(err) {
			r.Prober.Forget(req.NamespacedName)
			r.Metrics.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !store.DeletionTimestamp.IsZero() {
		// Owner references let the garbage collector remove what we own;
		// while others' finalizers hold the store, it is no longer probed.
		r.Prober.Forget(req.NamespacedName)
		r.Metrics.forget(req.NamespacedName)
		return ctrl.Result{}, nil
	}

	scope := &reconcileScope{store: store, status: *store.Status.DeepCopy()}
	phases := []phase{
		{"connection Secret", r.reconcileConnectionSecret},
		{"stale connection Secrets", r.removeStaleConnectionSecrets},
		{"store reachability", r.observeStore},
		{"cleanup policy", r.governCleanup},
		{"cleanup CronJob", r.reconcileCleanupCronJob},
		{"run-now request", r.runNow},
		{"cleanup runs", r.observeCleanupRuns},
	}
	var errs []error
	for _, p := range phases {
		if err := p.run(ctx, scope); err != nil {
			log.FromContext(ctx).Error(err, "reconcile phase failed", "phase", p.name)
			errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
		}
	}
	if err := r.writeStatus(ctx, scope, errors.Join(errs...)); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		// The error's backoff decides when to retry; a RequeueAfter beside
		// it would be ignored.
		return ctrl.Result{}, err
	}
	if scope.statusStale {
		return ctrl.Result{RequeueAfter: staleStatusRetry}, nil
	}
	return ctrl.Result{RequeueAfter: scope.requeueAfter}, nil
}

// staleStatusRetry is how soon a reconcile whose cached store was older
// than the API server's is done again: the cache catches up in milliseconds.
const staleStatusRetry = 200 * time.Millisecond

// SetupWithManager registers the controller and its watches.
func (r *sessionStoreReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if err := indexReferencedSecrets(ctx, mgr.GetFieldIndexer()); err != nil {
		return err
	}
	if err := r.Prober.SetupWithManager(mgr); err != nil {
		return err
	}
	byStoreLabel := handler.EnqueueRequestsFromMapFunc(storeFromLabel)
	b := ctrl.NewControllerManagedBy(mgr)
	if r.ClusterPolicies {
		// A policy's status changes with every run: only its spec and
		// annotations (the default-policy one) move stores.
		b = b.Watches(&v1.ClusterSessionCleanupPolicy{}, handler.EnqueueRequestsFromMapFunc(r.storesAPolicyMayMove),
			builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
			Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.storesInNamespace),
				builder.WithPredicates(predicate.LabelChangedPredicate{}))
	}
	return b.
		For(&v1.SessionStore{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{},
			predicate.LabelChangedPredicate{}))).
		Owns(&corev1.Secret{}).
		Owns(&batchv1.CronJob{}).
		WatchesRawSource(r.referencedSecretSource()).
		WatchesRawSource(r.Prober.Changes()).
		// The CronJob owns its Jobs, and Jobs their Pods: find the store
		// by the label the pod template carries.
		Watches(&batchv1.Job{}, byStoreLabel).
		// Of a Pod only the cleanup container's end (its report) is read;
		// its other status changes would each cost a whole reconcile.
		Watches(&corev1.Pod{}, byStoreLabel, builder.WithPredicates(predicate.NewPredicateFuncs(cleanupContainerEnded))).
		// Each reconcile mostly waits on the API server: several at once
		// keep it busy (10,000 new stores one by one took minutes).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Complete(r)
}

// cleanupContainerEnded tells whether a Pod's cleanup container has
// terminated, which is when it holds the report runReport reads.
func cleanupContainerEnded(obj client.Object) bool {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return false
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == specs.CleanupContainerName && cs.State.Terminated != nil {
			return true
		}
	}
	return false
}

// storeFromLabel maps a Job or Pod of a cleanup run to its SessionStore.
func storeFromLabel(_ context.Context, obj client.Object) []reconcile.Request {
	name := obj.GetLabels()[specs.StoreLabel]
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: name}}}
}

// ignoreNotFound returns nil for a NotFound error.
func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
