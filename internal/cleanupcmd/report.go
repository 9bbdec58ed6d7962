package cleanupcmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

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

func (inv *invocation) fail(res sessionstore.RunResult, err error) int {
	res.Error, res.ErrorKind = err.Error(), sessionstore.KindOf(err)
	line := describeStoreError(err)
	if res.ErrorKind == sessionstore.ErrClockSkew {
		// The one store error whose fix is outside the store: say where.
		hint := inv.clockSkewHint()
		res.Error += "; " + hint
		line += "; " + hint
	}
	fmt.Fprintf(inv.stderr, "%s: %s\n", inv.name, line)
	inv.emit(res)
	return exitCodeOf(err)
}

// clockSkewHint says where the grace period that the skew exceeded is set.
func (inv *invocation) clockSkewHint() string {
	return fmt.Sprintf("the grace period (%s) is set by spec.cleanup.gracePeriod (%s, or --grace)",
		inv.cfg.GracePeriod, sessionstore.EnvGraceSeconds)
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
