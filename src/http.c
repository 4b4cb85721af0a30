/* http: the libmicrohttpd listener (one thread per connection). It finds out
 * who the client is (the verified certificate's CN in native TLS mode, the
 * trusted proxy's DN header otherwise), gathers the body up to API_BODY_MAX
 * and hands the request to api.c. A body declared larger than the cap is
 * refused before it is read; a chunked one is dropped as it arrives. The one
 * store connection is shared by all connection threads under store_lock. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <gnutls/gnutls.h>
#include <microhttpd.h>

#include "api.h"
#include "auth.h"
#include "config.h"
#include "log.h"
#include "respond.h"

#define PEER_CHAIN_MAX 16
/* A chunked body past the cap is drained up to this much, then cut off. */
#define DRAIN_MAX (1024 * 1024)
#define CONNECTION_TIMEOUT 30
#define CONNECTION_LIMIT 256

struct http {
	struct MHD_Daemon *daemon;
	const struct config *cfg;
	struct auth *auth;
	struct http_hooks hooks;
	struct api_env env;
	pthread_mutex_t store_lock;
	int lock_ready;
	int native_tls;
	char *key_pem, *cert_pem, *ca_pem;
	size_t key_len;
};

/* Per request: who is calling and the body so far. */
struct request {
	char *cn;
	char *body;
	size_t len, cap;
	size_t dropped;
	int too_large;
};

/* Reads a whole file, NUL-terminated; *out is malloc'd. */
static int read_file(const char *path, char **out, size_t *outlen)
{
	FILE *f = NULL;
	char *buf = NULL, *nbuf;
	size_t len = 0, cap = 0, n;
	int rc = -1, saved;

	*out = NULL;
	if ((f = fopen(path, "rb")) == NULL)
		goto out;
	do {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 8192;
			if ((nbuf = realloc(buf, cap)) == NULL)
				goto out;
			buf = nbuf;
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
	} while (n > 0);
	if (ferror(f)) {
		errno = EIO;
		goto out;
	}
	buf[len] = '\0';
	*out = buf;
	if (outlen != NULL)
		*outlen = len;
	buf = NULL;
	rc = 0;
out:
	saved = errno;
	if (f != NULL)
		fclose(f);
	if (buf != NULL) {
		explicit_bzero(buf, cap);
		free(buf);
	}
	errno = saved;
	return rc;
}

/* Native mode: the CN of a peer chain that verifies, else NULL. */
static int tls_client_cn(struct http *h, struct MHD_Connection *conn, char **cn)
{
	const union MHD_ConnectionInfo *ci;
	const gnutls_datum_t *peers;
	const unsigned char *der[PEER_CHAIN_MAX];
	size_t der_len[PEER_CHAIN_MAX];
	unsigned int n = 0;

	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (ci == NULL || ci->tls_session == NULL)
		return -1;
	peers = gnutls_certificate_get_peers((gnutls_session_t)ci->tls_session, &n);
	if (peers == NULL || n == 0)
		return -1;
	if (n > PEER_CHAIN_MAX)
		n = PEER_CHAIN_MAX;
	for (unsigned int i = 0; i < n; i++) {
		der[i] = peers[i].data;
		der_len[i] = peers[i].size;
	}
	return auth_verify_chain(h->auth, der, der_len, n, cn);
}

/* Proxy mode: the CN of the DN header, if the peer is a trusted proxy. */
static int proxy_client_cn(struct http *h, struct MHD_Connection *conn, char **cn)
{
	const union MHD_ConnectionInfo *ci;
	const char *dn;

	dn = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, h->cfg->mtls_header_name);
	if (dn == NULL)
		return -1;
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci == NULL || ci->client_addr == NULL)
		return -1;
	return auth_proxy_cn(h->auth, ci->client_addr, dn, cn);
}

/* What the headers say about framing and identity, counted before anything
 * is believed: libmicrohttpd takes the first of repeated headers. */
struct header_scan {
	const char *dn_name;
	int dn_count, dn_bad, content_length, chunked;
};

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
				   const char *value, size_t value_size)
{
	struct header_scan *hs = cls;

	(void)kind;
	(void)key_size;
	if (key == NULL)
		return MHD_YES;
	if (strcasecmp(key, hs->dn_name) == 0) {
		hs->dn_count++;
		/* a NUL would cut the value short before the parser sees it */
		if (value == NULL || strlen(value) != value_size)
			hs->dn_bad = 1;
		for (size_t i = 0; value != NULL && i < value_size; i++)
			if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f)
				hs->dn_bad = 1;
	} else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
		hs->content_length++;
	} else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
		hs->chunked = 1;
	}
	return MHD_YES;
}

/* NULL when the request's headers are unambiguous, else why not (a 400). */
static const char *ambiguous_request(struct http *h, struct MHD_Connection *conn)
{
	struct header_scan hs = {.dn_name = h->cfg->mtls_header_name};

	MHD_get_connection_values_n(conn, MHD_HEADER_KIND, scan_header, &hs);
	if (hs.content_length > 1)
		return "more than one Content-Length";
	if (hs.content_length && hs.chunked)
		return "both Content-Length and Transfer-Encoding";
	if (!h->native_tls && hs.dn_count > 1)
		return "more than one client DN header";
	if (!h->native_tls && hs.dn_bad)
		return "a NUL or control character in the client DN header";
	return NULL;
}

static enum MHD_Result send_response(struct MHD_Connection *conn, const struct api_response *r)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(r->body_len, r->body != NULL ? r->body : (char *)"",
					       MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	if (r->content_type != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
	ret = MHD_queue_response(conn, (unsigned int)r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* 1 when the request declares a body larger than the cap. */
static int declared_too_large(struct MHD_Connection *conn)
{
	const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_LENGTH);
	unsigned long long n;
	char *end;

	if (cl == NULL)
		return 0;
	errno = 0;
	n = strtoull(cl, &end, 10);
	return end != cl && (errno == ERANGE || n > API_BODY_MAX);
}

/* Keeps the body up to the cap; past it, counts and drops. */
static int body_append(struct request *rq, const char *data, size_t n)
{
	char *nbody;
	size_t ncap;

	if (rq->too_large || n > API_BODY_MAX - rq->len) {
		rq->too_large = 1;
		rq->dropped += n;
		free(rq->body);
		rq->body = NULL;
		rq->len = rq->cap = 0;
		return 0;
	}
	if (rq->len + n > rq->cap) {
		ncap = rq->cap ? rq->cap : 1024;
		while (ncap < rq->len + n)
			ncap *= 2;
		if ((nbody = realloc(rq->body, ncap)) == NULL)
			return -1;
		rq->body = nbody;
		rq->cap = ncap;
	}
	memcpy(rq->body + rq->len, data, n);
	rq->len += n;
	return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct http *h = cls;
	struct request *rq = *con_cls;
	struct api_response resp;
	struct api_request req;
	enum MHD_Result ret = MHD_NO;
	const char *why;

	memset(&resp, 0, sizeof(resp));
	if (rq == NULL) {
		/* Headers are in; decide on them what can be decided. */
		if ((rq = calloc(1, sizeof(*rq))) == NULL)
			goto out;
		*con_cls = rq;
		if ((why = ambiguous_request(h, conn)) != NULL) {
			log_warnx("http: %s %s refused: %s", method, url, why);
			respond_detail(&resp, 400, "Bad Request");
			ret = send_response(conn, &resp);
			goto out;
		}
		if (api_route_need(method, url) != AUTH_PUBLIC) {
			if (h->native_tls)
				tls_client_cn(h, conn, &rq->cn);
			else
				proxy_client_cn(h, conn, &rq->cn);
		}
		if (!declared_too_large(conn)) {
			ret = MHD_YES;
			goto out;
		}
		if (api_check(&h->env, method, url, rq->cn, &resp) == 0)
			api_too_large(&resp);
		log_info("http: %s %s -> %d (declared body too large)", method, url, resp.status);
		ret = send_response(conn, &resp);
		goto out;
	}
	if (*upload_data_size != 0) {
		if (body_append(rq, upload_data, *upload_data_size) != 0)
			goto out;
		*upload_data_size = 0;
		ret = rq->dropped > DRAIN_MAX ? MHD_NO : MHD_YES;
		goto out;
	}
	memset(&req, 0, sizeof(req));
	req.method = method;
	req.path = url;
	req.cn = rq->cn;
	req.body = rq->body;
	req.body_len = rq->len;
	req.body_too_large = rq->too_large;
	{
		const char *px = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Rasenmaeher-Proxy");

		req.product_proxy = px != NULL && strcmp(px, "productproxy") == 0;
	}
	api_handle(&h->env, &req, &resp);
	log_debug("http: %s %s -> %d", method, url, resp.status);
	ret = send_response(conn, &resp);
out:
	api_response_clear(&resp);
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct request *rq = *con_cls;

	if (rq == NULL)
		return;
	free(rq->cn);
	free(rq->body);
	free(rq);
	*con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	size_t n;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	log_warnx("http: libmicrohttpd: %s", buf);
}

/* LISTEN_ADDRESS must be a numeric IPv4 or IPv6 address. */
static int listen_addr(const struct config *cfg, struct sockaddr_storage *ss, int *v6)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	*v6 = 0;
	if (inet_pton(AF_INET, cfg->listen_address, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)cfg->listen_port);
		return 0;
	}
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET6, cfg->listen_address, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)cfg->listen_port);
		*v6 = 1;
		return 0;
	}
	return -1;
}

static int load_tls(struct http *h, char *err, size_t errlen)
{
	const char *vars[] = {"TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE"};
	const char *paths[] = {h->cfg->tls_cert_file, h->cfg->tls_key_file,
			       h->cfg->tls_client_ca_file};
	char **dest[] = {&h->cert_pem, &h->key_pem, &h->ca_pem};

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		if (paths[i] == NULL) {
			snprintf(err, errlen, "%s: not set (required with TLS_CERT_FILE)", vars[i]);
			return -1;
		}
		if (read_file(paths[i], dest[i], i == 1 ? &h->key_len : NULL) != 0) {
			snprintf(err, errlen, "%s: cannot read %s: %s", vars[i], paths[i],
				 strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* The priority string must parse; GnuTLS says where it does not. */
static int check_priorities(const char *prio, char *err, size_t errlen)
{
	gnutls_priority_t p;
	const char *bad = NULL;
	int rc = gnutls_priority_init(&p, prio, &bad);

	if (rc != GNUTLS_E_SUCCESS) {
		snprintf(err, errlen, "TLS_PRIORITIES: not a GnuTLS priority string (%s) near \"%.40s\"",
			 gnutls_strerror(rc), bad ? bad : prio);
		return -1;
	}
	gnutls_priority_deinit(p);
	return 0;
}

int http_start(const struct config *cfg, struct store *st, struct auth *a,
	       const struct http_hooks *hooks, struct http **out, char *err, size_t errlen)
{
	struct MHD_OptionItem tls_opts[5];
	struct sockaddr_storage ss;
	struct http *h = NULL;
	unsigned int flags;
	int v6, n = 0, rc = -1;

	*out = NULL;
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		snprintf(err, errlen, "http: out of memory");
		goto out;
	}
	h->cfg = cfg;
	h->auth = a;
	if (hooks != NULL)
		h->hooks = *hooks;
	if (pthread_mutex_init(&h->store_lock, NULL) != 0) {
		snprintf(err, errlen, "http: cannot create the store lock");
		goto out;
	}
	h->lock_ready = 1;
	h->env.cfg = cfg;
	h->env.st = st;
	h->env.store_lock = &h->store_lock;
	h->env.hooks = &h->hooks;
	if (listen_addr(cfg, &ss, &v6) != 0) {
		snprintf(err, errlen, "LISTEN_ADDRESS: %s is not a numeric IPv4 or IPv6 address",
			 cfg->listen_address);
		goto out;
	}
	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
		MHD_USE_ERROR_LOG;
	if (v6)
		flags |= MHD_USE_DUAL_STACK;
	h->native_tls = cfg->tls_cert_file != NULL;
	if (h->native_tls) {
		if (load_tls(h, err, errlen) != 0)
			goto out;
		flags |= MHD_USE_TLS;
		if (check_priorities(cfg->tls_priorities, err, errlen) != 0)
			goto out;
		tls_opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, cfg->tls_priorities};
		tls_opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, h->key_pem};
		tls_opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, h->cert_pem};
		/* Makes the server ask for a client certificate; it does not require
		 * one, and what is sent is verified per request by auth. */
		tls_opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, h->ca_pem};
	}
	tls_opts[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
	h->daemon = MHD_start_daemon(
		flags, (uint16_t)cfg->listen_port, NULL, NULL, on_request, h,
		MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)CONNECTION_TIMEOUT,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned int)CONNECTION_LIMIT,
		MHD_OPTION_ARRAY, tls_opts,
		MHD_OPTION_END);
	if (h->daemon == NULL) {
		snprintf(err, errlen,
			 "LISTEN_ADDRESS/LISTEN_PORT: cannot serve %s on %s port %d "
			 "(address in use, or the TLS files are not a usable key and certificate)",
			 h->native_tls ? "HTTPS" : "HTTP", cfg->listen_address, cfg->listen_port);
		goto out;
	}
	log_info("http: listening on %s port %d (%s)", cfg->listen_address, cfg->listen_port,
		 h->native_tls ? "native mutual TLS" : "plain HTTP, client DN from trusted proxies");
	*out = h;
	h = NULL;
	rc = 0;
out:
	http_stop(h);
	return rc;
}

void http_stop(struct http *h)
{
	if (h == NULL)
		return;
	if (h->daemon != NULL)
		MHD_stop_daemon(h->daemon);
	if (h->lock_ready)
		pthread_mutex_destroy(&h->store_lock);
	if (h->key_pem != NULL)
		explicit_bzero(h->key_pem, h->key_len);
	free(h->key_pem);
	free(h->cert_pem);
	free(h->ca_pem);
	free(h);
}
