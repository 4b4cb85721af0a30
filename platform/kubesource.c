/* kubesource: see kubesource.h. Threads:
 *   one watcher per kind (Users, Groups, Roles, our UserBindings): list in
 *   pages (limit/continue), then watch from the list's resourceVersion with
 *   bookmarks and a timeout, again from the last resourceVersion seen, and
 *   list again on 410 Gone. Each keeps a compact copy of its objects in the
 *   cache and marks it dirty.
 *   the syncer: on a dirty cache, a finished pass or a Lease change, works
 *   out every User's desired state and writes what changed to the store (then
 *   nudges the loop); as leader it then brings the bindings in line.
 * The cache is under mu; no request is made while holding it. */
#include "kubesource.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "clock.h"
#include "config.h"
#include "kube.h"
#include "kubelease.h"
#include "log.h"
#include "matrixid.h"
#include "store.h"

#define GROUP_PATH "/apis/platform.opendefence.fi/v1alpha1"
#define API_VERSION "platform.opendefence.fi/v1alpha1"
#define MANAGER "matrixrmapi"
#define LABEL "app.kubernetes.io/managed-by"
#define PAGE_LIMIT 500
#define WATCH_TIMEOUT_S 290 /* the server ends a watch after this; we watch again from the last version */
#define REQUEST_TIMEOUT_MS 10000
#define RESYNC_MS 5000 /* the syncer looks again this often (failed binding writes are retried) */
#define MAX_RETRY_S 30

/* s, or d when s is NULL. */
static const char *or_else(const char *s, const char *d)
{
	return s ? s : d;
}

enum kind { K_USERS, K_GROUPS, K_ROLES, K_BINDINGS, K__COUNT };
static const char *const kind_names[K__COUNT] = {"Users", "Groups", "Roles", "UserBindings"};

struct watcher {
	struct kubesource *ks;
	enum kind kind;
	struct kube *k;
	pthread_t thread;
	int started;
	char path[1024]; /* the list path, with the label selector for bindings */
	char rv[64];     /* the last resourceVersion seen */
	json_t *fresh;   /* while listing: the objects so far */
};

struct kubesource {
	const struct config *cfg;
	struct kubesource_hooks hooks;
	struct store *st;
	struct kube *k; /* the syncer's */
	struct kubelease *lease;
	struct watcher w[K__COUNT];
	pthread_t syncer;
	int syncer_started;
	atomic_int stopping;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_mutex_t hooks_mu; /* held while a hook runs: kubesource_detach waits for it */
	/* under mu */
	int stop, dirty;
	json_t *cache[K__COUNT]; /* name -> compact object */
	int listed[K__COUNT];
	int64_t down_since_ms[K__COUNT]; /* monotonic; 0: answering */
	char problem[K__COUNT][256];
	json_t *foreign; /* binding names taken by another manager -> true */
	json_t *warned;  /* "user|problem" already logged -> true */
	char **admin_roles;
	size_t n_admin_roles;
};

/* ---- the compact forms the cache keeps ---- */

static const char *str_at(json_t *obj, const char *a, const char *b)
{
	json_t *v = json_object_get(obj, a);

	return json_string_value(b ? json_object_get(v, b) : v);
}

/* The names of a list of {name} references. */
static json_t *ref_names(json_t *refs)
{
	json_t *out = json_array(), *r;
	size_t i;

	json_array_foreach(refs, i, r) {
		const char *n = json_string_value(json_object_get(r, "name"));

		if (n)
			json_array_append_new(out, json_string(n));
	}
	return out;
}

static json_t *compact(enum kind kind, json_t *obj)
{
	json_t *spec = json_object_get(obj, "spec");

	switch (kind) {
	case K_USERS: {
		const char *approved = str_at(spec, "approvedAt", NULL), *revoked = str_at(spec, "revokedAt", NULL);

		return json_pack("{s:s?, s:s?, s:b, s:o, s:o}", "uid", str_at(obj, "metadata", "uid"), "callsign",
				 str_at(spec, "callsign", NULL), "active",
				 approved && approved[0] && !(revoked && revoked[0]), "roles",
				 ref_names(json_object_get(spec, "roleRefs")), "groups",
				 ref_names(json_object_get(spec, "groupRefs")));
	}
	case K_GROUPS:
		return json_pack("{s:o}", "roles", ref_names(json_object_get(spec, "roleRefs")));
	case K_ROLES:
		return json_object();
	case K_BINDINGS: {
		json_t *meta = json_object_get(obj, "metadata"), *owners = json_object_get(meta, "ownerReferences");
		json_t *conds = json_object_get(json_object_get(obj, "status"), "conditions"), *c, *synced = NULL;
		const char *owner = NULL;
		size_t i;

		json_array_foreach(owners, i, c)
			if (json_is_true(json_object_get(c, "controller")))
				owner = json_string_value(json_object_get(c, "uid"));
		json_array_foreach(conds, i, c)
			if (strcmp(or_else(str_at(c, "type", NULL), ""), "Synced") == 0)
				synced = c;
		return json_pack("{s:s?, s:s?, s:I, s:s?, s:s?, s:O?}", "uid", str_at(meta, "uid", NULL), "rv",
				 str_at(meta, "resourceVersion", NULL), "generation",
				 (json_int_t)json_integer_value(json_object_get(meta, "generation")), "owner", owner,
				 "user", str_at(json_object_get(obj, "spec"), "userRef", "name"), "synced", synced);
	}
	default:
		return NULL;
	}
}

/* ---- watchers ---- */

static void note_problem(struct watcher *w, const char *what, int rc, long status)
{
	struct kubesource *ks = w->ks;

	pthread_mutex_lock(&ks->mu);
	if (!ks->down_since_ms[w->kind])
		ks->down_since_ms[w->kind] = clock_mono_ms();
	if (status)
		snprintf(ks->problem[w->kind], sizeof(ks->problem[0]), "%s %s: HTTP %ld", what, kind_names[w->kind],
			 status);
	else
		snprintf(ks->problem[w->kind], sizeof(ks->problem[0]), "%s %s: %s", what, kind_names[w->kind],
			 kube_strerror(rc));
	pthread_mutex_unlock(&ks->mu);
	log_warnx("kube: %s", ks->problem[w->kind]);
}

static void note_ok(struct watcher *w)
{
	struct kubesource *ks = w->ks;

	pthread_mutex_lock(&ks->mu);
	if (ks->down_since_ms[w->kind])
		log_info("kube: %s answering again", kind_names[w->kind]);
	ks->down_since_ms[w->kind] = 0;
	ks->problem[w->kind][0] = '\0';
	pthread_mutex_unlock(&ks->mu);
}

static void mark_dirty(struct kubesource *ks)
{
	ks->dirty = 1;
	pthread_cond_signal(&ks->cv);
}

/* Sleeps up to s seconds; 1 when stopping. */
static int pause_s(struct kubesource *ks, int s)
{
	struct timespec until;
	int64_t wake = clock_mono_ms() + (int64_t)s * 1000;
	int stop;

	until.tv_sec = wake / 1000;
	until.tv_nsec = (wake % 1000) * 1000000;
	pthread_mutex_lock(&ks->mu);
	while (!ks->stop && clock_mono_ms() < wake)
		pthread_cond_timedwait(&ks->cv, &ks->mu, &until);
	stop = ks->stop;
	pthread_mutex_unlock(&ks->mu);
	return stop;
}

/* Lists every object in pages; on success the cache of the kind is replaced
 * whole (what vanished while no watch ran is gone from it too). */
static int list_all(struct watcher *w, long *status)
{
	char path[2048], cont[1024] = "";
	json_t *reply = NULL, *item;
	int rc;
	size_t i;

	json_decref(w->fresh);
	w->fresh = json_object();
	for (;;) {
		char *esc = cont[0] ? curl_easy_escape(NULL, cont, 0) : NULL;

		snprintf(path, sizeof(path), "%s%slimit=%d%s%s", w->path, strchr(w->path, '?') ? "&" : "?", PAGE_LIMIT,
			 esc ? "&continue=" : "", esc ? esc : "");
		curl_free(esc);
		if ((rc = kube_request(w->k, "GET", path, NULL, NULL, status, &reply)) != 0)
			return rc;
		if (*status == 410) {
			json_decref(reply);
			return KUBE_EGONE; /* the continue token expired: from the start */
		}
		if (*status != 200 || !json_is_array(json_object_get(reply, "items"))) {
			json_decref(reply);
			return KUBE_EPROTOCOL;
		}
		json_array_foreach(json_object_get(reply, "items"), i, item) {
			const char *name = str_at(item, "metadata", "name");

			if (name)
				json_object_set_new(w->fresh, name, compact(w->kind, item));
		}
		snprintf(w->rv, sizeof(w->rv), "%s", or_else(str_at(reply, "metadata", "resourceVersion"), ""));
		snprintf(cont, sizeof(cont), "%s", or_else(str_at(reply, "metadata", "continue"), ""));
		json_decref(reply);
		reply = NULL;
		if (!cont[0])
			break;
	}
	pthread_mutex_lock(&w->ks->mu);
	json_decref(w->ks->cache[w->kind]);
	w->ks->cache[w->kind] = w->fresh;
	w->fresh = NULL;
	w->ks->listed[w->kind] = 1;
	mark_dirty(w->ks);
	pthread_mutex_unlock(&w->ks->mu);
	log_info("kube: listed %zu %s at resourceVersion %s", json_object_size(w->ks->cache[w->kind]),
		 kind_names[w->kind], w->rv);
	return 0;
}

static int on_event(void *arg, const char *type, json_t *obj)
{
	struct watcher *w = arg;
	struct kubesource *ks = w->ks;
	const char *name = str_at(obj, "metadata", "name"), *rv = str_at(obj, "metadata", "resourceVersion");

	if (rv)
		snprintf(w->rv, sizeof(w->rv), "%s", rv);
	pthread_mutex_lock(&ks->mu);
	/* The stream answers: whatever failed before is over. */
	ks->down_since_ms[w->kind] = 0;
	ks->problem[w->kind][0] = '\0';
	if (strcmp(type, "BOOKMARK") == 0 || !name) {
		pthread_mutex_unlock(&ks->mu);
		return 0;
	}
	if (strcmp(type, "DELETED") == 0)
		json_object_del(ks->cache[w->kind], name);
	else
		json_object_set_new(ks->cache[w->kind], name, compact(w->kind, obj));
	mark_dirty(ks);
	pthread_mutex_unlock(&ks->mu);
	log_debug("kube: %s %s %s (resourceVersion %s)", kind_names[w->kind], name, type, rv ? rv : "?");
	return 0;
}

static void *watch_main(void *arg)
{
	struct watcher *w = arg;
	int retry_s = 1;

	while (!atomic_load(&w->ks->stopping)) {
		long status = 0;
		int rc = list_all(w, &status);

		if (rc != 0) {
			if (rc == KUBE_ESTOPPED)
				break;
			note_problem(w, "cannot list", rc, status == 200 ? 0 : status);
			if (pause_s(w->ks, retry_s))
				break;
			retry_s = retry_s * 2 > MAX_RETRY_S ? MAX_RETRY_S : retry_s * 2;
			continue;
		}
		note_ok(w);
		retry_s = 1;
		/* Watch until the version is gone; a cut stream or a timeout
		 * watches again from the last version seen. */
		while (!atomic_load(&w->ks->stopping)) {
			char path[2048];

			snprintf(path, sizeof(path),
				 "%s%swatch=1&allowWatchBookmarks=true&timeoutSeconds=%d&resourceVersion=%s", w->path,
				 strchr(w->path, '?') ? "&" : "?", WATCH_TIMEOUT_S, w->rv);
			rc = kube_watch(w->k, path, on_event, w, &status);
			if (rc == KUBE_EGONE) {
				log_info("kube: %s resourceVersion %s is gone (410): listing again",
					 kind_names[w->kind], w->rv);
				break;
			}
			if (rc == KUBE_ESTOPPED)
				break;
			if (rc != 0) {
				note_problem(w, "cannot watch", rc, status == 200 ? 0 : status);
				if (pause_s(w->ks, retry_s))
					break;
				retry_s = retry_s * 2 > MAX_RETRY_S ? MAX_RETRY_S : retry_s * 2;
				continue;
			}
			note_ok(w);
			retry_s = 1;
		}
	}
	return NULL;
}

/* ---- desired state ---- */

static int is_admin_role(const struct kubesource *ks, const char *role)
{
	for (size_t i = 0; i < ks->n_admin_roles; i++)
		if (strcmp(ks->admin_roles[i], role) == 0)
			return 1;
	return 0;
}

/* Logs a problem of a user once (until it changes). Under mu. */
static void warn_once(struct kubesource *ks, const char *name, const char *problem)
{
	char key[512];

	snprintf(key, sizeof(key), "%s|%s", name, problem);
	if (json_object_get(ks->warned, key))
		return;
	json_object_set_new(ks->warned, key, json_true());
	log_warnx("kube: User %s: %s", name, problem);
}

/* The platform's rule for a User's name (a callsign). */
static int valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n < 3 || n > 30)
		return 0;
	for (; *s; s++)
		if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s))
			return 0;
	return 1;
}

/* Works out one User: 0 with *mxid and *admin, or -1 with why (a condition's
 * message). Under mu. */
static int desire(struct kubesource *ks, const char *name, json_t *u, char *mxid, size_t mxidlen, int *admin, char *why,
		  size_t whylen)
{
	const char *callsign = str_at(u, "callsign", NULL);
	json_t *ref;
	size_t i;
	char reason[256];

	*admin = 0;
	if (!valid_name(name)) {
		snprintf(why, whylen, "the User's name is not a callsign (3 to 30 of a-z and 0-9)");
		return -1;
	}
	if (!callsign || !callsign[0])
		callsign = name;
	if (!valid_name(callsign)) {
		snprintf(why, whylen, "spec.callsign is not a callsign (3 to 30 of a-z and 0-9)");
		return -1;
	}
	if (!str_at(u, "uid", NULL)) {
		snprintf(why, whylen, "the User has no metadata.uid");
		return -1;
	}
	if (matrixid_from_callsign(callsign, ks->cfg->server_domain, mxid, mxidlen, reason, sizeof(reason)) != 0) {
		snprintf(why, whylen, "no Matrix ID for callsign %s: %s", callsign, reason);
		return -1;
	}
	/* Roles: the User's own and its Groups'; a reference to nothing grants
	 * nothing and is logged. */
	json_array_foreach(json_object_get(u, "roles"), i, ref) {
		const char *role = json_string_value(ref);

		if (!json_object_get(ks->cache[K_ROLES], role)) {
			char p[300];

			snprintf(p, sizeof(p), "roleRef %s names no Role; it grants nothing", role);
			warn_once(ks, name, p);
		} else if (is_admin_role(ks, role)) {
			*admin = 1;
		}
	}
	json_array_foreach(json_object_get(u, "groups"), i, ref) {
		json_t *g = json_object_get(ks->cache[K_GROUPS], json_string_value(ref)), *r;
		size_t j;

		if (!g) {
			char p[300];

			snprintf(p, sizeof(p), "groupRef %s names no Group; it grants nothing", json_string_value(ref));
			warn_once(ks, name, p);
			continue;
		}
		json_array_foreach(json_object_get(g, "roles"), j, r) {
			const char *role = json_string_value(r);

			if (json_object_get(ks->cache[K_ROLES], role) && is_admin_role(ks, role))
				*admin = 1;
		}
	}
	return 0;
}

/* A binding of ours that names this User (its uid as owner). Under mu. */
static json_t *our_binding(struct kubesource *ks, const char *name, const char *uid)
{
	json_t *b = json_object_get(ks->cache[K_BINDINGS], name);
	const char *owner = str_at(b, "owner", NULL);

	return b && owner && uid && strcmp(owner, uid) == 0 ? b : NULL;
}

/* The store's desired state from the cache: every valid User once approved,
 * and every kube row the platform no longer has, revoked. Returns the
 * number of rows written, or -1. */
static int sync_desired(struct kubesource *ks)
{
	json_t *known = store_kube_report(ks->st), *mine = json_object(), *u, *row;
	struct store_kube_user *recs = NULL;
	char(*ids)[256] = NULL;
	const char *name;
	size_t n = 0, cap, i;
	int changed = -1;

	if (!known || !mine)
		goto out;
	pthread_mutex_lock(&ks->mu);
	if (!ks->listed[K_USERS] || !ks->listed[K_GROUPS] || !ks->listed[K_ROLES] || !ks->listed[K_BINDINGS]) {
		pthread_mutex_unlock(&ks->mu);
		changed = 0;
		goto out;
	}
	cap = json_object_size(ks->cache[K_USERS]) + json_array_size(known) + 1;
	recs = calloc(cap, sizeof(*recs));
	ids = calloc(cap, sizeof(*ids));
	if (!recs || !ids) {
		pthread_mutex_unlock(&ks->mu);
		goto out;
	}
	json_array_foreach(known, i, row)
		json_object_set(mine, str_at(row, "user", NULL), row);
	json_object_foreach(ks->cache[K_USERS], name, u) {
		char why[300];
		int admin, active = json_is_true(json_object_get(u, "active"));

		if (desire(ks, name, u, ids[n], sizeof(ids[n]), &admin, why, sizeof(why)) != 0) {
			warn_once(ks, name, why);
			continue;
		}
		/* Never approved and never provisioned: nothing to do in Matrix. */
		if (!active && !json_object_get(mine, ids[n]))
			continue;
		recs[n] = (struct store_kube_user){.matrix_id = ids[n],
						   .callsign = or_else(str_at(u, "callsign", NULL), name),
						   .uid = str_at(u, "uid", NULL),
						   .active = active,
						   .admin = active && admin,
						   .held = active && !our_binding(ks, name, str_at(u, "uid", NULL))};
		json_object_del(mine, ids[n]);
		n++;
	}
	/* Kube rows the platform no longer has: the User was deleted (or its
	 * callsign changed): revoked, as a /revoked callback would. */
	json_array_foreach(known, i, row) {
		const char *id = str_at(row, "user", NULL);

		if (!json_object_get(mine, id) || n >= cap)
			continue;
		recs[n++] = (struct store_kube_user){.matrix_id = id,
						     .callsign = str_at(row, "callsign", NULL),
						     .uid = str_at(row, "uid", NULL),
						     .active = 0};
	}
	changed = store_kube_sync(ks->st, recs, n, clock_real_ms(), &changed) == 0 ? changed : -1;
	pthread_mutex_unlock(&ks->mu);
out:
	free(recs);
	free(ids);
	json_decref(mine);
	json_decref(known);
	return changed;
}

/* ---- bindings (leader only) ---- */

static void rfc3339_now(char *out, size_t outlen)
{
	time_t now = (time_t)(clock_real_ms() / 1000);
	struct tm tm;

	gmtime_r(&now, &tm);
	(void)strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The Synced condition a user's binding should carry. */
static void condition_for(json_t *row, const char *problem, const char **status, const char **reason, char *msg,
			  size_t msglen)
{
	const char *user = str_at(row, "user", NULL), *account = or_else(str_at(row, "account", NULL), "unknown");
	const char *failure = str_at(row, "failure", NULL);
	json_int_t pending = row ? json_integer_value(json_object_get(row, "pending")) : -1;

	*status = "False";
	if (problem) {
		*reason = "InvalidUser";
		snprintf(msg, msglen, "%s; nothing is provisioned in Matrix", problem);
	} else if (!row || json_integer_value(json_object_get(row, "held"))) {
		*reason = "Provisioning";
		snprintf(msg, msglen, "waiting for this binding before Matrix is provisioned");
	} else if (!json_integer_value(json_object_get(row, "active"))) {
		*reason = "Deprovisioning";
		snprintf(msg, msglen, "revoked: %s is being deactivated and erased in Matrix", user);
	} else if (pending < 0) {
		*reason = "Provisioning";
		snprintf(msg, msglen, "%s not yet seen in Synapse", user);
	} else if (pending > 0 && failure) {
		*reason = "SynapseError";
		snprintf(msg, msglen, "%s: %lld differences left; Synapse refused: %.300s (retried with backoff)", user,
			 (long long)pending, failure);
	} else if (pending > 0) {
		*reason = "Provisioning";
		snprintf(msg, msglen, "%s: %lld differences left", user, (long long)pending);
	} else if (strcmp(account, "none") == 0) {
		/* Accounts are made at the first login (OIDC); the rooms
		 * follow within a pass of it. Nothing is left to do before. */
		*status = "True";
		*reason = "NoAccountYet";
		snprintf(msg, msglen, "%s has no Matrix account yet; it joins its rooms after its first login", user);
	} else if (strcmp(account, "active") != 0) {
		*reason = "Provisioning";
		snprintf(msg, msglen, "%s: account %s", user, account);
	} else {
		*status = "True";
		*reason = "Provisioned";
		snprintf(msg, msglen, "%s is active, in its rooms, with its power levels", user);
	}
}

/* Server-side apply of our one condition on the binding's /status. */
static int apply_condition(struct kubesource *ks, const char *name, json_t *have, json_int_t generation,
			   const char *status, const char *reason, const char *msg)
{
	char path[1024], now[64];
	const char *since = str_at(have, "lastTransitionTime", NULL);
	json_t *body, *reply = NULL;
	long http = 0;
	int rc;

	/* The transition time moves only when the status does. */
	rfc3339_now(now, sizeof(now));
	if (!since || strcmp(or_else(str_at(have, "status", NULL), ""), status) != 0)
		since = now;
	body = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:[{s:s, s:s, s:s, s:s, s:s, s:I}]}}", "apiVersion", API_VERSION,
			 "kind", "UserBinding", "metadata", "name", name, "namespace", ks->cfg->kube_namespace,
			 "status", "conditions", "type", "Synced", "status", status, "reason", reason, "message", msg,
			 "lastTransitionTime", since, "observedGeneration", generation);
	snprintf(path, sizeof(path),
		 GROUP_PATH "/namespaces/%s/userbindings/%s/status?fieldManager=" MANAGER "&force=true",
		 ks->cfg->kube_namespace, name);
	rc = body ? kube_request(ks->k, "PATCH", path, "application/apply-patch+yaml", body, &http, &reply) : -ENOMEM;
	json_decref(body);
	if (rc != 0 || http != 200) {
		log_warnx("kube: UserBinding %s/%s: status not written: %s (HTTP %ld)", ks->cfg->kube_namespace, name,
			  rc ? kube_strerror(rc) : "refused", http);
		json_decref(reply);
		return -1;
	}
	/* The binding as written, so the next round does not write it again
	 * before the watch brings it. */
	if (json_is_object(reply) && strcmp(or_else(str_at(reply, "metadata", "name"), ""), name) == 0) {
		pthread_mutex_lock(&ks->mu);
		json_object_set_new(ks->cache[K_BINDINGS], name, compact(K_BINDINGS, reply));
		pthread_mutex_unlock(&ks->mu);
	}
	json_decref(reply);
	log_info("kube: UserBinding %s/%s Synced=%s %s: %s", ks->cfg->kube_namespace, name, status, reason, msg);
	return 0;
}

static int create_binding(struct kubesource *ks, const char *name, const char *uid)
{
	char path[1024];
	json_t *body, *reply = NULL;
	long http = 0;
	int rc;

	body = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}, s:[{s:s, s:s, s:s, s:s, s:b, s:b}]}, s:{s:{s:s}}}",
			 "apiVersion", API_VERSION, "kind", "UserBinding", "metadata", "name", name, "namespace",
			 ks->cfg->kube_namespace, "labels", LABEL, MANAGER, "ownerReferences", "apiVersion",
			 API_VERSION, "kind", "User", "name", name, "uid", uid, "controller", 1, "blockOwnerDeletion",
			 0, "spec", "userRef", "name", name);
	snprintf(path, sizeof(path), GROUP_PATH "/namespaces/%s/userbindings?fieldManager=" MANAGER,
		 ks->cfg->kube_namespace);
	rc = body ? kube_request(ks->k, "POST", path, NULL, body, &http, &reply) : -ENOMEM;
	json_decref(body);
	if (rc == 0 && http == 409) {
		json_t *have = NULL;

		/* A binding of that name that is not ours (no label: our
		 * watch does not see it) is someone else's: never touched. */
		snprintf(path, sizeof(path), GROUP_PATH "/namespaces/%s/userbindings/%s", ks->cfg->kube_namespace,
			 name);
		if (kube_request(ks->k, "GET", path, NULL, NULL, &http, &have) == 0 && http == 200 &&
		    strcmp(or_else(str_at(json_object_get(have, "metadata"), "labels", LABEL), ""), MANAGER) != 0) {
			pthread_mutex_lock(&ks->mu);
			json_object_set_new(ks->foreign, name, json_true());
			pthread_mutex_unlock(&ks->mu);
			log_error("kube: UserBinding %s/%s exists and is not managed by " MANAGER
				  "; User %s is not provisioned in Matrix until it is removed",
				  ks->cfg->kube_namespace, name, name);
		}
		json_decref(have);
		json_decref(reply);
		return -1;
	}
	if (rc != 0 || (http != 201 && http != 200)) {
		log_warnx("kube: UserBinding %s/%s not created: %s (HTTP %ld)", ks->cfg->kube_namespace, name,
			  rc ? kube_strerror(rc) : "refused", http);
		json_decref(reply);
		return -1;
	}
	log_info("kube: UserBinding %s/%s created for User %s", ks->cfg->kube_namespace, name, name);
	/* Known at once, not only when the watch brings it: the user is no
	 * longer held. */
	pthread_mutex_lock(&ks->mu);
	json_object_set_new(ks->cache[K_BINDINGS], name, compact(K_BINDINGS, reply));
	mark_dirty(ks);
	pthread_mutex_unlock(&ks->mu);
	rc = apply_condition(ks, name, NULL,
			     json_integer_value(json_object_get(json_object_get(reply, "metadata"), "generation")),
			     "False", "Provisioning", "created; Matrix is being provisioned");
	json_decref(reply);
	return rc;
}

static int delete_binding(struct kubesource *ks, const char *name, const char *uid, const char *rv)
{
	char path[1024];
	json_t *body = json_pack("{s:s, s:s, s:{s:s, s:s}}", "kind", "DeleteOptions", "apiVersion", "v1",
				 "preconditions", "uid", uid, "resourceVersion", rv),
	       *reply = NULL;
	long http = 0;
	int rc;

	snprintf(path, sizeof(path), GROUP_PATH "/namespaces/%s/userbindings/%s", ks->cfg->kube_namespace, name);
	rc = body ? kube_request(ks->k, "DELETE", path, NULL, body, &http, &reply) : -ENOMEM;
	json_decref(body);
	json_decref(reply);
	if (rc != 0 || (http != 200 && http != 202 && http != 404)) {
		log_warnx("kube: UserBinding %s/%s not deleted: %s (HTTP %ld)", ks->cfg->kube_namespace, name,
			  rc ? kube_strerror(rc) : "refused", http);
		return -1;
	}
	log_info("kube: UserBinding %s/%s deleted: its user is revoked in Matrix", ks->cfg->kube_namespace, name);
	return 0;
}

/* What the bindings need, worked out under mu; done after it. */
static json_t *plan_bindings(struct kubesource *ks, json_t *report)
{
	json_t *todo = json_array(), *by_id = json_object(), *by_uid = json_object(), *row, *u, *b;
	const char *name;
	size_t i;

	json_array_foreach(report, i, row) {
		json_object_set(by_id, str_at(row, "user", NULL), row);
		json_object_set(by_uid, str_at(row, "uid", NULL), row);
	}
	pthread_mutex_lock(&ks->mu);
	json_object_foreach(ks->cache[K_USERS], name, u) {
		const char *uid = str_at(u, "uid", NULL), *status, *reason;
		char mxid[512], why[300], msg[600];
		int admin, bad;

		if (!uid || !json_is_true(json_object_get(u, "active")) || json_object_get(ks->foreign, name))
			continue;
		b = our_binding(ks, name, uid);
		if (!b) {
			if (!json_object_get(ks->cache[K_BINDINGS], name))
				json_array_append_new(
					todo, json_pack("{s:s, s:s, s:s}", "op", "create", "name", name, "uid", uid));
			continue;
		}
		bad = desire(ks, name, u, mxid, sizeof(mxid), &admin, why, sizeof(why));
		condition_for(bad ? NULL : json_object_get(by_id, mxid), bad ? why : NULL, &status, &reason, msg,
			      sizeof(msg));
		json_t *have = json_object_get(b, "synced");
		if (strcmp(or_else(str_at(have, "status", NULL), ""), status) != 0 ||
		    strcmp(or_else(str_at(have, "reason", NULL), ""), reason) != 0 ||
		    strcmp(or_else(str_at(have, "message", NULL), ""), msg) != 0)
			json_array_append_new(todo, json_pack("{s:s, s:s, s:O?, s:I, s:s, s:s, s:s}", "op", "status",
							      "name", name, "have", have, "generation",
							      json_integer_value(json_object_get(b, "generation")),
							      "status", status, "reason", reason, "message", msg));
	}
	/* Bindings of ours whose User is revoked, gone, or an older User of
	 * the same name: deleted once Matrix has revoked that user. */
	json_object_foreach(ks->cache[K_BINDINGS], name, b) {
		const char *owner = str_at(b, "owner", NULL);
		json_t *cur = json_object_get(ks->cache[K_USERS], name);
		int current = cur && owner && strcmp(or_else(str_at(cur, "uid", NULL), ""), owner) == 0;

		if (current && json_is_true(json_object_get(cur, "active")))
			continue;
		row = owner ? json_object_get(by_uid, owner) : NULL;
		if (row && json_integer_value(json_object_get(row, "active")))
			continue; /* the store still has it active: the syncer revokes it first */
		if (!row || (json_integer_value(json_object_get(row, "pending")) == 0 &&
			     strcmp(or_else(str_at(row, "account", NULL), ""), "active") != 0)) {
			json_array_append_new(todo,
					      json_pack("{s:s, s:s, s:s?, s:s?}", "op", "delete", "name", name, "uid",
							str_at(b, "uid", NULL), "rv", str_at(b, "rv", NULL)));
		} else {
			const char *status, *reason;
			char msg[600];
			json_t *have = json_object_get(b, "synced");

			condition_for(row, NULL, &status, &reason, msg, sizeof(msg));
			if (strcmp(or_else(str_at(have, "reason", NULL), ""), reason) != 0 ||
			    strcmp(or_else(str_at(have, "message", NULL), ""), msg) != 0)
				json_array_append_new(todo,
						      json_pack("{s:s, s:s, s:O?, s:I, s:s, s:s, s:s}", "op", "status",
								"name", name, "have", have, "generation",
								json_integer_value(json_object_get(b, "generation")),
								"status", status, "reason", reason, "message", msg));
		}
	}
	pthread_mutex_unlock(&ks->mu);
	json_decref(by_id);
	json_decref(by_uid);
	return todo;
}

static void sync_bindings(struct kubesource *ks)
{
	json_t *report = store_kube_report(ks->st), *todo, *t;
	size_t i;

	if (!report)
		return;
	todo = plan_bindings(ks, report);
	json_array_foreach(todo, i, t) {
		const char *op = str_at(t, "op", NULL), *name = str_at(t, "name", NULL);

		if (!kubesource_may_write(ks) || atomic_load(&ks->stopping))
			break;
		if (strcmp(op, "create") == 0)
			create_binding(ks, name, str_at(t, "uid", NULL));
		else if (strcmp(op, "delete") == 0)
			delete_binding(ks, name, or_else(str_at(t, "uid", NULL), ""),
				       or_else(str_at(t, "rv", NULL), ""));
		else
			apply_condition(ks, name, json_object_get(t, "have"),
					json_integer_value(json_object_get(t, "generation")), str_at(t, "status", NULL),
					str_at(t, "reason", NULL), str_at(t, "message", NULL));
	}
	json_decref(todo);
	json_decref(report);
}

static void *sync_main(void *arg)
{
	struct kubesource *ks = arg;

	for (;;) {
		struct timespec until;
		int64_t wake = clock_mono_ms() + RESYNC_MS;
		int changed;

		pthread_mutex_lock(&ks->mu);
		until.tv_sec = wake / 1000;
		until.tv_nsec = (wake % 1000) * 1000000;
		while (!ks->stop && !ks->dirty && clock_mono_ms() < wake)
			pthread_cond_timedwait(&ks->cv, &ks->mu, &until);
		if (ks->stop) {
			pthread_mutex_unlock(&ks->mu);
			break;
		}
		ks->dirty = 0;
		pthread_mutex_unlock(&ks->mu);
		changed = sync_desired(ks);
		if (changed > 0) {
			log_info("kube: %d users' desired state changed", changed);
			pthread_mutex_lock(&ks->hooks_mu);
			if (ks->hooks.nudge)
				ks->hooks.nudge(ks->hooks.ctx);
			pthread_mutex_unlock(&ks->hooks_mu);
		}
		if (kubesource_may_write(ks))
			sync_bindings(ks);
	}
	return NULL;
}

/* ---- life cycle ---- */

static void on_lease(void *ctx, int leader)
{
	struct kubesource *ks = ctx;

	pthread_mutex_lock(&ks->hooks_mu);
	if (ks->hooks.leader)
		ks->hooks.leader(ks->hooks.ctx, leader);
	pthread_mutex_unlock(&ks->hooks_mu);
	pthread_mutex_lock(&ks->mu);
	mark_dirty(ks);
	pthread_mutex_unlock(&ks->mu);
}

static int split_roles(struct kubesource *ks)
{
	char *copy = strdup(ks->cfg->kube_admin_roles), *save = NULL;

	if (!copy)
		return -ENOMEM;
	for (char *tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		char **grown = realloc(ks->admin_roles, (ks->n_admin_roles + 1) * sizeof(*grown));

		if (!grown || !(grown[ks->n_admin_roles] = strdup(tok))) {
			if (grown)
				ks->admin_roles = grown;
			free(copy);
			return -ENOMEM;
		}
		ks->admin_roles = grown;
		ks->n_admin_roles++;
	}
	free(copy);
	return 0;
}

int kubesource_start(const struct config *cfg, const struct kubesource_hooks *hooks, struct kubesource **out, char *err,
		     size_t errlen)
{
	struct kubesource *ks = calloc(1, sizeof(*ks));
	struct kube_target t = {cfg->kube_url, cfg->kube_token_file, cfg->kube_ca_file};
	pthread_condattr_t ca;
	char dberr[512];
	int rc = -ENOMEM;

	*out = NULL;
	if (!ks)
		goto fail;
	ks->cfg = cfg;
	if (hooks)
		ks->hooks = *hooks;
	pthread_mutex_init(&ks->mu, NULL);
	pthread_mutex_init(&ks->hooks_mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ks->cv, &ca);
	pthread_condattr_destroy(&ca);
	ks->foreign = json_object();
	ks->warned = json_object();
	if (!ks->foreign || !ks->warned || split_roles(ks) != 0 || (rc = kube_new(&t, REQUEST_TIMEOUT_MS, &ks->k)))
		goto fail;
	kube_set_stop(ks->k, &ks->stopping);
	if ((rc = store_open_serving(cfg->database_path, &ks->st, dberr, sizeof(dberr))) < 0) {
		snprintf(err, errlen, "kube: %s", dberr);
		goto cleanup;
	}
	for (int i = 0; i < K__COUNT; i++) {
		struct watcher *w = &ks->w[i];

		w->ks = ks;
		w->kind = (enum kind)i;
		ks->cache[i] = json_object();
		if (i == K_BINDINGS)
			snprintf(w->path, sizeof(w->path),
				 GROUP_PATH "/namespaces/%s/userbindings?labelSelector=%s%%3D%s", cfg->kube_namespace,
				 LABEL, MANAGER);
		else
			snprintf(w->path, sizeof(w->path), GROUP_PATH "/%s",
				 i == K_USERS    ? "users"
				 : i == K_GROUPS ? "groups"
						 : "roles");
		if (!ks->cache[i] || (rc = kube_new(&t, REQUEST_TIMEOUT_MS, &w->k)) != 0)
			goto fail;
		kube_set_stop(w->k, &ks->stopping);
	}
	if ((rc = kubelease_start(cfg, on_lease, ks, &ks->lease, err, errlen)) != 0)
		goto cleanup;
	for (int i = 0; i < K__COUNT; i++) {
		if (pthread_create(&ks->w[i].thread, NULL, watch_main, &ks->w[i]) != 0) {
			rc = -errno;
			goto fail;
		}
		ks->w[i].started = 1;
	}
	if (pthread_create(&ks->syncer, NULL, sync_main, ks) != 0) {
		rc = -errno;
		goto fail;
	}
	ks->syncer_started = 1;
	log_info("kube: watching the platform's Users at %s; bindings in namespace %s; admins by role %s",
		 cfg->kube_url, cfg->kube_namespace, cfg->kube_admin_roles);
	*out = ks;
	return 0;
fail:
	snprintf(err, errlen, "kube: cannot start: %s", kube_strerror(rc));
cleanup:
	kubesource_stop(ks);
	return rc < 0 ? rc : -1;
}

int kubesource_may_write(struct kubesource *ks)
{
	return ks && kubelease_is_leader(ks->lease);
}

void kubesource_pass_done(struct kubesource *ks)
{
	if (!ks)
		return;
	pthread_mutex_lock(&ks->mu);
	mark_dirty(ks);
	pthread_mutex_unlock(&ks->mu);
}

int kubesource_health(struct kubesource *ks, char *extra, size_t extralen)
{
	int healthy = 1;
	int64_t now = clock_mono_ms();

	pthread_mutex_lock(&ks->mu);
	for (int i = 0; i < K__COUNT && healthy; i++) {
		if (ks->down_since_ms[i]) {
			healthy = 0;
			/* The public text stays short; the log has the problem's words. */
			snprintf(extra, extralen,
				 "Kubernetes API server not answering for %lld s; Synapse is left as it is",
				 (long long)(now - ks->down_since_ms[i]) / 1000);
		} else if (!ks->listed[i]) {
			healthy = 0;
			snprintf(extra, extralen, "starting: the platform's %s not listed yet", kind_names[i]);
		}
	}
	pthread_mutex_unlock(&ks->mu);
	return healthy;
}

void kubesource_stop(struct kubesource *ks)
{
	if (!ks)
		return;
	pthread_mutex_lock(&ks->mu);
	ks->stop = 1;
	atomic_store(&ks->stopping, 1);
	pthread_cond_broadcast(&ks->cv);
	pthread_mutex_unlock(&ks->mu);
	for (int i = 0; i < K__COUNT; i++)
		if (ks->w[i].started)
			pthread_join(ks->w[i].thread, NULL);
	if (ks->syncer_started)
		pthread_join(ks->syncer, NULL);
	kubelease_stop(ks->lease);
	for (int i = 0; i < K__COUNT; i++) {
		kube_free(ks->w[i].k);
		json_decref(ks->w[i].fresh);
		json_decref(ks->cache[i]);
	}
	for (size_t i = 0; i < ks->n_admin_roles; i++)
		free(ks->admin_roles[i]);
	free(ks->admin_roles);
	json_decref(ks->foreign);
	json_decref(ks->warned);
	kube_free(ks->k);
	store_close(ks->st);
	pthread_cond_destroy(&ks->cv);
	pthread_mutex_destroy(&ks->mu);
	pthread_mutex_destroy(&ks->hooks_mu);
	free(ks);
}

void kubesource_detach(struct kubesource *ks)
{
	if (!ks)
		return;
	pthread_mutex_lock(&ks->hooks_mu);
	memset(&ks->hooks, 0, sizeof(ks->hooks));
	pthread_mutex_unlock(&ks->hooks_mu);
}
