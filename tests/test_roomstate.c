/* test_roomstate: Synapse's room-state answer, parsed as it arrives, gives
 * the compact parts roomstate.h describes: the member events as one value
 * each (membership, time, sender), the other events cut to the fields a pass
 * reads; the same whatever the cuts of the bytes are, and the same as
 * roomstate_split makes from the parsed array. Bad answers are refused
 * whole with their code. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roomstate.h"

static const char answer[] =
	"{\"state\":["
	"{\"content\":{\"membership\":\"join\",\"displayname\":\"A\",\"avatar_url\":\"mxc://x/y\"},"
	"\"origin_server_ts\":5,\"sender\":\"@a:x\",\"state_key\":\"@a:x\",\"type\":\"m.room.member\","
	"\"event_id\":\"$1\",\"room_id\":\"!r:x\",\"unsigned\":{\"age\":3,\"prev_content\":{\"membership\":\"invite\"},"
	"\"replaces_state\":\"$0\",\"deep\":[[{\"a\":[1,2.5,null,true]}]]},\"user_id\":\"@a:x\"},"
	"{\"type\":\"m.room.power_levels\",\"state_key\":\"\",\"sender\":\"@bot:x\",\"event_id\":\"$2\","
	"\"origin_server_ts\":1,\"content\":{\"users\":{\"@a:x\":100},\"events\":{\"m.call.invite\":0},"
	"\"list\":[1,-2,3.25,\"s\",false,null,{}]}},"
	"{\"type\":\"m.room.member\",\"state_key\":\"@b:x\",\"content\":{}},"
	"{\"type\":\"m.room.member\",\"state_key\":\"@c:x\",\"sender\":\"@mod:x\",\"origin_server_ts\":7,"
	"\"content\":{\"membership\":\"leave\",\"reason\":\"r\"}},"
	"{\"type\":\"m.room.member\",\"state_key\":\"@c:x\",\"sender\":\"@c:x\",\"content\":{\"membership\":\"join\"}},"
	"{\"type\":\"m.room.member\",\"state_key\":\"@d:x\",\"sender\":\"nobody\",\"content\":{\"membership\":\"a b\"}},"
	"{\"type\":\"m.room.member\",\"state_key\":\"@e:x\",\"sender\":\"@e:x\",\"origin_server_ts\":8,"
	"\"content\":{\"membership\":\"leave\"}},"
	"{\"type\":\"m.room.member\",\"state_key\":\"@f:x\",\"content\":{\"membership\":\"leave\"}},"
	"{\"type\":\"m.room.member\",\"state_key\":\"@g:x\",\"sender\":\"@bot:x\",\"origin_server_ts\":9,"
	"\"content\":{\"membership\":\"join\"}},"
	"{\"type\":\"m.room.member\",\"state_key\":\"@h:x\",\"content\":{\"membership\":\"custom\"}},"
	"\"not an event\",[1],"
	"{\"type\":\"m.space.child\",\"state_key\":\"!c:x\",\"content\":{\"via\":[\"x\"]}}"
	"],\"other\":{\"state\":[{\"type\":\"m.room.member\",\"state_key\":\"@z:x\"}]}}";

static const char want_events[] =
	"[{\"type\":\"m.room.power_levels\",\"state_key\":\"\",\"sender\":\"@bot:x\",\"origin_server_ts\":1,"
	"\"content\":{\"users\":{\"@a:x\":100},\"events\":{\"m.call.invite\":0},\"list\":[1,-2,3.25,\"s\",false,null,{}]}},"
	"{\"type\":\"m.space.child\",\"state_key\":\"!c:x\",\"content\":{\"via\":[\"x\"]}}]";

static const char want_members[] =
	"{\"@a:x\":\"join\",\"@b:x\":\"?\",\"@c:x\":\"leave 7 @mod:x\",\"@d:x\":\"?\",\"@e:x\":\"leave 8 =\","
	"\"@f:x\":\"leave 0 -\",\"@g:x\":\"join\",\"@h:x\":\"custom\"}";

static void assert_json_is(json_t *have, const char *want_text)
{
	json_t *want = json_loads(want_text, 0, NULL);

	assert_non_null(want);
	if (!json_equal(have, want)) {
		char *h = json_dumps(have, JSON_COMPACT);

		fail_msg("have %s\nwant %s", h, want_text);
		free(h);
	}
	json_decref(want);
}

/* Parses text fed in pieces of step bytes (0: all at once). */
static int parse(const char *text, size_t len, size_t step, json_t **events, json_t **members)
{
	struct roomstate_parser *p;
	int rc;

	assert_int_equal(roomstate_parser_new(&p), 0);
	for (size_t off = 0; off < len; off += step ? step : len) {
		size_t n = step && step < len - off ? step : len - off;

		if (roomstate_parser_feed(p, text + off, n) != 0)
			break; /* finish returns the same error */
	}
	rc = roomstate_parser_finish(p, events, members);
	roomstate_parser_free(p);
	return rc;
}

static void test_parse_any_cut(void **state)
{
	(void)state;
	for (size_t step = 0; step <= 64; step = step ? step * 2 : 1) {
		json_t *events, *members;

		assert_int_equal(parse(answer, strlen(answer), step, &events, &members), 0);
		assert_json_is(events, want_events);
		assert_json_is(members, want_members);
		json_decref(events);
		json_decref(members);
	}
}

/* roomstate_split of the parsed array (the planner's fixtures' form) is
 * the same as the streaming parse. */
static void test_split_matches_parse(void **state)
{
	json_t *doc = json_loads(answer, 0, NULL), *events, *members;

	(void)state;
	assert_non_null(doc);
	assert_int_equal(roomstate_split(json_object_get(doc, "state"), &events, &members), 0);
	assert_json_is(events, want_events);
	assert_json_is(members, want_members);
	json_decref(events);
	json_decref(members);
	assert_int_equal(roomstate_split(json_object_get(doc, "other"), &events, &members), -EINVAL);
	assert_null(events);
	json_decref(doc);
}

static void test_members_of_both_forms(void **state)
{
	json_t *doc = json_loads(answer, 0, NULL);
	json_t *full = json_pack("{s:{s:O}}", "rooms", "general", json_object_get(doc, "state"));
	json_t *compact = json_loads(
		"{\"rooms\":{\"general\":[]},\"members\":{\"general\":{\"@q:x\":\"invite 9 @a:x\"}}}", 0, NULL);
	json_t *m;

	(void)state;
	m = roomstate_members_of(full, "general");
	assert_json_is(m, want_members);
	json_decref(m);
	m = roomstate_members_of(full, "admin"); /* no such room: no members */
	assert_json_is(m, "{}");
	json_decref(m);
	m = roomstate_members_of(compact, "general");
	assert_json_is(m, "{\"@q:x\":\"invite 9 @a:x\"}");
	json_decref(m);
	m = roomstate_members_of(compact, "admin");
	assert_json_is(m, "{}");
	json_decref(m);
	json_decref(full);
	json_decref(compact);
	json_decref(doc);
}

static void test_member_get(void **state)
{
	json_t *members = json_loads(want_members, 0, NULL);
	struct roomstate_member m;

	(void)state;
	assert_int_equal(roomstate_member_get(members, "@a:x", &m), 1);
	assert_string_equal(m.membership, "join");
	assert_int_equal(m.ts, 0);
	assert_null(m.sender);
	assert_int_equal(roomstate_member_get(members, "@c:x", &m), 1);
	assert_string_equal(m.membership, "leave");
	assert_int_equal(m.ts, 7);
	assert_string_equal(m.sender, "@mod:x");
	assert_int_equal(roomstate_member_get(members, "@e:x", &m), 1);
	assert_string_equal(m.membership, "leave");
	assert_int_equal(m.ts, 8);
	assert_string_equal(m.sender, "@e:x"); /* "=": the member */
	assert_int_equal(roomstate_member_get(members, "@f:x", &m), 1);
	assert_string_equal(m.membership, "leave");
	assert_null(m.sender);
	assert_int_equal(roomstate_member_get(members, "@h:x", &m), 1);
	assert_string_equal(m.membership, "custom");
	assert_int_equal(roomstate_member_get(members, "@b:x", &m), 1);
	assert_string_equal(m.membership, "");
	assert_null(m.sender);
	assert_int_equal(roomstate_member_get(members, "@nobody:x", &m), 0);
	assert_string_equal(m.membership, "");
	assert_null(m.sender);
	assert_int_equal(roomstate_member_get(members, NULL, &m), 0);
	roomstate_member_decode("@u:x", "leave -12 @m:x", &m);
	assert_string_equal(m.membership, "leave");
	assert_int_equal(m.ts, -12);
	assert_string_equal(m.sender, "@m:x");
	roomstate_member_decode("@u:x", "leave x", &m);
	assert_string_equal(m.membership, "leave");
	assert_null(m.sender);
	roomstate_member_decode("@u:x", "much-too-long-a-membership", &m);
	assert_string_equal(m.membership, "");
	json_decref(members);
}

/* Members with the same membership share one value: 10,000 joined members
 * cost their keys, not 10,000 strings. */
static void test_values_shared(void **state)
{
	json_t *events, *members;

	(void)state;
	assert_int_equal(parse(answer, strlen(answer), 0, &events, &members), 0);
	assert_ptr_equal(json_object_get(members, "@a:x"), json_object_get(members, "@g:x"));
	assert_ptr_not_equal(json_object_get(members, "@c:x"), json_object_get(members, "@e:x"));
	json_decref(events);
	json_decref(members);
}

static void test_refused_whole(void **state)
{
	static const struct {
		const char *text;
		int code;
	} cases[] = {
		{"", ROOMSTATE_ESYNTAX},
		{"{\"state\":[", ROOMSTATE_ESYNTAX},
		{"{\"state\":[]} x", ROOMSTATE_ESYNTAX},
		{"<html>", ROOMSTATE_ESYNTAX},
		{"{\"state\":[{\"type\":\"a\\u0000b\"}]}", ROOMSTATE_ESYNTAX},
		{"{\"state\":[{\"content\":{\"k\\u0000\":1}}]}", ROOMSTATE_ESYNTAX},
		{"{\"state\":[{\"content\":\"\xff\"}]}", ROOMSTATE_ESYNTAX},
		{"{\"state\":[{\"origin_server_ts\":99999999999999999999}]}", ROOMSTATE_ESYNTAX},
		{"[]", ROOMSTATE_ESHAPE},
		{"\"state\"", ROOMSTATE_ESHAPE},
		{"{}", ROOMSTATE_ESHAPE},
		{"{\"stat\":[]}", ROOMSTATE_ESHAPE},
		{"{\"state\":{}}", ROOMSTATE_ESHAPE},
		{"{\"state\":7}", ROOMSTATE_ESHAPE},
	};
	json_t *events = json_true(), *members = json_true();

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = parse(cases[i].text, strlen(cases[i].text), 0, &events, &members);

		if (rc != cases[i].code)
			fail_msg("%s: have %d (%s), want %d", cases[i].text, rc, roomstate_strerror(rc), cases[i].code);
		assert_null(events);
		assert_null(members);
	}
}

/* Nesting past ROOMSTATE_MAX_DEPTH, in a field read past or in a content
 * being built, is refused; just below it is read. */
static void test_depth(void **state)
{
	for (int in_content = 0; in_content < 2; in_content++)
		for (int depth = ROOMSTATE_MAX_DEPTH - 4; depth <= ROOMSTATE_MAX_DEPTH + 1; depth++) {
			/* 3 levels are the document, the state array and the event. */
			int inner = depth - 3;
			size_t n = 64 + 2 * (size_t)inner;
			char *text = malloc(n);
			json_t *events = NULL, *members = NULL;
			size_t len;
			int rc;

			(void)state;
			assert_non_null(text);
			len = (size_t)snprintf(text, n, "{\"state\":[{\"%s\":", in_content ? "content" : "unsigned");
			memset(text + len, '[', (size_t)inner);
			memset(text + len + inner, ']', (size_t)inner);
			len += 2 * (size_t)inner;
			len += (size_t)snprintf(text + len, n - len, "}]}");
			rc = parse(text, len, 1000, &events, &members);
			assert_int_equal(rc, depth <= ROOMSTATE_MAX_DEPTH ? 0 : ROOMSTATE_EDEPTH);
			json_decref(events);
			json_decref(members);
			free(text);
		}
}

/* An error is kept: a later feed returns it and never parses on. */
static void test_error_sticks(void **state)
{
	struct roomstate_parser *p;
	json_t *events, *members;

	(void)state;
	assert_int_equal(roomstate_parser_new(&p), 0);
	assert_int_equal(roomstate_parser_feed(p, "{\"state\":7,", 11), ROOMSTATE_ESHAPE);
	assert_int_equal(roomstate_parser_feed(p, "}", 1), ROOMSTATE_ESHAPE);
	assert_int_equal(roomstate_parser_finish(p, &events, &members), ROOMSTATE_ESHAPE);
	roomstate_parser_free(p);
	assert_string_equal(roomstate_strerror(ROOMSTATE_ESHAPE), "the room state has no \"state\" array");
}

/* A repeated "state" key: the last wins, as in a parsed JSON object. */
static void test_repeated_state_key(void **state)
{
	static const char text[] = "{\"state\":[{\"type\":\"m.room.member\",\"state_key\":\"@a:x\",\"content\":{"
				   "\"membership\":\"join\"}}],\"state\":[{\"type\":\"t\",\"state_key\":\"\","
				   "\"type\":\"u\",\"content\":1,\"content\":{\"k\":[]}}]}";
	json_t *events, *members;

	(void)state;
	assert_int_equal(parse(text, strlen(text), 3, &events, &members), 0);
	assert_json_is(events, "[{\"type\":\"u\",\"state_key\":\"\",\"content\":{\"k\":[]}}]");
	assert_json_is(members, "{}");
	json_decref(events);
	json_decref(members);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_any_cut),         cmocka_unit_test(test_split_matches_parse),
		cmocka_unit_test(test_members_of_both_forms), cmocka_unit_test(test_member_get),
		cmocka_unit_test(test_refused_whole),         cmocka_unit_test(test_depth),
		cmocka_unit_test(test_error_sticks),          cmocka_unit_test(test_repeated_state_key),
		cmocka_unit_test(test_values_shared),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
