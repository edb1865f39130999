#!/usr/bin/env bash
# Make sure the real services the tests use are installed and reachable on loopback:
#  - MariaDB: use a server on 127.0.0.1:3306 that takes root without a password if there is
#    one; otherwise install the Debian package (when missing) and start a private server
#    under a temporary directory on a free port.
#  - ZooKeeper: install the Debian package (the tests start private servers from it).
#  - promtool (Debian `prometheus`) and chromium for the surface tests; libfaketime (Debian
#    `faketime`) for the clock-skew fault test; `mariadbd` (Debian `mariadb-server-core`, no
#    system service) for the fault tests' private servers.
# Writes the environment the tests need to .test-services.env at the checkout root.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.test-services.env
: > "$out"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  echo "installing Debian packages: ${missing[*]}" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

mysql_ok() { mysql --protocol=tcp -h127.0.0.1 -P"$1" -uroot -e 'select 1' >/dev/null 2>&1; }

apt_install zookeeper default-jre-headless mariadb-client mariadb-server-core prometheus chromium faketime

if command -v mysql >/dev/null && mysql_ok 3306; then
  echo "BKCMDB_TEST_MYSQL=mysql://root@127.0.0.1:3306" >> "$out"
else
  apt_install mariadb-server
  dir=${BKCMDB_MARIADB_DIR:-/tmp/bkcmdb-test-mariadb}
  port=${BKCMDB_MARIADB_PORT:-13306}
  if ! mysql_ok "$port"; then
    if [ ! -d "$dir/data/mysql" ]; then
      mkdir -p "$dir/data"
      mariadb-install-db --no-defaults --datadir="$dir/data" --user=root --auth-root-authentication-method=normal >/dev/null
    fi
    nohup mariadbd --no-defaults --datadir="$dir/data" --user=root --bind-address=127.0.0.1 \
      --port="$port" --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" \
      --skip-log-bin --innodb-flush-log-at-trx-commit=2 --max-connections=500 \
      > "$dir/mysqld.log" 2>&1 &
    for _ in $(seq 1 120); do mysql_ok "$port" && break; sleep 0.5; done
    mysql_ok "$port" || { echo "private MariaDB did not start; see $dir/mysqld.log" >&2; exit 1; }
  fi
  echo "BKCMDB_TEST_MYSQL=mysql://root@127.0.0.1:$port" >> "$out"
fi
echo "services ready: $(tr '\n' ' ' < "$out")" >&2
