/* api_interop: see api_interop.h. */
#include "api_interop.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "respond.h"
#include "store.h"

#define CERTCN_MAX 255
#define TOKEN_MAX 1024

/* A CN that a certificate can carry: 1..255 bytes, no control characters. */
static int certcn_ok(const char *cn)
{
	size_t n = strlen(cn);

	if (n == 0 || n > CERTCN_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)cn[i] < 0x20 || cn[i] == 0x7f)
			return 0;
	return 1;
}

int api_interop_add(const struct api_call *c, struct api_response *out)
{
	const struct api_env *env = c->env;
	int rc;

	if (!certcn_ok(c->grant->certcn))
		return respond_invalid(out, "certcn",
				       "a certificate CN of 1 to 255 characters without control characters",
				       "value_error");
	api_store_lock(env);
	rc = store_interop_grant(env->st, c->grant->certcn, c->grant->x509cert, clock_real_ms());
	api_store_unlock(env);
	if (rc != 0) {
		log_error("api: interop grant for CN %s not stored", c->grant->certcn);
		respond_result(out, 503, 0,
			       "the grant could not be stored (database not writable); nothing was recorded");
		return API_ESTORE;
	}
	log_info("api: interop grant for CN %s stored", c->grant->certcn);
	if (env->hooks != NULL && env->hooks->nudge != NULL)
		env->hooks->nudge(env->hooks->ctx);
	return respond_result(out, 200, 1, NULL);
}

int api_interop_authz(const struct api_call *c, struct api_response *out)
{
	const struct api_env *env = c->env;
	const char *cn = c->req->cn;
	char token[TOKEN_MAX], user[600];
	int granted, rc;

	api_store_lock(env);
	granted = store_interop_granted(env->st, cn);
	api_store_unlock(env);
	if (granted < 0) {
		respond_detail(out, 500, "Internal Server Error");
		return API_ESTORE;
	}
	if (granted == 0) {
		log_info("api: interop token refused to CN %s: no grant", cn);
		return respond_detail(out, 403, "Forbidden");
	}
	if (env->hooks == NULL || env->hooks->ingest_token == NULL ||
	    env->hooks->ingest_token(env->hooks->ctx, token, sizeof(token)) != 1) {
		log_info("api: interop token for CN %s not ready yet", cn);
		return respond_detail(out, 503, "the interop bot is not ready yet; try again shortly");
	}
	snprintf(user, sizeof(user), "@%s:%s", env->cfg->interop_bot_username, env->cfg->server_domain);
	rc = respond_json(out, 200,
			  json_pack("{s:s, s:s, s:s, s:n, s:n}", "type", "bearer-token", "token", token, "username",
				    user, "password", "ro_password"));
	explicit_bzero(token, sizeof(token));
	log_info("api: interop token for %s handed to CN %s", user, cn);
	return rc;
}
