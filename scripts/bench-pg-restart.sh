#!/usr/bin/env bash
# The PostgreSQL restart run of BENCHMARKS.md: steady load through llmgate on PostgreSQL,
# the server restarted (`pg_ctl restart -m fast`) mid-run, then the answers per second,
# the longest time with no 200, and the books (every 200 has its spend log row; the key's
# spend equals the sum of its rows, through the admin API and in the database).
#
#   scripts/bench-pg-restart.sh [--redis] [more llmgate-bench arguments]
#
# Uses the release binaries in target/release (build them first: cargo build --release -p
# llmgate -p llmgate-mock -p llmgate-bench) and plugins/dist. The cluster is the one
# scripts/postgres.sh makes, in PG_DIR (default /tmp/pgbench) on PG_PORT (55531), started
# here when it is not running; each run gets a fresh database `llmgate_bench_restart`.
# With --redis, also the Redis on REDIS_PORT (55532), started here when it is not running.
# RATE (200 req/s), RUN_SECONDS (30) and RESTART_AT (10 s) shape the run; PG_DOWN_SECONDS=N
# stops the server, waits N seconds and starts it instead of `restart` (a longer outage).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/bench-pg-lib.sh

redis=()
if [ "${1:-}" = "--redis" ]; then
  shift
  redis=(--redis-url "$(redis_up)")
fi
admin_url="$(pg_up)"
db_url="$(fresh_db llmgate_bench_restart)"
restart="$(pg_restart_command)"
exec "$(bench_bin)" --workload small --rate "${RATE:-200}" --seconds "${RUN_SECONDS:-30}" \
  --restart-at "${RESTART_AT:-10}" --database-url "$db_url" "${redis[@]}" \
  --restart-postgres "$restart" "$@"
