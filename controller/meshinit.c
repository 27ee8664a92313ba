/*
 * meshinit: `strait-controller mesh-init`, the mesh sidecar's init container. It installs
 * the pod's traffic interception with iptables-restore, in the pod's network namespace:
 * inbound TCP to the pod goes to the sidecar's inbound port, the pod's outbound TCP to its
 * outbound port (the sidecar reads the original destination with SO_ORIGINAL_DST).
 *
 * Does: validate the flags (ports, UID, CIDRs), build the nat table as iptables-restore
 * input (one set of STRAIT_* chains; PREROUTING and OUTPUT jump to them), print it
 * (--dry-run) or feed it to iptables-restore, log what was installed. Left alone: the
 * sidecar's own connections (owner UID), loopback (the sidecar forwards inbound traffic to
 * the app on localhost; the app's calls to localhost stay local), excluded destination
 * ports inbound and outbound, excluded destination CIDRs outbound.
 * IPv6 gets the same rules through ip6tables-restore (--ipv6 auto|on|off).
 * Does not: touch the filter table, or run in the host's namespace on purpose (it is meant
 * for a pod's init container with NET_ADMIN only).
 * Invariants: each family's whole nat table is replaced in one restore transaction, so a
 * re-run (an init container restarted) gives the same rules, never duplicates, and a
 * failed restore leaves that table as it was; every flag is checked before either table is
 * touched.
 */
#include "meshinit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

#define MULTIPORT_MAX 15 /* the multiport match takes at most 15 ports per rule */

void meshinit_defaults(struct meshinit_cfg *c)
{
    memset(c, 0, sizeof(*c));
    c->proxy_uid = 2102;
    c->inbound_port = 4143;
    c->outbound_port = 4140;
}

static int parse_port(const char *s, size_t len, uint16_t *out)
{
    unsigned long v = 0;
    size_t i;

    if (len == 0 || len > 5) return -1;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v < 1 || v > 65535) return -1;
    *out = (uint16_t)v;
    return 0;
}

/*
 * The next item of the comma-separated list at *p into item/len, *p moved past it: 1, or 0
 * at the end (an empty list has no items), or -1 when the list ends with a comma.
 */
static int list_next(const char **p, const char **item, size_t *len)
{
    const char *e;

    if (!**p) return 0;
    e = strchr(*p, ',');
    *item = *p;
    *len = e ? (size_t)(e - *p) : strlen(*p);
    *p = e ? e + 1 : *p + *len;
    return e && !**p ? -1 : 1;
}

int meshinit_parse_ports(const char *s, uint16_t *out, unsigned *n, char *err, size_t errlen)
{
    const char *p = s, *item;
    size_t len;
    int rc;

    *n = 0;
    while ((rc = list_next(&p, &item, &len)) > 0) {
        uint16_t port;
        unsigned i;

        if (parse_port(item, len, &port) < 0) {
            snprintf(err, errlen, "port list \"%s\": \"%.*s\" is not a port (1-65535)", s,
                     (int)(len > 16 ? 16 : len), item);
            return -1;
        }
        for (i = 0; i < *n && out[i] != port; i++)
            ;
        if (i < *n) continue; /* a duplicate */
        if (*n == MESHINIT_MAX_PORTS) {
            snprintf(err, errlen, "port list \"%.32s...\": more than %d ports", s,
                     MESHINIT_MAX_PORTS);
            return -1;
        }
        out[(*n)++] = port;
    }
    if (rc < 0) {
        snprintf(err, errlen, "port list \"%s\" ends with a comma", s);
        return -1;
    }
    return 0;
}

/* One IPv4 or IPv6 CIDR of len bytes at s into out (canonical). 0, or -1 with err. */
static int parse_cidr(const char *s, size_t len, struct meshinit_cidr *out, char *err,
                      size_t errlen)
{
    char addr[64], canon[INET6_ADDRSTRLEN];
    const char *slash = memchr(s, '/', len);
    size_t alen = slash ? (size_t)(slash - s) : len, i;
    unsigned char a[16], masked[16];
    unsigned long bits, max;
    int fam;

    if (alen == 0 || alen >= sizeof(addr)) goto bad;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    if (inet_pton(AF_INET, addr, a) == 1)
        fam = AF_INET, max = 32;
    else if (inet_pton(AF_INET6, addr, a) == 1)
        fam = AF_INET6, max = 128;
    else
        goto bad;
    bits = max;
    if (slash) {
        size_t blen = len - alen - 1;
        if (blen == 0 || blen > 3) goto bad;
        bits = 0;
        for (i = 0; i < blen; i++) {
            char ch = slash[1 + i];
            if (ch < '0' || ch > '9') goto bad;
            bits = bits * 10 + (unsigned long)(ch - '0');
        }
        if (bits > max) goto bad;
    }
    memcpy(masked, a, sizeof(a));
    for (i = 0; i < max / 8; i++) {
        unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? (unsigned)(bits - 8 * i) : 0;
        masked[i] &= (unsigned char)(keep ? 0xff << (8 - keep) : 0);
    }
    if (memcmp(masked, a, max / 8) != 0) {
        inet_ntop(fam, masked, canon, sizeof(canon));
        snprintf(err, errlen, "CIDR \"%.*s\": host bits set (did you mean %s/%lu?)",
                 (int)(len > 60 ? 60 : len), s, canon, bits);
        return -1;
    }
    inet_ntop(fam, a, canon, sizeof(canon));
    out->family = fam;
    snprintf(out->text, sizeof(out->text), "%s/%lu", canon, bits);
    return 0;
bad:
    snprintf(err, errlen, "\"%.*s\" is not an IP address or CIDR", (int)(len > 60 ? 60 : len), s);
    return -1;
}

int meshinit_parse_cidrs(const char *s, struct meshinit_cfg *c, char *err, size_t errlen)
{
    const char *p = s, *item;
    size_t len;
    int rc;

    c->n_cidrs = 0;
    while ((rc = list_next(&p, &item, &len)) > 0) {
        if (c->n_cidrs == MESHINIT_MAX_CIDRS) {
            snprintf(err, errlen, "more than %d CIDRs", MESHINIT_MAX_CIDRS);
            return -1;
        }
        if (parse_cidr(item, len, &c->cidrs[c->n_cidrs], err, errlen) < 0) return -1;
        c->n_cidrs++;
    }
    if (rc < 0) {
        snprintf(err, errlen, "CIDR list \"%s\" ends with a comma", s);
        return -1;
    }
    return 0;
}

struct out {
    char *p;
    size_t len, cap;
    int full;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o->full) return;
    va_start(ap, fmt);
    n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len) {
        o->full = 1;
        return;
    }
    o->len += (size_t)n;
}

/* RETURN rules for ports in chain, MULTIPORT_MAX at a time. */
static void put_port_returns(struct out *o, const char *chain, const uint16_t *ports, unsigned n)
{
    unsigned i, k;

    for (i = 0; i < n; i += MULTIPORT_MAX) {
        put(o, "-A %s -p tcp -m multiport --dports ", chain);
        for (k = i; k < n && k < i + MULTIPORT_MAX; k++)
            put(o, "%s%u", k > i ? "," : "", ports[k]);
        put(o, " -j RETURN\n");
    }
}

static int has_port(const uint16_t *ports, unsigned n, uint16_t p)
{
    unsigned i;

    for (i = 0; i < n; i++)
        if (ports[i] == p) return 1;
    return 0;
}

int meshinit_rules(const struct meshinit_cfg *c, int family, char *buf, size_t buflen, char *err,
                   size_t errlen)
{
    struct out o = {buf, 0, buflen, 0};
    unsigned i;

    if (!c->inbound_port || !c->outbound_port || c->inbound_port == c->outbound_port) {
        snprintf(err, errlen, "the inbound and outbound ports must be two different ports");
        return -1;
    }
    if (has_port(c->in_excluded, c->n_in_excluded, c->inbound_port)) {
        snprintf(err, errlen, "the inbound port %u cannot be excluded from inbound interception",
                 c->inbound_port);
        return -1;
    }
    if (buflen == 0) {
        snprintf(err, errlen, "no room for the rules");
        return -1;
    }
    put(&o, "# strait mesh-init (%s): proxy uid %u, inbound port %u, outbound port %u\n",
        family == AF_INET6 ? "IPv6" : "IPv4", c->proxy_uid, c->inbound_port, c->outbound_port);
    put(&o, "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
            ":POSTROUTING ACCEPT [0:0]\n");
    put(&o, ":STRAIT_INBOUND - [0:0]\n:STRAIT_IN_REDIRECT - [0:0]\n"
            ":STRAIT_OUTBOUND - [0:0]\n:STRAIT_OUT_REDIRECT - [0:0]\n");
    /* inbound: everything that reaches the pod from outside, but excluded ports */
    put(&o, "-A STRAIT_IN_REDIRECT -p tcp -j REDIRECT --to-ports %u\n", c->inbound_port);
    put_port_returns(&o, "STRAIT_INBOUND", c->in_excluded, c->n_in_excluded);
    put(&o, "-A STRAIT_INBOUND -p tcp -j STRAIT_IN_REDIRECT\n");
    put(&o, "-A PREROUTING -p tcp -j STRAIT_INBOUND\n");
    /* outbound: the app's connections, not the sidecar's, not loopback, not excluded */
    put(&o, "-A STRAIT_OUT_REDIRECT -p tcp -j REDIRECT --to-ports %u\n", c->outbound_port);
    put(&o, "-A STRAIT_OUTBOUND -m owner --uid-owner %u -j RETURN\n", c->proxy_uid);
    put(&o, "-A STRAIT_OUTBOUND -o lo -j RETURN\n");
    put_port_returns(&o, "STRAIT_OUTBOUND", c->out_excluded, c->n_out_excluded);
    for (i = 0; i < c->n_cidrs; i++)
        if (c->cidrs[i].family == family)
            put(&o, "-A STRAIT_OUTBOUND -d %s -j RETURN\n", c->cidrs[i].text);
    put(&o, "-A STRAIT_OUTBOUND -p tcp -j STRAIT_OUT_REDIRECT\n");
    put(&o, "-A OUTPUT -p tcp -j STRAIT_OUTBOUND\n");
    put(&o, "COMMIT\n");
    if (o.full) {
        snprintf(err, errlen, "the rules do not fit in %zu bytes", buflen);
        return -1;
    }
    return (int)o.len;
}

/* Runs `cmd -w` with the rules on its stdin. 0, or -1 with err (-2: cmd could not be run). */
static int run_restore(const char *cmd, const char *rules, size_t len, char *err, size_t errlen)
{
    int fds[2], status;
    pid_t pid;
    size_t off = 0;

    if (pipe(fds) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[0], 0);
        close(fds[0]);
        close(fds[1]);
        execlp(cmd, cmd, "-w", (char *)NULL);
        fprintf(stderr, "mesh-init: %s: %s\n", cmd, strerror(errno));
        _exit(127);
    }
    close(fds[0]);
    signal(SIGPIPE, SIG_IGN);
    while (off < len) {
        ssize_t n = write(fds[1], rules + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        off += (size_t)n;
    }
    close(fds[1]);
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            snprintf(err, errlen, "waitpid: %s", strerror(errno));
            return -1;
        }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && off == len) return 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
        snprintf(err, errlen, "%s could not be run", cmd);
        return -2;
    }
    snprintf(err, errlen, "%s failed (status %d)", cmd,
             WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return -1;
}

enum { IPV6_AUTO, IPV6_ON, IPV6_OFF };

/* The namespace has IPv6 (an address on some interface: /proc/net/if_inet6 not empty). */
static int ipv6_enabled(void)
{
    FILE *f = fopen("/proc/net/if_inet6", "r");
    int c;

    if (!f) return 0;
    c = fgetc(f);
    fclose(f);
    return c != EOF;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: strait-controller mesh-init [--proxy-uid UID] [--inbound-port PORT]\n"
               "         [--outbound-port PORT] [--exclude-inbound-ports P,P...]\n"
               "         [--exclude-outbound-ports P,P...] [--exclude-outbound-cidrs CIDR,...]\n"
               "         [--ipv6 auto|on|off] [--iptables-restore CMD]\n"
               "         [--ip6tables-restore CMD] [--dry-run] [--log-level LEVEL]\n"
               "Installs the mesh sidecar's traffic interception in this network namespace\n"
               "(a pod's init container with NET_ADMIN): inbound TCP to --inbound-port (4143),\n"
               "outbound TCP to --outbound-port (4140), except the proxy's own (UID 2102),\n"
               "loopback and the excluded ports and CIDRs (IPv4 and IPv6). IPv6 rules too\n"
               "with --ipv6 on, or auto (default) when the namespace has IPv6 and\n"
               "ip6tables-restore is there. --dry-run prints the rules.\n");
}

int meshinit_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"proxy-uid", required_argument, NULL, 'u'},
        {"inbound-port", required_argument, NULL, 'i'},
        {"outbound-port", required_argument, NULL, 'o'},
        {"exclude-inbound-ports", required_argument, NULL, 'I'},
        {"exclude-outbound-ports", required_argument, NULL, 'O'},
        {"exclude-outbound-cidrs", required_argument, NULL, 'C'},
        {"iptables-restore", required_argument, NULL, 'r'},
        {"ip6tables-restore", required_argument, NULL, 'R'},
        {"ipv6", required_argument, NULL, '6'},
        {"dry-run", no_argument, NULL, 'n'},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct meshinit_cfg c;
    const char *restore = "iptables-restore";
    enum log_level level = LOG_LEVEL_INFO;
    const char *restore6 = "ip6tables-restore";
    char err[256], rules[16384], rules6[16384];
    int opt, dry = 0, n, n6, ipv6 = IPV6_AUTO;

    meshinit_defaults(&c);
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end;
        unsigned long v;
        switch (opt) {
        case 'u':
            errno = 0;
            v = strtoul(optarg, &end, 10);
            if (!*optarg || *end || errno || v > UINT32_MAX - 1 || optarg[0] == '-') {
                fprintf(stderr, "mesh-init: --proxy-uid \"%s\" is not a UID\n", optarg);
                return 2;
            }
            c.proxy_uid = (uint32_t)v;
            break;
        case 'i':
        case 'o':
            if (parse_port(optarg, strlen(optarg),
                           opt == 'i' ? &c.inbound_port : &c.outbound_port) < 0) {
                fprintf(stderr, "mesh-init: --%s \"%s\" is not a port (1-65535)\n",
                        opt == 'i' ? "inbound-port" : "outbound-port", optarg);
                return 2;
            }
            break;
        case 'I':
        case 'O':
            if (meshinit_parse_ports(optarg, opt == 'I' ? c.in_excluded : c.out_excluded,
                                     opt == 'I' ? &c.n_in_excluded : &c.n_out_excluded, err,
                                     sizeof(err)) < 0) {
                fprintf(stderr, "mesh-init: --%s: %s\n",
                        opt == 'I' ? "exclude-inbound-ports" : "exclude-outbound-ports", err);
                return 2;
            }
            break;
        case 'C':
            if (meshinit_parse_cidrs(optarg, &c, err, sizeof(err)) < 0) {
                fprintf(stderr, "mesh-init: --exclude-outbound-cidrs: %s\n", err);
                return 2;
            }
            break;
        case 'r':
            restore = optarg;
            break;
        case 'R':
            restore6 = optarg;
            break;
        case '6':
            if (strcmp(optarg, "auto") == 0)
                ipv6 = IPV6_AUTO;
            else if (strcmp(optarg, "on") == 0)
                ipv6 = IPV6_ON;
            else if (strcmp(optarg, "off") == 0)
                ipv6 = IPV6_OFF;
            else {
                fprintf(stderr, "mesh-init: --ipv6 \"%s\": auto, on or off\n", optarg);
                return 2;
            }
            break;
        case 'n':
            dry = 1;
            break;
        case 'l':
            if (log_level_parse(optarg, &level) < 0) {
                fprintf(stderr, "mesh-init: unknown --log-level \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    log_init("mesh-init", level);
    if ((n = meshinit_rules(&c, AF_INET, rules, sizeof(rules), err, sizeof(err))) < 0 ||
        (n6 = meshinit_rules(&c, AF_INET6, rules6, sizeof(rules6), err, sizeof(err))) < 0) {
        fprintf(stderr, "mesh-init: %s\n", err);
        return 2;
    }
    if (ipv6 == IPV6_AUTO) ipv6 = ipv6_enabled() ? IPV6_AUTO : IPV6_OFF;
    if (dry) {
        fwrite(rules, 1, (size_t)n, stdout);
        if (ipv6 != IPV6_OFF) fwrite(rules6, 1, (size_t)n6, stdout);
        return 0;
    }
    if (run_restore(restore, rules, (size_t)n, err, sizeof(err)) < 0) {
        log_event(LOG_LEVEL_ERROR, "mesh_init_failed", "family=ipv4 reason=\"%s\"", err);
        return 1;
    }
    if (ipv6 != IPV6_OFF) {
        int rc = run_restore(restore6, rules6, (size_t)n6, err, sizeof(err));
        if (rc == -2 && ipv6 == IPV6_AUTO) {
            log_event(LOG_LEVEL_WARN, "mesh_init_ipv6_skipped", "reason=\"%s\"", err);
            ipv6 = IPV6_OFF;
        } else if (rc < 0) {
            log_event(LOG_LEVEL_ERROR, "mesh_init_failed", "family=ipv6 reason=\"%s\"", err);
            return 1;
        }
    }
    log_info("mesh_init_installed",
             "ipv6=%d proxy_uid=%u inbound_port=%u outbound_port=%u excluded_inbound_ports=%u "
             "excluded_outbound_ports=%u excluded_outbound_cidrs=%u",
             ipv6 != IPV6_OFF, c.proxy_uid, c.inbound_port, c.outbound_port, c.n_in_excluded,
             c.n_out_excluded, c.n_cidrs);
    return 0;
}
