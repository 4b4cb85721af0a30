/* test_loop: loop_run_once, the whole pass (health -> bootstrap -> observe ->
 * plan -> execute), against the scripted fake Synapse (fakesyn.c) and a real
 * store in a fresh mkdtemp directory. Each test scripts the one answer that
 * matters and checks what loop_run_once returned, the one-line summary, and
 * which requests the fake saw: a user list whose next_token never moves must
 * end the pass, not spin; a room state reply without "state" must fail the
 * pass naming the room; locked and deactivated accounts are asked for; both
 * pages of an honest list are read and used; an unreachable Synapse gets
 * nothing but /health; a dry run with a bad token writes nothing.
 *
 * Where a regression would make loop_run_once loop for ever, the script
 * gives in after a bound (a last page, a healthy /health), so the test fails
 * on its request counts instead of hanging. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "clock.h"
#include "config.h"
#include "fakesyn.h"
#include "log.h"
#include "loop.h"
#include "store.h"

#define MAX_SEEN 1024
#define BOT "@matrixrmapi-bot:example.test"
#define USERS_PATH "/_synapse/admin/v2/users"
#define STUCK_GIVE_UP 50 /* user-list pages a broken guard gets before the fake stops paging */

enum users_script { USERS_ONE_PAGE, USERS_STUCK, USERS_TWO_PAGES };

/* What the script answers; set before the run, read and counted under the
 * fake's lock. */
static struct {
	int health_503; /* answer 503 to this many /health requests first */
	unsigned whoami_status;
	enum users_script users;
	const char *bad_state_room; /* this room's state reply has no "state" */
	int health_seen, users_seen;
} S;

static struct fakesyn *F; /* started by setup */

/* The fixture every test gets: a directory, a token file, a config. */
static struct {
	char dir[64];
	char url[64], token_file[128], db[128];
	char secret[2], bot[32], domain[32], deployment[8], empty[1];
	struct config cfg;
	char summary[2048];
} T;

/* ---- the fake's script ---- */

/* "!<key>:example.test" for "/_matrix/client/v3/directory/room/#dep-<key>:example.test". */
static void answer_alias(const char *url, struct fakesyn_answer *a)
{
	const char *key = strstr(url, "/directory/room/#dep-");
	int len;

	if (!key) {
		a->status = 404;
		snprintf(a->body, sizeof(a->body), "{\"errcode\": \"M_NOT_FOUND\"}");
		return;
	}
	key += strlen("/directory/room/#dep-");
	len = (int)strcspn(key, ":");
	snprintf(a->body, sizeof(a->body), "{\"room_id\": \"!%.*s:example.test\"}", len, key);
}

static void answer_users(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	int first = strstr(rq->raw, "from=0&") != NULL, second = strstr(rq->raw, "from=500&") != NULL;

	S.users_seen++;
	switch (S.users) {
	case USERS_ONE_PAGE:
		snprintf(a->body, sizeof(a->body), "{\"users\": [{\"name\": \"@a:example.test\"}], \"total\": 1}");
		break;
	case USERS_STUCK:
		if (S.users_seen < STUCK_GIVE_UP)
			snprintf(a->body, sizeof(a->body),
				 "{\"users\": [{\"name\": \"@a:example.test\"}], \"total\": 5, \"next_token\": \"0\"}");
		else
			snprintf(a->body, sizeof(a->body), "{\"users\": [], \"total\": 5}");
		break;
	case USERS_TWO_PAGES:
		if (first)
			snprintf(
				a->body, sizeof(a->body),
				"{\"users\": [{\"name\": \"@a:example.test\"}], \"total\": 501, \"next_token\": \"500\"}");
		else if (second)
			snprintf(a->body, sizeof(a->body),
				 "{\"users\": [{\"name\": \"@b:example.test\"}], \"total\": 501}");
		else {
			a->status = 400;
			snprintf(a->body, sizeof(a->body), "{\"errcode\": \"M_INVALID_PARAM\"}");
		}
		break;
	}
}

static void script(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	const char *url = rq->url;
	int get = strcmp(rq->method, "GET") == 0;

	snprintf(a->body, sizeof(a->body), "{}");
	if (strcmp(url, "/health") == 0) {
		a->ctype = "text/plain";
		if (S.health_seen++ < S.health_503) {
			a->status = 503;
			snprintf(a->body, sizeof(a->body), "starting");
		} else {
			snprintf(a->body, sizeof(a->body), "OK");
		}
	} else if (get && strcmp(url, "/_matrix/client/v3/account/whoami") == 0) {
		a->status = S.whoami_status;
		if (a->status == 200)
			snprintf(a->body, sizeof(a->body), "{\"user_id\": \"" BOT "\"}");
		else
			snprintf(a->body, sizeof(a->body), "{\"errcode\": \"M_UNKNOWN_TOKEN\"}");
	} else if (get && strstr(url, "/override_ratelimit")) {
		snprintf(a->body, sizeof(a->body), "{\"messages_per_second\": 0, \"burst_count\": 0}");
	} else if (get && strstr(url, "/_matrix/client/v3/directory/room/")) {
		answer_alias(url, a);
	} else if (get && strncmp(url, "/_synapse/admin/v1/rooms/", 25) == 0 && strstr(url, "/state")) {
		if (S.bad_state_room && strstr(url, S.bad_state_room))
			snprintf(a->body, sizeof(a->body), "{\"chunk\": []}");
		else
			snprintf(a->body, sizeof(a->body), "{\"state\": []}");
	} else if (get && strcmp(url, USERS_PATH) == 0) {
		answer_users(rq, a);
	} else if (strcmp(url, "/_synapse/admin/v1/register") == 0) {
		/* Answered like Synapse, so a registration that should not
		 * happen shows up as a POST rather than dying at the nonce. */
		snprintf(a->body, sizeof(a->body),
			 get ? "{\"nonce\": \"n\"}" : "{\"access_token\": \"new\", \"user_id\": \"" BOT "\"}");
	}
}

static void script_set(int health_503, unsigned whoami_status, enum users_script users, const char *bad_state_room)
{
	fakesyn_lock(F);
	S.health_503 = health_503;
	S.whoami_status = whoami_status;
	S.users = users;
	S.bad_state_room = bad_state_room;
	S.health_seen = S.users_seen = 0;
	fakesyn_unlock(F);
}

static int users_seen(void)
{
	int n;

	fakesyn_lock(F);
	n = S.users_seen;
	fakesyn_unlock(F);
	return n;
}

/* ---- what the fake saw ---- */

static int seen_total(void)
{
	int n = fakesyn_requests(F);

	if (n > MAX_SEEN)
		fail_msg("have %d requests, want at most %d (the log is full)", n, MAX_SEEN);
	return n;
}

/* Requests with this method (NULL: any) whose decoded path contains part. */
static int count_seen(const char *method, const char *part)
{
	int n = 0, total = seen_total();

	for (int i = 0; i < total; i++) {
		struct fakesyn_request s = fakesyn_seen(F, i);

		if ((!method || strcmp(s.method, method) == 0) && strstr(s.url, part))
			n++;
	}
	return n;
}

/* The k-th (0-based) user-list request; fails the test when there is none. */
static struct fakesyn_request users_request(int k)
{
	struct fakesyn_request none = {0};
	int total = seen_total(), found = 0;

	for (int i = 0; i < total; i++) {
		struct fakesyn_request s = fakesyn_seen(F, i);

		/* the search for leftover recovery admins is not the pass's user list */
		if (strcmp(s.method, "GET") == 0 && strcmp(s.url, USERS_PATH) == 0 && !strstr(s.raw, "name=") &&
		    found++ == k)
			return s;
	}
	fail_msg("have %d user-list requests, want at least %d", found, k + 1);
	return none;
}

/* ---- fixture ---- */

static int setup(void **state)
{
	int fd;

	(void)state;
	memset(&T, 0, sizeof(T));
	memset(&S, 0, sizeof(S));
	snprintf(T.dir, sizeof(T.dir), "/tmp/test_loop.XXXXXX");
	if (!mkdtemp(T.dir) || fakesyn_start(MAX_SEEN, &F) < 0)
		return -1;
	fakesyn_set_script(F, script);
	snprintf(T.url, sizeof(T.url), "http://127.0.0.1:%u", fakesyn_port(F));
	snprintf(T.token_file, sizeof(T.token_file), "%s/token", T.dir);
	snprintf(T.db, sizeof(T.db), "%s/db.sqlite", T.dir);
	snprintf(T.secret, sizeof(T.secret), "s");
	snprintf(T.bot, sizeof(T.bot), "matrixrmapi-bot");
	snprintf(T.domain, sizeof(T.domain), "example.test");
	snprintf(T.deployment, sizeof(T.deployment), "dep");
	fd = open(T.token_file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, "tok", 3) != 3) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);

	T.cfg.synapse_url = T.url;
	T.cfg.registration_secret = T.secret;
	T.cfg.bot_username = T.bot;
	T.cfg.token_file = T.token_file;
	T.cfg.server_domain = T.domain;
	T.cfg.deployment = T.deployment;
	T.cfg.database_path = T.db;
	T.cfg.manifest_path = T.cfg.certcn = T.cfg.rm_base_uri = T.empty;
	T.cfg.product_dns = T.cfg.product_uri = T.cfg.listen_address = T.empty;
	T.cfg.tls_cert_file = T.cfg.tls_key_file = T.cfg.tls_client_ca_file = T.empty;
	T.cfg.tls_crl_file = T.cfg.mtls_header_name = T.cfg.mtls_trusted_proxies = T.empty;
	T.cfg.synapse_public_baseurl = T.empty;
	T.cfg.reconcile_interval = 60;
	T.cfg.synapse_wait_timeout = 0;
	T.cfg.log_level = LOG_LVL_ERROR;
	script_set(0, 200, USERS_ONE_PAGE, NULL);
	return 0;
}

static int teardown(void **state)
{
	char p[sizeof(T.dir) + 300];
	struct dirent *e;
	DIR *d;

	(void)state;
	fakesyn_stop(F);
	F = NULL;
	if ((d = opendir(T.dir))) {
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
				snprintf(p, sizeof(p), "%s/%s", T.dir, e->d_name);
				unlink(p);
			}
		closedir(d);
	}
	rmdir(T.dir);
	return 0;
}

/* ---- helpers ---- */

static double now_s(void)
{
	return (double)clock_mono_ns() / 1e9;
}

static int run_once(int dry_run)
{
	return loop_run_once(&T.cfg, dry_run, T.summary, sizeof(T.summary), NULL);
}

static void want_in_summary(const char *part)
{
	if (!strstr(T.summary, part))
		fail_msg("have summary \"%s\", want one containing \"%s\"", T.summary, part);
}

/* A desired user, as a product callback would record it. */
static void desire_user(const char *mxid)
{
	struct store *st = NULL;
	char err[256];

	if (store_open(T.db, &st, err, sizeof(err)) != 0)
		fail_msg("store_open: %s", err);
	assert_int_equal(store_record_callback(st, EVENT_CREATED, "uuid-b", "Bravo", mxid, 1000), 0);
	store_close(st);
}

/* The observed account of mxid as the pass recorded it ("none", "active", ...). */
static void want_observed_account(const char *mxid, const char *want)
{
	struct store *st = NULL;
	char err[256], sql[256];
	json_t *r;
	const char *have;

	if (store_open(T.db, &st, err, sizeof(err)) != 0)
		fail_msg("store_open: %s", err);
	snprintf(sql, sizeof(sql), "SELECT account FROM observed_users WHERE matrix_id = '%s'", mxid);
	r = store_query(st, sql);
	store_close(st);
	have = json_string_value(json_object_get(json_array_get(r, 0), "account"));
	if (!have || strcmp(have, want) != 0) {
		char shown[64];

		snprintf(shown, sizeof(shown), "%s", have ? have : "(no row)");
		json_decref(r);
		fail_msg("%s: have observed account %s, want %s", mxid, shown, want);
	}
	json_decref(r);
}

/* ---- the tests ---- */

/* Synapse keeps answering next_token "0": the pass must stop with an error
 * naming next_token instead of asking for the same page for ever. */
static void test_stuck_next_token_ends_the_pass(void **state)
{
	double start;
	int rc;

	(void)state;
	script_set(0, 200, USERS_STUCK, NULL);
	start = now_s();
	rc = run_once(0);
	assert_int_not_equal(rc, 0);
	want_in_summary("next_token");
	if (users_seen() >= 10)
		fail_msg("have %d user-list requests, want fewer than 10", users_seen());
	if (now_s() - start > 5.0)
		fail_msg("have a pass of %.1f s, want under 5 s", now_s() - start);
}

/* A state reply without a "state" array is not an empty room: the pass
 * fails and says which room and what is missing. */
static void test_state_reply_without_state_fails_naming_room(void **state)
{
	(void)state;
	script_set(0, 200, USERS_ONE_PAGE, "!general:example.test");
	assert_int_not_equal(run_once(0), 0);
	want_in_summary("general");
	want_in_summary("\"state\"");
	assert_int_equal(count_seen("GET", "/rooms/!general:example.test/state"), 1);
}

/* Synapse leaves locked and deactivated accounts out unless asked; they are
 * managed accounts all the same. */
static void test_user_list_asks_for_locked_and_deactivated(void **state)
{
	struct fakesyn_request rq;

	(void)state;
	run_once(0);
	rq = users_request(0);
	if (!strstr(rq.raw, "locked=true") || !strstr(rq.raw, "deactivated=true"))
		fail_msg("have user-list URI %s, want locked=true and deactivated=true", rq.raw);
	if (!strstr(rq.raw, "guests=false"))
		fail_msg("have user-list URI %s, want guests=false", rq.raw);
}

/* An honest second page is read, and what it says is used: the desired user
 * who is only on page two is observed as an existing account. */
static void test_two_pages_are_both_read(void **state)
{
	struct fakesyn_request p1, p2;

	(void)state;
	desire_user("@b:example.test");
	script_set(0, 200, USERS_TWO_PAGES, NULL);
	run_once(0);
	p1 = users_request(0);
	p2 = users_request(1);
	if (!strstr(p1.raw, "from=0&"))
		fail_msg("have first user-list URI %s, want from=0", p1.raw);
	if (!strstr(p2.raw, "from=500&"))
		fail_msg("have second user-list URI %s, want from=500", p2.raw);
	want_observed_account("@b:example.test", "active");
}

/* With SYNAPSE_WAIT_TIMEOUT 0 an unhealthy Synapse gets one /health and
 * nothing else; the script turns healthy after a few tries, so a pass that
 * ignored the deadline or went on regardless would show other requests. */
static void test_unreachable_synapse_gets_only_health(void **state)
{
	int total;

	(void)state;
	script_set(3, 200, USERS_ONE_PAGE, NULL);
	assert_int_not_equal(run_once(0), 0);
	want_in_summary("not reachable");
	total = seen_total();
	for (int i = 0; i < total; i++) {
		struct fakesyn_request s = fakesyn_seen(F, i);

		if (strcmp(s.url, "/health") != 0)
			fail_msg("have request %s %s, want only /health", s.method, s.raw);
	}
	assert_int_equal(count_seen("GET", "/health"), 1);
}

/* A dry run with a rejected token fails; it neither registers the bot nor
 * creates anything. */
/* Passes recorded as finished so far. */
static int passes_ended(void)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *q = NULL;
	int n = -1;

	if (sqlite3_open_v2(T.db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "SELECT count(*) FROM passes WHERE ended_ms IS NOT NULL", -1, &q, NULL) ==
		    SQLITE_OK &&
	    sqlite3_step(q) == SQLITE_ROW)
		n = sqlite3_column_int(q, 0);
	sqlite3_finalize(q);
	sqlite3_close(db);
	return n;
}

static void wait_passes(int n)
{
	double until = now_s() + 20;

	while (passes_ended() < n)
		if (now_s() > until)
			fail_msg("have %d finished passes after 20 s, want %d", passes_ended(), n);
		else
			usleep(20 * 1000);
}

/* Requests from index `from` on whose decoded path contains part. */
static int count_since(int from, const char *part)
{
	int n = 0, total = seen_total();

	for (int i = from; i < total; i++)
		n += strstr(fakesyn_seen(F, i).url, part) != NULL;
	return n;
}

/* In the daemon, once a pass got through, the next one asks Synapse for the
 * user list and the rooms' state and makes none of the bootstrap's requests
 * (/health, whoami, rate limit, aliases); a pass that fails (a room's state
 * reply without "state") asks /health, and the pass after it checks the
 * aliases again. */
static void test_later_passes_skip_health_and_aliases(void **state)
{
	struct loop *lp = NULL;
	char err[256];
	int n1, n2, n3;

	(void)state;
	assert_int_equal(loop_start(&T.cfg, NULL, &lp, err, sizeof(err)), 0);
	wait_passes(1);
	n1 = seen_total();
	assert_int_equal(count_since(0, "/health"), 1);
	assert_int_equal(count_since(0, "/directory/room/"), 5);
	loop_nudge(lp);
	wait_passes(2);
	n2 = seen_total();
	assert_int_equal(count_since(n1, "/health"), 0);
	assert_int_equal(count_since(n1, "/directory/room/"), 0);
	assert_int_equal(count_since(n1, "/whoami"), 0);
	assert_int_equal(count_since(n1, "/override_ratelimit"), 0);
	assert_true(count_since(n1, USERS_PATH) >= 1);
	assert_true(count_since(n1, "/state") >= 5);
	fakesyn_lock(F);
	S.bad_state_room = "!general:example.test";
	fakesyn_unlock(F);
	loop_nudge(lp);
	wait_passes(3);
	n3 = seen_total();
	assert_int_equal(count_since(n2, "/health"), 1);
	fakesyn_lock(F);
	S.bad_state_room = NULL;
	fakesyn_unlock(F);
	loop_nudge(lp);
	wait_passes(4);
	assert_int_equal(count_since(n3, "/directory/room/"), 5);
	loop_stop(lp);
}

static void test_dry_run_with_bad_token_writes_nothing(void **state)
{
	(void)state;
	script_set(0, 401, USERS_ONE_PAGE, NULL);
	assert_int_not_equal(run_once(1), 0);
	assert_int_equal(count_seen("POST", "/"), 0);
	assert_int_equal(count_seen("PUT", "/"), 0);
	assert_int_equal(count_seen(NULL, "/register"), 0);
	assert_int_equal(count_seen("GET", "/account/whoami"), 1);
	want_in_summary("token");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_stuck_next_token_ends_the_pass, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_reply_without_state_fails_naming_room, setup, teardown),
		cmocka_unit_test_setup_teardown(test_user_list_asks_for_locked_and_deactivated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_pages_are_both_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreachable_synapse_gets_only_health, setup, teardown),
		cmocka_unit_test_setup_teardown(test_later_passes_skip_health_and_aliases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dry_run_with_bad_token_writes_nothing, setup, teardown),
	};

	log_init(LOG_LVL_ERROR, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
