// Command sessionstore-operator runs the SessionStore controller by default,
// and the bundled store logic as subcommands, so the cleanup CronJob runs
// the operator's own image:
//
//	sessionstore-operator [flags]     run the manager
//	sessionstore-operator cleanup     remove expired sessions from one store
//	sessionstore-operator check       reach one store once
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
	"github.com/sessionstore/sessionstore-operator/controllers"
	"github.com/sessionstore/sessionstore-operator/internal/metricsauth"
	"github.com/sessionstore/sessionstore-operator/internal/version"
)

func main() {
	if len(os.Args) > 1 {
		if os.Args[1] == "--version" || os.Args[1] == "version" {
			fmt.Println(version.Version)
			os.Exit(0)
		}
		if sub, ok := subcommands[os.Args[1]]; ok {
			os.Exit(sub(os.Args[2:]))
		}
	}
	os.Exit(runManager(os.Args[1:]))
}

// subcommands run the bundled store logic; see cmd_store.go.
var subcommands = map[string]func(args []string) int{}

// managerFlags are the manager's command-line settings.
type managerFlags struct {
	metricsAddr     string
	secureMetrics   bool
	probeAddr       string
	leaderElect     bool
	watchNamespaces string
	cleanupImage    string
	kubeconfig      string
	probeInterval   time.Duration
	probeTimeout    time.Duration
	probeWorkers    int
	pprofAddr       string
	maxReconciles   int
	zap             zap.Options
}

// parseManagerFlags reads the manager's flags from args.
func parseManagerFlags(args []string) (*managerFlags, error) {
	f := &managerFlags{}
	fs := flag.NewFlagSet("sessionstore-operator", flag.ContinueOnError)
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8443",
		"address the metrics endpoint binds to; \"0\" turns it off")
	fs.BoolVar(&f.secureMetrics, "metrics-secure", true,
		"serve metrics over HTTPS with authentication and authorization (TokenReview and SubjectAccessReview)")
	fs.StringVar(&f.probeAddr, "health-probe-bind-address", ":8081", "address the /healthz and /readyz probes bind to")
	fs.BoolVar(&f.leaderElect, "leader-elect", false,
		"elect a leader, so that only one of several replicas reconciles")
	fs.StringVar(&f.watchNamespaces, "watch-namespaces", os.Getenv("WATCH_NAMESPACES"),
		"comma-separated namespaces to watch (env WATCH_NAMESPACES); empty watches all")
	fs.StringVar(&f.cleanupImage, "cleanup-image", envOr("OPERATOR_IMAGE", version.Image()),
		"image the cleanup CronJobs run, the operator's own (env OPERATOR_IMAGE; default this build's, tagged by its version)")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "",
		"kubeconfig file; default $KUBECONFIG, then in-cluster, then ~/.kube/config")
	fs.DurationVar(&f.probeInterval, "probe-interval", controllers.DefaultProbeInterval,
		"how often a reachable store is probed; an unreachable one is retried sooner, backing off up to this")
	fs.DurationVar(&f.probeTimeout, "probe-timeout", controllers.DefaultProbeTimeout, "how long one probe of a store may take")
	fs.IntVar(&f.probeWorkers, "probe-concurrency", controllers.DefaultProbeConcurrency, "how many stores are probed at once")
	fs.IntVar(&f.maxReconciles, "max-concurrent-reconciles", controllers.DefaultMaxConcurrentReconciles, "how many stores are reconciled at once")
	fs.StringVar(&f.pprofAddr, "pprof-bind-address", "0", "address net/http/pprof binds to (as 127.0.0.1:6060); \"0\" turns it off")
	f.zap.BindFlags(fs)
	return f, fs.Parse(args)
}

func runManager(args []string) int {
	f, err := parseManagerFlags(args)
	if err != nil {
		return 2
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&f.zap)))
	setupLog := ctrl.Log.WithName("setup")
	if limit := setMemoryLimit(); limit > 0 {
		setupLog.Info("Go memory limit set from the container's", "bytes", limit)
	}
	namespaces := splitList(f.watchNamespaces)
	mgr, err := newManager(f, namespaces)
	if err != nil {
		setupLog.Error(err, "unable to create the manager")
		return 1
	}
	ctx := ctrl.SetupSignalHandler()
	if err := controllers.Setup(ctx, mgr, controllers.Options{
		CleanupImage: f.cleanupImage, Namespaces: namespaces,
		// Cluster-scoped policies need a cluster-wide install.
		ClusterPolicies: len(namespaces) == 0,
		ProbeInterval:   f.probeInterval, ProbeTimeout: f.probeTimeout, ProbeConcurrency: f.probeWorkers,
		MaxConcurrentReconciles: f.maxReconciles,
	}); err != nil {
		setupLog.Error(err, "unable to set up the SessionStore controller")
		return 1
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		setupLog.Error(err, "unable to set up the health check")
		return 1
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		setupLog.Error(err, "unable to set up the ready check")
		return 1
	}
	setupLog.Info("starting the manager", "version", version.Version, "namespaces", namespacesForLog(namespaces), "cleanupImage", f.cleanupImage)
	if err := mgr.Start(ctx); err != nil {
		setupLog.Error(err, "the manager stopped")
		return 1
	}
	return 0
}

// newManager makes the controller-runtime manager the flags describe.
func newManager(f *managerFlags, namespaces []string) (ctrl.Manager, error) {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1.AddToScheme(scheme))
	metricsOpts := metricsserver.Options{BindAddress: f.metricsAddr, SecureServing: f.secureMetrics}
	if f.secureMetrics {
		metricsOpts.FilterProvider = metricsauth.FilterProvider
	}
	restConfig, err := loadRESTConfig(f.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading the kubeconfig: %w", err)
	}
	return ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        f.probeAddr,
		LeaderElection:                f.leaderElect,
		LeaderElectionID:              controllers.LeaderElectionID,
		LeaderElectionReleaseOnCancel: true,
		Cache:                         controllers.CacheOptions(namespaces),
		PprofBindAddress:              f.pprofAddr,
	})
}

func loadRESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		return ctrl.GetConfig()
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	// As ctrl.GetConfig does: the API server's priority and fairness
	// limits the manager, not client-go's default of 5 requests a second
	// (which made 10,000 new stores take minutes).
	if cfg.QPS == 0 {
		cfg.QPS = -1
	}
	return cfg, nil
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func namespacesForLog(ns []string) string {
	if len(ns) == 0 {
		return "all"
	}
	return fmt.Sprint(ns)
}
