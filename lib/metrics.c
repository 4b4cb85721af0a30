/* metrics: the registry (see metrics.h). Each metric is a fixed array of
 * atomic cells indexed by its labels' table positions, so that an
 * observation is an index lookup and one or two relaxed atomic additions.
 * A histogram keeps one cell per bucket (not cumulative) and its sum in raw
 * units (nanoseconds, callbacks); the exposition adds the buckets up, so
 * le="+Inf" always equals _count even while observations land. */
#include "metrics.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "action.h"
#include "clock.h"
#include "event.h"
#include "promtext.h"

#ifndef MATRIXRMAPI_VERSION
#define MATRIXRMAPI_VERSION "unknown"
#endif

#define MS(n) ((uint64_t)(n)*1000000u)
#define US(n) ((uint64_t)(n)*1000u)
#define SEC(n) ((uint64_t)(n)*1000000000u)
#define NS_PER_S 1000000000u
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define HIST_BOUNDS_MAX 16
#define UNSET INT64_MIN

typedef _Atomic uint64_t cell;

struct hist_spec {
	const uint64_t *bounds;
	size_t n;
	uint64_t scale;
};

struct hist {
	cell counts[HIST_BOUNDS_MAX + 1];
	cell sum;
};

/* Callbacks wait for one fsync: milliseconds, seconds when the disk stalls. */
static const uint64_t callback_bounds[] = {US(500), MS(1),   US(2500), MS(5),  MS(10),   MS(25), MS(50),
					   MS(100), MS(250), MS(500),  SEC(1), MS(2500), SEC(5), SEC(10)};
/* A converged pass reads a few pages; a big one runs up to its 120 s deadline. */
static const uint64_t pass_bounds[] = {MS(10),   MS(25), MS(50),  MS(100), MS(250), MS(500),  SEC(1),
				       MS(2500), SEC(5), SEC(10), SEC(30), SEC(60), SEC(120), SEC(300)};
/* Requests time out after 10 s (60 s for a deactivation with erase). */
static const uint64_t synapse_bounds[] = {MS(1),   MS(5),  MS(10),   MS(25), MS(50),  MS(100), MS(250),
					  MS(500), SEC(1), MS(2500), SEC(5), SEC(10), SEC(30), SEC(60)};
static const uint64_t commit_bounds[] = {US(250), US(500), MS(1),   US(2500), MS(5),  MS(10), MS(25),
					 MS(50),  MS(100), MS(250), MS(500),  SEC(1), SEC(5)};
/* The writer caps a batch at 1024 callbacks. */
static const uint64_t batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

static const struct hist_spec callback_spec = {callback_bounds, COUNT(callback_bounds), NS_PER_S};
static const struct hist_spec pass_spec = {pass_bounds, COUNT(pass_bounds), NS_PER_S};
static const struct hist_spec synapse_spec = {synapse_bounds, COUNT(synapse_bounds), NS_PER_S};
static const struct hist_spec commit_spec = {commit_bounds, COUNT(commit_bounds), NS_PER_S};
static const struct hist_spec batch_spec = {batch_bounds, COUNT(batch_bounds), 1};

static const char *const callback_outcomes[METRICS_CALLBACK__COUNT] = {
	[METRICS_CALLBACK_STORED] = "stored",   [METRICS_CALLBACK_REFUSED] = "refused",
	[METRICS_CALLBACK_INVALID] = "invalid", [METRICS_CALLBACK_FORBIDDEN] = "forbidden",
	[METRICS_CALLBACK_FAILED] = "failed",
};
/* The last entry of each table is "other": what the table does not name. */
static const char *const pass_results[] = {"ok", "failed", "unreachable", "other"};
static const char *const action_outcomes[] = {"ok", "failed", "deferred", "skipped", "abandoned", "other"};
static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "other"};

/* Synapse endpoint classes: a path prefix, optionally a part the rest of
 * the path must hold; the first match wins. */
static const struct {
	const char *prefix, *holds, *name;
} synapse_classes[] = {
	{"/health", NULL, "health"},
	{"/_synapse/admin/v1/register", NULL, "admin_register"},
	{"/_synapse/admin/v1/join/", NULL, "admin_join"},
	{"/_synapse/admin/v1/deactivate/", NULL, "admin_deactivate"},
	{"/_synapse/admin/v1/users/", "/login", "admin_login"},
	{"/_synapse/admin/v1/users/", "/override_ratelimit", "admin_ratelimit"},
	{"/_synapse/admin/v1/rooms/", NULL, "admin_rooms"},
	{"/_synapse/admin/v2/users", NULL, "admin_users"},
	{"/_matrix/client/v3/account/whoami", NULL, "whoami"},
	{"/_matrix/client/v3/logout", NULL, "logout"},
	{"/_matrix/client/v3/directory/room/", NULL, "directory"},
	{"/_matrix/client/v3/createRoom", NULL, "create_room"},
	{"/_matrix/client/v3/join/", NULL, "join"},
	{"/_matrix/client/v3/rooms/", "/state/", "room_state"},
	{"/_matrix/client/v3/rooms/", "/kick", "room_kick"},
};
#define SYNAPSE_CLASSES (COUNT(synapse_classes) + 1) /* + "other" */
/* Status cells: 0 no answer, 1..500 the codes 100..599, 501 anything else. */
#define STATUS_SLOTS 502

static struct {
	cell callbacks[EVENT__COUNT][METRICS_CALLBACK__COUNT];
	struct hist callback_seconds[EVENT__COUNT];
	cell passes[COUNT(pass_results)];
	struct hist pass_seconds;
	_Atomic int64_t rooms_ready, managed_users, pending, last_success_ms;
	cell actions[ACTION__COUNT + 1][COUNT(action_outcomes)];
	cell synapse[SYNAPSE_CLASSES][COUNT(methods)][STATUS_SLOTS];
	struct hist synapse_seconds[SYNAPSE_CLASSES];
	cell commits[2]; /* failed, ok */
	struct hist commit_seconds, batch_size;
	cell store_failures;
	cell refused[METRICS_REFUSED__COUNT];
	cell cut;
	cell evicted;
} m = {.rooms_ready = UNSET, .managed_users = UNSET, .pending = UNSET, .last_success_ms = 0};

static uint64_t since(int64_t start)
{
	int64_t d = clock_mono_ns() - start;

	return d > 0 ? (uint64_t)d : 0;
}

static void add(cell *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static void hist_observe(struct hist *h, const struct hist_spec *s, uint64_t v)
{
	size_t i = 0;

	while (i < s->n && v > s->bounds[i])
		i++;
	add(&h->counts[i], 1);
	add(&h->sum, v);
}

/* The index of name in table (n entries, the last "other"). */
static size_t find(const char *const *table, size_t n, const char *name)
{
	for (size_t i = 0; name != NULL && i + 1 < n; i++)
		if (strcmp(table[i], name) == 0)
			return i;
	return n - 1;
}

void metrics_callback(int event, enum metrics_callback_outcome outcome, int64_t start)
{
	if (event < 0 || event >= (int)EVENT__COUNT || outcome < 0 || outcome >= METRICS_CALLBACK__COUNT)
		return;
	add(&m.callbacks[event][outcome], 1);
	hist_observe(&m.callback_seconds[event], &callback_spec, since(start));
}

void metrics_pass(const char *result, int64_t start)
{
	add(&m.passes[find(pass_results, COUNT(pass_results), result)], 1);
	hist_observe(&m.pass_seconds, &pass_spec, since(start));
}

void metrics_pass_state(int rooms_ready, int managed_users, int pending, int succeeded)
{
	atomic_store_explicit(&m.rooms_ready, rooms_ready, memory_order_relaxed);
	if (managed_users >= 0)
		atomic_store_explicit(&m.managed_users, managed_users, memory_order_relaxed);
	if (pending >= 0)
		atomic_store_explicit(&m.pending, pending, memory_order_relaxed);
	if (succeeded) {
		atomic_store_explicit(&m.last_success_ms, clock_real_ms(), memory_order_relaxed);
	}
}

void metrics_action(const char *kind, const char *outcome)
{
	size_t k = ACTION__COUNT;

	for (size_t i = 0; kind != NULL && i < ACTION__COUNT; i++)
		if (strcmp(action_names[i], kind) == 0)
			k = i;
	add(&m.actions[k][find(action_outcomes, COUNT(action_outcomes), outcome)], 1);
}

static size_t synapse_class(const char *path)
{
	size_t end = path != NULL ? strcspn(path, "?") : 0;
	const char *at;

	for (size_t i = 0; path != NULL && i < COUNT(synapse_classes); i++) {
		size_t n = strlen(synapse_classes[i].prefix);
		const char *holds = synapse_classes[i].holds;

		if (n > end || strncmp(path, synapse_classes[i].prefix, n) != 0)
			continue;
		if (holds == NULL)
			return i;
		/* the part must lie before any query string */
		at = strstr(path + n, holds);
		if (at != NULL && (size_t)(at - path) < end)
			return i;
	}
	return COUNT(synapse_classes);
}

const char *metrics_synapse_endpoint(const char *path)
{
	size_t c = synapse_class(path);

	return c < COUNT(synapse_classes) ? synapse_classes[c].name : "other";
}

void metrics_synapse_request(const char *method, const char *path, long status, int64_t start)
{
	size_t c = synapse_class(path);
	size_t slot = status == 0 ? 0 : status >= 100 && status <= 599 ? (size_t)(status - 99) : STATUS_SLOTS - 1;

	add(&m.synapse[c][find(methods, COUNT(methods), method)][slot], 1);
	hist_observe(&m.synapse_seconds[c], &synapse_spec, since(start));
}

void metrics_store_commit(size_t batch, int committed, int64_t start)
{
	add(&m.commits[committed ? 1 : 0], 1);
	hist_observe(&m.commit_seconds, &commit_spec, since(start));
	hist_observe(&m.batch_size, &batch_spec, batch);
}

void metrics_store_failure(void)
{
	add(&m.store_failures, 1);
}

void metrics_connection_refused(enum metrics_refusal why)
{
	if ((unsigned)why < METRICS_REFUSED__COUNT)
		add(&m.refused[why], 1);
}

void metrics_connection_cut(void)
{
	add(&m.cut, 1);
}

void metrics_connection_evicted(void)
{
	add(&m.evicted, 1);
}

static uint64_t load(cell *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

static uint64_t hist_count(struct hist *h, const struct hist_spec *s)
{
	uint64_t n = 0;

	for (size_t i = 0; i <= s->n; i++)
		n += load(&h->counts[i]);
	return n;
}

static void render_hist(struct promtext *p, const char *name, const struct promtext_label *labels, size_t nlabels,
			struct hist *h, const struct hist_spec *s)
{
	uint64_t counts[HIST_BOUNDS_MAX + 1];
	struct promtext_histogram ph;

	for (size_t i = 0; i <= s->n; i++)
		counts[i] = load(&h->counts[i]);
	ph = (struct promtext_histogram){s->bounds, s->n, counts, load(&h->sum), s->scale};
	promtext_histogram(p, name, labels, nlabels, &ph);
}

static void render_gauge(struct promtext *p, const char *name, const char *help, _Atomic int64_t *g)
{
	int64_t v = atomic_load_explicit(g, memory_order_relaxed);
	char text[24];

	promtext_family(p, name, "gauge", help);
	if (v == UNSET)
		return; /* no pass has told yet */
	snprintf(text, sizeof(text), "%lld", (long long)v);
	promtext_sample(p, name, NULL, 0, text);
}

static void render_callbacks(struct promtext *p)
{
	struct promtext_label l[2] = {{"endpoint", NULL}, {"outcome", NULL}};

	promtext_family(p, "matrixrmapi_callbacks_total", "counter",
			"Rasenmaeher's user callbacks by endpoint and outcome (stored: on disk and answered success; "
			"refused: answered success false; invalid: 413/422; forbidden: 403; failed: 503, not stored).");
	for (size_t e = 0; e < EVENT__COUNT; e++)
		for (size_t o = 0; o < METRICS_CALLBACK__COUNT; o++) {
			l[0].value = event_names[e].name;
			l[1].value = callback_outcomes[o];
			promtext_sample_u64(p, "matrixrmapi_callbacks_total", l, 2, load(&m.callbacks[e][o]));
		}
	promtext_family(p, "matrixrmapi_callback_duration_seconds", "histogram",
			"Time from a user callback's request to its answer (validation, the group commit's fsync).");
	for (size_t e = 0; e < EVENT__COUNT; e++) {
		l[0].value = event_names[e].name;
		render_hist(p, "matrixrmapi_callback_duration_seconds", l, 1, &m.callback_seconds[e], &callback_spec);
	}
}

static void render_reconcile(struct promtext *p)
{
	struct promtext_label l[2] = {{"outcome", NULL}, {"kind", NULL}};
	char when[32];

	promtext_family(p, "matrixrmapi_reconcile_passes_total", "counter",
			"Reconcile passes by outcome (as the passes table's result).");
	for (size_t i = 0; i < COUNT(pass_results); i++) {
		l[0].value = pass_results[i];
		promtext_sample_u64(p, "matrixrmapi_reconcile_passes_total", l, 1, load(&m.passes[i]));
	}
	promtext_family(p, "matrixrmapi_reconcile_pass_duration_seconds", "histogram",
			"Duration of reconcile passes, bootstrap and the second observation included.");
	render_hist(p, "matrixrmapi_reconcile_pass_duration_seconds", NULL, 0, &m.pass_seconds, &pass_spec);
	promtext_family(p, "matrixrmapi_reconcile_actions_total", "counter",
			"Actions of reconcile passes by kind and recorded outcome.");
	for (size_t k = 0; k <= ACTION__COUNT; k++)
		for (size_t o = 0; o < COUNT(action_outcomes); o++) {
			l[0].name = "kind";
			l[0].value = k < ACTION__COUNT ? action_names[k] : "other";
			l[1].name = "outcome";
			l[1].value = action_outcomes[o];
			promtext_sample_u64(p, "matrixrmapi_reconcile_actions_total", l, 2, load(&m.actions[k][o]));
		}
	render_gauge(p, "matrixrmapi_reconcile_pending_differences",
		     "Differences between desired state and Synapse left after the last pass that could tell.",
		     &m.pending);
	render_gauge(p, "matrixrmapi_managed_users", "Users in desired state (active or revoked) as of the last pass.",
		     &m.managed_users);
	render_gauge(p, "matrixrmapi_rooms_ready",
		     "Managed rooms (space included) ready in the last pass; 0 while bootstrap fails.", &m.rooms_ready);
	promtext_family(p, "matrixrmapi_reconcile_last_success_timestamp_seconds", "gauge",
			"Unix time of the end of the last successful reconcile pass (0: none yet).");
	promtext_decimal((uint64_t)atomic_load_explicit(&m.last_success_ms, memory_order_relaxed), 1000, when,
			 sizeof(when));
	promtext_sample(p, "matrixrmapi_reconcile_last_success_timestamp_seconds", NULL, 0, when);
}

static void render_synapse(struct promtext *p)
{
	struct promtext_label l[3] = {{"endpoint", NULL}, {"method", NULL}, {"code", NULL}};
	char code[16];

	promtext_family(p, "matrixrmapi_synapse_requests_total", "counter",
			"HTTP attempts to Synapse by endpoint class, method and status code (none: no answer; "
			"each 429 retry is an attempt).");
	for (size_t c = 0; c < SYNAPSE_CLASSES; c++)
		for (size_t meth = 0; meth < COUNT(methods); meth++)
			for (size_t s = 0; s < STATUS_SLOTS; s++) {
				uint64_t v = load(&m.synapse[c][meth][s]);

				if (v == 0)
					continue;
				if (s == 0)
					snprintf(code, sizeof(code), "none");
				else if (s == STATUS_SLOTS - 1)
					snprintf(code, sizeof(code), "other");
				else
					snprintf(code, sizeof(code), "%zu", s + 99);
				l[0].value = c < COUNT(synapse_classes) ? synapse_classes[c].name : "other";
				l[1].value = methods[meth];
				l[2].value = code;
				promtext_sample_u64(p, "matrixrmapi_synapse_requests_total", l, 3, v);
			}
	promtext_family(p, "matrixrmapi_synapse_request_duration_seconds", "histogram",
			"Duration of HTTP attempts to Synapse by endpoint class.");
	for (size_t c = 0; c < SYNAPSE_CLASSES; c++) {
		if (hist_count(&m.synapse_seconds[c], &synapse_spec) == 0)
			continue;
		l[0].value = c < COUNT(synapse_classes) ? synapse_classes[c].name : "other";
		render_hist(p, "matrixrmapi_synapse_request_duration_seconds", l, 1, &m.synapse_seconds[c],
			    &synapse_spec);
	}
}

static void render_store(struct promtext *p)
{
	static const char *const commit_outcomes[2] = {"failed", "ok"};
	struct promtext_label l = {"outcome", NULL};

	promtext_family(p, "matrixrmapi_store_commits_total", "counter",
			"Group commits of callbacks by the writer, by outcome.");
	for (size_t i = 0; i < 2; i++) {
		l.value = commit_outcomes[i];
		promtext_sample_u64(p, "matrixrmapi_store_commits_total", &l, 1, load(&m.commits[i]));
	}
	promtext_family(p, "matrixrmapi_store_commit_duration_seconds", "histogram",
			"Duration of the writer's group commits (one transaction, one fsync).");
	render_hist(p, "matrixrmapi_store_commit_duration_seconds", NULL, 0, &m.commit_seconds, &commit_spec);
	promtext_family(p, "matrixrmapi_store_commit_batch_size", "histogram",
			"Callbacks in each of the writer's group commits.");
	render_hist(p, "matrixrmapi_store_commit_batch_size", NULL, 0, &m.batch_size, &batch_spec);
	promtext_family(p, "matrixrmapi_store_failures_total", "counter",
			"SQL statements that failed on any database connection (a full or read-only disk, a lock held "
			"too long).");
	promtext_sample_u64(p, "matrixrmapi_store_failures_total", NULL, 0, load(&m.store_failures));
}

static void render_listener(struct promtext *p)
{
	static const char *const reasons[METRICS_REFUSED__COUNT] = {"address_limit", "reserved"};
	struct promtext_label l = {"reason", NULL};

	promtext_family(p, "matrixrmapi_connections_refused_total", "counter",
			"Connections the API listener refused at accept: the address held its share, or the listener "
			"was nearly full and the rest is kept for addresses with a verified certificate.");
	for (size_t i = 0; i < METRICS_REFUSED__COUNT; i++) {
		l.value = reasons[i];
		promtext_sample_u64(p, "matrixrmapi_connections_refused_total", &l, 1, load(&m.refused[i]));
	}
	promtext_family(p, "matrixrmapi_connections_deadline_closed_total", "counter",
			"Connections the API listener closed because their handshake and headers, or their body, took "
			"longer than the total deadline.");
	promtext_sample_u64(p, "matrixrmapi_connections_deadline_closed_total", NULL, 0, load(&m.cut));
	promtext_family(p, "matrixrmapi_connections_evicted_total", "counter",
			"Connections still in their handshake or headers that the API listener closed to make room "
			"for a new connection of the same address at its limit.");
	promtext_sample_u64(p, "matrixrmapi_connections_evicted_total", NULL, 0, load(&m.evicted));
}

int metrics_render(char **out, size_t *len)
{
	struct promtext p;
	struct promtext_label version = {"version", MATRIXRMAPI_VERSION};

	promtext_init(&p);
	promtext_family(&p, "matrixrmapi_build_info", "gauge", "The running build; always 1.");
	promtext_sample(&p, "matrixrmapi_build_info", &version, 1, "1");
	render_callbacks(&p);
	render_reconcile(&p);
	render_synapse(&p);
	render_store(&p);
	render_listener(&p);
	return promtext_finish(&p, out, len);
}

void metrics_reset(void)
{
	memset(&m, 0, sizeof(m));
	m.rooms_ready = m.managed_users = m.pending = UNSET;
}
