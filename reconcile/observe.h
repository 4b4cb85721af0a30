/* observe: what Synapse actually has, read as a pass needs it: the managed
 * users' accounts from the paged admin user list and every managed room's
 * state, one request per room and page, never per user. Also turns an
 * observation into the per-user rows `matrixrmapi status` shows. */
#pragma once
#include <stdint.h>

#include <jansson.h>

#include "errtext.h"

struct synapse;
struct bootstrap;
struct store;

enum {
	OBSERVE_ENOANSWER = ERRTEXT_OBSERVE - 1, /* Synapse did not answer a read */
	OBSERVE_EHTTP = ERRTEXT_OBSERVE - 2,     /* it answered a read with an error status */
	OBSERVE_ESHAPE = ERRTEXT_OBSERVE - 3,    /* the answer is not what was asked for (a user list that does
						    not advance, a room state that does not parse) */
	OBSERVE_ENOMEM = ERRTEXT_OBSERVE - 4,    /* out of memory */
	OBSERVE_ESTORE = ERRTEXT_OBSERVE - 5,    /* the store did not take the observations */
};

/* The text for an OBSERVE_E* code. */
const char *observe_strerror(int code);

/* *observed = {"users": {id: deactivated (bool)}} for managed users that have an
 * account (every local account when desired is NULL), "rooms": {key: [state
 * events but members]} and "members": {key: {user: value}} (both compact, as
 * roomstate.h describes them; each room's answer is parsed as it arrives)}
 * (caller owns). A 401 is passed
 * to bootstrap_token_rejected. Returns 0, or an OBSERVE_E* code with err (a
 * user list that does not advance, a room without a state array, no answer). */
int observe_synapse(struct synapse *syn, struct bootstrap *boot, json_t *rooms, json_t *desired, json_t **observed,
		    char *err, size_t errlen);

/* Adds "children": {room id: [state events]} to observed for every child of
 * the space (from observed's space state) that is not a managed room; a child
 * whose state cannot be read is left out. Returns 0 or OBSERVE_ENOMEM. */
int observe_children(struct synapse *syn, struct bootstrap *boot, json_t *rooms, json_t *observed, char *err,
		     size_t errlen);

/* Records in the store's observed_users what observed says of each desired
 * user (only the rows that changed are written; store_observed_record);
 * pending counts the plan's actions that name the user. Also records the
 * room settings kept as set by hand (planner_held_settings, store_held_record).
 * Returns 0, OBSERVE_ESTORE or OBSERVE_ENOMEM. */
int observe_record(struct store *st, json_t *desired, json_t *observed, json_t *plan, int64_t now);
