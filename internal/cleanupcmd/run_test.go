package cleanupcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/storetest"
)

// The flag wins over the env on a real run: only the flag's directory is cleaned.
func TestDirFlagOverridesEnvOnARealRun(t *testing.T) {
	envDir, flagDir := t.TempDir(), t.TempDir()
	envFiles := writeExpiredFiles(t, envDir, 3)
	flagFiles := writeExpiredFiles(t, flagDir, 3)
	r := run(t, t.Context(), Main, fsEnv(envDir), nil, "--dir="+flagDir)
	if r.code != ExitOK {
		t.Fatalf("want exit 0:\n%s", r)
	}
	if n := countExisting(flagFiles); n != 0 {
		t.Errorf("%d expired files left in the --dir directory", n)
	}
	if n := countExisting(envFiles); n != 3 {
		t.Errorf("the env's directory was touched: %d of 3 files left", n)
	}
}

// A successful run on the filesystem backend, end to end: exactly the
// expired files go, the report says so on stdout and in the termination file.
func TestCleanupFilesystemEndToEnd(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	var expired, kept []string
	for i := range 5 {
		expired = append(expired, writeSessionFile(t, dir, fmt.Sprintf("session:old-%d", i), now.Add(-time.Hour)))
	}
	for i := range 4 {
		kept = append(kept, writeSessionFile(t, dir, fmt.Sprintf("session:live-%d", i), now.Add(time.Hour)))
	}
	kept = append(kept, writeSessionFile(t, dir, "session:forever", time.Time{}))
	// cachelib's temporary and a truncated file: never deleted.
	tmp := filepath.Join(dir, "tmpab12cd.__wz_cache")
	garbage := filepath.Join(dir, strings.Repeat("ab", 16))
	for path, content := range map[string]string{tmp: "\x00\x00", garbage: "\x01"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		kept = append(kept, path)
	}

	r := run(t, t.Context(), Main, fsEnv(dir), nil)
	if r.code != ExitOK {
		t.Fatalf("want exit 0:\n%s", r)
	}
	if n := countExisting(expired); n != 0 {
		t.Errorf("%d expired files left", n)
	}
	if n := countExisting(kept); n != len(kept) {
		t.Errorf("%d of %d files that must stay were deleted", len(kept)-n, len(kept))
	}
	if !strings.HasPrefix(r.stdout, "filesystem: ") || !strings.Contains(r.stdout, "expired 5, deleted 5") {
		t.Errorf("text summary: %q", r.stdout)
	}
	res := decodeResult(t, "termination message", r.termination)
	if res.Report == nil || res.Backend != "filesystem" || res.Expired != 5 || res.Deleted != 5 || res.Error != "" || res.StoppedEarly {
		t.Errorf("termination message: %s", r.termination)
	}
	if bytes.Contains(r.termination, []byte("\n")) {
		t.Errorf("termination message is not compact: %q", r.termination)
	}

	// Nothing left to do the second time.
	r = run(t, t.Context(), Main, fsEnv(dir), nil, "--output=json")
	if r.code != ExitOK {
		t.Fatalf("second run:\n%s", r)
	}
	if res := decodeResult(t, "stdout", []byte(r.stdout)); res.Deleted != 0 || res.Expired != 0 {
		t.Errorf("second run deleted again: %s", r.stdout)
	}
}

func TestCheckFilesystem(t *testing.T) {
	dir := t.TempDir()
	writeExpiredFiles(t, dir, 2)
	r := run(t, t.Context(), Check, fsEnv(dir), nil)
	if r.code != ExitOK || r.stdout != "ok: filesystem store reachable\n" {
		t.Fatalf("want exit 0 and ok:\n%s", r)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("check changed the directory: %d entries", len(entries))
	}
	// A missing directory fails; whether as bad configuration (2) or a
	// failed store (1) is the backend's call, and the exit code follows it.
	r = run(t, t.Context(), Check, fsEnv(filepath.Join(dir, "missing")), nil, "--output=json")
	var res checkResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.OK || !strings.Contains(res.Error, "missing") {
		t.Fatalf("check JSON does not name the missing directory: %v\n%s", err, r)
	}
	if wantCode := map[bool]int{true: ExitBadConfig, false: ExitStoreFailed}[res.ErrorKind == sessionstore.ErrConfig]; r.code != wantCode {
		t.Errorf("exit %d for error kind %s, want %d", r.code, res.ErrorKind, wantCode)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Error("check created the missing directory")
	}
}

// On Redis the cleanup counts keys, and --fix-missing-ttl gives a TTL to
// the sessions (written by the real Flask-Session) that lost theirs, and to
// nothing else under the prefix: an app's counter keeps none.
func TestCleanupRedis(t *testing.T) {
	requireServer(t, "redis", "127.0.0.1:6379")
	ctx := t.Context()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer client.Close()
	prefix := "cmdtest:" + randomName(t) + ":"
	sessions := storetest.FlaskWrite(t, "flask_redis_sessions.py", 3, testRedisURL, prefix, "3600", "3")
	leaked, counter := prefix+sessions[0].SID, prefix+"sessions_total"
	t.Cleanup(func() {
		client.Del(context.Background(), counter, leaked, prefix+sessions[1].SID, prefix+sessions[2].SID)
	})
	if err := client.Persist(ctx, leaked).Err(); err != nil {
		t.Fatalf("redis: %v", err)
	}
	if err := client.Set(ctx, counter, 42, 0).Err(); err != nil {
		t.Fatalf("redis: %v", err)
	}
	env := map[string]string{sessionstore.EnvBackend: "redis", sessionstore.EnvURL: testRedisURL, sessionstore.EnvKeyPrefix: prefix, sessionstore.EnvLifetimeSeconds: "600"}

	r := run(t, ctx, Main, env, nil, "--output=json", "--batch-size=1", "--fix-missing-ttl", "--dry-run")
	if r.code != ExitOK {
		t.Fatalf("want exit 0:\n%s", r)
	}
	res := decodeResult(t, "stdout", []byte(r.stdout))
	if res.Scanned != 4 || res.Deleted != 0 || res.Kept["noTTL"] != 1 || res.Kept["notASession"] != 1 ||
		!strings.Contains(res.Message, `"`+counter+`"`) || strings.Contains(res.Message, sessions[0].SID) {
		t.Errorf("dry run: want 4 keys, 1 session and 1 other key without a TTL, the other one named: %s", r.stdout)
	}
	if client.TTL(ctx, leaked).Val() != -1 {
		t.Errorf("the dry run gave the leaked session a TTL")
	}

	r = run(t, ctx, Main, env, nil, "--fix-missing-ttl")
	if r.code != ExitOK {
		t.Fatalf("--fix-missing-ttl: want exit 0:\n%s", r)
	}
	if ttl := client.TTL(ctx, leaked).Val(); ttl <= 0 || ttl > 600*time.Second {
		t.Errorf("leaked session: TTL %s after --fix-missing-ttl, want the lifetime (600s)", ttl)
	}
	if ttl := client.TTL(ctx, counter).Val(); ttl != -1 {
		t.Errorf("the app's counter got a TTL of %s", ttl)
	}
	if r := run(t, ctx, Check, env, nil); r.code != ExitOK || !strings.HasPrefix(r.stdout, "ok: redis") {
		t.Errorf("check:\n%s", r)
	}
}

func TestCleanupMemcached(t *testing.T) {
	requireServer(t, "memcached", "127.0.0.1:11211")
	mc := memcache.New("127.0.0.1:11211")
	if err := mc.Ping(); err != nil {
		t.Fatalf("memcached: %v (run hack/start-services.sh)", err)
	}
	env := map[string]string{sessionstore.EnvBackend: "memcached", sessionstore.EnvURL: testMemcacheURL}
	r := run(t, t.Context(), Main, env, nil, "--output=json")
	if r.code != ExitOK {
		t.Fatalf("want exit 0:\n%s", r)
	}
	if res := decodeResult(t, "stdout", []byte(r.stdout)); !res.NativeExpiry || res.Deleted != 0 {
		t.Errorf("memcached report should say the store expires by itself: %s", r.stdout)
	}
	if r := run(t, t.Context(), Check, env, nil); r.code != ExitOK {
		t.Errorf("check:\n%s", r)
	}
}

// pgTestTable returns a connection, a table name of the test's own
// (dropped when it ends) and the env that points the commands at it.
func pgTestTable(t *testing.T, prefix string) (*pgx.Conn, string, map[string]string) {
	t.Helper()
	requireServer(t, "postgresql", "127.0.0.1:5432")
	conn, err := pgx.Connect(t.Context(), testPostgresURL)
	if err != nil {
		t.Fatalf("postgresql: %v (run hack/start-services.sh)", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	table := prefix + randomName(t)
	t.Cleanup(func() {
		conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize())
	})
	return conn, table, map[string]string{sessionstore.EnvBackend: "postgresql", sessionstore.EnvURL: testPostgresURL, sessionstore.EnvTable: table}
}

// A missing table: check says so; with creation off it is an error; and
// check never creates it.
func TestCheckPostgreSQLMissingTable(t *testing.T) {
	ctx := t.Context()
	conn, table, env := pgTestTable(t, "cmd_sessions_")
	noCreate := map[string]string{sessionstore.EnvCreateTable: "false", sessionstore.EnvCreateExpiryIndex: "false"}
	for k, v := range env {
		noCreate[k] = v
	}
	if r := run(t, ctx, Check, noCreate, nil); r.code != ExitStoreFailed {
		t.Errorf("check, table missing and not to be created: want exit 1:\n%s", r)
	}
	if r := run(t, ctx, Check, env, nil); r.code != ExitOK || !strings.Contains(r.stdout, "missing") {
		t.Errorf("check, table missing but cleanup creates it: want exit 0 saying it is missing:\n%s", r)
	}
	var exists bool
	conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists)
	if exists {
		t.Fatal("check created the table")
	}
}

func TestCleanupPostgreSQL(t *testing.T) {
	ctx := t.Context()
	conn, table, env := pgTestTable(t, "cmd_sessions_")

	// The first cleanup creates the table and reports it.
	r := run(t, ctx, Main, env, nil, "--output=json")
	if r.code != ExitOK {
		t.Fatalf("first cleanup: want exit 0:\n%s", r)
	}
	res := decodeResult(t, "stdout", []byte(r.stdout))
	if res.Schema == nil || !res.Schema.Present || len(res.Schema.Created) == 0 {
		t.Errorf("schema not reported as created: %s", r.stdout)
	}
	if !strings.Contains(r.stderr, "schema: created") {
		t.Errorf("stderr does not say what was created: %q", r.stderr)
	}

	quoted := pgx.Identifier{table}.Sanitize()
	_, err := conn.Exec(ctx, `INSERT INTO `+quoted+` (session_id, data, expiry) VALUES
		('session:old1', '\x00', (now() AT TIME ZONE 'UTC') - interval '1 hour'),
		('session:old2', '\x00', (now() AT TIME ZONE 'UTC') - interval '1 day'),
		('session:live', '\x00', (now() AT TIME ZONE 'UTC') + interval '1 hour'),
		('session:null', '\x00', NULL)`)
	if err != nil {
		t.Fatalf("insert into the created table: %v", err)
	}
	r = run(t, ctx, Main, env, nil, "--output=json", "--batch-size=1")
	if r.code != ExitOK {
		t.Fatalf("cleanup: want exit 0:\n%s", r)
	}
	res = decodeResult(t, "stdout", []byte(r.stdout))
	if res.Expired != 2 || res.Deleted != 2 {
		t.Errorf("want 2 expired rows deleted: %s", r.stdout)
	}
	var left []string
	rows, _ := conn.Query(ctx, "SELECT session_id FROM "+quoted+" ORDER BY session_id")
	for rows.Next() {
		var id string
		rows.Scan(&id)
		left = append(left, id)
	}
	if strings.Join(left, ",") != "session:live,session:null" {
		t.Errorf("rows left: %v", left)
	}
	if r := run(t, ctx, Check, env, nil); r.code != ExitOK || !strings.Contains(r.stdout, "ok: postgresql") {
		t.Errorf("check after cleanup:\n%s", r)
	}
}

func TestCleanupMongoDB(t *testing.T) {
	requireServer(t, "mongodb (FerretDB)", "127.0.0.1:27017")
	ctx := t.Context()
	client, err := mongo.Connect(options.Client().ApplyURI(testMongoURL))
	if err != nil {
		t.Fatalf("mongodb: %v", err)
	}
	defer client.Disconnect(context.Background())
	database := "cmd_" + randomName(t)
	t.Cleanup(func() { client.Database(database).Drop(context.Background()) })
	coll := client.Database(database).Collection("sessions")
	now := time.Now().UTC()
	_, err = coll.InsertMany(ctx, []any{
		bson.M{"id": "session:old", "val": []byte{0}, "expiration": now.Add(-time.Hour)},
		bson.M{"id": "session:live", "val": []byte{0}, "expiration": now.Add(time.Hour)},
		bson.M{"id": "session:none", "val": []byte{0}, "expiration": nil},
	})
	if err != nil {
		t.Fatalf("mongodb insert: %v (run hack/start-services.sh)", err)
	}
	env := map[string]string{sessionstore.EnvBackend: "mongodb", sessionstore.EnvURL: testMongoURL, sessionstore.EnvDatabase: database}
	r := run(t, ctx, Main, env, nil, "--output=json")
	if r.code != ExitOK {
		t.Fatalf("want exit 0:\n%s", r)
	}
	res := decodeResult(t, "stdout", []byte(r.stdout))
	if res.Deleted != 1 || res.Schema == nil {
		t.Errorf("want 1 deleted and the TTL index outcome reported: %s", r.stdout)
	}
	if n, _ := coll.CountDocuments(ctx, bson.M{}); n != 2 {
		t.Errorf("%d documents left, want 2", n)
	}
	if r := run(t, ctx, Check, env, nil); r.code != ExitOK || !strings.HasPrefix(r.stdout, "ok: mongodb") {
		t.Errorf("check:\n%s", r)
	}
}
