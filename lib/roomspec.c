/* roomspec: the room table from the reconciler issue, and the JSON bodies
 * derived from it. Levels are always added to Synapse's default events map,
 * never replacing it: a power_level_content_override with only the call
 * events would drop m.room.power_levels etc. back to state_default. */
#include "roomspec.h"

#include <stdio.h>
#include <string.h>

const struct room_def roomspec_rooms[ROOM__COUNT] = {
	[ROOM_SPACE] = {"space", NULL, NULL, 1, 1, 0},
	[ROOM_ADMIN] = {"admin", "96-Admin channel", NULL, 0, 0, 0},
	[ROOM_GENERAL] = {"general", "98-General", "Work discussion that does not fit any other room.", 0, 1, 1},
	[ROOM_HELPDESK] = {"helpdesk", "99-Helpdesk", "Report issues and get help from here.", 0, 1, 1},
	[ROOM_OFFTOPIC] = {"offtopic", "97-Offtopic", "Everything that is not about the topics or work.", 0, 1, 1},
};

static const char *const call_events[] = {
	"m.call.invite",        "m.call.answer",           "m.call.hangup",
	"m.call.candidates",    "m.call.negotiate",        "m.call.reject",
	"m.call.select_answer", "org.matrix.msc3401.call", "org.matrix.msc3401.call.member",
};

#define BOT_LEVEL 200
#define ADMIN_LEVEL 100
#define MODERATOR_LEVEL 50

int roomspec_index(const char *key)
{
	for (int i = 0; i < ROOM__COUNT; i++)
		if (key && strcmp(roomspec_rooms[i].key, key) == 0)
			return i;
	return -1;
}

int roomspec_is_managed_id(json_t *rooms, const char *id)
{
	const char *key;
	json_t *v;

	json_object_foreach(rooms, key, v)
		if (json_is_string(v) && strcmp(json_string_value(v), id) == 0)
			return 1;
	return 0;
}

void roomspec_alias(const char *deployment, const char *domain, int room, char *out, size_t outlen)
{
	snprintf(out, outlen, "#%s-%s:%s", deployment, roomspec_rooms[room].key, domain);
}

const char *roomspec_name(int room, const char *deployment)
{
	return roomspec_rooms[room].name ? roomspec_rooms[room].name : deployment;
}

/* Synapse 1.160's defaults for room versions before 12 (handlers/room.py). */
static json_t *synapse_default_events(void)
{
	return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}", "m.room.name", 50, "m.room.power_levels", 100,
			 "m.room.history_visibility", 100, "m.room.canonical_alias", 50, "m.room.avatar", 50,
			 "m.room.tombstone", 100, "m.room.server_acl", 100, "m.room.encryption", 100);
}

void roomspec_event_levels(int room, json_t **overrides, json_t **defaults)
{
	*defaults = synapse_default_events();
	*overrides = json_object();
	if (roomspec_rooms[room].is_space) {
		json_object_set_new(*overrides, "m.space.child", json_integer(ADMIN_LEVEL));
		return;
	}
	for (size_t i = 0; i < sizeof(call_events) / sizeof(call_events[0]); i++)
		json_object_set_new(*overrides, call_events[i], json_integer(0));
}

int roomspec_levels(int room, struct roomspec_level out[ROOMSPEC_LEVELS_MAX])
{
	int n = 0;

	out[n++] = (struct roomspec_level){"invite", MODERATOR_LEVEL, 0};
	if (roomspec_rooms[room].is_space)
		out[n++] = (struct roomspec_level){"state_default", ADMIN_LEVEL, 50};
	return n;
}

json_t *roomspec_space_parent(const char *domain)
{
	return json_pack("{s:[s], s:b}", "via", domain, "canonical", 1);
}

json_t *roomspec_join_rules(int room, const char *space_id)
{
	if (roomspec_rooms[room].restricted)
		return json_pack("{s:s, s:[{s:s, s:s}]}", "join_rule", "restricted", "allow", "type",
				 "m.room_membership", "room_id", space_id ? space_id : "");
	return json_pack("{s:s}", "join_rule", "invite");
}

json_t *roomspec_create_body(int room, const char *deployment, const char *domain, const char *bot_id,
			     const char *space_id)
{
	const struct room_def *def = &roomspec_rooms[room];
	struct roomspec_level levels[ROOMSPEC_LEVELS_MAX];
	json_t *overrides, *events, *body, *pl, *initial = json_array();
	char alias_local[256];
	int n = roomspec_levels(room, levels);

	snprintf(alias_local, sizeof(alias_local), "%s-%s", deployment, def->key);
	roomspec_event_levels(room, &overrides, &events);
	json_object_update(events, overrides);
	json_decref(overrides);
	pl = json_pack("{s:{s:i}, s:o}", "users", bot_id, BOT_LEVEL, "events", events);
	for (int i = 0; i < n; i++)
		json_object_set_new(pl, levels[i].key, json_integer(levels[i].want));
	body = json_pack("{s:s, s:s, s:s, s:s, s:o}", "room_alias_name", alias_local, "name",
			 roomspec_name(room, deployment), "preset", "private_chat", "visibility", "private",
			 "power_level_content_override", pl);
	if (def->topic)
		json_object_set_new(body, "topic", json_string(def->topic));
	if (def->is_space)
		json_object_set_new(body, "creation_content", json_pack("{s:s}", "type", "m.space"));
	else {
		json_array_append_new(initial,
				      json_pack("{s:s, s:s, s:{s:s}}", "type", "m.room.encryption", "state_key", "",
						"content", "algorithm", "m.megolm.v1.aes-sha2"));
		json_array_append_new(initial, json_pack("{s:s, s:s, s:{s:s}}", "type", "m.room.history_visibility",
							 "state_key", "", "content", "history_visibility", "joined"));
	}
	json_array_append_new(initial, json_pack("{s:s, s:s, s:o}", "type", "m.room.join_rules", "state_key", "",
						 "content", roomspec_join_rules(room, space_id)));
	json_array_append_new(initial, json_pack("{s:s, s:s, s:{s:s}}", "type", "m.room.guest_access", "state_key", "",
						 "content", "guest_access", "forbidden"));
	if (!def->is_space && space_id)
		json_array_append_new(initial, json_pack("{s:s, s:s, s:o}", "type", "m.space.parent", "state_key",
							 space_id, "content", roomspec_space_parent(domain)));
	json_object_set_new(body, "initial_state", initial);
	return body;
}
