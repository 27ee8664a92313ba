"""Operability: the controller's --admin endpoints (/healthz, /readyz, /metrics, /snapshot)
and their values as manifests and data planes change; clean SIGTERM exits of both binaries
(the controller removes its socket, the data plane finishes a request in flight); the data
plane's /metrics counters; HEAD and 405 on both admin servers. Every wait polls with a
deadline (harness.wait_until)."""
import json
import os
import re
import shutil
import threading
import urllib.error
import urllib.request

import harness as h



def http_get(port, path):
    """(status, body bytes) from 127.0.0.1:port; (0, b"") when nothing answers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open("http://127.0.0.1:%d%s" % (port, path), timeout=5 * h.SLOW) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def parse_metrics(text):
    """harness.parse_metrics, plus strait_requests_total summed per code class
    (strait_requests_total{code="2xx"}), and without the types."""
    values, types, problems = h.parse_metrics(text)
    # strait_requests_total carries route and code labels: also sum it per code
    if "strait_requests_total" in types:
        for n in range(1, 6):
            values.setdefault('strait_requests_total{code="%dxx"}' % n, 0.0)
    for key, v in list(values.items()):
        c = re.match(r'strait_requests_total\{.*code="(\dxx)"', key)
        if c and key != 'strait_requests_total{code="%s"}' % c.group(1):
            k = 'strait_requests_total{code="%s"}' % c.group(1)
            values[k] = values.get(k, 0) + v
    return values, problems


class MetricsMixin:
    def metrics(self, port):
        st, body = http_get(port, "/metrics")
        self.assertEqual(st, 200, body)
        values, problems = parse_metrics(body.decode())
        self.assertEqual(problems, [])
        return values

    def wait_metric(self, port, name, pred, what, timeout=5.0):
        """Polls /metrics until pred(value of name) holds; returns the value."""
        box = {}

        def ok():
            v = self.metrics(port).get(name)
            box["v"] = v
            return v is not None and pred(v)
        try:
            h.wait_until(ok, timeout, what=what)
        except AssertionError as e:
            raise AssertionError("%s (last %s=%r)" % (e, name, box.get("v")))
        return box["v"]

    def assert_head_and_405(self, port, path):
        raw = h.raw_exchange(port, ("HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
        self.assertEqual(h.status_of(raw), 200, raw)
        head, _, body = raw.partition(b"\r\n\r\n")
        self.assertEqual(body, b"", "HEAD reply carried a body")
        self.assertRegex(head.decode(), r"(?i)\r\ncontent-length: [1-9]")
        self.assertRegex(head.decode(), r"(?i)\r\ndate: ")
        raw = h.raw_exchange(port, ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
                                    "hello" % path).encode())
        self.assertEqual(h.status_of(raw), 405, raw)
        self.assertRegex(raw.decode("latin-1"), r"(?i)\r\nallow: GET, HEAD\r\n")
        r = h.curl(port, path, method="POST", extra=("--data-binary", "x"))
        self.assertEqual(r.status, 405, r)
        r = h.curl(port, path, method="HEAD")
        self.assertEqual(r.status, 200, r)


C = "strait_controller_"


class ControllerAdminTest(MetricsMixin, h.StraitTest):
    def start_controller(self, **kw):
        self.cport = h.free_port()
        self.s.controller("--admin", "127.0.0.1:%d" % self.cport, **kw)
        h.wait_until(lambda: h.port_accepts(self.cport), 10, what="controller admin port")

    def site(self):
        port = self.s.backend("web")
        self.s.write("svc.yaml", h.service_with_endpoints("web", port))
        self.s.write("ing.yaml", h.ingress("site", rules=[("op.test", [("/", "Prefix", "web")])]))

    def test_endpoints_and_values(self):
        self.site()
        self.start_controller()
        self.assertEqual(http_get(self.cport, "/healthz"), (200, b"ok\n"))
        self.assertEqual(http_get(self.cport, "/readyz")[0], 200)
        self.assertEqual(http_get(self.cport, "/nope")[0], 404)
        m = self.metrics(self.cport)
        for fam in ("snapshot_generation", "snapshots_published_total", "reloads_total",
                    "reload_errors_total", "objects_rejected", "dataplanes_connected",
                    "acks_total", "nacks_total"):
            self.assertIn(C + fam, m)
        self.assertEqual(m[C + "snapshot_generation"], 1)
        self.assertEqual(m[C + "snapshots_published_total"], 1)
        self.assertEqual(m[C + 'objects{kind="Ingress"}'], 1)
        self.assertEqual(m[C + 'objects{kind="Service"}'], 1)
        self.assertEqual(m[C + 'objects{kind="EndpointSlice"}'], 1)
        self.assertEqual(m[C + "objects_rejected"], 0)
        self.assertEqual(m[C + "reload_errors_total"], 0)
        self.assertEqual(m[C + "dataplanes_connected"], 0)
        st, body = http_get(self.cport, "/snapshot")
        self.assertEqual(st, 200)
        self.assertEqual(h.find_key(json.loads(body.decode()), "generation"), 1)

        # a data plane attaches and ACKs
        self.s.dataplane()
        self.wait_metric(self.cport, C + "dataplanes_connected", lambda v: v == 1,
                         "dataplanes_connected == 1")
        acks = self.wait_metric(self.cport, C + "acks_total", lambda v: v >= 1, "first ACK")

        # an edit: generation moves, the data plane ACKs the new one
        self.s.write("ing.yaml", h.ingress("site", rules=[("op.test", [("/", "Prefix", "web")]),
                                                          ("op2.test", [("/", "Prefix", "web")])]))
        self.wait_metric(self.cport, C + "snapshot_generation", lambda v: v == 2, "generation 2")
        self.wait_metric(self.cport, C + "acks_total", lambda v: v > acks, "ACK of generation 2")
        m = self.metrics(self.cport)
        self.assertEqual(m[C + "snapshots_published_total"], 2)
        self.assertEqual(m[C + 'objects{kind="Ingress"}'], 1)
        self.assertEqual(m[C + "nacks_total"], 0)
        st, body = http_get(self.cport, "/snapshot")
        self.assertEqual(h.find_key(json.loads(body.decode()), "generation"), 2)

        # a broken Ingress (unknown pathType) and one pointing at a missing Service are
        # counted as rejected; fixing them brings the gauge back to 0
        reloads = self.metrics(self.cport)[C + "reloads_total"]
        self.s.write("broken.yaml",
                     h.ingress("bad", rules=[("bad.test", [("/", "Bogus", "web")])]),
                     h.ingress("dangling", rules=[("d.test", [("/", "Prefix", "nosuch")])]))
        self.wait_metric(self.cport, C + "objects_rejected", lambda v: v == 2,
                         "objects_rejected == 2")
        m = self.metrics(self.cport)
        self.assertGreater(m[C + "reloads_total"], reloads)
        self.assertEqual(m[C + "snapshot_generation"], 2, "rejected objects changed nothing")
        self.assertEqual(m[C + 'objects{kind="Ingress"}'], 1)
        os.unlink(os.path.join(self.s.mdir, "broken.yaml"))
        self.wait_metric(self.cport, C + "objects_rejected", lambda v: v == 0,
                         "objects_rejected back to 0")

        # the data plane leaves
        self.assertEqual(self.s.dp.stop(), [])
        self.wait_metric(self.cport, C + "dataplanes_connected", lambda v: v == 0,
                         "dataplanes_connected == 0")

    def test_readyz_waits_for_first_snapshot(self):
        # the folder does not exist yet: the controller serves, retries, and is not ready
        shutil.rmtree(self.s.mdir)
        self.start_controller()
        self.assertEqual(http_get(self.cport, "/healthz"), (200, b"ok\n"))
        self.assertEqual(http_get(self.cport, "/readyz")[0], 503)
        self.assertEqual(http_get(self.cport, "/snapshot")[0], 503)
        self.wait_metric(self.cport, C + "reload_errors_total", lambda v: v >= 1, "a failed reload")
        self.assertEqual(self.metrics(self.cport)[C + "snapshot_generation"], 0)
        os.makedirs(self.s.mdir)
        self.site()
        h.wait_until(lambda: http_get(self.cport, "/readyz")[0] == 200, 5,
                     what="/readyz 200 once the folder is readable")
        self.assertEqual(self.metrics(self.cport)[C + "snapshot_generation"], 1)

    def test_head_and_405(self):
        self.site()
        self.start_controller()
        for path in ("/healthz", "/metrics", "/snapshot"):
            self.assert_head_and_405(self.cport, path)

    def test_sigterm_exits_0_and_removes_socket(self):
        self.site()
        self.start_controller()
        self.assertTrue(os.path.exists(self.s.sock))
        self.assertEqual(self.s.ctl.stop(), [])
        self.assertEqual(self.s.ctl.rc, 0)
        self.assertFalse(os.path.exists(self.s.sock), "socket file left behind")
        self.assertFalse(h.port_accepts(self.cport), "admin port still open")
        self.assertIn("event=shutdown", self.s.controller_log())


class DataplaneOperabilityTest(MetricsMixin, h.StraitTest):
    def test_sigterm_finishes_in_flight_request(self):
        port = self.s.backend("slow")
        self.s.write("svc.yaml", h.service_with_endpoints("slow", port))
        self.s.write("ing.yaml", h.ingress("site", rules=[("slow.test", [("/", "Prefix", "slow")])]))
        self.s.start()
        result = {}

        def slow_request():
            result["r"] = self.s.curl("slow.test", "/slow?delay_ms=1500", timeout=20)
        t = threading.Thread(target=slow_request)
        t.start()
        try:
            h.wait_until(lambda: h.established_to(port) > 0 or not t.is_alive(), 10,
                         what="the slow request to reach the backend")
            self.assertTrue(t.is_alive(), "the slow request finished before SIGTERM; test is void")
            problems = self.s.dp.stop()  # SIGTERM, waits for the exit
        finally:
            t.join(30 * h.SLOW)
        self.assertEqual(problems, [])
        self.assertEqual(self.s.dp.rc, 0)
        r = result.get("r")
        self.assertIsNotNone(r, "in-flight request did not finish")
        self.assertBackend(r, "slow", "in-flight request: %r" % r)
        self.assertEqual(r.json()["query"], "delay_ms=1500")

    def test_metrics_count_requests(self):
        port = self.s.backend("web")
        dead = h.free_port()  # nothing listens there: connect fails, 502
        self.s.write("svc.yaml", h.service_with_endpoints("web", port),
                     h.service_with_endpoints("dead", dead))
        self.s.write("ing.yaml", h.ingress("site", rules=[("m.test", [("/", "Prefix", "web")]),
                                                          ("dead.test", [("/", "Prefix", "dead")])]))
        self.s.start()
        a = self.s.admin_port
        m0 = self.metrics(a)
        for fam in ("strait_snapshot_generation", "strait_snapshot_swaps_total",
                    "strait_snapshot_nacks_total", 'strait_requests_total{code="2xx"}',
                    "strait_connections_total", "strait_connections_active",
                    "strait_upstream_connect_errors_total"):
            self.assertIn(fam, m0)
        self.assertGreaterEqual(m0["strait_snapshot_generation"], 1)
        self.assertGreaterEqual(m0["strait_snapshot_swaps_total"], 1)
        for _ in range(3):
            self.assertBackend(self.s.curl("m.test", "/"), "web")
        for _ in range(2):
            self.assertStatus(self.s.curl("nowhere.test", "/"), 404)
        self.assertStatus(self.s.curl("dead.test", "/"), 502)

        def grew(key, n):
            return self.wait_metric(a, key, lambda v: v >= m0[key] + n, "%s +%d" % (key, n))
        self.assertEqual(grew('strait_requests_total{code="2xx"}', 3),
                         m0['strait_requests_total{code="2xx"}'] + 3)
        self.assertEqual(grew('strait_requests_total{code="4xx"}', 2),
                         m0['strait_requests_total{code="4xx"}'] + 2)
        self.assertEqual(grew('strait_requests_total{code="5xx"}', 1),
                         m0['strait_requests_total{code="5xx"}'] + 1)
        self.assertEqual(grew("strait_upstream_connect_errors_total", 1),
                         m0["strait_upstream_connect_errors_total"] + 1)
        grew("strait_connections_total", 6)
        self.wait_metric(a, "strait_connections_active", lambda v: v == 0,
                         "no client connection left open")

    def test_head_and_405(self):
        self.s.write("ing.yaml", h.ingress("site", rules=[("x.test", [("/", "Prefix", "web")])]))
        self.s.start()
        for path in ("/ready", "/live", "/metrics", "/snapshot"):
            self.assert_head_and_405(self.s.admin_port, path)
        self.assertEqual(self.s.admin_get("/nope")[0], 404)
