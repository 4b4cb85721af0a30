/* http: the libmicrohttpd listener, event-driven: a small pool of threads
 * (one per core) each polling its connections (epoll for plain HTTP, poll
 * for native TLS, see http_start), so that an idle or slow connection costs
 * memory, not a thread. It finds out who the client is (the verified certificate's
 * CN in native TLS mode, the trusted proxy's DN header otherwise), gathers
 * the body up to API_BODY_MAX and hands the request to api.c. A body
 * declared larger than the cap is refused before it is read; a chunked one
 * is dropped as it arrives.
 *
 * A callback that must reach the disk suspends its connection and goes to
 * the writer (api/writer.c); the writer's done() resumes it, and the answer
 * is sent from the pool thread. Invariants: a pool thread never waits for
 * the disk; every suspended connection is resumed exactly once (the writer
 * calls done() once per item, also when it refuses one), and the writer is
 * drained before the daemon stops, so no connection is left suspended. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <gnutls/crypto.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>

#include <sys/resource.h>
#include <unistd.h>

#include "api.h"
#include "api_call.h"
#include "api_users.h"
#include "auth.h"
#include "clock.h"
#include "config.h"
#include "connlimit.h"
#include "deadline.h"
#include "log.h"
#include "metrics.h"
#include "respond.h"
#include "store.h"
#include "writer.h"

#define PEER_CHAIN_MAX 16
/* A chunked body past the cap is drained up to this much, then cut off. */
#define DRAIN_MAX ((size_t)1024 * 1024)
/* Seconds a connection may sit without progress (handshake, headers, body,
 * keep-alive) before it is closed; a suspended one does not time out. */
#define CONNECTION_TIMEOUT 30
/* Total seconds, however the bytes trickle in (api/deadline.c): for the TLS
 * handshake and the request's headers, and then for its body. Rasenmaeher's
 * calls are a few hundred bytes; nginx gives a client 60 s for the headers
 * but reads them itself first. After an answer, keep-alive allows the idle
 * timeout plus the header limit for the next request. */
#define HEADERS_DEADLINE 10
#define BODY_DEADLINE 10
/* And one limit for the whole request, headers and body together: 15 s
 * from the accept (for a keep-alive request: from the end of the previous
 * answer plus the idle timeout), so that a peer sending a byte a second
 * holds a connection for at most this long, not for the sum of the phases. */
#define REQUEST_DEADLINE 15
/* Connections at once; descriptors beyond these are kept for the store, the
 * reconciler's HTTP client and the listening sockets. */
#define CONNECTION_LIMIT 4096
#define FD_RESERVE 128
/* The last 1/16 of the connections (256 of 4096) are kept for addresses
 * that presented a verified client certificate lately (api/connlimit.c), so
 * that peers from many addresses cannot fill the listener either. */
#define CONNECTION_RESERVE_PART 16
/* libmicrohttpd's per-connection pool (headers and the read buffer; bodies
 * are copied out as they arrive): half the default, room for 8 KiB of
 * headers, so that thousands of connections stay within a few MiB. */
#define CONNECTION_MEMORY (16 * 1024)
#define POOL_MAX 16

struct http {
	struct MHD_Daemon *daemon;
	const struct config *cfg;
	struct auth *auth;
	struct api_hooks hooks;
	struct api_env env;
	struct writer *writer;
	struct store *aux;        /* the listener's own connection for the rest (interop grants); never the writer's */
	struct connlimit *limits; /* connections per client address */
	struct deadline *deadlines; /* total time per connection phase */
	atomic_uint cut_logged;
	pthread_mutex_t store_lock;
	int lock_ready;
	int native_tls;
	atomic_uint refused_logged;
	atomic_uint evicted_logged;
	char *key_pem, *cert_pem, *ca_pem;
	size_t key_len;
};

/* Per connection: its deadline, and (native TLS mode) the CN its
 * certificate chain verified to, so that keep-alive requests do not verify
 * the same chain again. The CN is trusted while the auth store it was
 * checked against is current (a CRL reload bumps auth_generation) and for at
 * most CN_CACHE_MS. */
#define CN_CACHE_MS 60000
struct conn_ctx {
	struct deadline_entry dl;
	struct connlimit_conn lc;
	char *cn;          /* NULL: none verified yet, or no usable certificate */
	unsigned long gen; /* auth_generation() at the check */
	int64_t checked_ms;
	int checked;
	int64_t ready_ms; /* clock_mono_ms(): when the next request's window opened */
};

/* Per request: who is calling, the body so far, and the callback waiting
 * for the writer (the connection is suspended while pending is queued). */
struct request {
	char *cn;
	char *body;
	size_t len, cap;
	size_t dropped;
	int too_large;
	struct MHD_Connection *conn;
	struct api_pending *pending;
};

static const struct errtext http_errors[] = {
	{HTTP_ENOMEM, "out of memory starting the listener"},
	{HTTP_ELOCK, "the listener's store lock cannot be made"},
	{HTTP_EADDRESS, "LISTEN_ADDRESS is not a numeric address"},
	{HTTP_ETLSFILE, "a TLS file is not set or cannot be read"},
	{HTTP_ETLSCERT, "the TLS certificate chain or key is not usable"},
	{HTTP_EPRIORITIES, "TLS_PRIORITIES does not parse"},
	{HTTP_ELISTEN, "the listener cannot start (address in use?)"},
};

const char *http_strerror(int code)
{
	return ERRTEXT_LOOKUP(http_errors, code);
}

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
		(void)fclose(f); /* read only: nothing to lose */
	if (buf != NULL) {
		explicit_bzero(buf, cap);
		free(buf);
	}
	errno = saved;
	return rc;
}

/* At accept, before any TLS or HTTP work: an address holding
 * MAX_CONNECTIONS_PER_ADDRESS connections (default 64: Rasenmaeher opens a
 * few at a time) gets no more; the trusted proxies of header mode are exempt. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
	struct http *h = cls;
	int rc;

	(void)addrlen;
	if (auth_trusted_proxy(h->auth, addr) || (rc = connlimit_check(h->limits, addr, clock_mono_coarse_ms())) == 0)
		return MHD_YES;
	/* At its limit, but one of its connections is still in its handshake
	 * or headers: the newcomer takes its place (on_connection). */
	if (rc == CONNLIMIT_EADDRESS && connlimit_can_evict(h->limits, addr))
		return MHD_YES;
	metrics_connection_refused(rc == CONNLIMIT_ERESERVED ? METRICS_REFUSED_RESERVED : METRICS_REFUSED_ADDRESS);
	if (atomic_fetch_add(&h->refused_logged, 1) % 1000 == 0)
		log_warnx("http: refused a connection: %s (logged once per 1000)", connlimit_strerror(rc));
	return MHD_NO;
}

static const struct sockaddr *peer_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

	return ci != NULL ? ci->client_addr : NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct http *h = cls;
	struct conn_ctx *cc = *socket_context;
	const struct sockaddr *peer = peer_of(conn);

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *fd = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		int64_t now = clock_mono_coarse_ms();
		int exempt = auth_trusted_proxy(h->auth, peer);
		int rc, evicted = 0;

		/* Without a context the connection has no deadline, no CN cache
		 * and cannot be evicted, as when out of memory: it is still
		 * counted and has the idle timeout. */
		cc = fd != NULL ? calloc(1, sizeof(*cc)) : NULL;
		/* Every connection counts in the total; the trusted proxies' own
		 * count is never checked, and theirs are never evicted. on_accept's check and this count are
		 * apart: of the listener threads that passed it for the last
		 * slot, those that lost the race end their connection now (its
		 * "closed" releases the count). */
		rc = cc != NULL ? connlimit_attach(h->limits, peer, now, &cc->lc, fd->connect_fd, exempt, &evicted)
				: connlimit_started(h->limits, peer, now);
		if (evicted) {
			metrics_connection_evicted();
			if (atomic_fetch_add(&h->evicted_logged, 1) % 1000 == 0)
				log_warnx(
					"http: an address at MAX_CONNECTIONS_PER_ADDRESS opened another connection; its "
					"oldest connection still in its handshake or headers was closed to make room "
					"(logged once per 1000)");
		}
		if (rc != 0 && !exempt && fd != NULL) {
			metrics_connection_refused(rc == CONNLIMIT_ERESERVED ? METRICS_REFUSED_RESERVED
									     : METRICS_REFUSED_ADDRESS);
			shutdown(fd->connect_fd, SHUT_RDWR);
		}
		if (cc != NULL) {
			cc->ready_ms = clock_mono_ms();
			deadline_add(h->deadlines, &cc->dl, fd->connect_fd,
				     cc->ready_ms + (int64_t)HEADERS_DEADLINE * 1000);
		}
		*socket_context = cc;
		return;
	}
	if (cc != NULL)
		connlimit_detach(h->limits, &cc->lc);
	else
		connlimit_closed(h->limits, peer);
	/* libmicrohttpd says "closed" before it closes the descriptor. */
	if (cc != NULL) {
		deadline_remove(h->deadlines, &cc->dl);
		free(cc->cn);
		free(cc);
	}
	*socket_context = NULL;
}

static struct conn_ctx *conn_ctx_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci != NULL ? ci->socket_context : NULL;
}

/* The connection's deadline entry, or NULL when it has none. */
static struct deadline_entry *deadline_of(struct MHD_Connection *conn)
{
	struct conn_ctx *cc = conn_ctx_of(conn);

	return cc != NULL ? &cc->dl : NULL;
}

/* Moves conn's deadline to seconds from now (0: none); -1 when it has
 * passed already (the socket is being shut down: start nothing on it). */
static int deadline_move(struct MHD_Connection *conn, int seconds)
{
	struct deadline_entry *e = deadline_of(conn);

	if (e == NULL)
		return 0;
	return deadline_set(e, seconds ? clock_mono_ms() + (int64_t)seconds * 1000 : 0) == 0 ? 0 : -1;
}

/* On the deadline watcher's thread. */
static void on_deadline(void *cls)
{
	struct http *h = cls;

	metrics_connection_cut();
	if (atomic_fetch_add(&h->cut_logged, 1) % 1000 == 0)
		log_warnx("http: closed a connection that took longer than %d s for its handshake and headers, "
			  "%d s for its body or %d s for the whole request (logged once per 1000)",
			  HEADERS_DEADLINE, BODY_DEADLINE, REQUEST_DEADLINE);
}

/* Chains verified lately, per pool thread (so without a lock): Rasenmaeher
 * opens a new connection for every call with the same certificate, and
 * verifying it (parsing, chain, CRL signature, in OpenSSL) was a quarter
 * of the CPU of a new TLS connection. An entry is the SHA-256 of the exact
 * chain bytes; it holds while the auth store is the same (auth_generation)
 * and for at most CN_CACHE_MS. Proof of possession of the key is the TLS
 * handshake's and is not cached. Only chains that verified are kept. */
#define CHAIN_CACHE_SLOTS 4
#define CHAIN_CN_MAX 256
struct chain_entry {
	unsigned char digest[32];
	unsigned long gen;
	int64_t until_ms;
	char cn[CHAIN_CN_MAX];
	int used;
};
static _Thread_local struct chain_entry chain_cache[CHAIN_CACHE_SLOTS];
static _Thread_local unsigned int chain_next;

static int chain_digest(const gnutls_datum_t *peers, unsigned int n, unsigned char digest[32])
{
	gnutls_hash_hd_t hd;

	if (gnutls_hash_init(&hd, GNUTLS_DIG_SHA256) < 0)
		return -1;
	for (unsigned int i = 0; i < n; i++) {
		unsigned char len[4] = {(unsigned char)(peers[i].size >> 24), (unsigned char)(peers[i].size >> 16),
					(unsigned char)(peers[i].size >> 8), (unsigned char)peers[i].size};

		gnutls_hash(hd, len, sizeof(len));
		gnutls_hash(hd, peers[i].data, peers[i].size);
	}
	gnutls_hash_deinit(hd, digest);
	return 0;
}

static struct chain_entry *chain_lookup(const unsigned char digest[32], unsigned long gen, int64_t now)
{
	for (int i = 0; i < CHAIN_CACHE_SLOTS; i++) {
		struct chain_entry *e = &chain_cache[i];

		if (e->used && e->gen == gen && now < e->until_ms && memcmp(e->digest, digest, sizeof(e->digest)) == 0)
			return e;
	}
	return NULL;
}

static void chain_remember(const unsigned char digest[32], unsigned long gen, int64_t now, const char *cn)
{
	struct chain_entry *e = &chain_cache[chain_next++ % CHAIN_CACHE_SLOTS];

	if (strlen(cn) >= sizeof(e->cn))
		return;
	memcpy(e->digest, digest, sizeof(e->digest));
	e->gen = gen;
	e->until_ms = now + CN_CACHE_MS;
	snprintf(e->cn, sizeof(e->cn), "%s", cn);
	e->used = 1;
}

/* Native mode: the CN of a peer chain that verifies, else NULL. */
static int tls_verify_peer(struct http *h, struct MHD_Connection *conn, unsigned long gen, int64_t now, char **cn)
{
	unsigned char digest[32];
	struct chain_entry *e;
	int have_digest, rc;
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
	have_digest = chain_digest(peers, n, digest) == 0;
	if (have_digest && (e = chain_lookup(digest, gen, now)) != NULL) {
		*cn = strdup(e->cn);
		return *cn != NULL ? 0 : -1;
	}
	for (unsigned int i = 0; i < n; i++) {
		der[i] = peers[i].data;
		der_len[i] = peers[i].size;
	}
	rc = auth_verify_chain(h->auth, der, der_len, n, cn);
	if (rc == 0 && have_digest)
		chain_remember(digest, gen, now, *cn);
	return rc;
}

/* Native mode, through the connection's cache (see struct conn_ctx). */
static int tls_client_cn(struct http *h, struct MHD_Connection *conn, char **cn)
{
	const union MHD_ConnectionInfo *ci;
	struct conn_ctx *cc = NULL;
	unsigned long gen = auth_generation(h->auth);
	int64_t now = clock_mono_coarse_ms();
	int rc;

	*cn = NULL;
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	if (ci != NULL)
		cc = ci->socket_context;
	if (cc != NULL && cc->checked && cc->gen == gen && now - cc->checked_ms < CN_CACHE_MS) {
		if (cc->cn == NULL)
			return -1;
		*cn = strdup(cc->cn);
		return *cn != NULL ? 0 : -1;
	}
	rc = tls_verify_peer(h, conn, gen, now, cn);
	if (rc == 0) /* this address may use the listener's last slots */
		connlimit_vouch(h->limits, peer_of(conn), now);
	if (cc != NULL) {
		free(cc->cn);
		cc->cn = rc == 0 ? strdup(*cn) : NULL;
		cc->checked = rc != 0 || cc->cn != NULL;
		cc->gen = gen;
		cc->checked_ms = now;
	}
	return rc;
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
	int dn_count, dn_bad, content_length, chunked, nul;
};

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
				   const char *value, size_t value_size)
{
	struct header_scan *hs = cls;

	(void)kind;
	(void)key_size;
	if (key == NULL)
		return MHD_YES;
	/* A NUL would cut every later reading of the value short, so no header
	 * may hold one. libmicrohttpd 1.0 refuses such a request itself or
	 * passes the true size (caught here); 0.9.75 cuts the value at the NUL
	 * before anyone sees it (README, "Headers with a NUL"). */
	if (value != NULL && strlen(value) != value_size)
		hs->nul = 1;
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
	if (hs.nul)
		return "a NUL in a header value";
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

/* Every answer says how a browser may treat it (an outside audit,
 * tests/audit/, asks for them): no type sniffing, no framing, no referrer;
 * on the native TLS listener, HTTPS only from now on. */
static enum MHD_Result send_response(const struct http *h, struct MHD_Connection *conn, const struct api_response *r)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(r->body_len, r->body != NULL ? r->body : (char *)"",
					       MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	if (r->content_type != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "X-Frame-Options", "DENY");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	if (h->native_tls)
		MHD_add_response_header(resp, "Strict-Transport-Security", "max-age=31536000");
	ret = MHD_queue_response(conn, (unsigned int)r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* 1 when the request declares a body larger than the cap. */
static int declared_too_large(struct MHD_Connection *conn)
{
	const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
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

/* On the writer thread: the callback is committed (or failed); let the
 * pool thread answer it. */
static void on_committed(void *ctx)
{
	struct request *rq = ctx;

	MHD_resume_connection(rq->conn);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	struct http *h = cls;
	struct request *rq = *con_cls;
	struct api_response resp;
	struct api_request req;
	enum MHD_Result ret = MHD_NO;
	struct conn_ctx *cc;
	const char *why;

	memset(&resp, 0, sizeof(resp));
	if (rq == NULL) {
		/* Headers are in; decide on them what can be decided. */
		if ((rq = calloc(1, sizeof(*rq))) == NULL)
			goto out;
		*con_cls = rq;
		/* The body's own limit, within the whole request's. Past its
		 * headers, no newcomer of its address takes its place. */
		if ((cc = conn_ctx_of(conn)) != NULL) {
			int64_t now = clock_mono_ms(), due = now + (int64_t)BODY_DEADLINE * 1000;
			int64_t whole = cc->ready_ms + (int64_t)REQUEST_DEADLINE * 1000;

			if (deadline_set(&cc->dl, whole < due ? (whole > now ? whole : now) : due) != 0)
				goto out;
			connlimit_busy(h->limits, &cc->lc);
		}
		if ((why = ambiguous_request(h, conn)) != NULL) {
			log_warnx("http: %s %s refused: %s", method, url, why);
			respond_detail(&resp, 400, "Bad Request");
			ret = send_response(h, conn, &resp);
			goto out;
		}
		if (api_route_need(method, url) != AUTH_PUBLIC) {
			if (h->native_tls)
				tls_client_cn(h, conn, &rq->cn);
			else
				proxy_client_cn(h, conn, &rq->cn);
		}
		/* No right to the route (or no route): answered now, before a
		 * body that could come a byte at a time. */
		if (api_refuse_early(&h->env, method, url, rq->cn, &resp)) {
			log_debug("http: %s %s -> %d (before the body)", method, url, resp.status);
			ret = send_response(h, conn, &resp);
			goto out;
		}
		if (!declared_too_large(conn)) {
			ret = MHD_YES;
			goto out;
		}
		api_refuse_too_large(&h->env, method, url, rq->cn, &resp);
		log_info("http: %s %s -> %d (declared body too large)", method, url, resp.status);
		ret = send_response(h, conn, &resp);
		goto out;
	}
	if (*upload_data_size != 0) {
		if (body_append(rq, upload_data, *upload_data_size) != 0)
			goto out;
		*upload_data_size = 0;
		ret = rq->dropped > DRAIN_MAX ? MHD_NO : MHD_YES;
		goto out;
	}
	if (rq->pending != NULL) {
		/* Resumed by on_committed: the writer is done with it. */
		api_users_pending_answer(&h->env, rq->pending, &resp);
		api_users_pending_free(rq->pending);
		rq->pending = NULL;
		log_debug("http: %s %s -> %d", method, url, resp.status);
		ret = send_response(h, conn, &resp);
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
	api_handle_async(&h->env, &req, &resp, &rq->pending);
	if (rq->pending != NULL) {
		/* Suspended before it is queued, so that the writer's resume
		 * always finds it suspended. */
		rq->conn = conn;
		/* A suspended connection waits for the disk, not the peer. Past
		 * its deadline already: the socket is going, so nothing is queued
		 * and nothing acknowledged. */
		if (deadline_move(conn, 0) != 0) {
			api_users_pending_free(rq->pending);
			rq->pending = NULL;
			goto out;
		}
		MHD_suspend_connection(conn);
		api_users_pending_submit(&h->env, rq->pending, on_committed, rq);
		ret = MHD_YES;
		goto out;
	}
	log_debug("http: %s %s -> %d", method, url, resp.status);
	ret = send_response(h, conn, &resp);
out:
	api_response_clear(&resp);
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct http *h = cls;
	struct request *rq = *con_cls;
	struct conn_ctx *cc = conn_ctx_of(conn);

	(void)toe;
	deadline_move(conn, CONNECTION_TIMEOUT + HEADERS_DEADLINE);
	/* Waiting for its next request: a newcomer may take its place. */
	if (cc != NULL) {
		cc->ready_ms = clock_mono_ms() + (int64_t)CONNECTION_TIMEOUT * 1000;
		connlimit_idle(h->limits, &cc->lc);
	}
	if (rq == NULL)
		return;
	free(rq->cn);
	free(rq->body);
	api_users_pending_free(rq->pending);
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
	const char *paths[] = {h->cfg->tls_cert_file, h->cfg->tls_key_file, h->cfg->tls_client_ca_file};
	char **dest[] = {&h->cert_pem, &h->key_pem, &h->ca_pem};

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		if (paths[i] == NULL) {
			snprintf(err, errlen, "%s: not set (required with TLS_CERT_FILE)", vars[i]);
			return HTTP_ETLSFILE;
		}
		if (read_file(paths[i], dest[i], i == 1 ? &h->key_len : NULL) != 0) {
			snprintf(err, errlen, "%s: cannot read %s: %s", vars[i], paths[i], strerror(errno));
			return HTTP_ETLSFILE;
		}
	}
	return 0;
}

/* The server's certificate chain and key as GnuTLS hands them out in each
 * handshake (MHD_OPTION_HTTPS_CERT_CALLBACK), so that SIGHUP can replace
 * them without stopping the listener. GnuTLS's callback carries no user
 * pointer, hence the one module-level pointer (one listener per process).
 * A replaced set stays allocated until http_stop: a handshake may be using
 * it. */
#define SERVER_CHAIN_MAX 8
struct tls_creds {
	gnutls_pcert_st pcert[SERVER_CHAIN_MAX];
	unsigned int n;
	gnutls_privkey_t key;
	struct tls_creds *older;
};
static _Atomic(struct tls_creds *) tls_current;

static int on_cert(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
		   const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length, gnutls_pcert_st **pcert,
		   unsigned int *pcert_length, gnutls_privkey_t *pkey)
{
	struct tls_creds *c = atomic_load(&tls_current);

	(void)session;
	(void)req_ca_dn;
	(void)nreqs;
	(void)pk_algos;
	(void)pk_algos_length;
	if (c == NULL)
		return -1;
	*pcert = c->pcert;
	*pcert_length = c->n;
	*pkey = c->key;
	return 0;
}

static void creds_free(struct tls_creds *c)
{
	while (c != NULL) {
		struct tls_creds *older = c->older;

		for (unsigned int i = 0; i < c->n; i++)
			gnutls_pcert_deinit(&c->pcert[i]);
		if (c->key != NULL)
			gnutls_privkey_deinit(c->key);
		free(c);
		c = older;
	}
}

/* A chain and key from PEM; the key must be the first certificate's. */
static int creds_load(const char *cert_pem, const char *key_pem, size_t key_len, struct tls_creds **out, char *err,
		      size_t errlen)
{
	struct tls_creds *c = calloc(1, sizeof(*c));
	gnutls_datum_t cd = {(unsigned char *)cert_pem, cert_pem ? (unsigned int)strlen(cert_pem) : 0};
	gnutls_datum_t kd = {(unsigned char *)key_pem, (unsigned int)key_len};
	int rc = HTTP_ENOMEM;

	*out = NULL;
	if (c == NULL) {
		snprintf(err, errlen, "http: out of memory");
		goto out;
	}
	c->n = SERVER_CHAIN_MAX;
	if (gnutls_pcert_list_import_x509_raw(c->pcert, &c->n, &cd, GNUTLS_X509_FMT_PEM, 0) < 0 || c->n == 0) {
		c->n = 0;
		snprintf(err, errlen, "TLS_CERT_FILE: not a PEM certificate chain (at most %d certificates)",
			 SERVER_CHAIN_MAX);
		rc = HTTP_ETLSCERT;
		goto out;
	}
	if (gnutls_privkey_init(&c->key) < 0 ||
	    gnutls_privkey_import_x509_raw(c->key, &kd, GNUTLS_X509_FMT_PEM, NULL, 0) < 0) {
		snprintf(err, errlen, "TLS_KEY_FILE: not a usable PEM private key");
		rc = HTTP_ETLSCERT;
		goto out;
	}
	*out = c;
	c = NULL;
	rc = 0;
out:
	creds_free(c);
	return rc;
}

int http_reload_tls(struct http *h, char *err, size_t errlen)
{
	struct tls_creds *c = NULL;
	char *cert = NULL, *key = NULL;
	size_t key_len = 0;
	int rc;

	if (h == NULL || !h->native_tls)
		return 0;
	if (read_file(h->cfg->tls_cert_file, &cert, NULL) != 0 ||
	    read_file(h->cfg->tls_key_file, &key, &key_len) != 0) {
		snprintf(err, errlen, "TLS_CERT_FILE/TLS_KEY_FILE: cannot read: %s", strerror(errno));
		rc = HTTP_ETLSFILE;
		goto out;
	}
	if ((rc = creds_load(cert, key, key_len, &c, err, errlen)) != 0)
		goto out;
	c->older = atomic_exchange(&tls_current, c);
	rc = 0;
out:
	if (key != NULL)
		explicit_bzero(key, key_len);
	free(key);
	free(cert);
	return rc;
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
		return HTTP_EPRIORITIES;
	}
	gnutls_priority_deinit(p);
	return 0;
}

/* Raises the descriptor limit towards CONNECTION_LIMIT + FD_RESERVE and
 * returns how many connections fit under what the system allows. */
static unsigned int connection_limit(void)
{
	struct rlimit rl;
	rlim_t want = CONNECTION_LIMIT + FD_RESERVE;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 256;
	if (rl.rlim_cur < want) {
		rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && getrlimit(RLIMIT_NOFILE, &rl) != 0)
			return 256;
	}
	if (rl.rlim_cur >= want)
		return CONNECTION_LIMIT;
	if (rl.rlim_cur <= 2 * (rlim_t)FD_RESERVE)
		return (unsigned int)(rl.rlim_cur / 2);
	log_warnx("http: the descriptor limit (RLIMIT_NOFILE %llu) allows %llu connections, not %d",
		  (unsigned long long)rl.rlim_cur, (unsigned long long)(rl.rlim_cur - FD_RESERVE), CONNECTION_LIMIT);
	return (unsigned int)(rl.rlim_cur - FD_RESERVE);
}

/* One pool thread per core, at least one. */
static unsigned int pool_size(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > POOL_MAX ? POOL_MAX : (unsigned int)n;
}

int http_start(const struct config *cfg, struct store *st, struct auth *a, const struct api_hooks *hooks,
	       struct http **out, char *err, size_t errlen)
{
	struct MHD_OptionItem tls_opts[5];
	struct tls_creds *creds = NULL;
	struct sockaddr_storage ss;
	struct http *h = NULL;
	unsigned int flags, limit, threads;
	int v6, n = 0, rc = HTTP_ENOMEM;

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
		rc = HTTP_ELOCK;
		goto out;
	}
	h->lock_ready = 1;
	h->env.cfg = cfg;
	h->env.st = st;
	h->env.store_lock = &h->store_lock;
	h->env.hooks = &h->hooks;
	if ((rc = writer_start(st, &h->writer)) != 0) {
		snprintf(err, errlen, "http: %s", writer_strerror(rc));
		goto out;
	}
	h->env.writer = h->writer;
	/* The writer's connection is the writer thread's alone: a write from a
	 * connection thread on it would land inside the writer's transaction. */
	if ((rc = store_open_serving(cfg->database_path, &h->aux, err, errlen)) < 0)
		goto out;
	h->env.st = h->aux;
	if (listen_addr(cfg, &ss, &v6) != 0) {
		snprintf(err, errlen, "LISTEN_ADDRESS: %s is not a numeric IPv4 or IPv6 address", cfg->listen_address);
		rc = HTTP_EADDRESS;
		goto out;
	}
	h->native_tls = cfg->tls_cert_file != NULL;
	/* Event-driven either way: a pool of threads, each watching its
	 * connections. Measured here (bench/results): epoll serves plain HTTP
	 * best, but with TLS libmicrohttpd 0.9.75's epoll loop costs about
	 * twice the CPU per connection of its poll loop (a new TLS connection
	 * per callback: 4.5 ms against 2.3 ms), so native TLS uses poll. */
	flags = (h->native_tls ? MHD_USE_POLL_INTERNAL_THREAD : MHD_USE_EPOLL_INTERNAL_THREAD) |
		MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	limit = connection_limit();
	threads = pool_size();
	if (v6)
		flags |= MHD_USE_DUAL_STACK;
	if (h->native_tls) {
		if ((rc = load_tls(h, err, errlen)) != 0)
			goto out;
		flags |= MHD_USE_TLS;
		if ((rc = check_priorities(cfg->tls_priorities, err, errlen)) != 0)
			goto out;
		tls_opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, cfg->tls_priorities};
		if ((rc = creds_load(h->cert_pem, h->key_pem, h->key_len, &creds, err, errlen)) != 0)
			goto out;
		creds_free(atomic_exchange(&tls_current, creds));
		/* The chain and key come from on_cert in each handshake, so that
		 * http_reload_tls can replace them. */
		{
			/* the option array holds pointers; POSIX lets a function
			 * pointer travel in one */
			gnutls_certificate_retrieve_function2 *fn = on_cert;
			void *ptr;

			memcpy(&ptr, &fn, sizeof(ptr));
			tls_opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0, ptr};
		}
		/* Makes the server ask for a client certificate; it does not require
		 * one, and what is sent is verified per request by auth. */
		tls_opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, h->ca_pem};
	}
	tls_opts[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
	if ((rc = connlimit_new((unsigned int)cfg->max_connections_per_address, &h->limits)) != 0) {
		snprintf(err, errlen, "http: %s", connlimit_strerror(rc));
		goto out;
	}
	connlimit_set_reserve(h->limits, limit, limit / CONNECTION_RESERVE_PART);
	if ((rc = deadline_new(on_deadline, h, &h->deadlines)) != 0) {
		snprintf(err, errlen, "http: %s", deadline_strerror(rc));
		goto out;
	}
	h->daemon = MHD_start_daemon(flags, (uint16_t)cfg->listen_port, on_accept, h, on_request, h,
				     MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h, MHD_OPTION_SOCK_ADDR,
				     (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
				     MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_CONNECTION_TIMEOUT,
				     (unsigned int)CONNECTION_TIMEOUT, MHD_OPTION_CONNECTION_LIMIT, limit,
				     MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
				     (size_t)CONNECTION_MEMORY, MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
	if (h->daemon == NULL) {
		snprintf(err, errlen,
			 "LISTEN_ADDRESS/LISTEN_PORT: cannot serve %s on %s port %d "
			 "(address in use, or the TLS files are not a usable key and certificate)",
			 h->native_tls ? "HTTPS" : "HTTP", cfg->listen_address, cfg->listen_port);
		rc = HTTP_ELISTEN;
		goto out;
	}
	log_info("http: listening on %s port %d (%s), %u thread%s, at most %u connections", cfg->listen_address,
		 cfg->listen_port, h->native_tls ? "native mutual TLS" : "plain HTTP, client DN from trusted proxies",
		 threads, threads == 1 ? "" : "s", limit);
	*out = h;
	h = NULL;
	rc = 0;
out:
	http_stop(h);
	return rc;
}

void http_stop(struct http *h)
{
	MHD_socket lfd = MHD_INVALID_SOCKET;

	if (h == NULL)
		return;
	/* No new connections; commit and resume what is pending (later
	 * callbacks are refused with 503), then stop with none suspended. */
	if (h->daemon != NULL)
		lfd = MHD_quiesce_daemon(h->daemon);
	writer_stop(h->writer);
	if (h->daemon != NULL)
		MHD_stop_daemon(h->daemon);
	if (lfd != MHD_INVALID_SOCKET)
		close(lfd); /* quiesce hands the listening socket to us */
	writer_free(h->writer);
	store_close(h->aux);
	connlimit_free(h->limits);
	deadline_free(h->deadlines); /* after the daemon: its "closed" notices remove entries */
	if (h->native_tls)
		creds_free(atomic_exchange(&tls_current, NULL));
	if (h->lock_ready)
		pthread_mutex_destroy(&h->store_lock);
	if (h->key_pem != NULL)
		explicit_bzero(h->key_pem, h->key_len);
	free(h->key_pem);
	free(h->cert_pem);
	free(h->ca_pem);
	free(h);
}
