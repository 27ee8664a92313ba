#!/usr/bin/env python3
"""Cluster-mode scale benchmark: the controller against the stand-in API server at scale.

Loads N Services, N EndpointSlices (E endpoints in all) and N Ingresses into
tests/kube-apiserver/server.py, then starts a data plane and strait-controller --kubeconfig
and measures what issue 5's targets name:
  - initial sync: controller start -> first snapshot published (controller log) and -> the
    data plane serving a route from it (first 200 on a probe host);
  - controller RSS after the sync (VmRSS) and its peak (VmHWM);
  - data plane apply time of that snapshot (snapshot_applied apply_ms: decode + indexes);
  - change latency, K samples each, from the API write to the first request that sees it,
    debounce included: a new Ingress (its host starts answering 200), and an EndpointSlice
    whose endpoint moves from backend A to backend B (the answer names the backend).
Everything runs on 127.0.0.1; processes are stopped at the end. Prints a report, and with
-o writes it to a file as well.

Usage: bench/cluster.py [-n 10000] [-e 50000] [-k 30] [-o FILE]   (BUILD=dir picks binaries)
"""
import argparse
import datetime
import http.server
import json
import os
import re
import socket
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "kube-apiserver"))
import fixture  # noqa: E402 - the stand-in server's own start/stop/request helpers

NS = "bench"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Backend(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def backend(name):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = Backend(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def service(i):
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "svc-%d" % i, "namespace": NS},
            "spec": {"ports": [{"name": "http", "port": 80}]}}


def slice_(i, addrs, port):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "svc-%d-1" % i, "namespace": NS,
                         "labels": {"kubernetes.io/service-name": "svc-%d" % i}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": port}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addrs]}


def ingress(name, host, svc):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"ingressClassName": "strait", "rules": [{"host": host, "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": svc, "port": {"number": 80}}}}]}}]}}


class Client:
    """One keep-alive connection to the data plane; get() returns (status, body)."""

    def __init__(self, port):
        self.port, self.s, self.buf = port, None, b""

    def get(self, host):
        for _ in range(2):
            try:
                if self.s is None:
                    self.s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                    self.buf = b""
                self.s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode())
                while b"\r\n\r\n" not in self.buf:
                    self._more()
                head, self.buf = self.buf.split(b"\r\n\r\n", 1)
                m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                n = int(m.group(1)) if m else 0
                while len(self.buf) < n:
                    self._more()
                body, self.buf = self.buf[:n], self.buf[n:]
                if re.search(rb"(?i)\r\nconnection: *close", head):
                    self.close()
                return int(head.split(b" ", 2)[1]), body
            except OSError:
                self.close()
        return 0, b""

    def _more(self):
        c = self.s.recv(65536)
        if not c:
            raise ConnectionError("closed")
        self.buf += c

    def close(self):
        if self.s:
            self.s.close()
        self.s = None


def wait_for(cond, timeout, poll=0.001):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(poll)
    return False


def log_time(path, event):
    """Epoch seconds of the first `event=EVENT` line of a Strait log (time=...Z is UTC)."""
    with open(path, errors="replace") as f:
        for line in f:
            if ("event=%s " % event) in line:
                m = re.match(r"time=(\S+)Z", line)
                if m:
                    return datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(
                        tzinfo=datetime.timezone.utc).timestamp()
    return None


def field(path, event, name):
    with open(path, errors="replace") as f:
        for line in f:
            if ("event=%s " % event) in line:
                m = re.search(r"\b%s=(\S+)" % name, line)
                if m:
                    return m.group(1)
    return None


def proc_kib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=10000, help="Services, EndpointSlices, Ingresses")
    ap.add_argument("-e", type=int, default=50000, help="endpoints in all")
    ap.add_argument("-k", type=int, default=30, help="change samples of each kind")
    ap.add_argument("-o", help="also write the report here")
    a = ap.parse_args()
    build = os.environ.get("BUILD", os.path.join(ROOT, "build"))
    if not os.path.isabs(build):
        build = os.path.join(ROOT, build)
    work = tempfile.mkdtemp(prefix="strait-cluster-bench.")
    procs = []
    be_a, be_b = backend("backend-a"), backend("backend-b")
    api = fixture.ApiServer(os.path.join(work, "api"), args=["--quiet"])
    report = []

    def say(s):
        print(s, flush=True)
        report.append(s)

    try:
        api.start()
        per = max(1, a.e // a.n)
        items = [{"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                  "metadata": {"name": "strait"}, "spec": {"controller": "strait.dev/ingress"}}]
        for i in range(a.n):
            items.append(service(i))
            if i == 0:  # the probe service: one endpoint on backend A
                items.append(slice_(0, ["127.0.0.1"], be_a.server_address[1]))
            else:
                # slice 1 also takes what slice 0 and the rounding leave, so the total is -e
                extra = (a.e - a.n * per + per - 1) if i == 1 else 0
                items.append(slice_(i, ["10.%d.%d.%d" % (j >> 8 & 255, i >> 8 & 255, i & 255)
                                        if extra else
                                        "10.%d.%d.%d" % (j, i >> 8 & 255, i & 255)
                                        for j in range(per + extra)], 8080))
            items.append(ingress("ing-%d" % i, "h%d.bench.test" % i, "svc-%d" % i))
        t0 = time.monotonic()
        for b in range(0, len(items), 2000):
            api.control("POST", "objects", {"items": items[b:b + 2000], "create_namespaces": True})
        load_s = time.monotonic() - t0
        n_ep = sum(len(x.get("endpoints", [])) for x in items if x["kind"] == "EndpointSlice")

        sock = os.path.join(work, "ctl.sock")
        dp_port, dp_admin, ctl_health = free_port(), free_port(), free_port()
        dp_log = open(os.path.join(work, "dataplane.log"), "w")
        dp = subprocess.Popen([os.path.join(build, "strait-dataplane"), "--socket", sock,
                               "--listen", "127.0.0.1:%d" % dp_port, "--admin",
                               "127.0.0.1:%d" % dp_admin, "--workers", "1", "--log-level", "info"],
                              stdout=dp_log, stderr=subprocess.STDOUT)
        procs.append(dp)
        ctl_log_path = os.path.join(work, "controller.log")
        ctl_log = open(ctl_log_path, "w")
        start_wall, start = time.time(), time.monotonic()
        ctl = subprocess.Popen([os.path.join(build, "strait-controller"), "--kubeconfig",
                                api.kubeconfig, "--socket", sock, "--health",
                                "127.0.0.1:%d" % ctl_health, "--log-level", "info"],
                               stdout=ctl_log, stderr=subprocess.STDOUT)
        procs.append(ctl)
        cl = Client(dp_port)
        if not wait_for(lambda: cl.get("h0.bench.test")[0] == 200, 120, 0.005):
            raise RuntimeError("the data plane never served h0.bench.test (logs in %s)" % work)
        serving_s = time.monotonic() - start
        time.sleep(0.5)  # let the log lines land; nothing below depends on timing
        pub = log_time(ctl_log_path, "snapshot_published")
        published_s = pub - start_wall if pub else float("nan")
        apply_ms = field(os.path.join(work, "dataplane.log"), "snapshot_applied", "apply_ms")
        frame = field(os.path.join(work, "dataplane.log"), "snapshot_applied", "bytes")
        rss, hwm = proc_kib(ctl.pid, "VmRSS"), proc_kib(ctl.pid, "VmHWM")
        dp_rss = proc_kib(dp.pid, "VmRSS")

        # change latency 1: a new Ingress, from POST to its host answering 200
        ing_lat = []
        for k in range(a.k):
            host = "probe-%d.bench.test" % k
            t = time.monotonic()
            st, body = api.request("POST", "/apis/networking.k8s.io/v1/namespaces/%s/ingresses" % NS,
                                   ingress("probe-%d" % k, host, "svc-0"))
            if st != 201:
                raise RuntimeError("create probe ingress: %s %r" % (st, body))
            if not wait_for(lambda: cl.get(host)[0] == 200, 10):
                raise RuntimeError("probe %s never routed" % host)
            ing_lat.append((time.monotonic() - t) * 1e3)
            time.sleep(0.2)  # spacing, so each sample starts from a quiet debounce
        # change latency 2: the probe service's endpoint moves between the two backends
        ep_lat = []
        path = "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices/svc-0-1" % NS
        for k in range(a.k):
            be, name = (be_b, b"backend-b") if k % 2 == 0 else (be_a, b"backend-a")
            t = time.monotonic()
            st, body = api.request("PATCH", path, {"ports": [{"name": "http", "port": be.server_address[1]}]},
                                   ctype="application/merge-patch+json")
            if st != 200:
                raise RuntimeError("patch slice: %s %r" % (st, body))
            if not wait_for(lambda: cl.get("h0.bench.test")[1] == name, 10):
                raise RuntimeError("endpoint change never seen")
            ep_lat.append((time.monotonic() - t) * 1e3)
            time.sleep(0.2)
        cl.close()

        say("# strait cluster bench: %s services=%d endpointslices=%d endpoints=%d ingresses=%d "
            "changes=%d" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), a.n, a.n, n_ep, a.n, a.k))
        say("load_into_apiserver_s=%.2f" % load_s)
        say("initial_sync_to_published_s=%.3f initial_sync_to_serving_s=%.3f" % (published_s, serving_s))
        say("controller_rss_kib=%d controller_peak_rss_kib=%d dataplane_rss_kib=%d" % (rss, hwm, dp_rss))
        say("dataplane_apply_ms=%s frame_bytes=%s" % (apply_ms, frame))
        for nm, v in (("ingress_change", ing_lat), ("endpoint_change", ep_lat)):
            say("%s_ms p50=%.1f p99=%.1f max=%.1f mean=%.1f" % (nm, statistics.median(v), pct(v, 99),
                                                              max(v), statistics.mean(v)))
        if a.o:
            with open(a.o, "w") as f:
                f.write("\n".join(report) + "\n")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        api.stop()
        be_a.shutdown()
        be_b.shutdown()
        if os.environ.get("BENCH_KEEP") != "1":
            subprocess.run(["rm", "-rf", work])
        else:
            print("bench: work folder kept: %s" % work, file=sys.stderr)


if __name__ == "__main__":
    main()
