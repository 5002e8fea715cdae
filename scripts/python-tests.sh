#!/usr/bin/env bash
# End-to-end tests of the real llmgate binary through the official OpenAI Python SDK, with the
# real llmgate-mock binary as upstream (tests/python/).
#
# Expects the binaries and plugins to be built already:
#   cargo build --release -p llmgate -p llmgate-mock
#   scripts/build-plugins.sh
# Environment (optional): LLMGATE_BIN, LLMGATE_MOCK_BIN, LLMGATE_PLUGINS_DIR, CARGO_TARGET_DIR,
# PYTHON (interpreter used to create the venv, default python3), VENV (default .venv).
# Extra arguments are passed to pytest, e.g. scripts/python-tests.sh -k stream -x
# Exit status: pytest's.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
export LLMGATE_BIN="${LLMGATE_BIN:-$target_dir/release/llmgate}"
export LLMGATE_MOCK_BIN="${LLMGATE_MOCK_BIN:-$target_dir/release/llmgate-mock}"
export LLMGATE_PLUGINS_DIR="${LLMGATE_PLUGINS_DIR:-$root/plugins/dist}"

missing=0
for bin in "$LLMGATE_BIN" "$LLMGATE_MOCK_BIN"; do
  if [ ! -x "$bin" ]; then
    echo "python-tests: missing binary $bin" >&2
    missing=1
  fi
done
if ! ls "$LLMGATE_PLUGINS_DIR"/*.wasm >/dev/null 2>&1; then
  echo "python-tests: no plugins (*.wasm) in $LLMGATE_PLUGINS_DIR" >&2
  missing=1
fi
if [ "$missing" = 1 ]; then
  echo "python-tests: build first: cargo build --release -p llmgate -p llmgate-mock && scripts/build-plugins.sh" >&2
  echo "python-tests: (or set LLMGATE_BIN / LLMGATE_MOCK_BIN / LLMGATE_PLUGINS_DIR)" >&2
  exit 2
fi

venv="${VENV:-$root/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  echo "python-tests: creating $venv" >&2
  "${PYTHON:-python3}" -m venv "$venv"
fi
py="$venv/bin/python"
# Already-satisfied requirements need no network.
"$py" -m pip install -q --disable-pip-version-check -r "$root/tests/python/requirements.txt"

set +e
"$py" -m pytest tests/python -q "$@"
status=$?
set -e
exit "$status"
