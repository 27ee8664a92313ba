"""RFC 9110/9112 conformance of the HTTP/1.1 data plane, as a data table over raw sockets.

Each row is: request bytes (one or several pipelined requests) -> the responses expected on
that connection (status, headers, what the backend saw) -> whether the proxy closes the
connection afterwards. "Stays open" is proven by a follow-up request on the same connection
answered by the backend; "closed" by reading EOF (or a reset) before a deadline.
Every response is also checked for a valid Date and no Via (Via goes upstream only); every
response the proxy makes itself for Content-Type text/plain, a matching Content-Length and a
Connection header that tells the truth.

Backends: two tools/backend.py echoes ("echo" for app.example.com, echo.test and lim.test, a
route with a 1k body limit; "wrong" for the host "other"), a service without ready endpoints
(empty.test), an in-process raw backend (raw.test) answering canned, partly malformed bytes
chosen by the request path, and a raw keep-alive backend (ka.test) that numbers its
connections, for what must not be reused.
"""
import email.utils
import json
import re
import socket
import threading
import time

import harness as h

DATE_RE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|"
                     r"Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")

# Canned answers of the raw backend, by request path. Each is sent with one sendall, then the
# backend closes the connection. "/echo-request" is special: the whole request as received
# (head, body, trailers) comes back as the body of a 200.
RAW_ANSWERS = {
    "/until-close": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello until close",
    "/bad-head": b"HTTP/1.1 200 OK\r\nNo Colon Here\r\nContent-Length: 0\r\n\r\n",
    "/garbage": b"garbage\r\n\r\n",
    "/http2": b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    "/bad-chunk-ext": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"1;a=\"b\r\nx\r\n0\r\n\r\n",
    "/good-chunk-ext": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"1 ; a = \"b c\";d\r\nx\r\n0\r\n\r\n",
    "/early-hints": b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "/chunked-and-length": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "/lengths-differ": b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab",
    "/http10-chunked": b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "/chunked-not-last": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nzzz",
    "/status-600": b"HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n",
    "/unasked-101": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n"
                    b"Connection: upgrade\r\n\r\n",
    "/space-before-colon": b"HTTP/1.1 200 OK\r\nX-A \t: b\r\nContent-Length: 2\r\n\r\nok",
    "/204-with-length": b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
    "/trailers": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
                 b"2\r\nok\r\n0\r\nX-Sum: 42\r\n\r\n",
    # header lines in every form a head may hold, a hop-by-hop one in the middle
    "/mixed-forms": b"HTTP/1.1 200 OK\r\nX-A: 1\r\nX-B:2\r\nX-C: 3 \t\r\nKeep-Alive: timeout=5\r\n"
                    b"X-D: 4\r\nX-E:\r\nX-F: 5\nX-G:  six\r\nContent-Length: 2\r\n\r\nok",
}


def _request_complete(buf):
    """True when buf holds a whole request: head, then a Content-Length or chunked body
    (trailers included)."""
    if b"\r\n\r\n" not in buf:
        return False
    head, rest = buf.split(b"\r\n\r\n", 1)
    low = head.lower()
    if b"\r\ntransfer-encoding:" in low:
        return rest.endswith(b"\r\n\r\n") and (rest.startswith(b"0\r\n") or
                                                 b"\r\n0\r\n" in rest)
    for line in low.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(rest) >= int(line.split(b":", 1)[1])
    return True


class RawBackend:
    """A TCP server thread answering RAW_ANSWERS[path] after reading a request head."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        with c:
            c.settimeout(10 * h.SLOW)
            buf = b""
            try:
                while b"\r\n\r\n" not in buf:
                    chunk = c.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                path = buf.split(b" ", 2)[1].decode("latin-1")
                if path == "/echo-request":
                    while not _request_complete(buf):
                        chunk = c.recv(65536)
                        if not chunk:
                            return
                        buf += chunk
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" %
                              (len(buf), buf))
                    return
                c.sendall(RAW_ANSWERS.get(path, b"HTTP/1.1 404 Not Found\r\n\r\n"))
            except OSError:
                pass

    def stop(self):
        self.stopping = True
        self.sock.close()


# Answers of the keep-alive raw backend: every one names its connection (X-Conn); the first
# three send body bytes a body-less response must not have, in the same segment as the head.
KA_ANSWERS = {
    "/204-extra": b"HTTP/1.1 204 No Content\r\nX-Conn: %d\r\nContent-Length: 5\r\n\r\nHELLO",
    "/304-extra": b"HTTP/1.1 304 Not Modified\r\nX-Conn: %d\r\nContent-Length: 5\r\n\r\nHELLO",
    "/head-extra": b"HTTP/1.1 200 OK\r\nX-Conn: %d\r\nContent-Length: 5\r\n\r\nHELLO",
}
KA_DEFAULT = b"HTTP/1.1 200 OK\r\nX-Conn: %d\r\nContent-Length: 2\r\n\r\nok"


def ka_handler(srv, c, n):
    """Keep-alive: answers every request head on the connection from KA_ANSWERS."""
    while True:
        head = srv.read_head(c, timeout=10 * h.SLOW)
        if not head:
            return
        path = head.split(b" ", 2)[1].decode("latin-1")
        c.sendall(KA_ANSWERS.get(path, KA_DEFAULT) % n)


def read_response(sock, deadline, head_request=False, interim=None, trailers=None):
    """Reads one response. Returns (status, [(lower-name, value)], body, eof) where eof is
    True when the body was delimited by the connection closing. Interim (1xx) responses
    before it are appended to `interim` as (status, {lower-name: value}), trailer fields to
    `trailers` as (lower-name, value). Header lines are parsed strictly (a colon, no
    whitespace before it): that is what the proxy must send whatever it received."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += _recv(sock, deadline, "a response head, got %r" % buf[:300])
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    assert lines[0].startswith("HTTP/1.1 "), lines[0]
    headers = []
    for ln in lines[1:]:
        assert ":" in ln, "header line without colon: %r" % ln
        k, v = ln.split(":", 1)
        assert k and k == k.strip(), "whitespace around a header name: %r" % ln
        headers.append((k.lower(), v.strip()))
    hd = dict(headers)
    if status < 200:  # interim: the final response follows
        if interim is not None:
            interim.append((status, hd))
        return read_response(_Prefixed(sock, rest), deadline, head_request, interim, trailers)
    if head_request or status in (204, 304):
        _unread(sock, rest)  # a pipelined next response may already be here
        return status, headers, b"", False
    codings = [t.strip().lower() for t in hd.get("transfer-encoding", "").split(",") if t.strip()]
    if codings and codings[-1] == "chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += _recv(sock, deadline, "a chunk-size line")
            line, rest = rest.split(b"\r\n", 1)
            n = int(line.split(b";")[0].strip(), 16)
            while len(rest) < n + 2:
                rest += _recv(sock, deadline, "chunk data")
            if n == 0:
                while not (rest.startswith(b"\r\n") or b"\r\n\r\n" in rest):
                    rest += _recv(sock, deadline, "trailers")
                section, rest = (b"", rest[2:]) if rest.startswith(b"\r\n") else \
                    rest.split(b"\r\n\r\n", 1)
                for ln in section.decode("latin-1").split("\r\n") if section else []:
                    k, v = ln.split(":", 1)
                    if trailers is not None:
                        trailers.append((k.lower(), v.strip()))
                _unread(sock, rest)
                return status, headers, body, False
            body += rest[:n]
            rest = rest[n + 2:]
    if "content-length" in hd and not codings:
        n = int(hd["content-length"])
        while len(rest) < n:
            rest += _recv(sock, deadline, "%d body bytes" % n)
        _unread(sock, rest[n:])
        return status, headers, rest[:n], False
    while True:
        try:
            chunk = _recv(sock, deadline, "EOF of a read-until-close body", eof_ok=True)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return status, headers, rest, True
        rest += chunk


class _Prefixed:
    """A socket whose first recv returns already-read bytes."""

    def __init__(self, sock, prefix):
        self.sock, self.prefix = sock, prefix

    def recv(self, n):
        if self.prefix:
            p, self.prefix = self.prefix, b""
            return p
        return self.sock.recv(n)

    def settimeout(self, t):
        self.sock.settimeout(t)


def _unread(sock, data):
    """Gives bytes read past the end of a response back to a _Prefixed socket (the first
    one in a chain of wrappers), so the next read_response sees them."""
    if not data or not isinstance(sock, _Prefixed):
        return
    while isinstance(sock.sock, _Prefixed):
        sock = sock.sock
    sock.prefix = data + sock.prefix


def _recv(sock, deadline, what, eof_ok=False):
    left = deadline - time.monotonic()
    if left <= 0:
        raise AssertionError("timed out waiting for " + what)
    sock.settimeout(left)
    chunk = sock.recv(65536)
    if not chunk and not eof_ok:
        raise AssertionError("connection closed while waiting for " + what)
    return chunk


def is_closed(sock, deadline):
    """Polls the connection until EOF/reset (True) or the deadline (False)."""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        if not data:
            return True
        raise AssertionError("unexpected bytes after the response: %r" % data[:200])
    return False


def req(line, host="echo.test", headers=(), body=b"", version="HTTP/1.1"):
    out = ("%s %s\r\n" % (line, version)).encode()
    if host is not None:
        out += b"Host: " + host.encode() + b"\r\n"
    for hv in headers:
        out += hv.encode("latin-1") + b"\r\n"
    return out + b"\r\n" + body


CHUNKED = "Transfer-Encoding: chunked"
ABSENT = object()  # expected header value: not present
LOCAL = "local"  # expected backend: the proxy answered itself

ALLOW = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"


def chunk_ext(n):
    """A one-chunk body "abc" whose size line carries an extension n bytes long."""
    return b"3;" + b"e" * (n - 1) + b"\r\nabc\r\n0\r\n\r\n"


# (name, request bytes, [expected response, ...], closed afterwards)
# An expected response: status, backend ("echo", "wrong", "raw" or LOCAL), saw (fields of the
# echo backend's JSON; "h:name" is a request header it received, ABSENT when missing),
# headers (response headers, ABSENT when missing), body, body_has (byte strings the body
# contains), head (True for a HEAD request), interim ([(status, {header: value})] of the 1xx
# responses before it; not checked when absent), trailers ([(name, value)]).
ROWS = [
    # 1. absolute-form: route and Host/X-Forwarded-Host from the authority, Host ignored
    ("absolute_form_authority_wins",
     req("GET http://app.example.com/static/x", host="other"),
     [dict(status=200, backend="echo",
           saw={"host": "app.example.com", "path": "/static/x", "query": "",
                "h:x-forwarded-host": "app.example.com"})], False),
    ("absolute_form_scheme_case_port_query",
     req("GET HTTP://App.Example.com:8080/s?q=1", host="other"),
     [dict(status=200, backend="echo",
           saw={"host": "App.Example.com:8080", "path": "/s", "query": "q=1",
                "h:x-forwarded-host": "App.Example.com:8080"})], False),
    ("absolute_form_https_empty_path",
     req("GET https://app.example.com", host="other"),
     [dict(status=200, backend="echo", saw={"host": "app.example.com", "path": "/"})], False),
    ("absolute_form_empty_path_with_query",
     req("GET http://app.example.com?a=b", host="other"),
     [dict(status=200, backend="echo", saw={"path": "/", "query": "a=b"})], False),
    ("absolute_form_other_scheme_400", req("GET ftp://app.example.com/x"),
     [dict(status=400, backend=LOCAL)], True),
    ("absolute_form_userinfo_400", req("GET http://u@app.example.com/x"),
     [dict(status=400, backend=LOCAL)], True),
    ("absolute_form_empty_authority_400", req("GET http:///x"),
     [dict(status=400, backend=LOCAL)], True),
    ("absolute_form_still_needs_host_400", req("GET http://app.example.com/", host=None),
     [dict(status=400, backend=LOCAL)], True),
    # 2. request-target forms
    ("origin_form_without_slash_400", req("GET foo"), [dict(status=400, backend=LOCAL)], True),
    ("asterisk_form_with_get_400", req("GET *"), [dict(status=400, backend=LOCAL)], True),
    ("asterisk_form_with_options",
     req("OPTIONS *"),
     [dict(status=200, backend="echo", saw={"method": "OPTIONS", "path": "*"})], False),
    ("connect_405", req("CONNECT app.example.com:443", host="app.example.com:443"),
     [dict(status=405, backend=LOCAL,
           headers={"allow": "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"})], True),
    # 3. versions
    ("version_2_0_505", req("GET /", version="HTTP/2.0"), [dict(status=505, backend=LOCAL)], True),
    ("version_3_0_505", req("GET /", version="HTTP/3.0"), [dict(status=505, backend=LOCAL)], True),
    ("version_lowercase_400", req("GET /", version="http/1.1"),
     [dict(status=400, backend=LOCAL)], True),
    ("version_two_digit_minor_400", req("GET /", version="HTTP/1.10"),
     [dict(status=400, backend=LOCAL)], True),
    ("version_no_minor_400", req("GET /", version="HTTP/1"),
     [dict(status=400, backend=LOCAL)], True),
    # 4. chunk extensions, request side (response side: raw rows below)
    ("chunk_ext_unterminated_quote_400",
     req("POST /ce", headers=[CHUNKED], body=b"1;a=\"b\r\nx\r\n0\r\n\r\n"),
     [dict(status=400, backend=LOCAL)], True),
    ("chunk_ext_empty_name_400",
     req("POST /ce", headers=[CHUNKED], body=b"1;\r\nx\r\n0\r\n\r\n"),
     [dict(status=400, backend=LOCAL)], True),
    ("chunk_ext_valid_with_bws_and_quotes",
     req("POST /ce", headers=[CHUNKED], body=b"3 ; a = b ;c=\"d;e\\\"\"\r\nabc\r\n0\r\n\r\n"),
     [dict(status=200, backend="echo", saw={"body_len": 3})], False),
    # 5. the proxy's own responses (Date etc. are checked for every LOCAL row)
    ("no_route_404", req("GET /", host="nowhere.test"), [dict(status=404, backend=LOCAL)], False),
    ("no_endpoint_503", req("GET /", host="empty.test"), [dict(status=503, backend=LOCAL)], False),
    ("uri_too_long_414", req("GET /" + "a" * 9000), [dict(status=414, backend=LOCAL)], True),
    ("too_many_headers_431", req("GET /", headers=["X-%d: y" % i for i in range(101)]),
     [dict(status=431, backend=LOCAL)], True),
    ("unknown_transfer_coding_501", req("POST /", headers=["Transfer-Encoding: gzip"]),
     [dict(status=501, backend=LOCAL)], True),
    ("head_of_local_error_has_no_body", req("HEAD /", host="nowhere.test"),
     [dict(status=404, backend=LOCAL, head=True)], False),
    # 6. Via on forwarded requests only
    ("via_added", req("GET /via"),
     [dict(status=200, backend="echo", saw={"h:via": "1.1 strait"})], False),
    ("via_appended",
     req("GET /via", headers=["Via: 1.0 fred", "Via: 1.1 p2.example"]),
     [dict(status=200, backend="echo", saw={"h:via": "1.0 fred, 1.1 p2.example, 1.1 strait"})],
     False),
    ("via_http10_client",
     req("GET /via", version="HTTP/1.0", headers=["Connection: keep-alive"]),
     [dict(status=200, backend="echo", saw={"h:via": "1.0 strait"},
           headers={"connection": "keep-alive"})], False),
    # 7. Host grammar
    ("host_duplicate_400", req("GET /", headers=["Host: echo.test"]),
     [dict(status=400, backend=LOCAL)], True),
    ("host_userinfo_400", req("GET /", host="u@echo.test"), [dict(status=400, backend=LOCAL)], True),
    ("host_space_400", req("GET /", host="echo .test"), [dict(status=400, backend=LOCAL)], True),
    ("host_slash_400", req("GET /", host="echo.test/x"), [dict(status=400, backend=LOCAL)], True),
    ("host_backslash_400", req("GET /", host="echo\\test"), [dict(status=400, backend=LOCAL)], True),
    ("host_bad_percent_400", req("GET /", host="echo%zz.test"),
     [dict(status=400, backend=LOCAL)], True),
    ("host_bad_port_400", req("GET /", host="echo.test:8x"), [dict(status=400, backend=LOCAL)], True),
    ("host_port_ok", req("GET /", host="Echo.Test:8443"),
     [dict(status=200, backend="echo", saw={"host": "Echo.Test:8443"})], False),
    # 8. connection management and framing
    ("connection_close_request", req("GET /", headers=["Connection: close"]),
     [dict(status=200, backend="echo", headers={"connection": "close"})], True),
    ("http10_keep_alive",
     req("GET /k", version="HTTP/1.0", headers=["Connection: keep-alive"]),
     [dict(status=200, backend="echo", headers={"connection": "keep-alive"})], False),
    ("http10_default_close", req("GET /k", version="HTTP/1.0"),
     [dict(status=200, backend="echo", headers={"connection": "close"})], True),
    ("pipelined_head_then_get",
     req("HEAD /h?size=1234") + req("GET /h?size=3"),
     [dict(status=200, backend="echo", head=True, headers={"content-length": "1234"}, body=b""),
      dict(status=200, backend="echo", body=b"xxx")], False),
    ("pipelined_304_then_get", req("GET /n?status=304") + req("GET /after304"),
     [dict(status=304, backend="echo", body=b""),
      dict(status=200, backend="echo", saw={"path": "/after304"})], False),
    ("pipelined_204_then_get", req("GET /n?status=204") + req("GET /after204"),
     [dict(status=204, backend="echo", body=b""),
      dict(status=200, backend="echo", saw={"path": "/after204"})], False),
    ("transfer_encoding_in_http10_400",
     req("POST /", version="HTTP/1.0", headers=[CHUNKED, "Connection: keep-alive"],
         body=b"0\r\n\r\n"),
     [dict(status=400, backend=LOCAL)], True),
    ("transfer_encoding_two_lines_last_chunked",
     req("POST /te", headers=["Transfer-Encoding: gzip", CHUNKED], body=b"3\r\nabc\r\n0\r\n\r\n"),
     [dict(status=200, backend="echo", saw={"method": "POST"})], False),
    ("transfer_encoding_one_line_last_chunked",
     req("POST /te", headers=["Transfer-Encoding: gzip, chunked"], body=b"3\r\nabc\r\n0\r\n\r\n"),
     [dict(status=200, backend="echo",
           saw={"h:transfer-encoding": "gzip, chunked", "body_len": 3})], False),
    # RFC 9112 6.3: chunked must be the last coding of a request
    ("transfer_encoding_chunked_not_last_400",
     req("POST /te", headers=["Transfer-Encoding: chunked, gzip"], body=b"3\r\nabc\r\n0\r\n\r\n"),
     [dict(status=400, backend=LOCAL)], True),
    ("content_length_and_chunked_400",
     req("POST /", headers=["Content-Length: 3", CHUNKED], body=b"3\r\nabc\r\n0\r\n\r\n"),
     [dict(status=400, backend=LOCAL)], True),
    ("pipelined_post_with_body_then_get",
     req("POST /p1", headers=["Content-Length: 5"], body=b"hello") + req("GET /p2"),
     [dict(status=200, backend="echo", saw={"method": "POST", "path": "/p1", "body_len": 5}),
      dict(status=200, backend="echo", saw={"method": "GET", "path": "/p2", "body_len": 0})],
     False),
    ("pipelined_chunked_post_then_get",
     req("POST /c1", headers=[CHUNKED], body=b"2\r\nhi\r\n0\r\n\r\n") + req("GET /c2"),
     [dict(status=200, backend="echo", saw={"path": "/c1", "body_len": 2}),
      dict(status=200, backend="echo", saw={"path": "/c2"})], False),
    # RFC 9112 7.1.2: trailer fields travel with the chunked body, Trailer with the head
    ("request_trailers_forwarded",
     req("POST /echo-request", host="raw.test", headers=[CHUNKED, "Trailer: X-T"],
         body=b"3\r\nabc\r\n0\r\nX-T: v\r\n\r\n"),
     [dict(status=200, backend="raw",
           body_has=[b"\r\nTrailer: X-T\r\n", b"\r\n\r\n3\r\nabc\r\n0\r\nX-T: v\r\n\r\n"])],
     False),
    # 9. message syntax (RFC 9112 2-5)
    ("leading_empty_lines_ignored", b"\r\n\r\n" + req("GET /lead"),
     [dict(status=200, backend="echo", saw={"path": "/lead"})], False),
    ("request_line_two_spaces_400", req("GET  /"), [dict(status=400, backend=LOCAL)], True),
    ("request_line_missing_version_400", b"GET /\r\nHost: echo.test\r\n\r\n",
     [dict(status=400, backend=LOCAL)], True),
    ("header_space_before_colon_400", req("GET /", headers=["X-A : b"]),
     [dict(status=400, backend=LOCAL)], True),
    ("header_without_colon_400", req("GET /", headers=["NoColon"]),
     [dict(status=400, backend=LOCAL)], True),
    ("header_value_nul_400", req("GET /", headers=["X-A: a\x00b"]),
     [dict(status=400, backend=LOCAL)], True),
    ("header_value_obs_text_forwarded", req("GET /", headers=["X-Obs: caf\xe9 \xff"]),
     [dict(status=200, backend="echo", saw={"h:x-obs": "caf\xe9 \xff"})], False),
    # RFC 9112 7.1.1: chunk extensions are bounded (4 KiB per size line)
    ("chunk_ext_long_within_bound", req("POST /ce", headers=[CHUNKED], body=chunk_ext(4000)),
     [dict(status=200, backend="echo", saw={"body_len": 3})], False),
    ("chunk_ext_over_bound_400", req("POST /ce", headers=[CHUNKED], body=chunk_ext(5000)),
     [dict(status=400, backend=LOCAL)], True),
    # 10. Expect (RFC 9110 10.1.1): forwarded; the upstream's 100 is relayed to 1.1 clients
    ("expect_100_continue_relayed",
     req("POST /e", headers=["Content-Length: 5", "Expect: 100-continue"], body=b"hello"),
     [dict(status=200, backend="echo", interim=[(100, {})],
           saw={"body_len": 5, "h:expect": "100-continue"})], False),
    ("expect_100_continue_http10_client",
     req("POST /e", version="HTTP/1.0",
         headers=["Content-Length: 5", "Expect: 100-continue", "Connection: keep-alive"],
         body=b"hello"),
     [dict(status=200, backend="echo", interim=[], saw={"body_len": 5})], False),
    # a final status known from the head is sent at once, without 100 (body never sent)
    ("expect_100_continue_over_body_limit_413",
     req("POST /e", host="lim.test", headers=["Content-Length: 5000", "Expect: 100-continue"]),
     [dict(status=413, backend=LOCAL, interim=[])], True),
    # an unknown expectation is the origin's to refuse with 417 (as Envoy; nginx drops Expect)
    ("expect_unknown_forwarded",
     req("POST /e", headers=["Content-Length: 2", "Expect: x-foo"], body=b"hi"),
     [dict(status=200, backend="echo", interim=[], saw={"h:expect": "x-foo", "body_len": 2})],
     False),
    # 11. Max-Forwards (RFC 9110 7.6.2), OPTIONS and TRACE only
    ("max_forwards_options_0_answered_here", req("OPTIONS /", headers=["Max-Forwards: 0"]),
     [dict(status=200, backend=LOCAL, body=b"",
           headers={"allow": ALLOW, "content-length": "0"})], False),
    ("max_forwards_options_asterisk_0", req("OPTIONS *", headers=["Max-Forwards: 0"]),
     [dict(status=200, backend=LOCAL, body=b"", headers={"allow": ALLOW})], False),
    ("max_forwards_options_decremented", req("OPTIONS /", headers=["Max-Forwards: 5"]),
     [dict(status=200, backend="echo", saw={"method": "OPTIONS", "h:max-forwards": "4"})],
     False),
    ("max_forwards_trace_0_405", req("TRACE /", headers=["Max-Forwards: 0"]),
     [dict(status=405, backend=LOCAL, headers={"allow": ALLOW})], False),
    ("max_forwards_trace_decremented",
     req("TRACE /echo-request", host="raw.test", headers=["Max-Forwards: 3"]),
     [dict(status=200, backend="raw", body_has=[b"\r\nMax-Forwards: 2\r\n"])], False),
    ("max_forwards_get_untouched", req("GET /", headers=["Max-Forwards: 0"]),
     [dict(status=200, backend="echo", saw={"h:max-forwards": "0"})], False),
    ("max_forwards_malformed_400", req("OPTIONS /", headers=["Max-Forwards: x"]),
     [dict(status=400, backend=LOCAL)], True),
    # upstream responses (raw backend)
    ("upstream_read_until_close", req("GET /until-close", host="raw.test"),
     [dict(status=200, backend="raw", body=b"hello until close",
           headers={"connection": "close", "content-length": ABSENT})], True),
    ("upstream_bad_head_502", req("GET /bad-head", host="raw.test"),
     [dict(status=502, backend=LOCAL)], False),
    ("upstream_garbage_502", req("GET /garbage", host="raw.test"),
     [dict(status=502, backend=LOCAL)], False),
    ("upstream_http2_status_line_502", req("GET /http2", host="raw.test"),
     [dict(status=502, backend=LOCAL)], False),
    ("upstream_bad_chunk_ext_502", req("GET /bad-chunk-ext", host="raw.test"),
     [dict(status=502, backend=LOCAL)], False),
    ("upstream_good_chunk_ext", req("GET /good-chunk-ext", host="raw.test"),
     [dict(status=200, backend="raw", body=b"x")], False),
    # RFC 9110 15.2: 1xx are forwarded to HTTP/1.1 clients, never to 1.0 ones
    ("upstream_early_hints_relayed", req("GET /early-hints", host="raw.test"),
     [dict(status=200, backend="raw", body=b"ok",
           interim=[(103, {"link": "</s.css>; rel=preload"})])], False),
    ("upstream_early_hints_not_to_http10",
     req("GET /early-hints", host="raw.test", version="HTTP/1.0"),
     [dict(status=200, backend="raw", body=b"ok", interim=[])], True),
    # RFC 9112 6.3: both framings is an error (ours: 502); the client never sees both
    ("upstream_chunked_and_length_502", req("GET /chunked-and-length", host="raw.test"),
     [dict(status=502, backend=LOCAL)], False),
    ("upstream_lengths_differ_502", req("GET /lengths-differ", host="raw.test"),
     [dict(status=502, backend=LOCAL)], False),
    # RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing
    ("upstream_http10_transfer_encoding_502", req("GET /http10-chunked", host="raw.test"),
     [dict(status=502, backend=LOCAL)], False),
    # RFC 9112 6.3: a response whose last coding is not chunked ends when the server closes
    ("upstream_chunked_not_last_until_close", req("GET /chunked-not-last", host="raw.test"),
     [dict(status=200, backend="raw", body=b"zzz",
           headers={"transfer-encoding": "chunked, gzip", "connection": "close"})], True),
    # RFC 9110 15: status codes outside 100..599 are invalid
    ("upstream_status_600_502", req("GET /status-600", host="raw.test"),
     [dict(status=502, backend=LOCAL)], False),
    ("upstream_unasked_101_502", req("GET /unasked-101", host="raw.test"),
     [dict(status=502, backend=LOCAL)], False),
    # RFC 9112 5.1: a proxy removes whitespace before the colon (the reader checks it is gone)
    ("upstream_space_before_colon_removed", req("GET /space-before-colon", host="raw.test"),
     [dict(status=200, backend="raw", body=b"ok", headers={"x-a": "b"})], False),
    # RFC 9110 8.6: no Content-Length on a 204
    ("upstream_204_content_length_dropped", req("GET /204-with-length", host="raw.test"),
     [dict(status=204, backend="raw", body=b"", headers={"content-length": ABSENT})], False),
    ("upstream_trailers_relayed", req("GET /trailers", host="raw.test"),
     [dict(status=200, backend="raw", body=b"ok", headers={"trailer": "X-Sum"},
           trailers=[("x-sum", "42")])], False),
]


class HttpConformanceTest(h.SharedStackTest):
    raw = None

    ka = None

    @classmethod
    def build(cls, s):
        ports = s.backends("echo", "wrong")
        cls.raw = RawBackend()
        cls.ka = h.RawServer(ka_handler)
        s.write("svc.yaml",
                h.service_with_endpoints("echo", ports["echo"]),
                h.service_with_endpoints("wrong", ports["wrong"]),
                h.service_with_endpoints("raw", cls.raw.port),
                h.service_with_endpoints("ka", cls.ka.port),
                h.service_with_endpoints("empty", ports["echo"], ready=False))
        s.write("ing.yaml", h.ingress("conf", rules=[
            ("app.example.com", [("/", "Prefix", "echo")]),
            ("echo.test", [("/", "Prefix", "echo")]),
            ("other", [("/", "Prefix", "wrong")]),
            ("raw.test", [("/", "Prefix", "raw")]),
            ("ka.test", [("/", "Prefix", "ka")]),
            ("empty.test", [("/", "Prefix", "empty")]),
        ]), h.ingress("lim", rules=[("lim.test", [("/", "Prefix", "echo")])],
                      annotations={"strait.dev/proxy-body-size": "1k"}))
        s.start()

    @classmethod
    def tearDownClass(cls):
        if cls.raw:
            cls.raw.stop()
        if cls.ka:
            cls.ka.stop()
        super().tearDownClass()

    def test_upstream_extra_bytes_after_bodyless_response(self):
        """A 204, a 304 or a HEAD answer followed by body bytes (RFC 9112 6.3: it has none):
        the bytes do not reach the client, and the upstream connection that sent them is
        not reused - the next request on the same client connection gets a fresh one."""
        deadline = time.monotonic() + 10 * h.SLOW
        with socket.create_connection(("127.0.0.1", self.stack.port), timeout=10 * h.SLOW) as raw:
            s = _Prefixed(raw, b"")
            for method, path, status, length in (("GET", "/204-extra", 204, ABSENT),
                                                 ("GET", "/304-extra", 304, "5"),
                                                 ("HEAD", "/head-extra", 200, "5")):
                name = "%s %s" % (method, path)
                raw.sendall(req("%s %s" % (method, path), host="ka.test"))
                st, headers, body, eof = read_response(s, deadline, method == "HEAD")
                self.check_response(name, dict(status=status, backend="raw", body=b"",
                                               headers={"content-length": length}),
                                    st, headers, body, False)
                raw.sendall(req("GET /next", host="ka.test"))
                st2, headers2, body2, eof2 = read_response(s, deadline)
                self.check_response(name + " then GET", dict(status=200, backend="raw",
                                                             body=b"ok"),
                                    st2, headers2, body2, False)
                self.assertNotEqual(dict(headers2)["x-conn"], dict(headers)["x-conn"],
                                    "%s: the connection that sent extra bytes was reused" % name)

    def _head_lines(self, sock, deadline):
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += _recv(sock, deadline, "a head, got %r" % buf[:300])
        head, rest = buf.split(b"\r\n\r\n", 1)
        return head.split(b"\r\n"), rest

    def test_header_lines_forwarded_in_canonical_form_and_order(self):
        """Header lines reach the other side as "Name: value" CRLF, in their order, whatever
        form they came in (no space after the colon, trailing whitespace, an empty value, a
        bare LF ending, extra spaces), with hop-by-hop ones left out: both for a response
        (to the client) and for a request (to the upstream, which echoes it)."""
        deadline = time.monotonic() + 10 * h.SLOW
        want = [b"X-A: 1", b"X-B: 2", b"X-C: 3", b"X-D: 4", b"X-E: ", b"X-F: 5", b"X-G: six"]
        with socket.create_connection(("127.0.0.1", self.stack.port), timeout=10 * h.SLOW) as c:
            c.sendall(req("GET /mixed-forms", host="raw.test"))
            lines, _ = self._head_lines(c, deadline)
        self.assertEqual(lines[0], b"HTTP/1.1 200 OK", lines)
        self.assertEqual(lines[1:8], want, lines)
        self.assertNotIn(b"keep-alive: timeout=5", [x.lower() for x in lines], lines)

        raw = (b"GET /echo-request HTTP/1.1\r\nHost: raw.test\r\nX-A: 1\r\nX-B:2\r\n"
               b"X-C: 3 \t\r\nConnection: x-hop\r\nX-Hop: gone\r\nX-D: 4\r\nX-E:\r\n"
               b"X-F: 5\nX-G:  six\r\n\r\n")
        with socket.create_connection(("127.0.0.1", self.stack.port), timeout=10 * h.SLOW) as c:
            c.sendall(raw)
            _, rest = self._head_lines(c, deadline)
            while b"\r\n\r\n" not in rest:
                rest += _recv(c, deadline, "the echoed request, got %r" % rest[:300])
        upstream = rest.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        self.assertEqual(upstream[0], b"GET /echo-request HTTP/1.1", upstream)
        self.assertEqual(upstream[1], b"Host: raw.test", upstream)
        self.assertEqual(upstream[2:9], want, upstream)
        self.assertFalse([x for x in upstream if x.lower().startswith((b"x-hop", b"connection"))],
                         upstream)

    def check_response(self, name, exp, status, headers, body, closed_after):
        hd = dict(headers)
        ctx = "%s: status %d headers %r body %r" % (name, status, headers, body[:300])
        self.assertEqual(status, exp["status"], ctx)
        self.assertEqual(len([k for k, _ in headers if k == "date"]), 1, ctx)
        self.assertRegex(hd["date"], DATE_RE, ctx)
        self.assertLess(abs(email.utils.parsedate_to_datetime(hd["date"]).timestamp() -
                            time.time()), 120, ctx)
        self.assertNotIn("via", hd, ctx)
        backend = exp["backend"]
        if backend == LOCAL:
            self.assertNotIn("x-backend", hd, ctx)
            self.assertEqual(hd.get("content-type"), "text/plain", ctx)
            self.assertTrue(hd.get("content-length", "").isdigit(), ctx)
            if not exp.get("head"):
                self.assertEqual(int(hd["content-length"]), len(body), ctx)
                if "body" not in exp:  # an error text
                    self.assertTrue(body.endswith(b"\n"), ctx)
            self.assertEqual(hd.get("connection"), "close" if closed_after else "keep-alive",
                             ctx)
        elif backend == "raw":
            self.assertNotIn("x-backend", hd, ctx)
        else:
            self.assertEqual(hd.get("x-backend"), backend, ctx)
        if exp.get("head"):
            self.assertEqual(body, b"", ctx)
        for k, v in exp.get("headers", {}).items():
            self.assertEqual(hd.get(k, ABSENT), v, ctx)
        if "body" in exp:
            self.assertEqual(body, exp["body"], ctx)
        for part in exp.get("body_has", ()):
            self.assertIn(part, body, ctx)
        saw = exp.get("saw")
        if saw:
            j = json.loads(body.decode())
            for k, v in saw.items():
                got = j["headers"].get(k[2:], ABSENT) if k.startswith("h:") else j.get(k)
                self.assertEqual(got, v, "%s: backend saw %s=%r, want %r; %r" % (
                    name, k, got, v, j))

    def run_row(self, name, data, expected, closed):
        deadline = time.monotonic() + 10 * h.SLOW
        with socket.create_connection(("127.0.0.1", self.stack.port), timeout=10 * h.SLOW) as raw:
            raw.sendall(data)
            s = _Prefixed(raw, b"")
            for i, exp in enumerate(expected):
                last = i == len(expected) - 1
                interim, trailers = [], []
                status, headers, body, eof = read_response(s, deadline, exp.get("head", False),
                                                           interim, trailers)
                self.check_response(name, exp, status, headers, body, closed and last)
                if "interim" in exp:
                    self.assertEqual(interim, exp["interim"], "%s: 1xx responses" % name)
                self.assertEqual(trailers, exp.get("trailers", []), "%s: trailers" % name)
            if closed:
                self.assertTrue(eof or is_closed(raw, deadline),
                                "%s: connection still open after the response" % name)
                return
            self.assertFalse(eof, "%s: response was delimited by close" % name)
            raw.sendall(req("GET /follow-up"))
            status, headers, body, eof = read_response(s, deadline)
            self.assertEqual((status, dict(headers).get("x-backend")), (200, "echo"),
                             "%s: follow-up on the same connection: %r" % (name, body[:200]))
            self.assertEqual(json.loads(body.decode())["path"], "/follow-up")


def _make(row):
    name, data, expected, closed = row

    def test(self):
        self.run_row(name, data, expected, closed)
    test.__name__ = "test_" + name
    return test


for _row in ROWS:
    assert not hasattr(HttpConformanceTest, "test_" + _row[0]), _row[0]
    setattr(HttpConformanceTest, "test_" + _row[0], _make(_row))
