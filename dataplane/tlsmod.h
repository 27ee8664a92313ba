/*
 * tlsmod: the data plane's TLS code (tls.c, tls_upstream.c, tp_tls.c, tls_mesh.c and OpenSSL
 * under them)
 * as a module, strait-tls.so, that strait-dataplane loads the first time it needs TLS: at
 * start-up with --listen-tls or in sidecar mode (tls_mesh_start), else when a snapshot first
 * carries certificates or a cluster with upstream TLS. A data plane that never speaks TLS never
 * maps libssl and libcrypto (about 1.6 MiB of resident pages: the idle RSS target of
 * docs/performance.md).
 *
 * Does: the binary side (tlsmod.c) defines the public functions of tls.h, tls_upstream.h and
 * tls_mesh.h;
 * each one answers the no-TLS case itself (NULL tables, tag 0, nothing to free) and otherwise
 * calls the module through struct tls_module. The module side (tlsmod_export.c, linked into
 * strait-tls.so with the TLS sources) exports that table as strait_tls_module and nothing else
 * (built with -fvisibility=hidden); what the module calls back (logging, metrics, snapshot
 * references) resolves against the binary, which exports its symbols (-rdynamic).
 * Where the module is looked for, first match wins: $STRAIT_TLS_MODULE, then strait-tls.so
 * next to the executable, then ../lib/strait/strait-tls.so from the executable's folder (the
 * container image's /usr/local/lib/strait/). A module built from other sources (abi or
 * struct sizes differ) is refused.
 * Unit tests link the TLS sources straight from libdataplane.a and never use this module.
 *
 * Threads: loading is serialised by a mutex and may happen on the main thread (tls_init) or
 * wherever snapshots are built; workers only call into the module through objects (a table,
 * a TLS transport) that exist because it is loaded.
 */
#ifndef STRAIT_TLSMOD_H
#define STRAIT_TLSMOD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "snapwire.h"
#include "transport.h"

#define TLSMOD_ABI 3
#define TLSMOD_FILE "strait-tls.so"
#define TLSMOD_SYMBOL "strait_tls_module"

struct snapshot;
struct tls_snap;
struct tls_upstream;
struct tls_upstream_client;
struct tls_mesh_config;
struct tls_mesh_answer;

struct tls_module {
    uint32_t abi;           /* TLSMOD_ABI */
    uint32_t size;          /* sizeof(struct tls_module) */
    uint32_t snapshot_size; /* sizeof(struct snapshot): both sides see the same layout */
    uint32_t transport_size;
    /* tls.h */
    int (*init)(double rotation, char *err, size_t errlen);
    void (*cleanup)(void);
    void (*ticket_rotate)(void);
    int (*ticket_key_file)(const char *path, char *err, size_t errlen);
    const char *(*default_fingerprint)(void);
    int (*snap_build)(const struct snapwire_snapshot *sw, struct tls_snap **out, char *err,
                      size_t errlen);
    void (*snap_free)(struct tls_snap *t);
    int (*transport_accept)(struct transport *t, int fd, struct snapshot *snap);
    char *(*client_headers)(const struct transport *t);
    int (*policy_allows)(const struct tls_snap *t, const char *host, const struct transport *tp);
    /* tls_upstream.h */
    int (*upstream_build)(const struct snapwire_snapshot *sw, struct tls_upstream **out, char *err,
                          size_t errlen);
    void (*upstream_free)(struct tls_upstream *t);
    uint64_t (*upstream_tag)(const struct tls_upstream *t, uint32_t cluster);
    int (*upstream_start)(const struct tls_upstream *t, uint32_t cluster, struct transport *tp,
                          const struct sockaddr *sa, socklen_t salen);
    void (*upstream_cleanup)(void);
    const char *(*upstream_error)(const struct transport *tp, char *buf, size_t len);
    struct tls_upstream_client *(*client_get)(const struct tls_upstream *t, uint32_t cluster);
    int (*client_start)(const struct tls_upstream_client *c, struct transport *tp,
                        const struct sockaddr *sa, socklen_t salen);
    void (*client_release)(struct tls_upstream_client *c);
    int (*upstream_mesh_cluster)(const struct tls_upstream *t, uint32_t cluster);
    int (*upstream_start_mesh)(const struct tls_upstream *t, uint32_t cluster, struct transport *tp,
                               int fd, int opaque);
    /* tls_mesh.h */
    int (*mesh_start)(const struct tls_mesh_config *cfg, char *err, size_t errlen);
    void (*mesh_stop)(void);
    int (*mesh_status)(char *identity, size_t len, double *not_after);
    int (*mesh_accept)(struct transport *t, int fd);
    int (*mesh_peer)(const struct transport *t, char *uri, size_t len);
    int (*mesh_feed_post)(const char *path, const char *json, double budget, int intr, size_t max,
                          struct tls_mesh_answer *a, char *why, size_t len);
};

/*
 * Loads the module unless it is loaded. 0, or -1 with err saying which file failed and why
 * (dlopen's message, a missing symbol, a mismatched build). A failure is not cached: the next
 * call tries again.
 */
int tlsmod_load(char *err, size_t errlen);

/* Whether the module is loaded (strait_tls_module_loaded in /metrics). */
int tlsmod_loaded(void);

#endif
