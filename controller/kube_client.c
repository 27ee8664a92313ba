/*
 * kube_client: the controller's HTTP client for the Kubernetes API, libcurl's multi socket
 * interface driven by libev.
 *
 * Does: one CURLM per client, so every request shares its connection cache (keep-alive,
 * HTTP/2 multiplexing when the server offers it); curl's socket callback maps to one ev_io
 * per socket and its timer callback to one ev_timer, and each fires
 * curl_multi_socket_action; finished transfers are collected with curl_multi_info_read and
 * handed to their done callback. TLS: CA file or CA bytes (CURLOPT_CAINFO_BLOB), client
 * certificate and key as files or bytes (*_BLOB, no temporary files), or no verification.
 * Bearer token fixed or from a file that is re-read every KUBE_CLIENT_TOKEN_REFRESH seconds
 * and after a 401 (at most once a second), so rotated service account tokens are picked up.
 * Counts every answer in health (latency histogram, errors by status).
 * Does not: retry, back off or interpret answers beyond the status, Retry-After and an
 * optional Status body (callers decide: kube_watch, later leader election and status), follow
 * redirects, or use proxies from the environment.
 * Invariants: no libcurl call is made from inside a libcurl callback: requests started or
 * cancelled while curl is running (a data callback) are queued and applied right after
 * curl_multi_socket_action returns. done callbacks run outside libcurl, once per request,
 * never synchronously from the call that started it (a new easy handle only arms the 0 ms
 * timer). Structs reached through curl's void pointers carry a magic number.
 */
#include "kube_client.h"

#include <curl/curl.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "containerof.h"
#include "health.h"
#include "kobj.h"
#include "log.h"

#define KC_MAGIC 0x4b434c54u     /* "KCLT" */
#define KC_REQ_MAGIC 0x4b524551u /* "KREQ" */
#define KC_SOCK_MAGIC 0x4b534f4bu
#define KC_CONNECT_TIMEOUT_MS 10000L
#define KC_MAX_BODY (256u << 20) /* a list page is far below; stops a runaway answer */
#define KC_TOKEN_MIN_GAP 1.0     /* re-reads of the token file after 401s */

struct kube_sock {
    unsigned magic;
    ev_io io;
    struct kube_client *c;
    struct kube_sock *prev, *next;
};

struct kube_request {
    unsigned magic;
    struct kube_client *c;
    struct kube_request *prev, *next;
    CURL *easy;
    struct curl_slist *headers;
    char *method, *path;
    kube_data_fn data;
    kube_done_fn done;
    void *arg;
    char *body; /* the answer, unless streamed */
    size_t body_len, body_cap;
    double retry_after;
    int added;      /* handed to curl_multi_add_handle */
    int cancelled;  /* free it at the next flush, no callback */
    int completing; /* inside its done callback: cancel is a no-op */
    int aborted;    /* a data callback said stop */
    int too_big;
    char errbuf[CURL_ERROR_SIZE];
};

struct kube_client {
    unsigned magic;
    struct ev_loop *loop;
    CURLM *multi;
    ev_timer timer;       /* curl's timeout */
    ev_timer token_timer; /* token file refresh */
    int in_curl;          /* inside curl_multi_socket_action */
    struct kube_request *reqs;
    struct kube_sock *socks;
    unsigned n_reqs;
    char *server;
    char *auth; /* "Authorization: Bearer ..." or NULL */
    char *token_file;
    ev_tstamp token_read;
    int insecure;
    char *ca_file, *cert_file, *key_file;
    struct curl_blob ca, cert, key; /* data NULL when not given */
};

/* ---- tokens ---- */

static int kc_set_token(struct kube_client *c, const char *token)
{
    char *auth;

    if (!kube_config_token_ok(token) || asprintf(&auth, "Authorization: Bearer %s", token) < 0)
        return -1;
    free(c->auth);
    c->auth = auth;
    return 0;
}

/* Re-reads the token file; keeps the old token when it cannot be read. */
static void kc_token_reload(struct kube_client *c, const char *why)
{
    char err[300], q[400], *tok;
    size_t plen = strlen("Authorization: Bearer ");

    if (!c->token_file) return;
    c->token_read = ev_now(c->loop);
    if (!(tok = kube_config_read_token(c->token_file, err, sizeof(err)))) {
        log_warn("token_reload_failed", "file=%s reason=%s", c->token_file,
                 log_quote(q, sizeof(q), err));
        return;
    }
    if (!c->auth || strcmp(c->auth + plen, tok)) {
        if (kc_set_token(c, tok))
            log_warn("token_reload_failed", "file=%s reason=\"out of memory\"", c->token_file);
        else
            log_info("token_reloaded", "file=%s trigger=%s", c->token_file, why);
    }
    free(tok);
}

static void kc_on_token_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct kube_client *c = container_of(w, struct kube_client, token_timer);

    (void)loop;
    (void)revents;
    if (c->magic != KC_MAGIC) abort();
    kc_token_reload(c, "timer");
}

/* ---- requests ---- */

static void kc_req_free(struct kube_request *r)
{
    struct kube_client *c = r->c;

    if (r->added) curl_multi_remove_handle(c->multi, r->easy);
    curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    if (r->prev)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    c->n_reqs--;
    free(r->method);
    free(r->path);
    free(r->body);
    r->magic = 0;
    free(r);
}

/*
 * Retry-After value: delay-seconds or an HTTP-date (RFC 9110 10.2.3), relative to now.
 * Returns seconds >= 0, or -1 when v is neither.
 */
static double kc_parse_retry_after(const char *v, time_t now)
{
    struct tm tm;
    const char *end;
    char *e;
    long s;

    while (*v == ' ' || *v == '\t')
        v++;
    if (*v >= '0' && *v <= '9') {
        s = strtol(v, &e, 10);
        while (*e == ' ' || *e == '\t' || *e == '\r' || *e == '\n')
            e++;
        return *e || s < 0 ? -1 : (double)s;
    }
    memset(&tm, 0, sizeof(tm));
    if (!(end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm))) return -1;
    s = (long)(timegm(&tm) - now);
    return s > 0 ? (double)s : 0.;
}

static size_t kc_on_header(char *buf, size_t size, size_t n, void *userp)
{
    struct kube_request *r = userp;
    size_t len = size * n;
    char line[256];

    if (r->magic != KC_REQ_MAGIC) abort();
    if (r->cancelled) return 0;
    if (len >= 5 && !strncmp(buf, "HTTP/", 5)) {
        r->retry_after = -1; /* a new answer (after a 100 Continue, say) */
    } else if (r->data && (len == 2 || len == 1) && (buf[0] == '\r' || buf[0] == '\n')) {
        long status = 0;
        /* the end of a head: tell a stream it is open (1xx heads are not final) */
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300 && r->data(r->arg, NULL, 0)) {
            r->aborted = 1;
            return 0;
        }
    } else if (len > 12 && !strncasecmp(buf, "Retry-After:", 12) && len < sizeof(line)) {
        memcpy(line, buf + 12, len - 12);
        line[len - 12] = '\0';
        r->retry_after = kc_parse_retry_after(line, time(NULL));
    }
    return len;
}

static size_t kc_on_write(char *buf, size_t size, size_t n, void *userp)
{
    struct kube_request *r = userp;
    size_t len = size * n;
    long status = 0;

    if (r->magic != KC_REQ_MAGIC) abort();
    if (r->cancelled) return 0;
    if (r->data) {
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300) {
            if (r->data(r->arg, buf, len)) {
                r->aborted = 1;
                return 0;
            }
            return len;
        }
    }
    if (r->body_len + len > KC_MAX_BODY) {
        r->too_big = 1;
        return 0;
    }
    if (r->body_cap - r->body_len < len + 1) {
        size_t cap = r->body_cap ? r->body_cap : 16384;
        char *nb;
        while (cap - r->body_len < len + 1)
            cap *= 2;
        if (!(nb = realloc(r->body, cap))) return 0;
        r->body = nb;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, buf, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return len;
}

/* Fails a request that could not be handed to curl (only when out of memory). */
static void kc_fail_now(struct kube_request *r, const char *why)
{
    struct kube_response resp;

    memset(&resp, 0, sizeof(resp));
    resp.retry_after = -1;
    resp.body = "";
    resp.error = why;
    resp.method = r->method;
    resp.path = r->path;
    if (r->done) {
        r->completing = 1;
        r->done(r->arg, &resp);
    }
    kc_req_free(r);
}

/* Applies what was deferred while curl ran: new handles in, cancelled ones out. */
static void kc_flush(struct kube_client *c)
{
    struct kube_request *r, *next;

again:
    for (r = c->reqs; r; r = next) {
        next = r->next;
        if (r->cancelled) {
            kc_req_free(r);
        } else if (!r->added) {
            if (curl_multi_add_handle(c->multi, r->easy) == CURLM_OK) {
                r->added = 1;
                continue;
            }
            /* its done callback may cancel anything: start over */
            kc_fail_now(r, "curl_multi_add_handle failed");
            goto again;
        }
    }
}

static void kc_complete(struct kube_client *c, struct kube_request *r, CURLcode result)
{
    struct kube_response resp;
    double t = 0.;
    long status = 0;

    curl_multi_remove_handle(c->multi, r->easy);
    r->added = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(r->easy, r->data ? CURLINFO_STARTTRANSFER_TIME : CURLINFO_TOTAL_TIME, &t);
    memset(&resp, 0, sizeof(resp));
    resp.status = status;
    resp.body = r->body ? r->body : "";
    resp.body_len = r->body_len;
    resp.retry_after = r->retry_after;
    resp.complete = result == CURLE_OK;
    resp.seconds = t;
    resp.method = r->method;
    resp.path = r->path;
    if (resp.complete)
        resp.error = "";
    else if (r->aborted)
        resp.error = "aborted";
    else if (r->too_big)
        resp.error = "answer too large";
    else
        resp.error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(result);
    health_observe_api(r->method, status, t);
    log_debug("api_request", "method=%s path=%s status=%ld seconds=%.3f complete=%d", r->method,
              r->path, status, t, resp.complete);
    /* a rotated token is the usual reason for a 401: read it before the caller retries */
    if (status == 401 && c->token_file && ev_now(c->loop) - c->token_read >= KC_TOKEN_MIN_GAP)
        kc_token_reload(c, "401");
    if (!r->cancelled && r->done) {
        r->completing = 1;
        r->done(r->arg, &resp);
    }
    kc_req_free(r);
}

static void kc_check_done(struct kube_client *c)
{
    struct kube_request *r;
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        r = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (!r || r->magic != KC_REQ_MAGIC) abort();
        kc_complete(c, r, msg->data.result);
    }
}

static void kc_action(struct kube_client *c, curl_socket_t fd, int flags)
{
    int running;

    c->in_curl++;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    c->in_curl--;
    kc_check_done(c);
    kc_flush(c);
}

/* ---- libcurl ↔ libev ---- */

static void kc_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct kube_sock *ks = container_of(w, struct kube_sock, io);
    int flags = 0;

    (void)loop;
    if (ks->magic != KC_SOCK_MAGIC) abort();
    if (revents & EV_READ) flags |= CURL_CSELECT_IN;
    if (revents & EV_WRITE) flags |= CURL_CSELECT_OUT;
    kc_action(ks->c, w->fd, flags); /* ks may be gone now */
}

static void kc_on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct kube_client *c = container_of(w, struct kube_client, timer);

    (void)loop;
    (void)revents;
    if (c->magic != KC_MAGIC) abort();
    kc_action(c, CURL_SOCKET_TIMEOUT, 0);
}

static void kc_sock_free(struct kube_client *c, struct kube_sock *ks)
{
    ev_io_stop(c->loop, &ks->io);
    if (ks->prev)
        ks->prev->next = ks->next;
    else
        c->socks = ks->next;
    if (ks->next) ks->next->prev = ks->prev;
    ks->magic = 0;
    free(ks);
}

static int kc_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct kube_client *c = userp;
    struct kube_sock *ks = socketp;
    int events = 0;

    (void)easy;
    if (c->magic != KC_MAGIC || (ks && ks->magic != KC_SOCK_MAGIC)) abort();
    if (what == CURL_POLL_REMOVE) {
        if (ks) {
            curl_multi_assign(c->multi, fd, NULL);
            kc_sock_free(c, ks);
        }
        return 0;
    }
    if (what & CURL_POLL_IN) events |= EV_READ;
    if (what & CURL_POLL_OUT) events |= EV_WRITE;
    if (!ks) {
        if (!(ks = calloc(1, sizeof(*ks)))) return -1;
        ks->magic = KC_SOCK_MAGIC;
        ks->c = c;
        ks->next = c->socks;
        if (c->socks) c->socks->prev = ks;
        c->socks = ks;
        ev_io_init(&ks->io, kc_on_io, fd, events);
        curl_multi_assign(c->multi, fd, ks);
    } else {
        ev_io_stop(c->loop, &ks->io);
        ev_io_set(&ks->io, fd, events);
    }
    ev_io_start(c->loop, &ks->io);
    return 0;
}

static int kc_on_timer(CURLM *multi, long ms, void *userp)
{
    struct kube_client *c = userp;

    (void)multi;
    if (c->magic != KC_MAGIC) abort();
    ev_timer_stop(c->loop, &c->timer);
    if (ms >= 0) {
        /* 0 means "as soon as possible": the next loop iteration, outside this callback */
        ev_timer_set(&c->timer, (double)ms / 1000., 0.);
        ev_timer_start(c->loop, &c->timer);
    }
    return 0;
}

/* ---- setup ---- */

static int kc_blob(struct curl_blob *b, const unsigned char *data, size_t len)
{
    if (!data) return 0;
    if (!(b->data = malloc(len ? len : 1))) return -1;
    memcpy(b->data, data, len);
    b->len = len;
    b->flags = CURL_BLOB_COPY;
    return 0;
}

static int kc_dup(char **out, const char *s)
{
    if (!s) return 0;
    return (*out = strdup(s)) ? 0 : -1;
}

/* Frees the settings kube_client_new copied into c (not c itself). */
static void kc_free_settings(struct kube_client *c)
{
    free(c->server);
    free(c->auth);
    free(c->token_file);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    free(c->ca.data);
    free(c->cert.data);
    free(c->key.data);
}

struct kube_client *kube_client_new(struct ev_loop *loop, const struct kube_config *cfg, char *err,
                                    size_t errlen)
{
    struct kube_client *c;
    char *tok = NULL;

    if (!cfg->server) {
        snprintf(err, errlen, "no API server address");
        return NULL;
    }
    if (!(c = calloc(1, sizeof(*c)))) goto oom;
    c->magic = KC_MAGIC;
    c->loop = loop;
    c->insecure = cfg->insecure;
    if (kc_dup(&c->server, cfg->server) || kc_dup(&c->token_file, cfg->token_file) ||
        kc_dup(&c->ca_file, cfg->ca_file) || kc_dup(&c->cert_file, cfg->cert_file) ||
        kc_dup(&c->key_file, cfg->key_file) || kc_blob(&c->ca, cfg->ca_data, cfg->ca_data_len) ||
        kc_blob(&c->cert, cfg->cert_data, cfg->cert_data_len) ||
        kc_blob(&c->key, cfg->key_data, cfg->key_data_len))
        goto oom_client;
    if (c->token_file) {
        if (!(tok = kube_config_read_token(c->token_file, err, errlen))) goto free_client;
        if (kc_set_token(c, tok)) goto oom_client;
        free(tok);
        tok = NULL;
        c->token_read = ev_now(loop);
    } else if (cfg->token && kc_set_token(c, cfg->token)) {
        goto oom_client;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "curl_global_init failed");
        goto free_client;
    }
    if (!(c->multi = curl_multi_init())) {
        snprintf(err, errlen, "curl_multi_init failed");
        goto global_cleanup;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, kc_on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, kc_on_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    ev_timer_init(&c->timer, kc_on_timeout, 0., 0.);
    ev_timer_init(&c->token_timer, kc_on_token_timer, KUBE_CLIENT_TOKEN_REFRESH,
                  KUBE_CLIENT_TOKEN_REFRESH);
    if (c->token_file) ev_timer_start(loop, &c->token_timer);
    return c;

global_cleanup:
    curl_global_cleanup();
    goto free_client;
oom_client:
    snprintf(err, errlen, "out of memory");
free_client:
    free(tok);
    kc_free_settings(c);
    free(c);
    return NULL;
oom:
    snprintf(err, errlen, "out of memory");
    return NULL;
}

void kube_client_free(struct kube_client *c)
{
    if (!c) return;
    while (c->reqs)
        kc_req_free(c->reqs);
    curl_multi_cleanup(c->multi);
    while (c->socks)
        kc_sock_free(c, c->socks);
    ev_timer_stop(c->loop, &c->timer);
    ev_timer_stop(c->loop, &c->token_timer);
    curl_global_cleanup();
    kc_free_settings(c);
    c->magic = 0;
    free(c);
}

/* TLS and authentication options every request carries (so connections can be reused). */
static void kc_setup_tls(struct kube_client *c, CURL *e)
{
    if (c->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (c->ca.data)
        curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &c->ca);
    else if (c->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    if (c->cert.data) {
        curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &c->cert);
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
    } else if (c->cert_file) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, c->cert_file);
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
    }
    if (c->key.data) {
        curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &c->key);
        curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    } else if (c->key_file) {
        curl_easy_setopt(e, CURLOPT_SSLKEY, c->key_file);
        curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    }
}

static struct kube_request *kc_start(struct kube_client *c, const char *method, const char *path,
                                     const char *content_type, const void *body, size_t body_len,
                                     double timeout, kube_data_fn data, kube_done_fn done,
                                     void *arg, char *err, size_t errlen)
{
    struct kube_request *r;
    struct curl_slist *h;
    char *url = NULL, ct[160];
    CURL *e;

    if (c->magic != KC_MAGIC) abort();
    if (!path || path[0] != '/') {
        snprintf(err, errlen, "path must start with '/'");
        return NULL;
    }
    if (!(r = calloc(1, sizeof(*r)))) goto oom;
    r->magic = KC_REQ_MAGIC;
    r->c = c;
    r->data = data;
    r->done = done;
    r->arg = arg;
    r->retry_after = -1;
    if (!(r->method = strdup(data ? "WATCH" : method)) || !(r->path = strdup(path)) ||
        asprintf(&url, "%s%s", c->server, path) < 0) {
        url = NULL;
        goto oom_req;
    }
    if (!(r->easy = e = curl_easy_init())) goto oom_req;
    h = curl_slist_append(NULL, "Accept: application/json");
    if (h) r->headers = h;
    if (h && c->auth) h = curl_slist_append(r->headers, c->auth);
    if (h && body) {
        snprintf(ct, sizeof(ct), "Content-Type: %s",
                 content_type ? content_type : "application/json");
        h = curl_slist_append(r->headers, ct);
        /* no 100-continue round trip: the API server answers small bodies at once */
        if (h) h = curl_slist_append(r->headers, "Expect:");
    }
    if (!h) goto oom_req;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "strait-controller");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, KC_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 15L);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, kc_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, kc_on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    if (timeout > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000.));
    if (!data) curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* big lists compress well */
    kc_setup_tls(c, e);
    if (strcmp(method, "GET")) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
    }
    free(url);
    r->next = c->reqs;
    if (c->reqs) c->reqs->prev = r;
    c->reqs = r;
    c->n_reqs++;
    if (!c->in_curl) {
        if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
            snprintf(err, errlen, "curl_multi_add_handle failed");
            r->done = NULL;
            kc_req_free(r);
            return NULL;
        }
        r->added = 1;
    }
    return r;

oom_req:
    free(url);
    if (r->easy) curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->method);
    free(r->path);
    free(r);
oom:
    snprintf(err, errlen, "out of memory");
    return NULL;
}

struct kube_request *kube_client_request(struct kube_client *c, const char *method,
                                         const char *path, const char *content_type,
                                         const void *body, size_t body_len, double timeout,
                                         kube_done_fn done, void *arg, char *err, size_t errlen)
{
    return kc_start(c, method ? method : "GET", path, content_type, body, body_len, timeout, NULL,
                    done, arg, err, errlen);
}

struct kube_request *kube_client_stream(struct kube_client *c, const char *path, double timeout,
                                        kube_data_fn data, kube_done_fn done, void *arg, char *err,
                                        size_t errlen)
{
    if (!data) {
        snprintf(err, errlen, "a stream needs a data callback");
        return NULL;
    }
    return kc_start(c, "GET", path, NULL, NULL, 0, timeout, data, done, arg, err, errlen);
}

void kube_client_cancel(struct kube_request *r)
{
    if (!r) return;
    if (r->magic != KC_REQ_MAGIC) abort();
    if (r->completing) return;
    r->done = NULL;
    r->data = NULL;
    r->cancelled = 1;
    if (!r->c->in_curl) kc_req_free(r);
}

unsigned kube_client_pending(const struct kube_client *c)
{
    return c->n_reqs;
}

/* ---- helpers ---- */

int kube_client_parse_status(const char *body, size_t len, struct kube_status *st)
{
    struct kobj_docs docs;
    const struct kobj *d;
    const char *kind, *s;
    char err[128];
    long code;
    int rc = -1;

    memset(st, 0, sizeof(*st));
    if (!body || !len || kobj_parse_json(body, len, &docs, err, sizeof(err))) return -1;
    if (docs.n == 1 && (d = docs.docs[0]) && (kind = kobj_str(d, "kind")) &&
        !strcmp(kind, "Status")) {
        if (!kobj_int(kobj_get(d, "code"), &code)) st->code = code;
        if ((s = kobj_str(d, "reason"))) snprintf(st->reason, sizeof(st->reason), "%s", s);
        if ((s = kobj_str(d, "message"))) snprintf(st->message, sizeof(st->message), "%s", s);
        rc = 0;
    }
    kobj_docs_free(&docs);
    return rc;
}

int kube_client_escape(const char *s, char *out, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            if (o + 1 >= n) return -1;
            out[o++] = (char)ch;
        } else {
            if (o + 3 >= n) return -1;
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    if (o >= n) return -1;
    out[o] = '\0';
    return 0;
}
