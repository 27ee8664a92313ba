#!/usr/bin/env python3
"""Play the controller's side of the snapshot socket to swap snapshots at a fixed rate.

The real controller debounces file changes (100 ms quiet, 150 ms at most), so edits every
100 ms cannot yield one swap each. This stand-in serves the data plane's Unix socket and sends
pre-encoded frames (made by `strait-controller --frame-out`), alternating between them, with
the header's generation rewritten (the CRC covers only the payload), so every frame is a new
snapshot for the data plane.

Usage: fakectl.py --socket PATH --go FILE [--count 100] [--interval 0.1] [--hold 30] A.bin B.bin
Sends A (generation 1) as soon as a data plane connects, then waits until FILE exists, sends
COUNT frames INTERVAL apart, and stays connected until --hold seconds after start. Prints
"swaps_sent N acks A nacks K" on exit.
"""
import argparse
import os
import select
import socket
import struct
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--go", required=True)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--hold", type=float, default=60.0)
    ap.add_argument("frames", nargs=2)
    a = ap.parse_args()
    frames = [bytearray(open(f, "rb").read()) for f in a.frames]
    for f in frames:
        assert f[:4] == b"STRT", "not a snapwire frame"
    t0 = time.monotonic()
    end = t0 + a.hold
    try:
        os.unlink(a.socket)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(a.socket)
    srv.listen(4)
    srv.settimeout(max(0.1, end - time.monotonic()))
    conn, _ = srv.accept()
    acks = nacks = 0
    rbuf = b""

    def drain(wait):
        nonlocal rbuf, acks, nacks
        r, _, _ = select.select([conn], [], [], wait)
        if r:
            d = conn.recv(65536)
            if not d:
                raise ConnectionError("data plane closed")
            rbuf += d
            while b"\n" in rbuf:
                line, rbuf = rbuf.split(b"\n", 1)
                if line.startswith(b"ACK "):
                    acks += 1
                elif line.startswith(b"NACK "):
                    nacks += 1

    gen = 1

    def send(i):
        f = frames[i % 2]
        struct.pack_into("<Q", f, 8, gen)
        conn.sendall(f)

    send(0)
    while not os.path.exists(a.go) and time.monotonic() < end:
        drain(0.01)
    sent = 0
    nxt = time.monotonic()
    while sent < a.count and time.monotonic() < end:
        now = time.monotonic()
        if now < nxt:
            drain(nxt - now)
            continue
        gen += 1
        sent += 1
        send(sent)
        nxt += a.interval
    while time.monotonic() < end and acks + nacks < sent + 1:
        drain(0.05)
    print(f"swaps_sent {sent} acks {acks} nacks {nacks}", flush=True)
    conn.close()
    srv.close()
    try:
        os.unlink(a.socket)
    except FileNotFoundError:
        pass


if __name__ == "__main__":
    main()
