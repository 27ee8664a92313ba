"""The controller's discovery feed (POST /v1/discovery on the mesh HTTPS server, docs/mesh.md
"Discovery feed (controller)"): curl with a workload leaf from /v1/identity as its client
certificate; answers decoded with `strait-controller snapshot-dump`. File mode: the subset's
content (subscribed Services by ClusterIP in two IPv6 spellings and by name, the pod's own
Services and their policies, nothing else), the long poll (204 after the wait, 200 as soon as
a subscribed Service changes, not for an unsubscribed one), the version covering the keys,
sidecars leaving held requests, 300 held requests not starving the identity endpoint, 503 at
stop; the pod addresses a caller claims count only where a Pod of its identity runs (another
pod's Services and policies stay out), and a Pod that shows up later wakes the held request,
also when the snapshot itself did not change. Cluster mode (the stand-in API server): a
watched change wakes a held request, so does a watched Pod of the caller's. A hostNetwork
Pod's IP (its node's) proves no identity."""
import json
import os
import socket
import ssl
import struct
import subprocess
import time

import harness
from harness import StraitTest, BIN, free_port, wait_until, log_events, local_get
from test_mesh_directory import MeshDirectoryClusterMode, service, slice_, pod
from test_mesh_identity import make_csr, identity

ID = "spiffe://cluster.local/ns/%s/sa/%s"
MAGIC = b"STRT"


def policy(name, ns, target, frm):
    return {"apiVersion": "strait.dev/v1alpha1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"targetRef": {"kind": "Service", "name": target}, "from": frm}}


def objects(web_eps=(("10.0.0.1", "web-a"),), other_eps=(("10.0.2.1", None),)):
    """web (dual stack, meshed pod), shop/db, other (unsubscribed), client (the calling
    pod's own Service, 10.0.9.9) with a policy; a policy on web; an Ingress to web."""
    return [
        harness.ingress_class(),
        harness.ingress("web", [("web.example", [("/", "Prefix", "web")])]),
        service("web", ["10.96.0.10", "fd00::10"], [{"name": "http", "port": 80}]),
        slice_("web-1", "web", [{"name": "http", "port": 8080}], list(web_eps)),
        pod("web-a", "10.0.0.1", sa="web"),
        service("db", ["10.96.0.20"], [{"name": "pg", "port": 5432}], ns="shop"),
        slice_("db-1", "db", [{"name": "pg", "port": 5432}], [("10.0.1.1", "db-0")], ns="shop"),
        pod("db-0", "10.0.1.1", sa="db", ns="shop"),
        service("other", ["10.96.0.30"], [{"name": "http", "port": 80}]),
        slice_("other-1", "other", [{"name": "http", "port": 80}], list(other_eps)),
        service("client", ["10.96.0.40"], [{"name": "http", "port": 8080}]),
        slice_("client-1", "client", [{"name": "http", "port": 8080}], [("10.0.9.9", "client-0")]),
        pod("client-0", "10.0.9.9", sa="client"),
        policy("client-callers", "default", "client", [{"authenticated": True}]),
        policy("web-callers", "default", "web", [{"unauthenticated": True}]),
    ]


class FeedClient:
    """curl on the feed with the workload leaf of a token (self.port, self.bundle, self.admin:
    the mesh port, the trust bundle file, the controller's admin port)."""

    def get_leaf(self, token, name="leaf"):
        """The leaf of token's identity as the client certificate of the next requests."""
        csr = make_csr(self.s.dir, name)
        st, body = identity(self.port, self.bundle, token, {"csr": csr})
        self.assertEqual(st, 200, body)
        self.cert = os.path.join(self.s.dir, name + ".crt")
        with open(self.cert, "w") as f:
            f.write(body["certificate"])
        self.key = os.path.join(self.s.dir, name + ".key")
        self.n = getattr(self, "n", 0)

    def curl_args(self, body, cert=True, max_time=40):
        self.n += 1
        out = os.path.join(self.s.dir, "answer-%d" % self.n)
        args = ["curl", "-sS", "--max-time", str(max_time), "-o", out,
                "-D", out + ".head", "-w", "%{http_code}", "--cacert", self.bundle,
                "--resolve", "localhost:%d:127.0.0.1" % self.port,
                "-H", "Content-Type: application/json", "--data-binary", json.dumps(body),
                "https://localhost:%d/v1/discovery" % self.port]
        if cert:
            args += ["--cert", self.cert, "--key", self.key]
        return args, out

    @staticmethod
    def result(p_stdout, out):
        """(status, {header: value} lower case, body bytes, answer file) of a finished curl."""
        heads = {}
        if os.path.exists(out + ".head"):
            for line in open(out + ".head", encoding="latin-1").read().splitlines()[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    heads[k.strip().lower()] = v.strip()
        data = open(out, "rb").read() if os.path.exists(out) else b""
        return int(p_stdout or 0), heads, data, out

    def feed(self, body, cert=True, max_time=40):
        args, out = self.curl_args(body, cert, max_time)
        p = subprocess.run(args, capture_output=True, text=True)
        return self.result(p.stdout, out)

    def feed_async(self, body):
        args, out = self.curl_args(body)
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True), out

    def decode(self, path):
        p = subprocess.run([os.path.join(BIN, "strait-controller"), "snapshot-dump", path],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def metric(self, name):
        m = local_get(self.admin, "/metrics")[1].decode()
        for line in m.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def generation(self):
        """The generation of the controller's current snapshot."""
        return harness.find_key(json.loads(local_get(self.admin, "/snapshot")[1]), "generation")

    @staticmethod
    def own(snap):
        """(Service names, policy names) of an answer."""
        return (sorted({m["name"] for m in snap["mesh_services"]}),
                sorted(a["source"] for a in snap["authz"]))

    def held_answer(self, keys, version, change):
        """Holds keys at version, calls change(), returns (new version, decoded answer)."""
        p, out = self.feed_async(dict(keys, version=version, wait=30))
        wait_until(lambda: self.metric("strait_mesh_feed_waiting") == 1, 5, what="held")
        change()
        stdout, _ = p.communicate(timeout=35)
        st, heads, data, out = self.result(stdout, out)
        self.assertEqual(st, 200, data)
        self.assertNotEqual(heads["x-strait-version"], version)
        return heads["x-strait-version"], self.decode(out)

    def ok(self, body):
        st, heads, data, out = self.feed(body)
        self.assertEqual(st, 200, data)
        self.assertEqual(heads.get("content-type"), "application/vnd.strait.snapshot")
        self.assertRegex(heads.get("x-strait-version", ""), r"^[0-9a-f]{16}$")
        self.assertEqual(data[:4], MAGIC)
        return heads["x-strait-version"], self.decode(out)


class MeshFeedController(FeedClient, StraitTest):
    def setUp(self):
        super().setUp()
        d = self.s.dir
        self.tokens = os.path.join(d, "tokens")
        with open(self.tokens, "w") as f:
            f.write("tok-client default client\ntok-web default web\n")
        self.bundle = os.path.join(d, "bundle.pem")
        self.port = free_port()
        self.admin = free_port()
        self.s.write("mesh.yaml", *objects())
        self.s.controller("--mesh", "--mesh-token-file", self.tokens,
                          "--mesh-listen", "127.0.0.1:%d" % self.port,
                          "--mesh-trust-bundle-out", self.bundle,
                          "--admin", "127.0.0.1:%d" % self.admin)
        wait_until(lambda: os.path.exists(self.bundle), 10, what="trust bundle file")
        self.get_leaf("tok-client")

    def test_auth_and_subset(self):
        keys = {"version": "", "addresses": ["10.0.9.9"],
                "services": ["[fd00:0::10]:80", "shop/db", "10.96.0.99:80"]}
        # no client certificate: 403 (the identity endpoint still works without one)
        st, _, data, _ = self.feed(keys, cert=False)
        self.assertEqual(st, 403, data)
        self.assertIn(b"error", data)
        # malformed bodies and limits: 400
        for bad in ({"services": ["nope"]}, {"services": "10.96.0.10:80"},
                    {"services": ["localhost:80"]}, {"services": ["10.96.0.10:0"]},
                    {"addresses": ["10.0.0"]}, {"wait": 301}, {"wait": "5"},
                    {"services": ["10.0.0.%d:80" % (i % 250) for i in range(1025)]},
                    {"addresses": ["10.0.0.%d" % i for i in range(17)]}):
            st, _, data, _ = self.feed(bad)
            self.assertEqual(st, 400, (bad, data))
        st, _, data, _ = self.feed({"services": ["shop/db", "bad key!"]})
        self.assertIn(b"bad key!", data)
        # the subset
        version, snap = self.ok(keys)
        svcs = sorted((m["namespace"], m["name"], m["address"], m["port"])
                      for m in snap["mesh_services"])
        self.assertEqual(svcs, [("default", "client", "10.96.0.40", 8080),
                                ("default", "web", "fd00::10", 80),
                                ("shop", "db", "10.96.0.20", 5432)])
        clusters = {c["name"]: c["endpoints"] for c in snap["clusters"]}
        self.assertEqual(clusters, {"default/client:8080": ["10.0.9.9:8080"],
                                    "default/web:80": ["10.0.0.1:8080"],
                                    "shop/db:5432": ["10.0.1.1:5432"]})
        for m in snap["mesh_services"]:
            self.assertIn(m["cluster"], clusters)
        web = [m for m in snap["mesh_services"] if m["name"] == "web"][0]
        self.assertEqual(web["identities"], [ID % ("default", "web")])
        self.assertEqual([(a["name"], a["source"]) for a in snap["authz"]],
                         [("client", "default/client-callers")])
        for k in ("vhosts", "routes", "listeners", "certs", "tls_hosts"):
            self.assertFalse(snap.get(k), k)
        self.assertEqual(snap["trust_domain"], "cluster.local")
        # the full snapshot had the route, the other Services and the web policy
        full = json.loads(local_get(self.admin, "/snapshot")[1])
        self.assertTrue(full["vhosts"])
        self.assertEqual(len(full["mesh_services"]), 5)
        self.assertEqual(len(full["authz"]), 2)
        # the same keys spelled otherwise, duplicated, reordered: the same version
        v2, _ = self.ok({"addresses": ["10.0.9.9", "10.0.9.9"],
                         "services": ["shop/db", "10.96.0.99:80", "[fd00::10]:80", "shop/db"]})
        self.assertEqual(v2, version)
        # a key that is no Service changes the version (the subset itself does not change)
        v3, snap3 = self.ok(dict(keys, services=keys["services"] + ["10.96.0.98:80"]))
        self.assertNotEqual(v3, version)
        self.assertEqual(len(snap3["mesh_services"]), 3)
        # an empty query: an empty, valid snapshot
        v4, snap4 = self.ok({})
        self.assertEqual(snap4["mesh_services"], [])
        self.assertEqual(snap4["clusters"], [])
        # wait 0 with the current version: answered at once
        t0 = time.monotonic()
        st, _, _, _ = self.feed(dict(keys, version=version, wait=0))
        self.assertEqual(st, 200)
        self.assertLess(time.monotonic() - t0, 1.5)
        m = local_get(self.admin, "/metrics")[1].decode()
        self.assertIn('strait_mesh_feed_requests_total{code="403"} 1', m)
        self.assertIn('strait_mesh_feed_requests_total{code="400"} 10', m)
        self.assertIn('strait_mesh_feed_requests_total{code="200"} 5', m)
        self.assertIn("strait_mesh_feed_waiting 0", m)
        lines = log_events(self.s.controller_log(), "mesh_feed")
        self.assertTrue(any(ln.get("identity") == ID % ("default", "client") and
                            ln.get("status") == "200" and ln.get("services") == "3"
                            for ln in lines), lines[-3:])

    def test_claimed_addresses_must_be_the_callers(self):
        # identity default/client claims web-a's IP (web-a runs as sa web): not its Services
        _, snap = self.ok({"addresses": ["10.0.0.1"]})
        self.assertEqual(self.own(snap), ([], []))
        self.assertEqual(self.metric("strait_mesh_feed_addresses_rejected_total"), 1)
        lines = log_events(self.s.controller_log(), "mesh_feed_addresses_rejected")
        self.assertEqual([(ln.get("identity"), ln.get("addresses")) for ln in lines],
                         [(ID % ("default", "client"), "10.0.0.1")])
        # with its own IP (also spelled as IPv4-mapped IPv6): its own Service and policy only
        for mine in ("10.0.9.9", "::ffff:10.0.9.9"):
            _, snap = self.ok({"addresses": ["10.0.0.1", mine, "10.0.1.1"]})
            self.assertEqual(self.own(snap), (["client"], ["default/client-callers"]))
        self.assertEqual(self.metric("strait_mesh_feed_addresses_rejected_total"), 5)
        # the pod running as web gets web's
        self.get_leaf("tok-web", "web")
        _, snap = self.ok({"addresses": ["10.0.0.1", "10.0.9.9"]})
        self.assertEqual(self.own(snap), (["web"], ["default/web-callers"]))
        self.assertEqual(self.metric("strait_mesh_feed_addresses_rejected_total"), 6)

    def test_pod_added_later_wakes_held(self):
        late = [service("late", ["10.96.0.50"], [{"name": "http", "port": 80}]),
                slice_("late-1", "late", [{"name": "http", "port": 8080}],
                       [("10.0.9.50", "late-0")])]
        self.s.write("late.yaml", *late)
        wait_until(lambda: len(json.loads(local_get(self.admin, "/snapshot")[1])
                               ["mesh_services"]) == 6, 10, what="Service late")
        # late-0's IP is not a known pod's yet: not the caller's
        keys = {"addresses": ["10.0.9.9", "10.0.9.50", "10.0.9.51"]}
        version, snap = self.ok(keys)
        self.assertEqual(self.own(snap), (["client"], ["default/client-callers"]))
        # the Pod shows up (as the caller's account): the held request gets late
        version, snap = self.held_answer(keys, version, lambda: self.s.write(
            "late.yaml", *late, pod("late-0", "10.0.9.50", sa="client")))
        self.assertEqual(self.own(snap), (["client", "late"], ["default/client-callers"]))
        generation = self.generation()
        # a pod behind no Service changes no snapshot, but its IP is the caller's now
        version, snap = self.held_answer(keys, version, lambda: self.s.write(
            "late.yaml", *late, pod("late-0", "10.0.9.50", sa="client"),
            pod("late-1", "10.0.9.51", sa="client")))
        self.assertEqual(self.own(snap), (["client", "late"], ["default/client-callers"]))
        self.assertEqual(self.generation(), generation)
        # nothing left to wake it: held until the wait ends
        st, _, _, _ = self.feed(dict(keys, version=version, wait=1))
        self.assertEqual(st, 204)

    def test_host_network_pod_ip_proves_nobody(self):
        # a hostNetwork Pod running as the caller's account: its IP is the node's, so claiming
        # it gets nothing (any pod on the node could claim it); the same Pod on its own network
        # makes the IP the caller's
        def agent(host_network):
            p = pod("agent-0", "10.0.9.60", sa="client")
            p["spec"]["hostNetwork"] = host_network
            return [service("agent", ["10.96.0.60"], [{"name": "http", "port": 80}]),
                    slice_("agent-1", "agent", [{"name": "http", "port": 8080}],
                           [("10.0.9.60", "agent-0")]), p]
        self.s.write("agent.yaml", *agent(True))
        wait_until(lambda: len(json.loads(local_get(self.admin, "/snapshot")[1])
                               ["mesh_services"]) == 6, 10, what="Service agent")
        keys = {"addresses": ["10.0.9.9", "10.0.9.60"]}
        version, snap = self.ok(keys)
        self.assertEqual(self.own(snap), (["client"], ["default/client-callers"]))
        self.assertEqual(self.metric("strait_mesh_feed_addresses_rejected_total"), 1)
        version, snap = self.held_answer(keys, version,
                                         lambda: self.s.write("agent.yaml", *agent(False)))
        self.assertEqual(self.own(snap), (["agent", "client"], ["default/client-callers"]))

    def test_long_poll(self):
        keys = {"addresses": ["10.0.9.9"], "services": ["10.96.0.10:80"]}
        version, _ = self.ok(keys)
        # unchanged: held for the wait, then 204
        t0 = time.monotonic()
        st, heads, data, _ = self.feed(dict(keys, version=version, wait=2))
        dt = time.monotonic() - t0
        self.assertEqual(st, 204, data)
        self.assertEqual(data, b"")
        self.assertGreater(dt, 1.8)
        self.assertLess(dt, 4.0)
        # a change to an unsubscribed Service does not wake it
        p, out = self.feed_async(dict(keys, version=version, wait=3))
        wait_until(lambda: self.metric("strait_mesh_feed_waiting") == 1, 5, what="held")
        self.s.write("mesh.yaml", *objects(other_eps=(("10.0.2.1", None), ("10.0.2.2", None))))
        stdout, _ = p.communicate(timeout=10)
        st, _, _, _ = self.result(stdout, out)
        self.assertEqual(st, 204)
        full = json.loads(local_get(self.admin, "/snapshot")[1])
        eps = {c["name"]: c["endpoints"] for c in full["clusters"]}
        self.assertEqual(eps["default/other:80"], ["10.0.2.1:80", "10.0.2.2:80"])
        # a change to a subscribed one (its EndpointSlice): answered at once, new version
        p, out = self.feed_async(dict(keys, version=version, wait=30))
        wait_until(lambda: self.metric("strait_mesh_feed_waiting") == 1, 5, what="held")
        t0 = time.monotonic()
        self.s.write("mesh.yaml", *objects(web_eps=(("10.0.0.1", "web-a"), ("10.0.0.2", None))))
        stdout, _ = p.communicate(timeout=35)
        dt = time.monotonic() - t0
        st, heads, data, out = self.result(stdout, out)
        self.assertEqual(st, 200, data)
        self.assertLess(dt, 10)
        self.assertNotEqual(heads["x-strait-version"], version)
        snap = self.decode(out)
        eps = {c["name"]: c["endpoints"] for c in snap["clusters"]}
        self.assertEqual(eps["default/web:80"], ["10.0.0.1:8080", "10.0.0.2:8080"])
        self.assertEqual(self.metric("strait_mesh_feed_waiting"), 0)

    def test_client_leaves_held_request(self):
        keys = {"services": ["shop/db"]}
        version, _ = self.ok(keys)
        ctx = ssl.create_default_context(cafile=self.bundle)
        ctx.load_cert_chain(self.cert, self.key)
        body = json.dumps(dict(keys, version=version, wait=60)).encode()
        req = (b"POST /v1/discovery HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
               b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
        conns = []
        for _ in range(3):
            raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            c = ctx.wrap_socket(raw, server_hostname="localhost")
            c.sendall(req)
            conns.append(c)
        wait_until(lambda: self.metric("strait_mesh_feed_waiting") == 3, 5, what="3 held")
        # one closes cleanly (close_notify), one just closes the TCP socket, one resets
        try:
            conns[0].unwrap()  # our close_notify; the server closes without waiting to send its own
        except (ssl.SSLError, OSError):
            pass
        conns[0].close()
        conns[1].shutdown(socket.SHUT_RDWR)
        conns[1].close()
        conns[2].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conns[2].close()
        wait_until(lambda: self.metric("strait_mesh_feed_waiting") == 0, 5, what="none held")
        self.assertEqual(len([ln for ln in log_events(self.s.controller_log(), "mesh_feed")
                              if ln.get("status") == "gone"]), 3)
        # the feed still serves
        self.ok(keys)

    def held_conn(self, ctx, req):
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        c = ctx.wrap_socket(raw, server_hostname="localhost")
        c.sendall(req)
        return c

    def test_many_held_do_not_starve_other_routes(self):
        # more held requests than the server's limit of other connections (256)
        keys = {"services": ["shop/db"]}
        version, _ = self.ok(keys)
        ctx = ssl.create_default_context(cafile=self.bundle)
        ctx.load_cert_chain(self.cert, self.key)
        body = json.dumps(dict(keys, version=version, wait=60)).encode()
        req = (b"POST /v1/discovery HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n"
               % len(body)) + body
        conns = []
        try:
            for i in range(300):
                conns.append(self.held_conn(ctx, req))
                if i % 50 == 49:  # let the controller keep up (its accept backlog)
                    wait_until(lambda: self.metric("strait_mesh_feed_waiting") == i + 1, 10,
                               what="%d held" % (i + 1))
            wait_until(lambda: self.metric("strait_mesh_feed_waiting") == 300, 10, what="300 held")
            # the identity endpoint and the feed's non-held answers still get through
            st, body2 = identity(self.port, self.bundle, "tok-client",
                                 {"csr": make_csr(self.s.dir, "again")})
            self.assertEqual(st, 200, body2)
            self.ok(keys)
        finally:
            for c in conns:
                c.close()
        wait_until(lambda: self.metric("strait_mesh_feed_waiting") == 0, 10, what="none held")

    def test_stop_answers_held(self):
        keys = {"services": ["shop/db"]}
        version, _ = self.ok(keys)
        p, out = self.feed_async(dict(keys, version=version, wait=60))
        wait_until(lambda: self.metric("strait_mesh_feed_waiting") == 1, 5, what="held")
        self.s.ctl.stop()
        stdout, _ = p.communicate(timeout=10)
        st, _, data, _ = self.result(stdout, out)
        self.assertEqual(st, 503, data)


class MeshFeedClusterMode(FeedClient, StraitTest):
    """On the stand-in API server: the leaf from a TokenReview, the objects listed and
    watched; a watched EndpointSlice change wakes a held request."""
    COLL = MeshDirectoryClusterMode.COLL

    def test_watched_change_wakes_held(self):
        put = MeshDirectoryClusterMode.put
        self.api = self.s.apiserver(args=["--sa-token", "sa-client=default/client"])
        for obj in objects():
            # the stand-in knows the namespace default only
            if obj["kind"] in self.COLL and obj["metadata"]["namespace"] == "default":
                put(self, obj)
        self.port = free_port()
        self.bundle = os.path.join(self.s.dir, "bundle.pem")
        self.s.cluster_controller("--mesh", "--mesh-listen", "127.0.0.1:%d" % self.port,
                                  "--mesh-trust-bundle-out", self.bundle,
                                  kubeconfig=self.api.kubeconfig)
        self.admin = self.s.ctl_health_port
        wait_until(lambda: os.path.exists(self.bundle), 20, what="trust bundle file")
        self.get_leaf("sa-client")
        keys = {"addresses": ["10.0.9.9"], "services": ["[fd00::10]:80"]}
        version, snap = self.ok(keys)
        self.assertEqual(sorted(m["name"] for m in snap["mesh_services"]), ["client", "web"])
        p, out = self.feed_async(dict(keys, version=version, wait=30))
        wait_until(lambda: self.metric("strait_mesh_feed_waiting") == 1, 10, what="held")
        t0 = time.monotonic()
        put(self, slice_("web-1", "web", [{"name": "http", "port": 8080}],
                         [("10.0.0.1", "web-a"), ("10.0.0.3", None)]), method="PUT")
        stdout, _ = p.communicate(timeout=35)
        st, heads, data, out = self.result(stdout, out)
        self.assertEqual(st, 200, data)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertNotEqual(heads["x-strait-version"], version)
        eps = {c["name"]: c["endpoints"] for c in self.decode(out)["clusters"]}
        self.assertEqual(eps["default/web:80"], ["10.0.0.1:8080", "10.0.0.3:8080"])
        # a watched Pod of the caller's account at an IP it claimed: answered, the
        # snapshot unchanged (the pod backs no Service)
        keys = dict(keys, addresses=["10.0.9.9", "10.0.9.77"])
        version, snap = self.ok(keys)
        generation = self.generation()
        version, snap = self.held_answer(keys, version, lambda: put(
            self, pod("client-1", "10.0.9.77", sa="client")))
        self.assertEqual(self.own(snap), (["client", "web"], []))
        self.assertEqual(self.generation(), generation)
        self.assertEqual(self.metric("strait_mesh_feed_addresses_rejected_total"), 2)
