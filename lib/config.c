/* config: environment + manifest -> struct config. See config.h.
 * Every check names the variable it is about; values of secrets are never
 * echoed. Defaults follow the original Python service. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "kube.h"
#include "log.h"
#include "matrixid.h"

#define DEFAULT_MANIFEST "/pvarki/kraftwerk-init.json"

static int fail(char *err, size_t errlen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int load_kube(struct config *cfg, config_getenv_fn env, char *err, size_t errlen);
static const struct errtext config_errors[] = {
	{CONFIG_EVALUE, "a setting has a value it may not have"},
	{CONFIG_EMISSING, "a required setting is not set"},
	{CONFIG_EUNREADABLE, "a file a setting names cannot be read"},
	{CONFIG_EMANIFEST, "the deployment manifest is not usable"},
	{CONFIG_ENOMEM, "out of memory reading the settings"},
};

const char *config_strerror(int code)
{
	return ERRTEXT_LOOKUP(config_errors, code);
}

/* Writes the particulars to err and returns code. */
static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	/* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): a false positive of clang 14 (va_start is on the line above) */
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return code;
}

/* The value of name, or NULL when unset or empty. */
static const char *get(config_getenv_fn env, const char *name)
{
	const char *v = env(name);

	return (v && *v) ? v : NULL;
}

static char *dup_or(config_getenv_fn env, const char *name, const char *dflt)
{
	const char *v = get(env, name);

	return v ? strdup(v) : (dflt ? strdup(dflt) : NULL);
}

static int parse_int(config_getenv_fn env, const char *name, int dflt, long min, long max, int *out, char *err,
		     size_t errlen)
{
	const char *v = get(env, name);
	char *end;
	long n;

	if (!v) {
		*out = dflt;
		return 0;
	}
	errno = 0;
	n = strtol(v, &end, 10);
	if (*end != '\0' || errno || n < min || n > max)
		return fail(err, errlen, CONFIG_EVALUE, "%s: must be a whole number from %ld to %ld, got \"%s\"", name,
			    min, max, v);
	*out = (int)n;
	return 0;
}

/* Manifest key by dotted path; a string or NULL. */
static const char *manifest_str(json_t *root, const char *path)
{
	char buf[128], *save = NULL, *tok;
	json_t *cur = root;

	snprintf(buf, sizeof(buf), "%s", path);
	for (tok = strtok_r(buf, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save))
		cur = json_is_object(cur) ? json_object_get(cur, tok) : NULL;
	return json_is_string(cur) ? json_string_value(cur) : NULL;
}

static int load_manifest(struct config *cfg, char *err, size_t errlen)
{
	static const struct {
		const char *key;
		int required;
	} keys[] = {
		{"deployment", 1},  {"rasenmaeher.certcn", 1}, {"product.dns", 1}, {"rasenmaeher.init.base_uri", 0},
		{"product.uri", 0},
	};
	char **dst[] = {&cfg->deployment, &cfg->certcn, &cfg->product_dns, &cfg->rm_base_uri, &cfg->product_uri};
	json_error_t jerr;
	json_t *root = NULL;
	int rc = CONFIG_EMANIFEST;

	if (access(cfg->manifest_path, F_OK) != 0) {
		log_warnx("config: manifest %s not found; using the fallback values "
			  "(deployment manifest_notfound)",
			  cfg->manifest_path);
		cfg->manifest_found = 0;
		cfg->deployment = strdup("manifest_notfound");
		cfg->certcn = strdup("rasenmaeher");
		cfg->product_dns = strdup("matrix.localmaeher.dev.pvarki.fi");
		cfg->rm_base_uri = strdup("https://localmaeher.dev.pvarki.fi:4439/");
		cfg->product_uri = strdup("https://matrix.localmaeher.dev.pvarki.fi:4626/");
		return 0;
	}
	cfg->manifest_found = 1;
	root = json_load_file(cfg->manifest_path, 0, &jerr);
	if (!root) {
		fail(err, errlen, CONFIG_EMANIFEST, "KRAFTWERK_MANIFEST: %s is not valid JSON: %s (line %d)",
		     cfg->manifest_path, jerr.text, jerr.line);
		goto out;
	}
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const char *v = manifest_str(root, keys[i].key);

		if (!v && keys[i].required) {
			fail(err, errlen, CONFIG_EMANIFEST, "KRAFTWERK_MANIFEST: %s has no string \"%s\"",
			     cfg->manifest_path, keys[i].key);
			goto out;
		}
		*dst[i] = strdup(v ? v : "");
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

/* url with its user information (https://user:password@host/, either may
 * be a credential) replaced by "***"; parsed by libcurl as synapse.c's
 * requests are. */
static void url_masked(const char *url, char *out, size_t outlen)
{
	CURLU *u = curl_url();
	char *user = NULL, *pw = NULL, *s = NULL;

	snprintf(out, outlen, "(not shown: does not parse as a URL)");
	if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
		goto out;
	if (curl_url_get(u, CURLUPART_USER, &user, 0) != CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PASSWORD, &pw, 0) != CURLUE_OK) {
		snprintf(out, outlen, "%s", url); /* nothing to hide: as written */
		goto out;
	}
	if (curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_USER, "***", 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK)
		snprintf(out, outlen, "%s", s);
out:
	if (pw)
		explicit_bzero(pw, strlen(pw));
	curl_free(user);
	curl_free(pw);
	curl_free(s);
	curl_url_cleanup(u);
}

static int check_readable(const char *name, const char *path, char *err, size_t errlen)
{
	if (path && access(path, R_OK) != 0)
		return fail(err, errlen, CONFIG_EUNREADABLE, "%s: cannot read %s: %s", name, path, strerror(errno));
	return 0;
}

static int is_wildcard(const char *addr)
{
	return strcmp(addr, "0.0.0.0") == 0 || strcmp(addr, "::") == 0;
}

/* The metrics listener: a numeric address (it is bound to exactly that
 * one) and a port, 0 turning it off; not LISTEN_PORT where the two would
 * share a socket address. */
static int load_metrics(struct config *cfg, config_getenv_fn env, char *err, size_t errlen)
{
	unsigned char addr[sizeof(struct in6_addr)];

	cfg->metrics_address = dup_or(env, "METRICS_ADDRESS", "127.0.0.1");
	if (inet_pton(AF_INET, cfg->metrics_address, addr) != 1 && inet_pton(AF_INET6, cfg->metrics_address, addr) != 1)
		return fail(err, errlen, CONFIG_EVALUE,
			    "METRICS_ADDRESS: must be a numeric IPv4 or IPv6 address, got \"%s\"",
			    cfg->metrics_address);
	if (parse_int(env, "METRICS_PORT", 9464, 0, 65535, &cfg->metrics_port, err, errlen) != 0)
		return CONFIG_EVALUE;
	if (cfg->metrics_port != 0 && cfg->metrics_port == cfg->listen_port &&
	    (strcmp(cfg->metrics_address, cfg->listen_address) == 0 || is_wildcard(cfg->metrics_address) ||
	     is_wildcard(cfg->listen_address)))
		return fail(err, errlen, CONFIG_EVALUE,
			    "METRICS_PORT: %d is LISTEN_PORT too (on %s); give the metrics a port of their own",
			    cfg->metrics_port, cfg->listen_address);
	return 0;
}

int config_load(struct config *cfg, config_getenv_fn env, enum config_need need, char *err, size_t errlen)
{
	const char *v;
	char mxid[300], why[128];
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	cfg->log_level = LOG_LVL_INFO;
	if ((v = get(env, "LOG_LEVEL")) && log_level_parse(v, &cfg->log_level) != 0)
		return fail(err, errlen, CONFIG_EVALUE,
			    "LOG_LEVEL: must be debug, info, warning, error or 10-50, got \"%s\"", v);
	v = get(env, "LOG_CONSOLE_FORMATTER");
	if (v && strcmp(v, "ecs") != 0 && strcmp(v, "local") != 0)
		return fail(err, errlen, CONFIG_EVALUE,
			    "LOG_CONSOLE_FORMATTER: must be \"local\" or \"ecs\", got \"%s\"", v);
	cfg->log_ecs = v && strcmp(v, "ecs") == 0;

	cfg->synapse_url = dup_or(env, "SYNAPSE_URL", "http://synapse:8008");
	if (strncmp(cfg->synapse_url, "http://", 7) != 0 && strncmp(cfg->synapse_url, "https://", 8) != 0)
		return fail(err, errlen, CONFIG_EVALUE, "SYNAPSE_URL: must start with http:// or https://");
	while (strlen(cfg->synapse_url) > 8 && cfg->synapse_url[strlen(cfg->synapse_url) - 1] == '/')
		cfg->synapse_url[strlen(cfg->synapse_url) - 1] = '\0';
	{
		char shown[1024];

		url_masked(cfg->synapse_url, shown, sizeof(shown));
		cfg->synapse_url_shown = strdup(shown);
	}

	if ((v = env("SYNAPSE_REGISTRATION_SECRET")) && *v)
		cfg->registration_secret = strdup(v);
	else if (need == CONFIG_SERVE)
		return fail(err, errlen, CONFIG_EMISSING,
			    "SYNAPSE_REGISTRATION_SECRET: required (the shared secret for bot registration)%s",
			    v ? ", but it is empty" : ", but it is not set");

	cfg->bot_username = dup_or(env, "SYNAPSE_BOT_USERNAME", "matrixrmapi-bot");
	/* Synapse lower-cases localparts at registration; so do we, or the
	 * whoami check could never match the bot's real ID. */
	for (char *p = cfg->bot_username; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	cfg->token_file = dup_or(env, "SYNAPSE_TOKEN_FILE", "/data/persistent/synapse_admin_token");
	cfg->interop_bot_username = dup_or(env, "INTEROP_BOT_USERNAME", "battlelog-bot");
	for (char *p = cfg->interop_bot_username; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (asprintf(&cfg->interop_token_file, "%s.interop", cfg->token_file) < 0) {
		cfg->interop_token_file = NULL;
		return fail(err, errlen, CONFIG_ENOMEM, "SYNAPSE_TOKEN_FILE: out of memory");
	}
	cfg->manifest_path = dup_or(env, "KRAFTWERK_MANIFEST", DEFAULT_MANIFEST);
	if ((rc = load_manifest(cfg, err, errlen)) != 0)
		return rc;

	if ((v = get(env, "SERVER_DOMAIN"))) {
		cfg->server_domain = strdup(v);
	} else {
		const char *dot = strchr(cfg->product_dns, '.');

		if (!dot || !dot[1])
			return fail(
				err, errlen, CONFIG_EMISSING,
				"SERVER_DOMAIN: not set, and the manifest's product.dns \"%s\" has no domain after its first label",
				cfg->product_dns);
		cfg->server_domain = strdup(dot + 1);
	}
	if (matrixid_from_callsign(cfg->bot_username, cfg->server_domain, mxid, sizeof(mxid), why, sizeof(why)) != 0)
		return fail(err, errlen, CONFIG_EVALUE, "SYNAPSE_BOT_USERNAME: %s", why);
	if (matrixid_from_callsign(cfg->interop_bot_username, cfg->server_domain, mxid, sizeof(mxid), why,
				   sizeof(why)) != 0)
		return fail(err, errlen, CONFIG_EVALUE, "INTEROP_BOT_USERNAME: %s", why);
	if (strcmp(cfg->interop_bot_username, cfg->bot_username) == 0)
		return fail(err, errlen, CONFIG_EVALUE,
			    "INTEROP_BOT_USERNAME: \"%s\" is also SYNAPSE_BOT_USERNAME; the ingest bot "
			    "must be an account of its own",
			    cfg->interop_bot_username);
	if (matrixid_from_callsign(cfg->deployment, cfg->server_domain, mxid, sizeof(mxid), why, sizeof(why)) != 0)
		return fail(err, errlen, CONFIG_EVALUE, "KRAFTWERK_MANIFEST: deployment \"%s\" cannot name rooms: %s",
			    cfg->deployment, why);

	cfg->database_path = dup_or(env, "DATABASE_PATH", "/data/persistent/matrixrmapi.db");
	cfg->listen_address = dup_or(env, "LISTEN_ADDRESS", "0.0.0.0");
	if (parse_int(env, "LISTEN_PORT", 4625, 1, 65535, &cfg->listen_port, err, errlen) != 0)
		return CONFIG_EVALUE;

	cfg->tls_cert_file = dup_or(env, "TLS_CERT_FILE", NULL);
	cfg->tls_key_file = dup_or(env, "TLS_KEY_FILE", NULL);
	cfg->tls_client_ca_file = dup_or(env, "TLS_CLIENT_CA_FILE", NULL);
	cfg->tls_crl_file = dup_or(env, "TLS_CRL_FILE", NULL);
	cfg->tls_priorities = dup_or(env, "TLS_PRIORITIES", CONFIG_TLS_PRIORITIES);
	if (cfg->tls_cert_file && !cfg->tls_key_file)
		return fail(err, errlen, CONFIG_EMISSING, "TLS_KEY_FILE: required when TLS_CERT_FILE is set");
	if (cfg->tls_key_file && !cfg->tls_cert_file)
		return fail(err, errlen, CONFIG_EMISSING, "TLS_CERT_FILE: required when TLS_KEY_FILE is set");
	if (cfg->tls_cert_file && !cfg->tls_client_ca_file)
		return fail(err, errlen, CONFIG_EMISSING, "TLS_CLIENT_CA_FILE: required when TLS_CERT_FILE is set");
	if (need == CONFIG_SERVE && (check_readable("TLS_CERT_FILE", cfg->tls_cert_file, err, errlen) ||
				     check_readable("TLS_KEY_FILE", cfg->tls_key_file, err, errlen) ||
				     check_readable("TLS_CLIENT_CA_FILE", cfg->tls_client_ca_file, err, errlen) ||
				     check_readable("TLS_CRL_FILE", cfg->tls_crl_file, err, errlen)))
		return CONFIG_EUNREADABLE;

	cfg->mtls_header_name = dup_or(env, "MTLS_HEADER_NAME", "X-ClientCert-DN");
	/* Set but empty is a mistake, not "the default": refusing it beats
	 * silently trusting loopback. */
	if ((v = env("MTLS_TRUSTED_PROXIES")) && v[strspn(v, " \t,")] == '\0')
		return fail(err, errlen, CONFIG_EVALUE,
			    "MTLS_TRUSTED_PROXIES: set but empty; name the proxy addresses or CIDRs "
			    "whose DN header is believed (unset means 127.0.0.1,::1)");
	cfg->mtls_trusted_proxies = dup_or(env, "MTLS_TRUSTED_PROXIES", "127.0.0.1,::1");
	if ((v = get(env, "SYNAPSE_PUBLIC_BASEURL"))) {
		cfg->synapse_public_baseurl = strdup(v);
	} else {
		char buf[512];

		snprintf(buf, sizeof(buf), "https://synapse.%s", cfg->server_domain);
		cfg->synapse_public_baseurl = strdup(buf);
	}
	if ((v = get(env, "UI_DIR"))) {
		struct stat st;

		if (need == CONFIG_SERVE) {
			/* The real path: symlinks above the root are resolved once here;
			 * below it api_ui refuses every symlink. */
			if ((cfg->ui_dir = realpath(v, NULL)) == NULL)
				return fail(err, errlen, CONFIG_EVALUE, "UI_DIR: cannot use %s: %s", v,
					    strerror(errno));
			if (stat(cfg->ui_dir, &st) != 0 || !S_ISDIR(st.st_mode))
				return fail(err, errlen, CONFIG_EVALUE, "UI_DIR: %s is not a directory", v);
		} else {
			cfg->ui_dir = strdup(v);
		}
	}
	if ((rc = load_metrics(cfg, env, err, errlen)) != 0)
		return rc;
	if (parse_int(env, "MAX_CONNECTIONS_PER_ADDRESS", 64, 0, 100000, &cfg->max_connections_per_address, err,
		      errlen) ||
	    parse_int(env, "RECONCILE_INTERVAL", 60, 1, 86400, &cfg->reconcile_interval, err, errlen) ||
	    parse_int(env, "SYNAPSE_WAIT_TIMEOUT", 300, 0, 86400, &cfg->synapse_wait_timeout, err, errlen))
		return CONFIG_EVALUE;
	return load_kube(cfg, env, err, errlen);
}

/* KUBERNETES_*: where the platform's API server is, when it is a source. */
static int load_kube(struct config *cfg, config_getenv_fn env, char *err, size_t errlen)
{
	const char *v = get(env, "KUBERNETES_SOURCE"), *token = NULL, *ca = NULL;
	char url[512] = "", ns[256], host[256];

	if (!v || strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
		return 0;
	if (strcmp(v, "1") != 0 && strcmp(v, "true") != 0)
		return fail(err, errlen, CONFIG_EVALUE, "KUBERNETES_SOURCE: \"%s\" is not 1, true, 0 or false", v);
	cfg->kube_source = 1;
	if (!get(env, "KUBERNETES_URL") && kube_in_cluster(url, sizeof(url), &token, &ca) != 0)
		return fail(err, errlen, CONFIG_EMISSING,
			    "KUBERNETES_URL: not set, and this is not a pod (no KUBERNETES_SERVICE_HOST or "
			    "service-account token)");
	cfg->kube_url = dup_or(env, "KUBERNETES_URL", url);
	if (cfg->kube_url && cfg->kube_url[0] && cfg->kube_url[strlen(cfg->kube_url) - 1] == '/')
		cfg->kube_url[strlen(cfg->kube_url) - 1] = '\0';
	cfg->kube_token_file = dup_or(env, "KUBERNETES_TOKEN_FILE", token);
	cfg->kube_ca_file = dup_or(env, "KUBERNETES_CA_FILE", ca);
	if ((v = get(env, "KUBERNETES_NAMESPACE")) || (v = get(env, "POD_NAMESPACE")))
		cfg->kube_namespace = strdup(v);
	else if (kube_pod_namespace(ns, sizeof(ns)) == 0)
		cfg->kube_namespace = strdup(ns);
	else
		return fail(err, errlen, CONFIG_EMISSING,
			    "KUBERNETES_NAMESPACE: not set, nor POD_NAMESPACE, and no service-account "
			    "namespace file");
	cfg->kube_admin_roles = dup_or(env, "KUBERNETES_ADMIN_ROLES", "superadmin");
	cfg->lease_name = dup_or(env, "LEASE_NAME", "matrixrmapi-leader");
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "matrixrmapi-%ld", (long)getpid());
	host[sizeof(host) - 1] = '\0';
	cfg->pod_name = dup_or(env, "POD_NAME", host);
	if (!cfg->kube_url || !cfg->kube_namespace || !cfg->kube_admin_roles || !cfg->lease_name || !cfg->pod_name)
		return fail(err, errlen, CONFIG_ENOMEM, "KUBERNETES_SOURCE: out of memory");
	return parse_int(env, "LEASE_DURATION", 15, 5, 3600, &cfg->lease_duration, err, errlen);
}

static void put(char *out, size_t outlen, const char *key, const char *value)
{
	size_t n = strlen(out);

	snprintf(out + n, outlen - n, "%s%s=%s", n ? " " : "", key, value ? value : "(unset)");
}

static void put_int(char *out, size_t outlen, const char *key, int value)
{
	char buf[16];

	snprintf(buf, sizeof(buf), "%d", value);
	put(out, outlen, key, buf);
}

void config_describe(const struct config *cfg, char *out, size_t outlen)
{
	char pub[1024], level[16];

	out[0] = '\0';
	url_masked(cfg->synapse_public_baseurl, pub, sizeof(pub));
	snprintf(level, sizeof(level), "%d", cfg->log_level);
	put(out, outlen, "SYNAPSE_URL", cfg->synapse_url_shown);
	put(out, outlen, "SYNAPSE_REGISTRATION_SECRET", cfg->registration_secret ? "(set, not shown)" : NULL);
	put(out, outlen, "SYNAPSE_BOT_USERNAME", cfg->bot_username);
	put(out, outlen, "SYNAPSE_TOKEN_FILE", cfg->token_file);
	put(out, outlen, "INTEROP_BOT_USERNAME", cfg->interop_bot_username);
	put(out, outlen, "SERVER_DOMAIN", cfg->server_domain);
	put(out, outlen, "KRAFTWERK_MANIFEST", cfg->manifest_path);
	if (!cfg->manifest_found)
		put(out, outlen, "manifest", "(not found: fallback values)");
	put(out, outlen, "deployment", cfg->deployment);
	put(out, outlen, "rasenmaeher.certcn", cfg->certcn);
	put(out, outlen, "product.dns", cfg->product_dns);
	put(out, outlen, "DATABASE_PATH", cfg->database_path);
	put(out, outlen, "LISTEN_ADDRESS", cfg->listen_address);
	put_int(out, outlen, "LISTEN_PORT", cfg->listen_port);
	put(out, outlen, "METRICS_ADDRESS", cfg->metrics_address);
	put_int(out, outlen, "METRICS_PORT", cfg->metrics_port);
	put(out, outlen, "TLS_CERT_FILE", cfg->tls_cert_file);
	put(out, outlen, "TLS_KEY_FILE", cfg->tls_key_file);
	put(out, outlen, "TLS_CLIENT_CA_FILE", cfg->tls_client_ca_file);
	put(out, outlen, "TLS_CRL_FILE", cfg->tls_crl_file);
	put(out, outlen, "TLS_PRIORITIES",
	    cfg->tls_priorities && strcmp(cfg->tls_priorities, CONFIG_TLS_PRIORITIES) == 0 ? "(default)"
											   : cfg->tls_priorities);
	put(out, outlen, "MTLS_HEADER_NAME", cfg->mtls_header_name);
	put(out, outlen, "MTLS_TRUSTED_PROXIES", cfg->mtls_trusted_proxies);
	put(out, outlen, "SYNAPSE_PUBLIC_BASEURL", pub);
	put(out, outlen, "UI_DIR", cfg->ui_dir);
	put_int(out, outlen, "MAX_CONNECTIONS_PER_ADDRESS", cfg->max_connections_per_address);
	put_int(out, outlen, "RECONCILE_INTERVAL", cfg->reconcile_interval);
	put_int(out, outlen, "SYNAPSE_WAIT_TIMEOUT", cfg->synapse_wait_timeout);
	put(out, outlen, "LOG_LEVEL", level);
	put(out, outlen, "LOG_CONSOLE_FORMATTER", cfg->log_ecs ? "ecs" : "local");
	put_int(out, outlen, "KUBERNETES_SOURCE", cfg->kube_source);
	if (cfg->kube_source) {
		put(out, outlen, "KUBERNETES_URL", cfg->kube_url);
		put(out, outlen, "KUBERNETES_TOKEN_FILE", cfg->kube_token_file);
		put(out, outlen, "KUBERNETES_CA_FILE", cfg->kube_ca_file);
		put(out, outlen, "KUBERNETES_NAMESPACE", cfg->kube_namespace);
		put(out, outlen, "KUBERNETES_ADMIN_ROLES", cfg->kube_admin_roles);
		put(out, outlen, "LEASE_NAME", cfg->lease_name);
		put(out, outlen, "POD_NAME", cfg->pod_name);
		put_int(out, outlen, "LEASE_DURATION", cfg->lease_duration);
	}
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	if (cfg->registration_secret)
		explicit_bzero(cfg->registration_secret, strlen(cfg->registration_secret));
	char **fields[] = {&cfg->synapse_url,      &cfg->synapse_url_shown,    &cfg->registration_secret,
			   &cfg->bot_username,     &cfg->token_file,           &cfg->server_domain,
			   &cfg->manifest_path,    &cfg->deployment,           &cfg->certcn,
			   &cfg->rm_base_uri,      &cfg->product_dns,          &cfg->product_uri,
			   &cfg->database_path,    &cfg->listen_address,       &cfg->tls_cert_file,
			   &cfg->tls_key_file,     &cfg->tls_client_ca_file,   &cfg->tls_crl_file,
			   &cfg->mtls_header_name, &cfg->mtls_trusted_proxies, &cfg->synapse_public_baseurl,
			   &cfg->ui_dir,           &cfg->interop_bot_username, &cfg->interop_token_file,
			   &cfg->tls_priorities,   &cfg->metrics_address,      &cfg->kube_url,
			   &cfg->kube_token_file,  &cfg->kube_ca_file,         &cfg->kube_namespace,
			   &cfg->kube_admin_roles, &cfg->lease_name,           &cfg->pod_name};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		free(*fields[i]);
		*fields[i] = NULL;
	}
}
