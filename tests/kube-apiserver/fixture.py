"""Test-side helpers for the stand-in API server: start and stop it, send requests, read a
watch stream chunk by chunk, drive /_control/ and run kubectl against it.

  import sys; sys.path.insert(0, "tests/kube-apiserver"); import fixture
  srv = fixture.ApiServer(tmpdir).start()
  code, obj = srv.request("POST", "/api/v1/namespaces/default/services", {...})
  w = srv.watch("/api/v1/services?watch=1&resourceVersion=" + rv)
  ev = w.next()          # {"type": ..., "object": ...}, or None at the end (w.end says how)
  srv.control("POST", "cut-watches")
  srv.stop()

What it does not: retry, or hide anything of the wire format. Watch reads its stream with
its own chunk parser, so a test can tell a clean end (the terminating chunk: w.end ==
"clean") from a cut connection (w.end == "abrupt"), and checks that each chunk is exactly
one JSON event line.
"""
import http.client
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SERVER = os.path.join(HERE, "server.py")
KUBECTL_SH = os.path.join(ROOT, "tools", "kubectl.sh")
_kubectl = None


def kubectl_path():
    """The kubectl binary tools/kubectl.sh installs (once) into build/tools/."""
    global _kubectl
    if _kubectl is None:
        out = subprocess.run(["bash", KUBECTL_SH], check=True, stdout=subprocess.PIPE, timeout=600)
        _kubectl = out.stdout.decode().strip().splitlines()[-1]
    return _kubectl


class ApiServer:
    def __init__(self, d, tokens=("test-token",), forbidden=(), args=()):
        self.dir = d
        self.tokens, self.forbidden, self.args = list(tokens), list(forbidden), list(args)
        self.proc = None
        self.port = None
        self.listen_line = None

    @property
    def token(self):
        return self.tokens[0]

    @property
    def kubeconfig(self):
        return os.path.join(self.dir, "kubeconfig")

    @property
    def ca(self):
        return os.path.join(self.dir, "ca.crt")

    def start(self, timeout=20):
        os.makedirs(self.dir, exist_ok=True)
        cmd = [sys.executable, SERVER, "--dir", self.dir, "--port", str(self.port or 0)]
        for t in self.tokens:
            cmd += ["--token", t]
        for t in self.forbidden:
            cmd += ["--forbidden-token", t]
        self.log = open(os.path.join(self.dir, "apiserver.log"), "ab")
        self.proc = subprocess.Popen(cmd + self.args, stdout=subprocess.PIPE, stderr=self.log)
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode() if r else ""
        if not line.startswith("listening https://127.0.0.1:"):
            self.stop()
            raise RuntimeError("kube-apiserver did not start: %r (log in %s)" % (line, self.dir))
        self.listen_line = line
        self.port = int(line.rsplit(":", 1)[1])
        self.ctx = ssl.create_default_context(cafile=self.ca)
        return self

    def stop(self):
        """SIGTERM; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc.stdout.close()
        self.log.close()
        self.proc = None
        return rc

    def log_text(self):
        try:
            with open(os.path.join(self.dir, "apiserver.log"), "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    # -- requests -----------------------------------------------------------------------

    def raw(self, method, path, body=None, token=None, ctype=None, headers=None, timeout=30):
        """Sends one request; returns (status, headers dict with lower-case names, bytes)."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=timeout)
        h = {"Accept": "application/json"}
        tok = self.token if token is None else token
        if tok:
            h["Authorization"] = "Bearer " + tok
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h["Content-Type"] = ctype or "application/json"
        h.update(headers or {})
        try:
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def request(self, method, path, body=None, **kw):
        """Like raw(); returns (status, decoded JSON body)."""
        code, _, data = self.raw(method, path, body, **kw)
        return code, json.loads(data) if data else None

    def control(self, method, what, body=None):
        code, obj = self.request(method, "/_control/" + what, body)
        if code != 200:
            raise AssertionError("control %s %s: %s %r" % (method, what, code, obj))
        return obj

    def watch(self, path, token=None, timeout=10):
        return Watch(self, path, token, timeout)

    def kubectl(self, *args, check=True, stdin=None, timeout=60):
        env = dict(os.environ, KUBECONFIG=self.kubeconfig, HOME=self.dir)
        p = subprocess.run([kubectl_path()] + list(args), env=env, input=stdin, timeout=timeout,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if check and p.returncode != 0:
            raise AssertionError("kubectl %s: rc=%d\n%s%s" % (" ".join(args), p.returncode,
                                                           p.stdout.decode(), p.stderr.decode()))
        return p


class Watch:
    """One watch request on its own TLS connection, read chunk by chunk."""

    def __init__(self, srv, path, token, timeout):
        tok = srv.token if token is None else token
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)
        self.sock = srv.ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: application/json\r\n" % (path, srv.port)
        if tok:
            req += "Authorization: Bearer %s\r\n" % tok
        self.sock.sendall((req + "\r\n").encode())
        self.buf = bytearray()
        self.end = None  # "clean" after the terminating chunk, "abrupt" on EOF before it
        self.chunks = 0
        deadline = time.monotonic() + timeout
        status = self._line(deadline)
        self.status = int(status.split()[1])
        self.headers = {}
        while True:
            line = self._line(deadline)
            if not line:
                break
            k, v = line.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()
        self.body = None
        if self.headers.get("transfer-encoding") != "chunked":  # an error answer
            n = int(self.headers.get("content-length", "0"))
            self.body = json.loads(self._exact(n, deadline)) if n else None
            self.end = "clean"

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("watch: nothing to read in time")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("watch: nothing to read in time")
        except (ssl.SSLError, ConnectionError):
            data = b""
        if not data:
            raise EOFError
        self.buf += data

    def _line(self, deadline):
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        i = self.buf.index(b"\r\n")
        line = bytes(self.buf[:i]).decode()
        del self.buf[:i + 2]
        return line

    def _exact(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def next(self, timeout=5):
        """The next event, or None when the stream has ended (self.end says how). Raises
        TimeoutError if nothing arrives within timeout seconds."""
        if self.end:
            return None
        deadline = time.monotonic() + timeout
        try:
            size = int(self._line(deadline).split(";")[0], 16)
            if size == 0:
                self._line(deadline)  # the empty trailer line
                self.end = "clean"
                return None
            data = self._exact(size, deadline)
            if self._exact(2, deadline) != b"\r\n":
                raise AssertionError("chunk not followed by CRLF")
        except EOFError:
            self.end = "abrupt"
            return None
        self.chunks += 1
        if not data.endswith(b"\n") or data.count(b"\n") != 1:
            raise AssertionError("a watch chunk must be exactly one JSON line: %r" % data[:200])
        return json.loads(data)

    def events(self, n, timeout=5):
        """The next n events (fewer if the stream ends)."""
        out = []
        while len(out) < n:
            ev = self.next(timeout)
            if ev is None:
                break
            out.append(ev)
        return out

    def quiet(self, seconds, allow=("BOOKMARK",)):
        """Asserts that no event other than those of the types in allow comes for seconds."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                ev = self.next(left)
            except TimeoutError:
                return
            if ev is None:
                return
            if ev["type"] not in allow:
                raise AssertionError("unexpected event %s %s" % (ev["type"], ev["object"].get("metadata")))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
