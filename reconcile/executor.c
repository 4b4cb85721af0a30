/* executor: see executor.h. The plan is cut into waves (executor_schedule).
 * Kinds of one request per action (reactivate, join, kick, deactivate) are
 * built into a request and judged from its answer: 1 when Synapse now has
 * what the action wants, including the answers that say so ("already in the
 * room", "not in the room", an already missing account); a wave of them goes
 * to Synapse as one batch (synapse_request_batch). The other kinds have a
 * handler that sends and judges (0 on success, else -1 with the reply in resp
 * for the record), run one at a time. Outcomes are recorded by the executor's
 * thread alone, after each request has ended. */
#include "executor.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "planner.h"
#include "store.h"
#include "synapse.h"

#define NAMES_NOTHING "the action names no known room or user"

struct exec {
	struct synapse *syn;
	struct synapse *ingest; /* as the ingest bot (its own token), or NULL */
	json_t *rooms;
	json_t *observed_rooms;       /* key -> the pass's state read, or NULL */
	json_t *failed_reactivations; /* user -> true: never join them this pass */
	const char *bot;
	struct store *st;
	int64_t pass_id, now_ms;
	const struct executor_limits *lim; /* may be NULL */
	struct executor_result *res;
	json_t *keys;  /* the backoff key of every action of the plan */
	int no_answer; /* requests without an HTTP answer since the last answer */
};

typedef int (*handler_fn)(struct exec *e, json_t *a, struct synapse_resp *resp);

static const char *room_name(json_t *a);

static int call(struct exec *e, const char *method, const char *path, json_t *body, struct synapse_resp *resp)
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

/* The wanted levels of want (key -> level) into map (missing keys at dflt),
 * except those the bot may not set; those are listed in blocked, each named
 * with prefix. 1 when map changed. */
static int merge_levels(json_t *map, json_t *want, json_int_t dflt, json_int_t bot, const char *prefix, char *blocked,
			size_t blen)
{
	const char *key;
	json_t *v;
	int changed = 0;

	json_object_foreach(want, key, v) {
		json_int_t have = level_in(map, key, dflt);

		if (json_equal(json_object_get(map, key), v))
			continue;
		if (have > bot || json_integer_value(v) > bot) {
			snprintf(blocked + strlen(blocked), blen - strlen(blocked), "%s%s%s %lld->%lld",
				 blocked[0] ? ", " : "", prefix, key, (long long)have,
				 (long long)json_integer_value(v));
			continue;
		}
		json_object_set(map, key, v);
		changed = 1;
	}
	return changed;
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
	changed |= merge_levels(events, json_object_get(a, "events"), level_in(content, "state_default", 50), bot,
				"event ", blocked, blen);
	changed |= merge_levels(content, json_object_get(a, "levels"), 0, bot, "", blocked, blen);
	return changed;
}

/* Read-merge-write rounds per power-levels action: a write Synapse refuses (403:
 * its auth rules reject the content, e.g. someone changed a level since our
 * read) is merged again into a fresh read and written once more. */
#define POWER_LEVELS_TRIES 2

/* A copy of the power levels content in the pass's state read of a's room,
 * or NULL when the pass read none. */
static json_t *observed_power_levels(struct exec *e, json_t *a)
{
	json_t *state = json_object_get(e->observed_rooms, json_string_value(json_object_get(a, "room"))), *ev;
	size_t i;

	json_array_foreach(state, i, ev) {
		const char *type = json_string_value(json_object_get(ev, "type"));
		const char *key = json_string_value(json_object_get(ev, "state_key"));

		if (type && key && strcmp(type, "m.room.power_levels") == 0 && key[0] == '\0' &&
		    json_is_object(json_object_get(ev, "content")))
			return json_deep_copy(json_object_get(ev, "content"));
	}
	return NULL;
}

static int apply_power_levels(struct exec *e, json_t *a, struct synapse_resp *resp)
{
	char *path = synapse_path("/_matrix/client/v3/rooms/%s/state/m.room.power_levels/", room_id(e, a));
	json_t *content = NULL;
	char blocked[200] = "";
	int rc = -1;

	if (!path)
		goto out;
	for (int tries = 1;; tries++) {
		json_decref(content);
		content = tries == 1 ? observed_power_levels(e, a) : NULL;
		blocked[0] = '\0';
		if (content == NULL && (call(e, "GET", path, NULL, resp) != 0 || !json_is_object(resp->body))) {
			if (resp->status == 200)
				snprintf(resp->error, sizeof(resp->error),
					 "power levels read: reply is not a JSON object");
			rc = -1;
			goto out;
		}
		if (content == NULL) {
			content = json_incref(resp->body);
			synapse_resp_free(resp);
		}
		if (!json_is_object(json_object_get(content, "users")))
			json_object_set_new(content, "users", json_object());
		if (!json_is_object(json_object_get(content, "events")))
			json_object_set_new(content, "events", json_object());
		rc = merge_power_levels(e, a, content, blocked, sizeof(blocked)) ? call(e, "PUT", path, content, resp)
										 : 0;
		if (rc == 0 || resp->status != 403 || tries >= POWER_LEVELS_TRIES)
			break;
		log_info("reconcile: power levels of %s refused (%s %s); reading them again", room_name(a),
			 resp->errcode, resp->error);
		synapse_resp_free(resp);
		memset(resp, 0, sizeof(*resp));
	}
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
static int send_one(struct exec *e, const char *method, const char *fmt, const char *segment, json_t *body,
		    struct synapse_resp *resp)
{
	char *path = synapse_path(fmt, segment);
	int rc = -1;

	if (path)
		rc = call(e, method, path, body, resp);
	else
		snprintf(resp->error, sizeof(resp->error), "%s", NAMES_NOTHING);
	json_decref(body);
	free(path);
	return rc;
}

/* ---- the kinds sent in concurrent waves: one request each, built here and
 * judged from its answer (a pure look at the reply), so that a wave can
 * send many of them as one batch ---- */

struct built {
	const char *method;
	char *path;      /* NULL: the action names no known room or user */
	json_t *body;    /* owned */
	long timeout_ms; /* 0: the client's */
};

static void built_release(struct built *b)
{
	free(b->path);
	json_decref(b->body);
	memset(b, 0, sizeof(*b));
}

static void build_reactivate(struct exec *e, json_t *a, struct built *b)
{
	(void)e;
	b->method = "PUT";
	b->path = synapse_path("/_synapse/admin/v2/users/%s", user_of(a));
	b->body = json_pack("{s:b}", "deactivated", 0);
}

static void build_join(struct exec *e, json_t *a, struct built *b)
{
	b->method = "POST";
	b->path = synapse_path("/_synapse/admin/v1/join/%s", room_id(e, a));
	b->body = json_pack("{s:s?}", "user_id", user_of(a));
}

static void build_kick(struct exec *e, json_t *a, struct built *b)
{
	b->method = "POST";
	b->path = synapse_path("/_matrix/client/v3/rooms/%s/kick", room_id(e, a));
	b->body = json_pack("{s:s?, s:s}", "user_id", user_of(a), "reason", "not an administrator");
}

#define DEACTIVATE_TIMEOUT_MS 60000 /* erasing a user with much history takes Synapse a while */

static void build_deactivate(struct exec *e, json_t *a, struct built *b)
{
	(void)e;
	b->method = "POST";
	b->path = synapse_path("/_synapse/admin/v1/deactivate/%s", user_of(a));
	b->body = json_pack("{s:b}", "erase", 1);
	b->timeout_ms = DEACTIVATE_TIMEOUT_MS;
}

/* Non-public rooms answer 403 for a member; we decided from state, so this
 * only happens on a race with another writer: the goal holds. */
static int already_joined(const struct synapse_resp *resp)
{
	return resp->status == 403 && strstr(resp->error, "already in the room");
}

static int judge_200(const struct synapse_resp *resp)
{
	return resp->status == 200;
}

static int judge_join(const struct synapse_resp *resp)
{
	return resp->status == 200 || already_joined(resp);
}

static int judge_kick(const struct synapse_resp *resp)
{
	return resp->status == 200 || (resp->status == 403 && strstr(resp->error, "not in the room"));
}

static int judge_deactivate(const struct synapse_resp *resp)
{
	return resp->status == 200 || resp->status == 404; /* 404: no account, nothing to deactivate */
}

struct simple_kind {
	void (*build)(struct exec *e, json_t *a, struct built *b);
	int (*judge)(const struct synapse_resp *resp); /* 1: Synapse now has what the action wants */
};

static const struct simple_kind simple_kinds[ACTION__COUNT] = {
	[ACTION_USER_REACTIVATE] = {build_reactivate, judge_200},
	[ACTION_ROOM_JOIN] = {build_join, judge_join},
	[ACTION_ROOM_KICK] = {build_kick, judge_kick},
	[ACTION_USER_DEACTIVATE] = {build_deactivate, judge_deactivate},
};

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

		rc = path && body && synapse_request(e->ingest, "POST", path, body, resp) == 0 && resp->status == 200
			     ? 0
			     : -1;
		free(path);
		json_decref(body);
		if (rc == 0)
			return 0;
		synapse_resp_free(resp);
	}
	rc = send_one(e, "POST", "/_synapse/admin/v1/join/%s", rid, json_pack("{s:s?}", "user_id", user_of(a)), resp);
	if (rc != 0 && already_joined(resp))
		rc = 0;
	return rc;
}

/* The kinds applied one at a time (several requests each, or a second
 * client): handlers that send and judge. */
static const handler_fn handlers[ACTION__COUNT] = {
	[ACTION_STATE_SET] = apply_state_set,
	[ACTION_POWER_LEVELS_SET] = apply_power_levels,
	[ACTION_INGEST_JOIN] = apply_ingest_join,
};

int executor_has_handler(int kind)
{
	return kind >= 0 && kind < ACTION__COUNT && (handlers[kind] != NULL || simple_kinds[kind].build != NULL);
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
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s", i ? "|" : "", parts[i] ? parts[i] : "");
	/* A power-levels update is keyed by what it changes, so a new
	 * promotion is not held back by an older failing change. */
	if (planner_action_kind(a) == ACTION_POWER_LEVELS_SET) {
		json_t *what = json_pack("{s:O?, s:O?, s:O*}", "users", json_object_get(a, "users"), "events",
					 json_object_get(a, "events"), "levels", json_object_get(a, "levels"));

		change = json_dumps(what, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(what);
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "|%08lx", change ? hash_text(change) : 0UL);
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

/* ---- waves ---- */

/* Kinds whose actions are independent of each other within their run: one
 * request each, for different users (or rooms). */
static int concurrent_kind(int kind)
{
	return kind == ACTION_USER_REACTIVATE || kind == ACTION_ROOM_JOIN || kind == ACTION_ROOM_KICK ||
	       kind == ACTION_USER_DEACTIVATE;
}

struct start_key {
	size_t rank;  /* the how-manieth action of its room within the wave */
	size_t group; /* the room's number, in order of first appearance */
	size_t index; /* in the plan */
};

static int compare_start(const void *pa, const void *pb)
{
	const struct start_key *a = pa, *b = pb;

	if (a->rank != b->rank)
		return a->rank < b->rank ? -1 : 1;
	if (a->group != b->group)
		return a->group < b->group ? -1 : 1;
	return a->index < b->index ? -1 : a->index > b->index ? 1 : 0;
}

/* order[first..first+count) = the wave's plan indexes round-robin over its
 * rooms (actions without a room form one group); -ENOMEM or 0. */
static int interleave_rooms(const json_t *actions, size_t first, size_t count, size_t *order)
{
	struct start_key *keys = calloc(count ? count : 1, sizeof(*keys));
	json_t *groups = json_object(); /* room -> [group, actions so far] */
	int rc = -ENOMEM;

	if (!keys || !groups)
		goto out;
	for (size_t k = 0; k < count; k++) {
		const char *room = room_name(json_array_get(actions, first + k));
		json_t *g = json_object_get(groups, room ? room : "");

		if (!g) {
			g = json_pack("[I, I]", (json_int_t)json_object_size(groups), (json_int_t)0);
			if (!g || json_object_set_new(groups, room ? room : "", g) != 0)
				goto out;
		}
		keys[k].group = (size_t)json_integer_value(json_array_get(g, 0));
		keys[k].rank = (size_t)json_integer_value(json_array_get(g, 1));
		keys[k].index = first + k;
		json_array_set_new(g, 1, json_integer((json_int_t)keys[k].rank + 1));
	}
	qsort(keys, count, sizeof(*keys), compare_start);
	for (size_t k = 0; k < count; k++)
		order[first + k] = keys[k].index;
	rc = 0;
out:
	json_decref(groups);
	free(keys);
	return rc;
}

int executor_schedule(const json_t *actions, struct executor_schedule *out)
{
	size_t n = json_array_size(actions);
	int rc = -ENOMEM;

	memset(out, 0, sizeof(*out));
	out->n = n;
	if (n == 0)
		return 0;
	if (!(out->order = calloc(n, sizeof(*out->order))) || !(out->waves = calloc(n, sizeof(*out->waves))))
		goto fail;
	for (size_t i = 0; i < n;) {
		int kind = planner_action_kind(json_array_get(actions, i));
		struct executor_wave *w = &out->waves[out->nwaves++];
		size_t j = i + 1;

		while (j < n && planner_action_kind(json_array_get(actions, j)) == kind)
			j++;
		w->first = i;
		w->count = j - i;
		w->concurrent = concurrent_kind(kind);
		if (w->concurrent) {
			if (interleave_rooms(actions, i, j - i, out->order) != 0)
				goto fail;
		} else {
			for (size_t k = i; k < j; k++)
				out->order[k] = k;
		}
		i = j;
	}
	return 0;
fail:
	executor_schedule_free(out);
	return rc;
}

void executor_schedule_free(struct executor_schedule *sch)
{
	free(sch->waves);
	free(sch->order);
	memset(sch, 0, sizeof(*sch));
}

/* ---- outcomes ---- */

#define NO_ANSWER_LIMIT 2

/* Why the rest of the pass is abandoned, or NULL to go on. */
static const char *give_up(const struct executor_limits *lim, const struct executor_result *res)
{
	if (res->unreachable)
		return "abandoned: Synapse stopped answering; the next pass retries";
	if (lim && lim->stop && atomic_load(lim->stop))
		return "abandoned: the service is stopping";
	if (lim && lim->deadline_ms && clock_mono_ms() >= lim->deadline_ms)
		return "abandoned: the pass reached its deadline; the next pass goes on";
	return NULL;
}

static const char *kind_name(int kind)
{
	return kind >= 0 ? action_names[kind] : "unknown";
}

/* The log fields of a (log.h): its kind, user and room id (a managed
 * room's, else the one it names), outcome, and duration_ns when >= 0. */
static struct log_fields action_fields(struct exec *e, json_t *a, enum log_outcome outcome, int64_t duration_ns)
{
	const char *rid = room_id(e, a);

	return (struct log_fields){.action = kind_name(planner_action_kind(a)),
				   .user_id = user_of(a),
				   .room_id = rid ? rid : json_string_value(json_object_get(a, "room_id")),
				   .outcome = outcome,
				   .has_duration = duration_ns >= 0,
				   .duration_ns = duration_ns};
}

static void record_abandoned(struct exec *e, json_t *a, const char *why)
{
	struct log_fields lf = action_fields(e, a, LOG_UNKNOWN, -1);

	log_event(LOG_LVL_DEBUG, &lf, "reconcile: %s %s%s%s %s", lf.action, target_of(a), room_name(a) ? " in " : "",
		  room_name(a) ? room_name(a) : "", why);
	e->res->abandoned++;
	store_action_record(e->st, e->pass_id, e->now_ms, kind_name(planner_action_kind(a)), target_of(a), room_name(a),
			    "abandoned", NULL, why);
	/* not reactivated this pass: its joins must wait (they are abandoned too) */
	if (planner_action_kind(a) == ACTION_USER_REACTIVATE && user_of(a))
		json_object_set_new(e->failed_reactivations, user_of(a), json_true());
}

/* Abandons, defers or skips a when it must not be sent now: 1 then (recorded),
 * else 0 with its backoff attempts so far. */
static int held_back(struct exec *e, json_t *a, const char *key, int *attempts)
{
	int kind = planner_action_kind(a);
	const char *name = kind_name(kind), *room = room_name(a);
	const char *stop = give_up(e->lim, e->res);
	struct log_fields lf = action_fields(e, a, LOG_UNKNOWN, -1);
	int64_t next_ms = 0;

	*attempts = 0;
	if (stop) {
		record_abandoned(e, a, stop);
		return 1;
	}
	store_backoff_get(e->st, key, &next_ms, attempts);
	if (next_ms > e->now_ms) {
		e->res->deferred++;
		/* A reactivation still on backoff leaves the account
		 * deactivated: its joins must wait just as after a failure. */
		if (kind == ACTION_USER_REACTIVATE && user_of(a))
			json_object_set_new(e->failed_reactivations, user_of(a), json_true());
		store_action_record(e->st, e->pass_id, e->now_ms, name, target_of(a), room, "deferred", NULL,
				    "waiting for backoff after an earlier failure");
		log_event(LOG_LVL_DEBUG, &lf, "reconcile: %s %s%s%s deferred: waiting for backoff", name, target_of(a),
			  room ? " in " : "", room ? room : "");
		return 1;
	}
	if (kind == ACTION_ROOM_JOIN && json_object_get(e->failed_reactivations, user_of(a))) {
		/* Never force-join a deactivated account; not a failure of
		 * the join itself, so no backoff of its own. */
		e->res->deferred++;
		store_action_record(e->st, e->pass_id, e->now_ms, name, target_of(a), room, "skipped", NULL,
				    "not joined: the account was not reactivated this pass");
		log_event(LOG_LVL_DEBUG, &lf, "reconcile: %s %s%s%s skipped: the account was not reactivated", name,
			  target_of(a), room ? " in " : "", room ? room : "");
		return 1;
	}
	return 0;
}

/* Counts an outcome toward "Synapse stopped answering": NO_ANSWER_LIMIT
 * requests without an HTTP answer and no answer in between. */
static void count_answer(struct exec *e, int answered)
{
	if (answered)
		e->no_answer = 0;
	else if (++e->no_answer >= NO_ANSWER_LIMIT)
		e->res->unreachable = 1;
}

/* Records what Synapse did with a. resp.status 0 with no error text: no
 * HTTP answer (refused, reset, timed out). counted: the caller has already
 * counted the answer toward the unreachable rule. duration_ns (-1: not
 * sent) is for the log. */
static void record_result(struct exec *e, json_t *a, const char *key, int attempts, int ok,
			  const struct synapse_resp *resp, int counted, int64_t duration_ns)
{
	int kind = planner_action_kind(a);
	const char *name = kind_name(kind), *room = room_name(a);
	struct log_fields lf = action_fields(e, a, ok ? LOG_SUCCESS : LOG_FAILURE, duration_ns);
	char msg[400];

	if (ok) {
		e->res->ok++;
		if (!counted)
			count_answer(e, 1);
		store_action_record(e->st, e->pass_id, e->now_ms, name, target_of(a), room, "ok", NULL, NULL);
		if (attempts)
			store_backoff_clear(e->st, key);
		log_event(LOG_LVL_INFO, &lf, "reconcile: %s %s%s%s done", name, target_of(a), room ? " in " : "",
			  room ? room : "");
		return;
	}
	e->res->failed++;
	if (kind == ACTION_USER_REACTIVATE && user_of(a))
		json_object_set_new(e->failed_reactivations, user_of(a), json_true());
	/* No HTTP answer at all: Synapse is gone for now, and every further
	 * action would wait out its own timeout. An action that named nothing
	 * (or has no handler) says so in error and counts as an answer. */
	if (!counted)
		count_answer(e, !(resp->status == 0 && !resp->error[0] && executor_has_handler(kind)));
	/* status 0: no HTTP answer (refused, reset, timed out) or not sent at
	 * all; claim no status then. */
	if (resp->status)
		snprintf(msg, sizeof(msg), "HTTP %ld %s", resp->status, resp->error);
	else
		snprintf(msg, sizeof(msg), "%s", resp->error[0] ? resp->error : synapse_strerror(SYNAPSE_ETRANSPORT));
	store_action_record(e->st, e->pass_id, e->now_ms, name, target_of(a), room, "failed",
			    resp->errcode[0] ? resp->errcode : NULL, msg);
	store_backoff_fail(e->st, key, e->now_ms, msg);
	lf.error_code = resp->errcode[0] ? resp->errcode : NULL;
	log_event(LOG_LVL_WARN, &lf, "reconcile: %s %s%s%s failed: %s %s", name, target_of(a), room ? " in " : "",
		  room ? room : "", resp->errcode, msg);
	if (!e->res->first_error[0])
		snprintf(e->res->first_error, sizeof(e->res->first_error), "%s %s%s%s: %s %s", name, target_of(a),
			 room ? " in " : "", room ? room : "", resp->errcode, msg);
}

/* The backoff key of a, remembered for store_backoff_retain; NULL when out
 * of memory (the action is then still applied, under an empty key). */
static char *key_of(struct exec *e, json_t *a)
{
	char *key = executor_action_key(a);

	json_array_append_new(e->keys, json_string(key ? key : ""));
	return key;
}

/* ---- one action at a time ---- */

static void run_one(struct exec *e, json_t *a)
{
	int kind = planner_action_kind(a), attempts = 0, ok = 0;
	struct synapse_resp resp = {0};
	char *key = key_of(e, a);

	int64_t started;

	if (held_back(e, a, key ? key : "", &attempts))
		goto out;
	started = clock_mono_ns();
	if (kind >= 0 && kind < ACTION__COUNT && handlers[kind]) {
		ok = handlers[kind](e, a, &resp) == 0;
	} else if (kind >= 0 && kind < ACTION__COUNT && simple_kinds[kind].build) {
		struct built b = {0};

		simple_kinds[kind].build(e, a, &b);
		if (!b.path)
			snprintf(resp.error, sizeof(resp.error), "%s", NAMES_NOTHING);
		else {
			struct synapse_call c = {.method = b.method,
						 .path = b.path,
						 .body = b.body,
						 .timeout_ms = b.timeout_ms};

			synapse_request_batch(e->syn, &c, 1, 1, NULL, NULL);
			resp = c.resp;
			ok = c.rc == 0 && simple_kinds[kind].judge(&resp);
		}
		built_release(&b);
	}
	record_result(e, a, key ? key : "", attempts, ok, &resp, 0, clock_mono_ns() - started);
out:
	synapse_resp_free(&resp);
	free(key);
}

/* ---- a concurrent wave ---- */

/* EXECUTOR_WAVE_IN_FLIGHT, 8: at most this many requests of a wave in flight. Synapse serialises
 * membership changes per room (its member linearizer) and lets one
 * requester have at most 10 in progress (member_as_limiter), and a pass
 * touches at most the five managed rooms: 8, started round-robin over the
 * rooms, keeps every room's queue busy with the next request already
 * waiting behind the running one, which hides our round trip, while staying
 * under Synapse's own limit (more would only queue inside Synapse and hold
 * connections open). Reactivations and deactivations (no room lock) are
 * bounded the same way: the test homeserver has two cores and one SQLite
 * writer. */

struct wave_item {
	json_t *action;
	char *key;
	int attempts;
	int late;        /* no answer, and it came after Synapse was judged gone or the stop */
	int64_t done_ns; /* clock_mono_ns() when it finished (0: never), for the log */
	struct built b;
};

struct wave {
	struct exec *e;
	struct wave_item *items;
	struct synapse_call *calls; /* calls[i] belongs to items[i] */
};

static int stopping(const struct exec *e)
{
	return e->lim && e->lim->stop && atomic_load(e->lim->stop);
}

/* Each finished request, in the order they finish: counts toward the
 * unreachable rule and stops the wave when the pass must give up. */
static int wave_done(struct synapse_call *c, void *arg)
{
	struct wave *w = arg;
	struct exec *e = w->e;
	struct wave_item *it = &w->items[c - w->calls];

	it->done_ns = clock_mono_ns();
	if (c->rc == 0) {
		count_answer(e, 1);
	} else if (e->res->unreachable || stopping(e)) {
		it->late = 1; /* the same outage (or our own stop): not this action's failure */
	} else {
		count_answer(e, 0);
	}
	return give_up(e->lim, e->res) != NULL;
}

/* One batch of a wave: order[0..count), count <= EXECUTOR_WAVE_CHUNK. */
static void run_chunk(struct exec *e, json_t *actions, const size_t *order, size_t count)
{
	struct wave w = {.e = e, .items = calloc(count, sizeof(*w.items)), .calls = calloc(count, sizeof(*w.calls))};
	size_t n = 0;
	int64_t started;

	if (!w.items || !w.calls) {
		/* out of memory: one at a time still works */
		for (size_t k = 0; k < count; k++)
			run_one(e, json_array_get(actions, order[k]));
		goto out;
	}
	for (size_t k = 0; k < count; k++) {
		json_t *a = json_array_get(actions, order[k]);
		struct wave_item *it = &w.items[n];
		int kind = planner_action_kind(a);

		it->action = a;
		it->key = key_of(e, a);
		if (held_back(e, a, it->key ? it->key : "", &it->attempts)) {
			free(it->key);
			it->key = NULL;
			continue;
		}
		simple_kinds[kind].build(e, a, &it->b);
		if (!it->b.path) {
			struct synapse_resp resp = {0};

			snprintf(resp.error, sizeof(resp.error), "%s", NAMES_NOTHING);
			record_result(e, a, it->key ? it->key : "", it->attempts, 0, &resp, 0, -1);
			built_release(&it->b);
			free(it->key);
			it->key = NULL;
			continue;
		}
		w.calls[n] = (struct synapse_call){.method = it->b.method,
						   .path = it->b.path,
						   .body = it->b.body,
						   .timeout_ms = it->b.timeout_ms};
		n++;
	}
	started = clock_mono_ns(); /* a wave's action takes from here to its answer */
	if (n > 0 && synapse_request_batch(e->syn, w.calls, n, EXECUTOR_WAVE_IN_FLIGHT, wave_done, &w) == -ENOMEM)
		log_error("reconcile: out of memory sending a wave of %zu requests", n);
	/* Outcomes in start order (round-robin over rooms); each as it ended. */
	for (size_t i = 0; i < n; i++) {
		struct wave_item *it = &w.items[i];
		struct synapse_call *c = &w.calls[i];
		int kind = planner_action_kind(it->action);
		const char *why = give_up(e->lim, e->res);

		if (c->rc == SYNAPSE_ECANCELLED || (c->rc == SYNAPSE_ETRANSPORT && (it->late || stopping(e)))) {
			record_abandoned(e, it->action,
					 why ? why : "abandoned: the wave was stopped; the next pass retries");
		} else {
			record_result(e, it->action, it->key ? it->key : "", it->attempts,
				      c->rc == 0 && simple_kinds[kind].judge(&c->resp), &c->resp, 1,
				      it->done_ns ? it->done_ns - started : -1);
		}
		synapse_resp_free(&c->resp);
		built_release(&it->b);
		free(it->key);
	}
out:
	free(w.items);
	free(w.calls);
}

/* A wave, in chunks: the order stays (round-robin over the rooms), and a
 * chunk's actions are only built when it starts, so a pass that gives up
 * abandons the later chunks without sending them (held_back). Between
 * chunks the in-flight requests drain to none once: at 8 in flight that is
 * about one request's time per 512. */
static void run_wave(struct exec *e, json_t *actions, const size_t *order, size_t count)
{
	for (size_t first = 0; first < count; first += EXECUTOR_WAVE_CHUNK)
		run_chunk(e, actions, order + first,
			  count - first < EXECUTOR_WAVE_CHUNK ? count - first : EXECUTOR_WAVE_CHUNK);
}

int executor_apply(struct synapse *syn, struct synapse *ingest, struct store *st, const char *bot_id, json_t *rooms,
		   json_t *observed_rooms, json_t *actions, int64_t pass_id, int64_t now_ms,
		   const struct executor_limits *lim, struct executor_result *res)
{
	struct exec e = {.syn = syn,
			 .ingest = ingest,
			 .rooms = rooms,
			 .observed_rooms = observed_rooms,
			 .failed_reactivations = json_object(),
			 .bot = bot_id,
			 .st = st,
			 .pass_id = pass_id,
			 .now_ms = now_ms,
			 .lim = lim,
			 .res = res,
			 .keys = json_array()};
	struct executor_schedule sch;

	memset(res, 0, sizeof(*res));
	res->planned = (int)json_array_size(actions);
	if (executor_schedule(actions, &sch) != 0) {
		/* out of memory: every action one at a time, in plan order */
		for (size_t i = 0; i < json_array_size(actions); i++)
			run_one(&e, json_array_get(actions, i));
	}
	for (size_t w = 0; w < sch.nwaves; w++) {
		const struct executor_wave *wv = &sch.waves[w];

		if (wv->concurrent) {
			run_wave(&e, actions, sch.order + wv->first, wv->count);
		} else {
			for (size_t k = 0; k < wv->count; k++)
				run_one(&e, json_array_get(actions, sch.order[wv->first + k]));
		}
	}
	executor_schedule_free(&sch);
	/* Backoff of changes no longer wanted must not hold back later ones. */
	store_backoff_retain(st, e.keys);
	json_decref(e.keys);
	json_decref(e.failed_reactivations);
	return res->failed || res->deferred || res->abandoned ? -1 : 0;
}
