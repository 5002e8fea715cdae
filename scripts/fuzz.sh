#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of every parser of untrusted bytes: the
# request scanner, multipart, the SSE/NDJSON and AWS event-stream framers, the
# OpenAI<->Anthropic conversions and config loading (targets in fuzz/fuzz_targets/).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Builds the targets (their own workspace and target dir, fuzz/target), then runs each for
# SECONDS (default 60) starting from its committed corpus (fuzz/corpus/TARGET, read only:
# new inputs go to a scratch folder). A crash stops that target, keeps the input in
# fuzz/artifacts/TARGET/ and makes the script exit non-zero once every target has run.
# Reproduce one with: RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none TARGET ARTIFACT
#
# Works on stable Rust: libFuzzer needs no sanitizer (`--sanitizer none`), only
# SanitizerCoverage instrumentation, and RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its
# nightly-only flags to the stable compiler. Installs cargo-fuzz if it is missing; skips
# (exit 0, with a message) only when it cannot be installed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

secs="${1:-60}"
[ "$#" -gt 0 ] && shift
case "$secs" in '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2 ;; esac
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^llmgate-fuzz$')
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  if ! cargo install cargo-fuzz --locked; then
    echo "fuzz: SKIPPED: cargo-fuzz is not installed and cannot be installed (cargo install cargo-fuzz --locked failed)" >&2
    exit 0
  fi
fi

export RUSTC_BOOTSTRAP=1
fuzz=(cargo fuzz)
# cargo-fuzz compiles release builds with one codegen unit unless told otherwise: with
# wasmtime and cranelift in the graph that is many minutes on a small machine.
opts=(--fuzz-dir fuzz --sanitizer none --codegen-units 16)

echo "fuzz: building ${#targets[@]} targets ($(cargo fuzz --version))"
"${fuzz[@]}" build "${opts[@]}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${targets[@]}"; do
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus" "fuzz/artifacts/$t" "$scratch/$t"
  echo "fuzz: $t for ${secs}s ($(find "$corpus" -type f | wc -l) corpus inputs)"
  if ! "${fuzz[@]}" run "${opts[@]}" "$t" "$scratch/$t" "$corpus" -- \
      -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="fuzz/artifacts/$t/" >"$scratch/$t.log" 2>&1; then
    tail -n 60 "$scratch/$t.log" >&2
    echo "fuzz: $t FAILED; the input is in fuzz/artifacts/$t/" >&2
    failed+=("$t")
  else
    grep -E '^stat::(number_of_executed_units|new_units_added)' "$scratch/$t.log" | tr '\n' ' '
    echo
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: every target ran ${secs}s without a crash"
