"""End-to-end harness for Strait: real processes on 127.0.0.1, real curl as the client.

What it does: starts demo backends (tools/backend.py), strait-controller in file mode and
strait-dataplane, each in its own process group with its output in a per-test temp dir;
writes Kubernetes manifests; talks HTTP through curl and, for malformed input, raw sockets.
What it does not: mock anything, or sleep to synchronise - every wait is a poll of a
condition with a deadline (wait_until).

Invariants: every process started through a Stack is stopped in Stack.stop(), which also
reports a Strait binary that did not exit 0 after SIGTERM or wrote a sanitizer report.
Timeouts are multiplied by SLOW for sanitizer builds (run.py sets BIN and SLOW).
"""
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BACKEND_PY = os.path.join(ROOT, "tools", "backend.py")
KUBE_APISERVER_DIR = os.path.join(ROOT, "tests", "kube-apiserver")
BIN = os.environ.get("STRAIT_E2E_BIN", os.path.join(ROOT, "build"))
SLOW = 1.0  # timeout multiplier; run.py raises it for ASan/UBSan binaries
SESSION_DIR = None  # parent of all per-test temp dirs; run.py owns it

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer",
                     "ERROR: UndefinedBehaviorSanitizer")


# ---------------------------------------------------------------------------------------
# small utilities

_handed_out = set()


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (bind 0, close); never the same
    one twice in a run, so two ports picked back to back differ."""
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_until(pred, timeout=5.0, interval=0.02, what="condition"):
    """Polls pred() until it returns a truthy value; returns that value. Raises
    AssertionError naming `what` once timeout*SLOW seconds have passed."""
    deadline = time.monotonic() + timeout * SLOW
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - predicate errors mean "not yet"
            last_exc = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s%s" % (
                timeout * SLOW, what, " (last error: %r)" % (last_exc,) if last_exc else ""))
        time.sleep(interval)


def port_accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def established_to(port):
    """Number of ESTABLISHED TCP connections whose local port is `port` (i.e. accepted by a
    server listening there), from /proc/net/tcp{,6}."""
    n = 0
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] == "01" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        n += 1
        except FileNotFoundError:
            pass
    return n


def new_temp_dir(label):
    base = SESSION_DIR or tempfile.gettempdir()
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[-60:]
    return tempfile.mkdtemp(prefix=safe + "-", dir=base)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------
# YAML and manifests

_PLAIN = re.compile(r"^[A-Za-z0-9/_.][A-Za-z0-9/_.-]*$")
_NUMBERISH = re.compile(r"^[-+.0-9][-+.0-9eE_:]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"}


def _yaml_scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return str(v)
    v = str(v)
    if _PLAIN.match(v) and v.lower() not in _YAML_WORDS and not _NUMBERISH.match(v):
        return v
    return json.dumps(v)  # a JSON string is a valid double-quoted YAML scalar


def to_yaml(obj, indent=0):
    """Block-style YAML for dicts/lists/scalars (enough for Kubernetes manifests)."""
    pad = "  " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                lines.append("%s%s:" % (pad, k))
                lines.append(to_yaml(v, indent + 1))
            elif isinstance(v, dict):
                lines.append("%s%s: {}" % (pad, k))
            elif isinstance(v, list):
                lines.append("%s%s: []" % (pad, k))
            else:
                lines.append("%s%s: %s" % (pad, k, _yaml_scalar(v)))
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict) and item:
                sub = to_yaml(item, indent + 1).split("\n")
                lines.append("%s- %s" % (pad, sub[0].lstrip()))
                lines.extend(sub[1:])
            elif isinstance(item, list) and item:
                lines.append("%s-" % pad)
                lines.append(to_yaml(item, indent + 1))
            else:
                lines.append("%s- %s" % (pad, _yaml_scalar(item)))
    else:
        lines.append(pad + _yaml_scalar(obj))
    return "\n".join(lines)


def yaml_docs(*docs):
    parts = []
    for d in docs:
        if isinstance(d, (list, tuple)):
            parts.extend(x if isinstance(x, str) else to_yaml(x) for x in d)
        else:
            parts.append(d if isinstance(d, str) else to_yaml(d))
    return "---\n".join(p.rstrip("\n") + "\n" for p in parts)


def ingress_class(name="strait", default=False, controller="strait.dev/ingress-controller"):
    meta = {"name": name}
    if default:
        meta["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": meta,
            "spec": {"controller": controller}}


def _backend_ref(svc):
    if isinstance(svc, (tuple, list)):
        name, port = svc
    else:
        name, port = svc, 80
    p = {"name": port} if isinstance(port, str) else {"number": port}
    return {"service": {"name": name, "port": p}}


def ingress(name, rules=(), default=None, ns="default", cls="strait", annotations=None,
            created=None):
    """rules: [(host or None, [(path, pathType, service), ...]), ...]; a service is "name"
    (port 80) or ("name", port-number-or-name). cls=None leaves ingressClassName out."""
    meta = {"name": name, "namespace": ns}
    if created:
        meta["creationTimestamp"] = created
    if annotations:
        meta["annotations"] = dict(annotations)
    spec = {}
    if cls is not None:
        spec["ingressClassName"] = cls
    if default is not None:
        spec["defaultBackend"] = _backend_ref(default)
    out_rules = []
    for host, paths in rules:
        r = {}
        if host:
            r["host"] = host
        r["http"] = {"paths": [dict({"path": p, "pathType": k}, backend=_backend_ref(s))
                               for p, k, s in paths]}
        out_rules.append(r)
    if out_rules:
        spec["rules"] = out_rules
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
            "spec": spec}


def service(name, ns="default", port=80, port_name="http", annotations=None):
    meta = {"name": name, "namespace": ns}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}}


def endpoint_slice(name, svc, target_port, ns="default", addresses=("127.0.0.1",), ready=True,
                   port_name="http"):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": list(addresses), "conditions": {"ready": ready}}],
            "ports": [{"name": port_name, "port": target_port, "protocol": "TCP"}]}


def service_with_endpoints(name, ports, ns="default", ready=True):
    """A Service "name" (port 80, named http) and one EndpointSlice per replica port."""
    if isinstance(ports, int):
        ports = [ports]
    docs = [service(name, ns)]
    for p in ports:
        docs.append(endpoint_slice("%s-%d" % (name, p), name, p, ns=ns, ready=ready))
    return docs


# ---------------------------------------------------------------------------------------
# HTTP through curl, and raw sockets

class Resp:
    def __init__(self, status, headers, body, rc, stderr, extra=""):
        self.status, self.headers, self.body, self.rc, self.stderr = status, headers, body, rc, stderr
        self.extra = extra

    @property
    def backend(self):
        return self.headers.get("x-backend")

    def json(self):
        return json.loads(self.body.decode())

    def __repr__(self):
        return "Resp(status=%r backend=%r body=%r rc=%r err=%r)" % (
            self.status, self.backend, self.body[:200], self.rc, self.stderr[-300:])


def _parse_header_blocks(raw):
    """curl -D output may hold several blocks (100 Continue); returns the last one's
    (status, {lower-name: value})."""
    blocks = [b for b in raw.replace("\r\n", "\n").split("\n\n") if b.strip()]
    if not blocks:
        return 0, {}
    lines = blocks[-1].split("\n")
    status = 0
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        pass
    headers = {}
    for ln in lines[1:]:
        if ":" in ln:
            k, v = ln.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


_curl_seq = [0]


def curl(port, path="/", host=None, method=None, headers=(), data_file=None, chunked=False,
         timeout=10.0, extra=(), workdir=None, url=None):
    """One request with the real curl to 127.0.0.1:port (or to url, e.g. an https:// one
    with --resolve in extra). Returns Resp; status 0 when curl got no HTTP answer (see rc /
    stderr)."""
    workdir = workdir or SESSION_DIR or tempfile.gettempdir()
    _curl_seq[0] += 1
    stem = os.path.join(workdir, "curl-%d-%d" % (os.getpid(), _curl_seq[0]))
    hdr, body = stem + ".hdr", stem + ".body"
    args = ["curl", "-sS", "--noproxy", "*", "-D", hdr, "-o", body,
            "--max-time", "%.1f" % (timeout * SLOW)]
    if host is not None:
        args += ["-H", "Host: " + host]
    if method == "HEAD":
        args += ["-I"]
    elif method:
        args += ["-X", method]
    for h in headers:
        args += ["-H", h]
    if chunked:
        args += ["-H", "Transfer-Encoding: chunked"]
    if data_file:
        args += ["--data-binary", "@" + data_file]
    args += list(extra)
    args.append(url or "http://127.0.0.1:%d%s" % (port, path))
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout * SLOW + 5)
    try:
        with open(hdr, "r", encoding="latin-1") as f:
            status, hd = _parse_header_blocks(f.read())
    except FileNotFoundError:
        status, hd = 0, {}
    try:
        with open(body, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        data = b""
    for fn in (hdr, body):
        try:
            os.unlink(fn)
        except FileNotFoundError:
            pass
    return Resp(status, hd, data, p.returncode, p.stderr.decode("latin-1", "replace"),
                p.stdout.decode("latin-1", "replace"))


def raw_exchange(port, data, timeout=5.0, until=None):
    """Sends bytes on a fresh TCP connection and reads until the peer closes, `until(buf)`
    is true, or timeout. Returns the bytes read."""
    buf = b""
    deadline = time.monotonic() + timeout * SLOW
    with socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW) as s:
        s.sendall(data)
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
            if until and until(buf):
                break
    return buf


def read_http_head(sock, timeout):
    """Reads from sock until the end of a response head; returns (head bytes, leftover)."""
    buf = b""
    deadline = time.monotonic() + timeout * SLOW
    while b"\r\n\r\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no complete response head, got %r" % buf[:300])
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed before a response head, got %r" % buf[:300])
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head + b"\r\n\r\n", rest


def local_get(port, path):
    """(status, body bytes) of a GET on 127.0.0.1:port (no proxies); (0, b"") if it does not
    answer."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open("http://127.0.0.1:%d%s" % (port, path), timeout=5 * SLOW) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def status_of(raw):
    try:
        return int(raw.split(b"\r\n", 1)[0].split()[1])
    except (IndexError, ValueError):
        return 0


# ---------------------------------------------------------------------------------------
# processes

class Proc:
    def __init__(self, name, args, workdir, strait=False, env=None):
        self.name, self.args, self.strait = name, list(args), strait
        self.out_path = os.path.join(workdir, name + ".out")
        self.err_path = os.path.join(workdir, name + ".err")
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        e = dict(os.environ)
        e.update(env or {})
        self.p = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=self._out,
                                  stderr=self._err, cwd=workdir, start_new_session=True, env=e)
        self.rc = None
        self.stopped = False

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def log(self):
        out = []
        for path in (self.out_path, self.err_path):
            try:
                with open(path, "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
            except FileNotFoundError:
                pass
        return "".join(out)

    def stderr(self):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout=10.0):
        """SIGTERM to the process group, then SIGKILL after timeout*SLOW. Returns a list of
        problems (empty when fine): non-zero exit of a Strait binary, sanitizer output."""
        problems = []
        if not self.stopped:
            self.stopped = True
            already = self.p.poll()
            if already is None:
                try:
                    os.killpg(self.p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    self.p.wait(timeout * SLOW)
                except subprocess.TimeoutExpired:
                    problems.append("%s did not exit within %.0fs of SIGTERM" % (
                        self.name, timeout * SLOW))
            try:  # anything left in the group
                os.killpg(self.p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.rc = self.p.wait()
            self._out.close()
            self._err.close()
            if self.strait:
                if already is not None:
                    problems.append("%s had exited (rc=%s) before the test stopped it" % (
                        self.name, already))
                elif self.rc != 0 and not problems:
                    problems.append("%s exited %s after SIGTERM (want 0)" % (self.name, self.rc))
        if self.strait:
            text = self.stderr()
            for m in SANITIZER_MARKERS:
                if m in text:
                    problems.append("%s wrote a sanitizer report (%r)" % (self.name, m))
                    break
        return problems


class Stack:
    """The processes and files of one test: backends, controller, dataplane."""

    def __init__(self, label):
        self.dir = new_temp_dir(label)
        self.mdir = os.path.join(self.dir, "manifests")
        os.makedirs(self.mdir)
        self.sock = os.path.join(self.dir, "strait.sock")
        self.procs = []
        self.backend_ports = {}
        self.ctl = None
        self.dp = None
        self.port = None
        self.admin_port = None
        self.ctl_health_port = None  # the controller's --health, cluster_controller() sets it
        self.apiservers = []
        self.problems = []

    # -- backends --
    def backends(self, *names):
        """Starts one tools/backend.py per name on a free port; waits until all accept.
        Returns {name: port}."""
        started = {}
        for n in names:
            port = free_port()
            self.procs.append(Proc("backend-" + _safe_name(n), [
                sys.executable, BACKEND_PY, "--name", n, "--port", str(port)], self.dir))
            started[n] = port
        for n, port in started.items():
            wait_until(lambda: port_accepts(port), 10, what="backend %s on port %d" % (n, port))
        self.backend_ports.update(started)
        return started

    def backend(self, name):
        return self.backends(name)[name]

    # -- manifests --
    def write(self, fname, *docs, directory=None):
        """Writes docs (dicts, YAML strings or lists of them) to a manifest file in place."""
        path = os.path.join(directory or self.mdir, fname)
        with open(path, "w") as f:
            f.write(yaml_docs(*docs))
        return path

    def write_atomic(self, fname, *docs):
        """Writes the file next to the folder, then renames it into place."""
        tmp = os.path.join(self.dir, "." + fname + ".tmp")
        with open(tmp, "w") as f:
            f.write(yaml_docs(*docs))
        path = os.path.join(self.mdir, fname)
        os.rename(tmp, path)
        return path

    def write_raw(self, fname, text):
        path = os.path.join(self.mdir, fname)
        with open(path, "w") as f:
            f.write(text)
        return path

    # -- Strait processes --
    def controller(self, *extra, name="controller", wait=True):
        p = Proc(name, [os.path.join(BIN, "strait-controller"), "--manifests", self.mdir,
                        "--socket", self.sock, "--log-level", "debug"] + list(extra),
                 self.dir, strait=True)
        self.procs.append(p)
        self.ctl = p
        if wait:
            wait_until(lambda: os.path.exists(self.sock) or not p.alive(), 10,
                       what="controller socket %s" % self.sock)
            if not p.alive():
                raise AssertionError("controller exited early (rc=%s)" % p.p.poll())
        return p

    # -- cluster mode: the stand-in API server (tests/kube-apiserver) and the controller on it --
    def apiserver(self, **kw):
        """Starts a stand-in API server (fixture.ApiServer: tokens=, forbidden=, args=) with its
        files in DIR/api; stopped by stop(). Returns it."""
        if KUBE_APISERVER_DIR not in sys.path:
            sys.path.insert(0, KUBE_APISERVER_DIR)
        import fixture  # noqa: E402 - tests/kube-apiserver/fixture.py
        srv = fixture.ApiServer(os.path.join(self.dir, "api-%d" % len(self.apiservers)), **kw)
        self.apiservers.append(srv)
        return srv.start()

    def cluster_controller(self, *extra, kubeconfig=None, env=None, wait_ready=True,
                           name="controller"):
        """strait-controller in cluster mode (--kubeconfig KUBECONFIG, or in-cluster from env
        when kubeconfig is None) with --health on a free port; waits for /readyz 200 unless
        wait_ready is False (then only for the socket)."""
        self.ctl_health_port = free_port()
        args = [os.path.join(BIN, "strait-controller"), "--socket", self.sock,
                "--health", "127.0.0.1:%d" % self.ctl_health_port, "--log-level", "debug"]
        if kubeconfig:
            args += ["--kubeconfig", kubeconfig]
        p = Proc(name, args + list(extra), self.dir, strait=True, env=env)
        self.procs.append(p)
        self.ctl = p

        def up():
            if not p.alive():
                raise AssertionError("controller exited early (rc=%s)" % p.p.poll())
            if wait_ready:
                return self.ctl_get("/readyz")[0] == 200
            return os.path.exists(self.sock) and port_accepts(self.ctl_health_port)
        wait_until(up, 20, what="controller %s" % ("ready" if wait_ready else "listening"))
        return p

    def ctl_get(self, path):
        """(status, body bytes) from the controller's --health listener; (0, b"") if none."""
        return local_get(self.ctl_health_port, path)

    def ctl_metrics(self):
        """The controller's /metrics as {"name{labels}": value}."""
        st, body = self.ctl_get("/metrics")
        if st != 200:
            raise AssertionError("controller /metrics answered %s" % st)
        return parse_metrics(body.decode())[0]

    def dataplane(self, socket_path=None, wait_ready=True, name="dataplane"):
        self.port = free_port()
        self.admin_port = free_port()
        p = Proc(name, [os.path.join(BIN, "strait-dataplane"),
                        "--socket", socket_path or self.sock,
                        "--listen", "127.0.0.1:%d" % self.port,
                        "--admin", "127.0.0.1:%d" % self.admin_port,
                        "--log-level", "debug"], self.dir, strait=True)
        self.procs.append(p)
        self.dp = p

        def up():
            if not p.alive():
                raise AssertionError("dataplane exited early (rc=%s)" % p.p.poll())
            if wait_ready:
                return self.admin_get("/ready")[0] == 200
            return port_accepts(self.port) and port_accepts(self.admin_port)
        wait_until(up, 15, what="dataplane %s" % ("ready" if wait_ready else "listening"))
        return p

    def start(self, *ctl_args):
        """Controller on the manifests written so far + dataplane, waits until ready."""
        self.controller(*ctl_args)
        self.dataplane()
        return self

    # -- talking to it --
    def curl(self, host, path="/", **kw):
        kw.setdefault("workdir", self.dir)
        return curl(self.port, path, host=host, **kw)

    def admin_get(self, path):
        """(status, body bytes) from the admin listener; (0, b"") if it does not answer."""
        return local_get(self.admin_port, path)

    def generation(self):
        st, body = self.admin_get("/snapshot")
        if st != 200:
            return 0
        return int(find_key(json.loads(body.decode()), "generation") or 0)

    def wait_backend(self, host, path, want, timeout=5.0, **kw):
        """Polls until a request answers from backend `want` (None: until status is want
        when want is an int). Returns the Resp."""
        def ok():
            r = self.curl(host, path, timeout=3, **kw)
            if isinstance(want, int):
                return r if r.status == want else None
            return r if r.status == 200 and r.backend == want else None
        return wait_until(ok, timeout, what="%s%s answered by %r" % (host, path, want))

    def controller_log(self):
        return self.ctl.stderr() if self.ctl else ""

    def dataplane_log(self):
        return self.dp.stderr() if self.dp else ""

    def stop(self):
        problems = []
        # Strait processes first (dataplane, then controller), backends last.
        order = [p for p in self.procs if p.strait][::-1] + [p for p in self.procs if not p.strait]
        for p in order:
            problems.extend(p.stop())
        for srv in self.apiservers:
            rc = srv.stop()
            if rc not in (0, None):
                problems.append("kube-apiserver exited %s after SIGTERM" % rc)
        return problems

    def logs(self, tail=80):
        out = []
        for p in self.procs:
            text = p.log().splitlines()
            if not p.strait:
                tail_n = 10
            else:
                tail_n = tail
            out.append("----- %s (%s) last %d lines -----" % (p.name, " ".join(p.args[:1]), tail_n))
            out.extend(text[-tail_n:])
        for srv in self.apiservers:
            out.append("----- kube-apiserver %s last 30 lines -----" % srv.dir)
            out.extend(srv.log_text().splitlines()[-30:])
        mf = sorted(os.listdir(self.mdir)) if os.path.isdir(self.mdir) else []
        out.append("----- manifests in %s: %s" % (self.mdir, ", ".join(mf)))
        return "\n".join(out)


def _safe_name(n):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in n)


def find_key(obj, key):
    """First value of `key` in a JSON tree (breadth first), or None."""
    queue = [obj]
    while queue:
        o = queue.pop(0)
        if isinstance(o, dict):
            if key in o:
                return o[key]
            queue.extend(o.values())
        elif isinstance(o, list):
            queue.extend(o)
    return None


def log_events(text, event):
    """Parsed logfmt lines with event=NAME: a list of {key: value} dicts."""
    out = []
    for line in text.splitlines():
        kv = parse_logfmt(line)
        if kv.get("event") == event:
            out.append(kv)
    return out


def parse_logfmt(line):
    kv, i, n = {}, 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        j = i
        while j < n and line[j] not in "= ":
            j += 1
        key = line[i:j]
        if j < n and line[j] == "=":
            j += 1
            if j < n and line[j] == '"':
                j += 1
                val = []
                while j < n and line[j] != '"':
                    if line[j] == "\\" and j + 1 < n:
                        j += 1
                    val.append(line[j])
                    j += 1
                j += 1
                kv[key] = "".join(val)
            else:
                k = j
                while j < n and line[j] != " ":
                    j += 1
                kv[key] = line[k:j]
        elif key:
            kv[key] = ""
        i = j
    return kv


# ---------------------------------------------------------------------------------------
# test case bases

class StraitTest(unittest.TestCase):
    """One Stack per test method: self.s. Teardown stops every process and fails the test
    when a Strait binary exited badly or wrote a sanitizer report."""

    def setUp(self):
        self.s = Stack(self.id().split(".", 1)[-1])

    def tearDown(self):
        problems = self.s.stop()
        if problems:
            self.fail("process problems: " + "; ".join(problems))

    def dump_logs(self):
        s = getattr(self, "s", None)
        return s.logs() if s else ""

    # assertion helpers
    def assertBackend(self, resp, name, msg=None):
        self.assertEqual((resp.status, resp.backend), (200, name), msg or repr(resp))

    def assertStatus(self, resp, status, msg=None):
        self.assertEqual(resp.status, status, msg or repr(resp))


class SharedStackTest(unittest.TestCase):
    """One Stack for the whole class (for data-table tests whose rows are test methods).
    Subclasses implement build(stack) (write manifests, start processes)."""

    stack = None

    @classmethod
    def setUpClass(cls):
        cls.stack = Stack(cls.__name__)
        try:
            cls.build(cls.stack)
        except BaseException:
            sys.stderr.write(cls.stack.logs() + "\n")
            cls.stack.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        problems = cls.stack.stop()
        if problems:
            sys.stderr.write(cls.stack.logs() + "\n")
            raise AssertionError("process problems: " + "; ".join(problems))

    def dump_logs(self):
        return self.stack.logs() if self.stack else ""


# ---------------------------------------------------------------------------------------
# engine helpers (issue 4): data plane flags, raw backends, process memory

def start_dataplane(stack, *extra, wait_ready=True, name="dataplane"):
    """Like Stack.dataplane(), with extra command-line flags (e.g. timeouts, --workers)."""
    stack.port = free_port()
    stack.admin_port = free_port()
    p = Proc(name, [os.path.join(BIN, "strait-dataplane"), "--socket", stack.sock,
                    "--listen", "127.0.0.1:%d" % stack.port,
                    "--admin", "127.0.0.1:%d" % stack.admin_port,
                    "--log-level", "debug"] + list(extra), stack.dir, strait=True)
    stack.procs.append(p)
    stack.dp = p

    def up():
        if not p.alive():
            raise AssertionError("dataplane exited early (rc=%s)" % p.p.poll())
        if wait_ready:
            return stack.admin_get("/ready")[0] == 200
        return port_accepts(stack.port)
    wait_until(up, 15, what="dataplane %s" % ("ready" if wait_ready else "listening"))
    return p


def start_dataplane_tls(stack, *extra, wait_ready=True, name="dataplane"):
    """Like start_dataplane(), with an HTTPS listener too: stack.tls_port (--listen-tls),
    stack.port stays the plain one."""
    stack.tls_port = free_port()
    p = start_dataplane(stack, "--listen-tls", "127.0.0.1:%d" % stack.tls_port, *extra,
                        wait_ready=wait_ready, name=name)
    wait_until(lambda: port_accepts(stack.tls_port), 10, what="HTTPS listener")
    return p


def curl_https(port, host, path="/", cacert=None, extra=(), **kw):
    """curl to https://host:port/path resolved to 127.0.0.1 (so SNI and Host are host);
    with cacert the server certificate is verified against it, else not (-k)."""
    tls = ["--resolve", "%s:%d:127.0.0.1" % (host, port)]
    tls += ["--cacert", cacert] if cacert else ["-k"]
    return curl(port, path, url="https://%s:%d%s" % (host, port, path),
                extra=tls + list(extra), **kw)


def s_client(port, servername=None, args=(), data=b"", timeout=10.0):
    """openssl s_client to 127.0.0.1:port (SNI servername unless None); data is sent, then
    stdin closes (with data, s_client waits for the server to close: send a request with
    "Connection: close"). Returns (returncode, stdout text, stderr text)."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port]
    if data:
        cmd += ["-ign_eof"]
    if servername is not None:
        cmd += ["-servername", servername]
    else:
        cmd += ["-noservername"]
    cmd += list(args)
    p = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout * SLOW)
    return p.returncode, p.stdout.decode("latin-1"), p.stderr.decode("latin-1")


def served_fingerprint(s_client_out):
    """Hex SHA-256 (lower case) of the first certificate in s_client's output, or None."""
    import ssl
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", s_client_out,
                  re.S)
    if not m:
        return None
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(m.group(0))).hexdigest()


def vm_rss_kib(pid):
    """Resident set size of pid in KiB, from /proc/PID/status."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def recv_http_response(sock, timeout):
    """Reads one Content-Length-framed response from sock; returns (head bytes, body)."""
    head, rest = read_http_head(sock, timeout)
    m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    n = int(m.group(1)) if m else 0
    deadline = time.monotonic() + timeout * SLOW
    while len(rest) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("body incomplete: %d of %d bytes" % (len(rest), n))
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("closed mid-body: %d of %d bytes" % (len(rest), n))
        rest += chunk
    return head, rest[:n]


class RawServer:
    """A loopback TCP server thread that counts accepted connections and hands each to
    handler(server, conn_socket, conn_number) in its own thread. stop() closes it."""

    def __init__(self, handler):
        import threading
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.requests = 0
        self.lock = threading.Lock()
        self.stopping = False
        self.conns = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import threading
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                n = self.accepted
                self.conns.append(c)
            threading.Thread(target=self._run, args=(c, n), daemon=True).start()

    def _run(self, c, n):
        try:
            self.handler(self, c, n)
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def read_head(self, c, timeout=30.0):
        """Reads one request head from c; returns it, or b"" when the peer closed first.
        Bytes after the head (bodies) are not expected by the handlers that use this."""
        buf = b""
        c.settimeout(timeout)
        while b"\r\n\r\n" not in buf:
            chunk = c.recv(65536)
            if not chunk:
                return b""
            buf += chunk
        with self.lock:
            self.requests += 1
        return buf

    def stop(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


_PROM_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def parse_metrics(text):
    """Prometheus text → ({"name{labels}": value}, {family: type}, problems). A problem is
    a sample whose family has no # HELP or # TYPE before it, an unknown type, or a line
    that does not parse. Histogram samples (_bucket/_sum/_count) belong to their family."""
    helps, types, values, problems = set(), {}, {}, []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split()[2])
        elif line.startswith("# TYPE "):
            parts = line.split()
            types[parts[2]] = parts[3]
            if parts[3] not in ("counter", "gauge", "histogram"):
                problems.append("odd type: %r" % line)
        elif line.strip():
            m = _PROM_SAMPLE.match(line)
            if not m:
                problems.append("unparsable: %r" % line)
                continue
            name = fam = m.group(1)
            for suf in ("_bucket", "_sum", "_count"):
                base = name[:-len(suf)]
                if name.endswith(suf) and types.get(base) == "histogram":
                    fam = base
            if fam not in helps or fam not in types:
                problems.append("%s has no HELP/TYPE before it" % name)
            values[name + (m.group(2) or "")] = float(m.group(3))
    return values, types, problems
