#!/usr/bin/env bash
# The whole test suite, from a clean clone: installs what it needs (the wasm32-wasip2 target
# or Debian's offline fallback, a Python venv with the openai SDK, Debian's redis-server), builds the plugins and
# test plugins, then runs formatting and lint checks, the Rust unit and end-to-end tests,
# the e2e suite a second time on PostgreSQL (scripts/postgres.sh: Debian's server on
# loopback), the Python SDK tests against the real binaries, the dashboard tests in headless Chromium
# (scripts/ui-tests.sh), and a short fuzzing run of every parser of
# untrusted bytes (FUZZ_SECONDS per target, default 30; scripts/fuzz.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "plugins (wasm32-wasip2 components)"
scripts/build-plugins.sh
scripts/build-plugins.sh --tests

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (every crate, plugins natively)"
cargo clippy --workspace --all-targets -- -D warnings

step "redis-server (Debian's) for the tests of state shared through Redis (tests/e2e/redis.rs)"
if ! command -v redis-server >/dev/null && [ ! -x /usr/bin/redis-server ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
# Each test starts its own on a loopback port; the packaged service is not needed.
export LLMGATE_REDIS_SERVER="${LLMGATE_REDIS_SERVER:-$(command -v redis-server || echo /usr/bin/redis-server)}"

step "cargo test (unit tests of every crate + end-to-end through the real binary)"
cargo test --workspace

step "PostgreSQL store: the store tests and the whole e2e suite again, on a real server on loopback"
pg_dir="$(mktemp -d /tmp/llmgate-pg.XXXXXX)"
chmod 755 "$pg_dir"
pg_port="${LLMGATE_PG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
trap 'scripts/postgres.sh stop "$pg_dir"; rm -rf "$pg_dir"' EXIT
pg_url="$(scripts/postgres.sh start "$pg_dir" "$pg_port")"
LLMGATE_TEST_POSTGRES="$pg_url" cargo test -p llmgate --lib store::
LLMGATE_TEST_POSTGRES="$pg_url" cargo test -p llmgate --test e2e
scripts/postgres.sh stop "$pg_dir"
rm -rf "$pg_dir"
trap - EXIT

step "python SDK tests"
cargo build -p llmgate -p llmgate-mock
target_dir="${CARGO_TARGET_DIR:-$root/target}"
LLMGATE_BIN="$target_dir/debug/llmgate" LLMGATE_MOCK_BIN="$target_dir/debug/llmgate-mock" \
  LLMGATE_PLUGINS_DIR="$root/plugins/dist" scripts/python-tests.sh

step "dashboard tests (/ui in headless Chromium)"
LLMGATE_BIN="$target_dir/debug/llmgate" LLMGATE_MOCK_BIN="$target_dir/debug/llmgate-mock" \
  LLMGATE_PLUGINS_DIR="$root/plugins/dist" scripts/ui-tests.sh

step "fuzzing (every cargo-fuzz target for ${FUZZ_SECONDS:-30}s from its committed corpus)"
scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
