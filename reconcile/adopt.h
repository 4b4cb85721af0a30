/* adopt: seeds desired state from what Synapse already has, for a deployment
 * that ran the original service (which keeps no database) or lost its own.
 * `matrixrmapi adopt [--dry-run] [--json]`.
 *
 * Rules (adopt_plan, pure): every local member of a managed room (joined),
 * except the bot, recovery admins and the names in "exclude" (the interop
 * ingest bot), becomes a managed active user; a user at level >= 100 in the
 * space or joined to the admin room is an admin; a deactivated local account is a revoked user.
 * Recording (store_adopt) never overrides what a callback said: only new
 * users are inserted and only an unknown admin status is filled in, in one
 * transaction, journalled as 'adopted'. Safe while the daemon runs: the
 * daemon picks the rows up on its next pass. */
#pragma once
#include "errtext.h"
#include <stddef.h>

#include <jansson.h>

struct config;

enum adopt_error {
	ADOPT_EINPUT = ERRTEXT_ADOPT - 1,   /* malformed input to adopt_plan */
	ADOPT_ESTORE = ERRTEXT_ADOPT - 2,   /* the database could not be opened, read or written */
	ADOPT_ESYNAPSE = ERRTEXT_ADOPT - 3, /* no bot token, rooms or state from Synapse */
	ADOPT_ENOROOMS = ERRTEXT_ADOPT - 4, /* none of the managed rooms exists yet */
};

/* Text for an adopt_error code (or a negative errno). */
const char *adopt_strerror(int code);

/* Input {"spec": {"bot", "domain"}, "rooms": {key: id}, "observed": {"users":
 * {id: {"deactivated"}}, "rooms": {key: [state events]}}, "exclude": [ids]
 * (optional)}. *records (caller owns) = array sorted by user of {"user",
 * "callsign" (the localpart), "active", "admin", "evidence": [texts]}.
 * Returns 0 or ADOPT_EINPUT. */
int adopt_plan(const json_t *input, json_t **records);

/* What store_adopt would do with records given the desired users (as
 * store_desired_users returns them): user -> "new", "admin" or "kept".
 * Caller owns the result. */
json_t *adopt_preview(const json_t *records, const json_t *desired);

/* The command: reads Synapse, prints what it records (a table, or JSON),
 * records it unless dry_run. Returns 0 or a negative code; a one-line reason
 * goes to stderr. */
int adopt_run(const struct config *cfg, int dry_run, int as_json);
