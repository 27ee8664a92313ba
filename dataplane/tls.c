/*
 * tls: server TLS contexts, SNI, session tickets and the default certificate.
 *
 * Does: one process-wide base SSL_CTX every TLS connection is created from (SSL_new): TLS
 * 1.2 and 1.3 only, TLS 1.2 suites ECDHE + AES-GCM/CHACHA20-POLY1305 only, the server's
 * suite order (AES-128-GCM first, ChaCha20 first for clients that prefer it), groups
 * X25519:P-256:P-384, no renegotiation or compression, ALPN http/1.1, no tickets in the
 * handshake (tp_tls.c sends the TLS 1.3 one with the first response),
 * partial and moving writes, and the self-signed ECDSA P-256 certificate generated at
 * start-up. Per snapshot (tls_snap_build, off the hot path): one SSL_CTX per distinct
 * (cert, cert2, client CA, verify mode) - both certificates in the same context, so
 * OpenSSL serves ECDSA or RSA per client - and the SNI table (exact names, then one-label
 * wildcards, then meta.default_cert). The ClientHello callback resolves the SNI name
 * against the snapshot the connection took at accept and moves the SSL to that context,
 * copying what SSL_set_SSL_CTX does not (verify mode and depth, options), as nginx's
 * servername handler does. Session resumption is by tickets only (no server cache): the key ring is
 * process-wide (the ticket callback sits on the base context, which stays every SSL's
 * session_ctx), the current key encrypts, the previous one still decrypts and asks for a
 * renewed ticket; tls_ticket_rotate() is driven by main's timer.
 * Does not: drive sockets (tp_tls.c), or verify upstream certificates (client side).
 * Invariants:
 *   - a session id context per client-certificate policy (CA bundle + verify mode) is set
 *     on every SSL after the context switch, so a session established under one policy is
 *     never resumed under another (OpenSSL refuses a session whose sid_ctx differs);
 *   - the contexts of a snapshot are refcounted by OpenSSL: an SSL moved to one keeps it
 *     alive after the snapshot is freed; the snapshot itself is held (app data) only until
 *     the handshake ends;
 *   - ticket keys are read under a rwlock (per handshake, never per request).
 */
#include "tls.h"

#include <ctype.h>
#include <pthread.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "snapshot.h"

#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
/* TLS 1.3 in Mozilla's "intermediate" order: AES-128-GCM first (128-bit security, and its
 * SHA-256 key schedule costs a handshake less than SHA-384), ChaCha20 moved first for clients
 * that list it first (SSL_OP_PRIORITIZE_CHACHA: phones without AES instructions) */
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define TLS_GROUPS "X25519:P-256:P-384"

/* ---- ticket key ring ---- */

struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
};

struct ticket_ring {
    pthread_rwlock_t lock;
    struct ticket_key cur, prev;
    int have_prev;
};

static struct ticket_ring ring = {.lock = PTHREAD_RWLOCK_INITIALIZER};

static int key_fill(struct ticket_key *k)
{
    return RAND_bytes(k->name, sizeof(k->name)) == 1 && RAND_bytes(k->aes, sizeof(k->aes)) == 1 &&
                   RAND_bytes(k->hmac, sizeof(k->hmac)) == 1
               ? 0
               : -1;
}

/* Makes a fresh current key; the old current one becomes the decrypt-only previous. */
static int ring_rotate(struct ticket_ring *rg)
{
    struct ticket_key k;

    if (key_fill(&k) < 0) return -1;
    pthread_rwlock_wrlock(&rg->lock);
    rg->prev = rg->cur;
    rg->have_prev = 1;
    rg->cur = k;
    pthread_rwlock_unlock(&rg->lock);
    OPENSSL_cleanse(&k, sizeof(k));
    return 0;
}

static int ring_init(struct ticket_ring *rg)
{
    struct ticket_key k;

    if (key_fill(&k) < 0) return -1;
    pthread_rwlock_wrlock(&rg->lock);
    rg->cur = k;
    rg->have_prev = 0;
    pthread_rwlock_unlock(&rg->lock);
    OPENSSL_cleanse(&k, sizeof(k));
    return 0;
}

/* ---- ticket keys from a file (nginx's ssl_session_ticket_key format) ---- */

static char *key_file;                 /* NULL: random keys, rotated by tls_ticket_rotate */
static unsigned char key_file_sum[32]; /* SHA-256 of the content in use */

/*
 * Reads path: one or two 80-byte keys (name 16, HMAC secret 32, AES-256 key 32, as nginx's
 * `openssl rand 80` files), the first encrypts, the second only decrypts. With changed content
 * the ring takes them and *changed is 1. 0, or -1 with err (the ring is left as it was).
 */
static int key_file_read(const char *path, int *changed, char *err, size_t errlen)
{
    unsigned char buf[161], sum[32];
    struct ticket_key k[2];
    size_t n, i;
    FILE *f = fopen(path, "rb");

    *changed = 0;
    if (!f) {
        snprintf(err, errlen, "ticket key file %s: %s", path, strerror(errno));
        return -1;
    }
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    if (n != 80 && n != 160) {
        snprintf(err, errlen, "ticket key file %s: %zu bytes, want 80 (one key) or 160 (two)", path,
                 n);
        OPENSSL_cleanse(buf, sizeof(buf));
        return -1;
    }
    if (!EVP_Digest(buf, n, sum, NULL, EVP_sha256(), NULL)) {
        snprintf(err, errlen, "ticket key file %s: no SHA-256", path);
        OPENSSL_cleanse(buf, sizeof(buf));
        return -1;
    }
    if (memcmp(sum, key_file_sum, sizeof(sum)) != 0) {
        for (i = 0; i < n / 80; i++) {
            memcpy(k[i].name, buf + 80 * i, 16);
            memcpy(k[i].hmac, buf + 80 * i + 16, 32);
            memcpy(k[i].aes, buf + 80 * i + 48, 32);
        }
        pthread_rwlock_wrlock(&ring.lock);
        ring.cur = k[0];
        ring.have_prev = n == 160;
        if (n == 160) ring.prev = k[1];
        pthread_rwlock_unlock(&ring.lock);
        memcpy(key_file_sum, sum, sizeof(sum));
        *changed = 1;
        OPENSSL_cleanse(k, sizeof(k));
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return 0;
}

/*
 * Copies the key called name into *out. Returns 1 for the current key, 2 for the previous
 * one (valid, but the client should get a fresh ticket), 0 when unknown (expired).
 */
static int ring_find(struct ticket_ring *rg, const unsigned char name[16], struct ticket_key *out)
{
    int rc = 0;

    pthread_rwlock_rdlock(&rg->lock);
    if (memcmp(name, rg->cur.name, 16) == 0) {
        *out = rg->cur;
        rc = 1;
    } else if (rg->have_prev && memcmp(name, rg->prev.name, 16) == 0) {
        *out = rg->prev;
        rc = 2;
    }
    pthread_rwlock_unlock(&rg->lock);
    return rc;
}

static int mac_init(EVP_MAC_CTX *hctx, unsigned char *key)
{
    OSSL_PARAM params[3];

    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, 32);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(hctx, params) == 1 ? 0 : -1;
}

/* SSL_CTX_set_tlsext_ticket_key_evp_cb: RFC 5077's recommended AES-256-CBC + HMAC-SHA256. */
static int ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *ectx,
                     EVP_MAC_CTX *hctx, int enc)
{
    struct ticket_key k;
    int rc;

    (void)ssl;
    if (enc) {
        pthread_rwlock_rdlock(&ring.lock);
        k = ring.cur;
        pthread_rwlock_unlock(&ring.lock);
        rc = -1;
        if (RAND_bytes(iv, 16) == 1 &&
            EVP_EncryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1 &&
            mac_init(hctx, k.hmac) == 0) {
            memcpy(name, k.name, 16);
            rc = 1;
        }
    } else {
        rc = ring_find(&ring, name, &k);
        if (rc && (EVP_DecryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1 ||
                   mac_init(hctx, k.hmac) < 0))
            rc = -1;
        /* "renew" (2) matters to TLS 1.2 only: a TLS 1.3 connection always gets one new
         * ticket, from tp_tls.c with its first write (num_tickets is 0) */
    }
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

/* ---- contexts ---- */

static SSL_CTX *base_ctx;
static int policy_idx = -1; /* SSL_CTX ex_data: its client-certificate policy's sid (32 bytes) */
static char default_fp[65];
static long ticket_lifetime;

/* ALPN: http/1.1 when offered; anything else (h2 only) gets no ALPN, the handshake goes on. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    unsigned int i = 0;
    const unsigned char *h10 = NULL;

    (void)ssl;
    (void)arg;
    while (i < inlen) {
        unsigned int l = in[i];
        if (i + 1 + l > inlen) break;
        if (l == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)l;
            return SSL_TLSEXT_ERR_OK;
        }
        if (l == 8 && memcmp(in + i + 1, "http/1.0", 8) == 0) h10 = in + i + 1;
        i += 1 + l;
    }
    if (h10) {
        *out = h10;
        *outlen = 8;
        return SSL_TLSEXT_ERR_OK;
    }
    /* RFC 7301 3.2: no protocol in common is a fatal no_application_protocol alert */
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

void tls_exdata_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    free(ptr);
}

/* Remembers ctx's client-certificate policy (its sid) for tls_policy_allows. */
static int set_policy(SSL_CTX *ctx, const unsigned char sid[32])
{
    unsigned char *copy;

    /* first use on the main thread (tls_init or the first snapshot build) */
    if (policy_idx < 0 &&
        (policy_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, tls_exdata_free)) < 0)
        return -1;
    if (!(copy = malloc(32))) return -1;
    memcpy(copy, sid, 32);
    if (!SSL_CTX_set_ex_data(ctx, policy_idx, copy)) {
        free(copy);
        return -1;
    }
    return 0;
}

/* Session id context of a client-certificate policy: SHA-256 of (mode, CA bundle PEM). */
static void policy_sid(int verify, const char *ca_pem, unsigned char out[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int n = 32;
    char v = (char)('0' + verify);

    memset(out, 0, 32);
    if (!md) return;
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1) {
        EVP_DigestUpdate(md, "strait-client-policy:", 21);
        EVP_DigestUpdate(md, &v, 1);
        if (ca_pem) EVP_DigestUpdate(md, ca_pem, strlen(ca_pem));
        EVP_DigestFinal_ex(md, out, &n);
    }
    EVP_MD_CTX_free(md);
}

static int sni_cb(SSL *ssl, int *al, void *arg);
static int client_hello_cb(SSL *ssl, int *al, void *arg);

/* A server context with the common settings (everything but certificates and client auth). */
static SSL_CTX *ctx_new(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (!ctx) return NULL;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
        SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) != 1 ||
        SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* no SSL_MODE_RELEASE_BUFFERS: tp_tls.c gives the buffers back when a connection idles */
    /* NO_AUTO_CHAIN: the chain served is the Secret's, never one built from a trust store at
     * every handshake (the start-up certificate has none) */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_NO_AUTO_CHAIN);
    SSL_CTX_set_read_ahead(ctx, 1); /* fewer reads per record; tp_tls.c handles pending bytes */
    /* tickets only: sessions live in the client's ticket, not in a server cache */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* none during the handshake: tp_tls.c has one TLS 1.3 ticket (full handshake or
     * resumption) written with the first response, in the same segment */
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
    SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, NULL);
    return ctx;
}

static void hex(const unsigned char *b, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Lower-case hex SHA-256 of x's DER into out[65]. */
static void cert_fingerprint(X509 *x, char out[65])
{
    unsigned char md[32];
    unsigned int n = sizeof(md);

    if (X509_digest(x, EVP_sha256(), md, &n) != 1 || n != 32) {
        out[0] = '\0';
        return;
    }
    hex(md, 32, out);
}

/* The start-up certificate: ECDSA P-256, CN TLS_DEFAULT_CERT_CN, valid -1 day .. +10 years. */
static int make_default_cert(SSL_CTX *ctx, char *err, size_t errlen)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *nm;
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    int rc = -1;

    if (!pk || !x) goto out;
    if (RAND_bytes(serial, sizeof(serial)) != 1) goto out;
    serial[0] &= 0x7f;
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x))) goto out;
    X509_set_version(x, 2);
    X509_gmtime_adj(X509_getm_notBefore(x), -86400L);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 3650);
    nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)TLS_DEFAULT_CERT_CN,
                               -1, -1, 0);
    X509_set_issuer_name(x, nm);
    X509_set_pubkey(x, pk);
    if (!X509_sign(x, pk, EVP_sha256())) goto out;
    if (SSL_CTX_use_certificate(ctx, x) != 1 || SSL_CTX_use_PrivateKey(ctx, pk) != 1) goto out;
    cert_fingerprint(x, default_fp);
    rc = 0;
out:
    if (rc < 0) snprintf(err, errlen, "cannot make the default certificate");
    BN_free(bn);
    X509_free(x);
    EVP_PKEY_free(pk);
    return rc;
}

int tls_init(double rotation, char *err, size_t errlen)
{
    unsigned char sid[32];

    if (base_ctx) return 0;
    if (ring_init(&ring) < 0) {
        snprintf(err, errlen, "no randomness for ticket keys");
        return -1;
    }
    base_ctx = ctx_new();
    if (!base_ctx) {
        snprintf(err, errlen, "cannot create the TLS context");
        return -1;
    }
    if (make_default_cert(base_ctx, err, errlen) < 0) goto fail;
    SSL_CTX_set_tlsext_ticket_key_evp_cb(base_ctx, ticket_cb);
    /* a ticket decrypts for two rotations: that long the session may be resumed */
    ticket_lifetime = (long)(2 * rotation);
    if (ticket_lifetime < 1) ticket_lifetime = 1;
    if (ticket_lifetime > TLS_MAX_TICKET_LIFETIME) ticket_lifetime = TLS_MAX_TICKET_LIFETIME;
    SSL_CTX_set_timeout(base_ctx, ticket_lifetime);
    policy_sid(SNAPWIRE_CLIENT_VERIFY_OFF, NULL, sid);
    SSL_CTX_set_session_id_context(base_ctx, sid, sizeof(sid));
    if (set_policy(base_ctx, sid) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return 0;
fail:
    SSL_CTX_free(base_ctx);
    base_ctx = NULL;
    return -1;
}

void tls_cleanup(void)
{
    SSL_CTX_free(base_ctx);
    base_ctx = NULL;
    free(key_file);
    key_file = NULL;
}

int tls_ticket_key_file(const char *path, char *err, size_t errlen)
{
    int changed;

    if (key_file_read(path, &changed, err, errlen) < 0) return -1;
    free(key_file);
    if (!(key_file = strdup(path))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    log_info("tls_ticket_keys_loaded", "file=\"%s\"", path);
    return 0;
}

void tls_ticket_rotate(void)
{
    char err[256];
    int changed;

    if (key_file) { /* the file's owner rotates: take what it holds now */
        if (key_file_read(key_file, &changed, err, sizeof(err)) < 0)
            log_warn("tls_ticket_keys_unchanged", "reason=\"%s\"", err);
        else if (changed)
            log_info("tls_ticket_keys_loaded", "file=\"%s\"", key_file);
        return;
    }
    if (ring_rotate(&ring) < 0)
        log_warn("tls_ticket_rotation_failed", "reason=\"no randomness\"");
    else
        log_debug("tls_ticket_rotated", "lifetime=%ld", ticket_lifetime);
}

const char *tls_default_fingerprint(void)
{
    return default_fp;
}

/* ---- per-snapshot contexts and SNI ---- */

struct sni_ent {
    const char *name; /* exact host, or the wildcard's suffix with its dot (".foo.com") */
    uint32_t ctx;
};

struct tls_snap {
    uint32_t n_ctx, n_exact, n_wild;
    SSL_CTX **ctx;
    struct sni_ent *exact, *wild;
    SSL_CTX *def;    /* meta.default_cert's context, or NULL */
    int client_auth; /* some tls_host asks for client certificates (tls_policy_allows) */
};

void tls_snap_free(struct tls_snap *t)
{
    uint32_t i;

    if (!t) return;
    for (i = 0; i < t->n_ctx; i++)
        SSL_CTX_free(t->ctx[i]);
    SSL_CTX_free(t->def);
    free(t->ctx);
    free(t->exact);
    free(t->wild);
    free(t);
}

static int ent_cmp(const void *a, const void *b)
{
    return strcmp(((const struct sni_ent *)a)->name, ((const struct sni_ent *)b)->name);
}

static const struct sni_ent *ent_find(const struct sni_ent *v, uint32_t n, const char *name)
{
    struct sni_ent key = {.name = name};

    return n ? bsearch(&key, v, n, sizeof(*v), ent_cmp) : NULL;
}

/* Adds cert's chain and key to ctx (its type's slot: one RSA and one ECDSA may coexist). */
static int load_cert(SSL_CTX *ctx, const struct snapwire_cert *c, char *err, size_t errlen)
{
    BIO *b = BIO_new_mem_buf(c->chain_pem, -1);
    BIO *kb = BIO_new_mem_buf(c->key_pem, -1);
    STACK_OF(X509) *chain = sk_X509_new_null();
    X509 *leaf = NULL, *x;
    EVP_PKEY *key = NULL;
    int rc = -1;

    if (!b || !kb || !chain) goto out;
    leaf = PEM_read_bio_X509(b, NULL, NULL, NULL);
    if (!leaf) {
        snprintf(err, errlen, "certificate %s: chain does not parse", c->name);
        goto out;
    }
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)))
        if (!sk_X509_push(chain, x)) {
            X509_free(x);
            goto out;
        }
    ERR_clear_error(); /* the end of the PEM data is reported as an error */
    key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    if (!key) {
        snprintf(err, errlen, "certificate %s: key does not parse", c->name);
        goto out;
    }
    if (SSL_CTX_use_cert_and_key(ctx, leaf, key, chain, 1) != 1) {
        snprintf(err, errlen, "certificate %s: does not match its key", c->name);
        goto out;
    }
    rc = 0;
out:
    if (rc < 0 && !err[0]) snprintf(err, errlen, "certificate %s: cannot load", c->name);
    ERR_clear_error();
    EVP_PKEY_free(key);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    BIO_free(b);
    BIO_free(kb);
    return rc;
}

/* Client certificates for ctx: verify against ca's bundle, REQUIRED or OPTIONAL. */
static int load_client_ca(SSL_CTX *ctx, const struct snapwire_cert *ca, int verify, char *err,
                          size_t errlen)
{
    BIO *b = BIO_new_mem_buf(ca->chain_pem, -1);
    X509_STORE *st = X509_STORE_new();
    STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
    X509 *x;
    int n = 0, rc = -1;

    if (!b || !st || !names) goto out;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        X509_NAME *nm = X509_NAME_dup(X509_get_subject_name(x));
        int ok = X509_STORE_add_cert(st, x) == 1 && nm && sk_X509_NAME_push(names, nm);
        if (!ok) X509_NAME_free(nm);
        X509_free(x);
        if (!ok) goto out;
        n++;
    }
    ERR_clear_error();
    if (n == 0) {
        snprintf(err, errlen, "CA bundle %s: no certificate parses", ca->name);
        goto out;
    }
    SSL_CTX_set_cert_store(ctx, st);
    st = NULL;
    SSL_CTX_set_client_CA_list(ctx, names);
    names = NULL;
    SSL_CTX_set_verify(
        ctx,
        SSL_VERIFY_PEER |
            (verify == SNAPWIRE_CLIENT_VERIFY_REQUIRED ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
        NULL);
    rc = 0;
out:
    if (rc < 0 && !err[0]) snprintf(err, errlen, "CA bundle %s: cannot load", ca->name);
    X509_STORE_free(st);
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    BIO_free(b);
    return rc;
}

/* A context serving certs a and b (b may be SNAPWIRE_NONE) with the given client policy. */
static SSL_CTX *build_ctx(const struct snapwire_snapshot *sw, uint32_t a, uint32_t b, uint32_t ca,
                          int verify, char *err, size_t errlen)
{
    SSL_CTX *ctx = ctx_new();
    unsigned char sid[32];

    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context");
        return NULL;
    }
    if (load_cert(ctx, &sw->certs[a], err, errlen) < 0) goto fail;
    if (b != SNAPWIRE_NONE && load_cert(ctx, &sw->certs[b], err, errlen) < 0) goto fail;
    if (verify != SNAPWIRE_CLIENT_VERIFY_OFF && ca != SNAPWIRE_NONE) {
        if (load_client_ca(ctx, &sw->certs[ca], verify, err, errlen) < 0) goto fail;
        policy_sid(verify, sw->certs[ca].chain_pem, sid);
    } else {
        policy_sid(SNAPWIRE_CLIENT_VERIFY_OFF, NULL, sid);
    }
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid));
    if (set_policy(ctx, sid) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* A tls_host's context key, for sharing one context among hosts with the same settings. */
struct host_key {
    uint32_t cert, cert2, ca, verify, host;
};

static int key_cmp(const void *a, const void *b)
{
    const struct host_key *x = a, *y = b;

    if (x->cert != y->cert) return x->cert < y->cert ? -1 : 1;
    if (x->cert2 != y->cert2) return x->cert2 < y->cert2 ? -1 : 1;
    if (x->ca != y->ca) return x->ca < y->ca ? -1 : 1;
    if (x->verify != y->verify) return x->verify < y->verify ? -1 : 1;
    return 0;
}

int tls_snap_build(const struct snapwire_snapshot *sw, struct tls_snap **out, char *err,
                   size_t errlen)
{
    struct tls_snap *t;
    struct host_key *keys = NULL;
    uint32_t i, n = sw->n_tls_hosts;

    *out = NULL;
    err[0] = '\0';
    if (!tls_snap_wanted(sw)) return 0;
    if (!(t = calloc(1, sizeof(*t)))) goto oom;
    if (n) {
        keys = calloc(n, sizeof(*keys));
        t->ctx = calloc(n, sizeof(*t->ctx));
        t->exact = calloc(n, sizeof(*t->exact));
        t->wild = calloc(n, sizeof(*t->wild));
        if (!keys || !t->ctx || !t->exact || !t->wild) goto oom;
    }
    for (i = 0; i < n; i++) {
        const struct snapwire_tls_host *h = &sw->tls_hosts[i];
        keys[i] =
            (struct host_key){h->cert, h->cert2, h->client_verify ? h->client_ca : SNAPWIRE_NONE,
                              h->client_verify, i};
        if (h->client_verify != SNAPWIRE_CLIENT_VERIFY_OFF) t->client_auth = 1;
        if (h->client_verify != SNAPWIRE_CLIENT_VERIFY_OFF && h->client_ca == SNAPWIRE_NONE) {
            /* fail closed: serving it without the check would let any client in */
            snprintf(err, errlen, "tls host %s: client verification without a CA bundle", h->host);
            goto fail;
        }
        if (h->cert >= sw->n_certs || (h->cert2 != SNAPWIRE_NONE && h->cert2 >= sw->n_certs) ||
            (keys[i].ca != SNAPWIRE_NONE && keys[i].ca >= sw->n_certs)) {
            snprintf(err, errlen, "tls host %s: bad certificate index", h->host);
            goto fail;
        }
    }
    if (n) qsort(keys, n, sizeof(*keys), key_cmp);
    for (i = 0; i < n; i++) {
        const struct snapwire_tls_host *h = &sw->tls_hosts[keys[i].host];
        struct sni_ent *e;
        if (i == 0 || key_cmp(&keys[i - 1], &keys[i]) != 0) {
            t->ctx[t->n_ctx] = build_ctx(sw, keys[i].cert, keys[i].cert2, keys[i].ca,
                                         (int)keys[i].verify, err, errlen);
            if (!t->ctx[t->n_ctx]) goto fail;
            t->n_ctx++;
        }
        if (h->host[0] == '*' && h->host[1] == '.')
            e = &t->wild[t->n_wild++], e->name = h->host + 1;
        else
            e = &t->exact[t->n_exact++], e->name = h->host;
        e->ctx = t->n_ctx - 1;
    }
    if (t->n_exact) qsort(t->exact, t->n_exact, sizeof(*t->exact), ent_cmp);
    if (t->n_wild) qsort(t->wild, t->n_wild, sizeof(*t->wild), ent_cmp);
    if (sw->meta.default_cert != SNAPWIRE_NONE) {
        if (sw->meta.default_cert >= sw->n_certs) {
            snprintf(err, errlen, "default certificate: bad index");
            goto fail;
        }
        t->def = build_ctx(sw, sw->meta.default_cert, SNAPWIRE_NONE, SNAPWIRE_NONE,
                           SNAPWIRE_CLIENT_VERIFY_OFF, err, errlen);
        if (!t->def) goto fail;
    }
    free(keys);
    *out = t;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    free(keys);
    tls_snap_free(t);
    return -1;
}

SSL_CTX *tls_snap_select(const struct tls_snap *t, const char *name)
{
    char low[256];
    const struct sni_ent *e;
    const char *dot;
    size_t i, n;

    if (!t) return NULL;
    if (!name || !name[0]) return t->def;
    n = strlen(name);
    if (n >= sizeof(low)) return t->def;
    for (i = 0; i < n; i++)
        low[i] = (char)tolower((unsigned char)name[i]);
    low[n] = '\0';
    if ((e = ent_find(t->exact, t->n_exact, low))) return t->ctx[e->ctx];
    /* "*.foo.com" covers exactly one label: "a.foo.com", not "foo.com" or "a.b.foo.com" */
    dot = strchr(low, '.');
    if (dot && dot > low && (e = ent_find(t->wild, t->n_wild, dot))) return t->ctx[e->ctx];
    return t->def;
}

/*
 * Moves ssl to ctx the way nginx's servername handler does. The sid_ctx follows too:
 * SSL_set_SSL_CTX copies the new context's when the SSL still has its old context's, which
 * holds here (every SSL starts from base_ctx and moves at most once), so the session id
 * context becomes the new host's client policy's.
 */
static void switch_ctx(SSL *ssl, SSL_CTX *ctx)
{
    if (SSL_get_SSL_CTX(ssl) == ctx) return;
    SSL_set_SSL_CTX(ssl, ctx);
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_callback(ctx));
    SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(ctx));
    SSL_clear_options(ssl, SSL_get_options(ssl) & ~SSL_CTX_get_options(ctx));
    SSL_set_options(ssl, SSL_CTX_get_options(ctx));
}

/*
 * The host_name of a ClientHello server_name extension body (RFC 6066 3) into out; "" when
 * there is none or it is malformed (then the default certificate answers).
 */
static void sni_from_ext(const unsigned char *p, size_t len, char *out, size_t outlen)
{
    size_t list, i = 2;

    out[0] = '\0';
    if (len < 2 || (list = ((size_t)p[0] << 8) | p[1]) + 2 > len) return;
    while (i + 3 <= 2 + list) {
        unsigned type = p[i];
        size_t nl = ((size_t)p[i + 1] << 8) | p[i + 2];
        if (i + 3 + nl > 2 + list) return;
        if (type == TLSEXT_NAMETYPE_host_name) {
            if (nl == 0 || nl >= outlen || memchr(p + i + 3, 0, nl)) return;
            memcpy(out, p + i + 3, nl);
            out[nl] = '\0';
            return;
        }
        i += 3 + nl;
    }
}

/*
 * Certificate selection happens here, in the ClientHello callback, not in the servername
 * callback: OpenSSL looks up the session to resume (ticket or PSK) before it runs the
 * servername callback, with the sid_ctx the SSL has at that point; switching first makes
 * that lookup compare against the chosen host's client-certificate policy.
 */
static int client_hello_cb(SSL *ssl, int *al, void *arg)
{
    struct snapshot *s = SSL_get_app_data(ssl);
    const unsigned char *p;
    size_t len;
    char name[256];
    SSL_CTX *ctx;

    (void)al;
    (void)arg;
    if (!s) return SSL_CLIENT_HELLO_SUCCESS;
    if (s->magic != SNAPSHOT_MAGIC) abort();
    name[0] = '\0';
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) == 1)
        sni_from_ext(p, len, name, sizeof(name));
    ctx = tls_snap_select(s->tls, name);
    if (ctx) switch_ctx(ssl, ctx);
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* SNI is acknowledged; the context was chosen by client_hello_cb already. */
static int sni_cb(SSL *ssl, int *al, void *arg)
{
    (void)ssl;
    (void)al;
    (void)arg;
    return SSL_TLSEXT_ERR_OK;
}

SSL_CTX *tls_base_ctx(void)
{
    return base_ctx;
}

int tls_policy_allows(const struct tls_snap *t, const char *host, const struct transport *tp)
{
    SSL_CTX *want, *have;
    const unsigned char *w, *h;

    /* the common case, on every request of a TLS connection: nobody asks for client certs */
    if (!t || !t->client_auth || policy_idx < 0) return 1;
    if (!(want = tls_snap_select(t, host))) return 1; /* the start-up certificate */
    w = SSL_CTX_get_ex_data(want, policy_idx);
    if (!tp->sess || !w) return 1;
    have = SSL_get_SSL_CTX((SSL *)tp->sess);
    if (have == want) return 1;
    h = SSL_CTX_get_ex_data(have, policy_idx);
    if (h && memcmp(h, w, 32) == 0) return 1; /* same policy (also across snapshots) */
    /* another policy: only a host that asks nothing of clients may be served */
    return SSL_CTX_get_verify_mode(want) == SSL_VERIFY_NONE;
}
