"""Gateway CRD end to end in file mode: matches, precedence, weighted splits, filters
(header modifiers, redirect, rewrite, mirror), timeouts, retries, and an invalid Gateway
rejected while the valid ones serve. Real controller, real data plane, curl and
tools/backend.py on loopback."""
import http.client
import json
import os
import sys
import threading
import time

import harness as h


def gateway(name, routes, listeners=None, ns="default", created=None):
    meta = {"name": name, "namespace": ns}
    if created:
        meta["creationTimestamp"] = created
    return {"apiVersion": "strait.dev/v1alpha1", "kind": "Gateway", "metadata": meta,
            "spec": {"listeners": listeners or [{"name": "http", "port": 80,
                                                 "protocol": "HTTP"}],
                     "routes": routes}}


def route(hostnames, *rules, name="r", listener_names=None):
    r = {"name": name, "rules": list(rules)}
    if hostnames:
        r["hostnames"] = list(hostnames)
    if listener_names:
        r["listenerNames"] = list(listener_names)
    return r


def rule(*backends, matches=None, filters=None, timeouts=None, retry=None):
    r = {}
    if matches is not None:
        r["matches"] = matches
    if filters:
        r["filters"] = filters
    if backends:
        r["backendRefs"] = [b if isinstance(b, dict) else {"name": b, "port": 80}
                            for b in backends]
    if timeouts:
        r["timeouts"] = timeouts
    if retry:
        r["retry"] = retry
    return r


def weighted(name, weight):
    return {"name": name, "port": 80, "weight": weight}


class GatewayTest(h.StraitTest):
    def extra_backend(self, name, *args):
        """A tools/backend.py with extra flags (--status, --record); returns its port."""
        port = h.free_port()
        self.s.procs.append(h.Proc("backend-" + name, [
            sys.executable, h.BACKEND_PY, "--name", name, "--port", str(port)] + list(args),
            self.s.dir))
        h.wait_until(lambda: h.port_accepts(port), 10, what="backend %s" % name)
        return port

    def keepalive_get(self, host, path, n, headers=None):
        """n GETs over one persistent connection; returns the list of (status, X-Backend)."""
        out = []
        conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=10 * h.SLOW)
        hdrs = {"Host": host}
        hdrs.update(headers or {})
        try:
            for _ in range(n):
                conn.request("GET", path, headers=hdrs)
                resp = conn.getresponse()
                resp.read()
                out.append((resp.status, resp.getheader("X-Backend")))
        finally:
            conn.close()
        return out

    # -- matches and precedence --
    def test_header_method_query_and_regex_routing(self):
        ports = self.s.backends("v1", "v2", "debug", "regex", "exact")
        self.s.write("svc.yaml", *[h.service_with_endpoints(n, p) for n, p in ports.items()])
        self.s.write("gw.yaml", gateway("api", [route(
            ["api.test"],
            rule("v2", matches=[
                {"headers": [{"name": "X-Version", "value": "v2"}]},
                {"path": {"type": "PathPrefix", "value": "/beta"},
                 "headers": [{"type": "RegularExpression", "name": "user-agent",
                              "value": ".*(Chrome|Firefox)/.*"}]}]),
            rule("debug", matches=[{"path": {"type": "Exact", "value": "/status"},
                                    "method": "GET",
                                    "queryParams": [{"name": "verbose", "value": "1"}]}]),
            rule("regex", matches=[{"path": {"type": "RegularExpression",
                                             "value": "/items/[0-9]+"}}]),
            rule("exact", matches=[{"path": {"type": "Exact", "value": "/items/42"}}]),
            rule("v1"))]))
        self.s.start()
        rows = [
            # (path, method, headers, want)
            ("/", None, [], "v1"),
            ("/", None, ["X-Version: v2"], "v2"),
            ("/anything", None, ["x-version: v2"], "v2"),       # header names: any case
            ("/", None, ["X-Version: V2"], "v1"),               # values: exact case
            ("/beta/x", None, ["User-Agent: Mozilla/5.0 Firefox/120.0"], "v2"),
            ("/beta/x", None, ["User-Agent: curl/8"], "v1"),    # ANDed: path alone is not enough
            ("/other", None, ["User-Agent: Mozilla/5.0 Firefox/120.0"], "v1"),
            ("/status?verbose=1", None, [], "debug"),
            ("/status?x=2&verbose=1", None, [], "debug"),
            ("/status?verbose=0&verbose=1", None, [], "v1"),    # the first occurrence counts
            ("/status?verbose=1", "POST", [], "v1"),            # method
            ("/status", None, [], "v1"),
            ("/items/7", None, [], "regex"),
            ("/items/7/x", None, [], "v1"),                     # regex matches the whole path
            ("/items/42", None, [], "exact"),                   # Exact before RegularExpression
        ]
        for path, method, headers, want in rows:
            r = self.s.curl("api.test", path, method=method, headers=headers)
            self.assertEqual((r.status, r.backend), (200, want), "%s %s %s: %r" % (
                method or "GET", path, headers, r))

    def test_precedence_table_ingress_and_gateway(self):
        names = ("ing-old", "gw-new", "gw-prefix-long", "gw-method", "gw-headers", "ing-exact")
        ports = self.s.backends(*names)
        self.s.write("svc.yaml", *[h.service_with_endpoints(n, p) for n, p in ports.items()])
        # the Ingress is older than the Gateway: on the very same match it wins
        self.s.write("ing.yaml", h.ingress(
            "old", created="2020-01-01T00:00:00Z",
            rules=[("mix.test", [("/shared", "Prefix", "ing-old"),
                                 ("/shared/exact", "Exact", "ing-exact")])]))
        self.s.write("gw.yaml", gateway("new", [route(
            ["mix.test"],
            rule("gw-new", matches=[{"path": {"type": "PathPrefix", "value": "/shared"}}]),
            rule("gw-prefix-long", matches=[{"path": {"type": "PathPrefix",
                                                      "value": "/shared/deeper"}}]),
            rule("gw-method", matches=[{"path": {"type": "PathPrefix", "value": "/shared"},
                                        "method": "DELETE"}]),
            rule("gw-headers", matches=[{"path": {"type": "PathPrefix", "value": "/shared"},
                                         "headers": [{"name": "x-a", "value": "1"},
                                                     {"name": "x-b", "value": "2"}]},
                                        ]),
        )], created="2024-01-01T00:00:00Z"))
        self.s.start()
        rows = [
            ("/shared", None, [], "ing-old"),                  # same match: the older object
            ("/shared/x", None, [], "ing-old"),
            ("/shared/deeper/x", None, [], "gw-prefix-long"),  # longest prefix first
            ("/shared/exact", None, [], "ing-exact"),          # Exact first
            ("/shared/x", "DELETE", [], "gw-method"),          # a method match before none
            ("/shared/x", None, ["x-a: 1", "x-b: 2"], "gw-headers"),
            ("/shared/x", None, ["x-a: 1"], "ing-old"),        # all header matches or none
        ]
        for path, method, headers, want in rows:
            r = self.s.curl("mix.test", path, method=method, headers=headers)
            self.assertEqual((r.status, r.backend), (200, want), "%s %s %s: %r" % (
                method or "GET", path, headers, r))
        # the lost match is reported
        h.wait_until(lambda: "conflict" in self.s.controller_log(), 5,
                     what="a conflict log line")

    def test_wildcard_hostnames_match_any_depth(self):
        ports = self.s.backends("wild", "ingwild")
        self.s.write("svc.yaml", *[h.service_with_endpoints(n, p) for n, p in ports.items()])
        self.s.write("gw.yaml", gateway("w", [route(["*.gw.test"], rule("wild"))]))
        self.s.write("ing.yaml", h.ingress("w", rules=[("*.ing.test", [("/", "Prefix", "ingwild")])]))
        self.s.start()
        self.assertEqual(self.s.curl("a.gw.test", "/").backend, "wild")
        self.assertEqual(self.s.curl("a.b.gw.test", "/").backend, "wild")  # Gateway: suffix
        self.assertEqual(self.s.curl("a.ing.test", "/").backend, "ingwild")
        self.assertEqual(self.s.curl("a.b.ing.test", "/").status, 404)      # Ingress: one label
        self.assertEqual(self.s.curl("gw.test", "/").status, 404)

    # -- weights --
    def test_weighted_split_90_10(self):
        ports = self.s.backends("stable", "canary", "never")
        self.s.write("svc.yaml", *[h.service_with_endpoints(n, p) for n, p in ports.items()])
        self.s.write("gw.yaml", gateway("canary", [route(["shop.test"], rule(
            weighted("stable", 90), weighted("canary", 10), weighted("never", 0)))]))
        self.s.start()
        n = 10000
        seen = {}
        per_conn = 500
        for _ in range(n // per_conn):
            for status, backend in self.keepalive_get("shop.test", "/", per_conn):
                self.assertEqual(status, 200)
                seen[backend] = seen.get(backend, 0) + 1
        self.assertNotIn("never", seen, "a weight-0 backend got traffic: %s" % seen)
        share = seen.get("canary", 0) / n
        self.assertLess(abs(share - 0.10), 0.03, "canary share %.4f of %d: %s" % (share, n, seen))
        sys.stderr.write("  90/10 split over %d requests: %s\n" % (n, seen))

    def test_unresolved_backend_answers_500_for_its_share(self):
        port = self.s.backend("real")
        self.s.write("svc.yaml", h.service_with_endpoints("real", port))
        self.s.write("gw.yaml", gateway("half", [route(["half.test"], rule(
            weighted("real", 1), weighted("missing", 1)))]))
        self.s.start()
        got = {}
        for status, backend in self.keepalive_get("half.test", "/", 400):
            got[status] = got.get(status, 0) + 1
        self.assertEqual(set(got), {200, 500}, got)
        self.assertGreater(got[500], 120, got)
        self.assertGreater(got[200], 120, got)
        # no backend at all (and no redirect): 500 for everything
        self.s.write("gw.yaml", gateway("half", [route(["half.test"], rule(
            matches=[{"path": {"type": "PathPrefix", "value": "/"}}]))]))
        h.wait_until(lambda: {st for st, _ in self.keepalive_get("half.test", "/", 20)} == {500},
                     5, what="every request to a rule without backends answered 500")

    def test_no_ready_endpoint_answers_503(self):
        port = self.s.backend("down")
        self.s.write("svc.yaml", h.service_with_endpoints("down", port, ready=False))
        self.s.write("gw.yaml", gateway("d", [route(["down.test"], rule("down"))]))
        self.s.start()
        self.assertEqual(self.s.curl("down.test", "/").status, 503)

    # -- backendRef policy --
    def test_backend_ref_policy_overrides_the_service(self):
        """backendRefs[].policy: round robin, health checks and a request cap on one
        backendRef, while another backendRef to the same Service keeps its settings (ewma, no
        checks, no cap)."""
        files, ports = [], []
        for i in range(2):
            f = os.path.join(self.s.dir, "healthy-%d" % i)
            open(f, "w").close()
            files.append(f)
            ports.append(self.extra_backend("e%d" % i, "--health-file", f))
        slow = self.extra_backend("slow", "--delay-ms", "1000")
        self.s.write("svc.yaml", h.service("app"),
                     *[h.endpoint_slice("app-%d" % p, "app", p) for p in ports],
                     *h.service_with_endpoints("slow", slow))
        checked = {"name": "app", "port": 80, "policy": {
            "loadBalancer": {"type": "round_robin"},
            "healthCheck": {"path": "/healthz", "interval": "200ms", "timeout": "150ms",
                            "unhealthyThreshold": 2, "healthyThreshold": 2}}}
        capped = {"name": "slow", "port": 80, "policy": {"circuitBreaker": {"maxRequests": 1}}}
        self.s.write("gw.yaml", gateway("pol", [route(
            ["pol.test"],
            rule(checked, matches=[{"path": {"type": "PathPrefix", "value": "/rr"}}]),
            rule(capped, matches=[{"path": {"type": "PathPrefix", "value": "/capped"}}]),
            rule("slow", matches=[{"path": {"type": "PathPrefix", "value": "/free"}}]),
            rule("app"))]))
        self.s.start()

        # round robin: exactly alternating over the two endpoints
        got = self.keepalive_get("pol.test", "/rr", 20)
        self.assertTrue(all(st == 200 for st, _ in got), got)
        names = [b for _, b in got]
        self.assertEqual(sorted(set(names)), ["e0", "e1"], got)
        self.assertTrue(all(names[i] != names[i + 1] for i in range(len(names) - 1)), names)
        self.assertEqual(names.count("e0"), 10, names)

        # the backendRef's health check takes e1 out of its cluster only
        os.unlink(files[1])

        def e1_unhealthy():
            st, body = self.s.admin_get("/stats")
            for c in json.loads(body)["clusters"] if st == 200 else []:
                if c["name"].startswith("default/app:80+round_robin+p="):
                    return any(e["port"] == ports[1] and e["state"] == "unhealthy"
                               for e in c["endpoints"])
            return False
        h.wait_until(e1_unhealthy, 10 * h.SLOW, what="e1 unhealthy in the backendRef's cluster")
        got = self.keepalive_get("pol.test", "/rr", 10)
        self.assertEqual(got, [(200, "e0")] * 10)
        # the route without a policy (the Service's settings: no checks) still uses e1
        got = self.keepalive_get("pol.test", "/", 40)
        self.assertTrue(all(st == 200 for st, _ in got), got)
        self.assertIn("e1", {b for _, b in got})

        # circuitBreaker.maxRequests 1: of 3 at once, 2 get 503 + x-strait-overflow: 1 at
        # once; the same Service without the policy takes all 3
        def burst(path, n=3):
            out = [None] * n
            go = threading.Barrier(n)

            def one(i):
                go.wait()
                r = self.s.curl("pol.test", path, headers=["x-n: %d" % i])
                out[i] = (r.status, r.headers.get("x-strait-overflow"))
            ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(30 * h.SLOW)
            return sorted(out, key=str)
        self.assertEqual(burst("/capped"), [(200, None), (503, "1"), (503, "1")])
        self.assertEqual(burst("/free"), [(200, None)] * 3)

    # -- filters --
    def test_header_modifiers(self):
        port = self.s.backend("echo")
        self.s.write("svc.yaml", h.service_with_endpoints("echo", port))
        self.s.write("gw.yaml", gateway("hm", [route(["hm.test"], rule("echo", filters=[
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                "set": [{"name": "X-Env", "value": "prod"}],
                "add": [{"name": "X-Tag", "value": "gw"}],
                "remove": ["X-Secret"]}},
            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                "set": [{"name": "Server", "value": "strait-gw"}],
                "add": [{"name": "X-Served-By", "value": "strait"}],
                "remove": ["X-Backend"]}}]))]))
        self.s.start()
        r = self.s.curl("hm.test", "/", headers=["X-Env: dev", "X-Tag: client",
                                                 "X-Secret: hunter2"])
        self.assertEqual(r.status, 200, repr(r))
        b = r.json()
        lines = [(k.lower(), v) for k, v in b["header_list"]]
        self.assertIn(("x-env", "prod"), lines)           # set replaces...
        self.assertNotIn(("x-env", "dev"), lines)         # ...the client's value
        self.assertEqual([v for k, v in lines if k == "x-tag"], ["client", "gw"])  # add appends
        self.assertNotIn("x-secret", dict(lines))         # removed
        self.assertEqual(b["backend"], "echo")
        self.assertEqual(r.headers.get("server"), "strait-gw")
        self.assertEqual(r.headers.get("x-served-by"), "strait")
        self.assertNotIn("x-backend", r.headers)          # removed from the response
        # framing is not the filters' to change: the response is still well formed
        self.assertEqual(r.headers.get("content-length"), str(len(r.body)))

    def test_redirects(self):
        port = self.s.backend("never")
        self.s.write("svc.yaml", h.service_with_endpoints("never", port))
        self.s.write("gw.yaml", gateway("rd", [
            route(["www.test"], rule(filters=[{"type": "RequestRedirect", "requestRedirect": {
                "scheme": "https", "statusCode": 301}}]), name="to-https"),
            route(["old.test"], rule(matches=[{"path": {"type": "PathPrefix", "value": "/old"}}],
                                     filters=[{"type": "RequestRedirect", "requestRedirect": {
                                         "hostname": "new.test", "port": 8443,
                                         "path": {"type": "ReplacePrefixMatch",
                                                  "replacePrefixMatch": "/new"}}}]),
                  rule(matches=[{"path": {"type": "Exact", "value": "/page"}}],
                       filters=[{"type": "RequestRedirect", "requestRedirect": {
                           "statusCode": 308,
                           "path": {"type": "ReplaceFullPath", "replaceFullPath": "/moved"}}}]),
                  rule("never"), name="old")]))
        self.s.start()
        r = self.s.curl("www.test:8080", "/a/b?x=1")
        self.assertEqual(r.status, 301, repr(r))
        self.assertEqual(r.headers.get("location"), "https://www.test/a/b?x=1")
        r = self.s.curl("old.test", "/old/thing?id=3")
        self.assertEqual(r.status, 302, repr(r))             # the default status
        self.assertEqual(r.headers.get("location"), "http://new.test:8443/new/thing?id=3")
        r = self.s.curl("old.test:8080", "/page?q")
        self.assertEqual(r.status, 308, repr(r))
        self.assertEqual(r.headers.get("location"), "http://old.test:8080/moved?q")
        self.assertEqual(self.s.curl("old.test", "/other").backend, "never")

    def test_url_rewrite(self):
        port = self.s.backend("legacy")
        self.s.write("svc.yaml", h.service_with_endpoints("legacy", port))
        self.s.write("gw.yaml", gateway("rw", [route(["api.test"],
            rule("legacy", matches=[{"path": {"type": "PathPrefix", "value": "/api/v1"}}],
                 filters=[{"type": "URLRewrite", "urlRewrite": {
                     "hostname": "legacy.internal",
                     "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}]),
            rule("legacy", matches=[{"path": {"type": "RegularExpression",
                                              "value": "/health/v[0-9]+"}}],
                 filters=[{"type": "URLRewrite", "urlRewrite": {
                     "path": {"type": "ReplaceFullPath", "replaceFullPath": "/healthz"}}}]),
            rule("legacy"))]))
        self.s.start()
        rows = [
            ("/api/v1/users?page=2", "/users", "page=2", "legacy.internal"),
            ("/api/v1", "/", "", "legacy.internal"),
            ("/api/v10/users", "/api/v10/users", "", "api.test"),  # element-wise prefix
            ("/health/v3?deep", "/healthz", "deep", "api.test"),
            ("/plain", "/plain", "", "api.test"),
        ]
        for path, want_path, want_query, want_host in rows:
            r = self.s.curl("api.test", path)
            self.assertEqual(r.status, 200, repr(r))
            b = r.json()
            self.assertEqual((b["path"], b["query"], b["host"]),
                             (want_path, want_query, want_host), path)
            self.assertEqual(b["headers"].get("x-forwarded-host"), "api.test")

    def test_mirror_gets_a_copy_client_sees_primary(self):
        primary = self.s.backend("primary")
        record = os.path.join(self.s.dir, "mirror.jsonl")
        shadow = self.extra_backend("shadow", "--record", record)
        self.s.write("svc.yaml", h.service_with_endpoints("primary", primary),
                     h.service_with_endpoints("shadow", shadow))
        self.s.write("gw.yaml", gateway("m", [route(["app.test"], rule("primary", filters=[
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "shadow",
                                                                       "port": 80}}}]))]))
        self.s.start()
        body = os.path.join(self.s.dir, "body.bin")
        with open(body, "wb") as f:
            f.write(os.urandom(100000))
        n = 10
        for i in range(n):
            r = self.s.curl("app.test", "/upload/%d" % i, method="POST", data_file=body)
            self.assertEqual((r.status, r.backend), (200, "primary"), repr(r))
            self.assertEqual(r.json()["body_len"], 100000)
        r = self.s.curl("app.test", "/get?x=1")
        self.assertEqual(r.backend, "primary")

        def lines():
            try:
                with open(record) as f:
                    return [json.loads(ln) for ln in f if ln.strip()]
            except FileNotFoundError:
                return []
        got = h.wait_until(lambda: len(lines()) == n + 1 and lines(), 10,
                           what="%d mirrored requests" % (n + 1))
        import hashlib
        with open(body, "rb") as f:
            want_sha = hashlib.sha256(f.read()).hexdigest()
        posts = sorted((g for g in got if g["method"] == "POST"), key=lambda g: g["path"])
        self.assertEqual([g["path"] for g in posts], sorted("/upload/%d" % i for i in range(n)))
        for g in posts:
            self.assertEqual((g["body_len"], g["body_sha256"]), (100000, want_sha))
            self.assertEqual(g["host"], "app.test")
        gets = [g for g in got if g["method"] == "GET"]
        self.assertEqual([(g["path"], g["query"]) for g in gets], [("/get", "x=1")])
        st, metrics = self.s.admin_get("/metrics")
        self.assertIn('strait_mirror_requests_total{result="completed"} %d' % (n + 1),
                      metrics.decode())

    def test_mirror_that_never_answers_does_not_slow_the_primary(self):
        primary = self.s.backend("primary")
        # a mirror endpoint that accepts and then never reads nor answers
        import socket
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)
        self.addCleanup(hole.close)
        self.s.write("svc.yaml", h.service_with_endpoints("primary", primary),
                     h.service_with_endpoints("hole", hole.getsockname()[1]))
        self.s.write("gw.yaml", gateway("m", [route(["app.test"], rule("primary", filters=[
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "hole",
                                                                       "port": 80}}}]))]))
        self.s.start()
        t0 = time.monotonic()
        for status, backend in self.keepalive_get("app.test", "/", 50):
            self.assertEqual((status, backend), (200, "primary"))
        self.assertLess(time.monotonic() - t0, 5 * h.SLOW)

    # -- timeouts and retries --
    def test_timeouts_answer_504(self):
        port = self.s.backend("slow")
        self.s.write("svc.yaml", h.service_with_endpoints("slow", port))
        self.s.write("gw.yaml", gateway("t", [route(["t.test"],
            rule("slow", matches=[{"path": {"type": "PathPrefix", "value": "/req"}}],
                 timeouts={"request": "300ms"}),
            rule("slow", matches=[{"path": {"type": "PathPrefix", "value": "/be"}}],
                 timeouts={"backendRequest": "300ms"}),
            rule("slow", matches=[{"path": {"type": "PathPrefix", "value": "/none"}}],
                 timeouts={"request": "0s"}))]))
        self.s.start()
        for path in ("/req?delay_ms=3000", "/be?delay_ms=3000"):
            t0 = time.monotonic()
            r = self.s.curl("t.test", path)
            took = time.monotonic() - t0
            self.assertEqual(r.status, 504, "%s: %r" % (path, r))
            self.assertLess(took, 2.5 * h.SLOW, "%s took %.2fs" % (path, took))
            self.assertGreaterEqual(took, 0.29, "%s answered before its timeout" % path)
        self.assertEqual(self.s.curl("t.test", "/req?delay_ms=50").status, 200)
        self.assertEqual(self.s.curl("t.test", "/none?delay_ms=700").status, 200)
        st, metrics = self.s.admin_get("/metrics")
        text = metrics.decode()
        self.assertIn('strait_route_timeouts_total{kind="request"} 1', text)
        self.assertIn('strait_route_timeouts_total{kind="backend"} 1', text)

    def _retry_stack(self, retry, bad_args=("--status", "503")):
        good = self.s.backend("good")
        bad_record = os.path.join(self.s.dir, "bad.jsonl")
        bad = self.extra_backend("bad", "--record", bad_record, *bad_args)
        # round robin (Gateway backends take the Service's policy; the default is ewma): the
        # tests below count on every other first attempt landing on the failing replica
        self.s.write("svc.yaml",
                     h.service("app", annotations={"strait.dev/load-balance": "round_robin"}),
                     h.endpoint_slice("app-good", "app", good),
                     h.endpoint_slice("app-bad", "app", bad))
        self.s.write("gw.yaml", gateway("rt", [route(["rt.test"], rule("app", retry=retry))]))
        self.s.start()
        return bad_record

    @staticmethod
    def _count(path):
        try:
            with open(path) as f:
                return sum(1 for ln in f if ln.strip())
        except FileNotFoundError:
            return 0

    def test_retry_recovers_from_a_failing_endpoint(self):
        # (round robin over [good, bad] with a retry in between puts every first attempt
        # on the failing replica: each request needs its retry)
        bad_record = self._retry_stack({"attempts": 1, "codes": [503]})
        for i in range(5):
            r = self.s.curl("rt.test", "/r/%d" % i)
            self.assertEqual((r.status, r.backend), (200, "good"), repr(r))
        # the failing replica did get first attempts
        self.assertGreaterEqual(self._count(bad_record), 2)
        # a PUT (idempotent) with a body is retried too, body and all
        body = os.path.join(self.s.dir, "b.bin")
        with open(body, "wb") as f:
            f.write(b"p" * 5000)
        for i in range(4):
            r = self.s.curl("rt.test", "/put/%d" % i, method="PUT", data_file=body)
            self.assertEqual((r.status, r.backend), (200, "good"), repr(r))
            self.assertEqual(r.json()["body_len"], 5000)
        self.assertGreaterEqual(self._metric("strait_retries_total"), 2)

    def test_retry_budget_caps_retries(self):
        # every attempt fails (two replicas answering 503: outlier detection may eject one of
        # them, never both): retries would double the load on the backends; the budget (20 %
        # of requests + 10 per second) lets only that many through
        bad1 = self.extra_backend("bad1", "--status", "503")
        bad2 = self.extra_backend("bad2", "--status", "503")
        self.s.write("svc.yaml", h.service("app"), h.endpoint_slice("app-1", "app", bad1),
                     h.endpoint_slice("app-2", "app", bad2))
        self.s.write("gw.yaml", gateway("rt", [route(["rt.test"], rule(
            "app", retry={"attempts": 1, "codes": [503]}))]))
        self.s.start()
        t0 = time.monotonic()
        got = {}
        n = 0
        for status, backend in self.keepalive_get("rt.test", "/", 200):
            got[status] = got.get(status, 0) + 1
            n += 1
        elapsed = time.monotonic() - t0
        self.assertEqual(set(got), {503}, got)
        retries = self._metric("strait_retries_total")
        allowed = 10 + 0.2 * n + 10 * (elapsed + 0.5)
        self.assertLessEqual(retries, allowed, "retries %d for %d requests in %.2fs: %s" % (
            retries, n, elapsed, got))
        self.assertGreater(self._metric("strait_retry_budget_exhausted_total"), 0)

    def test_post_with_body_sent_is_never_retried(self):
        bad_record = self._retry_stack({"attempts": 2, "codes": [503]})
        body = os.path.join(self.s.dir, "b.bin")
        with open(body, "wb") as f:
            f.write(b"x" * 2000)
        statuses = []
        for i in range(10):
            r = self.s.curl("rt.test", "/post/%d" % i, method="POST", data_file=body)
            statuses.append((r.status, r.backend))
        self.assertIn((503, "bad"), statuses, statuses)     # passed on, not retried
        self.assertIn((200, "good"), statuses, statuses)
        bad_posts = statuses.count((503, "bad"))
        # each POST reached the failing replica at most once: no replay
        self.assertEqual(self._count(bad_record), bad_posts)

    def test_retry_on_connect_failure_and_attempts_are_bounded(self):
        good = self.s.backend("good")
        dead = h.free_port()
        self.s.write("svc.yaml", h.service("app"),
                     h.endpoint_slice("app-good", "app", good),
                     h.endpoint_slice("app-dead", "app", dead),
                     h.service("gone"), h.endpoint_slice("gone-a", "gone", h.free_port()))
        self.s.write("gw.yaml", gateway("rt", [route(["rt.test"],
            rule("gone", matches=[{"path": {"type": "PathPrefix", "value": "/gone"}}],
                 retry={"attempts": 3}),
            rule("app", retry={"attempts": 1}))]))
        self.s.start()
        for i in range(10):
            r = self.s.curl("rt.test", "/c/%d" % i)
            self.assertEqual((r.status, r.backend), (200, "good"), repr(r))
        # nothing listens behind "gone": 1 + 3 attempts, then 502
        before = self._metric("strait_retries_total")
        r = self.s.curl("rt.test", "/gone")
        self.assertEqual(r.status, 502, repr(r))
        self.assertEqual(self._metric("strait_retries_total") - before, 3)

    def test_retry_with_backoff_waits(self):
        self._retry_stack({"attempts": 1, "codes": [503], "backoff": "400ms"})
        took = []
        for i in range(6):
            t0 = time.monotonic()
            r = self.s.curl("rt.test", "/b/%d" % i)
            took.append(time.monotonic() - t0)
            self.assertEqual((r.status, r.backend), (200, "good"), repr(r))
        # round robin: about half the requests hit the failing replica first and waited
        # 200..400 ms (the backoff with jitter) before their retry
        slow = [t for t in took if t >= 0.19]
        self.assertGreaterEqual(len(slow), 2, took)

    def _metric(self, name):
        st, body = self.s.admin_get("/metrics")
        for ln in body.decode().splitlines():
            if ln.startswith(name + " "):
                return float(ln.split()[1])
        return 0.0

    # -- invalid objects --
    def test_invalid_gateway_rejected_valid_ones_serve(self):
        port = self.s.backend("ok")
        self.s.write("svc.yaml", h.service_with_endpoints("ok", port))
        self.s.write("good.yaml", gateway("good", [route(["good.test"], rule("ok"))]))
        self.s.write("ing.yaml", h.ingress("ing", rules=[("ing.test", [("/", "Prefix", "ok")])]))
        self.s.write("bad.yaml", gateway("bad", [route(["bad.test"], rule("ok", matches=[
            {"path": {"type": "RegularExpression", "value": "/(unclosed"}}]))]))
        self.s.write("bad2.yaml", gateway("bad2", [route(["bad2.test"], rule("ok", filters=[
            {"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}},
            {"type": "URLRewrite", "urlRewrite": {"hostname": "x.test"}}]))]))
        self.s.start()
        self.assertEqual(self.s.curl("good.test", "/").backend, "ok")
        self.assertEqual(self.s.curl("ing.test", "/").backend, "ok")
        self.assertEqual(self.s.curl("bad.test", "/").status, 404)
        self.assertEqual(self.s.curl("bad2.test", "/").status, 404)
        log = self.s.controller_log()
        st = {e.get("object"): e for e in h.log_events(log, "gateway_status")}
        self.assertEqual(st["default/bad"].get("accepted"), "False", st)
        self.assertEqual(st["default/bad"].get("reason"), "InvalidRegex", st)
        self.assertEqual(st["default/bad2"].get("accepted"), "False", st)
        self.assertEqual(st["default/good"].get("accepted"), "True", st)
        self.assertEqual(st["default/good"].get("programmed"), "True", st)


class GatewayHTTPSTest(h.StraitTest):
    """An HTTPS listener with a certificate from a kubernetes.io/tls Secret next to an HTTP
    listener whose only route redirects to https (manifests/examples/gateway/redirect.yaml's
    pattern): SNI gets the listener's certificate, routes attach per listener kind."""

    def test_https_listener_and_http_redirect_route(self):
        import certs
        cdir = os.path.join(self.s.dir, "certs")
        ca = certs.make_ca(cdir)
        crt = certs.make_cert(cdir, "www.gw.test", sans=["www.gw.test"], ca=ca)
        port = self.s.backend("web")
        self.s.write("svc.yaml", h.service_with_endpoints("web", port),
                     certs.tls_secret("www-tls", crt))
        listeners = [{"name": "http", "port": 80, "protocol": "HTTP"},
                     {"name": "https", "port": 443, "protocol": "HTTPS",
                      "hostname": "www.gw.test",
                      "tls": {"certificateRefs": [{"name": "www-tls"}]}}]
        self.s.write("gw.yaml", gateway("site", [
            route(["www.gw.test"], rule(filters=[{"type": "RequestRedirect", "requestRedirect": {
                "scheme": "https", "statusCode": 301}}]), name="to-https",
                listener_names=["http"]),
            route(["www.gw.test"], rule("web"), name="www", listener_names=["https"])],
            listeners=listeners))
        self.s.controller()
        h.start_dataplane_tls(self.s)
        # plain HTTP: the redirect route only
        r = self.s.curl("www.gw.test", "/a?b=1")
        self.assertEqual(r.status, 301, repr(r))
        self.assertEqual(r.headers.get("location"), "https://www.gw.test/a?b=1")
        # HTTPS: the listener's certificate for its hostname, and the backend route only
        rc, out, err = h.s_client(self.s.tls_port, "www.gw.test")
        self.assertEqual(h.served_fingerprint(out), crt.fingerprint(), err)
        r = h.curl_https(self.s.tls_port, "www.gw.test", "/a", workdir=self.s.dir,
                         cacert=ca.crt)
        self.assertEqual((r.status, r.backend), (200, "web"), repr(r))
        self.assertEqual(r.json()["headers"].get("x-forwarded-proto"), "https")
        log = self.s.controller_log()
        st = {e.get("object"): e for e in h.log_events(log, "gateway_status")}
        self.assertEqual(st["default/site"].get("accepted"), "True", st)
        self.assertEqual(st["default/site"].get("resolved_refs"), "True", st)

    def test_missing_certificate_ref_is_reported(self):
        port = self.s.backend("web")
        self.s.write("svc.yaml", h.service_with_endpoints("web", port))
        self.s.write("gw.yaml", gateway("site", [route(["nocert.gw.test"], rule("web"))],
                                        listeners=[{"name": "https", "port": 443,
                                                    "protocol": "HTTPS",
                                                    "tls": {"certificateRefs": [
                                                        {"name": "absent"}]}}]))
        self.s.controller()
        h.start_dataplane_tls(self.s)
        # still served over TLS, with the data plane's own certificate
        r = h.curl_https(self.s.tls_port, "nocert.gw.test", "/", workdir=self.s.dir)
        self.assertEqual((r.status, r.backend), (200, "web"), repr(r))
        st = {e.get("object"): e for e in h.log_events(self.s.controller_log(),
                                                       "gateway_status")}
        self.assertEqual(st["default/site"].get("resolved_refs"), "False", st)
        self.assertIn("InvalidCertificateRef", json.dumps(st["default/site"]))
