#!/usr/bin/env python3
"""Open N keep-alive client connections to one proxy and leave them idle.

Each connection sends one GET and reads the whole response (Content-Length framed), so the
proxy has served a request on it and holds it as an idle keep-alive connection - the state
that matters for memory per connection. Prints "ready OK FAILED" on stdout once all are
open, then waits for a line (or EOF) on stdin, or --hold seconds at most, and closes them
with RST (SO_LINGER 0) so no TIME_WAIT is left behind on the client side.

Usage: idleconns.py PORT [-n 10000] [--hold 120] [--host 127.0.0.1]
Only 127.0.0.0/8 is accepted as host.
"""
import argparse
import resource
import select
import socket
import struct
import sys
import time


def one(host, port, req, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        s.sendall(req)
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk or time.monotonic() > deadline:
                raise OSError("short head")
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        clen = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                clen = int(v.strip())
            if k.strip().lower() == b"connection" and b"close" in v.lower():
                raise OSError("server closes")
        while len(body) < clen:
            chunk = s.recv(4096)
            if not chunk or time.monotonic() > deadline:
                raise OSError("short body")
            body += chunk
        if not head.startswith(b"HTTP/1.1 2"):
            raise OSError("status " + head.split(b"\r\n")[0].decode(errors="replace"))
        return s
    except OSError:
        s.close()
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--hold", type=float, default=120.0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--timeout", type=float, default=5.0)
    a = ap.parse_args()
    if not a.host.startswith("127."):
        sys.exit("idleconns: loopback only")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.n + 256
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))
        except (ValueError, OSError):
            pass
    req = b"GET / HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: strait-bench-idle\r\n\r\n"
    socks, failed = [], 0
    start = time.monotonic()
    for _ in range(a.n):
        if time.monotonic() - start > a.hold:
            break
        s = one(a.host, a.port, req, a.timeout)
        if s is None:
            failed += 1
        else:
            socks.append(s)
    print(f"ready {len(socks)} {failed}", flush=True)
    select.select([sys.stdin], [], [], a.hold)
    # Count connections the proxy closed while idle (readable with EOF).
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    print(f"closed_by_peer {closed}", flush=True)
    linger = struct.pack("ii", 1, 0)
    for s in socks:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        except OSError:
            pass
        s.close()


if __name__ == "__main__":
    main()
