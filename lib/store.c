/* store: SQLite access for the whole service. See store.h.
 * Every statement is prepared per call (the volumes are tiny) so that no
 * cached statement outlives a schema change; a helper runs SQL with bound
 * text/int arguments described by a small format string. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "clock.h"
#include "event.h"
#include "embedded.h"
#include "errtext.h"
#include "log.h"
#include "metrics.h"

#define STORE_MAX_ACTIONS 100000

struct store {
	sqlite3 *db;
	char *path; /* set while a read-only stand-in waits to become writable */
	int64_t next_reopen_ms;
	atomic_int failures;  /* statements that failed since open */
	char last_error[256]; /* the latest failure's SQLite message (no data) */
};

/* Binds args by fmt: 's' text (NULL allowed), 'i' int64, 'd' int. */
static int bind_args(sqlite3_stmt *stmt, const char *fmt, va_list ap)
{
	for (int i = 0; fmt && fmt[i]; i++) {
		int rc;

		/* NOLINTBEGIN(clang-analyzer-valist.Uninitialized): a false positive of clang 14 on a va_list parameter (x86-64's va_list is an array) */
		switch (fmt[i]) {
		case 's': {
			const char *s = va_arg(ap, const char *);
			rc = s ? sqlite3_bind_text(stmt, i + 1, s, -1, SQLITE_TRANSIENT)
			       : sqlite3_bind_null(stmt, i + 1);
			break;
		}
		case 'i':
			rc = sqlite3_bind_int64(stmt, i + 1, va_arg(ap, int64_t));
			break;
		default:
			rc = sqlite3_bind_int(stmt, i + 1, va_arg(ap, int));
			break;
		}
		/* NOLINTEND(clang-analyzer-valist.Uninitialized) */
		if (rc != SQLITE_OK)
			return -1;
	}
	return 0;
}

/* Counts and logs a failed statement; the text names the statement, never
 * its bound values. */
static void note_failure(struct store *st, const char *sql)
{
	atomic_fetch_add(&st->failures, 1);
	metrics_store_failure();
	snprintf(st->last_error, sizeof(st->last_error), "%s", sqlite3_errmsg(st->db));
	log_error("store: %s (in: %.60s)", st->last_error, sql);
}

int store_failures(struct store *st, char *last, size_t lastlen)
{
	if (last && lastlen)
		snprintf(last, lastlen, "%s", st->last_error);
	return atomic_load(&st->failures);
}

/* Binds the arguments to a prepared statement, steps it to its end and
 * resets it for the next use; sql names it in a failure. */
static int run_stmt(struct store *st, sqlite3_stmt *stmt, const char *sql, const char *fmt, va_list ap)
{
	int rc = -1;

	if (bind_args(stmt, fmt, ap) == 0) {
		while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
			;
		rc = rc == SQLITE_DONE ? 0 : -1;
	}
	if (rc != 0)
		note_failure(st, sql);
	sqlite3_reset(stmt);
	return rc;
}

/* run_stmt on a statement prepared once for many rows. */
static int exec_prepared(struct store *st, sqlite3_stmt *stmt, const char *sql, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = run_stmt(st, stmt, sql, fmt, ap);
	va_end(ap);
	return rc;
}

static int exec(struct store *st, const char *sql, const char *fmt, ...)
{
	sqlite3_stmt *stmt = NULL;
	va_list ap;
	int rc;

	if (sqlite3_prepare_v2(st->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
		note_failure(st, sql);
		sqlite3_finalize(stmt);
		return -1;
	}
	va_start(ap, fmt);
	rc = run_stmt(st, stmt, sql, fmt, ap);
	va_end(ap);
	sqlite3_finalize(stmt);
	return rc;
}

static int exec_script(struct store *st, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		sqlite3_free(msg);
		note_failure(st, sql);
		return -1;
	}
	return 0;
}

static int migration_number(const char *name)
{
	size_t n = strlen(name);

	if (n < 5 || strcmp(name + n - 4, ".sql") != 0)
		return 0;
	return (int)strtol(name, NULL, 10);
}

int store_schema_version(void)
{
	int max = 0;

	for (size_t i = 0; i < embedded_count; i++) {
		int v = migration_number(embedded_files[i].name);

		if (v > max)
			max = v;
	}
	return max;
}

static int user_version(struct store *st)
{
	sqlite3_stmt *stmt = NULL;
	int v = -1;

	if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &stmt, NULL) == SQLITE_OK &&
	    sqlite3_step(stmt) == SQLITE_ROW)
		v = sqlite3_column_int(stmt, 0);
	sqlite3_finalize(stmt);
	return v;
}

/* Applies every embedded migration above user_version, in order, in one
 * transaction. Returns 0, STORE_ENEWER, or STORE_EMIGRATE. */
static int migrate(struct store *st, char *err, size_t errlen)
{
	int have, want = store_schema_version(), code = STORE_EMIGRATE;
	char pragma[64];

	if (exec_script(st, "BEGIN IMMEDIATE") != 0) {
		snprintf(err, errlen, "DATABASE_PATH: cannot lock the database: %s", sqlite3_errmsg(st->db));
		return STORE_EMIGRATE;
	}
	have = user_version(st);
	if (have > want) {
		snprintf(err, errlen,
			 "DATABASE_PATH: database schema version %d is newer than this "
			 "binary knows (%d); refusing to touch it",
			 have, want);
		code = STORE_ENEWER;
		goto fail;
	}
	for (int v = have + 1; v <= want; v++) {
		const struct embedded_file *f = NULL;

		for (size_t i = 0; i < embedded_count; i++)
			if (migration_number(embedded_files[i].name) == v)
				f = &embedded_files[i];
		if (!f) {
			snprintf(err, errlen, "schema: migration %03d is missing from the binary", v);
			goto fail;
		}
		if (exec_script(st, f->data) != 0) {
			snprintf(err, errlen, "schema: migration %s failed: %s", f->name, sqlite3_errmsg(st->db));
			goto fail;
		}
		log_info("store: applied migration %s", f->name);
	}
	snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", want);
	if (exec_script(st, pragma) != 0 || exec_script(st, "COMMIT") != 0) {
		snprintf(err, errlen, "schema: cannot commit migrations: %s", sqlite3_errmsg(st->db));
		goto fail;
	}
	return 0;
fail:
	exec_script(st, "ROLLBACK");
	return code;
}

static const struct errtext open_texts[] = {
	{STORE_ESYMLINK, "the database path is a symbolic link"},
	{STORE_EPERMS, "the database is readable by others and cannot be tightened"},
	{STORE_EOPEN, "the database cannot be opened"},
	{STORE_ENEWER, "the database's schema is newer than this binary"},
	{STORE_EUNUSABLE, "not a usable SQLite database"},
	{STORE_EMIGRATE, "a schema migration failed"},
};

const char *store_strerror(int code)
{
	return ERRTEXT_LOOKUP(open_texts, code);
}

int store_open(const char *path, struct store **out, char *err, size_t errlen)
{
	struct store *st = NULL;
	struct stat sb;
	mode_t old_mask;
	int rc, code = STORE_EOPEN;

	*out = NULL;
	/* 0600 from the first byte: create under a strict umask (SQLite gives
	 * -wal and -shm the database's mode). Never open()/close() the file
	 * ourselves: closing any descriptor of it drops every POSIX lock this
	 * process holds on it, and another process could then checkpoint and
	 * delete the WAL under a live connection. */
	/* A symlink would let whoever can write its folder redirect the
	 * database: refused, here and by SQLITE_OPEN_NOFOLLOW. */
	if (lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode)) {
		snprintf(err, errlen, "DATABASE_PATH: %s is a symbolic link; refusing to follow it", path);
		return STORE_ESYMLINK;
	}
	if (stat(path, &sb) == 0 && (sb.st_mode & 077) && chmod(path, 0600) != 0) {
		snprintf(err, errlen, "DATABASE_PATH: %s is readable by others and cannot be tightened: %s", path,
			 strerror(errno));
		return STORE_EPERMS;
	}
	old_mask = umask(077);
	st = calloc(1, sizeof(*st));
	rc = st ? sqlite3_open_v2(path, &st->db,
				  SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX |
					  SQLITE_OPEN_NOFOLLOW,
				  NULL)
		: SQLITE_NOMEM;
	umask(old_mask);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "DATABASE_PATH: cannot open %s: %s", path,
			 st && st->db ? sqlite3_errmsg(st->db) : "out of memory");
		goto fail;
	}
	sqlite3_busy_timeout(st->db, 10000);
	/* Refuse a newer database before the first write: switching it to WAL
	 * would already rewrite its header. migrate() checks again under lock. */
	if (user_version(st) > store_schema_version()) {
		snprintf(err, errlen,
			 "DATABASE_PATH: database schema version %d is newer than this "
			 "binary knows (%d); refusing to touch it",
			 user_version(st), store_schema_version());
		code = STORE_ENEWER;
		goto fail;
	}
	if (exec_script(st, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON") != 0) {
		snprintf(err, errlen, "DATABASE_PATH: %s is not a usable SQLite database: %s", path,
			 sqlite3_errmsg(st->db));
		code = STORE_EUNUSABLE;
		goto fail;
	}
	if ((code = migrate(st, err, errlen)) != 0)
		goto fail;
	*out = st;
	return 0;
fail:
	store_close(st);
	return code;
}

int store_open_readonly(const char *path, struct store **out, char *err, size_t errlen)
{
	struct store *st = calloc(1, sizeof(*st));
	int rc = st ? sqlite3_open_v2(path, &st->db,
				      SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_NOFOLLOW, NULL)
		    : SQLITE_NOMEM;

	*out = NULL;
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "DATABASE_PATH: cannot open %s read-only: %s", path,
			 st && st->db ? sqlite3_errmsg(st->db) : "out of memory");
		goto fail;
	}
	sqlite3_busy_timeout(st->db, 10000);
	rc = user_version(st);
	if (rc < 0 || rc > store_schema_version()) {
		snprintf(err, errlen,
			 rc < 0 ? "DATABASE_PATH: %s is not a usable SQLite database"
				: "DATABASE_PATH: %s has a schema newer than this binary knows",
			 path);
		goto fail;
	}
	*out = st;
	return 0;
fail:
	store_close(st);
	return -1;
}

#define REOPEN_EVERY_MS 1000

/* A WAL database on read-only media without its -shm file opens only as
 * immutable (nothing can change it while the media is read-only). */
static int open_immutable(const char *path, struct store **out)
{
	struct store *st = calloc(1, sizeof(*st));
	char uri[4200] = "file:";
	size_t o = strlen(uri);
	int rc;

	*out = NULL;
	for (const char *p = path; st && *p && o + 4 < sizeof(uri) - 16; p++) {
		if (*p == '%' || *p == '?' || *p == '#')
			o += (size_t)snprintf(uri + o, sizeof(uri) - o, "%%%02X", (unsigned char)*p);
		else
			uri[o++] = *p;
	}
	snprintf(uri + o, sizeof(uri) - o, "?immutable=1");
	rc = st ? sqlite3_open_v2(uri, &st->db,
				  SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_NOFOLLOW,
				  NULL)
		: SQLITE_NOMEM;
	if (rc != SQLITE_OK || user_version(st) < 0 || user_version(st) > store_schema_version()) {
		store_close(st);
		return -1;
	}
	*out = st;
	return 0;
}

int store_open_serving(const char *path, struct store **out, char *err, size_t errlen)
{
	char rwerr[512];
	int rc = store_open(path, out, rwerr, sizeof(rwerr));

	if (rc == 0)
		return 0;
	/* A database that cannot be written (read-only mount, full disk at
	 * start) still serves reads: writes answer 503 until it can be
	 * opened for writing again, which each write tries at most once a
	 * second. A newer schema or a symlink is still refused. */
	if (rc == STORE_ENEWER || rc == STORE_ESYMLINK || rc == STORE_EPERMS ||
	    (store_open_readonly(path, out, err, errlen) != 0 && open_immutable(path, out) != 0)) {
		snprintf(err, errlen, "%s", rwerr);
		return -1;
	}
	(*out)->path = strdup(path);
	(*out)->next_reopen_ms = clock_mono_ms() + REOPEN_EVERY_MS;
	log_error("store: %s; serving read-only, writes are refused until it is writable", rwerr);
	return STORE_READ_ONLY;
}

/* Before a write: a read-only stand-in tries to become writable again. */
static void ensure_writable(struct store *st)
{
	struct store *rw = NULL;
	char err[512];
	sqlite3 *old;

	if (!st->path || clock_mono_ms() < st->next_reopen_ms)
		return;
	st->next_reopen_ms = clock_mono_ms() + REOPEN_EVERY_MS;
	if (store_open(st->path, &rw, err, sizeof(err)) != 0)
		return;
	old = st->db;
	st->db = rw->db;
	rw->db = old;
	store_close(rw);
	free(st->path);
	st->path = NULL;
	log_info("store: the database is writable again");
}

void store_close(struct store *st)
{
	if (!st)
		return;
	free(st->path);
	sqlite3_close(st->db);
	free(st);
}

struct sqlite3 *store_db(struct store *st)
{
	return st->db;
}

int store_ping(struct store *st)
{
	return exec(st, "SELECT 1", NULL);
}

static json_t *query_json(struct store *st, const char *sql, const char *fmt, ...);

static int journal_add(struct store *st, enum event_kind ev, const char *uuid, const char *callsign,
		       const char *matrix_id, int64_t now_ms, const char *outcome, const char *detail)
{
	return exec(st,
		    "INSERT INTO journal (at_ms, event, uuid, callsign, matrix_id, outcome, detail) "
		    "VALUES (?, ?, ?, ?, ?, ?, ?)",
		    "issssss", now_ms, event_names[ev].name, uuid, callsign, matrix_id, outcome, detail);
}

/* 1 when matrix_id's row belongs to another Rasenmaeher user than uuid and
 * this event may not take it over; 0 when it may proceed; -1 on error. */
static int bound_elsewhere(struct store *st, enum event_kind ev, const char *uuid, const char *matrix_id)
{
	json_t *rows = query_json(st, "SELECT uuid, active FROM users WHERE matrix_id = ?", "s", matrix_id), *row;
	const char *have;
	int rc;

	if (!rows)
		return -1;
	row = json_array_get(rows, 0);
	have = json_string_value(json_object_get(row, "uuid"));
	/* No row, a row adopt made (uuid ''), or the same user: fine. A
	 * revoked user's Matrix ID passes to the next /created. */
	rc = row && have && have[0] && strcmp(have, uuid) != 0 &&
	     !(ev == EVENT_CREATED && json_integer_value(json_object_get(row, "active")) == 0);
	json_decref(rows);
	return rc;
}

/* The upsert for each event. A user first seen through promote/demote is
 * active (Rasenmaeher only promotes enrolled users); one first seen through
 * revoke is recorded as revoked so that an account appearing later is
 * deactivated then. Only promote/demote say anything about admin status: a
 * user first met through created or revoked is "unknown" (admin NULL), which
 * leaves their levels and admin-room membership as Synapse has them. A revoke
 * leaves the admin status alone: the last promote/demote wins, and a revoked
 * user holds no levels whatever it says. A row adopt made (uuid '') takes the
 * first callback's uuid; a /created with a new uuid that takes over a revoked
 * user's Matrix ID starts with status unknown: it is another person. */
#define ON_CONFLICT " ON CONFLICT (matrix_id) DO UPDATE SET origin = 'callback', updated_ms = ?4, "
#define KEEP_UUID "uuid = CASE WHEN users.uuid = '' THEN ?3 ELSE users.uuid END, "
static const char *const upsert_sql[] = {
	[EVENT_CREATED] = "INSERT INTO users (matrix_id, callsign, uuid, active, admin, created_ms, updated_ms) "
			  "VALUES (?1, ?2, ?3, 1, NULL, ?4, ?4)" ON_CONFLICT
			  "admin = CASE WHEN users.uuid IN ('', ?3) THEN users.admin ELSE NULL END, "
			  "callsign = ?2, uuid = ?3, active = 1, created_ms = ?4",
	[EVENT_REVOKED] = "INSERT INTO users (matrix_id, callsign, uuid, active, admin, created_ms, updated_ms) "
			  "VALUES (?1, ?2, ?3, 0, NULL, 0, ?4)" ON_CONFLICT KEEP_UUID "active = 0",
	[EVENT_PROMOTED] = "INSERT INTO users (matrix_id, callsign, uuid, active, admin, created_ms, updated_ms) "
			   "VALUES (?1, ?2, ?3, 1, 1, 0, ?4)" ON_CONFLICT KEEP_UUID "admin = 1",
	[EVENT_DEMOTED] = "INSERT INTO users (matrix_id, callsign, uuid, active, admin, created_ms, updated_ms) "
			  "VALUES (?1, ?2, ?3, 1, 0, 0, ?4)" ON_CONFLICT KEEP_UUID "admin = 0",
	[EVENT_UPDATED] = NULL,
};
#undef KEEP_UUID
#undef ON_CONFLICT

/* Statements prepared once per batch; index EVENT_UPDATED + 1 is the journal. */
#define JOURNAL_STMT (EVENT_UPDATED + 1)

static int stmt_run(sqlite3_stmt *stmt, const char *fmt, ...)
{
	va_list ap;
	int rc;

	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
	va_start(ap, fmt);
	rc = bind_args(stmt, fmt, ap);
	va_end(ap);
	if (rc != 0)
		return -1;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
		;
	return rc == SQLITE_DONE ? 0 : -1;
}

/* One callback inside the batch's transaction, in its own savepoint so that a
 * failure leaves the others intact: 0 applied, STORE_REFUSED (its Matrix ID
 * is bound to another uuid: journalled as refused, nothing else), -1 failed. */
static int record_one(struct store *st, sqlite3_stmt **stmts, const struct store_callback *cb)
{
	int bound;

	if ((unsigned)cb->ev > EVENT_UPDATED || cb->uuid == NULL || cb->callsign == NULL || cb->matrix_id == NULL)
		return -1;
	if (exec_script(st, "SAVEPOINT cb") != 0)
		return -1;
	if ((bound = cb->refuse ? 1 : bound_elsewhere(st, cb->ev, cb->uuid, cb->matrix_id)) < 0)
		goto fail;
	if (stmt_run(stmts[JOURNAL_STMT],
		     "isss"
		     "sss",
		     cb->at_ms, event_names[cb->ev].name, cb->uuid, cb->callsign, cb->matrix_id,
		     bound ? "refused" : "applied",
		     cb->refuse ? cb->refuse
		     : bound    ? "the Matrix ID belongs to another Rasenmaeher user (uuid)"
				: NULL) != 0 ||
	    (!bound && stmts[cb->ev] != NULL &&
	     stmt_run(stmts[cb->ev], "sssi", cb->matrix_id, cb->callsign, cb->uuid, cb->at_ms) != 0))
		goto fail;
	if (exec_script(st, "RELEASE cb") != 0)
		return -1;
	return bound ? STORE_REFUSED : 0;
fail:
	log_error("store: callback for %s: %s", cb->matrix_id, sqlite3_errmsg(st->db));
	exec_script(st, "ROLLBACK TO cb");
	exec_script(st, "RELEASE cb");
	return -1;
}

int store_record_callbacks(struct store *st, const struct store_callback *cbs, size_t n, int *results)
{
	sqlite3_stmt *stmts[JOURNAL_STMT + 1] = {NULL};
	int rc = -1, began = 0;

	for (size_t i = 0; i < n; i++)
		results[i] = -1;
	if (n == 0)
		return 0;
	ensure_writable(st);
	for (int i = 0; i <= JOURNAL_STMT; i++) {
		const char *sql =
			i == JOURNAL_STMT
				? "INSERT INTO journal (at_ms, event, uuid, callsign, matrix_id, outcome, detail) "
				  "VALUES (?, ?, ?, ?, ?, ?, ?)"
				: upsert_sql[i];

		if (sql != NULL && sqlite3_prepare_v2(st->db, sql, -1, &stmts[i], NULL) != SQLITE_OK) {
			log_error("store: %s (in: %.60s)", sqlite3_errmsg(st->db), sql);
			goto out;
		}
	}
	if (exec_script(st, "BEGIN IMMEDIATE") != 0)
		goto out;
	began = 1;
	for (size_t i = 0; i < n; i++)
		results[i] = record_one(st, stmts, &cbs[i]);
	for (int i = 0; i <= JOURNAL_STMT; i++) {
		sqlite3_finalize(stmts[i]);
		stmts[i] = NULL;
	}
	if (exec_script(st, "COMMIT") != 0)
		goto out;
	began = 0;
	rc = 0;
out:
	for (int i = 0; i <= JOURNAL_STMT; i++)
		sqlite3_finalize(stmts[i]);
	if (began)
		exec_script(st, "ROLLBACK");
	if (rc != 0)
		for (size_t i = 0; i < n; i++)
			results[i] = -1;
	return rc;
}

int store_record_callback(struct store *st, enum event_kind ev, const char *uuid, const char *callsign,
			  const char *matrix_id, int64_t now_ms)
{
	struct store_callback cb = {ev, uuid, callsign, matrix_id, now_ms, NULL};
	int result;

	if (store_record_callbacks(st, &cb, 1, &result) != 0)
		return -1;
	return result;
}

int store_record_refused(struct store *st, enum event_kind ev, const char *uuid, const char *callsign,
			 const char *matrix_id, int64_t now_ms, const char *reason)
{
	ensure_writable(st);
	return journal_add(st, ev, uuid, callsign, matrix_id, now_ms, "refused", reason);
}

/* Runs a query and returns its rows as a JSON array of objects keyed by
 * column name (integers stay integers). NULL on error. */
static json_t *query_json(struct store *st, const char *sql, const char *fmt, ...)
{
	sqlite3_stmt *stmt = NULL;
	json_t *rows = json_array();
	va_list ap;
	int rc;

	if (sqlite3_prepare_v2(st->db, sql, -1, &stmt, NULL) != SQLITE_OK)
		goto fail;
	va_start(ap, fmt);
	rc = bind_args(stmt, fmt, ap);
	va_end(ap);
	if (rc != 0)
		goto fail;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		json_t *row = json_object();

		for (int c = 0; c < sqlite3_column_count(stmt); c++) {
			json_t *v;

			switch (sqlite3_column_type(stmt, c)) {
			case SQLITE_INTEGER:
				v = json_integer(sqlite3_column_int64(stmt, c));
				break;
			case SQLITE_NULL:
				v = json_null();
				break;
			default:
				v = json_string((const char *)sqlite3_column_text(stmt, c));
				break;
			}
			json_object_set_new(row, sqlite3_column_name(stmt, c), v);
		}
		json_array_append_new(rows, row);
	}
	if (rc != SQLITE_DONE)
		goto fail;
	sqlite3_finalize(stmt);
	return rows;
fail:
	note_failure(st, sql);
	sqlite3_finalize(stmt);
	json_decref(rows);
	return NULL;
}

json_t *store_query(struct store *st, const char *sql)
{
	return query_json(st, sql, NULL);
}

json_t *store_desired_users(struct store *st)
{
	return query_json(st,
			  "SELECT matrix_id AS user, active, admin, created_ms, updated_ms AS changed_ms "
			  "FROM users WHERE NOT (held = 1 AND active = 1) ORDER BY matrix_id",
			  NULL);
}

/* One platform User: written only when its row differs. */
static int kube_one(struct store *st, const struct store_kube_user *u, int64_t now_ms, int *written)
{
	json_t *have = NULL, *row, *detail = NULL;
	char *text = NULL;
	int rc = -1;

	*written = 0;
	have = query_json(st, "SELECT callsign, uuid, active, admin, held, origin FROM users WHERE matrix_id = ?", "s",
			  u->matrix_id);
	if (!have)
		return -1;
	row = json_array_get(have, 0);
	if (row && strcmp(json_string_value(json_object_get(row, "origin")), "kube") == 0 &&
	    strcmp(json_string_value(json_object_get(row, "callsign")), u->callsign) == 0 &&
	    strcmp(json_string_value(json_object_get(row, "uuid")), u->uid) == 0 &&
	    json_integer_value(json_object_get(row, "active")) == u->active &&
	    json_is_integer(json_object_get(row, "admin")) &&
	    json_integer_value(json_object_get(row, "admin")) == u->admin &&
	    json_integer_value(json_object_get(row, "held")) == u->held) {
		rc = 0;
		goto out;
	}
	if (exec(st,
		 "INSERT INTO users (matrix_id, callsign, uuid, active, admin, created_ms, updated_ms, origin, held) "
		 "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 'kube', ?7) ON CONFLICT (matrix_id) DO UPDATE SET "
		 "callsign = ?2, uuid = ?3, active = ?4, admin = ?5, updated_ms = ?6, origin = 'kube', held = ?7, "
		 "created_ms = CASE WHEN ?4 = 1 AND users.active = 0 THEN ?6 ELSE users.created_ms END",
		 "sssddid", u->matrix_id, u->callsign, u->uid, u->active, u->admin, now_ms, u->held) != 0)
		goto out;
	detail = json_pack("{s:b, s:b, s:b, s:s}", "active", u->active, "admin", u->admin, "held", u->held, "was",
			   !row ? "new" : json_string_value(json_object_get(row, "origin")));
	text = detail ? json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	if (exec(st,
		 "INSERT INTO journal (at_ms, event, uuid, callsign, matrix_id, outcome, detail) "
		 "VALUES (?, 'kube', ?, ?, ?, 'applied', ?)",
		 "issss", now_ms, u->uid, u->callsign, u->matrix_id, text) != 0)
		goto out;
	*written = 1;
	rc = 0;
out:
	free(text);
	json_decref(detail);
	json_decref(have);
	return rc;
}

int store_kube_sync(struct store *st, const struct store_kube_user *users, size_t n, int64_t now_ms, int *changed)
{
	int count = 0;

	if (changed)
		*changed = 0;
	if (n == 0)
		return 0;
	ensure_writable(st);
	if (exec_script(st, "BEGIN IMMEDIATE") != 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int written;

		if (!users[i].matrix_id || !users[i].callsign || !users[i].uid ||
		    kube_one(st, &users[i], now_ms, &written) != 0) {
			exec_script(st, "ROLLBACK");
			return -1;
		}
		count += written;
	}
	if (exec_script(st, "COMMIT") != 0) {
		exec_script(st, "ROLLBACK");
		return -1;
	}
	if (changed)
		*changed = count;
	return 0;
}

json_t *store_kube_report(struct store *st)
{
	/* Backoff keys are kind|room|user|... (executor_action_key). */
	return query_json(
		st,
		"SELECT u.matrix_id AS user, u.callsign, u.uuid AS uid, u.active, u.held, s.account, "
		"s.pending, (SELECT b.last_error FROM backoff b WHERE instr(b.key, '|' || u.matrix_id || '|') > 0 "
		"ORDER BY b.key LIMIT 1) AS failure "
		"FROM users u JOIN status_users s ON s.matrix_id = u.matrix_id "
		"WHERE u.origin = 'kube' ORDER BY u.matrix_id",
		NULL);
}

/* One adopted record: inserted when the user is new, admin filled in when
 * the store has it unknown, otherwise left alone. Sets *change. */
static int adopt_one(struct store *st, json_t *rec, int64_t now_ms, const char **change)
{
	const char *user = json_string_value(json_object_get(rec, "user"));
	const char *callsign = json_string_value(json_object_get(rec, "callsign"));
	json_t *admin = json_object_get(rec, "admin"), *have = NULL, *row;
	int active = json_is_true(json_object_get(rec, "active"));
	int adm = json_is_true(admin), rc = -1;
	char *detail = NULL;

	*change = "kept";
	if (!user || !callsign || !json_is_boolean(admin))
		return -1;
	have = query_json(st, "SELECT active, admin FROM users WHERE matrix_id = ?", "s", user);
	if (!have)
		return -1;
	row = json_array_get(have, 0);
	if (!row) {
		if (exec(st,
			 "INSERT INTO users (matrix_id, callsign, uuid, active, admin, created_ms, updated_ms, origin) "
			 "VALUES (?, ?, '', ?, ?, 0, ?, 'adopt')",
			 "ssddi", user, callsign, active, adm, now_ms) != 0)
			goto out;
		*change = "new";
	} else if (json_is_null(json_object_get(row, "admin"))) {
		if (exec(st, "UPDATE users SET admin = ?, origin = 'adopt', updated_ms = ? WHERE matrix_id = ?", "dis",
			 adm, now_ms, user) != 0)
			goto out;
		*change = "admin";
		active = json_integer_value(json_object_get(row, "active")) != 0;
	} else {
		rc = 0;
		goto out;
	}
	json_decref(have);
	have = json_pack("{s:s, s:b, s:b}", "change", *change, "active", active, "admin", adm);
	detail = have ? json_dumps(have, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	rc = exec(st,
		  "INSERT INTO journal (at_ms, event, uuid, callsign, matrix_id, detail) "
		  "VALUES (?, 'adopted', '', ?, ?, ?)",
		  "isss", now_ms, callsign, user, detail);
out:
	free(detail);
	json_decref(have);
	return rc;
}

int store_adopt(struct store *st, json_t *records, int64_t now_ms, json_t **changes)
{
	json_t *out = json_object(), *rec;
	size_t i;

	*changes = NULL;
	if (!out || exec_script(st, "BEGIN IMMEDIATE") != 0) {
		json_decref(out);
		return -1;
	}
	json_array_foreach(records, i, rec) {
		const char *change;

		if (adopt_one(st, rec, now_ms, &change) != 0)
			goto fail;
		json_object_set_new(out, json_string_value(json_object_get(rec, "user")), json_string(change));
	}
	if (exec_script(st, "COMMIT") != 0)
		goto fail;
	*changes = out;
	return 0;
fail:
	exec_script(st, "ROLLBACK");
	json_decref(out);
	return -1;
}

int store_interop_grant(struct store *st, const char *certcn, const char *x509cert, int64_t now_ms)
{
	ensure_writable(st);
	return exec(st,
		    "INSERT INTO interop_grants (certcn, x509cert, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?3) "
		    "ON CONFLICT (certcn) DO UPDATE SET x509cert = ?2, updated_ms = ?3",
		    "ssi", certcn, x509cert, now_ms);
}

int store_interop_granted(struct store *st, const char *certcn)
{
	json_t *rows =
		certcn ? query_json(st, "SELECT 1 AS g FROM interop_grants WHERE certcn = ?", "s", certcn) : NULL;
	int rc = rows ? json_array_size(rows) > 0 : -1;

	json_decref(rows);
	return certcn ? rc : 0;
}

int store_interop_count(struct store *st)
{
	json_t *rows = query_json(st, "SELECT COUNT(*) AS n FROM interop_grants", NULL);
	int rc = rows ? (int)json_integer_value(json_object_get(json_array_get(rows, 0), "n")) : -1;

	json_decref(rows);
	return rc;
}

json_t *store_rooms(struct store *st)
{
	json_t *rows = query_json(st, "SELECT key, room_id FROM rooms ORDER BY key", NULL);
	json_t *out, *row;
	size_t i;

	if (!rows)
		return NULL;
	out = json_object();
	json_array_foreach(rows, i, row)
		json_object_set(out, json_string_value(json_object_get(row, "key")), json_object_get(row, "room_id"));
	json_decref(rows);
	return out;
}

int store_set_room(struct store *st, const char *key, const char *alias, const char *room_id)
{
	return exec(st,
		    "INSERT INTO rooms (key, alias, room_id) VALUES (?, ?, ?) ON CONFLICT (key) "
		    "DO UPDATE SET alias = excluded.alias, room_id = excluded.room_id",
		    "sss", key, alias, room_id);
}

int store_pass_begin(struct store *st, int64_t now_ms, int64_t *pass_id)
{
	ensure_writable(st);
	if (exec(st, "INSERT INTO passes (started_ms) VALUES (?)", "i", now_ms) != 0)
		return -1;
	*pass_id = sqlite3_last_insert_rowid(st->db);
	return 0;
}

int store_pass_end(struct store *st, int64_t pass_id, int64_t now_ms, const char *result, int planned, int ok,
		   int failed, const char *summary)
{
	return exec(st,
		    "UPDATE passes SET ended_ms = ?, result = ?, planned = ?, ok = ?, failed = ?, "
		    "summary = ? WHERE id = ?",
		    "isddds"
		    "i",
		    now_ms, result, planned, ok, failed, summary, pass_id);
}

int store_action_record(struct store *st, int64_t pass_id, int64_t now_ms, const char *kind, const char *target,
			const char *room, const char *outcome, const char *errcode, const char *message)
{
	metrics_action(kind, outcome);
	return exec(st,
		    "INSERT INTO actions (pass_id, at_ms, kind, target, room, outcome, errcode, message) "
		    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		    "iissssss", pass_id, now_ms, kind, target, room, outcome, errcode, message);
}

int store_backoff_get(struct store *st, const char *key, int64_t *next_ms, int *attempts)
{
	json_t *rows = query_json(st, "SELECT next_ms, attempts FROM backoff WHERE key = ?", "s", key);
	json_t *row;

	*next_ms = 0;
	*attempts = 0;
	if (!rows)
		return -1;
	if ((row = json_array_get(rows, 0))) {
		*next_ms = json_integer_value(json_object_get(row, "next_ms"));
		*attempts = (int)json_integer_value(json_object_get(row, "attempts"));
	}
	json_decref(rows);
	return 0;
}

int store_backoff_fail(struct store *st, const char *key, int64_t now_ms, const char *error)
{
	/* 5 s, 10 s, 20 s ... capped at 10 minutes. */
	return exec(st,
		    "INSERT INTO backoff (key, attempts, next_ms, last_error) VALUES (?1, 1, ?2 + 5000, ?3) "
		    "ON CONFLICT (key) DO UPDATE SET attempts = attempts + 1, "
		    "next_ms = ?2 + MIN(600000, 5000 * (1 << MIN(attempts, 7))), last_error = ?3",
		    "sis", key, now_ms, error);
}

int store_backoff_clear(struct store *st, const char *key)
{
	return exec(st, "DELETE FROM backoff WHERE key = ?", "s", key);
}

int store_backoff_retain(struct store *st, json_t *keys)
{
	char *list = json_dumps(keys, JSON_COMPACT);
	int rc = list ? exec(st, "DELETE FROM backoff WHERE key NOT IN (SELECT value FROM json_each(?))", "s", list)
		      : -1;

	free(list);
	return rc;
}

/* One observed row: inserted when new, updated only when it differs. */
static const char observed_upsert[] =
	"INSERT INTO observed_users (matrix_id, account, joined, levels, pending, changed_ms) "
	"VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (matrix_id) DO UPDATE SET account = excluded.account, "
	"joined = excluded.joined, levels = excluded.levels, pending = excluded.pending, "
	"changed_ms = excluded.changed_ms WHERE account IS NOT excluded.account OR joined IS NOT excluded.joined "
	"OR levels IS NOT excluded.levels OR pending IS NOT excluded.pending";

static int observed_row_write(struct store *st, sqlite3_stmt *upsert, json_t *row, int64_t observed_ms)
{
	const char *id = json_string_value(json_object_get(row, "user"));
	char *joined = json_dumps(json_object_get(row, "joined"), JSON_COMPACT);
	char *levels = json_dumps(json_object_get(row, "levels"), JSON_COMPACT);
	int rc = -1;

	if (id && joined && levels)
		rc = exec_prepared(st, upsert, observed_upsert, "ssssdi", id,
				   json_string_value(json_object_get(row, "account")), joined, levels,
				   (int)json_integer_value(json_object_get(row, "pending")), observed_ms);
	free(joined);
	free(levels);
	return rc;
}

int store_observed_record_each(struct store *st, int64_t observed_ms, store_row_fn next, void *arg)
{
	sqlite3_stmt *upsert = NULL;
	json_t *row = NULL;
	int got;

	if (exec_script(st, "BEGIN IMMEDIATE") != 0)
		return -1;
	/* One statement for all the rows: 10,000 of them every pass. */
	if (sqlite3_prepare_v2(st->db, observed_upsert, -1, &upsert, NULL) != SQLITE_OK) {
		note_failure(st, observed_upsert);
		goto fail;
	}
	while ((got = next(arg, &row)) == 1) {
		int rc = observed_row_write(st, upsert, row, observed_ms);

		json_decref(row);
		row = NULL;
		if (rc != 0)
			goto fail;
	}
	sqlite3_finalize(upsert);
	upsert = NULL;
	if (got != 0 ||
	    exec(st, "DELETE FROM observed_users WHERE matrix_id NOT IN (SELECT matrix_id FROM users)", NULL) != 0 ||
	    exec(st,
		 "INSERT INTO observed_meta (id, observed_ms) VALUES (1, ?) "
		 "ON CONFLICT (id) DO UPDATE SET observed_ms = excluded.observed_ms",
		 "i", observed_ms) != 0)
		goto fail;
	if (exec_script(st, "COMMIT") == 0)
		return 0;
fail:
	sqlite3_finalize(upsert);
	/* also after a failed COMMIT: a transaction left open would make
	 * every later write of this connection fail */
	exec_script(st, "ROLLBACK");
	return -1;
}

/* 1 when the two arrays hold the same rows in any order (a handful). */
static int same_rows(json_t *a, json_t *b)
{
	json_t *x, *y;
	size_t i, j;

	if (json_array_size(a) != json_array_size(b))
		return 0;
	json_array_foreach(a, i, x) {
		int found = 0;

		json_array_foreach(b, j, y)
			found |= json_equal(x, y);
		if (!found)
			return 0;
	}
	return 1;
}

int store_held_record(struct store *st, json_t *held)
{
	json_t *have =
		query_json(st, "SELECT room, setting, have, want FROM held_settings ORDER BY room, setting", NULL);
	json_t *want = json_array(), *h;
	size_t i;
	int rc = -1;

	if (!have || !want)
		goto out;
	json_array_foreach(held, i, h) {
		char *hv = json_dumps(json_object_get(h, "have"), JSON_ENCODE_ANY | JSON_COMPACT);
		char *wv = json_dumps(json_object_get(h, "want"), JSON_ENCODE_ANY | JSON_COMPACT);

		if (hv && wv)
			json_array_append_new(want, json_pack("{s:O, s:O, s:s, s:s}", "room",
							      json_object_get(h, "room"), "setting",
							      json_object_get(h, "setting"), "have", hv, "want", wv));
		free(hv);
		free(wv);
	}
	if (same_rows(have, want)) {
		rc = 0;
		goto out;
	}
	if (exec_script(st, "BEGIN IMMEDIATE") != 0)
		goto out;
	rc = exec(st, "DELETE FROM held_settings", NULL);
	json_array_foreach(want, i, h)
		if (rc == 0)
			rc = exec(
				st,
				"INSERT OR REPLACE INTO held_settings (room, setting, have, want) VALUES (?, ?, ?, ?)",
				"ssss", json_string_value(json_object_get(h, "room")),
				json_string_value(json_object_get(h, "setting")),
				json_string_value(json_object_get(h, "have")),
				json_string_value(json_object_get(h, "want")));
	if (rc == 0 && exec_script(st, "COMMIT") == 0)
		goto out;
	exec_script(st, "ROLLBACK");
	rc = -1;
out:
	json_decref(have);
	json_decref(want);
	return rc;
}

/* store_observed_record's rows, one at a time. */
struct array_rows {
	json_t *rows;
	size_t next;
};

static int next_array_row(void *arg, json_t **row)
{
	struct array_rows *a = arg;

	if (a->next >= json_array_size(a->rows))
		return 0;
	*row = json_incref(json_array_get(a->rows, a->next++));
	return 1;
}

int store_observed_record(struct store *st, json_t *observed_users, int64_t observed_ms)
{
	struct array_rows a = {observed_users, 0};

	return store_observed_record_each(st, observed_ms, next_array_row, &a);
}

int store_prune(struct store *st, int max_passes)
{
	/* By rank, not by id arithmetic: ids need not be contiguous. Actions
	 * are capped too: a long backlog of deferred actions is recorded
	 * again every pass. */
	if (exec(st,
		 "DELETE FROM passes WHERE id NOT IN "
		 "(SELECT id FROM passes ORDER BY id DESC LIMIT MAX(?, 0))",
		 "d", max_passes) != 0)
		return -1;
	return exec(st,
		    "DELETE FROM actions WHERE id <= "
		    "(SELECT id FROM actions ORDER BY id DESC LIMIT 1 OFFSET ?)",
		    "d", STORE_MAX_ACTIONS);
}
