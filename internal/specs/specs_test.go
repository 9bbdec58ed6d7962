package specs

import (
	"fmt"
	"net/url"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

func TestHashedScheduleIsStableAndSpread(t *testing.T) {
	store := &v1.SessionStore{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "sessions"}}
	first := EffectiveSchedule(store)
	for i := 0; i < 10; i++ {
		if got := EffectiveSchedule(store.DeepCopy()); got != first {
			t.Fatalf("schedule changed between calls: %q then %q", first, got)
		}
	}
	if err := ValidateSchedule(first); err != nil {
		t.Fatalf("hashed schedule %q does not parse: %v", first, err)
	}

	perMinute := map[string]int{}
	const stores = 1000
	for i := 0; i < stores; i++ {
		s := &v1.SessionStore{ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("team-%d", i%37), Name: fmt.Sprintf("app-%d", i)}}
		perMinute[EffectiveSchedule(s)]++
	}
	// 1000 stores over 60 minutes average ~17 a minute: all minutes used,
	// none crowded.
	if len(perMinute) != 60 {
		t.Errorf("1000 stores use %d distinct minutes, want all 60", len(perMinute))
	}
	for schedule, n := range perMinute {
		if n > 40 {
			t.Errorf("%d of %d stores clean up at %q", n, stores, schedule)
		}
	}

	store.Spec.Cleanup.Schedule = "@daily"
	if got := EffectiveSchedule(store); got != "@daily" {
		t.Errorf("explicit schedule replaced by %q", got)
	}
}

func TestValidateScheduleCatchesWhatAdmissionCannot(t *testing.T) {
	for _, bad := range []string{"50-10 * * * *", "* * 31 2 *x", "0 0 * * * *"} {
		if ValidateSchedule(bad) == nil {
			t.Errorf("ValidateSchedule(%q) accepted it", bad)
		}
	}
}

func TestEscapeUserinfoRoundTrips(t *testing.T) {
	for _, pw := range []string{"p@ss:w/rd?#%20 x&y=z+", "日本語", "plain", "a%b", `"quoted'`, "tab\there"} {
		raw := "postgresql://" + escapeUserinfo("us:er") + ":" + escapeUserinfo(pw) + "@h:5432/db"
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("%q: %v", pw, err)
		}
		got, _ := u.User.Password()
		if got != pw || u.User.Username() != "us:er" || u.Host != "h:5432" {
			t.Errorf("round trip of %q gave user %q password %q host %q", pw, u.User.Username(), got, u.Host)
		}
	}
}

func TestFlaskStringKeepsStringsStrings(t *testing.T) {
	cases := map[string]string{
		"session:":  "session:",
		"sessions":  "sessions",
		"123":       `"123"`,
		"true":      `"true"`,
		"null":      `"null"`,
		`"x"`:       `"\"x\""`,
		"/flask/ss": "/flask/ss",
	}
	for in, want := range cases {
		if got := flaskString(in); got != want {
			t.Errorf("flaskString(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNativeExpiryBackendsGetNoCronJob(t *testing.T) {
	for _, backend := range []v1.Backend{v1.BackendRedis, v1.BackendMemcached} {
		store := &v1.SessionStore{Spec: v1.SessionStoreSpec{Backend: backend}}
		if cj := CleanupCronJob(store, "img"); cj != nil {
			t.Errorf("%s got a CronJob", backend)
		}
	}
}

// TestSecretIsWhatCleanupReads proves the contract between the controller
// and the cleanup command: the connection Secret plus the CronJob's own env,
// read by sessionstore.ConfigFromEnv, is exactly the store the spec declares.
func TestSecretIsWhatCleanupReads(t *testing.T) {
	values := SecretValues{
		"redis":  {"password": []byte("p@ss:w/rd?#% x")},
		"mongo":  {"uri": []byte("mongodb://u:p%40ss@mongo:27017/?authSource=admin")},
		"pg":     {"username": []byte("app"), "password": []byte("s3cr#t @x")},
		"pg-url": {"url": []byte("postgres://app:pw@db/app")},
	}
	meta := metav1.ObjectMeta{Namespace: "ns", Name: "store"}
	lifetime := &metav1.Duration{Duration: 2 * time.Hour}
	cases := []struct {
		name string
		spec v1.SessionStoreSpec
		want sessionstore.Config
	}{
		{"redis", v1.SessionStoreSpec{Backend: v1.BackendRedis, KeyPrefix: "s:", Lifetime: lifetime,
			Redis: &v1.RedisSpec{Address: "redis:6379", DB: 2, PasswordSecretRef: &v1.SecretKeySelector{Name: "redis", Key: "password"}}},
			sessionstore.Config{Backend: "redis", URL: "redis://:p%40ss%3Aw%2Frd%3F%23%25%20x@redis:6379/2", KeyPrefix: "s:",
				Lifetime: 2 * time.Hour}},
		{"memcached", v1.SessionStoreSpec{Backend: v1.BackendMemcached, KeyPrefix: "session:", Lifetime: lifetime,
			Memcached: &v1.MemcachedSpec{Servers: []string{"a:11211", "b:11211"}}},
			sessionstore.Config{Backend: "memcached", URL: "memcached://a:11211,b:11211", KeyPrefix: "session:", Lifetime: 2 * time.Hour}},
		{"mongodb", v1.SessionStoreSpec{Backend: v1.BackendMongoDB, KeyPrefix: "session:", Lifetime: lifetime,
			MongoDB: &v1.MongoDBSpec{URISecretRef: v1.SecretKeySelector{Name: "mongo", Key: "uri"}, Database: "web", Collection: "sess", TTLIndex: ptr.To(false)}},
			sessionstore.Config{Backend: "mongodb", URL: "mongodb://u:p%40ss@mongo:27017/?authSource=admin", KeyPrefix: "session:",
				Lifetime: 2 * time.Hour, Database: "web", Collection: "sess", TTLIndex: false}},
		{"postgresql", v1.SessionStoreSpec{Backend: v1.BackendPostgreSQL, KeyPrefix: "session:", Lifetime: lifetime,
			PostgreSQL: &v1.PostgreSQLSpec{Host: "db", Port: 5433, Database: "app", SSLMode: "require", Table: "web_sessions", Schema: "web",
				CredentialsSecretRef: &v1.SecretReference{Name: "pg"}, CreateTable: ptr.To(true), CreateExpiryIndex: ptr.To(false)}},
			sessionstore.Config{Backend: "postgresql", URL: "postgresql://app:s3cr%23t%20%40x@db:5433/app?sslmode=require", KeyPrefix: "session:",
				Lifetime: 2 * time.Hour, Table: "web_sessions", Schema: "web", CreateTable: true, CreateExpiryIndex: false}},
		{"postgresql-url", v1.SessionStoreSpec{Backend: v1.BackendPostgreSQL, KeyPrefix: "session:", Lifetime: lifetime,
			PostgreSQL: &v1.PostgreSQLSpec{URLSecretRef: &v1.SecretKeySelector{Name: "pg-url", Key: "url"}, Table: "sessions", Sequence: "sessions_id_seq"},
			Cleanup:    v1.CleanupSpec{GracePeriod: &metav1.Duration{}}},
			sessionstore.Config{Backend: "postgresql", URL: "postgres://app:pw@db/app", KeyPrefix: "session:",
				Lifetime: 2 * time.Hour, Table: "sessions", Sequence: "sessions_id_seq", CreateTable: true, CreateExpiryIndex: false}},
		{"filesystem", v1.SessionStoreSpec{Backend: v1.BackendFilesystem, KeyPrefix: "session:", Lifetime: lifetime,
			Filesystem: &v1.FilesystemSpec{ClaimName: "c", Path: "/var/flask sessions", Threshold: ptr.To[int32](0), Mode: "0600"}},
			sessionstore.Config{Backend: "filesystem", URL: "file:///var/flask%20sessions", KeyPrefix: "session:",
				Lifetime: 2 * time.Hour, Dir: "/var/flask sessions"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store := &v1.SessionStore{ObjectMeta: meta, Spec: tc.spec}
			data, err := ConnectionData(store, values)
			if err != nil {
				t.Fatal(err)
			}
			secret := ConnectionSecret(store, data)
			env := map[string]string{}
			for k, v := range secret.Data {
				env[k] = string(v)
			}
			var podEnv []corev1.EnvVar
			if cj := CleanupCronJob(store, "img"); cj != nil {
				podEnv = cj.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Env
			} else {
				podEnv = CleanupEnv(store)
			}
			for _, e := range podEnv {
				env[e.Name] = e.Value
			}
			if env[sessionstore.EnvBatchSize] == "" {
				t.Errorf("no %s in the cleanup env", sessionstore.EnvBatchSize)
			}
			got, err := sessionstore.ConfigFromMap(env)
			if err != nil {
				t.Fatalf("ConfigFromEnv: %v", err)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			want := tc.want
			// Keys the backend does not use take ConfigFromEnv's defaults.
			if want.Database == "" {
				want.Database = sessionstore.DefaultDatabase
			}
			if want.Collection == "" {
				want.Collection = sessionstore.DefaultCollection
			}
			if want.Table == "" {
				want.Table = sessionstore.DefaultTable
			}
			if tc.spec.Backend != v1.BackendPostgreSQL {
				want.CreateTable, want.CreateExpiryIndex = true, false
			}
			if tc.spec.Cleanup.GracePeriod == nil {
				want.GracePeriod = 5 * time.Minute // admission's default
			}
			if tc.spec.Backend != v1.BackendMongoDB {
				want.TTLIndex = true
			}
			if got != want {
				t.Errorf("cleanup reads\n  %+v\nwant\n  %+v", got, want)
			}
		})
	}
}

// spec.cleanup.podTemplate places the pod and names its identity, and can
// neither replace the operator's labels nor loosen its security settings.
func TestCleanupPodTemplateOverrides(t *testing.T) {
	store := &v1.SessionStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "files"},
		Spec: v1.SessionStoreSpec{Backend: v1.BackendFilesystem,
			Filesystem: &v1.FilesystemSpec{ClaimName: "rwo", Path: "/s", Mode: "0600"}},
	}
	plain := CleanupCronJob(store, "img").Spec.JobTemplate.Spec.Template
	if *plain.Spec.AutomountServiceAccountToken || plain.Spec.ServiceAccountName != "" {
		t.Fatalf("without a podTemplate the pod must get no token: %+v", plain.Spec)
	}

	affinity := &corev1.Affinity{PodAffinity: &corev1.PodAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			TopologyKey:   corev1.LabelHostname,
		}},
	}}
	store.Spec.Cleanup.PodTemplate = &v1.CleanupPodTemplate{
		Metadata: v1.CleanupPodMetadata{
			Labels:      map[string]string{"team": "shop", StoreLabel: "someone-else"},
			Annotations: map[string]string{"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"},
		},
		NodeSelector:       map[string]string{"pool": "db"},
		Tolerations:        []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "db", Effect: corev1.TaintEffectNoSchedule}},
		Affinity:           affinity,
		ImagePullSecrets:   []corev1.LocalObjectReference{{Name: "registry"}},
		PriorityClassName:  "low",
		ServiceAccountName: "cloudsql-client",
	}
	tmpl := CleanupCronJob(store, "img").Spec.JobTemplate.Spec.Template
	if tmpl.Labels["team"] != "shop" || tmpl.Labels[StoreLabel] != "files" {
		t.Errorf("labels: want team=shop added and the store label kept, got %v", tmpl.Labels)
	}
	if tmpl.Annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] != "true" {
		t.Errorf("annotations: %v", tmpl.Annotations)
	}
	pod := tmpl.Spec
	if pod.NodeSelector["pool"] != "db" || len(pod.Tolerations) != 1 || pod.Affinity != affinity ||
		len(pod.ImagePullSecrets) != 1 || pod.PriorityClassName != "low" {
		t.Errorf("placement not applied: %+v", pod)
	}
	if pod.ServiceAccountName != "cloudsql-client" || pod.AutomountServiceAccountToken != nil {
		t.Errorf("identity: want the ServiceAccount to decide on its token, got %q %v", pod.ServiceAccountName, pod.AutomountServiceAccountToken)
	}
	if !reflect.DeepEqual(pod.SecurityContext, plain.Spec.SecurityContext) ||
		!reflect.DeepEqual(pod.Containers[0].SecurityContext, plain.Spec.Containers[0].SecurityContext) {
		t.Errorf("the restricted security settings changed")
	}
	if pod.Volumes[0].PersistentVolumeClaim.ClaimName != "rwo" {
		t.Errorf("the claim is still mounted: %+v", pod.Volumes)
	}
}

// A cleanup image on a moving tag is pulled every time; a pinned one once.
func TestCleanupImagePullPolicy(t *testing.T) {
	cases := map[string]corev1.PullPolicy{
		"ghcr.io/sessionstore/sessionstore-operator:v0.2.0":          corev1.PullIfNotPresent,
		"ghcr.io/sessionstore/sessionstore-operator:latest":          corev1.PullAlways,
		"ghcr.io/sessionstore/sessionstore-operator":                 corev1.PullAlways,
		"localhost:5000/sessionstore-operator":                       corev1.PullAlways,
		"localhost:5000/sessionstore-operator:dev":                   corev1.PullIfNotPresent,
		"ghcr.io/sessionstore/sessionstore-operator@sha256:0123abcd": corev1.PullIfNotPresent,
	}
	store := &v1.SessionStore{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s"},
		Spec: v1.SessionStoreSpec{Backend: v1.BackendFilesystem, Filesystem: &v1.FilesystemSpec{ClaimName: "c", Path: "/s", Mode: "0600"}}}
	for image, want := range cases {
		c := CleanupCronJob(store, image).Spec.JobTemplate.Spec.Template.Spec.Containers[0]
		if c.ImagePullPolicy != want {
			t.Errorf("%s: pull policy %s, want %s", image, c.ImagePullPolicy, want)
		}
	}
}
