/*
 * strait-dataplane: command line, signals and wiring.
 *
 * Does: parse the CLI, start the worker pool (proxy listeners), the controller client and
 * the optional admin server on the main loop, forward every applied snapshot to the
 * workers, and on SIGTERM/SIGINT drain (stop accepting at once, let requests in flight
 * finish for up to --drain-timeout), free everything and exit 0.
 * Does not: proxy traffic itself (workers do) or validate snapshots (snapshot.c).
 * Invariant: the main loop is the only thread that talks to the controller and serves admin.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "accesslog.h"
#include "admin.h"
#include "healthcheck.h"
#include "netaddr.h"
#include "readfile.h"
#include "log.h"
#include "mesh.h"
#include "meshfeed.h"
#include "snapshot.h"
#include "tls.h"
#include "tls_mesh.h"
#include "tls_upstream.h"
#include "units.h"
#include "worker.h"

#define DRAIN_TIMEOUT 30.0 /* default seconds in-flight requests get after SIGTERM */
#define MAX_WORKERS 256
#define MAX_KEEPALIVE 65535 /* --upstream-keepalive: idle connections per endpoint */
/* --sidecar defaults (docs/mesh.md: the ports mesh-init redirects to) */
#define SIDECAR_INBOUND "0.0.0.0:4143"
#define SIDECAR_OUTBOUND "127.0.0.1:4140"
#define SIDECAR_INBOUND6 "[::]:4143" /* added when the pod has IPv6 (mesh-init redirects it) */
#define SIDECAR_OUTBOUND6 "[::1]:4140"
#define SIDECAR_ADMIN "0.0.0.0:4191" /* the kubelet probes it on the pod's address */
#define SIDECAR_TOKEN "/var/run/secrets/strait.dev/serviceaccount/token"
#define SIDECAR_IDENTITY_ADDR "strait-controller.strait-system.svc:8443"
#define SIDECAR_RETRY_MAX 30.0 /* seconds: longest wait between identity requests */
#define MAX_ANCHORS (1u << 20) /* bytes of PEM in --trust-anchors */

struct app {
    struct ev_loop *loop;
    struct worker_pool *pool;
    struct snapclient *sc;
    struct meshfeed *feed; /* a sidecar without --socket: the controller's discovery feed */
    struct admin *admin;
    ev_signal sigterm_w, sigint_w;
    ev_timer ticket_w; /* session ticket key rotation (TLS listeners only) */
};

#define TICKET_FILE_POLL 10.0 /* seconds between reads of --tls-ticket-key-file */

static void usage(FILE *f)
{
    fprintf(f, "usage: strait-dataplane --socket PATH --listen ADDR:PORT [--listen-tls ADDR:PORT]\n"
               "                        [--https-redirect-port N] [--tls-ticket-rotation S]\n"
               "                        [--tls-ticket-key-file PATH]\n"
               "                        [--admin ADDR:PORT]\n"
               "                        [--workers N] [--log-level debug|info|warn|error]\n"
               "                        [--client-header-timeout S] [--client-idle-timeout S]\n"
               "                        [--upstream-connect-timeout S]\n"
               "                        [--upstream-response-timeout S] [--idle-body-timeout S]\n"
               "                        [--drain-timeout S] [--access-log PATH|-]\n"
               "                        [--client-max-body-size SIZE]\n"
               "                        [--upstream-keepalive N] [--upstream-keepalive-timeout S]\n"
               "       strait-dataplane --sidecar [--socket PATH] [--inbound ADDR:PORT]\n"
               "                        [--outbound ADDR:PORT] [--permissive] [--namespace NS]\n"
               "                        [--identity-addr HOST:PORT] [--identity-name NAME]\n"
               "                        [--trust-domain DOMAIN] [--trust-anchors FILE]\n"
               "                        [--token-path FILE] [--discovery-idle S]\n"
               "                        [--admin ADDR:PORT] ...\n"
               "  ADDR is an IPv4 literal, [IPv6] or localhost; --workers defaults to the number\n"
               "  of online CPUs. Timeouts are seconds (fractions allowed); defaults: header 10,\n"
               "  idle 60, connect 5, response 60, idle body 60, drain 30.\n"
               "  --access-log writes one JSON line per request to PATH (- for stdout); off by\n"
               "  default.\n"
               "  --client-max-body-size: request body limit for routes without their own\n"
               "  (strait.dev/proxy-body-size); bytes with an optional k, m or g suffix; larger\n"
               "  bodies get 413. Default 0: unlimited.\n"
               "  --upstream-keepalive: idle upstream connections kept per endpoint and worker\n"
               "  (default 64, 0 disables pooling), for --upstream-keepalive-timeout seconds\n"
               "  (default 60).\n"
               "  --listen and --listen-tls (HTTPS) may be repeated; at least one is needed.\n"
               "  --https-redirect-port: port of the https:// redirects (default: the first\n"
               "  --listen-tls port, else 443). --tls-ticket-rotation: seconds between session\n"
               "  ticket key rotations (default 3600; a ticket is valid for two).\n"
               "  --tls-ticket-key-file: session ticket keys shared by replicas instead of\n"
               "  random ones: 80 bytes (one key) or 160 (the second only decrypts), nginx's\n"
               "  ssl_session_ticket_key format (openssl rand 80); re-read every 10 s, whoever\n"
               "  writes it rotates. Needs --listen-tls.\n"
               "  --sidecar: the mesh sidecar (docs/mesh.md). Inbound (default 0.0.0.0:4143,\n"
               "  and [::]:4143 when the pod has IPv6)\n"
               "  takes connections mesh-init redirected to the pod: mTLS from other sidecars\n"
               "  (plaintext too with --permissive), handed to the app on localhost at the\n"
               "  original port; outbound (default 127.0.0.1:4140, and [::1]:4140 with IPv6)\n"
               "  takes what the pod opens:\n"
               "  HTTP routed by Host to the Service, mTLS to meshed peers, other TCP opaque.\n"
               "  The workload certificate comes from --identity-addr (default\n"
               "  strait-controller.strait-system.svc:8443, env STRAIT_MESH_IDENTITY_ADDR),\n"
               "  verified as --identity-name (default: its host) with --trust-anchors (PEM\n"
               "  file; else env STRAIT_MESH_TRUST_ANCHORS holds the PEM), for the token in\n"
               "  --token-path (default " SIDECAR_TOKEN ").\n"
               "  --namespace defaults to env STRAIT_POD_NAMESPACE, --trust-domain to\n"
               "  cluster.local; --admin to " SIDECAR_ADMIN ".\n"
               "  The sidecar's snapshot comes from the controller's discovery feed (the\n"
               "  identity endpoint, mTLS with the workload certificate): the Services the pod\n"
               "  uses, asked for on first use, dropped after --discovery-idle seconds unused\n"
               "  (default 300); with --socket (or env STRAIT_SNAPSHOT_SOCKET) it reads the\n"
               "  whole snapshot from that Unix socket instead.\n");
}

/* Parses a positive, finite number of seconds. Returns 0, or -1 (message printed). */
static int parse_seconds(const char *opt, const char *arg, double *out)
{
    char *end;
    double v = strtod(arg, &end);

    if (end == arg || *end || !isfinite(v) || v <= 0 || v > 86400. * 365) {
        fprintf(stderr, "strait-dataplane: --%s must be a positive number of seconds\n", opt);
        return -1;
    }
    *out = v;
    return 0;
}

/* Parses a decimal count in min..max. Returns 0, or -1 (message printed). */
static int parse_count(const char *opt, const char *arg, long min, long max, long *out)
{
    char *end;
    long v;

    /* strtol alone would take "", " 5" and "+5" */
    if (*arg < '0' || *arg > '9') goto bad;
    v = strtol(arg, &end, 10);
    if (*end || v < min || v > max) goto bad;
    *out = v;
    return 0;
bad:
    fprintf(stderr, "strait-dataplane: --%s must be %ld..%ld\n", opt, min, max);
    return -1;
}

/* Parses a body size (common/units); "0" means unlimited. Returns 0, or -1 (message printed). */
static int parse_body_size(const char *opt, const char *arg, uint64_t *out)
{
    uint64_t v;

    if (units_parse_size(arg, &v) < 0) {
        fprintf(stderr,
                "strait-dataplane: --%s must be a size in bytes with an optional k, m or g "
                "suffix (0: unlimited)\n",
                opt);
        return -1;
    }
    *out = v ? v : UINT64_MAX;
    return 0;
}

/* Online CPUs, clamped to 1..MAX_WORKERS. */
static long default_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (n < 1) return 1;
    return n > MAX_WORKERS ? MAX_WORKERS : n;
}

static void on_apply(struct snapshot *s, void *arg)
{
    struct app *app = arg;

    worker_pool_publish(app->pool, s);
}

static struct snapshot *current_snapshot(void *arg)
{
    struct app *app = arg;

    return app->feed ? meshfeed_current(app->feed) : snapclient_current(app->sc);
}

static void ticket_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
    tls_ticket_rotate();
}

/* Adds spec to ls[*n]. Returns 0, or -1 (message printed). */
static int add_listen(const char *opt, const char *spec, int tls, struct worker_listen *ls,
                      unsigned *n)
{
    char err[256];

    if (*n >= WORKER_MAX_LISTENERS) {
        fprintf(stderr, "strait-dataplane: at most %d listening addresses\n", WORKER_MAX_LISTENERS);
        return -1;
    }
    memset(&ls[*n], 0, sizeof(ls[*n]));
    if (netaddr_parse(spec, &ls[*n].addr, &ls[*n].addrlen, err, sizeof(err)) < 0) {
        fprintf(stderr, "strait-dataplane: --%s: %s\n", opt, err);
        return -1;
    }
    ls[*n].tls = tls;
    (*n)++;
    return 0;
}

/* /ready in sidecar mode also needs the workload certificate. */
static const char *sidecar_not_ready(void *arg)
{
    char id[8];
    double na;

    (void)arg;
    return tls_mesh_status(id, sizeof(id), &na) ? NULL : "no workload certificate\n";
}

/* Whether this network namespace has IPv6 (a socket binds ::1): then the sidecar listens on
 * both families by default, as mesh-init redirects both. */
static int ipv6_usable(void)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

    if (fd < 0) return 0;
    ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* host part of "host:port" / "[v6]:port" into out. */
static void addr_host(const char *spec, char *out, size_t n)
{
    const char *colon = strrchr(spec, ':');
    size_t len = colon ? (size_t)(colon - spec) : strlen(spec);

    if (len >= 2 && spec[0] == '[' && spec[len - 1] == ']') {
        spec++;
        len -= 2;
    }
    snprintf(out, n, "%.*s", (int)len, spec);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    log_info("shutdown", "signal=%d", w->signum);
    ev_break(loop, EVBREAK_ALL);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"socket", required_argument, NULL, 's'},
                                         {"listen", required_argument, NULL, 'l'},
                                         {"admin", required_argument, NULL, 'a'},
                                         {"workers", required_argument, NULL, 'w'},
                                         {"log-level", required_argument, NULL, 'L'},
                                         {"client-header-timeout", required_argument, NULL, 1},
                                         {"client-idle-timeout", required_argument, NULL, 2},
                                         {"upstream-connect-timeout", required_argument, NULL, 3},
                                         {"upstream-response-timeout", required_argument, NULL, 4},
                                         {"idle-body-timeout", required_argument, NULL, 5},
                                         {"drain-timeout", required_argument, NULL, 6},
                                         {"upstream-keepalive-timeout", required_argument, NULL, 7},
                                         {"access-log", required_argument, NULL, 8},
                                         {"client-max-body-size", required_argument, NULL, 9},
                                         {"upstream-keepalive", required_argument, NULL, 10},
                                         {"listen-tls", required_argument, NULL, 11},
                                         {"https-redirect-port", required_argument, NULL, 12},
                                         {"tls-ticket-rotation", required_argument, NULL, 13},
                                         {"tls-ticket-key-file", required_argument, NULL, 14},
                                         {"sidecar", no_argument, NULL, 15},
                                         {"inbound", required_argument, NULL, 16},
                                         {"outbound", required_argument, NULL, 17},
                                         {"permissive", no_argument, NULL, 18},
                                         {"namespace", required_argument, NULL, 19},
                                         {"identity-addr", required_argument, NULL, 20},
                                         {"identity-name", required_argument, NULL, 21},
                                         {"trust-domain", required_argument, NULL, 22},
                                         {"trust-anchors", required_argument, NULL, 23},
                                         {"token-path", required_argument, NULL, 24},
                                         {"discovery-idle", required_argument, NULL, 25},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *sock = NULL, *admin_spec = NULL, *access_log = NULL, *ticket_keys = NULL;
    enum log_level level = LOG_LEVEL_INFO;
    struct worker_listen ls[WORKER_MAX_LISTENERS];
    unsigned nls = 0, i, n_tls = 0;
    long redirect_port = -1;
    double rotation = TLS_TICKET_ROTATION;
    struct sockaddr_storage ass;
    socklen_t asl = 0;
    struct worker_config cfg;
    double drain = DRAIN_TIMEOUT;
    struct app app;
    char err[256];
    long workers = default_workers(), keepalive;
    int c, idx = 0, rc = 1;
    int sidecar = 0, permissive = 0, n_mesh = 0, have_in = 0, have_out = 0, use_feed = 0;
    int feed_idle_set = 0;
    double feed_idle = MESHFEED_IDLE;
    const char *ns = getenv("STRAIT_POD_NAMESPACE"), *id_addr = getenv("STRAIT_MESH_IDENTITY_ADDR");
    const char *id_name = NULL, *trust_domain = "cluster.local", *anchors_file = NULL;
    const char *token_path = SIDECAR_TOKEN;
    char *anchors = NULL, id_host[256];

    memset(&app, 0, sizeof(app));
    worker_config_defaults(&cfg);
    while ((c = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
        switch (c) {
        case 1:
        case 2:
        case 3:
        case 4:
        case 5:
        case 6:
        case 7: {
            double *const slot[] = {&cfg.client_header_timeout,    &cfg.client_idle_timeout,
                                    &cfg.upstream_connect_timeout, &cfg.upstream_response_timeout,
                                    &cfg.idle_body_timeout,        &drain,
                                    &cfg.pool_idle_timeout};
            if (parse_seconds(opts[idx].name, optarg, slot[c - 1]) < 0) return 2;
            break;
        }
        case 8:
            access_log = optarg;
            break;
        case 9:
            if (parse_body_size(opts[idx].name, optarg, &cfg.client_max_body) < 0) return 2;
            break;
        case 10:
            if (parse_count(opts[idx].name, optarg, 0, MAX_KEEPALIVE, &keepalive) < 0) return 2;
            cfg.pool_max_idle = (unsigned)keepalive;
            break;
        case 11:
        case 'l':
            if (add_listen(c == 'l' ? "listen" : "listen-tls", optarg, c == 11, ls, &nls) < 0)
                return 2;
            n_tls += c == 11;
            break;
        case 12:
            if (parse_count(opts[idx].name, optarg, 1, 65535, &redirect_port) < 0) return 2;
            break;
        case 13:
            if (parse_seconds(opts[idx].name, optarg, &rotation) < 0) return 2;
            break;
        case 14:
            ticket_keys = optarg;
            break;
        case 15:
            sidecar = 1;
            break;
        case 16:
        case 17:
            if (add_listen(opts[idx].name, optarg, 0, ls, &nls) < 0) return 2;
            ls[nls - 1].mesh = c == 16 ? MESH_LISTENER_INBOUND : MESH_LISTENER_OUTBOUND;
            have_in |= c == 16;
            have_out |= c == 17;
            n_mesh++;
            break;
        case 18:
            permissive = 1;
            break;
        case 19:
            ns = optarg;
            break;
        case 20:
            id_addr = optarg;
            break;
        case 21:
            id_name = optarg;
            break;
        case 22:
            trust_domain = optarg;
            break;
        case 23:
            anchors_file = optarg;
            break;
        case 24:
            token_path = optarg;
            break;
        case 25:
            if (parse_seconds(opts[idx].name, optarg, &feed_idle) < 0) return 2;
            feed_idle_set = 1;
            break;
        case 's':
            sock = optarg;
            break;
        case 'a':
            admin_spec = optarg;
            break;
        case 'w':
            if (parse_count("workers", optarg, 1, MAX_WORKERS, &workers) < 0) return 2;
            break;
        case 'L':
            if (log_level_parse(optarg, &level) < 0) {
                fprintf(stderr, "strait-dataplane: bad --log-level %s\n", optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (n_mesh && !sidecar) {
        fprintf(stderr, "strait-dataplane: --inbound and --outbound need --sidecar\n");
        return 2;
    }
    if (sidecar) {
        /* the ports mesh-init redirects to, unless given */
        int v6 = (!have_in || !have_out) && ipv6_usable();
        for (i = 0; i < 4; i++) {
            static const char *const spec[] = {SIDECAR_INBOUND, SIDECAR_INBOUND6, SIDECAR_OUTBOUND,
                                               SIDECAR_OUTBOUND6};
            int in = i < 2;
            if ((in ? have_in : have_out) || (i % 2 && !v6)) continue;
            if (add_listen(in ? "inbound" : "outbound", spec[i], 0, ls, &nls) < 0) return 2;
            ls[nls - 1].mesh = in ? MESH_LISTENER_INBOUND : MESH_LISTENER_OUTBOUND;
        }
        if (!admin_spec) admin_spec = SIDECAR_ADMIN;
        if (!sock) sock = getenv("STRAIT_SNAPSHOT_SOCKET");
        if (!sock || !*sock) {
            sock = NULL;
            use_feed = 1; /* the controller's discovery feed */
        } else if (feed_idle_set) {
            fprintf(stderr, "strait-dataplane: --discovery-idle is for the discovery feed, not "
                            "--socket\n");
            return 2;
        }
        if (!id_addr || !*id_addr) id_addr = SIDECAR_IDENTITY_ADDR;
        if (!id_name) {
            addr_host(id_addr, id_host, sizeof(id_host));
            id_name = id_host;
        }
        if (anchors_file) {
            if (!(anchors = readfile_all(anchors_file, MAX_ANCHORS, err, sizeof(err)))) {
                fprintf(stderr, "strait-dataplane: --trust-anchors %s\n", err);
                return 2;
            }
        } else if (getenv("STRAIT_MESH_TRUST_ANCHORS") && *getenv("STRAIT_MESH_TRUST_ANCHORS")) {
            anchors = strdup(getenv("STRAIT_MESH_TRUST_ANCHORS"));
        }
        if (!anchors) {
            fprintf(stderr, "strait-dataplane: --sidecar needs --trust-anchors FILE or "
                            "STRAIT_MESH_TRUST_ANCHORS\n");
            return 2;
        }
        mesh_configure(ns, permissive);
    } else if (permissive) {
        fprintf(stderr, "strait-dataplane: --permissive needs --sidecar\n");
        return 2;
    }
    if ((!sock && !use_feed) || nls == 0 || optind != argc) {
        free(anchors);
        usage(stderr);
        return 2;
    }
    if (ticket_keys && !n_tls) {
        fprintf(stderr, "strait-dataplane: --tls-ticket-key-file needs --listen-tls\n");
        return 2;
    }
    log_init("dataplane", level);
    if (admin_spec && netaddr_parse(admin_spec, &ass, &asl, err, sizeof(err)) < 0) {
        fprintf(stderr, "strait-dataplane: %s\n", err);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    app.loop = ev_default_loop(EVFLAG_AUTO);
    if (!app.loop) {
        log_error("startup_failed", "reason=\"no event loop\"");
        return 1;
    }
    if (access_log && accesslog_open(access_log, err, sizeof(err)) < 0) {
        log_error("startup_failed", "reason=\"%s\"", err);
        goto destroy_loop;
    }
    if (n_tls && tls_init(rotation, err, sizeof(err)) < 0) {
        log_error("startup_failed", "reason=\"%s\"", err);
        goto destroy_loop;
    }
    if (ticket_keys && tls_ticket_key_file(ticket_keys, err, sizeof(err)) < 0) {
        log_error("startup_failed", "reason=\"%s\"", err);
        goto destroy_loop;
    }
    /*
     * Redirects name the first HTTPS port unless told otherwise; a --listen-tls port 0 is
     * only known once bound, after the workers copied cfg, so it leaves 443 (tests pass
     * explicit ports).
     */
    if (redirect_port > 0) cfg.https_port = (unsigned)redirect_port;
    for (i = 0; i < nls && redirect_port < 0; i++)
        if (ls[i].tls && netaddr_port((const struct sockaddr *)&ls[i].addr) != 0) {
            cfg.https_port = netaddr_port((const struct sockaddr *)&ls[i].addr);
            break;
        }
    if (sidecar) {
        struct tls_mesh_config mc = {.identity_addr = id_addr,
                                     .identity_name = id_name,
                                     .trust_domain = trust_domain,
                                     .anchors_pem = anchors,
                                     .token_path = token_path,
                                     .retry_max = SIDECAR_RETRY_MAX};
        /* asks for the workload certificate at once; inbound mTLS waits for it */
        if (tls_mesh_start(&mc, err, sizeof(err)) < 0) {
            log_error("startup_failed", "reason=\"%s\"", err);
            goto destroy_loop;
        }
        log_info("sidecar",
                 "namespace=%s identity_addr=%s identity_name=%s trust_domain=%s snapshot=%s%s%s",
                 ns && *ns ? ns : "-", id_addr, id_name, trust_domain,
                 use_feed ? "feed" : "socket:", use_feed ? "" : sock,
                 permissive ? " permissive=1" : "");
    }
    healthcheck_enable(); /* the checker thread starts with the first cluster that has checks */
    if (worker_pool_start_listeners(&app.pool, (unsigned)workers, ls, nls, &cfg, err, sizeof(err)) <
        0) {
        log_error("startup_failed", "reason=\"%s\"", err);
        goto destroy_loop;
    }
    if (n_tls) {
        /* with a key file the timer re-reads it (TICKET_FILE_POLL), else it rotates */
        double every = ticket_keys && rotation > TICKET_FILE_POLL ? TICKET_FILE_POLL : rotation;
        ev_timer_init(&app.ticket_w, ticket_cb, every, every);
        ev_timer_start(app.loop, &app.ticket_w);
    }
    if (admin_spec) {
        app.admin = admin_start(app.loop, (struct sockaddr *)&ass, asl, current_snapshot, &app, err,
                                sizeof(err));
        if (!app.admin) {
            log_error("startup_failed", "reason=\"%s\"", err);
            goto stop_pool;
        }
        if (sidecar) admin_set_ready_check(app.admin, sidecar_not_ready, NULL);
    }
    if (use_feed)
        app.feed = meshfeed_start(app.loop, feed_idle, on_apply, &app, err, sizeof(err));
    else
        app.sc = snapclient_start(app.loop, sock, on_apply, &app, err, sizeof(err));
    if (!app.sc && !app.feed) {
        log_error("startup_failed", "reason=\"%s\"", err);
        goto stop_admin;
    }
    ev_signal_init(&app.sigterm_w, signal_cb, SIGTERM);
    ev_signal_start(app.loop, &app.sigterm_w);
    ev_signal_init(&app.sigint_w, signal_cb, SIGINT);
    ev_signal_start(app.loop, &app.sigint_w);

    ev_run(app.loop, 0);
    rc = 0;

    ev_signal_stop(app.loop, &app.sigterm_w);
    ev_signal_stop(app.loop, &app.sigint_w);
    ev_timer_stop(app.loop, &app.ticket_w);
    snapclient_stop(app.sc);
    meshfeed_stop(app.feed);
stop_admin:
    admin_stop(app.admin);
stop_pool:
    worker_pool_stop(app.pool, drain);
destroy_loop:
    healthcheck_stop(); /* workers joined, last snapshot dropped; a no-op if never started */
    if (sidecar) tls_mesh_stop();
    free(anchors);
    tls_cleanup();
    tls_upstream_cleanup();
    accesslog_close();
    ev_loop_destroy(app.loop);
    log_info("exit", "code=%d", rc);
    return rc;
}
