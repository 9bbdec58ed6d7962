#!/usr/bin/env bash
# Makes sure every server the store tests need is installed and listening on
# loopback, starting what is down. Idempotent: run it as often as you like.
#   Redis       127.0.0.1:6379
#   PostgreSQL  127.0.0.1:5432 (trust auth on these machines)
#   memcached   127.0.0.1:11211
#   FerretDB    127.0.0.1:27017 (MongoDB wire protocol, SQLite handler)
#   MariaDB     127.0.0.1:3306 (root with an empty password, database test)
#   MySQL 8.0   127.0.0.1:3307 (root with an empty password, database test)
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
  # The lock timeout: hack/install-node.sh may be installing at the same time.
  if [[ $APT_UPDATED -eq 0 ]]; then apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
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

# MySQL 8.0 comes from Ubuntu 22.04's archive: Debian has no MySQL 8 (sid
# has 9.7 only), and `backend: mysql` promises MySQL 8 as well as MariaDB.
# The pinned .debs (server, client, and the three libraries bookworm lacks)
# are unpacked, not installed, outside the checkout, since the server
# outlives a clone; its binaries find their libraries by LD_LIBRARY_PATH.
MYSQL8_DIR=/opt/sessionstore-mysql8
MYSQL8_VAR=/var/lib/sessionstore-mysql8
MYSQL8_POOL=http://archive.ubuntu.com/ubuntu/pool/main
MYSQL8_DEBS=(
  "m/mysql-8.0/mysql-server-core-8.0_8.0.46-0ubuntu0.22.04.5_amd64.deb ad85bf6b09283bc04d25894e02423fde252ec74cff957b55ec488bd986fe1548"
  "m/mysql-8.0/mysql-client-core-8.0_8.0.46-0ubuntu0.22.04.5_amd64.deb 3e48a09d7d4c9f743d5ea88d939ccdb2f55bb9ee1010c5a8b1a96131021a41a7"
  "i/icu/libicu70_70.1-2_amd64.deb 58a154f6307289813da2276f900498ef536ae7c0522d2cf31a3c3c5cf62dfd9a"
  "p/protobuf/libprotobuf-lite23_3.12.4-1ubuntu7.22.04.6_amd64.deb 725de8c1b36170f69bd1f1e550bbaeee1424ee7ac0d436b65e7737d074700178"
  "libe/libevent/libevent-pthreads-2.1-7_2.1.12-stable-1ubuntu0.2_amd64.deb a96f28db4a73f5c6edef5080ee3bc51e4d53ea203d9294b716e0850c13b67b69"
)

install_mysql8() {
  [[ -x $MYSQL8_DIR/usr/sbin/mysqld ]] && return 0
  log "installing MySQL 8.0 from Ubuntu 22.04's packages into $MYSQL8_DIR..."
  local tmp
  tmp="$(mktemp -d)"
  for entry in "${MYSQL8_DEBS[@]}"; do
    local path="${entry% *}" sum="${entry#* }"
    if ! curl -fsSL -o "$tmp/pkg.deb" "$MYSQL8_POOL/$path" || ! echo "$sum  $tmp/pkg.deb" | sha256sum -c --quiet -; then
      log "ERROR: $path did not download with the pinned SHA256"; rm -rf "$tmp"; return 1
    fi
    dpkg-deb -x "$tmp/pkg.deb" "$tmp/root"
  done
  # Moved in whole, so a failed run leaves nothing that looks installed.
  rm -rf "$MYSQL8_DIR" && mv "$tmp/root" "$MYSQL8_DIR" && rm -rf "$tmp"
}

start_mysql8() {
  listening 127.0.0.1 3307 && return 0
  install_mysql8
  log "starting mysql 8.0"
  local lib="LD_LIBRARY_PATH=$MYSQL8_DIR/usr/lib/x86_64-linux-gnu"
  local opts=(--no-defaults --user=root --basedir="$MYSQL8_DIR/usr"
    --lc-messages-dir="$MYSQL8_DIR/usr/share/mysql" --plugin-dir="$MYSQL8_DIR/usr/lib/mysql/plugin")
  mkdir -p "$MYSQL8_VAR"
  if [[ ! -d $MYSQL8_VAR/data/mysql ]]; then
    rm -rf "$MYSQL8_VAR/data.new"
    env "$lib" "$MYSQL8_DIR/usr/sbin/mysqld" "${opts[@]}" --datadir="$MYSQL8_VAR/data.new" \
      --log-error="$MYSQL8_VAR/initialize.log" --initialize-insecure
    mv "$MYSQL8_VAR/data.new" "$MYSQL8_VAR/data"
  fi
  # setsid: outlive the shell that started it. --secure-file-priv= : the
  # compiled-in directory (/var/lib/mysql-files) does not exist here.
  setsid nohup env "$lib" "$MYSQL8_DIR/usr/sbin/mysqld" "${opts[@]}" --datadir="$MYSQL8_VAR/data" \
    --port=3307 --bind-address=127.0.0.1 --socket="$MYSQL8_VAR/mysqld.sock" --mysqlx=OFF \
    --secure-file-priv= --pid-file="$MYSQL8_VAR/mysqld.pid" --log-error="$MYSQL8_VAR/mysqld.log" \
    >/dev/null 2>&1 &
  wait_port mysql8 127.0.0.1 3307
  # root@localhost has an empty password; the tests connect over TCP.
  env "$lib" "$MYSQL8_DIR/usr/bin/mysql" --no-defaults --protocol=tcp -h 127.0.0.1 -P 3307 -uroot \
    -e "CREATE DATABASE IF NOT EXISTS test"
}

install_pgbouncer() {
  command -v pgbouncer >/dev/null || [[ -x /usr/sbin/pgbouncer ]] || apt_install pgbouncer
}

# python3-cryptography: PyMySQL needs it to log in to MySQL 8
# (caching_sha2_password) with a password over a connection without TLS.
install_flask() {
  apt_install python3-flask python3-flask-session python3-cachelib python3-redis \
    python3-pymongo python3-flask-sqlalchemy python3-psycopg2 python3-memcache python3-pymysql \
    python3-cryptography
}

want="${*:-redis postgres mariadb mysql8 memcached ferretdb flask pgbouncer}"
for svc in $want; do
  case "$svc" in
    redis) start_redis ;;
    postgres) start_postgres ;;
    mariadb) start_mariadb ;;
    mysql8) start_mysql8 ;;
    memcached) start_memcached ;;
    ferretdb) start_ferretdb ;;
    flask) install_flask ;;
    pgbouncer) install_pgbouncer ;;
    *) log "unknown service $svc"; exit 2 ;;
  esac
done
log "ready: $want"
