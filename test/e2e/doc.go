// Package e2e is the real-node end-to-end test: the operator's image on a
// single-node cluster that hack/e2e/node.sh brings up, installed the way
// users install it, with every cleanup run as a real Pod by a real kubelet.
// Its tests carry the e2e build tag, so `go test ./...` skips them; `make e2e`
// brings the node up and runs them (hack/e2e/run.sh).
package e2e
