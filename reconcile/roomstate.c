/* roomstate: see roomstate.h. The parse runs on yajl's callbacks: only an
 * event's kept fields are copied and only its content is built as JSON;
 * everything else (ids, unsigned, signatures, profile fields) is read past
 * without a byte kept. */
#include "roomstate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "errtext.h"

static const struct errtext err_texts[] = {
	{ROOMSTATE_ESYNTAX, "the room state is not valid JSON"},
	{ROOMSTATE_ESHAPE, "the room state has no \"state\" array"},
	{ROOMSTATE_EDEPTH, "the room state is nested too deeply"},
};

const char *roomstate_strerror(int code)
{
	return ERRTEXT_LOOKUP(err_texts, code);
}

/* Where the parse is: the container the next value goes into. */
enum where {
	W_DOC,     /* before the document */
	W_TOP,     /* in the top-level object */
	W_STATE,   /* in the "state" array */
	W_EVENT,   /* in one event object */
	W_CONTENT, /* inside an event's content (built as JSON) */
	W_END,     /* after the document */
};

/* The event field a value belongs to. */
enum field { F_OTHER, F_TYPE, F_STATE_KEY, F_SENDER, F_TS, F_CONTENT };

struct event {
	char *type, *state_key, *sender; /* NULL: absent, or not a string */
	json_int_t ts;
	int has_ts;
	json_t *content; /* NULL: absent */
};

/* The values all members with one membership share (roomstate.h): index
 * by membership, filled on first use; each holds one reference. */
static const char *const shared_names[] = {"join", "invite", "ban", "knock", "?"};
#define SHARED_COUNT (sizeof(shared_names) / sizeof(shared_names[0]))

struct roomstate_parser {
	yajl_handle h;
	int err;
	enum where where;
	int top_key_is_state; /* W_TOP: the value coming is "state"'s */
	int seen_state;
	int skip;         /* >0: inside a container being read past, its depth */
	enum field field; /* W_EVENT: the field of the value coming */
	struct event ev;  /* W_EVENT, W_CONTENT */
	json_t **stack;   /* W_CONTENT: the open containers, outermost first */
	char **keys;      /* the key waiting in each open object, or NULL */
	size_t *key_lens;
	int depth; /* containers open in stack */
	int level; /* containers open in the whole document */
	json_t *events, *members;
	json_t *shared[SHARED_COUNT]; /* member_value's */
};

static int fail(struct roomstate_parser *p, int code)
{
	if (!p->err)
		p->err = code;
	return 0; /* yajl: stop */
}

static void event_clear(struct event *e)
{
	free(e->type);
	free(e->state_key);
	free(e->sender);
	json_decref(e->content);
	memset(e, 0, sizeof(*e));
}

static void shared_free(json_t **shared)
{
	for (size_t i = 0; i < SHARED_COUNT; i++)
		json_decref(shared[i]);
}

/* The value of one member event, as roomstate.h describes it (a new
 * reference), or NULL when out of memory. */
static json_t *member_value(json_t **shared, const char *user, const char *membership, const char *sender,
			    json_int_t ts)
{
	const char *m = membership && membership[0] &&
					strlen(membership) < sizeof(((struct roomstate_member *)0)->membership) &&
					!strchr(membership, ' ')
				? membership
				: "?";
	const char *who = !sender || sender[0] != '@' ? "-" : strcmp(sender, user) == 0 ? "=" : sender;
	size_t n;
	char *buf;
	json_t *v;

	if (strcmp(m, "leave") != 0) {
		for (size_t i = 0; i < SHARED_COUNT; i++)
			if (strcmp(m, shared_names[i]) == 0) {
				if (!shared[i])
					shared[i] = json_string_nocheck(m);
				return json_incref(shared[i]);
			}
		return json_string_nocheck(m);
	}
	n = strlen(m) + strlen(who) + 24;
	if (!(buf = malloc(n)))
		return NULL;
	snprintf(buf, n, "%s %lld %s", m, (long long)ts, who);
	v = json_string_nocheck(buf);
	free(buf);
	return v;
}

/* Adds one member event; the first of a user wins. */
static int add_member(json_t *members, json_t **shared, const char *user, const json_t *content, const char *sender,
		      json_int_t ts)
{
	json_t *v;

	if (!user || json_object_get(members, user))
		return 0;
	v = member_value(shared, user, json_string_value(json_object_get(content, "membership")), sender, ts);
	return v && json_object_set_new(members, user, v) == 0 ? 0 : -ENOMEM;
}

/* A non-member event cut to the fields a pass reads, as the streaming parse
 * keeps them: the three ids only as strings, the time only as an integer. */
static json_t *compact_event(const json_t *ev)
{
	static const char *const ids[] = {"type", "state_key", "sender"};
	json_t *c = json_object(), *v;
	int rc = c ? 0 : -1;

	for (size_t k = 0; rc == 0 && k < sizeof(ids) / sizeof(ids[0]); k++)
		if (json_is_string(v = json_object_get(ev, ids[k])))
			rc = json_object_set(c, ids[k], v);
	if (rc == 0 && json_is_integer(v = json_object_get(ev, "origin_server_ts")))
		rc = json_object_set(c, "origin_server_ts", v);
	if (rc == 0 && (v = json_object_get(ev, "content")))
		rc = json_object_set(c, "content", v);
	if (rc != 0) {
		json_decref(c);
		return NULL;
	}
	return c;
}

/* The event just closed goes to members or events. */
static int event_end(struct roomstate_parser *p)
{
	struct event *e = &p->ev;
	int rc = 0;

	if (e->type && strcmp(e->type, "m.room.member") == 0) {
		rc = add_member(p->members, p->shared, e->state_key, e->content, e->sender, e->has_ts ? e->ts : 0);
	} else {
		json_t *c = json_object();

		if (!c || (e->type && json_object_set_new(c, "type", json_string_nocheck(e->type)) != 0) ||
		    (e->state_key && json_object_set_new(c, "state_key", json_string_nocheck(e->state_key)) != 0) ||
		    (e->sender && json_object_set_new(c, "sender", json_string_nocheck(e->sender)) != 0) ||
		    (e->has_ts && json_object_set_new(c, "origin_server_ts", json_integer(e->ts)) != 0) ||
		    (e->content && json_object_set(c, "content", e->content) != 0) ||
		    json_array_append_new(p->events, c) != 0)
			rc = -ENOMEM;
	}
	event_clear(e);
	return rc;
}

/* A scalar or a finished container for the content being built. */
static int content_add(struct roomstate_parser *p, json_t *v)
{
	json_t *into;
	int rc;

	if (!v)
		return fail(p, -ENOMEM);
	if (p->depth == 0) { /* the content itself */
		json_decref(p->ev.content);
		p->ev.content = v;
		p->where = W_EVENT;
		return 1;
	}
	into = p->stack[p->depth - 1];
	if (json_is_array(into)) {
		rc = json_array_append_new(into, v);
	} else {
		rc = json_object_setn_new_nocheck(into, p->keys[p->depth - 1], p->key_lens[p->depth - 1], v);
		free(p->keys[p->depth - 1]);
		p->keys[p->depth - 1] = NULL;
	}
	return rc == 0 ? 1 : fail(p, -ENOMEM);
}

/* on_open has counted c in level, which is above depth (the document, the
 * state array and the event are open too), so the stack has room. */
static int content_open(struct roomstate_parser *p, json_t *c)
{
	if (!c)
		return fail(p, -ENOMEM);
	p->stack[p->depth] = c;
	p->keys[p->depth] = NULL;
	p->depth++;
	return 1;
}

static int content_close(struct roomstate_parser *p)
{
	json_t *c = p->stack[--p->depth];

	return content_add(p, c);
}

static char *copy_string(const unsigned char *s, size_t len)
{
	char *c = malloc(len + 1);

	if (c) {
		memcpy(c, s, len);
		c[len] = '\0';
	}
	return c;
}

/* The value of the event field being read, other than content: a string
 * (str, len) for the ids, an integer (is_int, iv) for the time; anything
 * else (str NULL, is_int 0) leaves the field absent. */
static int field_assign(struct roomstate_parser *p, const unsigned char *str, size_t len, int is_int, long long iv)
{
	char **slot = p->field == F_TYPE        ? &p->ev.type
		      : p->field == F_STATE_KEY ? &p->ev.state_key
		      : p->field == F_SENDER    ? &p->ev.sender
						: NULL;

	if (p->field == F_TS) {
		p->ev.has_ts = is_int;
		p->ev.ts = is_int ? iv : 0;
	}
	if (slot) {
		free(*slot);
		*slot = NULL;
		if (str && !(*slot = copy_string(str, len)))
			return fail(p, -ENOMEM);
	}
	return 1;
}

/* A scalar value. str is set for a string (len bytes), else v is the value
 * as JSON (NULL for a string), with is_int/iv for an integer. */
static int on_scalar(struct roomstate_parser *p, const unsigned char *str, size_t len, json_t *v, int is_int,
		     long long iv)
{
	if (p->skip || p->err) {
		json_decref(v);
		return p->err ? 0 : 1;
	}
	if (str && memchr(str, '\0', len))
		return fail(p, ROOMSTATE_ESYNTAX);
	switch (p->where) {
	case W_CONTENT:
		return content_add(p, str ? json_stringn_nocheck((const char *)str, len) : v);
	case W_EVENT:
		break;
	case W_TOP:
		json_decref(v);
		return p->top_key_is_state ? fail(p, ROOMSTATE_ESHAPE) : 1;
	case W_STATE: /* an event that is not an object is left out */
		json_decref(v);
		return 1;
	default:
		json_decref(v);
		return fail(p, ROOMSTATE_ESHAPE);
	}
	if (p->field == F_CONTENT) {
		json_decref(p->ev.content);
		p->ev.content = str ? json_stringn_nocheck((const char *)str, len) : v;
		return p->ev.content ? 1 : fail(p, -ENOMEM);
	}
	json_decref(v);
	return field_assign(p, str, len, is_int, iv);
}

static int cb_null(void *ctx)
{
	return on_scalar(ctx, NULL, 0, json_null(), 0, 0);
}

static int cb_boolean(void *ctx, int b)
{
	return on_scalar(ctx, NULL, 0, json_boolean(b), 0, 0);
}

static int cb_integer(void *ctx, long long v)
{
	return on_scalar(ctx, NULL, 0, json_integer(v), 1, v);
}

static int cb_double(void *ctx, double v)
{
	return on_scalar(ctx, NULL, 0, json_real(v), 0, 0);
}

static int cb_string(void *ctx, const unsigned char *s, size_t len)
{
	return on_scalar(ctx, s, len, NULL, 0, 0);
}

/* A container opens; map is 1 for an object, 0 for an array. */
static int on_open(struct roomstate_parser *p, int map)
{
	if (p->err)
		return 0;
	if (++p->level > ROOMSTATE_MAX_DEPTH)
		return fail(p, ROOMSTATE_EDEPTH);
	if (p->skip) {
		p->skip++;
		return 1;
	}
	switch (p->where) {
	case W_DOC:
		if (!map)
			return fail(p, ROOMSTATE_ESHAPE);
		p->where = W_TOP;
		return 1;
	case W_TOP:
		if (!p->top_key_is_state) {
			p->skip = 1;
			return 1;
		}
		if (map)
			return fail(p, ROOMSTATE_ESHAPE);
		p->where = W_STATE;
		p->seen_state = 1;
		return 1;
	case W_STATE:
		if (!map) {
			p->skip = 1;
			return 1;
		}
		p->where = W_EVENT;
		p->field = F_OTHER;
		return 1;
	case W_EVENT:
		if (p->field != F_CONTENT) { /* a container where a kept field's scalar belongs */
			p->skip = 1;
			return field_assign(p, NULL, 0, 0, 0);
		}
		json_decref(p->ev.content);
		p->ev.content = NULL;
		p->where = W_CONTENT;
		return content_open(p, map ? json_object() : json_array());
	case W_CONTENT:
		return content_open(p, map ? json_object() : json_array());
	default:
		return fail(p, ROOMSTATE_ESHAPE);
	}
}

static int on_close(struct roomstate_parser *p)
{
	if (p->err)
		return 0;
	p->level--;
	if (p->skip) {
		p->skip--;
		return 1;
	}
	switch (p->where) {
	case W_CONTENT:
		return content_close(p);
	case W_EVENT:
		p->where = W_STATE;
		return event_end(p) == 0 ? 1 : fail(p, -ENOMEM);
	case W_STATE:
		p->where = W_TOP;
		p->top_key_is_state = 0;
		return 1;
	case W_TOP:
		p->where = W_END;
		return 1;
	default:
		return fail(p, ROOMSTATE_ESHAPE);
	}
}

static int cb_start_map(void *ctx)
{
	return on_open(ctx, 1);
}

static int cb_start_array(void *ctx)
{
	return on_open(ctx, 0);
}

static int cb_end(void *ctx)
{
	return on_close(ctx);
}

static int key_is(const unsigned char *k, size_t len, const char *name)
{
	return len == strlen(name) && memcmp(k, name, len) == 0;
}

static int cb_map_key(void *ctx, const unsigned char *k, size_t len)
{
	struct roomstate_parser *p = ctx;

	if (p->err)
		return 0;
	if (p->skip)
		return 1;
	if (memchr(k, '\0', len))
		return fail(p, ROOMSTATE_ESYNTAX);
	switch (p->where) {
	case W_TOP:
		p->top_key_is_state = key_is(k, len, "state");
		if (p->top_key_is_state && p->seen_state) /* a repeated "state": the last wins */
			json_array_clear(p->events), json_object_clear(p->members);
		return 1;
	case W_EVENT:
		p->field = key_is(k, len, "type")               ? F_TYPE
			   : key_is(k, len, "state_key")        ? F_STATE_KEY
			   : key_is(k, len, "sender")           ? F_SENDER
			   : key_is(k, len, "origin_server_ts") ? F_TS
			   : key_is(k, len, "content")          ? F_CONTENT
								: F_OTHER;
		return 1;
	case W_CONTENT:
		free(p->keys[p->depth - 1]);
		if (!(p->keys[p->depth - 1] = copy_string(k, len)))
			return fail(p, -ENOMEM);
		p->key_lens[p->depth - 1] = len;
		return 1;
	default:
		return 1;
	}
}

static const yajl_callbacks callbacks = {
	.yajl_null = cb_null,
	.yajl_boolean = cb_boolean,
	.yajl_integer = cb_integer,
	.yajl_double = cb_double,
	.yajl_string = cb_string,
	.yajl_start_map = cb_start_map,
	.yajl_map_key = cb_map_key,
	.yajl_end_map = cb_end,
	.yajl_start_array = cb_start_array,
	.yajl_end_array = cb_end,
};

int roomstate_parser_new(struct roomstate_parser **out)
{
	struct roomstate_parser *p = calloc(1, sizeof(*p));

	*out = NULL;
	if (!p)
		return -ENOMEM;
	p->stack = calloc(ROOMSTATE_MAX_DEPTH, sizeof(json_t *));
	p->keys = calloc(ROOMSTATE_MAX_DEPTH, sizeof(*p->keys));
	p->key_lens = calloc(ROOMSTATE_MAX_DEPTH, sizeof(*p->key_lens));
	p->events = json_array();
	p->members = json_object();
	if (!p->stack || !p->keys || !p->key_lens || !p->events || !p->members ||
	    !(p->h = yajl_alloc(&callbacks, NULL, p))) {
		roomstate_parser_free(p);
		return -ENOMEM;
	}
	*out = p;
	return 0;
}

void roomstate_parser_free(struct roomstate_parser *p)
{
	if (!p)
		return;
	if (p->h)
		yajl_free(p->h);
	for (int i = 0; i < p->depth; i++) {
		json_decref(p->stack[i]);
		free(p->keys[i]);
	}
	free(p->stack);
	free(p->keys);
	free(p->key_lens);
	event_clear(&p->ev);
	json_decref(p->events);
	json_decref(p->members);
	shared_free(p->shared);
	free(p);
}

int roomstate_parser_feed(struct roomstate_parser *p, const char *buf, size_t len)
{
	if (!p->err && yajl_parse(p->h, (const unsigned char *)buf, len) != yajl_status_ok && !p->err)
		p->err = ROOMSTATE_ESYNTAX;
	return p->err;
}

int roomstate_parser_finish(struct roomstate_parser *p, json_t **events, json_t **members)
{
	*events = *members = NULL;
	if (!p->err && yajl_complete_parse(p->h) != yajl_status_ok && !p->err)
		p->err = ROOMSTATE_ESYNTAX;
	if (!p->err && (p->where != W_END || !p->seen_state))
		p->err = p->where == W_END ? ROOMSTATE_ESHAPE : ROOMSTATE_ESYNTAX;
	if (p->err)
		return p->err;
	*events = p->events;
	*members = p->members;
	p->events = p->members = NULL;
	return 0;
}

int roomstate_split(const json_t *state, json_t **events, json_t **members)
{
	json_t *shared[SHARED_COUNT] = {NULL};
	const json_t *ev;
	size_t i;

	*events = *members = NULL;
	if (!json_is_array(state))
		return -EINVAL;
	*events = json_array();
	*members = json_object();
	if (!*events || !*members)
		goto nomem;
	json_array_foreach(state, i, ev) {
		const char *type = json_string_value(json_object_get(ev, "type"));
		json_t *c;

		if (!json_is_object(ev))
			continue;
		if (type && strcmp(type, "m.room.member") == 0) {
			json_t *ts = json_object_get(ev, "origin_server_ts");

			if (add_member(*members, shared, json_string_value(json_object_get(ev, "state_key")),
				       json_object_get(ev, "content"), json_string_value(json_object_get(ev, "sender")),
				       json_is_integer(ts) ? json_integer_value(ts) : 0) != 0)
				goto nomem;
		} else if (!(c = compact_event(ev)) || json_array_append_new(*events, c) != 0) {
			goto nomem;
		}
	}
	shared_free(shared);
	return 0;
nomem:
	shared_free(shared);
	json_decref(*events);
	json_decref(*members);
	*events = *members = NULL;
	return -ENOMEM;
}

json_t *roomstate_members_of(const json_t *observed, const char *key)
{
	const json_t *all = json_object_get(observed, "members");
	json_t *events, *members;

	if (all)
		return json_is_object(json_object_get(all, key)) ? json_incref(json_object_get(all, key))
								 : json_object();
	if (roomstate_split(json_object_get(json_object_get(observed, "rooms"), key), &events, &members) == -ENOMEM)
		return NULL;
	json_decref(events);
	return members ? members : json_object();
}

void roomstate_member_decode(const char *user, const char *value, struct roomstate_member *out)
{
	const char *sp = value ? strchr(value, ' ') : NULL;
	char *end;

	memset(out, 0, sizeof(*out));
	if (value && !sp) { /* a membership alone */
		size_t n = strlen(value);

		if (n < sizeof(out->membership) && strcmp(value, "?") != 0)
			memcpy(out->membership, value, n + 1);
		return;
	}
	if (!sp)
		return;
	if ((size_t)(sp - value) < sizeof(out->membership) && !(sp - value == 1 && value[0] == '?')) {
		memcpy(out->membership, value, (size_t)(sp - value));
		out->membership[sp - value] = '\0';
	}
	out->ts = strtoll(sp + 1, &end, 10);
	if (*end != ' ')
		return;
	end++;
	out->sender = strcmp(end, "=") == 0 ? user : strcmp(end, "-") == 0 ? NULL : end;
}

int roomstate_member_get(const json_t *members, const char *user, struct roomstate_member *out)
{
	const char *v = user ? json_string_value(json_object_get(members, user)) : NULL;

	roomstate_member_decode(user, v, out);
	return v != NULL;
}
