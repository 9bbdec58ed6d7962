package metricsauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/sessionstore/sessionstore-operator/internal/testservers"
)

// The tests run against a real kube-apiserver (envtest, with RBAC and
// service-account tokens), so every TokenReview and SubjectAccessReview is
// the API server's own answer.
var (
	testEnv    *envtest.Environment
	testCfg    *rest.Config
	testClient client.Client
)

func TestMain(m *testing.M) {
	env, cfg, err := testservers.StartEnvtest(func() *envtest.Environment { return &envtest.Environment{} })
	if err != nil {
		fmt.Fprintf(os.Stderr, "metricsauth tests need kube-apiserver and etcd (KUBEBUILDER_ASSETS, `make tools`): %v\n", err)
		os.Exit(1)
	}
	testEnv, testCfg = env, cfg
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if testClient, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		panic(err)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

// serviceAccountToken makes a service account in default and returns a
// token the API server issued for it.
func serviceAccountToken(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
	if err := testClient.Create(ctx, sa); err != nil {
		t.Fatal(err)
	}
	tr := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptrTo[int64](3600)}}
	if err := testClient.SubResource("token").Create(ctx, sa, tr); err != nil {
		t.Fatalf("token for %s: %v", name, err)
	}
	return tr.Status.Token
}

func ptrTo[T any](v T) *T { return &v }

// grantMetrics binds the service account to a ClusterRole that may get
// /metrics only, as config/rbac/metrics_reader_role.yaml does; it returns
// the binding.
func grantMetrics(t *testing.T, sa string) *rbacv1.ClusterRoleBinding {
	t.Helper()
	ctx := context.Background()
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: sa + "-metrics-reader"},
		Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: sa + "-metrics-reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "default", Name: sa}}}
	for _, obj := range []client.Object{role, binding} {
		if err := testClient.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	waitAccess(t, sa, true)
	return binding
}

// waitAccess waits until the API server's RBAC authorizer, which reads
// bindings from its own cache, answers allowed for the service account's
// get on /metrics.
func waitAccess(t *testing.T, sa string, allowed bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User:                  "system:serviceaccount:default:" + sa,
			Groups:                []string{"system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"},
			NonResourceAttributes: &authzv1.NonResourceAttributes{Path: "/metrics", Verb: "get"}}}
		if err := testClient.Create(context.Background(), sar); err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed == allowed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("RBAC still answers allowed=%v for %s", sar.Status.Allowed, sa)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// countingClient is the real client, counting the reviews it creates and
// failing them while fail is set.
func countingClient(t *testing.T, reviews *atomic.Int32, fail *atomic.Bool) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.NewWithWatch(testCfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return interceptor.NewClient(c, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			reviews.Add(1)
			if fail.Load() {
				return errors.New("the API server could not be reached")
			}
			return c.Create(ctx, obj, opts...)
		},
	})
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// served sends one request through the filter and says what it answered
// and whether the metrics handler ran.
func served(t *testing.T, h http.Handler, method, path, authorization string) (int, bool) {
	t.Helper()
	var reached bool
	req := httptest.NewRequest(method, path, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req.WithContext(context.WithValue(req.Context(), reachedKey{}, &reached)))
	return rec.Code, reached
}

type reachedKey struct{}

func metricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*r.Context().Value(reachedKey{}).(*bool) = true
		_, _ = w.Write([]byte("sessionstore_ready 1\n"))
	})
}

func newHandler(t *testing.T, c client.Client, clock *fakeClock) http.Handler {
	t.Helper()
	h, err := NewFilter(c, clock.Now)(logr.Discard(), metricsHandler())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestOnlyAGrantedServiceAccountGetsTheMetrics(t *testing.T) {
	scraper := serviceAccountToken(t, "scraper")
	stranger := serviceAccountToken(t, "stranger")
	grantMetrics(t, "scraper")
	filter, err := FilterProvider(testCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := filter(logr.Discard(), metricsHandler())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, path, authorization string
		want                              int
	}{
		{"no token", http.MethodGet, "/metrics", "", http.StatusUnauthorized},
		{"empty bearer", http.MethodGet, "/metrics", "Bearer ", http.StatusUnauthorized},
		{"basic auth", http.MethodGet, "/metrics", "Basic c2NyYXBlcjpwdw==", http.StatusUnauthorized},
		{"a token the API server never issued", http.MethodGet, "/metrics", "Bearer not-a-token", http.StatusUnauthorized},
		{"a service account without the role", http.MethodGet, "/metrics", "Bearer " + stranger, http.StatusForbidden},
		{"the granted service account", http.MethodGet, "/metrics", "Bearer " + scraper, http.StatusOK},
		{"lower-case scheme", http.MethodGet, "/metrics", "bearer " + scraper, http.StatusOK},
		{"another path", http.MethodGet, "/debug/pprof/", "Bearer " + scraper, http.StatusForbidden},
		{"another verb", http.MethodPost, "/metrics", "Bearer " + scraper, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, reached := served(t, h, tc.method, tc.path, tc.authorization)
			if code != tc.want || reached != (tc.want == http.StatusOK) {
				t.Errorf("got %d (metrics served: %v), want %d", code, reached, tc.want)
			}
		})
	}
}

// A decision is reused for a while, then asked again: a revoked binding
// shuts the scraper out once its allowance ends, and a failed review is
// never reused.
func TestDecisionsAreReusedUntilTheyEnd(t *testing.T) {
	token := serviceAccountToken(t, "cached")
	binding := grantMetrics(t, "cached")
	var reviews atomic.Int32
	var fail atomic.Bool
	clock := &fakeClock{now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	h := newHandler(t, countingClient(t, &reviews, &fail), clock)
	expect := func(step string, want int, wantReviews int32) {
		t.Helper()
		code, _ := served(t, h, http.MethodGet, "/metrics", "Bearer "+token)
		if code != want || reviews.Load() != wantReviews {
			t.Fatalf("%s: got %d after %d reviews, want %d after %d", step, code, reviews.Load(), want, wantReviews)
		}
	}
	expect("first scrape", http.StatusOK, 2)
	clock.Step(allowedFor - time.Second)
	expect("within the allowance", http.StatusOK, 2)
	if err := testClient.Delete(context.Background(), binding); err != nil {
		t.Fatal(err)
	}
	waitAccess(t, "cached", false)
	expect("revoked, still within the allowance", http.StatusOK, 2)
	clock.Step(time.Second)
	expect("revoked, allowance over", http.StatusForbidden, 4)
	clock.Step(deniedFor - time.Second)
	expect("within the denial", http.StatusForbidden, 4)
	clock.Step(time.Second)
	fail.Store(true)
	expect("the API server unreachable", http.StatusInternalServerError, 5)
	fail.Store(false)
	expect("reachable again: asked again, not the failure reused", http.StatusForbidden, 7)
}

// The cache holds at most maxDecisions entries, whatever the tokens sent.
func TestDecisionCacheIsBounded(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	g := &guard{now: clock.Now, decisions: map[decisionKey]decision{}}
	for i := range 3 * maxDecisions {
		g.remember(decisionKey{path: fmt.Sprint(i)}, http.StatusUnauthorized)
	}
	if n := len(g.decisions); n > maxDecisions || n == 0 {
		t.Fatalf("%d decisions held, want 1..%d", n, maxDecisions)
	}
}

// An operator whose ServiceAccount lacks the metrics-auth role (a missing
// ClusterRoleBinding): every scrape is refused with 500, never served,
// asked again each time, and what is logged holds no token.
func TestAManagerWithoutTheReviewPermissionServesNothing(t *testing.T) {
	token := serviceAccountToken(t, "unreviewed")
	grantMetrics(t, "unreviewed")
	user, err := testEnv.AddUser(envtest.User{Name: "operator-without-metrics-auth"}, testCfg)
	if err != nil {
		t.Fatal(err)
	}
	filter, err := FilterProvider(user.Config(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	log := funcr.New(func(prefix, args string) { logged.WriteString(prefix + args + "\n") }, funcr.Options{})
	h, err := filter(log, metricsHandler())
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if code, reached := served(t, h, http.MethodGet, "/metrics", "Bearer "+token); code != http.StatusInternalServerError || reached {
			t.Fatalf("got %d (metrics served: %v), want 500", code, reached)
		}
	}
	if n := strings.Count(logged.String(), "forbidden"); n != 2 {
		t.Errorf("want the API server's refusal logged once per scrape, got %d:\n%s", n, logged.String())
	}
	if strings.Contains(logged.String(), token) {
		t.Error("the scraper's token is in the log")
	}
}
