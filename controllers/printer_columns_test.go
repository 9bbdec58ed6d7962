package controllers

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// What `kubectl get` shows of both kinds: the API server's Table of each,
// from the CRDs' printer columns, names and values.
func TestPrinterColumns(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	p := createPolicy(t, "printed", v1.ClusterSessionCleanupPolicySpec{Priority: 100, Suspend: true})
	store := filesystemStore(ns, "a-store")
	store.Labels = map[string]string{policyTestLabel: p.Name}
	createStore(t, store)
	waitGovernedCronJob(t, ns, "a-store-cleanup", p.Name)

	var policyRow, storeRow map[string]any
	g.Eventually(func(g Gomega) {
		policyRow = tableRow(g, "/apis/sessionstore.dev/v1/clustersessioncleanuppolicies/"+p.Name)
		g.Expect(policyRow).To(HaveKeyWithValue("Stores", BeEquivalentTo(1)))
		storeRow = tableRow(g, "/apis/sessionstore.dev/v1/namespaces/"+ns+"/sessionstores/a-store")
		g.Expect(storeRow).To(HaveKeyWithValue("Policy", p.Name))
	}, eventually, poll).Should(Succeed())
	g.Expect(keys(policyRow)).To(Equal([]string{"Name", "Priority", "Suspended", "Window", "Stores", "Running", "Waiting", "Skipped 24h", "Age"}))
	g.Expect(policyRow).To(And(HaveKeyWithValue("Priority", BeEquivalentTo(100)), HaveKeyWithValue("Suspended", true),
		HaveKeyWithValue("Window", v1.WindowStateSuspended), HaveKeyWithValue("Running", BeEquivalentTo(0))))
	g.Expect(keys(storeRow)).To(Equal([]string{"Name", "Backend", "Ready", "Reachable", "Last Cleanup", "Deleted", "Schedule",
		"Policy", "Server", "Window", "Age"}))
	g.Expect(storeRow).To(And(HaveKeyWithValue("Backend", "filesystem"), HaveKeyWithValue("Server", "pvc:"+ns+"/sessions"),
		HaveKeyWithValue("Window", v1.WindowStateSuspended)))
}

// tableRow GETs path as kubectl does (a meta.k8s.io Table) and returns its
// one row by column name, the columns' order kept in an "order" entry.
func tableRow(g Gomega, path string) map[string]any {
	httpClient, err := rest.HTTPClientFor(testCfg)
	g.Expect(err).NotTo(HaveOccurred())
	req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(testCfg.Host, "/")+path, nil)
	g.Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := httpClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK), req.URL.String()+": "+string(body))
	var table metav1.Table
	g.Expect(json.Unmarshal(body, &table)).To(Succeed())
	g.Expect(table.Rows).To(HaveLen(1))
	row := map[string]any{}
	var order []any
	for i, col := range table.ColumnDefinitions {
		row[col.Name] = table.Rows[0].Cells[i]
		order = append(order, col.Name)
	}
	row[orderKey] = order
	return row
}

const orderKey = "\x00order"

func keys(row map[string]any) []string {
	var out []string
	for _, k := range row[orderKey].([]any) {
		out = append(out, fmt.Sprint(k))
	}
	return out
}
