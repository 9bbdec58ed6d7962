# Settings the node scripts, the stores and the e2e test share. Sourced.
# Addresses and ports stay clear of the machine's own services (which listen
# on loopback) and of envtest's random ports.
BIN_DIR="${BIN_DIR:-$ROOT/bin}"
K8S_BIN="$BIN_DIR/k8s"
NODE_BIN="$BIN_DIR/node"
# Short: the containerd socket's path must fit a sockaddr_un.
E2E_DIR="${E2E_DIR:-/tmp/sessionstore-e2e}"
export KUBECONFIG="$E2E_DIR/kubeconfig"
BRIDGE=e2e0
NODE_IP=10.251.0.1
POD_CIDR=10.251.0.0/24
SERVICE_CIDR=10.0.0.0/24
SERVICE_IP=10.0.0.1
ETCD_PORT=12379
APISERVER_PORT=16443
KCM_PORT=10357
SCHEDULER_PORT=10359
KUBELET_PORT=10250
KUBELET_HEALTHZ_PORT=10248
KUBE_PROXY_HEALTHZ_PORT=10256
KUBE_PROXY_METRICS_PORT=10249
CONTAINERD_SOCK="$E2E_DIR/containerd/containerd.sock"
PAUSE_IMAGE=docker.io/local/pause:1
PATH="$K8S_BIN:$NODE_BIN:$PATH"
MARIADB_PASSWORD="e2e: not a secret @:/?"
