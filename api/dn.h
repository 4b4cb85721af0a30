/* dn: RFC 4514 distinguished names, as sent by a TLS-terminating proxy in
 * X-ClientCert-DN (e.g. "CN=rasenmaeher,O=Example"). Handles escapes
 * (\, \+ \" \\ \XX hex pairs), quoted values, multi-valued RDNs joined with
 * '+', spaces around separators, ';' between RDNs, and numeric OIDs. #hex
 * (BER) values are kept as written, '#' included. Values containing NUL or
 * invalid UTF-8 are malformed. "" is the empty DN (n == 0). */
#pragma once
#include <stddef.h>

struct dn_attr {
	char *type;  /* as written, e.g. "CN" or "2.5.4.3" */
	char *value; /* unescaped */
	int rdn;     /* index of the RDN it belongs to (multi-valued RDNs share one) */
};

struct dn {
	struct dn_attr *attrs;
	size_t n;
};

/* Parses s. Returns 0, or -1 for malformed input (out left empty). */
int dn_parse(const char *s, struct dn *out);
/* Value of the first attribute of type (case-insensitive; "CN" also matches
 * "2.5.4.3", "O" matches "2.5.4.10"), or NULL. Borrowed from dn. */
const char *dn_get(const struct dn *dn, const char *type);
void dn_free(struct dn *dn); /* frees the contents; NULL is a no-op */
