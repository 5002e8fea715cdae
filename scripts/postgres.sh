#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the tests: `scripts/postgres.sh start DIR
# [PORT]` installs Debian's server if missing, creates a cluster in DIR (as the `postgres`
# user when run as root: initdb refuses root), starts it on 127.0.0.1:PORT (default 55432)
# with its socket in DIR, and prints the admin URL; `scripts/postgres.sh stop DIR` stops it.
set -euo pipefail
cmd="${1:?usage: postgres.sh start|stop DIR [PORT]}"
dir="${2:?usage: postgres.sh start|stop DIR [PORT]}"
port="${3:-55432}"

pg_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1
}

# Run as the cluster's owner: ourselves, or `postgres` when we are root.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
start)
  if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
    echo "postgres: installing the PostgreSQL server (Debian)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  bin="$(pg_bin)"
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir "$dir" --shell /bin/false postgres
  fi
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-k $dir -p $port -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null
  echo "postgresql://postgres@127.0.0.1:$port/postgres"
  ;;
stop)
  bin="$(pg_bin)"
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
  ;;
*)
  echo "usage: postgres.sh start|stop DIR [PORT]" >&2
  exit 2
  ;;
esac
