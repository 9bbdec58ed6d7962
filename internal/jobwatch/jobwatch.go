// Package jobwatch follows a namespace's Jobs through a watch and keeps the
// most that were started and unfinished at once, and which ever started.
// A watch, not polls, so no overlap between two polls can hide. Only tests
// import it: the controllers' envtest suite and the real-node e2e.
package jobwatch

import (
	"context"
	"sync"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Watch is one namespace's Jobs, followed until Stop.
type Watch struct {
	mu      sync.Mutex
	running map[string]bool
	started map[string]bool
	most    int
	w       watch.Interface
	done    chan struct{}
}

// Start watches ns's Jobs through cfg; the watch stops when the test ends,
// if Stop was not called before.
func Start(t testing.TB, cfg *rest.Config, ns string) *Watch {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := batchv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(context.Background(), &batchv1.JobList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	s := &Watch{running: map[string]bool{}, started: map[string]bool{}, w: w, done: make(chan struct{})}
	go s.follow()
	t.Cleanup(func() { s.Stop() })
	return s
}

func (s *Watch) follow() {
	defer close(s.done)
	for ev := range s.w.ResultChan() {
		job, ok := ev.Object.(*batchv1.Job)
		if !ok {
			continue
		}
		s.mu.Lock()
		// Started: no longer suspended (the gate's doing) and not finished.
		active := ev.Type != watch.Deleted && !ptr.Deref(job.Spec.Suspend, false) && !Finished(job)
		if active {
			s.started[job.Name] = true
		}
		s.running[job.Name] = active
		count := 0
		for _, r := range s.running {
			if r {
				count++
			}
		}
		s.most = max(s.most, count)
		s.mu.Unlock()
	}
}

// Counts returns the most Jobs seen started and unfinished at once so far,
// and how many started.
func (s *Watch) Counts() (most, started int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.most, len(s.started)
}

// Stop ends the watch and returns the final Counts.
func (s *Watch) Stop() (most, started int) {
	s.w.Stop()
	<-s.done
	return s.Counts()
}

// Finished tells whether the Job has completed or failed.
func Finished(job *batchv1.Job) bool {
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}
