/*
 * tls_upstream: client-side TLS for clusters whose snapshot entry has tls set.
 *
 * Does: per snapshot, one SSL_CTX per distinct CA bundle that clusters verify against, and
 * one that does not verify (a cluster without tls_ca: nginx's proxy_ssl_verify off, the
 * ingress-nginx default); TLS 1.2 or 1.3, ALPN http/1.1, no renegotiation, partial and
 * moving-buffer writes, buffers released while idle. Per connection: an SSL in connect
 * state on the upstream socket with SNI (RFC 6066: a DNS name, never an IP literal) and,
 * when verifying, the host name (or IP address) check of RFC 6125 through OpenSSL's
 * X509_VERIFY_PARAM. The session then moves bytes through the TLS transport ops (tp_tls.c),
 * like a client connection's.
 * Sessions are resumed (nginx's proxy_ssl_session_reuse): the last session (ticket) an
 * endpoint gave, per transport tag, is kept in one process-wide cache shared by the workers
 * and offered by the next fresh connection to that endpoint - also across snapshots, since
 * the key is the tag and the address, not the snapshot.
 * A struct tls_upstream_client copies one cluster's entry out of the snapshot with its own
 * context reference, for a user that outlives the snapshot (the health checker's targets).
 * Mesh clusters (used by a snapshot mesh_service with mtls set) are set up differently: no
 * context of their own, but the sidecar's current mesh client context (tls_mesh.c: our
 * workload certificate, TLS 1.3, the mesh trust set) and, per cluster, the union of the
 * identities of the mesh services using it, one of which the peer's URI must be; their tag
 * covers those identities, never equal to a plain or TLS tag. No SNI is sent: a sidecar has one
 * certificate, and the peer is checked by its SPIFFE URI, not by a name. Their sessions are
 * not resumed (no tickets in the mesh) and health checks get no client for them.
 * Does not: check revocation.
 * Invariants: a struct tls_upstream is immutable once built; each entry holds a reference
 * on its context, so the contexts live as long as the snapshot, as any tls_upstream_client
 * copied from it (each holds one more) or as any session made from them (SSL_new takes its
 * own reference); the session cache holds at most SESS_MAX entries,
 * each one reference on its SSL_SESSION, under sess_lock.
 */
#include "tls_upstream.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"
#include "tls_mesh.h"

#define SESS_BUCKETS 1024
#define SESS_MAX 4096

/* Which cache slot a connection's session belongs to (SSL ex_data, freed with the SSL). */
struct sess_key {
    uint64_t tag;
    socklen_t alen;
    struct sockaddr_storage addr;
};

struct sess_ent {
    struct sess_key key;
    SSL_SESSION *sess;
    struct sess_ent *next;
};

static pthread_mutex_t sess_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sess_ent *sess_tab[SESS_BUCKETS];
static unsigned n_sess;
static int key_idx = -1; /* SSL ex_data index of the struct sess_key */
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void key_index_init(void)
{
    key_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, tls_exdata_free);
}

static unsigned key_bucket(const struct sess_key *k)
{
    uint64_t h = 1469598103934665603ull ^ k->tag;
    const unsigned char *p = (const unsigned char *)&k->addr;

    for (socklen_t i = 0; i < k->alen; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return (unsigned)(h % SESS_BUCKETS);
}

static int key_equal(const struct sess_key *a, const struct sess_key *b)
{
    return a->tag == b->tag && a->alen == b->alen && memcmp(&a->addr, &b->addr, a->alen) == 0;
}

/*
 * OpenSSL hands over each session (TLS 1.3: each ticket, after the handshake) the server
 * gave: keep it as the endpoint's latest. Returns 1 when the reference was kept.
 */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    const struct sess_key *k = key_idx >= 0 ? SSL_get_ex_data(ssl, key_idx) : NULL;
    struct sess_ent *e, **head;

    if (!k || !SSL_SESSION_is_resumable(sess)) return 0;
    pthread_mutex_lock(&sess_lock);
    head = &sess_tab[key_bucket(k)];
    for (e = *head; e && !key_equal(&e->key, k); e = e->next)
        ;
    if (e) {
        SSL_SESSION_free(e->sess);
        e->sess = sess;
    } else if (n_sess < SESS_MAX && (e = malloc(sizeof(*e)))) {
        e->key = *k;
        e->sess = sess;
        e->next = *head;
        *head = e;
        n_sess++;
    } else {
        sess = NULL; /* full: this one is not kept */
    }
    pthread_mutex_unlock(&sess_lock);
    return sess != NULL;
}

/* Offers the endpoint's latest session to ssl, if there is one. */
static void offer_session(SSL *ssl, const struct sess_key *k)
{
    struct sess_ent *e;

    pthread_mutex_lock(&sess_lock);
    for (e = sess_tab[key_bucket(k)]; e && !key_equal(&e->key, k); e = e->next)
        ;
    if (e) (void)SSL_set_session(ssl, e->sess); /* takes its own reference */
    pthread_mutex_unlock(&sess_lock);
}

void tls_upstream_cleanup(void)
{
    pthread_mutex_lock(&sess_lock);
    for (unsigned i = 0; i < SESS_BUCKETS; i++) {
        while (sess_tab[i]) {
            struct sess_ent *e = sess_tab[i];
            sess_tab[i] = e->next;
            SSL_SESSION_free(e->sess);
            free(e);
        }
    }
    n_sess = 0;
    pthread_mutex_unlock(&sess_lock);
}

struct tls_upstream_cluster {
    SSL_CTX *ctx; /* NULL: a plain (or mesh) cluster */
    const char *sni;
    uint8_t verify;
    uint8_t sni_is_ip;
    uint8_t mesh; /* mTLS with the sidecar's identity (tls_mesh.c), to one of ids */
    uint32_t n_ids;
    const char **ids; /* mesh: the identities its endpoints may run as, no duplicates */
    const char *name; /* mesh: the cluster's name, for logs */
    uint64_t tag;
};

struct tls_upstream {
    uint32_t n;
    struct tls_upstream_cluster *c;
    char *strings;    /* the server names, mesh cluster names and identities, one allocation */
    const char **ids; /* every mesh cluster's ids, one allocation */
};

static uint64_t fnv1a(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int is_ip_literal(const char *s)
{
    unsigned char tmp[16];

    return inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1;
}

/* A client context; with ca_pem, peers must chain to one of its certificates. */
static SSL_CTX *client_ctx(const char *ca_pem, const char *what, char *err, size_t errlen)
{
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    STACK_OF(X509_INFO) *infos = NULL;
    BIO *bio = NULL;
    int n_ca = 0;

    if (!ctx) goto nomem;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* forward secrecy and AEAD, as on the listeners (TLS 1.3 suites are all AEAD) */
    if (!SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20")) goto ssl_error;
    if (SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1) != 0) goto nomem;
    /* sessions go to our cache only (new_session_cb), never to OpenSSL's */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    if (!ca_pem) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return ctx;
    }
    if (!(bio = BIO_new_mem_buf(ca_pem, -1))) goto nomem;
    infos = PEM_X509_INFO_read_bio(bio, NULL, NULL, NULL);
    for (int i = 0; infos && i < sk_X509_INFO_num(infos); i++) {
        X509_INFO *xi = sk_X509_INFO_value(infos, i);
        if (xi->x509 && X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), xi->x509)) n_ca++;
    }
    if (n_ca == 0) {
        snprintf(err, errlen, "%s: the CA bundle holds no certificate that loads", what);
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    BIO_free(bio);
    ERR_clear_error();
    return ctx;
ssl_error:
    snprintf(err, errlen, "%s: %s", what, ERR_reason_error_string(ERR_peek_last_error()));
    goto fail;
nomem:
    snprintf(err, errlen, "%s: out of memory", what);
fail:
    if (infos) sk_X509_INFO_pop_free(infos, X509_INFO_free);
    BIO_free(bio);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

/* A mesh service whose caller must use mTLS to its cluster. */
static int mesh_mtls(const struct snapwire_snapshot *sw, const struct snapwire_mesh_service *ms)
{
    return ms->mtls && ms->cluster < sw->n_clusters && ms->first_id <= sw->n_mesh_ids &&
           ms->id_count <= sw->n_mesh_ids - ms->first_id;
}

/*
 * The mesh part of tls_upstream_build: marks the clusters mesh services with mTLS use and
 * gives each the union of their identities (copied to p, which has room), its tag and name.
 * slots[i]: on entry, the room each cluster's ids need (sum of id_count).
 */
static void build_mesh(const struct snapwire_snapshot *sw, struct tls_upstream *t, uint32_t *slots,
                       char **pp)
{
    const char **next = t->ids;
    char *p = *pp;
    uint32_t i, k, j;

    for (i = 0; i < sw->n_clusters; i++) { /* each mesh cluster's share of t->ids */
        if (!slots[i]) continue;
        t->c[i].ids = next;
        next += slots[i];
    }
    for (i = 0; i < sw->n_mesh_services; i++) {
        const struct snapwire_mesh_service *ms = &sw->mesh_services[i];
        struct tls_upstream_cluster *e;
        if (!mesh_mtls(sw, ms)) continue;
        e = &t->c[ms->cluster];
        if (!e->mesh) {
            e->mesh = 1;
            e->name = strcpy(p, sw->clusters[ms->cluster].name);
            p += strlen(p) + 1;
        }
        for (k = 0; k < ms->id_count; k++) {
            const char *uri = sw->mesh_ids[ms->first_id + k].uri;
            for (j = 0; j < e->n_ids && strcmp(e->ids[j], uri) != 0; j++)
                ;
            if (j < e->n_ids) continue; /* another record (a second ClusterIP, port) had it */
            e->ids[e->n_ids++] = strcpy(p, uri);
            p += strlen(p) + 1;
        }
    }
    for (i = 0; i < sw->n_clusters; i++) {
        struct tls_upstream_cluster *e = &t->c[i];
        uint64_t h = fnv1a(1469598103934665603ull, "mesh", 5);
        if (!e->mesh) continue;
        h = fnv1a(h, e->name, strlen(e->name) + 1);
        for (j = 0; j < e->n_ids; j++)
            h = fnv1a(h, e->ids[j], strlen(e->ids[j]) + 1);
        e->tag = h | 1;
    }
    *pp = p;
}

int tls_upstream_build(const struct snapwire_snapshot *sw, struct tls_upstream **out, char *err,
                       size_t errlen)
{
    struct tls_upstream *t;
    SSL_CTX **by_ca = NULL, *noverify = NULL;
    size_t names = 0, n_slots = 0;
    uint32_t i, n_mesh = 0, *slots = NULL;
    char *p;

    *out = NULL;
    if (!tls_upstream_wanted(sw)) return 0;
    if (sw->n_clusters && !(slots = calloc(sw->n_clusters, sizeof(*slots)))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (i = 0; i < sw->n_mesh_services; i++) {
        const struct snapwire_mesh_service *ms = &sw->mesh_services[i];
        if (!mesh_mtls(sw, ms)) continue;
        names += strlen(sw->clusters[ms->cluster].name) + 1; /* room enough: once per cluster */
        slots[ms->cluster] += ms->id_count; /* 0: a mesh cluster refusing every peer */
        n_slots += ms->id_count;
        n_mesh++;
        for (uint32_t k = 0; k < ms->id_count; k++)
            names += strlen(sw->mesh_ids[ms->first_id + k].uri) + 1;
    }
    for (i = 0; i < sw->n_clusters; i++) {
        if (!sw->clusters[i].tls) continue;
        names += strlen(sw->clusters[i].tls_sni) + 1;
    }
    t = calloc(1, sizeof(*t));
    if (!t || !(t->c = calloc(sw->n_clusters, sizeof(*t->c))) ||
        !(t->strings = malloc(names + 1)) ||
        (n_slots && !(t->ids = calloc(n_slots, sizeof(*t->ids)))) ||
        (sw->n_certs && !(by_ca = calloc(sw->n_certs, sizeof(*by_ca))))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    t->n = sw->n_clusters;
    p = t->strings;
    if (n_mesh) build_mesh(sw, t, slots, &p);
    for (i = 0; i < sw->n_clusters; i++) {
        const struct snapwire_cluster *c = &sw->clusters[i];
        struct tls_upstream_cluster *e = &t->c[i];
        SSL_CTX **slot;
        char what[320];
        uint64_t h = 1469598103934665603ull;

        if (!c->tls || e->mesh) continue; /* mesh clusters speak the sidecar's mTLS only */
        slot = c->tls_ca == SNAPWIRE_NONE ? &noverify : &by_ca[c->tls_ca];
        if (!*slot) {
            snprintf(what, sizeof(what), "cluster %s: CA %s", c->name,
                     c->tls_ca == SNAPWIRE_NONE ? "-" : sw->certs[c->tls_ca].name);
            *slot = client_ctx(c->tls_ca == SNAPWIRE_NONE ? NULL : sw->certs[c->tls_ca].chain_pem,
                               what, err, errlen);
            if (!*slot) goto fail;
        }
        SSL_CTX_up_ref(*slot);
        e->ctx = *slot;
        e->verify = c->tls_ca != SNAPWIRE_NONE;
        strcpy(p, c->tls_sni);
        e->sni = p;
        p += strlen(p) + 1;
        e->sni_is_ip = e->sni[0] && is_ip_literal(e->sni);
        h = fnv1a(h, e->sni, strlen(e->sni) + 1);
        if (e->verify) {
            const char *fp = sw->certs[c->tls_ca].fingerprint;
            h = fnv1a(h, fp, strlen(fp));
            h = fnv1a(h, "+verify", 7);
        }
        e->tag = h | 1; /* never 0, the plain tag */
    }
    for (i = 0; by_ca && i < sw->n_certs; i++)
        SSL_CTX_free(by_ca[i]);
    free(by_ca);
    free(slots);
    SSL_CTX_free(noverify);
    *out = t;
    return 0;
fail:
    free(slots);
    for (i = 0; by_ca && i < sw->n_certs; i++)
        SSL_CTX_free(by_ca[i]);
    free(by_ca);
    SSL_CTX_free(noverify);
    tls_upstream_free(t);
    return -1;
}

void tls_upstream_free(struct tls_upstream *t)
{
    if (!t) return;
    for (uint32_t i = 0; t->c && i < t->n; i++)
        SSL_CTX_free(t->c[i].ctx);
    free(t->c);
    free(t->strings);
    free(t->ids);
    free(t);
}

uint64_t tls_upstream_tag(const struct tls_upstream *t, uint32_t cluster)
{
    if (!t || cluster >= t->n || !(t->c[cluster].ctx || t->c[cluster].mesh)) return 0;
    return t->c[cluster].tag;
}

/* A client session for entry e on tp (see tls_upstream_start). */
static int session_start(const struct tls_upstream_cluster *e, struct transport *tp,
                         const struct sockaddr *sa, socklen_t salen)
{
    struct sess_key *k = NULL;
    SSL *ssl = NULL;

    pthread_once(&key_once, key_index_init);
    if (key_idx < 0 || salen > sizeof(k->addr) || !(k = calloc(1, sizeof(*k)))) return -1;
    k->tag = e->tag;
    k->alen = salen;
    memcpy(&k->addr, sa, salen);
    if (!(ssl = SSL_new(e->ctx))) goto fail;
    if (!SSL_set_ex_data(ssl, key_idx, k)) goto fail;
    k = NULL; /* the SSL owns it now (tls_exdata_free) */
    SSL_set_connect_state(ssl);
    if (e->sni[0] && !e->sni_is_ip && !SSL_set_tlsext_host_name(ssl, e->sni)) goto fail;
    if (e->verify && e->sni[0]) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        if (e->sni_is_ip ? !X509_VERIFY_PARAM_set1_ip_asc(vp, e->sni) : !SSL_set1_host(ssl, e->sni))
            goto fail;
        /* a wildcard covers one label only (RFC 6125 6.4.3) */
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    }
    offer_session(ssl, SSL_get_ex_data(ssl, key_idx));
    if (tls_transport_connect(tp, tp->fd, ssl) < 0) goto fail;
    return 0;
fail:
    free(k);
    SSL_free(ssl);
    ERR_clear_error();
    return -1;
}

int tls_upstream_start(const struct tls_upstream *t, uint32_t cluster, struct transport *tp,
                       const struct sockaddr *sa, socklen_t salen)
{
    if (t && cluster < t->n && t->c[cluster].mesh)
        return tls_upstream_start_mesh(t, cluster, tp, tp->fd, 0);
    if (!t || cluster >= t->n || !t->c[cluster].ctx) return -1;
    return session_start(&t->c[cluster], tp, sa, salen);
}

int tls_upstream_mesh_cluster(const struct tls_upstream *t, uint32_t cluster)
{
    return t && cluster < t->n && t->c[cluster].mesh;
}

int tls_upstream_start_mesh(const struct tls_upstream *t, uint32_t cluster, struct transport *tp,
                            int fd, int opaque)
{
    const struct tls_upstream_cluster *e;
    SSL *ssl;

    if (!tls_upstream_mesh_cluster(t, cluster)) return -1;
    e = &t->c[cluster];
    if (!(ssl = tls_mesh_client_new(fd, opaque, e->ids, e->n_ids, e->name))) return -1;
    if (tls_transport_connect(tp, fd, ssl) < 0) {
        SSL_free(ssl);
        return -1;
    }
    return 0;
}

/* One cluster's settings outside any snapshot: the entry, its own context reference and SNI. */
struct tls_upstream_client {
    struct tls_upstream_cluster e; /* e.sni points at sni below */
    char sni[];
};

struct tls_upstream_client *tls_upstream_client_get(const struct tls_upstream *t, uint32_t cluster)
{
    const struct tls_upstream_cluster *e;
    struct tls_upstream_client *c;
    size_t n;

    if (!t || cluster >= t->n || !(e = &t->c[cluster])->ctx) return NULL;
    n = strlen(e->sni) + 1;
    if (!(c = malloc(sizeof(*c) + n))) return NULL;
    if (!SSL_CTX_up_ref(e->ctx)) {
        free(c);
        return NULL;
    }
    c->e = *e;
    memcpy(c->sni, e->sni, n);
    c->e.sni = c->sni;
    return c;
}

int tls_upstream_client_start(const struct tls_upstream_client *c, struct transport *tp,
                              const struct sockaddr *sa, socklen_t salen)
{
    return c ? session_start(&c->e, tp, sa, salen) : -1;
}

void tls_upstream_client_release(struct tls_upstream_client *c)
{
    if (!c) return;
    SSL_CTX_free(c->e.ctx);
    free(c);
}

const char *tls_upstream_error(const struct transport *tp, char *buf, size_t len)
{
    SSL *ssl = tp->sess;
    unsigned long e;
    long vr;

    e = ERR_peek_last_error(); /* left by the failed handshake on this thread (tp_tls.c) */
    ERR_clear_error();
    if (ssl && (vr = SSL_get_verify_result(ssl)) == X509_V_ERR_APPLICATION_VERIFICATION) {
        /* only the mesh's verify callback (tls_mesh.c) sets it: see event mesh_peer_refused */
        snprintf(buf, len, "upstream certificate: peer identity refused by the mesh");
        return buf;
    }
    if (ssl && vr != X509_V_OK) {
        snprintf(buf, len, "upstream certificate: %s", X509_verify_cert_error_string(vr));
        return buf;
    }
    if (e != 0) {
        const char *r = ERR_reason_error_string(e);
        snprintf(buf, len, "upstream TLS: %s", r ? r : "handshake failed");
        return buf;
    }
    snprintf(buf, len, "upstream TLS handshake failed");
    return buf;
}
