/* matrixid: callsign -> "@localpart:domain" under the original service's rules
 * (historical Matrix user ID grammar, lower-cased, 255 bytes at most). */
#include "matrixid.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define MXID_MAX 255

static const struct errtext matrixid_errors[] = {
	{MATRIXID_EEMPTY, "callsign is empty"},
	{MATRIXID_ECHAR, "callsign holds a character a Matrix user ID may not"},
	{MATRIXID_ETOOLONG, "Matrix user ID would be longer than 255 bytes"},
	{MATRIXID_ESPACE, "Matrix user ID does not fit the buffer"},
};

const char *matrixid_strerror(int code)
{
	return ERRTEXT_LOOKUP(matrixid_errors, code);
}

static int localpart_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("._=/+-", c) != NULL;
}

int matrixid_from_callsign(const char *callsign, const char *domain, char *out, size_t outlen, char *err, size_t errlen)
{
	size_t n = strlen(callsign), total;

	if (n == 0) {
		snprintf(err, errlen, "callsign is empty");
		return MATRIXID_EEMPTY;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)tolower((unsigned char)callsign[i]);

		if (c == 0 || !localpart_char(c) || (unsigned char)callsign[i] >= 0x80) {
			snprintf(err, errlen,
				 "callsign contains a character not allowed in a Matrix user ID "
				 "(allowed: a-z 0-9 . _ = / + -) at position %zu",
				 i + 1);
			return MATRIXID_ECHAR;
		}
	}
	total = 1 + n + 1 + strlen(domain);
	if (total > MXID_MAX) {
		snprintf(err, errlen, "Matrix user ID would be %zu bytes, more than %d", total, MXID_MAX);
		return MATRIXID_ETOOLONG;
	}
	if (total + 1 > outlen) {
		snprintf(err, errlen, "Matrix user ID too long for buffer");
		return MATRIXID_ESPACE;
	}
	out[0] = '@';
	for (size_t i = 0; i < n; i++)
		out[1 + i] = (char)tolower((unsigned char)callsign[i]);
	snprintf(out + 1 + n, outlen - 1 - n, ":%s", domain);
	return 0;
}
