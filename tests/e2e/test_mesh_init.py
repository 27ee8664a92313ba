"""`strait-controller mesh-init` (issue 10, interception) in network namespaces the test makes
itself: pod A runs mesh-init, pod B is its peer, joined by a veth pair; never the host's
namespace. Servers and clients are real sockets run inside the namespaces with `ip netns
exec` under the UIDs that matter (the proxy's 2102, an app's 1000); the redirected listeners
read SO_ORIGINAL_DST, as the sidecar will. Needs root, iproute2, iptables and setpriv."""
import os
import shutil
import subprocess
import sys
import unittest
import uuid

import harness

PROXY_UID, APP_UID = 2102, 1000
# run as those UIDs: Debian's interpreter (a pyenv one under /root may not be theirs to run)
PY = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
A_IP, B_IP, B_IP2 = "10.201.0.1", "10.201.0.2", "10.201.0.3"
A_IP6, B_IP6, B_IP6_2 = "fd00:201::1", "fd00:201::2", "fd00:201::3"

# a TCP server: answers each connection with "NAME orig=IP:PORT" (SO_ORIGINAL_DST, or the
# address it was reached at when not redirected) and closes; prints "ready" once listening
SERVER = r"""
import socket, struct, sys
name, host, ports = sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3].split(",")]
v6 = ":" in host
socks = []
for p in ports:
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if v6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, p))
    s.listen(16)
    socks.append(s)
print("ready", flush=True)
import selectors
sel = selectors.DefaultSelector()
for s in socks:
    sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        c, _ = key.fileobj.accept()
        try:
            if v6:  # IP6T_SO_ORIGINAL_DST: a sockaddr_in6
                raw = c.getsockopt(socket.IPPROTO_IPV6, 80, 28)
                orig = "[%s]:%d" % (socket.inet_ntop(socket.AF_INET6, raw[8:24]),
                                    struct.unpack("!H", raw[2:4])[0])
            else:  # SO_ORIGINAL_DST: a sockaddr_in
                raw = c.getsockopt(socket.SOL_IP, 80, 16)
                orig = "%s:%d" % (socket.inet_ntoa(raw[4:8]), struct.unpack("!H", raw[2:4])[0])
        except OSError:
            h, p = c.getsockname()[:2]
            orig = ("[%s]:%d" if v6 else "%s:%d") % (h, p)
        c.sendall(("%s orig=%s" % (name, orig)).encode())
        c.close()
"""

CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print(c.recv(200).decode())
"""


def need(*cmds):
    missing = [c for c in cmds if not shutil.which(c)]
    return missing


@unittest.skipUnless(os.geteuid() == 0, "network namespaces and iptables need root")
class MeshInitTest(unittest.TestCase):
    def setUp(self):
        missing = need("ip", "iptables-restore", "iptables-save", "ip6tables-restore",
                       "ip6tables-save", "setpriv", "unshare")
        if missing:
            self.skipTest("missing: " + " ".join(missing))
        # a container without CAP_SYS_ADMIN cannot make namespaces: say so rather than fail
        if subprocess.run(["unshare", "--net", "true"], stderr=subprocess.DEVNULL).returncode:
            self.skipTest("this machine does not allow new network namespaces")
        tag = uuid.uuid4().hex[:6]
        self.a, self.b = "strait-a-" + tag, "strait-b-" + tag
        self.procs = []
        self.sh("ip", "netns", "add", self.a)
        self.addCleanup(self.sh, "ip", "netns", "del", self.a)
        self.sh("ip", "netns", "add", self.b)
        self.addCleanup(self.sh, "ip", "netns", "del", self.b)
        va, vb = "sa" + tag, "sb" + tag
        self.sh("ip", "link", "add", va, "netns", self.a, "type", "veth", "peer", "name", vb,
                "netns", self.b)
        for ns, dev, ips in ((self.a, va, [A_IP, A_IP6]),
                             (self.b, vb, [B_IP, B_IP2, B_IP6, B_IP6_2])):
            self.sh("ip", "-n", ns, "link", "set", "lo", "up")
            self.sh("ip", "-n", ns, "link", "set", dev, "up")
            for ip in ips:
                if ":" in ip:  # usable at once: no duplicate address detection to wait for
                    self.sh("ip", "-n", ns, "addr", "add", ip + "/64", "dev", dev, "nodad")
                else:
                    self.sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", dev)
        self.addCleanup(self.stop_all)

    def sh(self, *cmd, check=True):
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=30)
        if check and p.returncode != 0:
            raise AssertionError("%s: %s %s" % (" ".join(cmd), p.stdout, p.stderr))
        return p

    def in_ns(self, ns, uid, *cmd):
        return ["ip", "netns", "exec", ns, "setpriv", "--reuid=%d" % uid, "--regid=%d" % uid,
                "--clear-groups", *cmd]

    def server(self, ns, uid, name, host, ports):
        p = subprocess.Popen(self.in_ns(ns, uid, PY, "-c", SERVER, name, host,
                                        ",".join(str(x) for x in ports)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        line = p.stdout.readline()  # blocks until the server listens (or dies: "")
        self.assertEqual(line.strip(), "ready", p.stderr.read() if not line else line)

    def stop_all(self):
        for p in self.procs:
            p.kill()
            p.wait()

    def connect(self, ns, uid, host, port):
        p = self.sh(*self.in_ns(ns, uid, PY, "-c", CLIENT, host, str(port)),
                    check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.strip()

    def mesh_init(self, *args, check=True):
        cmd = ["ip", "netns", "exec", self.a, os.path.join(harness.BIN, "strait-controller"),
               "mesh-init", *args]
        return self.sh(*cmd, check=check)

    def nat_rules(self, ns, save="iptables-save"):
        out = self.sh("ip", "netns", "exec", ns, save, "-t", "nat").stdout
        return [l for l in out.splitlines() if l.startswith(("-A", ":"))]

    def test_outbound_and_inbound_interception(self):
        # pod A: the sidecar's two listeners (as the proxy UID), an app on 8080 and 2222
        self.server(self.a, PROXY_UID, "sidecar-out", "0.0.0.0", [4140])
        self.server(self.a, PROXY_UID, "sidecar-in", "0.0.0.0", [4143])
        self.server(self.a, 0, "app-a", "0.0.0.0", [8080, 2222])
        # pod B: a plain server on both of its addresses
        self.server(self.b, 0, "b", "0.0.0.0", [8080, 9090])
        before = self.connect(self.a, APP_UID, B_IP, 8080)
        self.assertEqual(before, "b orig=%s:8080" % B_IP)  # nothing intercepted yet
        p = self.mesh_init("--exclude-inbound-ports", "2222", "--exclude-outbound-ports", "9090",
                           "--exclude-outbound-cidrs", B_IP2 + "/32")
        self.assertIn("event=mesh_init_installed", p.stderr)
        # outbound: the app's connections reach the sidecar with their original destination
        self.assertEqual(self.connect(self.a, APP_UID, B_IP, 8080),
                         "sidecar-out orig=%s:8080" % B_IP)
        self.assertEqual(self.connect(self.a, 0, B_IP, 8080), "sidecar-out orig=%s:8080" % B_IP)
        # ... but not the sidecar's own, excluded ports, excluded CIDRs, loopback
        self.assertEqual(self.connect(self.a, PROXY_UID, B_IP, 8080), "b orig=%s:8080" % B_IP)
        self.assertEqual(self.connect(self.a, APP_UID, B_IP, 9090), "b orig=%s:9090" % B_IP)
        self.assertEqual(self.connect(self.a, APP_UID, B_IP2, 8080), "b orig=%s:8080" % B_IP2)
        self.assertEqual(self.connect(self.a, APP_UID, "127.0.0.1", 8080),
                         "app-a orig=127.0.0.1:8080")
        # inbound: connections to the pod reach the inbound listener, excluded ports the app
        self.assertEqual(self.connect(self.b, 0, A_IP, 8080), "sidecar-in orig=%s:8080" % A_IP)
        self.assertEqual(self.connect(self.b, 0, A_IP, 2222), "app-a orig=%s:2222" % A_IP)
        # pod B's own table was never touched
        self.assertFalse([r for r in self.nat_rules(self.b) if "STRAIT" in r])

    def test_net_admin_is_the_only_capability_it_needs(self):
        # as the injected strait-init container runs: root, every capability dropped but
        # NET_ADMIN (no NET_RAW, which iptables' legacy backend would want for its raw socket)
        caps = ["setpriv", "--bounding-set", "-all,+net_admin", "--inh-caps", "-all"]
        probe = ("import socket\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_RAW, "
                 "socket.IPPROTO_RAW)\n    print('raw')\nexcept PermissionError:\n"
                 "    print('no raw')\n")
        # the control: the same process without that capability really cannot open one
        p = self.sh("ip", "netns", "exec", self.a, *caps, PY, "-c", probe)
        self.assertEqual(p.stdout.strip(), "no raw")
        self.server(self.a, PROXY_UID, "sidecar-out", "0.0.0.0", [4140])
        self.server(self.b, 0, "b", "0.0.0.0", [8080])
        p = self.sh("ip", "netns", "exec", self.a, *caps, os.path.join(harness.BIN,
                    "strait-controller"), "mesh-init", "--ipv6", "on", check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("event=mesh_init_installed", p.stderr)
        self.assertTrue([r for r in self.nat_rules(self.a) if "STRAIT" in r])
        self.assertTrue([r for r in self.nat_rules(self.a, "ip6tables-save") if "STRAIT" in r])
        self.assertEqual(self.connect(self.a, APP_UID, B_IP, 8080),
                         "sidecar-out orig=%s:8080" % B_IP)

    def test_ipv6_interception(self):
        self.server(self.a, PROXY_UID, "sidecar-out6", "::", [4140])
        self.server(self.a, PROXY_UID, "sidecar-in6", "::", [4143])
        self.server(self.a, 0, "app-a6", "::", [8080, 2222])
        self.server(self.b, 0, "b6", "::", [8080, 9090])
        p = self.mesh_init("--ipv6", "on", "--exclude-inbound-ports", "2222",
                           "--exclude-outbound-ports", "9090", "--exclude-outbound-cidrs",
                           "10.201.0.3/32," + B_IP6_2 + "/128")
        self.assertIn("ipv6=1", p.stderr)
        self.assertEqual(self.connect(self.a, APP_UID, B_IP6, 8080),
                         "sidecar-out6 orig=[%s]:8080" % B_IP6)
        self.assertEqual(self.connect(self.a, PROXY_UID, B_IP6, 8080),
                         "b6 orig=[%s]:8080" % B_IP6)
        self.assertEqual(self.connect(self.a, APP_UID, B_IP6, 9090), "b6 orig=[%s]:9090" % B_IP6)
        self.assertEqual(self.connect(self.a, APP_UID, B_IP6_2, 8080),
                         "b6 orig=[%s]:8080" % B_IP6_2)
        self.assertEqual(self.connect(self.a, APP_UID, "::1", 8080), "app-a6 orig=[::1]:8080")
        self.assertEqual(self.connect(self.b, 0, A_IP6, 8080),
                         "sidecar-in6 orig=[%s]:8080" % A_IP6)
        self.assertEqual(self.connect(self.b, 0, A_IP6, 2222), "app-a6 orig=[%s]:2222" % A_IP6)
        # each table has its own family's CIDR only
        v4, v6 = self.nat_rules(self.a), self.nat_rules(self.a, "ip6tables-save")
        self.assertIn("-A STRAIT_OUTBOUND -d 10.201.0.3/32 -j RETURN", v4)
        self.assertIn("-A STRAIT_OUTBOUND -d %s/128 -j RETURN" % B_IP6_2, v6)
        self.assertFalse([r for r in v4 if "fd00" in r])
        self.assertFalse([r for r in v6 if "10.201" in r])
        # --ipv6 off leaves IPv6 alone (the table above stays as it was)
        self.mesh_init("--ipv6", "off", "--outbound-port", "5000")
        self.assertEqual(self.nat_rules(self.a, "ip6tables-save"), v6)
        self.assertIn("-A STRAIT_OUT_REDIRECT -p tcp -j REDIRECT --to-ports 5000",
                      self.nat_rules(self.a))

    def test_rerun_gives_the_same_table_and_bad_input_changes_nothing(self):
        self.mesh_init("--exclude-outbound-ports", "443,80")
        first = self.nat_rules(self.a)
        self.assertIn("-A OUTPUT -p tcp -j STRAIT_OUTBOUND", first)
        self.assertIn("-A PREROUTING -p tcp -j STRAIT_INBOUND", first)
        self.assertIn("-A STRAIT_OUTBOUND -m owner --uid-owner 2102 -j RETURN", first)
        self.mesh_init("--exclude-outbound-ports", "443,80")  # an init container restarted
        self.assertEqual(self.nat_rules(self.a), first)
        for args, want in ((["--inbound-port", "0"], "not a port"),
                           (["--outbound-port", "4143"], "two different ports"),
                           (["--exclude-outbound-ports", "80,"], "ends with a comma"),
                           (["--exclude-outbound-cidrs", "10.0.0.1/8"], "host bits set"),
                           (["--proxy-uid", "x"], "not a UID"),
                           (["surplus"], "usage")):
            p = self.mesh_init(*args, check=False)
            self.assertEqual(p.returncode, 2, (args, p.stderr))
            self.assertIn(want, p.stderr, args)
            self.assertEqual(self.nat_rules(self.a), first, args)
        p = self.mesh_init("--iptables-restore", "/nonexistent/iptables-restore", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("event=mesh_init_failed", p.stderr)
        self.assertEqual(self.nat_rules(self.a), first)
        # another configuration replaces the table as a whole
        self.mesh_init("--outbound-port", "5000")
        now = self.nat_rules(self.a)
        self.assertIn("-A STRAIT_OUT_REDIRECT -p tcp -j REDIRECT --to-ports 5000", now)
        self.assertFalse([r for r in now if "--dports 443,80" in r])
        self.assertEqual(len([r for r in now if r.startswith("-A OUTPUT")]), 1)


if __name__ == "__main__":
    unittest.main()
