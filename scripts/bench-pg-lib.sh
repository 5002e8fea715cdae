# Helpers of scripts/bench-pg-restart.sh and scripts/bench-stores.sh (sourced, not run):
# the PostgreSQL cluster of scripts/postgres.sh and a Redis, started when not running.
pg_dir="${PG_DIR:-/tmp/pgbench}"
pg_port="${PG_PORT:-55531}"
redis_port="${REDIS_PORT:-55532}"
# The server options scripts/postgres.sh starts the cluster with.
pg_opts="-k $pg_dir -p $pg_port -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"

pg_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1
}

# Run as the cluster's owner (postgres when we are root), as scripts/postgres.sh does.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# The admin URL of the cluster, started (or made, by scripts/postgres.sh) when it is down.
pg_up() {
  local url="postgresql://postgres@127.0.0.1:$pg_port/postgres"
  if psql -X -q -At -c 'SELECT 1' "$url" >/dev/null 2>&1; then
    echo "$url"
  elif [ -f "$pg_dir/data/PG_VERSION" ]; then
    as_owner "$(pg_bin)/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 \
      -o "$pg_opts" start >/dev/null
    echo "$url"
  else
    scripts/postgres.sh start "$pg_dir" "$pg_port"
  fi
}

# A fresh, empty database NAME on the cluster; prints its URL.
fresh_db() {
  local admin="postgresql://postgres@127.0.0.1:$pg_port/postgres"
  psql -X -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" "$admin" >/dev/null
  echo "postgresql://postgres@127.0.0.1:$pg_port/$1"
}

# The command that restarts the cluster (fast shutdown: open sessions are cut); with
# PG_DOWN_SECONDS, a stop, that many seconds down, and a start instead.
pg_restart_command() {
  local owner="" ctl
  [ "$(id -u)" = 0 ] && owner="runuser -u postgres -- "
  ctl="${owner}$(pg_bin)/pg_ctl -D $pg_dir/data -l $pg_dir/server.log -w -t 60"
  if [ -n "${PG_DOWN_SECONDS:-}" ]; then
    echo "$ctl -m fast stop >/dev/null && sleep $PG_DOWN_SECONDS && $ctl -o '$pg_opts' start >/dev/null"
  else
    echo "$ctl -m fast restart >/dev/null"
  fi
}

# The Redis URL, started (no persistence) when nothing answers on the port.
redis_up() {
  if ! redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
    redis-server --port "$redis_port" --save '' --appendonly no --daemonize yes >/dev/null
    sleep 0.5
  fi
  echo "redis://127.0.0.1:$redis_port"
}

# The release llmgate-bench (it finds llmgate and llmgate-mock next to it).
bench_bin() {
  echo "${CARGO_TARGET_DIR:-$root/target}/release/llmgate-bench"
}
