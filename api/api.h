/* api: the routes Rasenmaeher and its users call (and, with UI_DIR, the
 * Matrix page's files), independent of the HTTP library. A request comes in as method, path, the verified client CN (or
 * NULL) and the body; a response goes out as status, content type and a
 * malloc'd body. The order of checks is that of the original FastAPI service:
 * unknown path 404, wrong method 405, authorisation 403, body too large 413,
 * body validation 422, then the handler. Internal to http.c and the tests; the types it answers
 * with are api_call.h's. */
#pragma once
#include <stddef.h>

#include "api_call.h"
#include "auth.h"

struct api_pending;

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
 * queue it with api_users_pending_submit(); once its done(ctx) has been called (on
 * the writer thread) answer it with api_users_pending_answer() on any other
 * thread. *pending is NULL when *out already holds the answer. */
int api_handle_async(const struct api_env *env, const struct api_request *req, struct api_response *out,
		     struct api_pending **pending);
