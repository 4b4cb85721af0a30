/* fuzz_api: the callback body parser and validator, through api_handle as
 * the listener calls it, with a real store in a temporary folder. The first
 * byte of an input picks the route (every route that takes a body:
 * Rasenmaeher's user callbacks, the product endpoints, the interop grant),
 * the rest is the body. Every answer must be a complete response with a
 * status the API documents, and a refused body must change nothing. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "api.h"
#include "config.h"
#include "fuzz.h"
#include "log.h"
#include "store.h"
#include "writer.h"

#define RM "rasenmaeher"

static const struct {
	const char *method, *path;
} routes[] = {
	{"POST", "/api/v1/users/created"},   {"POST", "/api/v1/users/revoked"},
	{"POST", "/api/v1/users/promoted"},  {"POST", "/api/v1/users/demoted"},
	{"PUT", "/api/v1/users/updated"},    {"POST", "/api/v2/clients/fi/info.md"},
	{"POST", "/api/v1/instructions/en"}, {"POST", "/api/v1/clients/fragment"},
	{"POST", "/api/v2/clients/data"},    {"POST", "/api/v2/admin/clients/data"},
	{"POST", "/api/v1/interop/add"},
};

static char dir[] = "/tmp/fuzz_api.XXXXXX";
static char db[64];
static struct config cfg;
static struct store *st, *wst;
static struct writer *w;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct api_env env;

static void cleanup(void)
{
	char path[96];

	writer_free(w);
	store_close(wst);
	store_close(st);
	for (const char *const *s = (const char *const[]){"", "-wal", "-shm", NULL}; *s; s++) {
		snprintf(path, sizeof(path), "%s%s", db, *s);
		unlink(path);
	}
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[256];

	log_init(50, 0); /* critical only: a refused body is logged, and that is not news here */
	if (mkdtemp(dir) == NULL) {
		perror("fuzz_api: mkdtemp");
		exit(1);
	}
	snprintf(db, sizeof(db), "%s/db.sqlite", dir);
	if (store_open(db, &st, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_api: store_open: %s\n", err);
		exit(1);
	}
	if (atexit(cleanup) != 0)
		abort();
	cfg.server_domain = "example.org";
	cfg.deployment = "dep";
	cfg.certcn = RM;
	cfg.synapse_public_baseurl = "https://synapse.example.org";
	cfg.bot_username = "matrixrmapi-bot";
	cfg.interop_bot_username = "battlelog-bot";
	env.cfg = &cfg;
	env.st = st;
	env.store_lock = &lock;
	/* Callbacks are committed by the writer, on its own connection, as in
	 * the service. */
	if (store_open(db, &wst, err, sizeof(err)) != 0 || writer_start(wst, &w) != 0) {
		fprintf(stderr, "fuzz_api: the writer: %s\n", err);
		exit(1);
	}
	env.writer = w;
	return 0;
}

/* Bumped whenever another connection (the writer) committed a change. */
static long data_version(void)
{
	sqlite3_stmt *stmt = NULL;
	long v = -1;

	if (sqlite3_prepare_v2(store_db(st), "PRAGMA data_version", -1, &stmt, NULL) == SQLITE_OK &&
	    sqlite3_step(stmt) == SQLITE_ROW)
		v = (long)sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct api_response out;
	struct api_request req = {0};
	size_t r;
	int changes;
	long version;

	if (size == 0)
		return 0;
	r = data[0] % (sizeof(routes) / sizeof(routes[0]));
	req.method = routes[r].method;
	req.path = routes[r].path;
	req.cn = RM;
	req.body = size > 1 ? (const char *)data + 1 : NULL;
	req.body_len = size - 1;
	changes = sqlite3_total_changes(store_db(st));
	version = data_version();
	api_handle(&env, &req, &out);
	if (out.status < 200 || out.status > 599 || out.content_type == NULL || (out.body == NULL && out.body_len != 0))
		abort();
	if (out.status == 422 && (sqlite3_total_changes(store_db(st)) != changes || data_version() != version))
		abort(); /* a body that fails validation wrote to the store */
	api_response_clear(&out);
	return 0;
}
