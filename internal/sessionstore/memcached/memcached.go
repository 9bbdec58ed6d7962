package memcached

import (
	"context"
	"fmt"
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
	// The same rules as Config.Validate: one home, in config.go.
	servers, err := sessionstore.MemcachedServers(cfg.URL)
	if err != nil {
		return nil, err
	}
	return &memcachedStore{servers: servers}, nil
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
