/*
 * test_healthcheck: active health checks (healthcheck.c) against real loopback listeners: a
 * server thread that answers a configurable status, raw bytes, closes at once or never
 * answers, resets. Covers the status line parser (table), start/idempotence, the request sent,
 * thresholds both ways, status range boundaries, timeout, refused, malformed and closed
 * answers, sharing by (cluster, key, config), release freeing (ASan), first-probe jitter,
 * metrics, and stop with targets still held. Over TLS (the server thread then runs OpenSSL
 * with a self-signed certificate made here): passes with the right CA, the name sent as SNI,
 * settings outliving the struct tls_upstream they came from; fails with the verification
 * error for another CA or name, with a TLS error against a plain server, in the handshake
 * against a silent one; transitions both ways; sharing by TLS tag across rebuilt contexts.
 * Waits poll the state with a bound.
 */
#include "healthcheck.c"

#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "snapwire.h"

#define WAIT_MS 5000 /* bound on every wait for a condition */
#define MAX_REQ 512

/* ---- a tiny loopback HTTP server ---- */

/* CLOSE: reads the request, then closes (FIN); RESET: the same with an RST */
enum { SRV_STATUS, SRV_RAW, SRV_CLOSE, SRV_RESET, SRV_SILENT };

struct srv_req {
    uint64_t us;   /* accept time, CLOCK_MONOTONIC */
    char line[64]; /* request line */
};

struct srv {
    int fd;
    unsigned port;
    pthread_t th;
    atomic_int stop;
    pthread_mutex_t mu;
    /* under mu */
    int mode, status;
    char raw[64];
    size_t n_req;
    struct srv_req req[MAX_REQ];
    char last[512]; /* the last request head */
    int silent[64];
    size_t n_silent;
    SSL_CTX *ctx; /* TLS when set (before the thread starts) */
    char sni[64]; /* under mu: the server name of the last TLS handshake */
    size_t n_tls; /* under mu: handshakes that completed */
};

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/*
 * Reads a request head from c (blocking, bounded by poll; through ssl when set, bounded by
 * the socket's receive timeout); its length, 0 if none came.
 */
static size_t read_head(int c, SSL *ssl, char *buf, size_t n)
{
    size_t got = 0;

    while (got + 1 < n) {
        struct pollfd p = {.fd = c, .events = POLLIN};
        ssize_t r;
        if (!ssl && poll(&p, 1, 1000) <= 0) break;
        r = ssl ? SSL_read(ssl, buf + got, (int)(n - 1 - got)) : recv(c, buf + got, n - 1 - got, 0);
        if (r <= 0) break;
        got += (size_t)r;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n")) break;
    }
    buf[got] = '\0';
    return got;
}

static void *srv_main(void *arg)
{
    struct srv *s = arg;

    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        char head[512], out[128];
        uint64_t us;
        int c, mode;
        size_t i;
        SSL *ssl = NULL;

        if (poll(&p, 1, 20) <= 0) continue;
        if ((c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC)) < 0) continue;
        us = now_us();
        pthread_mutex_lock(&s->mu);
        mode = s->mode;
        if (mode == SRV_SILENT && s->n_silent < sizeof(s->silent) / sizeof(s->silent[0])) {
            s->silent[s->n_silent++] = c;
            c = -1;
        }
        pthread_mutex_unlock(&s->mu);
        if (c < 0) continue;
        if (mode == SRV_SILENT) {
            close(c);
            continue;
        }
        if (s->ctx) {
            struct timeval tv = {.tv_sec = 1};
            const char *sni;
            setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)); /* a stuck client */
            if (!(ssl = SSL_new(s->ctx)) || SSL_set_fd(ssl, c) != 1 || SSL_accept(ssl) != 1) {
                SSL_free(ssl); /* the prober refused our certificate, or is not TLS */
                close(c);
                continue;
            }
            sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
            pthread_mutex_lock(&s->mu);
            snprintf(s->sni, sizeof(s->sni), "%s", sni ? sni : "");
            s->n_tls++;
            pthread_mutex_unlock(&s->mu);
        }
        read_head(c, ssl, head, sizeof(head));
        if (mode == SRV_CLOSE || mode == SRV_RESET) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            if (mode == SRV_RESET) setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            SSL_free(ssl);
            close(c);
            continue;
        }
        pthread_mutex_lock(&s->mu);
        if (s->n_req < MAX_REQ) {
            struct srv_req *q = &s->req[s->n_req++];
            q->us = us;
            for (i = 0; i + 1 < sizeof(q->line) && head[i] && head[i] != '\r'; i++)
                q->line[i] = head[i];
            q->line[i] = '\0';
        }
        snprintf(s->last, sizeof(s->last), "%s", head);
        if (s->mode == SRV_RAW)
            snprintf(out, sizeof(out), "%s", s->raw);
        else
            snprintf(out, sizeof(out), "HTTP/1.1 %d Whatever\r\nContent-Length: 0\r\n\r\n",
                     s->status);
        pthread_mutex_unlock(&s->mu);
        if (ssl) {
            if (SSL_write(ssl, out, (int)strlen(out)) > 0) (void)SSL_shutdown(ssl);
            SSL_free(ssl);
        } else if (send(c, out, strlen(out), MSG_NOSIGNAL) < 0) { /* the prober may be gone */
        }
        close(c);
    }
    return NULL;
}

/* A loopback server in mode answering status; over TLS when ctx is set (the server owns it). */
static struct srv *srv_start_tls(int mode, int status, SSL_CTX *ctx)
{
    struct srv *s = calloc(1, sizeof(*s));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);

    assert_non_null(s);
    pthread_mutex_init(&s->mu, NULL);
    s->mode = mode;
    s->status = status;
    s->ctx = ctx;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->fd >= 0);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(s->fd, 128), 0);
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&sa, &sl), 0);
    s->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&s->th, NULL, srv_main, s), 0);
    return s;
}

static struct srv *srv_start(int mode, int status)
{
    return srv_start_tls(mode, status, NULL);
}

static void srv_set(struct srv *s, int mode, int status, const char *raw)
{
    pthread_mutex_lock(&s->mu);
    s->mode = mode;
    s->status = status;
    snprintf(s->raw, sizeof(s->raw), "%s", raw ? raw : "");
    pthread_mutex_unlock(&s->mu);
}

static void srv_stop(struct srv *s)
{
    size_t i;

    atomic_store(&s->stop, 1);
    pthread_join(s->th, NULL);
    for (i = 0; i < s->n_silent; i++)
        close(s->silent[i]);
    close(s->fd);
    SSL_CTX_free(s->ctx);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static struct sockaddr_in addr_of(unsigned port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return sa;
}

/* A port nobody listens on (bound, then closed). */
static unsigned dead_port(void)
{
    struct sockaddr_in sa = addr_of(0);
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static struct hc_config cfg_of(uint32_t interval, uint32_t timeout, uint8_t healthy,
                               uint8_t unhealthy)
{
    struct hc_config c = {.path = "/healthz",
                          .host = "",
                          .interval_ms = interval,
                          .timeout_ms = timeout,
                          .status_lo = 200,
                          .status_hi = 299,
                          .healthy = healthy,
                          .unhealthy = unhealthy};
    return c;
}

static struct hc_target *acquire(const char *cluster, unsigned port, const struct hc_config *c)
{
    struct sockaddr_in sa = addr_of(port);
    char key[32];

    snprintf(key, sizeof(key), "127.0.0.1:%u", port);
    return healthcheck_acquire(cluster, key, (struct sockaddr *)&sa, sizeof(sa), c);
}

/* Polls t's info until it has at least n checks; returns that info (fails after WAIT_MS). */
static struct hc_info wait_checks(const struct hc_target *t, uint64_t n)
{
    struct hc_info in;
    int i;

    for (i = 0; i < WAIT_MS; i++) {
        healthcheck_info(t, &in);
        if (in.checks >= n) return in;
        usleep(1000);
    }
    fail_msg("timed out waiting for %llu checks (have %llu)", (unsigned long long)n,
             (unsigned long long)in.checks);
    return in;
}

static struct metrics_totals *totals(void)
{
    struct metrics_totals *t = malloc(sizeof(*t));

    assert_non_null(t);
    metrics_collect(t);
    return t;
}

/* ---- tests ---- */

static void test_parse_status(void **state)
{
    static const struct {
        const char *in;
        int rc;
        unsigned status;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\n", 13, 200},
        {"HTTP/1.0 503 Service Unavailable\r\n", 13, 503},
        {"HTTP/1.1 204\r\n", 13, 204}, /* empty reason phrase */
        {"HTTP/1.1 204\n", 13, 204},
        {"HTTP/1.1 200 ", 13, 200},
        {"HTTP/1.1 200", -2, 0},
        {"HTTP/1.", -2, 0},
        {"", -2, 0},
        {"HTTP/2 200 OK\r\n", -1, 0},
        {"HTTP/1.x 200 OK\r\n", -1, 0},
        {"HTTP/1.1  200 OK\r\n", -1, 0},
        {"HTTP/1.1 20 OK\r\n", -1, 0},
        {"HTTP/1.1 2000 OK\r\n", -1, 0},
        {"http/1.1 200 OK\r\n", -1, 0},
        {"HELLO WORLD\r\n", -1, 0},
        {"SSH-2.0-OpenSSH\r\n", -1, 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned st = 0;
        int rc = hc_parse_status(cases[i].in, strlen(cases[i].in), &st);
        if (rc != cases[i].rc)
            fail_msg("case %zu (%s): rc %d, want %d", i, cases[i].in, rc, cases[i].rc);
        if (rc > 0) assert_int_equal(st, cases[i].status);
    }
}

static void test_start(void **state)
{
    struct hc_config c = cfg_of(100, 50, 1, 1);
    char err[128];

    (void)state;
    assert_null(acquire("c/none", 1, &c)); /* never started: callers treat it as healthy */
    assert_int_equal(healthcheck_healthy(NULL), 1);
    {
        struct hc_info in;
        healthcheck_info(NULL, &in);
        assert_int_equal(in.healthy, 1);
        assert_int_equal(in.checks, 0);
    }
    assert_int_equal(healthcheck_start(err, sizeof(err)), 0);
    assert_int_equal(healthcheck_start(err, sizeof(err)), 0); /* idempotent */
}

static void test_request_sent(void **state)
{
    struct srv *s = srv_start(SRV_STATUS, 200);
    struct hc_config c = cfg_of(100, 500, 1, 1);
    struct hc_target *t;
    char want[256];

    (void)state;
    assert_non_null(t = acquire("c/req", s->port, &c));
    wait_checks(t, 1);
    healthcheck_release(t);
    snprintf(want, sizeof(want),
             "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUser-Agent: strait-healthcheck\r\n"
             "Connection: close\r\n\r\n",
             s->port);
    pthread_mutex_lock(&s->mu);
    assert_string_equal(s->last, want);
    pthread_mutex_unlock(&s->mu);

    c.host = "app.example";
    c.path = "/ready?x=1";
    assert_non_null(t = acquire("c/req", s->port, &c));
    wait_checks(t, 1);
    healthcheck_release(t);
    pthread_mutex_lock(&s->mu);
    assert_string_equal(s->last, "GET /ready?x=1 HTTP/1.1\r\nHost: app.example\r\nUser-Agent: "
                                 "strait-healthcheck\r\nConnection: close\r\n\r\n");
    pthread_mutex_unlock(&s->mu);
    srv_stop(s);
}

/* Healthy at first; unhealthy after 3 failures and not after 2; healthy after 2 passes, not 1. */
static void test_thresholds(void **state)
{
    struct srv *s = srv_start(SRV_STATUS, 503);
    struct hc_config c = cfg_of(30, 500, 2, 3);
    struct metrics_totals *m0 = totals(), *m1, *m2;
    struct hc_target *t;
    struct hc_info in;
    int i;

    (void)state;
    assert_non_null(t = acquire("c/thr", s->port, &c));
    assert_int_equal(healthcheck_healthy(t), 1); /* starts healthy */
    for (i = 0; i < WAIT_MS; i++) {
        healthcheck_info(t, &in);
        assert_int_equal(in.failures, in.checks); /* all fail */
        assert_int_equal(in.healthy, in.consecutive_fail < 3 && in.checks < 3);
        if (in.checks >= 3) break;
        usleep(1000);
    }
    assert_true(in.checks >= 3);
    assert_int_equal(in.healthy, 0);
    assert_int_equal(in.last_status, 503);
    assert_string_equal(in.last_error, "status 503");
    assert_int_equal(healthcheck_healthy(t), 0);
    m1 = totals();
    assert_int_equal(m1->health_transitions[0] - m0->health_transitions[0], 1);
    assert_int_equal(m1->health_unhealthy - m0->health_unhealthy, 1);
    assert_true(m1->health_checks[0] - m0->health_checks[0] >= 3);

    srv_set(s, SRV_STATUS, 200, NULL);
    for (i = 0; i < WAIT_MS; i++) {
        healthcheck_info(t, &in);
        assert_int_equal(in.healthy, in.consecutive_ok >= 2);
        if (in.healthy) break;
        usleep(1000);
    }
    assert_int_equal(in.healthy, 1);
    assert_int_equal(in.consecutive_fail, 0);
    assert_string_equal(in.last_error, "");
    m2 = totals();
    assert_int_equal(m2->health_transitions[1] - m0->health_transitions[1], 1);
    assert_int_equal(m2->health_unhealthy, m0->health_unhealthy);
    assert_true(m2->health_checks[1] - m0->health_checks[1] >= 2);
    healthcheck_release(t);
    srv_stop(s);
    free(m0);
    free(m1);
    free(m2);
}

static void test_status_range(void **state)
{
    static const struct {
        int status;
        int pass;
    } cases[] = {{199, 0}, {200, 1}, {250, 1}, {299, 1}, {300, 0}, {404, 0}, {503, 0}};
    struct srv *s = srv_start(SRV_STATUS, 200);
    struct hc_config c = cfg_of(200, 150, 1, 1);
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct hc_target *t;
        struct hc_info in;

        srv_set(s, SRV_STATUS, cases[i].status, NULL);
        assert_non_null(t = acquire("c/range", s->port, &c));
        in = wait_checks(t, 1);
        assert_int_equal(in.last_status, cases[i].status);
        if (in.failures != (uint64_t)!cases[i].pass)
            fail_msg("status %d: failures %llu", cases[i].status, (unsigned long long)in.failures);
        assert_int_equal(in.healthy, cases[i].pass); /* unhealthy threshold 1 */
        healthcheck_release(t);
    }
    /* a range of one status */
    c.status_lo = c.status_hi = 204;
    srv_set(s, SRV_STATUS, 204, NULL);
    {
        struct hc_target *t = acquire("c/range", s->port, &c);
        struct hc_info in = wait_checks(t, 1);
        assert_int_equal(in.failures, 0);
        healthcheck_release(t);
    }
    srv_stop(s);
}

/* One failing probe with c (unhealthy 2) to port, expecting last_error to start with want. */
static void expect_failure_cfg(unsigned port, const struct hc_config *c, const char *want)
{
    struct hc_target *t;
    struct hc_info in;
    uint32_t timeout = c->timeout_ms;
    uint64_t t0 = now_us();

    assert_non_null(t = acquire("c/fail", port, c));
    in = wait_checks(t, 1);
    if (strncmp(in.last_error, want, strlen(want)))
        fail_msg("last_error \"%s\", want \"%s\"", in.last_error, want);
    assert_int_equal(in.failures, 1);
    assert_int_equal(in.consecutive_fail, 1);
    assert_int_equal(in.healthy, 1); /* one failure of two */
    if (timeout < 200) assert_true(now_us() - t0 >= (uint64_t)timeout * 1000u);
    healthcheck_release(t);
}

/* One failing plain probe against s (in mode/raw), expecting last_error to start with want. */
static void expect_failure(struct srv *s, unsigned port, const char *want, uint32_t timeout)
{
    struct hc_config c = cfg_of(300, timeout, 1, 2);

    (void)s;
    expect_failure_cfg(port, &c, want);
}

static void test_timeout(void **state)
{
    struct srv *s = srv_start(SRV_SILENT, 0);

    (void)state;
    expect_failure(s, s->port, "timeout", 150);
    srv_stop(s);
}

static void test_refused(void **state)
{
    (void)state;
    expect_failure(NULL, dead_port(), "connection refused", 250);
}

static void test_malformed(void **state)
{
    struct srv *s = srv_start(SRV_RAW, 0);

    (void)state;
    srv_set(s, SRV_RAW, 0, "HELLO WORLD\r\n\r\n");
    expect_failure(s, s->port, "malformed status line", 250);
    srv_set(s, SRV_RAW, 0, "HTTP/1.1 20"); /* then closes */
    expect_failure(s, s->port, "malformed status line", 250);
    srv_set(s, SRV_RAW, 0, "HTTP/2 200 OK\r\n\r\n");
    expect_failure(s, s->port, "malformed status line", 250);
    srv_set(s, SRV_CLOSE, 0, NULL);
    expect_failure(s, s->port, "closed before status line", 250);
    srv_set(s, SRV_RESET, 0, NULL);
    expect_failure(s, s->port, "connection reset", 250);
    srv_stop(s);
}

static void test_sharing(void **state)
{
    struct srv *s = srv_start(SRV_STATUS, 500);
    struct hc_config c = cfg_of(30, 500, 1, 1), c2 = c;
    struct hc_target *a, *b, *d, *e, *f, *g;

    (void)state;
    assert_non_null(a = acquire("c/share", s->port, &c));
    assert_non_null(b = acquire("c/share", s->port, &c));
    assert_ptr_equal(a, b);
    c2.timeout_ms = 400; /* another config: another target */
    assert_non_null(d = acquire("c/share", s->port, &c2));
    assert_ptr_not_equal(a, d);
    c2 = c;
    c2.host = "other.example";
    assert_non_null(e = acquire("c/share", s->port, &c2));
    assert_ptr_not_equal(a, e);
    assert_non_null(f = acquire("c/other", s->port, &c)); /* another cluster */
    assert_ptr_not_equal(a, f);

    wait_checks(a, 1);
    assert_int_equal(healthcheck_healthy(a), 0);
    healthcheck_release(a); /* b still holds it: state survives, as across a snapshot swap */
    assert_non_null(g = acquire("c/share", s->port, &c));
    assert_ptr_equal(g, b);
    assert_int_equal(healthcheck_healthy(g), 0);
    healthcheck_release(b);
    healthcheck_release(g);
    healthcheck_release(d);
    healthcheck_release(e);
    healthcheck_release(f);
    srv_stop(s);
}

/* The last release frees the target (ASan sees the rest): an unhealthy one leaves the gauge. */
static void test_release_frees(void **state)
{
    struct srv *s = srv_start(SRV_STATUS, 500);
    struct hc_config c = cfg_of(30, 500, 1, 1);
    struct metrics_totals *m0 = totals(), *m;
    struct hc_target *t;
    int i;

    (void)state;
    assert_non_null(t = acquire("c/free", s->port, &c));
    wait_checks(t, 1);
    assert_int_equal(healthcheck_healthy(t), 0);
    m = totals();
    assert_int_equal(m->health_unhealthy, m0->health_unhealthy + 1);
    free(m);
    healthcheck_release(t);
    for (i = 0; i < WAIT_MS; i++) {
        m = totals();
        if (m->health_unhealthy == m0->health_unhealthy) break;
        free(m);
        m = NULL;
        usleep(1000);
    }
    assert_non_null(m);
    free(m);
    /* a fresh one for the same identity starts healthy again */
    assert_non_null(t = acquire("c/free", s->port, &c));
    assert_int_equal(healthcheck_healthy(t), 1);
    healthcheck_release(t);
    free(m0);
    srv_stop(s);
}

/* 20 targets with interval 200 ms: their first probes spread over [0, 200 ms). */
static void test_jitter(void **state)
{
    struct srv *s = srv_start(SRV_STATUS, 200);
    struct hc_target *t[20];
    uint64_t first[20], lo = UINT64_MAX, hi = 0;
    char path[20][16];
    size_t i, j, k, distinct = 0;

    (void)state;
    for (i = 0; i < 20; i++) {
        struct hc_config c = cfg_of(200, 150, 1, 1);
        snprintf(path[i], sizeof(path[i]), "/t%zu", i);
        c.path = path[i];
        assert_non_null(t[i] = acquire("c/jitter", s->port, &c));
    }
    for (i = 0; i < 20; i++)
        wait_checks(t[i], 1);
    for (i = 0; i < 20; i++)
        healthcheck_release(t[i]);
    pthread_mutex_lock(&s->mu);
    for (i = 0; i < 20; i++) {
        char line[400];
        snprintf(line, sizeof(line), "GET %s HTTP/1.1", path[i]);
        for (j = 0; j < s->n_req && strcmp(s->req[j].line, line); j++)
            ;
        assert_true(j < s->n_req);
        first[i] = s->req[j].us / 1000u;
        if (first[i] < lo) lo = first[i];
        if (first[i] > hi) hi = first[i];
    }
    pthread_mutex_unlock(&s->mu);
    for (i = 0; i < 20; i++) {
        for (k = 0; k < i && first[k] != first[i]; k++)
            ;
        distinct += k == i;
    }
    if (hi - lo < 20 || distinct < 5)
        fail_msg("first probes within %llu ms, %zu distinct ms", (unsigned long long)(hi - lo),
                 distinct);
    assert_true(hi - lo < 400); /* all within about one interval */
    srv_stop(s);
}

/* Many targets at once (a timer each): all get probed. */
static void test_many(void **state)
{
    enum { N = 200 };
    struct srv *s = srv_start(SRV_STATUS, 200);
    struct hc_config c = cfg_of(1000, 1000, 1, 1);
    struct hc_target **t = calloc(N, sizeof(*t));
    struct sockaddr_in sa = addr_of(s->port);
    size_t i;

    (void)state;
    assert_non_null(t);
    for (i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof(key), "k%zu", i); /* distinct keys, one address */
        assert_non_null(
            t[i] = healthcheck_acquire("c/many", key, (struct sockaddr *)&sa, sizeof(sa), &c));
    }
    for (i = 0; i < N; i++) {
        struct hc_info in = wait_checks(t[i], 1);
        assert_int_equal(in.failures, 0);
    }
    for (i = 0; i < N; i++)
        healthcheck_release(t[i]);
    free(t);
    srv_stop(s);
}

/* IPv6 endpoints: the default Host is "[::1]:port". */
static void test_ipv6_host(void **state)
{
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    struct hc_target *t;

    (void)state;
    sa.sin6_port = htons(8080);
    t = healthcheck_acquire("c/v6", "[::1]:8080", (struct sockaddr *)&sa, sizeof(sa),
                            &(struct hc_config){.path = "/h",
                                                .host = "",
                                                .interval_ms = 60000,
                                                .timeout_ms = 1000,
                                                .status_lo = 200,
                                                .status_hi = 399,
                                                .healthy = 1,
                                                .unhealthy = 1});
    assert_non_null(t);
    assert_non_null(strstr(t->req, "\r\nHost: [::1]:8080\r\n"));
    healthcheck_release(t);
    /* not an IP address: no target, the endpoint counts as healthy */
    {
        struct sockaddr bad = {.sa_family = AF_UNIX};
        struct hc_config c = cfg_of(100, 50, 1, 1);
        assert_null(healthcheck_acquire("c/v6", "x", &bad, sizeof(bad), &c));
    }
}

/* The families render; fail-open counts. */
static void test_metrics_render(void **state)
{
    struct metrics_totals *m0 = totals(), *m1;
    char *text;

    (void)state;
    metrics_health_fail_open();
    m1 = totals();
    assert_int_equal(m1->health_fail_open - m0->health_fail_open, 1);
    assert_non_null(text = metrics_render());
    assert_non_null(strstr(text, "# TYPE strait_health_checks_total counter\n"));
    assert_non_null(strstr(text, "strait_health_checks_total{result=\"pass\"} "));
    assert_non_null(strstr(text, "strait_health_checks_total{result=\"fail\"} "));
    assert_non_null(strstr(text, "strait_health_transitions_total{to=\"healthy\"} "));
    assert_non_null(strstr(text, "strait_health_transitions_total{to=\"unhealthy\"} "));
    assert_non_null(strstr(text, "# TYPE strait_health_unhealthy_endpoints gauge\n"));
    assert_non_null(strstr(text, "# TYPE strait_health_fail_open_total counter\n"));
    free(text);
    free(m0);
    free(m1);
}

/* ---- over TLS ---- */

/* A self-signed certificate for name (CN and DNS SAN), its key, and its PEM. */
struct tcert {
    X509 *x;
    EVP_PKEY *pk;
    char pem[4096];
};

static void tcert_make(struct tcert *c, const char *name)
{
    char san[128];
    X509_EXTENSION *ext;
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long n;

    assert_non_null(b);
    assert_non_null(c->pk = EVP_EC_gen("P-256"));
    assert_non_null(c->x = X509_new());
    X509_set_version(c->x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c->x), 1);
    X509_gmtime_adj(X509_getm_notBefore(c->x), -60);
    X509_gmtime_adj(X509_getm_notAfter(c->x), 3600);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(c->x), "CN", MBSTRING_ASC,
                               (const unsigned char *)name, -1, -1, 0);
    X509_set_issuer_name(c->x, X509_get_subject_name(c->x));
    X509_set_pubkey(c->x, c->pk);
    snprintf(san, sizeof(san), "DNS:%s", name);
    assert_non_null(ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san));
    assert_int_equal(X509_add_ext(c->x, ext, -1), 1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(c->x, c->pk, EVP_sha256()) > 0);
    assert_int_equal(PEM_write_bio_X509(b, c->x), 1);
    n = BIO_get_mem_data(b, &data);
    assert_true(n > 0 && (size_t)n < sizeof(c->pem));
    memcpy(c->pem, data, (size_t)n);
    c->pem[n] = '\0';
    BIO_free(b);
}

static void tcert_free(struct tcert *c)
{
    X509_free(c->x);
    EVP_PKEY_free(c->pk);
}

/* A server context presenting c. */
static SSL_CTX *server_ctx(const struct tcert *c)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate(ctx, c->x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, c->pk), 1);
    return ctx;
}

/*
 * The upstream TLS of a snapshot with two clusters, 0 plain and 1 TLS with server name sni,
 * verifying against ca_pem (fingerprint fp) or, ca_pem NULL, not verifying.
 */
static struct tls_upstream *tu_build(const char *sni, const char *ca_pem, const char *fp)
{
    struct snapwire_cert cert = {.name = "ns/ca", .chain_pem = ca_pem, .fingerprint = fp};
    struct snapwire_cluster cl[2] = {
        {.name = "ns/plain:80", .tls_sni = ""},
        {.name = "ns/tls:443", .tls = 1, .tls_sni = sni, .tls_ca = ca_pem ? 0 : SNAPWIRE_NONE},
    };
    struct snapwire_snapshot sw;
    struct tls_upstream *tu = NULL;
    char err[256];

    memset(&sw, 0, sizeof(sw));
    sw.n_clusters = 2;
    sw.clusters = cl;
    sw.n_certs = ca_pem ? 1 : 0;
    sw.certs = &cert;
    if (tls_upstream_build(&sw, &tu, err, sizeof(err)) < 0) fail_msg("tls_upstream_build: %s", err);
    assert_non_null(tu);
    return tu;
}

/* cfg_of for TLS cluster 1 of tu. */
static struct hc_config cfg_tls(const struct tls_upstream *tu, uint32_t interval, uint32_t timeout,
                                uint8_t healthy, uint8_t unhealthy)
{
    struct hc_config c = cfg_of(interval, timeout, healthy, unhealthy);

    c.tls = tu;
    c.tls_cluster = 1;
    return c;
}

/* Polls t until its healthy flag is want (fails after WAIT_MS); returns its info. */
static struct hc_info wait_healthy(const struct hc_target *t, int want)
{
    struct hc_info in;
    int i;

    for (i = 0; i < WAIT_MS; i++) {
        healthcheck_info(t, &in);
        if (in.healthy == want) return in;
        usleep(1000);
    }
    fail_msg("timed out waiting for healthy=%d (last_error \"%s\")", want, in.last_error);
    return in;
}

/*
 * A TLS server answering status with a certificate for "hc.test" (made into *a) and *tu a
 * cluster that verifies it (SNI hc.test, CA a).
 */
static struct srv *tls_srv_verified(int status, struct tcert *a, struct tls_upstream **tu)
{
    tcert_make(a, "hc.test");
    *tu = tu_build("hc.test", a->pem, "fp-a");
    return srv_start_tls(SRV_STATUS, status, server_ctx(a));
}

/* Right CA: passes, SNI sent, the request goes over TLS; the settings outlive their tu. */
static void test_tls_verified(void **state)
{
    struct tcert a;
    struct tls_upstream *tu;
    struct srv *s = tls_srv_verified(200, &a, &tu);
    struct hc_config c = cfg_tls(tu, 30, 1000, 1, 1);
    struct hc_target *t;
    struct hc_info in;

    (void)state;
    assert_non_null(t = acquire("c/tls", s->port, &c));
    tls_upstream_free(tu); /* the snapshot goes: the target keeps its own copy (ASan) */
    in = wait_checks(t, 3);
    assert_int_equal(in.failures, 0);
    assert_int_equal(in.last_status, 200);
    assert_string_equal(in.last_error, "");
    assert_int_equal(in.healthy, 1);
    healthcheck_release(t);
    pthread_mutex_lock(&s->mu);
    assert_string_equal(s->sni, "hc.test");
    assert_true(s->n_tls >= 3);
    assert_true(s->n_req >= 3);
    assert_non_null(strstr(s->last, "GET /healthz HTTP/1.1\r\n"));
    pthread_mutex_unlock(&s->mu);

    /* no CA: the cluster does not verify, nor does its check */
    tu = tu_build("hc.test", NULL, NULL);
    c = cfg_tls(tu, 30, 1000, 1, 1);
    assert_non_null(t = acquire("c/tls", s->port, &c));
    in = wait_checks(t, 1);
    assert_int_equal(in.failures, 0);
    healthcheck_release(t);
    tls_upstream_free(tu);
    srv_stop(s);
    tcert_free(&a);
}

/* A certificate that does not verify (another CA, another name) fails the probe, saying so. */
static void test_tls_verify_fails(void **state)
{
    static const struct {
        const char *sni;
        int right_ca;
    } cases[] = {{"hc.test", 0}, {"other.test", 1}};
    struct tcert a, b;
    struct srv *s;
    size_t i;

    (void)state;
    tcert_make(&a, "hc.test");
    tcert_make(&b, "other-ca");
    s = srv_start_tls(SRV_STATUS, 200, server_ctx(&a));
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tls_upstream *tu = tu_build(cases[i].sni, cases[i].right_ca ? a.pem : b.pem,
                                           cases[i].right_ca ? "fp-a" : "fp-b");
        struct hc_config c = cfg_tls(tu, 30, 1000, 1, 1);
        struct hc_target *t;
        struct hc_info in;

        assert_non_null(t = acquire("c/tlsbad", s->port, &c));
        in = wait_checks(t, 2);
        if (strncmp(in.last_error, "upstream certificate: ", 22))
            fail_msg("case %zu: last_error \"%s\"", i, in.last_error);
        assert_int_equal(in.failures, in.checks);
        assert_int_equal(in.last_status, 0);
        assert_int_equal(in.healthy, 0);
        healthcheck_release(t);
        tls_upstream_free(tu);
    }
    pthread_mutex_lock(&s->mu);
    assert_int_equal(s->n_req, 0); /* no request went to an unverified server */
    pthread_mutex_unlock(&s->mu);
    srv_stop(s);
    tcert_free(&a);
    tcert_free(&b);
}

/* A plain server fails a TLS probe with OpenSSL's reason; a silent one times it out in the
 * handshake. */
static void test_tls_handshake_fails(void **state)
{
    struct tcert a;
    struct srv *plain = srv_start(SRV_STATUS, 200), *silent;
    struct tls_upstream *tu = tu_build("hc.test", NULL, NULL);
    struct hc_config c = cfg_tls(tu, 300, 3000, 1, 2);

    (void)state;
    tcert_make(&a, "hc.test");
    silent = srv_start_tls(SRV_SILENT, 0, server_ctx(&a));
    /* the reason OpenSSL gives, not the generic "upstream TLS handshake failed" */
    expect_failure_cfg(plain->port, &c, "upstream TLS: wrong version number");
    c.timeout_ms = 150;
    expect_failure_cfg(silent->port, &c, "timeout in TLS handshake");
    tls_upstream_free(tu);
    srv_stop(plain);
    srv_stop(silent);
    tcert_free(&a);
}

/* Over TLS the thresholds work both ways, on the status as for plain checks. */
static void test_tls_transitions(void **state)
{
    struct tcert a;
    struct tls_upstream *tu;
    struct srv *s = tls_srv_verified(503, &a, &tu);
    struct hc_config c = cfg_tls(tu, 30, 1000, 2, 2);
    struct hc_target *t;
    struct hc_info in;

    (void)state;
    assert_non_null(t = acquire("c/tlsflip", s->port, &c));
    in = wait_healthy(t, 0);
    assert_true(in.consecutive_fail >= 2);
    assert_string_equal(in.last_error, "status 503");
    srv_set(s, SRV_STATUS, 200, NULL);
    in = wait_healthy(t, 1);
    assert_true(in.consecutive_ok >= 2);
    assert_string_equal(in.last_error, "");
    healthcheck_release(t);
    tls_upstream_free(tu);
    srv_stop(s);
    tcert_free(&a);
}

/*
 * Identity: a rebuilt context with the same SNI and CA (a new snapshot) shares the target;
 * another CA, no CA, or plain make another; a plain cluster or a bad index gives none.
 */
static void test_tls_sharing(void **state)
{
    struct tcert a, b;
    struct tls_upstream *tu1, *tu2, *tu3, *tu4;
    struct hc_config c1, c2, c3, c4, plain = cfg_of(60000, 1000, 1, 1);
    struct hc_target *x, *y, *z, *w, *p;
    unsigned port = dead_port();

    (void)state;
    tcert_make(&a, "hc.test");
    tcert_make(&b, "other-ca");
    tu1 = tu_build("hc.test", a.pem, "fp-a");
    tu2 = tu_build("hc.test", a.pem, "fp-a");
    tu3 = tu_build("hc.test", b.pem, "fp-b");
    tu4 = tu_build("hc.test", NULL, NULL);
    c1 = cfg_tls(tu1, 60000, 1000, 1, 1);
    c2 = cfg_tls(tu2, 60000, 1000, 1, 1);
    c3 = cfg_tls(tu3, 60000, 1000, 1, 1);
    c4 = cfg_tls(tu4, 60000, 1000, 1, 1);
    assert_non_null(x = acquire("c/tlsshare", port, &c1));
    tls_upstream_free(tu1); /* the old snapshot goes */
    assert_non_null(y = acquire("c/tlsshare", port, &c2));
    assert_ptr_equal(x, y);
    assert_non_null(z = acquire("c/tlsshare", port, &c3));
    assert_ptr_not_equal(z, x);
    assert_non_null(w = acquire("c/tlsshare", port, &c4));
    assert_ptr_not_equal(w, x);
    assert_ptr_not_equal(w, z);
    assert_non_null(p = acquire("c/tlsshare", port, &plain));
    assert_ptr_not_equal(p, x);
    assert_ptr_not_equal(p, z);
    assert_ptr_not_equal(p, w);
    c2.tls_cluster = 0; /* the plain cluster: not a TLS one, no target */
    assert_null(acquire("c/tlsshare", port, &c2));
    c2.tls_cluster = 7;
    assert_null(acquire("c/tlsshare", port, &c2));
    healthcheck_release(x);
    healthcheck_release(y);
    healthcheck_release(z);
    healthcheck_release(w);
    healthcheck_release(p);
    tls_upstream_free(tu2);
    tls_upstream_free(tu3);
    tls_upstream_free(tu4);
    tcert_free(&a);
    tcert_free(&b);
}

/* Stop with targets still held: they stay valid and their last release frees them. */
static void test_stop_before_release(void **state)
{
    struct srv *s = srv_start(SRV_STATUS, 500);
    struct hc_config c = cfg_of(30, 500, 1, 1);
    struct hc_target *held, *unheld;
    char err[128];

    (void)state;
    assert_non_null(held = acquire("c/stop", s->port, &c));
    assert_non_null(unheld = acquire("c/stop2", s->port, &c));
    wait_checks(held, 1);
    healthcheck_release(unheld); /* maybe still queued when stop runs */
    healthcheck_stop();
    healthcheck_stop(); /* idempotent */
    assert_int_equal(healthcheck_healthy(held), 0);
    assert_null(acquire("c/stop", s->port, &c)); /* stopped: none */
    healthcheck_release(held);                   /* frees it */
    srv_stop(s);
    /* and it starts again */
    assert_int_equal(healthcheck_start(err, sizeof(err)), 0);
    s = srv_start(SRV_STATUS, 200);
    assert_non_null(held = acquire("c/stop", s->port, &c));
    wait_checks(held, 1);
    assert_int_equal(healthcheck_healthy(held), 1);
    healthcheck_release(held);
    healthcheck_stop();
    srv_stop(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_status),
        cmocka_unit_test(test_start),
        cmocka_unit_test(test_request_sent),
        cmocka_unit_test(test_thresholds),
        cmocka_unit_test(test_status_range),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_sharing),
        cmocka_unit_test(test_release_frees),
        cmocka_unit_test(test_jitter),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_ipv6_host),
        cmocka_unit_test(test_metrics_render),
        cmocka_unit_test(test_tls_verified),
        cmocka_unit_test(test_tls_verify_fails),
        cmocka_unit_test(test_tls_handshake_fails),
        cmocka_unit_test(test_tls_transitions),
        cmocka_unit_test(test_tls_sharing),
        cmocka_unit_test(test_stop_before_release),
    };

    log_init("test", LOG_LEVEL_WARN);
    signal(SIGPIPE, SIG_IGN); /* the TLS server may write to a prober that is gone */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
