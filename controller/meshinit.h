/* meshinit: the mesh sidecar's traffic interception (`strait-controller mesh-init`). */
#ifndef STRAIT_MESHINIT_H
#define STRAIT_MESHINIT_H

#include <stddef.h>
#include <stdint.h>

#define MESHINIT_MAX_PORTS 64
#define MESHINIT_MAX_CIDRS 64

struct meshinit_cidr {
    int family;    /* AF_INET or AF_INET6 */
    char text[64]; /* canonical "address/len" */
};

struct meshinit_cfg {
    uint32_t proxy_uid;     /* the sidecar's UID: its own connections are never redirected */
    uint16_t inbound_port;  /* where inbound TCP to the pod goes */
    uint16_t outbound_port; /* where the pod's outbound TCP goes */
    uint16_t in_excluded[MESHINIT_MAX_PORTS];  /* destination ports left alone inbound */
    uint16_t out_excluded[MESHINIT_MAX_PORTS]; /* destination ports left alone outbound */
    unsigned n_in_excluded, n_out_excluded;
    struct meshinit_cidr cidrs[MESHINIT_MAX_CIDRS]; /* destinations left alone outbound */
    unsigned n_cidrs;
};

/* The defaults: proxy UID 2102, inbound 4143, outbound 4140, nothing excluded. */
void meshinit_defaults(struct meshinit_cfg *c);

/*
 * Parses a comma-separated list of ports (1-65535, duplicates dropped) into out (room for
 * MESHINIT_MAX_PORTS) and *n. An empty string is an empty list. 0, or -1 with err.
 */
int meshinit_parse_ports(const char *s, uint16_t *out, unsigned *n, char *err, size_t errlen);

/*
 * Parses a comma-separated list of IPv4 or IPv6 CIDRs ("10.0.0.0/8", "fd00::/8"; a bare
 * address is a host) into the config, canonical (host bits must be zero). 0, or -1 with err.
 */
int meshinit_parse_cidrs(const char *s, struct meshinit_cfg *c, char *err, size_t errlen);

/*
 * Writes the iptables-restore (AF_INET) or ip6tables-restore (AF_INET6) input for the nat
 * table into out (NUL-terminated; the CIDRs of that family only). Returns its length, or -1
 * with err (an invalid config, or out too small).
 */
int meshinit_rules(const struct meshinit_cfg *c, int family, char *out, size_t outlen, char *err,
                   size_t errlen);

/* `strait-controller mesh-init ARGS`: argv[0] is "mesh-init". Returns the exit status. */
int meshinit_main(int argc, char **argv);

#endif
