/*
 * adminsrv: a deliberately tiny HTTP/1.1 server for operators and probes.
 *
 * Does: accept on one listening socket, read one request head per connection (request line
 * parsed here; headers are skipped), ask the caller's handler for GET and HEAD, answer 405
 * (with Allow) to other methods, 404 when the handler knows no such path, 400 for a bad
 * request line, 431 for a head over ADMINSRV_MAX_REQUEST bytes; every reply carries Date,
 * Content-Type, Content-Length and Connection: close. After the reply the write side is shut
 * down and unread input is drained briefly, so a client that sent a body still reads the
 * reply instead of a reset.
 * Does not: keep-alive, request bodies, TLS, authentication (bind it to localhost), or share
 * anything with the data plane's HTTP parser (this is not the hot path; it stays simple).
 * Invariants: runs on one loop only; every connection is bounded by a timer (10 s default)
 * and at most ADMINSRV_MAX_CONNS are open, so a stuck or hostile client costs a bounded
 * amount; the handler is called at most once per connection.
 */
#include "adminsrv.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "containerof.h"
#include "httpmsg.h"
#include "log.h"
#include "netaddr.h"

#define ADMINSRV_MAGIC 0x41535256u      /* "ASRV" */
#define ADMINSRV_CONN_MAGIC 0x4143304eu /* "AC0N" */
#define ADMINSRV_MAX_CONNS 64
#define ADMINSRV_LINGER 1.0 /* seconds to drain unread input after the reply */
#define ADMINSRV_HEAD_MAX 512

enum asrv_state { ASRV_READING, ASRV_WRITING, ASRV_LINGERING };

struct adminsrv_conn;

struct adminsrv {
    uint32_t magic;
    struct ev_loop *loop;
    int lfd;
    ev_io accept_w;
    adminsrv_handler_fn handler;
    void *arg;
    double timeout;
    unsigned n_conns;
    struct adminsrv_conn *conns;
};

struct adminsrv_conn {
    uint32_t magic;
    struct adminsrv *s;
    struct adminsrv_conn *prev, *next;
    int fd;
    enum asrv_state state;
    ev_io rio, wio;
    ev_timer timer;
    char in[ADMINSRV_MAX_REQUEST + 1]; /* +1: room for a NUL after a full buffer */
    size_t in_len;
    char *out;
    size_t out_len, out_off;
};

int adminsrv_reply_text(struct adminsrv_reply *r, int status, const char *text)
{
    r->status = status;
    r->content_type = NULL;
    r->body = text;
    r->body_len = strlen(text);
    r->body_malloced = 0;
    return 0;
}

int adminsrv_reply_take(struct adminsrv_reply *r, int status, const char *content_type, char *body)
{
    if (!body) return -1;
    r->status = status;
    r->content_type = content_type;
    r->body = body;
    r->body_len = strlen(body);
    r->body_malloced = 1;
    return 0;
}

static void asrv_reply_clear(struct adminsrv_reply *r)
{
    if (r->body_malloced) free((void *)r->body);
    memset(r, 0, sizeof(*r));
}

static void asrv_close(struct adminsrv_conn *ac)
{
    struct adminsrv *s = ac->s;

    ev_io_stop(s->loop, &ac->rio);
    ev_io_stop(s->loop, &ac->wio);
    ev_timer_stop(s->loop, &ac->timer);
    close(ac->fd);
    if (ac->prev)
        ac->prev->next = ac->next;
    else
        s->conns = ac->next;
    if (ac->next) ac->next->prev = ac->prev;
    s->n_conns--;
    free(ac->out);
    ac->magic = 0;
    free(ac);
}

/* Serialises r into ac->out; body omitted when head_only. Returns 0 or -1. */
static int asrv_format(struct adminsrv_conn *ac, const struct adminsrv_reply *r, int head_only,
                       const char *extra_headers)
{
    char head[ADMINSRV_HEAD_MAX], date[HTTPMSG_DATE_LEN];
    time_t now = (time_t)ev_now(ac->s->loop);
    int status = r->status ? r->status : 200;
    size_t blen = head_only || !r->body ? 0 : r->body_len;
    int hl;

    httpmsg_date(now, date);
    hl = snprintf(head, sizeof(head),
                  "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                  "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n",
                  status, httpmsg_reason(status), date,
                  r->content_type ? r->content_type : "text/plain; charset=utf-8",
                  r->body ? r->body_len : 0, extra_headers);
    if (hl < 0 || (size_t)hl >= sizeof(head)) return -1;
    ac->out = malloc((size_t)hl + blen);
    if (!ac->out) return -1;
    memcpy(ac->out, head, (size_t)hl);
    if (blen) memcpy(ac->out + hl, r->body, blen);
    ac->out_len = (size_t)hl + blen;
    ac->out_off = 0;
    return 0;
}

static int asrv_is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/*
 * Parses the request line at the start of buf (NUL-terminated, holds a complete head) in
 * place: *method and *path point into buf afterwards (path without its query). Returns 0,
 * or -1 if it is not "TOKEN SP /target SP HTTP/1.x".
 */
static int asrv_parse_line(char *buf, char **method, char **path)
{
    char *p = buf, *t, *v, *q;

    while (asrv_is_tchar((unsigned char)*p))
        p++;
    if (p == buf || *p != ' ') return -1;
    *p++ = '\0';
    t = p;
    if (*t != '/') return -1;
    while (*p > ' ' && *p != 0x7f)
        p++;
    if (*p != ' ') return -1;
    *p++ = '\0';
    v = p;
    if (strncmp(v, "HTTP/1.", 7) != 0 || v[7] < '0' || v[7] > '9') return -1;
    if (!(v[8] == '\r' && v[9] == '\n') && v[8] != '\n') return -1;
    if ((q = strchr(t, '?'))) *q = '\0';
    *method = buf;
    *path = t;
    return 0;
}

/* Builds the reply for a complete head in ac->in. Returns 0 or -1 (close without reply). */
static int asrv_answer(struct adminsrv_conn *ac, int too_large)
{
    struct adminsrv_reply r;
    char *method = NULL, *path = NULL;
    const char *extra = "";
    int head = 0, rc;

    memset(&r, 0, sizeof(r));
    if (too_large) {
        adminsrv_reply_text(&r, 431, "request too large\n");
    } else if (asrv_parse_line(ac->in, &method, &path) < 0) {
        adminsrv_reply_text(&r, 400, "bad request\n");
    } else if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        adminsrv_reply_text(&r, 405, "method not allowed\n");
        extra = "Allow: GET, HEAD\r\n";
    } else {
        head = method[0] == 'H';
        rc = ac->s->handler(ac->s->arg, method, path, &r);
        if (rc == 1) {
            asrv_reply_clear(&r);
            adminsrv_reply_text(&r, 404, "not found\n");
        } else if (rc != 0) {
            asrv_reply_clear(&r);
            adminsrv_reply_text(&r, 500, "internal error\n");
        }
    }
    log_debug("admin_request", "method=%s path=%s status=%d", method ? method : "-",
              path ? path : "-", r.status ? r.status : 200);
    rc = asrv_format(ac, &r, head, extra);
    asrv_reply_clear(&r);
    return rc;
}

/* After the reply: stop writing, drain what the client still sends, then close. */
static void asrv_linger(struct adminsrv_conn *ac)
{
    struct ev_loop *loop = ac->s->loop;

    ev_io_stop(loop, &ac->wio);
    if (shutdown(ac->fd, SHUT_WR) < 0) {
        asrv_close(ac);
        return;
    }
    ac->state = ASRV_LINGERING;
    ev_timer_stop(loop, &ac->timer);
    ev_timer_set(&ac->timer, ADMINSRV_LINGER, 0.);
    ev_timer_start(loop, &ac->timer);
    ev_io_start(loop, &ac->rio);
}

/* Writes what it can of the reply. Returns 0 while the conn lives, -1 once it is closed. */
static int asrv_flush(struct adminsrv_conn *ac)
{
    ssize_t n;

    while (ac->out_off < ac->out_len) {
        n = send(ac->fd, ac->out + ac->out_off, ac->out_len - ac->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                ev_io_start(ac->s->loop, &ac->wio);
                return 0;
            }
            asrv_close(ac);
            return -1;
        }
        ac->out_off += (size_t)n;
    }
    asrv_linger(ac);
    return 0;
}

static void asrv_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct adminsrv_conn *ac = container_of(io, struct adminsrv_conn, wio);

    (void)loop;
    (void)revents;
    if (ac->magic != ADMINSRV_CONN_MAGIC) abort();
    (void)asrv_flush(ac);
}

/* Length of the head in buf[0..len) including its blank line, or 0 if incomplete. */
static size_t asrv_head_end(const char *buf, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (buf[i] != '\n') continue;
        if (i + 1 < len && buf[i + 1] == '\n') return i + 2;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') return i + 3;
    }
    return 0;
}

static void asrv_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct adminsrv_conn *ac = container_of(io, struct adminsrv_conn, rio);
    char sink[4096];
    size_t scan_from;
    ssize_t n;
    int full;

    (void)revents;
    if (ac->magic != ADMINSRV_CONN_MAGIC) abort();
    if (ac->state == ASRV_LINGERING) {
        n = read(ac->fd, sink, sizeof(sink));
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        if (n <= 0) asrv_close(ac);
        return;
    }
    n = read(ac->fd, ac->in + ac->in_len, ADMINSRV_MAX_REQUEST - ac->in_len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n <= 0) {
        asrv_close(ac);
        return;
    }
    /* rescan a few bytes before the new data: the blank line may straddle two reads */
    scan_from = ac->in_len > 3 ? ac->in_len - 3 : 0;
    ac->in_len += (size_t)n;
    ac->in[ac->in_len] = '\0';
    full = ac->in_len == ADMINSRV_MAX_REQUEST;
    if (!asrv_head_end(ac->in + scan_from, ac->in_len - scan_from)) {
        if (!full) return;
    } else {
        full = 0;
    }
    ev_io_stop(loop, &ac->rio);
    ac->state = ASRV_WRITING;
    if (asrv_answer(ac, full) < 0) {
        asrv_close(ac);
        return;
    }
    (void)asrv_flush(ac);
}

static void asrv_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct adminsrv_conn *ac = container_of(t, struct adminsrv_conn, timer);

    (void)loop;
    (void)revents;
    if (ac->magic != ADMINSRV_CONN_MAGIC) abort();
    asrv_close(ac);
}

static void asrv_accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct adminsrv *s = container_of(io, struct adminsrv, accept_w);
    struct adminsrv_conn *ac;
    int fd, i;

    (void)revents;
    if (s->magic != ADMINSRV_MAGIC) abort();
    for (i = 0; i < 16; i++) {
        fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("admin_accept_failed", "reason=\"%s\"", strerror(errno));
            return;
        }
        if (s->n_conns >= ADMINSRV_MAX_CONNS || !(ac = calloc(1, sizeof(*ac)))) {
            close(fd);
            continue;
        }
        ac->magic = ADMINSRV_CONN_MAGIC;
        ac->s = s;
        ac->fd = fd;
        ac->state = ASRV_READING;
        ac->next = s->conns;
        if (s->conns) s->conns->prev = ac;
        s->conns = ac;
        s->n_conns++;
        ev_io_init(&ac->rio, asrv_read_cb, fd, EV_READ);
        ev_io_init(&ac->wio, asrv_write_cb, fd, EV_WRITE);
        ev_timer_init(&ac->timer, asrv_timer_cb, s->timeout, 0.);
        ev_io_start(loop, &ac->rio);
        ev_timer_start(loop, &ac->timer);
    }
}

struct adminsrv *adminsrv_start(struct ev_loop *loop, const struct sockaddr *sa, socklen_t salen,
                                adminsrv_handler_fn handler, void *arg, char *err, size_t errlen)
{
    struct adminsrv *s;
    char buf[NETADDR_STRLEN];

    s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->magic = ADMINSRV_MAGIC;
    s->loop = loop;
    s->handler = handler;
    s->arg = arg;
    s->timeout = ADMINSRV_TIMEOUT;
    s->lfd = netaddr_listen(sa, salen, err, errlen);
    if (s->lfd < 0) goto free_srv;
    ev_io_init(&s->accept_w, asrv_accept_cb, s->lfd, EV_READ);
    ev_io_start(loop, &s->accept_w);
    log_info("admin_listening", "addr=%s", adminsrv_address(s, buf, sizeof(buf)));
    return s;

free_srv:
    free(s);
    return NULL;
}

void adminsrv_set_timeout(struct adminsrv *s, double seconds)
{
    s->timeout = seconds;
}

const char *adminsrv_address(const struct adminsrv *s, char *buf, size_t n)
{
    return netaddr_local(s->lfd, buf, n);
}

void adminsrv_stop(struct adminsrv *s)
{
    if (!s) return;
    while (s->conns)
        asrv_close(s->conns);
    ev_io_stop(s->loop, &s->accept_w);
    close(s->lfd);
    s->magic = 0;
    free(s);
}
