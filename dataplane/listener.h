/*
 * listener: the data plane's proxy listening sockets (one per worker, SO_REUSEPORT).
 * Address parsing and plain listening sockets live in common/netaddr.h.
 */
#ifndef STRAIT_LISTENER_H
#define STRAIT_LISTENER_H

#include <stddef.h>
#include <sys/socket.h>

#include "netaddr.h"

#define LISTENER_DEFER_SECONDS 1 /* TCP_DEFER_ACCEPT: how long a silent client is held back */

/*
 * Opens a non-blocking listening TCP socket on sa (netaddr_socket options, plus SO_REUSEPORT
 * when reuseport, so every worker can bind the same port). Returns the fd, or -1 with err
 * filled.
 */
int listener_open(const struct sockaddr *sa, socklen_t len, int reuseport, char *err,
                  size_t errlen);

/* Formats sa as "1.2.3.4:80" or "[::1]:80" into buf. Returns buf. */
static inline const char *listener_format(const struct sockaddr *sa, char *buf, size_t n)
{
    return netaddr_format(sa, buf, n);
}

#endif
