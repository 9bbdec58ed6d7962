//go:build e2e

package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// What hack/e2e/run.sh set up; both installs (kustomize, Helm) name the
// operator's objects alike.
var (
	nodeIP        = envOr("E2E_NODE_IP", "10.251.0.1")
	e2eDir        = envOr("E2E_DIR", "/tmp/sessionstore-e2e")
	installMode   = envOr("E2E_INSTALL", "kustomize")
	operatorNS    = envOr("E2E_OPERATOR_NAMESPACE", "sessionstore-system")
	operatorName  = envOr("E2E_DEPLOYMENT", "sessionstore-controller-manager")
	metricsReader = envOr("E2E_METRICS_READER_ROLE", "sessionstore-metrics-reader")
	operatorImage = os.Getenv("E2E_IMAGE")
	// The password hack/e2e/stores.sh gave MariaDB's sessions user.
	mariadbPassword = envOr("E2E_MARIADB_PASSWORD", "")
	k8sClient       client.Client
	e2eTimeout      = 2 * time.Minute
	poll            = 250 * time.Millisecond
)

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

func TestMain(m *testing.M) {
	// The tests' clients log nothing worth reading; say so, rather than let
	// controller-runtime warn that no logger was set.
	log.SetLogger(logr.Discard())
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := v1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	cfg, err := config.GetConfig()
	if err != nil {
		panic("no cluster: run `make e2e`, which brings the node up (" + err.Error() + ")")
	}
	if k8sClient, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

func ctx() context.Context { return context.Background() }
