#!/usr/bin/env python3
"""Balancing benchmark (`make bench-balance`; issue 9's end-to-end targets).

Scenarios, all on loopback, proxies pinned to CPU 0 (one worker each), backends and wrk on
CPU 1, rounds interleaved, medians reported:
  equal  three equal backends (three ports of one nginx worker, so that how a balancer spreads
         requests does not change how many processes CPU 1 schedules): Strait with round_robin
         against Strait with ewma, requests/s (target: ewma within 3 % of round_robin);
  equal_capped  the same while each data plane is held to CAP_PCT % (default 40) of CPU 0 by
         a CPU-bandwidth cgroup: the proxy is the bottleneck, so requests/s measure what the
         balancer costs (skipped without a writable cgroup);
  slow   two nginx backends and one that answers 50 ms late (tools/backend.py --delay-ms 50):
         nginx (round robin), HAProxy (roundrobin) and Strait (round_robin and ewma), p99
         latency (target: Strait ewma at least 2x lower than nginx's and HAProxy's).
Each proxy keeps upstream connections alive. wrk -t1 -c16, keep-alive.

Usage: bench/balance.py [--seconds S] [--rounds R] [--build DIR]
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from benchlib import CpuCap, Procs, cpu_of, free_port, wait_port  # noqa: E402








def wrk(port, secs, conns, pid=None, cap=None):
    if cap:
        cap.on(pid)
    c0 = cpu_of(pid) if pid else 0
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c%d" % conns, "-d%ds" % secs,
                          "--latency", "-H", "Host: bal.test", "http://127.0.0.1:%d/" % port],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout.decode()
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    p99 = re.search(r"^\s+99%\s+([0-9.]+)(us|ms|s)\s*$", out, re.M)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not rps or not p99 or bad:
        raise SystemExit("balance: wrk failed or got errors:\n" + out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    cpu_us = (cpu_of(pid) - c0) * 1e6 / (float(rps.group(1)) * secs) if pid else 0.0
    if cap:
        cap.off(pid)
    return float(rps.group(1)), float(p99.group(1)) * scale, cpu_us


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    args = ap.parse_args()
    for tool in ("nginx", "haproxy", "wrk", "taskset"):
        if not shutil.which(tool):
            raise SystemExit("balance: %s is missing (make bench installs it)" % tool)
    work = tempfile.mkdtemp(prefix="strait-balance-")
    procs = Procs(work)
    start = procs.start
    pids = {}  # proxy port -> pid whose CPU is measured (Strait's data planes)
    cap = CpuCap("strait-balance", int(os.environ.get("CAP_PCT", "40")))


    def nginx(name, cpu, body):
        d = os.path.join(work, name)
        os.makedirs(d)
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write("""daemon off; master_process off; worker_processes 1;
pid %(d)s/pid; error_log %(d)s/error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  client_body_temp_path %(d)s; proxy_temp_path %(d)s; fastcgi_temp_path %(d)s;
  uwsgi_temp_path %(d)s; scgi_temp_path %(d)s;
  %(body)s }
""" % {"d": d, "body": body})
        start(name, cpu, ["nginx", "-c", os.path.join(d, "nginx.conf"), "-p", d])

    def strait(name, lb, backends):
        mdir = os.path.join(work, name)
        os.makedirs(mdir)
        docs = ["""apiVersion: v1
kind: Service
metadata: {name: be, namespace: default}
spec: {ports: [{name: http, port: 80, protocol: TCP}]}"""]
        for i, p in enumerate(backends):
            docs.append("""apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: be-%d, namespace: default, labels: {kubernetes.io/service-name: be}}
addressType: IPv4
endpoints: [{addresses: [127.0.0.1], conditions: {ready: true}}]
ports: [{name: http, port: %d, protocol: TCP}]""" % (i, p))
        docs.append("""apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bal, namespace: default, annotations: {strait.dev/load-balance: %s}}
spec:
  ingressClassName: strait
  rules: [{host: bal.test, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: be, port: {number: 80}}}}]}}]
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: strait}
spec: {controller: strait.dev/ingress-controller}""" % lb)
        with open(os.path.join(mdir, "m.yaml"), "w") as f:
            f.write("\n---\n".join(docs) + "\n")
        sock = os.path.join(work, name + ".sock")
        port = free_port()
        start(name + "-ctl", "1", [os.path.join(args.build, "strait-controller"), "--manifests",
                                   mdir, "--socket", sock, "--log-level", "warn"])
        dp = start(name, "0", [os.path.join(args.build, "strait-dataplane"), "--socket", sock,
                               "--workers", "1", "--listen", "127.0.0.1:%d" % port,
                               "--log-level", "warn"])
        pids[port] = dp.pid
        wait_port(port)
        end = time.monotonic() + 30
        while subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                              "Host: bal.test", "http://127.0.0.1:%d/" % port],
                             stdout=subprocess.PIPE).stdout != b"200":
            if time.monotonic() > end:
                raise SystemExit("balance: %s never routed" % name)
            time.sleep(0.2)
        return port

    def peers(name, backends):
        ups = " ".join("server 127.0.0.1:%d;" % p for p in backends)
        nport, hport = free_port(), free_port()
        nginx(name + "-nginx", "0", "upstream be { %s keepalive 64; } server { listen 127.0.0.1:%d; "
              "location / { proxy_pass http://be; proxy_http_version 1.1; "
              "proxy_set_header Connection \"\"; } }" % (ups, nport))
        cfg = os.path.join(work, name + "-haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("global\n  nbthread 1\n  maxconn 4096\ndefaults\n  mode http\n"
                    "  timeout connect 5s\n  timeout client 120s\n  timeout server 30s\n"
                    "  timeout http-keep-alive 120s\n  option http-keep-alive\n"
                    "  http-reuse always\nfrontend fe\n  bind 127.0.0.1:%d\n  default_backend be\n"
                    "backend be\n  balance roundrobin\n%s" % (hport, "".join(
                        "  server s%d 127.0.0.1:%d\n" % (i, p) for i, p in enumerate(backends))))
        start(name + "-haproxy", "0", ["haproxy", "-f", cfg, "-db"])
        wait_port(nport)
        wait_port(hport)
        return nport, hport

    try:
        fast = [free_port() for _ in range(3)]
        nginx("be", "1", " ".join(
            "server { listen 127.0.0.1:%d; location / { return 200 "
            "\"0123456789012345678901234567890123456789012345678901234567890123\"; } }" % p
            for p in fast))
        slow = free_port()
        start("slow", "1", [sys.executable, os.path.join(ROOT, "tools", "backend.py"),
                            "--name", "slow", "--port", str(slow), "--delay-ms", "50"])
        for p in fast + [slow]:
            wait_port(p)
        targets = {
            "equal": {"strait_rr": strait("eq-rr", "round_robin", fast),
                      "strait_ewma": strait("eq-ewma", "ewma", fast)},
            "slow": {"strait_rr": strait("sl-rr", "round_robin", fast[:2] + [slow]),
                     "strait_ewma": strait("sl-ewma", "ewma", fast[:2] + [slow])},
        }
        n, hp = peers("sl", fast[:2] + [slow])
        targets["slow"]["nginx"], targets["slow"]["haproxy"] = n, hp
        if cap.ok:
            targets["equal_capped"] = dict(targets["equal"])
        res = {}
        for rnd in range(args.rounds):
            for sc, tg in targets.items():
                names = sorted(tg)
                names = names[rnd % len(names):] + names[:rnd % len(names)]
                for nm in names:
                    res.setdefault((sc, nm), []).append(
                        wrk(tg[nm], args.seconds, args.conns, pids.get(tg[nm]),
                            cap if sc == "equal_capped" else None))
        print("balance: %d rounds of %ds, wrk -t1 -c%d keep-alive, proxies on CPU 0 (1 worker)" % (
            args.rounds, args.seconds, args.conns))
        print("%-13s %-12s %10s %10s %10s" % ("case", "proxy", "req/s", "p99_ms", "cpu_us"))
        med = {}
        for (sc, nm), v in sorted(res.items()):
            med[(sc, nm)] = tuple(statistics.median(x[i] for x in v) for i in range(3))
            print("%-13s %-12s %10.0f %10.2f %10.2f" % ((sc, nm) + med[(sc, nm)]))
        eq = med[("equal", "strait_ewma")][0] / med[("equal", "strait_rr")][0]
        print("ratio equal_rps ewma_vs_round_robin=%.3f (target >= 0.97); equal_cpu "
              "ewma_vs_round_robin=%.3f" % (eq, med[("equal", "strait_ewma")][2] /
                                              med[("equal", "strait_rr")][2]))
        if cap.ok:
            eqc = med[("equal_capped", "strait_ewma")][0] / med[("equal_capped", "strait_rr")][0]
            print("ratio equal_capped_rps ewma_vs_round_robin=%.3f (target >= 0.97; data planes "
                  "held to %s%% of CPU 0)" % (eqc, os.environ.get("CAP_PCT", "40")))
        e99 = med[("slow", "strait_ewma")][1]
        print("ratio slow_p99 nginx_vs_ewma=%.2f haproxy_vs_ewma=%.2f strait_rr_vs_ewma=%.2f "
              "(target >= 2)" % (med[("slow", "nginx")][1] / e99, med[("slow", "haproxy")][1] / e99,
                                 med[("slow", "strait_rr")][1] / e99))
    finally:
        procs.stop()
        cap.remove()


if __name__ == "__main__":
    sys.exit(main())
