package controllers

import (
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// Admission is the CRD's schema and CEL rules, checked by the real
// kube-apiserver: bad input is refused with a message naming the field.
func TestAdmissionRejectsBadInput(t *testing.T) {
	ns := newNamespace(t)
	pg := func(extra string) string {
		return `
backend: postgresql
postgresql:
  host: db
  database: app
  credentialsSecretRef: {name: creds}
` + extra
	}
	cases := []struct {
		name    string
		objName string
		spec    string
		wantMsg []string
	}{
		{"cron out of range", "", pg("cleanup: {schedule: '61 * * * *'}"), []string{"spec.cleanup.schedule", "5-field cron"}},
		{"cron not a cron", "", pg("cleanup: {schedule: 'every hour'}"), []string{"spec.cleanup.schedule"}},
		{"cron with four fields", "", pg("cleanup: {schedule: '0 * * *'}"), []string{"spec.cleanup.schedule"}},
		{"cron with a time zone inside", "", pg("cleanup: {schedule: 'CRON_TZ=UTC 0 * * * *'}"), []string{"spec.cleanup.schedule", "timeZone"}},
		{"block does not match backend", "", `
backend: redis
postgresql: {host: db, database: app, credentialsSecretRef: {name: creds}}
`, []string{"spec.redis must be set", "spec.postgresql must be set when, and only when, spec.backend is postgresql"}},
		{"two blocks", "", pg("redis: {address: 'r:6379'}"), []string{"spec.redis must be set when, and only when, spec.backend is redis"}},
		{"no block", "", "backend: mongodb", []string{"spec.mongodb must be set"}},
		{"unknown backend", "", "backend: dynamodb", []string{"spec.backend", "Unsupported value"}},
		{"hostile table", "", pg("  table: 'sessions; DROP TABLE users'"), []string{"spec.postgresql.table"}},
		{"hostile schema", "", pg(`  schema: 'public"; --'`), []string{"spec.postgresql.schema"}},
		{"hostile collection", "", `
backend: mongodb
mongodb: {uriSecretRef: {name: m, key: uri}, collection: 'sessions.$cmd'}
`, []string{"spec.mongodb.collection"}},
		{"hostile database", "", `
backend: mongodb
mongodb: {uriSecretRef: {name: m, key: uri}, database: 'admin/x'}
`, []string{"spec.mongodb.database"}},
		{"lifetime under a minute", "", pg("lifetime: 30s"), []string{"spec.lifetime must be at least 1m"}},
		{"lifetime not a duration", "", pg("lifetime: 31 days"), []string{"spec.lifetime"}},
		{"name too long for the CronJob", strings.Repeat("a", 45), pg(""), []string{"metadata.name must be at most 44"}},
		{"redis without address or URL", "", "backend: redis\nredis: {db: 1}", []string{"spec.redis needs exactly one of address or urlSecretRef"}},
		{"redis with both", "", "backend: redis\nredis: {address: 'r:6379', urlSecretRef: {name: r, key: url}}", []string{"exactly one of address or urlSecretRef"}},
		{"postgresql host without database", "", "backend: postgresql\npostgresql: {host: db, credentialsSecretRef: {name: c}}", []string{"spec.postgresql.host needs database and credentialsSecretRef"}},
		{"memcached without servers", "", "backend: memcached\nmemcached: {servers: []}", []string{"spec.memcached.servers"}},
		{"batch size too large", "", pg("cleanup: {batchSize: 100001}"), []string{"spec.cleanup.batchSize"}},
		{"ssl mode unknown", "", pg("  sslMode: maybe"), []string{"spec.postgresql.sslMode"}},
		{"file mode not octal", "", "backend: filesystem\nfilesystem: {claimName: c, mode: '0999'}", []string{"spec.filesystem.mode"}},
		{"negative threshold", "", "backend: filesystem\nfilesystem: {claimName: c, threshold: -1}", []string{"spec.filesystem.threshold"}},
		{"grace not a duration", "", pg("cleanup: {gracePeriod: 5 minutes}"), []string{"spec.cleanup.gracePeriod"}},
		{"grace over a day", "", pg("cleanup: {gracePeriod: 25h}"), []string{"spec.cleanup.gracePeriod must be at most 24h"}},
		{"memcached port 0", "", "backend: memcached\nmemcached: {servers: ['a:11211', 'b:0']}", []string{"spec.memcached.servers: each port must be from 1 to 65535"}},
		{"redis port over 65535", "", "backend: redis\nredis: {address: 'r:70000'}", []string{"spec.redis.address: the port must be from 1 to 65535"}},
		{"hostile sequence", "", pg("  sequence: 'seq; DROP TABLE users'"), []string{"spec.postgresql.sequence"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			name := tc.objName
			if name == "" {
				name = "bad-" + strings.ReplaceAll(strings.ToLower(tc.name), " ", "-")
				if len(name) > 44 {
					name = name[:44]
				}
				name = strings.TrimRight(name, "-")
			}
			err := k8sClient.Create(ctx(), storeFromYAML(t, ns, name, tc.spec))
			g.Expect(err).To(HaveOccurred(), "admission accepted %s", tc.name)
			for _, want := range tc.wantMsg {
				g.Expect(err.Error()).To(ContainSubstring(want))
			}
		})
	}
}

func TestAdmissionAcceptsGoodInput(t *testing.T) {
	ns := newNamespace(t)
	for i, schedule := range []string{"", "@daily", "@hourly", "*/5 * * * *", "0 3 * * MON-FRI", "15 2,14 1-15 jan,jul ?", "0 0 * * 0"} {
		g := NewWithT(t)
		spec := "backend: filesystem\nfilesystem: {claimName: c}\ncleanup: {schedule: '" + schedule + "'}\nlifetime: 1h30m"
		name := "good-" + string(rune('a'+i))
		g.Expect(k8sClient.Create(ctx(), storeFromYAML(t, ns, name, spec))).To(Succeed(), "schedule %q", schedule)
	}
	// threshold 0 (cachelib's pruning off) and a zero grace are allowed.
	NewWithT(t).Expect(k8sClient.Create(ctx(), storeFromYAML(t, ns, "zeroes",
		"backend: filesystem\nfilesystem: {claimName: c, threshold: 0}\ncleanup: {gracePeriod: '0'}"))).To(Succeed())
	// Exactly 44 characters fits.
	NewWithT(t).Expect(k8sClient.Create(ctx(), storeFromYAML(t, ns, strings.Repeat("b", 44),
		"backend: filesystem\nfilesystem: {claimName: c}"))).To(Succeed())
}

func TestAdmissionDefaults(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	obj := storeFromYAML(t, ns, "defaults", "backend: postgresql\npostgresql: {host: db, database: app, credentialsSecretRef: {name: c}}")
	g.Expect(k8sClient.Create(ctx(), obj)).To(Succeed())
	store := getStore(g, ns, "defaults")
	g.Expect(store.Spec.KeyPrefix).To(Equal("session:"))
	g.Expect(store.Spec.Lifetime.Duration.String()).To(Equal("744h0m0s"))
	g.Expect(store.Spec.PostgreSQL.Port).To(BeEquivalentTo(5432))
	g.Expect(store.Spec.PostgreSQL.Table).To(Equal("sessions"))
	g.Expect(string(store.Spec.PostgreSQL.SSLMode)).To(Equal("prefer"))
	g.Expect(*store.Spec.PostgreSQL.CreateTable).To(BeTrue())
	g.Expect(*store.Spec.PostgreSQL.CreateExpiryIndex).To(BeFalse(), "the ctid walk needs no index; every write would pay for it")
	g.Expect(store.Spec.Cleanup.GracePeriod.Duration).To(Equal(5*time.Minute), "a margin for clock skew by default")
	g.Expect(store.Spec.Cleanup.BatchSize).To(BeEquivalentTo(1000))
	g.Expect(store.Spec.Cleanup.ActiveDeadlineSeconds).To(BeEquivalentTo(3600))
	g.Expect(*store.Spec.Cleanup.SuccessfulJobsHistoryLimit).To(BeEquivalentTo(3))
	g.Expect(*store.Spec.Cleanup.FailedJobsHistoryLimit).To(BeEquivalentTo(3))
}

func TestAdmissionRejectsBackendChange(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	g.Expect(k8sClient.Create(ctx(), storeFromYAML(t, ns, "fixed", "backend: memcached\nmemcached: {servers: ['m:11211']}"))).To(Succeed())
	store := getStore(g, ns, "fixed")
	obj := storeFromYAML(t, ns, "fixed", "backend: redis\nredis: {address: 'r:6379'}")
	obj.SetResourceVersion(store.ResourceVersion)
	err := k8sClient.Update(ctx(), obj)
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring("spec.backend is immutable"))
}

// storeFromYAML builds a SessionStore from a spec written as a user would.
func storeFromYAML(t *testing.T, ns, name, specYAML string) *unstructured.Unstructured {
	t.Helper()
	spec := map[string]any{}
	if err := yaml.Unmarshal([]byte(specYAML), &spec); err != nil {
		t.Fatalf("bad test YAML: %v", err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion("sessionstore.dev/v1")
	u.SetKind("SessionStore")
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}
