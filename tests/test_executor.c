/* test_executor: the executor's error handling against a fake Synapse run
 * in-process on loopback with libmicrohttpd, recording into a real SQLite
 * store in a fresh temporary directory. Each test scripts a fault a real
 * Synapse will not produce on demand (5xx, 429, stalls, broken JSON, the
 * "already done" 403/404 answers) and then checks three things: what the
 * fake received, what executor_apply reported, and what the store recorded
 * (actions and backoff rows). The test controls the clock: now_ms is an
 * argument of executor_apply, so backoff is tested without sleeping. The fake
 * is fakesyn.c; its log keeps the raw URI so the escaping can be checked. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "clock.h"
#include "executor.h"
#include "fakesyn.h"
#include "log.h"
#include "planner.h"
#include "store.h"
#include "synapse.h"

#define MAX_SEEN 32
#define ROOMS "{\"general\": \"!g:x\", \"admin\": \"!a:x\", \"space\": \"!s:x\"}"

static struct fakesyn *F; /* started by setup */

/* The fixture every test gets: fake, client, store, one pass row. */
static struct {
	char dir[64];
	struct store *st;
	struct synapse *syn;
	json_t *rooms;
	json_t *observed; /* the pass's state read by room key; NULL unless a test sets it */
	int64_t pass;
	const struct executor_limits *limits; /* NULL unless a test sets it */
} T;

/* ---- what the fake saw ---- */

/* Requests whose method is method and whose raw URI and body contain the
 * given substrings (NULL: any). */
static int count_seen(const char *method, const char *raw_part, const char *body_part)
{
	int n = 0, total = fakesyn_requests(F);

	for (int i = 0; i < total && i < MAX_SEEN; i++) {
		struct fakesyn_request s = fakesyn_seen(F, i);

		if ((!method || strcmp(s.method, method) == 0) && (!raw_part || strstr(s.raw, raw_part)) &&
		    (!body_part || strstr(s.body, body_part)))
			n++;
	}
	return n;
}

/* ---- fixture ---- */

static int setup(void **state)
{
	char url[64], db[128], err[256];

	(void)state;
	memset(&T, 0, sizeof(T));
	snprintf(T.dir, sizeof(T.dir), "/tmp/test_executor.XXXXXX");
	if (!mkdtemp(T.dir) || fakesyn_start(MAX_SEEN, &F) < 0)
		return -1;
	snprintf(db, sizeof(db), "%s/state.db", T.dir);
	if (store_open(db, &T.st, err, sizeof(err)) != 0) {
		fprintf(stderr, "store_open: %s\n", err);
		return -1;
	}
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", fakesyn_port(F));
	if (synapse_new(url, 2000, &T.syn) != 0)
		return -1;
	T.rooms = json_loads(ROOMS, 0, NULL);
	return T.rooms && store_pass_begin(T.st, 1, &T.pass) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	static const char *const files[] = {"state.db", "state.db-wal", "state.db-shm"};
	char p[160];

	(void)state;
	fakesyn_stop(F);
	F = NULL;
	synapse_free(T.syn);
	store_close(T.st);
	json_decref(T.rooms);
	json_decref(T.observed);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", T.dir, files[i]);
		unlink(p);
	}
	rmdir(T.dir);
	return 0;
}

/* ---- helpers ---- */

static int apply_with(struct synapse *syn, const char *actions_json, int64_t now, struct executor_result *res)
{
	json_error_t jerr;
	json_t *actions = json_loads(actions_json, 0, &jerr);
	int rc;

	if (!actions)
		fail_msg("bad actions JSON in test: %s: %s", jerr.text, actions_json);
	rc = executor_apply(syn, NULL, T.st, "@bot:x", T.rooms, T.observed, actions, T.pass, now, T.limits, res);
	json_decref(actions);
	return rc;
}

static int apply(const char *actions_json, int64_t now, struct executor_result *res)
{
	return apply_with(T.syn, actions_json, now, res);
}

/* Rows of a query as JSON (caller frees); fails the test on a query error. */
static json_t *rows(const char *sql)
{
	json_t *r = store_query(T.st, sql);

	if (!r)
		fail_msg("query failed: %s", sql);
	return r;
}

static int count_rows(const char *sql)
{
	json_t *r = rows(sql);
	int n = (int)json_array_size(r);

	json_decref(r);
	return n;
}

/* The one actions row for target (and room when given); fails unless exactly one. */
static json_t *action_row(const char *target, const char *room)
{
	json_t *all = rows("SELECT kind, target, room, outcome, errcode, message FROM actions ORDER BY id");
	json_t *row, *found = NULL;
	size_t i;
	int n = 0;

	json_array_foreach(all, i, row) {
		const char *t = json_string_value(json_object_get(row, "target"));
		const char *r = json_string_value(json_object_get(row, "room"));

		if (t && strcmp(t, target) == 0 && (!room || (r && strcmp(r, room) == 0))) {
			n++;
			found = row;
		}
	}
	if (n != 1) {
		json_decref(all);
		fail_msg("actions rows for %s%s%s: have %d, want 1", target, room ? " in " : "", room ? room : "", n);
	}
	json_incref(found);
	json_decref(all);
	return found;
}

static const char *field(json_t *row, const char *key)
{
	return json_string_value(json_object_get(row, key));
}

static void assert_outcome(const char *target, const char *room, const char *want)
{
	json_t *row = action_row(target, room);
	const char *have = field(row, "outcome");

	if (!have || strcmp(have, want) != 0) {
		char buf[256];

		snprintf(buf, sizeof(buf), "%s", have ? have : "(null)");
		json_decref(row);
		fail_msg("outcome of %s in %s: have %s, want %s", target, room ? room : "-", buf, want);
	}
	json_decref(row);
}

/* Backoff row for the action (given as JSON): 1 with next_ms and attempts, or 0. */
static int backoff_of(const char *action_json, int64_t *next_ms, int *attempts)
{
	json_t *a = json_loads(action_json, 0, NULL), *r, *row;
	char *key, sql[1200];
	int present;

	assert_non_null(a);
	key = executor_action_key(a);
	assert_non_null(key);
	assert_null(strchr(key, '\'')); /* safe to quote below */
	snprintf(sql, sizeof(sql), "SELECT next_ms, attempts FROM backoff WHERE key = '%s'", key);
	r = rows(sql);
	row = json_array_get(r, 0);
	present = row != NULL;
	if (next_ms)
		*next_ms = row ? json_integer_value(json_object_get(row, "next_ms")) : 0;
	if (attempts)
		*attempts = row ? (int)json_integer_value(json_object_get(row, "attempts")) : 0;
	json_decref(r);
	free(key);
	json_decref(a);
	return present;
}

static double mono_ms(void)
{
	return (double)clock_mono_ns() / 1e6;
}

#define JOIN_X "{\"kind\": \"room.join\", \"room\": \"general\", \"user\": \"@x:x\"}"
#define JOIN_Y "{\"kind\": \"room.join\", \"room\": \"general\", \"user\": \"@y:x\"}"

/* ---- 1. one user's failure never blocks the others ---- */

static void script_x_fails(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	if (strstr(rq->body, "@x:x")) {
		a->status = 500;
		snprintf(a->body, sizeof(a->body), "{\"errcode\":\"M_UNKNOWN\",\"error\":\"boom\"}");
	} else {
		snprintf(a->body, sizeof(a->body), "{\"room_id\":\"!g:x\"}");
	}
}

static void test_one_failure_does_not_block_others(void **state)
{
	struct executor_result res;
	json_t *row;

	(void)state;
	fakesyn_set_script(F, script_x_fails);
	assert_int_equal(apply("[" JOIN_X ", " JOIN_Y "]", 1000, &res), -1);
	assert_int_equal(res.planned, 2);
	assert_int_equal(res.ok, 1);
	assert_int_equal(res.failed, 1);
	assert_int_equal(res.deferred, 0);
	assert_int_equal(count_seen("POST", "/join/", "@x:x"), 1);
	assert_int_equal(count_seen("POST", "/join/", "@y:x"), 1);
	if (!strstr(res.first_error, "@x:x") || !strstr(res.first_error, "M_UNKNOWN"))
		fail_msg("first_error: have \"%s\", want it to name @x:x and M_UNKNOWN", res.first_error);

	assert_int_equal(count_rows("SELECT id FROM actions"), 2);
	row = action_row("@x:x", "general");
	assert_string_equal(field(row, "kind"), "room.join");
	assert_string_equal(field(row, "outcome"), "failed");
	assert_string_equal(field(row, "errcode"), "M_UNKNOWN");
	assert_non_null(strstr(field(row, "message"), "500"));
	json_decref(row);
	row = action_row("@y:x", "general");
	assert_string_equal(field(row, "outcome"), "ok");
	assert_true(json_is_null(json_object_get(row, "errcode")));
	json_decref(row);

	assert_int_equal(backoff_of(JOIN_X, NULL, NULL), 1);
	assert_int_equal(backoff_of(JOIN_Y, NULL, NULL), 0);
	assert_int_equal(count_rows("SELECT key FROM backoff"), 1);
}

/* ---- 2. backoff defers, then retries, then clears ---- */

static int x_should_fail = 1;

static void script_x_fails_while_flag(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	if (x_should_fail && strstr(rq->body, "@x:x")) {
		a->status = 500;
		snprintf(a->body, sizeof(a->body), "{\"errcode\":\"M_UNKNOWN\",\"error\":\"boom\"}");
	} else {
		snprintf(a->body, sizeof(a->body), "{}");
	}
}

static void test_backoff_defers_then_retries_and_clears(void **state)
{
	struct executor_result res;
	int64_t next_ms = 0;
	int attempts = 0;

	(void)state;
	x_should_fail = 1;
	fakesyn_set_script(F, script_x_fails_while_flag);
	assert_int_equal(apply("[" JOIN_X "]", 1000, &res), -1);
	assert_int_equal(res.failed, 1);
	assert_int_equal(fakesyn_requests(F), 1);
	assert_int_equal(backoff_of(JOIN_X, &next_ms, &attempts), 1);
	assert_int_equal(attempts, 1);
	assert_true(next_ms > 1000);

	/* Just before next_ms: not sent, recorded as deferred. */
	assert_int_equal(apply("[" JOIN_X "]", next_ms - 1, &res), -1);
	assert_int_equal(fakesyn_requests(F), 1);
	assert_int_equal(res.deferred, 1);
	assert_int_equal(res.ok, 0);
	assert_int_equal(res.failed, 0);
	assert_int_equal(count_rows("SELECT id FROM actions WHERE target = '@x:x' AND outcome = 'deferred'"), 1);
	assert_int_equal(backoff_of(JOIN_X, NULL, &attempts), 1);
	assert_int_equal(attempts, 1); /* a deferral is not another failure */

	/* At next_ms it is sent again; Synapse now accepts: ok, backoff cleared. */
	fakesyn_lock(F);
	x_should_fail = 0;
	fakesyn_unlock(F);
	assert_int_equal(apply("[" JOIN_X "]", next_ms, &res), 0);
	assert_int_equal(fakesyn_requests(F), 2);
	assert_int_equal(res.ok, 1);
	assert_int_equal(res.deferred, 0);
	assert_int_equal(backoff_of(JOIN_X, NULL, NULL), 0);
	assert_int_equal(count_rows("SELECT key FROM backoff"), 0);
}

/* ---- 3. 429 with retry_after_ms, then 200 ---- */

static void script_429_once(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	if (rq->n == 1) {
		a->status = 429;
		snprintf(a->body, sizeof(a->body),
			 "{\"errcode\":\"M_LIMIT_EXCEEDED\",\"error\":\"Too Many Requests\","
			 "\"retry_after_ms\":100}");
	} else {
		snprintf(a->body, sizeof(a->body), "{\"room_id\":\"!g:x\"}");
	}
}

static void test_rate_limited_join_is_retried(void **state)
{
	struct executor_result res;

	(void)state;
	fakesyn_set_script(F, script_429_once);
	assert_int_equal(apply("[" JOIN_X "]", 1000, &res), 0);
	assert_int_equal(res.ok, 1);
	assert_int_equal(res.failed, 0);
	assert_int_equal(fakesyn_requests(F), 2);
	assert_int_equal(count_seen("POST", "/join/", "@x:x"), 2);
	assert_outcome("@x:x", "general", "ok");
	assert_int_equal(count_rows("SELECT key FROM backoff"), 0);
}

/* ---- 4. a stalled Synapse times out; the next action still runs ---- */

static void script_x_stalls(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	if (strstr(rq->body, "@x:x"))
		a->delay_ms = 2000;
	snprintf(a->body, sizeof(a->body), "{}");
}

static void test_timeout_fails_action_and_next_runs(void **state)
{
	struct executor_result res;
	struct synapse *fast = NULL;
	char url[64];
	json_t *row;
	double t0, dt;
	int rc;

	(void)state;
	fakesyn_set_script(F, script_x_stalls);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", fakesyn_port(F));
	assert_int_equal(synapse_new(url, 300, &fast), 0);
	t0 = mono_ms();
	rc = apply_with(fast, "[" JOIN_X ", " JOIN_Y "]", 1000, &res);
	dt = mono_ms() - t0;
	synapse_free(fast);
	assert_int_equal(rc, -1);
	assert_int_equal(res.failed, 1);
	assert_int_equal(res.ok, 1);
	assert_true(dt < 1500.0); /* the client gave up; it did not wait for the fake */
	assert_int_equal(count_seen("POST", "/join/", "@y:x"), 1);

	row = action_row("@x:x", "general");
	assert_string_equal(field(row, "outcome"), "failed");
	assert_true(json_is_null(json_object_get(row, "errcode")));
	/* No HTTP answer came, so no HTTP status may be claimed ("HTTP 0"). */
	if (!field(row, "message") || strstr(field(row, "message"), "HTTP"))
		fail_msg("message: have \"%s\", want no HTTP status", field(row, "message"));
	json_decref(row);
	assert_outcome("@y:x", "general", "ok");
	assert_int_equal(backoff_of(JOIN_X, NULL, NULL), 1);
}

/* ---- 5. malformed JSON from the power-levels read: no write ---- */

#define PL_GENERAL                                                 \
	"{\"kind\": \"power_levels.set\", \"room\": \"general\", " \
	"\"users\": {\"@a:x\": 100}, \"events\": {}}"

static void script_pl_broken(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	if (strcmp(rq->method, "GET") == 0)
		snprintf(a->body, sizeof(a->body), "{\"users\": {\"@bot:x\": 200}, oops");
	else
		snprintf(a->body, sizeof(a->body), "{\"event_id\":\"$e\"}");
}

static void test_malformed_power_levels_read_sends_no_write(void **state)
{
	struct executor_result res;

	(void)state;
	fakesyn_set_script(F, script_pl_broken);
	assert_int_equal(apply("[" PL_GENERAL "]", 1000, &res), -1);
	assert_int_equal(res.failed, 1);
	assert_int_equal(res.ok, 0);
	assert_int_equal(count_seen("GET", "/state/m.room.power_levels", NULL), 1);
	assert_int_equal(count_seen("PUT", NULL, NULL), 0);
	assert_int_equal(fakesyn_requests(F), 1);
	assert_int_equal(count_rows("SELECT id FROM actions WHERE kind = 'power_levels.set' "
				    "AND room = 'general' AND outcome = 'failed'"),
			 1);
	assert_int_equal(backoff_of(PL_GENERAL, NULL, NULL), 1);
}

/* ---- 6. power levels are merged into the content read just before ---- */

static void script_pl_current(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	if (strcmp(rq->method, "GET") == 0)
		snprintf(a->body, sizeof(a->body),
			 "{\"users\":{\"@bot:x\":200,\"@other:x\":50},\"events\":{\"m.room.name\":50},"
			 "\"users_default\":0,\"ban\":50}");
	else
		snprintf(a->body, sizeof(a->body), "{\"event_id\":\"$e\"}");
}

static void test_power_levels_merge_into_fresh_read(void **state)
{
	struct executor_result res;
	struct fakesyn_request get, put;
	json_t *body, *want;

	(void)state;
	fakesyn_set_script(F, script_pl_current);
	assert_int_equal(apply("[{\"kind\": \"power_levels.set\", \"room\": \"general\", "
			       "\"users\": {\"@a:x\": 100, \"@b:x\": null}, "
			       "\"events\": {\"m.call.invite\": 0}}]",
			       1000, &res),
			 0);
	assert_int_equal(res.ok, 1);
	assert_int_equal(fakesyn_requests(F), 2);
	get = fakesyn_seen(F, 0);
	put = fakesyn_seen(F, 1);
	assert_string_equal(get.method, "GET");
	assert_string_equal(get.raw, "/_matrix/client/v3/rooms/%21g%3Ax/state/m.room.power_levels/");
	assert_string_equal(put.method, "PUT");
	assert_string_equal(put.raw, get.raw);

	body = json_loads(put.body, 0, NULL);
	assert_non_null(body);
	want = json_loads("{\"users\":{\"@bot:x\":200,\"@other:x\":50,\"@a:x\":100},"
			  "\"events\":{\"m.room.name\":50,\"m.call.invite\":0},"
			  "\"users_default\":0,\"ban\":50}",
			  0, NULL);
	if (!json_equal(body, want)) {
		char *w = json_dumps(want, JSON_SORT_KEYS | JSON_COMPACT);

		fail_msg("PUT body: have %s, want %s", put.body, w);
		free(w);
	}
	json_decref(want);
	json_decref(body);
}

/* Rooms made by the original service have the bot at 100 as creator: it may
 * promote to 100 but never touch anyone at 100, nor raise itself. What it
 * may do is written; the rest fails the action with a reason. */
static void script_pl_bot_at_100(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	if (strcmp(rq->method, "GET") == 0)
		snprintf(a->body, sizeof(a->body),
			 "{\"users\":{\"@bot:x\":100,\"@old:x\":100},\"users_default\":0,\"events\":{}}");
	else
		snprintf(a->body, sizeof(a->body), "{}");
}

static void test_power_levels_beyond_bot_level_blocked(void **state)
{
	struct executor_result res;
	struct fakesyn_request put;
	json_t *body, *want;

	(void)state;
	fakesyn_set_script(F, script_pl_bot_at_100);
	assert_int_equal(apply("[{\"kind\": \"power_levels.set\", \"room\": \"general\", "
			       "\"users\": {\"@bot:x\": 200, \"@old:x\": null, \"@new:x\": 100}, \"events\": {}}]",
			       1000, &res),
			 -1);
	assert_int_equal(res.failed, 1);
	assert_int_equal(fakesyn_requests(F), 2);
	put = fakesyn_seen(F, 1);
	assert_string_equal(put.method, "PUT");
	body = json_loads(put.body, 0, NULL);
	want = json_loads(
		"{\"users\":{\"@bot:x\":100,\"@old:x\":100,\"@new:x\":100},\"users_default\":0,\"events\":{}}", 0,
		NULL);
	if (!json_equal(body, want))
		fail_msg("PUT body: have %s", put.body);
	json_decref(want);
	json_decref(body);
	assert_non_null(strstr(res.first_error, "BOT_LEVEL_TOO_LOW"));
	assert_non_null(strstr(res.first_error, "@old:x 100->0"));
	assert_non_null(strstr(res.first_error, "@bot:x 100->200"));
}

/* ---- 7. answers that mean the goal already holds ---- */

static void script_already(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	if (strstr(rq->raw, "/join/") && strstr(rq->body, "@in:x")) {
		a->status = 403;
		snprintf(a->body, sizeof(a->body),
			 "{\"errcode\":\"M_FORBIDDEN\",\"error\":\"@in:x is already in the room.\"}");
	} else if (strstr(rq->raw, "/join/")) {
		a->status = 403;
		snprintf(a->body, sizeof(a->body),
			 "{\"errcode\":\"M_FORBIDDEN\",\"error\":\"You are not invited to this room.\"}");
	} else if (strstr(rq->raw, "/kick")) {
		a->status = 403;
		snprintf(a->body, sizeof(a->body),
			 "{\"errcode\":\"M_FORBIDDEN\",\"error\":\"The target user is not in the room\"}");
	} else if (strstr(rq->raw, "/deactivate/")) {
		a->status = 404;
		snprintf(a->body, sizeof(a->body), "{\"errcode\":\"M_NOT_FOUND\",\"error\":\"User not found\"}");
	} else {
		a->status = 500;
		snprintf(a->body, sizeof(a->body), "{\"errcode\":\"M_UNKNOWN\"}");
	}
}

static void test_already_done_answers_are_success(void **state)
{
	struct executor_result res;

	(void)state;
	fakesyn_set_script(F, script_already);
	assert_int_equal(apply("[{\"kind\": \"room.join\", \"room\": \"admin\", \"user\": \"@in:x\"},"
			       " {\"kind\": \"room.kick\", \"room\": \"admin\", \"user\": \"@gone:x\"},"
			       " {\"kind\": \"user.deactivate\", \"user\": \"@none:x\"},"
			       " {\"kind\": \"room.join\", \"room\": \"admin\", \"user\": \"@out:x\"}]",
			       1000, &res),
			 -1);
	assert_int_equal(fakesyn_requests(F), 4);
	assert_outcome("@in:x", "admin", "ok");
	assert_outcome("@gone:x", "admin", "ok");
	assert_outcome("@none:x", NULL, "ok");
	/* Only those exact answers: any other 403 is still a failure. */
	assert_outcome("@out:x", "admin", "failed");
	assert_int_equal(res.ok, 3);
	assert_int_equal(res.failed, 1);
	assert_int_equal(count_rows("SELECT key FROM backoff"), 1);
}

/* ---- 8. no joins for a user whose reactivation did not happen ---- */

#define REACT_R "{\"kind\": \"user.reactivate\", \"user\": \"@r:x\"}"

static void script_reactivate_fails(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	if (strstr(rq->raw, "/_synapse/admin/v2/users/")) {
		a->status = 500;
		snprintf(a->body, sizeof(a->body), "{\"errcode\":\"M_UNKNOWN\",\"error\":\"db down\"}");
	} else {
		snprintf(a->body, sizeof(a->body), "{}");
	}
}

static void test_failed_reactivation_holds_back_joins(void **state)
{
	struct executor_result res;

	(void)state;
	fakesyn_set_script(F, script_reactivate_fails);
	assert_int_equal(apply("[" REACT_R ","
			       " {\"kind\": \"room.join\", \"room\": \"admin\", \"user\": \"@r:x\"},"
			       " {\"kind\": \"room.join\", \"room\": \"general\", \"user\": \"@r:x\"},"
			       " {\"kind\": \"room.join\", \"room\": \"general\", \"user\": \"@o:x\"}]",
			       1000, &res),
			 -1);
	assert_int_equal(count_seen("PUT", "/_synapse/admin/v2/users/%40r%3Ax", NULL), 1);
	assert_int_equal(count_seen("POST", "/join/", "@r:x"), 0);
	assert_int_equal(count_seen("POST", "/join/", "@o:x"), 1);
	assert_outcome("@r:x", "admin", "skipped");
	assert_outcome("@r:x", "general", "skipped");
	assert_outcome("@o:x", "general", "ok");
	assert_int_equal(res.failed, 1);
	assert_int_equal(res.deferred, 2);
	assert_int_equal(res.ok, 1);
	/* Held-back joins get no backoff of their own: they go as soon as the
	 * reactivation succeeds. */
	assert_int_equal(count_rows("SELECT key FROM backoff WHERE key LIKE 'room.join%'"), 0);
}

/* A reactivation still waiting out its backoff leaves the account
 * deactivated just the same: joining it would be a force-join of a
 * deactivated account (Synapse answers 200 and the user leaves at once). */
static void test_deferred_reactivation_holds_back_joins(void **state)
{
	struct executor_result res;

	(void)state;
	fakesyn_set_script(F, script_reactivate_fails);
	assert_int_equal(apply("[" REACT_R "]", 1000, &res), -1);
	assert_int_equal(fakesyn_requests(F), 1);
	assert_int_equal(apply("[" REACT_R ", {\"kind\": \"room.join\", \"room\": \"general\", "
			       "\"user\": \"@r:x\"}]",
			       2000, &res),
			 -1);
	assert_int_equal(fakesyn_requests(F), 1);
	assert_int_equal(res.deferred, 2);
	assert_int_equal(res.ok, 0);
	assert_int_equal(count_rows("SELECT id FROM actions WHERE target = '@r:x' "
				    "AND kind = 'room.join' AND outcome = 'ok'"),
			 0);
}

/* ---- 9. each kind's request: method, escaped path, body ---- */

static const struct {
	const char *action;
	const char *method, *raw; /* the last request the action sends */
	const char *body;         /* JSON the body must contain (each key equal) */
	int exact;                /* the body must equal it */
} requests_by_kind[] = {
	{"{\"kind\": \"state.set\", \"room\": \"general\", \"event_type\": \"m.room.topic\", "
	 "\"state_key\": \"\", \"content\": {\"topic\": \"Work\"}}",
	 "PUT", "/_matrix/client/v3/rooms/%21g%3Ax/state/m.room.topic/", "{\"topic\": \"Work\"}", 1},
	{"{\"kind\": \"state.set\", \"room\": \"space\", \"event_type\": \"m.space.child\", "
	 "\"state_key\": \"!g:x\", \"content\": {\"via\": [\"x\"]}}",
	 "PUT", "/_matrix/client/v3/rooms/%21s%3Ax/state/m.space.child/%21g%3Ax", "{\"via\": [\"x\"]}", 1},
	{"{\"kind\": \"power_levels.set\", \"room\": \"admin\", \"users\": {\"@u:x\": 100}, "
	 "\"events\": {}}",
	 "PUT", "/_matrix/client/v3/rooms/%21a%3Ax/state/m.room.power_levels/", "{\"users\": {\"@u:x\": 100}}", 0},
	{"{\"kind\": \"room.join\", \"room\": \"general\", \"user\": \"@u:x\"}", "POST",
	 "/_synapse/admin/v1/join/%21g%3Ax", "{\"user_id\": \"@u:x\"}", 1},
	{"{\"kind\": \"ingest.join\", \"room\": \"general\", \"room_id\": \"!g:x\", \"user\": \"@ing:x\"}", "POST",
	 "/_synapse/admin/v1/join/%21g%3Ax", "{\"user_id\": \"@ing:x\"}", 1},
	{"{\"kind\": \"room.kick\", \"room\": \"admin\", \"user\": \"@u:x\"}", "POST",
	 "/_matrix/client/v3/rooms/%21a%3Ax/kick", "{\"user_id\": \"@u:x\"}", 0},
	{"{\"kind\": \"user.deactivate\", \"user\": \"@u:x\"}", "POST", "/_synapse/admin/v1/deactivate/%40u%3Ax",
	 "{\"erase\": true}", 1},
	{"{\"kind\": \"user.reactivate\", \"user\": \"@u:x\"}", "PUT", "/_synapse/admin/v2/users/%40u%3Ax",
	 "{\"deactivated\": false}", 1},
};

static void test_each_kind_sends_its_request(void **state)
{
	size_t n = sizeof(requests_by_kind) / sizeof(requests_by_kind[0]);

	(void)state;
	/* Every kind is in the table, so a new kind cannot go untested. */
	for (int k = 0; k < ACTION__COUNT; k++) {
		int covered = 0;

		for (size_t i = 0; i < n; i++) {
			json_t *a = json_loads(requests_by_kind[i].action, 0, NULL);

			covered |= planner_action_kind(a) == k;
			json_decref(a);
		}
		if (!covered)
			fail_msg("kind %s: have no row in requests_by_kind, want one", action_names[k]);
	}

	for (size_t i = 0; i < n; i++) {
		struct executor_result res;
		char list[1024];
		struct fakesyn_request rq;
		json_t *have, *want, *v;
		const char *key;
		int before = fakesyn_requests(F), ok;

		snprintf(list, sizeof(list), "[%s]", requests_by_kind[i].action);
		if (apply(list, 1000 + (int64_t)i, &res) != 0)
			fail_msg("%s: have failure \"%s\", want ok", requests_by_kind[i].action, res.first_error);
		if (fakesyn_requests(F) <= before)
			fail_msg("%s: have no request, want one", requests_by_kind[i].action);
		rq = fakesyn_seen(F, fakesyn_requests(F) - 1);
		if (strcmp(rq.method, requests_by_kind[i].method) != 0 || strcmp(rq.raw, requests_by_kind[i].raw) != 0)
			fail_msg("%s: have %s %s, want %s %s", requests_by_kind[i].action, rq.method, rq.raw,
				 requests_by_kind[i].method, requests_by_kind[i].raw);
		have = json_loads(rq.body, 0, NULL);
		want = json_loads(requests_by_kind[i].body, 0, NULL);
		assert_non_null(want);
		ok = json_is_object(have);
		if (ok && requests_by_kind[i].exact)
			ok = json_equal(have, want);
		else if (ok)
			json_object_foreach(want, key, v)
				ok = ok && json_equal(json_object_get(have, key), v);
		json_decref(have);
		json_decref(want);
		if (!ok)
			fail_msg("%s: have body %s, want %s%s", requests_by_kind[i].action, rq.body,
				 requests_by_kind[i].exact ? "" : "one containing ", requests_by_kind[i].body);
	}
}

/* ---- the ingest bot joins a room we do not manage on its own ---- */

static void script_self_join_forbidden(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	if (strstr(rq->url, "/_matrix/client/v3/join/") != NULL) {
		a->status = 403;
		snprintf(a->body, sizeof(a->body), "{\"errcode\": \"M_FORBIDDEN\", \"error\": \"invite only\"}");
	}
}

static void test_ingest_join_of_a_child_room(void **state)
{
	static const char act[] = "[{\"kind\": \"ingest.join\", \"room_id\": \"!c:x\", \"user\": \"@ing:x\"}]";
	struct synapse *ingest = NULL;
	struct executor_result res;
	struct fakesyn_request rq;
	json_t *actions = json_loads(act, 0, NULL);
	char url[64];
	int before;

	(void)state;
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", fakesyn_port(F));
	assert_int_equal(synapse_new(url, 2000, &ingest), 0);
	synapse_set_token(ingest, "ingest-token");
	synapse_set_token(T.syn, "bot-token");
	/* its own join, with its own token */
	before = fakesyn_requests(F);
	assert_int_equal(
		executor_apply(T.syn, ingest, T.st, "@bot:x", T.rooms, NULL, actions, T.pass, 1000, NULL, &res), 0);
	assert_int_equal(fakesyn_requests(F), before + 1);
	rq = fakesyn_last(F);
	assert_string_equal(rq.method, "POST");
	assert_string_equal(rq.raw, "/_matrix/client/v3/join/%21c%3Ax");
	assert_string_equal(rq.auth, "Bearer ingest-token");
	/* refused: the bot's admin join is tried next */
	fakesyn_set_script(F, script_self_join_forbidden);
	before = fakesyn_requests(F);
	assert_int_equal(
		executor_apply(T.syn, ingest, T.st, "@bot:x", T.rooms, NULL, actions, T.pass, 2000, NULL, &res), 0);
	assert_int_equal(fakesyn_requests(F), before + 2);
	rq = fakesyn_last(F);
	assert_string_equal(rq.raw, "/_synapse/admin/v1/join/%21c%3Ax");
	assert_string_equal(rq.auth, "Bearer bot-token");
	assert_string_equal(rq.body, "{\"user_id\":\"@ing:x\"}");
	synapse_free(ingest);
	json_decref(actions);
}

/* ---- a pass gives up early: Synapse gone, deadline, shutdown ---- */

#define THREE_JOINS                                                              \
	"[{\"kind\": \"room.join\", \"room\": \"general\", \"user\": \"@p:x\"}," \
	" {\"kind\": \"room.join\", \"room\": \"general\", \"user\": \"@q:x\"}," \
	" {\"kind\": \"room.join\", \"room\": \"general\", \"user\": \"@r:x\"}]"

static int64_t rows_with(const char *outcome)
{
	sqlite3_stmt *stmt = NULL;
	int64_t n = -1;

	if (sqlite3_prepare_v2(store_db(T.st), "SELECT COUNT(*) FROM actions WHERE outcome = ?", -1, &stmt, NULL) ==
	    SQLITE_OK) {
		sqlite3_bind_text(stmt, 1, outcome, -1, SQLITE_STATIC);
		if (sqlite3_step(stmt) == SQLITE_ROW)
			n = sqlite3_column_int64(stmt, 0);
	}
	sqlite3_finalize(stmt);
	return n;
}

static void test_unreachable_synapse_abandons_the_rest(void **state)
{
	struct synapse *gone = NULL;
	struct executor_result res;
	int64_t next;
	int attempts;

	(void)state;
	/* a port nobody listens on: a transport error at once */
	assert_int_equal(synapse_new("http://127.0.0.1:9", 500, &gone), 0);
	assert_int_equal(apply_with(gone, THREE_JOINS, 1000, &res), -1);
	assert_int_equal(res.failed, 2);
	assert_int_equal(res.abandoned, 1);
	assert_int_equal(res.unreachable, 1);
	assert_int_equal(rows_with("abandoned"), 1);
	/* only those that failed wait on backoff; the rest go next pass */
	assert_int_equal(store_backoff_get(T.st, "room.join|general|@r:x||", &next, &attempts), 0);
	assert_int_equal(attempts, 0);
	synapse_free(gone);
}

static void test_deadline_and_shutdown_abandon_without_sending(void **state)
{
	struct executor_limits past = {.deadline_ms = 1}, stopping = {0};
	atomic_int stop = 1;
	struct executor_result res;
	int before = fakesyn_requests(F);

	(void)state;
	T.limits = &past;
	assert_int_equal(apply(THREE_JOINS, 1000, &res), -1);
	assert_int_equal(res.abandoned, 3);
	stopping.stop = &stop;
	T.limits = &stopping;
	assert_int_equal(apply(THREE_JOINS, 2000, &res), -1);
	assert_int_equal(res.abandoned, 3);
	assert_int_equal(res.failed + res.ok, 0);
	T.limits = NULL;
	assert_int_equal(fakesyn_requests(F), before);
	assert_int_equal(rows_with("abandoned"), 6);
	/* without limits the same plan goes through */
	assert_int_equal(apply(THREE_JOINS, 3000, &res), 0);
	assert_int_equal(res.ok, 3);
}

/* ---- an unknown kind is recorded by a name, also when deferred ---- */

static void test_unknown_kind_fails_then_defers_safely(void **state)
{
	static const char act[] = "[{\"kind\": \"room.explode\", \"room\": \"general\", \"user\": \"@z:x\"}]";
	struct executor_result res;

	(void)state;
	assert_int_equal(apply(act, 1000, &res), -1);
	assert_int_equal(res.failed, 1);
	assert_int_equal(apply(act, 2000, &res), -1);
	assert_int_equal(res.deferred, 1);
	assert_int_equal(fakesyn_requests(F), 0);
	assert_int_equal(count_rows("SELECT id FROM actions WHERE target = '@z:x' AND kind = 'unknown'"), 2);
}

/* ---- waves: how a plan is cut and ordered (pure) ---- */

static json_t *plan_of(const char *text)
{
	json_error_t jerr;
	json_t *a = json_loads(text, 0, &jerr);

	if (!a)
		fail_msg("bad plan JSON in test: %s", jerr.text);
	return a;
}

#define J(room, user) "{\"kind\": \"room.join\", \"room\": \"" room "\", \"user\": \"" user "\"}"

static void assert_wave(const struct executor_schedule *sch, size_t w, size_t first, size_t count, int concurrent,
			const size_t *order)
{
	assert_true(w < sch->nwaves);
	assert_int_equal(sch->waves[w].first, first);
	assert_int_equal(sch->waves[w].count, count);
	assert_int_equal(sch->waves[w].concurrent, concurrent);
	for (size_t k = 0; k < count; k++)
		if (sch->order[first + k] != order[k])
			fail_msg("wave %zu start %zu: have action %zu, want %zu", w, k, sch->order[first + k],
				 order[k]);
}

static void test_schedule_cuts_runs_and_interleaves_rooms(void **state)
{
	json_t *plan = plan_of(
		"["
		"{\"kind\": \"state.set\", \"room\": \"general\", \"event_type\": \"m.room.topic\", \"state_key\": \"\", \"content\": {}},"
		"{\"kind\": \"state.set\", \"room\": \"space\", \"event_type\": \"m.room.name\", \"state_key\": \"\", \"content\": {}},"
		"{\"kind\": \"power_levels.set\", \"room\": \"general\", \"users\": {}, \"events\": {}},"
		"{\"kind\": \"user.reactivate\", \"user\": \"@a:x\"},"
		"{\"kind\": \"user.reactivate\", \"user\": \"@b:x\"}," J("space", "@a:x") "," J("space", "@b:x") "," J(
			"space",
			"@c:x") "," J("general",
				      "@a:x") "," J("general",
						    "@b:x") "," J("admin",
								  "@c:x") ","
									  "{\"kind\": \"ingest.join\", \"room\": \"general\", \"room_id\": \"!g:x\", \"user\": \"@i:x\"},"
									  "{\"kind\": \"ingest.join\", \"room_id\": \"!o:x\", \"user\": \"@i:x\"},"
									  "{\"kind\": \"room.kick\", \"room\": \"admin\", \"user\": \"@d:x\"},"
									  "{\"kind\": \"user.deactivate\", \"user\": \"@e:x\"},"
									  "{\"kind\": \"user.deactivate\", \"user\": \"@f:x\"}]");
	static const size_t seq_state[] = {0, 1}, pl[] = {2}, react[] = {3, 4}, ingest[] = {11, 12}, kick[] = {13},
			    deact[] = {14, 15};
	/* space, general, admin in turn: the first of each room, then the second... */
	static const size_t joins[] = {5, 8, 10, 6, 9, 7};
	struct executor_schedule sch;

	(void)state;
	assert_int_equal(executor_schedule(plan, &sch), 0);
	assert_int_equal(sch.n, 16);
	assert_int_equal(sch.nwaves, 7);
	assert_wave(&sch, 0, 0, 2, 0, seq_state);
	assert_wave(&sch, 1, 2, 1, 0, pl);
	assert_wave(&sch, 2, 3, 2, 1, react);
	assert_wave(&sch, 3, 5, 6, 1, joins);
	assert_wave(&sch, 4, 11, 2, 0, ingest);
	assert_wave(&sch, 5, 13, 1, 1, kick);
	assert_wave(&sch, 6, 14, 2, 1, deact);
	executor_schedule_free(&sch);
	assert_null(sch.waves);
	json_decref(plan);
}

static void test_schedule_never_moves_across_runs(void **state)
{
	/* not the planner's order: a join, a reactivation, a join again */
	json_t *plan = plan_of("[" J("general", "@a:x") ", {\"kind\": \"user.reactivate\", \"user\": \"@a:x\"}, " J(
		"general", "@b:x") ", {\"kind\": \"room.explode\"}, {\"kind\": \"room.explode\"}]");
	static const size_t w0[] = {0}, w1[] = {1}, w2[] = {2}, w3[] = {3, 4};
	struct executor_schedule sch;

	(void)state;
	assert_int_equal(executor_schedule(plan, &sch), 0);
	assert_int_equal(sch.nwaves, 4);
	assert_wave(&sch, 0, 0, 1, 1, w0);
	assert_wave(&sch, 1, 1, 1, 1, w1);
	assert_wave(&sch, 2, 2, 1, 1, w2);
	assert_wave(&sch, 3, 3, 2, 0, w3); /* unknown kinds: one at a time */
	executor_schedule_free(&sch);
	json_decref(plan);
	plan = json_array();
	assert_int_equal(executor_schedule(plan, &sch), 0);
	assert_int_equal(sch.nwaves, 0);
	executor_schedule_free(&sch);
	json_decref(plan);
}

/* ---- waves against the fake: concurrency, its bound, giving up ---- */

static void script_stall(const struct fakesyn_request *rq, struct fakesyn_answer *a, long ms)
{
	(void)rq;
	a->delay_ms = ms;
	snprintf(a->body, sizeof(a->body), "{}");
}

static void script_stall_300(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	script_stall(rq, a, 300);
}

static void script_stall_3000(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	script_stall(rq, a, 3000);
}

/* n joins of distinct users, alternating general and the space. */
static char *joins_json(int n)
{
	char *buf = malloc((size_t)n * 80 + 4);
	size_t len = 0;

	assert_non_null(buf);
	buf[len++] = '[';
	for (int i = 0; i < n; i++)
		len += (size_t)sprintf(buf + len,
				       "%s{\"kind\": \"room.join\", \"room\": \"%s\", \"user\": \"@u%02d:x\"}",
				       i ? ", " : "", i % 2 ? "space" : "general", i);
	buf[len++] = ']';
	buf[len] = '\0';
	return buf;
}

static void test_wave_of_joins_is_concurrent_within_the_bound(void **state)
{
	struct executor_result res;
	char *plan = joins_json(20);

	(void)state;
	fakesyn_set_script(F, script_stall_300);
	assert_int_equal(apply(plan, 1000, &res), 0);
	free(plan);
	assert_int_equal(res.ok, 20);
	assert_int_equal(fakesyn_requests(F), 20);
	assert_int_equal(count_rows("SELECT id FROM actions WHERE kind = 'room.join' AND outcome = 'ok'"), 20);
	/* overlapped, and never more than the bound */
	assert_int_equal(fakesyn_max_in_flight(F), EXECUTOR_WAVE_IN_FLIGHT);
	/* kept-alive connections: no more than one per slot */
	assert_true(fakesyn_connections(F) <= EXECUTOR_WAVE_IN_FLIGHT);
}

static void test_state_writes_stay_sequential(void **state)
{
	struct executor_result res;

	(void)state;
	fakesyn_set_script(F, script_stall_300);
	assert_int_equal(
		apply("["
		      "{\"kind\": \"state.set\", \"room\": \"general\", \"event_type\": \"m.room.topic\", \"state_key\": \"\", \"content\": {}},"
		      "{\"kind\": \"state.set\", \"room\": \"space\", \"event_type\": \"m.room.name\", \"state_key\": \"\", \"content\": {}},"
		      "{\"kind\": \"state.set\", \"room\": \"admin\", \"event_type\": \"m.room.name\", \"state_key\": \"\", \"content\": {}}]",
		      1000, &res),
		0);
	assert_int_equal(res.ok, 3);
	assert_int_equal(fakesyn_max_in_flight(F), 1);
}

/* The stop flag (also the client's abort flag, as in the loop) mid-wave: what
 * was in flight and what was not started are abandoned, not failed. */
static atomic_int stop_flag;

static void *set_stop_later(void *arg)
{
	struct timespec ts = {0, 300 * 1000000L};

	(void)arg;
	nanosleep(&ts, NULL);
	atomic_store(&stop_flag, 1);
	return NULL;
}

static void test_stop_mid_wave_abandons_without_backoff(void **state)
{
	struct executor_limits lim = {.stop = &stop_flag};
	struct executor_result res;
	char *plan = joins_json(12);
	pthread_t th;
	double t0, dt;

	(void)state;
	atomic_store(&stop_flag, 0);
	fakesyn_set_script(F, script_stall_3000);
	synapse_set_abort(T.syn, &stop_flag);
	T.limits = &lim;
	assert_int_equal(pthread_create(&th, NULL, set_stop_later, NULL), 0);
	t0 = mono_ms();
	assert_int_equal(apply(plan, 1000, &res), -1);
	dt = mono_ms() - t0;
	pthread_join(th, NULL);
	T.limits = NULL;
	synapse_set_abort(T.syn, NULL);
	free(plan);
	assert_true(dt < 1500.0); /* cut short, not waited out */
	assert_int_equal(res.abandoned, 12);
	assert_int_equal(res.failed, 0);
	assert_int_equal(res.ok, 0);
	assert_int_equal(fakesyn_requests(F), EXECUTOR_WAVE_IN_FLIGHT); /* nothing started after the stop */
	assert_int_equal(rows_with("abandoned"), 12);
	assert_int_equal(count_rows("SELECT key FROM backoff"), 0);
}

/* Each answer after 5 ms, so that a request usually finds others in flight;
 * the one that starts the second chunk must find none. */
static int second_chunk_found = -1;

static void script_5ms_note_chunk(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	if (rq->n == EXECUTOR_WAVE_CHUNK + 1)
		second_chunk_found = rq->in_flight;
	script_stall(rq, a, 5);
}

/* A wave larger than a chunk: every action sent once and recorded, within
 * the bound, and the second chunk starts only once the first has ended. */
static void test_wave_larger_than_a_chunk_goes_in_chunks(void **state)
{
	struct executor_result res;
	int n = 2 * EXECUTOR_WAVE_CHUNK + 5;
	char *plan = joins_json(n);

	(void)state;
	second_chunk_found = -1;
	fakesyn_set_script(F, script_5ms_note_chunk);
	assert_int_equal(apply(plan, 1000, &res), 0);
	free(plan);
	assert_int_equal(res.ok, n);
	assert_int_equal(fakesyn_requests(F), n);
	assert_int_equal(count_rows("SELECT DISTINCT target FROM actions WHERE kind = 'room.join' AND outcome = 'ok'"),
			 n);
	assert_int_equal(fakesyn_max_in_flight(F), EXECUTOR_WAVE_IN_FLIGHT);
	assert_int_equal(second_chunk_found, 0);
}

/* A stop in the first chunk: the later chunks are abandoned unsent. Only
 * the executor's limits carry the stop here (not the client's abort flag),
 * so it is the executor that must hold the later chunks back. */
static void script_stop_at_10(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	if (rq->n == 10)
		atomic_store(&stop_flag, 1);
	script_stall(rq, a, 5);
}

static void test_stop_in_a_chunk_sends_no_later_chunk(void **state)
{
	struct executor_limits lim = {.stop = &stop_flag};
	struct executor_result res;
	int n = 2 * EXECUTOR_WAVE_CHUNK;
	char *plan = joins_json(n);

	(void)state;
	atomic_store(&stop_flag, 0);
	fakesyn_set_script(F, script_stop_at_10);
	T.limits = &lim;
	assert_int_equal(apply(plan, 1000, &res), -1);
	T.limits = NULL;
	free(plan);
	assert_true(fakesyn_requests(F) < 10 + EXECUTOR_WAVE_IN_FLIGHT);
	assert_int_equal(res.ok + res.abandoned, n);
	assert_true(res.abandoned > EXECUTOR_WAVE_CHUNK);
	assert_int_equal(res.failed, 0);
	assert_int_equal(rows_with("abandoned"), res.abandoned);
}

/* A Synapse that takes every request and answers none: the first two
 * requests to time out with no answer between them end the wave; the rest
 * (in flight or not started) are abandoned. */
static void test_hanging_synapse_ends_the_wave_after_two_no_answers(void **state)
{
	struct synapse *fast = NULL;
	struct executor_result res;
	char url[64], *plan = joins_json(12);

	(void)state;
	fakesyn_set_script(F, script_stall_3000);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", fakesyn_port(F));
	assert_int_equal(synapse_new(url, 300, &fast), 0);
	assert_int_equal(apply_with(fast, plan, 1000, &res), -1);
	synapse_free(fast);
	free(plan);
	assert_int_equal(res.unreachable, 1);
	assert_int_equal(res.failed, 2);
	assert_int_equal(res.abandoned, 10);
	assert_int_equal(count_rows("SELECT key FROM backoff"), 2);
	/* The bound was filled at once. The first no-answer alone is one slow
	 * request and frees its slot, so the next join may start before the
	 * second no-answer ends the wave (when the two timeouts are seen in
	 * separate turns of curl's loop, as on a loaded machine): at most one
	 * request more, never the rest. */
	assert_in_range(fakesyn_requests(F), EXECUTOR_WAVE_IN_FLIGHT, EXECUTOR_WAVE_IN_FLIGHT + 1);
}

/* Stalls with an answer between them are slow requests, not an outage.
 * With 12 joins and 8 slots (client timeout 1500 ms): u01..u07 answer at
 * 600 ms and u08..u11 start then; u00 times out at 1500, u10 answers at
 * 1900, u11 times out at 2100. */
static void script_u00_stalls(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	if (strstr(rq->body, "@u00:x") || strstr(rq->body, "@u11:x"))
		a->delay_ms = 4000;
	else if (strstr(rq->body, "@u10:x"))
		a->delay_ms = 1300;
	else
		a->delay_ms = 600;
	snprintf(a->body, sizeof(a->body), "{}");
}

static void test_stalls_with_answers_between_are_failures_only(void **state)
{
	struct synapse *fast = NULL;
	struct executor_result res;
	char url[64], *plan = joins_json(12);

	(void)state;
	fakesyn_set_script(F, script_u00_stalls);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", fakesyn_port(F));
	assert_int_equal(synapse_new(url, 1500, &fast), 0);
	assert_int_equal(apply_with(fast, plan, 1000, &res), -1);
	synapse_free(fast);
	free(plan);
	assert_int_equal(res.unreachable, 0);
	assert_int_equal(res.failed, 2);
	assert_int_equal(res.ok, 10);
	assert_int_equal(res.abandoned, 0);
	assert_outcome("@u00:x", "general", "failed");
	assert_outcome("@u11:x", "space", "failed");
	assert_outcome("@u10:x", "general", "ok");
}

/* A deactivation gets its own, longer timeout than the client's. */
static void script_deactivate_slow(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	if (strstr(rq->url, "/deactivate/"))
		a->delay_ms = 2600;
	snprintf(a->body, sizeof(a->body), "{}");
}

static void test_deactivation_outlives_the_client_timeout(void **state)
{
	struct executor_result res;

	(void)state;
	fakesyn_set_script(F, script_deactivate_slow);
	/* T.syn times out after 2000 ms */
	assert_int_equal(apply("[{\"kind\": \"user.deactivate\", \"user\": \"@gone:x\"}]", 1000, &res), 0);
	assert_int_equal(res.ok, 1);
	assert_outcome("@gone:x", NULL, "ok");
}

/* ---- power levels refused after the read: read again, write again ---- */

static int pl_refusals; /* PUTs still to refuse */

static void script_pl_refused(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	if (strcmp(rq->method, "GET") == 0) {
		snprintf(a->body, sizeof(a->body), "{\"users\": {\"@bot:x\": 200}, \"events\": {}}");
	} else if (pl_refusals > 0) {
		pl_refusals--;
		a->status = 403;
		snprintf(a->body, sizeof(a->body),
			 "{\"errcode\":\"M_FORBIDDEN\",\"error\":\"You don't have permission\"}");
	} else {
		snprintf(a->body, sizeof(a->body), "{\"event_id\":\"$e\"}");
	}
}

static void test_power_levels_refused_write_is_reread_and_retried(void **state)
{
	struct executor_result res;

	(void)state;
	pl_refusals = 1;
	fakesyn_set_script(F, script_pl_refused);
	assert_int_equal(apply("[" PL_GENERAL "]", 1000, &res), 0);
	assert_int_equal(res.ok, 1);
	assert_int_equal(fakesyn_requests(F), 4);
	assert_string_equal(fakesyn_seen(F, 0).method, "GET");
	assert_string_equal(fakesyn_seen(F, 1).method, "PUT");
	assert_string_equal(fakesyn_seen(F, 2).method, "GET");
	assert_string_equal(fakesyn_seen(F, 3).method, "PUT");
	assert_non_null(strstr(fakesyn_seen(F, 3).body, "\"@a:x\":100"));

	/* refused again after the second read: one retry only, then a failure */
	fakesyn_lock(F);
	pl_refusals = 5;
	fakesyn_unlock(F);
	assert_int_equal(apply("[" PL_GENERAL "]", 2000, &res), -1);
	assert_int_equal(res.failed, 1);
	assert_int_equal(fakesyn_requests(F), 8);
	assert_int_equal(count_rows("SELECT id FROM actions WHERE outcome = 'failed' AND errcode = 'M_FORBIDDEN'"), 1);
}

/* With the pass's state read at hand, a changed room costs one write: the
 * merge starts from the content read there, with no second read; a refusal
 * still reads again and writes once more. */
static void test_power_levels_written_from_the_pass_read(void **state)
{
	struct executor_result res;
	json_t *body;

	(void)state;
	T.observed = json_loads("{\"general\": [{\"type\": \"m.room.member\", \"state_key\": \"@a:x\", "
				"\"content\": {\"membership\": \"join\"}}, {\"type\": \"m.room.power_levels\", "
				"\"state_key\": \"\", \"content\": {\"users\": {\"@bot:x\": 200, \"@seen:x\": 50}, "
				"\"events\": {}, \"ban\": 50}}]}",
				0, NULL);
	assert_non_null(T.observed);
	pl_refusals = 0;
	fakesyn_set_script(F, script_pl_refused);
	assert_int_equal(apply("[" PL_GENERAL "]", 1000, &res), 0);
	assert_int_equal(res.ok, 1);
	assert_int_equal(fakesyn_requests(F), 1);
	assert_string_equal(fakesyn_seen(F, 0).method, "PUT");
	body = json_loads(fakesyn_seen(F, 0).body, 0, NULL);
	assert_non_null(body);
	/* what the pass read, with the change merged in */
	assert_int_equal(json_integer_value(json_object_get(json_object_get(body, "users"), "@seen:x")), 50);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(body, "users"), "@a:x")), 100);
	assert_int_equal(json_integer_value(json_object_get(body, "ban")), 50);
	json_decref(body);

	/* Refused (the room changed since the pass read it): read, merge, write. */
	fakesyn_lock(F);
	pl_refusals = 1;
	fakesyn_unlock(F);
	assert_int_equal(apply("[" PL_GENERAL "]", 2000, &res), 0);
	assert_int_equal(fakesyn_requests(F), 4);
	assert_string_equal(fakesyn_seen(F, 1).method, "PUT");
	assert_string_equal(fakesyn_seen(F, 2).method, "GET");
	assert_string_equal(fakesyn_seen(F, 3).method, "PUT");
	assert_null(strstr(fakesyn_seen(F, 3).body, "@seen:x")); /* from the fresh read, not the pass's */
	assert_non_null(strstr(fakesyn_seen(F, 3).body, "\"@a:x\":100"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_one_failure_does_not_block_others, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backoff_defers_then_retries_and_clears, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rate_limited_join_is_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_fails_action_and_next_runs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_power_levels_read_sends_no_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_power_levels_merge_into_fresh_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_already_done_answers_are_success, setup, teardown),
		cmocka_unit_test_setup_teardown(test_power_levels_beyond_bot_level_blocked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_reactivation_holds_back_joins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deferred_reactivation_holds_back_joins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_each_kind_sends_its_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ingest_join_of_a_child_room, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreachable_synapse_abandons_the_rest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deadline_and_shutdown_abandon_without_sending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_kind_fails_then_defers_safely, setup, teardown),
		cmocka_unit_test(test_schedule_cuts_runs_and_interleaves_rooms),
		cmocka_unit_test(test_schedule_never_moves_across_runs),
		cmocka_unit_test_setup_teardown(test_wave_of_joins_is_concurrent_within_the_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_writes_stay_sequential, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_mid_wave_abandons_without_backoff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wave_larger_than_a_chunk_goes_in_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_in_a_chunk_sends_no_later_chunk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hanging_synapse_ends_the_wave_after_two_no_answers, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stalls_with_answers_between_are_failures_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deactivation_outlives_the_client_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_power_levels_refused_write_is_reread_and_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_power_levels_written_from_the_pass_read, setup, teardown),
	};

	log_init(LOG_LVL_ERROR, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
