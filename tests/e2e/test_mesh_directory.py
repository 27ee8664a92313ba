"""The mesh directory in the snapshot (controller --mesh, snapwire v7 MESH_SERVICES / MESH_IDS):
one record per ClusterIP x Service port with its cluster, protocol, mTLS flag and the SPIFFE
identities of the pods behind it. Read from the controller's /snapshot (the frame it publishes,
decoded) and from --dump, in file mode and in cluster mode against the stand-in API server
(Pods listed and watched like the other kinds). Every wait polls."""
import json
import os
import subprocess

import harness
from harness import StraitTest, BIN, free_port, wait_until

ID = "spiffe://cluster.local/ns/%s/sa/%s"


def service(name, ips, ports, ns="default", annotations=None):
    meta = {"name": name, "namespace": ns}
    if annotations:
        meta["annotations"] = annotations
    spec = {"clusterIP": ips[0], "clusterIPs": list(ips), "ports": ports}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def slice_(name, svc, ports, eps, ns="default"):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": ports,
            "endpoints": [{"addresses": [ip], "targetRef": {"kind": "Pod", "name": pod}}
                          if pod else {"addresses": [ip]} for ip, pod in eps]}


def pod(name, ip, sa=None, meshed=True, sidecar=False, ns="default"):
    meta = {"name": name, "namespace": ns}
    if meshed and not sidecar:
        meta["annotations"] = {"strait.dev/inject": "enabled"}
    containers = [{"name": "app", "image": "app"}]
    if sidecar:
        containers.append({"name": "strait-proxy", "image": "strait"})
    spec = {"containers": containers}
    if sa:
        spec["serviceAccountName"] = sa
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}


def objects():
    """web: dual stack, two meshed pods (accounts web and default); db: opaque, one pod
    unmeshed; headless: none."""
    return [
        service("web", ["10.96.0.10", "fd00::10"],
                [{"name": "http", "port": 80}, {"name": "grpc", "port": 9090,
                                                "appProtocol": "kubernetes.io/h2c"}]),
        slice_("web-1", "web", [{"name": "http", "port": 8080}, {"name": "grpc", "port": 9091}],
               [("10.0.0.1", "web-a"), ("10.0.0.2", None)]),
        pod("web-a", "10.0.0.1", sa="web"),
        pod("web-b", "10.0.0.2", sidecar=True),
        service("db", ["10.96.0.20"], [{"name": "pg", "port": 5432}],
                annotations={"strait.dev/opaque-ports": "5432"}),
        slice_("db-1", "db", [{"name": "pg", "port": 5432}], [("10.0.1.1", "db-0")]),
        pod("db-0", "10.0.1.1", sa="db", meshed=False),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hl", "namespace": "default"},
         "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}},
    ]


def directory(snap):
    """{(address, port): (cluster, protocol, mtls, identities)} of a /snapshot JSON."""
    return {(m["address"], m["port"]): (m["cluster"], m["protocol"], m["mtls"], m["identities"])
            for m in snap.get("mesh_services", [])}


WANT = {
    ("10.96.0.10", 80): ("default/web:80", "http", True, [ID % ("default", "default"),
                                                         ID % ("default", "web")]),
    ("10.96.0.10", 9090): ("default/web:9090", "opaque", True, [ID % ("default", "default"),
                                                               ID % ("default", "web")]),
    ("fd00::10", 80): ("default/web:80", "http", True, [ID % ("default", "default"),
                                                       ID % ("default", "web")]),
    ("fd00::10", 9090): ("default/web:9090", "opaque", True, [ID % ("default", "default"),
                                                             ID % ("default", "web")]),
    ("10.96.0.20", 5432): ("default/db:5432", "opaque", False, []),
}


def wait_directory(test, get, want, what, timeout=15):
    """Polls get() until it returns want; on timeout, fails with the last value's diff."""
    last = []

    def ok():
        last[:] = [get()]
        return last[0] == want
    try:
        wait_until(ok, timeout, what=what)
    except AssertionError:
        test.assertEqual(last[0], want, what)
        raise


class MeshDirectoryFileMode(StraitTest):
    def dump(self, *extra):
        p = subprocess.run([os.path.join(BIN, "strait-controller"), "--manifests", self.s.mdir,
                            "--dump"] + list(extra), capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def test_dump_and_live_snapshot(self):
        self.s.write("mesh.yaml", *objects())
        # without --mesh: no mesh keys, and no cluster for Services no Ingress uses
        plain = self.dump()
        self.assertNotIn("mesh_services", plain)
        self.assertNotIn("trust_domain", plain)
        self.assertEqual(plain["clusters"], [])
        snap = self.dump("--mesh", "--trust-domain", "cluster.local", "--cluster-domain",
                         "corp.example")
        self.assertEqual(snap["trust_domain"], "cluster.local")
        self.assertEqual(snap["cluster_domain"], "corp.example")
        self.assertEqual(directory(snap), WANT)
        eps = {c["name"]: c["endpoints"] for c in snap["clusters"]}
        self.assertEqual(eps["default/web:80"], ["10.0.0.1:8080", "10.0.0.2:8080"])
        self.assertEqual(eps["default/db:5432"], ["10.0.1.1:5432"])
        # the running controller publishes the same and follows changes
        tokens, root = os.path.join(self.s.dir, "tokens"), os.path.join(self.s.dir, "root")
        os.makedirs(root)
        with open(tokens, "w") as f:
            f.write("tok default web\n")
        self.s.ctl_health_port = free_port()
        self.s.controller("--mesh", "--mesh-token-file", tokens, "--mesh-listen",
                          "127.0.0.1:%d" % free_port(), "--mesh-root-dir", root, "--health",
                          "127.0.0.1:%d" % self.s.ctl_health_port)
        self.s.dataplane()

        def live():
            st, body = self.s.ctl_get("/snapshot")
            return directory(json.loads(body)) if st == 200 else None
        wait_directory(self, live, WANT, "mesh directory on /snapshot")
        # the data plane took the v7 frame
        st, body = self.s.admin_get("/snapshot")
        self.assertEqual(st, 200)
        self.assertEqual(directory(json.loads(body)), WANT)
        # the db pod gets the sidecar: db becomes mTLS with its identity
        objs = objects()
        objs[6] = pod("db-0", "10.0.1.1", sa="db", sidecar=True)
        self.s.write_atomic("mesh.yaml", *objs)
        want = dict(WANT)
        want[("10.96.0.20", 5432)] = ("default/db:5432", "opaque", True, [ID % ("default", "db")])
        wait_directory(self, live, want, "db meshed")

    def test_bad_domains_refused(self):
        for extra in (["--trust-domain", "Bad_Domain"], ["--cluster-domain", "a..b"]):
            p = subprocess.run([os.path.join(BIN, "strait-controller"), "--manifests", self.s.mdir,
                                "--dump", "--mesh"] + extra, capture_output=True, text=True,
                               timeout=20)
            self.assertEqual(p.returncode, 2, extra)
            self.assertIn("want DNS names", p.stderr)
        p = subprocess.run([os.path.join(BIN, "strait-controller"), "--manifests", self.s.mdir,
                            "--dump", "--cluster-domain", "x.local"], capture_output=True,
                           text=True, timeout=20)
        self.assertEqual(p.returncode, 2)  # a mesh flag without --mesh


class MeshDirectoryClusterMode(StraitTest):
    COLL = {"Service": "/api/v1/namespaces/%s/services", "Pod": "/api/v1/namespaces/%s/pods",
            "EndpointSlice": "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices"}

    def put(self, obj, method="POST"):
        path = self.COLL[obj["kind"]] % obj["metadata"]["namespace"]
        if method == "PUT":
            path += "/" + obj["metadata"]["name"]
        code, body = self.api.request(method, path, obj)
        self.assertIn(code, (200, 201), "%s %s: %s %r" % (method, obj["kind"], code, body))
        if obj["kind"] == "Pod":  # status is the kubelet's: written through the subresource
            path = self.COLL["Pod"] % obj["metadata"]["namespace"] + "/" + obj["metadata"]["name"]
            code, cur = self.api.request("GET", path)
            cur["status"] = obj["status"]
            code, body = self.api.request("PUT", path + "/status", cur)
            self.assertEqual(code, 200, "pod status: %s %r" % (code, body))

    def test_pods_listed_and_watched(self):
        self.api = self.s.apiserver()
        for obj in objects():
            self.put(obj)
        self.s.cluster_controller("--mesh", "--mesh-listen", "127.0.0.1:%d" % free_port(),
                                  kubeconfig=self.api.kubeconfig)

        def live():
            st, body = self.s.ctl_get("/snapshot")
            return directory(json.loads(body)) if st == 200 else None
        wait_directory(self, live, WANT, "mesh directory from the API")
        m = self.s.ctl_metrics()
        self.assertEqual(m['strait_controller_objects_cached{kind="Pod"}'], 3)
        # a watched change: web-a loses its annotation, so web is no longer all meshed
        self.put(pod("web-a", "10.0.0.1", sa="web", meshed=False), method="PUT")
        want = dict(WANT)
        for k in list(want):
            if k[0] != "10.96.0.20":
                want[k] = (want[k][0], want[k][1], False, [])
        wait_directory(self, live, want, "web plain after the pod change")
        # the controller listed and watched pods in every namespace
        paths = [r["path"] for r in self.api.control("GET", "requests")["items"]]
        self.assertIn("/api/v1/pods", paths)
