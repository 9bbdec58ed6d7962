package cleanupcmd

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/testservers"
)

// No credential may reach stdout, stderr or the termination message, from
// config errors, refused connections, or a server that rejects the login.
func TestNoCredentialInAnyOutput(t *testing.T) {
	requireServer(t, "redis", "127.0.0.1:6379")
	requireServer(t, "postgresql", "127.0.0.1:5432")
	old := pingTimeout
	pingTimeout = 5 * time.Second
	t.Cleanup(func() { pingTimeout = old })

	// A password with URL-special characters, percent-encoded as it must be:
	// neither form may leak.
	const encoded = "Pw%40cmd%2Fs3cr3t%3A"
	const decoded = "Pw@cmd/s3cr3t:"
	const queryPassword = "QueryPw0rd4cmd"
	port := testservers.FreePort(t)
	for _, tc := range []struct {
		name, backend, url string
		wantKind           sessionstore.ErrorKind
	}{
		{"postgresql refused", "postgresql", fmt.Sprintf("postgresql://cmduser:%s@127.0.0.1:%d/test?sslmode=disable", encoded, port), sessionstore.ErrRefused},
		{"postgresql password in query", "postgresql", fmt.Sprintf("postgres://cmduser@127.0.0.1:%d/test?sslmode=disable&password=%s", port, queryPassword), sessionstore.ErrRefused},
		{"postgresql server rejects", "postgresql", "postgresql://root:" + encoded + "@127.0.0.1:5432/cmd_no_such_database?sslmode=disable", ""},
		{"redis refused", "redis", fmt.Sprintf("redis://:%s@127.0.0.1:%d/0", encoded, port), sessionstore.ErrRefused},
		{"redis server rejects", "redis", "redis://cmduser:" + encoded + "@127.0.0.1:6379/0", sessionstore.ErrAuth},
		{"mongodb refused", "mongodb", fmt.Sprintf("mongodb://cmduser:%s@127.0.0.1:%d/?serverSelectionTimeoutMS=2000", encoded, port), ""},
	} {
		for _, cmd := range []struct {
			name string
			run  subcommand
		}{{"cleanup", Main}, {"check", Check}} {
			for _, output := range []string{"text", "json"} {
				t.Run(tc.name+"/"+cmd.name+"/"+output, func(t *testing.T) {
					env := map[string]string{sessionstore.EnvBackend: tc.backend, sessionstore.EnvURL: tc.url}
					var r runResult
					processStderr := captureProcessStderr(t, func() {
						r = run(t, t.Context(), cmd.run, env, nil, "--output="+output)
					})
					if processStderr != "" {
						t.Errorf("a driver wrote to the process's stderr, past the command's writers: %q", processStderr)
					}
					wantRedactedFailure(t, r, cmd.name, tc.wantKind, encoded, decoded, queryPassword)
				})
			}
		}
	}
}

func TestRedactor(t *testing.T) {
	redact := newRedactor("postgres://u:p%40ss%2Fword@h/db?sslpassword=qqqq1234&password=zz%2Bzz")
	in := "a p@ss/word b p%40ss%2Fword c qqqq1234 d zz+zz e zz%2Bzz f mongodb://x:other@h g"
	out := redact(in)
	for _, secret := range []string{"p@ss/word", "p%40ss%2Fword", "qqqq1234", "zz+zz", "zz%2Bzz", "other"} {
		if strings.Contains(out, secret) {
			t.Errorf("%q survived: %s", secret, out)
		}
	}
	// A URL that does not parse still has its password hidden.
	out = newRedactor("redis://:bad pass%zz@h:1")("dial redis://:bad pass%zz@h:1 failed; password bad pass%zz")
	if strings.Contains(out, "bad pass%zz") {
		t.Errorf("unparseable URL's password survived: %s", out)
	}
}

// wantRedactedFailure checks a failed run: exit 1, no secret anywhere, the
// error (of kind wantKind, when given) in the termination message, and one
// line on stderr.
func wantRedactedFailure(t *testing.T, r runResult, cmdName string, wantKind sessionstore.ErrorKind, secrets ...string) {
	t.Helper()
	if r.code != ExitStoreFailed {
		t.Fatalf("want exit 1:\n%s", r)
	}
	for _, secret := range secrets {
		for where, text := range map[string]string{"stdout": r.stdout, "stderr": r.stderr, "termination message": string(r.termination)} {
			if strings.Contains(text, secret) {
				t.Errorf("%s holds the password %q:\n%s", where, secret, text)
			}
		}
	}
	res := decodeResult(t, "termination message", r.termination)
	if res.Error == "" {
		t.Errorf("termination message has no error: %s", r.termination)
	}
	if wantKind != "" && res.ErrorKind != wantKind {
		t.Errorf("error kind %q, want %q: %s", res.ErrorKind, wantKind, res.Error)
	}
	if lines := strings.Count(r.stderr, "\n"); lines != 1 || !strings.HasPrefix(r.stderr, cmdName+": ") {
		t.Errorf("want one stderr line starting %q, got %q", cmdName+": ", r.stderr)
	}
}
