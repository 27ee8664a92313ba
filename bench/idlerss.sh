#!/usr/bin/env bash
# bench/idlerss.sh: the idle data plane's resident memory (issue 4's "< 4 MiB" target), the
# way bench/run.sh's rss_empty_snapshot_kib measures it - controller in file mode on an empty
# folder, `strait-dataplane --workers 1` connected to it - with the breakdown by mapping that
# says where the pages are. Then the same with --listen-tls (the TLS module loaded).
#   make bench-idle          or   BUILD=build bench/idlerss.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
work=$(mktemp -d /tmp/strait-idlerss.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/m"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
"$build/strait-controller" --manifests "$work/m" --socket "$work/s.sock" --log-level warn &
pids+=($!)
for _ in $(seq 100); do [ -S "$work/s.sock" ] && break; sleep 0.05; done

measure() { # label, extra data plane flags...
  local label=$1 admin pid; shift
  admin=$(free_port)
  "$build/strait-dataplane" --socket "$work/s.sock" --listen "127.0.0.1:$(free_port)" \
    --admin "127.0.0.1:$admin" --workers 1 --log-level warn "$@" &
  pid=$!; pids+=("$pid")
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$admin/ready" >/dev/null && break; sleep 0.05; done
  curl -sf "http://127.0.0.1:$admin/ready" >/dev/null || { echo "idlerss: $label: not ready" >&2; exit 1; }
  sleep 1 # let the start-up settle (lazy threads, first snapshot)
  printf '%s vmrss_kib=%s rss_anon_kib=%s rss_file_kib=%s\n' "$label" \
    "$(awk '/^VmRSS/{print $2}' /proc/$pid/status)" "$(awk '/^RssAnon/{print $2}' /proc/$pid/status)" \
    "$(awk '/^RssFile/{print $2}' /proc/$pid/status)"
  awk '/^[0-9a-f]+-[0-9a-f]+ /{n=($6==""?"[anon]":$6); sub(".*/","",n)} /^Rss:/{r[n]+=$2}
       END{for(k in r) if(r[k]>0) printf "  %6d KiB %s\n", r[k], k}' "/proc/$pid/smaps" | sort -rn
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
measure empty_snapshot
measure empty_snapshot_listen_tls --listen-tls "127.0.0.1:$(free_port)"
