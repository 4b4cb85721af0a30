/* deadline: see deadline.h. A doubly-linked list of registered connections
 * under one mutex, swept by one thread every DEADLINE_TICK_MS. A few
 * thousand entries take microseconds to sweep; registering and removing
 * happen once per connection, moving a deadline is one atomic store. */
#include "deadline.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "errtext.h"

#define DEADLINE_FIRED INT64_MIN

struct deadline {
	pthread_mutex_t mu;
	pthread_cond_t wake;
	pthread_t thread;
	int stopping;
	struct deadline_entry *head;
	void (*fired)(void *cls);
	void *cls;
	atomic_uint_fast64_t fired_count;
};

static const struct errtext err_texts[] = {
	{DEADLINE_ENOMEM, "out of memory for the connection deadline watcher"},
	{DEADLINE_ETHREAD, "the connection deadline watcher's thread could not be started"},
	{DEADLINE_EFIRED, "the connection is past its deadline"},
};

const char *deadline_strerror(int code)
{
	return ERRTEXT_LOOKUP(err_texts, code);
}

static void sweep(struct deadline *d, int64_t now)
{
	for (struct deadline_entry *e = d->head; e != NULL; e = e->next) {
		int64_t due = atomic_load(&e->due_ms);

		/* The exchange loses to a concurrent deadline_set: then the
		 * connection moved on and keeps its socket. */
		if (due <= 0 || due > now || !atomic_compare_exchange_strong(&e->due_ms, &due, DEADLINE_FIRED))
			continue;
		shutdown(e->fd, SHUT_RDWR);
		atomic_fetch_add(&d->fired_count, 1);
		if (d->fired != NULL)
			d->fired(d->cls);
	}
}

static void *watch(void *arg)
{
	struct deadline *d = arg;
	struct timespec until;

	pthread_mutex_lock(&d->mu);
	while (!d->stopping) {
		sweep(d, clock_mono_ms());
		until = clock_timespec(clock_mono_ns() + (int64_t)DEADLINE_TICK_MS * 1000000);
		while (!d->stopping && pthread_cond_timedwait(&d->wake, &d->mu, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

int deadline_new(void (*fired)(void *cls), void *cls, struct deadline **out)
{
	struct deadline *d = calloc(1, sizeof(*d));
	pthread_condattr_t ca;
	int rc = DEADLINE_ENOMEM;

	*out = NULL;
	if (d == NULL)
		return rc;
	d->fired = fired;
	d->cls = cls;
	pthread_mutex_init(&d->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->wake, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&d->thread, NULL, watch, d) != 0) {
		rc = DEADLINE_ETHREAD;
		goto fail;
	}
	*out = d;
	return 0;
fail:
	pthread_cond_destroy(&d->wake);
	pthread_mutex_destroy(&d->mu);
	free(d);
	return rc;
}

void deadline_free(struct deadline *d)
{
	if (d == NULL)
		return;
	pthread_mutex_lock(&d->mu);
	d->stopping = 1;
	pthread_cond_signal(&d->wake);
	pthread_mutex_unlock(&d->mu);
	pthread_join(d->thread, NULL);
	pthread_cond_destroy(&d->wake);
	pthread_mutex_destroy(&d->mu);
	free(d);
}

void deadline_add(struct deadline *d, struct deadline_entry *e, int fd, int64_t due_ms)
{
	e->fd = fd;
	atomic_store(&e->due_ms, due_ms);
	pthread_mutex_lock(&d->mu);
	e->prev = NULL;
	e->next = d->head;
	if (d->head != NULL)
		d->head->prev = e;
	d->head = e;
	pthread_mutex_unlock(&d->mu);
}

void deadline_remove(struct deadline *d, struct deadline_entry *e)
{
	pthread_mutex_lock(&d->mu);
	if (e->prev != NULL)
		e->prev->next = e->next;
	else if (d->head == e)
		d->head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	e->prev = e->next = NULL;
	pthread_mutex_unlock(&d->mu);
}

int deadline_set(struct deadline_entry *e, int64_t due_ms)
{
	int64_t was = atomic_load(&e->due_ms);

	do {
		if (was == DEADLINE_FIRED)
			return DEADLINE_EFIRED;
	} while (!atomic_compare_exchange_weak(&e->due_ms, &was, due_ms));
	return 0;
}

uint64_t deadline_fired_count(struct deadline *d)
{
	return d != NULL ? atomic_load(&d->fired_count) : 0;
}
