#!/usr/bin/env bash
# Copies config/ into a new temporary directory with the manager's image set
# to $1 (repository:tag) and prints that directory; the caller removes it.
# The tag is written quoted: a short commit such as 33759e3 is otherwise a
# YAML number, and kustomize refuses the whole install.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
img="${1:?usage: $0 repository:tag}"
tmp="$(mktemp -d)"
cp -r "$ROOT/config" "$tmp/"
sed -i "s|newName: .*|newName: ${img%:*}|; s|newTag: .*|newTag: \"${img##*:}\"|" "$tmp/config/manager/kustomization.yaml"
echo "$tmp"
