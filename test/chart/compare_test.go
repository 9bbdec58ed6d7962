package chart

import (
	"fmt"
	"reflect"
	"sort"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func key(o *unstructured.Unstructured) string {
	return fmt.Sprintf("%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
}

// compare checks that the chart makes the same objects as config/, with the
// same content where it matters: rules, bindings, the Pod template's spec,
// the Service's ports and the CRD. Labels may differ (Helm adds its own),
// and the Namespace is the user's, made with `--create-namespace` or before.
func compare(t *testing.T, fromConfig, fromChart []*unstructured.Unstructured) {
	t.Helper()
	chart := map[string]*unstructured.Unstructured{}
	for _, o := range fromChart {
		chart[key(o)] = o
	}
	var missing []string
	for _, want := range fromConfig {
		if want.GetKind() == "Namespace" {
			continue
		}
		got, ok := chart[key(want)]
		if !ok {
			missing = append(missing, key(want))
			continue
		}
		delete(chart, key(want))
		sortEnv(want)
		sortEnv(got)
		for _, field := range comparedFields[want.GetKind()] {
			w, _, _ := unstructured.NestedFieldNoCopy(want.Object, field...)
			g, _, _ := unstructured.NestedFieldNoCopy(got.Object, field...)
			if !reflect.DeepEqual(w, g) {
				t.Errorf("%s: %v differs\nconfig: %.2000v\nchart:  %.2000v", key(want), field, w, g)
			}
		}
	}
	var extra []string
	for k := range chart {
		extra = append(extra, k)
	}
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("config/ makes objects the chart does not: %v\nthe chart makes objects config/ does not: %v", missing, extra)
	}
}

// sortEnv orders a Deployment's env by name: kustomize's patches move the
// variables they set, and order carries no meaning here.
func sortEnv(o *unstructured.Unstructured) {
	containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
	for _, c := range containers {
		container := c.(map[string]any)
		env, _ := container["env"].([]any)
		sort.Slice(env, func(i, j int) bool {
			return fmt.Sprint(env[i].(map[string]any)["name"]) < fmt.Sprint(env[j].(map[string]any)["name"])
		})
	}
	if containers != nil {
		_ = unstructured.SetNestedSlice(o.Object, containers, "spec", "template", "spec", "containers")
	}
}

var comparedFields = map[string][][]string{
	"ClusterRole":              {{"rules"}, {"metadata", "labels", "rbac.authorization.k8s.io/aggregate-to-edit"}, {"metadata", "labels", "rbac.authorization.k8s.io/aggregate-to-view"}},
	"Role":                     {{"rules"}},
	"ClusterRoleBinding":       {{"roleRef"}, {"subjects"}},
	"RoleBinding":              {{"roleRef"}, {"subjects"}},
	"Deployment":               {{"spec", "replicas"}, {"spec", "template", "spec"}},
	"Service":                  {{"spec", "ports"}},
	"ServiceAccount":           {},
	"CustomResourceDefinition": {{"spec"}},
}
