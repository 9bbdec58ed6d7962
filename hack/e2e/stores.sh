#!/usr/bin/env bash
# Store instances the e2e's Pods can reach: Pods reach the host only at the
# bridge address, so each store gets an instance of its own listening there
# (the machine's own servers stay on loopback, untouched).
#   hack/e2e/stores.sh up | down
# Data lives in $E2E_DIR/stores; node.sh down removes it with the rest.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=env.sh
source "$ROOT/hack/e2e/env.sh"
STORES="$E2E_DIR/stores"
PG_BIN="/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -n | tail -1)/bin"

log() { echo "[stores] $*" >&2; }

start() { # name, command...
  local name="$1"
  shift
  mkdir -p "$E2E_DIR/pids" "$E2E_DIR/logs"
  "$@" >"$E2E_DIR/logs/store-$name.log" 2>&1 &
  echo $! > "$E2E_DIR/pids/store-$name"
}

wait_port() { # name port
  for _ in $(seq 1 120); do
    (exec 3<>"/dev/tcp/$NODE_IP/$2") 2>/dev/null && return 0
    sleep 0.25
  done
  log "$1 is not listening on $NODE_IP:$2"
  tail -n 20 "$E2E_DIR/logs/store-$1.log" >&2
  return 1
}

start_postgres() {
  local d="$STORES/postgres"
  mkdir -p "$d"
  chown postgres:postgres "$d"
  # PostgreSQL refuses to run as root; setpriv execs, so the pid is the server's.
  setpriv --reuid postgres --regid postgres --init-groups "$PG_BIN/initdb" -D "$d/data" -A trust -U postgres >/dev/null
  echo "host all all $POD_CIDR trust" >> "$d/data/pg_hba.conf"
  start postgres setpriv --reuid postgres --regid postgres --init-groups "$PG_BIN/postgres" -D "$d/data" \
    -c listen_addresses="$NODE_IP" -c port=5432 -c unix_socket_directories="$d" -c fsync=off
  wait_port postgres 5432
}

start_mariadb() {
  local d="$STORES/mariadb"
  mkdir -p "$d"
  # --no-defaults: the machine's own my.cnf names its own user and paths.
  mariadb-install-db --no-defaults --datadir="$d/data" --user=root --skip-test-db \
    --auth-root-authentication-method=normal >"$E2E_DIR/logs/store-mariadb-install.log" 2>&1
  start mariadb /usr/sbin/mariadbd --no-defaults --datadir="$d/data" --user=root --bind-address="$NODE_IP" \
    --port=3306 --socket="$d/mysqld.sock" --pid-file="$d/mysqld.pid" --skip-log-bin
  wait_port mariadb 3306
  # The app and the cleanup use a user of their own, with a password.
  mariadb --no-defaults --socket="$d/mysqld.sock" -u root -e "CREATE DATABASE e2e;
    CREATE USER 'sessions'@'%' IDENTIFIED BY '$MARIADB_PASSWORD'; GRANT ALL ON e2e.* TO 'sessions'@'%';"
}

up() {
  mkdir -p "$STORES"
  start redis redis-server --bind "$NODE_IP" --port 6379 --save "" --appendonly no --dir "$STORES" --protected-mode no
  mkdir -p "$STORES/memcached"
  start memcached memcached -u nobody -l "$NODE_IP" -p 11211 -m 64
  mkdir -p "$STORES/ferretdb"
  start ferretdb "$BIN_DIR/ferretdb" --handler=sqlite --sqlite-url="file:$STORES/ferretdb/" \
    --listen-addr="$NODE_IP:27017" --telemetry=disable --log-level=warn \
    --state-dir="$STORES/ferretdb" --debug-addr=127.0.0.1:0
  # initdb and mariadb-install-db take seconds each: side by side.
  local pids=() pid
  start_postgres &
  pids+=($!)
  if [[ -x /usr/sbin/mariadbd ]]; then
    start_mariadb &
    pids+=($!)
  fi
  for pid in "${pids[@]}"; do wait "$pid"; done
  wait_port redis 6379
  wait_port memcached 11211
  wait_port ferretdb 27017
  log "redis, memcached, ferretdb, postgresql (and mariadb when installed) on $NODE_IP"
}

down() {
  local f pid pids=()
  # All at once. Their data goes with them, so no clean shutdown is needed:
  # SIGKILL, except for PostgreSQL, whose children outlive a killed
  # postmaster a while; its SIGINT (fast shutdown) does not wait for clients.
  for f in "$E2E_DIR"/pids/store-*; do
    [[ -f "$f" ]] || continue
    pid="$(cat "$f")"
    rm -f "$f"
    if [[ "$f" == */store-postgres ]]; then kill -INT "$pid" 2>/dev/null || true; else kill -KILL "$pid" 2>/dev/null || true; fi
    pids+=("$pid")
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$STORES"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
