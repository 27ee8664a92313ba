"""The mesh sidecar end to end (issue 10), in network namespaces the test makes itself: a hub
namespace holds a bridge and the controller (file mode, --mesh: the CA's identity endpoint
and the Service directory); three "pods" hang off the bridge by veth pairs, each with
mesh-init's iptables rules, an app and `strait-dataplane --sidecar` running as the proxy's
UID. Traffic between the pods is checked on the bridge itself (a packet socket in the hub):
TLS records, never the plaintext. Never touches the host's namespace. Needs root, iproute2,
iptables, setpriv, curl and openssl."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest
import uuid

import harness

PROXY_UID, APP_UID = 2102, 1000
PY = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
HUB_IP, HUB_IP6 = "10.202.0.254", "fd00:202::fe"
POD_IP6 = {"a": "fd00:202::1", "b": "fd00:202::2", "c": "fd00:202::3"}
BACKEND6_IP = "fd00:96::10"
POD_IP = {"a": "10.202.0.1", "b": "10.202.0.2", "c": "10.202.0.3"}
# ClusterIPs: routed to the hub, but the sidecar answers them before they leave the pod
BACKEND_IP, ECHO_IP, LOOKALIKE_IP, ADMIN_IP = "10.96.0.10", "10.96.0.11", "10.96.0.12", "10.96.0.14"
TD = "cluster.local"
IDENTITY_PORT = 8443


def header(body, name):
    """The value of header name in the JSON a demo backend answers with (any case), or None."""
    return {k.lower(): v for k, v in json.loads(body)["headers"].items()}.get(name.lower())


def spiffe(sa, ns="shop"):
    return "spiffe://%s/ns/%s/sa/%s" % (TD, ns, sa)


# A TCP echo app: reads until the client's end (FIN), answers "echo:" + what came, closes.
ECHO = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    data = b""
    while True:
        b = c.recv(65536)
        if not b:
            break
        data += b
    c.sendall(b"echo:" + data)
    c.close()
"""

# An HTTP app on ::1 (the demo backend is IPv4 only): answers JSON {"backend", "headers"}.
V6APP = r"""
import json, socket, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps({"backend": sys.argv[1], "path": self.path,
                           "headers": dict(self.headers.items())}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):  # HTTPServer's would look ::1 up in DNS (getfqdn): none here
        import socketserver
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "localhost", self.server_address[1]
S(("::1", int(sys.argv[2])), H).serve_forever()
"""

# A TCP client: sends argv[3], ends its side, prints what comes back until the server closes.
TCP_CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
c.sendall(sys.argv[3].encode())
c.shutdown(socket.SHUT_WR)
out = b""
while True:
    b = c.recv(65536)
    if not b:
        break
    out += b
sys.stdout.write(out.decode())
"""

# Captures TCP payloads on the hub's bridge (a packet socket: only root in the hub, no
# tcpdump needed) and writes them as one hex line per packet "dport hex" until killed.
SNIFFER = r"""
import socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
print("ready", flush=True)
while True:
    frame = s.recv(70000)
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        continue
    ip = frame[14:]
    ihl = (ip[0] & 15) * 4
    if ip[9] != 6:
        continue
    tcp = ip[ihl:]
    sport, dport = struct.unpack("!HH", tcp[:4])
    payload = tcp[(tcp[12] >> 4) * 4:struct.unpack("!H", ip[2:4])[0] - ihl]
    if payload:
        print(sport, dport, payload.hex(), flush=True)
"""


def need(*cmds):
    return [c for c in cmds if not shutil.which(c)]


@unittest.skipUnless(os.geteuid() == 0, "network namespaces and iptables need root")
class MeshSidecarTest(unittest.TestCase):
    LEAF_TTL = "24h"

    def setUp(self):
        missing = need("ip", "iptables-restore", "setpriv", "unshare", "curl", "openssl")
        if missing:
            self.skipTest("missing: " + " ".join(missing))
        if subprocess.run(["unshare", "--net", "true"], stderr=subprocess.DEVNULL).returncode:
            self.skipTest("this machine does not allow new network namespaces")
        self.dir = harness.new_temp_dir(self.id().split(".")[-1])
        os.chmod(self.dir, 0o777)  # the proxy UID reads its token and the socket here
        parent = os.path.dirname(self.dir)  # ... and must be let through the session dir
        os.chmod(parent, os.stat(parent).st_mode | 0o111)
        self.procs, self.sidecars = [], {}
        self.addCleanup(self.stop_all)
        tag = uuid.uuid4().hex[:6]
        self.ns = {k: "strait-%s-%s" % (k, tag) for k in ("hub", "a", "b", "c")}
        for ns in self.ns.values():
            self.sh("ip", "netns", "add", ns)
            self.addCleanup(self.sh, "ip", "netns", "del", ns, check=False)
        hub = self.ns["hub"]
        self.sh("ip", "-n", hub, "link", "set", "lo", "up")
        self.sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
        self.sh("ip", "-n", hub, "addr", "add", HUB_IP + "/24", "dev", "br0")
        self.sh("ip", "-n", hub, "addr", "add", HUB_IP6 + "/64", "dev", "br0", "nodad")
        self.sh("ip", "-n", hub, "link", "set", "br0", "up")
        for pod, ip in POD_IP.items():
            ns, hv = self.ns[pod], "h%s%s" % (pod, tag)
            self.hub_port = getattr(self, "hub_port", {})
            self.hub_port[pod] = hv
            self.sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", hv,
                    "netns", hub)
            self.sh("ip", "-n", hub, "link", "set", hv, "master", "br0")
            self.sh("ip", "-n", hub, "link", "set", hv, "up")
            self.sh("ip", "-n", ns, "link", "set", "lo", "up")
            self.sh("ip", "-n", ns, "link", "set", "eth0", "up")
            self.sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth0")
            self.sh("ip", "-n", ns, "route", "add", "default", "via", HUB_IP)
            self.sh("ip", "-n", ns, "addr", "add", POD_IP6[pod] + "/64", "dev", "eth0", "nodad")
            self.sh("ip", "-n", ns, "-6", "route", "add", "default", "via", HUB_IP6)
            p = self.sh("ip", "netns", "exec", ns, os.path.join(harness.BIN, "strait-controller"),
                        "mesh-init")
            self.assertIn("event=mesh_init_installed", p.stderr)
        # the manifests: Services with ClusterIPs, their endpoints, the pods behind them
        self.mdir = os.path.join(self.dir, "manifests")
        os.mkdir(self.mdir)
        with open(os.path.join(self.mdir, "mesh.yaml"), "w") as f:
            f.write(harness.yaml_docs(*self.manifests()))
        # file mode's token map: the token proves namespace shop's ServiceAccount
        self.tokens = os.path.join(self.dir, "tokens")
        with open(self.tokens, "w") as f:
            f.write("tok-a shop frontend\ntok-b shop backend\ntok-c shop intruder\n")
        for pod in POD_IP:
            path = os.path.join(self.dir, "token-" + pod)
            with open(path, "w") as f:
                f.write("tok-%s\n" % pod)
            os.chmod(path, 0o644)
        self.sock = os.path.join(self.dir, "snap.sock")
        self.bundle = os.path.join(self.dir, "trust-bundle.pem")
        self.rootdir = os.path.join(self.dir, "root")  # the CA's root, generated there once
        os.mkdir(self.rootdir, 0o700)
        os.chown(self.rootdir, PROXY_UID, PROXY_UID)
        self.start_controller()
        # apps: B serves HTTP and a TCP echo on localhost only (the sidecar hands off there),
        # C serves HTTP too (behind a Service whose pods should run as "backend")
        self.app("b", "b-http", [PY, harness.BACKEND_PY, "--name", "b", "--port", "8080"],
                 "http://127.0.0.1:8080/")
        self.app("b", "b-echo", [PY, "-c", ECHO, "127.0.0.1", "7000"], "line")
        self.app("b", "b-admin", [PY, harness.BACKEND_PY, "--name", "b-admin", "--port", "9000"],
                 "http://127.0.0.1:9000/")
        # the app's IPv6 side: what the inbound hands IPv6 callers to (::1)
        self.app("b", "b6-http", [PY, "-c", V6APP, "b6", "8080"], "http://[::1]:8080/")
        self.app("c", "c-http", [PY, harness.BACKEND_PY, "--name", "c", "--port", "8080"],
                 "http://127.0.0.1:8080/")
        for pod in POD_IP:
            self.start_sidecar(pod)

    # -- set-up helpers --

    def manifests(self):
        def pod(name, sa):
            return {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": "shop",
                                 "annotations": {"strait.dev/inject": "enabled"}},
                    "spec": {"serviceAccountName": sa,
                             "containers": [{"name": "app", "image": "app"}]},
                    "status": {"phase": "Running", "podIP": POD_IP[name],
                               "podIPs": [{"ip": POD_IP[name]}, {"ip": POD_IP6[name]}]}}

        def policy(name, target, action, sources, port=None):
            spec = {"targetRef": {"kind": "Service", "name": target}, "action": action,
                    "from": sources}
            if port:
                spec["port"] = port
            return {"apiVersion": "strait.dev/v1alpha1", "kind": "AuthorizationPolicy",
                    "metadata": {"name": name, "namespace": "shop"}, "spec": spec}

        def svc(name, ip, port, target, annotations=None, pods=(), port_name="http", v6=False):
            meta = {"name": name, "namespace": "shop"}
            if annotations:
                meta["annotations"] = annotations
            return [{"apiVersion": "v1", "kind": "Service", "metadata": meta,
                     "spec": {"clusterIP": ip, "clusterIPs": [ip],
                              "ports": [{"name": port_name, "port": port, "targetPort": target,
                                         "protocol": "TCP"}]}},
                    {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": name + "-1", "namespace": "shop",
                                  "labels": {"kubernetes.io/service-name": name}},
                     "addressType": "IPv6" if v6 else "IPv4",
                     "endpoints": [{"addresses": [(POD_IP6 if v6 else POD_IP)[p]],
                                    "conditions": {"ready": True},
                                    "targetRef": {"kind": "Pod", "namespace": "shop",
                                                  "name": p}} for p in pods],
                     "ports": [{"name": port_name, "port": target, "protocol": "TCP"}]}]

        return ([pod("a", "frontend"), pod("b", "backend"),
                 # pod c claims the ServiceAccount backend, but its token proves "intruder"
                 pod("c", "backend")] +
                svc("backend", BACKEND_IP, 80, 8080, pods=["b"]) +
                svc("echo", ECHO_IP, 7000, 7000, annotations={"strait.dev/opaque-ports": "7000"},
                    pods=["b"], port_name="tcp") +
                svc("lookalike", LOOKALIKE_IP, 80, 8080, pods=["c"]) +
                svc("admin", ADMIN_IP, 80, 9000, pods=["b"]) +
                svc("backend6", BACKEND6_IP, 80, 8080, pods=["b"], v6=True) +
                # admin admits the frontend only; the echo refuses the intruder
                [policy("admin-frontend-only", "admin", "Allow",
                        [{"serviceAccounts": [{"name": "frontend"}]}], port=80),
                 policy("echo-no-intruder", "echo", "Deny",
                        [{"identities": [spiffe("intruder")]}])])

    def sh(self, *cmd, check=True, timeout=30):
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout * harness.SLOW)
        if check and p.returncode != 0:
            raise AssertionError("%s: %s %s" % (" ".join(cmd), p.stdout, p.stderr))
        return p

    def in_ns(self, pod, uid, *cmd):
        return ["ip", "netns", "exec", self.ns[pod], "setpriv", "--reuid=%d" % uid,
                "--regid=%d" % uid, "--clear-groups", *cmd]

    def start_controller(self):
        args = [os.path.join(harness.BIN, "strait-controller"), "--manifests", self.mdir,
                "--socket", self.sock, "--log-level", "debug", "--mesh",
                "--mesh-listen", "%s:%d" % (HUB_IP, IDENTITY_PORT),
                "--mesh-token-file", self.tokens, "--mesh-root-dir", self.rootdir,
                "--mesh-trust-bundle-out", self.bundle, "--mesh-leaf-ttl", self.LEAF_TTL,
                "--mesh-server-names", HUB_IP]
        p = harness.Proc("controller", self.in_ns("hub", PROXY_UID, *args), self.dir,
                         strait=True)
        self.procs.append(p)
        self.ctl = p
        harness.wait_until(lambda: (os.path.exists(self.sock) and os.path.exists(self.bundle))
                           or not p.alive(), 10, what="controller socket and trust bundle")
        self.assertTrue(p.alive(), p.log())
        return p

    def app(self, pod, name, cmd, wait):
        """Starts an app in pod as the app UID; wait: "line" (it prints "ready") or the URL
        it answers on inside the pod."""
        p = harness.Proc(name, self.in_ns(pod, APP_UID, *cmd), self.dir)
        self.procs.append(p)
        if wait == "line":
            harness.wait_until(lambda: "ready" in p.log() or not p.alive(), 10, what=name)
        else:
            harness.wait_until(lambda: self.sh("ip", "netns", "exec", self.ns[pod], "curl", "-s",
                                               "-g", "-o", "/dev/null", wait,
                                               check=False).returncode == 0, 10, what=name)
        return p

    def snapshot_args(self):
        """How a sidecar gets its snapshot: the controller's whole one, over its Unix socket
        (test_mesh_feed.py runs the same tests on the discovery feed)."""
        return ["--socket", self.sock]

    def start_sidecar(self, pod, *extra):
        args = [os.path.join(harness.BIN, "strait-dataplane"), "--sidecar", *self.snapshot_args(),
                "--namespace", "shop", "--identity-addr", "%s:%d" % (HUB_IP, IDENTITY_PORT),
                "--trust-anchors", self.bundle,
                "--token-path", os.path.join(self.dir, "token-" + pod),
                "--admin", "127.0.0.1:4191", "--workers", "1", "--log-level", "debug", *extra]
        p = harness.Proc("sidecar-" + pod, self.in_ns(pod, PROXY_UID, *args), self.dir,
                         strait=True)
        self.procs.append(p)
        self.sidecars[pod] = p
        harness.wait_until(lambda: self.admin(pod, "/ready")[0] == "200" or not p.alive(), 15,
                           what="sidecar %s ready" % pod)
        self.assertTrue(p.alive(), p.log())
        return p

    def stop_sidecar(self, pod):
        p = self.sidecars.pop(pod)
        self.assertEqual(p.stop(), [])

    def admin(self, pod, path):
        r = self.sh("ip", "netns", "exec", self.ns[pod], "curl", "-s", "-w", "\n%{http_code}",
                    "http://127.0.0.1:4191" + path, check=False)
        body, _, code = r.stdout.rpartition("\n")
        return code, body

    def metric(self, pod, name, labels):
        _, text = self.admin(pod, "/metrics")
        pat = r"^%s\{%s\} (\d+)" % (re.escape(name), re.escape(labels)) if labels else \
            r"^%s (\d+)" % re.escape(name)
        m = re.search(pat, text, re.M)
        return int(m.group(1)) if m else None

    def stop_all(self):
        problems = []
        for p in reversed(self.procs):
            problems += p.stop()
        if problems:
            for p in self.procs:
                sys.stderr.write("--- %s\n%s\n" % (p.name, p.log()[-3000:]))
        self.assertEqual(problems, [])

    def curl_from(self, pod, url, host=None, headers=(), uid=APP_UID, timeout=10):
        cmd = ["curl", "-s", "-g", "-m", str(timeout), "-w", "\n%{http_code}", url]
        if host:
            cmd += ["-H", "Host: " + host]
        for h in headers:
            cmd += ["-H", h]
        r = self.sh(*self.in_ns(pod, uid, *cmd), check=False, timeout=timeout + 5)
        body, _, code = r.stdout.rpartition("\n")
        return code, body

    def sniff(self, pod="b"):
        """Starts capturing on pod's port of the hub's bridge (what goes to and from it);
        returns a function that stops and gives [(sport, dport, payload bytes)]."""
        p = subprocess.Popen(["ip", "netns", "exec", self.ns["hub"], PY, "-c", SNIFFER,
                              self.hub_port[pod]],
                             stdout=subprocess.PIPE, text=True)
        self.assertEqual(p.stdout.readline().strip(), "ready")

        def stop():
            time.sleep(0.2)  # frames already on the wire reach the packet socket
            p.kill()
            out, _ = p.communicate()
            pkts = []
            for line in out.splitlines():
                sp, dp, hx = line.split()
                pkts.append((int(sp), int(dp), bytes.fromhex(hx)))
            return pkts
        return stop

    # -- the tests --

    def test_http_goes_mtls_with_identities(self):
        stop = self.sniff()
        marker = "/marker-%s" % uuid.uuid4().hex
        code, body = self.curl_from("a", "http://%s%s" % (BACKEND_IP, marker), host="backend",
                                    headers=["X-Strait-Peer-Identity: %s" % spiffe("admin")])
        pkts = stop()
        self.assertEqual(code, "200", body)
        got = json.loads(body)
        self.assertEqual(got["path"] if "path" in got else got.get("target"), marker)
        hdrs = {k.lower(): v for k, v in got["headers"].items()}
        # the app learns who called, verified; a header the caller sent cannot say otherwise
        self.assertEqual(hdrs.get("x-strait-peer-identity"), spiffe("frontend"))
        # on the wire between the pods: TLS records only, never the request
        to_b = b"".join(pl for sp, dp, pl in pkts if dp == 8080)
        self.assertTrue(to_b, "no traffic to pod b seen on the bridge")
        self.assertEqual(to_b[:1], b"\x16", "the first bytes to b are not a TLS handshake")
        self.assertNotIn(marker.encode(), b"".join(pl for _, _, pl in pkts))
        # each side counted its connection
        self.assertGreaterEqual(self.metric("a", "strait_mesh_connections_total",
                                            'kind="outbound_mtls"') or 0, 1)
        self.assertGreaterEqual(self.metric("b", "strait_mesh_connections_total",
                                            'kind="inbound_mtls"') or 0, 1)
        # by name too: the pod's namespace, the Service's full name, with the port
        for host in ("backend.shop", "backend.shop.svc.cluster.local", "backend:80"):
            code, body = self.curl_from("a", "http://%s/n" % BACKEND_IP, host=host)
            self.assertEqual(code, "200", host)
            self.assertEqual(header(body, "X-Strait-Peer-Identity"),
                             spiffe("frontend"))
        # both sidecars keep their connections: a's mTLS one to b, b's to its app on
        # loopback (a swap's endpoint filter must not close what is no endpoint)
        self.assertLessEqual(self.metric("b", "strait_upstream_connections_total", "") or 0, 1)
        self.assertGreaterEqual(self.metric("b", "strait_upstream_pool_reused_total", "") or 0, 3)
        self.assertLessEqual(self.metric("a", "strait_upstream_connections_total", "") or 0, 1)

    def test_inbound_presents_workload_identity_and_wants_one(self):
        # from the hub (no sidecar): b's inbound side speaks TLS 1.3 with b's identity ...
        p = self.sh("ip", "netns", "exec", self.ns["hub"], "openssl", "s_client", "-connect",
                    "%s:8080" % POD_IP["b"], "-CAfile", self.bundle, "-showcerts",
                    check=False, timeout=15)
        pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", p.stdout,
                        re.S)
        self.assertTrue(pem, p.stdout + p.stderr)
        x = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"],
                           input=pem.group(0), text=True, stdout=subprocess.PIPE, check=True)
        self.assertIn("URI:" + spiffe("backend"), x.stdout)
        self.assertIn("TLSv1.3", p.stdout)
        # ... and without a client certificate, no request gets through
        code, _ = self.curl_from("a", "https://%s:8080/" % POD_IP["b"], uid=PROXY_UID)
        self.assertNotEqual(code, "200")

    def test_strict_refuses_plaintext_permissive_accepts(self):
        def plain_from_hub():
            r = self.sh("ip", "netns", "exec", self.ns["hub"], "curl", "-s", "-m", "5", "-w",
                        "\n%{http_code}", "http://%s:8080/p" % POD_IP["b"], check=False)
            return r.stdout.rpartition("\n")
        body, _, code = plain_from_hub()
        self.assertEqual(code, "000", "strict inbound answered plaintext: " + body)
        self.assertGreaterEqual(self.metric("b", "strait_mesh_connections_total",
                                            'kind="inbound_refused"') or 0, 1)
        self.stop_sidecar("b")
        self.start_sidecar("b", "--permissive")
        body, _, code = plain_from_hub()
        self.assertEqual(code, "200", body)
        # plaintext proves nobody: no identity header reaches the app
        self.assertIsNone(header(body, "X-Strait-Peer-Identity"))
        # mTLS still works next to it
        code, body = self.curl_from("a", "http://%s/" % BACKEND_IP, host="backend")
        self.assertEqual(header(body, "X-Strait-Peer-Identity"),
                         spiffe("frontend"))

    def test_opaque_tcp_over_mtls(self):
        stop = self.sniff()
        word = "ping-%s" % uuid.uuid4().hex
        r = self.sh(*self.in_ns("a", APP_UID, PY, "-c", TCP_CLIENT, ECHO_IP, "7000", word))
        pkts = stop()
        # the app's half-close travelled end to end: the echo answered after the client's FIN
        self.assertEqual(r.stdout, "echo:" + word)
        wire = b"".join(pl for _, _, pl in pkts)
        self.assertNotIn(word.encode(), wire)
        to_b = b"".join(pl for sp, dp, pl in pkts if dp == 7000)
        self.assertEqual(to_b[:1], b"\x16")

    def test_peer_with_another_identity_is_refused(self):
        # lookalike's pod is listed as running as "backend", but its sidecar holds the
        # identity its token proves ("intruder"): a's sidecar will not talk to it
        code, _ = self.curl_from("a", "http://%s/" % LOOKALIKE_IP, host="lookalike")
        self.assertEqual(code, "502")
        harness.wait_until(lambda: "event=mesh_peer_refused" in self.sidecars["a"].log(), 5,
                           what="mesh_peer_refused in a's log")
        self.assertIn(spiffe("intruder"), self.sidecars["a"].log())
        # c's own certificate says intruder, not the backend it claimed in the manifest
        self.assertIn(spiffe("intruder"), self.sidecars["c"].log())

    def test_authorization_policy(self):
        # admin's Allow policy admits the frontend ...
        code, body = self.curl_from("a", "http://%s/" % ADMIN_IP, host="admin")
        self.assertEqual(code, "200", body)
        self.assertEqual(header(body, "X-Strait-Peer-Identity"), spiffe("frontend"))
        # ... and no one else: the intruder's request gets 403 from b's sidecar
        code, body = self.curl_from("c", "http://%s/" % ADMIN_IP, host="admin")
        self.assertEqual(code, "403", body)
        self.assertGreaterEqual(self.metric("b", "strait_mesh_authz_total",
                                            'protocol="http",decision="deny"') or 0, 1)
        log = self.sidecars["b"].log()
        self.assertIn("event=mesh_authz_denied", log)
        self.assertIn("identity=%s" % spiffe("intruder"), log)
        # a Service with no policy follows the default (allow)
        code, _ = self.curl_from("c", "http://%s/" % BACKEND_IP, host="backend")
        self.assertEqual(code, "200")
        # the echo's Deny policy: the intruder's TCP connection is reset, the frontend's works
        r = self.sh(*self.in_ns("c", APP_UID, PY, "-c", TCP_CLIENT, ECHO_IP, "7000", "hi"),
                    check=False)
        # the caller's app gets nothing through (its sidecar passes the reset on when it sees
        # one; a reset that races the caller's own FIN can reach it as an end instead)
        self.assertNotIn("echo:", r.stdout)
        # the callee resets: an mTLS client holding the intruder's certificate, from the hub
        d = os.path.join(self.dir, "intruder")
        os.mkdir(d)
        self.sh("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-subj", "/", "-keyout", os.path.join(d, "key.pem"),
                "-out", os.path.join(d, "csr.pem"))
        with open(os.path.join(d, "csr.pem")) as f:
            body = json.dumps({"csr": f.read()})
        got = self.sh("ip", "netns", "exec", self.ns["hub"], "curl", "-s", "--cacert",
                      self.bundle, "-H", "Authorization: Bearer tok-c", "-H",
                      "Content-Type: application/json", "--data-binary", body,
                      "https://%s:%d/v1/identity" % (HUB_IP, IDENTITY_PORT))
        with open(os.path.join(d, "crt.pem"), "w") as f:
            f.write(json.loads(got.stdout)["certificate"])
        p = subprocess.run(["ip", "netns", "exec", self.ns["hub"], "openssl", "s_client",
                            "-connect", "%s:7000" % POD_IP["b"], "-CAfile", self.bundle,
                            "-cert", os.path.join(d, "crt.pem"), "-key",
                            os.path.join(d, "key.pem"), "-alpn", "strait-opaque", "-ign_eof"],
                           input=b"hi", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=15 * harness.SLOW)
        out = p.stdout.decode("latin-1") + p.stderr.decode("latin-1")
        self.assertIn("TLSv1.3", out)  # the handshake itself went through
        self.assertRegex(out, r"errno=104|Connection reset by peer", out[-1500:])
        self.assertNotIn("echo:", out)
        self.assertGreaterEqual(self.metric("b", "strait_mesh_authz_total",
                                            'protocol="tcp",decision="deny"') or 0, 1)
        r = self.sh(*self.in_ns("a", APP_UID, PY, "-c", TCP_CLIENT, ECHO_IP, "7000", "hi"))
        self.assertEqual(r.stdout, "echo:hi")

    def test_ipv6(self):
        # IPv6 end to end: the app dials an IPv6 ClusterIP, both sidecars take IPv6 (their
        # default [::1]:4140 / [::]:4143 listeners), the app gets an IPv6 caller on ::1
        code, body = self.curl_from("a", "http://[%s]/v6" % BACKEND6_IP, host="backend6")
        self.assertEqual(code, "200", body)
        self.assertEqual(header(body, "X-Strait-Peer-Identity"), spiffe("frontend"))
        self.assertEqual(json.loads(body).get("backend"), "b6")

    def loop_requests(self, seconds):
        """Requests a -> backend for the given seconds; returns (ok, failures)."""
        ok, failures = 0, []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            code, body = self.curl_from("a", "http://%s/loop" % BACKEND_IP, host="backend",
                                        timeout=5)
            if code == "200":
                ok += 1
            else:
                failures.append((code, body[:200]))
            time.sleep(0.05)
        return ok, failures


class MeshRotationTest(MeshSidecarTest):
    """Short-lived leaves: both sidecars renew several times while requests run."""
    LEAF_TTL = "12s"

    def test_rotation_under_load(self):
        def issued(pod):
            return self.sidecars[pod].log().count("event=mesh_identity_issued")
        before = {p: issued(p) for p in ("a", "b")}
        ok, failures = self.loop_requests(20)
        self.assertEqual(failures, [])
        self.assertGreater(ok, 20)
        for p in ("a", "b"):  # renewed at half life: at least twice in 20 s
            self.assertGreaterEqual(issued(p) - before[p], 2, self.sidecars[p].log()[-2000:])

    # the other tests run once, with the default lifetime
    test_http_goes_mtls_with_identities = None
    test_inbound_presents_workload_identity_and_wants_one = None
    test_strict_refuses_plaintext_permissive_accepts = None
    test_opaque_tcp_over_mtls = None
    test_peer_with_another_identity_is_refused = None
    test_authorization_policy = None
    test_ipv6 = None


class MeshControllerDownTest(MeshSidecarTest):
    """The controller away for a minute: certificates and routes already there keep serving."""

    def test_controller_down_for_a_minute(self):
        self.assertEqual(self.ctl.stop(), [])
        ok, failures = self.loop_requests(60)
        self.assertEqual(failures, [])
        self.assertGreater(ok, 60)
        for p in ("a", "b"):
            self.assertEqual(self.admin(p, "/ready")[0], "200")
        # back again: nothing to redo by hand
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        self.start_controller()
        code, _ = self.curl_from("a", "http://%s/" % BACKEND_IP, host="backend")
        self.assertEqual(code, "200")

    test_http_goes_mtls_with_identities = None
    test_inbound_presents_workload_identity_and_wants_one = None
    test_strict_refuses_plaintext_permissive_accepts = None
    test_opaque_tcp_over_mtls = None
    test_peer_with_another_identity_is_refused = None
    test_authorization_policy = None
    test_ipv6 = None


if __name__ == "__main__":
    unittest.main()


class SidecarStartupTest(harness.StraitTest):
    """--sidecar on loopback, no namespaces: defaults and readiness without an identity."""

    def test_ready_needs_snapshot_and_certificate(self):
        import certs
        cdir = os.path.join(self.s.dir, "ca")
        os.mkdir(cdir)
        ca = certs.make_ca(cdir, "mesh root")
        self.s.controller()
        admin = harness.free_port()
        # no --socket: the env names it; the identity endpoint does not answer (port closed)
        p = harness.Proc("sidecar", [os.path.join(harness.BIN, "strait-dataplane"), "--sidecar",
                                     "--inbound", "127.0.0.1:%d" % harness.free_port(),
                                     "--outbound", "127.0.0.1:%d" % harness.free_port(),
                                     "--admin", "127.0.0.1:%d" % admin,
                                     "--identity-addr", "127.0.0.1:%d" % harness.free_port(),
                                     "--trust-anchors", ca.crt, "--token-path", "/nonexistent",
                                     "--log-level", "debug"],
                         self.s.dir, strait=True, env={"STRAIT_SNAPSHOT_SOCKET": self.s.sock})
        self.s.procs.append(p)
        harness.wait_until(lambda: "event=snapshot_applied" in p.log() or not p.alive(), 10,
                           what="the sidecar's snapshot over STRAIT_SNAPSHOT_SOCKET")
        self.assertTrue(p.alive(), p.log())
        # a snapshot alone is not enough: no workload certificate, not ready (and says why)
        status, body = harness.local_get(admin, "/ready")
        self.assertEqual((status, body), (503, b"no workload certificate\n"))
        harness.wait_until(lambda: "event=mesh_identity_failed" in p.log(), 10,
                           what="a failed identity request, retried")
        self.assertIn("retry_in=", p.log())
