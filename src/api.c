/* api: routing and handlers for the Rasenmaeher product API. Answers are
 * shaped exactly as the original FastAPI service's (compact JSON, keys in the
 * same order, the same literal texts). A callback is answered 200 only after
 * the store has committed it; nothing is stored for a request that fails any
 * check. The x509cert field is never logged. */
#include "api.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <zip.h>

#include "config.h"
#include "embedded.h"
#include "http.h"
#include "log.h"
#include "matrixid.h"
#include "roomspec.h"
#include "store.h"

#define CT_JSON "application/json"
#define CT_TEXT "text/plain; charset=utf-8"
#define PRODUCT "matrix"
#define MXID_MAX 512

/* A validated UserCRUDRequest; the strings are borrowed from the parsed JSON. */
struct user {
	const char *uuid;
	const char *callsign;
	const char *x509cert;
};

struct call {
	const struct api_env *env;
	const struct api_request *req;
	const char *param; /* the {} segment of the route, or "" */
	const struct user *user; /* NULL unless the route takes a body */
	int event;
};

typedef int (*handler_fn)(const struct call *c, struct api_response *out);

struct route {
	const char *method;
	const char *pattern; /* "{}" matches one non-empty path segment */
	enum auth_need need;
	int takes_user; /* the body must be a UserCRUDRequest */
	handler_fn fn;
	int event; /* enum store_event for the callbacks */
};

static int h_callback(const struct call *c, struct api_response *out);
static int h_health(const struct call *c, struct api_response *out);
static int h_desc_v1(const struct call *c, struct api_response *out);
static int h_desc_v2(const struct call *c, struct api_response *out);
static int h_desc_admin(const struct call *c, struct api_response *out);
static int h_openapi(const struct call *c, struct api_response *out);
static int h_instructions(const struct call *c, struct api_response *out);
static int h_client_fragment(const struct call *c, struct api_response *out);
static int h_admin_fragment(const struct call *c, struct api_response *out);
static int h_info_md(const struct call *c, struct api_response *out);
static int h_client_data(const struct call *c, struct api_response *out);
static int h_admin_client_data(const struct call *c, struct api_response *out);

static const struct route routes[] = {
	{"GET", "/api/v1/healthcheck", AUTH_PUBLIC, 0, h_health, 0},
	{"GET", "/api/v1/description/{}", AUTH_PUBLIC, 0, h_desc_v1, 0},
	{"GET", "/api/v2/description/{}", AUTH_PUBLIC, 0, h_desc_v2, 0},
	{"GET", "/api/openapi.json", AUTH_PUBLIC, 0, h_openapi, 0},
	{"POST", "/api/v1/users/created", AUTH_RASENMAEHER, 1, h_callback, STORE_CREATED},
	{"POST", "/api/v1/users/revoked", AUTH_RASENMAEHER, 1, h_callback, STORE_REVOKED},
	{"POST", "/api/v1/users/promoted", AUTH_RASENMAEHER, 1, h_callback, STORE_PROMOTED},
	{"POST", "/api/v1/users/demoted", AUTH_RASENMAEHER, 1, h_callback, STORE_DEMOTED},
	{"PUT", "/api/v1/users/updated", AUTH_RASENMAEHER, 1, h_callback, STORE_UPDATED},
	{"POST", "/api/v2/clients/{}/info.md", AUTH_RASENMAEHER, 1, h_info_md, 0},
	{"POST", "/api/v1/instructions/{}", AUTH_ANY_CLIENT, 1, h_instructions, 0},
	{"POST", "/api/v1/clients/fragment", AUTH_ANY_CLIENT, 1, h_client_fragment, 0},
	{"GET", "/api/v1/admins/fragment", AUTH_ANY_CLIENT, 0, h_admin_fragment, 0},
	{"POST", "/api/v2/clients/data", AUTH_ANY_CLIENT, 1, h_client_data, 0},
	{"POST", "/api/v2/admin/clients/data", AUTH_ANY_CLIENT, 1, h_admin_client_data, 0},
	{"GET", "/api/v2/admin/description/{}", AUTH_ANY_CLIENT, 0, h_desc_admin, 0},
};

static const char *const event_names[] = {
	[STORE_CREATED] = "created", [STORE_REVOKED] = "revoked", [STORE_PROMOTED] = "promoted",
	[STORE_DEMOTED] = "demoted", [STORE_UPDATED] = "updated",
};

/* 1 when path matches pattern; the {} segment (if any) is copied to param. */
static int route_match(const char *pattern, const char *path, char *param, size_t paramlen)
{
	const char *p = pattern, *s = path;

	param[0] = '\0';
	while (*p != '\0') {
		if (p[0] == '{' && p[1] == '}') {
			size_t n = strcspn(s, "/");

			if (n == 0 || n >= paramlen)
				return 0;
			memcpy(param, s, n);
			param[n] = '\0';
			s += n;
			p += 2;
			continue;
		}
		if (*p != *s)
			return 0;
		p++;
		s++;
	}
	return *s == '\0';
}

/* 0 and *out for a route, 404 for an unknown path, 405 for a known path
 * with another method. */
static int route_find(const char *method, const char *path, const struct route **out,
		      char *param, size_t paramlen)
{
	int path_known = 0;

	*out = NULL;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (!route_match(routes[i].pattern, path, param, paramlen))
			continue;
		path_known = 1;
		if (strcmp(routes[i].method, method) == 0) {
			*out = &routes[i];
			return 0;
		}
	}
	param[0] = '\0';
	return path_known ? 405 : 404;
}

void api_response_clear(struct api_response *out)
{
	if (out == NULL)
		return;
	free(out->body);
	memset(out, 0, sizeof(*out));
}

static int respond_raw(struct api_response *out, int status, const char *ctype, char *body,
		       size_t len)
{
	api_response_clear(out);
	out->status = status;
	out->content_type = ctype;
	out->body = body;
	out->body_len = len;
	return 0;
}

/* The answer of last resort: nothing could be built. */
static int respond_oom(struct api_response *out)
{
	static const char text[] = "{\"detail\":\"Internal Server Error\"}";
	char *copy = strdup(text);

	respond_raw(out, 500, CT_JSON, copy, copy != NULL ? strlen(copy) : 0);
	return -1;
}

/* Serialises and consumes j (NULL means it could not be built). */
static int respond_json(struct api_response *out, int status, json_t *j)
{
	char *s = NULL;
	int rc = -1;

	if (j == NULL)
		goto out;
	s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	if (s == NULL)
		goto out;
	respond_raw(out, status, CT_JSON, s, strlen(s));
	rc = 0;
out:
	json_decref(j);
	if (rc != 0)
		return respond_oom(out);
	return 0;
}

static int respond_detail(struct api_response *out, int status, const char *detail)
{
	return respond_json(out, status, json_pack("{s:s}", "detail", detail));
}

/* The OperationResultResponse of the original: {"success", "extra", "error"}. */
static int respond_result(struct api_response *out, int status, int success, const char *error)
{
	return respond_json(out, status, json_pack("{s:b,s:n,s:s?}", "success", success, "extra",
						   "error", error));
}

/* One FastAPI-style validation error entry; loc is ["body", field] or
 * ["body", position] or ["body"]. */
static int add_error(json_t *errors, const char *field, int position, const char *msg,
		     const char *type)
{
	json_t *loc = json_pack("[s]", "body");

	if (loc == NULL)
		return -1;
	if (field != NULL)
		json_array_append_new(loc, json_string(field));
	else if (position >= 0)
		json_array_append_new(loc, json_integer(position));
	return json_array_append_new(errors, json_pack("{s:o,s:s,s:s}", "loc", loc, "msg", msg,
						       "type", type));
}

static int respond_invalid(struct api_response *out, const char *field, const char *msg,
			   const char *type)
{
	json_t *errors = json_array();

	if (errors == NULL || add_error(errors, field, -1, msg, type) != 0) {
		json_decref(errors);
		return respond_oom(out);
	}
	return respond_json(out, 422, json_pack("{s:o}", "detail", errors));
}

/* Validates a UserCRUDRequest: exactly uuid, callsign and x509cert, all
 * strings. Returns 0 with *root (caller decrefs) and u filled, or -1 with
 * the 422 answer in out. */
static int user_parse(const struct api_request *req, json_t **root, struct user *u,
		      struct api_response *out)
{
	static const char *const fields[] = {"uuid", "callsign", "x509cert"};
	const char **slots[] = {&u->uuid, &u->callsign, &u->x509cert};
	json_t *errors = NULL, *j = NULL, *v;
	json_error_t jerr;
	const char *key;
	int rc = -1;

	*root = NULL;
	memset(u, 0, sizeof(*u));
	if ((errors = json_array()) == NULL)
		goto out;
	if (req->body_len == 0) {
		add_error(errors, NULL, -1, "field required", "value_error.missing");
		goto out;
	}
	j = json_loadb(req->body, req->body_len, JSON_DECODE_ANY, &jerr);
	if (j == NULL) {
		char msg[JSON_ERROR_TEXT_LENGTH + 32];

		snprintf(msg, sizeof(msg), "JSON decode error: %s", jerr.text);
		add_error(errors, NULL, jerr.position > INT32_MAX ? -1 : (int)jerr.position, msg,
			  "value_error.jsondecode");
		goto out;
	}
	if (!json_is_object(j)) {
		add_error(errors, NULL, -1, "value is not a valid dict", "type_error.dict");
		goto out;
	}
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		v = json_object_get(j, fields[i]);
		if (v == NULL)
			add_error(errors, fields[i], -1, "field required", "value_error.missing");
		else if (json_is_null(v))
			add_error(errors, fields[i], -1, "none is not an allowed value",
				  "type_error.none.not_allowed");
		else if (!json_is_string(v))
			add_error(errors, fields[i], -1, "str type expected", "type_error.str");
		else
			*slots[i] = json_string_value(v);
	}
	json_object_foreach(j, key, v) {
		int known = 0;

		for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
			known |= strcmp(key, fields[i]) == 0;
		if (!known)
			add_error(errors, key, -1, "extra fields not permitted", "value_error.extra");
	}
	if (json_array_size(errors) == 0) {
		*root = j;
		j = NULL;
		rc = 0;
	}
out:
	json_decref(j);
	if (rc == 0) {
		json_decref(errors);
		return 0;
	}
	memset(u, 0, sizeof(*u));
	if (errors == NULL || json_array_size(errors) == 0) {
		json_decref(errors);
		respond_oom(out);
		return -1;
	}
	respond_json(out, 422, json_pack("{s:o}", "detail", errors));
	return -1;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void store_lock(const struct api_env *env)
{
	if (env->store_lock != NULL)
		pthread_mutex_lock(env->store_lock);
}

static void store_unlock(const struct api_env *env)
{
	if (env->store_lock != NULL)
		pthread_mutex_unlock(env->store_lock);
}

/* Characters other than RFC 3986 unreserved ones become %XX. Caller frees. */
static char *pct_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *o = malloc(3 * n + 1), *p = o;

	if (o == NULL)
		return NULL;
	for (const unsigned char *c = (const unsigned char *)s; *c != '\0'; c++) {
		if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
		    (*c >= '0' && *c <= '9') || strchr("-._~", *c) != NULL) {
			*p++ = (char)*c;
		} else {
			*p++ = '%';
			*p++ = hex[*c >> 4];
			*p++ = hex[*c & 15];
		}
	}
	*p = '\0';
	return o;
}

/* &, <, >, " and ' become entities. Caller frees. */
static char *html_escape(const char *s)
{
	size_t n = 0;
	char *o, *p;

	for (const char *c = s; *c != '\0'; c++)
		n += strchr("&<>\"'", *c) != NULL ? 6 : 1;
	if ((o = malloc(n + 1)) == NULL)
		return NULL;
	p = o;
	for (const char *c = s; *c != '\0'; c++) {
		const char *e = NULL;

		switch (*c) {
		case '&': e = "&amp;"; break;
		case '<': e = "&lt;"; break;
		case '>': e = "&gt;"; break;
		case '"': e = "&quot;"; break;
		case '\'': e = "&#x27;"; break;
		default: *p++ = *c; continue;
		}
		p = stpcpy(p, e);
	}
	*p = '\0';
	return o;
}

/* "#DEPLOYMENT-key:DOMAIN" of a roomspec room; caller frees. */
static char *room_alias(const struct config *cfg, int room)
{
	char buf[1024];

	roomspec_alias(cfg->deployment, cfg->server_domain, room, buf, sizeof(buf));
	return strdup(buf);
}

static int h_callback(const struct call *c, struct api_response *out)
{
	const struct api_env *env = c->env;
	const char *name = event_names[c->event];
	char mxid[MXID_MAX], reason[256];
	int rc;

	if (matrixid_from_callsign(c->user->callsign, env->cfg->server_domain, mxid, sizeof(mxid),
				   reason, sizeof(reason)) != 0) {
		log_warnx("api: %s callback refused, invalid callsign: %s", name, reason);
		return respond_result(out, 200, 0, reason);
	}
	store_lock(env);
	rc = store_record_callback(env->st, (enum store_event)c->event, c->user->uuid,
				   c->user->callsign, mxid, now_ms());
	store_unlock(env);
	if (rc != 0) {
		log_error("api: %s callback for %s not stored", name, mxid);
		respond_result(out, 500, 0, "storage failure");
		return -1;
	}
	log_info("api: %s callback for %s stored", name, mxid);
	if (env->hooks != NULL && env->hooks->nudge != NULL)
		env->hooks->nudge(env->hooks->ctx);
	return respond_result(out, 200, 1, NULL);
}

static int h_health(const struct call *c, struct api_response *out)
{
	const struct api_env *env = c->env;
	char extra[256] = "";
	int healthy;

	if (env->hooks != NULL && env->hooks->health != NULL) {
		healthy = env->hooks->health(env->hooks->ctx, extra, sizeof(extra)) == 1;
	} else {
		store_lock(env);
		healthy = store_ping(env->st) == 0;
		store_unlock(env);
		snprintf(extra, sizeof(extra), "%s",
			 healthy ? "database reachable" : "database unreachable");
	}
	return respond_json(out, 200, json_pack("{s:b,s:s}", "healthy", healthy, "extra", extra));
}

static int h_desc_v1(const struct call *c, struct api_response *out)
{
	const char *description;

	if (strcmp(c->param, "fi") == 0)
		description = "\"tuote\" integraatioiden testaamiseen";
	else if (strcmp(c->param, "en") == 0)
		description = "Matrix messaging service";
	else
		return respond_detail(out, 404, "Not Found");
	return respond_json(out, 200, json_pack("{s:s,s:s,s:n,s:s,s:s}", "shortname", PRODUCT,
						"title", "Matrix", "icon", "description",
						description, "language", c->param));
}

/* The ProductDescriptionExtended shape shared by v2 and the admin variant. */
static int respond_desc_ext(const struct call *c, const char *description,
			    struct api_response *out)
{
	char *docs = NULL;
	json_t *j = NULL;

	if (asprintf(&docs, "https://docs.pvarki.fi/%s/docs/guides/matrix-guide", c->param) < 0)
		return respond_oom(out);
	j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:{s:s,s:s}}", "shortname", PRODUCT, "title",
		      "Matrix", "icon", "ui/" PRODUCT "/matrixlogo.svg", "description",
		      description, "language", c->param, "docs", docs, "component", "type",
		      "component", "ref", "/ui/" PRODUCT "/remoteEntry.js");
	free(docs);
	if (j == NULL) /* the language is not valid UTF-8 */
		return respond_detail(out, 404, "Not Found");
	return respond_json(out, 200, j);
}

static int h_desc_v2(const struct call *c, struct api_response *out)
{
	if (strcmp(c->param, "fi") == 0)
		return respond_desc_ext(c, "Matrix viestipalvelu", out);
	if (strcmp(c->param, "sv") == 0)
		return respond_desc_ext(c, "Matrix meddelandetjänst", out);
	return respond_desc_ext(c, "Matrix messaging service", out);
}

static int h_desc_admin(const struct call *c, struct api_response *out)
{
	const char *fmt = "Matrix messaging service: administrators' room %s";
	char *alias = NULL, *description = NULL;
	int rc;

	if (strcmp(c->param, "fi") == 0)
		fmt = "Matrix viestipalvelu: ylläpitäjien huone %s";
	else if (strcmp(c->param, "sv") == 0)
		fmt = "Matrix meddelandetjänst: administratörernas rum %s";
	if ((alias = room_alias(c->env->cfg, ROOM_ADMIN)) == NULL ||
	    asprintf(&description, fmt, alias) < 0) {
		description = NULL;
		rc = respond_oom(out);
		goto out;
	}
	rc = respond_desc_ext(c, description, out);
out:
	free(alias);
	free(description);
	return rc;
}

static int h_openapi(const struct call *c, struct api_response *out)
{
	const struct embedded_file *f = embedded_find("openapi.json");
	char *copy;

	if (f == NULL) {
		log_error("api: openapi.json is not embedded in this binary");
		return respond_detail(out, 500, "Internal Server Error");
	}
	if ((copy = malloc(f->size + 1)) == NULL)
		return respond_oom(out);
	memcpy(copy, f->data, f->size + 1);
	return respond_raw(out, 200, CT_JSON, copy, f->size);
}

static int h_instructions(const struct call *c, struct api_response *out)
{
	return respond_json(out, 200, json_pack("{s:s,s:s,s:s}", "callsign", c->user->callsign,
						"instructions", "FIXME: Return something sane",
						"language", "en"));
}

/* A zip archive holding one deflated entry; *zbuf is malloc'd. */
static int zip_one(const char *entry, const char *data, size_t len, unsigned char **zbuf,
		   size_t *zlen)
{
	zip_source_t *src = NULL, *fsrc = NULL;
	zip_t *za = NULL;
	zip_error_t ze;
	zip_int64_t idx, size;
	unsigned char *buf = NULL;
	int rc = -1, src_open = 0;

	*zbuf = NULL;
	*zlen = 0;
	zip_error_init(&ze);
	if ((src = zip_source_buffer_create(NULL, 0, 0, &ze)) == NULL)
		goto out;
	if ((za = zip_open_from_source(src, ZIP_TRUNCATE, &ze)) == NULL)
		goto out;
	zip_source_keep(src); /* the archive's close drops its reference, not ours */
	if ((fsrc = zip_source_buffer(za, data, len, 0)) == NULL)
		goto out;
	if ((idx = zip_file_add(za, entry, fsrc, ZIP_FL_ENC_UTF_8)) < 0)
		goto out;
	fsrc = NULL; /* owned by the archive now */
	if (zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_DEFLATE, 0) != 0)
		goto out;
	if (zip_close(za) != 0)
		goto out;
	za = NULL;
	if (zip_source_open(src) != 0)
		goto out;
	src_open = 1;
	if (zip_source_seek(src, 0, SEEK_END) != 0 || (size = zip_source_tell(src)) < 0 ||
	    zip_source_seek(src, 0, SEEK_SET) != 0)
		goto out;
	if ((buf = malloc(size > 0 ? (size_t)size : 1)) == NULL)
		goto out;
	if (zip_source_read(src, buf, (zip_uint64_t)size) != size)
		goto out;
	*zbuf = buf;
	*zlen = (size_t)size;
	buf = NULL;
	rc = 0;
out:
	if (rc != 0)
		log_warnx("api: building the zip for %s failed: %s", entry,
			  za != NULL ? zip_strerror(za) : zip_error_strerror(&ze));
	free(buf);
	if (src_open)
		zip_source_close(src);
	zip_source_free(fsrc);
	if (za != NULL)
		zip_discard(za);
	zip_source_free(src);
	zip_error_fini(&ze);
	return rc;
}

/* "data:application/zip;base64,..." for a zip of the certificate; caller frees. */
static char *cert_data_url(const char *entry, const char *pem)
{
	static const char prefix[] = "data:application/zip;base64,";
	unsigned char *zbuf = NULL;
	size_t zlen = 0;
	char *url = NULL;

	if (zip_one(entry, pem, strlen(pem), &zbuf, &zlen) != 0)
		goto out;
	if (zlen > INT32_MAX / 2 || (url = malloc(sizeof(prefix) + 4 * ((zlen + 2) / 3) + 1)) == NULL)
		goto out;
	memcpy(url, prefix, sizeof(prefix) - 1);
	EVP_EncodeBlock((unsigned char *)url + sizeof(prefix) - 1, zbuf, (int)zlen);
out:
	free(zbuf);
	return url;
}

static int h_client_fragment(const struct call *c, struct api_response *out)
{
	static const char *const titles[] = {"iMatrix", "aMatrix"};
	json_t *list = NULL;
	char *entry = NULL, *filename = NULL, *url = NULL;
	int rc = -1;

	if ((list = json_array()) == NULL)
		goto out;
	for (int i = 0; i < 2; i++) {
		if (asprintf(&entry, "%s_%d.pem", c->user->callsign, i + 1) < 0) {
			entry = NULL;
			goto out;
		}
		if (asprintf(&filename, "%s_%d.zip", c->user->callsign, i + 1) < 0) {
			filename = NULL;
			goto out;
		}
		if ((url = cert_data_url(entry, c->user->x509cert)) == NULL)
			goto out;
		if (json_array_append_new(list, json_pack("{s:s,s:s,s:s}", "title", titles[i],
							  "data", url, "filename",
							  filename)) != 0)
			goto out;
		free(entry);
		free(filename);
		free(url);
		entry = filename = url = NULL;
	}
	rc = 0;
out:
	free(entry);
	free(filename);
	free(url);
	if (rc != 0) {
		json_decref(list);
		return respond_oom(out);
	}
	return respond_json(out, 200, list);
}

static int h_admin_fragment(const struct call *c, struct api_response *out)
{
	char *alias = NULL, *ealias = NULL, *html = NULL;
	int rc;

	if ((alias = room_alias(c->env->cfg, ROOM_ADMIN)) == NULL ||
	    (ealias = html_escape(alias)) == NULL ||
	    asprintf(&html,
		     "<p>Administrators have their own Matrix room, <code>%s</code>. "
		     "Promoted users are invited to it automatically and removed from it "
		     "when demoted. Use it to coordinate the deployment and to answer "
		     "questions from the helpdesk room.</p>",
		     ealias) < 0) {
		html = NULL;
		rc = respond_oom(out);
		goto out;
	}
	rc = respond_json(out, 200, json_pack("{s:s,s:n}", "html", html, "inject_css"));
out:
	free(alias);
	free(ealias);
	free(html);
	return rc;
}

static int h_info_md(const struct call *c, struct api_response *out)
{
	const char *dep = c->env->cfg->deployment;
	char *md = NULL;
	int n;

	if (strcmp(c->param, "fi") == 0)
		n = asprintf(&md,
			     "\n## Matrix\n\nTerve %s! Tämä on käyttöliittymä matrix "
			     "viestintäpalvelua varten.\n\nPyörii deploymentissa \"%s\"\n\n        ",
			     c->user->callsign, dep);
	else
		n = asprintf(&md,
			     "\n## Matrix product\n\nHello %s! This is the UI for the matrix "
			     "messaging service.\n\nRunning on deployment \"%s\"\n",
			     c->user->callsign, dep);
	if (n < 0)
		return respond_oom(out);
	return respond_raw(out, 200, CT_TEXT, md, (size_t)n);
}

/* {"data": {...}}: what a user needs to start using Matrix. The rooms are the
 * public ones in roomspec order, then (for administrators) the admin room. */
static int respond_client_data(const struct call *c, int admin, struct api_response *out)
{
	const struct config *cfg = c->env->cfg;
	char mxid[MXID_MAX], reason[256];
	char *alias = NULL, *link = NULL, *enc = NULL;
	json_t *rooms = NULL;
	int rc = -1;

	if (matrixid_from_callsign(c->user->callsign, cfg->server_domain, mxid, sizeof(mxid), reason,
				   sizeof(reason)) != 0)
		return respond_invalid(out, "callsign", reason, "value_error");
	if ((rooms = json_array()) == NULL)
		goto out;
	for (int i = 0; i < ROOM__COUNT + 1; i++) {
		int room = i < ROOM__COUNT ? i : ROOM_ADMIN;
		const char *key = roomspec_rooms[room].key;

		if (i < ROOM__COUNT ? !roomspec_rooms[room].is_public : !admin)
			continue;
		if ((alias = room_alias(cfg, room)) == NULL || (enc = pct_encode(alias)) == NULL ||
		    asprintf(&link, "https://matrix.to/#/%s", enc) < 0) {
			link = NULL;
			goto out;
		}
		if (json_array_append_new(rooms, json_pack("{s:s,s:s,s:s}", "key", key, "alias",
							   alias, "link", link)) != 0)
			goto out;
		free(alias);
		free(enc);
		free(link);
		alias = enc = link = NULL;
	}
	rc = respond_json(out, 200,
			  json_pack("{s:{s:s,s:s,s:s,s:o}}", "data", "matrix_id", mxid, "homeserver",
				    cfg->synapse_public_baseurl, "server_name", cfg->server_domain,
				    "rooms", rooms));
	rooms = NULL;
out:
	free(alias);
	free(enc);
	free(link);
	json_decref(rooms);
	if (rc != 0)
		return respond_oom(out);
	return 0;
}

static int h_client_data(const struct call *c, struct api_response *out)
{
	return respond_client_data(c, 0, out);
}

static int h_admin_client_data(const struct call *c, struct api_response *out)
{
	return respond_client_data(c, 1, out);
}

enum auth_need api_route_need(const char *method, const char *path)
{
	const struct route *r;
	char param[256];

	if (route_find(method, path, &r, param, sizeof(param)) != 0)
		return AUTH_PUBLIC;
	return r->need;
}

int api_too_large(struct api_response *out)
{
	return respond_detail(out, 413, "Request body too large");
}

/* Routing and authorisation: 0 with *r and param set, or -1 with the
 * 404/405/403 answer in out. */
static int route_check(const struct api_env *env, const char *method, const char *path,
		       const char *cn, const struct route **r, char *param, size_t paramlen,
		       struct api_response *out)
{
	int status = route_find(method, path, r, param, paramlen);

	if (status == 405) {
		respond_detail(out, 405, "Method Not Allowed");
		return -1;
	}
	if (status != 0 || *r == NULL) {
		respond_detail(out, 404, "Not Found");
		return -1;
	}
	if (auth_decide((*r)->need, cn, env->cfg->certcn) != 0) {
		respond_detail(out, 403, "Forbidden");
		return -1;
	}
	return 0;
}

int api_check(const struct api_env *env, const char *method, const char *path, const char *cn,
	      struct api_response *out)
{
	const struct route *r;
	char param[256];

	return route_check(env, method, path, cn, &r, param, sizeof(param), out);
}

int api_handle(const struct api_env *env, const struct api_request *req, struct api_response *out)
{
	const struct route *r;
	struct user u;
	struct call c;
	json_t *root = NULL;
	char param[256];
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (route_check(env, req->method, req->path, req->cn, &r, param, sizeof(param), out) != 0)
		goto out;
	if (req->body_too_large || req->body_len > API_BODY_MAX) {
		api_too_large(out);
		goto out;
	}
	memset(&c, 0, sizeof(c));
	c.env = env;
	c.req = req;
	c.param = param;
	c.event = r->event;
	if (r->takes_user) {
		if (user_parse(req, &root, &u, out) != 0)
			goto out;
		c.user = &u;
	}
	rc = r->fn(&c, out);
out:
	json_decref(root);
	return rc;
}
