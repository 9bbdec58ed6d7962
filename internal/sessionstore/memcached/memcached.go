package memcached

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// Flask-Session stores each session in memcached with the session lifetime
// as its expiry, and memcached cannot list its keys: there is nothing to
// clean, only servers to reach.

func init() { sessionstore.Register(sessionstore.BackendMemcached, newMemcached) }

// memcachedDefaultTimeout bounds each server's answer when ctx has no deadline.
const memcachedDefaultTimeout = 5 * time.Second

type memcachedStore struct {
	servers []string
}

func newMemcached(cfg sessionstore.Config) (sessionstore.Store, error) {
	servers, err := memcachedServers(cfg.URL)
	if err != nil {
		return nil, err
	}
	return &memcachedStore{servers: servers}, nil
}

// memcachedServers reads memcached://host:port[,host:port...]; a server
// without a port gets memcached's 11211. Messages count servers rather than
// quote the URL.
func memcachedServers(raw string) ([]string, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || !strings.EqualFold(scheme, "memcached") {
		return nil, sessionstore.NewError(sessionstore.ErrConfig, sessionstore.EnvURL, errors.New("want memcached://host:port[,host:port...]"))
	}
	if strings.Contains(rest, "@") {
		return nil, sessionstore.NewError(sessionstore.ErrConfig, sessionstore.EnvURL, errors.New("memcached takes no user or password in its URL"))
	}
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" {
		return nil, sessionstore.NewError(sessionstore.ErrConfig, sessionstore.EnvURL, errors.New("no server in the memcached:// URL"))
	}
	parts := strings.Split(rest, ",")
	servers := make([]string, 0, len(parts))
	for i, server := range parts {
		host, port, err := net.SplitHostPort(server)
		if err != nil {
			// No port given ("cache" or "[::1]"): use the default one.
			host, port = strings.TrimSuffix(strings.TrimPrefix(server, "["), "]"), "11211"
		}
		if n, err := strconv.Atoi(port); host == "" || strings.ContainsAny(host, "/[]") || err != nil || n < 1 || n > 65535 {
			return nil, sessionstore.NewError(sessionstore.ErrConfig, sessionstore.EnvURL, fmt.Errorf("server %d of %d is not host:port", i+1, len(parts)))
		}
		servers = append(servers, net.JoinHostPort(host, port))
	}
	return servers, nil
}

// Ping asks every server for its version: Flask-Session spreads sessions
// over all of them, so one that is down loses its share.
func (s *memcachedStore) Ping(ctx context.Context) error {
	for _, server := range s.servers {
		if err := s.pingServer(ctx, server); err != nil {
			return err
		}
	}
	return nil
}

func (s *memcachedStore) pingServer(ctx context.Context, server string) error {
	op := "ping memcached " + server
	if err := ctx.Err(); err != nil {
		return sessionstore.Classify(op, err)
	}
	// The server list resolves names here, not in New, so a name that
	// resolves later (a Service not yet created) is not a config error.
	var list memcache.ServerList
	if err := list.SetServers(server); err != nil {
		return sessionstore.Classify(op, err)
	}
	client := memcache.NewFromSelector(&list)
	defer client.Close()
	client.Timeout = memcachedDefaultTimeout
	if deadline, ok := ctx.Deadline(); ok {
		client.Timeout = max(time.Until(deadline), time.Millisecond)
	}
	// gomemcache takes no context; its Timeout bounds the call and the
	// goroutine ends with it.
	done := make(chan error, 1)
	go func() { done <- client.Ping() }()
	select {
	case err := <-done:
		return sessionstore.Classify(op, err)
	case <-ctx.Done():
		return sessionstore.Classify(op, ctx.Err())
	}
}

func (s *memcachedStore) EnsureSchema(ctx context.Context) (sessionstore.SchemaResult, error) {
	if err := s.Ping(ctx); err != nil {
		return sessionstore.SchemaResult{}, err
	}
	return sessionstore.SchemaResult{Present: true, Message: "memcached expires sessions by itself; nothing to create"}, nil
}

// Cleanup deletes nothing; it checks that every server answers, so a
// cleanup job against a dead memcached fails instead of reporting success.
func (s *memcachedStore) Cleanup(ctx context.Context, opts sessionstore.CleanupOptions) (sessionstore.Report, error) {
	start := time.Now()
	rep := sessionstore.Report{Backend: sessionstore.BackendMemcached, DryRun: opts.DryRun, Now: opts.Now, NativeExpiry: true}
	if rep.Now.IsZero() {
		rep.Now = start.UTC()
	}
	err := s.Ping(ctx)
	rep.Duration = time.Since(start)
	if err != nil {
		return rep, err
	}
	rep.Message = fmt.Sprintf("memcached expires sessions by itself and cannot list them; nothing to clean (%d servers answered)", len(s.servers))
	return rep, nil
}

func (s *memcachedStore) Close() error { return nil }
