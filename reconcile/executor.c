/* executor: see executor.h. Each handler returns 0 when Synapse now has what
 * the action wants (including the answers that say so: "already in the
 * room", "not in the room", an already missing account), else -1 with the
 * reply in resp for the record. */
#include "executor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "planner.h"
#include "store.h"
#include "synapse.h"

struct exec {
	struct synapse *syn;
	json_t *rooms;
	json_t *failed_reactivations; /* user -> true: never join them this pass */
};

typedef int (*handler_fn)(struct exec *e, json_t *a, struct synapse_resp *resp);

/* Builds a path from fmt where each %s is replaced by the escaped argument. */
static char *build_path(const char *fmt, const char *a1, const char *a2, const char *a3)
{
	char *e1 = a1 ? synapse_escape(a1) : NULL, *e2 = a2 ? synapse_escape(a2) : NULL;
	char *e3 = a3 ? synapse_escape(a3) : NULL, *out = NULL;
	size_t n = strlen(fmt) + (e1 ? strlen(e1) : 0) + (e2 ? strlen(e2) : 0) + (e3 ? strlen(e3) : 0) + 1;

	out = malloc(n);
	if (out)
		snprintf(out, n, fmt, e1 ? e1 : "", e2 ? e2 : "", e3 ? e3 : "");
	free(e1);
	free(e2);
	free(e3);
	return out;
}

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
	char *path = build_path("/_matrix/client/v3/rooms/%s/state/%s/%s", room_id(e, a),
				json_string_value(json_object_get(a, "event_type")),
				json_string_value(json_object_get(a, "state_key")));
	int rc = call(e, "PUT", path, json_object_get(a, "content"), resp);

	free(path);
	return rc;
}

static int apply_power_levels(struct exec *e, json_t *a, struct synapse_resp *resp)
{
	char *path = build_path("/_matrix/client/v3/rooms/%s/state/m.room.power_levels/", room_id(e, a), NULL, NULL);
	json_t *content, *users, *events, *v;
	const char *key;
	int rc = -1;

	if (call(e, "GET", path, NULL, resp) != 0 || !json_is_object(resp->body))
		goto out;
	content = json_incref(resp->body);
	synapse_resp_free(resp);
	if (!json_is_object(users = json_object_get(content, "users")))
		json_object_set_new(content, "users", users = json_object());
	if (!json_is_object(events = json_object_get(content, "events")))
		json_object_set_new(content, "events", events = json_object());
	json_object_foreach(json_object_get(a, "users"), key, v) {
		if (json_is_null(v))
			json_object_del(users, key);
		else
			json_object_set(users, key, v);
	}
	json_object_update(events, json_object_get(a, "events"));
	rc = call(e, "PUT", path, content, resp);
	json_decref(content);
out:
	free(path);
	return rc;
}

static int apply_reactivate(struct exec *e, json_t *a, struct synapse_resp *resp)
{
	char *path = build_path("/_synapse/admin/v2/users/%s", user_of(a), NULL, NULL);
	json_t *body = json_pack("{s:b}", "deactivated", 0);
	int rc = call(e, "PUT", path, body, resp);

	if (rc != 0)
		json_object_set_new(e->failed_reactivations, user_of(a), json_true());
	json_decref(body);
	free(path);
	return rc;
}

static int apply_join(struct exec *e, json_t *a, struct synapse_resp *resp)
{
	char *path;
	json_t *body;
	int rc;

	path = build_path("/_synapse/admin/v1/join/%s", room_id(e, a), NULL, NULL);
	body = json_pack("{s:s}", "user_id", user_of(a));
	rc = call(e, "POST", path, body, resp);
	/* Non-public rooms answer 403 for a member; we decided from state, so
	 * this only happens on a race with another writer: the goal holds. */
	if (rc != 0 && resp->status == 403 && strstr(resp->error, "already in the room"))
		rc = 0;
	json_decref(body);
	free(path);
	return rc;
}

static int apply_kick(struct exec *e, json_t *a, struct synapse_resp *resp)
{
	char *path = build_path("/_matrix/client/v3/rooms/%s/kick", room_id(e, a), NULL, NULL);
	json_t *body = json_pack("{s:s, s:s}", "user_id", user_of(a), "reason", "not an administrator");
	int rc = call(e, "POST", path, body, resp);

	if (rc != 0 && resp->status == 403 && strstr(resp->error, "not in the room"))
		rc = 0;
	json_decref(body);
	free(path);
	return rc;
}

static int apply_deactivate(struct exec *e, json_t *a, struct synapse_resp *resp)
{
	char *path = build_path("/_synapse/admin/v1/deactivate/%s", user_of(a), NULL, NULL);
	json_t *body = json_pack("{s:b}", "erase", 1);
	int rc = call(e, "POST", path, body, resp);

	if (rc != 0 && resp->status == 404)
		rc = 0; /* no account: nothing to deactivate */
	json_decref(body);
	free(path);
	return rc;
}

static const handler_fn handlers[ACTION__COUNT] = {
	[ACTION_STATE_SET] = apply_state_set,
	[ACTION_POWER_LEVELS_SET] = apply_power_levels,
	[ACTION_USER_REACTIVATE] = apply_reactivate,
	[ACTION_ROOM_JOIN] = apply_join,
	[ACTION_ROOM_KICK] = apply_kick,
	[ACTION_USER_DEACTIVATE] = apply_deactivate,
};

int executor_has_handler(int kind)
{
	return kind >= 0 && kind < ACTION__COUNT && handlers[kind] != NULL;
}

char *executor_action_key(json_t *a)
{
	const char *parts[] = {json_string_value(json_object_get(a, "kind")),
			       json_string_value(json_object_get(a, "room")), user_of(a),
			       json_string_value(json_object_get(a, "event_type")),
			       json_string_value(json_object_get(a, "state_key"))};
	char buf[1024] = "";

	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s", i ? "|" : "",
			 parts[i] ? parts[i] : "");
	return strdup(buf);
}

static const char *target_of(json_t *a)
{
	const char *u = user_of(a);

	return u ? u : json_string_value(json_object_get(a, "event_type"));
}

int executor_apply(struct synapse *syn, struct store *st, json_t *rooms, json_t *actions,
		   int64_t pass_id, int64_t now_ms, struct executor_result *res)
{
	struct exec e = {.syn = syn, .rooms = rooms, .failed_reactivations = json_object()};
	json_t *a;
	size_t i;

	memset(res, 0, sizeof(*res));
	res->planned = (int)json_array_size(actions);
	json_array_foreach(actions, i, a) {
		int kind = planner_action_kind(a);
		const char *name = kind >= 0 ? planner_action_names[kind] : "unknown";
		const char *room = json_string_value(json_object_get(a, "room"));
		struct synapse_resp resp = {0};
		char *key = executor_action_key(a);
		int64_t next_ms = 0;
		int attempts = 0;

		store_backoff_get(st, key, &next_ms, &attempts);
		if (next_ms > now_ms) {
			res->deferred++;
			/* A reactivation still on backoff leaves the account
			 * deactivated: its joins must wait just as after a failure. */
			if (kind == ACTION_USER_REACTIVATE && user_of(a))
				json_object_set_new(e.failed_reactivations, user_of(a), json_true());
			store_action_record(st, pass_id, now_ms, name, target_of(a), room,
					    "deferred", NULL, "waiting for backoff after an earlier failure");
		} else if (kind == ACTION_ROOM_JOIN && json_object_get(e.failed_reactivations, user_of(a))) {
			/* Never force-join a deactivated account; not a failure of
			 * the join itself, so no backoff of its own. */
			res->deferred++;
			store_action_record(st, pass_id, now_ms, name, target_of(a), room, "skipped", NULL,
					    "not joined: the account was not reactivated this pass");
		} else if (executor_has_handler(kind) && handlers[kind](&e, a, &resp) == 0) {
			res->ok++;
			store_action_record(st, pass_id, now_ms, name, target_of(a), room, "ok", NULL, NULL);
			if (attempts)
				store_backoff_clear(st, key);
			log_info("reconcile: %s %s%s%s done", name, target_of(a),
				 room ? " in " : "", room ? room : "");
		} else {
			char msg[400];

			res->failed++;
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
			log_warnx("reconcile: %s %s%s%s failed: %s %s", name, target_of(a),
				  room ? " in " : "", room ? room : "", resp.errcode, msg);
			if (!res->first_error[0])
				snprintf(res->first_error, sizeof(res->first_error), "%s %s%s%s: %s %s", name,
					 target_of(a), room ? " in " : "", room ? room : "", resp.errcode, msg);
		}
		synapse_resp_free(&resp);
		free(key);
	}
	json_decref(e.failed_reactivations);
	return res->failed || res->deferred ? -1 : 0;
}
