/* metrics_listen: see metrics_listen.h. One internal polling thread is
 * plenty for a scraper every few seconds; a handful of connections at once
 * and a short timeout keep a stray client from holding it. */
#include "metrics_listen.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "promtext.h"

#define METRICS_CONNECTIONS 16
#define METRICS_TIMEOUT_S 10

struct metrics_listen {
	struct MHD_Daemon *daemon;
};

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned int status, const char *type, char *body,
			      size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, mode);
	enum MHD_Result ret;

	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	static const char not_found[] = "Not Found: the metrics are at /metrics\n";
	static const char not_allowed[] = "Method Not Allowed: GET /metrics\n";
	static const char failed[] = "cannot render the metrics (out of memory)\n";
	char *page = NULL;
	size_t len = 0;

	(void)cls;
	(void)version;
	(void)upload_data;
	/* A body is not wanted: take it in and drop it, then answer. */
	if (*con_cls == NULL) {
		*con_cls = conn;
		return MHD_YES;
	}
	if (*upload_data_size != 0) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (strcmp(url, "/metrics") != 0)
		return answer(conn, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8", (char *)not_found,
			      sizeof(not_found) - 1, MHD_RESPMEM_PERSISTENT);
	if (strcmp(method, "GET") != 0)
		return answer(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", (char *)not_allowed,
			      sizeof(not_allowed) - 1, MHD_RESPMEM_PERSISTENT);
	if (metrics_render(&page, &len) != 0)
		return answer(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", (char *)failed,
			      sizeof(failed) - 1, MHD_RESPMEM_PERSISTENT);
	return answer(conn, MHD_HTTP_OK, PROMTEXT_CONTENT_TYPE, page, len, MHD_RESPMEM_MUST_FREE);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	size_t n;

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	log_warnx("metrics: libmicrohttpd: %s", buf);
}

static const struct errtext metrics_listen_errors[] = {
	{METRICS_LISTEN_EADDRESS, "METRICS_ADDRESS is not a numeric address"},
	{METRICS_LISTEN_ENOMEM, "out of memory starting the metrics listener"},
	{METRICS_LISTEN_ELISTEN, "the metrics listener cannot start (address in use?)"},
};

const char *metrics_listen_strerror(int code)
{
	return ERRTEXT_LOOKUP(metrics_listen_errors, code);
}

int metrics_listen_start(const struct config *cfg, struct metrics_listen **out, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	struct metrics_listen *ml = NULL;
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG;
	int rc = METRICS_LISTEN_EADDRESS;

	*out = NULL;
	if (cfg->metrics_port == 0) {
		log_info("metrics: off (METRICS_PORT=0)");
		return 0;
	}
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, cfg->metrics_address, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)cfg->metrics_port);
	} else if (inet_pton(AF_INET6, cfg->metrics_address, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)cfg->metrics_port);
		flags |= MHD_USE_IPv6;
	} else {
		snprintf(err, errlen, "METRICS_ADDRESS: %s is not a numeric IPv4 or IPv6 address",
			 cfg->metrics_address);
		goto out;
	}
	if ((ml = calloc(1, sizeof(*ml))) == NULL) {
		snprintf(err, errlen, "metrics: out of memory");
		rc = METRICS_LISTEN_ENOMEM;
		goto out;
	}
	ml->daemon =
		MHD_start_daemon(flags, (uint16_t)cfg->metrics_port, NULL, NULL, on_request, NULL,
				 MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_SOCK_ADDR,
				 (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)METRICS_CONNECTIONS,
				 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)METRICS_TIMEOUT_S, MHD_OPTION_END);
	if (ml->daemon == NULL) {
		snprintf(err, errlen,
			 "METRICS_ADDRESS/METRICS_PORT: cannot serve metrics on %s port %d (address in use?)",
			 cfg->metrics_address, cfg->metrics_port);
		rc = METRICS_LISTEN_ELISTEN;
		goto out;
	}
	log_info("metrics: serving GET /metrics on %s port %d (plain HTTP)", cfg->metrics_address, cfg->metrics_port);
	*out = ml;
	ml = NULL;
	rc = 0;
out:
	metrics_listen_stop(ml);
	return rc;
}

void metrics_listen_stop(struct metrics_listen *ml)
{
	if (ml == NULL)
		return;
	if (ml->daemon != NULL)
		MHD_stop_daemon(ml->daemon);
	free(ml);
}
