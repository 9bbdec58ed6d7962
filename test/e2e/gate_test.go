//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/jobwatch"
)

// gateStores is how many stores share one PostgreSQL server under a policy
// allowing one run at a time on it.
const gateStores = 5

// testGateOnePerServer: a ClusterSessionCleanupPolicy with maxPerServer 1
// governs five stores on one PostgreSQL server. Their runs, asked for at
// once by `kubectl create job --from`, wait their turn: the real Job
// controller and kubelet never run two at once, and each starts when the
// one before finishes.
func testGateOnePerServer(t *testing.T) {
	g := NewWithT(t)
	ns := restrictedNamespace(t, "e2e-gate-"+installMode)
	pgSecret(t, ns)
	policy := createGatePolicy(t, "e2e-gate-"+installMode, v1.ClusterSessionCleanupPolicySpec{
		Concurrency: v1.CleanupConcurrency{MaxPerServer: ptr.To[int32](1)}, StartingDeadlineSeconds: 3600})
	for i := range gateStores {
		gatedPostgresStore(t, ns, fmt.Sprintf("pg-%d", i), policy)
	}

	watcher := startJobWatch(t, ns)
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
	// The watch may deliver the last start after the poll saw it complete.
	g.Eventually(func() int { _, started := watcher.Counts(); return started }, e2eTimeout, poll).Should(Equal(gateStores))
	most, starts := watcher.Stop()
	g.Expect(most).To(Equal(1), "never more than one started, unfinished Job on the server")
	g.Expect(starts).To(Equal(gateStores), "each Job started once")
}

// pgSecret gives ns the Secret "pg" with the node's PostgreSQL credentials
// (trust auth: any password).
func pgSecret(t *testing.T, ns string) {
	t.Helper()
	createSecret(t, ns, "pg", map[string]string{"username": "postgres", "password": "trust auth: any"})
}

// gatePolicyLabel marks the stores a gate test's policy selects: its value
// is the policy's name.
const gatePolicyLabel = "e2e-gate"

// createGatePolicy makes a policy named name with spec, selecting only the
// stores labelled for it, whose own schedule never comes during the test;
// it is deleted when the test ends.
func createGatePolicy(t *testing.T, name string, spec v1.ClusterSessionCleanupPolicySpec) *v1.ClusterSessionCleanupPolicy {
	t.Helper()
	spec.Selector.StoreSelector = &metav1.LabelSelector{MatchLabels: map[string]string{gatePolicyLabel: name}}
	spec.Defaults.Schedule = yearlySchedule
	policy := &v1.ClusterSessionCleanupPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	if err := k8sClient.Create(ctx(), policy); err != nil {
		t.Fatalf("creating the policy: %v", err)
	}
	t.Cleanup(func() { _ = k8sClient.Delete(ctx(), policy) })
	return policy
}

// gatedPostgresStore makes a PostgreSQL store on the node's server, in a
// table of its own, with the credentials of ns's Secret "pg" (pgSecret), governed by policy, and waits for its CronJob's
// suspended job template. The store is deleted, and gone, when the test
// ends: the later checks count one store per backend.
func gatedPostgresStore(t *testing.T, ns, name string, policy *v1.ClusterSessionCleanupPolicy) *v1.SessionStore {
	t.Helper()
	g := NewWithT(t)
	store := newStore(ns, name, v1.SessionStoreSpec{Backend: v1.BackendPostgreSQL,
		PostgreSQL: &v1.PostgreSQLSpec{Host: nodeIP, Database: "postgres", Table: strings.ReplaceAll(ns+"_"+name, "-", "_"),
			SSLMode: "disable", CredentialsSecretRef: &v1.SecretReference{Name: "pg"}}})
	store.Labels = map[string]string{gatePolicyLabel: policy.Name}
	g.Expect(k8sClient.Create(ctx(), store)).To(Succeed())
	t.Cleanup(func() {
		_ = k8sClient.Delete(ctx(), store)
		waitGone(t, store)
	})
	g.Eventually(func(g Gomega) {
		cj := &batchv1.CronJob{}
		g.Expect(k8sClient.Get(ctx(), client.ObjectKey{Namespace: ns, Name: name + "-cleanup"}, cj)).To(Succeed())
		g.Expect(ptr.Deref(cj.Spec.JobTemplate.Spec.Suspend, false)).To(BeTrue(), "the governed job template is suspended")
	}, e2eTimeout, poll).Should(Succeed())
	return store
}

// podsOf counts the Pods of a Job.
func podsOf(g Gomega, ns, job string) int {
	pods := &corev1.PodList{}
	g.Expect(k8sClient.List(ctx(), pods, client.InNamespace(ns), client.MatchingLabels{"job-name": job})).To(Succeed())
	return len(pods.Items)
}

// startJobWatch follows ns's Jobs through the test's kubeconfig.
func startJobWatch(t *testing.T, ns string) *jobwatch.Watch {
	t.Helper()
	cfg, err := config.GetConfig()
	if err != nil {
		t.Fatal(err)
	}
	return jobwatch.Start(t, cfg, ns)
}
