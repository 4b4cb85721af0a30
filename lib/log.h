/* log: one line per event on stderr, as a human line ("local") or one ECS JSON
 * object per line ("ecs"). Levels use Python's numbers so that existing
 * LOG_LEVEL settings keep working. Never pass secrets to these functions.
 *
 * Invariants: whatever a message or a field holds (a URL with %0A decoded, a
 * callsign, Synapse's error text, bytes that are not UTF-8), an event is
 * exactly one line of valid UTF-8: in "ecs" one JSON object built by jansson
 * with @timestamp, log.level, message and ecs.version first and the
 * structured fields nested after them ({"event": {"action": ...}}); in
 * "local" the time, the level padded so that messages start in one column,
 * the message, and when the event has fields a TAB (which escaping never
 * leaves in a message or a value) then the fields as key=value, separated by
 * one space, a value holding a space, a quote or '=' in double quotes with \"
 * for a quote. Neither a message nor a field can end the line or add a
 * field. */
#pragma once
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_LVL_DEBUG = 10, LOG_LVL_INFO = 20, LOG_LVL_WARN = 30, LOG_LVL_ERROR = 40 };

void log_init(int level, int ecs);

/* ECS's event.outcome: only these three values exist. */
enum log_outcome { LOG_OUTCOME_NONE, LOG_SUCCESS, LOG_FAILURE, LOG_UNKNOWN };

/* The structured fields of an event; unset (NULL, LOG_OUTCOME_NONE,
 * has_duration 0) fields are left out. Strings are borrowed for the call. In
 * ECS (local key in brackets): */
struct log_fields {
	const char *action;       /* event.action (action): "callback.created", "reconcile.pass", "room.join" */
	enum log_outcome outcome; /* event.outcome (outcome) */
	const char *user_id;      /* matrix.user_id (user) */
	const char *room_id;      /* matrix.room_id (room) */
	const char *error_code;   /* error.code (error): Synapse's errcode, "M_FORBIDDEN" */
	int has_duration;
	int64_t duration_ns; /* event.duration in ns (duration, in ms) */
};

/* The one escaping every logged line passes through: copies in to out
 * (always NUL-terminated) with control characters as \n, \r, \t or \xNN,
 * a backslash as \\, and bytes that are not valid UTF-8 as \xNN; stops
 * before a sequence that would not fit. Returns the length written. */
size_t log_escape(const char *in, char *out, size_t outlen);
int log_level_parse(const char *s, int *level); /* "info", "INFO", "20" -> 0; else -1 */

#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))
void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warnx(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2); /* appends strerror(errno) */
void log_error(const char *fmt, ...) LOG_PRINTF(1, 2);
/* An event with structured fields (f may be NULL) at level (enum log_level). */
void log_event(int level, const struct log_fields *f, const char *fmt, ...) LOG_PRINTF(3, 4);
