"""State of the stand-in Kubernetes API server: the resource table, the objects, one global
resourceVersion and the event history, with the semantics of kube-apiserver + etcd3.

What it does: create/get/update/patch/delete/list of the resources in RESOURCES, consistent
paged lists (a continue token lists the state at the RV of the first page, rebuilt from the
history), label and field selectors, the status subresource, compaction, and the events a
watch replays. What it does not: HTTP, auth, watch streaming (server.py), admission,
validation beyond names, finalizers and graceful deletion (a DELETE removes at once, but a
namespace's content goes a moment later), server-side apply, or the schema that tells a
strategic merge patch how to merge each list (see strategic_merge).

Invariants:
- Every write bumps Store.rv by one and appends exactly one Event with that rv, under
  Store.cond, and notifies the condition; Store.rv is the rv of the last event.
- Stored objects are never mutated after they are stored: every write works on a deep copy
  of its input, so events, lists and watchers can share them without copying.
- A list, continue or watch from an rv below Store.compacted gets 410 Gone; the events at
  or below it are dropped at compaction, except those an open watch has yet to send.
"""
import base64
import bisect
import collections
import copy
import ipaddress
import json
import random
import re
import threading
import time
import uuid

# ---------------------------------------------------------------------------------------
# resources


class Resource:
    """One resource type as served at /api/v1 or /apis/GROUP/VERSION."""

    def __init__(self, group, version, plural, kind, namespaced, status=False, short=(),
                 fields=(), create_on_update=False, builtin=True):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced = namespaced
        self.status = status                # has a /status subresource
        self.short = list(short)
        self.fields = ("metadata.name",) + (("metadata.namespace",) if namespaced else ()) + tuple(fields)
        self.create_on_update = create_on_update  # PUT to a missing name creates it
        self.builtin = builtin              # list items carry no kind/apiVersion
        self.gv = "%s/%s" % (group, version) if group else version
        self.gr = "%s.%s" % (plural, group) if group else plural  # "ingresses.networking.k8s.io"
        self.singular = kind.lower()
        self.id = (group, plural)


_EVENT_FIELDS = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                 "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                 "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type")

RESOURCES = [
    Resource("", "v1", "namespaces", "Namespace", False, status=True, short=["ns"],
             fields=("status.phase",)),
    Resource("", "v1", "services", "Service", True, status=True, short=["svc"],
             fields=("spec.clusterIP", "spec.type"), create_on_update=True),
    Resource("", "v1", "secrets", "Secret", True, fields=("type",)),
    Resource("", "v1", "configmaps", "ConfigMap", True, short=["cm"]),
    Resource("", "v1", "pods", "Pod", True, status=True, short=["po"],
             fields=("status.phase", "spec.nodeName")),
    Resource("", "v1", "events", "Event", True, short=["ev"], fields=_EVENT_FIELDS,
             create_on_update=True),
    Resource("networking.k8s.io", "v1", "ingresses", "Ingress", True, status=True, short=["ing"]),
    Resource("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False),
    Resource("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
             "MutatingWebhookConfiguration", False),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True, create_on_update=True),
    Resource("events.k8s.io", "v1", "events", "Event", True, short=["ev"]),
    Resource("strait.dev", "v1alpha1", "gateways", "Gateway", True, status=True, builtin=False),
    Resource("strait.dev", "v1alpha1", "authorizationpolicies", "AuthorizationPolicy", True,
             status=True, short=["sap"], builtin=False),
]

BY_PATH = {(r.gv, r.plural): r for r in RESOURCES}
CRDS = {r.gr: r for r in RESOURCES if not r.builtin}  # CRD name ("gateways.strait.dev") -> resource
BY_KIND = {(r.gv, r.kind): r for r in RESOURCES}
NAMESPACES = BY_PATH[("v1", "namespaces")]

# ---------------------------------------------------------------------------------------
# errors: each becomes a meta/v1 Status


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None, cont=None, retry_after=None):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details, self.cont, self.retry_after = details, cont, retry_after

    def status(self):
        s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
             "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            s["details"] = self.details
        if self.cont:
            s["metadata"]["continue"] = self.cont
        return s


def _details(res, name=None, **extra):
    d = {}
    if name is not None:
        d["name"] = name
    if res.group:
        d["group"] = res.group
    d["kind"] = res.plural
    d.update(extra)
    return d


def not_found(res, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (res.gr, name), _details(res, name))


def bad_request(msg):
    return ApiError(400, "BadRequest", msg)


def invalid(res, name, field, cause_reason, msg, kind=None, group=None):
    kind = kind or res.kind
    group = res.group if group is None else group
    qual = "%s.%s" % (kind, group) if group else kind
    d = {"name": name or "", "kind": kind,
         "causes": [{"reason": cause_reason, "message": msg, "field": field}]}
    if group:
        d["group"] = group
    return ApiError(422, "Invalid", '%s "%s" is invalid: %s: %s' % (qual, name or "", field, msg), d)


def conflict(res, name, why):
    return ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": %s' % (res.gr, name, why),
                    _details(res, name))


REJECTED_MSG = "the server rejected our request due to an error in our request"
MODIFIED_MSG = "the object has been modified; please apply your changes to the latest version and try again"

# Messages of k8s.io/apiserver/pkg/storage/etcd3 for a compacted revision.
EXPIRED_LIST = "The resourceVersion for the provided list is too old."
INCONSISTENT_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list.")


def expired(msg, cont=None):
    return ApiError(410, "Expired", msg, cont=cont)


# ---------------------------------------------------------------------------------------
# selectors

_LKEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_LVAL = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_RE_NOT = re.compile(r"!\s*(%s)" % _LKEY)
_RE_SET = re.compile(r"(%s)\s+(in|notin)\s*\(([^()]*)\)" % _LKEY)
_RE_OP = re.compile(r"(%s)\s*(==|=|!=|>|<)\s*(%s)" % (_LKEY, _LVAL))
_RE_KEY = re.compile(_LKEY)
_RE_VAL = re.compile(_LVAL)


def _split_top(s):
    """Splits s at the commas that are not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_label_selector(sel):
    """Parses a labelSelector (k8s.io/apimachinery/pkg/labels syntax) into a list of
    (op, key, values). Raises ApiError 400 on a syntax error."""
    reqs = []
    if not sel or not sel.strip():
        return reqs
    for part in _split_top(sel):
        p = part.strip()
        m = _RE_NOT.fullmatch(p)
        if m:
            reqs.append(("!", m.group(1), None))
            continue
        m = _RE_SET.fullmatch(p)
        if m:
            vals = [v.strip() for v in m.group(3).split(",")]
            if any(not _RE_VAL.fullmatch(v) for v in vals):
                raise bad_request("unable to parse requirement: invalid label value in %r" % p)
            reqs.append((m.group(2), m.group(1), set(vals)))
            continue
        m = _RE_OP.fullmatch(p)
        if m:
            op = "=" if m.group(2) == "==" else m.group(2)
            if op in (">", "<") and not re.fullmatch(r"-?[0-9]+", m.group(3)):
                raise bad_request("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer")
            reqs.append((op, m.group(1), m.group(3)))
            continue
        if _RE_KEY.fullmatch(p):
            reqs.append(("exists", p, None))
            continue
        raise bad_request("unable to parse requirement: found '%s', expected: identifier" % p)
    return reqs


def labels_match(reqs, obj):
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for op, key, val in reqs:
        have = key in labels
        v = labels.get(key)
        if op == "exists":
            ok = have
        elif op == "!":
            ok = not have
        elif op == "=":
            ok = have and v == val
        elif op == "!=":
            ok = not have or v != val
        elif op == "in":
            ok = have and v in val
        elif op == "notin":
            ok = not have or v not in val
        else:  # > <
            try:
                n = int(v)
            except (TypeError, ValueError):
                ok = False
            else:
                ok = n > int(val) if op == ">" else n < int(val)
        if not ok:
            return False
    return True


def parse_field_selector(res, sel):
    """Parses a fieldSelector into (field, op, value) triples, only with the fields res
    supports. Raises ApiError 400 otherwise."""
    reqs = []
    if not sel or not sel.strip():
        return reqs
    for part in sel.split(","):
        m = re.fullmatch(r"\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*", part)
        if not m:
            raise bad_request("invalid selector: '%s'; can't understand '%s'" % (sel, part))
        field, op, val = m.groups()
        if field not in res.fields:
            raise bad_request("field label not supported: %s" % field)
        reqs.append((field, "!=" if op == "!=" else "=", val))
    return reqs


def _field_value(obj, field):
    cur = obj
    for part in field.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, dict):  # core Event "source" selects source.component
        cur = cur.get("component", "")
    return str(cur)


def fields_match(reqs, obj):
    for field, op, val in reqs:
        if (_field_value(obj, field) == val) != (op == "="):
            return False
    return True


class Selector:
    """A labelSelector and a fieldSelector together, as one predicate on objects."""

    def __init__(self, res, label_sel, field_sel):
        self.labels = parse_label_selector(label_sel)
        self.fields = parse_field_selector(res, field_sel)

    def empty(self):
        return not self.labels and not self.fields

    def __call__(self, obj):
        return labels_match(self.labels, obj) and fields_match(self.fields, obj)


# ---------------------------------------------------------------------------------------
# patches


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch; returns a new value and leaves both inputs unchanged
    (unchanged parts of target are shared, not copied)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def strategic_merge(old, patch):
    """A strategic merge patch without the schema, as kubectl sends it: maps merge as in a
    merge patch; "$patch": "delete"/"replace" delete or replace a map; "$retainKeys" and
    "$deleteFromPrimitiveList/F" do what they say; a list F that comes with
    "$setElementOrder/F" is merged by key, the key being the one field of the order's
    entries (kubectl apply always sends the order with a list it merges), its items in that
    order and each merged into the old item with the same key. Any other list is replaced
    whole. Returns a new value; old is not changed."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "delete":
        return None
    plain = {k: v for k, v in patch.items() if not k.startswith("$")}
    if patch.get("$patch") == "replace":
        return copy.deepcopy(plain)
    out = dict(old) if isinstance(old, dict) else {}
    for k, v in plain.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list) and ("$setElementOrder/" + k) in patch:
            out[k] = _merge_list(out.get(k), v, patch["$setElementOrder/" + k])
        elif isinstance(v, list):
            out[k] = [strategic_merge(None, i) for i in v if not (isinstance(i, dict) and i.get("$patch") == "delete")]
        else:
            out[k] = strategic_merge(out.get(k), v)
    for k, order in patch.items():
        if k.startswith("$setElementOrder/") and k[17:] not in plain and isinstance(order, list):
            out[k[17:]] = _merge_list(out.get(k[17:]), [], order)
        elif k.startswith("$deleteFromPrimitiveList/") and isinstance(out.get(k[25:]), list):
            out[k[25:]] = [x for x in out[k[25:]] if x not in order]
    if isinstance(patch.get("$retainKeys"), list):
        out = {k: v for k, v in out.items() if k in patch["$retainKeys"] or k in plain}
    return out


def _merge_list(old, items, order):
    old = old if isinstance(old, list) else []
    if not all(isinstance(o, dict) and len(o) == 1 for o in order):  # a list of primitives
        return [copy.deepcopy(o) for o in order]
    out = []
    for o in order:
        (mk, want), = o.items()
        p = next((i for i in items if isinstance(i, dict) and i.get(mk) == want), None)
        q = next((i for i in old if isinstance(i, dict) and i.get(mk) == want), None)
        if p is not None and p.get("$patch") == "delete":
            continue
        merged = strategic_merge(q, p) if p is not None else q
        if merged is not None:
            out.append(merged)
    return out


class PatchError(Exception):
    pass


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError("JSON pointer must start with '/': %r" % path)
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _index(lst, tok, allow_end):
    if tok == "-" and allow_end:
        return len(lst)
    if not re.fullmatch(r"0|[1-9][0-9]*", tok):
        raise PatchError("bad array index %r" % tok)
    i = int(tok)
    if i > len(lst) or (i == len(lst) and not allow_end):
        raise PatchError("array index %d out of range" % i)
    return i


def _walk(doc, toks):
    for t in toks:
        if isinstance(doc, dict):
            if t not in doc:
                raise PatchError("path element %r not found" % t)
            doc = doc[t]
        elif isinstance(doc, list):
            doc = doc[_index(doc, t, False)]
        else:
            raise PatchError("path element %r not found" % t)
    return doc


def json_patch(doc, ops):
    """RFC 6902 JSON patch applied to a deep copy of doc; returns it. Raises PatchError."""
    if not isinstance(ops, list):
        raise PatchError("a JSON patch is a list of operations")
    doc = copy.deepcopy(doc)

    def add(doc, toks, value):
        if not toks:
            return value
        parent = _walk(doc, toks[:-1])
        if isinstance(parent, dict):
            parent[toks[-1]] = value
        elif isinstance(parent, list):
            parent.insert(_index(parent, toks[-1], True), value)
        else:
            raise PatchError("cannot add below a scalar")
        return doc

    def remove(doc, toks):
        if not toks:
            raise PatchError("cannot remove the whole document")
        parent = _walk(doc, toks[:-1])
        if isinstance(parent, dict):
            if toks[-1] not in parent:
                raise PatchError("path %r not found" % "/".join(toks))
            return parent.pop(toks[-1])
        if isinstance(parent, list):
            return parent.pop(_index(parent, toks[-1], False))
        raise PatchError("cannot remove below a scalar")

    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError("each operation needs 'op' and 'path'")
        kind, toks = op["op"], _pointer(op["path"])
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError("%s needs 'value'" % kind)
        if kind == "add":
            doc = add(doc, toks, copy.deepcopy(op["value"]))
        elif kind == "remove":
            remove(doc, toks)
        elif kind == "replace":
            if toks:
                remove(doc, toks)
            doc = add(doc, toks, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            if kind == "move" and toks[:len(src)] == src and len(toks) > len(src):
                raise PatchError("cannot move a value into itself")
            value = remove(doc, src) if kind == "move" else copy.deepcopy(_walk(doc, src))
            doc = add(doc, toks, value)
        elif kind == "test":
            if _walk(doc, toks) != op["value"]:
                raise PatchError("test failed at %r" % op["path"])
        else:
            raise PatchError("unknown op %r" % kind)
    return doc


# ---------------------------------------------------------------------------------------
# continue tokens: the encoding of k8s.io/apiserver/pkg/storage.EncodeContinue


def encode_continue(rv, start):
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_continue(token):
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        d = json.loads(raw)
        if d.get("v") != "meta.k8s.io/v1" or not isinstance(d.get("rv"), int) \
                or not isinstance(d.get("start"), str):
            raise ValueError("not a meta.k8s.io/v1 continue token")
    except Exception as e:  # noqa: BLE001 - any decoding failure is the client's
        raise bad_request("continue key is not valid: %s" % e)
    return d["rv"], d["start"]


# ---------------------------------------------------------------------------------------
# names and defaults

_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _check_name(res, name):
    if res is NAMESPACES:
        if len(name) > 63 or not _LABEL.fullmatch(name):
            return "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
    elif len(name) > 253 or not _SUBDOMAIN.fullmatch(name):
        return "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
    return None


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _spec_part(obj):
    """What generation tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}


Event = collections.namedtuple("Event", "rv type res key obj prev")


class Store:
    """All objects of all resources, and their history. Thread-safe: every method takes cond."""

    def __init__(self, without_crds=()):
        self.cond = threading.Condition()
        self.rv = 0
        self.compacted = 0
        # res.id of the custom resources whose CRD is not installed: their paths are 404
        self.absent = {CRDS[n].id for n in without_crds}
        self.objects = {r.id: {} for r in RESOURCES}  # res.id -> {key: obj}; key "ns/name" or "name"
        self.events = []        # Event, ascending rv
        self.event_rvs = []     # the rv of each entry of events, for bisect
        self.watch_cursors = {}  # watch id -> last rv it has taken events up to
        self._next_ip = 1
        self.ns_finalize_delay = 1.0
        self._rand = random.Random()
        for ns in ("default", "kube-system"):
            self.create(NAMESPACES, None, {"metadata": {"name": ns}})

    # -- helpers (callers hold cond) ----------------------------------------------------

    @staticmethod
    def key(res, ns, name):
        return "%s/%s" % (ns, name) if res.namespaced else name

    def _commit(self, res, key, etype, obj, prev):
        self.rv += 1
        if etype == "DELETED":
            obj = dict(prev, metadata=dict(prev["metadata"], resourceVersion=str(self.rv)))
            del self.objects[res.id][key]
        else:
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.objects[res.id][key] = obj
        self.events.append(Event(self.rv, etype, res.id, key, obj, prev))
        self.event_rvs.append(self.rv)
        self.cond.notify_all()
        return obj

    def _state_at(self, res, at):
        """{key: obj} of res as it was at resourceVersion at (compacted <= at <= rv)."""
        state = dict(self.objects[res.id])
        i = bisect.bisect_right(self.event_rvs, at)
        for ev in reversed(self.events[i:]):
            if ev.res != res.id:
                continue
            if ev.type == "ADDED":
                del state[ev.key]
            else:
                state[ev.key] = ev.prev
        return state

    def _parse_rv(self, rv):
        if not re.fullmatch(r"[0-9]+", rv):
            raise bad_request("invalid resource version %r" % rv)
        return int(rv)

    def _too_large(self, want):
        return ApiError(504, "Timeout", "Too large resource version: %d, current: %d" % (want, self.rv),
                        {"causes": [{"reason": "ResourceVersionTooLarge",
                                     "message": "Too large resource version"}],
                         "retryAfterSeconds": 1}, retry_after=1)

    def _ns_open(self, res, name, ns):
        """Raises unless namespace ns exists and is not terminating (NamespaceLifecycle)."""
        o = self.objects[NAMESPACES.id].get(ns)
        if o is None:
            raise ApiError(404, "NotFound", 'namespaces "%s" not found' % ns,
                           {"name": ns, "kind": "namespaces"})
        if o["metadata"].get("deletionTimestamp"):
            raise ApiError(403, "Forbidden", '%s "%s" is forbidden: unable to create new content in namespace %s '
                           'because it is being terminated' % (res.gr, name, ns), _details(res, name))

    def _defaults(self, res, obj, old):
        """The defaulting kube-apiserver does that clients of these tests may rely on."""
        if res.plural == "services" and res.group == "":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            if old is not None and not spec.get("clusterIP"):
                for k in ("clusterIP", "clusterIPs"):  # kept on update, as patchAllocatedValues does
                    if k in old.get("spec", {}):
                        spec[k] = old["spec"][k]
            if not spec.get("clusterIP") and spec["type"] != "ExternalName":
                n = self._next_ip  # 10.96.0.0/12, as kube-apiserver's default service CIDR
                self._next_ip += 1
                spec["clusterIP"] = str(ipaddress.IPv4Address(0x0A600000 + n % 0xFFFFF))
            if spec.get("clusterIP") and "clusterIPs" not in spec:
                spec["clusterIPs"] = [spec["clusterIP"]]
            spec.setdefault("sessionAffinity", "None")
            for p in spec.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")
                    if "port" in p:
                        p.setdefault("targetPort", p["port"])
        elif res.plural == "secrets":
            obj.setdefault("type", "Opaque")
            sd = obj.pop("stringData", None)
            if isinstance(sd, dict):
                data = obj.setdefault("data", {}) or {}
                for k, v in sd.items():
                    data[k] = base64.b64encode(str(v).encode()).decode()
                obj["data"] = data
        elif res.plural == "endpointslices":
            for p in obj.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")
        elif res is NAMESPACES:
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
            if old is None:
                obj["status"] = {"phase": "Active"}

    def _check_body(self, res, ns, body):
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        av, kind = body.get("apiVersion"), body.get("kind")
        if av and av != res.gv:
            raise bad_request("the API version in the data (%s) does not match the expected API version (%s)" % (av, res.gv))
        if kind and kind != res.kind:
            raise bad_request("the kind in the data (%s) does not match the expected kind (%s)" % (kind, res.kind))
        meta = body.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if res.namespaced and meta and meta.get("namespace") and meta["namespace"] != ns:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")

    def _fresh(self, res, ns, body):
        """A deep copy of body with apiVersion/kind first and metadata normalised."""
        body = copy.deepcopy(body)
        obj = {"apiVersion": res.gv, "kind": res.kind}
        obj.update({k: v for k, v in body.items() if k not in ("apiVersion", "kind")})
        meta = obj.setdefault("metadata", {}) or {}
        obj["metadata"] = meta
        if res.namespaced:
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        for k in ("resourceVersion", "selfLink", "managedFields", "deletionTimestamp",
                  "deletionGracePeriodSeconds"):
            meta.pop(k, None)
        return obj

    # -- verbs --------------------------------------------------------------------------

    def get(self, res, ns, name):
        with self.cond:
            obj = self.objects[res.id].get(self.key(res, ns, name))
            if obj is None:
                raise not_found(res, name)
            return obj

    def create(self, res, ns, body, dry_run=False):
        with self.cond:
            self._check_body(res, ns, body)
            obj = self._fresh(res, ns, body)
            meta = obj["metadata"]
            if not meta.get("name") and meta.get("generateName"):
                alphabet = "bcdfghjklmnpqrstvwxz2456789"
                meta["name"] = meta["generateName"] + "".join(self._rand.choice(alphabet) for _ in range(5))
            name = meta.get("name")
            if not name:
                raise invalid(res, "", "metadata.name", "FieldValueRequired",
                              "Required value: name or generateName is required")
            why = _check_name(res, name)
            if why:
                raise invalid(res, name, "metadata.name", "FieldValueInvalid", 'Invalid value: "%s": %s' % (name, why))
            if res.namespaced:
                self._ns_open(res, name, ns)
            key = self.key(res, ns, name)
            if key in self.objects[res.id]:
                raise ApiError(409, "AlreadyExists", '%s "%s" already exists' % (res.gr, name), _details(res, name))
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = _now()
            meta["generation"] = 1
            if res.status and not res.builtin:  # a custom resource's create drops status
                obj.pop("status", None)
            elif res.status and res is not NAMESPACES:  # status is written through /status only
                obj["status"] = {"loadBalancer": {}} if res.plural in ("services", "ingresses") else {}
            self._defaults(res, obj, None)
            if dry_run:
                return obj
            return self._commit(res, key, "ADDED", obj, None)

    def update(self, res, ns, name, body, subresource=None, dry_run=False, check_rv=True):
        """PUT: returns (obj, created)."""
        with self.cond:
            self._check_body(res, ns, body)
            bmeta = body.get("metadata") or {}
            if bmeta.get("name") and bmeta["name"] != name:
                raise bad_request("the name of the object (%s) does not match the name on the URL (%s)" % (bmeta["name"], name))
            key = self.key(res, ns, name)
            old = self.objects[res.id].get(key)
            if old is None:
                if res.create_on_update and subresource is None:
                    body = dict(body, metadata=dict(bmeta, name=name))
                    return self.create(res, ns, body, dry_run), True
                raise not_found(res, name)
            if check_rv and bmeta.get("resourceVersion") and bmeta["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise conflict(res, name, MODIFIED_MSG)
            if bmeta.get("uid") and bmeta["uid"] != old["metadata"]["uid"]:
                raise conflict(res, name, "Precondition failed: UID in precondition: %s, UID in object meta: %s" % (
                    bmeta["uid"], old["metadata"]["uid"]))
            if subresource == "status":
                new = copy.deepcopy(old)
                if "status" in body:
                    new["status"] = copy.deepcopy(body["status"])
                else:
                    new.pop("status", None)
            else:
                new = self._fresh(res, ns, body)
                for k in ("uid", "creationTimestamp", "generation", "name", "deletionTimestamp"):
                    if k in old["metadata"]:
                        new["metadata"][k] = old["metadata"][k]
                if res.status:
                    if "status" in old:
                        new["status"] = copy.deepcopy(old["status"])
                    else:
                        new.pop("status", None)
                self._defaults(res, new, old)
                if _spec_part(new) != _spec_part(old):
                    new["metadata"]["generation"] = old["metadata"]["generation"] + 1
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if new == old:  # etcd3 GuaranteedUpdate: identical bytes are not written
                return old, False
            if dry_run:
                return new, False
            return self._commit(res, key, "MODIFIED", new, old), False

    def patch(self, res, ns, name, ctype, patch, subresource=None, dry_run=False):
        with self.cond:
            old = self.objects[res.id].get(self.key(res, ns, name))
            if old is None:
                raise not_found(res, name)
            try:
                if ctype == "application/json-patch+json":
                    if not isinstance(patch, list):  # jsonpatch.DecodePatch fails: 400
                        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
                    try:
                        new = json_patch(old, patch)
                    except PatchError:
                        # kube-apiserver answers a patch that does not apply (a failed test
                        # included) with NewGenericServerResponse(422): this message, no reason
                        raise ApiError(422, "Invalid", REJECTED_MSG, {})
                elif not isinstance(patch, dict):
                    raise bad_request("a merge patch must be a JSON object")
                elif ctype == "application/strategic-merge-patch+json":
                    new = strategic_merge(old, patch)
                else:
                    new = merge_patch(old, patch)
            except PatchError as e:
                raise ApiError(422, "Invalid", "%s: %s" % (REJECTED_MSG, e))
            if not isinstance(new, dict):
                raise bad_request("the patch did not produce an object")
            nmeta = new.get("metadata") if isinstance(new.get("metadata"), dict) else {}
            if nmeta.get("resourceVersion") and nmeta["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise conflict(res, name, MODIFIED_MSG)
            new = dict(new, metadata=dict(nmeta, name=name))
            if res.namespaced:
                new["metadata"]["namespace"] = ns
            obj, _ = self.update(res, ns, name, new, subresource, dry_run, check_rv=False)
            return obj

    def delete(self, res, ns, name, options=None, dry_run=False):
        with self.cond:
            key = self.key(res, ns, name)
            old = self.objects[res.id].get(key)
            if old is None:
                raise not_found(res, name)
            pre = (options or {}).get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
                raise conflict(res, name, "Precondition failed: UID in precondition: %s, UID in object meta: %s" % (
                    pre["uid"], old["metadata"]["uid"]))
            if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise conflict(res, name, "Precondition failed: ResourceVersion in precondition: %s, ResourceVersion in object meta: %s" % (
                    pre["resourceVersion"], old["metadata"]["resourceVersion"]))
            if res is NAMESPACES:
                return self._terminate_namespace(old, dry_run)
            if dry_run:
                return old
            return self._commit(res, key, "DELETED", None, old)

    def served(self, res):
        """Whether res is served (a custom resource: its CRD is installed)."""
        return res.id not in self.absent

    def set_crd(self, res, installed):
        """Installs or removes the CRD of custom resource res. Removing it deletes every
        object of it first (DELETED events, as the CRD's customresourcecleanup finalizer
        does); then its paths answer 404 and open watches of it end (server.py)."""
        with self.cond:
            if installed:
                self.absent.discard(res.id)
                return
            if res.id in self.absent:
                return
            for k in sorted(self.objects[res.id]):
                self._commit(res, k, "DELETED", None, self.objects[res.id][k])
            self.absent.add(res.id)
            self.cond.notify_all()

    def _terminate_namespace(self, old, dry_run):
        """A namespace DELETE as kube-apiserver answers it: the namespace turns Terminating
        (deletionTimestamp set, new content refused with 403) and the namespace controller
        removes its content and then the namespace later, here ns_finalize_delay seconds on.
        So a `kubectl delete -f` that lists the namespace first still finds the objects."""
        name = old["metadata"]["name"]
        if old["metadata"].get("deletionTimestamp"):
            raise conflict(NAMESPACES, name, "The system is ensuring all content is removed from this namespace.  "
                           "Upon completion, this namespace will automatically be purged by the system.")
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = _now()
        new["status"] = {"phase": "Terminating"}
        if dry_run:
            return new
        new = self._commit(NAMESPACES, name, "MODIFIED", new, old)
        t = threading.Timer(self.ns_finalize_delay, self._finalize_namespace, (name, new["metadata"]["uid"]))
        t.daemon = True
        t.start()
        return new

    def _finalize_namespace(self, name, uid):
        with self.cond:
            ns = self.objects[NAMESPACES.id].get(name)
            if ns is None or ns["metadata"]["uid"] != uid:
                return
            for r in RESOURCES:
                if r.namespaced:
                    for k in sorted(k for k in self.objects[r.id] if k.startswith(name + "/")):
                        self._commit(r, k, "DELETED", None, self.objects[r.id][k])
            self._commit(NAMESPACES, name, "DELETED", None, ns)

    def delete_collection(self, res, ns, sel, options=None, dry_run=False):
        with self.cond:
            items = [o for k, o in sorted(self._scope(res, ns, self.objects[res.id]).items()) if sel(o)]
            out = [self.delete(res, o["metadata"].get("namespace"), o["metadata"]["name"], options, dry_run)
                   for o in items]
            return out, self.rv

    @staticmethod
    def _scope(res, ns, state):
        if not res.namespaced or ns is None:
            return state
        prefix = ns + "/"
        return {k: v for k, v in state.items() if k.startswith(prefix)}

    def list(self, res, ns, sel, limit=0, cont=None, rv=None, rv_match=None):
        """Returns (items, list_rv, continue_token or None, remainingItemCount or None),
        following the resourceVersion semantics of the API concepts page."""
        with self.cond:
            if cont:
                if rv and rv != "0":
                    raise bad_request("specifying resource version is not allowed when using continue")
                at, start = decode_continue(cont)
                if at == -1:
                    at = self.rv  # an inconsistent continuation, offered by a 410 Expired
                elif at < self.compacted:
                    raise expired(INCONSISTENT_CONTINUE, encode_continue(-1, start))
                elif at > self.rv:
                    raise bad_request("continue key is not valid: resource version from the future")
            else:
                start = ""
                if rv_match and not rv:
                    raise invalid(res, "", "resourceVersionMatch", "FieldValueForbidden",
                                  "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
                                  kind="ListOptions", group="meta.k8s.io")
                if rv_match not in (None, "", "NotOlderThan", "Exact"):
                    raise invalid(res, "", "resourceVersionMatch", "FieldValueNotSupported",
                                  'Unsupported value: "%s": supported values: "Exact", "NotOlderThan", ""' % rv_match,
                                  kind="ListOptions", group="meta.k8s.io")
                if rv_match == "Exact" and rv == "0":
                    raise invalid(res, "", "resourceVersionMatch", "FieldValueForbidden",
                                  'Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
                                  kind="ListOptions", group="meta.k8s.io")
                at = self.rv
                if rv and rv != "0":
                    want = self._parse_rv(rv)
                    if want > self.rv:
                        raise self._too_large(want)
                    if rv_match == "Exact" or (not rv_match and limit > 0):
                        if want < self.compacted:
                            raise expired(EXPIRED_LIST)
                        at = want
            state = self._scope(res, ns, self._state_at(res, at))
            keys = sorted(k for k in state if k > start)
            items, last_i = [], -1
            for i, k in enumerate(keys):
                if sel(state[k]):
                    items.append(state[k])
                    if limit and len(items) >= limit:
                        last_i = i
                        break
            token = remaining = None
            if last_i >= 0 and last_i + 1 < len(keys):
                token = encode_continue(at, keys[last_i] + "\x00")
                if sel.empty():
                    remaining = len(keys) - last_i - 1
            return items, at, token, remaining

    # -- watch support ------------------------------------------------------------------

    def watch_begin(self, wid, res, ns, sel, rv, initial):
        """Registers watch wid. Returns (initial objects, cursor): with initial set, the
        current objects (synthetic ADDED) and cursor = current rv; else no objects and the
        cursor = rv. Raises ApiError 410 if rv is older than the compaction point."""
        with self.cond:
            if initial:
                objs = [o for k, o in sorted(self._scope(res, ns, self.objects[res.id]).items()) if sel(o)]
                cursor = self.rv
            else:
                objs = []
                cursor = self.rv if rv in (None, "", "0") else self._parse_rv(rv)
                if cursor < self.compacted:
                    raise expired("too old resource version: %d (%d)" % (cursor, self.compacted))
            self.watch_cursors[wid] = cursor
            return objs, cursor

    def watch_poll(self, wid, cursor, timeout):
        """Waits up to timeout for events after cursor; returns (events, new cursor)."""
        with self.cond:
            if self.rv <= cursor and timeout > 0:
                self.cond.wait(timeout)
            i = bisect.bisect_right(self.event_rvs, cursor)
            evs = self.events[i:]
            cursor = max(cursor, self.rv)  # a watch from a future rv stays there
            self.watch_cursors[wid] = cursor
            return evs, cursor

    def watch_end(self, wid):
        with self.cond:
            self.watch_cursors.pop(wid, None)

    def wake(self):
        with self.cond:
            self.cond.notify_all()

    def compact(self, rv=None):
        """Forgets history up to rv (default: now): later lists, continues and watches from
        an older rv get 410. Returns the compaction point."""
        with self.cond:
            c = self.rv if rv is None else max(0, min(int(rv), self.rv))
            self.compacted = max(self.compacted, c)
            keep_from = min([self.compacted] + list(self.watch_cursors.values()))
            i = bisect.bisect_right(self.event_rvs, keep_from)
            del self.events[:i]
            del self.event_rvs[:i]
            return self.compacted


def watch_event(res, sel, ns, ev):
    """The (type, object) a watch of res in ns with selector sel sees for store event ev, or
    None; an object that stops matching is DELETED, one that starts matching is ADDED, as in
    the apiserver's cacheWatcher."""
    if ev.res != res.id:
        return None
    if res.namespaced and ns is not None and not ev.key.startswith(ns + "/"):
        return None
    cur = ev.type != "DELETED" and sel(ev.obj)
    old = ev.prev is not None and sel(ev.prev)
    if cur and not old:
        return "ADDED", ev.obj
    if cur and old:
        return "MODIFIED", ev.obj
    if old:
        if ev.type == "DELETED":
            return "DELETED", ev.obj
        return "DELETED", dict(ev.prev, metadata=dict(ev.prev["metadata"], resourceVersion=str(ev.rv)))
    return None
