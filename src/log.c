/* log: see log.h. Writes are serialised by stdio's own stream lock, so lines
 * from the HTTP threads and the reconciler never interleave. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

static int g_level = LOG_LVL_INFO;
static int g_ecs;

void log_init(int level, int ecs)
{
	g_level = level;
	g_ecs = ecs;
}

int log_level_parse(const char *s, int *level)
{
	static const struct { const char *name; int level; } names[] = {
		{"debug", LOG_LVL_DEBUG}, {"info", LOG_LVL_INFO}, {"warning", LOG_LVL_WARN},
		{"warn", LOG_LVL_WARN}, {"error", LOG_LVL_ERROR}, {"critical", 50},
	};
	char *end;
	long n;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(s, names[i].name) == 0) {
			*level = names[i].level;
			return 0;
		}
	errno = 0;
	n = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno || n < 0 || n > 50)
		return -1;
	*level = (int)n;
	return 0;
}

static const char *level_name(int level)
{
	if (level >= LOG_LVL_ERROR)
		return "error";
	if (level >= LOG_LVL_WARN)
		return "warning";
	if (level >= LOG_LVL_INFO)
		return "info";
	return "debug";
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when it is not one
 * (a stray continuation byte, a truncated or overlong sequence, a surrogate,
 * past U+10FFFF). */
static size_t utf8_len(const unsigned char *s)
{
	size_t n;
	unsigned cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

size_t log_escape(const char *in, char *out, size_t outlen)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0;

	if (outlen == 0)
		return 0;
	while (*s) {
		char buf[8];
		size_t n = utf8_len(s), k;

		if (n == 1 && *s >= 0x20 && *s != 0x7f && *s != '\\') {
			buf[0] = (char)*s;
			k = 1;
		} else if (n > 1) {
			memcpy(buf, s, n);
			k = n;
		} else {
			/* NOLINTBEGIN(bugprone-not-null-terminated-result): buf is counted by k, not terminated */
			switch (*s) {
			case '\n': memcpy(buf, "\\n", 2); k = 2; break;
			case '\r': memcpy(buf, "\\r", 2); k = 2; break;
			case '\t': memcpy(buf, "\\t", 2); k = 2; break;
			case '\\': memcpy(buf, "\\\\", 2); k = 2; break;
			default: k = (size_t)snprintf(buf, sizeof(buf), "\\x%02x", *s); break;
			}
			/* NOLINTEND(bugprone-not-null-terminated-result) */
			n = 1;
		}
		if (o + k >= outlen)
			break; /* never cut a sequence in half */
		memcpy(out + o, buf, k);
		o += k;
		s += n;
	}
	out[o] = '\0';
	return o;
}

static void emit(int level, const char *suffix, const char *fmt, va_list ap)
{
	char raw[2048], msg[4096], stamp[40];
	struct timespec ts;
	struct tm tm;

	if (level < g_level)
		return;
	/* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): a false positive of clang 14 on a va_list parameter (x86-64's va_list is an array) */
	vsnprintf(raw, sizeof(raw), fmt, ap);
	if (suffix)
		strncat(raw, suffix, sizeof(raw) - strlen(raw) - 1);
	/* Whatever a field held (a URL, a callsign, Synapse's error text), the
	 * event is one line and valid UTF-8: a client cannot forge lines. */
	log_escape(raw, msg, sizeof(msg));
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	if (strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		stamp[0] = '\0';
	if (g_ecs) {
		char when[64];
		json_t *o;
		char *line;

		snprintf(when, sizeof(when), "%s.%03ldZ", stamp, ts.tv_nsec / 1000000);
		o = json_pack("{s:s, s:s, s:s, s:s}", "@timestamp", when, "log.level",
			      level_name(level), "message", msg, "ecs.version", "1.6.0");
		line = o ? json_dumps(o, JSON_COMPACT) : NULL;
		if (line)
			fprintf(stderr, "%s\n", line);
		free(line);
		json_decref(o);
	} else {
		fprintf(stderr, "%s.%03ldZ %-7s %s\n", stamp, ts.tv_nsec / 1000000, level_name(level), msg);
	}
}

#define DEFINE_LOG(fn, lvl)                      \
	void fn(const char *fmt, ...)            \
	{                                        \
		va_list ap;                      \
		va_start(ap, fmt);               \
		emit(lvl, NULL, fmt, ap);        \
		va_end(ap);                      \
	}
DEFINE_LOG(log_debug, LOG_LVL_DEBUG)
DEFINE_LOG(log_info, LOG_LVL_INFO)
DEFINE_LOG(log_warnx, LOG_LVL_WARN)
DEFINE_LOG(log_error, LOG_LVL_ERROR)

void log_warn(const char *fmt, ...)
{
	char suffix[256];
	va_list ap;

	snprintf(suffix, sizeof(suffix), ": %s", strerror(errno));
	va_start(ap, fmt);
	emit(LOG_LVL_WARN, suffix, fmt, ap);
	va_end(ap);
}
