package controllers

import (
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// A restarted manager's prober finds present the table its predecessor
// created. That is no news: the status keeps SchemaCreated, and the
// reconcile writes nothing.
func TestRestartedProberMakesNoStatusWrite(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	db := newPostgresDatabase(t)
	createSecret(t, ns, "pg", map[string]string{"username": "postgres", "password": "trust auth: any"})
	createStore(t, &v1.SessionStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "made"},
		Spec: v1.SessionStoreSpec{Backend: v1.BackendPostgreSQL, PostgreSQL: &v1.PostgreSQLSpec{
			Host: "127.0.0.1", Database: db, SSLMode: "disable", CredentialsSecretRef: &v1.SecretReference{Name: "pg"}}},
	})
	waitCondition(t, ns, "made", v1.ConditionSchemaReady, metav1.ConditionTrue, v1.ReasonSchemaCreated)
	waitIdleAfter(t, 0, 1)

	// What a restart leaves: a prober that knows nothing of the store.
	writesBefore, reconcilesBefore := writeCount.Load(), reconciles(t)
	key := types.NamespacedName{Namespace: ns, Name: "made"}
	testReconciler.Prober.Forget(key)
	store := getStore(g, ns, "made")
	patch := client.MergeFrom(store.DeepCopy())
	store.Annotations = map[string]string{"kubectl.kubernetes.io/restartedAt": "now"}
	g.Expect(k8sClient.Patch(ctx(), store, patch)).To(Succeed())
	g.Eventually(func() bool { return testReconciler.Prober.Latest(key) != nil }, eventually, poll).Should(BeTrue())
	waitIdleAfter(t, reconcilesBefore, 2)

	g.Expect(writesSince(writesBefore, ns)).To(BeEmpty(), "a restart rewrote the status")
	g.Expect(condition(getStore(g, ns, "made"), v1.ConditionSchemaReady).Reason).To(Equal(v1.ReasonSchemaCreated))
}
