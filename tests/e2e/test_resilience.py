"""Balancing and resilience settings end to end (issue 9): circuit breaking (max requests,
max connections: 503 with x-strait-overflow: 1 at once), endpoint weights by pod name,
active health checks (an endpoint failing its checks leaves rotation and returns when it
recovers; all failing fails open), slow start, outlier detection switched off and tuned by
annotation, the cluster retry budget, and per-endpoint numbers in /metrics and /stats.
Service annotations in file mode; real backends (tools/backend.py) on loopback."""
import http.client
import json
import os
import re
import sys
import threading
import time

import harness as h

HOST = "res.test"


def service(name, annotations):
    svc = h.service(name)
    svc["metadata"]["annotations"] = dict(annotations)
    return svc


def slice_for(svc, port, pod=None):
    s = h.endpoint_slice("%s-%d" % (svc, port), svc, port)
    if pod:
        s["endpoints"][0]["targetRef"] = {"kind": "Pod", "name": pod, "namespace": "default"}
    return s


class ResilienceTest(h.StraitTest):
    def backend(self, name, *args):
        port = h.free_port()
        self.s.procs.append(h.Proc("backend-" + name, [
            sys.executable, h.BACKEND_PY, "--name", name, "--port", str(port)] + list(args),
            self.s.dir))
        h.wait_until(lambda: h.port_accepts(port), 10, what="backend " + name)
        return port

    def stack(self, annotations, ports, ing_annotations=None, pods=None):
        self.s.write("svc.yaml", service("app", annotations),
                     *[slice_for("app", p, pods[i] if pods else None)
                       for i, p in enumerate(ports)])
        self.s.write("ing.yaml", h.ingress("res", rules=[(HOST, [("/", "Prefix", "app")])],
                                           annotations=ing_annotations))
        self.s.start()

    def get(self, path="/", timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=timeout * h.SLOW)
        try:
            conn.request("GET", path, headers={"Host": HOST})
            r = conn.getresponse()
            r.read()
            return r.status, r.getheader("X-Backend"), r.getheader("x-strait-overflow")
        finally:
            conn.close()

    def gets(self, n, path="/"):
        conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=10 * h.SLOW)
        out = []
        try:
            for _ in range(n):
                conn.request("GET", path, headers={"Host": HOST})
                r = conn.getresponse()
                r.read()
                out.append((r.status, r.getheader("X-Backend")))
        finally:
            conn.close()
        return out

    def concurrent(self, n, path="/"):
        """n requests at once, each on its own connection: [(status, backend, overflow)]."""
        out = [None] * n
        go = threading.Barrier(n)

        def one(i):
            go.wait()
            try:
                out[i] = self.get(path)
            except Exception as e:  # noqa: BLE001 - reported in the assertion
                out[i] = ("error", str(e), None)
        ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30 * h.SLOW)
        return out

    def metrics(self):
        st, body = self.s.admin_get("/metrics")
        self.assertEqual(st, 200)
        return body.decode()

    def metric(self, name, **labels):
        lab = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
        pat = r"^%s%s (\S+)$" % (re.escape(name), re.escape("{%s}" % lab) if lab else "")
        m = re.search(pat, self.metrics(), re.M)
        self.assertIsNotNone(m, "%s{%s} not in /metrics" % (name, lab))
        return float(m.group(1))

    def stats(self):
        st, body = self.s.admin_get("/stats")
        self.assertEqual(st, 200)
        return json.loads(body)

    def cluster_stats(self, name="default/app:80"):
        for c in self.stats()["clusters"]:
            if c["name"] == name:
                return c
        self.fail("cluster %s not in /stats" % name)

    # -- circuit breaking --
    def test_max_requests_overflow_answers_503_at_once(self):
        slow = self.backend("slow", "--delay-ms", "1500")
        self.stack({"strait.dev/max-requests": "2"}, [slow])
        t0 = time.monotonic()
        got = self.concurrent(6)
        statuses = sorted(str(g[0]) for g in got)
        self.assertEqual(statuses.count("200"), 2, got)
        over = [g for g in got if g[0] == 503]
        self.assertEqual(len(over), 4, got)
        self.assertTrue(all(g[2] == "1" for g in over), got)
        self.assertTrue(all(g[2] is None for g in got if g[0] == 200), got)
        self.assertEqual(self.metric("strait_cluster_overflow_total", cluster="default/app:80",
                                     limit="requests"), 4)
        # the overflow did not wait for the slow backend: the whole burst took one delay
        self.assertLess(time.monotonic() - t0, 2 * 1.5 * h.SLOW + 1)
        # the gauge went back down: the next request is served
        self.assertEqual(self.get()[0], 200)
        self.assertEqual(self.metric("strait_cluster_requests_active", cluster="default/app:80"),
                         0)

    def test_max_connections_overflow(self):
        slow = self.backend("slow", "--delay-ms", "1500")
        self.stack({"strait.dev/max-connections": "1"}, [slow])
        got = self.concurrent(3)
        self.assertEqual(sorted(str(g[0]) for g in got), ["200", "503", "503"], got)
        self.assertTrue(all(g[2] == "1" for g in got if g[0] == 503), got)
        self.assertEqual(self.metric("strait_cluster_overflow_total", cluster="default/app:80",
                                     limit="connections"), 2)
        # the one connection is pooled and reused: sequential requests all pass
        self.assertEqual([s for s, _ in self.gets(3)], [200, 200, 200])
        self.assertLessEqual(self.cluster_stats()["upstream_connections"], 1)

    def test_no_limits_by_default(self):
        slow = self.backend("slow", "--delay-ms", "800")
        self.stack({}, [slow])
        got = self.concurrent(8)
        self.assertEqual([g[0] for g in got], [200] * 8, got)

    # -- weights --
    def test_endpoint_weights_by_pod_name(self):
        a, b = self.backend("a"), self.backend("b")
        self.stack({"strait.dev/endpoint-weights": "pod-a=3, pod-b=1"}, [a, b],
                   ing_annotations={"strait.dev/load-balance": "round_robin"},
                   pods=["pod-a", "pod-b"])
        got = self.gets(400)
        self.assertTrue(all(s == 200 for s, _ in got), got)
        counts = {n: sum(1 for _, x in got if x == n) for n in ("a", "b")}
        self.assertEqual(counts, {"a": 300, "b": 100})
        w = {e["port"]: e["weight"] for e in self.cluster_stats("default/app:80+round_robin")[
            "endpoints"]}
        self.assertEqual(w, {a: 3, b: 1})

    def test_endpoint_weights_with_least_request(self):
        a, b = self.backend("a"), self.backend("b")
        self.stack({"strait.dev/endpoint-weights": "pod-a=4,pod-b=1"}, [a, b],
                   ing_annotations={"strait.dev/load-balance": "least_request"},
                   pods=["pod-a", "pod-b"])
        got = self.gets(500)
        share = sum(1 for _, x in got if x == "a") / len(got)
        # one request at a time ties on load: the weighted draw decides, 80 % in expectation
        self.assertGreater(share, 0.72, share)
        self.assertLess(share, 0.88, share)

    # -- slow start --
    def test_slow_start_ramps_a_new_endpoint(self):
        old, new = self.backend("old"), self.backend("new")
        ann = {"strait.dev/slow-start": "6s"}
        rr = {"strait.dev/load-balance": "round_robin"}
        self.stack(ann, [old], ing_annotations=rr)
        self.assertEqual({x for _, x in self.gets(10)}, {"old"})
        t_added = time.monotonic()
        self.s.write_atomic("svc.yaml", service("app", ann), slice_for("app", old),
                            slice_for("app", new))
        h.wait_until(lambda: str(new) in self.s.admin_get("/snapshot")[1].decode(),
                     10 * h.SLOW, what="the new endpoint in the snapshot")
        st = {e["port"]: e for e in self.cluster_stats("default/app:80+round_robin")["endpoints"]}
        self.assertEqual(st[new]["state"], "slow_start")
        self.assertEqual(st[old]["state"], "healthy")
        got = self.gets(100)
        self.assertLess(time.monotonic() - t_added, 4, "too slow to see the ramp")
        # its first seconds: well under the half it will get (10 % .. age / 6 s of its share)
        early = sum(1 for _, x in got if x == "new") / len(got)
        self.assertGreater(early, 0, got)
        self.assertLess(early, 0.35, early)
        self.assertTrue(all(s == 200 for s, _ in got), got)
        # the window passes: an even share
        h.wait_until(lambda: time.monotonic() - t_added > 6.2, 10, what="the slow start window")
        got = self.gets(100)
        self.assertEqual(sum(1 for _, x in got if x == "new"), 50, got)

    # -- outlier detection settings --
    def test_outlier_detection_off_and_tuned(self):
        good = self.backend("good")
        bad = self.backend("bad", "--status", "503")
        self.stack({"strait.dev/outlier-consecutive-failures": "0"}, [good, bad],
                   ing_annotations={"strait.dev/load-balance": "round_robin"})
        got = self.gets(40)
        # never ejected: the failing replica keeps its half
        self.assertEqual(sum(1 for _, x in got if x == "bad"), 20, got)
        self.assertEqual(len(h.log_events(self.s.dataplane_log(), "outlier_ejected")), 0)
        # now 2 in a row eject, for 1 s
        self.s.write_atomic("svc.yaml", service("app", {
            "strait.dev/outlier-consecutive-failures": "2",
            "strait.dev/outlier-base-ejection-time": "1s"}),
            slice_for("app", good), slice_for("app", bad))
        h.wait_until(lambda: '"od_consecutive": 2' in self.s.admin_get("/snapshot")[1].decode()
                     or '"consecutive": 2' in self.s.admin_get("/snapshot")[1].decode(),
                     10 * h.SLOW, what="new outlier settings")
        got = self.gets(20)
        self.assertEqual(sum(1 for _, x in got if x == "bad"), 2, got)
        ev = h.log_events(self.s.dataplane_log(), "outlier_ejected")
        self.assertEqual(len(ev), 1, ev)
        self.assertEqual(ev[0].get("for_s"), "1")

    # -- retry budget per cluster --
    def test_cluster_retry_budget_zero_means_no_retries(self):
        bad_record = os.path.join(self.s.dir, "bad.jsonl")
        bad = self.backend("bad", "--status", "503", "--record", bad_record)
        self.s.write("svc.yaml", service("app", {"strait.dev/retry-budget-percent": "0",
                                                 "strait.dev/retry-budget-min-per-second": "0",
                                                 "strait.dev/outlier-consecutive-failures": "0"}),
                     slice_for("app", bad))
        self.s.write("gw.yaml", {
            "apiVersion": "strait.dev/v1alpha1", "kind": "Gateway",
            "metadata": {"name": "rt", "namespace": "default"},
            "spec": {"listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
                     "routes": [{"name": "r", "hostnames": [HOST], "rules": [{
                         "backendRefs": [{"name": "app", "port": 80}],
                         "retry": {"attempts": 2, "codes": [503]}}]}]}})
        self.s.start()
        got = self.gets(10)
        self.assertEqual([s for s, _ in got], [503] * 10)
        with open(bad_record) as f:
            hits = sum(1 for ln in f if ln.strip())
        self.assertEqual(hits, 10)  # one attempt each: the cluster's budget has nothing
        self.assertEqual(self.cluster_stats()["retry_budget_exhausted"], 10)

    # -- per-endpoint numbers --
    def test_endpoint_metrics_and_stats(self):
        a, b = self.backend("a"), self.backend("b", "--status", "500")
        self.stack({"strait.dev/outlier-consecutive-failures": "0"}, [a, b],
                   ing_annotations={"strait.dev/load-balance": "round_robin"})
        self.gets(20)
        ka, kb = "127.0.0.1:%d" % a, "127.0.0.1:%d" % b
        cl = "default/app:80+round_robin"
        self.assertEqual(self.metric("strait_endpoint_requests_total", cluster=cl, endpoint=ka), 10)
        self.assertEqual(self.metric("strait_endpoint_errors_total", cluster=cl, endpoint=ka), 0)
        self.assertEqual(self.metric("strait_endpoint_errors_total", cluster=cl, endpoint=kb), 10)
        self.assertGreater(self.metric("strait_endpoint_latency_ewma_seconds", cluster=cl,
                                       endpoint=ka), 0)
        self.assertEqual(self.metric("strait_endpoint_healthy", cluster=cl, endpoint=kb), 1)
        c = self.cluster_stats(cl)
        self.assertEqual(c["lb"], "round_robin")
        eps = {e["port"]: e for e in c["endpoints"]}
        self.assertEqual(eps[a]["requests"], 10)
        self.assertEqual(eps[b]["errors"], 10)
        self.assertEqual(eps[a]["state"], "healthy")
        self.assertEqual(c["requests_active"], 0)

    # -- active health checks --
    def health_stack(self, n, extra=None):
        files, ports = [], []
        for i in range(n):
            f = os.path.join(self.s.dir, "healthy-%d" % i)
            open(f, "w").close()
            files.append(f)
            ports.append(self.backend("e%d" % i, "--health-file", f))
        ann = {"strait.dev/health-check-path": "/healthz",
               "strait.dev/health-check-interval": "200ms",
               "strait.dev/health-check-timeout": "150ms",
               "strait.dev/health-check-unhealthy-threshold": "2",
               "strait.dev/health-check-healthy-threshold": "2"}
        ann.update(extra or {})
        self.stack(ann, ports, ing_annotations={"strait.dev/load-balance": "round_robin"})
        return files, ports

    def healthy(self, port):
        return self.metric("strait_endpoint_healthy", cluster="default/app:80+round_robin",
                           endpoint="127.0.0.1:%d" % port)

    def test_health_checks_eject_and_restore(self):
        files, ports = self.health_stack(3)
        self.assertEqual({x for _, x in self.gets(30)}, {"e0", "e1", "e2"})
        os.unlink(files[1])
        h.wait_until(lambda: self.healthy(ports[1]) == 0, 10 * h.SLOW, what="e1 unhealthy")
        got = self.gets(30)
        self.assertTrue(all(s == 200 for s, _ in got), got)
        self.assertEqual({x for _, x in got}, {"e0", "e2"})
        ev = h.log_events(self.s.dataplane_log(), "health_changed")
        self.assertTrue(any(e.get("healthy") == "0" and
                            e.get("endpoint") == "127.0.0.1:%d" % ports[1] for e in ev), ev)
        st = {e["port"]: e for e in self.cluster_stats("default/app:80+round_robin")["endpoints"]}
        self.assertEqual(st[ports[1]]["state"], "unhealthy")
        self.assertFalse(st[ports[1]]["health_check"]["healthy"])
        self.assertEqual(st[ports[1]]["health_check"]["last_status"], 503)
        # back
        open(files[1], "w").close()
        h.wait_until(lambda: self.healthy(ports[1]) == 1, 10 * h.SLOW, what="e1 healthy")
        self.assertEqual({x for _, x in self.gets(30)}, {"e0", "e1", "e2"})

    def test_health_checks_fail_open(self):
        files, ports = self.health_stack(2)
        for f in files:
            os.unlink(f)
        for p in ports:
            h.wait_until(lambda p=p: self.healthy(p) == 0, 10 * h.SLOW, what="unhealthy")
        got = self.gets(10)
        # every endpoint fails its checks: all of them take requests (fail open)
        self.assertEqual([s for s, _ in got], [200] * 10)
        self.assertEqual({x for _, x in got}, {"e0", "e1"})
        self.assertGreaterEqual(self.metric("strait_health_fail_open_total"), 10)

    def test_checker_thread_starts_with_the_first_checked_cluster(self):
        port = self.backend("e0")
        self.stack({}, [port])
        threads = lambda: len(os.listdir("/proc/%d/task" % self.s.dp.pid))  # noqa: E731
        n0 = threads()
        self.assertEqual(self.get()[0], 200)
        self.assertEqual(threads(), n0)  # no cluster asks for checks: no checker thread
        self.s.write_atomic("svc.yaml", service("app", {
            "strait.dev/health-check-path": "/healthz"}), slice_for("app", port))
        h.wait_until(lambda: "health_check" in json.dumps(self.stats()["clusters"]),
                     10 * h.SLOW, what="a cluster with health checks")
        self.assertEqual(threads(), n0 + 1)

    def test_health_checks_share_one_checker(self):
        # two workers, one checker: the backend sees one probe per interval per endpoint
        record = os.path.join(self.s.dir, "probes.jsonl")
        f = os.path.join(self.s.dir, "ok")
        open(f, "w").close()
        port = self.backend("e0", "--health-file", f, "--record", record)
        self.s.write("svc.yaml", service("app", {"strait.dev/health-check-path": "/healthz",
                                                 "strait.dev/health-check-interval": "250ms"}),
                     slice_for("app", port))
        self.s.write("ing.yaml", h.ingress("res", rules=[(HOST, [("/", "Prefix", "app")])]))
        self.s.controller()
        h.start_dataplane(self.s, "--workers", "2")
        h.wait_until(lambda: os.path.exists(record), 10 * h.SLOW, what="first probe")
        t0 = time.monotonic()
        with open(record) as fh:
            n0 = sum(1 for ln in fh if "/healthz" in ln)
        h.wait_until(lambda: time.monotonic() - t0 >= 2.0, 5, what="2 s of probes")
        with open(record) as fh:
            lines = [json.loads(ln) for ln in fh if "/healthz" in ln]
        n = len(lines) - n0
        # 8 intervals of 250 ms (+-10 % jitter): about 8, never two checkers' 16
        self.assertGreaterEqual(n, 5, lines[-5:])
        self.assertLessEqual(n, 11, lines[-5:])
        self.assertEqual(lines[-1].get("headers", {}).get("user-agent",
                         lines[-1].get("headers", {}).get("User-Agent")), "strait-healthcheck")
