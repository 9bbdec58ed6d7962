// Command runcronjob runs a cleanup CronJob's pod template once as a local
// process and records the run as the Job controller and kubelet would
// (internal/localrun), for `make demo` on machines without a kubelet.
//
//	runcronjob --binary bin/manager --namespace demo NAME...
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sessionstore/sessionstore-operator/internal/localrun"
	"github.com/sessionstore/sessionstore-operator/internal/runrecord"
)

func main() {
	binary := flag.String("binary", "bin/manager", "the operator's binary, the image's entrypoint")
	namespace := flag.String("namespace", "default", "namespace of the CronJobs")
	flag.Parse()

	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	cfg, err := ctrl.GetConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "runcronjob: %v\n", err)
		os.Exit(1)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintf(os.Stderr, "runcronjob: %v\n", err)
		os.Exit(1)
	}
	failed := false
	for _, name := range flag.Args() {
		if err := runOne(c, *namespace, name, *binary); err != nil {
			fmt.Fprintf(os.Stderr, "runcronjob: %s: %v\n", name, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func runOne(c client.Client, namespace, name, binary string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cj := &batchv1.CronJob{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, cj); err != nil {
		return err
	}
	run, err := localrun.Execute(ctx, c, cj, binary)
	if err != nil {
		return err
	}
	fmt.Printf("    %s: exit %d: %s\n", name, run.ExitCode, firstLine(run.Stdout))
	_, err = runrecord.Record(ctx, c, cj, run)
	return err
}

func firstLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			return s[:i]
		}
	}
	return s
}
