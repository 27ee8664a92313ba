/*
 * units: the size syntax both binaries accept, in one place: the data plane's
 * --client-max-body-size flag and the controller's strait.dev/proxy-body-size annotation use
 * the same words, as nginx's client_max_body_size and ingress-nginx's proxy-body-size do.
 * Durations (the controller's --mesh-leaf-ttl) too.
 */
#ifndef STRAIT_UNITS_H
#define STRAIT_UNITS_H

#include <stdint.h>

/*
 * Parses a size: a non-negative decimal integer, optionally followed by one suffix k/K
 * (x1024), m/M (x1024^2) or g/G (x1024^3). Nothing else is allowed: no sign, no spaces, no
 * fraction, no "b". Returns 0 with *out set (0 for "0": what zero means is the caller's
 * business), or -1 when s is NULL, empty, malformed or the value does not fit 64 bits.
 */
int units_parse_size(const char *s, uint64_t *out);

/*
 * Parses a duration as Go's time.ParseDuration writes the common ones: one or more
 * "<digits><unit>" terms, unit ms, s, m, h or d (24 h), e.g. "24h", "1h30m", "20s", "500ms";
 * a bare decimal integer is seconds. No sign, spaces or fractions. Returns 0 with *ms set
 * (milliseconds), or -1 when s is NULL, empty, malformed or the total overflows 64 bits.
 */
int units_parse_duration(const char *s, uint64_t *ms);

#endif
