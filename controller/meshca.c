/*
 * meshca: the mesh's certificate authority. Workload identities are SPIFFE X.509-SVIDs:
 * a leaf whose only name is the URI spiffe://<trust-domain>/ns/<namespace>/sa/<account>.
 *
 * Does: build and check identity URIs; load a root (certificate + key, from a Secret or files;
 * further roots after the first certificate join the trust bundle) or generate one (ECDSA
 * P-256, self-signed); sign a leaf from a CSR for the ServiceAccount the caller vouches for,
 * taking only the CSR's key (after checking its signature and the key's type and size) and
 * nothing it asks for; sign the controller's own TLS server certificate (DNS and IP names).
 * Does not: decide who is who (the caller checks the workload's token: TokenReview in cluster
 * mode, a token map in file mode), store the root (the caller writes the Secret), rotate, or
 * serve anything over the network.
 * Invariants: a leaf carries exactly one name, the URI SAN (critical; empty subject), is
 * never a CA, and never outlives its root; a struct meshca is immutable once made, so one
 * can sign from any thread.
 */
#include "meshca.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube_decode.h"

#define SET_ERR(...) snprintf(err, errlen, __VA_ARGS__)
#define CLOCK_SKEW_S 60

struct meshca {
    char td[256];
    X509 *cert;
    EVP_PKEY *key;
    char *cert_pem, *key_pem;
    char *bundle_pem; /* every root, the signing one first */
};

/* A SPIFFE trust domain name: [a-z0-9._-]+, at most 255 characters. */
static int trust_domain_ok(const char *td)
{
    size_t i, n = strlen(td);

    if (n == 0 || n > 255) return 0;
    for (i = 0; i < n; i++)
        if (!((td[i] >= 'a' && td[i] <= 'z') || (td[i] >= '0' && td[i] <= '9') || td[i] == '.' ||
              td[i] == '-' || td[i] == '_'))
            return 0;
    return 1;
}

int meshca_identity(const char *td, const char *ns, const char *sa, char *out, size_t outlen,
                    char *err, size_t errlen)
{
    int n;

    if (!trust_domain_ok(td)) {
        SET_ERR("trust domain \"%.64s\" is not a SPIFFE trust domain name ([a-z0-9._-])", td);
        return -1;
    }
    if (!kube_decode_dns_label(ns, strlen(ns))) {
        SET_ERR("namespace \"%.64s\" is not a DNS-1123 label", ns);
        return -1;
    }
    if (!kube_decode_dns_name(sa)) {
        SET_ERR("service account \"%.64s\" is not a DNS-1123 subdomain", sa);
        return -1;
    }
    n = snprintf(out, outlen, "spiffe://%s/ns/%s/sa/%s", td, ns, sa);
    if (n < 0 || (size_t)n >= outlen) {
        SET_ERR("identity longer than %zu bytes", outlen - 1);
        return -1;
    }
    return 0;
}

static void ssl_reason(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[160];

    ERR_error_string_n(e, buf, sizeof(buf));
    SET_ERR("%s%s%s", what, e ? ": " : "", e ? buf : "");
    ERR_clear_error();
}

/* PEM of x (or of key) into a malloc'd string. */
static char *to_pem(X509 *x, EVP_PKEY *key)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *out = NULL;
    long n;

    if (!b) return NULL;
    if ((x ? PEM_write_bio_X509(b, x)
           : PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL)) == 1 &&
        (n = BIO_get_mem_data(b, &data)) > 0 && (out = malloc((size_t)n + 1))) {
        memcpy(out, data, (size_t)n);
        out[n] = '\0';
    }
    BIO_free(b);
    return out;
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    if (!(ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value))) return -1;
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -1;
}

static int random_serial(X509 *x)
{
    unsigned char b[16];
    BIGNUM *bn;
    int ok;

    if (RAND_bytes(b, sizeof(b)) != 1) return -1;
    b[0] &= 0x7f; /* positive */
    b[0] |= 0x40; /* and 16 bytes long */
    if (!(bn = BN_bin2bn(b, sizeof(b), NULL))) return -1;
    ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok ? 0 : -1;
}

/* extra: the PEM of further roots for the bundle ("" for none). */
static struct meshca *ca_new(const char *td, X509 *cert, EVP_PKEY *key, const char *extra,
                             char *err, size_t errlen)
{
    struct meshca *ca = calloc(1, sizeof(*ca));
    size_t n;

    if (!ca || !(ca->cert_pem = to_pem(cert, NULL)) || !(ca->key_pem = to_pem(NULL, key)) ||
        !(ca->bundle_pem = malloc((n = strlen(ca->cert_pem)) + strlen(extra) + 1))) {
        SET_ERR("out of memory");
        if (ca) {
            free(ca->cert_pem);
            free(ca->key_pem);
            free(ca);
        }
        return NULL;
    }
    memcpy(ca->bundle_pem, ca->cert_pem, n);
    strcpy(ca->bundle_pem + n, extra);
    snprintf(ca->td, sizeof(ca->td), "%s", td);
    ca->cert = cert;
    ca->key = key;
    return ca;
}

/* Whether x can be a root now: a CA with keyCertSign, within its dates. 0, or -1 with err. */
static int root_ok(X509 *x, time_t now, const char *which, char *err, size_t errlen)
{
    uint32_t ku = X509_get_key_usage(x);

    if (X509_check_ca(x) != 1 || !(ku & KU_KEY_CERT_SIGN)) {
        SET_ERR("%s is not a CA (basicConstraints CA:TRUE and keyCertSign)", which);
        return -1;
    }
    if (X509_cmp_time(X509_get0_notBefore(x), &now) > 0 ||
        X509_cmp_time(X509_get0_notAfter(x), &now) <= 0) {
        SET_ERR("%s is not valid now (expired or not yet valid)", which);
        return -1;
    }
    return 0;
}

/*
 * The certificates after the first in b, each checked with root_ok, as PEM (malloc'd; "" for
 * none). NULL with err.
 */
static char *extra_roots(BIO *b, time_t now, char *err, size_t errlen)
{
    char *out = strdup(""), *pem, *grown, which[64];
    X509 *x;
    unsigned i;

    for (i = 2; out; i++) {
        if (!(x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
            unsigned long e = ERR_peek_last_error();
            ERR_clear_error();
            if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
                return out; /* the end */
            SET_ERR("root certificate %u does not parse", i);
            break;
        }
        snprintf(which, sizeof(which), "root certificate %u", i);
        if (root_ok(x, now, which, err, errlen) < 0) {
            X509_free(x);
            break;
        }
        pem = to_pem(x, NULL);
        X509_free(x);
        if (!pem || !(grown = realloc(out, strlen(out) + strlen(pem) + 1))) {
            free(pem);
            SET_ERR("out of memory");
            break;
        }
        out = strcat(grown, pem);
        free(pem);
    }
    if (!out) SET_ERR("out of memory");
    free(out);
    return NULL;
}

struct meshca *meshca_load(const char *td, const char *cert_pem, const char *key_pem, time_t now,
                           char *err, size_t errlen)
{
    BIO *cb = NULL, *kb = NULL;
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    struct meshca *ca = NULL;
    char *extra = NULL;

    if (!trust_domain_ok(td)) {
        SET_ERR("trust domain \"%.64s\" is not a SPIFFE trust domain name ([a-z0-9._-])", td);
        return NULL;
    }
    if (!(cb = BIO_new_mem_buf(cert_pem, -1)) || !(kb = BIO_new_mem_buf(key_pem, -1))) {
        SET_ERR("out of memory");
        goto out;
    }
    if (!(x = PEM_read_bio_X509(cb, NULL, NULL, NULL))) {
        ssl_reason(err, errlen, "root certificate does not parse");
        goto out;
    }
    if (!(k = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL))) {
        ssl_reason(err, errlen, "root key does not parse");
        goto out;
    }
    if (X509_check_private_key(x, k) != 1) {
        ERR_clear_error();
        SET_ERR("root certificate and key do not match");
        goto out;
    }
    if (root_ok(x, now, "root certificate", err, errlen) < 0) goto out;
    if (!(extra = extra_roots(cb, now, err, errlen))) goto out;
    if ((ca = ca_new(td, x, k, extra, err, errlen))) x = NULL, k = NULL;
out:
    free(extra);
    BIO_free(cb);
    BIO_free(kb);
    X509_free(x);
    EVP_PKEY_free(k);
    return ca;
}

struct meshca *meshca_generate(const char *td, unsigned days, time_t now, char *err, size_t errlen)
{
    EVP_PKEY *k = NULL;
    X509 *x = NULL;
    X509_NAME *nm;
    struct meshca *ca = NULL;
    char cn[300], uri[300];

    if (!trust_domain_ok(td)) {
        SET_ERR("trust domain \"%.64s\" is not a SPIFFE trust domain name ([a-z0-9._-])", td);
        return NULL;
    }
    if (days == 0 || days > 36500) {
        SET_ERR("root lifetime of %u days is out of range (1-36500)", days);
        return NULL;
    }
    snprintf(cn, sizeof(cn), "strait mesh root %s", td);
    snprintf(uri, sizeof(uri), "URI:spiffe://%s", td);
    if (!(k = EVP_EC_gen("P-256")) || !(x = X509_new()) || X509_set_version(x, 2) != 1 ||
        random_serial(x) < 0 || !X509_time_adj_ex(X509_getm_notBefore(x), 0, -CLOCK_SKEW_S, &now) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, &now) ||
        !(nm = X509_get_subject_name(x)) ||
        X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_ASC, (const unsigned char *)"strait", -1, -1,
                                   0) != 1 ||
        X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) !=
            1 ||
        X509_set_issuer_name(x, nm) != 1 || X509_set_pubkey(x, k) != 1 ||
        add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
        add_ext(x, x, NID_subject_key_identifier, "hash") < 0 ||
        add_ext(x, x, NID_subject_alt_name, uri) < 0 || X509_sign(x, k, EVP_sha256()) <= 0) {
        ssl_reason(err, errlen, "generating the root failed");
        goto out;
    }
    if ((ca = ca_new(td, x, k, "", err, errlen))) x = NULL, k = NULL;
out:
    X509_free(x);
    EVP_PKEY_free(k);
    return ca;
}

const char *meshca_cert_pem(const struct meshca *ca)
{
    return ca->cert_pem;
}

const char *meshca_key_pem(const struct meshca *ca)
{
    return ca->key_pem;
}

const char *meshca_bundle_pem(const struct meshca *ca)
{
    return ca->bundle_pem;
}

static int asn1_to_time(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(t, &tm) != 1) return -1;
    *out = timegm(&tm);
    return 0;
}

time_t meshca_not_after(const struct meshca *ca)
{
    time_t t = 0;

    (void)asn1_to_time(X509_get0_notAfter(ca->cert), &t);
    return t;
}

int meshca_pem_not_after(const char *pem, time_t *out)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    int rc = x ? asn1_to_time(X509_get0_notAfter(x), out) : -1;

    ERR_clear_error();
    X509_free(x);
    BIO_free(b);
    return rc;
}

/* EC P-256/P-384 or RSA >= 2048. 0, or -1 with err. */
static int key_ok(EVP_PKEY *pk, char *err, size_t errlen)
{
    char group[64];
    size_t glen = 0;

    switch (EVP_PKEY_get_base_id(pk)) {
    case EVP_PKEY_EC:
        if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                           &glen) != 1 ||
            (strcmp(group, "prime256v1") != 0 && strcmp(group, "secp384r1") != 0)) {
            ERR_clear_error();
            SET_ERR("CSR key: EC curve %s not accepted (P-256 or P-384)", glen ? group : "?");
            return -1;
        }
        return 0;
    case EVP_PKEY_RSA:
        if (EVP_PKEY_get_bits(pk) < 2048) {
            SET_ERR("CSR key: RSA %d bits, 2048 or more wanted", EVP_PKEY_get_bits(pk));
            return -1;
        }
        return 0;
    default:
        SET_ERR("CSR key: type not accepted (EC P-256/P-384 or RSA 2048+)");
        return -1;
    }
}

/*
 * A certificate issued by ca for key pk: version 3, a random serial, ca's subject as issuer,
 * valid from now - CLOCK_SKEW_S for ttl_s seconds but never past the root's end. NULL on
 * failure (OpenSSL's error queue says why).
 */
static X509 *leaf_new(const struct meshca *ca, EVP_PKEY *pk, unsigned ttl_s, time_t now)
{
    ASN1_TIME *end;
    X509 *x = NULL;
    int day, sec;

    if (!(end = X509_time_adj_ex(NULL, 0, (long)ttl_s, &now))) return NULL;
    if (ASN1_TIME_diff(&day, &sec, end, X509_get0_notAfter(ca->cert)) != 1) goto out;
    if (day < 0 || sec < 0) {
        ASN1_TIME_free(end);
        if (!(end = ASN1_STRING_dup(X509_get0_notAfter(ca->cert)))) return NULL;
    }
    if (!(x = X509_new()) || X509_set_version(x, 2) != 1 || random_serial(x) < 0 ||
        X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) != 1 ||
        !X509_time_adj_ex(X509_getm_notBefore(x), 0, -CLOCK_SKEW_S, &now) ||
        X509_set1_notAfter(x, end) != 1 || X509_set_pubkey(x, pk) != 1) {
        X509_free(x);
        x = NULL;
    }
out:
    ASN1_TIME_free(end);
    return x;
}

static int ttl_ok(unsigned ttl_s, char *err, size_t errlen)
{
    if (ttl_s < MESHCA_TTL_MIN || ttl_s > MESHCA_TTL_MAX) {
        SET_ERR("leaf lifetime of %u s is out of range (%u s to %u days)", ttl_s, MESHCA_TTL_MIN,
                MESHCA_TTL_MAX / 86400);
        return -1;
    }
    return 0;
}

int meshca_sign(const struct meshca *ca, const char *csr_pem, const char *ns, const char *sa,
                unsigned ttl_s, time_t now, char **leaf_pem, char *err, size_t errlen)
{
    char id[MESHCA_ID_MAX], san[MESHCA_ID_MAX + 16];
    BIO *b = NULL;
    X509_REQ *req = NULL;
    X509 *x = NULL;
    EVP_PKEY *pk;
    int rc = -1;

    *leaf_pem = NULL;
    if (meshca_identity(ca->td, ns, sa, id, sizeof(id), err, errlen) < 0) return -1;
    if (ttl_ok(ttl_s, err, errlen) < 0) return -1;
    if (!(b = BIO_new_mem_buf(csr_pem, -1))) {
        SET_ERR("out of memory");
        return -1;
    }
    if (!(req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL))) {
        ssl_reason(err, errlen, "CSR does not parse");
        goto out;
    }
    if (!(pk = X509_REQ_get0_pubkey(req)) || X509_REQ_verify(req, pk) != 1) {
        ERR_clear_error();
        SET_ERR("CSR signature does not verify with its own key");
        goto out;
    }
    if (key_ok(pk, err, errlen) < 0) goto out;
    snprintf(san, sizeof(san), "critical,URI:%s", id);
    if (!(x = leaf_new(ca, pk, ttl_s, now)) ||
        add_ext(x, ca->cert, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        /* keyEncipherment only for RSA: RFC 5480 leaves it out for EC keys */
        add_ext(x, ca->cert, NID_key_usage,
                EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA
                    ? "critical,digitalSignature,keyEncipherment"
                    : "critical,digitalSignature") < 0 ||
        add_ext(x, ca->cert, NID_ext_key_usage, "serverAuth,clientAuth") < 0 ||
        add_ext(x, ca->cert, NID_subject_key_identifier, "hash") < 0 ||
        add_ext(x, ca->cert, NID_authority_key_identifier, "keyid:always") < 0 ||
        add_ext(x, ca->cert, NID_subject_alt_name, san) < 0 ||
        X509_sign(x, ca->key, EVP_sha256()) <= 0)
        goto ssl_fail;
    if (!(*leaf_pem = to_pem(x, NULL))) {
        SET_ERR("out of memory");
        goto out;
    }
    rc = 0;
    goto out;
ssl_fail:
    ssl_reason(err, errlen, "signing failed");
out:
    X509_free(x);
    X509_REQ_free(req);
    BIO_free(b);
    return rc;
}

/* Appends "DNS:name" or "IP:addr" to the SAN text at out[*len]. 0, or -1 if it does not fit. */
static int san_add(char *out, size_t n, size_t *len, const char *kind, const char *v)
{
    int k = snprintf(out + *len, n - *len, "%s%s:%s", *len ? "," : "", kind, v);

    if (k < 0 || (size_t)k >= n - *len) return -1;
    *len += (size_t)k;
    return 0;
}

int meshca_sign_server(const struct meshca *ca, const char *const *dns, size_t n_dns,
                       const char *const *ips, size_t n_ips, unsigned ttl_s, time_t now,
                       char **cert_pem, char **key_pem, char *err, size_t errlen)
{
    char san[4096];
    unsigned char ipbuf[16];
    size_t i, len = 0;
    EVP_PKEY *k = NULL;
    X509 *x = NULL;
    X509_NAME *nm;
    int rc = -1;

    *cert_pem = *key_pem = NULL;
    if (ttl_ok(ttl_s, err, errlen) < 0) return -1;
    if (n_dns + n_ips == 0) {
        SET_ERR("a server certificate needs at least one name");
        return -1;
    }
    for (i = 0; i < n_dns; i++) {
        if (!kube_decode_dns_name(dns[i])) {
            SET_ERR("server name \"%.64s\" is not a DNS name", dns[i]);
            return -1;
        }
        if (san_add(san, sizeof(san), &len, "DNS", dns[i]) < 0) goto too_long;
    }
    for (i = 0; i < n_ips; i++) {
        if (inet_pton(strchr(ips[i], ':') ? AF_INET6 : AF_INET, ips[i], ipbuf) != 1) {
            SET_ERR("server address \"%.64s\" is not an IP address", ips[i]);
            return -1;
        }
        if (san_add(san, sizeof(san), &len, "IP", ips[i]) < 0) goto too_long;
    }
    if (!(k = EVP_EC_gen("P-256")) || !(x = leaf_new(ca, k, ttl_s, now)) ||
        !(nm = X509_get_subject_name(x)) ||
        X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_ASC, (const unsigned char *)"strait", -1, -1,
                                   0) != 1 ||
        X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8,
                                   (const unsigned char *)(n_dns ? dns[0] : ips[0]), -1, -1,
                                   0) != 1 ||
        add_ext(x, ca->cert, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext(x, ca->cert, NID_key_usage, "critical,digitalSignature") < 0 ||
        add_ext(x, ca->cert, NID_ext_key_usage, "serverAuth") < 0 ||
        add_ext(x, ca->cert, NID_subject_key_identifier, "hash") < 0 ||
        add_ext(x, ca->cert, NID_authority_key_identifier, "keyid:always") < 0 ||
        add_ext(x, ca->cert, NID_subject_alt_name, san) < 0 ||
        X509_sign(x, ca->key, EVP_sha256()) <= 0) {
        ssl_reason(err, errlen, "signing the server certificate failed");
        goto out;
    }
    if (!(*cert_pem = to_pem(x, NULL)) || !(*key_pem = to_pem(NULL, k))) {
        free(*cert_pem);
        *cert_pem = NULL;
        SET_ERR("out of memory");
        goto out;
    }
    rc = 0;
    goto out;
too_long:
    SET_ERR("server names longer than %zu bytes", sizeof(san));
    return -1;
out:
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

void meshca_free(struct meshca *ca)
{
    if (!ca) return;
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    free(ca->cert_pem);
    free(ca->bundle_pem);
    if (ca->key_pem) OPENSSL_cleanse(ca->key_pem, strlen(ca->key_pem));
    free(ca->key_pem);
    free(ca);
}
