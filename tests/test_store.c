/* test_store: the SQLite store on real files in a mkdtemp directory.
 * Covers creation (mode 0600 for the file, -wal and -shm), migrations and
 * refusal of a newer schema, the durability pragmas, each callback's effect
 * on the desired state (a table of event sequences with the expected row),
 * the journal, rooms, pass/action history with pruning, backoff, observed
 * state and the status view, and visibility of committed callbacks to other
 * connections, including one in another process after a second store_open in
 * this one (a process that drops its own POSIX locks on the file lets another
 * process delete the WAL under its live connection).
 *
 * The test binary re-executes itself with "--count-journal PATH" to be that
 * other process. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "store.h"

struct fixture {
	char dir[256];
	char path[300];
	struct store *st;
};

static void path_with(const struct fixture *f, const char *suffix, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s%s", f->path, suffix);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_store.XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/matrixrmapi.db", f->dir);
	*state = f;
	return 0;
}

/* Opens the fixture's store; most tests start here. */
static int setup_open(void **state)
{
	struct fixture *f;
	char err[512];

	if (setup(state) != 0)
		return -1;
	f = *state;
	if (store_open(f->path, &f->st, err, sizeof(err)) != 0) {
		print_error("store_open: %s\n", err);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	static const char *suffixes[] = {"", "-wal", "-shm", "-journal", ".copy"};
	struct fixture *f = *state;
	char p[400];

	store_close(f->st);
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		path_with(f, suffixes[i], p, sizeof(p));
		unlink(p);
	}
	snprintf(p, sizeof(p), "%s/plain", f->dir);
	unlink(p);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* ---- small SQL helpers on the store's own connection ------------------ */

static int64_t q_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *stmt = NULL;
	int64_t v;

	if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
		fail_msg("prepare \"%s\": %s", sql, sqlite3_errmsg(db));
	if (sqlite3_step(stmt) != SQLITE_ROW)
		fail_msg("no row from \"%s\"", sql);
	v = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	return v;
}

/* First column of the first row as text, copied into out. */
static const char *q_text(sqlite3 *db, const char *sql, char *out, size_t outlen)
{
	sqlite3_stmt *stmt = NULL;
	const unsigned char *t;

	if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
		fail_msg("prepare \"%s\": %s", sql, sqlite3_errmsg(db));
	if (sqlite3_step(stmt) != SQLITE_ROW)
		fail_msg("no row from \"%s\"", sql);
	t = sqlite3_column_text(stmt, 0);
	snprintf(out, outlen, "%s", t ? (const char *)t : "(null)");
	sqlite3_finalize(stmt);
	return out;
}

static int64_t count_rows(struct store *st, const char *table)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM %s", table);
	return q_int(store_db(st), sql);
}

static mode_t file_mode(const char *path)
{
	struct stat sb;

	if (stat(path, &sb) != 0)
		fail_msg("stat %s failed", path);
	return sb.st_mode & 07777;
}

static int64_t count_journal_in_child(const char *path);

/* ---- creation, migrations, durability --------------------------------- */

static void test_open_creates_0600_and_migrates(void **state)
{
	struct fixture *f = *state;
	char err[512], p[400];
	mode_t old = umask(022), now;

	/* a permissive umask must not leak into the file modes */
	if (store_open(f->path, &f->st, err, sizeof(err)) != 0)
		fail_msg("store_open: %s", err);
	now = umask(old);
	assert_int_equal(now, 022); /* store_open restored the process umask */
	assert_non_null(f->st);

	assert_int_equal(store_record_callback(f->st, EVENT_CREATED, "u-1", "Alpha", "@alpha:example.test", 1000), 0);
	if (file_mode(f->path) != 0600)
		fail_msg("database mode: have %04o, want 0600", (unsigned)file_mode(f->path));
	path_with(f, "-wal", p, sizeof(p));
	if (file_mode(p) != 0600)
		fail_msg("-wal mode: have %04o, want 0600", (unsigned)file_mode(p));
	path_with(f, "-shm", p, sizeof(p));
	if (file_mode(p) != 0600)
		fail_msg("-shm mode: have %04o, want 0600", (unsigned)file_mode(p));

	assert_true(store_schema_version() >= 1);
	assert_int_equal(q_int(store_db(f->st), "PRAGMA user_version"), store_schema_version());
	/* the schema is there */
	assert_int_equal(q_int(store_db(f->st),
			       "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN "
			       "('users', 'journal', 'rooms', 'passes', 'actions', 'backoff', 'observed_users', "
			       "'observed_meta')"),
			 8);
	assert_int_equal(q_int(store_db(f->st),
			       "SELECT COUNT(*) FROM sqlite_master WHERE type = 'view' AND name = 'status_users'"),
			 1);
	assert_int_equal(store_ping(f->st), 0);
}

/* An existing file readable by others is tightened to 0600. */
static void test_open_tightens_existing_file(void **state)
{
	struct fixture *f = *state;
	char err[512];
	int fd;

	fd = open(f->path, O_RDWR | O_CREAT, 0644);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(chmod(f->path, 0644), 0);
	if (store_open(f->path, &f->st, err, sizeof(err)) != 0)
		fail_msg("store_open on an empty file: %s", err);
	if (file_mode(f->path) != 0600)
		fail_msg("database mode: have %04o, want 0600", (unsigned)file_mode(f->path));
}

static void test_reopen_is_idempotent(void **state)
{
	struct fixture *f = *state;
	char err[512], before[4096], after[4096];

	assert_int_equal(store_record_callback(f->st, EVENT_CREATED, "u-1", "Alpha", "@alpha:example.test", 1000), 0);
	q_text(store_db(f->st),
	       "SELECT group_concat(name || ':' || sql, ';') FROM "
	       "(SELECT name, sql FROM sqlite_master ORDER BY name)",
	       before, sizeof(before));
	store_close(f->st);
	f->st = NULL;
	for (int i = 0; i < 3; i++) {
		if (store_open(f->path, &f->st, err, sizeof(err)) != 0)
			fail_msg("reopen %d: %s", i + 1, err);
		assert_int_equal(q_int(store_db(f->st), "PRAGMA user_version"), store_schema_version());
		q_text(store_db(f->st),
		       "SELECT group_concat(name || ':' || sql, ';') FROM "
		       "(SELECT name, sql FROM sqlite_master ORDER BY name)",
		       after, sizeof(after));
		assert_string_equal(after, before);
		assert_int_equal(count_rows(f->st, "users"), 1);
		assert_int_equal(count_rows(f->st, "journal"), 1);
		store_close(f->st);
		f->st = NULL;
	}
}

static unsigned char *read_all(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	unsigned char *buf;
	long n;

	assert_non_null(fp);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	assert_int_equal(fseek(fp, 0, SEEK_SET), 0);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	assert_int_equal(fclose(fp), 0);
	*len = (size_t)n;
	return buf;
}

/* A database from a newer binary: refused with a message naming the
 * versions, and not modified in any way (not even its journal mode). */
static void test_newer_schema_refused_and_unchanged(void **state)
{
	struct fixture *f = *state;
	char err[512] = "", sql[128], p[400];
	unsigned char *before, *after;
	size_t before_len, after_len;
	sqlite3 *db = NULL;
	int newer = store_schema_version() + 1;

	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", newer);
	assert_int_equal(sqlite3_exec(db,
				      "CREATE TABLE future (x TEXT); "
				      "INSERT INTO future VALUES ('from the future')",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(chmod(f->path, 0600), 0);
	before = read_all(f->path, &before_len);

	assert_int_equal(store_open(f->path, &f->st, err, sizeof(err)), STORE_ENEWER);
	assert_null(f->st);
	if (!strstr(err, "DATABASE_PATH") || !strstr(err, "newer"))
		fail_msg("have \"%s\", want a message naming DATABASE_PATH and saying it is newer", err);
	snprintf(sql, sizeof(sql), "%d", newer);
	if (!strstr(err, sql))
		fail_msg("have \"%s\", want it to name version %d", err, newer);

	after = read_all(f->path, &after_len);
	if (after_len != before_len || memcmp(before, after, before_len) != 0)
		fail_msg("the refused database file changed (%zu -> %zu bytes)", before_len, after_len);
	free(before);
	free(after);
	path_with(f, "-wal", p, sizeof(p));
	assert_int_not_equal(access(p, F_OK), 0);

	/* still the future's schema and data */
	assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(q_int(db, "PRAGMA user_version"), newer);
	assert_int_equal(q_int(db, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'users'"), 0);
	assert_int_equal(q_int(db, "SELECT COUNT(*) FROM future"), 1);
	sqlite3_close(db);
}

static void test_open_errors(void **state)
{
	struct fixture *f = *state;
	struct store *st = (struct store *)f; /* must be reset to NULL */
	char err[512] = "", p[400];
	FILE *fp;

	snprintf(p, sizeof(p), "%s/no/such/dir/m.db", f->dir);
	assert_int_equal(store_open(p, &st, err, sizeof(err)), STORE_EOPEN);
	assert_null(st);
	if (strncmp(err, "DATABASE_PATH:", 14) != 0)
		fail_msg("missing directory: have \"%s\", want a message beginning DATABASE_PATH:", err);

	snprintf(p, sizeof(p), "%s/plain", f->dir);
	fp = fopen(p, "w");
	assert_non_null(fp);
	for (int i = 0; i < 200; i++)
		fputs("this is not an SQLite database. ", fp);
	assert_int_equal(fclose(fp), 0);
	chmod(p, 0600);
	err[0] = '\0';
	assert_int_equal(store_open(p, &st, err, sizeof(err)), STORE_EUNUSABLE);
	assert_null(st);
	if (strncmp(err, "DATABASE_PATH:", 14) != 0)
		fail_msg("garbage file: have \"%s\", want a message beginning DATABASE_PATH:", err);
	store_close(NULL); /* no-op */
	assert_string_equal(store_strerror(STORE_ENEWER), "the database's schema is newer than this binary");
	assert_string_equal(store_strerror(0), "success");
}

static void test_durability_flags(void **state)
{
	struct fixture *f = *state;
	char mode[32];

	q_text(store_db(f->st), "PRAGMA journal_mode", mode, sizeof(mode));
	if (strcmp(mode, "wal") != 0)
		fail_msg("journal_mode: have %s, want wal", mode);
	if (q_int(store_db(f->st), "PRAGMA synchronous") != 2)
		fail_msg("synchronous: have %" PRId64 ", want 2 (FULL)", q_int(store_db(f->st), "PRAGMA synchronous"));
	assert_int_equal(q_int(store_db(f->st), "PRAGMA foreign_keys"), 1);
}

/* ---- callbacks -------------------------------------------------------- */

#define MAX_EV 6

struct cb_case {
	const char *name;
	enum event_kind ev[MAX_EV];
	int nev;
	int want_row;       /* 0: no users row at all */
	int active, admin;  /* admin -1: NULL, unknown */
	int64_t created_ms; /* the event i happens at (i + 1) * 1000 */
};

static const struct cb_case cb_cases[] = {
	{"created: admin unknown", {EVENT_CREATED}, 1, 1, 1, -1, 1000},
	{"created, revoked", {EVENT_CREATED, EVENT_REVOKED}, 2, 1, 0, -1, 1000},
	{"created, promoted", {EVENT_CREATED, EVENT_PROMOTED}, 2, 1, 1, 1, 1000},
	{"created, promoted, demoted", {EVENT_CREATED, EVENT_PROMOTED, EVENT_DEMOTED}, 3, 1, 1, 0, 1000},
	{"promote, demote, promote: last wins",
	 {EVENT_CREATED, EVENT_PROMOTED, EVENT_DEMOTED, EVENT_PROMOTED},
	 4,
	 1,
	 1,
	 1,
	 1000},
	{"demote, promote, demote: last wins",
	 {EVENT_CREATED, EVENT_DEMOTED, EVENT_PROMOTED, EVENT_DEMOTED},
	 4,
	 1,
	 1,
	 0,
	 1000},
	{"created, updated: journal only", {EVENT_CREATED, EVENT_UPDATED}, 2, 1, 1, -1, 1000},
	{"updated alone: no user", {EVENT_UPDATED}, 1, 0, 0, 0, 0},
	{"promoted, unknown user", {EVENT_PROMOTED}, 1, 1, 1, 1, 0},
	{"promote then demote, unknown user", {EVENT_PROMOTED, EVENT_DEMOTED}, 2, 1, 1, 0, 0},
	{"revoked, unknown user", {EVENT_REVOKED}, 1, 1, 0, -1, 0},
	{"demoted, unknown user", {EVENT_DEMOTED}, 1, 1, 1, 0, 0},
	{"revoked admin keeps the admin flag", {EVENT_CREATED, EVENT_PROMOTED, EVENT_REVOKED}, 3, 1, 0, 1, 1000},
	{"promoted, revoked, re-created: last promote wins",
	 {EVENT_CREATED, EVENT_PROMOTED, EVENT_REVOKED, EVENT_CREATED},
	 4,
	 1,
	 1,
	 1,
	 4000},
	{"re-created after revoke", {EVENT_CREATED, EVENT_REVOKED, EVENT_CREATED}, 3, 1, 1, -1, 3000},
	{"demoted, re-created: stays not admin", {EVENT_CREATED, EVENT_DEMOTED, EVENT_CREATED}, 3, 1, 1, 0, 3000},
	{"promoted, created again: stays admin", {EVENT_PROMOTED, EVENT_CREATED}, 2, 1, 1, 1, 2000},
	{"revoked, then created", {EVENT_REVOKED, EVENT_CREATED}, 2, 1, 1, -1, 2000},
};

static const char *ev_name(enum event_kind ev)
{
	static const char *names[] = {"created", "revoked", "promoted", "demoted", "updated"};

	return names[ev];
}

/* Fetches the users row of mxid; 0 when there is none. */
static int user_row(struct store *st, const char *mxid, int *active, int *admin, int64_t *created_ms,
		    int64_t *updated_ms, char *callsign, size_t cslen)
{
	sqlite3_stmt *stmt = NULL;
	int found = 0;

	assert_int_equal(sqlite3_prepare_v2(store_db(st),
					    "SELECT active, admin, created_ms, updated_ms, callsign "
					    "FROM users WHERE matrix_id = ?",
					    -1, &stmt, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(stmt, 1, mxid, -1, SQLITE_STATIC);
	if (sqlite3_step(stmt) == SQLITE_ROW) {
		found = 1;
		*active = sqlite3_column_int(stmt, 0);
		*admin = sqlite3_column_type(stmt, 1) == SQLITE_NULL ? -1 : sqlite3_column_int(stmt, 1);
		*created_ms = sqlite3_column_int64(stmt, 2);
		*updated_ms = sqlite3_column_int64(stmt, 3);
		snprintf(callsign, cslen, "%s", (const char *)sqlite3_column_text(stmt, 4));
	}
	sqlite3_finalize(stmt);
	return found;
}

static void test_callback_effects_table(void **state)
{
	struct fixture *f = *state;
	int failures = 0;

	for (size_t i = 0; i < sizeof(cb_cases) / sizeof(cb_cases[0]); i++) {
		const struct cb_case *c = &cb_cases[i];
		char mxid[64], callsign[32], have_cs[64];
		int active = -1, admin = -1, found;
		int64_t created = -1, updated = -1;

		snprintf(callsign, sizeof(callsign), "Case%zu", i);
		snprintf(mxid, sizeof(mxid), "@case%zu:example.test", i);
		for (int e = 0; e < c->nev; e++)
			assert_int_equal(store_record_callback(f->st, c->ev[e], "uuid-x", callsign, mxid,
							       (int64_t)(e + 1) * 1000),
					 0);
		found = user_row(f->st, mxid, &active, &admin, &created, &updated, have_cs, sizeof(have_cs));
		if (found != c->want_row) {
			print_error("%s: have %s, want %s\n", c->name, found ? "a users row" : "no row",
				    c->want_row ? "a users row" : "no row");
			failures++;
			continue;
		}
		if (!found)
			continue;
		if (active != c->active || admin != c->admin || created != c->created_ms) {
			print_error("%s: have active %d admin %d created_ms %" PRId64
				    ", want active %d admin %d created_ms %" PRId64 "\n",
				    c->name, active, admin, created, c->active, c->admin, c->created_ms);
			failures++;
		}
		if (strcmp(have_cs, callsign) != 0) {
			print_error("%s: callsign: have %s, want %s\n", c->name, have_cs, callsign);
			failures++;
		}
		/* updated_ms is the time of the last event that changed the row */
		{
			int last = c->nev - 1;

			while (last > 0 && c->ev[last] == EVENT_UPDATED)
				last--;
			if (updated != (int64_t)(last + 1) * 1000) {
				print_error("%s: updated_ms: have %" PRId64 ", want %d\n", c->name, updated,
					    (last + 1) * 1000);
				failures++;
			}
		}
	}
	assert_int_equal(failures, 0);
}

/* /updated with a new callsign changes nothing but the journal. */
static void test_updated_changes_no_user(void **state)
{
	struct fixture *f = *state;
	char cs[64] = "";
	int active = -2, admin = -2; /* -2: never set */
	int64_t created = -2, updated = -2;

	assert_int_equal(store_record_callback(f->st, EVENT_CREATED, "u-1", "Alpha", "@alpha:example.test", 1000), 0);
	assert_int_equal(store_record_callback(f->st, EVENT_UPDATED, "u-1", "Alpha2", "@alpha2:example.test", 2000), 0);
	assert_int_equal(count_rows(f->st, "users"), 1);
	assert_int_equal(user_row(f->st, "@alpha:example.test", &active, &admin, &created, &updated, cs, sizeof(cs)),
			 1);
	assert_string_equal(cs, "Alpha");
	assert_int_equal(active, 1);
	assert_int_equal(admin, -1);
	assert_int_equal(created, 1000);
	assert_int_equal(updated, 1000);
	assert_int_equal(count_rows(f->st, "journal"), 2);
}

static void test_journal_in_order(void **state)
{
	static const enum event_kind evs[] = {EVENT_CREATED, EVENT_PROMOTED, EVENT_UPDATED,
					      EVENT_DEMOTED, EVENT_REVOKED,  EVENT_CREATED};
	struct fixture *f = *state;
	json_t *rows, *row;
	size_t i;

	for (i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
		assert_int_equal(store_record_callback(f->st, evs[i], "uuid-bravo", "Bravo", "@bravo:example.test",
						       (int64_t)(10 + i)),
				 0);
	/* an unknown event is refused and not journaled */
	assert_int_equal(store_record_callback(f->st, (enum event_kind)99, "u", "Bravo", "@bravo:example.test", 99),
			 -1);

	rows = store_query(f->st, "SELECT at_ms, event, uuid, callsign, matrix_id FROM journal ORDER BY id");
	assert_non_null(rows);
	if (json_array_size(rows) != sizeof(evs) / sizeof(evs[0]))
		fail_msg("journal rows: have %zu, want %zu", json_array_size(rows), sizeof(evs) / sizeof(evs[0]));
	json_array_foreach(rows, i, row) {
		if (strcmp(json_string_value(json_object_get(row, "event")), ev_name(evs[i])) != 0)
			fail_msg("journal row %zu: have event %s, want %s", i,
				 json_string_value(json_object_get(row, "event")), ev_name(evs[i]));
		assert_int_equal(json_integer_value(json_object_get(row, "at_ms")), 10 + (int64_t)i);
		assert_string_equal(json_string_value(json_object_get(row, "uuid")), "uuid-bravo");
		assert_string_equal(json_string_value(json_object_get(row, "callsign")), "Bravo");
		assert_string_equal(json_string_value(json_object_get(row, "matrix_id")), "@bravo:example.test");
	}
	json_decref(rows);
}

/* A Matrix ID belongs to the Rasenmaeher user (uuid) that first named it:
 * "Alice" and "alice" are two users, and the second is refused, journalled,
 * and changes nothing; after a revoke the next /created takes over, as a new
 * person (admin status unknown). */
static void test_uuid_binding(void **state)
{
	struct fixture *f = *state;
	const char *mx = "@alice:example.test";
	char cs[64] = "";
	int active = -2, admin = -2; /* -2: never set */
	int64_t created = -2, updated = -2;

	assert_int_equal(store_record_callback(f->st, EVENT_CREATED, "uuid-a", "Alice", mx, 1000), 0);
	assert_int_equal(store_record_callback(f->st, EVENT_PROMOTED, "uuid-a", "Alice", mx, 1100), 0);
	assert_int_equal(store_record_callback(f->st, EVENT_CREATED, "uuid-b", "alice", mx, 1200), STORE_REFUSED);
	assert_int_equal(store_record_callback(f->st, EVENT_DEMOTED, "uuid-b", "alice", mx, 1300), STORE_REFUSED);
	assert_int_equal(store_record_callback(f->st, EVENT_REVOKED, "uuid-b", "alice", mx, 1400), STORE_REFUSED);
	assert_int_equal(user_row(f->st, mx, &active, &admin, &created, &updated, cs, sizeof(cs)), 1);
	assert_string_equal(cs, "Alice");
	assert_int_equal(active, 1);
	assert_int_equal(admin, 1);
	assert_int_equal(created, 1000);
	assert_int_equal(q_int(store_db(f->st), "SELECT COUNT(*) FROM users WHERE uuid = 'uuid-a'"), 1);
	assert_int_equal(
		q_int(store_db(f->st), "SELECT COUNT(*) FROM journal WHERE outcome = 'refused' AND uuid = 'uuid-b'"),
		3);
	assert_int_equal(q_int(store_db(f->st), "SELECT COUNT(*) FROM journal WHERE outcome = 'applied'"), 2);

	/* revoked: only a /created may take the Matrix ID over */
	assert_int_equal(store_record_callback(f->st, EVENT_REVOKED, "uuid-a", "Alice", mx, 1500), 0);
	assert_int_equal(store_record_callback(f->st, EVENT_PROMOTED, "uuid-b", "alice", mx, 1600), STORE_REFUSED);
	assert_int_equal(store_record_callback(f->st, EVENT_CREATED, "uuid-b", "alice", mx, 1700), 0);
	assert_int_equal(user_row(f->st, mx, &active, &admin, &created, &updated, cs, sizeof(cs)), 1);
	assert_string_equal(cs, "alice");
	assert_int_equal(active, 1);
	assert_int_equal(admin, -1); /* a new person: unknown, not the old user's admin */
	assert_int_equal(created, 1700);
	assert_int_equal(q_int(store_db(f->st), "SELECT COUNT(*) FROM users WHERE uuid = 'uuid-b'"), 1);
	/* and now the first user is the stranger */
	assert_int_equal(store_record_callback(f->st, EVENT_PROMOTED, "uuid-a", "Alice", mx, 1800), STORE_REFUSED);

	assert_int_equal(store_record_refused(f->st, EVENT_CREATED, "uuid-c", "matrixrmapi-bot",
					      "@matrixrmapi-bot:example.test", 1900, "reserved"),
			 0);
	assert_int_equal(
		q_int(store_db(f->st), "SELECT COUNT(*) FROM users WHERE matrix_id = '@matrixrmapi-bot:example.test'"),
		0);
	assert_int_equal(q_int(store_db(f->st),
			       "SELECT COUNT(*) FROM journal WHERE outcome = 'refused' AND detail = 'reserved'"),
			 1);
}

static void test_desired_users_json(void **state)
{
	/* what a pass reads, and only that: 10,000 of them are held through it */
	static const char *keys[] = {"user", "active", "admin", "created_ms", "changed_ms"};
	struct fixture *f = *state;
	json_t *users, *u;

	users = store_desired_users(f->st);
	assert_non_null(users);
	assert_true(json_is_array(users));
	assert_int_equal(json_array_size(users), 0);
	json_decref(users);

	/* recorded out of order; listed sorted by user */
	assert_int_equal(store_record_callback(f->st, EVENT_CREATED, "u-c", "Charlie", "@charlie:example.test", 500),
			 0);
	assert_int_equal(store_record_callback(f->st, EVENT_CREATED, "u-a", "Alpha", "@alpha:example.test", 600), 0);
	assert_int_equal(store_record_callback(f->st, EVENT_PROMOTED, "u-a", "Alpha", "@alpha:example.test", 700), 0);
	assert_int_equal(store_record_callback(f->st, EVENT_REVOKED, "u-b", "Bravo", "@bravo:example.test", 800), 0);
	users = store_desired_users(f->st);
	assert_non_null(users);
	assert_int_equal(json_array_size(users), 3);
	for (size_t i = 0; i < 3; i++) {
		u = json_array_get(users, i);
		assert_true(json_is_object(u));
		if (json_object_size(u) != 5)
			fail_msg("user %zu: have %zu keys, want 5", i, json_object_size(u));
		for (size_t k = 0; k < 5; k++)
			if (!json_object_get(u, keys[k]))
				fail_msg("user %zu: have no \"%s\"", i, keys[k]);
		assert_true(json_is_string(json_object_get(u, "user")));
		assert_true(json_is_integer(json_object_get(u, "active")));
		assert_true(json_is_integer(json_object_get(u, "admin")) || json_is_null(json_object_get(u, "admin")));
		assert_true(json_is_integer(json_object_get(u, "created_ms")));
	}
	u = json_array_get(users, 0);
	assert_string_equal(json_string_value(json_object_get(u, "user")), "@alpha:example.test");
	assert_int_equal(json_integer_value(json_object_get(u, "active")), 1);
	assert_int_equal(json_integer_value(json_object_get(u, "admin")), 1);
	assert_int_equal(json_integer_value(json_object_get(u, "created_ms")), 600);
	/* the latest callback about the user: a kick older than it no longer holds */
	assert_int_equal(json_integer_value(json_object_get(u, "changed_ms")), 700);
	u = json_array_get(users, 1);
	assert_string_equal(json_string_value(json_object_get(u, "user")), "@bravo:example.test");
	assert_int_equal(json_integer_value(json_object_get(u, "active")), 0);
	assert_true(json_is_null(json_object_get(u, "admin")));
	assert_int_equal(json_integer_value(json_object_get(u, "created_ms")), 0);
	u = json_array_get(users, 2);
	assert_string_equal(json_string_value(json_object_get(u, "user")), "@charlie:example.test");
	assert_int_equal(json_integer_value(json_object_get(u, "active")), 1);
	assert_true(json_is_null(json_object_get(u, "admin")));
	assert_int_equal(json_integer_value(json_object_get(u, "created_ms")), 500);
	json_decref(users);
}

/* ---- rooms, passes, backoff, observed state ---------------------------- */

static void test_rooms(void **state)
{
	struct fixture *f = *state;
	json_t *rooms, *want;
	char alias[128];

	rooms = store_rooms(f->st);
	assert_non_null(rooms);
	assert_true(json_is_object(rooms));
	assert_int_equal(json_object_size(rooms), 0);
	json_decref(rooms);

	assert_int_equal(store_set_room(f->st, "general", "#gm-general:example.test", "!g1:example.test"), 0);
	assert_int_equal(store_set_room(f->st, "admin", "#gm-admin:example.test", "!a1:example.test"), 0);
	/* setting again replaces */
	assert_int_equal(store_set_room(f->st, "general", "#gm-general2:example.test", "!g2:example.test"), 0);
	rooms = store_rooms(f->st);
	want = json_pack("{s:s, s:s}", "general", "!g2:example.test", "admin", "!a1:example.test");
	if (!json_equal(rooms, want)) {
		char *have = json_dumps(rooms, JSON_SORT_KEYS | JSON_COMPACT);
		char *w = json_dumps(want, JSON_SORT_KEYS | JSON_COMPACT);

		print_error("store_rooms: have %s, want %s\n", have, w);
		free(have);
		free(w);
		json_decref(rooms);
		json_decref(want);
		fail();
	}
	json_decref(rooms);
	json_decref(want);
	assert_int_equal(count_rows(f->st, "rooms"), 2);
	q_text(store_db(f->st), "SELECT alias FROM rooms WHERE key = 'general'", alias, sizeof(alias));
	assert_string_equal(alias, "#gm-general2:example.test");
}

static int64_t add_pass(struct store *st, int64_t t, int nactions)
{
	int64_t id = -1;

	assert_int_equal(store_pass_begin(st, t, &id), 0);
	assert_true(id > 0);
	for (int a = 0; a < nactions; a++)
		assert_int_equal(store_action_record(st, id, t + a, "room.join", "@alpha:example.test", "general",
						     a ? "failed" : "ok", a ? "M_FORBIDDEN" : NULL, a ? "no" : NULL),
				 0);
	assert_int_equal(store_pass_end(st, id, t + 100, "ok", nactions, 1, nactions - 1, "summary"), 0);
	return id;
}

static void test_pass_and_action_recording(void **state)
{
	struct fixture *f = *state;
	json_t *rows, *r;
	int64_t id;

	id = add_pass(f->st, 5000, 2);
	rows = store_query(f->st, "SELECT * FROM passes");
	assert_int_equal(json_array_size(rows), 1);
	r = json_array_get(rows, 0);
	assert_int_equal(json_integer_value(json_object_get(r, "id")), id);
	assert_int_equal(json_integer_value(json_object_get(r, "started_ms")), 5000);
	assert_int_equal(json_integer_value(json_object_get(r, "ended_ms")), 5100);
	assert_string_equal(json_string_value(json_object_get(r, "result")), "ok");
	assert_int_equal(json_integer_value(json_object_get(r, "planned")), 2);
	assert_int_equal(json_integer_value(json_object_get(r, "ok")), 1);
	assert_int_equal(json_integer_value(json_object_get(r, "failed")), 1);
	assert_string_equal(json_string_value(json_object_get(r, "summary")), "summary");
	json_decref(rows);

	rows = store_query(f->st, "SELECT * FROM actions ORDER BY id");
	assert_int_equal(json_array_size(rows), 2);
	r = json_array_get(rows, 0);
	assert_int_equal(json_integer_value(json_object_get(r, "pass_id")), id);
	assert_string_equal(json_string_value(json_object_get(r, "kind")), "room.join");
	assert_string_equal(json_string_value(json_object_get(r, "target")), "@alpha:example.test");
	assert_string_equal(json_string_value(json_object_get(r, "room")), "general");
	assert_string_equal(json_string_value(json_object_get(r, "outcome")), "ok");
	assert_true(json_is_null(json_object_get(r, "errcode")));
	r = json_array_get(rows, 1);
	assert_string_equal(json_string_value(json_object_get(r, "outcome")), "failed");
	assert_string_equal(json_string_value(json_object_get(r, "errcode")), "M_FORBIDDEN");
	assert_string_equal(json_string_value(json_object_get(r, "message")), "no");
	json_decref(rows);
}

static void test_prune_keeps_newest(void **state)
{
	struct fixture *f = *state;
	int64_t ids[8];
	sqlite3 *db = store_db(f->st);
	char sql[256];

	for (int i = 0; i < 5; i++)
		ids[i] = add_pass(f->st, (int64_t)1000 * (i + 1), 2);
	assert_int_equal(store_prune(f->st, 2), 0);
	assert_int_equal(count_rows(f->st, "passes"), 2);
	snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM passes WHERE id IN (%" PRId64 ", %" PRId64 ")", ids[3],
		 ids[4]);
	assert_int_equal(q_int(db, sql), 2);
	/* the pruned passes' actions went with them (foreign keys cascade) */
	assert_int_equal(count_rows(f->st, "actions"), 4);
	assert_int_equal(q_int(db, "SELECT COUNT(*) FROM actions WHERE pass_id NOT IN (SELECT id FROM passes)"), 0);

	/* more passes later, and a pass missing from the middle (deleted by an
	 * operator): still the newest N that exist */
	for (int i = 5; i < 8; i++)
		ids[i] = add_pass(f->st, (int64_t)1000 * (i + 1), 1);
	snprintf(sql, sizeof(sql), "DELETE FROM passes WHERE id = %" PRId64, ids[6]);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(store_prune(f->st, 3), 0);
	snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM passes WHERE id IN (%" PRId64 ", %" PRId64 ", %" PRId64 ")",
		 ids[4], ids[5], ids[7]);
	if (count_rows(f->st, "passes") != 3 || q_int(db, sql) != 3)
		fail_msg("prune(3) with a gap: have %" PRId64 " passes, want the newest 3",
			 count_rows(f->st, "passes"));
	assert_int_equal(q_int(db, "SELECT COUNT(*) FROM actions WHERE pass_id NOT IN (SELECT id FROM passes)"), 0);
	assert_int_equal(count_rows(f->st, "actions"), 2 + 1 + 1);

	/* keeping more than exist removes nothing */
	assert_int_equal(store_prune(f->st, 100), 0);
	assert_int_equal(count_rows(f->st, "passes"), 3);
}

static void test_backoff(void **state)
{
	struct fixture *f = *state;
	int64_t next = -1, prev_delay = 0;
	int attempts = -1;
	char text[128];

	/* unknown key: no wait */
	assert_int_equal(store_backoff_get(f->st, "room.join|general|@a:x", &next, &attempts), 0);
	assert_int_equal(next, 0);
	assert_int_equal(attempts, 0);

	for (int i = 1; i <= 12; i++) {
		int64_t delay;

		assert_int_equal(store_backoff_fail(f->st, "room.join|general|@a:x", 100000, "M_LIMIT"), 0);
		assert_int_equal(store_backoff_get(f->st, "room.join|general|@a:x", &next, &attempts), 0);
		assert_int_equal(attempts, i);
		delay = next - 100000;
		if (i == 1 && delay != 5000)
			fail_msg("first failure: have delay %" PRId64 " ms, want 5000", delay);
		if (delay < prev_delay || (delay == prev_delay && delay < 600000))
			fail_msg("failure %d: have delay %" PRId64 " ms, want more than %" PRId64, i, delay,
				 prev_delay);
		if (delay > 600000)
			fail_msg("failure %d: have delay %" PRId64 " ms, want at most 600000", i, delay);
		prev_delay = delay;
	}
	assert_int_equal(prev_delay, 600000); /* capped at ten minutes */
	q_text(store_db(f->st), "SELECT last_error FROM backoff", text, sizeof(text));
	assert_string_equal(text, "M_LIMIT");

	/* keys are independent */
	assert_int_equal(store_backoff_get(f->st, "room.join|general|@b:x", &next, &attempts), 0);
	assert_int_equal(attempts, 0);

	assert_int_equal(store_backoff_clear(f->st, "room.join|general|@a:x"), 0);
	assert_int_equal(store_backoff_get(f->st, "room.join|general|@a:x", &next, &attempts), 0);
	assert_int_equal(next, 0);
	assert_int_equal(attempts, 0);
	/* after a clear the next failure starts over */
	assert_int_equal(store_backoff_fail(f->st, "room.join|general|@a:x", 200000, NULL), 0);
	assert_int_equal(store_backoff_get(f->st, "room.join|general|@a:x", &next, &attempts), 0);
	assert_int_equal(attempts, 1);
	assert_int_equal(next, 205000);
}

static json_t *observed(const char *user, const char *account, const char *joined_json, const char *levels_json,
			int pending)
{
	return json_pack("{s:s, s:s, s:o, s:o, s:i}", "user", user, "account", account, "joined",
			 json_loads(joined_json, 0, NULL), "levels", json_loads(levels_json, 0, NULL), "pending",
			 pending);
}

/* Two rows, then a failure (as when a row cannot be built). */
static int failing_rows(void *arg, json_t **row)
{
	int *made = arg;

	if (*made >= 2)
		return -1;
	(*made)++;
	*row = observed(*made == 1 ? "@c:x" : "@d:x", "active", "[]", "{}", 0);
	return 1;
}

/* observed_users.changed_ms of one user, -1 when the row is absent. */
static int64_t changed_ms_of(struct store *st, const char *user)
{
	char sql[128];
	json_t *rows;
	int64_t v = -1;

	snprintf(sql, sizeof(sql), "SELECT changed_ms FROM observed_users WHERE matrix_id = '%s'", user);
	rows = store_query(st, sql);

	assert_non_null(rows);
	if (json_array_size(rows) == 1)
		v = json_integer_value(json_object_get(json_array_get(rows, 0), "changed_ms"));
	json_decref(rows);
	return v;
}

static int64_t observed_meta_ms(struct store *st)
{
	json_t *rows = store_query(st, "SELECT observed_ms FROM observed_meta");
	int64_t v = -1;

	assert_non_null(rows);
	if (json_array_size(rows) == 1)
		v = json_integer_value(json_object_get(json_array_get(rows, 0), "observed_ms"));
	json_decref(rows);
	return v;
}

/* The first pass's rows of test_observed_record. */
static json_t *first_rows(void)
{
	json_t *obs = json_array();

	json_array_append_new(obs, observed("@a:x", "active", "[\"general\"]", "{\"general\":0}", 0));
	json_array_append_new(obs, observed("@b:x", "none", "[]", "{}", 2));
	json_array_append_new(obs, observed("@c:x", "active", "[]", "{}", 0));
	return obs;
}

/* The held settings: recorded as given, replaced when they differ, and
 * emptied when a pass finds none; have and want keep their JSON. */
static void test_held_record(void **state)
{
	struct fixture *f = *state;
	json_t *held = json_pack("[{s:s, s:s, s:i, s:i}, {s:s, s:s, s:s, s:i}]", "room", "general", "setting",
				 "m.room.power_levels invite", "have", 75, "want", 50, "room", "space", "setting",
				 "m.room.power_levels state_default", "have", "60", "want", 100);
	json_t *rows;

	assert_int_equal(store_held_record(f->st, held), 0);
	rows = store_query(f->st, "SELECT room, setting, have, want FROM held_settings ORDER BY room");
	assert_int_equal(json_array_size(rows), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "have")), "75");
	assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 1), "have")), "\"60\"");
	json_decref(rows);
	/* The same again, in another order: nothing changes. */
	json_array_append(held, json_array_get(held, 0));
	json_array_remove(held, 0);
	assert_int_equal(store_held_record(f->st, held), 0);
	assert_int_equal(count_rows(f->st, "held_settings"), 2);
	/* One fewer: replaced. None: emptied. */
	json_array_remove(held, 0);
	assert_int_equal(store_held_record(f->st, held), 0);
	assert_int_equal(count_rows(f->st, "held_settings"), 1);
	json_array_clear(held);
	assert_int_equal(store_held_record(f->st, held), 0);
	assert_int_equal(count_rows(f->st, "held_settings"), 0);
	json_decref(held);
}

static void test_observed_record(void **state)
{
	struct fixture *f = *state;
	json_t *obs, *rows, *r;

	/* rows are kept for the store's users */
	assert_int_equal(store_record_callback(f->st, EVENT_CREATED, "u-a", "A", "@a:x", 1), 0);
	assert_int_equal(store_record_callback(f->st, EVENT_CREATED, "u-b", "B", "@b:x", 1), 0);
	assert_int_equal(store_record_callback(f->st, EVENT_CREATED, "u-c", "C", "@c:x", 1), 0);
	assert_int_equal(store_record_callback(f->st, EVENT_CREATED, "u-d", "D", "@d:x", 1), 0);
	obs = first_rows();
	assert_int_equal(store_observed_record(f->st, obs, 10), 0);
	json_decref(obs);
	assert_int_equal(count_rows(f->st, "observed_users"), 3);
	assert_int_equal(observed_meta_ms(f->st), 10);

	/* The same rows again: none is written (changed_ms stays), the pass's
	 * time is recorded once. */
	obs = first_rows();
	assert_int_equal(store_observed_record(f->st, obs, 15), 0);
	json_decref(obs);
	assert_int_equal(changed_ms_of(f->st, "@a:x"), 10);
	assert_int_equal(changed_ms_of(f->st, "@b:x"), 10);
	assert_int_equal(changed_ms_of(f->st, "@c:x"), 10);
	assert_int_equal(observed_meta_ms(f->st), 15);

	/* Each field alone makes a row differ; a new user's row is added; a
	 * row of a user the store no longer has (@c) is removed, one of a user
	 * it never had (@e) is not kept. */
	assert_int_equal(sqlite3_exec(store_db(f->st), "DELETE FROM users WHERE matrix_id = '@c:x'", NULL, NULL, NULL),
			 SQLITE_OK);
	obs = json_array();
	json_array_append_new(obs, observed("@a:x", "active", "[\"general\"]", "{\"general\":50}", 0));
	json_array_append_new(obs, observed("@b:x", "deactivated", "[\"offtopic\",\"general\"]", "{\"admin\":100}", 1));
	json_array_append_new(obs, observed("@d:x", "active", "[]", "{}", 0));
	json_array_append_new(obs, observed("@e:x", "active", "[]", "{}", 0));
	assert_int_equal(store_observed_record(f->st, obs, 20), 0);
	json_decref(obs);
	assert_int_equal(count_rows(f->st, "observed_users"), 3);
	assert_int_equal(changed_ms_of(f->st, "@a:x"), 20);
	assert_int_equal(changed_ms_of(f->st, "@c:x"), -1);
	assert_int_equal(changed_ms_of(f->st, "@d:x"), 20);
	assert_int_equal(changed_ms_of(f->st, "@e:x"), -1);
	rows = store_query(f->st, "SELECT * FROM observed_users WHERE matrix_id = '@b:x'");
	assert_int_equal(json_array_size(rows), 1);
	r = json_array_get(rows, 0);
	assert_string_equal(json_string_value(json_object_get(r, "account")), "deactivated");
	assert_string_equal(json_string_value(json_object_get(r, "joined")), "[\"offtopic\",\"general\"]");
	assert_string_equal(json_string_value(json_object_get(r, "levels")), "{\"admin\":100}");
	assert_int_equal(json_integer_value(json_object_get(r, "pending")), 1);
	assert_int_equal(json_integer_value(json_object_get(r, "changed_ms")), 20);
	json_decref(rows);
	for (int field = 0; field < 4; field++) { /* account, joined, levels, pending */
		static const char *const users[] = {"@a:x", "@b:x", "@d:x"};
		int64_t at = 30 + field;

		obs = json_array();
		json_array_append_new(obs, observed("@a:x", "none", "[\"general\"]", "{\"general\":50}", 0));
		json_array_append_new(obs, observed("@b:x", "deactivated",
						    field >= 1 ? "[\"general\"]" : "[\"offtopic\",\"general\"]",
						    "{\"admin\":100}", 1));
		json_array_append_new(
			obs, observed("@d:x", "active", "[]", field >= 2 ? "{\"admin\":0}" : "{}", field >= 3 ? 4 : 0));
		assert_int_equal(store_observed_record(f->st, obs, at), 0);
		json_decref(obs);
		/* one more field differs each time: its row is written, no other */
		for (int u = 0; u < 3; u++)
			assert_true((changed_ms_of(f->st, users[u]) == at) == (u == (field < 3 ? field : 2)));
	}

	/* Rows made one at a time: one that cannot be made replaces nothing,
	 * the pass's time included. */
	assert_int_equal(store_observed_record_each(f->st, 40, failing_rows, &(int){0}), -1);
	assert_int_equal(count_rows(f->st, "observed_users"), 3);
	assert_int_equal(changed_ms_of(f->st, "@c:x"), -1);
	assert_int_equal(observed_meta_ms(f->st), 33);

	/* A row not given stays as it was last observed. */
	obs = json_array();
	assert_int_equal(store_observed_record(f->st, obs, 50), 0);
	json_decref(obs);
	assert_int_equal(count_rows(f->st, "observed_users"), 3);
	assert_int_equal(changed_ms_of(f->st, "@d:x"), 33);
	assert_int_equal(observed_meta_ms(f->st), 50);
}

static void test_status_users_view(void **state)
{
	struct fixture *f = *state;
	json_t *obs, *rows, *r;

	assert_int_equal(store_record_callback(f->st, EVENT_CREATED, "u-a", "Alpha", "@alpha:x", 1), 0);
	assert_int_equal(store_record_callback(f->st, EVENT_PROMOTED, "u-a", "Alpha", "@alpha:x", 2), 0);
	assert_int_equal(store_record_callback(f->st, EVENT_REVOKED, "u-b", "Bravo", "@bravo:x", 3), 0);
	obs = json_array();
	json_array_append_new(obs, observed("@alpha:x", "active", "[\"admin\",\"general\"]", "{\"admin\":100}", 0));
	json_array_append_new(obs, observed("@stranger:x", "active", "[]", "{}", 0));
	assert_int_equal(store_observed_record(f->st, obs, 70), 0);
	assert_int_equal(store_observed_record(f->st, obs, 77), 0); /* unchanged: observed at 77, changed at 70 */
	json_decref(obs);
	assert_int_equal(count_rows(f->st, "observed_users"), 1); /* the stranger is not managed: not kept */

	rows = store_query(f->st, "SELECT * FROM status_users ORDER BY matrix_id");
	assert_non_null(rows);
	/* desired users only; the observed stranger is not managed */
	assert_int_equal(json_array_size(rows), 2);
	r = json_array_get(rows, 0);
	assert_string_equal(json_string_value(json_object_get(r, "matrix_id")), "@alpha:x");
	assert_string_equal(json_string_value(json_object_get(r, "callsign")), "Alpha");
	assert_string_equal(json_string_value(json_object_get(r, "desired")), "active");
	assert_int_equal(json_integer_value(json_object_get(r, "desired_admin")), 1);
	assert_string_equal(json_string_value(json_object_get(r, "admin_status")), "admin");
	assert_string_equal(json_string_value(json_object_get(r, "origin")), "callback");
	assert_string_equal(json_string_value(json_object_get(r, "account")), "active");
	assert_string_equal(json_string_value(json_object_get(r, "joined")), "[\"admin\",\"general\"]");
	assert_string_equal(json_string_value(json_object_get(r, "levels")), "{\"admin\":100}");
	assert_int_equal(json_integer_value(json_object_get(r, "pending")), 0);
	assert_int_equal(json_integer_value(json_object_get(r, "observed_ms")), 77);
	assert_int_equal(json_integer_value(json_object_get(r, "changed_ms")), 70);
	r = json_array_get(rows, 1);
	assert_string_equal(json_string_value(json_object_get(r, "matrix_id")), "@bravo:x");
	assert_string_equal(json_string_value(json_object_get(r, "desired")), "revoked");
	assert_true(json_is_null(json_object_get(r, "desired_admin")));
	assert_string_equal(json_string_value(json_object_get(r, "admin_status")), "unknown");
	assert_string_equal(json_string_value(json_object_get(r, "account")), "unknown");
	assert_string_equal(json_string_value(json_object_get(r, "joined")), "[]");
	assert_string_equal(json_string_value(json_object_get(r, "levels")), "{}");
	assert_int_equal(json_integer_value(json_object_get(r, "pending")), -1);
	assert_true(json_is_null(json_object_get(r, "observed_ms")));
	assert_true(json_is_null(json_object_get(r, "changed_ms")));
	json_decref(rows);
}

/* ---- other connections ------------------------------------------------ */

/* Re-executes this binary to count journal rows through its own store_open
 * in a separate process; returns the count. */
static int64_t count_journal_in_child(const char *path)
{
	pid_t pid;
	int status;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl("/proc/self/exe", "test_store", "--count-journal", path, (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) >= 100)
		fail_msg("child process failed (exit %d)", WEXITSTATUS(status));
	return WEXITSTATUS(status);
}

static int child_count_journal(const char *path)
{
	struct store *st = NULL;
	char err[512];
	int64_t n;

	if (store_open(path, &st, err, sizeof(err)) != 0) {
		fprintf(stderr, "child: store_open: %s\n", err);
		return 101;
	}
	n = count_rows(st, "journal");
	store_close(st);
	return n < 100 ? (int)n : 100;
}

/* A database written by the first schema (admin 0/1 on every row) keeps its
 * rows and their meaning through migration 002; journal ids go on. */
static void test_migration_from_v1_keeps_rows(void **state)
{
	struct fixture *f = *state;
	const char *src = getenv("MATRIXRMAPI_SRC");
	char path[600], *sql = NULL, err[512], buf[64];
	sqlite3 *db = NULL;
	FILE *fp;
	long n;

	snprintf(path, sizeof(path), "%s/schema/001_initial.sql", src ? src : "..");
	fp = fopen(path, "r");
	if (!fp)
		fail_msg("cannot read %s (MATRIXRMAPI_SRC unset?)", path);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	rewind(fp);
	sql = calloc(1, (size_t)n + 1);
	assert_int_equal(fread(sql, 1, (size_t)n, fp), (size_t)n);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	free(sql);
	assert_int_equal(
		sqlite3_exec(
			db,
			"INSERT INTO users VALUES ('@adm:x', 'Adm', 'u1', 1, 1, 10, 20), ('@plain:x', 'Plain', 'u2', 1, 0, 30, 30), "
			"('@gone:x', 'Gone', 'u3', 0, 0, 0, 40);"
			"INSERT INTO journal (at_ms, event, uuid, callsign, matrix_id) VALUES (10, 'created', 'u1', 'Adm', '@adm:x'), "
			"(20, 'promoted', 'u1', 'Adm', '@adm:x'), (30, 'created', 'u2', 'Plain', '@plain:x');"
			"INSERT INTO observed_users VALUES ('@adm:x', 'active', '[\"admin\"]', '{}', 0, 500), "
			"('@plain:x', 'active', '[]', '{}', 1, 400);"
			"PRAGMA user_version = 1;",
			NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);

	if (store_open(f->path, &f->st, err, sizeof(err)) != 0)
		fail_msg("store_open of a version 1 database: %s", err);
	assert_int_equal(q_int(store_db(f->st), "PRAGMA user_version"), store_schema_version());
	assert_int_equal(count_rows(f->st, "users"), 3);
	assert_int_equal(q_int(store_db(f->st), "SELECT admin FROM users WHERE matrix_id = '@adm:x'"), 1);
	assert_int_equal(q_int(store_db(f->st), "SELECT admin FROM users WHERE matrix_id = '@plain:x'"), 0);
	assert_int_equal(q_int(store_db(f->st), "SELECT admin FROM users WHERE matrix_id = '@gone:x'"), 0);
	assert_int_equal(q_int(store_db(f->st), "SELECT created_ms FROM users WHERE matrix_id = '@plain:x'"), 30);
	/* 004: each row's observed_ms is its changed_ms; the latest is when
	 * they were all last observed */
	assert_int_equal(q_int(store_db(f->st), "SELECT changed_ms FROM observed_users WHERE matrix_id = '@plain:x'"),
			 400);
	assert_int_equal(q_int(store_db(f->st), "SELECT observed_ms FROM observed_meta"), 500);
	assert_int_equal(q_int(store_db(f->st), "SELECT observed_ms FROM status_users WHERE matrix_id = '@plain:x'"),
			 500);
	assert_int_equal(q_int(store_db(f->st), "SELECT pending FROM status_users WHERE matrix_id = '@plain:x'"), 1);
	assert_int_equal(q_int(store_db(f->st), "SELECT COUNT(*) FROM status_users WHERE observed_ms IS NULL"), 1);
	assert_string_equal(
		q_text(store_db(f->st), "SELECT origin FROM users WHERE matrix_id = '@adm:x'", buf, sizeof(buf)),
		"callback");
	assert_string_equal(q_text(store_db(f->st),
				   "SELECT admin_status FROM status_users WHERE matrix_id = '@plain:x'", buf,
				   sizeof(buf)),
			    "not admin");
	assert_int_equal(q_int(store_db(f->st), "SELECT MAX(id) FROM journal"), 3);
	assert_int_equal(store_record_callback(f->st, EVENT_CREATED, "u4", "New", "@new:x", 50), 0);
	assert_int_equal(q_int(store_db(f->st), "SELECT MAX(id) FROM journal"), 4);
	assert_int_equal(q_int(store_db(f->st), "SELECT admin IS NULL FROM users WHERE matrix_id = '@new:x'"), 1);
	/* an existing row's admin flag survives a later /created */
	assert_int_equal(store_record_callback(f->st, EVENT_CREATED, "u2", "Plain", "@plain:x", 60), 0);
	assert_int_equal(q_int(store_db(f->st), "SELECT admin FROM users WHERE matrix_id = '@plain:x'"), 0);
	assert_string_equal(q_text(store_db(f->st), "PRAGMA integrity_check", buf, sizeof(buf)), "ok");
}

/* A database path that is a symlink is refused (the link is not followed,
 * its target not created or changed), read-only too. */
static void test_symlinked_database_refused(void **state)
{
	struct fixture *f = *state;
	char target[400], err[512];
	struct store *st = NULL;
	struct stat sb;

	snprintf(target, sizeof(target), "%s/plain", f->dir);
	assert_int_equal(symlink(target, f->path), 0);
	assert_int_equal(store_open(f->path, &st, err, sizeof(err)), STORE_ESYMLINK);
	assert_null(st);
	assert_non_null(strstr(err, "DATABASE_PATH"));
	assert_int_not_equal(stat(target, &sb), 0); /* nothing made at the target */
	assert_int_equal(store_open_readonly(f->path, &st, err, sizeof(err)), -1);
	assert_null(st);
	unlink(f->path);
}

static json_t *adopt_rec(const char *user, const char *callsign, int active, int admin)
{
	return json_pack("{s:s, s:s, s:b, s:b}", "user", user, "callsign", callsign, "active", active, "admin", admin);
}

/* adopt: new users inserted, unknown admin status filled in, whatever a
 * callback decided kept; journalled as 'adopted'; idempotent; all or
 * nothing. */
static void test_adopt(void **state)
{
	struct fixture *f = *state;
	json_t *recs = json_array(), *changes = NULL, *want;
	char buf[256];
	int64_t journal0;

	assert_int_equal(store_record_callback(f->st, EVENT_CREATED, "u-a", "Alpha", "@alpha:x", 1), 0);
	assert_int_equal(store_record_callback(f->st, EVENT_PROMOTED, "u-b", "Bravo", "@bravo:x", 2), 0);
	assert_int_equal(store_record_callback(f->st, EVENT_DEMOTED, "u-c", "Charlie", "@charlie:x", 3), 0);
	assert_int_equal(store_record_callback(f->st, EVENT_REVOKED, "u-e", "Echo", "@echo:x", 4), 0);
	journal0 = count_rows(f->st, "journal");
	json_array_append_new(recs, adopt_rec("@alpha:x", "alpha", 1, 1));
	json_array_append_new(recs, adopt_rec("@bravo:x", "bravo", 1, 0));
	json_array_append_new(recs, adopt_rec("@charlie:x", "charlie", 1, 1));
	json_array_append_new(recs, adopt_rec("@delta:x", "delta", 1, 1));
	json_array_append_new(recs, adopt_rec("@echo:x", "echo", 1, 0));
	json_array_append_new(recs, adopt_rec("@fox:x", "fox", 0, 0));
	assert_int_equal(store_adopt(f->st, recs, 100, &changes), 0);
	want = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "@alpha:x", "admin", "@bravo:x", "kept", "@charlie:x",
			 "kept", "@delta:x", "new", "@echo:x", "admin", "@fox:x", "new");
	if (!json_equal(changes, want)) {
		char *h = json_dumps(changes, JSON_SORT_KEYS), *w = json_dumps(want, JSON_SORT_KEYS);

		fail_msg("changes: have %s, want %s", h, w);
	}
	json_decref(want);
	json_decref(changes);
	/* what the callbacks said stands */
	assert_int_equal(q_int(store_db(f->st), "SELECT admin FROM users WHERE matrix_id = '@bravo:x'"), 1);
	assert_int_equal(q_int(store_db(f->st), "SELECT admin FROM users WHERE matrix_id = '@charlie:x'"), 0);
	assert_int_equal(q_int(store_db(f->st), "SELECT active FROM users WHERE matrix_id = '@echo:x'"), 0);
	assert_string_equal(
		q_text(store_db(f->st), "SELECT origin FROM users WHERE matrix_id = '@bravo:x'", buf, sizeof(buf)),
		"callback");
	/* the unknowns are filled in, the new rows are adopt's */
	assert_int_equal(q_int(store_db(f->st), "SELECT admin FROM users WHERE matrix_id = '@alpha:x'"), 1);
	assert_int_equal(q_int(store_db(f->st), "SELECT active FROM users WHERE matrix_id = '@alpha:x'"), 1);
	assert_int_equal(q_int(store_db(f->st), "SELECT admin FROM users WHERE matrix_id = '@echo:x'"), 0);
	assert_string_equal(q_text(store_db(f->st),
				   "SELECT origin || ' ' || uuid || callsign || ' ' || active || admin "
				   "FROM users WHERE matrix_id = '@delta:x'",
				   buf, sizeof(buf)),
			    "adopt delta 11");
	assert_string_equal(q_text(store_db(f->st),
				   "SELECT origin || ' ' || active || admin FROM users "
				   "WHERE matrix_id = '@fox:x'",
				   buf, sizeof(buf)),
			    "adopt 00");
	assert_int_equal(count_rows(f->st, "journal"), journal0 + 4);
	assert_string_equal(q_text(store_db(f->st),
				   "SELECT detail FROM journal WHERE event = 'adopted' AND "
				   "matrix_id = '@alpha:x'",
				   buf, sizeof(buf)),
			    "{\"active\":true,\"admin\":true,\"change\":\"admin\"}");
	assert_string_equal(q_text(store_db(f->st),
				   "SELECT detail FROM journal WHERE event = 'adopted' AND "
				   "matrix_id = '@echo:x'",
				   buf, sizeof(buf)),
			    "{\"active\":false,\"admin\":false,\"change\":\"admin\"}");

	/* again: nothing left to adopt */
	assert_int_equal(store_adopt(f->st, recs, 200, &changes), 0);
	assert_int_equal(count_rows(f->st, "journal"), journal0 + 4);
	json_decref(changes);
	json_decref(recs);

	/* a callback after adoption wins, and gives the row its uuid */
	assert_int_equal(store_record_callback(f->st, EVENT_DEMOTED, "u-d", "Delta", "@delta:x", 300), 0);
	assert_string_equal(q_text(store_db(f->st),
				   "SELECT origin || ' ' || uuid || ' ' || admin FROM users "
				   "WHERE matrix_id = '@delta:x'",
				   buf, sizeof(buf)),
			    "callback u-d 0");

	/* one bad record: nothing of the batch is written */
	recs = json_array();
	json_array_append_new(recs, adopt_rec("@golf:x", "golf", 1, 1));
	json_array_append_new(recs, json_pack("{s:s}", "user", "@hotel:x"));
	assert_int_equal(store_adopt(f->st, recs, 400, &changes), -1);
	assert_null(changes);
	assert_int_equal(q_int(store_db(f->st), "SELECT COUNT(*) FROM users WHERE matrix_id = '@golf:x'"), 0);
	assert_int_equal(count_rows(f->st, "journal"), journal0 + 5);
	json_decref(recs);
}

static void test_second_connection_same_process(void **state)
{
	struct fixture *f = *state;
	struct store *b = NULL;
	char err[512];

	assert_int_equal(store_record_callback(f->st, EVENT_CREATED, "u-1", "Alpha", "@alpha:x", 1), 0);
	if (store_open(f->path, &b, err, sizeof(err)) != 0)
		fail_msg("second store_open: %s", err);
	assert_int_equal(count_rows(b, "journal"), 1);
	/* each commit on one connection is visible on the other at once */
	assert_int_equal(store_record_callback(f->st, EVENT_PROMOTED, "u-1", "Alpha", "@alpha:x", 2), 0);
	assert_int_equal(count_rows(b, "journal"), 2);
	assert_int_equal(q_int(store_db(b), "SELECT admin FROM users WHERE matrix_id = '@alpha:x'"), 1);
	assert_int_equal(store_record_callback(b, EVENT_DEMOTED, "u-1", "Alpha", "@alpha:x", 3), 0);
	assert_int_equal(q_int(store_db(f->st), "SELECT admin FROM users WHERE matrix_id = '@alpha:x'"), 0);
	store_close(b);
}

/* The scenario of the lost-callbacks bug: a live connection, a second
 * store_open in the same process, another process opening and closing the
 * database; every later commit of the first connection must still reach
 * other processes. */
static void test_other_process_sees_commits(void **state)
{
	struct fixture *f = *state;
	struct store *b = NULL;
	char err[512];
	int64_t have;

	assert_int_equal(store_record_callback(f->st, EVENT_CREATED, "u-1", "Alpha", "@alpha:x", 1), 0);
	if (store_open(f->path, &b, err, sizeof(err)) != 0)
		fail_msg("second store_open: %s", err);
	store_close(b);
	assert_int_equal(count_journal_in_child(f->path), 1);

	for (int64_t want = 2; want <= 4; want++) {
		assert_int_equal(store_record_callback(f->st, EVENT_PROMOTED, "u-1", "Alpha", "@alpha:x", want), 0);
		have = count_journal_in_child(f->path);
		if (have != want)
			fail_msg("another process sees %" PRId64 " journal rows, want %" PRId64
				 " (committed callbacks lost to other readers)",
				 have, want);
	}
	/* and the same after a second store_open that stays open */
	if (store_open(f->path, &b, err, sizeof(err)) != 0)
		fail_msg("third store_open: %s", err);
	assert_int_equal(count_journal_in_child(f->path), 4);
	assert_int_equal(store_record_callback(f->st, EVENT_DEMOTED, "u-1", "Alpha", "@alpha:x", 5), 0);
	assert_int_equal(store_record_callback(b, EVENT_PROMOTED, "u-1", "Alpha", "@alpha:x", 6), 0);
	assert_int_equal(count_journal_in_child(f->path), 6);
	store_close(b);
}

/* The Kubernetes source's rows: written only when they differ, journalled
 * as 'kube', a callback's row taken over, an active held user left out of
 * the desired users (a revoked one never), and the report for bindings. */
static void test_kube_sync(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db = store_db(f->st);
	struct store_kube_user users[] = {
		{"@alpha:x", "alpha", "uid-a", 1, 1, 0},
		{"@bravo:x", "bravo", "uid-b", 1, 0, 1},
		{"@cat:x", "cat", "uid-c", 0, 0, 0},
	};
	json_t *desired, *report;
	char buf[256];
	int changed = -1;

	assert_int_equal(store_record_callback(f->st, EVENT_PROMOTED, "rm-uuid", "Alpha", "@alpha:x", 1), 0);
	assert_int_equal(store_kube_sync(f->st, users, 3, 100, &changed), 0);
	assert_int_equal(changed, 3);
	assert_int_equal(q_int(db, "SELECT COUNT(*) FROM journal WHERE event = 'kube'"), 3);
	assert_string_equal(
		q_text(db, "SELECT origin || ' ' || uuid FROM users WHERE matrix_id = '@alpha:x'", buf, sizeof(buf)),
		"kube uid-a");
	/* The same again writes nothing. */
	assert_int_equal(store_kube_sync(f->st, users, 3, 200, &changed), 0);
	assert_int_equal(changed, 0);
	assert_int_equal(q_int(db, "SELECT COUNT(*) FROM journal WHERE event = 'kube'"), 3);
	assert_int_equal(q_int(db, "SELECT MAX(updated_ms) FROM users"), 100);
	/* bravo is held: not desired yet; cat is revoked: desired (deactivate). */
	desired = store_desired_users(f->st);
	assert_int_equal(json_array_size(desired), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(desired, 0), "user")), "@alpha:x");
	assert_string_equal(json_string_value(json_object_get(json_array_get(desired, 1), "user")), "@cat:x");
	json_decref(desired);
	/* The binding exists: bravo is released, and only that row changes. */
	users[1].held = 0;
	assert_int_equal(store_kube_sync(f->st, users, 3, 300, &changed), 0);
	assert_int_equal(changed, 1);
	desired = store_desired_users(f->st);
	assert_int_equal(json_array_size(desired), 3);
	json_decref(desired);
	/* A failing action of bravo's shows in the report. */
	assert_int_equal(store_backoff_fail(f->st, "room.join|general|@bravo:x||", 300, "M_FORBIDDEN: no"), 0);
	report = store_kube_report(f->st);
	assert_int_equal(json_array_size(report), 3);
	assert_string_equal(json_string_value(json_object_get(json_array_get(report, 1), "failure")),
			    "M_FORBIDDEN: no");
	assert_true(json_is_null(json_object_get(json_array_get(report, 0), "failure")));
	assert_int_equal(json_integer_value(json_object_get(json_array_get(report, 0), "pending")), -1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(report, 2), "uid")), "uid-c");
	json_decref(report);
	/* A record without a uid fails the whole batch: nothing written. */
	users[0].uid = NULL;
	users[2].active = 1;
	assert_int_equal(store_kube_sync(f->st, users, 3, 400, &changed), -1);
	assert_int_equal(q_int(db, "SELECT active FROM users WHERE matrix_id = '@cat:x'"), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_creates_0600_and_migrates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_tightens_existing_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_is_idempotent, setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_newer_schema_refused_and_unchanged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_durability_flags, setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_callback_effects_table, setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_updated_changes_no_user, setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_journal_in_order, setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_uuid_binding, setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_desired_users_json, setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_rooms, setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_pass_and_action_recording, setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_prune_keeps_newest, setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_backoff, setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_observed_record, setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_held_record, setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_status_users_view, setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_migration_from_v1_keeps_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_adopt, setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_kube_sync, setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_symlinked_database_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_connection_same_process, setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_other_process_sees_commits, setup_open, teardown),
	};

	if (argc == 3 && strcmp(argv[1], "--count-journal") == 0)
		return child_count_journal(argv[2]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
