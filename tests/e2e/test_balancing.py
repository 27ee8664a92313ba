"""Endpoint balancing end to end (issue 9): the strait.dev/load-balance algorithms chosen per
Ingress, hashing on a header, a cookie, the client address or the path, cookie affinity,
and EWMA moving traffic away from an endpoint that turns slow. Real backends on loopback."""
import http.client
import time

import harness as h

HOST = "lb.test"


class BalancingTest(h.StraitTest):
    def stack(self, n, annotations):
        names = ["e%d" % i for i in range(n)]
        ports = self.s.backends(*names)
        self.s.write("svc.yaml", h.service("app"),
                     *[h.endpoint_slice("app-%s" % nm, "app", ports[nm]) for nm in names])
        self.s.write("ing.yaml", h.ingress("lb", annotations=annotations,
                                           rules=[(HOST, [("/", "Prefix", "app")])]))
        self.s.start()
        return names

    def gets(self, n, path="/", headers=None):
        """n GETs over one keep-alive connection: the X-Backend of each."""
        conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=10 * h.SLOW)
        out = []
        try:
            for _ in range(n):
                conn.request("GET", path, headers=dict({"Host": HOST}, **(headers or {})))
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, 200)
                out.append(r.getheader("X-Backend"))
        finally:
            conn.close()
        return out

    def test_ring_hash_and_maglev_on_a_header_are_sticky_and_spread(self):
        for algo in ("ring_hash", "maglev"):
            with self.subTest(algo=algo):
                self.s.stop()
                self.s = h.Stack(self.id() + algo)
                self.stack(4, {"strait.dev/load-balance": algo,
                               "strait.dev/hash-by": "header:x-user"})
                owners = {}
                for u in range(40):
                    got = set(self.gets(5, headers={"x-user": "user-%d" % u}))
                    self.assertEqual(len(got), 1, "user-%d went to %s" % (u, got))
                    owners[u] = got.pop()
                self.assertGreaterEqual(len(set(owners.values())), 3, owners)

    def test_hash_by_path(self):
        self.stack(4, {"strait.dev/load-balance": "maglev", "strait.dev/hash-by": "path"})
        for p in ("/a", "/b/c", "/d?x=1"):
            got = set(self.gets(6, path=p))
            self.assertEqual(len(got), 1, "%s went to %s" % (p, got))
        # the query is not part of the path key
        self.assertEqual(set(self.gets(2, path="/q?x=1")), set(self.gets(2, path="/q?y=2")))
        # different paths spread over the endpoints
        owners = {p: self.gets(1, path="/p%d" % p)[0] for p in range(40)}
        self.assertGreaterEqual(len(set(owners.values())), 3, owners)

    def test_hash_by_source_ip(self):
        # every request comes from 127.0.0.1: one endpoint, whatever the path or connection
        self.stack(4, {"strait.dev/load-balance": "ring_hash", "strait.dev/hash-by": "source-ip"})
        got = set()
        for p in range(8):
            got |= set(self.gets(3, path="/x%d" % p))
        self.assertEqual(len(got), 1, got)

    def test_least_request_spreads_over_idle_endpoints(self):
        self.stack(3, {"strait.dev/load-balance": "least_request"})
        got = self.gets(300)
        for nm in ("e0", "e1", "e2"):
            self.assertGreater(got.count(nm), 60, got.count(nm))

    def test_cookie_affinity_sticks(self):
        self.stack(3, {"strait.dev/affinity": "cookie",
                       "strait.dev/session-cookie-name": "route"})
        r = self.s.curl(HOST, "/")
        self.assertEqual(r.status, 200, repr(r))
        cookie = r.headers.get("set-cookie", "")
        self.assertRegex(cookie, r"^route=[0-9a-f]{16}; Path=/; HttpOnly$")
        first = r.backend
        value = cookie.split(";")[0]
        for _ in range(10):
            r = self.s.curl(HOST, "/", headers=["Cookie: a=b; " + value])
            self.assertEqual(r.backend, first)
            self.assertNotIn("set-cookie", r.headers)  # already pinned: no new cookie
        # a cookie naming no endpoint gets a fresh one
        r = self.s.curl(HOST, "/", headers=["Cookie: route=0000000000000000"])
        self.assertEqual(r.status, 200)
        self.assertRegex(r.headers.get("set-cookie", ""), r"^route=[0-9a-f]{16};")

    def test_ewma_sends_little_to_a_slow_endpoint(self):
        """3 endpoints, one answering 60 ms slower: ewma gives it well under its third, round
        robin (the control, same run) exactly its third."""
        import sys
        share = {}
        for algo in ("round_robin", "ewma"):
            self.s.stop()
            self.s = h.Stack(self.id() + algo)
            ports = self.s.backends("fast1", "fast2")
            slow = h.free_port()
            self.s.procs.append(h.Proc("backend-slow", [
                sys.executable, h.BACKEND_PY, "--name", "slow", "--port", str(slow),
                "--delay-ms", "60"], self.s.dir))
            h.wait_until(lambda: h.port_accepts(slow), 10, what="slow backend")
            self.s.write("svc.yaml", h.service("app"),
                         h.endpoint_slice("app-a", "app", ports["fast1"]),
                         h.endpoint_slice("app-b", "app", ports["fast2"]),
                         h.endpoint_slice("app-c", "app", slow))
            self.s.write("ing.yaml", h.ingress("lb", annotations={"strait.dev/load-balance": algo},
                                               rules=[(HOST, [("/", "Prefix", "app")])]))
            self.s.start()
            got = self.gets(300)
            share[algo] = got.count("slow") / len(got)
        self.assertAlmostEqual(share["round_robin"], 1 / 3, delta=0.02, msg=share)
        self.assertLess(share["ewma"], 0.10, share)
        sys.stderr.write("  slow endpoint's share: %s\n" % share)
