package controllers

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/jobwatch"
	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

// The suite's control plane runs no kube-controller-manager: these tests
// make the Jobs the CronJob controller makes (its template, its owner
// reference and scheduled-time annotation) and finish them as the Job
// controller does (runrecord's conditions), so that each rule is driven
// step by step. What the gate does to them (un-suspend, delete) is the real
// manager's, against the real API server. TestGateWithTheRealCronJobAndJobControllers
// runs the gate beside the real kube-controller-manager, and test/e2e on a
// real node, where the Jobs' Pods run.

// policyLabel selects a test's stores: each test's policy selects its own.
const policyTestLabel = "test.sessionstore.dev/policy"

func createPolicy(t *testing.T, name string, spec v1.ClusterSessionCleanupPolicySpec) *v1.ClusterSessionCleanupPolicy {
	t.Helper()
	if spec.Selector.StoreSelector == nil {
		spec.Selector.StoreSelector = &metav1.LabelSelector{MatchLabels: map[string]string{policyTestLabel: name}}
	}
	p := &v1.ClusterSessionCleanupPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	if err := k8sClient.Create(ctx(), p); err != nil {
		t.Fatalf("creating policy %s: %v", name, err)
	}
	t.Cleanup(func() { _ = k8sClient.Delete(ctx(), p) })
	return p
}

// governedStores makes n filesystem stores on one claim (one server), each
// selected by policy, and waits for their suspended job templates.
func governedStores(t *testing.T, ns, policyName string, n int) []*batchv1.CronJob {
	t.Helper()
	var cronJobs []*batchv1.CronJob
	for i := 0; i < n; i++ {
		store := filesystemStore(ns, string(rune('a'+i))+"-store")
		store.Labels = map[string]string{policyTestLabel: policyName}
		createStore(t, store)
	}
	for i := 0; i < n; i++ {
		cronJobs = append(cronJobs, waitGovernedCronJob(t, ns, string(rune('a'+i))+"-store-cleanup", policyName))
	}
	return cronJobs
}

func waitGovernedCronJob(t *testing.T, ns, name, policyName string) *batchv1.CronJob {
	t.Helper()
	cj := &batchv1.CronJob{}
	NewWithT(t).Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: name}, cj)).To(Succeed())
		g.Expect(cj.Spec.JobTemplate.Labels[specs.PolicyLabel]).To(Equal(policyName))
		g.Expect(ptr.Deref(cj.Spec.JobTemplate.Spec.Suspend, false)).To(BeTrue())
	}, eventually, poll).Should(Succeed())
	return cj
}

// scheduleJob makes the Job the CronJob controller makes at scheduled.
func scheduleJob(t *testing.T, cj *batchv1.CronJob, scheduled time.Time) *batchv1.Job {
	t.Helper()
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: cj.Namespace, Name: cj.Name + "-" + scheduled.Format("150405"),
			Labels:      cj.Spec.JobTemplate.Labels,
			Annotations: map[string]string{scheduledTimeAnnotation: scheduled.Format(time.RFC3339)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob",
				Name: cj.Name, UID: cj.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		},
		Spec: *cj.Spec.JobTemplate.Spec.DeepCopy(),
	}
	if err := k8sClient.Create(ctx(), job); err != nil {
		t.Fatalf("creating Job %s: %v", job.Name, err)
	}
	return job
}

// finishJob completes a started Job as the Job controller does.
func finishJob(t *testing.T, ns, name string) {
	t.Helper()
	job := &batchv1.Job{}
	if err := k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: name}, job); err != nil {
		t.Fatal(err)
	}
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	job.Status.StartTime = &now
	job.Status.CompletionTime = &now
	job.Status.Succeeded = 1
	job.Status.Conditions = []batchv1.JobCondition{
		{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, Reason: "CompletionsReached", LastTransitionTime: now},
		{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, Reason: "CompletionsReached", LastTransitionTime: now},
	}
	if err := k8sClient.Status().Update(ctx(), job); err != nil {
		t.Fatalf("finishing Job %s: %v", name, err)
	}
}

func startedUnfinished(g Gomega, ns string) []string {
	jobs := &batchv1.JobList{}
	g.Expect(k8sClient.List(ctx(), jobs, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, j := range jobs.Items {
		if !ptr.Deref(j.Spec.Suspend, false) && !jobFinished(&j) && j.DeletionTimestamp.IsZero() {
			out = append(out, j.Name)
		}
	}
	return out
}

// maxStarted is the most Jobs the watch saw started and unfinished at once.
func maxStarted(w *jobwatch.Watch) int {
	most, _ := w.Counts()
	return most
}

// monitorConcurrency follows ns's Jobs on the suite's API server.
func monitorConcurrency(t *testing.T, ns string) *jobwatch.Watch {
	t.Helper()
	return jobwatch.Start(t, testCfg, ns)
}

func getPolicy(g Gomega, name string) *v1.ClusterSessionCleanupPolicy {
	p := &v1.ClusterSessionCleanupPolicy{}
	g.Expect(k8sClient.Get(ctx(), types.NamespacedName{Name: name}, p)).To(Succeed())
	return p
}

func TestGateStartsOneRunPerServerAtATime(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createPolicy(t, "gate-one-per-server", v1.ClusterSessionCleanupPolicySpec{
		Concurrency: v1.CleanupConcurrency{MaxPerServer: ptr.To[int32](1)}, StartingDeadlineSeconds: 3600})
	cronJobs := governedStores(t, ns, "gate-one-per-server", 5)
	monitor := monitorConcurrency(t, ns)
	scheduled := time.Now().Truncate(time.Minute)
	for _, cj := range cronJobs {
		scheduleJob(t, cj, scheduled)
	}
	var finished []string
	for round := 0; round < 5; round++ {
		var started []string
		g.Eventually(func(g Gomega) {
			started = startedUnfinished(g, ns)
			g.Expect(started).To(HaveLen(1))
		}, eventually, poll).Should(Succeed(), "round %d: one run started", round)
		g.Expect(finished).NotTo(ContainElement(started[0]))
		g.Consistently(func(g Gomega) { g.Expect(startedUnfinished(g, ns)).To(Equal(started)) }, time.Second, poll).Should(Succeed())
		if round == 0 {
			g.Eventually(func(g Gomega) {
				st := getPolicy(g, "gate-one-per-server").Status
				g.Expect([]int32{st.Stores, st.Running, st.Waiting}).To(Equal([]int32{5, 1, 4}))
				g.Expect(st.WindowState).To(Equal(v1.WindowStateOpen))
			}, eventually, poll).Should(Succeed())
		}
		finishJob(t, ns, started[0]) // the next starts when one finishes
		finished = append(finished, started[0])
	}
	g.Expect(maxStarted(monitor)).To(Equal(1), "never more than one started, unfinished Job on the server")
	g.Eventually(func(g Gomega) {
		st := getPolicy(g, "gate-one-per-server").Status
		g.Expect([]int32{st.Running, st.Waiting}).To(Equal([]int32{0, 0}))
	}, eventually, poll).Should(Succeed())
}

// maxTotal limits the runs a policy governs across servers: three stores on
// three claims (three servers, so maxPerServer would let all start) under
// maxTotal 2 never have more than two started; the third starts when one
// finishes.
func TestGateMaxTotalAcrossServers(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createPolicy(t, "gate-max-total", v1.ClusterSessionCleanupPolicySpec{
		Concurrency: v1.CleanupConcurrency{MaxTotal: ptr.To[int32](2)}, StartingDeadlineSeconds: 3600})
	var cronJobs []*batchv1.CronJob
	for _, name := range []string{"a", "b", "c"} {
		store := filesystemStore(ns, name+"-store")
		store.Spec.Filesystem.ClaimName = "claim-" + name
		store.Labels = map[string]string{policyTestLabel: "gate-max-total"}
		createStore(t, store)
	}
	for _, name := range []string{"a", "b", "c"} {
		cronJobs = append(cronJobs, waitGovernedCronJob(t, ns, name+"-store-cleanup", "gate-max-total"))
	}
	g.Expect(cronJobs[0].Spec.JobTemplate.Labels[specs.ServerLabel]).NotTo(Equal(cronJobs[1].Spec.JobTemplate.Labels[specs.ServerLabel]))
	monitor := monitorConcurrency(t, ns)
	scheduled := time.Now().Truncate(time.Minute)
	for _, cj := range cronJobs {
		scheduleJob(t, cj, scheduled)
	}
	var started []string
	g.Eventually(func(g Gomega) {
		started = startedUnfinished(g, ns)
		g.Expect(started).To(HaveLen(2))
	}, eventually, poll).Should(Succeed())
	g.Consistently(func(g Gomega) { g.Expect(startedUnfinished(g, ns)).To(HaveLen(2)) }, time.Second, poll).Should(Succeed())
	g.Eventually(func(g Gomega) {
		st := getPolicy(g, "gate-max-total").Status
		g.Expect([]int32{st.Stores, st.Running, st.Waiting}).To(Equal([]int32{3, 2, 1}))
	}, eventually, poll).Should(Succeed())
	finishJob(t, ns, started[0])
	g.Eventually(func(g Gomega) {
		now := startedUnfinished(g, ns)
		g.Expect(now).To(HaveLen(2))
		g.Expect(now).NotTo(ContainElement(started[0]))
	}, eventually, poll).Should(Succeed(), "the third starts when one finishes")
	g.Expect(maxStarted(monitor)).To(Equal(2))
}

func TestGateWindowsHoldRuns(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	alwaysDenied := v1.CleanupWindow{Kind: v1.WindowDeny, Schedule: "* * * * *", Duration: metav1.Duration{Duration: time.Hour}}
	allowOpen := v1.CleanupWindow{Kind: v1.WindowAllow, Schedule: "* * * * *", Duration: metav1.Duration{Duration: time.Hour}}
	p := createPolicy(t, "gate-windows", v1.ClusterSessionCleanupPolicySpec{
		Windows: []v1.CleanupWindow{allowOpen, alwaysDenied}, StartingDeadlineSeconds: 3600})
	cj := governedStores(t, ns, "gate-windows", 1)[0]
	job := scheduleJob(t, cj, time.Now())
	g.Eventually(func(g Gomega) {
		g.Expect(getPolicy(g, p.Name).Status.WindowState).To(Equal(v1.WindowStateDenied))
		g.Expect(getStore(g, ns, "a-store").Status.Cleanup.WindowState).To(Equal(v1.WindowStateDenied))
	}, eventually, poll).Should(Succeed())
	g.Consistently(func(g Gomega) { g.Expect(startedUnfinished(g, ns)).To(BeEmpty()) }, 2*time.Second, poll).
		Should(Succeed(), "a deny window (over an open allow window) starts nothing")

	// An allow window that is closed holds it too, when it opens before the
	// run's deadline (one that opens later skips it at once: TestGateFollowsTheClock).
	opens := time.Now().UTC().Add(30 * time.Minute)
	setWindows(t, p.Name, v1.CleanupWindow{Kind: v1.WindowAllow,
		Schedule: fmt.Sprintf("%d %d * * *", opens.Minute(), opens.Hour()), Duration: metav1.Duration{Duration: time.Minute}})
	g.Eventually(func(g Gomega) {
		g.Expect(getPolicy(g, p.Name).Status.WindowState).To(Equal(v1.WindowStateClosed))
	}, eventually, poll).Should(Succeed())
	g.Consistently(func(g Gomega) { g.Expect(startedUnfinished(g, ns)).To(BeEmpty()) }, 2*time.Second, poll).Should(Succeed())

	// An invalid window (admission cannot parse cron ranges) holds runs and says so.
	setWindows(t, p.Name, v1.CleanupWindow{Kind: v1.WindowAllow, Schedule: "50-10 * * * *", Duration: metav1.Duration{Duration: time.Hour}})
	g.Eventually(func(g Gomega) {
		pol := getPolicy(g, p.Name)
		g.Expect(pol.Status.WindowState).To(Equal(v1.WindowStateInvalid))
		c := findCondition(pol.Status.Conditions, v1.ConditionWindowsValid)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Message).To(ContainSubstring("spec.windows[0].schedule"))
	}, eventually, poll).Should(Succeed())
	g.Consistently(func(g Gomega) { g.Expect(startedUnfinished(g, ns)).To(BeEmpty()) }, 2*time.Second, poll).Should(Succeed())

	// An open allow window lets it through.
	setWindows(t, p.Name, allowOpen)
	g.Eventually(func(g Gomega) { g.Expect(startedUnfinished(g, ns)).To(Equal([]string{job.Name})) }, eventually, poll).Should(Succeed())
}

func findCondition(conds []metav1.Condition, t string) metav1.Condition {
	for _, c := range conds {
		if c.Type == t {
			return c
		}
	}
	return metav1.Condition{}
}

func setWindows(t *testing.T, name string, windows ...v1.CleanupWindow) {
	t.Helper()
	p := getPolicy(NewWithT(t), name)
	patch := client.MergeFrom(p.DeepCopy())
	p.Spec.Windows = windows
	if err := k8sClient.Patch(ctx(), p, patch); err != nil {
		t.Fatal(err)
	}
}

func TestGateRunNow(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	p := createPolicy(t, "gate-run-now", v1.ClusterSessionCleanupPolicySpec{Suspend: true, StartingDeadlineSeconds: 3600})
	cj := governedStores(t, ns, "gate-run-now", 1)[0]
	annotate := func(token string) {
		store := getStore(g, ns, "a-store")
		patch := client.MergeFrom(store.DeepCopy())
		store.Annotations = map[string]string{v1.RunNowAnnotation: token}
		g.Expect(k8sClient.Patch(ctx(), store, patch)).To(Succeed())
	}
	annotate("2026-11-29T23:00:00Z")
	job := waitRunNowJob(g, ns, cj.Name, "2026-11-29T23:00:00Z")
	name := job.Name
	g.Expect(job.Labels[specs.PolicyLabel]).To(Equal(p.Name))
	g.Expect(job.OwnerReferences).To(HaveLen(1))
	g.Expect(job.OwnerReferences[0].Name).To(Equal(cj.Name))
	// Made suspended, it waits for the gate like any run: the policy is suspended.
	g.Consistently(func(g Gomega) { g.Expect(startedUnfinished(g, ns)).To(BeEmpty()) }, 2*time.Second, poll).Should(Succeed())
	setSuspend(t, p.Name, false)
	g.Eventually(func(g Gomega) { g.Expect(startedUnfinished(g, ns)).To(Equal([]string{name})) }, eventually, poll).Should(Succeed())

	// The same token again makes no second Job; a new one makes one.
	finishJob(t, ns, name)
	annotate("2026-11-29T23:00:00Z")
	g.Consistently(func(g Gomega) { g.Expect(jobNames(g, ns)).To(Equal([]string{name})) }, time.Second, poll).Should(Succeed())
	annotate("again")
	g.Eventually(func(g Gomega) {
		g.Expect(startedUnfinished(g, ns)).To(Equal([]string{runNowJobName(cj.Name, "again")}))
	}, eventually, poll).Should(Succeed())
}

// A run-now Job is copied from the CronJob: while the CronJob still has the
// template of before the store became governed (here an admission policy
// refuses its update, as Kyverno or Gatekeeper may; the same holds while the
// cache is behind the apply), a copy would start at once, past the gate.
// The token waits until the template is the governed one.
func TestGateRunNowWaitsForTheGovernedTemplate(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	p := createPolicy(t, "gate-run-now-new", v1.ClusterSessionCleanupPolicySpec{Suspend: true, StartingDeadlineSeconds: 3600})
	createStore(t, filesystemStore(ns, "a-store"))
	cj := &batchv1.CronJob{}
	g.Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "a-store-cleanup"}, cj)).To(Succeed())
		g.Expect(getStore(g, ns, "a-store").Status.Cleanup.CronJobName).To(Equal(cj.Name))
	}, eventually, poll).Should(Succeed())
	g.Expect(ptr.Deref(cj.Spec.JobTemplate.Spec.Suspend, false)).To(BeFalse(), "an ungoverned store's runs start at once")
	unrefuse := refuseSuspendedCronJobs(t, ns)

	store := getStore(g, ns, "a-store")
	patch := client.MergeFrom(store.DeepCopy())
	store.Labels = map[string]string{policyTestLabel: p.Name}
	store.Annotations = map[string]string{v1.RunNowAnnotation: "with-the-policy"}
	g.Expect(k8sClient.Patch(ctx(), store, patch)).To(Succeed())
	g.Eventually(func(g Gomega) {
		c := findCondition(getStore(g, ns, "a-store").Status.Conditions, v1.ConditionCleanupScheduled)
		g.Expect(c.Reason).To(Equal(v1.ReasonApplyFailed))
	}, eventually, poll).Should(Succeed())
	g.Consistently(func(g Gomega) { g.Expect(jobNames(g, ns)).To(BeEmpty()) }, 2*time.Second, poll).
		Should(Succeed(), "no run-now Job from the ungoverned template")

	// Once the refusal is lifted, the next reconcile (here a label, as any
	// change to the store) applies the governed template and makes the Job.
	unrefuse()
	store = getStore(g, ns, "a-store")
	patch = client.MergeFrom(store.DeepCopy())
	store.Labels["touched"] = "yes"
	g.Expect(k8sClient.Patch(ctx(), store, patch)).To(Succeed())
	job := waitRunNowJob(g, ns, cj.Name, "with-the-policy")
	g.Expect(job.Labels[specs.PolicyLabel]).To(Equal(p.Name))
	g.Expect(ptr.Deref(job.Spec.Suspend, false)).To(BeTrue(), "the run-now Job must wait for the gate")
	g.Consistently(func(g Gomega) { g.Expect(startedUnfinished(g, ns)).To(BeEmpty()) }, 2*time.Second, poll).Should(Succeed())
}

// refuseSuspendedCronJobs makes the API server refuse, in ns, any CronJob
// whose job template is suspended (a ValidatingAdmissionPolicy), until the
// returned func is called.
func refuseSuspendedCronJobs(t *testing.T, ns string) func() {
	t.Helper()
	vap := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "refuse-suspended-" + ns},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{"batch"}, APIVersions: []string{"v1"}, Resources: []string{"cronjobs"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: "!has(object.spec.jobTemplate.spec.suspend) || !object.spec.jobTemplate.spec.suspend",
				Message:    "suspended job templates are refused here",
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: vap.Name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        vap.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}},
		},
	}
	for _, obj := range []client.Object{vap, binding} {
		if err := k8sClient.Create(ctx(), obj); err != nil {
			t.Fatalf("creating %T: %v", obj, err)
		}
	}
	// The API server loads policies asynchronously: wait until it refuses.
	probe := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe"},
		Spec: batchv1.CronJobSpec{Schedule: "0 0 1 1 *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
			Suspend: ptr.To(true),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}},
		}}},
	}
	NewWithT(t).Eventually(func() error {
		err := k8sClient.Create(ctx(), probe.DeepCopy(), client.DryRunAll)
		if err == nil {
			return fmt.Errorf("not refused yet")
		}
		return nil
	}, eventually, poll).Should(Succeed())
	remove := func() {
		_ = k8sClient.Delete(ctx(), binding)
		_ = k8sClient.Delete(ctx(), vap)
	}
	t.Cleanup(remove)
	return func() {
		remove()
		// The API server unloads it asynchronously too: wait until it admits.
		NewWithT(t).Eventually(func() error {
			return k8sClient.Create(ctx(), probe.DeepCopy(), client.DryRunAll)
		}, eventually, poll).Should(Succeed())
	}
}

// waitRunNowJob waits for the Job of a-store's run-now token and for the
// token's echo in its status.
func waitRunNowJob(g Gomega, ns, cronJob, token string) *batchv1.Job {
	job := &batchv1.Job{}
	g.Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: runNowJobName(cronJob, token)}, job)).To(Succeed())
		g.Expect(getStore(g, ns, "a-store").Status.Cleanup.LastHandledRunRequest).To(Equal(token))
	}, eventually, poll).Should(Succeed())
	return job
}

func jobNames(g Gomega, ns string) []string {
	jobs := &batchv1.JobList{}
	g.Expect(k8sClient.List(ctx(), jobs, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, j := range jobs.Items {
		out = append(out, j.Name)
	}
	return out
}

func setSuspend(t *testing.T, name string, suspend bool) {
	t.Helper()
	p := getPolicy(NewWithT(t), name)
	patch := client.MergeFrom(p.DeepCopy())
	p.Spec.Suspend = suspend
	if err := k8sClient.Patch(ctx(), p, patch); err != nil {
		t.Fatal(err)
	}
}

func TestGateSkipsARunPastItsStartingDeadline(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createPolicy(t, "gate-deadline", v1.ClusterSessionCleanupPolicySpec{Suspend: true, StartingDeadlineSeconds: 3})
	cj := governedStores(t, ns, "gate-deadline", 1)[0]
	job := scheduleJob(t, cj, time.Now())
	g.Eventually(func(g Gomega) {
		err := k8sClient.Get(ctx(), client.ObjectKeyFromObject(job), &batchv1.Job{})
		g.Expect(isNotFound(err)).To(BeTrue(), "the Job not started within its deadline is deleted: %v", err)
		st := getStore(g, ns, "a-store").Status.Cleanup
		g.Expect(st.LastSkipTime).NotTo(BeNil())
		g.Expect(st.LastSkipReason).To(ContainSubstring(job.Name))
		g.Expect(st.LastSkipReason).To(ContainSubstring("policy gate-deadline is suspended"))
		g.Expect(getPolicy(g, "gate-deadline").Status.SkippedLastDay).To(BeEquivalentTo(1))
		g.Expect(eventReasons(g, ns, "a-store")).To(ContainElement(v1.EventCleanupSkipped))
	}, eventually, poll).Should(Succeed())
}

func TestGateHoldsAHandMadeJobUntilItsTurn(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createPolicy(t, "gate-hand-made", v1.ClusterSessionCleanupPolicySpec{
		Concurrency: v1.CleanupConcurrency{MaxPerServer: ptr.To[int32](1)}, StartingDeadlineSeconds: 3600})
	cronJobs := governedStores(t, ns, "gate-hand-made", 2)
	first := scheduleJob(t, cronJobs[0], time.Now())
	g.Eventually(func(g Gomega) { g.Expect(startedUnfinished(g, ns)).To(Equal([]string{first.Name})) }, eventually, poll).Should(Succeed())

	kubectl(t, "-n", ns, "create", "job", "by-hand", "--from=cronjob/"+cronJobs[1].Name)
	g.Consistently(func(g Gomega) { g.Expect(startedUnfinished(g, ns)).To(Equal([]string{first.Name})) }, 2*time.Second, poll).
		Should(Succeed(), "kubectl's Job copies the suspended template and waits behind the running one")
	finishJob(t, ns, first.Name)
	g.Eventually(func(g Gomega) { g.Expect(startedUnfinished(g, ns)).To(Equal([]string{"by-hand"})) }, eventually, poll).Should(Succeed())
}

// kubectl runs the real kubectl against the suite's API server as an admin.
func kubectl(t *testing.T, args ...string) {
	t.Helper()
	admin, err := testEnv.AddUser(envtest.User{Name: "kubectl-admin", Groups: []string{"system:masters"}}, testCfg)
	if err != nil {
		t.Fatal(err)
	}
	config, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, config, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("kubectl", append([]string{"--kubeconfig", path}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
}

// A run-now Job is copied only from a template made for the store's
// governance as it is now: not an ungoverned one, nor one suspended for
// another policy or server (a store that moved between policies).
func TestTemplateMatchesGovernance(t *testing.T) {
	template := func(suspend bool, policyName, server string) *batchv1.CronJob {
		cj := &batchv1.CronJob{}
		cj.Spec.JobTemplate.Spec.Suspend = ptr.To(suspend)
		if policyName != "" {
			cj.Spec.JobTemplate.Labels = map[string]string{specs.PolicyLabel: policyName, specs.ServerLabel: server}
		}
		return cj
	}
	gov := &specs.Governance{Policy: "b", ServerHash: "s1"}
	cases := []struct {
		name string
		cj   *batchv1.CronJob
		gov  *specs.Governance
		want bool
	}{
		{"ungoverned template, ungoverned store", template(false, "", ""), nil, true},
		{"governed template, store no longer governed", template(true, "a", "s1"), nil, false},
		{"ungoverned template, governed store", template(false, "", ""), gov, false},
		{"suspended for another policy", template(true, "a", "s1"), gov, false},
		{"suspended for another server", template(true, "b", "s0"), gov, false},
		{"the governance's own", template(true, "b", "s1"), gov, true},
	}
	for _, c := range cases {
		if got := templateMatchesGovernance(c.cj, c.gov); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
