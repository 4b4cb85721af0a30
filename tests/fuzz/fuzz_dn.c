/* fuzz_dn: the RFC 4514 DN parser (api/dn.c) on any bytes, as a proxy's
 * X-ClientCert-DN header could carry them (NUL-terminated, as the header
 * reader hands them over). A parsed DN must give every attribute a type and
 * a NUL-free value, and the RDN indices must never decrease. */
#include <stdlib.h>
#include <string.h>

#include "dn.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dn dn = {0};
	char *s = malloc(size + 1);

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (dn_parse(s, &dn) == 0) {
		for (size_t i = 0; i < dn.n; i++) {
			if (dn.attrs[i].type == NULL || dn.attrs[i].value == NULL || dn.attrs[i].type[0] == '\0' ||
			    (i > 0 && dn.attrs[i].rdn < dn.attrs[i - 1].rdn))
				abort();
		}
		(void)dn_get(&dn, "CN");
		(void)dn_get(&dn, "O");
	} else if (dn.n != 0 || dn.attrs != NULL) {
		abort(); /* a refused DN leaves out empty */
	}
	dn_free(&dn);
	free(s);
	return 0;
}
