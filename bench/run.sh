#!/usr/bin/env bash
# `make bench`: Strait side by side with nginx and HAProxy on one backend, using the shared
# reference harness (../shared/bench/peers.sh, or bench/peers.sh when present).
# Strait runs as controller (file mode, one catch-all Ingress to the harness's backend) plus
# data plane with one worker; the harness pins it to CPU 0 like the peers.
# Usage: bench/run.sh [-s SECONDS] [-c CONNECTIONS]   (BUILD=dir to pick the binaries)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build}
harness=bench/peers.sh
[ -x "$harness" ] || harness=../shared/bench/peers.sh
[ -x "$harness" ] || { echo "bench: no harness found (bench/peers.sh or ../shared/bench/peers.sh)" >&2; exit 2; }
tmp=$(mktemp -d /tmp/strait-benchcfg.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/ours.sh" <<SH
#!/usr/bin/env bash
# Started by the harness with OURS_PORT and BACKEND_PORT exported.
set -eu
m=$tmp/manifests; mkdir -p "\$m"
cat > "\$m/bench.yaml" <<YAML
apiVersion: v1
kind: Service
metadata: {name: be, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: be-1, namespace: default, labels: {kubernetes.io/service-name: be}}
addressType: IPv4
ports: [{name: http, port: \$BACKEND_PORT}]
endpoints: [{addresses: [127.0.0.1]}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bench, namespace: default}
spec:
  ingressClassName: strait
  defaultBackend: {service: {name: be, port: {number: 80}}}
YAML
$PWD/$build/strait-controller --manifests "\$m" --socket $tmp/ctl.sock --log-level warn &
exec $PWD/$build/strait-dataplane --socket $tmp/ctl.sock --listen 127.0.0.1:\$OURS_PORT --workers 1 --log-level warn
SH
chmod +x "$tmp/ours.sh"
OURS_CMD="$tmp/ours.sh" OURS_NAME=strait "$harness" "$@"
