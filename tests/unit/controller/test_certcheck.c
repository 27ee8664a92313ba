/*
 * certcheck: certificates and keys made here with OpenSSL (EC P-256, RSA 2048, a CA and a
 * leaf it signed, chosen validity), then checked: good ones pass with the right facts
 * (fingerprint recomputed independently, key type, dates), broken ones fail with the reason
 * a user reads, and the last-good memory serves, forgets and reports as documented.
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

#define DAY 86400

struct pem {
    char *crt, *key;
};

static EVP_PKEY *t_key(int rsa)
{
    EVP_PKEY *k = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");

    assert_non_null(k);
    return k;
}

/* A certificate for cn with key's public half, signed by (ca, ca_key) or self-signed. */
static X509 *t_cert(const char *cn, EVP_PKEY *key, X509 *ca, EVP_PKEY *ca_key, long from_days,
                    long to_days)
{
    static long serial = 1;
    X509 *x = X509_new();
    X509_NAME *name;

    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_time_adj_ex(X509_getm_notBefore(x), (int)from_days, 0, NULL);
    X509_time_adj_ex(X509_getm_notAfter(x), (int)to_days, 0, NULL);
    X509_set_pubkey(x, key);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : name);
    assert_true(X509_sign(x, ca_key ? ca_key : key, EVP_sha256()) > 0);
    return x;
}

static char *t_bio_str(BIO *b)
{
    char *data, *s;
    long n = BIO_get_mem_data(b, &data);

    s = malloc((size_t)n + 1);
    assert_non_null(s);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    BIO_free(b);
    return s;
}

static char *t_cert_pem(X509 *a, X509 *b)
{
    BIO *m = BIO_new(BIO_s_mem());

    PEM_write_bio_X509(m, a);
    if (b) PEM_write_bio_X509(m, b);
    return t_bio_str(m);
}

static char *t_key_pem(EVP_PKEY *k)
{
    BIO *m = BIO_new(BIO_s_mem());

    PEM_write_bio_PrivateKey(m, k, NULL, NULL, 0, NULL, NULL);
    return t_bio_str(m);
}

static void t_fingerprint(X509 *x, char out[65])
{
    unsigned char md[32];
    unsigned n = 0, i;

    assert_int_equal(X509_digest(x, EVP_sha256(), md, &n), 1);
    for (i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int64_t t_not_after(X509 *x)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm);
    return (int64_t)timegm(&tm);
}

static int check(const char *crt, const char *key, struct certcheck_info *info, char *err)
{
    return certcheck_server((const unsigned char *)crt, strlen(crt), (const unsigned char *)key,
                            strlen(key), (int64_t)time(NULL), info, NULL, NULL, err, 256);
}

static void test_good_ec_and_rsa(void **state)
{
    int rsa;

    (void)state;
    for (rsa = 0; rsa < 2; rsa++) {
        EVP_PKEY *k = t_key(rsa);
        X509 *x = t_cert("a.example", k, NULL, NULL, -1, 30);
        char *crt = t_cert_pem(x, NULL), *key = t_key_pem(k), *chain_out, *key_out;
        char want[65], err[256] = "";
        struct certcheck_info info;

        t_fingerprint(x, want);
        assert_int_equal(certcheck_server((const unsigned char *)crt, strlen(crt),
                                          (const unsigned char *)key, strlen(key),
                                          (int64_t)time(NULL), &info, &chain_out, &key_out, err,
                                          sizeof(err)),
                         0);
        assert_int_equal(info.key_type, rsa ? CERTCHECK_KEY_RSA : CERTCHECK_KEY_EC);
        assert_string_equal(info.fingerprint, want);
        assert_int_equal(info.n_certs, 1);
        assert_true(info.not_after == t_not_after(x));
        assert_true(info.not_before < (int64_t)time(NULL));
        /* the clean output is the same certificate and a private key PEM */
        assert_string_equal(chain_out, crt);
        assert_non_null(strstr(key_out, "-----BEGIN PRIVATE KEY-----"));
        free(chain_out);
        free(key_out);
        free(crt);
        free(key);
        X509_free(x);
        EVP_PKEY_free(k);
    }
}

static void test_mismatched_key(void **state)
{
    EVP_PKEY *k1 = t_key(0), *k2 = t_key(0), *kr = t_key(1);
    X509 *x = t_cert("a.example", k1, NULL, NULL, -1, 30);
    char *crt = t_cert_pem(x, NULL), *key2 = t_key_pem(k2), *keyr = t_key_pem(kr);
    struct certcheck_info info;
    char err[256];

    (void)state;
    assert_int_equal(check(crt, key2, &info, err), -1);
    assert_string_equal(err, "tls.key does not match the certificate");
    /* an RSA key with an EC certificate: the same reason */
    assert_int_equal(check(crt, keyr, &info, err), -1);
    assert_string_equal(err, "tls.key does not match the certificate");
    free(crt);
    free(key2);
    free(keyr);
    X509_free(x);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    EVP_PKEY_free(kr);
}

static void test_dates(void **state)
{
    EVP_PKEY *k = t_key(0);
    X509 *old = t_cert("a.example", k, NULL, NULL, -10, -1);
    X509 *future = t_cert("a.example", k, NULL, NULL, 2, 30);
    char *c_old = t_cert_pem(old, NULL), *c_future = t_cert_pem(future, NULL), *key = t_key_pem(k);
    struct certcheck_info info;
    char err[256], want[256], t[40];

    (void)state;
    assert_int_equal(check(c_old, key, &info, err), -1);
    certcheck_format_time(t_not_after(old), t, sizeof(t));
    snprintf(want, sizeof(want), "certificate expired on %s", t);
    assert_string_equal(err, want);
    /* the facts are still there for the caller */
    assert_true(info.not_after == t_not_after(old));
    assert_int_equal(check(c_future, key, &info, err), -1);
    certcheck_format_time(info.not_before, t, sizeof(t));
    snprintf(want, sizeof(want), "certificate is not valid before %s", t);
    assert_string_equal(err, want);
    assert_true(info.not_before > (int64_t)time(NULL) + DAY);
    free(c_old);
    free(c_future);
    free(key);
    X509_free(old);
    X509_free(future);
    EVP_PKEY_free(k);
}

static void test_format_time(void **state)
{
    char t[40];

    (void)state;
    certcheck_format_time(1796057414, t, sizeof(t));
    assert_string_equal(t, "2026-11-30T16:50:14Z");
}

static void test_garbage(void **state)
{
    EVP_PKEY *k = t_key(0);
    X509 *x = t_cert("a.example", k, NULL, NULL, -1, 30);
    char *crt = t_cert_pem(x, NULL), *key = t_key_pem(k), *broken;
    struct certcheck_info info;
    char err[256];
    size_t n;

    (void)state;
    assert_int_equal(check("not a certificate\n", key, &info, err), -1);
    assert_string_equal(err, "tls.crt holds no PEM certificate");
    assert_int_equal(check("", key, &info, err), -1);
    assert_string_equal(err, "tls.crt is empty");
    assert_int_equal(
        check(crt, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", &info, err),
        -1);
    assert_string_equal(err, "tls.key does not parse (a PEM RSA or EC private key, not encrypted)");
    assert_int_equal(check(crt, "", &info, err), -1);
    assert_string_equal(err, "tls.key is empty");
    /* a damaged base64 body inside the BEGIN/END lines */
    broken = strdup(crt);
    n = strlen(broken);
    memset(broken + 40, '!', 20);
    assert_true(n > 80);
    assert_int_equal(check(broken, key, &info, err), -1);
    assert_string_equal(err, "tls.crt: certificate 1 does not parse");
    free(broken);
    free(crt);
    free(key);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void test_chain_of_two(void **state)
{
    EVP_PKEY *ck = t_key(0), *lk = t_key(0);
    X509 *ca = t_cert("Test CA", ck, NULL, NULL, -1, 60);
    X509 *leaf = t_cert("a.example", lk, ca, ck, -1, 30);
    char *two = t_cert_pem(leaf, ca), *key = t_key_pem(lk), *junk, *out, *p;
    struct certcheck_info info;
    char err[256], want[65];
    size_t n;

    (void)state;
    t_fingerprint(leaf, want);
    /* text around the PEM blocks (as openssl x509 -text leaves) is dropped from the output */
    n = strlen(two) + 64;
    junk = malloc(n);
    snprintf(junk, n, "Certificate:\n  subject a.example\n%s", two);
    assert_int_equal(certcheck_server((const unsigned char *)junk, strlen(junk),
                                      (const unsigned char *)key, strlen(key), (int64_t)time(NULL),
                                      &info, &out, NULL, err, sizeof(err)),
                     0);
    assert_int_equal(info.n_certs, 2);
    assert_string_equal(info.fingerprint, want); /* the leaf's, not the CA's */
    assert_string_equal(out, two);
    p = strstr(out, "-----BEGIN CERTIFICATE-----");
    assert_non_null(p);
    assert_non_null(strstr(p + 1, "-----BEGIN CERTIFICATE-----"));
    free(out);
    /* the CA first: the key matches no leaf */
    free(two);
    two = t_cert_pem(ca, leaf);
    assert_int_equal(check(two, key, &info, err), -1);
    assert_string_equal(err, "tls.key does not match the certificate");
    /* a CA bundle of both */
    assert_int_equal(
        certcheck_ca_bundle((const unsigned char *)two, strlen(two), &info, NULL, err, sizeof(err)),
        0);
    assert_int_equal(info.n_certs, 2);
    assert_int_equal(
        certcheck_ca_bundle((const unsigned char *)"x", 1, &info, NULL, err, sizeof(err)), -1);
    assert_string_equal(err, "ca.crt holds no PEM certificate");
    free(junk);
    free(two);
    free(key);
    X509_free(leaf);
    X509_free(ca);
    EVP_PKEY_free(ck);
    EVP_PKEY_free(lk);
}

static int t_get(const char *id, const char *crt, const char *key, int64_t now,
                 struct certcheck_verdict *v)
{
    return certcheck_get(id, 0, (const unsigned char *)crt, crt ? strlen(crt) : 0,
                         (const unsigned char *)key, key ? strlen(key) : 0, now, v);
}

static void test_last_good(void **state)
{
    EVP_PKEY *k = t_key(0), *k2 = t_key(0);
    X509 *x1 = t_cert("a.example", k, NULL, NULL, -1, 30);
    X509 *x2 = t_cert("a.example", k2, NULL, NULL, -1, 60);
    char *c1 = t_cert_pem(x1, NULL), *key = t_key_pem(k), *c2 = t_cert_pem(x2, NULL);
    char *key2 = t_key_pem(k2), fp1[65], fp2[65];
    int64_t now = (int64_t)time(NULL);
    struct certcheck_verdict v;

    (void)state;
    certcheck_reset();
    t_fingerprint(x1, fp1);
    t_fingerprint(x2, fp2);
    certcheck_begin();
    assert_int_equal(t_get("ns/s", c1, key, now, &v), 0);
    assert_true(v.usable && !v.bad && !v.last_good);
    assert_string_equal(v.info.fingerprint, fp1);
    assert_string_equal(v.reason, "");
    /* a mismatched new content: the old one is served, reported once */
    assert_int_equal(t_get("ns/s", c2, key, now, &v), 0);
    assert_true(v.usable && v.bad && v.last_good && v.first_report);
    assert_string_equal(v.reason, "tls.key does not match the certificate");
    assert_string_equal(v.info.fingerprint, fp1);
    assert_string_equal(v.chain, c1);
    assert_int_equal(t_get("ns/s", c2, key, now, &v), 0);
    assert_true(v.usable && v.last_good && !v.first_report);
    /* another bad content is news */
    assert_int_equal(t_get("ns/s", "garbage", key, now, &v), 0);
    assert_true(v.first_report && v.last_good);
    assert_string_equal(v.reason, "tls.crt holds no PEM certificate");
    /* a good new content replaces the last good one */
    assert_int_equal(t_get("ns/s", c2, key2, now, &v), 0);
    assert_true(v.usable && !v.bad);
    assert_string_equal(v.info.fingerprint, fp2);
    /* once the last good one expires it is not served; the reason is the current content's */
    assert_int_equal(t_get("ns/s", c1, key2, now + 90 * DAY, &v), 0);
    assert_true(v.bad && !v.usable && v.first_report);
    /* the same content as current later becomes expired: reported with the date */
    assert_int_equal(t_get("ns/e", c1, key, now, &v), 0);
    assert_true(v.usable);
    assert_int_equal(t_get("ns/e", c1, key, now + 40 * DAY, &v), 0);
    assert_true(v.bad && !v.usable && v.first_report);
    assert_non_null(strstr(v.reason, "certificate expired on "));
    /* a deleted Secret: nothing served, and its last good is forgotten */
    assert_int_equal(t_get("ns/s", c2, key2, now, &v), 0);
    assert_int_equal(t_get("ns/s", NULL, NULL, now, &v), 0);
    assert_true(v.bad && !v.usable);
    assert_string_equal(v.reason, "secret ns/s not found");
    assert_int_equal(t_get("ns/s", c2, key, now, &v), 0);
    assert_true(v.bad && !v.usable);
    /* the sweep forgets Secrets not asked about since certcheck_begin */
    assert_int_equal(t_get("ns/t", c1, key, now, &v), 0);
    certcheck_begin();
    assert_int_equal(t_get("ns/u", c1, key, now, &v), 0);
    certcheck_sweep();
    assert_int_equal(t_get("ns/t", c2, key, now, &v), 0);
    assert_true(v.bad && !v.usable); /* no memory of ns/t's good content any more */
    assert_int_equal(t_get("ns/u", c2, key, now, &v), 0);
    assert_true(v.bad && v.usable && v.last_good);
    certcheck_reset();
    free(c1);
    free(c2);
    free(key);
    free(key2);
    X509_free(x1);
    X509_free(x2);
    EVP_PKEY_free(k);
    EVP_PKEY_free(k2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_ec_and_rsa), cmocka_unit_test(test_mismatched_key),
        cmocka_unit_test(test_dates),           cmocka_unit_test(test_format_time),
        cmocka_unit_test(test_garbage),         cmocka_unit_test(test_chain_of_two),
        cmocka_unit_test(test_last_good),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
