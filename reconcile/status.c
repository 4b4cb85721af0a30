/* status: renders the store's status_* views (see schema/001_initial.sql and 002). */
#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <jansson.h>

#include "config.h"
#include "store.h"

static void print_rows(const char *title, json_t *rows, const char *const *cols)
{
	json_t *row;
	size_t i;

	printf("%s:\n", title);
	if (json_array_size(rows) == 0)
		printf("  (none)\n");
	json_array_foreach(rows, i, row) {
		printf(" ");
		for (int c = 0; cols[c]; c++) {
			json_t *v = json_object_get(row, cols[c]);
			char *s = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

			printf(" %s=%s", cols[c], json_is_string(v) ? json_string_value(v) : (s ? s : "null"));
			free(s);
		}
		printf("\n");
	}
}

int status_print(const struct config *cfg, int as_json)
{
	static const char *const user_cols[] = {"matrix_id", "desired", "admin_status", "origin", "account", "joined", "levels", "pending", NULL};
	static const char *const room_cols[] = {"key", "alias", "room_id", NULL};
	static const char *const pass_cols[] = {"id", "result", "planned", "ok", "failed", "summary", NULL};
	static const char *const fail_cols[] = {"pass_id", "kind", "target", "room", "errcode", "message", NULL};
	struct store *st = NULL;
	json_t *doc = NULL, *users, *rooms, *last, *fails, *pending;
	char err[512];
	struct stat sb;
	int rc = -1;

	/* Inspection never changes what it inspects: read-only, no migrations;
	 * without a database yet, an empty one in memory shows the empty state. */
	if ((stat(cfg->database_path, &sb) == 0 ? store_open_readonly(cfg->database_path, &st, err, sizeof(err))
						 : store_open(":memory:", &st, err, sizeof(err))) != 0) {
		fprintf(stderr, "status: %s\n", err);
		return -1;
	}
	users = store_query(st, "SELECT * FROM status_users ORDER BY matrix_id");
	rooms = store_query(st, "SELECT key, alias, room_id FROM rooms ORDER BY key");
	last = store_query(st, "SELECT * FROM status_last_pass");
	fails = store_query(st, "SELECT * FROM status_recent_failures");
	pending = store_query(st, "SELECT COALESCE(SUM(CASE WHEN pending < 0 THEN 1 ELSE pending END), 0) AS n FROM status_users");
	if (!users || !rooms || !last || !fails || !pending) {
		fprintf(stderr, "status: cannot read %s\n", cfg->database_path);
		json_decref(users);
		json_decref(rooms);
		json_decref(last);
		json_decref(fails);
		json_decref(pending);
		goto out;
	}
	doc = json_pack("{s:s, s:s, s:o, s:o, s:O, s:o, s:O}", "deployment", cfg->deployment, "server",
			cfg->server_domain, "users", users, "rooms", rooms, "last_pass",
			json_array_size(last) ? json_array_get(last, 0) : json_null(), "recent_failures",
			fails, "pending_differences", json_object_get(json_array_get(pending, 0), "n"));
	json_decref(last);
	json_decref(pending);
	if (as_json) {
		char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

		printf("%s\n", s ? s : "{}");
		free(s);
	} else {
		json_t *lp = json_object_get(doc, "last_pass");

		printf("deployment %s on %s\n", cfg->deployment, cfg->server_domain);
		print_rows("rooms", json_object_get(doc, "rooms"), room_cols);
		print_rows("users (desired vs last observed)", json_object_get(doc, "users"), user_cols);
		printf("pending differences: %lld\n",
		       (long long)json_integer_value(json_object_get(doc, "pending_differences")));
		if (json_is_object(lp)) {
			json_t *one = json_pack("[O]", lp);

			print_rows("last pass", one, pass_cols);
			json_decref(one);
		} else {
			printf("last pass: none yet\n");
		}
		print_rows("recent failures", json_object_get(doc, "recent_failures"), fail_cols);
	}
	rc = 0;
out:
	json_decref(doc);
	store_close(st);
	return rc;
}
