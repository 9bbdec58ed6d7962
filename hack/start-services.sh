#!/usr/bin/env bash
# Makes sure every server the store tests need is installed and listening on
# loopback, starting what is down. Idempotent: run it as often as you like.
#   Redis       127.0.0.1:6379
#   PostgreSQL  127.0.0.1:5432 (trust auth on these machines)
#   memcached   127.0.0.1:11211
#   FerretDB    127.0.0.1:27017 (MongoDB wire protocol, SQLite handler)
#   MariaDB     127.0.0.1:3306 (root with an empty password, database test)
# and Debian's python3 packages for a real Flask-Session (/usr/bin/python3),
# and Debian's pgbouncer (installed only: the tests start their own).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${BIN_DIR:-$ROOT/bin}"
RUN_DIR="${RUN_DIR:-$ROOT/bin/run}"
mkdir -p "$RUN_DIR"

log() { echo "[start-services] $*" >&2; }

listening() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_port() { # name host port
  for _ in $(seq 1 100); do
    if listening "$2" "$3"; then return 0; fi
    sleep 0.2
  done
  log "ERROR: $1 is not listening on $2:$3"; return 1
}

APT_UPDATED=0
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing ${missing[*]} from Debian's packages..."
  if [[ $APT_UPDATED -eq 0 ]]; then apt-get update -qq >/dev/null; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

start_redis() {
  listening 127.0.0.1 6379 && return 0
  command -v redis-server >/dev/null || apt_install redis-server
  log "starting redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port redis 127.0.0.1 6379
}

start_postgres() {
  listening 127.0.0.1 5432 && return 0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
  fi
  log "starting postgresql"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  wait_port postgresql 127.0.0.1 5432
}

start_memcached() {
  listening 127.0.0.1 11211 && return 0
  command -v memcached >/dev/null || apt_install memcached
  log "starting memcached"
  memcached -d -u nobody -l 127.0.0.1 -p 11211 -m 256
  wait_port memcached 127.0.0.1 11211
}

start_ferretdb() {
  listening 127.0.0.1 27017 && return 0
  "$ROOT/hack/install-tools.sh" ferretdb
  log "starting ferretdb"
  mkdir -p "$RUN_DIR/ferretdb-data"
  # setsid: outlive the shell and process group that started it.
  setsid nohup "$BIN_DIR/ferretdb" --handler=sqlite --sqlite-url="file:$RUN_DIR/ferretdb-data/" \
    --listen-addr=127.0.0.1:27017 --telemetry=disable --log-level=warn --state-dir="$RUN_DIR" \
    >"$RUN_DIR/ferretdb.log" 2>&1 &
  echo $! >"$RUN_DIR/ferretdb.pid"
  wait_port ferretdb 127.0.0.1 27017
}

start_mariadb() {
  listening 127.0.0.1 3306 && return 0
  [[ -x /usr/sbin/mariadbd ]] || apt_install mariadb-server
  log "starting mariadb"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  if [[ ! -d /var/lib/mysql/mysql ]]; then
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  fi
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- \
    --user=mysql --bind-address=127.0.0.1 --port=3306
  wait_port mariadb 127.0.0.1 3306
  # The tests connect as root over TCP with no password (Debian's root
  # authenticates by unix socket only) and expect a database test.
  mariadb -uroot -e "ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');
    CREATE USER IF NOT EXISTS root@'127.0.0.1' IDENTIFIED BY '';
    GRANT ALL ON *.* TO root@'127.0.0.1' WITH GRANT OPTION;
    CREATE DATABASE IF NOT EXISTS test;"
}

install_pgbouncer() {
  command -v pgbouncer >/dev/null || [[ -x /usr/sbin/pgbouncer ]] || apt_install pgbouncer
}

install_flask() {
  apt_install python3-flask python3-flask-session python3-cachelib python3-redis \
    python3-pymongo python3-flask-sqlalchemy python3-psycopg2 python3-memcache python3-pymysql
}

want="${*:-redis postgres mariadb memcached ferretdb flask pgbouncer}"
for svc in $want; do
  case "$svc" in
    redis) start_redis ;;
    postgres) start_postgres ;;
    mariadb) start_mariadb ;;
    memcached) start_memcached ;;
    ferretdb) start_ferretdb ;;
    flask) install_flask ;;
    pgbouncer) install_pgbouncer ;;
    *) log "unknown service $svc"; exit 2 ;;
  esac
done
log "ready: $want"
