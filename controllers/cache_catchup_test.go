package controllers

import (
	"fmt"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// TestNewStoreWritesItsStatusWithoutConflicts: a new filesystem store's
// status is written once, already saying when the first run is due (read
// from the CronJob the apply returned, not from the cache, which may not
// have it yet); never from a stale cached store, a write the API server
// rejects as a conflict and that is retried.
func TestNewStoreWritesItsStatusWithoutConflicts(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	const stores = 10
	writesBefore := writeCount.Load()
	for i := 0; i < stores; i++ {
		createStore(t, filesystemStore(ns, fmt.Sprintf("fresh-%d", i)))
	}
	for i := 0; i < stores; i++ {
		name := fmt.Sprintf("fresh-%d", i)
		g.Eventually(func(g Gomega) {
			c := condition(getStore(g, ns, name), v1.ConditionLastCleanupSucceeded)
			g.Expect(c.Message).To(HavePrefix("the first run is due"))
		}, eventually, poll).Should(Succeed())
	}
	waitIdleAfter(t, 0, 1)
	statusWrites := map[string]int{}
	for _, w := range writesSince(writesBefore, ns) {
		if strings.HasPrefix(w, "status patch ") {
			statusWrites[w[strings.LastIndex(w, "/")+1:]]++
		}
	}
	for i := 0; i < stores; i++ {
		g.Expect(statusWrites).To(HaveKeyWithValue(fmt.Sprintf("fresh-%d", i), 1))
	}
}
