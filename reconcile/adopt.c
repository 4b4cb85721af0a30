/* adopt: see adopt.h. adopt_plan and adopt_preview are pure; adopt_run is
 * the command around them (store, Synapse client, bootstrap in read-only
 * mode so that adopt never registers, recovers or creates anything). */
#include "adopt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bootstrap.h"
#include "clock.h"
#include "config.h"
#include "errtext.h"
#include "matrixid.h"
#include "observe.h"
#include "planner.h"
#include "roomspec.h"
#include "roomstate.h"
#include "store.h"
#include "synapse.h"

#define ADMIN_LEVEL 100

static const struct errtext adopt_errors[] = {
	{ADOPT_EINPUT, "malformed adopt input"},
	{ADOPT_ESTORE, "the database could not be opened, read or written"},
	{ADOPT_ESYNAPSE, "Synapse could not be read"},
	{ADOPT_ENOROOMS, "none of the managed rooms exists yet"},
};

const char *adopt_strerror(int code)
{
	return ERRTEXT_LOOKUP(adopt_errors, code);
}

struct plan_ctx {
	const char *bot, *suffix; /* suffix: ":domain" */
	const json_t *exclude;
	json_t *found; /* user -> {"active", "admin", "evidence"} */
};

static int is_candidate(const struct plan_ctx *c, const char *user)
{
	size_t n, sn = strlen(c->suffix);
	const json_t *v;
	size_t i;

	if (!user || user[0] != '@' || (n = strlen(user)) <= sn + 1 || strcmp(user + n - sn, c->suffix) != 0)
		return 0; /* remote users are not ours */
	if (strcmp(user, c->bot) == 0 ||
	    strncmp(user + 1, MATRIXID_RECOVERY_PREFIX, strlen(MATRIXID_RECOVERY_PREFIX)) == 0)
		return 0;
	json_array_foreach(c->exclude, i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), user) == 0)
			return 0;
	return 1;
}

static json_t *record_of(struct plan_ctx *c, const char *user)
{
	json_t *r = json_object_get(c->found, user);

	if (!r) {
		r = json_pack("{s:b, s:b, s:[]}", "active", 1, "admin", 0, "evidence");
		json_object_set_new(c->found, user, r);
	}
	return r;
}

static void add_evidence(json_t *rec, const char *fmt, const char *arg)
{
	char buf[256];

	snprintf(buf, sizeof(buf), fmt, arg);
	json_array_append_new(json_object_get(rec, "evidence"), json_string(buf));
}

static void scan_members(struct plan_ctx *c, const char *key, const json_t *members)
{
	const char *user;
	json_t *v;

	json_object_foreach((json_t *)members, user, v) {
		struct roomstate_member m;
		json_t *rec;

		roomstate_member_decode(user, json_string_value(v), &m);
		if (strcmp(m.membership, "join") != 0 || !is_candidate(c, user))
			continue;
		rec = record_of(c, user);
		add_evidence(rec, "joined %s", key);
		if (strcmp(key, roomspec_rooms[ROOM_ADMIN].key) == 0)
			json_object_set_new(rec, "admin", json_true());
	}
}

/* Level >= 100 in the space makes a candidate an admin. */
static void scan_space_levels(struct plan_ctx *c, json_t *state)
{
	json_t *ev, *users = NULL, *lvl;
	const char *user;
	size_t i;

	json_array_foreach(state, i, ev) {
		const char *type = json_string_value(json_object_get(ev, "type"));

		if (type && strcmp(type, "m.room.power_levels") == 0)
			users = json_object_get(json_object_get(ev, "content"), "users");
	}
	json_object_foreach(users, user, lvl) {
		json_t *rec = json_object_get(c->found, user);

		if (rec && json_is_integer(lvl) && json_integer_value(lvl) >= ADMIN_LEVEL) {
			json_object_set_new(rec, "admin", json_true());
			add_evidence(rec, "level %s in space", "100");
		}
	}
}

static int compare_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int adopt_plan(const json_t *input, json_t **records)
{
	json_t *spec = json_object_get(input, "spec"), *obs = json_object_get(input, "observed");
	json_t *accounts = json_object_get(obs, "users"), *states = json_object_get(obs, "rooms"), *v;
	const char *domain = json_string_value(json_object_get(spec, "domain")), *key, **names = NULL;
	char suffix[300];
	struct plan_ctx c = {.bot = json_string_value(json_object_get(spec, "bot")),
			     .exclude = json_object_get(input, "exclude")};
	size_t n = 0;
	int rc = ADOPT_EINPUT;

	*records = NULL;
	if (!c.bot || !domain || !json_is_object(accounts) || !json_is_object(states))
		return rc;
	snprintf(suffix, sizeof(suffix), ":%s", domain);
	c.suffix = suffix;
	c.found = json_object();
	for (int r = 0; r < ROOM__COUNT; r++) {
		json_t *members;

		if (!json_is_array(json_object_get(states, roomspec_rooms[r].key)))
			continue;
		if (!(members = roomstate_members_of(obs, roomspec_rooms[r].key))) {
			rc = -ENOMEM;
			goto out;
		}
		scan_members(&c, roomspec_rooms[r].key, members);
		json_decref(members);
	}
	json_object_foreach(accounts, key, v) {
		if (!is_candidate(&c, key) || planner_account(accounts, key) != 2)
			continue;
		json_object_set_new(record_of(&c, key), "active", json_false());
		add_evidence(record_of(&c, key), "account %s", "deactivated");
	}
	if (json_is_array(json_object_get(states, roomspec_rooms[ROOM_SPACE].key)))
		scan_space_levels(&c, json_object_get(states, roomspec_rooms[ROOM_SPACE].key));

	names = calloc(json_object_size(c.found) + 1, sizeof(*names));
	if (!names)
		goto out;
	json_object_foreach(c.found, key, v)
		names[n++] = key;
	qsort(names, n, sizeof(*names), compare_str);
	*records = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *rec = json_object_get(c.found, names[i]);
		const char *colon = strchr(names[i], ':');
		char local[256];

		snprintf(local, sizeof(local), "%.*s", (int)(colon - names[i] - 1), names[i] + 1);
		/* A deactivated account holds no power: it is revoked, not an admin. */
		if (!json_is_true(json_object_get(rec, "active")))
			json_object_set_new(rec, "admin", json_false());
		json_array_append_new(*records, json_pack("{s:s, s:s, s:O, s:O, s:O}", "user", names[i], "callsign",
							  local, "active", json_object_get(rec, "active"), "admin",
							  json_object_get(rec, "admin"), "evidence",
							  json_object_get(rec, "evidence")));
	}
	rc = 0;
out:
	free(names);
	json_decref(c.found);
	return rc;
}

json_t *adopt_preview(const json_t *records, const json_t *desired)
{
	json_t *known = json_object(), *out = json_object(), *u;
	size_t i;

	json_array_foreach(desired, i, u)
		json_object_set(known, json_string_value(json_object_get(u, "user")), json_object_get(u, "admin"));
	json_array_foreach(records, i, u) {
		const char *id = json_string_value(json_object_get(u, "user"));
		json_t *have = json_object_get(known, id);

		json_object_set_new(out, id, json_string(!have ? "new" : json_is_null(have) ? "admin" : "kept"));
	}
	json_decref(known);
	return out;
}

static const char *change_text(const char *change)
{
	if (strcmp(change, "new") == 0)
		return "new user";
	if (strcmp(change, "admin") == 0)
		return "admin status set";
	return "kept (a callback decided)";
}

static void print_result(json_t *records, json_t *changes, int dry_run, int as_json)
{
	json_t *doc = json_pack("{s:b, s:[], s:{s:i, s:i, s:i}}", "dry_run", dry_run, "users", "counts", "new", 0,
				"admin", 0, "kept", 0);
	json_t *counts = json_object_get(doc, "counts"), *rec;
	size_t i;

	json_array_foreach(records, i, rec) {
		const char *change =
			json_string_value(json_object_get(changes, json_string_value(json_object_get(rec, "user"))));
		json_t *row = json_deep_copy(rec);

		change = change ? change : "kept";
		json_object_set_new(row, "change", json_string(change));
		json_array_append_new(json_object_get(doc, "users"), row);
		json_object_set_new(counts, change,
				    json_integer(json_integer_value(json_object_get(counts, change)) + 1));
	}
	if (as_json) {
		char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

		printf("%s\n", s ? s : "{}");
		free(s);
		json_decref(doc);
		return;
	}
	printf("%-40s %-8s %-10s %-26s %s\n", "user", "desired", "admin", "change", "evidence");
	json_array_foreach(json_object_get(doc, "users"), i, rec) {
		json_t *ev;
		size_t k;

		printf("%-40s %-8s %-10s %-26s ", json_string_value(json_object_get(rec, "user")),
		       json_is_true(json_object_get(rec, "active")) ? "active" : "revoked",
		       json_is_true(json_object_get(rec, "admin")) ? "admin" : "not admin",
		       change_text(json_string_value(json_object_get(rec, "change"))));
		json_array_foreach(json_object_get(rec, "evidence"), k, ev)
			printf("%s%s", k ? ", " : "", json_string_value(ev));
		printf("\n");
	}
	printf("%s: %lld new, %lld with admin status set, %lld kept%s\n",
	       dry_run ? "dry run, nothing recorded" : "recorded",
	       (long long)json_integer_value(json_object_get(counts, "new")),
	       (long long)json_integer_value(json_object_get(counts, "admin")),
	       (long long)json_integer_value(json_object_get(counts, "kept")),
	       dry_run ? "" : "; the service applies it on its next pass");
	json_decref(doc);
}

/* The database as adopt needs it: a dry run never creates, migrates or
 * writes it (an in-memory one stands in when there is none yet). */
static int open_store(const struct config *cfg, int dry_run, struct store **st, char *err, size_t errlen)
{
	struct stat sb;

	if (!dry_run)
		return store_open(cfg->database_path, st, err, errlen);
	if (stat(cfg->database_path, &sb) == 0)
		return store_open_readonly(cfg->database_path, st, err, errlen);
	return store_open(":memory:", st, err, errlen);
}

int adopt_run(const struct config *cfg, int dry_run, int as_json)
{
	struct store *st = NULL;
	struct synapse *syn = NULL;
	struct bootstrap boot;
	json_t *rooms = NULL, *observed = NULL, *input = NULL, *records = NULL, *desired = NULL, *changes = NULL;
	char err[1024] = "", ingest_id[300];
	int rc = ADOPT_ESTORE, booted = 0;

	if (open_store(cfg, dry_run, &st, err, sizeof(err)) != 0)
		goto out;
	rc = -ENOMEM;
	if (synapse_new(cfg->synapse_url, 30000, &syn) != 0)
		goto out;
	bootstrap_init(&boot, cfg, syn, st);
	booted = 1;
	boot.dry_run = 1; /* adopt only reads: no registration, no rooms */
	rc = ADOPT_ESYNAPSE;
	if (bootstrap_run(&boot, &rooms, err, sizeof(err)) != 0)
		goto out;
	rc = ADOPT_ENOROOMS;
	if (json_object_size(rooms) == 0) {
		snprintf(err, sizeof(err), "no managed room exists in Synapse yet; start the service first");
		goto out;
	}
	rc = ADOPT_ESYNAPSE;
	if (observe_synapse(syn, &boot, rooms, NULL, &observed, err, sizeof(err)) != 0)
		goto out;
	snprintf(ingest_id, sizeof(ingest_id), "@%s:%s", cfg->interop_bot_username, cfg->server_domain);
	input = json_pack("{s:{s:s, s:s}, s:O, s:O, s:[s]}", "spec", "bot", boot.bot_id, "domain", cfg->server_domain,
			  "rooms", rooms, "observed", observed, "exclude", ingest_id);
	if ((rc = input ? adopt_plan(input, &records) : -ENOMEM) != 0)
		goto out;
	rc = ADOPT_ESTORE;
	if (dry_run) {
		if (!(desired = store_desired_users(st)))
			goto out;
		changes = adopt_preview(records, desired);
	} else if (store_adopt(st, records, clock_real_ms(), &changes) != 0) {
		goto out;
	}
	print_result(records, changes, dry_run, as_json);
	rc = 0;
out:
	if (rc != 0)
		fprintf(stderr, "adopt: %s%s%s\n", adopt_strerror(rc), err[0] ? ": " : "", err);
	json_decref(rooms);
	json_decref(observed);
	json_decref(input);
	json_decref(records);
	json_decref(desired);
	json_decref(changes);
	if (booted)
		bootstrap_release(&boot);
	synapse_free(syn);
	store_close(st);
	return rc;
}
