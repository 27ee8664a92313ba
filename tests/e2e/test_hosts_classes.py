"""Host matching (exact, one-label wildcard, catch-all, case, ports) and IngressClass
selection (ingressClassName, legacy annotation, default class, --ingress-class)."""
import harness as h


class HostMatchTest(h.SharedStackTest):
    @classmethod
    def build(cls, s):
        ports = s.backends("exact", "wild", "wild-w", "any")
        docs = [h.ingress_class("strait")]
        for n, p in ports.items():
            docs += h.service_with_endpoints(n, p)
        s.write("services.yaml", docs)
        s.write("ingress.yaml", h.ingress("hosts", rules=[
            ("foo.com", [("/app", "Prefix", "exact")]),
            ("*.foo.com", [("/", "Prefix", "wild")]),
            ("*.w.test", [("/", "Prefix", "wild-w")]),
            (None, [("/", "Prefix", "any")]),
        ]))
        s.start()

    def check(self, host, path, want):
        r = self.stack.curl(host, path)
        if isinstance(want, int):
            self.assertEqual(r.status, want, "Host %r %s: %r" % (host, path, r))
        else:
            self.assertEqual((r.status, r.backend), (200, want), "Host %r %s: %r" % (host, path, r))

    def test_exact_host(self):
        self.check("foo.com", "/app", "exact")
        self.check("foo.com", "/app/x", "exact")

    def test_host_case_insensitive(self):
        self.check("FOO.COM", "/app", "exact")
        self.check("Bar.Foo.Com", "/", "wild")

    def test_host_with_port(self):
        self.check("foo.com:8080", "/app", "exact")
        self.check("bar.foo.com:1234", "/", "wild")

    def test_wildcard_one_label(self):
        self.check("bar.foo.com", "/", "wild")
        self.check("x.w.test", "/any/thing", "wild-w")

    def test_wildcard_not_two_labels(self):
        self.check("baz.bar.foo.com", "/", "any")
        self.check("y.x.w.test", "/", "any")

    def test_wildcard_not_bare_domain(self):
        self.check("w.test", "/", "any")

    def test_rule_without_host_catches_others(self):
        self.check("other.org", "/x", "any")
        r = h.curl(self.stack.port, "/x", workdir=self.stack.dir)  # Host: 127.0.0.1:port
        self.assertEqual((r.status, r.backend), (200, "any"), repr(r))

    def test_no_fallback_from_chosen_host(self):
        # foo.com has only /app; the catch-all "/" is not consulted (ingress-nginx), and
        # there is no default backend: 404.
        self.check("foo.com", "/zzz", 404)


def _class_stack(test, class_docs, ctl_args=()):
    s = test.s
    ports = s.backends("named", "other-class", "legacy", "legacy-other", "no-class")
    docs = list(class_docs)
    for n, p in ports.items():
        docs += h.service_with_endpoints(n, p)
    s.write("services.yaml", docs)
    s.write("named.yaml", h.ingress("named", rules=[("named.test", [("/", "Prefix", "named")])]))
    s.write("other.yaml", h.ingress("other", cls="other",
                                    rules=[("other.test", [("/", "Prefix", "other-class")])]))
    s.write("legacy.yaml", h.ingress(
        "legacy", cls=None, annotations={"kubernetes.io/ingress.class": "strait"},
        rules=[("legacy.test", [("/", "Prefix", "legacy")])]))
    s.write("legacy-other.yaml", h.ingress(
        "legacy-other", cls=None, annotations={"kubernetes.io/ingress.class": "other"},
        rules=[("legacy-other.test", [("/", "Prefix", "legacy-other")])]))
    s.write("noclass.yaml", h.ingress("noclass", cls=None,
                                      rules=[("noclass.test", [("/", "Prefix", "no-class")])]))
    s.start(*ctl_args)


class IngressClassTest(h.StraitTest):
    def served(self, host, backend):
        self.assertBackend(self.s.curl(host, "/"), backend, "%s should be served" % host)

    def ignored(self, host):
        self.assertStatus(self.s.curl(host, "/"), 404, "%s should be ignored" % host)

    def test_class_name_and_legacy_annotation(self):
        _class_stack(self, [h.ingress_class("strait"), h.ingress_class("other", controller="x/y")])
        self.served("named.test", "named")
        self.served("legacy.test", "legacy")
        self.ignored("other.test")
        self.ignored("legacy-other.test")
        self.ignored("noclass.test")  # no default IngressClass

    def test_default_class_serves_ingress_without_class(self):
        _class_stack(self, [h.ingress_class("strait", default=True)])
        self.served("noclass.test", "no-class")
        self.served("named.test", "named")
        self.ignored("other.test")

    def test_ingress_class_flag(self):
        _class_stack(self, [h.ingress_class("strait", default=True),
                            h.ingress_class("other", controller="strait.dev/ingress-controller")],
                     ctl_args=("--ingress-class", "other"))
        self.served("other.test", "other-class")
        self.served("legacy-other.test", "legacy-other")
        self.ignored("named.test")
        self.ignored("legacy.test")
        self.ignored("noclass.test")  # the default class is strait, not ours
