/* observe: see observe.h. */
#include "observe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bootstrap.h"
#include "log.h"
#include "planner.h"
#include "roomspec.h"
#include "roomstate.h"
#include "store.h"
#include "synapse.h"

#define USERS_PAGE 500
#define USERS_MAX_PAGES 10000 /* five million accounts */

static const struct errtext observe_errors[] = {
	{OBSERVE_ENOANSWER, "Synapse did not answer"},
	{OBSERVE_EHTTP, "Synapse refused a read"},
	{OBSERVE_ESHAPE, "Synapse's answer is not what was asked for"},
	{OBSERVE_ENOMEM, "out of memory observing Synapse"},
	{OBSERVE_ESTORE, "the observations could not be recorded"},
};

const char *observe_strerror(int code)
{
	return ERRTEXT_LOOKUP(observe_errors, code);
}

/* 0 when the GET of path (rc, r) got a 200 (with a JSON body if need_body),
 * else OBSERVE_ENOANSWER or OBSERVE_EHTTP with err; a 401 notes a rejected
 * token. */
static int answered(struct bootstrap *boot, int rc, const struct synapse_resp *r, int need_body, const char *path,
		    char *err, size_t errlen)
{
	if (rc != 0) {
		snprintf(err, errlen, "observe: no answer from Synapse for %s", path);
		return OBSERVE_ENOANSWER;
	}
	if (r->status != 200 || (need_body && !r->body)) {
		if (r->status == 401)
			bootstrap_token_rejected(boot);
		snprintf(err, errlen, "observe: HTTP %ld %s for %s", r->status, r->errcode, path);
		return OBSERVE_EHTTP;
	}
	return 0;
}

/* GET path into *body (caller owns) when 200. Notes a rejected token. */
static int get_json(struct synapse *syn, struct bootstrap *boot, const char *path, json_t **body, char *err,
		    size_t errlen)
{
	struct synapse_resp r = {0};
	int rc = answered(boot, synapse_request(syn, "GET", path, NULL, &r), &r, 1, path, err, errlen);

	*body = rc == 0 ? json_incref(r.body) : NULL;
	synapse_resp_free(&r);
	return rc;
}

/* The sink of one room's state answer: its bytes into the parser. */
static int feed_parser(void *arg, const char *buf, size_t len)
{
	return roomstate_parser_feed(arg, buf, len);
}

/* GET one managed room's state, parsed as it arrives into its compact parts
 * (roomstate.h); 0, or an OBSERVE_E* code with err. */
static int get_room_state(struct synapse *syn, struct bootstrap *boot, const char *key, const char *room_id,
			  json_t **events, json_t **members, char *err, size_t errlen)
{
	char *path = synapse_path("/_synapse/admin/v1/rooms/%s/state", room_id);
	struct roomstate_parser *p = NULL;
	struct synapse_resp r = {0};
	int rc = OBSERVE_ENOMEM, prc;

	*events = *members = NULL;
	if (!path) {
		snprintf(err, errlen, "observe: room %s has no usable id", key);
		return OBSERVE_ESHAPE;
	}
	if (roomstate_parser_new(&p) != 0) {
		snprintf(err, errlen, "observe: out of memory for the state of room %s", key);
		goto out;
	}
	struct synapse_sink sink = {.data = feed_parser, .arg = p};

	if ((rc = answered(boot, synapse_get_stream(syn, path, &sink, &r), &r, 0, path, err, errlen)) != 0)
		goto out;
	if ((prc = roomstate_parser_finish(p, events, members)) != 0) {
		snprintf(err, errlen, "observe: room %s: %s", key, roomstate_strerror(prc));
		rc = OBSERVE_ESHAPE;
	}
out:
	roomstate_parser_free(p);
	synapse_resp_free(&r);
	free(path);
	return rc;
}

int observe_synapse(struct synapse *syn, struct bootstrap *boot, json_t *rooms, json_t *desired, json_t **observed,
		    char *err, size_t errlen)
{
	json_t *users = json_object(), *states = json_object(), *all_members = json_object(), *managed = json_object();
	json_t *u, *page = NULL;
	char path[1024];
	long long from = 0;
	const char *key;
	json_t *id;
	size_t i;
	int rc = OBSERVE_ENOMEM;

	json_array_foreach(desired, i, u)
		json_object_set_new(managed, json_string_value(json_object_get(u, "user")), json_true());
	/* Pages until Synapse stops giving a next_token; a token that does not
	 * move forward, or an absurd number of pages, ends the pass with an
	 * error instead of looping. locked=true: Synapse leaves locked
	 * accounts out by default, and they are still accounts to manage. */
	for (int pages = 0;; pages++) {
		long long next;

		snprintf(path, sizeof(path),
			 "/_synapse/admin/v2/users?from=%lld&limit=%d&guests=false&deactivated=true&locked=true", from,
			 USERS_PAGE);
		if ((rc = get_json(syn, boot, path, &page, err, errlen)) != 0)
			goto out;
		if (!json_is_array(json_object_get(page, "users"))) {
			snprintf(err, errlen, "observe: the user list has no \"users\" array");
			rc = OBSERVE_ESHAPE;
			goto out;
		}
		json_array_foreach(json_object_get(page, "users"), i, u) {
			const char *name = json_string_value(json_object_get(u, "name"));

			if (name && (!desired || json_object_get(managed, name)))
				json_object_set(users, name,
						json_is_true(json_object_get(u, "deactivated")) ? json_true()
												: json_false());
		}
		id = json_object_get(page, "next_token");
		if (!id || json_is_null(id) || json_array_size(json_object_get(page, "users")) == 0)
			break;
		next = json_is_string(id)    ? strtoll(json_string_value(id), NULL, 10)
		       : json_is_integer(id) ? json_integer_value(id)
					     : -1;
		if (next <= from) {
			snprintf(err, errlen,
				 "observe: the user list's next_token does not advance (from %lld, next %lld)", from,
				 next);
			rc = OBSERVE_ESHAPE;
			goto out;
		}
		if (pages >= USERS_MAX_PAGES) {
			snprintf(err, errlen, "observe: the user list goes on past %d pages", USERS_MAX_PAGES);
			rc = OBSERVE_ESHAPE;
			goto out;
		}
		from = next;
		json_decref(page);
		page = NULL;
	}
	json_object_foreach(rooms, key, id) {
		json_t *events, *members;

		if ((rc = get_room_state(syn, boot, key, json_string_value(id), &events, &members, err, errlen)) != 0)
			goto out;
		json_object_set_new(states, key, events);
		json_object_set_new(all_members, key, members);
	}
	*observed = json_pack("{s:O, s:O, s:O}", "users", users, "rooms", states, "members", all_members);
	rc = *observed ? 0 : OBSERVE_ENOMEM;
	if (rc != 0)
		snprintf(err, errlen, "observe: out of memory");
out:
	json_decref(page);
	json_decref(users);
	json_decref(states);
	json_decref(all_members);
	json_decref(managed);
	return rc;
}

int observe_children(struct synapse *syn, struct bootstrap *boot, json_t *rooms, json_t *observed, char *err,
		     size_t errlen)
{
	json_t *space = json_object_get(json_object_get(observed, "rooms"), roomspec_rooms[ROOM_SPACE].key);
	json_t *children = json_object(), *ev;
	size_t i;

	if (!children) {
		snprintf(err, errlen, "observe: out of memory for the space's children");
		return OBSERVE_ENOMEM;
	}
	json_array_foreach(space, i, ev) {
		const char *type = json_string_value(json_object_get(ev, "type"));
		const char *child = json_string_value(json_object_get(ev, "state_key"));
		json_t *via = json_object_get(json_object_get(ev, "content"), "via"), *st = NULL;
		char *path;

		if (!type || strcmp(type, "m.space.child") != 0 || !child || !json_is_array(via) ||
		    json_array_size(via) == 0 || roomspec_is_managed_id(rooms, child))
			continue;
		path = synapse_path("/_synapse/admin/v1/rooms/%s/state", child);
		/* A child we cannot read (a remote room, one being deleted) is
		 * left out: it must not hold back the others. */
		if (path && get_json(syn, boot, path, &st, err, errlen) == 0 &&
		    json_is_array(json_object_get(st, "state")))
			json_object_set(children, child, json_object_get(st, "state"));
		else
			log_debug("observe: space child %s not read: %s", child, err);
		err[0] = '\0';
		json_decref(st);
		free(path);
	}
	json_object_set_new(observed, "children", children);
	return 0;
}

/* Per room, its members and its power-level entries, read from the room's
 * state once (not once per user). */
struct room_view {
	json_t *members; /* roomstate_members_of (owned) */
	json_t *levels;  /* user -> level: the power-levels event's users (borrowed) */
};

static int room_view_build(json_t *observed, const char *key, struct room_view *v)
{
	json_t *state = json_object_get(json_object_get(observed, "rooms"), key), *ev;
	size_t k;

	v->levels = NULL;
	if (!(v->members = roomstate_members_of(observed, key)))
		return -1;
	json_array_foreach(state, k, ev) {
		const char *type = json_string_value(json_object_get(ev, "type"));
		json_t *c = json_object_get(ev, "content");

		if (type && strcmp(type, "m.room.power_levels") == 0 && json_is_object(json_object_get(c, "users")))
			v->levels = json_object_get(c, "users");
	}
	return 0;
}

static int room_view_joined(const struct room_view *v, const char *user)
{
	struct roomstate_member m;

	return roomstate_member_get(v->members, user, &m) && strcmp(m.membership, "join") == 0;
}

/* user -> number of planned actions naming them (as "user" or in "users"). */
static json_t *pending_by_user(json_t *plan)
{
	json_t *count = json_object(), *a, *v;
	const char *key;
	size_t j;

	if (!count)
		return NULL;
	json_array_foreach(plan, j, a) {
		const char *au = json_string_value(json_object_get(a, "user"));

		if (au)
			json_object_set_new(count, au,
					    json_integer(json_integer_value(json_object_get(count, au)) + 1));
		json_object_foreach(json_object_get(a, "users"), key, v)
			if (!au || strcmp(key, au) != 0)
				json_object_set_new(count, key,
						    json_integer(json_integer_value(json_object_get(count, key)) + 1));
	}
	return count;
}

/* observe_record's rows, made one at a time as the store asks for them. */
struct record_rows {
	json_t *desired, *users, *pending;
	struct room_view *views;
	size_t next;
};

static int next_record_row(void *arg, json_t **row)
{
	struct record_rows *rr = arg;

	while (rr->next < json_array_size(rr->desired)) {
		const char *id = json_string_value(json_object_get(json_array_get(rr->desired, rr->next++), "user"));
		int acct = planner_account(rr->users, id);
		json_t *joined, *levels;

		if (!id)
			continue;
		joined = json_array();
		levels = json_object();
		for (int r = 0; r < ROOM__COUNT; r++) {
			json_t *level = json_object_get(rr->views[r].levels, id);

			if (room_view_joined(&rr->views[r], id))
				json_array_append_new(joined, json_string(roomspec_rooms[r].key));
			if (level)
				json_object_set(levels, roomspec_rooms[r].key, level);
		}
		*row = json_pack("{s:s, s:s, s:o, s:o, s:i}", "user", id, "account",
				 acct == 0   ? "none"
				 : acct == 2 ? "deactivated"
					     : "active",
				 "joined", joined, "levels", levels, "pending",
				 (int)json_integer_value(json_object_get(rr->pending, id)));
		return *row ? 1 : -1;
	}
	return 0;
}

int observe_record(struct store *st, json_t *desired, json_t *observed, json_t *plan, int64_t now)
{
	struct room_view views[ROOM__COUNT] = {{NULL, NULL}};
	struct record_rows rr = {desired, json_object_get(observed, "users"), pending_by_user(plan), views, 0};
	int rc = OBSERVE_ENOMEM;

	if (!rr.pending)
		goto out;
	for (int r = 0; r < ROOM__COUNT; r++)
		if (room_view_build(observed, roomspec_rooms[r].key, &views[r]) != 0)
			goto out;
	rc = store_observed_record_each(st, now, next_record_row, &rr) == 0 ? 0 : OBSERVE_ESTORE;
	if (rc == 0) {
		json_t *input = json_pack("{s:O}", "observed", observed);
		json_t *held = input ? planner_held_settings(input) : NULL;

		rc = !held ? OBSERVE_ENOMEM : store_held_record(st, held) == 0 ? 0 : OBSERVE_ESTORE;
		json_decref(held);
		json_decref(input);
	}
out:
	for (int r = 0; r < ROOM__COUNT; r++)
		json_decref(views[r].members);
	json_decref(rr.pending);
	return rc;
}
