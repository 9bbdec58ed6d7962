package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

const (
	eventually = 20 * time.Second
	poll       = 50 * time.Millisecond
)

var nsCounter atomic.Int64

// newNamespace makes a namespace of the test's own, so tests do not see each
// other's objects. envtest has no namespace controller, so the namespace is
// left behind, but its SessionStores are deleted when the test ends: a store
// left pointing at a server the test stopped would otherwise keep a probe
// worker busy in every later test.
func newNamespace(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%s", nsCounter.Add(1), strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())))
	if len(name) > 60 {
		name = strings.TrimRight(name[:60], "-")
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := k8sClient.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := k8sClient.DeleteAllOf(context.Background(), &v1.SessionStore{}, client.InNamespace(name)); err != nil {
			t.Errorf("deleting the SessionStores of %s: %v", name, err)
		}
	})
	return name
}

func createSecret(t testing.TB, ns, name string, data map[string]string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data}
	if err := k8sClient.Create(context.Background(), s); err != nil {
		t.Fatalf("creating Secret %s: %v", name, err)
	}
	return s
}

func createStore(t *testing.T, store *v1.SessionStore) *v1.SessionStore {
	t.Helper()
	if err := k8sClient.Create(context.Background(), store); err != nil {
		t.Fatalf("creating SessionStore %s: %v", store.Name, err)
	}
	return store
}

func getStore(g Gomega, ns, name string) *v1.SessionStore {
	store := &v1.SessionStore{}
	g.Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, store)).To(Succeed())
	return store
}

// condition returns the condition of that type, or an empty one.
func condition(store *v1.SessionStore, condType string) metav1.Condition {
	if c := meta.FindStatusCondition(store.Status.Conditions, condType); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// waitCondition waits until the store's condition has that status and reason.
func waitCondition(t *testing.T, ns, name, condType string, status metav1.ConditionStatus, reason string) *v1.SessionStore {
	t.Helper()
	g := NewWithT(t)
	var store *v1.SessionStore
	g.Eventually(func(g Gomega) {
		store = getStore(g, ns, name)
		c := condition(store, condType)
		g.Expect(c.Status).To(Equal(status), "condition %s: %+v", condType, c)
		g.Expect(c.Reason).To(Equal(reason), "condition %s: %+v", condType, c)
	}, eventually, poll).Should(Succeed())
	return store
}

// waitConfigured waits until the operator wrote the store's Secret and
// decided on its CronJob; the store itself need not be reachable.
func waitConfigured(t *testing.T, ns, name string) *v1.SessionStore {
	t.Helper()
	g := NewWithT(t)
	var store *v1.SessionStore
	g.Eventually(func(g Gomega) {
		store = getStore(g, ns, name)
		g.Expect(condition(store, v1.ConditionConnectionSecretReady).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(condition(store, v1.ConditionCleanupScheduled).Reason).To(BeElementOf(v1.ReasonScheduled, v1.ReasonNativeExpiry, v1.ReasonSuspended))
		g.Expect(store.Status.ObservedGeneration).To(Equal(store.Generation))
	}, eventually, poll).Should(Succeed())
	return store
}

func waitReady(t *testing.T, ns, name string) *v1.SessionStore {
	t.Helper()
	return waitCondition(t, ns, name, v1.ConditionReady, metav1.ConditionTrue, v1.ReasonReady)
}

func getSecret(g Gomega, ns, name string) *corev1.Secret {
	s := &corev1.Secret{}
	g.Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, s)).To(Succeed())
	return s
}

func waitSecret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	var s *corev1.Secret
	NewWithT(t).Eventually(func(g Gomega) { s = getSecret(g, ns, name) }, eventually, poll).Should(Succeed())
	return s
}

func waitCronJob(t *testing.T, ns, name string) *batchv1.CronJob {
	t.Helper()
	cj := &batchv1.CronJob{}
	NewWithT(t).Eventually(func() error {
		return k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, cj)
	}, eventually, poll).Should(Succeed())
	return cj
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

// store builders for the tests

func postgresStore(ns, name string) *v1.SessionStore {
	return &v1.SessionStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1.SessionStoreSpec{
			Backend: v1.BackendPostgreSQL,
			PostgreSQL: &v1.PostgreSQLSpec{
				Host:                 "db.example.svc",
				Database:             "app",
				CredentialsSecretRef: &v1.SecretReference{Name: "pg-credentials"},
			},
		},
	}
}

func redisStore(ns, name string) *v1.SessionStore {
	return &v1.SessionStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1.SessionStoreSpec{
			Backend: v1.BackendRedis,
			Redis: &v1.RedisSpec{
				Address:           "redis.example.svc:6379",
				PasswordSecretRef: &v1.SecretKeySelector{Name: "redis-auth", Key: "password"},
			},
		},
	}
}

func filesystemStore(ns, name string) *v1.SessionStore {
	return &v1.SessionStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1.SessionStoreSpec{
			Backend:    v1.BackendFilesystem,
			Filesystem: &v1.FilesystemSpec{ClaimName: "sessions"},
		},
	}
}

func ctx() context.Context { return context.Background() }

var _ = client.IgnoreNotFound
