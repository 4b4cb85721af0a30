/* kubelease: see kubelease.h. One thread: every retry period it reads the
 * Lease, renews it when ours, takes it when it has stayed unchanged for a
 * lease duration (or is free), and tells the caller when leadership
 * changes. */
#include "kubelease.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "clock.h"
#include "config.h"
#include "kube.h"
#include "log.h"

#define REQUEST_TIMEOUT_MS 5000

/* s, or d when s is NULL. */
static const char *or_else(const char *s, const char *d)
{
	return s ? s : d;
}

struct kubelease {
	const struct config *cfg;
	struct kube *k;
	kubelease_fn on_change;
	void *ctx;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	atomic_int stopping;
	atomic_int leader;
	int64_t renewed_ms;   /* monotonic: our last successful write of the Lease */
	char seen_rv[64];     /* the Lease's resourceVersion as last read */
	int64_t seen_ms;      /* monotonic: when seen_rv was first read */
	char holder[256];     /* under mu */
	char path[1400];      /* the Lease's path */
	char list_path[1024]; /* the namespace's leases */
};

/* RFC 3339 with microseconds (the MicroTime of a Lease). */
static void micro_time(char *out, size_t outlen)
{
	int64_t ns = clock_real_ns();
	time_t s = (time_t)(ns / 1000000000);
	struct tm tm;

	gmtime_r(&s, &tm);
	snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(ns % 1000000000 / 1000));
}

static void set_leader(struct kubelease *le, int leader, const char *why)
{
	if (atomic_exchange(&le->leader, leader) == leader)
		return;
	if (leader)
		log_info("lease: %s is now the leader (Lease %s/%s)", le->cfg->pod_name, le->cfg->kube_namespace,
			 le->cfg->lease_name);
	else
		log_warnx("lease: %s is no longer the leader: %s", le->cfg->pod_name, why);
	if (le->on_change)
		le->on_change(le->ctx, leader);
}

/* Writes the Lease as ours: create (lease NULL) or update from what was
 * read. Returns 0 when the write was accepted. */
static int write_lease(struct kubelease *le, json_t *lease, int take)
{
	char now[64];
	json_t *body = NULL, *spec, *reply = NULL;
	long status = 0;
	int rc = -1;

	micro_time(now, sizeof(now));
	if (lease) {
		body = json_deep_copy(lease);
		spec = json_object_get(body, "spec");
		if (!json_is_object(spec)) {
			spec = json_object();
			json_object_set_new(body, "spec", spec);
		}
	} else {
		body = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{}}", "apiVersion", "coordination.k8s.io/v1", "kind",
				 "Lease", "metadata", "name", le->cfg->lease_name, "namespace", le->cfg->kube_namespace,
				 "spec");
		spec = json_object_get(body, "spec");
	}
	if (!body || !spec)
		goto out;
	json_object_set_new(spec, "holderIdentity", json_string(le->cfg->pod_name));
	json_object_set_new(spec, "leaseDurationSeconds", json_integer(le->cfg->lease_duration));
	json_object_set_new(spec, "renewTime", json_string(now));
	if (take || !lease) {
		json_object_set_new(spec, "acquireTime", json_string(now));
		json_object_set_new(
			spec, "leaseTransitions",
			json_integer(lease ? json_integer_value(json_object_get(spec, "leaseTransitions")) + 1 : 0));
	}
	if (kube_request(le->k, lease ? "PUT" : "POST", lease ? le->path : le->list_path, NULL, body, &status,
			 &reply) == 0 &&
	    (status == 200 || status == 201)) {
		le->renewed_ms = clock_mono_ms();
		rc = 0;
	} else if (status == 409) {
		log_debug("lease: another replica wrote the Lease first");
	} else {
		log_warnx("lease: writing the Lease failed (HTTP %ld)", status);
	}
out:
	json_decref(body);
	json_decref(reply);
	return rc;
}

/* One round. */
static void lease_round(struct kubelease *le)
{
	json_t *lease = NULL;
	long status = 0;
	int rc = kube_request(le->k, "GET", le->path, NULL, NULL, &status, &lease);
	int64_t now = clock_mono_ms(), duration_ms = (int64_t)le->cfg->lease_duration * 1000;
	const char *holder = "", *rv = "";

	if (rc == 0 && status == 404) {
		if (write_lease(le, NULL, 1) == 0)
			set_leader(le, 1, "");
		goto out;
	}
	if (rc != 0 || status != 200 || !json_is_object(lease)) {
		if (atomic_load(&le->leader) && now - le->renewed_ms > duration_ms * 2 / 3)
			set_leader(le, 0, rc ? kube_strerror(rc) : "the Lease cannot be read");
		goto out;
	}
	holder = json_string_value(json_object_get(json_object_get(lease, "spec"), "holderIdentity"));
	rv = json_string_value(json_object_get(json_object_get(lease, "metadata"), "resourceVersion"));
	holder = holder ? holder : "";
	rv = rv ? rv : "";
	pthread_mutex_lock(&le->mu);
	snprintf(le->holder, sizeof(le->holder), "%s", holder);
	pthread_mutex_unlock(&le->mu);
	if (strcmp(rv, le->seen_rv) != 0) {
		snprintf(le->seen_rv, sizeof(le->seen_rv), "%s", rv);
		le->seen_ms = now;
	}
	if (strcmp(holder, le->cfg->pod_name) == 0) {
		if (write_lease(le, lease, 0) == 0)
			set_leader(le, 1, "");
		else if (now - le->renewed_ms > duration_ms * 2 / 3)
			set_leader(le, 0, "the Lease could not be renewed in time");
		goto out;
	}
	/* Someone else's (or nobody's): ours only once it is free, or has
	 * not moved for a whole lease duration by our own clock. */
	set_leader(le, 0, holder[0] ? "another replica holds the Lease" : "the Lease was handed back");
	if ((!holder[0] || now - le->seen_ms >= duration_ms) && write_lease(le, lease, 1) == 0) {
		pthread_mutex_lock(&le->mu);
		snprintf(le->holder, sizeof(le->holder), "%s", le->cfg->pod_name);
		pthread_mutex_unlock(&le->mu);
		set_leader(le, 1, "");
	}
out:
	json_decref(lease);
}

/* The retry period: 2 s, or less for a short lease (a third of it). */
static int64_t retry_ms(const struct kubelease *le)
{
	int64_t third = (int64_t)le->cfg->lease_duration * 1000 / 3;

	return third < 2000 ? third : 2000;
}

static void *lease_main(void *arg)
{
	struct kubelease *le = arg;

	for (;;) {
		struct timespec until;
		int64_t wake;

		lease_round(le);
		pthread_mutex_lock(&le->mu);
		wake = clock_mono_ms() + retry_ms(le);
		/* A follower looks again the moment the holder's Lease runs out
		 * by its clock, not up to a retry period later. */
		if (!atomic_load(&le->leader) && le->holder[0] && le->seen_ms > 0) {
			int64_t expiry = le->seen_ms + (int64_t)le->cfg->lease_duration * 1000;

			if (expiry < wake && expiry > clock_mono_ms())
				wake = expiry;
		}
		until.tv_sec = wake / 1000;
		until.tv_nsec = (wake % 1000) * 1000000;
		while (!le->stop && clock_mono_ms() < wake)
			pthread_cond_timedwait(&le->cv, &le->mu, &until);
		if (le->stop) {
			pthread_mutex_unlock(&le->mu);
			break;
		}
		pthread_mutex_unlock(&le->mu);
	}
	return NULL;
}

int kubelease_start(const struct config *cfg, kubelease_fn on_change, void *ctx, struct kubelease **out, char *err,
		    size_t errlen)
{
	struct kubelease *le = calloc(1, sizeof(*le));
	struct kube_target t = {cfg->kube_url, cfg->kube_token_file, cfg->kube_ca_file};
	pthread_condattr_t ca;
	int rc;

	*out = NULL;
	if (!le) {
		rc = -ENOMEM;
		goto fail;
	}
	if ((rc = kube_new(&t, REQUEST_TIMEOUT_MS, &le->k)) != 0)
		goto fail;
	le->cfg = cfg;
	le->on_change = on_change;
	le->ctx = ctx;
	kube_set_stop(le->k, &le->stopping);
	snprintf(le->list_path, sizeof(le->list_path), "/apis/coordination.k8s.io/v1/namespaces/%s/leases",
		 cfg->kube_namespace);
	snprintf(le->path, sizeof(le->path), "%s/%s", le->list_path, cfg->lease_name);
	pthread_mutex_init(&le->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&le->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&le->thread, NULL, lease_main, le) != 0) {
		rc = -errno;
		pthread_cond_destroy(&le->cv);
		pthread_mutex_destroy(&le->mu);
		goto fail;
	}
	*out = le;
	return 0;
fail:
	snprintf(err, errlen, "lease: cannot start: %s", kube_strerror(rc));
	if (le)
		kube_free(le->k);
	free(le);
	return rc;
}

int kubelease_is_leader(struct kubelease *le)
{
	return le && atomic_load(&le->leader);
}

void kubelease_holder(struct kubelease *le, char *out, size_t outlen)
{
	pthread_mutex_lock(&le->mu);
	snprintf(out, outlen, "%s", le->holder);
	pthread_mutex_unlock(&le->mu);
}

/* A clean stop hands the Lease back: the next replica need not wait. */
static void release(struct kubelease *le)
{
	json_t *lease = NULL, *reply = NULL, *spec;
	long status = 0;

	if (kube_request(le->k, "GET", le->path, NULL, NULL, &status, &lease) != 0 || status != 200)
		goto out;
	spec = json_object_get(lease, "spec");
	if (!json_is_object(spec) ||
	    strcmp(or_else(json_string_value(json_object_get(spec, "holderIdentity")), ""), le->cfg->pod_name) != 0)
		goto out;
	json_object_set_new(spec, "holderIdentity", json_string(""));
	if (kube_request(le->k, "PUT", le->path, NULL, lease, &status, &reply) == 0 && status == 200)
		log_info("lease: %s handed the Lease back", le->cfg->pod_name);
out:
	json_decref(lease);
	json_decref(reply);
}

void kubelease_stop(struct kubelease *le)
{
	if (!le)
		return;
	pthread_mutex_lock(&le->mu);
	le->stop = 1;
	pthread_cond_signal(&le->cv);
	pthread_mutex_unlock(&le->mu);
	pthread_join(le->thread, NULL);
	if (atomic_load(&le->leader)) {
		set_leader(le, 0, "stopping");
		release(le);
	}
	kube_free(le->k);
	pthread_cond_destroy(&le->cv);
	pthread_mutex_destroy(&le->mu);
	free(le);
}
