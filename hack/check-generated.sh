#!/usr/bin/env bash
# Fails when generated files (CRD, RBAC, deepcopy) differ from what the
# markers produce: generated YAML is never edited by hand.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! git diff --quiet -- config/crd config/rbac api charts/sessionstore-operator/crds charts/sessionstore-operator/files; then
  if [[ "${CI:-}" == "true" ]]; then
    echo "generated files are out of date; run 'make manifests generate' and commit:" >&2
    git --no-pager diff --stat -- config/crd config/rbac api charts/sessionstore-operator/crds charts/sessionstore-operator/files >&2
    exit 1
  fi
  echo "note: generated files changed (make manifests generate); commit them" >&2
fi
