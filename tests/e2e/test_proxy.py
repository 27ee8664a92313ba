"""HTTP/1.1 proxying basics with curl (and raw sockets for what curl will not send):
forwarded headers, keep-alive, request bodies, chunked responses, HEAD, 204, bad requests."""
import os
import socket

import harness as h


class ProxyTest(h.SharedStackTest):
    @classmethod
    def build(cls, s):
        port = s.backend("echo")
        s.write("svc.yaml", h.service_with_endpoints("echo", port))
        s.write("ing.yaml", h.ingress("echo", rules=[("echo.test", [("/", "Prefix", "echo")])]))
        s.start()

    def get(self, path="/", **kw):
        return self.stack.curl("echo.test", path, **kw)

    def test_forwarded_headers(self):
        r = self.get("/fwd?a=1")
        self.assertEqual(r.status, 200, repr(r))
        j = r.json()
        self.assertEqual(j["path"], "/fwd")
        self.assertEqual(j["query"], "a=1")
        self.assertEqual(j["host"], "echo.test", "Host must be forwarded unchanged")
        hd = j["headers"]
        self.assertEqual(hd.get("x-forwarded-for"), "127.0.0.1")
        self.assertEqual(hd.get("x-forwarded-proto"), "http")
        self.assertEqual(hd.get("x-forwarded-host"), "echo.test")
        self.assertEqual(hd.get("user-agent", "").split("/")[0], "curl")

    def test_forwarded_for_appends(self):
        j = self.get("/", headers=["X-Forwarded-For: 203.0.113.9"]).json()
        self.assertEqual(j["headers"].get("x-forwarded-for"), "203.0.113.9, 127.0.0.1")

    def test_host_with_port_forwarded_unchanged(self):
        r = self.stack.curl("Echo.Test:8443", "/")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json()["host"], "Echo.Test:8443")
        self.assertEqual(r.json()["headers"].get("x-forwarded-host"), "Echo.Test:8443")

    def test_keep_alive_two_requests_one_connection(self):
        url = "http://127.0.0.1:%d" % self.stack.port
        import subprocess
        p = subprocess.run(["curl", "-sS", "-v", "--noproxy", "*", "-H", "Host: echo.test",
                            "-o", os.devnull, "-o", os.devnull,
                            "-w", "%{http_code} %{num_connects}\n",
                            url + "/one", url + "/two"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20 * h.SLOW)
        out, err = p.stdout.decode(), p.stderr.decode()
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(out.split("\n")[:2], ["200 1", "200 0"], "curl -w: %r\n%s" % (out, err))
        self.assertIn("Re-using existing connection", err)

    def test_post_content_length_body(self):
        path = os.path.join(self.stack.dir, "body-cl.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(1 << 20))
        r = self.get("/upload", data_file=path)
        self.assertEqual(r.status, 200, repr(r))
        j = r.json()
        self.assertEqual(j["method"], "POST")
        self.assertEqual(j["body_len"], 1 << 20)
        self.assertEqual(j["body_sha256"], h.sha256_file(path))

    def test_post_chunked_body(self):
        path = os.path.join(self.stack.dir, "body-chunked.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(700001))
        r = self.get("/upload", data_file=path, chunked=True)
        self.assertEqual(r.status, 200, repr(r))
        j = r.json()
        self.assertEqual(j["body_len"], 700001)
        self.assertEqual(j["body_sha256"], h.sha256_file(path))

    def test_large_chunked_response(self):
        r = self.get("/big?size=300000&chunks=50")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(len(r.body), 300000)
        self.assertEqual(r.body, b"x" * 300000)
        r = self.get("/json?chunks=50&chunk_delay_ms=2")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json()["path"], "/json")

    def test_large_content_length_response(self):
        r = self.get("/big?size=5000000")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.headers.get("content-length"), "5000000")
        self.assertEqual(r.body, b"x" * 5000000)

    def test_head_has_no_body(self):
        r = self.get("/h?size=1234", method="HEAD")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.headers.get("content-length"), "1234")
        # on one raw connection: HEAD, then GET; the GET's status line must come right after
        # the HEAD's head (a body after HEAD would show up in front of it).
        with socket.create_connection(("127.0.0.1", self.stack.port), timeout=10 * h.SLOW) as s:
            s.sendall(b"HEAD /h?size=1234 HTTP/1.1\r\nHost: echo.test\r\n\r\n")
            head, rest = h.read_http_head(s, 10)
            self.assertEqual(h.status_of(head), 200, head)
            self.assertEqual(rest, b"", "bytes after a HEAD response head: %r" % rest[:100])
            s.sendall(b"GET /h?size=3 HTTP/1.1\r\nHost: echo.test\r\n\r\n")
            head2, rest2 = h.read_http_head(s, 10)
            self.assertTrue(head2.startswith(b"HTTP/1.1 200"), "after HEAD got %r" % head2[:100])

    def test_204_no_content(self):
        url = "http://127.0.0.1:%d" % self.stack.port
        r = self.get("/nc?status=204")
        self.assertEqual(r.status, 204, repr(r))
        self.assertEqual(r.body, b"")
        self.assertEqual(r.backend, "echo")
        # the connection stays usable after a body-less response
        import subprocess
        p = subprocess.run(["curl", "-sS", "--noproxy", "*", "-H", "Host: echo.test",
                            "-o", os.devnull, "-o", os.devnull, "-w", "%{http_code}\n",
                            url + "/nc?status=204", url + "/after"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20 * h.SLOW)
        self.assertEqual(p.stdout.decode().split(), ["204", "200"], p.stderr.decode())

    def test_backend_status_passed_through(self):
        for st in (201, 404, 500, 503):
            r = self.get("/s?status=%d" % st)
            self.assertEqual((r.status, r.backend), (st, "echo"), repr(r))

    def test_malformed_cl_and_te_is_400(self):
        raw = h.raw_exchange(self.stack.port,
                             b"GET / HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 1\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n", timeout=5,
                             until=lambda b: b"\r\n\r\n" in b)
        self.assertEqual(h.status_of(raw), 400, raw[:200])

    def test_malformed_request_line_is_400(self):
        raw = h.raw_exchange(self.stack.port, b"GARBAGE\r\n\r\n", timeout=5,
                             until=lambda b: b"\r\n\r\n" in b)
        self.assertEqual(h.status_of(raw), 400, raw[:200])
        raw = h.raw_exchange(self.stack.port,
                             b"GET / HTTP/1.1\r\nHost: echo.test\r\nContent-Length: abc\r\n\r\n",
                             timeout=5, until=lambda b: b"\r\n\r\n" in b)
        self.assertEqual(h.status_of(raw), 400, raw[:200])

    def test_still_serving_after_bad_requests(self):
        h.raw_exchange(self.stack.port, b"\x00\x01\x02garbage\r\n\r\n", timeout=2,
                       until=lambda b: b"\r\n\r\n" in b)
        self.assertEqual(self.get("/").backend, "echo")
