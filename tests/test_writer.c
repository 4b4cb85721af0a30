/* test_writer: the group-commit writer (api/writer.c) on a real SQLite file.
 *  - Callbacks that arrive while the writer waits for the database go into
 *    one transaction: with the write lock held by a second connection, ten
 *    submissions end up in at most two commits, each answered once with 0.
 *  - One refused callback in a batch is answered WRITER_EREFUSED and the
 *    others are committed; a transaction that cannot commit answers every
 *    item WRITER_ECOMMIT and writes nothing.
 *  - Concurrent writer_record() callers from several threads: every call
 *    answered 0 is in the journal, and no more.
 *  - writer_stop() commits what was queued; later submissions are refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"
#include "writer.h"

#define N_ITEMS 10
#define N_THREADS 8
#define PER_THREAD 40

struct fixture {
	char dir[64];
	char db[96];
	struct store *st;
	struct writer *w;
};

struct tracked {
	struct writer_item it;
	char mxid[64], callsign[32];
	atomic_int calls;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_writer.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->db, sizeof(f->db), "%s/db.sqlite", f->dir);
	if (store_open(f->db, &f->st, err, sizeof(err)) != 0)
		fail_msg("store_open: %s", err);
	assert_int_equal(writer_start(f->st, &f->w), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char path[128];

	writer_free(f->w);
	store_close(f->st);
	for (const char *const *s = (const char *const[]){"", "-wal", "-shm", NULL}; *s; s++) {
		snprintf(path, sizeof(path), "%s%s", f->db, *s);
		unlink(path);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

/* A count from another connection, so it sees only what is committed. */
static int count(struct fixture *f, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *q = NULL;
	int n = -1;

	if (sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
		n = sqlite3_column_int(q, 0);
	sqlite3_finalize(q);
	sqlite3_close(db);
	return n;
}

static void tracked_done(struct writer_item *it)
{
	struct tracked *t = it->ctx;

	atomic_fetch_add(&t->calls, 1);
}

static void tracked_init(struct tracked *t, int i, enum event_kind ev)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->mxid, sizeof(t->mxid), "@user%d:example.test", i);
	snprintf(t->callsign, sizeof(t->callsign), "User%d", i);
	t->it.cb = (struct store_callback){ev, "uuid", t->callsign, t->mxid, 1000 + i, NULL};
	t->it.done = tracked_done;
	t->it.ctx = t;
	t->it.result = 1; /* neither 0 nor a code: shows done() set it */
}

static void wait_calls(struct tracked *t, int n)
{
	for (int spin = 0; spin < 10000; spin++) {
		int all = 1;

		for (int i = 0; i < n; i++)
			all &= atomic_load(&t[i].calls) != 0;
		if (all)
			return;
		usleep(1000);
	}
	fail_msg("done() not called for every item within 10 s");
}

static void test_waiting_callbacks_share_one_commit(void **state)
{
	struct fixture *f = *state;
	struct tracked t[N_ITEMS];
	uint64_t commits0, cbs0, commits, cbs;
	sqlite3 *blocker = NULL;

	writer_stats(f->w, &commits0, &cbs0);
	assert_int_equal(sqlite3_open(f->db, &blocker), SQLITE_OK);
	assert_int_equal(sqlite3_exec(blocker, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	for (int i = 0; i < N_ITEMS; i++) {
		tracked_init(&t[i], i, EVENT_CREATED);
		assert_int_equal(writer_submit(f->w, &t[i].it), 0);
	}
	usleep(100 * 1000);
	for (int i = 0; i < N_ITEMS; i++)
		if (atomic_load(&t[i].calls) != 0)
			fail_msg("item %d answered while the database was locked", i);
	assert_int_equal(sqlite3_exec(blocker, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(blocker);
	wait_calls(t, N_ITEMS);
	for (int i = 0; i < N_ITEMS; i++) {
		assert_int_equal(atomic_load(&t[i].calls), 1);
		if (t[i].it.result != 0)
			fail_msg("item %d: have result %d (%s), want 0", i, t[i].it.result,
				 writer_strerror(t[i].it.result));
	}
	writer_stats(f->w, &commits, &cbs);
	if (commits - commits0 > 2 || cbs - cbs0 != N_ITEMS)
		fail_msg("have %llu commits for %llu callbacks, want at most 2 for %d",
			 (unsigned long long)(commits - commits0), (unsigned long long)(cbs - cbs0), N_ITEMS);
	assert_int_equal(count(f, "SELECT count(*) FROM journal"), N_ITEMS);
	assert_int_equal(count(f, "SELECT count(*) FROM users WHERE active = 1"), N_ITEMS);
}

static void test_refused_item_does_not_sink_the_batch(void **state)
{
	struct fixture *f = *state;
	struct tracked t[3];
	sqlite3 *blocker = NULL;

	/* Held lock: all three land in one batch. */
	assert_int_equal(sqlite3_open(f->db, &blocker), SQLITE_OK);
	assert_int_equal(sqlite3_exec(blocker, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	tracked_init(&t[0], 0, EVENT_CREATED);
	tracked_init(&t[1], 1, (enum event_kind)99);
	tracked_init(&t[2], 2, EVENT_PROMOTED);
	for (int i = 0; i < 3; i++)
		assert_int_equal(writer_submit(f->w, &t[i].it), 0);
	usleep(50 * 1000);
	assert_int_equal(sqlite3_exec(blocker, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(blocker);
	wait_calls(t, 3);
	assert_int_equal(t[0].it.result, 0);
	assert_int_equal(t[1].it.result, WRITER_EREFUSED);
	assert_int_equal(t[2].it.result, 0);
	assert_int_equal(count(f, "SELECT count(*) FROM journal"), 2);
	assert_int_equal(count(f, "SELECT count(*) FROM users WHERE matrix_id = '@user1:example.test'"), 0);
}

static void test_failed_commit_answers_every_item(void **state)
{
	struct fixture *f = *state;
	struct tracked t[4];

	assert_int_equal(sqlite3_exec(store_db(f->st), "DROP TABLE journal", NULL, NULL, NULL), SQLITE_OK);
	for (int i = 0; i < 4; i++) {
		tracked_init(&t[i], i, EVENT_CREATED);
		assert_int_equal(writer_submit(f->w, &t[i].it), 0);
	}
	wait_calls(t, 4);
	for (int i = 0; i < 4; i++)
		if (t[i].it.result != WRITER_ECOMMIT)
			fail_msg("item %d: have %d, want WRITER_ECOMMIT", i, t[i].it.result);
	assert_int_equal(count(f, "SELECT count(*) FROM users"), 0);
}

struct hammer {
	struct writer *w;
	int id, ok;
	char names[PER_THREAD][2][48];
};

static void *hammer_run(void *arg)
{
	struct hammer *h = arg;

	for (int i = 0; i < PER_THREAD; i++) {
		struct store_callback cb;

		snprintf(h->names[i][0], sizeof(h->names[i][0]), "@t%di%d:example.test", h->id, i);
		snprintf(h->names[i][1], sizeof(h->names[i][1]), "T%dI%d", h->id, i);
		cb = (struct store_callback){EVENT_CREATED, "uuid", h->names[i][1], h->names[i][0], i, NULL};
		if (writer_record(h->w, &cb) == 0)
			h->ok++;
	}
	return NULL;
}

static void test_concurrent_callers_all_committed(void **state)
{
	struct fixture *f = *state;
	struct hammer *h = calloc(N_THREADS, sizeof(*h));
	pthread_t t[N_THREADS];
	int ok = 0;

	assert_non_null(h);
	for (int i = 0; i < N_THREADS; i++) {
		h[i].w = f->w;
		h[i].id = i;
		assert_int_equal(pthread_create(&t[i], NULL, hammer_run, &h[i]), 0);
	}
	for (int i = 0; i < N_THREADS; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		ok += h[i].ok;
	}
	free(h);
	assert_int_equal(ok, N_THREADS * PER_THREAD);
	assert_int_equal(count(f, "SELECT count(*) FROM journal"), ok);
	assert_int_equal(count(f, "SELECT count(DISTINCT matrix_id) FROM users"), ok);
}

static void test_stop_commits_the_queue_then_refuses(void **state)
{
	struct fixture *f = *state;
	struct tracked t[N_ITEMS], late;
	sqlite3 *blocker = NULL;

	assert_int_equal(sqlite3_open(f->db, &blocker), SQLITE_OK);
	assert_int_equal(sqlite3_exec(blocker, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	for (int i = 0; i < N_ITEMS; i++) {
		tracked_init(&t[i], i, EVENT_CREATED);
		assert_int_equal(writer_submit(f->w, &t[i].it), 0);
	}
	assert_int_equal(sqlite3_exec(blocker, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(blocker);
	writer_stop(f->w);
	for (int i = 0; i < N_ITEMS; i++) {
		assert_int_equal(atomic_load(&t[i].calls), 1);
		assert_int_equal(t[i].it.result, 0);
	}
	assert_int_equal(count(f, "SELECT count(*) FROM journal"), N_ITEMS);
	tracked_init(&late, 99, EVENT_CREATED);
	assert_int_equal(writer_submit(f->w, &late.it), WRITER_ESTOPPED);
	assert_int_equal(atomic_load(&late.calls), 0);
	assert_string_equal(writer_strerror(WRITER_ESTOPPED), "the service is stopping");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_waiting_callbacks_share_one_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_item_does_not_sink_the_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_commit_answers_every_item, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_callers_all_committed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_commits_the_queue_then_refuses, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
