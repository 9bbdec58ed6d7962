package specs

import (
	corev1 "k8s.io/api/core/v1"
)

// Labels of the cleanup Jobs a ClusterSessionCleanupPolicy governs. The
// CronJob's job template carries them, so every Job made from it (by the
// CronJob controller, by `kubectl create job --from=cronjob/...`, or for a
// run-now request) is found and counted by the gate.
const (
	// PolicyLabel names the governing policy.
	PolicyLabel = "sessionstore.dev/policy"
	// ServerLabel is the hash of the store's server key (policy.ServerHash).
	ServerLabel = "sessionstore.dev/server"
)

// Governance is what a store's governing policy changes in its cleanup
// CronJob; nil for an ungoverned store, whose CronJob stays as it always was.
type Governance struct {
	Policy     string
	ServerHash string
	// Schedule is the effective schedule, H already expanded.
	Schedule string
	// TimeZone is the store's, else the policy's.
	TimeZone *string
	// ActiveDeadlineSeconds and Resources are the policy's defaults where
	// the store keeps its own defaults; nil leaves the store's.
	ActiveDeadlineSeconds *int64
	Resources             *corev1.ResourceRequirements
	// StartingDeadlineSeconds is the policy's.
	StartingDeadlineSeconds int64
}

// governedJobLabels are the job template's labels: the store's, and for a
// governed store the policy and server the gate counts by.
func governedJobLabels(labels map[string]string, gov *Governance) map[string]string {
	if gov == nil {
		return labels
	}
	out := make(map[string]string, len(labels)+2)
	for k, v := range labels {
		out[k] = v
	}
	out[PolicyLabel] = gov.Policy
	out[ServerLabel] = gov.ServerHash
	return out
}
