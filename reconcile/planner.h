/* planner: the pure heart of the reconciler. From desired state, observed
 * Synapse state and the room spec it computes the ordered list of actions
 * that makes Synapse match. No I/O, no clock, no globals: everything comes in
 * the input document, so each rule is a fixture file under tests/planner/.
 *
 * Input (JSON object):
 *   spec      {"deployment", "domain", "bot"}
 *   rooms     {room key: room id} (missing keys: room not yet created)
 *   desired   [{"user", "active", "admin", "created_ms", "changed_ms"}]
 *             (admin: true/1, false/0, or null = unknown: levels and admin
 *              room left as they are; created_ms: the latest /created;
 *              changed_ms, optional: the latest callback about the user)
 *   observed  {"users": {matrix id: deactivated}}           (accounts that exist; the
 *                                                             value a bool, or {"deactivated": bool})
 *              "rooms": {room key: [state events]}           (rooms that were read)
 *              "members": {room key: {user: value}}          (roomstate.h; without it
 *                                                             the member events in "rooms")
 *              "children": {room id: [state events]}}        (other children of the
 *                                                             space, when an ingest bot is wanted)
 *   ingest    {"user": matrix id}  (optional: the interop ingest bot, present
 *              while a grant exists and its token is valid)
 * Output: JSON array of actions, sorted by kind (in enum order), room, user:
 *   {"kind": "state.set", "room", "event_type", "state_key", "content"}
 *   {"kind": "power_levels.set", "room", "users": {id: level|null}, "events": {type: level},
 *    "levels" (optional): {power_levels key such as "invite": level}}
 *   {"kind": "user.reactivate", "user"}
 *   {"kind": "room.join", "room", "user"}
 *   {"kind": "ingest.join", "room" (managed rooms only), "room_id", "user"}
 *   {"kind": "room.kick", "room", "user"}
 *   {"kind": "user.deactivate", "user"}
 */
#pragma once
#include <jansson.h>

#include "action.h"
#include "errtext.h"

enum {
	PLANNER_EINPUT = ERRTEXT_PLANNER - 1, /* the input is malformed (err says which part) */
	PLANNER_ENOMEM = ERRTEXT_PLANNER - 2, /* out of memory */
};

/* The text for a PLANNER_E* code. */
const char *planner_strerror(int code);

/* Kind of an action object, or -1. */
int planner_action_kind(const json_t *action);

/* The account of id in observed "users": 0 none, 1 active, 2 deactivated. */
int planner_account(const json_t *users, const char *id);

/* The spec's levels the planner leaves as set by hand (roomspec_levels: a
 * room with a value that is neither Synapse's preset nor the spec's), from
 * the same input: a new array of {"room", "setting", "have", "want"}. */
json_t *planner_held_settings(const json_t *input);

/* Returns 0 and a new array in *actions, or PLANNER_EINPUT when the input is
 * malformed (err says which part), or PLANNER_ENOMEM. */
int planner_plan(const json_t *input, json_t **actions, char *err, size_t errlen);
