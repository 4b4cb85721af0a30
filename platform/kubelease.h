/* kubelease: leader election with a coordination.k8s.io/v1 Lease, so that of
 * several replicas exactly one writes to Synapse and to the UserBindings.
 *
 * Invariants: a replica is leader only while its last successful renewal is
 * younger than two thirds of the lease duration (it steps down by itself
 * before any other replica may take over); another replica takes over only
 * after the Lease has stayed unchanged for a whole lease duration as its own
 * monotonic clock measures it (clocks of different machines are never
 * compared). Every write carries the resourceVersion read, so two replicas
 * can never both win one round (the API server answers 409 to the second).
 * On a clean stop a leader hands the Lease back (holderIdentity emptied), so
 * another replica takes over at once. */
#pragma once
#include <stddef.h>

struct config;
struct kubelease;

/* Called from the lease's thread when this replica becomes leader (1) or
 * stops being one (0). */
typedef void (*kubelease_fn)(void *ctx, int leader);

/* Starts the thread. Returns 0 or a negative code (kube_strerror or
 * -errno) with err. */
int kubelease_start(const struct config *cfg, kubelease_fn on_change, void *ctx, struct kubelease **out, char *err,
		    size_t errlen);
/* 1 while this replica is the leader. Thread-safe. */
int kubelease_is_leader(struct kubelease *le);
/* The holder as last read (maybe ""), into out. Thread-safe. */
void kubelease_holder(struct kubelease *le, char *out, size_t outlen);
/* Hands the Lease back when held, then joins the thread; NULL is a no-op. */
void kubelease_stop(struct kubelease *le);
