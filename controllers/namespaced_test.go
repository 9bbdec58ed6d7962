package controllers

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/testservers"
)

// install is what a kustomization builds, as kubectl apply -k would apply it.
type install struct {
	objects []*unstructured.Unstructured
}

func buildKustomization(t *testing.T, dir string) install {
	t.Helper()
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var out install
	for _, res := range resMap.Resources() {
		m, err := res.Map()
		if err != nil {
			t.Fatal(err)
		}
		out.objects = append(out.objects, &unstructured.Unstructured{Object: m})
	}
	return out
}

// typed returns the objects of kind as T.
func typed[T any](t *testing.T, in install, kind string) []*T {
	t.Helper()
	var out []*T
	for _, u := range in.objects {
		if u.GetKind() != kind {
			continue
		}
		obj := new(T)
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, obj); err != nil {
			t.Fatalf("%s %s: %v", kind, u.GetName(), err)
		}
		out = append(out, obj)
	}
	return out
}

// operatorOf returns the manager's Deployment and the namespaces it watches.
func operatorOf(t *testing.T, in install) (*appsv1.Deployment, []string) {
	t.Helper()
	deployments := typed[appsv1.Deployment](t, in, "Deployment")
	if len(deployments) != 1 {
		t.Fatalf("%d Deployments, want 1", len(deployments))
	}
	for _, env := range deployments[0].Spec.Template.Spec.Containers[0].Env {
		if env.Name == "WATCH_NAMESPACES" && env.Value != "" {
			return deployments[0], strings.Split(env.Value, ",")
		}
	}
	t.Fatal("the Deployment sets no WATCH_NAMESPACES")
	return nil, nil
}

func bindsTo(subjects []rbacv1.Subject, sa *corev1.ServiceAccount) bool {
	return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool {
		return s.Kind == rbacv1.ServiceAccountKind && s.Name == sa.Name && s.Namespace == sa.Namespace
	})
}

// namespacedResources are what a namespaced install must never grant
// cluster-wide.
var namespacedResources = []string{"secrets", "cronjobs", "jobs", "pods", "sessionstores", "sessionstores/status", "*"}

// TestNamespacedInstallGrantsOnlyWatchedNamespaces builds config/namespaced
// as shipped: the manager's rules are Roles in exactly the namespaces
// WATCH_NAMESPACES lists (and leader election's in its own), and nothing
// cluster-wide bound to it touches Secrets, CronJobs, Jobs, Pods or stores.
func TestNamespacedInstallGrantsOnlyWatchedNamespaces(t *testing.T) {
	g := NewWithT(t)
	in := buildKustomization(t, "../config/namespaced")
	deployment, watched := operatorOf(t, in)
	accounts := typed[corev1.ServiceAccount](t, in, "ServiceAccount")
	g.Expect(accounts).To(HaveLen(1))
	sa := accounts[0]
	g.Expect(deployment.Spec.Template.Spec.ServiceAccountName).To(Equal(sa.Name))

	generated := &rbacv1.ClusterRole{}
	readRBAC(t, managerRoleFile, generated)
	roles := map[types.NamespacedName]*rbacv1.Role{}
	for _, role := range typed[rbacv1.Role](t, in, "Role") {
		roles[types.NamespacedName{Namespace: role.Namespace, Name: role.Name}] = role
	}
	var managerNamespaces []string
	for _, binding := range typed[rbacv1.RoleBinding](t, in, "RoleBinding") {
		if !bindsTo(binding.Subjects, sa) {
			continue
		}
		g.Expect(binding.RoleRef.Kind).To(Equal("Role"), "RoleBinding %s/%s", binding.Namespace, binding.Name)
		role := roles[types.NamespacedName{Namespace: binding.Namespace, Name: binding.RoleRef.Name}]
		g.Expect(role).NotTo(BeNil(), "RoleBinding %s/%s names a Role the install lacks", binding.Namespace, binding.Name)
		if binding.Namespace == sa.Namespace {
			continue // leader election
		}
		g.Expect(role.Rules).To(Equal(generated.Rules), "the Role in %s holds the generated rules", binding.Namespace)
		managerNamespaces = append(managerNamespaces, binding.Namespace)
	}
	g.Expect(managerNamespaces).To(ConsistOf(watched), "a Role in exactly each watched namespace")

	clusterRoles := map[string]*rbacv1.ClusterRole{}
	for _, role := range typed[rbacv1.ClusterRole](t, in, "ClusterRole") {
		clusterRoles[role.Name] = role
	}
	for _, binding := range typed[rbacv1.ClusterRoleBinding](t, in, "ClusterRoleBinding") {
		if !bindsTo(binding.Subjects, sa) {
			continue
		}
		role := clusterRoles[binding.RoleRef.Name]
		g.Expect(role).NotTo(BeNil(), "ClusterRoleBinding %s names a ClusterRole the install lacks", binding.Name)
		for _, rule := range role.Rules {
			g.Expect(rule.Resources).NotTo(ContainElement(BeElementOf(namespacedResources)),
				"ClusterRole %s is bound cluster-wide to the manager", role.Name)
		}
	}
}

// namespacedInstall builds config/namespaced after the steps its
// kustomization.yaml gives for choosing the namespaces, with ours.
func namespacedInstall(t *testing.T, namespaces ...string) install {
	t.Helper()
	root := t.TempDir()
	if err := os.CopyFS(filepath.Join(root, "config"), os.DirFS("../config")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "config", "namespaced")
	example, err := os.ReadFile(filepath.Join(dir, "web", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range namespaces {
		writeFile(t, filepath.Join(dir, ns, "kustomization.yaml"), strings.ReplaceAll(string(example), "web", ns))
	}
	top, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	edited := string(top)
	for old, replacement := range map[string]string{
		"- web\n- shop\n":   "- " + strings.Join(namespaces, "\n- ") + "\n",
		"value: web,shop\n": "value: " + strings.Join(namespaces, ",") + "\n",
	} {
		if !strings.Contains(edited, old) {
			t.Fatalf("config/namespaced/kustomization.yaml no longer has %q, which its instructions and this test edit", old)
		}
		edited = strings.Replace(edited, old, replacement, 1)
	}
	writeFile(t, filepath.Join(dir, "kustomization.yaml"), edited)
	return buildKustomization(t, dir)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// applyRBACAs creates the install's RBAC with its ServiceAccount's
// bindings given to user instead; nothing else binds user.
func applyRBACAs(t *testing.T, in install, user string) {
	t.Helper()
	sa := typed[corev1.ServiceAccount](t, in, "ServiceAccount")[0]
	for _, u := range in.objects {
		switch u.GetKind() {
		case "Role", "ClusterRole":
		case "RoleBinding", "ClusterRoleBinding":
			var binding rbacv1.RoleBinding // a ClusterRoleBinding has the same fields
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &binding); err != nil {
				t.Fatal(err)
			}
			if !bindsTo(binding.Subjects, sa) {
				continue
			}
			subjects, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&struct {
				Subjects []rbacv1.Subject `json:"subjects"`
			}{userSubject(user)})
			if err != nil {
				t.Fatal(err)
			}
			u.Object["subjects"] = subjects["subjects"]
		default:
			continue
		}
		if err := k8sClient.Create(ctx(), u); err != nil {
			t.Fatalf("creating %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
}

// TestNamespacedManagerServesOnlyItsNamespaces runs the manager with only
// the RBAC config/namespaced makes for two namespaces, as its Deployment
// configures it (WATCH_NAMESPACES, leader election in its own namespace):
// it serves the stores there, leaves a third namespace alone, and logs no
// permission error and no failed reconcile.
func TestNamespacedManagerServesOnlyItsNamespaces(t *testing.T) {
	g := NewWithT(t)
	const user = "manager-namespaced"
	in := namespacedInstall(t, "nsmode-a", "nsmode-b")
	deployment, watched := operatorOf(t, in)
	g.Expect(deployment.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--leader-elect"))
	for _, ns := range []string{"nsmode-a", "nsmode-b", "nsmode-c", deployment.Namespace} {
		ensureNamespace(t, ns)
	}
	applyRBACAs(t, in, user)
	m := startRestrictedManager(t, managerSettings{
		user: user, namespaces: watched, leaderNamespace: deployment.Namespace, leaderElectionID: LeaderElectionID,
	})

	// A cluster-scoped policy that selects the watched namespaces' stores is
	// not read in namespaced mode (main.go turns policies off there): their
	// CronJobs stay as without it.
	createPolicy(t, "nsmode-ignored", v1.ClusterSessionCleanupPolicySpec{Selector: v1.CleanupPolicySelector{
		StoreSelector: &metav1.LabelSelector{},
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{"nsmode-a", "nsmode-b"}}}},
	}})

	port := testservers.FreePort(t)
	startRedis(t, port, "s3cret")
	createSecret(t, "nsmode-b", "redis-auth", map[string]string{"password": "s3cret"})
	createStore(t, localRedisStore("nsmode-b", "cache", port, true))
	for _, ns := range []string{"nsmode-a", "nsmode-b", "nsmode-c"} {
		createStore(t, filesystemStore(ns, "files"))
	}
	for _, ns := range []string{"nsmode-a", "nsmode-b"} {
		waitReady(t, ns, "files")
		waitSecret(t, ns, "files-session-store")
		cj := waitCronJob(t, ns, "files-cleanup")
		g.Expect(cj.Spec.JobTemplate.Spec.Suspend).To(BeNil(), "not governed in namespaced mode")
		g.Expect(getStore(g, ns, "files").Status.Cleanup.Policy).To(BeEmpty())
	}
	waitReady(t, "nsmode-b", "cache")
	g.Expect(stringData(waitSecret(t, "nsmode-b", "cache-session-store"))).To(HaveKeyWithValue("SESSION_STORE_URL",
		ContainSubstring("s3cret")), "the credential Secret was read")

	g.Consistently(func(g Gomega) {
		store := getStore(g, "nsmode-c", "files")
		g.Expect(store.Status).To(BeZero(), "a store outside the watched namespaces gets no status")
		err := k8sClient.Get(ctx(), types.NamespacedName{Namespace: "nsmode-c", Name: "files-session-store"}, &corev1.Secret{})
		g.Expect(isNotFound(err)).To(BeTrue(), "nor a Secret: %v", err)
	}, 2*time.Second, 100*time.Millisecond).Should(Succeed())

	m.stop(t)
	g.Expect(m.result).NotTo(HaveOccurred())
	g.Expect(m.forbiddenLines()).To(BeEmpty(), "permission errors")
	g.Expect(m.reconcileErrors()).To(BeZero(), "failed reconciles:\n%s", strings.Join(m.log.linesWith("Reconciler error"), "\n"))
}
