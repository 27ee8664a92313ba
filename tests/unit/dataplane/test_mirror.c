/*
 * mirror: against real loopback TCP servers (threads with blocking sockets) while the test
 * runs the mirror's loop: the server gets the head and body bytes exactly, plain and over
 * TLS; a response ends the exchange by its framing (the server keeps the connection open)
 * whether it comes after mirror_end or before the body is all fed; a server that never
 * reads gets the mirror cut once more than MIRROR_MAX_PENDING is queued, each feed
 * returning at once; a refused connect counts failed; the total timeout cuts and frees;
 * abort and close_all close at once. Every case ends with no mirror left (ASan: no leak).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "dbuf.h"
#include "metrics.h"
#include "mirror.h"
#include "snapwire.h"
#include "tls_upstream.h"

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t mirror_count(int result)
{
    struct metrics_totals *t = malloc(sizeof(*t));
    uint64_t v;

    assert_non_null(t);
    metrics_collect(t);
    v = t->mirror[result];
    free(t);
    return v;
}

/* A listening loopback socket; *sin gets its address. rcvbuf > 0 shrinks its buffer. */
static int listen_on(struct sockaddr_in *sin, int rcvbuf)
{
    socklen_t sl = sizeof(*sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    assert_true(fd >= 0);
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (rcvbuf > 0)
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)sin, sizeof(*sin)), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)sin, &sl), 0);
    return fd;
}

/*
 * One-connection server: accepts, reads until it has expect bytes (or the peer's end), then
 * writes response (if any) and reads on until the peer closes; got holds what it read.
 */
struct server {
    int lfd;
    struct sockaddr_in sin;
    SSL_CTX *ctx; /* TLS when set */
    size_t expect;
    const char *response;
    char *got;
    size_t got_len, got_cap;
    int saw_eof;
    pthread_t th;
};

static void *server_main(void *arg)
{
    struct server *s = arg;
    SSL *ssl = NULL;
    char buf[16384];
    int fd = accept(s->lfd, NULL, NULL);
    ssize_t n;

    if (fd < 0) return NULL;
    if (s->ctx) {
        ssl = SSL_new(s->ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) != 1) goto out;
    }
    for (;;) {
        if (s->response && s->got_len >= s->expect) {
            size_t len = strlen(s->response);
            if (ssl)
                (void)SSL_write(ssl, s->response, (int)len);
            else
                (void)send(fd, s->response, len, MSG_NOSIGNAL);
            s->response = NULL; /* once */
        }
        n = ssl ? SSL_read(ssl, buf, sizeof(buf)) : recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) break;
        if (s->got_len + (size_t)n > s->got_cap) {
            s->got_cap = (s->got_len + (size_t)n) * 2;
            s->got = realloc(s->got, s->got_cap);
        }
        memcpy(s->got + s->got_len, buf, (size_t)n);
        s->got_len += (size_t)n;
    }
    s->saw_eof = 1;
out:
    SSL_free(ssl);
    close(fd);
    return NULL;
}

static void server_start(struct server *s, size_t expect, const char *response, SSL_CTX *ctx)
{
    memset(s, 0, sizeof(*s));
    s->lfd = listen_on(&s->sin, 0);
    s->expect = expect;
    s->response = response;
    s->ctx = ctx;
    assert_int_equal(pthread_create(&s->th, NULL, server_main, s), 0);
}

static void server_join(struct server *s)
{
    pthread_join(s->th, NULL);
    close(s->lfd);
    free(s->got);
}

/* Runs loop until no mirror is left on it, for at most secs. Returns 1 when none is. */
static int run_until_gone(struct ev_loop *loop, double secs)
{
    double end = now() + secs;

    while (mirror_live(loop) && now() < end) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(500);
    }
    return mirror_live(loop) == 0;
}

static void run_for(struct ev_loop *loop, double secs)
{
    double end = now() + secs;

    while (now() < end) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(500);
    }
}

static const char chunked_head[] = "POST /upload HTTP/1.1\r\nHost: app.example\r\n"
                                   "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";

/* The request's bytes: chunked_head, then a 5-byte chunk, a big chunk, the last chunk. */
static char *build_request(size_t big, size_t *len, size_t *head_len)
{
    char *p = malloc(sizeof(chunked_head) + big + 64);
    size_t n = 0, i;

    assert_non_null(p);
    memcpy(p, chunked_head, sizeof(chunked_head) - 1);
    n = *head_len = sizeof(chunked_head) - 1;
    n += (size_t)sprintf(p + n, "5\r\nhello\r\n%zx\r\n", big);
    for (i = 0; i < big; i++)
        p[n++] = (char)('a' + i % 26);
    memcpy(p + n, "\r\n0\r\n\r\n", 7);
    *len = n + 7;
    return p;
}

/* Feeds req[from..len) in pieces of step bytes, running the loop between them. */
static void feed_all(struct ev_loop *loop, struct mirror *m, const char *req, size_t from,
                     size_t len, size_t step)
{
    while (from < len) {
        size_t k = len - from < step ? len - from : step;
        assert_int_equal(mirror_feed(m, req + from, k), 0);
        from += k;
        ev_run(loop, EVRUN_NOWAIT);
    }
}

static void test_bytes_arrive_exactly_then_response_frees(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    uint64_t done0 = mirror_count(METRICS_MIRROR_COMPLETED);
    size_t len, hl;
    char *req = build_request(100 * 1024, &len, &hl);
    struct server s;
    struct mirror *m;

    (void)state;
    /* the server keeps the connection open: the response's framing must end the exchange */
    server_start(&s, len, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", NULL);
    m = mirror_start(loop, (struct sockaddr *)&s.sin, sizeof(s.sin), NULL, 0, req, hl, 5.);
    assert_non_null(m);
    feed_all(loop, m, req, hl, len, 7000);
    mirror_end(m);
    assert_true(run_until_gone(loop, 5.));
    server_join(&s);
    assert_true(s.saw_eof); /* the mirror closed once the response was complete */
    assert_int_equal(mirror_count(METRICS_MIRROR_COMPLETED), done0 + 1);
    free(req);
    ev_loop_destroy(loop);
}

/* The same, checking the received bytes (server_join frees them, so compare first). */
static void test_server_gets_head_and_body_verbatim(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    size_t len, hl;
    char *req = build_request(300 * 1024, &len, &hl); /* more than MIRROR_MAX_PENDING in all */
    struct server s;
    struct mirror *m;

    (void)state;
    server_start(&s, len, "HTTP/1.1 204 No Content\r\n\r\n", NULL);
    m = mirror_start(loop, (struct sockaddr *)&s.sin, sizeof(s.sin), NULL, 0, req, hl, 5.);
    assert_non_null(m);
    feed_all(loop, m, req, hl, len, 16384);
    mirror_end(m);
    assert_true(run_until_gone(loop, 5.));
    pthread_join(s.th, NULL);
    assert_int_equal(s.got_len, len);
    assert_memory_equal(s.got, req, len);
    close(s.lfd);
    free(s.got);
    free(req);
    ev_loop_destroy(loop);
}

/* An early response (before the body is all fed) ends the exchange; feeds then say -1. */
static void test_early_response_completes(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    uint64_t done0 = mirror_count(METRICS_MIRROR_COMPLETED);
    size_t len, hl;
    char *req = build_request(1000, &len, &hl);
    struct server s;
    struct mirror *m;
    double end = now() + 5.;

    (void)state;
    server_start(&s, hl,
                 "HTTP/1.1 100 Continue\r\n\r\n"
                 "HTTP/1.1 413 Too Large\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "3\r\nbig\r\n0\r\n\r\n",
                 NULL);
    m = mirror_start(loop, (struct sockaddr *)&s.sin, sizeof(s.sin), NULL, 0, req, hl, 5.);
    assert_non_null(m);
    while (mirror_count(METRICS_MIRROR_COMPLETED) == done0 && now() < end) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(500);
    }
    assert_int_equal(mirror_count(METRICS_MIRROR_COMPLETED), done0 + 1);
    assert_int_equal(mirror_live(loop), 1); /* still the caller's */
    assert_int_equal(mirror_feed(m, req + hl, len - hl), -1);
    mirror_end(m);
    assert_int_equal(mirror_live(loop), 0);
    server_join(&s);
    free(req);
    ev_loop_destroy(loop);
}

static void test_never_reading_server_cuts(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    uint64_t cut0 = mirror_count(METRICS_MIRROR_CUT);
    static char chunk[16384];
    struct sockaddr_in sin;
    int lfd = listen_on(&sin, 4096); /* never accepted, never read */
    struct mirror *m;
    size_t fed = 0;
    double worst = 0, t0;
    int rc = 0;

    (void)state;
    memset(chunk, 'x', sizeof(chunk));
    m = mirror_start(loop, (struct sockaddr *)&sin, sizeof(sin), NULL, 0, chunked_head,
                     sizeof(chunked_head) - 1, 30.);
    assert_non_null(m);
    run_for(loop, 0.05); /* connected */
    while (fed < 64u * 1024 * 1024) {
        t0 = now();
        rc = mirror_feed(m, chunk, sizeof(chunk));
        if (now() - t0 > worst) worst = now() - t0;
        if (rc < 0) break;
        fed += sizeof(chunk);
        ev_run(loop, EVRUN_NOWAIT);
    }
    print_message("cut after %zu bytes fed (worst feed %.1f us)\n", fed, worst * 1e6);
    assert_int_equal(rc, -1);
    assert_true(fed > MIRROR_MAX_PENDING); /* the queue's share was used */
    assert_true(fed < 16u * 1024 * 1024);  /* and little more than the kernel's buffers */
    assert_true(worst < 0.05);             /* no feed waited for the socket */
    assert_int_equal(mirror_count(METRICS_MIRROR_CUT), cut0 + 1);
    assert_int_equal(mirror_feed(m, chunk, 10), -1); /* later feeds are ignored */
    assert_int_equal(mirror_count(METRICS_MIRROR_CUT), cut0 + 1);
    mirror_end(m);
    assert_int_equal(mirror_live(loop), 0);
    close(lfd);
    ev_loop_destroy(loop);
}

static void test_refused_counts_failed(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    uint64_t failed0 = mirror_count(METRICS_MIRROR_FAILED);
    struct sockaddr_in sin;
    int lfd = listen_on(&sin, 0);
    struct mirror *m;

    (void)state;
    close(lfd); /* nothing listens on that port now */
    m = mirror_start(loop, (struct sockaddr *)&sin, sizeof(sin), NULL, 0, chunked_head,
                     sizeof(chunked_head) - 1, 5.);
    if (m) { /* refused later, or at once: either way counted once */
        (void)mirror_feed(m, "0\r\n\r\n", 5);
        mirror_end(m);
        assert_true(run_until_gone(loop, 5.));
    }
    assert_int_equal(mirror_count(METRICS_MIRROR_FAILED), failed0 + 1);
    assert_int_equal(mirror_live(loop), 0);
    ev_loop_destroy(loop);
}

static void test_timeout_cuts_and_frees(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    uint64_t cut0 = mirror_count(METRICS_MIRROR_CUT);
    struct server s;
    struct mirror *m;
    double t0 = now();

    (void)state;
    server_start(&s, 0, NULL, NULL); /* reads, never answers */
    m = mirror_start(loop, (struct sockaddr *)&s.sin, sizeof(s.sin), NULL, 0, chunked_head,
                     sizeof(chunked_head) - 1, 0.3);
    assert_non_null(m);
    assert_int_equal(mirror_feed(m, "0\r\n\r\n", 5), 0);
    mirror_end(m);
    assert_true(run_until_gone(loop, 5.));
    assert_true(now() - t0 >= 0.25);
    assert_int_equal(mirror_count(METRICS_MIRROR_CUT), cut0 + 1);
    server_join(&s); /* saw the mirror close */
    assert_true(s.saw_eof);
    ev_loop_destroy(loop);
}

static void test_abort_and_close_all(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    uint64_t cut0 = mirror_count(METRICS_MIRROR_CUT);
    struct server s1, s2, s3;
    struct mirror *a, *b, *c;

    (void)state;
    server_start(&s1, 0, NULL, NULL);
    server_start(&s2, 0, NULL, NULL);
    server_start(&s3, 0, NULL, NULL);
    a = mirror_start(loop, (struct sockaddr *)&s1.sin, sizeof(s1.sin), NULL, 0, chunked_head,
                     sizeof(chunked_head) - 1, 5.);
    b = mirror_start(loop, (struct sockaddr *)&s2.sin, sizeof(s2.sin), NULL, 0, chunked_head,
                     sizeof(chunked_head) - 1, 5.);
    c = mirror_start(loop, (struct sockaddr *)&s3.sin, sizeof(s3.sin), NULL, 0, chunked_head,
                     sizeof(chunked_head) - 1, 5.);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    run_for(loop, 0.05);
    assert_int_equal(mirror_live(loop), 3);
    mirror_abort(a); /* closed and freed now */
    assert_int_equal(mirror_live(loop), 2);
    assert_int_equal(mirror_count(METRICS_MIRROR_CUT), cut0 + 1);
    mirror_end(b);                          /* waits for a response that never comes... */
    mirror_close_all(loop);                 /* ...until the worker stops: freed */
    assert_int_equal(mirror_live(loop), 1); /* c is still the caller's, closed */
    assert_int_equal(mirror_count(METRICS_MIRROR_CUT), cut0 + 3);
    assert_int_equal(mirror_feed(c, "x", 1), -1);
    mirror_end(c);
    assert_int_equal(mirror_live(loop), 0);
    server_join(&s1);
    server_join(&s2);
    server_join(&s3);
    assert_true(s1.saw_eof && s2.saw_eof && s3.saw_eof);
    ev_loop_destroy(loop);
}

/* A self-signed ECDSA certificate and key for cn, as a server context. */
static SSL_CTX *server_ctx(const char *cn)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    assert_non_null(pk);
    assert_non_null(x);
    assert_non_null(ctx);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, pk);
    assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
    assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, pk), 1);
    X509_free(x);
    EVP_PKEY_free(pk);
    return ctx;
}

static void test_tls_cluster(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    uint64_t done0 = mirror_count(METRICS_MIRROR_COMPLETED);
    struct snapwire_cluster cl = {
        .name = "ns/mirror:443+tls", .tls = 1, .tls_sni = "mirror.test", .tls_ca = SNAPWIRE_NONE};
    struct snapwire_snapshot sw;
    struct tls_upstream *tu = NULL;
    SSL_CTX *sctx = server_ctx("mirror.test");
    char err[256];
    size_t len, hl;
    char *req = build_request(40 * 1024, &len, &hl);
    struct server s;
    struct mirror *m;

    (void)state;
    memset(&sw, 0, sizeof(sw));
    sw.n_clusters = 1;
    sw.clusters = &cl;
    assert_int_equal(tls_upstream_build(&sw, &tu, err, sizeof(err)), 0);
    assert_non_null(tu);
    server_start(&s, len, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", sctx);
    m = mirror_start(loop, (struct sockaddr *)&s.sin, sizeof(s.sin), tu, 0, req, hl, 5.);
    assert_non_null(m);
    tls_upstream_free(tu); /* the session keeps its context */
    feed_all(loop, m, req, hl, len, 5000);
    mirror_end(m);
    assert_true(run_until_gone(loop, 5.));
    pthread_join(s.th, NULL);
    assert_int_equal(s.got_len, len);
    assert_memory_equal(s.got, req, len);
    assert_int_equal(mirror_count(METRICS_MIRROR_COMPLETED), done0 + 1);
    close(s.lfd);
    free(s.got);
    free(req);
    SSL_CTX_free(sctx);
    ev_loop_destroy(loop);
}

static int teardown(void **state)
{
    (void)state;
    dbuf_pool_release();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_bytes_arrive_exactly_then_response_frees, teardown),
        cmocka_unit_test_teardown(test_server_gets_head_and_body_verbatim, teardown),
        cmocka_unit_test_teardown(test_early_response_completes, teardown),
        cmocka_unit_test_teardown(test_never_reading_server_cuts, teardown),
        cmocka_unit_test_teardown(test_refused_counts_failed, teardown),
        cmocka_unit_test_teardown(test_timeout_cuts_and_frees, teardown),
        cmocka_unit_test_teardown(test_abort_and_close_all, teardown),
        cmocka_unit_test_teardown(test_tls_cluster, teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
