// Package storetest holds what the backends' tests share: a store closed when
// the test ends, and a real Flask-Session (Debian's python3 packages, run with
// /usr/bin/python3) driven through the scripts in testdata/, one per backend,
// each with `write ... COUNT` and `read ...` commands. Only tests import it.
package storetest

import (
	"encoding/json"
	"net/url"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// Python is Debian's interpreter, the one with Flask-Session; the python3
// first on PATH may be another.
const Python = "/usr/bin/python3"

// Script is the absolute path of testdata/<name>, so tests in any package
// can run it.
func Script(name string) string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "testdata", name)
}

// NewStore is sessionstore.New(cfg), closed when the test ends.
func NewStore(t testing.TB, cfg sessionstore.Config) sessionstore.Store {
	t.Helper()
	store, err := sessionstore.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// FlaskSession is a session the real app wrote: its id and stored value.
type FlaskSession struct {
	SID   string `json:"sid"`
	Value string `json:"value"`
}

// RunFlask runs testdata/<script> and returns its stdout; the test fails,
// loudly, when Flask-Session is not installed.
func RunFlask(t testing.TB, script, stdin string, args ...string) []byte {
	t.Helper()
	return RunFlaskAs(t, 0, script, stdin, args...)
}

// RunFlaskAs is RunFlask as the app's uid (0: as the test runs), for
// stores whose files the app owns.
func RunFlaskAs(t testing.TB, uid int, script, stdin string, args ...string) []byte {
	t.Helper()
	argv := append([]string{Script(script)}, args...)
	cmd := exec.Command(Python, argv...)
	if uid != 0 {
		id := strconv.Itoa(uid)
		cmd = exec.Command("setpriv", append([]string{"--reuid", id, "--regid", id, "--clear-groups", Python}, argv...)...)
	}
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s\n(the real Flask-Session comes from Debian's packages: run hack/start-services.sh)",
			script, redacted(args), err, stderr.String())
	}
	return out
}

// SIDsJSON is the list of session ids the scripts' read command takes.
func SIDsJSON(groups ...[]FlaskSession) string {
	var sids []string
	for _, g := range groups {
		for _, s := range g {
			sids = append(sids, s.SID)
		}
	}
	data, _ := json.Marshal(sids)
	return string(data)
}

// redacted is args with the password of any URL among them masked, so a
// failure does not print the test's credentials.
func redacted(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if u, err := url.Parse(a); err == nil && u.User != nil {
			out[i] = u.Redacted()
		}
	}
	return out
}

// FlaskWrite runs the script's write command, which prints the sessions it
// made, and checks it made count of them.
func FlaskWrite(t testing.TB, script string, count int, args ...string) []FlaskSession {
	t.Helper()
	out := RunFlask(t, script, "", append([]string{"write"}, args...)...)
	var sessions []FlaskSession
	if err := json.Unmarshal(out, &sessions); err != nil || len(sessions) != count {
		t.Fatalf("%s wrote %d sessions, want %d (%v): %s", script, len(sessions), count, err, out)
	}
	return sessions
}

// FlaskRead runs the script's read command: what the app reads back for
// each session (nil when it finds none).
func FlaskRead(t testing.TB, script string, sessions []FlaskSession, args ...string) map[string]*string {
	t.Helper()
	sids := make([]string, len(sessions))
	for i, s := range sessions {
		sids[i] = s.SID
	}
	in, _ := json.Marshal(sids)
	out := RunFlask(t, script, string(in), append([]string{"read"}, args...)...)
	var read map[string]*string
	if err := json.Unmarshal(out, &read); err != nil {
		t.Fatalf("%s read: %v: %s", script, err, out)
	}
	return read
}

// WantKind fails the test unless err is a store error of kind want.
func WantKind(t testing.TB, err error, want sessionstore.ErrorKind) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", want)
	}
	if got := sessionstore.KindOf(err); got != want {
		t.Fatalf("got kind %s (%v), want %s", got, err, want)
	}
}
