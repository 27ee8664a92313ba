"""The leader keeps the sidecar injector's MutatingWebhookConfiguration caBundle equal to the
mesh trust bundle (--mesh-webhook-config NAME), on the stand-in API server: patched on a fresh
install, fixed again after someone changes it, found once it is created, never written while
it matches, only by the leader, through a JSON Patch whose resourceVersion test turns a
concurrent change into a re-read, and following a root rotation."""
import base64
import os
import subprocess

from harness import StraitTest, BIN, free_port, local_get, log_events, parse_metrics, wait_until
from test_mesh_identity import cluster_mesh_controller, make_root, wait_bundle

MWC = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
NAME = "strait-controller-inject"
PATH = MWC + "/" + NAME
JSON_PATCH = "application/json-patch+json"


def webhook_config():
    """The chart's object as manifests/install.yaml has it: two webhooks, no caBundle."""
    def hook(name):
        return {"name": name, "admissionReviewVersions": ["v1"], "sideEffects": "None",
                "failurePolicy": "Ignore",
                "clientConfig": {"service": {"name": "strait-controller", "namespace": "default",
                                             "path": "/inject", "port": 8443}},
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                           "resources": ["pods"]}]}
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": NAME},
            "webhooks": [hook("namespace.inject.strait.dev"), hook("pod.inject.strait.dev")]}


class MeshWebhookCaBundle(StraitTest):
    def setUp(self):
        super().setUp()
        self.api = self.s.apiserver()

    def create(self):
        code, obj = self.api.request("POST", MWC, webhook_config())
        self.assertEqual(code, 201, obj)
        return obj

    def ca_bundles(self):
        """Each webhook's caBundle, decoded (None when absent)."""
        code, obj = self.api.request("GET", PATH)
        self.assertEqual(code, 200, obj)
        return [base64.b64decode(w["clientConfig"]["caBundle"]).decode()
                if "caBundle" in w["clientConfig"] else None for w in obj["webhooks"]]

    def start(self, name="controller", resync="0.5"):
        """A controller with --mesh-webhook-config NAME; returns (Proc, admin port, bundle)."""
        admin = free_port()
        p, _, bundle = cluster_mesh_controller(
            self, self.api, name, ["--admin", "127.0.0.1:%d" % admin, "--mesh-webhook-config", NAME,
                                   "--mesh-webhook-resync", resync])
        return p, admin, bundle

    def metrics(self, admin):
        st, body = local_get(admin, "/metrics")
        self.assertEqual(st, 200)
        return parse_metrics(body.decode())[0]

    def wait_metric(self, admin, name, want):
        """Polled: the object changes a moment before the controller reads the answer."""
        wait_until(lambda: self.metrics(admin)[name] == want, 10, what="%s = %s" % (name, want))

    def wait_statuses(self, method, want):
        wait_until(lambda: [r["status"] for r in self.requests(method)] == want, 10,
                   what="%s answers %s" % (method, want))

    def requests(self, method):
        """The controllers' requests to the object (not the test's own)."""
        return [r for r in self.api.control("GET", "requests")["items"]
                if r["path"] == PATH and r["method"] == method and r["user_agent"] == "strait-controller"]

    def wait_patched(self, want, what="caBundles = the trust bundle"):
        wait_until(lambda: self.ca_bundles() == [want, want], 20, what=what)

    def test_fresh_install_patched_and_kept(self):
        self.create()
        p, admin, bundle = self.start()
        root = wait_bundle(self, p, bundle)
        self.wait_patched(root)
        # the ConfigMap sidecars read has the same bundle
        code, cm = self.api.request(
            "GET", "/api/v1/namespaces/default/configmaps/strait-mesh-trust-bundle")
        self.assertEqual((code, cm["data"]["ca.crt"]), (200, root))
        self.wait_statuses("PATCH", [200])
        self.assertEqual([r["content_type"] for r in self.requests("PATCH")], [JSON_PATCH])
        self.wait_metric(admin, "strait_mesh_webhook_ca_patches_total", 1)
        self.assertEqual(self.metrics(admin)["strait_mesh_webhook_ca_failures_total"], 0)
        ev = log_events(p.log(), "mesh_webhook_ca_patched")
        self.assertEqual([(e["name"], e["webhooks"]) for e in ev], [(NAME, "2")])
        # while it matches, the checks read it and never write
        gets = len(self.requests("GET"))
        wait_until(lambda: len(self.requests("GET")) >= gets + 2, 10, what="two more checks")
        self.assertEqual(len(self.requests("PATCH")), 1)
        # someone re-applies it: one caBundle removed, the other one wrong; the next check
        # fixes both in one PATCH
        obj = self.api.request("GET", PATH)[1]
        code, out = self.api.request("PATCH", PATH, [
            {"op": "remove", "path": "/webhooks/0/clientConfig/caBundle"},
            {"op": "replace", "path": "/webhooks/1/clientConfig/caBundle",
             "value": base64.b64encode(b"stale").decode()}], ctype=JSON_PATCH)
        self.assertEqual(code, 200, out)
        self.assertEqual(self.ca_bundles(), [None, "stale"])
        self.wait_patched(root, "caBundles fixed again")
        self.wait_metric(admin, "strait_mesh_webhook_ca_patches_total", 2)
        self.assertEqual([e["webhooks"] for e in log_events(p.log(), "mesh_webhook_ca_patched")],
                         ["2", "2"])
        # only caBundles changed: the rest is as it was
        now = self.api.request("GET", PATH)[1]
        for w0, w1 in zip(obj["webhooks"], now["webhooks"]):
            w0["clientConfig"].pop("caBundle")
            w1["clientConfig"].pop("caBundle")
            self.assertEqual(w0, w1)

    def test_absent_then_created_and_errors_retried(self):
        # the API fails the first reads: retried with backoff, counted
        self.api.control("POST", "faults", {"status": 500, "count": 2, "method": "GET",
                                            "path_prefix": PATH})
        p, admin, bundle = self.start()
        root = wait_bundle(self, p, bundle)
        wait_until(lambda: log_events(p.log(), "mesh_webhook_absent"), 20, what="absent logged")
        retries = log_events(p.log(), "mesh_webhook_ca_retry")
        self.assertEqual([(e["step"], e["status"]) for e in retries], [("get", "500")] * 2)
        self.assertEqual(self.metrics(admin)["strait_mesh_webhook_ca_failures_total"], 2)
        self.assertEqual(self.requests("PATCH"), [])
        # installed later: patched at the next check
        self.create()
        self.wait_patched(root)
        self.wait_metric(admin, "strait_mesh_webhook_ca_patches_total", 1)

    def test_concurrent_change_is_not_lost(self):
        # the PATCH is held while someone else changes the object: its resourceVersion test
        # fails (422), the controller reads the object again and patches that one
        self.create()
        self.api.control("POST", "delay", {"seconds": 2, "count": 1, "method": "PATCH",
                                           "path_prefix": PATH})
        p, admin, bundle = self.start(resync="300")
        root = wait_bundle(self, p, bundle)
        wait_until(lambda: self.requests("PATCH"), 20, what="the first PATCH")
        code, out = self.api.request("PATCH", PATH, {"metadata": {"labels": {"who": "other"}}},
                                     ctype="application/merge-patch+json")
        self.assertEqual(code, 200, out)
        self.wait_patched(root)
        self.wait_statuses("PATCH", [422, 200])
        self.assertEqual(self.api.request("GET", PATH)[1]["metadata"]["labels"], {"who": "other"})
        self.wait_metric(admin, "strait_mesh_webhook_ca_patches_total", 1)
        self.assertEqual(self.metrics(admin)["strait_mesh_webhook_ca_failures_total"], 0)
        self.assertEqual(len(log_events(p.log(), "mesh_webhook_conflict")), 1)

    def test_only_the_leader_patches(self):
        self.create()
        a = self.start("a")
        b = self.start("b")
        root = wait_bundle(self, a[0], a[2])
        self.assertEqual(wait_bundle(self, b[0], b[2]), root)
        self.wait_patched(root)

        def leader():
            lead = [r for r in (a, b) if self.metrics(r[1]).get("strait_controller_leader") == 1]
            return lead[0] if len(lead) == 1 else None
        lead = wait_until(leader, 20, what="one leader")
        other = b if lead is a else a
        self.wait_metric(lead[1], "strait_mesh_webhook_ca_patches_total", 1)
        self.assertEqual(self.metrics(other[1])["strait_mesh_webhook_ca_patches_total"], 0)
        self.assertFalse([line for line in other[0].log().splitlines() if "event=mesh_webhook_" in line])
        # the leader goes (and releases the Lease): the other one takes over and keeps it
        self.assertEqual(lead[0].stop(), [])
        code, out = self.api.request("PATCH", PATH, [
            {"op": "remove", "path": "/webhooks/1/clientConfig/caBundle"}], ctype=JSON_PATCH)
        self.assertEqual(code, 200, out)
        self.wait_patched(root, "caBundles fixed by the new leader")
        self.wait_metric(other[1], "strait_mesh_webhook_ca_patches_total", 1)
        self.assertEqual([e["webhooks"] for e in log_events(other[0].log(), "mesh_webhook_ca_patched")],
                         ["1"])

    def test_root_rotation_followed(self):
        # rotation step 1 (docs/mesh.md): a new root after the current one in the Secret's
        # ca.crt, controllers restarted: the caBundle carries both
        self.create()
        p, admin, bundle = self.start()
        old = wait_bundle(self, p, bundle)
        self.wait_patched(old)
        self.assertEqual(p.stop(), [])
        make_root(self.s.dir, "next")
        with open(os.path.join(self.s.dir, "next.crt")) as f:
            new = f.read()
        code, sec = self.api.request("GET", "/api/v1/namespaces/default/secrets/strait-mesh-root")
        self.assertEqual(code, 200, sec)
        sec["data"]["ca.crt"] = base64.b64encode((old + new).encode()).decode()
        code, out = self.api.request("PUT", "/api/v1/namespaces/default/secrets/strait-mesh-root", sec)
        self.assertEqual(code, 200, out)
        os.unlink(bundle)
        p, admin, bundle = self.start("controller2")
        both = wait_bundle(self, p, bundle)
        self.assertEqual(both.count("BEGIN CERTIFICATE"), 2)
        self.assertIn(new.strip(), both)
        self.wait_patched(both, "caBundles = both roots")

    def test_flags(self):
        ctl = os.path.join(BIN, "strait-controller")
        cluster = [ctl, "--kubeconfig", self.api.kubeconfig, "--socket", os.path.join(self.s.dir, "x.sock")]
        files = [ctl, "--manifests", self.s.mdir, "--socket", self.s.sock]
        for args, why in ((cluster + ["--mesh-webhook-config", NAME], "need --mesh"),
                          (files + ["--mesh", "--mesh-token-file", "/dev/null", "--mesh-webhook-config", NAME],
                           "needs cluster mode"),
                          (cluster + ["--mesh", "--mesh-webhook-config", "Not_A_Name"], "DNS name"),
                          (cluster + ["--mesh", "--mesh-webhook-resync", "5"], "needs --mesh-webhook-config"),
                          (cluster + ["--mesh", "--mesh-webhook-config", NAME, "--mesh-webhook-resync", "0"],
                           "positive seconds")):
            p = subprocess.run(args, capture_output=True, text=True, timeout=10)
            self.assertEqual(p.returncode, 2, (args, p.stderr))
            self.assertIn(why, p.stderr)
