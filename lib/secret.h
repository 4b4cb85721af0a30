/* secret: the small files and random strings that hold secrets (the bots'
 * access tokens, one-off passwords). A secret file is a bare token (a
 * trailing newline is ignored, as the original service's file may have one),
 * mode 0600, replaced atomically (write to a temporary file, fsync, rename,
 * fsync the folder) and never followed through a symlink. Secrets are never
 * logged: errors name the file and the variable, not the content. */
#pragma once
#include <stddef.h>

#include "errtext.h"

enum {
	SECRET_ERANDOM = ERRTEXT_SECRET - 1, /* no randomness (or more than 64 bytes asked for) */
	SECRET_EOPEN = ERRTEXT_SECRET - 2,   /* the file exists but cannot be opened */
	SECRET_EPERMS = ERRTEXT_SECRET - 3,  /* others can read it, and it cannot be tightened */
	SECRET_EWRITE = ERRTEXT_SECRET - 4,  /* the temporary file cannot be written */
	SECRET_ERENAME = ERRTEXT_SECRET - 5, /* it cannot replace the file */
};

/* The text for a SECRET_E* code (or errno). */
const char *secret_strerror(int code);

/* 2*bytes hex characters (and a NUL) of cryptographic randomness into out
 * (which holds at least 2*bytes+1). Returns 0 or SECRET_ERANDOM. bytes <= 64. */
int secret_random_hex(char *out, size_t bytes);

/* Reads path into out ("" when the file does not exist) up to the first
 * whitespace. A file others can read is tightened to 0600 (or refused when
 * that is impossible). var names the setting in err. Returns 0,
 * SECRET_EOPEN or SECRET_EPERMS. */
int secret_file_read(const char *path, const char *var, char *out, size_t outlen, char *err, size_t errlen);

/* Atomically replaces path with token, mode 0600 from the first byte.
 * Returns 0, SECRET_EWRITE or SECRET_ERENAME, with err. */
int secret_file_write(const char *path, const char *var, const char *token, char *err, size_t errlen);
