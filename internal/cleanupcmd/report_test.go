package cleanupcmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

func TestTerminationMessageFitsKubernetesLimit(t *testing.T) {
	report := sessionstore.Report{Backend: "postgresql", Message: strings.Repeat("m", 10000), Deleted: 42}
	for i := range 300 {
		report.AddKept(fmt.Sprintf("reason-number-%03d", i), int64(i+1))
	}
	res := sessionstore.RunResult{
		Report: &report,
		Schema: &sessionstore.SchemaResult{Message: strings.Repeat("s", 5000)},
		Error:  strings.Repeat("é", 6000),
	}
	data := fitTerminationMessage(res)
	if len(data) > terminationMessageLimit {
		t.Fatalf("%d bytes, over %d", len(data), terminationMessageLimit)
	}
	back := decodeResult(t, "fitted message", data)
	if back.Report == nil || back.Deleted != 42 || back.Error == "" {
		t.Errorf("fitting lost the essentials: %s", data)
	}
	if len(report.Message) != 10000 || len(res.Schema.Message) != 5000 {
		t.Error("fitting changed the caller's report")
	}
}

// Outside a pod /dev/termination-log does not exist: the default path is
// written only when present, never created.
func TestDefaultTerminationLogIsNeverCreated(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "termination-log")
	old := defaultTerminationLog
	defaultTerminationLog = missing
	t.Cleanup(func() { defaultTerminationLog = old })

	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := Main(t.Context(), nil, envOf(fsEnv(dir)), &stdout, &stderr); code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("the default termination log was created (stat: %v)", err)
	}
	if strings.Contains(stderr.String(), "termination") {
		t.Errorf("complained about a missing default termination log: %s", stderr.String())
	}

	// Present, as Kubernetes makes it: written.
	if err := os.WriteFile(missing, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := Main(t.Context(), nil, envOf(fsEnv(dir)), &stdout, &stderr); code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	data, _ := os.ReadFile(missing)
	if res := decodeResult(t, "termination log", data); res.Report == nil || res.Backend != "filesystem" {
		t.Errorf("termination log: %s", data)
	}
}

func TestOutputJSONParsesBackAsReport(t *testing.T) {
	dir := t.TempDir()
	writeExpiredFiles(t, dir, 3)
	live := writeSessionFile(t, dir, "session:live", time.Now().Add(time.Hour))
	r := run(t, t.Context(), Main, fsEnv(dir), nil, "--output", "json", "--dry-run")
	if r.code != ExitOK {
		t.Fatalf("want exit 0:\n%s", r)
	}
	var report sessionstore.Report
	if err := json.Unmarshal([]byte(r.stdout), &report); err != nil {
		t.Fatalf("stdout is not a Report: %v\n%s", err, r.stdout)
	}
	if report.Backend != "filesystem" || !report.DryRun || report.Expired != 3 || report.Deleted != 0 || report.Scanned < 4 || report.Now.IsZero() {
		t.Errorf("report: %+v", report)
	}
	if strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("want one JSON line on stdout, got %q", r.stdout)
	}
	if n := countExisting([]string{live}); n != 1 {
		t.Error("dry run deleted a live file")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) < 4 {
		t.Errorf("dry run deleted files: %d left", len(entries))
	}
}

// A store error of kind ClockSkew, whichever backend returns it, ends the
// run with exit 1, its kind in the JSON report and the termination
// message, and a line that says where the grace period is set.
func TestClockSkewErrorMapsToExit1(t *testing.T) {
	termPath := filepath.Join(t.TempDir(), "termination-log")
	var stdout, stderr bytes.Buffer
	inv := &invocation{name: "cleanup", cfg: sessionstore.Config{Backend: "filesystem", GracePeriod: 5 * time.Minute},
		json: true, stdout: &stdout, stderr: &stderr, redact: func(s string) string { return s },
		terminationLog: termPath, terminationLogSet: true}
	skew := sessionstore.NewError(sessionstore.ErrClockSkew, "cleanup", errors.New("this job's clock is 1h ahead of the volume's"))
	report := sessionstore.Report{Backend: "filesystem"}

	if code := inv.fail(sessionstore.RunResult{Report: &report}, skew); code != ExitStoreFailed {
		t.Fatalf("exit %d, want %d", code, ExitStoreFailed)
	}
	wantLine := "cleanup: ClockSkew: cleanup: this job's clock is 1h ahead of the volume's; " +
		"the grace period (5m0s) is set by spec.cleanup.gracePeriod (SESSION_STORE_GRACE_SECONDS, or --grace)\n"
	if stderr.String() != wantLine {
		t.Errorf("stderr:\n got %q\nwant %q", stderr.String(), wantLine)
	}
	term, err := os.ReadFile(termPath)
	if err != nil {
		t.Fatal(err)
	}
	for what, data := range map[string][]byte{"stdout": stdout.Bytes(), "termination message": term} {
		if res := decodeResult(t, what, data); res.ErrorKind != sessionstore.ErrClockSkew || !strings.Contains(res.Error, "--grace") {
			t.Errorf("%s: want errorKind ClockSkew and the grace hint: %s", what, data)
		}
	}
}
