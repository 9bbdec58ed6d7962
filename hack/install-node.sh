#!/usr/bin/env bash
# Builds what a real single-node cluster needs besides the control plane, from
# the Go module proxy and Debian's packages, into bin/node/ (bin/k8s/ for the
# Kubernetes commands). A binary already there is reused.
#   kubelet, kube-controller-manager, kube-scheduler, kube-proxy, kubectl -> bin/k8s/ (hack/install-tools.sh)
#   containerd, ctr, containerd-shim-runc-v2, runc, CNI bridge/loopback/host-local, helm -> bin/node/
# The versions are pinned in hack/tools/node/versions.env. Each upstream module
# is built inside its own downloaded directory, so it builds against exactly
# the go.sum its authors tested, not a dependency set merged with ours.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${BIN_DIR:-$ROOT/bin}"
NODE_DIR="$BIN_DIR/node"
# shellcheck source=tools/node/versions.env
source "$ROOT/hack/tools/node/versions.env"
mkdir -p "$NODE_DIR/cni"

log() { echo "[install-node] $*" >&2; }

# No symbol table or DWARF: these binaries are run, never debugged, and
# linking without them is faster (Kubernetes' own release builds strip too).
STRIP="-s -w"

apt_packages() {
  # runc's seccomp support links libseccomp; kube-proxy drives iptables (nft);
  # the node scripts use openssl (certificates), ip (the bridge), setpriv and
  # nft (down deletes the tables iptables-nft leaves).
  local missing=() pkg
  for pkg in libseccomp-dev iptables nftables ca-certificates openssl iproute2 util-linux; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing Debian packages: ${missing[*]}"
  # The lock timeout: hack/start-services.sh may be installing at the same time.
  local apt=(apt-get -o DPkg::Lock::Timeout=600)
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null ||
    { "${apt[@]}" update >/dev/null && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null; }
}

module_dir() { # module@version -> its directory in the module cache
  go mod download -json "$1" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p'
}

# build_in_module name module version stamp-file [go build args...]
# stamp-file records the version a binary set was built from.
build_in_module() {
  local name="$1" mod="$2" version="$3"
  local stamp="$NODE_DIR/.$name.version"
  shift 3
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then return 0; fi
  log "building $name $version (first run only)..."
  local start=$SECONDS dir
  dir="$(module_dir "$mod@$version")"
  (cd "$dir" && GOFLAGS=-mod=readonly "$@")
  echo "$version" > "$stamp"
  log "built $name in $((SECONDS - start))s"
}

build_containerd() {
  local v="$CONTAINERD_VERSION" pkg="github.com/containerd/containerd/v2"
  local ldflags="-X $pkg/version.Version=$v -X $pkg/version.Package=$pkg"
  # One go build for the three: it links one while compiling the next.
  build_in_module containerd "$pkg" "$v" env CGO_ENABLED=0 go build -tags no_btrfs -ldflags "$STRIP $ldflags" \
    -o "$NODE_DIR/" ./cmd/containerd ./cmd/ctr ./cmd/containerd-shim-runc-v2
}

build_runc() {
  # cgo for libseccomp; no libpathrs tag, which needs a Rust library.
  build_in_module runc github.com/opencontainers/runc "$RUNC_VERSION" \
    env CGO_ENABLED=1 go build -tags "seccomp urfave_cli_no_docs" \
    -ldflags "$STRIP -X main.version=${RUNC_VERSION#v}" -o "$NODE_DIR/runc" .
}

build_cni() {
  build_in_module cni github.com/containernetworking/plugins "$CNI_PLUGINS_VERSION" env CGO_ENABLED=0 \
    go build -ldflags "$STRIP" -o "$NODE_DIR/cni/" ./plugins/main/bridge ./plugins/main/loopback ./plugins/ipam/host-local
}

build_helm() {
  local pkg="helm.sh/helm/v4"
  build_in_module helm "$pkg" "$HELM_VERSION" env CGO_ENABLED=0 go build \
    -ldflags "$STRIP -X $pkg/internal/version.version=$HELM_VERSION" -o "$NODE_DIR/helm" ./cmd/helm
}

want="${*:-apt kube containerd runc cni helm}"
for part in $want; do
  case "$part" in
    apt) apt_packages ;;
    kube) "$ROOT/hack/install-tools.sh" kubelet kube-controller-manager kube-scheduler kube-proxy kubectl ;;
    containerd) build_containerd ;;
    runc) build_runc ;;
    cni) build_cni ;;
    helm) build_helm ;;
    *) log "unknown part $part"; exit 2 ;;
  esac
done
