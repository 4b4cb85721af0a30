/* test_matrixid: callsign -> Matrix user ID, table-driven. Valid callsigns
 * must give exactly the lower-cased "@local:domain"; invalid ones must give
 * -1 with a non-empty reason. The length limit is checked at its edge: an ID
 * of exactly 255 bytes is accepted, 256 rejected. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "matrixid.h"

#define DOMAIN "example.test"

struct valid_case {
	const char *name, *callsign, *want;
};

static const struct valid_case valid_cases[] = {
	{"upper case is lowered", "ALPHA", "@alpha:" DOMAIN},
	{"mixed case", "AlPhA-1", "@alpha-1:" DOMAIN},
	{"already lower", "bravo", "@bravo:" DOMAIN},
	{"single character", "x", "@x:" DOMAIN},
	{"digits only", "0123456789", "@0123456789:" DOMAIN},
	{"dot", "a.b", "@a.b:" DOMAIN},
	{"underscore", "a_b", "@a_b:" DOMAIN},
	{"equals", "a=b", "@a=b:" DOMAIN},
	{"slash", "a/b", "@a/b:" DOMAIN},
	{"plus", "a+b", "@a+b:" DOMAIN},
	{"hyphen", "a-b", "@a-b:" DOMAIN},
	{"every allowed punctuation", "._=/+-", "@._=/+-:" DOMAIN},
	{"full alphabet upper", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "@abcdefghijklmnopqrstuvwxyz:" DOMAIN},
};

struct invalid_case {
	const char *name, *callsign;
};

static const struct invalid_case invalid_cases[] = {
	{"empty", ""},
	{"only a space", " "},
	{"inner space", "alpha bravo"},
	{"leading space", " alpha"},
	{"trailing space", "alpha "},
	{"colon", "alpha:beta"},
	{"at sign", "@alpha"},
	{"hash", "alpha#1"},
	{"exclamation", "alpha!"},
	{"comma", "a,b"},
	{"non-ASCII UTF-8", "\xc3\x84ij\xc3\xa4"}, /* "Äijä" */
	{"non-ASCII lower", "\xc3\xa4"},           /* "ä" */
	{"tab", "a\tb"},
	{"newline", "a\nb"},
	{"carriage return", "a\r"},
	{"control char 0x01", "a\x01"},
	{"escape", "\x1b[0m"},
	{"DEL", "a\x7f"},
	{"lone high byte", "a\xff"},
};

static void test_valid_table(void **state)
{
	int failures = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
		const struct valid_case *c = &valid_cases[i];
		char out[300], err[256];
		int rc;

		memset(out, 0, sizeof(out));
		err[0] = '\0';
		rc = matrixid_from_callsign(c->callsign, DOMAIN, out, sizeof(out), err, sizeof(err));
		if (rc != 0) {
			print_error("%s: \"%s\": have rc %d (%s), want 0\n", c->name, c->callsign, rc, err);
			failures++;
		} else if (strcmp(out, c->want) != 0) {
			print_error("%s: \"%s\": have \"%s\", want \"%s\"\n", c->name, c->callsign, out, c->want);
			failures++;
		}
	}
	assert_int_equal(failures, 0);
}

static void test_invalid_table(void **state)
{
	int failures = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(invalid_cases) / sizeof(invalid_cases[0]); i++) {
		const struct invalid_case *c = &invalid_cases[i];
		char out[300], err[256];
		int rc;

		out[0] = '\0';
		err[0] = '\0';
		rc = matrixid_from_callsign(c->callsign, DOMAIN, out, sizeof(out), err, sizeof(err));
		int want = c->callsign[0] ? MATRIXID_ECHAR : MATRIXID_EEMPTY;

		if (rc != want) {
			print_error("%s: have rc %d (out \"%s\"), want %d\n", c->name, rc, out, want);
			failures++;
		} else if (err[0] == '\0') {
			print_error("%s: have an empty reason, want a non-empty one\n", c->name);
			failures++;
		}
	}
	assert_int_equal(failures, 0);
}

/* A callsign of n 'A's: the ID is 1 + n + 1 + strlen(DOMAIN) bytes. */
static int try_length(size_t id_len, char *out, size_t outlen, char *err, size_t errlen)
{
	char callsign[400];
	size_t n = id_len - 2 - strlen(DOMAIN);

	assert_true(n < sizeof(callsign));
	memset(callsign, 'A', n);
	callsign[n] = '\0';
	return matrixid_from_callsign(callsign, DOMAIN, out, outlen, err, errlen);
}

static void test_length_limit(void **state)
{
	char out[400], err[256], want[400];
	size_t n = 255 - 2 - strlen(DOMAIN);

	(void)state;
	/* exactly 255 bytes: accepted, and the whole ID is written */
	err[0] = '\0';
	if (try_length(255, out, sizeof(out), err, sizeof(err)) != 0)
		fail_msg("255-byte ID: have rejection (%s), want acceptance", err);
	want[0] = '@';
	memset(want + 1, 'a', n);
	snprintf(want + 1 + n, sizeof(want) - 1 - n, ":%s", DOMAIN);
	assert_int_equal(strlen(out), 255);
	assert_string_equal(out, want);

	/* 256 bytes: rejected with a reason */
	err[0] = '\0';
	if (try_length(256, out, sizeof(out), err, sizeof(err)) != MATRIXID_ETOOLONG)
		fail_msg("256-byte ID: have acceptance, want rejection");
	assert_true(err[0] != '\0');

	/* far too long */
	err[0] = '\0';
	assert_int_equal(try_length(390, out, sizeof(out), err, sizeof(err)), MATRIXID_ETOOLONG);
	assert_true(err[0] != '\0');
}

/* The domain counts towards the 255 bytes as well. */
static void test_length_counts_domain(void **state)
{
	char domain[300], out[600], err[256];

	(void)state;
	memset(domain, 'd', 252);
	domain[252] = '\0'; /* "@a:" + 252 = 255 */
	assert_int_equal(matrixid_from_callsign("a", domain, out, sizeof(out), err, sizeof(err)), 0);
	assert_int_equal(strlen(out), 255);
	domain[252] = 'd';
	domain[253] = '\0'; /* 256 */
	err[0] = '\0';
	assert_int_equal(matrixid_from_callsign("a", domain, out, sizeof(out), err, sizeof(err)), MATRIXID_ETOOLONG);
	assert_true(err[0] != '\0');
}

/* A buffer too small for a valid ID is an error, never an overflow. */
static void test_small_buffer(void **state)
{
	char buf[16 + 8], err[256];

	(void)state;
	memset(buf, 'Z', sizeof(buf));
	err[0] = '\0';
	/* "@alpha:example.test" needs 20 bytes with its NUL; offer 16 */
	assert_int_equal(matrixid_from_callsign("alpha", DOMAIN, buf, 16, err, sizeof(err)), MATRIXID_ESPACE);
	assert_true(err[0] != '\0');
	for (size_t i = 16; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 'Z');
	/* exactly enough */
	assert_int_equal(matrixid_from_callsign("alpha", DOMAIN, buf, 20, err, sizeof(err)), 0);
	assert_string_equal(buf, "@alpha:" DOMAIN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_table),  cmocka_unit_test(test_invalid_table),
		cmocka_unit_test(test_length_limit), cmocka_unit_test(test_length_counts_domain),
		cmocka_unit_test(test_small_buffer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
