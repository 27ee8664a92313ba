/*
 * publisher: Unix stream socket server for snapshot frames.
 *
 * Does: accept data planes, send each the current frame at once and every new frame after,
 * read "ACK <gen>" / "NACK <gen> <reason>" lines, log and count them (health), drop clients on EOF,
 * error or garbage. Does not: build or compare snapshots (main does), retry, or authenticate (the
 * socket lives in a pod-private folder; filesystem permissions are the access control).
 * Invariants: all sockets are non-blocking and written with MSG_NOSIGNAL, so one slow or dead
 * data plane never stalls the loop or the others. Frames are shared and refcounted; a client
 * holds at most two: the one being written (never cut short, the stream would desync) and the
 * newest one waiting; anything older is skipped because only the latest state matters.
 */
#include "publisher.h"

#include <errno.h>
#include <ev.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "containerof.h"
#include "health.h"
#include "log.h"
#include "snapwire.h"

#define PUB_MAGIC 0x50554231u /* "PUB1" */
#define PUB_CLIENT_MAGIC 0x50434c31u
#define PUB_LINE_MAX 1024

struct pub_frame {
    unsigned refs;
    uint64_t generation;
    size_t len;
    unsigned char data[];
};

struct pub_client {
    unsigned magic;
    struct publisher *pub;
    int fd;
    unsigned id;
    ev_io rio, wio;
    struct pub_frame *cur; /* being written, from offset off */
    size_t off;
    struct pub_frame *next; /* newest frame waiting behind cur */
    char line[PUB_LINE_MAX];
    size_t line_len;
    struct pub_client *prev_c, *next_c;
};

struct publisher {
    unsigned magic;
    struct ev_loop *loop;
    int fd;
    ev_io accept_io;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct pub_frame *current;
    struct pub_client *clients;
    unsigned n_clients, next_id;
};

static void pub_frame_unref(struct pub_frame *f)
{
    if (f && --f->refs == 0) free(f);
}

static struct pub_frame *pub_frame_ref(struct pub_frame *f)
{
    f->refs++;
    return f;
}

static void pub_client_drop(struct pub_client *c, const char *why)
{
    struct publisher *p = c->pub;

    log_info("client_disconnected", "client=%u reason=\"%s\"", c->id, why);
    ev_io_stop(p->loop, &c->rio);
    ev_io_stop(p->loop, &c->wio);
    close(c->fd);
    pub_frame_unref(c->cur);
    pub_frame_unref(c->next);
    if (c->prev_c)
        c->prev_c->next_c = c->next_c;
    else
        p->clients = c->next_c;
    if (c->next_c) c->next_c->prev_c = c->prev_c;
    p->n_clients--;
    c->magic = 0;
    free(c);
}

static void pub_client_queue(struct pub_client *c, struct pub_frame *f)
{
    if (!c->cur) {
        c->cur = pub_frame_ref(f);
        c->off = 0;
        ev_io_start(c->pub->loop, &c->wio);
        return;
    }
    pub_frame_unref(c->next);
    c->next = pub_frame_ref(f);
}

static void pub_on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    struct pub_client *c = container_of(w, struct pub_client, wio);
    ssize_t n;

    (void)revents;
    if (c->magic != PUB_CLIENT_MAGIC) abort();
    while (c->cur) {
        n = send(c->fd, c->cur->data + c->off, c->cur->len - c->off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            pub_client_drop(c, strerror(errno));
            return;
        }
        c->off += (size_t)n;
        if (c->off < c->cur->len) continue;
        log_debug("frame_sent", "client=%u generation=%llu bytes=%zu", c->id,
                  (unsigned long long)c->cur->generation, c->cur->len);
        pub_frame_unref(c->cur);
        c->cur = c->next;
        c->next = NULL;
        c->off = 0;
    }
    ev_io_stop(loop, &c->wio);
}

/* Handles one reply line (without its newline). */
static void pub_on_line(struct pub_client *c, const char *line, size_t len)
{
    char reason[512], q[600];
    uint64_t gen = 0;
    int r;

    r = snapwire_reply_parse(line, len, &gen, reason, sizeof(reason));
    if (r == 1) {
        health_count_ack();
        log_info("ack", "generation=%llu client=%u", (unsigned long long)gen, c->id);
    } else if (r == 0) {
        health_count_nack();
        log_warn("nack", "generation=%llu reason=%s client=%u", (unsigned long long)gen,
                 log_quote(q, sizeof(q), reason), c->id);
    } else {
        snprintf(reason, sizeof(reason), "%.*s", (int)len, line);
        log_warn("reply_malformed", "client=%u line=%s", c->id, log_quote(q, sizeof(q), reason));
    }
}

static void pub_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    struct pub_client *c = container_of(w, struct pub_client, rio);
    size_t start, i;
    ssize_t n;

    (void)loop;
    (void)revents;
    if (c->magic != PUB_CLIENT_MAGIC) abort();
    for (;;) {
        n = recv(c->fd, c->line + c->line_len, sizeof(c->line) - c->line_len, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            pub_client_drop(c, strerror(errno));
            return;
        }
        if (n == 0) {
            pub_client_drop(c, "eof");
            return;
        }
        c->line_len += (size_t)n;
        for (start = 0, i = 0; i < c->line_len; i++) {
            if (c->line[i] == '\n') {
                pub_on_line(c, c->line + start, i - start);
                start = i + 1;
            }
        }
        memmove(c->line, c->line + start, c->line_len - start);
        c->line_len -= start;
        if (c->line_len == sizeof(c->line)) {
            pub_client_drop(c, "reply line too long");
            return;
        }
    }
}

static void pub_on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    struct publisher *p = container_of(w, struct publisher, accept_io);
    struct pub_client *c;
    int fd;

    (void)revents;
    if (p->magic != PUB_MAGIC) abort();
    for (;;) {
        fd = accept4(p->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("accept_failed", "error=\"%s\"", strerror(errno));
            return;
        }
        if (!(c = calloc(1, sizeof(*c)))) {
            close(fd);
            log_error("accept_failed", "error=\"out of memory\"");
            continue;
        }
        c->magic = PUB_CLIENT_MAGIC;
        c->pub = p;
        c->fd = fd;
        c->id = ++p->next_id;
        ev_io_init(&c->rio, pub_on_read, fd, EV_READ);
        ev_io_init(&c->wio, pub_on_write, fd, EV_WRITE);
        ev_io_start(loop, &c->rio);
        c->next_c = p->clients;
        if (p->clients) p->clients->prev_c = c;
        p->clients = c;
        p->n_clients++;
        log_info("client_connected", "client=%u clients=%u", c->id, p->n_clients);
        if (p->current) pub_client_queue(c, p->current);
    }
}

struct publisher *publisher_open(struct ev_loop *loop, const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    struct publisher *p;
    struct stat st;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "socket path too long (max %zu bytes)", sizeof(sa.sun_path) - 1);
        return NULL;
    }
    if (!(p = calloc(1, sizeof(*p)))) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->magic = PUB_MAGIC;
    p->loop = loop;
    snprintf(p->path, sizeof(p->path), "%s", path);
    /* only a leftover socket is removed: never delete a file the user put there */
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "%s exists and is not a socket", path);
            goto free_p;
        }
        if (unlink(path)) {
            snprintf(err, errlen, "unlink %s: %s", path, strerror(errno));
            goto free_p;
        }
    }
    if ((p->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        goto free_p;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));
    if (bind(p->fd, (struct sockaddr *)&sa, sizeof(sa))) {
        snprintf(err, errlen, "bind %s: %s", path, strerror(errno));
        goto close_fd;
    }
    if (listen(p->fd, 64)) {
        snprintf(err, errlen, "listen %s: %s", path, strerror(errno));
        goto unlink_path;
    }
    ev_io_init(&p->accept_io, pub_on_accept, p->fd, EV_READ);
    ev_io_start(loop, &p->accept_io);
    return p;
unlink_path:
    unlink(path);
close_fd:
    close(p->fd);
free_p:
    free(p);
    return NULL;
}

int publisher_publish(struct publisher *p, const void *frame, size_t len, uint64_t generation)
{
    struct pub_frame *f = malloc(sizeof(*f) + len);
    struct pub_client *c;

    if (!f) return -1;
    f->refs = 1;
    f->generation = generation;
    f->len = len;
    memcpy(f->data, frame, len);
    pub_frame_unref(p->current);
    p->current = f;
    for (c = p->clients; c; c = c->next_c)
        pub_client_queue(c, f);
    return 0;
}

const void *publisher_current(const struct publisher *p, size_t *len)
{
    if (!p->current) return NULL;
    if (len) *len = p->current->len;
    return p->current->data;
}

unsigned publisher_clients(const struct publisher *p)
{
    return p->n_clients;
}

void publisher_close(struct publisher *p)
{
    if (!p) return;
    while (p->clients)
        pub_client_drop(p->clients, "shutdown");
    ev_io_stop(p->loop, &p->accept_io);
    close(p->fd);
    unlink(p->path);
    pub_frame_unref(p->current);
    p->magic = 0;
    free(p);
}
