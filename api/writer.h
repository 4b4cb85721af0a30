/* writer: the one thread that writes Rasenmaeher's callbacks to the store.
 * Connection threads validate a callback, then hand it over with
 * writer_submit(); the writer takes everything waiting, commits it in one
 * transaction with one fsync (group commit, store_record_callbacks) and only
 * then calls each item's done() with its result.
 *
 * Invariants: done() is called exactly once for every item writer_submit()
 * accepted, on the writer thread, after the transaction holding the item
 * committed (result 0) or failed (result < 0: nothing of it is on disk);
 * no lock is held while the disk is written, so submitting never waits for
 * an fsync. writer_stop() commits what was submitted before it returns. */
#pragma once
#include "errtext.h"
#include <stdint.h>

#include "store.h"

struct writer;

enum writer_err {
	WRITER_ESTOPPED = ERRTEXT_WRITER - 1, /* the writer is stopping; the item was not taken */
	WRITER_EREFUSED = ERRTEXT_WRITER - 2, /* the store refused this callback (the others committed) */
	WRITER_ECOMMIT = ERRTEXT_WRITER - 3,  /* the transaction did not commit; nothing is on disk */
	WRITER_ENOMEM = ERRTEXT_WRITER - 4,   /* out of memory */
	WRITER_ETHREAD = ERRTEXT_WRITER - 5,  /* the writer thread could not be started */
	WRITER_EOWNED = ERRTEXT_WRITER -
			6, /* committed as refused (STORE_REFUSED): the Matrix ID is another user's, or a bot's */
};

struct writer_item {
	struct store_callback cb; /* strings borrowed until done() */
	int result;               /* set before done(): 0 or enum writer_err */
	void (*done)(struct writer_item *it);
	void *ctx;                /* for done() */
	struct writer_item *next; /* internal */
};

/* Starts the writer thread; st is borrowed and used only by that thread from
 * now until writer_stop(). Returns 0 or a negative code. */
int writer_start(struct store *st, struct writer **out);

/* Queues it (it->done must be set). Returns 0: done() will be called; or
 * WRITER_ESTOPPED: it was not taken and done() will not be called. */
int writer_submit(struct writer *w, struct writer_item *it);

/* Submits cb and waits until it is committed: 0 or a negative code. For
 * callers that may block (tests, tools); done and ctx are its own. */
int writer_record(struct writer *w, const struct store_callback *cb);

/* Commits what was submitted, then stops the thread; later submissions are
 * refused (WRITER_ESTOPPED). Idempotent; NULL is a no-op. */
void writer_stop(struct writer *w);
/* writer_stop, then frees. NULL is a no-op. */
void writer_free(struct writer *w);

/* Counters since start: transactions committed and callbacks in them. */
void writer_stats(struct writer *w, uint64_t *commits, uint64_t *callbacks);

/* The text for a code from this module (never NULL). */
const char *writer_strerror(int code);
