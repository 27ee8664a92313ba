"""The TLS module (dataplane/tlsmod.h): strait-dataplane maps OpenSSL only once it needs TLS.
A plain data plane never loads strait-tls.so (nor libssl / libcrypto); the first snapshot
with upstream TLS (or certificates) loads it and is served; --listen-tls loads it at start-up.
When the module cannot be loaded, a snapshot that needs it is refused (NACK, the last good
one keeps serving) and --listen-tls fails at start-up with a message naming the file."""
import os
import subprocess

import certs
import harness as h
from test_upstream_tls import https_backend, svc

TLS_LIBS = ("strait-tls.so", "libssl.so", "libcrypto.so")


def module_libs():
    """What loading the module maps: itself, and libssl / libcrypto unless it links OpenSSL
    statically (the Makefile's TLSMOD_STATIC, the default where libssl.a is installed)."""
    p = subprocess.run(["readelf", "-d", os.path.join(h.BIN, "strait-tls.so")],
                       stdout=subprocess.PIPE, check=True)
    dyn = p.stdout.decode()
    return sorted(lib for lib in TLS_LIBS if lib == "strait-tls.so" or lib in dyn)


def mapped_tls_libs(pid):
    with open("/proc/%d/maps" % pid) as f:
        maps = f.read()
    return sorted({lib for lib in TLS_LIBS if lib in maps})


def dataplane_with_env(stack, env, *extra, wait_ready=True, binary=None):
    """h.start_dataplane with extra environment variables (and another binary)."""
    stack.port, stack.admin_port = h.free_port(), h.free_port()
    p = h.Proc("dataplane", [binary or os.path.join(h.BIN, "strait-dataplane"), "--socket", stack.sock,
                             "--listen", "127.0.0.1:%d" % stack.port,
                             "--admin", "127.0.0.1:%d" % stack.admin_port,
                             "--log-level", "debug"] + list(extra),
               stack.dir, strait=True, env=env)
    stack.procs.append(p)
    stack.dp = p
    if wait_ready:
        h.wait_until(lambda: p.alive() and stack.admin_get("/ready")[0] == 200, 15,
                     what="dataplane ready")
    return p


class TLSModuleTest(h.StraitTest):
    def setUp(self):
        super().setUp()
        pki = os.path.join(self.s.dir, "pki")
        self.ca = certs.make_ca(pki, "Backend CA")
        self.cert = certs.make_cert(pki, "web.default.svc", sans=["web.default.svc"], ca=self.ca)

    def metric(self, name):
        st, body = self.s.admin_get("/metrics")
        self.assertEqual(st, 200)
        return h.parse_metrics(body.decode())[0].get(name)

    def plain_app(self):
        return [h.ingress_class(), h.service_with_endpoints("plain", self.s.backend("plain")),
                h.ingress("plain", [("plain.test", [("/", "Prefix", "plain")])])]

    def tls_app(self, port):
        return [svc("web", port),
                h.ingress("tls", [("tls.test", [("/", "Prefix", "web")])],
                          annotations={"strait.dev/backend-protocol": "HTTPS"})]

    def test_plain_data_plane_never_maps_openssl_and_the_first_tls_snapshot_loads_it(self):
        self.s.write("app.yaml", *self.plain_app())
        self.s.start()
        self.assertBackend(self.s.curl("plain.test", "/"), "plain")
        self.assertEqual(mapped_tls_libs(self.s.dp.pid), [])
        self.assertEqual(self.metric("strait_tls_module_loaded"), 0)
        self.assertNotIn("event=tls_module_loaded", self.s.dataplane_log())

        port = https_backend(self.s, "web", self.cert)
        gen = self.s.generation()
        self.s.write_atomic("app.yaml", *(self.plain_app() + self.tls_app(port)))
        h.wait_until(lambda: self.s.generation() > gen, 10, what="the TLS snapshot applied")
        r = self.s.wait_backend("tls.test", "/", "web")
        self.assertIn("tls", r.json(), "the backend was not reached over TLS")
        self.assertEqual(mapped_tls_libs(self.s.dp.pid), module_libs())
        self.assertEqual(self.metric("strait_tls_module_loaded"), 1)
        self.assertRegex(self.s.dataplane_log(), r"event=tls_module_loaded path=\".*strait-tls\.so\"")
        self.assertBackend(self.s.curl("plain.test", "/"), "plain")

    def test_listen_tls_loads_the_module_at_start_up(self):
        self.s.write("app.yaml", *self.plain_app())
        self.s.controller()
        h.start_dataplane_tls(self.s)
        self.assertEqual(mapped_tls_libs(self.s.dp.pid), module_libs())
        self.assertEqual(self.metric("strait_tls_module_loaded"), 1)
        r = h.curl_https(self.s.tls_port, "plain.test", "/", extra=("-k",), workdir=self.s.dir)
        self.assertBackend(r, "plain")

    def test_without_the_module_a_tls_snapshot_is_refused_and_the_last_good_one_serves(self):
        self.s.write("app.yaml", *self.plain_app())
        self.s.controller()
        dataplane_with_env(self.s, {"STRAIT_TLS_MODULE": os.path.join(self.s.dir, "missing.so")})
        self.assertBackend(self.s.curl("plain.test", "/"), "plain")
        gen = self.s.generation()

        port = https_backend(self.s, "web", self.cert)
        self.s.write_atomic("app.yaml", *(self.plain_app() + self.tls_app(port)))
        h.wait_until(lambda: (self.metric("strait_snapshot_nacks_total") or 0) >= 1, 10,
                     what="the TLS snapshot refused")
        self.assertRegex(self.s.dataplane_log(),
                         r"a cluster with upstream TLS needs TLS: cannot load strait-tls\.so: "
                         r".*missing\.so")
        self.assertEqual(self.s.generation(), gen)
        self.assertBackend(self.s.curl("plain.test", "/"), "plain")
        self.assertStatus(self.s.curl("tls.test", "/"), 404)
        self.assertEqual(mapped_tls_libs(self.s.dp.pid), [])

    def test_listen_tls_without_the_module_fails_at_start_up(self):
        self.s.write("app.yaml", *self.plain_app())
        self.s.controller()
        p = dataplane_with_env(self.s, {"STRAIT_TLS_MODULE": os.path.join(self.s.dir, "missing.so")},
                               "--listen-tls", "127.0.0.1:%d" % h.free_port(), wait_ready=False)
        h.wait_until(lambda: not p.alive(), 10, what="the data plane exits")
        self.assertNotEqual(p.p.returncode, 0)
        # the early exit is the point here; anything else (sanitizer output) still fails
        self.assertEqual([x for x in p.stop() if "had exited" not in x], [])
        self.assertRegex(p.stderr(), r"--listen-tls needs TLS: cannot load strait-tls\.so: .*missing\.so")

    def test_installed_layout_finds_the_module_in_lib_strait(self):
        """The container image's layout: bin/strait-dataplane and lib/strait/strait-tls.so."""
        root = os.path.join(self.s.dir, "usr")
        os.makedirs(os.path.join(root, "bin"))
        os.makedirs(os.path.join(root, "lib", "strait"))
        for src, dst in (("strait-dataplane", "bin"), ("strait-tls.so", os.path.join("lib", "strait"))):
            with open(os.path.join(h.BIN, src), "rb") as f, \
                    open(os.path.join(root, dst, src), "wb") as g:
                g.write(f.read())
            os.chmod(os.path.join(root, dst, src), 0o755)
        self.s.write("app.yaml", *self.plain_app())
        self.s.controller()
        tls_port = h.free_port()
        p = dataplane_with_env(self.s, {}, "--listen-tls", "127.0.0.1:%d" % tls_port,
                               binary=os.path.join(root, "bin", "strait-dataplane"))
        self.assertRegex(p.stderr(), r"event=tls_module_loaded path=\"%s/bin/\.\./lib/strait/strait-tls\.so\""
                         % root)
        r = h.curl_https(tls_port, "plain.test", "/", workdir=self.s.dir)
        self.assertBackend(r, "plain")
