/*
 * certcheck: checks the certificates and keys of Secrets with OpenSSL before they reach a
 * snapshot, and remembers each Secret's last good certificate.
 *
 * Does: parse every PEM certificate of tls.crt (leaf first) and the key of tls.key (RSA or
 * EC), check that they match and that the leaf is valid now; parse CA bundles; re-encode
 * what passed as clean PEM (so no stray text or control character from a Secret reaches the
 * snapshot, whose reader refuses them); and keep, per Secret, the last content that passed,
 * to serve it while the current content is bad. Nothing is served that did not pass here.
 * Does not: verify chains against a trust store (a Secret's chain is what its owner serves),
 * check host names against the certificate (ingress-nginx does not either), log, or know
 * about Ingresses: the caller reports (certificate_rejected, Events).
 * Invariants: the memory is keyed by (usage, "ns/name") and sorted on that key; an entry's
 * "good" material always passed the parse checks and was within its dates when it was taken;
 * a content's parse verdict is cached by its SHA-256 but its dates are compared with the
 * caller's clock on every use. Single-threaded (the controller's loop).
 */
#include "certcheck.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SET_ERR(...) snprintf(err, errlen, __VA_ARGS__)
#define CC_MAX_PEM (1u << 20) /* snapwire's limit for a PEM field */

void certcheck_format_time(int64_t t, char *buf, size_t n)
{
    time_t sec = (time_t)t;
    struct tm tm;

    if (!gmtime_r(&sec, &tm)) {
        snprintf(buf, n, "%lld", (long long)t);
        return;
    }
    snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int cc_asn1_time(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return -1;
    *out = (int64_t)timegm(&tm);
    return 0;
}

/* A key password callback that never prompts: an encrypted tls.key is simply refused. */
static int cc_no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* The memory BIO's content as a malloc'd NUL-terminated string. */
static char *cc_bio_string(BIO *b)
{
    char *data, *s;
    long n = BIO_get_mem_data(b, &data);

    if (n < 0 || !(s = malloc((size_t)n + 1))) return NULL;
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    return s;
}

/*
 * Parses every PEM certificate of pem[0..len) into info (first certificate's facts) and,
 * when out is given, a clean PEM copy. what names the field for reasons ("tls.crt").
 */
static int cc_parse_certs(const unsigned char *pem, size_t len, const char *what,
                          struct certcheck_info *info, X509 **leaf_out, char **out, char *err,
                          size_t errlen)
{
    BIO *in = NULL, *clean = NULL;
    X509 *x = NULL, *leaf = NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0, i;
    unsigned long e;
    int rc = -1;

    memset(info, 0, sizeof(*info));
    if (out) *out = NULL;
    if (leaf_out) *leaf_out = NULL;
    if (!pem || !len) {
        SET_ERR("%s is empty", what);
        return -1;
    }
    if (len > CC_MAX_PEM) {
        SET_ERR("%s is larger than 1 MiB", what);
        return -1;
    }
    ERR_clear_error();
    if (!(in = BIO_new_mem_buf(pem, (int)len)) || (out && !(clean = BIO_new(BIO_s_mem())))) {
        SET_ERR("out of memory");
        goto out;
    }
    for (;;) {
        x = PEM_read_bio_X509(in, NULL, cc_no_password, NULL);
        if (!x) {
            e = ERR_peek_last_error();
            /* the end of the input: no further BEGIN line */
            if (ERR_GET_REASON(e) == PEM_R_NO_START_LINE && info->n_certs) break;
            if (ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
                SET_ERR("%s holds no PEM certificate", what);
            else
                SET_ERR("%s: certificate %u does not parse", what, info->n_certs + 1);
            goto out;
        }
        info->n_certs++;
        if (clean && !PEM_write_bio_X509(clean, x)) {
            SET_ERR("out of memory");
            goto out;
        }
        if (!leaf) {
            leaf = x;
        } else {
            X509_free(x);
        }
        x = NULL;
    }
    if (!X509_digest(leaf, EVP_sha256(), md, &md_len) || md_len != 32) {
        SET_ERR("%s: cannot compute the certificate's fingerprint", what);
        goto out;
    }
    for (i = 0; i < md_len; i++)
        snprintf(info->fingerprint + 2 * i, 3, "%02x", md[i]);
    if (cc_asn1_time(X509_get0_notBefore(leaf), &info->not_before) ||
        cc_asn1_time(X509_get0_notAfter(leaf), &info->not_after)) {
        SET_ERR("%s: the certificate's validity dates do not parse", what);
        goto out;
    }
    if (out && !(*out = cc_bio_string(clean))) {
        SET_ERR("out of memory");
        goto out;
    }
    if (leaf_out) {
        *leaf_out = leaf;
        leaf = NULL;
    }
    rc = 0;
out:
    ERR_clear_error();
    X509_free(x);
    X509_free(leaf);
    BIO_free(in);
    BIO_free(clean);
    return rc;
}

/* The parse and key checks of certcheck_server, without the dates. */
static int cc_parse_server(const unsigned char *crt, size_t crt_len, const unsigned char *key,
                           size_t key_len, struct certcheck_info *info, char **chain_out,
                           char **key_out, char *err, size_t errlen)
{
    X509 *leaf = NULL;
    EVP_PKEY *pkey = NULL;
    EVP_PKEY *pub;
    BIO *in = NULL, *clean = NULL;
    int rc = -1, kt, pt;

    if (chain_out) *chain_out = NULL;
    if (key_out) *key_out = NULL;
    if (cc_parse_certs(crt, crt_len, "tls.crt", info, &leaf, chain_out, err, errlen)) return -1;
    ERR_clear_error();
    if (!key || !key_len) {
        SET_ERR("tls.key is empty");
        goto out;
    }
    if (key_len > CC_MAX_PEM) {
        SET_ERR("tls.key is larger than 1 MiB");
        goto out;
    }
    if (!(in = BIO_new_mem_buf(key, (int)key_len))) {
        SET_ERR("out of memory");
        goto out;
    }
    if (!(pkey = PEM_read_bio_PrivateKey(in, NULL, cc_no_password, NULL))) {
        SET_ERR("tls.key does not parse (a PEM RSA or EC private key, not encrypted)");
        goto out;
    }
    kt = EVP_PKEY_get_base_id(pkey);
    if (kt != EVP_PKEY_RSA && kt != EVP_PKEY_EC) {
        SET_ERR("tls.key is a %s key; only RSA and EC keys are supported",
                OBJ_nid2sn(kt) ? OBJ_nid2sn(kt) : "unknown");
        goto out;
    }
    pub = X509_get0_pubkey(leaf);
    pt = pub ? EVP_PKEY_get_base_id(pub) : NID_undef;
    if (pt != kt || X509_check_private_key(leaf, pkey) != 1) {
        SET_ERR("tls.key does not match the certificate");
        goto out;
    }
    info->key_type = kt == EVP_PKEY_RSA ? CERTCHECK_KEY_RSA : CERTCHECK_KEY_EC;
    if (key_out) {
        if (!(clean = BIO_new(BIO_s_mem())) ||
            !PEM_write_bio_PrivateKey(clean, pkey, NULL, NULL, 0, NULL, NULL) ||
            !(*key_out = cc_bio_string(clean))) {
            SET_ERR("out of memory");
            goto out;
        }
    }
    rc = 0;
out:
    ERR_clear_error();
    if (rc && chain_out) {
        free(*chain_out);
        *chain_out = NULL;
    }
    EVP_PKEY_free(pkey);
    X509_free(leaf);
    BIO_free(in);
    BIO_free(clean);
    return rc;
}

/* Why info's certificate is not valid at now, into err; 0 when it is. */
static int cc_dates(const struct certcheck_info *info, int64_t now, char *err, size_t errlen)
{
    char t[40];

    if (now > info->not_after) {
        certcheck_format_time(info->not_after, t, sizeof(t));
        SET_ERR("certificate expired on %s", t);
        return -1;
    }
    if (now < info->not_before) {
        certcheck_format_time(info->not_before, t, sizeof(t));
        SET_ERR("certificate is not valid before %s", t);
        return -1;
    }
    return 0;
}

int certcheck_server(const unsigned char *crt, size_t crt_len, const unsigned char *key,
                     size_t key_len, int64_t now, struct certcheck_info *info, char **chain_out,
                     char **key_out, char *err, size_t errlen)
{
    if (cc_parse_server(crt, crt_len, key, key_len, info, chain_out, key_out, err, errlen))
        return -1;
    if (cc_dates(info, now, err, errlen)) {
        if (chain_out) {
            free(*chain_out);
            *chain_out = NULL;
        }
        if (key_out) {
            free(*key_out);
            *key_out = NULL;
        }
        return -1;
    }
    return 0;
}

int certcheck_ca_bundle(const unsigned char *pem, size_t len, struct certcheck_info *info,
                        char **pem_out, char *err, size_t errlen)
{
    return cc_parse_certs(pem, len, "ca.crt", info, NULL, pem_out, err, errlen);
}

/* ---- the last-good memory ---- */

struct cc_entry {
    char *id;
    int ca;
    unsigned epoch; /* last build that asked */
    /* the current content: its hash and what parsing it gave */
    int have_cur;
    unsigned char cur_hash[32];
    int cur_parsed; /* parsed and the key matched; dates still to compare */
    char cur_reason[300];
    struct certcheck_info cur_info;
    char *cur_chain, *cur_key;
    /* the last content that was served as good */
    int have_good;
    unsigned char good_hash[32];
    struct certcheck_info good_info;
    char *good_chain, *good_key;
    /* the last bad (content, reason) reported */
    int reported;
    unsigned char rep_hash[32];
    char rep_reason[300];
};

static struct {
    struct cc_entry *v;
    size_t n, cap;
    unsigned epoch;
} cc_mem;

static void cc_entry_clear(struct cc_entry *e)
{
    free(e->id);
    free(e->cur_chain);
    free(e->cur_key);
    free(e->good_chain);
    free(e->good_key);
    memset(e, 0, sizeof(*e));
}

static int cc_cmp(const char *id, int ca, const struct cc_entry *e)
{
    if (ca != e->ca) return ca < e->ca ? -1 : 1;
    return strcmp(id, e->id);
}

/* The entry for (id, ca), created when absent; NULL when out of memory. */
static struct cc_entry *cc_find(const char *id, int ca)
{
    size_t lo = 0, hi = cc_mem.n, mid;
    struct cc_entry *e;
    int r;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        r = cc_cmp(id, ca, &cc_mem.v[mid]);
        if (!r) return &cc_mem.v[mid];
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    if (cc_mem.n == cc_mem.cap) {
        size_t cap = cc_mem.cap ? cc_mem.cap * 2 : 32;
        struct cc_entry *v = realloc(cc_mem.v, cap * sizeof(*v));
        if (!v) return NULL;
        cc_mem.v = v;
        cc_mem.cap = cap;
    }
    e = &cc_mem.v[lo];
    memmove(e + 1, e, (cc_mem.n - lo) * sizeof(*e));
    memset(e, 0, sizeof(*e));
    if (!(e->id = strdup(id))) {
        memmove(e, e + 1, (cc_mem.n - lo) * sizeof(*e));
        return NULL;
    }
    e->ca = ca;
    cc_mem.n++;
    return e;
}

static void cc_hash(const unsigned char *crt, size_t crt_len, const unsigned char *key,
                    size_t key_len, unsigned char out[32])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char lens[16];
    unsigned n = 32;
    int i;

    /* the lengths go in first: ("ab", "c") and ("a", "bc") must differ */
    for (i = 0; i < 8; i++) {
        lens[i] = (unsigned char)((uint64_t)crt_len >> (8 * i));
        lens[8 + i] = (unsigned char)((uint64_t)key_len >> (8 * i));
    }
    memset(out, 0, 32);
    if (!ctx) return;
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) && EVP_DigestUpdate(ctx, lens, sizeof(lens)) &&
        (!crt_len || EVP_DigestUpdate(ctx, crt, crt_len)) &&
        (!key_len || EVP_DigestUpdate(ctx, key, key_len)))
        EVP_DigestFinal_ex(ctx, out, &n);
    EVP_MD_CTX_free(ctx);
}

static char *cc_dup(const char *s)
{
    return s ? strdup(s) : NULL;
}

int certcheck_get(const char *id, int ca, const unsigned char *crt, size_t crt_len,
                  const unsigned char *key, size_t key_len, int64_t now,
                  struct certcheck_verdict *out)
{
    struct cc_entry *e = cc_find(id, ca);
    unsigned char h[32];
    char reason[300];
    char *gc, *gk;

    memset(out, 0, sizeof(*out));
    out->reason = "";
    if (!e) return -1;
    e->epoch = cc_mem.epoch;
    if (!crt) {
        /* a deleted Secret was meant to go: its old certificate is not kept either */
        free(e->good_chain);
        free(e->good_key);
        e->good_chain = e->good_key = NULL;
        e->have_good = 0;
        e->have_cur = 0;
        memset(h, 0, sizeof(h));
        snprintf(reason, sizeof(reason), "secret %s not found", id);
        goto bad;
    }
    cc_hash(crt, crt_len, ca ? NULL : key, ca ? 0 : key_len, h);
    if (!e->have_cur || memcmp(h, e->cur_hash, sizeof(h))) {
        free(e->cur_chain);
        free(e->cur_key);
        e->cur_chain = e->cur_key = NULL;
        e->cur_reason[0] = '\0';
        e->cur_parsed =
            !(ca ? certcheck_ca_bundle(crt, crt_len, &e->cur_info, &e->cur_chain, e->cur_reason,
                                       sizeof(e->cur_reason))
                 : cc_parse_server(crt, crt_len, key, key_len, &e->cur_info, &e->cur_chain,
                                   &e->cur_key, e->cur_reason, sizeof(e->cur_reason)));
        if (!strcmp(e->cur_reason, "out of memory")) return -1; /* try again next build */
        memcpy(e->cur_hash, h, sizeof(h));
        e->have_cur = 1;
    }
    if (!e->cur_parsed) {
        snprintf(reason, sizeof(reason), "%s", e->cur_reason);
        goto bad;
    }
    /* a CA bundle's dates are the verifier's business (see certcheck_ca_bundle) */
    if (!ca && cc_dates(&e->cur_info, now, reason, sizeof(reason))) goto bad;
    if (!e->have_good || memcmp(e->good_hash, h, sizeof(h))) {
        gc = cc_dup(e->cur_chain);
        gk = cc_dup(e->cur_key);
        if (!gc || (e->cur_key && !gk)) {
            free(gc);
            free(gk);
            return -1;
        }
        free(e->good_chain);
        free(e->good_key);
        e->good_chain = gc;
        e->good_key = gk;
        e->good_info = e->cur_info;
        memcpy(e->good_hash, h, sizeof(h));
        e->have_good = 1;
    }
    e->reported = 0; /* good again: a later bad content is news */
    out->usable = 1;
    out->chain = e->good_chain;
    out->key = e->good_key;
    out->info = e->good_info;
    return 0;
bad:
    out->bad = 1;
    if (!e->reported || memcmp(e->rep_hash, h, sizeof(h)) || strcmp(e->rep_reason, reason)) {
        out->first_report = 1;
        e->reported = 1;
        memcpy(e->rep_hash, h, sizeof(h));
        snprintf(e->rep_reason, sizeof(e->rep_reason), "%s", reason);
    }
    out->reason = e->rep_reason;
    if (e->have_good && (ca || !cc_dates(&e->good_info, now, reason, sizeof(reason)))) {
        out->usable = 1;
        out->last_good = 1;
        out->chain = e->good_chain;
        out->key = e->good_key;
        out->info = e->good_info;
    }
    return 0;
}

void certcheck_begin(void)
{
    cc_mem.epoch++;
}

void certcheck_sweep(void)
{
    size_t i, o = 0;

    for (i = 0; i < cc_mem.n; i++) {
        if (cc_mem.v[i].epoch != cc_mem.epoch) {
            cc_entry_clear(&cc_mem.v[i]);
            continue;
        }
        cc_mem.v[o++] = cc_mem.v[i];
    }
    cc_mem.n = o;
}

void certcheck_reset(void)
{
    size_t i;

    for (i = 0; i < cc_mem.n; i++)
        cc_entry_clear(&cc_mem.v[i]);
    free(cc_mem.v);
    memset(&cc_mem, 0, sizeof(cc_mem));
}
