package controllers

import (
	"context"
	"fmt"
	"reflect"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

// applyIfDrifted server-side applies desired unless existing already holds
// every field desired sets, so a reconcile with nothing to do writes nothing.
// Fields the API server defaults, and fields other managers (a GitOps tool,
// a mutating webhook) add, are not drift: only what desired sets is compared,
// and server-side apply leaves the rest to their owners.
func applyIfDrifted(ctx context.Context, c client.Client, desired, existing client.Object) (applied bool, err error) {
	want, err := toApplyMap(desired)
	if err != nil {
		return false, err
	}
	if existing != nil && !isNil(existing) {
		have, err := runtime.DefaultUnstructuredConverter.ToUnstructured(existing)
		if err != nil {
			return false, fmt.Errorf("converting existing %T: %w", existing, err)
		}
		if containsFields(have, want) {
			return false, nil
		}
	}
	u := &unstructured.Unstructured{Object: want}
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner(specs.FieldManager), client.ForceOwnership); err != nil {
		return false, err
	}
	return true, nil
}

// toApplyMap turns a built object into an apply configuration: the fields it
// sets, without the zero values the typed structs would otherwise send.
func toApplyMap(obj client.Object) (map[string]any, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("converting desired %T: %w", obj, err)
	}
	delete(m, "status")
	if meta, ok := m["metadata"].(map[string]any); ok {
		delete(meta, "creationTimestamp")
	}
	pruneEmpty(m)
	return m, nil
}

// pruneEmpty drops nil values and empty maps (such as creationTimestamp: null
// inside templates, or resources: {}), which an apply would otherwise claim.
func pruneEmpty(m map[string]any) {
	for k, v := range m {
		switch val := v.(type) {
		case nil:
			delete(m, k)
		case map[string]any:
			pruneEmpty(val)
			if len(val) == 0 {
				delete(m, k)
			}
		case []any:
			for _, item := range val {
				if im, ok := item.(map[string]any); ok {
					pruneEmpty(im)
				}
			}
		}
	}
}

// containsFields reports whether have holds every field of want with the same
// value. Lists must match in length, element by element.
func containsFields(have, want any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return false
		}
		for k, wv := range w {
			hv, present := h[k]
			if !present || !containsFields(hv, wv) {
				return false
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return false
		}
		for i := range w {
			if !containsFields(h[i], w[i]) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(normalizeNumber(have), normalizeNumber(want))
	}
}

// normalizeNumber lets int32 and int64 from different conversions compare equal.
func normalizeNumber(v any) any {
	switch n := v.(type) {
	case int:
		return int64(n)
	case int32:
		return int64(n)
	case float64:
		if n == float64(int64(n)) {
			return int64(n)
		}
	}
	return v
}

func isNil(obj client.Object) bool {
	v := reflect.ValueOf(obj)
	return v.Kind() == reflect.Pointer && v.IsNil()
}
