"""Request body size limits: the Ingress annotation strait.dev/proxy-body-size (per route and
for the default backend) and the data plane's --client-max-body-size default for routes
without one. A body larger than the limit gets 413 with Connection: close: at once when the
Content-Length says so (the upstream never sees the request), or as soon as a chunked body
grows past it (before any response byte), and the connection is closed.

The backend is a raw keep-alive server in this file that reads every body fully and records
what it saw, so a test can tell "rejected by the proxy" from "rejected by the backend".
Clients are raw sockets: a request expected to be refused sends its head first and each
piece of its body only while no answer has come, so a proxy that answers early never has
unread bytes to reset the connection with when it closes."""
import json
import os
import re
import select
import socket
import subprocess

import harness as h

LIMITED = "lim.test"  # annotation "1k"
OPEN = "open.test"    # no annotation: the data plane's default applies
ZERO = "zero.test"    # annotation "0": unlimited, whatever the flag says
OTHER = "nowhere.test"  # no rule: the default backend (annotation "2k")


class _Reader:
    def __init__(self, c):
        self.c, self.buf = c, b""

    def _fill(self):
        chunk = self.c.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def until(self, sep):
        while sep not in self.buf:
            self._fill()
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def body_handler(srv, c, n):
    """Keep-alive backend: reads each request's body (Content-Length or chunked) in full, then
    answers 200 with {"path", "body_len"}. Records heads seen and complete bodies."""
    r = _Reader(c)
    c.settimeout(30)
    while True:
        try:
            head = r.until(b"\r\n\r\n")
        except (EOFError, OSError):
            return
        path = head.split(b" ", 2)[1].decode("latin-1")
        low = head.lower()
        with srv.lock:
            srv.heads.append(path)
        got = 0
        try:
            if re.search(rb"\r\ntransfer-encoding: *chunked", low):
                while True:
                    size = int(r.until(b"\r\n").split(b";")[0].strip(), 16)
                    if size == 0:
                        r.until(b"\r\n")  # no trailers are sent: the empty line ends the body
                        break
                    got += len(r.exact(size))
                    r.exact(2)
            else:
                m = re.search(rb"\r\ncontent-length: *(\d+)", low)
                if m:
                    got = len(r.exact(int(m.group(1))))
        except (EOFError, OSError, ValueError):
            return  # the proxy gave up on this request: the body never completed
        with srv.lock:
            srv.bodies.append((path, got))
        body = json.dumps({"path": path, "body_len": got}).encode()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                  b"\r\n%s" % (len(body), body))


class Answer:
    def __init__(self, status, head, body, closed):
        self.status, self.head, self.body, self.closed = status, head, body, closed

    def header(self, name):
        m = re.search(rb"(?im)^" + re.escape(name.encode()) + rb": *([^\r\n]*)", self.head)
        return m.group(1).decode("latin-1").strip().lower() if m else None

    def json(self):
        return json.loads(self.body.decode())

    def __repr__(self):
        return "Answer(status=%r closed=%r head=%r body=%r)" % (
            self.status, self.closed, self.head[:300], self.body[:200])


def _answered(s, wait):
    """True when s has bytes to read (or EOF) within wait seconds."""
    r, _, _ = select.select([s], [], [], wait * h.SLOW)
    return bool(r)


def post(port, host, path, size, chunked=False, chunk=500, finish=True, patience=0.0,
         timeout=10.0):
    """POSTs `size` bytes of 'x' on a fresh connection: with Content-Length, or chunked in
    pieces of `chunk` bytes (`finish` False leaves the last-chunk marker out). The head goes
    first; with patience > 0 each further piece waits that long for an early answer and is
    not sent once one came. Returns an Answer; for an error status, closed tells whether the
    proxy closed the connection after it (None for 2xx: keep-alive is not waited for)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout * h.SLOW) as s:
        head = "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\n" % (
            path, host)
        if chunked:
            head += "Transfer-Encoding: chunked\r\n\r\n"
            pieces = []
            left = size
            while left > 0:
                n = min(chunk, left)
                pieces.append(b"%x\r\n%s\r\n" % (n, b"x" * n))
                left -= n
            if finish:
                pieces.append(b"0\r\n\r\n")
        else:
            head += "Content-Length: %d\r\n\r\n" % size
            pieces = [b"x" * size] if size else []
        s.sendall(head.encode())
        for p in pieces:
            if patience and _answered(s, patience):
                break
            try:
                s.sendall(p)
            except OSError:
                break
        try:
            rhead, rbody = h.recv_http_response(s, timeout)
        except (AssertionError, OSError):
            return Answer(0, b"", b"", True)
        status, closed = h.status_of(rhead), None
        if status >= 300:
            s.settimeout(3 * h.SLOW)
            try:
                closed = s.recv(1) == b""
            except socket.timeout:
                closed = False
            except OSError:
                closed = True
        return Answer(status, rhead, rbody, closed)


class BodyLimitBase(h.StraitTest):
    def site(self, *dp_flags):
        self.srv = h.RawServer(body_handler)
        self.srv.heads, self.srv.bodies = [], []
        self.addCleanup(self.srv.stop)
        self.s.write("svc.yaml", h.service_with_endpoints("sink", self.srv.port))
        self.s.write("ing.yaml",
                     h.ingress("limited", rules=[(LIMITED, [("/", "Prefix", "sink")])],
                               annotations={"strait.dev/proxy-body-size": "1k"}),
                     h.ingress("open", rules=[(OPEN, [("/", "Prefix", "sink")])]),
                     h.ingress("zero", rules=[(ZERO, [("/", "Prefix", "sink")])],
                               annotations={"strait.dev/proxy-body-size": "0"}),
                     h.ingress("fallback", default="sink",
                               annotations={"strait.dev/proxy-body-size": "2k"}))
        self.s.controller()
        h.start_dataplane(self.s, "--workers", "1", *dp_flags)

    def bodies(self):
        with self.srv.lock:
            return dict(self.srv.bodies)

    def heads(self):
        with self.srv.lock:
            return list(self.srv.heads)

    def assertPassed(self, a, path, size):
        self.assertEqual(a.status, 200, repr(a))
        self.assertEqual(a.json(), {"path": path, "body_len": size}, repr(a))

    def refused(self, host, path, size, **kw):
        """post() for a request the proxy should refuse: waits for an early answer (before
        the body, or before each chunk)."""
        kw.setdefault("patience", 0.2 if kw.get("chunked") else 0.5)
        return post(self.s.port, host, path, size, **kw)

    def assertRefused(self, a, path, backend_saw_head=False):
        """413 with Connection: close, the connection closed, the backend without the body
        (and, for a Content-Length over the limit, without even the head)."""
        self.assertEqual(a.status, 413, repr(a))
        self.assertEqual(a.header("connection"), "close", repr(a))
        self.assertTrue(a.closed, "connection still open after 413: %r" % a)
        self.assertNotIn(path, self.bodies(), "the backend got the whole body")
        if not backend_saw_head:
            self.assertNotIn(path, self.heads(), "the upstream was contacted")


class AnnotationTest(BodyLimitBase):
    def setUp(self):
        super().setUp()
        self.site()

    def test_under_limit_passes(self):
        self.assertPassed(post(self.s.port, LIMITED, "/small", 1000), "/small", 1000)
        self.assertPassed(post(self.s.port, LIMITED, "/exact", 1024), "/exact", 1024)
        self.assertPassed(post(self.s.port, LIMITED, "/empty", 0), "/empty", 0)
        self.assertPassed(post(self.s.port, LIMITED, "/chunked-small", 1000, chunked=True),
                          "/chunked-small", 1000)

    def test_413_reaches_a_client_that_keeps_sending(self):
        """A client that does not wait for 100-continue streams the refused body anyway: the
        proxy must drain it (lingering close) rather than close with unread bytes, which makes
        the kernel send RST and can destroy the 413 before the client reads it."""
        body = b"x" * (4 << 20)
        with socket.create_connection(("127.0.0.1", self.s.port), timeout=10) as s:
            s.sendall(b"POST /flood HTTP/1.1\r\nHost: " + LIMITED.encode() +
                      b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
            sent = 0
            while sent < len(body):
                sent += s.send(body[sent:sent + 65536])  # a reset here fails the test
            got = b""
            while True:
                chunk = s.recv(65536)  # ConnectionResetError here fails the test too
                if not chunk:
                    break
                got += chunk
        self.assertEqual(h.status_of(got), 413, got[:200])
        self.assertIn(b"\r\nConnection: close\r\n", got)
        self.assertNotIn("/flood", self.heads(), "the upstream was contacted")

    def test_content_length_over_limit_413(self):
        self.assertRefused(self.refused(LIMITED, "/big", 2000), "/big")
        self.assertRefused(self.refused(LIMITED, "/one-over", 1025), "/one-over")
        # the proxy still serves: a fresh connection under the limit goes through
        self.assertPassed(post(self.s.port, LIMITED, "/after", 10), "/after", 10)

    def test_chunked_over_limit_413(self):
        a = self.refused(LIMITED, "/chunked-big", 2000, chunked=True)
        # a chunked body is only known to be too large once it is: the upstream may have
        # seen the head, never the whole body
        self.assertRefused(a, "/chunked-big", backend_saw_head=True)
        a = self.refused(LIMITED, "/chunked-open-end", 2000, chunked=True, finish=False)
        self.assertRefused(a, "/chunked-open-end", backend_saw_head=True)

    def test_other_host_unlimited_by_default(self):
        self.assertPassed(post(self.s.port, OPEN, "/big", 2000), "/big", 2000)
        self.assertPassed(post(self.s.port, OPEN, "/bigger", 200000), "/bigger", 200000)
        self.assertPassed(post(self.s.port, OPEN, "/chunked", 2000, chunked=True), "/chunked",
                          2000)

    def test_default_backend_limit(self):
        self.assertPassed(post(self.s.port, OTHER, "/fits", 2048), "/fits", 2048)
        self.assertRefused(self.refused(OTHER, "/too-big", 3000), "/too-big")

    def test_snapshot_shows_limits(self):
        st, body = self.s.admin_get("/snapshot")
        self.assertEqual(st, 200, body)
        snap = json.loads(body.decode())
        limits = {v["host"]: [r["max_body"] for r in v["routes"]] for v in snap["vhosts"]}
        self.assertEqual(limits, {LIMITED: [1024], OPEN: [None], ZERO: ["unlimited"]})
        self.assertEqual(snap["default_max_body"], 2048)


class FlagTest(BodyLimitBase):
    """--client-max-body-size 1k: the default for routes without the annotation only."""

    def setUp(self):
        super().setUp()
        self.site("--client-max-body-size", "1k")

    def test_flag_limits_routes_without_annotation(self):
        self.assertPassed(post(self.s.port, OPEN, "/small", 1000), "/small", 1000)
        self.assertRefused(self.refused(OPEN, "/big", 2000), "/big")
        self.assertRefused(self.refused(OPEN, "/chunked-big", 2000, chunked=True),
                           "/chunked-big", backend_saw_head=True)

    def test_annotation_still_wins(self):
        # "0" is unlimited even though the data plane's default is 1k
        self.assertPassed(post(self.s.port, ZERO, "/big", 2000), "/big", 2000)
        self.assertPassed(post(self.s.port, ZERO, "/bigger", 100000), "/bigger", 100000)
        self.assertPassed(post(self.s.port, ZERO, "/chunked", 5000, chunked=True), "/chunked",
                          5000)
        # the default backend's own 2k beats the flag's 1k
        self.assertPassed(post(self.s.port, OTHER, "/fits", 1500), "/fits", 1500)
        self.assertRefused(self.refused(LIMITED, "/lim-big", 2000), "/lim-big")


class ConfigErrorsTest(h.StraitTest):
    def test_bad_annotation_rejects_that_ingress_only(self):
        port = self.s.backend("web")
        self.s.write("svc.yaml", h.service_with_endpoints("web", port))
        self.s.write("ing.yaml",
                     h.ingress("bad", rules=[("bad.test", [("/", "Prefix", "web")])],
                               annotations={"strait.dev/proxy-body-size": "1.5m"}),
                     h.ingress("good", rules=[("good.test", [("/", "Prefix", "web")])],
                               annotations={"strait.dev/proxy-body-size": "10M"}))
        self.s.start()
        self.assertBackend(self.s.curl("good.test", "/"), "web")
        self.assertStatus(self.s.curl("bad.test", "/"), 404)
        rej = [e for e in h.log_events(self.s.controller_log(), "object_rejected")
               if e.get("object") == "default/bad"]
        self.assertEqual(len(rej), 1, self.s.controller_log())
        self.assertEqual(rej[0].get("kind"), "Ingress")
        self.assertIn("strait.dev/proxy-body-size", rej[0].get("reason", ""))
        self.assertIn("1.5m", rej[0].get("reason", ""))

    def test_bad_flag_exits_2(self):
        for bad in ("1x", "-1", "1.5m", "", "1kb", "99999999999999999999"):
            p = subprocess.run([os.path.join(h.BIN, "strait-dataplane"), "--socket",
                                "/nonexistent.sock", "--listen", "127.0.0.1:1",
                                "--client-max-body-size", bad],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=10 * h.SLOW)
            self.assertEqual(p.returncode, 2, "%r: %r" % (bad, p.stderr))
            self.assertIn(b"--client-max-body-size", p.stderr)
