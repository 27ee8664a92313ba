/*
 * listener: address parsing and listening sockets for the proxy and admin ports.
 */
#ifndef STRAIT_LISTENER_H
#define STRAIT_LISTENER_H

#include <stddef.h>
#include <sys/socket.h>

/*
 * Parses "ADDR:PORT" where ADDR is an IPv4 literal, "[v6]" or "localhost" (127.0.0.1).
 * Returns 0, or -1 with err filled.
 */
int listener_parse(const char *spec, struct sockaddr_storage *ss, socklen_t *len, char *err,
                   size_t errlen);

/*
 * Opens a non-blocking listening TCP socket on sa (SO_REUSEADDR, and SO_REUSEPORT when
 * reuseport). Returns the fd, or -1 with err filled.
 */
int listener_open(const struct sockaddr *sa, socklen_t len, int reuseport, char *err,
                  size_t errlen);

/* Formats sa as "1.2.3.4:80" or "[::1]:80" into buf. Returns buf. */
const char *listener_format(const struct sockaddr *sa, char *buf, size_t n);

#endif
