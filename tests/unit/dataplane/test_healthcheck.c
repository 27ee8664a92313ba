/*
 * test_healthcheck: active health checks (healthcheck.c) against real loopback listeners: a
 * server thread that answers a configurable status, raw bytes, closes at once or never
 * answers, resets. Covers the status line parser (table), start/idempotence, the request sent,
 * thresholds both ways, status range boundaries, timeout, refused, malformed and closed
 * answers, sharing by (cluster, key, config), release freeing (ASan), first-probe jitter,
 * metrics, and stop with targets still held. Waits poll the state with a bound.
 */
#include "healthcheck.c"

#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

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
};

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Reads a request head from c (blocking, bounded by poll); its length, 0 if none came. */
static size_t read_head(int c, char *buf, size_t n)
{
    size_t got = 0;

    while (got + 1 < n) {
        struct pollfd p = {.fd = c, .events = POLLIN};
        ssize_t r;
        if (poll(&p, 1, 1000) <= 0) break;
        if ((r = recv(c, buf + got, n - 1 - got, 0)) <= 0) break;
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
        read_head(c, head, sizeof(head));
        if (mode == SRV_CLOSE || mode == SRV_RESET) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            if (mode == SRV_RESET) setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
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
        if (send(c, out, strlen(out), MSG_NOSIGNAL) < 0) { /* the prober may be gone */
        }
        close(c);
    }
    return NULL;
}

static struct srv *srv_start(int mode, int status)
{
    struct srv *s = calloc(1, sizeof(*s));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);

    assert_non_null(s);
    pthread_mutex_init(&s->mu, NULL);
    s->mode = mode;
    s->status = status;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->fd >= 0);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(s->fd, 128), 0);
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&sa, &sl), 0);
    s->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&s->th, NULL, srv_main, s), 0);
    return s;
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

/* One failing probe against s (in mode/raw), expecting last_error to start with want. */
static void expect_failure(struct srv *s, unsigned port, const char *want, uint32_t timeout)
{
    struct hc_config c = cfg_of(300, timeout, 1, 2);
    struct hc_target *t;
    struct hc_info in;
    uint64_t t0 = now_us();

    (void)s;
    assert_non_null(t = acquire("c/fail", port, &c));
    in = wait_checks(t, 1);
    if (strncmp(in.last_error, want, strlen(want)))
        fail_msg("last_error \"%s\", want \"%s\"", in.last_error, want);
    assert_int_equal(in.failures, 1);
    assert_int_equal(in.consecutive_fail, 1);
    assert_int_equal(in.healthy, 1); /* one failure of two */
    if (timeout < 200) assert_true(now_us() - t0 >= (uint64_t)timeout * 1000u);
    healthcheck_release(t);
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
        cmocka_unit_test(test_stop_before_release),
    };

    log_init("test", LOG_LEVEL_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
