/* fuzz_observe: Synapse's replies as a pass consumes them. The input is a
 * JSON array; its k-th element is the body of the k-th request observe.c
 * makes (null: a 404 without a body; past the end: no answer). The requests
 * are, in order: the admin user-list pages, the state of each managed room,
 * then the state of each other space child. Whatever observe_synapse and
 * observe_children make of the replies then goes, as a pass would pass it,
 * into planner_plan (fixed spec, rooms, desired users, ingest bot) and into
 * adopt_plan. Linked with -Wl,--wrap=synapse_request and
 * -Wl,--wrap=synapse_get_stream, so no HTTP is made: the wrappers answer
 * from the input instead. A room's state (streamed) is fed to the parser in
 * pieces cut where the input says; a reply that is a JSON string is sent as
 * its raw bytes, so the parser also meets bodies that are not JSON. Each
 * streamed body is also parsed by jansson and split (roomstate_split): where
 * both accept it, the two must give the same parts. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "adopt.h"
#include "fuzz.h"
#include "log.h"
#include "observe.h"
#include "planner.h"
#include "roomstate.h"
#include "synapse.h"

/* NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): the name ld's --wrap gives */
int __wrap_synapse_request(struct synapse *s, const char *method, const char *path, json_t *body,
			   struct synapse_resp *resp);

static json_t *replies; /* the current input, while it runs */
static size_t next_reply;

/* The next reply of the input into resp: *r is its body (NULL for a 404
 * without one); SYNAPSE_ETRANSPORT past the end. */
static int take_reply(struct synapse_resp *resp, json_t **r)
{
	memset(resp, 0, sizeof(*resp));
	*r = NULL;
	if (next_reply >= json_array_size(replies))
		return SYNAPSE_ETRANSPORT;
	*r = json_array_get(replies, next_reply++);
	if (json_is_null(*r)) {
		*r = NULL;
		resp->status = 404;
		return 0;
	}
	resp->status = 200;
	return 0;
}

/* NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): the name ld's --wrap gives */
int __wrap_synapse_request(struct synapse *s, const char *method, const char *path, json_t *body,
			   struct synapse_resp *resp)
{
	json_t *r;
	int rc = take_reply(resp, &r);

	if (rc != 0 || !r)
		return rc;
	resp->body = json_incref(r);
	return 0;
}

/* NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): the name ld's --wrap gives */
int __wrap_synapse_get_stream(struct synapse *s, const char *path, const struct synapse_sink *sink,
			      struct synapse_resp *resp);

/* Where jansson and the streaming parse both accept body, the same parts. */
static void check_same_as_jansson(const char *body, size_t len)
{
	struct roomstate_parser *p;
	json_t *doc = json_loadb(body, len, 0, NULL), *ev = NULL, *mem = NULL, *jev = NULL, *jmem = NULL;
	int rc;

	if (roomstate_parser_new(&p) != 0)
		abort();
	rc = roomstate_parser_feed(p, body, len);
	if (rc == 0)
		rc = roomstate_parser_finish(p, &ev, &mem);
	roomstate_parser_free(p);
	if (rc == 0 && json_is_object(doc) && roomstate_split(json_object_get(doc, "state"), &jev, &jmem) == 0 &&
	    (!json_equal(ev, jev) || !json_equal(mem, jmem)))
		abort();
	json_decref(ev);
	json_decref(mem);
	json_decref(jev);
	json_decref(jmem);
	json_decref(doc);
}

/* NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): the name ld's --wrap gives */
int __wrap_synapse_get_stream(struct synapse *s, const char *path, const struct synapse_sink *sink,
			      struct synapse_resp *resp)
{
	json_t *r;
	char *dumped = NULL;
	const char *body;
	size_t len, cut;

	int rc = take_reply(resp, &r);

	(void)s;
	(void)path;
	if (rc != 0 || !r)
		return rc;
	if (json_is_string(r)) {
		body = json_string_value(r);
		len = json_string_length(r);
	} else {
		if (!(dumped = json_dumps(r, JSON_COMPACT | JSON_ENCODE_ANY)))
			abort();
		body = dumped;
		len = strlen(dumped);
	}
	/* Three pieces, cut at places that depend on the body. */
	cut = len ? (len * 7 + next_reply) % len : 0;
	if (cut > 0)
		sink->data(sink->arg, body, cut / 2);
	sink->data(sink->arg, body + cut / 2, cut - cut / 2);
	sink->data(sink->arg, body + cut, len - cut);
	check_same_as_jansson(body, len);
	free(dumped);
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
