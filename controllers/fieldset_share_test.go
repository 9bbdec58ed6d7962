package controllers

import (
	"testing"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	batchv1ac "k8s.io/client-go/applyconfigurations/batch/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

// Two stores' CronJobs and Secrets, as the cache's transform keeps them,
// share one copy of the operator's fieldset, and what Extract reads of
// them once the owner's UID is put back is what it reads of the live
// objects.
func TestCachedFieldSetsAreSharedAndExtractTheSame(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	for _, name := range []string{"one", "two"} {
		createStore(t, filesystemStore(ns, name))
		waitConfigured(t, ns, name)
	}
	live := func(obj client.Object) client.Object {
		g.Expect(k8sClient.Get(ctx(), client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		return obj
	}
	cronJobs := []*batchv1.CronJob{
		live(cronJobKey(ns, "one-cleanup")).(*batchv1.CronJob), live(cronJobKey(ns, "two-cleanup")).(*batchv1.CronJob),
	}
	secrets := []*corev1.Secret{
		live(secretKey(ns, "one-session-store")).(*corev1.Secret), live(secretKey(ns, "two-session-store")).(*corev1.Secret),
	}

	cached := func(obj client.Object) []byte {
		_, err := keepOwnManagedFields(obj)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(obj.GetManagedFields()).To(HaveLen(1))
		return obj.GetManagedFields()[0].FieldsV1.Raw
	}
	for _, pair := range [][2]client.Object{{cronJobs[0], cronJobs[1]}, {secrets[0], secrets[1]}} {
		a, b := cached(pair[0].DeepCopyObject().(client.Object)), cached(pair[1].DeepCopyObject().(client.Object))
		g.Expect(&a[0]).To(BeIdenticalTo(&b[0]), "one shared copy for both stores")
		g.Expect(string(a)).NotTo(ContainSubstring(string(pair[0].GetOwnerReferences()[0].UID)))
	}

	for _, cj := range cronJobs {
		want, err := batchv1ac.ExtractCronJob(cj, specs.FieldManager)
		g.Expect(err).NotTo(HaveOccurred())
		copied := cj.DeepCopy()
		cached(copied)
		restoreOwnerUID(copied)
		got, err := batchv1ac.ExtractCronJob(copied, specs.FieldManager)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got).To(Equal(want))
		g.Expect(got.OwnerReferences).To(HaveLen(1))
	}
	for _, secret := range secrets {
		want, err := corev1ac.ExtractSecret(secret, specs.FieldManager)
		g.Expect(err).NotTo(HaveOccurred())
		copied := secret.DeepCopy()
		cached(copied)
		restoreOwnerUID(copied)
		got, err := corev1ac.ExtractSecret(copied, specs.FieldManager)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got).To(Equal(want))
		g.Expect(got.OwnerReferences).To(HaveLen(1))
	}
}

func cronJobKey(ns, name string) *batchv1.CronJob {
	cj := &batchv1.CronJob{}
	cj.Namespace, cj.Name = ns, name
	return cj
}

func secretKey(ns, name string) *corev1.Secret {
	s := &corev1.Secret{}
	s.Namespace, s.Name = ns, name
	return s
}
