/* synapse: the HTTP client for Synapse (see synapse.h).
 *
 * One libcurl easy handle per struct synapse, reset before every request so
 * no option leaks from one request into the next, while its connection cache
 * survives the reset and keeps connections to Synapse alive. Invariants: the
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

#include "log.h"
#include "metrics.h"

#define DEFAULT_TIMEOUT_MS 30000L
#define RETRY_DEFAULT_MS 1000L
#define RETRY_CAP_MS 30000L
#define MAX_REPLY ((size_t)64 * 1024 * 1024) /* room state of a big room fits easily */

struct synapse {
	CURL *curl;
	char *base;  /* without trailing '/' */
	char *token; /* NULL when unset; wiped before free */
	long timeout_ms;
	const atomic_int *abort; /* non-zero: cut the request short; may be NULL */
	char errbuf[CURL_ERROR_SIZE];
};

/* Reply bytes and the one header we care about, for one attempt. */
struct reply {
	char *buf;
	size_t len, cap;
	long retry_after_s; /* Retry-After in seconds, -1 if absent */
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
	if (!(s = calloc(1, sizeof(*s))) || !(s->base = strdup(base_url)) ||
	    !(s->curl = curl_easy_init()))
		goto out;
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
	if (s->curl)
		curl_easy_cleanup(s->curl);
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

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	static const char name[] = "Retry-After:";
	struct reply *r = arg;
	size_t n = size * nmemb;
	char num[32];
	size_t i, j = 0;

	if (n > sizeof(name) - 1 && strncasecmp(data, name, sizeof(name) - 1) == 0) {
		for (i = sizeof(name) - 1; i < n && (data[i] == ' ' || data[i] == '\t'); i++)
			;
		/* Only the delay-seconds form; an HTTP date falls back to 1 s. */
		while (i < n && j < sizeof(num) - 1 && isdigit((unsigned char)data[i]))
			num[j++] = data[i++];
		num[j] = '\0';
		if (j > 0 && j < 10)
			r->retry_after_s = strtol(num, NULL, 10);
	}
	return n;
}

static void reply_reset(struct reply *r)
{
	if (r->buf)
		explicit_bzero(r->buf, r->cap);
	free(r->buf);
	r->buf = NULL;
	r->len = r->cap = 0;
	r->retry_after_s = -1;
}

static void copy_field(json_t *body, const char *key, char *dst, size_t dstlen)
{
	const char *v = json_string_value(json_object_get(body, key));

	snprintf(dst, dstlen, "%s", v ? v : "");
}

/* The wait a 429 asks for: body's retry_after_ms, else Retry-After, else 1 s,
 * never more than 30 s (a misbehaving proxy must not stall a pass for hours). */
static long retry_delay_ms(const struct synapse_resp *resp, const struct reply *r)
{
	json_t *v = json_object_get(resp->body, "retry_after_ms");
	long ms = RETRY_DEFAULT_MS;

	if (json_is_integer(v) && json_integer_value(v) >= 0)
		ms = json_integer_value(v) > RETRY_CAP_MS ? RETRY_CAP_MS
							   : (long)json_integer_value(v);
	else if (json_is_real(v) && json_real_value(v) >= 0)
		ms = json_real_value(v) > RETRY_CAP_MS ? RETRY_CAP_MS : (long)json_real_value(v);
	else if (r->retry_after_s >= 0)
		ms = r->retry_after_s > RETRY_CAP_MS / 1000 ? RETRY_CAP_MS
							  : r->retry_after_s * 1000;
	return ms;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* Headers for one request; the Authorization line is wiped by free_headers. */
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

static int on_progress(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	const struct synapse *s = clientp;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return s->abort && atomic_load(s->abort) ? 1 : 0;
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

/* One attempt. Fills resp from the answer; 0 or SYNAPSE_E_TRANSPORT/-errno. */
static int attempt(struct synapse *s, const char *method, const char *url, const char *payload,
		   struct curl_slist *headers, struct reply *r, struct synapse_resp *resp)
{
	CURL *c = s->curl;
	CURLcode cc;
	json_error_t jerr;
	int rc = SYNAPSE_E_TRANSPORT;
	int64_t started = metrics_now();

	curl_easy_reset(c);
	s->errbuf[0] = '\0';
	curl_easy_setopt(c, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, s->timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, s->timeout_ms);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, s->errbuf);
	if (s->abort) {
		curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(c, CURLOPT_XFERINFODATA, s);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	} else {
		if (strcmp(method, "POST") != 0)
			curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
		if (payload || strcmp(method, "DELETE") != 0) {
			/* POST and PUT always carry a body, possibly empty. */
			curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload ? payload : "");
			curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
					 (curl_off_t)(payload ? strlen(payload) : 0));
		}
	}

	if ((cc = curl_easy_perform(c)) != CURLE_OK) {
		if (!s->errbuf[0])
			snprintf(s->errbuf, sizeof(s->errbuf), "%s", curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
	if (r->len > 0)
		resp->body = json_loadb(r->buf, r->len, JSON_DECODE_ANY, &jerr);
	if (json_is_object(resp->body)) {
		copy_field(resp->body, "errcode", resp->errcode, sizeof(resp->errcode));
		copy_field(resp->body, "error", resp->error, sizeof(resp->error));
	}
	rc = 0;
out:
	metrics_synapse_request(method, url + strlen(s->base), resp->status, started);
	return rc;
}

static int is_method(const char *m)
{
	return m && (strcmp(m, "GET") == 0 || strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 ||
		     strcmp(m, "DELETE") == 0);
}

/* quiet: a failure is expected (health polling while Synapse starts), so it
 * is logged at debug level only. */
static int request(struct synapse *s, const char *method, const char *path, json_t *body,
		   struct synapse_resp *resp, int quiet)
{
	struct curl_slist *headers = NULL;
	struct reply r = {.retry_after_s = -1};
	char *url = NULL, *payload = NULL;
	size_t n;
	long delay;
	int rc = -EINVAL;

	memset(resp, 0, sizeof(*resp));
	if (!s || !is_method(method) || !path || path[0] != '/')
		goto out;
	rc = -ENOMEM;
	n = strlen(s->base) + strlen(path) + 1;
	if (!(url = malloc(n)))
		goto out;
	snprintf(url, n, "%s%s", s->base, path);
	if (body && !(payload = json_dumps(body, JSON_COMPACT)))
		goto out;
	if ((rc = build_headers(s, payload != NULL, &headers)) < 0)
		goto out;

	for (int tries = 0;; tries++) {
		reply_reset(&r);
		synapse_resp_free(resp);
		memset(resp, 0, sizeof(*resp));
		if ((rc = attempt(s, method, url, payload, headers, &r, resp)) < 0) {
			if (quiet)
				log_debug("synapse: %s %s: %s", method, path, s->errbuf);
			else
				log_warnx("synapse: %s %s: %s", method, path, s->errbuf);
			goto out;
		}
		log_debug("synapse: %s %s -> %ld", method, path, resp->status);
		if (resp->status != 429 || tries >= SYNAPSE_MAX_429 || (s->abort && atomic_load(s->abort)))
			break;
		delay = retry_delay_ms(resp, &r);
		log_info("synapse: %s %s rate limited, retrying in %ld ms (%d/%d)", method, path,
			 delay, tries + 1, SYNAPSE_MAX_429);
		/* in slices, so that an abort does not wait out a long Retry-After */
		for (long left = delay; left > 0 && !(s->abort && atomic_load(s->abort)); left -= 100)
			sleep_ms(left < 100 ? left : 100);
	}
	rc = 0;
out:
	reply_reset(&r);
	free_headers(headers);
	wipe_free(payload);
	free(url);
	return rc;
}

int synapse_request(struct synapse *s, const char *method, const char *path, json_t *body,
		    struct synapse_resp *resp)
{
	return request(s, method, path, body, resp, 0);
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
	rc = resp.status == 200 ? 0 : SYNAPSE_E_PROTOCOL;
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
static int register_mac(const char *secret, const char *nonce, const char *user,
			const char *password, int admin, char hexmac[41])
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
	rc = SYNAPSE_E_PROTOCOL;
	if (strlen(secret) > INT_MAX ||
	    !HMAC(EVP_sha1(), secret, (int)strlen(secret), msg, n, md, &mdlen) || mdlen != 20)
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

int synapse_register(struct synapse *s, const char *secret, const char *localpart,
		     const char *password, int admin, char **token_out, char *errcode_out,
		     size_t errcode_len)
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
		log_warnx("synapse: register %s: no nonce (HTTP %ld %s)", localpart, resp.status,
			  resp.errcode);
		set_errcode(errcode_out, errcode_len, resp.errcode);
		rc = SYNAPSE_E_PROTOCOL;
		goto out;
	}
	if ((rc = register_mac(secret, nonce, localpart, password, admin, mac)) < 0)
		goto out;
	rc = -ENOMEM;
	if (!(req = json_object()) || json_object_set_new(req, "nonce", json_string(nonce)) ||
	    json_object_set_new(req, "username", json_string(localpart)) ||
	    json_object_set_new(req, "password", json_string(password)) ||
	    json_object_set_new(req, "admin", json_boolean(admin)) ||
	    json_object_set_new(req, "mac", json_string(mac)))
		goto out;
	synapse_resp_free(&resp);
	if ((rc = synapse_request(s, "POST", path, req, &resp)) < 0)
		goto out;
	tok = json_string_value(json_object_get(resp.body, "access_token"));
	if (resp.status != 200 || !tok) {
		log_warnx("synapse: register %s: HTTP %ld %s", localpart, resp.status,
			  resp.errcode);
		set_errcode(errcode_out, errcode_len, resp.errcode);
		rc = SYNAPSE_E_PROTOCOL;
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
	case SYNAPSE_E_TRANSPORT:
		return "no answer from Synapse (refused, reset, timeout or DNS)";
	case SYNAPSE_E_PROTOCOL:
		return "unexpected answer from Synapse";
	default:
		return code < 0 ? strerror(-code) : "unknown error";
	}
}
