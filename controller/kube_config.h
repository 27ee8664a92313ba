/*
 * kube_config: where the API server is and how to authenticate to it, from a kubeconfig
 * file (--kubeconfig) or from the pod's service account (in-cluster).
 */
#ifndef STRAIT_KUBE_CONFIG_H
#define STRAIT_KUBE_CONFIG_H

#include <stddef.h>

/* Base folder of the in-cluster service account files; STRAIT_SERVICEACCOUNT_DIR overrides. */
#define KUBE_CONFIG_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/*
 * Everything is malloc'd (free with kube_config_free); NULL / 0 means "not given". Paths are
 * absolute or relative to the current folder (kubeconfig-relative ones are resolved). The
 * *_data fields hold decoded bytes (PEM), not base64.
 */
struct kube_config {
    char *server;  /* "https://host:port[/prefix]", without a trailing '/' */
    char *context; /* the context used; "in-cluster" for the service account */
    char *ns;      /* the context's namespace, or the service account's */
    int insecure;  /* insecure-skip-tls-verify */
    char *ca_file;
    unsigned char *ca_data;
    size_t ca_data_len;
    char *token;      /* a fixed bearer token */
    char *token_file; /* re-read periodically; wins over token, as in client-go */
    char *cert_file, *key_file;
    unsigned char *cert_data, *key_data;
    size_t cert_data_len, key_data_len;
};

/*
 * Reads the kubeconfig at path and resolves context (NULL: its current-context) to one
 * cluster and user. Returns 0 with *cfg filled, or -1 with err filled (*cfg is then empty).
 */
int kube_config_load(const char *path, const char *context, struct kube_config *cfg, char *err,
                     size_t errlen);

/* Same for kubeconfig text buf[0..len); relative paths are resolved against dir. */
int kube_config_parse(const char *buf, size_t len, const char *dir, const char *context,
                      struct kube_config *cfg, char *err, size_t errlen);

/*
 * The in-cluster configuration: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT,
 * the token file, ca.crt and namespace of the service account folder (KUBE_CONFIG_SA_DIR or
 * $STRAIT_SERVICEACCOUNT_DIR). Returns 0, or -1 with err filled when the variables are not
 * set or the token cannot be read.
 */
int kube_config_in_cluster(struct kube_config *cfg, char *err, size_t errlen);

/* Whether the in-cluster variables are set (the controller's default mode then). */
int kube_config_in_cluster_available(void);

/*
 * Reads a token file: its content without surrounding white space, malloc'd. Returns NULL
 * with err filled when it cannot be read or is empty.
 */
char *kube_config_read_token(const char *path, char *err, size_t errlen);

/* Whether a token can go into an Authorization header: no control characters. */
int kube_config_token_ok(const char *token);

void kube_config_free(struct kube_config *cfg);

#endif
