"""Offline checks of the Gateway CRD (crds/strait.dev_gateways.yaml) and its examples
(manifests/examples/gateway/): no cluster, no network at test time (tools/cel.sh fetches the
CEL library from the npm registry once, into build/tools/cel/).

What it checks:
  - the CRD is a structural schema the apiserver would take: every node typed, objects with
    properties, bounded lists (maxItems) and strings (maxLength, enum or format), bounded
    integers, list-map keys required, defaults valid and never `required`, only known keys,
    no x-kubernetes-preserve-unknown-fields, CEL rules that compile and stay within a
    conservative bound of the apiserver's cost limits, printer columns that exist;
  - every example validates against openAPIV3Schema (jsonschema, with the OpenAPI subset
    translated: unknown fields rejected as `kubectl apply` does with strict field validation,
    formats int32/int64/date-time checked, x-kubernetes-list-type map/set uniqueness checked
    here), then gets its defaults applied as the apiserver would, and passes every CEL rule;
  - a table of bad variants, each failing exactly the intended CEL rule(s) and accepted once
    fixed, covering every rule of the CRD; a table of bad manifests each rejected by the
    structural schema for exactly the intended reason.
What it does not: run the apiserver's own cost estimator or type checker.
"""
import copy
import json
import os
import re
import subprocess
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CRD_PATH = os.path.join(ROOT, "crds", "strait.dev_gateways.yaml")
EXAMPLES_DIR = os.path.join(ROOT, "manifests", "examples", "gateway")
CEL_SH = os.path.join(ROOT, "tools", "cel.sh")
CEL_EVAL = os.path.join(ROOT, "tools", "cel-eval.mjs")

try:
    import yaml
    import jsonschema
except ImportError:  # a Python of its own (pyenv) does not see Debian's python3-* packages
    sys.path.append("/usr/lib/python3/dist-packages")
    import yaml  # noqa: E402
    import jsonschema  # noqa: E402

# The apiserver's limits (k8s.io/apiextensions-apiserver, pkg/apiserver/schema/cel):
PER_RULE_COST_LIMIT = 10_000_000       # StaticEstimatedCostLimit, one evaluation of one rule
PER_CRD_COST_LIMIT = 100_000_000       # StaticEstimatedCRDCostLimit, all rules, all instances
# CEL reserved words: a field of that name must be written __name__ in a rule.
CEL_RESERVED = {"as", "break", "const", "continue", "else", "false", "for", "function", "if",
                "import", "in", "let", "loop", "package", "namespace", "null", "return",
                "true", "var", "void", "while"}
ALLOWED_KEYS = {"type", "description", "properties", "items", "required", "enum", "default",
                "minimum", "maximum", "minLength", "maxLength", "pattern", "format", "minItems",
                "maxItems", "additionalProperties", "x-kubernetes-validations",
                "x-kubernetes-list-type", "x-kubernetes-list-map-keys"}
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def load_crd():
    with open(CRD_PATH) as f:
        return yaml.safe_load(f)


CRD = load_crd()
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]


def walk_schema(s, path=()):
    """Yields (path, node) for every schema node; path elements are property names, "[]" for
    array items."""
    yield path, s
    for k, v in s.get("properties", {}).items():
        yield from walk_schema(v, path + (k,))
    if "items" in s:
        yield from walk_schema(s["items"], path + ("[]",))
    if isinstance(s.get("additionalProperties"), dict):
        yield from walk_schema(s["additionalProperties"], path + ("{}",))


def fmt(path):
    return "." + ".".join(path) if path else "<root>"


# ---------------------------------------------------------------------------------------
# OpenAPI (Kubernetes structural subset) -> JSON Schema, defaults, list-type checks

def to_jsonschema(s, path=()):
    out = {}
    for k in ("type", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern",
              "format", "minItems", "maxItems", "required"):
        if k in s:
            out[k] = s[k]
    if "properties" in s:
        out["properties"] = {k: to_jsonschema(v, path + (k,)) for k, v in s["properties"].items()}
        # strict field validation (kubectl apply's default): an unknown field is an error
        out["additionalProperties"] = False
    if "items" in s:
        out["items"] = to_jsonschema(s["items"], path + ("[]",))
    return out


FORMATS = jsonschema.FormatChecker(())


@FORMATS.checks("int32")
def _int32(v):
    return not isinstance(v, int) or -2**31 <= v < 2**31


@FORMATS.checks("int64")
def _int64(v):
    return not isinstance(v, int) or -2**63 <= v < 2**63


@FORMATS.checks("date-time")
def _date_time(v):
    return not isinstance(v, str) or bool(RFC3339.match(v))


VALIDATOR = jsonschema.Draft7Validator(to_jsonschema(SCHEMA), format_checker=FORMATS)


def list_type_errors(obj, s, path=()):
    """(path, "list-map-key"|"list-set", detail) for duplicates the apiserver rejects."""
    errs = []
    if isinstance(obj, dict) and "properties" in s:
        for k, v in obj.items():
            if k in s["properties"]:
                errs += list_type_errors(v, s["properties"][k], path + (k,))
    elif isinstance(obj, list) and "items" in s:
        lt = s.get("x-kubernetes-list-type")
        seen = set()
        for i, item in enumerate(obj):
            if lt == "map" and isinstance(item, dict):
                key = tuple(json.dumps(item.get(k)) for k in s["x-kubernetes-list-map-keys"])
                if key in seen:
                    errs.append((path + (str(i),), "list-map-key", key))
                seen.add(key)
            elif lt == "set":
                key = json.dumps(item, sort_keys=True)
                if key in seen:
                    errs.append((path + (str(i),), "list-set", key))
                seen.add(key)
            errs += list_type_errors(item, s["items"], path + (str(i),))
    return errs


def schema_errors(obj, crd=None):
    """Every structural error of obj, as (validator, path tuple, message); crd: a Crd (default
    the Gateway CRD)."""
    validator, schema = (crd.validator, crd.schema) if crd else (VALIDATOR, SCHEMA)
    errs = [(e.validator, tuple(str(p) for p in e.absolute_path), e.message)
            for e in validator.iter_errors(obj)]
    errs += [(kind, p, "duplicate %s" % (key,)) for p, kind, key in list_type_errors(obj, schema)]
    return errs


def apply_defaults(obj, s):
    """The apiserver's structural defaulting, in place: a missing property with a default gets
    a copy of it, then defaulting goes on inside (so a defaulted value is itself defaulted)."""
    if isinstance(obj, dict) and "properties" in s:
        for k, sub in s["properties"].items():
            if k not in obj and "default" in sub:
                obj[k] = copy.deepcopy(sub["default"])
            if k in obj:
                apply_defaults(obj[k], sub)
    elif isinstance(obj, list) and "items" in s:
        for item in obj:
            apply_defaults(item, s["items"])
    return obj


# ---------------------------------------------------------------------------------------
# CEL

def cel_rules(schema):
    """(schema path, rule, message) of every CEL rule, in schema order."""
    return [(p, " ".join(v.get("rule", "").split()), v.get("message", ""))
            for p, node in walk_schema(schema) for v in node.get("x-kubernetes-validations", [])]


RULES = cel_rules(SCHEMA)
MESSAGES = [m for _, _, m in RULES]


def macro_nesting(rule):
    """(number of comprehension macros, deepest nesting of them) in a rule."""
    code = re.sub(r"r?\"\"\".*?\"\"\"|'(?:\\.|[^'\\])*'", "''", rule)
    stack, count, deepest = [], 0, 0
    for m in re.finditer(r"\.(?:all|exists|exists_one|filter|map)\(|[()]", code):
        tok = m.group(0)
        if tok == ")":
            stack.pop()
        else:
            is_macro = tok != "("
            stack.append(is_macro)
            count += is_macro
            deepest = max(deepest, sum(stack))
    return count, deepest


def nodes_at(obj, path):
    """The instance nodes at a schema path (arrays expanded); absent fields yield nothing, as
    the apiserver only runs a rule where its field is present."""
    if not path:
        yield obj
        return
    head, rest = path[0], path[1:]
    if head == "[]":
        if isinstance(obj, list):
            for item in obj:
                yield from nodes_at(item, rest)
    elif isinstance(obj, dict) and head in obj:
        yield from nodes_at(obj[head], rest)


_cel_dir = None


def cel_dir():
    global _cel_dir
    if _cel_dir is None:
        p = subprocess.run([CEL_SH], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
        if p.returncode != 0:
            raise AssertionError("tools/cel.sh failed: %s" % p.stderr.decode(errors="replace"))
        _cel_dir = p.stdout.decode().strip().splitlines()[-1]
    return _cel_dir


def cel_run(rules, jobs):
    """Runs [(rule index, self)] through tools/cel-eval.mjs; returns (compile errors, results)."""
    p = subprocess.run(["node", CEL_EVAL, cel_dir()], input=json.dumps(
        {"rules": rules, "jobs": jobs}).encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        timeout=60)
    if p.returncode != 0:
        raise AssertionError("cel-eval.mjs: rc=%d %s" % (p.returncode, p.stderr.decode()))
    out = json.loads(p.stdout)
    return out["compile"], out["results"]


def cel_verdicts(docs, crd=None):
    """For each (already defaulted) doc: {message: [result per node]} for every rule whose
    field is present, evaluated in one node process for all docs; crd: a Crd (default the
    Gateway CRD)."""
    rules = crd.rules if crd else RULES
    jobs, where = [], []
    for d, doc in enumerate(docs):
        for r, (path, _, _) in enumerate(rules):
            for node in nodes_at(doc, path):
                jobs.append([r, node])
                where.append((d, r))
    _, results = cel_run([rule for _, rule, _ in rules], jobs)
    out = [dict() for _ in docs]
    for (d, r), res in zip(where, results):
        out[d].setdefault(rules[r][2], []).append(res)
    return out


class Crd:
    """One CRD file of crds/: its schema, validator and CEL rules, for the other CRDs' tests
    (test_crd_schema_authz.py) and tests/install."""

    def __init__(self, path):
        with open(path) as f:
            self.crd = yaml.safe_load(f)
        self.version = self.crd["spec"]["versions"][0]
        self.schema = self.version["schema"]["openAPIV3Schema"]
        self.validator = jsonschema.Draft7Validator(to_jsonschema(self.schema), format_checker=FORMATS)
        self.rules = cel_rules(self.schema)
        self.group = self.crd["spec"]["group"]
        self.kind = self.crd["spec"]["names"]["kind"]
        self.versions = {v["name"] for v in self.crd["spec"]["versions"] if v.get("served")}


def failed_rules(verdict):
    return {m for m, res in verdict.items() if any(x is not True for x in res)}


# ---------------------------------------------------------------------------------------
# documents

def examples():
    """{file name: [Gateway dicts]} of manifests/examples/gateway/."""
    out = {}
    for name in sorted(os.listdir(EXAMPLES_DIR)):
        if name.endswith(".yaml"):
            with open(os.path.join(EXAMPLES_DIR, name)) as f:
                docs = [d for d in yaml.safe_load_all(f) if d]
            out[name] = docs
    return out


def base():
    """A small valid Gateway the bad variants start from."""
    return {
        "apiVersion": "strait.dev/v1alpha1", "kind": "Gateway",
        "metadata": {"name": "t", "namespace": "default"},
        "spec": {
            "listeners": [
                {"name": "http", "port": 80, "protocol": "HTTP"},
                {"name": "https", "port": 443, "protocol": "HTTPS",
                 "tls": {"certificateRefs": [{"name": "cert"}]}},
            ],
            "routes": [{
                "name": "r",
                "hostnames": ["app.example.com"],
                "rules": [{
                    "matches": [{"path": {"type": "PathPrefix", "value": "/api"},
                                 "headers": [{"name": "x-a", "value": "1"}]}],
                    "backendRefs": [{"name": "app", "port": 80, "weight": 1}],
                }],
            }],
        },
    }


def rule0(g):
    return g["spec"]["routes"][0]["rules"][0]


def edit(*fns):
    """A document: base() with each fn applied in turn (fn mutates its argument)."""
    g = base()
    for fn in fns:
        fn(g)
    return g


def set_rule(**kv):
    def fn(g):
        r = rule0(g)
        for k, v in kv.items():
            if v is None:
                r.pop(k, None)
            else:
                r[k] = v
    return fn


def set_path(t, v):
    def fn(g):
        rule0(g)["matches"][0]["path"] = {"type": t, "value": v}
    return fn


def set_policy(pol):
    def fn(g):
        rule0(g)["backendRefs"][0]["policy"] = copy.deepcopy(pol)
    return fn


# every backendRef policy field, valid
FULL_POLICY = {
    "loadBalancer": {"type": "ring_hash", "hashBy": "cookie:session", "affinity": "cookie",
                     "sessionCookieName": "route"},
    "healthCheck": {"path": "/healthz?full=1", "host": "[::1]:8080", "interval": "2s", "timeout": "500ms",
                    "expectedStatus": "200-299", "healthyThreshold": 1, "unhealthyThreshold": 100},
    "outlierDetection": {"consecutiveFailures": 0, "baseEjectionTime": "1s", "maxEjectionTime": "24h",
                         "maxEjectionPercent": 100},
    "circuitBreaker": {"maxConnections": 0, "maxPendingRequests": 1000000, "maxRequests": 10},
    "retryBudget": {"percent": 1000, "minRetriesPerSecond": 0},
    "slowStart": "1m30s",
}


REDIRECT = {"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}
REWRITE = {"type": "URLRewrite", "urlRewrite": {"hostname": "x.example.com"}}
REQ_HDR = {"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": ["x-b"]}}
RESP_HDR = {"type": "ResponseHeaderModifier",
            "responseHeaderModifier": {"set": [{"name": "x-c", "value": "2"}]}}
MIRROR = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "m", "port": 80}}}
FILTER_CONFIG = {"RequestHeaderModifier": ("requestHeaderModifier", REQ_HDR),
                 "ResponseHeaderModifier": ("responseHeaderModifier", RESP_HDR),
                 "RequestRedirect": ("requestRedirect", REDIRECT),
                 "URLRewrite": ("urlRewrite", REWRITE),
                 "RequestMirror": ("requestMirror", MIRROR)}


def filters(*fs, backends=True):
    def fn(g):
        r = rule0(g)
        r["filters"] = copy.deepcopy(list(fs))
        if not backends:
            r.pop("backendRefs", None)
    return fn


def path_mod(kind, mod):
    """A rule with one filter of kind (RequestRedirect/URLRewrite) whose path is mod."""
    key = FILTER_CONFIG[kind][0]
    return filters({"type": kind, key: {"path": mod}}, backends=(kind == "URLRewrite"))


def _cel_cases():
    """(name, bad doc, fixed doc, messages of the rules the bad doc must fail)."""
    c = []
    add = c.append
    m_tls_req = "tls must be specified for protocol HTTPS"
    m_tls_forbid = "tls must not be specified for protocol HTTP"
    add(("https listener without tls",
         edit(lambda g: g["spec"]["listeners"][1].pop("tls")),
         base(), {m_tls_req}))
    add(("http listener with tls",
         edit(lambda g: g["spec"]["listeners"][0].update(tls={"certificateRefs": [{"name": "c"}]})),
         base(), {m_tls_forbid}))
    add(("two listeners on one port, protocol and hostname",
         edit(lambda g: g["spec"]["listeners"].append({"name": "http2", "port": 80, "protocol": "HTTP"})),
         edit(lambda g: g["spec"]["listeners"].append({"name": "http2", "port": 80, "protocol": "HTTP",
                                                       "hostname": "a.example.com"})),
         {"Combination of port, protocol and hostname must be unique for each listener"}))
    add(("two routes of one name",
         edit(lambda g: g["spec"]["routes"].append(copy.deepcopy(g["spec"]["routes"][0]))),
         edit(lambda g: g["spec"]["routes"].append(dict(copy.deepcopy(g["spec"]["routes"][0]), name="r2"))),
         {"Route name must be unique within the Gateway"}))
    add(("redirect with backendRefs",
         edit(filters(REDIRECT)), edit(filters(REDIRECT, backends=False)),
         {"RequestRedirect filter must not be used together with backendRefs"}))
    for kind, msg in (("RequestRedirect", "When using RequestRedirect filter with path.replacePrefixMatch, "
                       "exactly one PathPrefix match must be specified"),
                      ("URLRewrite", "When using URLRewrite filter with path.replacePrefixMatch, "
                       "exactly one PathPrefix match must be specified")):
        prefix = path_mod(kind, {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"})
        add(("%s ReplacePrefixMatch with an Exact match" % kind,
             edit(prefix, set_path("Exact", "/api")), edit(prefix), {msg}))
        add(("%s ReplacePrefixMatch with two matches" % kind,
             edit(prefix, lambda g: rule0(g)["matches"].append({"path": {"value": "/b"}})),
             edit(prefix), {msg}))
        # ReplaceFullPath has no such constraint
        full = path_mod(kind, {"type": "ReplaceFullPath", "replaceFullPath": "/v2"})
        add(("%s path type ReplaceFullPath without replaceFullPath" % kind,
             edit(path_mod(kind, {"type": "ReplaceFullPath"})),
             edit(full, set_path("Exact", "/api")),
             {"replaceFullPath must be specified when type is set to 'ReplaceFullPath'"}))
        add(("%s replacePrefixMatch set with type ReplaceFullPath" % kind,
             edit(path_mod(kind, {"type": "ReplaceFullPath", "replaceFullPath": "/a",
                                  "replacePrefixMatch": "/b"})),
             edit(full),
             {"type must be 'ReplacePrefixMatch' when replacePrefixMatch is set"}))
        add(("%s path type ReplacePrefixMatch without replacePrefixMatch" % kind,
             edit(path_mod(kind, {"type": "ReplacePrefixMatch"})), edit(prefix),
             {"replacePrefixMatch must be specified when type is set to 'ReplacePrefixMatch'"}))
        add(("%s replaceFullPath set with type ReplacePrefixMatch" % kind,
             edit(path_mod(kind, {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/a",
                                  "replaceFullPath": "/b"})),
             edit(prefix),
             {"type must be 'ReplaceFullPath' when replaceFullPath is set"}))
    m_abs = ("value must be an absolute path and start with '/' when type one of "
             "['Exact', 'PathPrefix']")
    for t in ("Exact", "PathPrefix"):
        add(("%s path not absolute" % t, edit(set_path(t, "api")), edit(set_path(t, "/api")), {m_abs}))
        add(("%s path with //" % t, edit(set_path(t, "/a//b")), edit(set_path(t, "/a/b")),
             {"must not contain '//' when type one of ['Exact', 'PathPrefix']"}))
        for bad in ("/a/../b", "/a/./b", "/a/..", "/a/."):
            add(("%s path %s" % (t, bad), edit(set_path(t, bad)), edit(set_path(t, "/a/b")),
                 {"must not contain '/./' or '/../' or end with '/.' or '/..' when type one of "
                  "['Exact', 'PathPrefix']"}))
        for bad in ("/a b", "/a#b", "/a%2", "/a?b"):
            add(("%s path %r" % (t, bad), edit(set_path(t, bad)), edit(set_path(t, "/a%2Fb")),
                 {"must only contain valid characters (matching "
                  "^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$) for types "
                  "['Exact', 'PathPrefix']"}))
    # a regular expression need not be a path
    add(("RegularExpression is not checked as a path, but a PathPrefix is",
         edit(set_path("PathPrefix", "^/a b$")), edit(set_path("RegularExpression", "^/a b$")),
         {"must only contain valid characters (matching "
          "^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$) for types ['Exact', 'PathPrefix']",
          m_abs}))
    add(("RequestRedirect and URLRewrite in one rule",
         edit(filters(REDIRECT, REWRITE, backends=False)), edit(filters(REWRITE, backends=False)),
         {"May specify either RequestRedirect or URLRewrite, but not both"}))
    for f, msg in ((REQ_HDR, "RequestHeaderModifier filter cannot be repeated"),
                   (RESP_HDR, "ResponseHeaderModifier filter cannot be repeated"),
                   (REDIRECT, "RequestRedirect filter cannot be repeated"),
                   (REWRITE, "URLRewrite filter cannot be repeated")):
        backends = f is not REDIRECT
        add(("%s twice" % f["type"], edit(filters(f, f, backends=backends)),
             edit(filters(f, MIRROR, MIRROR, backends=backends)), {msg}))
    for kind, (key, good) in FILTER_CONFIG.items():
        backends = kind != "RequestRedirect"
        add(("%s filter without its %s" % (kind, key), edit(filters({"type": kind}, backends=backends)),
             edit(filters(good, backends=backends)),
             {"filter.%s must be specified for %s filter.type" % (key, kind)}))
        # another filter's settings beside complete ones of this kind
        for other_kind, (other_key, other) in FILTER_CONFIG.items():
            if other_kind == kind:
                continue
            bad = dict(copy.deepcopy(good), **{other_key: copy.deepcopy(other[other_key])})
            b = backends and other_kind != "RequestRedirect"
            add(("%s filter with a %s" % (kind, other_key), edit(filters(bad, backends=b)),
                 edit(filters(good, backends=b)),
                 {"filter.%s must be nil if the filter.type is not %s" % (other_key, other_kind)}))
    m_to = "backendRequest timeout cannot be longer than request timeout"
    for req, be in (("10s", "30s"), ("1m", "61s"), ("1h", "1h1ms"), ("500ms", "1s")):
        add(("backendRequest %s > request %s" % (be, req),
             edit(set_rule(timeouts={"request": req, "backendRequest": be})),
             edit(set_rule(timeouts={"request": be, "backendRequest": req})), {m_to}))
    add(("backendRequest longer than request, request 0s means none",
         edit(set_rule(timeouts={"request": "1s", "backendRequest": "2s"})),
         edit(set_rule(timeouts={"request": "0s", "backendRequest": "2s"})), {m_to}))
    add(("equal durations written differently",
         edit(set_rule(timeouts={"request": "1h30m", "backendRequest": "5401s"})),
         edit(set_rule(timeouts={"request": "1h30m", "backendRequest": "90m"})), {m_to}))
    m_hash = "hashBy needs type ring_hash or maglev"
    for t in ("round_robin", "ewma", "least_request"):
        add(("hashBy with type %s" % t,
             edit(set_policy({"loadBalancer": {"type": t, "hashBy": "header:x-user"}})),
             edit(set_policy({"loadBalancer": {"type": "maglev", "hashBy": "header:x-user"}})), {m_hash}))
    add(("hashBy without type is fine, type ewma without hashBy too",
         edit(set_policy({"loadBalancer": {"type": "ewma", "hashBy": "path"}})),
         edit(set_policy({"loadBalancer": {"hashBy": "path"}})), {m_hash}))
    m_hc = "timeout cannot be longer than interval (default 5s)"
    add(("health-check timeout longer than the interval",
         edit(set_policy({"healthCheck": {"path": "/h", "interval": "1s", "timeout": "1500ms"}})),
         edit(set_policy({"healthCheck": {"path": "/h", "interval": "1s", "timeout": "1000ms"}})), {m_hc}))
    add(("health-check timeout longer than the default interval",
         edit(set_policy({"healthCheck": {"path": "/h", "timeout": "6s"}})),
         edit(set_policy({"healthCheck": {"path": "/h", "timeout": "5s"}})), {m_hc}))
    m_od = "maxEjectionTime cannot be shorter than baseEjectionTime (default 30s)"
    add(("max ejection time shorter than the base",
         edit(set_policy({"outlierDetection": {"baseEjectionTime": "1m", "maxEjectionTime": "59s"}})),
         edit(set_policy({"outlierDetection": {"baseEjectionTime": "1m", "maxEjectionTime": "60s"}})), {m_od}))
    add(("max ejection time shorter than the default base",
         edit(set_policy({"outlierDetection": {"maxEjectionTime": "10s"}})),
         edit(set_policy({"outlierDetection": {"baseEjectionTime": "10s", "maxEjectionTime": "10s"}})), {m_od}))
    return c


CEL_CASES = _cel_cases()


def _at(path_value):
    """A mutation that sets doc[path...] = value (path of keys and indexes; "-" appends,
    value DELETE removes)."""
    path, value = path_value

    def fn(g):
        o = g
        for k in path[:-1]:
            o = o[k]
        last = path[-1]
        if value is DELETE:
            del o[last]
        elif last == "-":
            o.append(value)
        else:
            o[last] = value
    return fn


DELETE = object()
L0 = ("spec", "listeners", 0)
R0 = ("spec", "routes", 0, "rules", 0)
B0 = R0 + ("backendRefs", 0)
M0 = R0 + ("matches", 0)
P0 = B0 + ("policy",)
# (name, (path, value), expected validator, expected error path)
SCHEMA_CASES = [
    ("protocol not in the enum", (L0 + ("protocol",), "TCP"), "enum", L0 + ("protocol",)),
    ("listener port 0", (L0 + ("port",), 0), "minimum", L0 + ("port",)),
    ("listener port 65536", (L0 + ("port",), 65536), "maximum", L0 + ("port",)),
    ("listener port as a string", (L0 + ("port",), "80"), "type", L0 + ("port",)),
    ("listener name not a DNS label", (L0 + ("name",), "Http"), "pattern", L0 + ("name",)),
    ("listener without port", (L0 + ("port",), DELETE), "required", L0),
    ("listener hostname with a wildcard inside", (L0 + ("hostname",), "a.*.example.com"),
     "pattern", L0 + ("hostname",)),
    ("listener unknown field", (L0 + ("address",), "0.0.0.0"), "additionalProperties", L0),
    ("no listeners", (("spec", "listeners"), []), "minItems", ("spec", "listeners")),
    ("65 listeners", (("spec", "listeners"), [{"name": "l%d" % i, "port": 1000 + i, "protocol": "HTTP"}
                                              for i in range(65)]), "maxItems", ("spec", "listeners")),
    ("two listeners of one name", (("spec", "listeners", "-"), {"name": "http", "port": 81, "protocol": "HTTP"}),
     "list-map-key", ("spec", "listeners", "2")),
    ("certificateRef kind ConfigMap", (("spec", "listeners", 1, "tls", "certificateRefs", 0, "kind"), "ConfigMap"),
     "enum", ("spec", "listeners", "1", "tls", "certificateRefs", "0", "kind")),
    ("certificateRef group apps", (("spec", "listeners", 1, "tls", "certificateRefs", 0, "group"), "apps"),
     "enum", ("spec", "listeners", "1", "tls", "certificateRefs", "0", "group")),
    ("tls without certificateRefs", (("spec", "listeners", 1, "tls", "certificateRefs"), []),
     "minItems", ("spec", "listeners", "1", "tls", "certificateRefs")),
    ("no spec", (("spec",), DELETE), "required", ()),
    ("unknown field in spec", (("spec", "gatewayClassName"), "x"), "additionalProperties", ("spec",)),
    ("route hostname upper case", (("spec", "routes", 0, "hostnames", 0), "App.example.com"),
     "pattern", ("spec", "routes", "0", "hostnames", "0")),
    ("route without rules", (("spec", "routes", 0, "rules"), DELETE), "required", ("spec", "routes", "0")),
    ("route with no rule", (("spec", "routes", 0, "rules"), []), "minItems", ("spec", "routes", "0", "rules")),
    ("unknown field in a rule", (R0 + ("foo",), 1), "additionalProperties", R0),
    ("weight 1000001", (B0 + ("weight",), 1000001), "maximum", B0 + ("weight",)),
    ("weight -1", (B0 + ("weight",), -1), "minimum", B0 + ("weight",)),
    ("backendRef without port", (B0 + ("port",), DELETE), "required", B0),
    ("backendRef port 0", (B0 + ("port",), 0), "minimum", B0 + ("port",)),
    ("backendRef name with a dot", (B0 + ("name",), "a.b"), "pattern", B0 + ("name",)),
    ("17 backendRefs", (R0 + ("backendRefs",), [{"name": "b%d" % i, "port": 80} for i in range(17)]),
     "maxItems", R0 + ("backendRefs",)),
    ("policy not an object", (P0, "round_robin"), "type", P0),
    ("policy unknown field", (P0, {"lb": "round_robin"}), "additionalProperties", P0),
    ("loadBalancer type random", (P0, {"loadBalancer": {"type": "random"}}), "enum", P0 + ("loadBalancer", "type")),
    ("loadBalancer type in upper case", (P0, {"loadBalancer": {"type": "RoundRobin"}}), "enum",
     P0 + ("loadBalancer", "type")),
    ("hashBy a header name with a space", (P0, {"loadBalancer": {"hashBy": "header:x a"}}), "pattern",
     P0 + ("loadBalancer", "hashBy")),
    ("hashBy ip", (P0, {"loadBalancer": {"hashBy": "ip"}}), "pattern", P0 + ("loadBalancer", "hashBy")),
    ("sessionCookieName of 129 characters", (P0, {"loadBalancer": {"sessionCookieName": "a" * 129}}),
     "maxLength", P0 + ("loadBalancer", "sessionCookieName")),
    ("affinity yes", (P0, {"loadBalancer": {"affinity": "yes"}}), "enum", P0 + ("loadBalancer", "affinity")),
    ("sessionCookieName with a ;", (P0, {"loadBalancer": {"sessionCookieName": "a;b"}}), "pattern",
     P0 + ("loadBalancer", "sessionCookieName")),
    ("healthCheck path not absolute", (P0, {"healthCheck": {"path": "healthz"}}), "pattern",
     P0 + ("healthCheck", "path")),
    ("healthCheck path with a space", (P0, {"healthCheck": {"path": "/a b"}}), "pattern",
     P0 + ("healthCheck", "path")),
    ("healthCheck interval without a unit", (P0, {"healthCheck": {"interval": "5"}}), "pattern",
     P0 + ("healthCheck", "interval")),
    ("healthCheck expectedStatus 2xx", (P0, {"healthCheck": {"expectedStatus": "2xx"}}), "pattern",
     P0 + ("healthCheck", "expectedStatus")),
    ("healthCheck expectedStatus as a number", (P0, {"healthCheck": {"expectedStatus": 200}}), "type",
     P0 + ("healthCheck", "expectedStatus")),
    ("healthCheck host with a path", (P0, {"healthCheck": {"host": "a.example.com/x"}}), "pattern",
     P0 + ("healthCheck", "host")),
    ("healthyThreshold 0", (P0, {"healthCheck": {"healthyThreshold": 0}}), "minimum",
     P0 + ("healthCheck", "healthyThreshold")),
    ("unhealthyThreshold 101", (P0, {"healthCheck": {"unhealthyThreshold": 101}}), "maximum",
     P0 + ("healthCheck", "unhealthyThreshold")),
    ("consecutiveFailures as a string", (P0, {"outlierDetection": {"consecutiveFailures": "5"}}), "type",
     P0 + ("outlierDetection", "consecutiveFailures")),
    ("maxEjectionPercent 101", (P0, {"outlierDetection": {"maxEjectionPercent": 101}}), "maximum",
     P0 + ("outlierDetection", "maxEjectionPercent")),
    ("baseEjectionTime in days", (P0, {"outlierDetection": {"baseEjectionTime": "1d"}}), "pattern",
     P0 + ("outlierDetection", "baseEjectionTime")),
    ("maxRequests -1", (P0, {"circuitBreaker": {"maxRequests": -1}}), "minimum",
     P0 + ("circuitBreaker", "maxRequests")),
    ("maxConnections 1000001", (P0, {"circuitBreaker": {"maxConnections": 1000001}}), "maximum",
     P0 + ("circuitBreaker", "maxConnections")),
    ("circuitBreaker misspelt field", (P0, {"circuitBreaker": {"maxRequest": 1}}), "additionalProperties",
     P0 + ("circuitBreaker",)),
    ("retryBudget percent 1001", (P0, {"retryBudget": {"percent": 1001}}), "maximum",
     P0 + ("retryBudget", "percent")),
    ("slowStart with a fraction", (P0, {"slowStart": "1.5s"}), "pattern", P0 + ("slowStart",)),
    ("path type Prefix (the Ingress name)", (M0 + ("path", "type"), "Prefix"), "enum", M0 + ("path", "type")),
    ("path value empty", (M0 + ("path", "value"), ""), "minLength", M0 + ("path", "value")),
    ("path value 1025 characters", (M0 + ("path", "value"), "/" + "a" * 1024), "maxLength",
     M0 + ("path", "value")),
    ("method FETCH", (M0 + ("method",), "FETCH"), "enum", M0 + ("method",)),
    ("header name with a space", (M0 + ("headers", 0, "name"), "x a"), "pattern", M0 + ("headers", "0", "name")),
    ("header match without value", (M0 + ("headers", 0, "value"), DELETE), "required", M0 + ("headers", "0")),
    ("header match type Prefix", (M0 + ("headers", 0, "type"), "Prefix"), "enum", M0 + ("headers", "0", "type")),
    ("two header matches of one name", (M0 + ("headers", "-"), {"name": "x-a", "value": "2"}),
     "list-map-key", M0 + ("headers", "1")),
    ("query match type RegularExpression", (M0 + ("queryParams",), [{"type": "RegularExpression",
                                                                       "name": "a", "value": "b"}]),
     "enum", M0 + ("queryParams", "0", "type")),
    ("9 matches", (R0 + ("matches",), [{"path": {"value": "/%d" % i}} for i in range(9)]), "maxItems",
     R0 + ("matches",)),
    ("filter type ExtensionRef", (R0 + ("filters",), [{"type": "ExtensionRef"}]), "enum",
     R0 + ("filters", "0", "type")),
    ("filter without type", (R0 + ("filters",), [{"requestMirror": MIRROR["requestMirror"]}]), "required",
     R0 + ("filters", "0")),
    ("redirect status 304", (R0 + ("filters",), [{"type": "RequestRedirect", "requestRedirect": {"statusCode": 304}}]),
     "enum", R0 + ("filters", "0", "requestRedirect", "statusCode")),
    ("redirect scheme ftp", (R0 + ("filters",), [{"type": "RequestRedirect", "requestRedirect": {"scheme": "ftp"}}]),
     "enum", R0 + ("filters", "0", "requestRedirect", "scheme")),
    ("redirect to a wildcard host", (R0 + ("filters",), [{"type": "RequestRedirect",
                                                          "requestRedirect": {"hostname": "*.example.com"}}]),
     "pattern", R0 + ("filters", "0", "requestRedirect", "hostname")),
    ("rewrite path type Prefix", (R0 + ("filters",), [{"type": "URLRewrite", "urlRewrite": {
        "path": {"type": "Prefix", "replacePrefixMatch": "/"}}}]),
     "enum", R0 + ("filters", "0", "urlRewrite", "path", "type")),
    ("mirror percent 101", (R0 + ("filters",), [{"type": "RequestMirror", "requestMirror": {
        "backendRef": {"name": "m", "port": 80}, "percent": 101}}]),
     "maximum", R0 + ("filters", "0", "requestMirror", "percent")),
    ("mirror without backendRef port", (R0 + ("filters",), [{"type": "RequestMirror", "requestMirror": {
        "backendRef": {"name": "m"}}}]), "required", R0 + ("filters", "0", "requestMirror", "backendRef")),
    ("header modifier removing a header twice", (R0 + ("filters",), [{"type": "RequestHeaderModifier",
                                                                      "requestHeaderModifier": {"remove": ["a", "a"]}}]),
     "list-set", R0 + ("filters", "0", "requestHeaderModifier", "remove", "1")),
    ("header modifier setting a header twice", (R0 + ("filters",), [{"type": "ResponseHeaderModifier",
                                                                     "responseHeaderModifier": {"set": [
                                                                         {"name": "a", "value": "1"},
                                                                         {"name": "a", "value": "2"}]}}]),
     "list-map-key", R0 + ("filters", "0", "responseHeaderModifier", "set", "1")),
    ("timeout without a unit", (R0 + ("timeouts",), {"request": "10"}), "pattern", R0 + ("timeouts", "request")),
    ("timeout with a fraction", (R0 + ("timeouts",), {"backendRequest": "1.5s"}), "pattern",
     R0 + ("timeouts", "backendRequest")),
    ("timeout in days", (R0 + ("timeouts",), {"request": "1d"}), "pattern", R0 + ("timeouts", "request")),
    ("retry attempts 11", (R0 + ("retry",), {"attempts": 11}), "maximum", R0 + ("retry", "attempts")),
    ("retry without attempts", (R0 + ("retry",), {"codes": [503]}), "required", R0 + ("retry",)),
    ("retry code 404", (R0 + ("retry",), {"attempts": 1, "codes": [404]}), "minimum", R0 + ("retry", "codes", "0")),
    ("retry code given twice", (R0 + ("retry",), {"attempts": 1, "codes": [503, 503]}), "list-set",
     R0 + ("retry", "codes", "1")),
    ("retry backoff 1 second", (R0 + ("retry",), {"attempts": 1, "backoff": "1 s"}), "pattern",
     R0 + ("retry", "backoff")),
    ("condition status Yes", (("status",), {"conditions": [{"type": "Accepted", "status": "Yes", "reason": "Accepted",
                                                            "message": "", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}),
     "enum", ("status", "conditions", "0", "status")),
    ("condition time not RFC 3339", (("status",), {"conditions": [{"type": "Accepted", "status": "True",
                                                                   "reason": "Accepted", "message": "",
                                                                   "lastTransitionTime": "yesterday"}]}),
     "format", ("status", "conditions", "0", "lastTransitionTime")),
    ("condition without reason", (("status",), {"conditions": [{"type": "Accepted", "status": "True", "message": "",
                                                                "lastTransitionTime": "2024-01-01T00:00:00Z"}]}),
     "required", ("status", "conditions", "0")),
    ("observedGeneration negative", (("status",), {"observedGeneration": -1}), "minimum",
     ("status", "observedGeneration")),
    ("listener status without attachedRoutes", (("status",), {"listeners": [{"name": "http", "conditions": []}]}),
     "required", ("status", "listeners", "0")),
]


# ---------------------------------------------------------------------------------------

def structural_problems(schema):
    """What keeps schema from being a structural schema within the apiserver's rules and our
    bounds (every node typed and described, bounded lists and strings, ...)."""
    problems = []
    for path, s in walk_schema(schema):
        where = fmt(path)
        unknown = set(s) - ALLOWED_KEYS
        if unknown:
            problems.append("%s: keys not allowed here: %s" % (where, sorted(unknown)))
        t = s.get("type")
        if t not in ("object", "array", "string", "integer", "boolean"):
            problems.append("%s: type %r (number is left out on purpose: the CEL driver maps "
                            "JSON numbers to ints)" % (where, t))
        if path and path[-1] != "[]" and not s.get("description") and path != ("metadata",):
            problems.append("%s: no description" % where)
        if t == "object":
            if path == ("metadata",):
                if set(s) != {"type"}:
                    problems.append("metadata: only `type: object` (the apiserver validates it)")
                continue
            if "properties" not in s:
                problems.append("%s: object without properties" % where)
            for r in s.get("required", []):
                if r not in s.get("properties", {}):
                    problems.append("%s: required %r is not a property" % (where, r))
                elif "default" in s["properties"][r]:
                    problems.append("%s: %r has a default, so it need not be required" % (where, r))
        if t == "array":
            if "items" not in s:
                problems.append("%s: array without items" % where)
            if "maxItems" not in s:
                problems.append("%s: array without maxItems" % where)
            lt = s.get("x-kubernetes-list-type")
            if lt not in (None, "atomic", "set", "map"):
                problems.append("%s: list-type %r" % (where, lt))
            if lt == "map":
                items = s["items"]
                if items.get("type") != "object":
                    problems.append("%s: list-type map of non-objects" % where)
                for k in s.get("x-kubernetes-list-map-keys") or [None]:
                    if k not in items.get("properties", {}):
                        problems.append("%s: list-map key %r is not a property" % (where, k))
                    elif k not in items.get("required", []) and "default" not in items["properties"][k]:
                        problems.append("%s: list-map key %r neither required nor defaulted" % (where, k))
            elif "x-kubernetes-list-map-keys" in s:
                problems.append("%s: list-map-keys without list-type map" % where)
            if lt == "set" and s["items"].get("type") in ("object", "array"):
                problems.append("%s: list-type set of non-scalars" % where)
        if t == "string" and "maxLength" not in s and "enum" not in s and s.get("format") != "date-time":
            if path not in (("apiVersion",), ("kind",)):
                problems.append("%s: string without maxLength or enum" % where)
        if t == "integer":
            if "minimum" not in s and "enum" not in s:
                problems.append("%s: integer without minimum" % where)
            if path[0] == "spec" and "maximum" not in s and "enum" not in s:
                problems.append("%s: spec integer without maximum" % where)
        if "pattern" in s:
            try:
                re.compile(s["pattern"])
            except re.error as e:
                problems.append("%s: pattern does not compile: %s" % (where, e))
        if "default" in s:
            errs = list(jsonschema.Draft7Validator(to_jsonschema(s), format_checker=FORMATS)
                        .iter_errors(s["default"]))
            if errs:
                problems.append("%s: default does not validate: %s" % (where, errs[0].message))
        for v in s.get("x-kubernetes-validations", []):
            if set(v) - {"rule", "message"} or not v.get("rule") or not v.get("message"):
                problems.append("%s: validation needs exactly rule and message: %r" % (where, v))
    return problems


def cel_cost_problems(schema, rules):
    """A conservative bound of the apiserver's estimate: one evaluation costs at most
    (rule length) x (macros in the rule) x (largest maxItems at or below the rule's node) ^
    (deepest nesting of macros); each instance of the node counts (the product of its
    enclosing lists' maxItems). Returns the rules over the per-rule limit and the CRD's
    total when over the per-CRD limit."""
    problems = []
    total, lines = 0, []
    for p, rule, _ in rules:
        node = schema
        card = 1
        for part in p:
            if part == "[]":
                card *= node["maxItems"]
                node = node["items"]
            else:
                node = node["properties"][part]
        sub_max = max([s.get("maxItems", 1) for _, s in walk_schema(node)] + [1])
        macros, depth = macro_nesting(rule)
        per_eval = (len(rule) + 1) * max(macros, 1) * sub_max ** depth
        if per_eval > PER_RULE_COST_LIMIT:
            problems.append("%s: %s: cost %d" % (fmt(p), rule, per_eval))
        total += per_eval * card
        lines.append((per_eval * card, fmt(p), rule))
    if total > PER_CRD_COST_LIMIT:
        problems.append("total %d, largest: %s" % (total, sorted(lines)[-3:]))
    return problems


class CrdStructureTest(unittest.TestCase):
    """(a) the CRD is a structural schema within the apiserver's rules and limits."""

    def test_names_and_version(self):
        self.assertEqual(CRD["apiVersion"], "apiextensions.k8s.io/v1")
        self.assertEqual(CRD["kind"], "CustomResourceDefinition")
        spec = CRD["spec"]
        self.assertEqual(CRD["metadata"]["name"], "gateways.strait.dev")
        self.assertEqual(spec["group"], "strait.dev")
        self.assertEqual(spec["scope"], "Namespaced")
        n = spec["names"]
        self.assertEqual((n["kind"], n["plural"], n["singular"], n["listKind"]),
                         ("Gateway", "gateways", "gateway", "GatewayList"))
        self.assertEqual(n["shortNames"], ["sgw"])
        self.assertEqual(n["categories"], ["strait"])
        self.assertEqual(len(spec["versions"]), 1)
        self.assertEqual((VERSION["name"], VERSION["served"], VERSION["storage"]), ("v1alpha1", True, True))
        self.assertEqual(VERSION["subresources"], {"status": {}})

    def test_printer_columns_exist_in_the_schema(self):
        cols = VERSION["additionalPrinterColumns"]
        self.assertEqual([c["name"] for c in cols], ["Accepted", "Programmed", "Listeners", "Routes", "Age"])
        for c in cols:
            self.assertIn(c["type"], ("string", "integer", "number", "boolean", "date"))
            path = re.sub(r"\[\?\(@\.type==\"[A-Za-z]+\"\)\]", "[*]", c["jsonPath"])
            if path == ".metadata.creationTimestamp":
                continue
            node = SCHEMA
            for part in path.lstrip(".").split("."):
                key, arr = (part[:-3], True) if part.endswith("[*]") else (part, False)
                self.assertIn(key, node.get("properties", {}), c["jsonPath"])
                node = node["properties"][key]
                if arr:
                    self.assertEqual(node["type"], "array", c["jsonPath"])
                    node = node["items"]

    def test_structural(self):
        problems = structural_problems(SCHEMA)
        self.assertEqual(problems, [], "\n".join(problems))

    def test_cel_rules_compile_and_name_no_reserved_word(self):
        self.assertGreater(len(RULES), 30)
        errors, _ = cel_run([rule for _, rule, _ in RULES], [])
        bad = ["%s: %s: %s" % (fmt(p), rule, e) for (p, rule, _), e in zip(RULES, errors) if e]
        self.assertEqual(bad, [], "\n".join(bad))
        for p, rule, _ in RULES:
            # field accesses (.name), not the CEL strings in the rule
            code = re.sub(r"r?\"\"\".*?\"\"\"|'(?:\\.|[^'\\])*'", "''", rule)
            for field in re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)", code):
                self.assertNotIn(field, CEL_RESERVED, "%s: %s (write __%s__)" % (fmt(p), rule, field))

    def test_cel_cost_within_the_apiserver_limits(self):
        """A conservative bound of the apiserver's estimate: one evaluation costs at most
        (rule length) x (macros in the rule) x (largest maxItems at or below the rule's node) ^
        (deepest nesting of macros); each instance of the node counts (the product of its
        enclosing lists' maxItems)."""
        problems = cel_cost_problems(SCHEMA, RULES)
        self.assertEqual(problems, [], "\n".join(problems))


class ExamplesTest(unittest.TestCase):
    """(b) + (c): every example validates and passes every CEL rule."""

    def test_examples_exist_and_are_complete(self):
        ex = examples()
        for name in ("canary-weights.yaml", "header-routing.yaml", "redirect.yaml", "rewrite.yaml",
                     "mirror.yaml", "retries-timeouts.yaml", "https.yaml"):
            self.assertIn(name, ex)
        for name, docs in ex.items():
            with open(os.path.join(EXAMPLES_DIR, name)) as f:
                self.assertTrue(f.readline().startswith("# "), "%s: no comment on top" % name)
            gws = [d for d in docs if d.get("kind") == "Gateway"]
            self.assertEqual(len(gws), 1, name)
            services = {d["metadata"]["name"] for d in docs if d.get("kind") == "Service"}
            wanted = set()
            for r in gws[0]["spec"].get("routes", []):
                for rule in r["rules"]:
                    wanted |= {b["name"] for b in rule.get("backendRefs", []) if "namespace" not in b}
                    wanted |= {f["requestMirror"]["backendRef"]["name"] for f in rule.get("filters", [])
                               if f["type"] == "RequestMirror"}
            self.assertEqual(wanted - services, set(), "%s: Services missing" % name)
            for d in docs:
                self.assertIn(d.get("apiVersion"), ("strait.dev/v1alpha1", "v1"), name)

    def test_examples_validate(self):
        for name, docs in examples().items():
            for d in docs:
                if d["kind"] != "Gateway":
                    continue
                with self.subTest(example=name):
                    self.assertEqual(schema_errors(d), [])
                    defaulted = apply_defaults(copy.deepcopy(d), SCHEMA)
                    self.assertEqual(schema_errors(defaulted), [], "after defaulting")

    def test_defaults_applied_like_the_apiserver(self):
        g = apply_defaults({"spec": {"listeners": [{"name": "h", "port": 80, "protocol": "HTTP"}],
                                     "routes": [{"rules": [{"backendRefs": [{"name": "a", "port": 80}]},
                                                           {"matches": [{"headers": [{"name": "h", "value": "v"}]}]}]}]}},
                           SCHEMA)
        rules = g["spec"]["routes"][0]["rules"]
        self.assertEqual(rules[0]["matches"], [{"path": {"type": "PathPrefix", "value": "/"}}])
        self.assertEqual(rules[0]["backendRefs"][0]["weight"], 1)
        self.assertEqual(rules[1]["matches"][0]["path"], {"type": "PathPrefix", "value": "/"})
        self.assertEqual(rules[1]["matches"][0]["headers"][0]["type"], "Exact")

    def test_examples_pass_every_cel_rule(self):
        named = [(name, d) for name, docs in examples().items() for d in docs if d["kind"] == "Gateway"]
        verdicts = cel_verdicts([apply_defaults(copy.deepcopy(d), SCHEMA) for _, d in named])
        reached = set()
        for (name, _), v in zip(named, verdicts):
            reached |= set(v)
            with self.subTest(example=name):
                self.assertEqual({m: r for m, r in v.items() if any(x is not True for x in r)}, {})
        # the examples between them reach most rules' fields (the bad-variant table the rest)
        self.assertGreaterEqual(len(reached), len(set(MESSAGES)) // 2, sorted(set(MESSAGES) - reached))


class CelRulesTest(unittest.TestCase):
    """(c): each bad variant fails exactly its intended rule(s), and passes once fixed."""

    def test_bad_variants_fail_the_intended_rule_only(self):
        docs = []
        for name, bad, fixed, _ in CEL_CASES:
            for d in (bad, fixed):
                # structurally valid, so only the CEL rule can catch it
                self.assertEqual(schema_errors(d), [], name)
                docs.append(apply_defaults(copy.deepcopy(d), SCHEMA))
        verdicts = cel_verdicts(docs)
        for i, (name, _, _, want) in enumerate(CEL_CASES):
            with self.subTest(case=name):
                bad_v, fixed_v = verdicts[2 * i], verdicts[2 * i + 1]
                self.assertTrue(want <= set(MESSAGES), "unknown message in %r" % (want,))
                self.assertEqual(failed_rules(bad_v), want, "bad variant")
                for m in want:  # false, not an evaluation error
                    self.assertIn(False, bad_v[m], m)
                self.assertEqual(failed_rules(fixed_v), set(), "fixed variant")

    def test_every_rule_has_a_bad_variant(self):
        covered = set().union(*(want for _, _, _, want in CEL_CASES))
        self.assertEqual(set(MESSAGES) - covered, set())

    def test_backend_policy_passes(self):
        for pol in (FULL_POLICY, {}, {"loadBalancer": {"hashBy": "source-ip"}},
                    {"healthCheck": {"path": "/", "host": "App.Example.com"}}, {"slowStart": "0s"}):
            with self.subTest(policy=pol):
                g = edit(set_policy(pol))
                self.assertEqual(schema_errors(g), [])
                self.assertEqual(failed_rules(cel_verdicts([apply_defaults(g, SCHEMA)])[0]), set())

    def test_base_passes(self):
        g = base()
        self.assertEqual(schema_errors(g), [])
        self.assertEqual(failed_rules(cel_verdicts([apply_defaults(g, SCHEMA)])[0]), set())


class SchemaRejectsTest(unittest.TestCase):
    """(d): each bad manifest is rejected by the structural schema, for its reason only."""

    def test_bad_manifests(self):
        for name, change, validator, path in SCHEMA_CASES:
            with self.subTest(case=name):
                errs = schema_errors(edit(_at(change)))
                self.assertEqual([(v, p) for v, p, _ in errs], [(validator, tuple(str(x) for x in path))],
                                 errs)

    def test_unknown_field_in_example_is_rejected(self):
        g = copy.deepcopy(examples()["canary-weights.yaml"][0])
        g["spec"]["routes"][0]["rules"][0]["backendRefs"][0]["wieght"] = 90
        self.assertEqual([e[0] for e in schema_errors(g)], ["additionalProperties"])


if __name__ == "__main__":
    unittest.main()
