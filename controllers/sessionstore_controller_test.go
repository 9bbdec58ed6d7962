package controllers

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

// hostilePassword holds every character that breaks a naively built URL.
const hostilePassword = "p@ss:w/rd?#%20 x&y=z+"

func TestPostgreSQLStoreGetsSecretAndCronJob(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createSecret(t, ns, "pg-credentials", map[string]string{"username": "app user", "password": hostilePassword})
	createStore(t, postgresStore(ns, "shop"))

	store := waitConfigured(t, ns, "shop")
	g.Expect(store.Status.ConnectionSecretName).To(Equal("shop-session-store"))
	g.Expect(store.Status.Cleanup.CronJobName).To(Equal("shop-cleanup"))
	g.Expect(condition(store, v1.ConditionConnectionSecretReady).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(condition(store, v1.ConditionCleanupScheduled).Reason).To(Equal(v1.ReasonScheduled))

	secret := waitSecret(t, ns, "shop-session-store")
	data := stringData(secret)
	g.Expect(data).To(HaveKeyWithValue("SESSION_STORE_BACKEND", "postgresql"))
	g.Expect(data).To(HaveKeyWithValue("SESSION_STORE_TABLE", "sessions"))
	g.Expect(data).To(HaveKeyWithValue("SESSION_STORE_KEY_PREFIX", "session:"))
	g.Expect(data).To(HaveKeyWithValue("SESSION_STORE_LIFETIME_SECONDS", "2678400"))
	g.Expect(data).To(HaveKeyWithValue("FLASK_SESSION_TYPE", "sqlalchemy"))
	g.Expect(data).To(HaveKeyWithValue("FLASK_SESSION_SQLALCHEMY_TABLE", "sessions"))
	g.Expect(data).To(HaveKeyWithValue("FLASK_PERMANENT_SESSION_LIFETIME", "2678400"))
	g.Expect(data).To(HaveKeyWithValue("FLASK_SESSION_KEY_PREFIX", "session:"))
	g.Expect(data).NotTo(HaveKey("SESSION_STORE_SCHEMA"))
	g.Expect(data["FLASK_SQLALCHEMY_DATABASE_URI"]).To(Equal(data["SESSION_STORE_URL"]))

	u, err := url.Parse(data["SESSION_STORE_URL"])
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(u.Scheme).To(Equal("postgresql"))
	g.Expect(u.User.Username()).To(Equal("app user"))
	pw, _ := u.User.Password()
	g.Expect(pw).To(Equal(hostilePassword))
	g.Expect(u.Host).To(Equal("db.example.svc:5432"))
	g.Expect(u.Path).To(Equal("/app"))
	g.Expect(u.Query().Get("sslmode")).To(Equal("prefer"))
	g.Expect(u.Fragment).To(BeEmpty())

	g.Expect(metav1.IsControlledBy(secret, store)).To(BeTrue(), "owner reference for garbage collection")
	g.Expect(secret.Labels).To(HaveKeyWithValue(specs.ManagedByLabel, specs.ManagedByValue))

	cj := waitCronJob(t, ns, "shop-cleanup")
	g.Expect(metav1.IsControlledBy(cj, store)).To(BeTrue())
	g.Expect(cj.Spec.Schedule).To(Equal(store.Status.Cleanup.EffectiveSchedule))
	g.Expect(cj.Spec.Schedule).To(Equal(specs.EffectiveSchedule(store)))
	g.Expect(cj.Spec.ConcurrencyPolicy).To(Equal(batchv1.ForbidConcurrent))
	g.Expect(*cj.Spec.Suspend).To(BeFalse())
	g.Expect(*cj.Spec.SuccessfulJobsHistoryLimit).To(BeEquivalentTo(3))
	g.Expect(*cj.Spec.FailedJobsHistoryLimit).To(BeEquivalentTo(3))
	job := cj.Spec.JobTemplate.Spec
	g.Expect(*job.ActiveDeadlineSeconds).To(BeEquivalentTo(3600))
	g.Expect(*job.BackoffLimit).To(BeNumerically("<=", 3))
	pod := job.Template.Spec
	g.Expect(pod.RestartPolicy).To(Equal(corev1.RestartPolicyNever))
	g.Expect(*pod.SecurityContext.RunAsNonRoot).To(BeTrue())
	g.Expect(pod.SecurityContext.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))
	g.Expect(pod.Containers).To(HaveLen(1))
	c := pod.Containers[0]
	g.Expect(c.Image).To(Equal(testImage))
	g.Expect(c.Args).To(Equal([]string{"cleanup"}))
	g.Expect(c.EnvFrom).To(HaveLen(1))
	g.Expect(c.EnvFrom[0].SecretRef.Name).To(Equal("shop-session-store"))
	g.Expect(c.Env).To(ContainElement(corev1.EnvVar{Name: "SESSION_STORE_BATCH_SIZE", Value: "1000"}))
	g.Expect(c.Env).To(ContainElement(corev1.EnvVar{Name: "SESSION_STORE_GRACE_SECONDS", Value: "300"}), "admission's 5m default grace")
	g.Expect(c.Env).To(ContainElement(corev1.EnvVar{Name: "SESSION_STORE_CREATE_EXPIRY_INDEX", Value: "false"}), "no expiry index unless asked for")
	g.Expect(*c.SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
	g.Expect(*c.SecurityContext.AllowPrivilegeEscalation).To(BeFalse())
	g.Expect(c.SecurityContext.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
	g.Expect(c.TerminationMessagePolicy).To(Equal(corev1.TerminationMessageFallbackToLogsOnError))
	g.Expect(c.TerminationMessagePath).To(Equal("/dev/termination-log"))
	for _, v := range c.Env {
		g.Expect(v.Value).NotTo(ContainSubstring("p@ss"), "no credential in the CronJob")
	}
	g.Expect(strings.Join(c.Args, " ")).NotTo(ContainSubstring("p@ss"))
}

func TestEachBackendSecret(t *testing.T) {
	ns := newNamespace(t)
	createSecret(t, ns, "redis-auth", map[string]string{"password": hostilePassword})
	createSecret(t, ns, "mongo", map[string]string{"uri": "mongodb://u:p%40ss@mongo.example:27017/?authSource=admin"})
	createSecret(t, ns, "pg-url", map[string]string{"url": "postgres://app:secret@db:5432/app?sslmode=require"})

	cases := []struct {
		store   *v1.SessionStore
		want    map[string]string
		checkFn func(g Gomega, data map[string]string)
		cronJob bool
	}{
		{
			store: func() *v1.SessionStore {
				s := redisStore(ns, "redis")
				s.Spec.Redis.DB = 3
				s.Spec.Redis.TLS = true
				s.Spec.Redis.Username = "app"
				return s
			}(),
			want: map[string]string{"SESSION_STORE_BACKEND": "redis", "FLASK_SESSION_TYPE": "redis"},
			checkFn: func(g Gomega, data map[string]string) {
				u, err := url.Parse(data["SESSION_STORE_URL"])
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(u.Scheme).To(Equal("rediss"))
				g.Expect(u.User.Username()).To(Equal("app"))
				pw, _ := u.User.Password()
				g.Expect(pw).To(Equal(hostilePassword))
				g.Expect(u.Host).To(Equal("redis.example.svc:6379"))
				g.Expect(u.Path).To(Equal("/3"))
			},
		},
		{
			store: &v1.SessionStore{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "memcached"},
				Spec: v1.SessionStoreSpec{Backend: v1.BackendMemcached,
					Memcached: &v1.MemcachedSpec{Servers: []string{"mc-0.mc:11211", "mc-1.mc:11211"}}},
			},
			want: map[string]string{"SESSION_STORE_URL": "memcached://mc-0.mc:11211,mc-1.mc:11211",
				"FLASK_SESSION_TYPE": "memcached"},
		},
		{
			store: &v1.SessionStore{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mongo"},
				Spec: v1.SessionStoreSpec{Backend: v1.BackendMongoDB, KeyPrefix: "app:",
					MongoDB: &v1.MongoDBSpec{URISecretRef: v1.SecretKeySelector{Name: "mongo", Key: "uri"}, Database: "12345"}},
			},
			want: map[string]string{
				"SESSION_STORE_URL":             "mongodb://u:p%40ss@mongo.example:27017/?authSource=admin",
				"SESSION_STORE_DATABASE":        "12345",
				"SESSION_STORE_COLLECTION":      "sessions",
				"SESSION_STORE_KEY_PREFIX":      "app:",
				"FLASK_SESSION_TYPE":            "mongodb",
				"FLASK_SESSION_MONGODB_DB":      `"12345"`, // quoted: Flask parses values as JSON
				"FLASK_SESSION_MONGODB_COLLECT": "sessions",
			},
			cronJob: true,
		},
		{
			store: &v1.SessionStore{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pgurl"},
				Spec: v1.SessionStoreSpec{Backend: v1.BackendPostgreSQL, Lifetime: &metav1.Duration{Duration: 30 * time.Minute},
					PostgreSQL: &v1.PostgreSQLSpec{URLSecretRef: &v1.SecretKeySelector{Name: "pg-url", Key: "url"},
						Table: "Flask_Sessions", Schema: "web", Sequence: "flask_sessions_id_seq"}},
			},
			want: map[string]string{
				"SESSION_STORE_URL":               "postgres://app:secret@db:5432/app?sslmode=require",
				"FLASK_SQLALCHEMY_DATABASE_URI":   "postgresql://app:secret@db:5432/app?sslmode=require",
				"SESSION_STORE_TABLE":             "Flask_Sessions",
				"SESSION_STORE_SCHEMA":            "web",
				"FLASK_SESSION_SQLALCHEMY_SCHEMA": "web",
				// An app that sets a sequence cannot insert into a table made without it.
				"SESSION_STORE_SEQUENCE":            "flask_sessions_id_seq",
				"FLASK_SESSION_SQLALCHEMY_SEQUENCE": "flask_sessions_id_seq",
				"SESSION_STORE_LIFETIME_SECONDS":    "1800",
				"FLASK_PERMANENT_SESSION_LIFETIME":  "1800",
			},
			cronJob: true,
		},
		{
			store: filesystemStore(ns, "files"),
			want: map[string]string{
				"SESSION_STORE_BACKEND":        "filesystem",
				"SESSION_STORE_URL":            "file:///flask_session",
				"SESSION_STORE_DIR":            "/flask_session",
				"FLASK_SESSION_TYPE":           "filesystem",
				"FLASK_SESSION_FILE_DIR":       "/flask_session",
				"FLASK_SESSION_FILE_THRESHOLD": "500",
				"FLASK_SESSION_FILE_MODE":      "384", // 0600 in decimal, as Flask passes it to os.chmod
			},
			cronJob: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.store.Name, func(t *testing.T) {
			g := NewWithT(t)
			createStore(t, tc.store)
			store := waitConfigured(t, ns, tc.store.Name)
			data := stringData(waitSecret(t, ns, tc.store.Name+"-session-store"))
			for k, v := range tc.want {
				g.Expect(data).To(HaveKeyWithValue(k, v))
			}
			if tc.checkFn != nil {
				tc.checkFn(g, data)
			}
			err := k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: tc.store.Name + "-cleanup"}, &batchv1.CronJob{})
			if tc.cronJob {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(store.Status.Cleanup.CronJobName).To(Equal(tc.store.Name + "-cleanup"))
			} else {
				g.Expect(isNotFound(err)).To(BeTrue(), "no CronJob for native expiry, got %v", err)
				c := condition(store, v1.ConditionCleanupScheduled)
				g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
				g.Expect(c.Reason).To(Equal(v1.ReasonNativeExpiry))
				g.Expect(store.Status.Cleanup.CronJobName).To(BeEmpty())
			}
		})
	}
}

func TestFilesystemCronJobMountsClaim(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	store := filesystemStore(ns, "files")
	store.Spec.Filesystem.Path = "/var/sessions"
	store.Spec.Filesystem.RunAsUser = ptr.To[int64](1000)
	// threshold 0, the recommended setting with the CronJob doing expiry.
	store.Spec.Filesystem.Threshold = ptr.To[int32](0)
	store.Spec.Cleanup = v1.CleanupSpec{Schedule: "*/15 * * * *", TimeZone: ptr.To("Europe/Paris"), BatchSize: 50,
		ActiveDeadlineSeconds: 600, SuccessfulJobsHistoryLimit: ptr.To[int32](1), GracePeriod: &metav1.Duration{}}
	createStore(t, store)
	waitConfigured(t, ns, "files")
	cj := waitCronJob(t, ns, "files-cleanup")
	g.Expect(cj.Spec.Schedule).To(Equal("*/15 * * * *"))
	g.Expect(*cj.Spec.TimeZone).To(Equal("Europe/Paris"))
	g.Expect(*cj.Spec.SuccessfulJobsHistoryLimit).To(BeEquivalentTo(1))
	g.Expect(*cj.Spec.JobTemplate.Spec.ActiveDeadlineSeconds).To(BeEquivalentTo(600))
	pod := cj.Spec.JobTemplate.Spec.Template.Spec
	g.Expect(pod.Volumes).To(HaveLen(1))
	g.Expect(pod.Volumes[0].PersistentVolumeClaim.ClaimName).To(Equal("sessions"))
	g.Expect(pod.Containers[0].VolumeMounts).To(ConsistOf(corev1.VolumeMount{Name: pod.Volumes[0].Name, MountPath: "/var/sessions"}))
	g.Expect(*pod.SecurityContext.RunAsUser).To(BeEquivalentTo(1000))
	g.Expect(pod.Containers[0].Env).To(ContainElement(corev1.EnvVar{Name: "SESSION_STORE_BATCH_SIZE", Value: "50"}))
	g.Expect(pod.Containers[0].Env).To(ContainElement(corev1.EnvVar{Name: "SESSION_STORE_GRACE_SECONDS", Value: "0"}), "an explicit 0 grace stays 0")
	g.Expect(stringData(waitSecret(t, ns, "files-session-store"))).To(HaveKeyWithValue("FLASK_SESSION_FILE_THRESHOLD", "0"))
	got := getStore(g, ns, "files")
	g.Expect(got.Status.Cleanup.EffectiveSchedule).To(Equal("*/15 * * * *"))
}

func TestDriftIsPutBack(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createStore(t, filesystemStore(ns, "drift"))
	waitConfigured(t, ns, "drift")
	secret := waitSecret(t, ns, "drift-session-store")
	want := stringData(secret)

	// Someone edits a value and adds a key of their own.
	secret.Data["SESSION_STORE_DIR"] = []byte("/tmp/elsewhere")
	secret.Data["EXTRA"] = []byte("kept: not ours")
	g.Expect(k8sClient.Update(ctx(), secret)).To(Succeed())
	g.Eventually(func(g Gomega) {
		data := stringData(getSecret(g, ns, "drift-session-store"))
		g.Expect(data["SESSION_STORE_DIR"]).To(Equal(want["SESSION_STORE_DIR"]))
	}, eventually, poll).Should(Succeed())

	// Someone strips the managed label: it drops out of the cache, and is
	// still recognised as ours and relabelled.
	secret = getSecret(g, ns, "drift-session-store")
	delete(secret.Labels, specs.ManagedByLabel)
	g.Expect(k8sClient.Update(ctx(), secret)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(getSecret(g, ns, "drift-session-store").Labels).To(HaveKeyWithValue(specs.ManagedByLabel, specs.ManagedByValue))
	}, eventually, poll).Should(Succeed())

	// Someone deletes the Secret.
	g.Expect(k8sClient.Delete(ctx(), getSecret(g, ns, "drift-session-store"))).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(stringData(getSecret(g, ns, "drift-session-store"))).To(HaveKeyWithValue("SESSION_STORE_DIR", want["SESSION_STORE_DIR"]))
	}, eventually, poll).Should(Succeed())

	// Someone edits the CronJob's schedule and suspends it.
	cj := waitCronJob(t, ns, "drift-cleanup")
	schedule := cj.Spec.Schedule
	cj.Spec.Schedule = "0 0 1 1 *"
	cj.Spec.Suspend = ptr.To(true)
	g.Expect(k8sClient.Update(ctx(), cj)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := &batchv1.CronJob{}
		g.Expect(k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "drift-cleanup"}, got)).To(Succeed())
		g.Expect(got.Spec.Schedule).To(Equal(schedule))
		g.Expect(*got.Spec.Suspend).To(BeFalse())
	}, eventually, poll).Should(Succeed())

	// Someone deletes the CronJob.
	g.Expect(k8sClient.Delete(ctx(), cj)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := &batchv1.CronJob{}
		g.Expect(k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "drift-cleanup"}, got)).To(Succeed())
		g.Expect(got.UID).NotTo(Equal(cj.UID))
	}, eventually, poll).Should(Succeed())
}

func TestCredentialRotationIsFollowed(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	creds := createSecret(t, ns, "pg-credentials", map[string]string{"username": "app", "password": "first"})
	createStore(t, postgresStore(ns, "rotate"))
	waitConfigured(t, ns, "rotate")
	g.Expect(stringData(waitSecret(t, ns, "rotate-session-store"))["SESSION_STORE_URL"]).To(ContainSubstring(":first@"))

	creds.StringData = map[string]string{"password": "second #2"}
	g.Expect(k8sClient.Update(ctx(), creds)).To(Succeed())
	g.Eventually(func(g Gomega) {
		u, err := url.Parse(stringData(getSecret(g, ns, "rotate-session-store"))["SESSION_STORE_URL"])
		g.Expect(err).NotTo(HaveOccurred())
		pw, _ := u.User.Password()
		g.Expect(pw).To(Equal("second #2"))
	}, 10*time.Second, poll).Should(Succeed())
}

func TestMissingSecretThenRecovery(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createStore(t, redisStore(ns, "waits"))
	store := waitCondition(t, ns, "waits", v1.ConditionConnectionSecretReady, metav1.ConditionFalse, v1.ReasonSecretNotFound)
	g.Expect(condition(store, v1.ConditionConnectionSecretReady).Message).To(ContainSubstring("redis-auth"))
	ready := condition(store, v1.ConditionReady)
	g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(ready.Reason).To(Equal(v1.ReasonSecretNotFound))
	g.Expect(ready.Message).To(ContainSubstring("redis-auth"))
	err := k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "waits-session-store"}, &corev1.Secret{})
	g.Expect(isNotFound(err)).To(BeTrue())

	// A Secret without the key is a different problem, named as such.
	wrong := createSecret(t, ns, "redis-auth", map[string]string{"pass": "x"})
	waitCondition(t, ns, "waits", v1.ConditionConnectionSecretReady, metav1.ConditionFalse, v1.ReasonSecretKeyMissing)

	wrong.StringData = map[string]string{"password": "now-here"}
	g.Expect(k8sClient.Update(ctx(), wrong)).To(Succeed())
	waitConfigured(t, ns, "waits")
	g.Expect(stringData(waitSecret(t, ns, "waits-session-store"))["SESSION_STORE_URL"]).To(ContainSubstring(":now-here@"))
}

func TestForeignSecretIsNeverOverwritten(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	foreign := createSecret(t, ns, "taken-session-store", map[string]string{"owner": "someone else"})
	createStore(t, filesystemStore(ns, "taken"))
	store := waitCondition(t, ns, "taken", v1.ConditionConnectionSecretReady, metav1.ConditionFalse, v1.ReasonSecretConflict)
	g.Expect(condition(store, v1.ConditionReady).Reason).To(Equal(v1.ReasonSecretConflict))
	// Its pods would load someone else's Secret: no CronJob either.
	g.Expect(condition(store, v1.ConditionCleanupScheduled).Reason).To(Equal(v1.ReasonConnectionSecretNotReady))

	g.Consistently(func(g Gomega) {
		got := getSecret(g, ns, "taken-session-store")
		g.Expect(got.ResourceVersion).To(Equal(foreign.ResourceVersion))
		g.Expect(stringData(got)).To(Equal(map[string]string{"owner": "someone else"}))
	}, 2*time.Second, 100*time.Millisecond).Should(Succeed())
	err := k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "taken-cleanup"}, &batchv1.CronJob{})
	g.Expect(isNotFound(err)).To(BeTrue())
	g.Eventually(func(g Gomega) {
		g.Expect(eventReasons(g, ns, "taken")).To(ContainElement(v1.EventSecretConflict))
	}, eventually, poll).Should(Succeed())
	// More reconciles of the same state: no more events.
	for i := 0; i < 3; i++ {
		store := getStore(g, ns, "taken")
		patch := client.MergeFrom(store.DeepCopy())
		store.Annotations = map[string]string{"poke": fmt.Sprint(i)}
		g.Expect(k8sClient.Patch(ctx(), store, patch)).To(Succeed())
	}
	g.Consistently(func(g Gomega) {
		n := 0
		for _, reason := range eventReasons(g, ns, "taken") {
			if reason == v1.EventSecretConflict {
				n++
			}
		}
		g.Expect(n).To(Equal(1))
	}, 2*time.Second, 200*time.Millisecond).Should(Succeed())

	// The owner removes theirs: the store recovers by itself.
	g.Expect(k8sClient.Delete(ctx(), foreign)).To(Succeed())
	waitReady(t, ns, "taken")
	waitCronJob(t, ns, "taken-cleanup")
}

func TestSteadyStateMakesNoWrites(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createSecret(t, ns, "pg-credentials", map[string]string{"username": "app", "password": "pw"})
	createStore(t, postgresStore(ns, "quiet"))
	createStore(t, filesystemStore(ns, "quiet-fs"))
	waitConfigured(t, ns, "quiet")
	waitConfigured(t, ns, "quiet-fs")
	waitCronJob(t, ns, "quiet-cleanup")
	waitCronJob(t, ns, "quiet-fs-cleanup")
	// Let the reconciles that our own writes caused settle.
	versions := func(g Gomega) []string {
		var out []string
		for _, name := range []string{"quiet", "quiet-fs"} {
			out = append(out, getStore(g, ns, name).ResourceVersion,
				getSecret(g, ns, name+"-session-store").ResourceVersion)
			cj := &batchv1.CronJob{}
			g.Expect(k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: name + "-cleanup"}, cj)).To(Succeed())
			out = append(out, cj.ResourceVersion)
		}
		return out
	}
	waitIdleAfter(t, 0, 1)
	before := versions(g)

	writesBefore := writeCount.Load()
	reconcilesBefore := reconciles(t)
	// Trigger reconciles of both stores without changing their spec: an
	// annotation (as a GitOps tool adds), a touch of the credential Secret
	// and of the owned objects' metadata-irrelevant parts.
	for i := 0; i < 3; i++ {
		for _, name := range []string{"quiet", "quiet-fs"} {
			store := getStore(g, ns, name)
			patch := client.MergeFrom(store.DeepCopy())
			if store.Annotations == nil {
				store.Annotations = map[string]string{}
			}
			store.Annotations["argocd.argoproj.io/tracking-id"] = "app:" + time.Now().Format(time.RFC3339Nano)
			g.Expect(k8sClient.Patch(ctx(), store, patch)).To(Succeed())
		}
	}
	creds := getSecret(g, ns, "pg-credentials")
	creds.Annotations = map[string]string{"touched": "yes"}
	g.Expect(k8sClient.Update(ctx(), creds)).To(Succeed())
	// Both stores were reconciled again (at least once each), and all is
	// done: anything the manager was going to write is written.
	waitIdleAfter(t, reconcilesBefore, 2)

	g.Expect(writesSince(writesBefore, ns)).To(BeEmpty(), "the manager wrote to the API server in a steady state")
	after := versions(g)
	// The stores' own versions moved with our annotation patches; the owned
	// objects' did not.
	for i := range after {
		if i%3 == 0 {
			continue
		}
		g.Expect(after[i]).To(Equal(before[i]))
	}
}

func TestManagerCachesOnlyItsOwnSecrets(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	big := strings.Repeat("x", 256*1024)
	for i := 0; i < 20; i++ {
		createSecret(t, ns, "unrelated-"+string(rune('a'+i)), map[string]string{"blob": big})
	}
	createStore(t, filesystemStore(ns, "cached"))
	waitConfigured(t, ns, "cached")

	cached := &corev1.SecretList{}
	g.Expect(testMgr.GetCache().List(ctx(), cached, client.InNamespace(ns))).To(Succeed())
	names := []string{}
	for _, s := range cached.Items {
		names = append(names, s.Name)
	}
	g.Expect(names).To(ConsistOf("cached-session-store"))

}

func stringData(s *corev1.Secret) map[string]string {
	out := map[string]string{}
	for k, v := range s.Data {
		out[k] = string(v)
	}
	return out
}
