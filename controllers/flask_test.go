package controllers

import (
	"encoding/json"
	"testing"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/storetest"
)

// The real Flask-Session, run by the tests as an app would. Cleanup runs
// of a real Pod, by a real kubelet, are in the real-node e2e (test/e2e).

// flaskScript runs one of the Flask-Session scripts with Debian's python.
func flaskScript(t *testing.T, stdin string, script string, args ...string) string {
	t.Helper()
	return string(storetest.RunFlask(t, script, stdin, args...))
}

type flaskSession = storetest.FlaskSession

func parseSessions(t *testing.T, out string) []flaskSession {
	t.Helper()
	var s []flaskSession
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("parsing sessions %q: %v", out, err)
	}
	return s
}

// sidsJSON is the list of session ids the scripts' read command takes.
func sidsJSON(groups ...[]flaskSession) string { return storetest.SIDsJSON(groups...) }
