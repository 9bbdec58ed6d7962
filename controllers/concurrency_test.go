package controllers

import (
	"testing"

	. "github.com/onsi/gomega"
)

// Stores are reconciled several at once: each reconcile mostly waits on the
// API server, and one at a time made 10,000 new stores take minutes.
func TestStoresAreReconciledSeveralAtOnce(t *testing.T) {
	// The gauge is set once the controller has started.
	NewWithT(t).Eventually(func() float64 {
		return controllerMetric(t, "controller_runtime_max_concurrent_reconciles", "controller", "sessionstore")
	}, eventually, poll).Should(Equal(float64(DefaultMaxConcurrentReconciles)))
}
