package sessionstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
)

// Classify wraps err as an *Error whose Kind says what failed at the network
// level (DNS, refused, timeout, TLS). Backends call it for errors their driver
// returns and set ErrAuth or ErrMissingTable themselves where they can tell.
// The message is scrubbed of anything that looks like a URL's credentials.
func Classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var se *Error
	if errors.As(err, &se) {
		return err
	}
	return &Error{Kind: ClassifyKind(err), Op: op, Err: scrubbed{err}}
}

// NewError builds an *Error of a known kind.
func NewError(kind ErrorKind, op string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: kind, Op: op, Err: scrubbed{err}}
}

// KindOf returns the kind of a store error, ErrUnknown for any other error.
func KindOf(err error) ErrorKind {
	var se *Error
	if errors.As(err, &se) {
		return se.Kind
	}
	return ErrUnknown
}

// ClassifyKind tells a network-level failure (DNS, refused, timeout, TLS)
// apart, from its error chain or, failing that, its message.
func ClassifyKind(err error) ErrorKind {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.As(err, &dnsErr):
		return ErrDNS
	case errors.Is(err, syscall.ECONNREFUSED):
		return ErrRefused
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return ErrTimeout
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr), errors.As(err, &recordErr):
		return ErrTLS
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return ErrTimeout
	}
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "connection refused"):
		return ErrRefused
	case strings.Contains(msg, "no such host"):
		return ErrDNS
	case strings.Contains(msg, "timeout"), strings.Contains(msg, "deadline exceeded"):
		return ErrTimeout
	case strings.Contains(msg, "tls"), strings.Contains(msg, "x509"), strings.Contains(msg, "certificate"):
		return ErrTLS
	case strings.Contains(msg, "auth"), strings.Contains(msg, "password"), strings.Contains(msg, "noperm"),
		strings.Contains(msg, "wrongpass"):
		return ErrAuth
	}
	return ErrUnknown
}

// scrubbed hides URL userinfo that a driver may have put in its message.
type scrubbed struct{ err error }

func (s scrubbed) Error() string { return ScrubURLs(s.err.Error()) }
func (s scrubbed) Unwrap() error { return s.err }

// ScrubURLs replaces the password of every URL in s with "xxxxx".
func ScrubURLs(s string) string {
	fields := strings.Fields(s)
	for _, f := range fields {
		trimmed := strings.Trim(f, `"'()[]{},;`)
		if !strings.Contains(trimmed, "://") || !strings.Contains(trimmed, "@") {
			continue
		}
		u, err := url.Parse(trimmed)
		if err != nil || u.User == nil {
			// Unparseable: drop everything between the scheme and the last '@'.
			i := strings.Index(trimmed, "://")
			j := strings.LastIndex(trimmed, "@")
			if i >= 0 && j > i {
				s = strings.ReplaceAll(s, trimmed, trimmed[:i+3]+"xxxxx"+trimmed[j:])
			}
			continue
		}
		if _, has := u.User.Password(); has {
			s = strings.ReplaceAll(s, trimmed, u.Redacted())
		}
	}
	return s
}
