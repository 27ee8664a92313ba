/*
 * kube_config: kubeconfig files and the in-cluster service account, as client-go reads them.
 *
 * Does: current-context (or a named one) → cluster (server, certificate-authority[-data],
 * insecure-skip-tls-verify) and user (token, tokenFile, client-certificate[-data],
 * client-key[-data]); kubeconfig-relative paths resolved against its folder; -data fields
 * base64-decoded; the in-cluster variables and files (base folder overridable with
 * STRAIT_SERVICEACCOUNT_DIR for tests).
 * Does not: merge several kubeconfig files (KUBECONFIG=a:b), run exec or auth-provider
 * plugins, basic auth, proxies; it refuses those with a clear error rather than connecting
 * without the credentials the user meant. It opens no connection and reads no certificate:
 * kube_client hands them to libcurl.
 * Invariants: precedence follows client-go: -data over the file form, tokenFile over token;
 * insecure-skip-tls-verify together with a CA is an error, as in client-go. On -1 the config
 * is left empty, never half filled.
 */
#include "kube_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kobj.h"
#include "kube_decode.h"
#include "readfile.h"

#define KC_MAX_FILE (4u << 20)
#define KC_MAX_TOKEN (64u << 10)

char *kube_config_read_token(const char *path, char *err, size_t errlen)
{
    size_t start = 0, end;
    char *buf = readfile_all(path, KC_MAX_TOKEN, err, errlen);

    if (!buf) return NULL;
    end = strlen(buf);
    while (start < end && isspace((unsigned char)buf[start]))
        start++;
    while (end > start && isspace((unsigned char)buf[end - 1]))
        end--;
    if (start == end) {
        snprintf(err, errlen, "%s: empty token file", path);
        free(buf);
        return NULL;
    }
    memmove(buf, buf + start, end - start);
    buf[end - start] = '\0';
    if (!kube_config_token_ok(buf)) {
        snprintf(err, errlen, "%s: the token contains control characters", path);
        free(buf);
        return NULL;
    }
    return buf;
}

int kube_config_token_ok(const char *token)
{
    for (; *token; token++)
        if ((unsigned char)*token < 0x20 || *token == 0x7f) return 0;
    return 1;
}

void kube_config_free(struct kube_config *cfg)
{
    free(cfg->server);
    free(cfg->context);
    free(cfg->ns);
    free(cfg->ca_file);
    free(cfg->ca_data);
    free(cfg->token);
    free(cfg->token_file);
    free(cfg->cert_file);
    free(cfg->key_file);
    free(cfg->cert_data);
    free(cfg->key_data);
    memset(cfg, 0, sizeof(*cfg));
}

/* The map under key "inner" of the entry of list "list" whose name is name, or NULL. */
static const struct kobj *kc_named(const struct kobj *doc, const char *list, const char *inner,
                                   const char *name)
{
    const struct kobj *seq = kobj_get(doc, list);
    const char *n;
    size_t i;

    if (!seq || seq->type != KOBJ_SEQ) return NULL;
    for (i = 0; i < seq->n; i++) {
        n = kobj_str(seq->items[i], "name");
        if (n && !strcmp(n, name)) {
            const struct kobj *m = kobj_get(seq->items[i], inner);
            /* an entry with nothing under it is an empty map, e.g. "user: {}" */
            return m ? m : seq->items[i];
        }
    }
    return NULL;
}

/* strdup of a path, prefixed with dir unless absolute; NULL (with err) on allocation failure. */
static int kc_path(const char *dir, const char *p, char **out, char *err, size_t errlen)
{
    int r;

    if (p[0] == '/' || !dir || !*dir)
        r = (*out = strdup(p)) ? 0 : -1;
    else
        r = asprintf(out, "%s/%s", dir, p) < 0 ? -1 : 0;
    if (r) {
        *out = NULL;
        snprintf(err, errlen, "out of memory");
    }
    return r;
}

/* A path field and its -data sibling; -data wins. what names the field for errors. */
static int kc_file_or_data(const struct kobj *m, const char *key, const char *dir, char **file,
                           unsigned char **data, size_t *data_len, char *err, size_t errlen)
{
    char dkey[64];
    const char *p, *d;
    long n;

    snprintf(dkey, sizeof(dkey), "%s-data", key);
    if ((d = kobj_str(m, dkey)) && *d) {
        if (!(*data = malloc(strlen(d) / 4 * 3 + 3))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        if ((n = kube_decode_base64(d, *data)) < 0) {
            snprintf(err, errlen, "%s is not valid base64", dkey);
            return -1;
        }
        *data_len = (size_t)n;
        return 0;
    }
    if ((p = kobj_str(m, key)) && *p) return kc_path(dir, p, file, err, errlen);
    return 0;
}

static int kc_strdup(const char *s, char **out, char *err, size_t errlen)
{
    if (!s) return 0;
    if (!(*out = strdup(s))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int kc_cluster(const struct kobj *cl, const char *dir, struct kube_config *cfg, char *err,
                      size_t errlen)
{
    const char *server = kobj_str(cl, "server");
    const struct kobj *ins = kobj_get(cl, "insecure-skip-tls-verify");
    size_t n;

    if (!server || !*server) {
        snprintf(err, errlen, "cluster has no server");
        return -1;
    }
    if (strncmp(server, "https://", 8) && strncmp(server, "http://", 7)) {
        snprintf(err, errlen, "server \"%.200s\" is not an http:// or https:// URL", server);
        return -1;
    }
    if (kc_strdup(server, &cfg->server, err, errlen)) return -1;
    n = strlen(cfg->server);
    while (n > 0 && cfg->server[n - 1] == '/')
        cfg->server[--n] = '\0';
    if (kobj_get(cl, "proxy-url")) {
        snprintf(err, errlen, "proxy-url is not supported");
        return -1;
    }
    if (ins && kobj_text(ins)) {
        int b = kobj_bool(ins);
        if (b < 0) {
            snprintf(err, errlen, "insecure-skip-tls-verify must be true or false");
            return -1;
        }
        cfg->insecure = b;
    }
    if (kc_file_or_data(cl, "certificate-authority", dir, &cfg->ca_file, &cfg->ca_data,
                        &cfg->ca_data_len, err, errlen))
        return -1;
    if (cfg->insecure && (cfg->ca_file || cfg->ca_data)) {
        snprintf(err, errlen,
                 "insecure-skip-tls-verify cannot be combined with a "
                 "certificate-authority (client-go refuses it too)");
        return -1;
    }
    return 0;
}

static int kc_user(const struct kobj *u, const char *dir, struct kube_config *cfg, char *err,
                   size_t errlen)
{
    static const char *unsupported[] = {"exec", "auth-provider", "username", "password",
                                        "as",   "as-groups"};
    const char *tok = kobj_str(u, "token"), *tf = kobj_str(u, "tokenFile");
    size_t i;

    for (i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
        if (kobj_get(u, unsupported[i])) {
            snprintf(err, errlen,
                     "user field %s is not supported (use a token, tokenFile or client "
                     "certificate)",
                     unsupported[i]);
            return -1;
        }
    }
    if (tok && *tok && !kube_config_token_ok(tok)) {
        /* it goes into an HTTP header line */
        snprintf(err, errlen, "token contains control characters");
        return -1;
    }
    if (tok && *tok && kc_strdup(tok, &cfg->token, err, errlen)) return -1;
    if (tf && *tf && kc_path(dir, tf, &cfg->token_file, err, errlen)) return -1;
    if (kc_file_or_data(u, "client-certificate", dir, &cfg->cert_file, &cfg->cert_data,
                        &cfg->cert_data_len, err, errlen) ||
        kc_file_or_data(u, "client-key", dir, &cfg->key_file, &cfg->key_data, &cfg->key_data_len,
                        err, errlen))
        return -1;
    if (!(cfg->cert_file || cfg->cert_data) != !(cfg->key_file || cfg->key_data)) {
        snprintf(err, errlen, "client-certificate and client-key must be given together");
        return -1;
    }
    return 0;
}

int kube_config_parse(const char *buf, size_t len, const char *dir, const char *context,
                      struct kube_config *cfg, char *err, size_t errlen)
{
    const struct kobj *doc, *ctx, *cl, *u;
    const char *cname, *uname, *ns;
    struct kobj_docs docs;
    char sub[400];
    int rc = -1;

    memset(cfg, 0, sizeof(*cfg));
    if (kobj_parse_yaml(buf, len, &docs, err, errlen)) goto free_docs;
    if (docs.n != 1 || docs.docs[0]->type != KOBJ_MAP) {
        snprintf(err, errlen, "not a kubeconfig (want one YAML mapping)");
        goto free_docs;
    }
    doc = docs.docs[0];
    if (!context && !(context = kobj_str(doc, "current-context"))) {
        snprintf(err, errlen, "no current-context");
        goto free_docs;
    }
    if (!(ctx = kc_named(doc, "contexts", "context", context))) {
        snprintf(err, errlen, "context \"%.100s\" not found", context);
        goto free_docs;
    }
    cname = kobj_str(ctx, "cluster");
    uname = kobj_str(ctx, "user");
    ns = kobj_str(ctx, "namespace");
    if (!cname || !(cl = kc_named(doc, "clusters", "cluster", cname))) {
        snprintf(err, errlen, "context \"%.100s\": cluster \"%.100s\" not found", context,
                 cname ? cname : "");
        goto free_docs;
    }
    if (kc_strdup(context, &cfg->context, err, errlen) ||
        (ns && *ns && kc_strdup(ns, &cfg->ns, err, errlen)))
        goto fail;
    if (kc_cluster(cl, dir, cfg, sub, sizeof(sub))) {
        snprintf(err, errlen, "cluster \"%.100s\": %s", cname, sub);
        goto fail;
    }
    /* a context without a user (or an unknown one) talks anonymously, as kubectl does */
    if (uname && *uname && (u = kc_named(doc, "users", "user", uname)) &&
        kc_user(u, dir, cfg, sub, sizeof(sub))) {
        snprintf(err, errlen, "user \"%.100s\": %s", uname, sub);
        goto fail;
    }
    rc = 0;
    goto free_docs;
fail:
    kube_config_free(cfg);
free_docs:
    kobj_docs_free(&docs);
    return rc;
}

int kube_config_load(const char *path, const char *context, struct kube_config *cfg, char *err,
                     size_t errlen)
{
    char sub[400], *buf, *dir, *slash;
    size_t len;
    int rc;

    memset(cfg, 0, sizeof(*cfg));
    if (!(buf = readfile_len(path, KC_MAX_FILE, &len, err, errlen))) return -1;
    if (!(dir = strdup(path))) {
        free(buf);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        dir[0] = '\0';
    rc = kube_config_parse(buf, len, dir, context, cfg, sub, sizeof(sub));
    if (rc) snprintf(err, errlen, "%s: %s", path, sub);
    free(dir);
    free(buf);
    return rc;
}

static const char *kc_sa_dir(void)
{
    const char *d = getenv("STRAIT_SERVICEACCOUNT_DIR");

    return d && *d ? d : KUBE_CONFIG_SA_DIR;
}

int kube_config_in_cluster_available(void)
{
    const char *h = getenv("KUBERNETES_SERVICE_HOST"), *p = getenv("KUBERNETES_SERVICE_PORT");

    return h && *h && p && *p;
}

int kube_config_in_cluster(struct kube_config *cfg, char *err, size_t errlen)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
    const char *dir = kc_sa_dir();
    char *tok, *ca = NULL, *nsf = NULL;
    int v6;

    memset(cfg, 0, sizeof(*cfg));
    if (!kube_config_in_cluster_available()) {
        snprintf(err, errlen, "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set");
        return -1;
    }
    v6 = strchr(host, ':') != NULL;
    if (asprintf(&cfg->server, "https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port) < 0 ||
        asprintf(&cfg->token_file, "%s/token", dir) < 0 || asprintf(&ca, "%s/ca.crt", dir) < 0 ||
        asprintf(&nsf, "%s/namespace", dir) < 0 || !(cfg->context = strdup("in-cluster"))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    /* the token must be there at start; kube_client re-reads it every minute */
    if (!(tok = kube_config_read_token(cfg->token_file, err, errlen))) goto fail;
    free(tok);
    /* like client-go: without a readable ca.crt the system roots are used */
    if (access(ca, R_OK) == 0) {
        cfg->ca_file = ca;
        ca = NULL;
    }
    cfg->ns = kube_config_read_token(nsf, err, errlen); /* optional */
    free(ca);
    free(nsf);
    return 0;
fail:
    free(ca);
    free(nsf);
    kube_config_free(cfg);
    return -1;
}
