/*
 * httpmsg: small HTTP message facts shared by the admin servers and the proxy: reason
 * phrases (RFC 9110 section 15) and the IMF-fixdate used in Date headers (RFC 9110 5.6.7).
 */
#ifndef STRAIT_HTTPMSG_H
#define STRAIT_HTTPMSG_H

#include <time.h>

#define HTTPMSG_DATE_LEN 30 /* "Sun, 06 Nov 1994 08:49:37 GMT" + NUL */

/* The reason phrase for status, or "Unknown" for a code we never send. */
const char *httpmsg_reason(int status);

/*
 * Formats t as an IMF-fixdate into out (HTTPMSG_DATE_LEN bytes). Locale independent, unlike
 * strftime's %a/%b.
 */
void httpmsg_date(time_t t, char *out);

#endif
