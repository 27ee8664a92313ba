"""The Kubernetes Ingress path-matching table (data/ingress_path_table.tsv), end to end: each
row is an Ingress on its own host, each rule path its own backend; the test checks which
backend answers each request path. One stack serves all rows; each row is a test."""
import os

import harness as h

TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "ingress_path_table.tsv")


def load_rows():
    rows = []
    with open(TABLE) as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.rstrip("\n").split("\t")
            kind, paths, requests, match, matched = cols[:5]
            note = cols[5] if len(cols) > 5 else ""
            rules = []
            for p in paths.split(","):
                p = p.strip()
                if p.endswith(")") and "(" in p:
                    p, t = p[:-1].split("(")
                else:
                    t = kind
                rules.append((t, p))
            rows.append({"kind": kind, "rules": rules,
                         "requests": [r.strip() for r in requests.split(",")],
                         "match": match == "yes", "matched": matched, "note": note})
    return rows


ROWS = load_rows()


class PathTableTest(h.SharedStackTest):
    @classmethod
    def build(cls, s):
        # one backend (and Service) per distinct (type, path)
        distinct = []
        for row in ROWS:
            for r in row["rules"]:
                if r not in distinct:
                    distinct.append(r)
        cls.svc_of = {r: "svc-%d" % i for i, r in enumerate(distinct)}
        names = ["%s %s" % r for r in distinct] + ["default"]
        ports = s.backends(*names)
        docs = [h.ingress_class("strait")]
        for r in distinct:
            docs += h.service_with_endpoints(cls.svc_of[r], ports["%s %s" % r])
        docs += h.service_with_endpoints("default-svc", ports["default"])
        s.write("services.yaml", docs)
        s.write("default.yaml", h.ingress("default-backend", default="default-svc"))
        ings = []
        for i, row in enumerate(ROWS):
            host = "row%02d.paths.test" % i
            paths = [(p, t, cls.svc_of[(t, p)]) for t, p in row["rules"]]
            ings.append(h.ingress("row%02d" % i, rules=[(host, paths)]))
        s.write("rows.yaml", ings)
        s.start()


def _make_test(i, row):
    def test(self):
        host = "row%02d.paths.test" % i
        for req in row["requests"]:
            r = self.stack.curl(host, req)
            self.assertEqual(
                (r.status, r.backend), (200, row["matched"]),
                "row %d: rules %s, request %s: want %s (%s match%s), got %r" % (
                    i, row["rules"], req, row["matched"], "a" if row["match"] else "no",
                    ", " + row["note"] if row["note"] else "", r))
    test.__doc__ = "%s %s -> %s: %s" % (row["kind"], row["rules"], row["requests"], row["matched"])
    return test


for _i, _row in enumerate(ROWS):
    _slug = "_".join(p.strip("/").replace("/", "_") or "root" for _t, p in _row["rules"])
    setattr(PathTableTest, "test_row%02d_%s_%s" % (_i, _row["kind"].lower(), _slug),
            _make_test(_i, _row))
