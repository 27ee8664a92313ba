/*
 * admin: the data plane's --admin endpoints (/ready, /live, /snapshot, /metrics, /stats) on
 * the main loop, served by common/adminsrv.
 */
#ifndef STRAIT_ADMIN_H
#define STRAIT_ADMIN_H

#include <ev.h>
#include <sys/socket.h>

#include "snapshot.h"

struct admin;

/* Returns the current snapshot (borrowed) or NULL. */
typedef struct snapshot *(*admin_current_fn)(void *arg);

/* Listens on sa. Returns NULL with err filled on failure. */
struct admin *admin_start(struct ev_loop *loop, const struct sockaddr *sa, socklen_t salen,
                          admin_current_fn current, void *arg, char *err, size_t errlen);

/*
 * An extra readiness condition besides the snapshot (the sidecar's workload certificate):
 * fn returns NULL when ready, else the reason /ready answers 503 with (a literal).
 */
typedef const char *(*admin_not_ready_fn)(void *arg);
void admin_set_ready_check(struct admin *a, admin_not_ready_fn fn, void *arg);

/* Closes the listener and every admin connection, frees a. */
void admin_stop(struct admin *a);

#endif
