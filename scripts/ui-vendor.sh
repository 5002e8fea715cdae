#!/usr/bin/env bash
# Refreshes the dashboard's vendored front-end files (host/ui/vendor/) from the npm
# registry: `npm pack` of each pinned package, then a copy of its published files and
# LICENSE. hooks.mjs imports the bare specifier "preact"; the copy points it at
# ./preact.mjs (the page's CSP forbids the inline import map a bare specifier would need).
# Usage: scripts/ui-vendor.sh   (edit the versions below to update; see host/ui/README.md)
set -euo pipefail
PREACT=11.2.0
HTM=3.1.1
UPLOT=1.6.32

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/host/ui/vendor"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
for p in "preact@$PREACT" "htm@$HTM" "uplot@$UPLOT"; do
  name=${p%@*}
  mkdir -p "$name"
  tar xzf "$(npm pack --silent "$p")" -C "$name"
done
mkdir -p "$out"
cp preact/package/dist/preact.mjs "$out/preact.mjs"
sed 's/from"preact"/from"\.\/preact.mjs"/g' preact/package/hooks/dist/hooks.mjs >"$out/hooks.mjs"
grep -q 'from"./preact.mjs"' "$out/hooks.mjs"
cp preact/package/LICENSE "$out/LICENSE.preact"
cp htm/package/dist/htm.mjs "$out/htm.mjs"
cp htm/package/LICENSE "$out/LICENSE.htm"
cp uplot/package/dist/uPlot.iife.min.js "$out/uPlot.iife.min.js"
cp uplot/package/dist/uPlot.min.css "$out/uPlot.min.css"
cp uplot/package/LICENSE "$out/LICENSE.uplot"
echo "vendored preact@$PREACT htm@$HTM uplot@$UPLOT into $out"
