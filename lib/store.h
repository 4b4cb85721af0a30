/* store: the SQLite file that holds desired user state, the callback journal,
 * the managed rooms, and the reconciler's pass/action history.
 *
 * Invariants: every acknowledged callback is in the journal and its effect on
 * the users table is committed in the same transaction (WAL, synchronous=FULL)
 * before the caller answers 200. Migrations from schema/ run at open inside
 * one transaction; a database newer than this binary is refused.
 * One struct store is one connection; use one per thread. */
#pragma once
#include "errtext.h"
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "event.h"

struct store;

/* Why a database could not be opened (err says it with the path). */
enum store_open_error {
	STORE_ESYMLINK = ERRTEXT_STORE - 1,  /* DATABASE_PATH is a symbolic link */
	STORE_EPERMS = ERRTEXT_STORE - 2,    /* readable by others, and chmod failed */
	STORE_EOPEN = ERRTEXT_STORE - 3,     /* SQLite could not open it (a read-only mount, no space, ...) */
	STORE_ENEWER = ERRTEXT_STORE - 4,    /* its schema is newer than this binary */
	STORE_EUNUSABLE = ERRTEXT_STORE - 5, /* not a usable SQLite database, or its journal cannot be set */
	STORE_EMIGRATE = ERRTEXT_STORE - 6,  /* a migration failed (it was rolled back) */
};
const char *store_strerror(int code);

/* Opens (creating 0600 if missing) and migrates. Returns 0 or a
 * store_open_error with err. */
int store_open(const char *path, struct store **out, char *err, size_t errlen);
/* For the service: store_open, or when the database cannot be written (a
 * read-only mount, no space to migrate), the read-only connection and
 * STORE_READ_ONLY: reads work, writes fail (callbacks answer 503) and each
 * write first tries, at most once a second, to reopen it writable. */
#define STORE_READ_ONLY 2
int store_open_serving(const char *path, struct store **out, char *err, size_t errlen);

/* Opens an existing database read-only: no migrations, nothing written (for
 * inspection and dry runs). A database newer than this binary is refused.
 * Returns 0 or -1 with err. */
int store_open_readonly(const char *path, struct store **out, char *err, size_t errlen);
void store_close(struct store *st); /* NULL is a no-op */

/* Highest migration number embedded in this binary. */
int store_schema_version(void);

/* A callback refused because its Matrix ID is bound to another uuid. */
#define STORE_REFUSED 1

/* One callback for store_record_callbacks; the strings are borrowed. */
struct store_callback {
	enum event_kind ev;
	const char *uuid, *callsign, *matrix_id; /* matrix_id already validated */
	int64_t at_ms;
	const char *refuse; /* non-NULL: journal it as refused for this reason, apply nothing */
};

/* Journals n callbacks and applies each to its user's desired state in one
 * transaction (one fsync: group commit). Each runs in its own savepoint:
 * results[i] is 0 when callback i is applied, STORE_REFUSED when its Matrix
 * ID is bound to another uuid (journalled as refused, nothing else changed:
 * a Matrix ID belongs to the uuid that first named it, unless that user was
 * revoked and this is a /created, which takes it over), -1 when it alone
 * failed (logged). Returns 0 when the transaction committed, -1 when it did
 * not (then nothing was written and every results[i] is -1). */
int store_record_callbacks(struct store *st, const struct store_callback *cbs, size_t n, int *results);

/* store_record_callbacks with one: returns 0, STORE_REFUSED or -1. */
int store_record_callback(struct store *st, enum event_kind ev, const char *uuid, const char *callsign,
			  const char *matrix_id, int64_t now_ms);
/* Journals a callback refused before it reached the desired state (reason:
 * why). Returns 0 or -1. */
int store_record_refused(struct store *st, enum event_kind ev, const char *uuid, const char *callsign,
			 const char *matrix_id, int64_t now_ms, const char *reason);

/* Records what `matrixrmapi adopt` found, in one transaction, never over
 * what a callback recorded: records is an array of {"user", "callsign",
 * "active": bool, "admin": bool}. A user the store does not know is inserted
 * (origin 'adopt', uuid ''); a known user whose admin status is unknown gets
 * "admin"; anything else is kept. Each insert or change is journalled as
 * event 'adopted' with the change in detail. *changes (caller owns) maps
 * each user to "new", "admin" or "kept". Returns 0 or -1 (logged; nothing
 * written). */
int store_adopt(struct store *st, json_t *records, int64_t now_ms, json_t **changes);

/* Interop grants (schema/003): records or refreshes the grant for certcn,
 * durably (idempotent). Returns 0 or -1 (logged). */
int store_interop_grant(struct store *st, const char *certcn, const char *x509cert, int64_t now_ms);
/* 1 when certcn has a grant, 0 when not (or certcn is NULL), -1 on error. */
int store_interop_granted(struct store *st, const char *certcn);
/* Number of grants, or -1 on error. */
int store_interop_count(struct store *st);

/* 0 when the database answers a trivial query. */
int store_ping(struct store *st);

/* Desired users as a JSON array of {"user", "active", "admin", "created_ms",
 * "changed_ms" (the latest callback, adopt or platform change of the row)}
 * sorted by user, without the active users held back for their UserBinding
 * (store_kube_sync) (what a pass reads: 10,000 of them are held through it); "admin" is 1, 0 or null (unknown: never
 * promoted nor demoted). Caller owns the result. NULL on error. */
json_t *store_desired_users(struct store *st);

/* Desired state from Kubernetes (schema/005): one platform User as the
 * watch sees it; the strings are borrowed. held: no UserBinding of ours
 * exists for it yet (an active held user is left alone by the reconciler). */
struct store_kube_user {
	const char *matrix_id, *callsign, *uid;
	int active, admin, held;
};
/* Writes each of the n users whose row differs (origin 'kube'), each write
 * journalled as event 'kube' with the change in detail, in one transaction
 * with one fsync. The platform is the source of truth in this mode: a row
 * of another origin with the same Matrix ID is taken over. *changed (may be
 * NULL): rows written. Returns 0, or -1 (logged; nothing written). */
int store_kube_sync(struct store *st, const struct store_kube_user *users, size_t n, int64_t now_ms, int *changed);
/* The kube users as the last pass left them, for their UserBindings: a JSON
 * array (caller owns) of {user, callsign, uid, active, held, account,
 * pending, failure} sorted by user; failure is the last Synapse error of one
 * of the user's actions on backoff, or null. NULL on error. */
json_t *store_kube_report(struct store *st);

/* Managed rooms: key -> room_id (JSON object, caller owns), and setters. */
json_t *store_rooms(struct store *st);
int store_set_room(struct store *st, const char *key, const char *alias, const char *room_id);

/* Pass and action history. */
int store_pass_begin(struct store *st, int64_t now_ms, int64_t *pass_id);
int store_pass_end(struct store *st, int64_t pass_id, int64_t now_ms, const char *result, int planned, int ok,
		   int failed, const char *summary);
int store_action_record(struct store *st, int64_t pass_id, int64_t now_ms, const char *kind, const char *target,
			const char *room, const char *outcome, const char *errcode, const char *message);
/* Backoff per action key (kind|room|user): next allowed time, attempts. */
int store_backoff_get(struct store *st, const char *key, int64_t *next_ms, int *attempts);
int store_backoff_fail(struct store *st, const char *key, int64_t now_ms, const char *error);
int store_backoff_clear(struct store *st, const char *key);
/* Drops backoff rows whose key is not in keys (JSON array of strings). */
int store_backoff_retain(struct store *st, json_t *keys);
/* The last observed state per user (for `status`), recorded each pass from
 * the rows given ({user, account, joined, levels, pending}), all observed at
 * observed_ms. Only a row that is new or differs from the stored one is
 * written (its changed_ms becomes observed_ms), so a converged pass writes
 * one row (observed_meta); a row of a user the store does not have (users)
 * is removed. A pass gives a row for every desired user. */
int store_observed_record(struct store *st, json_t *observed_users, int64_t observed_ms);
/* The room settings kept as set by hand ([{room, setting, have, want}],
 * have and want any JSON), replacing those recorded, and written only when
 * they differ from them. 0 or -1. */
int store_held_record(struct store *st, json_t *held);
/* The same with the rows made one at a time: next returns 1 with *row (the
 * store releases it), 0 after the last, -1 on an error (nothing written). */
typedef int (*store_row_fn)(void *arg, json_t **row);
int store_observed_record_each(struct store *st, int64_t observed_ms, store_row_fn next, void *arg);
/* Keeps the newest max_passes passes and their actions, and at most the
 * newest 100000 actions overall. */
int store_prune(struct store *st, int max_passes);

/* Statements that failed on this connection since it was opened (a full or
 * read-only disk, a lock held too long); last gets the latest SQLite message.
 * A pass compares the count before and after to know its records were lost. */
int store_failures(struct store *st, char *last, size_t lastlen);

/* Rows of any read-only query as a JSON array of objects (caller owns). */
json_t *store_query(struct store *st, const char *sql);

/* Direct access for status queries. */
struct sqlite3 *store_db(struct store *st);
