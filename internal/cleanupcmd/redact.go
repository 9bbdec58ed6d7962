package cleanupcmd

import (
	"context"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// quietRedisLogger drops go-redis's own log lines (dial retries), which it
// writes straight to the process's stderr, past the redactor; the error it
// finally returns says the same and is reported on one line.
type quietRedisLogger struct{}

func (quietRedisLogger) Printf(context.Context, string, ...any) {}

var silenceRedisOnce sync.Once

// redactingWriter passes every write through redact; callers write whole
// lines, so a secret is never split across writes.
type redactingWriter struct {
	w      io.Writer
	redact func(string) string
}

func (r redactingWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(r.w, r.redact(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// newRedactor hides rawURL's password wherever it shows up, whether a
// driver quoted the URL, the password alone, or its percent-decoded form,
// and then whatever else looks like a URL with credentials.
func newRedactor(rawURL string) func(string) string {
	secrets := passwordsIn(rawURL)
	return func(s string) string {
		for _, secret := range secrets {
			s = strings.ReplaceAll(s, secret, "xxxxx")
		}
		return sessionstore.ScrubURLs(s)
	}
}

func passwordsIn(rawURL string) []string {
	var found []string
	add := func(s string) {
		if len(s) >= minRedactedSecret && !slices.Contains(found, s) {
			found = append(found, s)
		}
		if decoded, err := url.PathUnescape(s); err == nil && decoded != s && len(decoded) >= minRedactedSecret && !slices.Contains(found, decoded) {
			found = append(found, decoded)
		}
	}
	// Read the userinfo by hand too: an unparseable URL still has a password.
	if _, rest, ok := strings.Cut(rawURL, "://"); ok {
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, password, ok := strings.Cut(rest[:at], ":"); ok {
				add(password)
			}
		}
	}
	if u, err := url.Parse(rawURL); err == nil {
		if password, ok := u.User.Password(); ok {
			add(password)
		}
		// pgx and libpq also take the password as a query parameter.
		for key, vals := range u.Query() {
			if strings.Contains(strings.ToLower(key), "password") || strings.EqualFold(key, "pass") || strings.EqualFold(key, "pwd") {
				for _, v := range vals {
					add(v)
					add(url.QueryEscape(v))
				}
			}
		}
	}
	// Longest first, so a password containing another is replaced whole.
	slices.SortFunc(found, func(a, b string) int { return len(b) - len(a) })
	return found
}
