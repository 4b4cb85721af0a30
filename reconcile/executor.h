/* executor: applies a plan's actions to Synapse, one handler per action kind
 * (a static table), recording each outcome in the store. A failing action is
 * logged, recorded and put on backoff; it never stops the others. Power
 * levels are written from the content read just before the write, so
 * concurrent changes are merged, never overwritten with a stale copy. */
#pragma once
#include <stdatomic.h>
#include <stdint.h>

#include <jansson.h>

struct synapse;
struct store;

/* When a pass gives up on the rest of its actions. */
struct executor_limits {
	int64_t deadline_ms;   /* CLOCK_MONOTONIC ms; 0: none */
	const atomic_int *stop; /* non-zero: shutting down; may be NULL */
};

struct executor_result {
	int planned, ok, failed, deferred;
	int abandoned;   /* actions not tried: deadline, shutdown or Synapse gone */
	int unreachable; /* actions got no HTTP answer: the rest were abandoned */
	char first_error[1024]; /* "kind room user: errcode error" of the first failure */
};

/* 1 when kind has an apply handler. */
int executor_has_handler(int kind);

/* Applies actions (planner output) as bot_id. rooms: key -> room id. ingest
 * (may be NULL) sends as the interop ingest bot, for its own joins. lim (may
 * be NULL) ends the pass early: past the deadline, on shutdown, and once
 * Synapse stops answering (two actions in a row without an HTTP answer; one
 * stall alone may be one slow request), the remaining actions are recorded as
 * abandoned (no backoff: the next pass retries them). Returns 0 when every
 * action succeeded, -1 otherwise (see res). */
int executor_apply(struct synapse *syn, struct synapse *ingest, struct store *st, const char *bot_id,
		   json_t *rooms, json_t *actions, int64_t pass_id, int64_t now_ms,
		   const struct executor_limits *lim, struct executor_result *res);

/* The backoff key of an action: "kind|room|user|event_type|state_key" (room: the
 * key, or the room id of a room we do not manage; caller frees). */
char *executor_action_key(json_t *action);
