package cleanupcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

func (inv *invocation) check(parent context.Context) int {
	ctx, stop := inv.withSignals(parent)
	defer stop()
	cfg := inv.cfg

	// Check never creates: the store is built with nothing to create, so
	// that EnsureSchema only looks.
	res := checkResult{Backend: cfg.Backend}
	store, err := sessionstore.New(lookOnly(cfg))
	if err != nil {
		return inv.failCheck(res, err)
	}
	defer store.Close()

	// A missing table is fine when the cleanup will create it; whether it
	// is only the table that is missing (not the database) EnsureSchema
	// tells below, without creating anything.
	if err := inv.ping(ctx, store); err != nil {
		if ctx.Err() != nil {
			err = &sessionstore.Error{Kind: sessionstore.ErrTimeout, Op: "ping",
				Err: fmt.Errorf("stopped early (%s) before the store answered", stopReason(ctx))}
		}
		if sessionstore.KindOf(err) != sessionstore.ErrMissingTable || !cfg.CreateTable {
			return inv.failCheck(res, err)
		}
	}

	if cfg.WantsSchemaCheck() {
		if code, done := inv.checkSchema(ctx, store, &res); done {
			return code
		}
	}
	res.OK = true
	return inv.emitCheck(res, ExitOK)
}

// checkSchema looks at the schema without creating anything. When done is
// true the check is over.
func (inv *invocation) checkSchema(ctx context.Context, store sessionstore.Store, res *checkResult) (code int, done bool) {
	schema, err := store.EnsureSchema(ctx)
	if err != nil {
		return inv.failCheck(*res, err), true
	}
	if len(schema.Created) > 0 {
		// A backend that ignored the look-only config: say so rather than hide it.
		fmt.Fprintf(inv.stderr, "%s: the backend created %s although check asked for nothing\n", inv.name, strings.Join(schema.Created, ", "))
	}
	res.Schema = &schema
	if schema.Present {
		return 0, false
	}
	if !inv.cfg.WantsSchema() {
		res.Error = "schema not present and the configuration does not create it"
		if schema.Message != "" {
			res.Error += ": " + schema.Message
		}
		res.ErrorKind = sessionstore.ErrMissingTable
		fmt.Fprintf(inv.stderr, "%s: %s\n", inv.name, oneLine(res.Error))
		return inv.emitCheck(*res, ExitStoreFailed), true
	}
	schema.Message = strings.TrimPrefix(schema.Message+"; cleanup will create what is missing", "; ")
	return 0, false
}

type checkResult struct {
	Backend   string                     `json:"backend"`
	OK        bool                       `json:"ok"`
	Schema    *sessionstore.SchemaResult `json:"schema,omitempty"`
	Error     string                     `json:"error,omitempty"`
	ErrorKind sessionstore.ErrorKind     `json:"errorKind,omitempty"`
}

func (inv *invocation) failCheck(res checkResult, err error) int {
	res.Error, res.ErrorKind = err.Error(), sessionstore.KindOf(err)
	fmt.Fprintf(inv.stderr, "%s: %s\n", inv.name, describeStoreError(err))
	return inv.emitCheck(res, exitCodeOf(err))
}

// emitCheck prints res, writes it as the termination message and returns code.
func (inv *invocation) emitCheck(res checkResult, code int) int {
	res.Error = truncate(inv.redact(res.Error), 2000)
	if res.Schema != nil {
		s := *res.Schema
		s.Message = truncate(inv.redact(s.Message), 1000)
		res.Schema = &s
	}
	switch {
	case inv.json:
		inv.printJSON(res)
	case !res.OK:
		fmt.Fprintf(inv.stdout, "failed: %s store: %s\n", res.Backend, oneLine(res.Error))
	default:
		line := fmt.Sprintf("ok: %s store reachable", res.Backend)
		if res.Schema != nil {
			line += "; schema " + describeSchema(*res.Schema)
		}
		fmt.Fprintln(inv.stdout, line)
	}
	if data, err := json.Marshal(res); err == nil {
		inv.writeTerminationBytes(data)
	}
	return code
}
