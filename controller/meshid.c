/*
 * meshid: the mesh identity endpoint. A sidecar sends POST /v1/identity with its projected
 * ServiceAccount token (Authorization: Bearer) and {"csr": PEM}; it gets back a leaf for that
 * ServiceAccount's SPIFFE identity, the trust bundle, the identity and the leaf's notAfter.
 *
 * Does: decide who the caller is - a token map file (lines "token namespace serviceaccount",
 * re-read when it changes) or, in cluster mode, a TokenReview (audience "strait"; the request
 * waits for the answer); get the root - from files (generated and written there once when
 * missing), generated in memory (file mode without root files), or from the Secret
 * (generated once and created with POST: a 409 means another replica won, read its); issue
 * the server's own certificate from that root; write the trust bundle to a file and, while
 * leading, to the ConfigMap strait-mesh-trust-bundle; tell a listener when the bundle changes
 * (meshwebhook keeps the injector's caBundle); count and log issuance; re-check the root
 * files (inode, size, mtime) or re-read the Secret every --mesh-root-resync seconds and swap
 * in a changed root that loads (a new meshca; the old one is freed once everything that
 * follows the bundle has been given the new one), keeping the current root when it does not.
 * Does not: sign (meshca), speak HTTP or TLS (meshsrv), rotate the root by itself (an
 * operator gives the roots; docs/mesh.md), or re-create a Secret that disappears once a root
 * is loaded.
 * Invariants: m->ca is the only pointer to the CA (other modules borrow the bundle text for
 * one callback); while no root is loaded every identity request gets 503 and the server uses a
 * throwaway certificate no client trusts; a leaf only ever names the identity the token
 * proves, whatever the CSR asks; tokens are never logged.
 */
#include "meshid.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>

#include "containerof.h"
#include "jsongen.h"
#include "kobj.h"
#include "kube_client.h"
#include "kube_decode.h"
#include "leader.h"
#include "log.h"
#include "meshca.h"
#include "meshid.h"
#include "meshsrv.h"
#include "netaddr.h"
#include "readfile.h"

#define MESHID_MAGIC 0x4d534944u      /* "MSID" */
#define MESHID_PEND_MAGIC 0x4d535044u /* "MSPD" */
#define MESHID_ROOT_DAYS 3650
#define MESHID_SERVER_TTL (30 * 86400)
#define MESHID_SERVER_RENEW (10 * 86400.)
#define MESHID_RETRY 2.0
#define MESHID_RETRY_MAX 30.0
#define MESHID_API_TIMEOUT 10.0
#define MESHID_REVIEW_TIMEOUT 5.0
#define MESHID_MAX_NAMES 16
#define MESHID_FILE_MAX (1024 * 1024)

struct meshid_token {
    char *token, *ns, *sa;
};

struct meshid_tokens {
    struct meshid_token *v;
    size_t n;
};

struct meshid_pending {
    uint32_t magic;
    struct meshid *m;
    struct meshsrv_request *req;
    struct kube_request *kr;
    char *csr;
    struct meshid_pending *prev, *next;
};

struct meshid {
    uint32_t magic;
    struct ev_loop *loop;
    struct kube_client *client;
    struct meshsrv *srv;
    char td[256];
    unsigned ttl;
    char *names[MESHID_MAX_NAMES];
    size_t n_names;
    /* IP SANs: the addresses in --mesh-server-names, then 127.0.0.1 and ::1 */
    const char *ips[MESHID_MAX_NAMES + 2];
    size_t n_ips;
    char *bundle_out;
    /* tokens (file mode) */
    char *token_file;
    struct meshid_tokens tokens;
    struct stat token_st;
    /* the root */
    struct meshca *ca;      /* NULL while not ready */
    struct meshca *pending; /* cluster mode: generated, being created as the Secret */
    char secret_ns[256], secret_name[256];
    struct kube_request *root_req;
    ev_timer root_retry, server_renew;
    /* reloads: root files (both NULL for the Secret or a root in memory) or the Secret */
    char *root_cert_path, *root_key_path;
    struct stat cert_st, key_st; /* the root files when last looked at */
    char *seen_cert, *seen_key;  /* the root texts last looked at (loaded or refused) */
    int secret_gone;             /* the Secret's 404 was logged */
    ev_timer root_resync;        /* every --mesh-root-resync seconds once a root is loaded */
    double backoff;
    /* the ConfigMap */
    char ns[256];
    int leading, cm_done, cm_created;
    struct kube_request *cm_req;
    ev_timer cm_retry;
    struct meshid_pending *waiting; /* TokenReviews in flight */
    void (*on_bundle)(void *arg);   /* meshid_on_bundle */
    void *on_bundle_arg;
};

static struct meshid_metrics mm;

void meshid_metrics(struct meshid_metrics *out)
{
    *out = mm;
}

void meshid_default_server_names(char *buf, size_t n)
{
    char ns[256], path[600];
    const char *dir = getenv("STRAIT_SERVICEACCOUNT_DIR");
    FILE *f;
    size_t len = 0;

    snprintf(path, sizeof(path), "%s/namespace",
             dir && *dir ? dir : "/var/run/secrets/kubernetes.io/serviceaccount");
    ns[0] = '\0';
    if ((f = fopen(path, "r"))) {
        len = fread(ns, 1, sizeof(ns) - 1, f);
        fclose(f);
    }
    ns[len] = '\0';
    ns[strcspn(ns, " \t\r\n")] = '\0';
    if (!kube_decode_dns_label(ns, strlen(ns))) snprintf(ns, sizeof(ns), "strait-system");
    snprintf(buf, n, "strait-controller,strait-controller.%s.svc,localhost", ns);
}

/* ---- small helpers ---- */

static char *gen_take(yajl_gen g)
{
    const unsigned char *buf;
    size_t len;
    char *out = NULL;

    if (yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok && (out = malloc(len + 2))) {
        memcpy(out, buf, len);
        out[len] = '\n';
        out[len + 1] = '\0';
    }
    yajl_gen_free(g);
    return out;
}

/* The whole file at path (malloc'd, NUL-terminated), or NULL with err. */
static char *read_file(const char *path, char *err, size_t errlen)
{
    return readfile_all(path, MESHID_FILE_MAX, err, errlen);
}

/* Writes text to path atomically (a temporary file renamed over it) with mode. 0, or -1. */
static int write_atomic(const char *path, const char *text, mode_t mode, char *err, size_t errlen)
{
    char tmp[4200];
    size_t len = strlen(text);
    int fd;

    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)) < 0) goto fail;
    if (write(fd, text, len) != (ssize_t)len || fsync(fd) < 0) {
        close(fd);
        unlink(tmp);
        goto fail;
    }
    if (close(fd) < 0 || rename(tmp, path) < 0) {
        unlink(tmp);
        goto fail;
    }
    return 0;
fail:
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -1;
}

/* Creates path with text and mode 0600 unless it exists (never replaced). 0, 1 exists, -1. */
static int write_new(const char *path, const char *text, char *err, size_t errlen)
{
    char tmp[4200];
    size_t len = strlen(text);
    int fd, rc;

    snprintf(tmp, sizeof(tmp), "%s.new.%d", path, (int)getpid());
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) goto fail;
    if (write(fd, text, len) != (ssize_t)len || fsync(fd) < 0 || close(fd) < 0) {
        unlink(tmp);
        goto fail;
    }
    rc = link(tmp, path); /* fails if it exists: whoever linked first won */
    unlink(tmp);
    if (rc == 0) return 0;
    if (errno == EEXIST) return 1;
fail:
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -1;
}

/* ---- tokens (file mode) ---- */

static void tokens_free(struct meshid_tokens *t)
{
    size_t i;

    for (i = 0; i < t->n; i++) {
        if (t->v[i].token) OPENSSL_cleanse(t->v[i].token, strlen(t->v[i].token));
        free(t->v[i].token);
        free(t->v[i].ns);
        free(t->v[i].sa);
    }
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

/*
 * Parses a token map: one "token namespace serviceaccount" per line (spaces or tabs between),
 * '#' starts a comment, blank lines are skipped; namespace and account must be valid names.
 * Returns 0 with out filled, or -1 with err ("line N: ...", never the token).
 */
static int tokens_parse(const char *text, struct meshid_tokens *out, char *err, size_t errlen)
{
    struct meshid_tokens t = {0};
    const char *p = text, *e;
    char line[4096], *f[4], *save, id[MESHCA_ID_MAX], why[200];
    unsigned no = 0;
    size_t nf, cap = 0;

    while (*p) {
        e = p + strcspn(p, "\n");
        no++;
        if ((size_t)(e - p) >= sizeof(line)) {
            snprintf(err, errlen, "line %u: longer than %zu bytes", no, sizeof(line) - 1);
            goto fail;
        }
        memcpy(line, p, (size_t)(e - p));
        line[e - p] = '\0';
        p = *e ? e + 1 : e;
        line[strcspn(line, "#")] = '\0';
        for (nf = 0, save = NULL; nf < 4 && (f[nf] = strtok_r(nf ? NULL : line, " \t\r", &save));)
            nf++;
        if (nf == 0) continue;
        if (nf != 3) {
            snprintf(err, errlen, "line %u: want \"token namespace serviceaccount\"", no);
            goto fail;
        }
        if (meshca_identity(MESHID_DEFAULT_TD, f[1], f[2], id, sizeof(id), why, sizeof(why))) {
            snprintf(err, errlen, "line %u: %s", no, why);
            goto fail;
        }
        if (t.n == cap) {
            struct meshid_token *v = realloc(t.v, (cap = cap ? cap * 2 : 8) * sizeof(*v));
            if (!v) goto oom;
            t.v = v;
        }
        t.v[t.n].token = strdup(f[0]);
        t.v[t.n].ns = strdup(f[1]);
        t.v[t.n].sa = strdup(f[2]);
        t.n++;
        if (!t.v[t.n - 1].token || !t.v[t.n - 1].ns || !t.v[t.n - 1].sa) goto oom;
    }
    OPENSSL_cleanse(line, sizeof(line));
    *out = t;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    OPENSSL_cleanse(line, sizeof(line));
    tokens_free(&t);
    return -1;
}

/* The entry for token (compared in constant time per entry), or NULL. */
static const struct meshid_token *tokens_find(const struct meshid_tokens *t, const char *token)
{
    const struct meshid_token *hit = NULL;
    size_t i, n = strlen(token);

    for (i = 0; i < t->n; i++)
        if (strlen(t->v[i].token) == n && !CRYPTO_memcmp(t->v[i].token, token, n)) hit = &t->v[i];
    return hit;
}

/* Re-reads the token file when it changed (inode, size or mtime). 0, or -1 with err. */
static int tokens_refresh(struct meshid *m, int first, char *err, size_t errlen)
{
    struct meshid_tokens t;
    struct stat st;
    char *text, why[300];

    if (stat(m->token_file, &st) < 0) {
        snprintf(err, errlen, "%s: %s", m->token_file, strerror(errno));
        return -1;
    }
    if (!first && readfile_stat_same(&st, &m->token_st)) return 0;
    if (!(text = read_file(m->token_file, err, errlen))) return -1;
    if (tokens_parse(text, &t, why, sizeof(why))) {
        snprintf(err, errlen, "%s: %s", m->token_file, why);
        OPENSSL_cleanse(text, strlen(text));
        free(text);
        return -1;
    }
    OPENSSL_cleanse(text, strlen(text));
    free(text);
    tokens_free(&m->tokens);
    m->tokens = t;
    m->token_st = st;
    log_info("mesh_tokens_loaded", "file=%s tokens=%zu", m->token_file, t.n);
    return 0;
}

/* ---- the root and what depends on it ---- */

/* Issues the server certificate from ca and serves with it. 0, or -1 with err. */
static int server_cert(struct meshid *m, struct meshca *ca, char *err, size_t errlen)
{
    char *cert = NULL, *key = NULL;
    int rc;

    if (meshca_sign_server(ca, (const char *const *)m->names, m->n_names, m->ips, m->n_ips,
                           MESHID_SERVER_TTL, time(NULL), &cert, &key, err, errlen))
        return -1;
    rc = meshsrv_set_cert(m->srv, cert, key, err, errlen);
    free(cert);
    OPENSSL_cleanse(key, strlen(key));
    free(key);
    return rc;
}

static void server_renew_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct meshid *m = container_of(t, struct meshid, server_renew);
    char err[300], q[400];

    (void)loop;
    (void)revents;
    if (m->magic != MESHID_MAGIC) abort();
    if (m->ca && server_cert(m, m->ca, err, sizeof(err)))
        log_error("mesh_server_cert_failed", "reason=%s", log_quote(q, sizeof(q), err));
}

static void cm_sync(struct meshid *m);

/* Remembers cert and key (copies) as the root texts last looked at. */
static void seen_set(struct meshid *m, const char *cert, const char *key)
{
    free(m->seen_cert);
    if (m->seen_key) OPENSSL_cleanse(m->seen_key, strlen(m->seen_key));
    free(m->seen_key);
    m->seen_cert = strdup(cert);
    m->seen_key = strdup(key); /* out of memory: looked at again next time */
}

static int seen_same(const struct meshid *m, const char *cert, const char *key)
{
    return m->seen_cert && m->seen_key && !strcmp(m->seen_cert, cert) && !strcmp(m->seen_key, key);
}

static int count_certs(const char *pem)
{
    int n = 0;

    while ((pem = strstr(pem, "-----BEGIN CERTIFICATE-----"))) {
        n++;
        pem++;
    }
    return n;
}

/*
 * The root ca is there (the first one, or a changed one replacing m->ca): serve with it,
 * publish the bundle everywhere it goes, then free the previous CA, which nothing else points
 * to.
 */
static void root_ready(struct meshid *m, struct meshca *ca, const char *source)
{
    struct meshca *old = m->ca;
    char err[300], q[400];

    m->ca = ca;
    mm.root_not_after = meshca_not_after(ca);
    /* the server's certificate is a leaf of the signing root: new signer, new certificate */
    if (!old || strcmp(meshca_cert_pem(old), meshca_cert_pem(ca))) {
        if (server_cert(m, ca, err, sizeof(err)))
            log_error("mesh_server_cert_failed", "reason=%s", log_quote(q, sizeof(q), err));
        ev_timer_again(m->loop, &m->server_renew);
    }
    /* sidecars' workload leaves authenticate them to the discovery feed (meshfeed.c) */
    if (meshsrv_set_client_ca(m->srv, meshca_bundle_pem(ca), err, sizeof(err)))
        log_error("mesh_client_ca_failed", "reason=%s", log_quote(q, sizeof(q), err));
    if (old) {
        mm.root_reloads++;
        log_info("mesh_root_reloaded", "source=%s roots=%d not_after=%lld signer_changed=%s",
                 source, count_certs(meshca_bundle_pem(ca)), (long long)mm.root_not_after,
                 strcmp(meshca_cert_pem(old), meshca_cert_pem(ca)) ? "yes" : "no");
    } else {
        log_info("mesh_root_ready", "source=%s not_after=%lld trust_domain=%s", source,
                 (long long)mm.root_not_after, m->td);
    }
    if (m->bundle_out) {
        if (write_atomic(m->bundle_out, meshca_bundle_pem(ca), 0644, err, sizeof(err)))
            log_error("mesh_trust_bundle_failed", "reason=%s", log_quote(q, sizeof(q), err));
        else
            log_info("mesh_trust_bundle_written", "file=%s", m->bundle_out);
    }
    if (old) { /* a write in flight carries the old bundle: write again */
        kube_client_cancel(m->cm_req);
        m->cm_req = NULL;
        ev_timer_stop(m->loop, &m->cm_retry);
        m->cm_done = 0;
    }
    cm_sync(m);
    if (m->on_bundle) m->on_bundle(m->on_bundle_arg);
    meshca_free(old);
    if ((m->root_cert_path || (m->client && m->secret_name[0])) && !ev_is_active(&m->root_resync))
        ev_timer_again(m->loop, &m->root_resync);
}

/* A changed root that does not load (from source): counted, logged, the current one stays. */
static void root_reload_failed(const char *source, const char *why)
{
    char q[400];

    mm.root_reload_failures++;
    log_error("mesh_root_reload_failed", "source=%s reason=%s keeping=current_root", source,
              log_quote(q, sizeof(q), why));
}

/*
 * cert and key: the root's texts as found now at source. Nothing when they are the texts
 * last looked at; else loaded and swapped in, or refused (once per change).
 */
static void root_reload(struct meshid *m, const char *cert, const char *key, const char *source)
{
    struct meshca *ca;
    char err[300];

    if (seen_same(m, cert, key)) return;
    seen_set(m, cert, key);
    if (!(ca = meshca_load(m->td, cert, key, time(NULL), err, sizeof(err)))) {
        root_reload_failed(source, err);
        return;
    }
    if (!strcmp(meshca_bundle_pem(ca), meshca_bundle_pem(m->ca))) { /* re-encoded, same roots */
        meshca_free(ca);
        return;
    }
    root_ready(m, ca, source);
}

/* File mode: reads the root files again when either changed (inode, size or mtime). */
static void root_files_check(struct meshid *m)
{
    struct stat cst, kst;
    char err[300], *cert = NULL, *key = NULL;

    if (stat(m->root_cert_path, &cst) < 0) memset(&cst, 0, sizeof(cst));
    if (stat(m->root_key_path, &kst) < 0) memset(&kst, 0, sizeof(kst));
    if (readfile_stat_same(&cst, &m->cert_st) && readfile_stat_same(&kst, &m->key_st)) return;
    m->cert_st = cst;
    m->key_st = kst;
    if (!(cert = read_file(m->root_cert_path, err, sizeof(err))) ||
        !(key = read_file(m->root_key_path, err, sizeof(err))))
        root_reload_failed(m->root_cert_path, err);
    else
        root_reload(m, cert, key, m->root_cert_path);
    free(cert);
    if (key) OPENSSL_cleanse(key, strlen(key));
    free(key);
}

static void root_fetch(struct meshid *m);

static void root_resync_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct meshid *m = container_of(t, struct meshid, root_resync);

    (void)loop;
    (void)revents;
    if (m->magic != MESHID_MAGIC) abort();
    if (m->root_cert_path)
        root_files_check(m);
    else if (!m->root_req && !ev_is_active(&m->root_retry))
        root_fetch(m);
}

/*
 * File mode's root from cert_path + key_path: loaded when both exist, generated and written
 * (0600, never over an existing file) when neither does. NULL with err.
 */
static struct meshca *root_from_files(struct meshid *m, const char *cert_path, const char *key_path,
                                      char *err, size_t errlen)
{
    struct meshca *ca;
    char *cert, *key, why[300];
    int have_c = access(cert_path, F_OK) == 0, have_k = access(key_path, F_OK) == 0, rc;

    if (!have_c && !have_k) {
        if (!(ca = meshca_generate(m->td, MESHID_ROOT_DAYS, time(NULL), err, errlen))) return NULL;
        if ((rc = write_new(key_path, meshca_key_pem(ca), err, errlen)) == 0)
            rc = write_new(cert_path, meshca_cert_pem(ca), err, errlen);
        if (rc < 0) {
            meshca_free(ca);
            return NULL;
        }
        if (rc == 0) {
            log_info("mesh_root_generated", "cert=%s key=%s", cert_path, key_path);
            seen_set(m, meshca_cert_pem(ca), meshca_key_pem(ca));
            return ca;
        }
        meshca_free(ca); /* another process wrote them first: use its */
    } else if (!have_c || !have_k) {
        snprintf(err, errlen,
                 "%s is missing (give both the root certificate and its key, or "
                 "neither to have them generated)",
                 have_c ? key_path : cert_path);
        return NULL;
    }
    if (!(cert = read_file(cert_path, err, errlen))) return NULL;
    if (!(key = read_file(key_path, err, errlen))) {
        free(cert);
        return NULL;
    }
    ca = meshca_load(m->td, cert, key, time(NULL), why, sizeof(why));
    if (!ca)
        snprintf(err, errlen, "%s: %s", cert_path, why);
    else
        seen_set(m, cert, key);
    free(cert);
    OPENSSL_cleanse(key, strlen(key));
    free(key);
    return ca;
}

/* ---- cluster mode: the root Secret ---- */

static void root_retry_later(struct meshid *m, const char *what, const struct kube_response *r)
{
    char q[400];

    log_warn("mesh_root_retry", "step=%s status=%ld reason=%s retry_in=%.0f", what, r->status,
             log_quote(q, sizeof(q), r->body_len ? r->body : r->error), m->backoff);
    ev_timer_set(&m->root_retry, m->backoff, 0.);
    ev_timer_start(m->loop, &m->root_retry);
    m->backoff = m->backoff * 2 > MESHID_RETRY_MAX ? MESHID_RETRY_MAX : m->backoff * 2;
}

static void root_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct meshid *m = container_of(t, struct meshid, root_retry);

    (void)loop;
    (void)revents;
    if (m->magic != MESHID_MAGIC) abort();
    root_fetch(m);
}

/* data[key] of a Secret, base64-decoded (malloc'd), or NULL. */
static char *secret_value(const struct kobj *doc, const char *key)
{
    const char *b64 = kobj_str(doc, "data", key);
    char *out;
    long n;

    if (!b64 || !(out = malloc(strlen(b64) / 4 * 3 + 4))) return NULL;
    if ((n = kube_decode_base64(b64, (unsigned char *)out)) < 0) {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    return out;
}

char *meshid_base64(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(4 * ((n + 2) / 3) + 1);

    if (out) EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    return out;
}

static void root_created(void *arg, const struct kube_response *r);

/*
 * The Secret read again while a root is loaded: a changed one is reloaded; a missing one
 * keeps the current root (never re-created: only a first start creates it).
 */
static void root_regot(struct meshid *m, const struct kube_response *r)
{
    struct kobj_docs docs = {0};
    char err[300], q[400], src[700], *cert = NULL, *key = NULL;

    if (r->status == 404) {
        if (!m->secret_gone)
            log_warn("mesh_root_secret_missing",
                     "secret=%s/%s reason=\"the Secret is gone: the current root stays and the "
                     "Secret is not re-created\"",
                     m->secret_ns, m->secret_name);
        m->secret_gone = 1;
        return;
    }
    if (r->status != 200) {
        log_warn("mesh_root_recheck_failed", "status=%ld reason=%s retry_in=%.0f", r->status,
                 log_quote(q, sizeof(q), r->body_len ? r->body : r->error), m->root_resync.repeat);
        return;
    }
    m->secret_gone = 0;
    snprintf(src, sizeof(src), "secret:%s/%s", m->secret_ns, m->secret_name);
    if (!kobj_parse_json(r->body, r->body_len, &docs, err, sizeof(err)) && docs.n == 1) {
        cert = secret_value(docs.docs[0], "ca.crt");
        key = secret_value(docs.docs[0], "ca.key");
    }
    if (cert && key) {
        root_reload(m, cert, key, src);
    } else if (!seen_same(m, cert ? cert : "", key ? key : "")) {
        seen_set(m, cert ? cert : "", key ? key : "");
        root_reload_failed(src, "no base64 ca.crt and ca.key");
    }
    free(cert);
    if (key) OPENSSL_cleanse(key, strlen(key));
    free(key);
    kobj_docs_free(&docs);
}

/* The Secret's answer: load it, or (404) generate a root and create the Secret. */
static void root_got(void *arg, const struct kube_response *r)
{
    struct meshid *m = arg;
    struct kobj_docs docs = {0};
    char err[300], q[400], path[700], *cert = NULL, *key = NULL, *body = NULL, *bc, *bk;
    struct meshca *ca;
    yajl_gen g;

    m->root_req = NULL;
    if (m->ca) {
        root_regot(m, r);
        return;
    }
    if (r->status == 404) {
        if (!m->pending && !(m->pending = meshca_generate(m->td, MESHID_ROOT_DAYS, time(NULL), err,
                                                          sizeof(err)))) {
            log_error("mesh_root_failed", "reason=%s", log_quote(q, sizeof(q), err));
            root_retry_later(m, "generate", r);
            return;
        }
        bc = meshid_base64(meshca_cert_pem(m->pending));
        bk = meshid_base64(meshca_key_pem(m->pending));
        if (bc && bk && (g = yajl_gen_alloc(NULL))) {
            yajl_gen_map_open(g);
            jsongen_kv_str(g, "apiVersion", "v1");
            jsongen_kv_str(g, "kind", "Secret");
            jsongen_str(g, "metadata");
            yajl_gen_map_open(g);
            jsongen_kv_str(g, "name", m->secret_name);
            jsongen_kv_str(g, "namespace", m->secret_ns);
            yajl_gen_map_close(g);
            jsongen_kv_str(g, "type", "Opaque");
            jsongen_str(g, "data");
            yajl_gen_map_open(g);
            jsongen_kv_str(g, "ca.crt", bc);
            jsongen_kv_str(g, "ca.key", bk);
            yajl_gen_map_close(g);
            yajl_gen_map_close(g);
            body = gen_take(g);
        }
        if (bk) OPENSSL_cleanse(bk, strlen(bk));
        free(bc);
        free(bk);
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/secrets", m->secret_ns);
        if (!body || !(m->root_req = kube_client_request(m->client, "POST", path, NULL, body,
                                                         strlen(body), MESHID_API_TIMEOUT,
                                                         root_created, m, err, sizeof(err))))
            root_retry_later(m, "create", r);
        if (body) OPENSSL_cleanse(body, strlen(body));
        free(body);
        return;
    }
    if (r->status != 200) {
        root_retry_later(m, "get", r);
        return;
    }
    if (kobj_parse_json(r->body, r->body_len, &docs, err, sizeof(err)) || docs.n != 1 ||
        !(cert = secret_value(docs.docs[0], "ca.crt")) ||
        !(key = secret_value(docs.docs[0], "ca.key"))) {
        log_error("mesh_root_failed", "secret=%s/%s reason=\"no base64 ca.crt and ca.key\"",
                  m->secret_ns, m->secret_name);
        root_retry_later(m, "decode", r);
        goto out;
    }
    if (!(ca = meshca_load(m->td, cert, key, time(NULL), err, sizeof(err)))) {
        log_error("mesh_root_failed", "secret=%s/%s reason=%s", m->secret_ns, m->secret_name,
                  log_quote(q, sizeof(q), err));
        root_retry_later(m, "load", r);
        goto out;
    }
    meshca_free(m->pending); /* another replica's root won, or was there before */
    m->pending = NULL;
    seen_set(m, cert, key);
    snprintf(path, sizeof(path), "secret:%s/%s", m->secret_ns, m->secret_name);
    root_ready(m, ca, path);
out:
    free(cert);
    if (key) OPENSSL_cleanse(key, strlen(key));
    free(key);
    kobj_docs_free(&docs);
}

static void root_created(void *arg, const struct kube_response *r)
{
    struct meshid *m = arg;
    char path[700];
    struct meshca *ca;

    m->root_req = NULL;
    if (r->status == 201 || r->status == 200) {
        ca = m->pending;
        m->pending = NULL;
        log_info("mesh_root_generated", "secret=%s/%s", m->secret_ns, m->secret_name);
        seen_set(m, meshca_cert_pem(ca), meshca_key_pem(ca));
        snprintf(path, sizeof(path), "secret:%s/%s", m->secret_ns, m->secret_name);
        root_ready(m, ca, path);
        return;
    }
    if (r->status == 409) { /* another replica created it first: read the winner's */
        log_info("mesh_root_conflict", "secret=%s/%s", m->secret_ns, m->secret_name);
        root_fetch(m);
        return;
    }
    root_retry_later(m, "create", r);
}

static void root_fetch(struct meshid *m)
{
    char path[700], err[300];
    struct kube_response r = {0};

    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/secrets/%s", m->secret_ns, m->secret_name);
    if (!(m->root_req = kube_client_request(m->client, "GET", path, NULL, NULL, 0,
                                            MESHID_API_TIMEOUT, root_got, m, err, sizeof(err)))) {
        r.error = err;
        root_retry_later(m, "get", &r);
    }
}

/* ---- cluster mode: the trust bundle ConfigMap (leader only) ---- */

static void cm_done_cb(void *arg, const struct kube_response *r);

static void cm_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct meshid *m = container_of(t, struct meshid, cm_retry);

    (void)loop;
    (void)revents;
    if (m->magic != MESHID_MAGIC) abort();
    cm_sync(m);
}

/* POSTs the ConfigMap (create) or merge-PATCHes its data. */
static void cm_send(struct meshid *m, int create)
{
    char path[700], err[300];
    yajl_gen g = yajl_gen_alloc(NULL);
    char *body;

    if (!g) return;
    yajl_gen_map_open(g);
    if (create) {
        jsongen_kv_str(g, "apiVersion", "v1");
        jsongen_kv_str(g, "kind", "ConfigMap");
        jsongen_str(g, "metadata");
        yajl_gen_map_open(g);
        jsongen_kv_str(g, "name", MESHID_CONFIGMAP_NAME);
        jsongen_kv_str(g, "namespace", m->ns);
        yajl_gen_map_close(g);
    }
    jsongen_str(g, "data");
    yajl_gen_map_open(g);
    jsongen_kv_str(g, "ca.crt", meshca_bundle_pem(m->ca));
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
    if (!(body = gen_take(g))) return;
    m->cm_created = create;
    if (create)
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps", m->ns);
    else
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps/%s", m->ns,
                 MESHID_CONFIGMAP_NAME);
    m->cm_req = kube_client_request(
        m->client, create ? "POST" : "PATCH", path, create ? NULL : "application/merge-patch+json",
        body, strlen(body), MESHID_API_TIMEOUT, cm_done_cb, m, err, sizeof(err));
    free(body);
    if (!m->cm_req) {
        ev_timer_set(&m->cm_retry, MESHID_RETRY, 0.);
        ev_timer_start(m->loop, &m->cm_retry);
    }
}

static void cm_done_cb(void *arg, const struct kube_response *r)
{
    struct meshid *m = arg;
    char q[400];

    m->cm_req = NULL;
    if (r->status == 200 || r->status == 201) {
        m->cm_done = 1;
        log_info("mesh_trust_bundle_published", "configmap=%s/%s", m->ns, MESHID_CONFIGMAP_NAME);
        return;
    }
    if (!m->leading) return;
    if (r->status == 404 && !m->cm_created) return cm_send(m, 1);
    if (r->status == 409 && m->cm_created) return cm_send(m, 0);
    log_warn("mesh_trust_bundle_retry", "status=%ld reason=%s", r->status,
             log_quote(q, sizeof(q), r->body_len ? r->body : r->error));
    ev_timer_set(&m->cm_retry, MESHID_RETRY, 0.);
    ev_timer_start(m->loop, &m->cm_retry);
}

/* Writes the ConfigMap once per leadership, when there is a root and a client. */
static void cm_sync(struct meshid *m)
{
    if (!m->client || !m->ca || !m->leading || m->cm_done || m->cm_req ||
        ev_is_active(&m->cm_retry))
        return;
    cm_send(m, 0);
}

void meshid_set_leader(struct meshid *m, int leading)
{
    if (!m) return;
    m->leading = leading;
    if (!leading) {
        kube_client_cancel(m->cm_req);
        m->cm_req = NULL;
        ev_timer_stop(m->loop, &m->cm_retry);
        m->cm_done = 0;
        return;
    }
    cm_sync(m);
}

/* ---- the endpoint ---- */

static void answer(struct meshsrv_request *req, struct meshsrv_reply *out, int status,
                   const char *msg)
{
    if (out) {
        out->status = status;
        out->body = meshsrv_error_body(msg);
    } else {
        meshsrv_finish(req, status, NULL, meshsrv_error_body(msg));
    }
}

static void deny(struct meshsrv_request *req, struct meshsrv_reply *out, const char *reason)
{
    char q[400];

    mm.denied++;
    log_info("mesh_identity_denied", "peer=%s reason=%s", req->peer,
             log_quote(q, sizeof(q), reason));
    answer(req, out, 401, reason);
}

/*
 * Signs csr for (ns, sa) and answers: out for a synchronous answer, else meshsrv_finish.
 */
static void issue(struct meshid *m, struct meshsrv_request *req, struct meshsrv_reply *out,
                  const char *csr, const char *ns, const char *sa)
{
    char err[300], q[400], id[MESHCA_ID_MAX], when[40], *leaf = NULL, *body;
    time_t na = 0;
    struct tm tm;
    yajl_gen g;

    if (!m->ca) {
        answer(req, out, 503, "the mesh CA is not ready");
        return;
    }
    if (meshca_sign(m->ca, csr, ns, sa, m->ttl, time(NULL), &leaf, err, sizeof(err)) ||
        meshca_identity(m->td, ns, sa, id, sizeof(id), err, sizeof(err))) {
        mm.invalid++;
        free(leaf);
        log_info("mesh_identity_invalid", "peer=%s ns=%s sa=%s reason=%s", req->peer, ns, sa,
                 log_quote(q, sizeof(q), err));
        answer(req, out, 400, err);
        return;
    }
    (void)meshca_pem_not_after(leaf, &na);
    gmtime_r(&na, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    body = NULL;
    if ((g = yajl_gen_alloc(NULL))) {
        yajl_gen_map_open(g);
        jsongen_kv_str(g, "certificate", leaf);
        jsongen_kv_str(g, "trustBundle", meshca_bundle_pem(m->ca));
        jsongen_kv_str(g, "identity", id);
        jsongen_kv_str(g, "notAfter", when);
        yajl_gen_map_close(g);
        body = gen_take(g);
    }
    free(leaf);
    if (!body) {
        answer(req, out, 500, "out of memory");
        return;
    }
    mm.issued++;
    log_info("mesh_identity_issued", "peer=%s ns=%s sa=%s identity=%s not_after=%s", req->peer, ns,
             sa, id, when);
    if (out) {
        out->status = 200;
        out->body = body;
    } else {
        meshsrv_finish(req, 200, NULL, body);
    }
}

static void pending_free(struct meshid_pending *p)
{
    struct meshid *m = p->m;

    if (p->prev)
        p->prev->next = p->next;
    else
        m->waiting = p->next;
    if (p->next) p->next->prev = p->prev;
    free(p->csr);
    p->magic = 0;
    free(p);
}

/* The TokenReview's answer: who the token is, if anyone. */
static void review_done(void *arg, const struct kube_response *r)
{
    struct meshid_pending *p = arg;
    struct meshid *m = p->m;
    struct kobj_docs docs = {0};
    const struct kobj *st, *aud;
    const char *user, *e;
    char err[300], ns[256], sa[256], why[400];
    size_t i, nl;
    int aud_ok = 0;

    if (p->magic != MESHID_PEND_MAGIC) abort();
    p->kr = NULL;
    if (r->status != 201 && r->status != 200) {
        log_warn("mesh_token_review_failed", "status=%ld reason=%s", r->status,
                 log_quote(why, sizeof(why), r->body_len ? r->body : r->error));
        answer(p->req, NULL, 503, "the token could not be reviewed (Kubernetes API)");
        goto out;
    }
    if (kobj_parse_json(r->body, r->body_len, &docs, err, sizeof(err)) || docs.n != 1 ||
        !(st = kobj_get(docs.docs[0], "status"))) {
        answer(p->req, NULL, 503, "the TokenReview answer does not parse");
        goto out;
    }
    if (kobj_bool(kobj_get(st, "authenticated")) != 1) {
        e = kobj_str(st, "error");
        snprintf(why, sizeof(why), "token not authenticated%s%.300s", e ? ": " : "", e ? e : "");
        deny(p->req, NULL, why);
        goto out;
    }
    if ((aud = kobj_get(st, "audiences")) && aud->type == KOBJ_SEQ)
        for (i = 0; i < aud->n; i++)
            if (kobj_text(aud->items[i]) && !strcmp(kobj_text(aud->items[i]), MESHID_AUDIENCE))
                aud_ok = 1;
    if (!aud_ok) {
        deny(p->req, NULL, "token not for audience \"" MESHID_AUDIENCE "\"");
        goto out;
    }
    user = kobj_str(st, "user", "username");
    if (!user || strncmp(user, "system:serviceaccount:", 22) || !(e = strchr(user + 22, ':')) ||
        (nl = (size_t)(e - (user + 22))) >= sizeof(ns) || strlen(e + 1) >= sizeof(sa) ||
        strchr(e + 1, ':')) {
        deny(p->req, NULL, "token is not a ServiceAccount's");
        goto out;
    }
    memcpy(ns, user + 22, nl);
    ns[nl] = '\0';
    snprintf(sa, sizeof(sa), "%s", e + 1);
    issue(m, p->req, NULL, p->csr, ns, sa);
out:
    kobj_docs_free(&docs);
    pending_free(p);
}

/* Starts a TokenReview for token; the answer comes through review_done. */
static int review_start(struct meshid *m, struct meshsrv_request *req, const char *token,
                        const char *csr)
{
    struct meshid_pending *p = calloc(1, sizeof(*p));
    char err[300], q[400], *body = NULL;
    yajl_gen g = yajl_gen_alloc(NULL);

    if (!p || !g || !(p->csr = strdup(csr))) goto fail;
    yajl_gen_map_open(g);
    jsongen_kv_str(g, "apiVersion", "authentication.k8s.io/v1");
    jsongen_kv_str(g, "kind", "TokenReview");
    jsongen_str(g, "spec");
    yajl_gen_map_open(g);
    jsongen_kv_str(g, "token", token);
    jsongen_str(g, "audiences");
    yajl_gen_array_open(g);
    jsongen_str(g, MESHID_AUDIENCE);
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
    body = gen_take(g);
    g = NULL;
    if (!body) goto fail;
    p->magic = MESHID_PEND_MAGIC;
    p->m = m;
    p->req = req;
    if (!(p->kr = kube_client_request(
              m->client, "POST", "/apis/authentication.k8s.io/v1/tokenreviews", NULL, body,
              strlen(body), MESHID_REVIEW_TIMEOUT, review_done, p, err, sizeof(err)))) {
        log_warn("mesh_token_review_failed", "reason=%s", log_quote(q, sizeof(q), err));
        goto fail;
    }
    OPENSSL_cleanse(body, strlen(body));
    free(body);
    p->next = m->waiting;
    if (m->waiting) m->waiting->prev = p;
    m->waiting = p;
    return 0;
fail:
    if (g) yajl_gen_free(g);
    if (body) OPENSSL_cleanse(body, strlen(body));
    free(body);
    if (p) free(p->csr);
    free(p);
    return -1;
}

/* POST /v1/identity */
static int identity_handler(void *arg, struct meshsrv_request *req, struct meshsrv_reply *out)
{
    struct meshid *m = arg;
    struct kobj_docs docs = {0};
    const struct meshid_token *t;
    const char *auth = meshsrv_header(req, "Authorization"), *token, *csr;
    char err[300];
    int rc = 0;

    if (m->magic != MESHID_MAGIC) abort();
    if (!m->ca) {
        answer(req, out, 503, "the mesh CA is not ready");
        return 0;
    }
    if (!auth || strncasecmp(auth, "Bearer ", 7) || !*(token = auth + 7 + strspn(auth + 7, " "))) {
        deny(req, out, "missing bearer token");
        return 0;
    }
    if (kobj_parse_json(req->body, req->body_len, &docs, err, sizeof(err)) || docs.n != 1 ||
        docs.docs[0]->type != KOBJ_MAP || !(csr = kobj_str(docs.docs[0], "csr")) || !*csr) {
        mm.invalid++;
        log_info("mesh_identity_invalid", "peer=%s reason=\"body is not {\\\"csr\\\": PEM}\"",
                 req->peer);
        answer(req, out, 400, "the body must be a JSON object {\"csr\": \"<PEM>\"}");
        goto out;
    }
    if (m->token_file) {
        if (tokens_refresh(m, 0, err, sizeof(err)) < 0)
            log_error("mesh_tokens_failed", "reason=\"%s\" (the previous tokens stay)", err);
        if (!(t = tokens_find(&m->tokens, token))) {
            deny(req, out, "unknown token");
            goto out;
        }
        issue(m, req, out, csr, t->ns, t->sa);
        goto out;
    }
    if (review_start(m, req, token, csr) < 0) {
        answer(req, out, 503, "the token could not be reviewed");
        goto out;
    }
    rc = MESHSRV_ASYNC;
out:
    kobj_docs_free(&docs);
    return rc;
}

/* ---- setup ---- */

/* Splits the comma list of server names into m->names. 0, or -1 with err. */
static int parse_names(struct meshid *m, const char *list, char *err, size_t errlen)
{
    const char *p = list, *e;
    unsigned char ip[16];
    size_t i;

    while (*p) {
        e = p + strcspn(p, ",");
        if (e > p) {
            char *name;
            if (m->n_names + m->n_ips == MESHID_MAX_NAMES) {
                snprintf(err, errlen, "--mesh-server-names: more than %d names", MESHID_MAX_NAMES);
                return -1;
            }
            if (!(name = strndup(p, (size_t)(e - p)))) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            /* an address (the endpoint reached by IP) is an IP SAN, not a DNS name */
            if (inet_pton(strchr(name, ':') ? AF_INET6 : AF_INET, name, ip) == 1)
                m->ips[m->n_ips++] = name;
            else
                m->names[m->n_names++] = name;
        }
        p = *e ? e + 1 : e;
    }
    for (i = 0; i < 2; i++) {
        const char *lo = i ? "::1" : "127.0.0.1";
        size_t k;
        for (k = 0; k < m->n_ips && strcmp(m->ips[k], lo); k++)
            ;
        if (k == m->n_ips && !(m->ips[m->n_ips++] = strdup(lo))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    if (!m->n_names && m->n_ips <= 2) {
        snprintf(err, errlen, "--mesh-server-names: no name");
        return -1;
    }
    return 0;
}

struct meshid *meshid_start(struct ev_loop *loop, struct kube_client *client,
                            const struct meshid_opts *o, char *err, size_t errlen)
{
    struct meshid *m = calloc(1, sizeof(*m));
    struct sockaddr_storage ss;
    socklen_t sl;
    struct meshca *tmp = NULL, *ca = NULL;
    char names[1024], why[300], cpath[4096], kpath[4096], *cert = NULL, *key = NULL;
    const char *slash;

    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->magic = MESHID_MAGIC;
    m->loop = loop;
    m->client = client;
    m->backoff = MESHID_RETRY;
    ev_timer_init(&m->root_retry, root_retry_cb, MESHID_RETRY, 0.);
    ev_timer_init(&m->cm_retry, cm_retry_cb, MESHID_RETRY, 0.);
    ev_timer_init(&m->server_renew, server_renew_cb, 0., MESHID_SERVER_RENEW);
    ev_timer_init(&m->root_resync, root_resync_cb, 0.,
                  o->root_resync > 0 ? o->root_resync : MESHID_DEFAULT_RESYNC);
    snprintf(m->td, sizeof(m->td), "%s", o->trust_domain ? o->trust_domain : MESHID_DEFAULT_TD);
    snprintf(m->ns, sizeof(m->ns), "%s", o->ns ? o->ns : "default");
    m->ttl = o->leaf_ttl ? o->leaf_ttl : MESHID_DEFAULT_TTL;
    if (m->ttl < MESHCA_TTL_MIN || m->ttl > MESHCA_TTL_MAX) {
        snprintf(err, errlen, "--mesh-leaf-ttl: %u s is out of range (%d s to %d days)", m->ttl,
                 MESHCA_TTL_MIN, MESHCA_TTL_MAX / 86400);
        goto fail;
    }
    if (o->server_names)
        snprintf(names, sizeof(names), "%s", o->server_names);
    else
        meshid_default_server_names(names, sizeof(names));
    if (parse_names(m, names, err, errlen)) goto fail;
    if (netaddr_parse(o->listen ? o->listen : MESHID_DEFAULT_LISTEN, &ss, &sl, why, sizeof(why))) {
        snprintf(err, errlen, "--mesh-listen: %s", why);
        goto fail;
    }
    if (o->bundle_out && !(m->bundle_out = strdup(o->bundle_out))) goto oom;
    if (o->token_file) {
        if (!(m->token_file = strdup(o->token_file))) goto oom;
        if (tokens_refresh(m, 1, err, errlen)) goto fail;
    } else if (!client) {
        snprintf(err, errlen, "--mesh without a cluster needs --mesh-token-file");
        goto fail;
    }
    /* the root: files, or the Secret (cluster mode), or generated in memory */
    if (o->root_cert || o->root_dir) {
        snprintf(cpath, sizeof(cpath), o->root_cert ? "%s" : "%s/ca.crt",
                 o->root_cert ? o->root_cert : o->root_dir);
        snprintf(kpath, sizeof(kpath), o->root_cert ? "%s" : "%s/ca.key",
                 o->root_cert ? o->root_key : o->root_dir);
        if (!(m->root_cert_path = strdup(cpath)) || !(m->root_key_path = strdup(kpath))) goto oom;
        /* before reading: a change made meanwhile is seen at the first re-check */
        if (stat(cpath, &m->cert_st) < 0) memset(&m->cert_st, 0, sizeof(m->cert_st));
        if (stat(kpath, &m->key_st) < 0) memset(&m->key_st, 0, sizeof(m->key_st));
        if (!(ca = root_from_files(m, cpath, kpath, err, errlen))) goto fail;
    } else if (client) {
        if (o->root_secret) {
            if (!(slash = strchr(o->root_secret, '/')) || slash == o->root_secret ||
                !kube_decode_dns_name(slash + 1) ||
                (size_t)(slash - o->root_secret) >= sizeof(m->secret_ns) ||
                !kube_decode_dns_label(o->root_secret, (size_t)(slash - o->root_secret))) {
                snprintf(err, errlen, "--mesh-root-secret %s is not NAMESPACE/NAME",
                         o->root_secret);
                goto fail;
            }
            snprintf(m->secret_ns, sizeof(m->secret_ns), "%.*s", (int)(slash - o->root_secret),
                     o->root_secret);
            snprintf(m->secret_name, sizeof(m->secret_name), "%s", slash + 1);
        } else {
            snprintf(m->secret_ns, sizeof(m->secret_ns), "%s", m->ns);
            snprintf(m->secret_name, sizeof(m->secret_name), "%s", MESHID_SECRET_NAME);
        }
    } else {
        if (!(ca = meshca_generate(m->td, MESHID_ROOT_DAYS, time(NULL), err, errlen))) goto fail;
        log_warn("mesh_root_ephemeral",
                 "reason=\"no --mesh-root-file or --mesh-root-dir: a root generated in memory, "
                 "new at every start\"");
    }
    /* the server starts with a throwaway certificate until the root is there */
    if (!(tmp = meshca_generate(m->td, 1, time(NULL), err, errlen))) goto fail;
    if (meshca_sign_server(tmp, (const char *const *)m->names, m->n_names, m->ips, m->n_ips, 86400,
                           time(NULL), &cert, &key, err, errlen))
        goto fail;
    if (!(m->srv = meshsrv_start(loop, (struct sockaddr *)&ss, sl, cert, key, err, errlen)))
        goto fail;
    if (meshsrv_route(m->srv, "POST", "/v1/identity", identity_handler, m)) goto oom;
    mm.enabled = 1;
    if (ca) {
        root_ready(m, ca, o->root_cert || o->root_dir ? cpath : "memory");
        ca = NULL;
    } else {
        root_fetch(m);
    }
    goto done;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    meshca_free(ca);
    meshid_free(m);
    m = NULL;
done:
    meshca_free(tmp);
    free(cert);
    if (key) OPENSSL_cleanse(key, strlen(key));
    free(key);
    return m;
}

struct meshsrv *meshid_server(struct meshid *m)
{
    return m->srv;
}

const char *meshid_trust_bundle(const struct meshid *m)
{
    return m && m->ca ? meshca_bundle_pem(m->ca) : NULL;
}

void meshid_on_bundle(struct meshid *m, void (*fn)(void *arg), void *arg)
{
    m->on_bundle = fn;
    m->on_bundle_arg = arg;
}

void meshid_free(struct meshid *m)
{
    size_t i;

    if (!m) return;
    while (m->waiting) {
        struct meshid_pending *p = m->waiting;
        kube_client_cancel(p->kr);
        meshsrv_finish(p->req, 503, NULL, meshsrv_error_body("the controller is stopping"));
        pending_free(p);
    }
    kube_client_cancel(m->root_req);
    kube_client_cancel(m->cm_req);
    ev_timer_stop(m->loop, &m->root_retry);
    ev_timer_stop(m->loop, &m->cm_retry);
    ev_timer_stop(m->loop, &m->server_renew);
    ev_timer_stop(m->loop, &m->root_resync);
    meshsrv_stop(m->srv);
    for (i = 0; i < m->n_names; i++)
        free(m->names[i]);
    for (i = 0; i < m->n_ips; i++)
        free((char *)m->ips[i]);
    tokens_free(&m->tokens);
    free(m->token_file);
    free(m->bundle_out);
    free(m->root_cert_path);
    free(m->root_key_path);
    free(m->seen_cert);
    if (m->seen_key) OPENSSL_cleanse(m->seen_key, strlen(m->seen_key));
    free(m->seen_key);
    meshca_free(m->ca);
    meshca_free(m->pending);
    m->magic = 0;
    free(m);
    memset(&mm, 0, sizeof(mm));
}
