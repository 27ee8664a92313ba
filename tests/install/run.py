#!/usr/bin/env python3
"""Install checks (issue 8): the Helm chart, the plain manifests, the CRDs and the Dockerfile,
offline. Part of `make test` (tools/run-tests.sh, plain build only); run alone with

  python3 tests/install/run.py [--bin build] [-k SUBSTRING ...]

Prints one line per check and closes with "install: N passed, N failed"; writes "N M" to
BUILD/install.counts; exits non-zero on any failure. Needs node/npm and python3-yaml +
python3-jsonschema; fetches from the npm registry once, into build/tools/: Helm 3
(tools/helm.sh), kubernetes-models (tools/k8s-validate.mjs), the CEL library (tools/cel.sh,
through tests/e2e/test_crd_schema.py) and dockerfilelint. Offline after that.

What it checks:
  - `helm lint --strict` of charts/strait with the defaults and with each
    tests/install/values-*.yaml;
  - `helm template` of the same, plus a 53-character release name (Helm's longest) and an
    older Kubernetes (--kube-version): every rendered object validated offline (built-in kinds
    by tools/k8s-validate.mjs: kubernetes-models' schemas, unknown fields rejected, names,
    labels and port names as the apiserver checks them; Gateways by the CRD's openAPIV3Schema
    and CEL rules, with tests/e2e/test_crd_schema.py's validator; ServiceMonitor by a minimal
    structural check; any other kind is an error). Manifests the chart puts into a ConfigMap
    (file mode) are validated the same way. Then the objects must fit together: Services,
    PodDisruptionBudget and ServiceMonitor select the pods / the Service, target ports and probe
    ports exist, bindings name rendered roles and service accounts, the HPA targets the
    workload, no two objects share kind+namespace+name, and every command-line flag the chart
    passes is one the binary's --help lists;
  - every manifest under manifests/ (examples, install.yaml) validated the same way;
  - charts/strait/crds/*.yaml byte-equal to crds/*.yaml (crds/ is the single source);
  - manifests/install.yaml equal to a fresh tools/render-install.sh;
  - docs/values.md names every value of charts/strait/values.yaml;
  - RBAC (ControllerRbac): the real BIN/strait-controller, run with the controller args the
    chart renders against the stand-in API server (tests/kube-apiserver), with the defaults,
    controller.watchNamespace, publishService.pathOverride into another namespace and
    publishStatusAddress: every request it makes (lists, watches, Lease, Ingress/Gateway
    status, Events) is allowed by the rendered RBAC bound to its ServiceAccount, mapped to
    verb/resource/namespace/name as kube-apiserver does, and every granted rule is used by
    one of them (least privilege; no wildcards). About a second per values set;
  - the Dockerfile: dockerfilelint (npm, pinned) reports nothing; its stages, user, entrypoint,
    labels, packages (every shared library the binaries in BUILD need comes from a package the
    run stage installs) and .dockerignore; `make image` picks docker, podman or buildah, or
    fails saying none is there (stub engines on PATH: no engine runs here).
"""
import argparse
import base64
import copy
import fnmatch
import glob
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import test_crd_schema as crd  # noqa: E402  (our CRDs' validators and CEL evaluator)
import yaml  # noqa: E402  (test_crd_schema made Debian's python3-yaml importable)

CHART = os.path.join(ROOT, "charts", "strait")  # --chart
TOOLS = os.environ.get("STRAIT_TOOLS_DIR", os.path.join(ROOT, "build", "tools"))
K8S_VALIDATE = os.path.join(ROOT, "tools", "k8s-validate.mjs")
DOCKERFILELINT = "dockerfilelint@1.8.0"
BIN = os.path.join(ROOT, "build")     # --bin
VALUES_FILES = sorted(glob.glob(os.path.join(HERE, "values-*.yaml")))
# Helm's longest release name: object names built from it must still be valid (63 characters)
LONG_RELEASE = "release-" + "x" * 45
assert len(LONG_RELEASE) == 53
OLD_KUBE = "1.28.0"
BUILTIN_IMAGE_CMDS = ("/usr/local/bin/strait-controller", "/usr/local/bin/strait-dataplane")


def run(cmd, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("timeout", 300)
    return subprocess.run(cmd, cwd=kw.pop("cwd", ROOT), **kw)


def out_of(p):
    return (p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")).strip()


_helm = None


def helm():
    global _helm
    if _helm is None:
        p = run([os.path.join(ROOT, "tools", "helm.sh")])
        if p.returncode != 0:
            raise AssertionError("tools/helm.sh failed: %s" % out_of(p))
        _helm = p.stdout.decode().strip().splitlines()[-1]
    return _helm


def values_args(values):
    return ["-f", values] if values else []


def label(values):
    return os.path.basename(values) if values else "defaults"


_renders = {}


def render(values=None, release="strait", namespace="strait", extra=()):
    """[(where, object)] of `helm template`; where = "VALUES: templates/x.yaml#N"."""
    key = (values, release, namespace, tuple(extra))
    if key not in _renders:
        p = run([helm(), "template", release, CHART, "--namespace", namespace]
                + values_args(values) + list(extra))
        if p.returncode != 0:
            raise AssertionError("helm template (%s) failed:\n%s" % (label(values), out_of(p)))
        _renders[key] = split_render(p.stdout.decode(), label(values) + (
            " release %s" % release if release != "strait" else "") + "".join(" " + e for e in extra))
    return _renders[key]


def split_render(text, what):
    docs, n = [], {}
    for chunk in re.split(r"(?m)^---\s*$", text):
        m = re.search(r"(?m)^# Source: (\S+)", chunk)
        src = m.group(1).split("/", 1)[-1] if m else "?"
        obj = yaml.safe_load(chunk)
        if obj is None:
            continue
        i = n.get(src, 0)
        n[src] = i + 1
        docs.append(("%s: %s#%d" % (what, src, i), obj))
    return docs


def load_manifest(path):
    with open(path) as f:
        rel = os.path.relpath(path, ROOT)
        return [("%s#%d" % (rel, i), d) for i, d in enumerate(yaml.safe_load_all(f)) if d is not None]


# ---------------------------------------------------------------------------------------
# Validation of objects

# our CRDs (crds/*.yaml), by kind; they share one API group
CRDS = {c.kind: c for c in (crd.Crd(f) for f in sorted(glob.glob(os.path.join(ROOT, "crds", "*.yaml"))))}
CRD_GROUP = crd.CRD["spec"]["group"]


def is_gateway(obj):
    """Whether obj is one of our CRDs' objects (Gateway, AuthorizationPolicy)."""
    return isinstance(obj, dict) and str(obj.get("apiVersion", "")).startswith(CRD_GROUP + "/")


def gateway_errors(items):
    """{where: [errors]} for our CRDs' objects: structural schema, then CEL after defaulting."""
    out, cel_docs = {}, {}
    for where, obj in items:
        errs = out.setdefault(where, [])
        c = CRDS.get(obj.get("kind"))
        if not c or obj["apiVersion"].split("/", 1)[1] not in c.versions:
            errs.append("unknown kind: %s %s (the CRDs serve %s)" % (
                obj.get("apiVersion"), obj.get("kind"),
                ", ".join("%s %s" % (k, ", ".join(CRD_GROUP + "/" + v for v in sorted(x.versions)))
                          for k, x in sorted(CRDS.items()))))
            continue
        errs += ["%s: %s (%s)" % ("/" + "/".join(p), msg, v) for v, p, msg in crd.schema_errors(obj, c)]
        defaulted = crd.apply_defaults(copy.deepcopy(obj), c.schema)
        if not errs:
            errs += ["after defaulting: %s: %s" % ("/" + "/".join(p), msg)
                     for _, p, msg in crd.schema_errors(defaulted, c)]
        if not errs:
            cel_docs.setdefault(c.kind, []).append((where, defaulted))
    for kind, docs in cel_docs.items():
        for (where, _), verdict in zip(docs, crd.cel_verdicts([d for _, d in docs], CRDS[kind])):
            out[where] += ["CEL rule failed: %s" % m for m in sorted(crd.failed_rules(verdict))]
    return out


def builtin_errors(items):
    """{where: [errors]} from tools/k8s-validate.mjs (installs kubernetes-models once)."""
    if not items:
        return {}
    p = run(["node", K8S_VALIDATE], input=json.dumps(
        [{"where": w, "object": o} for w, o in items]).encode())
    if p.returncode not in (0, 1):
        raise AssertionError("tools/k8s-validate.mjs failed (rc %d): %s" % (p.returncode, out_of(p)))
    return {r["where"]: r["errors"] for r in json.loads(p.stdout)}


def embedded_manifests(items):
    """Manifests inside rendered ConfigMaps (file mode: data keys NAME.yaml/.yml)."""
    out = []
    for where, obj in items:
        if obj.get("kind") == "ConfigMap" and obj.get("apiVersion") == "v1":
            for key, text in sorted((obj.get("data") or {}).items()):
                if key.endswith((".yaml", ".yml")):
                    try:
                        docs = list(yaml.safe_load_all(text))
                    except yaml.YAMLError as e:
                        out.append(("%s data[%s]" % (where, key), {"__yaml_error__": str(e)}))
                        continue
                    out += [("%s data[%s]#%d" % (where, key, i), d) for i, d in enumerate(docs) if d]
    return out


def validation_errors(items):
    """Every problem of every object, as "where (Kind name): error" lines."""
    items = list(items)
    items += embedded_manifests(items)
    bad = [(w, "not a YAML mapping" if not isinstance(o, dict) else "YAML: " + o["__yaml_error__"])
           for w, o in items if not isinstance(o, dict) or "__yaml_error__" in o]
    items = [(w, o) for w, o in items if isinstance(o, dict) and "__yaml_error__" not in o]
    errs = builtin_errors([(w, o) for w, o in items if not is_gateway(o)])
    errs.update(gateway_errors([(w, o) for w, o in items if is_gateway(o)]))
    lines = ["%s: %s" % b for b in bad]
    for w, o in items:
        who = "%s %s" % (o.get("kind"), (o.get("metadata") or {}).get("name"))
        lines += ["%s (%s): %s" % (w, who, e) for e in errs.get(w, ["not validated"])]
    return lines


# ---------------------------------------------------------------------------------------
# Do the rendered objects fit together?

_usage = {}


def binary_flags(name):
    if name not in _usage:
        path = os.path.join(BIN, name)
        if not os.access(path, os.X_OK):
            raise AssertionError("%s not built (make, or --bin DIR)" % path)
        p = run([path, "--help"], timeout=10)
        _usage[name] = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", out_of(p)))
    return _usage[name]


def matches(selector, labels):
    return bool(selector) and all((labels or {}).get(k) == v for k, v in selector.items())


def consistency_errors(items, check_flags=True):
    errs = []
    by_kind = {}
    seen = {}
    for where, o in items:
        md = o.get("metadata") or {}
        key = (o.get("apiVersion", "").split("/")[0] if "/" in o.get("apiVersion", "") else "",
               o.get("kind"), md.get("namespace"), md.get("name"))
        if key in seen:
            errs.append("%s: %s %s also rendered by %s" % (where, o.get("kind"), md.get("name"), seen[key]))
        seen[key] = where
        by_kind.setdefault(o.get("kind"), []).append((where, o))
    workloads = by_kind.get("Deployment", []) + by_kind.get("DaemonSet", []) + by_kind.get("StatefulSet", [])
    pods = []  # (where, workload, pod labels, pod spec)
    for where, w in workloads:
        tpl = w.get("spec", {}).get("template", {})
        pods.append((where, w, (tpl.get("metadata") or {}).get("labels") or {}, tpl.get("spec") or {}))
    sa_names = {(o.get("metadata") or {}).get("name") for _, o in by_kind.get("ServiceAccount", [])}

    for where, w, labels, spec in pods:
        ports = {}
        for c in spec.get("containers", []):
            for p in c.get("ports", []) or []:
                ports[p.get("name")] = p.get("containerPort")
        for c in spec.get("containers", []):
            own = {p.get("name") for p in c.get("ports", []) or []}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
                if isinstance(port, str) and port not in own:
                    errs.append("%s: container %s %s port %r is not one of its ports %s" % (
                        where, c.get("name"), probe, port, sorted(own)))
            cmd = (c.get("command") or [])[:1]
            binary = os.path.basename(cmd[0]) if cmd else None
            if binary and cmd[0] not in BUILTIN_IMAGE_CMDS:
                errs.append("%s: container %s runs %s, which the image does not hold (%s)" % (
                    where, c.get("name"), cmd[0], ", ".join(BUILTIN_IMAGE_CMDS)))
            elif binary and check_flags:
                known = binary_flags(binary)
                for a in c.get("args", []) or []:
                    if isinstance(a, str) and a.startswith("--"):
                        flag = a.split("=", 1)[0]
                        if flag not in known:
                            errs.append("%s: container %s passes %s, which %s --help does not list" % (
                                where, c.get("name"), flag, binary))
        san = spec.get("serviceAccountName")
        if sa_names and san and san not in sa_names:
            errs.append("%s: serviceAccountName %r is not among the rendered ServiceAccounts %s" % (
                where, san, sorted(sa_names)))

    # the injector's MutatingWebhookConfiguration: the controller keeps its caBundle (the
    # chart cannot: on a fresh install the root does not exist at render time)
    hooks = {(o.get("metadata") or {}).get("name") for _, o in by_kind.get("MutatingWebhookConfiguration", [])}
    kept = set()
    for where, w, labels, spec in pods:
        for c in spec.get("containers", []):
            for a in c.get("args", []) or []:
                if isinstance(a, str) and a.startswith("--mesh-webhook-config="):
                    kept.add(a.split("=", 1)[1])
                    if a.split("=", 1)[1] not in hooks:
                        errs.append("%s: container %s passes %s, no such MutatingWebhookConfiguration is rendered %s"
                                    % (where, c.get("name"), a, sorted(hooks)))
    for name in sorted(hooks - kept):
        errs.append("MutatingWebhookConfiguration %s: no container passes --mesh-webhook-config=%s "
                    "(its caBundle would stay what the render had)" % (name, name))

    services = by_kind.get("Service", [])
    for where, s in services:
        sel = (s.get("spec") or {}).get("selector")
        if not sel:
            continue
        hit = [p for p in pods if matches(sel, p[2])]
        if not hit:
            errs.append("%s: Service selector %s matches no rendered pod template" % (where, sel))
            continue
        for _, _, _, spec in hit:
            names = {p.get("name"): p.get("containerPort") for c in spec.get("containers", [])
                     for p in c.get("ports", []) or []}
            for p in s["spec"].get("ports", []):
                tp = p.get("targetPort", p.get("port"))
                if isinstance(tp, str) and tp not in names:
                    errs.append("%s: Service port %s targets %r, no container port of that name %s" % (
                        where, p.get("name"), tp, sorted(names)))
                elif isinstance(tp, int) and tp not in names.values() and not spec.get("hostNetwork"):
                    errs.append("%s: Service port %s targets %d, no container listens there" % (
                        where, p.get("name"), tp))

    for where, pdb in by_kind.get("PodDisruptionBudget", []):
        sel = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels")
        if not any(matches(sel, p[2]) for p in pods):
            errs.append("%s: PodDisruptionBudget selector %s matches no rendered pod template" % (where, sel))

    for where, hpa in by_kind.get("HorizontalPodAutoscaler", []):
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if not any(w.get("kind") == ref.get("kind") and w["metadata"].get("name") == ref.get("name")
                   for _, w, _, _ in pods):
            errs.append("%s: HPA targets %s %s, not rendered" % (where, ref.get("kind"), ref.get("name")))

    roles = {(o["kind"], o["metadata"].get("name")) for k in ("Role", "ClusterRole")
             for _, o in by_kind.get(k, [])}
    for k in ("RoleBinding", "ClusterRoleBinding"):
        for where, b in by_kind.get(k, []):
            ref = b.get("roleRef") or {}
            if (ref.get("kind"), ref.get("name")) not in roles:
                errs.append("%s: roleRef %s %s is not rendered" % (where, ref.get("kind"), ref.get("name")))
            for sub in b.get("subjects") or []:
                if sub.get("kind") == "ServiceAccount" and sa_names and sub.get("name") not in sa_names:
                    errs.append("%s: subject ServiceAccount %s is not rendered" % (where, sub.get("name")))

    for where, sm in by_kind.get("ServiceMonitor", []):
        spec = sm.get("spec") or {}
        sel = (spec.get("selector") or {}).get("matchLabels")
        hit = [s for _, s in services if matches(sel, (s.get("metadata") or {}).get("labels"))]
        if not hit:
            errs.append("%s: ServiceMonitor selector %s matches no rendered Service" % (where, sel))
        for e in spec.get("endpoints") or []:
            if e.get("port") and not any(e["port"] in {p.get("name") for p in s["spec"].get("ports", [])}
                                         for s in hit):
                errs.append("%s: ServiceMonitor endpoint port %r is no port of the selected Service" % (
                    where, e.get("port")))
    return errs


# ---------------------------------------------------------------------------------------
# values.yaml leaves

def values_leaves(path):
    """Dotted names of every value of values.yaml: scalars, lists, empty maps, and maps that a
    "# --" comment documents as a whole (e.g. resources, nodeSelector)."""
    with open(path) as f:
        text = f.read()
    lines = text.splitlines()
    root = yaml.compose(text)

    def documented(key_node):
        i = key_node.start_mark.line - 1
        while i >= 0 and lines[i].strip().startswith("#"):
            if lines[i].strip().startswith("# --"):
                return True
            i -= 1
        return False

    out = []

    def walk(node, prefix):
        for k, v in node.value:
            name = prefix + k.value
            if isinstance(v, yaml.MappingNode) and v.value and not documented(k):
                walk(v, name + ".")
            else:
                out.append(name)
    if root is not None:
        walk(root, "")
    return out


# ---------------------------------------------------------------------------------------
# Dockerfile

def dockerfile_stages(path):
    """[(FROM line args, [(instruction, argument text)])] with continuations joined."""
    with open(path) as f:
        text = re.sub(r"\\\n", " ", f.read())
    stages = []
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        ins, _, arg = s.partition(" ")
        ins = ins.upper()
        if ins == "FROM":
            stages.append((arg.split(), []))
        elif stages:
            stages[-1][1].append((ins, arg.strip()))
    return stages


def apt_packages(instructions):
    pkgs = set()
    for ins, arg in instructions:
        if ins == "RUN":
            for m in re.finditer(r"apt-get install((?:\s+[^&|;]+)+)", arg):
                pkgs |= {w for w in m.group(1).split() if not w.startswith("-")}
    return pkgs


_dfl = None


def dockerfilelint():
    """Path of dockerfilelint's CLI, installed once into build/tools/dockerfilelint/."""
    global _dfl
    if _dfl is None:
        dest = os.path.join(TOOLS, "dockerfilelint")
        cli = os.path.join(dest, "node_modules", "dockerfilelint", "bin", "dockerfilelint")
        pj = os.path.join(dest, "node_modules", "dockerfilelint", "package.json")
        want = DOCKERFILELINT.rsplit("@", 1)[1]
        if not (os.path.isfile(pj) and json.load(open(pj)).get("version") == want):
            part = "%s.%d" % (dest, os.getpid())
            shutil.rmtree(part, ignore_errors=True)
            os.makedirs(part)
            sys.stderr.write("install: fetching %s from the npm registry\n" % DOCKERFILELINT)
            p = run(["npm", "install", "--silent", "--no-save", "--no-audit", "--no-fund",
                     "--no-package-lock", DOCKERFILELINT], cwd=part)
            if p.returncode != 0:
                shutil.rmtree(part, ignore_errors=True)
                raise AssertionError("npm install %s failed: %s" % (DOCKERFILELINT, out_of(p)))
            shutil.rmtree(dest, ignore_errors=True)
            os.rename(part, dest)  # same folder, so a concurrent run never sees half an install
        _dfl = cli
    return _dfl


def make_image(path_dir, *args):
    env = dict(os.environ, PATH=path_dir)  # only the stubs and the tools linked there
    return run(["make", "--no-print-directory", "image"] + list(args), env=env, timeout=60)


def stub(dirname, name, script):
    p = os.path.join(dirname, name)
    with open(p, "w") as f:
        f.write("#!/bin/sh\n" + script)
    os.chmod(p, 0o755)


# ---------------------------------------------------------------------------------------
# The checks

def no_problems(self, problems):
    if problems:
        self.fail("%d problem(s):\n%s" % (len(problems), "\n".join(problems)))


unittest.TestCase.no_problems = no_problems


class HelmLint(unittest.TestCase):
    """helm lint --strict, defaults and each values file (added below)."""

    def lint(self, values):
        p = run([helm(), "lint", "--strict", CHART] + values_args(values))
        self.assertEqual(p.returncode, 0, "helm lint --strict (%s):\n%s" % (label(values), out_of(p)))


class HelmTemplate(unittest.TestCase):
    """helm template, then every object validated and the objects checked together."""

    def check(self, values, **kw):
        items = render(values, **kw)
        self.assertTrue(items, "nothing rendered")
        problems = validation_errors(items) + consistency_errors(items)
        self.no_problems(problems)
        return items

    def test_long_release_name(self):
        self.check(None, release=LONG_RELEASE)

    def test_older_kubernetes(self):
        self.check(None, extra=("--kube-version", OLD_KUBE))

    def test_defaults_render_the_install_story(self):
        kinds = {o["kind"] for _, o in render(None)}
        want = {"Deployment", "Service", "IngressClass", "ServiceAccount", "ClusterRole",
                "ClusterRoleBinding", "PodDisruptionBudget"}
        self.assertEqual(want - kinds, set(), "kinds rendered with the defaults: %s" % sorted(kinds))

    def test_validator_rejects_broken_objects(self):
        """The validators fail for real: each broken object has exactly the expected error."""
        labels = {"app.kubernetes.io/name": "strait"}
        dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "s", "labels": dict(labels)},
               "spec": {"selector": {"matchLabels": dict(labels)}, "template": {
                   "metadata": {"labels": dict(labels)},
                   "spec": {"containers": [{"name": "dataplane", "image": "strait:1",
                                            "ports": [{"name": "http", "containerPort": 8080}],
                                            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}}}]}}}}
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
               "spec": {"selector": dict(labels), "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
        self.assertEqual(validation_errors([("dep", dep), ("svc", svc)]), [])
        self.assertEqual(consistency_errors([("dep", dep), ("svc", svc)], check_flags=False), [])
        gw = copy.deepcopy(load_manifest(os.path.join(ROOT, "manifests", "examples", "gateway",
                                                      "canary-weights.yaml"))[0][1])
        c0 = lambda o: o["spec"]["template"]["spec"]["containers"][0]  # noqa: E731
        cases = []

        def case(name, obj, fn, want):
            o = copy.deepcopy(obj)
            fn(o)
            cases.append((name, o, want))
        case("typo field", dep, lambda o: c0(o).update(readinesProbe={}), 'unknown field "readinesProbe"')
        case("wrong type", dep, lambda o: o["spec"].update(replicas="2"), "/spec/replicas: must be integer")
        case("bad enum", dep, lambda o: c0(o).update(imagePullPolicy="Sometimes"), "imagePullPolicy: must be equal to one of the allowed values")
        case("long port name", dep, lambda o: c0(o).update(ports=[{"name": "metrics-of-the-proxy", "containerPort": 1}]), "invalid port name")
        case("selector mismatch", dep, lambda o: o["spec"]["selector"]["matchLabels"].update(x="y"), "selector does not match")
        case("beta API", dep, lambda o: o.update(apiVersion="apps/v1beta2"), "alpha or beta version")
        case("unknown kind", dep, lambda o: o.update(kind="Deploymnet"), "unknown kind")
        case("service name", svc, lambda o: o["metadata"].update(name="9" + "x" * 63), "invalid name")
        case("gateway schema", gw, lambda o: o["spec"]["routes"][0]["rules"][0]["backendRefs"][0].update(wieght=1), "additionalProperties")
        case("gateway CEL", gw, lambda o: o["spec"]["listeners"][0].update(tls={"certificateRefs": [{"name": "c"}]}), "CEL rule failed: tls must not be specified")
        case("gateway kind", gw, lambda o: o.update(kind="Gatway"), "unknown kind")
        case("service monitor", {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                                 "metadata": {"name": "m"}, "spec": {"selector": {}, "endpoints": [{"port": "m", "interval": "30 s"}]}},
             lambda o: None, "invalid duration")
        errs = validation_errors([("case %s" % name, o) for name, o, _ in cases])
        for name, o, want in cases:
            with self.subTest(case=name):
                mine = [e for e in errs if e.startswith("case %s (" % name)]
                self.assertEqual(len(mine), 1, mine)
                self.assertIn(want, mine[0])
        bad_cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"},
                  "data": {"a.yaml": yaml.safe_dump(cases[0][1])}}
        self.assertEqual(len(validation_errors([("cm", bad_cm)])), 1, "embedded manifests are validated")
        fits = [
            ("targetPort", lambda d, s: s["spec"]["ports"][0].update(targetPort="nope"), "targets 'nope'"),
            ("selector", lambda d, s: s["spec"]["selector"].update(x="y"), "matches no rendered pod"),
            ("probe port", lambda d, s: c0(d)["readinessProbe"]["httpGet"].update(port="admin"), "is not one of its ports"),
            ("duplicate", lambda d, s: None, "also rendered by"),
            ("unknown flag", lambda d, s: c0(d).update(command=[BUILTIN_IMAGE_CMDS[1]], args=["--listn=:80"]),
             "passes --listn, which strait-dataplane --help does not list"),
            ("no such binary", lambda d, s: c0(d).update(command=["/bin/strait"]), "which the image does not hold"),
        ]
        for name, fn, want in fits:
            with self.subTest(fits=name):
                d, s = copy.deepcopy(dep), copy.deepcopy(svc)
                fn(d, s)
                objs = [("dep", d), ("svc", s)] + ([("svc2", s)] if name == "duplicate" else [])
                errs = consistency_errors(objs)
                self.assertTrue(errs and all(want in e for e in errs), errs)


def _add_values_tests():
    for values in [None] + VALUES_FILES:
        name = re.sub(r"\W", "_", label(values).replace(".yaml", ""))
        setattr(HelmLint, "test_lint_" + name, lambda self, v=values: self.lint(v))
        setattr(HelmTemplate, "test_template_" + name, lambda self, v=values: self.check(v))


_add_values_tests()


class ValuesFiles(unittest.TestCase):
    """The non-default values files render what they are for."""

    def kinds(self, name):
        return [o for _, o in render(os.path.join(HERE, name))]

    def test_mesh(self):
        objs = self.kinds("values-mesh.yaml")
        (svc,) = [o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == "strait-controller"]
        self.assertEqual(svc["spec"]["ports"][0]["port"], 9443)
        (dep,) = [o for o in objs if o["kind"] == "Deployment"]
        (ctl,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "controller"]
        for a in ("--mesh", "--mesh-listen=0.0.0.0:9443", "--trust-domain=mesh.example",
                  "--mesh-leaf-ttl=12h", "--mesh-root-secret=strait/mesh-root", "--mesh-default-policy=deny",
                  "--mesh-server-names=strait-controller,strait-controller.strait.svc,localhost",
                  "--mesh-webhook-config=strait-controller-inject"):
            self.assertIn(a, ctl["args"])
        (hook,) = [o for o in objs if o["kind"] == "MutatingWebhookConfiguration"]
        self.assertEqual(hook["metadata"]["name"], "strait-controller-inject")
        (cr,) = [o for o in objs if o["kind"] == "ClusterRole"]
        self.assertIn({"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"],
                       "resourceNames": ["strait-controller-inject"], "verbs": ["get", "patch"]}, cr["rules"])
        # without injection: neither the object, nor the flag, nor the rule
        objs = [o for _, o in render(os.path.join(HERE, "values-mesh.yaml"),
                                     extra=("--set", "controller.mesh.injection.enabled=false"))]
        self.assertFalse([o for o in objs if o["kind"] == "MutatingWebhookConfiguration"])
        (dep,) = [o for o in objs if o["kind"] == "Deployment"]
        (ctl,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "controller"]
        self.assertIn("--mesh", ctl["args"])
        self.assertFalse([a for a in ctl["args"] if a.startswith("--mesh-webhook-config")])
        self.assertFalse([r for o in objs if o["kind"] == "ClusterRole" for r in o["rules"]
                          if "mutatingwebhookconfigurations" in r["resources"]])
        (role,) = [o for o in objs if o["kind"] == "Role" and o["metadata"]["name"] == "strait-leader"]
        self.assertIn({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["mesh-root"],
                       "verbs": ["get"]}, role["rules"])
        self.assertTrue(any("tokenreviews" in r["resources"] for o in objs if o["kind"] == "ClusterRole"
                            for r in o["rules"]))

    def test_daemonset(self):
        objs = self.kinds("values-daemonset.yaml")
        ds = [o for o in objs if o["kind"] == "DaemonSet"]
        self.assertEqual(len(ds), 1)
        self.assertFalse([o for o in objs if o["kind"] in ("Deployment", "HorizontalPodAutoscaler")])
        self.assertTrue(ds[0]["spec"]["template"]["spec"].get("hostNetwork"))

    def test_shared_ticket_keys(self):
        objs = [o for _, o in render(os.path.join(CHART, "ci", "autoscaling-values.yaml"))]
        (dep,) = [o for o in objs if o["kind"] == "Deployment"]
        pod = dep["spec"]["template"]["spec"]
        dp = [c for c in pod["containers"] if c["name"] == "dataplane"][0]
        self.assertIn("--tls-ticket-key-file=/etc/strait/tickets/ticket.key", dp["args"])
        mounts = {m["name"]: m for m in dp.get("volumeMounts", [])}
        self.assertEqual(mounts["ticket-keys"]["mountPath"], "/etc/strait/tickets")
        self.assertTrue(mounts["ticket-keys"]["readOnly"])
        vols = {v["name"]: v for v in pod["volumes"]}
        self.assertEqual(vols["ticket-keys"]["secret"]["secretName"], "strait-ticket-keys")
        # the default keeps per-pod keys: no flag, no volume
        (dep,) = [o for _, o in render(None) if o["kind"] == "Deployment"]
        pod = dep["spec"]["template"]["spec"]
        self.assertFalse([a for c in pod["containers"] for a in c.get("args", [])
                          if a.startswith("--tls-ticket-key-file")])
        self.assertNotIn("ticket-keys", [v["name"] for v in pod["volumes"]])

    def test_nodeport_monitoring(self):
        objs = self.kinds("values-nodeport-monitoring.yaml")
        types = {o["spec"].get("type") for o in objs if o["kind"] == "Service"}
        self.assertIn("NodePort", types)
        for k in ("ServiceMonitor", "HorizontalPodAutoscaler", "Role", "RoleBinding"):
            self.assertIn(k, {o["kind"] for o in objs}, k)
        ic = [o for o in objs if o["kind"] == "IngressClass"]
        self.assertEqual(ic[0]["metadata"].get("annotations", {}).get(
            "ingressclass.kubernetes.io/is-default-class"), "true")

    def test_filemode(self):
        objs = self.kinds("values-filemode.yaml")
        kinds = {o["kind"] for o in objs}
        for k in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
            self.assertNotIn(k, kinds, "file mode needs no RBAC")
        cms = [o for o in objs if o["kind"] == "ConfigMap"]
        self.assertTrue(cms, "the chart's ConfigMap of manifests")
        self.assertTrue(embedded_manifests([("cm", c) for c in cms]))


class Manifests(unittest.TestCase):

    def test_examples_validate(self):
        files = sorted(glob.glob(os.path.join(ROOT, "manifests", "examples", "**", "*.yaml"), recursive=True))
        self.assertGreater(len(files), 5)
        items = [i for f in files for i in load_manifest(f)]
        self.assertTrue(any(is_gateway(o) for _, o in items), "Gateway examples")
        problems = validation_errors(items)
        self.no_problems(problems)

    def test_every_other_manifest_validates(self):
        """manifests/install.yaml and whatever else lives under manifests/ outside examples/."""
        files = sorted(f for f in glob.glob(os.path.join(ROOT, "manifests", "**", "*.yaml"), recursive=True)
                       if not f.startswith(os.path.join(ROOT, "manifests", "examples") + os.sep))
        self.assertIn(os.path.join(ROOT, "manifests", "install.yaml"), files)
        items = [i for f in files for i in load_manifest(f)]
        problems = validation_errors(items)
        self.no_problems(problems)

    def test_install_yaml_fits_together(self):
        items = load_manifest(os.path.join(ROOT, "manifests", "install.yaml"))
        problems = consistency_errors(items)
        self.no_problems(problems)

    def test_install_yaml_is_a_fresh_render(self):
        script = os.path.join(ROOT, "tools", "render-install.sh")
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "install.yaml")
            p = run([script, out])
            self.assertEqual(p.returncode, 0, "tools/render-install.sh failed: %s" % out_of(p))
            with open(out, "rb") as f:
                fresh = f.read()
        with open(os.path.join(ROOT, "manifests", "install.yaml"), "rb") as f:
            cur = f.read()
        if fresh != cur:
            import difflib
            diff = "".join(list(difflib.unified_diff(cur.decode().splitlines(True), fresh.decode().splitlines(True),
                                                     "manifests/install.yaml", "fresh render"))[:60])
            self.fail("manifests/install.yaml is not a fresh render (run tools/render-install.sh):\n" + diff)

    def test_chart_crds_are_the_source_crds(self):
        src = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "crds", "*.yaml")))
        dst = sorted(os.path.basename(p) for p in glob.glob(os.path.join(CHART, "crds", "*")))
        self.assertTrue(src)
        self.assertEqual(dst, src, "charts/strait/crds/ must hold exactly crds/*.yaml")
        for name in src:
            with open(os.path.join(ROOT, "crds", name), "rb") as a, open(os.path.join(CHART, "crds", name), "rb") as b:
                self.assertTrue(a.read() == b.read(), "charts/strait/crds/%s differs from crds/%s (copy it)" % (name, name))

    def test_crds_validate(self):
        items = [i for f in sorted(glob.glob(os.path.join(ROOT, "crds", "*.yaml"))) for i in load_manifest(f)]
        self.assertTrue(all(o["kind"] == "CustomResourceDefinition" for _, o in items))
        problems = validation_errors(items)
        self.no_problems(problems)


class ValuesReference(unittest.TestCase):

    def test_values_md_names_every_value(self):
        with open(os.path.join(ROOT, "docs", "values.md")) as f:
            doc = f.read()
        leaves = values_leaves(os.path.join(CHART, "values.yaml"))
        self.assertGreater(len(leaves), 20)
        missing = [k for k in leaves if not re.search(r"(?<![\w.])%s(?![\w])" % re.escape(k), doc)]
        self.assertEqual(missing, [], "docs/values.md does not mention: %s" % ", ".join(missing))

    def test_leaves_rule(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write("a:\n  b: 1\n  # -- whole\n  c:\n    d: 2\n  e: {}\nf: [1]\n")
            f.flush()
            self.assertEqual(values_leaves(f.name), ["a.b", "a.c", "a.e", "f"])


class Dockerfile(unittest.TestCase):
    PATH = os.path.join(ROOT, "Dockerfile")

    def test_dockerfilelint_reports_nothing(self):
        p = run(["node", dockerfilelint(), "-o", "json", self.PATH])
        try:
            res = json.loads(p.stdout)
        except ValueError:
            self.fail("dockerfilelint: %s" % out_of(p))
        issues = [i for f in res["files"] for i in f["issues"]]
        self.assertEqual(issues, [], "\n".join("line %s: %s: %s (%s)" % (
            i.get("line"), i.get("category"), i.get("title"), i.get("description", "")[:120]) for i in issues))
        bad = run(["node", dockerfilelint(), "-o", "json", "-"], input=b"FROM debian\nRUN apt-get install curl\n")
        self.assertGreater(json.loads(bad.stdout)["totalIssues"], 0, "dockerfilelint finds nothing in a bad file")

    def test_stages_user_entrypoint_labels(self):
        stages = dockerfile_stages(self.PATH)
        self.assertEqual(len(stages), 2, "a build stage and a run stage")
        self.assertEqual(stages[0][0][0], "debian:bookworm")
        self.assertEqual([a.lower() for a in stages[0][0][1:]], ["as", "build"])
        self.assertEqual(stages[1][0][0].split("@")[0], "debian:bookworm-slim")
        run_stage = stages[1][1]
        users = [a for i, a in run_stage if i == "USER"]
        self.assertTrue(users and re.fullmatch(r"10001(:10001)?", users[-1]), "numeric non-root USER: %s" % users)
        ep = [a for i, a in run_stage if i == "ENTRYPOINT"]
        self.assertTrue(ep, "ENTRYPOINT")
        self.assertIsInstance(json.loads(ep[-1]), list, "ENTRYPOINT in exec form (no shell at run time)")
        for i, a in run_stage:
            if i == "CMD":
                self.assertIsInstance(json.loads(a), list, "CMD in exec form")
        labels = " ".join(a for i, a in run_stage if i == "LABEL")
        for k in ("title", "description", "version", "revision"):
            self.assertIn("org.opencontainers.image.%s=" % k, labels)
        copies = " ".join(a for i, a in run_stage if i == "COPY")
        self.assertIn("--from=build", copies)
        for b in BUILTIN_IMAGE_CMDS:
            self.assertTrue(re.search(r"strait-%s\b" % os.path.basename(b).split("-")[1], copies), b)
        self.assertRegex(copies, r"/usr/local/bin/(\s|$)")
        # tlsmod.c looks for the module in ../lib/strait/ from the executable's folder
        self.assertRegex(copies, r"strait-tls\.so /usr/local/lib/strait/(\s|$)",
                         "the TLS module next to where strait-dataplane looks for it")
        runs = " ".join(a for i, a in run_stage if i == "RUN")
        self.assertIn("rm -rf /var/lib/apt/lists", runs)
        self.assertRegex(runs, r"/run/strait")
        self.assertNotRegex(" ".join(a for i, a in stages[1][1] if i in ("RUN",)),
                            r"build-essential|-dev\b|\bgcc\b|\bmake\b", "no build tools in the run stage")

    def test_build_stage_has_the_dev_packages(self):
        with open(os.path.join(ROOT, "tools", "deps.sh")) as f:
            deps = set(re.findall(r"\b(lib[\w.+-]+-dev)\b", f.read()))
        # test-only libraries: cmocka (unit tests), clang's runtime (fuzzing)
        need = {d for d in deps if not d.startswith(("libcmocka", "libclang"))}
        have = apt_packages(dockerfile_stages(self.PATH)[0][1])
        self.assertEqual(need - have, set(), "the build stage lacks packages tools/deps.sh builds with")

    def test_run_stage_has_every_library_the_binaries_need(self):
        """Each shared library the binaries (BUILD, as built here on Debian 12) link directly
        comes from a package the run stage installs: a library added to the Makefile and
        forgotten in the Dockerfile fails here, not in a cluster."""
        have = apt_packages(dockerfile_stages(self.PATH)[1][1])
        needed = {}  # soname -> binaries
        for b in ("strait-controller", "strait-dataplane", "strait-tls.so"):
            path = os.path.join(BIN, b)
            self.assertTrue(os.access(path, os.X_OK), "%s not built (make, or --bin DIR)" % path)
            p = run(["readelf", "-d", path])
            self.assertEqual(p.returncode, 0, out_of(p))
            for so in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", p.stdout.decode()):
                if not re.match(r"lib(c|m|pthread|dl|rt|gcc_s)\.so|ld-linux|libasan|libubsan", so):
                    needed.setdefault(so, []).append(b)  # libc6 / libgcc-s1 are in every image
        self.assertTrue(needed, "no shared libraries found")
        owners = {}
        for ln in run(["dpkg", "-S"] + ["*/" + so for so in needed]).stdout.decode().splitlines():
            pkgs, _, f = ln.partition(": ")
            for pkg in pkgs.split(", "):
                if not pkg.split(":")[0].endswith("-dev"):
                    owners.setdefault(os.path.basename(f), set()).add(pkg.split(":")[0])
        missing = []
        for so, bins in sorted(needed.items()):
            found = owners.get(so, set())
            if not found & have:
                missing.append("%s: %s from %s" % ("+".join(bins), so, " or ".join(sorted(found)) or "no package"))
        self.assertEqual(missing, [], "the run stage does not install: %s" % "; ".join(missing))
        self.assertIn("ca-certificates", have, "ca-certificates (the controller talks TLS to the API server)")
        # the injected strait-init container runs mesh-init, which runs iptables-restore
        self.assertIn("iptables", have, "iptables (strait-controller mesh-init in strait-init)")

    def test_dockerignore_keeps_the_context_small(self):
        with open(os.path.join(ROOT, ".dockerignore")) as f:
            ignored = {ln.strip().rstrip("/") for ln in f if ln.strip() and not ln.startswith("#")}
        for p in ("build", ".run", ".git", "tests", "bench", "docs", "charts"):
            self.assertIn(p, ignored, ".dockerignore should leave out %s" % p)
        # what the build does copy is not left out
        for i, a in [x for st in dockerfile_stages(self.PATH) for x in st[1]]:
            if i == "COPY" and not a.startswith("--from"):
                for src in a.split()[:-1]:
                    rel = os.path.normpath(src)
                    hit = [g for g in ignored if fnmatch.fnmatch(rel, g) or rel.startswith(g + "/")
                           or g.startswith(rel + "/")]
                    self.assertEqual(hit, [], "COPY %s, but .dockerignore leaves (some of) it out" % src)
                    self.assertTrue(os.path.exists(os.path.join(ROOT, src)), "COPY %s: no such file" % src)

    def test_make_image_recipe(self):
        p = run(["make", "--no-print-directory", "-n", "image"])
        self.assertEqual(p.returncode, 0, out_of(p))
        recipe = p.stdout.decode()
        chk = run(["bash", "-n"], input=p.stdout)
        self.assertEqual(chk.returncode, 0, "make -n image is not valid shell: %s\n%s" % (out_of(chk), recipe))
        with open(os.path.join(CHART, "Chart.yaml")) as f:
            app = str(yaml.safe_load(f)["appVersion"])
        self.assertIn("strait:%s" % app, recipe, "IMAGE defaults to strait:<the chart's appVersion>")

    def test_make_image_picks_an_engine(self):
        with tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, "log")
            for tool in ("make", "sh", "bash", "sed", "cat", "grep", "env"):
                w = shutil.which(tool)
                if w:
                    os.symlink(w, os.path.join(tmp, tool))
            # no engine at all: a clear failure
            p = make_image(tmp)
            self.assertNotEqual(p.returncode, 0)
            self.assertRegex(out_of(p), r"(?i)no container engine.*docker.*podman.*buildah")
            # buildah only
            stub(tmp, "buildah", 'echo "buildah $*" >> %s\n' % log)
            p = make_image(tmp, "IMAGE=x/strait:t")
            self.assertEqual(p.returncode, 0, out_of(p))
            # podman beats buildah
            stub(tmp, "podman", 'echo "podman $*" >> %s\n' % log)
            self.assertEqual(make_image(tmp, "IMAGE=x/strait:t").returncode, 0)
            # a docker client without an engine (as here) is passed over; one with an engine wins
            stub(tmp, "docker", '[ "$1" = info ] && exit 1\necho "docker $*" >> %s\n' % log)
            self.assertEqual(make_image(tmp, "IMAGE=x/strait:t").returncode, 0)
            stub(tmp, "docker", '[ "$1" = info ] && exit 0\necho "docker $*" >> %s\n' % log)
            self.assertEqual(make_image(tmp, "IMAGE=x/strait:t").returncode, 0)
            # a failing build fails make image
            stub(tmp, "docker", '[ "$1" = info ] && exit 0\nexit 3\n')
            self.assertNotEqual(make_image(tmp).returncode, 0)
            with open(log) as f:
                calls = [shlex.split(ln) for ln in f]
        self.assertEqual([c[:2] for c in calls], [["buildah", "bud"], ["podman", "build"],
                                                   ["podman", "build"], ["docker", "build"]])
        for c in calls:
            self.assertIn("x/strait:t", c)
            self.assertEqual(c[-1], ".", c)


# ---------------------------------------------------------------------------------------
# RBAC: the chart's rules against the requests the real controller makes

sys.path.insert(0, os.path.join(ROOT, "tests", "kube-apiserver"))
import fixture as kube_api  # noqa: E402  (the stand-in API server)

RBAC_NS = "strait-system"       # the release namespace of these renders
RBAC_POD = "strait-5f7c9d-x2kq"  # metadata.name of the pod (POD_NAME, the election identity)
RBAC_TIMEOUT = 10.0              # seconds any one condition may take (each takes well under 1)
# Granted (role, apiGroup, resource, verb, resourceName) atoms a run may leave unused, each
# with its reason. Empty: every rule the chart grants is exercised below (Event patches with
# STRAIT_EVENTS_REPEAT, Lease patches by the release on SIGTERM). Add one only for a request
# the controller makes on a path these runs cannot reach, and say why.
RBAC_UNUSED_OK = {}
# Non-resource URLs every authenticated user may GET (system:discovery,
# system:public-info-viewer); the controller's service account gets nothing more.
RBAC_PUBLIC_URLS = ("/api", "/api/*", "/apis", "/apis/*", "/version", "/healthz", "/livez",
                    "/readyz", "/openapi", "/openapi/*")
RBAC_VERB = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
             "DELETE": "delete"}
RBAC_NS_SUBRESOURCES = ("status", "finalize")  # /api/v1/namespaces/NAME/status is a Namespace's


def go_bool(s):
    return s in ("1", "t", "T", "TRUE", "true", "True")


def rbac_request(method, path, query=""):
    """kube-apiserver's RequestInfo of a request, as RBAC sees it: a dict with verb, group,
    resource ("ingresses/status" for a subresource), namespace (None: cluster-wide or
    cluster-scoped) and name; or {"nonResource": path, "verb": ...}."""
    parts = [urllib.parse.unquote(p) for p in path.split("?", 1)[0].strip("/").split("/") if p]
    params = urllib.parse.parse_qs(query or "", keep_blank_values=True)
    verb = RBAC_VERB.get(method, method.lower())
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return {"nonResource": "/" + "/".join(parts), "verb": verb}
    ns = None
    if rest[0] == "namespaces" and len(rest) > 1:
        ns = rest[1]
        if len(rest) > 2 and rest[2] not in RBAC_NS_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0] + ("/" + rest[2] if len(rest) > 2 else "")
    name = rest[1] if len(rest) > 1 else None
    if verb == "get" and go_bool((params.get("watch") or [""])[-1]):
        verb = "watch"
    elif verb == "get" and name is None:
        verb = "list"
    elif verb == "delete" and name is None:
        verb = "deletecollection"
    if verb in ("list", "watch", "create", "deletecollection"):
        # kube-apiserver takes a list/watch's name from fieldSelector=metadata.name=X; we
        # stay stricter: a rule with resourceNames never allows list, watch or create
        name = None
    return {"verb": verb, "group": group, "resource": resource, "namespace": ns, "name": name}


def rbac_grants(objs, sa_name, sa_ns):
    """[(scope, role label, rules)] bound to ServiceAccount sa_ns/sa_name: scope None for a
    ClusterRoleBinding (every namespace and cluster-scoped resources), else the namespace of
    the RoleBinding."""
    roles = {}
    for o in objs:
        if o["kind"] in ("Role", "ClusterRole"):
            md = o["metadata"]
            ns = md.get("namespace") if o["kind"] == "Role" else None
            roles[(o["kind"], ns, md["name"])] = o.get("rules") or []
    out = []
    for o in objs:
        if o["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == sa_name and
                   s.get("namespace") == sa_ns for s in o.get("subjects") or []):
            continue
        ref, md = o["roleRef"], o["metadata"]
        scope = md.get("namespace") if o["kind"] == "RoleBinding" else None
        key = (ref["kind"], scope if ref["kind"] == "Role" else None, ref["name"])
        if key not in roles:
            raise AssertionError("%s %s: roleRef %s %s is not rendered" % (o["kind"], md["name"], ref["kind"], ref["name"]))
        out.append((scope, "%s %s%s" % (ref["kind"], (key[1] + "/") if key[1] else "", ref["name"]),
                    roles[key]))
    return out


def rbac_atoms(grants):
    """Every (role, group, resource, verb, resourceName or None) the grants hold."""
    return {(label, g, r, v, n) for _, label, rules in grants for rule in rules
            for g in rule.get("apiGroups") or [] for r in rule.get("resources") or []
            for v in rule.get("verbs") or [] for n in (rule.get("resourceNames") or [None])}


def rbac_allowing(grants, req):
    """The atoms that allow req (a rbac_request dict): empty when RBAC denies it."""
    if "nonResource" in req:
        ok = req["verb"] == "get" and any(fnmatch.fnmatchcase(req["nonResource"], u)
                                          for u in RBAC_PUBLIC_URLS)
        return {("public", "", req["nonResource"], "get", None)} if ok else set()
    out = set()
    for scope, label, rules in grants:
        if scope is not None and scope != req["namespace"]:
            continue
        for rule in rules:
            names = rule.get("resourceNames") or []
            if (req["group"] in (rule.get("apiGroups") or []) and
                    req["resource"] in (rule.get("resources") or []) and
                    req["verb"] in (rule.get("verbs") or []) and
                    (not names or req["name"] in names)):
                out.add((label, req["group"], req["resource"], req["verb"],
                         req["name"] if names else None))
    return out


def rbac_wildcards(objs):
    return ["%s %s: rule %d has %s %r" % (o["kind"], o["metadata"]["name"], i, field, v)
            for o in objs if o["kind"] in ("Role", "ClusterRole")
            for i, rule in enumerate(o.get("rules") or [])
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs")
            for v in rule.get(field) or [] if "*" in v]


def rbac_describe(req):
    if "nonResource" in req:
        return "%s %s" % (req["verb"], req["nonResource"])
    return "%s %s%s%s%s" % (req["verb"], req["group"] + "/" if req["group"] else "", req["resource"],
                            " in " + req["namespace"] if req["namespace"] else " (cluster-wide)",
                            " name " + req["name"] if req["name"] else "")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expand_env(arg, env):
    """Kubernetes' $(VAR) expansion in container args ($$ escapes; unknown stay as written)."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), arg)


class ControllerRbac(unittest.TestCase):
    """The real strait-controller, started with the controller container's args as the chart
    renders them, against the stand-in API server (tests/kube-apiserver): it lists and watches
    every kind, takes the Lease, writes Ingress and Gateway status, creates Events and bumps
    one (STRAIT_EVENTS_REPEAT shortens the 10-minute repeat), then releases the Lease on
    SIGTERM. Every request it made (the server's request log) must be allowed by the chart's
    rendered Roles/ClusterRoles bound to its ServiceAccount, mapped to verb / resource /
    subresource / namespace / name as kube-apiserver's RBAC does; and every granted
    verb x resource (x resourceName) must have been used by one of them (least privilege),
    RBAC_UNUSED_OK aside. Each wait polls a condition (bounded by RBAC_TIMEOUT)."""

    PUBLISHED_IP = "203.0.113.10"

    def run_controller(self, sets=(), watched=("demo", "apps"), publish=None, status_ip=None,
                       mesh=False):
        """sets: --set values; watched: the namespaces the controller should serve (it must
        write status and Events there); publish: NS/NAME of the Service it publishes (None:
        no Service is read); status_ip: the address the Ingress status must carry; mesh: the
        identity endpoint is on (controller.mesh.enabled): its root Secret and trust bundle
        ConfigMap must appear, and one identity request makes it send a TokenReview."""
        extra = tuple(a for s in sets for a in ("--set", s))
        objs = [o for _, o in render(None, namespace=RBAC_NS, extra=extra)]
        self.assertEqual(rbac_wildcards(objs), [], "wildcards in the rendered RBAC")
        pods = [o for o in objs if o["kind"] in ("Deployment", "DaemonSet")]
        self.assertEqual(len(pods), 1)
        pod = pods[0]["spec"]["template"]["spec"]
        (ctl,) = [c for c in pod["containers"] if c["name"] == "controller"]
        sa = pod.get("serviceAccountName") or "default"
        grants = rbac_grants(objs, sa, RBAC_NS)
        self.assertTrue(grants, "no Role or ClusterRole bound to ServiceAccount %s" % sa)

        tmp = tempfile.mkdtemp(prefix="strait-rbac-")
        self.addCleanup(shutil.rmtree, tmp, True)
        api = kube_api.ApiServer(os.path.join(tmp, "api"), args=["--quiet"]).start()
        self.addCleanup(api.stop)

        def req(method, path, body=None, want=(200, 201)):
            code, obj = api.request(method, path, body)
            if code not in want:
                raise AssertionError("%s %s: %s %r" % (method, path, code, obj))
            return obj

        # the cluster: the chart's own IngressClass and Service, and in each namespace a
        # served Ingress, one with a missing backend (an Event), a Gateway and their backend
        for ns in (RBAC_NS, "demo", "apps"):
            req("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        for o in objs:
            if o["kind"] == "IngressClass":
                req("POST", "/apis/networking.k8s.io/v1/ingressclasses", o)
            if o["kind"] == "MutatingWebhookConfiguration":  # no caBundle: a fresh install
                self.assertFalse([w for w in o["webhooks"] if "caBundle" in w["clientConfig"]])
                req("POST", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", o)
            if o["kind"] == "Service":
                req("POST", "/api/v1/namespaces/%s/services" % RBAC_NS, o)
        if publish:
            pns, pname = publish.split("/")
            code, svc = api.request("GET", "/api/v1/namespaces/%s/services/%s" % (pns, pname))
            if code == 404:
                svc = req("POST", "/api/v1/namespaces/%s/services" % pns, {
                    "metadata": {"name": pname}, "spec": {"type": "LoadBalancer",
                                                          "ports": [{"name": "http", "port": 80}]}})
            svc["status"] = {"loadBalancer": {"ingress": [{"ip": status_ip}]}}
            req("PUT", "/api/v1/namespaces/%s/services/%s/status" % (pns, pname), svc)
        backend = {"service": {"name": "app", "port": {"number": 80}}}
        for ns in ("demo", "apps"):
            req("POST", "/api/v1/namespaces/%s/services" % ns,
                {"metadata": {"name": "app"}, "spec": {"ports": [{"name": "http", "port": 80}]}})
            req("POST", "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % ns, self.slice(1))
            for name, svc in (("good", "app"), ("bad", "missing")):
                req("POST", "/apis/networking.k8s.io/v1/namespaces/%s/ingresses" % ns, {
                    "metadata": {"name": name}, "spec": {"ingressClassName": "strait", "rules": [{
                        "host": "%s.%s.example.com" % (name, ns), "http": {"paths": [{
                            "path": "/", "pathType": "Prefix",
                            "backend": dict(backend, service=dict(backend["service"], name=svc))}]}}]}})
            req("POST", "/apis/strait.dev/v1alpha1/namespaces/%s/gateways" % ns, {
                "apiVersion": "strait.dev/v1alpha1", "kind": "Gateway", "metadata": {"name": "gw"},
                "spec": {"listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
                         "routes": [{"hostnames": ["gw.%s.example.com" % ns],
                                     "rules": [{"backendRefs": [{"name": "app", "port": 80}]}]}]}})
            if mesh:
                req("POST", "/apis/strait.dev/v1alpha1/namespaces/%s/authorizationpolicies" % ns, {
                    "apiVersion": "strait.dev/v1alpha1", "kind": "AuthorizationPolicy",
                    "metadata": {"name": "ap"},
                    "spec": {"targetRef": {"kind": "Service", "name": "app"},
                             "from": [{"namespaces": [ns]}]}})
        api.control("DELETE", "requests")

        # the container as the kubelet would start it, on loopback and in a temporary folder
        env = {"POD_NAME": RBAC_POD, "POD_NAMESPACE": RBAC_NS}
        for e in ctl.get("env") or []:
            if "value" in e:
                env[e["name"]] = expand_env(e["value"], env)
        health = free_port()
        mesh_port = free_port()
        args = []
        for a in ctl.get("args") or []:
            a = expand_env(a, env)
            a = re.sub(r"^--socket=.*", "--socket=" + os.path.join(tmp, "s.sock"), a)
            a = re.sub(r"^--(health|admin)=.*", "--health=127.0.0.1:%d" % health, a)
            a = re.sub(r"^--mesh-listen=.*", "--mesh-listen=127.0.0.1:%d" % mesh_port, a)
            args.append(a)
        self.assertEqual("--mesh" in args, mesh)
        self.assertIn("--election-identity=" + RBAC_POD, args)
        self.assertEqual([a for a in args if a.startswith("--publish-service=")],
                         ["--publish-service=" + publish] if publish else [])
        sadir = os.path.join(tmp, "serviceaccount")
        os.makedirs(sadir)
        with open(os.path.join(sadir, "namespace"), "w") as f:
            f.write(RBAC_NS)
        log = os.path.join(tmp, "controller.log")
        proc_env = dict(os.environ, STRAIT_SERVICEACCOUNT_DIR=sadir, STRAIT_EVENTS_REPEAT="0.2", **env)
        with open(log, "wb") as lf:
            proc = subprocess.Popen([os.path.join(BIN, "strait-controller"), "--kubeconfig",
                                     api.kubeconfig] + args, stdout=lf, stderr=lf, env=proc_env)

        def stop():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.addCleanup(stop)

        def until(what, fn):
            deadline = time.monotonic() + RBAC_TIMEOUT
            while True:
                v = fn()
                if v:
                    return v
                if proc.poll() is not None or time.monotonic() > deadline:
                    with open(log, errors="replace") as f:
                        tail = f.read()[-3000:]
                    self.fail("%s: %s (controller %s)\n%s" % (
                        "timed out waiting for" if proc.poll() is None else "controller exited before",
                        what, "rc %s" % proc.poll(), tail))
                time.sleep(0.02)

        def get(path):
            code, obj = api.request("GET", path)
            return obj if code == 200 else None

        def readyz():
            try:
                with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                        "http://127.0.0.1:%d/readyz" % health, timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        lease_name = [a.split("=", 1)[1] for a in args if a.startswith("--election-id=")][0]
        lease = "/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s" % (RBAC_NS, lease_name)
        until("/readyz 200", readyz)
        until("the Lease held by %s" % RBAC_POD,
              lambda: ((get(lease) or {}).get("spec") or {}).get("holderIdentity") == RBAC_POD)
        net = "/apis/networking.k8s.io/v1/namespaces/%s/ingresses/"
        for ns in watched:
            until("status of Ingress %s/good" % ns, lambda: ((get(net % ns + "good") or {}).get(
                "status") or {}).get("loadBalancer", {}).get("ingress"))
            if status_ip:
                self.assertEqual(get(net % ns + "good")["status"]["loadBalancer"]["ingress"],
                                 [{"ip": status_ip}])
            until("status of Gateway %s/gw" % ns, lambda: ((get(
                "/apis/strait.dev/v1alpha1/namespaces/%s/gateways/gw" % ns) or {}).get(
                    "status") or {}).get("conditions"))
            if mesh:
                until("status of AuthorizationPolicy %s/ap" % ns, lambda: ((get(
                    "/apis/strait.dev/v1alpha1/namespaces/%s/authorizationpolicies/ap" % ns) or {})
                    .get("status") or {}).get("conditions"))

        if mesh:
            until("the mesh root Secret", lambda: get(
                "/api/v1/namespaces/%s/secrets/strait-mesh-root" % RBAC_NS))
            cm = until("the trust bundle ConfigMap", lambda: get(
                "/api/v1/namespaces/%s/configmaps/strait-mesh-trust-bundle" % RBAC_NS))
            for o in objs:
                if o["kind"] == "MutatingWebhookConfiguration":
                    want = [base64.b64encode(cm["data"]["ca.crt"].encode()).decode()] * len(o["webhooks"])
                    path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/" + o["metadata"]["name"]
                    until("the caBundles of MutatingWebhookConfiguration " + o["metadata"]["name"],
                          lambda: [w["clientConfig"].get("caBundle")
                                   for w in (get(path) or {}).get("webhooks", [])] == want)
            p = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
                                "https://127.0.0.1:%d/v1/identity" % mesh_port,
                                "-H", "Authorization: Bearer not-a-token", "--data", '{"csr": "x"}'],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(p.stdout, "401", "identity request with an unknown token")

        def bad_events(ns):
            return [e for e in (get("/api/v1/namespaces/%s/events" % ns) or {}).get("items", [])
                    if e["involvedObject"].get("name") == "bad"]
        for ns in watched:
            until("an Event on Ingress %s/bad" % ns, lambda: bad_events(ns))
        # rebuilds after the (shortened) repeat interval bump each Event's count: a PATCH
        n, last = [1], [0.0]

        def bumped():
            if all(e["count"] >= 2 for ns in watched for e in bad_events(ns)):
                return True
            if time.monotonic() - last[0] > 0.25:
                n[0] = n[0] % 3 + 1
                for ns in watched:
                    req("PUT", "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices/app-1" % ns,
                        self.slice(n[0]))
                last[0] = time.monotonic()
            return False
        until("the Events' counts bumped", bumped)

        # SIGTERM: the leader releases the Lease (a PATCH) and exits 0
        proc.terminate()
        try:
            rc = proc.wait(RBAC_TIMEOUT)
        except subprocess.TimeoutExpired:
            rc = None
        self.assertEqual(rc, 0, "controller exit status after SIGTERM")
        self.assertFalse((get(lease) or {}).get("spec", {}).get("holderIdentity"), "Lease not released")

        # (1) every request allowed; (2) every granted atom used
        items = [q for q in api.control("GET", "requests")["items"]
                 if q.get("user_agent") == "strait-controller"]
        self.assertGreater(len(items), 10)
        denied, used = [], set()
        for q in items:
            r = rbac_request(q["method"], q["path"], q.get("query"))
            hit = rbac_allowing(grants, r)
            used |= hit
            if not hit:
                denied.append("%s %s%s -> %s" % (q["method"], q["path"], "?" + q["query"] if q.get("query") else "",
                                                  rbac_describe(r)))
        unused = sorted(a for a in rbac_atoms(grants) - used if a not in RBAC_UNUSED_OK)
        problems = ["denied: %s" % d for d in sorted(set(denied))]
        problems += ["granted but not used: %s %s %s%s%s" % (
            label, verb, group + "/" if group else "", res, " name " + name if name else "")
            for label, group, res, verb, name in unused]
        self.no_problems(problems)
        return used

    @staticmethod
    def slice(n):
        return {"metadata": {"name": "app-1", "labels": {"kubernetes.io/service-name": "app"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 9999}],
                "endpoints": [{"addresses": ["127.0.0.%d" % i], "conditions": {"ready": True}}
                              for i in range(1, n + 1)]}

    def test_defaults(self):
        """ClusterRole for every namespace; the chart's Service published."""
        self.run_controller(publish=RBAC_NS + "/strait", status_ip=self.PUBLISHED_IP)

    def test_watch_namespace(self):
        """controller.watchNamespace: a Role in that namespace; nothing in another one."""
        self.run_controller(sets=("controller.watchNamespace=demo",), watched=("demo",),
                            publish=RBAC_NS + "/strait", status_ip=self.PUBLISHED_IP)

    def test_publish_service_in_another_namespace(self):
        """publishService.pathOverride: get on that one Service, by a Role in its namespace."""
        self.run_controller(sets=("controller.publishService.pathOverride=apps/edge",),
                            publish="apps/edge", status_ip="203.0.113.20")

    def test_publish_status_address(self):
        """publishStatusAddress: no Service is read, so no Service rule is granted."""
        self.run_controller(sets=("controller.publishStatusAddress={198.51.100.7}",),
                            status_ip="198.51.100.7")

    def test_mesh(self):
        """controller.mesh.enabled: TokenReviews, the root Secret, the trust bundle ConfigMap."""
        self.run_controller(sets=("controller.mesh.enabled=true",),
                            publish=RBAC_NS + "/strait", status_ip=self.PUBLISHED_IP, mesh=True)

    def test_authorizer(self):
        """The request mapping and the rule matching, on cases with a known answer."""
        m = rbac_request
        self.assertEqual(m("GET", "/api/v1/secrets", "watch=1&resourceVersion=5"),
                         {"verb": "watch", "group": "", "resource": "secrets", "namespace": None, "name": None})
        self.assertEqual(m("GET", "/apis/networking.k8s.io/v1/namespaces/a/ingresses", "limit=500")["verb"], "list")
        self.assertEqual(m("GET", "/apis/networking.k8s.io/v1/namespaces/a/ingresses", "watch=false")["verb"], "list")
        self.assertEqual(m("PATCH", "/apis/networking.k8s.io/v1/namespaces/a/ingresses/x/status"),
                         {"verb": "patch", "group": "networking.k8s.io", "resource": "ingresses/status",
                          "namespace": "a", "name": "x"})
        self.assertEqual(m("PUT", "/api/v1/namespaces/a/status")["resource"], "namespaces/status")
        self.assertEqual(m("GET", "/api/v1/namespaces/a"),
                         {"verb": "get", "group": "", "resource": "namespaces", "namespace": "a", "name": "a"})
        self.assertEqual(m("DELETE", "/api/v1/namespaces/a/events")["verb"], "deletecollection")
        self.assertEqual(m("POST", "/api/v1/namespaces/a/events")["verb"], "create")
        self.assertEqual(m("GET", "/apis/strait.dev/v1alpha1"), {"nonResource": "/apis/strait.dev/v1alpha1", "verb": "get"})
        rules = [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
                 {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["l"],
                  "verbs": ["get", "patch", "list", "watch"]},
                 {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get"]}]
        grants = [("ns", "Role ns/r", rules[:2]), (None, "ClusterRole c", rules[2:])]
        lease = "/apis/coordination.k8s.io/v1/namespaces/%s/leases"
        cases = [
            ("GET", lease % "ns" + "/l", "", True),
            ("PATCH", lease % "ns" + "/l", "", True),
            ("PUT", lease % "ns" + "/l", "", False),           # update is not patch
            ("PATCH", lease % "ns" + "/other", "", False),     # resourceNames
            ("GET", lease % "ns", "", False),                  # list: resourceNames never allow it
            ("GET", lease % "ns", "watch=1&fieldSelector=metadata.name%3Dl", False),
            ("POST", lease % "ns", "", True),
            ("POST", lease % "other", "", False),              # the Role's namespace only
            ("GET", "/apis/networking.k8s.io/v1/namespaces/z/ingresses/i", "", True),
            ("GET", "/apis/networking.k8s.io/v1/namespaces/z/ingresses/i/status", "", False),
            ("GET", "/apis/networking.k8s.io/v1/ingresses", "", False),
            ("GET", "/apis/extensions/v1beta1/namespaces/z/ingresses/i", "", False),
            ("GET", "/version", "", True),
            ("POST", "/apis", "", False),
            ("GET", "/metrics", "", False),
        ]
        for method, path, query, want in cases:
            with self.subTest(request="%s %s?%s" % (method, path, query)):
                self.assertEqual(bool(rbac_allowing(grants, rbac_request(method, path, query))), want)
        self.assertEqual(len(rbac_atoms(grants)), 1 + 4 + 1)
        self.assertEqual(len(rbac_wildcards([{"kind": "Role", "metadata": {"name": "r"}, "rules": [
            {"apiGroups": ["*"], "resources": ["a/*"], "verbs": ["get"]}]}])), 2)


# ---------------------------------------------------------------------------------------
# Runner

class Result(unittest.TestResult):
    def __init__(self):
        super().__init__()
        self.passed = self.failed = 0
        self._t0 = 0.0

    def startTest(self, test):
        super().startTest(test)
        self._t0 = time.monotonic()
        self._sub_failed = False

    def _line(self, word, test):
        print("%-4s %s (%.2fs)" % (word, test.id().replace("__main__.", ""), time.monotonic() - self._t0), flush=True)

    def addSuccess(self, test):
        super().addSuccess(test)
        if not self._sub_failed:
            self.passed += 1
            self._line("ok", test)

    def _bad(self, test, err, word):
        self.failed += 1
        self._line(word, test)
        print(self._exc_info_to_string(err, test).rstrip() + "\n", flush=True)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._bad(test, err, "FAIL")

    def addError(self, test, err):
        super().addError(test, err)
        self._bad(test, err, "ERR")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            if not self._sub_failed:
                self._sub_failed = True
            self._bad(subtest, err, "FAIL")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.failed += 1  # nothing here may be skipped
        print("FAIL %s: skipped (%s)" % (test.id(), reason), flush=True)


class InstalledPod(unittest.TestCase):
    """The pod the chart renders with its defaults, run as the kubelet would on loopback:
    both containers with their rendered args (the snapshot socket in one shared folder, the
    emptyDir; ports moved to free loopback ones), the controller in cluster mode against the
    stand-in API server. A user's first Ingress and a Gateway route reach a real backend
    through the data plane, the Ingress gets the published address, and SIGTERM ends both
    containers with exit code 0: `helm install` to a working Ingress, short of a cluster."""

    def test_first_ingress_and_gateway_serve_through_the_rendered_pod(self):
        objs = [o for _, o in render(None, namespace=RBAC_NS)]
        (dep,) = [o for o in objs if o["kind"] == "Deployment"]
        pod = dep["spec"]["template"]["spec"]
        ctl = [c for c in pod["containers"] if c["name"] == "controller"][0]
        dp = [c for c in pod["containers"] if c["name"] != "controller"][0]
        tmp = tempfile.mkdtemp(prefix="strait-pod-")
        self.addCleanup(shutil.rmtree, tmp, True)
        api = kube_api.ApiServer(os.path.join(tmp, "api"), args=["--quiet"]).start()
        self.addCleanup(api.stop)

        def req(method, path, body=None, want=(200, 201)):
            code, obj = api.request(method, path, body)
            if code not in want:
                raise AssertionError("%s %s: %s %r" % (method, path, code, obj))
            return obj

        procs = []

        def stop_all():
            for pr in procs:
                if pr.poll() is None:
                    pr.kill()
                    pr.wait()
        self.addCleanup(stop_all)
        # a backend (the demo backend), its Service and EndpointSlice, the user's Ingress
        bport = free_port()
        procs.append(subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "backend.py"),
                                       "--name", "hello", "--port", str(bport)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for ns in (RBAC_NS, "demo"):
            req("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        for o in objs:
            if o["kind"] == "IngressClass":
                req("POST", "/apis/networking.k8s.io/v1/ingressclasses", o)
            if o["kind"] == "Service":
                svc = req("POST", "/api/v1/namespaces/%s/services" % RBAC_NS, o)
                svc["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}
                req("PUT", "/api/v1/namespaces/%s/services/%s/status" % (
                    RBAC_NS, o["metadata"]["name"]), svc)
        req("POST", "/api/v1/namespaces/demo/services",
            {"metadata": {"name": "hello"}, "spec": {"ports": [{"name": "http", "port": 80}]}})
        req("POST", "/apis/discovery.k8s.io/v1/namespaces/demo/endpointslices", {
            "metadata": {"name": "hello-1", "labels": {"kubernetes.io/service-name": "hello"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": bport}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]})
        req("POST", "/apis/networking.k8s.io/v1/namespaces/demo/ingresses", {
            "metadata": {"name": "hello"}, "spec": {"ingressClassName": "strait", "rules": [{
                "host": "hello.example.com", "http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "hello", "port": {"number": 80}}}}]}}]}})
        req("POST", "/apis/strait.dev/v1alpha1/namespaces/demo/gateways", {
            "apiVersion": "strait.dev/v1alpha1", "kind": "Gateway", "metadata": {"name": "gw"},
            "spec": {"listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
                     "routes": [{"hostnames": ["gw.example.com"], "rules": [{
                         "matches": [{"headers": [{"name": "x-canary", "value": "1"}]}],
                         "backendRefs": [{"name": "hello", "port": 80}]}]}]}})

        # the containers: rendered args with the emptyDir and the ports moved to loopback
        env = {"POD_NAME": RBAC_POD, "POD_NAMESPACE": RBAC_NS}
        sock_dir = os.path.join(tmp, "emptydir")
        os.makedirs(sock_dir)
        ports = {}

        def localize(container):
            out = []
            for e in container.get("env") or []:
                if "value" in e:
                    env[e["name"]] = expand_env(e["value"], env)
            for a in container.get("args") or []:
                a = expand_env(a, env)
                m = re.match(r"^(--socket)=(.*)$", a)
                if m:
                    a = "%s=%s" % (m.group(1), os.path.join(sock_dir, os.path.basename(m.group(2))))
                m = re.match(r"^(--listen|--listen-tls|--admin|--health)=(.*):(\d+)$", a)
                if m:
                    ports.setdefault(m.group(1), free_port())
                    a = "%s=127.0.0.1:%d" % (m.group(1), ports[m.group(1)])
                out.append(a)
            return out
        ctl_args, dp_args = localize(ctl), localize(dp)
        self.assertIn("--listen", ports, dp_args)
        sadir = os.path.join(tmp, "serviceaccount")
        os.makedirs(sadir)
        with open(os.path.join(sadir, "namespace"), "w") as f:
            f.write(RBAC_NS)
        logs = {}
        for name, binary, args in (("controller", "strait-controller",
                                    ["--kubeconfig", api.kubeconfig] + ctl_args),
                                   ("dataplane", "strait-dataplane", dp_args)):
            logs[name] = os.path.join(tmp, name + ".log")
            with open(logs[name], "wb") as lf:
                procs.append(subprocess.Popen(
                    [os.path.join(BIN, binary)] + args, stdout=lf, stderr=lf,
                    env=dict(os.environ, STRAIT_SERVICEACCOUNT_DIR=sadir, **env)))
        ctl_p, dp_p = procs[1], procs[2]

        def until(what, fn, timeout=RBAC_TIMEOUT):
            deadline = time.monotonic() + timeout
            while True:
                v = fn()
                if v:
                    return v
                if any(p.poll() is not None for p in (ctl_p, dp_p)) or time.monotonic() > deadline:
                    tails = {n: open(p, errors="replace").read()[-2000:] for n, p in logs.items()}
                    self.fail("waiting for %s\n%s" % (what, json.dumps(tails, indent=1)))
                time.sleep(0.02)

        def http(port, host, path="/", headers=None):
            r = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                       headers=dict({"Host": host}, **(headers or {})))
            try:
                with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                        r, timeout=3) as resp:
                    return resp.status, resp.headers.get("X-Backend")
            except urllib.error.HTTPError as e:
                return e.code, e.headers.get("X-Backend")
            except OSError:
                return 0, None

        lport = ports["--listen"]
        until("the Ingress served through the data plane",
              lambda: http(lport, "hello.example.com") == (200, "hello"))
        self.assertEqual(http(lport, "gw.example.com", headers={"x-canary": "1"}), (200, "hello"))
        self.assertEqual(http(lport, "gw.example.com")[0], 404)  # the header match is required
        until("the published address on the Ingress", lambda: (
            (req("GET", "/apis/networking.k8s.io/v1/namespaces/demo/ingresses/hello").get(
                "status") or {}).get("loadBalancer", {}).get("ingress") == [{"ip": "203.0.113.7"}]))
        for p in (dp_p, ctl_p):
            p.terminate()
        for name, p in (("dataplane", dp_p), ("controller", ctl_p)):
            try:
                rc = p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.fail("%s did not stop on SIGTERM" % name)
            self.assertEqual(rc, 0, "%s exit code; log:\n%s" % (
                name, open(logs[name], errors="replace").read()[-2000:]))


def main():
    global BIN, CHART
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build", help="folder with strait-controller and strait-dataplane")
    ap.add_argument("-k", action="append", default=[], help="only checks whose id contains this")
    ap.add_argument("--chart", default=CHART, help="the chart (default charts/strait)")
    args = ap.parse_args()
    CHART = os.path.abspath(args.chart)
    BIN = os.path.abspath(os.path.join(ROOT, args.bin) if not os.path.isabs(args.bin) else args.bin)
    suite = unittest.TestSuite()
    for t in unittest.TestLoader().loadTestsFromModule(sys.modules[__name__]):
        for tt in t:
            if not args.k or any(k in tt.id() for k in args.k):
                suite.addTest(tt)
    t0 = time.monotonic()
    print("install: chart %s, binaries from %s" % (os.path.relpath(CHART, ROOT), BIN), flush=True)
    result = Result()
    suite.run(result)
    if result.testsRun == 0:
        print("install: no checks found")
        result.failed += 1
    print("install: %.1fs" % (time.monotonic() - t0))
    print("install: %d passed, %d failed" % (result.passed, result.failed))
    os.makedirs(BIN, exist_ok=True)
    with open(os.path.join(BIN, "install.counts"), "w") as f:
        f.write("%d %d\n" % (result.passed, result.failed))
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
