/* fuzz_observe: Synapse's replies as a pass consumes them. The input is a
 * JSON array; its k-th element is the body of the k-th request observe.c
 * makes (null: a 404 without a body; past the end: no answer). The requests
 * are, in order: the admin user-list pages, the state of each managed room,
 * then the state of each other space child. Whatever observe_synapse and
 * observe_children make of the replies then goes, as a pass would pass it,
 * into planner_plan (fixed spec, rooms, desired users, ingest bot) and into
 * adopt_plan. Linked with -Wl,--wrap=synapse_request, so no HTTP is made:
 * __wrap_synapse_request answers from the input instead. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "adopt.h"
#include "fuzz.h"
#include "log.h"
#include "observe.h"
#include "planner.h"
#include "synapse.h"

/* NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): the name ld's --wrap gives */
int __wrap_synapse_request(struct synapse *s, const char *method, const char *path, json_t *body,
			   struct synapse_resp *resp);

static json_t *replies; /* the current input, while it runs */
static size_t next_reply;

/* NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): the name ld's --wrap gives */
int __wrap_synapse_request(struct synapse *s, const char *method, const char *path, json_t *body,
			   struct synapse_resp *resp)
{
	json_t *r;

	memset(resp, 0, sizeof(*resp));
	if (next_reply >= json_array_size(replies))
		return SYNAPSE_E_TRANSPORT;
	r = json_array_get(replies, next_reply++);
	if (json_is_null(r)) {
		resp->status = 404;
		return 0;
	}
	resp->status = 200;
	resp->body = json_incref(r);
	return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init(50, 0);
	return 0;
}

static void plan(json_t *rooms, json_t *desired, json_t *observed)
{
	json_t *in = json_pack("{s:{s:s, s:s, s:s}, s:O, s:O, s:O, s:{s:s}}", "spec", "deployment", "dep", "domain",
			       "example.test", "bot", "@matrixrmapi-bot:example.test", "rooms", rooms, "desired",
			       desired, "observed", observed, "ingest", "user", "@battlelog-bot:example.test");
	json_t *actions = NULL, *records = NULL;
	char err[256] = "";

	if (in == NULL)
		abort();
	if (planner_plan(in, &actions, err, sizeof(err)) == 0 ? !json_is_array(actions) : err[0] == '\0')
		abort();
	json_object_del(in, "desired");
	json_object_del(in, "ingest");
	json_object_set_new(in, "exclude", json_pack("[s]", "@battlelog-bot:example.test"));
	if (adopt_plan(in, &records) == 0 && !json_is_array(records))
		abort();
	json_decref(records);
	json_decref(actions);
	json_decref(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *rooms = NULL, *desired = NULL, *observed = NULL;
	char err[256] = "";

	replies = json_loadb((const char *)data, size, 0, NULL);
	next_reply = 0;
	if (!json_is_array(replies))
		goto out;
	rooms = json_pack("{s:s, s:s, s:s, s:s, s:s}", "space", "!space:example.test", "admin", "!admin:example.test",
			  "general", "!general:example.test", "helpdesk", "!helpdesk:example.test", "offtopic",
			  "!offtopic:example.test");
	desired =
		json_pack("[{s:s, s:b, s:b, s:I}, {s:s, s:b, s:b, s:I}, {s:s, s:b, s:n, s:I}]", "user",
			  "@alice:example.test", "active", 1, "admin", 0, "created_ms", (json_int_t)1700000100000,
			  "user", "@bob:example.test", "active", 1, "admin", 1, "created_ms", (json_int_t)1700000200000,
			  "user", "@carol:example.test", "active", 0, "admin", "created_ms", (json_int_t)1700000300000);
	if (rooms == NULL || desired == NULL)
		abort();
	if (observe_synapse(NULL, NULL, rooms, desired, &observed, err, sizeof(err)) != 0) {
		if (err[0] == '\0')
			abort(); /* a failed observation says why */
		goto out;
	}
	if (observe_children(NULL, NULL, rooms, observed, err, sizeof(err)) != 0)
		goto out;
	plan(rooms, desired, observed);
out:
	json_decref(observed);
	json_decref(desired);
	json_decref(rooms);
	json_decref(replies);
	replies = NULL;
	return 0;
}
