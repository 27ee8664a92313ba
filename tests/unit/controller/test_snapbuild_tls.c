/*
 * snapbuild, TLS: spec.tls and the TLS annotations into snapwire v3 (certs, tls_hosts,
 * route flags and hsts, upstream TLS clusters, meta.default_cert). Certificates are made
 * here with OpenSSL (EC P-256 and RSA 2048, one expired) and put in Secrets as base64, so
 * the builder's certcheck sees real material. Each case renders the TLS part of the
 * snapshot as compact text:
 *   "T<host>=<cert>[+<cert2>][/<client_ca>:<off|req|opt>] ...; K<cert>:<s|c> ...;
 *    R<host><path>[!][ <hsts>] ...; C<cluster>[:<sni>:<ca|->] ...; D=<default_cert|->"
 * where ! marks SSL_REDIRECT and the C list shows TLS clusters only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "certcheck.h"
#include "filesource.h"
#include "model.h"
#include "snapbuild.h"
#include "snapwire.h"

/* base64 of the PEMs of the test material */
struct mat {
    char *crt, *key, fp[65];
};
static struct mat ec1, ec2, rsa1, expired, cab;

static char *b64(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(4 * ((n + 2) / 3) + 1);

    assert_non_null(out);
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    return out;
}

static char *bio_str(BIO *b)
{
    char *data, *s;
    long n = BIO_get_mem_data(b, &data);

    s = malloc((size_t)n + 1);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    BIO_free(b);
    return s;
}

static void make(struct mat *m, int rsa, long from_days, long to_days, int ca)
{
    EVP_PKEY *k = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIO *b;
    char *pem;
    unsigned char md[32];
    unsigned n = 0, i;
    static long serial = 100;

    assert_non_null(k);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_time_adj_ex(X509_getm_notBefore(x), (int)from_days, 0, NULL);
    X509_time_adj_ex(X509_getm_notAfter(x), (int)to_days, 0, NULL);
    X509_set_pubkey(x, k);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"test", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    X509_digest(x, EVP_sha256(), md, &n);
    for (i = 0; i < n; i++)
        snprintf(m->fp + 2 * i, 3, "%02x", md[i]);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    pem = bio_str(b);
    m->crt = b64(pem);
    free(pem);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    pem = bio_str(b);
    m->key = ca ? NULL : b64(pem);
    free(pem);
    X509_free(x);
    EVP_PKEY_free(k);
}

static int setup(void **state)
{
    (void)state;
    make(&ec1, 0, -1, 30, 0);
    make(&ec2, 0, -1, 30, 0);
    make(&rsa1, 1, -1, 30, 0);
    make(&expired, 0, -10, -1, 0);
    make(&cab, 0, -1, 30, 1);
    return 0;
}

static int teardown(void **state)
{
    struct mat *all[] = {&ec1, &ec2, &rsa1, &expired, &cab};
    size_t i;

    (void)state;
    for (i = 0; i < 5; i++) {
        free(all[i]->crt);
        free(all[i]->key);
    }
    certcheck_reset();
    return 0;
}

/* ---- YAML ---- */

static char yaml[1 << 17];
static size_t ylen;

static void y(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    ylen += (size_t)vsnprintf(yaml + ylen, sizeof(yaml) - ylen, fmt, ap);
    va_end(ap);
    assert_true(ylen < sizeof(yaml));
}

static void y_reset(void)
{
    ylen = 0;
    yaml[0] = '\0';
    /* a Service with a plain port and an https one (appProtocol), and a slice */
    y("---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n"
      "spec:\n  ports: [{name: http, port: 80}, {name: https, port: 443, appProtocol: HTTPS}]\n"
      "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-a\n"
      "  namespace: default\n  labels: {kubernetes.io/service-name: web}\naddressType: IPv4\n"
      "ports: [{name: http, port: 8080}, {name: https, port: 8443}]\n"
      "endpoints: [{addresses: [10.0.0.1]}]\n");
}

static void y_tls(const char *name, const struct mat *m)
{
    y("---\napiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\n"
      "metadata: {name: %s, namespace: default}\ndata:\n  tls.crt: %s\n  tls.key: %s\n",
      name, m->crt, m->key);
}

static void y_ca(const char *name, const struct mat *m)
{
    y("---\napiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: default}\n"
      "data:\n  ca.crt: %s\n",
      name, m->crt);
}

/* An Ingress; ann is a flow mapping body ("" for none), tls and rules are YAML lists. */
static void y_ing(const char *name, const char *created, const char *ann, const char *tls,
                  const char *rules)
{
    y("---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: %s\n"
      "  namespace: default\n  creationTimestamp: \"%s\"\n  annotations: {%s}\n"
      "spec:\n  ingressClassName: strait\n  tls: %s\n  rules: %s\n",
      name, created, ann, tls, rules);
}

#define RULE(host, path, port)                                                                     \
    "{host: \"" host "\", http: {paths: [{path: " path ", pathType: Prefix, backend: {service: "   \
    "{name: web, port: " port "}}}]}}"

/* ---- rendering ---- */

static const char *cert_name(const struct snapwire_snapshot *s, uint32_t i)
{
    return i == SNAPWIRE_NONE ? "-" : s->certs[i].name + strlen("default/");
}

static void render(const struct snapwire_snapshot *s, char *out, size_t n)
{
    static const char *verify[] = {"off", "req", "opt"};
    size_t o = 0;
    uint32_t i, j;

#define OUT(...) o += (size_t)snprintf(out + o, o < n ? n - o : 0, __VA_ARGS__)
    for (i = 0; i < s->n_tls_hosts; i++) {
        const struct snapwire_tls_host *t = &s->tls_hosts[i];
        OUT("T%s=%s", t->host, cert_name(s, t->cert));
        if (t->cert2 != SNAPWIRE_NONE) OUT("+%s", cert_name(s, t->cert2));
        if (t->client_ca != SNAPWIRE_NONE || t->client_verify)
            OUT("/%s:%s", cert_name(s, t->client_ca), verify[t->client_verify]);
        OUT(" ");
    }
    OUT(";");
    for (i = 0; i < s->n_certs; i++)
        OUT(" K%s:%s", cert_name(s, i), s->certs[i].key_pem[0] ? "s" : "c");
    OUT(" ;");
    for (i = 0; i < s->n_vhosts; i++) {
        for (j = 0; j < s->vhosts[i].route_count; j++) {
            const struct snapwire_route *r = &s->routes[s->vhosts[i].first_route + j];
            OUT(" R%s%s%s", s->vhosts[i].host, r->path,
                r->flags & SNAPWIRE_ROUTE_SSL_REDIRECT ? "!" : "");
            if (r->hsts && r->hsts[0]) OUT("[%s]", r->hsts);
        }
    }
    OUT(" ;");
    for (i = 0; i < s->n_clusters; i++)
        if (s->clusters[i].tls)
            OUT(" C%s:%s:%s", s->clusters[i].name, s->clusters[i].tls_sni,
                cert_name(s, s->clusters[i].tls_ca));
    OUT(" ; D=%s", cert_name(s, s->meta.default_cert));
#undef OUT
}

/* Builds yaml (with default_cert, may be NULL) into *r; returns decode-time rejections. */
static unsigned build(const char *default_cert, struct snapbuild_result *r)
{
    struct snapbuild_opts o = {
        .ingress_class = "strait", .source = "file:test", .default_cert = default_cert};
    struct model_cache cache;
    char err[256];
    unsigned rej;

    model_cache_init(&cache);
    assert_true(filesource_load_buffer("case.yaml", yaml, ylen, &cache) >= 0);
    model_cache_seal(&cache);
    rej = cache.n_rejected;
    assert_int_equal(snapbuild_build_opts(&cache, &o, r, err, sizeof(err)), 0);
    model_cache_free(&cache);
    return rej;
}

static void expect(const char *default_cert, const char *want)
{
    struct snapbuild_result r;
    char got[4096];

    build(default_cert, &r);
    render(&r.snap, got, sizeof(got));
    if (strcmp(got, want)) print_error("want %s\ngot  %s\n", want, got);
    assert_string_equal(got, want);
    snapbuild_free(&r);
}

/* The rejection of Ingress name with reason code, or NULL. */
static const struct snapbuild_rejection *find_rej(const struct snapbuild_result *r,
                                                  const char *name, const char *code)
{
    size_t i;

    for (i = 0; i < r->n_rejections; i++)
        if (!strcmp(r->rejections[i].name, name) && !strcmp(r->rejections[i].reason, code))
            return &r->rejections[i];
    return NULL;
}

/* ---- cases ---- */

static void test_hosts_sorted_and_certs(void **state)
{
    (void)state;
    y_reset();
    y_tls("b-cert", &ec1);
    y_tls("a-cert", &ec2);
    y_tls("unused", &rsa1);
    /* hosts listed out of order; an entry without hosts takes the rules' hosts */
    y_ing("one", "2024-01-01T00:00:00Z", "",
          "[{hosts: [z.com, \"*.w.com\", B.com], secretName: b-cert}, {secretName: a-cert}]",
          "[" RULE("a.com", "/", "{number: 80}") ", " RULE("", "/", "{number: 80}") "]");
    expect(NULL, "T*.w.com=b-cert Ta.com=a-cert Tb.com=b-cert Tz.com=b-cert ; Ka-cert:s "
                 "Kb-cert:s ; R/ Ra.com/! ; ; D=-");
}

static void test_fingerprints_and_wire(void **state)
{
    struct snapbuild_result r;
    struct snapwire_snapshot d;
    uint8_t *f1, *f2;
    size_t l1, l2;
    char err[256];

    (void)state;
    y_reset();
    y_tls("c", &ec1);
    y_ca("cab", &cab);
    y_ing("one", "2024-01-01T00:00:00Z",
          "strait.dev/auth-tls-secret: cab, strait.dev/backend-protocol: https, "
          "strait.dev/proxy-ssl-secret: default/cab",
          "[{hosts: [a.com], secretName: c}]", "[" RULE("a.com", "/", "{number: 80}") "]");
    build(NULL, &r);
    assert_int_equal(r.snap.n_certs, 2); /* cab once, for client and upstream checks */
    assert_string_equal(r.snap.certs[0].name, "default/c");
    assert_string_equal(r.snap.certs[0].fingerprint, ec1.fp);
    assert_non_null(strstr(r.snap.certs[0].key_pem, "PRIVATE KEY"));
    assert_true(r.snap.certs[0].not_after > (uint64_t)time(NULL));
    assert_string_equal(r.snap.certs[1].name, "default/cab");
    assert_string_equal(r.snap.certs[1].key_pem, "");
    assert_string_equal(r.snap.certs[1].fingerprint, cab.fp);
    /* the checked reader accepts it, and the same input gives the same bytes */
    assert_int_equal(snapwire_encode(&r.snap, 1, &f1, &l1, err, sizeof(err)), 0);
    assert_int_equal(snapwire_decode(f1, l1, &d, err, sizeof(err)), 0);
    assert_int_equal(d.n_tls_hosts, 1);
    assert_int_equal(d.tls_hosts[0].client_verify, SNAPWIRE_CLIENT_VERIFY_REQUIRED);
    snapwire_free(&d);
    snapbuild_free(&r);
    build(NULL, &r);
    assert_int_equal(snapwire_encode(&r.snap, 1, &f2, &l2, err, sizeof(err)), 0);
    assert_int_equal(l1, l2);
    assert_memory_equal(f1, f2, l1);
    free(f1);
    free(f2);
    snapbuild_free(&r);
    expect(NULL,
           "Ta.com=c/cab:req ; Kc:s Kcab:c ; Ra.com/! ; Cdefault/web:80+tls:web.default.svc:cab "
           "; D=-");
}

static void test_cert2_oldest_wins_conflict(void **state)
{
    struct snapbuild_result r;
    const struct snapbuild_rejection *rej;

    (void)state;
    y_reset();
    y_tls("ec-old", &ec1);
    y_tls("ec-new", &ec2);
    y_tls("rsa", &rsa1);
    /* names in the other order than age: the oldest wins, not the first by name */
    y_ing("a-newest", "2024-03-01T00:00:00Z", "",
          "[{hosts: [h.com, only.com], secretName: ec-new}]",
          "[" RULE("h.com", "/c", "{number: 80}") "]");
    y_ing("b-middle", "2024-02-01T00:00:00Z", "", "[{hosts: [h.com], secretName: rsa}]",
          "[" RULE("h.com", "/b", "{number: 80}") "]");
    y_ing("c-oldest", "2024-01-01T00:00:00Z", "", "[{hosts: [h.com], secretName: ec-old}]",
          "[" RULE("h.com", "/a", "{number: 80}") "]");
    expect(NULL, "Th.com=ec-old+rsa Tonly.com=ec-new ; Kec-new:s Kec-old:s Krsa:s ; Rh.com/a! "
                 "Rh.com/b! Rh.com/c! ; ; D=-");
    build(NULL, &r);
    /* the third certificate for h.com (EC again) is a conflict against the newest Ingress */
    assert_int_equal(r.n_conflicts, 1);
    assert_non_null(rej = find_rej(&r, "a-newest", "Conflict"));
    assert_non_null(strstr(rej->message, "TLS host h.com"));
    assert_non_null(strstr(rej->message, "default/ec-old"));
    assert_null(find_rej(&r, "b-middle", "Conflict"));
    snapbuild_free(&r);
}

static void test_redirect_flags_and_hsts(void **state)
{
    struct snapbuild_result r;

    (void)state;
    y_reset();
    y_tls("c", &ec1);
    /* tls for a.com and *.w.com comes from Ingress "tls"; the others only route */
    y_ing("tls", "2024-01-01T00:00:00Z",
          "strait.dev/hsts: \"true\", strait.dev/hsts-max-age: \"100\", "
          "strait.dev/hsts-include-subdomains: \"false\", strait.dev/hsts-preload: \"true\"",
          "[{hosts: [a.com, \"*.w.com\"], secretName: c}]",
          "[" RULE("a.com", "/", "{number: 80}") "]");
    y_ing(
        "plain", "2024-01-02T00:00:00Z", "strait.dev/hsts: \"true\"", "[]",
        "[" RULE("a.com", "/p", "{number: 80}") ", " RULE("x.w.com", "/", "{number: 80}") ", " RULE(
            "y.x.w.com", "/", "{number: 80}") ", " RULE("n.com", "/", "{number: 80}") "]");
    y_ing("optout", "2024-01-03T00:00:00Z", "strait.dev/ssl-redirect: \"false\"", "[]",
          "[" RULE("a.com", "/o", "{number: 80}") "]");
    y_ing("forced", "2024-01-04T00:00:00Z", "strait.dev/force-ssl-redirect: \"true\"", "[]",
          "[" RULE("f.com", "/", "{number: 80}") ", " RULE("", "/", "{number: 80}") "]");
    expect(NULL,
           "T*.w.com=c Ta.com=c ; Kc:s ; R/! Ra.com/o Ra.com/p![max-age=31536000; "
           "includeSubDomains] Ra.com/![max-age=100; preload] Rf.com/! Rn.com/[max-age=31536000; "
           "includeSubDomains] Rx.w.com/![max-age=31536000; includeSubDomains] "
           "Ry.x.w.com/[max-age=31536000; includeSubDomains] ; ; D=-");
    /* bad values reject their Ingress only, at decode */
    y_reset();
    y_ing("b1", "2024-01-01T00:00:00Z", "strait.dev/ssl-redirect: \"yes\"", "[]",
          "[" RULE("a.com", "/", "{number: 80}") "]");
    y_ing("b2", "2024-01-01T00:00:00Z", "strait.dev/hsts-max-age: \"1d\"", "[]",
          "[" RULE("a.com", "/", "{number: 80}") "]");
    y_ing("b3", "2024-01-01T00:00:00Z", "strait.dev/auth-tls-verify-client: maybe", "[]",
          "[" RULE("a.com", "/", "{number: 80}") "]");
    y_ing("b4", "2024-01-01T00:00:00Z", "strait.dev/backend-protocol: GRPC", "[]",
          "[" RULE("a.com", "/", "{number: 80}") "]");
    y_ing("b5", "2024-01-01T00:00:00Z", "strait.dev/auth-tls-secret: \"a/b/c\"", "[]",
          "[" RULE("a.com", "/", "{number: 80}") "]");
    y_ing("b6", "2024-01-01T00:00:00Z", "", "[{hosts: [\"1.2.3.4\"]}]",
          "[" RULE("a.com", "/", "{number: 80}") "]");
    y_ing("ok", "2024-01-01T00:00:00Z", "strait.dev/backend-protocol: Http", "[]",
          "[" RULE("a.com", "/", "{number: 80}") "]");
    assert_int_equal(build(NULL, &r), 6);
    assert_int_equal(r.n_ingresses, 1);
    snapbuild_free(&r);
}

static void test_upstream_tls_clusters(void **state)
{
    struct snapbuild_result r;
    const struct snapbuild_rejection *rej;

    (void)state;
    y_reset();
    y_ca("cab", &cab);
    y_ing("plain", "2024-01-01T00:00:00Z", "", "[]", "[" RULE("a.com", "/", "{number: 80}") "]");
    y_ing("https", "2024-01-02T00:00:00Z",
          "strait.dev/backend-protocol: HTTPS, strait.dev/proxy-ssl-name: Up.Example", "[]",
          "[" RULE("b.com", "/", "{number: 80}") "]");
    y_ing("verified", "2024-01-03T00:00:00Z",
          "strait.dev/backend-protocol: HTTPS, strait.dev/proxy-ssl-secret: cab", "[]",
          "[" RULE("c.com", "/", "{number: 80}") "]");
    /* appProtocol https on the Service port, no annotation */
    y_ing("app", "2024-01-04T00:00:00Z", "", "[]", "[" RULE("d.com", "/", "{name: https}") "]");
    expect(NULL, "; Kcab:c ; Ra.com/ Rb.com/ Rc.com/ Rd.com/ ; "
                 "Cdefault/web:80+tls:up.example:- Cdefault/web:80+tls:web.default.svc:cab "
                 "Cdefault/web:443+tls:web.default.svc:- ; D=-");
    build(NULL, &r);
    assert_int_equal(r.snap.n_clusters, 4); /* the plain default/web:80 too */
    assert_string_equal(r.snap.clusters[0].name, "default/web:80");
    assert_int_equal(r.snap.clusters[0].tls, 0);
    assert_int_equal(r.snap.clusters[0].tls_ca, SNAPWIRE_NONE);
    snapbuild_free(&r);
    /* a missing upstream CA refuses the Ingress (fail closed); the others are served */
    y_ing("noca", "2024-01-05T00:00:00Z",
          "strait.dev/backend-protocol: HTTPS, strait.dev/proxy-ssl-secret: missing", "[]",
          "[" RULE("e.com", "/", "{number: 80}") "]");
    build(NULL, &r);
    assert_int_equal(r.n_rejected, 1);
    assert_non_null(rej = find_rej(&r, "noca", "SecretNotFound"));
    assert_string_equal(rej->message,
                        "annotation strait.dev/proxy-ssl-secret: secret default/missing not found");
    assert_int_equal(r.n_ingresses, 4);
    snapbuild_free(&r);
}

static void test_client_auth(void **state)
{
    struct snapbuild_result r;
    const struct snapbuild_rejection *rej;

    (void)state;
    y_reset();
    y_tls("c", &ec1);
    y_ca("cab", &cab);
    y_tls("notca", &ec2); /* a TLS Secret without ca.crt */
    y_ing("req", "2024-01-01T00:00:00Z", "strait.dev/auth-tls-secret: default/cab",
          "[{hosts: [r.com], secretName: c}]", "[" RULE("r.com", "/", "{number: 80}") "]");
    y_ing("opt", "2024-01-02T00:00:00Z",
          "strait.dev/auth-tls-secret: cab, strait.dev/auth-tls-verify-client: optional",
          "[{hosts: [o.com], secretName: c}]", "[" RULE("o.com", "/", "{number: 80}") "]");
    y_ing("off", "2024-01-03T00:00:00Z",
          "strait.dev/auth-tls-secret: cab, strait.dev/auth-tls-verify-client: \"off\"",
          "[{hosts: [f.com], secretName: c}]", "[" RULE("f.com", "/", "{number: 80}") "]");
    /* a newer Ingress's settings do not apply to a host whose certificate the older gives */
    y_ing("late", "2024-01-04T00:00:00Z", "", "[{hosts: [r.com], secretName: c}]",
          "[" RULE("r.com", "/late", "{number: 80}") "]");
    expect(NULL, "Tf.com=c To.com=c/cab:opt Tr.com=c/cab:req ; Kc:s Kcab:c ; Rf.com/! Ro.com/! "
                 "Rr.com/late! Rr.com/! ; ; D=-");
    /* a CA Secret without ca.crt refuses the Ingress: no silent "everyone may pass" */
    y_ing("bad", "2024-01-05T00:00:00Z", "strait.dev/auth-tls-secret: notca",
          "[{hosts: [b.com], secretName: c}]", "[" RULE("b.com", "/", "{number: 80}") "]");
    build(NULL, &r);
    assert_non_null(rej = find_rej(&r, "bad", "InvalidCertificate"));
    assert_string_equal(rej->message,
                        "annotation strait.dev/auth-tls-secret: secret default/notca: ca.crt is "
                        "empty");
    assert_int_equal(r.n_rejected, 1);
    snapbuild_free(&r);
}

static void test_client_auth_without_any_certificate(void **state)
{
    struct snapbuild_result r;
    const struct snapbuild_rejection *rej;

    (void)state;
    y_reset();
    y_ca("cab", &cab);
    y_tls("def", &rsa1);
    /* client certificates asked for, but the host's own Secret is missing */
    y_ing("mtls", "2024-01-01T00:00:00Z", "strait.dev/auth-tls-secret: cab",
          "[{hosts: [m.com, \"*.w.com\"], secretName: nosuch}]",
          "[" RULE("m.com", "/", "{number: 80}") ", " RULE("m.com", "/x", "{number: 80}") ", " RULE(
              "a.w.com", "/", "{number: 80}") "]");
    y_ing("other", "2024-01-02T00:00:00Z", "", "[]", "[" RULE("o.com", "/", "{number: 80}") "]");
    /* with a default certificate the host is served with it, client check included */
    expect("default/def", "T*.w.com=def/cab:req Tm.com=def/cab:req ; Kcab:c Kdef:s ; Ra.w.com/! "
                          "Rm.com/x! Rm.com/! Ro.com/ ; ; D=def");
    /* without one, the data plane could only answer with its own certificate and no client
     * check: the routes of those hosts are not served (fail closed), the rest is */
    expect(NULL, "; ; Ro.com/ ; ; D=-");
    build(NULL, &r);
    assert_non_null(rej = find_rej(&r, "mtls", "InvalidCertificate"));
    assert_non_null(strstr(rej->message, "TLS host "));
    assert_non_null(strstr(rej->message, "its routes are not served"));
    /* one per host (m.com has two routes), besides the SecretNotFound of spec.tls */
    assert_int_equal(r.n_rejections, 3);
    snapbuild_free(&r);
}

static void test_bad_certificates(void **state)
{
    struct snapbuild_result r;
    const struct snapbuild_rejection *rej;

    (void)state;
    certcheck_reset();
    y_reset();
    y_tls("good", &ec1);
    y_tls("def", &rsa1);
    y_tls("old", &expired);
    /* ec2's certificate with ec1's key */
    y("---\napiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\n"
      "metadata: {name: mixed, namespace: default}\ndata:\n  tls.crt: %s\n  tls.key: %s\n",
      ec2.crt, ec1.key);
    y_ing("one", "2024-01-01T00:00:00Z", "",
          "[{hosts: [g.com], secretName: good}, {hosts: [e.com], secretName: old}, "
          "{hosts: [m.com], secretName: mixed}, {hosts: [n.com], secretName: none}, "
          "{hosts: [d.com]}]",
          "[" RULE("g.com", "/", "{number: 80}") ", " RULE("e.com", "/", "{number: 80}") "]");
    /* without a default certificate the bad hosts are left to the data plane's own one, but
     * they still count as TLS hosts for the redirect; the routes are served */
    expect(NULL, "Tg.com=good ; Kgood:s ; Re.com/! Rg.com/! ; ; D=-");
    expect("default/def", "Td.com=def Te.com=def Tg.com=good Tm.com=def Tn.com=def ; Kdef:s "
                          "Kgood:s ; Re.com/! Rg.com/! ; ; D=def");
    /* a default certificate that is no good: none, and nothing else changes */
    expect("default/old", "Tg.com=good ; Kgood:s ; Re.com/! Rg.com/! ; ; D=-");
    build(NULL, &r);
    assert_int_equal(r.n_rejected, 0);
    assert_int_equal(r.n_ingresses, 1);
    assert_non_null(rej = find_rej(&r, "one", "SecretNotFound"));
    assert_string_equal(rej->message,
                        "secret default/none not found (its hosts get the default certificate)");
    assert_non_null(rej = find_rej(&r, "one", "InvalidCertificate"));
    assert_non_null(strstr(rej->message, "secret default/old: certificate expired on "));
    assert_int_equal(r.n_rejections, 3);
    snapbuild_free(&r);
}

static void test_last_good_across_builds(void **state)
{
    struct snapbuild_result r;
    const struct snapbuild_rejection *rej;

    (void)state;
    certcheck_reset();
    y_reset();
    y_tls("s", &ec1);
    y_ing("one", "2024-01-01T00:00:00Z", "", "[{hosts: [a.com], secretName: s}]",
          "[" RULE("a.com", "/", "{number: 80}") "]");
    build(NULL, &r);
    assert_string_equal(r.snap.certs[0].fingerprint, ec1.fp);
    snapbuild_free(&r);
    /* the Secret's new content has a key that does not match: the old one stays */
    y_reset();
    y("---\napiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\n"
      "metadata: {name: s, namespace: default}\ndata:\n  tls.crt: %s\n  tls.key: %s\n",
      ec2.crt, ec1.key);
    y_ing("one", "2024-01-01T00:00:00Z", "", "[{hosts: [a.com], secretName: s}]",
          "[" RULE("a.com", "/", "{number: 80}") "]");
    build(NULL, &r);
    assert_int_equal(r.snap.n_tls_hosts, 1);
    assert_string_equal(r.snap.certs[0].fingerprint, ec1.fp);
    assert_non_null(rej = find_rej(&r, "one", "InvalidCertificate"));
    assert_string_equal(rej->message, "secret default/s: tls.key does not match the certificate "
                                      "(its last good certificate is served)");
    snapbuild_free(&r);
    /* a fresh process (no memory) has nothing good to serve */
    certcheck_reset();
    build(NULL, &r);
    assert_int_equal(r.snap.n_tls_hosts, 0);
    assert_int_equal(r.snap.n_certs, 0);
    snapbuild_free(&r);
    /* good again: the new certificate */
    y_reset();
    y_tls("s", &ec2);
    y_ing("one", "2024-01-01T00:00:00Z", "", "[{hosts: [a.com], secretName: s}]",
          "[" RULE("a.com", "/", "{number: 80}") "]");
    build(NULL, &r);
    assert_string_equal(r.snap.certs[0].fingerprint, ec2.fp);
    assert_int_equal(r.n_rejections, 0);
    snapbuild_free(&r);
}

static void test_secrets_decoded(void **state)
{
    struct model_cache cache;

    (void)state;
    y_reset();
    y_ca("cab", &cab);
    /* an Opaque Secret without ca.crt, and a service-account token: not kept, not errors */
    y("---\napiVersion: v1\nkind: Secret\nmetadata: {name: pw, namespace: default}\n"
      "stringData: {password: x}\n---\napiVersion: v1\nkind: Secret\n"
      "type: kubernetes.io/service-account-token\nmetadata: {name: tok, namespace: default}\n"
      "data: {token: eA==}\n");
    /* a TLS Secret without tls.key is refused at decode */
    y("---\napiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\n"
      "metadata: {name: half, namespace: default}\ndata:\n  tls.crt: %s\n",
      ec1.crt);
    model_cache_init(&cache);
    assert_int_equal(filesource_load_buffer("case.yaml", yaml, ylen, &cache), 3);
    model_cache_seal(&cache);
    assert_int_equal(cache.n_rejected, 1);
    assert_int_equal(cache.kinds[MODEL_KIND_SECRET].n, 1);
    assert_string_equal(((struct model_secret *)cache.kinds[MODEL_KIND_SECRET].items[0])->type,
                        "Opaque");
    assert_non_null(((struct model_secret *)cache.kinds[MODEL_KIND_SECRET].items[0])->ca_crt);
    model_cache_free(&cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hosts_sorted_and_certs),
        cmocka_unit_test(test_fingerprints_and_wire),
        cmocka_unit_test(test_cert2_oldest_wins_conflict),
        cmocka_unit_test(test_redirect_flags_and_hsts),
        cmocka_unit_test(test_upstream_tls_clusters),
        cmocka_unit_test(test_client_auth),
        cmocka_unit_test(test_client_auth_without_any_certificate),
        cmocka_unit_test(test_bad_certificates),
        cmocka_unit_test(test_last_good_across_builds),
        cmocka_unit_test(test_secrets_decoded),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
