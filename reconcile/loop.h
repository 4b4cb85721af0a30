/* loop: the reconciler's driver. One background thread runs passes: at once
 * (coalesced within a few ms) after loop_nudge, and every RECONCILE_INTERVAL
 * seconds as a full resync. One pass at a time, across processes too (an
 * exclusive lock file beside the database); a nudge during a pass causes
 * exactly one more pass. Each pass = bootstrap (idempotent) + observe + plan +
 * execute, recorded in the store. */
#pragma once
#include <stddef.h>

#include "errtext.h"

enum {
	LOOP_ESTORE = ERRTEXT_LOOP - 1,       /* the database cannot be opened, or a pass's writes failed */
	LOOP_ENOMEM = ERRTEXT_LOOP - 2,       /* out of memory (a Synapse client, the loop) */
	LOOP_ETHREAD = ERRTEXT_LOOP - 3,      /* the thread cannot be started */
	LOOP_ELOCK = ERRTEXT_LOOP - 4,        /* the pass lock beside the database cannot be taken */
	LOOP_EUNREACHABLE = ERRTEXT_LOOP - 5, /* the pass found Synapse unreachable */
	LOOP_EFAILED = ERRTEXT_LOOP - 6,      /* a step or an action of the pass failed */
	LOOP_EPENDING = ERRTEXT_LOOP - 7,     /* the pass went well, but differences are left */
};

/* The text for a LOOP_E* code. */
const char *loop_strerror(int code);

struct config;
struct loop;

/* What another source of desired state wires in (main.c; every field may be
 * NULL). may_write: 0 while this replica must not write to Synapse (a
 * follower of the Kubernetes Lease): then no pass runs and health says
 * "standby". pass_done: after each pass that ran, whatever its result.
 * Both are called from the loop's thread. */
struct loop_hooks {
	int (*may_write)(void *ctx);
	void (*pass_done)(void *ctx);
	void *ctx;
};

/* Starts the thread with its own store connection; hooks (copied) may be
 * NULL. Returns 0, or a LOOP_E* or the store's code with err. */
int loop_start(const struct config *cfg, const struct loop_hooks *hooks, struct loop **out, char *err, size_t errlen);
void loop_nudge(struct loop *l);
/* 1 when healthy (Synapse reachable, rooms ready, last pass ok or younger
 * than 3 intervals); extra says which part is not. Thread-safe. */
int loop_health(struct loop *l, char *extra, size_t extralen);
/* The interop ingest bot's checked token: 1 with a copy in out, 0 while it
 * is not ready. Thread-safe. */
int loop_ingest_token(struct loop *l, char *out, size_t outlen);
/* Cuts the running pass and its Synapse requests short (loop_stop still
 * joins); NULL is a no-op. Thread-safe. */
void loop_abort(struct loop *l);
/* Cuts the running pass short, as loop_abort, but passes go on afterwards
 * (once may_write allows them): for a replica that lost the Lease. */
void loop_interrupt(struct loop *l);
void loop_stop(struct loop *l); /* joins the thread; NULL is a no-op */

/* One full pass in this process (for --reconcile-once), retried while
 * Synapse is unreachable up to SYNAPSE_WAIT_TIMEOUT. Returns 0 when Synapse
 * matches the desired state afterwards, else a LOOP_E* (or the store's)
 * code; summary gets the pass's one-line summary either way. With dry_run
 * nothing is applied or recorded, and *plan (when plan is not NULL) is the
 * plan as indented JSON text (caller frees; NULL when no plan was made). */
int loop_run_once(const struct config *cfg, int dry_run, char *summary, size_t summarylen, char **plan);
