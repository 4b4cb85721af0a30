/* log: see log.h. Writes are serialised by stdio's own stream lock, so lines
 * from the HTTP threads and the reconciler never interleave: each event is
 * built whole and written with one fprintf. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "clock.h"

static int g_level = LOG_LVL_INFO;
static int g_ecs;

void log_init(int level, int ecs)
{
	g_level = level;
	g_ecs = ecs;
}

int log_level_parse(const char *s, int *level)
{
	static const struct {
		const char *name;
		int level;
	} names[] = {
		{"debug", LOG_LVL_DEBUG}, {"info", LOG_LVL_INFO},   {"warning", LOG_LVL_WARN},
		{"warn", LOG_LVL_WARN},   {"error", LOG_LVL_ERROR}, {"critical", 50},
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
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
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
			case '\n':
				memcpy(buf, "\\n", 2);
				k = 2;
				break;
			case '\r':
				memcpy(buf, "\\r", 2);
				k = 2;
				break;
			case '\t':
				memcpy(buf, "\\t", 2);
				k = 2;
				break;
			case '\\':
				memcpy(buf, "\\\\", 2);
				k = 2;
				break;
			default:
				k = (size_t)snprintf(buf, sizeof(buf), "\\x%02x", *s);
				break;
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

static const char *const outcome_names[] = {
	[LOG_SUCCESS] = "success",
	[LOG_FAILURE] = "failure",
	[LOG_UNKNOWN] = "unknown",
};

static const char *outcome_name(enum log_outcome o)
{
	return o > LOG_OUTCOME_NONE && o <= LOG_UNKNOWN ? outcome_names[o] : NULL;
}

/* A field's value, escaped (FIELD_MAX bytes at most), in each format. */
#define FIELD_MAX 1024

struct escaped {
	char action[FIELD_MAX], user[FIELD_MAX], room[FIELD_MAX], code[FIELD_MAX];
	/* the local fields: each value quoted, every byte of it escaped at worst */
	char local[4 * (2 * FIELD_MAX + 16) + 128];
};

static void escape_field(const char *in, char *out)
{
	if (in != NULL)
		log_escape(in, out, FIELD_MAX);
}

/* Sets parent.key (ECS's "event.action" as {"event": {"action": v}}) in o,
 * making the parent object on first use; steals v. */
static void json_put(json_t *o, const char *parent, const char *key, json_t *v)
{
	json_t *p;

	if (v == NULL)
		return;
	if ((p = json_object_get(o, parent)) == NULL) {
		p = json_object();
		if (p == NULL || json_object_set_new(o, parent, p) != 0) {
			json_decref(v);
			return;
		}
	}
	json_object_set_new(p, key, v);
}

static char *ecs_line(int level, const char *when, const char *msg, const struct log_fields *f, const struct escaped *e)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "@timestamp", when, "log.level", level_name(level), "message",
			      msg, "ecs.version", "1.6.0");
	char *line = NULL;

	if (o == NULL)
		return NULL;
	if (f) {
		const char *outcome = outcome_name(f->outcome);

		if (f->action)
			json_put(o, "event", "action", json_string(e->action));
		if (outcome)
			json_put(o, "event", "outcome", json_string(outcome));
		if (f->has_duration)
			json_put(o, "event", "duration", json_integer(f->duration_ns));
		if (f->user_id)
			json_put(o, "matrix", "user_id", json_string(e->user));
		if (f->room_id)
			json_put(o, "matrix", "room_id", json_string(e->room));
		if (f->error_code)
			json_put(o, "error", "code", json_string(e->code));
	}
	line = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return line;
}

/* Appends " key=value" to buf (of size len, holding *used bytes); the value
 * is quoted when it could be read as more than one value. */
static void local_put(char *buf, size_t len, size_t *used, const char *key, const char *value)
{
	int quote = value[0] == '\0' || strpbrk(value, " \"=") != NULL;
	size_t o = *used;
	int n = snprintf(buf + o, len - o, "%s%s=%s", o && buf[o - 1] != '\t' ? " " : "", key, quote ? "\"" : "");

	if (n < 0 || (size_t)n >= len - o)
		return;
	o += (size_t)n;
	for (const char *s = value; *s && o + 3 < len; s++) {
		if (quote && *s == '"')
			buf[o++] = '\\';
		buf[o++] = *s;
	}
	if (quote && o + 1 < len)
		buf[o++] = '"';
	buf[o] = '\0';
	*used = o;
}

static void local_fields(char *buf, size_t len, const struct log_fields *f, const struct escaped *e)
{
	const char *outcome = outcome_name(f->outcome);
	size_t used = 0;

	buf[0] = '\0';
	if (!f->action && !outcome && !f->user_id && !f->room_id && !f->error_code && !f->has_duration)
		return;
	buf[used++] = '\t';
	buf[used] = '\0';
	if (f->action)
		local_put(buf, len, &used, "action", e->action);
	if (outcome)
		local_put(buf, len, &used, "outcome", outcome);
	if (f->user_id)
		local_put(buf, len, &used, "user", e->user);
	if (f->room_id)
		local_put(buf, len, &used, "room", e->room);
	if (f->error_code)
		local_put(buf, len, &used, "error", e->code);
	if (f->has_duration) {
		char ms[32];

		snprintf(ms, sizeof(ms), "%.3fms", (double)f->duration_ns / 1e6);
		local_put(buf, len, &used, "duration", ms);
	}
}

/* Messages shorter than this are padded so that the fields of short
 * events (callbacks, actions) start in one column. */
#define LOCAL_MESSAGE_COLUMNS 60

static void emit(int level, const struct log_fields *f, const char *suffix, const char *fmt, va_list ap)
{
	char raw[4096], msg[8192], stamp[40], when[64];
	struct escaped *e = NULL;
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
	if (f && (e = malloc(sizeof(*e))) != NULL) {
		escape_field(f->action, e->action);
		escape_field(f->user_id, e->user);
		escape_field(f->room_id, e->room);
		escape_field(f->error_code, e->code);
	} else {
		f = NULL; /* out of memory: the message alone */
	}
	ts = clock_timespec(clock_real_ns());
	gmtime_r(&ts.tv_sec, &tm);
	if (strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		stamp[0] = '\0';
	snprintf(when, sizeof(when), "%s.%03ldZ", stamp, ts.tv_nsec / 1000000);
	if (g_ecs) {
		char *line = ecs_line(level, when, msg, f, e);

		if (line)
			fprintf(stderr, "%s\n", line);
		free(line);
	} else {
		const char *fields = "";

		if (f) {
			local_fields(e->local, sizeof(e->local), f, e);
			fields = e->local;
		}
		/* one fprintf: stdio's lock keeps the line whole */
		fprintf(stderr, "%s %-7s %-*s%s\n", when, level_name(level), fields[0] ? LOCAL_MESSAGE_COLUMNS : 0, msg,
			fields);
	}
	free(e);
}

#define DEFINE_LOG(fn, lvl)                     \
	void fn(const char *fmt, ...)           \
	{                                       \
		va_list ap;                     \
		va_start(ap, fmt);              \
		emit(lvl, NULL, NULL, fmt, ap); \
		va_end(ap);                     \
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
	emit(LOG_LVL_WARN, NULL, suffix, fmt, ap);
	va_end(ap);
}

void log_event(int level, const struct log_fields *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit(level, f, NULL, fmt, ap);
	va_end(ap);
}
