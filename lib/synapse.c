/* synapse: the HTTP client for Synapse (see synapse.h).
 *
 * Every request is a call of a batch on one libcurl multi handle per struct
 * synapse (a single request is a batch of one): each attempt gets a fresh
 * easy handle, so no option leaks from one request into the next, while the
 * multi handle's connection cache keeps connections to Synapse alive across
 * requests and batches. A batch keeps at most max_in_flight transfers
 * running; a call answered 429 leaves its slot to the others while it waits
 * and is started again when its wait is over. Invariants: the
 * bearer token, passwords and MACs never reach the log; every buffer that may
 * hold one of them (token copy, header list, request and reply bytes) is
 * wiped with explicit_bzero before it is freed. */
#include "synapse.h"

#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <pthread.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"

#define DEFAULT_TIMEOUT_MS 30000L
#define RETRY_DEFAULT_MS 1000L
#define RETRY_CAP_MS 30000L
#define MAX_REPLY ((size_t)64 * 1024 * 1024) /* room state of a big room fits easily */

struct synapse {
	CURLM *multi; /* owns the connection cache: keep-alive across requests and batches */
	char *base;   /* without trailing '/' */
	char *token;  /* NULL when unset; wiped before free */
	long timeout_ms;
	const atomic_int *abort; /* non-zero: cut the request short; may be NULL */
};

/* Where an answer's body goes: decided at its first byte, by its status. */
enum reply_mode { REPLY_UNDECIDED, REPLY_BUFFER, REPLY_SINK };

/* Reply bytes and the one header we care about, for one attempt. */
struct reply {
	char *buf;
	size_t len, cap;
	long retry_after_s;              /* Retry-After in seconds, -1 if absent */
	const struct synapse_sink *sink; /* the call's, or NULL: always buffered */
	CURL *easy;                      /* the attempt's handle, for its status */
	enum reply_mode mode;
	int sink_stopped; /* the sink asked for no more bytes */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

/* curl_global_init is not thread-safe on older libcurl; do it exactly once. */
static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void wipe_free(char *p)
{
	if (p) {
		explicit_bzero(p, strlen(p));
		free(p);
	}
}

int synapse_new(const char *base_url, long timeout_ms, struct synapse **out)
{
	struct synapse *s = NULL;
	size_t n;
	int rc = -ENOMEM;

	*out = NULL;
	if (!base_url) {
		rc = -EINVAL;
		goto out;
	}
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		goto out;
	if (!(s = calloc(1, sizeof(*s))) || !(s->base = strdup(base_url)) || !(s->multi = curl_multi_init()))
		goto out;
	/* Room for every connection a full batch opens, so that the next batch
	 * (or single request) finds them alive. */
	curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, (long)SYNAPSE_MAX_IN_FLIGHT);
	n = strlen(s->base);
	while (n > 0 && s->base[n - 1] == '/')
		s->base[--n] = '\0';
	/* A request without a bound could hang a reconcile pass forever. */
	s->timeout_ms = timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS;
	*out = s;
	s = NULL;
	rc = 0;
out:
	synapse_free(s);
	return rc;
}

void synapse_free(struct synapse *s)
{
	if (!s)
		return;
	if (s->multi)
		curl_multi_cleanup(s->multi);
	wipe_free(s->token);
	free(s->base);
	free(s);
}

void synapse_set_token(struct synapse *s, const char *token)
{
	wipe_free(s->token);
	s->token = NULL;
	if (token && !(s->token = strdup(token)))
		log_warnx("synapse: out of memory storing the access token");
}

void synapse_resp_free(struct synapse_resp *resp)
{
	if (!resp)
		return;
	json_decref(resp->body);
	resp->body = NULL;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct reply *r = arg;
	size_t n = size * nmemb;
	char *nb;

	if (r->mode == REPLY_UNDECIDED) {
		long status = 0;

		if (r->sink)
			curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
		r->mode = status == 200 ? REPLY_SINK : REPLY_BUFFER;
	}
	if (r->mode == REPLY_SINK) {
		/* A stopped sink's bytes are read and dropped, so that the answer
		 * still ends as an answer (with its status), not as a transport
		 * failure. */
		if (!r->sink_stopped && r->sink->data(r->sink->arg, data, n) != 0)
			r->sink_stopped = 1;
		return n;
	}
	if (n > MAX_REPLY - r->len)
		return 0; /* makes curl fail the transfer */
	if (r->len + n + 1 > r->cap) {
		size_t cap = r->cap ? r->cap : 4096;

		while (cap < r->len + n + 1)
			cap *= 2;
		/* Grow by hand rather than realloc so the old bytes can be wiped. */
		if (!(nb = malloc(cap)))
			return 0;
		if (r->buf) {
			memcpy(nb, r->buf, r->len);
			explicit_bzero(r->buf, r->len);
			free(r->buf);
		}
		r->buf = nb;
		r->cap = cap;
	}
	memcpy(r->buf + r->len, data, n);
	r->len += n;
	r->buf[r->len] = '\0';
	return n;
}

long synapse_retry_after(const char *line, size_t n)
{
	static const char name[] = "Retry-After:";
	char num[32];
	size_t i, j = 0;

	if (n <= sizeof(name) - 1 || strncasecmp(line, name, sizeof(name) - 1) != 0)
		return -1;
	for (i = sizeof(name) - 1; i < n && (line[i] == ' ' || line[i] == '\t'); i++)
		;
	/* Only the delay-seconds form; an HTTP date falls back to 1 s. */
	while (i < n && j < sizeof(num) - 1 && isdigit((unsigned char)line[i]))
		num[j++] = line[i++];
	num[j] = '\0';
	return j > 0 && j < 10 ? strtol(num, NULL, 10) : -1;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct reply *r = arg;
	size_t n = size * nmemb;
	long v = synapse_retry_after(data, n);

	if (v >= 0)
		r->retry_after_s = v;
	return n;
}

/* The body's bytes, wiped: once parsed they are not needed, and a batch
 * of thousands of calls must not hold thousands of buffers to its end. */
static void reply_drop_bytes(struct reply *r)
{
	if (r->buf)
		explicit_bzero(r->buf, r->cap);
	free(r->buf);
	r->buf = NULL;
	r->len = r->cap = 0;
}

static void reply_reset(struct reply *r)
{
	reply_drop_bytes(r);
	r->retry_after_s = -1;
	r->mode = REPLY_UNDECIDED;
	r->sink_stopped = 0;
}

static void copy_field(json_t *body, const char *key, char *dst, size_t dstlen)
{
	const char *v = json_string_value(json_object_get(body, key));

	snprintf(dst, dstlen, "%s", v ? v : "");
}

/* The wait a 429 asks for: body's retry_after_ms, else Retry-After, else 1 s,
 * never more than 30 s (a misbehaving proxy must not stall a pass for hours). */
static long retry_delay_ms(const struct synapse_resp *resp, long retry_after_s)
{
	json_t *v = json_object_get(resp->body, "retry_after_ms");
	long ms = RETRY_DEFAULT_MS;

	if (json_is_integer(v) && json_integer_value(v) >= 0)
		ms = json_integer_value(v) > RETRY_CAP_MS ? RETRY_CAP_MS : (long)json_integer_value(v);
	else if (json_is_real(v) && json_real_value(v) >= 0)
		ms = json_real_value(v) > RETRY_CAP_MS ? RETRY_CAP_MS : (long)json_real_value(v);
	else if (retry_after_s >= 0)
		ms = retry_after_s > RETRY_CAP_MS / 1000 ? RETRY_CAP_MS : retry_after_s * 1000;
	return ms;
}

long synapse_read_body(const char *buf, size_t len, long retry_after_s, struct synapse_resp *resp)
{
	json_error_t jerr;

	resp->body = len > 0 ? json_loadb(buf, len, JSON_DECODE_ANY, &jerr) : NULL;
	resp->errcode[0] = resp->error[0] = '\0';
	if (json_is_object(resp->body)) {
		copy_field(resp->body, "errcode", resp->errcode, sizeof(resp->errcode));
		copy_field(resp->body, "error", resp->error, sizeof(resp->error));
	}
	return retry_delay_ms(resp, retry_after_s);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* Headers for one batch; the Authorization line is wiped by free_headers. */
static int build_headers(const struct synapse *s, int has_body, struct curl_slist **out)
{
	struct curl_slist *h = NULL, *t;
	char *auth = NULL;
	size_t n;
	int rc = -ENOMEM;

	if (!(t = curl_slist_append(h, "Accept: application/json")))
		goto out;
	h = t;
	/* No "Expect: 100-continue" round trip for bigger bodies. */
	if (!(t = curl_slist_append(h, "Expect:")))
		goto out;
	h = t;
	if (has_body) {
		if (!(t = curl_slist_append(h, "Content-Type: application/json")))
			goto out;
		h = t;
	}
	if (s->token) {
		n = strlen("Authorization: Bearer ") + strlen(s->token) + 1;
		if (!(auth = malloc(n)))
			goto out;
		snprintf(auth, n, "Authorization: Bearer %s", s->token);
		if (!(t = curl_slist_append(h, auth)))
			goto out;
		h = t;
	}
	*out = h;
	h = NULL;
	rc = 0;
out:
	wipe_free(auth);
	curl_slist_free_all(h);
	return rc;
}

static void free_headers(struct curl_slist *h)
{
	for (struct curl_slist *p = h; p; p = p->next)
		explicit_bzero(p->data, strlen(p->data));
	curl_slist_free_all(h);
}

static int aborted(const struct synapse *s)
{
	return s->abort && atomic_load(s->abort);
}

static int on_progress(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	const struct synapse *s = clientp;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return aborted(s) ? 1 : 0;
}

void synapse_set_abort(struct synapse *s, const atomic_int *flag)
{
	s->abort = flag;
}

long synapse_set_timeout(struct synapse *s, long timeout_ms)
{
	long old = s->timeout_ms;

	s->timeout_ms = timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS;
	return old;
}

static int is_method(const char *m)
{
	return m &&
	       (strcmp(m, "GET") == 0 || strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "DELETE") == 0);
}

/* One call's private state while its batch runs. */
enum slot_state { SLOT_QUEUED, SLOT_RUNNING, SLOT_WAITING, SLOT_DONE };

struct slot {
	struct synapse_call *call;
	enum slot_state state;
	CURL *easy; /* while running */
	char *url;
	char *payload; /* request bytes, wiped before free; NULL: no body */
	struct reply r;
	char errbuf[CURL_ERROR_SIZE];
	int tries;        /* 429 answers so far */
	int64_t ready_ns; /* SLOT_WAITING: the 429's wait ends then (monotonic, ns:
			   * a whole-ms clock would end it up to 1 ms early) */
	int64_t started;  /* clock_mono_ns() when the attempt in flight began */
};

/* What every call of a batch shares. */
struct batch {
	struct synapse *s;
	struct slot *slots;
	size_t n;
	struct curl_slist *hdr_plain, *hdr_body; /* without and with Content-Type */
	int quiet;                               /* failures at debug level (health polling) */
	int running;                             /* slots in SLOT_RUNNING */
};

/* URL and payload of one call; rc -EINVAL for a call that cannot be sent. */
static int slot_prepare(struct batch *b, struct slot *sl)
{
	const struct synapse_call *c = sl->call;
	size_t n;

	if (!is_method(c->method) || !c->path || c->path[0] != '/')
		return -EINVAL;
	n = strlen(b->s->base) + strlen(c->path) + 1;
	if (!(sl->url = malloc(n)))
		return -ENOMEM;
	snprintf(sl->url, n, "%s%s", b->s->base, c->path);
	if (c->body && !(sl->payload = json_dumps(c->body, JSON_COMPACT)))
		return -ENOMEM;
	return 0;
}

/* The options of one attempt, on a fresh easy handle. */
static void set_options(struct batch *b, struct slot *sl, CURL *e)
{
	const struct synapse_call *c = sl->call;
	long timeout = c->timeout_ms > 0 ? c->timeout_ms : b->s->timeout_ms;

	curl_easy_setopt(e, CURLOPT_URL, sl->url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, sl->errbuf);
	curl_easy_setopt(e, CURLOPT_PRIVATE, sl);
	if (b->s->abort) {
		curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(e, CURLOPT_XFERINFODATA, b->s);
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, sl->payload ? b->hdr_body : b->hdr_plain);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &sl->r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, &sl->r);
	if (strcmp(c->method, "GET") == 0) {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	} else {
		if (strcmp(c->method, "POST") != 0)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, c->method);
		if (sl->payload || strcmp(c->method, "DELETE") != 0) {
			/* POST and PUT always carry a body, possibly empty. */
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, sl->payload ? sl->payload : "");
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
					 (curl_off_t)(sl->payload ? strlen(sl->payload) : 0));
		}
	}
}

/* Puts the next attempt of sl in flight; -ENOMEM when it cannot. */
static int slot_start(struct batch *b, struct slot *sl)
{
	CURL *e = curl_easy_init();

	if (!e)
		return -ENOMEM;
	reply_reset(&sl->r);
	synapse_resp_free(&sl->call->resp);
	memset(&sl->call->resp, 0, sizeof(sl->call->resp));
	sl->errbuf[0] = '\0';
	sl->r.sink = sl->call->sink;
	sl->r.easy = e;
	set_options(b, sl, e);
	if (curl_multi_add_handle(b->s->multi, e) != CURLM_OK) {
		curl_easy_cleanup(e);
		return -ENOMEM;
	}
	sl->easy = e;
	sl->started = clock_mono_ns();
	sl->state = SLOT_RUNNING;
	b->running++;
	return 0;
}

static void slot_stop_transfer(struct batch *b, struct slot *sl)
{
	if (!sl->easy)
		return;
	curl_multi_remove_handle(b->s->multi, sl->easy);
	curl_easy_cleanup(sl->easy);
	sl->easy = NULL;
	b->running--;
}

static void slot_finish(struct slot *sl, int rc)
{
	sl->call->rc = rc;
	sl->state = SLOT_DONE;
}

/* A transfer of sl ended with cc: 1 when the call is now done, 0 when a 429
 * put it back to wait. */
static int slot_ended(struct batch *b, struct slot *sl, CURLcode cc)
{
	struct synapse_call *c = sl->call;
	struct synapse_resp *resp = &c->resp;
	long delay;

	slot_stop_transfer(b, sl);
	/* Every attempt counts (a 429 too), with status 0 for no answer. */
	metrics_synapse_request(c->method, c->path, cc == CURLE_OK ? resp->status : 0, sl->started);
	if (cc != CURLE_OK) {
		if (!sl->errbuf[0])
			snprintf(sl->errbuf, sizeof(sl->errbuf), "%s", curl_easy_strerror(cc));
		if (b->quiet)
			log_debug("synapse: %s %s: %s", c->method, c->path, sl->errbuf);
		else
			log_warnx("synapse: %s %s: %s", c->method, c->path, sl->errbuf);
		slot_finish(sl, SYNAPSE_ETRANSPORT);
		return 1;
	}
	delay = synapse_read_body(sl->r.buf, sl->r.len, sl->r.retry_after_s, resp);
	reply_drop_bytes(&sl->r);
	log_debug("synapse: %s %s -> %ld", c->method, c->path, resp->status);
	if (resp->status != 429 || sl->tries >= SYNAPSE_MAX_429 || aborted(b->s)) {
		slot_finish(sl, 0);
		return 1;
	}
	sl->tries++;
	log_info("synapse: %s %s rate limited, retrying in %ld ms (%d/%d)", c->method, c->path, delay, sl->tries,
		 SYNAPSE_MAX_429);
	sl->ready_ns = clock_mono_ns() + (int64_t)delay * 1000000;
	sl->state = SLOT_WAITING;
	return 0;
}

/* The next call to put in flight: a 429'd call whose wait is over first
 * (lowest index), then the next queued one; NULL when none may start now. */
static struct slot *next_to_start(struct batch *b, int64_t now, size_t *queued_from)
{
	for (size_t i = 0; i < b->n; i++)
		if (b->slots[i].state == SLOT_WAITING && b->slots[i].ready_ns <= now)
			return &b->slots[i];
	for (size_t i = *queued_from; i < b->n; i++) {
		if (b->slots[i].state == SLOT_QUEUED) {
			*queued_from = i + 1;
			return &b->slots[i];
		}
	}
	*queued_from = b->n;
	return NULL;
}

/* Milliseconds until the earliest 429 wait ends, rounded up so that a sleep
 * of that long never ends before it (at least 0), or -1 when no call is
 * waiting. now is clock_mono_ns(). */
static long earliest_wait(const struct batch *b, int64_t now)
{
	int64_t best = -1;

	for (size_t i = 0; i < b->n; i++) {
		const struct slot *sl = &b->slots[i];

		if (sl->state == SLOT_WAITING && (best < 0 || sl->ready_ns < best))
			best = sl->ready_ns;
	}
	return best < 0 ? -1 : best <= now ? 0 : (long)((best - now + 999999) / 1000000);
}

/* Ends every call not done yet with rc (in flight: cut short). */
static void finish_rest(struct batch *b, int rc)
{
	for (size_t i = 0; i < b->n; i++) {
		struct slot *sl = &b->slots[i];

		if (sl->state == SLOT_DONE)
			continue;
		if (sl->state == SLOT_RUNNING && rc == SYNAPSE_ETRANSPORT && !b->quiet)
			log_warnx("synapse: %s %s: aborted", sl->call->method, sl->call->path);
		slot_stop_transfer(b, sl);
		if (rc != 0) {
			/* a 429 kept from before the wait is not this call's answer */
			synapse_resp_free(&sl->call->resp);
			memset(&sl->call->resp, 0, sizeof(sl->call->resp));
		}
		slot_finish(sl, rc);
	}
}

#define POLL_SLICE_MS 100 /* the abort flag is looked at at least this often */

/* The batch's event loop: at most max_in_flight transfers at once. */
static int batch_run(struct batch *b, int max_in_flight, synapse_done_fn done, void *arg)
{
	size_t queued_from = 0;
	int stopped = 0;

	for (;;) {
		int64_t now = clock_mono_ns();
		struct slot *sl;
		CURLMsg *msg;
		long wait;
		int left, still;

		if (aborted(b->s)) {
			finish_rest(b, SYNAPSE_ETRANSPORT);
			return 0;
		}
		if (stopped) {
			finish_rest(b, SYNAPSE_ECANCELLED);
			return 0;
		}
		while (b->running < max_in_flight && (sl = next_to_start(b, now, &queued_from))) {
			int rc = slot_start(b, sl);

			if (rc < 0) {
				slot_finish(sl, rc);
				if (done && done(sl->call, arg))
					stopped = 1;
			}
		}
		if (stopped)
			continue;
		wait = earliest_wait(b, now);
		if (b->running == 0) {
			if (wait < 0)
				return 0; /* every call is done */
			/* only 429'd calls left: sleep until the first may go */
			sleep_ms(wait < POLL_SLICE_MS ? wait : POLL_SLICE_MS);
			continue;
		}
		if (curl_multi_perform(b->s->multi, &still) != CURLM_OK) {
			finish_rest(b, -ENOMEM);
			return -ENOMEM;
		}
		while (!stopped && (msg = curl_multi_info_read(b->s->multi, &left))) {
			char *priv = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
			sl = (struct slot *)(void *)priv;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &sl->call->resp.status);
			if (slot_ended(b, sl, msg->data.result) && done && done(sl->call, arg))
				stopped = 1; /* the rest are cancelled at the top */
		}
		if (stopped || b->running == 0)
			continue;
		if (wait < 0 || wait > POLL_SLICE_MS)
			wait = POLL_SLICE_MS;
		curl_multi_poll(b->s->multi, NULL, 0, (int)wait, NULL);
	}
}

static int send_calls(struct synapse *s, struct synapse_call *calls, size_t n, int max_in_flight, synapse_done_fn done,
		      void *arg, int quiet)
{
	struct batch b = {.s = s, .n = n, .quiet = quiet};
	int rc = -EINVAL;

	for (size_t i = 0; calls && i < n; i++) {
		memset(&calls[i].resp, 0, sizeof(calls[i].resp));
		calls[i].rc = SYNAPSE_ECANCELLED;
	}
	if (!s || (!calls && n) || max_in_flight < 1)
		goto out;
	if (max_in_flight > SYNAPSE_MAX_IN_FLIGHT)
		max_in_flight = SYNAPSE_MAX_IN_FLIGHT;
	rc = -ENOMEM;
	if (n && !(b.slots = calloc(n, sizeof(*b.slots))))
		goto out;
	for (size_t i = 0; i < n; i++) {
		b.slots[i].call = &calls[i];
		b.slots[i].r.retry_after_s = -1;
	}
	if ((rc = build_headers(s, 0, &b.hdr_plain)) < 0 || (rc = build_headers(s, 1, &b.hdr_body)) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		struct slot *sl = &b.slots[i];

		if ((rc = slot_prepare(&b, sl)) == -ENOMEM)
			goto out;
		if (rc < 0) {
			slot_finish(sl, rc); /* not sendable: done at once */
			if (done && done(sl->call, arg)) {
				finish_rest(&b, SYNAPSE_ECANCELLED);
				rc = 0;
				goto out;
			}
		}
	}
	rc = batch_run(&b, max_in_flight, done, arg);
out:
	if (b.slots) {
		finish_rest(&b, rc < 0 ? rc : SYNAPSE_ECANCELLED);
		for (size_t i = 0; i < n; i++) {
			reply_reset(&b.slots[i].r);
			wipe_free(b.slots[i].payload);
			free(b.slots[i].url);
		}
	}
	free(b.slots);
	free_headers(b.hdr_plain);
	free_headers(b.hdr_body);
	return rc;
}

int synapse_request_batch(struct synapse *s, struct synapse_call *calls, size_t n, int max_in_flight,
			  synapse_done_fn done, void *arg)
{
	return send_calls(s, calls, n, max_in_flight, done, arg, 0);
}

/* One request as a batch of one; quiet: a failure is expected (health
 * polling while Synapse starts), so it is logged at debug level only. */
static int request(struct synapse *s, const char *method, const char *path, json_t *body, struct synapse_resp *resp,
		   int quiet)
{
	struct synapse_call c = {.method = method, .path = path, .body = body};
	int rc = send_calls(s, &c, 1, 1, NULL, NULL, quiet);

	*resp = c.resp;
	return rc < 0 ? rc : c.rc;
}

int synapse_request(struct synapse *s, const char *method, const char *path, json_t *body, struct synapse_resp *resp)
{
	return request(s, method, path, body, resp, 0);
}

int synapse_get_stream(struct synapse *s, const char *path, const struct synapse_sink *sink, struct synapse_resp *resp)
{
	struct synapse_call c = {.method = "GET", .path = path, .sink = sink};
	int rc = sink ? send_calls(s, &c, 1, 1, NULL, NULL, 0) : -EINVAL;

	*resp = c.resp;
	return rc < 0 ? rc : c.rc;
}

char *synapse_escape(const char *segment)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out, *p;

	if (!segment || !(out = malloc(strlen(segment) * 3 + 1)))
		return NULL;
	p = out;
	for (const unsigned char *c = (const unsigned char *)segment; *c; c++) {
		if ((isalnum(*c) && *c < 0x80) || *c == '-' || *c == '.' || *c == '_' || *c == '~') {
			*p++ = (char)*c;
		} else {
			*p++ = '%';
			*p++ = hex[*c >> 4];
			*p++ = hex[*c & 0xf];
		}
	}
	*p = '\0';
	return out;
}

char *synapse_path(const char *fmt, ...)
{
	size_t cap = strlen(fmt) + 1, len = 0;
	char *out = malloc(cap), *tmp;
	va_list ap;

	va_start(ap, fmt);
	for (const char *p = fmt; out && *p; p++) {
		char *seg = NULL;
		const char *add = p;
		size_t n = 1;

		if (p[0] == '%' && p[1] == 's') {
			const char *arg = va_arg(ap, const char *);

			seg = arg ? synapse_escape(arg) : NULL;
			if (!seg) {
				free(out);
				out = NULL;
				break;
			}
			add = seg;
			n = strlen(seg);
			p++;
		}
		if (len + n + 1 > cap) {
			cap = (len + n + 1) * 2;
			if (!(tmp = realloc(out, cap)))
				free(out);
			out = tmp;
		}
		if (out) {
			memcpy(out + len, add, n);
			len += n;
			out[len] = '\0';
		}
		free(seg);
	}
	va_end(ap);
	return out;
}

int synapse_health(struct synapse *s)
{
	struct synapse_resp resp;
	int rc;

	if ((rc = request(s, "GET", "/health", NULL, &resp, 1)) < 0)
		goto out;
	rc = resp.status == 200 ? 0 : SYNAPSE_EPROTOCOL;
out:
	synapse_resp_free(&resp);
	return rc;
}

/* Overwrites a string member in place: jansson frees without wiping. */
static void wipe_json_string(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (json_is_string(v))
		explicit_bzero((char *)json_string_value(v), json_string_length(v));
}

static void set_errcode(char *dst, size_t len, const char *v)
{
	if (dst && len > 0)
		snprintf(dst, len, "%s", v ? v : "");
}

/* Lower-case hex HMAC-SHA1(secret, nonce\0user\0password\0admin|notadmin). */
static int register_mac(const char *secret, const char *nonce, const char *user, const char *password, int admin,
			char hexmac[41])
{
	static const char digits[] = "0123456789abcdef";
	const char *kind = admin ? "admin" : "notadmin";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t ln = strlen(nonce), lu = strlen(user), lp = strlen(password), lk = strlen(kind);
	size_t n = ln + lu + lp + lk + 3;
	unsigned char *msg;
	int rc = -ENOMEM;

	if (!(msg = malloc(n)))
		goto out;
	memcpy(msg, nonce, ln + 1);
	memcpy(msg + ln + 1, user, lu + 1);
	memcpy(msg + ln + lu + 2, password, lp + 1);
	/* NOLINTNEXTLINE(bugprone-not-null-terminated-result): the MAC covers n bytes, the last field has no NUL */
	memcpy(msg + ln + lu + lp + 3, kind, lk);
	rc = SYNAPSE_EPROTOCOL;
	if (strlen(secret) > INT_MAX || !HMAC(EVP_sha1(), secret, (int)strlen(secret), msg, n, md, &mdlen) ||
	    mdlen != 20)
		goto out;
	for (size_t i = 0; i < mdlen; i++) {
		hexmac[2 * i] = digits[md[i] >> 4];
		hexmac[2 * i + 1] = digits[md[i] & 0xf];
	}
	hexmac[40] = '\0';
	rc = 0;
out:
	if (msg)
		explicit_bzero(msg, n);
	free(msg);
	explicit_bzero(md, sizeof(md));
	return rc;
}

int synapse_register(struct synapse *s, const char *secret, const char *localpart, const char *password, int admin,
		     char **token_out, char *errcode_out, size_t errcode_len)
{
	static const char path[] = "/_synapse/admin/v1/register";
	struct synapse_resp resp = {0};
	json_t *req = NULL;
	const char *nonce, *tok;
	char mac[41] = "";
	int rc;

	*token_out = NULL;
	set_errcode(errcode_out, errcode_len, "");
	if (!s || !secret || !localpart || !password) {
		rc = -EINVAL;
		goto out;
	}
	if ((rc = synapse_request(s, "GET", path, NULL, &resp)) < 0)
		goto out;
	nonce = json_string_value(json_object_get(resp.body, "nonce"));
	if (resp.status != 200 || !nonce) {
		log_warnx("synapse: register %s: no nonce (HTTP %ld %s)", localpart, resp.status, resp.errcode);
		set_errcode(errcode_out, errcode_len, resp.errcode);
		rc = SYNAPSE_EPROTOCOL;
		goto out;
	}
	if ((rc = register_mac(secret, nonce, localpart, password, admin, mac)) < 0)
		goto out;
	rc = -ENOMEM;
	if (!(req = json_object()) || json_object_set_new(req, "nonce", json_string(nonce)) ||
	    json_object_set_new(req, "username", json_string(localpart)) ||
	    json_object_set_new(req, "password", json_string(password)) ||
	    json_object_set_new(req, "admin", json_boolean(admin)) || json_object_set_new(req, "mac", json_string(mac)))
		goto out;
	synapse_resp_free(&resp);
	if ((rc = synapse_request(s, "POST", path, req, &resp)) < 0)
		goto out;
	tok = json_string_value(json_object_get(resp.body, "access_token"));
	if (resp.status != 200 || !tok) {
		log_warnx("synapse: register %s: HTTP %ld %s", localpart, resp.status, resp.errcode);
		set_errcode(errcode_out, errcode_len, resp.errcode);
		rc = SYNAPSE_EPROTOCOL;
		goto out;
	}
	if (!(*token_out = strdup(tok))) {
		rc = -ENOMEM;
		goto out;
	}
	log_info("synapse: registered %s%s", localpart, admin ? " (admin)" : "");
	rc = 0;
out:
	wipe_json_string(req, "password");
	wipe_json_string(req, "mac");
	wipe_json_string(resp.body, "access_token");
	explicit_bzero(mac, sizeof(mac));
	json_decref(req);
	synapse_resp_free(&resp);
	return rc;
}

const char *synapse_strerror(int code)
{
	switch (code) {
	case 0:
		return "success";
	case SYNAPSE_ETRANSPORT:
		return "no answer from Synapse (refused, reset, timeout or DNS)";
	case SYNAPSE_EPROTOCOL:
		return "unexpected answer from Synapse";
	case SYNAPSE_ECANCELLED:
		return "not finished: the batch was stopped";
	default:
		return code < 0 ? strerror(-code) : "unknown error";
	}
}
