"""Bad input is dropped one object at a time: broken manifests are skipped and logged while
the rest serves; conflicting Ingresses resolve by age."""
import os

import harness as h

BROKEN_YAML = """apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: [unclosed
  namespace: default
spec: {rules: [
"""


class BrokenManifestTest(h.StraitTest):
    def test_broken_objects_skipped_and_logged(self):
        ports = self.s.backends("good", "other")
        self.s.write("svc.yaml", h.service_with_endpoints("good", ports["good"]),
                     h.service_with_endpoints("other", ports["other"]),
                     h.service_with_endpoints("other", ports["other"], ns="team-a"))
        self.s.write("good.yaml", h.ingress("good", rules=[("good.test", [("/", "Prefix", "good")])]))
        self.s.write_raw("broken.yaml", BROKEN_YAML)
        self.s.write("bogus.yaml", h.ingress("bogus-type", ns="team-a", rules=[
            ("bogus.test", [("/", "Bogus", "other")])]))
        self.s.write("relpath.yaml", h.ingress("rel-path", rules=[
            ("rel.test", [("foo", "Prefix", "other")])]))
        self.s.write("missing.yaml", h.ingress("missing-svc", rules=[
            ("missing.test", [("/", "Prefix", "nope")])]))
        self.s.start()

        self.assertBackend(self.s.curl("good.test", "/"), "good")
        self.assertStatus(self.s.curl("bogus.test", "/"), 404)
        self.assertStatus(self.s.curl("rel.test", "/foo"), 404)
        r = self.s.curl("missing.test", "/")
        self.assertIn(r.status, (404, 503), repr(r))

        want = [("broken.yaml", None, None),
                ("bogus.yaml", "Ingress", "team-a/bogus-type"),
                ("relpath.yaml", "Ingress", "default/rel-path"),
                ("missing.yaml", "Ingress", "default/missing-svc")]

        def not_logged():
            ev = h.log_events(self.s.controller_log(), "object_rejected")
            return [(fname, kind, obj) for fname, kind, obj in want
                    if not any(os.path.basename(e.get("file", "")) == fname
                               and (kind is None or e.get("kind") == kind)
                               and (obj is None or e.get("object") == obj) for e in ev)]
        try:
            h.wait_until(lambda: not not_logged(), 3, what="object_rejected lines")
        except AssertionError:
            self.fail("no object_rejected line for %s; got %s" % (
                not_logged(), h.log_events(self.s.controller_log(), "object_rejected")))
        for e in h.log_events(self.s.controller_log(), "object_rejected"):
            self.assertTrue(e.get("reason"), "object_rejected without a reason: %s" % e)
        # the good object is never reported
        self.assertFalse([e for e in h.log_events(self.s.controller_log(), "object_rejected")
                          if e.get("object") == "default/good"])

    def test_fixing_a_broken_file_brings_it_in(self):
        port = self.s.backend("late")
        self.s.write("svc.yaml", h.service_with_endpoints("late", port))
        self.s.write_raw("ing.yaml", BROKEN_YAML)
        self.s.write("other.yaml", h.ingress("other", rules=[("other.test", [("/", "Prefix", "late")])]))
        self.s.start()
        self.assertStatus(self.s.curl("late.test", "/"), 404)
        self.s.write("ing.yaml", h.ingress("late", rules=[("late.test", [("/", "Prefix", "late")])]))
        self.s.wait_backend("late.test", "/", "late", timeout=3)


class ConflictTest(h.StraitTest):
    def test_older_ingress_wins(self):
        ports = self.s.backends("older", "newer")
        self.s.write("svc.yaml", h.service_with_endpoints("older", ports["older"]),
                     h.service_with_endpoints("newer", ports["newer"]))
        # The newer Ingress comes first by file name and by object name, so neither order
        # can make it lose by accident.
        self.s.write("a-newer.yaml", h.ingress("aaa-newer", created="2024-06-01T00:00:00Z", rules=[
            ("c.test", [("/x", "Prefix", "newer"), ("/y", "Prefix", "newer")])]))
        self.s.write("z-older.yaml", h.ingress("zzz-older", created="2024-01-01T00:00:00Z", rules=[
            ("c.test", [("/x", "Prefix", "older")])]))
        self.s.start()
        for _ in range(3):
            self.assertBackend(self.s.curl("c.test", "/x"), "older")
        # the loser's other, non-conflicting path is still served
        self.assertBackend(self.s.curl("c.test", "/y"), "newer")

        def logged():
            return [e for e in h.log_events(self.s.controller_log(), "ingress_conflict")
                    if e.get("host") == "c.test" and e.get("path") == "/x"
                    and e.get("winner") == "default/zzz-older"
                    and e.get("loser") == "default/aaa-newer"]
        h.wait_until(logged, 3, what="ingress_conflict host=c.test path=/x "
                                     "winner=default/zzz-older loser=default/aaa-newer")
