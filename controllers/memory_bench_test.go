package controllers

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
)

// BenchmarkCacheMemoryWithUnrelatedSecrets measures the heap the manager's
// caches hold once synced, in a cluster with many large Secrets that are
// none of the operator's business, beside a cache that holds every Secret
// (what a plain Owns(&Secret{}) does). Run:
//
//	go test ./controllers -run '^$' -bench CacheMemory -benchtime 1x
func BenchmarkCacheMemoryWithUnrelatedSecrets(b *testing.B) {
	ns := newNamespace(b)
	blob := strings.Repeat("x", 64*1024)
	const secrets = 400 // 25 MiB of Secret data
	for i := 0; i < secrets; i++ {
		createSecret(b, ns, fmt.Sprintf("unrelated-%d", i), map[string]string{"blob": blob})
	}
	for _, tc := range []struct {
		name  string
		start func(ctx context.Context) error
	}{
		{"operator-caches", func(ctx context.Context) error {
			opts := CacheOptions(nil)
			opts.Scheme = testScheme
			main, err := cache.New(testCfg, opts)
			if err != nil {
				return err
			}
			return syncSecretInformers(ctx, main)
		}},
		{"cache-every-secret", func(ctx context.Context) error {
			all, err := cache.New(testCfg, cache.Options{Scheme: testScheme})
			if err != nil {
				return err
			}
			return syncSecretInformers(ctx, all)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				before := heapInUse()
				ctx, cancel := context.WithCancel(context.Background())
				if err := tc.start(ctx); err != nil {
					cancel()
					b.Fatal(err)
				}
				after := heapInUse()
				b.ReportMetric(float64(after-before)/(1<<20), "heap-MiB")
				cancel()
			}
		})
	}
}

func syncSecretInformers(ctx context.Context, typed cache.Cache) error {
	if _, err := typed.GetInformer(ctx, &corev1.Secret{}); err != nil {
		return err
	}
	go func() { _ = typed.Start(ctx) }()
	if !typed.WaitForCacheSync(ctx) {
		return fmt.Errorf("cache did not sync")
	}
	return nil
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
