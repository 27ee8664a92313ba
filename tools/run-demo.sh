#!/usr/bin/env bash
# `make run`: the demo stack on loopback. Starts the demo backends of manifests/examples/
# (tools/backend.py on 127.0.0.1:9001-9006), strait-controller in file mode on that folder,
# and strait-dataplane on 127.0.0.1:8080 (admin 127.0.0.1:8081); waits until the data plane
# is ready, prints requests to try, then runs until Ctrl-C or SIGTERM, which stop everything
# this script started. Logs go to .run/logs/.
#
# Usage: tools/run-demo.sh [BUILD_DIR]      (default: build)
# Env:   STRAIT_LISTEN (127.0.0.1:8080)  STRAIT_ADMIN (127.0.0.1:8081)  STRAIT_MANIFESTS
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
listen=${STRAIT_LISTEN:-127.0.0.1:8080}
admin=${STRAIT_ADMIN:-127.0.0.1:8081}
manifests=${STRAIT_MANIFESTS:-manifests/examples}
run_dir=.run
log_dir=$run_dir/logs
sock=$run_dir/strait.sock
backends=("app-v1 9001" "app-v2 9002" "api 9003" "static 9004" "tenant 9005" "fallback 9006")

die() { echo "run-demo: $*" >&2; exit 1; }

for b in strait-controller strait-dataplane; do
  [ -x "$build/$b" ] || die "$build/$b not found: build it first (make all)"
done
command -v curl >/dev/null || die "curl not found (make deps installs it)"

port_busy() { # $1 = port on 127.0.0.1; true if something accepts connections there
  python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
# like the servers themselves: connections in TIME_WAIT from a previous run do not count
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
sys.exit(1)
EOF
}
busy=()
for b in "${backends[@]}"; do set -- $b; port_busy "$2" && busy+=("$2"); done
for hp in "$listen" "$admin"; do port_busy "${hp##*:}" && busy+=("${hp##*:}"); done
if [ ${#busy[@]} -gt 0 ]; then
  die "port(s) ${busy[*]} on 127.0.0.1 already in use (another 'make run'?). Stop whatever
listens there (ss -ltnp 'sport = :PORT' shows it) or set STRAIT_LISTEN/STRAIT_ADMIN."
fi

mkdir -p "$log_dir"
pids=()
cleanup() {
  trap - INT TERM EXIT
  trap '' PIPE # stdout may be a pipe whose reader died with the same Ctrl-C: keep going
  local p
  for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 50); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null; done
  rm -f "$sock"
  echo "run-demo: stopped" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start() { # $1 = log name, rest = command; each in its own process group
  local name=$1; shift
  setsid "$@" >"$log_dir/$name.log" 2>&1 &
  pids+=($!)
}

for b in "${backends[@]}"; do
  set -- $b
  start "backend-$1" python3 tools/backend.py --name "$1" --port "$2"
done
start controller "$build/strait-controller" --manifests "$manifests" --socket "$sock"
start dataplane "$build/strait-dataplane" --socket "$sock" --listen "$listen" --admin "$admin"

# Ready when every backend accepts connections and the data plane has applied a snapshot
# (admin /ready answers 200).
backends_up() {
  local b
  for b in "${backends[@]}"; do set -- $b; port_busy "$2" || return 1; done
}
deadline=$((SECONDS + 20))
until backends_up && [ "$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' "http://$admin/ready")" = 200 ]; do
  for p in "${pids[@]}"; do
    kill -0 "$p" 2>/dev/null || { tail -n 20 "$log_dir"/*.log; die "a process exited early (logs above)"; }
  done
  [ $SECONDS -ge $deadline ] && { tail -n 20 "$log_dir"/*.log; die "data plane not ready after 20 s"; }
  sleep 0.1
done

url=http://$listen
cat <<EOF

Strait demo is up: data plane $url, admin http://$admin, manifests in $manifests/
(edit them and watch the routes change). Logs: $log_dir/. Ctrl-C stops everything.

Try:
  curl -H 'Host: app.example.com' $url/                  # app-v1 / app-v2, round robin
  curl -H 'Host: app.example.com' $url/static/logo.png    # static (Prefix /static)
  curl -H 'Host: app.example.com' $url/staticfoo          # app (Prefix is element-wise)
  curl -H 'Host: api.example.com' $url/v1/users?id=7      # api
  curl -H 'Host: api.example.com' $url/healthz            # static (Exact /healthz)
  curl -H 'Host: api.example.com' $url/other              # fallback (spec.defaultBackend)
  curl -H 'Host: shop.example.com' $url/                  # tenant (*.example.com)
  curl -H 'Host: a.b.example.com' $url/                   # fallback (wildcard is one label)
  curl --resolve app.example.com:${listen##*:}:${listen%:*} http://app.example.com:${listen##*:}/
  curl http://$admin/ready  http://$admin/snapshot  http://$admin/metrics
EOF

# Run until a signal, or until one of the processes dies.
while :; do
  for p in "${pids[@]}"; do
    if ! kill -0 "$p" 2>/dev/null; then
      echo "run-demo: process $p exited; last log lines:" >&2
      tail -n 20 "$log_dir"/*.log >&2
      exit 1
    fi
  done
  sleep 1
done
