/* fuzz_manifest: the Kraftwerk manifest as config_load reads it. The input
 * is written as the manifest file and loaded with a fixed environment (a
 * table, not the process's); config_load must either fill the settings or
 * refuse with an error text, and config_free must release either. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"
#include "log.h"

static char dir[] = "/tmp/fuzz_manifest.XXXXXX";
static char manifest[64];

static const char *table_getenv(const char *name)
{
	static const struct {
		const char *k, *v;
	} env[] = {
		{"SYNAPSE_URL", "http://127.0.0.1:8008"},
		{"SYNAPSE_REGISTRATION_SECRET", "not-a-real-secret"},
		{"DATABASE_PATH", "/nonexistent/fuzz.db"},
	};

	if (strcmp(name, "KRAFTWERK_MANIFEST") == 0)
		return manifest;
	for (size_t i = 0; i < sizeof(env) / sizeof(env[0]); i++)
		if (strcmp(env[i].k, name) == 0)
			return env[i].v;
	return NULL;
}

static void cleanup(void)
{
	unlink(manifest);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init(50, 0);
	if (mkdtemp(dir) == NULL) {
		perror("fuzz_manifest: mkdtemp");
		exit(1);
	}
	snprintf(manifest, sizeof(manifest), "%s/kraftwerk-init.json", dir);
	if (atexit(cleanup) != 0)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config cfg;
	char err[512] = "";
	FILE *f = fopen(manifest, "wb");
	int rc;

	if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
		perror("fuzz_manifest: writing the manifest");
		exit(1);
	}
	memset(&cfg, 0, sizeof(cfg));
	rc = config_load(&cfg, table_getenv, CONFIG_SERVE, err, sizeof(err));
	if (rc == 0 && (cfg.deployment == NULL || cfg.certcn == NULL || cfg.server_domain == NULL))
		abort();
	if (rc != 0 && err[0] == '\0')
		abort(); /* a refusal says why */
	config_free(&cfg);
	return 0;
}
