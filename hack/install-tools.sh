#!/usr/bin/env bash
# Builds the binaries the tests and the demo need, from the Go module proxy,
# into bin/ (or $BIN_DIR). A binary already there is reused.
#   kube-apiserver, etcd  -> bin/k8s/   (envtest's BinaryAssetsDirectory)
#   ferretdb              -> bin/
#   controller-gen        -> bin/
# and, for the real-node e2e (hack/install-node.sh asks for them):
#   kubelet, kube-controller-manager, kube-scheduler, kube-proxy, kubectl -> bin/k8s/
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${BIN_DIR:-$ROOT/bin}"
K8S_DIR="$BIN_DIR/k8s"
CONTROLLER_TOOLS_VERSION="${CONTROLLER_TOOLS_VERSION:-v0.23.0}"
FERRETDB_VERSION="v1.24.2"
mkdir -p "$K8S_DIR"

log() { echo "[install-tools] $*" >&2; }

# kubectl has no --version flag; every other command does.
reported_version() {
  "$1" --version 2>/dev/null || "$1" version --client 2>/dev/null
}

# No symbol table or DWARF: these binaries are run, never debugged, and
# linking without them is faster (Kubernetes' own release builds strip too).
STRIP="-s -w"

have_tool() { # output, [version it must report]
  [[ -x "$1" ]] && { [[ -z "${2:-}" ]] || reported_version "$1" | grep -qF "$2"; }
}

build_tool() { # name, module dir, package, output, [ldflags, version it must report]
  local name="$1" dir="$2" pkg="$3" out="$4" ldflags="${5:-}" want="${6:-}"
  have_tool "$out" "$want" && return 0
  log "building $name (first run only; kube-apiserver takes ~5 minutes on 2 quiet cores)..."
  local start=$SECONDS
  (cd "$ROOT/hack/tools/$dir" && go build -ldflags "$STRIP $ldflags" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  log "built $name in $((SECONDS - start))s"
}

# build_kube_commands builds the named Kubernetes commands that are missing
# in one go build, which links one while it compiles the next.
build_kube_commands() {
  local missing=() pkgs=() tool tmp start=$SECONDS
  for tool in "$@"; do
    have_tool "$K8S_DIR/$tool" "$KUBE_VERSION" || missing+=("$tool")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "building ${missing[*]} (first run only; about 5 minutes on 2 quiet cores)..."
  for tool in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$tool"); done
  tmp="$(mktemp -d "$K8S_DIR/.build.XXXXXX")"
  (cd "$ROOT/hack/tools/kube-apiserver" && go build -ldflags "$STRIP $(kube_version_ldflags)" -o "$tmp/" "${pkgs[@]}")
  for tool in "${missing[@]}"; do mv "$tmp/$tool" "$K8S_DIR/$tool"; done
  rmdir "$tmp"
  log "built ${missing[*]} in $((SECONDS - start))s"
}

build_ferretdb() {
  local out="$BIN_DIR/ferretdb"
  if [[ -x "$out" ]]; then return 0; fi
  log "building ferretdb $FERRETDB_VERSION (first run only, ~1 minute)..."
  local start=$SECONDS work
  # FerretDB reads its version from an embedded file that the module zip
  # lacks; vendor the module in a scratch copy and write it there.
  work="$(mktemp -d)"
  cp "$ROOT/hack/tools/ferretdb/"{go.mod,go.sum,tools.go} "$work/"
  (cd "$work" && go mod vendor &&
    echo "$FERRETDB_VERSION" > vendor/github.com/FerretDB/FerretDB/build/version/version.txt &&
    go build -mod=vendor -ldflags "$STRIP" -o "$out.tmp" github.com/FerretDB/FerretDB/cmd/ferretdb)
  rm -rf "$work"
  mv "$out.tmp" "$out"
  log "built ferretdb in $((SECONDS - start))s"
}

build_controller_gen() {
  local out="$BIN_DIR/controller-gen"
  if [[ -x "$out" ]] && "$out" --version 2>/dev/null | grep -q "$CONTROLLER_TOOLS_VERSION"; then return 0; fi
  log "installing controller-gen $CONTROLLER_TOOLS_VERSION..."
  GOBIN="$BIN_DIR" go install "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_TOOLS_VERSION"
}

# The version Kubernetes' own build stamps in, read from the tools module, so
# the control plane reports v1.37.2 rather than v0.0.0-master.
KUBE_VERSION="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$ROOT/hack/tools/kube-apiserver/go.mod")"
kube_version_ldflags() {
  local major minor v="${KUBE_VERSION#v}"
  major="${v%%.*}"; minor="${v#*.}"; minor="${minor%%.*}"
  local flags="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean"
  done
  echo "$flags"
}

want="${*:-controller-gen etcd kube-apiserver ferretdb}"
node_commands=()
for tool in $want; do
  case "$tool" in
    controller-gen) build_controller_gen ;;
    etcd) build_tool etcd etcd go.etcd.io/etcd/server/v3 "$K8S_DIR/etcd" ;;
    kube-apiserver) build_tool kube-apiserver kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$K8S_DIR/kube-apiserver" \
      "$(kube_version_ldflags)" "Kubernetes $KUBE_VERSION" ;;
    kubelet|kube-controller-manager|kube-scheduler|kube-proxy|kubectl) node_commands+=("$tool") ;;
    ferretdb) build_ferretdb ;;
    *) log "unknown tool $tool"; exit 2 ;;
  esac
done
[[ ${#node_commands[@]} -eq 0 ]] || build_kube_commands "${node_commands[@]}"
