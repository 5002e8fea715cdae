#!/usr/bin/env bash
# End-to-end tests of the dashboard (/ui) in headless Chromium: the real llmgate binary in
# front of the real llmgate-mock, driven through playwright-core (tests/ui/).
#
# Installs what it needs on a clean machine: Debian's chromium (when /usr/bin/chromium is
# missing), nodejs and npm (when node is missing), and tests/ui's pinned packages (npm ci).
# Expects the debug binaries and plugins to be built already:
#   cargo build -p llmgate -p llmgate-mock && scripts/build-plugins.sh
# Environment (optional): LLMGATE_BIN, LLMGATE_MOCK_BIN, LLMGATE_PLUGINS_DIR, CARGO_TARGET_DIR,
# CHROMIUM, UI_TEST_TIMEOUT (seconds, default 300).
# Exit status: the test run's.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
if [ -z "${CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
  echo "ui-tests: installing chromium" >&2
  apt_install chromium
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "ui-tests: installing nodejs and npm" >&2
  apt_install nodejs npm
fi

target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
export LLMGATE_BIN="${LLMGATE_BIN:-$target_dir/debug/llmgate}"
export LLMGATE_MOCK_BIN="${LLMGATE_MOCK_BIN:-$target_dir/debug/llmgate-mock}"
export LLMGATE_PLUGINS_DIR="${LLMGATE_PLUGINS_DIR:-$root/plugins/dist}"
for bin in "$LLMGATE_BIN" "$LLMGATE_MOCK_BIN"; do
  if [ ! -x "$bin" ]; then
    echo "ui-tests: missing binary $bin; build first: cargo build -p llmgate -p llmgate-mock" >&2
    exit 2
  fi
done
if ! ls "$LLMGATE_PLUGINS_DIR"/*.wasm >/dev/null 2>&1; then
  echo "ui-tests: no plugins in $LLMGATE_PLUGINS_DIR; build first: scripts/build-plugins.sh" >&2
  exit 2
fi

cd tests/ui
npm ci --no-audit --no-fund --loglevel=error
timeout --kill-after=10 "${UI_TEST_TIMEOUT:-300}" node --test --test-concurrency=1 dashboard.test.mjs
