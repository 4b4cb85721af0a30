/* test_log: every logged line is one line of valid UTF-8 whatever its fields
 * hold (a URL with %0A decoded, a callsign, Synapse's error text), in both
 * formats: the escaping table, and lines captured from stderr. Structured
 * events: each field where ECS puts it (nested, the duration an integer of
 * ns, the four required keys first), in local after one TAB as key=value;
 * a quote, a newline, a TAB, a control character or a byte that is not
 * UTF-8 in any field neither breaks the JSON or the line nor adds a field. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"

static const struct {
	const char *in, *want;
} cases[] = {
	{"plain text", "plain text"},
	{"GET /api\nFAKE error root login", "GET /api\\nFAKE error root login"},
	{"cr\rlf\r\n", "cr\\rlf\\r\\n"},
	{"tab\there", "tab\\there"},
	{"back\\slash", "back\\\\slash"},
	{"bell\a esc\x1b[31m del\x7f", "bell\\x07 esc\\x1b[31m del\\x7f"},
	{"äö ✓ 𝄞", "äö ✓ 𝄞"},
	{"bad \xff byte", "bad \\xff byte"},
	{"stray \x80 continuation", "stray \\x80 continuation"},
	{"overlong \xc0\xaf slash", "overlong \\xc0\\xaf slash"},
	{"truncated \xe2\x9c", "truncated \\xe2\\x9c"},
	{"surrogate \xed\xa0\x80", "surrogate \\xed\\xa0\\x80"},
	{"quote \" stays", "quote \" stays"},
};

static void test_escape_table(void **state)
{
	int failures = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[256];

		log_escape(cases[i].in, out, sizeof(out));
		if (strcmp(out, cases[i].want) != 0) {
			print_error("case %zu: have \"%s\", want \"%s\"\n", i, out, cases[i].want);
			failures++;
		}
	}
	assert_int_equal(failures, 0);
}

static void test_escape_never_cuts_a_sequence(void **state)
{
	char out[6];

	(void)state;
	/* "a\n" needs 3 bytes; "✓" 3 more: only "a\\n" fits before the NUL */
	assert_int_equal(log_escape("a\n\xe2\x9c\x93", out, sizeof(out)), 3);
	assert_string_equal(out, "a\\n");
	assert_int_equal(log_escape("x", out, 1), 0);
	assert_string_equal(out, "");
}

/* Runs fn with stderr sent to a temporary file; returns what was written. */
static char *capture(void (*fn)(void))
{
	char path[] = "/tmp/test_log.XXXXXX", *buf;
	int fd = mkstemp(path), saved = dup(2);
	FILE *f;
	long n;

	assert_true(fd >= 0 && saved >= 0);
	fflush(stderr);
	dup2(fd, 2);
	fn();
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	f = fdopen(fd, "r");
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	assert_int_equal(fclose(f), 0);
	unlink(path);
	return buf;
}

static void hostile(void)
{
	log_warnx("http: GET %s -> 404", "/x\n2026-12-01T00:00:00.000Z error   forged \xff line");
}

static size_t lines(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void test_local_line_cannot_be_forged(void **state)
{
	char *out;

	(void)state;
	log_init(LOG_LVL_DEBUG, 0);
	out = capture(hostile);
	assert_int_equal(lines(out), 1);
	assert_non_null(strstr(out, "/x\\n2026-12-01T00:00:00.000Z error   forged \\xff line -> 404"));
	free(out);
}

static void test_ecs_line_is_one_json_object(void **state)
{
	json_error_t e;
	json_t *o;
	char *out;

	(void)state;
	log_init(LOG_LVL_DEBUG, 1);
	out = capture(hostile);
	assert_int_equal(lines(out), 1);
	o = json_loads(out, 0, &e);
	if (!o)
		fail_msg("not JSON: %s: %s", e.text, out);
	assert_string_equal(json_string_value(json_object_get(o, "log.level")), "warning");
	assert_string_equal(json_string_value(json_object_get(o, "message")),
			    "http: GET /x\\n2026-12-01T00:00:00.000Z error   forged \\xff line -> 404");
	json_decref(o);
	free(out);
	log_init(LOG_LVL_INFO, 0);
}

/* ---- structured events ------------------------------------------------ */

static const struct log_fields full = {
	.action = "room.join",
	.outcome = LOG_FAILURE,
	.user_id = "@alpha:example.test",
	.room_id = "!abc:example.test",
	.error_code = "M_FORBIDDEN",
	.has_duration = 1,
	.duration_ns = 1500000,
};

/* Hostile values: each tries to end the line, close the JSON string or
 * start a field of its own. */
static const struct log_fields hostile_fields = {
	.action = "room.join\",\"forged\":\"1",
	.outcome = LOG_SUCCESS,
	.user_id = "@a:b\" outcome=success\n{\"forged\":1}",
	.room_id = "!r:b\tforged=1 \x01\x7f",
	.error_code = "M_\xff\xfe quote\"",
};

static void event_full(void)
{
	log_event(LOG_LVL_WARN, &full, "reconcile: room.join %s in general failed", full.user_id);
}

static void event_hostile(void)
{
	log_event(LOG_LVL_INFO, &hostile_fields, "msg with \"quote\" and\ttab and\nnewline");
}

static void event_plain(void)
{
	log_event(LOG_LVL_INFO, NULL, "no fields at all");
	log_event(LOG_LVL_INFO, &(struct log_fields){0}, "empty fields");
	log_event(LOG_LVL_DEBUG, &full, "below the level");
}

static json_t *one_json_line(const char *out)
{
	json_error_t e;
	json_t *o;

	assert_int_equal(lines(out), 1);
	if ((o = json_loads(out, 0, &e)) == NULL)
		fail_msg("not JSON: %s: %s", e.text, out);
	return o;
}

static const char *path_str(json_t *o, const char *parent, const char *key)
{
	return json_string_value(json_object_get(json_object_get(o, parent), key));
}

static void test_ecs_event_fields(void **state)
{
	static const char *const first[] = {"@timestamp", "log.level", "message", "ecs.version"};
	json_t *o, *dur;
	char *out;
	void *it;

	(void)state;
	log_init(LOG_LVL_DEBUG, 1);
	out = capture(event_full);
	o = one_json_line(out);
	/* ecs-logging: these four at the top, dotted, and these first */
	it = json_object_iter(o);
	for (size_t i = 0; i < 4; i++, it = json_object_iter_next(o, it)) {
		assert_non_null(it);
		assert_string_equal(json_object_iter_key(it), first[i]);
	}
	assert_string_equal(json_string_value(json_object_get(o, "log.level")), "warning");
	assert_string_equal(json_string_value(json_object_get(o, "ecs.version")), "1.6.0");
	assert_string_equal(json_string_value(json_object_get(o, "message")),
			    "reconcile: room.join @alpha:example.test in general failed");
	assert_string_equal(path_str(o, "event", "action"), "room.join");
	assert_string_equal(path_str(o, "event", "outcome"), "failure");
	assert_string_equal(path_str(o, "matrix", "user_id"), "@alpha:example.test");
	assert_string_equal(path_str(o, "matrix", "room_id"), "!abc:example.test");
	assert_string_equal(path_str(o, "error", "code"), "M_FORBIDDEN");
	dur = json_object_get(json_object_get(o, "event"), "duration");
	assert_true(json_is_integer(dur));
	assert_int_equal(json_integer_value(dur), 1500000);
	assert_int_equal(json_object_size(o), 7); /* the four, event, matrix, error */
	json_decref(o);
	free(out);
	log_init(LOG_LVL_INFO, 0);
}

static void test_ecs_hostile_fields_stay_fields(void **state)
{
	json_t *o;
	char *out;

	(void)state;
	log_init(LOG_LVL_DEBUG, 1);
	out = capture(event_hostile);
	o = one_json_line(out);
	assert_null(json_object_get(o, "forged"));
	assert_int_equal(json_object_size(o), 7); /* the four, event, matrix, error */
	assert_int_equal(json_object_size(json_object_get(o, "event")), 2);
	assert_int_equal(json_object_size(json_object_get(o, "matrix")), 2);
	assert_string_equal(path_str(o, "event", "action"), "room.join\",\"forged\":\"1");
	assert_string_equal(path_str(o, "event", "outcome"), "success");
	assert_string_equal(path_str(o, "matrix", "user_id"), "@a:b\" outcome=success\\n{\"forged\":1}");
	assert_string_equal(path_str(o, "matrix", "room_id"), "!r:b\\tforged=1 \\x01\\x7f");
	assert_string_equal(path_str(o, "error", "code"), "M_\\xff\\xfe quote\"");
	assert_string_equal(json_string_value(json_object_get(o, "message")),
			    "msg with \"quote\" and\\ttab and\\nnewline");
	json_decref(o);
	free(out);
	log_init(LOG_LVL_INFO, 0);
}

static size_t count(const char *s, char c)
{
	size_t n = 0;

	for (; *s; s++)
		n += *s == c;
	return n;
}

static void test_local_event_fields(void **state)
{
	char *out, *tab;

	(void)state;
	log_init(LOG_LVL_DEBUG, 0);
	out = capture(event_full);
	assert_int_equal(lines(out), 1);
	assert_int_equal(count(out, '\t'), 1);
	/* "2026-12-01T23:00:00.000Z warning reconcile: ..." : the level padded, messages in one column */
	assert_int_equal(out[24], ' ');
	assert_memory_equal(out + 25, "warning ", 8);
	tab = strchr(out, '\t');
	assert_string_equal(tab, "\taction=room.join outcome=failure user=@alpha:example.test room=!abc:example.test "
				 "error=M_FORBIDDEN duration=1.500ms\n");
	/* short messages are padded so that the fields start in one column */
	assert_int_equal(tab - (out + 33), 60);
	free(out);
	log_init(LOG_LVL_INFO, 0);
}

static void test_local_hostile_fields_stay_fields(void **state)
{
	char *out, *tab;

	(void)state;
	log_init(LOG_LVL_DEBUG, 0);
	out = capture(event_hostile);
	assert_int_equal(lines(out), 1);
	/* the one TAB divides message and fields: neither holds one */
	assert_int_equal(count(out, '\t'), 1);
	assert_non_null(strstr(out, "info    msg with \"quote\" and\\ttab and\\nnewline"));
	tab = strchr(out, '\t');
	/* a value holding a space, a quote or '=' is quoted, its quotes escaped:
	 * read as logfmt, the fields are action, outcome, user, room, error and nothing else */
	assert_string_equal(tab, "\taction=\"room.join\\\",\\\"forged\\\":\\\"1\" outcome=success "
				 "user=\"@a:b\\\" outcome=success\\n{\\\"forged\\\":1}\" "
				 "room=\"!r:b\\tforged=1 \\x01\\x7f\" error=\"M_\\xff\\xfe quote\\\"\"\n");
	free(out);
	log_init(LOG_LVL_INFO, 0);
}

static void test_no_fields_no_tab_and_levels(void **state)
{
	char *out;

	(void)state;
	log_init(LOG_LVL_INFO, 0);
	out = capture(event_plain);
	assert_int_equal(lines(out), 2);
	assert_int_equal(count(out, '\t'), 0);
	assert_non_null(strstr(out, "info    no fields at all\n"));
	assert_non_null(strstr(out, "info    empty fields\n"));
	assert_null(strstr(out, "below the level"));
	free(out);
	log_init(LOG_LVL_INFO, 1);
	out = capture(event_plain);
	assert_int_equal(lines(out), 2);
	for (char *line = out, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
		json_t *o;

		*nl = '\0';
		o = json_loads(line, 0, NULL);
		assert_non_null(o);
		assert_int_equal(json_object_size(o), 4); /* no empty event or matrix object */
		json_decref(o);
	}
	free(out);
	log_init(LOG_LVL_INFO, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape_table),
		cmocka_unit_test(test_escape_never_cuts_a_sequence),
		cmocka_unit_test(test_local_line_cannot_be_forged),
		cmocka_unit_test(test_ecs_line_is_one_json_object),
		cmocka_unit_test(test_ecs_event_fields),
		cmocka_unit_test(test_ecs_hostile_fields_stay_fields),
		cmocka_unit_test(test_local_event_fields),
		cmocka_unit_test(test_local_hostile_fields_stay_fields),
		cmocka_unit_test(test_no_fields_no_tab_and_levels),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
