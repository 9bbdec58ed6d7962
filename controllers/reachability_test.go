package controllers

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/testservers"
)

func localRedisStore(ns, name string, port int, withPassword bool) *v1.SessionStore {
	s := &v1.SessionStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1.SessionStoreSpec{Backend: v1.BackendRedis,
			Redis: &v1.RedisSpec{Address: fmt.Sprintf("127.0.0.1:%d", port)}},
	}
	if withPassword {
		s.Spec.Redis.PasswordSecretRef = &v1.SecretKeySelector{Name: "redis-auth", Key: "password"}
	}
	return s
}

func TestStoreDownThenUp(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	port := testservers.FreePort(t)
	createStore(t, localRedisStore(ns, "flaky", port, false))

	store := waitCondition(t, ns, "flaky", v1.ConditionStoreReachable, metav1.ConditionFalse, "ConnectionRefused")
	ready := condition(store, v1.ConditionReady)
	g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(ready.Message).To(HavePrefix("StoreReachable:"), "Ready names the first thing wrong")
	g.Eventually(func(g Gomega) {
		g.Expect(eventReasons(g, ns, "flaky")).To(ContainElement(v1.EventStoreUnreachable))
	}, eventually, poll).Should(Succeed())

	// The server comes up: nobody touches the store, it becomes Ready.
	startRedis(t, port, "")
	waitReady(t, ns, "flaky")
	g.Eventually(func(g Gomega) {
		g.Expect(eventReasons(g, ns, "flaky")).To(ContainElement(v1.EventStoreReachable))
	}, eventually, poll).Should(Succeed())
	g.Expect(metricValue(t, "sessionstore_reachable", ns, "flaky")).To(Equal(1.0))
	g.Expect(metricValue(t, "sessionstore_ready", ns, "flaky")).To(Equal(1.0))
}

func TestWrongPasswordThenRotated(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	port := testservers.FreePort(t)
	startRedis(t, port, "the right one")
	auth := createSecret(t, ns, "redis-auth", map[string]string{"password": "a wrong one"})
	createStore(t, localRedisStore(ns, "locked", port, true))

	store := waitCondition(t, ns, "locked", v1.ConditionStoreReachable, metav1.ConditionFalse, "AuthenticationFailed")
	msg := condition(store, v1.ConditionStoreReachable).Message
	g.Expect(msg).NotTo(ContainSubstring("a wrong one"), "no credential in status")
	g.Expect(strings.ToLower(msg)).NotTo(ContainSubstring("wrong%20one"))

	auth.StringData = map[string]string{"password": "the right one"}
	g.Expect(k8sClient.Update(ctx(), auth)).To(Succeed())
	waitReady(t, ns, "locked")
}

// The same on PostgreSQL, against a cluster that checks passwords: the
// server's 28P01 reads AuthenticationFailed, and the right password (full
// of URL syntax) carried by the connection Secret's URL gets in.
func TestPostgresWrongPasswordThenRotated(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	addr, superPassword := testservers.PasswordPostgres(t)
	host, port, _ := strings.Cut(addr, ":")
	const password = "p@ss:w/rd?#%20 x&y=z+"
	role := fmt.Sprintf("sst_ctrl_%d", time.Now().UnixNano())
	admin, err := pgx.Connect(ctx(), (&url.URL{Scheme: "postgresql", User: url.UserPassword("postgres", superPassword),
		Host: addr, Path: "/postgres", RawQuery: "sslmode=disable"}).String())
	g.Expect(err).NotTo(HaveOccurred())
	defer admin.Close(ctx())
	_, err = admin.Exec(ctx(), "CREATE ROLE "+role+" LOGIN PASSWORD '"+password+"'")
	g.Expect(err).NotTo(HaveOccurred())
	_, err = admin.Exec(ctx(), "CREATE DATABASE "+role+" OWNER "+role)
	g.Expect(err).NotTo(HaveOccurred())

	creds := createSecret(t, ns, "pg", map[string]string{"username": role, "password": "a wrong one"})
	portNumber, _ := strconv.Atoi(port)
	createStore(t, &v1.SessionStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "locked-pg"},
		Spec: v1.SessionStoreSpec{Backend: v1.BackendPostgreSQL, PostgreSQL: &v1.PostgreSQLSpec{
			Host: host, Port: int32(portNumber), Database: role, SSLMode: "disable",
			CredentialsSecretRef: &v1.SecretReference{Name: "pg"}}},
	})
	store := waitCondition(t, ns, "locked-pg", v1.ConditionStoreReachable, metav1.ConditionFalse, "AuthenticationFailed")
	msg := condition(store, v1.ConditionStoreReachable).Message
	g.Expect(msg).To(ContainSubstring("28P01"))
	g.Expect(msg).NotTo(ContainSubstring("wrong"), "no credential in status")

	creds.StringData = map[string]string{"username": role, "password": password}
	g.Expect(k8sClient.Update(ctx(), creds)).To(Succeed())
	store = waitReady(t, ns, "locked-pg")
	g.Expect(condition(store, v1.ConditionSchemaReady).Status).To(Equal(metav1.ConditionTrue), "the table was made as the role")
}

func TestMissingTableWithAndWithoutCreateTable(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	db := newPostgresDatabase(t)
	createSecret(t, ns, "pg", map[string]string{"username": "postgres", "password": "unused: trust auth"})
	store := &v1.SessionStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tables"},
		Spec: v1.SessionStoreSpec{Backend: v1.BackendPostgreSQL, PostgreSQL: &v1.PostgreSQLSpec{
			Host: "127.0.0.1", Database: db, SSLMode: "disable", Table: "web_sessions",
			CredentialsSecretRef: &v1.SecretReference{Name: "pg"},
			CreateTable:          ptr.To(false), CreateExpiryIndex: ptr.To(false),
		}},
	}
	createStore(t, store)

	got := waitCondition(t, ns, "tables", v1.ConditionStoreReachable, metav1.ConditionFalse, v1.ReasonTableMissing)
	g.Expect(condition(got, v1.ConditionSchemaReady).Reason).To(Equal(v1.ReasonTableMissing))
	g.Expect(condition(got, v1.ConditionReady).Message).To(ContainSubstring("web_sessions"))
	g.Expect(tableExists(t, db, "web_sessions")).To(BeFalse(), "createTable false creates nothing")

	got.Spec.PostgreSQL.CreateTable = ptr.To(true)
	g.Expect(k8sClient.Update(ctx(), got)).To(Succeed())
	got = waitReady(t, ns, "tables")
	g.Expect(condition(got, v1.ConditionSchemaReady).Reason).To(Equal(v1.ReasonSchemaCreated))
	g.Expect(tableExists(t, db, "web_sessions")).To(BeTrue())
	g.Eventually(func(g Gomega) {
		g.Expect(eventReasons(g, ns, "tables")).To(ContainElement(v1.EventSchemaCreated))
	}, eventually, poll).Should(Succeed())

	// The manager never builds the index it is asked for (a build waits for
	// every open transaction in the database): the store stays Ready and
	// reachable, and SchemaReady says the index is pending.
	got.Spec.PostgreSQL.CreateExpiryIndex = ptr.To(true)
	g.Expect(k8sClient.Update(ctx(), got)).To(Succeed())
	got = waitCondition(t, ns, "tables", v1.ConditionSchemaReady, metav1.ConditionFalse, v1.ReasonSchemaPending)
	g.Expect(condition(got, v1.ConditionStoreReachable).Status).To(Equal(metav1.ConditionTrue), "an index still to build is not unreachability")
	waitReady(t, ns, "tables")
	g.Expect(tableExists(t, db, "web_sessions_expiry_idx")).To(BeFalse(), "the manager built an index")

	// A cleanup run builds it (internal/sessionstore/postgres's index tests;
	// the statement below is the one it runs); the next probe sees it.
	pgExec(t, db, `CREATE INDEX CONCURRENTLY IF NOT EXISTS web_sessions_expiry_idx ON web_sessions (expiry)`)
	waitCondition(t, ns, "tables", v1.ConditionSchemaReady, metav1.ConditionTrue, v1.ReasonSchemaPresent)
}

// Many stores that never answer must neither starve a healthy one nor be
// probed in a loop.
func TestManyDeadStoresDoNotStarveHealthyOnes(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	silent := silentServer(t)
	refused := testservers.FreePort(t)
	for i := 0; i < 8; i++ {
		createStore(t, localRedisStore(ns, fmt.Sprintf("silent-%d", i), silent, false))
		createStore(t, localRedisStore(ns, fmt.Sprintf("refused-%d", i), refused, false))
	}
	healthyPort := testservers.FreePort(t)
	startRedis(t, healthyPort, "")
	createStore(t, localRedisStore(ns, "healthy", healthyPort, false))
	waitReady(t, ns, "healthy")
	for i := 0; i < 8; i++ {
		waitCondition(t, ns, fmt.Sprintf("silent-%d", i), v1.ConditionStoreReachable, metav1.ConditionFalse, "Timeout")
	}

	// A dead store is still retried (the backoff's exact waits are shown
	// by TestProbeBackoffDoublesWhileDownThenSettles, on a fake clock).
	before := probeCount(t, ns, "refused-0")
	g.Eventually(func() uint64 { return probeCount(t, ns, "refused-0") }, eventually, poll).Should(BeNumerically(">", before))
}

func eventReasons(g Gomega, ns, name string) []string {
	list := &eventsv1.EventList{}
	g.Expect(k8sClient.List(ctx(), list, client.InNamespace(ns))).To(Succeed())
	var reasons []string
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			reasons = append(reasons, e.Reason)
		}
	}
	return reasons
}

// metricValue reads a per-store gauge from the manager's registry.
func metricValue(t *testing.T, metric, ns, name string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != metric {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelValue(m.GetLabel(), "namespace") == ns && labelValue(m.GetLabel(), "name") == name {
				if m.GetGauge() != nil {
					return m.GetGauge().GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s series for %s/%s", metric, ns, name)
	return 0
}

func probeCount(t *testing.T, ns, name string) uint64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != "sessionstore_probe_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelValue(m.GetLabel(), "namespace") == ns && labelValue(m.GetLabel(), "name") == name {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

type labelPair interface {
	GetName() string
	GetValue() string
}

func labelValue[L labelPair](labels []L, name string) string {
	for _, l := range labels {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// pgExec runs one statement in database db, outside a transaction.
func pgExec(t *testing.T, db, statement string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgresql://postgres@127.0.0.1:5432/%s?sslmode=disable", db))
	if err != nil {
		t.Fatalf("connecting to %s: %v", db, err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, statement); err != nil {
		t.Fatalf("%s: %v", statement, err)
	}
}
