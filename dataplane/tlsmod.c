/*
 * tlsmod: loads strait-tls.so on first need and stands in for tls.h, tls_upstream.h and
 * tls_mesh.h in the strait-dataplane binary (see tlsmod.h). Each public function below answers
 * the no-TLS case without the module; the others are called only with objects the module made.
 */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "snapshot.h"
#include "tls.h"
#include "tls_mesh.h"
#include "tls_upstream.h"
#include "tlsmod.h"

static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static const struct tls_module *_Atomic mod;

static const struct tls_module *M(void)
{
    return atomic_load_explicit(&mod, memory_order_acquire);
}

int tlsmod_loaded(void)
{
    return M() != NULL;
}

/* Opens path and checks its table; 0 (with *out), or -1 with err. */
static int try_open(const char *path, const struct tls_module **out, char *err, size_t errlen)
{
    const struct tls_module *m;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);

    if (!h) {
        snprintf(err, errlen, "%s", dlerror());
        return -1;
    }
    m = dlsym(h, TLSMOD_SYMBOL);
    if (!m) {
        snprintf(err, errlen, "%s: no symbol %s", path, TLSMOD_SYMBOL);
        dlclose(h);
        return -1;
    }
    if (m->abi != TLSMOD_ABI || m->size != sizeof(*m) ||
        m->snapshot_size != sizeof(struct snapshot) ||
        m->transport_size != sizeof(struct transport)) {
        snprintf(err, errlen, "%s: built from other sources than this binary", path);
        dlclose(h);
        return -1;
    }
    *out = m; /* never closed: sessions and contexts live as long as the process */
    return 0;
}

int tlsmod_load(char *err, size_t errlen)
{
    const struct tls_module *m = NULL;
    char exe[PATH_MAX], path[PATH_MAX + 32], *slash;
    const char *env = getenv("STRAIT_TLS_MODULE");
    ssize_t n;
    int rc = -1;

    if (M()) return 0;
    pthread_mutex_lock(&load_lock);
    if (M()) {
        rc = 0;
    } else if (env && env[0]) {
        rc = try_open(env, &m, err, errlen);
    } else if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) <= 0) {
        snprintf(err, errlen, "cannot find the executable's folder to load %s", TLSMOD_FILE);
    } else {
        exe[n] = '\0';
        slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        snprintf(path, sizeof(path), "%s/%s", exe, TLSMOD_FILE);
        if (access(path, F_OK) != 0) /* the installed layout: bin/ and lib/strait/ */
            snprintf(path, sizeof(path), "%s/../lib/strait/%s", exe, TLSMOD_FILE);
        rc = try_open(path, &m, err, errlen);
    }
    if (m) {
        atomic_store_explicit(&mod, m, memory_order_release);
        metrics_tls_module_loaded();
        log_info("tls_module_loaded", "path=\"%s\"", env && env[0] ? env : path);
    }
    pthread_mutex_unlock(&load_lock);
    return rc;
}

/* The module, loading it first; NULL with err when it cannot be loaded. */
static const struct tls_module *need(const char *why, char *err, size_t errlen)
{
    char e[512];

    if (M()) return M();
    if (tlsmod_load(e, sizeof(e)) < 0) {
        snprintf(err, errlen, "%s needs TLS: cannot load %s: %s", why, TLSMOD_FILE, e);
        return NULL;
    }
    return M();
}

/* ---- tls.h ---- */

int tls_init(double rotation, char *err, size_t errlen)
{
    const struct tls_module *m = need("--listen-tls", err, errlen);

    return m ? m->init(rotation, err, errlen) : -1;
}

void tls_cleanup(void)
{
    if (M()) M()->cleanup();
}

void tls_ticket_rotate(void)
{
    if (M()) M()->ticket_rotate();
}

int tls_ticket_key_file(const char *path, char *err, size_t errlen)
{
    const struct tls_module *m = need("--tls-ticket-key-file", err, errlen);

    return m ? m->ticket_key_file(path, err, errlen) : -1;
}

const char *tls_default_fingerprint(void)
{
    return M() ? M()->default_fingerprint() : NULL;
}

int tls_snap_build(const struct snapwire_snapshot *sw, struct tls_snap **out, char *err,
                   size_t errlen)
{
    const struct tls_module *m = M();

    *out = NULL;
    if (!m && !tls_snap_wanted(sw)) return 0;
    if (!m && !(m = need("a snapshot with certificates", err, errlen))) return -1;
    return m->snap_build(sw, out, err, errlen);
}

void tls_snap_free(struct tls_snap *t)
{
    if (t) M()->snap_free(t);
}

int tls_transport_accept(struct transport *t, int fd, struct snapshot *snap)
{
    return M() ? M()->transport_accept(t, fd, snap) : -1;
}

char *tls_client_headers(const struct transport *t)
{
    return t->sess ? M()->client_headers(t) : NULL;
}

int tls_policy_allows(const struct tls_snap *t, const char *host, const struct transport *tp)
{
    return t ? M()->policy_allows(t, host, tp) : 1;
}

/* ---- tls_upstream.h ---- */

int tls_upstream_build(const struct snapwire_snapshot *sw, struct tls_upstream **out, char *err,
                       size_t errlen)
{
    const struct tls_module *m = M();

    *out = NULL;
    if (!m && !tls_upstream_wanted(sw)) return 0;
    if (!m && !(m = need("a cluster with upstream TLS", err, errlen))) return -1;
    return m->upstream_build(sw, out, err, errlen);
}

void tls_upstream_free(struct tls_upstream *t)
{
    if (t) M()->upstream_free(t);
}

uint64_t tls_upstream_tag(const struct tls_upstream *t, uint32_t cluster)
{
    return t ? M()->upstream_tag(t, cluster) : 0;
}

int tls_upstream_start(const struct tls_upstream *t, uint32_t cluster, struct transport *tp,
                       const struct sockaddr *sa, socklen_t salen)
{
    return t ? M()->upstream_start(t, cluster, tp, sa, salen) : -1;
}

struct tls_upstream_client *tls_upstream_client_get(const struct tls_upstream *t, uint32_t cluster)
{
    return t ? M()->client_get(t, cluster) : NULL;
}

int tls_upstream_client_start(const struct tls_upstream_client *c, struct transport *tp,
                              const struct sockaddr *sa, socklen_t salen)
{
    return c ? M()->client_start(c, tp, sa, salen) : -1;
}

void tls_upstream_client_release(struct tls_upstream_client *c)
{
    if (c) M()->client_release(c);
}

void tls_upstream_cleanup(void)
{
    if (M()) M()->upstream_cleanup();
}

const char *tls_upstream_error(const struct transport *tp, char *buf, size_t len)
{
    if (M()) return M()->upstream_error(tp, buf, len);
    snprintf(buf, len, "upstream TLS handshake failed");
    return buf;
}

int tls_upstream_mesh_cluster(const struct tls_upstream *t, uint32_t cluster)
{
    return t ? M()->upstream_mesh_cluster(t, cluster) : 0;
}

int tls_upstream_start_mesh(const struct tls_upstream *t, uint32_t cluster, struct transport *tp,
                            int fd, int opaque)
{
    return t ? M()->upstream_start_mesh(t, cluster, tp, fd, opaque) : -1;
}

/* ---- tls_mesh.h ---- */

int tls_mesh_start(const struct tls_mesh_config *cfg, char *err, size_t errlen)
{
    const struct tls_module *m = need("the sidecar's mesh identity", err, errlen);

    return m ? m->mesh_start(cfg, err, errlen) : -1;
}

void tls_mesh_stop(void)
{
    if (M()) M()->mesh_stop();
}

int tls_mesh_status(char *identity, size_t len, double *not_after)
{
    return M() ? M()->mesh_status(identity, len, not_after) : 0;
}

int tls_mesh_accept(struct transport *t, int fd)
{
    return M() ? M()->mesh_accept(t, fd) : -1;
}

int tls_mesh_feed_post(const char *path, const char *json, double budget, int intr, size_t max,
                       struct tls_mesh_answer *a, char *why, size_t len)
{
    if (!M()) {
        a->body = NULL;
        snprintf(why, len, "the TLS module is not loaded");
        return -1;
    }
    return M()->mesh_feed_post(path, json, budget, intr, max, a, why, len);
}

int tls_mesh_peer(const struct transport *t, char *uri, size_t len)
{
    return t->sess && M() ? M()->mesh_peer(t, uri, len) : -1;
}
