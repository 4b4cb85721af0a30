/* synapse: a small client for Synapse's client-server and admin APIs over
 * libcurl, with JSON bodies through jansson.
 *
 * Every request: bearer token when one is set (never logged), a total timeout,
 * and 429 handling: the reply's retry_after_ms (or Retry-After header, or 1 s)
 * is slept and the request retried, at most SYNAPSE_MAX_429 times, each sleep
 * capped at 30 s. One struct synapse is used by one thread at a time. */
#pragma once
#include <stdatomic.h>
#include <stddef.h>

#include <jansson.h>

#define SYNAPSE_MAX_429 5

/* Negative project codes (beside -errno). */
enum {
	SYNAPSE_E_TRANSPORT = -2001, /* no HTTP answer: refused, reset, DNS, timeout */
	SYNAPSE_E_PROTOCOL = -2002,  /* answered, but not the JSON we need */
};

struct synapse;

struct synapse_resp {
	long status;        /* HTTP status, 0 if none */
	json_t *body;       /* parsed JSON body or NULL (not JSON / empty) */
	char errcode[64];   /* body.errcode or "" */
	char error[256];    /* body.error or "" */
};

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
 * SYNAPSE_E_TRANSPORT otherwise. resp must be released with synapse_resp_free. */
int synapse_request(struct synapse *s, const char *method, const char *path, json_t *body,
		    struct synapse_resp *resp);
void synapse_resp_free(struct synapse_resp *resp);

/* Percent-encodes one path segment (room IDs, aliases, user IDs). Caller frees. */
char *synapse_escape(const char *segment);

/* fmt with each %s replaced by the next argument, percent-encoded as one path
 * segment: synapse_path("/rooms/%s/state", room_id). NULL when an argument is
 * NULL or memory runs out. Caller frees. */
char *synapse_path(const char *fmt, ...);

/* GET /health == 200 -> 0; otherwise SYNAPSE_E_TRANSPORT or SYNAPSE_E_PROTOCOL. */
int synapse_health(struct synapse *s);

/* Shared-secret registration (/_synapse/admin/v1/register): fetches a nonce,
 * signs HMAC-SHA1(secret, nonce\0user\0password\0admin|notadmin) and posts it.
 * On 200, *token_out is the access token (malloc'd) and 0 is returned; on an
 * error answer, errcode_out gets its errcode (e.g. "M_USER_IN_USE") and
 * SYNAPSE_E_PROTOCOL is returned; SYNAPSE_E_TRANSPORT when Synapse did not
 * answer. The secret and password are never logged. */
int synapse_register(struct synapse *s, const char *secret, const char *localpart,
		     const char *password, int admin, char **token_out, char *errcode_out,
		     size_t errcode_len);

/* Text for a code from this module or a negative errno. */
const char *synapse_strerror(int code);
