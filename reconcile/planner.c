/* planner: see planner.h. Rules, in the order they are applied per room:
 *  1. room state (name, topic, join rules, guest access forbidden,
 *     encryption, history visibility, space children, and the space as the
 *     canonical parent of each room) is written only where it differs;
 *  2. one power_levels.set per room collects every level change: bot at 200,
 *     event levels from roomspec, invite (and state_default in the space)
 *     from roomspec where the room still has Synapse's preset value (another
 *     value was set by hand: kept, see planner_held_settings), admins at 100
 *     in every room, entries above 0 of managed non-admins and every entry of
 *     revoked users removed;
 *  3. memberships: active users with an account are joined to public rooms
 *     unless they left on their own after their latest /created, or were
 *     kicked by someone other than the bot after the latest callback about
 *     them (a room moderator's kick sticks until Rasenmaeher next speaks of
 *     the user); a ban is never undone; the admin room is exact (admins
 *     joined, managed non-admins kicked); revoked accounts are deactivated,
 *     deactivated accounts of active users reactivated. Unmanaged users are
 *     never touched.
 * A user's admin status is admin, not admin, or unknown ("admin": null, never
 * promoted nor demoted since the store has known them): for an active user
 * with unknown status rule 2 leaves their entries and rule 3 their admin-room
 * membership as Synapse has them; joins, removal of a revoked user's entries
 * and deactivation apply as for everyone.
 * The interop ingest bot, when the input names one, is joined to every
 * managed room and every other child of the space it is not in (a ban is
 * respected); it is never given levels, kicked or deactivated. */
#include "planner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roomspec.h"
#include "roomstate.h"

#define ADMIN_LEVEL 100
#define BOT_LEVEL 200

int planner_action_kind(const json_t *action)
{
	return action_kind_of(json_string_value(json_object_get(action, "kind")));
}

struct plan_ctx {
	const char *deployment, *domain, *bot;
	json_t *rooms;                /* key -> room id */
	json_t *desired;              /* array */
	json_t *accounts;             /* observed "users", borrowed from the input */
	json_t *reactivating;         /* id -> true: deactivated accounts of active users */
	json_t *observed;             /* key -> state index (state_index) */
	json_t *raw;                  /* key -> state array, as observed */
	json_t *children;             /* room id -> state array (other children of the space) */
	json_t *members[ROOM__COUNT]; /* each managed room's members (roomstate.h), owned */
	const char *ingest;           /* the ingest bot, or NULL */
	json_t *actions;              /* output */
};

/* The index key of (type, state_key): the type's length first, so that no
 * two pairs share a key whatever characters they hold. */
static char *state_key_of(const char *type, const char *state_key)
{
	size_t lt = strlen(type), lk = strlen(state_key);
	char *key = malloc(lt + lk + 24);

	if (key)
		snprintf(key, lt + lk + 24, "%zu:%s%s", lt, type, state_key);
	return key;
}

/* One room's state array as an object from state_key_of() to the event,
 * built once per pass so that each lookup is a hash lookup, not a scan (the
 * first event wins, as a scan would find it). NULL when out of memory. */
static json_t *state_index(json_t *state)
{
	json_t *index = json_object(), *ev;
	size_t i;

	if (!index)
		return NULL;
	json_array_foreach(state, i, ev) {
		const char *t = json_string_value(json_object_get(ev, "type"));
		const char *k = json_string_value(json_object_get(ev, "state_key"));
		char *key;

		if (!t || !k)
			continue;
		if (!(key = state_key_of(t, k))) {
			json_decref(index);
			return NULL;
		}
		if (!json_object_get(index, key))
			json_object_set(index, key, ev);
		free(key);
	}
	return index;
}

/* State event (type, state_key) from a state_index, or NULL. */
static json_t *state_get(json_t *index, const char *type, const char *state_key)
{
	char *key = state_key_of(type, state_key);
	json_t *ev = key ? json_object_get(index, key) : NULL;

	free(key);
	return ev;
}

static json_t *content_of(json_t *state, const char *type, const char *state_key)
{
	return json_object_get(state_get(state, type, state_key), "content");
}

static void add_action(struct plan_ctx *c, int kind, int room, const char *user)
{
	json_t *a = json_pack("{s:s}", "kind", action_names[kind]);

	if (room >= 0)
		json_object_set_new(a, "room", json_string(roomspec_rooms[room].key));
	if (user)
		json_object_set_new(a, "user", json_string(user));
	json_array_append_new(c->actions, a);
}

static void add_state(struct plan_ctx *c, int room, const char *type, const char *state_key,
		      json_t *content /* stolen */)
{
	json_t *a = json_pack("{s:s, s:s, s:s, s:s, s:o}", "kind", action_names[ACTION_STATE_SET], "room",
			      roomspec_rooms[room].key, "event_type", type, "state_key", state_key, "content", content);

	json_array_append_new(c->actions, a);
}

/* Writes content under key unless the room's current value equals it. */
static void want_field(struct plan_ctx *c, int room, json_t *state, const char *type, const char *field,
		       const char *value)
{
	json_t *have = json_object_get(content_of(state, type, ""), field);

	if (!json_is_string(have) || strcmp(json_string_value(have), value) != 0)
		add_state(c, room, type, "", json_pack("{s:s}", field, value));
}

/* 1 when an m.space.parent content names the space canonical, via domain. */
static int is_parent(json_t *content, const char *domain)
{
	json_t *v;
	size_t i;
	int via = 0;

	json_array_foreach(json_object_get(content, "via"), i, v)
		via |= json_is_string(v) && strcmp(json_string_value(v), domain) == 0;
	return via && json_is_true(json_object_get(content, "canonical"));
}

static void plan_room_state(struct plan_ctx *c, int room, json_t *state)
{
	const struct room_def *def = &roomspec_rooms[room];
	const char *space_id = json_string_value(json_object_get(c->rooms, "space"));
	json_t *rules, *have;

	want_field(c, room, state, "m.room.name", "name", roomspec_name(room, c->deployment));
	if (def->topic)
		want_field(c, room, state, "m.room.topic", "topic", def->topic);
	if (!def->restricted || space_id) {
		rules = roomspec_join_rules(room, space_id);
		have = content_of(state, "m.room.join_rules", "");
		if (!have || !json_equal(json_object_get(have, "join_rule"), json_object_get(rules, "join_rule")) ||
		    (def->restricted && !json_equal(json_object_get(have, "allow"), json_object_get(rules, "allow"))))
			add_state(c, room, "m.room.join_rules", "", rules);
		else
			json_decref(rules);
	}
	want_field(c, room, state, "m.room.guest_access", "guest_access", "forbidden");
	if (!def->is_space) {
		want_field(c, room, state, "m.room.encryption", "algorithm", "m.megolm.v1.aes-sha2");
		want_field(c, room, state, "m.room.history_visibility", "history_visibility", "joined");
		if (space_id && !is_parent(content_of(state, "m.space.parent", space_id), c->domain))
			add_state(c, room, "m.space.parent", space_id, roomspec_space_parent(c->domain));
		return;
	}
	for (int r = 0; r < ROOM__COUNT; r++) {
		const char *child = json_string_value(json_object_get(c->rooms, roomspec_rooms[r].key));
		json_t *via, *v;
		size_t i;
		int found = 0;

		if (r == room || !child)
			continue;
		via = json_object_get(content_of(state, "m.space.child", child), "via");
		json_array_foreach(via, i, v)
			found |= json_is_string(v) && strcmp(json_string_value(v), c->domain) == 0;
		if (!found)
			add_state(c, room, "m.space.child", child, json_pack("{s:[s]}", "via", c->domain));
	}
}

static int desired_flag(json_t *u, const char *key)
{
	json_t *v = json_object_get(u, key);

	return json_is_true(v) || (json_is_integer(v) && json_integer_value(v) != 0);
}

enum admin_status { ADMIN_UNKNOWN = -1, ADMIN_NO = 0, ADMIN_YES = 1 };

/* null (or a missing key) is unknown; true or a non-zero integer is admin. */
static enum admin_status admin_of(json_t *u)
{
	json_t *v = json_object_get(u, "admin");

	if (!v || json_is_null(v))
		return ADMIN_UNKNOWN;
	return desired_flag(u, "admin") ? ADMIN_YES : ADMIN_NO;
}

/* Room versions where creators have unlimited power and must not be listed
 * in m.room.power_levels users (MSC4289). */
static int bot_is_unlimited_creator(struct plan_ctx *c, json_t *state)
{
	json_t *create = state_get(state, "m.room.create", "");
	const char *version = json_string_value(json_object_get(json_object_get(create, "content"), "room_version"));
	const char *sender = json_string_value(json_object_get(create, "sender"));
	json_t *extra = json_object_get(json_object_get(create, "content"), "additional_creators"), *v;
	size_t i;
	int creator = sender && strcmp(sender, c->bot) == 0;

	if (!version || (strcmp(version, "12") != 0 && strcmp(version, "org.matrix.hydra.11") != 0))
		return 0;
	json_array_foreach(extra, i, v)
		creator |= json_is_string(v) && strcmp(json_string_value(v), c->bot) == 0;
	return creator;
}

/* Account state: 0 none, 1 active, 2 deactivated. */
int planner_account(const json_t *users, const char *id)
{
	const json_t *acct = id ? json_object_get(users, id) : NULL;

	if (!acct)
		return 0;
	if (json_is_object(acct))
		acct = json_object_get(acct, "deactivated");
	return json_is_true(acct) ? 2 : 1;
}

static int account_of(struct plan_ctx *c, const char *user)
{
	if (json_object_get(c->reactivating, user))
		return 1; /* assumed reactivated by this plan */
	return planner_account(c->accounts, user);
}

static void plan_power_levels(struct plan_ctx *c, int room, json_t *state)
{
	const struct room_def *def = &roomspec_rooms[room];
	json_t *pl = content_of(state, "m.room.power_levels", "");
	json_t *have_users = json_object_get(pl, "users"), *have_events = json_object_get(pl, "events");
	json_t *users = json_object(), *events = json_object(), *fields = json_object(), *overrides, *defaults, *v, *u;
	struct roomspec_level levels[ROOMSPEC_LEVELS_MAX];
	int nlevels = roomspec_levels(room, levels);
	const char *key;
	size_t i;

	for (int l = 0; l < nlevels; l++) {
		json_t *have = json_object_get(pl, levels[l].key);

		if (!have || (json_is_integer(have) && json_integer_value(have) == levels[l].preset))
			json_object_set_new(fields, levels[l].key, json_integer(levels[l].want));
	}
	roomspec_event_levels(room, &overrides, &defaults);
	json_object_foreach(overrides, key, v)
		if (!json_equal(json_object_get(have_events, key), v))
			json_object_set(events, key, v);
	json_object_foreach(defaults, key, v)
		if (!json_object_get(have_events, key))
			json_object_set(events, key, v);
	json_decref(overrides);
	json_decref(defaults);

	if (!bot_is_unlimited_creator(c, state) && json_integer_value(json_object_get(have_users, c->bot)) != BOT_LEVEL)
		json_object_set_new(users, c->bot, json_integer(BOT_LEVEL));
	json_array_foreach(c->desired, i, u) {
		const char *id = json_string_value(json_object_get(u, "user"));
		json_t *have = json_object_get(have_users, id);
		int active = desired_flag(u, "active");
		enum admin_status admin = admin_of(u);

		if (!id || strcmp(id, c->bot) == 0)
			continue;
		if (active && admin == ADMIN_YES) {
			if (json_integer_value(have) != ADMIN_LEVEL || !json_is_integer(have))
				json_object_set_new(users, id, json_integer(ADMIN_LEVEL));
		} else if (!active) {
			if (have)
				json_object_set_new(users, id, json_null());
		} else if (admin == ADMIN_NO && have && json_integer_value(have) > 0) {
			json_object_set_new(users, id, json_null());
		}
	}
	if (json_object_size(users) || json_object_size(events) || json_object_size(fields)) {
		json_t *a = json_pack("{s:s, s:s, s:o, s:o}", "kind", action_names[ACTION_POWER_LEVELS_SET], "room",
				      def->key, "users", users, "events", events);

		if (json_object_size(fields))
			json_object_set(a, "levels", fields);
		json_array_append_new(c->actions, a);
	} else {
		json_decref(users);
		json_decref(events);
	}
	json_decref(fields);
}

/* A leave the user made themselves after their latest /created is
 * respected; so is a kick by anyone but the bot (a room moderator) after the
 * latest callback about the user (changed_ms; created_ms when the input has
 * none): the next callback joins them again. */
static int leave_respected(const struct plan_ctx *c, const struct roomstate_member *m, const char *user, json_t *u)
{
	json_int_t created_ms = json_integer_value(json_object_get(u, "created_ms"));
	json_t *changed = json_object_get(u, "changed_ms");
	json_int_t changed_ms = json_is_integer(changed) ? json_integer_value(changed) : created_ms;

	if (!m->sender)
		return 0;
	if (strcmp(m->sender, user) == 0)
		return m->ts > created_ms;
	return strcmp(m->sender, c->bot) != 0 && m->ts > changed_ms;
}

/* The user's membership of managed room r, or NULL. */
static const char *membership_in(const struct plan_ctx *c, int room, const char *user, struct roomstate_member *m)
{
	roomstate_member_get(c->members[room], user, m);
	return m->membership[0] ? m->membership : NULL;
}

static void plan_memberships(struct plan_ctx *c, int room, json_t *state)
{
	const struct room_def *def = &roomspec_rooms[room];
	json_t *u;
	size_t i;

	json_array_foreach(c->desired, i, u) {
		const char *id = json_string_value(json_object_get(u, "user"));
		int active = desired_flag(u, "active");
		enum admin_status admin = admin_of(u);
		struct roomstate_member mem;
		const char *m;
		int joined, invited;

		/* No account yet, or one still deactivated: nothing to join. */
		if (!id || strcmp(id, c->bot) == 0 || account_of(c, id) != 1 || !active)
			continue;
		m = membership_in(c, room, id, &mem);
		joined = m && strcmp(m, "join") == 0;
		invited = m && strcmp(m, "invite") == 0;
		if (m && strcmp(m, "ban") == 0)
			continue; /* a moderator's ban is not ours to undo */
		if (def->is_public) {
			/* Deactivation parts the user in their own name: those leaves
			 * of an account being reactivated are not voluntary. */
			if (!joined && !(m && strcmp(m, "leave") == 0 && !json_object_get(c->reactivating, id) &&
					 leave_respected(c, &mem, id, u)))
				add_action(c, ACTION_ROOM_JOIN, room, id);
		} else if (admin == ADMIN_YES && !joined) {
			add_action(c, ACTION_ROOM_JOIN, room, id);
		} else if (admin == ADMIN_NO && (joined || invited) && account_of(c, id) == 1) {
			add_action(c, ACTION_ROOM_KICK, room, id);
		}
	}
}

static int needs_join(const char *m)
{
	return !m || (strcmp(m, "join") != 0 && strcmp(m, "ban") != 0);
}

static void add_ingest_join(struct plan_ctx *c, int room, const char *room_id)
{
	json_t *a = json_pack("{s:s, s:s, s:s}", "kind", action_names[ACTION_INGEST_JOIN], "room_id", room_id, "user",
			      c->ingest);

	if (room >= 0)
		json_object_set_new(a, "room", json_string(roomspec_rooms[room].key));
	json_array_append_new(c->actions, a);
}

/* The ingest bot: every managed room, then every other child of the space
 * (a child whose m.space.child content has no via is removed). */
static void plan_ingest(struct plan_ctx *c)
{
	json_t *space = json_object_get(c->raw, roomspec_rooms[ROOM_SPACE].key), *ev;
	size_t i;

	for (int r = 0; r < ROOM__COUNT; r++) {
		json_t *state = json_object_get(c->observed, roomspec_rooms[r].key);
		const char *id = json_string_value(json_object_get(c->rooms, roomspec_rooms[r].key));
		struct roomstate_member m;

		if (id && state && needs_join(membership_in(c, r, c->ingest, &m)))
			add_ingest_join(c, r, id);
	}
	json_array_foreach(space, i, ev) {
		const char *type = json_string_value(json_object_get(ev, "type"));
		const char *child = json_string_value(json_object_get(ev, "state_key"));
		json_t *via = json_object_get(json_object_get(ev, "content"), "via");
		json_t *state, *index;

		if (!type || strcmp(type, "m.space.child") != 0 || !child || !json_is_array(via) ||
		    json_array_size(via) == 0 || roomspec_is_managed_id(c->rooms, child))
			continue;
		state = json_object_get(c->children, child);
		if (!json_is_array(state) || !(index = state_index(state)))
			continue;
		if (needs_join(json_string_value(
			    json_object_get(content_of(index, "m.room.member", c->ingest), "membership"))))
			add_ingest_join(c, -1, child);
		json_decref(index);
	}
}

/* 1 when the user is still joined to a managed room. */
static int still_joined_somewhere(struct plan_ctx *c, const char *user)
{
	for (int r = 0; r < ROOM__COUNT; r++) {
		struct roomstate_member mem;
		const char *m = membership_in(c, r, user, &mem);

		if (m && strcmp(m, "join") == 0)
			return 1;
	}
	return 0;
}

/* Synapse parts a deactivated account from its rooms in the background, in
 * the user's own name, and reactivation does not stop that. A reactivation
 * is therefore held back while the account is still joined anywhere we
 * manage: otherwise those late leaves would look voluntary and the user
 * would never be joined again. */
static void plan_accounts(struct plan_ctx *c)
{
	json_t *u;
	size_t i;

	json_array_foreach(c->desired, i, u) {
		const char *id = json_string_value(json_object_get(u, "user"));
		int acct = account_of(c, id);

		if (!id || strcmp(id, c->bot) == 0)
			continue;
		if (desired_flag(u, "active") && acct == 2 && !still_joined_somewhere(c, id))
			add_action(c, ACTION_USER_REACTIVATE, -1, id);
		else if (!desired_flag(u, "active") && acct == 1)
			add_action(c, ACTION_USER_DEACTIVATE, -1, id);
	}
}

/* A reactivated account is joined in the same pass: treat it as active for
 * membership planning. */
static void assume_reactivated(struct plan_ctx *c)
{
	json_t *u;
	size_t i;

	json_array_foreach(c->desired, i, u) {
		const char *id = json_string_value(json_object_get(u, "user"));

		if (id && desired_flag(u, "active") && account_of(c, id) == 2 && !still_joined_somewhere(c, id)) {
			json_object_set_new(c->reactivating, id, json_true());
		}
	}
}

static const char *str_or_empty(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

/* Managed rooms in spec order, then rooms we do not manage (by room id). */
static int room_rank(json_t *a)
{
	int i = roomspec_index(json_string_value(json_object_get(a, "room")));

	return i >= 0 ? i : ROOM__COUNT;
}

static int compare_actions(const void *pa, const void *pb)
{
	json_t *a = *(json_t *const *)pa, *b = *(json_t *const *)pb;
	int d = planner_action_kind(a) - planner_action_kind(b);

	if (d)
		return d;
	d = room_rank(a) - room_rank(b);
	if (d)
		return d;
	if ((d = strcmp(str_or_empty(a, "user"), str_or_empty(b, "user"))))
		return d;
	if ((d = strcmp(str_or_empty(a, "event_type"), str_or_empty(b, "event_type"))))
		return d;
	if ((d = strcmp(str_or_empty(a, "state_key"), str_or_empty(b, "state_key"))))
		return d;
	return strcmp(str_or_empty(a, "room_id"), str_or_empty(b, "room_id"));
}

static void sort_actions(json_t *actions)
{
	size_t n = json_array_size(actions);
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers, sized by its element */
	json_t **items = calloc(n ? n : 1, sizeof(*items));

	if (!items)
		return;
	for (size_t i = 0; i < n; i++)
		items[i] = json_incref(json_array_get(actions, i));
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers, sized by its element */
	qsort(items, n, sizeof(items[0]), compare_actions);
	json_array_clear(actions);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(actions, items[i]);
	free(items);
}

json_t *planner_held_settings(const json_t *input)
{
	json_t *rooms = json_object_get(json_object_get(input, "observed"), "rooms"), *held = json_array();

	for (int r = 0; held && r < ROOM__COUNT; r++) {
		json_t *state = json_object_get(rooms, roomspec_rooms[r].key), *ev, *pl = NULL;
		struct roomspec_level levels[ROOMSPEC_LEVELS_MAX];
		int n = roomspec_levels(r, levels);
		size_t i;

		json_array_foreach(state, i, ev) {
			const char *t = json_string_value(json_object_get(ev, "type"));
			const char *k = json_string_value(json_object_get(ev, "state_key"));

			if (t && k && strcmp(t, "m.room.power_levels") == 0 && k[0] == '\0') {
				pl = json_object_get(ev, "content");
				break;
			}
		}
		for (int l = 0; json_is_object(pl) && l < n; l++) {
			json_t *have = json_object_get(pl, levels[l].key);
			char setting[64];

			if (!have || (json_is_integer(have) && (json_integer_value(have) == levels[l].preset ||
								json_integer_value(have) == levels[l].want)))
				continue;
			snprintf(setting, sizeof(setting), "m.room.power_levels %s", levels[l].key);
			json_array_append_new(held,
					      json_pack("{s:s, s:s, s:O, s:i}", "room", roomspec_rooms[r].key,
							"setting", setting, "have", have, "want", levels[l].want));
		}
	}
	return held;
}

/* What planner_plan built for itself (not the actions). */
static void planner_ctx_free(struct plan_ctx *c)
{
	json_decref(c->observed);
	json_decref(c->reactivating);
	for (int r = 0; r < ROOM__COUNT; r++)
		json_decref(c->members[r]);
}

static const struct errtext planner_errors[] = {
	{PLANNER_EINPUT, "the planner's input is malformed"},
	{PLANNER_ENOMEM, "out of memory planning"},
};

const char *planner_strerror(int code)
{
	return ERRTEXT_LOOKUP(planner_errors, code);
}

int planner_plan(const json_t *input, json_t **actions, char *err, size_t errlen)
{
	json_t *spec = json_object_get(input, "spec"), *obs = json_object_get(input, "observed");
	struct plan_ctx c = {
		.deployment = json_string_value(json_object_get(spec, "deployment")),
		.domain = json_string_value(json_object_get(spec, "domain")),
		.bot = json_string_value(json_object_get(spec, "bot")),
		.rooms = json_object_get(input, "rooms"),
		.desired = json_object_get(input, "desired"),
		.observed = json_object_get(obs, "rooms"),
		.raw = json_object_get(obs, "rooms"),
		.children = json_object_get(obs, "children"),
		.ingest = json_string_value(json_object_get(json_object_get(input, "ingest"), "user")),
	};

	*actions = NULL;
	if (!c.deployment || !c.domain || !c.bot) {
		snprintf(err, errlen, "planner: spec needs deployment, domain and bot");
		return PLANNER_EINPUT;
	}
	if (!json_is_object(c.rooms) || !json_is_array(c.desired) || !json_is_object(c.observed) ||
	    !json_is_object(json_object_get(obs, "users"))) {
		snprintf(err, errlen, "planner: rooms, desired, observed.users and observed.rooms are required");
		return PLANNER_EINPUT;
	}
	/* Each room's state indexed once (the rules look it up per user). */
	if (!(c.observed = json_object())) {
		snprintf(err, errlen, "planner: out of memory");
		return PLANNER_ENOMEM;
	}
	for (int r = 0; r < ROOM__COUNT; r++) {
		json_t *state = json_object_get(json_object_get(obs, "rooms"), roomspec_rooms[r].key);
		json_t *index = json_is_array(state) ? state_index(state) : NULL;

		if (json_is_array(state) && !index) {
			planner_ctx_free(&c);
			snprintf(err, errlen, "planner: out of memory");
			return PLANNER_ENOMEM;
		}
		if (index)
			json_object_set_new(c.observed, roomspec_rooms[r].key, index);
		if (!(c.members[r] = roomstate_members_of(obs, roomspec_rooms[r].key))) {
			planner_ctx_free(&c);
			snprintf(err, errlen, "planner: out of memory");
			return PLANNER_ENOMEM;
		}
	}
	c.accounts = json_object_get(obs, "users");
	c.reactivating = json_object();
	c.actions = json_array();
	plan_accounts(&c);
	assume_reactivated(&c);
	for (int r = 0; r < ROOM__COUNT; r++) {
		json_t *state = json_object_get(c.observed, roomspec_rooms[r].key);

		if (!json_object_get(c.rooms, roomspec_rooms[r].key) || !state)
			continue;
		plan_room_state(&c, r, state);
		plan_power_levels(&c, r, state);
		plan_memberships(&c, r, state);
	}
	if (c.ingest)
		plan_ingest(&c);
	planner_ctx_free(&c);
	sort_actions(c.actions);
	*actions = c.actions;
	return 0;
}
