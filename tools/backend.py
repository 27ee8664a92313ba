#!/usr/bin/env python3
"""Demo and test backend for Strait (interface: docs/contract.md, "Demo / test backend").

A threaded HTTP/1.1 server with keep-alive. Every response carries `X-Backend: NAME`; the
default body is JSON describing the request it answered, so a test can tell which backend
served a request and what the proxy forwarded. Query parameters change the answer:
  delay_ms=N                 wait N ms before answering
  status=N                   answer with status N (1xx/204/304 get no body)
  chunks=N&chunk_delay_ms=M  send the body with Transfer-Encoding: chunked in N pieces
  size=N                     answer with N bytes of 'x' (text/plain) instead of JSON
Request bodies are always read completely (Content-Length or chunked) and hashed.
--status N answers N when the query does not say (a failing replica for retry tests);
--delay-ms N waits N ms before every answer the query gives no delay_ms (a slow replica);
--record FILE appends the JSON description of every request to FILE, one line each (what a
mirror received, though nobody sees its answers).
--health-file FILE: a GET of --health-path (default /healthz, query ignored) answers 200 "ok"
while FILE exists and 503 "unhealthy" otherwise (an e2e test flips an active health check by
creating or removing FILE); such requests are never delayed, and --record marks them "health": true.
With --tls-cert/--tls-key it speaks HTTPS (TLS 1.2+; the handshake runs in the connection's
thread) and the JSON body also says "tls": {"sni": NAME or null, "version": "TLSv1.3",
"resumed": true when the client resumed a session}.

Python standard library only.
"""
import argparse
import hashlib
import json
import os
import signal
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def _int_param(q, name, default=0):
    try:
        return int(q.get(name, [default])[0])
    except (TypeError, ValueError):
        return default


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # head and body in one segment: without these, Nagle holds the body back until the
    # proxy's delayed ACK (40 ms per keep-alive request)
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024
    server_version = "strait-demo-backend"
    sys_version = ""
    backend_name = "backend"

    def handle_expect_100(self):
        ok = super().handle_expect_100()
        self.wfile.flush()  # the client waits for it: do not leave it in the buffer
        return ok

    def log_message(self, fmt, *args):  # quiet unless --verbose
        if self.server.verbose:
            sys.stderr.write("backend=%s %s\n" % (self.backend_name, fmt % args))

    def _read_body(self):
        """Reads the request body fully; returns it as bytes (or None if malformed)."""
        # every Transfer-Encoding line counts (RFC 9110 5.3: they form one list); only the
        # first would leave a chunked body unread after "Transfer-Encoding: gzip" + "chunked"
        te = ",".join(self.headers.get_all("Transfer-Encoding") or []).lower()
        if "chunked" in te:
            body = bytearray()
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    return None
                try:
                    n = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    return None
                if n == 0:
                    # trailers until the empty line
                    while True:
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    return bytes(body)
                data = self.rfile.read(n)
                if len(data) != n:
                    return None
                body += data
                self.rfile.readline(3)  # CRLF after the chunk
        cl = self.headers.get("Content-Length")
        if cl is None:
            return b""
        try:
            n = int(cl)
        except ValueError:
            return None
        data = self.rfile.read(n) if n > 0 else b""
        return data if len(data) == n else None

    def _handle(self):
        body = self._read_body()
        if body is None:
            self.close_connection = True
            self.send_error(400, "bad request body")
            return
        parts = urlsplit(self.path)
        if (self.server.health_file and self.command == "GET"
                and parts.path == self.server.health_path):
            self._health()
            return
        q = parse_qs(parts.query)
        delay = _int_param(q, "delay_ms", self.server.default_delay)
        if delay > 0:
            time.sleep(delay / 1000.0)
        status = _int_param(q, "status", self.server.default_status) or self.server.default_status
        chunks = _int_param(q, "chunks")
        chunk_delay = _int_param(q, "chunk_delay_ms")
        size = _int_param(q, "size", -1)

        if size >= 0:
            payload = b"x" * size
            ctype = "text/plain"
        else:
            info = {
                "backend": self.backend_name,
                "method": self.command,
                "path": parts.path,
                "query": parts.query,
                "host": self.headers.get("Host", ""),
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "header_list": [[k, v] for k, v in self.headers.items()],
                "body_len": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
            }
            if isinstance(self.connection, ssl.SSLSocket):
                info["tls"] = {"sni": getattr(self.connection, "sni", None),
                               "version": self.connection.version(),
                               "resumed": self.connection.session_reused}
            payload = (json.dumps(info, sort_keys=True) + "\n").encode()
            ctype = "application/json"
            if self.server.record:
                with self.server.record_lock, open(self.server.record, "ab") as f:
                    f.write(payload)

        no_body = status < 200 or status in (204, 304)
        self.send_response(status)
        self.send_header("X-Backend", self.backend_name)
        if no_body:
            self.end_headers()
            return
        self.send_header("Content-Type", ctype)
        if chunks > 0:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if self.command == "HEAD":
                return
            step = max(1, -(-len(payload) // chunks))
            pieces = [payload[i:i + step] for i in range(0, len(payload), step)]
            while len(pieces) < chunks:  # payload shorter than chunks: pad with 1-byte pieces
                pieces.append(b" ")
            for i, p in enumerate(pieces):
                if i and chunk_delay > 0:
                    time.sleep(chunk_delay / 1000.0)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _health(self):
        ok = os.path.exists(self.server.health_file)
        payload = b"ok\n" if ok else b"unhealthy\n"
        if self.server.record:
            # probes are recorded too (marked), so a test can count the checker's requests
            line = json.dumps({"health": True, "method": self.command, "path": self.path,
                               "headers": {k.lower(): v for k, v in self.headers.items()}},
                              sort_keys=True) + "\n"
            with self.server.record_lock, open(self.server.record, "ab") as f:
                f.write(line.encode())
        self.send_response(200 if ok else 503)
        self.send_header("X-Backend", self.backend_name)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _safe(self):
        try:
            self._handle()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _safe


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    tls = None  # ssl.SSLContext for HTTPS

    def finish_request(self, request, client_address):
        # in the connection's own thread: a slow handshake never holds up accept
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as e:
                if self.verbose:
                    sys.stderr.write("backend tls handshake failed: %s\n" % e)
                request.close()
                return
        super().finish_request(request, client_address)


def _sni_callback(sock, name, _ctx):
    sock.sni = name


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--verbose", action="store_true", help="log each request on stderr")
    ap.add_argument("--tls-cert", help="serve HTTPS with this certificate chain (PEM)")
    ap.add_argument("--tls-key", help="private key of --tls-cert (PEM)")
    ap.add_argument("--status", type=int, default=200,
                    help="status of answers whose query has no status=N")
    ap.add_argument("--record", help="append each request's JSON description to this file")
    ap.add_argument("--delay-ms", type=int, default=0,
                    help="wait this long before every answer (a slow replica)")
    ap.add_argument("--health-file",
                    help="GET --health-path answers 200 while this file exists, else 503")
    ap.add_argument("--health-path", default="/healthz",
                    help="path answered from --health-file (default /healthz)")
    args = ap.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")

    handler = type("NamedHandler", (Handler,), {"backend_name": args.name})
    srv = Server((args.host, args.port), handler)
    srv.verbose = args.verbose
    srv.default_status = args.status
    srv.default_delay = args.delay_ms
    srv.record = args.record
    srv.record_lock = threading.Lock()
    srv.health_file = args.health_file
    srv.health_path = args.health_path
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.sni_callback = _sni_callback
        srv.tls = ctx

    def stop(_sig, _frm):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    sys.stderr.write("backend=%s listening=%s:%d%s\n" % (args.name, args.host, srv.server_address[1],
                                                       " tls=yes" if srv.tls else ""))
    sys.stderr.flush()
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
