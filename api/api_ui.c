/* api_ui: static files of the Matrix page (see api_ui.h). Files are read
 * whole into memory (they are small: the build is a few hundred KiB), so the
 * HTTP layer sends them like any other answer. */
#include "api_ui.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "respond.h"

#define UI_PATH_MAX 1024
#define UI_NAME_MAX 255
#define UI_DEPTH_MAX 16

static const struct {
	const char *ext;
	const char *type;
} types[] = {
	{".js", "text/javascript; charset=utf-8"},
	{".mjs", "text/javascript; charset=utf-8"},
	{".css", "text/css; charset=utf-8"},
	{".svg", "image/svg+xml"},
	{".html", "text/html; charset=utf-8"},
	{".json", "application/json"},
	{".map", "application/json"},
	{".png", "image/png"},
	{".woff2", "font/woff2"},
	{".txt", "text/plain; charset=utf-8"},
};

const char *api_ui_content_type(const char *name)
{
	const char *dot = strrchr(name, '.');

	if (dot != NULL && strchr(dot, '/') == NULL)
		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
			if (strcmp(dot, types[i].ext) == 0)
				return types[i].type;
	return "application/octet-stream";
}

/* 1 when name is a component we serve. */
static int plain_name(const char *name, size_t n)
{
	if (n == 0 || n > UI_NAME_MAX || name[0] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
		      ch == '_' || ch == '~' || ch == '.'))
			return 0;
	}
	return 1;
}

/* Reads the open regular file fd whole. */
static int read_fd(int fd, char **data, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0, size;
	ssize_t n;
	int rc = 0;

	if (fstat(fd, &st) != 0) {
		rc = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = API_ENOTFILE;
		goto out;
	}
	if (st.st_size > API_UI_FILE_MAX) {
		rc = API_ETOOBIG;
		goto out;
	}
	size = (size_t)st.st_size;
	if ((buf = malloc(size + 1)) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	while (got < size) {
		n = read(fd, buf + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) { /* an error, or the file shrank while we read it */
			rc = n < 0 ? -errno : -EIO;
			goto out;
		}
		got += (size_t)n;
	}
	buf[size] = '\0';
	*data = buf;
	*len = size;
	buf = NULL;
out:
	free(buf);
	return rc;
}

int api_ui_read(const char *root, const char *rel, char **data, size_t *len, const char **ctype)
{
	char path[UI_PATH_MAX + sizeof("index.html")];
	const char *seg, *end, *last;
	int dfd = -1, fd = -1, depth = 0, rc = 0;
	size_t n = strlen(rel);

	*data = NULL;
	*len = 0;
	*ctype = NULL;
	if (n > UI_PATH_MAX) {
		rc = API_EBADPATH;
		goto out;
	}
	memcpy(path, rel, n + 1);
	if (n == 0 || path[n - 1] == '/')
		memcpy(path + n, "index.html", sizeof("index.html"));
	/* Every component is checked before anything is opened. */
	for (seg = path;; seg = end + 1) {
		end = strchr(seg, '/');
		n = end != NULL ? (size_t)(end - seg) : strlen(seg);
		if (!plain_name(seg, n) || ++depth > UI_DEPTH_MAX) {
			rc = API_EBADPATH;
			goto out;
		}
		if (end == NULL)
			break;
	}
	if ((dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		rc = -errno;
		log_warn("api: UI_DIR %s cannot be opened", root);
		goto out;
	}
	last = strrchr(path, '/');
	last = last != NULL ? last + 1 : path;
	for (seg = path;; seg = end + 1) {
		char name[UI_NAME_MAX + 1];
		int next;

		end = strchr(seg, '/');
		n = end != NULL ? (size_t)(end - seg) : strlen(seg);
		memcpy(name, seg, n);
		name[n] = '\0';
		if (end == NULL) {
			/* O_NONBLOCK: a FIFO put here must not hang the thread. */
			fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
			if (fd < 0)
				rc = -errno;
			break;
		}
		next = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0) {
			rc = -errno;
			goto out;
		}
		close(dfd);
		dfd = next;
	}
	if (rc != 0)
		goto out;
	if ((rc = read_fd(fd, data, len)) == 0)
		*ctype = api_ui_content_type(last);
out:
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	return rc;
}

int api_ui_missing(int code)
{
	return code == API_EBADPATH || code == API_ENOTFILE || code == -ENOENT || code == -ENOTDIR || code == -ELOOP ||
	       code == -EISDIR || code == -ENAMETOOLONG;
}

int api_ui_file(const struct api_call *c, struct api_response *out)
{
	const char *root = c->env->cfg->ui_dir;
	const char *ctype = NULL;
	char *data = NULL;
	size_t len = 0;
	int rc;

	if (root == NULL)
		return respond_detail(out, 404, "Not Found");
	rc = api_ui_read(root, c->param, &data, &len, &ctype);
	if (rc == 0)
		return respond_raw(out, 200, ctype, data, len);
	if (api_ui_missing(rc)) {
		log_debug("api: UI file not served: %s", api_strerror(rc));
		return respond_detail(out, 404, "Not Found");
	}
	log_warnx("api: UI file %s: %s", c->param, api_strerror(rc));
	respond_detail(out, 500, "Internal Server Error");
	return rc;
}
