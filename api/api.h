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
struct writer;
struct http_hooks;
struct api_pending;

#define API_BODY_MAX ((size_t)64 * 1024)
#define API_PARAM_MAX 1280 /* the {} or {**} part of a path, NUL included */

struct api_env {
	const struct config *cfg;
	struct store *st; /* used only under *store_lock (health without hooks) */
	pthread_mutex_t *store_lock;
	struct writer *writer;          /* commits the callbacks */
	const struct http_hooks *hooks; /* may be NULL */
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

/* The rule guarding method+path: AUTH_PUBLIC for public and unknown routes
 * (those are answered 404/405 before any rule applies). */
enum auth_need api_route_need(const char *method, const char *path);

/* The checks that need no body (404, 405, 403). Returns 0 when the request
 * may proceed, -1 when *out holds the answer. */
int api_check(const struct api_env *env, const char *method, const char *path, const char *cn,
	      struct api_response *out);

/* For a listener that has the headers but not yet the body: api_check's
 * 404/405/403 answered at once (counted in the metrics as a callback would
 * be), so that a peer with no right to the route cannot hold its
 * connection while it sends a body slowly. Returns 1 with *out filled when
 * refused, 0 when the request may proceed (*out untouched). */
int api_refuse_early(const struct api_env *env, const char *method, const char *path, const char *cn,
		     struct api_response *out);

/* The 413 answer. */
int api_too_large(struct api_response *out);
/* For a listener that refuses a declared body larger than API_BODY_MAX
 * before reading it: api_check's 404/405/403, else 413; counted in the
 * metrics as a callback would be. Returns 0. */
int api_refuse_too_large(const struct api_env *env, const char *method, const char *path, const char *cn,
			 struct api_response *out);

/* Answers req; *out always holds a response afterwards (500 when memory ran
 * out). A callback waits here for its commit (api_handle_async does not).
 * Returns 0, or a negative code (api_call.h's api_strerror) when the
 * answer is an internal error. */
int api_handle(const struct api_env *env, const struct api_request *req, struct api_response *out);

/* Like api_handle, but a callback that must reach the disk before it is
 * answered comes back as *pending (owned by the caller) with *out empty:
 * queue it with api_pending_submit(); once its done(ctx) has been called (on
 * the writer thread) answer it with api_pending_answer() on any other
 * thread. *pending is NULL when *out already holds the answer. */
int api_handle_async(const struct api_env *env, const struct api_request *req, struct api_response *out,
		     struct api_pending **pending);

/* Hands p to env's writer; done(ctx) is called exactly once, on the writer
 * thread after the commit, or at once here when the writer refuses it. It
 * must not call back into the api; p stays owned by the caller. */
void api_pending_submit(const struct api_env *env, struct api_pending *p, void (*done)(void *ctx), void *ctx);

/* The answer for a committed (or failed) p: 200 success only when it is on
 * disk, 503 with a JSON error otherwise. Returns 0 or a negative code. */
int api_pending_answer(const struct api_env *env, struct api_pending *p, struct api_response *out);

/* NULL is a no-op. Never while p is queued (before done has been called). */
void api_pending_free(struct api_pending *p);

/* Frees out->body; a cleared response is empty. */
void api_response_clear(struct api_response *out);
