// Command pause is the Pod sandbox's process: it holds the Pod's namespaces
// and exits on SIGTERM or SIGINT. The e2e builds it into docker.io/local/pause:1,
// since this machine reaches no registry to pull registry.k8s.io/pause from.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
