"""Ingress status and Kubernetes Events through the real HTTP path: strait-controller in
cluster mode on the stand-in API server (tests/kube-apiserver), with faults injected through
its /_control/ API. What test_leader_status_events.py already shows (one leader writes, once;
a follower writes nothing; one Event per rejection; --publish-service's ClusterIP replaced by
the load balancer's addresses; takeover) is not repeated here. This file covers what happens
when the API says no, what the writers do when the publish Service changes or goes, what
stops while the replica does not lead, and the write rate limits.

Timings: the stand-in server's request log records each request's arrival time
(time.time(), one clock), so backoffs, Retry-After and rate limits are checked on the gaps
between requests as the server saw them. A gap can only be longer than the controller's
delay (its timer fires after the answer arrived), so lower bounds are exact up to EPS;
upper bounds are loose (scaled by harness.SLOW). Every wait polls a condition; nothing
sleeps to synchronise. The controller's fixed intervals that would make a test slow are
shortened only where the controller offers it: --election-* flags, and
STRAIT_EVENTS_REPEAT=S (the 10-minute Event repeat interval made S seconds).
"""
import os
import time

import harness
from harness import Proc, wait_until
from test_leader_status_events import (ELECTION, EVENTS, LEASE, LEASE_S, LEASES, NET, PUBLISH,
                                       WANT_LB, LeaderTest, Replica)

ING = NET + "/namespaces/default/ingresses/"
SERVICES = "/api/v1/namespaces/default/services"
EPS = 0.02  # the controller's monotonic clock against the server's wall clock
# controller/status.h and events.h
STATUS_BACKOFF_MIN, STATUS_QPS, STATUS_BURST, STATUS_SERVICE_MIN_GAP = 0.5, 20.0, 100, 1.0
EVENTS_BACKOFF, EVENTS_QPS, EVENTS_BURST = 0.5, 5.0, 25


class EnvReplica(Replica):
    """A Replica (see test_leader_status_events) started with extra environment variables."""

    def __init__(self, test, name, extra, env):  # pylint: disable=super-init-not-called
        s = test.s
        self.name = name
        self.sock = os.path.join(s.dir, name[-1] + ".sock")
        self.health = harness.free_port()
        self.proc = Proc(name, [os.path.join(harness.BIN, "strait-controller"),
                                "--kubeconfig", test.api.kubeconfig, "--socket", self.sock,
                                "--health", "127.0.0.1:%d" % self.health, "--log-level", "debug",
                                "--election-identity", name] + ELECTION + list(extra),
                         s.dir, strait=True, env=env)
        s.procs.append(self.proc)


def gaps(reqs):
    return [b["time"] - a["time"] for a, b in zip(reqs, reqs[1:])]


def check_bucket(test, times, burst, qps, what):
    """The requests at times (sorted) obey a token bucket of burst and qps: no window holds
    more than burst + qps * its length (plus one request for the send → arrival jitter)."""
    for i in range(len(times)):
        for j in range(i + burst, len(times)):
            allowed = burst + qps * (times[j] - times[i]) + 1
            test.assertLessEqual(j - i + 1, allowed, "%s: %d requests in %.3f s" % (
                what, j - i + 1, times[j] - times[i]))


class ApiTest(LeaderTest):
    def one_leader(self, extra=(), env=None):
        """One replica (no data plane) that leads; returns it."""
        if env:
            r = EnvReplica(self, "replica-a", extra, env)
        else:
            r = Replica(self, "replica-a", extra)
        wait_until(lambda: not r.proc.alive() or r.get("/readyz")[0] == 200, 20,
                   what="replica ready")
        self.assertTrue(r.proc.alive(), "the replica exited")
        self.wait_leader([r])
        return r

    def fault(self, status, path_prefix, method, count=1, retry_after=None):
        rule = {"status": status, "count": count, "path_prefix": path_prefix, "method": method}
        if retry_after is not None:
            rule["retry_after"] = retry_after
        self.api.control("POST", "faults", rule)

    def ingress_requests(self, name):
        """The controller's reads and writes of one Ingress (not its list/watch)."""
        return self.requests(lambda r: r["path"] in (ING + name, ING + name + "/status"))

    def status_writes(self, name):
        return self.requests(lambda r: r["path"] == ING + name + "/status")

    def rebuild(self, r, port):
        """Changes web's endpoints (base_objects gave it one address; then 2, 3, 2, ...) and
        waits for r to publish the new snapshot."""
        self.n_addrs = 2 if getattr(self, "n_addrs", 1) != 2 else 3
        gen = r.metric("strait_controller_snapshot_generation")
        addrs = tuple("127.0.0.%d" % i for i in range(1, self.n_addrs + 1))
        code, _ = self.api.request("PUT", "/apis/discovery.k8s.io/v1/namespaces/default/"
                                   "endpointslices/web-1",
                                   harness.endpoint_slice("web-1", "web", port, addresses=addrs))
        self.assertEqual(code, 200)
        wait_until(lambda: r.metric("strait_controller_snapshot_generation") > gen, 10,
                   what="a rebuild")

    def lease_barrier(self, n=2):
        """Waits for n more Lease requests of the controller (renewals while it leads, tries
        while it does not): anything it started before them has arrived too."""
        seen = len(self.requests(lambda r: r["path"] == LEASE))
        wait_until(lambda: len(self.requests(lambda r: r["path"] == LEASE)) >= seen + n, 10,
                   what="%d more Lease requests" % n)


class TestStatusFailures(ApiTest):
    def test_conflict_and_500_are_retried_with_backoff(self):
        """A 409 and then a 500 on app's status write: each is retried after the per-Ingress
        backoff (0.5 s, then 1 s, each +-25 %), reading the status first, until the write
        goes through; another Ingress is written at once, unaffected."""
        self.base_objects(self.s.backend("web"))
        self.create(NET + "/namespaces/default/ingresses",
                    harness.ingress("calm", [("calm.example.com", [("/", "Prefix", "web")])]))
        self.fault(409, ING + "app/status", "PATCH")
        self.fault(500, ING + "app/status", "PATCH")
        r = self.one_leader(PUBLISH)
        wait_until(lambda: sorted(self.ingress_lb("app"), key=str) == WANT_LB, 15,
                   what="app's status, in the end")
        reqs = self.ingress_requests("app")
        self.assertEqual([(q["method"], q["status"]) for q in reqs],
                         [("GET", 200), ("PATCH", 409), ("GET", 200), ("PATCH", 500),
                          ("GET", 200), ("PATCH", 200)])
        g = gaps(reqs)
        self.assertGreaterEqual(g[1], STATUS_BACKOFF_MIN * 0.75 - EPS, "retry after the 409")
        self.assertGreaterEqual(g[3], 2 * STATUS_BACKOFF_MIN * 0.75 - EPS, "retry after the 500")
        self.assertLess(g[1], 3 * harness.SLOW)
        self.assertLess(g[3], 3 * harness.SLOW)
        self.assertEqual(sorted(self.ingress_lb("calm"), key=str), WANT_LB)
        self.assertEqual([(q["method"], q["status"]) for q in self.ingress_requests("calm")],
                         [("GET", 200), ("PATCH", 200)])
        self.assertEqual(r.metric('strait_controller_status_writes_total{result="ok"}'), 2)
        self.assertEqual(r.metric('strait_controller_status_writes_total{result="error"}'), 2)
        failed = [kv for kv in harness.log_events(r.log(), "status_update_failed")
                  if kv["object"] == "default/app"]
        self.assertEqual([(kv["verb"], kv["status"]) for kv in failed],
                         [("patch", "409"), ("patch", "500")])
        self.assertEqual(r.metric("strait_controller_status_pending"), 0)

    def test_429_waits_for_retry_after(self):
        """A 429 with Retry-After: 2 on the status write: the next request for that Ingress
        comes no sooner than 2 s later (its backoff alone would be 0.5 s)."""
        self.base_objects(self.s.backend("web"))
        self.fault(429, ING + "app/status", "PATCH", retry_after=2)
        r = self.one_leader(PUBLISH)
        wait_until(lambda: sorted(self.ingress_lb("app"), key=str) == WANT_LB, 15,
                   what="app's status, in the end")
        reqs = self.ingress_requests("app")
        self.assertEqual([(q["method"], q["status"]) for q in reqs],
                         [("GET", 200), ("PATCH", 429), ("GET", 200), ("PATCH", 200)])
        g = gaps(reqs)
        self.assertGreaterEqual(g[1], 2.0 - EPS, "retried before Retry-After")
        self.assertLess(g[1], 2.0 + 2 * harness.SLOW)
        failed = harness.log_events(r.log(), "status_update_failed")
        self.assertEqual([kv["status"] for kv in failed], ["429"])


class TestPublishService(ApiTest):
    def svc(self, name, cluster_ip):
        obj = harness.service(name)
        obj["spec"]["clusterIP"] = cluster_ip
        return obj

    def set_lb(self, ingress):
        svc = self.api.request("GET", SERVICES + "/strait-lb")[1]
        svc["status"] = {"loadBalancer": {"ingress": ingress} if ingress else {}}
        code, body = self.api.request("PUT", SERVICES + "/strait-lb/status", svc)
        self.assertEqual(code, 200, body)

    def wait_lb(self, want, what):
        want = sorted(want, key=str)
        wait_until(lambda: sorted(self.ingress_lb("app"), key=str) == want, 10, what=what)

    def test_status_follows_the_service(self):
        """--publish-service: app's status follows every change of the Service's addresses
        (load-balancer entries changed, then gone: back to the ClusterIP); while the Service is
        deleted the last addresses stay (no write); recreated with another ClusterIP, the new
        one is written. The Service is read at most once a second however often it changes."""
        port = self.s.backend("web")
        self.base_objects(port)
        self.create(SERVICES, self.svc("strait-lb", "10.96.200.1"))
        r = self.one_leader(["--publish-service", "default/strait-lb"])
        self.wait_lb([{"ip": "10.96.200.1"}], "the ClusterIP")
        self.set_lb([{"ip": "198.51.100.1"}, {"hostname": "lb.example.com"}])
        self.wait_lb([{"ip": "198.51.100.1"}, {"hostname": "lb.example.com"}],
                     "the load balancer's addresses")
        self.set_lb([{"ip": "198.51.100.3"}])
        self.wait_lb([{"ip": "198.51.100.3"}], "the load balancer's new address")
        self.set_lb([])
        self.wait_lb([{"ip": "10.96.200.1"}], "the ClusterIP again")

        # the Service goes: read (404), and the status is left as it is
        writes = len(self.status_writes("app"))
        since = time.time()
        code, _ = self.api.request("DELETE", SERVICES + "/strait-lb")
        self.assertEqual(code, 200)
        wait_until(lambda: self.requests(lambda q: q["path"] == SERVICES + "/strait-lb" and
                                         q["status"] == 404 and q["time"] >= since), 10,
                   what="the controller reading the deleted Service")
        wait_until(lambda: harness.log_events(r.log(), "publish_service_unavailable"), 5,
                   what="publish_service_unavailable")
        self.rebuild(r, port)  # another build: still nothing written
        self.lease_barrier()
        self.assertEqual(len(self.status_writes("app")), writes)
        self.assertEqual(self.ingress_lb("app"), [{"ip": "10.96.200.1"}])
        self.assertEqual(harness.log_events(r.log(), "publish_service_unavailable")[-1]["status"],
                         "404")

        # back, with another ClusterIP
        self.create(SERVICES, self.svc("strait-lb", "10.96.200.2"))
        self.wait_lb([{"ip": "10.96.200.2"}], "the new ClusterIP")
        self.assertEqual(len(self.status_writes("app")), writes + 1)

        reads = self.requests(lambda q: q["path"] == SERVICES + "/strait-lb")
        self.assertGreaterEqual(len(reads), 6)
        self.assertGreaterEqual(min(gaps(reads)), STATUS_SERVICE_MIN_GAP - EPS,
                                "the publish Service read more than once a second")


class TestLeadershipPause(ApiTest):
    def test_nothing_written_while_not_leading(self):
        """The leader steps down (its Lease requests fail): a new Ingress and a new rejection
        get no status and no Event while it does not lead. Once it leads again it reads
        every Ingress's status afresh (what it knew was forgotten), writes only the new one,
        creates the new Event, and does not create a second Event for the old rejection."""
        port = self.s.backend("web")
        self.base_objects(port)
        self.create(NET + "/namespaces/default/ingresses",
                    harness.ingress("broken", [("b.example.com", [("/", "Prefix", "nosuch")])]))
        r = self.one_leader(PUBLISH)
        wait_until(lambda: sorted(self.ingress_lb("app"), key=str) == WANT_LB, 10,
                   what="app's status")
        wait_until(lambda: self.events_about("broken"), 10, what="broken's Event")

        self.api.control("POST", "faults", {"status": 500, "count": 100000,
                                            "path_prefix": LEASES})
        wait_until(lambda: r.metric("strait_controller_leader") == 0, LEASE_S + 3,
                   what="stepping down")
        self.api.control("DELETE", "requests")
        self.create(NET + "/namespaces/default/ingresses",
                    harness.ingress("app2", [("app2.example.com", [("/", "Prefix", "web")])]))
        self.create(NET + "/namespaces/default/ingresses",
                    harness.ingress("broken2", [("b2.example.com", [("/", "Prefix", "nosuch2")])]))
        wait_until(lambda: [kv for kv in harness.log_events(r.log(), "object_rejected")
                            if kv.get("object") == "default/broken2"], 10,
                   what="the build that rejects broken2")
        self.lease_barrier()
        self.assertEqual(self.requests(lambda q: q["path"].startswith(ING) or
                                       q["path"].startswith(EVENTS)), [])
        self.assertEqual(self.ingress_lb("app2"), [])
        self.assertEqual(self.events_about("broken2"), [])

        self.api.control("DELETE", "faults")
        self.wait_leader([r], timeout=LEASE_S + 5)
        wait_until(lambda: sorted(self.ingress_lb("app2"), key=str) == WANT_LB, 10,
                   what="app2's status")
        wait_until(lambda: self.events_about("broken2"), 10, what="broken2's Event")
        wait_until(lambda: [q for q in self.ingress_requests("app") if q["method"] == "GET"], 5,
                   what="app's status read again")
        self.lease_barrier()
        self.assertEqual(self.status_writes("app"), [])
        self.assertEqual([(q["method"], q["status"]) for q in self.ingress_requests("app2")],
                         [("GET", 200), ("PATCH", 200)])
        posts = self.requests(lambda q: q["path"] == EVENTS and q["method"] == "POST")
        self.assertEqual(len(posts), 1)  # broken2's; broken's Event is not made again
        old = self.events_about("broken")
        self.assertEqual(len(old), 1)
        self.assertEqual(old[0]["count"], 1)


class TestEventWrites(ApiTest):
    def test_failing_event_write_is_retried(self):
        """The Event's POST fails with a 500, then a 429 with Retry-After: 3: retried after
        1 s (0.5 s doubled), then after 3 s (longer than the 2 s backoff), then created once."""
        self.base_objects(self.s.backend("web"))
        self.create(NET + "/namespaces/default/ingresses",
                    harness.ingress("broken", [("b.example.com", [("/", "Prefix", "nosuch")])]))
        self.fault(500, EVENTS, "POST")
        self.fault(429, EVENTS, "POST", retry_after=3)
        r = self.one_leader()
        evs = wait_until(lambda: self.events_about("broken"), 15, what="broken's Event")
        posts = self.requests(lambda q: q["path"] == EVENTS and q["method"] == "POST")
        self.assertEqual([q["status"] for q in posts], [500, 429, 201])
        g = gaps(posts)
        self.assertGreaterEqual(g[0], 2 * EVENTS_BACKOFF - EPS, "retry after the 500")
        self.assertGreaterEqual(g[1], 3.0 - EPS, "retry before Retry-After")
        self.assertLess(g[0], 1.0 + 2 * harness.SLOW)
        self.assertLess(g[1], 3.0 + 2 * harness.SLOW)
        self.assertEqual(len(evs), 1)
        self.assertEqual(evs[0]["count"], 1)
        self.assertEqual(r.metric('strait_controller_k8s_events_total{result="created"}'), 1)
        self.assertEqual(r.metric('strait_controller_k8s_events_total{result="error"}'), 2)
        failed = harness.log_events(r.log(), "event_write_failed")
        self.assertEqual([(kv["verb"], kv["status"]) for kv in failed],
                         [("create", "500"), ("create", "429")])

    def rebuild_until(self, r, port, pred, what, timeout=15):
        """Rebuilds (alternating web's endpoints) until pred() holds; returns its value."""
        deadline = time.monotonic() + timeout * harness.SLOW
        while True:
            v = pred()
            if v:
                return v
            self.assertLess(time.monotonic(), deadline, "no %s after rebuilds" % what)
            self.rebuild(r, port)

    def test_repeat_bumps_count_and_recreates_an_expired_event(self):
        """With the repeat interval at 1 s: rebuilds within it write nothing; the first one
        after it bumps count and lastTimestamp (PATCH); once the Event is gone from the API
        (it expired) the next bump gets a 404 and creates a new Event carrying the count
        and firstTimestamp on."""
        port = self.s.backend("web")
        self.base_objects(port)
        self.create(NET + "/namespaces/default/ingresses",
                    harness.ingress("broken", [("b.example.com", [("/", "Prefix", "nosuch")])]))
        r = self.one_leader(env={"STRAIT_EVENTS_REPEAT": "1"})
        (first,) = wait_until(lambda: self.events_about("broken"), 10, what="broken's Event")
        name = first["metadata"]["name"]
        path = EVENTS + "/" + name

        patches = self.rebuild_until(
            r, port, lambda: self.requests(lambda q: q["path"] == path), "count bump")
        (post,) = self.requests(lambda q: q["path"] == EVENTS and q["method"] == "POST")
        self.assertEqual([(q["method"], q["status"]) for q in patches], [("PATCH", 200)])
        self.assertEqual(patches[0]["content_type"], "application/merge-patch+json")
        self.assertGreaterEqual(patches[0]["time"] - post["time"], 1.0 - EPS,
                                "bumped within the repeat interval")
        self.assertGreaterEqual(
            r.metric('strait_controller_k8s_events_total{result="suppressed"}'), 1)
        (bumped,) = self.events_about("broken")
        self.assertEqual(bumped["metadata"]["name"], name)
        self.assertEqual(bumped["count"], 2)
        self.assertEqual(bumped["firstTimestamp"], first["firstTimestamp"])
        self.assertGreater(bumped["lastTimestamp"], first["lastTimestamp"])

        code, _ = self.api.request("DELETE", path)
        self.assertEqual(code, 200)
        posts = self.rebuild_until(
            r, port, lambda: self.requests(lambda q: q["path"] == EVENTS and
                                           q["method"] == "POST" and q["time"] > post["time"]),
            "new Event")
        self.assertEqual([q["status"] for q in posts], [201])
        self.assertEqual([(q["method"], q["status"]) for q in
                          self.requests(lambda q: q["path"] == path)],
                         [("PATCH", 200), ("PATCH", 404)])
        (again,) = self.events_about("broken")
        self.assertNotEqual(again["metadata"]["name"], name)
        self.assertEqual(again["count"], 3)
        self.assertEqual(again["firstTimestamp"], first["firstTimestamp"])
        self.assertEqual(r.metric('strait_controller_k8s_events_total{result="created"}'), 2)
        self.assertEqual(r.metric('strait_controller_k8s_events_total{result="updated"}'), 1)


class TestRateLimits(ApiTest):
    def test_writes_are_spread_out(self):
        """80 Ingresses whose status is wrong (a read and a write each) and 35 rejected ones
        at once: status requests come in a burst of 100, then 20 a second; Event writes in a
        burst of 25, then 5 a second. Everything is written in the end."""
        port = self.s.backend("web")
        objs = [harness.service("web"), harness.endpoint_slice("web-1", "web", port)]
        objs += [harness.ingress("ok-%02d" % i, [("ok%d.example.com" % i,
                                                  [("/", "Prefix", "web")])]) for i in range(80)]
        objs += [harness.ingress("bad-%02d" % i, [("bad%d.example.com" % i,
                                                   [("/", "Prefix", "nosuch")])])
                 for i in range(35)]
        self.assertEqual(self.api.control("POST", "objects", {"items": objs})["created"],
                         len(objs))
        r = self.one_leader(PUBLISH)
        wait_until(lambda: r.metric('strait_controller_status_writes_total{result="ok"}') == 80,
                   20, what="80 status writes")
        wait_until(lambda: r.metric('strait_controller_k8s_events_total{result="created"}') == 35,
                   20, what="35 Events")

        status = sorted(q["time"] for q in self.requests(lambda q: q["path"].startswith(ING)))
        self.assertEqual(len(status), 160)
        check_bucket(self, status, STATUS_BURST, STATUS_QPS, "status requests")
        self.assertGreaterEqual(status[-1] - status[0],
                                (160 - STATUS_BURST) / STATUS_QPS - 0.5, "status all at once")

        posts = sorted(q["time"] for q in self.requests(lambda q: q["path"] == EVENTS and
                                                         q["method"] == "POST"))
        self.assertEqual(len(posts), 35)
        check_bucket(self, posts, EVENTS_BURST, EVENTS_QPS, "Event writes")
        self.assertGreaterEqual(posts[-1] - posts[0], (35 - EVENTS_BURST) / EVENTS_QPS - 0.5,
                                "Events all at once")
        self.assertEqual(r.metric('strait_controller_status_writes_total{result="error"}'), 0)
        self.assertEqual(r.metric('strait_controller_k8s_events_total{result="error"}'), 0)
        self.assertEqual(r.metric("strait_controller_status_pending"), 0)
