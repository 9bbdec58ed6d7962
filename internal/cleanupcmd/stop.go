package cleanupcmd

import (
	"context"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

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

// stoppedEarly reports a run that a stop (signal, deadline, caller) ended
// before it finished: exit 1, and counts of what it did.
func (inv *invocation) stoppedEarly(stopCtx context.Context, stopper *batchStopper, res sessionstore.RunResult) int {
	reason := stopReason(stopCtx)
	if stopper.ctx.Err() != nil {
		reason = stopReason(stopper.ctx) // says when the grace ran out
	}
	res.StoppedEarly = true
	res.Error = fmt.Sprintf("stopped early (%s) after %s: %s; rerun to finish",
		reason, batchesOf(res.Report.Batches), countsOf(*res.Report))
	res.ErrorKind = sessionstore.ErrTimeout
	fmt.Fprintf(inv.stderr, "%s: %s\n", inv.name, oneLine(res.Error))
	inv.emit(res)
	return ExitStoreFailed
}
