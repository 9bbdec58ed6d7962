# Tear-down of the real node (sourced by node.sh): processes, mounts, the
# bridge, cgroups, iptables/nft tables and host paths, back as they were.

# stop_pids [-KILL] name...: SIGTERM (or SIGKILL) to each recorded process at
# once, then waits up to 10s for them all and kills what is left.
stop_pids() {
  local sig=TERM name pid pids=()
  if [[ "$1" == -KILL ]]; then sig=KILL; shift; fi
  for name in "$@"; do
    [[ -f "$E2E_DIR/pids/$name" ]] || continue
    pid="$(cat "$E2E_DIR/pids/$name")"
    rm -f "$E2E_DIR/pids/$name"
    kill "-$sig" "$pid" 2>/dev/null && pids+=("$pid:$name")
  done
  for _ in $(seq 1 40); do
    local alive=0 entry
    for entry in "${pids[@]}"; do kill -0 "${entry%%:*}" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.25
  done
  for entry in "${pids[@]}"; do
    if kill -0 "${entry%%:*}" 2>/dev/null; then
      log "${entry#*:} ignored SIGTERM for 10s; killing it"
      kill -KILL "${entry%%:*}" 2>/dev/null || true
    fi
  done
}

delete_pods() {
  # Graceful deletion needs the kubelet, which is still running here.
  kubectl delete pods --all --all-namespaces --grace-period=1 --wait=false >/dev/null 2>&1 || true
  for _ in $(seq 1 60); do
    [[ -z "$(kubectl get pods -A -o name 2>/dev/null)" ]] && return 0
    sleep 0.5
  done
  kubectl delete pods --all --all-namespaces --force --grace-period=0 >/dev/null 2>&1 || true
}

kill_containers() {
  local ctr=("$NODE_BIN/ctr" --address "$CONTAINERD_SOCK" -n k8s.io) task
  [[ -S "$CONTAINERD_SOCK" ]] || return 0
  for task in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
    "${ctr[@]}" tasks kill -s KILL "$task" >/dev/null 2>&1 || true
  done
}

# Shims outlive containerd; ours run our own shim binary, so match it by path.
stop_shims() {
  local pid exe
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
    [[ "$exe" == "$NODE_BIN/containerd-shim-runc-v2" ]] && kill -KILL "$pid" 2>/dev/null || true
  done
}

unmount_all() {
  local m
  # Deepest first, so nested mounts come off before their parents.
  for m in $(awk '{print $5}' /proc/self/mountinfo | grep -E "^($E2E_DIR/|/run/netns/cni-|/run/containerd/)" | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -f /run/netns/cni-* 2>/dev/null || true
}

remove_cgroups() {
  local d
  # Children before parents; rmdir only removes empty cgroups.
  for d in $(find /sys/fs/cgroup -depth -type d -path '*kubepods*' 2>/dev/null); do
    rmdir "$d" 2>/dev/null || true
  done
}

remove_network() {
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE"
  local table
  # kube-proxy --cleanup empties its chains; iptables-nft leaves the tables.
  [[ -x "$K8S_BIN/kube-proxy" ]] && "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  if [[ -f "$E2E_DIR/host/nft-tables" ]]; then
    nft list tables 2>/dev/null | sort | comm -23 - "$E2E_DIR/host/nft-tables" | while read -r _ family name; do
      nft delete table "$family" "$name" 2>/dev/null || true
    done
  fi
}

remove_host_paths() {
  local p
  [[ -f "$E2E_DIR/host/paths" ]] || return 0
  for p in "${HOST_PATHS[@]}"; do
    grep -qxF "$p" "$E2E_DIR/host/paths" || rm -rf "$p"
  done
}

down() {
  local start=$SECONDS
  # No controller may make new Pods while the kubelet stops the old ones.
  # Stateless, or with state that goes with $E2E_DIR: no need to wait for a
  # graceful exit.
  stop_pids -KILL kube-controller-manager kube-scheduler
  if [[ -f "$E2E_DIR/pids/kubelet" ]]; then delete_pods; fi
  log "pods deleted"
  stop_pids kube-proxy kubelet
  kill_containers
  stop_pids containerd
  stop_shims
  stop_pids -KILL kube-apiserver etcd
  log "processes stopped"
  unmount_all
  remove_cgroups
  remove_network
  remove_host_paths
  rm -rf "$E2E_DIR"
  log "down in $((SECONDS - start))s"
}
