"""Default backend, error statuses (404/502/503), round robin, admin endpoints."""
import json

import harness as h

RR = {"strait.dev/load-balance": "round_robin"}


class StatusTest(h.StraitTest):
    def test_default_backend(self):
        ports = self.s.backends("main", "fallback")
        self.s.write("svc.yaml", h.service_with_endpoints("main", ports["main"]),
                     h.service_with_endpoints("fallback", ports["fallback"]))
        self.s.write("ing.yaml", h.ingress("site", default="fallback",
                                           rules=[("site.test", [("/app", "Prefix", "main")])]))
        self.s.start()
        self.assertBackend(self.s.curl("site.test", "/app"), "main")
        self.assertBackend(self.s.curl("site.test", "/other"), "fallback")  # no path matches
        self.assertBackend(self.s.curl("unknown.test", "/"), "fallback")  # no host matches

    def test_404_without_default_backend(self):
        port = self.s.backend("main")
        self.s.write("svc.yaml", h.service_with_endpoints("main", port))
        self.s.write("ing.yaml", h.ingress("site", rules=[("site.test", [("/app", "Exact", "main")])]))
        self.s.start()
        self.assertBackend(self.s.curl("site.test", "/app"), "main")
        for host, path in (("site.test", "/app/x"), ("unknown.test", "/app")):
            r = self.s.curl(host, path)
            self.assertStatus(r, 404)
            self.assertTrue(r.headers.get("content-type", "").startswith("text/plain"), repr(r.headers))
            self.assertEqual(r.headers.get("content-length"), str(len(r.body)))
            self.assertTrue(r.body.endswith(b"\n"), repr(r.body))

    def test_503_when_no_ready_endpoint(self):
        port = self.s.backend("main")  # listening, but its only endpoint is not ready
        self.s.write("svc.yaml", h.service_with_endpoints("main", port, ready=False))
        self.s.write("ing.yaml", h.ingress("site", rules=[("site.test", [("/", "Prefix", "main")])]))
        self.s.start()
        r = self.s.curl("site.test", "/")
        self.assertStatus(r, 503)
        self.assertIsNone(r.backend, "a not-ready endpoint must not be used")

    def test_502_when_nothing_listens(self):
        dead = h.free_port()  # nobody listens here
        self.s.write("svc.yaml", h.service_with_endpoints("main", dead))
        self.s.write("ing.yaml", h.ingress("site", rules=[("site.test", [("/", "Prefix", "main")])]))
        self.s.start()
        r = self.s.curl("site.test", "/")
        self.assertStatus(r, 502)
        # and the data plane keeps working afterwards
        self.assertEqual(self.s.admin_get("/live")[0], 200)

    def test_503_before_any_snapshot(self):
        # a data plane whose controller never shows up
        self.s.dataplane(socket_path=self.s.dir + "/nobody.sock", wait_ready=False)
        r = self.s.curl("any.test", "/")
        self.assertStatus(r, 503)
        self.assertEqual(self.s.admin_get("/ready")[0], 503)
        self.assertEqual(self.s.admin_get("/snapshot")[0], 503)
        self.assertEqual(self.s.admin_get("/live")[0], 200)

    def test_round_robin_two_replicas(self):
        ports = self.s.backends("app-v1", "app-v2")
        # one Service, two EndpointSlices (one per replica port), as in manifests/examples
        self.s.write("svc.yaml", h.service("app"),
                     h.endpoint_slice("app-a", "app", ports["app-v1"]),
                     h.endpoint_slice("app-b", "app", ports["app-v2"]))
        # exact rotation needs round robin (the default is ewma)
        self.s.write("ing.yaml", h.ingress("app", rules=[("app.test", [("/", "Prefix", "app")])],
                                           annotations=RR))
        self.s.start()
        seen = {"app-v1": 0, "app-v2": 0}
        for _ in range(20):
            r = self.s.curl("app.test", "/")
            self.assertEqual(r.status, 200, repr(r))
            seen[r.backend] = seen.get(r.backend, 0) + 1
        self.assertEqual(set(seen), {"app-v1", "app-v2"}, seen)
        self.assertLessEqual(abs(seen["app-v1"] - seen["app-v2"]), 4, "uneven: %s" % seen)


class AdminTest(h.StraitTest):
    def test_admin_endpoints(self):
        port = self.s.backend("main")
        self.s.write("svc.yaml", h.service_with_endpoints("main", port))
        self.s.write("ing.yaml", h.ingress("site", rules=[("site.test", [("/", "Prefix", "main")])]))
        self.s.start()
        st, body = self.s.admin_get("/ready")
        self.assertEqual((st, body), (200, b"ready\n"))
        self.assertEqual(self.s.admin_get("/live")[0], 200)
        st, body = self.s.admin_get("/snapshot")
        self.assertEqual(st, 200, body)
        snap = json.loads(body.decode())
        self.assertGreaterEqual(int(h.find_key(snap, "generation")), 1)
        self.assertIn("site.test", body.decode())
        st, body = self.s.admin_get("/metrics")
        self.assertEqual(st, 200)
        # Prometheus text: "# HELP"/"# TYPE" comments or "name value" lines
        lines = [ln for ln in body.decode().splitlines() if ln and not ln.startswith("#")]
        self.assertTrue(lines, "empty /metrics")
        for ln in lines:
            self.assertRegex(ln, r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? [-+0-9.eEnaNInf]+( [0-9]+)?$")
        # the admin listener is separate: the proxy port does not answer /ready from it
        self.assertEqual(self.s.curl("site.test", "/ready").backend, "main")

    def test_dump_and_frame_out(self):
        port = self.s.backend("main")
        self.s.write("svc.yaml", h.service_with_endpoints("main", port))
        self.s.write("ing.yaml", h.ingress("site", rules=[("dump.test", [("/", "Prefix", "main")])]))
        import os
        import subprocess
        ctl = os.path.join(h.BIN, "strait-controller")
        p = subprocess.run([ctl, "--manifests", self.s.mdir, "--socket", self.s.sock, "--dump"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30 * h.SLOW)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertNoSanitizer(p.stderr)
        snap = json.loads(p.stdout.decode())
        self.assertIn("dump.test", json.dumps(snap))
        frame = os.path.join(self.s.dir, "f.bin")
        p = subprocess.run([ctl, "--manifests", self.s.mdir, "--socket", self.s.sock,
                            "--frame-out", frame], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30 * h.SLOW)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertNoSanitizer(p.stderr)
        with open(frame, "rb") as f:
            data = f.read()
        self.assertGreater(len(data), 32)
        self.assertEqual(data[:4], b"STRT")
        self.assertEqual(int.from_bytes(data[8:16], "little"), 1)
        self.assertEqual(int.from_bytes(data[16:20], "little"), len(data) - 32)

    def assertNoSanitizer(self, stderr):
        text = stderr.decode("utf-8", "replace")
        for m in h.SANITIZER_MARKERS:
            self.assertNotIn(m, text)
