/* writer: group commit of callbacks on one thread (see writer.h). The queue
 * is a singly linked list under a mutex held only to link or unlink items;
 * the writer swaps the whole list out, commits it with the mutex released,
 * and answers each item in submission order. A batch is capped so that one
 * very long queue does not delay the first callers behind one huge
 * transaction. */
#include "writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "errtext.h"
#include "log.h"
#include "metrics.h"

#define WRITER_BATCH_MAX 1024

struct writer {
	struct store *st;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct writer_item *head, *tail; /* under lock */
	int stopping;                    /* under lock */
	uint64_t commits, callbacks;     /* under lock */
	/* the batch, owned by the writer thread */
	struct store_callback cbs[WRITER_BATCH_MAX];
	int results[WRITER_BATCH_MAX];
	struct writer_item *items[WRITER_BATCH_MAX];
};

static const struct errtext err_texts[] = {
	{WRITER_ESTOPPED, "the service is stopping"},
	{WRITER_EREFUSED, "the database refused the callback"},
	{WRITER_EOWNED, "refused and journalled: the account is not this Rasenmaeher user's to manage"},
	{WRITER_ECOMMIT, "the database did not commit"},
	{WRITER_ENOMEM, "out of memory"},
	{WRITER_ETHREAD, "cannot start the writer thread"},
};

const char *writer_strerror(int code)
{
	return ERRTEXT_LOOKUP(err_texts, code);
}

/* Takes up to WRITER_BATCH_MAX items off the queue, waiting for one; 0 when
 * stopping with an empty queue. */
static size_t take_batch(struct writer *w)
{
	size_t n = 0;

	pthread_mutex_lock(&w->lock);
	while (w->head == NULL && !w->stopping)
		pthread_cond_wait(&w->wake, &w->lock);
	while (w->head != NULL && n < WRITER_BATCH_MAX) {
		struct writer_item *it = w->head;

		w->head = it->next;
		it->next = NULL;
		w->items[n++] = it;
	}
	if (w->head == NULL)
		w->tail = NULL;
	pthread_mutex_unlock(&w->lock);
	return n;
}

static void *writer_run(void *arg)
{
	struct writer *w = arg;
	size_t n;

	while ((n = take_batch(w)) > 0) {
		/* One line per commit; each callback gets its own line when it is
		 * answered (api_users.c). */
		struct log_fields f = {.action = "writer.commit", .has_duration = 1};
		int64_t started = clock_mono_ns(); /* for the metric and the log line */
		int rc;

		for (size_t i = 0; i < n; i++)
			w->cbs[i] = w->items[i]->cb;
		rc = store_record_callbacks(w->st, w->cbs, n, w->results);
		metrics_store_commit(n, rc == 0, started);
		f.outcome = rc == 0 ? LOG_SUCCESS : LOG_FAILURE;
		f.duration_ns = clock_mono_ns() - started;
		if (rc != 0)
			log_event(LOG_LVL_ERROR, &f, "writer: a transaction of %zu callback%s did not commit", n,
				  n == 1 ? "" : "s");
		else
			log_event(LOG_LVL_DEBUG, &f, "writer: committed %zu callback%s", n, n == 1 ? "" : "s");
		pthread_mutex_lock(&w->lock);
		if (rc == 0) {
			w->commits++;
			w->callbacks += n;
		}
		pthread_mutex_unlock(&w->lock);
		for (size_t i = 0; i < n; i++) {
			struct writer_item *it = w->items[i];

			it->result = rc != 0                          ? WRITER_ECOMMIT
				     : w->results[i] == STORE_REFUSED ? WRITER_EOWNED
				     : w->results[i] != 0             ? WRITER_EREFUSED
								      : 0;
			w->items[i] = NULL;
			it->done(it); /* may free it */
		}
	}
	return NULL;
}

int writer_start(struct store *st, struct writer **out)
{
	struct writer *w = NULL;
	int rc = WRITER_ENOMEM, locks = 0;

	*out = NULL;
	if ((w = calloc(1, sizeof(*w))) == NULL)
		goto out;
	w->st = st;
	if (pthread_mutex_init(&w->lock, NULL) != 0)
		goto out;
	locks = 1;
	if (pthread_cond_init(&w->wake, NULL) != 0)
		goto out;
	locks = 2;
	if (pthread_create(&w->thread, NULL, writer_run, w) != 0) {
		rc = WRITER_ETHREAD;
		goto out;
	}
	*out = w;
	w = NULL;
	rc = 0;
out:
	if (w != NULL) {
		if (locks > 1)
			pthread_cond_destroy(&w->wake);
		if (locks > 0)
			pthread_mutex_destroy(&w->lock);
		free(w);
	}
	return rc;
}

int writer_submit(struct writer *w, struct writer_item *it)
{
	int rc = WRITER_ESTOPPED;

	it->next = NULL;
	pthread_mutex_lock(&w->lock);
	if (!w->stopping) {
		if (w->tail != NULL)
			w->tail->next = it;
		else
			w->head = it;
		w->tail = it;
		pthread_cond_signal(&w->wake);
		rc = 0;
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

/* writer_record's waiter: one per call, on the caller's stack. */
struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done;
};

static void waiter_done(struct writer_item *it)
{
	struct waiter *wt = it->ctx;

	pthread_mutex_lock(&wt->lock);
	wt->done = 1;
	pthread_cond_signal(&wt->cond);
	pthread_mutex_unlock(&wt->lock);
}

int writer_record(struct writer *w, const struct store_callback *cb)
{
	struct waiter wt = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
	struct writer_item it;
	int rc;

	memset(&it, 0, sizeof(it));
	it.cb = *cb;
	it.done = waiter_done;
	it.ctx = &wt;
	if ((rc = writer_submit(w, &it)) != 0)
		goto out;
	pthread_mutex_lock(&wt.lock);
	while (!wt.done)
		pthread_cond_wait(&wt.cond, &wt.lock);
	pthread_mutex_unlock(&wt.lock);
	rc = it.result;
out:
	pthread_cond_destroy(&wt.cond);
	pthread_mutex_destroy(&wt.lock);
	return rc;
}

void writer_stats(struct writer *w, uint64_t *commits, uint64_t *callbacks)
{
	pthread_mutex_lock(&w->lock);
	*commits = w->commits;
	*callbacks = w->callbacks;
	pthread_mutex_unlock(&w->lock);
}

void writer_stop(struct writer *w)
{
	int join;

	if (w == NULL)
		return;
	pthread_mutex_lock(&w->lock);
	join = !w->stopping;
	w->stopping = 1;
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
	if (join)
		pthread_join(w->thread, NULL);
}

void writer_free(struct writer *w)
{
	if (w == NULL)
		return;
	writer_stop(w);
	pthread_cond_destroy(&w->wake);
	pthread_mutex_destroy(&w->lock);
	free(w);
}
