// Package cleanupcmd is the operator binary's `cleanup` and `check`
// subcommands: what the cleanup CronJob's container runs, configured by the
// connection Secret's keys (sessionstore/env.go) and flags that override them.
//
// Exit codes: 0 success, 1 the store failed (or the run stopped early on a
// signal or its deadline), 2 bad configuration. Every message names what is
// wrong and none holds a credential: all output passes through a redactor
// that knows the URL's password.
package cleanupcmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	// Every backend, for sessionstore.New.
	_ "github.com/sessionstore/sessionstore-operator/internal/sessionstore/backends"
)

// Exit codes of both subcommands.
const (
	ExitOK          = 0
	ExitStoreFailed = 1
	ExitBadConfig   = 2
)

const (
	// DefaultTerminationLog is where Kubernetes reads a container's
	// termination message from (terminationMessagePath's default).
	DefaultTerminationLog = "/dev/termination-log"
	DefaultBatchSize      = 1000
	MaxBatchSize          = 100000

	// Kubernetes keeps at most 4096 bytes of a termination message.
	terminationMessageLimit = 4096
	// Passwords shorter than this are not searched for in output: replacing
	// every "ab" would garble messages, and ScrubURLs still hides them in URLs.
	minRedactedSecret = 4
)

var (
	// progressInterval spaces progress lines so batch size 1 does not flood
	// the log; the first batch is always logged.
	progressInterval = 5 * time.Second
	// pingTimeout bounds Ping when no --timeout is shorter: a black-holed
	// address must not hang the Job until activeDeadlineSeconds.
	pingTimeout = 30 * time.Second
	// stopGrace is how long a stopped run waits for the current batch to
	// finish before cancelling it; under Kubernetes' default 30 s between
	// SIGTERM and SIGKILL.
	stopGrace = 20 * time.Second
	// defaultTerminationLog is DefaultTerminationLog; tests point it elsewhere.
	defaultTerminationLog = DefaultTerminationLog
)

// Main runs `cleanup` with args (the subcommand name excluded) and returns
// the exit code. env looks up the Secret's keys (os.LookupEnv when nil). It
// stops after the current batch when ctx ends or on SIGTERM/SIGINT.
func Main(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	inv, code, done := start("cleanup", args, env, stdout, stderr)
	if done {
		return code
	}
	return inv.cleanup(ctx)
}

// Check runs `check`: it reaches the store and reports whether its schema is
// present, without creating or deleting anything. Same signature, exit codes
// and flags as Main, less those that only a cleanup uses.
func Check(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	inv, code, done := start("check", args, env, stdout, stderr)
	if done {
		return code
	}
	return inv.check(ctx)
}

// quietRedisLogger drops go-redis's own log lines (dial retries), which it
// writes straight to the process's stderr, past the redactor; the error it
// finally returns says the same and is reported on one line.
type quietRedisLogger struct{}

func (quietRedisLogger) Printf(context.Context, string, ...any) {}

var silenceRedisOnce sync.Once

// configFlags maps each flag that overrides a Secret key to that key.
var configFlags = []struct{ flag, key, usage string }{
	{"backend", sessionstore.EnvBackend, "store backend: " + strings.Join(sessionstore.Backends, ", ")},
	{"url", sessionstore.EnvURL, "connection URL (prefer the env var: flags show in the process list)"},
	{"table", sessionstore.EnvTable, "PostgreSQL table"},
	{"schema", sessionstore.EnvSchema, "PostgreSQL schema"},
	{"database", sessionstore.EnvDatabase, "MongoDB database"},
	{"collection", sessionstore.EnvCollection, "MongoDB collection"},
	{"dir", sessionstore.EnvDir, "filesystem session directory (absolute)"},
	{"key-prefix", sessionstore.EnvKeyPrefix, "session key prefix"},
}

// invocation is one parsed run of a subcommand.
type invocation struct {
	name   string
	cfg    sessionstore.Config
	batch  int
	dryRun bool
	json   bool

	timeout           time.Duration
	terminationLog    string
	terminationLogSet bool

	stdout, stderr io.Writer
	redact         func(string) string
}

// start parses flags and configuration. When done is true the run is over
// (help, or bad configuration already reported) and code is its exit code.
func start(name string, args []string, env func(string) (string, bool), stdout, stderr io.Writer) (inv *invocation, code int, done bool) {
	if env == nil {
		env = os.LookupEnv
	}
	silenceRedisOnce.Do(func() { redis.SetLogger(quietRedisLogger{}) })
	inv = &invocation{name: name, terminationLog: defaultTerminationLog}

	fset := flag.NewFlagSet(name, flag.ContinueOnError)
	fset.SetOutput(io.Discard)
	fset.Usage = func() {}
	values := map[string]*string{}
	for _, f := range configFlags {
		values[f.flag] = fset.String(f.flag, "", f.usage+" (overrides "+f.key+")")
	}
	var batchSize *string
	var fixMissingTTL *bool
	if name == "cleanup" {
		batchSize = fset.String("batch-size", "", fmt.Sprintf("sessions per batch, 1..%d (overrides %s; default %d)", MaxBatchSize, sessionstore.EnvBatchSize, DefaultBatchSize))
		fixMissingTTL = fset.Bool("fix-missing-ttl", false, "Redis: give keys without a TTL the session lifetime (overrides "+sessionstore.EnvFixMissingTTL+")")
		fset.BoolVar(&inv.dryRun, "dry-run", false, "count what would be deleted, delete nothing")
	}
	output := fset.String("output", "text", "report format: text or json")
	fset.DurationVar(&inv.timeout, "timeout", 0, "overall deadline, e.g. 10m (0: none)")
	fset.StringVar(&inv.terminationLog, "termination-log", defaultTerminationLog, "file the JSON report is written to when writable (empty: none)")

	// Until the URL is known, scrub what looks like one.
	inv.redact = sessionstore.ScrubURLs
	inv.stdout = redactingWriter{stdout, func(s string) string { return inv.redact(s) }}
	inv.stderr = redactingWriter{stderr, func(s string) string { return inv.redact(s) }}

	err := fset.Parse(args)
	// Known even when parsing failed part way, so the failure is written there too.
	fset.Visit(func(f *flag.Flag) { inv.terminationLogSet = inv.terminationLogSet || f.Name == "termination-log" })
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(inv.stdout, "Usage: %s [flags]\n\nEach flag overrides the environment variable it names.\n\n", name)
			fset.SetOutput(inv.stdout)
			fset.PrintDefaults()
			return nil, ExitOK, true
		}
		return nil, inv.failConfig(err.Error() + " (see " + name + " -h)"), true
	}
	if fset.NArg() > 0 {
		return nil, inv.failConfig(fmt.Sprintf("unexpected argument %q (see %s -h)", fset.Arg(0), name)), true
	}

	overrides := map[string]string{}
	flagOf := map[string]string{}
	fset.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "batch-size":
			overrides[sessionstore.EnvBatchSize] = *batchSize
			flagOf[sessionstore.EnvBatchSize] = "--batch-size"
		case "fix-missing-ttl":
			overrides[sessionstore.EnvFixMissingTTL] = strconv.FormatBool(*fixMissingTTL)
			flagOf[sessionstore.EnvFixMissingTTL] = "--fix-missing-ttl"
		}
		for _, cf := range configFlags {
			if cf.flag == f.Name {
				overrides[cf.key] = *values[cf.flag]
				flagOf[cf.key] = "--" + cf.flag
			}
		}
	})
	lookup := func(key string) (string, bool) {
		if v, ok := overrides[key]; ok {
			return v, true
		}
		return env(key)
	}
	rawURL, _ := lookup(sessionstore.EnvURL)
	inv.redact = newRedactor(rawURL)

	switch *output {
	case "text":
	case "json":
		inv.json = true
	default:
		return nil, inv.failConfig(fmt.Sprintf("--output: %q is not text or json", *output)), true
	}
	if inv.timeout < 0 {
		return nil, inv.failConfig(fmt.Sprintf("--timeout: %s is negative", inv.timeout)), true
	}

	cfg, err := sessionstore.ConfigFromEnv(lookup)
	if err == nil {
		err = cfg.Validate()
	}
	if err == nil && name == "cleanup" {
		inv.batch, err = batchSizeFrom(lookup)
	}
	if err != nil {
		return nil, inv.failConfig(describeConfigError(err, flagOf)), true
	}
	inv.cfg = cfg
	return inv, 0, false
}

func batchSizeFrom(lookup func(string) (string, bool)) (int, error) {
	raw, _ := lookup(sessionstore.EnvBatchSize)
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return DefaultBatchSize, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > MaxBatchSize {
		return 0, &sessionstore.Error{Kind: sessionstore.ErrConfig, Op: sessionstore.EnvBatchSize,
			Err: fmt.Errorf("%q is not a whole number from 1 to %d", raw, MaxBatchSize)}
	}
	return n, nil
}

// describeConfigError names the flag rather than the env key when a flag
// supplied the bad value.
func describeConfigError(err error, flagOf map[string]string) string {
	var se *sessionstore.Error
	if errors.As(err, &se) && se.Kind == sessionstore.ErrConfig && se.Err != nil {
		if flagName, ok := flagOf[se.Op]; ok {
			return flagName + ": " + se.Err.Error()
		}
	}
	return err.Error()
}

func (inv *invocation) failConfig(msg string) int {
	fmt.Fprintf(inv.stderr, "%s: %s\n", inv.name, oneLine(msg))
	inv.emit(sessionstore.RunResult{Error: msg, ErrorKind: sessionstore.ErrConfig})
	return ExitBadConfig
}

// describeStoreError puts the kind first ("ConnectionRefused: ping: ..."),
// so the line says at a glance what failed; a config error needs no label.
func describeStoreError(err error) string {
	msg := oneLine(err.Error())
	kind := sessionstore.KindOf(err)
	if kind == sessionstore.ErrConfig {
		return msg
	}
	return fmt.Sprintf("%s: %s", kind, msg)
}

// exitCodeOf maps a store error to an exit code: a backend may still find
// the configuration wrong once it sees the store.
func exitCodeOf(err error) int {
	if sessionstore.KindOf(err) == sessionstore.ErrConfig {
		return ExitBadConfig
	}
	return ExitStoreFailed
}

// withSignals ends ctx on SIGTERM (the Job's deadline, a node drain) or
// SIGINT, and at --timeout; context.Cause then says which.
func (inv *invocation) withSignals(ctx context.Context) (context.Context, func()) {
	ctx, stopSignals := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	if inv.timeout <= 0 {
		return ctx, stopSignals
	}
	ctx, cancel := context.WithTimeoutCause(ctx, inv.timeout, fmt.Errorf("the --timeout of %s was reached", inv.timeout))
	return ctx, func() { cancel(); stopSignals() }
}

func stopReason(ctx context.Context) string {
	// Compared, not errors.Is: a signal's cause also matches Canceled.
	switch cause := context.Cause(ctx); cause {
	case nil:
		return "stopped"
	case context.Canceled:
		return "cancelled"
	case context.DeadlineExceeded:
		return "deadline reached"
	default:
		return cause.Error()
	}
}

func (inv *invocation) cleanup(parent context.Context) int {
	stopCtx, stop := inv.withSignals(parent)
	defer stop()
	cfg := inv.cfg

	store, err := sessionstore.New(cfg)
	if err != nil {
		return inv.fail(sessionstore.RunResult{}, err)
	}
	defer store.Close()

	wantsSchema := cfg.WantsSchema()
	if err := inv.ping(stopCtx, store); err != nil {
		missingButWillCreate := sessionstore.KindOf(err) == sessionstore.ErrMissingTable && wantsSchema
		if !missingButWillCreate {
			return inv.failOrStopped(stopCtx, err, "before cleaning")
		}
	}

	var res sessionstore.RunResult
	if wantsSchema {
		schema, err := store.EnsureSchema(stopCtx)
		if err != nil {
			return inv.failOrStopped(stopCtx, err, "while preparing the schema, before cleaning")
		}
		res.Schema = &schema
		fmt.Fprintf(inv.stderr, "%s: schema: %s\n", inv.name, describeSchema(schema))
	}

	if stopCtx.Err() != nil {
		return inv.failOrStopped(stopCtx, stopCtx.Err(), "before cleaning")
	}
	stopper := newBatchStopper(stopCtx, stopGrace)
	defer stopper.release()
	progress := &progressLogger{out: inv.stderr, name: inv.name, interval: progressInterval, atBatchEnd: stopper.atBatchEnd}
	report, err := store.Cleanup(stopper.ctx, sessionstore.CleanupOptions{
		Now:       time.Now().UTC(),
		BatchSize: inv.batch,
		DryRun:    inv.dryRun,
		Progress:  progress.observe,
	})
	report = progress.complete(report)
	if report.Backend == "" {
		report.Backend = cfg.Backend
	}
	report.DryRun = report.DryRun || inv.dryRun
	res.Report = &report

	// Once a stop was asked for, the run may have left expired sessions
	// behind, even when the backend returned no error.
	if stopCtx.Err() != nil {
		reason := stopReason(stopCtx)
		if stopper.ctx.Err() != nil {
			reason = stopReason(stopper.ctx) // says when the grace ran out
		}
		res.StoppedEarly = true
		res.Error = fmt.Sprintf("stopped early (%s) after %s: %s; rerun to finish",
			reason, batchesOf(report.Batches), countsOf(report))
		res.ErrorKind = sessionstore.ErrTimeout
		fmt.Fprintf(inv.stderr, "%s: %s\n", inv.name, oneLine(res.Error))
		inv.emit(res)
		return ExitStoreFailed
	}
	if err != nil {
		return inv.fail(res, err)
	}
	inv.emit(res)
	return ExitOK
}

// batchStopper gives Cleanup a context that ends at the first batch
// boundary after a stop (signal, deadline, caller) instead of in the middle
// of a batch, or stopGrace later if no boundary comes.
type batchStopper struct {
	stop   context.Context
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func newBatchStopper(stop context.Context, grace time.Duration) *batchStopper {
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(stop))
	b := &batchStopper{stop: stop, ctx: ctx, cancel: cancel}
	go func() {
		select {
		case <-stop.Done():
		case <-ctx.Done():
			return
		}
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-timer.C:
			cancel(fmt.Errorf("%s; the current batch did not finish within %s", stopReason(stop), grace))
		case <-ctx.Done():
		}
	}()
	return b
}

// atBatchEnd runs after each batch: the place to stop without cutting one.
func (b *batchStopper) atBatchEnd() {
	if b.stop.Err() != nil {
		b.cancel(context.Cause(b.stop))
	}
}

func (b *batchStopper) release() { b.cancel(nil) }

func (inv *invocation) ping(ctx context.Context, store sessionstore.Store) error {
	pingCtx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	return store.Ping(pingCtx)
}

func describeSchema(s sessionstore.SchemaResult) string {
	var parts []string
	switch {
	case len(s.Created) > 0:
		parts = append(parts, "created "+strings.Join(s.Created, ", "))
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

// failOrStopped reports err, or that the run stopped early when ctx ended.
func (inv *invocation) failOrStopped(ctx context.Context, err error, when string) int {
	if ctx.Err() == nil {
		return inv.fail(sessionstore.RunResult{}, err)
	}
	res := sessionstore.RunResult{StoppedEarly: true, ErrorKind: sessionstore.ErrTimeout,
		Error: fmt.Sprintf("stopped early (%s) %s: nothing was deleted; rerun to finish", stopReason(ctx), when)}
	fmt.Fprintf(inv.stderr, "%s: %s\n", inv.name, oneLine(res.Error))
	inv.emit(res)
	return ExitStoreFailed
}

func (inv *invocation) fail(res sessionstore.RunResult, err error) int {
	res.Error, res.ErrorKind = err.Error(), sessionstore.KindOf(err)
	fmt.Fprintf(inv.stderr, "%s: %s\n", inv.name, describeStoreError(err))
	inv.emit(res)
	return exitCodeOf(err)
}

// emit prints res (the summary when there is a report, in text) and writes
// the termination message.
func (inv *invocation) emit(res sessionstore.RunResult) {
	res = inv.redactResult(res)
	if inv.json {
		inv.printJSON(res)
	} else if res.Report != nil {
		fmt.Fprintln(inv.stdout, summaryOf(*res.Report, res.StoppedEarly))
	}
	inv.writeTerminationBytes(fitTerminationMessage(res))
}

// redactResult hides secrets in the free text before it is encoded: JSON
// escapes characters such as & and ", so the encoded form could hide a
// password from the output filter.
func (inv *invocation) redactResult(res sessionstore.RunResult) sessionstore.RunResult {
	res.Error = inv.redact(res.Error)
	if res.Report != nil {
		r := *res.Report
		r.Message = inv.redact(r.Message)
		res.Report = &r
	}
	if res.Schema != nil {
		s := *res.Schema
		s.Message = inv.redact(s.Message)
		res.Schema = &s
	}
	return res
}

func (inv *invocation) printJSON(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintf(inv.stderr, "%s: cannot encode the report: %v\n", inv.name, err)
		return
	}
	fmt.Fprintf(inv.stdout, "%s\n", data)
}

// oneLine folds a message onto one line, whatever a driver put in it.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func summaryOf(r sessionstore.Report, stoppedEarly bool) string {
	var b strings.Builder
	if stoppedEarly {
		b.WriteString("stopped early: ")
	}
	fmt.Fprintf(&b, "%s: %s; %s in %s", r.Backend, countsOf(r), batchesOf(r.Batches), roundDuration(r.Duration))
	if r.DryRun {
		b.WriteString(" (dry run: nothing deleted)")
	}
	if r.NativeExpiry {
		b.WriteString("; the store expires sessions by itself")
	}
	if r.Message != "" {
		b.WriteString("\n")
		b.WriteString(r.Message)
	}
	return b.String()
}

func batchesOf(n int) string {
	if n == 1 {
		return "1 batch"
	}
	return fmt.Sprintf("%d batches", n)
}

// roundDuration keeps three significant digits or so: "305µs", "12ms", "4.2s".
func roundDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Microsecond).String()
}

func countsOf(r sessionstore.Report) string {
	s := fmt.Sprintf("scanned %d, expired %d, deleted %d", r.Scanned, r.Expired, r.Deleted)
	if len(r.Kept) == 0 {
		return s
	}
	var total int64
	var reasons []string
	for _, reason := range slices.Sorted(maps.Keys(r.Kept)) {
		total += r.Kept[reason]
		reasons = append(reasons, fmt.Sprintf("%s %d", reason, r.Kept[reason]))
	}
	return fmt.Sprintf("%s, kept %d (%s)", s, total, strings.Join(reasons, ", "))
}

// progressLogger logs the first batch and then at most one line per
// interval, and keeps the latest report in case a failing backend returns
// an empty one.
type progressLogger struct {
	mu       sync.Mutex
	out      io.Writer
	name     string
	interval time.Duration
	lastLog  time.Time
	latest   sessionstore.Report
	seen     bool
	// atBatchEnd runs after the line is logged.
	atBatchEnd func()
}

func (p *progressLogger) observe(r sessionstore.Report) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r.Kept = maps.Clone(r.Kept)
	p.latest, p.seen = r, true
	if now := time.Now(); p.lastLog.IsZero() || now.Sub(p.lastLog) >= p.interval {
		p.lastLog = now
		fmt.Fprintf(p.out, "%s: progress: %s; %s so far (%s)\n", p.name, countsOf(r), batchesOf(r.Batches), roundDuration(r.Duration))
	}
	if p.atBatchEnd != nil {
		p.atBatchEnd()
	}
}

func (p *progressLogger) complete(final sessionstore.Report) sessionstore.Report {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen && final.Batches < p.latest.Batches {
		return p.latest
	}
	return final
}

// writeTerminationBytes writes data to the termination-message path. The
// default path is only written when it exists (Kubernetes creates it), so a
// run outside a pod never creates /dev/termination-log.
func (inv *invocation) writeTerminationBytes(data []byte) {
	if inv.terminationLog == "" {
		return
	}
	data = []byte(inv.redact(string(data)))
	if len(data) > terminationMessageLimit {
		data = data[:0] // redaction grew it past the limit: an empty message beats a cut one
	}
	flags := os.O_WRONLY | os.O_TRUNC
	if inv.terminationLogSet {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(inv.terminationLog, flags, 0o644)
	if err == nil {
		_, err = f.Write(data)
		if closeErr := f.Close(); err == nil {
			err = closeErr
		}
	}
	if err != nil && (inv.terminationLogSet || !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission)) {
		fmt.Fprintf(inv.stderr, "%s: cannot write the termination message: %v\n", inv.name, err)
	}
}

// fitTerminationMessage encodes res in at most terminationMessageLimit
// bytes, shortening free text first and dropping detail last.
func fitTerminationMessage(res sessionstore.RunResult) []byte {
	if res.Report != nil {
		r := *res.Report
		res.Report = &r
	}
	if res.Schema != nil {
		s := *res.Schema
		res.Schema = &s
	}
	for _, limit := range []int{-1, 1000, 300, 100} {
		if limit >= 0 {
			res.Error = truncate(res.Error, limit)
			if res.Report != nil {
				res.Report.Message = truncate(res.Report.Message, limit)
			}
			if res.Schema != nil {
				res.Schema.Message = truncate(res.Schema.Message, limit)
			}
		}
		if data, err := json.Marshal(res); err == nil && len(data) <= terminationMessageLimit {
			return data
		}
	}
	if res.Report != nil {
		res.Report.Kept = nil
	}
	res.Schema = nil
	data, _ := json.Marshal(res)
	return data
}

func truncate(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	return strings.ToValidUTF8(s[:limit], "") + "..."
}

func (inv *invocation) check(parent context.Context) int {
	ctx, stop := inv.withSignals(parent)
	defer stop()
	cfg := inv.cfg

	// Check never creates: the store is built with nothing to create, so
	// that EnsureSchema only looks.
	lookOnly := cfg
	lookOnly.CreateTable, lookOnly.CreateExpiryIndex, lookOnly.TTLIndex = false, false, false
	res := checkResult{Backend: cfg.Backend}

	store, err := sessionstore.New(lookOnly)
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

	if cfg.Backend == sessionstore.BackendPostgreSQL || cfg.Backend == sessionstore.BackendMongoDB {
		schema, err := store.EnsureSchema(ctx)
		if err != nil {
			return inv.failCheck(res, err)
		}
		if len(schema.Created) > 0 {
			// A backend that ignored the look-only config: say so rather than hide it.
			fmt.Fprintf(inv.stderr, "%s: the backend created %s although check asked for nothing\n", inv.name, strings.Join(schema.Created, ", "))
		}
		res.Schema = &schema
		if !schema.Present {
			if !cfg.WantsSchema() {
				res.Error = "schema not present and the configuration does not create it"
				if schema.Message != "" {
					res.Error += ": " + schema.Message
				}
				res.ErrorKind = sessionstore.ErrMissingTable
				fmt.Fprintf(inv.stderr, "%s: %s\n", inv.name, oneLine(res.Error))
				return inv.emitCheck(res, ExitStoreFailed)
			}
			schema.Message = strings.TrimPrefix(schema.Message+"; cleanup will create what is missing", "; ")
		}
	}
	res.OK = true
	return inv.emitCheck(res, ExitOK)
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

// redactingWriter passes every write through redact; callers write whole
// lines, so a secret is never split across writes.
type redactingWriter struct {
	w      io.Writer
	redact func(string) string
}

func (r redactingWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(r.w, r.redact(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// newRedactor hides rawURL's password wherever it shows up, whether a
// driver quoted the URL, the password alone, or its percent-decoded form,
// and then whatever else looks like a URL with credentials.
func newRedactor(rawURL string) func(string) string {
	secrets := passwordsIn(rawURL)
	return func(s string) string {
		for _, secret := range secrets {
			s = strings.ReplaceAll(s, secret, "xxxxx")
		}
		return sessionstore.ScrubURLs(s)
	}
}

func passwordsIn(rawURL string) []string {
	var found []string
	add := func(s string) {
		if len(s) >= minRedactedSecret && !slices.Contains(found, s) {
			found = append(found, s)
		}
		if decoded, err := url.PathUnescape(s); err == nil && decoded != s && len(decoded) >= minRedactedSecret && !slices.Contains(found, decoded) {
			found = append(found, decoded)
		}
	}
	// Read the userinfo by hand too: an unparseable URL still has a password.
	if _, rest, ok := strings.Cut(rawURL, "://"); ok {
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, password, ok := strings.Cut(rest[:at], ":"); ok {
				add(password)
			}
		}
	}
	if u, err := url.Parse(rawURL); err == nil {
		if password, ok := u.User.Password(); ok {
			add(password)
		}
		// pgx and libpq also take the password as a query parameter.
		for key, vals := range u.Query() {
			if strings.Contains(strings.ToLower(key), "password") || strings.EqualFold(key, "pass") || strings.EqualFold(key, "pwd") {
				for _, v := range vals {
					add(v)
					add(url.QueryEscape(v))
				}
			}
		}
	}
	// Longest first, so a password containing another is replaced whole.
	slices.SortFunc(found, func(a, b string) int { return len(b) - len(a) })
	return found
}
