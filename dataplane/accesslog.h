/*
 * accesslog: the optional access log (--access-log PATH|-), one JSON object per request
 * per line. Off until accesslog_open() succeeds.
 */
#ifndef STRAIT_ACCESSLOG_H
#define STRAIT_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>

#define ACCESSLOG_MAX_FIELD 2048 /* longer strings are cut, so lines to a pipe stay atomic */

/*
 * One finished request. Strings are NUL-terminated and borrowed for the call; NULL is
 * written as JSON null. Bytes that are not valid UTF-8 are written as '?'.
 */
struct accesslog_entry {
    double time;          /* wall clock at the request's start, seconds since the epoch */
    const char *client;   /* client address, e.g. "127.0.0.1" */
    const char *method;   /* "GET" */
    const char *target;   /* request target as received: path and query */
    const char *host;     /* Host header (or absolute-form authority) */
    int http_minor;       /* 0 or 1: "HTTP/1.0" or "HTTP/1.1" */
    int status;           /* status sent to the client, 0 if none was */
    uint64_t bytes_sent;  /* bytes written to the client for this response, head included */
    double duration;      /* seconds from the request head to the end of the response */
    const char *upstream; /* "addr:port" of the upstream, NULL if none was used */
    const char *route;    /* route source, "default", or NULL when unrouted */
};

/*
 * Opens path for appending (created 0644), or standard output for "-". Returns 0, or -1
 * with err filled. Call before the workers start.
 */
int accesslog_open(const char *path, char *err, size_t errlen);

/* Closes the log; accesslog_write() is a no-op afterwards. Call after the workers stopped. */
void accesslog_close(void);

/* Whether a log is open: lets a caller skip building an entry. */
int accesslog_enabled(void);

/*
 * Appends e as one line with a single write(2), so lines from concurrent threads never
 * interleave. Thread-safe; does nothing when the log is closed; a failed write is dropped.
 */
void accesslog_write(const struct accesslog_entry *e);

/*
 * Formats e as a NUL-terminated JSON line (with its '\n') into a malloc'd buffer. Returns it and
 * sets *len, or NULL on allocation failure. Exposed for tests.
 */
char *accesslog_format(const struct accesslog_entry *e, size_t *len);

#endif
