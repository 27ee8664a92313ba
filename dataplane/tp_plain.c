/*
 * tp_plain: the plain TCP transport - send(2)/recv(2) on the socket, nothing held.
 *
 * Does: the transport ops for cleartext connections, each a direct system call (no
 * allocation, no state beyond the fd), so the plaintext hot path costs what it did before
 * the ops table existed.
 * Does not: buffer, retry, or close anything but the fd it was given.
 * Invariant: want is never set (a plain socket has no cross-direction needs).
 */
#include <sys/socket.h>
#include <unistd.h>

#include "transport.h"

static ssize_t plain_send(struct transport *t, const void *buf, size_t len, int flags)
{
    return transport_sock_send(t->fd, buf, len, flags);
}

static ssize_t plain_recv(struct transport *t, void *buf, size_t len)
{
    return transport_sock_recv(t->fd, buf, len);
}

static int plain_handshake(struct transport *t)
{
    (void)t;
    return 1;
}

static int plain_pending(const struct transport *t)
{
    (void)t;
    return 0;
}

static int plain_shutdown_write(struct transport *t)
{
    return shutdown(t->fd, SHUT_WR);
}

static void plain_close(struct transport *t)
{
    if (t->fd >= 0) close(t->fd);
    t->fd = -1;
}

const struct transport_ops transport_plain_ops = {
    .name = "plain",
    .send = plain_send,
    .recv = plain_recv,
    .handshake = plain_handshake,
    .pending = plain_pending,
    .shutdown_write = plain_shutdown_write,
    .close = plain_close,
};
