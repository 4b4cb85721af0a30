/* executor: see executor.h. Each handler returns 0 when Synapse now has what
 * the action wants (including the answers that say so: "already in the
 * room", "not in the room", an already missing account), else -1 with the
 * reply in resp for the record. */
#include "executor.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "planner.h"
#include "store.h"
#include "synapse.h"

struct exec {
	struct synapse *syn;
	struct synapse *ingest; /* as the ingest bot (its own token), or NULL */
	json_t *rooms;
	json_t *failed_reactivations; /* user -> true: never join them this pass */
	const char *bot;
};

typedef int (*handler_fn)(struct exec *e, json_t *a, struct synapse_resp *resp);

static int call(struct exec *e, const char *method, const char *path, json_t *body,
		struct synapse_resp *resp)
{
	int rc;

	if (!path)
		return -1;
	rc = synapse_request(e->syn, method, path, body, resp);
	return rc == 0 && resp->status == 200 ? 0 : -1;
}

static const char *room_id(struct exec *e, json_t *a)
{
	return json_string_value(json_object_get(e->rooms, json_string_value(json_object_get(a, "room"))));
}

static const char *user_of(json_t *a)
{
	return json_string_value(json_object_get(a, "user"));
}

static int apply_state_set(struct exec *e, json_t *a, struct synapse_resp *resp)
{
	char *path = synapse_path("/_matrix/client/v3/rooms/%s/state/%s/%s", room_id(e, a),
				  json_string_value(json_object_get(a, "event_type")),
				  json_string_value(json_object_get(a, "state_key")));
	int rc = path ? call(e, "PUT", path, json_object_get(a, "content"), resp) : -1;

	free(path);
	return rc;
}

/* The level Synapse would use for key in map, or dflt. */
static json_int_t level_in(json_t *map, const char *key, json_int_t dflt)
{
	json_t *v = json_object_get(map, key);

	return json_is_integer(v) ? json_integer_value(v) : dflt;
}

/* Applies the wanted changes to the content just read, keeping only those
 * Synapse lets the bot make: nobody (the bot included) may be raised above
 * the bot's own level, and nobody at or above it may be changed. A bot with
 * no entry is taken as unlimited (a room creator in room version 12), and
 * Synapse has the last word. Blocked changes are listed in blocked. */
static int merge_power_levels(struct exec *e, json_t *a, json_t *content, char *blocked, size_t blen)
{
	json_t *users = json_object_get(content, "users"), *events = json_object_get(content, "events"), *v;
	json_int_t users_default = level_in(content, "users_default", 0);
	json_int_t bot = json_is_integer(json_object_get(users, e->bot)) ? level_in(users, e->bot, 0) : INT64_MAX;
	const char *key;
	int changed = 0;

	json_object_foreach(json_object_get(a, "users"), key, v) {
		json_int_t have = level_in(users, key, users_default);
		json_int_t want = json_is_null(v) ? users_default : json_integer_value(v);
		int self = strcmp(key, e->bot) == 0;

		if (json_equal(json_object_get(users, key), json_is_null(v) ? NULL : v) ||
		    (!json_object_get(users, key) && json_is_null(v)))
			continue;
		if (want > bot || (!self && have >= bot)) {
			snprintf(blocked + strlen(blocked), blen - strlen(blocked), "%s%s %lld->%lld",
				 blocked[0] ? ", " : "", key, (long long)have, (long long)want);
			continue;
		}
		if (json_is_null(v))
			json_object_del(users, key);
		else
			json_object_set(users, key, v);
		changed = 1;
	}
	json_object_foreach(json_object_get(a, "events"), key, v) {
		json_int_t have = level_in(events, key, level_in(content, "state_default", 50));

		if (json_equal(json_object_get(events, key), v))
			continue;
		if (have > bot || json_integer_value(v) > bot) {
			snprintf(blocked + strlen(blocked), blen - strlen(blocked), "%sevent %s %lld->%lld",
				 blocked[0] ? ", " : "", key, (long long)have, (long long)json_integer_value(v));
			continue;
		}
		json_object_set(events, key, v);
		changed = 1;
	}
	return changed;
}

static int apply_power_levels(struct exec *e, json_t *a, struct synapse_resp *resp)
{
	char *path = synapse_path("/_matrix/client/v3/rooms/%s/state/m.room.power_levels/", room_id(e, a));
	json_t *content = NULL;
	char blocked[200] = "";
	int rc = -1;

	if (!path)
		goto out;
	if (call(e, "GET", path, NULL, resp) != 0 || !json_is_object(resp->body)) {
		if (resp->status == 200)
			snprintf(resp->error, sizeof(resp->error), "power levels read: reply is not a JSON object");
		goto out;
	}
	content = json_incref(resp->body);
	synapse_resp_free(resp);
	if (!json_is_object(json_object_get(content, "users")))
		json_object_set_new(content, "users", json_object());
	if (!json_is_object(json_object_get(content, "events")))
		json_object_set_new(content, "events", json_object());
	rc = merge_power_levels(e, a, content, blocked, sizeof(blocked)) ? call(e, "PUT", path, content, resp) : 0;
	if (rc == 0 && blocked[0]) {
		/* Rooms made by the original service have the bot at 100: it
		 * can never demote an admin there. Say so, every pass. */
		snprintf(resp->errcode, sizeof(resp->errcode), "BOT_LEVEL_TOO_LOW");
		snprintf(resp->error, sizeof(resp->error), "the bot's power level is too low for: %s", blocked);
		rc = -1;
	}
out:
	json_decref(content);
	free(path);
	return rc;
}

/* One request to fmt with segment escaped in; body is stolen. 0 on 200.
 * An action that names no room or user sends nothing. */
static int send_one(struct exec *e, const char *method, const char *fmt, const char *segment,
		    json_t *body, struct synapse_resp *resp)
{
	char *path = synapse_path(fmt, segment);
	int rc = -1;

	if (path)
		rc = call(e, method, path, body, resp);
	else
		snprintf(resp->error, sizeof(resp->error), "the action names no known room or user");
	json_decref(body);
	free(path);
	return rc;
}

static int apply_reactivate(struct exec *e, json_t *a, struct synapse_resp *resp)
{
	int rc = send_one(e, "PUT", "/_synapse/admin/v2/users/%s", user_of(a),
			  json_pack("{s:b}", "deactivated", 0), resp);

	if (rc != 0 && user_of(a))
		json_object_set_new(e->failed_reactivations, user_of(a), json_true());
	return rc;
}

static int apply_join(struct exec *e, json_t *a, struct synapse_resp *resp)
{
	int rc = send_one(e, "POST", "/_synapse/admin/v1/join/%s", room_id(e, a),
			  json_pack("{s:s?}", "user_id", user_of(a)), resp);

	/* Non-public rooms answer 403 for a member; we decided from state, so
	 * this only happens on a race with another writer: the goal holds. */
	if (rc != 0 && resp->status == 403 && strstr(resp->error, "already in the room"))
		rc = 0;
	return rc;
}

/* The ingest bot joins managed rooms through the admin API (the bot may
 * invite there); other children of the space on its own (a restricted
 * room admits members of the space), falling back to the admin API. */
static int apply_ingest_join(struct exec *e, json_t *a, struct synapse_resp *resp)
{
	const char *rid = json_string_value(json_object_get(a, "room_id"));
	int rc;

	if (json_object_get(a, "room") == NULL && e->ingest != NULL && rid != NULL) {
		char *path = synapse_path("/_matrix/client/v3/join/%s", rid);
		json_t *body = json_object();

		rc = path && body && synapse_request(e->ingest, "POST", path, body, resp) == 0 &&
				     resp->status == 200 ? 0 : -1;
		free(path);
		json_decref(body);
		if (rc == 0)
			return 0;
		synapse_resp_free(resp);
	}
	rc = send_one(e, "POST", "/_synapse/admin/v1/join/%s", rid, json_pack("{s:s?}", "user_id", user_of(a)), resp);
	if (rc != 0 && resp->status == 403 && strstr(resp->error, "already in the room"))
		rc = 0;
	return rc;
}

static int apply_kick(struct exec *e, json_t *a, struct synapse_resp *resp)
{
	int rc = send_one(e, "POST", "/_matrix/client/v3/rooms/%s/kick", room_id(e, a),
			  json_pack("{s:s?, s:s}", "user_id", user_of(a), "reason", "not an administrator"), resp);

	if (rc != 0 && resp->status == 403 && strstr(resp->error, "not in the room"))
		rc = 0;
	return rc;
}

#define DEACTIVATE_TIMEOUT_MS 60000 /* erasing a user with much history takes Synapse a while */

static int apply_deactivate(struct exec *e, json_t *a, struct synapse_resp *resp)
{
	long before = synapse_set_timeout(e->syn, DEACTIVATE_TIMEOUT_MS);
	int rc = send_one(e, "POST", "/_synapse/admin/v1/deactivate/%s", user_of(a),
			  json_pack("{s:b}", "erase", 1), resp);

	synapse_set_timeout(e->syn, before);
	if (rc != 0 && resp->status == 404)
		rc = 0; /* no account: nothing to deactivate */
	return rc;
}

static const handler_fn handlers[ACTION__COUNT] = {
	[ACTION_STATE_SET] = apply_state_set,
	[ACTION_POWER_LEVELS_SET] = apply_power_levels,
	[ACTION_USER_REACTIVATE] = apply_reactivate,
	[ACTION_ROOM_JOIN] = apply_join,
	[ACTION_INGEST_JOIN] = apply_ingest_join,
	[ACTION_ROOM_KICK] = apply_kick,
	[ACTION_USER_DEACTIVATE] = apply_deactivate,
};

int executor_has_handler(int kind)
{
	return kind >= 0 && kind < ACTION__COUNT && handlers[kind] != NULL;
}

/* FNV-1a, enough to tell changes apart in a backoff key. */
static unsigned long hash_text(const char *s)
{
	uint32_t h = 2166136261U;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619U;
	return h;
}

/* The room an action is recorded under: its key, or the id of a room we do
 * not manage. */
static const char *room_name(json_t *a)
{
	const char *key = json_string_value(json_object_get(a, "room"));

	return key ? key : json_string_value(json_object_get(a, "room_id"));
}

char *executor_action_key(json_t *a)
{
	const char *parts[] = {json_string_value(json_object_get(a, "kind")), room_name(a), user_of(a),
			       json_string_value(json_object_get(a, "event_type")),
			       json_string_value(json_object_get(a, "state_key"))};
	char buf[1024] = "";
	char *change = NULL;

	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s", i ? "|" : "",
			 parts[i] ? parts[i] : "");
	/* A power-levels update is keyed by what it changes, so a new
	 * promotion is not held back by an older failing change. */
	if (planner_action_kind(a) == ACTION_POWER_LEVELS_SET) {
		json_t *what = json_pack("{s:O?, s:O?}", "users", json_object_get(a, "users"), "events",
					 json_object_get(a, "events"));

		change = json_dumps(what, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(what);
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "|%08lx",
			 change ? hash_text(change) : 0UL);
		free(change);
	}
	return strdup(buf);
}

static const char *target_of(json_t *a)
{
	const char *u = user_of(a);
	const char *t = json_string_value(json_object_get(a, "event_type"));

	return u ? u : t ? t : "power_levels";
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define NO_ANSWER_LIMIT 2

/* Why the rest of the pass is abandoned, or NULL to go on. */
static const char *give_up(const struct executor_limits *lim, const struct executor_result *res)
{
	if (res->unreachable)
		return "abandoned: Synapse stopped answering; the next pass retries";
	if (lim && lim->stop && atomic_load(lim->stop))
		return "abandoned: the service is stopping";
	if (lim && lim->deadline_ms && mono_ms() >= lim->deadline_ms)
		return "abandoned: the pass reached its deadline; the next pass goes on";
	return NULL;
}

int executor_apply(struct synapse *syn, struct synapse *ingest, struct store *st, const char *bot_id,
		   json_t *rooms, json_t *actions, int64_t pass_id, int64_t now_ms,
		   const struct executor_limits *lim, struct executor_result *res)
{
	struct exec e = {.syn = syn, .ingest = ingest, .rooms = rooms, .failed_reactivations = json_object(),
			 .bot = bot_id};
	json_t *keys = json_array();
	json_t *a;
	size_t i;
	int no_answer = 0; /* actions in a row that got no HTTP answer */

	memset(res, 0, sizeof(*res));
	res->planned = (int)json_array_size(actions);
	json_array_foreach(actions, i, a) {
		int kind = planner_action_kind(a);
		const char *name = kind >= 0 ? planner_action_names[kind] : "unknown";
		const char *room = room_name(a);
		struct synapse_resp resp = {0};
		char *key = executor_action_key(a);
		int64_t next_ms = 0;
		int attempts = 0;
		/* the action's log fields: a managed room's id, else the one it names */
		struct log_fields lf = {.action = name, .user_id = user_of(a), .has_duration = 1,
					.room_id = room_id(&e, a) ? room_id(&e, a)
								  : json_string_value(json_object_get(a, "room_id"))};
		int64_t start_ns = log_now_ns();

		const char *stop = give_up(lim, res);

		json_array_append_new(keys, json_string(key));
		if (stop) {
			res->abandoned++;
			store_action_record(st, pass_id, now_ms, name, target_of(a), room, "abandoned", NULL, stop);
			lf.outcome = LOG_UNKNOWN;
			lf.duration_ns = log_now_ns() - start_ns;
			log_event(LOG_LVL_DEBUG, &lf, "reconcile: %s %s%s%s %s", name, target_of(a), room ? " in " : "",
				  room ? room : "", stop);
			free(key);
			continue;
		}
		store_backoff_get(st, key, &next_ms, &attempts);
		if (next_ms > now_ms) {
			res->deferred++;
			/* A reactivation still on backoff leaves the account
			 * deactivated: its joins must wait just as after a failure. */
			if (kind == ACTION_USER_REACTIVATE && user_of(a))
				json_object_set_new(e.failed_reactivations, user_of(a), json_true());
			store_action_record(st, pass_id, now_ms, name, target_of(a), room,
					    "deferred", NULL, "waiting for backoff after an earlier failure");
			lf.outcome = LOG_UNKNOWN;
			lf.duration_ns = log_now_ns() - start_ns;
			log_event(LOG_LVL_DEBUG, &lf, "reconcile: %s %s%s%s deferred: waiting for backoff", name,
				  target_of(a), room ? " in " : "", room ? room : "");
		} else if (kind == ACTION_ROOM_JOIN && json_object_get(e.failed_reactivations, user_of(a))) {
			/* Never force-join a deactivated account; not a failure of
			 * the join itself, so no backoff of its own. */
			res->deferred++;
			store_action_record(st, pass_id, now_ms, name, target_of(a), room, "skipped", NULL,
					    "not joined: the account was not reactivated this pass");
			lf.outcome = LOG_UNKNOWN;
			lf.duration_ns = log_now_ns() - start_ns;
			log_event(LOG_LVL_DEBUG, &lf, "reconcile: %s %s%s%s skipped: the account was not reactivated",
				  name, target_of(a), room ? " in " : "", room ? room : "");
		} else if (executor_has_handler(kind) && handlers[kind](&e, a, &resp) == 0) {
			lf.duration_ns = log_now_ns() - start_ns; /* Synapse's time, not the records' below */
			res->ok++;
			no_answer = 0;
			store_action_record(st, pass_id, now_ms, name, target_of(a), room, "ok", NULL, NULL);
			if (attempts)
				store_backoff_clear(st, key);
			lf.outcome = LOG_SUCCESS;
			log_event(LOG_LVL_INFO, &lf, "reconcile: %s %s%s%s done", name, target_of(a),
				  room ? " in " : "", room ? room : "");
		} else {
			char msg[400];

			lf.duration_ns = log_now_ns() - start_ns;
			res->failed++;
			/* No HTTP answer at all: Synapse is gone for now, and every
			 * further action would wait out its own timeout. */
			if (resp.status == 0 && !resp.error[0] && executor_has_handler(kind)) {
				/* (an action that named nothing says so in error) One
				 * stall may be one slow request; two in a row is Synapse. */
				if (++no_answer >= NO_ANSWER_LIMIT)
					res->unreachable = 1;
			} else {
				no_answer = 0;
			}
			/* status 0: no HTTP answer (refused, reset, timed out) or
			 * not sent at all; claim no status then. */
			if (resp.status)
				snprintf(msg, sizeof(msg), "HTTP %ld %s", resp.status, resp.error);
			else
				snprintf(msg, sizeof(msg), "%s",
					 resp.error[0] ? resp.error : synapse_strerror(SYNAPSE_E_TRANSPORT));
			store_action_record(st, pass_id, now_ms, name, target_of(a), room, "failed",
					    resp.errcode[0] ? resp.errcode : NULL, msg);
			store_backoff_fail(st, key, now_ms, msg);
			lf.outcome = LOG_FAILURE;
			lf.error_code = resp.errcode[0] ? resp.errcode : NULL;
			log_event(LOG_LVL_WARN, &lf, "reconcile: %s %s%s%s failed: %s %s", name, target_of(a),
				  room ? " in " : "", room ? room : "", resp.errcode, msg);
			if (!res->first_error[0])
				snprintf(res->first_error, sizeof(res->first_error), "%s %s%s%s: %s %s", name,
					 target_of(a), room ? " in " : "", room ? room : "", resp.errcode, msg);
		}
		synapse_resp_free(&resp);
		free(key);
	}
	/* Backoff of changes no longer wanted must not hold back later ones. */
	store_backoff_retain(st, keys);
	json_decref(keys);
	json_decref(e.failed_reactivations);
	return res->failed || res->deferred || res->abandoned ? -1 : 0;
}
