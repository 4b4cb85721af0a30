/* bootstrap: everything a pass needs before it can plan, each step idempotent
 * and safe to repeat every pass:
 *  1. a valid bot token (token file, else shared-secret registration, else the
 *     no-human recovery through a one-off recovery admin), under an exclusive
 *     lock beside the token file so two processes never register at once;
 *  2. no rate limit for the bot;
 *  3. the five rooms resolved by alias, missing ones created (losing a
 *     creation race to another process is fine: the alias is resolved again),
 *     room ids stored. */
#pragma once
#include <stddef.h>

#include <jansson.h>

/* Localparts of the one-off recovery admins start with this. */
#define BOOTSTRAP_RECOVERY_PREFIX "matrixrmapi-recovery-"

struct config;
struct synapse;
struct store;

struct bootstrap {
	const struct config *cfg;
	struct synapse *syn;
	struct store *st;
	char bot_id[300];
	int token_ok;     /* the token in syn was checked with whoami */
	int ratelimit_ok; /* override_ratelimit already in place */
	int rooms_ok;     /* every room resolved by alias and stored in this process */
	int dry_run;      /* read only: no registration, no rate limit, no rooms, no store writes */
	char *unsaved_token; /* a new token the token file could not take yet (secret) */
};

void bootstrap_init(struct bootstrap *b, const struct config *cfg, struct synapse *syn,
		    struct store *st);

/* Steps 1-3. On success *rooms is key -> room id for the five rooms (caller
 * owns; in a dry run, only those that exist) and 0 is returned; otherwise -1
 * with a one-line reason in err. */
int bootstrap_run(struct bootstrap *b, json_t **rooms, char *err, size_t errlen);

/* Resolve the rooms' aliases again at the next bootstrap_run (after a
 * request failed in a way a vanished or replaced room would explain);
 * until then a bootstrap_run that finds every room id stored asks Synapse
 * nothing about rooms. */
void bootstrap_rooms_stale(struct bootstrap *b);

/* Forget the token check (after Synapse answered M_UNKNOWN_TOKEN). */
void bootstrap_token_rejected(struct bootstrap *b);
/* Wipes and frees what the bootstrap holds. */
void bootstrap_release(struct bootstrap *b);
