/* fuzz_planner: the planner's whole input document (spec, rooms, desired,
 * and the observed state as Synapse's user list and room-state replies
 * became it) from any bytes. planner_plan must refuse what it cannot use
 * with an error text, and otherwise return an array of actions that all
 * have a known kind. */
#include <stdlib.h>

#include <jansson.h>

#include "fuzz.h"
#include "planner.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *in = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL), *actions = NULL, *a;
	char err[256] = "";
	size_t i;

	if (in == NULL)
		return 0;
	if (planner_plan(in, &actions, err, sizeof(err)) == 0) {
		if (!json_is_array(actions))
			abort();
		json_array_foreach(actions, i, a)
			if (planner_action_kind(a) < 0)
				abort();
	} else if (err[0] == '\0') {
		abort(); /* a refusal says why */
	}
	json_decref(actions);
	json_decref(in);
	return 0;
}
