package controllers

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	batchv1ac "k8s.io/client-go/applyconfigurations/batch/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// gitOpsManager is another field manager, as a GitOps tool or a mutating
// webhook would be, that adds its own fields to the operator's objects.
const gitOpsManager = "gitops-tool"

// gitOpsCronJobAdditions is what the other manager adds to a cleanup
// CronJob: an env var and a volume in the pod template, a label, an
// annotation; and any env it sets beside.
func gitOpsCronJobAdditions(ns, name string, env ...*corev1ac.EnvVarApplyConfiguration) *batchv1ac.CronJobApplyConfiguration {
	env = append(env, corev1ac.EnvVar().WithName("OTEL_SERVICE_NAME").WithValue("session-cleanup"))
	pod := corev1ac.PodSpec().
		WithContainers(corev1ac.Container().WithName("cleanup").WithEnv(env...)).
		WithVolumes(corev1ac.Volume().WithName("gitops-scratch").WithEmptyDir(corev1ac.EmptyDirVolumeSource()))
	return batchv1ac.CronJob(name, ns).
		WithLabels(map[string]string{"team": "payments"}).
		WithAnnotations(map[string]string{"gitops.example/sync-wave": "2"}).
		WithSpec(batchv1ac.CronJobSpec().WithJobTemplate(batchv1ac.JobTemplateSpec().
			WithSpec(batchv1ac.JobSpec().WithTemplate(corev1ac.PodTemplateSpec().WithSpec(pod)))))
}

func TestOtherFieldManagersAreLeftAlone(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createStore(t, filesystemStore(ns, "shared"))
	waitConfigured(t, ns, "shared")
	waitCronJob(t, ns, "shared-cleanup")
	waitSecret(t, ns, "shared-session-store")
	waitNoWrites(t, ns)

	mark := writeCount.Load()
	g.Expect(k8sClient.Apply(ctx(), gitOpsCronJobAdditions(ns, "shared-cleanup"), client.FieldOwner(gitOpsManager))).To(Succeed())
	g.Expect(k8sClient.Apply(ctx(), corev1ac.Secret("shared-session-store", ns).
		WithLabels(map[string]string{"team": "payments"}).
		WithAnnotations(map[string]string{"gitops.example/sync-wave": "2"}).
		WithData(map[string][]byte{"OTEL_SERVICE_NAME": []byte("web")}), client.FieldOwner(gitOpsManager))).To(Succeed())
	cj, secret := waitCachedVersions(t, ns, "shared-cleanup", "shared-session-store")

	// The additions made the controller reconcile; make sure it ran once
	// more after the cache held them.
	reconciles := reconcileTotal(t)
	pokeStore(t, ns, "shared")
	g.Eventually(func() float64 { return reconcileTotal(t) }, eventually, poll).Should(BeNumerically(">", reconciles))
	g.Consistently(func() []string { return writesSince(mark, ns) }, 3*time.Second, poll).Should(BeEmpty(),
		"the operator wrote although only another manager's fields changed")

	got := &batchv1.CronJob{}
	g.Expect(k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "shared-cleanup"}, got)).To(Succeed())
	g.Expect(got.ResourceVersion).To(Equal(cj.ResourceVersion))
	expectGitOpsCronJobFields(g, got)
	gotSecret := getSecret(g, ns, "shared-session-store")
	g.Expect(gotSecret.ResourceVersion).To(Equal(secret.ResourceVersion))
	g.Expect(stringData(gotSecret)).To(HaveKeyWithValue("OTEL_SERVICE_NAME", "web"))
	g.Expect(gotSecret.Labels).To(HaveKeyWithValue("team", "payments"))
	g.Expect(gotSecret.Annotations).To(HaveKeyWithValue("gitops.example/sync-wave", "2"))
}

func TestDriftInOwnedFieldIsPutBackBesideOthersFields(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createStore(t, filesystemStore(ns, "mixed"))
	waitConfigured(t, ns, "mixed")
	waitCronJob(t, ns, "mixed-cleanup")
	waitSecret(t, ns, "mixed-session-store")
	g.Expect(k8sClient.Apply(ctx(), gitOpsCronJobAdditions(ns, "mixed-cleanup"), client.FieldOwner(gitOpsManager))).To(Succeed())

	// The other manager takes a field of ours by force: it is put back,
	// and the other manager's own fields stay.
	takeOver := gitOpsCronJobAdditions(ns, "mixed-cleanup",
		corev1ac.EnvVar().WithName("SESSION_STORE_BATCH_SIZE").WithValue("7"))
	g.Expect(k8sClient.Apply(ctx(), takeOver, client.FieldOwner(gitOpsManager), client.ForceOwnership)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := &batchv1.CronJob{}
		g.Expect(k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "mixed-cleanup"}, got)).To(Succeed())
		g.Expect(got.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Env).
			To(ContainElement(corev1.EnvVar{Name: "SESSION_STORE_BATCH_SIZE", Value: "1000"}))
		expectGitOpsCronJobFields(g, got)
	}, eventually, poll).Should(Succeed())
}

func expectGitOpsCronJobFields(g Gomega, cj *batchv1.CronJob) {
	g.Expect(cj.Labels).To(HaveKeyWithValue("team", "payments"))
	g.Expect(cj.Annotations).To(HaveKeyWithValue("gitops.example/sync-wave", "2"))
	pod := cj.Spec.JobTemplate.Spec.Template.Spec
	g.Expect(pod.Containers[0].Env).To(ContainElement(corev1.EnvVar{Name: "OTEL_SERVICE_NAME", Value: "session-cleanup"}))
	g.Expect(pod.Volumes).To(ContainElement(HaveField("Name", "gitops-scratch")))
}

// waitNoWrites waits until the manager has made no write to ns for a second:
// the reconciles its own writes caused have settled.
func waitNoWrites(t *testing.T, ns string) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		mark := writeCount.Load()
		g.Consistently(func() []string { return writesSince(mark, ns) }, time.Second, poll).Should(BeEmpty())
	}, eventually, poll).Should(Succeed())
}

// waitCachedVersions waits until the manager's cache holds the API server's
// current CronJob and Secret, and returns them.
func waitCachedVersions(t *testing.T, ns, cronJob, secret string) (*batchv1.CronJob, *corev1.Secret) {
	t.Helper()
	cj, s := &batchv1.CronJob{}, &corev1.Secret{}
	NewWithT(t).Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: cronJob}, cj)).To(Succeed())
		g.Expect(k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: secret}, s)).To(Succeed())
		cachedCJ, cachedS := &batchv1.CronJob{}, &corev1.Secret{}
		g.Expect(testMgr.GetCache().Get(ctx(), client.ObjectKeyFromObject(cj), cachedCJ)).To(Succeed())
		g.Expect(testMgr.GetCache().Get(ctx(), client.ObjectKeyFromObject(s), cachedS)).To(Succeed())
		g.Expect(cachedCJ.ResourceVersion).To(Equal(cj.ResourceVersion))
		g.Expect(cachedS.ResourceVersion).To(Equal(s.ResourceVersion))
	}, eventually, poll).Should(Succeed())
	return cj, s
}

// pokeStore changes an annotation of the store, which makes it reconcile
// without a change of spec.
func pokeStore(t *testing.T, ns, name string) {
	t.Helper()
	g := NewWithT(t)
	store := getStore(g, ns, name)
	patch := client.MergeFrom(store.DeepCopy())
	if store.Annotations == nil {
		store.Annotations = map[string]string{}
	}
	store.Annotations["test.sessionstore.dev/poke"] = time.Now().Format(time.RFC3339Nano)
	g.Expect(k8sClient.Patch(ctx(), store, patch)).To(Succeed())
}

// reconcileTotal is how many reconciles the SessionStore controller ran.
func reconcileTotal(t *testing.T) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelValue(m.GetLabel(), "controller") == "sessionstore" {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}
