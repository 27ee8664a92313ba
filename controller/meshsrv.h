/*
 * meshsrv: the controller's HTTPS/1.1 server for the mesh (POST /v1/identity, the admission
 * webhook's POST /inject, the sidecars' discovery feed POST /v1/discovery), on the
 * controller's libev loop. Other modules register their handlers with meshsrv_route.
 */
#ifndef STRAIT_MESHSRV_H
#define STRAIT_MESHSRV_H

#include <stddef.h>
#include <sys/socket.h>

struct ev_loop;
struct meshsrv;

#define MESHSRV_MAX_REQUEST (64 * 1024) /* head + body; larger gets 413 (431 for the head) */
#define MESHSRV_TIMEOUT 10.0            /* seconds a connection may live */
#define MESHSRV_MAX_HELD 4096           /* held connections (meshsrv_hold), besides the others */
#define MESHSRV_MAX_HEADERS 64
#define MESHSRV_EXTRA_HEADERS 128 /* room for a handler's own header lines */

/* A request as a handler sees it; valid until the reply is given (see MESHSRV_ASYNC). */
struct meshsrv_request {
    const char *method;
    const char *path; /* the target without its query string */
    const char *body; /* body_len bytes, NUL-terminated ("" without a body) */
    size_t body_len;
    const char *peer; /* "ADDR:PORT" of the client, for logs */
    /*
     * The client certificate's single URI SAN (a SPIFFE ID for a sidecar's workload leaf),
     * when the server has a client CA (meshsrv_set_client_ca) and the client's certificate
     * chained to it; NULL without a certificate, or with none or several URI SANs.
     */
    const char *peer_uri;
};

/* What a handler answers (zeroed before the call). */
struct meshsrv_reply {
    int status;               /* 0 means 200 */
    const char *content_type; /* not copied: a string constant; NULL means application/json */
    char *body;               /* malloc'd; meshsrv frees it; NULL means empty */
    size_t body_len;          /* bytes of body; 0 means a NUL-terminated text body */
    char headers[MESHSRV_EXTRA_HEADERS]; /* more header lines, each ending "\r\n", or "" */
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
/* The same with every field of a reply (binary body, header lines); r->body is taken. */
void meshsrv_finish_reply(struct meshsrv_request *req, struct meshsrv_reply *r);

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

/*
 * Long polls. meshsrv_hold re-arms the connection's timer to seconds from now (instead of
 * MESHSRV_TIMEOUT from its start) and watches the socket meanwhile: a client that closes or
 * resets it is noticed at once. Held connections do not count against the server's limit of
 * other connections, but at most MESHSRV_MAX_HELD are held: -1 (too many, or out of memory:
 * answer now instead), else 0. It releases the request's buffer: from then on req->body is
 * "" and meshsrv_header finds nothing (method, path, peer and peer_uri stay). Call it from
 * the handler before returning MESHSRV_ASYNC.
 * meshsrv_on_gone asks for fn(arg, req) when the client goes away before the answer (the
 * socket is closed then; the timer's end counts too): fn may call meshsrv_finish at once,
 * which is still owed exactly once. Both only for a request whose answer is pending.
 */
int meshsrv_hold(struct meshsrv_request *req, double seconds);
typedef void (*meshsrv_gone_fn)(void *arg, struct meshsrv_request *req);
void meshsrv_on_gone(struct meshsrv_request *req, meshsrv_gone_fn fn, void *arg);

/*
 * Asks clients for a certificate chaining to one of the PEM certificates of pem_bundle (the
 * mesh trust bundle) on connections accepted from now on, certificate changes included; not
 * required (see meshsrv_request.peer_uri); a certificate that does not verify fails the
 * handshake. Call again when the bundle changes. 0, or -1 with err (no certificate in it).
 */
int meshsrv_set_client_ca(struct meshsrv *s, const char *pem_bundle, char *err, size_t errlen);

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
