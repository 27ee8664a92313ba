"""Tests of the stand-in API server against the wire protocol of kube-apiserver: auth, the
verbs and their resourceVersion rules, paged lists, compaction, watch streams, fault
injection, selectors, the status subresource, discovery, and kubectl against it.

  cd tests/kube-apiserver && python3 -m unittest -v test_server

One server per test class (the slow part is the certificates); every test works in its own
namespace, so tests do not see each other's objects.
"""
import itertools
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture  # noqa: E402

_names = itertools.count(1)

NET = "/apis/networking.k8s.io/v1"


def svc(name, labels=None, port=80):
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"ports": [{"name": "http", "port": port}]}}


def ing(name, host="a.example.com", labels=None):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"rules": [{"host": host, "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "app", "port": {"number": 80}}}}]}}]}}


class ServerCase(unittest.TestCase):
    ARGS = ()
    FORBIDDEN = ("bad-token",)

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="kube-apiserver-test-")
        cls.srv = fixture.ApiServer(cls.tmp, forbidden=cls.FORBIDDEN, args=cls.ARGS).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert rc == 0, "kube-apiserver exited %r after SIGTERM" % rc

    def setUp(self):
        self.watches = []
        self.ns = "t%d" % next(_names)
        code, obj = self.srv.request("POST", "/api/v1/namespaces",
                                     {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.ns}})
        self.assertEqual(code, 201, obj)

    def tearDown(self):
        for w in self.watches:
            w.close()

    def dump_logs(self):  # tests/e2e/run.py prints this for a failed test
        return "--- kube-apiserver log (tail)\n" + self.srv.log_text()[-4000:]

    # helpers
    def req(self, method, path, body=None, want=None, **kw):
        code, obj = self.srv.request(method, path, body, **kw)
        if want is not None:
            self.assertEqual(code, want, "%s %s -> %s %s" % (method, path, code, json.dumps(obj)[:500]))
        return obj

    def svcs(self, ns=None):
        return "/api/v1/namespaces/%s/services" % (ns or self.ns)

    def ings(self, ns=None):
        return NET + "/namespaces/%s/ingresses" % (ns or self.ns)

    def watch(self, path):
        w = self.srv.watch(path)
        self.watches.append(w)
        self.assertEqual(w.status, 200, w.body)
        self.assertEqual(w.headers.get("content-type"), "application/json")
        self.assertEqual(w.headers.get("transfer-encoding"), "chunked")
        return w

    def status_of(self, obj, code, reason):
        self.assertEqual(obj["kind"], "Status", obj)
        self.assertEqual(obj["apiVersion"], "v1")
        self.assertEqual(obj["status"], "Failure")
        self.assertEqual(obj["code"], code, obj)
        self.assertEqual(obj["reason"], reason, obj)
        self.assertTrue(obj["message"])

    def rv_now(self):
        return int(self.srv.control("GET", "state")["resourceVersion"])


class TestProcess(ServerCase):
    def test_files_and_listening_line(self):
        self.assertRegex(self.srv.listen_line, r"^listening https://127\.0\.0\.1:[0-9]+\n$")
        with open(os.path.join(self.tmp, "port")) as f:
            self.assertEqual(int(f.read()), self.srv.port)
        for n in ("ca.crt", "server.crt", "server.key", "kubeconfig"):
            self.assertTrue(os.path.exists(os.path.join(self.tmp, n)), n)
        with open(self.srv.kubeconfig) as f:
            kc = f.read()
        self.assertIn('server: "https://127.0.0.1:%d"' % self.srv.port, kc)
        self.assertIn('certificate-authority: "%s"' % self.srv.ca, kc)
        self.assertIn('token: "test-token"', kc)
        self.assertIn("current-context: strait-test", kc)

    def test_sigterm_exits_zero(self):
        d = tempfile.mkdtemp(prefix="kube-apiserver-term-")
        try:
            # certificates are reused from a folder that has them
            for n in ("ca.crt", "server.crt", "server.key"):
                shutil.copy(os.path.join(self.tmp, n), d)
            other = fixture.ApiServer(d).start()
            w = other.watch("/api/v1/services?watch=1")
            self.assertEqual(other.request("GET", "/api/v1/namespaces/default")[0], 200)
            other.proc.send_signal(signal.SIGTERM)
            self.assertEqual(other.proc.wait(10), 0)
            w.close()
            other.stop()
        finally:
            shutil.rmtree(d, ignore_errors=True)


class TestAuth(ServerCase):
    def test_missing_and_unknown_token_401(self):
        for tok in ("", "nope"):
            for path in ("/api", "/api/v1/namespaces", self.svcs(), "/_control/state"):
                code, obj = self.srv.request("GET", path, token=tok)
                self.assertEqual(code, 401, path)
                self.status_of(obj, 401, "Unauthorized")

    def test_forbidden_token_403_everywhere(self):
        for method, path in (("GET", "/api"), ("GET", self.svcs()), ("POST", self.svcs()),
                             ("GET", "/apis/networking.k8s.io/v1/ingresses?watch=1"),
                             ("POST", "/_control/compact")):
            code, obj = self.srv.request(method, path, {} if method == "POST" else None, token="bad-token")
            self.assertEqual(code, 403, path)
            self.status_of(obj, 403, "Forbidden")
        code, obj = self.srv.request("GET", self.svcs(), token="bad-token")
        self.assertIn('cannot list resource "services"', obj["message"])

    def test_token_rotation(self):
        self.srv.control("POST", "tokens", {"tokens": ["test-token", "new-token"]})
        try:
            self.assertEqual(self.srv.request("GET", "/api", token="new-token")[0], 200)
        finally:
            self.srv.control("POST", "tokens", {"tokens": ["test-token"]})
        self.assertEqual(self.srv.request("GET", "/api", token="new-token")[0], 401)


class TestVerbs(ServerCase):
    def test_create_get_conflicts_delete(self):
        before = self.rv_now()
        obj = self.req("POST", self.ings(), ing("web"), 201)
        m = obj["metadata"]
        self.assertEqual(obj["kind"], "Ingress")
        self.assertEqual(obj["apiVersion"], "networking.k8s.io/v1")
        self.assertEqual((m["name"], m["namespace"], m["generation"]), ("web", self.ns, 1))
        self.assertRegex(m["uid"], r"^[0-9a-f-]{36}$")
        self.assertRegex(m["creationTimestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertIsInstance(m["resourceVersion"], str)
        self.assertEqual(int(m["resourceVersion"]), before + 1)
        self.assertEqual(obj["status"], {"loadBalancer": {}})

        again = self.req("POST", self.ings(), ing("web"), 409)
        self.status_of(again, 409, "AlreadyExists")
        self.assertEqual(again["details"], {"name": "web", "group": "networking.k8s.io", "kind": "ingresses"})
        self.assertEqual(self.req("GET", self.ings() + "/web", want=200), obj)

        # update: stale resourceVersion -> 409 Conflict; current -> 200, new rv, generation+1
        stale = json.loads(json.dumps(obj))
        stale["metadata"]["resourceVersion"] = str(int(m["resourceVersion"]) - 1)
        self.status_of(self.req("PUT", self.ings() + "/web", stale, 409), 409, "Conflict")
        upd = json.loads(json.dumps(obj))
        upd["spec"]["rules"][0]["host"] = "b.example.com"
        upd2 = self.req("PUT", self.ings() + "/web", upd, 200)
        self.assertEqual(upd2["metadata"]["uid"], m["uid"])
        self.assertEqual(upd2["metadata"]["generation"], 2)
        self.assertGreater(int(upd2["metadata"]["resourceVersion"]), int(m["resourceVersion"]))
        # the old resourceVersion is now stale
        self.status_of(self.req("PUT", self.ings() + "/web", upd, 409), 409, "Conflict")
        # metadata-only change: no generation bump; an identical PUT writes nothing
        upd2["metadata"]["labels"] = {"a": "b"}
        upd3 = self.req("PUT", self.ings() + "/web", upd2, 200)
        self.assertEqual(upd3["metadata"]["generation"], 2)
        same = self.req("PUT", self.ings() + "/web", upd3, 200)
        self.assertEqual(same["metadata"]["resourceVersion"], upd3["metadata"]["resourceVersion"])
        # unconditional update (no resourceVersion) is allowed
        del upd3["metadata"]["resourceVersion"]
        upd3["metadata"]["labels"] = {"a": "c"}
        self.assertEqual(self.req("PUT", self.ings() + "/web", upd3, 200)["metadata"]["labels"], {"a": "c"})

        gone = self.req("DELETE", self.ings() + "/web", want=200)
        self.assertEqual(gone["metadata"]["name"], "web")
        nf = self.req("GET", self.ings() + "/web", want=404)
        self.status_of(nf, 404, "NotFound")
        self.assertEqual(nf["message"], 'ingresses.networking.k8s.io "web" not found')
        self.status_of(self.req("DELETE", self.ings() + "/web", want=404), 404, "NotFound")
        self.status_of(self.req("PUT", self.ings() + "/web", upd, 404), 404, "NotFound")

    def test_resource_version_is_one_global_counter(self):
        rvs = [int(self.req("POST", self.svcs(), svc("s1"), 201)["metadata"]["resourceVersion"]),
               int(self.req("POST", self.ings(), ing("i1"), 201)["metadata"]["resourceVersion"]),
               int(self.req("DELETE", self.svcs() + "/s1", want=200)["metadata"]["resourceVersion"])]
        self.assertEqual(rvs, [rvs[0], rvs[0] + 1, rvs[0] + 2])
        lst = self.req("GET", "/api/v1/services", want=200)
        self.assertEqual(int(lst["metadata"]["resourceVersion"]), self.rv_now())

    def test_merge_strategic_and_json_patch(self):
        obj = self.req("POST", self.svcs(), svc("p", {"app": "x"}), 201)
        rv = obj["metadata"]["resourceVersion"]
        mp = "application/merge-patch+json"
        out = self.req("PATCH", self.svcs() + "/p", {"metadata": {"labels": {"app": None, "tier": "web"}}}, 200, ctype=mp)
        self.assertEqual(out["metadata"]["labels"], {"tier": "web"})
        self.assertGreater(int(out["metadata"]["resourceVersion"]), int(rv))
        # resourceVersion in a patch is a precondition
        self.status_of(self.req("PATCH", self.svcs() + "/p", {"metadata": {"resourceVersion": rv, "labels": {"x": "y"}}},
                                409, ctype=mp), 409, "Conflict")
        smp = {"spec": {"ports": [{"name": "http", "port": 81}], "$setElementOrder/ports": [{"port": 81}]}}
        out = self.req("PATCH", self.svcs() + "/p", smp, 200, ctype="application/strategic-merge-patch+json")
        self.assertEqual(out["spec"]["ports"][0]["port"], 81)
        self.assertNotIn("$setElementOrder/ports", out["spec"])
        jp = [{"op": "test", "path": "/spec/ports/0/port", "value": 81},
              {"op": "add", "path": "/metadata/annotations", "value": {"k": "v"}}]
        out = self.req("PATCH", self.svcs() + "/p", jp, 200, ctype="application/json-patch+json")
        self.assertEqual(out["metadata"]["annotations"], {"k": "v"})
        self.assertEqual(self.srv.request("PATCH", self.svcs() + "/p", [{"op": "test", "path": "/spec/type", "value": "x"}],
                                          ctype="application/json-patch+json")[0], 422)
        self.assertEqual(self.srv.request("PATCH", self.svcs() + "/p", {}, ctype="application/apply-patch+yaml")[0], 415)
        self.assertEqual(self.srv.request("PATCH", self.svcs() + "/nope", {}, ctype=mp)[0], 404)

    def test_strategic_merge_by_key(self):
        body = svc("m")
        body["spec"]["ports"] = [{"name": "http", "port": 80}, {"name": "https", "port": 443}]
        body["metadata"]["finalizers"] = ["a", "b"]
        self.req("POST", self.svcs(), body, 201)
        smp = "application/strategic-merge-patch+json"
        # what kubectl apply sends to change one port's targetPort: only that item, plus the order
        out = self.req("PATCH", self.svcs() + "/m", {"spec": {
            "$setElementOrder/ports": [{"port": 80}, {"port": 443}], "ports": [{"port": 443, "targetPort": 8443}]}},
            200, ctype=smp)
        self.assertEqual([(p["port"], p["targetPort"], p["name"]) for p in out["spec"]["ports"]],
                         [(80, 80, "http"), (443, 8443, "https")])
        out = self.req("PATCH", self.svcs() + "/m", {"spec": {
            "$setElementOrder/ports": [{"port": 443}], "ports": [{"port": 80, "$patch": "delete"}]}}, 200, ctype=smp)
        self.assertEqual([p["port"] for p in out["spec"]["ports"]], [443])
        out = self.req("PATCH", self.svcs() + "/m", {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}},
                       200, ctype=smp)
        self.assertEqual(out["metadata"]["finalizers"], ["b"])
        out = self.req("PATCH", self.svcs() + "/m", {"spec": {"$patch": "replace", "ports": [{"port": 1}]}},
                       200, ctype=smp)
        self.assertEqual(out["spec"]["ports"], [{"port": 1, "protocol": "TCP", "targetPort": 1}])

    def test_bulk_load(self):
        items = [dict(svc("b%03d" % i), metadata={"name": "b%03d" % i, "namespace": "bulk-" + self.ns})
                 for i in range(300)]
        out = self.srv.control("POST", "objects", {"items": items, "create_namespaces": True})
        self.assertEqual(out["created"], 300)
        self.assertEqual(int(out["resourceVersion"]), self.rv_now())
        got, cont = 0, ""
        while True:
            lst = self.req("GET", self.svcs("bulk-" + self.ns) + "?limit=120" + cont, want=200)
            got += len(lst["items"])
            if "continue" not in lst["metadata"]:
                break
            cont = "&continue=" + lst["metadata"]["continue"]
        self.assertEqual(got, 300)

    def test_validation_namespaces_and_defaults(self):
        self.status_of(self.req("POST", self.svcs("missing"), svc("a"), 404), 404, "NotFound")
        self.status_of(self.req("POST", self.svcs(), svc("Bad_Name"), 422), 422, "Invalid")
        self.status_of(self.req("POST", self.svcs(), {"metadata": {}}, 422), 422, "Invalid")
        self.status_of(self.req("POST", self.svcs(), dict(svc("a"), kind="Secret"), 400), 400, "BadRequest")
        body = svc("a")
        body["metadata"]["namespace"] = "elsewhere"
        self.status_of(self.req("POST", self.svcs(), body, 400), 400, "BadRequest")
        gen = self.req("POST", self.svcs(), {"metadata": {"generateName": "gen-"}, "spec": {}}, 201)
        self.assertRegex(gen["metadata"]["name"], r"^gen-[a-z0-9]{5}$")
        s = self.req("POST", self.svcs(), svc("d"), 201)
        self.assertRegex(s["spec"]["clusterIP"], r"^10\.96\.")
        self.assertEqual(s["spec"]["ports"][0], {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80})
        # a replace without clusterIP keeps the allocated one
        body = svc("d", port=8080)
        s2 = self.req("PUT", self.svcs() + "/d", body, 200)
        self.assertEqual(s2["spec"]["clusterIP"], s["spec"]["clusterIP"])
        sec = self.req("POST", "/api/v1/namespaces/%s/secrets" % self.ns,
                       {"metadata": {"name": "s"}, "stringData": {"k": "v"}}, 201)
        self.assertEqual((sec["type"], sec["data"]), ("Opaque", {"k": "dg=="}))
        # dryRun=All answers without writing
        self.req("POST", self.svcs() + "?dryRun=All", svc("dry"), 201)
        self.req("GET", self.svcs() + "/dry", want=404)

    def test_namespace_deletion_is_deferred(self):
        self.req("POST", self.svcs(), svc("a"), 201)
        ns = self.req("DELETE", "/api/v1/namespaces/" + self.ns, want=200)
        self.assertEqual(ns["status"]["phase"], "Terminating")
        self.assertIn("deletionTimestamp", ns["metadata"])
        self.status_of(self.req("POST", self.svcs(), svc("b"), 403), 403, "Forbidden")
        self.req("GET", self.svcs() + "/a", want=200)  # still there: kubectl delete -f relies on it
        deadline = time.monotonic() + 5
        while self.srv.request("GET", "/api/v1/namespaces/" + self.ns)[0] != 404:
            self.assertLess(time.monotonic(), deadline, "namespace not finalized")
            time.sleep(0.05)
        self.req("GET", self.svcs() + "/a", want=404)

    def test_delete_preconditions_and_collection(self):
        o = self.req("POST", self.svcs(), svc("a", {"x": "1"}), 201)
        self.req("POST", self.svcs(), svc("b", {"x": "1"}), 201)
        self.req("POST", self.svcs(), svc("c", {"x": "2"}), 201)
        self.status_of(self.req("DELETE", self.svcs() + "/a", {"preconditions": {"uid": "other"}}, 409), 409, "Conflict")
        self.req("DELETE", self.svcs() + "/a", {"preconditions": {"uid": o["metadata"]["uid"]}}, 200)
        lst = self.req("DELETE", self.svcs() + "?labelSelector=x%3D1", want=200)
        self.assertEqual([i["metadata"]["name"] for i in lst["items"]], ["b"])
        self.assertEqual([i["metadata"]["name"] for i in self.req("GET", self.svcs(), want=200)["items"]], ["c"])

    def test_other_resources(self):
        paths = {
            "/api/v1/namespaces/%s/events" % self.ns: {"metadata": {"name": "e1"}, "reason": "R", "message": "m",
                                                       "involvedObject": {"kind": "Ingress", "name": "x", "namespace": self.ns}},
            "/apis/events.k8s.io/v1/namespaces/%s/events" % self.ns: {"metadata": {"name": "e2"}, "reason": "R", "note": "n"},
            "/apis/coordination.k8s.io/v1/namespaces/%s/leases" % self.ns: {"metadata": {"name": "l"},
                                                                            "spec": {"holderIdentity": "a"}},
            "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % self.ns: {"metadata": {"name": "es"},
                                                                                 "addressType": "IPv4", "endpoints": []},
            "/apis/networking.k8s.io/v1/ingressclasses": {"metadata": {"name": "cls-" + self.ns},
                                                          "spec": {"controller": "strait.dev/ingress-controller"}},
            "/apis/strait.dev/v1alpha1/namespaces/%s/gateways" % self.ns: {"metadata": {"name": "gw"}, "spec": {"a": 1}},
        }
        for path, body in paths.items():
            self.req("POST", path, body, 201)
            lst = self.req("GET", path, want=200)
            self.assertEqual(len(lst["items"]), 1, path)
            item = lst["items"][0]
            if "strait.dev" in path:  # a custom resource's list items keep apiVersion/kind
                self.assertEqual(item["kind"], "Gateway")
            else:
                self.assertNotIn("kind", item)
        evs = self.req("GET", "/api/v1/events?fieldSelector=involvedObject.kind%3DIngress,involvedObject.name%3Dx", want=200)
        self.assertEqual([e["metadata"]["name"] for e in evs["items"]], ["e1"])
        # leases are created by PUT as well (client-go's leader election never does, but may)
        lease = self.req("PUT", "/apis/coordination.k8s.io/v1/namespaces/%s/leases/l2" % self.ns,
                         {"metadata": {"name": "l2"}, "spec": {}}, 201)
        self.assertEqual(lease["metadata"]["generation"], 1)
        # all-namespaces paths
        self.assertTrue(self.req("GET", "/apis/coordination.k8s.io/v1/leases", want=200)["items"])
        self.req("GET", "/apis/strait.dev/v1alpha1/gateways", want=200)
        self.req("GET", "/apis/nope/v1/things", want=404)


class TestStatusSubresource(ServerCase):
    def test_status_only_through_status(self):
        obj = self.req("POST", self.ings(), dict(ing("s"), status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}), 201)
        self.assertEqual(obj["status"], {"loadBalancer": {}})  # create resets status
        lb = {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}
        # main resource: status changes are dropped
        body = dict(obj, status=lb)
        out = self.req("PUT", self.ings() + "/s", body, 200)
        self.assertEqual(out["status"], {"loadBalancer": {}})
        # /status: only status changes
        body = json.loads(json.dumps(out))
        body["status"] = lb
        body["spec"]["rules"][0]["host"] = "changed.example.com"
        body["metadata"]["labels"] = {"ignored": "yes"}
        st = self.req("PUT", self.ings() + "/s/status", body, 200)
        self.assertEqual(st["status"], lb)
        self.assertEqual(st["spec"]["rules"][0]["host"], "a.example.com")
        self.assertEqual(st["metadata"]["labels"], {})
        self.assertEqual(st["metadata"]["generation"], 1)
        self.assertGreater(int(st["metadata"]["resourceVersion"]), int(out["metadata"]["resourceVersion"]))
        # stale rv on /status -> 409; merge patch on /status
        self.status_of(self.req("PUT", self.ings() + "/s/status", body, 409), 409, "Conflict")
        pt = self.req("PATCH", self.ings() + "/s/status", {"status": {"loadBalancer": {"ingress": [{"hostname": "h"}]}}},
                      200, ctype="application/merge-patch+json")
        self.assertEqual(pt["status"]["loadBalancer"]["ingress"], [{"hostname": "h"}])
        self.assertEqual(self.req("GET", self.ings() + "/s/status", want=200)["status"], pt["status"])
        # a no-op status write does not bump the resourceVersion
        again = self.req("PATCH", self.ings() + "/s/status", {"status": pt["status"]}, 200,
                         ctype="application/merge-patch+json")
        self.assertEqual(again["metadata"]["resourceVersion"], pt["metadata"]["resourceVersion"])
        # resources without a status subresource have no /status path
        self.req("POST", "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % self.ns,
                 {"metadata": {"name": "e"}, "addressType": "IPv4", "endpoints": []}, 201)
        self.req("GET", "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices/e/status" % self.ns, want=404)
        gw = "/apis/strait.dev/v1alpha1/namespaces/%s/gateways" % self.ns
        self.req("POST", gw, {"metadata": {"name": "g"}, "spec": {}}, 201)
        self.assertEqual(self.req("PATCH", gw + "/g/status", {"status": {"ok": True}}, 200,
                                  ctype="application/merge-patch+json")["status"], {"ok": True})
        self.assertEqual(self.srv.request("PATCH", gw + "/g", {}, ctype="application/strategic-merge-patch+json")[0], 415)


GW = "strait.dev/v1alpha1"


def gateway(name, port=80):
    return {"apiVersion": GW, "kind": "Gateway", "metadata": {"name": name},
            "spec": {"listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]}}


class TestGateways(ServerCase):
    """The Gateway custom resource as kube-apiserver serves a CRD with a status subresource."""

    def gws(self, ns=None):
        return "/apis/%s/namespaces/%s/gateways" % (GW, ns or self.ns)

    def test_generation_and_status(self):
        body = gateway("g")
        body["status"] = {"conditions": []}
        out = self.req("POST", self.gws(), body, 201)
        self.assertEqual(out["metadata"]["generation"], 1)
        self.assertNotIn("status", out)  # a custom resource's create drops status
        self.assertEqual(out["kind"], "Gateway")
        # PATCH .../status: only status changes, rv bumps, generation does not
        st = {"observedGeneration": 1, "conditions": [{
            "type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
            "observedGeneration": 1, "lastTransitionTime": "2025-01-01T00:00:00Z"}]}
        p = self.req("PATCH", self.gws() + "/g/status",
                     {"status": st, "spec": {"listeners": []}, "metadata": {"labels": {"x": "y"}}}, 200,
                     ctype="application/merge-patch+json")
        self.assertEqual(p["status"], st)
        self.assertEqual(p["spec"], out["spec"])
        self.assertNotIn("labels", p["metadata"])
        self.assertEqual(p["metadata"]["generation"], 1)
        self.assertGreater(int(p["metadata"]["resourceVersion"]), int(out["metadata"]["resourceVersion"]))
        # the same status again is no write
        again = self.req("PATCH", self.gws() + "/g/status", {"status": st}, 200,
                         ctype="application/merge-patch+json")
        self.assertEqual(again["metadata"]["resourceVersion"], p["metadata"]["resourceVersion"])
        # a spec change (merge patch of the main resource) bumps generation, keeps status
        m = self.req("PATCH", self.gws() + "/g", {"spec": {"listeners": [
            {"name": "http", "port": 81, "protocol": "HTTP"}]}, "status": {"x": 1}}, 200,
            ctype="application/merge-patch+json")
        self.assertEqual(m["metadata"]["generation"], 2)
        self.assertEqual(m["status"], st)
        # a label change does not; a PUT with a new spec does
        m = self.req("PATCH", self.gws() + "/g", {"metadata": {"labels": {"a": "b"}}}, 200,
                     ctype="application/merge-patch+json")
        self.assertEqual(m["metadata"]["generation"], 2)
        put = gateway("g", port=82)
        put["metadata"]["resourceVersion"] = m["metadata"]["resourceVersion"]
        u = self.req("PUT", self.gws() + "/g", put, 200)
        self.assertEqual(u["metadata"]["generation"], 3)
        self.assertEqual(u["status"], st)
        # list items of a custom resource keep kind and apiVersion
        lst = self.req("GET", self.gws(), want=200)
        self.assertEqual(lst["kind"], "GatewayList")
        self.assertEqual([(i["kind"], i["apiVersion"]) for i in lst["items"]], [("Gateway", GW)])
        self.req("DELETE", self.gws() + "/g", want=200)
        self.req("GET", self.gws() + "/g", want=404)

    def test_watch(self):
        lst = self.req("GET", self.gws(), want=200)
        w = self.watch(self.gws() + "?watch=1&allowWatchBookmarks=true&resourceVersion=" +
                       lst["metadata"]["resourceVersion"])
        self.req("POST", self.gws(), gateway("w"), 201)
        self.req("PATCH", self.gws() + "/w/status", {"status": {"observedGeneration": 1}}, 200,
                 ctype="application/merge-patch+json")
        self.req("DELETE", self.gws() + "/w", want=200)
        types = []
        while len(types) < 3:
            ev = w.next(timeout=5)
            self.assertIsNotNone(ev)
            if ev["type"] != "BOOKMARK":
                types.append((ev["type"], ev["object"]["kind"]))
            else:
                self.assertEqual(ev["object"]["kind"], "Gateway")
        self.assertEqual(types, [("ADDED", "Gateway"), ("MODIFIED", "Gateway"), ("DELETED", "Gateway")])


class TestTokenReview(ServerCase):
    """--sa-token: TokenReviews answered as kube-apiserver does (201; authenticated or not)."""
    ARGS = ("--sa-token", "t-web=default/web", "--sa-token", "t-aud=shop/db@a1,a2")
    PATH = "/apis/authentication.k8s.io/v1/tokenreviews"

    def review(self, sa_token, audiences=None, **kw):
        spec = {"token": sa_token}
        if audiences is not None:
            spec["audiences"] = audiences
        return self.req("POST", self.PATH, {"apiVersion": "authentication.k8s.io/v1",
                                            "kind": "TokenReview", "spec": spec}, **kw)

    def test_reviews(self):
        st = self.review("t-web", ["strait"], want=201)["status"]
        self.assertTrue(st["authenticated"])
        self.assertEqual(st["user"]["username"], "system:serviceaccount:default:web")
        self.assertIn("system:serviceaccounts:default", st["user"]["groups"])
        self.assertEqual(st["audiences"], ["strait"])
        self.assertEqual(self.review("t-aud", want=201)["status"]["audiences"], ["a1", "a2"])
        self.assertEqual(self.review("t-aud", ["x", "a2"], want=201)["status"]["audiences"], ["a2"])
        for tok, aud in (("nope", ["strait"]), ("t-aud", ["strait"])):
            st = self.review(tok, aud, want=201)["status"]
            self.assertFalse(st.get("authenticated", False))
            self.assertIn("invalid bearer token", st["error"])
        self.status_of(self.review("", want=422), 422, "Invalid")
        self.req("GET", self.PATH, want=405)
        # the reviewer needs a valid token itself
        self.status_of(self.review("t-web", want=401, token="unknown"), 401, "Unauthorized")

    def test_configmaps(self):
        cms = "/api/v1/namespaces/%s/configmaps" % self.ns
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"},
              "data": {"ca.crt": "x"}}
        self.req("POST", cms, cm, want=201)
        self.status_of(self.req("POST", cms, cm, want=409), 409, "AlreadyExists")
        self.req("PATCH", cms + "/b", {"data": {"ca.crt": "y"}}, want=200,
                 ctype="application/merge-patch+json")
        self.assertEqual(self.req("GET", cms + "/b", want=200)["data"]["ca.crt"], "y")


class TestWithoutCRD(ServerCase):
    """--without-crd: a cluster where our CRDs are not installed, then one installed, then
    removed."""
    ARGS = ("--without-crd", "gateways.strait.dev", "--without-crd", "authorizationpolicies.strait.dev")

    def test_not_found_then_installed_then_removed(self):
        all_gws = "/apis/%s/gateways" % GW
        gws = "/apis/%s/namespaces/%s/gateways" % (GW, self.ns)
        for path in (all_gws, gws, gws + "/g", gws + "/g/status", all_gws + "?watch=1"):
            self.status_of(self.req("GET", path, want=404), 404, "NotFound")
        self.status_of(self.req("POST", gws, gateway("g"), want=404), 404, "NotFound")
        groups = [g["name"] for g in self.req("GET", "/apis", want=200)["groups"]]
        self.assertNotIn("strait.dev", groups)
        self.req("GET", "/apis/strait.dev/v1alpha1", want=404)
        self.assertEqual(sorted(self.srv.control("GET", "crds")["items"], key=lambda c: c["name"]),
                         [{"name": "authorizationpolicies.strait.dev", "installed": False},
                          {"name": "gateways.strait.dev", "installed": False}])
        # installed: served, discoverable
        self.srv.control("POST", "crds", {"name": "gateways.strait.dev", "installed": True})
        self.assertIn("strait.dev", [g["name"] for g in self.req("GET", "/apis", want=200)["groups"]])
        self.req("POST", gws, gateway("g"), 201)
        lst = self.req("GET", all_gws, want=200)
        self.assertEqual(len(lst["items"]), 1)
        w = self.watch(all_gws + "?watch=1&resourceVersion=" + lst["metadata"]["resourceVersion"])
        # removed: its objects are deleted (DELETED event), then the watch ends cleanly
        self.srv.control("POST", "crds", {"name": "gateways.strait.dev", "installed": False})
        ev = w.next(timeout=5)
        self.assertEqual((ev["type"], ev["object"]["metadata"]["name"]), ("DELETED", "g"))
        self.assertIsNone(w.next(timeout=5))
        self.assertEqual(w.end, "clean")
        self.status_of(self.req("GET", all_gws, want=404), 404, "NotFound")
        code, obj = self.srv.request("POST", "/_control/crds", {"name": "nope", "installed": True})
        self.status_of(obj, 400, "BadRequest")
        # the other resources were never affected
        self.req("GET", self.svcs(), want=200)


class TestList(ServerCase):
    def names(self, lst):
        return [i["metadata"]["name"] for i in lst["items"]]

    def test_paging_is_consistent_across_writes(self):
        for n in "bcdefgh":
            self.req("POST", self.svcs(), svc(n), 201)
        p1 = self.req("GET", self.svcs() + "?limit=3", want=200)
        rv = p1["metadata"]["resourceVersion"]
        self.assertEqual(self.names(p1), ["b", "c", "d"])
        self.assertEqual(p1["metadata"]["remainingItemCount"], 4)
        self.assertEqual(p1["kind"], "ServiceList")
        # writes between pages: the continuation still lists the state at rv
        self.req("POST", self.svcs(), svc("a"), 201)
        self.req("POST", self.svcs(), svc("ee"), 201)
        self.req("DELETE", self.svcs() + "/g", want=200)
        mod = self.req("GET", self.svcs() + "/f", want=200)
        mod["metadata"]["labels"] = {"changed": "yes"}
        self.req("PUT", self.svcs() + "/f", mod, 200)
        p2 = self.req("GET", self.svcs() + "?limit=3&continue=" + p1["metadata"]["continue"], want=200)
        self.assertEqual(p2["metadata"]["resourceVersion"], rv)
        self.assertEqual(self.names(p2), ["e", "f", "g"])
        self.assertEqual(p2["items"][1]["metadata"].get("labels"), {})  # f as of rv
        self.assertEqual(p2["metadata"]["remainingItemCount"], 1)
        p3 = self.req("GET", self.svcs() + "?limit=3&continue=" + p2["metadata"]["continue"], want=200)
        self.assertEqual(self.names(p3), ["h"])
        self.assertNotIn("continue", p3["metadata"])
        self.assertNotIn("remainingItemCount", p3["metadata"])
        # a fresh list sees the writes
        self.assertEqual(self.names(self.req("GET", self.svcs(), want=200)), ["a", "b", "c", "d", "e", "ee", "f", "h"])
        # Exact list at the old rv (limit set, or resourceVersionMatch=Exact)
        old = self.req("GET", self.svcs() + "?limit=100&resourceVersion=" + rv, want=200)
        self.assertEqual(self.names(old), list("bcdefgh"))
        old = self.req("GET", self.svcs() + "?resourceVersionMatch=Exact&resourceVersion=" + rv, want=200)
        self.assertEqual(old["metadata"]["resourceVersion"], rv)
        # NotOlderThan (no limit) gives the current state
        cur = self.req("GET", self.svcs() + "?resourceVersion=" + rv, want=200)
        self.assertEqual(len(cur["items"]), 8)

    def test_list_parameter_errors(self):
        self.req("POST", self.svcs(), svc("a"), 201)
        self.req("POST", self.svcs(), svc("b"), 201)
        p1 = self.req("GET", self.svcs() + "?limit=1", want=200)
        self.status_of(self.req("GET", self.svcs() + "?limit=1&resourceVersion=5&continue=" + p1["metadata"]["continue"],
                                want=400), 400, "BadRequest")
        self.status_of(self.req("GET", self.svcs() + "?continue=garbage", want=400), 400, "BadRequest")
        self.status_of(self.req("GET", self.svcs() + "?resourceVersionMatch=Exact", want=422), 422, "Invalid")
        self.status_of(self.req("GET", self.svcs() + "?resourceVersionMatch=Exact&resourceVersion=0", want=422), 422, "Invalid")
        too_large = self.req("GET", self.svcs() + "?resourceVersion=%d" % (self.rv_now() + 100), want=504)
        self.status_of(too_large, 504, "Timeout")
        self.assertEqual(too_large["details"]["causes"][0]["reason"], "ResourceVersionTooLarge")

    def test_selectors(self):
        for name, labels in (("a", {"app": "web", "tier": "front"}), ("b", {"app": "web"}),
                             ("c", {"app": "db", "tier": "back"}), ("d", {})):
            self.req("POST", self.svcs(), svc(name, labels), 201)
        cases = {
            "app=web": "ab", "app==web": "ab", "app!=web": "cd", "app in (web,db)": "abc",
            "app notin (web)": "cd", "tier": "ac", "!tier": "bd", "app=web,tier=front": "a",
            "app in (web, db),!tier": "b", "": "abcd",
        }
        for sel, want in cases.items():
            lst = self.req("GET", self.svcs() + "?labelSelector=" + urllib.parse.quote(sel), want=200)
            self.assertEqual("".join(self.names(lst)), want, sel)
        fcases = {"metadata.name=b": "b", "metadata.name!=b": "acd", "metadata.namespace=%s" % self.ns: "abcd",
                  "metadata.name=a,metadata.name!=a": ""}
        for sel, want in fcases.items():
            lst = self.req("GET", self.svcs() + "?fieldSelector=" + urllib.parse.quote(sel), want=200)
            self.assertEqual("".join(self.names(lst)), want, sel)
        lst = self.req("GET", "/api/v1/services?fieldSelector=metadata.namespace%3D" + self.ns, want=200)
        self.assertEqual("".join(self.names(lst)), "abcd")
        self.status_of(self.req("GET", self.svcs() + "?fieldSelector=spec.nope%3D1", want=400), 400, "BadRequest")
        self.status_of(self.req("GET", self.svcs() + "?labelSelector=a%20in%20(", want=400), 400, "BadRequest")
        sec = "/api/v1/namespaces/%s/secrets" % self.ns
        self.req("POST", sec, {"metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
                               "data": {"tls.crt": "", "tls.key": ""}}, 201)
        self.req("POST", sec, {"metadata": {"name": "opaque"}}, 201)
        lst = self.req("GET", "/api/v1/secrets?fieldSelector=type%3Dkubernetes.io/tls", want=200)
        self.assertIn("tls", self.names(lst))
        self.assertNotIn("opaque", self.names(lst))
        # with a selector a page may be short or empty but paging still covers everything
        got, cont = [], ""
        for _ in range(10):
            lst = self.req("GET", self.svcs() + "?limit=1&labelSelector=app%3Dweb" + cont, want=200)
            self.assertNotIn("remainingItemCount", lst["metadata"])
            got += self.names(lst)
            if "continue" not in lst["metadata"]:
                break
            cont = "&continue=" + lst["metadata"]["continue"]
        self.assertEqual(got, ["a", "b"])


class TestCompaction(ServerCase):
    def test_continue_and_watch_after_compaction_get_410(self):
        for n in "abc":
            self.req("POST", self.svcs(), svc(n), 201)
        p1 = self.req("GET", self.svcs() + "?limit=1", want=200)
        rv = p1["metadata"]["resourceVersion"]
        self.req("POST", self.svcs(), svc("d"), 201)
        self.srv.control("POST", "compact")
        gone = self.req("GET", self.svcs() + "?limit=1&continue=" + p1["metadata"]["continue"], want=410)
        self.status_of(gone, 410, "Expired")
        self.assertIn("continue", gone["message"])
        # the token in the 410 continues from the next key, at the latest state
        rest = self.req("GET", self.svcs() + "?continue=" + gone["metadata"]["continue"], want=200)
        self.assertEqual([i["metadata"]["name"] for i in rest["items"]], ["b", "c", "d"])
        self.status_of(self.req("GET", self.svcs() + "?limit=5&resourceVersion=" + rv, want=410), 410, "Expired")
        # a watch from before the compaction: 200, one ERROR event with a 410 Status, clean end
        w = self.watch("/api/v1/namespaces/%s/services?watch=1&resourceVersion=%s" % (self.ns, rv))
        ev = w.next()
        self.assertEqual(ev["type"], "ERROR")
        self.status_of(ev["object"], 410, "Expired")
        self.assertIsNone(w.next())
        self.assertEqual(w.end, "clean")
        # from the compaction point itself is fine
        now = str(self.rv_now())
        w = self.watch("/api/v1/namespaces/%s/services?watch=1&resourceVersion=%s" % (self.ns, now))
        self.req("POST", self.svcs(), svc("e"), 201)
        self.assertEqual(w.next()["type"], "ADDED")

    def test_open_watch_survives_compaction(self):
        lst = self.req("GET", self.svcs(), want=200)
        w = self.watch(self.svcs() + "?watch=1&resourceVersion=" + lst["metadata"]["resourceVersion"])
        self.req("POST", self.svcs(), svc("a"), 201)
        self.srv.control("POST", "compact")
        self.req("POST", self.svcs(), svc("b"), 201)
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in w.events(2)],
                         [("ADDED", "a"), ("ADDED", "b")])


class TestWatch(ServerCase):
    ARGS = ("--bookmark-interval", "0.3")

    def test_events_after_list_rv_in_order_no_gaps_no_duplicates(self):
        other = "o%d" % next(_names)
        self.req("POST", "/api/v1/namespaces", {"metadata": {"name": other}}, 201)
        self.req("POST", self.svcs(), svc("pre"), 201)
        lst = self.req("GET", "/api/v1/services", want=200)
        rv = lst["metadata"]["resourceVersion"]
        expect = []

        def writes():
            for i in range(30):
                ns = self.ns if i % 2 else other
                o = self.req("POST", self.svcs(ns), svc("s%d" % i), 201)
                expect.append(("ADDED", ns, "s%d" % i, o["metadata"]["resourceVersion"]))
                if i % 3 == 0:
                    o["metadata"]["labels"] = {"i": str(i)}
                    o = self.req("PUT", self.svcs(ns) + "/s%d" % i, o, 200)
                    expect.append(("MODIFIED", ns, "s%d" % i, o["metadata"]["resourceVersion"]))
                if i % 5 == 0:
                    o = self.req("DELETE", self.svcs(ns) + "/s%d" % i, want=200)
                    expect.append(("DELETED", ns, "s%d" % i, o["metadata"]["resourceVersion"]))

        t = threading.Thread(target=writes)
        t.start()  # some writes land before the watch starts: they must be replayed
        time.sleep(0.05)
        w = self.watch("/api/v1/services?watch=1&resourceVersion=" + rv)
        t.join()
        got = []
        for _ in range(len(expect)):
            ev = w.next()
            m = ev["object"]["metadata"]
            got.append((ev["type"], m["namespace"], m["name"], m["resourceVersion"]))
        self.assertEqual(got, expect)
        rvs = [int(g[3]) for g in got]
        self.assertEqual(rvs, sorted(set(rvs)))
        self.assertGreater(rvs[0], int(rv))
        w.quiet(0.3)
        self.assertEqual(w.chunks, len(expect))

    def test_watch_without_rv_starts_with_synthetic_added(self):
        for n in "ab":
            self.req("POST", self.svcs(), svc(n), 201)
        for q in ("", "&resourceVersion=0"):
            w = self.watch(self.svcs() + "?watch=true" + q)
            evs = w.events(2)
            self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in evs], [("ADDED", "a"), ("ADDED", "b")])
            self.assertEqual(evs[0]["object"]["kind"], "Service")
            w.quiet(0.2)
        self.req("DELETE", self.svcs() + "/a", want=200)
        ev = w.next()
        self.assertEqual((ev["type"], ev["object"]["metadata"]["name"]), ("DELETED", "a"))

    def test_selector_transitions(self):
        o = self.req("POST", self.svcs(), svc("a", {"app": "web"}), 201)
        w = self.watch(self.svcs() + "?watch=1&labelSelector=app%3Dweb&resourceVersion=" + o["metadata"]["resourceVersion"])
        o["metadata"]["labels"] = {"app": "db"}
        o = self.req("PUT", self.svcs() + "/a", o, 200)
        ev = w.next()
        self.assertEqual(ev["type"], "DELETED")  # stopped matching
        self.assertEqual(ev["object"]["metadata"]["labels"], {"app": "web"})  # the last matching state
        self.assertEqual(ev["object"]["metadata"]["resourceVersion"], o["metadata"]["resourceVersion"])
        o["metadata"]["labels"] = {"app": "web"}
        self.req("PUT", self.svcs() + "/a", o, 200)
        self.assertEqual(w.next()["type"], "ADDED")
        self.req("POST", self.svcs(), svc("b", {"app": "db"}), 201)  # never matches
        w.quiet(0.2)
        # field selector, and the legacy single-object watch path
        w2 = self.watch(self.svcs() + "?watch=1&fieldSelector=metadata.name%3Da")
        self.assertEqual(w2.next()["object"]["metadata"]["name"], "a")
        w2.quiet(0.1)

    def test_bookmarks(self):
        o = self.req("POST", self.svcs(), svc("a"), 201)
        rv = o["metadata"]["resourceVersion"]
        w = self.watch(self.svcs() + "?watch=1&allowWatchBookmarks=true&resourceVersion=" + rv)
        self.req("POST", "/api/v1/namespaces/default/secrets", {"metadata": {"name": "bm-" + self.ns}}, 201)
        ev = w.next(3)
        self.assertEqual(ev["type"], "BOOKMARK")
        self.assertEqual(set(ev["object"]), {"kind", "apiVersion", "metadata"})
        self.assertEqual(ev["object"]["kind"], "Service")
        self.assertEqual(set(ev["object"]["metadata"]), {"resourceVersion"})
        self.assertGreaterEqual(int(ev["object"]["metadata"]["resourceVersion"]), int(rv) + 1)
        # no bookmarks unless asked for
        w2 = self.watch(self.svcs() + "?watch=1&resourceVersion=" + rv)
        w2.quiet(1.0, allow=())

    def test_send_initial_events(self):
        self.req("POST", self.svcs(), svc("a"), 201)
        w = self.watch(self.svcs() + "?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")
        evs = w.events(2)
        self.assertEqual(evs[0]["type"], "ADDED")
        self.assertEqual(evs[1]["type"], "BOOKMARK")
        self.assertEqual(evs[1]["object"]["metadata"]["annotations"], {"k8s.io/initial-events-end": "true"})

    def test_timeout_seconds_ends_cleanly(self):
        t0 = time.monotonic()
        w = self.watch(self.svcs() + "?watch=1&timeoutSeconds=1")
        while w.next(3) is not None:
            pass
        self.assertEqual(w.end, "clean")
        self.assertLess(time.monotonic() - t0, 2.5)

    def test_cut_watches(self):
        ws = [self.watch(self.svcs() + "?watch=1"), self.watch(self.ings() + "?watch=1")]
        deadline = time.monotonic() + 3
        while self.srv.control("GET", "watches")["open"] < 2:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)
        self.assertEqual(self.srv.control("POST", "cut-watches")["cut"], 2)
        for w in ws:
            self.assertIsNone(w.next(3))
            self.assertEqual(w.end, "abrupt")
        deadline = time.monotonic() + 3
        while self.srv.control("GET", "watches")["open"] != 0:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)
        # the server keeps serving, and a new watch works
        w = self.watch(self.svcs() + "?watch=1")
        self.req("POST", self.svcs(), svc("after"), 201)
        self.assertEqual(w.next()["object"]["metadata"]["name"], "after")

    def test_closed_client_is_noticed(self):
        w = self.srv.watch(self.svcs() + "?watch=1")
        deadline = time.monotonic() + 3
        while self.srv.control("GET", "watches")["open"] < 1:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)
        w.close()
        while self.srv.control("GET", "watches")["open"] != 0:
            self.assertLess(time.monotonic(), deadline, "server did not notice the closed watch")
            time.sleep(0.05)


class TestFaults(ServerCase):
    def test_500_then_recovery(self):
        self.srv.control("POST", "faults", {"status": 500, "count": 2, "path_prefix": "/apis/networking.k8s.io/"})
        self.req("GET", self.svcs(), want=200)  # other paths unaffected
        for _ in range(2):
            self.status_of(self.req("GET", self.ings(), want=500), 500, "InternalError")
        self.req("GET", self.ings(), want=200)

    def test_429_retry_after(self):
        self.srv.control("POST", "faults", {"status": 429, "count": 1, "retry_after": 3})
        code, headers, body = self.srv.raw("GET", self.svcs())
        self.assertEqual(code, 429)
        self.assertEqual(headers.get("retry-after"), "3")
        obj = json.loads(body)
        self.status_of(obj, 429, "TooManyRequests")
        self.assertEqual(obj["details"]["retryAfterSeconds"], 3)
        self.req("GET", self.svcs(), want=200)

    def test_fault_on_watch_only(self):
        self.srv.control("POST", "faults", {"status": 500, "watch": True})
        self.req("GET", self.svcs(), want=200)
        w = self.srv.watch(self.svcs() + "?watch=1")
        self.assertEqual(w.status, 500)
        self.status_of(w.body, 500, "InternalError")
        w.close()

    def test_delay(self):
        self.srv.control("POST", "delay", {"seconds": 0.5, "count": 1, "path_prefix": "/api/v1/namespaces/" + self.ns})
        t0 = time.monotonic()
        self.req("GET", self.svcs(), want=200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.5)
        t0 = time.monotonic()
        self.req("GET", self.svcs(), want=200)
        self.assertLess(time.monotonic() - t0, 0.5)

    def test_request_log(self):
        self.srv.control("DELETE", "requests")
        self.req("GET", self.svcs() + "?limit=7", want=200)
        self.srv.request("GET", "/api", token="")
        items = self.srv.control("GET", "requests")["items"]
        self.assertEqual([(i["method"], i["path"], i["params"], i["status"], i["auth"]) for i in items],
                         [("GET", self.svcs(), {"limit": "7"}, 200, "valid"), ("GET", "/api", {}, 401, "none")])
        self.assertEqual(items[0]["query"], "limit=7")

    def test_mutating_webhook_configuration(self):
        # cluster-scoped, built in, no /status; a JSON patch whose test fails is 422 Invalid
        # with kube-apiserver's generic message (NewGenericServerResponse: no reason given)
        mwc = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
        name = "inject-" + self.ns
        hook = {"admissionReviewVersions": ["v1"], "sideEffects": "None",
                "clientConfig": {"service": {"name": "s", "namespace": self.ns, "path": "/inject"}}}
        o = self.req("POST", mwc, {"metadata": {"name": name},
                                   "webhooks": [dict(hook, name="a.x.dev"), dict(hook, name="b.x.dev")]}, 201)
        self.assertNotIn("namespace", o["metadata"])
        self.assertNotIn("kind", self.req("GET", mwc, want=200)["items"][0])
        self.req("GET", "/apis/admissionregistration.k8s.io/v1/namespaces/%s/mutatingwebhookconfigurations/%s"
                 % (self.ns, name), want=404)
        self.req("GET", mwc + "/" + name + "/status", want=404)
        rv = o["metadata"]["resourceVersion"]
        jp = "application/json-patch+json"
        patch = [{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
                 {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": "Y2E="}]
        out = self.req("PATCH", mwc + "/" + name, patch, 200, ctype=jp)
        self.assertEqual(out["webhooks"][1]["clientConfig"]["caBundle"], "Y2E=")
        self.assertNotIn("caBundle", out["webhooks"][0]["clientConfig"])
        self.assertGreater(int(out["metadata"]["resourceVersion"]), int(rv))
        # the same patch again: the resourceVersion moved on, the test fails
        st = self.req("PATCH", mwc + "/" + name, patch, 422, ctype=jp)
        self.status_of(st, 422, "Invalid")
        self.assertEqual(st["message"], "the server rejected our request due to an error in our request")
        self.assertEqual(self.req("GET", mwc + "/" + name, want=200)["metadata"]["resourceVersion"],
                         out["metadata"]["resourceVersion"])
        # a JSON patch that is not a list does not decode: 400
        self.status_of(self.req("PATCH", mwc + "/" + name, {"op": "add"}, 400, ctype=jp), 400, "BadRequest")
        self.req("DELETE", mwc + "/" + name, want=200)
        self.req("GET", mwc + "/" + name, want=404)


class TestDiscovery(ServerCase):
    def test_documents(self):
        self.assertEqual(self.req("GET", "/version", want=200)["major"], "1")
        self.assertEqual(self.req("GET", "/api", want=200)["versions"], ["v1"])
        groups = {g["name"]: g for g in self.req("GET", "/apis", want=200)["groups"]}
        self.assertEqual(set(groups), {"networking.k8s.io", "discovery.k8s.io", "coordination.k8s.io",
                                       "events.k8s.io", "admissionregistration.k8s.io", "strait.dev"})
        self.assertEqual(groups["strait.dev"]["preferredVersion"]["groupVersion"], "strait.dev/v1alpha1")
        rl = {r["name"]: r for r in self.req("GET", NET, want=200)["resources"]}
        self.assertEqual(rl["ingresses"]["shortNames"], ["ing"])
        self.assertTrue(rl["ingresses"]["namespaced"])
        self.assertFalse(rl["ingressclasses"]["namespaced"])
        adm = {r["name"]: r for r in self.req("GET", "/apis/admissionregistration.k8s.io/v1", want=200)["resources"]}
        self.assertEqual(set(adm), {"mutatingwebhookconfigurations"})  # no /status
        self.assertFalse(adm["mutatingwebhookconfigurations"]["namespaced"])
        self.assertEqual(adm["mutatingwebhookconfigurations"]["kind"], "MutatingWebhookConfiguration")
        self.assertIn("watch", rl["ingresses"]["verbs"])
        self.assertIn("ingresses/status", rl)
        core = {r["name"] for r in self.req("GET", "/api/v1", want=200)["resources"]}
        self.assertTrue({"services", "secrets", "events", "namespaces"} <= core)
        self.req("GET", "/apis/networking.k8s.io", want=200)
        self.req("GET", "/openapi/v2", want=404)


MANIFEST = """apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
---
apiVersion: v1
kind: Service
metadata:
  name: app
  namespace: {ns}
spec:
  ports:
    - name: http
      port: {port}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: app-1
  namespace: {ns}
  labels:
    kubernetes.io/service-name: app
addressType: IPv4
endpoints:
  - addresses: ["127.0.0.1"]
    conditions:
      ready: true
ports:
  - name: http
    port: 9001
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: app
  namespace: {ns}
spec:
  rules:
    - host: {host}
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: app
                port:
                  number: {port}
"""


class TestKubectl(ServerCase):
    def test_create_replace_get_delete(self):
        ns = "kc%d" % next(_names)
        path = os.path.join(self.tmp, "routes.yaml")
        with open(path, "w") as f:
            f.write(MANIFEST.format(ns=ns, port=80, host="app.example.com"))
        out = self.srv.kubectl("create", "-f", path).stdout.decode()
        self.assertIn("ingress.networking.k8s.io/app created", out)
        obj = self.req("GET", self.ings(ns) + "/app", want=200)
        self.assertEqual(obj["spec"]["rules"][0]["host"], "app.example.com")
        self.req("GET", "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices/app-1" % ns, want=200)

        with open(path, "w") as f:
            f.write(MANIFEST.format(ns=ns, port=8080, host="new.example.com"))
        out = self.srv.kubectl("replace", "-f", path).stdout.decode()
        self.assertIn("ingress.networking.k8s.io/app replaced", out)
        obj2 = self.req("GET", self.ings(ns) + "/app", want=200)
        self.assertEqual(obj2["spec"]["rules"][0]["host"], "new.example.com")
        self.assertEqual(obj2["metadata"]["generation"], 2)
        self.assertEqual(obj2["metadata"]["uid"], obj["metadata"]["uid"])

        got = json.loads(self.srv.kubectl("get", "-f", path, "-o", "json").stdout)
        self.assertEqual([i["kind"] for i in got["items"]], ["Namespace", "Service", "EndpointSlice", "Ingress"])
        got = json.loads(self.srv.kubectl("get", "ing", "-n", ns, "app", "-o", "json").stdout)
        self.assertEqual(got["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["number"], 8080)
        table = self.srv.kubectl("get", "ingresses", "-A").stdout.decode()
        self.assertIn("app", table)

        # kubectl apply: a strategic merge patch for built-in kinds
        self.srv.kubectl("apply", "-f", path)  # adopts the objects (last-applied annotation)
        with open(path, "w") as f:
            f.write(MANIFEST.format(ns=ns, port=8081, host="applied.example.com"))
        self.srv.kubectl("apply", "-f", path)
        obj3 = self.req("GET", self.ings(ns) + "/app", want=200)
        self.assertEqual(obj3["spec"]["rules"][0]["host"], "applied.example.com")
        s = self.req("GET", self.svcs(ns) + "/app", want=200)
        self.assertEqual([(p["name"], p["port"]) for p in s["spec"]["ports"]], [("http", 8081)])

        out = self.srv.kubectl("delete", "-f", path).stdout.decode()
        self.assertIn('ingress.networking.k8s.io "app" deleted', out)
        self.req("GET", self.ings(ns) + "/app", want=404)
        self.req("GET", "/api/v1/namespaces/" + ns, want=404)  # --wait waited for it


if __name__ == "__main__":
    unittest.main()
