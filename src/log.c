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

static void emit(int level, const char *suffix, const char *fmt, va_list ap)
{
	char msg[2048], stamp[40];
	struct timespec ts;
	struct tm tm;

	if (level < g_level)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	if (g_ecs) {
		char when[64];
		json_t *o;
		char *line;

		snprintf(when, sizeof(when), "%s.%03ldZ", stamp, ts.tv_nsec / 1000000);
		if (suffix)
			strncat(msg, suffix, sizeof(msg) - strlen(msg) - 1);
		o = json_pack("{s:s, s:s, s:s, s:s}", "@timestamp", when, "log.level",
			      level_name(level), "message", msg, "ecs.version", "1.6.0");
		line = o ? json_dumps(o, JSON_COMPACT) : NULL;
		if (line)
			fprintf(stderr, "%s\n", line);
		free(line);
		json_decref(o);
	} else {
		fprintf(stderr, "%s.%03ldZ %-7s %s%s\n", stamp, ts.tv_nsec / 1000000,
			level_name(level), msg, suffix ? suffix : "");
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
