/*
 * listener: turns "ADDR:PORT" into a bound, listening, non-blocking socket.
 * Does not: accept connections (worker and admin own their accept watchers).
 * Invariant: only numeric addresses (and "localhost") are accepted, so startup never blocks
 * on DNS.
 */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int listener_parse(const char *spec, struct sockaddr_storage *ss, socklen_t *len, char *err,
                   size_t errlen)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    char host[128];
    const char *colon, *hs = spec;
    size_t hl;
    char *end;
    long port;

    memset(ss, 0, sizeof(*ss));
    if (spec[0] == '[') {
        const char *rb = strchr(spec, ']');
        if (!rb || rb[1] != ':') goto bad;
        hs = spec + 1;
        hl = (size_t)(rb - hs);
        colon = rb + 1;
    } else {
        colon = strrchr(spec, ':');
        if (!colon) goto bad;
        hl = (size_t)(colon - spec);
    }
    if (hl >= sizeof(host)) goto bad;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || port < 0 || port > 65535) goto bad;
    if (strcmp(host, "localhost") == 0 || host[0] == '\0')
        strcpy(host, host[0] ? "127.0.0.1" : "0.0.0.0");
    if (spec[0] != '[' && inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        *len = sizeof(*sin);
        return 0;
    }
    if (spec[0] == '[' && inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*sin6);
        return 0;
    }
bad:
    snprintf(err, errlen, "bad address \"%s\" (want IPv4:PORT, [IPv6]:PORT or localhost:PORT)",
             spec);
    return -1;
}

int listener_open(const struct sockaddr *sa, socklen_t len, int reuseport, char *err, size_t errlen)
{
    int fd, one = 1;
    char a[80];

    fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)) {
        snprintf(err, errlen, "setsockopt: %s", strerror(errno));
        goto close_fd;
    }
    if (sa->sa_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, sa, len) < 0) {
        snprintf(err, errlen, "bind %s: %s", listener_format(sa, a, sizeof(a)), strerror(errno));
        goto close_fd;
    }
    if (listen(fd, 511) < 0) {
        snprintf(err, errlen, "listen: %s", strerror(errno));
        goto close_fd;
    }
    return fd;

close_fd:
    close(fd);
    return -1;
}

const char *listener_format(const struct sockaddr *sa, char *buf, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";

    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, n, "[%s]:%u", ip, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(buf, n, "%s:%u", ip, ntohs(s4->sin_port));
    }
    return buf;
}
