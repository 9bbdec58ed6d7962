package controllers

import (
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/policy"
	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

func labelNamespace(t *testing.T, ns string, labels map[string]string) {
	t.Helper()
	obj := &corev1.Namespace{}
	if err := k8sClient.Get(ctx(), types.NamespacedName{Name: ns}, obj); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(obj.DeepCopy())
	obj.Labels = labels
	if err := k8sClient.Patch(ctx(), obj, patch); err != nil {
		t.Fatal(err)
	}
}

func getCronJob(g Gomega, ns, name string) *batchv1.CronJob {
	cj := &batchv1.CronJob{}
	g.Expect(k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: name}, cj)).To(Succeed())
	return cj
}

// A hashed time is put inside the policy's allow windows on the policy's
// clock, so a store with a time zone of its own runs on that clock too;
// a store that names its own time keeps its own zone.
func TestHashedTimeKeepsThePolicysClock(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	tokyo := filesystemStore(ns, "tokyo")
	tokyo.Labels = map[string]string{policyTestLabel: "govern-zone"}
	tokyo.Spec.Cleanup.TimeZone = ptr.To("Asia/Tokyo")
	createStore(t, tokyo)
	fixed := filesystemStore(ns, "fixed")
	fixed.Labels = map[string]string{policyTestLabel: "govern-zone"}
	fixed.Spec.Cleanup.TimeZone = ptr.To("Asia/Tokyo")
	fixed.Spec.Cleanup.Schedule = "30 12 * * *"
	createStore(t, fixed)
	createPolicy(t, "govern-zone", v1.ClusterSessionCleanupPolicySpec{
		TimeZone: ptr.To("Europe/Paris"),
		Defaults: v1.CleanupPolicyDefaults{Schedule: "H H * * *"},
		Windows:  []v1.CleanupWindow{{Kind: v1.WindowAllow, Schedule: "0 1 * * *", Duration: metav1.Duration{Duration: 4 * time.Hour}}},
	})
	var cj *batchv1.CronJob
	g.Eventually(func(g Gomega) {
		cj = getCronJob(g, ns, "tokyo-cleanup")
		g.Expect(ptr.Deref(cj.Spec.JobTemplate.Spec.Suspend, false)).To(BeTrue())
		g.Expect(ptr.Deref(cj.Spec.TimeZone, "")).To(Equal("Europe/Paris"))
	}, eventually, poll).Should(Succeed())
	var minute, hour int
	_, err := fmt.Sscanf(cj.Spec.Schedule, "%d %d * * *", &minute, &hour)
	g.Expect(err).NotTo(HaveOccurred(), "H H * * * hashed: %q", cj.Spec.Schedule)
	g.Expect(hour).To(And(BeNumerically(">=", 1), BeNumerically("<", 5)), "inside the 01:00-05:00 Paris window")

	g.Eventually(func(g Gomega) {
		cj := getCronJob(g, ns, "fixed-cleanup")
		g.Expect(ptr.Deref(cj.Spec.JobTemplate.Spec.Suspend, false)).To(BeTrue())
		g.Expect(cj.Spec.Schedule).To(Equal("30 12 * * *"))
		g.Expect(ptr.Deref(cj.Spec.TimeZone, "")).To(Equal("Asia/Tokyo"))
	}, eventually, poll).Should(Succeed())
}

func TestPolicyGovernsTheStoresItSelects(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	labelNamespace(t, ns, map[string]string{"team": ns})
	web := filesystemStore(ns, "web")
	web.Labels = map[string]string{"tier": "web"}
	createStore(t, web)
	createStore(t, filesystemStore(ns, "api"))
	waitConfigured(t, ns, "api")
	before := getCronJob(g, ns, "api-cleanup")

	nightly := v1.CleanupWindow{Kind: v1.WindowAllow, Schedule: "0 1 * * *", Duration: metav1.Duration{Duration: 4 * time.Hour}}
	spec := v1.ClusterSessionCleanupPolicySpec{
		Priority: 100, TimeZone: ptr.To("Europe/Paris"), StartingDeadlineSeconds: 300,
		Selector: v1.CleanupPolicySelector{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": ns}},
			StoreSelector:     &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}},
			Backends:          []v1.Backend{v1.BackendFilesystem},
		},
		Defaults: v1.CleanupPolicyDefaults{Schedule: "H H * * *", ActiveDeadlineSeconds: ptr.To[int64](900)},
		Windows:  []v1.CleanupWindow{nightly},
	}
	createPolicy(t, "govern-nightly", spec)
	var cj *batchv1.CronJob
	g.Eventually(func(g Gomega) {
		st := getStore(g, ns, "web").Status.Cleanup
		g.Expect(st.Policy).To(Equal("govern-nightly"))
		g.Expect(st.Server).To(Equal("pvc:" + ns + "/sessions"))
		g.Expect(st.NextRunTime).NotTo(BeNil())
		cj = getCronJob(g, ns, "web-cleanup")
		g.Expect(cj.Spec.Schedule).To(Equal(st.EffectiveSchedule))
		g.Expect(ptr.Deref(cj.Spec.JobTemplate.Spec.Suspend, false)).To(BeTrue())
	}, eventually, poll).Should(Succeed())
	g.Expect(cj.Spec.JobTemplate.Labels).To(HaveKeyWithValue(specs.PolicyLabel, "govern-nightly"))
	g.Expect(cj.Spec.JobTemplate.Labels).To(HaveKeyWithValue(specs.ServerLabel, policy.ServerHash("pvc:"+ns+"/sessions")))
	g.Expect(*cj.Spec.TimeZone).To(Equal("Europe/Paris"))
	g.Expect(*cj.Spec.StartingDeadlineSeconds).To(BeEquivalentTo(300))
	g.Expect(*cj.Spec.JobTemplate.Spec.ActiveDeadlineSeconds).To(BeEquivalentTo(900))
	var minute, hour int
	_, err := fmt.Sscanf(cj.Spec.Schedule, "%d %d * * *", &minute, &hour)
	g.Expect(err).NotTo(HaveOccurred(), "H H * * * hashed: %q", cj.Spec.Schedule)
	g.Expect(hour).To(BeNumerically(">=", 1), "inside the 01:00-05:00 allow window")
	g.Expect(hour).To(BeNumerically("<", 5), "inside the 01:00-05:00 allow window")
	windows, err := policy.ParseWindows(&spec, time.Now())
	g.Expect(err).NotTo(HaveOccurred())
	wantState, _ := windows.State(time.Now())
	g.Expect(getStore(g, ns, "web").Status.Cleanup.WindowState).To(Equal(wantState))

	// The store the policy does not select keeps today's CronJob exactly.
	g.Consistently(func(g Gomega) {
		api := getStore(g, ns, "api")
		g.Expect(api.Status.Cleanup.Policy).To(BeEmpty())
		g.Expect(equality.Semantic.DeepEqual(getCronJob(g, ns, "api-cleanup").Spec, before.Spec)).To(BeTrue())
	}, time.Second, poll).Should(Succeed())

	// A default policy governs the stores no other policy selects.
	def := createPolicy(t, "govern-default", v1.ClusterSessionCleanupPolicySpec{
		Selector: v1.CleanupPolicySelector{Backends: []v1.Backend{v1.BackendMongoDB}}})
	g.Expect(getStore(g, ns, "api").Status.Cleanup.Policy).To(BeEmpty())
	patch := client.MergeFrom(def.DeepCopy())
	def.Annotations = map[string]string{v1.DefaultPolicyAnnotation: "true"}
	g.Expect(k8sClient.Patch(ctx(), def, patch)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(getStore(g, ns, "api").Status.Cleanup.Policy).To(Equal("govern-default"))
		g.Expect(ptr.Deref(getCronJob(g, ns, "api-cleanup").Spec.JobTemplate.Spec.Suspend, false)).To(BeTrue())
	}, eventually, poll).Should(Succeed())
	g.Expect(getStore(g, ns, "web").Status.Cleanup.Policy).To(Equal("govern-nightly"), "a selecting policy beats the default")

	// A higher priority takes the store over.
	createPolicy(t, "govern-higher", v1.ClusterSessionCleanupPolicySpec{Priority: 200,
		Selector: v1.CleanupPolicySelector{StoreSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}}}})
	g.Eventually(func(g Gomega) {
		g.Expect(getStore(g, ns, "web").Status.Cleanup.Policy).To(Equal("govern-higher"))
	}, eventually, poll).Should(Succeed())

	// Without the default policy, today's CronJob comes back as it was.
	g.Expect(k8sClient.Delete(ctx(), def)).To(Succeed())
	g.Eventually(func(g Gomega) {
		api := getStore(g, ns, "api")
		g.Expect(api.Status.Cleanup.Policy).To(BeEmpty())
		g.Expect(api.Status.Cleanup.Server).To(BeEmpty())
		g.Expect(equality.Semantic.DeepEqual(getCronJob(g, ns, "api-cleanup").Spec, before.Spec)).To(BeTrue())
	}, eventually, poll).Should(Succeed())
}
