/* tlsload: a TLS handshake load generator for the benchmarks (bench/tls.sh).
 *
 * What it does: keeps N connections to HOST:PORT busy for S seconds, one thread, non-blocking
 * sockets on edge-triggered epoll. Each connection does one TLS handshake (full, or with -r
 * resumed from the session of the same slot's previous connection), sends one small
 * HTTP/1.1 GET with "Connection: close", reads the whole response (a 200 framed by
 * Content-Length; anything else counts as an http error), sends close_notify, closes, and
 * starts again. It prints one line of key=value figures: completed connections per second
 * (= handshakes/s), errors by kind, the share of offered sessions the server resumed
 * (SSL_session_reused), the tickets the server issued per connection, the connection latency
 * p50/p99 and the generator's own CPU use, so that a misconfigured run (no resumption,
 * client-bound) is visible, and what the first handshake negotiated.
 * What it does not: verify the certificate chain unless -C is given (the chain check is one
 * more ECDSA verify per handshake on the client, which is already the bottleneck; the
 * server's CertificateVerify signature is always checked by OpenSSL), keep connections
 * alive (wrk does that), or pace the load.
 * Invariants: a slot holds at most one connection; a connection's SSL and socket are freed
 * on every exit path (conn_close); only connections completed before the deadline count.
 *
 * TLS 1.3 note: the server's NewSessionTicket messages arrive after the handshake, so the
 * session for the next resumption is taken after the response has been read.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define RESP_MAX 16384

enum state { ST_CONNECT, ST_HANDSHAKE, ST_WRITE, ST_READ };

enum err_kind { E_CONNECT, E_TLS, E_HTTP, E_TIMEOUT, E_COUNT };
static const char *const err_names[E_COUNT] = {"connect", "tls", "http", "timeout"};

struct conn {
    int fd;
    enum state st;
    SSL *ssl;
    SSL_SESSION *sess; /* the slot's session for the next connection (-r) */
    int offered;       /* this connection offered a session */
    double t0;         /* connect start */
    size_t wrote;
    size_t got;
    char resp[RESP_MAX];
};

static struct {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    const char *sni;
    const char *path;
    int conns;
    double secs;
    int resume;
    double timeout;
    SSL_CTX *ctx;
    int epfd;
    char req[512];
    size_t reqlen;
    /* results */
    uint64_t done, full, resumed, offered, errors[E_COUNT];
    uint64_t tickets; /* NewSessionTicket messages received on counted connections */
    double *lat;
    size_t nlat, caplat;
    int shown;
    char info[256];
    int done_phase; /* past the deadline: completions no longer count */
} g;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
    fprintf(stderr, "usage: tlsload [-c CONNS] [-d SECONDS] [-r] [-2] [-n SNI] [-p PATH] "
                    "[-g GROUPS] [-C CAFILE] [-t TIMEOUT] HOST:PORT\n"
                    "  -c concurrent connections (50)  -d duration in seconds (8)\n"
                    "  -r resume each slot's previous session (tickets)  -2 TLS 1.2 (default "
                    "1.3)\n"
                    "  -n SNI and Host (bench.local)  -p path (/)  -g key-exchange groups "
                    "(X25519:P-256)\n"
                    "  -C verify the chain against CAFILE  -t per-connection timeout (5 s)\n");
    exit(2);
}

/* Counts the tickets the server sends (how many it issues per handshake is part of its
 * cost); the session itself is taken from the connection later. Returns 0: not kept. */
static int count_ticket(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    (void)sess;
    if (!g.done_phase) g.tickets++;
    return 0;
}

/* Accepts the chain without checking it (the default, see the header comment). */
static int skip_chain_check(X509_STORE_CTX *x, void *arg)
{
    (void)x;
    (void)arg;
    return 1;
}

static int parse_addr(const char *hp)
{
    char host[256];
    const char *colon = strrchr(hp, ':');
    if (!colon || colon == hp || (size_t)(colon - hp) >= sizeof(host)) return -1;
    memcpy(host, hp, (size_t)(colon - hp));
    host[colon - hp] = 0;
    char *h = host;
    if (h[0] == '[') {
        h++;
        size_t l = strlen(h);
        if (l == 0 || h[l - 1] != ']') return -1;
        h[l - 1] = 0;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(h, colon + 1, &hints, &res) != 0) return -1;
    memcpy(&g.addr, res->ai_addr, res->ai_addrlen);
    g.addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void conn_close(struct conn *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

static void fail(struct conn *c, enum err_kind k)
{
    if (!g.done_phase) g.errors[k]++;
    if (k != E_CONNECT && k != E_TIMEOUT && getenv("TLSLOAD_DEBUG")) ERR_print_errors_fp(stderr);
    ERR_clear_error();
    /* a session that failed to resume is not offered again */
    if (c->offered && c->sess) {
        SSL_SESSION_free(c->sess);
        c->sess = NULL;
    }
    conn_close(c);
}

static void record_latency(double d)
{
    if (g.nlat == g.caplat) {
        size_t n = g.caplat ? g.caplat * 2 : 65536;
        double *p = realloc(g.lat, n * sizeof(*p));
        if (!p) return;
        g.lat = p;
        g.caplat = n;
    }
    g.lat[g.nlat++] = d;
}

static void show_first(SSL *ssl)
{
    X509 *peer = SSL_get0_peer_certificate(ssl);
    char cn[128] = "?";
    const char *key = "?";
    if (peer) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof(cn));
        EVP_PKEY *pk = X509_get0_pubkey(peer);
        if (pk) key = EVP_PKEY_get0_type_name(pk);
    }
    const char *grp = SSL_group_to_name(ssl, SSL_get_negotiated_group(ssl));
    const unsigned char *alpn;
    unsigned int alpnlen;
    SSL_get0_alpn_selected(ssl, &alpn, &alpnlen);
    snprintf(g.info, sizeof(g.info),
             "version=%s cipher=%s group=%s peer_cn=%s peer_key=%s alpn=%.*s", SSL_get_version(ssl),
             SSL_get_cipher_name(ssl), grp ? grp : "?", cn, key ? key : "?",
             alpnlen ? (int)alpnlen : 1, alpnlen ? (const char *)alpn : "-");
    g.shown = 1;
}

/* The response is complete when the head has been read and Content-Length bytes of body
 * after it. Returns 1 complete, 0 need more, -1 bad (not 200 or no Content-Length). */
static int response_complete(struct conn *c)
{
    char *end = memmem(c->resp, c->got, "\r\n\r\n", 4);
    if (!end) return c->got == RESP_MAX ? -1 : 0;
    if (c->got < 12 || memcmp(c->resp + 9, "200", 3) != 0) return -1;
    size_t head = (size_t)(end - c->resp) + 4;
    long clen = -1;
    for (char *p = c->resp; p < end; p++) {
        if ((*p == '\n') && strncasecmp(p + 1, "content-length:", 15) == 0) {
            clen = strtol(p + 16, NULL, 10);
            break;
        }
    }
    if (clen < 0) return -1;
    return c->got >= head + (size_t)clen ? 1 : 0;
}

static int conn_start(struct conn *c);

static void conn_finish(struct conn *c)
{
    double t = now_s();
    if (!g.done_phase) {
        g.done++;
        if (SSL_session_reused(c->ssl))
            g.resumed++;
        else
            g.full++;
        if (c->offered) g.offered++;
        record_latency(t - c->t0);
    }
    if (!g.shown) show_first(c->ssl);
    if (g.resume) {
        SSL_SESSION *s = SSL_get1_session(c->ssl);
        if (s && SSL_SESSION_is_resumable(s)) {
            if (c->sess) SSL_SESSION_free(c->sess);
            c->sess = s;
        } else if (s) {
            SSL_SESSION_free(s);
        }
    }
    SSL_shutdown(c->ssl); /* close_notify, not waiting for the peer's */
    conn_close(c);
}

/* Drives connection c as far as it goes without blocking. */
static void conn_step(struct conn *c)
{
    int r;
    if (c->fd < 0) return;
    for (;;) {
        switch (c->st) {
        case ST_CONNECT: {
            int err = 0;
            socklen_t l = sizeof(err);
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err) {
                fail(c, E_CONNECT);
                return;
            }
            c->st = ST_HANDSHAKE;
            break;
        }
        case ST_HANDSHAKE:
            r = SSL_connect(c->ssl);
            if (r == 1) {
                c->st = ST_WRITE;
                break;
            }
            switch (SSL_get_error(c->ssl, r)) {
            case SSL_ERROR_WANT_READ:
            case SSL_ERROR_WANT_WRITE:
                return;
            default:
                fail(c, E_TLS);
                return;
            }
        case ST_WRITE:
            r = SSL_write(c->ssl, g.req + c->wrote, (int)(g.reqlen - c->wrote));
            if (r > 0) {
                c->wrote += (size_t)r;
                if (c->wrote == g.reqlen) c->st = ST_READ;
                break;
            }
            switch (SSL_get_error(c->ssl, r)) {
            case SSL_ERROR_WANT_READ:
            case SSL_ERROR_WANT_WRITE:
                return;
            default:
                fail(c, E_TLS);
                return;
            }
        case ST_READ:
            r = SSL_read(c->ssl, c->resp + c->got, (int)(RESP_MAX - c->got));
            if (r > 0) {
                c->got += (size_t)r;
                int done = response_complete(c);
                if (done < 0) {
                    fail(c, E_HTTP);
                    return;
                }
                if (done) {
                    conn_finish(c);
                    if (!g.done_phase) conn_start(c);
                    return;
                }
                break;
            }
            switch (SSL_get_error(c->ssl, r)) {
            case SSL_ERROR_WANT_READ:
            case SSL_ERROR_WANT_WRITE:
                return;
            default: /* closed before the response was complete */
                fail(c, E_HTTP);
                return;
            }
        }
    }
}

/* Opens the next connection of slot c. Returns 0, or -1 after counting the error. */
static int conn_start(struct conn *c)
{
    c->fd = socket(g.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        fail(c, E_CONNECT);
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->ssl = SSL_new(g.ctx);
    if (!c->ssl) {
        fail(c, E_TLS);
        return -1;
    }
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, g.sni);
    c->offered = 0;
    if (g.resume && c->sess) {
        SSL_set_session(c->ssl, c->sess);
        c->offered = 1;
    }
    SSL_set_connect_state(c->ssl);
    c->st = ST_CONNECT;
    c->wrote = c->got = 0;
    c->t0 = now_s();
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
    if (epoll_ctl(g.epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        fail(c, E_CONNECT);
        return -1;
    }
    if (connect(c->fd, (struct sockaddr *)&g.addr, g.addrlen) < 0 && errno != EINPROGRESS) {
        fail(c, E_CONNECT);
        return -1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    if (g.nlat == 0) return 0;
    size_t i = (size_t)(p * (double)g.nlat);
    if (i >= g.nlat) i = g.nlat - 1;
    return g.lat[i];
}

int main(int argc, char **argv)
{
    int opt, tls12 = 0;
    const char *groups = "X25519:P-256", *cafile = NULL;
    g.sni = "bench.local";
    g.path = "/";
    g.conns = 50;
    g.secs = 8;
    g.timeout = 5;
    while ((opt = getopt(argc, argv, "c:d:rn:p:g:C:t:2")) != -1) {
        switch (opt) {
        case 'c':
            g.conns = atoi(optarg);
            break;
        case 'd':
            g.secs = atof(optarg);
            break;
        case 'r':
            g.resume = 1;
            break;
        case 'n':
            g.sni = optarg;
            break;
        case 'p':
            g.path = optarg;
            break;
        case 'g':
            groups = optarg;
            break;
        case 'C':
            cafile = optarg;
            break;
        case 't':
            g.timeout = atof(optarg);
            break;
        case '2':
            tls12 = 1;
            break;
        default:
            usage();
        }
    }
    if (optind + 1 != argc || g.conns < 1 || g.conns > 100000 || g.secs <= 0 || g.timeout <= 0)
        usage();
    if (parse_addr(argv[optind]) < 0) {
        fprintf(stderr, "tlsload: bad address %s\n", argv[optind]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)g.conns + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int n = snprintf(g.req, sizeof(g.req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tlsload\r\nConnection: "
                     "close\r\n\r\n",
                     g.path, g.sni);
    if (n < 0 || (size_t)n >= sizeof(g.req)) usage();
    g.reqlen = (size_t)n;

    g.ctx = SSL_CTX_new(TLS_client_method());
    if (!g.ctx) goto ssl_err;
    int ver = tls12 ? TLS1_2_VERSION : TLS1_3_VERSION;
    SSL_CTX_set_min_proto_version(g.ctx, ver);
    SSL_CTX_set_max_proto_version(g.ctx, ver);
    /* sessions live in the slots, not in a client cache; the callback only counts tickets */
    SSL_CTX_set_session_cache_mode(g.ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(g.ctx, count_ticket);
    if (SSL_CTX_set1_groups_list(g.ctx, groups) != 1) goto ssl_err;
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(g.ctx, alpn, sizeof(alpn) - 1);
    if (cafile) {
        if (SSL_CTX_load_verify_locations(g.ctx, cafile, NULL) != 1) goto ssl_err;
        SSL_CTX_set_verify(g.ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(g.ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_cert_verify_callback(g.ctx, skip_chain_check, NULL);
    }

    g.epfd = epoll_create1(EPOLL_CLOEXEC);
    struct conn *cs = calloc((size_t)g.conns, sizeof(*cs));
    struct epoll_event *evs = calloc((size_t)g.conns, sizeof(*evs));
    if (g.epfd < 0 || !cs || !evs) {
        perror("tlsload");
        return 1;
    }
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double start = now_s(), deadline = start + g.secs, last_scan = start;
    for (int i = 0; i < g.conns; i++) {
        cs[i].fd = -1;
        conn_start(&cs[i]);
    }
    for (;;) {
        double t = now_s();
        if (t >= deadline) break;
        int ms = (int)((deadline - t) * 1000) + 1;
        if (ms > 50) ms = 50;
        int k = epoll_wait(g.epfd, evs, g.conns, ms);
        for (int i = 0; i < k; i++)
            conn_step(evs[i].data.ptr);
        t = now_s();
        if (t - last_scan >= 0.05) {
            /* restart failed slots, time out stuck ones */
            for (int i = 0; i < g.conns; i++) {
                struct conn *c = &cs[i];
                if (c->fd >= 0 && t - c->t0 > g.timeout) fail(c, E_TIMEOUT);
                if (c->fd < 0 && t < deadline) conn_start(c);
            }
            last_scan = t;
        }
    }
    double elapsed = now_s() - start;
    g.done_phase = 1;
    getrusage(RUSAGE_SELF, &ru1);
    for (int i = 0; i < g.conns; i++) {
        conn_close(&cs[i]);
        if (cs[i].sess) SSL_SESSION_free(cs[i].sess);
    }
    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                 (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                 (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    qsort(g.lat, g.nlat, sizeof(*g.lat), cmp_double);
    uint64_t errs = 0;
    for (int i = 0; i < E_COUNT; i++)
        errs += g.errors[i];
    printf("handshakes=%llu secs=%.2f hs_per_s=%.0f full=%llu resumed=%llu offered=%llu "
           "resumed_pct=%.1f errors=%llu",
           (unsigned long long)g.done, elapsed, (double)g.done / elapsed,
           (unsigned long long)g.full, (unsigned long long)g.resumed, (unsigned long long)g.offered,
           g.offered ? 100.0 * (double)g.resumed / (double)g.offered : 0.0,
           (unsigned long long)errs);
    for (int i = 0; i < E_COUNT; i++)
        printf(" err_%s=%llu", err_names[i], (unsigned long long)g.errors[i]);
    printf(" tickets_per_conn=%.2f", g.done ? (double)g.tickets / (double)g.done : 0.0);
    printf(" p50_ms=%.3f p99_ms=%.3f client_cpu_pct=%.0f %s\n", pct(0.50) * 1000, pct(0.99) * 1000,
           100.0 * cpu / elapsed, g.shown ? g.info : "version=-");
    free(g.lat);
    free(cs);
    free(evs);
    SSL_CTX_free(g.ctx);
    close(g.epfd);
    return 0;
ssl_err:
    ERR_print_errors_fp(stderr);
    return 1;
}
