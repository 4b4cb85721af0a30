/* deadline: a total time limit on each phase of a connection (the TLS
 * handshake and the request's headers, then its body, then the wait for the
 * next request on keep-alive), which libmicrohttpd 0.9.75 lacks: its only
 * timeout is an idle one, so a peer sending a byte now and then keeps its
 * slot for as long as it likes.
 *
 * The listener registers each connection's socket with a deadline; one
 * thread looks once per DEADLINE_TICK_MS and shuts down (shutdown(2), never
 * close) the socket of every connection past its deadline, so that the
 * listener's own poll sees the end and closes it as for any peer that went
 * away. A deadline of 0 means none (a connection suspended while its
 * callback is committed must never be cut).
 *
 * Invariants: an entry is shut down at most once, and only while it is
 * registered; the listener removes an entry before libmicrohttpd closes the
 * descriptor (its "closed" notification comes first), and removal and the
 * sweep take the same lock, so a reused descriptor number is never shut
 * down. Setting a deadline takes no lock. */
#pragma once
#include "errtext.h"
#include <stdatomic.h>
#include <stdint.h>

#define DEADLINE_TICK_MS 250

enum deadline_error {
	DEADLINE_ENOMEM = ERRTEXT_DEADLINE - 1,  /* the watcher could not be made */
	DEADLINE_ETHREAD = ERRTEXT_DEADLINE - 2, /* its thread could not be started */
	DEADLINE_EFIRED = ERRTEXT_DEADLINE - 3,  /* the connection is past its deadline and being shut down */
};

struct deadline;

/* One connection, embedded in the listener's per-connection state. */
struct deadline_entry {
	int fd;
	_Atomic int64_t due_ms; /* clock_mono_ms(); 0: none; DEADLINE_FIRED: shut down */
	struct deadline_entry *prev, *next;
};

/* Starts the watcher. fired (may be NULL) is called, under the watcher's
 * lock, after each shutdown (for a counter or a rate-limited log line). */
int deadline_new(void (*fired)(void *cls), void *cls, struct deadline **out);
void deadline_free(struct deadline *d); /* stops the thread; NULL is a no-op */

/* Registers e (fd, first deadline due_ms) / removes it (before the
 * descriptor is closed). Both take the watcher's lock. */
void deadline_add(struct deadline *d, struct deadline_entry *e, int fd, int64_t due_ms);
void deadline_remove(struct deadline *d, struct deadline_entry *e);

/* Moves e's deadline (0: none). Returns 0, or DEADLINE_EFIRED when e was
 * already shut down: the connection is going away, start nothing on it. */
int deadline_set(struct deadline_entry *e, int64_t due_ms);

/* Connections shut down so far. */
uint64_t deadline_fired_count(struct deadline *d);

const char *deadline_strerror(int code);
