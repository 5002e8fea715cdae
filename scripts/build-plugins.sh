#!/usr/bin/env bash
# Build the plugins we ship into plugins/dist/: the Rust guests (wasm32-wasip2 components),
# then the JavaScript ones (every plugins/*/package.json, componentized by its `build` script).
#
# Toolchain: the rustup target wasm32-wasip2 when rustup can install it; otherwise Debian's
# offline toolchain (rustc-web, cargo-web, rust-web-src, lld, wasi-libc) with build-std.
# JavaScript plugins need Node.js 20+ and npm; their build tools come from the npm registry
# at the versions in each plugin's package-lock.json (installed into its node_modules/).
# Usage: scripts/build-plugins.sh [--tests] [OUT_DIR]
#   --tests  build the test plugins (tests/plugins/*) instead, into target/test-plugins/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
src_glob="plugins/*/Cargo.toml"
default_out="$root/plugins/dist"
if [ "${1:-}" = "--tests" ]; then
  shift
  src_glob="tests/plugins/*/Cargo.toml"
  default_out="${CARGO_TARGET_DIR:-$root/target}/test-plugins"
fi
out="${1:-$default_out}"

# Every Rust plugin crate whose package name starts with llmgate-.
rust_plugins=()
for manifest in $src_glob; do
  name=$(sed -n 's/^name = "\(llmgate-[a-z0-9-]*\)"/\1/p' "$manifest" | head -n1)
  [ -n "$name" ] && rust_plugins+=("$name")
done

pkg_args=()
for p in "${rust_plugins[@]}"; do pkg_args+=(-p "$p"); done

use_rustup=0
if command -v rustup >/dev/null 2>&1; then
  if rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 \
     || rustup target add wasm32-wasip2 >/dev/null 2>&1; then
    use_rustup=1
  fi
fi

if [ "$use_rustup" = 1 ]; then
  echo "build-plugins: rustup target wasm32-wasip2" >&2
  cargo build --profile plugin --target wasm32-wasip2 "${pkg_args[@]}"
else
  echo "build-plugins: rustup target unavailable, using Debian's offline wasm toolchain" >&2
  if ! [ -x /usr/bin/cargo ] || ! [ -d /usr/lib/wasm32-wasi ] || ! ls /usr/lib/llvm-*/bin/wasm-ld >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    lld_pkg=$(apt-cache search --names-only '^lld-[0-9]+$' | sort -V | tail -n1 | cut -d' ' -f1)
    apt-get install -y -qq rustc-web cargo-web rust-web-src "${lld_pkg:-lld}" wasi-libc >/dev/null
  fi
  llvm_bin=$(ls -d /usr/lib/llvm-*/bin | sort -V | tail -n1)
  PATH="$llvm_bin:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 RUSTFLAGS="-L /usr/lib/wasm32-wasi" \
    /usr/bin/cargo build --profile plugin -Zbuild-std=std,panic_abort --target wasm32-wasip2 "${pkg_args[@]}"
fi

mkdir -p "$out"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
for p in "${rust_plugins[@]}"; do
  file="${p#llmgate-}"; file="${file#plugin-}"; file="${file#test-}"
  src="$target_dir/wasm32-wasip2/plugin/${p//-/_}.wasm"
  cp "$src" "$out/$file.wasm.tmp" && mv "$out/$file.wasm.tmp" "$out/$file.wasm"
  echo "build-plugins: $out/$file.wasm ($(wc -c <"$out/$file.wasm") bytes)" >&2
done

# JavaScript plugins (not in --tests mode): each plugins/<dir>/package.json names its output
# in `config.wasm`; `npm run build` writes it into $LLMGATE_PLUGINS_OUT. The install keeps to
# package-lock.json; it is `npm install --no-save` rather than `npm ci` because npm ci refuses
# a lockfile whose optional per-platform binaries upstream never published (componentize-qjs,
# rolldown), while npm install skips those and installs exactly the locked versions of
# everything else. Componentizing is not byte-reproducible, and the host caches compiled
# plugins by content hash, so an unchanged plugin is not rebuilt (inputs hash in a stamp).
if [ "$src_glob" = "plugins/*/Cargo.toml" ]; then
  out_abs="$(cd "$out" && pwd)"
  for manifest in plugins/*/package.json; do
    [ -f "$manifest" ] || continue
    dir="$(dirname "$manifest")"
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
      echo "build-plugins: $dir is a JavaScript plugin and needs Node.js 20+ with npm, which are not on PATH" >&2
      echo "build-plugins: install them (Debian: apt-get install nodejs npm) and run this script again" >&2
      exit 1
    fi
    if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
      echo "build-plugins: $dir needs Node.js 20 or newer (found $(node --version))" >&2
      exit 1
    fi
    file=$(node -p "require('./$manifest').config?.wasm ?? ''")
    if [ -z "$file" ]; then
      echo "build-plugins: $manifest sets no config.wasm (the output file name)" >&2
      exit 1
    fi
    inputs=$(cat "$manifest" "$dir/package-lock.json" wit/*.wit $(find "$dir/src" -type f | sort) | sha256sum | cut -d' ' -f1)
    stamp="$dir/node_modules/.llmgate-build"
    if [ -f "$out_abs/$file" ] && [ -f "$stamp" ] \
       && [ "$(cat "$stamp")" = "$inputs $out_abs/$file $(sha256sum <"$out_abs/$file" | cut -d' ' -f1)" ]; then
      echo "build-plugins: $out_abs/$file is up to date" >&2
      continue
    fi
    echo "build-plugins: $dir (npm install, then npm run build)" >&2
    (cd "$dir" && npm install --no-save --prefer-offline --no-audit --no-fund --loglevel=error)
    (cd "$dir" && LLMGATE_PLUGINS_OUT="$out_abs" npm run --silent build)
    echo "$inputs $out_abs/$file $(sha256sum <"$out_abs/$file" | cut -d' ' -f1)" >"$stamp"
    echo "build-plugins: $out_abs/$file ($(wc -c <"$out_abs/$file") bytes)" >&2
  done
fi
