package chart

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The e2e and the demo install config/default with the image of the commit
// they built, through hack/config-with-image.sh. A short commit of digits
// with one "e" (33759e3) is a number in YAML, and kustomize refused the
// whole install until the tag was written quoted.
func TestConfigWithImageTakesAnyCommitAsTag(t *testing.T) {
	for _, tag := range []string{"33759e3", "1234567", "0012345", "v1.2.3-4-gabcdef0-dirty", "latest"} {
		t.Run(tag, func(t *testing.T) {
			image := "ghcr.io/sessionstore/sessionstore-operator:" + tag
			out, err := exec.Command("../../hack/config-with-image.sh", image).Output()
			if err != nil {
				t.Fatalf("hack/config-with-image.sh: %v", err)
			}
			dir := strings.TrimSpace(string(out))
			t.Cleanup(func() { _ = os.RemoveAll(dir) })
			objs := render(t, kubectl(t), "kustomize", filepath.Join(dir, "config", "default"))
			container := managerContainer(t, objs)
			env := map[string]string{}
			for _, e := range container["env"].([]any) {
				e := e.(map[string]any)
				if v, ok := e["value"].(string); ok {
					env[e["name"].(string)] = v
				}
			}
			if container["image"] != image || env["OPERATOR_IMAGE"] != image {
				t.Fatalf("manager image %v, OPERATOR_IMAGE %q; want both %s", container["image"], env["OPERATOR_IMAGE"], image)
			}
		})
	}
}

func managerContainer(t *testing.T, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		if len(containers) == 1 {
			return containers[0].(map[string]any)
		}
	}
	t.Fatal("no Deployment with one container in config/default")
	return nil
}
