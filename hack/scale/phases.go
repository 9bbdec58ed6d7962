package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/internal/specs"
)

// settle is how long an idle manager is left before its RSS is read.
const settle = 10 * time.Second

// unrelatedSecrets compares an idle manager's RSS without and with
// c.unrelated 1 KiB Secrets in the cluster.
func unrelatedSecrets(c config) error {
	ctx := context.Background()
	cp, err := startControlPlane(c, "unrelated")
	if err != nil {
		return err
	}
	defer func() { _ = cp.env.Stop() }()
	without, err := idleRSS(c, cp, "unrelated-without")
	if err != nil {
		return err
	}
	if err := createNamespaces(ctx, cp.client, "unrelated", c.namespaces); err != nil {
		return err
	}
	blob := strings.Repeat("x", 1024)
	took, err := inParallel(c.unrelated, c.workers, func(i int) error {
		return cp.client.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("unrelated-%d", i%c.namespaces), Name: fmt.Sprintf("unrelated-%d", i)},
			Data:       map[string][]byte{"blob": []byte(blob)},
		})
	})
	if err != nil {
		return err
	}
	report("created %d unrelated 1 KiB Secrets in %s", c.unrelated, took.Round(time.Millisecond))
	with, err := idleRSS(c, cp, "unrelated-with")
	if err != nil {
		return err
	}
	report("RESULT idle manager RSS: %.0f MB without, %.0f MB with %d unrelated Secrets: %.2fx",
		without, with, c.unrelated, with/without)
	return nil
}

// idleRSS starts a manager, leaves it idle for settle, saves its heap
// profile and returns its RSS in MB.
func idleRSS(c config, cp *controlPlane, name string) (float64, error) {
	m, err := startManager(c, cp, name)
	if err != nil {
		return 0, err
	}
	defer m.stop()
	time.Sleep(settle)
	now, peak, anon := m.rss()
	report("%s: RSS %.0f MB (peak %.0f MB, anonymous %.0f MB)", name, now, peak, anon)
	return now, m.profile("heap", "?gc=1", name+".heap.pprof")
}

// storesReady times the API server alone, then the manager making every
// store Ready, then watches steady state.
func storesReady(c config) error {
	ctx := context.Background()
	cp, err := startControlPlane(c, "stores")
	if err != nil {
		return err
	}
	defer func() { _ = cp.env.Stop() }()
	if err := createNamespaces(ctx, cp.client, "stores", c.namespaces); err != nil {
		return err
	}
	baseline, err := apiServerBaseline(ctx, c, cp.client, "baseline")
	if err != nil {
		return err
	}
	took, err := inParallel(c.stores, c.workers, func(i int) error {
		return cp.client.Create(ctx, filesystemStore(c, i))
	})
	if err != nil {
		return err
	}
	report("created %d SessionStores (manager stopped) in %s", c.stores, took.Round(time.Millisecond))
	return timeManager(ctx, c, cp, baseline)
}

// apiServerBaseline is the API server's time for two minimal writes per
// store: a one-key Secret and a one-key ConfigMap (no status), c.workers at
// a time, named prefix-<i>.
func apiServerBaseline(ctx context.Context, c config, cl client.Client, prefix string) (time.Duration, error) {
	took, err := inParallel(2*c.stores, c.workers, func(i int) error {
		meta := metav1.ObjectMeta{Namespace: fmt.Sprintf("stores-%d", (i/2)%c.namespaces), Name: fmt.Sprintf("%s-%d", prefix, i/2)}
		if i%2 == 0 {
			return cl.Create(ctx, &corev1.Secret{ObjectMeta: meta, Data: map[string][]byte{"k": []byte("v")}})
		}
		return cl.Create(ctx, &corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{"k": "v"}})
	})
	report("RESULT API server alone: %d minimal writes (a Secret and a ConfigMap per store) in %s", 2*c.stores, took.Round(time.Millisecond))
	return took, err
}

func filesystemStore(c config, i int) *v1.SessionStore {
	return &v1.SessionStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("stores-%d", i%c.namespaces), Name: fmt.Sprintf("store-%d", i)},
		Spec: v1.SessionStoreSpec{
			Backend:    v1.BackendFilesystem,
			Filesystem: &v1.FilesystemSpec{ClaimName: "sessions"},
		},
	}
}

// timeManager starts the manager, waits for every store to be Ready while
// profiling its CPU, then reads its memory and watches steady state.
func timeManager(ctx context.Context, c config, cp *controlPlane, baseline time.Duration) error {
	list := &v1.SessionStoreList{}
	if err := cp.client.List(ctx, list); err != nil {
		return err
	}
	requestsBefore, err := cp.requestCounts(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	m, err := startManager(c, cp, "stores")
	if err != nil {
		return err
	}
	defer m.stop()
	go func() { _ = m.profile("profile", "?seconds=30", "stores.cpu.pprof") }()
	go func() { _ = cp.profile("profile", "?seconds=30", c.out, "stores.apiserver.cpu.pprof") }()
	if err := waitAllReady(ctx, cp.client, list.ResourceVersion, c.stores); err != nil {
		return err
	}
	took := time.Since(start)
	now, peak, anon := m.rss()
	requestsAfter, err := cp.requestCounts(ctx)
	if err != nil {
		return err
	}
	reportRequests(requestsBefore, requestsAfter)
	report("RESULT %d stores Ready %s after the manager started: %.2fx the API server's own time; RSS %.0f MB (peak %.0f MB, anonymous %.0f MB)",
		c.stores, took.Round(time.Millisecond), took.Seconds()/baseline.Seconds(), now, peak, anon)
	time.Sleep(settle)
	now, peak, anon = m.rss()
	report("RESULT settled: RSS %.0f MB (peak %.0f MB, anonymous %.0f MB)", now, peak, anon)
	if err := m.profile("heap", "?gc=1", "stores.heap.pprof"); err != nil {
		return err
	}
	// The machine's load moves between the two: the baseline again, after.
	again, err := apiServerBaseline(ctx, c, cp.client, "baseline-after")
	if err != nil {
		return err
	}
	report("RESULT Ready took %.2fx the API server's own time measured after", took.Seconds()/again.Seconds())
	return steadyWrites(ctx, c, cp.client)
}

// waitAllReady follows SessionStores from version until n are Ready.
func waitAllReady(ctx context.Context, cl client.WithWatch, version string, n int) error {
	w, err := cl.Watch(ctx, &v1.SessionStoreList{}, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: version}})
	if err != nil {
		return err
	}
	defer w.Stop()
	ready := map[string]bool{}
	timeout := time.After(30 * time.Minute)
	for len(ready) < n {
		select {
		case <-timeout:
			return fmt.Errorf("only %d of %d stores Ready after 30 minutes", len(ready), n)
		case ev, ok := <-w.ResultChan():
			if !ok {
				return fmt.Errorf("the watch of SessionStores ended with %d Ready", len(ready))
			}
			store, isStore := ev.Object.(*v1.SessionStore)
			if isStore && ev.Type != watch.Deleted && apimeta.IsStatusConditionTrue(store.Status.Conditions, "Ready") {
				ready[store.Namespace+"/"+store.Name] = true
			}
		}
	}
	return nil
}

// steadyWrites counts the stores, connection Secrets and CronJobs whose
// resource version moves during c.steady of a settled manager.
func steadyWrites(ctx context.Context, c config, cl client.Client) error {
	before, err := versions(ctx, cl)
	if err != nil {
		return err
	}
	time.Sleep(c.steady)
	after, err := versions(ctx, cl)
	if err != nil {
		return err
	}
	changed := 0
	for key, rv := range before {
		if after[key] != rv {
			changed++
		}
	}
	report("RESULT steady state: %d of %d objects written in %s", changed, len(before), c.steady)
	return nil
}

func versions(ctx context.Context, cl client.Client) (map[string]string, error) {
	out := map[string]string{}
	lists := map[string]client.ObjectList{"store": &v1.SessionStoreList{}, "secret": &corev1.SecretList{}, "cronjob": &batchv1.CronJobList{}}
	for kind, list := range lists {
		opts := []client.ListOption{}
		if kind != "store" {
			opts = append(opts, client.MatchingLabels{specs.ManagedByLabel: specs.ManagedByValue})
		}
		if err := cl.List(ctx, list, opts...); err != nil {
			return nil, err
		}
		items, err := apimeta.ExtractList(list)
		if err != nil {
			return nil, err
		}
		for _, item := range items {
			o := item.(client.Object)
			out[kind+"/"+o.GetNamespace()+"/"+o.GetName()] = o.GetResourceVersion()
		}
	}
	return out, nil
}
