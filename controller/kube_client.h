/*
 * kube_client: asynchronous HTTP(S) requests to the Kubernetes API server, on the
 * controller's libev loop (libcurl multi interface; never blocks).
 *
 * Two kinds of requests share one connection pool: one-shot requests (any method, optional
 * JSON or patch body; the answer arrives whole in the done callback) and streams (a watch:
 * the bytes of a 2xx body go to a data callback as they arrive). Authentication (bearer
 * token, token file re-read every minute and after a 401, client certificate) and TLS come
 * from the kube_config given at creation; callers only name a path.
 *
 * Callback rules: done is called exactly once per request that was started and not
 * cancelled, always later from the event loop (never from inside kube_client_request or
 * kube_client_stream). Callbacks may start and cancel requests, including from a data
 * callback. A request handle is invalid once its done callback returns or it was cancelled.
 */
#ifndef STRAIT_KUBE_CLIENT_H
#define STRAIT_KUBE_CLIENT_H

#include <stddef.h>

#include "kube_config.h"

struct ev_loop;
struct kube_client;
struct kube_request;

/* How often a token file is re-read (client-go does the same), in seconds. */
#define KUBE_CLIENT_TOKEN_REFRESH 60.0

struct kube_response {
    long status;        /* HTTP status; 0 when no answer arrived (see error) */
    const char *body;   /* NUL-terminated; for a stream, only a non-2xx answer's body */
    size_t body_len;    /* (a 2xx stream body went to the data callback) */
    double retry_after; /* Retry-After header in seconds, -1 when absent */
    int complete;       /* the exchange ended normally (for a stream: the server closed it) */
    const char *error;  /* "" when complete, else why not: libcurl's message, "aborted" */
    double seconds;     /* request sent → answer done (one-shot) or first byte (stream) */
    const char *method; /* as given, "WATCH" for streams; and path, for log lines */
    const char *path;
};

/* The answer of a request; r and its strings are valid during the call only. */
typedef void (*kube_done_fn)(void *arg, const struct kube_response *r);

/*
 * Bytes of a stream's 2xx body, as they arrive (any split: lines may straddle calls). It is
 * first called once with (NULL, 0) when a 2xx head has arrived: the stream is open. Return 0
 * to go on, -1 to end the transfer: done then follows with complete == 0 and error
 * "aborted".
 */
typedef int (*kube_data_fn)(void *arg, const char *data, size_t len);

/*
 * A client for the server of cfg (copied: cfg may be freed afterwards). Reads the token file
 * now. Returns the client, or NULL with err filled (bad settings, unreadable token file).
 */
struct kube_client *kube_client_new(struct ev_loop *loop, const struct kube_config *cfg, char *err,
                                    size_t errlen);

/*
 * Cancels every request (no done callback is called) and frees c. Not from inside one of
 * c's callbacks. NULL is fine.
 */
void kube_client_free(struct kube_client *c);

/*
 * Starts a one-shot request: method ("GET", "POST", "PUT", "PATCH", "DELETE") on path (from
 * the server root, with its query string already escaped, e.g.
 * "/api/v1/namespaces/default/services?limit=500"). body (copied; may be NULL) is sent with
 * content_type (NULL means application/json), e.g. "application/merge-patch+json".
 * timeout bounds the whole exchange in seconds (0: no bound). Returns the request, or NULL
 * with err filled (done is then never called).
 */
struct kube_request *kube_client_request(struct kube_client *c, const char *method,
                                         const char *path, const char *content_type,
                                         const void *body, size_t body_len, double timeout,
                                         kube_done_fn done, void *arg, char *err, size_t errlen);

/*
 * Starts a streaming GET (a watch) on path. A 2xx body goes to data as it arrives; any
 * other answer's body is collected and handed to done. timeout as above (for a watch: its
 * timeoutSeconds plus a margin, so a silent dead connection ends too). Returns the request,
 * or NULL with err filled.
 */
struct kube_request *kube_client_stream(struct kube_client *c, const char *path, double timeout,
                                        kube_data_fn data, kube_done_fn done, void *arg, char *err,
                                        size_t errlen);

/* Stops a request; its done callback is not called. NULL is fine. */
void kube_client_cancel(struct kube_request *r);

/* Requests in flight (tests, shutdown checks). */
unsigned kube_client_pending(const struct kube_client *c);

/* ---- helpers for callers ---- */

/* A meta/v1 Status answer (what the API server sends with every error). */
struct kube_status {
    long code;         /* "code", 0 when absent */
    char reason[64];   /* e.g. "Expired", "Forbidden", "Conflict"; "" when absent */
    char message[300]; /* "" when absent */
};

/* Parses a Status body. Returns 0 with *st filled, or -1 (st zeroed) if it is not one. */
int kube_client_parse_status(const char *body, size_t len, struct kube_status *st);

/*
 * Percent-encodes s for a query value (everything but RFC 3986 unreserved characters) into
 * out. Returns 0, or -1 if it does not fit in n bytes.
 */
int kube_client_escape(const char *s, char *out, size_t n);

#endif
