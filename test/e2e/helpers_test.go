//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/sessionstore/storetest"
)

// kubectl runs kubectl against the node's cluster (KUBECONFIG) and returns
// its stdout; the test fails on a non-zero exit.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("kubectl", args...).Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

// restrictedNamespace makes a namespace that enforces the restricted Pod
// Security level, so a Pod that breaks the profile is never created. It
// outlives the subtest: the restart and garbage-collection checks use its
// store; hack/e2e/run.sh deletes the pass's namespaces by label.
func restrictedNamespace(t *testing.T, name string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted",
		"e2e-pass": installMode}}}
	if err := k8sClient.Create(ctx(), ns); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	return name
}

func createSecret(t *testing.T, ns, name string, data map[string]string) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data}
	if err := k8sClient.Create(ctx(), s); err != nil {
		t.Fatalf("creating Secret %s/%s: %v", ns, name, err)
	}
}

type flaskSession = storetest.FlaskSession

// flask runs a Flask-Session script on the host, as the app would, as uid
// (0: root) with stdin, and returns its stdout.
func flask(t *testing.T, uid int, stdin, script string, args ...string) string {
	t.Helper()
	return string(storetest.RunFlaskAs(t, uid, script, stdin, args...))
}

func parseSessions(t *testing.T, out string, want int) []flaskSession {
	t.Helper()
	var s []flaskSession
	if err := json.Unmarshal([]byte(out), &s); err != nil || len(s) != want {
		t.Fatalf("the app wrote %d sessions, want %d (%v): %q", len(s), want, err, out)
	}
	return s
}

func sidsJSON(groups ...[]flaskSession) string { return storetest.SIDsJSON(groups...) }

func getStore(g Gomega, ns, name string) *v1.SessionStore {
	s := &v1.SessionStore{}
	g.Expect(k8sClient.Get(ctx(), client.ObjectKey{Namespace: ns, Name: name}, s)).To(Succeed())
	return s
}

// waitCondition waits until the store's condition has the status (and the
// reason, when given) and returns the store as it was then.
func waitCondition(t *testing.T, ns, name, condType string, status metav1.ConditionStatus, reason string) *v1.SessionStore {
	t.Helper()
	var store *v1.SessionStore
	NewWithT(t).Eventually(func(g Gomega) {
		store = getStore(g, ns, name)
		c := meta.FindStatusCondition(store.Status.Conditions, condType)
		g.Expect(c).NotTo(BeNil(), "condition %s", condType)
		g.Expect(c.Status).To(Equal(status), "%s: %s", condType, c.Message)
		if reason != "" {
			g.Expect(c.Reason).To(Equal(reason), "%s: %s", condType, c.Message)
		}
	}, e2eTimeout, poll).Should(Succeed(), "store %s/%s", ns, name)
	return store
}

// runCleanupPod starts the store's CronJob now, as a user would, and waits
// for the Job to finish. It fails fast, with the Pod's story, when the Job
// fails or cannot create its Pod (a Pod Security violation ends here).
func runCleanupPod(t *testing.T, ns, cronJob, job string) *corev1.Pod {
	t.Helper()
	kubectl(t, "create", "job", "-n", ns, "--from=cronjob/"+cronJob, job)
	waitJobComplete(t, ns, job)
	return jobPod(t, ns, job)
}

// waitJobComplete waits for the Job to complete, failing fast with its
// Pod's story when it fails, and with the story when it times out.
func waitJobComplete(t *testing.T, ns, name string) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		j := &batchv1.Job{}
		g.Expect(k8sClient.Get(ctx(), client.ObjectKey{Namespace: ns, Name: name}, j)).To(Succeed())
		if jobDone(j, batchv1.JobFailed) {
			t.Fatalf("job %s/%s failed: %+v\n%s", ns, name, j.Status.Conditions, podStory(t, ns, name))
		}
		g.Expect(jobDone(j, batchv1.JobComplete)).To(BeTrue())
	}, e2eTimeout, poll).Should(Succeed(), func() string {
		return fmt.Sprintf("job %s/%s did not complete\n%s", ns, name, podStory(t, ns, name))
	})
}

func jobDone(j *batchv1.Job, condType batchv1.JobConditionType) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == condType && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func jobPod(t *testing.T, ns, job string) *corev1.Pod {
	t.Helper()
	pods := &corev1.PodList{}
	if err := k8sClient.List(ctx(), pods, client.InNamespace(ns), client.MatchingLabels{"job-name": job}); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 {
		t.Fatalf("job %s has %d pods, want exactly 1", job, len(pods.Items))
	}
	return &pods.Items[0]
}

// podStory is what a failed run leaves to read: events and the Pods' states.
func podStory(t *testing.T, ns, job string) string {
	events, _ := exec.Command("kubectl", "get", "events", "-n", ns, "-o", "wide").CombinedOutput()
	pods, _ := exec.Command("kubectl", "get", "pods", "-n", ns, "-l", "job-name="+job, "-o", "yaml").CombinedOutput()
	logs, _ := exec.Command("kubectl", "logs", "-n", ns, "-l", "job-name="+job, "--tail=50").CombinedOutput()
	return fmt.Sprintf("events:\n%s\npods:\n%s\nlogs:\n%s", events, pods, logs)
}

// terminationMessage is what the kubelet read from the container's
// termination-log file when it exited.
func terminationMessage(t *testing.T, pod *corev1.Pod) (string, int32) {
	t.Helper()
	if len(pod.Status.ContainerStatuses) != 1 || pod.Status.ContainerStatuses[0].State.Terminated == nil {
		t.Fatalf("pod %s has not terminated: %+v", pod.Name, pod.Status.ContainerStatuses)
	}
	term := pod.Status.ContainerStatuses[0].State.Terminated
	return term.Message, term.ExitCode
}

func waitGone(t *testing.T, obj client.Object) {
	t.Helper()
	NewWithT(t).Eventually(func() bool {
		err := k8sClient.Get(ctx(), client.ObjectKeyFromObject(obj), obj)
		return apierrors.IsNotFound(err)
	}, e2eTimeout, poll).Should(BeTrue(), "%T %s still there", obj, obj.GetName())
}
