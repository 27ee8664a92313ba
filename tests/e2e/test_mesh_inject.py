"""Sidecar injection both ways: `strait-controller inject -f` on manifests (YAML and JSON, every
workload kind, Lists, stdin), its output validated against the Kubernetes OpenAPI schemas
(tools/k8s-validate.mjs: kubernetes-models from npm, unknown fields rejected), and the
admission webhook (POST /inject on the controller's mesh HTTPS server, curl with the mesh root
as CA): its JSON Patch, applied by the small RFC 6902 applier below, gives exactly what
`inject -f` gives for the same pod."""
import base64
import copy
import json
import os
import re
import subprocess

import yaml

from harness import StraitTest, free_port, wait_until, BIN, ROOT

CTL = os.path.join(BIN, "strait-controller")
K8S_VALIDATE = os.path.join(ROOT, "tools", "k8s-validate.mjs")

TEMPLATE = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{"name": "app", "image": "nginx:1.27",
                             "ports": [{"containerPort": 8080}]}]},
}


def workload(kind, api, name, **spec):
    body = {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": "shop"},
            "spec": spec}
    return body


def manifests():
    t = copy.deepcopy(TEMPLATE)
    t_with = copy.deepcopy(TEMPLATE)
    t_with["metadata"]["annotations"] = {"strait.dev/skip-outbound-ports": "5432",
                                         "strait.dev/skip-outbound-cidrs": "10.96.0.1/32"}
    t_with["spec"]["initContainers"] = [{"name": "migrate", "image": "busybox:1.36"}]
    t_with["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    job_t = copy.deepcopy(TEMPLATE)
    job_t["spec"]["restartPolicy"] = "Never"
    sel = {"matchLabels": {"app": "web"}}
    return [
        workload("Deployment", "apps/v1", "web", selector=sel, template=t_with),
        workload("StatefulSet", "apps/v1", "db", selector=sel, serviceName="db", template=t),
        workload("DaemonSet", "apps/v1", "agent", selector=sel, template=t),
        workload("ReplicaSet", "apps/v1", "rs", selector=sel, template=t),
        workload("Job", "batch/v1", "once", template=job_t),
        workload("CronJob", "batch/v1", "nightly", schedule="0 3 * * *",
                 jobTemplate={"spec": {"template": job_t}}),
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo", "namespace": "shop"},
         "spec": copy.deepcopy(TEMPLATE["spec"])},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
    ]


def pod_of(obj):
    kind = obj["kind"]
    if kind == "Pod":
        return obj
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    if kind == "Service":
        return None
    return obj["spec"]["template"]


def run_inject(*args, stdin=None):
    return subprocess.run([CTL, "inject"] + list(args), input=stdin, capture_output=True,
                          text=True, timeout=30)


def k8s_validate(objs):
    p = subprocess.run(["node", K8S_VALIDATE], capture_output=True, text=True, timeout=600,
                       input=json.dumps([{"where": str(i), "object": o}
                                         for i, o in enumerate(objs)]))
    if p.returncode not in (0, 1):
        raise AssertionError("k8s-validate failed (rc %d): %s" % (p.returncode, p.stderr))
    return {r["where"]: r["errors"] for r in json.loads(p.stdout) if r["errors"]}


# -- RFC 6902, as much as a webhook's patch uses (add, with "-" and indexes; others refused) --
def _unescape(tok):
    return tok.replace("~1", "/").replace("~0", "~")


def apply_patch(doc, patch):
    doc = copy.deepcopy(doc)
    for op in patch:
        if op["op"] != "add":
            raise AssertionError("unexpected op %r" % op)
        assert op["path"].startswith("/"), op
        toks = [_unescape(t) for t in op["path"][1:].split("/")]
        cur = doc
        for t in toks[:-1]:
            cur = cur[int(t)] if isinstance(cur, list) else cur[t]
        last = toks[-1]
        if isinstance(cur, list):
            idx = len(cur) if last == "-" else int(last)
            assert 0 <= idx <= len(cur), op
            cur.insert(idx, copy.deepcopy(op["value"]))
        else:
            assert isinstance(cur, dict), op
            cur[last] = copy.deepcopy(op["value"])
    return doc


def chart_image():
    with open(os.path.join(ROOT, "charts", "strait", "Chart.yaml")) as f:
        app = yaml.safe_load(f)["appVersion"]
    with open(os.path.join(ROOT, "charts", "strait", "values.yaml")) as f:
        repo = yaml.safe_load(f)["image"]["repository"]
    return "%s:%s" % (repo, app), app


class InjectCommand(StraitTest):
    def anchors(self):
        path = os.path.join(self.s.dir, "anchors.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                        os.path.join(self.s.dir, "a.key"), "-subj", "/CN=root", "-days", "2",
                        "-out", path], check=True, capture_output=True)
        return path

    def test_yaml_workloads_valid_and_idempotent(self):
        src = os.path.join(self.s.dir, "in.yaml")
        with open(src, "w") as f:
            yaml.safe_dump_all(manifests(), f, sort_keys=False)
        anchors = self.anchors()
        p = run_inject("-f", src, "--trust-anchors", anchors)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = list(yaml.safe_load_all(p.stdout))
        self.assertEqual([o["kind"] for o in out], [o["kind"] for o in manifests()])
        self.assertEqual(len(re.findall(r": injected$", p.stderr, re.M)), 7, p.stderr)
        self.assertEqual(k8s_validate(out), {})
        broken = copy.deepcopy(out[0])  # the validator does see a field the schema lacks
        pod_of(broken)["spec"]["initContainers"][1]["restartPolicyX"] = "Always"
        self.assertTrue(k8s_validate([broken]))
        image, version = chart_image()
        pem = open(anchors).read()
        for obj, orig in zip(out, manifests()):
            pod, opod = pod_of(obj), pod_of(orig)
            if pod is None:
                self.assertEqual(obj, orig)  # not a workload: unchanged
                continue
            ann = pod["metadata"]["annotations"]
            self.assertEqual(ann["strait.dev/injected"], "true")
            self.assertEqual(ann["strait.dev/proxy-version"], version)
            init = pod["spec"]["initContainers"]
            own = [c["name"] for c in opod["spec"].get("initContainers", [])]
            self.assertEqual([c["name"] for c in init], ["strait-init", "strait-proxy"] + own)
            mi, px = init[0], init[1]
            self.assertEqual(mi["image"], image)
            self.assertEqual(px["image"], image)
            self.assertEqual(mi["securityContext"]["capabilities"],
                             {"add": ["NET_ADMIN"], "drop": ["ALL"]})
            self.assertEqual(mi["securityContext"]["runAsUser"], 0)
            args = mi["args"]
            self.assertEqual(args[:7], ["mesh-init", "--proxy-uid", "2102", "--inbound-port",
                                        "4143", "--outbound-port", "4140"])
            self.assertEqual(args[args.index("--exclude-inbound-ports") + 1], "4191")
            if obj["kind"] == "Deployment":
                self.assertEqual(args[args.index("--exclude-outbound-ports") + 1], "5432")
                self.assertEqual(args[args.index("--exclude-outbound-cidrs") + 1],
                                 "10.96.0.1/32")
            self.assertEqual(px["restartPolicy"], "Always")
            env = {e["name"]: e for e in px["env"]}
            self.assertEqual(env["STRAIT_MESH_TRUST_ANCHORS"]["value"], pem)
            self.assertEqual(env["STRAIT_MESH_IDENTITY_ADDR"]["value"],
                             "strait-controller.strait-system.svc:8443")
            self.assertEqual(env["STRAIT_SERVICE_ACCOUNT"]["valueFrom"]["fieldRef"]["fieldPath"],
                             "spec.serviceAccountName")
            self.assertEqual(px["securityContext"]["runAsUser"], 2102)
            self.assertTrue(px["securityContext"]["readOnlyRootFilesystem"])
            self.assertEqual(px["readinessProbe"]["httpGet"], {"path": "/ready", "port": 4191})
            self.assertEqual(px["resources"], {"requests": {"cpu": "10m", "memory": "16Mi"},
                                               "limits": {"memory": "64Mi"}})
            vols = pod["spec"]["volumes"]
            own_v = opod["spec"].get("volumes", [])
            self.assertEqual(vols[:len(own_v)], own_v)
            self.assertEqual(vols[len(own_v)]["projected"]["sources"][0]["serviceAccountToken"],
                             {"audience": "strait", "expirationSeconds": 86400, "path": "token"})
            self.assertEqual(px["volumeMounts"][0]["mountPath"],
                             "/var/run/secrets/strait.dev/serviceaccount")
            # the app containers and everything else are as they were
            self.assertEqual(pod["spec"]["containers"], opod["spec"]["containers"])
        # again: nothing changes (stdin this time)
        p2 = run_inject("-f", "-", "--trust-anchors", anchors, stdin=p.stdout)
        self.assertEqual(p2.returncode, 0, p2.stderr)
        self.assertEqual(p2.stdout, p.stdout)
        self.assertEqual(len(re.findall(r"already injected$", p2.stderr, re.M)), 7, p2.stderr)

    def test_json_list_and_skips(self):
        pods = [
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n, "namespace": "shop",
                                                              "annotations": ann},
             "spec": dict(copy.deepcopy(TEMPLATE["spec"]), **extra)}
            for n, ann, extra in [("off", {"strait.dev/inject": "disabled"}, {}),
                                  ("host", {}, {"hostNetwork": True}),
                                  ("on", {"strait.dev/inject": "enabled"}, {})]]
        lst = {"apiVersion": "v1", "kind": "List", "items": pods}
        src = os.path.join(self.s.dir, "in.json")
        with open(src, "w") as f:
            json.dump(lst, f)
        p = run_inject("-f", src, "--proxy-image", "reg.example/strait:9", "--identity-addr",
                       "id.mesh:9443")
        self.assertEqual(p.returncode, 0, p.stderr)
        out = json.loads(p.stdout)  # JSON in, JSON out
        self.assertEqual(out["items"][0], pods[0])
        self.assertEqual(out["items"][1], pods[1])
        self.assertIn("shop/host: skipped: hostNetwork", p.stderr)
        self.assertIn("shop/off: skipped: strait.dev/inject is disabled", p.stderr)
        self.assertIn("no --trust-anchors", p.stderr)
        init = out["items"][2]["spec"]["initContainers"]
        self.assertEqual(init[1]["image"], "reg.example/strait:9")
        self.assertIn({"name": "STRAIT_MESH_IDENTITY_ADDR", "value": "id.mesh:9443"},
                      init[1]["env"])
        self.assertEqual(k8s_validate(out["items"]), {})
        # -o yaml of JSON input
        p = run_inject("-f", src, "-o", "yaml", "--proxy-image", "reg.example/strait:9",
                       "--identity-addr", "id.mesh:9443")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(yaml.safe_load(p.stdout), out)

    def test_bad_input(self):
        for name, text in [("broken.yaml", "kind: Pod\nmetadata: [\n"),
                           ("broken.json", '{"kind": "Pod",'),
                           ("badann.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n"
                            "  annotations: {strait.dev/skip-inbound-ports: '80,http'}\n"
                            "spec: {containers: [{name: a, image: x}]}\n")]:
            path = os.path.join(self.s.dir, name)
            with open(path, "w") as f:
                f.write(text)
            p = run_inject("-f", path)
            self.assertEqual(p.returncode, 1, (name, p.stdout, p.stderr))
            self.assertEqual(p.stdout, "")
            self.assertIn(name, p.stderr)
        p = run_inject("-f", os.path.join(self.s.dir, "missing.yaml"))
        self.assertEqual(p.returncode, 1)
        self.assertIn("No such file", p.stderr)
        self.assertEqual(run_inject().returncode, 2)
        self.assertEqual(run_inject("-f", "x", "-o", "toml").returncode, 2)


class InjectWebhook(StraitTest):
    def start(self):
        tokens = os.path.join(self.s.dir, "tokens")
        with open(tokens, "w") as f:
            f.write("tok default web\n")
        self.bundle = os.path.join(self.s.dir, "bundle.pem")
        self.port = free_port()
        os.makedirs(os.path.join(self.s.dir, "root"))
        self.s.controller("--mesh", "--mesh-token-file", tokens, "--mesh-listen",
                          "127.0.0.1:%d" % self.port, "--mesh-root-dir",
                          os.path.join(self.s.dir, "root"), "--mesh-trust-bundle-out",
                          self.bundle, "--mesh-proxy-image", "reg.example/strait:7",
                          "--mesh-identity-addr", "strait.mesh.svc:8443")
        wait_until(lambda: os.path.exists(self.bundle), 10, what="trust bundle file")

    def review(self, body):
        p = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}",
                            "--cacert", self.bundle, "--resolve",
                            "localhost:%d:127.0.0.1" % self.port,
                            "-H", "Content-Type: application/json", "--data-binary",
                            body if isinstance(body, str) else json.dumps(body),
                            "https://localhost:%d/inject" % self.port],
                           capture_output=True, text=True)
        out, _, code = p.stdout.rpartition("\n")
        return int(code or 0), (json.loads(out) if out.startswith("{") else out)

    @staticmethod
    def admission(pod, uid="8c1a-1"):
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
                            "resource": {"group": "", "version": "v1", "resource": "pods"},
                            "namespace": "shop", "operation": "CREATE", "object": pod}}

    def test_patch_equals_inject(self):
        self.start()
        pods = [
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"generateName": "web-", "namespace": "shop", "labels": {"app": "web"}},
             "spec": copy.deepcopy(TEMPLATE["spec"])},
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "p", "annotations": {"strait.dev/inject": "enabled",
                                                       "odd~key/with": "slash",
                                                       "strait.dev/skip-outbound-ports": "443"}},
             "spec": dict(copy.deepcopy(TEMPLATE["spec"]),
                          initContainers=[{"name": "first", "image": "busybox:1.36"}],
                          volumes=[{"name": "v", "emptyDir": {}}])},
        ]
        for i, pod in enumerate(pods):
            st, resp = self.review(self.admission(pod, uid="uid-%d" % i))
            self.assertEqual(st, 200, resp)
            self.assertEqual(resp["apiVersion"], "admission.k8s.io/v1")
            self.assertEqual(resp["kind"], "AdmissionReview")
            r = resp["response"]
            self.assertEqual(r["uid"], "uid-%d" % i)
            self.assertIs(r["allowed"], True)
            self.assertEqual(r["patchType"], "JSONPatch")
            patched = apply_patch(pod, json.loads(base64.b64decode(r["patch"])))
            src = os.path.join(self.s.dir, "pod%d.json" % i)
            with open(src, "w") as f:
                json.dump(pod, f)
            p = run_inject("-f", src, "--trust-anchors", self.bundle, "--proxy-image",
                           "reg.example/strait:7", "--identity-addr", "strait.mesh.svc:8443")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(patched, json.loads(p.stdout))
            self.assertEqual(k8s_validate([patched]), {})
            env = {e["name"]: e.get("value") for e in
                   patched["spec"]["initContainers"][1]["env"]}
            self.assertEqual(env["STRAIT_MESH_TRUST_ANCHORS"], open(self.bundle).read())

    def test_no_patch_and_bad_reviews(self):
        self.start()
        spec = copy.deepcopy(TEMPLATE["spec"])
        cases = [({"metadata": {"annotations": {"strait.dev/inject": "disabled"}}, "spec": spec},
                  True, False),
                 ({"metadata": {"annotations": {"strait.dev/injected": "true"}}, "spec": spec},
                  True, False),
                 ({"metadata": {"name": "h"}, "spec": dict(spec, hostNetwork=True)}, True, True),
                 ({"metadata": {"annotations": {"strait.dev/skip-outbound-cidrs": "10.0.0.1/8"}},
                   "spec": spec}, False, False)]
        for pod, allowed, warned in cases:
            pod = dict(pod, apiVersion="v1", kind="Pod")
            st, resp = self.review(self.admission(pod))
            self.assertEqual(st, 200, resp)
            r = resp["response"]
            self.assertIs(r["allowed"], allowed, r)
            self.assertNotIn("patch", r)
            self.assertEqual("warnings" in r, warned, r)
            if not allowed:
                self.assertIn("skip-outbound-cidrs", r["status"]["message"])
        for bad in ["{", "[]", {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"},
                    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                     "request": {"object": {"spec": spec}}}]:
            st, resp = self.review(bad)
            self.assertEqual(st, 400, (bad, resp))
            self.assertIn("error", resp)
