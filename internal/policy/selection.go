package policy

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// IsDefault reports whether p carries the default-policy annotation.
func IsDefault(p *v1.ClusterSessionCleanupPolicy) bool {
	return p.Annotations[v1.DefaultPolicyAnnotation] == "true"
}

// Matches reports whether p's selector selects store, whose namespace has
// nsLabels. An unreadable label selector selects nothing.
func Matches(p *v1.ClusterSessionCleanupPolicy, store *v1.SessionStore, nsLabels map[string]string) bool {
	sel := p.Spec.Selector
	if len(sel.Backends) > 0 && !slices.Contains(sel.Backends, store.Spec.Backend) {
		return false
	}
	return selects(sel.NamespaceSelector, nsLabels) && selects(sel.StoreSelector, store.Labels)
}

func selects(ls *metav1.LabelSelector, set map[string]string) bool {
	if ls == nil {
		return true
	}
	s, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return false
	}
	return s.Matches(labels.Set(set))
}

// Select returns the policy that governs store, or nil: the matching policy
// of highest priority, ties to the name that sorts first; when none
// matches, the default policy (of those annotated, chosen the same way).
func Select(policies []v1.ClusterSessionCleanupPolicy, store *v1.SessionStore, nsLabels map[string]string) *v1.ClusterSessionCleanupPolicy {
	var best, bestDefault *v1.ClusterSessionCleanupPolicy
	for i := range policies {
		p := &policies[i]
		if !p.DeletionTimestamp.IsZero() {
			continue
		}
		if Matches(p, store, nsLabels) && outranks(p, best) {
			best = p
		}
		if IsDefault(p) && outranks(p, bestDefault) {
			bestDefault = p
		}
	}
	if best != nil {
		return best
	}
	return bestDefault
}

func outranks(p, than *v1.ClusterSessionCleanupPolicy) bool {
	if than == nil {
		return true
	}
	if p.Spec.Priority != than.Spec.Priority {
		return p.Spec.Priority > than.Spec.Priority
	}
	return p.Name < than.Name
}
