#!/usr/bin/env python3
"""`make bench-mesh`: issue 10's sidecar targets, measured (never asserted).

Set-up (as tests/e2e/test_mesh_sidecar.py, in network namespaces this script makes and
removes; needs root, iproute2, iptables, setpriv): a hub namespace with a bridge and the
controller (file mode, --mesh, a token map, the hub's IP as the identity endpoint's name);
four "pods" on the bridge by veth pairs:
  ma  meshed client   (mesh-init, sidecar as UID 2102, ServiceAccount frontend)
  mb  meshed server   (mesh-init, sidecar as UID 2102, ServiceAccount backend)
  da  direct client   (no mesh-init, no sidecar)
  db  direct server   (no mesh-init, no sidecar)
  pa  peer client     (mesh-init, HAProxy or nginx as the proxy, see below)
  pb  peer server     (mesh-init, HAProxy or nginx as the proxy)
The server apps are `meshload serve` (64-byte 200s, keep-alive); the clients `meshload load`
(open loop: a fixed RATE schedule, latency counted from when each request was due), both as
UID 1000. Every sidecar runs --workers 1 and gets its snapshot from the controller's
discovery feed (only the Services its pod uses; --full: the whole snapshot over --socket).

Phases:
  1. idle: the manifests hold only the two meshed pods (no Services: an empty mesh); each
     sidecar's VmRSS once it is ready (it has its certificate) and has sat 2 s.
  2. directory: SERVICES Services + EndpointSlices + Pods are written in one file (10 of them,
     bench-0..9, in front of mb; the rest in front of pods that do not exist, in 50
     namespaces); once ma's sidecar routes bench-9 (on the feed: ma subscribed to bench-9;
     with --full: the whole file is in its snapshot); VmRSS.
  3. load, ROUNDS rounds, each: direct (da -> db:8080, 10 Hosts), meshed (ma -> the 10
     ClusterIPs of bench-0..9, through both sidecars) and each peer (pa -> the same), RATE
     req/s for SECS s after a 2 s warm-up, 2 keep-alive connections per Service; the order
     rotates per round. During the meshed (and peer) runs: utime+stime of both proxies
     (/proc/PID/stat, their threads and child processes) over the run.
  4. VmRSS / VmHWM of both sidecars after the load (10 Services in use, SERVICES in the mesh).
Peers (--peers, default haproxy,nginx,haproxy-tcp; bench/meshpeers.py): in the same rounds, each
peer does the two sidecars' job between two more pods made like ma/mb (pa client, pb server: the
same mesh-init interception, the proxy as UID 2102 with one worker, mTLS 1.3 between them,
pooled keep-alive on both hops), the same load from pa; their CPU and per-hop latency, and
the ratios strait/peer (below 1: Strait uses less), in the report.

Options: --secs, --rate, --rounds, --services, --rt (sidecars, apps and clients SCHED_FIFO 1,
so that other load on a shared machine preempts them less), --full, --peers LIST|none, -o FILE
(a copy of the report).
BUILD=dir picks the binaries (build/strait-controller, build/strait-dataplane, build/meshload).
"""
import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402  (yaml_docs: the manifests)
import meshpeers  # noqa: E402

BIN = os.path.abspath(os.environ.get("BUILD", os.path.join(ROOT, "build")))
PROXY_UID, APP_UID = 2102, 1000
HUB_IP = "10.203.0.254"
POD_IP = {"ma": "10.203.0.1", "mb": "10.203.0.2", "da": "10.203.0.3", "db": "10.203.0.4",
          "pa": "10.203.0.5", "pb": "10.203.0.6"}
MESHED = ("ma", "mb")  # Strait's sidecars
INTERCEPTED = MESHED + ("pa", "pb")  # mesh-init: the sidecars' pods and the peers'
SA = {"ma": "frontend", "mb": "backend"}
IDENTITY_PORT = 8443
TICK = os.sysconf("SC_CLK_TCK")
N_USED = 10


def bench_ip(i):
    return "10.97.0.%d" % (i + 1)


class Bench:
    def __init__(self, args):
        self.args = args
        self.procs = []
        self.tag = uuid.uuid4().hex[:6]
        self.ns = {k: "smb-%s-%s" % (k, self.tag) for k in ("hub",) + tuple(POD_IP)}
        self.made = []
        self.dir = tempfile.mkdtemp(prefix="strait-bench-mesh-")
        os.chmod(self.dir, 0o777)
        self.mdir = os.path.join(self.dir, "manifests")
        os.mkdir(self.mdir)
        self.lines = []

    # -- plumbing --

    def sh(self, *cmd, check=True, timeout=60):
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise SystemExit("bench-mesh: %s failed: %s %s" % (" ".join(cmd), p.stdout,
                                                                p.stderr))
        return p

    def in_ns(self, pod, uid, *cmd, rt=False):
        pre = ["chrt", "-f", "1"] if rt and self.args.rt else []
        return pre + ["ip", "netns", "exec", self.ns[pod], "setpriv", "--reuid=%d" % uid,
                "--regid=%d" % uid, "--clear-groups", *cmd]

    def start(self, name, cmd):
        log = open(os.path.join(self.dir, name + ".log"), "wb")
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True)
        p.name = name
        self.procs.append(p)
        return p

    def log_of(self, name):
        with open(os.path.join(self.dir, name + ".log"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait(self, what, cond, timeout=20):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return
            time.sleep(0.1)
        raise SystemExit("bench-mesh: timed out waiting for " + what)

    def net(self):
        hub = self.ns["hub"]
        for ns in self.ns.values():
            self.sh("ip", "netns", "add", ns)
            self.made.append(ns)
        self.sh("ip", "-n", hub, "link", "set", "lo", "up")
        self.sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
        self.sh("ip", "-n", hub, "addr", "add", HUB_IP + "/24", "dev", "br0")
        self.sh("ip", "-n", hub, "link", "set", "br0", "up")
        for pod, ip in POD_IP.items():
            ns, hv = self.ns[pod], "h%s%s" % (pod, self.tag)
            self.sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name",
                    hv, "netns", hub)
            self.sh("ip", "-n", hub, "link", "set", hv, "master", "br0")
            self.sh("ip", "-n", hub, "link", "set", hv, "up")
            self.sh("ip", "-n", ns, "link", "set", "lo", "up")
            self.sh("ip", "-n", ns, "link", "set", "eth0", "up")
            self.sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth0")
            self.sh("ip", "-n", ns, "route", "add", "default", "via", HUB_IP)
            if pod in INTERCEPTED:
                self.sh("ip", "netns", "exec", ns, os.path.join(BIN, "strait-controller"),
                        "mesh-init")

    @staticmethod
    def stop(procs):
        """SIGTERM to each process group of procs, then wait (SIGKILL after 10 s)."""
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except OSError:
                pass
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def cleanup(self):
        self.stop(list(reversed(self.procs)))
        for ns in self.made:
            self.sh("ip", "netns", "del", ns, check=False)
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print("bench-mesh: logs kept in " + self.dir)

    # -- manifests --

    @staticmethod
    def pod(name, ns, sa, ip):
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns,
                             "annotations": {"strait.dev/inject": "enabled"}},
                "spec": {"serviceAccountName": sa,
                         "containers": [{"name": "app", "image": "app"}]},
                "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}

    @staticmethod
    def svc(name, ns, ip, pods):
        """pods: [(pod name, pod IP)] behind port 80 -> 8080."""
        return [{"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": name, "namespace": ns},
                 "spec": {"clusterIP": ip, "clusterIPs": [ip],
                          "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                                     "protocol": "TCP"}]}},
                {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                 "metadata": {"name": name + "-1", "namespace": ns,
                              "labels": {"kubernetes.io/service-name": name}},
                 "addressType": "IPv4",
                 "endpoints": [{"addresses": [pip], "conditions": {"ready": True},
                                "targetRef": {"kind": "Pod", "namespace": ns, "name": pn}}
                               for pn, pip in pods],
                 "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]

    def write(self, name, docs):
        tmp = os.path.join(self.dir, name + ".tmp")
        with open(tmp, "w") as f:
            f.write(harness.yaml_docs(*docs))
        os.rename(tmp, os.path.join(self.mdir, name))

    def directory(self):
        docs = []
        for i in range(self.args.services - N_USED):
            ns = "fill-%d" % (i % 50)
            pip = "10.99.%d.%d" % (i // 250, i % 250 + 1)
            docs.append(self.pod("p%d" % i, ns, "sa-%d" % (i % 20), pip))
            docs.extend(self.svc("s%d" % i, ns, "10.98.%d.%d" % (i // 250, i % 250 + 1),
                                 [("p%d" % i, pip)]))
        for i in range(N_USED):
            docs.extend(self.svc("bench-%d" % i, "shop", bench_ip(i), [("mb", POD_IP["mb"])]))
        return docs

    # -- the pieces --

    def controller(self):
        tokens = os.path.join(self.dir, "tokens")
        with open(tokens, "w") as f:
            f.write("tok-ma shop frontend\ntok-mb shop backend\n")
        for pod in MESHED:
            path = os.path.join(self.dir, "token-" + pod)
            with open(path, "w") as f:
                f.write("tok-%s\n" % pod)
            os.chmod(path, 0o644)
        self.sock = os.path.join(self.dir, "snap.sock")
        self.bundle = os.path.join(self.dir, "trust-bundle.pem")
        rootdir = os.path.join(self.dir, "root")
        os.mkdir(rootdir, 0o700)
        os.chown(rootdir, PROXY_UID, PROXY_UID)
        self.write("pods.yaml", [self.pod(p, "shop", SA[p], POD_IP[p]) for p in MESHED])
        p = self.start("controller", self.in_ns(
            "hub", PROXY_UID, os.path.join(BIN, "strait-controller"), "--manifests", self.mdir,
            "--socket", self.sock, "--mesh", "--mesh-listen", "%s:%d" % (HUB_IP, IDENTITY_PORT),
            "--mesh-token-file", tokens, "--mesh-root-dir", rootdir,
            "--mesh-trust-bundle-out", self.bundle, "--mesh-server-names", HUB_IP))
        self.wait("controller", lambda: (os.path.exists(self.sock) and
                                         os.path.exists(self.bundle)) or p.poll() is not None)
        if p.poll() is not None:
            raise SystemExit("bench-mesh: controller exited:\n" + self.log_of("controller"))

    def sidecar(self, pod):
        # the discovery feed (what a pod runs), or with --full the controller's whole snapshot
        source = ["--socket", self.sock] if self.args.full else []
        p = self.start("sidecar-" + pod, self.in_ns(
            pod, PROXY_UID, os.path.join(BIN, "strait-dataplane"), "--sidecar",
            *source, "--namespace", "shop",
            "--identity-addr", "%s:%d" % (HUB_IP, IDENTITY_PORT),
            "--trust-anchors", self.bundle, "--token-path",
            os.path.join(self.dir, "token-" + pod), "--admin", "127.0.0.1:4191",
            "--workers", "1", rt=True))
        self.wait("sidecar %s ready" % pod,
                  lambda: self.admin(pod, "/ready") == "200" or p.poll() is not None)
        if p.poll() is not None:
            raise SystemExit("bench-mesh: sidecar %s exited:\n%s" % (
                pod, self.log_of("sidecar-" + pod)))
        pid = self.descendant(p.pid, "strait-dataplane")  # ip netns exec may fork
        if not pid:
            raise SystemExit("bench-mesh: no strait-dataplane under pid %d" % p.pid)
        p.sidecar_pid = pid
        return p

    @staticmethod
    def children():
        """{parent pid: [(pid, comm)]} of every process now."""
        kids = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open("/proc/%s/stat" % d) as f:
                        st = f.read()
                except OSError:
                    continue
                name, rest = st.split(" (", 1)[1].rsplit(") ", 1)
                kids.setdefault(int(rest.split()[1]), []).append((int(d), name))
        return kids

    @classmethod
    def descendant(cls, pid, comm):
        """The pid of the first process named comm among pid and its descendants, or None."""
        kids = cls.children()
        comm = comm[:15]  # the kernel's comm is at most 15 characters
        todo = [pid]
        with open("/proc/%d/comm" % pid) as f:
            if f.read().strip() == comm:
                return pid
        while todo:
            for kid, name in kids.get(todo.pop(), []):
                if name == comm:
                    return kid
                todo.append(kid)
        return None

    def admin(self, pod, path):
        r = self.sh("ip", "netns", "exec", self.ns[pod], "curl", "-s", "-o", "/dev/null", "-w",
                    "%{http_code}", "http://127.0.0.1:4191" + path, check=False)
        return r.stdout

    def app(self, pod):
        p = self.start("app-" + pod, self.in_ns(pod, APP_UID, os.path.join(BIN, "meshload"),
                                                "serve", "0.0.0.0:8080", rt=True))
        self.wait("app " + pod, lambda: "ready" in self.log_of("app-" + pod))
        p.app_pid = self.descendant(p.pid, "meshload")
        return p

    @staticmethod
    def status(pid, key):
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return None

    @staticmethod
    def cpu(pids):
        """utime + stime of pids (threads included), in seconds."""
        total = 0
        for pid in pids:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / TICK

    @staticmethod
    def machine():
        """(steal, total) jiffies of the machine from /proc/stat: the VM's vCPUs given to others."""
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return v[7], sum(v)

    @classmethod
    def tree(cls, pid):
        """pid and its descendants (nginx's master and worker)."""
        kids = cls.children()
        out, todo = [], [pid]
        while todo:
            p = todo.pop()
            out.append(p)
            todo.extend(k for k, _ in kids.get(p, []))
        return out

    def peer_start(self, name):
        """Starts peer name's proxies in pa and pb; returns {pod: pid} once pa routes."""
        cmds = meshpeers.commands(name, self.dir, self.peer_certs, POD_IP["pb"])
        procs = {pod: self.start("%s-%s" % (name, pod), self.in_ns(pod, PROXY_UID, *cmd,
                                                                     rt=True))
                 for pod, cmd in cmds.items()}

        def up():
            for pod, p in procs.items():
                if p.poll() is not None:
                    raise SystemExit("bench-mesh: %s in %s exited:\n%s" % (
                        name, pod, self.log_of("%s-%s" % (name, pod))))
            r = self.sh(*self.in_ns("pa", APP_UID, "curl", "-s", "-o", "/dev/null", "-w",
                                    "%{http_code}", "-m", "2", "-H", "Host: bench-0",
                                    "http://%s/" % bench_ip(0)), check=False)
            return r.stdout == "200"
        self.wait("%s between pa and pb" % name, up)
        return {pod: p.pid for pod, p in procs.items()}

    def peer_stop(self, pids):
        mine = [p for p in self.procs if p.pid in pids.values()]
        self.stop(mine)
        for p in mine:
            self.procs.remove(p)

    def rss_line(self, label):
        parts = []
        for pod in MESHED:
            pid = self.sc[pod].sidecar_pid
            parts.append("%s_rss_kib=%d %s_hwm_kib=%d %s_anon_kib=%d %s_file_kib=%d" % (
                pod, self.status(pid, "VmRSS"), pod, self.status(pid, "VmHWM"), pod,
                self.status(pid, "RssAnon"), pod, self.status(pid, "RssFile")))
        self.out("%-10s %s" % (label, " ".join(parts)))
        self.out("#   ma's pages by mapping (KiB): " + self.mappings(self.sc["ma"].sidecar_pid))

    @staticmethod
    def mappings(pid, top=8):
        """The top resident mappings of pid, as bench/idlerss.sh prints them."""
        rss, name = {}, "[anon]"
        with open("/proc/%d/smaps" % pid) as f:
            for line in f:
                head = line.split()
                if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
                    name = os.path.basename(head[5]) if len(head) > 5 else "[anon]"
                elif head[0] == "Rss:":
                    rss[name] = rss.get(name, 0) + int(head[1])
        best = sorted(rss.items(), key=lambda kv: -kv[1])[:top]
        return " ".join("%s=%d" % kv for kv in best if kv[1])

    def load(self, pod, targets):
        a = self.args
        cmd = self.in_ns(pod, APP_UID, os.path.join(BIN, "meshload"), "load", "-r",
                         str(a.rate), "-d", str(a.secs), "-w", "2", "-c", "2", *targets,
                         rt=True)
        r = self.sh(*cmd, check=False, timeout=a.secs + 60)
        if not r.stdout.startswith("requests="):
            raise SystemExit("bench-mesh: meshload failed: " + r.stdout + r.stderr)
        return dict(kv.split("=", 1) for kv in r.stdout.split())

    def out(self, line):
        print(line, flush=True)
        self.lines.append(line)

    def run(self):
        a = self.args
        self.net()
        self.controller()
        self.peers = [] if a.peers == "none" else a.peers.split(",")
        extra = ("pb",) if self.peers else ()
        self.apps = {pod: self.app(pod) for pod in ("mb", "db") + extra}
        if self.peers:
            self.peer_certs = meshpeers.make_certs(self.dir)
        self.sc = {pod: self.sidecar(pod) for pod in MESHED}
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
        self.out("# strait bench-mesh: %s nproc=%d rate=%d secs=%d rounds=%d services=%d rt=%d "
                 "snapshot=%s loadavg=%s" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                             os.cpu_count(), a.rate, a.secs, a.rounds,
                                             a.services, a.rt, "full" if a.full else "feed",
                                             load))
        self.out("# latency in microseconds (open loop, from when each request was due); "
                 "cpu: sidecar utime+stime / run time, in vCPU")
        time.sleep(2)
        self.rss_line("idle")
        t = time.monotonic()
        self.write("directory.yaml", self.directory())
        last = "http://%s/" % bench_ip(N_USED - 1)

        def routed():
            r = self.sh(*self.in_ns("ma", APP_UID, "curl", "-s", "-o", "/dev/null", "-w",
                                    "%{http_code}", "-m", "5", "-H", "Host: bench-%d" % (
                                        N_USED - 1), last), check=False)
            return r.stdout == "200"
        self.wait("the directory in ma's sidecar", routed, timeout=120)
        self.out("# %d Services in the mesh; bench-%d routed by ma's sidecar after %.1f s "
                 "(holding %s)" % (a.services, N_USED - 1, time.monotonic() - t,
                                   "all of them" if a.full else "what ma uses"))
        time.sleep(2)
        self.rss_line("directory")
        direct = ["%s:8080/bench-%d" % (POD_IP["db"], i) for i in range(N_USED)]
        meshed = ["%s:80/bench-%d" % (bench_ip(i), i) for i in range(N_USED)]
        kinds = ["direct", "meshed"] + self.peers
        res = {k: [] for k in kinds}
        for rnd in range(a.rounds):
            order = kinds[rnd % len(kinds):] + kinds[:rnd % len(kinds)]
            for kind in order:
                server = self.apps[{"direct": "db", "meshed": "mb"}.get(kind, "pb")].app_pid
                proxies = self.peer_start(kind) if kind in self.peers else None
                pods = {"direct": (), "meshed": MESHED}.get(kind, ("pa", "pb"))
                pids = {p: self.tree(self.sc[p].sidecar_pid if kind == "meshed" else
                                     proxies[p]) for p in pods}
                c0 = {p: self.cpu(pids[p]) for p in pods}
                a0, t0, m0 = self.cpu([server]), time.monotonic(), self.machine()
                r = self.load({"direct": "da", "meshed": "ma"}.get(kind, "pa"),
                              direct if kind == "direct" else meshed)
                el = time.monotonic() - t0
                if pods:
                    c = {p: (self.cpu(pids[p]) - c0[p]) / el for p in pods}
                    r.update({"cpu_" + p: "%.4f" % c[p] for p in pods})
                # the apps' own CPU, for scale: the kernel's TCP work is charged to them too
                r["cpu_server_app"] = "%.4f" % ((self.cpu([server]) - a0) / el)
                r["cpu_client"] = "%.4f" % (float(r.pop("client_cpu_s")) / el)
                m1 = self.machine()  # a disturbed run shows here (the host ran others)
                r["steal_pct"] = "%.1f" % (100.0 * (m1[0] - m0[0]) / max(1, m1[1] - m0[1]))
                if proxies:
                    self.peer_stop(proxies)
                res[kind].append(r)
                self.out("round=%d %-11s %s" % (rnd + 1, kind, " ".join(
                    "%s=%s" % kv for kv in r.items())))
        self.rss_line("after_load")
        for pod in MESHED:  # how the sidecars connected (pooling shows here)
            r = self.sh("ip", "netns", "exec", self.ns[pod], "curl", "-s",
                        "http://127.0.0.1:4191/metrics", check=False)
            keep = [ln.replace(" ", "=", 1) if "{" not in ln else ln.replace("} ", "}=")
                    for ln in r.stdout.splitlines()
                    if ln.startswith(("strait_mesh_connections_total",
                                      "strait_tls_handshakes_total",
                                      "strait_upstream_connections_total",
                                      "strait_upstream_pool_reused_total"))]
            self.out("# %s metrics: %s" % (pod, " ".join(keep)))
        with open("/proc/loadavg") as f:
            self.out("# loadavg at the end: " + " ".join(f.read().split()[:3]))
        summarize(res, self.out)
        if a.o:
            with open(a.o, "w") as f:
                f.write("\n".join(self.lines) + "\n")


STEAL_MAX = 5.0  # per cent: a run with more steal is set aside by the summary


def summarize(res, out):
    """The summary of res ({kind: [round dicts]}, "direct" first) through out (one line each).

    Medians over the rounds whose steal (the VM's vCPUs given to other guests, /proc/stat) is
    at most STEAL_MAX per cent: on a shared host such a round measures the neighbours (latency
    in milliseconds, CPU doubled, for every proxy alike). The set-aside rounds are named; a
    kind with no round left keeps all of its rounds, and says so.
    """
    kinds = list(res)
    peers = [k for k in kinds if k not in ("direct", "meshed")]
    used = {}
    for kind in kinds:
        calm = [r for r in res[kind] if float(r.get("steal_pct", 0)) <= STEAL_MAX]
        used[kind] = calm or res[kind]
        out("# %s: %d of %d rounds with steal <= %.0f %% (steal by round: %s)%s" % (
            kind, len(calm), len(res[kind]), STEAL_MAX,
            ",".join(r.get("steal_pct", "?") for r in res[kind]),
            "" if calm else "; none calm: all rounds used"))
    out("# medians over those rounds; the peers (%s) do the sidecars' job between pods pa and "
        "pb (bench/meshpeers.py)" % (", ".join(peers) or "none"))
    qs = ("p50", "p90", "p99", "p999", "svc_p50", "svc_p90", "svc_p99", "send_late_p99")
    med = {}
    for kind in kinds:
        med[kind] = {q: statistics.median(float(r[q + "_us"]) for r in used[kind]) for q in qs}
        errs = sum(int(r["errors"]) + int(r["unfinished"]) for r in res[kind])
        out("%-11s %s errors=%d" % (kind, " ".join(
            "%s_us=%.1f" % (q, med[kind][q]) for q in qs), errs))
    hops, cpu = {}, {}
    for kind in kinds[1:]:
        for pre, what in (("", "from when due"), ("svc_", "from sending")):
            hop = [(med[kind][pre + q] - med["direct"][pre + q]) / 2
                   for q in ("p50", "p90", "p99")]
            hops[kind, pre] = hop
            out("per_hop_added %-11s (%s) p50_us=%.1f p90_us=%.1f p99_us=%.1f%s" % (
                kind, what, hop[0], hop[1], hop[2],
                " (target p99 < 200)" if kind == "meshed" else ""))
    for kind in kinds[1:]:
        pc, ps = {"meshed": MESHED}.get(kind, ("pa", "pb"))
        cpu[kind] = (statistics.median(float(r["cpu_" + pc]) for r in used[kind]),
                     statistics.median(float(r["cpu_" + ps]) for r in used[kind]))
        out("cpu_vcpu %-11s client_proxy=%.4f server_proxy=%.4f both=%.4f at 1,000 req/s%s" % (
            kind, cpu[kind][0], cpu[kind][1], sum(cpu[kind]),
            " (target < 0.05 per sidecar per 1,000 req/s)" if kind == "meshed" else ""))
    for peer in peers:  # strait / peer: below 1 is better
        out("ratio strait/%s cpu_client=%.2f cpu_server=%.2f per_hop_p50=%.2f "
            "per_hop_svc_p50=%.2f per_hop_svc_p90=%.2f per_hop_svc_p99=%.2f" % (
                peer, cpu["meshed"][0] / cpu[peer][0], cpu["meshed"][1] / cpu[peer][1],
                hops["meshed", ""][0] / hops[peer, ""][0],
                hops["meshed", "svc_"][0] / hops[peer, "svc_"][0],
                hops["meshed", "svc_"][1] / hops[peer, "svc_"][1],
                hops["meshed", "svc_"][2] / hops[peer, "svc_"][2]))


def resummarize(path):
    """--summarize FILE: the summary again from the round lines of a report (-o)."""
    res = {}
    with open(path) as f:
        for line in f:
            if line.startswith("round="):
                head, kind, rest = line.split(None, 2)
                res.setdefault(kind, []).append(dict(kv.split("=", 1) for kv in rest.split()))
    if "direct" not in res or "meshed" not in res:
        raise SystemExit("bench-mesh: no direct and meshed rounds in " + path)
    order = ["direct", "meshed"] + [k for k in res if k not in ("direct", "meshed")]
    summarize({k: res[k] for k in order}, print)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--secs", type=int, default=15)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--services", type=int, default=5000)
    ap.add_argument("--rt", action="store_true",
                    help="run the sidecars, apps and clients SCHED_FIFO 1 (chrt): shields the "
                    "latency figures from other load on a shared machine")
    ap.add_argument("--full", action="store_true",
                    help="sidecars read the controller's whole snapshot (--socket) instead of "
                    "the discovery feed: every Service of the mesh in every sidecar")
    ap.add_argument("--peers", default="haproxy,nginx,haproxy-tcp",
                    help="comma-separated peers measured doing the sidecars' job in the same "
                    "run (haproxy, nginx, haproxy-tcp: a plain TCP relay, the floor; "
                    "installed with apt-get when missing), or none")
    ap.add_argument("-o", help="write a copy of the report here")
    ap.add_argument("--summarize", metavar="FILE",
                    help="print the summary again from a report's round lines, run nothing")
    args = ap.parse_args()
    if args.summarize:
        return resummarize(args.summarize)
    if args.peers != "none":
        bad = [n for n in args.peers.split(",") if n not in meshpeers.PEERS]
        if bad:
            raise SystemExit("bench-mesh: unknown peer " + ", ".join(bad))
    if os.geteuid() != 0:
        raise SystemExit("bench-mesh: needs root (network namespaces, iptables)")
    for tool in ("ip", "iptables-restore", "setpriv", "curl"):
        if not shutil.which(tool):
            raise SystemExit("bench-mesh: missing " + tool)
    for b in ("strait-controller", "strait-dataplane", "meshload"):
        if not os.access(os.path.join(BIN, b), os.X_OK):
            raise SystemExit("bench-mesh: no %s in %s (make all %s/meshload)" % (b, BIN, BIN))
    if args.peers != "none":
        meshpeers.install(args.peers.split(","))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    b = Bench(args)
    try:
        b.run()
    finally:
        b.cleanup()


if __name__ == "__main__":
    main()
