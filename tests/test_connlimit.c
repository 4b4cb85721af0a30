/* test_connlimit: the per-address connection count: the limit holds per
 * address, closing gives the slot back, IPv4 and IPv4-mapped IPv6 are the
 * same client, other addresses are not affected, and a slot freed by one
 * address serves another without splitting anyone's count. IPv6 counts by
 * /64. The listener's last slots go only to vouched addresses (a verified
 * certificate within the hour), and the total counts every connection.
 * At the limit a newcomer takes the place of the address's oldest waiting
 * connection (shut down, its count handed over, never above the limit); a
 * busy one is never taken; with none waiting the newcomer is refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
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
	int64_t now = clock_mono_coarse_ms(); /* the listener's clock (http.c, on_accept) */

	(void)state;
	assert_int_equal(connlimit_new(3, &cl), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(connlimit_check(cl, SA(a), now), 0);
		connlimit_started(cl, SA(a), 0);
	}
	assert_int_equal(connlimit_check(cl, SA(a), now), CONNLIMIT_EADDRESS);
	assert_int_equal(connlimit_check(cl, SA(am), now), CONNLIMIT_EADDRESS); /* the same client over IPv6 */
	assert_int_equal(connlimit_check(cl, SA(b), now), 0);                   /* others are not affected */
	connlimit_closed(cl, SA(am));
	assert_int_equal(connlimit_count(cl, SA(a)), 2);
	assert_int_equal(connlimit_check(cl, SA(a), now), 0);
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
	int64_t now = clock_mono_coarse_ms();

	(void)state;
	assert_int_equal(connlimit_new(2, &cl), 0);
	/* many addresses come and go */
	for (int i = 0; i < 20000; i++) {
		struct sockaddr_storage x;

		snprintf(ip, sizeof(ip), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
		x = v4(ip);
		connlimit_started(cl, SA(x), 0);
		connlimit_closed(cl, SA(x));
	}
	/* and one that stays keeps one count */
	{
		struct sockaddr_storage s = v4("192.0.2.7");

		connlimit_started(cl, SA(s), 0);
		for (int i = 0; i < 5000; i++) {
			struct sockaddr_storage x;

			snprintf(ip, sizeof(ip), "10.200.%d.%d", (i >> 8) & 255, i & 255);
			x = v4(ip);
			connlimit_started(cl, SA(x), 0);
			connlimit_closed(cl, SA(x));
		}
		connlimit_started(cl, SA(s), 0);
		assert_int_equal(connlimit_count(cl, SA(s)), 2);
		assert_int_equal(connlimit_check(cl, SA(s), now), CONNLIMIT_EADDRESS);
	}
	connlimit_free(cl);
}

static void test_null_and_other_families_are_admitted(void **state)
{
	struct connlimit *cl = NULL;
	struct sockaddr unix_sa = {.sa_family = AF_UNIX};
	int64_t now = clock_mono_coarse_ms();

	(void)state;
	assert_int_equal(connlimit_new(0, &cl), 0);
	assert_int_equal(connlimit_check(cl, NULL, now), 0);
	assert_int_equal(connlimit_check(cl, &unix_sa, now), 0);
	assert_string_equal(connlimit_strerror(CONNLIMIT_ENOMEM), "out of memory for the connection table");
	connlimit_free(cl);
	connlimit_free(NULL);
}

static void test_ipv6_counts_by_64(void **state)
{
	struct connlimit *cl = NULL;
	struct sockaddr_storage a = v6("2001:db8:1:2::10"), b = v6("2001:db8:1:2:ffff::1"), c = v6("2001:db8:1:3::10");

	(void)state;
	assert_int_equal(connlimit_new(2, &cl), 0);
	connlimit_started(cl, SA(a), 0);
	connlimit_started(cl, SA(b), 0); /* another host part, the same /64 */
	assert_int_equal(connlimit_count(cl, SA(a)), 2);
	assert_int_equal(connlimit_check(cl, SA(b), 0), CONNLIMIT_EADDRESS);
	assert_int_equal(connlimit_check(cl, SA(c), 0), 0); /* the next /64 */
	connlimit_free(cl);
}

/* Listener threads check at accept and count later: two that both passed
 * connlimit_check for the last slot learn from connlimit_started, decided
 * under the count's own lock, which one took it. The loser is still counted
 * until it closes. */
static void test_started_refuses_the_loser_of_a_race(void **state)
{
	struct connlimit *cl = NULL;
	struct sockaddr_storage a = v4("10.0.0.1"), b = v4("10.0.0.2"), c = v4("10.0.0.3");
	int64_t t0 = 1000000;

	(void)state;
	assert_int_equal(connlimit_new(2, &cl), 0);
	connlimit_set_reserve(cl, 6, 2); /* 4 slots for addresses without a vouch */
	assert_int_equal(connlimit_started(cl, SA(a), t0), 0);
	assert_int_equal(connlimit_started(cl, SA(a), t0), 0);
	assert_int_equal(connlimit_started(cl, SA(b), t0), 0);
	/* the last slot: both pass the check, the second to count loses */
	assert_int_equal(connlimit_check(cl, SA(c), t0), 0);
	assert_int_equal(connlimit_check(cl, SA(b), t0), 0);
	assert_int_equal(connlimit_started(cl, SA(c), t0), 0);
	assert_int_equal(connlimit_started(cl, SA(b), t0), CONNLIMIT_ERESERVED);
	assert_int_equal(connlimit_total(cl), 5);
	connlimit_closed(cl, SA(b));
	assert_int_equal(connlimit_total(cl), 4);
	connlimit_free(cl);

	/* the same for an address's own limit */
	assert_int_equal(connlimit_new(1, &cl), 0);
	assert_int_equal(connlimit_check(cl, SA(a), t0), 0);
	assert_int_equal(connlimit_check(cl, SA(a), t0), 0);
	assert_int_equal(connlimit_started(cl, SA(a), t0), 0);
	assert_int_equal(connlimit_started(cl, SA(a), t0), CONNLIMIT_EADDRESS);
	assert_int_equal(connlimit_count(cl, SA(a)), 2);
	connlimit_free(cl);
}

static void test_reserve_is_kept_for_vouched_addresses(void **state)
{
	struct connlimit *cl = NULL;
	struct sockaddr_storage rm = v4("127.0.0.1"), other = v4("127.0.0.9"), late = v4("127.0.0.7"), x;
	char ip[32];
	int64_t t0 = 1000000;

	(void)state;
	assert_int_equal(connlimit_new(4, &cl), 0);
	connlimit_set_reserve(cl, 20, 4);
	connlimit_vouch(cl, SA(rm), t0);
	/* 16 connections from four other addresses fill all but the reserve. */
	for (int i = 0; i < 16; i++) {
		snprintf(ip, sizeof(ip), "10.0.0.%d", 1 + i / 4);
		x = v4(ip);
		assert_int_equal(connlimit_check(cl, SA(x), t0), 0);
		connlimit_started(cl, SA(x), 0);
	}
	assert_int_equal(connlimit_total(cl), 16);
	assert_int_equal(connlimit_check(cl, SA(other), t0), CONNLIMIT_ERESERVED);
	assert_int_equal(connlimit_check(cl, SA(rm), t0 + 1000), 0);
	connlimit_started(cl, SA(rm), 0);
	assert_int_equal(connlimit_total(cl), 17);
	/* A vouch lasts an hour. */
	assert_int_equal(connlimit_check(cl, SA(rm), t0 + CONNLIMIT_VOUCH_MS), CONNLIMIT_ERESERVED);
	connlimit_vouch(cl, SA(late), t0);
	assert_int_equal(connlimit_check(cl, SA(late), t0), 0);
	/* A closed connection frees a slot for anyone. */
	connlimit_closed(cl, SA(rm));
	x = v4("10.0.0.1");
	connlimit_closed(cl, SA(x));
	assert_int_equal(connlimit_total(cl), 15);
	assert_int_equal(connlimit_check(cl, SA(other), t0), 0);
	assert_string_equal(connlimit_strerror(CONNLIMIT_ERESERVED),
			    "the listener is nearly full and the rest is kept for addresses that presented a verified "
			    "client certificate");
	connlimit_free(cl);
}

static void test_vouched_table_keeps_the_newest(void **state)
{
	struct connlimit *cl = NULL;
	struct sockaddr_storage first = v4("10.1.0.0"), x;
	char ip[32];

	(void)state;
	assert_int_equal(connlimit_new(0, &cl), 0);
	connlimit_set_reserve(cl, 1, 1); /* always in the reserve */
	connlimit_vouch(cl, SA(first), 1);
	for (int i = 1; i <= 64; i++) { /* 64 newer ones push the oldest out */
		snprintf(ip, sizeof(ip), "10.1.0.%d", i);
		x = v4(ip);
		connlimit_vouch(cl, SA(x), 1 + i);
	}
	assert_int_equal(connlimit_check(cl, SA(first), 100), CONNLIMIT_ERESERVED);
	assert_int_equal(connlimit_check(cl, SA(x), 100), 0);
	x = v4("10.1.0.1");
	assert_int_equal(connlimit_check(cl, SA(x), 100), 0);
	connlimit_free(cl);
}

/* 1 when the peer of sv[0] sees its end shut down (EOF). */
static int was_shut(int fds[2])
{
	char c;

	return recv(fds[1], &c, 1, MSG_DONTWAIT) == 0;
}

static void test_newcomer_takes_the_oldest_waiting_place(void **state)
{
	struct connlimit *cl = NULL;
	struct sockaddr_storage a = v4("127.0.0.2"), b = v4("127.0.0.3");
	struct connlimit_conn c[5], other;
	int fds[5][2], ofds[2], evicted;
	int64_t now = clock_mono_coarse_ms();

	(void)state;
	assert_int_equal(connlimit_new(3, &cl), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds[i]), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, ofds), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(connlimit_attach(cl, SA(a), now, &c[i], fds[i][0], 0, &evicted), 0);
		assert_int_equal(evicted, 0);
	}
	assert_int_equal(connlimit_attach(cl, SA(b), now, &other, ofds[0], 0, &evicted), 0);
	/* c[0] is serving a request: c[1] is the oldest waiting one. */
	connlimit_busy(cl, &c[0]);
	assert_int_equal(connlimit_check(cl, SA(a), now), CONNLIMIT_EADDRESS);
	assert_true(connlimit_can_evict(cl, SA(a)));
	assert_int_equal(connlimit_attach(cl, SA(a), now, &c[3], fds[3][0], 0, &evicted), 0);
	assert_int_equal(evicted, 1);
	assert_true(was_shut(fds[1]));
	assert_false(was_shut(fds[0]));
	assert_false(was_shut(fds[2]));
	assert_false(was_shut(ofds));                    /* another address is never touched */
	assert_int_equal(connlimit_count(cl, SA(a)), 3); /* never above the limit */
	assert_int_equal(connlimit_total(cl), 4);
	/* The evicted one closes later: its count was handed over already. */
	connlimit_detach(cl, &c[1]);
	assert_int_equal(connlimit_count(cl, SA(a)), 3);
	assert_int_equal(connlimit_total(cl), 4);
	/* c[2] and c[3] busy too: nobody to take the place of, refused. */
	connlimit_busy(cl, &c[2]);
	connlimit_busy(cl, &c[3]);
	assert_false(connlimit_can_evict(cl, SA(a)));
	assert_int_equal(connlimit_attach(cl, SA(a), now, &c[4], fds[4][0], 0, &evicted), CONNLIMIT_EADDRESS);
	assert_int_equal(evicted, 0);
	connlimit_detach(cl, &c[4]); /* the refused one is closed and released */
	assert_int_equal(connlimit_count(cl, SA(a)), 3);
	/* c[2] answered and waits again: it is the one to go now. */
	connlimit_idle(cl, &c[2]);
	assert_true(connlimit_can_evict(cl, SA(a)));
	assert_int_equal(connlimit_attach(cl, SA(a), now, &c[1], fds[1][0], 0, &evicted), 0);
	assert_int_equal(evicted, 1);
	assert_true(was_shut(fds[2]));
	assert_false(was_shut(fds[3]));
	/* Detaching twice (evicted, then closed) releases nothing twice. */
	connlimit_detach(cl, &c[2]);
	connlimit_detach(cl, &c[2]);
	connlimit_detach(cl, &c[0]);
	connlimit_detach(cl, &c[1]);
	connlimit_detach(cl, &c[3]);
	connlimit_detach(cl, &other);
	assert_int_equal(connlimit_count(cl, SA(a)), 0);
	assert_int_equal(connlimit_total(cl), 0);
	for (int i = 0; i < 5; i++) {
		close(fds[i][0]);
		close(fds[i][1]);
	}
	close(ofds[0]);
	close(ofds[1]);
	connlimit_free(cl);
}

/* A trusted proxy's connections (header mode) are counted but never
 * refused, never evicted, and never put back on the waiting list. */
static void test_exempt_connections_are_never_evicted(void **state)
{
	struct connlimit *cl;
	struct sockaddr_storage a = v4("127.0.0.1");
	struct connlimit_conn c[4], plain;
	int fds[4][2], pfds[2], evicted;
	int64_t now = clock_mono_coarse_ms();

	(void)state;
	assert_int_equal(connlimit_new(2, &cl), 0);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds[i]), 0);
		assert_int_equal(connlimit_attach(cl, SA(a), now, &c[i], fds[i][0], 1, &evicted), 0);
		assert_int_equal(evicted, 0);
	}
	connlimit_idle(cl, &c[0]); /* answered: still not a victim */
	for (int i = 0; i < 4; i++)
		assert_false(was_shut(fds[i]));
	assert_int_equal(connlimit_count(cl, SA(a)), 4);
	assert_false(connlimit_can_evict(cl, SA(a)));
	/* A connection from the same address not marked exempt is held to
	 * the limit and finds nobody to take the place of. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, pfds), 0);
	assert_int_equal(connlimit_attach(cl, SA(a), now, &plain, pfds[0], 0, &evicted), CONNLIMIT_EADDRESS);
	assert_int_equal(evicted, 0);
	connlimit_detach(cl, &plain);
	for (int i = 0; i < 4; i++) {
		assert_false(was_shut(fds[i]));
		connlimit_detach(cl, &c[i]);
		close(fds[i][0]);
		close(fds[i][1]);
	}
	assert_int_equal(connlimit_total(cl), 0);
	close(pfds[0]);
	close(pfds[1]);
	connlimit_free(cl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limit_per_address),
		cmocka_unit_test(test_freed_slots_are_reused_without_splitting),
		cmocka_unit_test(test_null_and_other_families_are_admitted),
		cmocka_unit_test(test_ipv6_counts_by_64),
		cmocka_unit_test(test_started_refuses_the_loser_of_a_race),
		cmocka_unit_test(test_reserve_is_kept_for_vouched_addresses),
		cmocka_unit_test(test_vouched_table_keeps_the_newest),
		cmocka_unit_test(test_newcomer_takes_the_oldest_waiting_place),
		cmocka_unit_test(test_exempt_connections_are_never_evicted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
