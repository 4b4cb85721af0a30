/* kubesource: the OpenDefence platform (Kubernetes) as a source of desired
 * state, beside Rasenmaeher's callbacks: its Users, Groups and Roles are
 * listed and watched, each change lands in the store's desired state
 * (store_kube_sync) and nudges the reconciler, exactly as a callback does;
 * and each User gets a UserBinding of ours whose Synced condition says how
 * far its Matrix state is.
 *
 * Invariants:
 * - Nothing is written to the store before the Users, Groups, Roles and our
 *   UserBindings have each been listed whole once, so a partial picture
 *   never revokes anyone. After that a kube user the platform no longer has
 *   is revoked; Users never approved are not written at all.
 * - An active user is written held (store.h) until a UserBinding of ours
 *   names it with the User's uid: the binding, Synced=False Provisioning,
 *   exists before any write to Synapse for that user.
 * - Only the leader (kubelease.h) writes bindings; every replica keeps its
 *   store, a cache rebuilt from the watch, current.
 * - A binding is deleted (preconditions: uid and resourceVersion) only once
 *   its user is revoked in Synapse (account deactivated or never made, no
 *   difference pending), or when it names an older User of the same name.
 *   Bindings without our managed-by label are never written.
 * - While the API server cannot be reached the store, and so Synapse, stay
 *   as they are; health says why. */
#pragma once
#include <stddef.h>

struct config;
struct kubesource;

struct kubesource_hooks {
	void (*nudge)(void *ctx);                 /* the desired state changed: run a pass */
	void (*leader)(void *ctx, int is_leader); /* the Lease was won (1) or lost (0) */
	void *ctx;
};

/* Starts the watches, the Lease and the thread that writes the store and
 * the bindings, with a store connection of its own. Returns 0 or a negative
 * code with err. */
int kubesource_start(const struct config *cfg, const struct kubesource_hooks *hooks, struct kubesource **out, char *err,
		     size_t errlen);
/* 1 while this replica may write to Synapse (it holds the Lease). */
int kubesource_may_write(struct kubesource *ks);
/* A reconcile pass ended: the bindings' conditions follow it. */
void kubesource_pass_done(struct kubesource *ks);
/* 1 when the API server answers and every list is complete; else 0 with
 * why in extra. Thread-safe. */
int kubesource_health(struct kubesource *ks, char *extra, size_t extralen);
/* No hook is called after this returns (for a shutdown that stops what the
 * hooks reach first). NULL is a no-op. */
void kubesource_detach(struct kubesource *ks);
/* Stops the watches, hands the Lease back; NULL is a no-op. */
void kubesource_stop(struct kubesource *ks);
