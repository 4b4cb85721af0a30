/* metrics_listen: the Prometheus scrape endpoint, a second libmicrohttpd
 * daemon apart from the API listener (api/http.c): plain HTTP on
 * METRICS_ADDRESS:METRICS_PORT, bound to that address alone (no dual
 * stack, no wildcard unless configured), GET /metrics only (404 for other
 * paths, 405 for other methods). It serves metrics_render()'s page, which
 * holds no secret; it needs no client certificate, so it must not be
 * exposed beyond the scraper (the default address is loopback). */
#pragma once
#include <stddef.h>

#include "errtext.h"

enum {
	METRICS_LISTEN_EADDRESS = ERRTEXT_METRICS_LISTEN - 1, /* METRICS_ADDRESS is not numeric */
	METRICS_LISTEN_ENOMEM = ERRTEXT_METRICS_LISTEN - 2,   /* out of memory */
	METRICS_LISTEN_ELISTEN = ERRTEXT_METRICS_LISTEN - 3,  /* libmicrohttpd would not start (address in use) */
};

/* The text for a METRICS_LISTEN_E* code. */
const char *metrics_listen_strerror(int code);

struct config;
struct metrics_listen;

/* Starts listening, unless cfg->metrics_port is 0 (then *out is NULL and 0
 * is returned). Returns 0, or a METRICS_LISTEN_E* code with one line in
 * err naming the variables. */
int metrics_listen_start(const struct config *cfg, struct metrics_listen **out, char *err, size_t errlen);
/* Stops the listener; NULL is a no-op. */
void metrics_listen_stop(struct metrics_listen *ml);
