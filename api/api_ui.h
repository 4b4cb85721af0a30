/* api_ui: the Matrix page's static files (the ui/ build) at /ui/matrix/,
 * served from UI_DIR when it is set (local runs and tests; in the stack
 * Rasenmaeher's nginx serves the same files from /ui_files/matrix). GET only;
 * these files are public (the same bundle anyone can build from the
 * repository; no user data in them), so no client certificate is needed.
 * Invariants: a file is served only if every component of its path below
 * UI_DIR is a plain name (letters, digits, '-', '_', '~', '.', not starting
 * with '.'), opened one component at a time with O_NOFOLLOW from a
 * descriptor of UI_DIR: no "..", no hidden files, no symlink anywhere below
 * the root, only regular files. Anything else is a 404. */
#pragma once
#include <stddef.h>

#include "api_call.h"

#define API_UI_PREFIX "/ui/matrix/"
#define API_UI_FILE_MAX (16L * 1024 * 1024)

/* The Content-Type for a file name by its extension (static string). */
const char *api_ui_content_type(const char *name);

/* Reads root/rel under the rules above; rel "" or ending in '/' means its
 * index.html. Returns 0 with *data (malloc'd, caller frees), *len and *ctype,
 * or a negative code: API_EBADPATH, API_ENOTFILE, API_ETOOBIG, -ENOENT,
 * -ELOOP, -EACCES, -ENOMEM, ... */
int api_ui_read(const char *root, const char *rel, char **data, size_t *len, const char **ctype);

/* 1 for the codes that mean "no such file here" (answered 404). */
int api_ui_missing(int code);

/* The handler of GET /ui/matrix/{**}. */
int api_ui_file(const struct api_call *c, struct api_response *out);
