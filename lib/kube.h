/* kube: a small client of the Kubernetes API over libcurl, with JSON bodies
 * through jansson (no C client library is packaged): one request at a time,
 * and watches streamed event by event.
 *
 * Invariants: the bearer token is read from its file again whenever the file
 * changes (a projected service-account token rotates), is sent only in the
 * Authorization header and never logged; the server's certificate is checked
 * against the CA file given (or the system's). One struct kube is used by
 * one thread at a time (each thread of the source has its own, so that its
 * connection is kept alive between requests). */
#pragma once
#include "errtext.h"
#include <stdatomic.h>
#include <stddef.h>

#include <jansson.h>

/* Negative project codes (beside -errno); kube_strerror says them. */
enum {
	KUBE_ECONFIG = ERRTEXT_KUBE - 1,    /* no API server configured, or its files cannot be read */
	KUBE_ETRANSPORT = ERRTEXT_KUBE - 2, /* no HTTP answer: refused, reset, TLS, timeout */
	KUBE_EPROTOCOL = ERRTEXT_KUBE - 3,  /* answered, but not the JSON asked for */
	KUBE_EGONE = ERRTEXT_KUBE - 4,      /* 410: the resourceVersion is too old (compacted); list again */
	KUBE_ESTOPPED = ERRTEXT_KUBE - 5,   /* the stop flag was raised */
	KUBE_EHANDLER = ERRTEXT_KUBE - 6,   /* the event handler asked to end the watch */
};
const char *kube_strerror(int code);

/* Where the API server is: url "https://host:port" (no trailing slash),
 * token_file and ca_file may be NULL (no token; the system's CAs). */
struct kube_target {
	const char *url, *token_file, *ca_file;
};

/* The in-cluster target (KUBERNETES_SERVICE_HOST/PORT and the service
 * account's files), written into the caller's buffers. Returns 0, or
 * KUBE_ECONFIG when not running in a pod. */
int kube_in_cluster(char *url, size_t urllen, const char **token_file, const char **ca_file);
/* The namespace of this pod from the service account's namespace file, into
 * out. Returns 0 or KUBE_ECONFIG. */
int kube_pod_namespace(char *out, size_t outlen);

struct kube;

/* Copies the target. timeout_ms bounds each plain request. Returns 0 or
 * -ENOMEM. */
int kube_new(const struct kube_target *t, long timeout_ms, struct kube **out);
void kube_free(struct kube *k); /* NULL is a no-op */
/* While *flag is non-zero requests and watches end at once with
 * KUBE_ESTOPPED. The flag must outlive k. */
void kube_set_stop(struct kube *k, const atomic_int *flag);

/* One request. path starts with '/' and carries its query, already escaped.
 * body (borrowed, may be NULL) is sent as content_type (default
 * application/json). Returns 0 when an answer arrived (any status, in
 * *status; *reply is its JSON body or NULL, caller owns), else a negative
 * code. A 410 is returned as 0 with *status 410: callers decide. */
int kube_request(struct kube *k, const char *method, const char *path, const char *content_type, json_t *body,
		 long *status, json_t **reply);

/* Each event of a watch: type ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"),
 * object borrowed for the call. Returning non-zero ends the watch with
 * KUBE_EHANDLER. */
typedef int (*kube_event_fn)(void *arg, const char *type, json_t *object);

/* Watches path (a list path with ?watch=1&resourceVersion=..., built by the
 * caller) until the server ends the stream. Returns 0 when it ended cleanly
 * (a timeout or a cut connection after whole events: watch again from the
 * last resourceVersion), KUBE_EGONE on a 410 in either form (the HTTP
 * status, or an ERROR event with code 410 in a 200 stream), another
 * negative code otherwise (*status says an HTTP refusal). */
int kube_watch(struct kube *k, const char *path, kube_event_fn fn, void *arg, long *status);
