/* api_users: the user callbacks (see api_users.h). A valid callback becomes
 * an api_pending: one allocation holding the writer's item and copies of
 * the strings, so that it outlives the request body while the writer has it. */
#include "api_users.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "event.h"
#include "log.h"
#include "matrixid.h"
#include "metrics.h"
#include "respond.h"
#include "store.h"
#include "writer.h"

#define MXID_MAX 512
#define RESERVED_REASON "reserved for the service's own bots"
#define KUBE_REASON "users come from the Kubernetes platform here (KUBERNETES_SOURCE=1), not from callbacks"

struct api_pending {
	struct writer_item item; /* item.cb's strings point into text */
	void (*done)(void *ctx);
	void *ctx;
	int64_t started; /* clock_mono_ns() when the request reached the api */
	char text[];     /* uuid, callsign, matrix id, NUL-separated */
};

/* The admin bot, the ingest bot and the recovery admins. */
static int reserved(const struct config *cfg, const char *mxid)
{
	const char *local = mxid + 1, *colon = strchr(mxid, ':');
	size_t n = colon ? (size_t)(colon - local) : strlen(local);
	const char *names[] = {cfg->bot_username, cfg->interop_bot_username};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i] && strlen(names[i]) == n && strncmp(local, names[i], n) == 0)
			return 1;
	return strncmp(local, MATRIXID_RECOVERY_PREFIX, strlen(MATRIXID_RECOVERY_PREFIX)) == 0;
}

static struct api_pending *pending_new(int event, const char *uuid, const char *callsign, const char *mxid)
{
	size_t lu = strlen(uuid) + 1, lc = strlen(callsign) + 1, lm = strlen(mxid) + 1;
	struct api_pending *p = calloc(1, sizeof(*p) + lu + lc + lm);

	if (p == NULL)
		return NULL;
	memcpy(p->text, uuid, lu);
	memcpy(p->text + lu, callsign, lc);
	memcpy(p->text + lu + lc, mxid, lm);
	p->item.cb.ev = (enum event_kind)event;
	p->item.cb.uuid = p->text;
	p->item.cb.callsign = p->text + lu;
	p->item.cb.matrix_id = p->text + lu + lc;
	p->item.cb.at_ms = clock_real_ms();
	return p;
}

int api_users_callback(const struct api_call *c, struct api_response *out)
{
	const struct api_env *env = c->env;
	const char *name = event_names[c->event].name;
	char mxid[MXID_MAX], reason[256];

	if (matrixid_from_callsign(c->user->callsign, env->cfg->server_domain, mxid, sizeof(mxid), reason,
				   sizeof(reason)) != 0) {
		log_event(LOG_LVL_WARN,
			  &(struct log_fields){.action = event_names[c->event].log_action,
					       .outcome = LOG_FAILURE,
					       .has_duration = 1,
					       .duration_ns = clock_mono_ns() - c->started},
			  "api: %s callback refused, invalid callsign: %s", name, reason);
		metrics_callback(c->event, METRICS_CALLBACK_REFUSED, c->started);
		return respond_result(out, 200, 0, reason);
	}
	if (env->cfg->kube_source) {
		/* The platform's Users are the desired state; each replica's
		 * database is only a cache of them. */
		log_event(LOG_LVL_WARN,
			  &(struct log_fields){.action = event_names[c->event].log_action,
					       .outcome = LOG_FAILURE,
					       .has_duration = 1,
					       .duration_ns = clock_mono_ns() - c->started},
			  "api: %s callback refused: %s", name, KUBE_REASON);
		metrics_callback(c->event, METRICS_CALLBACK_REFUSED, c->started);
		return respond_result(out, 200, 0, KUBE_REASON);
	}
	if ((*c->pending = pending_new(c->event, c->user->uuid, c->user->callsign, mxid)) == NULL)
		return respond_oom(out);
	(*c->pending)->started = c->started;
	/* The bots are the service's own: a callback never manages them; it is
	 * journalled as refused (through the writer, like every write). */
	if (reserved(env->cfg, mxid))
		(*c->pending)->item.cb.refuse = RESERVED_REASON;
	return 0;
}

static void pending_done(struct writer_item *it)
{
	struct api_pending *p = it->ctx;

	p->done(p->ctx);
}

void api_users_pending_submit(const struct api_env *env, struct api_pending *p, void (*done)(void *ctx), void *ctx)
{
	p->done = done;
	p->ctx = ctx;
	p->item.done = pending_done;
	p->item.ctx = p;
	if (env->writer == NULL || writer_submit(env->writer, &p->item) != 0) {
		p->item.result = WRITER_ESTOPPED;
		done(ctx);
	}
}

int api_users_pending_answer(const struct api_env *env, struct api_pending *p, struct api_response *out)
{
	const char *name = event_names[p->item.cb.ev].name;
	/* From the request reaching the api to the answer: validation, the
	 * writer's queue, the commit and its fsync (as the metrics count it). */
	struct log_fields f = {.action = event_names[p->item.cb.ev].log_action,
			       .user_id = p->item.cb.matrix_id,
			       .outcome = p->item.result == 0 ? LOG_SUCCESS : LOG_FAILURE,
			       .has_duration = 1,
			       .duration_ns = clock_mono_ns() - p->started};
	char error[128];

	if (p->item.result == WRITER_EOWNED) {
		const char *why = p->item.cb.refuse ? "this account is reserved for the service's own bots"
						    : "the Matrix ID belongs to another Rasenmaeher user";

		log_event(LOG_LVL_WARN, &f, "api: %s callback for %s refused: %s", name, p->item.cb.matrix_id, why);
		metrics_callback((int)p->item.cb.ev, METRICS_CALLBACK_REFUSED, p->started);
		return respond_result(out, 200, 0, why);
	}
	if (p->item.result != 0) {
		/* Never 200 for what is not on disk: 503, and nothing recorded. */
		log_event(LOG_LVL_ERROR, &f, "api: %s callback for %s not stored: %s", name, p->item.cb.matrix_id,
			  writer_strerror(p->item.result));
		snprintf(error, sizeof(error), "not stored: %s", writer_strerror(p->item.result));
		respond_result(out, 503, 0, error);
		metrics_callback((int)p->item.cb.ev, METRICS_CALLBACK_FAILED, p->started);
		return API_ESTORE;
	}
	log_event(LOG_LVL_INFO, &f, "api: %s callback for %s stored", name, p->item.cb.matrix_id);
	metrics_callback((int)p->item.cb.ev, METRICS_CALLBACK_STORED, p->started);
	if (env->hooks != NULL && env->hooks->nudge != NULL)
		env->hooks->nudge(env->hooks->ctx);
	return respond_result(out, 200, 1, NULL);
}

void api_users_pending_free(struct api_pending *p)
{
	free(p);
}
