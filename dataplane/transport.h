/*
 * transport: how a connection's bytes reach the socket - plain TCP (tp_plain.c) or TLS
 * (tp_tls.c) - behind one const ops table, for client connections (conn.c) and upstream
 * connections alike.
 *
 * A struct transport is embedded in whatever owns the socket; it never allocates for the
 * plain case (ops, fd, no session). The calls keep the semantics of send(2)/recv(2): a
 * count, 0 for the peer's orderly end (recv), or -1 with errno (EAGAIN: try again later).
 * A TLS session may need the other direction first (SSL_read wanting to write, SSL_write
 * wanting to read): the call then fails with EAGAIN and sets a bit in want, and the owner
 * must watch for that direction and repeat the same call when it is ready. A TLS session
 * may also hold decrypted bytes while the socket is empty (transport_pending): a reader
 * driven by a level-triggered loop must read those without waiting for the socket.
 */
#ifndef STRAIT_TRANSPORT_H
#define STRAIT_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* transport.want */
#define TRANSPORT_RECV_WANTS_WRITE 0x01 /* repeat recv (or handshake) once writable */
#define TRANSPORT_SEND_WANTS_READ 0x02  /* repeat send once readable */

struct transport;

struct transport_ops {
    const char *name; /* "plain", "tls" */
    /* flags: MSG_* for send(2); MSG_MORE (more follows at once) holds TLS records too */
    ssize_t (*send)(struct transport *t, const void *buf, size_t len, int flags);
    ssize_t (*recv)(struct transport *t, void *buf, size_t len);
    /*
     * Moves the handshake on: 1 when done (always for plain), 0 when it needs more
     * (socket read or, with TRANSPORT_RECV_WANTS_WRITE, write), -1 when it failed.
     */
    int (*handshake)(struct transport *t);
    /* Decrypted bytes held by the session, readable without touching the socket. */
    int (*pending)(const struct transport *t);
    /*
     * End of our stream: TLS sends close_notify (once, without waiting for the peer's),
     * then the socket's write side is shut (FIN). Returns 0, or -1 with errno.
     */
    int (*shutdown_write)(struct transport *t);
    /* Frees the session (after a close_notify if none was sent) and closes the socket. */
    void (*close)(struct transport *t);
    /*
     * The connection waits for its peer with nothing in flight either way (keep-alive
     * between requests): TLS gives back its record buffers. NULL: nothing to give back.
     */
    void (*idle)(struct transport *t);
};

/*
 * transport.priv bit the owner may set before close: an abortive close (the owner resets the
 * socket with SO_LINGER 0), so TLS sends no close_notify that would pass for a clean end.
 * The implementations keep their own bits below it.
 */
#define TRANSPORT_PRIV_ABORT 0x80

struct transport {
    const struct transport_ops *ops;
    int fd;
    uint8_t want; /* TRANSPORT_* bits set by the last call that returned EAGAIN */
    uint8_t priv; /* the implementation's own state bits */
    void *sess;   /* the TLS session (SSL *), NULL for plain */
};

extern const struct transport_ops transport_plain_ops;

/*
 * send(2)/recv(2) without glibc's cancellation-point wrappers: worker threads are never
 * cancelled, and the wrappers' enable/disable pair was ~2 % of the data plane's CPU per
 * request (perf, run 5). Same arguments, return value and errno as the libc calls. Also
 * what a lingering close uses to drain a socket under any transport.
 */
static inline ssize_t transport_sock_send(int fd, const void *buf, size_t len, int flags)
{
    return syscall(SYS_sendto, fd, buf, len, flags, NULL, 0);
}
static inline ssize_t transport_sock_recv(int fd, void *buf, size_t len)
{
    return syscall(SYS_recvfrom, fd, buf, len, 0, NULL, NULL);
}

/* A plain transport on fd (no allocation). */
static inline void transport_plain_init(struct transport *t, int fd)
{
    t->ops = &transport_plain_ops;
    t->fd = fd;
    t->want = t->priv = 0;
    t->sess = NULL;
}

static inline ssize_t transport_send(struct transport *t, const void *buf, size_t len, int flags)
{
    return t->ops->send(t, buf, len, flags);
}
static inline ssize_t transport_recv(struct transport *t, void *buf, size_t len)
{
    return t->ops->recv(t, buf, len);
}
/* Plain never holds bytes: no indirect call on the plain hot path. */
static inline int transport_pending(const struct transport *t)
{
    return t->sess ? t->ops->pending(t) : 0;
}
static inline void transport_idle(struct transport *t)
{
    if (t->ops->idle) t->ops->idle(t);
}
static inline int transport_is_tls(const struct transport *t)
{
    return t->sess != NULL;
}

#endif
