#!/usr/bin/env python3
"""A stand-in Kubernetes API server for Strait's tests: HTTPS with bearer tokens, the REST
and watch wire protocol of kube-apiserver for the resources in store.RESOURCES, discovery
good enough for kubectl, and /_control/ endpoints that inject faults.

  server.py --dir DIR [--port 0] [--token TOKEN ...] [--forbidden-token TOKEN ...]
            [--forbid-resource PLURAL ...] [--without-crd NAME ...]
            [--bookmark-interval S] [--quiet] [--without-crd gateways.strait.dev]

Writes DIR/ca.crt, DIR/server.crt, DIR/server.key (made with the openssl CLI unless they are
there already), DIR/kubeconfig, DIR/token and DIR/port, then prints
"listening https://127.0.0.1:PORT" on stdout. SIGTERM or SIGINT stop it (exit 0).

What it does not: HTTP/2, protobuf or YAML bodies, server-side apply, strategic merge by list
keys, admission, finalizers, aggregated discovery, OpenAPI schemas (/openapi/v3 only says
that fieldValidation is honoured, which is what kubectl checks; /openapi/v2 is 404). The verbs and their corner cases
live in store.py; this file is HTTP, auth, watch streams and fault injection. README.md in
this folder documents the control API.

Invariants: every answer that is not 2xx carries a meta/v1 Status body; a watch stream is
chunked, one JSON event per chunk, and ends with the terminating chunk unless cut on purpose.
"""
import argparse
import collections
import http.server
import itertools
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import store as st  # noqa: E402
from store import ApiError  # noqa: E402

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json",
               "application/json-patch+json")


def dumps(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------
# files: certificates and kubeconfig


def make_certs(d):
    """CA + server certificate for 127.0.0.1/localhost/::1 in d, unless all are there."""
    paths = [os.path.join(d, n) for n in ("ca.crt", "server.crt", "server.key")]
    if all(os.path.exists(p) for p in paths):
        return
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
        "-subj", "/CN=strait-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=kube-apiserver")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost,IP:::1\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "3650", "-extfile", "server.ext")


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def kubeconfig(port, ca, token):
    q = json.dumps  # a JSON string is a valid YAML scalar
    return ("apiVersion: v1\nkind: Config\n"
            "clusters:\n- name: strait-test\n  cluster:\n    server: %s\n    certificate-authority: %s\n"
            "users:\n- name: strait-test\n  user:\n    token: %s\n"
            "contexts:\n- name: strait-test\n  context:\n    cluster: strait-test\n    user: strait-test\n"
            "    namespace: default\n"
            "current-context: strait-test\npreferences: {}\n") % (
                q("https://127.0.0.1:%d" % port), q(ca), q(token))


# ---------------------------------------------------------------------------------------
# discovery


def _groups(resources):
    groups = collections.OrderedDict()
    for r in resources:
        groups.setdefault(r.group, collections.OrderedDict()).setdefault(r.version, []).append(r)
    return groups


def resource_list(gv, resources):
    out = []
    for r in resources:
        if r.gv != gv:
            continue
        e = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
             "kind": r.kind, "verbs": VERBS}
        if r.short:
            e["shortNames"] = r.short
        out.append(e)
        if r.status:
            out.append({"name": r.plural + "/status", "singularName": "", "namespaced": r.namespaced,
                        "kind": r.kind, "verbs": ["get", "patch", "update"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}


def api_group(name, versions):
    vs = [{"groupVersion": "%s/%s" % (name, v), "version": v} for v in versions]
    return {"name": name, "versions": vs, "preferredVersion": vs[0]}


def discovery(path, port, resources=st.RESOURCES):
    """The discovery document at path (of the served resources), or None."""
    groups = _groups(resources)
    if path == "/version":
        return {"major": "1", "minor": "32", "gitVersion": "v1.32.0-strait-test",
                "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc",
                "platform": "linux/amd64"}
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:%d" % port}]}
    if path == "/api/v1":
        return resource_list("v1", resources)
    if path == "/apis":
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [api_group(g, list(vs)) for g, vs in groups.items() if g]}
    parts = path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "apis" and parts[1] in groups and parts[1]:
        return dict({"kind": "APIGroup", "apiVersion": "v1"}, **api_group(parts[1], list(groups[parts[1]])))
    if len(parts) == 3 and parts[0] == "apis" and parts[1] and parts[2] in groups.get(parts[1], {}):
        return resource_list("%s/%s" % (parts[1], parts[2]), resources)
    return None


def openapi_v3(path, resources=st.RESOURCES):
    """The OpenAPI v3 documents kubectl reads to learn that the server honours the
    fieldValidation parameter (its queryParamVerifierV3 looks for it on the PATCH operation
    of the kind): the root index, and per group-version one PATCH path per resource with no
    schemas. Anything else is None (404)."""
    gvs = sorted({r.gv for r in resources})
    prefix = lambda gv: "api/v1" if gv == "v1" else "apis/" + gv  # noqa: E731
    if path == "/openapi/v3":
        return {"paths": {prefix(gv): {"serverRelativeURL": "/openapi/v3/%s?hash=0" % prefix(gv)}
                          for gv in gvs}}
    for gv in gvs:
        if path != "/openapi/v3/" + prefix(gv):
            continue
        paths = {}
        for r in resources:
            if r.gv != gv:
                continue
            p = "/%s/%s%s/{name}" % (prefix(gv), "namespaces/{namespace}/" if r.namespaced else "", r.plural)
            paths[p] = {"patch": {
                "operationId": "patch" + r.kind,
                "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
                "parameters": [{"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                               for n in ("dryRun", "fieldManager", "fieldValidation", "force")],
                "responses": {"200": {"description": "OK"}}}}
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
                "paths": paths, "components": {}}
    return None


def parse_api_path(path, absent=()):
    """(resource, namespace or None, name or None, subresource or None) for a REST path, or
    None when the path names no resource (or a custom resource whose id is in absent: its
    CRD is not installed)."""
    parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
    if len(parts) >= 3 and parts[0] == "api" and parts[1] == "v1":
        gv, rest = "v1", parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        gv, rest = "%s/%s" % (parts[1], parts[2]), parts[3:]
    else:
        return None
    ns = None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
        ns, rest = rest[1], rest[2:]
    res = st.BY_PATH.get((gv, rest[0]))
    if res is None or res.id in absent or len(rest) > 3 or (ns is not None and not res.namespaced):
        return None
    name = rest[1] if len(rest) >= 2 else None
    sub = rest[2] if len(rest) == 3 else None
    if sub is not None and not (sub == "status" and res.status):
        return None
    if not res.namespaced and name is None and ns is not None:
        return None
    return res, ns, name, sub


# ---------------------------------------------------------------------------------------
# control state


class Control:
    """Auth tokens, injected faults and delays, the request log and the open watches."""

    def __init__(self, tokens, forbidden, bookmark_interval):
        self.lock = threading.Lock()
        self.tokens, self.forbidden = set(tokens), set(forbidden)
        self.forbid_resources = set()  # plurals every token gets 403 for (RBAC without them)
        self.faults = []   # dicts: status, count, retry_after, path_prefix, method, watch
        self.delays = []   # dicts: seconds, count, path_prefix, method, watch
        self.requests = collections.deque(maxlen=100000)
        self.watches = {}  # id -> {"path","query","sock","cut","started"}
        self.ids = itertools.count(1)
        self.bookmark_interval = bookmark_interval
        self.sa_tokens = {}  # ServiceAccount token -> (ns, sa, [audiences]) for TokenReviews

    @staticmethod
    def _matches(rule, method, path, watch):
        return (path.startswith(rule.get("path_prefix") or "/")
                and rule.get("method") in (None, method)
                and rule.get("watch") in (None, watch))

    def take(self, rules, method, path, watch):
        """Consumes one count of the first rule of rules matching the request; returns it."""
        with self.lock:
            for r in rules:
                if self._matches(r, method, path, watch):
                    r["count"] -= 1
                    if r["count"] <= 0:
                        rules.remove(r)
                    return r
        return None


def fault_error(rule):
    code = int(rule["status"])
    reasons = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
               409: "Conflict", 410: "Expired", 429: "TooManyRequests", 500: "InternalError",
               503: "ServiceUnavailable", 504: "Timeout"}
    ra = rule.get("retry_after")
    if code == 429:
        details = {"retryAfterSeconds": int(ra if ra is not None else 1)}
        ra = details["retryAfterSeconds"]
        msg = "Too many requests, please try again later."
    elif code == 500:
        details = {"causes": [{"message": "injected fault"}]}
        msg = "Internal error occurred: injected fault"
    else:
        details = {"retryAfterSeconds": int(ra)} if ra is not None else None
        msg = "injected fault"
    return ApiError(code, reasons.get(code, ""), msg, details, retry_after=ra)


# ---------------------------------------------------------------------------------------
# HTTP


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, ctx, store, control, quiet):
        super().__init__(addr, Handler)
        self.ctx, self.store, self.control, self.quiet = ctx, store, control, quiet

    def finish_request(self, request, client_address):
        # The TLS handshake runs here, in the connection's thread, not in the accept loop.
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request.settimeout(10)
            tls = self.ctx.wrap_socket(request, server_side=True)
            tls.settimeout(None)
        except (OSError, ssl.SSLError):
            return
        try:
            Handler(tls, client_address, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                tls.close()
            except OSError:
                pass


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "strait-test-apiserver"
    sys_version = ""

    _entry = None      # this request's entry in the request log
    _streaming = False  # a watch answer has begun: no other answer may follow

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        if not self.server.quiet:
            sys.stderr.write("time=%s comp=kube-apiserver %s\n" % (
                time.strftime("%H:%M:%S"), fmt % args))

    def log_request(self, code="-", size="-"):
        if self._entry is not None:
            self._entry["status"] = int(code) if str(code).isdigit() else code
        self.log_message('method=%s path="%s" status=%s', self.command, self.path, code)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = lambda self: self.dispatch()

    # -- plumbing ------------------------------------------------------------------------

    def send_json(self, code, obj, headers=()):
        body = dumps(obj)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_error_status(self, err):
        headers = [("Retry-After", str(err.retry_after))] if err.retry_after is not None else []
        self.send_json(err.code, err.status(), headers)

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                out.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(out)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def json_body(self, raw, required=True):
        if not raw.strip():
            if required:
                raise st.bad_request("the request needs a JSON body")
            return None
        try:
            return json.loads(raw)
        except ValueError as e:
            raise st.bad_request("error decoding JSON body: %s" % e)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    # -- entry ---------------------------------------------------------------------------

    def dispatch(self):
        self._entry, self._streaming = None, False
        url = urllib.parse.urlsplit(self.path)
        path, query = url.path, url.query
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}
        raw = self.read_body()
        ctl = self.server.control
        is_watch = q.get("watch") in ("1", "true", "True")
        auth = self.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        with ctl.lock:
            state = ("forbidden" if token in ctl.forbidden else "valid" if token in ctl.tokens
                     else "invalid" if token else "none")
        if not path.startswith("/_control/"):
            self._entry = {"method": self.command, "path": path, "query": query, "params": q,
                           "watch": is_watch, "auth": state, "status": None, "time": time.time(),
                           "content_type": self.headers.get("Content-Type"),
                           "accept": self.headers.get("Accept"),
                           "user_agent": self.headers.get("User-Agent")}
            with ctl.lock:
                ctl.requests.append(self._entry)
        try:
            if state in ("none", "invalid"):
                raise ApiError(401, "Unauthorized", "Unauthorized")
            if state == "forbidden":
                raise self.forbidden(path, q, is_watch)
            if ctl.forbid_resources and not path.startswith("/_control/"):
                p = parse_api_path(path, self.server.store.absent)
                if p is not None and p[0].plural in ctl.forbid_resources:
                    raise self.forbidden(path, q, is_watch)
            if path.startswith("/_control/"):
                return self.control(path[len("/_control/"):], raw)
            rule = ctl.take(ctl.delays, self.command, path, is_watch)
            if rule:
                time.sleep(float(rule.get("seconds", 1)))
            rule = ctl.take(ctl.faults, self.command, path, is_watch)
            if rule:
                raise fault_error(rule)
            self.route(path, q, raw, is_watch)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - a bug here must still answer with a Status
            if not isinstance(e, ApiError):
                traceback.print_exc()
                e = ApiError(500, "InternalError", "Internal error occurred: %r" % (e,))
            if self._streaming:
                self.close_connection = True
            else:
                self.send_error_status(e)

    def forbidden(self, path, q, is_watch):
        user = "system:serviceaccount:default:forbidden"
        p = parse_api_path(path, self.server.store.absent)
        if p is None:
            return ApiError(403, "Forbidden", 'forbidden: User "%s" cannot %s path "%s"' % (
                user, self.command.lower(), path), {})
        res, ns, name, sub = p
        verb = {"GET": "watch" if is_watch else ("get" if name else "list"), "POST": "create",
                "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if name else "deletecollection"}.get(self.command, self.command.lower())
        what = res.plural + ("/" + sub if sub else "")
        where = ' in the namespace "%s"' % ns if ns else ""
        scope = " at the cluster scope" if not ns else ""
        return ApiError(403, "Forbidden", '%s%s is forbidden: User "%s" cannot %s resource "%s" in API group "%s"%s%s' % (
            res.gr, ' "%s"' % name if name else "", user, verb, what, res.group, where, scope),
            st._details(res, name))

    def token_review(self, raw):
        """POST /apis/authentication.k8s.io/v1/tokenreviews, as kube-apiserver answers it:
        201 with the review and its status; unknown tokens and audience mismatches are
        authenticated false with an error, not an HTTP error."""
        body = self.json_body(raw)
        spec = body.get("spec") or {}
        token = spec.get("token")
        if not isinstance(token, str) or not token:
            raise ApiError(422, "Invalid", 'TokenReview.authentication.k8s.io "" is invalid: '
                           'spec.token: Required value', {"kind": "TokenReview"})
        want = spec.get("audiences") or []
        with self.server.control.lock:
            hit = self.server.control.sa_tokens.get(token)
        status = {"user": {}}
        if hit is None:
            status["error"] = "[invalid bearer token, square/go-jose: error in cryptographic primitive]"
        else:
            ns, sa, auds = hit
            got = [a for a in want if a in auds] if want else list(auds)
            if not got:
                status["error"] = "[invalid bearer token, token audiences %s is invalid for the target audiences %s]" % (
                    json.dumps(auds), json.dumps(want))
            else:
                status = {"authenticated": True, "audiences": got, "user": {
                    "username": "system:serviceaccount:%s:%s" % (ns, sa),
                    "uid": "uid-%s-%s" % (ns, sa),
                    "groups": ["system:serviceaccounts", "system:serviceaccounts:" + ns,
                               "system:authenticated"]}}
        out = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}
        return self.send_json(201, out)

    def route(self, path, q, raw, is_watch):
        if path == "/apis/authentication.k8s.io/v1/tokenreviews":
            if self.command != "POST":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            return self.token_review(raw)
        if path in ("/healthz", "/readyz", "/livez") and self.command == "GET":
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        served = [r for r in st.RESOURCES if self.server.store.served(r)]
        doc = (discovery(path.rstrip("/") or "/", self.server.server_address[1], served)
               or openapi_v3(path.rstrip("/"), served))
        if doc is not None:
            if self.command != "GET":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            return self.send_json(200, doc)
        p = parse_api_path(path, self.server.store.absent)
        if p is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        res, ns, name, sub = p
        s = self.server.store
        dry = q.get("dryRun")
        if dry not in (None, "", "All"):
            raise st.bad_request('unsupported dryRun value "%s"; supported values: "All"' % dry)
        dry = dry == "All"
        if res.namespaced and name is not None and ns is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        m = self.command
        if name is None:  # collection
            sel = st.Selector(res, q.get("labelSelector"), q.get("fieldSelector"))
            if m == "GET" and is_watch:
                return self.watch(res, ns, sel, q)
            if m == "GET":
                items, rv, token, remaining = s.list(res, ns, sel, self._int(q, "limit"), q.get("continue"),
                                                    q.get("resourceVersion"), q.get("resourceVersionMatch"))
                return self.send_json(200, self.list_doc(res, items, rv, token, remaining))
            if m == "POST":
                obj = s.create(res, ns, self.json_body(raw), dry)
                return self.send_json(201, obj)
            if m == "DELETE":
                items, rv = s.delete_collection(res, ns, sel, self.json_body(raw, False), dry)
                return self.send_json(200, self.list_doc(res, items, rv, None, None))
        else:
            if m == "GET" and is_watch and sub is None:  # the legacy watch of one name
                sel = st.Selector(res, q.get("labelSelector"), ",".join(
                    x for x in (q.get("fieldSelector"), "metadata.name=" + name) if x))
                return self.watch(res, ns, sel, q)
            if m == "GET":
                return self.send_json(200, s.get(res, ns, name))
            if m == "PUT":
                obj, created = s.update(res, ns, name, self.json_body(raw), sub, dry)
                return self.send_json(201 if created else 200, obj)
            if m == "PATCH":
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                if ctype not in PATCH_TYPES:
                    raise ApiError(415, "UnsupportedMediaType",
                                   "the body of the request was in an unknown format - accepted media types include: %s"
                                   % ", ".join(PATCH_TYPES))
                if ctype == "application/strategic-merge-patch+json" and not res.builtin:
                    raise ApiError(415, "UnsupportedMediaType",
                                   "the body of the request was in an unknown format - accepted media types include: "
                                   "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
                return self.send_json(200, s.patch(res, ns, name, ctype, self.json_body(raw), sub, dry))
            if m == "DELETE" and sub is None:
                return self.send_json(200, s.delete(res, ns, name, self.json_body(raw, False), dry))
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    @staticmethod
    def _int(q, k):
        v = q.get(k)
        if v in (None, ""):
            return 0
        try:
            n = int(v)
        except ValueError:
            raise st.bad_request("invalid value for %s: %r" % (k, v))
        return max(n, 0)

    @staticmethod
    def list_doc(res, items, rv, token, remaining):
        meta = {"resourceVersion": str(rv)}
        if token:
            meta["continue"] = token
        if remaining is not None:
            meta["remainingItemCount"] = remaining
        if res.builtin:  # typed lists carry no kind/apiVersion on their items
            items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items]
        return {"kind": res.kind + "List", "apiVersion": res.gv, "metadata": meta, "items": items}

    # -- watch ---------------------------------------------------------------------------

    def watch(self, res, ns, sel, q):
        s, ctl = self.server.store, self.server.control
        rv = q.get("resourceVersion")
        bookmarks = q.get("allowWatchBookmarks") in ("1", "true", "True")
        sie = q.get("sendInitialEvents")
        if sie in ("true", "True", "1"):
            if q.get("resourceVersionMatch") != "NotOlderThan":
                raise st.invalid(res, "", "resourceVersionMatch", "FieldValueForbidden",
                                 "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                                 kind="ListOptions", group="meta.k8s.io")
            initial = True
        elif sie in ("false", "False", "0"):
            initial = False
        else:
            initial = rv in (None, "", "0")
        timeout = self._int(q, "timeoutSeconds") or 1800
        wid = next(ctl.ids)
        info = {"path": self.path.split("?")[0], "query": q, "sock": self.connection, "cut": False,
                "started": time.time()}
        try:
            objs, cursor = s.watch_begin(wid, res, ns, sel, rv, initial)
            err = None
        except ApiError as e:
            if e.code != 410:
                raise
            objs, cursor, err = [], 0, e
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._streaming = True
        if err is not None:
            self.chunk(dumps({"type": "ERROR", "object": err.status()}) + b"\n")
            self.chunk(b"")
            return
        with ctl.lock:
            ctl.watches[wid] = info
        try:
            self._stream(res, ns, sel, objs, cursor, wid, info, bookmarks, sie in ("true", "True", "1"), timeout)
        except (OSError, ssl.SSLError):
            self.close_connection = True
        finally:
            with ctl.lock:
                ctl.watches.pop(wid, None)
            s.watch_end(wid)

    def _stream(self, res, ns, sel, objs, cursor, wid, info, bookmarks, initial_end, timeout):
        s, ctl = self.server.store, self.server.control

        def bookmark(rv, annotations=None):
            meta = {"resourceVersion": str(rv)}
            if annotations:
                meta["annotations"] = annotations
            return dumps({"type": "BOOKMARK", "object": {"kind": res.kind, "apiVersion": res.gv,
                                                         "metadata": meta}}) + b"\n"

        for o in objs:
            self.chunk(dumps({"type": "ADDED", "object": o}) + b"\n")
        if initial_end and bookmarks:
            self.chunk(bookmark(cursor, {"k8s.io/initial-events-end": "true"}))
        now = time.monotonic()
        deadline = now + timeout
        next_bm = now + ctl.bookmark_interval
        while True:
            now = time.monotonic()
            wait = max(0.0, min(0.2, deadline - now, next_bm - now if bookmarks else 0.2))
            gone = not s.served(res)  # read first: the CRD's DELETED events come before the end
            evs, cursor = s.watch_poll(wid, cursor, wait)
            if info["cut"]:
                self.close_connection = True  # no terminating chunk: an abrupt end
                return
            for ev in evs:
                e = st.watch_event(res, sel, ns, ev)
                if e is not None:
                    self.chunk(dumps({"type": e[0], "object": e[1]}) + b"\n")
            if gone:  # the CRD was deleted: the apiserver ends the watches of its resource
                self.chunk(b"")
                return
            now = time.monotonic()
            if bookmarks and now >= next_bm:
                self.chunk(bookmark(cursor))
                next_bm = now + ctl.bookmark_interval
            if now >= deadline:
                self.chunk(b"")
                return
            if select.select([self.connection], [], [], 0)[0]:
                self.close_connection = True  # the client closed (it sends nothing else on a watch)
                return

    # -- /_control/ ----------------------------------------------------------------------

    def load(self, body):
        """Bulk create (for benchmarks): body {"items": [objects with apiVersion and kind],
        "create_namespaces": bool}. Each object is one create, with its own rv and event."""
        s = self.server.store
        n = 0
        for obj in body.get("items") or []:
            res = st.BY_KIND.get((obj.get("apiVersion"), obj.get("kind")))
            if res is None:
                raise st.bad_request("no resource for %s %s" % (obj.get("apiVersion"), obj.get("kind")))
            ns = ((obj.get("metadata") or {}).get("namespace") or "default") if res.namespaced else None
            if ns and body.get("create_namespaces"):
                with s.cond:
                    if ns not in s.objects[st.NAMESPACES.id]:
                        s.create(st.NAMESPACES, None, {"metadata": {"name": ns}})
            s.create(res, ns, obj)
            n += 1
        with s.cond:
            return {"created": n, "resourceVersion": str(s.rv)}

    def control(self, what, raw):
        s, ctl, m = self.server.store, self.server.control, self.command
        body = self.json_body(raw, False) or {}
        if not isinstance(body, dict):
            raise st.bad_request("control bodies are JSON objects")
        if what == "compact" and m == "POST":
            return self.send_json(200, {"compacted": s.compact(body.get("resource_version"))})
        if what == "cut-watches" and m == "POST":
            prefix = body.get("path_prefix") or "/"
            n = 0
            with ctl.lock:
                for info in ctl.watches.values():
                    if info["path"].startswith(prefix) and not info["cut"]:
                        info["cut"] = True
                        n += 1
                        try:
                            socket.socket.shutdown(info["sock"], socket.SHUT_RDWR)
                        except OSError:
                            pass
            s.wake()
            return self.send_json(200, {"cut": n})
        if what in ("faults", "delay"):
            rules = ctl.faults if what == "faults" else ctl.delays
            if m == "POST":
                rule = {"count": int(body.get("count", 1)), "path_prefix": body.get("path_prefix"),
                        "method": body.get("method"), "watch": body.get("watch")}
                if what == "faults":
                    if not isinstance(body.get("status"), int) or not 400 <= body["status"] <= 599:
                        raise st.bad_request("faults need an HTTP error status")
                    rule.update(status=body["status"], retry_after=body.get("retry_after"))
                else:
                    rule["seconds"] = float(body.get("seconds", 1))
                with ctl.lock:
                    rules.append(rule)
                return self.send_json(200, rule)
            if m == "GET":
                with ctl.lock:
                    return self.send_json(200, {"items": list(rules)})
            if m == "DELETE":
                with ctl.lock:
                    rules.clear()
                return self.send_json(200, {"items": []})
        if what == "requests":
            if m == "GET":
                with ctl.lock:
                    return self.send_json(200, {"items": list(ctl.requests)})
            if m == "DELETE":
                with ctl.lock:
                    ctl.requests.clear()
                return self.send_json(200, {"items": []})
        if what == "objects" and m == "POST":
            return self.send_json(200, self.load(body))
        if what == "watches" and m == "GET":
            with ctl.lock:
                items = [{"path": i["path"], "query": i["query"], "started": i["started"]}
                         for i in ctl.watches.values() if not i["cut"]]
            return self.send_json(200, {"open": len(items), "items": items})
        if what == "tokens" and m == "POST":
            with ctl.lock:
                if "tokens" in body:
                    ctl.tokens = set(body["tokens"])
                if "forbidden_tokens" in body:
                    ctl.forbidden = set(body["forbidden_tokens"])
                return self.send_json(200, {"tokens": sorted(ctl.tokens), "forbidden_tokens": sorted(ctl.forbidden)})
        if what == "crds":
            if m == "POST":
                res = st.CRDS.get(body.get("name"))
                if res is None or not isinstance(body.get("installed"), bool):
                    raise st.bad_request("crds wants {\"name\": one of %s, \"installed\": bool}" % sorted(st.CRDS))
                s.set_crd(res, body["installed"])
            if m in ("GET", "POST"):
                return self.send_json(200, {"items": [{"name": n, "installed": s.served(r)}
                                                      for n, r in sorted(st.CRDS.items())]})
        if what == "state" and m == "GET":
            with s.cond:
                return self.send_json(200, {"resourceVersion": str(s.rv), "compacted": str(s.compacted),
                                            "events": len(s.events)})
        raise ApiError(404, "NotFound", "no control endpoint %s %s" % (m, what), {})


# ---------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True, help="where certificates, kubeconfig and port go")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: pick a free one)")
    ap.add_argument("--token", action="append", default=[], help="an accepted bearer token (default test-token)")
    ap.add_argument("--forbidden-token", action="append", default=[], help="a token that gets 403 for everything")
    ap.add_argument("--bookmark-interval", type=float, default=1.0, help="seconds between BOOKMARK events")
    ap.add_argument("--quiet", action="store_true", help="do not log each request on stderr")
    ap.add_argument("--forbid-resource", action="append", default=[],
                    help="every request for this resource (plural, e.g. gateways) gets 403, as "
                         "from RBAC rules that lack it")
    ap.add_argument("--sa-token", action="append", default=[], metavar="TOKEN=NS/SA[@AUD,AUD]",
                    help="a ServiceAccount token TokenReviews accept (audiences default: strait)")
    ap.add_argument("--without-crd", action="append", default=[], choices=sorted(st.CRDS),
                    help="start with this CRD not installed (its paths answer 404 until POST /_control/crds)")
    args = ap.parse_args()
    d = os.path.abspath(args.dir)
    os.makedirs(d, exist_ok=True)
    tokens = args.token or ["test-token"]
    make_certs(d)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "server.crt"), os.path.join(d, "server.key"))
    ctx.set_alpn_protocols(["http/1.1"])
    control = Control(tokens, args.forbidden_token, args.bookmark_interval)
    control.forbid_resources = set(args.forbid_resource)
    for spec in args.sa_token:
        tok, _, who = spec.partition("=")
        who, _, auds = who.partition("@")
        ns, _, sa = who.partition("/")
        if not tok or not ns or not sa:
            ap.error("--sa-token %s is not TOKEN=NS/SA[@AUD,AUD]" % spec)
        control.sa_tokens[tok] = (ns, sa, [a for a in auds.split(",") if a] or ["strait"])
    httpd = Server(("127.0.0.1", args.port), ctx, st.Store(args.without_crd), control, args.quiet)
    port = httpd.server_address[1]
    write_atomic(os.path.join(d, "kubeconfig"), kubeconfig(port, os.path.join(d, "ca.crt"), tokens[0]))
    write_atomic(os.path.join(d, "token"), tokens[0])
    write_atomic(os.path.join(d, "port"), "%d\n" % port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    print("listening https://127.0.0.1:%d" % port, flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
