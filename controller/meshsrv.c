/*
 * meshsrv: a small HTTPS/1.1 server on the controller's loop, for the mesh's endpoints.
 *
 * Does: accept TLS connections (OpenSSL on non-blocking sockets; TLS 1.2 and 1.3), read one
 * request per connection (request line, headers, a Content-Length body; at most
 * MESHSRV_MAX_REQUEST bytes in all), route it by exact method + path to a registered
 * handler, and write its answer with Date, Content-Type, Content-Length and Connection:
 * close, then close_notify (and input still arriving is drained for a second, so a client
 * whose body was refused reads the answer rather than a reset). Malformed requests get a clean JSON
 * 4xx of its own: 400 (request line, header syntax, conflicting lengths), 404, 405 with Allow, 411
 * (a body without Content-Length: chunked is not taken), 413, 431. A handler may answer later
 * (MESHSRV_ASYNC): the connection waits, bounded by its timer; one it holds longer
 * (meshsrv_hold, the discovery feed's long poll) is also read meanwhile, so a client that
 * leaves is noticed and its handler told (meshsrv_on_gone). With a client CA
 * (meshsrv_set_client_ca) a client certificate is asked for, not required: one that is
 * given must chain to the CA, and its single URI SAN becomes the request's peer_uri.
 * Does not: keep-alive, pipelining, or know what any path means (Expect: 100-continue gets
 * its interim answer, best effort).
 * Invariants: one loop; every connection is bounded by a timer (MESHSRV_TIMEOUT, or its
 * hold); at most MESHSRV_MAX_CONNS are open besides the held ones, at most MESHSRV_MAX_HELD
 * are held (so long polls never starve the other routes), and a held connection keeps no
 * input buffer; a handler is called at most once per connection; a connection
 * whose asynchronous answer is pending is only freed by meshsrv_finish (closing it before
 * just closes the socket), so the handler's req pointer stays valid.
 */
#include "meshsrv.h"

#include <errno.h>
#include <ev.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>

#include "containerof.h"
#include "httpmsg.h"
#include "jsongen.h"
#include "log.h"
#include "netaddr.h"

#define MESHSRV_MAGIC 0x4d535256u      /* "MSRV" */
#define MESHSRV_CONN_MAGIC 0x4d53434eu /* "MSCN" */
#define MESHSRV_MAX_CONNS 256
#define MESHSRV_MAX_ROUTES 16
#define MESHSRV_HEAD_MAX 512
#define MESHSRV_LINGER 1.0 /* seconds to drain unread input after the answer */

enum msrv_state {
    MSRV_HANDSHAKE,
    MSRV_READING,
    MSRV_HANDLING,
    MSRV_WRITING,
    MSRV_SHUTDOWN,
    MSRV_LINGERING
};

struct msrv_route {
    char *method, *path;
    meshsrv_handler_fn fn;
    void *arg;
};

struct msrv_conn;

struct meshsrv {
    uint32_t magic;
    struct ev_loop *loop;
    int lfd;
    ev_io accept_w;
    SSL_CTX *ctx;
    X509_STORE *client_ca; /* NULL: no client certificate is asked for */
    double timeout;
    struct msrv_route routes[MESHSRV_MAX_ROUTES];
    size_t n_routes;
    unsigned n_conns;
    unsigned n_held; /* connections held (meshsrv_hold), counted in n_conns too */
    struct msrv_conn *conns;
};

struct msrv_conn {
    uint32_t magic;
    struct meshsrv *s;
    struct msrv_conn *prev, *next;
    int fd; /* -1 once closed while an answer is pending */
    SSL *ssl;
    enum msrv_state state;
    ev_io io;
    ev_timer timer;
    char peer[NETADDR_STRLEN];
    char *in; /* MESHSRV_MAX_REQUEST + 1 bytes; released by meshsrv_hold */
    size_t in_len, head_len, body_len;
    struct {
        char *name, *value;
    } headers[MESHSRV_MAX_HEADERS];
    size_t n_headers;
    struct meshsrv_request req;
    char *peer_uri;  /* the verified client certificate's URI SAN, malloc'd, or NULL */
    int held;        /* meshsrv_hold: reading for the client's departure while HANDLING */
    char *held_line; /* meshsrv_hold: "METHOD\0PATH", what req points to once in is gone */
    meshsrv_gone_fn gone_fn;
    void *gone_arg;
    char *out;
    size_t out_len, out_off;
};

const char *meshsrv_header(const struct meshsrv_request *req, const char *name)
{
    const struct msrv_conn *c = container_of(req, const struct msrv_conn, req);
    size_t i;

    for (i = 0; i < c->n_headers; i++)
        if (!strcasecmp(c->headers[i].name, name)) return c->headers[i].value;
    return NULL;
}

/* Frees c, whose socket is closed already. */
static void msrv_free(struct msrv_conn *c)
{
    struct meshsrv *s = c->s;

    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->n_conns--;
    if (c->held) s->n_held--;
    free(c->out);
    free(c->in);
    free(c->held_line);
    free(c->peer_uri);
    c->magic = 0;
    free(c);
}

/*
 * Closes the socket; frees c unless a handler still owes it an answer, and then tells the
 * handler, if it asked (meshsrv_on_gone: it may finish the request from the callback, so c
 * is not touched after).
 */
static void msrv_close(struct msrv_conn *c)
{
    struct ev_loop *loop = c->s->loop;
    meshsrv_gone_fn fn;

    if (c->fd >= 0) {
        ev_io_stop(loop, &c->io);
        ev_timer_stop(loop, &c->timer);
        SSL_free(c->ssl);
        c->ssl = NULL;
        close(c->fd);
        c->fd = -1;
    }
    if (c->state != MSRV_HANDLING) {
        msrv_free(c);
        return;
    }
    if ((fn = c->gone_fn)) {
        c->gone_fn = NULL;
        fn(c->gone_arg, &c->req);
    }
}

/* Waits for the socket to be readable (want 1) or writable (0). */
static void msrv_want(struct msrv_conn *c, int readable)
{
    struct ev_loop *loop = c->s->loop;
    int ev = readable ? EV_READ : EV_WRITE;

    if (ev_is_active(&c->io) && (c->io.events & (EV_READ | EV_WRITE)) == ev) return;
    ev_io_stop(loop, &c->io);
    ev_io_set(&c->io, c->fd, ev);
    ev_io_start(loop, &c->io);
}

/*
 * After an SSL call returned n <= 0: 1 when it should be retried once the socket is ready
 * (the watcher is set), 0 when the connection is over (clean close or error).
 */
static int msrv_retry(struct msrv_conn *c, int n)
{
    switch (SSL_get_error(c->ssl, n)) {
    case SSL_ERROR_WANT_READ:
        msrv_want(c, 1);
        return 1;
    case SSL_ERROR_WANT_WRITE:
        msrv_want(c, 0);
        return 1;
    default:
        ERR_clear_error();
        return 0;
    }
}

/*
 * Serialises an answer into c->out (body taken: blen bytes; 0 means strlen for a text body).
 * A 204 goes without Content-Type, Content-Length and body (RFC 9110 8.6). Returns 0, or -1
 * (out of memory).
 */
static int msrv_format(struct msrv_conn *c, int status, const char *ctype, char *body, size_t blen,
                       const char *extra)
{
    char head[MESHSRV_HEAD_MAX], date[HTTPMSG_DATE_LEN], framing[128];
    int hl;

    if (!status) status = 200;
    if (!blen && body) blen = strlen(body);
    if (status == 204)
        blen = 0, framing[0] = '\0';
    else
        snprintf(framing, sizeof(framing), "Content-Type: %s\r\nContent-Length: %zu\r\n",
                 ctype ? ctype : "application/json", blen);
    httpmsg_date((time_t)ev_now(c->s->loop), date);
    hl = snprintf(head, sizeof(head),
                  "HTTP/1.1 %d %s\r\nDate: %s\r\n%sCache-Control: no-store\r\n%sConnection: "
                  "close\r\n\r\n",
                  status, httpmsg_reason(status), date, framing, extra ? extra : "");
    if (hl < 0 || (size_t)hl >= sizeof(head) || !(c->out = malloc((size_t)hl + blen))) {
        free(body);
        return -1;
    }
    memcpy(c->out, head, (size_t)hl);
    if (blen) memcpy(c->out + hl, body, blen);
    free(body);
    c->out_len = (size_t)hl + blen;
    c->out_off = 0;
    log_debug("mesh_request", "peer=%s method=%s path=%s status=%d", c->peer,
              c->req.method ? c->req.method : "-", c->req.path ? c->req.path : "-", status);
    return 0;
}

char *meshsrv_error_body(const char *msg)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *buf;
    size_t len;
    char *out = NULL;

    if (!g) return NULL;
    yajl_gen_map_open(g);
    jsongen_kv_str(g, "error", msg);
    yajl_gen_map_close(g);
    if (yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok && (out = malloc(len + 2))) {
        memcpy(out, buf, len);
        out[len] = '\n';
        out[len + 1] = '\0';
    }
    yajl_gen_free(g);
    return out;
}

static void msrv_step(struct msrv_conn *c);

/* Starts writing the answer (status 0: could not format it, close). */
static void msrv_reply(struct msrv_conn *c, int status, const char *ctype, char *body, size_t blen,
                       const char *extra)
{
    c->state = MSRV_WRITING;
    if (msrv_format(c, status, ctype, body, blen, extra) < 0) {
        msrv_close(c);
        return;
    }
    msrv_step(c);
}

static void msrv_reply_error(struct msrv_conn *c, int status, const char *msg, const char *extra)
{
    msrv_reply(c, status, NULL, meshsrv_error_body(msg), 0, extra);
}

void meshsrv_finish(struct meshsrv_request *req, int status, const char *content_type, char *body)
{
    struct meshsrv_reply r;

    memset(&r, 0, sizeof(r));
    r.status = status;
    r.content_type = content_type;
    r.body = body;
    meshsrv_finish_reply(req, &r);
}

void meshsrv_finish_reply(struct meshsrv_request *req, struct meshsrv_reply *r)
{
    struct msrv_conn *c = container_of(req, struct msrv_conn, req);
    char *body = r->body;

    if (c->magic != MESHSRV_CONN_MAGIC || c->state != MSRV_HANDLING) abort();
    c->gone_fn = NULL;
    if (c->fd < 0) { /* the client is gone (timer, reset) */
        free(body);
        msrv_free(c);
        return;
    }
    if (c->held) {
        c->held = 0;
        c->s->n_held--;
    }
    r->headers[sizeof(r->headers) - 1] = '\0';
    msrv_reply(c, r->status, r->content_type, body, r->body_len, r->headers);
}

int meshsrv_hold(struct meshsrv_request *req, double seconds)
{
    struct msrv_conn *c = container_of(req, struct msrv_conn, req);
    size_t ml, pl;

    if (c->magic != MESHSRV_CONN_MAGIC || c->state != MSRV_HANDLING) abort();
    if (c->fd < 0) return 0;
    if (!c->held) {
        if (c->s->n_held >= MESHSRV_MAX_HELD) return -1;
        ml = strlen(c->req.method);
        pl = strlen(c->req.path);
        if (!(c->held_line = malloc(ml + pl + 2))) return -1;
        memcpy(c->held_line, c->req.method, ml + 1);
        memcpy(c->held_line + ml + 1, c->req.path, pl + 1);
        c->req.method = c->held_line;
        c->req.path = c->held_line + ml + 1;
        c->req.body = "";
        c->req.body_len = 0;
        c->n_headers = 0;
        free(c->in);
        c->in = NULL;
        c->held = 1;
        c->s->n_held++;
    }
    ev_timer_stop(c->s->loop, &c->timer);
    ev_timer_set(&c->timer, seconds, 0.);
    ev_timer_start(c->s->loop, &c->timer);
    msrv_want(c, 1);
    return 0;
}

void meshsrv_on_gone(struct meshsrv_request *req, meshsrv_gone_fn fn, void *arg)
{
    struct msrv_conn *c = container_of(req, struct msrv_conn, req);

    if (c->magic != MESHSRV_CONN_MAGIC || c->state != MSRV_HANDLING) abort();
    c->gone_fn = fn;
    c->gone_arg = arg;
}

/*
 * A held request's connection is readable: nothing is expected from the client (one request
 * per connection), so what arrives is dropped, and its end (close_notify, FIN, reset) closes
 * the socket.
 */
static void msrv_probe(struct msrv_conn *c)
{
    char sink[512];
    int n;

    while ((n = SSL_read(c->ssl, sink, (int)sizeof(sink))) > 0)
        ;
    if (!msrv_retry(c, n)) {
        log_debug("mesh_client_gone", "peer=%s", c->peer);
        msrv_close(c);
    }
}

/*
 * After the handshake: the client certificate's identity, when one was given and verified
 * and carries exactly one URI SAN (peer_uri stays NULL otherwise).
 */
static void msrv_peer_identity(struct msrv_conn *c)
{
    X509 *x = SSL_get_peer_certificate(c->ssl);
    GENERAL_NAMES *gens;
    const GENERAL_NAME *g, *uri = NULL;
    int i, n_uri = 0;

    if (!x) return;
    if (SSL_get_verify_result(c->ssl) == X509_V_OK &&
        (gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL))) {
        for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
            g = sk_GENERAL_NAME_value(gens, i);
            if (g->type == GEN_URI && n_uri++ == 0) uri = g;
        }
        if (n_uri == 1) {
            const unsigned char *d = ASN1_STRING_get0_data(uri->d.uniformResourceIdentifier);
            int len = ASN1_STRING_length(uri->d.uniformResourceIdentifier);
            if (len > 0 && !memchr(d, '\0', (size_t)len))
                c->peer_uri = strndup((const char *)d, (size_t)len);
        }
        GENERAL_NAMES_free(gens);
    }
    X509_free(x);
    ERR_clear_error();
}

static int msrv_is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Length of the head in buf[0..len) including its blank line, or 0 if incomplete. */
static size_t msrv_head_end(const char *buf, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (buf[i] != '\n') continue;
        if (i + 1 < len && buf[i + 1] == '\n') return i + 2;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') return i + 3;
    }
    return 0;
}

/* The next line of the head at *p (CRLF or LF ended), NUL-terminated in place, or NULL. */
static char *msrv_line(char **p)
{
    char *start = *p, *nl = strchr(start, '\n');

    if (!nl) return NULL;
    *p = nl + 1;
    if (nl > start && nl[-1] == '\r') nl--;
    *nl = '\0';
    return start;
}

/*
 * Parses the head (c->in[0..head_len), NUL-terminated at head_len) in place: request line
 * into c->req, headers into c->headers, the body's length into c->body_len. Returns 0, or
 * the status of the error answer, with *why.
 */
static int msrv_parse_head(struct msrv_conn *c, const char **why)
{
    char *p = c->in, *line, *t, *v, *q, *colon, *e;
    const char *cl = NULL;
    unsigned long long n;
    size_t i;

    *why = "malformed request";
    if (memchr(c->in, '\0', c->head_len)) return 400;
    *why = "malformed request line";
    if (!(line = msrv_line(&p))) return 400;
    for (t = line; msrv_is_tchar((unsigned char)*t); t++)
        ;
    if (t == line || *t != ' ') return 400;
    *t++ = '\0';
    if (*t != '/') return 400;
    for (v = t; *v > ' ' && *v != 0x7f; v++)
        ;
    if (*v != ' ') return 400;
    *v++ = '\0';
    if (strncmp(v, "HTTP/1.", 7) || v[7] < '0' || v[7] > '9' || v[8]) return 400;
    if ((q = strchr(t, '?'))) *q = '\0';
    c->req.method = line;
    c->req.path = t;
    *why = "malformed header";
    while ((line = msrv_line(&p)) && *line) {
        if (*line == ' ' || *line == '\t') return 400; /* obs-fold */
        if (!(colon = strchr(line, ':')) || colon == line) return 400;
        for (e = line; e < colon; e++)
            if (!msrv_is_tchar((unsigned char)*e)) return 400;
        *colon = '\0';
        for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
            ;
        for (e = v + strlen(v); e > v && (e[-1] == ' ' || e[-1] == '\t'); e--)
            ;
        *e = '\0';
        for (e = v; *e; e++)
            if ((unsigned char)*e < 0x20 && *e != '\t') return 400;
        if (c->n_headers == MESHSRV_MAX_HEADERS) {
            *why = "too many header fields";
            return 431;
        }
        c->headers[c->n_headers].name = line;
        c->headers[c->n_headers].value = v;
        c->n_headers++;
    }
    c->body_len = 0;
    for (i = 0; i < c->n_headers; i++) {
        if (!strcasecmp(c->headers[i].name, "Transfer-Encoding")) {
            *why = "a request body needs Content-Length (chunked is not accepted)";
            return 411;
        }
        if (strcasecmp(c->headers[i].name, "Content-Length")) continue;
        *why = "bad Content-Length";
        v = c->headers[i].value;
        if (*v < '0' || *v > '9' || strlen(v) > 12) return 400;
        n = strtoull(v, &e, 10);
        if (*e) return 400;
        if (cl && n != c->body_len) return 400;
        cl = v;
        c->body_len = (size_t)n;
    }
    if (c->head_len + c->body_len > MESHSRV_MAX_REQUEST) {
        *why = "request too large";
        return 413;
    }
    return 0;
}

/* Calls the route for the complete request in c->in. */
static void msrv_dispatch(struct msrv_conn *c)
{
    struct meshsrv *s = c->s;
    struct meshsrv_reply r;
    char allow[160];
    size_t i, alen = 0;
    const struct msrv_route *route = NULL;
    int rc;

    c->req.body = c->in + c->head_len;
    c->req.body_len = c->body_len;
    c->in[c->head_len + c->body_len] = '\0';
    c->req.peer = c->peer;
    c->req.peer_uri = c->peer_uri;
    allow[0] = '\0';
    for (i = 0; i < s->n_routes; i++) {
        if (strcmp(s->routes[i].path, c->req.path)) continue;
        if (!strcmp(s->routes[i].method, c->req.method)) route = &s->routes[i];
        rc = snprintf(allow + alen, sizeof(allow) - alen, "%s%s",
                      alen ? ", " : "Allow: ", s->routes[i].method);
        if (rc > 0 && (size_t)rc < sizeof(allow) - alen) alen += (size_t)rc;
    }
    if (!route) {
        if (!alen) {
            msrv_reply_error(c, 404, "not found", NULL);
            return;
        }
        if (alen + 3 > sizeof(allow)) alen = sizeof(allow) - 3;
        memcpy(allow + alen, "\r\n", 3);
        msrv_reply_error(c, 405, "method not allowed", allow);
        return;
    }
    memset(&r, 0, sizeof(r));
    c->state = MSRV_HANDLING;
    ev_io_stop(s->loop, &c->io);
    rc = route->fn(route->arg, &c->req, &r);
    if (rc == MESHSRV_ASYNC) return;
    if (rc != 0) {
        free(r.body);
        msrv_reply_error(c, 500, "internal error", NULL);
        return;
    }
    r.headers[sizeof(r.headers) - 1] = '\0';
    msrv_reply(c, r.status, r.content_type, r.body, r.body_len, r.headers);
}

/*
 * "Expect: 100-continue" with the body still to come: the interim answer, so the client
 * sends at once instead of after its wait. Best effort: if it cannot be written now, the
 * client sends after its timeout anyway.
 */
static void msrv_continue(struct msrv_conn *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    const char *e = meshsrv_header(&c->req, "Expect");

    if (!e || strcasecmp(e, "100-continue") || c->in_len >= c->head_len + c->body_len) return;
    if (SSL_write(c->ssl, cont, (int)sizeof(cont) - 1) <= 0) ERR_clear_error();
}

/* Reads what is there; dispatches or answers an error once the request is complete. */
static void msrv_read(struct msrv_conn *c)
{
    const char *why;
    size_t room, scan_from;
    int n, st;

    for (;;) {
        room = MESHSRV_MAX_REQUEST - c->in_len;
        if (room == 0) {
            msrv_reply_error(c, c->head_len ? 413 : 431, "request too large", NULL);
            return;
        }
        n = SSL_read(c->ssl, c->in + c->in_len, (int)(room > INT32_MAX ? INT32_MAX : room));
        if (n <= 0) {
            if (!msrv_retry(c, n)) msrv_close(c);
            return;
        }
        scan_from = c->in_len > 3 ? c->in_len - 3 : 0;
        c->in_len += (size_t)n;
        if (!c->head_len) {
            size_t end = msrv_head_end(c->in + scan_from, c->in_len - scan_from);
            if (!end) continue;
            c->head_len = scan_from + end;
            if ((st = msrv_parse_head(c, &why))) {
                msrv_reply_error(c, st, why, NULL);
                return;
            }
            msrv_continue(c);
        }
        if (c->in_len >= c->head_len + c->body_len) {
            if (c->in_len > c->head_len + c->body_len) {
                msrv_reply_error(c, 400, "data after the request body (no pipelining)", NULL);
                return;
            }
            msrv_dispatch(c);
            return;
        }
    }
}

/* Runs the connection as far as the socket allows. */
static void msrv_step(struct msrv_conn *c)
{
    int n;

    switch (c->state) {
    case MSRV_HANDSHAKE:
        if ((n = SSL_accept(c->ssl)) <= 0) {
            if (!msrv_retry(c, n)) {
                log_debug("mesh_handshake_failed", "peer=%s", c->peer);
                msrv_close(c);
            }
            return;
        }
        c->state = MSRV_READING;
        msrv_peer_identity(c);
        /* fall through */
    case MSRV_READING:
        msrv_read(c);
        return;
    case MSRV_HANDLING:
        if (c->held) msrv_probe(c);
        return;
    case MSRV_WRITING:
        while (c->out_off < c->out_len) {
            n = SSL_write(c->ssl, c->out + c->out_off, (int)(c->out_len - c->out_off));
            if (n <= 0) {
                if (!msrv_retry(c, n)) msrv_close(c);
                return;
            }
            c->out_off += (size_t)n;
        }
        c->state = MSRV_SHUTDOWN;
        /* fall through */
    case MSRV_SHUTDOWN:
        /* our close_notify; the peer's is not awaited */
        if ((n = SSL_shutdown(c->ssl)) < 0 && msrv_retry(c, n)) return;
        /* then drain what the client still sends (a body we refused unread): closing with
         * unread input would reset the connection before the client read the answer */
        if (shutdown(c->fd, SHUT_WR) < 0) {
            msrv_close(c);
            return;
        }
        c->state = MSRV_LINGERING;
        ev_timer_stop(c->s->loop, &c->timer);
        ev_timer_set(&c->timer, MESHSRV_LINGER, 0.);
        ev_timer_start(c->s->loop, &c->timer);
        msrv_want(c, 1);
        /* fall through */
    case MSRV_LINGERING: {
        char sink[4096];
        ssize_t r;
        while ((r = read(c->fd, sink, sizeof(sink))) > 0)
            ;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        msrv_close(c);
        return;
    }
    }
}

static void msrv_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct msrv_conn *c = container_of(io, struct msrv_conn, io);

    (void)loop;
    (void)revents;
    if (c->magic != MESHSRV_CONN_MAGIC) abort();
    msrv_step(c);
}

static void msrv_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct msrv_conn *c = container_of(t, struct msrv_conn, timer);

    (void)loop;
    (void)revents;
    if (c->magic != MESHSRV_CONN_MAGIC) abort();
    log_debug("mesh_conn_timeout", "peer=%s", c->peer);
    msrv_close(c);
}

static void msrv_accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct meshsrv *s = container_of(io, struct meshsrv, accept_w);
    struct sockaddr_storage ss;
    socklen_t sl;
    struct msrv_conn *c;
    int fd, i;

    (void)revents;
    if (s->magic != MESHSRV_MAGIC) abort();
    for (i = 0; i < 16; i++) {
        sl = sizeof(ss);
        fd = accept4(s->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("mesh_accept_failed", "reason=\"%s\"", strerror(errno));
            return;
        }
        if (s->n_conns - s->n_held >= MESHSRV_MAX_CONNS || !(c = calloc(1, sizeof(*c)))) {
            close(fd);
            continue;
        }
        if (!(c->in = malloc(MESHSRV_MAX_REQUEST + 1)) || !(c->ssl = SSL_new(s->ctx)) ||
            SSL_set_fd(c->ssl, fd) != 1) {
            ERR_clear_error();
            SSL_free(c->ssl);
            free(c->in);
            free(c);
            close(fd);
            continue;
        }
        c->magic = MESHSRV_CONN_MAGIC;
        c->s = s;
        c->fd = fd;
        c->state = MSRV_HANDSHAKE;
        netaddr_format((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
        c->next = s->conns;
        if (s->conns) s->conns->prev = c;
        s->conns = c;
        s->n_conns++;
        ev_io_init(&c->io, msrv_io_cb, fd, EV_READ);
        ev_timer_init(&c->timer, msrv_timer_cb, s->timeout, 0.);
        ev_io_start(loop, &c->io);
        ev_timer_start(loop, &c->timer);
    }
}

/* A server SSL_CTX for cert_pem (the certificate, then any chain) and key_pem. NULL with err. */
static SSL_CTX *msrv_ctx(const char *cert_pem, const char *key_pem, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    BIO *cb = BIO_new_mem_buf(cert_pem, -1), *kb = BIO_new_mem_buf(key_pem, -1);
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    unsigned long e;
    char buf[160];

    if (!ctx || !cb || !kb || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        !(x = PEM_read_bio_X509(cb, NULL, NULL, NULL)) ||
        !(k = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL)) ||
        SSL_CTX_use_certificate(ctx, x) != 1 || SSL_CTX_use_PrivateKey(ctx, k) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        e = ERR_get_error();
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(err, errlen, "TLS certificate: %s", e ? buf : "out of memory");
        ERR_clear_error();
        SSL_CTX_free(ctx);
        ctx = NULL;
    } else {
        SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_num_tickets(ctx, 0);
        /* RELEASE_BUFFERS: an idle (held) connection keeps no TLS record buffers */
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
    }
    X509_free(x);
    EVP_PKEY_free(k);
    BIO_free(cb);
    BIO_free(kb);
    return ctx;
}

/*
 * Asks for client certificates verified against store (NULL: none asked for). Not required:
 * a client without one still reaches every route; one whose certificate does not verify
 * fails the handshake.
 */
static void msrv_ctx_client_ca(SSL_CTX *ctx, X509_STORE *store)
{
    if (!store) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return;
    }
    SSL_CTX_set1_cert_store(ctx, store);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, NULL);
}

struct meshsrv *meshsrv_start(struct ev_loop *loop, const struct sockaddr *sa, socklen_t salen,
                              const char *cert_pem, const char *key_pem, char *err, size_t errlen)
{
    struct meshsrv *s = calloc(1, sizeof(*s));
    char buf[NETADDR_STRLEN];

    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->magic = MESHSRV_MAGIC;
    s->loop = loop;
    s->timeout = MESHSRV_TIMEOUT;
    if (!(s->ctx = msrv_ctx(cert_pem, key_pem, err, errlen))) goto free_srv;
    if ((s->lfd = netaddr_listen(sa, salen, err, errlen)) < 0) goto free_ctx;
    ev_io_init(&s->accept_w, msrv_accept_cb, s->lfd, EV_READ);
    ev_io_start(loop, &s->accept_w);
    log_info("mesh_listening", "addr=%s", meshsrv_address(s, buf, sizeof(buf)));
    return s;

free_ctx:
    SSL_CTX_free(s->ctx);
free_srv:
    free(s);
    return NULL;
}

int meshsrv_route(struct meshsrv *s, const char *method, const char *path, meshsrv_handler_fn fn,
                  void *arg)
{
    struct msrv_route *r;

    if (s->n_routes == MESHSRV_MAX_ROUTES) return -1;
    r = &s->routes[s->n_routes];
    if (!(r->method = strdup(method)) || !(r->path = strdup(path))) {
        free(r->method);
        return -1;
    }
    r->fn = fn;
    r->arg = arg;
    s->n_routes++;
    return 0;
}

int meshsrv_set_cert(struct meshsrv *s, const char *cert_pem, const char *key_pem, char *err,
                     size_t errlen)
{
    SSL_CTX *ctx = msrv_ctx(cert_pem, key_pem, err, errlen);

    if (!ctx) return -1;
    msrv_ctx_client_ca(ctx, s->client_ca);
    SSL_CTX_free(s->ctx); /* connections in progress hold their own reference */
    s->ctx = ctx;
    return 0;
}

int meshsrv_set_client_ca(struct meshsrv *s, const char *pem_bundle, char *err, size_t errlen)
{
    X509_STORE *store = X509_STORE_new();
    BIO *b = BIO_new_mem_buf(pem_bundle, -1);
    X509 *x;
    int n = 0;

    while (store && b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        if (X509_STORE_add_cert(store, x) == 1) n++;
        X509_free(x);
    }
    BIO_free(b);
    ERR_clear_error();
    if (!n) {
        snprintf(err, errlen, "client CA: %s",
                 store ? "no certificate in the bundle" : "out of memory");
        X509_STORE_free(store);
        return -1;
    }
    X509_STORE_free(s->client_ca);
    s->client_ca = store;
    msrv_ctx_client_ca(s->ctx, store);
    return 0;
}

void meshsrv_set_timeout(struct meshsrv *s, double seconds)
{
    s->timeout = seconds;
}

const char *meshsrv_address(const struct meshsrv *s, char *buf, size_t n)
{
    return netaddr_local(s->lfd, buf, n);
}

void meshsrv_stop(struct meshsrv *s)
{
    size_t i;

    if (!s) return;
    while (s->conns) {
        struct msrv_conn *c = s->conns;
        c->state = MSRV_SHUTDOWN; /* freed even if an answer were pending (a caller's bug) */
        msrv_close(c);
    }
    ev_io_stop(s->loop, &s->accept_w);
    close(s->lfd);
    for (i = 0; i < s->n_routes; i++) {
        free(s->routes[i].method);
        free(s->routes[i].path);
    }
    SSL_CTX_free(s->ctx);
    X509_STORE_free(s->client_ca);
    s->magic = 0;
    free(s);
}
