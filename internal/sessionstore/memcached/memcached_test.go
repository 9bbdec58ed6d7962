package memcached

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/storetest"
	"github.com/sessionstore/sessionstore-operator/internal/testservers"
)

// The tests use the memcached that hack/start-services.sh starts.
const memcachedTestURL = "memcached://127.0.0.1:11211"

func memcachedTestServerUp(t *testing.T) {
	t.Helper()
	client := memcache.New("127.0.0.1:11211")
	defer client.Close()
	if err := client.Ping(); err != nil {
		t.Fatalf("memcached is not reachable at 127.0.0.1:11211 (%v); run hack/start-services.sh", err)
	}
}

func memcachedTestStore(t *testing.T, url string) sessionstore.Store {
	t.Helper()
	return storetest.NewStore(t, sessionstore.Config{Backend: sessionstore.BackendMemcached, URL: url, KeyPrefix: "session:", Lifetime: time.Hour})
}

func TestMemcachedPing(t *testing.T) {
	memcachedTestServerUp(t)
	ctx := context.Background()
	if err := memcachedTestStore(t, memcachedTestURL).Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}

	closed := testservers.FreeAddr(t)
	t.Run("refused", func(t *testing.T) {
		storetest.WantKind(t, memcachedTestStore(t, "memcached://"+closed).Ping(ctx), sessionstore.ErrRefused)
	})
	t.Run("one server of two refuses", func(t *testing.T) {
		err := memcachedTestStore(t, memcachedTestURL+","+closed).Ping(ctx)
		storetest.WantKind(t, err, sessionstore.ErrRefused)
		if !strings.Contains(err.Error(), closed) {
			t.Fatalf("error %q does not name the server that failed", err)
		}
	})
	t.Run("dns", func(t *testing.T) {
		storetest.WantKind(t, memcachedTestStore(t, "memcached://no-such-host.invalid:11211").Ping(ctx), sessionstore.ErrDNS)
	})
}

func TestMemcachedConfigErrors(t *testing.T) {
	for _, url := range []string{
		"",
		"redis://127.0.0.1:11211",
		"memcached://",
		"memcached://user:secret@127.0.0.1:11211",
		"memcached://127.0.0.1:11211,127.0.0.1:notaport",
		"memcached://127.0.0.1:99999",
		// Every server names its port, as spec.memcached.servers must:
		// Config.Validate and the constructor share one rule.
		"memcached://127.0.0.1",
		"MEMCACHED://127.0.0.1:11211",
	} {
		_, err := sessionstore.New(sessionstore.Config{Backend: sessionstore.BackendMemcached, URL: url})
		storetest.WantKind(t, err, sessionstore.ErrConfig)
		if strings.Contains(err.Error(), "secret") {
			t.Fatalf("error quotes the password: %v", err)
		}
	}
}

func TestMemcachedCleanupLeavesFlaskSessions(t *testing.T) {
	memcachedTestServerUp(t)
	ctx := context.Background()
	b := make([]byte, 6)
	rand.Read(b)
	prefix := "sstest:" + hex.EncodeToString(b) + ":"

	// Lifetimes over 30 days are sent as an absolute time; both kinds must survive.
	var sessions []storetest.FlaskSession
	for _, lifetime := range []time.Duration{time.Hour, 40 * 24 * time.Hour} {
		sessions = append(sessions, storetest.FlaskWrite(t, "flask_memcached_sessions.py", 4,
			memcachedTestURL, prefix, fmt.Sprint(int(lifetime.Seconds())), "4")...)
	}

	rep, err := memcachedTestStore(t, memcachedTestURL).Cleanup(ctx, sessionstore.CleanupOptions{BatchSize: 2})
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if !rep.NativeExpiry || rep.Deleted != 0 || rep.Expired != 0 || !strings.Contains(rep.Message, "expires sessions by itself") {
		t.Fatalf("report %+v: want native expiry, nothing deleted and a message saying so", rep)
	}

	read := storetest.FlaskRead(t, "flask_memcached_sessions.py", sessions, memcachedTestURL, prefix)
	for _, s := range sessions {
		if got := read[s.SID]; got == nil || *got != s.Value {
			t.Errorf("the app reads %v for session %s, want %q", got, s.SID, s.Value)
		}
	}
}

func TestMemcachedCleanupFailsWhenUnreachable(t *testing.T) {
	rep, err := memcachedTestStore(t, "memcached://"+testservers.FreeAddr(t)).Cleanup(context.Background(), sessionstore.CleanupOptions{})
	storetest.WantKind(t, err, sessionstore.ErrRefused)
	if rep.Deleted != 0 {
		t.Fatalf("report %+v", rep)
	}
	_, err = memcachedTestStore(t, "memcached://"+testservers.FreeAddr(t)).EnsureSchema(context.Background())
	storetest.WantKind(t, err, sessionstore.ErrRefused)
}
