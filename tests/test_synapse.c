/* test_synapse: the Synapse client against a fake Synapse run in-process on
 * loopback (fakesyn.c). The fake answers through a per-test script, so
 * each test can produce a fault a real Synapse will not produce on demand
 * (429, 5xx, stalls, broken JSON, wrong MACs) and then inspect exactly what
 * the client sent (method, path, body, Authorization). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "clock.h"
#include "fakesyn.h"
#include "log.h"
#include "synapse.h"

#define MAX_SEEN 16

static struct fakesyn *F; /* the fake, started by setup */
static struct synapse *S; /* a client for F, made by setup */

static double now_ms(void)
{
	return (double)clock_mono_ns() / 1e6;
}

static char *url_for(unsigned port, char *buf, size_t len)
{
	snprintf(buf, len, "http://127.0.0.1:%u/", port); /* trailing '/' is accepted */
	return buf;
}

static int setup(void **state)
{
	char url[64];

	(void)state;
	if (fakesyn_start(MAX_SEEN, &F) < 0)
		return -1;
	return synapse_new(url_for(fakesyn_port(F), url, sizeof(url)), 2000, &S);
}

static int teardown(void **state)
{
	(void)state;
	fakesyn_stop(F);
	F = NULL;
	synapse_free(S);
	S = NULL;
	return 0;
}

/* A loopback port nobody listens on: bound, read back, closed. */
static unsigned closed_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

/* ---- 429 handling ---- */

static void script_429_300ms_once(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	if (rq->n == 1) {
		a->status = 429;
		snprintf(a->body, sizeof(a->body),
			 "{\"errcode\":\"M_LIMIT_EXCEEDED\",\"error\":\"Too Many Requests\","
			 "\"retry_after_ms\":300}");
	} else {
		snprintf(a->body, sizeof(a->body), "{\"room_id\":\"!r:example.test\"}");
	}
}

static void test_429_retry_after_ms_then_200(void **state)
{
	struct synapse_resp resp;
	json_t *body = json_pack("{s:s}", "user_id", "@alice:example.test");
	double t0;

	(void)state;
	fakesyn_set_script(F, script_429_300ms_once);
	t0 = now_ms();
	assert_int_equal(synapse_request(S, "POST", "/_synapse/admin/v1/join/x", body, &resp), 0);
	assert_true(now_ms() - t0 >= 300.0);
	assert_int_equal(fakesyn_requests(F), 2);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.errcode, "");
	assert_string_equal(json_string_value(json_object_get(resp.body, "room_id")), "!r:example.test");
	/* The retry is the same request again, body included. */
	assert_string_equal(fakesyn_seen(F, 1).method, "POST");
	assert_string_equal(fakesyn_seen(F, 1).body, "{\"user_id\":\"@alice:example.test\"}");
	assert_string_equal(fakesyn_seen(F, 0).body, fakesyn_seen(F, 1).body);
	synapse_resp_free(&resp);
	json_decref(body);
}

static void script_429_header_once(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	if (rq->n == 1) {
		a->status = 429;
		a->retry_after = 2; /* differs from the 1 s default */
		snprintf(a->body, sizeof(a->body), "{\"errcode\":\"M_LIMIT_EXCEEDED\"}");
	} else {
		snprintf(a->body, sizeof(a->body), "{}");
	}
}

static void test_429_retry_after_header(void **state)
{
	struct synapse_resp resp;
	double t0, dt;

	(void)state;
	fakesyn_set_script(F, script_429_header_once);
	t0 = now_ms();
	assert_int_equal(synapse_request(S, "GET", "/x", NULL, &resp), 0);
	dt = now_ms() - t0;
	assert_true(dt >= 2000.0);
	assert_true(dt < 2900.0); /* one sleep, not two */
	assert_int_equal(fakesyn_requests(F), 2);
	assert_int_equal(resp.status, 200);
	synapse_resp_free(&resp);
}

static void script_429_bare_once(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	if (rq->n == 1) {
		a->status = 429;
		a->ctype = "text/plain";
		snprintf(a->body, sizeof(a->body), "slow down");
	} else {
		snprintf(a->body, sizeof(a->body), "{}");
	}
}

static void test_429_default_one_second(void **state)
{
	struct synapse_resp resp;
	double t0;

	(void)state;
	fakesyn_set_script(F, script_429_bare_once);
	t0 = now_ms();
	assert_int_equal(synapse_request(S, "GET", "/x", NULL, &resp), 0);
	assert_true(now_ms() - t0 >= 1000.0);
	assert_int_equal(fakesyn_requests(F), 2);
	assert_int_equal(resp.status, 200);
	synapse_resp_free(&resp);
}

/* Every other request is a 429 asking for 101 ms; the rest answer 200. */
static void script_429_101ms_every_other(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	if (rq->n % 2 == 1) {
		a->status = 429;
		snprintf(a->body, sizeof(a->body), "{\"errcode\":\"M_LIMIT_EXCEEDED\",\"retry_after_ms\":101}");
	} else {
		snprintf(a->body, sizeof(a->body), "{}");
	}
}

/* The wait after a 429 is never shorter than asked, not even by the part of
 * a millisecond a whole-ms clock would drop: 101 ms asked, so a call from
 * before the 429 to after the retry's answer takes 101 ms or more, every
 * time. 101 ms is two sleeps (the batch sleeps at most 100 ms at a time); a
 * ready time kept in whole ms let the second end early whenever the first
 * overslept across a millisecond's edge. */
static void test_429_wait_never_short(void **state)
{
	(void)state;
	fakesyn_set_script(F, script_429_101ms_every_other);
	for (int i = 0; i < 30; i++) {
		struct synapse_resp resp;
		double t0 = now_ms(), dt;

		assert_int_equal(synapse_request(S, "GET", "/x", NULL, &resp), 0);
		dt = now_ms() - t0;
		assert_int_equal(resp.status, 200);
		synapse_resp_free(&resp);
		if (dt < 101.0)
			fail_msg("call %d took %.3f ms with a 101 ms wait asked", i, dt);
	}
	assert_int_equal(fakesyn_requests(F), 60);
}

static void script_429_forever(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	(void)rq;
	a->status = 429;
	snprintf(a->body, sizeof(a->body),
		 "{\"errcode\":\"M_LIMIT_EXCEEDED\",\"error\":\"Too Many Requests\","
		 "\"retry_after_ms\":10}");
}

static void test_429_forever_gives_up(void **state)
{
	struct synapse_resp resp;

	(void)state;
	fakesyn_set_script(F, script_429_forever);
	assert_int_equal(synapse_request(S, "GET", "/x", NULL, &resp), 0);
	assert_int_equal(fakesyn_requests(F), 1 + SYNAPSE_MAX_429);
	assert_int_equal(resp.status, 429);
	assert_string_equal(resp.errcode, "M_LIMIT_EXCEEDED");
	assert_non_null(resp.body);
	synapse_resp_free(&resp);
}

/* ---- other faults ---- */

static void script_500(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	(void)rq;
	a->status = 500;
	snprintf(a->body, sizeof(a->body), "{\"errcode\":\"M_UNKNOWN\",\"error\":\"boom\"}");
}

static void test_500_returned_not_retried(void **state)
{
	struct synapse_resp resp;

	(void)state;
	fakesyn_set_script(F, script_500);
	assert_int_equal(synapse_request(S, "GET", "/x", NULL, &resp), 0);
	assert_int_equal(resp.status, 500);
	assert_string_equal(resp.errcode, "M_UNKNOWN");
	assert_string_equal(resp.error, "boom");
	assert_int_equal(fakesyn_requests(F), 1);
	synapse_resp_free(&resp);
}

static void script_stall(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	(void)rq;
	a->delay_ms = 3000;
	snprintf(a->body, sizeof(a->body), "{}");
}

static void test_timeout_is_transport_error(void **state)
{
	struct synapse *s = NULL;
	struct synapse_resp resp;
	char url[64];
	double t0, dt;
	int rc;

	(void)state;
	fakesyn_set_script(F, script_stall);
	assert_int_equal(synapse_new(url_for(fakesyn_port(F), url, sizeof(url)), 300, &s), 0);
	t0 = now_ms();
	rc = synapse_request(s, "GET", "/slow", NULL, &resp);
	dt = now_ms() - t0;
	synapse_free(s);
	assert_int_equal(rc, SYNAPSE_ETRANSPORT);
	assert_int_equal(resp.status, 0);
	assert_null(resp.body);
	assert_true(dt >= 250.0);
	assert_true(dt < 1500.0); /* the client gave up, not the fake */
	synapse_resp_free(&resp);
}

static void script_bad_json(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	(void)rq;
	snprintf(a->body, sizeof(a->body), "{\"errcode\": \"M_X\", oops");
}

static void test_malformed_json_keeps_status(void **state)
{
	struct synapse_resp resp;

	(void)state;
	fakesyn_set_script(F, script_bad_json);
	assert_int_equal(synapse_request(S, "GET", "/x", NULL, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_null(resp.body);
	assert_string_equal(resp.errcode, "");
	synapse_resp_free(&resp);
}

static void test_connection_refused(void **state)
{
	struct synapse *s = NULL;
	struct synapse_resp resp;
	char url[64], *tok = (char *)"untouched", err[64] = "x";

	(void)state;
	assert_int_equal(synapse_new(url_for(closed_port(), url, sizeof(url)), 1000, &s), 0);
	assert_int_equal(synapse_request(s, "GET", "/x", NULL, &resp), SYNAPSE_ETRANSPORT);
	assert_int_equal(resp.status, 0);
	assert_null(resp.body);
	synapse_resp_free(&resp);
	assert_int_equal(synapse_health(s), SYNAPSE_ETRANSPORT);
	assert_int_equal(synapse_register(s, "k", "u", "p", 0, &tok, err, sizeof(err)), SYNAPSE_ETRANSPORT);
	assert_null(tok);
	assert_string_equal(err, "");
	synapse_free(s);
}

/* ---- what the client sends ---- */

static void test_bearer_token_only_when_set(void **state)
{
	struct synapse_resp resp;
	struct fakesyn_request rq;

	(void)state;
	assert_int_equal(synapse_request(S, "GET", "/a", NULL, &resp), 0);
	synapse_resp_free(&resp);
	assert_false(fakesyn_last(F).has_auth);

	synapse_set_token(S, "syt_first");
	assert_int_equal(synapse_request(S, "GET", "/b", NULL, &resp), 0);
	synapse_resp_free(&resp);
	rq = fakesyn_last(F);
	assert_true(rq.has_auth);
	assert_string_equal(rq.auth, "Bearer syt_first");

	synapse_set_token(S, "syt_second");
	assert_int_equal(synapse_request(S, "GET", "/c", NULL, &resp), 0);
	synapse_resp_free(&resp);
	assert_string_equal(fakesyn_last(F).auth, "Bearer syt_second");

	synapse_set_token(S, NULL);
	assert_int_equal(synapse_request(S, "GET", "/d", NULL, &resp), 0);
	synapse_resp_free(&resp);
	assert_false(fakesyn_last(F).has_auth);
}

static void test_methods_and_bodies(void **state)
{
	struct synapse_resp resp;
	json_t *body = json_pack("{s:b}", "deactivated", 0);
	struct fakesyn_request rq;

	(void)state;
	assert_int_equal(synapse_request(S, "PUT", "/_synapse/admin/v2/users/%40u%3Ax", body, &resp), 0);
	synapse_resp_free(&resp);
	rq = fakesyn_last(F);
	assert_string_equal(rq.method, "PUT");
	assert_string_equal(rq.url, "/_synapse/admin/v2/users/@u:x"); /* MHD decodes */
	assert_string_equal(rq.body, "{\"deactivated\":false}");
	assert_string_equal(rq.ctype, "application/json");

	assert_int_equal(synapse_request(S, "POST", "/p", NULL, &resp), 0);
	synapse_resp_free(&resp);
	assert_string_equal(fakesyn_last(F).method, "POST");
	assert_string_equal(fakesyn_last(F).body, "");

	assert_int_equal(synapse_request(S, "DELETE", "/d", NULL, &resp), 0);
	synapse_resp_free(&resp);
	assert_string_equal(fakesyn_last(F).method, "DELETE");

	assert_int_equal(synapse_request(S, "GET", "/g", NULL, &resp), 0);
	assert_string_equal(fakesyn_last(F).method, "GET");
	assert_int_equal(resp.status, 200);
	assert_true(json_is_object(resp.body));
	synapse_resp_free(&resp);

	assert_int_equal(synapse_request(S, "PATCH", "/g", NULL, &resp), -EINVAL);
	assert_int_equal(synapse_request(S, "GET", "no-slash", NULL, &resp), -EINVAL);
	assert_int_equal(fakesyn_requests(F), 4);
	json_decref(body);
}

static void test_connection_reused(void **state)
{
	struct synapse_resp resp;

	(void)state;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(synapse_request(S, "GET", "/x", NULL, &resp), 0);
		synapse_resp_free(&resp);
	}
	assert_int_equal(fakesyn_requests(F), 3);
	assert_int_equal(fakesyn_connections(F), 1);
}

/* ---- batches ---- */

/* n calls GET /b/<i>, paths kept in paths[i]. */
static void batch_calls(struct synapse_call *calls, char (*paths)[32], size_t n)
{
	for (size_t i = 0; i < n; i++) {
		snprintf(paths[i], sizeof(paths[i]), "/b/%zu", i);
		calls[i] = (struct synapse_call){.method = "GET", .path = paths[i]};
	}
}

static void batch_release(struct synapse_call *calls, size_t n)
{
	for (size_t i = 0; i < n; i++)
		synapse_resp_free(&calls[i].resp);
}

static void script_stall_300(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	a->delay_ms = 300;
	snprintf(a->body, sizeof(a->body), "{\"path\":\"%s\"}", rq->url);
}

static void test_batch_bounded_concurrency_and_answers(void **state)
{
	struct synapse_call calls[10];
	char paths[10][32];

	(void)state;
	fakesyn_set_script(F, script_stall_300);
	batch_calls(calls, paths, 10);
	assert_int_equal(synapse_request_batch(S, calls, 10, 3, NULL, NULL), 0);
	for (size_t i = 0; i < 10; i++) {
		assert_int_equal(calls[i].rc, 0);
		assert_int_equal(calls[i].resp.status, 200);
		/* each call got its own answer */
		assert_string_equal(json_string_value(json_object_get(calls[i].resp.body, "path")), paths[i]);
	}
	batch_release(calls, 10);
	assert_int_equal(fakesyn_requests(F), 10);
	/* the bound, and truly concurrent: all of it, never more */
	assert_int_equal(fakesyn_max_in_flight(F), 3);
	/* connections kept alive: at most one per slot */
	assert_true(fakesyn_connections(F) <= 3);

	/* a second batch and a single request reuse them */
	batch_calls(calls, paths, 3);
	assert_int_equal(synapse_request_batch(S, calls, 3, 3, NULL, NULL), 0);
	batch_release(calls, 3);
	{
		struct synapse_resp resp;

		assert_int_equal(synapse_request(S, "GET", "/single", NULL, &resp), 0);
		synapse_resp_free(&resp);
	}
	assert_true(fakesyn_connections(F) <= 3);
}

/* /b/0 is answered 429 (wait 400 ms) the first time; the rest at once. */
static void script_first_429(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	static int limited;

	if (rq->n == 1)
		limited = 0;
	if (strcmp(rq->url, "/b/0") == 0 && !limited) {
		limited = 1;
		a->status = 429;
		snprintf(a->body, sizeof(a->body),
			 "{\"errcode\":\"M_LIMIT_EXCEEDED\",\"error\":\"Too Many Requests\",\"retry_after_ms\":400}");
		return;
	}
	snprintf(a->body, sizeof(a->body), "{}");
}

struct done_log {
	size_t order[16];
	size_t n;
	struct synapse_call *base;
	int stop_after;    /* stop the batch after this many done; 0: never */
	atomic_int *abort; /* set this after the first done; NULL: no */
};

static int log_done(struct synapse_call *c, void *arg)
{
	struct done_log *d = arg;

	d->order[d->n++] = (size_t)(c - d->base);
	if (d->abort)
		atomic_store(d->abort, 1);
	return d->stop_after && (int)d->n >= d->stop_after;
}

static void test_batch_429_waits_without_blocking_others(void **state)
{
	struct synapse_call calls[4];
	char paths[4][32];
	struct done_log d = {.base = calls};

	(void)state;
	fakesyn_set_script(F, script_first_429);
	batch_calls(calls, paths, 4);
	/* one slot only: the others can finish first only if the 429'd call
	 * gives its slot up while it waits */
	assert_int_equal(synapse_request_batch(S, calls, 4, 1, log_done, &d), 0);
	assert_int_equal(d.n, 4);
	assert_int_equal(d.order[0], 1);
	assert_int_equal(d.order[1], 2);
	assert_int_equal(d.order[2], 3);
	assert_int_equal(d.order[3], 0);
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(calls[i].rc, 0);
		assert_int_equal(calls[i].resp.status, 200);
	}
	batch_release(calls, 4);
	assert_int_equal(fakesyn_requests(F), 5);
}

static void test_batch_stopped_by_done_cancels_the_rest(void **state)
{
	struct synapse_call calls[5];
	char paths[5][32];
	struct done_log d = {.base = calls, .stop_after = 1};

	(void)state;
	batch_calls(calls, paths, 5);
	assert_int_equal(synapse_request_batch(S, calls, 5, 1, log_done, &d), 0);
	assert_int_equal(d.n, 1);
	assert_int_equal(calls[0].rc, 0);
	for (size_t i = 1; i < 5; i++) {
		assert_int_equal(calls[i].rc, SYNAPSE_ECANCELLED);
		assert_int_equal(calls[i].resp.status, 0);
	}
	batch_release(calls, 5);
	assert_int_equal(fakesyn_requests(F), 1); /* nothing more was sent */
	assert_non_null(strstr(synapse_strerror(SYNAPSE_ECANCELLED), "stopped"));
}

/* /b/0 at once, everything else stalls 3 s. */
static void script_rest_stall(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	if (strcmp(rq->url, "/b/0") != 0)
		a->delay_ms = 3000;
	snprintf(a->body, sizeof(a->body), "{}");
}

static void test_batch_abort_flag_ends_it_at_once(void **state)
{
	struct synapse_call calls[6];
	char paths[6][32];
	atomic_int flag = 0;
	struct done_log d = {.base = calls, .abort = &flag};
	double t0, dt;

	(void)state;
	fakesyn_set_script(F, script_rest_stall);
	synapse_set_abort(S, &flag);
	batch_calls(calls, paths, 6);
	t0 = now_ms();
	assert_int_equal(synapse_request_batch(S, calls, 6, 4, log_done, &d), 0);
	dt = now_ms() - t0;
	synapse_set_abort(S, NULL);
	assert_int_equal(calls[0].rc, 0);
	for (size_t i = 1; i < 6; i++)
		assert_int_equal(calls[i].rc, SYNAPSE_ETRANSPORT);
	batch_release(calls, 6);
	assert_true(dt < 1500.0);              /* did not wait for the stalled answers */
	assert_true(fakesyn_requests(F) <= 4); /* nothing started after the abort */
}

static void test_batch_per_call_timeout_and_bad_calls(void **state)
{
	struct synapse_call calls[4];
	char paths[4][32];

	(void)state;
	fakesyn_set_script(F, script_rest_stall);
	batch_calls(calls, paths, 4);
	calls[1].timeout_ms = 200; /* stalls 3 s: times out */
	calls[2].method = "PATCH"; /* not a method we send */
	calls[3].path = "no-slash";
	assert_int_equal(synapse_request_batch(S, calls, 4, 4, NULL, NULL), 0);
	assert_int_equal(calls[0].rc, 0);
	assert_int_equal(calls[1].rc, SYNAPSE_ETRANSPORT);
	assert_int_equal(calls[1].resp.status, 0);
	assert_int_equal(calls[2].rc, -EINVAL);
	assert_int_equal(calls[3].rc, -EINVAL);
	batch_release(calls, 4);
	assert_int_equal(fakesyn_requests(F), 2);
	assert_int_equal(synapse_request_batch(S, calls, 1, 0, NULL, NULL), -EINVAL);
	assert_int_equal(synapse_request_batch(NULL, calls, 1, 1, NULL, NULL), -EINVAL);
	assert_int_equal(synapse_request_batch(S, NULL, 0, 1, NULL, NULL), 0);
}

static void test_escape(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{"!abc:example.test", "%21abc%3Aexample.test"},
		{"#a-b:x", "%23a-b%3Ax"},
		{"@u:x", "%40u%3Ax"},
		{"AZaz09-._~", "AZaz09-._~"},
		{"a b/c?d&e=f+g%", "a%20b%2Fc%3Fd%26e%3Df%2Bg%25"},
		{"\xc3\xa9", "%C3%A9"},
		{"", ""},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *have = synapse_escape(cases[i].in);

		assert_non_null(have);
		if (strcmp(have, cases[i].want) != 0)
			fail_msg("synapse_escape(\"%s\"): have %s, want %s", cases[i].in, have, cases[i].want);
		free(have);
	}
	assert_null(synapse_escape(NULL));
}

/* ---- shared-secret registration ---- */

#define SECRET "s3cret-shared"
#define NONCE "nonce-4711"

/* HMAC-SHA1(SECRET, NONCE\0user\0password\0kind), computed independently with
 * Python's hmac module, so a wrong message layout in the client cannot hide
 * behind the same mistake in the fake. */
static const struct {
	const char *user, *password;
	int admin;
	const char *mac;
} vectors[] = {
	{"alice", "pw-alice", 1, "57d2efd81f61a100fed09eeb90e5aee34ee4d7cb"},
	{"bob", "pw-bob", 0, "f52c7b53ccdc62419502b2ac92ec822f53eecfaa"},
	{"taken", "pw-taken", 1, "a80798ab21705842dac13327a789c6adab3bb646"},
};

static void script_register(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	json_t *b = NULL;
	const char *user, *mac, *nonce, *pw;
	int admin, ok = 0;

	if (strcmp(rq->url, "/_synapse/admin/v1/register") != 0) {
		a->status = 404;
		snprintf(a->body, sizeof(a->body), "{\"errcode\":\"M_UNRECOGNIZED\"}");
		return;
	}
	if (strcmp(rq->method, "GET") == 0) {
		snprintf(a->body, sizeof(a->body), "{\"nonce\":\"" NONCE "\"}");
		return;
	}
	a->status = 400;
	snprintf(a->body, sizeof(a->body), "{\"errcode\":\"M_BAD_JSON\"}");
	if (strstr(rq->body, SECRET) || !(b = json_loads(rq->body, 0, NULL)) ||
	    json_unpack(b, "{s:s, s:s, s:s, s:b, s:s}", "nonce", &nonce, "username", &user, "password", &pw, "admin",
			&admin, "mac", &mac) != 0)
		goto out;
	if (strcmp(nonce, NONCE) != 0) {
		snprintf(a->body, sizeof(a->body), "{\"errcode\":\"M_UNKNOWN\",\"error\":\"nonce\"}");
		goto out;
	}
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++)
		if (strcmp(user, vectors[i].user) == 0 && strcmp(pw, vectors[i].password) == 0 &&
		    admin == vectors[i].admin && strcmp(mac, vectors[i].mac) == 0)
			ok = 1;
	if (!ok) {
		a->status = 403;
		snprintf(a->body, sizeof(a->body), "{\"errcode\":\"M_FORBIDDEN\",\"error\":\"HMAC incorrect\"}");
	} else if (strcmp(user, "taken") == 0) {
		snprintf(a->body, sizeof(a->body),
			 "{\"errcode\":\"M_USER_IN_USE\",\"error\":\"User ID already taken.\"}");
	} else {
		a->status = 200;
		snprintf(a->body, sizeof(a->body),
			 "{\"user_id\":\"@%s:example.test\",\"home_server\":\"example.test\","
			 "\"access_token\":\"syt_%s_token\",\"device_id\":\"DEV\"}",
			 user, user);
	}
out:
	json_decref(b);
}

static void test_register_admin_mac(void **state)
{
	char *tok = NULL, err[64] = "x";

	(void)state;
	fakesyn_set_script(F, script_register);
	assert_int_equal(synapse_register(S, SECRET, "alice", "pw-alice", 1, &tok, err, sizeof(err)), 0);
	assert_string_equal(tok, "syt_alice_token");
	assert_string_equal(err, "");
	assert_int_equal(fakesyn_requests(F), 2);
	assert_string_equal(fakesyn_seen(F, 0).method, "GET");
	assert_string_equal(fakesyn_seen(F, 1).method, "POST");
	free(tok);
}

static void test_register_notadmin_mac(void **state)
{
	char *tok = NULL, err[64];

	(void)state;
	fakesyn_set_script(F, script_register);
	assert_int_equal(synapse_register(S, SECRET, "bob", "pw-bob", 0, &tok, err, sizeof(err)), 0);
	assert_string_equal(tok, "syt_bob_token");
	free(tok);
}

static void test_register_wrong_secret(void **state)
{
	char *tok = NULL, err[64] = "";

	(void)state;
	fakesyn_set_script(F, script_register);
	assert_int_equal(synapse_register(S, "not-the-secret", "alice", "pw-alice", 1, &tok, err, sizeof(err)),
			 SYNAPSE_EPROTOCOL);
	assert_null(tok);
	assert_string_equal(err, "M_FORBIDDEN");
	/* The admin flag is part of the MAC: right secret, wrong flag fails too. */
	assert_int_equal(synapse_register(S, SECRET, "alice", "pw-alice", 0, &tok, err, sizeof(err)),
			 SYNAPSE_EPROTOCOL);
	assert_string_equal(err, "M_FORBIDDEN");
}

static void test_register_user_in_use(void **state)
{
	char *tok = NULL, err[64] = "";

	(void)state;
	fakesyn_set_script(F, script_register);
	assert_int_equal(synapse_register(S, SECRET, "taken", "pw-taken", 1, &tok, err, sizeof(err)),
			 SYNAPSE_EPROTOCOL);
	assert_null(tok);
	assert_string_equal(err, "M_USER_IN_USE");
}

/* Runs a registration and an authenticated request with debug logging sent
 * to a temporary file, then checks the log names the requests but holds no
 * secret. */
static void test_secrets_not_logged(void **state)
{
	struct synapse_resp resp;
	char *tok = NULL, err[64], buf[16384];
	FILE *tmp = tmpfile();
	int saved, rc1, rc2;
	size_t n;

	(void)state;
	fakesyn_set_script(F, script_register);
	assert_non_null(tmp);
	fflush(stderr);
	saved = dup(2);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(tmp), 2) >= 0);
	log_init(LOG_LVL_DEBUG, 0);

	synapse_set_token(S, "syt_bearer_secret");
	rc1 = synapse_register(S, SECRET, "alice", "pw-alice", 1, &tok, err, sizeof(err));
	rc2 = synapse_request(S, "GET", "/_synapse/admin/v1/register", NULL, &resp);
	synapse_resp_free(&resp);

	fflush(stderr);
	log_init(LOG_LVL_WARN, 0);
	assert_true(dup2(saved, 2) >= 0);
	close(saved);
	rewind(tmp);
	n = fread(buf, 1, sizeof(buf) - 1, tmp);
	buf[n] = '\0';
	assert_int_equal(fclose(tmp), 0);
	assert_int_equal(rc1, 0);
	assert_int_equal(rc2, 0);

	assert_non_null(strstr(buf, "POST /_synapse/admin/v1/register -> 200"));
	assert_non_null(strstr(buf, "GET /_synapse/admin/v1/register -> 200"));
	assert_null(strstr(buf, "syt_bearer_secret"));
	assert_null(strstr(buf, "syt_alice_token"));
	assert_null(strstr(buf, SECRET));
	assert_null(strstr(buf, "pw-alice"));
	assert_null(strstr(buf, "57d2efd81f61a100fed09eeb90e5aee34ee4d7cb"));
	free(tok);
}

/* ---- health ---- */

static int health_status = 200;

static void script_health(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	a->ctype = "text/plain";
	if (strcmp(rq->url, "/health") != 0) {
		a->status = 404;
		return;
	}
	a->status = (unsigned)health_status;
	snprintf(a->body, sizeof(a->body), health_status == 200 ? "OK" : "Service Unavailable");
}

static void test_health(void **state)
{
	(void)state;
	fakesyn_set_script(F, script_health);
	fakesyn_lock(F);
	health_status = 200;
	fakesyn_unlock(F);
	assert_int_equal(synapse_health(S), 0);
	fakesyn_lock(F);
	health_status = 503;
	fakesyn_unlock(F);
	assert_int_equal(synapse_health(S), SYNAPSE_EPROTOCOL);
	assert_int_equal(fakesyn_requests(F), 2);
}

static void test_strerror(void **state)
{
	(void)state;
	assert_non_null(strstr(synapse_strerror(SYNAPSE_ETRANSPORT), "no answer"));
	assert_non_null(strstr(synapse_strerror(SYNAPSE_EPROTOCOL), "unexpected answer"));
	assert_string_equal(synapse_strerror(-ENOMEM), strerror(ENOMEM));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_429_retry_after_ms_then_200, setup, teardown),
		cmocka_unit_test_setup_teardown(test_429_retry_after_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_429_wait_never_short, setup, teardown),
		cmocka_unit_test_setup_teardown(test_429_default_one_second, setup, teardown),
		cmocka_unit_test_setup_teardown(test_429_forever_gives_up, setup, teardown),
		cmocka_unit_test_setup_teardown(test_500_returned_not_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_is_transport_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_json_keeps_status, setup, teardown),
		cmocka_unit_test(test_connection_refused),
		cmocka_unit_test_setup_teardown(test_bearer_token_only_when_set, setup, teardown),
		cmocka_unit_test_setup_teardown(test_methods_and_bodies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_reused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_bounded_concurrency_and_answers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_429_waits_without_blocking_others, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_stopped_by_done_cancels_the_rest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_abort_flag_ends_it_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_per_call_timeout_and_bad_calls, setup, teardown),
		cmocka_unit_test(test_escape),
		cmocka_unit_test_setup_teardown(test_register_admin_mac, setup, teardown),
		cmocka_unit_test_setup_teardown(test_register_notadmin_mac, setup, teardown),
		cmocka_unit_test_setup_teardown(test_register_wrong_secret, setup, teardown),
		cmocka_unit_test_setup_teardown(test_register_user_in_use, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secrets_not_logged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_health, setup, teardown),
		cmocka_unit_test(test_strerror),
	};

	log_init(LOG_LVL_WARN, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
