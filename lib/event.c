#include "event.h"

const struct event_name event_names[EVENT__COUNT] = {
	[EVENT_CREATED] = {"created", "callback.created"},    [EVENT_REVOKED] = {"revoked", "callback.revoked"},
	[EVENT_PROMOTED] = {"promoted", "callback.promoted"}, [EVENT_DEMOTED] = {"demoted", "callback.demoted"},
	[EVENT_UPDATED] = {"updated", "callback.updated"},
};
