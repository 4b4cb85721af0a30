/* test_deadline: the connection deadline watcher shuts down a socket past
 * its deadline (the peer sees the end), exactly once; a connection without a
 * deadline, one whose deadline moved on in time, and one removed before its
 * deadline are never touched; moving a deadline that already fired says so. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "deadline.h"

struct pair {
	int ours, peer;
};

static struct pair make_pair(void)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	return (struct pair){sv[0], sv[1]};
}

/* 1 when the peer saw the end of the stream (read returns 0). */
static int peer_saw_end(struct pair p)
{
	char c;

	return read(p.peer, &c, 1) == 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static int fired_calls;
static void on_fired(void *cls)
{
	(void)cls;
	fired_calls++;
}

static void test_past_deadline_is_shut_down_once(void **state)
{
	struct deadline *d = NULL;
	struct deadline_entry e = {0};
	struct pair p = make_pair();

	(void)state;
	fired_calls = 0;
	assert_int_equal(deadline_new(on_fired, NULL, &d), 0);
	deadline_add(d, &e, p.ours, clock_mono_ms() + 100);
	assert_false(peer_saw_end(p)); /* not yet */
	sleep_ms(100 + 3L * DEADLINE_TICK_MS);
	assert_true(peer_saw_end(p));
	assert_int_equal(deadline_fired_count(d), 1);
	assert_int_equal(fired_calls, 1);
	/* The connection is going: nothing new may start on it. */
	assert_int_equal(deadline_set(&e, clock_mono_ms() + 60000), DEADLINE_EFIRED);
	assert_int_equal(deadline_set(&e, 0), DEADLINE_EFIRED);
	sleep_ms(2L * DEADLINE_TICK_MS);
	assert_int_equal(deadline_fired_count(d), 1);
	deadline_remove(d, &e);
	deadline_free(d);
	close(p.ours);
	close(p.peer);
}

static void test_untouched_without_deadline_moved_or_removed(void **state)
{
	struct deadline *d = NULL;
	struct deadline_entry none = {0}, moved = {0}, removed = {0}, due = {0};
	struct pair a = make_pair(), b = make_pair(), c = make_pair(), x = make_pair();
	int64_t now = clock_mono_ms();

	(void)state;
	assert_int_equal(deadline_new(NULL, NULL, &d), 0);
	deadline_add(d, &none, a.ours, 0);
	deadline_add(d, &moved, b.ours, now + 200);
	deadline_add(d, &removed, c.ours, now + 200);
	deadline_add(d, &due, x.ours, now + 200);
	assert_int_equal(deadline_set(&moved, 0), 0); /* e.g. suspended for the disk */
	deadline_remove(d, &removed);                 /* closed by the peer */
	sleep_ms(200 + 3L * DEADLINE_TICK_MS);
	assert_false(peer_saw_end(a));
	assert_false(peer_saw_end(b));
	assert_false(peer_saw_end(c));
	assert_true(peer_saw_end(x)); /* the one left due, in the same list */
	assert_int_equal(deadline_fired_count(d), 1);
	/* A deadline can be set again and fires then. */
	assert_int_equal(deadline_set(&moved, clock_mono_ms() + 50), 0);
	sleep_ms(50 + 3L * DEADLINE_TICK_MS);
	assert_true(peer_saw_end(b));
	deadline_remove(d, &none);
	deadline_remove(d, &moved);
	deadline_remove(d, &due);
	deadline_free(d);
	for (int fd = 0; fd < 2; fd++) {
		struct pair ps[] = {a, b, c, x};

		for (int i = 0; i < 4; i++)
			close(fd ? ps[i].peer : ps[i].ours);
	}
}

static void test_error_texts(void **state)
{
	(void)state;
	assert_string_equal(deadline_strerror(0), "success");
	assert_string_equal(deadline_strerror(DEADLINE_EFIRED), "the connection is past its deadline");
	assert_string_equal(deadline_strerror(7), "unknown error");
	deadline_free(NULL);
	assert_int_equal(deadline_fired_count(NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_past_deadline_is_shut_down_once),
		cmocka_unit_test(test_untouched_without_deadline_moved_or_removed),
		cmocka_unit_test(test_error_texts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
