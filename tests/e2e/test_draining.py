"""Endpoint draining (issue 9, EndpointSlice conditions): only ready endpoints get new
requests; a serving/terminating endpoint finishes the requests it already has; on a swap
the data plane closes its idle pooled connections to endpoints that are no longer ready
instead of leaving them to the keep-alive timeout. Real backends (tools/backend.py), file
mode; connection counts from /proc/net/tcp (harness.established_to)."""
import threading
import time

import harness as h

HOST = "drain.test"
SVC = "drn"


def slice_for(port, conditions):
    """One EndpointSlice of Service drn for a replica on 127.0.0.1:port; conditions None
    leaves the conditions out (readiness unknown, which counts as ready)."""
    s = h.endpoint_slice("%s-%d" % (SVC, port), SVC, port)
    if conditions is None:
        del s["endpoints"][0]["conditions"]
    else:
        s["endpoints"][0]["conditions"] = conditions
    return s


READY = {"ready": True}
TERMINATING = {"ready": False, "serving": True, "terminating": True}


class DrainingTest(h.StraitTest):
    def endpoints(self, *slices):
        # atomically, so the controller never reads half a file
        self.s.write_atomic("svc.yaml", h.service(SVC), *slices)

    def start(self, slices, *flags):
        self.endpoints(*slices)
        # round robin: the tests want every ready endpoint used within a few requests
        self.s.write("ing.yaml", h.ingress("drn", rules=[(HOST, [("/", "Prefix", SVC)])],
                                           annotations={"strait.dev/load-balance": "round_robin"}))
        self.s.controller()
        h.start_dataplane(self.s, *flags)

    def swap(self, *slices):
        gen = self.s.generation()
        self.endpoints(*slices)
        h.wait_until(lambda: self.s.generation() > gen, 5 * h.SLOW, what="a new generation")

    def pruned(self):
        st, body = self.s.admin_get("/metrics")
        self.assertEqual(st, 200, body)
        values, _, problems = h.parse_metrics(body.decode())
        self.assertEqual(problems, [])
        return values.get("strait_upstream_pool_pruned_total")

    def test_terminating_endpoint_finishes_its_request_and_gets_no_new_one(self):
        ports = self.s.backends("a", "b")
        a, b = ports["a"], ports["b"]
        self.start([slice_for(b, READY)], "--workers", "1", "--upstream-keepalive-timeout", "60")
        delay_ms = int(2500 * h.SLOW)
        slow = {}

        def run_slow():
            t0 = time.monotonic()
            slow["resp"] = self.s.curl(HOST, "/slow?delay_ms=%d" % delay_ms, timeout=30)
            slow["elapsed"] = time.monotonic() - t0

        t = threading.Thread(target=run_slow, daemon=True)
        t.start()
        # B is the only endpoint: once it has a connection, the slow request is on it
        h.wait_until(lambda: h.established_to(b) >= 1, 5 * h.SLOW, what="the slow request on b")
        self.swap(slice_for(a, READY), slice_for(b, TERMINATING))
        # the worker has the new snapshot once a request lands on a; from then on only a
        self.s.wait_backend(HOST, "/first", "a", timeout=5 * h.SLOW)
        for i in range(8):
            self.assertBackend(self.s.curl(HOST, "/n%d" % i), "a")
        self.assertTrue(t.is_alive(), "the slow request should still be running on b")
        t.join(30 * h.SLOW)
        self.assertFalse(t.is_alive())
        self.assertBackend(slow["resp"], "b", "the terminating endpoint finishes its request")
        self.assertGreaterEqual(slow["elapsed"], delay_ms / 1000.0)
        # its connection is closed once the request is done, not parked (B is not ready)
        h.wait_until(lambda: h.established_to(b) == 0, 5 * h.SLOW,
                     what="no connection left to the terminating endpoint")
        self.assertGreater(h.established_to(a), 0, "a's idle pooled connection stays")
        for i in range(4):
            self.assertBackend(self.s.curl(HOST, "/m%d" % i), "a")

    def test_idle_pooled_connections_to_a_gone_endpoint_are_closed(self):
        ports = self.s.backends("a", "b")
        a, b = ports["a"], ports["b"]
        # a keep-alive timeout far beyond the test: only the prune can close them
        self.start([slice_for(a, READY), slice_for(b, READY)], "--workers", "2",
                   "--upstream-keepalive-timeout", "60")
        seen = set()
        for i in range(12):
            r = self.s.curl(HOST, "/k%d" % i)
            self.assertEqual(r.status, 200, repr(r))
            seen.add(r.backend)
        self.assertEqual(seen, {"a", "b"})
        h.wait_until(lambda: h.established_to(b) > 0 and h.established_to(a) > 0, 5 * h.SLOW,
                     what="idle pooled connections to a and b")
        self.assertEqual(self.pruned(), 0)
        t0 = time.monotonic()
        self.swap(slice_for(a, READY), slice_for(b, TERMINATING))
        h.wait_until(lambda: h.established_to(b) == 0, 5 * h.SLOW,
                     what="the idle connections to the terminating endpoint closed")
        self.assertLess(time.monotonic() - t0, 30, "well before the 60 s idle timeout")
        self.assertGreater(h.established_to(a), 0, "a ready endpoint keeps its pool")
        self.assertGreaterEqual(self.pruned(), 1)
        for i in range(6):
            self.assertBackend(self.s.curl(HOST, "/a%d" % i), "a")

        # b ready again, pooled again; then its slice is deleted: closed the same way
        self.swap(slice_for(a, READY), slice_for(b, READY))
        self.s.wait_backend(HOST, "/back", "b", timeout=5 * h.SLOW)
        h.wait_until(lambda: h.established_to(b) > 0, 5 * h.SLOW, what="a pooled connection to b")
        before = self.pruned()
        self.swap(slice_for(a, READY))
        h.wait_until(lambda: h.established_to(b) == 0, 5 * h.SLOW,
                     what="the idle connections to the removed endpoint closed")
        self.assertGreater(self.pruned(), before)
        self.assertGreater(h.established_to(a), 0)

    def test_ready_unset_is_used_serving_but_not_ready_is_not(self):
        ports = self.s.backends("unset", "serving")
        self.start([slice_for(ports["unset"], None),
                    slice_for(ports["serving"], {"ready": False, "serving": True,
                                                 "terminating": False})])
        for i in range(6):
            self.assertBackend(self.s.curl(HOST, "/u%d" % i), "unset")
        # the unset one turns not ready: nothing is left to send to
        self.swap(slice_for(ports["unset"], {"ready": False}),
                  slice_for(ports["serving"], {"serving": True, "ready": False}))
        self.s.wait_backend(HOST, "/none", 503, timeout=5 * h.SLOW)
