package controllers

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// The MySQL store's tests run on the MariaDB hack/start-services.sh starts
// (root without a password on 127.0.0.1:3306), each with a database and a
// password-protected user of its own, whose password is full of URL syntax.
const myCtrlPassword = "p@ss:w/rd?#%20 x&y=z+"

func myCtrlAdmin(t *testing.T) *sql.DB {
	t.Helper()
	c := mysql.NewConfig()
	c.User, c.Net, c.Addr = "root", "tcp", "127.0.0.1:3306"
	connector, err := mysql.NewConnector(c)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(); err != nil {
		t.Fatalf("MariaDB on 127.0.0.1:3306 is not reachable (%v); run hack/start-services.sh", err)
	}
	return db
}

// myCtrlDatabase makes a database and a user who may use it; it returns
// both names.
func myCtrlDatabase(t *testing.T) (database, user string) {
	t.Helper()
	admin := myCtrlAdmin(t)
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	database, user = "ctrl_"+hex.EncodeToString(b), "ctrl_u_"+hex.EncodeToString(b)
	quoted := "'" + strings.NewReplacer(`\`, `\\`, "'", "''").Replace(myCtrlPassword) + "'"
	for _, stmt := range []string{"CREATE DATABASE " + database,
		"CREATE USER " + user + "@'%' IDENTIFIED BY " + quoted, "GRANT ALL ON " + database + ".* TO " + user + "@'%'",
		"CREATE USER " + user + "@localhost IDENTIFIED BY " + quoted, "GRANT ALL ON " + database + ".* TO " + user + "@localhost"} {
		if _, err := admin.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", strings.Replace(stmt, quoted, "'...'", 1), err)
		}
	}
	t.Cleanup(func() {
		admin.Exec("DROP DATABASE IF EXISTS " + database)
		admin.Exec("DROP USER IF EXISTS " + user + "@'%', " + user + "@localhost")
	})
	return database, user
}

func myCtrlStore(ns, name, database string, createTable bool) *v1.SessionStore {
	return &v1.SessionStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1.SessionStoreSpec{Backend: v1.BackendMySQL, MySQL: &v1.MySQLSpec{
			Host: "127.0.0.1", Database: database, CredentialsSecretRef: &v1.SecretReference{Name: "mysql-creds"},
			CreateTable: ptr.To(createTable)}},
	}
}

// A MySQL store goes Ready, its table made by the probe; the real
// Flask-Session writes and reads with the connection Secret's own SQLAlchemy
// URI. Its cleanup, run as a real Pod, is in the real-node e2e (test/e2e):
// exactly the expired sessions go.
func TestMySQLStoreReadyAndItsURIServesTheApp(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	database, user := myCtrlDatabase(t)
	createSecret(t, ns, "mysql-creds", map[string]string{"username": user, "password": myCtrlPassword})
	createStore(t, myCtrlStore(ns, "my-real", database, true))
	store := waitReady(t, ns, "my-real")
	g.Expect(condition(store, v1.ConditionSchemaReady).Reason).To(Equal(v1.ReasonSchemaCreated))

	secret := waitSecret(t, ns, "my-real-session-store")
	uri := string(secret.Data[sessionstore.EnvFlaskSQLAlchemyURI])
	g.Expect(uri).To(HavePrefix("mysql+pymysql://" + user + ":"))
	live := parseSessions(t, flaskScript(t, "", "flask_sqlalchemy_mysql.py", "write", uri, "sessions", "3600", "5"))
	g.Expect(live).To(HaveLen(5))
	readBack := map[string]*string{}
	g.Expect(json.Unmarshal([]byte(flaskScript(t, sidsJSON(live), "flask_sqlalchemy_mysql.py", "read", uri, "sessions")), &readBack)).To(Succeed())
	for _, s := range live {
		g.Expect(readBack[s.SID]).NotTo(BeNil(), "session %s not read back", s.SID)
		g.Expect(*readBack[s.SID]).To(Equal(s.Value))
	}
	var rows int
	g.Expect(myCtrlAdmin(t).QueryRow("SELECT COUNT(*) FROM " + database + ".sessions").Scan(&rows)).To(Succeed())
	g.Expect(rows).To(Equal(len(live)), "the app wrote into the store's own table")
}

// A missing table without createTable is TableMissing; with it, the probe
// creates it. A wrong password is AuthenticationFailed (server error
// 1045), and the password never shows in the status.
func TestMySQLStoreReasons(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	database, user := myCtrlDatabase(t)
	creds := createSecret(t, ns, "mysql-creds", map[string]string{"username": user, "password": "not-" + myCtrlPassword})
	createStore(t, myCtrlStore(ns, "my-reasons", database, false))
	got := waitCondition(t, ns, "my-reasons", v1.ConditionStoreReachable, metav1.ConditionFalse, string(sessionstore.ErrAuth))
	g.Expect(condition(got, v1.ConditionStoreReachable).Message).NotTo(ContainSubstring(myCtrlPassword))

	creds.StringData = map[string]string{"password": myCtrlPassword}
	g.Expect(k8sClient.Update(ctx(), creds)).To(Succeed())
	got = waitCondition(t, ns, "my-reasons", v1.ConditionStoreReachable, metav1.ConditionFalse, v1.ReasonTableMissing)
	g.Expect(condition(got, v1.ConditionReady).Message).To(ContainSubstring(database + ".sessions"))

	got.Spec.MySQL.CreateTable = ptr.To(true)
	g.Expect(k8sClient.Update(ctx(), got)).To(Succeed())
	got = waitReady(t, ns, "my-reasons")
	g.Expect(condition(got, v1.ConditionSchemaReady).Reason).To(Equal(v1.ReasonSchemaCreated))
}

// Admission names spec.mysql in its messages, as it does spec.postgresql.
func TestMySQLAdmission(t *testing.T) {
	ns := newNamespace(t)
	for name, tc := range map[string]struct{ spec, want string }{
		"my-no-block":       {"backend: mysql", "spec.mysql must be set when, and only when, spec.backend is mysql"},
		"my-wrong-backend":  {"backend: postgresql\nmysql: {host: db, database: app, credentialsSecretRef: {name: c}}", "spec.mysql must be set"},
		"my-host-and-url":   {"backend: mysql\nmysql: {host: db, database: app, credentialsSecretRef: {name: c}, urlSecretRef: {name: u, key: url}}", "spec.mysql needs exactly one of host or urlSecretRef"},
		"my-no-database":    {"backend: mysql\nmysql: {host: db, credentialsSecretRef: {name: c}}", "spec.mysql.host needs database and credentialsSecretRef"},
		"my-bad-tls":        {"backend: mysql\nmysql: {host: db, database: app, credentialsSecretRef: {name: c}, tls: 'true'}", "spec.mysql.tls"},
		"my-hostile-table":  {"backend: mysql\nmysql: {host: db, database: app, credentialsSecretRef: {name: c}, table: 's`x'}", "spec.mysql.table"},
		"my-hostile-dbname": {"backend: mysql\nmysql: {host: db, database: 'a/b', credentialsSecretRef: {name: c}}", "spec.mysql.database"},
	} {
		t.Run(name, func(t *testing.T) {
			err := k8sClient.Create(ctx(), storeFromYAML(t, ns, name, tc.spec))
			NewWithT(t).Expect(err).To(MatchError(ContainSubstring(tc.want)))
		})
	}
	g := NewWithT(t)
	g.Expect(k8sClient.Create(ctx(), storeFromYAML(t, ns, "my-defaults", "backend: mysql\nmysql: {host: db, database: app, credentialsSecretRef: {name: c}}"))).To(Succeed())
	store := getStore(g, ns, "my-defaults")
	g.Expect(store.Spec.MySQL.Port).To(BeEquivalentTo(3306))
	g.Expect(string(store.Spec.MySQL.TLS)).To(Equal("preferred"))
	g.Expect(store.Spec.MySQL.Table).To(Equal("sessions"))
	g.Expect(*store.Spec.MySQL.CreateTable).To(BeTrue())
}
