#!/usr/bin/env python3
"""End-to-end routing cost: a data plane serving 10 Gateway routes against one serving
10,000, same traffic (`make bench-routes`; issue 7's target: under 1 microsecond more per
request).

Two stacks run side by side (controller + `strait-dataplane --workers 1` pinned to CPU 0),
one on a folder with 10 routes, one on 10,000; all routes are in ONE virtual host
(bench.test, the worst case for the router: the host index cannot narrow anything down) with
mixed matches, rotating through Exact, PathPrefix, RegularExpression, PathPrefix + header,
PathPrefix + method and Exact + query. One nginx (CPU 1) is the backend of every route. wrk
(CPU 1, keep-alive) sends requests that each match a different kind of route, taken from the
middle of the route table. Rounds alternate between the stacks; per stack the median over
rounds of: requests/s, and the data plane's CPU time per request (utime + stime from
/proc/PID/stat over the run), in microseconds. The figure that answers the target is the
difference of CPU per request, big minus small.

Usage: bench/routes.py [--seconds S] [--rounds R] [--routes N] [--build DIR]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from benchlib import Procs, cpu_of, free_port, wait_port  # noqa: E402
KINDS = ("exact", "prefix", "regex", "header", "method", "query")






def match_of(i):
    """Match i of the table (and the request that hits it): (match dict, path, headers)."""
    kind = KINDS[i % len(KINDS)]
    seg = "s%d" % i
    if kind == "exact":
        return {"path": {"type": "Exact", "value": "/%s/item" % seg}}, "/%s/item" % seg, {}
    if kind == "prefix":
        return {"path": {"type": "PathPrefix", "value": "/%s" % seg}}, "/%s/x/y" % seg, {}
    if kind == "regex":
        return ({"path": {"type": "RegularExpression", "value": "/r%d/[0-9]+/detail" % i}},
                "/r%d/12345/detail" % i, {})
    if kind == "header":
        return ({"path": {"type": "PathPrefix", "value": "/%s" % seg},
                 "headers": [{"name": "x-tenant", "value": "t%d" % i}]},
                "/%s/h" % seg, {"x-tenant": "t%d" % i})
    if kind == "method":
        return ({"path": {"type": "PathPrefix", "value": "/%s" % seg}, "method": "GET"},
                "/%s/m" % seg, {})
    return ({"path": {"type": "Exact", "value": "/%s/q" % seg},
             "queryParams": [{"name": "v", "value": "%d" % i}]}, "/%s/q?v=%d" % (seg, i), {})


def manifests(folder, n, backend_port):
    """n routes in Gateways of at most 1,000 (50 routes x 10 rules x 2 matches)."""
    os.makedirs(folder)
    docs = ["""apiVersion: v1
kind: Service
metadata: {name: be, namespace: default}
spec: {ports: [{name: http, port: 80, protocol: TCP}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: be-a, namespace: default, labels: {kubernetes.io/service-name: be}}
addressType: IPv4
endpoints: [{addresses: [127.0.0.1], conditions: {ready: true}}]
ports: [{name: http, port: %d, protocol: TCP}]
""" % backend_port]
    i = 0
    g = 0
    import json
    while i < n:
        routes = []
        while i < n and len(routes) < 50:
            rules = []
            while i < n and len(rules) < 10:
                ms = []
                while i < n and len(ms) < 2:
                    ms.append(match_of(i)[0])
                    i += 1
                rules.append({"matches": ms, "backendRefs": [{"name": "be", "port": 80}]})
            routes.append({"name": "r%d" % len(routes), "hostnames": ["bench.test"],
                           "rules": rules})
        gw = {"apiVersion": "strait.dev/v1alpha1", "kind": "Gateway",
              "metadata": {"name": "g%d" % g, "namespace": "default"},
              "spec": {"listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
                       "routes": routes}}
        docs.append(json.dumps(gw))  # JSON is YAML
        g += 1
    with open(os.path.join(folder, "routes.yaml"), "w") as f:
        f.write("\n---\n".join(docs) + "\n")


def lua_script(path, n):
    """A wrk script cycling through requests that hit routes across the middle of the table
    (every kind); all requests get 200 from the backend through a matched route."""
    first = max(0, min(n - len(KINDS), n // 2))
    picks = [first + k for k in range(min(n, len(KINDS)))]
    reqs = []
    for i in picks:
        _, p, hdrs = match_of(i)
        hs = "".join("%s: %s\\r\\n" % kv for kv in hdrs.items())
        reqs.append('"GET %s HTTP/1.1\\r\\nHost: bench.test\\r\\n%s\\r\\n"' % (p, hs))
    with open(path, "w") as f:
        f.write("local reqs = {%s}\nlocal i = 0\n" % ", ".join(reqs))
        f.write("request = function()\n  i = i %% %d + 1\n  return reqs[i]\nend\n" % len(reqs))
        f.write("done = function(summary, latency, requests)\n"
                "  io.write(string.format('non2xx %d\\n', summary.errors.status))\nend\n")
    return picks




def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--routes", type=int, default=10000)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    args = ap.parse_args()
    for tool in ("nginx", "wrk", "taskset"):
        if not shutil.which(tool):
            raise SystemExit("routes: %s is missing (make bench installs it)" % tool)
    work = tempfile.mkdtemp(prefix="strait-routes-")
    procs = Procs(work)
    start = procs.start


    try:
        bport = free_port()
        os.makedirs(os.path.join(work, "nginx"))
        with open(os.path.join(work, "nginx", "nginx.conf"), "w") as f:
            f.write("""daemon off; master_process off; worker_processes 1;
pid %(w)s/nginx/pid; error_log %(w)s/nginx/error.log warn;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path %(w)s/nginx; proxy_temp_path %(w)s/nginx; fastcgi_temp_path %(w)s/nginx;
  uwsgi_temp_path %(w)s/nginx; scgi_temp_path %(w)s/nginx;
  server { listen 127.0.0.1:%(p)d; location / { return 200 "0123456789012345678901234567890123456789012345678901234567890123"; } } }
""" % {"w": work, "p": bport})
        start("nginx", "1", ["nginx", "-c", os.path.join(work, "nginx", "nginx.conf"),
                             "-p", os.path.join(work, "nginx")])
        wait_port(bport)
        stacks = {}
        for label, n in (("small", 10), ("big", args.routes)):
            mdir = os.path.join(work, label)
            manifests(mdir, n, bport)
            sock = os.path.join(work, label + ".sock")
            port = free_port()
            start(label + "-ctl", "1", [os.path.join(args.build, "strait-controller"),
                                        "--manifests", mdir, "--socket", sock,
                                        "--log-level", "warn"])
            dp = start(label + "-dp", "0", [os.path.join(args.build, "strait-dataplane"),
                                            "--socket", sock, "--workers", "1",
                                            "--listen", "127.0.0.1:%d" % port,
                                            "--log-level", "warn"])
            wait_port(port)
            lua = os.path.join(work, label + ".lua")
            picks = lua_script(lua, n)
            # wait for the snapshot: every request of the script must route (not 404/503)
            end = time.monotonic() + 120
            while True:
                ok = 0
                for i in picks:
                    _, p, hdrs = match_of(i)
                    cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                           "Host: bench.test"] + sum((["-H", "%s: %s" % kv]
                                                     for kv in hdrs.items()), [])
                    out = subprocess.run(cmd + ["http://127.0.0.1:%d%s" % (port, p)],
                                         stdout=subprocess.PIPE).stdout
                    ok += out == b"200"
                if ok == len(picks):
                    break
                if time.monotonic() > end:
                    raise SystemExit("routes: %s stack never routed its requests" % label)
                time.sleep(0.5)
            stacks[label] = {"n": n, "port": port, "dp": dp, "lua": lua, "rps": [], "us": []}
        for rnd in range(args.rounds):
            order = ("small", "big") if rnd % 2 == 0 else ("big", "small")
            for label in order:
                st = stacks[label]
                c0 = cpu_of(st["dp"].pid)
                out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c%d" % args.conns,
                                      "-d%ds" % args.seconds, "-s", st["lua"],
                                      "http://127.0.0.1:%d/" % st["port"]],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout
                c1 = cpu_of(st["dp"].pid)
                text = out.decode()
                reqs = [ln for ln in text.splitlines() if "requests in" in ln]
                non2xx = [ln for ln in text.splitlines() if ln.startswith("non2xx")]
                if not reqs or not non2xx or non2xx[0].split()[1] != "0":
                    raise SystemExit("routes: wrk failed or got non-2xx:\n" + text)
                total = int(reqs[0].split()[0])
                st["rps"].append(total / args.seconds)
                st["us"].append((c1 - c0) * 1e6 / total)
        s, b = stacks["small"], stacks["big"]
        ms, mb = statistics.median(s["us"]), statistics.median(b["us"])
        print("routes: %d rounds of %gs, wrk -c%d keep-alive, data plane --workers 1" % (
            args.rounds, args.seconds, args.conns))
        print("%-6s %7s %10s %14s" % ("stack", "routes", "req/s", "cpu us/req"))
        for label in ("small", "big"):
            st = stacks[label]
            print("%-6s %7d %10.0f %14.2f" % (label, st["n"], statistics.median(st["rps"]),
                                              statistics.median(st["us"])))
        print("difference: %+.2f us of data-plane CPU per request for %d routes over %d "
              "(target: < 1 us)" % (mb - ms, b["n"], s["n"]))
    finally:
        procs.stop()


if __name__ == "__main__":
    sys.exit(main())
