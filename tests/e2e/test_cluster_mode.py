"""Cluster mode end to end: the stand-in API server (tests/kube-apiserver), strait-controller
with --kubeconfig (or in-cluster), a data plane and demo backends. Objects are written
through the API as a user would; traffic must follow them through watch cuts, 410 Gone
relists, injected 500/429 faults, token rotation, and wait for the first full list.

Every wait polls a condition (harness.wait_until); nothing sleeps to synchronise. Where a test
must look at a state while the API server holds a request back (/_control/delay), it first
waits for that request to be in the server's request log.
"""
import json
import os
import shutil
import time

import harness
from harness import StraitTest, wait_until

NET = "/apis/networking.k8s.io/v1"
DISC = "/apis/discovery.k8s.io/v1"
COLLECTIONS = {
    "Service": "/api/v1/namespaces/%s/services",
    "Secret": "/api/v1/namespaces/%s/secrets",
    "EndpointSlice": DISC + "/namespaces/%s/endpointslices",
    "Ingress": NET + "/namespaces/%s/ingresses",
    "IngressClass": NET + "/ingressclasses",
}


def collection(obj):
    path = COLLECTIONS[obj["kind"]]
    return path % obj["metadata"].get("namespace", "default") if "%s" in path else path


def kubeconfig(path, server, ca, token=None, token_file=None):
    """A kubeconfig of our own (the server's has an inline token)."""
    user = {}
    if token:
        user["token"] = token
    if token_file:
        user["tokenFile"] = token_file
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "t",
           "clusters": [{"name": "t", "cluster": {"server": server, "certificate-authority": ca}}],
           "users": [{"name": "t", "user": user}],
           "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}
    with open(path, "w") as f:
        json.dump(doc, f)  # JSON is YAML
    return path


def write_atomic(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


class ClusterTest(StraitTest):
    """self.api: the stand-in server; helpers to write objects and read its request log."""

    def start_api(self, **kw):
        self.api = self.s.apiserver(**kw)
        return self.api

    def create(self, *objs):
        for obj in objs:
            code, body = self.api.request("POST", collection(obj), obj)
            self.assertEqual(code, 201, "create %s: %s %r" % (obj["kind"], code, body))

    def replace(self, obj):
        path = collection(obj) + "/" + obj["metadata"]["name"]
        code, body = self.api.request("PUT", path, obj)
        self.assertIn(code, (200, 201), "replace %s: %s %r" % (obj["kind"], code, body))

    def delete(self, kind, name, ns="default"):
        path = (COLLECTIONS[kind] % ns if "%s" in COLLECTIONS[kind] else COLLECTIONS[kind])
        code, body = self.api.request("DELETE", path + "/" + name)
        self.assertEqual(code, 200, "delete %s %s: %s %r" % (kind, name, code, body))

    def requests(self, path=None, watch=None, method="GET"):
        """Requests the API server has seen (arrival order), filtered."""
        items = self.api.control("GET", "requests")["items"]
        return [r for r in items if (path is None or r["path"] == path)
                and (watch is None or r["watch"] == watch) and r["method"] == method]

    def route(self, host, svc, port, name=None):
        """Service + EndpointSlice (to a local backend port) + Ingress for host."""
        name = name or svc
        return [harness.service(svc), harness.endpoint_slice(svc + "-1", svc, port),
                harness.ingress(name, [(host, [("/", "Prefix", svc)])])]

    def start_stack(self, *ctl_args, kubeconfig=None, env=None):
        self.s.cluster_controller(*ctl_args, kubeconfig=kubeconfig or self.api.kubeconfig,
                                  env=env)
        self.s.dataplane()

    def metric(self, name):
        return self.s.ctl_metrics().get(name, 0)


class TestClusterRouting(ClusterTest):
    def test_create_change_delete_follow(self):
        """Objects created, changed and deleted through the API reach the data plane."""
        ports = self.s.backends("v1", "v2")
        self.start_api()
        self.create(*self.route("app.example.com", "app", ports["v1"]))
        self.start_stack()
        self.s.wait_backend("app.example.com", "/", "v1")
        m = self.s.ctl_metrics()
        self.assertEqual(m['strait_controller_objects_cached{kind="Service"}'], 1)
        self.assertEqual(m['strait_controller_synced{kind="Secret"}'], 1)
        self.assertEqual(m['strait_controller_objects{kind="Ingress"}'], 1)

        # the endpoints move to the other backend
        self.replace(harness.endpoint_slice("app-1", "app", ports["v2"]))
        self.s.wait_backend("app.example.com", "/", "v2")
        # a second Ingress and Service, created while the watches run
        self.create(harness.service("api"), harness.endpoint_slice("api-1", "api", ports["v1"]),
                    harness.ingress("api", [("api.example.com", [("/v1", "Prefix", "api")])]))
        self.s.wait_backend("api.example.com", "/v1/users", "v1")
        # the Ingress changes host
        self.replace(harness.ingress("api", [("api2.example.com", [("/v1", "Prefix", "api")])]))
        self.s.wait_backend("api2.example.com", "/v1/users", "v1")
        self.s.wait_backend("api.example.com", "/v1/users", 404)
        # deleting the Service rejects the Ingress that needs it; deleting an Ingress unroutes
        self.delete("Service", "api")
        self.s.wait_backend("api2.example.com", "/v1/users", 404)
        self.delete("Ingress", "app")
        self.s.wait_backend("app.example.com", "/", 404)
        log = self.s.controller_log()
        self.assertTrue(harness.log_events(log, "cache_synced"))
        added = self.metric('strait_controller_watch_events_total{kind="Ingress",type="ADDED"}')
        deleted = self.metric('strait_controller_watch_events_total{kind="Ingress",type="DELETED"}')
        self.assertGreaterEqual(added, 1)
        self.assertEqual(deleted, 1)
        self.assertGreater(self.metric("strait_controller_api_request_duration_seconds_count"
                                       '{method="GET"}'), 0)

    def test_tls_secrets_cached(self):
        """Only kubernetes.io/tls Secrets are listed (field selector) and cached."""
        self.start_api()
        tls = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
               "metadata": {"name": "site-tls", "namespace": "default"},
               "stringData": {"tls.crt": "CERT", "tls.key": "KEY"}}
        opaque = {"apiVersion": "v1", "kind": "Secret",
                  "metadata": {"name": "password", "namespace": "default"},
                  "stringData": {"password": "x"}}
        self.create(tls, opaque)
        self.start_stack()
        self.assertEqual(self.metric('strait_controller_objects_cached{kind="Secret"}'), 1)
        tls2 = dict(tls, metadata={"name": "other-tls", "namespace": "default"})
        self.create(tls2)
        wait_until(lambda: self.metric('strait_controller_objects_cached{kind="Secret"}') == 2, 5,
                   what="second TLS Secret cached")
        lists = [r for r in self.requests("/api/v1/secrets") if not r["watch"]]
        # every type but the bulky, never useful ones (CA bundles are often Opaque)
        self.assertEqual(lists[0]["params"].get("fieldSelector"),
                         "type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token")
        self.delete("Secret", "site-tls")
        wait_until(lambda: self.metric('strait_controller_objects_cached{kind="Secret"}') == 1, 5,
                   what="TLS Secret deletion")

    def test_watch_namespace(self):
        """--watch-namespace: only that namespace's objects are routed."""
        ports = self.s.backends("team", "other")
        self.start_api()
        code, _ = self.api.request("POST", "/api/v1/namespaces",
                                   {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": "team"}})
        self.assertEqual(code, 201)
        self.create(harness.service("web", ns="team"),
                    harness.endpoint_slice("web-1", "web", ports["team"], ns="team"),
                    harness.ingress("web", [("team.example.com", [("/", "Prefix", "web")])],
                                    ns="team"))
        self.create(*self.route("other.example.com", "web", ports["other"]))
        self.start_stack("--watch-namespace", "team")
        self.s.wait_backend("team.example.com", "/", "team")
        self.assertEqual(self.s.curl("other.example.com").status, 404)
        paths = {r["path"] for r in self.requests()}
        self.assertIn("/api/v1/namespaces/team/services", paths)
        self.assertIn(NET + "/ingressclasses", paths)  # cluster-scoped: everywhere
        self.assertNotIn("/api/v1/services", paths)

    def test_in_cluster(self):
        """No --manifests and no --kubeconfig: the service account of a pod."""
        port = self.s.backend("v1")
        self.start_api()
        sa = os.path.join(self.s.dir, "serviceaccount")
        os.makedirs(sa)
        shutil.copy(self.api.ca, os.path.join(sa, "ca.crt"))
        write_atomic(os.path.join(sa, "token"), self.api.token + "\n")
        write_atomic(os.path.join(sa, "namespace"), "default\n")
        self.create(*self.route("app.example.com", "app", port))
        env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1",
               "KUBERNETES_SERVICE_PORT": str(self.api.port),
               "STRAIT_SERVICEACCOUNT_DIR": sa}
        self.s.cluster_controller(env=env)
        self.s.dataplane()
        self.s.wait_backend("app.example.com", "/", "v1")
        cfg = harness.log_events(self.s.controller_log(), "kube_config")
        self.assertEqual(cfg[0]["source"], "in-cluster")
        self.assertEqual(cfg[0]["token"], "token-file")


class TestClusterKubeconfig(ClusterTest):
    def run_with(self, name, cluster, user):
        """Starts a controller with this kubeconfig cluster/user entry; stops it once ready."""
        path = os.path.join(self.s.dir, "kc-" + name)
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": name,
               "clusters": [{"name": "c", "cluster": cluster}],
               "users": [{"name": "u", "user": user}],
               "contexts": [{"name": name, "context": {"cluster": "c", "user": "u"}}]}
        with open(path, "w") as f:
            json.dump(doc, f)
        self.s.cluster_controller(kubeconfig=path, name="controller-" + name)
        self.assertEqual(self.s.ctl.stop(), [])

    def test_tls_and_credential_forms(self):
        """certificate-authority-data, insecure-skip-tls-verify, client certificate data and
        files (loaded by libcurl from memory or disk; the stand-in does not ask for them)."""
        import base64
        import subprocess
        self.start_api()
        server = "https://127.0.0.1:%d" % self.api.port
        with open(self.api.ca, "rb") as f:
            ca_data = base64.b64encode(f.read()).decode()
        self.run_with("ca-data", {"server": server, "certificate-authority-data": ca_data},
                      {"token": self.api.token})
        self.run_with("insecure", {"server": server, "insecure-skip-tls-verify": True},
                      {"token": self.api.token})
        crt, key = os.path.join(self.s.dir, "client.crt"), os.path.join(self.s.dir, "client.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt,
                        "-days", "1", "-subj", "/CN=strait-controller"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(crt, "rb") as f:
            crt_data = base64.b64encode(f.read()).decode()
        with open(key, "rb") as f:
            key_data = base64.b64encode(f.read()).decode()
        self.run_with("cert-data", {"server": server, "certificate-authority": self.api.ca},
                      {"token": self.api.token, "client-certificate-data": crt_data,
                       "client-key-data": key_data})
        self.run_with("cert-files", {"server": server, "certificate-authority": self.api.ca},
                      {"token": self.api.token, "client-certificate": "client.crt",
                       "client-key": "client.key"})  # relative to the kubeconfig's folder
        # a CA that is not the server's: TLS fails, reported as an API error, not ready
        path = os.path.join(self.s.dir, "kc-wrong-ca")
        kubeconfig(path, server, crt, token=self.api.token)
        self.s.cluster_controller(kubeconfig=path, name="controller-wrong-ca", wait_ready=False)
        wait_until(lambda: [e for e in harness.log_events(self.s.controller_log(), "api_error")
                            if e.get("status") == "0"], 10, what="a TLS failure")
        self.assertEqual(self.s.ctl_get("/readyz")[0], 503)

    def test_bad_command_lines(self):
        """Mode and kubeconfig mistakes exit 2 (usage) or 1 (bad kubeconfig) at once."""
        import subprocess
        ctl = os.path.join(harness.BIN, "strait-controller")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        sock = os.path.join(self.s.dir, "x.sock")
        for args, rc in ((["--socket", sock], 2),
                         (["--manifests", self.s.mdir, "--kubeconfig", "k", "--socket", sock], 2),
                         (["--kubeconfig", "k", "--dump"], 2),
                         (["--manifests", self.s.mdir, "--watch-namespace", "a", "--socket",
                           sock], 2),
                         (["--kubeconfig", os.path.join(self.s.dir, "missing"), "--socket",
                           sock], 1)):
            p = subprocess.run([ctl] + args, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=10 * harness.SLOW)
            self.assertEqual(p.returncode, rc, "%s: %s" % (args, p.stderr.decode()))
        self.assertIn(b"startup_failed", p.stderr)


class TestClusterReadiness(ClusterTest):
    def test_no_snapshot_before_first_full_list(self):
        """One kind's list held back: no snapshot, not ready; then everything at once."""
        port = self.s.backend("v1")
        self.start_api()
        self.create(*self.route("app.example.com", "app", port))
        self.api.control("POST", "delay", {"seconds": 3 * harness.SLOW, "count": 1,
                                           "path_prefix": NET + "/ingresses", "method": "GET",
                                           "watch": False})
        self.s.cluster_controller(kubeconfig=self.api.kubeconfig, wait_ready=False)
        self.s.dataplane(wait_ready=False)
        # the other four kinds are listed while the Ingress list is held back
        wait_until(lambda: self.requests(NET + "/ingresses", watch=False), 5,
                   what="the Ingress list to reach the server")
        for kind in ("IngressClass", "Service", "EndpointSlice", "Secret"):
            wait_until(lambda: self.metric('strait_controller_synced{kind="%s"}' % kind) == 1, 5,
                       what="%s listed" % kind)
        self.assertEqual(self.metric('strait_controller_synced{kind="Ingress"}'), 0)
        st, body = self.s.ctl_get("/readyz")
        self.assertEqual(st, 503)
        self.assertIn(b"waiting for the first list of Ingress", body)
        self.assertEqual(self.s.admin_get("/ready")[0], 503)  # data plane: no snapshot
        self.assertEqual(self.s.curl("app.example.com").status, 503)
        self.assertFalse(harness.log_events(self.s.controller_log(), "snapshot_published"))
        # the list completes: the first snapshot already has the route
        wait_until(lambda: self.s.ctl_get("/readyz")[0] == 200, 10, what="controller ready")
        self.s.wait_backend("app.example.com", "/", "v1")
        published = harness.log_events(self.s.controller_log(), "snapshot_published")
        self.assertEqual(published[0]["generation"], "1")
        self.assertEqual(self.metric('strait_controller_objects{kind="Ingress"}'), 1)

    def test_unauthorized_and_forbidden(self):
        """401 and 403 are logged as api_error and keep /readyz at 503 with the reason."""
        self.start_api(tokens=("good",), forbidden=("bad",))
        kc = kubeconfig(os.path.join(self.s.dir, "kc-unknown"),
                        "https://127.0.0.1:%d" % self.api.port, self.api.ca, token="unknown")
        self.s.cluster_controller(kubeconfig=kc, wait_ready=False)

        def api_errors(status):
            return [e for e in harness.log_events(self.s.controller_log(), "api_error")
                    if e.get("status") == status]
        wait_until(lambda: api_errors("401"), 5, what="api_error status=401")
        self.assertEqual(api_errors("401")[0]["level"], "error")
        wait_until(lambda: b"401 Unauthorized" in self.s.ctl_get("/readyz")[1], 5,
                   what="/readyz naming the 401")
        self.assertEqual(self.s.ctl_get("/readyz")[0], 503)
        self.assertEqual(self.s.ctl.stop(), [])

        kc = kubeconfig(os.path.join(self.s.dir, "kc-bad"),
                        "https://127.0.0.1:%d" % self.api.port, self.api.ca, token="bad")
        self.s.cluster_controller(kubeconfig=kc, wait_ready=False, name="controller-403")
        wait_until(lambda: api_errors("403"), 5, what="api_error status=403")
        e = api_errors("403")[0]
        self.assertEqual(e["reason"], "Forbidden")
        self.assertIn("cannot list", e["message"])
        wait_until(lambda: b"403 Forbidden" in self.s.ctl_get("/readyz")[1], 5,
                   what="/readyz naming the 403")
        self.assertGreaterEqual(self.metric('strait_controller_api_errors_total{code="403"}'), 1)
        # RBAC fixed: the token becomes good, the controller recovers by itself
        self.api.control("POST", "tokens", {"tokens": ["good", "bad"], "forbidden_tokens": []})
        wait_until(lambda: self.s.ctl_get("/readyz")[0] == 200, 20, what="ready after the fix")

    def test_token_file_rotation(self):
        """tokenFile is re-read: a rotated token keeps the controller working."""
        port = self.s.backend("v1")
        self.start_api(tokens=("old-token",))
        tok = os.path.join(self.s.dir, "token")
        write_atomic(tok, "old-token\n")
        kc = kubeconfig(os.path.join(self.s.dir, "kc"), "https://127.0.0.1:%d" % self.api.port,
                        self.api.ca, token_file=tok)
        self.create(*self.route("app.example.com", "app", port))
        self.start_stack(kubeconfig=kc)
        self.s.wait_backend("app.example.com", "/", "v1")
        # rotation: the server accepts only the new token, the file gets it, watches reconnect
        self.api.control("POST", "tokens", {"tokens": ["new-token"]})
        self.api.tokens = ["new-token"]  # what this test's own requests use from now on
        write_atomic(tok, "new-token\n")
        self.api.control("POST", "cut-watches", {})
        self.create(harness.service("api"), harness.endpoint_slice("api-1", "api", port),
                    harness.ingress("api", [("api.example.com", [("/", "Prefix", "api")])]))
        self.s.wait_backend("api.example.com", "/", "v1", timeout=15)
        wait_until(lambda: harness.log_events(self.s.controller_log(), "token_reloaded"), 5,
                   what="token_reloaded")
        auth = [r["auth"] for r in self.requests()]
        self.assertIn("invalid", auth)  # the old token, refused once
        self.assertEqual(auth[-1], "valid")
        wait_until(lambda: self.s.ctl_get("/readyz")[0] == 200, 10, what="ready again")


class TestClusterWatchProtocol(ClusterTest):
    def test_cut_watches_resume(self):
        """Watches cut mid-stream resume from the last resourceVersion, without a relist."""
        ports = self.s.backends("v1", "v2")
        self.start_api()
        self.create(*self.route("app.example.com", "app", ports["v1"]))
        self.start_stack()
        self.s.wait_backend("app.example.com", "/", "v1")
        before = len(self.requests(NET + "/ingresses", watch=True))
        cut = self.api.control("POST", "cut-watches", {})
        self.assertEqual(cut["cut"], 6)  # one watch per kind, Gateway included
        # changes made after the cut still arrive
        self.replace(harness.endpoint_slice("app-1", "app", ports["v2"]))
        self.s.wait_backend("app.example.com", "/", "v2")
        self.create(harness.ingress("two", [("two.example.com", [("/", "Prefix", "app")])]))
        self.s.wait_backend("two.example.com", "/", "v2")
        watches = self.requests(NET + "/ingresses", watch=True)
        self.assertGreater(len(watches), before)
        resumed = watches[before]["params"]
        self.assertNotIn(resumed.get("resourceVersion"), (None, "", "0"))
        self.assertEqual(resumed.get("allowWatchBookmarks"), "true")
        self.assertTrue(300 <= int(resumed["timeoutSeconds"]) <= 600)
        # one list per kind: a cut is not a reason to relist
        self.assertEqual(len(self.requests(NET + "/ingresses", watch=False)), 1)
        self.assertEqual(self.metric('strait_controller_relists_total{kind="Ingress"}'), 0)
        self.assertGreaterEqual(
            self.metric('strait_controller_watch_restarts_total{kind="Ingress"}'), 1)

    def test_watch_timeout_resume_from_bookmark(self):
        """Watches that end normally (timeoutSeconds) resume from the last bookmark."""
        port = self.s.backend("v1")
        self.start_api()
        self.create(*self.route("app.example.com", "app", port))
        self.start_stack(env={"STRAIT_WATCH_TIMEOUT": "1"})
        self.s.wait_backend("app.example.com", "/", "v1")
        svc_watches = lambda: self.requests("/api/v1/services", watch=True)  # noqa: E731
        n = len(svc_watches())
        # writes elsewhere move the global resourceVersion; bookmarks carry it to the watch
        self.create(harness.ingress("two", [("two.example.com", [("/", "Prefix", "app")])]))
        wait_until(lambda: len(svc_watches()) >= n + 2, 10, what="two more Service watches")
        rvs = [int(w["params"]["resourceVersion"]) for w in svc_watches()]
        self.assertEqual(rvs, sorted(rvs))
        self.assertGreater(rvs[-1], rvs[0])  # a bookmark advanced it
        self.assertTrue(all(1 <= int(w["params"]["timeoutSeconds"]) <= 2 for w in svc_watches()))
        self.s.wait_backend("two.example.com", "/", "v1")
        self.assertEqual(len(self.requests("/api/v1/services", watch=False)), 1)
        self.assertEqual(self.metric('strait_controller_relists_total{kind="Service"}'), 0)

    def test_delete_during_compaction_gap(self):
        """Cut, delete, compact: the resumed watch gets 410, the relist notices the delete."""
        ports = self.s.backends("a", "b")
        self.start_api()
        self.create(*self.route("a.example.com", "a", ports["a"]))
        self.create(*self.route("b.example.com", "b", ports["b"]))
        self.start_stack()
        self.s.wait_backend("a.example.com", "/", "a")
        self.s.wait_backend("b.example.com", "/", "b")
        lists = len(self.requests(NET + "/ingresses", watch=False))
        # hold the resumed Ingress watch back until the gap is made
        self.api.control("POST", "delay", {"seconds": 2 * harness.SLOW, "count": 1,
                                           "path_prefix": NET + "/ingresses", "watch": True})
        self.api.control("POST", "cut-watches", {"path_prefix": NET + "/ingresses"})
        self.delete("Ingress", "b")
        self.api.control("POST", "compact", {})
        self.s.wait_backend("b.example.com", "/", 404, timeout=15)
        self.s.wait_backend("a.example.com", "/", "a")
        log = self.s.controller_log()
        self.assertTrue(harness.log_events(log, "watch_expired"))
        self.assertEqual(len(self.requests(NET + "/ingresses", watch=False)), lists + 1)
        self.assertEqual(self.metric('strait_controller_relists_total{kind="Ingress"}'), 1)
        self.assertEqual(self.metric('strait_controller_watch_events_total'
                                     '{kind="Ingress",type="DELETED"}'), 0)
        # and the watch after the relist works
        self.create(harness.ingress("c", [("c.example.com", [("/", "Prefix", "a")])]))
        self.s.wait_backend("c.example.com", "/", "a")

    def test_paged_list_and_expired_continue(self):
        """1100 Services in pages of 500; a compaction between pages restarts the list."""
        port = self.s.backend("v1")
        self.start_api()
        items = [harness.service("s%04d" % i) for i in range(1100)]
        self.api.control("POST", "objects", {"items": items})
        self.create(harness.endpoint_slice("s0000-1", "s0000", port),
                    harness.ingress("s0", [("s0.example.com", [("/", "Prefix", "s0000")])]))
        self.api.control("POST", "delay", {"seconds": 2 * harness.SLOW, "count": 2,
                                           "path_prefix": "/api/v1/services", "method": "GET",
                                           "watch": False})
        self.s.cluster_controller(kubeconfig=self.api.kubeconfig, wait_ready=False)
        self.s.dataplane(wait_ready=False)

        def second_page():
            return [r for r in self.requests("/api/v1/services", watch=False)
                    if r["params"].get("continue")]
        wait_until(second_page, 10, what="the second page request")
        # while page 2 is held back: a delete, a create, and the history goes
        self.delete("Service", "s0001")
        self.create(harness.service("late"))
        self.api.control("POST", "compact", {})
        wait_until(lambda: self.s.ctl_get("/readyz")[0] == 200, 20, what="controller ready")
        self.s.wait_backend("s0.example.com", "/", "v1")
        self.assertTrue(harness.log_events(self.s.controller_log(), "list_expired"))
        self.assertEqual(self.metric('strait_controller_objects_cached{kind="Service"}'), 1100)
        lists = self.requests("/api/v1/services", watch=False)
        self.assertTrue(all(r["params"].get("limit") == "500" for r in lists))
        self.assertEqual(len(lists), 2 + 3)  # two pages, 410; then three pages
        done = harness.log_events(self.s.controller_log(), "list_complete")
        self.assertEqual([d["pages"] for d in done if d["kind"] == "Service"], ["3"])

    def test_faults_retried(self):
        """500s are retried with backoff; a 429 waits for its Retry-After."""
        port = self.s.backend("v1")
        self.start_api()
        self.create(*self.route("app.example.com", "app", port))
        self.api.control("POST", "faults", {"status": 500, "count": 2, "method": "GET",
                                            "path_prefix": "/api/v1/services", "watch": False})
        self.api.control("POST", "faults", {"status": 429, "count": 1, "retry_after": 2,
                                            "method": "GET", "watch": False,
                                            "path_prefix": NET + "/ingresses"})
        self.start_stack()
        self.s.wait_backend("app.example.com", "/", "v1")
        svc = self.requests("/api/v1/services", watch=False)
        self.assertEqual([r["status"] for r in svc[:3]], [500, 500, 200])
        ing = self.requests(NET + "/ingresses", watch=False)
        self.assertEqual([r["status"] for r in ing[:2]], [429, 200])
        self.assertGreaterEqual(ing[1]["time"] - ing[0]["time"], 1.95)
        errs = harness.log_events(self.s.controller_log(), "api_error")
        self.assertEqual(sorted(e["status"] for e in errs), ["429", "500", "500"])
        self.assertEqual(self.metric('strait_controller_api_errors_total{code="500"}'), 2)
        self.assertEqual(self.metric('strait_controller_api_errors_total{code="429"}'), 1)
        # a watch that fails is retried too, from where it was
        self.api.control("POST", "faults", {"status": 500, "count": 1, "watch": True,
                                            "path_prefix": "/api/v1/services"})
        self.api.control("POST", "cut-watches", {"path_prefix": "/api/v1/services"})
        self.create(harness.ingress("two", [("two.example.com", [("/", "Prefix", "app")])]))
        self.s.wait_backend("two.example.com", "/", "v1")
        wait_until(lambda: [r for r in self.requests("/api/v1/services", watch=True)
                            if r["status"] == 500], 5, what="the failed watch")
        wait_until(lambda: len(self.requests("/api/v1/services", watch=True)) >= 3, 5,
                   what="the watch retried after the 500")
        self.assertEqual(len(self.requests("/api/v1/services", watch=False)), 3)
