/* executor: applies a plan's actions to Synapse, one handler per action kind
 * (a static table), recording each outcome in the store. A failing action is
 * logged, recorded and put on backoff; it never stops the others. Power
 * levels are written from the content read just before the write, so
 * concurrent changes are merged, never overwritten with a stale copy.
 *
 * The plan is applied in waves (executor_schedule): each run of one kind in
 * plan order is a wave, and a wave ends before the next starts, so what the
 * planner orders first (state, then power levels, then reactivations before
 * the joins of those users, then kicks, deactivations) stays first. State,
 * power levels and the ingest bot's joins go one at a time; reactivations,
 * joins, kicks and deactivations of a wave go concurrently, a bounded number
 * in flight, started round-robin over their rooms. */
#pragma once
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct synapse;
struct store;

/* When a pass gives up on the rest of its actions. */
struct executor_limits {
	int64_t deadline_ms;    /* clock_mono_ms(); 0: none */
	const atomic_int *stop; /* non-zero: shutting down; may be NULL */
};

struct executor_result {
	int planned, ok, failed, deferred;
	int abandoned;          /* actions not tried: deadline, shutdown or Synapse gone */
	int unreachable;        /* actions got no HTTP answer: the rest were abandoned */
	char first_error[1024]; /* "kind room user: errcode error" of the first failure */
};

/* 1 when kind has an apply handler. */
int executor_has_handler(int kind);

/* Requests of a concurrent wave in flight at once (why 8: executor.c). */
#define EXECUTOR_WAVE_IN_FLIGHT 8
/* A wave is sent in batches of at most this many actions: what it holds per
 * call (the request, its answer, the action's key) is then bounded by the
 * batch, not by the wave (41,000 joins when 10,000 users are queued). */
#define EXECUTOR_WAVE_CHUNK 512

/* A run of the plan applied together: plan indexes order[first..first+count)
 * of its schedule, in the order they are started. */
struct executor_wave {
	size_t first, count;
	int concurrent; /* 1: sent as one batch; 0: one action at a time */
};

struct executor_schedule {
	struct executor_wave *waves;
	size_t nwaves;
	size_t *order; /* a permutation of the plan's indexes, wave after wave */
	size_t n;      /* actions in the plan */
};

/* Cuts a plan into waves, purely: every maximal run of actions of one kind
 * is a wave, in plan order (nothing moves across a wave's border). Runs of
 * user.reactivate, room.join, room.kick and user.deactivate are concurrent,
 * their actions ordered round-robin over their rooms (the first action of
 * each room in order of first appearance, then the second of each, ...;
 * within a room plan order); every other kind (state.set, power_levels.set,
 * ingest.join, unknown) is sequential, in plan order. Returns 0 (release
 * with executor_schedule_free) or -ENOMEM. */
int executor_schedule(const json_t *actions, struct executor_schedule *out);
void executor_schedule_free(struct executor_schedule *sch);

/* Applies actions (planner output) as bot_id. rooms: key -> room id. ingest
 * (may be NULL) sends as the interop ingest bot, for its own joins.
 * observed_rooms (may be NULL) is the pass's state read ({key: [events]},
 * observe_synapse): a power-levels write starts from the content read there,
 * so a changed room costs one write and no second read; when Synapse
 * refuses it (403: the room changed since), the levels are read again and
 * the change merged and written once more. lim (may
 * be NULL) ends the pass early: past the deadline, on shutdown, and once
 * Synapse stops answering, the remaining actions are recorded as abandoned
 * (no backoff: the next pass retries them). "Stops answering": two requests
 * without an HTTP answer and no answer in between, counted in the order the
 * requests end (one stall alone may be one slow request). In a concurrent
 * wave that stops the wave at once: requests still in flight are cut short
 * and recorded, with those not started and any request that ended without
 * an answer after that moment (the same outage), as abandoned. A request cut
 * short by the stop flag is abandoned too, not failed. A wave's outcomes are
 * recorded in the order its requests were started. Returns 0 when every
 * action succeeded, -1 otherwise (see res). */
int executor_apply(struct synapse *syn, struct synapse *ingest, struct store *st, const char *bot_id, json_t *rooms,
		   json_t *observed_rooms, json_t *actions, int64_t pass_id, int64_t now_ms,
		   const struct executor_limits *lim, struct executor_result *res);

/* The backoff key of an action: "kind|room|user|event_type|state_key" (room: the
 * key, or the room id of a room we do not manage; caller frees). */
char *executor_action_key(json_t *action);
