"""The mesh sidecar on the controller's discovery feed (issue 10, on-demand discovery): the
pods, apps and sidecars of test_mesh_sidecar.py, but no sidecar is given --socket: each asks
the controller (POST /v1/discovery over mTLS with its workload certificate) for the Services
its pod uses, on first use. The mesh also holds FILLER Services nobody calls. Every test of
test_mesh_sidecar.py runs again this way (mTLS and identities, opaque TCP, authorization,
IPv6, rotation, the controller away), then what is the feed's own: a sidecar holds only what
its pod uses, follows changes of it, drops it when idle and asks again on the next use, and
a destination that is no Service is passed through and remembered. Needs root (namespaces)."""
import json
import os
import subprocess
import unittest

import harness
import test_mesh_sidecar as base

FILLER = 200  # Services in namespace "other" that no pod calls


def filler():
    docs = []
    for i in range(FILLER):
        name, ip = "filler-%d" % i, "10.97.%d.%d" % (i // 250, i % 250 + 1)
        docs += [{"apiVersion": "v1", "kind": "Service",
                  "metadata": {"name": name, "namespace": "other"},
                  "spec": {"clusterIP": ip, "clusterIPs": [ip],
                           "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                                      "protocol": "TCP"}]}},
                 {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                  "metadata": {"name": name + "-1", "namespace": "other",
                               "labels": {"kubernetes.io/service-name": name}},
                  "addressType": "IPv4",
                  "endpoints": [{"addresses": ["10.203.%d.%d" % (i // 250, i % 250 + 1)],
                                 "conditions": {"ready": True}}],
                  "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]
    return docs


class FeedMixin:
    def snapshot_args(self):
        return []  # no --socket: the discovery feed

    def manifests(self):
        return super().manifests() + filler()

    def snap(self, pod):
        code, body = self.admin(pod, "/snapshot")
        self.assertEqual(code, "200", body)
        return json.loads(body)

    def services(self, pod):
        return sorted({m["name"] for m in self.snap(pod).get("mesh_services", [])})


class MeshFeedTest(FeedMixin, base.MeshSidecarTest):

    def test_feed_holds_what_the_pod_uses(self):
        self.assertIn("snapshot=feed", self.sidecars["a"].log())
        # a backs no Service and has called none: nothing of the mesh's FILLER + 5 Services
        self.assertEqual(self.services("a"), [])
        # b holds its own Services (inbound authorization needs them) and nothing else
        self.assertEqual(self.services("b"), ["admin", "backend", "backend6", "echo"])
        self.assertTrue(self.snap("b").get("authz"), "b's own AuthorizationPolicies missing")
        code, body = self.curl_from("a", "http://%s/first-use" % base.BACKEND_IP, host="backend")
        self.assertEqual(code, "200", body)  # the first connection waited for the answer
        self.assertEqual(base.header(body, "X-Strait-Peer-Identity"), base.spiffe("frontend"))
        self.assertEqual(self.services("a"), ["backend"])
        snap = self.snap("a")
        self.assertEqual([c["name"] for c in snap["clusters"]], ["shop/backend:80"])
        self.assertEqual(snap.get("routes", []), [])  # no Ingress routes, no certificates
        self.assertEqual(snap.get("certs", []), [])
        self.assertEqual(self.sidecars["a"].log().count("event=mesh_feed_park"), 1)
        # two destinations, both the backend: its ClusterIP:port and (asked for in the
        # background: the record was there already) the name in Host
        harness.wait_until(lambda: self.metric("a", "strait_mesh_feed_destinations",
                                               'state="service"') == 2, 10,
                           what="a's two destinations answered")
        self.assertEqual(self.metric("a", "strait_mesh_feed_waits_total", 'outcome="answered"'),
                         1)
        self.assertGreaterEqual(self.metric("a", "strait_mesh_feed_requests_total",
                                            'result="update"') or 0, 2)
        # used again: known now, no wait
        code, _ = self.curl_from("a", "http://%s/again" % base.BACKEND_IP, host="backend")
        self.assertEqual(code, "200")
        self.assertEqual(self.sidecars["a"].log().count("event=mesh_feed_park"), 1)

    def test_feed_follows_changes_of_what_is_used(self):
        code, _ = self.curl_from("a", "http://%s/" % base.BACKEND_IP, host="backend")
        self.assertEqual(code, "200")

        def endpoints():
            return sorted(e for c in self.snap("a")["clusters"] for e in c["endpoints"])
        self.assertEqual(endpoints(), [base.POD_IP["b"] + ":8080"])
        # the backend's EndpointSlice gains an address: the held request answers, a updates
        docs = self.manifests()
        for d in docs:
            if d["kind"] == "EndpointSlice" and d["metadata"]["name"] == "backend-1":
                d["endpoints"].append({"addresses": ["10.202.0.77"],
                                       "conditions": {"ready": True}})
        with open(os.path.join(self.mdir, "mesh.yaml"), "w") as f:
            f.write(harness.yaml_docs(*docs))
        harness.wait_until(lambda: endpoints() == sorted([base.POD_IP["b"] + ":8080",
                                                          "10.202.0.77:8080"]), 15,
                           what="the new endpoint in a's snapshot")

    def test_feed_drops_idle_services_and_asks_again(self):
        self.stop_sidecar("a")
        self.start_sidecar("a", "--discovery-idle", "2")
        code, _ = self.curl_from("a", "http://%s/" % base.BACKEND_IP, host="backend")
        self.assertEqual(code, "200")
        self.assertEqual(self.services("a"), ["backend"])
        harness.wait_until(lambda: self.services("a") == [], 20,
                           what="backend dropped from a's snapshot after 2 s unused")
        self.assertIn("event=mesh_feed_dropped", self.sidecars["a"].log())
        # the next use asks again, and the connection waits for it
        code, body = self.curl_from("a", "http://%s/back" % base.BACKEND_IP, host="backend")
        self.assertEqual(code, "200", body)
        self.assertEqual(base.header(body, "X-Strait-Peer-Identity"), base.spiffe("frontend"))
        self.assertEqual(self.sidecars["a"].log().count("event=mesh_feed_park"), 2)

    def hub_server(self, port):
        """An HTTP server in the hub, outside the mesh (no Service in front of it)."""
        srv = harness.Proc("hub-http", ["ip", "netns", "exec", self.ns["hub"], base.PY,
                                        harness.BACKEND_PY, "--name", "outside", "--port",
                                        str(port), "--host", base.HUB_IP], self.dir)
        self.procs.append(srv)
        harness.wait_until(lambda: self.sh("ip", "netns", "exec", self.ns["hub"], "curl", "-s",
                                           "-o", "/dev/null", "http://%s:%d/" % (base.HUB_IP, port),
                                           check=False).returncode == 0, 10, what="hub server")

    def test_feed_passes_through_what_is_no_service(self):
        # a's connections to a server outside the mesh go there as sent
        port = 8089
        self.hub_server(port)
        for i in range(2):
            code, body = self.curl_from("a", "http://%s:%d/" % (base.HUB_IP, port))
            self.assertEqual(code, "200", body)
            self.assertEqual(json.loads(body).get("backend"), "outside")
        # the sidecar's own connection to it (pooled: the second request may reuse it)
        self.assertGreaterEqual(self.metric("a", "strait_mesh_connections_total",
                                            'kind="outbound_passthrough"') or 0, 1)
        # asked once (the first connection waited), then remembered as no Service
        self.assertEqual(self.sidecars["a"].log().count("event=mesh_feed_park"), 1)
        self.assertEqual(self.services("a"), [])
        self.assertEqual(self.metric("a", "strait_mesh_feed_destinations", 'state="none"'), 1)


    def test_feed_asks_for_a_service_named_in_host(self):
        # dialled: a server outside the mesh; Host: a Service no connection went to yet
        port = 8089
        self.hub_server(port)
        code, body = self.curl_from("a", "http://%s:%d/by-name" % (base.HUB_IP, port),
                                    host="backend.shop:80")
        self.assertEqual(code, "200", body)
        got = json.loads(body)
        self.assertEqual(got.get("backend"), "b")  # routed by Host, over mTLS to b
        self.assertEqual(base.header(body, "X-Strait-Peer-Identity"), base.spiffe("frontend"))
        self.assertEqual(self.services("a"), ["backend"])
        # a Host that names no Service: the request goes where it was sent
        code, body = self.curl_from("a", "http://%s:%d/" % (base.HUB_IP, port),
                                    host="nosuch.shop")
        self.assertEqual(code, "200", body)
        self.assertEqual(json.loads(body).get("backend"), "outside")

    def test_feed_controller_away_new_destination_goes_on(self):
        port = 8089
        self.hub_server(port)
        self.assertEqual(self.ctl.stop(), [])
        # a destination never asked for: the feed cannot answer, so the connection goes on
        # as soon as the request fails (not after the 5 s wait) to where it was sent
        code, body = self.curl_from("a", "http://%s:%d/" % (base.HUB_IP, port))
        self.assertEqual(code, "200", body)
        self.assertEqual(json.loads(body).get("backend"), "outside")
        self.assertEqual(self.metric("a", "strait_mesh_feed_waits_total", 'outcome="answered"'),
                         1)
        self.assertEqual(self.metric("a", "strait_mesh_feed_waits_total",
                                     'outcome="timed_out"'), 0)
        self.assertIn("event=mesh_feed_failed", self.sidecars["a"].log())
        self.assertGreaterEqual(self.metric("a", "strait_mesh_feed_requests_total",
                                            'result="error"') or 0, 1)


class MeshFeedRotationTest(FeedMixin, base.MeshRotationTest):
    """Short-lived leaves while the feed runs: it keeps using the current certificate."""


class MeshFeedControllerDownTest(FeedMixin, base.MeshControllerDownTest):
    """The controller away for a minute: the sidecars keep what the feed gave them."""

    def setUp(self):
        super().setUp()
        # the loop's Service must be in a's snapshot before the controller goes
        code, _ = self.curl_from("a", "http://%s/" % base.BACKEND_IP, host="backend")
        self.assertEqual(code, "200")


if __name__ == "__main__":
    unittest.main()
