/*
 * meshca: identities, roots (generated, loaded, refused) and leaves checked the way a peer
 * will check them: OpenSSL's chain verification against the root alone, the leaf's one URI
 * SAN, its key usages, its dates. CSRs are made here with OpenSSL, including the ones that
 * must be refused (a forged signature, a weak key, names it has no right to).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../controller/meshca.c"

static const time_t NOW = 1893456000; /* 2030-01-01 */

static void test_identity(void **state)
{
    char id[MESHCA_ID_MAX], err[256];

    (void)state;
    assert_int_equal(
        meshca_identity("cluster.local", "default", "web", id, sizeof(id), err, sizeof(err)), 0);
    assert_string_equal(id, "spiffe://cluster.local/ns/default/sa/web");
    assert_int_equal(
        meshca_identity("td_1.example-x", "a-b", "x.y-z", id, sizeof(id), err, sizeof(err)), 0);
    static const char *bad[][3] = {
        {"Cluster.local", "default", "web"}, {"", "default", "web"},
        {"cluster.local", "Default", "web"}, {"cluster.local", "-ns", "web"},
        {"cluster.local", "a.b", "web"},     {"cluster.local", "default", "web/../x"},
        {"cluster.local", "default", ""},    {"cluster/local", "default", "web"},
        {"cluster.local", "default", "we b"}};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(
            meshca_identity(bad[i][0], bad[i][1], bad[i][2], id, sizeof(id), err, sizeof(err)), -1);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(meshca_identity("cluster.local", "default", "web", id, 20, err, sizeof(err)),
                     -1);
}

/* A CSR for key with subject CN=cn and, when san is set, a SAN request of its own. */
static char *make_csr(EVP_PKEY *key, const char *cn, const char *san)
{
    X509_REQ *r = X509_REQ_new();
    X509_NAME *nm = X509_NAME_new();
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *out;
    long n;

    assert_non_null(r);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_REQ_set_subject_name(r, nm);
    X509_REQ_set_pubkey(r, key);
    if (san) {
        STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
        assert_non_null(e);
        sk_X509_EXTENSION_push(exts, e);
        X509_REQ_add_extensions(r, exts);
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    }
    assert_true(X509_REQ_sign(r, key, EVP_sha256()) > 0);
    PEM_write_bio_X509_REQ(b, r);
    n = BIO_get_mem_data(b, &data);
    out = malloc((size_t)n + 1);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    BIO_free(b);
    X509_NAME_free(nm);
    X509_REQ_free(r);
    return out;
}

static X509 *parse_cert(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(x);
    return x;
}

/* X509_verify_cert of leaf against root alone at time t, for purpose (0: any). */
static int verify(const char *root_pem, const char *leaf_pem, time_t t, int purpose)
{
    X509 *root = parse_cert(root_pem), *leaf = parse_cert(leaf_pem);
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok;

    X509_STORE_add_cert(st, root);
    X509_STORE_CTX_init(ctx, st, leaf, NULL);
    X509_STORE_CTX_set_time(ctx, 0, t);
    if (purpose) X509_STORE_CTX_set_purpose(ctx, purpose);
    ok = X509_verify_cert(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    X509_free(root);
    X509_free(leaf);
    ERR_clear_error();
    return ok;
}

/* The leaf's URI SANs (and how many names it has at all) and its subject entries. */
static void names_of(const char *pem, char *uri, size_t n, int *names, int *subject_entries,
                     int *san_critical)
{
    X509 *x = parse_cert(pem);
    int crit = -1;
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);

    *names = sans ? sk_GENERAL_NAME_num(sans) : 0;
    uri[0] = '\0';
    for (int i = 0; i < *names; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type == GEN_URI)
            snprintf(uri, n, "%s", (const char *)ASN1_STRING_get0_data(g->d.ia5));
    }
    *subject_entries = X509_NAME_entry_count(X509_get_subject_name(x));
    *san_critical = crit;
    GENERAL_NAMES_free(sans);
    X509_free(x);
}

static void test_generate_sign_verify(void **state)
{
    char err[256], uri[600], *leaf = NULL, *csr;
    struct meshca *ca, *again;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    int names, subj, crit;
    X509 *x;

    (void)state;
    assert_non_null(ca = meshca_generate("cluster.local", 365, NOW, err, sizeof(err)));
    /* the root reloads from its own PEM (what a Secret keeps) */
    assert_non_null(again = meshca_load("cluster.local", meshca_cert_pem(ca), meshca_key_pem(ca),
                                        NOW, err, sizeof(err)));
    meshca_free(again);
    /* the CSR asks for another identity by subject and SAN: neither is given */
    csr = make_csr(key, "spiffe://cluster.local/ns/kube-system/sa/admin",
                   "URI:spiffe://cluster.local/ns/kube-system/sa/admin,DNS:evil.example");
    assert_int_equal(meshca_sign(ca, csr, "shop", "checkout", 86400, NOW, &leaf, err, sizeof(err)),
                     0);
    names_of(leaf, uri, sizeof(uri), &names, &subj, &crit);
    assert_string_equal(uri, "spiffe://cluster.local/ns/shop/sa/checkout");
    assert_int_equal(names, 1);
    assert_int_equal(subj, 0);
    assert_int_equal(crit, 1);
    /* a peer's checks: chains to the root, for TLS server and client use, within its dates */
    assert_int_equal(verify(meshca_cert_pem(ca), leaf, NOW, 0), 1);
    assert_int_equal(verify(meshca_cert_pem(ca), leaf, NOW, X509_PURPOSE_SSL_SERVER), 1);
    assert_int_equal(verify(meshca_cert_pem(ca), leaf, NOW, X509_PURPOSE_SSL_CLIENT), 1);
    assert_int_equal(verify(meshca_cert_pem(ca), leaf, NOW + 86400 + 10, 0), 0);
    assert_int_equal(verify(meshca_cert_pem(ca), leaf, NOW - 3600, 0), 0);
    x = parse_cert(leaf);
    assert_int_equal(X509_check_ca(x), 0);
    assert_true(X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE);
    assert_int_equal(X509_get_key_usage(x) & KU_KEY_CERT_SIGN, 0);
    /* an EC key cannot encipher (RFC 5480 3): the leaf does not say it can */
    assert_int_equal(X509_get_key_usage(x) & KU_KEY_ENCIPHERMENT, 0);
    assert_true(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
    assert_true(X509_get_extended_key_usage(x) & XKU_SSL_CLIENT);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), key), 1); /* the CSR's key */
    X509_free(x);
    free(leaf);
    /* never past the root's end: a 31-day leaf from a root with 10 days left */
    assert_int_equal(meshca_sign(ca, csr, "shop", "checkout", 31 * 86400, NOW + 355 * 86400, &leaf,
                                 err, sizeof(err)),
                     0);
    x = parse_cert(leaf);
    {
        X509 *root = parse_cert(meshca_cert_pem(ca));
        assert_int_equal(ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(root)), 0);
        X509_free(root);
    }
    X509_free(x);
    free(leaf);
    /* another CA does not vouch for it */
    again = meshca_generate("cluster.local", 365, NOW, err, sizeof(err));
    assert_int_equal(meshca_sign(ca, csr, "shop", "checkout", 86400, NOW, &leaf, err, sizeof(err)),
                     0);
    assert_int_equal(verify(meshca_cert_pem(again), leaf, NOW, 0), 0);
    free(leaf);
    meshca_free(again);
    free(csr);
    EVP_PKEY_free(key);
    meshca_free(ca);
}

static void test_refused_csrs(void **state)
{
    char err[256], *leaf = (char *)1, *csr, *p;
    struct meshca *ca = meshca_generate("cluster.local", 30, NOW, err, sizeof(err));
    EVP_PKEY *ec = EVP_EC_gen("P-256"), *rsa1k = EVP_RSA_gen(1024), *ec521 = EVP_EC_gen("P-521");
    EVP_PKEY *rsa2k = EVP_RSA_gen(2048);

    (void)state;
    assert_non_null(ca);
    /* garbage, a weak RSA key, a curve not accepted */
    assert_int_equal(meshca_sign(ca, "not a csr", "a", "b", 86400, NOW, &leaf, err, sizeof(err)),
                     -1);
    assert_null(leaf);
    assert_non_null(strstr(err, "CSR does not parse"));
    csr = make_csr(rsa1k, "x", NULL);
    assert_int_equal(meshca_sign(ca, csr, "a", "b", 86400, NOW, &leaf, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "RSA 1024 bits"));
    free(csr);
    csr = make_csr(ec521, "x", NULL);
    assert_int_equal(meshca_sign(ca, csr, "a", "b", 86400, NOW, &leaf, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "secp521r1"));
    free(csr);
    csr = make_csr(rsa2k, "x", NULL);
    assert_int_equal(meshca_sign(ca, csr, "a", "b", 86400, NOW, &leaf, err, sizeof(err)), 0);
    {
        X509 *rx = parse_cert(leaf); /* RSA key transport in TLS 1.2 wants keyEncipherment */
        assert_true(X509_get_key_usage(rx) & KU_DIGITAL_SIGNATURE);
        assert_true(X509_get_key_usage(rx) & KU_KEY_ENCIPHERMENT);
        X509_free(rx);
    }
    free(leaf);
    free(csr);
    /* a CSR whose signature does not match its key: one base64 character of it changed */
    csr = make_csr(ec, "x", NULL);
    p = strstr(csr, "-----END") - 10;
    *p = *p == 'A' ? 'B' : 'A';
    assert_int_equal(meshca_sign(ca, csr, "a", "b", 86400, NOW, &leaf, err, sizeof(err)), -1);
    assert_true(strstr(err, "does not verify") || strstr(err, "does not parse"));
    free(csr);
    /* names and lifetimes out of range */
    csr = make_csr(ec, "x", NULL);
    assert_int_equal(meshca_sign(ca, csr, "A", "b", 86400, NOW, &leaf, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "namespace"));
    assert_int_equal(meshca_sign(ca, csr, "a", "b/c", 86400, NOW, &leaf, err, sizeof(err)), -1);
    assert_int_equal(
        meshca_sign(ca, csr, "a", "b", MESHCA_TTL_MIN - 1, NOW, &leaf, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "lifetime"));
    assert_int_equal(
        meshca_sign(ca, csr, "a", "b", MESHCA_TTL_MAX + 1, NOW, &leaf, err, sizeof(err)), -1);
    /* the shortest lifetime (tests of renewal use it) */
    assert_int_equal(meshca_sign(ca, csr, "a", "b", 20, NOW, &leaf, err, sizeof(err)), 0);
    {
        time_t na = 0;
        assert_int_equal(meshca_pem_not_after(leaf, &na), 0);
        assert_int_equal(na, NOW + 20);
    }
    free(leaf);
    free(csr);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa1k);
    EVP_PKEY_free(rsa2k);
    EVP_PKEY_free(ec521);
    meshca_free(ca);
}

static void test_refused_roots(void **state)
{
    char err[256];
    struct meshca *a = meshca_generate("cluster.local", 30, NOW, err, sizeof(err));
    struct meshca *b = meshca_generate("cluster.local", 30, NOW, err, sizeof(err));
    char *leaf, *csr;
    EVP_PKEY *k = EVP_EC_gen("P-256");

    (void)state;
    assert_null(meshca_generate("Bad Domain", 30, NOW, err, sizeof(err)));
    assert_null(meshca_generate("cluster.local", 0, NOW, err, sizeof(err)));
    /* a certificate with another root's key */
    assert_null(
        meshca_load("cluster.local", meshca_cert_pem(a), meshca_key_pem(b), NOW, err, sizeof(err)));
    assert_non_null(strstr(err, "do not match"));
    /* expired, not yet valid */
    assert_null(meshca_load("cluster.local", meshca_cert_pem(a), meshca_key_pem(a),
                            NOW + 31 * 86400, err, sizeof(err)));
    assert_non_null(strstr(err, "not valid now"));
    assert_null(meshca_load("cluster.local", meshca_cert_pem(a), meshca_key_pem(a), NOW - 3600, err,
                            sizeof(err)));
    /* a leaf is not a CA */
    csr = make_csr(k, "x", NULL);
    assert_int_equal(meshca_sign(a, csr, "a", "b", 86400, NOW, &leaf, err, sizeof(err)), 0);
    {
        BIO *kb = BIO_new(BIO_s_mem());
        char *kp;
        long n;
        PEM_write_bio_PrivateKey(kb, k, NULL, NULL, 0, NULL, NULL);
        n = BIO_get_mem_data(kb, &kp);
        char *key_pem = strndup(kp, (size_t)n);
        assert_null(meshca_load("cluster.local", leaf, key_pem, NOW, err, sizeof(err)));
        assert_non_null(strstr(err, "not a CA"));
        free(key_pem);
        BIO_free(kb);
    }
    assert_null(meshca_load("cluster.local", "junk", meshca_key_pem(a), NOW, err, sizeof(err)));
    assert_non_null(strstr(err, "does not parse"));
    free(leaf);
    free(csr);
    EVP_PKEY_free(k);
    meshca_free(a);
    meshca_free(b);
}

/* Roots after the first go to the bundle, never sign; each must be a usable CA itself. */
static void test_bundle(void **state)
{
    char err[256], *two, *leaf, *csr, *bad;
    struct meshca *old = meshca_generate("cluster.local", 30, NOW - 86400, err, sizeof(err));
    struct meshca *cur = meshca_generate("cluster.local", 365, NOW, err, sizeof(err));
    struct meshca *ca;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    time_t na;

    (void)state;
    assert_non_null(old);
    assert_non_null(cur);
    /* a generated CA's bundle is its root */
    assert_string_equal(meshca_bundle_pem(cur), meshca_cert_pem(cur));
    assert_int_equal(meshca_not_after(cur), NOW + 365 * 86400);
    assert_int_equal(meshca_pem_not_after(meshca_cert_pem(old), &na), 0);
    assert_int_equal(na, NOW - 86400 + 30 * 86400);
    assert_int_equal(meshca_pem_not_after("junk", &na), -1);
    assert_true(asprintf(&two, "%s%s", meshca_cert_pem(cur), meshca_cert_pem(old)) > 0);
    assert_non_null(
        ca = meshca_load("cluster.local", two, meshca_key_pem(cur), NOW, err, sizeof(err)));
    assert_string_equal(meshca_bundle_pem(ca), two);
    assert_string_equal(meshca_cert_pem(ca), meshca_cert_pem(cur));
    csr = make_csr(k, "x", NULL);
    assert_int_equal(meshca_sign(ca, csr, "a", "b", 3600, NOW, &leaf, err, sizeof(err)), 0);
    assert_int_equal(verify(meshca_cert_pem(cur), leaf, NOW, 0), 1); /* signed by the first */
    assert_int_equal(verify(meshca_cert_pem(old), leaf, NOW, 0), 0);
    free(leaf);
    meshca_free(ca);
    /* the old root's key does not match the first certificate: refused */
    assert_null(meshca_load("cluster.local", two, meshca_key_pem(old), NOW, err, sizeof(err)));
    /* an extra root that expired, or that is garbage */
    assert_null(
        meshca_load("cluster.local", two, meshca_key_pem(cur), NOW + 40 * 86400, err, sizeof(err)));
    assert_non_null(strstr(err, "root certificate 2 is not valid now"));
    assert_true(asprintf(&bad, "%s-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                         meshca_cert_pem(cur)) > 0);
    assert_null(meshca_load("cluster.local", bad, meshca_key_pem(cur), NOW, err, sizeof(err)));
    assert_non_null(strstr(err, "root certificate 2 does not parse"));
    free(bad);
    /* a leaf as the second root */
    assert_int_equal(meshca_sign(cur, csr, "a", "b", 3600, NOW, &leaf, err, sizeof(err)), 0);
    assert_true(asprintf(&bad, "%s%s", meshca_cert_pem(cur), leaf) > 0);
    assert_null(meshca_load("cluster.local", bad, meshca_key_pem(cur), NOW, err, sizeof(err)));
    assert_non_null(strstr(err, "root certificate 2 is not a CA"));
    free(bad);
    free(leaf);
    free(csr);
    free(two);
    EVP_PKEY_free(k);
    meshca_free(old);
    meshca_free(cur);
}

/* The controller's server certificate: its names verify as a TLS client checks them. */
static void test_server_cert(void **state)
{
    static const char *const dns[] = {"strait-controller", "strait-controller.ns.svc", "localhost"};
    static const char *const ips[] = {"127.0.0.1", "::1"};
    static const char *const bad_dns[] = {"no spaces allowed"};
    static const char *const bad_ip[] = {"127.0.0.300"};
    char err[256], *cert, *key;
    struct meshca *ca = meshca_generate("cluster.local", 365, NOW, err, sizeof(err));
    X509 *x;
    EVP_PKEY *k;
    BIO *b;

    (void)state;
    assert_int_equal(
        meshca_sign_server(ca, dns, 3, ips, 2, 86400, NOW, &cert, &key, err, sizeof(err)), 0);
    assert_int_equal(verify(meshca_cert_pem(ca), cert, NOW, X509_PURPOSE_SSL_SERVER), 1);
    assert_int_equal(verify(meshca_cert_pem(ca), cert, NOW, X509_PURPOSE_SSL_CLIENT), 0);
    x = parse_cert(cert);
    assert_int_equal(X509_check_host(x, "strait-controller.ns.svc", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(x, "other.ns.svc", 0, 0, NULL), 0);
    assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
    assert_int_equal(X509_check_ip_asc(x, "::1", 0), 1);
    assert_int_equal(X509_check_ip_asc(x, "127.0.0.2", 0), 0);
    assert_int_equal(X509_check_ca(x), 0);
    b = BIO_new_mem_buf(key, -1);
    assert_non_null(k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL));
    assert_int_equal(X509_check_private_key(x, k), 1);
    EVP_PKEY_free(k);
    BIO_free(b);
    X509_free(x);
    free(cert);
    OPENSSL_cleanse(key, strlen(key));
    free(key);
    assert_int_equal(
        meshca_sign_server(ca, bad_dns, 1, NULL, 0, 86400, NOW, &cert, &key, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a DNS name"));
    assert_int_equal(
        meshca_sign_server(ca, NULL, 0, bad_ip, 1, 86400, NOW, &cert, &key, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not an IP address"));
    assert_int_equal(
        meshca_sign_server(ca, NULL, 0, NULL, 0, 86400, NOW, &cert, &key, err, sizeof(err)), -1);
    assert_null(cert);
    meshca_free(ca);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity),     cmocka_unit_test(test_generate_sign_verify),
        cmocka_unit_test(test_refused_csrs), cmocka_unit_test(test_refused_roots),
        cmocka_unit_test(test_bundle),       cmocka_unit_test(test_server_cert),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
