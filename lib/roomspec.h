/* roomspec: what the managed rooms must look like. Pure data and builders;
 * no I/O. The planner compares Synapse's state with this, bootstrap uses it
 * to create missing rooms. */
#pragma once
#include <jansson.h>

enum room_key { ROOM_SPACE, ROOM_ADMIN, ROOM_GENERAL, ROOM_HELPDESK, ROOM_OFFTOPIC, ROOM__COUNT };

struct room_def {
	const char *key;   /* "space", "admin", ... (also the alias suffix) */
	const char *name;  /* m.room.name; NULL: the deployment name (space) */
	const char *topic; /* m.room.topic or NULL */
	int is_space;
	int is_public;  /* users are joined here (space, general, helpdesk, offtopic) */
	int restricted; /* join rule restricted to space members */
};

extern const struct room_def roomspec_rooms[ROOM__COUNT];

/* Index of key, or -1. */
int roomspec_index(const char *key);

/* 1 when id is the room id of one of the managed rooms in rooms (key ->
 * room id, as bootstrap resolves them). */
int roomspec_is_managed_id(json_t *rooms, const char *id);

/* "#DEPLOYMENT-key:DOMAIN" into out. */
void roomspec_alias(const char *deployment, const char *domain, int room, char *out, size_t outlen);

/* The room's display name (the deployment for the space). Borrowed. */
const char *roomspec_name(int room, const char *deployment);

/* Power-level events the room must have: Synapse's defaults for keys that are
 * missing plus our levels (call events 0; m.space.child at the admins' 100 in
 * the space). overrides: keys whose value we enforce; defaults: keys we only
 * add when missing. Caller owns both. */
void roomspec_event_levels(int room, json_t **overrides, json_t **defaults);

/* The levels of power_levels' own keys we set (invite at the moderators' 50
 * everywhere; state_default at the admins' 100 in the space), each with the
 * value Synapse's private_chat preset gives it: only a room still at that
 * value (or without the key) is changed. Another value was set by hand (the
 * original service never set these) and is kept, reported by status. */
struct roomspec_level {
	const char *key;
	int want, preset;
};
/* The room's levels into out (at most ROOMSPEC_LEVELS_MAX); their count. */
#define ROOMSPEC_LEVELS_MAX 2
int roomspec_levels(int room, struct roomspec_level out[ROOMSPEC_LEVELS_MAX]);

/* m.space.parent's content in a room of the space (canonical, via domain). */
json_t *roomspec_space_parent(const char *domain);

/* The createRoom request body for a missing room. space_id may be NULL only
 * for the space itself. Caller owns the result. */
json_t *roomspec_create_body(int room, const char *deployment, const char *domain, const char *bot_id,
			     const char *space_id);

/* The m.room.join_rules content the room must have (caller owns). */
json_t *roomspec_join_rules(int room, const char *space_id);
