// Package chart keeps charts/sessionstore-operator from drifting apart from
// config/: the chart's copies of the CRD and RBAC rules are config's, and
// the chart rendered with its defaults makes what `kubectl kustomize`
// makes of config/default (and, in namespaced mode, of config/namespaced).
package chart

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

const chartDir = "../../charts/sessionstore-operator"

func TestChartCopiesAreConfigs(t *testing.T) {
	pairs := map[string]string{}
	crds, err := filepath.Glob("../../config/crd/bases/*.yaml")
	if err != nil || len(crds) == 0 {
		t.Fatalf("no CRDs in config/crd/bases (%v)", err)
	}
	for _, crd := range crds {
		pairs["crds/"+filepath.Base(crd)] = "crd/bases/" + filepath.Base(crd)
	}
	chartCRDs, _ := filepath.Glob(filepath.Join(chartDir, "crds", "*.yaml"))
	if len(chartCRDs) != len(crds) {
		t.Errorf("the chart has %d CRDs, config/crd/bases %d: run make manifests", len(chartCRDs), len(crds))
	}
	for _, f := range []string{"role.yaml", "leader_election_role.yaml", "metrics_auth_role.yaml",
		"metrics_reader_role.yaml", "sessionstore_editor_role.yaml", "sessionstore_viewer_role.yaml"} {
		pairs["files/"+f] = "rbac/" + f
	}
	for chartFile, configFile := range pairs {
		got, err := os.ReadFile(filepath.Join(chartDir, chartFile))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join("../../config", configFile))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("chart %s differs from config/%s: run make manifests", chartFile, configFile)
		}
	}
}

func TestChartRendersConfigDefault(t *testing.T) {
	compare(t, render(t, kubectl(t), "kustomize", "../../config/default"), helmTemplate(t))
}

func TestChartNamespacedRendersConfigNamespaced(t *testing.T) {
	compare(t, render(t, kubectl(t), "kustomize", "../../config/namespaced"),
		helmTemplate(t, "--set", "rbac.mode=namespaced", "--set", "watchNamespaces={web,shop}"))
}

func TestChartLints(t *testing.T) {
	out, err := exec.Command(helm(t), "lint", "--strict", chartDir).CombinedOutput()
	if err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
}

// helm and kubectl (for its kustomize) are the ones hack/install-node.sh
// builds, so the check does not depend on what else the machine has.
func helm(t *testing.T) string { return built(t, "../../bin/node/helm") }

func kubectl(t *testing.T) string { return built(t, "../../bin/k8s/kubectl") }

func built(t *testing.T, path string) string {
	t.Helper()
	bin, _ := filepath.Abs(path)
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no %s: run hack/install-node.sh (make test does)", bin)
	}
	return bin
}

// helmTemplate renders the chart as release "sessionstore" in the namespace
// config/default uses, with config's image, so names and values line up.
func helmTemplate(t *testing.T, set ...string) []*unstructured.Unstructured {
	args := append([]string{"template", "sessionstore", chartDir, "--namespace", "sessionstore-system",
		"--include-crds", "--set", "image.tag=latest"}, set...)
	return render(t, helm(t), args...)
}

func render(t *testing.T, command string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := exec.Command(command, args...).Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %s: %v\n%s", command, strings.Join(args, " "), err, stderr)
	}
	var objs []*unstructured.Unstructured
	for _, doc := range strings.Split(string(out), "\n---") {
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			t.Fatalf("%s: %v\n%s", command, err, doc)
		}
		if len(obj.Object) > 0 {
			objs = append(objs, obj)
		}
	}
	return objs
}
