/*
 * metrics: process-wide atomic counters, rendered as Prometheus text by admin.
 */
#ifndef STRAIT_METRICS_H
#define STRAIT_METRICS_H

#include <stddef.h>
#include <stdint.h>

void metrics_snapshot_applied(uint64_t generation);
void metrics_snapshot_nacked(void);
/* Counts one response sent to a client, by status class. */
void metrics_response(int status);
/* One accepted client connection: counts it and raises the active gauge. */
void metrics_conn_opened(void);
void metrics_conn_closed(void);
/* One failed upstream connect (refused, unreachable, connect timeout). */
void metrics_upstream_connect_error(void);

/* Prometheus text exposition; returns a malloc'd NUL-terminated string or NULL. */
char *metrics_render(void);

#endif
