// Command scale measures the operator at scale against a real etcd and
// kube-apiserver (envtest's binaries), running the real manager binary and
// reading its memory from /proc: `make bench-scale`.
//
//  1. RSS of an idle manager without, then with, -unrelated 1 KiB Secrets
//     that are none of its business (a control plane of its own).
//  2. On a fresh control plane: the API server's own time for two minimal
//     writes per store (a Secret and a ConfigMap each, -workers at once), then
//     -stores filesystem SessionStores over -namespaces namespaces, created
//     while the manager is stopped; the manager is started and timed until
//     every store is Ready, with a CPU profile of that and its RSS and heap
//     profile after; then how many of the objects it owns it writes to in
//     -steady of steady state.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

type config struct {
	stores, namespaces, unrelated, workers int
	steady                                 time.Duration
	assets, manager, out, managerArgs      string
	memoryLimit                            int64
}

func main() {
	var c config
	flag.IntVar(&c.stores, "stores", 10000, "SessionStores to create")
	flag.IntVar(&c.namespaces, "namespaces", 100, "namespaces they are spread over")
	flag.IntVar(&c.unrelated, "unrelated", 100000, "unrelated 1 KiB Secrets for the memory comparison (0 skips it)")
	flag.IntVar(&c.workers, "workers", 32, "concurrent writers of the harness")
	flag.DurationVar(&c.steady, "steady", 30*time.Second, "how long steady state is watched for writes")
	flag.StringVar(&c.assets, "assets", "bin/k8s", "folder holding kube-apiserver and etcd")
	flag.StringVar(&c.manager, "manager", "bin/manager", "the manager binary")
	flag.StringVar(&c.out, "out", "bin/scale", "folder for the log, results and profiles")
	flag.Int64Var(&c.memoryLimit, "memory-limit", 256<<20,
		"the container memory limit in bytes the manager is told of (env MEMORY_LIMIT, as config/manager passes it); 0 tells none")
	flag.StringVar(&c.managerArgs, "manager-args", "", "more flags for the manager, space-separated")
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		fail(err)
	}
	report("load average at start: %s; manager %s %s, MEMORY_LIMIT %d", loadAverage(), c.manager, c.managerArgs, c.memoryLimit)
	if c.unrelated > 0 {
		if err := unrelatedSecrets(c); err != nil {
			fail(err)
		}
	}
	if err := storesReady(c); err != nil {
		fail(err)
	}
	report("load average at end: %s", loadAverage())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "scale:", err)
	os.Exit(1)
}

func report(format string, args ...any) {
	fmt.Printf("%s  "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, args...)...)
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// controlPlane is a running etcd + kube-apiserver with the CRDs, an admin
// client (no client-side rate limit) and a kubeconfig for the manager.
type controlPlane struct {
	env        *envtest.Environment
	client     client.WithWatch
	kubeconfig string
}

func startControlPlane(c config, name string) (*controlPlane, error) {
	env := &envtest.Environment{
		BinaryAssetsDirectory: c.assets,
		CRDDirectoryPaths:     []string{"config/crd/bases"},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = -1, 0
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1.AddToScheme(scheme)
	cl, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	user, err := env.AddUser(envtest.User{Name: "scale-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(c.out, name+".kubeconfig")
	return &controlPlane{env: env, client: cl, kubeconfig: path}, os.WriteFile(path, kc, 0o600)
}

// inParallel runs do(i) for i in [0, n) on workers goroutines, and returns
// the first error and the wall time.
func inParallel(n, workers int, do func(i int) error) (time.Duration, error) {
	start := time.Now()
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := do(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start), first
}

func createNamespaces(ctx context.Context, cl client.Client, prefix string, n int) error {
	for i := 0; i < n; i++ {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", prefix, i)}}
		if err := cl.Create(ctx, ns); err != nil {
			return err
		}
	}
	return nil
}

// manager is the operator's binary, running.
type manager struct {
	cmd        *exec.Cmd
	pprof, out string
}

func startManager(c config, cp *controlPlane, name string) (*manager, error) {
	log, err := os.Create(filepath.Join(c.out, name+".log"))
	if err != nil {
		return nil, err
	}
	m := &manager{pprof: "127.0.0.1:16060", out: c.out}
	m.cmd = exec.Command(c.manager, "--kubeconfig", cp.kubeconfig, "--leader-elect=false",
		"--metrics-bind-address=0", "--health-probe-bind-address=127.0.0.1:16081",
		"--pprof-bind-address="+m.pprof, "--cleanup-image=registry.example/sessionstore-operator:scale",
		"--zap-log-level=error")
	m.cmd.Args = append(m.cmd.Args, strings.Fields(c.managerArgs)...)
	m.cmd.Env = os.Environ()
	if c.memoryLimit > 0 {
		m.cmd.Env = append(m.cmd.Env, fmt.Sprintf("MEMORY_LIMIT=%d", c.memoryLimit))
	}
	m.cmd.Stdout, m.cmd.Stderr = log, log
	if err := m.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://127.0.0.1:16081/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	m.stop()
	return nil, fmt.Errorf("the manager was not ready in 2 minutes; see %s", log.Name())
}

func (m *manager) stop() {
	_ = m.cmd.Process.Signal(os.Interrupt)
	_ = m.cmd.Wait()
}

// rss is the manager's resident memory now and at its peak, and of it the
// anonymous part (the Go runtime's heap and stacks; the rest is mostly the
// binary's own pages, which the kernel can drop and read again), in MB.
func (m *manager) rss() (now, peak, anon float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		return 0, 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		var kb float64
		if _, err := fmt.Sscanf(line, "VmRSS: %f kB", &kb); err == nil {
			now = kb / 1024
		}
		if _, err := fmt.Sscanf(line, "VmHWM: %f kB", &kb); err == nil {
			peak = kb / 1024
		}
		if _, err := fmt.Sscanf(line, "RssAnon: %f kB", &kb); err == nil {
			anon = kb / 1024
		}
	}
	return now, peak, anon
}

// profile saves /debug/pprof/<kind> (with query) to out/<file>.
func (m *manager) profile(kind, query, file string) error {
	resp, err := http.Get("http://" + m.pprof + "/debug/pprof/" + kind + query)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(filepath.Join(m.out, file))
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// profile saves the API server's /debug/pprof/<kind> (with query) to
// out/<file>: where its own time goes.
func (cp *controlPlane) profile(kind, query, out, file string) error {
	rc, err := rest.HTTPClientFor(cp.env.Config)
	if err != nil {
		return err
	}
	resp, err := rc.Get(strings.TrimSuffix(cp.env.Config.Host, "/") + "/debug/pprof/" + kind + query)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(filepath.Join(out, file))
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// requestCounts sums the API server's apiserver_request_total by verb,
// resource, subresource and code: what the manager asked of it.
func (cp *controlPlane) requestCounts(ctx context.Context) (map[string]float64, error) {
	rc, err := rest.HTTPClientFor(cp.env.Config)
	if err != nil {
		return nil, err
	}
	resp, err := rc.Get(strings.TrimSuffix(cp.env.Config.Host, "/") + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		metric, rest, ok := strings.Cut(line, "{")
		if !ok || (metric != "apiserver_request_total" && metric != "apiserver_request_duration_seconds_sum") {
			continue
		}
		labels, value, _ := strings.Cut(rest, "} ")
		var n float64
		_, _ = fmt.Sscan(value, &n)
		key := label(labels, "verb") + " " + label(labels, "resource") + "/" + label(labels, "subresource")
		if metric == "apiserver_request_total" {
			out[key+" "+label(labels, "code")] += n
		} else {
			out[key+" seconds"] += n
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no apiserver_request_total in /metrics (%s, %d bytes)", resp.Status, len(body))
	}
	return out, nil
}

func label(labels, name string) string {
	for _, kv := range strings.Split(labels, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// reportRequests prints the requests made since before, largest first.
func reportRequests(before, after map[string]float64) {
	type row struct {
		key string
		n   float64
	}
	var rows []row
	for k, v := range after {
		if d := v - before[k]; d >= 10 {
			rows = append(rows, row{k, d})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].n > rows[j].n })
	for _, r := range rows {
		report("  requests: %6.0f %s", r.n, r.key)
	}
}
