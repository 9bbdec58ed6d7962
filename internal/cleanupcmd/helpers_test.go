package cleanupcmd

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

const (
	testPostgresURL = "postgres://root@127.0.0.1:5432/test?sslmode=disable"
	testRedisURL    = "redis://127.0.0.1:6379/0"
	testMemcacheURL = "memcached://127.0.0.1:11211"
	testMongoURL    = "mongodb://127.0.0.1:27017/"
)

// lockedBuffer is written from the backend's goroutines (progress lines).
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	// onWrite, when set, sees each write (under the lock).
	onWrite func(string)
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.onWrite != nil {
		b.onWrite(string(p))
	}
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type runResult struct {
	code           int
	stdout, stderr string
	termination    []byte
}

type subcommand func(context.Context, []string, func(string) (string, bool), io.Writer, io.Writer) int

func envOf(env map[string]string) func(string) (string, bool) {
	return func(key string) (string, bool) {
		v, ok := env[key]
		return v, ok
	}
}

// run runs a subcommand with env as its whole environment and its
// termination message written to a file of the test's own.
func run(t *testing.T, ctx context.Context, cmd subcommand, env map[string]string, stderr *lockedBuffer, args ...string) runResult {
	t.Helper()
	termPath := filepath.Join(t.TempDir(), "termination-log")
	if stderr == nil {
		stderr = &lockedBuffer{}
	}
	var stdout lockedBuffer
	code := cmd(ctx, append([]string{"--termination-log=" + termPath}, args...), envOf(env), &stdout, stderr)
	term, err := os.ReadFile(termPath)
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("reading the termination message: %v", err)
	}
	return runResult{code: code, stdout: stdout.String(), stderr: stderr.String(), termination: term}
}

func (r runResult) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s\ntermination: %s", r.code, r.stdout, r.stderr, r.termination)
}

func decodeResult(t *testing.T, what string, data []byte) sessionstore.RunResult {
	t.Helper()
	var res sessionstore.RunResult
	if err := json.Unmarshal(bytes.TrimSpace(data), &res); err != nil {
		t.Fatalf("%s is not the JSON report: %v\n%s", what, err, data)
	}
	return res
}

// captureProcessStderr returns what fn's callees wrote to file descriptor 2
// directly (drivers' default loggers), not through the writers they were given.
func captureProcessStderr(t *testing.T, fn func()) string {
	t.Helper()
	saved, err := syscall.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(saved)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Dup3(int(pw.Fd()), 2, 0); err != nil {
		t.Fatal(err)
	}
	captured := make(chan string)
	go func() {
		data, _ := io.ReadAll(pr)
		captured <- string(data)
	}()
	var restore sync.Once
	restoreStderr := func() {
		restore.Do(func() {
			syscall.Dup3(saved, 2, 0)
			pw.Close()
		})
	}
	defer restoreStderr() // also when fn fails the test
	fn()
	restoreStderr()
	return <-captured
}

func requireServer(t *testing.T, name, addr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatalf("%s is not listening on %s (%v): run hack/start-services.sh", name, addr, err)
	}
	conn.Close()
}

func randomName(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// closedPort returns a loopback port nothing listens on.
// writeSessionFile writes a session the way cachelib >= 0.7 does: the file
// is named md5(key), starts with the expiry as a native-endian uint32
// (little-endian here), then the pickle. expires 0 means never.
func writeSessionFile(t *testing.T, dir, key string, expires time.Time) string {
	t.Helper()
	sum := md5.Sum([]byte(key))
	path := filepath.Join(dir, hex.EncodeToString(sum[:]))
	var header [4]byte
	if !expires.IsZero() {
		binary.LittleEndian.PutUint32(header[:], uint32(expires.Unix()))
	}
	pickledEmptyDict := []byte("\x80\x02}q\x00.")
	if err := os.WriteFile(path, append(header[:], pickledEmptyDict...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeExpiredFiles(t *testing.T, dir string, n int) []string {
	t.Helper()
	paths := make([]string, n)
	for i := range paths {
		paths[i] = writeSessionFile(t, dir, fmt.Sprintf("session:expired-%d", i), time.Now().Add(-time.Hour))
	}
	return paths
}

func countExisting(paths []string) int {
	n := 0
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			n++
		}
	}
	return n
}

func fsEnv(dir string) map[string]string {
	return map[string]string{sessionstore.EnvBackend: "filesystem", sessionstore.EnvDir: dir}
}
