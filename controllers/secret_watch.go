package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// secretChangeWatch tells the stores that use a Secret when it changes,
// appears or goes away, from a watch of Secrets' metadata that keeps
// nothing: each event is looked up in the store index and dropped. The
// manager's memory so does not grow with the Secrets in the cluster (an
// informer holds an entry for every one), while a rotation still reaches
// its stores as soon as the API server tells of it.
//
// The watch starts from the present (a list of one item gives the version):
// what changed before is read anyway by the first reconcile of every store.
// Should the API server no longer have the version the watch resumes from
// (410 Gone, after a long disconnection), changes may have been missed:
// every store in scope is reconciled again, which re-reads its Secrets.
type secretChangeWatch struct {
	secrets    metadata.Getter
	stores     client.Reader
	namespaces []string // empty: all
	// storesUsing maps a Secret to the stores to reconcile.
	storesUsing func(ctx context.Context, secret *metav1.PartialObjectMetadata) []reconcile.Request
	// retry is the pause after a failed watch or list.
	retry time.Duration
}

// errWatchExpired: the API server no longer holds the version to resume from.
var errWatchExpired = errors.New("the Secret watch's resource version expired")

// Start lists one Secret per namespace for the version to watch from, before
// the controller's workers start (so no change between a first reconcile and
// the watch is lost), then follows the changes until ctx ends.
func (w *secretChangeWatch) Start(ctx context.Context, queue workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	namespaces := w.namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	for _, ns := range namespaces {
		version, err := w.currentVersion(ctx, ns)
		if err != nil {
			return fmt.Errorf("starting the Secret watch: %w", err)
		}
		go w.follow(ctx, queue, ns, version)
	}
	return nil
}

func (w *secretChangeWatch) String() string { return "Secret changes (metadata watch, uncached)" }

// currentVersion is the resource version of Secrets in ns now.
func (w *secretChangeWatch) currentVersion(ctx context.Context, ns string) (string, error) {
	list, err := w.secrets.Namespace(ns).List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return "", err
	}
	return list.ResourceVersion, nil
}

// follow watches ns from version on, resuming where it left off after a
// disconnection, and starting afresh (with every store re-read) when that
// version is gone.
func (w *secretChangeWatch) follow(ctx context.Context, queue workqueue.TypedRateLimitingInterface[reconcile.Request], ns, version string) {
	for ctx.Err() == nil {
		if version == "" {
			fresh, err := w.currentVersion(ctx, ns)
			if err != nil {
				ctrlLog(ctx).Error(err, "listing Secrets to restart their watch", "namespace", ns)
				w.pause(ctx)
				continue
			}
			version = fresh
			w.enqueueAllStores(ctx, queue, ns)
		}
		next, err := w.watchFrom(ctx, queue, ns, version)
		version = next
		switch {
		case errors.Is(err, errWatchExpired):
			version = ""
		case err != nil && ctx.Err() == nil:
			ctrlLog(ctx).Error(err, "watching Secrets", "namespace", ns)
			w.pause(ctx)
		}
	}
}

// watchFrom runs one watch until it ends, and returns the last version seen.
func (w *secretChangeWatch) watchFrom(ctx context.Context, queue workqueue.TypedRateLimitingInterface[reconcile.Request], ns, version string) (string, error) {
	watcher, err := w.secrets.Namespace(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: version, AllowWatchBookmarks: true})
	if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
		return version, errWatchExpired
	}
	if err != nil {
		return version, err
	}
	defer watcher.Stop()
	for event := range watcher.ResultChan() {
		switch event.Type {
		case watch.Error:
			if status, ok := event.Object.(*metav1.Status); ok && status.Code == 410 {
				return version, errWatchExpired
			}
			return version, apierrors.FromObject(event.Object)
		case watch.Added, watch.Modified, watch.Deleted, watch.Bookmark:
			secret, ok := event.Object.(*metav1.PartialObjectMetadata)
			if !ok {
				continue
			}
			version = secret.ResourceVersion
			if event.Type == watch.Bookmark {
				continue
			}
			for _, req := range w.storesUsing(ctx, secret) {
				queue.Add(req)
			}
		}
	}
	return version, nil
}

// enqueueAllStores reconciles every store in ns (all when empty): after a
// gap in the watch, any of their Secrets may have changed.
func (w *secretChangeWatch) enqueueAllStores(ctx context.Context, queue workqueue.TypedRateLimitingInterface[reconcile.Request], ns string) {
	stores := &v1.SessionStoreList{}
	if err := w.stores.List(ctx, stores, client.InNamespace(ns)); err != nil {
		ctrlLog(ctx).Error(err, "listing SessionStores after a gap in the Secret watch")
		return
	}
	for i := range stores.Items {
		queue.Add(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&stores.Items[i])})
	}
}

func (w *secretChangeWatch) pause(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(w.retry):
	}
}

// secretsResource is what the metadata client watches.
var secretsResource = corev1.SchemeGroupVersion.WithResource("secrets")
