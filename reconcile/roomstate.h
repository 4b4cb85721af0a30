/* roomstate: a managed room's state in the compact form a pass keeps, and
 * the streaming parse that makes it from Synapse's answer.
 *
 * GET /_synapse/admin/v1/rooms/{id}/state answers {"state": [events]}: at
 * 10,000 members megabytes of JSON, of which a pass reads a few bytes per
 * member. So the answer is parsed as it arrives (never held whole, never
 * built as a document) into two parts:
 *  - events: the state events other than m.room.member (create, power
 *    levels, join rules, space children...), each cut to type, state_key,
 *    sender, origin_server_ts and content: an array, in Synapse's order;
 *  - members: {user id: value}, one short string per m.room.member event:
 *    the membership alone ("join", "invite", "ban", ...: one string shared by
 *    all the members that have it), except for a leave, which keeps who
 *    made it and when (a pass respects a leave the user made themselves):
 *    "leave <origin_server_ts> <sender>", the sender "=" when it is the
 *    member, "-" when absent or not a user id, else the sender's id. A
 *    membership that is absent, empty, longer than 15 bytes or holds a space
 *    is "?". Read the values with roomstate_member_get only.
 * Invariants: where Synapse lists a (type, state_key) twice, the first wins,
 * as a scan of its array would find it; within one event the last of a
 * repeated field wins, as in a parsed JSON object. A string holding NUL, a
 * document nested deeper than ROOMSTATE_MAX_DEPTH, or one whose "state" is
 * missing or not an array is refused whole.
 *
 * An observation ("observed" in the planner's input) holds the events under
 * "rooms" and the members under "members", each by room key; a document
 * that has full state arrays under "rooms" and no "members" (Synapse's own
 * form, as the planner's fixtures hold it) reads the same through
 * roomstate_members_of. */
#pragma once
#include "errtext.h"
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define ROOMSTATE_MAX_DEPTH 2048 /* as jansson's parser */

enum {
	ROOMSTATE_ESYNTAX = ERRTEXT_ROOMSTATE - 1, /* not JSON, or a string holding NUL */
	ROOMSTATE_ESHAPE = ERRTEXT_ROOMSTATE - 2,  /* not an object with a "state" array */
	ROOMSTATE_EDEPTH = ERRTEXT_ROOMSTATE - 3,  /* nested deeper than ROOMSTATE_MAX_DEPTH */
};

/* One member as its value says. */
struct roomstate_member {
	char membership[16]; /* "" when unknown ("?") */
	int64_t ts;          /* a leave's origin_server_ts, else 0 */
	const char *sender;  /* a leave's sender, else NULL; the member's id, or a pointer into the value */
};

struct roomstate_parser;

/* A parser for one answer. Returns 0 or -ENOMEM. */
int roomstate_parser_new(struct roomstate_parser **out);
void roomstate_parser_free(struct roomstate_parser *p);
/* The next bytes of the answer, in any cut. Returns 0, or the first error
 * (which every later call returns again). */
int roomstate_parser_feed(struct roomstate_parser *p, const char *buf, size_t len);
/* The end of the answer: *events and *members (caller owns) on 0; a code
 * and nothing on an error. */
int roomstate_parser_finish(struct roomstate_parser *p, json_t **events, json_t **members);

/* The same parts from a state array already parsed (Synapse's form). NULL
 * parts on -ENOMEM or -EINVAL (state is not an array). */
int roomstate_split(const json_t *state, json_t **events, json_t **members);

/* members of room key in observed: observed.members[key], or, when
 * observed has no "members", those of observed.rooms[key]'s member events.
 * A new reference (an empty object when the room has none); NULL only when
 * out of memory. */
json_t *roomstate_members_of(const json_t *observed, const char *key);

/* 1 and *out when members has user, else 0 and *out cleared. */
int roomstate_member_get(const json_t *members, const char *user, struct roomstate_member *out);
/* The same from one member's value; user is the member's id. */
void roomstate_member_decode(const char *user, const char *value, struct roomstate_member *out);

/* Text for a code from this module or a negative errno. */
const char *roomstate_strerror(int code);
