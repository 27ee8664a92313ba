"""TLS, the controller's side (issue 6): Ingress spec.tls, kubernetes.io/tls Secrets and the
TLS annotations turned into the snapshot the data plane serves, as a user (or a data plane)
sees it: the controller's --dump JSON and its /snapshot admin endpoint in file mode, its log
lines, and in cluster mode the Events it writes and the Secret list it asks the API for.

Certificates are real ones made with the openssl command line (tests/e2e/certs.py); their
fingerprints are computed by openssl, not by the code under test. Every wait polls a
condition; nothing sleeps to synchronise.
"""
import json
import os
import subprocess
import urllib.parse

import certs
import harness
from harness import StraitTest, wait_until
from test_leader_status_events import NET, LeaderTest, Replica

SECRETS = "/api/v1/namespaces/default/secrets"


def tls_ingress(name, tls, rules, annotations=None, created=None, svc="web"):
    """An Ingress with spec.tls (a list of (hosts, secretName or None)) and Prefix "/" rules
    for each host of rules, to svc."""
    ing = harness.ingress(name, [(h, [("/", "Prefix", svc)]) for h in rules],
                          annotations=annotations, created=created)
    ing["spec"]["tls"] = [dict({"hosts": list(hosts)}, **({"secretName": s} if s else {}))
                          for hosts, s in tls]
    return ing


def not_after(cert):
    """The certificate's notAfter as Unix seconds, read by openssl."""
    import calendar
    import time
    out = subprocess.run(["openssl", "x509", "-in", cert.crt, "-noout", "-enddate"],
                         capture_output=True, text=True, check=True).stdout.strip()
    # "notAfter=Dec 31 16:58:06 2026 GMT"
    return calendar.timegm(time.strptime(out.split("=", 1)[1], "%b %d %H:%M:%S %Y %Z"))


class TlsDumpTest(StraitTest):
    def setUp(self):
        super().setUp()
        self.cdir = os.path.join(self.s.dir, "certs")
        self.ca = certs.make_ca(self.cdir)

    def dump(self, *extra):
        """--dump of the manifests folder: (parsed JSON, raw stdout, stderr)."""
        p = subprocess.run([os.path.join(harness.BIN, "strait-controller"), "--manifests",
                            self.s.mdir, "--dump"] + list(extra), capture_output=True, text=True,
                           timeout=30 * harness.SLOW)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout), p.stdout, p.stderr

    def test_certificates_hosts_and_routes_in_the_dump(self):
        """Secrets referenced by spec.tls become certs (fingerprint = openssl's, not_after,
        has_key), hosts sorted with an EC and an RSA certificate paired, CA bundles without
        key; routes carry the redirect flag and HSTS; the private key never shows."""
        ec = certs.make_cert(self.cdir, "a.example.com", ca=self.ca, kind="ec")
        rsa = certs.make_cert(self.cdir, "a.example.com", ca=self.ca, kind="rsa")
        other = certs.make_cert(self.cdir, "b.example.com", ca=self.ca, name="b")
        self.s.write("objects.yaml",
                     harness.service("web"),
                     certs.tls_secret("a-ec", ec), certs.tls_secret("a-rsa", rsa),
                     certs.tls_secret("b", other), certs.ca_secret("clients", self.ca),
                     tls_ingress("old", [(["a.example.com"], "a-ec"), (["b.example.com"], "b")],
                                 ["a.example.com", "b.example.com", "plain.example.com"],
                                 annotations={"strait.dev/hsts": "true",
                                              "strait.dev/hsts-max-age": "600",
                                              "strait.dev/auth-tls-secret": "clients",
                                              "strait.dev/auth-tls-verify-client": "optional"},
                                 created="2024-01-01T00:00:00Z"),
                     # a second certificate for a.example.com, of the other key type
                     tls_ingress("new", [(["a.example.com"], "a-rsa")], [],
                                 created="2024-02-01T00:00:00Z"),
                     # b.example.com has TLS (from "old"), but this Ingress opts out
                     harness.ingress("optout", [("b.example.com",
                                                 [("/optout", "Prefix", "web")])],
                                     annotations={"strait.dev/ssl-redirect": "false"}))
        snap, raw, err = self.dump()
        certs_by_name = {c["name"]: c for c in snap["certs"]}
        self.assertEqual(sorted(certs_by_name),
                         ["default/a-ec", "default/a-rsa", "default/b", "default/clients"])
        self.assertEqual(certs_by_name["default/a-ec"]["fingerprint"], ec.fingerprint())
        self.assertEqual(certs_by_name["default/a-rsa"]["fingerprint"], rsa.fingerprint())
        self.assertEqual(certs_by_name["default/clients"]["fingerprint"], self.ca.fingerprint())
        self.assertTrue(certs_by_name["default/a-ec"]["has_key"])
        self.assertFalse(certs_by_name["default/clients"]["has_key"])
        self.assertEqual(certs_by_name["default/a-ec"]["not_after"], not_after(ec))
        hosts = [(t["host"], t["certs"], t["client_verify"]) for t in snap["tls_hosts"]]
        self.assertEqual(hosts, [
            ("a.example.com", ["default/a-ec", "default/a-rsa"], "optional"),
            ("b.example.com", ["default/b"], "optional")])
        routes = {(v["host"], r["path"]): r for v in snap["vhosts"] for r in v["routes"]}
        self.assertTrue(routes[("a.example.com", "/")]["ssl_redirect"])
        self.assertFalse(routes[("plain.example.com", "/")]["ssl_redirect"])
        self.assertFalse(routes[("b.example.com", "/optout")]["ssl_redirect"])
        self.assertEqual(routes[("a.example.com", "/")]["hsts"], "max-age=600; includeSubDomains")
        self.assertIsNone(routes[("b.example.com", "/optout")]["hsts"])
        # the private keys are nowhere in the output
        self.assertNotIn("PRIVATE KEY", raw)
        for c in (ec, rsa, other):
            body = c.key_bytes().decode().splitlines()[1]
            self.assertNotIn(body, raw)
        self.assertEqual(harness.log_events(err, "certificate_rejected"), [])

    def test_broken_secrets_isolated_and_default_certificate(self):
        """An expired certificate, a mismatched key and a missing Secret are rejected for
        their hosts only (one log line each, dates in the reason); their routes still serve;
        with --default-ssl-certificate those hosts get the default one."""
        good = certs.make_cert(self.cdir, "good.example.com", ca=self.ca)
        old = certs.make_cert(self.cdir, "old.example.com", ca=self.ca, not_before_days=-10,
                              days=-1)
        other = certs.make_cert(self.cdir, "other.example.com", ca=self.ca, name="other")
        dflt = certs.make_cert(self.cdir, "default.example.com", ca=self.ca, kind="rsa",
                               name="dflt")
        self.s.write("objects.yaml",
                     harness.service("web"),
                     certs.tls_secret("good", good), certs.tls_secret("old", old),
                     certs.raw_tls_secret("mixed", good.crt_bytes(), other.key_bytes()),
                     certs.tls_secret("fallback", dflt),
                     tls_ingress("site", [(["good.example.com"], "good"),
                                          (["old.example.com"], "old"),
                                          (["mixed.example.com"], "mixed"),
                                          (["gone.example.com"], "gone")],
                                 ["good.example.com", "old.example.com", "mixed.example.com",
                                  "gone.example.com"]))
        snap, _, err = self.dump()
        self.assertEqual([(t["host"], t["certs"]) for t in snap["tls_hosts"]],
                         [("good.example.com", ["default/good"])])
        self.assertIsNone(snap["default_cert"])
        rej = {kv["secret"]: kv for kv in harness.log_events(err, "certificate_rejected")}
        self.assertEqual(sorted(rej), ["default/gone", "default/mixed", "default/old"])
        enddate = subprocess.run(["openssl", "x509", "-in", old.crt, "-noout", "-enddate",
                                  "-dateopt", "iso_8601"], capture_output=True, text=True)
        self.assertTrue(rej["default/old"]["reason"].startswith("certificate expired on "),
                        rej["default/old"])
        if enddate.returncode == 0:  # openssl 3's -dateopt: "notAfter=2026-11-30 16:50:14Z"
            day = enddate.stdout.strip().split("=", 1)[1][:10]
            self.assertIn(day, rej["default/old"]["reason"])
        self.assertEqual(rej["default/mixed"]["reason"], "tls.key does not match the certificate")
        self.assertEqual(rej["default/gone"]["reason"], "secret default/gone not found")
        self.assertEqual(rej["default/old"]["hosts"], "old.example.com")
        self.assertEqual(rej["default/old"]["kept"], "none")
        # the routes of the broken hosts are still there, and still redirect (they have TLS)
        routes = {v["host"]: v["routes"][0] for v in snap["vhosts"]}
        self.assertEqual(sorted(routes), ["gone.example.com", "good.example.com",
                                          "mixed.example.com", "old.example.com"])
        self.assertTrue(all(r["ssl_redirect"] for r in routes.values()))
        # with a default certificate the broken hosts are served with it
        snap, _, _ = self.dump("--default-ssl-certificate", "default/fallback")
        self.assertEqual(snap["default_cert"], "default/fallback")
        self.assertEqual({t["host"]: t["certs"] for t in snap["tls_hosts"]}, {
            "gone.example.com": ["default/fallback"], "good.example.com": ["default/good"],
            "mixed.example.com": ["default/fallback"], "old.example.com": ["default/fallback"]})
        fp = {c["name"]: c["fingerprint"] for c in snap["certs"]}
        self.assertEqual(fp["default/fallback"], dflt.fingerprint())

    def test_upstream_tls_clusters(self):
        """backend-protocol HTTPS (or appProtocol https) makes a "+tls" cluster with its SNI
        and CA, next to the plain one for the same Service port."""
        svc = harness.service("web")
        svc["spec"]["ports"].append({"name": "https", "port": 443, "appProtocol": "https"})
        plain = harness.ingress("plain", [("p.example.com", [("/", "Prefix", "web")])])
        up = harness.ingress("up", [("u.example.com", [("/", "Prefix", "web")])],
                             annotations={"strait.dev/backend-protocol": "HTTPS",
                                          "strait.dev/proxy-ssl-secret": "default/upstream-ca",
                                          "strait.dev/proxy-ssl-name": "api.internal"})
        app = harness.ingress("app", [("a.example.com", [("/", "Prefix", ("web", "https"))])])
        self.s.write("objects.yaml", svc, certs.ca_secret("upstream-ca", self.ca), plain, up, app)
        snap, _, _ = self.dump()
        clusters = {c["name"]: c for c in snap["clusters"]}
        self.assertEqual(sorted(clusters), ["default/web:443+tls", "default/web:80",
                                            "default/web:80+tls"])
        self.assertFalse(clusters["default/web:80"]["tls"])
        self.assertEqual((clusters["default/web:80+tls"]["tls"],
                          clusters["default/web:80+tls"]["tls_sni"],
                          clusters["default/web:80+tls"]["tls_ca"]),
                         (True, "api.internal", "default/upstream-ca"))
        self.assertEqual((clusters["default/web:443+tls"]["tls_sni"],
                          clusters["default/web:443+tls"]["tls_ca"]),
                         ("web.default.svc", None))

    def test_bad_annotation_rejects_that_ingress_only(self):
        """A bad TLS annotation value refuses its Ingress, with a reason naming it."""
        self.s.write("objects.yaml", harness.service("web"),
                     harness.ingress("bad", [("bad.example.com", [("/", "Prefix", "web")])],
                                     annotations={"strait.dev/ssl-redirect": "yes"}),
                     harness.ingress("ok", [("ok.example.com", [("/", "Prefix", "web")])]))
        snap, _, err = self.dump()
        self.assertEqual([v["host"] for v in snap["vhosts"]], ["ok.example.com"])
        rej = [kv for kv in harness.log_events(err, "object_rejected")
               if kv.get("object") == "default/bad"]
        self.assertEqual(len(rej), 1, err)
        self.assertEqual(rej[0]["reason"],
                         'annotation strait.dev/ssl-redirect "yes" is not "true" or "false"')

    def test_default_ssl_certificate_flag_syntax(self):
        for bad in ("nameonly", "a/b/c", "/name", "ns/"):
            p = subprocess.run([os.path.join(harness.BIN, "strait-controller"), "--manifests",
                                self.s.mdir, "--dump", "--default-ssl-certificate", bad],
                               capture_output=True, text=True, timeout=10 * harness.SLOW)
            self.assertEqual(p.returncode, 2, bad)
            self.assertIn("--default-ssl-certificate", p.stderr)


class TlsLastGoodTest(StraitTest):
    def test_bad_new_content_keeps_the_last_good_certificate(self):
        """A running controller (file mode): the Secret's content becomes a mismatched pair
        → /snapshot keeps the old fingerprint, one certificate_rejected line with
        kept=last-good however many rebuilds follow; a good new content replaces it."""
        cdir = os.path.join(self.s.dir, "certs")
        ca = certs.make_ca(cdir)
        first = certs.make_cert(cdir, "a.example.com", ca=ca, name="first")
        second = certs.make_cert(cdir, "a.example.com", ca=ca, name="second")
        self.s.write("app.yaml", harness.service("web"),
                     tls_ingress("site", [(["a.example.com"], "site-tls")], ["a.example.com"]))
        self.s.write_atomic("secret.yaml", certs.tls_secret("site-tls", first))
        self.s.ctl_health_port = harness.free_port()
        self.s.controller("--health", "127.0.0.1:%d" % self.s.ctl_health_port)

        def served():
            st, body = self.s.ctl_get("/snapshot")
            if st != 200:
                return None
            snap = json.loads(body.decode())
            return {c["name"]: c["fingerprint"] for c in snap["certs"]}.get("default/site-tls")
        wait_until(lambda: served() == first.fingerprint(), 10, what="first certificate served")
        self.s.write_atomic("secret.yaml", certs.raw_tls_secret("site-tls", second.crt_bytes(),
                                                                first.key_bytes()))
        lines = wait_until(lambda: harness.log_events(self.s.controller_log(),
                                                      "certificate_rejected"), 10,
                           what="certificate_rejected")
        self.assertEqual(lines[0]["secret"], "default/site-tls")
        self.assertEqual(lines[0]["kept"], "last-good")
        self.assertEqual(lines[0]["hosts"], "a.example.com")
        self.assertEqual(lines[0]["reason"], "tls.key does not match the certificate")
        self.assertEqual(served(), first.fingerprint())
        # more rebuilds (another file changes) do not repeat the line
        reloads = self.s.ctl_metrics()["strait_controller_reloads_total"]
        self.s.write_atomic("other.yaml", harness.service("other"))
        wait_until(lambda: self.s.ctl_metrics()["strait_controller_reloads_total"] > reloads, 10,
                   what="a rebuild")
        self.assertEqual(len(harness.log_events(self.s.controller_log(),
                                                "certificate_rejected")), 1)
        self.assertEqual(served(), first.fingerprint())
        self.s.write_atomic("secret.yaml", certs.tls_secret("site-tls", second))
        wait_until(lambda: served() == second.fingerprint(), 10, what="second certificate served")


class TlsClusterTest(LeaderTest):
    def test_invalid_certificate_event_and_secret_selector(self):
        """Cluster mode: the Secret list leaves out only helm releases and service-account
        tokens, so an Opaque CA bundle is cached (a plain Opaque Secret is not); an Ingress
        whose TLS Secret is expired gets one InvalidCertificate Warning Event and keeps
        serving; a missing one gets SecretNotFound."""
        cdir = os.path.join(self.s.dir, "certs")
        ca = certs.make_ca(cdir)
        old = certs.make_cert(cdir, "old.example.com", ca=ca, not_before_days=-10, days=-1)
        port = self.s.backend("web")
        self.base_objects(port)
        self.create(SECRETS, certs.tls_secret("old-tls", old))
        self.create(SECRETS, certs.ca_secret("bundle", ca))
        self.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                              "metadata": {"name": "password", "namespace": "default"},
                              "stringData": {"password": "x"}})
        self.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
                              "metadata": {"name": "sh.helm.release.v1.x.v1",
                                           "namespace": "default"},
                              "data": {"release": "eA=="}})
        self.create(NET + "/namespaces/default/ingresses",
                    tls_ingress("expired", [(["old.example.com"], "old-tls")],
                                ["old.example.com"]))
        self.create(NET + "/namespaces/default/ingresses",
                    tls_ingress("missing", [(["m.example.com"], "nosuch")], ["m.example.com"]))
        r = Replica(self, "replica-a", ())
        wait_until(lambda: not r.proc.alive() or r.get("/readyz")[0] == 200, 20,
                   what="replica ready")
        self.assertTrue(r.proc.alive())
        self.wait_leader([r])
        evs = wait_until(lambda: self.events_about("expired"), 10, what="an Event on expired")
        self.assertEqual(len(evs), 1, evs)
        self.assertEqual(evs[0]["type"], "Warning")
        self.assertEqual(evs[0]["reason"], "InvalidCertificate")
        self.assertIn("secret default/old-tls: certificate expired on ", evs[0]["message"])
        evs = wait_until(lambda: self.events_about("missing"), 10, what="an Event on missing")
        self.assertEqual(evs[0]["reason"], "SecretNotFound")
        self.assertEqual(evs[0]["message"],
                         "secret default/nosuch not found (its hosts get the default certificate)")
        # the Ingresses are served all the same (their routes are in the snapshot)
        st, body = r.get("/snapshot")
        self.assertEqual(st, 200)
        hosts = [v["host"] for v in json.loads(body.decode())["vhosts"]]
        self.assertIn("old.example.com", hosts)
        self.assertIn("m.example.com", hosts)
        # the Secret list's selector, and what was cached
        lists = self.requests(lambda q: q["path"] == "/api/v1/secrets" and not q["watch"])
        self.assertEqual(lists[0]["params"].get("fieldSelector"),
                         "type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token")
        self.assertEqual(r.metric('strait_controller_objects_cached{kind="Secret"}'), 2)
        # what that selector means on the API server: the helm release is not sent at all
        code, lst = self.api.request("GET", "/api/v1/secrets?fieldSelector=" + urllib.parse.quote(
            lists[0]["params"]["fieldSelector"], safe=""))
        self.assertEqual(code, 200)
        self.assertEqual(sorted(i["metadata"]["name"] for i in lst["items"]),
                         ["bundle", "old-tls", "password"])
