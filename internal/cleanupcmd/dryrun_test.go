package cleanupcmd

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// A dry run changes nothing: on a real PostgreSQL without the table (and
// the configuration asking for it and its index), no table, sequence or
// index appears, and the report says what a real run would create.
func TestDryRunCreatesNoTableOnPostgreSQL(t *testing.T) {
	ctx := t.Context()
	conn, table, env := pgTestTable(t, "cmd_dry_")
	env[sessionstore.EnvCreateTable], env[sessionstore.EnvCreateExpiryIndex] = "true", "true"

	r := run(t, ctx, Main, env, nil, "--dry-run", "--output=json")
	if r.code != ExitOK {
		t.Fatalf("dry run: want exit 0:\n%s", r)
	}
	var relations int
	err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relname LIKE $1`, table+"%").Scan(&relations)
	if err != nil {
		t.Fatal(err)
	}
	if relations != 0 {
		t.Fatalf("the dry run created %d relations (table, sequence, index) named %s*", relations, table)
	}
	res := decodeResult(t, "stdout", []byte(r.stdout))
	wantMsg := "dry run: would create table public." + table + " and expiry index " + table + "_expiry_idx"
	if res.Schema == nil || len(res.Schema.Created) != 0 || res.Schema.Message != wantMsg {
		t.Errorf("schema: want nothing created and %q: %s", wantMsg, r.stdout)
	}
	if res.Report == nil || !res.DryRun || res.Deleted != 0 || !strings.Contains(r.stderr, "schema: "+wantMsg) {
		t.Errorf("want a dry-run report and stderr saying what would be created:\n%s", r)
	}

	// With the table there, the dry run counts and still deletes nothing.
	if r := run(t, ctx, Main, env, nil); r.code != ExitOK {
		t.Fatalf("real run creating the table:\n%s", r)
	}
	quoted := pgx.Identifier{table}.Sanitize()
	if _, err := conn.Exec(ctx, `INSERT INTO `+quoted+` (session_id, data, expiry) VALUES
		('session:old', '\x00', (now() AT TIME ZONE 'UTC') - interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	r = run(t, ctx, Main, env, nil, "--dry-run", "--output=json")
	res = decodeResult(t, "stdout", []byte(r.stdout))
	var left int
	conn.QueryRow(ctx, "SELECT count(*) FROM "+quoted).Scan(&left)
	if r.code != ExitOK || res.Expired != 1 || res.Deleted != 0 || left != 1 {
		t.Fatalf("dry run on the table: want 1 expired, none deleted (%d rows left):\n%s", left, r)
	}
}

// On FerretDB (MongoDB wire protocol) a dry run neither creates the
// collection nor asks for the TTL index; it says it would.
func TestDryRunCreatesNoIndexOnFerretDB(t *testing.T) {
	requireServer(t, "mongodb (FerretDB)", "127.0.0.1:27017")
	ctx := t.Context()
	client, err := mongo.Connect(options.Client().ApplyURI(testMongoURL))
	if err != nil {
		t.Fatalf("mongodb: %v", err)
	}
	defer client.Disconnect(context.Background())
	database := "cmd_dry_" + randomName(t)
	t.Cleanup(func() { client.Database(database).Drop(context.Background()) })
	env := map[string]string{sessionstore.EnvBackend: "mongodb", sessionstore.EnvURL: testMongoURL, sessionstore.EnvDatabase: database}

	r := run(t, ctx, Main, env, nil, "--dry-run", "--output=json")
	if r.code != ExitOK {
		t.Fatalf("dry run on no collection: want exit 0:\n%s", r)
	}
	if names, err := client.Database(database).ListCollectionNames(ctx, bson.M{}); err != nil || len(names) != 0 {
		t.Fatalf("the dry run created collections %v (%v)", names, err)
	}
	res := decodeResult(t, "stdout", []byte(r.stdout))
	if res.Schema == nil || !strings.HasPrefix(res.Schema.Message, "dry run: would create the TTL index on expiration") {
		t.Errorf("schema: want what a real run would create: %s", r.stdout)
	}

	coll := client.Database(database).Collection("sessions")
	if _, err := coll.InsertOne(ctx, bson.M{"id": "session:old", "val": []byte{0}, "expiration": time.Now().UTC().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	r = run(t, ctx, Main, env, nil, "--dry-run", "--output=json")
	res = decodeResult(t, "stdout", []byte(r.stdout))
	indexes, err := coll.Indexes().ListSpecifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := coll.CountDocuments(ctx, bson.M{})
	if r.code != ExitOK || len(indexes) != 1 || res.Expired != 1 || res.Deleted != 0 || n != 1 {
		t.Fatalf("dry run: want only the _id index, 1 expired and none deleted (%d indexes, %d documents):\n%s", len(indexes), n, r)
	}
}

// What a dry run says from a look-only EnsureSchema's answer, for the
// cases the servers here cannot show (an existing TTL index needs MongoDB).
func TestDryRunSchemaMessages(t *testing.T) {
	pg := sessionstore.Config{Backend: "postgresql", Table: "sessions", CreateTable: true}
	mongo := sessionstore.Config{Backend: "mongodb", TTLIndex: true}
	for _, tc := range []struct {
		cfg    sessionstore.Config
		looked sessionstore.SchemaResult
		want   string
	}{
		{pg, sessionstore.SchemaResult{Message: "table app.sessions does not exist; the app creates it, or set createTable"},
			"dry run: would create table app.sessions"},
		{pg, sessionstore.SchemaResult{Present: true, Message: "table public.sessions is present"},
			"dry run: nothing to create; table public.sessions is present"},
		{func() sessionstore.Config { c := pg; c.CreateExpiryIndex = true; return c }(),
			sessionstore.SchemaResult{Present: true, Message: "table public.sessions is present"},
			"dry run: would create expiry index sessions_expiry_idx unless it exists"},
		{mongo, sessionstore.SchemaResult{Present: true, Message: "a TTL index on expiration exists; MongoDB removes expired sessions by itself"},
			"dry run: nothing to create; a TTL index on expiration exists; MongoDB removes expired sessions by itself"},
		{mongo, sessionstore.SchemaResult{Present: true, Message: "no TTL index asked for; the cleanup job removes expired sessions"},
			"dry run: would create the TTL index on expiration (where the server has TTL indexes)"},
	} {
		if got := dryRunSchema(tc.cfg, tc.looked); got.Message != tc.want || len(got.Created) != 0 {
			t.Errorf("%s %q:\n got %+v\nwant %q", tc.cfg.Backend, tc.looked.Message, got, tc.want)
		}
	}
}

// A MySQL dry run says it would create the missing table, and creates
// nothing (MariaDB here).
func TestDryRunCreatesNoTableOnMySQL(t *testing.T) {
	ctx := t.Context()
	admin, err := sql.Open("mysql", "root@tcp(127.0.0.1:3306)/")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	db := fmt.Sprintf("cmd_dry_%d", time.Now().UnixNano())
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatalf("MariaDB at 127.0.0.1:3306 (hack/start-services.sh starts it): %v", err)
	}
	t.Cleanup(func() { admin.Exec("DROP DATABASE IF EXISTS " + db) })
	env := map[string]string{
		sessionstore.EnvBackend: "mysql", sessionstore.EnvURL: "mysql://root@127.0.0.1:3306/" + db,
		sessionstore.EnvTable: "sessions", sessionstore.EnvCreateTable: "true",
	}
	r := run(t, ctx, Main, env, nil, "--dry-run", "--output=json")
	if r.code != ExitOK {
		t.Fatalf("dry run: want exit 0:\n%s", r)
	}
	var tables int
	if err := admin.QueryRowContext(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_schema = ?", db).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Fatalf("the dry run created %d tables", tables)
	}
	res := decodeResult(t, "stdout", []byte(r.stdout))
	if res.Schema == nil || !strings.HasPrefix(res.Schema.Message, "dry run: would create table ") {
		t.Errorf("want the dry run to say it would create the table: %s", r.stdout)
	}
}
