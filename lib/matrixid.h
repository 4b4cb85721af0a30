/* matrixid: callsign -> Matrix user ID, with the validity rules of the original
 * service: the lower-cased callsign must be a non-empty localpart of
 * [a-z0-9._=/+-] and the whole ID "@local:domain" at most 255 bytes. */
#pragma once
#include <stddef.h>

#include "errtext.h"

enum {
	MATRIXID_EEMPTY = ERRTEXT_MATRIXID - 1,   /* the callsign is empty */
	MATRIXID_ECHAR = ERRTEXT_MATRIXID - 2,    /* it holds a character a localpart may not */
	MATRIXID_ETOOLONG = ERRTEXT_MATRIXID - 3, /* the ID would be longer than 255 bytes */
	MATRIXID_ESPACE = ERRTEXT_MATRIXID - 4,   /* the caller's buffer is too small */
};

/* The text for a MATRIXID_E* code. */
const char *matrixid_strerror(int code);

/* Localparts of the bootstrap's one-off recovery admins start with this;
 * no callback may claim such an ID. */
#define MATRIXID_RECOVERY_PREFIX "matrixrmapi-recovery-"

/* Writes "@lower(callsign):domain" to out. Returns 0, or a MATRIXID_E* code
 * with a reason in err (safe to show to the caller). */
int matrixid_from_callsign(const char *callsign, const char *domain, char *out, size_t outlen, char *err,
			   size_t errlen);
