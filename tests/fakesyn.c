/* fakesyn: the scripted fake Synapse shared by the unit tests (see fakesyn.h).
 * One MHD daemon per fake, a thread per connection; each request's URI, body
 * and headers are collected, numbered and logged under the mutex, the script
 * is asked for the answer under the same mutex, and only then the fake
 * stalls (in 10 ms steps, so stopping never waits out a delay) and answers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "fakesyn.h"

struct fakesyn {
	struct MHD_Daemon *d;
	unsigned port;
	pthread_mutex_t mu;
	fakesyn_script_fn script;
	int requests;
	int connections;
	int in_flight, max_in_flight; /* requests received and not yet answered */
	volatile int stopping;
	int max_seen;
	struct fakesyn_request *log; /* the first max_seen requests */
};

/* Per-request state, created by the URI log callback (which sees the raw URI). */
struct upload {
	int started;
	char raw[512];
	char *buf;
	size_t len;
};

static void script_ok(const struct fakesyn_request *rq, struct fakesyn_answer *a)
{
	(void)rq;
	snprintf(a->body, sizeof(a->body), "{}");
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct upload *u = calloc(1, sizeof(*u));

	(void)cls;
	(void)conn;
	if (u)
		snprintf(u->raw, sizeof(u->raw), "%s", uri);
	return u;
}

/* Collects the body over several calls; on the last one records the request,
 * asks the script and answers. */
static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
			       const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct fakesyn *f = cls;
	struct upload *u = *con_cls;
	struct fakesyn_answer a = {.status = 200, .ctype = "application/json", .retry_after = -1};
	struct fakesyn_request rq = {0};
	struct MHD_Response *resp;
	const char *v;
	enum MHD_Result ret;
	char num[32];

	(void)version;
	if (!u)
		return MHD_NO;
	if (!u->started) {
		u->started = 1;
		return MHD_YES;
	}
	if (*upload_data_size) {
		char *nb = realloc(u->buf, u->len + *upload_data_size + 1);

		if (!nb)
			return MHD_NO;
		memcpy(nb + u->len, upload_data, *upload_data_size);
		u->buf = nb;
		u->len += *upload_data_size;
		u->buf[u->len] = '\0';
		*upload_data_size = 0;
		return MHD_YES;
	}

	snprintf(rq.method, sizeof(rq.method), "%s", method);
	snprintf(rq.url, sizeof(rq.url), "%s", url);
	snprintf(rq.raw, sizeof(rq.raw), "%s", u->raw);
	snprintf(rq.body, sizeof(rq.body), "%s", u->buf ? u->buf : "");
	if ((v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization"))) {
		rq.has_auth = 1;
		snprintf(rq.auth, sizeof(rq.auth), "%s", v);
	}
	if ((v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type")))
		snprintf(rq.ctype, sizeof(rq.ctype), "%s", v);

	pthread_mutex_lock(&f->mu);
	rq.n = ++f->requests;
	rq.in_flight = f->in_flight;
	if (rq.n <= f->max_seen)
		f->log[rq.n - 1] = rq;
	(f->script ? f->script : script_ok)(&rq, &a);
	if (++f->in_flight > f->max_in_flight)
		f->max_in_flight = f->in_flight;
	pthread_mutex_unlock(&f->mu);

	for (long waited = 0; waited < a.delay_ms && !f->stopping; waited += 10)
		usleep(10000);
	pthread_mutex_lock(&f->mu);
	f->in_flight--;
	pthread_mutex_unlock(&f->mu);

	resp = MHD_create_response_from_buffer(strlen(a.body), a.body, MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", a.ctype);
	if (a.retry_after >= 0) {
		snprintf(num, sizeof(num), "%ld", a.retry_after);
		MHD_add_response_header(resp, "Retry-After", num);
	}
	ret = MHD_queue_response(conn, a.status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct upload *u = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (u) {
		free(u->buf);
		free(u);
		*con_cls = NULL;
	}
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct fakesyn *f = cls;

	(void)conn;
	(void)socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		pthread_mutex_lock(&f->mu);
		f->connections++;
		pthread_mutex_unlock(&f->mu);
	}
}

int fakesyn_start(int max_seen, struct fakesyn **out)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
	const union MHD_DaemonInfo *info;
	struct fakesyn *f = NULL;
	int rc = -1;

	*out = NULL;
	if (max_seen < 1 || !(f = calloc(1, sizeof(*f))))
		goto out;
	pthread_mutex_init(&f->mu, NULL);
	f->max_seen = max_seen;
	if (!(f->log = calloc((size_t)max_seen, sizeof(*f->log))))
		goto out;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL, handler,
				f, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_URI_LOG_CALLBACK, on_uri, f,
				MHD_OPTION_NOTIFY_COMPLETED, completed, f, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
				f, MHD_OPTION_END);
	if (!f->d)
		goto out;
	info = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
	f->port = info ? info->port : 0;
	if (!f->port)
		goto out;
	*out = f;
	f = NULL;
	rc = 0;
out:
	fakesyn_stop(f);
	return rc;
}

void fakesyn_stop(struct fakesyn *f)
{
	if (!f)
		return;
	f->stopping = 1;
	if (f->d)
		MHD_stop_daemon(f->d);
	pthread_mutex_destroy(&f->mu);
	free(f->log);
	free(f);
}

unsigned fakesyn_port(const struct fakesyn *f)
{
	return f->port;
}

void fakesyn_set_script(struct fakesyn *f, fakesyn_script_fn fn)
{
	pthread_mutex_lock(&f->mu);
	f->script = fn;
	pthread_mutex_unlock(&f->mu);
}

void fakesyn_lock(struct fakesyn *f)
{
	pthread_mutex_lock(&f->mu);
}

void fakesyn_unlock(struct fakesyn *f)
{
	pthread_mutex_unlock(&f->mu);
}

int fakesyn_requests(struct fakesyn *f)
{
	int n;

	pthread_mutex_lock(&f->mu);
	n = f->requests;
	pthread_mutex_unlock(&f->mu);
	return n;
}

int fakesyn_max_in_flight(struct fakesyn *f)
{
	int n;

	pthread_mutex_lock(&f->mu);
	n = f->max_in_flight;
	pthread_mutex_unlock(&f->mu);
	return n;
}

int fakesyn_connections(struct fakesyn *f)
{
	int n;

	pthread_mutex_lock(&f->mu);
	n = f->connections;
	pthread_mutex_unlock(&f->mu);
	return n;
}

struct fakesyn_request fakesyn_seen(struct fakesyn *f, int i)
{
	struct fakesyn_request s;

	assert_true(i >= 0 && i < f->max_seen);
	pthread_mutex_lock(&f->mu);
	s = f->log[i];
	pthread_mutex_unlock(&f->mu);
	return s;
}

struct fakesyn_request fakesyn_last(struct fakesyn *f)
{
	int n = fakesyn_requests(f);

	assert_true(n > 0 && n <= f->max_seen);
	return fakesyn_seen(f, n - 1);
}
