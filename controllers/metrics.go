package controllers

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

var storeLabels = []string{"namespace", "name", "backend"}

// storeMetrics are the operator's Prometheus series, one set per SessionStore,
// served on the manager's metrics endpoint.
type storeMetrics struct {
	ready        *prometheus.GaugeVec
	reachable    *prometheus.GaugeVec
	lastSuccess  *prometheus.GaugeVec
	lastDeleted  *prometheus.GaugeVec
	runs         *prometheus.CounterVec
	probeLatency *prometheus.HistogramVec
	startedAt    time.Time
	mu           sync.Mutex
	// lastCounted is the Job of each store's last counted run: a store
	// reports only its newest run, so this is all that must be remembered.
	lastCounted map[types.NamespacedName]types.UID
}

// newStoreMetrics makes the series and registers them with reg.
func newStoreMetrics(reg prometheus.Registerer) *storeMetrics {
	m := &storeMetrics{
		ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sessionstore_ready", Help: "1 when the SessionStore is Ready, else 0."}, storeLabels),
		reachable: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sessionstore_reachable", Help: "1 when the store answered its last probe (or cleanup run, for filesystem), else 0."}, storeLabels),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sessionstore_last_successful_cleanup_timestamp_seconds", Help: "Unix time the last successful cleanup finished."}, storeLabels),
		lastDeleted: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sessionstore_last_cleanup_deleted_sessions", Help: "Sessions the last finished cleanup run deleted."}, storeLabels),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionstore_cleanup_runs_total", Help: "Cleanup runs seen to finish, by result (succeeded, failed, deadline_exceeded)."},
			append(append([]string{}, storeLabels...), "result")),
		probeLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sessionstore_probe_duration_seconds", Help: "How long probes of the store took.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, storeLabels),
		startedAt:   time.Now(),
		lastCounted: map[types.NamespacedName]types.UID{},
	}
	reg.MustRegister(m.ready, m.reachable, m.lastSuccess, m.lastDeleted, m.runs, m.probeLatency)
	return m
}

func labelsOf(store *v1.SessionStore) prometheus.Labels {
	return prometheus.Labels{"namespace": store.Namespace, "name": store.Name, "backend": string(store.Spec.Backend)}
}

// observeStatus sets the gauges from a store's status.
func (m *storeMetrics) observeStatus(store *v1.SessionStore, status *v1.SessionStoreStatus) {
	if m == nil {
		return
	}
	l := labelsOf(store)
	m.ready.With(l).Set(boolGauge(meta.IsStatusConditionTrue(status.Conditions, v1.ConditionReady)))
	m.reachable.With(l).Set(boolGauge(meta.IsStatusConditionTrue(status.Conditions, v1.ConditionStoreReachable)))
	if t := status.Cleanup.LastSuccessfulTime; t != nil {
		m.lastSuccess.With(l).Set(float64(t.Unix()))
	}
	if r := status.Cleanup.LastResult; r != nil {
		m.lastDeleted.With(l).Set(float64(r.Deleted))
	}
}

// observeRun counts a finished run once, by its outcome (succeeded, failed,
// deadline_exceeded). Runs that finished before the manager started were
// counted by its predecessor.
func (m *storeMetrics) observeRun(store *v1.SessionStore, job *batchv1.Job, result *v1.CleanupResult, outcome string) {
	if m == nil || result.CompletionTime == nil || result.CompletionTime.Time.Before(m.startedAt.Add(-time.Second)) {
		return
	}
	key := types.NamespacedName{Namespace: store.Namespace, Name: store.Name}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lastCounted[key] == job.UID {
		return
	}
	m.lastCounted[key] = job.UID
	l := labelsOf(store)
	l["result"] = outcome
	m.runs.With(l).Inc()
}

// ObserveProbe records a probe's latency (prober.Recorder).
func (m *storeMetrics) ObserveProbe(store *v1.SessionStore, latency time.Duration) {
	if m == nil {
		return
	}
	m.probeLatency.With(labelsOf(store)).Observe(latency.Seconds())
}

// forget drops every series of a deleted store.
func (m *storeMetrics) forget(key types.NamespacedName) {
	if m == nil {
		return
	}
	m.mu.Lock()
	delete(m.lastCounted, key)
	m.mu.Unlock()
	l := prometheus.Labels{"namespace": key.Namespace, "name": key.Name}
	m.ready.DeletePartialMatch(l)
	m.reachable.DeletePartialMatch(l)
	m.lastSuccess.DeletePartialMatch(l)
	m.lastDeleted.DeletePartialMatch(l)
	m.runs.DeletePartialMatch(l)
	m.ForgetProbes(key)
}

// ForgetProbes drops a store's probe series, for a store the prober no
// longer probes (prober.Recorder).
func (m *storeMetrics) ForgetProbes(key types.NamespacedName) {
	if m == nil {
		return
	}
	m.probeLatency.DeletePartialMatch(prometheus.Labels{"namespace": key.Namespace, "name": key.Name})
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
