#!/usr/bin/env bash
# Profile the Strait data plane's request path under a short keep-alive load.
#
# Same layout as bench/run.sh: nginx backend (64-byte body) and wrk on CPU 1, controller in
# file mode with one catch-all Ingress, data plane --workers 1 on CPU 0. Samples the data plane
# with `perf record -e cpu-clock` (software clock: works where hardware counters are not
# exposed, e.g. in VMs) and prints the top functions by self time, kernel included.
# Without a usable perf it falls back to valgrind --tool=callgrind (user space only, and
# much slower, so the request rate under callgrind is not meaningful - only the shares are).
#
# Usage: bench/profile.sh [-s SECONDS] [-c CONNECTIONS] [-n TOP] [-k close]
#   -k close profiles connection-per-request (wrk -H "Connection: close") instead.
#   BUILD=dir picks the binaries (default build).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=8 conns=50 top=15 mode=keepalive
while getopts "s:c:n:k:" o; do
  case $o in s) secs=$OPTARG ;; c) conns=$OPTARG ;; n) top=$OPTARG ;; k) mode=$OPTARG ;; *) exit 2 ;; esac
done
build=${BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
for t in nginx wrk taskset curl; do command -v $t >/dev/null || { echo "profile: $t missing (bench/run.sh installs it)" >&2; exit 2; }; done
ncpu=$(nproc) cpu_proxy=0 cpu_load=1
[ "$ncpu" -gt 1 ] || cpu_load=0
BACKEND_PORT=18091 PORT=18390 ADMIN=18391
work=$(mktemp -d /tmp/strait-prof.XXXXXX)
declare -a pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.2
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
start() { setsid taskset -c "$2" "${@:3}" >"$work/$1.log" 2>&1 & LAST_PID=$!; pids+=("$LAST_PID"); }
wait_ready() {
  local _
  for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$1/ready" && return 0; sleep 0.1; done
  echo "profile: data plane not ready" >&2; return 1
}

body=$(printf 'x%.0s' $(seq 1 64))
mkdir -p "$work/be" "$work/m"
cat >"$work/be/nginx.conf" <<CONF
daemon off; worker_processes 1; pid $work/be/pid; error_log $work/be/error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $work/be; proxy_temp_path $work/be; fastcgi_temp_path $work/be;
  uwsgi_temp_path $work/be; scgi_temp_path $work/be;
  server { listen 127.0.0.1:$BACKEND_PORT backlog=4096; location / { return 200 '$body'; } } }
CONF
. bench/manifest.sh
manifest "$work/m/bench.yaml" ""

use_perf=0
if command -v perf >/dev/null && perf record -e cpu-clock -o "$work/probe.data" true >/dev/null 2>&1; then use_perf=1; fi
[ $use_perf = 1 ] || command -v valgrind >/dev/null || { echo "profile: neither perf nor valgrind works" >&2; exit 2; }

start backend "$cpu_load" nginx -c "$work/be/nginx.conf" -p "$work/be"
start controller "$cpu_load" "$build/strait-controller" --manifests "$work/m" --socket "$work/ctl.sock" --log-level warn
dp=("$build/strait-dataplane" --socket "$work/ctl.sock" --listen "127.0.0.1:$PORT" --admin "127.0.0.1:$ADMIN" --workers 1 --log-level warn)
if [ $use_perf = 1 ]; then
  start dataplane "$cpu_proxy" "${dp[@]}"
else
  start dataplane "$cpu_proxy" valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" "${dp[@]}"
fi
dpid=$LAST_PID
wait_ready "$ADMIN"
extra=(); [ "$mode" = close ] && extra=(-H "Connection: close")
taskset -c "$cpu_load" wrk -t1 -c"$conns" -d1s "${extra[@]}" "http://127.0.0.1:$PORT/" >/dev/null # warm-up
if [ $use_perf = 1 ]; then
  perf record -e cpu-clock -F 4999 -g -p "$dpid" -o "$work/perf.data" -- sleep "$secs" >/dev/null 2>&1 &
  prec=$!
  taskset -c "$cpu_load" wrk -t1 -c"$conns" -d"${secs}s" "${extra[@]}" "http://127.0.0.1:$PORT/" | grep -E 'Requests/sec|requests in'
  wait "$prec" || true
  echo "# perf cpu-clock, data plane pid $dpid, $mode, self time (% of samples), top $top"
  perf report -i "$work/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | awk -v n="$top" 'NR <= n'
  echo "# user space only (share of all samples), top $top"
  perf report -i "$work/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | grep -F '[.]' | awk -v n="$top" 'NR <= n'
  echo "# system calls, inclusive (children) share of all samples"
  perf report -i "$work/perf.data" --children --sort symbol --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+% +[0-9.]+% +\[k\] __(x64|se)_sys_' | awk 'NR <= 12'
  echo "# by DSO"
  perf report -i "$work/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' | awk 'NR <= 6'
else
  taskset -c "$cpu_load" wrk -t1 -c"$conns" -d"${secs}s" "${extra[@]}" "http://127.0.0.1:$PORT/" | grep -E 'Requests/sec|requests in'
  kill "$dpid"; sleep 2
  echo "# callgrind, data plane (user space only), $mode, self instructions, top $top"
  callgrind_annotate "$work/callgrind.out" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | awk -v n="$top" 'NR <= n'
fi
