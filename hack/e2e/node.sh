#!/usr/bin/env bash
# A real single-node cluster on this machine, for the e2e and the demo:
#   hack/e2e/node.sh up     etcd, kube-apiserver, kube-controller-manager,
#                           kube-scheduler, containerd + runc, the CNI bridge,
#                           the kubelet and kube-proxy; writes $E2E_DIR/kubeconfig;
#                           with WITH_STORES=1, hack/e2e/stores.sh up alongside
#   hack/e2e/node.sh down   stops all of it and leaves the host as found
#   hack/e2e/node.sh import TARBALL...   loads docker-save tarballs into containerd
# Needs root and Linux. Binaries come from hack/install-node.sh. Facts this
# relies on (cgroup v1, no CAP_SYS_RESOURCE, no DNS for the node) are in
# README.md, "The real-node e2e".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=env.sh
source "$ROOT/hack/e2e/env.sh"
# shellcheck source=down.sh
source "$ROOT/hack/e2e/down.sh"

log() { echo "[node] $(date +%T) $*" >&2; }

# Host paths the kubelet, containerd and CNI create whatever their config
# says; down removes those that were not there before up.
HOST_PATHS=(/var/lib/kubelet /var/log/containers /var/log/pods /run/containerd /run/netns /var/lib/cni
  /opt/containerd /var/lib/containerd /run/nri /var/run/nri /etc/cni /opt/cni /run/mount)

record_host() {
  mkdir -p "$E2E_DIR/host"
  local p
  for p in "${HOST_PATHS[@]}"; do
    [[ -e "$p" ]] && echo "$p"
  done > "$E2E_DIR/host/paths"
  nft list tables 2>/dev/null | sort > "$E2E_DIR/host/nft-tables" || true
}

start() { # name, command... : runs in the background, pid in $E2E_DIR/pids/name
  local name="$1"
  shift
  mkdir -p "$E2E_DIR/pids" "$E2E_DIR/logs"
  "$@" >"$E2E_DIR/logs/$name.log" 2>&1 &
  echo $! > "$E2E_DIR/pids/$name"
}

wait_for() { # what, seconds, command...
  local what="$1" seconds="$2"
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "$what did not come up in ${seconds}s; last log lines:"
      tail -n 30 "$E2E_DIR/logs/$what.log" >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

make_bridge() {
  ip link add "$BRIDGE" type bridge
  ip addr add "$NODE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Service IPs with no rule must not leave by the default route.
  ip route add "$SERVICE_CIDR" dev "$BRIDGE"
}

make_pki() {
  local d="$E2E_DIR/pki"
  mkdir -p "$d"
  (
    cd "$d"
    # P-256 keys: made in milliseconds, where four RSA keys took seconds.
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1)
    openssl req -x509 "${ec[@]}" -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=e2e-ca" 2>/dev/null
    openssl req "${ec[@]}" -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    printf 'subjectAltName=IP:%s,IP:%s,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n' \
      "$SERVICE_IP" "$NODE_IP" > apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    openssl req "${ec[@]}" -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=e2e-admin" 2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out admin.crt 2>/dev/null
    # ServiceAccount tokens signed ES256.
    openssl ecparam -name prime256v1 -genkey -noout -out sa.key 2>/dev/null
    openssl ec -in sa.key -pubout -out sa.pub 2>/dev/null
  )
  kubectl config --kubeconfig "$KUBECONFIG" set-cluster e2e --server "https://$NODE_IP:$APISERVER_PORT" \
    --certificate-authority "$d/ca.crt" --embed-certs >/dev/null
  kubectl config --kubeconfig "$KUBECONFIG" set-credentials admin --client-certificate "$d/admin.crt" \
    --client-key "$d/admin.key" --embed-certs >/dev/null
  kubectl config --kubeconfig "$KUBECONFIG" set-context e2e --cluster e2e --user admin >/dev/null
  kubectl config --kubeconfig "$KUBECONFIG" use-context e2e >/dev/null
}

start_control_plane() {
  local pki="$E2E_DIR/pki"
  start etcd "$K8S_BIN/etcd" --data-dir "$E2E_DIR/etcd" --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --unsafe-no-fsync
  start kube-apiserver "$K8S_BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" --client-ca-file "$pki/ca.crt" \
    --service-cluster-ip-range "$SERVICE_CIDR" --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key"
}

# start_controllers: once the API server is ready (they would only retry).
start_controllers() {
  local pki="$E2E_DIR/pki"
  wait_for kube-apiserver 90 kubectl get --raw /readyz
  start kube-controller-manager "$K8S_BIN/kube-controller-manager" --kubeconfig "$KUBECONFIG" \
    --root-ca-file "$pki/ca.crt" --service-account-private-key-file "$pki/sa.key" --use-service-account-credentials \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --cluster-cidr "$POD_CIDR"
  start kube-scheduler "$K8S_BIN/kube-scheduler" --kubeconfig "$KUBECONFIG" --leader-elect=false \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT"
}

write_containerd_config() {
  mkdir -p "$E2E_DIR/containerd" "$E2E_DIR/cni/net.d"
  cat > "$E2E_DIR/containerd/config.toml" <<EOF
version = 3
root = "$E2E_DIR/containerd/root"
state = "$E2E_DIR/containerd/state"
# Plugins that would write outside the test directory or need what this
# machine lacks.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[plugins.'io.containerd.cri.v1.runtime']
  # No CAP_SYS_RESOURCE here: runc cannot lower oom_score_adj below ours.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$NODE_BIN/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$NODE_BIN/cni"]
    conf_dir = "$E2E_DIR/cni/net.d"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"
EOF
  cat > "$E2E_DIR/cni/net.d/10-e2e.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "e2e", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "isDefaultGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "dataDir": "$E2E_DIR/cni/ipam",
            "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP", "rangeStart": "${POD_CIDR%.*/*}.10"}]]}},
  {"type": "loopback"}]}
EOF
}

write_kubelet_config() {
  mkdir -p "$E2E_DIR/kubelet"
  cat > "$E2E_DIR/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1 (hybrid) and swap, and no iptables chains of ours.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
makeIPTablesUtilChains: false
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
# Reached only from this host's kube-apiserver (kubectl logs).
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
# Nothing may evict the imported images or the test's Pods.
evictionHard: {nodefs.available: "1%", imagefs.available: "1%", memory.available: "100Mi", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
resolvConf: /etc/resolv.conf
serializeImagePulls: false
EOF
}

start_containerd() {
  write_containerd_config
  # The shim is found on PATH.
  start containerd env PATH="$NODE_BIN:$PATH" "$NODE_BIN/containerd" --config "$E2E_DIR/containerd/config.toml"
  wait_for containerd 30 "$NODE_BIN/ctr" --address "$CONTAINERD_SOCK" version
  import_images "$PAUSE_TAR"
}

start_node() {
  write_kubelet_config
  start kubelet "$K8S_BIN/kubelet" --config "$E2E_DIR/kubelet/config.yaml" --kubeconfig "$KUBECONFIG" \
    --root-dir "$E2E_DIR/kubelet/root" --hostname-override "$NODE_IP" --node-ip "$NODE_IP"
  start kube-proxy "$K8S_BIN/kube-proxy" --kubeconfig "$KUBECONFIG" --proxy-mode iptables \
    --cluster-cidr "$POD_CIDR" --hostname-override "$NODE_IP" --conntrack-max-per-core 0 \
    --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
    --iptables-localhost-nodeports=false --healthz-bind-address 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT \
    --metrics-bind-address 127.0.0.1:$KUBE_PROXY_METRICS_PORT
  wait_for kubelet 90 kubectl wait --for=condition=Ready "node/$NODE_IP" --timeout=2s
}

# The pause image outlives the node (down removes $E2E_DIR): kept in bin/,
# rebuilt only when its source changes.
PAUSE_TAR="$BIN_DIR/e2e/pause.tar"
build_pause() {
  if [[ -s "$PAUSE_TAR" && -z "$(find "$ROOT/hack/e2e/pause" -newer "$PAUSE_TAR" -print -quit)" ]]; then
    return 0
  fi
  mkdir -p "$BIN_DIR/e2e"
  CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$BIN_DIR/e2e/pause" "$ROOT/hack/e2e/pause"
  # A builder of its own: make image may be building bin/image-builder now.
  (cd "$ROOT/hack/image" && go build -o "$BIN_DIR/e2e/image-builder" .)
  "$BIN_DIR/e2e/image-builder" -binary "$BIN_DIR/e2e/pause" -entrypoint /pause -user 65535:65535 \
    -ca-certificates "" -tag "$PAUSE_IMAGE" -out "$PAUSE_TAR.tmp"
  mv "$PAUSE_TAR.tmp" "$PAUSE_TAR"
}

import_images() {
  local tarball
  for tarball in "$@"; do
    "$NODE_BIN/ctr" --address "$CONTAINERD_SOCK" -n k8s.io images import --platform linux/amd64 "$tarball" >/dev/null
  done
}

up() {
  [[ "$(id -u)" == 0 && "$(uname -s)" == Linux ]] || { log "needs root on Linux"; exit 1; }
  if [[ -e "$E2E_DIR/pids" ]]; then
    log "a node from an earlier run is still recorded in $E2E_DIR; taking it down first"
    down
  fi
  local start=$SECONDS stores_pid=""
  mkdir -p "$E2E_DIR"
  record_host
  build_pause
  make_bridge
  # The stores need only the bridge: they start while the cluster does.
  if [[ "${WITH_STORES:-}" == 1 ]]; then
    "$ROOT/hack/e2e/stores.sh" up &
    stores_pid=$!
  fi
  make_pki
  start_control_plane
  # containerd and the pause image while the API server starts.
  start_containerd
  start_controllers
  start_node
  if [[ -n "$stores_pid" ]]; then wait "$stores_pid" || { log "the stores did not start"; exit 1; }; fi
  log "up in $((SECONDS - start))s: KUBECONFIG=$KUBECONFIG"
}

# check: can this machine run the node? Says why not on stdout.
check() {
  [[ "$(uname -s)" == Linux ]] || { echo "not Linux"; return 1; }
  [[ "$(id -u)" == 0 ]] || { echo "not root"; return 1; }
  [[ -d /sys/fs/cgroup ]] || { echo "no cgroup filesystem"; return 1; }
  command -v ip >/dev/null || { echo "no ip command (iproute2)"; return 1; }
  if ip link show "$BRIDGE" >/dev/null 2>&1; then echo "bridge $BRIDGE exists: a node is already up"; return 1; fi
  ip link add "$BRIDGE" type bridge 2>/dev/null || { echo "cannot create a bridge (no CAP_NET_ADMIN)"; return 1; }
  ip link delete "$BRIDGE"
}

case "${1:-}" in
  check) check ;;
  up) up ;;
  down) down ;;
  import) shift; import_images "$@" ;;
  *) echo "usage: $0 check|up|down|import TARBALL..." >&2; exit 2 ;;
esac
