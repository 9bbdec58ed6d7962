package controllers

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

// secretNamesIndex indexes SessionStores by every Secret name they involve:
// the credential Secrets they reference and their connection Secret.
const secretNamesIndex = "sessionstore.dev/secret-names"

// secretProblem is a reason the connection Secret cannot be written that only
// a change to a Secret or the spec can fix.
type secretProblem struct {
	reason  string
	message string
}

func (p *secretProblem) Error() string { return p.message }

// reconcileConnectionSecret writes the Secret apps load with envFrom.
func (r *sessionStoreReconciler) reconcileConnectionSecret(ctx context.Context, s *reconcileScope) error {
	name := specs.ConnectionSecretName(s.store)
	s.status.ConnectionSecretName = name

	values, problem, err := readReferencedSecrets(ctx, r.APIReader, s.store)
	if err != nil {
		return err
	}
	var data map[string]string
	if problem == nil {
		if data, err = specs.ConnectionData(s.store, values); err != nil {
			problem = &secretProblem{v1.ReasonInvalidSecretValue, err.Error()}
		}
	}
	if problem != nil {
		s.connectionProblem = problem
		setCondition(s, v1.ConditionConnectionSecretReady, metav1.ConditionFalse, problem.reason, problem.message)
		return nil
	}
	s.podEnv = specs.CleanupPodEnv(s.store, data)
	desired := specs.ConnectionSecret(s.store, data)
	existing := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: desired.Namespace, Name: desired.Name}}
	owner, err := r.lookupOwned(ctx, s.store, existing)
	if err != nil {
		return err
	}
	if owner == foreign {
		setCondition(s, v1.ConditionConnectionSecretReady, metav1.ConditionFalse, v1.ReasonSecretConflict,
			fmt.Sprintf("Secret %s exists and is not managed by this SessionStore; delete it or set spec.connectionSecretName", name))
		return nil
	}
	if err := controllerutil.SetControllerReference(s.store, desired, r.Scheme); err != nil {
		return err
	}
	want, owned, err := secretApplyConfigurations(desired, existing, owner)
	if err != nil {
		return err
	}
	applied, err := applyIfDrifted(ctx, r.Client, want, owned)
	if err != nil {
		setCondition(s, v1.ConditionConnectionSecretReady, metav1.ConditionFalse, v1.ReasonApplyFailed,
			fmt.Sprintf("writing Secret %s: %v", name, apierrors.ReasonForError(err)))
		return err
	}
	if applied {
		ctrlLog(ctx).Info("connection Secret written", "secret", name)
	}
	s.connectionSecretReady = true
	setCondition(s, v1.ConditionConnectionSecretReady, metav1.ConditionTrue, v1.ReasonSecretReady,
		fmt.Sprintf("Secret %s holds the connection settings", name))
	return nil
}

// secretApplyConfigurations returns desired as an apply configuration and,
// when existing is ours, what the operator's field manager owns of it.
func secretApplyConfigurations(desired, existing *corev1.Secret, owner ownership) (want, owned runtime.ApplyConfiguration, err error) {
	w := &corev1ac.SecretApplyConfiguration{}
	if err := toApplyConfiguration(desired, w); err != nil || owner != ours {
		return w, nil, err
	}
	restoreOwnerUID(existing)
	o, err := corev1ac.ExtractSecret(existing, specs.FieldManager)
	if err != nil {
		return nil, nil, err
	}
	return w, o, nil
}

// readReferencedSecrets reads every credential key the spec points at,
// straight from the API server (credential Secrets are not cached).
func readReferencedSecrets(ctx context.Context, apiReader client.Reader, store *v1.SessionStore) (specs.SecretValues, *secretProblem, error) {
	values := specs.SecretValues{}
	for _, ref := range specs.ReferencedSecrets(store) {
		if _, read := values[ref.Name]; !read {
			secret := &corev1.Secret{}
			err := apiReader.Get(ctx, types.NamespacedName{Namespace: store.Namespace, Name: ref.Name}, secret)
			if apierrors.IsNotFound(err) {
				return nil, &secretProblem{v1.ReasonSecretNotFound,
					fmt.Sprintf("Secret %s referenced by %s not found", ref.Name, ref.Field)}, nil
			}
			if err != nil {
				return nil, nil, fmt.Errorf("reading Secret %s: %w", ref.Name, err)
			}
			values[ref.Name] = secret.Data
		}
		if _, ok := values[ref.Name][ref.Key]; !ok {
			return nil, &secretProblem{v1.ReasonSecretKeyMissing,
				fmt.Sprintf("Secret %s referenced by %s has no key %q", ref.Name, ref.Field, ref.Key)}, nil
		}
	}
	return values, nil, nil
}

// removeStaleConnectionSecrets deletes connection Secrets this store wrote
// under a name it no longer uses (after spec.connectionSecretName changed),
// but only once the Secret under the new name is written and current: until
// then apps, and restarted app pods above all, still load the old one.
func (r *sessionStoreReconciler) removeStaleConnectionSecrets(ctx context.Context, s *reconcileScope) error {
	stale, err := r.staleConnectionSecrets(ctx, s.store)
	if err != nil || len(stale) == 0 {
		return err
	}
	if !s.connectionSecretReady {
		keepStaleSecretsMeanwhile(s, stale)
		return nil
	}
	for i := range stale {
		secret := &stale[i]
		if err := r.Client.Delete(ctx, secret, client.Preconditions{UID: &secret.UID}); ignoreNotFound(err) != nil {
			return err
		}
		ctrlLog(ctx).Info("stale connection Secret deleted", "secret", secret.Name)
	}
	return nil
}

// staleConnectionSecrets lists the connection Secrets store controls under a
// name other than its current one.
func (r *sessionStoreReconciler) staleConnectionSecrets(ctx context.Context, store *v1.SessionStore) ([]corev1.Secret, error) {
	owned := &corev1.SecretList{}
	if err := r.Client.List(ctx, owned, client.InNamespace(store.Namespace),
		client.MatchingLabels{specs.StoreLabel: store.Name, specs.ComponentLabel: "connection"}); err != nil {
		return nil, err
	}
	current := specs.ConnectionSecretName(store)
	var stale []corev1.Secret
	for _, secret := range owned.Items {
		if secret.Name != current && metav1.IsControlledBy(&secret, store) {
			stale = append(stale, secret)
		}
	}
	return stale, nil
}

// keepStaleSecretsMeanwhile says on the ConnectionSecretReady condition that
// the old Secrets are kept while the new one cannot be written.
func keepStaleSecretsMeanwhile(s *reconcileScope, stale []corev1.Secret) {
	c := meta.FindStatusCondition(s.status.Conditions, v1.ConditionConnectionSecretReady)
	if c == nil || c.Status == metav1.ConditionTrue {
		return
	}
	names := make([]string, 0, len(stale))
	for _, secret := range stale {
		names = append(names, secret.Name)
	}
	sort.Strings(names)
	setCondition(s, v1.ConditionConnectionSecretReady, c.Status, c.Reason,
		fmt.Sprintf("%s; the previous Secret %s is kept until then", c.Message, strings.Join(names, ", ")))
}

// indexReferencedSecrets lets a Secret event find the stores it matters to.
func indexReferencedSecrets(ctx context.Context, indexer client.FieldIndexer) error {
	return indexer.IndexField(ctx, &v1.SessionStore{}, secretNamesIndex, func(obj client.Object) []string {
		store := obj.(*v1.SessionStore)
		names := []string{specs.ConnectionSecretName(store)}
		for _, ref := range specs.ReferencedSecrets(store) {
			names = append(names, ref.Name)
		}
		return names
	})
}

// referencedSecretSource tells the stores when a Secret they involve
// changes, appears or goes away (a credential rotated, a conflicting Secret
// deleted), from a watch of Secrets' metadata that caches none of them.
func (r *sessionStoreReconciler) referencedSecretSource() source.Source {
	return &secretChangeWatch{
		secrets:     r.SecretMetadata.Resource(secretsResource),
		stores:      r.Client,
		namespaces:  r.Namespaces,
		storesUsing: r.storesUsingSecret,
		retry:       time.Second,
	}
}

func (r *sessionStoreReconciler) storesUsingSecret(ctx context.Context, secret *metav1.PartialObjectMetadata) []reconcile.Request {
	stores := &v1.SessionStoreList{}
	if err := r.Client.List(ctx, stores, client.InNamespace(secret.Namespace),
		client.MatchingFields{secretNamesIndex: secret.Name}); err != nil {
		ctrlLog(ctx).Error(err, "listing SessionStores for a Secret", "secret", secret.Name)
		return nil
	}
	requests := make([]reconcile.Request, 0, len(stores.Items))
	for _, store := range stores.Items {
		requests = append(requests, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&store)})
	}
	return requests
}
