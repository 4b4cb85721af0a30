/* http: the libmicrohttpd listener. Native TLS when cfg->tls_cert_file is
 * set (client certificates requested, not required; each guarded request is
 * checked through auth), plain HTTP otherwise (DN header from trusted proxies).
 * Request bodies are capped at 64 KiB (413). Routing lives in api.c, the
 * answers in its endpoint modules (api_users.c, api_product.c, api_ui.c). */
#pragma once
#include <stddef.h>

struct config;
struct store;
struct auth;
struct http;
struct api_hooks;

/* st and a are borrowed and must outlive the listener; st is used under the
 * listener's own mutex. Returns 0 or -1 with err. */
int http_start(const struct config *cfg, struct store *st, struct auth *a, const struct api_hooks *hooks,
	       struct http **out, char *err, size_t errlen);
void http_stop(struct http *h); /* NULL is a no-op */

/* Native TLS: reads TLS_CERT_FILE and TLS_KEY_FILE again; new handshakes use
 * them, connections already open keep theirs, the listener stays up. On an
 * error the old certificate stays in use. Returns 0 or -1 with err. */
int http_reload_tls(struct http *h, char *err, size_t errlen);
