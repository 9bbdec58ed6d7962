// Package cleanupcmd is the operator binary's `cleanup` and `check`
// subcommands: what the cleanup CronJob's container runs, configured by the
// connection Secret's keys (sessionstore/env.go) and flags that override them.
//
// Exit codes: 0 success, 1 the store failed (or the run stopped early on a
// signal or its deadline, or the clocks disagree), 2 bad configuration.
// Every message names what is wrong and none holds a credential: all output
// passes through a redactor that knows the URL's password.
//
// The code is split by concern: flags.go (flags and configuration), run.go
// (the cleanup run), check.go, stop.go (signals, deadline, stopping at a
// batch boundary), progress.go, report.go (summary, JSON and termination
// message) and redact.go.
package cleanupcmd

import (
	"context"
	"io"
	"time"

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

	// EnvTestClockOffset shifts the clock a cleanup compares expiries with
	// (a Go duration, e.g. "-2h"), as --clock-offset does. For tests only:
	// it lets a test play a pod whose clock is wrong.
	EnvTestClockOffset = "SESSION_STORE_TEST_CLOCK_OFFSET"

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
