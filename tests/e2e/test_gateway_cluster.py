"""Gateways in cluster mode, end to end: the stand-in API server (tests/kube-apiserver), one
strait-controller with --kubeconfig (the leader: it writes Gateway status), a data plane and
tools/backend.py backends. Gateways are written through the API as a user would.

What it checks: a cluster without our CRD (404 on the gateways paths) is served - the
controller becomes ready, routes Ingresses, logs gateway_crd_missing once, and picks the CRD
up when it is installed later (STRAIT_CRD_RECHECK shortens the re-check) and drops its
objects when it goes; a Gateway's routes reach the data plane, its status (conditions,
listeners, observedGeneration; validated against the CRD's status schema with unknown fields
refused, as the API server would prune them) follows spec changes with the lastTransitionTime
of unchanged conditions kept and no write when nothing changed; a backendRef to a missing
Service is ResolvedRefs False BackendNotFound; deleting the Gateway removes its routes.
Every wait polls a condition (harness.wait_until); nothing sleeps to synchronise.
"""
import os
import re
import sys

import harness
from harness import StraitTest, wait_until

try:
    import yaml
    import jsonschema
except ImportError:  # a Python of its own (pyenv) does not see Debian's python3-* packages
    sys.path.append("/usr/lib/python3/dist-packages")
    import yaml  # noqa: E402
    import jsonschema  # noqa: E402

GW_API = "/apis/strait.dev/v1alpha1"
GWS = GW_API + "/namespaces/default/gateways"
CRD = os.path.join(harness.ROOT, "crds", "strait.dev_gateways.yaml")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
# short election timings (as test_leader_status_events.py) so renewals mark time quickly
ELECTION = ["--election-namespace", "default", "--election-lease-duration", "3",
            "--election-renew-deadline", "2", "--election-retry-period", "0.5"]
LEASE = "/apis/coordination.k8s.io/v1/namespaces/default/leases/strait-controller"


def strict(s):
    """The CRD's OpenAPI status schema as JSON Schema, with unknown fields refused."""
    s = {k: v for k, v in s.items() if not k.startswith("x-kubernetes-")}
    if "properties" in s:
        s["properties"] = {k: strict(v) for k, v in s["properties"].items()}
        s["additionalProperties"] = False
    if "items" in s:
        s["items"] = strict(s["items"])
    if s.pop("format", None) == "date-time":
        s["pattern"] = RFC3339.pattern
    return s


def status_schema():
    with open(CRD) as f:
        crd = yaml.safe_load(f)
    return strict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"])


def gateway(name, hostnames, backend="web", ns="default"):
    return {"apiVersion": "strait.dev/v1alpha1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
                     "routes": [{"name": "r", "hostnames": list(hostnames),
                                 "rules": [{"backendRefs": [{"name": backend, "port": 80}]}]}]}}


def conds(obj):
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


class GatewayClusterTest(StraitTest):
    def create(self, path, obj):
        code, body = self.api.request("POST", path, obj)
        self.assertEqual(code, 201, "create %s: %s %r" % (path, code, body))
        return body

    def backend_objects(self, svc, port):
        self.create("/api/v1/namespaces/default/services", harness.service(svc))
        self.create("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
                    harness.endpoint_slice(svc + "-1", svc, port))

    def get_gw(self, name):
        code, body = self.api.request("GET", GWS + "/" + name)
        self.assertEqual(code, 200, body)
        return body

    def requests(self, path, method="GET"):
        """The controller's requests (not the test's own) to path, in arrival order."""
        return [r for r in self.api.control("GET", "requests")["items"]
                if r["path"] == path and r["method"] == method
                and r["user_agent"] == "strait-controller"]

    def start_stack(self, env=None):
        self.s.cluster_controller(*ELECTION, kubeconfig=self.api.kubeconfig, env=env)
        self.s.dataplane()

    def wait_status(self, name, generation, what):
        """Waits for status.observedGeneration == generation; returns the object."""
        got = {}

        def ok():
            got["o"] = self.get_gw(name)
            return (got["o"].get("status") or {}).get("observedGeneration") == generation
        wait_until(ok, 10, what="%s: %s" % (name, what))
        return got["o"]

    def assertStatusValid(self, obj):
        st = obj["status"]
        jsonschema.validate(st, status_schema())
        gen = obj["metadata"]["generation"]
        self.assertEqual(st["observedGeneration"], gen)
        self.assertEqual([c["type"] for c in st["conditions"]],
                         ["Accepted", "Programmed", "ResolvedRefs"])
        for c in st["conditions"]:
            self.assertEqual(c["observedGeneration"], gen, c)
        self.assertEqual([l["name"] for l in st["listeners"]],
                         [l["name"] for l in obj["spec"]["listeners"]])


class TestCrdMissing(GatewayClusterTest):
    def test_ready_without_crd_then_installed_then_removed(self):
        """No CRD: ready, Ingresses served, one gateway_crd_missing; the CRD comes later and
        its Gateways are watched; it goes again and they are dropped."""
        ports = self.s.backends("v1")
        self.api = self.s.apiserver(args=["--without-crd", "gateways.strait.dev"])
        self.backend_objects("app", ports["v1"])
        self.create("/apis/networking.k8s.io/v1/namespaces/default/ingresses",
                    harness.ingress("app", [("app.example.com", [("/", "Prefix", "app")])]))
        self.start_stack(env={"STRAIT_CRD_RECHECK": "0.3"})  # waits for /readyz 200
        self.s.wait_backend("app.example.com", "/", "v1")
        m = self.s.ctl_metrics()
        self.assertEqual(m['strait_controller_synced{kind="Gateway"}'], 1)
        self.assertEqual(m['strait_controller_objects_cached{kind="Gateway"}'], 0)
        # re-checked, logged once
        wait_until(lambda: len([r for r in self.requests(GW_API + "/gateways")
                                if r["status"] == 404]) >= 3, 10, what="three 404 lists")
        log = self.s.controller_log()
        missing = harness.log_events(log, "gateway_crd_missing")
        self.assertEqual(len(missing), 1, missing)
        self.assertEqual(missing[0]["level"], "warn")
        self.assertEqual(missing[0]["crd"], "gateways.strait.dev")
        self.assertEqual(self.s.ctl_get("/readyz")[0], 200)

        # the CRD is installed: the reflector lists and watches, a Gateway is cached and served
        self.api.control("POST", "crds", {"name": "gateways.strait.dev", "installed": True})
        wait_until(lambda: harness.log_events(self.s.controller_log(), "gateway_crd_found"), 10,
                   what="gateway_crd_found")
        self.create(GWS, gateway("late", ["late.example.com"], backend="app"))
        wait_until(lambda: self.s.ctl_metrics().get(
            'strait_controller_objects_cached{kind="Gateway"}') == 1, 10, what="Gateway cached")
        self.s.wait_backend("late.example.com", "/", "v1")
        wait_until(lambda: any(w["path"] == GW_API + "/gateways"
                               for w in self.api.control("GET", "watches")["items"]), 10,
                   what="a Gateway watch open")

        # the CRD is removed: its objects go (DELETED, then 404 lists), Ingresses stay
        self.api.control("POST", "crds", {"name": "gateways.strait.dev", "installed": False})
        self.s.wait_backend("late.example.com", "/", 404)
        wait_until(lambda: self.s.ctl_metrics().get(
            'strait_controller_objects_cached{kind="Gateway"}') == 0, 10, what="Gateway dropped")
        wait_until(lambda: len(harness.log_events(self.s.controller_log(),
                                                  "gateway_crd_missing")) == 2, 10,
                   what="gateway_crd_missing again")
        self.s.wait_backend("app.example.com", "/", "v1")
        self.assertEqual(self.s.ctl_get("/readyz")[0], 200)


    def test_forbidden_gateways_do_not_block_ingresses(self):
        """RBAC without the Gateway rules (an install older than the CRD): 403 on gateways is
        logged once, the controller is ready and serves Ingresses."""
        ports = self.s.backends("v1")
        self.api = self.s.apiserver(args=["--forbid-resource", "gateways"])
        self.backend_objects("app", ports["v1"])
        self.create("/apis/networking.k8s.io/v1/namespaces/default/ingresses",
                    harness.ingress("app", [("app.example.com", [("/", "Prefix", "app")])]))
        self.start_stack(env={"STRAIT_CRD_RECHECK": "0.3"})
        self.s.wait_backend("app.example.com", "/", "v1")
        wait_until(lambda: len([r for r in self.requests(GW_API + "/gateways")
                                if r["status"] == 403]) >= 2, 10, what="two 403 lists")
        missing = harness.log_events(self.s.controller_log(), "gateway_crd_missing")
        self.assertEqual(len(missing), 1, missing)
        self.assertEqual((missing[0]["status"], missing[0]["reason"]), ("403", "Forbidden"))
        self.assertEqual(self.s.ctl_get("/readyz")[0], 200)


class TestGatewayStatus(GatewayClusterTest):
    def setUp(self):
        super().setUp()
        self.api = self.s.apiserver()

    def test_routes_and_status_follow_the_spec(self):
        """A Gateway is served and gets its status; a spec change bumps generation and the
        status follows, keeping the time of conditions that did not change; a rebuild that
        changes nothing writes nothing; deleting the Gateway removes its routes."""
        ports = self.s.backends("v1")
        self.backend_objects("web", ports["v1"])
        self.create(GWS, gateway("gw", ["gw.example.com"]))
        self.start_stack()
        self.s.wait_backend("gw.example.com", "/", "v1")
        obj = self.wait_status("gw", 1, "status of generation 1")
        self.assertStatusValid(obj)
        c = conds(obj)
        self.assertEqual({t: (c[t]["status"], c[t]["reason"]) for t in c},
                         {"Accepted": ("True", "Accepted"), "Programmed": ("True", "Programmed"),
                          "ResolvedRefs": ("True", "ResolvedRefs")})
        self.assertEqual(obj["status"]["listeners"][0]["attachedRoutes"], 1)
        for c1 in c.values():
            self.assertRegex(c1["lastTransitionTime"], RFC3339)
        self.assertEqual(obj["metadata"]["generation"], 1)  # a status write is not a spec change
        writes = len(self.requests(GWS + "/gw/status", "PATCH"))
        self.assertGreaterEqual(writes, 1)
        log = harness.log_events(self.s.controller_log(), "gateway_status_updated")
        self.assertTrue(log, "no gateway_status_updated line")

        # nothing changed for the Gateway: a rebuild (another Service) writes nothing
        built = self.s.ctl_metrics().get("strait_controller_reloads_total", 0)
        self.create("/api/v1/namespaces/default/services", harness.service("other"))
        wait_until(lambda: self.s.ctl_metrics().get("strait_controller_reloads_total", 0) > built,
                   10, what="a rebuild")
        n = len(self.requests(LEASE, "PATCH"))
        wait_until(lambda: len(self.requests(LEASE, "PATCH")) >= n + 2, 10, what="two renewals")
        self.assertEqual(len(self.requests(GWS + "/gw/status", "PATCH")), writes)
        m = self.s.ctl_metrics()
        self.assertEqual(m['strait_controller_gateway_status_writes_total{result="ok"}'], writes)
        self.assertEqual(m['strait_controller_gateway_status_reads_total'],
                         len(self.requests(GWS + "/gw")))  # one GET, then the answers
        self.assertEqual(m["strait_controller_gateway_status_pending"], 0)

        # a spec change: generation 2, the status follows
        code, body = self.api.request("PATCH", GWS + "/gw", {"spec": {"routes": [{
            "name": "r", "hostnames": ["gw2.example.com"],
            "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}]}},
            ctype="application/merge-patch+json")
        self.assertEqual(code, 200, body)
        self.assertEqual(body["metadata"]["generation"], 2)
        self.s.wait_backend("gw2.example.com", "/", "v1")
        self.s.wait_backend("gw.example.com", "/", 404)
        obj2 = self.wait_status("gw", 2, "status of generation 2")
        self.assertStatusValid(obj2)
        for t, c2 in conds(obj2).items():
            self.assertEqual(c2["status"], c[t]["status"])
            self.assertEqual(c2["lastTransitionTime"], c[t]["lastTransitionTime"], t)

        # deleted: its routes go
        code, body = self.api.request("DELETE", GWS + "/gw")
        self.assertEqual(code, 200, body)
        self.s.wait_backend("gw2.example.com", "/", 404)

    def test_missing_backend_service(self):
        """A backendRef to a Service that does not exist: ResolvedRefs False BackendNotFound,
        its share answered 500; the Service appearing fixes both."""
        ports = self.s.backends("v1")
        self.create(GWS, gateway("nobackend", ["nb.example.com"], backend="nope"))
        self.start_stack()

        def resolved(status):
            def ok():
                c = conds(self.get_gw("nobackend")).get("ResolvedRefs")
                return c is not None and c["status"] == status
            return ok
        wait_until(resolved("False"), 10, what="ResolvedRefs False")
        obj = self.get_gw("nobackend")
        self.assertStatusValid(obj)
        rr = conds(obj)["ResolvedRefs"]
        self.assertEqual(rr["reason"], "BackendNotFound")
        self.assertIn("nope", rr["message"])
        self.s.wait_backend("nb.example.com", "/", 500)
        t0 = rr["lastTransitionTime"]
        # the Service comes: resolved, served, the condition's time moves
        self.backend_objects("nope", ports["v1"])
        wait_until(resolved("True"), 10, what="ResolvedRefs True")
        self.s.wait_backend("nb.example.com", "/", "v1")
        rr = conds(self.get_gw("nobackend"))["ResolvedRefs"]
        self.assertEqual(rr["reason"], "ResolvedRefs")
        self.assertGreaterEqual(rr["lastTransitionTime"], t0)

    def test_invalid_gateway_gets_accepted_false(self):
        """A Gateway the controller's checks refuse (the stand-in server, like an API server
        without the CRD's rules, stores it) is logged object_rejected, not served, and its
        status says Accepted False Invalid with the reason; a valid one next to it serves."""
        ports = self.s.backends("v1")
        self.backend_objects("web", ports["v1"])
        bad = gateway("bad", ["bad.example.com"])
        bad["spec"]["listeners"][0]["protocol"] = "HTTPS"  # HTTPS without tls
        self.create(GWS, bad)
        self.create(GWS, gateway("good", ["good.example.com"]))
        self.start_stack()
        self.s.wait_backend("good.example.com", "/", "v1")
        self.s.wait_backend("bad.example.com", "/", 404)
        obj = self.wait_status("bad", 1, "status of the invalid Gateway")
        jsonschema.validate(obj["status"], status_schema())
        acc = conds(obj)["Accepted"]
        self.assertEqual((acc["status"], acc["reason"]), ("False", "Invalid"))
        self.assertIn("tls", acc["message"])
        self.assertEqual(conds(obj)["Programmed"]["status"], "False")
        rejected = [e for e in harness.log_events(self.s.controller_log(), "object_rejected")
                    if e.get("kind") == "Gateway"]
        self.assertTrue(rejected and rejected[0]["object"] == "default/bad", rejected)
        self.assertEqual(self.s.ctl_metrics()["strait_controller_objects_rejected"], 1)
        good = self.wait_status("good", 1, "status of the valid Gateway")
        self.assertEqual(conds(good)["Accepted"]["status"], "True")
