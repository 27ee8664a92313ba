/*
 * adminsrv: a tiny HTTP/1.1 server on a libev loop for operator and probe endpoints
 * (/healthz, /metrics, ...). Both binaries build their admin listener on it; the caller
 * supplies one handler that maps a path to a reply.
 */
#ifndef STRAIT_ADMINSRV_H
#define STRAIT_ADMINSRV_H

#include <ev.h>
#include <stddef.h>
#include <sys/socket.h>

#define ADMINSRV_MAX_REQUEST 8192 /* request line + headers; larger gets 431 */
#define ADMINSRV_TIMEOUT 10.0     /* seconds a connection may live, default */

struct adminsrv;

/* What a handler answers. adminsrv zeroes it before the call. */
struct adminsrv_reply {
    int status;               /* 0 means 200 */
    const char *content_type; /* NULL means "text/plain; charset=utf-8" */
    const char *body;         /* NULL means empty */
    size_t body_len;          /* used as is; adminsrv_reply_* set it */
    int body_malloced;        /* adminsrv frees body after sending */
};

/*
 * Called for GET and HEAD only (adminsrv answers 405 to anything else and drops the body of
 * a HEAD reply itself). method is "GET" or "HEAD"; path is the request target without its
 * query string. Returns 0 with r filled, 1 for "no such path" (adminsrv answers 404), or -1
 * on failure (adminsrv answers 500). On 1 or -1 a body the handler malloc'd in r is freed.
 */
typedef int (*adminsrv_handler_fn)(void *arg, const char *method, const char *path,
                                   struct adminsrv_reply *r);

/* Fills r with a static NUL-terminated text body (not copied, not freed). Returns 0. */
int adminsrv_reply_text(struct adminsrv_reply *r, int status, const char *text);

/*
 * Fills r with body, a malloc'd NUL-terminated string that adminsrv frees; body NULL
 * (allocation failed upstream) returns -1 so a handler can `return adminsrv_reply_take(...)`.
 */
int adminsrv_reply_take(struct adminsrv_reply *r, int status, const char *content_type, char *body);

/*
 * Listens on sa (non-blocking, SO_REUSEADDR), serves on loop and logs
 * "event=admin_listening addr=A:P". Returns the server, or NULL with err filled.
 */
struct adminsrv *adminsrv_start(struct ev_loop *loop, const struct sockaddr *sa, socklen_t salen,
                                adminsrv_handler_fn handler, void *arg, char *err, size_t errlen);

/* Changes the per-connection time limit (seconds) for connections accepted from now on. */
void adminsrv_set_timeout(struct adminsrv *s, double seconds);

/* Formats the bound address ("127.0.0.1:8081", port 0 resolved) into buf. Returns buf. */
const char *adminsrv_address(const struct adminsrv *s, char *buf, size_t n);

/* Closes the listener and every open connection, frees s. NULL is fine. */
void adminsrv_stop(struct adminsrv *s);

#endif
