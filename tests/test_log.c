/* test_log: every logged line is one line of valid UTF-8 whatever its fields
 * hold (a URL with %0A decoded, a callsign, Synapse's error text), in both
 * formats: the escaping table, and lines captured from stderr. */
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape_table),
		cmocka_unit_test(test_escape_never_cuts_a_sequence),
		cmocka_unit_test(test_local_line_cannot_be_forged),
		cmocka_unit_test(test_ecs_line_is_one_json_object),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
