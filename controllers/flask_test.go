package controllers

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/storetest"
)

// The real Flask-Session, run by the tests as an app would. Cleanup runs
// of a real Pod, by a real kubelet, are in the real-node e2e (test/e2e).

// flaskScript runs one of the Flask-Session scripts with Debian's python.
func flaskScript(t *testing.T, stdin string, script string, args ...string) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Fatalf("/usr/bin/python3 missing: run hack/start-services.sh (make services)")
	}
	cmd := exec.Command("/usr/bin/python3", append([]string{storetest.Script(script)}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %v: %v\n%s", script, args, err, stderr)
	}
	return string(out)
}

type flaskSession struct {
	SID   string `json:"sid"`
	Value string `json:"value"`
}

func parseSessions(t *testing.T, out string) []flaskSession {
	t.Helper()
	var s []flaskSession
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("parsing sessions %q: %v", out, err)
	}
	return s
}

// sidsJSON is the list of session ids the scripts' read command takes.
func sidsJSON(groups ...[]flaskSession) string {
	var sids []string
	for _, g := range groups {
		for _, s := range g {
			sids = append(sids, s.SID)
		}
	}
	data, _ := json.Marshal(sids)
	return string(data)
}
