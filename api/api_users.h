/* api_users: Rasenmaeher's user callbacks (created, revoked, promoted,
 * demoted, updated). A callback is answered 200 success only after the store
 * has committed it; an invalid callsign is answered 200 success false and
 * stores nothing. The x509cert field is never logged. */
#pragma once
#include "api_call.h"

/* c->event is the enum store_event of the route. */
int api_users_callback(const struct api_call *c, struct api_response *out);
