#!/usr/bin/env bash
# make demo: a local control plane (etcd + kube-apiserver on loopback), the
# CRD, the operator, and the samples in config/samples; prints what the
# operator made, then stops everything it started.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Where the machine can run a real node (root on Linux, bridges allowed),
# the demo runs there: real Pods, run by a real kubelet (hack/demo-node.sh).
# Elsewhere, or with DEMO_LOCAL=1, it says so and runs what follows: a local
# control plane, with each CronJob's pod template run as a local process.
if [[ "${DEMO_LOCAL:-}" != 1 ]]; then
  if why_not="$(hack/e2e/node.sh check)"; then
    exec hack/demo-node.sh
  fi
  echo "==> this machine cannot run a real node ($why_not): falling back to the local run"
fi
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
VERSION="$(git describe --tags --always --dirty 2>/dev/null || echo dev)"
go build -ldflags "-X github.com/sessionstore/sessionstore-operator/internal/version.Version=$VERSION" -o bin/manager .
echo "operator $(bin/manager --version)"
go build -o bin/controlplane ./hack/controlplane
go build -o bin/runcronjob ./hack/runcronjob

step "starting the stores the samples use, on loopback (Redis, PostgreSQL, MariaDB, memcached, FerretDB)"
hack/start-services.sh
DEMO_DB=sessionstore_demo
psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DEMO_DB WITH (FORCE)" -c "CREATE DATABASE $DEMO_DB"
# The MySQL sample's user and password (config/samples/mysql.yaml).
mysql -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS $DEMO_DB; CREATE DATABASE $DEMO_DB;
  CREATE USER IF NOT EXISTS sessions@'%' IDENTIFIED BY 'change-me'; GRANT ALL ON $DEMO_DB.* TO sessions@'%';
  CREATE USER IF NOT EXISTS sessions@localhost IDENTIFIED BY 'change-me'; GRANT ALL ON $DEMO_DB.* TO sessions@localhost;"
/usr/bin/python3 -c "import pymongo; pymongo.MongoClient('mongodb://127.0.0.1:27017/').drop_database('$DEMO_DB')"
rm -rf "$DEMO_DIR/flask_session" && mkdir -p "$DEMO_DIR/flask_session"

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
bin/manager --metrics-bind-address="$METRICS_ADDR" --metrics-secure=false --probe-interval=30s \
  --health-probe-bind-address=127.0.0.1:18081 \
  --cleanup-image=ghcr.io/sessionstore/sessionstore-operator:demo >"$DEMO_DIR/manager.log" 2>&1 &
manager_pid=$!
pids+=("$manager_pid")
for _ in $(seq 1 60); do curl -fs http://127.0.0.1:18081/readyz >/dev/null 2>&1 && break; sleep 0.5; done
curl -fs http://127.0.0.1:18081/readyz >/dev/null || { echo "the operator is not ready; see $DEMO_DIR/manager.log" >&2; cat "$DEMO_DIR/manager.log" >&2; exit 1; }

step "applying the samples (one SessionStore per backend) into namespace $NS, pointed at the local stores"
# config/samples name in-cluster addresses; this overlay points them here.
mkdir -p "$DEMO_DIR/samples"
cat >"$DEMO_DIR/samples/kustomization.yaml" <<YAML
namespace: $NS
resources:
- ../../../config/samples
patches:
- target: {kind: SessionStore, name: redis-sessions}
  patch: '[{"op": "replace", "path": "/spec/redis", "value": {"address": "127.0.0.1:6379", "db": 0}}]'
- target: {kind: SessionStore, name: memcached-sessions}
  patch: '[{"op": "replace", "path": "/spec/memcached/servers", "value": ["127.0.0.1:11211"]}]'
- target: {kind: Secret, name: mongodb-uri}
  patch: '[{"op": "replace", "path": "/stringData/uri", "value": "mongodb://127.0.0.1:27017/"}]'
- target: {kind: SessionStore, name: mongodb-sessions}
  patch: '[{"op": "replace", "path": "/spec/mongodb/database", "value": "$DEMO_DB"}]'
- target: {kind: Secret, name: postgresql-credentials}
  patch: '[{"op": "replace", "path": "/stringData/username", "value": "postgres"}]'
- target: {kind: SessionStore, name: postgresql-sessions}
  patch: '[{"op": "replace", "path": "/spec/postgresql/host", "value": "127.0.0.1"},
           {"op": "replace", "path": "/spec/postgresql/database", "value": "$DEMO_DB"},
           {"op": "replace", "path": "/spec/postgresql/sslMode", "value": "disable"}]'
- target: {kind: SessionStore, name: mysql-sessions}
  patch: '[{"op": "replace", "path": "/spec/mysql/host", "value": "127.0.0.1"},
           {"op": "replace", "path": "/spec/mysql/database", "value": "$DEMO_DB"},
           {"op": "replace", "path": "/spec/mysql/tls", "value": "disabled"}]'
- target: {kind: SessionStore, name: filesystem-sessions}
  patch: '[{"op": "replace", "path": "/spec/filesystem/path", "value": "$DEMO_DIR/flask_session"}]'
YAML
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -k "$DEMO_DIR/samples"
start=$SECONDS
# The filesystem store is Ready once configured; the others once probed.
if ! kubectl wait -n "$NS" --for=condition=Ready sessionstore --all --timeout=90s; then
  kubectl get sessionstores -n "$NS" -o yaml
  exit 1
fi
echo "    every sample Ready in $((SECONDS - start))s"

step "a real Flask-Session writes live and expired sessions into the stores that need a cleanup"
TESTDATA=internal/sessionstore/storetest/testdata
write() { /usr/bin/python3 "$TESTDATA/$1" "${@:2}" >/dev/null; }
PG_URI="postgresql+psycopg2://postgres@127.0.0.1:5432/$DEMO_DB"
write flask_sqlalchemy_sessions.py write "$PG_URI" sessions 3600 6
write flask_sqlalchemy_sessions.py write "$PG_URI" sessions -600 4
MY_URI="mysql+pymysql://sessions:change-me@127.0.0.1:3306/$DEMO_DB"
write flask_sqlalchemy_mysql.py write "$MY_URI" sessions 3600 6
write flask_sqlalchemy_mysql.py write "$MY_URI" sessions -600 5 # past the 5m grace
write flask_mongodb_sessions.py write mongodb://127.0.0.1:27017/ "$DEMO_DB" sessions session: 3600 5
write flask_mongodb_sessions.py write mongodb://127.0.0.1:27017/ "$DEMO_DB" sessions session: -600 3
write flask_filesystem_sessions.py write "$DEMO_DIR/flask_session" 3600 4
write flask_filesystem_sessions.py write "$DEMO_DIR/flask_session" -600 7
echo "    postgresql: 6 live, 4 expired; mysql: 6 live, 5 expired; mongodb: 5 live, 3 expired; filesystem: 4 live, 7 expired"

step "running each cleanup CronJob's pod template once (no kubelet here: its command and env, as a local process)"
bin/runcronjob --binary bin/manager --namespace "$NS" \
  postgresql-sessions-cleanup mysql-sessions-cleanup mongodb-sessions-cleanup filesystem-sessions-cleanup
kubectl wait -n "$NS" --for=condition=LastCleanupSucceeded --timeout=60s \
  sessionstore/postgresql-sessions sessionstore/mysql-sessions sessionstore/mongodb-sessions sessionstore/filesystem-sessions

step "kubectl get sessionstores -A"
kubectl get sessionstores -A
step "the connection Secrets, cleanup CronJobs and the runs' Jobs"
kubectl get secrets,cronjobs,jobs -A -l app.kubernetes.io/managed-by=sessionstore-operator
step "the connection Secret of postgresql-sessions (keys; values are credentials)"
kubectl get secret -n "$NS" postgresql-sessions-session-store -o go-template='{{range $k, $v := .data}}{{printf "    %s\n" $k}}{{end}}'
step "the operator's metrics for the samples (http://$METRICS_ADDR/metrics)"
curl -fs "http://$METRICS_ADDR/metrics" | grep -E '^sessionstore_' | grep -v '_bucket{' | sed 's/^/    /'
step "the manager's memory"
grep -E 'VmRSS|VmHWM' "/proc/$manager_pid/status" | sed 's/^/    /'
