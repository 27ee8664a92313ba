"""TLS in cluster mode, end to end: kubernetes.io/tls Secrets and Ingress spec.tls listed and
watched from the stand-in API server (tests/kube-apiserver), served by the data plane's HTTPS
listener, and a Secret replaced through the API (a watch MODIFIED event) reaching new
handshakes while the old certificate's connections are left alone. The certificate a client
gets is read by openssl s_client and compared with the fingerprint openssl computes for the
Secret's certificate."""
import os

import certs
import harness
from harness import StraitTest, curl_https, s_client, served_fingerprint, wait_until

NET = "/apis/networking.k8s.io/v1"
SECRETS = "/api/v1/namespaces/default/secrets"


class TlsClusterModeTest(StraitTest):
    def setUp(self):
        super().setUp()
        self.api = self.s.apiserver()
        self.cdir = os.path.join(self.s.dir, "certs")
        self.ca = certs.make_ca(self.cdir)

    def call(self, method, path, obj=None, want=(200, 201)):
        code, body = self.api.request(method, path, obj)
        self.assertIn(code, want, "%s %s: %s %r" % (method, path, code, body))
        return body

    def fp(self, name):
        rc, out, err = s_client(self.s.tls_port, name)
        return served_fingerprint(out)

    def test_secret_from_the_api_served_and_rotated_through_the_watch(self):
        port = self.s.backend("web")
        one = certs.make_cert(self.cdir, "shop.example", name="shop-1", ca=self.ca)
        two = certs.make_cert(self.cdir, "shop.example", name="shop-2", kind="rsa", ca=self.ca)
        self.call("POST", "/apis/networking.k8s.io/v1/ingressclasses", harness.ingress_class())
        self.call("POST", "/api/v1/namespaces/default/services", harness.service("web"))
        self.call("POST", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
                  harness.endpoint_slice("web-1", "web", port))
        self.call("POST", SECRETS, certs.tls_secret("shop-tls", one))
        ing = harness.ingress("shop", [("shop.example", [("/", "Prefix", "web")])])
        ing["spec"]["tls"] = [{"hosts": ["shop.example"], "secretName": "shop-tls"}]
        self.call("POST", NET + "/namespaces/default/ingresses", ing)
        self.s.cluster_controller(kubeconfig=self.api.kubeconfig)
        harness.start_dataplane_tls(self.s)

        self.assertEqual(self.fp("shop.example"), one.fingerprint())
        r = curl_https(self.s.tls_port, "shop.example", cacert=self.ca.crt,
                       workdir=self.s.dir)
        self.assertBackend(r, "web")
        self.assertEqual(r.json()["headers"].get("x-forwarded-proto"), "https")
        # plain HTTP to a host with a certificate: 308 to https
        r = self.s.curl("shop.example", "/cart?x=1")
        self.assertStatus(r, 308)
        self.assertEqual(r.headers.get("location"),
                         "https://shop.example:%d/cart?x=1" % self.s.tls_port)

        # replace the Secret's content through the API: the watch delivers it
        self.call("PUT", SECRETS + "/shop-tls", certs.tls_secret("shop-tls", two))
        wait_until(lambda: self.fp("shop.example") == two.fingerprint(), 10,
                   what="the new certificate served after the Secret update")
        self.assertBackend(curl_https(self.s.tls_port, "shop.example", cacert=self.ca.crt,
                                      workdir=self.s.dir), "web")

        # a broken update keeps the last good certificate (and the host keeps serving)
        broken = certs.raw_tls_secret("shop-tls", b"not a certificate", two.key_bytes())
        self.call("PUT", SECRETS + "/shop-tls", broken)
        wait_until(lambda: "event=certificate_rejected" in self.s.controller_log(), 10,
                   what="the broken Secret refused")
        self.assertEqual(self.fp("shop.example"), two.fingerprint())

        # the Secret deleted: the host falls back to the data plane's default certificate
        self.call("DELETE", SECRETS + "/shop-tls")
        wait_until(lambda: self.fp("shop.example") not in (one.fingerprint(),
                                                           two.fingerprint(), None), 10,
                   what="the default certificate after the Secret's deletion")
        rc, out, err = s_client(self.s.tls_port, "shop.example")
        self.assertIn("Strait Default Certificate", out)
