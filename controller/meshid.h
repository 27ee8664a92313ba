/*
 * meshid: the mesh identity endpoint (POST /v1/identity on meshsrv): who a caller is (token
 * map file, or a TokenReview in cluster mode), the mesh root (files, or a Secret) and the
 * trust bundle it publishes (a file, and the ConfigMap strait-mesh-trust-bundle).
 */
#ifndef STRAIT_MESHID_H
#define STRAIT_MESHID_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct ev_loop;
struct kube_client;
struct meshsrv;
struct meshid;

#define MESHID_DEFAULT_TTL 86400
#define MESHID_DEFAULT_LISTEN "0.0.0.0:8443"
#define MESHID_DEFAULT_TD "cluster.local"
#define MESHID_SECRET_NAME "strait-mesh-root"
#define MESHID_CONFIGMAP_NAME "strait-mesh-trust-bundle"
#define MESHID_AUDIENCE "strait"
#define MESHID_DEFAULT_RESYNC 10.0

struct meshid_opts {
    const char *trust_domain;         /* NULL: MESHID_DEFAULT_TD */
    const char *listen;               /* ADDR:PORT, NULL: MESHID_DEFAULT_LISTEN */
    unsigned leaf_ttl;                /* seconds, 0: MESHID_DEFAULT_TTL */
    const char *root_cert, *root_key; /* --mesh-root-file CERT,KEY */
    const char *root_dir;             /* --mesh-root-dir DIR (DIR/ca.crt, DIR/ca.key) */
    const char *root_secret;          /* NS/NAME, cluster mode (NULL: NS/strait-mesh-root) */
    const char *bundle_out;           /* --mesh-trust-bundle-out FILE */
    const char *token_file;           /* --mesh-token-file FILE */
    const char *server_names;         /* comma list; NULL: the default below */
    const char *ns;                   /* the controller's namespace (cluster mode) */
    double root_resync; /* seconds between re-checks of the root files or Secret, 0: default */
};

/*
 * The default --mesh-server-names: "strait-controller,strait-controller.<NS>.svc,localhost"
 * with NS the pod's namespace (service account namespace file), else strait-system.
 */
void meshid_default_server_names(char *buf, size_t n);

/*
 * Starts the endpoint on loop. client (borrowed, NULL in file mode) makes it cluster mode:
 * tokens are checked with TokenReviews (unless a token file is given) and the root comes
 * from the Secret (unless root files are given). Returns it, or NULL with err filled (bad
 * options, unreadable files, the port in use).
 */
struct meshid *meshid_start(struct ev_loop *loop, struct kube_client *client,
                            const struct meshid_opts *opts, char *err, size_t errlen);

/* The HTTPS server, for other modules' routes (the admission webhook). */
struct meshsrv *meshid_server(struct meshid *m);

/*
 * The trust bundle (PEM roots) sidecars are given, NULL while no root is loaded; valid until
 * the loop runs again.
 */
const char *meshid_trust_bundle(const struct meshid *m);

/*
 * fn(arg) is called (from the loop) each time the trust bundle changes: when the root is
 * loaded, and when a changed root is reloaded. One listener; NULL removes it.
 */
void meshid_on_bundle(struct meshid *m, void (*fn)(void *arg), void *arg);

/* Standard base64 of the string s (malloc'd, NUL-terminated), NULL when out of memory. */
char *meshid_base64(const char *s);

/* The leader writes the trust bundle ConfigMap; called on leadership changes. */
void meshid_set_leader(struct meshid *m, int leading);

/* Answers pending requests (503), cancels API requests, stops the server, frees m. */
void meshid_free(struct meshid *m);

/* Figures for the controller's /metrics. */
struct meshid_metrics {
    int enabled;
    uint64_t issued, denied, invalid;
    uint64_t root_reloads, root_reload_failures; /* changed roots swapped in, refused */
    time_t root_not_after;                       /* 0 while no root is loaded */
};
void meshid_metrics(struct meshid_metrics *out);

#endif
