/* api: the route table of the product API, the checks every request passes
 * and the dispatch to the endpoint families (api_users.c: Rasenmaeher's user
 * callbacks; api_product.c: health, descriptions, instructions, fragments,
 * clients/data; api_ui.c: the Matrix page's files). The order of checks is
 * that of the original FastAPI service: unknown path 404, wrong method 405,
 * authorisation 403, body too large 413, body validation 422, then the
 * handler. Nothing is stored for a request that fails a check. */
#include "api.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api_call.h"
#include "api_interop.h"
#include "api_product.h"
#include "api_ui.h"
#include "api_users.h"
#include "clock.h"
#include "config.h"
#include "errtext.h"
#include "log.h"
#include "metrics.h"
#include "respond.h"
#include "store.h"

#define SEGMENT_MAX 255 /* longest {} segment */

enum body_kind { BODY_NONE, BODY_USER, BODY_GRANT };

/* "{}" matches one non-empty path segment; a trailing "{**}" matches the
 * rest of the path (possibly empty, slashes included). */
struct route {
	const char *method;
	const char *pattern;
	enum auth_need need;
	int body; /* enum body_kind: what the body must be */
	api_handler_fn fn;
	int event; /* enum event_kind for the callbacks */
};

static const struct route routes[] = {
	{"GET", "/api/v1/healthcheck", AUTH_PUBLIC, BODY_NONE, api_product_health, 0},
	{"GET", "/api/v1/description/{}", AUTH_PUBLIC, BODY_NONE, api_product_desc_v1, 0},
	{"GET", "/api/v2/description/{}", AUTH_PUBLIC, BODY_NONE, api_product_desc_v2, 0},
	{"GET", "/api/openapi.json", AUTH_PUBLIC, BODY_NONE, api_product_openapi, 0},
	{"POST", "/api/v1/users/created", AUTH_RASENMAEHER, BODY_USER, api_users_callback, EVENT_CREATED},
	{"POST", "/api/v1/users/revoked", AUTH_RASENMAEHER, BODY_USER, api_users_callback, EVENT_REVOKED},
	{"POST", "/api/v1/users/promoted", AUTH_RASENMAEHER, BODY_USER, api_users_callback, EVENT_PROMOTED},
	{"POST", "/api/v1/users/demoted", AUTH_RASENMAEHER, BODY_USER, api_users_callback, EVENT_DEMOTED},
	{"PUT", "/api/v1/users/updated", AUTH_RASENMAEHER, BODY_USER, api_users_callback, EVENT_UPDATED},
	{"POST", "/api/v2/clients/{}/info.md", AUTH_RASENMAEHER, BODY_USER, api_product_info_md, 0},
	{"POST", "/api/v1/instructions/{}", AUTH_ANY_CLIENT, BODY_USER, api_product_instructions, 0},
	{"POST", "/api/v1/clients/fragment", AUTH_ANY_CLIENT, BODY_USER, api_product_client_fragment, 0},
	{"GET", "/api/v1/admins/fragment", AUTH_ANY_CLIENT, BODY_NONE, api_product_admin_fragment, 0},
	{"POST", "/api/v2/clients/data", AUTH_ANY_CLIENT, BODY_USER, api_product_client_data, 0},
	{"POST", "/api/v2/admin/clients/data", AUTH_ANY_CLIENT, BODY_USER, api_product_admin_client_data, 0},
	{"GET", "/api/v2/admin/description/{}", AUTH_ANY_CLIENT, BODY_NONE, api_product_desc_admin, 0},
	{"GET", API_UI_PREFIX "{**}", AUTH_PUBLIC, BODY_NONE, api_ui_file, 0},
	{"POST", "/api/v1/interop/add", AUTH_RASENMAEHER_DIRECT, BODY_GRANT, api_interop_add, 0},
	{"GET", "/api/v1/interop/authz", AUTH_ANY_CLIENT, BODY_NONE, api_interop_authz, 0},
};

/* 1 when path matches pattern; the {} or {**} part (if any) is copied to param. */
static int route_match(const char *pattern, const char *path, char *param, size_t paramlen)
{
	const char *p = pattern, *s = path;

	param[0] = '\0';
	while (*p != '\0') {
		if (strcmp(p, "{**}") == 0) {
			size_t n = strlen(s);

			if (n >= paramlen)
				return 0;
			memcpy(param, s, n + 1);
			return 1;
		}
		if (p[0] == '{' && p[1] == '}') {
			size_t n = strcspn(s, "/");

			if (n == 0 || n > SEGMENT_MAX || n >= paramlen)
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
static int route_find(const char *method, const char *path, const struct route **out, char *param, size_t paramlen)
{
	int path_known = 0;

	*out = NULL;
	/* Rasenmaeher joins URL parts into "//api/...": repeated leading
	 * slashes name the same path, in both modes. */
	while (path[0] == '/' && path[1] == '/')
		path++;
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

/* Validates a body that must be a JSON object of exactly the n string
 * fields (a UserCRUDRequest, an interop grant). Returns 0 with *root (caller
 * decrefs) and each *slots[i] pointing into it, or -1 with the 422 answer
 * in out (slots cleared). */
static int strings_parse(const struct api_request *req, const char *const *fields, const char **slots[], size_t n,
			 json_t **root, struct api_response *out)
{
	json_t *errors = NULL, *j = NULL, *v;
	json_error_t jerr;
	const char *key;
	int rc = -1;

	*root = NULL;
	for (size_t i = 0; i < n; i++)
		*slots[i] = NULL;
	if ((errors = json_array()) == NULL)
		goto out;
	if (req->body_len == 0) {
		respond_add_error(errors, NULL, -1, "field required", "value_error.missing");
		goto out;
	}
	j = json_loadb(req->body, req->body_len, JSON_DECODE_ANY, &jerr);
	if (j == NULL) {
		char msg[JSON_ERROR_TEXT_LENGTH + 32];

		snprintf(msg, sizeof(msg), "JSON decode error: %s", jerr.text);
		respond_add_error(errors, NULL, jerr.position > INT32_MAX ? -1 : (int)jerr.position, msg,
				  "value_error.jsondecode");
		goto out;
	}
	if (!json_is_object(j)) {
		respond_add_error(errors, NULL, -1, "value is not a valid dict", "type_error.dict");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		v = json_object_get(j, fields[i]);
		if (v == NULL)
			respond_add_error(errors, fields[i], -1, "field required", "value_error.missing");
		else if (json_is_null(v))
			respond_add_error(errors, fields[i], -1, "none is not an allowed value",
					  "type_error.none.not_allowed");
		else if (!json_is_string(v))
			respond_add_error(errors, fields[i], -1, "str type expected", "type_error.str");
		else
			*slots[i] = json_string_value(v);
	}
	json_object_foreach(j, key, v) {
		int known = 0;

		for (size_t i = 0; i < n; i++)
			known |= strcmp(key, fields[i]) == 0;
		if (!known)
			respond_add_error(errors, key, -1, "extra fields not permitted", "value_error.extra");
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
	for (size_t i = 0; i < n; i++)
		*slots[i] = NULL;
	if (errors == NULL || json_array_size(errors) == 0) {
		json_decref(errors);
		respond_oom(out);
		return -1;
	}
	respond_json(out, 422, json_pack("{s:o}", "detail", errors));
	return -1;
}

static int user_parse(const struct api_request *req, json_t **root, struct api_user *u, struct api_response *out)
{
	static const char *const fields[] = {"uuid", "callsign", "x509cert"};
	const char **slots[] = {&u->uuid, &u->callsign, &u->x509cert};

	return strings_parse(req, fields, slots, 3, root, out);
}

static int grant_parse(const struct api_request *req, json_t **root, struct api_grant *g, struct api_response *out)
{
	static const char *const fields[] = {"certcn", "x509cert"};
	const char **slots[] = {&g->certcn, &g->x509cert};

	return strings_parse(req, fields, slots, 2, root, out);
}

enum auth_need api_route_need(const char *method, const char *path)
{
	const struct route *r;
	char param[API_PARAM_MAX];

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
static int route_check(const struct api_env *env, const char *method, const char *path, const char *cn,
		       const struct route **r, char *param, size_t paramlen, struct api_response *out)
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

int api_check(const struct api_env *env, const char *method, const char *path, const char *cn, struct api_response *out)
{
	const struct route *r;
	char param[API_PARAM_MAX];

	return route_check(env, method, path, cn, &r, param, sizeof(param), out);
}

int api_refuse_early(const struct api_env *env, const char *method, const char *path, const char *cn,
		     struct api_response *out)
{
	const struct route *r = NULL;
	char param[API_PARAM_MAX];
	int64_t started = clock_mono_ns();
	struct api_response a;

	memset(&a, 0, sizeof(a));
	if (route_check(env, method, path, cn, &r, param, sizeof(param), &a) == 0)
		return 0;
	if (r != NULL && r->fn == api_users_callback)
		metrics_callback(r->event, a.status == 403 ? METRICS_CALLBACK_FORBIDDEN : METRICS_CALLBACK_INVALID,
				 started);
	*out = a;
	return 1;
}

int api_refuse_too_large(const struct api_env *env, const char *method, const char *path, const char *cn,
			 struct api_response *out)
{
	const struct route *r = NULL;
	char param[API_PARAM_MAX];
	int64_t started = clock_mono_ns();

	memset(out, 0, sizeof(*out));
	if (route_check(env, method, path, cn, &r, param, sizeof(param), out) == 0)
		api_too_large(out);
	if (r != NULL && r->fn == api_users_callback)
		metrics_callback(r->event, out->status == 403 ? METRICS_CALLBACK_FORBIDDEN : METRICS_CALLBACK_INVALID,
				 started);
	return 0;
}

int api_handle_async(const struct api_env *env, const struct api_request *req, struct api_response *out,
		     struct api_pending **pending)
{
	const struct route *r = NULL;
	struct api_user u;
	struct api_grant g;
	struct api_call c;
	json_t *root = NULL;
	char param[API_PARAM_MAX];
	int rc = 0;
	int64_t started = clock_mono_ns();

	memset(out, 0, sizeof(*out));
	*pending = NULL;
	if (route_check(env, req->method, req->path, req->cn, &r, param, sizeof(param), out) != 0)
		goto out;
	if (r->need == AUTH_RASENMAEHER_DIRECT && req->product_proxy) {
		/* A user speaking through Rasenmaeher's product proxy carries
		 * RM's certificate; this route is for RM itself only. */
		log_warnx("api: %s %s refused: made through Rasenmaeher's product proxy", req->method, r->pattern);
		respond_detail(out, 403, "Forbidden");
		goto out;
	}
	if (req->body_too_large || req->body_len > API_BODY_MAX) {
		api_too_large(out);
		goto out;
	}
	memset(&c, 0, sizeof(c));
	c.env = env;
	c.req = req;
	c.param = param;
	c.event = r->event;
	c.pending = pending;
	c.started = started;
	if (r->body == BODY_USER) {
		if (user_parse(req, &root, &u, out) != 0)
			goto out;
		c.user = &u;
	} else if (r->body == BODY_GRANT) {
		if (grant_parse(req, &root, &g, out) != 0)
			goto out;
		c.grant = &g;
	}
	if ((rc = r->fn(&c, out)) != 0)
		log_debug("api: %s %s answered %d: %s", req->method, r->pattern, out->status, api_strerror(rc));
out:
	/* A user callback answered here failed a check (api_users.c counts the rest). */
	if (r != NULL && r->fn == api_users_callback && *pending == NULL && out->status != 200)
		metrics_callback(r->event,
				 out->status == 403   ? METRICS_CALLBACK_FORBIDDEN
				 : out->status >= 500 ? METRICS_CALLBACK_FAILED
						      : METRICS_CALLBACK_INVALID,
				 started);
	json_decref(root);
	return rc;
}

/* api_handle's wait for the writer. */
struct sync_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done;
};

static void sync_done(void *ctx)
{
	struct sync_wait *w = ctx;

	pthread_mutex_lock(&w->lock);
	w->done = 1;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

int api_handle(const struct api_env *env, const struct api_request *req, struct api_response *out)
{
	struct sync_wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
	struct api_pending *p = NULL;
	int rc;

	rc = api_handle_async(env, req, out, &p);
	if (p == NULL)
		goto out;
	api_users_pending_submit(env, p, sync_done, &w);
	pthread_mutex_lock(&w.lock);
	while (!w.done)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	rc = api_users_pending_answer(env, p, out);
out:
	api_users_pending_free(p);
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.lock);
	return rc;
}
