package controllers

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// ownership is what lookupOwned found under an owned object's name.
type ownership int

const (
	// absent: nothing has the name; the operator may create it.
	absent ownership = iota
	// ours: the store controls it and obj holds it as cached.
	ours
	// oursUncached: the store controls it but it lost the managed label, so
	// the cache does not hold it; applying puts the label back.
	oursUncached
	// foreign: someone else's object has the name; never overwrite it.
	foreign
)

// lookupOwned reads obj's name from the cache, which holds only objects with
// the managed label, and on a miss asks the API server for its metadata, so
// an unlabelled object of that name is never taken over by an apply.
func (r *sessionStoreReconciler) lookupOwned(ctx context.Context, store *v1.SessionStore, obj client.Object) (ownership, error) {
	key := client.ObjectKeyFromObject(obj)
	err := r.Client.Get(ctx, key, obj)
	if err == nil {
		if metav1.IsControlledBy(obj, store) {
			return ours, nil
		}
		return foreign, nil
	}
	if !apierrors.IsNotFound(err) {
		return absent, err
	}
	gvk, err := apiutil.GVKForObject(obj, r.Scheme)
	if err != nil {
		return absent, err
	}
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(gvk)
	if err := r.APIReader.Get(ctx, key, meta); err != nil {
		if apierrors.IsNotFound(err) {
			return absent, nil
		}
		return absent, err
	}
	if metav1.IsControlledBy(meta, store) {
		return oursUncached, nil
	}
	return foreign, nil
}

// storedStatus reads the store's status from the API server, for the few
// decisions that the cached store, which can predate the status the last
// reconcile wrote, could get wrong (announcing a change twice). nil when it
// cannot be read. A list by name: the role grants list on SessionStores,
// not get.
func (r *sessionStoreReconciler) storedStatus(ctx context.Context, store *v1.SessionStore) *v1.SessionStoreStatus {
	fresh := &v1.SessionStoreList{}
	if err := r.APIReader.List(ctx, fresh, client.InNamespace(store.Namespace),
		client.MatchingFields{"metadata.name": store.Name}); err != nil || len(fresh.Items) != 1 {
		return nil
	}
	return &fresh.Items[0].Status
}
