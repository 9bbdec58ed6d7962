// Package specs builds the objects the operator owns for a SessionStore: the
// connection Secret and the cleanup CronJob. Builders are pure functions of
// the SessionStore and what it references; the controller compares and
// applies what they return.
package specs

import (
	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

const (
	// ManagedByLabel marks every object the operator owns; the manager caches
	// Secrets, CronJobs, Jobs and Pods with this label only.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// ManagedByValue is ManagedByLabel's value.
	ManagedByValue = "sessionstore-operator"
	// StoreLabel names the SessionStore an object belongs to.
	StoreLabel = "sessionstore.dev/store"
	// ComponentLabel says what the object is for (connection, cleanup).
	ComponentLabel = "app.kubernetes.io/component"
	// FieldManager is the operator's server-side apply field manager.
	FieldManager = "sessionstore-operator"
)

// Labels returns the labels of an object owned by store.
func Labels(store *v1.SessionStore, component string) map[string]string {
	return map[string]string{
		ManagedByLabel:           ManagedByValue,
		"app.kubernetes.io/name": "sessionstore",
		StoreLabel:               store.Name,
		ComponentLabel:           component,
	}
}

// ConnectionSecretName is the name of store's connection Secret.
func ConnectionSecretName(store *v1.SessionStore) string {
	if store.Spec.ConnectionSecretName != "" {
		return store.Spec.ConnectionSecretName
	}
	return store.Name + "-session-store"
}

// CleanupCronJobName is the name of store's cleanup CronJob.
func CleanupCronJobName(store *v1.SessionStore) string {
	return store.Name + "-cleanup"
}

// HasNativeExpiry reports whether the backend expires sessions by itself, so
// no cleanup CronJob is needed.
func HasNativeExpiry(backend v1.Backend) bool {
	return backend == v1.BackendRedis || backend == v1.BackendMemcached
}
