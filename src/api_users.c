/* api_users: the user callbacks (see api_users.h). */
#include "api_users.h"

#include <stdint.h>
#include <string.h>
#include <time.h>

#include "bootstrap.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "matrixid.h"
#include "respond.h"
#include "store.h"

#define MXID_MAX 512

static const char *const event_names[] = {
	[STORE_CREATED] = "created", [STORE_REVOKED] = "revoked", [STORE_PROMOTED] = "promoted",
	[STORE_DEMOTED] = "demoted", [STORE_UPDATED] = "updated",
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The admin bot, the ingest bot and the recovery admins. */
static int reserved(const struct config *cfg, const char *mxid)
{
	const char *local = mxid + 1, *colon = strchr(mxid, ':');
	size_t n = colon ? (size_t)(colon - local) : strlen(local);
	const char *names[] = {cfg->bot_username, cfg->interop_bot_username};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i] && strlen(names[i]) == n && strncmp(local, names[i], n) == 0)
			return 1;
	return strncmp(local, BOOTSTRAP_RECOVERY_PREFIX, strlen(BOOTSTRAP_RECOVERY_PREFIX)) == 0;
}

int api_users_callback(const struct api_call *c, struct api_response *out)
{
	const struct api_env *env = c->env;
	const char *name = event_names[c->event];
	char mxid[MXID_MAX], reason[256];
	int rc;

	if (matrixid_from_callsign(c->user->callsign, env->cfg->server_domain, mxid, sizeof(mxid),
				   reason, sizeof(reason)) != 0) {
		log_warnx("api: %s callback refused, invalid callsign: %s", name, reason);
		return respond_result(out, 200, 0, reason);
	}
	if (reserved(env->cfg, mxid)) {
		/* The bots are the service's own: a callback never manages them. */
		api_store_lock(env);
		rc = store_record_refused(env->st, (enum store_event)c->event, c->user->uuid, c->user->callsign, mxid,
					  now_ms(), "reserved for the service's own bots");
		api_store_unlock(env);
		log_warnx("api: %s callback for %s refused: the account is reserved for the service", name, mxid);
		if (rc != 0) {
			respond_result(out, 503, 0, "the callback could not be stored (database not writable)");
			return API_ESTORE;
		}
		return respond_result(out, 200, 0, "this account is reserved for the service's own bots");
	}
	api_store_lock(env);
	rc = store_record_callback(env->st, (enum store_event)c->event, c->user->uuid,
				   c->user->callsign, mxid, now_ms());
	api_store_unlock(env);
	if (rc == STORE_REFUSED) {
		log_warnx("api: %s callback for %s refused: the Matrix ID belongs to another Rasenmaeher user", name,
			  mxid);
		return respond_result(out, 200, 0, "the Matrix ID belongs to another Rasenmaeher user");
	}
	if (rc != 0) {
		/* Never 200 for what is not on disk: 503, and nothing recorded. */
		log_error("api: %s callback for %s not stored", name, mxid);
		respond_result(out, 503, 0, "the callback could not be stored (database not writable); nothing was recorded");
		return API_ESTORE;
	}
	log_info("api: %s callback for %s stored", name, mxid);
	if (env->hooks != NULL && env->hooks->nudge != NULL)
		env->hooks->nudge(env->hooks->ctx);
	return respond_result(out, 200, 1, NULL);
}
