/* test_adopt: the pure half of `matrixrmapi adopt`: which Synapse users
 * become managed, which of them admins, which revoked; the preview of what
 * the store would do; the error texts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "adopt.h"

#define BOT "@matrixrmapi-bot:example.test"

static json_t *parse(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);

	if (!j)
		fail_msg("bad test JSON at %d: %s", e.line, e.text);
	return j;
}

static json_t *member(const char *user, const char *membership)
{
	return json_pack("{s:s, s:s, s:s, s:{s:s}}", "type", "m.room.member", "state_key", user, "sender", user,
			 "content", "membership", membership);
}

static json_t *levels(json_t *users /* stolen */)
{
	return json_pack("{s:s, s:s, s:{s:o}}", "type", "m.room.power_levels", "state_key", "", "content", "users",
			 users);
}

static void expect_json(const char *what, json_t *have, const char *want_text)
{
	json_t *want = parse(want_text);

	if (!json_equal(have, want)) {
		char *h = json_dumps(have, JSON_SORT_KEYS | JSON_INDENT(1)),
		     *w = json_dumps(want, JSON_SORT_KEYS | JSON_INDENT(1));

		print_error("%s:\nhave %s\nwant %s\n", what, h ? h : "(null)", w ? w : "(null)");
		free(h);
		free(w);
		json_decref(want);
		fail();
	}
	json_decref(want);
}

/* A deployment as the original leaves it: two admins (one by level and
 * admin room, one by admin room only), a plain member, a user who only has
 * level 100 in general, the bot, a recovery admin, a remote user, an
 * invited and a departed user, an excluded bot and a deactivated account
 * that still has level 100 in the space. */
static json_t *world(void)
{
	json_t *space = json_array(), *admin = json_array(), *general = json_array(), *input;

	json_array_append_new(space, member(BOT, "join"));
	json_array_append_new(space, member("@zed:example.test", "join"));
	json_array_append_new(space, member("@anna:example.test", "join"));
	json_array_append_new(space, member("@plain:example.test", "join"));
	json_array_append_new(space, member("@remote:elsewhere.test", "join"));
	json_array_append_new(space, member("@matrixrmapi-recovery-0a1b2c:example.test", "join"));
	json_array_append_new(space, member("@ingest:example.test", "join"));
	json_array_append_new(space, member("@invited:example.test", "invite"));
	json_array_append_new(space, member("@gone:example.test", "leave"));
	json_array_append_new(space, levels(json_pack("{s:i, s:i, s:i, s:i, s:i}", BOT, 200, "@anna:example.test", 100,
						      "@plain:example.test", 50, "@dead:example.test", 100,
						      "@gone:example.test", 100)));
	json_array_append_new(admin, member(BOT, "join"));
	json_array_append_new(admin, member("@anna:example.test", "join"));
	json_array_append_new(admin, member("@zed:example.test", "join"));
	json_array_append_new(general, member("@plain:example.test", "join"));
	json_array_append_new(general, member("@genlevel:example.test", "join"));
	json_array_append_new(general, levels(json_pack("{s:i}", "@genlevel:example.test", 100)));
	input = json_pack(
		"{s:{s:s, s:s}, s:{s:s, s:s, s:s}, s:{s:{s:{s:b}, s:{s:b}, s:{s:b}}, s:{s:o, s:o, s:o}}, s:[s]}",
		"spec", "bot", BOT, "domain", "example.test", "rooms", "space", "!s:example.test", "admin",
		"!a:example.test", "general", "!g:example.test", "observed", "users", "@dead:example.test",
		"deactivated", 1, "@anna:example.test", "deactivated", 0, BOT, "deactivated", 0, "rooms", "space",
		space, "admin", admin, "general", general, "exclude", "@ingest:example.test");
	assert_non_null(input);
	return input;
}

static void test_plan_rules(void **state)
{
	json_t *input = world(), *records = NULL;

	assert_int_equal(adopt_plan(input, &records), 0);
	expect_json(
		"adopted records", records,
		"["
		"{\"user\": \"@anna:example.test\", \"callsign\": \"anna\", \"active\": true, \"admin\": true,"
		" \"evidence\": [\"joined space\", \"joined admin\", \"level 100 in space\"]},"
		"{\"user\": \"@dead:example.test\", \"callsign\": \"dead\", \"active\": false, \"admin\": false,"
		" \"evidence\": [\"account deactivated\", \"level 100 in space\"]},"
		"{\"user\": \"@genlevel:example.test\", \"callsign\": \"genlevel\", \"active\": true, \"admin\": false,"
		" \"evidence\": [\"joined general\"]},"
		"{\"user\": \"@plain:example.test\", \"callsign\": \"plain\", \"active\": true, \"admin\": false,"
		" \"evidence\": [\"joined space\", \"joined general\"]},"
		"{\"user\": \"@zed:example.test\", \"callsign\": \"zed\", \"active\": true, \"admin\": true,"
		" \"evidence\": [\"joined space\", \"joined admin\"]}]");
	json_decref(records);
	json_decref(input);
}

static void test_plan_malformed(void **state)
{
	static const char *bad[] = {
		"{}",
		"{\"spec\": {\"bot\": \"" BOT "\"}, \"observed\": {\"users\": {}, \"rooms\": {}}}",
		"{\"spec\": {\"bot\": \"" BOT
		"\", \"domain\": \"example.test\"}, \"observed\": {\"users\": [], \"rooms\": {}}}",
		"{\"spec\": {\"bot\": \"" BOT "\", \"domain\": \"example.test\"}, \"observed\": {\"users\": {}}}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *in = parse(bad[i]), *records = (json_t *)1;

		if (adopt_plan(in, &records) != ADOPT_EINPUT || records != NULL)
			fail_msg("case %zu: malformed input accepted: %s", i, bad[i]);
		json_decref(in);
	}
}

static void test_plan_empty_world(void **state)
{
	json_t *in = parse("{\"spec\": {\"bot\": \"" BOT "\", \"domain\": \"example.test\"},"
			   " \"observed\": {\"users\": {}, \"rooms\": {}}}"),
	       *records = NULL;

	assert_int_equal(adopt_plan(in, &records), 0);
	expect_json("nothing to adopt", records, "[]");
	json_decref(records);
	json_decref(in);
}

static void test_preview(void **state)
{
	json_t *records =
		parse("[{\"user\": \"@a:x\"}, {\"user\": \"@b:x\"}, {\"user\": \"@c:x\"}, {\"user\": \"@d:x\"}]");
	json_t *desired = parse("[{\"user\": \"@a:x\", \"admin\": null}, {\"user\": \"@b:x\", \"admin\": 0},"
				" {\"user\": \"@c:x\", \"admin\": 1}]");
	json_t *have = adopt_preview(records, desired);

	expect_json("preview", have,
		    "{\"@a:x\": \"admin\", \"@b:x\": \"kept\", \"@c:x\": \"kept\", \"@d:x\": \"new\"}");
	json_decref(have);
	json_decref(records);
	json_decref(desired);
}

static void test_strerror(void **state)
{
	static const int codes[] = {ADOPT_EINPUT, ADOPT_ESTORE, ADOPT_ESYNAPSE, ADOPT_ENOROOMS};

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		const char *t = adopt_strerror(codes[i]);

		assert_non_null(t);
		assert_string_not_equal(t, "unknown error");
		for (size_t k = 0; k < i; k++)
			assert_string_not_equal(t, adopt_strerror(codes[k]));
	}
	assert_string_equal(adopt_strerror(0), "success");
	assert_string_equal(adopt_strerror(-ENOMEM), strerror(ENOMEM));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan_rules),       cmocka_unit_test(test_plan_malformed),
		cmocka_unit_test(test_plan_empty_world), cmocka_unit_test(test_preview),
		cmocka_unit_test(test_strerror),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
