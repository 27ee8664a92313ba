"""Passive outlier detection end to end (issue 9): an endpoint answering 503 is ejected after
5 consecutive failures and gets no more requests while the others serve; never more than half
of a cluster's endpoints are ejected. Real backends on loopback, round robin."""
import http.client
import re
import sys

import harness as h

HOST = "outlier.test"


class OutlierTest(h.StraitTest):
    def stack(self, good, bad):
        """good backends answering 200, bad ones 503; returns {name: port}."""
        ports = self.s.backends(*good) if good else {}
        for nm in bad:
            port = h.free_port()
            self.s.procs.append(h.Proc("backend-" + nm, [
                sys.executable, h.BACKEND_PY, "--name", nm, "--port", str(port),
                "--status", "503"], self.s.dir))
            h.wait_until(lambda: h.port_accepts(port), 10, what="backend " + nm)
            ports[nm] = port
        self.s.write("svc.yaml", h.service("app"),
                     *[h.endpoint_slice("app-%s" % nm, "app", p) for nm, p in ports.items()])
        # the counts below rely on exact rotation: round robin (the default is ewma)
        self.s.write("ing.yaml", h.ingress("ol", rules=[(HOST, [("/", "Prefix", "app")])],
                                           annotations={"strait.dev/load-balance": "round_robin"}))
        self.s.start()
        return ports

    def gets(self, n):
        """n GETs over one keep-alive connection: (status, X-Backend) of each."""
        conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=10 * h.SLOW)
        out = []
        try:
            for _ in range(n):
                conn.request("GET", "/", headers={"Host": HOST})
                r = conn.getresponse()
                r.read()
                out.append((r.status, r.getheader("X-Backend")))
        finally:
            conn.close()
        return out

    def metric(self, name):
        st, body = self.s.admin_get("/metrics")
        self.assertEqual(st, 200)
        m = re.search(r"^%s (\d+)$" % re.escape(name), body.decode(), re.M)
        self.assertIsNotNone(m, name)
        return int(m.group(1))

    def test_failing_endpoint_is_ejected(self):
        ports = self.stack(["e0", "e1"], ["bad"])
        got = self.gets(60)
        bad = [i for i, (_, b) in enumerate(got) if b == "bad"]
        self.assertEqual(len(bad), 5, got)
        self.assertTrue(all(st == 503 for st, b in got if b == "bad"), got)
        # after its fifth failure, only the others answer, all of them 200
        tail = got[bad[-1] + 1:]
        self.assertGreater(len(tail), 40, got)
        self.assertTrue(all(st == 200 for st, _ in tail), tail)
        self.assertEqual({b for _, b in tail}, {"e0", "e1"})
        self.assertEqual(self.metric("strait_outlier_ejections_total"), 1)
        self.assertEqual(self.metric("strait_outlier_ejected"), 1)
        ev = h.log_events(self.s.dataplane_log(), "outlier_ejected")
        self.assertEqual(len(ev), 1, ev)
        self.assertEqual(ev[0].get("endpoint"), "127.0.0.1:%d" % ports["bad"])
        self.assertEqual(ev[0].get("failures"), "5")
        self.assertEqual(ev[0].get("for_s"), "30")
        self.assertEqual(ev[0].get("level"), "info")

    def test_at_most_half_ejected(self):
        self.stack([], ["bad0", "bad1"])
        got = self.gets(60)
        self.assertTrue(all(st == 503 for st, _ in got), got)
        counts = {b: sum(1 for _, x in got if x == b) for b in ("bad0", "bad1")}
        # one is ejected after its 5 failures, the other keeps answering (the 50 % cap)
        self.assertEqual(sorted(counts.values()), [5, 55], counts)
        self.assertEqual(self.metric("strait_outlier_ejections_total"), 1)
        self.assertEqual(self.metric("strait_outlier_ejected"), 1)
        self.assertEqual(len(h.log_events(self.s.dataplane_log(), "outlier_ejected")), 1)
