package controllers

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

// applyIfDrifted server-side applies want unless owned, what the operator's
// field manager owns of the live object (client-go's Extract functions),
// already equals it. Fields other managers own (a GitOps tool's label, a
// webhook's env var) are not in owned and not in want, so they never count
// as drift and an apply never removes them; a field of ours that someone
// changed moved to their manager, so it is missing from owned and is put
// back. owned is nil when there is no live object to compare with.
func applyIfDrifted(ctx context.Context, c client.Client, want, owned runtime.ApplyConfiguration) (applied bool, err error) {
	if owned != nil && equality.Semantic.DeepEqual(want, owned) {
		return false, nil
	}
	if err := c.Apply(ctx, want, client.FieldOwner(specs.FieldManager), client.ForceOwnership); err != nil {
		return false, err
	}
	return true, nil
}

// toApplyConfiguration fills into, a typed apply configuration, with the
// fields the built object obj sets. The typed structs would send their
// zero values (creationTimestamp: null, resources: {}), which an apply would
// claim and Extract never returns, so those are dropped first.
func toApplyConfiguration(obj client.Object, into runtime.ApplyConfiguration) error {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return fmt.Errorf("converting desired %T: %w", obj, err)
	}
	delete(m, "status")
	pruneEmpty(m)
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding desired %T: %w", obj, err)
	}
	if err := json.Unmarshal(data, into); err != nil {
		return fmt.Errorf("decoding desired %T into %T: %w", obj, into, err)
	}
	return nil
}

// pruneEmpty drops nil values and empty maps, at any depth.
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
