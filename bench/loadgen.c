/* loadgen: a load generator for matrixrmapi's callback path (bench/run.py
 * drives it). libcurl multi in one thread keeps --conns requests in flight,
 * each a POST /api/v1/users/created (or --action ACTION: promoted, demoted,
 * revoked) with a distinct callsign PREFIX<i>, over mutual TLS
 * (--cert/--key/--cacert) or plain HTTP with the proxy's DN header
 * (--dn-header), on kept-alive connections or a new connection per request
 * (--fresh, TLS session cache off: a full handshake each time, as
 * Rasenmaeher does). --get PATH sends GET PATH instead (the listener's
 * ceiling without the disk, e.g. /api/v1/healthcheck). It prints one JSON object: requests, ok (200 with
 * success true), errors, seconds, rate, latency percentiles in ms.
 *
 * With --idle N --half M it first opens N raw TCP connections that send
 * nothing and M requests that stop half-way through their body (TLS
 * handshake and headers done), holds them, then times --requests callbacks
 * one after another on new connections, and says how many of the held
 * connections were still open at the end.
 *
 * Not a test: it asserts nothing. Talks only to the --url given. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"

#define BODY_MAX 256
#define HALF_BODY_LEN 120 /* declared Content-Length of a half-sent request */

struct opts {
	const char *url, *cacert, *cert, *key, *dn_header, *prefix, *get, *action;
	long conns, requests, idle, half;
	int fresh;
};

struct slot {
	CURL *easy;
	struct curl_slist *headers;
	char body[BODY_MAX];
	char reply[512];
	size_t reply_len;
	double started;
	long index;
	/* half-sent requests only */
	int half, closed;
	size_t sent;
};

static double now_s(void)
{
	return (double)clock_mono_ns() / 1e9;
}

static size_t on_reply(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct slot *s = userdata;
	size_t n = size * nmemb, room = sizeof(s->reply) - 1 - s->reply_len;

	memcpy(s->reply + s->reply_len, ptr, n < room ? n : room);
	s->reply_len += n < room ? n : room;
	s->reply[s->reply_len] = '\0';
	return n;
}

/* Half-sent: the first part of the body, then nothing (paused for good). */
static size_t on_read_half(char *buf, size_t size, size_t nitems, void *userdata)
{
	static const char part[] = "{\"uuid\":\"half\",\"callsign\":";
	struct slot *s = userdata;
	size_t n = sizeof(part) - 1 - s->sent;

	if (s->sent >= sizeof(part) - 1)
		return CURL_READFUNC_PAUSE;
	if (n > size * nitems)
		n = size * nitems;
	memcpy(buf, part + s->sent, n);
	s->sent += n;
	return n;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double pct(const double *sorted, long n, double p)
{
	long i;

	if (n == 0)
		return 0;
	i = (long)(p * (double)n);
	if (i >= n)
		i = n - 1;
	return sorted[i] * 1000.0;
}

static void slot_setup(const struct opts *o, struct slot *s, const char *url)
{
	s->easy = curl_easy_init();
	if (s->easy == NULL) {
		fprintf(stderr, "loadgen: curl_easy_init failed\n");
		exit(2);
	}
	s->headers = curl_slist_append(NULL, "Content-Type: application/json");
	s->headers = curl_slist_append(s->headers, "Expect:");
	if (o->dn_header != NULL)
		s->headers = curl_slist_append(s->headers, o->dn_header);
	curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
	curl_easy_setopt(s->easy, CURLOPT_URL, url);
	curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
	curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_reply);
	curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, 60000L);
	if (o->cacert != NULL)
		curl_easy_setopt(s->easy, CURLOPT_CAINFO, o->cacert);
	if (o->cert != NULL)
		curl_easy_setopt(s->easy, CURLOPT_SSLCERT, o->cert);
	if (o->key != NULL)
		curl_easy_setopt(s->easy, CURLOPT_SSLKEY, o->key);
	if (o->fresh) {
		curl_easy_setopt(s->easy, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(s->easy, CURLOPT_FORBID_REUSE, 1L);
		curl_easy_setopt(s->easy, CURLOPT_SSL_SESSIONID_CACHE, 0L);
	}
}

static void slot_request(const struct opts *o, struct slot *s, long index)
{
	s->index = index;
	s->reply_len = 0;
	s->reply[0] = '\0';
	s->started = now_s();
	if (o->get != NULL)
		return;
	snprintf(s->body, sizeof(s->body), "{\"uuid\":\"u-%s-%ld\",\"callsign\":\"%s%ld\",\"x509cert\":\"x\"}",
		 o->prefix, index, o->prefix, index);
	curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body);
	curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(s->body));
}

/* Raw TCP connections that send nothing; returns how many connected. */
static long open_idle(const char *url, long n, int *fds)
{
	struct sockaddr_in sin;
	const char *host = strstr(url, "://");
	char buf[64], digits[8];
	long ok = 0;
	long port = 0;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	if (host == NULL || sscanf(host + 3, "%63[^:]:%7[0-9]", buf, digits) != 2 ||
	    (port = strtol(digits, NULL, 10)) < 1 || port > 65535 || inet_pton(AF_INET, buf, &sin.sin_addr) != 1) {
		fprintf(stderr, "loadgen: --idle needs a URL with a numeric IPv4 host and a port\n");
		exit(2);
	}
	sin.sin_port = htons((unsigned short)port);
	for (long i = 0; i < n; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (fds[i] >= 0 && connect(fds[i], (struct sockaddr *)&sin, sizeof(sin)) == 0)
			ok++;
	}
	return ok;
}

/* Held raw connections the server has not closed (no EOF readable). */
static long count_open(const int *fds, long n)
{
	long open = 0;

	for (long i = 0; i < n; i++) {
		struct pollfd p = {fds[i], POLLIN, 0};
		char c;

		if (fds[i] < 0)
			continue;
		if (poll(&p, 1, 0) == 0 || (recv(fds[i], &c, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN))
			open++;
	}
	return open;
}

static void raise_nofile(long want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)want) {
		rl.rlim_cur = rl.rlim_max < (rlim_t)want ? rl.rlim_max : (rlim_t)want;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: loadgen --url URL [--cacert F --cert F --key F] [--dn-header 'H: V']\n"
			"               [--conns N] [--requests M] [--fresh] [--prefix P] [--get PATH]\n"
			"               [--action created|promoted|demoted|revoked]\n"
			"               [--idle N --half M]   (hold idle and half-sent connections, then\n"
			"                                      time --requests callbacks one at a time)\n");
	exit(2);
}

/* A whole decimal number, or the usage and exit 2. */
static long number(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (end == s || *end != '\0' || errno != 0)
		usage();
	return v;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"url", 1, NULL, 'u'},      {"cacert", 1, NULL, 'a'},    {"cert", 1, NULL, 'c'},
		{"key", 1, NULL, 'k'},      {"dn-header", 1, NULL, 'd'}, {"conns", 1, NULL, 'n'},
		{"requests", 1, NULL, 'r'}, {"fresh", 0, NULL, 'f'},     {"prefix", 1, NULL, 'p'},
		{"idle", 1, NULL, 'i'},     {"half", 1, NULL, 'h'},      {"get", 1, NULL, 'g'},
		{"action", 1, NULL, 'A'},   {NULL, 0, NULL, 0},
	};
	struct opts o = {.conns = 1, .requests = 1000, .prefix = "lg", .action = "created"};
	struct slot *slots, *halves = NULL;
	double *lat, t0, wall;
	long next = 0, done = 0, ok = 0, errors = 0, idle_ok = 0, idle_open = 0, half_open = 0;
	long half_started = 0;
	int *idle_fds = NULL, ch, running;
	char url[512], get_url[512];
	CURLM *multi;
	CURLMsg *msg;

	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'u':
			o.url = optarg;
			break;
		case 'a':
			o.cacert = optarg;
			break;
		case 'c':
			o.cert = optarg;
			break;
		case 'k':
			o.key = optarg;
			break;
		case 'd':
			o.dn_header = optarg;
			break;
		case 'n':
			o.conns = number(optarg);
			break;
		case 'r':
			o.requests = number(optarg);
			break;
		case 'f':
			o.fresh = 1;
			break;
		case 'p':
			o.prefix = optarg;
			break;
		case 'i':
			o.idle = number(optarg);
			break;
		case 'h':
			o.half = number(optarg);
			break;
		case 'g':
			o.get = optarg;
			break;
		case 'A':
			o.action = optarg;
			break;
		default:
			usage();
		}
	}
	if (o.url == NULL || o.conns < 1 || o.requests < 1 || o.idle < 0 || o.half < 0 ||
	    strspn(o.action, "abcdefghijklmnopqrstuvwxyz") != strlen(o.action) || !o.action[0])
		usage();
	if (o.idle > 0 || o.half > 0) {
		o.conns = 1; /* the timed callbacks go one at a time */
		o.fresh = 1;
	}
	raise_nofile(o.conns + o.idle + o.half + 64);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	snprintf(url, sizeof(url), "%s/api/v1/users/%s", o.url, o.action);
	snprintf(get_url, sizeof(get_url), "%s%s", o.url, o.get != NULL ? o.get : "");
	multi = curl_multi_init();
	slots = calloc((size_t)o.conns, sizeof(*slots));
	lat = calloc((size_t)o.requests, sizeof(*lat));
	if (multi == NULL || slots == NULL || lat == NULL) {
		free(slots);
		free(lat);
		return 2;
	}
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, o.conns + o.half + 8);

	if (o.idle > 0) {
		idle_fds = calloc((size_t)o.idle, sizeof(*idle_fds));
		if (idle_fds == NULL) {
			free(slots);
			free(lat);
			return 2;
		}
		idle_ok = open_idle(o.url, o.idle, idle_fds);
	}
	if (o.half > 0) {
		struct opts ho = o;
		double until;

		ho.fresh = 1;
		halves = calloc((size_t)o.half, sizeof(*halves));
		if (halves == NULL) {
			free(idle_fds);
			free(slots);
			free(lat);
			return 2;
		}
		for (long i = 0; i < o.half; i++) {
			slot_setup(&ho, &halves[i], url);
			halves[i].half = 1;
			curl_easy_setopt(halves[i].easy, CURLOPT_POST, 1L);
			curl_easy_setopt(halves[i].easy, CURLOPT_POSTFIELDSIZE, (long)HALF_BODY_LEN);
			curl_easy_setopt(halves[i].easy, CURLOPT_READFUNCTION, on_read_half);
			curl_easy_setopt(halves[i].easy, CURLOPT_READDATA, &halves[i]);
			curl_multi_add_handle(multi, halves[i].easy);
		}
		/* Let every half-sent request get its handshake, headers and
		 * first bytes out. */
		until = now_s() + 5;
		do {
			long sent = 0;

			curl_multi_perform(multi, &running);
			curl_multi_poll(multi, NULL, 0, 50, NULL);
			for (long i = 0; i < o.half; i++)
				sent += halves[i].sent > 0;
			if (sent == o.half)
				break;
		} while (now_s() < until);
	}

	for (long i = 0; i < o.conns; i++)
		slot_setup(&o, &slots[i], o.get != NULL ? get_url : url);
	t0 = now_s();
	for (long i = 0; i < o.conns && next < o.requests; i++) {
		slot_request(&o, &slots[i], next++);
		curl_multi_add_handle(multi, slots[i].easy);
	}
	while (done < o.requests) {
		int q;

		curl_multi_perform(multi, &running);
		while ((msg = curl_multi_info_read(multi, &q)) != NULL) {
			struct slot *s = NULL;
			long status = 0;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
			if (s == NULL)
				continue;
			if (s->half) { /* a half-sent request the server closed */
				s->closed = 1;
				continue;
			}
			curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
			lat[done++] = now_s() - s->started;
			if (msg->data.result == CURLE_OK && status == 200 &&
			    (o.get != NULL || strstr(s->reply, "\"success\":true") != NULL))
				ok++;
			else if (errors++ < 5)
				fprintf(stderr, "loadgen: request %ld: %s, status %ld: %.200s\n", s->index,
					curl_easy_strerror(msg->data.result), status, s->reply);
			curl_multi_remove_handle(multi, s->easy);
			if (next < o.requests) {
				slot_request(&o, s, next++);
				curl_multi_add_handle(multi, s->easy);
			}
		}
		if (done < o.requests)
			curl_multi_poll(multi, NULL, 0, 100, NULL);
	}
	wall = now_s() - t0;
	if (o.idle > 0)
		idle_open = count_open(idle_fds, o.idle);
	if (o.half > 0) {
		int q;

		curl_multi_perform(multi, &running);
		while ((msg = curl_multi_info_read(multi, &q)) != NULL) {
			struct slot *s = NULL;

			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
			if (msg->msg == CURLMSG_DONE && s != NULL && s->half)
				s->closed = 1;
		}
	}
	for (long i = 0; i < o.half; i++) {
		half_started += halves[i].sent > 0;
		half_open += halves[i].sent > 0 && !halves[i].closed;
	}
	qsort(lat, (size_t)done, sizeof(*lat), cmp_double);
	printf("{\"requests\":%ld,\"ok\":%ld,\"errors\":%ld,\"conns\":%ld,\"fresh\":%s,"
	       "\"seconds\":%.3f,\"rate\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,"
	       "\"max_ms\":%.3f",
	       o.requests, ok, errors, o.conns, o.fresh ? "true" : "false", wall, (double)ok / wall,
	       pct(lat, done, 0.50), pct(lat, done, 0.90), pct(lat, done, 0.99), done ? lat[done - 1] * 1000.0 : 0.0);
	if (o.idle > 0 || o.half > 0)
		printf(",\"idle\":%ld,\"idle_connected\":%ld,\"idle_open_at_end\":%ld,"
		       "\"half\":%ld,\"half_started\":%ld,\"half_open_at_end\":%ld",
		       o.idle, idle_ok, idle_open, o.half, half_started, half_open);
	printf("}\n");
	fflush(stdout);
	for (long i = 0; i < o.conns; i++) {
		curl_multi_remove_handle(multi, slots[i].easy);
		curl_easy_cleanup(slots[i].easy);
		curl_slist_free_all(slots[i].headers);
	}
	for (long i = 0; i < o.half; i++) {
		curl_multi_remove_handle(multi, halves[i].easy);
		curl_easy_cleanup(halves[i].easy);
		curl_slist_free_all(halves[i].headers);
	}
	for (long i = 0; i < o.idle; i++)
		if (idle_fds[i] >= 0)
			close(idle_fds[i]);
	curl_multi_cleanup(multi);
	curl_global_cleanup();
	free(idle_fds);
	free(halves);
	free(slots);
	free(lat);
	return errors == 0 ? 0 : 1;
}
