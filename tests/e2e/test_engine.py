"""The data plane engine (issue 4): upstream keep-alive pooling (and its
--upstream-keepalive / --upstream-keepalive-timeout flags) and the retry of a stale
pooled connection, Upgrade/WebSocket tunnelling, client and upstream timeouts from the
command line, graceful drain on SIGTERM, several workers, and bounded memory under a slow
reader. Backends that must count connections, stall, or speak WebSocket are raw sockets in
this file (harness.RawServer); every wait polls with a deadline."""
import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import harness as h

HOST = "eng.test"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"


def answer(c, body, extra=b""):
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s"
              % (len(body), extra, body))


def keepalive_handler(srv, c, n):
    """Answers every request on the connection, keep-alive; the body names the connection."""
    while True:
        if not srv.read_head(c):
            return
        answer(c, b"conn=%d\n" % n)


def slow_keepalive_handler(srv, c, n):
    """keepalive_handler, but a request for /slow... takes 0.5 s to answer."""
    while True:
        head = srv.read_head(c)
        if not head:
            return
        if head.startswith(b"GET /slow"):
            time.sleep(0.5)
        answer(c, b"conn=%d\n" % n)


def close_each_handler(srv, c, n):
    """One request per connection, answered with Connection: close."""
    if srv.read_head(c):
        answer(c, b"conn=%d\n" % n, b"Connection: close\r\n")


def silent_close_handler(srv, c, n):
    """Answers keep-alive, then closes the idle connection shortly after without a word."""
    if srv.read_head(c):
        answer(c, b"conn=%d\n" % n)
        time.sleep(0.1)


def first_only_handler(srv, c, n):
    """Answers the first request of a connection; a second one is read, then the connection
    closes without a response byte (a server that timed out the idle connection just as it
    was reused)."""
    if srv.read_head(c):
        answer(c, b"conn=%d\n" % n)
        if srv.read_head(c):
            return


def ws_echo_handler(srv, c, n):
    """Minimal RFC 6455 server: handshake, then echoes one masked text frame unmasked."""
    head = srv.read_head(c)
    key = None
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-key:"):
            key = line.split(b":", 1)[1].strip()
    if key is None or b"upgrade: websocket" not in head.lower():
        answer(c, b"not a websocket request\n")
        return
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    payload = ws_read_frame(c)
    c.sendall(bytes([0x81, len(payload)]) + payload)
    time.sleep(0.2)


def recv_exact(c, n):
    buf = b""
    while len(buf) < n:
        chunk = c.recv(n - len(buf))
        if not chunk:
            raise OSError("closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def ws_read_frame(c):
    """Reads one small frame; returns its (unmasked) payload."""
    b0, b1 = recv_exact(c, 2)
    ln = b1 & 0x7F
    assert ln < 126
    mask = recv_exact(c, 4) if b1 & 0x80 else b"\0\0\0\0"
    data = recv_exact(c, ln)
    return bytes(x ^ mask[i % 4] for i, x in enumerate(data))


def stall_mid_body_handler(srv, c, n):
    """Promises 100000 bytes, sends 10, then stalls until the proxy gives up."""
    if srv.read_head(c):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789")
        c.settimeout(30)
        try:
            c.recv(1)  # returns when the proxy closes
        except OSError:
            pass


class EngineBase(h.StraitTest):
    def site(self, port):
        self.s.write("svc.yaml", h.service_with_endpoints("eng", port))
        self.s.write("ing.yaml", h.ingress("eng", rules=[(HOST, [("/", "Prefix", "eng")])]))

    def raw(self, handler):
        srv = h.RawServer(handler)
        self.addCleanup(srv.stop)
        return srv

    def start_with(self, port, *flags):
        self.site(port)
        self.s.controller()
        h.start_dataplane(self.s, *flags)

    def get(self, path="/", **kw):
        return self.s.curl(HOST, path, **kw)

    def metric(self, name):
        st, body = self.s.admin_get("/metrics")
        self.assertEqual(st, 200, body)
        values, _, problems = h.parse_metrics(body.decode())
        self.assertEqual(problems, [])
        self.assertIn(name, values)
        return values[name]

    def curl_many(self, paths):
        """Several requests on one curl keep-alive connection; returns the bodies."""
        url = "http://127.0.0.1:%d" % self.s.port
        outs = []
        args = ["curl", "-sS", "--noproxy", "*", "-H", "Host: " + HOST]
        for i, p in enumerate(paths):
            o = os.path.join(self.s.dir, "many-%d.out" % i)
            outs.append(o)
            args += ["-o", o, url + p]
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30 * h.SLOW)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        bodies = []
        for o in outs:
            with open(o, "rb") as f:
                bodies.append(f.read())
        return bodies


class PoolTest(EngineBase):
    def test_one_client_connection_reuses_one_upstream(self):
        srv = self.raw(keepalive_handler)
        self.start_with(srv.port, "--workers", "1")
        bodies = self.curl_many(["/k%d" % i for i in range(20)])
        self.assertEqual(set(bodies), {b"conn=1\n"}, bodies)
        self.assertEqual((srv.accepted, srv.requests), (1, 20))

    def test_separate_client_connections_reuse_one_upstream(self):
        srv = self.raw(keepalive_handler)
        self.start_with(srv.port, "--workers", "1")
        for i in range(10):
            r = self.get("/s%d" % i)
            self.assertEqual((r.status, r.body), (200, b"conn=1\n"), repr(r))
            self.assertEqual(r.headers.get("connection"), "keep-alive")
        self.assertEqual((srv.accepted, srv.requests), (1, 10))

    def test_upstream_head_is_persistent(self):
        port = self.s.backend("echo")
        self.start_with(port, "--workers", "1")
        j = self.get("/hdr").json()
        self.assertNotIn("connection", j["headers"], "HTTP/1.1 upstream head must not close")
        # a 1.0 client still gets its answer (upstream told to close)
        raw = h.raw_exchange(self.s.port, b"GET /one HTTP/1.0\r\nHost: eng.test\r\n\r\n")
        self.assertEqual(h.status_of(raw), 200, raw[:200])

    def test_backend_closing_after_each_response(self):
        srv = self.raw(close_each_handler)
        self.start_with(srv.port, "--workers", "1")
        bodies = self.curl_many(["/c%d" % i for i in range(5)])
        self.assertEqual(bodies, [b"conn=%d\n" % (i + 1) for i in range(5)])
        self.assertEqual(srv.accepted, 5)

    def test_pooled_connection_closed_while_idle(self):
        srv = self.raw(silent_close_handler)
        self.start_with(srv.port, "--workers", "1")
        for i in range(4):
            r = self.get("/i%d" % i)
            self.assertEqual(r.status, 200, repr(r))
            time.sleep(0.3)  # lets the backend close the parked connection
        self.assertEqual(srv.accepted, 4)

    def test_stale_reuse_is_retried_once(self):
        srv = self.raw(first_only_handler)
        self.start_with(srv.port, "--workers", "1")
        self.assertEqual(self.get("/a").body, b"conn=1\n")
        r = self.get("/b")  # reuses conn 1, which dies: retried on conn 2
        self.assertEqual((r.status, r.body), (200, b"conn=2\n"), repr(r))
        self.assertEqual(srv.accepted, 2)
        # a POST is not idempotent: the same failure is a 502, not a second delivery
        r = self.get("/c", method="POST", extra=("--data-binary", "x"))
        self.assertEqual(r.status, 502, repr(r))
        self.assertEqual(srv.accepted, 2)

    def test_pool_survives_snapshot_swap(self):
        srv = self.raw(keepalive_handler)
        self.start_with(srv.port, "--workers", "1")
        self.assertEqual(self.get("/x").body, b"conn=1\n")
        gen = self.s.generation()
        self.s.write("ing2.yaml", h.ingress("eng2", rules=[("other.test", [("/", "Prefix", "eng")])]))
        h.wait_until(lambda: self.s.generation() > gen, 5, what="a new generation")
        self.assertEqual(self.get("/y").body, b"conn=1\n")
        self.assertEqual(self.s.curl("other.test", "/z").body, b"conn=1\n")
        self.assertEqual(srv.accepted, 1)


class KeepaliveFlagTest(EngineBase):
    """--upstream-keepalive N (idle upstream connections kept per endpoint, 0: no pooling)
    and --upstream-keepalive-timeout S, seen from the backend's accept count and from
    strait_upstream_pool_reused_total."""

    def requests(self, n, prefix):
        for i in range(n):
            r = self.get("/%s%d" % (prefix, i))
            self.assertEqual(r.status, 200, repr(r))

    def test_keepalive_0_disables_pooling(self):
        srv = self.raw(keepalive_handler)
        self.start_with(srv.port, "--workers", "1", "--upstream-keepalive", "0")
        self.requests(6, "n")
        self.assertEqual(self.metric("strait_upstream_pool_reused_total"), 0)
        self.assertEqual((srv.accepted, srv.requests), (6, 6))
        # one client connection, several requests: still a fresh upstream for each
        self.assertEqual(self.curl_many(["/m%d" % i for i in range(3)]),
                         [b"conn=%d\n" % i for i in (7, 8, 9)])
        self.assertEqual(self.metric("strait_upstream_pool_reused_total"), 0)

    def test_default_keepalive_reuses(self):
        srv = self.raw(keepalive_handler)
        self.start_with(srv.port, "--workers", "1")
        self.requests(6, "d")
        self.assertEqual(srv.accepted, 1)
        self.assertEqual(self.metric("strait_upstream_pool_reused_total"), 5)
        self.requests(2, "e")
        self.assertEqual(self.metric("strait_upstream_pool_reused_total"), 7)

    def test_keepalive_n_bounds_idle_connections(self):
        srv = self.raw(slow_keepalive_handler)
        self.start_with(srv.port, "--workers", "1", "--upstream-keepalive", "2")
        # four requests at once: four upstream connections, of which two stay parked
        ts = [threading.Thread(target=self.get, args=("/slow%d" % i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30 * h.SLOW)
        self.assertEqual((srv.accepted, srv.requests), (4, 4))
        h.wait_until(lambda: h.established_to(srv.port) == 2, 5,
                     what="2 idle upstream connections kept, the others closed")
        self.requests(2, "k")
        self.assertEqual(srv.accepted, 4)
        self.assertEqual(self.metric("strait_upstream_pool_reused_total"), 2)

    def test_keepalive_timeout_expires_idle_connection(self):
        srv = self.raw(keepalive_handler)
        self.start_with(srv.port, "--workers", "1", "--upstream-keepalive-timeout", "0.3")
        self.requests(2, "t")  # back to back: the second reuses the first's connection
        self.assertEqual(srv.accepted, 1)
        self.assertEqual(self.metric("strait_upstream_pool_reused_total"), 1)
        # idle past the timeout: the proxy closed it, so the next request connects again
        h.wait_until(lambda: h.established_to(srv.port) == 0, 3,
                     what="idle upstream connection closed after 0.3 s")
        self.requests(1, "u")
        self.assertEqual(srv.accepted, 2)
        self.assertEqual(self.metric("strait_upstream_pool_reused_total"), 1)

    def test_bad_keepalive_flags_exit_2(self):
        for flag, bad in (("--upstream-keepalive", "-1"), ("--upstream-keepalive", "x"),
                          ("--upstream-keepalive", ""), ("--upstream-keepalive", "65536"),
                          ("--upstream-keepalive", "+3"), ("--upstream-keepalive-timeout", "0"),
                          ("--upstream-keepalive-timeout", "-1"),
                          ("--upstream-keepalive-timeout", "soon")):
            p = subprocess.run([os.path.join(h.BIN, "strait-dataplane"), "--socket", "x",
                                "--listen", "127.0.0.1:1", flag, bad],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
            self.assertEqual(p.returncode, 2, "%s %r: %r" % (flag, bad, p.stderr))
            self.assertIn(flag.encode(), p.stderr)


class UpgradeTest(EngineBase):
    def ws_handshake(self, sock):
        key = base64.b64encode(os.urandom(16))
        sock.sendall(b"GET /chat HTTP/1.1\r\nHost: eng.test\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
                     b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head, rest = h.read_http_head(sock, 10)
        return key, head, rest

    def test_websocket_echo(self):
        srv = self.raw(ws_echo_handler)
        self.start_with(srv.port)
        with socket.create_connection(("127.0.0.1", self.s.port), timeout=10 * h.SLOW) as s:
            key, head, rest = self.ws_handshake(s)
            self.assertEqual(h.status_of(head), 101, head)
            want = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
            low = head.lower()
            self.assertIn(b"\r\nsec-websocket-accept: " + want.lower(), low)
            self.assertIn(b"\r\nupgrade: websocket", low)
            self.assertIn(b"\r\nconnection: upgrade", low)
            self.assertEqual(rest, b"")
            mask = os.urandom(4)
            msg = b"hello through strait"
            s.sendall(bytes([0x81, 0x80 | len(msg)]) + mask +
                      bytes(x ^ mask[i % 4] for i, x in enumerate(msg)))
            self.assertEqual(ws_read_frame(s), msg)
            # the server closes: so does the proxy, toward the client
            s.settimeout(5 * h.SLOW)
            self.assertEqual(s.recv(100), b"")
        self.assertEqual(srv.accepted, 1)

    def test_upgrade_refused_continues_normally(self):
        port = self.s.backend("echo")
        self.start_with(port)
        with socket.create_connection(("127.0.0.1", self.s.port), timeout=10 * h.SLOW) as s:
            key, head, rest = self.ws_handshake(s)
            self.assertEqual(h.status_of(head), 200, head)
            n = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
            while len(rest) < n:
                rest += s.recv(65536)
            j = json.loads(rest[:n].decode())
            # the backend was offered the upgrade (hop-by-hop headers passed on purpose)
            self.assertEqual(j["headers"].get("upgrade"), "websocket", j)
            self.assertEqual(j["headers"].get("connection", "").lower(), "upgrade", j)
            # no switch happened: the connection goes on as HTTP
            s.sendall(b"GET /after HTTP/1.1\r\nHost: eng.test\r\n\r\n")
            head2, body2 = h.recv_http_response(s, 10)
            self.assertEqual(h.status_of(head2), 200, head2)
            self.assertEqual(json.loads(body2.decode())["path"], "/after")


class TimeoutTest(EngineBase):
    def test_slowloris_gets_408_within_header_timeout(self):
        port = self.s.backend("echo")
        self.start_with(port, "--client-header-timeout", "1")
        req = b"GET / HTTP/1.1\r\nHost: eng.test\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
        got = b""
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.s.port), timeout=10 * h.SLOW) as s:
            s.setblocking(False)
            for b in req:
                try:
                    s.send(bytes([b]))
                except OSError:
                    break
                time.sleep(0.2)
                try:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
                except BlockingIOError:
                    pass
                except OSError:
                    break
                if time.monotonic() - t0 > 10 * h.SLOW:
                    break
        elapsed = time.monotonic() - t0
        self.assertEqual(h.status_of(got), 408, got[:200])
        self.assertLess(elapsed, 1 + 2 * h.SLOW, "408 came too late")
        self.assertIn(b"\r\nConnection: close\r\n", got)

    def test_idle_keepalive_closed_after_idle_timeout(self):
        port = self.s.backend("echo")
        self.start_with(port, "--client-idle-timeout", "0.5")
        with socket.create_connection(("127.0.0.1", self.s.port), timeout=10 * h.SLOW) as s:
            s.sendall(b"GET /ka HTTP/1.1\r\nHost: eng.test\r\n\r\n")
            head, _ = h.recv_http_response(s, 10)
            self.assertEqual(h.status_of(head), 200, head)
            t0 = time.monotonic()
            s.settimeout(10 * h.SLOW)
            self.assertEqual(s.recv(100), b"", "idle connection closed silently")
            self.assertLess(time.monotonic() - t0, 0.5 + 2 * h.SLOW)

    def test_upstream_never_answers_504(self):
        port = self.s.backend("echo")
        self.start_with(port, "--upstream-response-timeout", "0.5")
        t0 = time.monotonic()
        r = self.get("/slow?delay_ms=5000")
        self.assertEqual(r.status, 504, repr(r))
        self.assertLess(time.monotonic() - t0, 0.5 + 3 * h.SLOW)
        self.assertEqual(self.get("/fast").status, 200)

    def black_hole(self):
        """A loopback port whose connects hang: a listener with backlog 0 that never accepts,
        its accept queue filled by the test itself, so Linux drops every further SYN (unless
        tcp_abort_on_overflow makes it answer with RST). Returns the port."""
        try:
            with open("/proc/sys/net/ipv4/tcp_abort_on_overflow") as f:
                abort = f.read().strip()
        except OSError as e:
            self.skipTest("no /proc/sys/net/ipv4/tcp_abort_on_overflow (%s): cannot tell "
                          "whether a full accept queue drops SYNs" % e)
        if abort != "0":
            self.skipTest("net.ipv4.tcp_abort_on_overflow=%s: a full accept queue answers "
                          "with RST, so no loopback black hole can be built" % abort)
        hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(hole.close)
        hole.bind(("127.0.0.1", 0))
        hole.listen(0)
        port = hole.getsockname()[1]

        def accept_queue():
            """(queued, max) of the listener: rx_queue and tx_queue of its LISTEN line."""
            with open("/proc/net/tcp") as f:
                for line in f.readlines()[1:]:
                    cols = line.split()
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        mx, queued = cols[4].split(":")
                        return int(queued, 16), int(mx, 16)
            raise AssertionError("listener on port %d not in /proc/net/tcp" % port)
        for _ in range(3):
            queued, mx = accept_queue()
            if queued > mx:  # full (sk_acceptq_is_full): SYNs are dropped from now on
                return port
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.addCleanup(filler.close)
            filler.settimeout(1.0 * h.SLOW)
            try:
                filler.connect(("127.0.0.1", port))
            except socket.timeout:
                filler.close()  # its SYN was dropped: the hole is black already
                return port
            h.wait_until(lambda: accept_queue()[0] > queued, 2,
                         what="filler connection in the accept queue of port %d" % port)
        self.skipTest("could not fill the accept queue of a backlog-0 listener: %r" %
                      (accept_queue(),))

    def test_upstream_connect_timeout_504(self):
        port = self.black_hole()
        self.start_with(port, "--workers", "1", "--upstream-connect-timeout", "0.5")
        errors = self.metric("strait_upstream_connect_errors_total")
        timeouts = self.metric("strait_upstream_timeouts_total")
        t0 = time.monotonic()
        r = self.get("/black-hole", timeout=15)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 504, repr(r))
        self.assertEqual(r.body, b"gateway timeout\n")
        self.assertGreaterEqual(elapsed, 0.5, "504 before the connect timeout")
        self.assertLess(elapsed, 0.5 + 2 * h.SLOW, "504 came too late: timeout not applied")
        h.wait_until(lambda: self.metric("strait_upstream_connect_errors_total") >= errors + 1,
                     3, what="strait_upstream_connect_errors_total to count the timeout")
        self.assertEqual(self.metric("strait_upstream_connect_errors_total"), errors + 1)
        # a connect timeout is not a response timeout
        self.assertEqual(self.metric("strait_upstream_timeouts_total"), timeouts)

        def syn_sent_to_hole():
            n = 0
            with open("/proc/net/tcp") as f:
                for line in f.readlines()[1:]:
                    cols = line.split()
                    if cols[3] == "02" and int(cols[2].rsplit(":", 1)[1], 16) == port:
                        n += 1
            return n
        # the abandoned connect's socket is closed, not left retrying its SYN
        h.wait_until(lambda: syn_sent_to_hole() == 0, 3,
                     what="no connect to the black hole left in SYN_SENT")

    def test_empty_line_after_body_is_not_a_request_head(self):
        """RFC 9112 2.2: an empty line before a request line is ignored. A client that sends
        CRLF after a POST body and then idles gets the idle close, not a 408 from the header
        timeout (an unsolicited 408 would be read as the answer to its next request)."""
        port = self.s.backend("echo")
        self.start_with(port, "--client-header-timeout", "0.5", "--client-idle-timeout", "2")
        with socket.create_connection(("127.0.0.1", self.s.port), timeout=10 * h.SLOW) as s:
            s.sendall(b"POST /crlf HTTP/1.1\r\nHost: eng.test\r\nContent-Length: 5\r\n\r\n"
                      b"hello\r\n")
            head, body = h.recv_http_response(s, 10)
            self.assertEqual(h.status_of(head), 200, head)
            self.assertEqual(json.loads(body.decode())["body_len"], 5)
            t0 = time.monotonic()
            s.settimeout(10 * h.SLOW)
            rest = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                rest += chunk
            self.assertEqual(rest, b"", "bytes after an ignored empty line")
            self.assertGreater(time.monotonic() - t0, 1.5, "closed by the header timeout")

    def test_stall_mid_body_closes_client(self):
        srv = self.raw(stall_mid_body_handler)
        self.start_with(srv.port, "--idle-body-timeout", "0.5")
        with socket.create_connection(("127.0.0.1", self.s.port), timeout=10 * h.SLOW) as s:
            s.sendall(b"GET /stall HTTP/1.1\r\nHost: eng.test\r\n\r\n")
            head, rest = h.read_http_head(s, 10)
            self.assertEqual(h.status_of(head), 200, head)
            t0 = time.monotonic()
            s.settimeout(10 * h.SLOW)
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                rest += chunk
            self.assertLess(time.monotonic() - t0, 0.5 + 3 * h.SLOW)
            self.assertEqual(rest, b"0123456789")

    def test_bad_timeout_flag_exits_2(self):
        p = subprocess.run([os.path.join(h.BIN, "strait-dataplane"), "--socket", "x",
                            "--listen", "127.0.0.1:1", "--client-idle-timeout", "-1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        self.assertEqual(p.returncode, 2, p.stderr)


class DrainTest(EngineBase):
    def test_sigterm_drains(self):
        port = self.s.backend("echo")
        self.start_with(port, "--drain-timeout", "10", "--workers", "2")
        idle = socket.create_connection(("127.0.0.1", self.s.port), timeout=10 * h.SLOW)
        busy = socket.create_connection(("127.0.0.1", self.s.port), timeout=10 * h.SLOW)
        try:
            idle.sendall(b"GET /idle HTTP/1.1\r\nHost: eng.test\r\n\r\n")
            self.assertEqual(h.status_of(h.recv_http_response(idle, 10)[0]), 200)
            busy.sendall(b"GET /b1 HTTP/1.1\r\nHost: eng.test\r\n\r\n")
            head, _ = h.recv_http_response(busy, 10)
            self.assertIn(b"Connection: keep-alive", head)
            busy.sendall(b"GET /slow?delay_ms=1500 HTTP/1.1\r\nHost: eng.test\r\n\r\n")
            time.sleep(0.3)  # the request is in flight
            os.kill(self.s.dp.pid, signal.SIGTERM)
            h.wait_until(lambda: not h.port_accepts(self.s.port), 3,
                         what="listener closed during drain")
            idle.settimeout(3 * h.SLOW)
            self.assertEqual(idle.recv(100), b"", "idle keep-alive connection closed at once")
            head, body = h.recv_http_response(busy, 10)
            self.assertEqual(h.status_of(head), 200, head)
            self.assertIn(b"\r\nConnection: close\r\n", head)
            self.assertIn(b"delay_ms=1500", body)
            self.s.dp.p.wait(10 * h.SLOW)
            self.assertEqual(self.s.dp.p.returncode, 0)
        finally:
            idle.close()
            busy.close()
        self.s.procs.remove(self.s.dp)  # already gone: nothing left to stop


class WorkersTest(EngineBase):
    def test_two_workers_parallel_requests(self):
        port = self.s.backend("echo")
        self.start_with(port, "--workers", "2")
        self.assertIn("workers=2", self.s.dataplane_log())
        codes, lock = [], threading.Lock()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def run(i):
            for j in range(25):
                rq = urllib.request.Request("http://127.0.0.1:%d/p%d-%d" % (self.s.port, i, j),
                                            headers={"Host": HOST})
                try:
                    with opener.open(rq, timeout=10 * h.SLOW) as r:
                        st = r.status if b'"backend": "echo"' in r.read() else -1
                except Exception as e:  # noqa: BLE001
                    st = repr(e)
                with lock:
                    codes.append(st)
        ts = [threading.Thread(target=run, args=(i,)) for i in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60 * h.SLOW)
        self.assertEqual(len(codes), 200)
        self.assertEqual(set(codes), {200}, [c for c in codes if c != 200][:5])

    def test_default_workers_is_cpu_count(self):
        port = self.s.backend("echo")
        self.start_with(port)
        self.assertIn("workers=%d" % os.sysconf("SC_NPROCESSORS_ONLN"), self.s.dataplane_log())


class BackPressureTest(EngineBase):
    def test_slow_reader_does_not_grow_rss(self):
        port = self.s.backend("echo")
        self.start_with(port, "--workers", "1")
        size = 50 * 1000 * 1000
        pid = self.s.dp.pid
        self.assertEqual(self.get("/warm?size=1000").status, 200)
        before = h.vm_rss_kib(pid)
        peak = before
        with socket.create_connection(("127.0.0.1", self.s.port), timeout=30 * h.SLOW) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            s.sendall(b"GET /big?size=%d HTTP/1.1\r\nHost: eng.test\r\n\r\n" % size)
            head, got = h.read_http_head(s, 30)
            self.assertEqual(h.status_of(head), 200, head)
            n = len(got)
            # read slowly for a while: the backend is far ahead, the proxy must not buffer
            t_end = time.monotonic() + 2.0
            while time.monotonic() < t_end:
                n += len(s.recv(16384))
                time.sleep(0.01)
                peak = max(peak, h.vm_rss_kib(pid))
            self.assertLess(n, size // 2, "the slow reader was not slow")
            time.sleep(1.0)
            peak = max(peak, h.vm_rss_kib(pid))
            # then drain it all
            s.settimeout(30 * h.SLOW)
            while n < size:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                n += len(chunk)
        self.assertEqual(n, size)
        self.assertLess((peak - before) * 1024, 16 << 20,
                        "RSS grew from %d KiB to %d KiB" % (before, peak))
