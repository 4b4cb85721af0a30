/* test_metrics: the Prometheus exposition (lib/promtext.c) and the registry
 * (lib/metrics.c).
 *  - promtext: HELP/TYPE lines, samples with and without labels, label
 *    values and HELP texts escaped (a value cannot end its line or label),
 *    histograms cumulative ending with le="+Inf" equal to _count, _sum as an
 *    exact decimal in the exposed unit.
 *  - metrics: each hook moves exactly its series; values from outside the
 *    fixed tables are counted as "other"; Synapse paths fall in their
 *    endpoint class, never with an id in the label; gauges appear once a
 *    pass set them; concurrent observations from several threads are all
 *    counted (atomics, no lock). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "metrics.h"
#include "promtext.h"
#include "store.h"

static char *finish(struct promtext *p)
{
	char *out = NULL;
	size_t len = 0;

	assert_int_equal(promtext_finish(p, &out, &len), 0);
	assert_non_null(out);
	assert_int_equal(strlen(out), len);
	return out;
}

static void want_line(const char *page, const char *line)
{
	size_t n = strlen(line);

	if (page == NULL)
		fail_msg("no page");
	for (const char *p = page; (p = strstr(p, line)) != NULL; p++)
		if ((p == page || p[-1] == '\n') && p[n] == '\n')
			return;
	fail_msg("have no line\n  %s\nin\n%s", line, page);
}

static void want_no(const char *page, const char *text)
{
	if (page == NULL)
		fail_msg("no page");
	else if (strstr(page, text) != NULL)
		fail_msg("have %s, want none in\n%s", text, page);
}

static void test_family_and_samples(void **state)
{
	struct promtext p;
	struct promtext_label l[2] = {{"endpoint", "created"}, {"outcome", "stored"}};
	char *out;

	(void)state;
	promtext_init(&p);
	promtext_family(&p, "x_total", "counter", "Things.");
	promtext_sample_u64(&p, "x_total", l, 2, 18446744073709551615U);
	promtext_sample(&p, "y", NULL, 0, "1.5");
	out = finish(&p);
	assert_string_equal(out, "# HELP x_total Things.\n"
				 "# TYPE x_total counter\n"
				 "x_total{endpoint=\"created\",outcome=\"stored\"} 18446744073709551615\n"
				 "y 1.5\n");
	free(out);
}

static void test_escaping(void **state)
{
	struct promtext p;
	struct promtext_label l = {"v", "a\"b\\c\nd} 1\n"};
	char *out;

	(void)state;
	promtext_init(&p);
	promtext_family(&p, "e", "gauge", "back\\slash \"quoted\"\nsecond line");
	promtext_sample(&p, "e", &l, 1, "2");
	out = finish(&p);
	/* HELP escapes backslash and newline only; label values also the quote */
	assert_string_equal(out, "# HELP e back\\\\slash \"quoted\"\\nsecond line\n"
				 "# TYPE e gauge\n"
				 "e{v=\"a\\\"b\\\\c\\nd} 1\\n\"} 2\n");
	free(out);
}

static void test_decimal(void **state)
{
	static const struct {
		uint64_t raw, scale;
		const char *want;
	} cases[] = {
		{2500000, 1000000000, "0.0025"},
		{1000000000, 1000000000, "1"},
		{0, 1000000000, "0"},
		{1, 1000000000, "0.000000001"},
		{1234, 1000, "1.234"},
		{7, 1, "7"},
		{120000000000, 1000000000, "120"},
		{1764633600123, 1000, "1764633600.123"},
		{10, 10, "1"},
	};
	char have[40];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		promtext_decimal(cases[i].raw, cases[i].scale, have, sizeof(have));
		if (strcmp(have, cases[i].want) != 0)
			fail_msg("%llu / %llu: have %s, want %s", (unsigned long long)cases[i].raw,
				 (unsigned long long)cases[i].scale, have, cases[i].want);
	}
}

static void test_histogram_cumulative(void **state)
{
	static const uint64_t bounds[] = {1000000, 5000000, 10000000}; /* 1, 5, 10 ms */
	static const uint64_t counts[] = {2, 0, 3, 1};                 /* the last: above 10 ms */
	struct promtext_histogram h = {bounds, 3, counts, 2500000000U, 1000000000};
	struct promtext_label l = {"endpoint", "admin_join"};
	struct promtext p;
	char *out;

	(void)state;
	promtext_init(&p);
	promtext_histogram(&p, "d_seconds", &l, 1, &h);
	out = finish(&p);
	assert_string_equal(out, "d_seconds_bucket{endpoint=\"admin_join\",le=\"0.001\"} 2\n"
				 "d_seconds_bucket{endpoint=\"admin_join\",le=\"0.005\"} 2\n"
				 "d_seconds_bucket{endpoint=\"admin_join\",le=\"0.01\"} 5\n"
				 "d_seconds_bucket{endpoint=\"admin_join\",le=\"+Inf\"} 6\n"
				 "d_seconds_sum{endpoint=\"admin_join\"} 2.5\n"
				 "d_seconds_count{endpoint=\"admin_join\"} 6\n");
	free(out);
	/* without labels, le is the only one */
	promtext_init(&p);
	promtext_histogram(&p, "b", NULL, 0, &(struct promtext_histogram){bounds, 1, (uint64_t[]){0, 4}, 9, 1});
	out = finish(&p);
	assert_string_equal(out, "b_bucket{le=\"1000000\"} 0\nb_bucket{le=\"+Inf\"} 4\nb_sum 9\nb_count 4\n");
	free(out);
}

static char *render(void)
{
	char *out = NULL;
	size_t len = 0;

	assert_int_equal(metrics_render(&out, &len), 0);
	assert_non_null(out);
	assert_int_equal(strlen(out), len);
	return out;
}

static void test_callback_counted_with_latency(void **state)
{
	char *out;

	(void)state;
	metrics_reset();
	/* began 2 ms ago: above 0.001, within 0.0025 */
	metrics_callback(EVENT_PROMOTED, METRICS_CALLBACK_STORED, clock_mono_ns() - 2000000);
	metrics_callback(EVENT_PROMOTED, METRICS_CALLBACK_FORBIDDEN, clock_mono_ns());
	metrics_callback(99, METRICS_CALLBACK_STORED, clock_mono_ns()); /* no such endpoint: ignored */
	out = render();
	want_line(out, "matrixrmapi_build_info{version=\"" MATRIXRMAPI_VERSION "\"} 1");
	want_line(out, "matrixrmapi_callbacks_total{endpoint=\"promoted\",outcome=\"stored\"} 1");
	want_line(out, "matrixrmapi_callbacks_total{endpoint=\"promoted\",outcome=\"forbidden\"} 1");
	want_line(out, "matrixrmapi_callbacks_total{endpoint=\"created\",outcome=\"stored\"} 0");
	want_line(out, "matrixrmapi_callback_duration_seconds_bucket{endpoint=\"promoted\",le=\"0.001\"} 1");
	want_line(out, "matrixrmapi_callback_duration_seconds_bucket{endpoint=\"promoted\",le=\"0.0025\"} 2");
	want_line(out, "matrixrmapi_callback_duration_seconds_bucket{endpoint=\"promoted\",le=\"+Inf\"} 2");
	want_line(out, "matrixrmapi_callback_duration_seconds_count{endpoint=\"promoted\"} 2");
	want_line(out, "# TYPE matrixrmapi_callbacks_total counter");
	want_line(out, "# TYPE matrixrmapi_callback_duration_seconds histogram");
	free(out);
}

static void test_pass_action_store(void **state)
{
	char *out;

	(void)state;
	metrics_reset();
	metrics_pass("ok", clock_mono_ns());
	metrics_pass("unreachable", clock_mono_ns());
	metrics_pass("no such result", clock_mono_ns());
	metrics_action("room.join", "ok");
	metrics_action("room.join", "ok");
	metrics_action("user.deactivate", "failed");
	metrics_action("@mallory:example.test", "ok");     /* never a label: "other" */
	metrics_action("room.kick", "!room:example.test"); /* likewise */
	metrics_store_commit(3, 1, clock_mono_ns());
	metrics_store_commit(1, 0, clock_mono_ns());
	metrics_store_failure();
	out = render();
	want_line(out, "matrixrmapi_reconcile_passes_total{outcome=\"ok\"} 1");
	want_line(out, "matrixrmapi_reconcile_passes_total{outcome=\"unreachable\"} 1");
	want_line(out, "matrixrmapi_reconcile_passes_total{outcome=\"other\"} 1");
	want_line(out, "matrixrmapi_reconcile_pass_duration_seconds_count 3");
	want_line(out, "matrixrmapi_reconcile_actions_total{kind=\"room.join\",outcome=\"ok\"} 2");
	want_line(out, "matrixrmapi_reconcile_actions_total{kind=\"user.deactivate\",outcome=\"failed\"} 1");
	want_line(out, "matrixrmapi_reconcile_actions_total{kind=\"other\",outcome=\"ok\"} 1");
	want_line(out, "matrixrmapi_reconcile_actions_total{kind=\"room.kick\",outcome=\"other\"} 1");
	want_no(out, "mallory");
	want_no(out, "!room");
	want_line(out, "matrixrmapi_store_commits_total{outcome=\"ok\"} 1");
	want_line(out, "matrixrmapi_store_commits_total{outcome=\"failed\"} 1");
	want_line(out, "matrixrmapi_store_commit_batch_size_bucket{le=\"1\"} 1");
	want_line(out, "matrixrmapi_store_commit_batch_size_bucket{le=\"2\"} 1");
	want_line(out, "matrixrmapi_store_commit_batch_size_bucket{le=\"4\"} 2");
	want_line(out, "matrixrmapi_store_commit_batch_size_sum 4");
	want_line(out, "matrixrmapi_store_commit_batch_size_count 2");
	want_line(out, "matrixrmapi_store_commit_duration_seconds_count 2");
	want_line(out, "matrixrmapi_store_failures_total 1");
	free(out);
}

static void test_gauges(void **state)
{
	char *out;

	(void)state;
	metrics_reset();
	out = render();
	/* before any pass: the families, no value */
	want_line(out, "# TYPE matrixrmapi_managed_users gauge");
	want_no(out, "\nmatrixrmapi_managed_users ");
	want_no(out, "\nmatrixrmapi_rooms_ready ");
	want_line(out, "matrixrmapi_reconcile_last_success_timestamp_seconds 0");
	free(out);
	metrics_pass_state(5, 12, 3, 1);
	metrics_pass_state(0, -1, -1, 0); /* bootstrap failed: rooms 0, the rest unknown and kept */
	out = render();
	want_line(out, "matrixrmapi_rooms_ready 0");
	want_line(out, "matrixrmapi_managed_users 12");
	want_line(out, "matrixrmapi_reconcile_pending_differences 3");
	want_no(out, "matrixrmapi_reconcile_last_success_timestamp_seconds 0\n");
	free(out);
}

static void test_synapse_classes(void **state)
{
	static const struct {
		const char *path, *want;
	} cases[] = {
		{"/health", "health"},
		{"/_synapse/admin/v1/register", "admin_register"},
		{"/_synapse/admin/v1/join/%21abc%3Aexample.test", "admin_join"},
		{"/_synapse/admin/v1/deactivate/%40a%3Aexample.test", "admin_deactivate"},
		{"/_synapse/admin/v1/users/%40a%3Aexample.test/login", "admin_login"},
		{"/_synapse/admin/v1/users/%40a%3Aexample.test/override_ratelimit", "admin_ratelimit"},
		{"/_synapse/admin/v1/users/%40a%3Aexample.test?x=/login", "other"},
		{"/_synapse/admin/v1/rooms/%21abc%3Aexample.test/state", "admin_rooms"},
		{"/_synapse/admin/v2/users?from=0&limit=500&guests=false&name=x", "admin_users"},
		{"/_synapse/admin/v2/users/%40a%3Aexample.test", "admin_users"},
		{"/_matrix/client/v3/account/whoami", "whoami"},
		{"/_matrix/client/v3/directory/room/%23e2e-space%3Aexample.test", "directory"},
		{"/_matrix/client/v3/createRoom", "create_room"},
		{"/_matrix/client/v3/join/%21abc%3Aexample.test", "join"},
		{"/_matrix/client/v3/rooms/%21abc%3Aexample.test/state/m.room.power_levels/", "room_state"},
		{"/_matrix/client/v3/rooms/%21abc%3Aexample.test/kick", "room_kick"},
		{"/_matrix/client/v3/logout", "logout"},
		{"/_matrix/client/v3/rooms/%21abc%3Aexample.test/messages", "other"},
		{"/", "other"},
		{NULL, "other"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *have = metrics_synapse_endpoint(cases[i].path);

		if (strcmp(have, cases[i].want) != 0)
			fail_msg("%s: have %s, want %s", cases[i].path ? cases[i].path : "(null)", have, cases[i].want);
	}
}

static void test_synapse_requests(void **state)
{
	char *out;

	(void)state;
	metrics_reset();
	metrics_synapse_request("POST", "/_synapse/admin/v1/join/%21abc%3Aexample.test", 200, clock_mono_ns());
	metrics_synapse_request("POST", "/_synapse/admin/v1/join/%21def%3Aexample.test", 200, clock_mono_ns());
	metrics_synapse_request("GET", "/health", 0, clock_mono_ns());
	metrics_synapse_request("PUT", "/_synapse/admin/v2/users/%40a%3Aexample.test", 999, clock_mono_ns());
	metrics_synapse_request("POST", "/_matrix/client/v3/rooms/%21abc%3Aexample.test/kick", 429, clock_mono_ns());
	out = render();
	want_line(out, "matrixrmapi_synapse_requests_total{endpoint=\"admin_join\",method=\"POST\",code=\"200\"} 2");
	want_line(out, "matrixrmapi_synapse_requests_total{endpoint=\"health\",method=\"GET\",code=\"none\"} 1");
	want_line(out, "matrixrmapi_synapse_requests_total{endpoint=\"admin_users\",method=\"PUT\",code=\"other\"} 1");
	want_line(out, "matrixrmapi_synapse_requests_total{endpoint=\"room_kick\",method=\"POST\",code=\"429\"} 1");
	want_line(out, "matrixrmapi_synapse_request_duration_seconds_count{endpoint=\"admin_join\"} 2");
	want_no(out, "abc");
	want_no(out, "example.test");
	/* a class never asked has no series */
	want_no(out, "endpoint=\"whoami\"");
	free(out);
}

#define THREADS 4
#define PER_THREAD 100000

static void *observe_many(void *arg)
{
	(void)arg;
	for (int i = 0; i < PER_THREAD; i++) {
		metrics_callback(EVENT_CREATED, METRICS_CALLBACK_STORED, clock_mono_ns());
		metrics_synapse_request("GET", "/health", 200, clock_mono_ns());
	}
	return NULL;
}

static void test_concurrent_observations_all_counted(void **state)
{
	pthread_t t[THREADS];
	char line[160], *out;

	(void)state;
	metrics_reset();
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, observe_many, NULL), 0);
	/* scrapes while they run must work too */
	for (int i = 0; i < 20; i++) {
		out = render();
		free(out);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	out = render();
	snprintf(line, sizeof(line), "matrixrmapi_callbacks_total{endpoint=\"created\",outcome=\"stored\"} %d",
		 THREADS * PER_THREAD);
	want_line(out, line);
	snprintf(line, sizeof(line), "matrixrmapi_callback_duration_seconds_count{endpoint=\"created\"} %d",
		 THREADS * PER_THREAD);
	want_line(out, line);
	snprintf(line, sizeof(line),
		 "matrixrmapi_synapse_requests_total{endpoint=\"health\",method=\"GET\",code=\"200\"} %d",
		 THREADS * PER_THREAD);
	want_line(out, line);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_family_and_samples),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_decimal),
		cmocka_unit_test(test_histogram_cumulative),
		cmocka_unit_test(test_callback_counted_with_latency),
		cmocka_unit_test(test_pass_action_store),
		cmocka_unit_test(test_gauges),
		cmocka_unit_test(test_synapse_classes),
		cmocka_unit_test(test_synapse_requests),
		cmocka_unit_test(test_concurrent_observations_all_counted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
