"""Leader election, Ingress status and Kubernetes Events, end to end: two strait-controller
replicas in cluster mode on the stand-in API server (tests/kube-apiserver), each feeding its
own data plane. Exactly one holds the Lease; it alone writes Ingress status and Events.
Killing it (SIGKILL) hands the Lease over once it expires; SIGTERM releases it, so the other
replica takes over at its next try.

Election timings are shortened with the --election-* flags (lease 3 s, renew deadline 2 s,
retry 0.5 s) so the tests run in seconds; the logic is the same as with client-go's 15/10/2.
Every wait polls a condition (harness.wait_until); nothing sleeps to synchronise. To show
that a rebuild wrote nothing, a test waits for the rebuild to be visible in the replica's
metrics and then for two Lease renewals that the same replica sent later (the request log
is in arrival order), so a write started by that rebuild would have arrived before them.
"""
import os
import signal
import time
import urllib.error
import urllib.request

import harness
from harness import Proc, StraitTest, wait_until

NET = "/apis/networking.k8s.io/v1"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
LEASE = LEASES + "/strait-controller"
EVENTS = "/api/v1/namespaces/default/events"
LEASE_S, RENEW_S, RETRY_S = 3, 2, 0.5
ELECTION = ["--election-namespace", "default", "--election-lease-duration", str(LEASE_S),
            "--election-renew-deadline", str(RENEW_S), "--election-retry-period", str(RETRY_S)]
PUBLISH = ["--publish-status-address", "203.0.113.7,LB.example.com"]
WANT_LB = [{"hostname": "lb.example.com"}, {"ip": "203.0.113.7"}]


class Replica:
    """One controller replica: its own socket, --health port, data plane and identity."""

    def __init__(self, test, name, extra):
        s = test.s
        self.name = name
        self.sock = os.path.join(s.dir, name[-1] + ".sock")  # sun_path is short
        self.health = harness.free_port()
        self.proc = Proc(name, [os.path.join(harness.BIN, "strait-controller"),
                                "--kubeconfig", test.api.kubeconfig, "--socket", self.sock,
                                "--health", "127.0.0.1:%d" % self.health, "--log-level", "debug",
                                "--election-identity", name] + ELECTION + list(extra),
                         s.dir, strait=True)
        s.procs.append(self.proc)

    def get(self, path):
        """(status, body) from its --health listener; (0, b"") when it does not answer."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open("http://127.0.0.1:%d%s" % (self.health, path),
                             timeout=5 * harness.SLOW) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError:
            return 0, b""

    def metrics(self):
        code, body = self.get("/metrics")
        if code != 200:
            return {}
        values, _, problems = harness.parse_metrics(body.decode())
        assert not problems, problems
        return values

    def metric(self, name):
        return self.metrics().get(name, 0)

    def log(self):
        return self.proc.stderr()

    def kill9(self):
        """SIGKILL: no chance to release anything (a crashed pod)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.p.wait()
        self.proc.stopped = True
        self.proc._out.close()
        self.proc._err.close()


class LeaderTest(StraitTest):
    def setUp(self):
        super().setUp()
        self.api = self.s.apiserver()

    def create(self, path, obj):
        code, body = self.api.request("POST", path, obj)
        self.assertEqual(code, 201, "create %s: %s %r" % (path, code, body))
        return body

    def base_objects(self, port):
        self.create("/api/v1/namespaces/default/services", harness.service("web"))
        self.create("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
                    harness.endpoint_slice("web-1", "web", port))
        self.create(NET + "/namespaces/default/ingresses",
                    harness.ingress("app", [("app.example.com", [("/", "Prefix", "web")])]))

    def replicas(self, extra=(), n=2, dataplanes=True):
        reps = [Replica(self, "replica-%c" % chr(ord("a") + i), extra) for i in range(n)]
        for r in reps:
            wait_until(lambda: not r.proc.alive() or r.get("/readyz")[0] == 200, 20,
                       what="%s ready" % r.name)
            self.assertTrue(r.proc.alive(), "%s exited" % r.name)
            if dataplanes:
                self.s.dataplane(socket_path=r.sock, name="dataplane-" + r.name)
                # every replica serves its own data plane, leader or not
                self.s.wait_backend("app.example.com", "/", "web")
        return reps

    def lease(self):
        code, obj = self.api.request("GET", LEASE)
        return obj if code == 200 else None

    def holder(self):
        obj = self.lease()
        return obj["spec"].get("holderIdentity") if obj else None

    def wait_leader(self, reps, timeout=10, exclude=()):
        """Waits for one replica to hold the Lease and say so in its metrics, the others not;
        returns (leader, the others)."""
        def one():
            h = self.holder()
            live = [r for r in reps if r not in exclude]
            lead = [r for r in live if r.metric("strait_controller_leader") == 1]
            if len(lead) == 1 and lead[0].name == h:
                return lead[0]
            return None
        leader = wait_until(one, timeout, what="exactly one leader")
        return leader, [r for r in reps if r is not leader and r not in exclude]

    def requests(self, pred):
        """The controllers' requests (not the test's own) that pred accepts, oldest first."""
        return [r for r in self.api.control("GET", "requests")["items"]
                if r["user_agent"] == "strait-controller" and pred(r)]

    def renewal_barrier(self):
        """Waits for two Lease writes arriving after now: the leader is the only replica that
        writes the Lease, so anything it started before them has arrived too."""
        seen = len(self.requests(lambda r: r["path"] == LEASE and r["method"] == "PATCH"))
        wait_until(lambda: len(self.requests(lambda r: r["path"] == LEASE and
                                             r["method"] == "PATCH")) >= seen + 2, 10,
                   what="two more Lease renewals")

    def ingress_lb(self, name):
        code, obj = self.api.request("GET", NET + "/namespaces/default/ingresses/" + name)
        self.assertEqual(code, 200)
        return ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []

    def events_about(self, name):
        code, obj = self.api.request("GET", EVENTS)
        self.assertEqual(code, 200)
        return [e for e in obj["items"] if e["involvedObject"].get("name") == name]


class TestLeaderElection(LeaderTest):
    def test_one_leader_then_takeover_after_kill(self):
        """Two replicas: one leader (Lease, metric, log); SIGKILL it and the other takes the
        Lease once it expired, not before, within the lease duration plus one try."""
        self.base_objects(self.s.backend("web"))
        reps = self.replicas()
        leader, (follower,) = self.wait_leader(reps)
        lease = self.lease()
        self.assertEqual(lease["spec"]["leaseDurationSeconds"], LEASE_S)
        self.assertEqual(len(harness.log_events(leader.log(), "leader_acquired")), 1)
        self.assertEqual(harness.log_events(follower.log(), "leader_acquired"), [])
        self.assertEqual(follower.metric("strait_controller_leader"), 0)
        # the follower may have lost the race to create the Lease: it sees the holder at its
        # next try
        seen = wait_until(lambda: harness.log_events(follower.log(), "leader_observed"), 5,
                          what="the follower seeing the leader")
        self.assertEqual(seen[-1]["holder"], leader.name)
        # the leader keeps renewing: renewTime moves, the holder does not
        renewed = lease["spec"]["renewTime"]
        wait_until(lambda: self.lease()["spec"]["renewTime"] != renewed, 5, what="a renewal")
        self.assertEqual(self.holder(), leader.name)
        transitions = self.lease()["spec"].get("leaseTransitions", 0)

        t0 = time.monotonic()
        leader.kill9()
        wait_until(lambda: self.holder() == follower.name and
                   follower.metric("strait_controller_leader") == 1, LEASE_S + 5,
                   what="the follower taking over")
        took = time.monotonic() - t0
        # it waited for the lease to expire (the last renewal may be up to a retry old) ...
        self.assertGreaterEqual(took, LEASE_S - RETRY_S - 0.3, "took over before expiry")
        # ... and no longer than the duration, plus the time to notice the last renewal and
        # one jittered try
        self.assertLessEqual(took, (LEASE_S + 2 * RETRY_S * 2.2 + 1.0) * harness.SLOW)
        self.assertEqual(self.lease()["spec"]["leaseTransitions"], transitions + 1)
        self.assertEqual(follower.metric("strait_controller_leader_transitions_total"), 1)
        # the survivor still serves its own data plane
        self.s.wait_backend("app.example.com", "/", "web")

    def test_sigterm_releases_the_lease(self):
        """SIGTERM on the leader: it writes the Lease with no holder before it exits 0, and
        the other replica takes over at its next try, long before the lease would expire."""
        self.base_objects(self.s.backend("web"))
        # a long lease: a takeover in much less than it shows the release worked
        extra = ["--election-lease-duration", "10", "--election-renew-deadline", "5"]
        reps = self.replicas(extra=extra, dataplanes=False)
        leader, (follower,) = self.wait_leader(reps)
        transitions = self.lease()["spec"].get("leaseTransitions", 0)
        t0 = time.monotonic()
        problems = leader.proc.stop()
        self.assertEqual(problems, [])
        released = harness.log_events(leader.log(), "leader_released")
        self.assertEqual(len(released), 1, leader.log()[-2000:])
        wait_until(lambda: self.holder() == follower.name, 5, what="the follower taking over")
        took = time.monotonic() - t0
        self.assertLess(took, 5 * harness.SLOW)
        # in less than the 10 s lease: what the follower read was the released record (no
        # holder), not an expired one
        seen = [kv["holder"] for kv in harness.log_events(follower.log(), "leader_observed")]
        self.assertEqual(seen[-1], follower.name)
        self.assertEqual(self.lease()["spec"]["leaseTransitions"], transitions + 1)
        self.assertEqual(follower.metric("strait_controller_leader"), 1)

    def test_steps_down_when_renewals_fail(self):
        """The API fails every Lease request: the leader stops leading once no renewal
        succeeded for the renew deadline (status and Events stop with it); when the API comes
        back, exactly one replica leads again."""
        self.base_objects(self.s.backend("web"))
        reps = self.replicas(dataplanes=False)
        leader, (follower,) = self.wait_leader(reps)
        self.api.control("POST", "faults", {"status": 500, "count": 100000,
                                            "path_prefix": LEASES})
        t0 = time.monotonic()
        wait_until(lambda: leader.metric("strait_controller_leader") == 0, RENEW_S + 3,
                   what="the leader stepping down")
        took = time.monotonic() - t0
        self.assertGreaterEqual(took, RENEW_S - RETRY_S - 0.3, "stepped down before the deadline")
        lost = harness.log_events(leader.log(), "leader_lost")
        self.assertEqual(lost[-1]["reason"], "renew deadline passed")
        self.assertGreater(leader.metric("strait_controller_leader_renew_failures_total"), 0)
        self.assertEqual(follower.metric("strait_controller_leader"), 0)
        self.api.control("DELETE", "faults")
        self.wait_leader(reps, timeout=LEASE_S + 5)
        # the same Lease all along: created once, then only written
        self.assertEqual(len(self.requests(lambda r: r["path"] == LEASES and
                                           r["method"] == "POST" and r["status"] == 201)), 1)

    def test_lease_created_when_absent_and_flags_checked(self):
        """The first replica creates the Lease (POST); bad election flags exit 2."""
        self.base_objects(self.s.backend("web"))
        (only,) = self.replicas(n=1, dataplanes=False)
        leader, _ = self.wait_leader([only])
        posts = self.requests(lambda r: r["path"] == LEASES and r["method"] == "POST")
        self.assertEqual(len(posts), 1)
        lease = self.lease()
        self.assertEqual(lease["spec"]["holderIdentity"], "replica-a")
        self.assertEqual(lease["spec"].get("leaseTransitions", 0), 0)
        for bad in (["--election-lease-duration", "2", "--election-renew-deadline", "2"],
                    ["--election-retry-period", "0"],
                    ["--publish-service", "nonamespace"]):
            p = Proc("bad", [os.path.join(harness.BIN, "strait-controller"), "--kubeconfig",
                             self.api.kubeconfig, "--socket", os.path.join(self.s.dir, "x.sock")]
                     + bad, self.s.dir)
            rc = p.p.wait(10)
            p.stop()
            self.assertEqual(rc, 2, bad)
        # election flags make no sense in file mode
        p = Proc("bad", [os.path.join(harness.BIN, "strait-controller"), "--manifests",
                         self.s.mdir, "--socket", os.path.join(self.s.dir, "y.sock"),
                         "--election-id", "x"], self.s.dir)
        self.assertEqual(p.p.wait(10), 2)
        p.stop()


class TestIngressStatus(LeaderTest):
    def test_leader_writes_status_once(self):
        """The leader sets status.loadBalancer.ingress on our Ingresses (not on others'); a
        follower writes nothing; a rebuild with the same addresses writes nothing."""
        port = self.s.backend("web")
        self.base_objects(port)
        self.create(NET + "/namespaces/default/ingresses",
                    harness.ingress("other-class", [("o.example.com", [("/", "Prefix", "web")])],
                                    cls="nginx"))
        self.create(NET + "/namespaces/default/ingresses",
                    harness.ingress("broken", [("b.example.com", [("/", "Prefix", "nosuch")])]))
        reps = self.replicas(extra=PUBLISH)
        leader, (follower,) = self.wait_leader(reps)
        wait_until(lambda: sorted(self.ingress_lb("app"), key=str) == WANT_LB, 10,
                   what="app's status")
        self.assertEqual(self.ingress_lb("other-class"), [])
        self.assertEqual(self.ingress_lb("broken"), [])
        status = NET + "/namespaces/default/ingresses/app/status"
        writes = self.requests(lambda r: r["path"] == status and r["method"] in ("PUT", "PATCH"))
        self.assertEqual(len(writes), 1)
        self.assertEqual(writes[0]["content_type"], "application/merge-patch+json")
        self.assertEqual(self.requests(lambda r: "/ingresses/other-class" in r["path"] or
                                       "/ingresses/broken" in r["path"]), [])
        self.assertEqual(leader.metric('strait_controller_status_writes_total{result="ok"}'), 1)
        self.assertEqual(follower.metric('strait_controller_status_writes_total{result="ok"}'), 0)
        self.assertEqual(harness.log_events(follower.log(), "status_updated"), [])
        self.assertEqual(len(harness.log_events(leader.log(), "status_updated")), 1)

        # rebuilds with the same addresses: a new endpoint (snapshot changes) and an unrelated
        # Service (snapshot unchanged); the leader builds both and writes nothing
        self.api.control("DELETE", "requests")
        gen = leader.metric("strait_controller_snapshot_generation")
        self.api.request("PUT", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/"
                         "web-1", harness.endpoint_slice("web-1", "web", port,
                                                         addresses=("127.0.0.1", "127.0.0.2")))
        wait_until(lambda: leader.metric("strait_controller_snapshot_generation") > gen, 10,
                   what="the leader's rebuild")
        reloads = leader.metric("strait_controller_reloads_total")
        self.create("/api/v1/namespaces/default/services", harness.service("unrelated"))
        wait_until(lambda: leader.metric("strait_controller_reloads_total") > reloads, 10,
                   what="another rebuild")
        self.renewal_barrier()
        self.assertEqual(self.requests(lambda r: "/ingresses/" in r["path"]), [])
        self.assertEqual(leader.metric('strait_controller_status_writes_total{result="ok"}'), 1)
        self.assertEqual(leader.metric("strait_controller_status_pending"), 0)

        # a new Ingress of ours gets its status too (one read, one write), the old one nothing
        self.create(NET + "/namespaces/default/ingresses",
                    harness.ingress("app2", [("app2.example.com", [("/", "Prefix", "web")])]))
        wait_until(lambda: sorted(self.ingress_lb("app2"), key=str) == WANT_LB, 10,
                   what="app2's status")
        self.assertEqual(self.requests(lambda r: r["path"] == status), [])

    def test_publish_service_and_takeover(self):
        """--publish-service: the Service's load-balancer addresses (else its ClusterIP); a
        change of them is written again; after a takeover the new leader keeps them."""
        self.base_objects(self.s.backend("web"))
        svc = self.create("/api/v1/namespaces/default/services", harness.service("strait-lb"))
        cluster_ip = svc["spec"]["clusterIP"]
        reps = self.replicas(extra=["--publish-service", "default/strait-lb"], dataplanes=False)
        leader, (follower,) = self.wait_leader(reps)
        wait_until(lambda: self.ingress_lb("app") == [{"ip": cluster_ip}], 10,
                   what="the ClusterIP in app's status")
        # the load balancer gets addresses: they replace the ClusterIP
        svc = self.api.request("GET", "/api/v1/namespaces/default/services/strait-lb")[1]
        svc["status"] = {"loadBalancer": {"ingress": [{"ip": "198.51.100.2"},
                                                      {"ip": "198.51.100.1"}]}}
        code, _ = self.api.request("PUT", "/api/v1/namespaces/default/services/strait-lb/status",
                                   svc)
        self.assertEqual(code, 200)
        want = [{"ip": "198.51.100.1"}, {"ip": "198.51.100.2"}]
        wait_until(lambda: sorted(self.ingress_lb("app"), key=str) == want, 10,
                   what="the load-balancer addresses in app's status")
        self.assertEqual(follower.metric('strait_controller_status_writes_total{result="ok"}'), 0)

        # the leader goes; the new one reads the status once, finds it right, writes nothing
        self.api.control("DELETE", "requests")
        leader.kill9()
        self.wait_leader(reps, timeout=LEASE_S + 5, exclude=(leader,))
        wait_until(lambda: self.requests(lambda r: r["path"] == NET + "/namespaces/default/"
                                         "ingresses/app" and r["method"] == "GET"), 10,
                   what="the new leader reading app's status")
        self.renewal_barrier()
        self.assertEqual(self.requests(lambda r: r["path"].endswith("/app/status")), [])
        self.assertEqual(follower.metric('strait_controller_status_writes_total{result="ok"}'), 0)
        self.assertEqual(sorted(self.ingress_lb("app"), key=str), want)


class TestEvents(LeaderTest):
    def test_ingress_refused_by_the_decoder_gets_an_event(self):
        """An Ingress the decoder refuses (a path without a leading '/') never reaches the
        snapshot builder; it still gets one Warning Event, reason InvalidPath, from the leader,
        and the valid objects keep serving."""
        port = self.s.backend("web")
        self.base_objects(port)
        self.create(NET + "/namespaces/default/ingresses",
                    harness.ingress("badpath", [("bp.example.com", [("nope", "Prefix", "web")])]))
        reps = self.replicas()
        leader, _ = self.wait_leader(reps)
        evs = wait_until(lambda: self.events_about("badpath"), 10, what="an Event on badpath")
        self.assertEqual(len(evs), 1, evs)
        ev = evs[0]
        self.assertEqual(ev["type"], "Warning")
        self.assertEqual(ev["reason"], "InvalidPath")
        self.assertIn("must start with '/'", ev["message"])
        self.assertEqual(ev["involvedObject"]["kind"], "Ingress")
        self.assertEqual(ev["involvedObject"]["name"], "badpath")
        self.assertEqual(ev["involvedObject"]["namespace"], "default")
        st, ing = self.api.request("GET", NET + "/namespaces/default/ingresses/badpath")
        self.assertEqual(ev["involvedObject"]["uid"], ing["metadata"]["uid"])
        rejected = [kv for kv in harness.log_events(leader.log(), "object_rejected")
                    if kv.get("object") == "default/badpath"]
        self.assertEqual(rejected[-1]["reason"], ev["message"])
        # a rebuild for another reason does not repeat it
        gen = leader.metric("strait_controller_snapshot_generation")
        self.api.request("PUT", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/web-1",
                         harness.endpoint_slice("web-1", "web", port,
                                                addresses=("127.0.0.1", "127.0.0.2")))
        wait_until(lambda: leader.metric("strait_controller_snapshot_generation") > gen, 10,
                   what="a rebuild")
        self.renewal_barrier()
        self.assertEqual(len(self.events_about("badpath")), 1)

    def test_rejected_ingress_gets_one_event(self):
        """An Ingress whose Service is missing gets one Warning Event from the leader (reason,
        message = the log line's reason, involvedObject, source), not one per rebuild."""
        port = self.s.backend("web")
        self.base_objects(port)
        self.create(NET + "/namespaces/default/ingresses",
                    harness.ingress("broken", [("b.example.com", [("/", "Prefix", "nosuch")])]))
        reps = self.replicas()
        leader, (follower,) = self.wait_leader(reps)
        evs = wait_until(lambda: self.events_about("broken"), 10, what="an Event on broken")
        self.assertEqual(len(evs), 1)
        ev = evs[0]
        self.assertEqual(ev["type"], "Warning")
        self.assertEqual(ev["reason"], "BackendNotFound")
        self.assertEqual(ev["message"], "service default/nosuch not found")
        self.assertEqual(ev["count"], 1)
        self.assertEqual(ev["involvedObject"]["kind"], "Ingress")
        self.assertEqual(ev["involvedObject"]["namespace"], "default")
        self.assertEqual(ev["involvedObject"]["apiVersion"], "networking.k8s.io/v1")
        # uid and resourceVersion as the API has them: kubectl describe finds Events by uid
        st, ing = self.api.request("GET", NET + "/namespaces/default/ingresses/broken")
        self.assertEqual(st, 200)
        self.assertEqual(ev["involvedObject"]["uid"], ing["metadata"]["uid"])
        self.assertEqual(ev["involvedObject"]["resourceVersion"], ing["metadata"]["resourceVersion"])
        self.assertEqual(ev["source"]["component"], "strait-controller")
        self.assertEqual(ev["reportingInstance"], leader.name)
        self.assertTrue(ev["metadata"]["name"].startswith("broken."))
        self.assertEqual(ev["firstTimestamp"], ev["lastTimestamp"])
        # the message is the text of the log line
        rejected = [kv for kv in harness.log_events(leader.log(), "object_rejected")
                    if kv.get("object") == "default/broken"]
        self.assertEqual(rejected[-1]["reason"], ev["message"])
        self.assertEqual(self.events_about("app"), [])

        # rebuilds (the snapshot changes twice) do not make more Events
        for i in (2, 3):
            gen = leader.metric("strait_controller_snapshot_generation")
            addrs = tuple("127.0.0.%d" % j for j in range(1, i + 1))
            self.api.request("PUT", "/apis/discovery.k8s.io/v1/namespaces/default/"
                             "endpointslices/web-1",
                             harness.endpoint_slice("web-1", "web", port, addresses=addrs))
            wait_until(lambda: leader.metric("strait_controller_snapshot_generation") > gen, 10,
                       what="rebuild %d" % i)
        self.renewal_barrier()
        posts = self.requests(lambda r: r["path"] == EVENTS and r["method"] == "POST")
        self.assertEqual(len(posts), 1)
        self.assertEqual(len(self.events_about("broken")), 1)
        self.assertEqual(self.events_about("broken")[0]["count"], 1)
        self.assertEqual(leader.metric('strait_controller_k8s_events_total{result="created"}'), 1)
        self.assertGreaterEqual(
            leader.metric('strait_controller_k8s_events_total{result="suppressed"}'), 2)
        self.assertEqual(follower.metric('strait_controller_k8s_events_total{result="created"}'),
                         0)

        # another reason on the same Ingress is another Event: the Service appears, without
        # the port the Ingress names
        self.create("/api/v1/namespaces/default/services", harness.service("nosuch", port=81))
        wait_until(lambda: [e for e in self.events_about("broken")
                            if e["reason"] == "PortNotFound"], 10, what="a PortNotFound Event")
        self.assertEqual(len(self.events_about("broken")), 2)
