#include "action.h"

#include <string.h>

const char *const action_names[ACTION__COUNT] = {
	[ACTION_STATE_SET] = "state.set",
	[ACTION_POWER_LEVELS_SET] = "power_levels.set",
	[ACTION_USER_REACTIVATE] = "user.reactivate",
	[ACTION_ROOM_JOIN] = "room.join",
	[ACTION_INGEST_JOIN] = "ingest.join",
	[ACTION_ROOM_KICK] = "room.kick",
	[ACTION_USER_DEACTIVATE] = "user.deactivate",
};

int action_kind_of(const char *name)
{
	for (int i = 0; name != NULL && i < ACTION__COUNT; i++)
		if (strcmp(name, action_names[i]) == 0)
			return i;
	return -1;
}
