/* api_call: what a route handler is given and how it reports failure. Shared
 * by the route table (api.c) and the endpoint families (api_users.c,
 * api_product.c, api_ui.c); not used outside src/api*.c and the tests.
 * A handler always leaves an answer in *out; its return value is 0, or a
 * negative code (a negative errno or one of enum api_err) that api.c logs
 * through api_strerror when the answer is an internal error. */
#pragma once
#include "errtext.h"
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct store;
struct writer;
struct api_pending;

/* What the edge may ask of the rest of the service; main.c wires these to
 * the reconciler's loop, so that no file of api/ names it. */
struct api_hooks {
	/* Called after a callback changed desired state (may be NULL). */
	void (*nudge)(void *ctx);
	/* Fills extra, returns 1 when healthy (may be NULL: then healthy iff the
	 * database answers). */
	int (*health)(void *ctx, char *extra, size_t extralen);
	/* Copies the interop ingest bot's token into out and returns 1, or
	 * returns 0 while it is not ready (may be NULL: never ready). */
	int (*ingest_token)(void *ctx, char *out, size_t outlen);
	void *ctx;
};

#define API_BODY_MAX ((size_t)64 * 1024)
#define API_PARAM_MAX 1280 /* the {} or {**} part of a path, NUL included */

struct api_env {
	const struct config *cfg;
	struct store *st; /* used only under *store_lock (health without hooks) */
	pthread_mutex_t *store_lock;
	struct writer *writer;         /* commits the callbacks */
	const struct api_hooks *hooks; /* may be NULL */
};

struct api_request {
	const char *method;
	const char *path; /* decoded path without the query string */
	const char *cn;   /* verified client CN, NULL when none */
	const char *body; /* not NUL-terminated; may be NULL when body_len is 0 */
	size_t body_len;
	int body_too_large; /* the body exceeded API_BODY_MAX and was dropped */
	int product_proxy;  /* X-Rasenmaeher-Proxy: productproxy: a user speaks through RM */
};

struct api_response {
	int status;
	const char *content_type; /* static string */
	char *body;               /* malloc'd, owned by the response */
	size_t body_len;
};

/* Frees out->body; a cleared response is empty. NULL is a no-op. */
void api_response_clear(struct api_response *out);

enum api_err {
	API_ENOMEM = ERRTEXT_API - 1,   /* an answer could not be built */
	API_ESTORE = ERRTEXT_API - 2,   /* the store refused a write */
	API_EBADPATH = ERRTEXT_API - 3, /* a file path that may not be served */
	API_ENOTFILE = ERRTEXT_API - 4, /* the path names no regular file */
	API_ETOOBIG = ERRTEXT_API - 5,  /* a file larger than API_UI_FILE_MAX */
	API_ENOEMBED = ERRTEXT_API - 6, /* a file the build should have embedded is missing */
};

/* The text for any code a handler or api_ui_* returns (never NULL). */
const char *api_strerror(int code);

/* A validated UserCRUDRequest; the strings are borrowed from the parsed body. */
struct api_user {
	const char *uuid;
	const char *callsign;
	const char *x509cert;
};

/* A validated interop grant request {certcn, x509cert}; borrowed strings. */
struct api_grant {
	const char *certcn;
	const char *x509cert;
};

struct api_call {
	const struct api_env *env;
	const struct api_request *req;
	const char *param;             /* the {} or {**} segment of the route, or "" */
	const struct api_user *user;   /* NULL unless the route takes a user body */
	const struct api_grant *grant; /* NULL unless the route takes a grant body */
	int event;                     /* enum event_kind for the user callbacks */
	struct api_pending **pending;  /* a handler whose answer waits for the disk sets it */
	int64_t started;               /* clock_mono_ns() when the request reached the api */
};

typedef int (*api_handler_fn)(const struct api_call *c, struct api_response *out);

/* The listener's store lock (a no-op when the environment has none). */
void api_store_lock(const struct api_env *env);
void api_store_unlock(const struct api_env *env);
