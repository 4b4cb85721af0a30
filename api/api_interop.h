/* api_interop: interop for peer products (BattleLog).
 *  POST /api/v1/interop/add {certcn, x509cert}: Rasenmaeher itself (not a
 *    user through its product proxy) grants a peer's certificate CN; the
 *    grant is committed before the answer {"success": true, ...}; idempotent.
 *  GET /api/v1/interop/authz: a verified client whose CN has a grant gets the
 *    ingest bot's bearer token (403 without a grant, 503 with a JSON body
 *    while the bot is not ready). The token is never logged. */
#pragma once
#include "api_call.h"

int api_interop_add(const struct api_call *c, struct api_response *out);
int api_interop_authz(const struct api_call *c, struct api_response *out);
