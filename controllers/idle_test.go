package controllers

import (
	"testing"

	. "github.com/onsi/gomega"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// controllerMetric sums a controller-runtime metric's series whose label
// key has value (the controller's name).
func controllerMetric(t *testing.T, metric, key, value string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != metric {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelValue(m.GetLabel(), key) != value {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// reconciles counts the main controller's finished reconciles.
func reconciles(t *testing.T) float64 {
	return controllerMetric(t, "controller_runtime_reconcile_total", "controller", "sessionstore")
}

// waitIdleAfter waits until the main controller has finished at least n
// reconciles since it had finished before of them, and then stays idle (no
// reconcile running, none finished) from one poll to the next: what a test
// that counts writes must wait for, instead of sleeping. (Queue depth would
// say more, but the RBAC tests leave managers whose caches never synced,
// whose queues of the same name never drain.)
func waitIdleAfter(t *testing.T, before float64, n int) {
	t.Helper()
	last := -1.0
	NewWithT(t).Eventually(func(g Gomega) {
		done := reconciles(t)
		stable := done == last
		last = done
		g.Expect(done - before).To(BeNumerically(">=", n))
		g.Expect(controllerMetric(t, "controller_runtime_active_workers", "controller", "sessionstore")).To(BeZero())
		g.Expect(stable).To(BeTrue(), "reconciles still finishing")
	}, eventually, 4*poll).Should(Succeed())
}
