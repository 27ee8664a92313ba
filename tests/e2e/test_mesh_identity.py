"""The controller's mesh identity endpoint (POST /v1/identity over TLS), as a sidecar uses it:
curl with the mesh root as the only trust anchor, CSRs made with openssl, leaves read back
with openssl x509. File mode (token map file, root files) and cluster mode (TokenReview,
the root Secret, the trust bundle ConfigMap on the stand-in API server)."""
import json
import os
import subprocess
import time

from harness import StraitTest, free_port, wait_until, log_events, BIN


def make_csr(d, name, cn="x", san=None):
    key, csr = os.path.join(d, name + ".key"), os.path.join(d, name + ".csr")
    args = ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", key, "-subj", "/CN=" + cn, "-out", csr]
    if san:
        args += ["-addext", "subjectAltName=" + san]
    subprocess.run(args, check=True, capture_output=True)
    with open(csr) as f:
        return f.read()


def identity(port, cacert, token=None, body=None, host="localhost", method="POST",
             path="/v1/identity", extra=()):
    """(status, parsed JSON or raw text) of one request; status 0 when TLS/connect failed."""
    args = ["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", "-X", method,
            "--cacert", cacert, "https://%s:%d%s" % (host, port, path)] + list(extra)
    if host == "localhost":
        args += ["--resolve", "localhost:%d:127.0.0.1" % port]
    if token is not None:
        args += ["-H", "Authorization: Bearer " + token]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data-binary",
                 body if isinstance(body, str) else json.dumps(body)]
    p = subprocess.run(args, capture_output=True, text=True)
    out, _, code = p.stdout.rpartition("\n")
    try:
        return int(code), json.loads(out)
    except ValueError:
        return int(code or 0), out


def make_root(d, name):
    """A self-signed P-256 CA (openssl): D/NAME.crt and D/NAME.key."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj",
                    "/CN=" + name, "-keyout", os.path.join(d, name + ".key"), "-out",
                    os.path.join(d, name + ".crt"), "-addext",
                    "basicConstraints=critical,CA:TRUE", "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign"],
                   check=True, capture_output=True)


def short_sock(test, name):
    """Unix socket paths are short (108 bytes): a folder of its own under /tmp."""
    import tempfile
    import shutil
    d = tempfile.mkdtemp(prefix="strait-mid-")
    test.addCleanup(shutil.rmtree, d, True)
    return os.path.join(d, name + ".sock")


def cluster_mesh_controller(test, api, name="controller", extra=()):
    """A cluster-mode --mesh controller on the stand-in api with its own socket, mesh port
    and bundle file (short election timings), plus the flags extra; stopped with the stack.
    Returns (Proc, mesh port, bundle path)."""
    from harness import Proc
    port = free_port()
    bundle = os.path.join(test.s.dir, name + "-bundle.pem")
    p = Proc(name, [os.path.join(BIN, "strait-controller"), "--kubeconfig", api.kubeconfig,
                    "--socket", short_sock(test, name),
                    "--log-level", "debug", "--mesh", "--mesh-listen", "127.0.0.1:%d" % port,
                    "--mesh-trust-bundle-out", bundle, "--election-lease-duration", "3",
                    "--election-renew-deadline", "2", "--election-retry-period", "0.5"] + list(extra),
             test.s.dir, strait=True)
    test.s.procs.append(p)
    return p, port, bundle


def wait_bundle(test, p, bundle):
    """The trust bundle file's text once controller p has written it."""
    wait_until(lambda: os.path.exists(bundle) or not p.alive(), 20, what="trust bundle")
    test.assertTrue(p.alive(), p.log())
    with open(bundle) as f:
        return f.read()


def cert_text(pem):
    return subprocess.run(["openssl", "x509", "-noout", "-text"], input=pem, text=True,
                          capture_output=True, check=True).stdout


def replace_file(path, text, mode=0o600):
    """Writes text to path the way an operator's tool would: a new file renamed over it."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def read(path):
    with open(path) as f:
        return f.read()


def metric(port, name):
    """The value of an unlabelled metric on the controller's /metrics (None when absent)."""
    import re
    from harness import local_get
    text = local_get(port, "/metrics")[1].decode()
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return int(float(m.group(1))) if m else None


def verify_with(root_file, pem):
    p = subprocess.run(["openssl", "verify", "-CAfile", root_file], input=pem, text=True,
                       capture_output=True)
    return p.returncode == 0


class MeshIdentityFileMode(StraitTest):
    def start(self, *extra, tokens="tok-web default web\ntok-db shop db\n", root_dir=True):
        self.tokens = os.path.join(self.s.dir, "tokens")
        with open(self.tokens, "w") as f:
            f.write("# token namespace serviceaccount\n" + tokens)
        self.root_dir = os.path.join(self.s.dir, "root")
        os.makedirs(self.root_dir, exist_ok=True)
        self.bundle = os.path.join(self.s.dir, "bundle.pem")
        self.port = free_port()
        self.ctl_port = free_port()
        self.s.controller("--mesh", "--mesh-token-file", self.tokens,
                              "--mesh-listen", "127.0.0.1:%d" % self.port,
                              *(["--mesh-root-dir", self.root_dir] if root_dir else []),
                              "--mesh-trust-bundle-out", self.bundle,
                              "--admin", "127.0.0.1:%d" % self.ctl_port, *extra)
        wait_until(lambda: os.path.exists(self.bundle), 10, what="trust bundle file")

    def test_issue_deny_invalid(self):
        self.start()
        d = self.s.dir
        with open(os.path.join(self.root_dir, "ca.crt")) as f:
            root = f.read()
        with open(self.bundle) as f:
            self.assertEqual(f.read(), root)
        self.assertEqual(os.stat(os.path.join(self.root_dir, "ca.key")).st_mode & 0o777, 0o600)
        # the CSR asks to be shop/db by subject and SAN: the token says default/web
        csr = make_csr(d, "a", cn="shop db",
                       san="URI:spiffe://cluster.local/ns/shop/sa/db")
        st, body = identity(self.port, self.bundle, "tok-web", {"csr": csr})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["identity"], "spiffe://cluster.local/ns/default/sa/web")
        self.assertEqual(body["trustBundle"], root)
        self.assertRegex(body["notAfter"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        text = cert_text(body["certificate"])
        self.assertIn("URI:spiffe://cluster.local/ns/default/sa/web", text)
        self.assertNotIn("shop", text)
        self.assertTrue(verify_with(self.bundle, body["certificate"]))
        # the server verifies by IP too (127.0.0.1, ::1 are in its certificate)
        st, body = identity(self.port, self.bundle, "tok-db", {"csr": csr}, host="127.0.0.1")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["identity"], "spiffe://cluster.local/ns/shop/sa/db")
        # an RSA key (a body over 1 KiB: curl asks Expect: 100-continue and is answered at once)
        rsa = os.path.join(d, "rsa.csr")
        subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:3072", "-nodes", "-keyout",
                        os.path.join(d, "rsa.key"), "-subj", "/CN=x", "-out", rsa],
                       check=True, capture_output=True)
        t0 = time.monotonic()
        st, body = identity(self.port, self.bundle, "tok-web", {"csr": open(rsa).read()},
                            extra=["-v"])
        self.assertEqual(st, 200, body)
        self.assertLess(time.monotonic() - t0, 0.9)
        # unknown, missing token: 401
        st, body = identity(self.port, self.bundle, "tok-nobody", {"csr": csr})
        self.assertEqual(st, 401, body)
        self.assertIn("error", body)
        st, body = identity(self.port, self.bundle, None, {"csr": csr})
        self.assertEqual(st, 401, body)
        # malformed JSON, no csr, a CSR that is not one, a forged signature: 400
        for bad in ('{"csr": ', "[]", '{"x": 1}', {"csr": "not a CSR"},
                    {"csr": csr.replace(csr.splitlines()[3], csr.splitlines()[3][::-1])}):
            st, body = identity(self.port, self.bundle, "tok-web", bad)
            self.assertEqual(st, 400, (bad, body))
            self.assertIn("error", body)
        # 404, 405
        st, _ = identity(self.port, self.bundle, "tok-web", {"csr": csr}, path="/v1/other")
        self.assertEqual(st, 404)
        st, _ = identity(self.port, self.bundle, "tok-web", None, method="GET")
        self.assertEqual(st, 405)
        # metrics and logs (never a token)
        from harness import local_get
        m = local_get(self.ctl_port, "/metrics")[1].decode()
        self.assertIn('strait_mesh_certificates_issued_total{result="ok"} 3', m)
        self.assertIn('strait_mesh_certificates_issued_total{result="denied"} 2', m)
        self.assertIn('strait_mesh_certificates_issued_total{result="invalid"} 5', m)
        self.assertRegex(m, r"strait_mesh_root_expiry_seconds [1-9]\d+")
        log = self.s.controller_log()
        self.assertEqual(len(log_events(log, "mesh_identity_issued")), 3)
        self.assertEqual(len(log_events(log, "mesh_identity_denied")), 2)
        self.assertNotIn("tok-web", log)
        self.assertNotIn("tok-nobody", log)

    def test_root_kept_and_tokens_reloaded(self):
        self.start("--mesh-leaf-ttl", "20s")
        with open(os.path.join(self.root_dir, "ca.crt")) as f:
            root = f.read()
        csr = make_csr(self.s.dir, "a")
        st, body = identity(self.port, self.bundle, "tok-web", {"csr": csr})
        self.assertEqual(st, 200, body)
        life = subprocess.run(["openssl", "x509", "-noout", "-startdate", "-enddate"],
                              input=body["certificate"], text=True, capture_output=True).stdout
        self.assertIn("notAfter", life)
        # a new token line is picked up without a restart
        with open(self.tokens, "a") as f:
            f.write("tok-new other api\n")
        st, body = identity(self.port, self.bundle, "tok-new", {"csr": csr})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["identity"], "spiffe://cluster.local/ns/other/sa/api")
        # a restart keeps the root written the first time
        self.s.ctl.stop()
        os.unlink(self.bundle)
        self.s.controller("--mesh", "--mesh-token-file", self.tokens,
                              "--mesh-listen", "127.0.0.1:%d" % self.port,
                              "--mesh-root-dir", self.root_dir,
                              "--mesh-trust-bundle-out", self.bundle, name="controller2")
        wait_until(lambda: os.path.exists(self.bundle), 10, what="trust bundle file")
        with open(self.bundle) as f:
            self.assertEqual(f.read(), root)
        st, body = identity(self.port, self.bundle, "tok-web", {"csr": csr})
        self.assertEqual(st, 200, body)
        self.assertTrue(verify_with(self.bundle, body["certificate"]))

    def test_server_names(self):
        self.start("--mesh-server-names", "ctl.mesh.svc,other.example")
        csr = make_csr(self.s.dir, "a")
        port = self.port
        for name in ("ctl.mesh.svc", "other.example"):
            st, body = identity(port, self.bundle, "tok-web", {"csr": csr}, host=name,
                                extra=["--resolve", "%s:%d:127.0.0.1" % (name, port)])
            self.assertEqual(st, 200, (name, body))
        # a name it does not carry: the client refuses the server
        st, _ = identity(port, self.bundle, "tok-web", {"csr": csr}, host="localhost")
        self.assertEqual(st, 0)
        # a body over 64 KiB: 413
        st, body = identity(port, self.bundle, "tok-web", {"csr": "x" * 70000}, host="127.0.0.1")
        self.assertEqual(st, 413, body)

    def test_root_file_with_previous_root(self):
        # two roots in the certificate file: the bundle has both, the first signs
        d = self.s.dir
        for n in ("old", "new"):
            make_root(d, n)
        with open(os.path.join(d, "roots.crt"), "w") as f:
            f.write(open(os.path.join(d, "new.crt")).read() + open(os.path.join(d, "old.crt")).read())
        self.start("--mesh-root-file", "%s,%s" % (os.path.join(d, "roots.crt"),
                                                  os.path.join(d, "new.key")), root_dir=False)
        with open(self.bundle) as f:
            self.assertEqual(f.read().count("BEGIN CERTIFICATE"), 2)
        st, body = identity(self.port, self.bundle, "tok-web", {"csr": make_csr(d, "a")})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["trustBundle"].count("BEGIN CERTIFICATE"), 2)
        self.assertTrue(verify_with(os.path.join(d, "new.crt"), body["certificate"]))
        self.assertFalse(verify_with(os.path.join(d, "old.crt"), body["certificate"]))

    def test_root_reloaded_without_restart(self):
        # --mesh-root-dir re-checked every second: roots added, rotated, a broken pair refused
        self.start("--mesh-root-resync", "1")
        d = self.s.dir
        crt, key = os.path.join(self.root_dir, "ca.crt"), os.path.join(self.root_dir, "ca.key")
        first, first_key = read(crt), read(key)
        first_f = os.path.join(d, "first.crt")
        replace_file(first_f, first)
        self.assertEqual(metric(self.ctl_port, "strait_mesh_root_reloads_total"), 0)
        self.assertEqual(metric(self.ctl_port, "strait_mesh_root_reload_failures_total"), 0)
        csr = make_csr(d, "a")
        for n in ("second", "third"):
            make_root(d, n)
        second, second_key = read(os.path.join(d, "second.crt")), read(os.path.join(d, "second.key"))
        second_f = os.path.join(d, "second.crt")

        # (a) a second root appended: both in the bundle, the first still signs
        replace_file(crt, first + second)
        wait_until(lambda: read(self.bundle).count("BEGIN CERTIFICATE") == 2, 10,
                   what="bundle file with two roots")
        self.assertEqual(read(self.bundle), first + second)
        self.assertEqual(metric(self.ctl_port, "strait_mesh_root_reloads_total"), 1)
        st, body = identity(self.port, self.bundle, "tok-web", {"csr": csr})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["trustBundle"], first + second)
        old_leaf = body["certificate"]
        self.assertTrue(verify_with(first_f, old_leaf))
        self.assertFalse(verify_with(second_f, old_leaf))
        ev = log_events(self.s.controller_log(), "mesh_root_reloaded")
        self.assertEqual([(e["source"], e["roots"]) for e in ev], [(crt, "2")])

        # (b) the new root first, with its key: it signs, the old root stays trusted
        replace_file(key, second_key)
        replace_file(crt, second + first)
        wait_until(lambda: metric(self.ctl_port, "strait_mesh_root_reloads_total") == 2, 10,
                   what="second reload")
        self.assertEqual(read(self.bundle), second + first)
        st, body = identity(self.port, self.bundle, "tok-web", {"csr": csr})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["trustBundle"], second + first)
        self.assertTrue(verify_with(second_f, body["certificate"]))
        self.assertFalse(verify_with(first_f, body["certificate"]))
        self.assertTrue(verify_with(self.bundle, old_leaf))
        # the server's own certificate is a leaf of the new signing root now
        st, body = identity(self.port, second_f, "tok-web", {"csr": csr})
        self.assertEqual(st, 200, body)
        st, _ = identity(self.port, first_f, "tok-web", {"csr": csr})
        self.assertEqual(st, 0)
        # the expiry gauge follows the signing root (make_root: 30 days, the first: years)
        self.assertLess(metric(self.ctl_port, "strait_mesh_root_expiry_seconds"),
                        time.time() + 31 * 86400)

        # (c) a broken pair (the third root's certificate, the second's key): refused, kept
        failures = metric(self.ctl_port, "strait_mesh_root_reload_failures_total")
        replace_file(crt, read(os.path.join(d, "third.crt")))
        wait_until(lambda: metric(self.ctl_port, "strait_mesh_root_reload_failures_total") >
                   failures, 10, what="reload failure counted")
        self.assertTrue(log_events(self.s.controller_log(), "mesh_root_reload_failed"))
        self.assertEqual(metric(self.ctl_port, "strait_mesh_root_reloads_total"), 2)
        self.assertEqual(read(self.bundle), second + first)
        st, body = identity(self.port, self.bundle, "tok-web", {"csr": csr})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["trustBundle"], second + first)
        self.assertTrue(verify_with(second_f, body["certificate"]))
        # then the good pair: reloaded; the broken one was counted once, not at every check
        replace_file(key, read(os.path.join(d, "third.key")))
        wait_until(lambda: metric(self.ctl_port, "strait_mesh_root_reloads_total") == 3, 10,
                   what="reload after the good pair")
        self.assertEqual(metric(self.ctl_port, "strait_mesh_root_reload_failures_total"),
                         failures + 1)
        third_f = os.path.join(d, "third.crt")
        self.assertEqual(read(self.bundle), read(third_f))
        st, body = identity(self.port, self.bundle, "tok-web", {"csr": csr})
        self.assertEqual(st, 200, body)
        self.assertTrue(verify_with(third_f, body["certificate"]))
        self.assertTrue(self.s.ctl.alive())

    def test_bad_flags(self):
        ctl = os.path.join(BIN, "strait-controller")
        base = [ctl, "--manifests", self.s.mdir, "--socket", self.s.sock]
        for extra in (["--mesh"],  # file mode needs a token file
                      ["--mesh-listen", "127.0.0.1:1"],  # without --mesh
                      ["--mesh", "--mesh-token-file", "/dev/null", "--mesh-leaf-ttl", "5s"],
                      ["--mesh", "--mesh-token-file", "/dev/null", "--mesh-leaf-ttl", "1x"],
                      ["--mesh", "--mesh-token-file", "/dev/null", "--mesh-root-file", "a"],
                      ["--mesh", "--mesh-token-file", "/dev/null", "--mesh-root-resync", "0"],
                      ["--mesh-root-resync", "5"]):  # without --mesh
            p = subprocess.run(base + extra, capture_output=True, text=True, timeout=10)
            self.assertEqual(p.returncode, 2, (extra, p.stderr))


class MeshIdentityClusterMode(StraitTest):
    """On the stand-in API server: TokenReviews decide, the root lives in a Secret."""

    def setUp(self):
        super().setUp()
        self.api = self.s.apiserver(args=["--sa-token", "sa-web=default/web",
                                          "--sa-token", "sa-db=shop/db",
                                          "--sa-token", "sa-aud=default/web@other"])

    def controller(self, name="controller"):
        return cluster_mesh_controller(self, self.api, name)

    def wait_bundle(self, p, bundle):
        return wait_bundle(self, p, bundle)

    def secret_root(self):
        import base64
        code, sec = self.api.request("GET", "/api/v1/namespaces/default/secrets/strait-mesh-root")
        self.assertEqual(code, 200, sec)
        return (base64.b64decode(sec["data"]["ca.crt"]).decode(),
                base64.b64decode(sec["data"]["ca.key"]).decode())

    def test_token_review_secret_configmap(self):
        p, port, bundle = self.controller()
        root = self.wait_bundle(p, bundle)
        self.assertEqual(self.secret_root()[0], root)
        csr = make_csr(self.s.dir, "a", san="URI:spiffe://cluster.local/ns/shop/sa/db")
        st, body = identity(port, bundle, "sa-web", {"csr": csr})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["identity"], "spiffe://cluster.local/ns/default/sa/web")
        self.assertIn("URI:spiffe://cluster.local/ns/default/sa/web", cert_text(body["certificate"]))
        self.assertTrue(verify_with(bundle, body["certificate"]))
        st, body = identity(port, bundle, "sa-db", {"csr": csr})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["identity"], "spiffe://cluster.local/ns/shop/sa/db")
        # unknown token, a token for another audience: 401
        st, body = identity(port, bundle, "sa-nobody", {"csr": csr})
        self.assertEqual(st, 401, body)
        st, body = identity(port, bundle, "sa-aud", {"csr": csr})
        self.assertEqual(st, 401, body)
        st, body = identity(port, bundle, "sa-web", {"csr": "junk"})
        self.assertEqual(st, 400, body)
        # the TokenReviews sent: spec.token and audiences ["strait"]
        reqs = self.api.control("GET", "requests")["items"]
        reviews = [r for r in reqs if r["path"] == "/apis/authentication.k8s.io/v1/tokenreviews"]
        self.assertGreaterEqual(len(reviews), 4)
        self.assertTrue(all(r["auth"] == "valid" and r["method"] == "POST" for r in reviews))
        # the leader writes the ConfigMap
        def cm():
            code, obj = self.api.request(
                "GET", "/api/v1/namespaces/default/configmaps/strait-mesh-trust-bundle")
            return code == 200 and obj["data"]["ca.crt"] == root
        wait_until(cm, 20, what="trust bundle ConfigMap")
        self.assertNotIn("sa-web", p.log())
        # a restart keeps the Secret's root
        p.stop()
        os.unlink(bundle)
        p, port, bundle = self.controller(name="controller")
        self.assertEqual(self.wait_bundle(p, bundle), root)
        st, body = identity(port, bundle, "sa-web", {"csr": csr})
        self.assertEqual(st, 200, body)

    def test_not_ready_503(self):
        # the Secret read is slow: until it answers, the endpoint says 503 (over a throwaway
        # certificate that a verifying client refuses)
        self.api.control("POST", "delay", {"seconds": 3, "count": 1, "method": "GET",
                                           "path_prefix": "/api/v1/namespaces/default/secrets"})
        p, port, bundle = self.controller()
        from harness import port_accepts
        wait_until(lambda: port_accepts(port), 10, what="mesh port")
        self.assertFalse(os.path.exists(bundle))
        st, body = identity(port, bundle, "sa-web", {"csr": "x"}, host="127.0.0.1",
                            extra=["-k"])
        self.assertEqual(st, 503, body)
        self.assertIn("not ready", body["error"])
        root = self.wait_bundle(p, bundle)
        self.assertEqual(self.secret_root()[0], root)
        st, body = identity(port, bundle, "sa-web", {"csr": make_csr(self.s.dir, "a")})
        self.assertEqual(st, 200, body)

    def test_two_controllers_one_secret(self):
        # both read "no Secret", both create (the creates are held a while, so the second
        # replica's read comes before the first create): one wins, the other gets 409 and
        # takes the winner's root
        self.api.control("POST", "delay", {"seconds": 1.5, "count": 2, "method": "POST",
                                           "path_prefix": "/api/v1/namespaces/default/secrets"})
        # a stale trust bundle ConfigMap: the leader updates it
        code, _ = self.api.request("POST", "/api/v1/namespaces/default/configmaps", {
            "metadata": {"name": "strait-mesh-trust-bundle"}, "data": {"ca.crt": "stale"}})
        self.assertEqual(code, 201)
        a = self.controller("a")
        b = self.controller("b")
        ra = self.wait_bundle(a[0], a[2])
        rb = self.wait_bundle(b[0], b[2])
        self.assertEqual(ra, rb)
        self.assertEqual(self.secret_root()[0], ra)
        reqs = self.api.control("GET", "requests")["items"]
        creates = [r for r in reqs if r["method"] == "POST" and
                   r["path"] == "/api/v1/namespaces/default/secrets"]
        self.assertEqual(sorted(r["status"] for r in creates), [201, 409], creates)
        self.assertEqual(len(log_events(a[0].log() + b[0].log(), "mesh_root_conflict")), 1)

        def cm():
            code, obj = self.api.request(
                "GET", "/api/v1/namespaces/default/configmaps/strait-mesh-trust-bundle")
            return code == 200 and obj["data"]["ca.crt"] == ra
        wait_until(cm, 20, what="trust bundle ConfigMap updated")
        for proc, port, bundle in (a, b):
            st, body = identity(port, bundle, "sa-web", {"csr": make_csr(self.s.dir, "k")})
            self.assertEqual(st, 200, body)
            self.assertTrue(verify_with(bundle, body["certificate"]))

    def test_secret_update_reloaded(self):
        # the Secret read again every second: a second root added shows in the ConfigMap, the
        # bundle file and identity answers; a Secret deleted keeps the root and is not re-created
        import base64
        p, port, bundle = cluster_mesh_controller(self, self.api,
                                                  extra=["--mesh-root-resync", "1"])
        root = self.wait_bundle(p, bundle)
        cert, key = self.secret_root()
        self.assertEqual(cert, root)
        cm_path = "/api/v1/namespaces/default/configmaps/strait-mesh-trust-bundle"

        def cm(want):
            code, obj = self.api.request("GET", cm_path)
            return code == 200 and obj["data"]["ca.crt"] == want
        wait_until(lambda: cm(root), 20, what="trust bundle ConfigMap")
        make_root(self.s.dir, "extra")
        two = cert + read(os.path.join(self.s.dir, "extra.crt"))
        sec_path = "/api/v1/namespaces/default/secrets/strait-mesh-root"
        code, obj = self.api.request("PATCH", sec_path,
                                     {"data": {"ca.crt": base64.b64encode(two.encode()).decode()}},
                                     ctype="application/merge-patch+json")
        self.assertEqual(code, 200, obj)
        wait_until(lambda: cm(two), 20, what="ConfigMap with both roots")
        wait_until(lambda: read(bundle) == two, 10, what="bundle file with both roots")
        st, body = identity(port, bundle, "sa-web", {"csr": make_csr(self.s.dir, "a")})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["trustBundle"], two)
        replace_file(os.path.join(self.s.dir, "root.pem"), root)
        self.assertTrue(verify_with(os.path.join(self.s.dir, "root.pem"), body["certificate"]))
        ev = log_events(p.log(), "mesh_root_reloaded")
        self.assertEqual([(e["source"], e["roots"]) for e in ev],
                         [("secret:default/strait-mesh-root", "2")])
        # the Secret deleted: the current root stays, no Secret is created again
        code, _ = self.api.request("DELETE", sec_path)
        self.assertEqual(code, 200)
        wait_until(lambda: log_events(p.log(), "mesh_root_secret_missing"), 10,
                   what="missing Secret noticed")
        code, _ = self.api.request("GET", sec_path)
        self.assertEqual(code, 404)
        st, body = identity(port, bundle, "sa-web", {"csr": make_csr(self.s.dir, "b")})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["trustBundle"], two)
        self.assertTrue(p.alive())
