#!/usr/bin/env bash
# make demo on a real node (root on Linux): the single-node cluster of the
# e2e (hack/e2e/node.sh), the operator's image installed by
# `kubectl apply -k config/default`, one sample per backend pointed at stores
# on the bridge address, a real Flask-Session writing live and expired
# sessions, each cleanup CronJob run once as a real Pod; then prints
# `kubectl get sessionstores -A`, the Secrets, CronJobs and Jobs, the Pods'
# termination messages and the operator's metrics, and tears the node down.
# hack/demo.sh runs this when the machine allows it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=e2e/env.sh
source hack/e2e/env.sh
NS=demo
OPERATOR_NS=sessionstore-system
VERSION="$(git describe --tags --always --dirty 2>/dev/null || echo dev)"
IMG="${IMG:-ghcr.io/sessionstore/sessionstore-operator:$VERSION}"
CLEANUPS=(postgresql-sessions mysql-sessions mongodb-sessions filesystem-sessions)

START=$SECONDS
step() { echo; echo "==> [$((SECONDS - START))s] $*"; }
teardown() {
  local status=$?
  step "tearing the node down (the host is left as found)"
  # It takes the stores down too, side by side with the node.
  hack/e2e/node.sh down || true
  echo "==> [$((SECONDS - START))s] done"
  exit "$status"
}

step "building the node's binaries (first run only) and the operator's image"
hack/install-tools.sh etcd kube-apiserver ferretdb
# The servers' packages install while the node's binaries build; the demo
# needs no Helm (only the e2e's second pass does).
hack/start-services.sh >bin/demo-services.log 2>&1 &
services_pid=$!
hack/install-node.sh apt kube containerd runc cni
wait "$services_pid" || { cat bin/demo-services.log >&2; exit 1; }
cat bin/demo-services.log
# The image builds while the node comes up; it is needed only to import it.
make --no-print-directory image IMG="$IMG" >bin/demo-image.log 2>&1 &
image_pid=$!

trap teardown EXIT
step "bringing up a single-node cluster: etcd, kube-apiserver, controller-manager, scheduler, containerd, kubelet, kube-proxy; the stores on $NODE_IP"
WITH_STORES=1 hack/e2e/node.sh up
wait "$image_pid" || { cat bin/demo-image.log >&2; exit 1; }
tail -n 1 bin/demo-image.log
hack/e2e/node.sh import bin/image.tar
kubectl get nodes -o wide

step "installing the operator: kubectl apply -k config/default, image $IMG"
tmp="$(hack/config-with-image.sh "$IMG")"
kubectl apply --server-side -k "$tmp/config/default" >/dev/null
rm -rf "$tmp"
# The samples need only the CRD; the operator's Pod starts meanwhile.
kubectl wait --for=condition=Established --timeout=60s crd/sessionstores.sessionstore.dev >/dev/null

step "applying the samples into namespace $NS (restricted), pointed at the stores on $NODE_IP"
kubectl create namespace "$NS" >/dev/null
kubectl label namespace "$NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
# The filesystem sample's claim: a hostPath volume the app writes as uid 1000.
FS_DIR="$E2E_DIR/volumes/demo/flask_session"
mkdir -p "$(dirname "$FS_DIR")" && mkdir -m 0700 "$FS_DIR" && chown 1000:1000 "$FS_DIR"
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: {name: demo-flask-sessions}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: $FS_DIR, type: Directory}
  claimRef: {namespace: $NS, name: flask-sessions}
  storageClassName: ""
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: flask-sessions, namespace: $NS}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: demo-flask-sessions
  resources: {requests: {storage: 1Gi}}
YAML
mkdir -p "$E2E_DIR/samples"
cat >"$E2E_DIR/samples/kustomization.yaml" <<YAML
namespace: $NS
resources:
- $(realpath --relative-to="$E2E_DIR/samples" "$ROOT/config/samples")
patches:
- target: {kind: SessionStore, name: redis-sessions}
  patch: '[{"op": "replace", "path": "/spec/redis", "value": {"address": "$NODE_IP:6379", "db": 0}}]'
- target: {kind: SessionStore, name: memcached-sessions}
  patch: '[{"op": "replace", "path": "/spec/memcached/servers", "value": ["$NODE_IP:11211"]}]'
- target: {kind: Secret, name: mongodb-uri}
  patch: '[{"op": "replace", "path": "/stringData/uri", "value": "mongodb://$NODE_IP:27017/"}]'
- target: {kind: SessionStore, name: mongodb-sessions}
  patch: '[{"op": "replace", "path": "/spec/mongodb/database", "value": "demo"}]'
- target: {kind: Secret, name: postgresql-credentials}
  patch: '[{"op": "replace", "path": "/stringData/username", "value": "postgres"}]'
- target: {kind: SessionStore, name: postgresql-sessions}
  patch: '[{"op": "replace", "path": "/spec/postgresql/host", "value": "$NODE_IP"},
           {"op": "replace", "path": "/spec/postgresql/database", "value": "postgres"},
           {"op": "replace", "path": "/spec/postgresql/sslMode", "value": "disable"}]'
- target: {kind: Secret, name: mysql-credentials}
  patch: '[{"op": "replace", "path": "/stringData/password", "value": "$MARIADB_PASSWORD"}]'
- target: {kind: SessionStore, name: mysql-sessions}
  patch: '[{"op": "replace", "path": "/spec/mysql/host", "value": "$NODE_IP"},
           {"op": "replace", "path": "/spec/mysql/database", "value": "e2e"},
           {"op": "replace", "path": "/spec/mysql/tls", "value": "disabled"}]'
YAML
kubectl apply -k "$E2E_DIR/samples" >/dev/null
# The operator reconciles before its readiness probe first passes (5s in):
# the stores are waited for first, the rollout then.
kubectl wait -n "$NS" --for=condition=CleanupScheduled --timeout=90s "${CLEANUPS[@]/#/sessionstore/}" >/dev/null
kubectl wait -n "$NS" --for=condition=StoreReachable --timeout=90s \
  sessionstore/postgresql-sessions sessionstore/mysql-sessions sessionstore/mongodb-sessions \
  sessionstore/redis-sessions sessionstore/memcached-sessions >/dev/null
kubectl rollout status -n "$OPERATOR_NS" deployment/sessionstore-controller-manager --timeout=3m

step "a real Flask-Session writes live and expired sessions (expired 10 minutes ago: past the 5m grace)"
TESTDATA=internal/sessionstore/storetest/testdata
write() { /usr/bin/python3 "$TESTDATA/$1" "${@:2}" >/dev/null; }
PG_URI="postgresql+psycopg2://postgres@$NODE_IP:5432/postgres"
MY_URI="mysql+pymysql://sessions:$(/usr/bin/python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$MARIADB_PASSWORD")@$NODE_IP:3306/e2e"
# One app per store, side by side.
writers=()
{ write flask_sqlalchemy_sessions.py write "$PG_URI" sessions 3600 6 &&
  write flask_sqlalchemy_sessions.py write "$PG_URI" sessions -600 4; } &
writers+=($!)
{ write flask_sqlalchemy_mysql.py write "$MY_URI" sessions 3600 6 &&
  write flask_sqlalchemy_mysql.py write "$MY_URI" sessions -600 5; } &
writers+=($!)
{ write flask_mongodb_sessions.py write "mongodb://$NODE_IP:27017/" demo sessions session: 3600 5 &&
  write flask_mongodb_sessions.py write "mongodb://$NODE_IP:27017/" demo sessions session: -600 3; } &
writers+=($!)
{ setpriv --reuid 1000 --regid 1000 --clear-groups /usr/bin/python3 "$TESTDATA/flask_filesystem_sessions.py" write "$FS_DIR" 3600 4 >/dev/null &&
  setpriv --reuid 1000 --regid 1000 --clear-groups /usr/bin/python3 "$TESTDATA/flask_filesystem_sessions.py" write "$FS_DIR" -600 7 >/dev/null; } &
writers+=($!)
for pid in "${writers[@]}"; do wait "$pid"; done
echo "    postgresql: 6 live, 4 expired; mysql: 6 live, 5 expired; mongodb: 5 live, 3 expired; filesystem (uid 1000, 0600): 4 live, 7 expired"

step "running each cleanup CronJob once as a real Pod (kubectl create job --from=cronjob/...)"
for store in "${CLEANUPS[@]}"; do
  kubectl create job -n "$NS" --from="cronjob/$store-cleanup" "$store-demo" >/dev/null &
done
wait
# shellcheck disable=SC2046 # one word per Job
kubectl wait -n "$NS" --for=condition=Complete --timeout=120s $(printf 'job/%s-demo ' "${CLEANUPS[@]}") >/dev/null
kubectl wait -n "$NS" --for=condition=LastCleanupSucceeded --timeout=60s "${CLEANUPS[@]/#/sessionstore/}" >/dev/null

step "kubectl get sessionstores -A"
kubectl get sessionstores -A
step "the connection Secrets, cleanup CronJobs, Jobs and Pods"
kubectl get secrets,cronjobs,jobs,pods -n "$NS"
step "each cleanup Pod's termination message, as the kubelet read it"
kubectl get pods -n "$NS" -l job-name -o go-template='{{range .items}}{{printf "    %-40s %s\n" .metadata.name (index .status.containerStatuses 0).state.terminated.message}}{{end}}'
step "the operator's metrics, scraped from its Pod with a ServiceAccount token"
kubectl create serviceaccount -n "$OPERATOR_NS" demo-scraper >/dev/null
kubectl create clusterrolebinding demo-scraper --clusterrole=sessionstore-metrics-reader \
  --serviceaccount="$OPERATOR_NS:demo-scraper" >/dev/null
token="$(kubectl create token -n "$OPERATOR_NS" demo-scraper)"
pod_ip="$(kubectl get pods -n "$OPERATOR_NS" -l control-plane=controller-manager -o jsonpath='{.items[0].status.podIP}')"
curl -fsk -H "Authorization: Bearer $token" "https://$pod_ip:8443/metrics" | grep -E '^sessionstore_' | grep -v '_bucket{' | sed 's/^/    /'
