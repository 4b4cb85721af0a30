/* matrixid: callsign -> Matrix user ID, with the validity rules of the original
 * service: the lower-cased callsign must be a non-empty localpart of
 * [a-z0-9._=/+-] and the whole ID "@local:domain" at most 255 bytes. */
#pragma once
#include <stddef.h>

/* Localparts of the bootstrap's one-off recovery admins start with this;
 * no callback may claim such an ID. */
#define MATRIXID_RECOVERY_PREFIX "matrixrmapi-recovery-"

/* Writes "@lower(callsign):domain" to out. Returns 0, or -1 with a reason in
 * err (safe to show to the caller). */
int matrixid_from_callsign(const char *callsign, const char *domain, char *out, size_t outlen, char *err,
			   size_t errlen);
