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
  # Without nft (Debian's nftables; install-node.sh installs it) the tables
  # stay, empty; the rest of down must run all the same.
  if [[ -f "$E2E_DIR/host/nft-tables" ]] && command -v nft >/dev/null; then
    { nft list tables 2>/dev/null || true; } | sort | comm -23 - "$E2E_DIR/host/nft-tables" | while read -r _ family name; do
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
  local start=$SECONDS stores_pid=""
  # Stores that hack/e2e/stores.sh started go while the node stops.
  if compgen -G "$E2E_DIR/pids/store-*" >/dev/null; then
    "$ROOT/hack/e2e/stores.sh" down &
    stores_pid=$!
  fi
  # No controller may make new Pods, nor the kubelet restart a container,
  # while the containers are killed. Everything here is stateless or keeps
  # its state in $E2E_DIR, which goes: no graceful exit to wait for. Nor is
  # a graceful deletion of the Pods (seconds): their network namespaces and
  # mounts go with unmount_all, their cgroups with remove_cgroups.
  stop_pids -KILL kube-controller-manager kube-scheduler kubelet kube-proxy
  kill_containers
  stop_pids -KILL containerd
  stop_shims
  stop_pids -KILL kube-apiserver etcd
  if [[ -n "$stores_pid" ]]; then wait "$stores_pid" || true; fi
  log "processes stopped in $((SECONDS - start))s"
  unmount_all
  remove_cgroups
  remove_network
  remove_host_paths
  rm -rf "$E2E_DIR"
  log "down in $((SECONDS - start))s"
}
