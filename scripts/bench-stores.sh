#!/usr/bin/env bash
# The store comparison of BENCHMARKS.md, in one sitting: llmgate on SQLite, on PostgreSQL
# and on PostgreSQL + Redis, every request through a virtual key with a budget (an rpm
# limit too with Redis), alternating the order each round, then a summary with the ratios
# to SQLite.
#
#   scripts/bench-stores.sh [ROUNDS] [more llmgate-bench arguments]
#
# Default per run: `--workload small --rate 500 --seconds 5` with saturation. Uses the release
# binaries in target/release and plugins/dist; PostgreSQL (PG_DIR, PG_PORT) and Redis
# (REDIS_PORT) as scripts/bench-pg-restart.sh starts them. A fresh database and an empty
# Redis for every run. Results: OUT (default /tmp/bench-stores)/ROUND-STORE.json and .txt.
# Before each run it waits (up to LOCK_WAIT, 300 s) until no cargo build holds
# /tmp/llmgate-build.lock, and says when a build held it at the start or the end of a run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/bench-pg-lib.sh

rounds="${1:-3}"
[ $# -gt 0 ] && shift
out="${OUT:-/tmp/bench-stores}"
mkdir -p "$out"
pg_up >/dev/null
redis_url="$(redis_up)"
lock=/tmp/llmgate-build.lock

run() { # ROUND STORE [more llmgate-bench arguments]
  local round="$1" store="$2"
  shift 2
  local args=(--virtual-key --workload small --rate 500 --seconds 5 --json "$out/$round-$store.json")
  case "$store" in
  postgresql) args+=(--database-url "$(fresh_db llmgate_bench)") ;;
  postgresql-redis)
    args+=(--database-url "$(fresh_db llmgate_bench)" --redis-url "$redis_url")
    redis-cli -p "$redis_port" flushall >/dev/null
    ;;
  esac
  local busy=""
  flock -w "${LOCK_WAIT:-300}" "$lock" true || busy=" (started while a build held the lock)"
  echo "== round $round: $store$busy" >&2
  "$(bench_bin)" "${args[@]}" "$@" >"$out/$round-$store.txt"
  flock -n "$lock" true || echo "   (a build held the lock at the end of this run)" >&2
}

stores=(sqlite postgresql postgresql-redis)
for ((r = 1; r <= rounds; r++)); do
  for ((i = 0; i < 3; i++)); do
    run "$r" "${stores[$(((i + r - 1) % 3))]}" "$@"
  done
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
stores = ["sqlite", "postgresql", "postgresql-redis"]
rows = {s: [] for s in stores}
for r in range(1, rounds + 1):
    for s in stores:
        j = json.load(open(f"{out}/{r}-{s}.json"))
        w = j["workloads"][0]
        via, direct = w["fixed_rate"]["via"], w["fixed_rate"]["direct"]
        sat = w.get("saturation") or {}
        rows[s].append({
            "added p50": w["added_p50_us"], "added p99": w["added_p99_us"],
            "beyond bare p50": w.get("over_bare_p50_us") or 0,
            "via p50": via["latency"]["p50_us"], "via p99": via["latency"]["p99_us"],
            "cpu/req": via["cpu"]["gateway_us"],
            "sat req/s": (sat.get("via") or {}).get("rps", 0),
            "sat cpu/req": ((sat.get("via") or {}).get("cpu") or {}).get("gateway_us", 0),
            "errors": via["errors"] + (sat.get("via") or {}).get("errors", 0),
        })
cols = ["added p50", "added p99", "beyond bare p50", "via p50", "via p99", "cpu/req", "sat req/s", "sat cpu/req", "errors"]
med = {s: {c: statistics.median(x[c] for x in rows[s]) for c in cols} for s in stores}
print("| store | " + " | ".join(f"{c} (median; per round)" for c in cols) + " |")
print("|---" * (len(cols) + 1) + "|")
for s in stores:
    cells = []
    for c in cols:
        per = " / ".join(f"{x[c]:.0f}" for x in rows[s])
        base = med["sqlite"][c]
        ratio = "" if s == "sqlite" or c == "errors" or base <= 0 or med[s][c] < 0 else f" (×{med[s][c] / base:.2f})"
        cells.append(f"**{med[s][c]:.0f}**{ratio}; {per}")
    print(f"| {s} | " + " | ".join(cells) + " |")
PY
