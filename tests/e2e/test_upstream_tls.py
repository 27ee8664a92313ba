"""Upstream TLS: a backend Service reached over HTTPS, chosen by the Ingress annotation
strait.dev/backend-protocol: HTTPS or by the Service port's appProtocol https, with SNI set
(strait.dev/proxy-ssl-name, default <service>.<namespace>.svc) and, when
strait.dev/proxy-ssl-secret names a CA bundle, the backend's certificate verified against it
(chain and name). The backends are tools/backend.py speaking HTTPS; their JSON answer says
which TLS version and server name the proxy's handshake used. Active health checks of an
HTTPS cluster run over TLS with the same settings: a failing health endpoint, or a certificate
the cluster's CA does not sign, takes the endpoint out of rotation."""
import json
import os
import sys

import certs
import harness as h


def https_backend(stack, name, cert, *extra):
    """tools/backend.py --tls-cert/--tls-key (then extra) on a free port; returns the port."""
    port = h.free_port()
    stack.procs.append(h.Proc("backend-" + name, [
        sys.executable, h.BACKEND_PY, "--name", name, "--port", str(port),
        "--tls-cert", cert.crt, "--tls-key", cert.key] + list(extra), stack.dir))
    h.wait_until(lambda: h.port_accepts(port), 10, what="https backend %s" % name)
    return port


def svc(name, port, app_protocol=None):
    docs = h.service_with_endpoints(name, port)
    if app_protocol:
        docs[0]["spec"]["ports"][0]["appProtocol"] = app_protocol
    return docs


class UpstreamTLSTest(h.StraitTest):
    def setUp(self):
        super().setUp()
        self.pki = os.path.join(self.s.dir, "pki")
        self.ca = certs.make_ca(self.pki, "Backend CA")
        self.other_ca = certs.make_ca(self.pki, "Other CA")
        # the backend's certificate names the Service's cluster DNS name and a custom name
        self.cert = certs.make_cert(self.pki, "web.default.svc",
                                    sans=["web.default.svc", "backend.internal"], ca=self.ca)

    def start(self, *docs):
        self.s.write("app.yaml", *docs)
        self.s.start()

    def test_backend_protocol_https_with_sni_and_no_verification(self):
        port = https_backend(self.s, "web", self.cert)
        self.start(h.ingress_class(), svc("web", port),
                   h.ingress("app", [("app.test", [("/", "Prefix", "web")])],
                             annotations={"strait.dev/backend-protocol": "HTTPS"}))
        r = self.s.curl("app.test", "/hello")
        self.assertBackend(r, "web")
        info = r.json()
        self.assertIn("tls", info, "the backend was not reached over TLS: %r" % info)
        self.assertIn(info["tls"]["version"], ("TLSv1.2", "TLSv1.3"))
        self.assertEqual(info["tls"]["sni"], "web.default.svc")
        self.assertEqual(info["host"], "app.test")  # the client's Host is forwarded as is

    def test_app_protocol_https_on_the_service_port(self):
        port = https_backend(self.s, "web", self.cert)
        self.start(h.ingress_class(), svc("web", port, app_protocol="https"),
                   h.ingress("app", [("app.test", [("/", "Prefix", "web")])]))
        r = self.s.curl("app.test", "/")
        self.assertBackend(r, "web")
        self.assertEqual(r.json()["tls"]["sni"], "web.default.svc")

    def test_verified_against_the_ca_with_a_custom_name(self):
        port = https_backend(self.s, "web", self.cert)
        self.start(h.ingress_class(), svc("web", port), certs.ca_secret("backend-ca", self.ca),
                   h.ingress("good", [("good.test", [("/", "Prefix", "web")])], annotations={
                       "strait.dev/backend-protocol": "HTTPS",
                       "strait.dev/proxy-ssl-secret": "default/backend-ca",
                       "strait.dev/proxy-ssl-name": "backend.internal"}),
                   h.ingress("default-name", [("dn.test", [("/", "Prefix", "web")])],
                             annotations={"strait.dev/backend-protocol": "https",
                                          "strait.dev/proxy-ssl-secret": "backend-ca"}))
        r = self.s.curl("good.test", "/")
        self.assertBackend(r, "web")
        self.assertEqual(r.json()["tls"]["sni"], "backend.internal")
        r = self.s.curl("dn.test", "/")
        self.assertBackend(r, "web")
        self.assertEqual(r.json()["tls"]["sni"], "web.default.svc")

    def test_wrong_ca_or_wrong_name_is_502(self):
        port = https_backend(self.s, "web", self.cert)
        self.start(h.ingress_class(), svc("web", port),
                   certs.ca_secret("backend-ca", self.ca), certs.ca_secret("other-ca", self.other_ca),
                   h.ingress("wrongca", [("wrongca.test", [("/", "Prefix", "web")])], annotations={
                       "strait.dev/backend-protocol": "HTTPS",
                       "strait.dev/proxy-ssl-secret": "other-ca"}),
                   h.ingress("wrongname", [("wrongname.test", [("/", "Prefix", "web")])],
                             annotations={"strait.dev/backend-protocol": "HTTPS",
                                          "strait.dev/proxy-ssl-secret": "backend-ca",
                                          "strait.dev/proxy-ssl-name": "evil.internal"}),
                   h.ingress("ok", [("ok.test", [("/", "Prefix", "web")])], annotations={
                       "strait.dev/backend-protocol": "HTTPS",
                       "strait.dev/proxy-ssl-secret": "backend-ca"}))
        r = self.s.curl("wrongca.test", "/")
        self.assertStatus(r, 502)
        r = self.s.curl("wrongname.test", "/")
        self.assertStatus(r, 502)
        self.assertBackend(self.s.curl("ok.test", "/"), "web")  # the same backend, verified
        log = self.s.dataplane_log()
        self.assertRegex(log, r"event=upstream_error .*reason=\"upstream certificate: "
                              r"(unable to get local issuer certificate|self-signed certificate in certificate chain)")
        self.assertRegex(log, r"event=upstream_error .*reason=\"upstream certificate: "
                              r"[Hh]ostname mismatch")
        st, body = self.s.admin_get("/metrics")
        m = h.parse_metrics(body.decode())[0]
        self.assertGreaterEqual(m.get("strait_upstream_connect_errors_total", 0), 2)

    def test_plain_backend_behind_https_annotation_is_502_not_a_hang(self):
        plain = self.s.backend("plain")
        self.start(h.ingress_class(), svc("plain", plain),
                   h.ingress("app", [("app.test", [("/", "Prefix", "plain")])],
                             annotations={"strait.dev/backend-protocol": "HTTPS"}))
        r = self.s.curl("app.test", "/", timeout=10)
        self.assertStatus(r, 502)
        # the log says why: OpenSSL's reason, not a generic handshake failure
        self.assertRegex(self.s.dataplane_log(),
                         r"event=upstream_error .*reason=\"upstream TLS: wrong version number\"")

    def test_tls_connections_are_pooled_and_reused(self):
        port = https_backend(self.s, "web", self.cert)
        self.s.write("app.yaml", h.ingress_class(), svc("web", port),
                     h.ingress("app", [("app.test", [("/", "Prefix", "web")])],
                               annotations={"strait.dev/backend-protocol": "HTTPS"}))
        self.s.controller()
        h.start_dataplane(self.s, "--workers", "1")  # one worker: one pool sees every request
        for i in range(5):
            r = self.s.curl("app.test", "/n%d" % i)
            self.assertBackend(r, "web")
            self.assertIn("tls", r.json())
        st, body = self.s.admin_get("/metrics")
        m = h.parse_metrics(body.decode())[0]
        # one handshake, then the idle TLS connection carries every later request
        self.assertEqual(m.get("strait_upstream_connections_total"), 1, m)
        self.assertEqual(m.get("strait_upstream_pool_reused_total"), 4, m)

    def test_handshake_that_never_completes_is_504_after_the_connect_timeout(self):
        # a listener that never accepts: the TCP connect completes (the kernel's backlog),
        # the ClientHello is never answered
        import socket
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)
        self.addCleanup(hole.close)
        self.s.write("app.yaml", h.ingress_class(), svc("hole", hole.getsockname()[1]),
                     h.ingress("app", [("app.test", [("/", "Prefix", "hole")])],
                               annotations={"strait.dev/backend-protocol": "HTTPS"}))
        self.s.controller()
        h.start_dataplane(self.s, "--upstream-connect-timeout", "0.5")
        r = self.s.curl("app.test", "/", timeout=10)
        self.assertStatus(r, 504)
        self.assertIn('reason="TLS handshake timeout"', self.s.dataplane_log())

    def test_fresh_connections_resume_the_endpoints_session(self):
        # no pooling: every request opens a new upstream connection; from the second on, the
        # handshake resumes the session (ticket) the backend gave the previous one
        port = https_backend(self.s, "web", self.cert)
        self.s.write("app.yaml", h.ingress_class(), svc("web", port),
                     certs.ca_secret("backend-ca", self.ca),
                     h.ingress("app", [("app.test", [("/", "Prefix", "web")])],
                               annotations={"strait.dev/backend-protocol": "HTTPS",
                                            "strait.dev/proxy-ssl-secret": "backend-ca"}))
        self.s.controller()
        h.start_dataplane(self.s, "--upstream-keepalive", "0", "--workers", "2")
        seen = []
        for i in range(6):
            r = self.s.curl("app.test", "/r%d" % i)
            self.assertBackend(r, "web")
            seen.append(r.json()["tls"]["resumed"])
        self.assertFalse(seen[0], seen)  # nothing to resume yet
        self.assertTrue(all(seen[2:]), seen)  # shared by both workers: resumed from then on
        st, body = self.s.admin_get("/metrics")
        m = h.parse_metrics(body.decode())[0]
        self.assertEqual(m.get("strait_upstream_connections_total"), 6, m)

    # -- active health checks over TLS --
    HC = {"strait.dev/health-check-path": "/healthz",
          "strait.dev/health-check-interval": "500ms",
          "strait.dev/health-check-timeout": "500ms",
          "strait.dev/health-check-unhealthy-threshold": "2",
          "strait.dev/health-check-healthy-threshold": "2"}

    def health_stack(self, certs_by_name):
        """One HTTPS backend per (name, cert), each with a --health-file that exists, behind
        one Service with health checks and an Ingress verifying against self.ca; returns
        {name: (health file, port)}."""
        out, docs = {}, [h.service("web", annotations=self.HC)]
        for name, cert in certs_by_name:
            f = os.path.join(self.s.dir, "healthy-" + name)
            open(f, "w").close()
            port = https_backend(self.s, name, cert, "--health-file", f)
            out[name] = (f, port)
            docs.append(h.endpoint_slice("web-%d" % port, "web", port))
        self.start(h.ingress_class(), certs.ca_secret("backend-ca", self.ca),
                   h.ingress("app", [("app.test", [("/", "Prefix", "web")])], annotations={
                       "strait.dev/backend-protocol": "HTTPS",
                       "strait.dev/proxy-ssl-secret": "backend-ca",
                       "strait.dev/load-balance": "round_robin"}), *docs)
        return out

    def health_of(self, port):
        """The health_check entry of the endpoint on port in /stats (None before one)."""
        st, body = self.s.admin_get("/stats")
        for c in json.loads(body)["clusters"]:
            for e in c.get("endpoints", []):
                if e.get("port") == port and "health_check" in e:
                    return e["health_check"]
        return None

    def wait_health(self, port, healthy, what):
        def ok():
            hc = self.health_of(port)
            return hc is not None and hc["checks"] >= 2 and hc["healthy"] == healthy
        h.wait_until(ok, 15 * h.SLOW, what=what)
        return self.health_of(port)

    def backends_of(self, n):
        return {self.s.curl("app.test", "/n%d" % i).backend for i in range(n)}

    def test_health_checks_over_tls_eject_and_restore(self):
        eps = self.health_stack([("e0", self.cert), ("e1", self.cert)])
        for name in ("e0", "e1"):
            # a plain probe would fail the backend's handshake: passing ones went over TLS,
            # verified against the cluster's CA
            hc = self.wait_health(eps[name][1], True, name + " checked")
            self.assertEqual(hc["failures"], 0, hc)
            self.assertEqual(hc["last_status"], 200, hc)
        self.assertEqual(self.backends_of(20), {"e0", "e1"})
        os.unlink(eps["e1"][0])
        hc = self.wait_health(eps["e1"][1], False, "e1 unhealthy")
        self.assertEqual(hc["last_status"], 503, hc)
        self.assertEqual(hc["last_error"], "status 503", hc)
        self.assertEqual(self.backends_of(20), {"e0"})
        open(eps["e1"][0], "w").close()
        h.wait_until(lambda: self.health_of(eps["e1"][1])["healthy"], 15 * h.SLOW,
                     what="e1 healthy again")
        self.assertEqual(self.backends_of(20), {"e0", "e1"})
        ev = h.log_events(self.s.dataplane_log(), "health_changed")
        self.assertEqual([e.get("healthy") for e in ev
                          if e.get("endpoint") == "127.0.0.1:%d" % eps["e1"][1]], ["0", "1"], ev)

    def test_health_check_fails_for_a_certificate_the_ca_does_not_sign(self):
        # two endpoints: with only the bad one, failing open would still send it requests
        rogue = certs.make_cert(self.pki, "web.default.svc", sans=["web.default.svc"],
                                ca=self.other_ca, name="rogue")
        eps = self.health_stack([("good", self.cert), ("rogue", rogue)])
        hc = self.wait_health(eps["rogue"][1], False, "rogue unhealthy")
        self.assertTrue(hc["last_error"].startswith("upstream certificate: "), hc)
        self.assertEqual(hc["last_status"], 0, hc)  # no request went to it
        self.assertEqual(hc["failures"], hc["checks"], hc)
        hc = self.wait_health(eps["good"][1], True, "good checked")
        self.assertEqual(hc["failures"], 0, hc)
        got = [self.s.curl("app.test", "/r%d" % i) for i in range(20)]
        self.assertEqual([r.status for r in got], [200] * 20)
        self.assertEqual({r.backend for r in got}, {"good"})
