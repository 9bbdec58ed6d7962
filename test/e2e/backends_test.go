//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
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
	// prepare runs before the store is created (a volume for the filesystem).
	prepare func(t *testing.T, ns string)
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
				CredentialsSecretRef: &v1.SecretReference{Name: "pg"}}})
		},
		script: "flask_sqlalchemy_sessions.py",
		args:   []string{fmt.Sprintf("postgresql+psycopg2://postgres@%s:5432/postgres", nodeIP), sqlTable},
	}, {
		name:    "mysql",
		secrets: map[string]map[string]string{"mysql": {"username": "sessions", "password": mariadbPassword}},
		store: func(ns string) *v1.SessionStore {
			return newStore(ns, "mysql", v1.SessionStoreSpec{Backend: v1.BackendMySQL, MySQL: &v1.MySQLSpec{
				Host: nodeIP, Database: "e2e", Table: sqlTable, TLS: "disabled",
				CredentialsSecretRef: &v1.SecretReference{Name: "mysql"}}})
		},
		script: "flask_sqlalchemy_mysql.py",
		args:   []string{fmt.Sprintf("mysql+pymysql://%s@%s:3306/e2e", url.UserPassword("sessions", mariadbPassword), nodeIP), sqlTable},
	}, {
		name:    "mongodb",
		secrets: map[string]map[string]string{"mongo": {"uri": fmt.Sprintf("mongodb://%s:27017/", nodeIP)}},
		store: func(ns string) *v1.SessionStore {
			return newStore(ns, "mongodb", v1.SessionStoreSpec{Backend: v1.BackendMongoDB, MongoDB: &v1.MongoDBSpec{
				URISecretRef: v1.SecretKeySelector{Name: "mongo", Key: "uri"}, Database: mongoDB, Collection: "sessions"}})
		},
		script: "flask_mongodb_sessions.py",
		args:   []string{fmt.Sprintf("mongodb://%s:27017/", nodeIP), mongoDB, "sessions", "session:"},
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
	}}
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

// testCleanupBackend: the real app writes live and expired sessions, the
// store's CronJob runs once as a real Pod, exactly the expired ones go, every
// live one reads back, and the status reports what the kubelet read from the
// Pod's termination message.
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
	g.Expect(k8sClient.Create(ctx(), store)).To(Succeed())
	if b.name != "filesystem" {
		// The operator's own Pod probes the store (and makes the table).
		waitCondition(t, ns, store.Name, "StoreReachable", metav1.ConditionTrue, "")
	}
	// Expired ten minutes ago: past the cleanup's default 5m grace period.
	const liveCount, expiredCount = 4, 5
	live := parseSessions(t, flask(t, b.asUID, "", b.script, append(append([]string{"write"}, b.args...), "3600", fmt.Sprint(liveCount))...), liveCount)
	expired := parseSessions(t, flask(t, b.asUID, "", b.script, append(append([]string{"write"}, b.args...), "-600", fmt.Sprint(expiredCount))...), expiredCount)

	cronJob := waitCondition(t, ns, store.Name, "CleanupScheduled", metav1.ConditionTrue, "").Status.Cleanup.CronJobName
	job := store.Name + "-e2e"
	pod := runCleanupPod(t, ns, cronJob, job)
	message, exit := terminationMessage(t, pod)
	g.Expect(exit).To(BeZero())
	var report struct {
		Deleted int64 `json:"deleted"`
		Scanned int64 `json:"scanned"`
	}
	g.Expect(json.Unmarshal([]byte(message), &report)).To(Succeed(), "termination message %q", message)
	g.Expect(report.Deleted).To(BeEquivalentTo(expiredCount), "termination message %q", message)
	g.Expect(message).NotTo(Or(ContainSubstring("trust auth: any"), ContainSubstring(mariadbPassword)),
		"a credential in the termination message")
	if b.asUID != 0 {
		g.Expect(effectiveRunAsUser(pod)).To(BeEquivalentTo(b.asUID))
	}

	readBack := map[string]*string{}
	out := flask(t, b.asUID, sidsJSON(live, expired), b.script, append([]string{"read"}, b.args...)...)
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
	waitCondition(t, ns, store.Name, "Ready", metav1.ConditionTrue, "")
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
