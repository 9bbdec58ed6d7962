package controllers

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"
)

// Managers of their own, each run as a user bound to chosen RBAC, with
// leader election on and the log captured, for the RBAC tests.

// lineBuffer collects log lines from many goroutines.
type lineBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// linesWith returns the lines that contain every one of words, ignoring case.
func (b *lineBuffer) linesWith(words ...string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, line := range strings.Split(b.buf.String(), "\n") {
		lower := strings.ToLower(line)
		all := line != ""
		for _, w := range words {
			all = all && strings.Contains(lower, strings.ToLower(w))
		}
		if all {
			out = append(out, line)
		}
	}
	return out
}

// sharedLogLines holds what is logged outside a manager's own logger:
// client-go's leader election, the core Event recorder it uses and the
// informers' reflectors log through klog or controller-runtime's global
// logger, both sent here by TestMain. A line is told apart from other
// managers' by the user name in its forbidden error (so no user name may
// be a prefix of another).
var sharedLogLines = &lineBuffer{}

// restrictedManager is a running manager and what it logged.
type restrictedManager struct {
	user    string
	cache   cache.Cache
	log     *lineBuffer
	cancel  context.CancelFunc
	stopped chan error
	result  error
}

// forbiddenLines are the permission errors the manager logged, itself or
// through client-go, with quotes unescaped.
func (m *restrictedManager) forbiddenLines() []string {
	lines := append(m.log.linesWith("forbidden"), sharedLogLines.linesWith("forbidden", m.user)...)
	for i := range lines {
		lines[i] = strings.ReplaceAll(lines[i], `\"`, `"`)
	}
	return lines
}

// reconcileErrors counts the reconciles that returned an error.
func (m *restrictedManager) reconcileErrors() int {
	return len(m.log.linesWith(`"msg":"Reconciler error"`))
}

// stop stops the manager and waits for it; the error it stopped with
// (a lost leader election, say) is kept in result.
func (m *restrictedManager) stop(t testing.TB) {
	t.Helper()
	syncCtx, cancelSync := context.WithTimeout(context.Background(), time.Second)
	defer cancelSync()
	if !m.cache.WaitForCacheSync(syncCtx) {
		// controller-runtime's Start spins on a cancelled context while a
		// cache it waits for has not synced: leave this one waiting.
		t.Logf("the manager's cache never synced; it is left running")
		m.result = errors.New("the cache never synced")
		return
	}
	m.cancel()
	select {
	case m.result = <-m.stopped:
	case <-time.After(30 * time.Second):
		t.Errorf("manager of %s did not stop", m.user)
	}
}

// managerSettings say how a restricted manager runs.
type managerSettings struct {
	user             string
	namespaces       []string // watched; empty means all
	leaderNamespace  string
	leaderElectionID string
	// clusterPolicies runs the cleanup policies and their gate, as main.go
	// does when it watches every namespace.
	clusterPolicies bool
}

// addUserMu serialises envtest's AddUser: its certificate authority counts
// serial numbers without a lock, and the RBAC cases add users in parallel.
var addUserMu sync.Mutex

// addTestUser is testEnv.AddUser, one at a time.
func addTestUser(user envtest.User) (*envtest.AuthenticatedUser, error) {
	addUserMu.Lock()
	defer addUserMu.Unlock()
	return testEnv.AddUser(user, testCfg)
}

// startRestrictedManager runs the controller as settings.user, which must
// be bound already, configured as main.go configures it, leader election on.
func startRestrictedManager(t testing.TB, s managerSettings) *restrictedManager {
	t.Helper()
	authenticated, err := addTestUser(envtest.User{Name: s.user})
	if err != nil {
		t.Fatalf("adding user %s: %v", s.user, err)
	}
	m := &restrictedManager{user: s.user, log: &lineBuffer{}, stopped: make(chan error, 1)}
	mgr, err := ctrl.NewManager(authenticated.Config(), ctrl.Options{
		Scheme:                        testScheme,
		Logger:                        zap.New(zap.WriteTo(m.log)),
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		Cache:                         CacheOptions(s.namespaces),
		LeaderElection:                true,
		LeaderElectionID:              s.leaderElectionID,
		LeaderElectionNamespace:       s.leaderNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 ptr.To(15 * time.Second),
		RenewDeadline:                 ptr.To(10 * time.Second),
		RetryPeriod:                   ptr.To(time.Second),
		// A controller still waiting for a forbidden watch to sync does
		// not end by itself.
		GracefulShutdownTimeout: ptr.To(5 * time.Second),
		// The suite's manager already runs controllers of these names.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatalf("manager for %s: %v", s.user, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	if _, err := setup(ctx, mgr, Options{
		CleanupImage: testImage, Namespaces: s.namespaces, MetricsRegistry: prometheus.NewRegistry(),
		ClusterPolicies: s.clusterPolicies,
		ProbeInterval:   3 * time.Second, ProbeTimeout: 2 * time.Second, ProbeMinBackoff: 500 * time.Millisecond,
	}); err != nil {
		cancel()
		t.Fatalf("setup for %s: %v", s.user, err)
	}
	m.cache = mgr.GetCache()
	go func() { m.stopped <- mgr.Start(ctx) }()
	return m
}

// readRBAC reads one RBAC object of config/rbac.
func readRBAC(t testing.TB, file string, into client.Object) {
	t.Helper()
	data, err := os.ReadFile("../config/rbac/" + file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func ensureNamespace(t testing.TB, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := k8sClient.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}

func userSubject(user string) []rbacv1.Subject {
	return []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}}
}

// bindClusterRules grants user rules in every namespace.
func bindClusterRules(t testing.TB, user string, rules []rbacv1.PolicyRule) {
	t.Helper()
	name := "test-" + user
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   userSubject(user),
	}
	for _, obj := range []client.Object{role, binding} {
		if err := k8sClient.Create(context.Background(), obj); err != nil {
			t.Fatalf("creating %T %s: %v", obj, name, err)
		}
	}
}

// bindNamespaceRules grants user rules in namespace ns only.
func bindNamespaceRules(t testing.TB, user, ns string, rules []rbacv1.PolicyRule) {
	t.Helper()
	name := "test-" + user
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Rules: rules}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   userSubject(user),
	}
	for _, obj := range []client.Object{role, binding} {
		if err := k8sClient.Create(context.Background(), obj); err != nil {
			t.Fatalf("creating %T %s/%s: %v", obj, ns, name, err)
		}
	}
}

// pollUntil calls check until it returns nil or ctx ends, and then
// returns check's last error.
func pollUntil(ctx context.Context, check func() error) error {
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}
