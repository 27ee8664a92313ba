/*
 * meshsrv: the controller's HTTPS/1.1 server for the mesh (POST /v1/identity, the admission
 * webhook's POST /inject), on the controller's libev loop. Other modules register their
 * handlers with meshsrv_route.
 */
#ifndef STRAIT_MESHSRV_H
#define STRAIT_MESHSRV_H

#include <stddef.h>
#include <sys/socket.h>

struct ev_loop;
struct meshsrv;

#define MESHSRV_MAX_REQUEST (64 * 1024) /* head + body; larger gets 413 (431 for the head) */
#define MESHSRV_TIMEOUT 10.0            /* seconds a connection may live */
#define MESHSRV_MAX_HEADERS 64

/* A request as a handler sees it; valid until the reply is given (see MESHSRV_ASYNC). */
struct meshsrv_request {
    const char *method;
    const char *path; /* the target without its query string */
    const char *body; /* body_len bytes, NUL-terminated ("" without a body) */
    size_t body_len;
    const char *peer; /* "ADDR:PORT" of the client, for logs */
};

/* What a handler answers (zeroed before the call). */
struct meshsrv_reply {
    int status;               /* 0 means 200 */
    const char *content_type; /* not copied: a string constant; NULL means application/json */
    char *body;               /* malloc'd, NUL-terminated; meshsrv frees it; NULL means empty */
};

/* The value of header name (case-insensitive; the first one, trimmed), or NULL. */
const char *meshsrv_header(const struct meshsrv_request *req, const char *name);

/*
 * A handler for one method and path. Returns 0 with out filled (answered now), -1 for a
 * failure (500; a body in out is freed), or MESHSRV_ASYNC: the answer comes later through
 * meshsrv_finish(req, ...), which must then be called exactly once, from the loop, even if
 * the client went away meanwhile (req stays valid until then).
 */
#define MESHSRV_ASYNC 1
typedef int (*meshsrv_handler_fn)(void *arg, struct meshsrv_request *req,
                                  struct meshsrv_reply *out);

/* The body of an error answer, {"error": msg} and a newline (malloc'd), or NULL. */
char *meshsrv_error_body(const char *msg);

/* The answer to an MESHSRV_ASYNC request: body malloc'd (taken, NULL for empty). */
void meshsrv_finish(struct meshsrv_request *req, int status, const char *content_type, char *body);

/*
 * Listens on sa (non-blocking, SO_REUSEADDR) with the TLS certificate and key given (PEM)
 * and serves on loop; logs event=mesh_listening addr=A:P. The process must ignore SIGPIPE
 * (the controller does): OpenSSL writes to the socket with write(2). Returns the server, or NULL
 * with err filled.
 */
struct meshsrv *meshsrv_start(struct ev_loop *loop, const struct sockaddr *sa, socklen_t salen,
                              const char *cert_pem, const char *key_pem, char *err, size_t errlen);

/*
 * Registers fn for method + path (exact match). A path with handlers but not for the method
 * gets 405 with Allow; an unknown path 404. Returns 0, or -1 (out of memory, or full).
 */
int meshsrv_route(struct meshsrv *s, const char *method, const char *path, meshsrv_handler_fn fn,
                  void *arg);

/* Replaces the TLS certificate for connections accepted from now on. 0, or -1 with err. */
int meshsrv_set_cert(struct meshsrv *s, const char *cert_pem, const char *key_pem, char *err,
                     size_t errlen);

/* Changes the per-connection time limit (seconds) for connections accepted from now on. */
void meshsrv_set_timeout(struct meshsrv *s, double seconds);

/* The bound address ("127.0.0.1:8443", port 0 resolved) into buf. Returns buf. */
const char *meshsrv_address(const struct meshsrv *s, char *buf, size_t n);

/*
 * Closes the listener and every connection, frees s. Every MESHSRV_ASYNC request must have
 * been finished before. NULL is fine.
 */
void meshsrv_stop(struct meshsrv *s);

#endif
