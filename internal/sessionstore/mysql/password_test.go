package mysql

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/storetest"
	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

// TestMySQLSecretWithAHostilePassword: a user whose password is full of URL
// syntax gets a connection Secret from the operator; the real Flask-Session
// (SQLAlchemy and PyMySQL) writes sessions with its FLASK_SQLALCHEMY_DATABASE_URI,
// and the cleanup, configured from the same Secret as its pod is, creates
// the table and deletes exactly the expired ones. The server checks the
// password: a mangled one would fail with 1045. With TLS disabled, MySQL 8's
// caching_sha2_password has PyMySQL send the password RSA-encrypted, which
// needs Python's cryptography package.
func TestMySQLSecretWithAHostilePassword(t *testing.T) {
	for _, tls := range []v1.MySQLTLSMode{"preferred", "disabled"} {
		t.Run("tls "+string(tls), func(t *testing.T) { myTestHostilePassword(t, tls) })
	}
}

func myTestHostilePassword(t *testing.T, tls v1.MySQLTLSMode) {
	const password = "p@ss:w/rd?#%20 x&y=z+ 'q\" \\"
	ctx := myTestCtx(t)
	db := myTestDatabase(t)
	user := myTestUser(t, db, password)
	host, portText, _ := net.SplitHostPort(myTestHost)
	port, _ := strconv.Atoi(portText)
	store := &v1.SessionStore{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}, Spec: v1.SessionStoreSpec{
		Backend: v1.BackendMySQL, KeyPrefix: "session:", Lifetime: &metav1.Duration{Duration: time.Hour},
		MySQL: &v1.MySQLSpec{Host: host, Port: int32(port), Database: db, CredentialsSecretRef: &v1.SecretReference{Name: "creds"},
			TLS: tls, Table: "sessions", CreateTable: ptr.To(true)}}}
	data, err := specs.ConnectionData(store, specs.SecretValues{"creds": {"username": []byte(user), "password": []byte(password)}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := sessionstore.ConfigFromMap(specs.CleanupPodEnv(store, data))
	if err != nil {
		t.Fatal(err)
	}
	// The app logs in first: after one full authentication MySQL 8 caches
	// the account, and the next logins take a short path with no RSA.
	uri := data[sessionstore.EnvFlaskSQLAlchemyURI]
	out := storetest.RunFlask(t, myTestFlaskPy, "", "connargs", uri)
	if !strings.Contains(string(out), `"current_user": "`+user+`@`) {
		t.Fatalf("the app did not connect as %s: %s", user, out)
	}
	if tls == "disabled" && !strings.Contains(string(out), `"encrypted": false`) {
		t.Fatalf("the app's connection is encrypted with tls disabled: %s", out)
	}
	s := storetest.NewStore(t, cfg)
	if _, err := s.EnsureSchema(ctx); err != nil {
		t.Fatalf("EnsureSchema as %s: %v", user, err)
	}
	live := myTestFlaskWrite(t, uri, "sessions", 3600, 4, true)
	expired := myTestFlaskWrite(t, uri, "sessions", -3600, 6, true)
	rep, err := s.Cleanup(ctx, sessionstore.CleanupOptions{Grace: cfg.GracePeriod})
	if err != nil || rep.Deleted != int64(len(expired)) || rep.Scanned != int64(len(live)+len(expired)) {
		t.Fatalf("Cleanup: %+v, %v", rep, err)
	}
	read := storetest.FlaskRead(t, myTestFlaskPy, live, uri, "sessions")
	for _, l := range live {
		if v := read[l.SID]; v == nil || *v != l.Value {
			t.Errorf("live session %s: the app reads %v", l.SID, v)
		}
	}
	bad := strings.Replace(cfg.URL, myTestHost, "127.0.0.1:1", 1)
	myTestWantKind(t, myTestStore(t, sessionstore.Config{URL: bad}).Ping(ctx), sessionstore.ErrRefused, password)
}
