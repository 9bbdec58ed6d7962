#!/usr/bin/env bash
# make e2e: a real single-node cluster (hack/e2e/node.sh), the operator's image
# (bin/image.tar, $IMG) imported into its containerd, the stores on the bridge
# address, then the e2e test (test/e2e) twice: once with the operator
# installed by `kubectl apply -k config/default`, once by `helm install`.
# The node is torn down at the end, pass or fail, and the host left as found.
#   IMG=... hack/e2e/run.sh [kustomize] [helm]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source=env.sh
source hack/e2e/env.sh
: "${IMG:?IMG names the image in bin/image.tar (make e2e sets it)}"
PASSES="${*:-kustomize helm}"
OPERATOR_NS=sessionstore-system
RELEASE=sessionstore

log() { echo "[e2e] $(date +%T) $*" >&2; }

teardown() {
  local status=$?
  if ((status != 0)) && [[ -d "$E2E_DIR/logs" ]]; then
    mkdir -p bin/e2e-logs && cp -r "$E2E_DIR/logs/." bin/e2e-logs/ 2>/dev/null || true
    kubectl logs -n "$OPERATOR_NS" deployment/"$RELEASE-controller-manager" --tail=200 > bin/e2e-logs/operator.log 2>&1 || true
    log "failed; the node's and the operator's logs are in bin/e2e-logs/"
  fi
  # It takes the stores down too.
  hack/e2e/node.sh down || true
  exit "$status"
}

install_kustomize() {
  local tmp
  tmp="$(hack/config-with-image.sh "$IMG")"
  kubectl apply --server-side -k "$tmp/config/default" >/dev/null
  rm -rf "$tmp"
}

uninstall_kustomize() {
  kubectl delete --ignore-not-found --wait -k config/default >/dev/null
}

install_helm() {
  # The release's namespace enforces restricted, as config/default's does.
  kubectl create namespace "$OPERATOR_NS" >/dev/null
  kubectl label namespace "$OPERATOR_NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
  helm install "$RELEASE" charts/sessionstore-operator -n "$OPERATOR_NS" --wait --timeout 3m \
    --set image.repository="${IMG%:*}" --set image.tag="${IMG##*:}" --set image.pullPolicy=IfNotPresent >/dev/null
}

uninstall_helm() {
  helm uninstall "$RELEASE" -n "$OPERATOR_NS" --wait >/dev/null
  # Helm keeps CRDs; the pass leaves nothing behind.
  kubectl delete --ignore-not-found crd sessionstores.sessionstore.dev >/dev/null
  kubectl delete --ignore-not-found --wait namespace "$OPERATOR_NS" >/dev/null
}

run_pass() {
  local mode="$1" start=$SECONDS
  log "pass $mode: installing the operator"
  "install_$mode"
  E2E_INSTALL="$mode" E2E_IMAGE="$IMG" E2E_NODE_IP="$NODE_IP" E2E_DIR="$E2E_DIR" E2E_MARIADB_PASSWORD="$MARIADB_PASSWORD" \
    bin/e2e.test -test.v -test.timeout 10m -test.count 1 ${E2E_TEST_RUN:+-test.run "$E2E_TEST_RUN"}
  # Each pass has namespaces and volumes of its own: no need to wait for
  # these to go; the CRD's removal (uninstall) waits for the stores.
  kubectl delete namespace -l e2e-pass="$mode" --wait=false >/dev/null
  kubectl delete pv -l e2e=true --wait=false >/dev/null
  "uninstall_$mode"
  log "pass $mode passed in $((SECONDS - start))s"
}

start=$SECONDS
if ! tar -xOf bin/image.tar manifest.json 2>/dev/null | grep -qF "\"$IMG\""; then
  log "bin/image.tar is not tagged $IMG: run make e2e (or make image IMG=$IMG first)"
  exit 1
fi
hack/install-node.sh
hack/install-tools.sh etcd kube-apiserver ferretdb
# The stores' servers (installed and started on loopback if missing; the
# e2e starts instances of its own on the bridge) and Flask-Session.
hack/start-services.sh
go test -c -tags e2e -o bin/e2e.test ./test/e2e
trap teardown EXIT
WITH_STORES=1 hack/e2e/node.sh up
hack/e2e/node.sh import bin/image.tar
for pass in $PASSES; do run_pass "$pass"; done
log "passed in $((SECONDS - start))s"
