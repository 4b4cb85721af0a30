/* errtext: see errtext.h. */
#include "errtext.h"

#include <string.h>

const char *errtext_lookup(const struct errtext *table, size_t n, int code)
{
	if (code == 0)
		return "success";
	for (size_t i = 0; i < n; i++)
		if (table[i].code == code)
			return table[i].text;
	if (code < 0 && code > ERRTEXT_FIRST)
		return strerror(-code);
	return "unknown error";
}
