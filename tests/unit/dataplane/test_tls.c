/*
 * tls: the SNI table (exact names, one-label wildcards, the snapshot's default, nothing),
 * context sharing between hosts with the same certificates, refusal of PEM that does not
 * load or keys that do not match, the ClientHello server_name parser, and the ticket key
 * ring (current key encrypts, previous one still decrypts and asks for renewal, older ones
 * are gone) through the real ticket callback. Includes tls.c to reach its statics; the
 * certificates are made here with OpenSSL, so the test needs no files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../dataplane/tls.c"

/* A self-signed ECDSA certificate for cn: PEM chain and key, malloc'd. */
static void make_pem(const char *cn, char **crt, char **key)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIO *b = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
    char *data;
    long n;

    assert_non_null(pk);
    assert_non_null(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, pk);
    assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
    assert_int_equal(PEM_write_bio_X509(b, x), 1);
    assert_int_equal(PEM_write_bio_PrivateKey(kb, pk, NULL, NULL, 0, NULL, NULL), 1);
    n = BIO_get_mem_data(b, &data);
    *crt = strndup(data, (size_t)n);
    n = BIO_get_mem_data(kb, &data);
    *key = strndup(data, (size_t)n);
    BIO_free(b);
    BIO_free(kb);
    X509_free(x);
    EVP_PKEY_free(pk);
}

/* The CN of the certificate ctx serves ("" for none). */
static const char *ctx_cn(SSL_CTX *ctx)
{
    static char cn[64];
    X509 *x = ctx ? SSL_CTX_get0_certificate(ctx) : NULL;

    cn[0] = '\0';
    if (x) X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    return cn;
}

struct fixture {
    char *crt[3], *key[3];
    struct snapwire_cert certs[3];
    struct snapwire_tls_host hosts[4];
    struct snapwire_snapshot sw;
};

static void fixture_init(struct fixture *f, uint32_t default_cert)
{
    static const char *const names[3] = {"cert-a", "cert-w", "cert-default"};
    int i;

    memset(f, 0, sizeof(*f));
    for (i = 0; i < 3; i++) {
        make_pem(names[i], &f->crt[i], &f->key[i]);
        f->certs[i] = (struct snapwire_cert){names[i], f->crt[i], f->key[i], "", 0};
    }
    /* sorted by host, as the decoder guarantees; a and b share cert-a */
    f->hosts[0] = (struct snapwire_tls_host){"*.w.example", 1, SNAPWIRE_NONE, SNAPWIRE_NONE, 0};
    f->hosts[1] = (struct snapwire_tls_host){"a.example", 0, SNAPWIRE_NONE, SNAPWIRE_NONE, 0};
    f->hosts[2] = (struct snapwire_tls_host){"b.example", 0, SNAPWIRE_NONE, SNAPWIRE_NONE, 0};
    f->hosts[3] = (struct snapwire_tls_host){"x.w.example", 0, SNAPWIRE_NONE, SNAPWIRE_NONE, 0};
    f->sw.meta.default_cert = default_cert;
    f->sw.meta.default_cluster = SNAPWIRE_NONE;
    f->sw.n_certs = 3;
    f->sw.certs = f->certs;
    f->sw.n_tls_hosts = 4;
    f->sw.tls_hosts = f->hosts;
}

static void fixture_free(struct fixture *f)
{
    int i;

    for (i = 0; i < 3; i++) {
        free(f->crt[i]);
        free(f->key[i]);
    }
}

static void test_sni_lookup_table(void **state)
{
    static const struct {
        const char *name, *cn;
    } cases[] = {
        {"a.example", "cert-a"},
        {"A.Example", "cert-a"}, /* SNI is case-insensitive */
        {"b.example", "cert-a"},
        {"x.w.example", "cert-a"}, /* exact before wildcard */
        {"y.w.example", "cert-w"}, /* one label under the wildcard */
        {"Y.W.EXAMPLE", "cert-w"},
        {"a.y.w.example", "cert-default"}, /* two labels: not covered */
        {"w.example", "cert-default"},     /* the bare suffix: not covered */
        {".w.example", "cert-default"},    /* an empty label is no label */
        {"nope.example", "cert-default"},
        {"", "cert-default"},
        {NULL, "cert-default"},
    };
    struct fixture f;
    struct tls_snap *t;
    char err[256];
    size_t i;

    (void)state;
    fixture_init(&f, 2);
    assert_int_equal(tls_snap_build(&f.sw, &t, err, sizeof(err)), 0);
    assert_non_null(t);
    assert_int_equal(t->n_ctx, 2); /* cert-a hosts share one context */
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(ctx_cn(tls_snap_select(t, cases[i].name)), cases[i].cn);
    assert_ptr_equal(tls_snap_select(t, "a.example"), tls_snap_select(t, "b.example"));
    tls_snap_free(t);
    fixture_free(&f);
}

static void test_no_default_leaves_base_context(void **state)
{
    struct fixture f;
    struct tls_snap *t;
    char err[256];

    (void)state;
    fixture_init(&f, SNAPWIRE_NONE);
    assert_int_equal(tls_snap_build(&f.sw, &t, err, sizeof(err)), 0);
    assert_null(tls_snap_select(t, "nope.example"));
    assert_null(tls_snap_select(t, NULL));
    assert_string_equal(ctx_cn(tls_snap_select(t, "y.w.example")), "cert-w");
    tls_snap_free(t);
    assert_null(tls_snap_select(NULL, "a.example"));
    /* no TLS data at all: nothing is built */
    f.sw.n_tls_hosts = 0;
    assert_int_equal(tls_snap_build(&f.sw, &t, err, sizeof(err)), 0);
    assert_null(t);
    fixture_free(&f);
}

static void test_bad_pem_refused_naming_the_cert(void **state)
{
    struct fixture f;
    struct tls_snap *t = (void *)1;
    char err[256];
    const char *k;

    (void)state;
    fixture_init(&f, 2);
    f.certs[1].chain_pem = "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n";
    assert_int_equal(tls_snap_build(&f.sw, &t, err, sizeof(err)), -1);
    assert_null(t);
    assert_non_null(strstr(err, "cert-w"));
    /* a key that is not the certificate's */
    f.certs[1].chain_pem = f.crt[1];
    k = f.certs[0].key_pem;
    f.certs[0].key_pem = f.key[1];
    assert_int_equal(tls_snap_build(&f.sw, &t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cert-a"));
    assert_non_null(strstr(err, "does not match its key"));
    f.certs[0].key_pem = k;
    /* client verification without a CA bundle: refused, never served unchecked */
    f.hosts[2].client_verify = SNAPWIRE_CLIENT_VERIFY_REQUIRED;
    assert_int_equal(tls_snap_build(&f.sw, &t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "b.example"));
    fixture_free(&f);
}

static void test_server_name_extension_parser(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
        const char *want;
    } cases[] = {
        {"\x00\x0e\x00\x00\x0b"
         "a.example.c",
         16, "a.example.c"},
        {"\x00\x0e\x00\x00\x0b"
         "a.example",
         14, ""}, /* name runs past the end */
        {"\x00\x20\x00\x00\x0b"
         "a.example.c",
         16, ""},                         /* list runs past the end */
        {"\x00\x04\x01\x00\x01x", 7, ""}, /* not host_name */
        {"\x00\x00", 2, ""},              /* empty list */
        {"\x00", 1, ""},
        {"\x00\x04\x00\x00\x01\x00", 6, ""}, /* NUL inside the name */
    };
    char out[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sni_from_ext((const unsigned char *)cases[i].bytes, cases[i].len, out, sizeof(out));
        assert_string_equal(out, cases[i].want);
    }
    sni_from_ext((const unsigned char *)"\x00\x0e\x00\x00\x0b"
                                        "a.example.c",
                 16, out, 5);
    assert_string_equal(out, ""); /* longer than the buffer: refused, not cut */
}

/* One ticket_cb call; returns its result and leaves name/iv for a decrypt. */
static int ticket(unsigned char name[16], unsigned char iv[16], int enc)
{
    EVP_CIPHER_CTX *e = EVP_CIPHER_CTX_new();
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *h = EVP_MAC_CTX_new(mac);
    int rc;

    assert_non_null(h);
    rc = ticket_cb(NULL, name, iv, e, h, enc);
    EVP_MAC_CTX_free(h);
    EVP_MAC_free(mac);
    EVP_CIPHER_CTX_free(e);
    return rc;
}

static void test_ticket_ring_rotation(void **state)
{
    unsigned char n1[16], iv1[16], n2[16], iv2[16], unknown[16] = {0};
    struct ticket_key k;

    (void)state;
    assert_int_equal(ring_init(&ring), 0);
    assert_int_equal(ticket(n1, iv1, 1), 1); /* encrypted with the current key */
    assert_int_equal(ticket(n1, iv1, 0), 1); /* current: fine as it is */
    assert_int_equal(ring_find(&ring, unknown, &k), 0);
    assert_int_equal(ring_rotate(&ring), 0);
    assert_int_equal(ticket(n1, iv1, 0), 2); /* previous: decrypts, asks for a new ticket */
    assert_int_equal(ticket(n2, iv2, 1), 1);
    assert_memory_not_equal(n1, n2, 16); /* new tickets use the new key */
    assert_int_equal(ticket(n2, iv2, 0), 1);
    assert_int_equal(ring_rotate(&ring), 0);
    assert_int_equal(ticket(n1, iv1, 0), 0); /* two rotations old: gone, full handshake */
    assert_int_equal(ticket(n2, iv2, 0), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sni_lookup_table),
        cmocka_unit_test(test_no_default_leaves_base_context),
        cmocka_unit_test(test_bad_pem_refused_naming_the_cert),
        cmocka_unit_test(test_server_name_extension_parser),
        cmocka_unit_test(test_ticket_ring_rotation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
