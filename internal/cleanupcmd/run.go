package cleanupcmd

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

func (inv *invocation) cleanup(parent context.Context) int {
	stopCtx, stop := inv.withSignals(parent)
	defer stop()

	// A dry run changes nothing, the schema included: its store is built
	// with nothing to create, so that EnsureSchema only looks.
	cfg := inv.cfg
	if inv.dryRun {
		cfg = lookOnly(cfg)
	}
	store, err := sessionstore.New(cfg)
	if err != nil {
		return inv.fail(sessionstore.RunResult{}, err)
	}
	defer store.Close()

	if inv.clockOffset != 0 {
		// Never meant for a real run: say so where the Job's log shows it.
		fmt.Fprintf(inv.stderr, "%s: the clock is shifted by %s (%s, for tests only)\n", inv.name, inv.clockOffset, EnvTestClockOffset)
	}
	var res sessionstore.RunResult
	if code, done := inv.prepare(stopCtx, store, &res); done {
		return code
	}
	if stopCtx.Err() != nil {
		return inv.failOrStopped(stopCtx, stopCtx.Err(), "before cleaning")
	}
	if inv.dryRun && tableToCreate(inv.cfg, res.Schema) {
		// A real run would create the table empty: nothing to count.
		report := sessionstore.Report{Backend: inv.cfg.Backend, DryRun: true, Now: inv.now(),
			Message: res.Schema.Message + "; nothing to clean until it exists"}
		res.Report = &report
		inv.emit(res)
		return ExitOK
	}
	return inv.runCleanup(stopCtx, store, res)
}

// lookOnly is cfg asking EnsureSchema to create nothing.
func lookOnly(cfg sessionstore.Config) sessionstore.Config {
	cfg.CreateTable, cfg.CreateExpiryIndex, cfg.TTLIndex = false, false, false
	return cfg
}

// now is the clock the cleanup compares expiries with.
func (inv *invocation) now() time.Time { return time.Now().UTC().Add(inv.clockOffset) }

// prepare reaches the store and ensures its schema (or, in a dry run, says
// what a real run would create). When done is true the run is over.
func (inv *invocation) prepare(ctx context.Context, store sessionstore.Store, res *sessionstore.RunResult) (code int, done bool) {
	wantsSchema := inv.cfg.WantsSchema()
	if err := inv.ping(ctx, store); err != nil {
		missingButWillCreate := sessionstore.KindOf(err) == sessionstore.ErrMissingTable && wantsSchema
		if !missingButWillCreate {
			return inv.failOrStopped(ctx, err, "before cleaning"), true
		}
	}
	if !wantsSchema {
		return 0, false
	}
	schema, err := store.EnsureSchema(ctx)
	if err != nil {
		return inv.failOrStopped(ctx, err, "while preparing the schema, before cleaning"), true
	}
	if inv.dryRun {
		schema = dryRunSchema(inv.cfg, schema)
	}
	res.Schema = &schema
	fmt.Fprintf(inv.stderr, "%s: schema: %s\n", inv.name, describeSchema(schema))
	return 0, false
}

func (inv *invocation) runCleanup(stopCtx context.Context, store sessionstore.Store, res sessionstore.RunResult) int {
	stopper := newBatchStopper(stopCtx, stopGrace)
	defer stopper.release()
	progress := &progressLogger{out: inv.stderr, name: inv.name, interval: progressInterval, atBatchEnd: stopper.atBatchEnd}
	report, err := store.Cleanup(stopper.ctx, sessionstore.CleanupOptions{
		Now:       inv.now(),
		Grace:     inv.cfg.GracePeriod,
		BatchSize: inv.batch,
		DryRun:    inv.dryRun,
		Progress:  progress.observe,
	})
	report = progress.complete(report)
	if report.Backend == "" {
		report.Backend = inv.cfg.Backend
	}
	report.DryRun = report.DryRun || inv.dryRun
	res.Report = &report

	// Once a stop was asked for, the run may have left expired sessions
	// behind, even when the backend returned no error.
	if stopCtx.Err() != nil {
		return inv.stoppedEarly(stopCtx, stopper, res)
	}
	if err != nil {
		return inv.fail(res, err)
	}
	inv.emit(res)
	return ExitOK
}

func (inv *invocation) ping(ctx context.Context, store sessionstore.Store) error {
	pingCtx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	return store.Ping(pingCtx)
}

// missingTable finds the qualified name in the SQL backends'
// "table public.sessions does not exist" message.
var missingTable = regexp.MustCompile(`^table (\S+) does not exist`)

// dryRunSchema turns what a look-only EnsureSchema found into what a real
// run would create; nothing was created.
func dryRunSchema(cfg sessionstore.Config, looked sessionstore.SchemaResult) sessionstore.SchemaResult {
	var would []string
	switch cfg.Backend {
	case sessionstore.BackendPostgreSQL, sessionstore.BackendMySQL:
		tableMissing := !looked.Present && cfg.CreateTable
		if tableMissing {
			name := cfg.Table
			if m := missingTable.FindStringSubmatch(looked.Message); m != nil {
				name = m[1]
			}
			would = append(would, "table "+name)
		}
		if cfg.Backend == sessionstore.BackendPostgreSQL && cfg.CreateExpiryIndex {
			index := "expiry index " + cfg.Table + "_expiry_idx"
			if !tableMissing {
				// Look-only does not inspect the index.
				index += " unless it exists"
			}
			would = append(would, index)
		}
	case sessionstore.BackendMongoDB:
		if cfg.TTLIndex && !strings.Contains(looked.Message, "TTL index on expiration exists") {
			would = append(would, "the TTL index on expiration (where the server has TTL indexes)")
		}
	}
	res := sessionstore.SchemaResult{Present: looked.Present, TTLUnsupported: looked.TTLUnsupported, Pending: looked.Pending}
	if len(would) == 0 {
		res.Message = strings.TrimSuffix("dry run: nothing to create; "+looked.Message, "; ")
		return res
	}
	res.Message = "dry run: would create " + strings.Join(would, " and ")
	return res
}

// tableToCreate says whether a dry run found the SQL table missing where a
// real run would create it.
func tableToCreate(cfg sessionstore.Config, schema *sessionstore.SchemaResult) bool {
	sql := cfg.Backend == sessionstore.BackendPostgreSQL || cfg.Backend == sessionstore.BackendMySQL
	return sql && cfg.CreateTable && schema != nil && !schema.Present &&
		strings.HasPrefix(schema.Message, "dry run: would create table ")
}

func describeSchema(s sessionstore.SchemaResult) string {
	var parts []string
	switch {
	case len(s.Created) > 0:
		parts = append(parts, "created "+strings.Join(s.Created, ", "))
	case strings.HasPrefix(s.Message, "dry run:"):
		// The message says it all.
	case s.Present:
		parts = append(parts, "present")
	default:
		parts = append(parts, "not present")
	}
	if s.TTLUnsupported && s.Message == "" {
		parts = append(parts, "the server has no TTL indexes, so the cleanup job is what removes expired sessions")
	}
	if s.Message != "" {
		parts = append(parts, s.Message)
	}
	return strings.Join(parts, "; ")
}
