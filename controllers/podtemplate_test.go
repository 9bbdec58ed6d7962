package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/localrun"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/storetest"
)

// The CronJob the controller made, run for real: its container's env is
// resolved from the connection Secret, its args run by the operator's own
// binary against real stores holding sessions a real Flask-Session wrote;
// the report it leaves is fed back as the kubelet would, and must show up
// in the SessionStore's status.

var (
	operatorBinaryOnce sync.Once
	operatorBinary     string
	operatorBinaryErr  error
)

func buildOperator(t *testing.T) string {
	t.Helper()
	operatorBinaryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sessionstore-operator-bin-")
		if err != nil {
			operatorBinaryErr = err
			return
		}
		operatorBinary = filepath.Join(dir, "sessionstore-operator")
		out, err := exec.Command("go", "build", "-o", operatorBinary, "..").CombinedOutput()
		if err != nil {
			operatorBinaryErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if operatorBinaryErr != nil {
		t.Fatalf("building the operator binary: %v", operatorBinaryErr)
	}
	return operatorBinary
}

// flaskScript runs one of the Flask-Session scripts with Debian's python.
func flaskScript(t *testing.T, stdin string, script string, args ...string) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Fatalf("/usr/bin/python3 missing: run hack/start-services.sh (make services)")
	}
	cmd := exec.Command("/usr/bin/python3", append([]string{storetest.Script(script)}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %v: %v\n%s", script, args, err, stderr)
	}
	return string(out)
}

type flaskSession struct {
	SID   string `json:"sid"`
	Value string `json:"value"`
}

func parseSessions(t *testing.T, out string) []flaskSession {
	t.Helper()
	var s []flaskSession
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("parsing sessions %q: %v", out, err)
	}
	return s
}

// runCronJob runs the store's CronJob once and records the run.
func runCronJob(t *testing.T, ns, name string) *localrun.Run {
	t.Helper()
	bin := buildOperator(t)
	cj := waitCronJob(t, ns, name+"-cleanup")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run, err := localrun.Execute(ctx, k8sClient, cj, bin)
	if err != nil {
		t.Fatalf("running the CronJob's pod template: %v", err)
	}
	if run.ExitCode != 0 {
		t.Fatalf("cleanup exited %d\nstdout: %s\nstderr: %s", run.ExitCode, run.Stdout, run.Stderr)
	}
	if _, err := localrun.Record(ctx, k8sClient, cj, run); err != nil {
		t.Fatalf("recording the run: %v", err)
	}
	return run
}

func TestCronJobRunsForRealOnPostgreSQL(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	db := newPostgresDatabase(t)
	createSecret(t, ns, "pg", map[string]string{"username": "postgres", "password": "trust auth: any"})
	createStore(t, &v1.SessionStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pg-real"},
		Spec: v1.SessionStoreSpec{Backend: v1.BackendPostgreSQL, PostgreSQL: &v1.PostgreSQLSpec{
			Host: "127.0.0.1", Database: db, SSLMode: "disable", CredentialsSecretRef: &v1.SecretReference{Name: "pg"}}},
	})
	// The probe creates Flask-Session's table; then the real app writes.
	waitReady(t, ns, "pg-real")
	uri := fmt.Sprintf("postgresql+psycopg2://postgres@127.0.0.1:5432/%s", db)
	live := parseSessions(t, flaskScript(t, "", "flask_sqlalchemy_sessions.py", "write", uri, "sessions", "3600", "5"))
	expired := parseSessions(t, flaskScript(t, "", "flask_sqlalchemy_sessions.py", "write", uri, "sessions", "-600", "4"))
	// Expired a minute ago: within the default 5m grace period, so kept:
	// exactly 4 deleted, not 6.
	flaskScript(t, "", "flask_sqlalchemy_sessions.py", "write", uri, "sessions", "-60", "2")

	run := runCronJob(t, ns, "pg-real")
	g.Expect(run.TerminationMessage).To(ContainSubstring(`"deleted":4`))
	g.Expect(run.Stdout + run.Stderr + run.TerminationMessage).NotTo(ContainSubstring("trust auth: any"))

	readBack := map[string]*string{}
	sids := sidsJSON(live, expired)
	g.Expect(json.Unmarshal([]byte(flaskScript(t, sids, "flask_sqlalchemy_sessions.py", "read", uri, "sessions")), &readBack)).To(Succeed())
	for _, s := range live {
		g.Expect(readBack[s.SID]).NotTo(BeNil(), "live session %s lost", s.SID)
		g.Expect(*readBack[s.SID]).To(Equal(s.Value))
	}
	for _, s := range expired {
		g.Expect(readBack[s.SID]).To(BeNil(), "expired session %s still there", s.SID)
	}

	store := waitCondition(t, ns, "pg-real", v1.ConditionLastCleanupSucceeded, metav1.ConditionTrue, v1.ReasonSucceeded)
	g.Expect(store.Status.Cleanup.LastResult.Deleted).To(BeEquivalentTo(4))
	g.Expect(store.Status.Cleanup.LastResult.Scanned).To(BeEquivalentTo(11), "5 live, 4 expired, 2 within the grace period")
	g.Expect(store.Status.Cleanup.LastScheduleTime).NotTo(BeNil())
	g.Expect(condition(store, v1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
}

func TestCronJobRunsForRealOnFerretDB(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	database := fmt.Sprintf("sst_ctrl_%d", time.Now().UnixNano())
	createSecret(t, ns, "mongo", map[string]string{"uri": "mongodb://127.0.0.1:27017/"})
	createStore(t, &v1.SessionStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mongo-real"},
		Spec: v1.SessionStoreSpec{Backend: v1.BackendMongoDB, MongoDB: &v1.MongoDBSpec{
			URISecretRef: v1.SecretKeySelector{Name: "mongo", Key: "uri"}, Database: database, TTLIndex: ptr.To(true)}},
	})
	store := waitReady(t, ns, "mongo-real")
	// FerretDB 1.x has no TTL indexes: said, and not an error.
	g.Expect(condition(store, v1.ConditionSchemaReady).Reason).To(Equal(v1.ReasonTTLUnsupported))

	const url = "mongodb://127.0.0.1:27017/"
	live := parseSessions(t, flaskScript(t, "", "flask_mongodb_sessions.py", "write", url, database, "sessions", "session:", "3600", "3"))
	expired := parseSessions(t, flaskScript(t, "", "flask_mongodb_sessions.py", "write", url, database, "sessions", "session:", "-600", "6"))
	// Expired a minute ago: within the default 5m grace period, so kept:
	// exactly 6 deleted, not 8.
	flaskScript(t, "", "flask_mongodb_sessions.py", "write", url, database, "sessions", "session:", "-60", "2")

	run := runCronJob(t, ns, "mongo-real")
	g.Expect(run.TerminationMessage).To(ContainSubstring(`"deleted":6`))
	readBack := map[string]*string{}
	sids := sidsJSON(live, expired)
	g.Expect(json.Unmarshal([]byte(flaskScript(t, sids, "flask_mongodb_sessions.py", "read", url, database, "sessions", "session:")), &readBack)).To(Succeed())
	for _, s := range live {
		g.Expect(readBack[s.SID]).NotTo(BeNil(), "live session %s lost", s.SID)
	}
	for _, s := range expired {
		g.Expect(readBack[s.SID]).To(BeNil(), "expired session %s still there", s.SID)
	}
	store = waitCondition(t, ns, "mongo-real", v1.ConditionLastCleanupSucceeded, metav1.ConditionTrue, v1.ReasonSucceeded)
	g.Expect(store.Status.Cleanup.LastResult.Deleted).To(BeEquivalentTo(6))
}

// The filesystem CronJob mounts the claim at spec.filesystem.path; here the
// path is a local directory, which is what the mount gives the container.
func TestCronJobRunsForRealOnFilesystem(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	dir := filepath.Join(t.TempDir(), "flask_session")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatalf("making the session directory: %v", err)
	}
	store := filesystemStore(ns, "files-real")
	store.Spec.Filesystem.Path = dir
	createStore(t, store)
	// No probe reaches a claim from the manager: the store waits for a run.
	waitCondition(t, ns, "files-real", v1.ConditionStoreReachable, metav1.ConditionUnknown, v1.ReasonAwaitingCleanupRun)

	live := parseSessions(t, flaskScript(t, "", "flask_filesystem_sessions.py", "write", dir, "3600", "4"))
	expired := parseSessions(t, flaskScript(t, "", "flask_filesystem_sessions.py", "write", dir, "-600", "5"))
	// Expired a minute ago: within the default 5m grace period, so kept:
	// exactly 5 deleted, not 7.
	flaskScript(t, "", "flask_filesystem_sessions.py", "write", dir, "-60", "2")

	run := runCronJob(t, ns, "files-real")
	g.Expect(run.TerminationMessage).To(ContainSubstring(`"deleted":5`))
	// The files left: the 4 live, the 2 within the grace period, and
	// cachelib's count file (named by a hash too).
	g.Expect(sessionFiles(t, dir)).To(Equal(7))
	readBack := map[string]*string{}
	g.Expect(json.Unmarshal([]byte(flaskScript(t, sidsJSON(live, expired), "flask_filesystem_sessions.py", "read", dir)), &readBack)).To(Succeed())
	for _, s := range live {
		g.Expect(readBack[s.SID]).NotTo(BeNil(), "live session %s lost", s.SID)
		g.Expect(*readBack[s.SID]).To(Equal(s.Value))
	}
	for _, s := range expired {
		g.Expect(readBack[s.SID]).To(BeNil(), "expired session %s still there", s.SID)
	}
	// cachelib's count file holds the true count again.
	g.Expect(strings.TrimSpace(flaskScript(t, "", "flask_filesystem_sessions.py", "count", dir))).To(Equal("6"))

	got := waitCondition(t, ns, "files-real", v1.ConditionLastCleanupSucceeded, metav1.ConditionTrue, v1.ReasonSucceeded)
	g.Expect(got.Status.Cleanup.LastResult.Deleted).To(BeEquivalentTo(5))
	got = waitCondition(t, ns, "files-real", v1.ConditionStoreReachable, metav1.ConditionTrue, v1.ReasonCleanupRunReached)
	g.Expect(condition(got, v1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
}

// sidsJSON is the list of session ids the scripts' read command takes.
func sidsJSON(groups ...[]flaskSession) string {
	var sids []string
	for _, g := range groups {
		for _, s := range g {
			sids = append(sids, s.SID)
		}
	}
	data, _ := json.Marshal(sids)
	return string(data)
}

// sessionFiles counts cachelib's session files (32 hex characters) in dir.
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
