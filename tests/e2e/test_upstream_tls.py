"""Upstream TLS: a backend Service reached over HTTPS, chosen by the Ingress annotation
strait.dev/backend-protocol: HTTPS or by the Service port's appProtocol https, with SNI set
(strait.dev/proxy-ssl-name, default <service>.<namespace>.svc) and, when
strait.dev/proxy-ssl-secret names a CA bundle, the backend's certificate verified against it
(chain and name). The backends are tools/backend.py speaking HTTPS; their JSON answer says
which TLS version and server name the proxy's handshake used."""
import os
import sys

import certs
import harness as h


def https_backend(stack, name, cert):
    """tools/backend.py --tls-cert/--tls-key on a free port; returns the port."""
    port = h.free_port()
    stack.procs.append(h.Proc("backend-" + name, [
        sys.executable, h.BACKEND_PY, "--name", name, "--port", str(port),
        "--tls-cert", cert.crt, "--tls-key", cert.key], stack.dir))
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
