/* ingest: the interop ingest bot (INTEROP_BOT_USERNAME), a plain local user
 * whose token peer products (BattleLog) fetch from /api/v1/interop/authz to
 * read the rooms. It exists only once there is an interop grant.
 *
 * ingest_ensure, run by each pass while a grant exists, keeps a valid token:
 * the token file beside the bot's (SYNAPSE_TOKEN_FILE + ".interop", 0600)
 * checked with whoami; else shared-secret registration as a non-admin (so
 * the token is bound to a device and can be given room keys); else, when the
 * account exists but its token is lost, the no-human recovery: the admin bot
 * logs in as the ingest bot through the admin API. Its rate limit is removed.
 * Registration and recovery run under the bot token file's lock, so two
 * processes never register at once. The token is published for the API
 * thread (ingest_token) once it is checked; it is never logged. Memberships
 * are the planner's business (ingest.join actions). */
#pragma once
#include "errtext.h"
#include <pthread.h>
#include <stddef.h>

struct config;
struct synapse;
struct bootstrap;

enum ingest_error {
	INGEST_ENOANSWER = ERRTEXT_INGEST - 1, /* Synapse did not answer the token check */
	INGEST_EREGISTER = ERRTEXT_INGEST - 2, /* registration and recovery both failed */
	INGEST_ESAVE = ERRTEXT_INGEST - 3,     /* the token file could not be written (the token is kept in memory) */
	INGEST_ELOCK = ERRTEXT_INGEST - 4,     /* the token lock could not be taken */
	INGEST_EREADONLY = ERRTEXT_INGEST - 5, /* no valid token, and this run may not register */
};

struct ingest {
	const struct config *cfg;
	struct synapse *syn; /* requests as the ingest bot, with its own token */
	char id[300];        /* @localpart:domain */
	int token_ok, ratelimit_ok;
	pthread_mutex_t mu; /* guards published */
	char *published;    /* the checked token for ingest_token (secret) */
};

/* Text for a negative ingest_error (or negative errno). */
const char *ingest_strerror(int code);

/* Returns 0 or -ENOMEM. */
int ingest_init(struct ingest *ig, const struct config *cfg);
void ingest_release(struct ingest *ig); /* wipes the token */

/* One pass's step (see above), as boot's bot. read_only: never register or
 * recover. Returns 0 or a negative code with err. */
int ingest_ensure(struct ingest *ig, struct bootstrap *boot, int read_only, char *err, size_t errlen);

/* Forget the token check (Synapse answered 401 to the ingest bot). */
void ingest_token_rejected(struct ingest *ig);

/* Thread-safe: copies the checked token into out and returns 1, or returns 0
 * while there is none (bot not ready). */
int ingest_token(struct ingest *ig, char *out, size_t outlen);
