/* status: what an operator needs to see at 3 a.m., from the database alone
 * (the status_* views of schema/001 and 002, the rooms, the passes, the
 * backoff queue), as aligned tables or as one JSON document. It opens the
 * database read-only and never migrates it; without a database yet an
 * empty one in memory shows the empty state. */
#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "config.h"
#include "store.h"

#define CELL_MAX 60 /* wider cells are cut with "..." in the table (never in JSON) */

/* One cell's text (caller frees). */
static char *cell(json_t *v)
{
	char *s;

	if (json_is_string(v))
		s = strdup(json_string_value(v));
	else if (!v || json_is_null(v))
		s = strdup("-");
	else
		s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	if (s && strlen(s) > CELL_MAX)
		memcpy(s + CELL_MAX - 3, "...", sizeof("..."));
	return s;
}

/* A titled table: a header line of column names and one aligned line per row. */
static void print_table(const char *title, json_t *rows, const char *const *cols)
{
	size_t ncols = 0, width[16] = {0}, i;
	json_t *row;

	while (ncols < 16 && cols[ncols])
		ncols++;
	printf("%s:\n", title);
	if (json_array_size(rows) == 0) {
		printf("  (none)\n\n");
		return;
	}
	for (size_t c = 0; c < ncols; c++)
		width[c] = strlen(cols[c]);
	json_array_foreach(rows, i, row)
		for (size_t c = 0; c < ncols; c++) {
			char *s = cell(json_object_get(row, cols[c]));

			if (s && strlen(s) > width[c])
				width[c] = strlen(s);
			free(s);
		}
	printf(" ");
	for (size_t c = 0; c < ncols; c++)
		printf(" %-*s", c + 1 < ncols ? (int)width[c] : 0, cols[c]);
	printf("\n");
	json_array_foreach(rows, i, row) {
		printf(" ");
		for (size_t c = 0; c < ncols; c++) {
			char *s = cell(json_object_get(row, cols[c]));

			printf(" %-*s", c + 1 < ncols ? (int)width[c] : 0, s ? s : "?");
			free(s);
		}
		printf("\n");
	}
	printf("\n");
}

static const struct {
	const char *name, *sql;
} queries[] = {
	{"users", "SELECT * FROM status_users ORDER BY matrix_id"},
	{"rooms",
	 "SELECT r.key, r.alias, r.room_id, "
	 "(SELECT COUNT(*) FROM observed_users o, json_each(o.joined) j WHERE j.value = r.key) AS managed_joined "
	 "FROM rooms r ORDER BY r.key"},
	{"last_passes",
	 "SELECT id, datetime(started_ms / 1000, 'unixepoch') AS started, "
	 "CASE WHEN ended_ms IS NULL THEN NULL ELSE ended_ms - started_ms END AS ms, result, planned, ok, "
	 "failed, summary FROM passes ORDER BY id DESC LIMIT 10"},
	{"backoff", "SELECT key, attempts, datetime(next_ms / 1000, 'unixepoch') AS next_try, "
		    "MAX(0, (next_ms - CAST(strftime('%s', 'now') AS INTEGER) * 1000) / 1000) AS in_s, last_error "
		    "FROM backoff ORDER BY next_ms"},
	{"recent_failures", "SELECT * FROM status_recent_failures"},
	{"pending", "SELECT COALESCE(SUM(CASE WHEN pending < 0 THEN 1 ELSE pending END), 0) AS n FROM status_users"},
	{"held_settings", "SELECT room, setting, have, want FROM held_settings ORDER BY room, setting"},
};

/* A database of an older version, which status never migrates, has no
 * held_settings yet: nothing is held there. */
static int older_schema_lacks(struct store *st, const char *name)
{
	json_t *t;
	int missing;

	if (strcmp(name, "held_settings") != 0)
		return 0;
	t = store_query(st, "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'held_settings'");
	missing = t != NULL && json_array_size(t) == 0;
	json_decref(t);
	return missing;
}

/* The held settings' have and want are stored as JSON text: as values. */
static void decode_values(json_t *rows)
{
	static const char *const cols[] = {"have", "want"};
	json_t *row;
	size_t i;

	json_array_foreach(rows, i, row)
		for (size_t c = 0; c < 2; c++) {
			const char *text = json_string_value(json_object_get(row, cols[c]));
			json_t *v = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;

			if (v)
				json_object_set_new(row, cols[c], v);
		}
}

int status_print(const struct config *cfg, int as_json)
{
	static const char *const user_cols[] = {"matrix_id", "desired", "admin_status", "origin", "account",
						"joined",    "levels",  "pending",      NULL};
	static const char *const room_cols[] = {"key", "alias", "room_id", "managed_joined", NULL};
	static const char *const pass_cols[] = {"id", "started", "ms",      "result", "planned",
						"ok", "failed",  "summary", NULL};
	static const char *const backoff_cols[] = {"key", "attempts", "next_try", "in_s", "last_error", NULL};
	static const char *const fail_cols[] = {"pass_id", "kind", "target", "room", "errcode", "message", NULL};
	static const char *const held_cols[] = {"room", "setting", "have", "want", NULL};
	struct store *st = NULL;
	json_t *doc = NULL, *res[sizeof(queries) / sizeof(queries[0])] = {0};
	const size_t nq = sizeof(queries) / sizeof(queries[0]);
	char err[512];
	struct stat sb;
	int rc = -1;

	/* Inspection never changes what it inspects: read-only, no migrations. */
	if ((stat(cfg->database_path, &sb) == 0 ? store_open_readonly(cfg->database_path, &st, err, sizeof(err))
						: store_open(":memory:", &st, err, sizeof(err))) != 0) {
		fprintf(stderr, "status: %s\n", err);
		return -1;
	}
	for (size_t q = 0; q < nq; q++)
		if (!(res[q] = older_schema_lacks(st, queries[q].name) ? json_array()
								       : store_query(st, queries[q].sql))) {
			fprintf(stderr, "status: cannot read %s (%s)\n", cfg->database_path, queries[q].name);
			goto out;
		}
	decode_values(res[6]);
	doc = json_pack("{s:s, s:s, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O}", "deployment", cfg->deployment, "server",
			cfg->server_domain, "users", res[0], "rooms", res[1], "last_pass",
			json_array_size(res[2]) ? json_array_get(res[2], 0) : json_null(), "last_passes", res[2],
			"backoff", res[3], "recent_failures", res[4], "pending_differences",
			json_object_get(json_array_get(res[5], 0), "n"), "held_settings", res[6]);
	if (!doc)
		goto out;
	if (as_json) {
		char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

		printf("%s\n", s ? s : "{}");
		free(s);
	} else {
		printf("deployment %s on %s; %lld differences pending\n\n", cfg->deployment, cfg->server_domain,
		       (long long)json_integer_value(json_object_get(doc, "pending_differences")));
		print_table("rooms (managed_joined: managed users the last pass saw joined)", res[1], room_cols);
		print_table("users (desired vs last observed)", res[0], user_cols);
		if (json_array_size(res[2]) == 0)
			printf("last pass: none yet\n\n");
		print_table("last passes (newest first)", res[2], pass_cols);
		print_table("backoff (failing actions and their next try)", res[3], backoff_cols);
		print_table("recent failures", res[4], fail_cols);
		print_table("room settings kept as set by hand (the spec's value not written)", res[6], held_cols);
	}
	rc = 0;
out:
	for (size_t q = 0; q < nq; q++)
		json_decref(res[q]);
	json_decref(doc);
	store_close(st);
	return rc;
}
