#!/usr/bin/env bash
# Copies what the Helm chart shares with config/ into it: the CRD, and the
# RBAC roles whose rules its templates read (a chart cannot read files
# outside its directory). `make manifests` runs it; test/chart checks the
# copies and the rendered chart against config/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$ROOT/charts/sessionstore-operator"
cp "$ROOT"/config/crd/bases/*.yaml "$CHART/crds/"
for f in role.yaml leader_election_role.yaml metrics_auth_role.yaml metrics_reader_role.yaml \
  sessionstore_editor_role.yaml sessionstore_viewer_role.yaml; do
  cp "$ROOT/config/rbac/$f" "$CHART/files/$f"
done
