package controllers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// renameConnectionSecret sets spec.connectionSecretName, and lets change
// alter the spec further in the same patch.
func renameConnectionSecret(t *testing.T, ns, name, newName string, change func(*v1.SessionStore)) {
	t.Helper()
	g := NewWithT(t)
	store := getStore(g, ns, name)
	patch := client.MergeFrom(store.DeepCopy())
	store.Spec.ConnectionSecretName = newName
	if change != nil {
		change(store)
	}
	g.Expect(k8sClient.Patch(ctx(), store, patch)).To(Succeed())
}

func cronJobSecretName(g Gomega, ns, name string) string {
	cj := &batchv1.CronJob{}
	g.Expect(k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: name}, cj)).To(Succeed())
	return cj.Spec.JobTemplate.Spec.Template.Spec.Containers[0].EnvFrom[0].SecretRef.Name
}

// expectSecretKept checks for a while that the Secret is still the same one.
func expectSecretKept(t *testing.T, secret *corev1.Secret) {
	t.Helper()
	NewWithT(t).Consistently(func(g Gomega) {
		g.Expect(getSecret(g, secret.Namespace, secret.Name).UID).To(Equal(secret.UID))
	}, 2*time.Second, 100*time.Millisecond).Should(Succeed())
}

func TestRenameWritesNewSecretThenDeletesOld(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createStore(t, filesystemStore(ns, "app"))
	waitConfigured(t, ns, "app")
	waitSecret(t, ns, "app-session-store")

	mark := writeCount.Load()
	renameConnectionSecret(t, ns, "app", "app-settings", nil)
	g.Eventually(func(g Gomega) {
		err := k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "app-session-store"}, &corev1.Secret{})
		g.Expect(isNotFound(err)).To(BeTrue(), "old Secret: %v", err)
		g.Expect(cronJobSecretName(g, ns, "app-cleanup")).To(Equal("app-settings"))
	}, eventually, poll).Should(Succeed())
	g.Expect(stringData(getSecret(g, ns, "app-settings"))).To(HaveKeyWithValue("SESSION_STORE_BACKEND", "filesystem"))

	writes := writesSince(mark, ns)
	applied := indexOf(writes, fmt.Sprintf("apply *v1.SecretApplyConfiguration %s/app-settings", ns))
	deleted := indexOf(writes, fmt.Sprintf("delete *v1.Secret %s/app-session-store", ns))
	g.Expect(applied).To(BeNumerically(">=", 0), "writes: %v", writes)
	g.Expect(deleted).To(BeNumerically(">", applied), "the old Secret goes only after the new one is written: %v", writes)
	store := waitConfigured(t, ns, "app")
	g.Expect(store.Status.ConnectionSecretName).To(Equal("app-settings"))
}

func TestRenameOntoForeignSecretKeepsOld(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createStore(t, filesystemStore(ns, "app"))
	waitConfigured(t, ns, "app")
	old := waitSecret(t, ns, "app-session-store")
	foreign := createSecret(t, ns, "shared-settings", map[string]string{"owner": "another team"})

	renameConnectionSecret(t, ns, "app", "shared-settings", nil)
	store := waitCondition(t, ns, "app", v1.ConditionConnectionSecretReady, metav1.ConditionFalse, v1.ReasonSecretConflict)
	g.Expect(condition(store, v1.ConditionConnectionSecretReady).Message).
		To(ContainSubstring("the previous Secret app-session-store is kept until then"))
	expectSecretKept(t, old)
	g.Expect(cronJobSecretName(g, ns, "app-cleanup")).To(Equal("app-session-store"), "the CronJob's pods still load the kept Secret")
	g.Expect(stringData(getSecret(g, ns, "shared-settings"))).To(Equal(map[string]string{"owner": "another team"}))

	// The other team's Secret goes: the new one is written, then the old deleted.
	g.Expect(k8sClient.Delete(ctx(), foreign)).To(Succeed())
	waitConfigured(t, ns, "app")
	g.Eventually(func(g Gomega) {
		err := k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "app-session-store"}, &corev1.Secret{})
		g.Expect(isNotFound(err)).To(BeTrue(), "old Secret: %v", err)
	}, eventually, poll).Should(Succeed())
}

func TestRenameWithMissingCredentialsKeepsOld(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createSecret(t, ns, "pg-credentials", map[string]string{"username": "app", "password": "pw"})
	createStore(t, postgresStore(ns, "shop"))
	waitConfigured(t, ns, "shop")
	old := waitSecret(t, ns, "shop-session-store")

	// A rename and a move to credentials that are not there yet.
	renameConnectionSecret(t, ns, "shop", "shop-db", func(s *v1.SessionStore) {
		s.Spec.PostgreSQL.CredentialsSecretRef.Name = "pg-credentials-v2"
	})
	store := waitCondition(t, ns, "shop", v1.ConditionConnectionSecretReady, metav1.ConditionFalse, v1.ReasonSecretNotFound)
	message := condition(store, v1.ConditionConnectionSecretReady).Message
	g.Expect(message).To(ContainSubstring("pg-credentials-v2"))
	g.Expect(message).To(ContainSubstring("the previous Secret shop-session-store is kept until then"))
	expectSecretKept(t, old)
	g.Expect(stringData(getSecret(g, ns, "shop-session-store"))["SESSION_STORE_URL"]).To(ContainSubstring(":pw@"))
	err := k8sClient.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "shop-db"}, &corev1.Secret{})
	g.Expect(isNotFound(err)).To(BeTrue(), "no new Secret without credentials: %v", err)
}

func indexOf(list []string, item string) int {
	for i, s := range list {
		if strings.TrimSpace(s) == item {
			return i
		}
	}
	return -1
}
