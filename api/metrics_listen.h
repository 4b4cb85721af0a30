/* metrics_listen: the Prometheus scrape endpoint, a second libmicrohttpd
 * daemon apart from the API listener (api/http.c): plain HTTP on
 * METRICS_ADDRESS:METRICS_PORT, bound to that address alone (no dual
 * stack, no wildcard unless configured), GET /metrics only (404 for other
 * paths, 405 for other methods). It serves metrics_render()'s page, which
 * holds no secret; it needs no client certificate, so it must not be
 * exposed beyond the scraper (the default address is loopback). */
#pragma once
#include <stddef.h>

struct config;
struct metrics_listen;

/* Starts listening, unless cfg->metrics_port is 0 (then *out is NULL and 0
 * is returned). Returns 0, or -1 with one line in err naming the variables. */
int metrics_listen_start(const struct config *cfg, struct metrics_listen **out, char *err, size_t errlen);
/* Stops the listener; NULL is a no-op. */
void metrics_listen_stop(struct metrics_listen *ml);
