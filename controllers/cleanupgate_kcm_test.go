package controllers

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/jobwatch"
	"github.com/sessionstore/sessionstore-operator/internal/specs"
	"github.com/sessionstore/sessionstore-operator/internal/testservers"
)

// realControlPlane is a control plane of the test's own with the real
// CronJob, Job, garbage-collector and ServiceAccount controllers
// (kube-controller-manager), and a manager of the operator. It is apart
// from the suite's, whose tests make Jobs by hand that the Job controller
// would otherwise take over. There is no scheduler or kubelet: the test
// ends a Pod the Job controller made as the kubelet would.
type realControlPlane struct {
	client client.Client
	cfg    *rest.Config
}

func startRealControlPlane(t *testing.T) *realControlPlane {
	t.Helper()
	assets := filepath.Join("..", "bin", "k8s")
	kcm := filepath.Join(assets, "kube-controller-manager")
	if _, err := os.Stat(kcm); err != nil {
		t.Fatalf("%s not found: run `make tools` (hack/install-tools.sh) first", kcm)
	}
	env, cfg, err := testservers.StartEnvtest(func() *envtest.Environment {
		return &envtest.Environment{
			CRDDirectoryPaths: []string{filepath.Join("..", "config", "crd", "bases")}, ErrorIfCRDPathMissing: true,
			BinaryAssetsDirectory: assets,
		}
	})
	if err != nil {
		t.Fatalf("starting a second control plane: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	admin, err := env.AddUser(envtest.User{Name: "kcm-admin", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	startControllerManager(t, kcm, path)
	startManagerOn(t, admin.Config())
	c, err := client.New(admin.Config(), client.Options{Scheme: testScheme})
	if err != nil {
		t.Fatal(err)
	}
	return &realControlPlane{client: c, cfg: admin.Config()}
}

// startControllerManager runs kube-controller-manager until the test ends.
func startControllerManager(t *testing.T, bin, kubeconfig string) {
	t.Helper()
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--kubeconfig="+kubeconfig, "--leader-elect=false", "--secure-port=0",
		"--controllers=cronjob-controller,job-controller,garbage-collector-controller,serviceaccount-controller")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting kube-controller-manager: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("kube-controller-manager:\n%s", tail(logs.String(), 4000))
		}
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// startManagerOn runs the operator, policies on, as main.go does.
func startManagerOn(t *testing.T, cfg *rest.Config) {
	t.Helper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: testScheme, Metrics: metricsserver.Options{BindAddress: "0"}, Cache: CacheOptions(nil),
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(context.Background())
	if _, err := setup(mctx, mgr, Options{CleanupImage: testImage, ClusterPolicies: true, MetricsRegistry: prometheus.NewRegistry()}); err != nil {
		cancel()
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = mgr.Start(mctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// jobsByStore lists the cleanup Jobs of ns by store.
func (p *realControlPlane) jobs(g Gomega, ns string) []batchv1.Job {
	jobs := &batchv1.JobList{}
	g.Expect(p.client.List(ctx(), jobs, client.InNamespace(ns))).To(Succeed())
	return jobs.Items
}

// endPod ends the Job's Pod as the kubelet would once `cleanup` exits 0.
func (p *realControlPlane) endPod(t *testing.T, g Gomega, job *batchv1.Job) {
	t.Helper()
	pods := &corev1.PodList{}
	g.Eventually(func(g Gomega) {
		g.Expect(p.client.List(ctx(), pods, client.InNamespace(job.Namespace), client.MatchingLabels{batchv1.JobNameLabel: job.Name})).To(Succeed())
		g.Expect(pods.Items).To(HaveLen(1), "the Job controller makes the started Job's Pod")
	}, eventually, poll).Should(Succeed())
	pod := &pods.Items[0]
	now := metav1.Now()
	pod.Status.Phase = corev1.PodSucceeded
	pod.Status.StartTime = &now
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: specs.CleanupContainerName, Image: testImage,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}}}}
	g.Expect(p.client.Status().Update(ctx(), pod)).To(Succeed())
}

func TestGateWithTheRealCronJobAndJobControllers(t *testing.T) {
	g := NewWithT(t)
	cp := startRealControlPlane(t)
	const ns, name = "shop", "real-one-per-server"
	g.Expect(cp.client.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	g.Expect(cp.client.Create(ctx(), &v1.ClusterSessionCleanupPolicy{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.ClusterSessionCleanupPolicySpec{
			Defaults:    v1.CleanupPolicyDefaults{Schedule: "* * * * *"},
			Concurrency: v1.CleanupConcurrency{MaxPerServer: ptr.To[int32](1)}, StartingDeadlineSeconds: 3600,
		}})).To(Succeed())
	const stores = 5
	for i := 0; i < stores; i++ {
		g.Expect(cp.client.Create(ctx(), filesystemStore(ns, string(rune('a'+i))+"-store"))).To(Succeed())
	}
	monitor := jobwatch.Start(t, cp.cfg, ns)

	// The real CronJob controller makes every store's Job from the suspended
	// template at the next minute; the gate starts one, and the real Job
	// controller makes a Pod for that one only.
	var scheduled time.Time
	g.Eventually(func(g Gomega) {
		jobs := cp.jobs(g, ns)
		g.Expect(jobs).To(HaveLen(stores))
		at, err := time.Parse(time.RFC3339, jobs[0].Annotations[scheduledTimeAnnotation])
		g.Expect(err).NotTo(HaveOccurred(), "made by the CronJob controller")
		scheduled = at
	}, 90*time.Second, poll).Should(Succeed())
	g.Eventually(func(g Gomega) { g.Expect(startedOf(cp.jobs(g, ns))).To(HaveLen(1)) }, eventually, poll).Should(Succeed())

	// Missed runs collapse: at the next minute the CronJob controller finds
	// each store's run still active (suspended, it counts as active under
	// Forbid) and makes no second Job.
	g.Eventually(func(g Gomega) { g.Expect(cp.cronJobsRefusingASecondRun(g, ns)).To(HaveLen(stores)) }, 90*time.Second, poll).Should(Succeed())
	g.Expect(time.Now().After(scheduled.Add(time.Minute))).To(BeTrue())
	jobs := cp.jobs(g, ns)
	g.Expect(jobs).To(HaveLen(stores), "no second Job for a store whose run waits")
	pods := &corev1.PodList{}
	g.Expect(cp.client.List(ctx(), pods, client.InNamespace(ns))).To(Succeed())
	g.Expect(pods.Items).To(HaveLen(1), "suspended Jobs have no Pods")

	done := map[string]bool{}
	for round := 0; round < stores; round++ {
		var started []batchv1.Job
		g.Eventually(func(g Gomega) {
			started = startedOf(cp.jobs(g, ns))
			g.Expect(started).To(HaveLen(1))
			g.Expect(done).NotTo(HaveKey(started[0].Name))
		}, eventually, poll).Should(Succeed(), "round %d", round)
		cp.endPod(t, g, &started[0])
		g.Eventually(func(g Gomega) {
			job := &batchv1.Job{}
			g.Expect(cp.client.Get(ctx(), client.ObjectKeyFromObject(&started[0]), job)).To(Succeed())
			g.Expect(jobFinished(job)).To(BeTrue(), "the Job controller completes it")
		}, eventually, poll).Should(Succeed())
		done[started[0].Name] = true
	}
	g.Expect(maxStarted(monitor)).To(Equal(1), "never more than one started, unfinished Job on the server")
}

// startedOf are the Jobs started and not finished.
func startedOf(jobs []batchv1.Job) []batchv1.Job {
	var out []batchv1.Job
	for _, j := range jobs {
		if !ptr.Deref(j.Spec.Suspend, false) && !jobFinished(&j) {
			out = append(out, j)
		}
	}
	return out
}

// cronJobsRefusingASecondRun are the CronJobs of ns whose next run the
// CronJob controller refused because one is active (its JobAlreadyActive event).
func (p *realControlPlane) cronJobsRefusingASecondRun(g Gomega, ns string) map[string]bool {
	events := &corev1.EventList{}
	g.Expect(p.client.List(ctx(), events, client.InNamespace(ns))).To(Succeed())
	refused := map[string]bool{}
	for _, e := range events.Items {
		if e.Reason == "JobAlreadyActive" && e.InvolvedObject.Kind == "CronJob" {
			refused[e.InvolvedObject.Name] = true
		}
	}
	return refused
}
