package controllers

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
)

// The sample's pod template (pod affinity to the app, for a ReadWriteOnce
// claim) passes admission, and the API server takes the CronJob built from it.
func TestCleanupPodTemplateReachesTheCronJob(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	g.Expect(k8sClient.Create(ctx(), storeFromYAML(t, ns, "rwo", `
backend: filesystem
filesystem: {claimName: sessions-rwo}
cleanup:
  podTemplate:
    metadata: {labels: {team: shop}}
    affinity:
      podAffinity:
        requiredDuringSchedulingIgnoredDuringExecution:
        - labelSelector: {matchLabels: {app: web}}
          topologyKey: kubernetes.io/hostname
    tolerations: [{key: dedicated, operator: Equal, value: web, effect: NoSchedule}]
    serviceAccountName: cleanup
    priorityClassName: low
`))).To(Succeed())
	cj := waitCronJob(t, ns, "rwo-cleanup")
	tmpl := cj.Spec.JobTemplate.Spec.Template
	g.Expect(tmpl.Labels).To(HaveKeyWithValue("team", "shop"))
	terms := tmpl.Spec.Affinity.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	g.Expect(terms).To(HaveLen(1))
	g.Expect(terms[0].LabelSelector.MatchLabels).To(HaveKeyWithValue("app", "web"))
	g.Expect(tmpl.Spec.Tolerations).To(ConsistOf(corev1.Toleration{Key: "dedicated", Operator: "Equal", Value: "web", Effect: "NoSchedule"}))
	g.Expect(tmpl.Spec.ServiceAccountName).To(Equal("cleanup"))
	g.Expect(tmpl.Spec.PriorityClassName).To(Equal("low"))
	g.Expect(*tmpl.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
	waitReady(t, ns, "rwo")
}
