/* api_users: Rasenmaeher's user callbacks (created, revoked, promoted,
 * demoted, updated). A callback is answered 200 success only after the store
 * has committed it; an invalid callsign is answered 200 success false and
 * stores nothing. The x509cert field is never logged. */
#pragma once
#include "api_call.h"

/* c->event is the enum event_kind of the route. */
int api_users_callback(const struct api_call *c, struct api_response *out);

/* Hands p to env's writer; done(ctx) is called exactly once, on the writer
 * thread after the commit, or at once here when the writer refuses it. It
 * must not call back into the api; p stays owned by the caller. */
void api_users_pending_submit(const struct api_env *env, struct api_pending *p, void (*done)(void *ctx), void *ctx);

/* The answer for a committed (or failed) p: 200 success only when it is on
 * disk, 503 with a JSON error otherwise. Returns 0 or a negative code. */
int api_users_pending_answer(const struct api_env *env, struct api_pending *p, struct api_response *out);

/* NULL is a no-op. Never while p is queued (before done has been called). */
void api_users_pending_free(struct api_pending *p);
