#!/usr/bin/env bash
# Installs the Debian packages Strait builds and tests with; does nothing when all are present.
# clang + libclang-rt-14-dev (libclang_rt.fuzzer, only a Recommends of clang on Debian 12) build
# the libFuzzer targets of `make fuzz`.
set -euo pipefail
pkgs=(build-essential pkg-config libev-dev libssl-dev libyajl-dev libcurl4-openssl-dev
      libcmocka-dev libyaml-dev zlib1g-dev libnghttp2-dev curl openssl python3 iproute2
      procps psmisc clang libclang-rt-14-dev python3-yaml python3-jsonschema)
# PCRE2 for the Gateway routes' RegularExpression matches (dataplane/regex.c)
pkgs+=(libpcre2-dev)
# mesh-init's interception (tests/e2e/test_mesh_init.py runs it in namespaces it makes)
pkgs+=(iptables util-linux)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing packages: ${missing[*]} (run 'make deps' as root, or apt-get install them)" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
