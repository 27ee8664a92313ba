/*
 * netaddr: "ADDR:PORT" parsing and formatting, canonical IP text, and listening TCP sockets, for
 * both binaries.
 */
#ifndef STRAIT_NETADDR_H
#define STRAIT_NETADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* Longest string netaddr_format writes, NUL included ("[v6 literal]:65535"). */
#define NETADDR_STRLEN 64

/*
 * Parses "ADDR:PORT" where ADDR is an IPv4 literal, "[v6]", "localhost" (127.0.0.1) or empty
 * (0.0.0.0). Never resolves names. Returns 0 with *ss and *len set, or -1 with err filled.
 */
int netaddr_parse(const char *spec, struct sockaddr_storage *ss, socklen_t *len, char *err,
                  size_t errlen);

/* Formats sa as "1.2.3.4:80" or "[::1]:80" into buf (NETADDR_STRLEN is enough). Returns buf. */
const char *netaddr_format(const struct sockaddr *sa, char *buf, size_t n);

/*
 * A TCP socket of family, non-blocking, close-on-exec, SO_REUSEADDR (and IPV6_V6ONLY for
 * AF_INET6), not yet bound: callers may add options before netaddr_bind_listen. Returns the
 * fd, or -1 with err filled.
 */
int netaddr_socket(int family, char *err, size_t errlen);

/* Binds fd to sa and listens. Returns 0, or -1 with err filled (fd left open). */
int netaddr_bind_listen(int fd, const struct sockaddr *sa, socklen_t len, char *err, size_t errlen);

/* netaddr_socket + netaddr_bind_listen. Returns the listening fd, or -1 with err filled. */
int netaddr_listen(const struct sockaddr *sa, socklen_t len, char *err, size_t errlen);

/*
 * sa copied into out (zeroed first) as the one form of its address: a v4-mapped IPv6 address
 * (::ffff:a.b.c.d) as AF_INET, IPv6 without its flow label. 0, or -1 (family other than
 * AF_INET / AF_INET6).
 */
int netaddr_unmap(const struct sockaddr *sa, struct sockaddr_storage *out, socklen_t *len);

/* The port of sa (host order); 0 for a family other than AF_INET / AF_INET6. */
unsigned netaddr_port(const struct sockaddr *sa);

/*
 * Same family, address and port (and IPv6 scope); 0 for families other than AF_INET and
 * AF_INET6.
 */
int netaddr_equal(const struct sockaddr *a, const struct sockaddr *b);

/*
 * An IP literal (no brackets, no port) as inet_ntop spells it into out (INET6_ADDRSTRLEN, 46
 * bytes, is enough), an IPv4-mapped IPv6 address ("::ffff:10.0.0.1") as its IPv4 address: one
 * address, one text. Returns 0, or -1 when ip is not an IPv4 or IPv6 literal (out "").
 */
int netaddr_ip_canonical(const char *ip, char *out, size_t n);

/* Local address of a bound socket formatted into buf (port 0 resolved), or "?". Returns buf. */
const char *netaddr_local(int fd, char *buf, size_t n);

#endif
