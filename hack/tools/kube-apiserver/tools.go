//go:build tools

// Package tools pins the Kubernetes commands the tests, the demo and the
// real-node e2e build, so `go mod tidy` records every module they need
// (kubelet pulls cadvisor and friends that kube-apiserver does not).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
