package sessionstore

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The interop tests drive a real Flask-Session (Debian's python3 packages,
// run with /usr/bin/python3) through the scripts in testdata/, one per
// backend, each with `write ... COUNT` and `read ...` commands.

// flaskPython is Debian's interpreter, the one with Flask-Session; the
// python3 first on PATH may be another.
const flaskPython = "/usr/bin/python3"

// newTestStore is New(cfg), closed when the test ends.
func newTestStore(t testing.TB, cfg Config) Store {
	t.Helper()
	store, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// flaskSession is a session the real app wrote: its id and stored value.
type flaskSession struct {
	SID   string `json:"sid"`
	Value string `json:"value"`
}

// runFlask runs testdata/<script> and returns its stdout; the test fails,
// loudly, when Flask-Session is not installed.
func runFlask(t testing.TB, script, stdin string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(flaskPython, append([]string{filepath.Join("testdata", script)}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s\n(the real Flask-Session comes from Debian's packages: run hack/start-services.sh)",
			script, args, err, stderr.String())
	}
	return out
}

// flaskWrite runs the script's write command, which prints the sessions it
// made, and checks it made count of them.
func flaskWrite(t testing.TB, script string, count int, args ...string) []flaskSession {
	t.Helper()
	out := runFlask(t, script, "", append([]string{"write"}, args...)...)
	var sessions []flaskSession
	if err := json.Unmarshal(out, &sessions); err != nil || len(sessions) != count {
		t.Fatalf("%s wrote %d sessions, want %d (%v): %s", script, len(sessions), count, err, out)
	}
	return sessions
}

// flaskRead runs the script's read command: what the app reads back for
// each session (nil when it finds none).
func flaskRead(t testing.TB, script string, sessions []flaskSession, args ...string) map[string]*string {
	t.Helper()
	sids := make([]string, len(sessions))
	for i, s := range sessions {
		sids[i] = s.SID
	}
	in, _ := json.Marshal(sids)
	out := runFlask(t, script, string(in), append([]string{"read"}, args...)...)
	var read map[string]*string
	if err := json.Unmarshal(out, &read); err != nil {
		t.Fatalf("%s read: %v: %s", script, err, out)
	}
	return read
}
