"""Offline checks of the AuthorizationPolicy CRD (crds/strait.dev_authorizationpolicies.yaml)
and its example (manifests/examples/mesh/authorization.yaml), with test_crd_schema.py's
machinery (structural rules, jsonschema validation, the CEL evaluator of tools/cel.sh).

What it checks: the CRD is a structural schema within the apiserver's limits; the example
validates and passes the CEL rule after defaulting (action Allow); a from[] entry that names
no caller fails exactly the CEL rule and passes once fixed; a table of bad policies each
fails the structural schema for the intended reason.
"""
import copy
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_crd_schema as g  # noqa: E402

AUTHZ = g.Crd(os.path.join(g.ROOT, "crds", "strait.dev_authorizationpolicies.yaml"))
EXAMPLE = os.path.join(g.ROOT, "manifests", "examples", "mesh", "authorization.yaml")
RULE_MSG = ("each from entry must set identities, serviceAccounts, namespaces, authenticated "
            "or unauthenticated")


def base():
    return {
        "apiVersion": "strait.dev/v1alpha1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {"targetRef": {"kind": "Service", "name": "backend"}, "port": 80,
                 "from": [{"serviceAccounts": [{"name": "frontend"}]}]},
    }


def with_spec(**kv):
    d = base()
    d["spec"].update(kv)
    return d


def verdicts(docs):
    return g.cel_verdicts([g.apply_defaults(copy.deepcopy(d), AUTHZ.schema) for d in docs], AUTHZ)


class AuthzCrdTest(unittest.TestCase):
    def test_names(self):
        c = AUTHZ.crd
        self.assertEqual(c["metadata"]["name"], "authorizationpolicies.strait.dev")
        n = c["spec"]["names"]
        self.assertEqual((n["kind"], n["plural"], n["singular"], n["listKind"], n["shortNames"]),
                         ("AuthorizationPolicy", "authorizationpolicies", "authorizationpolicy",
                          "AuthorizationPolicyList", ["sap"]))
        self.assertEqual(c["spec"]["scope"], "Namespaced")
        self.assertEqual(AUTHZ.version["subresources"], {"status": {}})

    def test_structural_and_cost(self):
        problems = g.structural_problems(AUTHZ.schema) + g.cel_cost_problems(AUTHZ.schema,
                                                                              AUTHZ.rules)
        self.assertEqual(problems, [], "\n".join(problems))
        errors, _ = g.cel_run([r for _, r, _ in AUTHZ.rules], [])
        self.assertEqual([e for e in errors if e], [])

    def test_example_validates_and_passes_cel(self):
        with open(EXAMPLE) as f:
            docs = [d for d in g.yaml.safe_load_all(f) if d and d["kind"] == "AuthorizationPolicy"]
        self.assertEqual(len(docs), 2)
        for d in docs:
            self.assertEqual(g.schema_errors(d, AUTHZ), [], d["metadata"]["name"])
        for v in verdicts(docs):
            self.assertEqual(g.failed_rules(v), set())
        self.assertEqual(g.apply_defaults(base(), AUTHZ.schema)["spec"]["action"], "Allow")

    def test_from_entry_naming_no_caller_fails_the_rule(self):
        bad = [with_spec(**{"from": [{}]}),
               with_spec(**{"from": [{"authenticated": False}]}),
               with_spec(**{"from": [{"namespaces": ["a"]}, {"unauthenticated": False}]})]
        good = [with_spec(**{"from": [{"authenticated": True}]}),
                with_spec(**{"from": [{"unauthenticated": True}, {"namespaces": ["a"]}]}),
                with_spec(**{"from": [{"identities": ["spiffe://cluster.local/ns/a/sa/b"]}]})]
        for d in bad + good:
            self.assertEqual(g.schema_errors(d, AUTHZ), [], d)
        for v in verdicts(bad):
            self.assertEqual(g.failed_rules(v), {RULE_MSG})
        for v in verdicts(good):
            self.assertEqual(g.failed_rules(v), set())

    def test_bad_policies(self):
        ref = {"kind": "Service", "name": "backend"}
        cases = [
            ("no targetRef", {"targetRef": None}, "required"),
            ("target kind Pod", {"targetRef": {"kind": "Pod", "name": "b"}}, "enum"),
            ("target group apps", {"targetRef": dict(ref, group="apps")}, "maxLength"),
            ("target name upper case", {"targetRef": {"kind": "Service", "name": "B"}}, "pattern"),
            ("port 0", {"port": 0}, "minimum"),
            ("port 65536", {"port": 65536}, "maximum"),
            ("action allow", {"action": "allow"}, "enum"),
            ("no from", {"from": None}, "required"),
            ("empty from", {"from": []}, "minItems"),
            ("65 sources", {"from": [{"authenticated": True}] * 65}, "maxItems"),
            ("identity not spiffe", {"from": [{"identities": ["https://a/b"]}]}, "pattern"),
            ("identity without a path", {"from": [{"identities": ["spiffe://cluster.local"]}]},
             "pattern"),
            ("empty identities", {"from": [{"identities": []}]}, "minItems"),
            ("serviceAccount without name", {"from": [{"serviceAccounts": [{"namespace": "a"}]}]},
             "required"),
            ("namespace with a dot", {"from": [{"namespaces": ["a.b"]}]}, "pattern"),
            ("authenticated a string", {"from": [{"authenticated": "true"}]}, "type"),
            ("unknown field", {"from": [{"principals": ["x"]}]}, "additionalProperties"),
        ]
        for name, mod, want in cases:
            d = base()
            for k, v in mod.items():
                if v is None:
                    del d["spec"][k]
                else:
                    d["spec"][k] = v
            got = {e[0] for e in g.schema_errors(d, AUTHZ)}
            self.assertIn(want, got, "%s: %s" % (name, got))


if __name__ == "__main__":
    unittest.main()
