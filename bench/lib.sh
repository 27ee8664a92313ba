# bench/lib.sh: the shell helpers bench/run.sh and bench/tls.sh share (sourced, not run).
#
# Before sourcing, the caller sets: bench_name (log prefix, e.g. "bench"), work (its temp
# folder), pids (an array of the processes it starts) and cg_label (the cgroup's name). It
# gets: the CPU-bandwidth cap (cap_setup, cap_quota PCT, cap_on/cap_off PID; cg_v is empty
# when neither cgroup v1 cpu nor v2 cpu.max is writable), start, wait_port, proc_pids,
# cpu_ticks, median, nginx_conf (set nginx_fdlim, nginx_conns and BACKEND_PORT before calling
# it), and the EXIT/INT/TERM traps that stop everything started.

cg_v= cg_root=
if [ -e /sys/fs/cgroup/cpu/cpu.cfs_quota_us ] && [ -w /sys/fs/cgroup/cpu/cgroup.procs ]; then
  cg_v=1 cg_root=/sys/fs/cgroup/cpu
elif [ -e /sys/fs/cgroup/cgroup.subtree_control ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
  cg_v=2 cg_root=/sys/fs/cgroup
fi
cg=${cg_root:+$cg_root/$cg_label.$$}
cap_setup() { # creates the cgroup (no quota yet); fails when there is no usable controller
  [ -n "$cg_v" ] || return 1
  if [ "$cg_v" = 2 ]; then echo +cpu >"$cg_root/cgroup.subtree_control" 2>/dev/null || true; fi
  mkdir -p "$cg" 2>/dev/null || return 1
  [ "$cg_v" = 2 ] || echo 20000 >"$cg/cpu.cfs_period_us"
}
cap_quota() { # $1 = percent of one CPU, per 20 ms period
  if [ "$cg_v" = 1 ]; then echo $((20000 * $1 / 100)) >"$cg/cpu.cfs_quota_us"; else echo "$((20000 * $1 / 100)) 20000" >"$cg/cpu.max"; fi
}
proc_pids() { # $1 = main pid: it and its children (nginx master + worker)
  echo "$1"; pgrep -P "$1" 2>/dev/null || true
}
cap_on() { local p; for p in $(proc_pids "$1"); do echo "$p" >"$cg/cgroup.procs"; done; }
cap_off() { local p; for p in $(proc_pids "$1"); do echo "$p" >"$cg_root/cgroup.procs" 2>/dev/null || true; done; }
cleanup() {
  local p
  if [ -n "$cg" ] && [ -d "$cg" ]; then
    while read -r p; do echo "$p" >"$cg_root/cgroup.procs" 2>/dev/null || true; done <"$cg/cgroup.procs"
    rmdir "$cg" 2>/dev/null || true
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.2
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "$bench_name: work folder kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
start() { # $1 = log name, $2 = cpu list, rest = command; sets LAST_PID
  setsid taskset -c "$2" "${@:3}" >"$work/$1.log" 2>&1 &
  LAST_PID=$!
  pids+=("$LAST_PID")
}
wait_port() { # bounded: 10 s
  local _
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "$bench_name: port $1 never opened" >&2; return 1
}
cpu_ticks() { # sum of utime+stime (clock ticks) over the processes of $1, threads included
  local t=0 p v
  for p in $(proc_pids "$1"); do
    v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}' || true); t=$((t + ${v:-0}))
  done
  echo "$t"
}
nginx_conf() { # $1 = name, $2 = server block; one worker, upstream "be" kept alive
  mkdir -p "$work/$1"
  cat >"$work/$1/nginx.conf" <<CONF
daemon off; master_process on; worker_processes 1; worker_rlimit_nofile $nginx_fdlim;
pid $work/$1/pid; error_log $work/$1/error.log warn;
events { worker_connections $nginx_conns; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  client_body_temp_path $work/$1; proxy_temp_path $work/$1; fastcgi_temp_path $work/$1;
  uwsgi_temp_path $work/$1; scgi_temp_path $work/$1;
  upstream be { server 127.0.0.1:$BACKEND_PORT; keepalive 128; }
  $2
}
CONF
}
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR + 1) / 2)]}'; }
