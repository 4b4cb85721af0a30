/* test_api_ui: the Matrix page's static files (api_ui.c) through api_handle,
 * on a real directory tree made per run: what is served, with which
 * Content-Type, and every way out of UI_DIR refused (.., hidden names,
 * symlinks to files and folders inside and outside, FIFOs, folders, overlong
 * paths). Table-driven; failures read "have X, want Y". */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "api_call.h"
#include "api_ui.h"
#include "config.h"

struct fixture {
	char root[64]; /* the tree; UI_DIR is root/ui */
	char ui[96];
	struct config cfg;
	struct api_env env;
};

static void put(const char *dir, const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void sub(const char *dir, const char *name, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s/%s", dir, name);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char p[256], q[256];

	assert_non_null(f);
	snprintf(f->root, sizeof(f->root), "/tmp/test_api_ui.XXXXXX");
	assert_non_null(mkdtemp(f->root));
	sub(f->root, "ui", f->ui, sizeof(f->ui));
	assert_int_equal(mkdir(f->ui, 0755), 0);
	put(f->root, "secret.txt", "OUTSIDE");
	put(f->ui, "remoteEntry.js", "export const x = 1;\n");
	put(f->ui, "matrixlogo.svg", "<svg/>");
	put(f->ui, "style.css", "a{}");
	put(f->ui, "page.html", "<p>");
	put(f->ui, "mf-manifest.json", "{}");
	put(f->ui, "remoteEntry.js.map", "{}");
	put(f->ui, "unknown.bin", "B");
	put(f->ui, ".hidden", "H");
	sub(f->ui, "assets", p, sizeof(p));
	assert_int_equal(mkdir(p, 0755), 0);
	put(p, "remote-ui-1a2b.js", "export default 1;\n");
	sub(f->ui, "host-test", p, sizeof(p));
	assert_int_equal(mkdir(p, 0755), 0);
	put(p, "index.html", "<!doctype html>");
	/* Symlinks: out of the root, and inside it (refused too: the rule is "no
	 * symlink below UI_DIR", so no check of where one points is needed). */
	sub(f->ui, "escape.txt", p, sizeof(p));
	sub(f->root, "secret.txt", q, sizeof(q));
	assert_int_equal(symlink(q, p), 0);
	sub(f->ui, "inside.js", p, sizeof(p));
	assert_int_equal(symlink("remoteEntry.js", p), 0);
	sub(f->ui, "up", p, sizeof(p));
	assert_int_equal(symlink("..", p), 0);
	sub(f->ui, "linkdir", p, sizeof(p));
	assert_int_equal(symlink("assets", p), 0);
	sub(f->ui, "fifo.js", p, sizeof(p));
	assert_int_equal(mkfifo(p, 0644), 0);
	f->cfg.certcn = "rasenmaeher";
	f->cfg.ui_dir = f->ui;
	f->env.cfg = &f->cfg;
	*state = f;
	return 0;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	/* rm -rf of the fixture's directory, without a shell */
	assert_int_equal(nftw(f->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
	free(f);
	return 0;
}

struct ui_case {
	const char *path;
	int status;
	const char *ctype; /* for 200 */
	const char *body;  /* exact body for 200 */
};

static const struct ui_case cases[] = {
	{"/ui/matrix/remoteEntry.js", 200, "text/javascript; charset=utf-8", "export const x = 1;\n"},
	{"/ui/matrix/assets/remote-ui-1a2b.js", 200, "text/javascript; charset=utf-8", "export default 1;\n"},
	{"/ui/matrix/matrixlogo.svg", 200, "image/svg+xml", "<svg/>"},
	{"/ui/matrix/style.css", 200, "text/css; charset=utf-8", "a{}"},
	{"/ui/matrix/page.html", 200, "text/html; charset=utf-8", "<p>"},
	{"/ui/matrix/mf-manifest.json", 200, "application/json", "{}"},
	{"/ui/matrix/remoteEntry.js.map", 200, "application/json", "{}"},
	{"/ui/matrix/unknown.bin", 200, "application/octet-stream", "B"},
	{"/ui/matrix/host-test/", 200, "text/html; charset=utf-8", "<!doctype html>"},
	{"/ui/matrix/host-test/index.html", 200, "text/html; charset=utf-8", "<!doctype html>"},
	{"/ui/matrix/missing.js", 404, NULL, NULL},
	{"/ui/matrix/", 404, NULL, NULL},          /* no index.html at the root */
	{"/ui/matrix/host-test", 404, NULL, NULL}, /* a folder is not a file */
	{"/ui/matrix/assets", 404, NULL, NULL},
	{"/ui/matrix/../secret.txt", 404, NULL, NULL},
	{"/ui/matrix/assets/../../secret.txt", 404, NULL, NULL},
	{"/ui/matrix/./remoteEntry.js", 404, NULL, NULL},
	{"/ui/matrix//remoteEntry.js", 404, NULL, NULL},
	{"/ui/matrix/.hidden", 404, NULL, NULL},
	{"/ui/matrix/escape.txt", 404, NULL, NULL},
	{"/ui/matrix/inside.js", 404, NULL, NULL},
	{"/ui/matrix/up/secret.txt", 404, NULL, NULL},
	{"/ui/matrix/linkdir/remote-ui-1a2b.js", 404, NULL, NULL},
	{"/ui/matrix/fifo.js", 404, NULL, NULL},
	{"/ui/matrix/remote%20Entry.js", 404, NULL, NULL},
	{"/ui/matrix/a\\b.js", 404, NULL, NULL},
	{"/ui/matrix//etc/passwd", 404, NULL, NULL},
};

static void test_table(void **state)
{
	struct fixture *f = *state;
	int failures = 0;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct ui_case *c = &cases[i];
		struct api_request req = {.method = "GET", .path = c->path};
		struct api_response r;

		api_handle(&f->env, &req, &r);
		if (r.status != c->status) {
			print_error("%s: status: have %d, want %d\n", c->path, r.status, c->status);
			failures++;
		} else if (c->status == 200) {
			if (strcmp(r.content_type, c->ctype) != 0) {
				print_error("%s: type: have %s, want %s\n", c->path, r.content_type, c->ctype);
				failures++;
			}
			if (r.body_len != strlen(c->body) || memcmp(r.body, c->body, r.body_len) != 0) {
				print_error("%s: body: have %.*s, want %s\n", c->path, (int)r.body_len, r.body,
					    c->body);
				failures++;
			}
		} else if (r.body_len != strlen("{\"detail\":\"Not Found\"}") ||
			   memcmp(r.body, "{\"detail\":\"Not Found\"}", r.body_len) != 0) {
			print_error("%s: 404 body: have %.*s\n", c->path, (int)r.body_len, r.body);
			failures++;
		}
		api_response_clear(&r);
	}
	assert_int_equal(failures, 0);
}

static void test_overlong_and_deep_paths(void **state)
{
	struct fixture *f = *state;
	char *data = NULL, rel[2048];
	const char *ctype;
	size_t len;

	memset(rel, 'a', sizeof(rel) - 1);
	rel[sizeof(rel) - 1] = '\0';
	assert_int_equal(api_ui_read(f->ui, rel, &data, &len, &ctype), API_EBADPATH);
	for (size_t i = 0; i < 20; i++)
		memcpy(rel + 2 * i, "d/", 2);
	memcpy(rel + 40, "x.js", sizeof("x.js"));
	assert_int_equal(api_ui_read(f->ui, rel, &data, &len, &ctype), API_EBADPATH);
	assert_null(data);
	assert_int_equal(api_ui_read(f->ui, "escape.txt", &data, &len, &ctype), -ELOOP);
	assert_true(api_ui_missing(-ELOOP));
	assert_int_equal(api_ui_read(f->ui, "fifo.js", &data, &len, &ctype), API_ENOTFILE);
	assert_false(api_ui_missing(-EIO));
}

static void test_content_types(void **state)
{
	assert_string_equal(api_ui_content_type("a.js"), "text/javascript; charset=utf-8");
	assert_string_equal(api_ui_content_type("a.mjs"), "text/javascript; charset=utf-8");
	assert_string_equal(api_ui_content_type("x.css"), "text/css; charset=utf-8");
	assert_string_equal(api_ui_content_type("matrixlogo.svg"), "image/svg+xml");
	assert_string_equal(api_ui_content_type("index.html"), "text/html; charset=utf-8");
	assert_string_equal(api_ui_content_type("mf-manifest.json"), "application/json");
	assert_string_equal(api_ui_content_type("remoteEntry.js.map"), "application/json");
	assert_string_equal(api_ui_content_type("README"), "application/octet-stream");
	assert_string_equal(api_ui_content_type("x.JS"), "application/octet-stream");
}

static void test_error_texts(void **state)
{
	const int codes[] = {API_ENOMEM, API_ESTORE, API_EBADPATH, API_ENOTFILE, API_ETOOBIG, API_ENOEMBED};

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		assert_string_not_equal(api_strerror(codes[i]), "unknown error");
	assert_string_equal(api_strerror(-ENOENT), strerror(ENOENT));
	assert_string_equal(api_strerror(0), "success");
	assert_string_equal(api_strerror(-99999), "unknown error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overlong_and_deep_paths, setup, teardown),
		cmocka_unit_test(test_content_types),
		cmocka_unit_test(test_error_texts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
