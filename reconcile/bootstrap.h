/* bootstrap: everything a pass needs before it can plan, each step idempotent
 * and safe to repeat every pass:
 *  1. a valid bot token (token file, else shared-secret registration, else the
 *     no-human recovery through a one-off recovery admin), under an exclusive
 *     lock beside the token file so two processes never register at once;
 *     recoveries back off (30 s doubling to 15 min) until a token validates,
 *     and recovery admins a crash left with their power are retired;
 *  2. no rate limit for the bot;
 *  3. the five rooms resolved by alias, missing ones created (losing a
 *     creation race to another process is fine: the alias is resolved again),
 *     room ids stored. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "errtext.h"

enum {
	BOOTSTRAP_ELOCK = ERRTEXT_BOOTSTRAP - 1,      /* the token file's lock cannot be taken */
	BOOTSTRAP_ETOKENFILE = ERRTEXT_BOOTSTRAP - 2, /* the token file cannot be read */
	BOOTSTRAP_ENOANSWER = ERRTEXT_BOOTSTRAP - 3,  /* Synapse did not answer the token check */
	BOOTSTRAP_EREADONLY = ERRTEXT_BOOTSTRAP - 4,  /* no valid token, and this run may not register */
	BOOTSTRAP_EREGISTER = ERRTEXT_BOOTSTRAP - 5,  /* registration and token recovery failed */
	BOOTSTRAP_EBACKOFF = ERRTEXT_BOOTSTRAP - 6,   /* no valid token; the next recovery is not due yet */
	BOOTSTRAP_ERATELIMIT = ERRTEXT_BOOTSTRAP - 7, /* the bot's rate limit cannot be removed */
	BOOTSTRAP_ESTORE = ERRTEXT_BOOTSTRAP - 8,     /* the rooms cannot be read from the store */
	BOOTSTRAP_EROOM = ERRTEXT_BOOTSTRAP - 9,      /* a room cannot be resolved or created */
};

/* The text for a BOOTSTRAP_E* code. */
const char *bootstrap_strerror(int code);

struct config;
struct synapse;
struct store;

struct bootstrap {
	const struct config *cfg;
	struct synapse *syn;
	struct store *st;
	char bot_id[300];
	int token_ok;             /* the token in syn was checked with whoami */
	int ratelimit_ok;         /* override_ratelimit already in place */
	int rooms_ok;             /* every room resolved by alias and stored in this process */
	int dry_run;              /* read only: no registration, no rate limit, no rooms, no store writes */
	char *unsaved_token;      /* a new token the token file could not take yet (secret) */
	int recovery_attempts;    /* token recoveries since the last valid token */
	int64_t recovery_next_ms; /* monotonic time before which no recovery starts */
	int leftovers_checked;    /* recovery admins left by a crash were looked for */
};

void bootstrap_init(struct bootstrap *b, const struct config *cfg, struct synapse *syn, struct store *st);

/* Steps 1-3. On success *rooms is key -> room id for the five rooms (caller
 * owns; in a dry run, only those that exist) and 0 is returned; otherwise a
 * BOOTSTRAP_E* code with a one-line reason in err. */
int bootstrap_run(struct bootstrap *b, json_t **rooms, char *err, size_t errlen);

/* 1: the token set in syn belongs to user_id (whoami); 0: rejected or
 * another user's; BOOTSTRAP_ENOANSWER: no answer. */
int bootstrap_whoami(struct synapse *syn, const char *user_id);

/* Removes Synapse's rate limit for user_id (as the bot) unless it is already
 * 0/0. Returns 0 or BOOTSTRAP_ERATELIMIT with err. */
int bootstrap_ratelimit_off(struct bootstrap *b, const char *user_id, char *err, size_t errlen);

/* Resolve the rooms' aliases again at the next bootstrap_run (after a
 * request failed in a way a vanished or replaced room would explain);
 * until then a bootstrap_run that finds every room id stored asks Synapse
 * nothing about rooms. */
void bootstrap_rooms_stale(struct bootstrap *b);

/* Forget the token check (after Synapse answered M_UNKNOWN_TOKEN). */
void bootstrap_token_rejected(struct bootstrap *b);
/* Wipes and frees what the bootstrap holds. */
void bootstrap_release(struct bootstrap *b);
