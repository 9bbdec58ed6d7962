package redis

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// Flask-Session writes one Redis key per session, KeyPrefix+sid, with SETEX
// (0.3/0.4) or SET EX (0.8), so Redis expires sessions by itself and the
// cleanup deletes nothing. What it does: count the keys under the prefix and
// find the sessions without a TTL, which are leaks that never go away; with
// Config.FixMissingTTL it gives them the session lifetime. Apps keep other
// keys under the same prefix (a "session:sessions_total" counter): a key
// whose id is not a Flask-Session id, or whose value is not a serialized
// session, is never touched, only counted as "notASession".

func init() { sessionstore.Register(sessionstore.BackendRedis, newRedis) }

const redisDefaultBatchSize = 1000

type redisStore struct {
	cfg    sessionstore.Config
	client *redis.Client
}

func newRedis(cfg sessionstore.Config) (sessionstore.Store, error) {
	// The same rules as Config.Validate: one home, in config.go.
	if err := sessionstore.ValidateRedisURL(cfg.URL); err != nil {
		return nil, err
	}
	if err := sessionstore.ValidateFixMissingTTL(cfg); err != nil {
		return nil, err
	}
	opts, err := redis.ParseURL(cfg.URL)
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			// url.Error quotes the whole URL, password included.
			return nil, sessionstore.NewError(sessionstore.ErrConfig, sessionstore.EnvURL, errors.New("not a valid URL (percent-encode any special characters in the user name and password)"))
		}
		return nil, sessionstore.NewError(sessionstore.ErrConfig, sessionstore.EnvURL, err)
	}
	opts.ContextTimeoutEnabled = true
	// CLIENT SETINFO is noise in the server's log on Redis < 7.2.
	opts.DisableIdentity = true
	return &redisStore{cfg: cfg, client: redis.NewClient(opts)}, nil
}

func (s *redisStore) Ping(ctx context.Context) error {
	return redisError("ping redis", s.client.Ping(ctx).Err())
}

func (s *redisStore) EnsureSchema(ctx context.Context) (sessionstore.SchemaResult, error) {
	if err := s.Ping(ctx); err != nil {
		return sessionstore.SchemaResult{}, err
	}
	return sessionstore.SchemaResult{Present: true, Message: "Redis expires sessions by itself; nothing to create"}, nil
}

// Cleanup walks the keys under the prefix with SCAN (never KEYS, never a
// blocking command) and asks each batch's TTLs in one pipeline. SCAN may
// return a key twice while Redis resizes its tables, so on a store that
// changes during the walk the counts are close, not exact; fixing a TTL is
// idempotent and counted only when it happened.
func (s *redisStore) Cleanup(ctx context.Context, opts sessionstore.CleanupOptions) (sessionstore.Report, error) {
	start := time.Now()
	rep := sessionstore.Report{Backend: sessionstore.BackendRedis, DryRun: opts.DryRun, Now: opts.Now, NativeExpiry: true}
	if rep.Now.IsZero() {
		rep.Now = start.UTC()
	}
	batchSize := opts.BatchSizeOr(redisDefaultBatchSize)
	pattern := redisGlobEscape(s.cfg.KeyPrefix) + "*"
	var tally redisTally

	finish := func(err error) (sessionstore.Report, error) {
		tally.addKept(&rep)
		rep.Duration = time.Since(start)
		rep.Message = s.message(rep, tally)
		return rep, err
	}

	var cursor uint64
	for {
		if err := ctx.Err(); err != nil {
			return finish(err)
		}
		keys, next, err := s.client.Scan(ctx, cursor, pattern, int64(batchSize)).Result()
		if err != nil {
			return finish(redisError("scan redis", err))
		}
		if err := s.visitBatch(ctx, keys, opts.DryRun, &rep, &tally); err != nil {
			return finish(err)
		}
		rep.Batches++
		if opts.Progress != nil {
			progress := rep
			progress.Kept = nil
			tally.addKept(&progress)
			opts.ReportProgress(progress, start)
		}
		cursor = next
		if cursor == 0 {
			return finish(nil)
		}
	}
}

// visitBatch counts one SCAN batch's keys and those without a TTL, and
// gives the sessions among them a TTL when asked to.
func (s *redisStore) visitBatch(ctx context.Context, keys []string, dryRun bool, rep *sessionstore.Report, tally *redisTally) error {
	// The prefix check is the last guard: a proxy that ignored MATCH
	// must not make us touch keys that are not sessions.
	sessionKeys := keys[:0]
	for _, key := range keys {
		if strings.HasPrefix(key, s.cfg.KeyPrefix) {
			sessionKeys = append(sessionKeys, key)
		}
	}
	scanned, withoutTTL, err := s.ttls(ctx, sessionKeys)
	if err != nil {
		return err
	}
	rep.Scanned += scanned
	sessions, others, err := s.splitSessions(ctx, withoutTTL)
	if err != nil {
		return err
	}
	tally.noteOthers(others)
	tally.noTTL += int64(len(sessions))
	if !s.cfg.FixMissingTTL || dryRun || len(sessions) == 0 {
		return nil
	}
	n, err := s.fixTTLs(ctx, sessions)
	tally.fixed += n
	return err
}

// ttls returns how many of keys still exist and those that have no TTL.
func (s *redisStore) ttls(ctx context.Context, keys []string) (int64, []string, error) {
	if len(keys) == 0 {
		return 0, nil, nil
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.DurationCmd, len(keys))
	for i, key := range keys {
		cmds[i] = pipe.TTL(ctx, key)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, nil, redisError("read TTLs in redis", err)
	}
	var existing int64
	var withoutTTL []string
	for i, cmd := range cmds {
		// go-redis returns TTL's -1 (no TTL) and -2 (no key) as nanoseconds.
		switch cmd.Val() {
		case -2:
			// Expired or deleted since SCAN saw it.
		case -1:
			existing++
			withoutTTL = append(withoutTTL, keys[i])
		default:
			existing++
		}
	}
	return existing, withoutTTL, nil
}

// fixTTLs gives keys the session lifetime with EXPIRE NX, which sets it only
// while the key still has no TTL: a session the app rewrote meanwhile keeps
// the TTL the app gave it.
func (s *redisStore) fixTTLs(ctx context.Context, keys []string) (int64, error) {
	pipe := s.client.Pipeline()
	cmds := make([]*redis.BoolCmd, len(keys))
	for i, key := range keys {
		cmds[i] = pipe.ExpireNX(ctx, key, s.cfg.Lifetime)
	}
	_, err := pipe.Exec(ctx)
	var fixed int64
	for _, cmd := range cmds {
		if cmd.Err() == nil && cmd.Val() {
			fixed++
		}
	}
	if err != nil {
		if strings.Contains(strings.ToLower(err.Error()), "syntax") {
			return fixed, sessionstore.NewError(sessionstore.ErrUnknown, "fix missing TTLs in redis", fmt.Errorf("EXPIRE ... NX needs Redis 7 or newer: %w", err))
		}
		return fixed, redisError("fix missing TTLs in redis", err)
	}
	return fixed, nil
}

func (s *redisStore) message(rep sessionstore.Report, t redisTally) string {
	msg := fmt.Sprintf("Redis expires sessions by itself; %d keys under the prefix, %d sessions without a TTL", rep.Scanned, t.noTTL)
	switch {
	case t.noTTL == 0:
	case s.cfg.FixMissingTTL && rep.DryRun:
		msg += fmt.Sprintf("; a real run would give them a TTL of %s", s.cfg.Lifetime)
	case s.cfg.FixMissingTTL:
		msg += fmt.Sprintf("; gave %d of them a TTL of %s", t.fixed, s.cfg.Lifetime)
	default:
		msg += " (they never expire; enable fixing missing TTLs to give them the session lifetime)"
	}
	if t.others > 0 {
		msg += fmt.Sprintf("; %d other keys without a TTL are not Flask-Session sessions and are left alone", t.others)
		// Only in a dry run, which is where an operator looks before fixing;
		// names only, never values, and never a session's (its id is a credential).
		if rep.DryRun {
			msg += " (for example " + strings.Join(t.samples, ", ") + ")"
		}
	}
	return msg
}

func (s *redisStore) Close() error { return s.client.Close() }

// redisGlobEscape makes prefix match itself literally in SCAN MATCH.
func redisGlobEscape(prefix string) string {
	var b strings.Builder
	for _, r := range prefix {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// redisError classifies err, telling authentication failures apart by the
// server's own error codes.
func redisError(op string, err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, code := range []string{"WRONGPASS", "NOAUTH", "NOPERM"} {
		if strings.HasPrefix(msg, code) {
			return sessionstore.NewError(sessionstore.ErrAuth, op, err)
		}
	}
	return sessionstore.Classify(op, err)
}
