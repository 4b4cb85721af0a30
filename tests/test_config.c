/* test_config: config_load against a table-backed environment and manifest
 * files written to a mkdtemp directory. Covers the defaults, manifest parsing
 * and its fallback, value parsing (tables with "have X, want Y"), and every
 * start-up error: each must fail with one line that begins with the name of
 * the variable at fault, and none may contain the registration secret. The
 * log written during every config_load (at debug level) is checked for the
 * secret too. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

#define SECRET "s3cr3t-Zq81-must-never-be-echoed"
#define MAX_KV 10

static char tmpdir[256];

/* ---- table-backed environment ---------------------------------------- */

struct kv {
	const char *k, *v; /* v NULL: unset; "$T/x" expands to tmpdir/x */
};

/* Always present unless a case overrides the name. */
static const struct kv base_env[] = {
	{"SYNAPSE_REGISTRATION_SECRET", SECRET},
	{"KRAFTWERK_MANIFEST", "$T/good.json"},
};

static const struct kv *case_env;
static size_t case_env_n;
static char expanded[MAX_KV + 4][512];

static const char *expand(const char *v, size_t slot)
{
	if (!v || strncmp(v, "$T/", 3) != 0)
		return v;
	snprintf(expanded[slot], sizeof(expanded[slot]), "%s/%s", tmpdir, v + 3);
	return expanded[slot];
}

static const char *table_getenv(const char *name)
{
	for (size_t i = 0; i < case_env_n; i++)
		if (strcmp(case_env[i].k, name) == 0)
			return expand(case_env[i].v, i);
	for (size_t i = 0; i < sizeof(base_env) / sizeof(base_env[0]); i++)
		if (strcmp(base_env[i].k, name) == 0)
			return expand(base_env[i].v, MAX_KV + i);
	return NULL;
}

static void set_env(const struct kv *kvs, size_t n)
{
	assert_true(n <= MAX_KV);
	case_env = kvs;
	case_env_n = n;
}

static size_t kv_count(const struct kv *kvs)
{
	size_t n = 0;

	while (n < MAX_KV && kvs[n].k)
		n++;
	return n;
}

/* config_load with stderr (the log) captured into logbuf. */
static int load(struct config *cfg, const struct kv *kvs, enum config_need need, char *err, size_t errlen, char *logbuf,
		size_t loglen)
{
	char path[300];
	int saved, fd, rc;
	ssize_t n;

	set_env(kvs, kvs ? kv_count(kvs) : 0);
	snprintf(path, sizeof(path), "%s/stderr.log", tmpdir);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(saved >= 0 && fd >= 0);
	dup2(fd, STDERR_FILENO);
	err[0] = '\0';
	rc = config_load(cfg, table_getenv, need, err, errlen);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	lseek(fd, 0, SEEK_SET);
	n = read(fd, logbuf, loglen - 1);
	logbuf[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	if (strstr(logbuf, SECRET))
		fail_msg("the log written by config_load contains the registration secret");
	return rc;
}

/* ---- fixture files --------------------------------------------------- */

static const struct {
	const char *name, *content;
} files[] = {
	{"good.json", "{\"deployment\": \"golden-monkey\","
		      " \"rasenmaeher\": {\"certcn\": \"rasenmaeher-gm\","
		      "   \"init\": {\"base_uri\": \"https://golden-monkey.dev.pvarki.fi:4439/\", \"csr_jwt\": \"x\"}},"
		      " \"product\": {\"dns\": \"matrix.golden-monkey.dev.pvarki.fi\","
		      "   \"uri\": \"https://matrix.golden-monkey.dev.pvarki.fi:4626/\"}}"},
	{"minimal.json", "{\"deployment\": \"d1\", \"rasenmaeher\": {\"certcn\": \"rm\"},"
			 " \"product\": {\"dns\": \"matrix.min.example\"}}"},
	{"not-json.json", "{\"deployment\": \"golden-monkey\", "},
	{"array.json", "[1, 2, 3]"},
	{"no-deployment.json", "{\"rasenmaeher\": {\"certcn\": \"rm\"}, \"product\": {\"dns\": \"matrix.a.example\"}}"},
	{"no-certcn.json",
	 "{\"deployment\": \"d\", \"rasenmaeher\": {\"init\": {}}, \"product\": {\"dns\": \"matrix.a.example\"}}"},
	{"no-dns.json",
	 "{\"deployment\": \"d\", \"rasenmaeher\": {\"certcn\": \"rm\"}, \"product\": {\"uri\": \"https://x/\"}}"},
	{"deployment-number.json",
	 "{\"deployment\": 42, \"rasenmaeher\": {\"certcn\": \"rm\"}, \"product\": {\"dns\": \"matrix.a.example\"}}"},
	{"dns-no-dot.json",
	 "{\"deployment\": \"d\", \"rasenmaeher\": {\"certcn\": \"rm\"}, \"product\": {\"dns\": \"localhost\"}}"},
	{"dns-trailing-dot.json",
	 "{\"deployment\": \"d\", \"rasenmaeher\": {\"certcn\": \"rm\"}, \"product\": {\"dns\": \"matrix.\"}}"},
	{"bad-deployment.json", "{\"deployment\": \"golden monkey!\", \"rasenmaeher\": {\"certcn\": \"rm\"},"
				" \"product\": {\"dns\": \"matrix.a.example\"}}"},
	{"cert.pem", "cert\n"},
	{"key.pem", "key\n"},
	{"ca.pem", "ca\n"},
	{"crl.pem", "crl\n"},
};

static int group_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_config.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char path[400];
		FILE *f;

		snprintf(path, sizeof(path), "%s/%s", tmpdir, files[i].name);
		if (!(f = fopen(path, "w")))
			return -1;
		fputs(files[i].content, f);
		if (fclose(f) != 0)
			return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char path[400];

		snprintf(path, sizeof(path), "%s/%s", tmpdir, files[i].name);
		unlink(path);
	}
	return rmdir(tmpdir);
}

/* ---- defaults and manifest -------------------------------------------- */

static void test_defaults(void **state)
{
	struct config cfg;
	char err[512], log[4096];

	(void)state;
	assert_int_equal(load(&cfg, NULL, CONFIG_SERVE, err, sizeof(err), log, sizeof(log)), 0);
	assert_string_equal(cfg.synapse_url, "http://synapse:8008");
	assert_string_equal(cfg.registration_secret, SECRET);
	assert_string_equal(cfg.bot_username, "matrixrmapi-bot");
	assert_string_equal(cfg.token_file, "/data/persistent/synapse_admin_token");
	assert_string_equal(cfg.database_path, "/data/persistent/matrixrmapi.db");
	assert_string_equal(cfg.listen_address, "0.0.0.0");
	assert_int_equal(cfg.listen_port, 4625);
	assert_string_equal(cfg.metrics_address, "127.0.0.1");
	assert_int_equal(cfg.metrics_port, 9464);
	assert_string_equal(cfg.mtls_header_name, "X-ClientCert-DN");
	assert_string_equal(cfg.mtls_trusted_proxies, "127.0.0.1,::1");
	assert_int_equal(cfg.reconcile_interval, 60);
	assert_int_equal(cfg.synapse_wait_timeout, 300);
	assert_int_equal(cfg.log_level, 20);
	assert_int_equal(cfg.log_ecs, 0);
	assert_null(cfg.tls_cert_file);
	assert_null(cfg.tls_key_file);
	assert_null(cfg.tls_client_ca_file);
	assert_null(cfg.tls_crl_file);
	/* SERVER_DOMAIN from the manifest, the public URL from that */
	assert_string_equal(cfg.server_domain, "golden-monkey.dev.pvarki.fi");
	assert_string_equal(cfg.synapse_public_baseurl, "https://synapse.golden-monkey.dev.pvarki.fi");
	config_free(&cfg);
}

/* With KRAFTWERK_MANIFEST unset the path is the deployments' fixed one. */
static void test_default_manifest_path(void **state)
{
	static const struct kv env[] = {{"KRAFTWERK_MANIFEST", NULL}, {NULL, NULL}};
	struct config cfg;
	char err[512], log[4096];

	(void)state;
	if (access("/pvarki/kraftwerk-init.json", F_OK) == 0)
		skip(); /* a real manifest would decide the rest of the result */
	assert_int_equal(load(&cfg, env, CONFIG_SERVE, err, sizeof(err), log, sizeof(log)), 0);
	assert_string_equal(cfg.manifest_path, "/pvarki/kraftwerk-init.json");
	assert_int_equal(cfg.manifest_found, 0);
	config_free(&cfg);
}

static void test_manifest_parsed(void **state)
{
	struct config cfg;
	char err[512], log[4096], want_path[400];

	(void)state;
	assert_int_equal(load(&cfg, NULL, CONFIG_SERVE, err, sizeof(err), log, sizeof(log)), 0);
	snprintf(want_path, sizeof(want_path), "%s/good.json", tmpdir);
	assert_string_equal(cfg.manifest_path, want_path);
	assert_int_equal(cfg.manifest_found, 1);
	assert_string_equal(cfg.deployment, "golden-monkey");
	assert_string_equal(cfg.certcn, "rasenmaeher-gm");
	assert_string_equal(cfg.rm_base_uri, "https://golden-monkey.dev.pvarki.fi:4439/");
	assert_string_equal(cfg.product_dns, "matrix.golden-monkey.dev.pvarki.fi");
	assert_string_equal(cfg.product_uri, "https://matrix.golden-monkey.dev.pvarki.fi:4626/");
	assert_string_equal(cfg.server_domain, "golden-monkey.dev.pvarki.fi");
	config_free(&cfg);
}

/* base_uri and product.uri are optional. */
static void test_manifest_minimal(void **state)
{
	static const struct kv env[] = {{"KRAFTWERK_MANIFEST", "$T/minimal.json"}, {NULL, NULL}};
	struct config cfg;
	char err[512], log[4096];

	(void)state;
	if (load(&cfg, env, CONFIG_SERVE, err, sizeof(err), log, sizeof(log)) != 0)
		fail_msg("minimal manifest: have error \"%s\", want success", err);
	assert_string_equal(cfg.deployment, "d1");
	assert_string_equal(cfg.certcn, "rm");
	assert_string_equal(cfg.server_domain, "min.example");
	config_free(&cfg);
}

static void test_server_domain_env_overrides(void **state)
{
	static const struct kv env[] = {{"SERVER_DOMAIN", "example.org"}, {NULL, NULL}};
	/* the override also rescues a product.dns without a domain part */
	static const struct kv env2[] = {{"SERVER_DOMAIN", "example.org"},
					 {"KRAFTWERK_MANIFEST", "$T/dns-no-dot.json"},
					 {NULL, NULL}};
	struct config cfg;
	char err[512], log[4096];

	(void)state;
	assert_int_equal(load(&cfg, env, CONFIG_SERVE, err, sizeof(err), log, sizeof(log)), 0);
	assert_string_equal(cfg.server_domain, "example.org");
	assert_string_equal(cfg.synapse_public_baseurl, "https://synapse.example.org");
	assert_string_equal(cfg.product_dns, "matrix.golden-monkey.dev.pvarki.fi");
	config_free(&cfg);

	if (load(&cfg, env2, CONFIG_SERVE, err, sizeof(err), log, sizeof(log)) != 0)
		fail_msg("SERVER_DOMAIN with dotless product.dns: have error \"%s\", want success", err);
	assert_string_equal(cfg.server_domain, "example.org");
	config_free(&cfg);
}

static void test_manifest_missing_fallback(void **state)
{
	static const struct kv env[] = {{"KRAFTWERK_MANIFEST", "$T/does-not-exist.json"}, {NULL, NULL}};
	struct config cfg;
	char err[512], log[4096];

	(void)state;
	if (load(&cfg, env, CONFIG_SERVE, err, sizeof(err), log, sizeof(log)) != 0)
		fail_msg("missing manifest: have error \"%s\", want fallback values", err);
	assert_int_equal(cfg.manifest_found, 0);
	assert_string_equal(cfg.deployment, "manifest_notfound");
	assert_string_equal(cfg.certcn, "rasenmaeher");
	assert_string_equal(cfg.product_dns, "matrix.localmaeher.dev.pvarki.fi");
	assert_string_equal(cfg.server_domain, "localmaeher.dev.pvarki.fi");
	assert_string_equal(cfg.synapse_public_baseurl, "https://synapse.localmaeher.dev.pvarki.fi");
	/* with a warning */
	assert_non_null(strstr(log, "manifest"));
	config_free(&cfg);
}

static void test_every_setting_read(void **state)
{
	static const struct kv env[] = {
		{"SYNAPSE_URL", "https://syn.internal:8448///"},
		{"SYNAPSE_BOT_USERNAME", "ops.bot"},
		{"SYNAPSE_TOKEN_FILE", "/run/tok"},
		{"DATABASE_PATH", "/var/lib/m.db"},
		{"LISTEN_ADDRESS", "127.0.0.1"},
		{"MTLS_HEADER_NAME", "X-SSL-Client-DN"},
		{"MTLS_TRUSTED_PROXIES", "10.0.0.0/8"},
		{"SYNAPSE_PUBLIC_BASEURL", "https://chat.example.org"},
		{NULL, NULL},
	};
	static const struct kv env2[] = {
		{"TLS_CERT_FILE", "$T/cert.pem"}, {"TLS_KEY_FILE", "$T/key.pem"}, {"TLS_CLIENT_CA_FILE", "$T/ca.pem"},
		{"TLS_CRL_FILE", "$T/crl.pem"},   {"SYNAPSE_WAIT_TIMEOUT", "0"},  {NULL, NULL},
	};
	struct config cfg;
	char err[512], log[4096], want[400];

	(void)state;
	if (load(&cfg, env, CONFIG_SERVE, err, sizeof(err), log, sizeof(log)) != 0)
		fail_msg("all settings: have error \"%s\", want success", err);
	assert_string_equal(cfg.synapse_url, "https://syn.internal:8448"); /* no trailing slash */
	assert_string_equal(cfg.bot_username, "ops.bot");
	assert_string_equal(cfg.token_file, "/run/tok");
	assert_string_equal(cfg.database_path, "/var/lib/m.db");
	assert_string_equal(cfg.listen_address, "127.0.0.1");
	assert_string_equal(cfg.mtls_header_name, "X-SSL-Client-DN");
	assert_string_equal(cfg.mtls_trusted_proxies, "10.0.0.0/8");
	assert_string_equal(cfg.synapse_public_baseurl, "https://chat.example.org");
	config_free(&cfg);

	if (load(&cfg, env2, CONFIG_SERVE, err, sizeof(err), log, sizeof(log)) != 0)
		fail_msg("TLS settings: have error \"%s\", want success", err);
	snprintf(want, sizeof(want), "%s/cert.pem", tmpdir);
	assert_string_equal(cfg.tls_cert_file, want);
	snprintf(want, sizeof(want), "%s/key.pem", tmpdir);
	assert_string_equal(cfg.tls_key_file, want);
	snprintf(want, sizeof(want), "%s/ca.pem", tmpdir);
	assert_string_equal(cfg.tls_client_ca_file, want);
	snprintf(want, sizeof(want), "%s/crl.pem", tmpdir);
	assert_string_equal(cfg.tls_crl_file, want);
	assert_int_equal(cfg.synapse_wait_timeout, 0);
	config_free(&cfg);
}

/* The healthcheck and openapi commands run without the secret. */
static void test_client_needs_no_secret(void **state)
{
	static const struct kv unset[] = {{"SYNAPSE_REGISTRATION_SECRET", NULL}, {NULL, NULL}};
	static const struct kv empty[] = {{"SYNAPSE_REGISTRATION_SECRET", ""}, {NULL, NULL}};
	struct config cfg;
	char err[512], log[4096];

	(void)state;
	if (load(&cfg, unset, CONFIG_CLIENT, err, sizeof(err), log, sizeof(log)) != 0)
		fail_msg("CONFIG_CLIENT, secret unset: have error \"%s\", want success", err);
	assert_null(cfg.registration_secret);
	config_free(&cfg);
	if (load(&cfg, empty, CONFIG_CLIENT, err, sizeof(err), log, sizeof(log)) != 0)
		fail_msg("CONFIG_CLIENT, secret empty: have error \"%s\", want success", err);
	config_free(&cfg);
	assert_int_equal(load(&cfg, NULL, CONFIG_CLIENT, err, sizeof(err), log, sizeof(log)), 0);
	assert_string_equal(cfg.registration_secret, SECRET);
	config_free(&cfg);
}

/* ---- value parsing, table-driven ------------------------------------- */

enum field { F_LOG_LEVEL, F_LOG_ECS, F_LISTEN_PORT, F_RECONCILE, F_WAIT, F_METRICS_PORT };

struct value_case {
	const char *var, *value;
	enum field field;
	int want;
};

static const struct value_case value_cases[] = {
	{"LOG_LEVEL", "debug", F_LOG_LEVEL, 10},
	{"LOG_LEVEL", "DEBUG", F_LOG_LEVEL, 10},
	{"LOG_LEVEL", "info", F_LOG_LEVEL, 20},
	{"LOG_LEVEL", "INFO", F_LOG_LEVEL, 20},
	{"LOG_LEVEL", "warning", F_LOG_LEVEL, 30},
	{"LOG_LEVEL", "WARNING", F_LOG_LEVEL, 30},
	{"LOG_LEVEL", "error", F_LOG_LEVEL, 40},
	{"LOG_LEVEL", "ERROR", F_LOG_LEVEL, 40},
	{"LOG_LEVEL", "10", F_LOG_LEVEL, 10},
	{"LOG_LEVEL", "20", F_LOG_LEVEL, 20},
	{"LOG_LEVEL", "30", F_LOG_LEVEL, 30},
	{"LOG_LEVEL", "40", F_LOG_LEVEL, 40},
	{"LOG_CONSOLE_FORMATTER", "ecs", F_LOG_ECS, 1},
	{"LOG_CONSOLE_FORMATTER", "local", F_LOG_ECS, 0},
	{"LISTEN_PORT", "1", F_LISTEN_PORT, 1},
	{"LISTEN_PORT", "8443", F_LISTEN_PORT, 8443},
	{"LISTEN_PORT", "65535", F_LISTEN_PORT, 65535},
	{"RECONCILE_INTERVAL", "1", F_RECONCILE, 1},
	{"RECONCILE_INTERVAL", "300", F_RECONCILE, 300},
	{"SYNAPSE_WAIT_TIMEOUT", "0", F_WAIT, 0},
	{"SYNAPSE_WAIT_TIMEOUT", "15", F_WAIT, 15},
	{"METRICS_PORT", "0", F_METRICS_PORT, 0},
	{"METRICS_PORT", "19464", F_METRICS_PORT, 19464},
	{"METRICS_PORT", "65535", F_METRICS_PORT, 65535},
};

static int field_value(const struct config *cfg, enum field f)
{
	switch (f) {
	case F_LOG_LEVEL:
		return cfg->log_level;
	case F_LOG_ECS:
		return cfg->log_ecs;
	case F_LISTEN_PORT:
		return cfg->listen_port;
	case F_RECONCILE:
		return cfg->reconcile_interval;
	case F_METRICS_PORT:
		return cfg->metrics_port;
	default:
		return cfg->synapse_wait_timeout;
	}
}

static void test_value_table(void **state)
{
	int failures = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(value_cases) / sizeof(value_cases[0]); i++) {
		const struct value_case *c = &value_cases[i];
		struct kv env[2] = {{c->var, c->value}, {NULL, NULL}};
		struct config cfg;
		char err[512], log[4096];

		if (load(&cfg, env, CONFIG_SERVE, err, sizeof(err), log, sizeof(log)) != 0) {
			print_error("%s=%s: have error \"%s\", want %d\n", c->var, c->value, err, c->want);
			failures++;
		} else if (field_value(&cfg, c->field) != c->want) {
			print_error("%s=%s: have %d, want %d\n", c->var, c->value, field_value(&cfg, c->field),
				    c->want);
			failures++;
		}
		config_free(&cfg);
	}
	assert_int_equal(failures, 0);
}

/* ---- every error ------------------------------------------------------ */

struct error_case {
	const char *name;
	enum config_need need;
	struct kv env[MAX_KV];
	const char *want_var; /* the message must begin with "VAR:" */
	const char *also;     /* and contain this, when set */
};

static const struct error_case error_cases[] = {
	{"secret unset", CONFIG_SERVE, {{"SYNAPSE_REGISTRATION_SECRET", NULL}}, "SYNAPSE_REGISTRATION_SECRET", NULL},
	{"secret empty", CONFIG_SERVE, {{"SYNAPSE_REGISTRATION_SECRET", ""}}, "SYNAPSE_REGISTRATION_SECRET", NULL},
	{"manifest not JSON", CONFIG_SERVE, {{"KRAFTWERK_MANIFEST", "$T/not-json.json"}}, "KRAFTWERK_MANIFEST", NULL},
	{"manifest an array", CONFIG_SERVE, {{"KRAFTWERK_MANIFEST", "$T/array.json"}}, "KRAFTWERK_MANIFEST", NULL},
	{"manifest without deployment",
	 CONFIG_SERVE,
	 {{"KRAFTWERK_MANIFEST", "$T/no-deployment.json"}},
	 "KRAFTWERK_MANIFEST",
	 "deployment"},
	{"manifest without certcn",
	 CONFIG_SERVE,
	 {{"KRAFTWERK_MANIFEST", "$T/no-certcn.json"}},
	 "KRAFTWERK_MANIFEST",
	 "rasenmaeher.certcn"},
	{"manifest without product.dns",
	 CONFIG_SERVE,
	 {{"KRAFTWERK_MANIFEST", "$T/no-dns.json"}},
	 "KRAFTWERK_MANIFEST",
	 "product.dns"},
	{"manifest deployment a number",
	 CONFIG_SERVE,
	 {{"KRAFTWERK_MANIFEST", "$T/deployment-number.json"}},
	 "KRAFTWERK_MANIFEST",
	 "deployment"},
	{"product.dns without a dot",
	 CONFIG_SERVE,
	 {{"KRAFTWERK_MANIFEST", "$T/dns-no-dot.json"}},
	 "SERVER_DOMAIN",
	 "product.dns"},
	{"product.dns with nothing after the dot",
	 CONFIG_SERVE,
	 {{"KRAFTWERK_MANIFEST", "$T/dns-trailing-dot.json"}},
	 "SERVER_DOMAIN",
	 "product.dns"},
	{"deployment cannot form an alias",
	 CONFIG_SERVE,
	 {{"KRAFTWERK_MANIFEST", "$T/bad-deployment.json"}},
	 "KRAFTWERK_MANIFEST",
	 "deployment"},
	{"SYNAPSE_URL ftp scheme", CONFIG_SERVE, {{"SYNAPSE_URL", "ftp://synapse:8008"}}, "SYNAPSE_URL", NULL},
	{"SYNAPSE_URL without scheme", CONFIG_SERVE, {{"SYNAPSE_URL", "synapse:8008"}}, "SYNAPSE_URL", NULL},
	{"MTLS_TRUSTED_PROXIES empty", CONFIG_SERVE, {{"MTLS_TRUSTED_PROXIES", ""}}, "MTLS_TRUSTED_PROXIES", "empty"},
	{"MTLS_TRUSTED_PROXIES only commas",
	 CONFIG_SERVE,
	 {{"MTLS_TRUSTED_PROXIES", " , "}},
	 "MTLS_TRUSTED_PROXIES",
	 "empty"},
	{"INTEROP_BOT_USERNAME invalid",
	 CONFIG_SERVE,
	 {{"INTEROP_BOT_USERNAME", "bad name"}},
	 "INTEROP_BOT_USERNAME",
	 NULL},
	{"INTEROP_BOT_USERNAME the admin bot",
	 CONFIG_SERVE,
	 {{"INTEROP_BOT_USERNAME", "MatrixRMAPI-Bot"}},
	 "INTEROP_BOT_USERNAME",
	 "SYNAPSE_BOT_USERNAME"},
	{"MAX_CONNECTIONS_PER_ADDRESS -1",
	 CONFIG_SERVE,
	 {{"MAX_CONNECTIONS_PER_ADDRESS", "-1"}},
	 "MAX_CONNECTIONS_PER_ADDRESS",
	 NULL},
	{"METRICS_PORT -1", CONFIG_SERVE, {{"METRICS_PORT", "-1"}}, "METRICS_PORT", NULL},
	{"METRICS_PORT 65536", CONFIG_SERVE, {{"METRICS_PORT", "65536"}}, "METRICS_PORT", NULL},
	{"METRICS_PORT abc", CONFIG_SERVE, {{"METRICS_PORT", "abc"}}, "METRICS_PORT", NULL},
	{"METRICS_PORT LISTEN_PORT's, same address",
	 CONFIG_SERVE,
	 {{"METRICS_PORT", "4625"}, {"LISTEN_ADDRESS", "127.0.0.1"}},
	 "METRICS_PORT",
	 "LISTEN_PORT"},
	{"METRICS_PORT LISTEN_PORT's, wildcard listener",
	 CONFIG_SERVE,
	 {{"METRICS_PORT", "8012"}, {"LISTEN_PORT", "8012"}},
	 "METRICS_PORT",
	 "LISTEN_PORT"},
	{"METRICS_ADDRESS a name", CONFIG_SERVE, {{"METRICS_ADDRESS", "localhost"}}, "METRICS_ADDRESS", "localhost"},
	{"METRICS_ADDRESS with a port", CONFIG_SERVE, {{"METRICS_ADDRESS", "127.0.0.1:9464"}}, "METRICS_ADDRESS", NULL},
	{"METRICS_ADDRESS bad, client", CONFIG_CLIENT, {{"METRICS_ADDRESS", "300.1.1.1"}}, "METRICS_ADDRESS", NULL},
	{"LISTEN_PORT 0", CONFIG_SERVE, {{"LISTEN_PORT", "0"}}, "LISTEN_PORT", NULL},
	{"LISTEN_PORT 70000", CONFIG_SERVE, {{"LISTEN_PORT", "70000"}}, "LISTEN_PORT", NULL},
	{"LISTEN_PORT abc", CONFIG_SERVE, {{"LISTEN_PORT", "abc"}}, "LISTEN_PORT", NULL},
	{"LISTEN_PORT -1", CONFIG_SERVE, {{"LISTEN_PORT", "-1"}}, "LISTEN_PORT", NULL},
	{"LISTEN_PORT trailing junk", CONFIG_SERVE, {{"LISTEN_PORT", "80x"}}, "LISTEN_PORT", NULL},
	{"RECONCILE_INTERVAL 0", CONFIG_SERVE, {{"RECONCILE_INTERVAL", "0"}}, "RECONCILE_INTERVAL", NULL},
	{"RECONCILE_INTERVAL abc", CONFIG_SERVE, {{"RECONCILE_INTERVAL", "abc"}}, "RECONCILE_INTERVAL", NULL},
	{"SYNAPSE_WAIT_TIMEOUT -1", CONFIG_SERVE, {{"SYNAPSE_WAIT_TIMEOUT", "-1"}}, "SYNAPSE_WAIT_TIMEOUT", NULL},
	{"SYNAPSE_WAIT_TIMEOUT abc", CONFIG_SERVE, {{"SYNAPSE_WAIT_TIMEOUT", "abc"}}, "SYNAPSE_WAIT_TIMEOUT", NULL},
	{"LOG_LEVEL bogus", CONFIG_SERVE, {{"LOG_LEVEL", "bogus"}}, "LOG_LEVEL", NULL},
	{"LOG_LEVEL too high", CONFIG_SERVE, {{"LOG_LEVEL", "99"}}, "LOG_LEVEL", NULL},
	{"LOG_LEVEL bogus, client", CONFIG_CLIENT, {{"LOG_LEVEL", "loud"}}, "LOG_LEVEL", NULL},
	{"LOG_CONSOLE_FORMATTER json",
	 CONFIG_SERVE,
	 {{"LOG_CONSOLE_FORMATTER", "json"}},
	 "LOG_CONSOLE_FORMATTER",
	 NULL},
	{"LOG_CONSOLE_FORMATTER pretty",
	 CONFIG_SERVE,
	 {{"LOG_CONSOLE_FORMATTER", "pretty"}},
	 "LOG_CONSOLE_FORMATTER",
	 NULL},
	{"TLS_CERT_FILE without TLS_KEY_FILE",
	 CONFIG_SERVE,
	 {{"TLS_CERT_FILE", "$T/cert.pem"}, {"TLS_CLIENT_CA_FILE", "$T/ca.pem"}},
	 "TLS_KEY_FILE",
	 NULL},
	{"TLS_KEY_FILE without TLS_CERT_FILE",
	 CONFIG_SERVE,
	 {{"TLS_KEY_FILE", "$T/key.pem"}, {"TLS_CLIENT_CA_FILE", "$T/ca.pem"}},
	 "TLS_CERT_FILE",
	 NULL},
	{"TLS_CERT_FILE without TLS_CLIENT_CA_FILE",
	 CONFIG_SERVE,
	 {{"TLS_CERT_FILE", "$T/cert.pem"}, {"TLS_KEY_FILE", "$T/key.pem"}},
	 "TLS_CLIENT_CA_FILE",
	 NULL},
	{"unreadable TLS_CERT_FILE",
	 CONFIG_SERVE,
	 {{"TLS_CERT_FILE", "$T/missing-cert.pem"},
	  {"TLS_KEY_FILE", "$T/key.pem"},
	  {"TLS_CLIENT_CA_FILE", "$T/ca.pem"}},
	 "TLS_CERT_FILE",
	 "missing-cert.pem"},
	{"unreadable TLS_KEY_FILE",
	 CONFIG_SERVE,
	 {{"TLS_CERT_FILE", "$T/cert.pem"},
	  {"TLS_KEY_FILE", "$T/missing-key.pem"},
	  {"TLS_CLIENT_CA_FILE", "$T/ca.pem"}},
	 "TLS_KEY_FILE",
	 "missing-key.pem"},
	{"unreadable TLS_CLIENT_CA_FILE",
	 CONFIG_SERVE,
	 {{"TLS_CERT_FILE", "$T/cert.pem"},
	  {"TLS_KEY_FILE", "$T/key.pem"},
	  {"TLS_CLIENT_CA_FILE", "$T/missing-ca.pem"}},
	 "TLS_CLIENT_CA_FILE",
	 "missing-ca.pem"},
	{"unreadable TLS_CRL_FILE",
	 CONFIG_SERVE,
	 {{"TLS_CERT_FILE", "$T/cert.pem"},
	  {"TLS_KEY_FILE", "$T/key.pem"},
	  {"TLS_CLIENT_CA_FILE", "$T/ca.pem"},
	  {"TLS_CRL_FILE", "$T/missing-crl.pem"}},
	 "TLS_CRL_FILE",
	 "missing-crl.pem"},
	{"SYNAPSE_BOT_USERNAME invalid",
	 CONFIG_SERVE,
	 {{"SYNAPSE_BOT_USERNAME", "Bad Name!"}},
	 "SYNAPSE_BOT_USERNAME",
	 NULL},
	{"SYNAPSE_BOT_USERNAME with colon",
	 CONFIG_SERVE,
	 {{"SYNAPSE_BOT_USERNAME", "bot:x"}},
	 "SYNAPSE_BOT_USERNAME",
	 NULL},
};

static void test_error_table(void **state)
{
	int failures = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
		const struct error_case *c = &error_cases[i];
		struct config cfg;
		char err[1024], log[8192], prefix[64];
		int rc;

		rc = load(&cfg, c->env, c->need, err, sizeof(err), log, sizeof(log));
		snprintf(prefix, sizeof(prefix), "%s:", c->want_var);
		if (rc >= ERRTEXT_CONFIG || rc <= ERRTEXT_CONFIG - 100 ||
		    strcmp(config_strerror(rc), "unknown error") == 0) {
			print_error("%s: have rc %d, want a CONFIG_E* code\n", c->name, rc);
			failures++;
		} else if (strncmp(err, prefix, strlen(prefix)) != 0) {
			print_error("%s: have \"%s\", want a message beginning \"%s\"\n", c->name, err, prefix);
			failures++;
		} else if (c->also && !strstr(err, c->also)) {
			print_error("%s: have \"%s\", want it to mention \"%s\"\n", c->name, err, c->also);
			failures++;
		} else if (strchr(err, '\n')) {
			print_error("%s: have a multi-line message \"%s\", want one line\n", c->name, err);
			failures++;
		}
		if (strstr(err, SECRET)) {
			print_error("%s: the error message contains the registration secret\n", c->name);
			failures++;
		}
		config_free(&cfg);
	}
	assert_int_equal(failures, 0);
}

static void test_config_free(void **state)
{
	struct config cfg;
	char err[512], log[4096];

	(void)state;
	config_free(NULL);
	assert_int_equal(load(&cfg, NULL, CONFIG_SERVE, err, sizeof(err), log, sizeof(log)), 0);
	config_free(&cfg);
	assert_null(cfg.registration_secret);
	assert_null(cfg.synapse_url);
	assert_null(cfg.server_domain);
	config_free(&cfg); /* twice is harmless */
}

/* The start-up line: every setting by name, the secret and a URL's user
 * information never. */
static void test_describe_masks_secrets(void **state)
{
	static const struct kv env[] = {
		{"SYNAPSE_URL", "https://bob:hunter2-pw@synapse.example:8448"},
		{"SYNAPSE_PUBLIC_BASEURL", "https://alice:pub-pw@matrix.example/"},
		{"LISTEN_PORT", "4711"},
		{NULL, NULL},
	};
	struct config cfg;
	char err[512], log[4096], line[CONFIG_DESCRIBE_MAX];
	static const char *const want[] = {
		"SYNAPSE_URL=https://***@synapse.example:8448/",
		"SYNAPSE_REGISTRATION_SECRET=(set, not shown)",
		"SYNAPSE_PUBLIC_BASEURL=https://***@matrix.example/",
		"LISTEN_PORT=4711",
		"METRICS_PORT=9464",
		"DATABASE_PATH=",
		"SYNAPSE_TOKEN_FILE=",
		"TLS_CERT_FILE=(unset)",
		"LOG_CONSOLE_FORMATTER=local",
		"deployment=golden-monkey",
	};
	static const char *const hidden[] = {SECRET, "hunter2", "bob", "alice", "pub-pw"};

	(void)state;
	assert_int_equal(load(&cfg, env, CONFIG_SERVE, err, sizeof(err), log, sizeof(log)), 0);
	config_describe(&cfg, line, sizeof(line));
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (!strstr(line, want[i]))
			fail_msg("have \"%s\", want it to hold \"%s\"", line, want[i]);
	for (size_t i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++)
		if (strstr(line, hidden[i]))
			fail_msg("the start-up line shows \"%s\": %s", hidden[i], line);
	/* summaries name Synapse by the masked URL too */
	assert_string_equal(cfg.synapse_url_shown, "https://***@synapse.example:8448/");
	assert_string_equal(cfg.synapse_url, "https://bob:hunter2-pw@synapse.example:8448");
	config_free(&cfg);

	assert_int_equal(load(&cfg, NULL, CONFIG_CLIENT, err, sizeof(err), log, sizeof(log)), 0);
	assert_string_equal(cfg.synapse_url_shown, "http://synapse:8008"); /* nothing to hide: as written */
	config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_default_manifest_path),
		cmocka_unit_test(test_manifest_parsed),
		cmocka_unit_test(test_manifest_minimal),
		cmocka_unit_test(test_server_domain_env_overrides),
		cmocka_unit_test(test_manifest_missing_fallback),
		cmocka_unit_test(test_every_setting_read),
		cmocka_unit_test(test_client_needs_no_secret),
		cmocka_unit_test(test_value_table),
		cmocka_unit_test(test_error_table),
		cmocka_unit_test(test_config_free),
		cmocka_unit_test(test_describe_masks_secrets),
	};

	log_init(LOG_LVL_DEBUG, 0); /* every log line is checked for the secret */
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
