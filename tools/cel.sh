#!/usr/bin/env bash
# Prints the folder of the CEL library the tests' evaluator (tools/cel-eval.mjs) loads, installing
# it once into build/tools/cel/: the npm package @marcbachmann/cel-js (no
# dependencies; macros has/all/exists/exists_one/filter/map, size, string functions, matches,
# duration). Idempotent: once installed, it only prints the folder. Progress goes to stderr.
#   tools/cel.sh            -> build/tools/cel   (then: node tools/cel-eval.mjs build/tools/cel)
#   STRAIT_TOOLS_DIR=DIR tools/cel.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${STRAIT_TOOLS_DIR:-$root/build/tools}/cel
pkg=@marcbachmann/cel-js@8.0.0
mod=$dest/node_modules/@marcbachmann/cel-js/package.json

command -v node >/dev/null || { echo "cel.sh: node not found (apt-get install nodejs npm)" >&2; exit 1; }
if [ ! -f "$mod" ] || ! grep -q '"version": "8.0.0"' "$mod"; then
  command -v npm >/dev/null || { echo "cel.sh: npm not found (apt-get install npm)" >&2; exit 1; }
  mkdir -p "$(dirname "$dest")"
  part="$dest.$$"
  trap 'rm -rf "$part"' EXIT
  echo "cel.sh: fetching $pkg from the npm registry" >&2
  mkdir -p "$part"
  (cd "$part" && npm install --silent --no-save --no-audit --no-fund --no-package-lock "$pkg" >/dev/null)
  rm -rf "$dest"
  mv "$part" "$dest"   # same folder, so a concurrent run never sees half an install
fi
echo "$dest"
