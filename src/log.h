/* log: one line per event on stderr, as a human line ("local") or one ECS JSON
 * object per line ("ecs"). Levels use Python's numbers so that existing
 * LOG_LEVEL settings keep working. Never pass secrets to these functions. */
#pragma once
#include <stddef.h>

enum log_level { LOG_LVL_DEBUG = 10, LOG_LVL_INFO = 20, LOG_LVL_WARN = 30, LOG_LVL_ERROR = 40 };

void log_init(int level, int ecs);

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
