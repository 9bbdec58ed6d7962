package controllers

import (
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
	// Metrics records probe latencies.
	Metrics *Metrics
	// Clock times the probes and the backoff; tests step a fake one.
	Clock clock.PassiveClock

	mu       sync.Mutex
	requests map[types.NamespacedName]probeRequest
	outcomes map[types.NamespacedName]*ProbeOutcome

	probeQueue chan event.TypedGenericEvent[*v1.SessionStore]
	changed    chan event.TypedGenericEvent[*v1.SessionStore]
}

// probeRequest is what to probe: the pod environment of the store, as the
// cleanup would see it (credentials included, kept in memory only).
type probeRequest struct {
	store   *v1.SessionStore
	env     map[string]string
	envHash string
}

// ProbeOutcome is what the last probe of a store found.
type ProbeOutcome struct {
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

func (o *ProbeOutcome) sameAs(other *ProbeOutcome) bool {
	if o == nil || other == nil {
		return o == other
	}
	same := o.EnvHash == other.EnvHash && o.Reachable == other.Reachable && o.Reason == other.Reason &&
		o.Message == other.Message && (o.Schema == nil) == (other.Schema == nil)
	return same && (o.Schema == nil || *o.Schema == *other.Schema)
}

// NewProber returns a Prober with the given period, timeout, first retry
// delay and number of probes at once (Setup fills in the defaults).
func NewProber(interval, timeout, minBackoff time.Duration, concurrency int) *Prober {
	return &Prober{
		Interval:    interval,
		Timeout:     timeout,
		MinBackoff:  minBackoff,
		Concurrency: concurrency,
		Clock:       clock.RealClock{},
		requests:    map[types.NamespacedName]probeRequest{},
		outcomes:    map[types.NamespacedName]*ProbeOutcome{},
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
func (p *Prober) Outcome(store *v1.SessionStore, env map[string]string) (outcome *ProbeOutcome, current bool) {
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
	p.Metrics.forgetProbes(key)
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
	p.Metrics.observeProbe(request.store, outcome.Latency)
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
func (p *Prober) nextProbe(o *ProbeOutcome) time.Duration {
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

func (p *Prober) probe(ctx context.Context, req probeRequest, previous *ProbeOutcome) *ProbeOutcome {
	start := p.Clock.Now()
	outcome := &ProbeOutcome{EnvHash: req.envHash, At: start}
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

	cfg, err := sessionstore.ConfigFromMap(req.env)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		outcome.Reason, outcome.Message = ReasonInvalidConfig, err.Error()
		return outcome
	}
	// An index build waits for every open transaction in the database:
	// only cleanup runs, which bound it and clean anyway, ever build one.
	cfg.DeferIndexBuild = true
	store, err := sessionstore.New(cfg)
	if err != nil {
		outcome.Reason, outcome.Message = ReasonInvalidConfig, err.Error()
		return outcome
	}
	defer func() { _ = store.Close() }()

	pingCtx, cancel := context.WithTimeout(ctx, p.Timeout)
	err = store.Ping(pingCtx)
	cancel()
	schemaWanted := cfg.WantsSchema()
	if sessionstore.KindOf(err) == sessionstore.ErrMissingTable && !cfg.CreateTable {
		outcome.Reason, outcome.Message = ReasonTableMissing, err.Error()+" (spec."+cfg.Backend+".createTable is false)"
		outcome.Schema = &SchemaOutcome{Reason: ReasonTableMissing, Message: outcome.Message}
		return outcome
	}
	if err != nil && sessionstore.KindOf(err) != sessionstore.ErrMissingTable {
		outcome.Reason, outcome.Message = reasonForStoreError(err), err.Error()
		return outcome
	}
	if schemaWanted {
		outcome.Schema = p.ensureSchema(ctx, store, previous, req.envHash)
		if !outcome.Schema.Ready && outcome.Schema.Reason != ReasonSchemaPending {
			outcome.Reason, outcome.Message = outcome.Schema.Reason, outcome.Schema.Message
			return outcome
		}
		if err != nil { // the table was missing: reach it again now that it exists
			pingCtx, cancel := context.WithTimeout(ctx, p.Timeout)
			err = store.Ping(pingCtx)
			cancel()
			if err != nil {
				outcome.Reason, outcome.Message = reasonForStoreError(err), err.Error()
				return outcome
			}
		}
	}
	outcome.Reachable = true
	outcome.Reason = ReasonReachable
	outcome.Message = fmt.Sprintf("%s answered", cfg.Backend)
	return outcome
}

// ensureSchema runs EnsureSchema once per settings; later probes keep the
// earlier success rather than repeat DDL every interval.
func (p *Prober) ensureSchema(ctx context.Context, store sessionstore.Store, previous *ProbeOutcome, envHash string) *SchemaOutcome {
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
		return &SchemaOutcome{Reason: ReasonSchemaPending, Message: nonEmpty(res.Message,
			"the expiry index is missing or being built; the next cleanup run builds it")}
	case !res.Present:
		return &SchemaOutcome{Reason: ReasonTableMissing, Message: nonEmpty(res.Message, "the store is not prepared")}
	case res.TTLUnsupported:
		return &SchemaOutcome{Ready: true, Reason: ReasonTTLUnsupported, Message: nonEmpty(res.Message,
			"the server has no TTL indexes; the cleanup CronJob removes expired sessions")}
	case len(res.Created) > 0:
		return &SchemaOutcome{Ready: true, Reason: ReasonSchemaCreated,
			Message: "created " + strings.Join(res.Created, ", ")}
	default:
		return &SchemaOutcome{Ready: true, Reason: ReasonSchemaPresent, Message: nonEmpty(res.Message, "the store is prepared")}
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

func nonEmpty(s, fallback string) string {
	if s != "" {
		return s
	}
	return fallback
}

// setupProbeController registers the probe controller with mgr: its queue is
// fed only by the main reconciler's requests and its own re-probes.
func (p *Prober) setupProbeController(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("sessionstore-probe").
		WithOptions(controller.Options{MaxConcurrentReconciles: p.Concurrency}).
		WatchesRawSource(source.Channel(p.probeQueue, &handler.TypedEnqueueRequestForObject[*v1.SessionStore]{})).
		Complete(p)
}

// changedSource tells the main controller that a probe outcome changed.
func (p *Prober) changedSource() source.Source {
	return source.Channel(p.changed, &handler.TypedEnqueueRequestForObject[*v1.SessionStore]{})
}
