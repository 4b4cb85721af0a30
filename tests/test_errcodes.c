/* test_errcodes: the modules' error codes as one scheme (STYLE.md): every
 * code is negative, no two codes of any modules share a value (each module
 * has its own range), and each module's strerror has a text of its own for
 * each of its codes. A module with new codes adds them here. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "adopt.h"
#include "api_call.h"
#include "connlimit.h"
#include "deadline.h"
#include "ingest.h"
#include "kube.h"
#include "roomstate.h"
#include "store.h"
#include "synapse.h"
#include "writer.h"

struct code {
	const char *name;
	int value;
	const char *(*text)(int);
};

static const struct code codes[] = {
	{"ADOPT_EINPUT", ADOPT_EINPUT, adopt_strerror},
	{"ADOPT_ESTORE", ADOPT_ESTORE, adopt_strerror},
	{"ADOPT_ESYNAPSE", ADOPT_ESYNAPSE, adopt_strerror},
	{"ADOPT_ENOROOMS", ADOPT_ENOROOMS, adopt_strerror},
	{"API_ENOMEM", API_ENOMEM, api_strerror},
	{"API_ESTORE", API_ESTORE, api_strerror},
	{"API_EBADPATH", API_EBADPATH, api_strerror},
	{"API_ENOTFILE", API_ENOTFILE, api_strerror},
	{"API_ETOOBIG", API_ETOOBIG, api_strerror},
	{"API_ENOEMBED", API_ENOEMBED, api_strerror},
	{"CONNLIMIT_ENOMEM", CONNLIMIT_ENOMEM, connlimit_strerror},
	{"CONNLIMIT_EADDRESS", CONNLIMIT_EADDRESS, connlimit_strerror},
	{"CONNLIMIT_ERESERVED", CONNLIMIT_ERESERVED, connlimit_strerror},
	{"DEADLINE_ENOMEM", DEADLINE_ENOMEM, deadline_strerror},
	{"DEADLINE_ETHREAD", DEADLINE_ETHREAD, deadline_strerror},
	{"DEADLINE_EFIRED", DEADLINE_EFIRED, deadline_strerror},
	{"INGEST_ENOANSWER", INGEST_ENOANSWER, ingest_strerror},
	{"INGEST_EREGISTER", INGEST_EREGISTER, ingest_strerror},
	{"INGEST_ESAVE", INGEST_ESAVE, ingest_strerror},
	{"INGEST_ELOCK", INGEST_ELOCK, ingest_strerror},
	{"INGEST_EREADONLY", INGEST_EREADONLY, ingest_strerror},
	{"KUBE_E_CONFIG", KUBE_E_CONFIG, kube_strerror},
	{"KUBE_E_TRANSPORT", KUBE_E_TRANSPORT, kube_strerror},
	{"KUBE_E_PROTOCOL", KUBE_E_PROTOCOL, kube_strerror},
	{"KUBE_E_GONE", KUBE_E_GONE, kube_strerror},
	{"KUBE_E_STOPPED", KUBE_E_STOPPED, kube_strerror},
	{"KUBE_E_HANDLER", KUBE_E_HANDLER, kube_strerror},
	{"ROOMSTATE_E_SYNTAX", ROOMSTATE_E_SYNTAX, roomstate_strerror},
	{"STORE_E_SYMLINK", STORE_E_SYMLINK, store_strerror},
	{"STORE_E_PERMS", STORE_E_PERMS, store_strerror},
	{"STORE_E_OPEN", STORE_E_OPEN, store_strerror},
	{"STORE_E_NEWER", STORE_E_NEWER, store_strerror},
	{"STORE_E_UNUSABLE", STORE_E_UNUSABLE, store_strerror},
	{"STORE_E_MIGRATE", STORE_E_MIGRATE, store_strerror},
	{"SYNAPSE_E_TRANSPORT", SYNAPSE_E_TRANSPORT, synapse_strerror},
	{"SYNAPSE_E_PROTOCOL", SYNAPSE_E_PROTOCOL, synapse_strerror},
	{"SYNAPSE_E_CANCELLED", SYNAPSE_E_CANCELLED, synapse_strerror},
	{"WRITER_ESTOPPED", WRITER_ESTOPPED, writer_strerror},
	{"WRITER_EREFUSED", WRITER_EREFUSED, writer_strerror},
	{"WRITER_ECOMMIT", WRITER_ECOMMIT, writer_strerror},
	{"WRITER_ENOMEM", WRITER_ENOMEM, writer_strerror},
	{"WRITER_ETHREAD", WRITER_ETHREAD, writer_strerror},
	{"WRITER_EOWNED", WRITER_EOWNED, writer_strerror},
};

#define NCODES (sizeof(codes) / sizeof(codes[0]))

static void test_codes_are_negative_and_distinct(void **state)
{
	(void)state;
	for (size_t i = 0; i < NCODES; i++) {
		if (codes[i].value >= 0)
			fail_msg("%s is %d, not negative", codes[i].name, codes[i].value);
		/* above every errno, so that no code reads as one */
		if (codes[i].value > -1000)
			fail_msg("%s is %d, inside errno's range", codes[i].name, codes[i].value);
		for (size_t k = 0; k < i; k++)
			if (codes[i].value == codes[k].value)
				fail_msg("%s and %s are both %d", codes[i].name, codes[k].name, codes[i].value);
	}
}

static void test_each_code_has_its_own_text(void **state)
{
	(void)state;
	for (size_t i = 0; i < NCODES; i++) {
		const char *t = codes[i].text(codes[i].value);

		if (t == NULL || strcmp(t, "unknown error") == 0 || strncmp(t, "Unknown error", 13) == 0) {
			fail_msg("%s (%d) has no text", codes[i].name, codes[i].value);
			return;
		}
		for (size_t k = 0; k < i; k++)
			if (codes[k].text == codes[i].text && strcmp(t, codes[k].text(codes[k].value)) == 0)
				fail_msg("%s and %s read the same: %s", codes[i].name, codes[k].name, t);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_codes_are_negative_and_distinct),
		cmocka_unit_test(test_each_code_has_its_own_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
