package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/storetest"
	"github.com/sessionstore/sessionstore-operator/internal/testservers"
)

// The tests use the Redis that hack/start-services.sh starts; each one works
// under a key prefix of its own.
const redisTestURL = "redis://127.0.0.1:6379/0"

// redisTestClient returns a plain client for setting up and checking keys, and
// fails the test when Redis is not running.
func redisTestClient(t *testing.T) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(redisTestURL)
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opts)
	t.Cleanup(func() { client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis is not reachable at %s (%v); run hack/start-services.sh", redisTestURL, err)
	}
	return client
}

// redisTestPrefix returns a prefix of this test's own (extra is put in front
// of its random part) and deletes every key under it when the test ends.
func redisTestPrefix(t *testing.T, client *redis.Client, extra string) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	prefix := "sstest:" + extra + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := client.Scan(ctx, 0, redisGlobEscape(prefix)+"*", 1000).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
	})
	return prefix
}

func redisTestStore(t *testing.T, cfg sessionstore.Config) sessionstore.Store {
	t.Helper()
	cfg.Backend = sessionstore.BackendRedis
	if cfg.URL == "" {
		cfg.URL = redisTestURL
	}
	if cfg.Lifetime == 0 {
		cfg.Lifetime = time.Hour
	}
	return storetest.NewStore(t, cfg)
}

// redisFlaskWrite has the real Flask-Session write count sessions.
func redisFlaskWrite(t *testing.T, prefix string, lifetime time.Duration, count int) []storetest.FlaskSession {
	t.Helper()
	return storetest.FlaskWrite(t, "flask_redis_sessions.py", count, redisTestURL, prefix, fmt.Sprint(int(lifetime.Seconds())), fmt.Sprint(count))
}

// redisFlaskRead returns what the real Flask-Session app reads for each sid.
func redisFlaskRead(t *testing.T, prefix string, sessions []storetest.FlaskSession) map[string]*string {
	t.Helper()
	return storetest.FlaskRead(t, "flask_redis_sessions.py", sessions, redisTestURL, prefix)
}

// pickledEmptySession is what Flask-Session 0.3 (pickle protocol 4) stores
// for a session holding nothing, such as a health check's.
const pickledEmptySession = "\x80\x04}\x94."

// redisSetLeakedSession writes, without a TTL, a key that looks in every way
// like a Flask-Session session (a uuid4 id, a pickled value) and returns it.
func redisSetLeakedSession(t *testing.T, client *redis.Client, prefix string) string {
	t.Helper()
	key := prefix + redisTestUUID4(t)
	if err := client.Set(context.Background(), key, pickledEmptySession, 0).Err(); err != nil {
		t.Fatal(err)
	}
	return key
}

func redisTestUUID4(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func TestRedisPing(t *testing.T) {
	redisTestClient(t)
	ctx := context.Background()

	if err := redisTestStore(t, sessionstore.Config{}).Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}

	t.Run("refused", func(t *testing.T) {
		err := redisTestStore(t, sessionstore.Config{URL: "redis://" + testservers.FreeAddr(t) + "/0"}).Ping(ctx)
		storetest.WantKind(t, err, sessionstore.ErrRefused)
	})
	t.Run("dns", func(t *testing.T) {
		err := redisTestStore(t, sessionstore.Config{URL: "redis://no-such-host.invalid:6379/0"}).Ping(ctx)
		storetest.WantKind(t, err, sessionstore.ErrDNS)
	})
	t.Run("timeout", func(t *testing.T) {
		// A listener that accepts and never answers.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		err = redisTestStore(t, sessionstore.Config{URL: "redis://" + ln.Addr().String() + "/0"}).Ping(tctx)
		storetest.WantKind(t, err, sessionstore.ErrTimeout)
	})
	t.Run("tls certificate not trusted", func(t *testing.T) {
		// Any TLS server with a self-signed certificate fails the handshake
		// before a Redis command is sent.
		srv := httptest.NewUnstartedServer(http.NotFoundHandler())
		srv.StartTLS()
		defer srv.Close()
		err := redisTestStore(t, sessionstore.Config{URL: "rediss://" + srv.Listener.Addr().String() + "/0"}).Ping(ctx)
		storetest.WantKind(t, err, sessionstore.ErrTLS)
	})
}

// redisClosedAddr returns a loopback address nothing listens on.
func TestRedisConfigErrors(t *testing.T) {
	secret := "s3cr%t"
	for name, cfg := range map[string]sessionstore.Config{
		"no url":                  {},
		"bad scheme":              {URL: "http://h:6379"},
		"unparsable url":          {URL: "redis://u:" + secret + "@h:6379/0"},
		"fix with no prefix":      {URL: redisTestURL, FixMissingTTL: true, Lifetime: time.Hour},
		"fix without a lifetime":  {URL: redisTestURL, KeyPrefix: "session:", FixMissingTTL: true, Lifetime: -1},
		"database is not numeric": {URL: "redis://h:6379/x"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.Backend = sessionstore.BackendRedis
			_, err := sessionstore.New(cfg)
			storetest.WantKind(t, err, sessionstore.ErrConfig)
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error quotes the password: %v", err)
			}
		})
	}
}

func TestRedisErrorKinds(t *testing.T) {
	// The server's own codes; WRONGPASS is also seen live in TestRedisAuth.
	for msg, want := range map[string]sessionstore.ErrorKind{
		"WRONGPASS invalid username-password pair or user is disabled.": sessionstore.ErrAuth,
		"NOAUTH Authentication required.":                               sessionstore.ErrAuth,
		"NOPERM this user has no permissions to run the 'scan' command": sessionstore.ErrAuth,
		"LOADING Redis is loading the dataset in memory":                sessionstore.ErrUnknown,
	} {
		if got := sessionstore.KindOf(redisError("op", errors.New(msg))); got != want {
			t.Errorf("%q: got %s, want %s", msg, got, want)
		}
	}
}

func TestRedisCleanupCountsFlaskSessions(t *testing.T) {
	client := redisTestClient(t)
	ctx := context.Background()
	prefix := redisTestPrefix(t, client, "")
	other := redisTestPrefix(t, client, "other")

	sessions := redisFlaskWrite(t, prefix, time.Hour, 7)
	// A leak: a session the real app wrote whose TTL was lost, and a key
	// outside the prefix.
	leaked := prefix + sessions[0].SID
	if err := client.Persist(ctx, leaked).Err(); err != nil {
		t.Fatal(err)
	}
	sessions = sessions[1:]
	if err := client.Set(ctx, other+redisTestUUID4(t), pickledEmptySession, 0).Err(); err != nil {
		t.Fatal(err)
	}
	// The app's own keys under the prefix, none of them a session.
	appKeys := redisSetAppKeys(t, client, prefix)

	count := func(t *testing.T, cfg sessionstore.Config, dryRun bool) sessionstore.Report {
		t.Helper()
		cfg.KeyPrefix = prefix
		return redisCountRun(t, cfg, dryRun, int64(7+len(appKeys)), int64(len(appKeys)))
	}
	ttl := func(key string) time.Duration { return client.TTL(ctx, key).Val() }

	rep := count(t, sessionstore.Config{}, false)
	if rep.Kept["noTTL"] != 1 || rep.Kept["ttlFixed"] != 0 || !strings.Contains(rep.Message, "1 sessions without a TTL") {
		t.Fatalf("report %+v: want the one session without a TTL counted and not fixed", rep)
	}
	if ttl(leaked) != -1 {
		t.Fatalf("the key without a TTL got one without FixMissingTTL")
	}

	rep = count(t, sessionstore.Config{FixMissingTTL: true, Lifetime: 2 * time.Hour}, true)
	if rep.Kept["noTTL"] != 1 || ttl(leaked) != -1 {
		t.Fatalf("dry run %+v changed a TTL or lost the count", rep)
	}
	// The dry run names a few of the keys it leaves alone, never a session.
	if !strings.Contains(rep.Message, `"`+prefix+`sessions_total"`) || strings.Contains(rep.Message, sessions[0].SID) || strings.Contains(rep.Message, leaked) {
		t.Fatalf("dry run message %q: want the app keys' names as samples and no session id", rep.Message)
	}

	rep = count(t, sessionstore.Config{FixMissingTTL: true, Lifetime: 2 * time.Hour}, false)
	if rep.Kept["ttlFixed"] != 1 || rep.Kept["noTTL"] != 0 || !strings.Contains(rep.Message, "gave 1") {
		t.Fatalf("report %+v: want the session without a TTL fixed", rep)
	}
	if got := ttl(leaked); got < 2*time.Hour-time.Minute || got > 2*time.Hour {
		t.Fatalf("fixed key has TTL %s, want the lifetime of 2h", got)
	}
	for _, key := range appKeys {
		if got := ttl(key); got != -1 {
			t.Errorf("app key %s got a TTL of %s", key, got)
		}
	}
	if n, _ := client.Get(ctx, prefix+"sessions_total").Int(); n != 42 {
		t.Errorf("the app's counter reads %d, want 42", n)
	}
	redisCheckUntouched(t, client, other, sessions, prefix)
}

// redisCountRun runs a cleanup in batches of 2 and checks what every run
// must report: scanned keys, nothing deleted, the app's keys not sessions,
// and progress after each batch.
func redisCountRun(t *testing.T, cfg sessionstore.Config, dryRun bool, scanned, notSessions int64) sessionstore.Report {
	t.Helper()
	var progress int
	rep, err := redisTestStore(t, cfg).Cleanup(context.Background(), sessionstore.CleanupOptions{BatchSize: 2, DryRun: dryRun, Progress: func(sessionstore.Report) { progress++ }})
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if rep.Scanned != scanned || rep.Deleted != 0 || rep.Expired != 0 || !rep.NativeExpiry {
		t.Fatalf("report %+v: want %d scanned, nothing expired or deleted, native expiry", rep, scanned)
	}
	if rep.Kept["notASession"] != notSessions {
		t.Fatalf("report %+v: want the %d app keys kept as notASession", rep, notSessions)
	}
	if rep.Batches < 2 || progress != rep.Batches {
		t.Fatalf("%d batches, %d progress calls: want several batches of 2, each reported", rep.Batches, progress)
	}
	return rep
}

// redisSetAppKeys writes keys an app keeps beside its sessions, without a
// TTL: a counter, a hash, and a string whose name has a session id's shape
// but whose value is no session.
func redisSetAppKeys(t *testing.T, client *redis.Client, prefix string) []string {
	t.Helper()
	ctx := context.Background()
	keys := []string{prefix + "sessions_total", prefix + "stats", prefix + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcd"}
	for _, err := range []error{
		client.Set(ctx, keys[0], 42, 0).Err(),
		client.HSet(ctx, keys[1], "logins", 3).Err(),
		client.Set(ctx, keys[2], "1", 0).Err(),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// redisCheckUntouched checks that nothing outside the prefix got a TTL and
// that the live sessions keep Flask-Session's TTL and read back.
func redisCheckUntouched(t *testing.T, client *redis.Client, other string, sessions []storetest.FlaskSession, prefix string) {
	t.Helper()
	ctx := context.Background()
	for iter := client.Scan(ctx, 0, redisGlobEscape(other)+"*", 100).Iterator(); iter.Next(ctx); {
		if client.TTL(ctx, iter.Val()).Val() != -1 {
			t.Fatalf("a key outside the prefix got a TTL")
		}
	}
	for _, s := range sessions {
		if got := client.TTL(ctx, prefix+s.SID).Val(); got > time.Hour || got < time.Hour-time.Minute {
			t.Fatalf("session %s has TTL %s, want Flask-Session's 1h", s.SID, got)
		}
	}
	read := redisFlaskRead(t, prefix, sessions)
	for _, s := range sessions {
		if got := read[s.SID]; got == nil || *got != s.Value {
			t.Errorf("the app reads %v for session %s, want %q", got, s.SID, s.Value)
		}
	}
}

func TestRedisSessionIDShapes(t *testing.T) {
	for sid, want := range map[string]bool{
		"0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d":        true,  // str(uuid4()), 0.3/0.4
		"Xy3_kP-0aB9cD8eF7gH6iJ5kL4mN3oP2qR1sT0uV9wZ": true,  // token_urlsafe(32), 0.7+
		"Xy3_kP-0aB9cD8eF7gH6iJ":                      true,  // token_urlsafe(16)
		"Xy3_kP-0aB9cD8eF7gH6iJ5k":                    true,  // token_urlsafe(18), 24 characters
		"Xy3_kP-0aB9cD8eF7gH6i":                       false, // 21: under token_urlsafe(16)
		"Xy3_kP-0aB9cD8eF7gH6iJ5kL":                   false, // 25: no base64 string has that length
		"sessions_total":                              false,
		"0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d:extra":  false,
		"user/42":                false,
		"":                       false,
		strings.Repeat("a", 260): false,
	} {
		if got := isSessionID(sid); got != want {
			t.Errorf("isSessionID(%q) = %v, want %v", sid, got, want)
		}
	}
	for head, want := range map[string]bool{"\x80": true, "\x8f": true, "\xde": true, "\xdf": true, "4": false, "{": false, "": false} {
		if got := isSerializedSession(head); got != want {
			t.Errorf("isSerializedSession(%q) = %v, want %v", head, got, want)
		}
	}
}

func TestRedisCleanupPrefixWithGlobCharacters(t *testing.T) {
	client := redisTestClient(t)
	ctx := context.Background()
	prefix := redisTestPrefix(t, client, `g[ab]*?\`)
	// The same prefix read as a glob would match this key as well.
	decoy := strings.NewReplacer(`[ab]`, "a", `*`, "zz", `?`, "q", `\`, "").Replace(prefix) + redisTestUUID4(t)
	t.Cleanup(func() { client.Del(context.Background(), decoy) })
	if err := client.Set(ctx, decoy, pickledEmptySession, 0).Err(); err != nil {
		t.Fatal(err)
	}
	session := redisSetLeakedSession(t, client, prefix)
	var matched []string
	for iter := client.Scan(ctx, 0, prefix+"*", 100).Iterator(); iter.Next(ctx); {
		matched = append(matched, iter.Val())
	}
	if !slices.Contains(matched, decoy) {
		t.Fatalf("test setup: the unescaped prefix matches %q, not the decoy %q", matched, decoy)
	}

	rep, err := redisTestStore(t, sessionstore.Config{KeyPrefix: prefix, FixMissingTTL: true}).Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 10})
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if rep.Scanned != 1 || rep.Kept["ttlFixed"] != 1 {
		t.Fatalf("report %+v: want only the key under the literal prefix", rep)
	}
	if client.TTL(ctx, decoy).Val() != -1 {
		t.Fatalf("the decoy outside the prefix got a TTL")
	}
	if client.TTL(ctx, session).Val() <= 0 {
		t.Fatalf("the key under the prefix was not fixed")
	}
}

func TestRedisCleanupStopsOnCancel(t *testing.T) {
	client := redisTestClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prefix := redisTestPrefix(t, client, "")
	for i := range 50 {
		client.Set(ctx, fmt.Sprintf("%s%d", prefix, i), "x", time.Hour)
	}
	rep, err := redisTestStore(t, sessionstore.Config{KeyPrefix: prefix}).Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 5, Progress: func(sessionstore.Report) { cancel() }})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if rep.Batches != 1 || rep.Scanned == 0 {
		t.Fatalf("report %+v: want the first batch's partial report", rep)
	}
}

func TestRedisAuth(t *testing.T) {
	client := redisTestClient(t)
	ctx := context.Background()
	user := "sstest-" + strings.TrimSuffix(redisTestPrefix(t, client, "")[len("sstest:"):], ":")
	password := "p@ss:w/rd?#% x"
	if err := client.Do(ctx, "ACL", "SETUSER", user, "on", ">"+password, "~*", "&*", "+@all").Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	t.Cleanup(func() { client.Do(context.Background(), "ACL", "DELUSER", user) })
	prefix := redisTestPrefix(t, client, "")
	redisSetLeakedSession(t, client, prefix)

	authURL := func(password string) string {
		return "redis://" + redisPercentEncode(user) + ":" + redisPercentEncode(password) + "@127.0.0.1:6379/0"
	}
	store := redisTestStore(t, sessionstore.Config{URL: authURL(password), KeyPrefix: prefix, FixMissingTTL: true})
	if err := store.Ping(ctx); err != nil {
		t.Fatalf("Ping with the percent-encoded password: %v", err)
	}
	rep, err := store.Cleanup(ctx, sessionstore.CleanupOptions{})
	if err != nil || rep.Kept["ttlFixed"] != 1 {
		t.Fatalf("Cleanup as the ACL user: %+v, %v", rep, err)
	}

	wrong := password + "-wrong"
	err = redisTestStore(t, sessionstore.Config{URL: authURL(wrong), KeyPrefix: prefix}).Ping(ctx)
	storetest.WantKind(t, err, sessionstore.ErrAuth)
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), redisPercentEncode(wrong)) {
		t.Fatalf("error quotes the password: %v", err)
	}
	_, err = redisTestStore(t, sessionstore.Config{URL: authURL(wrong), KeyPrefix: prefix}).Cleanup(ctx, sessionstore.CleanupOptions{})
	storetest.WantKind(t, err, sessionstore.ErrAuth)
}

// redisPercentEncode escapes every byte but the unreserved ones, as a user
// would to put any password in a URL.
func redisPercentEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
