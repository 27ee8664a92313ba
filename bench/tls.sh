#!/usr/bin/env bash
# `make bench-tls` (and the TLS part of `make bench`): TLS at the edge, Strait side by side with
# nginx and HAProxy, all terminating TLS and proxying one plain backend, on loopback.
#
# Layout as in bench/run.sh: every proxy runs with one worker/thread pinned to CPU 0 (nginx
# worker_processes 1, HAProxy nbthread 1, strait-dataplane --workers 1), upstream keep-alive,
# no access log; the backend (nginx, 64-byte body), the load generators and the Strait
# controller share CPU 1. Same certificate for all three: one ECDSA P-256 leaf (SANs
# bench.local and localhost) signed by a bench CA, served with the CA as its chain. TLS 1.2
# and 1.3 allowed, session tickets on (each proxy's own ticket keys), no server-side session
# cache for anyone (nginx ssl_session_cache off, HAProxy tune.ssl.cachesize 0; Strait has
# none), ALPN http/1.1.
#
# Scenarios, each run against every proxy in turn:
#   full      bench/tlsload (build/tlsload): C concurrent connections, each a full TLS 1.3
#             handshake (ECDSA P-256 signature, X25519 key exchange), one GET with
#             "Connection: close" through the proxy to the backend, close; repeat
#   resumed   the same with -r: every handshake resumes the slot's previous session (TLS 1.3
#             ticket, psk_dhe_ke: still one X25519 exchange, no signature); the report's
#             resumed % must be 100 (it is how a proxy without working tickets shows)
#   keepalive wrk -t1 -c C over https (one handshake per connection, then keep-alive)
#   full_capped, resumed_capped, keepalive_capped
#             the same clients while the proxy under test is held to a share of its core by a
#             CPU-bandwidth cgroup: HS_CAP_PCT % (default 25) for the handshake scenarios,
#             CAP_PCT % (default 40, as in bench/run.sh) for keepalive_capped. With the whole
#             core the client is the bottleneck for handshakes: its side of a handshake
#             (decode the certificate, verify the server's signature, X25519, the TLS state
#             machine) costs about twice the server's, so every proxy shows about the
#             client's rate; capped, the proxy is the bottleneck (client% stays below 100).
#   with -2, also full_tls12_capped and resumed_tls12_capped (TLS 1.2, ECDHE-ECDSA; tickets
#             are RFC 5077 there: a resumed handshake has no key exchange at all)
# Per run: handshakes/s (or requests/s for keepalive), p50/p99 latency (ms; for tlsload the
# whole connection: connect, handshake, request, response), errors, CPU per handshake (or
# per request) of the proxy's processes (utime+stime from /proc, in microseconds) and what it
# implies: handshakes per second per core = 1e6 / cpu_us (the steadiest figure: it does not
# depend on who the bottleneck was).
# Rounds: every scenario runs ROUNDS times, interleaved (the first proxy rotating), and the
# report gives each proxy's median (errors summed).
#
# Usage: bench/tls.sh [-s SECONDS] [-c CONNECTIONS] [-r ROUNDS] [-2] [-o FILE]
#   defaults: -s 4 -c 50 -r 3 (about 5 minutes; -2 adds about 1.5). -o copies the report.
#   BUILD=dir picks the Strait binaries and tlsload (default build; `make bench-tools`).
#   STRAIT=0 leaves Strait out. SCENARIOS="a b" runs only those. HS_CAP_PCT / CAP_PCT the capped shares. BENCH_KEEP=1 keeps the work folder.
#   SAME_SUITES=1 gives nginx and HAProxy Strait's TLS 1.3 suite order (AES-128-GCM first, server
#   preference) instead of their default (OpenSSL's, AES-256-GCM-SHA384 first).
# Strait needs a data plane with --listen-tls; without one (or if it does not serve the bench
# certificate) its rows say "not measured" with the reason, and the others still run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=4 conns=50 rounds=3 tls12=0 out=
while getopts "s:c:r:o:2" o; do
  case $o in s) secs=$OPTARG ;; c) conns=$OPTARG ;; r) rounds=$OPTARG ;; o) out=$OPTARG ;; 2) tls12=1 ;; *) exit 2 ;; esac
done
[ "$rounds" -ge 1 ] 2>/dev/null || { echo "bench-tls: -r wants a positive count" >&2; exit 2; }
build=${BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
tlsload=$build/tlsload
[ -x "$tlsload" ] || { echo "bench-tls: $tlsload missing (make BUILD=... bench-tools)" >&2; exit 2; }
need=()
for t in nginx:nginx-light haproxy:haproxy wrk:wrk taskset:util-linux curl:curl openssl:openssl; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "bench-tls: missing ${need[*]} (run as root to install)" >&2; exit 2; }
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 8192 ] || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ncpu=$(nproc)
cpu_proxy=0 cpu_load=$((ncpu > 1 ? 1 : 0))
hz=$(getconf CLK_TCK)

export BACKEND_PORT=18681 NGINX_PORT=18780 HAPROXY_PORT=18880 STRAIT_PORT=18980
STRAIT_TLS=18983 STRAIT_ADMIN=18981
declare -A port=([nginx]=18783 [haproxy]=18883 [strait]=$STRAIT_TLS)
work=$(mktemp -d /tmp/strait-bench-tls.XXXXXX)
declare -a pids=()
cap_pct=${CAP_PCT:-40} hs_cap_pct=${HS_CAP_PCT:-25}
bench_name=bench-tls cg_label=strait-bench-tls-cap
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

# ---- certificate and configuration ---------------------------------------------------------
mkdir -p "$work/pki"
python3 - "$work/pki" <<'PY'
import sys
sys.path.insert(0, "tests/e2e")
import certs
ca = certs.make_ca(sys.argv[1], "Strait Bench CA", days=7)
leaf = certs.make_cert(sys.argv[1], "bench.local", ["bench.local", "localhost"], ca, kind="ec", days=7)
leaf.pem()
with open(sys.argv[1] + "/paths", "w") as f:
    f.write("%s %s %s %s\n" % (ca.crt, leaf.crt, leaf.key, leaf.crt[:-4] + ".pem"))
PY
read -r ca_crt crt key pem <"$work/pki/paths"

body=$(printf 'x%.0s' $(seq 1 64))
suites13=TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256 # Strait's order
nginx_suites= haproxy_suites=
if [ "${SAME_SUITES:-0}" = 1 ]; then
  nginx_suites="ssl_prefer_server_ciphers on; ssl_conf_command Ciphersuites $suites13;"
  haproxy_suites="ssl-default-bind-ciphersuites $suites13"
fi
nginx_fdlim=16384 nginx_conns=8192 # for nginx_conf (bench/lib.sh)
nginx_conf backend "server { listen 127.0.0.1:$BACKEND_PORT backlog=4096; location / { return 200 '$body'; } }"
nginx_conf nginx "server {
    listen 127.0.0.1:${port[nginx]} ssl backlog=4096;
    ssl_certificate $crt; ssl_certificate_key $key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache off; ssl_session_tickets on; ssl_session_timeout 1h; $nginx_suites
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
  }"
cat >"$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 8000
  tune.ssl.cachesize 0
  ssl-default-bind-options ssl-min-ver TLSv1.2
  $haproxy_suites
defaults
  mode http
  timeout connect 5s
  timeout client 120s
  timeout server 30s
  timeout http-keep-alive 120s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:${port[haproxy]} ssl crt $pem alpn http/1.1
  default_backend be
backend be
  server s1 127.0.0.1:$BACKEND_PORT
CONF
. bench/manifest.sh
mkdir -p "$work/manifests"
manifest "$work/manifests/bench.yaml" ""
# the TLS additions: a kubernetes.io/tls Secret with the same leaf (and chain), and spec.tls
cat >>"$work/manifests/bench.yaml" <<YAML
  tls:
  - hosts: [bench.local, localhost]
    secretName: bench-tls
---
apiVersion: v1
kind: Secret
metadata: {name: bench-tls, namespace: default}
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 "$crt")
  tls.key: $(base64 -w0 "$key")
YAML

# ---- start everything ----------------------------------------------------------------------
start backend "$cpu_load" nginx -c "$work/backend/nginx.conf" -p "$work/backend"
start nginx "$cpu_proxy" nginx -c "$work/nginx/nginx.conf" -p "$work/nginx"; pid_nginx=$LAST_PID
start haproxy "$cpu_proxy" haproxy -f "$work/haproxy.cfg" -db; pid_haproxy=$LAST_PID
names=(nginx haproxy)
declare -A pid=([nginx]=$pid_nginx [haproxy]=$pid_haproxy)
strait_why=
if [ "${STRAIT:-1}" = 0 ]; then
  strait_why="left out (STRAIT=0)"
elif ! "$build/strait-dataplane" --help 2>&1 | grep -q -- --listen-tls; then
  strait_why="this strait-dataplane has no --listen-tls"
else
  start controller "$cpu_load" "$build/strait-controller" --manifests "$work/manifests" --socket "$work/ctl.sock" --log-level warn
  start strait "$cpu_proxy" "$build/strait-dataplane" --socket "$work/ctl.sock" --listen "127.0.0.1:$STRAIT_PORT" \
    --listen-tls "127.0.0.1:$STRAIT_TLS" --admin "127.0.0.1:$STRAIT_ADMIN" --workers 1 --log-level warn
  pid[strait]=$LAST_PID
  ok=0
  for _ in $(seq 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$STRAIT_ADMIN/ready" && { ok=1; break; }
    kill -0 "${pid[strait]}" 2>/dev/null || break
    sleep 0.1
  done
  if [ $ok = 0 ]; then strait_why="data plane not ready: $(tail -c 300 "$work/strait.log" | tr '\n' ' ')"; fi
fi
for p in $BACKEND_PORT "${port[nginx]}" "${port[haproxy]}"; do wait_port "$p"; done
check() { # $1 = name: the body through the proxy, the bench certificate verified, for both SNI names
  local n=$1 h
  for h in bench.local localhost; do
    [ "$(curl -s --cacert "$ca_crt" --resolve "$h:${port[$n]}:127.0.0.1" "https://$h:${port[$n]}/")" = "$body" ] || return 1
  done
}
for n in nginx haproxy; do check "$n" || { echo "bench-tls: $n on ${port[$n]} does not serve the body over TLS" >&2; exit 1; }; done
if [ -z "$strait_why" ]; then
  ok=0
  for _ in $(seq 30); do check strait && { ok=1; break; }; sleep 0.2; done
  if [ $ok = 1 ]; then names+=(strait); else
    strait_why="https://bench.local:$STRAIT_TLS/ does not return the backend body with the bench certificate"
  fi
fi
[ -z "$strait_why" ] || echo "bench-tls: Strait not measured: $strait_why" >&2
sleep 1

declare -A R RR
report=$work/report.txt
say() { echo "$*" | tee -a "$report"; }

# run_load NAME SCENARIO: one client run for $secs against NAME, results in R[NAME.SCENARIO.*].
run_load() {
  local n=$1 sc=$2 p=${pid[$1]} f=$work/$1.$2 t0 t1 base=${2%_capped}
  local args=(-c "$conns" -d "$secs")
  case $base in *_tls12) args+=(-2) ;; esac
  case $base in resumed*) args+=(-r) ;; esac
  t0=$(cpu_ticks "$p")
  if [ "$base" = keepalive ]; then
    timeout $((secs + 15)) taskset -c "$cpu_load" wrk -t1 -c"$conns" -d"${secs}s" --latency \
      "https://localhost:${port[$n]}/" >"$f.out" 2>&1 || true
  else
    timeout $((secs + 15)) taskset -c "$cpu_load" "$tlsload" "${args[@]}" "127.0.0.1:${port[$n]}" >"$f.out" 2>&1 || true
  fi
  t1=$(cpu_ticks "$p")
  local rate total errs p50 p99 rpct=- ccpu=- info=-
  if [ "$base" = keepalive ]; then
    read -r rate total errs p50 p99 < <(awk '
      function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /m$/) return v*60000; if (v ~ /s$/) return v*1000; return v }
      /^ +50%/ {p50=ms($2)} /^ +99%/ {p99=ms($2)} /^Requests\/sec/ {rps=$2} / requests in / {t=$1}
      /Socket errors/ {gsub(",", ""); e += $4 + $6 + $8 + $10} /Non-2xx/ {e += $5}
      END {printf "%.0f %d %d %.3f %.3f\n", rps, t, e, p50, p99}' "$f.out")
  else
    kv() { awk -v k="$1" '{for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) {print substr($i, length(k) + 2); exit}}' "$f.out"; }
    rate=$(kv hs_per_s) total=$(kv handshakes) errs=$(kv errors) p50=$(kv p50_ms) p99=$(kv p99_ms)
    rpct=$(kv resumed_pct) ccpu=$(kv client_cpu_pct) info="$(kv version) $(kv cipher) $(kv group) $(kv peer_key) tickets=$(kv tickets_per_conn)"
    [ -n "$rate" ] || { rate=0 total=0 errs=-1 p50=0 p99=0; echo "bench-tls: tlsload failed: $(head -c 300 "$f.out")" >&2; }
    [[ $base != resumed* ]] || [ "$rpct" = 100.0 ] || echo "bench-tls: $n $sc: only $rpct % of the offered sessions resumed" >&2
  fi
  R[$n.$sc.rate]=$rate R[$n.$sc.p50]=$p50 R[$n.$sc.p99]=$p99 R[$n.$sc.err]=$errs R[$n.$sc.rpct]=$rpct
  R[$n.$sc.ccpu]=$ccpu R[$n.$sc.info]=$info
  R[$n.$sc.cpu]=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v t="$total" 'BEGIN {printf "%.1f", (t > 0 ? d / hz * 1e6 / t : 0)}')
}
scenarios=(full resumed keepalive)
if cap_setup; then
  scenarios+=(full_capped resumed_capped keepalive_capped)
  [ "$tls12" = 0 ] || scenarios+=(full_tls12_capped resumed_tls12_capped)
else
  echo "bench-tls: no writable CPU cgroup: the *_capped scenarios are skipped" >&2
  [ "$tls12" = 0 ] || scenarios+=(full_tls12 resumed_tls12)
fi
if [ -n "${SCENARIOS:-}" ]; then # a subset, e.g. SCENARIOS="resumed resumed_capped"
  sel=()
  for sc in "${scenarios[@]}"; do case " $SCENARIOS " in *" $sc "*) sel+=("$sc") ;; esac; done
  [ ${#sel[@]} -gt 0 ] || { echo "bench-tls: SCENARIOS names none of: ${scenarios[*]}" >&2; exit 2; }
  scenarios=("${sel[@]}")
fi
t_start=$SECONDS
for sc in "${scenarios[@]}"; do
  for ((rd = 0; rd < rounds; rd++)); do
    for ((k = 0; k < ${#names[@]}; k++)); do
      n=${names[$(((k + rd) % ${#names[@]}))]}
      case $sc in keepalive_capped) cap_quota "$cap_pct" ;; *_capped) cap_quota "$hs_cap_pct" ;; esac
      case $sc in *_capped) cap_on "${pid[$n]}" ;; esac
      run_load "$n" "$sc"
      case $sc in *_capped) cap_off "${pid[$n]}" ;; esac
      sleep 0.5
      for f in rate p50 p99 err cpu rpct ccpu; do RR[$n.$sc.$f]+="${R[$n.$sc.$f]} "; done
    done
  done
  for n in "${names[@]}"; do
    # shellcheck disable=SC2086 # word splitting of the per-round lists is the point
    for f in rate p50 p99 cpu ccpu; do R[$n.$sc.$f]=$(median ${RR[$n.$sc.$f]}); done
    # shellcheck disable=SC2086
    R[$n.$sc.rpct]=$(printf '%s\n' ${RR[$n.$sc.rpct]} | sort -g | head -1) # the worst round
    R[$n.$sc.err]=$(echo ${RR[$n.$sc.err]} | tr ' ' '\n' | awk '{t += $1} END {print t + 0}')
    R[$n.$sc.rounds]=${RR[$n.$sc.rate]}
  done
done

# ---- report ----------------------------------------------------------------------------------
: >"$report"
say "# strait bench-tls: $(date -u +%FT%TZ) nproc=$ncpu secs=$secs conns=$conns rounds=$rounds load_time_s=$((SECONDS - t_start))"
say "# proxies pinned to CPU $cpu_proxy; backend, clients, controller on CPU $cpu_load; one ECDSA P-256 leaf for all; latency in ms"
say "# rate: handshakes/s (tlsload: one handshake + one GET per connection) or requests/s (keepalive: wrk over https)"
say "# cpu_us: proxy CPU per handshake (per request for keepalive); per_core = 1e6 / cpu_us"
say "# *_capped: proxy held to ${hs_cap_pct}% (handshake scenarios) or ${cap_pct}% (keepalive_capped) of CPU $cpu_proxy"
say "# resumed%: share of offered sessions resumed (worst round); client%: tlsload's own CPU (100 = the client is the bottleneck)"
say "$(printf '%-8s %-20s %9s %8s %8s %6s %8s %9s %8s %7s  %s' proxy scenario rate p50 p99 errors cpu_us per_core resumed% client% negotiated)"
for sc in "${scenarios[@]}"; do
  for n in nginx haproxy strait; do
    if [ -z "${R[$n.$sc.rate]:-}" ]; then
      say "$(printf '%-8s %-20s %9s' "$n" "$sc" "not measured")"
      continue
    fi
    pc=$(awk -v c="${R[$n.$sc.cpu]}" 'BEGIN {printf "%.0f", (c > 0 ? 1e6 / c : 0)}')
    say "$(printf '%-8s %-20s %9s %8s %8s %6s %8s %9s %8s %7s  %s' "$n" "$sc" "${R[$n.$sc.rate]}" "${R[$n.$sc.p50]}" \
      "${R[$n.$sc.p99]}" "${R[$n.$sc.err]}" "${R[$n.$sc.cpu]}" "$pc" "${R[$n.$sc.rpct]}" "${R[$n.$sc.ccpu]}" "${R[$n.$sc.info]}")"
  done
done
say ""
[ -z "$strait_why" ] || say "strait not measured: $strait_why"
for sc in "${scenarios[@]}"; do
  say "rounds ${sc}_rate nginx=[${R[nginx.$sc.rounds]% }] haproxy=[${R[haproxy.$sc.rounds]% }] strait=[${R[strait.$sc.rounds]:-not measured}]"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a > 0 && b > 0) printf "%.2f", a / b; else printf "-"}'; }
if [ -z "$strait_why" ]; then
  for sc in "${scenarios[@]}"; do
    for f in rate p99 cpu; do
      say "ratio ${sc}_$f vs_nginx=$(ratio "${R[strait.$sc.$f]}" "${R[nginx.$sc.$f]}") vs_haproxy=$(ratio "${R[strait.$sc.$f]}" "${R[haproxy.$sc.$f]}")"
    done
  done
fi
for n in "${names[@]}"; do
  for v in "" _capped _tls12_capped; do
    [ -n "${R[$n.resumed$v.cpu]:-}" ] && [ -n "${R[$n.full$v.cpu]:-}" ] || continue
    say "ratio ${n}_resumed${v}_vs_full${v}_cpu=$(ratio "${R[$n.resumed$v.cpu]}" "${R[$n.full$v.cpu]}")"
  done
done
[ -z "$out" ] || cp "$report" "$out"
