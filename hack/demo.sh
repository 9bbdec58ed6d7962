#!/usr/bin/env bash
# make demo: a local control plane (etcd + kube-apiserver on loopback), the
# CRD, the operator, and the samples in config/samples; prints what the
# operator made, then stops everything it started.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEMO_DIR="$ROOT/bin/demo"
KUBECONFIG="$DEMO_DIR/kubeconfig"
export KUBECONFIG
NS=demo
mkdir -p "$DEMO_DIR"
rm -f "$KUBECONFIG"

step() { echo; echo "==> $*"; }
pids=()
cleanup() {
  step "stopping what the demo started"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

step "building the tools (first run only) and the operator"
hack/install-tools.sh etcd kube-apiserver
go build -o bin/manager .
go build -o bin/controlplane ./hack/controlplane

step "starting etcd and kube-apiserver on loopback"
bin/controlplane --assets bin/k8s --write-kubeconfig "$KUBECONFIG" >"$DEMO_DIR/controlplane.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 120); do [[ -s "$KUBECONFIG" ]] && break; sleep 0.5; done
if [[ ! -s "$KUBECONFIG" ]]; then
  echo "the control plane did not start; see $DEMO_DIR/controlplane.log" >&2
  cat "$DEMO_DIR/controlplane.log" >&2
  exit 1
fi
kubectl version 2>/dev/null | sed "s/^/    /" || true

step "installing the CRD"
kubectl apply --server-side -k config/crd
kubectl wait --for=condition=Established crd/sessionstores.sessionstore.dev --timeout=60s

step "starting the operator"
METRICS_ADDR=127.0.0.1:18080
bin/manager --metrics-bind-address="$METRICS_ADDR" --metrics-secure=false \
  --health-probe-bind-address=127.0.0.1:18081 \
  --cleanup-image=ghcr.io/sessionstore/sessionstore-operator:demo >"$DEMO_DIR/manager.log" 2>&1 &
manager_pid=$!
pids+=("$manager_pid")
for _ in $(seq 1 60); do curl -fs http://127.0.0.1:18081/readyz >/dev/null 2>&1 && break; sleep 0.5; done
curl -fs http://127.0.0.1:18081/readyz >/dev/null || { echo "the operator is not ready; see $DEMO_DIR/manager.log" >&2; cat "$DEMO_DIR/manager.log" >&2; exit 1; }

step "applying the samples (one SessionStore per backend) into namespace $NS"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -n "$NS" -k config/samples
start=$SECONDS
if ! kubectl wait -n "$NS" --for=condition=Ready sessionstore --all --timeout=60s; then
  kubectl get sessionstores -n "$NS" -o yaml
  exit 1
fi
echo "    every sample Ready in $((SECONDS - start))s"

step "kubectl get sessionstores -A"
kubectl get sessionstores -A
step "the connection Secrets and cleanup CronJobs the operator made"
kubectl get secrets,cronjobs -A -l app.kubernetes.io/managed-by=sessionstore-operator
step "the connection Secret of postgresql-sessions (keys; values are credentials)"
kubectl get secret -n "$NS" postgresql-sessions-session-store -o go-template='{{range $k, $v := .data}}{{printf "    %s\n" $k}}{{end}}'
step "the manager's memory"
grep -E 'VmRSS|VmHWM' "/proc/$manager_pid/status" | sed 's/^/    /'
