/* synapse: a small client for Synapse's client-server and admin APIs over
 * libcurl, with JSON bodies through jansson.
 *
 * Every request: bearer token when one is set (never logged), a total timeout,
 * and 429 handling: the reply's retry_after_ms (or Retry-After header, or 1 s)
 * is slept and the request retried, at most SYNAPSE_MAX_429 times, each sleep
 * capped at 30 s. One struct synapse is used by one thread at a time.
 * Requests can also go as a batch: several calls in flight at once on kept-
 * alive connections, each with the same guarantees (a 429'd call waits
 * without holding up the others). */
#pragma once
#include "errtext.h"
#include <stdatomic.h>
#include <stddef.h>

#include <jansson.h>

#define SYNAPSE_MAX_429 5
#define SYNAPSE_MAX_IN_FLIGHT 32 /* a batch's bound is capped at this */

/* Negative project codes (beside -errno). */
enum {
	SYNAPSE_ETRANSPORT = ERRTEXT_SYNAPSE - 1, /* no HTTP answer: refused, reset, DNS, timeout */
	SYNAPSE_EPROTOCOL = ERRTEXT_SYNAPSE - 2,  /* answered, but not the JSON we need */
	SYNAPSE_ECANCELLED = ERRTEXT_SYNAPSE - 3, /* a batch call never finished: its batch was stopped by the
				      * done callback (it may have reached Synapse) */
};

struct synapse;

struct synapse_resp {
	long status;      /* HTTP status, 0 if none */
	json_t *body;     /* parsed JSON body or NULL (not JSON / empty) */
	char errcode[64]; /* body.errcode or "" */
	char error[256];  /* body.error or "" */
};

/* How an answer is read, in one place (the client, and the fuzz target
 * tests/fuzz/fuzz_reply.c): a header line's Retry-After in seconds (-1 when
 * the line is not one, or not the delay-seconds form); a body into resp
 * (any JSON or NULL, errcode, error; status untouched), returning the wait a
 * 429 asks for in ms (retry_after_ms, else Retry-After, else 1 s; at most
 * 30 s). The body must be released with synapse_resp_free. */
long synapse_retry_after(const char *line, size_t n);
long synapse_read_body(const char *buf, size_t len, long retry_after_s, struct synapse_resp *resp);

/* base_url like "http://127.0.0.1:8008" (no trailing slash needed).
 * timeout_ms applies to each attempt. Returns 0 or -ENOMEM. */
int synapse_new(const char *base_url, long timeout_ms, struct synapse **out);
void synapse_free(struct synapse *s);
/* While *flag is non-zero, requests stop at once (as a transport error); a
 * 429 wait is not started. NULL: never. The flag must outlive s. */
void synapse_set_abort(struct synapse *s, const atomic_int *flag);
/* The timeout of each following attempt; returns the previous one. */
long synapse_set_timeout(struct synapse *s, long timeout_ms);
/* Copies token (NULL clears). The previous copy is wiped. */
void synapse_set_token(struct synapse *s, const char *token);

/* method: "GET", "POST", "PUT", "DELETE". path starts with '/' and is already
 * escaped (see synapse_escape). body may be NULL (borrowed).
 * Returns 0 when an HTTP answer arrived (any status; see resp->status),
 * SYNAPSE_ETRANSPORT otherwise. resp must be released with synapse_resp_free. */
int synapse_request(struct synapse *s, const char *method, const char *path, json_t *body, struct synapse_resp *resp);
void synapse_resp_free(struct synapse_resp *resp);

/* Where a 200 answer's body goes as it arrives, instead of resp->body, so
 * that a big answer is never held whole. Any other status is read into
 * resp as usual. A call is retried only after a 429, so a sink sees the
 * bytes of at most one answer; whether they were all of it, the caller
 * learns from the call's rc (0: the answer arrived complete). */
struct synapse_sink {
	/* Non-zero: the sink wants no more bytes; the rest of the answer is
	 * read and dropped (the sink remembers why it stopped). */
	int (*data)(void *arg, const char *buf, size_t len);
	void *arg;
};

/* GET path with a 200 answer's body streamed into sink (resp->body stays
 * NULL then). Returns as synapse_request; -EINVAL without a sink. */
int synapse_get_stream(struct synapse *s, const char *path, const struct synapse_sink *sink, struct synapse_resp *resp);

/* One request of a batch: the caller fills the first five fields; the batch
 * sets rc and resp (release resp with synapse_resp_free in every case). */
struct synapse_call {
	const char *method;              /* as for synapse_request */
	const char *path;                /* as for synapse_request (borrowed) */
	json_t *body;                    /* borrowed; may be NULL */
	long timeout_ms;                 /* of each attempt; 0: the client's (synapse_set_timeout) */
	const struct synapse_sink *sink; /* NULL: the body is parsed into resp->body */
	int rc;                          /* 0: an HTTP answer is in resp; SYNAPSE_ETRANSPORT (no answer,
			      * or the abort flag), SYNAPSE_ECANCELLED, -EINVAL (bad method
			      * or path), -ENOMEM */
	struct synapse_resp resp;
};

/* Called in the batch's thread each time a call is done (rc set; not for
 * cancelled calls). Non-zero stops the batch: calls in flight are cut short
 * and they and those not started yet end with SYNAPSE_ECANCELLED. */
typedef int (*synapse_done_fn)(struct synapse_call *call, void *arg);

/* Sends calls[0..n) with at most max_in_flight (1..SYNAPSE_MAX_IN_FLIGHT,
 * more is capped) transfers at once, started in array order; a call answered
 * 429 is started again after its wait, before calls not started yet. The
 * abort flag ends every unfinished call with SYNAPSE_ETRANSPORT at once.
 * done may be NULL. Returns 0 when the batch ran (each call's rc says how
 * it went), -EINVAL (no client, no calls array, max_in_flight < 1) or
 * -ENOMEM (then every unfinished call has that rc). */
int synapse_request_batch(struct synapse *s, struct synapse_call *calls, size_t n, int max_in_flight,
			  synapse_done_fn done, void *arg);

/* Percent-encodes one path segment (room IDs, aliases, user IDs). Caller frees. */
char *synapse_escape(const char *segment);

/* fmt with each %s replaced by the next argument, percent-encoded as one path
 * segment: synapse_path("/rooms/%s/state", room_id). NULL when an argument is
 * NULL or memory runs out. Caller frees. */
char *synapse_path(const char *fmt, ...);

/* GET /health == 200 -> 0; otherwise SYNAPSE_ETRANSPORT or SYNAPSE_EPROTOCOL. */
int synapse_health(struct synapse *s);

/* Shared-secret registration (/_synapse/admin/v1/register): fetches a nonce,
 * signs HMAC-SHA1(secret, nonce\0user\0password\0admin|notadmin) and posts it.
 * On 200, *token_out is the access token (malloc'd) and 0 is returned; on an
 * error answer, errcode_out gets its errcode (e.g. "M_USER_IN_USE") and
 * SYNAPSE_EPROTOCOL is returned; SYNAPSE_ETRANSPORT when Synapse did not
 * answer. The secret and password are never logged. */
int synapse_register(struct synapse *s, const char *secret, const char *localpart, const char *password, int admin,
		     char **token_out, char *errcode_out, size_t errcode_len);

/* Text for a code from this module or a negative errno. */
const char *synapse_strerror(int code);
