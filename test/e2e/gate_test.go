//go:build e2e

package e2e

import (
	"fmt"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// gateStores is how many stores share one PostgreSQL server under a policy
// allowing one run at a time on it.
const gateStores = 3

// testGateOnePerServer: a ClusterSessionCleanupPolicy with maxPerServer 1
// governs three stores on one PostgreSQL server. Their runs, asked for at
// once by `kubectl create job --from`, wait their turn: the real Job
// controller and kubelet never run two at once, and each starts when the
// one before finishes.
func testGateOnePerServer(t *testing.T) {
	g := NewWithT(t)
	ns := restrictedNamespace(t, "e2e-gate-"+installMode)
	createSecret(t, ns, "pg", map[string]string{"username": "postgres", "password": "trust auth: any"})
	createGatePolicy(t)
	for i := range gateStores {
		store := newStore(ns, fmt.Sprintf("pg-%d", i), v1.SessionStoreSpec{Backend: v1.BackendPostgreSQL,
			PostgreSQL: &v1.PostgreSQLSpec{Host: nodeIP, Database: "postgres", Table: fmt.Sprintf("gate_%s_%d", installMode, i),
				SSLMode: "disable", CredentialsSecretRef: &v1.SecretReference{Name: "pg"}}})
		store.Labels = map[string]string{"e2e-gate": installMode}
		g.Expect(k8sClient.Create(ctx(), store)).To(Succeed())
		// The later checks count one store per backend: these go first.
		t.Cleanup(func() {
			_ = k8sClient.Delete(ctx(), store)
			waitGone(t, store)
		})
	}
	for i := range gateStores {
		g.Eventually(func(g Gomega) {
			cj := &batchv1.CronJob{}
			g.Expect(k8sClient.Get(ctx(), client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("pg-%d-cleanup", i)}, cj)).To(Succeed())
			g.Expect(ptr.Deref(cj.Spec.JobTemplate.Spec.Suspend, false)).To(BeTrue(), "the governed job template is suspended")
		}, e2eTimeout, poll).Should(Succeed())
	}

	watcher := watchStartedJobs(t, ns)
	for i := range gateStores {
		kubectl(t, "create", "job", "-n", ns, fmt.Sprintf("--from=cronjob/pg-%d-cleanup", i), fmt.Sprintf("run-%d", i))
	}
	g.Eventually(func(g Gomega) {
		jobs := &batchv1.JobList{}
		g.Expect(k8sClient.List(ctx(), jobs, client.InNamespace(ns))).To(Succeed())
		complete := 0
		for i := range jobs.Items {
			g.Expect(jobDone(&jobs.Items[i], batchv1.JobFailed)).To(BeFalse(), "job %s failed:\n%s",
				jobs.Items[i].Name, podStory(t, ns, jobs.Items[i].Name))
			if jobDone(&jobs.Items[i], batchv1.JobComplete) {
				complete++
			}
		}
		g.Expect(complete).To(Equal(gateStores))
	}, 3*e2eTimeout, poll).Should(Succeed())
	most, starts := watcher.stop()
	g.Expect(most).To(Equal(1), "never more than one started, unfinished Job on the server")
	g.Expect(starts).To(Equal(gateStores), "each Job started once")
}

// createGatePolicy makes the pass's policy, selecting only this test's
// stores, whose own schedule never comes during the test; it is deleted
// when the test ends.
func createGatePolicy(t *testing.T) {
	t.Helper()
	policy := &v1.ClusterSessionCleanupPolicy{ObjectMeta: metav1.ObjectMeta{Name: "e2e-gate-" + installMode},
		Spec: v1.ClusterSessionCleanupPolicySpec{
			Selector: v1.CleanupPolicySelector{StoreSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"e2e-gate": installMode}}},
			Defaults:    v1.CleanupPolicyDefaults{Schedule: "0 0 1 1 *"},
			Concurrency: v1.CleanupConcurrency{MaxPerServer: ptr.To[int32](1)}, StartingDeadlineSeconds: 3600,
		}}
	if err := k8sClient.Create(ctx(), policy); err != nil {
		t.Fatalf("creating the policy: %v", err)
	}
	t.Cleanup(func() { _ = k8sClient.Delete(ctx(), policy) })
}

// startedJobs follows a namespace's Jobs through a watch, so no overlap
// between polls can be missed: the most started, unfinished Jobs at once,
// and how many Jobs ever started.
type startedJobs struct {
	mu      sync.Mutex
	running map[string]bool
	started map[string]bool
	most    int
	w       watch.Interface
	done    chan struct{}
}

func watchStartedJobs(t *testing.T, ns string) *startedJobs {
	t.Helper()
	cfg, err := config.GetConfig()
	if err != nil {
		t.Fatal(err)
	}
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: k8sClient.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(ctx(), &batchv1.JobList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	s := &startedJobs{running: map[string]bool{}, started: map[string]bool{}, w: w, done: make(chan struct{})}
	go s.follow()
	t.Cleanup(func() { s.stop() })
	return s
}

func (s *startedJobs) follow() {
	defer close(s.done)
	for ev := range s.w.ResultChan() {
		job, ok := ev.Object.(*batchv1.Job)
		if !ok {
			continue
		}
		s.mu.Lock()
		// Started: no longer suspended (the gate's doing) and not finished.
		active := ev.Type != watch.Deleted && !ptr.Deref(job.Spec.Suspend, false) &&
			!jobDone(job, batchv1.JobComplete) && !jobDone(job, batchv1.JobFailed)
		if active {
			s.started[job.Name] = true
		}
		s.running[job.Name] = active
		count := 0
		for _, r := range s.running {
			if r {
				count++
			}
		}
		s.most = max(s.most, count)
		s.mu.Unlock()
	}
}

// stop ends the watch and returns the most Jobs seen running at once and
// how many started.
func (s *startedJobs) stop() (most, started int) {
	s.w.Stop()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.most, len(s.started)
}
