package controllers

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/testservers"
)

// The suite runs one real kube-apiserver and etcd (envtest, built by
// hack/install-tools.sh into bin/k8s) and one manager with the controller,
// configured as main.go configures it.
var (
	testEnv        *envtest.Environment
	k8sClient      client.Client // the tests' own client, uncached
	testScheme     = runtime.NewScheme()
	testCfg        *rest.Config
	testMgr        ctrl.Manager
	testReconciler *sessionStoreReconciler
	writeCount     atomic.Int64 // writes the manager's client made
	writeLog       sync.Map     // what each write was, by its number
	testImage      = "registry.example/sessionstore-operator:test"
	suiteCtx       context.Context
	suiteCancel    context.CancelFunc
)

func TestMain(m *testing.M) {
	flag.Parse()
	// Listing the tests needs no control plane.
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	// Informers LIST then WATCH, as against an API server that does not
	// stream lists (WatchList off), so the RBAC tests see the list verb used.
	if os.Getenv("KUBE_FEATURE_WatchListClient") == "" {
		os.Setenv("KUBE_FEATURE_WatchListClient", "false")
	}
	utilruntime.Must(clientgoscheme.AddToScheme(testScheme))
	utilruntime.Must(v1.AddToScheme(testScheme))
	// Errors are kept in sharedLogLines too, where the RBAC tests look for
	// permission errors; client-go's klog goes the same way.
	logger := zap.New(zap.UseDevMode(true), zap.WriteTo(io.MultiWriter(os.Stderr, sharedLogLines)), zap.Level(zapLevel()))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger)

	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join("..", "bin", "k8s")
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: %s not found in %s: run `make tools` (hack/install-tools.sh) first\n", bin, assets)
			return 1
		}
	}
	var err error
	testEnv, testCfg, err = testservers.StartEnvtest(func() *envtest.Environment {
		env := &envtest.Environment{
			CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
			ErrorIfCRDPathMissing: true,
			BinaryAssetsDirectory: assets,
		}
		// As on OpenShift: setting an owner reference that blocks the owner's
		// deletion needs update on the owner's finalizers, so the RBAC tests
		// show whether the manager's role grants it.
		env.ControlPlane.GetAPIServer().Configure().
			Append("enable-admission-plugins", "OwnerReferencesPermissionEnforcement")
		return env
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: starting envtest: %v\n", err)
		return 1
	}
	defer func() { _ = testEnv.Stop() }()

	k8sClient, err = client.New(testCfg, client.Options{Scheme: testScheme})
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: client: %v\n", err)
		return 1
	}
	// The manager runs as a user with exactly the generated RBAC, so a
	// missing or surplus permission in config/rbac shows here.
	managerCfg, err := restrictedManagerConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: manager user: %v\n", err)
		return 1
	}
	// Namespaces of the RBAC tests are served by managers of their own.
	cacheOpts := CacheOptions(nil)
	cacheOpts.DefaultFieldSelector = outsideIsolatedNamespaces()
	// Cluster-scoped kinds have no metadata.namespace field to select by.
	cacheOpts.ByObject[&corev1.Namespace{}] = cache.ByObject{Field: fields.Everything()}
	cacheOpts.ByObject[&v1.ClusterSessionCleanupPolicy{}] = cache.ByObject{Field: fields.Everything()}
	testMgr, err = ctrl.NewManager(managerCfg, ctrl.Options{
		Scheme:  testScheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:   cacheOpts,
		NewClient: func(cfg *rest.Config, opts client.Options) (client.Client, error) {
			c, err := client.NewWithWatch(cfg, opts)
			if err != nil {
				return nil, err
			}
			return interceptor.NewClient(c, countingWrites()), nil
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: manager: %v\n", err)
		return 1
	}
	suiteCtx, suiteCancel = context.WithCancel(context.Background())
	defer suiteCancel()
	if testReconciler, err = setup(suiteCtx, testMgr, Options{
		CleanupImage: testImage, ClusterPolicies: true,
		// Short periods so that recovery and backoff show within a test.
		ProbeInterval: 3 * time.Second, ProbeTimeout: 2 * time.Second, ProbeMinBackoff: 500 * time.Millisecond,
	}); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: setup: %v\n", err)
		return 1
	}
	managerDone := make(chan struct{})
	go func() {
		defer close(managerDone)
		if err := testMgr.Start(suiteCtx); err != nil {
			fmt.Fprintf(os.Stderr, "manager stopped: %v\n", err)
		}
	}()
	if !testMgr.GetCache().WaitForCacheSync(suiteCtx) {
		fmt.Fprintln(os.Stderr, "FAIL: cache did not sync")
		return 1
	}
	code := m.Run()
	suiteCancel()
	<-managerDone // its workers finish before the control plane stops
	return code
}

// isolatedNamespaces are left to the managers the RBAC tests start: the
// suite's manager does not see them, so it cannot do their work for them.
var isolatedNamespaces = func() []string {
	names := []string{"nsmode-a", "nsmode-b", "nsmode-c"}
	for i := 0; i < maxRBACCases; i++ {
		names = append(names, rbacCaseNamespace(i))
	}
	return names
}()

// maxRBACCases bounds the rule-removal cases, each in a namespace of its own.
const maxRBACCases = 40

func rbacCaseNamespace(i int) string { return fmt.Sprintf("rbac-case-%d", i) }

func outsideIsolatedNamespaces() fields.Selector {
	var terms []fields.Selector
	for _, ns := range isolatedNamespaces {
		terms = append(terms, fields.OneTermNotEqualSelector("metadata.namespace", ns))
	}
	return fields.AndSelectors(terms...)
}

// zapLevel keeps the manager quiet but for errors; TEST_VERBOSE=1 shows all.
func zapLevel() zapcore.Level {
	if os.Getenv("TEST_VERBOSE") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}

// countingWrites counts every write verb the manager's client sends.
func countingWrites() interceptor.Funcs {
	return interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			logWrite("create", obj)
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			logWrite("update", obj)
			return c.Update(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			logWrite("patch", obj)
			return c.Patch(ctx, obj, patch, opts...)
		},
		Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			what := fmt.Sprintf("apply %T", obj)
			if named, ok := obj.(interface {
				GetName() *string
				GetNamespace() *string
			}); ok && named.GetName() != nil && named.GetNamespace() != nil {
				what += fmt.Sprintf(" %s/%s", *named.GetNamespace(), *named.GetName())
			}
			logWrite(what, nil)
			return c.Apply(ctx, obj, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			logWrite("delete", obj)
			return c.Delete(ctx, obj, opts...)
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			logWrite(sub+" update", obj)
			return c.SubResource(sub).Update(ctx, obj, opts...)
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			logWrite(sub+" patch", obj)
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	}
}

func logWrite(verb string, obj client.Object) {
	n := writeCount.Add(1)
	what := verb
	if obj != nil {
		what = fmt.Sprintf("%s %T %s/%s", verb, obj, obj.GetNamespace(), obj.GetName())
	}
	writeLog.Store(n, what)
}

// writesSince describes the writes to namespace ns after number n (other
// tests run their own stores meanwhile).
func writesSince(n int64, ns string) []string {
	var out []string
	for i := n + 1; i <= writeCount.Load(); i++ {
		if w, ok := writeLog.Load(i); ok && (strings.Contains(w.(string), " "+ns+"/") || !strings.Contains(w.(string), "/")) {
			out = append(out, w.(string))
		}
	}
	return out
}

// restrictedManagerConfig makes a user bound to the ClusterRole that
// controller-gen generated from the controller's RBAC markers.
func restrictedManagerConfig() (*rest.Config, error) {
	data, err := os.ReadFile(filepath.Join("..", "config", "rbac", "role.yaml"))
	if err != nil {
		return nil, err
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(data, role); err != nil {
		return nil, err
	}
	ctx := context.Background()
	if err := k8sClient.Create(ctx, role); err != nil {
		return nil, fmt.Errorf("creating ClusterRole %s: %w", role.Name, err)
	}
	const user = "sessionstore-manager"
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "sessionstore-manager"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}},
	}
	if err := k8sClient.Create(ctx, binding); err != nil {
		return nil, err
	}
	authenticated, err := testEnv.AddUser(envtest.User{Name: user}, testCfg)
	if err != nil {
		return nil, err
	}
	return authenticated.Config(), nil
}
