/*
 * admin: a deliberately tiny HTTP/1.1 server for operators and probes.
 *
 * Does: GET /ready (200 once a snapshot is applied, else 503), /live, /snapshot (JSON dump
 * of the current snapshot), /metrics (Prometheus text); 404 for anything else, 405 for
 * other methods. One request per connection, answered with Connection: close.
 * Does not: keep-alive, request bodies, authentication (bind it to localhost).
 * Invariants: runs on the main loop only, so it may read the controller client's current
 * snapshot without references; every connection is bounded by a 10 s timer.
 */
#include "admin.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http1.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define ADMIN_MAGIC 0x41444d4eu      /* "ADMN" */
#define ADMIN_CONN_MAGIC 0x41434f4eu /* "ACON" */
#define ADMIN_MAX_REQ 8192
#define ADMIN_TIMEOUT 10.

struct admin_conn;

struct admin {
    uint32_t magic;
    struct ev_loop *loop;
    int lfd;
    ev_io accept_w;
    admin_current_fn current;
    void *arg;
    struct admin_conn *conns;
};

struct admin_conn {
    uint32_t magic;
    struct admin *a;
    struct admin_conn *prev, *next;
    int fd;
    ev_io rio, wio;
    ev_timer timer;
    char in[ADMIN_MAX_REQ];
    size_t in_len;
    char *out;
    size_t out_len, out_off;
};

static void aconn_close(struct admin_conn *ac)
{
    struct admin *a = ac->a;

    ev_io_stop(a->loop, &ac->rio);
    ev_io_stop(a->loop, &ac->wio);
    ev_timer_stop(a->loop, &ac->timer);
    close(ac->fd);
    if (ac->prev)
        ac->prev->next = ac->next;
    else
        a->conns = ac->next;
    if (ac->next) ac->next->prev = ac->prev;
    free(ac->out);
    ac->magic = 0;
    free(ac);
}

/* Sets the response; body is copied. Returns 0 or -1. */
static int respond(struct admin_conn *ac, int status, const char *reason, const char *ctype,
                   const char *body, int head_only)
{
    size_t bl = strlen(body);
    int n;

    n = asprintf(&ac->out,
                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n\r\n%s",
                 status, reason, ctype, bl, head_only ? "" : body);
    if (n < 0) {
        ac->out = NULL;
        return -1;
    }
    ac->out_len = (size_t)n;
    return 0;
}

static int handle(struct admin_conn *ac, const struct http1_request *req)
{
    struct snapshot *s = ac->a->current(ac->a->arg);
    const char *t = req->target;
    size_t tl = req->target_len;
    int head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    char *dyn;
    int r;

    if (memchr(t, '?', tl)) tl = (size_t)((const char *)memchr(t, '?', tl) - t);
#define IS(p) (tl == strlen(p) && memcmp(t, p, tl) == 0)
    if (!head && !(req->method_len == 3 && memcmp(req->method, "GET", 3) == 0))
        return respond(ac, 405, "Method Not Allowed", "text/plain", "method not allowed\n", 0);
    if (IS("/ready"))
        return s ? respond(ac, 200, "OK", "text/plain", "ready\n", head)
                 : respond(ac, 503, "Service Unavailable", "text/plain", "no snapshot\n", head);
    if (IS("/live")) return respond(ac, 200, "OK", "text/plain", "live\n", head);
    if (IS("/snapshot")) {
        if (!s) return respond(ac, 503, "Service Unavailable", "text/plain", "no snapshot\n", head);
        dyn = snapwire_to_json(&s->sw);
        if (!dyn) return -1;
        r = respond(ac, 200, "OK", "application/json", dyn, head);
        free(dyn);
        return r;
    }
    if (IS("/metrics")) {
        dyn = metrics_render();
        if (!dyn) return -1;
        r = respond(ac, 200, "OK", "text/plain; version=0.0.4", dyn, head);
        free(dyn);
        return r;
    }
#undef IS
    return respond(ac, 404, "Not Found", "text/plain", "not found\n", head);
}

static void aconn_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct admin_conn *ac = container_of(io, struct admin_conn, wio);
    ssize_t n;

    (void)loop;
    (void)revents;
    if (ac->magic != ADMIN_CONN_MAGIC) abort();
    while (ac->out_off < ac->out_len) {
        n = send(ac->fd, ac->out + ac->out_off, ac->out_len - ac->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            break;
        }
        ac->out_off += (size_t)n;
    }
    aconn_close(ac);
}

static void aconn_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct admin_conn *ac = container_of(io, struct admin_conn, rio);
    struct http1_request req;
    ssize_t n;
    int r, status;

    (void)revents;
    if (ac->magic != ADMIN_CONN_MAGIC) abort();
    n = read(ac->fd, ac->in + ac->in_len, sizeof(ac->in) - ac->in_len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n <= 0) {
        aconn_close(ac);
        return;
    }
    ac->in_len += (size_t)n;
    r = http1_parse_request(ac->in, ac->in_len, &req, &status);
    if (r == -2 && ac->in_len < sizeof(ac->in)) return;
    if (r < 0)
        r = respond(ac, 400, "Bad Request", "text/plain", "bad request\n", 0);
    else
        r = handle(ac, &req);
    if (r < 0) {
        aconn_close(ac);
        return;
    }
    ev_io_stop(loop, &ac->rio);
    ev_io_start(loop, &ac->wio);
}

static void aconn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct admin_conn *ac = container_of(t, struct admin_conn, timer);

    (void)loop;
    (void)revents;
    if (ac->magic != ADMIN_CONN_MAGIC) abort();
    aconn_close(ac);
}

static void admin_accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct admin *a = container_of(io, struct admin, accept_w);
    struct admin_conn *ac;
    int fd;

    (void)revents;
    if (a->magic != ADMIN_MAGIC) abort();
    fd = accept4(a->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    ac = calloc(1, sizeof(*ac));
    if (!ac) {
        close(fd);
        return;
    }
    ac->magic = ADMIN_CONN_MAGIC;
    ac->a = a;
    ac->fd = fd;
    ac->next = a->conns;
    if (a->conns) a->conns->prev = ac;
    a->conns = ac;
    ev_io_init(&ac->rio, aconn_read_cb, fd, EV_READ);
    ev_io_init(&ac->wio, aconn_write_cb, fd, EV_WRITE);
    ev_timer_init(&ac->timer, aconn_timer_cb, ADMIN_TIMEOUT, 0.);
    ev_io_start(loop, &ac->rio);
    ev_timer_start(loop, &ac->timer);
}

struct admin *admin_start(struct ev_loop *loop, const struct sockaddr *sa, socklen_t salen,
                          admin_current_fn current, void *arg, char *err, size_t errlen)
{
    struct admin *a;
    struct sockaddr_storage bound;
    socklen_t bl = sizeof(bound);
    char buf[80];

    a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->magic = ADMIN_MAGIC;
    a->loop = loop;
    a->current = current;
    a->arg = arg;
    a->lfd = listener_open(sa, salen, 0, err, errlen);
    if (a->lfd < 0) goto free_admin;
    ev_io_init(&a->accept_w, admin_accept_cb, a->lfd, EV_READ);
    ev_io_start(loop, &a->accept_w);
    if (getsockname(a->lfd, (struct sockaddr *)&bound, &bl) < 0) memcpy(&bound, sa, salen);
    log_info("admin_listening", "addr=%s",
             listener_format((struct sockaddr *)&bound, buf, sizeof(buf)));
    return a;

free_admin:
    free(a);
    return NULL;
}

void admin_stop(struct admin *a)
{
    if (!a) return;
    while (a->conns)
        aconn_close(a->conns);
    ev_io_stop(a->loop, &a->accept_w);
    close(a->lfd);
    a->magic = 0;
    free(a);
}
