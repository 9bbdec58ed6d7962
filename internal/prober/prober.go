// Package prober reaches each SessionStore from the manager (Ping, and
// EnsureSchema where the spec asks) in a controller of its own, so that slow
// or dead stores never hold up the reconciles of the others.
package prober

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"

	// Every backend, for sessionstore.New.
	_ "github.com/sessionstore/sessionstore-operator/internal/sessionstore/backends"
)

// Prober reaches each store from the manager (Ping, and EnsureSchema where
// the spec asks) in a controller of its own, so that slow or dead stores
// never hold up the reconciles of the others. The main reconciler asks for a
// probe when it has none for the store's current settings, reads the latest
// outcome, and is told when an outcome changes.
type Prober struct {
	// Interval between probes of a reachable store.
	Interval time.Duration
	// Timeout of one probe.
	Timeout time.Duration
	// MinBackoff is the first retry delay of an unreachable store; the delay
	// grows with the time it has been down, up to Interval.
	MinBackoff time.Duration
	// Concurrency is how many probes run at once.
	Concurrency int
	// Metrics records probe latencies, and drops a forgotten store's series.
	Metrics Recorder
	// Clock times the probes and the backoff; tests step a fake one.
	Clock clock.PassiveClock

	mu       sync.Mutex
	requests map[types.NamespacedName]probeRequest
	outcomes map[types.NamespacedName]*Outcome

	probeQueue chan event.TypedGenericEvent[*v1.SessionStore]
	changed    chan event.TypedGenericEvent[*v1.SessionStore]
}

// Recorder is where probe latencies go: the manager's Prometheus series.
type Recorder interface {
	ObserveProbe(store *v1.SessionStore, latency time.Duration)
	ForgetProbes(key types.NamespacedName)
}

// probeRequest is what to probe: the pod environment of the store, as the
// cleanup would see it (credentials included, kept in memory only).
type probeRequest struct {
	store   *v1.SessionStore
	env     map[string]string
	envHash string
}

// Outcome is what the last probe of a store found.
type Outcome struct {
	// EnvHash identifies the settings probed (a hash: no credential).
	EnvHash   string
	Reachable bool
	Reason    string
	Message   string
	Latency   time.Duration
	At        time.Time
	DownSince time.Time
	Schema    *SchemaOutcome
}

// SchemaOutcome is what EnsureSchema found and did.
type SchemaOutcome struct {
	Ready   bool
	Reason  string
	Message string
}

func (o *Outcome) sameAs(other *Outcome) bool {
	if o == nil || other == nil {
		return o == other
	}
	same := o.EnvHash == other.EnvHash && o.Reachable == other.Reachable && o.Reason == other.Reason &&
		o.Message == other.Message && (o.Schema == nil) == (other.Schema == nil)
	return same && (o.Schema == nil || *o.Schema == *other.Schema)
}

// New returns a Prober with the given period, timeout, first retry
// delay and number of probes at once (the controllers' Setup fills in the defaults).
func New(interval, timeout, minBackoff time.Duration, concurrency int) *Prober {
	return &Prober{
		Interval:    interval,
		Timeout:     timeout,
		MinBackoff:  minBackoff,
		Concurrency: concurrency,
		Clock:       clock.RealClock{},
		requests:    map[types.NamespacedName]probeRequest{},
		outcomes:    map[types.NamespacedName]*Outcome{},
		probeQueue:  make(chan event.TypedGenericEvent[*v1.SessionStore], 1024),
		changed:     make(chan event.TypedGenericEvent[*v1.SessionStore], 1024),
	}
}

// hashEnv identifies a store's settings without keeping them.
func hashEnv(env map[string]string) string {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\x00", k, env[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Outcome returns the latest outcome for store if it was probed with env, and
// otherwise asks for a probe and returns the latest outcome for older
// settings (or nil), which the caller shows until the new one comes.
func (p *Prober) Outcome(store *v1.SessionStore, env map[string]string) (outcome *Outcome, current bool) {
	key := types.NamespacedName{Namespace: store.Namespace, Name: store.Name}
	hash := hashEnv(env)
	p.mu.Lock()
	defer p.mu.Unlock()
	outcome = p.outcomes[key]
	if outcome != nil && outcome.EnvHash == hash {
		return outcome, true
	}
	if req, queued := p.requests[key]; !queued || req.envHash != hash {
		p.requests[key] = probeRequest{store: store.DeepCopy(), env: env, envHash: hash}
	}
	// Asking again is harmless: the probe queue holds a store once.
	select {
	case p.probeQueue <- event.TypedGenericEvent[*v1.SessionStore]{Object: p.requests[key].store}:
	default:
		// The queue is full; the caller looks again shortly.
	}
	return outcome, false
}

// Forget drops what the prober knows of a store, the credentials it probes
// with included, and its probe series; a queued probe of it then does
// nothing. For a store that is gone, being deleted, or whose credentials
// Secret is gone.
func (p *Prober) Forget(key types.NamespacedName) {
	p.mu.Lock()
	delete(p.requests, key)
	delete(p.outcomes, key)
	p.mu.Unlock()
	if p.Metrics != nil {
		p.Metrics.ForgetProbes(key)
	}
}

// Holds tells whether the prober holds anything of a store: settings to
// probe with, or an outcome. Forget makes it false.
func (p *Prober) Holds(key types.NamespacedName) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, requested := p.requests[key]
	_, probed := p.outcomes[key]
	return requested || probed
}

// Latest returns the latest outcome for a store, whatever settings it was
// probed with, without asking for a probe.
func (p *Prober) Latest(key types.NamespacedName) *Outcome {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.outcomes[key]
}

// Reconcile probes one store; it is the probe controller's reconcile.
func (p *Prober) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	p.mu.Lock()
	request, ok := p.requests[req.NamespacedName]
	previous := p.outcomes[req.NamespacedName]
	p.mu.Unlock()
	if !ok {
		return reconcile.Result{}, nil // forgotten: the store is gone
	}

	outcome := p.probe(ctx, request, previous)

	p.mu.Lock()
	if current, still := p.requests[req.NamespacedName]; !still || current.envHash != request.envHash {
		p.mu.Unlock()
		return reconcile.Result{}, nil // forgotten or superseded meanwhile
	}
	p.outcomes[req.NamespacedName] = outcome
	// Under the lock, so a Forget cannot come between and leave a series.
	if p.Metrics != nil {
		p.Metrics.ObserveProbe(request.store, outcome.Latency)
	}
	p.mu.Unlock()

	if !outcome.sameAs(previous) {
		// The main controller drains this channel; at shutdown it no longer
		// does, and a probe worker must not hang on it.
		select {
		case p.changed <- event.TypedGenericEvent[*v1.SessionStore]{Object: request.store}:
		case <-ctx.Done():
			return reconcile.Result{}, nil
		}
	}
	return reconcile.Result{RequeueAfter: p.nextProbe(outcome)}, nil
}

// nextProbe backs off while a store is down: each retry waits about as long
// as the store has been down (so retries double), from MinBackoff up to the
// probe interval.
func (p *Prober) nextProbe(o *Outcome) time.Duration {
	if o.Reachable {
		return p.Interval
	}
	wait := o.At.Sub(o.DownSince)
	if wait < p.MinBackoff {
		wait = p.MinBackoff
	}
	if wait > p.Interval {
		wait = p.Interval
	}
	return wait
}

func (p *Prober) probe(ctx context.Context, req probeRequest, previous *Outcome) *Outcome {
	start := p.Clock.Now()
	outcome := &Outcome{EnvHash: req.envHash, At: start}
	defer func() {
		outcome.Latency = p.Clock.Since(start)
		if outcome.Reachable {
			return
		}
		outcome.DownSince = start
		if previous != nil && !previous.Reachable && !previous.DownSince.IsZero() {
			outcome.DownSince = previous.DownSince
		}
	}()

	cfg, store, err := openStore(req.env)
	if err != nil {
		outcome.Reason, outcome.Message = v1.ReasonInvalidConfig, err.Error()
		return outcome
	}
	defer func() { _ = store.Close() }()
	p.reach(ctx, cfg, store, outcome, previous)
	return outcome
}

// openStore reads a store's settings as the cleanup would, and opens it
// without connecting.
func openStore(env map[string]string) (sessionstore.Config, sessionstore.Store, error) {
	cfg, err := sessionstore.ConfigFromMap(env)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return cfg, nil, err
	}
	// An index build waits for every open transaction in the database:
	// only cleanup runs, which bound it and clean anyway, ever build one.
	cfg.DeferIndexBuild = true
	store, err := sessionstore.New(cfg)
	return cfg, store, err
}

// reach pings the store and, where the spec asks, prepares it, filling in
// outcome.
func (p *Prober) reach(ctx context.Context, cfg sessionstore.Config, store sessionstore.Store, outcome, previous *Outcome) {
	err := p.ping(ctx, store)
	missingTable := sessionstore.KindOf(err) == sessionstore.ErrMissingTable
	if missingTable && !cfg.CreateTable {
		outcome.Reason, outcome.Message = v1.ReasonTableMissing, err.Error()+" (spec."+cfg.Backend+".createTable is false)"
		outcome.Schema = &SchemaOutcome{Reason: v1.ReasonTableMissing, Message: outcome.Message}
		return
	}
	if err != nil && !missingTable {
		outcome.Reason, outcome.Message = reasonForStoreError(err), err.Error()
		return
	}
	if cfg.WantsSchema() {
		outcome.Schema = p.ensureSchema(ctx, store, previous, outcome.EnvHash)
		if !outcome.Schema.Ready && outcome.Schema.Reason != v1.ReasonSchemaPending {
			outcome.Reason, outcome.Message = outcome.Schema.Reason, outcome.Schema.Message
			return
		}
		if missingTable { // reach it again now that it exists
			if err := p.ping(ctx, store); err != nil {
				outcome.Reason, outcome.Message = reasonForStoreError(err), err.Error()
				return
			}
		}
	}
	outcome.Reachable = true
	outcome.Reason = v1.ReasonReachable
	outcome.Message = fmt.Sprintf("%s answered", cfg.Backend)
}

// ping reaches the store within the probe timeout.
func (p *Prober) ping(ctx context.Context, store sessionstore.Store) error {
	pingCtx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	return store.Ping(pingCtx)
}

// ensureSchema runs EnsureSchema once per settings; later probes keep the
// earlier success rather than repeat DDL every interval.
func (p *Prober) ensureSchema(ctx context.Context, store sessionstore.Store, previous *Outcome, envHash string) *SchemaOutcome {
	if previous != nil && previous.EnvHash == envHash && previous.Schema != nil && previous.Schema.Ready {
		kept := *previous.Schema
		return &kept
	}
	// Creating a table takes longer than a ping; no index is built here.
	schemaCtx, cancel := context.WithTimeout(ctx, 10*p.Timeout)
	defer cancel()
	res, err := store.EnsureSchema(schemaCtx)
	switch {
	case err != nil:
		return &SchemaOutcome{Reason: reasonForStoreError(err), Message: "preparing the store: " + err.Error()}
	case res.Pending:
		return &SchemaOutcome{Reason: v1.ReasonSchemaPending, Message: cmp.Or(res.Message,
			"the expiry index is missing or being built; the next cleanup run builds it")}
	case !res.Present:
		return &SchemaOutcome{Reason: v1.ReasonTableMissing, Message: cmp.Or(res.Message, "the store is not prepared")}
	case res.TTLUnsupported:
		return &SchemaOutcome{Ready: true, Reason: v1.ReasonTTLUnsupported, Message: cmp.Or(res.Message,
			"the server has no TTL indexes; the cleanup CronJob removes expired sessions")}
	case len(res.Created) > 0:
		return &SchemaOutcome{Ready: true, Reason: v1.ReasonSchemaCreated,
			Message: "created " + strings.Join(res.Created, ", ")}
	default:
		return &SchemaOutcome{Ready: true, Reason: v1.ReasonSchemaPresent, Message: cmp.Or(res.Message, "the store is prepared")}
	}
}

// reasonForStoreError turns a store error into a stable condition reason.
func reasonForStoreError(err error) string {
	var se *sessionstore.Error
	if errors.As(err, &se) && se.Kind != "" {
		return string(se.Kind)
	}
	return string(sessionstore.ErrUnknown)
}

// SetupWithManager registers the probe controller with mgr: its queue is
// fed only by the main reconciler's requests and its own re-probes.
func (p *Prober) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("sessionstore-probe").
		WithOptions(controller.Options{MaxConcurrentReconciles: p.Concurrency}).
		WatchesRawSource(source.Channel(p.probeQueue, &handler.TypedEnqueueRequestForObject[*v1.SessionStore]{})).
		Complete(p)
}

// Changes is the source that tells the main controller a store's probe
// outcome changed.
func (p *Prober) Changes() source.Source {
	return source.Channel(p.changed, &handler.TypedEnqueueRequestForObject[*v1.SessionStore]{})
}
