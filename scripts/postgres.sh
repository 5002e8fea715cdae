#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the tests: `scripts/postgres.sh start DIR
# [PORT]` installs Debian's server if missing, creates a cluster in DIR (as the `postgres`
# user when run as root: initdb refuses root), starts it on 127.0.0.1:PORT (default 55432)
# with its socket in DIR, and prints the admin URL; `scripts/postgres.sh stop DIR` stops it.
# `scripts/postgres.sh start-tls DIR [PORT]` does the same with `ssl = on`: it first makes,
# with the `openssl` CLI, a throwaway CA (DIR/ca.pem), a server certificate it signs for
# 127.0.0.1 and localhost (DIR/server.crt, .key), and a second, unrelated CA
# (DIR/other-ca.pem, for tests of a wrong CA). Plain connections stay allowed, so a client
# that fell back to plain text would be seen connecting.
set -euo pipefail
cmd="${1:?usage: postgres.sh start|start-tls|stop DIR [PORT]}"
dir="${2:?usage: postgres.sh start|start-tls|stop DIR [PORT]}"
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

# A CA and a server certificate for 127.0.0.1/localhost in $1, owned by the cluster's owner.
make_certs() {
  local d="$1"
  if ! command -v openssl >/dev/null; then
    echo "postgres: installing openssl (Debian)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
  fi
  for ca in ca other-ca; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -subj "/CN=llmgate test $ca" -keyout "$d/$ca.key" -out "$d/$ca.pem" 2>/dev/null
  done
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$d/server.ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
    -days 2 -extfile "$d/server.ext" -out "$d/server.crt" 2>/dev/null
  chmod 600 "$d/server.key"
  [ "$(id -u)" = 0 ] && chown postgres "$d/server.key" "$d/server.crt"
  return 0
}

case "$cmd" in
start | start-tls)
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
  ssl=""
  if [ "$cmd" = start-tls ]; then
    make_certs "$dir"
    ssl="-c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key"
  fi
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-k $dir -p $port -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off $ssl" \
    start >/dev/null
  echo "postgresql://postgres@127.0.0.1:$port/postgres"
  ;;
stop)
  bin="$(pg_bin)"
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
  ;;
*)
  echo "usage: postgres.sh start|start-tls|stop DIR [PORT]" >&2
  exit 2
  ;;
esac
