/*
 * tls: server-side TLS of the data plane - the process-wide base context (protocol floor,
 * ciphers, ALPN, the start-up self-signed certificate, the session-ticket key ring), the
 * per-snapshot certificate contexts and SNI table, and TLS transports (tp_tls.c) for
 * accepted connections.
 *
 * Threads: tls_init/tls_cleanup on the main thread before/after the workers run;
 * tls_snap_build wherever snapshots are built (main loop); everything else from any thread.
 */
#ifndef STRAIT_TLS_H
#define STRAIT_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "snapwire.h"
#include "transport.h"

#define TLS_DEFAULT_CERT_CN "Strait Default Certificate"
#define TLS_TICKET_ROTATION 3600.0     /* default seconds between ticket key rotations */
#define TLS_MAX_TICKET_LIFETIME 604800 /* RFC 8446 4.6.1: at most 7 days */

struct snapshot;

/*
 * Sets up the base context: generates the self-signed ECDSA P-256 certificate served for
 * unknown names when no snapshot default applies, and the first ticket key. rotation is the
 * ticket key lifetime in seconds (a ticket stays valid for two rotations). Returns 0, or -1
 * with err filled.
 */
int tls_init(double rotation, char *err, size_t errlen);
void tls_cleanup(void);

/*
 * Ticket keys from path instead of random ones (after tls_init): one or two 80-byte keys in
 * nginx's ssl_session_ticket_key format (16-byte name, 32-byte HMAC secret, 32-byte AES key;
 * `openssl rand 80`), the first encrypting, the second only decrypting, so that replicas
 * sharing the file resume each other's sessions. 0, or -1 with err.
 */
int tls_ticket_key_file(const char *path, char *err, size_t errlen);

/*
 * Random keys: a new current key, the previous one only decrypts (and asks for a fresh
 * ticket). Keys from a file: re-reads it, taking changed content (its owner rotates).
 */
void tls_ticket_rotate(void);

/* SHA-256 fingerprint (lower-case hex) of the start-up self-signed certificate. */
const char *tls_default_fingerprint(void);

/* Per-snapshot certificate contexts and SNI table; immutable once built. */
struct tls_snap;

/*
 * Builds the contexts of sw's tls_hosts (one per distinct cert/cert2/client CA/verify) and
 * of meta.default_cert. NULL with err filled (naming the certificate) when a PEM does not
 * load; *out NULL when the snapshot has no TLS data at all. Returns 0 or -1.
 */
/* Whether sw has anything for tls_snap_build (TLS hosts or a default certificate). */
static inline int tls_snap_wanted(const struct snapwire_snapshot *sw)
{
    return sw->n_tls_hosts > 0 || sw->meta.default_cert != SNAPWIRE_NONE;
}

int tls_snap_build(const struct snapwire_snapshot *sw, struct tls_snap **out, char *err,
                   size_t errlen);
void tls_snap_free(struct tls_snap *t);

/*
 * The context for a TLS server name (any case; NULL or "" for none): exact host, then a
 * one-label "*.suffix" wildcard, then meta.default_cert's; NULL when nothing applies (the
 * base context's self-signed certificate stays). t may be NULL.
 */
SSL_CTX *tls_snap_select(const struct tls_snap *t, const char *name);

/*
 * Turns t into a TLS server transport on the accepted socket fd (SSL_accept state). snap
 * (may be NULL) is the snapshot whose certificates the handshake uses: a reference is taken
 * and dropped when the handshake ends. Returns 0, or -1 (out of memory) with fd untouched.
 */
int tls_transport_accept(struct transport *t, int fd, struct snapshot *snap);

/* tls_transport_accept with the sessions made from ctx instead of the base context (the
 * mesh's server context, tls_mesh.c); snap may be NULL. Module side only. */
int tls_transport_accept_ctx(struct transport *t, int fd, SSL_CTX *ctx, struct snapshot *snap);

/*
 * Turns t into a TLS client transport: ssl (in connect state, made by the caller) on socket
 * fd, through the same socket BIO and with read-ahead, as accepted sessions (one recv per
 * record instead of a header read and a body read). Returns 0, or -1 with ssl and t untouched
 * (the caller still owns ssl). Module side only.
 */
int tls_transport_connect(struct transport *t, int fd, SSL *ssl);

extern const struct transport_ops transport_tls_ops;

/*
 * After a completed handshake: the upstream request header lines describing the client
 * certificate ("X-Client-Verify: SUCCESS|NONE\r\n" ...), malloc'd, when the host asked for
 * client certificates; NULL when it did not (or out of memory).
 */
char *tls_client_headers(const struct transport *t);

/*
 * 1 when a request for host (lower case, NUL-terminated) may be answered on the TLS
 * connection tp: the context host's own SNI would select asks for no client certificate, or
 * for the same policy (mode and CA bundle) the connection's handshake ran under. 0: the
 * client named another host in SNI than in Host and would skip that host's client
 * certificate check; answer 421 (RFC 9110 15.5.20), as nginx does.
 */
int tls_policy_allows(const struct tls_snap *t, const char *host, const struct transport *tp);

/* ex_data free callback for a malloc'd block (SSL and SSL_CTX indexes of tls*.c). */
void tls_exdata_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp);

/* The base context new sessions start from (tp_tls.c); NULL before tls_init. */
SSL_CTX *tls_base_ctx(void);

#endif
