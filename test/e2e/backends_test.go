//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// appUID is the app's user on the filesystem store: its files are 0600, so
// only a cleanup running as this uid reads them.
const appUID = 1000

// backend is one store the e2e makes, and how the real app reaches it from
// the host.
type backend struct {
	name    string
	store   func(ns string) *v1.SessionStore
	secrets map[string]map[string]string
	script  string
	// args of the script's write and read commands, before their own
	// (lifetime in seconds, count) arguments.
	args  []string
	asUID int
	// appArgs, when set, replaces args with what the app reads from the
	// store's connection Secret (the app configures itself from it).
	appArgs func(secret *corev1.Secret) []string
	// credential must show in neither the cleanup Pod's log nor its
	// termination message.
	credential string
	// prepare runs before the store is created (a volume for the filesystem).
	prepare func(t *testing.T, ns string)
	// beforeRun checks what the operator says of the store before its first
	// cleanup run; afterRun checks the store itself after it, before the
	// app reads it again.
	beforeRun func(t *testing.T, ns, name string)
	afterRun  func(t *testing.T, ns, name string)
}

// cleanupBackends have no expiry of their own: a CronJob removes expired
// sessions. Each pass (kustomize, Helm) gets tables and databases of its own.
func cleanupBackends() []backend {
	mongoDB := "e2e_" + installMode
	sqlTable := "sessions_" + installMode
	fsDir := filepath.Join(e2eDir, "volumes", installMode, "flask_session")
	return []backend{{
		name:    "postgresql",
		secrets: map[string]map[string]string{"pg": {"username": "postgres", "password": "trust auth: any"}},
		store: func(ns string) *v1.SessionStore {
			return newStore(ns, "postgresql", v1.SessionStoreSpec{Backend: v1.BackendPostgreSQL, PostgreSQL: &v1.PostgreSQLSpec{
				Host: nodeIP, Database: "postgres", Table: sqlTable, SSLMode: "disable",
				CredentialsSecretRef: &v1.SecretReference{Name: "pg"}, CreateExpiryIndex: ptr.To(true)}})
		},
		script:     "flask_sqlalchemy_sessions.py",
		args:       []string{fmt.Sprintf("postgresql+psycopg2://postgres@%s:5432/postgres", nodeIP), sqlTable},
		credential: "trust auth: any",
		// The operator makes the table but never builds the index (a build
		// waits for every open transaction): the cleanup Pod does.
		beforeRun: func(t *testing.T, ns, name string) {
			waitCondition(t, ns, name, "SchemaReady", metav1.ConditionFalse, "SchemaPending")
			NewWithT(t).Expect(pgRelationExists(t, sqlTable+"_expiry_idx")).To(BeFalse(), "the operator built the index")
		},
		afterRun: func(t *testing.T, ns, name string) {
			NewWithT(t).Expect(pgRelationExists(t, sqlTable+"_expiry_idx")).To(BeTrue(), "the cleanup Pod built no index")
		},
	}, {
		name:    "mysql",
		secrets: map[string]map[string]string{"mysql": {"username": "sessions", "password": mariadbPassword}},
		store: func(ns string) *v1.SessionStore {
			return newStore(ns, "mysql", v1.SessionStoreSpec{Backend: v1.BackendMySQL, MySQL: &v1.MySQLSpec{
				Host: nodeIP, Database: "e2e", Table: sqlTable, TLS: "disabled",
				CredentialsSecretRef: &v1.SecretReference{Name: "mysql"}}})
		},
		script: "flask_sqlalchemy_mysql.py",
		// The app takes the SQLAlchemy URI the operator wrote, password
		// (full of URL syntax) included.
		appArgs: func(secret *corev1.Secret) []string {
			return []string{string(secret.Data[sessionstore.EnvFlaskSQLAlchemyURI]), sqlTable}
		},
		credential: mariadbPassword,
		beforeRun:  schemaReady("SchemaCreated"),
	}, {
		name:    "mongodb",
		secrets: map[string]map[string]string{"mongo": {"uri": fmt.Sprintf("mongodb://%s:27017/", nodeIP)}},
		store: func(ns string) *v1.SessionStore {
			return newStore(ns, "mongodb", v1.SessionStoreSpec{Backend: v1.BackendMongoDB, MongoDB: &v1.MongoDBSpec{
				URISecretRef: v1.SecretKeySelector{Name: "mongo", Key: "uri"}, Database: mongoDB, Collection: "sessions",
				TTLIndex: ptr.To(true)}})
		},
		script: "flask_mongodb_sessions.py",
		args:   []string{fmt.Sprintf("mongodb://%s:27017/", nodeIP), mongoDB, "sessions", "session:"},
		// FerretDB has no TTL indexes: said, and not an error; the CronJob
		// does the expiry.
		beforeRun: schemaReady("TTLUnsupported"),
	}, {
		name: "filesystem",
		store: func(ns string) *v1.SessionStore {
			return newStore(ns, "filesystem", v1.SessionStoreSpec{Backend: v1.BackendFilesystem, Filesystem: &v1.FilesystemSpec{
				ClaimName: "flask-sessions", Path: "/flask_session", Threshold: ptr.To[int32](0), Mode: "0600",
				RunAsUser: ptr.To[int64](appUID), RunAsGroup: ptr.To[int64](appUID)}})
		},
		script:  "flask_filesystem_sessions.py",
		args:    []string{fsDir},
		asUID:   appUID,
		prepare: func(t *testing.T, ns string) { hostPathClaim(t, ns, "flask-sessions", fsDir) },
		// No probe reaches a claim from the operator's Pod: the store waits
		// for a cleanup Pod to read the directory.
		beforeRun: func(t *testing.T, ns, name string) {
			waitCondition(t, ns, name, "StoreReachable", metav1.ConditionUnknown, v1.ReasonAwaitingCleanupRun)
		},
		afterRun: func(t *testing.T, ns, name string) { filesystemAfterRun(t, ns, name, fsDir) },
	}}
}

// pgRelationExists says whether the e2e's PostgreSQL has the relation.
func pgRelationExists(t *testing.T, name string) bool {
	t.Helper()
	c, cancel := context.WithTimeout(ctx(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(c, fmt.Sprintf("postgresql://postgres@%s:5432/postgres?sslmode=disable", nodeIP))
	if err != nil {
		t.Fatalf("connecting to PostgreSQL on %s: %v", nodeIP, err)
	}
	defer func() { _ = conn.Close(ctx()) }()
	var exists bool
	if err := conn.QueryRow(c, "SELECT to_regclass($1) IS NOT NULL", "public."+name).Scan(&exists); err != nil {
		t.Fatalf("looking up %s: %v", name, err)
	}
	return exists
}

// schemaReady checks SchemaReady is True for the reason given.
func schemaReady(reason string) func(t *testing.T, ns, name string) {
	return func(t *testing.T, ns, name string) {
		waitCondition(t, ns, name, "SchemaReady", metav1.ConditionTrue, reason)
	}
}

// filesystemAfterRun: the files left are the live sessions, those within the
// grace period and cachelib's count file (named by a hash too), which the
// cleanup Pod set to the true count; the run told the store it reached the
// directory.
func filesystemAfterRun(t *testing.T, ns, name, dir string) {
	g := NewWithT(t)
	g.Expect(sessionFiles(t, dir)).To(Equal(liveCount + graceCount + 1))
	count := flask(t, appUID, "", "flask_filesystem_sessions.py", "count", dir)
	g.Expect(strings.TrimSpace(count)).To(Equal(fmt.Sprint(liveCount + graceCount)))
	waitCondition(t, ns, name, "StoreReachable", metav1.ConditionTrue, v1.ReasonCleanupRunReached)
}

// sessionFiles counts cachelib's files (32 hex characters) in dir.
func sessionFiles(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if len(e.Name()) == 32 && strings.Trim(e.Name(), "0123456789abcdef") == "" {
			n++
		}
	}
	return n
}

func newStore(ns, name string, spec v1.SessionStoreSpec) *v1.SessionStore {
	return &v1.SessionStore{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
}

// hostPathClaim makes dir as the app's uid, mode 0700, and a claim bound to
// a hostPath PersistentVolume on it.
func hostPathClaim(t *testing.T, ns, claim, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, appUID, appUID); err != nil {
		t.Fatal(err)
	}
	pvName := "e2e-" + ns
	size := resource.MustParse("1Gi")
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName, Labels: map[string]string{"e2e": "true"}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: dir, Type: ptr.To(corev1.HostPathDirectory)}},
			ClaimRef:                      &corev1.ObjectReference{Namespace: ns, Name: claim},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
		},
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: claim},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, VolumeName: pvName,
			StorageClassName: ptr.To(""),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}
	if err := k8sClient.Create(ctx(), pv); err != nil {
		t.Fatalf("creating PV: %v", err)
	}
	if err := k8sClient.Create(ctx(), pvc); err != nil {
		t.Fatalf("creating PVC: %v", err)
	}
}

// What the app writes into each cleanup backend: live sessions, sessions
// expired ten minutes ago (past the cleanup's default 5m grace period), and
// sessions expired a minute ago (within it, so kept).
const liveCount, expiredCount, graceCount = 4, 5, 2

// testCleanupBackend: the real app writes live and expired sessions, the
// store's CronJob runs once as a real Pod, exactly the expired ones go (not
// those within the grace period), every live one reads back, and the status
// reports what the kubelet read from the Pod's termination message.
// yearlySchedule comes round only at midnight UTC on 1 January.
const yearlySchedule = "0 0 1 1 *"

func testCleanupBackend(t *testing.T, b backend) {
	g := NewWithT(t)
	ns := restrictedNamespace(t, fmt.Sprintf("e2e-%s-%s", installMode, b.name))
	for name, data := range b.secrets {
		createSecret(t, ns, name, data)
	}
	if b.prepare != nil {
		b.prepare(t, ns)
	}
	store := b.store(ns)
	// The runs are made with kubectl: a schedule of its own firing during
	// the test (the hashed minute came round once, at 04:37) would add a
	// run, and a status write, that the restart check counts as a change.
	store.Spec.Cleanup.Schedule = yearlySchedule
	g.Expect(k8sClient.Create(ctx(), store)).To(Succeed())
	if b.name != "filesystem" {
		// The operator's own Pod probes the store (and makes the table).
		waitCondition(t, ns, store.Name, "StoreReachable", metav1.ConditionTrue, "")
	}
	if b.beforeRun != nil {
		b.beforeRun(t, ns, store.Name)
	}
	scheduled := waitCondition(t, ns, store.Name, "CleanupScheduled", metav1.ConditionTrue, "")
	args := b.args
	if b.appArgs != nil {
		secret := &corev1.Secret{}
		key := client.ObjectKey{Namespace: ns, Name: scheduled.Status.ConnectionSecretName}
		g.Expect(k8sClient.Get(ctx(), key, secret)).To(Succeed())
		args = b.appArgs(secret)
	}
	write := func(lifetime, n int) []flaskSession {
		out := flask(t, b.asUID, "", b.script, append(append([]string{"write"}, args...), fmt.Sprint(lifetime), fmt.Sprint(n))...)
		return parseSessions(t, out, n)
	}
	live, expired := write(3600, liveCount), write(-600, expiredCount)
	write(-60, graceCount)

	job := store.Name + "-e2e"
	pod := runCleanupPod(t, ns, scheduled.Status.Cleanup.CronJobName, job)
	report := checkCleanupPod(t, b, pod)
	// Before the app reads: a read of a session that is gone makes a new one.
	if b.afterRun != nil {
		b.afterRun(t, ns, store.Name)
	}

	// The app reads no expired session, kept or not: that the 2 within the
	// grace period are kept shows in the report (5 of 11 deleted).
	readBack := map[string]*string{}
	out := flask(t, b.asUID, sidsJSON(live, expired), b.script, append([]string{"read"}, args...)...)
	g.Expect(json.Unmarshal([]byte(out), &readBack)).To(Succeed())
	for _, s := range live {
		g.Expect(readBack[s.SID]).NotTo(BeNil(), "live session %s lost", s.SID)
		g.Expect(*readBack[s.SID]).To(Equal(s.Value))
	}
	for _, s := range expired {
		g.Expect(readBack[s.SID]).To(BeNil(), "expired session %s still there", s.SID)
	}

	got := waitCondition(t, ns, store.Name, "LastCleanupSucceeded", metav1.ConditionTrue, "Succeeded")
	res := got.Status.Cleanup.LastResult
	g.Expect(res).NotTo(BeNil())
	g.Expect(res.JobName).To(Equal(job))
	g.Expect(res.Deleted).To(Equal(report.Deleted))
	g.Expect(res.Scanned).To(Equal(report.Scanned))
	// A Job made by hand is no scheduled run: the CronJob controller sets
	// no lastScheduleTime, and the status copies none.
	cj := &batchv1.CronJob{}
	g.Expect(k8sClient.Get(ctx(), client.ObjectKey{Namespace: ns, Name: scheduled.Status.Cleanup.CronJobName}, cj)).To(Succeed())
	g.Expect(got.Status.Cleanup.LastScheduleTime).To(Equal(cj.Status.LastScheduleTime))
	waitCondition(t, ns, store.Name, "Ready", metav1.ConditionTrue, "")
}

type cleanupReport struct {
	Deleted int64 `json:"deleted"`
	Scanned int64 `json:"scanned"`
}

// checkCleanupPod: the Pod exited 0, as the store's user where it names one,
// and its termination message reports exactly the expired sessions deleted
// of all those written; no credential is in the message or the log.
func checkCleanupPod(t *testing.T, b backend, pod *corev1.Pod) cleanupReport {
	g := NewWithT(t)
	message, exit := terminationMessage(t, pod)
	g.Expect(exit).To(BeZero())
	var report cleanupReport
	g.Expect(json.Unmarshal([]byte(message), &report)).To(Succeed(), "termination message %q", message)
	g.Expect(report).To(Equal(cleanupReport{Deleted: expiredCount, Scanned: liveCount + expiredCount + graceCount}),
		"termination message %q", message)
	if b.credential != "" {
		logs := kubectl(t, "logs", "-n", pod.Namespace, pod.Name)
		g.Expect(message+logs).NotTo(ContainSubstring(b.credential), "a credential in the Pod's log or termination message")
	}
	if b.asUID != 0 {
		g.Expect(effectiveRunAsUser(pod)).To(BeEquivalentTo(b.asUID))
	}
	return report
}

func effectiveRunAsUser(pod *corev1.Pod) int64 {
	if sc := pod.Spec.Containers[0].SecurityContext; sc != nil && sc.RunAsUser != nil {
		return *sc.RunAsUser
	}
	if pod.Spec.SecurityContext != nil && pod.Spec.SecurityContext.RunAsUser != nil {
		return *pod.Spec.SecurityContext.RunAsUser
	}
	return -1
}
