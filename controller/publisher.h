/*
 * publisher: the Unix-socket server that hands snapshot frames to data planes and reads their
 * ACK/NACK replies. Runs on a libev loop; never blocks.
 */
#ifndef STRAIT_PUBLISHER_H
#define STRAIT_PUBLISHER_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct publisher;

/*
 * Listens on the Unix socket path (a stale socket file there is removed first). Returns the
 * publisher, or NULL with err filled.
 */
struct publisher *publisher_open(struct ev_loop *loop, const char *path, char *err, size_t errlen);

/*
 * Queues frame[0..len) (copied) to every connected data plane and keeps it for the ones that
 * connect later. A client still busy with an older frame gets only the newest one after it.
 * Returns 0, or -1 on allocation failure (nothing changed).
 */
int publisher_publish(struct publisher *p, const void *frame, size_t len, uint64_t generation);

/*
 * The newest frame (what a data plane connecting now receives) and its length in *len (len
 * may be NULL), or NULL before the first publish. Valid until the next publish or close.
 */
const void *publisher_current(const struct publisher *p, size_t *len);

/* Number of connected data planes. */
unsigned publisher_clients(const struct publisher *p);

/* Disconnects every client, closes and unlinks the socket, frees p. NULL is fine. */
void publisher_close(struct publisher *p);

#endif
