/*
 * snapbuild: Ingress semantics as data tables. Each case is a YAML stream, a class name and
 * the expected snapshot rendered as compact text:
 *   "V<host>: <E|P><path>><cluster>[#<max_body>] ...; D=<cluster|none>[#<max_body>];
 *    C<cluster>=<addr:port,...> ..."
 * where #<max_body> appears only for a body limit other than "default" (#inf: unlimited).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "filesource.h"
#include "log.h"
#include "model.h"
#include "snapbuild.h"
#include "snapwire.h"

#define SVC(ns, name, ports)                                                                       \
    "---\napiVersion: v1\nkind: Service\nmetadata: {name: " name ", namespace: " ns "}\n"          \
    "spec:\n  ports: " ports "\n"
#define SLICE(ns, name, svc, ports, eps)                                                           \
    "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: " name          \
    "\n  namespace: " ns "\n  labels: {kubernetes.io/service-name: " svc "}\n"                     \
    "addressType: IPv4\nports: " ports "\nendpoints: " eps "\n"
#define ING(ns, name, extra_meta, spec)                                                            \
    "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: " name               \
    "\n  namespace: " ns "\n" extra_meta "spec:\n" spec
#define CLASS(name, annotations)                                                                   \
    "---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: " name          \
    "\n" annotations "spec: {controller: strait.dev/c}\n"
#define RULE(host, path, type, svc, port)                                                          \
    "  - host: " host "\n    http:\n      paths:\n      - path: " path "\n        pathType: " type \
    "\n        backend: {service: {name: " svc ", port: " port "}}\n"
#define RULES "  ingressClassName: strait\n  rules:\n"

/* a Service "web" with two ports and one slice, used by most cases */
#define WEB                                                                                        \
    SVC("default", "web", "[{name: http, port: 80}, {name: admin, port: 9000}]")                   \
    SLICE("default", "web-a", "web", "[{name: http, port: 8080}, {name: admin, port: 9090}]",      \
          "[{addresses: [10.0.0.1]}]")

struct sb_case {
    const char *name;
    const char *cls;
    const char *yaml;
    const char *want;
    unsigned rejected, conflicts;
};

static const struct sb_case cases[] = {
    {"no Ingress at all: empty snapshot", "strait", WEB, "; D=none ;", 0, 0},
    {"host ordering and lower-casing", "strait",
     WEB ING("default", "a", "",
             RULES RULE("Foo.com", "/", "Prefix", "web", "{number: 80}")
                 RULE("\"*.foo.com\"", "/", "Prefix", "web", "{number: 80}")
                     RULE("\"\"", "/", "Prefix", "web", "{number: 80}")
                         RULE("a.foo.com", "/", "Prefix", "web", "{number: 80}")),
     "V: P/>default/web:80 V*.foo.com: P/>default/web:80 Va.foo.com: P/>default/web:80 "
     "Vfoo.com: P/>default/web:80 ; D=none ; Cdefault/web:80=10.0.0.1:8080",
     0, 0},
    {"route ordering: longest first, Exact before Prefix, trailing slash ignored", "strait",
     WEB ING("default", "a", "",
             RULES RULE("h.com", "/", "Prefix", "web", "{number: 80}")
                 RULE("h.com", "/ab/", "Prefix", "web", "{number: 80}")
                     RULE("h.com", "/ab", "Exact", "web", "{number: 80}")
                         RULE("h.com", "/ab", "Prefix", "web", "{number: 80}")
                             RULE("h.com", "/abc", "ImplementationSpecific", "web", "{number: 80}")
                                 RULE("h.com", "/a", "Exact", "web", "{name: admin}")),
     "Vh.com: P/abc>default/web:80 E/ab>default/web:80 P/ab>default/web:80 "
     "P/ab/>default/web:80 E/a>default/web:9000 P/>default/web:80 ; D=none ; "
     "Cdefault/web:80=10.0.0.1:8080 Cdefault/web:9000=10.0.0.1:9090",
     0, 0},
    {"conflict: older creationTimestamp wins over name order", "strait",
     WEB SVC("default", "other", "[{port: 80}]")
         ING("default", "a", "  creationTimestamp: \"2024-05-01T00:00:00Z\"\n",
             RULES RULE("h.com", "/", "Prefix", "web", "{number: 80}"))
             ING("default", "b", "  creationTimestamp: \"2024-01-01T00:00:00+01:00\"\n",
                 RULES RULE("h.com", "/", "Prefix", "other", "{number: 80}")),
     "Vh.com: P/>default/other:80 ; D=none ; Cdefault/other:80=", 0, 1},
    {"conflict: missing timestamp loses, equal timestamps go by namespace/name", "strait",
     WEB SVC("default", "other", "[{port: 80}]") SVC("aaa", "web", "[{port: 80}]")
         ING("default", "a", "", RULES RULE("h.com", "/x", "Exact", "web", "{number: 80}"))
             ING("default", "b", "  creationTimestamp: \"2024-01-01T00:00:00Z\"\n",
                 RULES RULE("h.com", "/x", "Exact", "other", "{number: 80}"))
                 ING("aaa", "z", "  creationTimestamp: \"2024-01-01T00:00:00Z\"\n",
                     RULES RULE("h.com", "/x", "Exact", "web", "{number: 80}")
                         RULE("h.com", "/x", "Prefix", "web", "{number: 80}")),
     "Vh.com: E/x>aaa/web:80 P/x>aaa/web:80 ; D=none ; Caaa/web:80=", 0, 2},
    {"class: name, annotation, other classes ignored", "strait",
     WEB ING("default", "a", "",
             "  ingressClassName: strait\n  rules:\n" RULE("a.com", "/", "Prefix", "web",
                                                           "{number: 80}"))
         ING("default", "b", "  annotations: {kubernetes.io/ingress.class: strait}\n",
             "  rules:\n" RULE("b.com", "/", "Prefix", "web", "{number: 80}"))
             ING("default", "c", "",
                 "  ingressClassName: nginx\n  rules:\n" RULE("c.com", "/", "Prefix", "web",
                                                              "{number: 80}"))
                 ING("default", "d", "  annotations: {kubernetes.io/ingress.class: nginx}\n",
                     "  rules:\n" RULE("d.com", "/", "Prefix", "web", "{number: 80}"))
                     ING("default", "e", "",
                         "  rules:\n" RULE("e.com", "/", "Prefix", "web", "{number: 80}")),
     "Va.com: P/>default/web:80 Vb.com: P/>default/web:80 ; D=none ; "
     "Cdefault/web:80=10.0.0.1:8080",
     0, 0},
    {"class: ingressClassName beats the annotation", "strait",
     WEB ING("default", "a", "  annotations: {kubernetes.io/ingress.class: strait}\n",
             "  ingressClassName: other\n  rules:\n" RULE("a.com", "/", "Prefix", "web",
                                                          "{number: 80}")),
     "; D=none ;", 0, 0},
    {"class: default IngressClass adopts class-less Ingresses", "strait",
     WEB CLASS("strait", "  annotations: {ingressclass.kubernetes.io/is-default-class: "
                         "\"true\"}\n")
         ING("default", "e", "", "  rules:\n" RULE("e.com", "/", "Prefix", "web", "{number: 80}")),
     "Ve.com: P/>default/web:80 ; D=none ; Cdefault/web:80=10.0.0.1:8080", 0, 0},
    {"class: IngressClass not marked default adopts nothing", "strait",
     WEB CLASS("strait", "  annotations: {ingressclass.kubernetes.io/is-default-class: "
                         "\"false\"}\n") CLASS("x", "")
         ING("default", "e", "", "  rules:\n" RULE("e.com", "/", "Prefix", "web", "{number: 80}")),
     "; D=none ;", 0, 0},
    {"class: custom class name", "internal",
     WEB ING("default", "a", "",
             "  ingressClassName: internal\n  rules:\n" RULE("a.com", "/", "Prefix", "web",
                                                             "{number: 80}"))
         ING("default", "b", "", RULES RULE("b.com", "/", "Prefix", "web", "{number: 80}")),
     "Va.com: P/>default/web:80 ; D=none ; Cdefault/web:80=10.0.0.1:8080", 0, 0},
    {"defaultBackend: oldest Ingress wins", "strait",
     WEB SVC("default", "other", "[{port: 81}]")
         ING("default", "a", "  creationTimestamp: \"2024-02-01T00:00:00Z\"\n",
             "  ingressClassName: strait\n  defaultBackend: {service: {name: web, port: "
             "{name: http}}}\n")
             ING("default", "b", "  creationTimestamp: \"2024-01-01T00:00:00Z\"\n",
                 "  ingressClassName: strait\n  defaultBackend: {service: {name: other, port: "
                 "{number: 81}}}\n"),
     "; D=default/other:81 ; Cdefault/other:81=", 0, 1},
    {"endpoints: named ports, ready unset/true/false, several slices, dedupe, sort", "strait",
     SVC("default", "web", "[{name: http, port: 80}]") SLICE(
         "default", "web-a", "web", "[{name: http, port: 8080}]",
         "[{addresses: [10.0.0.9]}, {addresses: [10.0.0.2], conditions: {ready: true}},"
         " {addresses: [10.0.0.3], conditions: {ready: false}}]")
         SLICE("default", "web-b", "web", "[{name: http, port: 8080}, {name: x, port: 1}]",
               "[{addresses: [10.0.0.2, 10.0.0.1]}]") SLICE("default", "web-c", "web",
                                                            "[{name: other, port: 7}]",
                                                            "[{addresses: [10.0.0.4]}]")
             SLICE("default", "nope", "other", "[{name: http, port: 8080}]",
                   "[{addresses: [10.0.0.5]}]") SLICE("ns2", "web-a", "web",
                                                      "[{name: http, port: 8080}]",
                                                      "[{addresses: [10.0.0.6]}]")
                 ING("default", "a", "", RULES RULE("h.com", "/", "Prefix", "web", "{number: 80}")),
     "Vh.com: P/>default/web:80 ; D=none ; "
     "Cdefault/web:80=10.0.0.1:8080,10.0.0.2:8080,10.0.0.9:8080",
     0, 0},
    {"endpoints: unnamed ports match unnamed slice ports", "strait",
     SVC("default", "web", "[{port: 80}]")
         SLICE("default", "web-a", "web", "[{port: 3000}]", "[{addresses: [10.1.1.1]}]")
             ING("default", "a", "", RULES RULE("h.com", "/", "Prefix", "web", "{number: 80}")),
     "Vh.com: P/>default/web:80 ; D=none ; Cdefault/web:80=10.1.1.1:3000", 0, 0},
    {"reject: missing service, missing port; others still served", "strait",
     WEB ING("default", "a", "", RULES RULE("a.com", "/", "Prefix", "nosuch", "{number: 80}"))
         ING("default", "b", "", RULES RULE("b.com", "/", "Prefix", "web", "{number: 81}"))
             ING("default", "c", "", RULES RULE("c.com", "/", "Prefix", "web", "{name: nope}"))
                 ING("other", "d", "", RULES RULE("d.com", "/", "Prefix", "web", "{number: 80}"))
                     ING("default", "e", "",
                         RULES RULE("e.com", "/", "Prefix", "web", "{number: 80}")
                             RULE("e.com", "/x", "Prefix", "gone", "{number: 80}"))
                         ING("default", "f", "",
                             RULES RULE("f.com", "/", "Prefix", "web", "{number: 80}")),
     "Vf.com: P/>default/web:80 ; D=none ; Cdefault/web:80=10.0.0.1:8080", 5, 0},
    {"reject at decode: bad pathType, relative path, IP host, resource backend", "strait",
     WEB ING("default", "a", "", RULES RULE("a.com", "/", "Regex", "web", "{number: 80}"))
         ING("default", "b", "", RULES RULE("b.com", "x", "Prefix", "web", "{number: 80}"))
             ING("default", "c", "", RULES RULE("10.0.0.1", "/", "Prefix", "web", "{number: 80}"))
                 ING("default", "d", "",
                     RULES RULE("\"a.*.com\"", "/", "Prefix", "web", "{number: 80}"))
                     ING("default", "e", "",
                         RULES "  - http:\n      paths:\n      - path: /\n        pathType: "
                               "Prefix\n        backend: {resource: {kind: Bucket, name: b}}\n")
                         ING("default", "g", "",
                             RULES "  - http:\n      paths:\n      - path: /\n        backend: "
                                   "{service: {name: web, port: {number: 80}}}\n")
                             ING("default", "f", "",
                                 RULES RULE("f.com", "/", "Prefix", "web", "{number: 80}")),
     "Vf.com: P/>default/web:80 ; D=none ; Cdefault/web:80=10.0.0.1:8080", 0, 0},
};

/* Annotation strait.dev/proxy-body-size ("1k" etc.) as extra_meta for ING(). */
#define BODY(v) "  annotations: {strait.dev/proxy-body-size: \"" v "\"}\n"

static const struct sb_case body_cases[] = {
    {"body size: every route of the annotated Ingress, not the others'", "strait",
     WEB ING("default", "a", BODY("1k"),
             RULES RULE("a.com", "/", "Prefix", "web", "{number: 80}")
                 RULE("a.com", "/up", "Exact", "web", "{name: admin}")
                     RULE("x.com", "/", "Prefix", "web", "{number: 80}"))
         ING("default", "b", "", RULES RULE("b.com", "/", "Prefix", "web", "{number: 80}")),
     "Va.com: E/up>default/web:9000#1024 P/>default/web:80#1024 Vb.com: P/>default/web:80 "
     "Vx.com: P/>default/web:80#1024 ; D=none ; "
     "Cdefault/web:80=10.0.0.1:8080 Cdefault/web:9000=10.0.0.1:9090",
     0, 0},
    {"body size: \"0\" is unlimited, suffixes, defaultBackend carries it", "strait",
     WEB ING("default", "a", BODY("0"), RULES RULE("a.com", "/", "Prefix", "web", "{number: 80}"))
         ING("default", "b", BODY("10M"), RULES RULE("b.com", "/", "Prefix", "web", "{number: 80}"))
             ING("default", "d", BODY("8k"),
                 "  ingressClassName: strait\n  defaultBackend: {service: {name: web, port: "
                 "{number: 80}}}\n"),
     "Va.com: P/>default/web:80#inf Vb.com: P/>default/web:80#10485760 ; "
     "D=default/web:80#8192 ; Cdefault/web:80=10.0.0.1:8080",
     0, 0},
    {"body size: a defaultBackend without the annotation leaves the default", "strait",
     WEB ING("default", "d", "",
             "  ingressClassName: strait\n  defaultBackend: {service: {name: web, port: "
             "{number: 80}}}\n"),
     "; D=default/web:80 ; Cdefault/web:80=10.0.0.1:8080", 0, 0},
    {"body size: a conflict keeps the winner's limit, not the loser's", "strait",
     WEB ING("default", "old", "  creationTimestamp: \"2024-01-01T00:00:00Z\"\n" BODY("2k"),
             RULES RULE("h.com", "/", "Prefix", "web", "{number: 80}"))
         ING("default", "new", "  creationTimestamp: \"2024-06-01T00:00:00Z\"\n" BODY("0"),
             RULES RULE("h.com", "/", "Prefix", "web", "{number: 80}")
                 RULE("h.com", "/new", "Prefix", "web", "{number: 80}")),
     "Vh.com: P/new>default/web:80#inf P/>default/web:80#2048 ; D=none ; "
     "Cdefault/web:80=10.0.0.1:8080",
     0, 1},
    {"body size: a bad value rejects only that Ingress (at decode)", "strait",
     WEB ING("default", "a", BODY("1.5m"),
             RULES RULE("a.com", "/", "Prefix", "web", "{number: 80}"))
         ING("default", "b", BODY("-1"), RULES RULE("b.com", "/", "Prefix", "web", "{number: 80}"))
             ING("default", "c", BODY("1kb"),
                 RULES RULE("c.com", "/", "Prefix", "web", "{number: 80}"))
                 ING("default", "d", "  annotations: {strait.dev/proxy-body-size: [1]}\n",
                     RULES RULE("d.com", "/", "Prefix", "web", "{number: 80}"))
                     ING("default", "f", BODY("1K"),
                         RULES RULE("f.com", "/", "Prefix", "web", "{number: 80}")),
     "Vf.com: P/>default/web:80#1024 ; D=none ; Cdefault/web:80=10.0.0.1:8080", 0, 0},
};

/* Balancing annotations as extra_meta for ING(): a flow mapping's members. */
#define ANN(kv) "  annotations: {" kv "}\n"

static const struct sb_case lb_cases[] = {
    {"load-balance: each value names its cluster, ewma (the default) keeps the plain name",
     "strait",
     WEB ING("default", "a", ANN("strait.dev/load-balance: round_robin"),
             RULES RULE("a.com", "/", "Prefix", "web", "{number: 80}"))
         ING("default", "b", ANN("strait.dev/load-balance: ewma"),
             RULES RULE("b.com", "/", "Prefix", "web", "{number: 80}"))
             ING("default", "c", ANN("strait.dev/load-balance: least_request"),
                 RULES RULE("c.com", "/", "Prefix", "web", "{number: 80}"))
                 ING("default", "d", ANN("strait.dev/load-balance: maglev"),
                     RULES RULE("d.com", "/", "Prefix", "web", "{number: 80}")),
     "Va.com: P/>default/web:80+round_robin Vb.com: P/>default/web:80 "
     "Vc.com: P/>default/web:80+least_request Vd.com: P/>default/web:80+maglev ; D=none ; "
     "Cdefault/web:80+round_robin=10.0.0.1:8080 Cdefault/web:80+least_request=10.0.0.1:8080 "
     "Cdefault/web:80=10.0.0.1:8080 Cdefault/web:80+maglev=10.0.0.1:8080",
     0, 0},
    {"hash-by alone implies ring_hash; header names are lower-cased", "strait",
     WEB ING("default", "a", ANN("strait.dev/hash-by: \"header:X-User\""),
             RULES RULE("a.com", "/", "Prefix", "web", "{number: 80}"))
         ING("default", "b",
             ANN("strait.dev/hash-by: \"cookie:Sid\", strait.dev/load-balance: maglev"),
             RULES RULE("b.com", "/", "Prefix", "web", "{number: 80}"))
             ING("default", "c", ANN("strait.dev/hash-by: source-ip"),
                 RULES RULE("c.com", "/", "Prefix", "web", "{number: 80}"))
                 ING("default", "d", ANN("strait.dev/hash-by: path"),
                     RULES RULE("d.com", "/", "Prefix", "web", "{number: 80}")),
     "Va.com: P/>default/web:80+ring_hash+hash=header:x-user "
     "Vb.com: P/>default/web:80+maglev+hash=cookie:Sid "
     "Vc.com: P/>default/web:80+ring_hash+hash=source-ip "
     "Vd.com: P/>default/web:80+ring_hash+hash=path ; D=none ; "
     "Cdefault/web:80+ring_hash+hash=header:x-user=10.0.0.1:8080 "
     "Cdefault/web:80+ring_hash+hash=source-ip=10.0.0.1:8080 "
     "Cdefault/web:80+ring_hash+hash=path=10.0.0.1:8080 "
     "Cdefault/web:80+maglev+hash=cookie:Sid=10.0.0.1:8080",
     0, 0},
    {"affinity: cookie, default name INGRESSCOOKIE, session-cookie-name; defaultBackend too",
     "strait",
     WEB ING("default", "a", ANN("strait.dev/affinity: cookie"),
             RULES RULE("a.com", "/", "Prefix", "web", "{number: 80}"))
         ING("default", "b",
             ANN("strait.dev/affinity: cookie, strait.dev/session-cookie-name: route, "
                 "strait.dev/load-balance: ewma"),
             RULES RULE("b.com", "/", "Prefix", "web", "{number: 80}"))
             ING("default", "d", ANN("strait.dev/load-balance: least_request"),
                 "  ingressClassName: strait\n  defaultBackend: {service: {name: web, port: "
                 "{number: 80}}}\n"),
     "Va.com: P/>default/web:80+affinity=INGRESSCOOKIE Vb.com: "
     "P/>default/web:80+affinity=route "
     "; D=default/web:80+least_request ; "
     "Cdefault/web:80+least_request=10.0.0.1:8080 "
     "Cdefault/web:80+affinity=INGRESSCOOKIE=10.0.0.1:8080 "
     "Cdefault/web:80+affinity=route=10.0.0.1:8080",
     0, 0},
    {"two Ingresses sharing a Service port with different settings get two clusters; the same "
     "settings share one",
     "strait",
     WEB ING("default", "a", ANN("strait.dev/load-balance: round_robin"),
             RULES RULE("a.com", "/", "Prefix", "web", "{number: 80}"))
         ING("default", "b", ANN("strait.dev/hash-by: \"header:x-a\""),
             RULES RULE("b.com", "/", "Prefix", "web", "{number: 80}"))
             ING("default", "c", ANN("strait.dev/hash-by: \"header:x-b\""),
                 RULES RULE("c.com", "/", "Prefix", "web", "{number: 80}"))
                 ING("default", "e", ANN("strait.dev/load-balance: round_robin"),
                     RULES RULE("e.com", "/", "Prefix", "web", "{number: 80}"))
                     ING("default", "f", "",
                         RULES RULE("f.com", "/", "Prefix", "web", "{number: 80}")),
     "Va.com: P/>default/web:80+round_robin "
     "Vb.com: P/>default/web:80+ring_hash+hash=header:x-a "
     "Vc.com: P/>default/web:80+ring_hash+hash=header:x-b Ve.com: P/>default/web:80+round_robin "
     "Vf.com: P/>default/web:80 ; D=none ; Cdefault/web:80+round_robin=10.0.0.1:8080 "
     "Cdefault/web:80=10.0.0.1:8080 "
     "Cdefault/web:80+ring_hash+hash=header:x-a=10.0.0.1:8080 "
     "Cdefault/web:80+ring_hash+hash=header:x-b=10.0.0.1:8080",
     0, 0},
    {"balancing: a bad value rejects only that Ingress (at decode)", "strait",
     WEB ING("default", "a", ANN("strait.dev/load-balance: random"),
             RULES RULE("a.com", "/", "Prefix", "web", "{number: 80}"))
         ING("default", "b", ANN("strait.dev/load-balance: EWMA"),
             RULES RULE("b.com", "/", "Prefix", "web", "{number: 80}"))
             ING("default", "c", ANN("strait.dev/hash-by: \"header:\""),
                 RULES RULE("c.com", "/", "Prefix", "web", "{number: 80}"))
                 ING("default", "d", ANN("strait.dev/hash-by: \"cookie:a b\""),
                     RULES RULE("d.com", "/", "Prefix", "web", "{number: 80}"))
                     ING("default", "e", ANN("strait.dev/hash-by: uri"),
                         RULES RULE("e.com", "/", "Prefix", "web", "{number: 80}"))
                         ING("default", "g",
                             ANN("strait.dev/hash-by: path, strait.dev/load-balance: ewma"),
                             RULES RULE("g.com", "/", "Prefix", "web", "{number: 80}"))
                             ING("default", "h", ANN("strait.dev/affinity: ip"),
                                 RULES RULE("h.com", "/", "Prefix", "web", "{number: 80}"))
                                 ING("default", "i",
                                     ANN("strait.dev/affinity: cookie, "
                                         "strait.dev/session-cookie-name: \"a;b\""),
                                     RULES RULE("i.com", "/", "Prefix", "web", "{number: 80}"))
                                     ING("default", "f", ANN("strait.dev/load-balance: ewma"),
                                         RULES RULE("f.com", "/", "Prefix", "web", "{number: 80}")),
     "Vf.com: P/>default/web:80 ; D=none ; Cdefault/web:80=10.0.0.1:8080", 0, 0},
};

/* a Service "web" (port 80) with annotations (flow mapping members) and one slice */
#define WEB_ANN(kv)                                                                                \
    "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\n"           \
    "  annotations: {" kv "}\nspec:\n  ports: [{name: http, port: 80}]\n" SLICE(                   \
        "default", "web-a", "web", "[{name: http, port: 8080}]", "[{addresses: [10.0.0.1]}]")

static const struct sb_case policy_cases[] = {
    {"Service policy: no name change; an Ingress's balancing override names the algorithm",
     "strait",
     WEB_ANN("strait.dev/outlier-consecutive-failures: \"7\", strait.dev/max-requests: \"9\"")
         ING("default", "a", "", RULES RULE("a.com", "/", "Prefix", "web", "{number: 80}"))
             ING("default", "b", ANN("strait.dev/load-balance: round_robin"),
                 RULES RULE("b.com", "/", "Prefix", "web", "{number: 80}")),
     "Va.com: P/>default/web:80 Vb.com: P/>default/web:80+round_robin ; D=none ; "
     "Cdefault/web:80+round_robin=10.0.0.1:8080 Cdefault/web:80=10.0.0.1:8080",
     0, 0},
    {"Ingress resilience overrides: +p=HASH, same overrides share, equal to the Service's do not",
     "strait",
     WEB_ANN("strait.dev/outlier-consecutive-failures: \"7\"")
         ING("default", "a", "", RULES RULE("a.com", "/", "Prefix", "web", "{number: 80}"))
             ING("default", "b", ANN("strait.dev/max-requests: \"5\""),
                 RULES RULE("b.com", "/", "Prefix", "web", "{number: 80}"))
                 ING("default", "c", ANN("strait.dev/max-requests: \"5\""),
                     RULES RULE("c.com", "/", "Prefix", "web", "{number: 80}"))
                     ING("default", "d", ANN("strait.dev/max-requests: \"6\""),
                         RULES RULE("d.com", "/", "Prefix", "web", "{number: 80}"))
                         ING("default", "e", ANN("strait.dev/outlier-consecutive-failures: \"7\""),
                             RULES RULE("e.com", "/", "Prefix", "web", "{number: 80}"))
                             ING("default", "f",
                                 ANN("strait.dev/max-requests: \"5\", "
                                     "strait.dev/load-balance: least_request"),
                                 RULES RULE("f.com", "/", "Prefix", "web", "{number: 80}")),
     "Va.com: P/>default/web:80 Vb.com: P/>default/web:80+p=PB Vc.com: P/>default/web:80+p=PB "
     "Vd.com: P/>default/web:80+p=PD Ve.com: P/>default/web:80 "
     "Vf.com: P/>default/web:80+least_request+p=PB ; D=none ; "
     "Cdefault/web:80+least_request+p=PB=10.0.0.1:8080 Cdefault/web:80=10.0.0.1:8080 "
     "Cdefault/web:80+p=PB=10.0.0.1:8080 Cdefault/web:80+p=PD=10.0.0.1:8080",
     0, 0},
    {"Gateway backendRefs get the Service's policy (and its name)", "strait",
     WEB_ANN(
         "strait.dev/load-balance: round_robin, strait.dev/max-requests: \"9\"") "---\napiVersion: "
                                                                                 "strait.dev/"
                                                                                 "v1alpha1\nkind: "
                                                                                 "Gateway\nmetadata"
                                                                                 ": {name: gw, "
                                                                                 "namespace: "
                                                                                 "default}\nspec: "
                                                                                 "{listeners: "
                                                                                 "[{name: http, "
                                                                                 "port: 80, "
                                                                                 "protocol: "
                                                                                 "HTTP}], routes: "
                                                                                 "[{hostnames: "
                                                                                 "[g.com], rules: "
                                                                                 "[{matches: "
                                                                                 "[{path: {type: "
                                                                                 "PathPrefix, "
                                                                                 "value: /}}], "
                                                                                 "backendRefs: "
                                                                                 "[{name: web, "
                                                                                 "port: "
                                                                                 "80}]}]}]}\n" ING(
                                                                                     "default", "a",
                                                                                     "",
                                                                                     RULES RULE(
                                                                                         "a.com",
                                                                                         "/",
                                                                                         "Prefix",
                                                                                         "web",
                                                                                         "{number: "
                                                                                         "80}")),
     "Va.com: P/>default/web:80+round_robin Vg.com: P/>default/web:80+round_robin ; D=none ; "
     "Cdefault/web:80+round_robin=10.0.0.1:8080",
     0, 0},
    {"a bad Service annotation keeps it serving with the default", "strait",
     WEB_ANN("strait.dev/load-balance: fastest, strait.dev/slow-start: 2h")
         ING("default", "a", "", RULES RULE("a.com", "/", "Prefix", "web", "{number: 80}")),
     "Va.com: P/>default/web:80 ; D=none ; Cdefault/web:80=10.0.0.1:8080", 0, 0},
    {"an Ingress's bad resilience value rejects it (at decode)", "strait",
     WEB ING("default", "a", ANN("strait.dev/max-connections: \"-1\""),
             RULES RULE("a.com", "/", "Prefix", "web", "{number: 80}"))
         ING("default", "b", ANN("strait.dev/health-check-path: healthz"),
             RULES RULE("b.com", "/", "Prefix", "web", "{number: 80}"))
             ING("default", "c", ANN("strait.dev/endpoint-weights: \"web-0=2\""),
                 RULES RULE("c.com", "/", "Prefix", "web", "{number: 80}"))
                 ING("default", "d", "", RULES RULE("d.com", "/", "Prefix", "web", "{number: 80}")),
     "Vd.com: P/>default/web:80 ; D=none ; Cdefault/web:80=10.0.0.1:8080", 0, 0},
};

static void render(const struct snapwire_snapshot *s, char *out, size_t n)
{
    size_t o = 0;
    uint32_t i, j;

#define OUT(...) o += (size_t)snprintf(out + o, o < n ? n - o : 0, __VA_ARGS__)
#define OUT_BODY(v)                                                                                \
    do {                                                                                           \
        if ((v) == SNAPWIRE_BODY_UNLIMITED)                                                        \
            OUT("#inf");                                                                           \
        else if ((v) != SNAPWIRE_BODY_DEFAULT)                                                     \
            OUT("#%llu", (unsigned long long)(v));                                                 \
    } while (0)
    for (i = 0; i < s->n_vhosts; i++) {
        OUT("V%s:", s->vhosts[i].host);
        for (j = 0; j < s->vhosts[i].route_count; j++) {
            const struct snapwire_route *r = &s->routes[s->vhosts[i].first_route + j];
            OUT(" %c%s>%s", r->match == SNAPWIRE_MATCH_EXACT ? 'E' : 'P', r->path,
                s->clusters[r->cluster].name);
            OUT_BODY(r->max_body);
        }
        OUT(" ");
    }
    OUT("; D=%s", s->meta.default_cluster == SNAPWIRE_NONE
                      ? "none"
                      : s->clusters[s->meta.default_cluster].name);
    OUT_BODY(s->meta.default_max_body);
    OUT(" ;");
    for (i = 0; i < s->n_clusters; i++) {
        OUT(" C%s=", s->clusters[i].name);
        for (j = 0; j < s->clusters[i].endpoint_count; j++) {
            const struct snapwire_endpoint *e = &s->endpoints[s->clusters[i].first_endpoint + j];
            OUT("%s%s:%u", j ? "," : "", e->address, e->port);
        }
    }
#undef OUT_BODY
#undef OUT
}

/* Builds the snapshot for yaml; returns how many objects were rejected while decoding. */
static unsigned build(const char *yaml, const char *cls, struct snapbuild_result *r)
{
    struct model_cache cache;
    char err[256];
    unsigned decode_rejected;

    model_cache_init(&cache);
    assert_true(filesource_load_buffer("case.yaml", yaml, strlen(yaml), &cache) >= 0);
    model_cache_seal(&cache);
    decode_rejected = cache.n_rejected;
    assert_int_equal(snapbuild_build(&cache, cls, "file:test", r, err, sizeof(err)), 0);
    model_cache_free(&cache);
    return decode_rejected;
}

/* Runs a table; returns the number of failed cases (each printed). */
static int run_cases(const struct sb_case *tab, size_t n)
{
    char got[4096];
    size_t i;
    int failed = 0;

    for (i = 0; i < n; i++) {
        struct snapbuild_result r;
        build(tab[i].yaml, tab[i].cls, &r);
        render(&r.snap, got, sizeof(got));
        if (strcmp(got, tab[i].want) || r.n_rejected != tab[i].rejected ||
            r.n_conflicts != tab[i].conflicts) {
            print_error("case \"%s\":\n  want %s (rejected %u, conflicts %u)\n"
                        "  got  %s (rejected %u, conflicts %u)\n",
                        tab[i].name, tab[i].want, tab[i].rejected, tab[i].conflicts, got,
                        r.n_rejected, r.n_conflicts);
            failed++;
        }
        snapbuild_free(&r);
    }
    return failed;
}

static void test_cases(void **state)
{
    (void)state;
    assert_int_equal(run_cases(cases, sizeof(cases) / sizeof(cases[0])), 0);
}

/* Encodes r's snapshot as generation gen and decodes it with the checked reader into *d. */
static void wire_round_trip(const struct snapbuild_result *r, uint64_t gen,
                            struct snapwire_snapshot *d)
{
    uint8_t *frame;
    size_t len;
    char err[256];

    assert_int_equal(snapwire_encode(&r->snap, gen, &frame, &len, err, sizeof(err)), 0);
    assert_int_equal(snapwire_decode(frame, len, d, err, sizeof(err)), 0);
    free(frame);
}

static void test_body_size(void **state)
{
    const struct sb_case *bad = &body_cases[sizeof(body_cases) / sizeof(body_cases[0]) - 1];
    struct snapbuild_result r;
    struct snapwire_snapshot d;

    (void)state;
    assert_int_equal(run_cases(body_cases, sizeof(body_cases) / sizeof(body_cases[0])), 0);
    /* the bad values are refused one Ingress each, at decode (object_rejected lines) */
    assert_int_equal(build(bad->yaml, bad->cls, &r), 4);
    snapbuild_free(&r);
    /* and the limits survive the wire */
    build(body_cases[1].yaml, "strait", &r);
    wire_round_trip(&r, 3, &d);
    assert_true(d.routes[0].max_body == SNAPWIRE_BODY_UNLIMITED);
    assert_true(d.routes[1].max_body == 10u << 20);
    assert_true(d.meta.default_max_body == 8192);
    snapwire_free(&d);
    snapbuild_free(&r);
}

static void test_balancing(void **state)
{
    const struct sb_case *bad = &lb_cases[sizeof(lb_cases) / sizeof(lb_cases[0]) - 1];
    struct snapbuild_result r;
    struct snapwire_snapshot d;
    uint32_t i;
    int seen = 0;

    (void)state;
    assert_int_equal(run_cases(lb_cases, sizeof(lb_cases) / sizeof(lb_cases[0])), 0);
    /* every bad value is refused, one Ingress each, at decode (object_rejected lines) */
    assert_int_equal(build(bad->yaml, bad->cls, &r), 8);
    snapbuild_free(&r);
    /* the settings survive the wire */
    build(lb_cases[1].yaml, "strait", &r);
    wire_round_trip(&r, 5, &d);
    for (i = 0; i < d.n_clusters; i++) {
        const struct snapwire_cluster *c = &d.clusters[i];
        if (!strcmp(c->name, "default/web:80+ring_hash+hash=header:x-user")) {
            assert_int_equal(c->lb, SNAPWIRE_LB_RING_HASH);
            assert_int_equal(c->hash_on, SNAPWIRE_HASH_HEADER);
            assert_string_equal(c->hash_name, "x-user");
            seen |= 1;
        } else if (!strcmp(c->name, "default/web:80+maglev+hash=cookie:Sid")) {
            assert_int_equal(c->lb, SNAPWIRE_LB_MAGLEV);
            assert_int_equal(c->hash_on, SNAPWIRE_HASH_COOKIE);
            assert_string_equal(c->hash_name, "Sid");
            seen |= 2;
        } else if (!strcmp(c->name, "default/web:80+ring_hash+hash=source-ip")) {
            assert_int_equal(c->hash_on, SNAPWIRE_HASH_SOURCE_IP);
            assert_string_equal(c->hash_name, "");
            seen |= 4;
        }
        assert_string_equal(c->affinity_cookie, "");
    }
    assert_int_equal(seen, 7);
    snapwire_free(&d);
    snapbuild_free(&r);
    build(lb_cases[2].yaml, "strait", &r);
    wire_round_trip(&r, 6, &d);
    for (i = 0, seen = 0; i < d.n_clusters; i++) {
        const struct snapwire_cluster *c = &d.clusters[i];
        if (!strcmp(c->name, "default/web:80+affinity=route")) {
            assert_int_equal(c->lb, SNAPWIRE_LB_EWMA);
            assert_int_equal(c->hash_on, SNAPWIRE_HASH_NONE);
            assert_string_equal(c->affinity_cookie, "route");
            seen |= 1;
        } else if (!strcmp(c->name, "default/web:80+affinity=INGRESSCOOKIE")) {
            assert_int_equal(c->lb, SNAPWIRE_LB_EWMA);
            assert_string_equal(c->affinity_cookie, "INGRESSCOOKIE");
            seen |= 2;
        }
    }
    assert_int_equal(seen, 3);
    snapwire_free(&d);
    snapbuild_free(&r);
}

/* The snapshot must encode and survive the checked decoder, with meta and listener set. */
static void test_encodes(void **state)
{
    struct snapbuild_result r;
    struct snapwire_snapshot d;

    (void)state;
    build(cases[2].yaml, "strait", &r);
    wire_round_trip(&r, 7, &d);
    assert_int_equal(d.generation, 7);
    assert_string_equal(d.meta.source, "file:test");
    assert_int_equal(d.n_listeners, 1);
    assert_int_equal(d.listeners[0].protocol, SNAPWIRE_PROTO_HTTP);
    assert_int_equal(d.n_routes, 6);
    snapwire_free(&d);
    snapbuild_free(&r);
}

/* Same objects in another document order → byte-identical payload. */
static void test_deterministic(void **state)
{
    static const char *docs[] = {
        SVC("default", "web", "[{name: http, port: 80}]"),
        SLICE("default", "web-b", "web", "[{name: http, port: 80}]",
              "[{addresses: [10.0.0.2]}, {addresses: [10.0.0.1]}]"),
        SLICE("default", "web-a", "web", "[{name: http, port: 80}]", "[{addresses: [10.0.0.3]}]"),
        ING("default", "a", "", RULES RULE("a.com", "/", "Prefix", "web", "{number: 80}")),
        ING("default", "b", "",
            RULES RULE("a.com", "/", "Prefix", "web", "{number: 80}")
                RULE("b.com", "/x", "Exact", "web", "{name: http}")),
    };
    char fwd[8192] = "", rev[8192] = "";
    struct snapbuild_result r1, r2;
    uint8_t *f1, *f2;
    size_t l1, l2, i, n = sizeof(docs) / sizeof(docs[0]);
    char err[256];

    (void)state;
    for (i = 0; i < n; i++) {
        strcat(fwd, docs[i]);
        strcat(rev, docs[n - 1 - i]);
    }
    build(fwd, "strait", &r1);
    build(rev, "strait", &r2);
    assert_int_equal(snapwire_encode(&r1.snap, 1, &f1, &l1, err, sizeof(err)), 0);
    assert_int_equal(snapwire_encode(&r2.snap, 2, &f2, &l2, err, sizeof(err)), 0);
    assert_true(snapwire_same_payload(f1, l1, f2, l2));
    assert_int_equal(r1.snap.n_endpoints, 3);
    free(f1);
    free(f2);
    snapbuild_free(&r1);
    snapbuild_free(&r2);
}

/* Rejections and conflicts come back as data (for Events), with an Event reason each, and
 * the Ingresses served as a list (for status); both in a deterministic order. */
static void test_rejections(void **state)
{
    static const struct {
        const char *ns, *name, *reason, *message;
    } want[] = {
        {"default", "a", "BackendNotFound", "service default/nosuch not found"},
        {"default", "b", "PortNotFound", "service default/web has no port 81"},
        {"default", "c", "PortNotFound", "service default/web has no port nope"},
        {"other", "d", "BackendNotFound", "service other/web not found"},
        {"default", "new", "Conflict",
         "host h.com path / (Prefix) is served by default/old (the oldest Ingress wins)"},
        {"default", "newd", "Conflict",
         "defaultBackend is served by default/oldd (the oldest Ingress wins)"},
    };
    static const char *const served[] = {"default/new", "default/newd", "default/old",
                                         "default/oldd"};
    const char *yaml =
        WEB ING("default", "a", "", RULES RULE("a.com", "/", "Prefix", "nosuch", "{number: 80}"))
            ING("default", "b", "", RULES RULE("b.com", "/", "Prefix", "web", "{number: 81}"))
                ING("default", "c", "", RULES RULE("c.com", "/", "Prefix", "web", "{name: nope}"))
                    ING("other", "d", "", RULES RULE("d.com", "/", "Prefix", "web", "{number: 80}"))
                        ING("default", "old", "  creationTimestamp: \"2024-01-01T00:00:00Z\"\n",
                            RULES RULE("h.com", "/", "Prefix", "web", "{number: 80}"))
                            ING("default", "new", "  creationTimestamp: \"2024-06-01T00:00:00Z\"\n",
                                RULES RULE("h.com", "/", "Prefix", "web", "{number: 80}")
                                    RULE("h.com", "/n", "Prefix", "web", "{number: 80}"))
                                ING("default", "oldd",
                                    "  creationTimestamp: \"2024-01-01T00:00:00Z\"\n",
                                    "  ingressClassName: strait\n  defaultBackend: {service: "
                                    "{name: web, port: {number: 80}}}\n")
                                    ING("default", "newd",
                                        "  creationTimestamp: \"2024-02-01T00:00:00Z\"\n",
                                        "  ingressClassName: strait\n  defaultBackend: {service: "
                                        "{name: web, port: {number: 80}}}\n");
    struct snapbuild_result r;
    char id[300];
    size_t i;

    (void)state;
    build(yaml, "strait", &r);
    assert_int_equal(r.n_rejected, 4);
    assert_int_equal(r.n_conflicts, 2);
    assert_int_equal(r.n_rejections, sizeof(want) / sizeof(want[0]));
    for (i = 0; i < r.n_rejections; i++) {
        assert_string_equal(r.rejections[i].kind, "Ingress");
        assert_string_equal(r.rejections[i].ns, want[i].ns);
        assert_string_equal(r.rejections[i].name, want[i].name);
        assert_string_equal(r.rejections[i].reason, want[i].reason);
        assert_string_equal(r.rejections[i].message, want[i].message);
    }
    assert_int_equal(r.n_accepted, sizeof(served) / sizeof(served[0]));
    assert_int_equal(r.n_accepted, r.n_ingresses);
    for (i = 0; i < r.n_accepted; i++) {
        snprintf(id, sizeof(id), "%s/%s", r.accepted[i].ns, r.accepted[i].name);
        assert_string_equal(id, served[i]);
    }
    snapbuild_free(&r);

    /* nothing rejected: empty lists, no allocation needed */
    build(WEB, "strait", &r);
    assert_int_equal(r.n_rejections, 0);
    assert_int_equal(r.n_accepted, 0);
    snapbuild_free(&r);
}

/* The cluster named name in r's snapshot (fails when missing). */
static const struct snapwire_cluster *find_cluster(const struct snapbuild_result *r,
                                                   const char *name)
{
    uint32_t i;

    for (i = 0; i < r->snap.n_clusters; i++)
        if (!strcmp(r->snap.clusters[i].name, name)) return &r->snap.clusters[i];
    fail_msg("no cluster %s", name);
    return NULL;
}

/* "+p=" of a policy: model_policy_resilience_hash of the resolved settings. */
static void p_name(char *buf, size_t n, const char *base, const struct model_policy *ing_pol)
{
    struct model_policy svc = {0}, r;

    svc.set = MODEL_POL_OD_CONSECUTIVE;
    svc.od_consecutive = 7;
    model_policy_resolve(&svc, ing_pol, &r);
    snprintf(buf, n, "%s+p=%08x", base, model_policy_resilience_hash(&r));
}

static void test_policy(void **state)
{
    struct model_policy ing = {0};
    char pb[64], pd[64], pf[128], want[2048];
    const struct snapwire_cluster *c;
    struct snapbuild_result r;
    struct sb_case tab[sizeof(policy_cases) / sizeof(policy_cases[0])];
    struct snapwire_snapshot d;
    const char *w;
    size_t i, o;

    (void)state;
    /* the +p= names as the hash gives them */
    ing.set = MODEL_POL_CB_REQUESTS;
    ing.cb_max_requests = 5;
    p_name(pb, sizeof(pb), "", &ing);
    ing.cb_max_requests = 6;
    p_name(pd, sizeof(pd), "", &ing);
    assert_string_not_equal(pb, pd);
    memcpy(tab, policy_cases, sizeof(tab));
    for (w = tab[1].want, o = 0; *w && o < sizeof(want) - 16;) {
        if (!strncmp(w, "+p=PB", 5) || !strncmp(w, "+p=PD", 5)) {
            o += (size_t)snprintf(want + o, sizeof(want) - o, "%s", w[4] == 'B' ? pb : pd);
            w += 5;
        } else {
            want[o++] = *w++;
        }
    }
    want[o] = '\0';
    tab[1].want = want;
    assert_int_equal(run_cases(tab, sizeof(tab) / sizeof(tab[0])), 0);
    /* the bad Ingress values are refused one Ingress each, at decode */
    assert_int_equal(build(tab[4].yaml, "strait", &r), 3);
    snapbuild_free(&r);

    /* the settings reach the clusters: Service's, and the Ingress's on top */
    build(tab[1].yaml, "strait", &r);
    c = find_cluster(&r, "default/web:80");
    assert_int_equal(c->lb, SNAPWIRE_LB_EWMA);
    assert_int_equal(c->od_consecutive, 7);
    assert_int_equal(c->cb_max_requests, 0);
    assert_string_equal(c->hc_path, "");
    assert_string_equal(c->hc_host, "");
    assert_int_equal(c->hc_interval_ms, 0);
    assert_int_equal(c->od_base_ms, SNAPWIRE_OD_BASE_MS_DEFAULT);
    assert_int_equal(c->od_max_ms, SNAPWIRE_OD_MAX_MS_DEFAULT);
    assert_int_equal(c->od_max_percent, SNAPWIRE_OD_MAX_PERCENT_DEFAULT);
    assert_int_equal(c->rb_percent, SNAPWIRE_RB_PERCENT_DEFAULT);
    assert_int_equal(c->rb_min_per_sec, SNAPWIRE_RB_MIN_PER_SEC_DEFAULT);
    snprintf(pf, sizeof(pf), "default/web:80%s", pb);
    c = find_cluster(&r, pf);
    assert_int_equal(c->od_consecutive, 7);
    assert_int_equal(c->cb_max_requests, 5);
    snapbuild_free(&r);

    /* every field, from a Service with everything set */
    build(WEB_ANN("strait.dev/health-check-path: /hz, strait.dev/health-check-interval: 2s, "
                  "strait.dev/health-check-timeout: 300ms, strait.dev/health-check-status: "
                  "\"200-204\", strait.dev/health-check-healthy-threshold: \"4\", "
                  "strait.dev/health-check-unhealthy-threshold: \"6\", "
                  "strait.dev/health-check-host: Web.Example, "
                  "strait.dev/outlier-consecutive-failures: \"3\", "
                  "strait.dev/outlier-base-ejection-time: 10s, "
                  "strait.dev/outlier-max-ejection-time: 1m, "
                  "strait.dev/outlier-max-ejection-percent: \"30\", "
                  "strait.dev/max-connections: \"100\", strait.dev/max-pending-requests: \"50\", "
                  "strait.dev/max-requests: \"200\", strait.dev/retry-budget-percent: \"25\", "
                  "strait.dev/retry-budget-min-per-second: \"3\", strait.dev/slow-start: 45s, "
                  "strait.dev/load-balance: least_request")
              ING("default", "a", "", RULES RULE("a.com", "/", "Prefix", "web", "{number: 80}")),
          "strait", &r);
    assert_int_equal(r.n_rejections, 0);
    c = find_cluster(&r, "default/web:80+least_request");
    assert_int_equal(c->lb, SNAPWIRE_LB_LEAST_REQUEST);
    assert_string_equal(c->hc_path, "/hz");
    assert_string_equal(c->hc_host, "web.example");
    assert_int_equal(c->hc_interval_ms, 2000);
    assert_int_equal(c->hc_timeout_ms, 300);
    assert_int_equal(c->hc_status_lo, 200);
    assert_int_equal(c->hc_status_hi, 204);
    assert_int_equal(c->hc_healthy, 4);
    assert_int_equal(c->hc_unhealthy, 6);
    assert_int_equal(c->od_consecutive, 3);
    assert_int_equal(c->od_base_ms, 10000);
    assert_int_equal(c->od_max_ms, 60000);
    assert_int_equal(c->od_max_percent, 30);
    assert_int_equal(c->cb_max_connections, 100);
    assert_int_equal(c->cb_max_pending, 50);
    assert_int_equal(c->cb_max_requests, 200);
    assert_int_equal(c->rb_percent, 25);
    assert_int_equal(c->rb_min_per_sec, 3);
    assert_int_equal(c->slow_start_ms, 45000);
    /* and the checked decoder takes them */
    wire_round_trip(&r, 9, &d);
    assert_string_equal(d.clusters[0].hc_host, "web.example");
    assert_int_equal(d.clusters[0].od_max_percent, 30);
    assert_int_equal(d.clusters[0].slow_start_ms, 45000);
    snapwire_free(&d);
    snapbuild_free(&r);

    /* a bad Service annotation: served with the default, reported for an Event per key */
    build(tab[3].yaml, "strait", &r);
    assert_int_equal(r.n_rejected, 0);
    assert_int_equal(r.n_ingresses, 1);
    assert_int_equal(r.n_rejections, 2);
    for (i = 0; i < r.n_rejections; i++) {
        assert_string_equal(r.rejections[i].kind, "Service");
        assert_string_equal(r.rejections[i].ns, "default");
        assert_string_equal(r.rejections[i].name, "web");
        assert_string_equal(r.rejections[i].reason, "InvalidAnnotation");
    }
    assert_string_equal(r.rejections[0].message,
                        "annotation strait.dev/load-balance \"fastest\" is not round_robin, "
                        "least_request, ewma, ring_hash or maglev");
    assert_non_null(strstr(r.rejections[1].message, "annotation strait.dev/slow-start \"2h\""));
    c = find_cluster(&r, "default/web:80");
    assert_int_equal(c->lb, SNAPWIRE_LB_EWMA);
    assert_int_equal(c->slow_start_ms, 0);
    snapbuild_free(&r);
}

/* strait.dev/endpoint-weights: by pod name (targetRef), else by IP, else 1. */
static void test_endpoint_weights(void **state)
{
    static const char *const yaml =
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\n"
        "  annotations: {strait.dev/endpoint-weights: \"web-0=5, 10.0.0.3=7,10.0.0.2=9\"}\n"
        "spec:\n  ports: [{name: http, port: 80}]\n" SLICE(
            "default", "web-a", "web", "[{name: http, port: 8080}]",
            "[{addresses: [10.0.0.1], targetRef: {kind: Pod, name: web-0}}, "
            "{addresses: [10.0.0.2], targetRef: {kind: Pod, name: web-1}}, "
            "{addresses: [10.0.0.3]}, {addresses: [10.0.0.4], targetRef: {name: web-3}}]")
            ING("default", "a", ANN("strait.dev/max-requests: \"3\""),
                RULES RULE("a.com", "/", "Prefix", "web", "{number: 80}"))
                ING("default", "b", "", RULES RULE("b.com", "/", "Prefix", "web", "{number: 80}"));
    static const uint32_t want[] = {5, 9, 7, 1};
    struct snapbuild_result r;
    struct snapwire_snapshot d;
    uint32_t i, j;

    (void)state;
    build(yaml, "strait", &r);
    assert_int_equal(r.n_rejections, 0);
    /* two clusters (the Ingress a overrides), the weights are the Service's in both */
    assert_int_equal(r.snap.n_clusters, 2);
    for (i = 0; i < r.snap.n_clusters; i++) {
        const struct snapwire_cluster *c = &r.snap.clusters[i];
        assert_int_equal(c->endpoint_count, 4);
        for (j = 0; j < 4; j++)
            assert_int_equal(r.snap.endpoints[c->first_endpoint + j].weight, want[j]);
    }
    wire_round_trip(&r, 4, &d);
    for (j = 0; j < 4; j++)
        assert_int_equal(d.endpoints[d.clusters[0].first_endpoint + j].weight, want[j]);
    snapwire_free(&d);
    snapbuild_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),      cmocka_unit_test(test_body_size),
        cmocka_unit_test(test_encodes),    cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_rejections), cmocka_unit_test(test_balancing),
        cmocka_unit_test(test_policy),     cmocka_unit_test(test_endpoint_weights),
    };

    log_init("test", LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
