package controllers

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// policyFromYAML builds a ClusterSessionCleanupPolicy as a user writes one.
func policyFromYAML(t *testing.T, name, specYAML string) *unstructured.Unstructured {
	t.Helper()
	spec := map[string]any{}
	if err := yaml.Unmarshal([]byte(specYAML), &spec); err != nil {
		t.Fatalf("bad test YAML: %v", err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion("sessionstore.dev/v1")
	u.SetKind("ClusterSessionCleanupPolicy")
	u.SetName(name)
	return u
}

func TestPolicyAdmissionRejectsBadInput(t *testing.T) {
	cases := []struct {
		name, spec string
		wantMsg    []string
	}{
		{"default schedule not a cron", "defaults: {schedule: 'every hour'}", []string{"spec.defaults.schedule must be a 5-field cron"}},
		{"H in the day field", "defaults: {schedule: 'H H H * *'}", []string{"spec.defaults.schedule", "H allowed in the minute and hour fields"}},
		{"minute out of range", "defaults: {schedule: '61 * * * *'}", []string{"spec.defaults.schedule"}},
		{"window schedule not a cron", "windows: [{kind: Allow, schedule: 'nightly', duration: 4h}]", []string{"spec.windows[0].schedule", "5-field cron"}},
		{"window minute and hour out of range", "windows: [{kind: Allow, schedule: '61 25 * * *', duration: 4h}]", []string{"spec.windows[0].schedule", "each in range"}},
		{"window day of week out of range", "windows: [{kind: Deny, schedule: '0 1 * * 9', duration: 4h}]", []string{"spec.windows[0].schedule", "each in range"}},
		{"window duration not a duration", "windows: [{kind: Deny, schedule: '0 1 * * *', duration: 'four hours'}]", []string{"spec.windows[0].duration"}},
		{"window duration under a minute", "windows: [{kind: Deny, schedule: '0 1 * * *', duration: 30s}]", []string{"spec.windows[0].duration: Invalid value", "must be a duration of at least 1m"}},
		{"window kind unknown", "windows: [{kind: Maybe, schedule: '0 1 * * *', duration: 1h}]", []string{"spec.windows[0].kind", "Unsupported value"}},
		{"time zone unknown", "timeZone: Mars/Olympus", []string{"spec.timeZone"}},
		{"maxPerServer 0", "concurrency: {maxPerServer: 0}", []string{"spec.concurrency.maxPerServer must be at least 1"}},
		{"maxTotal negative", "concurrency: {maxTotal: -3}", []string{"spec.concurrency.maxTotal must be at least 1"}},
		{"starting deadline 0", "startingDeadlineSeconds: 0", []string{"spec.startingDeadlineSeconds"}},
		{"backend unknown", "selector: {backends: [dynamodb]}", []string{"spec.selector.backends[0]", "Unsupported value"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := k8sClient.Create(ctx(), policyFromYAML(t, fmt.Sprintf("bad-policy-%d", i), tc.spec))
			g := NewWithT(t)
			g.Expect(err).To(HaveOccurred(), "admission accepted %s", tc.name)
			for _, want := range tc.wantMsg {
				g.Expect(err.Error()).To(ContainSubstring(want))
			}
		})
	}
	err := k8sClient.Create(ctx(), policyFromYAML(t, strings.Repeat("p", 64), ""))
	NewWithT(t).Expect(err).To(MatchError(ContainSubstring("metadata.name must be at most 63")))
}

func TestPolicyAdmissionAcceptsTheIssueExample(t *testing.T) {
	g := NewWithT(t)
	p := policyFromYAML(t, "admission-example", `
priority: 100
selector:
  namespaceSelector: {matchLabels: {team: shop}}
  storeSelector: {matchLabels: {tier: web}}
  backends: [postgresql]
suspend: false
timeZone: Europe/Paris
defaults:
  schedule: "H * * * *"
  activeDeadlineSeconds: 900
  resources: {limits: {memory: 128Mi}}
windows:
- {kind: Allow, schedule: "0 1 * * *", duration: 4h}
- {kind: Deny,  schedule: "0 12 24 12 *", duration: 48h}
concurrency:
  maxPerServer: 2
  maxTotal: 20
`)
	g.Expect(k8sClient.Create(ctx(), p)).To(Succeed())
	t.Cleanup(func() { _ = k8sClient.Delete(ctx(), p) })
	got := getPolicy(g, "admission-example")
	g.Expect(got.Spec.StartingDeadlineSeconds).To(BeEquivalentTo(600), "defaulted")
	for _, s := range []string{"H H * * *", "30 H * * 1-5", "*/15 * * * *"} {
		q := policyFromYAML(t, "admission-h-"+strings.NewReplacer(" ", "", "*", "x", "/", "s").Replace(strings.ToLower(s)), "defaults: {schedule: '"+s+"'}")
		g.Expect(k8sClient.Create(ctx(), q)).To(Succeed(), "schedule %q", s)
		_ = k8sClient.Delete(ctx(), q)
	}
}

// The sample the README points platform teams at is admitted as written.
func TestPolicyAdmissionAcceptsTheSample(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "config", "samples", "cleanup-policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(data, &u.Object); err != nil {
		t.Fatal(err)
	}
	u.SetName("sample-shared-postgres")
	NewWithT(t).Expect(k8sClient.Create(ctx(), u)).To(Succeed())
	t.Cleanup(func() { _ = k8sClient.Delete(ctx(), u) })
}
