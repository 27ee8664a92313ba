/*
 * netaddr: turns "ADDR:PORT" into a bound, listening, non-blocking socket.
 *
 * Does: parse and format socket addresses, spell IP literals canonically, open listening
 * TCP sockets for the proxy and the admin ports of both binaries.
 * Does not: accept connections (their owners run the accept watchers), or SO_REUSEPORT
 * (only the data plane's worker listeners want it; dataplane/listener.c adds it).
 * Invariant: only numeric addresses (and "localhost") are accepted, so startup never blocks
 * on DNS.
 */
#include "netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NETADDR_BACKLOG 511

int netaddr_parse(const char *spec, struct sockaddr_storage *ss, socklen_t *len, char *err,
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
    if (errno || *end || end == colon + 1 || colon[1] == '-' || colon[1] == '+' || port < 0 ||
        port > 65535)
        goto bad;
    if (spec[0] != '[' && (strcmp(host, "localhost") == 0 || host[0] == '\0'))
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

const char *netaddr_format(const struct sockaddr *sa, char *buf, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";

    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, n, "[%s]:%u", ip, ntohs(s6->sin6_port));
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(buf, n, "%s:%u", ip, ntohs(s4->sin_port));
    } else {
        snprintf(buf, n, "?");
    }
    return buf;
}

int netaddr_socket(int family, char *err, size_t errlen)
{
    int fd, one = 1;

    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
        snprintf(err, errlen, "setsockopt SO_REUSEADDR: %s", strerror(errno));
        close(fd);
        return -1;
    }
    /* "[::]:80" means IPv6 only; a dual-stack socket would collide with a 0.0.0.0 listener */
    if (family == AF_INET6) (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    return fd;
}

int netaddr_bind_listen(int fd, const struct sockaddr *sa, socklen_t len, char *err, size_t errlen)
{
    char a[NETADDR_STRLEN];

    if (bind(fd, sa, len) < 0) {
        snprintf(err, errlen, "bind %s: %s", netaddr_format(sa, a, sizeof(a)), strerror(errno));
        return -1;
    }
    if (listen(fd, NETADDR_BACKLOG) < 0) {
        snprintf(err, errlen, "listen %s: %s", netaddr_format(sa, a, sizeof(a)), strerror(errno));
        return -1;
    }
    return 0;
}

int netaddr_listen(const struct sockaddr *sa, socklen_t len, char *err, size_t errlen)
{
    int fd = netaddr_socket(sa->sa_family, err, errlen);

    if (fd < 0) return -1;
    if (netaddr_bind_listen(fd, sa, len, err, errlen) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

const char *netaddr_local(int fd, char *buf, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        snprintf(buf, n, "?");
        return buf;
    }
    return netaddr_format((struct sockaddr *)&ss, buf, n);
}

int netaddr_unmap(const struct sockaddr *sa, struct sockaddr_storage *out, socklen_t *len)
{
    memset(out, 0, sizeof(*out));
    if (sa->sa_family == AF_INET6 &&
        IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)sa)->sin6_addr)) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        struct sockaddr_in *s4 = (struct sockaddr_in *)out;
        s4->sin_family = AF_INET;
        s4->sin_port = s6->sin6_port;
        memcpy(&s4->sin_addr, &s6->sin6_addr.s6_addr[12], 4);
        *len = sizeof(*s4);
        return 0;
    }
    if (sa->sa_family == AF_INET) {
        memcpy(out, sa, sizeof(struct sockaddr_in));
        *len = sizeof(struct sockaddr_in);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
        memcpy(s6, sa, sizeof(*s6));
        s6->sin6_flowinfo = 0;
        *len = sizeof(*s6);
        return 0;
    }
    return -1;
}

unsigned netaddr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6) return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

int netaddr_equal(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family) return 0;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a;
        const struct sockaddr_in *y = (const struct sockaddr_in *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return 0;
}

int netaddr_ip_canonical(const char *ip, char *out, size_t n)
{
    struct sockaddr_storage ss, u;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    socklen_t ul;

    if (n) *out = '\0';
    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1)
        ss.ss_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1)
        ss.ss_family = AF_INET6;
    else
        return -1;
    netaddr_unmap((const struct sockaddr *)&ss, &u, &ul); /* the v4-mapped fold */
    return inet_ntop(u.ss_family,
                     u.ss_family == AF_INET
                         ? (const void *)&((const struct sockaddr_in *)&u)->sin_addr
                         : (const void *)&((const struct sockaddr_in6 *)&u)->sin6_addr,
                     out, (socklen_t)n)
               ? 0
               : -1;
}
