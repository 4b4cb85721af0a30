/* test_observe: a room's state is cut to what a pass reads: a member
 * event keeps type, state_key, sender, origin_server_ts and its membership
 * (not its profile, ids or unsigned); other events keep their whole
 * content; the order and the number of events stay. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "observe.h"

static void test_compact_state(void **state)
{
	json_error_t jerr;
	json_t *in = json_loads(
		"[{\"type\":\"m.room.member\",\"state_key\":\"@a:x\",\"sender\":\"@a:x\",\"origin_server_ts\":5,"
		"\"event_id\":\"$1\",\"room_id\":\"!r:x\",\"unsigned\":{\"age\":3,\"prev_content\":{\"membership\":\"invite\"}},"
		"\"content\":{\"membership\":\"join\",\"displayname\":\"A\",\"avatar_url\":\"mxc://x/y\"}},"
		"{\"type\":\"m.room.power_levels\",\"state_key\":\"\",\"sender\":\"@bot:x\",\"event_id\":\"$2\","
		"\"content\":{\"users\":{\"@a:x\":100},\"events\":{\"m.call.invite\":0}}},"
		"{\"type\":\"m.room.member\",\"state_key\":\"@b:x\",\"content\":{}}]",
		0, &jerr);
	json_t *want = json_loads(
		"[{\"type\":\"m.room.member\",\"state_key\":\"@a:x\",\"sender\":\"@a:x\",\"origin_server_ts\":5,"
		"\"content\":{\"membership\":\"join\"}},"
		"{\"type\":\"m.room.power_levels\",\"state_key\":\"\",\"sender\":\"@bot:x\","
		"\"content\":{\"users\":{\"@a:x\":100},\"events\":{\"m.call.invite\":0}}},"
		"{\"type\":\"m.room.member\",\"state_key\":\"@b:x\",\"content\":{}}]",
		0, &jerr);
	json_t *out, *empty;

	(void)state;
	assert_non_null(in);
	assert_non_null(want);
	out = observe_compact_state(in);
	assert_non_null(out);
	if (!json_equal(out, want)) {
		char *have = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);

		fail_msg("have %s", have);
		free(have);
	}
	json_decref(out);
	empty = json_array(); /* observe_compact_state borrows its argument */
	out = observe_compact_state(empty);
	assert_int_equal(json_array_size(out), 0);
	json_decref(out);
	json_decref(empty);
	json_decref(in);
	json_decref(want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_compact_state),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
