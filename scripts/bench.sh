#!/usr/bin/env bash
# Build the plugins, the gateway, the mock upstream and the benchmark (release), then run the
# benchmark with the given arguments, e.g. `scripts/bench.sh --seconds 5 --json bench.json`.
# See `scripts/bench.sh --help` for every option.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/build-plugins.sh
cargo build --release -p llmgate -p llmgate-mock -p llmgate-bench
target_dir="${CARGO_TARGET_DIR:-$root/target}"
exec "$target_dir/release/llmgate-bench" "$@"
