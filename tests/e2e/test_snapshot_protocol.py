"""The test plays the controller: it serves snapshot frames on its own Unix socket to a real
data plane and reads the ACK/NACK lines. Bad frames are NACKed and the last good snapshot
keeps serving. Frame header (common/snapwire.h, little endian): magic u32 @0, version u16
@4, header size u16 @6, generation u64 @8, payload length u32 @16, CRC-32 u32 @20,
section count u32 @24, reserved @28; 32 bytes."""
import os
import socket
import struct
import subprocess
import time
import zlib

import harness as h

HDR = 32


def with_generation(frame, gen):
    b = bytearray(frame)
    b[8:16] = struct.pack("<Q", gen)
    return bytes(b)


class FakeController:
    def __init__(self, path):
        self.path = path
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(4)
        self.conn = None
        self.buf = b""

    def accept(self, timeout):
        self.srv.settimeout(timeout * h.SLOW)
        if self.conn:
            self.conn.close()
        self.conn, _ = self.srv.accept()
        self.buf = b""

    def send(self, data):
        self.conn.sendall(data)

    def read_line(self, timeout):
        deadline = time.monotonic() + timeout * h.SLOW
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no reply line from the data plane (have %r)" % self.buf)
            self.conn.settimeout(left)
            chunk = self.conn.recv(4096)
            if not chunk:
                raise AssertionError("data plane closed the socket (have %r)" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def close(self):
        if self.conn:
            self.conn.close()
        self.srv.close()


class SnapshotProtocolTest(h.StraitTest):
    def setUp(self):
        super().setUp()
        self.fake = None

    def tearDown(self):
        if self.fake:
            self.fake.close()
        super().tearDown()

    def _good_frame(self, host, backend):
        port = self.s.backend(backend)
        self.s.write("svc.yaml", h.service_with_endpoints(backend, port))
        self.s.write("ing.yaml", h.ingress("site", rules=[(host, [("/", "Prefix", backend)])]))
        out = os.path.join(self.s.dir, "good.bin")
        p = subprocess.run([os.path.join(h.BIN, "strait-controller"), "--manifests", self.s.mdir,
                            "--socket", os.path.join(self.s.dir, "unused.sock"),
                            "--frame-out", out], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30 * h.SLOW)
        err = p.stderr.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, "--frame-out failed: " + err)
        for m in h.SANITIZER_MARKERS:
            self.assertNotIn(m, err)
        with open(out, "rb") as f:
            frame = f.read()
        self.assertEqual(frame[:4], b"STRT")
        self.assertEqual(struct.unpack_from("<Q", frame, 8)[0], 1)
        self.assertEqual(struct.unpack_from("<I", frame, 16)[0], len(frame) - HDR)
        self.assertGreater(len(frame), HDR + 12, "frame without payload")
        return frame

    def _start(self, host="nack.test", backend="good"):
        frame = self._good_frame(host, backend)
        sock = os.path.join(self.s.dir, "fake.sock")
        self.fake = FakeController(sock)
        self.s.dataplane(socket_path=sock, wait_ready=False)
        self.fake.accept(10)
        self.fake.send(frame)
        self.assertEqual(self.fake.read_line(10), "ACK 1")
        h.wait_until(lambda: self.s.admin_get("/ready")[0] == 200, 5, what="/ready after ACK 1")
        self.assertBackend(self.s.curl(host, "/"), backend)
        return frame

    def _still_serving(self, host="nack.test", backend="good", gen=1):
        self.assertBackend(self.s.curl(host, "/"), backend)
        self.assertEqual(self.s.generation(), gen, "the current snapshot changed")

    def _expect_nack(self, gen):
        line = self.fake.read_line(10)
        self.assertTrue(line.startswith("NACK %d" % gen), "want NACK %d ..., got %r" % (gen, line))
        self.assertGreater(len(line.split(" ", 2)), 2, "NACK without a reason: %r" % line)
        return line

    def test_crc_mismatch_nacked(self):
        frame = self._start()
        bad = bytearray(with_generation(frame, 2))
        bad[HDR + (len(frame) - HDR) // 2] ^= 0xFF  # payload byte: CRC no longer matches
        self.fake.send(bytes(bad))
        self._expect_nack(2)
        self._still_serving()
        h.wait_until(lambda: h.log_events(self.s.dataplane_log(), "snapshot_rejected"), 3,
                     what="snapshot_rejected in the data plane log")

    def test_garbage_payload_with_valid_crc_nacked(self):
        frame = self._start()
        n = len(frame) - HDR
        garbage = bytes((i * 131 + 7) & 0xFF for i in range(n))
        hdr = bytearray(with_generation(frame[:HDR], 2))
        struct.pack_into("<I", hdr, 20, zlib.crc32(garbage) & 0xFFFFFFFF)
        self.fake.send(bytes(hdr) + garbage)
        self._expect_nack(2)
        self._still_serving()
        # section count claiming far more sections than the payload holds
        hdr3 = bytearray(with_generation(frame[:HDR], 3))
        struct.pack_into("<I", hdr3, 24, 0x7FFFFFFF)
        self.fake.send(bytes(hdr3) + frame[HDR:])
        self._expect_nack(3)
        self._still_serving()
        # and a good frame afterwards is taken
        self.fake.send(with_generation(frame, 4))
        self.assertEqual(self.fake.read_line(10), "ACK 4")
        h.wait_until(lambda: self.s.generation() == 4, 3, what="generation 4 applied")
        self.assertBackend(self.s.curl("nack.test", "/"), "good")

    def test_bad_header_nack0_and_reconnect(self):
        frame = self._start()
        bad = b"XXXX" + with_generation(frame, 2)[4:]
        self.fake.send(bad)
        self._expect_nack(0)
        self._still_serving()
        # the stream is out of sync: the data plane reconnects, and takes a good frame there
        self.fake.accept(10)
        self.fake.send(with_generation(frame, 5))
        self.assertEqual(self.fake.read_line(10), "ACK 5")
        self.assertBackend(self.s.curl("nack.test", "/"), "good")

    def test_truncated_frame_then_close(self):
        frame = self._start()
        self.fake.send(with_generation(frame, 2)[:HDR + (len(frame) - HDR) // 2])
        self.fake.conn.close()
        self.fake.conn = None
        # the half frame is never applied; the data plane reconnects and keeps serving
        self._still_serving()
        self.fake.accept(10)
        self._still_serving()
        self.fake.send(with_generation(frame, 6))
        self.assertEqual(self.fake.read_line(10), "ACK 6")
