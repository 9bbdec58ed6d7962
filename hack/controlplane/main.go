// Command controlplane runs a local etcd and kube-apiserver (the binaries
// hack/install-tools.sh builds) for `make demo`, writes an admin kubeconfig,
// and stops both on SIGINT/SIGTERM. There is no kubelet: Pods never run.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/sessionstore/sessionstore-operator/internal/testservers"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

func main() {
	assets := flag.String("assets", "bin/k8s", "folder holding kube-apiserver and etcd")
	kubeconfig := flag.String("write-kubeconfig", "bin/demo/kubeconfig", "where to write the admin kubeconfig")
	flag.Parse()

	env, _, err := testservers.StartEnvtest(func() *envtest.Environment {
		return &envtest.Environment{BinaryAssetsDirectory: *assets}
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "controlplane: starting etcd and kube-apiserver: %v\n", err)
		os.Exit(1)
	}
	code := run(env, *kubeconfig)
	if err := env.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "controlplane: stopping: %v\n", err)
	}
	os.Exit(code)
}

func run(env *envtest.Environment, kubeconfig string) int {
	user, err := env.AddUser(envtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "controlplane: adding the admin user: %v\n", err)
		return 1
	}
	data, err := user.KubeConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "controlplane: kubeconfig: %v\n", err)
		return 1
	}
	if err := os.MkdirAll(filepath.Dir(kubeconfig), 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "controlplane: %v\n", err)
		return 1
	}
	tmp := kubeconfig + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil || os.Rename(tmp, kubeconfig) != nil {
		fmt.Fprintf(os.Stderr, "controlplane: writing %s failed\n", kubeconfig)
		return 1
	}
	fmt.Fprintf(os.Stderr, "controlplane: kube-apiserver at %s; kubeconfig %s\n", env.Config.Host, kubeconfig)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	_ = os.Remove(kubeconfig)
	return 0
}
