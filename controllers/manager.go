package controllers

import (
	"context"
	"fmt"

	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/metadata"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/sessionstore/sessionstore-operator/internal/prober"
	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

// managedSelector selects the objects the operator labelled as its own.
var managedSelector = labels.SelectorFromSet(labels.Set{specs.ManagedByLabel: specs.ManagedByValue})

// CacheOptions configures the manager's cache so that its memory does not
// grow with unrelated objects: of Secrets and CronJobs it holds only those
// the operator labelled. Credential Secrets are read from the API server
// when needed instead. namespaces empty means all.
func CacheOptions(namespaces []string) cache.Options {
	opts := cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			// Of what it applies, the operator reads back its own field
			// manager's entry (applyIfDrifted compares what it owns).
			&corev1.Secret{}:   {Label: managedSelector, Transform: keepOwnManagedFields},
			&batchv1.CronJob{}: {Label: managedSelector, Transform: keepOwnManagedFields},
			// Jobs and Pods of cleanup runs carry the CronJob template's labels.
			&batchv1.Job{}: {Label: managedSelector},
			&corev1.Pod{}:  {Label: managedSelector},
		},
	}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}

// keepOwnManagedFields drops the managedFields entries of every manager but
// the operator's own apply, which client-go's Extract functions read: the
// others are of no use here and would only cost memory. That one is kept
// shared between objects (fieldset_share.go).
func keepOwnManagedFields(in any) (any, error) {
	obj, err := meta.Accessor(in)
	if err != nil {
		return in, nil // a tombstone: nothing to trim
	}
	var own []metav1.ManagedFieldsEntry
	for _, entry := range obj.GetManagedFields() {
		if entry.Manager == specs.FieldManager && entry.Operation == metav1.ManagedFieldsOperationApply && entry.Subresource == "" {
			shareFieldSet(obj, entry.FieldsV1)
			own = append(own, entry)
		}
	}
	obj.SetManagedFields(own)
	return in, nil
}

// LeaderElectionID names the Lease the manager's replicas elect a leader with.
const LeaderElectionID = "3c1e5d7a.sessionstore.dev"

// The probe settings a zero Options field, and the manager's flags, take.
const (
	DefaultProbeInterval    = 5 * time.Minute
	DefaultProbeTimeout     = 5 * time.Second
	DefaultProbeConcurrency = 4
	defaultProbeMinBackoff  = 5 * time.Second
	// Enough reconciles at once to keep a 2-core API server busy; more only
	// queue there.
	DefaultMaxConcurrentReconciles = 16
)

// Options are the controller's settings from the manager's flags.
type Options struct {
	// CleanupImage is the image cleanup CronJobs run: the operator's own.
	CleanupImage string
	// Namespaces to watch; empty means all.
	Namespaces []string
	// ProbeInterval is the period of probes of a reachable store.
	ProbeInterval time.Duration
	// ProbeTimeout bounds one probe.
	ProbeTimeout time.Duration
	// ProbeConcurrency is how many probes run at once.
	ProbeConcurrency int
	// ProbeMinBackoff is the first retry delay of an unreachable store.
	ProbeMinBackoff time.Duration
	// MaxConcurrentReconciles is how many stores are reconciled at once.
	MaxConcurrentReconciles int
	// MetricsRegistry takes the per-store series; nil means the manager's
	// metrics endpoint. A second manager in one process needs its own.
	MetricsRegistry prometheus.Registerer
	// ClusterPolicies turns ClusterSessionCleanupPolicies and their gate on.
	// main.go sets it when all namespaces are watched: a namespaced install
	// cannot read cluster-scoped policies, and its stores run as before.
	ClusterPolicies bool
	// Clock is the time the policies' windows and deadlines are read in;
	// nil is the real clock.
	Clock clock.Clock
}

// Setup adds the SessionStore controller, its prober and, with
// ClusterPolicies, the cleanup gate to mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	_, err := setup(ctx, mgr, opts)
	return err
}

// setup is Setup, returning the reconciler for the tests to look into.
func setup(ctx context.Context, mgr ctrl.Manager, opts Options) (*sessionStoreReconciler, error) {
	if opts.CleanupImage == "" {
		return nil, fmt.Errorf("the cleanup image is not set")
	}
	secretMeta, err := metadata.NewForConfig(mgr.GetConfig())
	if err != nil {
		return nil, fmt.Errorf("creating the Secret metadata client: %w", err)
	}
	opts.fillDefaults()
	// go-redis logs each failed dial to stderr by itself; the probe reports
	// the same failure once, as a condition.
	redis.SetLogger(discardRedisLog{})
	metrics := newStoreMetrics(opts.MetricsRegistry)
	storeProber := prober.New(opts.ProbeInterval, opts.ProbeTimeout, opts.ProbeMinBackoff, opts.ProbeConcurrency)
	storeProber.Metrics = metrics
	r := &sessionStoreReconciler{
		Prober:                  storeProber,
		Metrics:                 metrics,
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Scheme:                  mgr.GetScheme(),
		Recorder:                mgr.GetEventRecorder("sessionstore-controller"),
		SecretMetadata:          secretMeta,
		Namespaces:              opts.Namespaces,
		MaxConcurrentReconciles: opts.MaxConcurrentReconciles,
		CleanupImage:            opts.CleanupImage,
		ClusterPolicies:         opts.ClusterPolicies,
		Clock:                   opts.Clock,
	}
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		return nil, err
	}
	if !opts.ClusterPolicies {
		return r, nil
	}
	gate := &cleanupGate{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("sessionstore-cleanup-gate"), Clock: opts.Clock}
	return r, gate.SetupWithManager(mgr)
}

// fillDefaults gives each zero setting its default.
func (o *Options) fillDefaults() {
	if o.MaxConcurrentReconciles <= 0 {
		o.MaxConcurrentReconciles = DefaultMaxConcurrentReconciles
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = DefaultProbeInterval
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = DefaultProbeTimeout
	}
	if o.ProbeConcurrency <= 0 {
		o.ProbeConcurrency = DefaultProbeConcurrency
	}
	if o.ProbeMinBackoff <= 0 {
		o.ProbeMinBackoff = defaultProbeMinBackoff
	}
	if o.MetricsRegistry == nil {
		o.MetricsRegistry = ctrlmetrics.Registry
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
}

type discardRedisLog struct{}

func (discardRedisLog) Printf(context.Context, string, ...any) {}
