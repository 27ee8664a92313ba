"""AuthorizationPolicy, controller side (docs/mesh.md "Authorization"): policies in file mode
with --mesh reach the data plane's /snapshot as snapwire v7 AUTHZ records (valid ones, one
whose Service is missing; invalid ones refused with their reason in an object_rejected line),
follow file changes, and --mesh-default-policy sets authz_default. In cluster mode against the
stand-in API server (tests/kube-apiserver), with --mesh: policies are listed and watched, the
leader writes their status (Accepted, ResolvedRefs; validated against the CRD's status schema)
and a Warning Event for the invalid ones; without --mesh they are not watched. Every wait
polls."""
import json
import os
import subprocess

import harness
from harness import StraitTest, BIN, free_port, wait_until
from test_mesh_directory import wait_directory as wait_value  # polls, diff on timeout

API = "/apis/strait.dev/v1alpha1/namespaces/shop/authorizationpolicies"

ID = "spiffe://cluster.local/ns/%s/sa/%s"


def service(name, ns="shop", ip="10.96.0.20", port=80):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": port}]}}


def policy(name, spec, ns="shop"):
    return {"apiVersion": "strait.dev/v1alpha1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def target(name="backend"):
    return {"kind": "Service", "name": name}


def objects():
    return [
        service("backend"),
        policy("allow-frontend", {"targetRef": target(), "port": 80, "from": [
            {"serviceAccounts": [{"name": "frontend"}, {"name": "admin", "namespace": "ops"}]},
            {"identities": [ID % ("shop", "frontend")], "namespaces": ["ops"]}]}),
        policy("deny-plain", {"targetRef": target(), "action": "Deny",
                              "from": [{"unauthenticated": True}]}),
        # the Service does not exist (yet): still sent
        policy("later", {"targetRef": target("cart"), "from": [{"authenticated": True}]}),
        # invalid: refused, the others still go through
        policy("bad-kind", {"targetRef": {"kind": "Deployment", "name": "backend"},
                            "from": [{"authenticated": True}]}),
        policy("bad-from", {"targetRef": target(), "from": [{"authenticated": False}]}),
        policy("other-td", {"targetRef": target(),
                            "from": [{"identities": ["spiffe://other.org/ns/a/sa/b"]}]}),
    ]


def records(snap):
    """[(ns/name:port, action, source, [kind=value])] of a /snapshot JSON."""
    return [("%s/%s:%d" % (a["namespace"], a["name"], a["port"]), a["action"], a["source"],
             ["%s=%s" % (p["kind"], p["value"]) if p["value"] else p["kind"] for p in a["from"]])
            for a in snap.get("authz", [])]


WANT = [
    ("shop/backend:0", "deny", "shop/deny-plain", ["unauthenticated"]),
    ("shop/backend:80", "allow", "shop/allow-frontend",
     ["identity=" + ID % ("ops", "admin"), "identity=" + ID % ("shop", "frontend"),
      "namespace=ops"]),
    ("shop/cart:0", "allow", "shop/later", ["authenticated"]),
]


class MeshAuthzFileMode(StraitTest):
    def run_ctl(self, *extra):
        return subprocess.run([os.path.join(BIN, "strait-controller"), "--manifests", self.s.mdir,
                               "--dump"] + list(extra), capture_output=True, text=True, timeout=20)

    def test_policies_reach_the_data_plane(self):
        self.s.write("authz.yaml", *objects())
        tokens, root = os.path.join(self.s.dir, "tokens"), os.path.join(self.s.dir, "root")
        os.makedirs(root)
        with open(tokens, "w") as f:
            f.write("tok shop frontend\n")
        self.s.ctl_health_port = free_port()
        self.s.controller("--mesh", "--mesh-token-file", tokens, "--mesh-listen",
                          "127.0.0.1:%d" % free_port(), "--mesh-root-dir", root, "--health",
                          "127.0.0.1:%d" % self.s.ctl_health_port)
        self.s.dataplane()

        def live():
            st, body = self.s.admin_get("/snapshot")
            return records(json.loads(body)) if st == 200 else None
        wait_value(self, live, WANT, "authz records on the data plane's /snapshot")
        st, body = self.s.admin_get("/snapshot")
        self.assertEqual(json.loads(body)["authz_default"], "allow")
        log = self.s.controller_log()
        for name, why in (("bad-kind", 'spec.targetRef: kind \\"Deployment\\" is not one of'),
                          ("bad-from", "spec.from[0]: must set identities"),
                          ("other-td", "spec.from[0].identities[0]:")):
            line = [ln for ln in log.splitlines() if "event=object_rejected" in ln
                    and "kind=AuthorizationPolicy" in ln and "object=shop/" + name in ln]
            self.assertTrue(line, "no object_rejected line for %s:\n%s" % (name, log))
            self.assertIn(why, line[0])
        self.assertIn("is not in the trust domain cluster.local", log)
        # a change: the Deny policy goes, the Allow one moves to every port
        objs = objects()
        objs[1]["spec"].pop("port")
        del objs[2]
        self.s.write_atomic("authz.yaml", *objs)
        want = [("shop/backend:0", "allow", "shop/allow-frontend", WANT[1][3]), WANT[2]]
        wait_value(self, live, want, "authz records after the change")

    def test_default_policy_flag_and_without_mesh(self):
        self.s.write("authz.yaml", *objects())
        p = self.run_ctl("--mesh", "--mesh-default-policy", "deny")
        self.assertEqual(p.returncode, 0, p.stderr)
        snap = json.loads(p.stdout)
        self.assertEqual(snap["authz_default"], "deny")
        self.assertEqual(records(snap), WANT)
        p = self.run_ctl("--mesh")
        self.assertEqual(json.loads(p.stdout)["authz_default"], "allow")
        # without --mesh the policies are not used: no authz keys at all
        p = self.run_ctl()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("authz", p.stdout)
        # a bad value, and the flag without --mesh
        p = self.run_ctl("--mesh", "--mesh-default-policy", "Deny")
        self.assertEqual(p.returncode, 2)
        self.assertIn("--mesh-default-policy Deny: want allow or deny", p.stderr)
        p = self.run_ctl("--mesh-default-policy", "deny")
        self.assertEqual(p.returncode, 2)


def conds(obj):
    return {c["type"]: (c["status"], c["reason"], c["message"])
            for c in (obj.get("status") or {}).get("conditions") or []}


class MeshAuthzClusterMode(StraitTest):
    def create(self, obj):
        path = API if obj["kind"] == "AuthorizationPolicy" else "/api/v1/namespaces/shop/services"
        code, body = self.api.request("POST", path, obj)
        self.assertEqual(code, 201, "create %s: %s %r" % (obj["metadata"]["name"], code, body))

    def get(self, name):
        code, body = self.api.request("GET", API + "/" + name)
        self.assertEqual(code, 200, body)
        return body

    def wait_conds(self, name, want, what):
        last = {}

        def ok():
            last["c"] = conds(self.get(name))
            return {k: v[:2] for k, v in last["c"].items()} == want
        try:
            wait_until(ok, 15, what=what)
        except AssertionError:
            self.assertEqual(last.get("c"), want, what)
            raise
        return last["c"]

    def test_status_events_and_watch(self):
        self.api = self.s.apiserver()
        self.api.request("POST", "/api/v1/namespaces",
                         {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
        for obj in objects():
            self.create(obj)
        self.s.cluster_controller("--mesh", "--mesh-listen", "127.0.0.1:%d" % free_port(),
                                  "--election-namespace", "default",
                                  kubeconfig=self.api.kubeconfig)

        def live():
            st, body = self.s.ctl_get("/snapshot")
            return records(json.loads(body)) if st == 200 else None
        wait_value(self, live, WANT, "authz records from the API")
        ok = {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
        self.wait_conds("allow-frontend", ok, "status of a valid policy")
        c = self.wait_conds("later", {"Accepted": ("True", "Accepted"),
                                      "ResolvedRefs": ("False", "TargetNotFound")},
                            "status of a policy whose Service is missing")
        self.assertIn("Service shop/cart not found", c["ResolvedRefs"][2])
        bad = {"Accepted": ("False", "Invalid"), "ResolvedRefs": ("False", "Invalid")}
        c = self.wait_conds("bad-kind", bad, "status of an invalid policy")
        self.assertIn('spec.targetRef: kind "Deployment" is not one of', c["Accepted"][2])
        c = self.wait_conds("other-td", bad, "status of a policy outside the trust domain")
        self.assertIn("is not in the trust domain cluster.local", c["Accepted"][2])
        # the status fits the CRD's schema (unknown fields refused), generations observed
        import test_gateway_cluster as gwc
        with open(os.path.join(harness.ROOT, "crds", "strait.dev_authorizationpolicies.yaml")) as f:
            schema = gwc.strict(gwc.yaml.safe_load(f)["spec"]["versions"][0]["schema"][
                "openAPIV3Schema"]["properties"]["status"])
        for name in ("allow-frontend", "later", "bad-kind", "bad-from", "other-td"):
            obj = self.get(name)
            gwc.jsonschema.validate(obj["status"], schema)
            self.assertEqual(obj["status"]["observedGeneration"], obj["metadata"]["generation"])
        # Warning Events for the invalid ones, none for the valid ones
        def events():
            code, body = self.api.request("GET", "/api/v1/namespaces/shop/events")
            return {e["involvedObject"]["name"]: e for e in body.get("items", [])
                    if e["involvedObject"].get("kind") == "AuthorizationPolicy"}
        wait_until(lambda: set(events()) == {"bad-kind", "bad-from", "other-td"}, 15,
                   what="Events for the invalid policies")
        ev = events()["bad-from"]
        self.assertEqual((ev["type"], ev["reason"]), ("Warning", "Invalid"))
        self.assertEqual(ev["involvedObject"]["apiVersion"], "strait.dev/v1alpha1")
        self.assertIn("spec.from[0]: must set identities", ev["message"])
        # watched: the Service appears (ResolvedRefs True), a policy goes away
        self.create(service("cart", ip="10.96.0.21"))
        self.wait_conds("later", ok, "the missing Service created")
        code, _ = self.api.request("DELETE", API + "/deny-plain")
        self.assertEqual(code, 200)
        wait_value(self, live, WANT[1:], "the Deny policy deleted")

    def test_not_watched_without_mesh(self):
        self.api = self.s.apiserver()
        self.api.request("POST", "/api/v1/namespaces",
                         {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
        for obj in objects()[:2]:
            self.create(obj)
        self.s.cluster_controller("--election-namespace", "default",
                                  kubeconfig=self.api.kubeconfig)
        st, body = self.s.ctl_get("/snapshot")
        self.assertEqual(st, 200)
        self.assertNotIn("authz", json.loads(body))
        paths = [r["path"] for r in self.api.control("GET", "requests")["items"]
                 if r.get("user_agent") == "strait-controller"]
        self.assertFalse([p for p in paths if "authorizationpolicies" in p], paths)
        self.assertIsNone(self.get("allow-frontend").get("status"))
