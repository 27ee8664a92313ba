/*
 * listener: the workers' listening sockets.
 *
 * Does: add SO_REUSEPORT to a common/netaddr socket so each worker thread owns a listener
 * on the same port and the kernel spreads connections between them; TCP_NODELAY, which
 * Linux copies to every accepted socket (saves a setsockopt per connection); and
 * TCP_DEFER_ACCEPT, so a connection is handed to accept() once its first bytes are there
 * (like nginx's "deferred"): the worker reads the request right after accepting instead of
 * waiting for another epoll round. A client that connects and stays silent is accepted
 * after LISTENER_DEFER_SECONDS anyway (when it answers the retransmitted SYN-ACK), so its
 * header timeout still runs, just that much later.
 * Does not: parse addresses (netaddr_parse) or accept connections (worker.c).
 * Invariant: SO_REUSEPORT is set before bind, or the second worker's bind fails.
 */
#include "listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int listener_open(const struct sockaddr *sa, socklen_t len, int reuseport, char *err, size_t errlen)
{
    int fd, one = 1, defer = LISTENER_DEFER_SECONDS;

    fd = netaddr_socket(sa->sa_family, err, errlen);
    if (fd < 0) return -1;
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        snprintf(err, errlen, "setsockopt SO_REUSEPORT: %s", strerror(errno));
        goto close_fd;
    }
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof(defer));
    if (netaddr_bind_listen(fd, sa, len, err, errlen) < 0) goto close_fd;
    return fd;

close_fd:
    close(fd);
    return -1;
}
