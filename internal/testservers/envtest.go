package testservers

import (
	"fmt"
	"os"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// envtestStartTimeout replaces envtest's 20 s: on two cores shared with other
// control planes and builds, kube-apiserver has been seen to need longer.
const envtestStartTimeout = 2 * time.Minute

// StartEnvtest starts the control plane newEnv describes. envtest gives the
// API server a fixed 5 s to create the default namespace, which a loaded
// machine misses now and then; a fresh control plane is tried again (three
// tries in all) rather than failing the whole suite.
func StartEnvtest(newEnv func() *envtest.Environment) (*envtest.Environment, *rest.Config, error) {
	var errs []error
	for try := 1; try <= 3; try++ {
		env := newEnv()
		if env.ControlPlaneStartTimeout == 0 {
			env.ControlPlaneStartTimeout = envtestStartTimeout
		}
		cfg, err := env.Start()
		if err == nil {
			return env, cfg, nil
		}
		_ = env.Stop()
		errs = append(errs, err)
		fmt.Fprintf(os.Stderr, "envtest: try %d failed to start: %v\n", try, err)
	}
	return nil, nil, fmt.Errorf("the control plane did not start in 3 tries: %v", errs)
}
