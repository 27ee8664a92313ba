/*
 * healthcheck: active HTTP health checks (Envoy / HAProxy style), one checker thread per
 * process with its own libev loop, whatever the number of workers.
 *
 * A target is one endpoint ("address:port") of one cluster with one check configuration.
 * Every interval (the next probe jittered by up to +-10 % of the interval, randomly per
 * target; the first one after a random delay in [0, min(interval, 1 s))) the checker opens a
 * non-blocking TCP connection and sends
 *   GET <path> HTTP/1.1\r\nHost: <host>\r\nUser-Agent: strait-healthcheck\r\n
 *   Connection: close\r\n\r\n
 * (over TLS first for a cluster with upstream TLS, see below) then reads the status line.
 * A probe passes iff the status line parses as "HTTP/1.x NNN"
 * followed by a space (or the end of the line: an empty reason phrase) and NNN is in
 * [status_lo, status_hi]. Connect refused or reset, the connection closing before a status
 * line, a malformed status line, or no status line within timeout_ms of the probe's start
 * (connect + TLS handshake + request + status line) fail. `unhealthy` failures in a row turn a
 * healthy target unhealthy, `healthy` passes in a row turn an unhealthy one healthy (0 counts as
 * 1); each transition logs event=health_changed and counts in metrics. A new target starts healthy.
 *
 * Upstream TLS (HAProxy's check-ssl, Envoy's transport socket match): a target of a TLS
 * cluster runs each probe over a fresh TLS session set up exactly as the cluster's traffic
 * is (tls_upstream_client_start: SNI, verification against the cluster's CA when it has one,
 * name check). A handshake that fails fails the probe, last_error saying why ("upstream
 * certificate: ..." when the certificate does not verify). Probes offer and feed the
 * tls_upstream session cache like traffic does (same tag, same endpoint): resumption is
 * fine, since a session only comes from a handshake that passed the same checks. Probe
 * connections never touch the request pools.
 *
 * Sharing: acquire returns the live target with the same cluster, key and identical
 * configuration (for TLS, the same tls_upstream_tag: SNI and CA) when there is one (refcount + 1),
 * so health state survives snapshot swaps; the last release stops probing it and the checker thread
 * frees it.
 *
 * Threads: acquire, release and info may be called from any thread (a mutex, taken off the
 * hot path); healthcheck_healthy is one relaxed atomic load, for the workers' picks.
 */
#ifndef STRAIT_HEALTHCHECK_H
#define STRAIT_HEALTHCHECK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct tls_upstream;

struct hc_config {    /* copied by acquire */
    const char *path; /* "/healthz" */
    const char *host; /* Host header, "" = the endpoint's "address:port" ([v6]:port) */
    uint32_t interval_ms, timeout_ms;
    uint16_t status_lo, status_hi;
    uint8_t healthy, unhealthy; /* thresholds */
    /*
     * Upstream TLS: NULL probes in plain TCP; else the probe speaks TLS with the settings of
     * cluster tls_cluster of tls (which must be a TLS cluster there, or acquire returns
     * NULL), whose tls_upstream_tag is part of the target's identity. Only read by acquire:
     * the target keeps its own copy of the settings (tls_upstream_client_get).
     */
    const struct tls_upstream *tls;
    uint32_t tls_cluster;
};

struct hc_target;

/* Starts the process-wide checker thread (own ev loop). 0, or -1 with err. Idempotent. */
int healthcheck_start(char *err, size_t errlen);

/*
 * Lets the first healthcheck_acquire start the checker (what the data plane does at start-up:
 * a process whose snapshots ask for no checks never pays for the thread). A start that fails
 * there is logged (event=health_checks_off) and checks stay off: every endpoint counts as
 * healthy.
 */
void healthcheck_enable(void);

/*
 * Stops the thread and frees every target no longer referenced. Targets still referenced
 * stay valid (healthy as they were, no longer probed) and are freed by their last release.
 * healthcheck_start may be called again afterwards.
 */
void healthcheck_stop(void);

/*
 * The target for endpoint key ("address:port") of cluster with address sa/len and cfg:
 * the live target with the same cluster, key and identical cfg (shared, refcount + 1), else
 * a new one (healthy, first probe after a random delay in [0, min(interval, 1 s))).
 * Thread-safe. Starts the checker first when healthcheck_enable was called and it is not
 * running. NULL on allocation failure, when the checker is not running (neither start nor
 * enable called, a failed start, or stopped), or for an address that is not IPv4/IPv6:
 * callers then treat the endpoint as healthy.
 */
struct hc_target *healthcheck_acquire(const char *cluster, const char *key,
                                      const struct sockaddr *sa, socklen_t len,
                                      const struct hc_config *cfg);

/* Drops one reference (any thread; NULL is a no-op); the last stops probing it. */
void healthcheck_release(struct hc_target *t);

/* 1 when t is healthy or NULL, else 0. A relaxed atomic load: cheap on the hot path. */
int healthcheck_healthy(const struct hc_target *t);

/* Introspection for /stats and tests. */
struct hc_info {
    int healthy;
    uint32_t consecutive_ok, consecutive_fail;
    uint64_t checks, failures;
    uint16_t last_status; /* of the last status line that parsed, 0 before one */
    char last_error[96];  /* why the last probe failed, "" after a pass */
};

/* Fills out with t's state (NULL: healthy, all zero). */
void healthcheck_info(const struct hc_target *t, struct hc_info *out);

#endif
