/* event: the callbacks' vocabulary, written once. Rasenmaeher's five calls
 * are five events; the journal, the metrics and the callback log lines all
 * name an event by this table, so a new event is one enum value and one row.
 *
 * Invariants: event_names has a row for every value below EVENT__COUNT;
 * every name is a route's last path segment (/api/v1/users/<name>). */
#pragma once

enum event_kind { EVENT_CREATED, EVENT_REVOKED, EVENT_PROMOTED, EVENT_DEMOTED, EVENT_UPDATED, EVENT__COUNT };

struct event_name {
	const char *name;       /* "created": the journal's and the metrics' label */
	const char *log_action; /* "callback.created": a callback log line's event.action */
};

extern const struct event_name event_names[EVENT__COUNT];
