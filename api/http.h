/* http: the libmicrohttpd listener. Native TLS when cfg->tls_cert_file is
 * set (client certificates requested, not required; each guarded request is
 * checked through auth), plain HTTP otherwise (DN header from trusted proxies).
 * Request bodies are capped at 64 KiB (413). Routing lives in api.c, the
 * answers in its endpoint modules (api_users.c, api_product.c, api_ui.c). */
#pragma once
#include <stddef.h>

#include "errtext.h"

struct config;
enum {
	HTTP_ENOMEM = ERRTEXT_HTTP - 1,      /* out of memory */
	HTTP_ELOCK = ERRTEXT_HTTP - 2,       /* a mutex cannot be made */
	HTTP_EADDRESS = ERRTEXT_HTTP - 3,    /* LISTEN_ADDRESS is not a numeric address */
	HTTP_ETLSFILE = ERRTEXT_HTTP - 4,    /* a TLS file is not set or cannot be read */
	HTTP_ETLSCERT = ERRTEXT_HTTP - 5,    /* the chain or key does not load */
	HTTP_EPRIORITIES = ERRTEXT_HTTP - 6, /* TLS_PRIORITIES does not parse */
	HTTP_ELISTEN = ERRTEXT_HTTP - 7,     /* libmicrohttpd would not start (address in use, ...) */
};

/* The text for an HTTP_E* code. */
const char *http_strerror(int code);

struct store;
struct auth;
struct http;
struct api_hooks;

/* st and a are borrowed and must outlive the listener; st is used under the
 * listener's own mutex. Returns 0, an HTTP_E* code, or the writer's,
 * connection limit's, deadline watcher's or store's code, with err. */
int http_start(const struct config *cfg, struct store *st, struct auth *a, const struct api_hooks *hooks,
	       struct http **out, char *err, size_t errlen);
void http_stop(struct http *h); /* NULL is a no-op */

/* Native TLS: reads TLS_CERT_FILE and TLS_KEY_FILE again; new handshakes use
 * them, connections already open keep theirs, the listener stays up. On an
 * error the old certificate stays in use. Returns 0, HTTP_ETLSFILE or
 * HTTP_ETLSCERT with err. */
int http_reload_tls(struct http *h, char *err, size_t errlen);
