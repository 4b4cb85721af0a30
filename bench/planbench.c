/* planbench: CPU time of one planner_plan() over a converged deployment of
 * N managed users (bench/run.py --planner drives it). It scales a planner
 * fixture (tests/planner/01-converged-deployment-plans-nothing.json): every
 * added user is active, not admin, has an account and is joined to every
 * room but the admin room, so a correct plan is empty. The rooms are then
 * put in the compact form a pass holds (roomstate.h: members apart, the
 * fixture's full events freed), as observe.c makes it from Synapse. Prints
 * one JSON object: users, actions planned, CPU seconds of the planning, peak
 * RSS (of the whole run: the fixture's full events included).
 *
 *   planbench FIXTURE N [REPEAT]
 * Not a test: it asserts nothing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <jansson.h>

#include "clock.h"
#include "planner.h"
#include "roomstate.h"

static double cpu_s(void)
{
	return (double)clock_cpu_ns() / 1e9;
}

/* A whole decimal number from 0 up, or -1. */
static long number(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	return end == s || *end != '\0' || errno != 0 || v < 0 ? -1 : v;
}

int main(int argc, char **argv)
{
	json_t *in, *desired, *users, *rooms, *plan = NULL, *state, *members;
	const char *key, *domain;
	json_error_t jerr;
	struct rusage ru;
	double best = -1;
	long n, repeat;
	char err[256], id[128];

	if (argc < 3) {
		fprintf(stderr, "usage: planbench FIXTURE N [REPEAT]\n");
		return 2;
	}
	n = number(argv[2]);
	repeat = argc > 3 ? number(argv[3]) : 3;
	if (n < 0 || repeat < 1) {
		fprintf(stderr, "planbench: N is a whole number, REPEAT one above 0\n");
		return 2;
	}
	if ((in = json_load_file(argv[1], 0, &jerr)) == NULL) {
		fprintf(stderr, "planbench: %s: %s\n", argv[1], jerr.text);
		return 2;
	}
	desired = json_object_get(in, "desired");
	users = json_object_get(json_object_get(in, "observed"), "users");
	rooms = json_object_get(json_object_get(in, "observed"), "rooms");
	domain = json_string_value(json_object_get(json_object_get(in, "spec"), "domain"));
	for (long i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "@user%06ld:%s", i, domain);
		json_array_append_new(desired, json_pack("{s:s, s:b, s:b, s:I}", "user", id, "active", 1, "admin", 0,
							 "created_ms", (json_int_t)1700000100000LL));
		json_object_set_new(users, id, json_pack("{s:b}", "deactivated", 0));
		json_object_foreach(rooms, key, state) {
			if (strcmp(key, "admin") == 0)
				continue;
			json_array_append_new(state,
					      json_pack("{s:s, s:s, s:s, s:I, s:{s:s}}", "type", "m.room.member",
							"state_key", id, "sender", id, "origin_server_ts",
							(json_int_t)1700000160000LL, "content", "membership", "join"));
		}
	}
	members = json_object();
	json_object_foreach(rooms, key, state) {
		json_t *events, *m;

		if (roomstate_split(state, &events, &m) != 0) {
			fprintf(stderr, "planbench: out of memory\n");
			return 1;
		}
		json_object_set_new(members, key, m);
		json_object_set_new(rooms, key, events);
	}
	json_object_set_new(json_object_get(in, "observed"), "members", members);
	for (long r = 0; r < repeat; r++) {
		double t0 = cpu_s(), t;

		json_decref(plan);
		plan = NULL;
		if (planner_plan(in, &plan, err, sizeof(err)) != 0) {
			fprintf(stderr, "planbench: %s\n", err);
			return 1;
		}
		t = cpu_s() - t0;
		if (best < 0 || t < best)
			best = t;
	}
	getrusage(RUSAGE_SELF, &ru);
	printf("{\"users\":%ld,\"actions\":%zu,\"plan_cpu_s\":%.4f,\"maxrss_kib\":%ld}\n", n, json_array_size(plan),
	       best, ru.ru_maxrss);
	json_decref(plan);
	json_decref(in);
	return 0;
}
