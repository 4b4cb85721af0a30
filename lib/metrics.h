/* metrics: the service's one registry of Prometheus metrics. Every other
 * module reports through these calls (one line at the place the thing
 * happens) and holds no counter of its own for operators; metrics_render()
 * writes them all in the text exposition format (lib/promtext.c) for the
 * listener in api/metrics_listen.c.
 *
 * Invariants: every observation is a few relaxed atomic additions into
 * preallocated cells (no lock, no allocation), so the callback path's pool
 * threads, the writer and the reconciler never wait for each other or for
 * a scrape. Every label value comes from a fixed table (endpoints, outcomes,
 * action kinds, Synapse endpoint classes, HTTP status codes 100-599): a
 * user id, room id or any other text from outside is never a label, and an
 * unknown value is counted as "other". Nothing secret is ever passed in.
 * The registry is process-wide: one service per process. */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* What became of a Rasenmaeher user callback. */
enum metrics_callback_outcome {
	METRICS_CALLBACK_STORED,    /* committed to disk, answered success */
	METRICS_CALLBACK_REFUSED,   /* answered success: false (invalid callsign, reserved or owned Matrix ID) */
	METRICS_CALLBACK_INVALID,   /* 413 or 422: the body */
	METRICS_CALLBACK_FORBIDDEN, /* 403: no client certificate allowed on the route */
	METRICS_CALLBACK_FAILED,    /* 503: not stored (commit failed, stopping, out of memory) */
	METRICS_CALLBACK__COUNT
};

/* A user callback (event: enum event_kind) answered with outcome, begun
 * at start (clock_mono_ns(), as every start below). */
void metrics_callback(int event, enum metrics_callback_outcome outcome, int64_t start);

/* A reconcile pass ended with result ("ok", "failed", "unreachable", as in
 * the passes table), begun at start. */
void metrics_pass(const char *result, int64_t start);
/* The state a pass found: rooms ready (0 when bootstrap failed), users in
 * desired state (-1: not read, unchanged), differences left (-1: unknown,
 * unchanged); succeeded: the pass succeeded, so the time of the last
 * successful pass becomes now. */
void metrics_pass_state(int rooms_ready, int managed_users, int pending, int succeeded);

/* An action's recorded outcome (kind: action_names; outcome: "ok",
 * "failed", "deferred", "skipped", "abandoned"). */
void metrics_action(const char *kind, const char *outcome);

/* One HTTP attempt to Synapse: path as sent (the class is taken from it,
 * the ids in it never), status 0 when no answer came, begun at start. */
void metrics_synapse_request(const char *method, const char *path, long status, int64_t start);
/* The endpoint class metrics_synapse_request files path under. */
const char *metrics_synapse_endpoint(const char *path);

/* One group commit of the writer: batch callbacks, committed or not. */
void metrics_store_commit(size_t batch, int committed, int64_t start);
/* A failed SQL statement on any connection. */
void metrics_store_failure(void);

/* Why the listener refused a connection at accept. */
enum metrics_refusal {
	METRICS_REFUSED_ADDRESS,  /* the address held MAX_CONNECTIONS_PER_ADDRESS */
	METRICS_REFUSED_RESERVED, /* the listener was nearly full; the rest is for vouched addresses */
	METRICS_REFUSED__COUNT
};
void metrics_connection_refused(enum metrics_refusal why);
/* A connection closed because it passed its total deadline (api/deadline.c). */
void metrics_connection_cut(void);
/* A waiting connection closed to make room for a newcomer of its address
 * (api/connlimit.c). */
void metrics_connection_evicted(void);

/* Every metric in the text exposition format: 0 with *out (caller frees)
 * and *len, or -ENOMEM. Thread-safe; may run during observations. */
int metrics_render(char **out, size_t *len);

/* Zeroes everything (tests only: not safe during observations). */
void metrics_reset(void);
