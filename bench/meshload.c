/* meshload: an open-loop HTTP/1.1 load generator and a trivial server for bench/mesh.py.
 *
 * What it does:
 *   meshload serve ADDR:PORT
 *     answers every HTTP/1.1 request (GET, no body) on keep-alive connections with a 200 and a
 *     64-byte body; one thread, epoll. It is the app of the benchmark's server pods: cheap and
 *     steady, so that what the client measures is the path, not the app.
 *   meshload load -r RATE -d SECS [-w WARMUP] [-c CONNS] TARGET...
 *     sends RATE requests/s for WARMUP + SECS seconds on a fixed schedule (request k is due at
 *     t0 + k / RATE, whatever happened to the ones before: open loop), request k to target
 *     k mod n, over CONNS keep-alive connections per target. TARGET is IP:PORT[/HOST]
 *     (HOST goes in the Host header, default the IP). A request whose connections are all busy
 *     waits in its target's queue; its latency counts from when it was due (no coordinated
 *     omission), up to the end of its response. Prints one line of key=value figures for the
 *     requests due after the warm-up: count, errors, achieved rate, the latency percentiles
 *     in microseconds, and how late the generator itself sent them (send_late_*: its own
 *     scheduling delay, which is part of the latency) and the service time percentiles
 *     (svc_*: from sending each request to the end of its response, that delay left out).
 * What it does not: pipeline, send bodies, speak TLS or HTTP/2, reconnect more than once per
 * failure (a failed connection is counted and reopened before its next request).
 * Invariants: a connection has at most one request in flight; every request due is either
 * answered, counted as an error, or counted as unfinished when the run ends.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define ML_BUF 16384
#define ML_MAX_TARGETS 64
#define ML_MAX_CONNS 64

static const char ML_BODY[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";

static uint64_t ml_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int ml_parse_addr(const char *s, struct sockaddr_in *sa, char *host, size_t hostlen)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", s);
    char *slash = strchr(buf, '/');
    if (slash) *slash++ = '\0';
    char *colon = strrchr(buf, ':');
    if (!colon) return -1;
    *colon = '\0';
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, buf, &sa->sin_addr) != 1) return -1;
    if (host) snprintf(host, hostlen, "%s", slash && *slash ? slash : buf);
    return 0;
}

static void ml_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* -- serve -- */

struct ml_sconn {
    int fd;
    size_t len;
    char buf[ML_BUF];
};

static int ml_serve_read(struct ml_sconn *c, const char *resp, size_t resplen)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len - 1, 0);
        if (n == 0) return -1;
        if (n < 0) return errno == EAGAIN ? 0 : -1;
        c->len += (size_t)n;
        c->buf[c->len] = '\0';
        char *p = c->buf, *end;
        while ((end = strstr(p, "\r\n\r\n"))) {
            if (send(c->fd, resp, resplen, MSG_NOSIGNAL) != (ssize_t)resplen) return -1;
            p = end + 4;
        }
        c->len -= (size_t)(p - c->buf);
        memmove(c->buf, p, c->len);
        if (c->len >= sizeof(c->buf) - 1) return -1;
    }
}

static int ml_serve(const char *addr)
{
    struct sockaddr_in sa;
    if (ml_parse_addr(addr, &sa, NULL, 0) < 0) {
        fprintf(stderr, "meshload: bad address %s\n", addr);
        return 2;
    }
    char resp[256];
    int resplen = snprintf(resp, sizeof(resp),
                           "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                           "%zu\r\n\r\n%s",
                           sizeof(ML_BODY) - 1, ML_BODY);
    int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 512) < 0) {
        perror("meshload: listen");
        return 1;
    }
    ml_nonblock(lfd);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            struct ml_sconn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept(lfd, NULL, NULL)) >= 0) {
                    ml_nonblock(fd);
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    c = calloc(1, sizeof(*c));
                    if (!c) {
                        close(fd);
                        continue;
                    }
                    c->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            if (ml_serve_read(c, resp, (size_t)resplen) < 0) {
                close(c->fd);
                free(c);
            }
        }
    }
}

/* -- load -- */

struct ml_conn {
    int fd;
    int busy;
    uint64_t due;  /* when the request in flight was due */
    uint64_t sent; /* when it was sent */
    size_t len;
    char buf[ML_BUF];
    struct ml_target *t;
};

struct ml_target {
    struct sockaddr_in sa;
    char req[512];
    size_t reqlen;
    struct ml_conn conns[ML_MAX_CONNS];
    uint64_t *queue; /* due times of requests waiting for a free connection (a ring) */
    size_t qhead, qlen, qcap;
};

struct ml_run {
    int ep;
    int nconns;
    uint64_t measure_from; /* requests due before this are the warm-up */
    uint64_t *lat;
    size_t nlat, caplat;
    uint64_t *late; /* how late each measured request was sent (the generator's own delay) */
    size_t nlate;
    uint64_t *svc; /* from sending to the end of the response (the generator's delay left out) */
    size_t nsvc;
    uint64_t errors, conn_errors;
};

static int ml_open(struct ml_run *r, struct ml_conn *c)
{
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) return -1;
    if (connect(c->fd, (struct sockaddr *)&c->t->sa, sizeof(c->t->sa)) < 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ml_nonblock(c->fd);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(r->ep, EPOLL_CTL_ADD, c->fd, &ev);
    c->busy = 0;
    c->len = 0;
    return 0;
}

static void ml_fail(struct ml_run *r, struct ml_conn *c)
{
    if (c->busy && c->due >= r->measure_from) r->errors++;
    r->conn_errors++;
    if (c->fd >= 0) {
        epoll_ctl(r->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->busy = 0;
}

static void ml_send(struct ml_run *r, struct ml_conn *c, uint64_t due)
{
    if (c->fd < 0 && ml_open(r, c) < 0) {
        if (due >= r->measure_from) r->errors++;
        r->conn_errors++;
        return;
    }
    c->busy = 1;
    c->due = due;
    c->sent = ml_now();
    if (due >= r->measure_from && r->nlate < r->caplat)
        r->late[r->nlate++] = c->sent > due ? c->sent - due : 0;
    c->len = 0;
    if (send(c->fd, c->t->req, c->t->reqlen, MSG_NOSIGNAL) != (ssize_t)c->t->reqlen) ml_fail(r, c);
}

static void ml_dispatch(struct ml_run *r, struct ml_target *t, uint64_t due)
{
    for (int i = 0; i < r->nconns; i++) {
        if (!t->conns[i].busy) {
            ml_send(r, &t->conns[i], due);
            return;
        }
    }
    if (t->qlen == t->qcap) {
        size_t ncap = t->qcap ? t->qcap * 2 : 1024;
        uint64_t *q = malloc(ncap * sizeof(*q));
        if (!q) {
            r->errors++;
            return;
        }
        for (size_t i = 0; i < t->qlen; i++)
            q[i] = t->queue[(t->qhead + i) % t->qcap];
        free(t->queue);
        t->queue = q;
        t->qhead = 0;
        t->qcap = ncap;
    }
    t->queue[(t->qhead + t->qlen++) % t->qcap] = due;
}

/* 1 when buf holds a whole response (status line, head, Content-Length body), 0 when more
 * is needed, -1 when it is not one this tool understands. *ok is set when the status is 200. */
static int ml_response_done(struct ml_conn *c, int *ok)
{
    c->buf[c->len] = '\0';
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end) return c->len >= sizeof(c->buf) - 1 ? -1 : 0;
    *ok = strncmp(c->buf, "HTTP/1.1 200", 12) == 0;
    size_t clen = 0;
    for (char *p = strstr(c->buf, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, "content-length:", 15) == 0)
            clen = (size_t)strtoul(p + 17, NULL, 10);
    }
    size_t total = (size_t)(end + 4 - c->buf) + clen;
    if (total >= sizeof(c->buf)) return -1;
    return c->len >= total;
}

static void ml_on_readable(struct ml_run *r, struct ml_conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len - 1, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
            ml_fail(r, c);
            return;
        }
        if (n < 0) return;
        c->len += (size_t)n;
        int ok = 0, done = ml_response_done(c, &ok);
        if (done < 0 || !c->busy) {
            ml_fail(r, c);
            return;
        }
        if (done == 0) continue;
        uint64_t now = ml_now();
        if (c->due >= r->measure_from) {
            if (!ok)
                r->errors++;
            else if (r->nlat < r->caplat) {
                r->lat[r->nlat++] = now - c->due;
                r->svc[r->nsvc++] = now - c->sent;
            }
        }
        c->busy = 0;
        c->len = 0;
        struct ml_target *t = c->t;
        if (t->qlen) {
            uint64_t due = t->queue[t->qhead];
            t->qhead = (t->qhead + 1) % t->qcap;
            t->qlen--;
            ml_send(r, c, due);
        }
        return;
    }
}

static int ml_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double ml_pct(const uint64_t *v, size_t n, double p)
{
    if (!n) return 0;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return (double)v[i] / 1000.0;
}

static int ml_load(int argc, char **argv)
{
    double rate = 1000, secs = 20, warm = 2;
    int opt, conns = 2;
    while ((opt = getopt(argc, argv, "r:d:w:c:")) != -1) {
        switch (opt) {
        case 'r':
            rate = atof(optarg);
            break;
        case 'd':
            secs = atof(optarg);
            break;
        case 'w':
            warm = atof(optarg);
            break;
        case 'c':
            conns = atoi(optarg);
            break;
        default:
            return 2;
        }
    }
    int ntargets = argc - optind;
    if (ntargets < 1 || ntargets > ML_MAX_TARGETS || conns < 1 || conns > ML_MAX_CONNS ||
        rate <= 0 || secs <= 0) {
        fprintf(stderr, "usage: meshload load -r RATE -d SECS [-w WARMUP] [-c CONNS] "
                        "IP:PORT[/HOST]...\n");
        return 2;
    }
    static struct ml_target targets[ML_MAX_TARGETS];
    struct ml_run r = {.nconns = conns};
    r.ep = epoll_create1(0);
    for (int i = 0; i < ntargets; i++) {
        struct ml_target *t = &targets[i];
        char host[256];
        if (ml_parse_addr(argv[optind + i], &t->sa, host, sizeof(host)) < 0) {
            fprintf(stderr, "meshload: bad target %s\n", argv[optind + i]);
            return 2;
        }
        t->reqlen = (size_t)snprintf(t->req, sizeof(t->req),
                                     "GET /bench HTTP/1.1\r\nHost: %s\r\nUser-Agent: meshload\r\n"
                                     "\r\n",
                                     host);
        for (int j = 0; j < conns; j++) {
            t->conns[j].t = t;
            if (ml_open(&r, &t->conns[j]) < 0) {
                fprintf(stderr, "meshload: connect %s: %s\n", argv[optind + i], strerror(errno));
                return 1;
            }
        }
    }
    uint64_t interval = (uint64_t)(1e9 / rate), total = (uint64_t)((warm + secs) * rate);
    r.caplat = (size_t)(secs * rate) + 16;
    r.lat = calloc(r.caplat, sizeof(*r.lat));
    r.late = calloc(r.caplat, sizeof(*r.late));
    r.svc = calloc(r.caplat, sizeof(*r.svc));
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct itimerspec its = {.it_interval = {0, (long)interval}, .it_value = {0, (long)interval}};
    if (!r.lat || !r.late || !r.svc || tfd < 0 || timerfd_settime(tfd, 0, &its, NULL) < 0) {
        perror("meshload: timer");
        return 1;
    }
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(r.ep, EPOLL_CTL_ADD, tfd, &tev);
    uint64_t t0 = ml_now(), k = 0, cpu0 = (uint64_t)clock();
    r.measure_from = t0 + (uint64_t)(warm * 1e9);
    uint64_t stop_at = 0;
    for (;;) {
        struct epoll_event evs[64];
        int n = epoll_wait(r.ep, evs, 64, 50);
        uint64_t now = ml_now();
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr) ml_on_readable(&r, evs[i].data.ptr);
        }
        /* every request due by now is sent (the timer only wakes the loop up) */
        uint64_t expired;
        if (read(tfd, &expired, sizeof(expired)) < 0 && errno != EAGAIN) break;
        while (k < total && t0 + (k + 1) * interval <= now) {
            ml_dispatch(&r, &targets[k % (uint64_t)ntargets], t0 + (k + 1) * interval);
            k++;
        }
        if (k >= total && !stop_at)
            stop_at = now + 3000000000ull; /* at most 3 s for the last answers */
        if (stop_at) {
            int busy = 0;
            for (int i = 0; i < ntargets && !busy; i++) {
                busy = targets[i].qlen > 0;
                for (int j = 0; j < conns; j++)
                    busy |= targets[i].conns[j].busy;
            }
            if (!busy || now >= stop_at) break;
        }
    }
    uint64_t measured = 0, unfinished = 0;
    for (uint64_t i = 0; i < total; i++)
        measured += t0 + (i + 1) * interval >= r.measure_from;
    unfinished = measured - r.nlat - r.errors;
    qsort(r.lat, r.nlat, sizeof(*r.lat), ml_cmp);
    qsort(r.late, r.nlate, sizeof(*r.late), ml_cmp);
    qsort(r.svc, r.nsvc, sizeof(*r.svc), ml_cmp);
    double cpu = (double)((uint64_t)clock() - cpu0) / CLOCKS_PER_SEC;
    printf("requests=%llu ok=%zu errors=%llu unfinished=%llu conn_errors=%llu rate=%.1f "
           "p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f send_late_p50_us=%.1f "
           "send_late_p99_us=%.1f svc_p50_us=%.1f svc_p90_us=%.1f svc_p99_us=%.1f "
           "client_cpu_s=%.2f\n",
           (unsigned long long)measured, r.nlat, (unsigned long long)r.errors,
           (unsigned long long)unfinished, (unsigned long long)r.conn_errors,
           (double)measured / secs, ml_pct(r.lat, r.nlat, 50), ml_pct(r.lat, r.nlat, 90),
           ml_pct(r.lat, r.nlat, 99), ml_pct(r.lat, r.nlat, 99.9),
           r.nlat ? (double)r.lat[r.nlat - 1] / 1000.0 : 0.0, ml_pct(r.late, r.nlate, 50),
           ml_pct(r.late, r.nlate, 99), ml_pct(r.svc, r.nsvc, 50), ml_pct(r.svc, r.nsvc, 90),
           ml_pct(r.svc, r.nsvc, 99), cpu);
    return r.errors || unfinished ? 1 : 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 3 && strcmp(argv[1], "serve") == 0) return ml_serve(argv[2]);
    if (argc >= 2 && strcmp(argv[1], "load") == 0) return ml_load(argc - 1, argv + 1);
    fprintf(stderr, "usage: meshload serve ADDR:PORT | meshload load -r RATE -d SECS [-w W] "
                    "[-c CONNS] IP:PORT[/HOST]...\n");
    return 2;
}
