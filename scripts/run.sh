#!/usr/bin/env bash
# Build the plugins and the gateway (release), then run it with the given arguments.
# With no arguments it serves on port 4000 with the plugins from plugins/dist and no models;
# pass --model provider/model or --config config.yaml (every llmgate flag works).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/build-plugins.sh
cargo build --release -p llmgate
exec "${CARGO_TARGET_DIR:-$root/target}/release/llmgate" --plugins-dir "$root/plugins/dist" "$@"
