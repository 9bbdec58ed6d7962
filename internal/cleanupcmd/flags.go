package cleanupcmd

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

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

// hiddenFlags work but are left out of -h: they are for tests.
var hiddenFlags = map[string]bool{"clock-offset": true}

// invocation is one parsed run of a subcommand.
type invocation struct {
	name   string
	cfg    sessionstore.Config
	batch  int
	dryRun bool
	json   bool
	// clockOffset is added to the clock the cleanup compares expiries with
	// (tests only).
	clockOffset time.Duration

	timeout           time.Duration
	terminationLog    string
	terminationLogSet bool

	stdout, stderr io.Writer
	redact         func(string) string
}

// flagValues holds what the flags parse into, until start reads them.
type flagValues struct {
	config        map[string]*string
	batchSize     *string
	fixMissingTTL *bool
	grace         *time.Duration
	clockOffset   *string
	output        *string
}

// start parses flags and configuration. When done is true the run is over
// (help, or bad configuration already reported) and code is its exit code.
func start(name string, args []string, env func(string) (string, bool), stdout, stderr io.Writer) (inv *invocation, code int, done bool) {
	if env == nil {
		env = os.LookupEnv
	}
	silenceRedisOnce.Do(func() { redis.SetLogger(quietRedisLogger{}) })
	inv = &invocation{name: name, terminationLog: defaultTerminationLog}
	fset, values := inv.newFlagSet()

	// Until the URL is known, scrub what looks like one.
	inv.redact = sessionstore.ScrubURLs
	inv.stdout = redactingWriter{stdout, func(s string) string { return inv.redact(s) }}
	inv.stderr = redactingWriter{stderr, func(s string) string { return inv.redact(s) }}

	err := fset.Parse(args)
	// Known even when parsing failed part way, so the failure is written there too.
	fset.Visit(func(f *flag.Flag) { inv.terminationLogSet = inv.terminationLogSet || f.Name == "termination-log" })
	if errors.Is(err, flag.ErrHelp) {
		inv.printUsage(fset)
		return nil, ExitOK, true
	}
	if err != nil {
		return nil, inv.failConfig(err.Error() + " (see " + name + " -h)"), true
	}
	if fset.NArg() > 0 {
		return nil, inv.failConfig(fmt.Sprintf("unexpected argument %q (see %s -h)", fset.Arg(0), name)), true
	}

	lookup, flagOf := overridden(fset, values, env)
	rawURL, _ := lookup(sessionstore.EnvURL)
	inv.redact = newRedactor(rawURL)
	if msg := inv.readOutputFlags(*values.output); msg != "" {
		return nil, inv.failConfig(msg), true
	}
	if err := inv.loadConfig(fset, values, lookup); err != nil {
		return nil, inv.failConfig(describeConfigError(err, flagOf)), true
	}
	return inv, 0, false
}

func (inv *invocation) newFlagSet() (*flag.FlagSet, *flagValues) {
	fset := flag.NewFlagSet(inv.name, flag.ContinueOnError)
	fset.SetOutput(io.Discard)
	fset.Usage = func() {}
	values := &flagValues{config: map[string]*string{}}
	for _, f := range configFlags {
		values.config[f.flag] = fset.String(f.flag, "", f.usage+" (overrides "+f.key+")")
	}
	if inv.name == "cleanup" {
		values.batchSize = fset.String("batch-size", "", fmt.Sprintf("sessions per batch, 1..%d (overrides %s; default %d)", MaxBatchSize, sessionstore.EnvBatchSize, DefaultBatchSize))
		values.fixMissingTTL = fset.Bool("fix-missing-ttl", false, "Redis: give sessions without a TTL the session lifetime; other keys are left alone (overrides "+sessionstore.EnvFixMissingTTL+")")
		values.grace = fset.Duration("grace", sessionstore.DefaultGracePeriod, "delete only sessions expired at least this long ago, 0 to 24h, e.g. 5m or 0 (overrides "+sessionstore.EnvGraceSeconds+", in seconds there)")
		values.clockOffset = fset.String("clock-offset", "", "for tests only: shift the cleanup's clock by this duration, e.g. -2h (overrides "+EnvTestClockOffset+")")
		fset.BoolVar(&inv.dryRun, "dry-run", false, "count what would be deleted or created; change nothing")
	}
	values.output = fset.String("output", "text", "report format: text or json")
	fset.DurationVar(&inv.timeout, "timeout", 0, "overall deadline, e.g. 10m (0: none)")
	fset.StringVar(&inv.terminationLog, "termination-log", defaultTerminationLog, "file the JSON report is written to when writable (empty: none)")
	return fset, values
}

// printUsage lists every flag but the hidden ones.
func (inv *invocation) printUsage(fset *flag.FlagSet) {
	fmt.Fprintf(inv.stdout, "Usage: %s [flags]\n\nEach flag overrides the environment variable it names.\n\n", inv.name)
	shown := flag.NewFlagSet(inv.name, flag.ContinueOnError)
	fset.VisitAll(func(f *flag.Flag) {
		if !hiddenFlags[f.Name] {
			shown.Var(f.Value, f.Name, f.Usage)
		}
	})
	shown.SetOutput(inv.stdout)
	shown.PrintDefaults()
}

// overridden returns a lookup in which the flags given win over env, and
// the flag that set each key, for messages.
func overridden(fset *flag.FlagSet, values *flagValues, env func(string) (string, bool)) (lookup func(string) (string, bool), flagOf map[string]string) {
	overrides := map[string]string{}
	flagOf = map[string]string{}
	set := func(key, flagName, value string) {
		overrides[key] = value
		flagOf[key] = "--" + flagName
	}
	fset.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "batch-size":
			set(sessionstore.EnvBatchSize, f.Name, *values.batchSize)
		case "fix-missing-ttl":
			set(sessionstore.EnvFixMissingTTL, f.Name, strconv.FormatBool(*values.fixMissingTTL))
		case "clock-offset":
			set(EnvTestClockOffset, f.Name, *values.clockOffset)
		case "grace":
			// Set on the Config after parsing: a duration, not seconds.
			flagOf[sessionstore.EnvGraceSeconds] = "--grace"
		}
		for _, cf := range configFlags {
			if cf.flag == f.Name {
				set(cf.key, cf.flag, *values.config[cf.flag])
			}
		}
	})
	lookup = func(key string) (string, bool) {
		if v, ok := overrides[key]; ok {
			return v, true
		}
		return env(key)
	}
	return lookup, flagOf
}

// readOutputFlags checks --output and --timeout; it returns what is wrong.
func (inv *invocation) readOutputFlags(output string) string {
	switch output {
	case "text":
	case "json":
		inv.json = true
	default:
		return fmt.Sprintf("--output: %q is not text or json", output)
	}
	if inv.timeout < 0 {
		return fmt.Sprintf("--timeout: %s is negative", inv.timeout)
	}
	return ""
}

// loadConfig reads and validates the Config, and for a cleanup its batch
// size, grace period and clock offset.
func (inv *invocation) loadConfig(fset *flag.FlagSet, values *flagValues, lookup func(string) (string, bool)) error {
	cfg, err := sessionstore.ConfigFromEnv(lookup)
	if err != nil {
		return err
	}
	if isSet(fset, "grace") {
		cfg.GracePeriod = *values.grace
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	inv.cfg = cfg
	if inv.name != "cleanup" {
		return nil
	}
	if inv.batch, err = batchSizeFrom(lookup); err != nil {
		return err
	}
	inv.clockOffset, err = clockOffsetFrom(lookup)
	return err
}

func isSet(fset *flag.FlagSet, name string) bool {
	found := false
	fset.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
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

// clockOffsetFrom reads the test-only clock offset, a signed Go duration.
func clockOffsetFrom(lookup func(string) (string, bool)) (time.Duration, error) {
	raw, _ := lookup(EnvTestClockOffset)
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil {
		return 0, &sessionstore.Error{Kind: sessionstore.ErrConfig, Op: EnvTestClockOffset,
			Err: fmt.Errorf("%q is not a duration such as -2h or 90s", raw)}
	}
	return d, nil
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
