/* fakesyn: a scripted fake Synapse for unit tests, run in-process on
 * 127.0.0.1 (a free port) with libmicrohttpd. It exists for the faults a real
 * Synapse will not produce on demand (429, 5xx, stalls, broken JSON, odd
 * 403/404 answers): a per-test script decides each answer, and the fake keeps
 * a log of what the client sent so the test can inspect it afterwards.
 *
 * Invariants: the script runs with the fake's mutex held, one request at a
 * time, so state a script reads is changed under fakesyn_lock. Requests are
 * numbered from 1 in arrival order; the first max_seen are logged.
 * Test helper: the fakesyn_seen accessors fail the cmocka test themselves. */
#ifndef FAKESYN_H
#define FAKESYN_H

/* One request as the fake saw it. */
struct fakesyn_request {
	char method[16];
	char url[256];  /* path as MHD decoded it */
	char raw[512];  /* URI before decoding, to check the client's escaping */
	char auth[256]; /* Authorization, "" when absent */
	int has_auth;
	char ctype[64]; /* Content-Type, "" when absent */
	char body[4096];
	int n;         /* 1-based request number since the fake started */
	int in_flight; /* other requests received and not yet answered when it came */
};

/* What the script wants answered; it starts as 200, "application/json",
 * empty body, no Retry-After, no delay. */
struct fakesyn_answer {
	unsigned status;
	char body[1024];
	const char *ctype;
	long retry_after; /* Retry-After header seconds, -1 for none */
	long delay_ms;    /* stall before answering */
};

/* NULL (the default) answers 200 "{}" to everything. */
typedef void (*fakesyn_script_fn)(const struct fakesyn_request *rq, struct fakesyn_answer *a);

struct fakesyn;

/* Starts a fake that logs up to max_seen requests. On success *out is the
 * caller's, to be released with fakesyn_stop. Returns 0 or -1. */
int fakesyn_start(int max_seen, struct fakesyn **out);
/* Stops the daemon (cutting short any stall) and frees f; NULL is a no-op. */
void fakesyn_stop(struct fakesyn *f);

unsigned fakesyn_port(const struct fakesyn *f);
void fakesyn_set_script(struct fakesyn *f, fakesyn_script_fn fn);

/* Serialise with the script, to change what it reads. */
void fakesyn_lock(struct fakesyn *f);
void fakesyn_unlock(struct fakesyn *f);

/* Requests answered and TCP connections accepted so far. */
int fakesyn_requests(struct fakesyn *f);
int fakesyn_connections(struct fakesyn *f);
/* The most requests that were received and not yet answered at one time
 * (a request counts from its arrival until its stall ends): never more
 * than the client had in flight. */
int fakesyn_max_in_flight(struct fakesyn *f);

/* Logged request i (0-based) and the latest one, by value; the test fails
 * unless the request is in the log. */
struct fakesyn_request fakesyn_seen(struct fakesyn *f, int i);
struct fakesyn_request fakesyn_last(struct fakesyn *f);

#endif
