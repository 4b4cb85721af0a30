/* kube: see kube.h. */
#include "kube.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "errtext.h"

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define TOKEN_MAX 16384
#define LINE_MAX_BYTES ((size_t)16 << 20) /* one watch event; a User is a few KiB */
#define WATCH_IDLE_S 120                  /* no byte for this long: the stream is dead */

static const struct errtext kube_errors[] = {
	{KUBE_ECONFIG, "no Kubernetes API server configured, or its files cannot be read"},
	{KUBE_ETRANSPORT, "the Kubernetes API server did not answer"},
	{KUBE_EPROTOCOL, "the Kubernetes API server's answer is not the JSON expected"},
	{KUBE_EGONE, "resourceVersion too old (410 Gone): list again"},
	{KUBE_ESTOPPED, "stopped"},
	{KUBE_EHANDLER, "the watch's handler ended it"},
};

const char *kube_strerror(int code)
{
	return ERRTEXT_LOOKUP(kube_errors, code);
}

struct kube {
	char *url, *token_file, *ca_file;
	long timeout_ms;
	const atomic_int *stop;
	CURL *curl;
	char token[TOKEN_MAX];
	struct stat token_sb; /* the token file as it was when token was read */
};

/* A growing buffer for an answer's bytes. */
struct buf {
	char *data;
	size_t len, cap;
};

static int buf_add(struct buf *b, const char *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *d;

		while (cap < b->len + n + 1)
			cap *= 2;
		if (!(d = realloc(b->data, cap)))
			return -1;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

static int read_file(const char *path, char *out, size_t outlen)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return -1;
	n = fread(out, 1, outlen - 1, f);
	(void)fclose(f); /* read only: nothing to lose */
	out[n] = '\0';
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
		out[--n] = '\0';
	return 0;
}

int kube_in_cluster(char *url, size_t urllen, const char **token_file, const char **ca_file)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");

	if (!host || !host[0] || access(SA_DIR "/token", R_OK) != 0)
		return KUBE_ECONFIG;
	snprintf(url, urllen, "https://%s%s%s:%s", strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
		 port && port[0] ? port : "443");
	*token_file = SA_DIR "/token";
	*ca_file = SA_DIR "/ca.crt";
	return 0;
}

int kube_pod_namespace(char *out, size_t outlen)
{
	return read_file(SA_DIR "/namespace", out, outlen) == 0 && out[0] ? 0 : KUBE_ECONFIG;
}

int kube_new(const struct kube_target *t, long timeout_ms, struct kube **out)
{
	struct kube *k = calloc(1, sizeof(*k));

	*out = NULL;
	if (!k)
		return -ENOMEM;
	k->url = strdup(t->url ? t->url : "");
	k->token_file = t->token_file ? strdup(t->token_file) : NULL;
	k->ca_file = t->ca_file ? strdup(t->ca_file) : NULL;
	k->timeout_ms = timeout_ms;
	k->curl = curl_easy_init();
	if (!k->url || (t->token_file && !k->token_file) || (t->ca_file && !k->ca_file) || !k->curl) {
		kube_free(k);
		return -ENOMEM;
	}
	*out = k;
	return 0;
}

void kube_free(struct kube *k)
{
	if (!k)
		return;
	explicit_bzero(k->token, sizeof(k->token));
	curl_easy_cleanup(k->curl);
	free(k->url);
	free(k->token_file);
	free(k->ca_file);
	free(k);
}

void kube_set_stop(struct kube *k, const atomic_int *flag)
{
	k->stop = flag;
}

/* The token as its file holds it now: read again when the file changed. */
static int refresh_token(struct kube *k)
{
	struct stat sb;

	if (!k->token_file)
		return 0;
	if (stat(k->token_file, &sb) != 0)
		return KUBE_ECONFIG;
	if (k->token[0] && sb.st_ino == k->token_sb.st_ino && sb.st_mtim.tv_sec == k->token_sb.st_mtim.tv_sec &&
	    sb.st_mtim.tv_nsec == k->token_sb.st_mtim.tv_nsec && sb.st_size == k->token_sb.st_size)
		return 0;
	explicit_bzero(k->token, sizeof(k->token));
	if (read_file(k->token_file, k->token, sizeof(k->token)) != 0 || !k->token[0])
		return KUBE_ECONFIG;
	k->token_sb = sb;
	return 0;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	const struct kube *k = arg;

	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	return k->stop && atomic_load(k->stop) ? 1 : 0;
}

/* The handle set up for one call; *hdrs is the caller's to free. */
static int prepare(struct kube *k, const char *method, const char *path, const char *content_type, const char *payload,
		   struct curl_slist **hdrs)
{
	char line[TOKEN_MAX + 32], *url = NULL;
	int rc;

	*hdrs = NULL;
	if ((rc = refresh_token(k)) != 0)
		return rc;
	if (asprintf(&url, "%s%s", k->url, path) < 0)
		return -ENOMEM;
	curl_easy_reset(k->curl);
	curl_easy_setopt(k->curl, CURLOPT_URL, url);
	free(url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(k->curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(k->curl, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(k->curl, CURLOPT_NOSIGNAL, 1L);
	/* The API server's audit log names its clients by this. */
	curl_easy_setopt(k->curl, CURLOPT_USERAGENT, "matrixrmapi/" MATRIXRMAPI_VERSION);
	curl_easy_setopt(k->curl, CURLOPT_CONNECTTIMEOUT_MS, k->timeout_ms);
	if (k->ca_file)
		curl_easy_setopt(k->curl, CURLOPT_CAINFO, k->ca_file);
	curl_easy_setopt(k->curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(k->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(k->curl, CURLOPT_XFERINFODATA, k);
	*hdrs = curl_slist_append(*hdrs, "Accept: application/json");
	if (k->token[0]) {
		snprintf(line, sizeof(line), "Authorization: Bearer %s", k->token);
		*hdrs = curl_slist_append(*hdrs, line);
		explicit_bzero(line, sizeof(line));
	}
	if (payload) {
		snprintf(line, sizeof(line), "Content-Type: %s", content_type ? content_type : "application/json");
		*hdrs = curl_slist_append(*hdrs, line);
		curl_easy_setopt(k->curl, CURLOPT_POSTFIELDS, payload);
		curl_easy_setopt(k->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(payload));
	}
	if (strcmp(method, "GET") != 0)
		curl_easy_setopt(k->curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(k->curl, CURLOPT_HTTPHEADER, *hdrs);
	return *hdrs ? 0 : -ENOMEM;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	return buf_add(arg, p, size * n) == 0 ? size * n : 0;
}

/* The curl result as a code of ours. */
static int transport(const struct kube *k, CURLcode cc)
{
	if (cc == CURLE_OK)
		return 0;
	if (k->stop && atomic_load(k->stop))
		return KUBE_ESTOPPED;
	return KUBE_ETRANSPORT;
}

int kube_request(struct kube *k, const char *method, const char *path, const char *content_type, json_t *body,
		 long *status, json_t **reply)
{
	struct curl_slist *hdrs = NULL;
	struct buf b = {0};
	char *payload = NULL;
	int rc;

	*status = 0;
	if (reply)
		*reply = NULL;
	if (body && !(payload = json_dumps(body, JSON_COMPACT)))
		return -ENOMEM;
	if ((rc = prepare(k, method, path, content_type, payload, &hdrs)) != 0)
		goto out;
	curl_easy_setopt(k->curl, CURLOPT_TIMEOUT_MS, k->timeout_ms);
	curl_easy_setopt(k->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(k->curl, CURLOPT_WRITEDATA, &b);
	if ((rc = transport(k, curl_easy_perform(k->curl))) != 0)
		goto out;
	curl_easy_getinfo(k->curl, CURLINFO_RESPONSE_CODE, status);
	if (reply && b.len)
		*reply = json_loadb(b.data, b.len, 0, NULL);
out:
	curl_slist_free_all(hdrs);
	free(payload);
	free(b.data);
	return rc;
}

/* A watch's stream: whole lines go to the handler as they arrive. */
struct stream {
	struct kube *k;
	kube_event_fn fn;
	void *arg;
	long status;
	struct buf line, refusal; /* the partial line; a non-200 answer's body */
	int result;               /* 0, or why the stream was ended */
};

static int stream_line(struct stream *s, const char *p, size_t n)
{
	json_t *ev = json_loadb(p, n, 0, NULL), *obj;
	const char *type;
	int rc = 0;

	type = json_string_value(json_object_get(ev, "type"));
	obj = json_object_get(ev, "object");
	if (!type || !json_is_object(obj))
		rc = KUBE_EPROTOCOL;
	else if (strcmp(type, "ERROR") == 0)
		rc = json_integer_value(json_object_get(obj, "code")) == 410 ? KUBE_EGONE : KUBE_EPROTOCOL;
	else if (s->fn(s->arg, type, obj) != 0)
		rc = KUBE_EHANDLER;
	json_decref(ev);
	return rc;
}

static size_t on_stream(char *p, size_t size, size_t n, void *arg)
{
	struct stream *s = arg;
	size_t len = size * n, start = 0;

	if (!s->status)
		curl_easy_getinfo(s->k->curl, CURLINFO_RESPONSE_CODE, &s->status);
	if (s->status != 200)
		return buf_add(&s->refusal, p, len) == 0 && s->refusal.len < LINE_MAX_BYTES ? len : 0;
	for (size_t i = 0; i < len; i++) {
		if (p[i] != '\n')
			continue;
		if (buf_add(&s->line, p + start, i - start) != 0) {
			s->result = -ENOMEM;
			return 0;
		}
		if (s->line.len > 0 && (s->result = stream_line(s, s->line.data, s->line.len)) != 0)
			return 0;
		s->line.len = 0;
		start = i + 1;
	}
	if (buf_add(&s->line, p + start, len - start) != 0 || s->line.len > LINE_MAX_BYTES) {
		s->result = s->line.len > LINE_MAX_BYTES ? KUBE_EPROTOCOL : -ENOMEM;
		return 0;
	}
	return len;
}

int kube_watch(struct kube *k, const char *path, kube_event_fn fn, void *arg, long *status)
{
	struct curl_slist *hdrs = NULL;
	struct stream s = {.k = k, .fn = fn, .arg = arg};
	CURLcode cc;
	int rc;

	*status = 0;
	if ((rc = prepare(k, "GET", path, NULL, NULL, &hdrs)) != 0)
		goto out;
	/* The server ends the watch at its timeoutSeconds; a stream that
	 * sends nothing (not even a bookmark) for WATCH_IDLE_S is dead. */
	curl_easy_setopt(k->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(k->curl, CURLOPT_LOW_SPEED_TIME, (long)WATCH_IDLE_S);
	curl_easy_setopt(k->curl, CURLOPT_WRITEFUNCTION, on_stream);
	curl_easy_setopt(k->curl, CURLOPT_WRITEDATA, &s);
	cc = curl_easy_perform(k->curl);
	if (!s.status)
		curl_easy_getinfo(k->curl, CURLINFO_RESPONSE_CODE, &s.status);
	*status = s.status;
	if (s.result != 0) {
		rc = s.result;
	} else if (s.status == 410) {
		rc = KUBE_EGONE;
	} else if (s.status != 0 && s.status != 200) {
		rc = KUBE_EPROTOCOL;
	} else if (cc != CURLE_OK) {
		/* A stream cut after whole events is a normal end: the
		 * caller watches again from the last resourceVersion. */
		rc = transport(k, cc);
		if (rc == KUBE_ETRANSPORT && s.status == 200)
			rc = 0;
	}
out:
	curl_slist_free_all(hdrs);
	free(s.line.data);
	free(s.refusal.data);
	return rc;
}
