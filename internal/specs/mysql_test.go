package specs

import (
	"encoding/json"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// myHostilePassword holds every character with a meaning in a URL.
const myHostilePassword = "p@ss:w/rd?#%20 x&y=z+"

func myStore(spec *v1.MySQLSpec) *v1.SessionStore {
	return &v1.SessionStore{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "store"},
		Spec: v1.SessionStoreSpec{Backend: v1.BackendMySQL, KeyPrefix: "session:", Lifetime: &metav1.Duration{Duration: 2 * time.Hour}, MySQL: spec}}
}

// TestMySQLSecretIsWhatCleanupReads: the connection Secret plus the
// CronJob's env, read as the cleanup reads them, is the store the spec
// declares, for host and credentials, and for a whole URL.
func TestMySQLSecretIsWhatCleanupReads(t *testing.T) {
	values := SecretValues{
		"db":     {"username": []byte("app"), "password": []byte(myHostilePassword)},
		"db-url": {"url": []byte("mysql://app:pw@mysql.example:3307/web?tls=verify-identity")},
	}
	for _, tc := range []struct {
		name     string
		spec     *v1.MySQLSpec
		wantURL  string
		wantURI  string
		create   bool
		sequence string
	}{
		{"host", &v1.MySQLSpec{Host: "mariadb.db", Port: 3306, Database: "app", CredentialsSecretRef: &v1.SecretReference{Name: "db"},
			TLS: "required", Table: "web_sessions", CreateTable: ptr.To(false), Sequence: "web_seq"},
			"mysql://app:p%40ss%3Aw%2Frd%3F%23%2520%20x%26y%3Dz%2B@mariadb.db:3306/app?tls=required",
			"mysql+pymysql://app:p%40ss%3Aw%2Frd%3F%23%2520%20x%26y%3Dz%2B@mariadb.db:3306/app?ssl_check_hostname=false", false, "web_seq"},
		{"url", &v1.MySQLSpec{URLSecretRef: &v1.SecretKeySelector{Name: "db-url", Key: "url"}, Table: "sessions"},
			"mysql://app:pw@mysql.example:3307/web?tls=verify-identity",
			"mysql+pymysql://app:pw@mysql.example:3307/web?ssl_ca=%2Fetc%2Fssl%2Fcerts%2Fca-certificates.crt&ssl_check_hostname=true", true, ""},
		{"tls disabled", &v1.MySQLSpec{Host: "10.0.0.7", Port: 3306, Database: "app", CredentialsSecretRef: &v1.SecretReference{Name: "db"},
			TLS: "disabled", Table: "sessions"},
			"mysql://app:p%40ss%3Aw%2Frd%3F%23%2520%20x%26y%3Dz%2B@10.0.0.7:3306/app?tls=disabled",
			"mysql+pymysql://app:p%40ss%3Aw%2Frd%3F%23%2520%20x%26y%3Dz%2B@10.0.0.7:3306/app", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := myStore(tc.spec)
			data, err := ConnectionData(store, values)
			if err != nil {
				t.Fatal(err)
			}
			if data[sessionstore.EnvURL] != tc.wantURL || data[sessionstore.EnvFlaskSQLAlchemyURI] != tc.wantURI ||
				data[sessionstore.EnvFlaskSessionType] != "sqlalchemy" {
				t.Fatalf("Secret %v;\nwant URL %s\nand URI  %s", data, tc.wantURL, tc.wantURI)
			}
			env := CleanupPodEnv(store, data)
			got, err := sessionstore.ConfigFromMap(env)
			if err == nil {
				err = got.Validate()
			}
			if err != nil {
				t.Fatal(err)
			}
			want := sessionstore.Config{Backend: "mysql", URL: tc.wantURL, KeyPrefix: "session:", Lifetime: 2 * time.Hour,
				Database: sessionstore.DefaultDatabase, Collection: sessionstore.DefaultCollection, Table: tc.spec.Table,
				Sequence: tc.sequence, CreateTable: tc.create, TTLIndex: true, GracePeriod: 5 * time.Minute}
			if got != want {
				t.Fatalf("cleanup reads\n  %+v\nwant\n  %+v", got, want)
			}
			if CleanupCronJob(store, "img") == nil {
				t.Fatal("a mysql store got no cleanup CronJob")
			}
		})
	}
}

// TestMySQLHostilePasswordReadsTheSameEverywhere: the password the Secret
// holds is what the cleanup's URL parser, Go's net/url and the real
// SQLAlchemy (Debian's, which hands it to PyMySQL) all read back.
func TestMySQLHostilePasswordReadsTheSameEverywhere(t *testing.T) {
	store := myStore(&v1.MySQLSpec{Host: "db", Port: 3306, Database: "app", CredentialsSecretRef: &v1.SecretReference{Name: "db"}, Table: "sessions"})
	values := SecretValues{"db": {"username": []byte("us:er@x"), "password": []byte(myHostilePassword)}}
	data, err := ConnectionData(store, values)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := sessionstore.ParseMySQLURL(data[sessionstore.EnvURL])
	if err != nil || parsed.User != "us:er@x" || parsed.Password != myHostilePassword || parsed.Host != "db" || parsed.Database != "app" {
		t.Fatalf("the cleanup reads %+v (%v)", parsed, err)
	}
	uri, err := url.Parse(data[sessionstore.EnvFlaskSQLAlchemyURI])
	if pw, _ := uri.User.Password(); err != nil || pw != myHostilePassword || uri.User.Username() != "us:er@x" {
		t.Fatalf("net/url reads the app's URI as user %q password %q (%v)", uri.User.Username(), pw, err)
	}
	script := `import json, sys
from sqlalchemy.engine import make_url
u = make_url(sys.stdin.read())
json.dump({"user": u.username, "password": u.password, "host": u.host, "port": u.port, "database": u.database,
           "driver": u.drivername, "query": dict(u.query)}, sys.stdout)`
	cmd := exec.Command("/usr/bin/python3", "-c", script)
	cmd.Stdin = strings.NewReader(data[sessionstore.EnvFlaskSQLAlchemyURI])
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("SQLAlchemy's make_url: %v (Debian's python3-sqlalchemy comes with hack/start-services.sh)", err)
	}
	var got struct {
		User, Password, Host, Database, Driver string
		Port                                   int
		Query                                  map[string]string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got.User != "us:er@x" || got.Password != myHostilePassword || got.Host != "db" || got.Port != 3306 ||
		got.Database != "app" || got.Driver != "mysql+pymysql" || got.Query["ssl_check_hostname"] != "false" {
		t.Fatalf("SQLAlchemy reads %+v", got)
	}
}

// TestMySQLSecretRefusesBadURLs: a urlSecretRef that the cleanup would
// refuse is refused when the Secret is built, without quoting it.
func TestMySQLSecretRefusesBadURLs(t *testing.T) {
	for _, raw := range []string{"mysql+pymysql://u:Sup3rS3cret@h/db", "mysql://u:Sup3rS3cret@h/db?parseTime=true", "mysql://u:Sup3rS3cret@h"} {
		store := myStore(&v1.MySQLSpec{URLSecretRef: &v1.SecretKeySelector{Name: "s", Key: "url"}, Table: "sessions"})
		_, err := ConnectionData(store, SecretValues{"s": {"url": []byte(raw)}})
		if err == nil || strings.Contains(err.Error(), "Sup3rS3cret") {
			t.Errorf("%q: %v", raw, err)
		}
	}
}
