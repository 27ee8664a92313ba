/*
 * mirror: request mirroring (Gateway API RequestMirror): a copy of a request - its head and
 * then its body as the primary streams it - goes to a mirror cluster's endpoint on a fresh
 * connection; the mirror's response is read and dropped. A mirror never slows the primary
 * down and never makes it fail: nothing here blocks, and a mirror that cannot keep up
 * (more than MIRROR_MAX_PENDING bytes queued unsent) or outlives its total timeout is cut.
 *
 * Threads: a mirror lives on the loop (worker thread) that started it and every call on it
 * comes from that thread; bookkeeping is per thread, no locks.
 *
 * Each mirror is counted once in strait_mirror_requests_total{result} (metrics.h,
 * METRICS_MIRROR_*): completed, cut, or failed; "skipped" is the caller's to count
 * (metrics_mirror(METRICS_MIRROR_SKIPPED)) when it decides not to start one.
 */
#ifndef STRAIT_MIRROR_H
#define STRAIT_MIRROR_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define MIRROR_MAX_PENDING (256 * 1024) /* bytes queued unsent (head included) before a cut */
#define MIRROR_DEFAULT_TIMEOUT 10.      /* seconds, when mirror_start is given timeout <= 0 */

struct mirror;
struct tls_upstream;

/*
 * Starts a mirror exchange on loop to sa: a fresh connection (never one from the pool),
 * with TLS when tls_upstream_tag(tls_up, cluster) says the cluster is a TLS one (the
 * handshake follows the TCP connect), sending head first: a complete request head the
 * caller built (e.g. Host kept, "Connection: close" so the response ends with the
 * connection). The whole exchange - connect, handshake, request, response - is bounded by
 * timeout seconds. Returns NULL (counted failed) when it cannot start: no socket, an
 * immediate connect error, no memory, a head over MIRROR_MAX_PENDING.
 */
struct mirror *mirror_start(struct ev_loop *loop, const struct sockaddr *sa, socklen_t salen,
                            const struct tls_upstream *tls_up, uint32_t cluster, const char *head,
                            size_t head_len, double timeout);

/*
 * Body bytes as the primary streams them (verbatim, chunked framing included). Never
 * blocks: the bytes are sent at once when the socket takes them, else queued; when more
 * than MIRROR_MAX_PENDING bytes would be queued unsent the mirror is cut (closed, counted).
 * Returns 0, or -1 when the mirror takes no more bytes (cut, failed, timed out, or its
 * exchange already ended): later feeds are ignored, and the caller still ends m with
 * mirror_end or mirror_abort.
 */
int mirror_feed(struct mirror *m, const char *data, size_t n);

/*
 * The caller is done with m (the whole body was fed): m lives on until its exchange ends
 * (response read to its end, connection closed, or the timeout), then frees itself. The
 * caller must not use m afterwards.
 */
void mirror_end(struct mirror *m);

/*
 * The caller gives up (the primary failed mid-body): m closes now (counted cut unless its
 * exchange had already ended) and is freed. The caller must not use m afterwards.
 */
void mirror_abort(struct mirror *m);

/*
 * Closes every mirror of the calling thread on loop (worker shutdown; call before the loop
 * ends): those already ended by the caller are freed, the others are closed (counted cut)
 * and freed by their mirror_end or mirror_abort.
 */
void mirror_close_all(struct ev_loop *loop);

/* Mirrors of the calling thread on loop not yet freed (tests, /stats). */
unsigned mirror_live(struct ev_loop *loop);

#endif
