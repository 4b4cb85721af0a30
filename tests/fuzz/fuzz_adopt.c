/* fuzz_adopt: adopt_plan's input document (spec, rooms, observed users and
 * room state, exclude) from any bytes, then adopt_preview of what it
 * proposes against a fixed desired state. adopt_plan either refuses with
 * ADOPT_EINPUT and no records, or returns an array of records, each with
 * a user. */
#include <stdlib.h>

#include <jansson.h>

#include "adopt.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *in = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
	json_t *records = NULL, *desired = NULL, *preview = NULL, *r;
	size_t i;
	int rc;

	if (in == NULL)
		return 0;
	rc = adopt_plan(in, &records);
	if (rc == 0) {
		if (!json_is_array(records))
			abort();
		json_array_foreach(records, i, r)
			if (!json_is_string(json_object_get(r, "user")))
				abort();
		desired = json_pack("[{s:s, s:b, s:b}]", "user", "@alice:example.test", "active", 1, "admin", 0);
		preview = adopt_preview(records, desired);
	} else if (rc != ADOPT_EINPUT || records != NULL) {
		abort();
	}
	json_decref(preview);
	json_decref(desired);
	json_decref(records);
	json_decref(in);
	return 0;
}
