/* errtext: the one way a module turns its negative error codes into text
 * (STYLE.md): a table of {code, text}, and for what is not in it 0 is
 * "success", a negative errno is strerror's text, anything else "unknown
 * error". Never returns NULL. */
#pragma once
#include <stddef.h>

struct errtext {
	int code;
	const char *text;
};

const char *errtext_lookup(const struct errtext *table, size_t n, int code);

#define ERRTEXT_LOOKUP(table, code) errtext_lookup((table), sizeof(table) / sizeof((table)[0]), (code))
