#!/usr/bin/env bash
# `make bench`: Strait side by side with nginx and HAProxy, all proxying one backend, on loopback.
#
# Layout: every proxy runs with one worker/thread pinned to CPU 0 (nginx worker_processes 1,
# HAProxy nbthread 1, strait-dataplane --workers 1), with upstream keep-alive where it has it
# and no access log; the backend (nginx returning a 64-byte body), the load generators and the
# Strait controller share CPU 1. Figures on a shared machine are noisy: compare the ratios of
# one run, never absolute numbers across runs.
#
# Scenarios, each run against every proxy in turn (nginx, haproxy, strait):
#   idle      N idle keep-alive client connections (bench/idleconns.py): KiB of proxy RSS per
#             connection; runs after the load runs (so rss_load is not inflated by it)
#   keepalive wrk -c C, keep-alive
#   close     wrk -c C with "Connection: close": one TCP connection per request
#   h2load    h2load --h1 -c C, keep-alive (second client; percentiles from its --log-file)
#   keepalive_capped, close_capped
#             the same clients while the proxy under test is held to CAP_PCT % (default 40) of
#             its core by a CPU-bandwidth cgroup (cgroup v1 cpu or v2 cpu.max; skipped when
#             neither is writable). With the whole core, connection-per-request is bound by
#             CPU 1 (wrk's connect/close and the backend cost more than any proxy), so every
#             proxy shows about the same rps; capped, the proxy is the bottleneck and rps
#             shows how much each one does with the same CPU.
# then, for Strait only:
#   empty     RSS of a data plane that applied an empty snapshot (controller on an empty folder)
#   file_steady, then swap_file: wrk -c C, then again while the manifest is rewritten every 100 ms (unique content each time) -
#             the real controller's debounce (100 ms quiet, 150 ms max) merges some edits
#   wire_steady, then swap_wire: wrk -c C on a second data plane, then again while bench/fakectl.py pushes SWAPS frames 100 ms apart straight to a
#             data plane: exactly one snapshot swap per frame
# Per run: requests/s, p50/p99 latency (ms), errors (socket errors + non-2xx), CPU per request
# (utime+stime of the proxy's processes from /proc/PID/stat, before/after, in microseconds),
# RSS idle and the peak RSS sampled during the run.
#
# Rounds: the load scenarios run ROUNDS times, interleaved (every round runs each proxy once,
# the starting proxy rotating from round to round), and the report gives per proxy the median
# of the rounds for rps, latency and CPU (errors summed, peak RSS the highest), so that a
# burst of noise on the shared machine during one run does not decide a ratio.
#
# Then the TLS part, bench/tls.sh (BENCH_TLS=0 leaves it out; -o FILE also writes FILE.tls).
#
# Usage: bench/run.sh [-s SECONDS] [-c CONNECTIONS] [-n IDLE_CONNS] [-w SWAPS] [-r ROUNDS] [-o FILE]
#   defaults: -s 8 -c 50 -n 10000 -w 100 -r 3 (about 8 minutes). -o also writes the report to FILE.
#   BUILD=dir picks the Strait binaries (default build). BENCH_KEEP=1 keeps the work folder.
# Needs root to install missing tools (nginx-light haproxy wrk nghttp2-client) and to raise
# the open-files limit for the idle-connection test.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=8 conns=50 nidle=10000 swaps=100 rounds=3 out=
while getopts "s:c:n:w:r:o:" o; do
  case $o in s) secs=$OPTARG ;; c) conns=$OPTARG ;; n) nidle=$OPTARG ;; w) swaps=$OPTARG ;; r) rounds=$OPTARG ;; o) out=$OPTARG ;; *) exit 2 ;; esac
done
[ "$rounds" -ge 1 ] 2>/dev/null || { echo "bench: -r wants a positive count" >&2; exit 2; }
build=${BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
for b in strait-controller strait-dataplane; do
  [ -x "$build/$b" ] || { echo "bench: $build/$b missing (make BUILD=... all)" >&2; exit 2; }
done

need=()
for t in nginx:nginx-light haproxy:haproxy wrk:wrk h2load:nghttp2-client taskset:util-linux python3:python3 curl:curl; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "bench: missing ${need[*]} (run as root to install)" >&2; exit 2; }
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Open-files limit for N idle connections (+ their upstream side for proxies that keep one).
want=$((nidle * 2 + 4096))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
  ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
fdlim=$(ulimit -n); [ "$fdlim" = unlimited ] && fdlim=$want
[ "$fdlim" -gt $((nidle + 512)) ] || { echo "bench: open-files limit $fdlim too low for -n $nidle" >&2; exit 2; }
# HAProxy refuses to start unless 2 * maxconn + 17 fits the limit (maxsock): without
# CAP_SYS_RESOURCE the hard limit (often 20000) caps it just under 10,000 client connections,
# so its idle test then opens fewer (the table shows how many; KiB/connection is per connection).
hmax=$(( (fdlim - 17) / 2 )); hconn=$((nidle + 1024)); [ "$hconn" -le "$hmax" ] || hconn=$hmax
hidle=$nidle; [ "$hidle" -le $((hconn - 64)) ] || hidle=$((hconn - 64))
ncpu=$(nproc)
cpu_proxy=0 cpu_load=$((ncpu > 1 ? 1 : 0))
hz=$(getconf CLK_TCK)

export BACKEND_PORT=18081 NGINX_PORT=18180 HAPROXY_PORT=18280 STRAIT_PORT=18380
STRAIT_ADMIN=18381 WIRE_PORT=18480 WIRE_ADMIN=18481 EMPTY_PORT=18580 EMPTY_ADMIN=18581
work=$(mktemp -d /tmp/strait-bench.XXXXXX)
declare -a pids=()
# CPU-bandwidth cap for the *_capped scenarios: one cgroup, the proxy under test moved in
# for its run and out after it (bench/lib.sh).
cap_pct=${CAP_PCT:-40}
bench_name=bench cg_label=strait-bench-cap
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

wait_ready() { # $1 = admin port: data plane /ready answers 200 (bounded: 10 s)
  local _
  for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$1/ready" && return 0; sleep 0.1; done
  echo "bench: data plane on admin port $1 never ready" >&2; return 1
}
rss_kib() { # sum of VmRSS over the processes of $1
  local t=0 p v
  for p in $(proc_pids "$1"); do
    v=$(awk '/^VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null || true); t=$((t + ${v:-0}))
  done
  echo "$t"
}
metric() { # $1 = admin port, $2 = metric name (first sample)
  curl -fs "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print $2; exit}'
}

# ---- configuration -------------------------------------------------------------------------
body=$(printf 'x%.0s' $(seq 1 64))
nginx_fdlim=$fdlim nginx_conns=$((nidle + 1024)) # for nginx_conf (bench/lib.sh)
nginx_conf backend "server { listen 127.0.0.1:$BACKEND_PORT backlog=4096; location / { return 200 '$body'; } }"
nginx_conf nginx "server { listen 127.0.0.1:$NGINX_PORT backlog=4096; location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
cat >"$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn $hconn
defaults
  mode http
  timeout connect 5s
  timeout client 120s
  timeout server 30s
  timeout http-keep-alive 120s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT
  default_backend be
backend be
  server s1 127.0.0.1:$BACKEND_PORT
CONF
. bench/manifest.sh
mkdir -p "$work/manifests" "$work/empty" "$work/wa" "$work/wb" "$work/stage"
manifest "$work/manifests/bench.yaml" ""
manifest "$work/wa/bench.yaml" ""
manifest "$work/wb/bench.yaml" "swap"
"$build/strait-controller" --manifests "$work/wa" --socket "$work/x.sock" --frame-out "$work/a.bin" --log-level error
"$build/strait-controller" --manifests "$work/wb" --socket "$work/x.sock" --frame-out "$work/b.bin" --log-level error

# ---- start everything ----------------------------------------------------------------------
start backend "$cpu_load" nginx -c "$work/backend/nginx.conf" -p "$work/backend"
start nginx "$cpu_proxy" nginx -c "$work/nginx/nginx.conf" -p "$work/nginx"; pid_nginx=$LAST_PID
start haproxy "$cpu_proxy" haproxy -f "$work/haproxy.cfg" -db; pid_haproxy=$LAST_PID
start controller "$cpu_load" "$build/strait-controller" --manifests "$work/manifests" --socket "$work/ctl.sock" --log-level info
pid_ctl=$LAST_PID
start strait "$cpu_proxy" "$build/strait-dataplane" --socket "$work/ctl.sock" --listen "127.0.0.1:$STRAIT_PORT" \
  --admin "127.0.0.1:$STRAIT_ADMIN" --workers 1 --log-level warn; pid_strait=$LAST_PID
start empty-controller "$cpu_load" "$build/strait-controller" --manifests "$work/empty" --socket "$work/empty.sock" --log-level warn
start empty "$cpu_proxy" "$build/strait-dataplane" --socket "$work/empty.sock" --listen "127.0.0.1:$EMPTY_PORT" \
  --admin "127.0.0.1:$EMPTY_ADMIN" --workers 1 --log-level warn; pid_empty=$LAST_PID
for p in $BACKEND_PORT $NGINX_PORT $HAPROXY_PORT $STRAIT_PORT; do wait_port "$p"; done
wait_ready "$STRAIT_ADMIN"; wait_ready "$EMPTY_ADMIN"
for p in $NGINX_PORT $HAPROXY_PORT $STRAIT_PORT; do
  [ "$(curl -s "http://127.0.0.1:$p/")" = "$body" ] || { echo "bench: proxy on $p does not return the backend body" >&2; exit 1; }
done
sleep 1
names=(nginx haproxy strait)
declare -A pid=([nginx]=$pid_nginx [haproxy]=$pid_haproxy [strait]=$pid_strait)
declare -A port=([nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT [strait]=$STRAIT_PORT)
declare -A R # results: R[name.scenario.field]

report=$work/report.txt
say() { echo "$*" | tee -a "$report"; }

# ---- load runs -----------------------------------------------------------------------------
# run_load NAME SCENARIO PID: runs the client for $secs, samples RSS every 0.5 s, stores results.
run_load() {
  local n=$1 sc=$2 p=$3 url="http://127.0.0.1:${4:-${port[$1]}}/" t0 t1 peak=0 v f=$work/$1.$2
  t0=$(cpu_ticks "$p")
  case ${sc%_capped} in
    close) taskset -c "$cpu_load" wrk -t1 -c"$conns" -d"${secs}s" --latency -H "Connection: close" "$url" >"$f.out" 2>&1 & ;;
    h2load) taskset -c "$cpu_load" h2load --h1 -t1 -c"$conns" -D"$secs" --log-file="$f.tsv" "$url" >"$f.out" 2>&1 & ;;
    *) taskset -c "$cpu_load" wrk -t1 -c"$conns" -d"${secs}s" --latency "$url" >"$f.out" 2>&1 & ;;
  esac
  local cpid=$! end=$((SECONDS + secs + 15))
  while kill -0 "$cpid" 2>/dev/null && [ $SECONDS -lt $end ]; do
    v=$(rss_kib "$p"); [ "$v" -gt "$peak" ] && peak=$v
    sleep 0.5
  done
  kill "$cpid" 2>/dev/null || true; wait "$cpid" || true
  t1=$(cpu_ticks "$p")
  local rps p50 p99 total errs max
  if [ "$sc" = h2load ]; then
    read -r rps total errs < <(awk '/^finished in/ {gsub(",", ""); rps=$4}
      /^requests:/ {t=$6; e=$12 + $14} /^status codes:/ {gsub(",", ""); e += t - $3}
      END {printf "%.0f %d %d\n", rps, t, e}' "$f.out")
    read -r p50 p99 max < <(awk -F'\t' '{print $3}' "$f.tsv" | sort -n | awk '{v[NR]=$1}
      END {if (NR == 0) {print "0 0 0"; exit}
           i50=int(NR*0.50); if (i50<1) i50=1; i99=int(NR*0.99); if (i99<1) i99=1
           printf "%.3f %.3f %.3f\n", v[i50]/1000, v[i99]/1000, v[NR]/1000}')
    rm -f "$f.tsv"
  else
    read -r rps total errs p50 p99 max < <(awk '
      function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /m$/) return v*60000; if (v ~ /s$/) return v*1000; return v }
      /^ +50%/ {p50=ms($2)} /^ +99%/ {p99=ms($2)} /^Requests\/sec/ {rps=$2} / requests in / {t=$1}
      /^ +Latency +[0-9]/ {mx=ms($4)}
      /Socket errors/ {gsub(",", ""); e += $4 + $6 + $8 + $10} /Non-2xx/ {e += $5}
      END {printf "%.0f %d %d %.3f %.3f %.3f\n", rps, t, e, p50, p99, mx}' "$f.out")
  fi
  R[$n.$sc.rps]=$rps R[$n.$sc.p50]=$p50 R[$n.$sc.p99]=$p99 R[$n.$sc.max]=$max R[$n.$sc.err]=$errs
  R[$n.$sc.total]=$total R[$n.$sc.peak]=$peak
  R[$n.$sc.cpu]=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v t="$total" 'BEGIN {printf "%.1f", (t > 0 ? d / hz * 1e6 / t : 0)}')
}

for n in "${names[@]}"; do R[$n.rss_idle]=$(rss_kib "${pid[$n]}"); done
declare -A RR # per-round values: RR[name.scenario.field]="v1 v2 ..."
scenarios=(keepalive close h2load)
if cap_setup && cap_quota "$cap_pct"; then scenarios+=(keepalive_capped close_capped)
else echo "bench: no writable CPU cgroup: the *_capped scenarios are skipped" >&2; fi
for sc in "${scenarios[@]}"; do
  for ((rd = 0; rd < rounds; rd++)); do
    for ((k = 0; k < ${#names[@]}; k++)); do
      n=${names[$(((k + rd) % ${#names[@]}))]}
      case $sc in *_capped) cap_on "${pid[$n]}" ;; esac
      run_load "$n" "$sc" "${pid[$n]}"
      case $sc in *_capped) cap_off "${pid[$n]}" ;; esac
      sleep 1
      for f in rps p50 p99 max err total peak cpu; do RR[$n.$sc.$f]+="${R[$n.$sc.$f]} "; done
    done
  done
  for n in "${names[@]}"; do
    # shellcheck disable=SC2086 # word splitting of the per-round lists is the point
    for f in rps p50 p99 max cpu; do R[$n.$sc.$f]=$(median ${RR[$n.$sc.$f]}); done
    R[$n.$sc.err]=$(echo ${RR[$n.$sc.err]} | tr ' ' '\n' | awk '{t += $1} END {print t + 0}')
    R[$n.$sc.peak]=$(echo ${RR[$n.$sc.peak]} | tr ' ' '\n' | sort -n | tail -1)
    R[$n.$sc.rounds]=${RR[$n.$sc.rps]}
  done
done

# ---- idle keep-alive connections (after the load runs: RSS before = warm process) ---------------------------------
declare -A IDLE0 IDLE1 nidl=([nginx]=$nidle [haproxy]=$hidle [strait]=$nidle)
for n in "${names[@]}"; do
  IDLE0[$n]=$(rss_kib "${pid[$n]}")
  coproc IC { taskset -c "$cpu_load" python3 "$root/bench/idleconns.py" "${port[$n]}" -n "${nidl[$n]}" --hold 120; }
  icpid=$IC_PID
  read -r -t 150 _ ok failed <&"${IC[0]}" || { ok=0 failed=${nidl[$n]}; }
  sleep 1
  IDLE1[$n]=$(rss_kib "${pid[$n]}")
  echo done >&"${IC[1]}"
  read -r -t 10 _ closed <&"${IC[0]}" || closed=?
  wait "$icpid" 2>/dev/null || true
  R[$n.idle_ok]=$ok R[$n.idle_failed]=$failed R[$n.idle_closed]=$closed
  R[$n.idle_kib]=$(awk -v a="${IDLE0[$n]}" -v b="${IDLE1[$n]}" -v k="$ok" 'BEGIN {printf "%.2f", (k > 0 ? (b - a) / k : 0)}')
  sleep 1
done


# ---- Strait only: empty snapshot RSS, snapshot swaps under load ------------------------------
# The swap runs last at least 12 s, so that all SWAPS swaps (100 ms apart) land inside one
# load run of 10 s or more, as the target states.
load_secs=$secs
secs=$((secs > 12 ? secs : 12))
R[strait.rss_empty]=$(rss_kib "$pid_empty")
kill "$pid_empty" 2>/dev/null || true

# swap_file: rewrite the manifest every 100 ms with unique content, through the controller.
run_load strait file_steady "$pid_strait"
swaps0=$(metric "$STRAIT_ADMIN" strait_snapshot_swaps_total)
(
  end=$((SECONDS + secs + 5)) i=0
  sleep 0.5
  while [ $i -lt "$swaps" ] && [ $SECONDS -lt $end ]; do
    i=$((i + 1))
    manifest "$work/stage/bench.yaml" "v$i"
    mv "$work/stage/bench.yaml" "$work/manifests/bench.yaml"
    sleep 0.1
  done
) &
writer=$!
run_load strait swap_file "$pid_strait"
wait "$writer" || true
sleep 0.5
R[strait.swap_file.swaps]=$(( $(metric "$STRAIT_ADMIN" strait_snapshot_swaps_total) - swaps0 ))
R[strait.swap_file.nacks]=$(metric "$STRAIT_ADMIN" strait_snapshot_nacks_total)

# swap_wire: exact rate, frames pushed by bench/fakectl.py to a second data plane.
rm -f "$work/go"
start fakectl "$cpu_load" python3 "$root/bench/fakectl.py" --socket "$work/wire.sock" --go "$work/go" \
  --count "$swaps" --interval 0.1 --hold $((secs + 30)) "$work/a.bin" "$work/b.bin"; pid_fake=$LAST_PID
for _ in $(seq 100); do [ -S "$work/wire.sock" ] && break; sleep 0.1; done
start wire "$cpu_proxy" "$build/strait-dataplane" --socket "$work/wire.sock" --listen "127.0.0.1:$WIRE_PORT" \
  --admin "127.0.0.1:$WIRE_ADMIN" --workers 1 --log-level warn; pid_wire=$LAST_PID
wait_ready "$WIRE_ADMIN"
run_load strait wire_steady "$pid_wire" "$WIRE_PORT"
swaps0=$(metric "$WIRE_ADMIN" strait_snapshot_swaps_total)
( sleep 0.5; touch "$work/go" ) &
run_load strait swap_wire "$pid_wire" "$WIRE_PORT"
for _ in $(seq 50); do kill -0 "$pid_fake" 2>/dev/null || break; sleep 0.1; done
R[strait.swap_wire.swaps]=$(( $(metric "$WIRE_ADMIN" strait_snapshot_swaps_total) - swaps0 ))
R[strait.swap_wire.nacks]=$(metric "$WIRE_ADMIN" strait_snapshot_nacks_total)
R[strait.swap_wire.sent]=$(awk '/^swaps_sent/ {print $2}' "$work/fakectl.log")
R[strait.rss_controller]=$(rss_kib "$pid_ctl")

# ---- report ----------------------------------------------------------------------------------
: >"$report"
say "# strait bench: $(date -u +%FT%TZ) nproc=$ncpu secs=$load_secs swap_secs=$secs conns=$conns idle_conns=$nidle swaps=$swaps rounds=$rounds"
say "# proxies pinned to CPU $cpu_proxy; backend, clients, controller on CPU $cpu_load; latency in ms, cpu in us/request, rss in KiB"
say "# load rows: median of $rounds interleaved rounds (errors summed, rss_load the highest); *_capped: proxy held to ${cap_pct}% of CPU $cpu_proxy"
say "$(printf '%-8s %-16s %9s %8s %8s %8s %6s %8s %9s %9s' proxy scenario rps p50 p99 max errors cpu_us rss_idle rss_load)"
for sc in "${scenarios[@]}"; do
  for n in "${names[@]}"; do
    say "$(printf '%-8s %-16s %9s %8s %8s %8s %6s %8s %9s %9s' "$n" "$sc" "${R[$n.$sc.rps]}" "${R[$n.$sc.p50]}" "${R[$n.$sc.p99]}" \
      "${R[$n.$sc.max]}" "${R[$n.$sc.err]}" "${R[$n.$sc.cpu]}" "${R[$n.rss_idle]}" "${R[$n.$sc.peak]}")"
  done
done
for sc in file_steady swap_file wire_steady swap_wire; do
  n=strait
  say "$(printf '%-8s %-16s %9s %8s %8s %8s %6s %8s %9s %9s' "$n" "$sc" "${R[$n.$sc.rps]}" "${R[$n.$sc.p50]}" "${R[$n.$sc.p99]}" \
    "${R[$n.$sc.max]}" "${R[$n.$sc.err]}" "${R[$n.$sc.cpu]}" - "${R[$n.$sc.peak]}")"
done
say ""
say "$(printf '%-8s %10s %10s %10s %8s %8s %8s' proxy idle_conns rss_before rss_after kib_conn failed closed)"
for n in "${names[@]}"; do
  say "$(printf '%-8s %10s %10s %10s %8s %8s %8s' "$n" "${R[$n.idle_ok]}" "${IDLE0[$n]}" "${IDLE1[$n]}" "${R[$n.idle_kib]}" \
    "${R[$n.idle_failed]}" "${R[$n.idle_closed]}")"
done
say ""
say "strait rss_empty_snapshot_kib=${R[strait.rss_empty]} rss_controller_kib=${R[strait.rss_controller]}"
say "strait swap_file writes=$swaps swaps=${R[strait.swap_file.swaps]} nacks_total=${R[strait.swap_file.nacks]} errors=${R[strait.swap_file.err]} p99=${R[strait.swap_file.p99]} steady_p99=${R[strait.file_steady.p99]} max=${R[strait.swap_file.max]} steady_max=${R[strait.file_steady.max]}"
say "strait swap_wire frames=${R[strait.swap_wire.sent]:-?} swaps=${R[strait.swap_wire.swaps]} nacks_total=${R[strait.swap_wire.nacks]} errors=${R[strait.swap_wire.err]} p99=${R[strait.swap_wire.p99]} steady_p99=${R[strait.wire_steady.p99]} max=${R[strait.swap_wire.max]} steady_max=${R[strait.wire_steady.max]}"
for sc in "${scenarios[@]}"; do
  say "rounds ${sc}_rps nginx=[${R[nginx.$sc.rounds]% }] haproxy=[${R[haproxy.$sc.rounds]% }] strait=[${R[strait.$sc.rounds]% }]"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else printf "-"}'; }
for sc in "${scenarios[@]}"; do
  for f in rps p99 cpu; do
    say "ratio ${sc}_$f vs_nginx=$(ratio "${R[strait.$sc.$f]}" "${R[nginx.$sc.$f]}") vs_haproxy=$(ratio "${R[strait.$sc.$f]}" "${R[haproxy.$sc.$f]}")"
  done
done
say "ratio rss_idle vs_nginx=$(ratio "${R[strait.rss_idle]}" "${R[nginx.rss_idle]}") vs_haproxy=$(ratio "${R[strait.rss_idle]}" "${R[haproxy.rss_idle]}")"
say "ratio idle_kib_per_conn vs_nginx=$(ratio "${R[strait.idle_kib]}" "${R[nginx.idle_kib]}") vs_haproxy=$(ratio "${R[strait.idle_kib]}" "${R[haproxy.idle_kib]}") (strait=${R[strait.idle_kib]} nginx=${R[nginx.idle_kib]} haproxy=${R[haproxy.idle_kib]})"
say "ratio swap_file_p99 vs_steady=$(ratio "${R[strait.swap_file.p99]}" "${R[strait.file_steady.p99]}")"
say "ratio swap_wire_p99 vs_steady=$(ratio "${R[strait.swap_wire.p99]}" "${R[strait.wire_steady.p99]}")"
[ -z "$out" ] || cp "$report" "$out"

# ---- TLS at the edge: bench/tls.sh (alone: `make bench-tls`), after this part's processes are gone
if [ "${BENCH_TLS:-1}" != 0 ]; then
  trap - EXIT
  cleanup
  if [ -x "$build/tlsload" ]; then
    tls_args=(); [ -z "$out" ] || tls_args=(-o "$out.tls")
    BUILD="$build" bench/tls.sh "${tls_args[@]}"
  else
    echo "bench: $build/tlsload missing (make bench-tools): TLS part skipped" >&2
  fi
fi
