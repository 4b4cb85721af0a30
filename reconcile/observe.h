/* observe: what Synapse actually has, read as a pass needs it: the managed
 * users' accounts from the paged admin user list and every managed room's
 * state, one request per room and page, never per user. Also turns an
 * observation into the per-user rows `matrixrmapi status` shows. */
#pragma once
#include <stdint.h>

#include <jansson.h>

struct synapse;
struct bootstrap;
struct store;

/* *observed = {"users": {id: {"deactivated"}} for managed users that have an
 * account (every local account when desired is NULL), "rooms": {key: [state events, compacted]}} (caller owns). A 401 is passed
 * to bootstrap_token_rejected. Returns 0, or -1 with err (a user list that
 * does not advance, a room without a state array, no answer). */
int observe_synapse(struct synapse *syn, struct bootstrap *boot, json_t *rooms, json_t *desired, json_t **observed,
		    char *err, size_t errlen);

/* A room's state events cut to what a pass reads (type, state_key, sender,
 * origin_server_ts, content; a member event's content to its membership),
 * so that 10,000 members do not cost their full events. observe_synapse
 * applies it to every managed room. Caller owns; NULL when out of memory. */
json_t *observe_compact_state(json_t *state);

/* Adds "children": {room id: [state events]} to observed for every child of
 * the space (from observed's space state) that is not a managed room; a child
 * whose state cannot be read is left out. Returns 0 or -1. */
int observe_children(struct synapse *syn, struct bootstrap *boot, json_t *rooms, json_t *observed, char *err,
		     size_t errlen);

/* Replaces the store's observed_users with what observed says of each
 * desired user; pending counts the plan's actions that name the user. */
int observe_record(struct store *st, json_t *desired, json_t *observed, json_t *plan, int64_t now);
