/* main: command line. `matrixrmapi [serve]` runs the service: the HTTP API
 * (api/http.c) and the reconciler thread (reconcile/loop.c) over one SQLite
 * store; the other commands are one-shot tools for operators and containers. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>

#include <curl/curl.h>
#include <jansson.h>

#include "adopt.h"
#include "auth.h"
#include "config.h"
#include "embedded.h"
#include "api_call.h"
#include "http.h"
#include "kubesource.h"
#include "log.h"
#include "loop.h"
#include "metrics_listen.h"
#include "status.h"
#include "store.h"

/* Readiness for systemd's Type=notify (meson option systemd): READY=1 once
 * the listener is up, STOPPING=1 when a signal ends the service. */
#ifdef HAVE_SD_NOTIFY
#include <systemd/sd-daemon.h>
#else
#define sd_notify(unset_environment, state) ((void)0)
#endif

static const char usage[] =
	"usage: matrixrmapi [serve]                      run the service\n"
	"       matrixrmapi --reconcile-once [--dry-run]  one full reconcile pass, then exit\n"
	"                                                 (0: Synapse matches; --dry-run prints the plan)\n"
	"       matrixrmapi status [--json]               desired vs observed state, last pass, failures\n"
	"       matrixrmapi adopt [--dry-run] [--json]    seed desired state from what Synapse has (upgrades)\n"
	"       matrixrmapi healthcheck [--host H] [--port P]  exit 0 only if the service is healthy\n"
	"       matrixrmapi openapi                       print the OpenAPI document\n"
	"       matrixrmapi --help | --version\n"
	"Configuration comes from the environment; see README.md.\n";

static const char *env_get(const char *name)
{
	return getenv(name);
}

/* Overwrites a variable's value where the kernel shows it
 * (/proc/PID/environ) and removes it: the copy in cfg is the only one. */
static void env_wipe(const char *name)
{
	char *v = getenv(name);

	if (v) {
		explicit_bzero(v, strlen(v));
		unsetenv(name);
	}
}

/* Reads the configuration; with announce (the commands that talk to
 * Synapse) logs it, secrets masked, as the first line of the run. */
static int load(struct config *cfg, enum config_need need, const char *announce)
{
	const char *format = getenv("LOG_CONSOLE_FORMATTER");
	char err[512], *described = NULL;
	int rc;

	/* The manifest's warning and a configuration error already come out
	 * in the format asked for (one JSON object per line for a log stack). */
	log_init(LOG_LVL_INFO, format && strcmp(format, "ecs") == 0);
	rc = config_load(cfg, env_get, need, err, sizeof(err));
	env_wipe("SYNAPSE_REGISTRATION_SECRET");
	if (rc != 0) {
		log_error("matrixrmapi: configuration error: %s", err);
		config_free(cfg);
		return -1;
	}
	log_init(cfg->log_level, cfg->log_ecs);
	if (announce && (described = malloc(CONFIG_DESCRIBE_MAX)) != NULL) {
		config_describe(cfg, described, CONFIG_DESCRIBE_MAX);
		log_event(LOG_LVL_INFO, &(struct log_fields){.action = "config"}, "matrixrmapi %s %s: %s",
			  MATRIXRMAPI_VERSION, announce, described);
	}
	free(described);
	return 0;
}

static void on_nudge(void *ctx)
{
	loop_nudge(ctx);
}

static int on_health(void *ctx, char *extra, size_t len)
{
	return loop_health(ctx, extra, len);
}

static int on_ingest_token(void *ctx, char *out, size_t len)
{
	return loop_ingest_token(ctx, out, len);
}

/* With the Kubernetes source: the loop writes only while this replica holds
 * the Lease, the bindings follow each pass, and health is the platform's
 * and then the loop's. */
struct wiring {
	struct loop *lp;
	struct kubesource *_Atomic ks; /* set once the loop's thread runs */
};

static int on_may_write(void *ctx)
{
	return kubesource_may_write(atomic_load(&((struct wiring *)ctx)->ks));
}

static void on_pass_done(void *ctx)
{
	kubesource_pass_done(atomic_load(&((struct wiring *)ctx)->ks));
}

static void on_kube_nudge(void *ctx)
{
	loop_nudge(((struct wiring *)ctx)->lp);
}

static void on_leader(void *ctx, int leader)
{
	struct wiring *w = ctx;

	if (leader)
		loop_nudge(w->lp);
	else
		loop_interrupt(w->lp); /* another replica may take over: stop writing now */
}

static int on_kube_health(void *ctx, char *extra, size_t len)
{
	struct wiring *w = ctx;

	return kubesource_health(atomic_load(&w->ks), extra, len) && loop_health(w->lp, extra, len);
}

static int on_kube_ingest_token(void *ctx, char *out, size_t len)
{
	return loop_ingest_token(((struct wiring *)ctx)->lp, out, len);
}

#define SHUTDOWN_LIMIT_S 9

/* A second SIGTERM (or SIGINT) during shutdown ends the process at once. */
static void *second_signal(void *arg)
{
	int sig;

	sigwait(arg, &sig);
	log_warnx("received signal %d again, exiting at once", sig);
	_exit(128 + sig);
}

/* Everything acknowledged is committed already: a shutdown that hangs
 * (a stuck connection, say) ends after SHUTDOWN_LIMIT_S seconds. */
static void *shutdown_limit(void *arg)
{
	(void)arg;
	sleep(SHUTDOWN_LIMIT_S);
	log_warnx("shutdown took longer than %d s; exiting", SHUTDOWN_LIMIT_S);
	_exit(0);
}

static void start_shutdown_guards(const sigset_t *set)
{
	static sigset_t again;
	pthread_t t;

	again = *set;
	if (pthread_create(&t, NULL, second_signal, &again) == 0)
		pthread_detach(t);
	if (pthread_create(&t, NULL, shutdown_limit, NULL) == 0)
		pthread_detach(t);
}

static int cmd_serve(void)
{
	struct config cfg;
	struct store *st = NULL;
	struct auth *a = NULL;
	struct loop *lp = NULL;
	struct http *h = NULL;
	struct metrics_listen *ml = NULL;
	struct api_hooks hooks;
	struct wiring wire = {NULL, NULL};
	struct loop_hooks lhooks = {on_may_write, on_pass_done, &wire};
	struct kubesource_hooks khooks = {on_kube_nudge, on_leader, &wire};
	char err[512];
	sigset_t set;
	int sig, rc = 1;

	if (load(&cfg, CONFIG_SERVE, "serve") != 0)
		return 2;
	/* Block the signals before any thread starts so that only sigwait sees them. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (store_open_serving(cfg.database_path, &st, err, sizeof(err)) < 0 ||
	    auth_new(&cfg, &a, err, sizeof(err)) != 0 ||
	    loop_start(&cfg, cfg.kube_source ? &lhooks : NULL, &lp, err, sizeof(err)) != 0) {
		log_error("matrixrmapi: %s", err);
		goto out;
	}
	wire.lp = lp;
	/* The watch starts after the loop so that its nudges have a loop to
	 * reach; the loop passes nothing while no Lease is held. */
	if (cfg.kube_source) {
		struct kubesource *ks = NULL;

		if (kubesource_start(&cfg, &khooks, &ks, err, sizeof(err)) != 0) {
			log_error("matrixrmapi: %s", err);
			goto out;
		}
		atomic_store(&wire.ks, ks);
	}
	hooks = (struct api_hooks){.nudge = on_nudge, .health = on_health, .ingest_token = on_ingest_token, .ctx = lp};
	if (cfg.kube_source) {
		hooks.health = on_kube_health;
		hooks.ctx = &wire;
		hooks.nudge = on_kube_nudge;
		hooks.ingest_token = on_kube_ingest_token;
	}
	if (http_start(&cfg, st, a, &hooks, &h, err, sizeof(err)) != 0 ||
	    metrics_listen_start(&cfg, &ml, err, sizeof(err)) != 0) {
		log_error("matrixrmapi: %s", err);
		goto out;
	}
	log_info("matrixrmapi %s serving on %s:%d (%s), deployment %s, server %s", MATRIXRMAPI_VERSION,
		 cfg.listen_address, cfg.listen_port, cfg.tls_cert_file ? "native mTLS" : "plain HTTP behind a proxy",
		 cfg.deployment, cfg.server_domain);
	sd_notify(0, "READY=1");
	/* SIGHUP: the renewed server certificate and key for new connections
	 * (the CRL is re-read by itself when its file changes). */
	while (sigwait(&set, &sig) == 0 && sig == SIGHUP) {
		sd_notify(0, "RELOADING=1");
		if (http_reload_tls(h, err, sizeof(err)) == 0)
			log_info("SIGHUP: TLS certificate and key re-read%s",
				 cfg.tls_cert_file ? "" : " (plain HTTP: nothing to do)");
		else
			log_error("SIGHUP: %s; the previous certificate stays in use", err);
		sd_notify(0, "READY=1");
	}
	sd_notify(0, "STOPPING=1");
	log_info("received signal %d, stopping", sig);
	sigdelset(&set, SIGHUP);
	start_shutdown_guards(&set);
	rc = 0;
out:
	/* The pass and its requests stop at once; callbacks in flight still
	 * commit and are answered while the listener winds down. */
	loop_abort(lp);
	kubesource_detach(atomic_load(&wire.ks));
	metrics_listen_stop(ml);
	http_stop(h);
	loop_stop(lp);
	/* After the loop: the Lease is handed back only once nothing writes. */
	kubesource_stop(atomic_load(&wire.ks));
	auth_free(a);
	store_close(st);
	config_free(&cfg);
	return rc;
}

static int cmd_reconcile_once(int dry_run)
{
	struct config cfg;
	char summary[512] = "", *plan = NULL;
	int rc;

	if (load(&cfg, CONFIG_SERVE, dry_run ? "--reconcile-once --dry-run" : "--reconcile-once") != 0)
		return 2;
	rc = loop_run_once(&cfg, dry_run, summary, sizeof(summary), &plan);
	/* A dry run's output is the plan alone (its summary is in the log),
	 * for a person or jq to read; a real run's is the pass's summary. */
	if (!dry_run)
		printf("%s\n", summary);
	else if (plan)
		printf("%s\n", plan);
	free(plan);
	config_free(&cfg);
	return rc == 0 ? 0 : 1;
}

static int cmd_status(int json)
{
	struct config cfg;
	int rc;

	if (load(&cfg, CONFIG_CLIENT, NULL) != 0)
		return 2;
	rc = status_print(&cfg, json);
	config_free(&cfg);
	return rc == 0 ? 0 : 1;
}

static int cmd_adopt(int argc, char **argv)
{
	struct config cfg;
	int dry_run = 0, json = 0, rc;

	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--dry-run") == 0)
			dry_run = 1;
		else if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else {
			fprintf(stderr, "matrixrmapi adopt: unknown option: %s\n%s", argv[i], usage);
			return 2;
		}
	}
	if (load(&cfg, CONFIG_SERVE, dry_run ? "adopt --dry-run" : "adopt") != 0)
		return 2;
	rc = adopt_run(&cfg, dry_run, json);
	config_free(&cfg);
	return rc == 0 ? 0 : 1;
}

static size_t collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	char *buf = userdata;
	size_t have = strlen(buf), n = size * nmemb;

	if (have + n < 4096) {
		memcpy(buf + have, ptr, n);
		buf[have + n] = '\0';
	}
	return n;
}

static int cmd_healthcheck(const char *host, const char *port)
{
	struct config cfg;
	char url[512], body[4096] = "", portbuf[16];
	CURL *c = NULL;
	json_t *reply = NULL;
	long status = 0;
	int healthy = 0;

	if (load(&cfg, CONFIG_CLIENT, NULL) != 0)
		return 2;
	if (!host)
		host = strcmp(cfg.listen_address, "0.0.0.0") == 0 || strcmp(cfg.listen_address, "::") == 0
			       ? "127.0.0.1"
			       : cfg.listen_address;
	if (!port) {
		snprintf(portbuf, sizeof(portbuf), "%d", cfg.listen_port);
		port = portbuf;
	}
	snprintf(url, sizeof(url), "%s://%s%s%s:%s/api/v1/healthcheck", cfg.tls_cert_file ? "https" : "http",
		 strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", port);
	c = curl_easy_init();
	if (!c)
		goto out;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
	/* Our own listener on this host: the public endpoint needs no client
	 * certificate, and the server certificate names the public host. */
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
	if (curl_easy_perform(c) != CURLE_OK) {
		fprintf(stderr, "healthcheck: %s did not answer\n", url);
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	reply = json_loads(body, 0, NULL);
	healthy = status == 200 && json_is_true(json_object_get(reply, "healthy"));
	printf("%s\n", body);
out:
	json_decref(reply);
	curl_easy_cleanup(c);
	config_free(&cfg);
	return healthy ? 0 : 1;
}

int main(int argc, char **argv)
{
	/* No core dumps and no ptrace by other users: memory holds the shared
	 * secret and the bots' tokens. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	const char *cmd = argc > 1 ? argv[1] : "serve";

	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		fputs(usage, stdout);
		return 0;
	}
	if (strcmp(cmd, "--version") == 0) {
		printf("matrixrmapi %s (schema %d)\n", MATRIXRMAPI_VERSION, store_schema_version());
		return 0;
	}
	if (strcmp(cmd, "serve") == 0 && argc <= 2)
		return cmd_serve();
	if (strcmp(cmd, "--reconcile-once") == 0 && (argc == 2 || (argc == 3 && strcmp(argv[2], "--dry-run") == 0)))
		return cmd_reconcile_once(argc == 3);
	if (strcmp(cmd, "status") == 0 && (argc == 2 || (argc == 3 && strcmp(argv[2], "--json") == 0)))
		return cmd_status(argc == 3);
	if (strcmp(cmd, "adopt") == 0)
		return cmd_adopt(argc, argv);
	if (strcmp(cmd, "openapi") == 0 && argc == 2) {
		const struct embedded_file *f = embedded_find("openapi.json");

		/* A document cut short (a full disk, a closed pipe) is a failure. */
		if (fwrite(f->data, 1, f->size, stdout) != f->size || fflush(stdout) != 0) {
			fprintf(stderr, "matrixrmapi: openapi: cannot write the document: %s\n", strerror(errno));
			return 1;
		}
		return 0;
	}
	if (strcmp(cmd, "healthcheck") == 0) {
		const char *host = NULL, *port = NULL;

		for (int i = 2; i < argc; i++) {
			if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
				host = argv[++i];
			else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
				port = argv[++i];
			else
				goto bad;
		}
		return cmd_healthcheck(host, port);
	}
bad:
	fprintf(stderr, "matrixrmapi: unknown command or option: %s\n%s", argv[argc > 1 ? 1 : 0], usage);
	return 2;
}
