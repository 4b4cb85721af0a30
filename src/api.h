/* api: the routes Rasenmaeher and its users call (and, with UI_DIR, the
 * Matrix page's files), independent of the HTTP library. A request comes in as method, path, the verified client CN (or
 * NULL) and the body; a response goes out as status, content type and a
 * malloc'd body. The order of checks is that of the original FastAPI service:
 * unknown path 404, wrong method 405, authorisation 403, body too large 413,
 * body validation 422, then the handler. Internal to http.c and the tests. */
#pragma once
#include <pthread.h>
#include <stddef.h>

#include "auth.h"

struct config;
struct store;
struct http_hooks;

#define API_BODY_MAX (64 * 1024)
#define API_PARAM_MAX 1280 /* the {} or {**} part of a path, NUL included */

struct api_env {
	const struct config *cfg;
	struct store *st;              /* used only under *store_lock */
	pthread_mutex_t *store_lock;
	const struct http_hooks *hooks; /* may be NULL */
};

struct api_request {
	const char *method;
	const char *path;       /* decoded path without the query string */
	const char *cn;         /* verified client CN, NULL when none */
	const char *body;       /* not NUL-terminated; may be NULL when body_len is 0 */
	size_t body_len;
	int body_too_large;     /* the body exceeded API_BODY_MAX and was dropped */
	int product_proxy;      /* X-Rasenmaeher-Proxy: productproxy: a user speaks through RM */
};

struct api_response {
	int status;
	const char *content_type; /* static string */
	char *body;               /* malloc'd, owned by the response */
	size_t body_len;
};

/* The rule guarding method+path: AUTH_PUBLIC for public and unknown routes
 * (those are answered 404/405 before any rule applies). */
enum auth_need api_route_need(const char *method, const char *path);

/* The checks that need no body (404, 405, 403). Returns 0 when the request
 * may proceed, -1 when *out holds the answer. */
int api_check(const struct api_env *env, const char *method, const char *path, const char *cn,
	      struct api_response *out);

/* The 413 answer, for a listener that refuses a body before reading it. */
int api_too_large(struct api_response *out);

/* Answers req; *out always holds a response afterwards (500 when memory ran
 * out). Returns 0, or a negative code (api_call.h's api_strerror) when the
 * answer is an internal error. */
int api_handle(const struct api_env *env, const struct api_request *req, struct api_response *out);

/* Frees out->body; a cleared response is empty. */
void api_response_clear(struct api_response *out);
