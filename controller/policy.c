/*
 * policy: the balancing policy settings (docs/balancing.md) into struct model_policy.
 *
 * Does: one parser per setting (algorithm, hash key, affinity, health checks, outlier
 * detection, circuit breaking, retry budget, slow start, endpoint weights) behind a field
 * getter, so the strait.dev/... annotations of Services and Ingresses (kube_decode) and the
 * policy object of a Gateway backendRef (gwdecode) share the syntax, the ranges and the
 * messages; then the checks across settings of one object (hash-by needs a hashing algorithm,
 * the health-check timeout within the interval, the max ejection time at least the base).
 * A bad value is refused (Ingress, Gateway) or, for a Service, recorded as a problem with the
 * key left unset (a typo never takes a Service off the air).
 * Does not: merge a Service's settings with an override or apply defaults
 * (model_policy_resolve does), nor look at other objects.
 * Invariants: a field's MODEL_POL_* bit is set only when its value was good; strings are in
 * the object's pool; every message names the field (the annotation, or the CRD field path)
 * and quotes the value.
 */
#include "policy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gwdecode.h"
#include "kube_decode.h"
#include "snapwire.h"

#define SET_ERR(...) snprintf(err, errlen, __VA_ARGS__)

#define POL_MAX_HASH_NAME 128 /* header and cookie names */
#define POL_MAX_HC_PATH 1024
#define POL_MAX_WEIGHT 10000
#define POL_NAME_MAX 320 /* a field's name in messages: a CRD path is far shorter */

struct pol_ctx {
    struct model_meta *m;
    struct model_policy *p;
    struct model_service *svc; /* NULL unless a Service's */
};

struct pol_key;

/* d: the key; what: the field as the subject of the message ("annotation strait.dev/x") */
typedef int (*pol_parse_fn)(struct pol_ctx *c, const struct pol_key *d, const char *what,
                            const char *v, char *err, size_t errlen);

#define POL_FIELD(f) offsetof(struct model_policy, f), sizeof(((struct model_policy *)0)->f)

/*
 * Every key: its annotation, its CRD field (policy.<section>.<field>; section NULL:
 * policy.<field>; field NULL: none), whether that field is an integer, the parser, and for
 * numbers and durations the bit, the model_policy field and the range (milliseconds for
 * durations, with its words for messages).
 */
struct pol_key {
    const char *annotation;
    const char *section, *field;
    int number;
    pol_parse_fn parse;
    uint32_t bit;
    size_t off, size;
    int64_t min, max;
    const char *range;
};

/* An RFC 9110 token (header names; RFC 6265 cookie names are the same set) of 1..max bytes. */
static int pol_token(const char *s, size_t max)
{
    size_t n = strlen(s);

    if (n == 0 || n > max) return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!(isalnum(c) || strchr("!#$%&'*+-.^_`|~", c))) return 0;
    }
    return 1;
}

/* A decimal number 0..max (digits only); returns 0 or -1. */
static int pol_num(const char *v, uint32_t max, uint32_t *out)
{
    uint64_t n = 0;
    const char *p;

    if (!*v) return -1;
    for (p = v; *p; p++) {
        if (!isdigit((unsigned char)*p)) return -1;
        n = n * 10 + (uint64_t)(*p - '0');
        if (n > max) return -1;
    }
    *out = (uint32_t)n;
    return 0;
}

/* n into the model_policy field of key d (1, 2 or 4 bytes wide) */
static void pol_store(struct model_policy *p, const struct pol_key *d, uint32_t n)
{
    char *f = (char *)p + d->off;

    if (d->size == 1)
        *(uint8_t *)f = (uint8_t)n;
    else if (d->size == 2)
        *(uint16_t *)f = (uint16_t)n;
    else
        *(uint32_t *)f = n;
    p->set |= d->bit;
}

static int pol_lb(struct pol_ctx *c, const struct pol_key *d, const char *what, const char *v,
                  char *err, size_t errlen)
{
    static const struct {
        const char *name;
        uint8_t lb;
    } lbs[] = {{"round_robin", SNAPWIRE_LB_ROUND_ROBIN},
               {"least_request", SNAPWIRE_LB_LEAST_REQUEST},
               {"ewma", SNAPWIRE_LB_EWMA},
               {"ring_hash", SNAPWIRE_LB_RING_HASH},
               {"maglev", SNAPWIRE_LB_MAGLEV}};
    size_t i;

    (void)d;
    for (i = 0; i < sizeof(lbs) / sizeof(lbs[0]); i++) {
        if (!strcmp(v, lbs[i].name)) {
            c->p->lb = lbs[i].lb;
            c->p->set |= MODEL_POL_LB;
            return 0;
        }
    }
    SET_ERR("%s \"%.40s\" is not round_robin, least_request, ewma, ring_hash or maglev", what, v);
    return -1;
}

static int pol_hash(struct pol_ctx *c, const struct pol_key *d, const char *what, const char *v,
                    char *err, size_t errlen)
{
    const char *arg = NULL;
    char name[POL_MAX_HASH_NAME + 1];
    uint8_t on;
    size_t i;

    (void)d;
    if (!strncmp(v, "header:", 7)) {
        on = SNAPWIRE_HASH_HEADER, arg = v + 7;
    } else if (!strncmp(v, "cookie:", 7)) {
        on = SNAPWIRE_HASH_COOKIE, arg = v + 7;
    } else if (!strcmp(v, "source-ip")) {
        on = SNAPWIRE_HASH_SOURCE_IP;
    } else if (!strcmp(v, "path")) {
        on = SNAPWIRE_HASH_PATH;
    } else {
        SET_ERR("%s \"%.60s\" is not header:NAME, cookie:NAME, source-ip or path", what, v);
        return -1;
    }
    if (arg && !pol_token(arg, POL_MAX_HASH_NAME)) {
        SET_ERR("%s \"%.60s\": \"%.40s\" is not a %s name (an HTTP token of at most %d "
                "characters)",
                what, v, arg, on == SNAPWIRE_HASH_HEADER ? "header" : "cookie", POL_MAX_HASH_NAME);
        return -1;
    }
    c->p->hash_name = "";
    if (arg) {
        /* header names are case-insensitive: the data plane compares lower case */
        for (i = 0; arg[i]; i++)
            name[i] = on == SNAPWIRE_HASH_HEADER ? (char)tolower((unsigned char)arg[i]) : arg[i];
        name[i] = '\0';
        if (!(c->p->hash_name = model_strdup(c->m, name))) {
            SET_ERR("out of memory");
            return -1;
        }
    }
    c->p->hash_on = on;
    c->p->set |= MODEL_POL_HASH;
    return 0;
}

/* *dst = v copied into the object, and the key marked set. Returns 0, or -1 (out of memory). */
static int pol_keep(struct pol_ctx *c, const char **dst, const char *v, uint32_t bit, char *err,
                    size_t errlen)
{
    if (!(*dst = model_strdup(c->m, v))) {
        SET_ERR("out of memory");
        return -1;
    }
    c->p->set |= bit;
    return 0;
}

static int pol_cookie(struct pol_ctx *c, const struct pol_key *d, const char *what, const char *v,
                      char *err, size_t errlen)
{
    (void)d;
    if (!pol_token(v, POL_MAX_HASH_NAME)) {
        SET_ERR("%s \"%.40s\" is not a cookie name (an HTTP token of at most %d characters)", what,
                v, POL_MAX_HASH_NAME);
        return -1;
    }
    return pol_keep(c, &c->p->cookie, v, MODEL_POL_COOKIE, err, errlen);
}

static int pol_affinity(struct pol_ctx *c, const struct pol_key *d, const char *what, const char *v,
                        char *err, size_t errlen)
{
    (void)d;
    if (strcmp(v, "cookie") && strcmp(v, "none")) {
        SET_ERR("%s \"%.40s\" is not \"cookie\" or \"none\"", what, v);
        return -1;
    }
    c->p->affinity = !strcmp(v, "cookie");
    c->p->set |= MODEL_POL_AFFINITY;
    return 0;
}

static int pol_hc_path(struct pol_ctx *c, const struct pol_key *d, const char *what, const char *v,
                       char *err, size_t errlen)
{
    const char *q;

    (void)d;
    for (q = v; *q > 0x20 && *q < 0x7f; q++)
        ;
    if (v[0] != '/' || *q || q - v > POL_MAX_HC_PATH) {
        SET_ERR("%s \"%.100s\" is not a path (\"/\" then at most %d visible ASCII characters in "
                "all, no spaces)",
                what, v, POL_MAX_HC_PATH - 1);
        return -1;
    }
    return pol_keep(c, &c->p->hc_path, v, MODEL_POL_HC_PATH, err, errlen);
}

/* host[:port]: an RFC 1123 host name (lower-cased), an IPv4 address or a [bracketed] IPv6 one */
static int pol_hc_host(struct pol_ctx *c, const struct pol_key *d, const char *what, const char *v,
                       char *err, size_t errlen)
{
    char host[256];
    unsigned char tmp[16];
    const char *colon, *end;
    char *lower, *q;
    uint32_t port;
    size_t n, i;
    int ok;

    (void)d;
    if (v[0] == '[') {
        end = strchr(v, ']');
        colon = end && end[1] == ':' ? end + 1 : NULL;
        n = end ? (size_t)(end - v - 1) : 0;
        ok = end && (!end[1] || colon) && n < sizeof(host);
        if (ok) {
            memcpy(host, v + 1, n);
            host[n] = '\0';
            ok = inet_pton(AF_INET6, host, tmp) == 1;
        }
    } else {
        colon = strchr(v, ':');
        n = colon ? (size_t)(colon - v) : strlen(v);
        ok = n < sizeof(host);
        if (ok) {
            for (i = 0; i < n; i++)
                host[i] = (char)tolower((unsigned char)v[i]);
            host[n] = '\0';
            ok = kube_decode_dns_name(host);
        }
    }
    if (ok && colon) ok = !pol_num(colon + 1, 65535, &port) && port > 0;
    if (!ok) {
        SET_ERR("%s \"%.100s\" is not a host (a DNS name, an IPv4 address or an [IPv6] address, "
                "then an optional :PORT)",
                what, v);
        return -1;
    }
    /* Host is case-insensitive: sent lower case */
    if (!(lower = model_alloc(c->m, strlen(v) + 1))) {
        SET_ERR("out of memory");
        return -1;
    }
    for (q = lower; *v; q++, v++)
        *q = (char)tolower((unsigned char)*v);
    *q = '\0';
    c->p->hc_host = lower;
    c->p->set |= MODEL_POL_HC_HOST;
    return 0;
}

/* A Gateway API duration ("1m30s", "500ms") within the key's range. */
static int pol_duration(struct pol_ctx *c, const struct pol_key *d, const char *what, const char *v,
                        char *err, size_t errlen)
{
    int64_t ms;

    if (gwdecode_duration(v, &ms) || ms < d->min || ms > d->max) {
        SET_ERR("%s \"%.40s\" is not a duration %s (like \"5s\", \"1m30s\", \"500ms\")", what, v,
                d->range);
        return -1;
    }
    pol_store(c->p, d, (uint32_t)ms);
    return 0;
}

/* A whole number (digits only) within the key's range. */
static int pol_number(struct pol_ctx *c, const struct pol_key *d, const char *what, const char *v,
                      char *err, size_t errlen)
{
    uint32_t n;

    if (pol_num(v, (uint32_t)d->max, &n) || n < (uint32_t)d->min) {
        SET_ERR("%s \"%.40s\" is not a whole number from %u to %u", what, v, (uint32_t)d->min,
                (uint32_t)d->max);
        return -1;
    }
    pol_store(c->p, d, n);
    return 0;
}

/* "200" or "LO-HI", 100 <= LO <= HI <= 599 */
static int pol_status(struct pol_ctx *c, const struct pol_key *d, const char *what, const char *v,
                      char *err, size_t errlen)
{
    const char *dash = strchr(v, '-');
    char lo_s[8];
    uint32_t lo, hi;
    size_t n = dash ? (size_t)(dash - v) : strlen(v);
    int ok = n < sizeof(lo_s);

    (void)d;
    if (ok) {
        memcpy(lo_s, v, n);
        lo_s[n] = '\0';
        ok = !pol_num(lo_s, 599, &lo);
        hi = lo;
    }
    if (ok && dash) ok = !pol_num(dash + 1, 599, &hi);
    if (!ok || lo < 100 || hi < lo) {
        SET_ERR("%s \"%.40s\" is not a status (like \"200\") or a range of statuses (like "
                "\"200-399\") within 100-599",
                what, v);
        return -1;
    }
    c->p->hc_status_lo = (uint16_t)lo;
    c->p->hc_status_hi = (uint16_t)hi;
    c->p->set |= MODEL_POL_HC_STATUS;
    return 0;
}

static int pol_cmp_weight(const void *a, const void *b)
{
    return strcmp(((const struct model_weight *)a)->name, ((const struct model_weight *)b)->name);
}

/* "NAME=W[,NAME=W...]", NAME a pod name or an IP address, W 1..10000 (Services only). */
static int pol_weights(struct pol_ctx *c, const struct pol_key *d, const char *what, const char *v,
                       char *err, size_t errlen)
{
    struct model_weight *w;
    const char *p, *item, *eq, *end;
    unsigned char tmp[16];
    char name[256], num[16];
    size_t n = 1, i = 0, nl, wl;
    uint32_t weight;

    (void)d;
    if (!c->svc) {
        SET_ERR("%s is for Services (it names their endpoints), not Ingresses", what);
        return -1;
    }
    for (p = v; *p; p++)
        n += *p == ',';
    if (!(w = model_alloc(c->m, n * sizeof(*w)))) goto oom;
    for (item = v;; item = end + 1) {
        end = strchr(item, ',');
        if (!end) end = item + strlen(item);
        while (item < end && isspace((unsigned char)*item))
            item++;
        eq = memchr(item, '=', (size_t)(end - item));
        for (nl = eq ? (size_t)(eq - item) : 0; nl && isspace((unsigned char)item[nl - 1]); nl--)
            ;
        p = eq ? eq + 1 : end;
        while (p < end && isspace((unsigned char)*p))
            p++;
        for (wl = (size_t)(end - p); wl && isspace((unsigned char)p[wl - 1]); wl--)
            ;
        if (!eq || !nl || nl >= sizeof(name) || wl >= sizeof(num)) goto bad;
        memcpy(name, item, nl);
        name[nl] = '\0';
        memcpy(num, p, wl);
        num[wl] = '\0';
        if (pol_num(num, POL_MAX_WEIGHT, &weight) || !weight ||
            (!kube_decode_dns_name(name) && inet_pton(AF_INET, name, tmp) != 1 &&
             inet_pton(AF_INET6, name, tmp) != 1))
            goto bad;
        if (!(w[i].name = model_strdup(c->m, name))) goto oom;
        w[i++].weight = weight;
        if (!*end) break;
    }
    qsort(w, i, sizeof(*w), pol_cmp_weight);
    for (n = 1; n < i; n++) {
        if (!strcmp(w[n - 1].name, w[n].name)) {
            SET_ERR("%s \"%.100s\" names \"%.60s\" twice", what, v, w[n].name);
            return -1;
        }
    }
    c->svc->weights = w;
    c->svc->n_weights = i;
    return 0;
bad:
    SET_ERR("%s \"%.100s\": \"%.*s\" is not NAME=WEIGHT (NAME a pod name or an IP address, "
            "WEIGHT a whole number from 1 to %d; items separated by commas)",
            what, v, (int)(end - item > 60 ? 60 : end - item), item, POL_MAX_WEIGHT);
    return -1;
oom:
    SET_ERR("out of memory");
    return -1;
}

static const struct pol_key pol_keys[POLICY_N_KEYS] = {
    [POLICY_LB] = {"strait.dev/load-balance", "loadBalancer", "type", 0, pol_lb},
    [POLICY_HASH_BY] = {"strait.dev/hash-by", "loadBalancer", "hashBy", 0, pol_hash},
    [POLICY_SESSION_COOKIE] = {"strait.dev/session-cookie-name", "loadBalancer",
                               "sessionCookieName", 0, pol_cookie},
    [POLICY_AFFINITY] = {"strait.dev/affinity", "loadBalancer", "affinity", 0, pol_affinity},
    [POLICY_HC_PATH] = {"strait.dev/health-check-path", "healthCheck", "path", 0, pol_hc_path},
    [POLICY_HC_INTERVAL] = {"strait.dev/health-check-interval", "healthCheck", "interval", 0,
                            pol_duration, MODEL_POL_HC_INTERVAL, POL_FIELD(hc_interval_ms), 100,
                            3600000, "from 100ms to 1h"},
    [POLICY_HC_TIMEOUT] = {"strait.dev/health-check-timeout", "healthCheck", "timeout", 0,
                           pol_duration, MODEL_POL_HC_TIMEOUT, POL_FIELD(hc_timeout_ms), 10,
                           3600000, "from 10ms to the interval"},
    [POLICY_HC_STATUS] = {"strait.dev/health-check-status", "healthCheck", "expectedStatus", 0,
                          pol_status},
    [POLICY_HC_HEALTHY] = {"strait.dev/health-check-healthy-threshold", "healthCheck",
                           "healthyThreshold", 1, pol_number, MODEL_POL_HC_HEALTHY,
                           POL_FIELD(hc_healthy), 1, 100},
    [POLICY_HC_UNHEALTHY] = {"strait.dev/health-check-unhealthy-threshold", "healthCheck",
                             "unhealthyThreshold", 1, pol_number, MODEL_POL_HC_UNHEALTHY,
                             POL_FIELD(hc_unhealthy), 1, 100},
    [POLICY_HC_HOST] = {"strait.dev/health-check-host", "healthCheck", "host", 0, pol_hc_host},
    [POLICY_OD_CONSECUTIVE] = {"strait.dev/outlier-consecutive-failures", "outlierDetection",
                               "consecutiveFailures", 1, pol_number, MODEL_POL_OD_CONSECUTIVE,
                               POL_FIELD(od_consecutive), 0, 1000},
    [POLICY_OD_BASE] = {"strait.dev/outlier-base-ejection-time", "outlierDetection",
                        "baseEjectionTime", 0, pol_duration, MODEL_POL_OD_BASE,
                        POL_FIELD(od_base_ms), 1000, 3600000, "from 1s to 1h"},
    [POLICY_OD_MAX] = {"strait.dev/outlier-max-ejection-time", "outlierDetection",
                       "maxEjectionTime", 0, pol_duration, MODEL_POL_OD_MAX, POL_FIELD(od_max_ms),
                       1000, 86400000, "from the base ejection time to 24h"},
    [POLICY_OD_PERCENT] = {"strait.dev/outlier-max-ejection-percent", "outlierDetection",
                           "maxEjectionPercent", 1, pol_number, MODEL_POL_OD_PERCENT,
                           POL_FIELD(od_max_percent), 0, 100},
    [POLICY_CB_CONNECTIONS] = {"strait.dev/max-connections", "circuitBreaker", "maxConnections", 1,
                               pol_number, MODEL_POL_CB_CONNECTIONS, POL_FIELD(cb_max_connections),
                               0, 1000000},
    [POLICY_CB_PENDING] = {"strait.dev/max-pending-requests", "circuitBreaker",
                           "maxPendingRequests", 1, pol_number, MODEL_POL_CB_PENDING,
                           POL_FIELD(cb_max_pending), 0, 1000000},
    [POLICY_CB_REQUESTS] = {"strait.dev/max-requests", "circuitBreaker", "maxRequests", 1,
                            pol_number, MODEL_POL_CB_REQUESTS, POL_FIELD(cb_max_requests), 0,
                            1000000},
    [POLICY_RB_PERCENT] = {"strait.dev/retry-budget-percent", "retryBudget", "percent", 1,
                           pol_number, MODEL_POL_RB_PERCENT, POL_FIELD(rb_percent), 0, 1000},
    [POLICY_RB_MIN] = {"strait.dev/retry-budget-min-per-second", "retryBudget",
                       "minRetriesPerSecond", 1, pol_number, MODEL_POL_RB_MIN,
                       POL_FIELD(rb_min_per_sec), 0, 100000},
    [POLICY_SLOW_START] = {"strait.dev/slow-start", NULL, "slowStart", 0, pol_duration,
                           MODEL_POL_SLOW_START, POL_FIELD(slow_start_ms), 0, 3600000,
                           "from 0s (off) to 1h"},
    [POLICY_ENDPOINT_WEIGHTS] = {"strait.dev/endpoint-weights", NULL, NULL, 0, pol_weights},
};

const char *policy_annotation(enum policy_key k)
{
    return pol_keys[k].annotation;
}

/*
 * A bad value: without a Service it is refused (returns -1 with err as it is); a Service keeps
 * serving with the key's default and records the problem (returns 0; -1 only when out of
 * memory).
 */
static int pol_problem(struct pol_ctx *c, enum policy_key k, char *err, size_t errlen)
{
    struct model_problem *pr;

    if (!c->svc) return -1;
    if (!c->svc->problems &&
        !(c->svc->problems = model_alloc(c->m, (POLICY_N_KEYS + 2) * sizeof(*pr))))
        goto oom;
    pr = &c->svc->problems[c->svc->n_problems++];
    pr->key = pol_keys[k].annotation;
    if (!(pr->message = model_strdup(c->m, err))) goto oom;
    return 0;
oom:
    SET_ERR("out of memory");
    return -1;
}

/* The value of a key known to be present (for the messages of the checks across keys). */
static const char *pol_value(const struct policy_source *src, enum policy_key k)
{
    const char *v = NULL;
    char err[8];

    src->get(src, k, &v, err, sizeof(err));
    return v ? v : "";
}

int policy_parse(const struct policy_source *src, struct model_meta *m, struct model_policy *p,
                 struct model_service *svc, char *err, size_t errlen)
{
    struct pol_ctx c = {m, p, svc};
    char what[POL_NAME_MAX], other[POL_NAME_MAX];
    uint32_t interval, base;
    const char *v;
    int k;

    memset(p, 0, sizeof(*p));
    for (k = 0; k < POLICY_N_KEYS; k++) {
        if (src->get(src, (enum policy_key)k, &v, err, errlen)) return -1;
        if (!v) continue;
        src->name(src, (enum policy_key)k, 1, what, sizeof(what));
        if (pol_keys[k].parse(&c, &pol_keys[k], what, v, err, errlen) &&
            pol_problem(&c, (enum policy_key)k, err, errlen))
            return -1;
    }
    /* settings that only make sense together, within this object */
    if ((p->set & MODEL_POL_HASH) && (p->set & MODEL_POL_LB) && p->lb != SNAPWIRE_LB_RING_HASH &&
        p->lb != SNAPWIRE_LB_MAGLEV) {
        src->name(src, POLICY_HASH_BY, 1, what, sizeof(what));
        src->name(src, POLICY_LB, 0, other, sizeof(other));
        SET_ERR("%s needs %s ring_hash or maglev, not \"%s\"", what, other,
                pol_value(src, POLICY_LB));
        p->set &= ~(uint32_t)MODEL_POL_HASH;
        if (pol_problem(&c, POLICY_HASH_BY, err, errlen)) return -1;
    }
    interval = p->set & MODEL_POL_HC_INTERVAL ? p->hc_interval_ms : SNAPWIRE_HC_INTERVAL_MS_DEFAULT;
    if ((p->set & MODEL_POL_HC_TIMEOUT) && p->hc_timeout_ms > interval) {
        src->name(src, POLICY_HC_TIMEOUT, 1, what, sizeof(what));
        SET_ERR("%s \"%.40s\" is longer than the interval (%ums)", what,
                pol_value(src, POLICY_HC_TIMEOUT), interval);
        p->set &= ~(uint32_t)MODEL_POL_HC_TIMEOUT;
        if (pol_problem(&c, POLICY_HC_TIMEOUT, err, errlen)) return -1;
    }
    base = p->set & MODEL_POL_OD_BASE ? p->od_base_ms : SNAPWIRE_OD_BASE_MS_DEFAULT;
    if ((p->set & MODEL_POL_OD_MAX) && p->od_max_ms < base) {
        src->name(src, POLICY_OD_MAX, 1, what, sizeof(what));
        SET_ERR("%s \"%.40s\" is shorter than the base ejection time (%ums)", what,
                pol_value(src, POLICY_OD_MAX), base);
        p->set &= ~(uint32_t)MODEL_POL_OD_MAX;
        if (pol_problem(&c, POLICY_OD_MAX, err, errlen)) return -1;
    }
    return 0;
}

/* ---- annotations ---- */

static int pol_annotation_get(const struct policy_source *s, enum policy_key k, const char **v,
                              char *err, size_t errlen)
{
    const struct kobj *n =
        kobj_get((const struct kobj *)s->ctx, "metadata", "annotations", pol_keys[k].annotation);

    (void)err, (void)errlen;
    *v = n ? kobj_text(n) : NULL;
    if (n && !*v) *v = "";
    return 0;
}

static void pol_annotation_name(const struct policy_source *s, enum policy_key k, int subject,
                                char *buf, size_t len)
{
    (void)s;
    snprintf(buf, len, "%s%s", subject ? "annotation " : "", pol_keys[k].annotation);
}

int policy_parse_annotations(const struct kobj *doc, struct model_meta *m, struct model_policy *p,
                             struct model_service *svc, char *err, size_t errlen)
{
    struct policy_source src = {pol_annotation_get, pol_annotation_name, doc};

    return policy_parse(&src, m, p, svc, err, errlen);
}

/* ---- a Gateway backendRef's policy object ---- */

struct pol_object {
    const struct kobj *node;
    const char *at;
};

static void pol_object_name(const struct policy_source *s, enum policy_key k, int subject,
                            char *buf, size_t len)
{
    const struct pol_object *o = s->ctx;
    const struct pol_key *d = &pol_keys[k];

    snprintf(buf, len, "%s%s%s%s%s%s", subject ? o->at : "", subject ? "." : "",
             d->section ? d->section : "", d->section ? "." : "", d->field, subject ? ":" : "");
}

static int pol_object_get(const struct policy_source *s, enum policy_key k, const char **v,
                          char *err, size_t errlen)
{
    const struct pol_object *o = s->ctx;
    const struct pol_key *d = &pol_keys[k];
    const struct kobj *n;
    char what[POL_NAME_MAX];

    *v = NULL;
    if (!d->field) return 0;
    n = d->section ? kobj_get(o->node, d->section, d->field) : kobj_get(o->node, d->field);
    if (!n || (n->type == KOBJ_SCALAR && !kobj_text(n))) return 0;
    if (n->type != KOBJ_SCALAR || (d->number && n->style == KOBJ_QUOTED)) {
        pol_object_name(s, k, 1, what, sizeof(what));
        SET_ERR("%s must be %s", what, d->number ? "an integer" : "a string");
        return -1;
    }
    *v = kobj_text(n);
    return 0;
}

int policy_parse_object(const struct kobj *node, const char *at, struct model_meta *m,
                        struct model_policy *p, char *err, size_t errlen)
{
    struct pol_object o = {node, at};
    struct policy_source src = {pol_object_get, pol_object_name, &o};
    const struct kobj *sec;
    int k;

    memset(p, 0, sizeof(*p));
    if (!node || (node->type == KOBJ_SCALAR && !kobj_text(node))) return 0;
    if (node->type != KOBJ_MAP) {
        SET_ERR("%s: must be an object", at);
        return -1;
    }
    for (k = 0; k < POLICY_N_KEYS; k++) {
        if (!pol_keys[k].section) continue;
        sec = kobj_get(node, pol_keys[k].section);
        if (sec && sec->type != KOBJ_MAP && !(sec->type == KOBJ_SCALAR && !kobj_text(sec))) {
            SET_ERR("%s.%s: must be an object", at, pol_keys[k].section);
            return -1;
        }
    }
    return policy_parse(&src, m, p, NULL, err, errlen);
}
