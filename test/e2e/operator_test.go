//go:build e2e

package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// operatorPod waits for the Deployment to be Available with one ready Pod
// from its current template, and returns that Pod.
func operatorPod(t *testing.T) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	NewWithT(t).Eventually(func(g Gomega) {
		dep := &appsv1.Deployment{}
		g.Expect(k8sClient.Get(ctx(), client.ObjectKey{Namespace: operatorNS, Name: operatorName}, dep)).To(Succeed())
		g.Expect(dep.Status.ObservedGeneration).To(Equal(dep.Generation))
		g.Expect(dep.Status.UpdatedReplicas).To(BeEquivalentTo(1))
		g.Expect(dep.Status.ReadyReplicas).To(BeEquivalentTo(1))
		g.Expect(dep.Status.Replicas).To(BeEquivalentTo(1), "an old Pod still running")
		pods := &corev1.PodList{}
		g.Expect(k8sClient.List(ctx(), pods, client.InNamespace(operatorNS),
			client.MatchingLabels(dep.Spec.Selector.MatchLabels))).To(Succeed())
		var running []corev1.Pod
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
				running = append(running, p)
			}
		}
		g.Expect(running).To(HaveLen(1))
		pod = &running[0]
	}, 3*time.Minute, poll).Should(Succeed())
	return pod
}

// testOperatorInstalled: the Deployment runs the image under test, as its
// ServiceAccount, restricted, in a namespace that enforces restricted.
func testOperatorInstalled(t *testing.T) {
	g := NewWithT(t)
	pod := operatorPod(t)
	ns := &corev1.Namespace{}
	g.Expect(k8sClient.Get(ctx(), client.ObjectKey{Name: operatorNS}, ns)).To(Succeed())
	g.Expect(ns.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"))
	g.Expect(pod.Spec.ServiceAccountName).To(Equal(operatorName))
	c := pod.Spec.Containers[0]
	if operatorImage != "" {
		g.Expect(c.Image).To(Equal(operatorImage))
		g.Expect(c.Env).To(ContainElement(corev1.EnvVar{Name: "OPERATOR_IMAGE", Value: operatorImage}),
			"the cleanup CronJobs run the operator's own image")
	}
	g.Expect(c.SecurityContext.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
	g.Expect(c.Args).To(ContainElement("--leader-elect"))
}

// leaderElectionID is controllers.LeaderElectionID; the test names it rather
// than import the controllers it tests from outside.
const leaderElectionID = "3c1e5d7a.sessionstore.dev"

// testLeaseHeld: the running Pod holds the leader-election Lease.
func testLeaseHeld(t *testing.T) {
	pod := operatorPod(t)
	NewWithT(t).Eventually(func(g Gomega) {
		lease := &coordinationv1.Lease{}
		g.Expect(k8sClient.Get(ctx(), client.ObjectKey{Namespace: operatorNS, Name: leaderElectionID}, lease)).To(Succeed())
		g.Expect(lease.Spec.HolderIdentity).To(HaveValue(HavePrefix(pod.Name + "_")))
		g.Expect(lease.Spec.RenewTime.Time).To(BeTemporally(">", time.Now().Add(-30*time.Second)))
	}, e2eTimeout, poll).Should(Succeed())
}

// testMetricsScraped: /metrics on the Pod answers a ServiceAccount bound to
// the metrics-reader role, and refuses one that is not, and no token at all
// (controller-runtime's authn/authz filter, through the TokenReview and
// SubjectAccessReview APIs the install's RBAC grants).
func testMetricsScraped(t *testing.T) {
	g := NewWithT(t)
	pod := operatorPod(t)
	reader := serviceAccountToken(t, "e2e-metrics-reader", metricsReader)
	stranger := serviceAccountToken(t, "e2e-stranger", "")
	url := fmt.Sprintf("https://%s:8443/metrics", pod.Status.PodIP)
	g.Expect(scrape(t, url, "").status).To(Equal(http.StatusUnauthorized))
	g.Expect(scrape(t, url, stranger).status).To(Equal(http.StatusForbidden))
	got := scrape(t, url, reader)
	g.Expect(got.status).To(Equal(http.StatusOK), got.body)
	g.Expect(got.body).To(ContainSubstring("controller_runtime_reconcile_total"))
	g.Expect(got.body).To(ContainSubstring("sessionstore_"))
}

type scraped struct {
	status int
	body   string
}

func scrape(t *testing.T, url, token string) scraped {
	t.Helper()
	// The Pod serves a self-signed certificate (controller-runtime's default).
	httpClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return scraped{resp.StatusCode, string(body)}
}

// serviceAccountToken makes a ServiceAccount in the operator's namespace,
// bound to clusterRole when one is named, and returns a token for it.
func serviceAccountToken(t *testing.T, name, clusterRole string) string {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: name}}
	if err := k8sClient.Create(ctx(), sa); err != nil {
		t.Fatalf("creating ServiceAccount %s: %v", name, err)
	}
	t.Cleanup(func() { _ = k8sClient.Delete(ctx(), sa) })
	if clusterRole != "" {
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: operatorNS, Name: name}},
		}
		if err := k8sClient.Create(ctx(), binding); err != nil {
			t.Fatalf("binding %s: %v", name, err)
		}
		t.Cleanup(func() { _ = k8sClient.Delete(ctx(), binding) })
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptrInt64(600)}}
	if err := k8sClient.SubResource("token").Create(ctx(), sa, req); err != nil {
		t.Fatalf("token for %s: %v", name, err)
	}
	return strings.TrimSpace(req.Status.Token)
}

func ptrInt64(v int64) *int64 { return &v }
