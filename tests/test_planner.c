/* test_planner: runs one planner fixture. tests/meson.build registers one
 * meson test per fixture file in tests/planner/ and passes its path as the only
 * argument, so adding a case needs no C code.
 *
 * A fixture is the planner's input document (spec, rooms, desired, observed;
 * see reconcile/planner.h) plus either "expected", the exact array of
 * actions, or "error": true when planner_plan must refuse the input. Beyond
 * the expected plan every case also checks that the planner is pure: the
 * same input planned twice, and the input with the desired users in reverse
 * order, give the same plan, and the input is left unchanged.
 *
 * jansson allocates through cmocka's test allocator, so a leak in the
 * planner fails the case. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "planner.h"

static const char *fixture_path;

static void *test_json_malloc(size_t size)
{
	return _test_malloc(size, __FILE__, __LINE__);
}

static void test_json_free(void *ptr)
{
	if (ptr)
		_test_free(ptr, __FILE__, __LINE__);
}

/* Prints "what: have X, want Y" with both documents indented and sorted. */
static void print_mismatch(const char *what, const json_t *have, const json_t *want)
{
	char *h = have ? json_dumps(have, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	char *w = want ? json_dumps(want, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;

	print_error("%s: %s\nhave %s\nwant %s\n", fixture_path, what, h ? h : "(null)", w ? w : "(null)");
	test_json_free(h);
	test_json_free(w);
}

/* The planner input: the fixture without the fields that describe the outcome. */
static json_t *input_of(const json_t *fixture)
{
	json_t *input = json_deep_copy(fixture);

	json_object_del(input, "expected");
	json_object_del(input, "error");
	return input;
}

/* A copy of input whose desired array is in reverse order. */
static json_t *with_desired_reversed(const json_t *input)
{
	json_t *copy = json_deep_copy(input), *desired = json_object_get(input, "desired");
	json_t *rev = json_array();
	size_t n = json_array_size(desired);

	for (size_t i = n; i > 0; i--)
		json_array_append(rev, json_array_get(desired, i - 1));
	json_object_set_new(copy, "desired", rev);
	return copy;
}

static void test_fixture(void **state)
{
	json_error_t jerr;
	json_t *fixture = NULL, *input = NULL, *pristine = NULL, *reversed = NULL;
	json_t *have = NULL, *again = NULL, *have_rev = NULL, *want;
	char err[256] = "", err2[256] = "";
	int rc, failed = 1, want_error;

	(void)state;
	fixture = json_load_file(fixture_path, JSON_REJECT_DUPLICATES, &jerr);
	if (!fixture) {
		print_error("%s:%d: %s\n", fixture_path, jerr.line, jerr.text);
		goto done;
	}
	want_error = json_is_true(json_object_get(fixture, "error"));
	want = json_object_get(fixture, "expected");
	if (!want_error && !json_is_array(want)) {
		print_error("%s: fixture needs an \"expected\" array or \"error\": true\n", fixture_path);
		goto done;
	}
	input = input_of(fixture);
	pristine = json_deep_copy(input);

	rc = planner_plan(input, &have, err, sizeof(err));
	if (want_error) {
		if (rc != PLANNER_EINPUT || have) {
			print_mismatch("planner accepted malformed input", have, NULL);
			goto done;
		}
		if (err[0] == '\0') {
			print_error("%s: planner refused the input without saying why\n", fixture_path);
			goto done;
		}
		failed = 0;
		goto done;
	}
	if (rc != 0 || !have) {
		print_error("%s: planner_plan: have %d (%s), want 0\n", fixture_path, rc, err);
		goto done;
	}
	if (!json_equal(have, want)) {
		print_mismatch("plan differs", have, want);
		goto done;
	}
	if (!json_equal(input, pristine)) {
		print_mismatch("planner modified its input", input, pristine);
		goto done;
	}
	if (planner_plan(input, &again, err2, sizeof(err2)) != 0 || !json_equal(again, have)) {
		/* NOLINTNEXTLINE(readability-suspicious-call-argument): the second plan is compared with the first */
		print_mismatch("second plan of the same input differs", again, have);
		goto done;
	}
	reversed = with_desired_reversed(input);
	if (planner_plan(reversed, &have_rev, err2, sizeof(err2)) != 0 || !json_equal(have_rev, have)) {
		/* NOLINTNEXTLINE(readability-suspicious-call-argument): the reversed plan is compared with the first */
		print_mismatch("plan with desired reversed differs", have_rev, have);
		goto done;
	}
	failed = 0;
done:
	json_decref(fixture);
	json_decref(input);
	json_decref(pristine);
	json_decref(reversed);
	json_decref(have);
	json_decref(again);
	json_decref(have_rev);
	if (failed)
		fail_msg("%s", fixture_path);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixture),
	};

	if (argc != 2) {
		fprintf(stderr, "usage: %s FIXTURE.json\n", argv[0]);
		return 2;
	}
	fixture_path = argv[1];
	json_set_alloc_funcs(test_json_malloc, test_json_free);
	return cmocka_run_group_tests_name(fixture_path, tests, NULL, NULL);
}
