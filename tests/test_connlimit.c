/* test_connlimit: the per-address connection count: the limit holds per
 * address, closing gives the slot back, IPv4 and IPv4-mapped IPv6 are the
 * same client, other addresses are not affected, and a slot freed by one
 * address serves another without splitting anyone's count. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "connlimit.h"

static struct sockaddr_storage v4(const char *ip)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;

	memset(&ss, 0, sizeof(ss));
	in->sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, ip, &in->sin_addr), 1);
	return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *in = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	in->sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, ip, &in->sin6_addr), 1);
	return ss;
}

#define SA(x) ((const struct sockaddr *)&(x))

static void test_limit_per_address(void **state)
{
	struct connlimit *cl = NULL;
	struct sockaddr_storage a = v4("127.0.0.2"), b = v4("127.0.0.3"), am = v6("::ffff:127.0.0.2");

	(void)state;
	assert_int_equal(connlimit_new(3, &cl), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(connlimit_admit(cl, SA(a)), 1);
		connlimit_started(cl, SA(a));
	}
	assert_int_equal(connlimit_admit(cl, SA(a)), 0);
	assert_int_equal(connlimit_admit(cl, SA(am)), 0); /* the same client over IPv6 */
	assert_int_equal(connlimit_admit(cl, SA(b)), 1);  /* others are not affected */
	connlimit_closed(cl, SA(am));
	assert_int_equal(connlimit_count(cl, SA(a)), 2);
	assert_int_equal(connlimit_admit(cl, SA(a)), 1);
	/* closing more than was started never goes below zero */
	for (int i = 0; i < 5; i++)
		connlimit_closed(cl, SA(b));
	assert_int_equal(connlimit_count(cl, SA(b)), 0);
	connlimit_free(cl);
}

static void test_freed_slots_are_reused_without_splitting(void **state)
{
	struct connlimit *cl = NULL;
	char ip[32];

	(void)state;
	assert_int_equal(connlimit_new(2, &cl), 0);
	/* many addresses come and go */
	for (int i = 0; i < 20000; i++) {
		struct sockaddr_storage x;

		snprintf(ip, sizeof(ip), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
		x = v4(ip);
		connlimit_started(cl, SA(x));
		connlimit_closed(cl, SA(x));
	}
	/* and one that stays keeps one count */
	{
		struct sockaddr_storage s = v4("192.0.2.7");

		connlimit_started(cl, SA(s));
		for (int i = 0; i < 5000; i++) {
			struct sockaddr_storage x;

			snprintf(ip, sizeof(ip), "10.200.%d.%d", (i >> 8) & 255, i & 255);
			x = v4(ip);
			connlimit_started(cl, SA(x));
			connlimit_closed(cl, SA(x));
		}
		connlimit_started(cl, SA(s));
		assert_int_equal(connlimit_count(cl, SA(s)), 2);
		assert_int_equal(connlimit_admit(cl, SA(s)), 0);
	}
	connlimit_free(cl);
}

static void test_null_and_other_families_are_admitted(void **state)
{
	struct connlimit *cl = NULL;
	struct sockaddr unix_sa = {.sa_family = AF_UNIX};

	(void)state;
	assert_int_equal(connlimit_new(0, &cl), 0);
	assert_int_equal(connlimit_admit(cl, NULL), 1);
	assert_int_equal(connlimit_admit(cl, &unix_sa), 1);
	assert_string_equal(connlimit_strerror(CONNLIMIT_ENOMEM), "out of memory for the connection table");
	connlimit_free(cl);
	connlimit_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limit_per_address),
		cmocka_unit_test(test_freed_slots_are_reused_without_splitting),
		cmocka_unit_test(test_null_and_other_families_are_admitted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
