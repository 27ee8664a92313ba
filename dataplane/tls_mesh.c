/*
 * tls_mesh: the sidecar's workload identity (module side of tls_mesh.h).
 *
 * Does: one identity thread that makes an EC P-256 key in memory (never written anywhere), a
 * CSR for it (empty subject, no names: the controller decides the identity from the token),
 * and POSTs {"csr": PEM} to the controller's /v1/identity over TLS (the controller verified
 * against the trust anchors and the configured name, a 10 s budget for connect, handshake and
 * answer, all waits also woken by tls_mesh_stop), with the ServiceAccount token read from its
 * file at every request. An answer is installed only when the leaf carries our key, exactly
 * one URI SAN spiffe://<trust domain>/..., equal to the answer's "identity", and chains to
 * the trust set. The trust set is the configured anchors, plus the answer's trustBundle
 * certificates (CA ones) when that bundle contains one of the anchors itself: a bundle that
 * continues the configured trust may add the next root of a rotation, any other is ignored.
 * Installing builds a new server and a new client SSL_CTX (TLS 1.3 only, no tickets or
 * resumption, our leaf and key, the trust set as store, peers must present a leaf with exactly
 * one URI SAN in our trust domain; the server requires the peer certificate and selects ALPN
 * "strait-opaque" or "http/1.1") and swaps them under a mutex: sessions already made keep
 * their own context reference. Renewal at half the remaining lifetime (at least 5 s) with a
 * fresh key; failures retry with backoff 1 s, 2 s, ... up to retry_max while the installed
 * certificate stays in use; past its notAfter it is uninstalled (no identity: inbound mTLS
 * refused, tls_mesh_status 0).
 * Also: inbound transports from the current server context (tls_mesh_accept), the verified
 * peer (tls_mesh_peer), and outbound sessions for mesh clusters (tls_mesh_client_new, used by
 * tls_upstream.c) whose verify callback also requires the peer's URI to be one of the
 * cluster's identities.
 * Does not: choose which connections use mTLS (mesh.c), or check authorization policies.
 * Invariants: mesh.server/client/identity/not_after/trust change together under mesh.lock;
 * the thread is the only writer besides tls_mesh_stop (after the join); the URI prefix the
 * verify callback reads is static storage set before any context exists.
 */
#include "tls_mesh.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "jsongen.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"

#define REQUEST_BUDGET 10.0 /* seconds for one identity request, connect to last byte */
#define RESPONSE_MAX (1 << 20)
#define RENEW_MIN 5.0
#define URI_MAX 2048
#define TOKEN_MAX (64 * 1024)

static struct {
    pthread_mutex_t lock;
    /* the installed certificate (under lock); server NULL when there is none */
    SSL_CTX *server, *client;
    SSL_CTX *feed; /* client context to the controller with our certificate (discovery feed) */
    STACK_OF(X509) * trust;
    char identity[URI_MAX];
    double not_after;
    /* set by tls_mesh_start, read-only while the thread runs */
    int running;
    pthread_t thread;
    int wake[2]; /* tls_mesh_stop writes a byte: every wait of the thread polls wake[0] */
    atomic_int stop;
    char *addr, *name, *token_path, *trust_domain;
    STACK_OF(X509) * anchors;
    double retry_max;
} mesh = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = {-1, -1}};

/* "spiffe://<trust domain>/": every peer's URI starts with it (static: contexts may outlive
 * tls_mesh_stop, and their verify callback reads it) */
static char uri_prefix[320];

/* SSL ex_data of an outbound mesh session: the identities its cluster may run as */
struct allow {
    const char *cluster;
    uint32_t n;
    const char **ids;
};
static int allow_idx = -1;
static pthread_once_t allow_once = PTHREAD_ONCE_INIT;

static void allow_index_init(void)
{
    allow_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, tls_exdata_free);
}

static double mono_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * The URI SANs of x: returns how many there are; the first one into out when it fits (and is
 * printable ASCII), else out is "".
 */
static int uri_sans(X509 *x, char *out, size_t outlen)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int i, n = 0;

    out[0] = '\0';
    for (i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        const unsigned char *u;
        int len, k;
        if (g->type != GEN_URI) continue;
        if (n++ > 0) continue;
        u = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
        len = ASN1_STRING_length(g->d.uniformResourceIdentifier);
        if (len <= 0 || (size_t)len >= outlen) continue;
        for (k = 0; k < len && u[k] > 0x20 && u[k] < 0x7f; k++)
            ;
        if (k < len) continue;
        memcpy(out, u, (size_t)len);
        out[len] = '\0';
    }
    GENERAL_NAMES_free(sans);
    return n;
}

/* 1 when x is a workload leaf of our trust domain: exactly one URI SAN, under uri_prefix,
 * with something after it; its URI into uri. */
static int identity_of(X509 *x, char *uri, size_t len)
{
    size_t plen = strlen(uri_prefix);

    return uri_sans(x, uri, len) == 1 && plen > 0 && strncmp(uri, uri_prefix, plen) == 0 &&
           uri[plen] != '\0';
}

static int verify_cb(int ok, X509_STORE_CTX *xs)
{
    SSL *ssl;
    const struct allow *a;
    char uri[URI_MAX], q[URI_MAX + 8], qc[320];
    uint32_t i;

    if (!ok || X509_STORE_CTX_get_error_depth(xs) != 0) return ok;
    ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    if (!identity_of(X509_STORE_CTX_get_current_cert(xs), uri, sizeof(uri))) {
        log_info("mesh_peer_refused", "uri=%s reason=\"not one identity of trust domain\"",
                 log_quote(q, sizeof(q), uri));
        X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    a = ssl && allow_idx >= 0 ? SSL_get_ex_data(ssl, allow_idx) : NULL;
    if (!a) return 1; /* inbound: any identity of the trust domain */
    for (i = 0; i < a->n; i++)
        if (strcmp(a->ids[i], uri) == 0) return 1;
    log_warn("mesh_peer_refused", "uri=%s cluster=%s reason=\"not an identity of the cluster\"",
             log_quote(q, sizeof(q), uri), log_quote(qc, sizeof(qc), a->cluster));
    X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
}

/* Server ALPN: the client's first protocol that is one of ours; none: no ALPN at all. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    unsigned int i, n;

    (void)ssl;
    (void)arg;
    for (i = 0; i < inlen; i += 1 + n) {
        n = in[i];
        if (i + 1 + n > inlen) break;
        if ((n == strlen(TLS_MESH_ALPN_OPAQUE) &&
             memcmp(in + i + 1, TLS_MESH_ALPN_OPAQUE, n) == 0) ||
            (n == strlen(TLS_MESH_ALPN_HTTP) && memcmp(in + i + 1, TLS_MESH_ALPN_HTTP, n) == 0)) {
            *out = in + i + 1;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* A mesh context (server or client) for leaf (+ chain) and key, trusting trust; NULL on error. */
static SSL_CTX *mesh_ctx(int server, X509 *leaf, STACK_OF(X509) * chain, EVP_PKEY *key,
                         STACK_OF(X509) * trust)
{
    static const unsigned char sid[] = "strait-mesh";
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    X509_STORE *st;
    int i;

    if (!ctx) return NULL;
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION))
        goto fail;
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_NO_AUTO_CHAIN);
    if (!SSL_CTX_set1_groups_list(ctx, "X25519:P-256")) goto fail;
    if (SSL_CTX_use_certificate(ctx, leaf) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    for (i = 0; chain && i < sk_X509_num(chain); i++)
        if (!SSL_CTX_add1_chain_cert(ctx, sk_X509_value(chain, i))) goto fail;
    st = SSL_CTX_get_cert_store(ctx);
    for (i = 0; i < sk_X509_num(trust); i++)
        if (!X509_STORE_add_cert(st, sk_X509_value(trust, i))) goto fail;
    if (server) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
        SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
        if (!SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1)) goto fail;
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* ---- PEM helpers ---- */

/* The certificates of a PEM text (NULL: none or out of memory). */
static STACK_OF(X509) * pem_certs(const char *pem)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    BIO *b = pem ? BIO_new_mem_buf(pem, -1) : NULL;
    X509 *x;

    if (!sk || !b) goto fail;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)))
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            goto fail;
        }
    ERR_clear_error(); /* the end of the text */
    BIO_free(b);
    if (sk_X509_num(sk) > 0) return sk;
    sk_X509_free(sk);
    return NULL;
fail:
    BIO_free(b);
    sk_X509_pop_free(sk, X509_free);
    ERR_clear_error();
    return NULL;
}

static int certs_contain(STACK_OF(X509) * sk, X509 *x)
{
    for (int i = 0; i < sk_X509_num(sk); i++)
        if (X509_cmp(sk_X509_value(sk, i), x) == 0) return 1;
    return 0;
}

/* ---- the identity request ---- */

/* What one successful request produced, ready to install. */
struct issued {
    SSL_CTX *server, *client, *feed;
    STACK_OF(X509) * trust;
    char identity[URI_MAX];
    double not_after;
};

static void issued_free(struct issued *is)
{
    SSL_CTX_free(is->server);
    SSL_CTX_free(is->client);
    SSL_CTX_free(is->feed);
    sk_X509_pop_free(is->trust, X509_free);
    memset(is, 0, sizeof(*is));
}

static int stopping(void)
{
    return atomic_load(&mesh.stop);
}

/*
 * Waits until fd is ready for events, the deadline (monotonic) passes, tls_mesh_stop, or intr
 * (a descriptor, -1 for none) becomes readable. 0 when ready, -2 for intr, -1 with why.
 */
static int wait_intr(int fd, short events, double deadline, int intr, char *why, size_t len)
{
    for (;;) {
        struct pollfd p[3] = {{.fd = fd, .events = events},
                              {.fd = mesh.wake[0], .events = POLLIN},
                              {.fd = intr, .events = POLLIN}};
        double left = deadline - mono_now();
        int rc;

        if (stopping()) {
            snprintf(why, len, "stopping");
            return -1;
        }
        if (left <= 0) {
            snprintf(why, len, "timed out");
            return -1;
        }
        rc = poll(p, intr >= 0 ? 3 : 2, (int)ceil(left * 1000));
        if (rc < 0 && errno == EINTR) continue;
        if (rc < 0) {
            snprintf(why, len, "poll: %s", strerror(errno));
            return -1;
        }
        if (intr >= 0 && p[2].revents) {
            snprintf(why, len, "interrupted");
            return -2;
        }
        if (p[0].revents) return 0;
    }
}

/* "host:port" or "[v6]:port" into host and port; 0 or -1. */
static int split_addr(const char *addr, char *host, size_t hlen, char *port, size_t plen)
{
    const char *colon;
    size_t n;

    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (!end || end[1] != ':') return -1;
        n = (size_t)(end - addr - 1);
        colon = end + 1;
        addr++;
    } else {
        if (!(colon = strrchr(addr, ':'))) return -1;
        n = (size_t)(colon - addr);
    }
    if (n == 0 || n >= hlen || strlen(colon + 1) == 0 || strlen(colon + 1) >= plen) return -1;
    memcpy(host, addr, n);
    host[n] = '\0';
    snprintf(port, plen, "%s", colon + 1);
    return 0;
}

/* A non-blocking TCP socket connected to the identity endpoint; -1 with why (-2: intr). */
static int tcp_connect(double deadline, int intr, char *why, size_t len)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL, *ai;
    char host[256], port[16];
    int fd = -1, rc, soerr;
    socklen_t sl;

    if (split_addr(mesh.addr, host, sizeof(host), port, sizeof(port)) < 0) {
        snprintf(why, len, "bad address %s", mesh.addr);
        return -1;
    }
    if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
        snprintf(why, len, "resolving %s: %s", host, gai_strerror(rc));
        return -1;
    }
    snprintf(why, len, "connect %s: no address", mesh.addr);
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        if (errno == EINPROGRESS) {
            if ((rc = wait_intr(fd, POLLOUT, deadline, intr, why, len)) < 0) {
                close(fd);
                fd = rc; /* timeout, stop or intr: the budget is spent */
                break;
            }
            sl = sizeof(soerr);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) break;
            errno = soerr;
        }
        snprintf(why, len, "connect %s: %s", mesh.addr, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* Why ssl's last call failed (verification, OpenSSL's reason, errno). */
static void ssl_reason(SSL *ssl, int rc, const char *what, char *why, size_t len)
{
    long vr = SSL_get_verify_result(ssl);
    unsigned long e = ERR_peek_last_error();
    int se = SSL_get_error(ssl, rc);

    if (vr != X509_V_OK)
        snprintf(why, len, "%s: controller certificate: %s", what,
                 X509_verify_cert_error_string(vr));
    else if (e)
        snprintf(why, len, "%s: %s", what, ERR_reason_error_string(e));
    else if (se == SSL_ERROR_ZERO_RETURN || (se == SSL_ERROR_SYSCALL && errno == 0))
        snprintf(why, len, "%s: connection closed", what);
    else
        snprintf(why, len, "%s: %s", what, strerror(errno));
    ERR_clear_error();
}

/*
 * After an SSL call returned rc <= 0: waits for what it wants (0: call it again), or -1
 * (-2: intr became readable).
 */
static int ssl_again(SSL *ssl, int rc, double deadline, int intr, const char *what, char *why,
                     size_t len)
{
    switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return wait_intr(SSL_get_fd(ssl), POLLIN, deadline, intr, why, len);
    case SSL_ERROR_WANT_WRITE:
        return wait_intr(SSL_get_fd(ssl), POLLOUT, deadline, intr, why, len);
    default:
        ssl_reason(ssl, rc, what, why, len);
        return -1;
    }
}

/* A client context for the identity endpoint: TLS 1.2+, peers verified against trust. */
static SSL_CTX *endpoint_ctx(STACK_OF(X509) * trust)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (!ctx) return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    for (int i = 0; i < sk_X509_num(trust); i++)
        if (!X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), sk_X509_value(trust, i))) {
            SSL_CTX_free(ctx);
            return NULL;
        }
    return ctx;
}

/* The client context to the controller for the discovery feed: endpoint_ctx with our leaf. */
static SSL_CTX *feed_ctx(X509 *leaf, STACK_OF(X509) * chain, EVP_PKEY *key, STACK_OF(X509) * trust)
{
    SSL_CTX *ctx = endpoint_ctx(trust);
    int i;

    if (!ctx) return NULL;
    if (SSL_CTX_use_certificate(ctx, leaf) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1) goto fail;
    for (i = 0; chain && i < sk_X509_num(chain); i++)
        if (!SSL_CTX_add1_chain_cert(ctx, sk_X509_value(chain, i))) goto fail;
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/*
 * Decodes a chunked body in place (p[0..n)); returns the decoded length, -2 when incomplete
 * (p untouched), -1 when malformed. Chunk extensions and trailers are ignored.
 */
static long dechunk(char *p, size_t n)
{
    for (int move = 0; move < 2; move++) { /* check it is all there first, then move */
        size_t src = 0, dst = 0;
        for (;;) {
            char *end, *eol = memmem(p + src, n - src, "\r\n", 2);
            unsigned long size;
            if (!eol) return -2;
            size = strtoul(p + src, &end, 16);
            if (end == p + src) return -1;
            src = (size_t)(eol - p) + 2;
            if (size == 0) {
                if (move) return (long)dst;
                break;
            }
            if (size > n || src + size + 2 > n) return -2;
            if (move) memmove(p + dst, p + src, size);
            dst += size;
            src += size + 2;
        }
    }
    return -1; /* not reached */
}

/*
 * Whether buf[0..n) holds a whole response (eof: the peer closed); on 1 *status, *body and
 * *blen are set (a chunked body is decoded in place) and, when hname is not NULL, the value
 * of header hname (trimmed, cut to hvlen) into hval ("" when absent). 0: read more; -1:
 * malformed.
 */
static int http_response(char *buf, size_t n, int eof, int *status, char **body, size_t *blen,
                         const char *hname, char *hval, size_t hvlen)
{
    size_t hnl = hname ? strlen(hname) : 0;

    char *hend = memmem(buf, n, "\r\n\r\n", 4), *line;
    long clen = -1, d;
    int chunked = 0;
    size_t hlen;

    if (!hend) return eof ? -1 : 0;
    if (hname && hvlen) hval[0] = '\0';
    hlen = (size_t)(hend - buf) + 4;
    if (n < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || sscanf(buf + 9, "%3d", status) != 1) return -1;
    /* header lines: from after the status line to hend, each ending in CRLF */
    for (line = memchr(buf, '\n', (size_t)(hend - buf)); line && line < hend;) {
        char *eol;
        size_t ll;
        line++;
        eol = memmem(line, (size_t)(hend + 2 - line), "\r\n", 2);
        ll = (size_t)(eol - line);
        if (ll >= 15 && strncasecmp(line, "content-length:", 15) == 0)
            clen = strtol(line + 15, NULL, 10);
        if (ll >= 18 && strncasecmp(line, "transfer-encoding:", 18) == 0 &&
            memmem(line, ll, "chunked", 7))
            chunked = 1;
        if (hnl && ll > hnl && line[hnl] == ':' && strncasecmp(line, hname, hnl) == 0) {
            const char *v = line + hnl + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            snprintf(hval, hvlen, "%.*s", (int)(ve - v), v);
        }
        line = eol + 1;
    }
    hlen = (size_t)(hend - buf) + 4;
    *body = buf + hlen;
    if (*status == 204 || *status == 304 || *status < 200) {
        *blen = 0; /* RFC 9112 6.3: no body, whatever the header says */
    } else if (chunked) {
        if ((d = dechunk(*body, n - hlen)) == -1) return -1;
        if (d == -2) return eof ? -1 : 0;
        *blen = (size_t)d;
    } else if (clen >= 0) {
        if (n - hlen < (size_t)clen) return eof ? -1 : 0;
        *blen = (size_t)clen;
    } else {
        if (!eof) return 0;
        *blen = n - hlen;
    }
    (*body)[*blen] = '\0';
    return 1;
}

/* One POST to the controller (post_controller's arguments). */
struct ctl_post {
    SSL_CTX *ctx;      /* verifies the controller (and, for the feed, carries our certificate) */
    const char *path;  /* "/v1/identity" */
    const char *auth;  /* bearer token, or NULL */
    const char *body;  /* JSON */
    double budget;     /* seconds, connect to last byte */
    int intr;          /* -1, or a descriptor whose readability abandons the request */
    size_t max;        /* largest answer accepted (head and body) */
    const char *hname; /* a header of the answer to return, or NULL */
    char *hval;        /* its value ("" when absent) */
    size_t hvlen;
};

/*
 * POSTs p->body to the controller at p->path, verifying it with p->ctx and its configured
 * name. 0 with *status and *resp (malloc'd, NUL-terminated body of *rlen bytes) set, -1 with
 * why, -2 when p->intr became readable first.
 */
static int post_controller(const struct ctl_post *p, int *status, char **resp, size_t *rlen,
                           char *why, size_t len)
{
    double deadline = mono_now() + p->budget;
    SSL *ssl = NULL;
    char *req = NULL, *buf = NULL, *rbody;
    size_t have = 0, blen = 0, cap = 16384;
    unsigned char ip[16];
    int fd = -1, rc = -1, r, n, is_ip, eof = 0, req_len, sent = 0;

    if ((fd = tcp_connect(deadline, p->intr, why, len)) < 0) return fd;
    if (!(ssl = SSL_new(p->ctx)) || !SSL_set_fd(ssl, fd)) {
        snprintf(why, len, "out of memory");
        goto out;
    }
    is_ip = inet_pton(AF_INET, mesh.name, ip) == 1 || inet_pton(AF_INET6, mesh.name, ip) == 1;
    if (is_ip ? !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), mesh.name)
              : (!SSL_set1_host(ssl, mesh.name) || !SSL_set_tlsext_host_name(ssl, mesh.name))) {
        snprintf(why, len, "bad identity name %s", mesh.name);
        goto out;
    }
    SSL_set_connect_state(ssl);
    while ((r = SSL_do_handshake(ssl)) != 1)
        if ((rc = ssl_again(ssl, r, deadline, p->intr, "TLS handshake", why, len)) < 0) goto out;
    rc = -1;
    req_len = asprintf(&req,
                       "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: strait-dataplane\r\n"
                       "%s%s%sContent-Type: application/json\r\n"
                       "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                       p->path, mesh.addr, p->auth ? "Authorization: Bearer " : "",
                       p->auth ? p->auth : "", p->auth ? "\r\n" : "", strlen(p->body), p->body);
    if (req_len < 0) {
        req = NULL;
        snprintf(why, len, "out of memory");
        goto out;
    }
    while (sent < req_len) {
        if ((r = SSL_write(ssl, req + sent, req_len - sent)) > 0)
            sent += r;
        else if ((rc = ssl_again(ssl, r, deadline, p->intr, "sending", why, len)) < 0)
            goto out;
    }
    rc = -1;
    if (!(buf = malloc(cap + 1))) goto out;
    for (;;) {
        if ((r = http_response(buf, have, eof, status, &rbody, &blen, p->hname, p->hval,
                               p->hvlen)) == 1)
            break;
        if (r < 0) {
            snprintf(why, len, "malformed HTTP response");
            goto out;
        }
        if (have == cap) {
            char *nb;
            if (cap >= p->max || !(nb = realloc(buf, cap * 2 + 1))) {
                snprintf(why, len, "response too large");
                goto out;
            }
            buf = nb;
            cap *= 2;
        }
        n = SSL_read(ssl, buf + have, (int)(cap - have));
        if (n > 0) {
            have += (size_t)n;
            buf[have] = '\0';
            continue;
        }
        r = SSL_get_error(ssl, n);
        if (r == SSL_ERROR_ZERO_RETURN || (r == SSL_ERROR_SYSCALL && errno == 0)) {
            eof = 1;
            ERR_clear_error();
            continue;
        }
        if ((rc = ssl_again(ssl, n, deadline, p->intr, "reading the answer", why, len)) < 0)
            goto out;
        rc = -1;
    }
    memmove(buf, rbody, blen + 1);
    *resp = buf;
    *rlen = blen;
    buf = NULL;
    rc = 0;
out:
    free(req);
    free(buf);
    if (ssl) {
        SSL_set_quiet_shutdown(ssl, 1);
        SSL_free(ssl);
    }
    close(fd);
    ERR_clear_error();
    return rc;
}

/* The token file's content without surrounding white space; malloc'd, or NULL with why. */
static char *read_token(char *why, size_t len)
{
    FILE *f = fopen(mesh.token_path, "re");
    char *buf, *s, *e;
    size_t n;

    if (!f) {
        snprintf(why, len, "token %s: %s", mesh.token_path, strerror(errno));
        return NULL;
    }
    if (!(buf = malloc(TOKEN_MAX + 1))) {
        fclose(f);
        snprintf(why, len, "out of memory");
        return NULL;
    }
    n = fread(buf, 1, TOKEN_MAX, f);
    fclose(f);
    buf[n] = '\0';
    for (s = buf; *s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'; s++)
        ;
    for (e = s + strlen(s);
         e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'); e--)
        ;
    *e = '\0';
    memmove(buf, s, (size_t)(e - s) + 1);
    for (s = buf; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f) break;
    if (buf[0] == '\0' || *s) {
        snprintf(why, len, "token %s: %s", mesh.token_path,
                 buf[0] ? "not a single printable word" : "empty");
        free(buf);
        return NULL;
    }
    return buf;
}

/* The request body {"csr": PEM} for a CSR of key; malloc'd, or NULL. */
static char *csr_body(EVP_PKEY *key)
{
    X509_REQ *req = X509_REQ_new();
    BIO *b = BIO_new(BIO_s_mem());
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *out;
    char *pem, *body = NULL;
    size_t olen;
    long n;

    if (!req || !b || !g || !X509_REQ_set_version(req, 0) || !X509_REQ_set_pubkey(req, key) ||
        X509_REQ_sign(req, key, EVP_sha256()) <= 0 || !PEM_write_bio_X509_REQ(b, req))
        goto out;
    n = BIO_get_mem_data(b, &pem);
    yajl_gen_map_open(g);
    jsongen_str(g, "csr");
    yajl_gen_string(g, (const unsigned char *)pem, (size_t)n);
    yajl_gen_map_close(g);
    if (yajl_gen_get_buf(g, &out, &olen) == yajl_gen_status_ok)
        body = strndup((const char *)out, olen);
out:
    if (g) yajl_gen_free(g);
    BIO_free(b);
    X509_REQ_free(req);
    ERR_clear_error();
    return body;
}

static const char *json_str(yajl_val root, const char *key)
{
    const char *path[] = {key, NULL};

    return YAJL_GET_STRING(yajl_tree_get(root, path, yajl_t_string));
}

/*
 * Checks an answer (see the header comment) and builds its contexts into *is. anchors: the
 * configured roots. 0, or -1 with why.
 */
static int accept_answer(const char *json, EVP_PKEY *key, STACK_OF(X509) * anchors,
                         struct issued *is, char *why, size_t len)
{
    char jerr[128], uri[URI_MAX];
    yajl_val root = yajl_tree_parse(json, jerr, sizeof(jerr));
    STACK_OF(X509) *chain = NULL, *bundle = NULL;
    X509_STORE *st = NULL;
    X509_STORE_CTX *xs = NULL;
    const char *cert_pem, *identity, *bundle_pem;
    X509 *leaf = NULL;
    struct tm tm;
    int i, rc = -1, use_bundle = 0;

    memset(is, 0, sizeof(*is));
    if (!root || !YAJL_IS_OBJECT(root)) {
        snprintf(why, len, "answer is not a JSON object");
        goto out;
    }
    cert_pem = json_str(root, "certificate");
    identity = json_str(root, "identity");
    bundle_pem = json_str(root, "trustBundle");
    if (!cert_pem || !(chain = pem_certs(cert_pem))) {
        snprintf(why, len, "answer has no certificate");
        goto out;
    }
    leaf = sk_X509_shift(chain);
    if (EVP_PKEY_eq(X509_get0_pubkey(leaf), key) != 1) {
        snprintf(why, len, "certificate is not for our key");
        goto out;
    }
    if (!identity_of(leaf, uri, sizeof(uri))) {
        snprintf(why, len, "certificate does not carry exactly one URI SAN under %s", uri_prefix);
        goto out;
    }
    if (identity && strcmp(identity, uri) != 0) {
        snprintf(why, len, "certificate's URI %.200s is not the answer's identity", uri);
        goto out;
    }
    if (!(is->trust = X509_chain_up_ref(anchors))) goto nomem;
    if (bundle_pem && (bundle = pem_certs(bundle_pem))) {
        for (i = 0; i < sk_X509_num(bundle) && !use_bundle; i++)
            use_bundle = certs_contain(anchors, sk_X509_value(bundle, i));
        for (i = 0; use_bundle && i < sk_X509_num(bundle); i++) {
            X509 *x = sk_X509_value(bundle, i);
            if (X509_check_ca(x) <= 0 || certs_contain(is->trust, x)) continue;
            if (!X509_up_ref(x)) goto nomem;
            if (!sk_X509_push(is->trust, x)) {
                X509_free(x);
                goto nomem;
            }
        }
    }
    if (!(st = X509_STORE_new()) || !(xs = X509_STORE_CTX_new())) goto nomem;
    for (i = 0; i < sk_X509_num(is->trust); i++)
        if (!X509_STORE_add_cert(st, sk_X509_value(is->trust, i))) goto nomem;
    if (!X509_STORE_CTX_init(xs, st, leaf, chain)) goto nomem;
    if (X509_verify_cert(xs) != 1) {
        snprintf(why, len, "certificate does not chain to the trust anchors: %s",
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(xs)));
        goto out;
    }
    if (!ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &tm)) {
        snprintf(why, len, "certificate's notAfter unreadable");
        goto out;
    }
    is->not_after = (double)timegm(&tm);
    snprintf(is->identity, sizeof(is->identity), "%s", uri);
    if (!(is->server = mesh_ctx(1, leaf, chain, key, is->trust)) ||
        !(is->client = mesh_ctx(0, leaf, chain, key, is->trust)) ||
        !(is->feed = feed_ctx(leaf, chain, key, is->trust))) {
        snprintf(why, len, "cannot build the mTLS contexts: %s",
                 ERR_reason_error_string(ERR_peek_last_error()));
        goto out;
    }
    rc = 0;
    goto out;
nomem:
    snprintf(why, len, "out of memory");
out:
    if (rc < 0) issued_free(is);
    X509_STORE_CTX_free(xs);
    X509_STORE_free(st);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(bundle, X509_free);
    yajl_tree_free(root);
    ERR_clear_error();
    return rc;
}

/* The printable start of s (at most 160 bytes) for a log reason, into out. */
static void excerpt(const char *s, char *out, size_t len)
{
    size_t i;

    for (i = 0; s[i] && i < 160 && i + 1 < len; i++)
        out[i] = (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f ? s[i] : ' ';
    out[i] = '\0';
}

/* One request with a fresh key; 0 with *is ready to install, or -1 with why. */
static int request_once(struct issued *is, char *why, size_t len)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    STACK_OF(X509) *trust = NULL;
    char *token = NULL, *body = NULL, *resp = NULL, ex[192];
    int status = 0, rc = -1;

    if (!key || !(body = csr_body(key))) {
        snprintf(why, len, "cannot make a key and CSR");
        goto out;
    }
    if (!(token = read_token(why, len))) goto out;
    /* the controller's certificate is checked against the trust the current leaf has (a
     * rotated root included), else the anchors */
    pthread_mutex_lock(&mesh.lock);
    trust = X509_chain_up_ref(mesh.trust ? mesh.trust : mesh.anchors);
    pthread_mutex_unlock(&mesh.lock);
    if (!trust) {
        snprintf(why, len, "out of memory");
        goto out;
    }
    {
        struct ctl_post p = {.ctx = endpoint_ctx(trust),
                             .path = "/v1/identity",
                             .auth = token,
                             .body = body,
                             .budget = REQUEST_BUDGET,
                             .intr = -1,
                             .max = RESPONSE_MAX};
        size_t rlen;
        int r = p.ctx ? post_controller(&p, &status, &resp, &rlen, why, len) : -1;
        if (!p.ctx) snprintf(why, len, "out of memory");
        SSL_CTX_free(p.ctx);
        if (r < 0) goto out;
    }
    if (status != 200) {
        excerpt(resp, ex, sizeof(ex));
        snprintf(why, len, "identity endpoint answered %d: %s", status, ex);
        goto out;
    }
    rc = accept_answer(resp, key, mesh.anchors, is, why, len);
out:
    sk_X509_pop_free(trust, X509_free);
    if (token) OPENSSL_cleanse(token, strlen(token));
    free(token);
    free(body);
    free(resp);
    EVP_PKEY_free(key); /* the contexts hold their own reference */
    ERR_clear_error();
    return rc;
}

static void format_time(double t, char *out, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;

    gmtime_r(&tt, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Swaps in is (emptied); the old contexts are dropped (sessions keep their own). */
static void install(struct issued *is)
{
    SSL_CTX *old_s, *old_c, *old_f;
    STACK_OF(X509) * old_t;

    pthread_mutex_lock(&mesh.lock);
    old_s = mesh.server;
    old_c = mesh.client;
    old_f = mesh.feed;
    old_t = mesh.trust;
    mesh.server = is->server;
    mesh.client = is->client;
    mesh.feed = is->feed;
    mesh.trust = is->trust;
    memcpy(mesh.identity, is->identity, sizeof(mesh.identity));
    mesh.not_after = is->not_after;
    pthread_mutex_unlock(&mesh.lock);
    is->server = is->client = is->feed = NULL;
    is->trust = NULL;
    SSL_CTX_free(old_s);
    SSL_CTX_free(old_c);
    SSL_CTX_free(old_f);
    sk_X509_pop_free(old_t, X509_free);
}

static void uninstall(void)
{
    struct issued none = {0};

    install(&none);
    pthread_mutex_lock(&mesh.lock);
    mesh.identity[0] = '\0';
    mesh.not_after = 0;
    pthread_mutex_unlock(&mesh.lock);
}

/* Sleeps for secs or until tls_mesh_stop; 1 when stopping. */
static int nap(double secs)
{
    struct pollfd p = {.fd = mesh.wake[0], .events = POLLIN};

    if (secs > 0 && !stopping()) (void)poll(&p, 1, (int)ceil(secs * 1000));
    return stopping();
}

static void *identity_thread(void *arg)
{
    double next = mono_now(), backoff = 1, wait, left;
    char why[1024], q[1100], id[URI_MAX + 8], na[32];
    struct issued is;

    (void)arg;
    while (!stopping()) {
        pthread_mutex_lock(&mesh.lock);
        left = mesh.server ? mesh.not_after - wall_now() : INFINITY;
        pthread_mutex_unlock(&mesh.lock);
        if (left <= 0) {
            uninstall();
            log_warn("mesh_identity_expired", "reason=\"not renewed before its notAfter\"");
            continue;
        }
        wait = next - mono_now();
        if (wait > 0) {
            if (nap(wait < left ? wait : left)) break;
            continue;
        }
        if (request_once(&is, why, sizeof(why)) == 0) {
            double renew = (is.not_after - wall_now()) / 2;
            format_time(is.not_after, na, sizeof(na));
            log_info("mesh_identity_issued", "identity=%s not_after=%s",
                     log_quote(id, sizeof(id), is.identity), na);
            metrics_mesh_identity_request(1);
            metrics_mesh_identity_expiry(is.not_after);
            install(&is);
            next = mono_now() + (renew > RENEW_MIN ? renew : RENEW_MIN);
            backoff = 1;
        } else {
            double retry = backoff < mesh.retry_max ? backoff : mesh.retry_max;
            if (stopping()) break;
            metrics_mesh_identity_request(0);
            log_warn("mesh_identity_failed", "reason=%s retry_in=%.0fs",
                     log_quote(q, sizeof(q), why), retry);
            next = mono_now() + retry;
            if (backoff < mesh.retry_max) backoff *= 2;
        }
    }
    return NULL;
}

static void config_free(void)
{
    free(mesh.addr);
    free(mesh.name);
    free(mesh.token_path);
    free(mesh.trust_domain);
    mesh.addr = mesh.name = mesh.token_path = mesh.trust_domain = NULL;
    sk_X509_pop_free(mesh.anchors, X509_free);
    mesh.anchors = NULL;
    for (int i = 0; i < 2; i++) {
        if (mesh.wake[i] >= 0) close(mesh.wake[i]);
        mesh.wake[i] = -1;
    }
}

int tls_mesh_start(const struct tls_mesh_config *cfg, char *err, size_t errlen)
{
    const char *td = cfg->trust_domain;

    if (mesh.running) {
        snprintf(err, errlen, "mesh identity already started");
        return -1;
    }
    if (!cfg->identity_addr || !cfg->identity_addr[0] || !cfg->identity_name ||
        !cfg->identity_name[0] || !cfg->token_path || !cfg->token_path[0]) {
        snprintf(err, errlen,
                 "mesh identity: the endpoint address, its name and the token file "
                 "are required");
        return -1;
    }
    if (!td || !td[0] || strlen(td) > 253 || strpbrk(td, "/:@?# \t")) {
        snprintf(err, errlen, "mesh identity: bad trust domain \"%s\"", td ? td : "");
        return -1;
    }
    if (!(mesh.anchors = pem_certs(cfg->anchors_pem))) {
        snprintf(err, errlen, "mesh identity: the trust anchors hold no certificate that loads");
        return -1;
    }
    mesh.addr = strdup(cfg->identity_addr);
    mesh.name = strdup(cfg->identity_name);
    mesh.token_path = strdup(cfg->token_path);
    mesh.trust_domain = strdup(td);
    mesh.retry_max = cfg->retry_max >= 1 ? cfg->retry_max : 1;
    if (!mesh.addr || !mesh.name || !mesh.token_path || !mesh.trust_domain) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    {
        char host[256], port[16];
        if (split_addr(mesh.addr, host, sizeof(host), port, sizeof(port)) < 0) {
            snprintf(err, errlen, "mesh identity: bad endpoint address \"%s\" (want host:port)",
                     mesh.addr);
            goto fail;
        }
    }
    snprintf(uri_prefix, sizeof(uri_prefix), "spiffe://%s/", td);
    pthread_once(&allow_once, allow_index_init);
    if (allow_idx < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (pipe2(mesh.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto fail;
    }
    atomic_store(&mesh.stop, 0);
    metrics_mesh_identity_expiry(0);
    if ((errno = pthread_create(&mesh.thread, NULL, identity_thread, NULL)) != 0) {
        snprintf(err, errlen, "identity thread: %s", strerror(errno));
        goto fail;
    }
    mesh.running = 1;
    return 0;
fail:
    config_free();
    return -1;
}

void tls_mesh_stop(void)
{
    if (!mesh.running) return;
    atomic_store(&mesh.stop, 1);
    if (write(mesh.wake[1], "x", 1) < 0) { /* the flag alone ends the thread's next wait */
    }
    pthread_join(mesh.thread, NULL);
    mesh.running = 0;
    uninstall();
    config_free();
}

int tls_mesh_status(char *identity, size_t len, double *not_after)
{
    int have;

    pthread_mutex_lock(&mesh.lock);
    have = mesh.server != NULL;
    if (have && identity && len) snprintf(identity, len, "%s", mesh.identity);
    if (have && not_after) *not_after = mesh.not_after;
    pthread_mutex_unlock(&mesh.lock);
    return have;
}

/* The current context of one side, with a reference for the caller; NULL without identity. */
int tls_mesh_feed_post(const char *path, const char *json, double budget, int intr, size_t max,
                       struct tls_mesh_answer *a, char *why, size_t len)
{
    struct ctl_post p = {.path = path,
                         .body = json,
                         .budget = budget,
                         .intr = intr,
                         .max = max,
                         .hname = "x-strait-version",
                         .hval = a->version,
                         .hvlen = sizeof(a->version)};
    int rc;

    a->status = 0;
    a->body = NULL;
    a->len = 0;
    a->version[0] = '\0';
    if (!mesh.running) {
        snprintf(why, len, "the mesh identity is not started");
        return -1;
    }
    pthread_mutex_lock(&mesh.lock);
    if ((p.ctx = mesh.feed)) SSL_CTX_up_ref(p.ctx);
    pthread_mutex_unlock(&mesh.lock);
    if (!p.ctx) {
        snprintf(why, len, "no workload certificate yet");
        return -1;
    }
    rc = post_controller(&p, &a->status, &a->body, &a->len, why, len);
    SSL_CTX_free(p.ctx);
    return rc;
}

static SSL_CTX *current(int server)
{
    SSL_CTX *ctx;

    pthread_mutex_lock(&mesh.lock);
    ctx = server ? mesh.server : mesh.client;
    if (ctx && !SSL_CTX_up_ref(ctx)) ctx = NULL;
    pthread_mutex_unlock(&mesh.lock);
    return ctx;
}

int tls_mesh_accept(struct transport *t, int fd)
{
    SSL_CTX *ctx = current(1);
    int rc;

    if (!ctx) return -1;
    rc = tls_transport_accept_ctx(t, fd, ctx, NULL);
    SSL_CTX_free(ctx); /* the SSL holds its own */
    return rc;
}

int tls_mesh_peer(const struct transport *t, char *uri, size_t len)
{
    SSL *ssl = t->sess;
    const unsigned char *alpn;
    unsigned int alen;
    char u[URI_MAX];
    X509 *x;

    if (!ssl || !SSL_is_init_finished(ssl) || !(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) ||
        !(x = SSL_get0_peer_certificate(ssl)) || SSL_get_verify_result(ssl) != X509_V_OK ||
        !identity_of(x, u, sizeof(u)))
        return -1;
    if (!uri || strlen(u) >= len) return -1; /* a cut URI would name someone else */
    memcpy(uri, u, strlen(u) + 1);
    SSL_get0_alpn_selected(ssl, &alpn, &alen);
    if (alen == strlen(TLS_MESH_ALPN_OPAQUE) && memcmp(alpn, TLS_MESH_ALPN_OPAQUE, alen) == 0)
        return TLS_MESH_PEER_OPAQUE;
    if (alen == strlen(TLS_MESH_ALPN_HTTP) && memcmp(alpn, TLS_MESH_ALPN_HTTP, alen) == 0)
        return TLS_MESH_PEER_HTTP;
    return TLS_MESH_PEER_UNKNOWN;
}

SSL *tls_mesh_client_new(int fd, int opaque, const char *const *ids, uint32_t n_ids,
                         const char *cluster)
{
    static const unsigned char alpn_http[] = "\x08http/1.1", alpn_opaque[] = "\x0dstrait-opaque";
    SSL_CTX *ctx = current(0);
    struct allow *a = NULL;
    SSL *ssl = NULL;
    size_t size = sizeof(*a) + n_ids * sizeof(char *) + strlen(cluster) + 1;
    char *p;
    uint32_t i;

    if (!ctx) return NULL;
    for (i = 0; i < n_ids; i++)
        size += strlen(ids[i]) + 1;
    if (allow_idx < 0 || !(a = malloc(size))) goto fail;
    a->n = n_ids;
    a->ids = (const char **)(a + 1);
    p = (char *)(a->ids + n_ids);
    for (i = 0; i < n_ids; i++) {
        a->ids[i] = strcpy(p, ids[i]);
        p += strlen(p) + 1;
    }
    a->cluster = strcpy(p, cluster);
    if (!(ssl = SSL_new(ctx)) || !SSL_set_ex_data(ssl, allow_idx, a)) goto fail;
    a = NULL; /* the SSL's now (tls_exdata_free) */
    if (!SSL_set_fd(ssl, fd)) goto fail;
    if (opaque ? SSL_set_alpn_protos(ssl, alpn_opaque, sizeof(alpn_opaque) - 1)
               : SSL_set_alpn_protos(ssl, alpn_http, sizeof(alpn_http) - 1))
        goto fail;
    SSL_set_connect_state(ssl);
    SSL_CTX_free(ctx);
    return ssl;
fail:
    free(a);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}
