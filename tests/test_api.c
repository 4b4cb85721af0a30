/* test_api: routing, authorisation order and request validation of api.c,
 * without the HTTP layer, table-driven. Each case names a request (method,
 * path, client CN, body) and the status and body it must get; failures read
 * "have X, want Y". A real store in a temporary directory shows what was
 * journalled (through the real writer); dropping its journal table shows
 * a store failure is a 503 and nudges nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "api.h"
#include "api_users.h"
#include "config.h"
#include "http.h"
#include "store.h"
#include "writer.h"

#define RM "rasenmaeher"
#define OK_BODY "{\"success\":true,\"extra\":null,\"error\":null}"
#define CB(callsign) "{\"uuid\":\"u-1\",\"callsign\":\"" callsign "\",\"x509cert\":\"PEM\"}"

struct fixture {
	char dir[64];
	char db[96];
	struct config cfg;
	struct store *st;
	pthread_mutex_t lock;
	struct api_hooks hooks;
	struct api_env env;
	int nudges;
};

struct api_case {
	const char *name;
	const char *method, *path, *cn, *body;
	int status;
	const char *want;     /* exact body, or NULL */
	const char *contains; /* substring of the body, or NULL */
	int journalled;       /* journal rows this request adds */
};

static const struct api_case cases[] = {
	/* routing */
	{"unknown path", "GET", "/api/v1/nothing", RM, NULL, 404, "{\"detail\":\"Not Found\"}", NULL, 0},
	{"trailing slash", "GET", "/api/v1/healthcheck/", NULL, NULL, 404, "{\"detail\":\"Not Found\"}", NULL, 0},
	{"empty segment", "POST", "/api/v2/clients//info.md", RM, CB("a"), 404, NULL, "Not Found", 0},
	{"segment too many", "POST", "/api/v1/users/created/x", RM, CB("a"), 404, NULL, "Not Found", 0},
	{"wrong method", "GET", "/api/v1/users/created", RM, NULL, 405, "{\"detail\":\"Method Not Allowed\"}", NULL, 0},
	{"updated is PUT", "POST", "/api/v1/users/updated", RM, CB("a"), 405, NULL, "Method Not Allowed", 0},
	{"HEAD is not GET", "HEAD", "/api/v1/healthcheck", NULL, NULL, 405, NULL, "Method Not Allowed", 0},
	{"404 before 403", "POST", "/api/v1/users/nothing", NULL, CB("a"), 404, NULL, "Not Found", 0},
	{"405 before 403", "GET", "/api/v1/users/created", NULL, NULL, 405, NULL, "Method Not Allowed", 0},
	/* authorisation */
	{"no client on users", "POST", "/api/v1/users/created", NULL, CB("a"), 403, "{\"detail\":\"Forbidden\"}", NULL,
	 0},
	{"other client on users", "POST", "/api/v1/users/created", "someuser", CB("a"), 403, NULL, "Forbidden", 0},
	{"other client on info.md", "POST", "/api/v2/clients/fi/info.md", "someuser", CB("a"), 403, NULL, "Forbidden",
	 0},
	{"no client on instructions", "POST", "/api/v1/instructions/en", NULL, CB("a"), 403, NULL, "Forbidden", 0},
	{"no client on admin description", "GET", "/api/v2/admin/description/en", NULL, NULL, 403, NULL, "Forbidden",
	 0},
	{"403 before 422", "POST", "/api/v1/users/created", "someuser", "{bad", 403, NULL, "Forbidden", 0},
	{"public description", "GET", "/api/v1/description/en", NULL, NULL, 200, NULL, "\"language\":\"en\"", 0},
	/* validation */
	{"malformed JSON", "POST", "/api/v1/users/created", RM, "{\"uuid\": ", 422, NULL, "value_error.jsondecode", 0},
	{"empty body", "POST", "/api/v1/users/created", RM, "", 422,
	 "{\"detail\":[{\"loc\":[\"body\"],\"msg\":\"field required\",\"type\":\"value_error.missing\"}]}", NULL, 0},
	{"not an object", "POST", "/api/v1/users/created", RM, "[1]", 422, NULL, "type_error.dict", 0},
	{"missing field", "POST", "/api/v1/users/created", RM, "{\"uuid\":\"u\",\"callsign\":\"a\"}", 422,
	 "{\"detail\":[{\"loc\":[\"body\",\"x509cert\"],\"msg\":\"field required\",\"type\":\"value_error.missing\"}]}",
	 NULL, 0},
	{"extra field", "POST", "/api/v1/users/created", RM,
	 "{\"uuid\":\"u\",\"callsign\":\"a\",\"x509cert\":\"p\",\"admin\":true}", 422,
	 "{\"detail\":[{\"loc\":[\"body\",\"admin\"],\"msg\":\"extra fields not permitted\","
	 "\"type\":\"value_error.extra\"}]}",
	 NULL, 0},
	{"number is not a string", "POST", "/api/v1/users/created", RM,
	 "{\"uuid\":\"u\",\"callsign\":5,\"x509cert\":\"p\"}", 422,
	 "{\"detail\":[{\"loc\":[\"body\",\"callsign\"],\"msg\":\"str type expected\",\"type\":\"type_error.str\"}]}",
	 NULL, 0},
	{"null is not a string", "POST", "/api/v1/users/created", RM,
	 "{\"uuid\":null,\"callsign\":\"a\",\"x509cert\":\"p\"}", 422, NULL, "type_error.none.not_allowed", 0},
	{"NUL inside a string", "POST", "/api/v1/users/created", RM,
	 "{\"uuid\":\"u\",\"callsign\":\"a\\u0000b\",\"x509cert\":\"p\"}", 422, NULL, "jsondecode", 0},
	{"trailing garbage", "POST", "/api/v1/users/created", RM, CB("a") "x", 422, NULL, "jsondecode", 0},
	{"invalid callsign", "POST", "/api/v1/users/created", RM, CB("a b"), 200, NULL,
	 "{\"success\":false,\"extra\":null,\"error\":\"callsign contains", 0},
	{"invalid callsign on data", "POST", "/api/v2/clients/data", "someuser", CB("a b"), 422, NULL,
	 "\"loc\":[\"body\",\"callsign\"]", 0},
	/* callbacks */
	{"created", "POST", "/api/v1/users/created", RM, CB("Alpha-1"), 200, OK_BODY, NULL, 1},
	{"revoked", "POST", "/api/v1/users/revoked", RM, CB("Alpha-1"), 200, OK_BODY, NULL, 1},
	{"promoted", "POST", "/api/v1/users/promoted", RM, CB("Alpha-1"), 200, OK_BODY, NULL, 1},
	{"demoted", "POST", "/api/v1/users/demoted", RM, CB("Alpha-1"), 200, OK_BODY, NULL, 1},
	{"updated", "PUT", "/api/v1/users/updated", RM, CB("Alpha-1"), 200, OK_BODY, NULL, 1},
	/* shapes */
	{"health", "GET", "/api/v1/healthcheck", NULL, NULL, 200, "{\"healthy\":true,\"extra\":\"database reachable\"}",
	 NULL, 0},
	{"description v1 fi", "GET", "/api/v1/description/fi", NULL, NULL, 200,
	 "{\"shortname\":\"matrix\",\"title\":\"Matrix\",\"icon\":null,"
	 "\"description\":\"\\\"tuote\\\" integraatioiden testaamiseen\",\"language\":\"fi\"}",
	 NULL, 0},
	{"description v1 sv", "GET", "/api/v1/description/sv", NULL, NULL, 404, "{\"detail\":\"Not Found\"}", NULL, 0},
	{"description v2 sv", "GET", "/api/v2/description/sv", NULL, NULL, 200,
	 "{\"shortname\":\"matrix\",\"title\":\"Matrix\",\"icon\":\"ui/matrix/matrixlogo.svg\","
	 "\"description\":\"Matrix meddelandetjänst\",\"language\":\"sv\","
	 "\"docs\":\"https://docs.pvarki.fi/sv/docs/guides/matrix-guide\","
	 "\"component\":{\"type\":\"component\",\"ref\":\"/ui/matrix/remoteEntry.js\"}}",
	 NULL, 0},
	{"description v2 any language", "GET", "/api/v2/description/de", NULL, NULL, 200, NULL,
	 "\"description\":\"Matrix messaging service\",\"language\":\"de\"", 0},
	{"admin description", "GET", "/api/v2/admin/description/en", "someuser", NULL, 200, NULL,
	 "\"description\":\"Matrix messaging service: administrators' room #dep-admin:example.org\"", 0},
	{"instructions", "POST", "/api/v1/instructions/fi", "someuser", CB("Kilo"), 200,
	 "{\"callsign\":\"Kilo\",\"instructions\":\"FIXME: Return something sane\",\"language\":\"en\"}", NULL, 0},
	{"admin fragment", "GET", "/api/v1/admins/fragment", "someuser", NULL, 200, NULL,
	 "<code>#dep-admin:example.org</code>", 0},
	{"info.md en", "POST", "/api/v2/clients/en/info.md", RM, CB("Kilo"), 200,
	 "\n## Matrix product\n\nHello Kilo! This is the UI for the matrix messaging service.\n\n"
	 "Running on deployment \"dep\"\n",
	 NULL, 0},
	{"client data", "POST", "/api/v2/clients/data", "someuser", CB("Kilo"), 200,
	 "{\"data\":{\"matrix_id\":\"@kilo:example.org\",\"callsign\":\"Kilo\","
	 "\"homeserver\":\"https://synapse.example.org\",\"server_name\":\"example.org\","
	 "\"deployment\":\"dep\",\"admin\":false,\"rooms\":["
	 "{\"key\":\"space\",\"alias\":\"#dep-space:example.org\",\"link\":\"https://matrix.to/#/%23dep-space%3Aexample.org\",\"name\":\"dep\"},"
	 "{\"key\":\"general\",\"alias\":\"#dep-general:example.org\",\"link\":\"https://matrix.to/#/%23dep-general%3Aexample.org\",\"name\":\"98-General\"},"
	 "{\"key\":\"helpdesk\",\"alias\":\"#dep-helpdesk:example.org\",\"link\":\"https://matrix.to/#/%23dep-helpdesk%3Aexample.org\",\"name\":\"99-Helpdesk\"},"
	 "{\"key\":\"offtopic\",\"alias\":\"#dep-offtopic:example.org\",\"link\":\"https://matrix.to/#/%23dep-offtopic%3Aexample.org\",\"name\":\"97-Offtopic\"}"
	 "]}}",
	 NULL, 0},
	{"admin client data has the admin room", "POST", "/api/v2/admin/clients/data", "someuser", CB("Kilo"), 200,
	 NULL, "{\"key\":\"admin\",\"alias\":\"#dep-admin:example.org\"", 0},
	{"admin client data says admin", "POST", "/api/v2/admin/clients/data", "someuser", CB("Kilo"), 200, NULL,
	 "\"deployment\":\"dep\",\"admin\":true,", 0},
	/* UI files: without UI_DIR (this fixture) every one is a 404; GET only */
	{"UI without UI_DIR", "GET", "/ui/matrix/remoteEntry.js", NULL, NULL, 404, "{\"detail\":\"Not Found\"}", NULL,
	 0},
	{"UI root without UI_DIR", "GET", "/ui/matrix/", NULL, NULL, 404, "{\"detail\":\"Not Found\"}", NULL, 0},
	{"UI is GET only", "POST", "/ui/matrix/remoteEntry.js", NULL, CB("a"), 405, NULL, "Method Not Allowed", 0},
	{"UI HEAD is not GET", "HEAD", "/ui/matrix/remoteEntry.js", NULL, NULL, 405, NULL, "Method Not Allowed", 0},
	{"UI prefix without slash", "GET", "/ui/matrix", NULL, NULL, 404, NULL, "Not Found", 0},
	{"other UI folders", "GET", "/ui/other/remoteEntry.js", NULL, NULL, 404, NULL, "Not Found", 0},
	{"openapi", "GET", "/api/openapi.json", NULL, NULL, 200, NULL, "\"openapi\"", 0},
};

static void on_nudge(void *ctx)
{
	((struct fixture *)ctx)->nudges++;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_api.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->db, sizeof(f->db), "%s/db.sqlite", f->dir);
	if (store_open(f->db, &f->st, err, sizeof(err)) != 0)
		fail_msg("store_open: %s", err);
	f->cfg.server_domain = "example.org";
	f->cfg.deployment = "dep";
	f->cfg.certcn = RM;
	f->cfg.synapse_public_baseurl = "https://synapse.example.org";
	pthread_mutex_init(&f->lock, NULL);
	f->hooks.nudge = on_nudge;
	f->hooks.ctx = f;
	f->env.cfg = &f->cfg;
	f->env.st = f->st;
	f->env.store_lock = &f->lock;
	f->env.hooks = &f->hooks;
	assert_int_equal(writer_start(f->st, &f->env.writer), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char path[128];

	writer_free(f->env.writer);
	store_close(f->st);
	pthread_mutex_destroy(&f->lock);
	for (const char *const *s = (const char *const[]){"", "-wal", "-shm", NULL}; *s; s++) {
		snprintf(path, sizeof(path), "%s%s", f->db, *s);
		unlink(path);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

static int journal_rows(struct fixture *f)
{
	sqlite3_stmt *q = NULL;
	int n = -1;

	if (sqlite3_prepare_v2(store_db(f->st), "SELECT count(*) FROM journal", -1, &q, NULL) == SQLITE_OK &&
	    sqlite3_step(q) == SQLITE_ROW)
		n = sqlite3_column_int(q, 0);
	sqlite3_finalize(q);
	return n;
}

static void call(struct fixture *f, const char *method, const char *path, const char *cn, const char *body,
		 struct api_response *out)
{
	struct api_request req = {.method = method,
				  .path = path,
				  .cn = cn,
				  .body = body,
				  .body_len = body != NULL ? strlen(body) : 0};

	api_handle(&f->env, &req, out);
}

static void test_table(void **state)
{
	struct fixture *f = *state;
	int failures = 0;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct api_case *c = &cases[i];
		struct api_response r;
		int before = journal_rows(f), nudges = f->nudges;
		char *body;

		call(f, c->method, c->path, c->cn, c->body, &r);
		body = strndup(r.body != NULL ? r.body : "", r.body_len);
		assert_non_null(body);
		if (r.status != c->status) {
			print_error("%s: status: have %d, want %d (%s)\n", c->name, r.status, c->status, body);
			failures++;
		}
		if (c->want != NULL && strcmp(body, c->want) != 0) {
			print_error("%s: body:\n have %s\n want %s\n", c->name, body, c->want);
			failures++;
		}
		if (c->contains != NULL && strstr(body, c->contains) == NULL) {
			print_error("%s: body: have %s, want it to contain %s\n", c->name, body, c->contains);
			failures++;
		}
		if (journal_rows(f) - before != c->journalled || f->nudges - nudges != c->journalled) {
			print_error("%s: journalled %d, nudged %d; want %d\n", c->name, journal_rows(f) - before,
				    f->nudges - nudges, c->journalled);
			failures++;
		}
		if (r.content_type == NULL ||
		    strcmp(r.content_type, strstr(c->path, "info.md") && r.status == 200 ? "text/plain; charset=utf-8"
											 : "application/json") != 0) {
			print_error("%s: content type %s\n", c->name, r.content_type);
			failures++;
		}
		free(body);
		api_response_clear(&r);
	}
	assert_int_equal(failures, 0);
}

static void test_body_limit(void **state)
{
	struct fixture *f = *state;
	struct api_request req = {.method = "POST", .path = "/api/v1/users/created", .cn = RM};
	struct api_response r;
	char *big = malloc(API_BODY_MAX + 2);
	const char *cb = CB("Edge");
	size_t n = strlen(cb);

	assert_non_null(big);
	/* Exactly the cap, padded with JSON whitespace: accepted. */
	memcpy(big, cb, n - 1);
	memset(big + n - 1, ' ', API_BODY_MAX - n);
	big[API_BODY_MAX - 1] = '}';
	req.body = big;
	req.body_len = API_BODY_MAX;
	api_handle(&f->env, &req, &r);
	assert_int_equal(r.status, 200);
	api_response_clear(&r);
	/* One byte more, or a listener that dropped the body: 413. */
	req.body_len = API_BODY_MAX + 1;
	api_handle(&f->env, &req, &r);
	assert_int_equal(r.status, 413);
	assert_memory_equal(r.body, "{\"detail\":\"Request body too large\"}", r.body_len);
	api_response_clear(&r);
	req.body_len = 0;
	req.body_too_large = 1;
	api_handle(&f->env, &req, &r);
	assert_int_equal(r.status, 413);
	api_response_clear(&r);
	/* Unauthorised beats too large. */
	req.cn = NULL;
	api_handle(&f->env, &req, &r);
	assert_int_equal(r.status, 403);
	api_response_clear(&r);
	free(big);
}

static void test_check_and_need(void **state)
{
	struct fixture *f = *state;
	struct api_response r = {0};

	assert_int_equal(api_route_need("POST", "/api/v1/users/created"), AUTH_RASENMAEHER);
	assert_int_equal(api_route_need("POST", "/api/v2/clients/xx/info.md"), AUTH_RASENMAEHER);
	assert_int_equal(api_route_need("POST", "/api/v2/clients/data"), AUTH_ANY_CLIENT);
	assert_int_equal(api_route_need("GET", "/api/v2/admin/description/fi"), AUTH_ANY_CLIENT);
	assert_int_equal(api_route_need("GET", "/api/v2/description/fi"), AUTH_PUBLIC);
	assert_int_equal(api_route_need("GET", "/nothing"), AUTH_PUBLIC);
	assert_int_equal(api_check(&f->env, "POST", "/api/v1/users/created", RM, &r), 0);
	assert_int_equal(api_check(&f->env, "POST", "/api/v1/users/created", "x", &r), -1);
	assert_int_equal(r.status, 403);
	api_response_clear(&r);
}

static void test_client_fragment_is_a_zip(void **state)
{
	struct fixture *f = *state;
	struct api_response r;
	unsigned char zip[1024];
	const char *p, *e;
	int n;

	call(f, "POST", "/api/v1/clients/fragment", "someuser", CB("Kilo"), &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"title\":\"iMatrix\""));
	assert_non_null(strstr(r.body, "\"filename\":\"Kilo_2.zip\""));
	p = strstr(r.body, "base64,");
	assert_non_null(p);
	p += strlen("base64,");
	e = strchr(p, '"');
	assert_true(e - p < (long)sizeof(zip) * 4 / 3);
	n = EVP_DecodeBlock(zip, (const unsigned char *)p, (int)(e - p));
	assert_true(n > 30);
	assert_memory_equal(zip, "PK\x03\x04", 4);
	assert_int_equal(zip[8], 8); /* deflated */
	assert_memory_equal(zip + 30, "Kilo_1.pem", 10);
	api_response_clear(&r);
}

static int unhealthy(void *ctx, char *extra, size_t len)
{
	snprintf(extra, len, "synapse unreachable");
	return 0;
}

static void test_health_hook(void **state)
{
	struct fixture *f = *state;
	struct api_response r;

	f->hooks.health = unhealthy;
	call(f, "GET", "/api/v1/healthcheck", NULL, NULL, &r);
	f->hooks.health = NULL;
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "{\"healthy\":false,\"extra\":\"synapse unreachable\"}");
	api_response_clear(&r);
}

static void test_store_failure_is_503(void **state)
{
	struct fixture *f = *state;
	struct api_response r;
	int nudges = f->nudges;

	assert_int_equal(sqlite3_exec(store_db(f->st), "DROP TABLE journal", NULL, NULL, NULL), SQLITE_OK);
	call(f, "POST", "/api/v1/users/created", RM, CB("Lost"), &r);
	assert_int_equal(r.status, 503);
	assert_string_equal(r.body, "{\"success\":false,\"extra\":null,"
				    "\"error\":\"not stored: the database did not commit\"}");
	assert_int_equal(f->nudges, nudges);
	api_response_clear(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_and_need, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_fragment_is_a_zip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_health_hook, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_failure_is_503, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
