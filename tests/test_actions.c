/* test_actions: the action enum, its name table and the executor's handler
 * table stay in step. A kind added to enum action_kind without a name, or
 * without an apply handler, fails here rather than at run time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <jansson.h>

#include "executor.h"
#include "planner.h"

static void test_every_kind_has_a_unique_name(void **state)
{
	(void)state;
	for (int i = 0; i < ACTION__COUNT; i++) {
		const char *name = action_names[i];

		if (!name) {
			fail_msg("kind %d: have no name, want one", i);
			continue;
		}
		if (name[0] == '\0')
			fail_msg("kind %d: have an empty name, want one", i);
		for (int j = 0; j < i; j++)
			if (action_names[j] && strcmp(action_names[j], name) == 0)
				fail_msg("kinds %d and %d: both named \"%s\", want unique names", j, i, name);
	}
}

static void test_kind_round_trips_every_name(void **state)
{
	(void)state;
	for (int i = 0; i < ACTION__COUNT; i++) {
		json_t *a = json_pack("{s:s, s:s}", "kind", action_names[i], "room", "space");
		int have = planner_action_kind(a);

		json_decref(a);
		if (have != i)
			fail_msg("planner_action_kind(\"%s\"): have %d, want %d", action_names[i], have, i);
	}
}

static void test_kind_of_unknown_is_minus_one(void **state)
{
	static const char *const cases[] = {
		"{\"kind\": \"room.explode\"}",
		"{\"kind\": \"\"}",
		"{\"kind\": \"ROOM.JOIN\"}",
		"{\"kind\": \"room.join \"}",
		"{\"kind\": 3}",
		"{\"kind\": null}",
		"{\"room\": \"space\", \"user\": \"@a:example.test\"}",
		"[\"room.join\"]",
		"\"room.join\"",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *a = json_loads(cases[i], JSON_DECODE_ANY, NULL);
		int have;

		assert_non_null(a);
		have = planner_action_kind(a);
		json_decref(a);
		if (have != -1)
			fail_msg("planner_action_kind(%s): have %d, want -1", cases[i], have);
	}
	if (planner_action_kind(NULL) != -1)
		fail_msg("planner_action_kind(NULL): have %d, want -1", planner_action_kind(NULL));
}

static void test_every_kind_has_a_handler(void **state)
{
	(void)state;
	for (int i = 0; i < ACTION__COUNT; i++)
		if (!executor_has_handler(i))
			fail_msg("kind %d (\"%s\"): have no executor handler, want one", i,
				 action_names[i] ? action_names[i] : "(unnamed)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_kind_has_a_unique_name),
		cmocka_unit_test(test_kind_round_trips_every_name),
		cmocka_unit_test(test_kind_of_unknown_is_minus_one),
		cmocka_unit_test(test_every_kind_has_a_handler),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
