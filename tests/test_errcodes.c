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
#include "auth.h"
#include "bootstrap.h"
#include "config.h"
#include "connlimit.h"
#include "deadline.h"
#include "http.h"
#include "ingest.h"
#include "kube.h"
#include "loop.h"
#include "matrixid.h"
#include "metrics_listen.h"
#include "observe.h"
#include "planner.h"
#include "roomstate.h"
#include "secret.h"
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
	{"KUBE_ECONFIG", KUBE_ECONFIG, kube_strerror},
	{"KUBE_ETRANSPORT", KUBE_ETRANSPORT, kube_strerror},
	{"KUBE_EPROTOCOL", KUBE_EPROTOCOL, kube_strerror},
	{"KUBE_EGONE", KUBE_EGONE, kube_strerror},
	{"KUBE_ESTOPPED", KUBE_ESTOPPED, kube_strerror},
	{"KUBE_EHANDLER", KUBE_EHANDLER, kube_strerror},
	{"ROOMSTATE_ESYNTAX", ROOMSTATE_ESYNTAX, roomstate_strerror},
	{"STORE_ESYMLINK", STORE_ESYMLINK, store_strerror},
	{"STORE_EPERMS", STORE_EPERMS, store_strerror},
	{"STORE_EOPEN", STORE_EOPEN, store_strerror},
	{"STORE_ENEWER", STORE_ENEWER, store_strerror},
	{"STORE_EUNUSABLE", STORE_EUNUSABLE, store_strerror},
	{"STORE_EMIGRATE", STORE_EMIGRATE, store_strerror},
	{"SYNAPSE_ETRANSPORT", SYNAPSE_ETRANSPORT, synapse_strerror},
	{"SYNAPSE_EPROTOCOL", SYNAPSE_EPROTOCOL, synapse_strerror},
	{"SYNAPSE_ECANCELLED", SYNAPSE_ECANCELLED, synapse_strerror},
	{"WRITER_ESTOPPED", WRITER_ESTOPPED, writer_strerror},
	{"WRITER_EREFUSED", WRITER_EREFUSED, writer_strerror},
	{"WRITER_ECOMMIT", WRITER_ECOMMIT, writer_strerror},
	{"WRITER_ENOMEM", WRITER_ENOMEM, writer_strerror},
	{"WRITER_ETHREAD", WRITER_ETHREAD, writer_strerror},
	{"WRITER_EOWNED", WRITER_EOWNED, writer_strerror},
	{"AUTH_ECONFIG", AUTH_ECONFIG, auth_strerror},
	{"AUTH_EFILE", AUTH_EFILE, auth_strerror},
	{"AUTH_ENOMEM", AUTH_ENOMEM, auth_strerror},
	{"AUTH_ESTORE", AUTH_ESTORE, auth_strerror},
	{"AUTH_EREFUSED", AUTH_EREFUSED, auth_strerror},
	{"BOOTSTRAP_ELOCK", BOOTSTRAP_ELOCK, bootstrap_strerror},
	{"BOOTSTRAP_ETOKENFILE", BOOTSTRAP_ETOKENFILE, bootstrap_strerror},
	{"BOOTSTRAP_ENOANSWER", BOOTSTRAP_ENOANSWER, bootstrap_strerror},
	{"BOOTSTRAP_EREADONLY", BOOTSTRAP_EREADONLY, bootstrap_strerror},
	{"BOOTSTRAP_EREGISTER", BOOTSTRAP_EREGISTER, bootstrap_strerror},
	{"BOOTSTRAP_EBACKOFF", BOOTSTRAP_EBACKOFF, bootstrap_strerror},
	{"BOOTSTRAP_ERATELIMIT", BOOTSTRAP_ERATELIMIT, bootstrap_strerror},
	{"BOOTSTRAP_ESTORE", BOOTSTRAP_ESTORE, bootstrap_strerror},
	{"BOOTSTRAP_EROOM", BOOTSTRAP_EROOM, bootstrap_strerror},
	{"CONFIG_EVALUE", CONFIG_EVALUE, config_strerror},
	{"CONFIG_EMISSING", CONFIG_EMISSING, config_strerror},
	{"CONFIG_EUNREADABLE", CONFIG_EUNREADABLE, config_strerror},
	{"CONFIG_EMANIFEST", CONFIG_EMANIFEST, config_strerror},
	{"CONFIG_ENOMEM", CONFIG_ENOMEM, config_strerror},
	{"HTTP_ENOMEM", HTTP_ENOMEM, http_strerror},
	{"HTTP_ELOCK", HTTP_ELOCK, http_strerror},
	{"HTTP_EADDRESS", HTTP_EADDRESS, http_strerror},
	{"HTTP_ETLSFILE", HTTP_ETLSFILE, http_strerror},
	{"HTTP_ETLSCERT", HTTP_ETLSCERT, http_strerror},
	{"HTTP_EPRIORITIES", HTTP_EPRIORITIES, http_strerror},
	{"HTTP_ELISTEN", HTTP_ELISTEN, http_strerror},
	{"LOOP_ESTORE", LOOP_ESTORE, loop_strerror},
	{"LOOP_ENOMEM", LOOP_ENOMEM, loop_strerror},
	{"LOOP_ETHREAD", LOOP_ETHREAD, loop_strerror},
	{"LOOP_ELOCK", LOOP_ELOCK, loop_strerror},
	{"LOOP_EUNREACHABLE", LOOP_EUNREACHABLE, loop_strerror},
	{"LOOP_EFAILED", LOOP_EFAILED, loop_strerror},
	{"LOOP_EPENDING", LOOP_EPENDING, loop_strerror},
	{"MATRIXID_EEMPTY", MATRIXID_EEMPTY, matrixid_strerror},
	{"MATRIXID_ECHAR", MATRIXID_ECHAR, matrixid_strerror},
	{"MATRIXID_ETOOLONG", MATRIXID_ETOOLONG, matrixid_strerror},
	{"MATRIXID_ESPACE", MATRIXID_ESPACE, matrixid_strerror},
	{"METRICS_LISTEN_EADDRESS", METRICS_LISTEN_EADDRESS, metrics_listen_strerror},
	{"METRICS_LISTEN_ENOMEM", METRICS_LISTEN_ENOMEM, metrics_listen_strerror},
	{"METRICS_LISTEN_ELISTEN", METRICS_LISTEN_ELISTEN, metrics_listen_strerror},
	{"OBSERVE_ENOANSWER", OBSERVE_ENOANSWER, observe_strerror},
	{"OBSERVE_EHTTP", OBSERVE_EHTTP, observe_strerror},
	{"OBSERVE_ESHAPE", OBSERVE_ESHAPE, observe_strerror},
	{"OBSERVE_ENOMEM", OBSERVE_ENOMEM, observe_strerror},
	{"OBSERVE_ESTORE", OBSERVE_ESTORE, observe_strerror},
	{"PLANNER_EINPUT", PLANNER_EINPUT, planner_strerror},
	{"PLANNER_ENOMEM", PLANNER_ENOMEM, planner_strerror},
	{"SECRET_ERANDOM", SECRET_ERANDOM, secret_strerror},
	{"SECRET_EOPEN", SECRET_EOPEN, secret_strerror},
	{"SECRET_EPERMS", SECRET_EPERMS, secret_strerror},
	{"SECRET_EWRITE", SECRET_EWRITE, secret_strerror},
	{"SECRET_ERENAME", SECRET_ERENAME, secret_strerror},
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
