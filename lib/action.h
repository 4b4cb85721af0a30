/* action: the reconciler's vocabulary of Synapse changes, written once. The
 * planner writes actions with these kinds, the executor dispatches on them,
 * and the metrics count them by name (matrixrmapi_actions_total{kind}).
 *
 * Invariants: action_names has a name for every value below ACTION__COUNT,
 * and the names are distinct. */
#pragma once

enum action_kind {
	ACTION_STATE_SET,
	ACTION_POWER_LEVELS_SET,
	ACTION_USER_REACTIVATE,
	ACTION_ROOM_JOIN,
	ACTION_INGEST_JOIN,
	ACTION_ROOM_KICK,
	ACTION_USER_DEACTIVATE,
	ACTION__COUNT
};

extern const char *const action_names[ACTION__COUNT];

/* The kind named name, or -1 (name may be NULL). */
int action_kind_of(const char *name);
