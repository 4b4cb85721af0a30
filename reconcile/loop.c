/* loop: see loop.h. A pass:
 *   lock (flock beside the database: one pass at a time, across processes)
 *   -> Synapse /health -> bootstrap -> observe (user list pages + one state
 *   read per room) -> plan -> execute -> observe and plan again when
 *   anything was applied, to know what is still pending -> record.
 * /health and the bootstrap's requests (whoami, rate limit, the rooms'
 * aliases) are made until a pass gets through; later passes skip them, so a
 * converged pass reads the user list and each room's state and nothing
 * else. A pass that fails asks /health then (to report an unreachable
 * Synapse as such) and makes the next pass check everything again.
 * Reading Synapse's state lives in observe.c. The thread sleeps on a
 * condition variable between passes: a nudge wakes
 * it (then it waits a few ms so a burst of callbacks makes one pass), the
 * interval wakes it for the full resync, and while Synapse is unreachable or
 * bootstrap fails it retries with a growing delay (1 s .. 30 s). */
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bootstrap.h"
#include "clock.h"
#include "config.h"
#include "executor.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "observe.h"
#include "planner.h"
#include "roomspec.h"
#include "store.h"
#include "synapse.h"

#define COALESCE_MS 5
#define MAX_RETRY_S 30
#define PASS_DEADLINE_MS 120000 /* a pass gives up on what is left after this; the next goes on */
#define REQUEST_TIMEOUT_MS 10000
#define KEEP_PASSES 2000
#define TRIM_ABOVE_FREE ((size_t)4 << 20) /* bytes free in the heap after a pass worth giving back */

/* How a pass ended, as the store's pass history and the metrics name it. */
enum pass_result { PASS_OK, PASS_FAILED, PASS_UNREACHABLE };

static const char *const pass_result_names[] = {
	[PASS_OK] = "ok",
	[PASS_FAILED] = "failed",
	[PASS_UNREACHABLE] = "unreachable",
};

struct outcome {
	enum pass_result result;
	int reachable, rooms_ready, ok;
	int planned;   /* actions planned (the first plan of the pass) */
	int applied;   /* actions applied */
	int failed;    /* actions that failed in the pass */
	int cut_short; /* the deadline or a shutdown left actions for the next pass */
	int db_failed; /* writes of the pass (history, backoff, observed state) failed */
	int ingest_ok; /* 0 while a grant exists and the ingest bot is not ready */
	int remaining; /* differences left after the pass; -1 unknown */
	json_t *plan;  /* a dry run's plan, for its caller to show (owned) */
	char summary[2048];
};

/* What one pass holds while it runs (pass_run releases it). */
struct pass {
	int dry_run;
	int ingest; /* the ingest bot is planned */
	int64_t id, start_ms, start_ns;
	json_t *rooms, *desired, *observed, *plan;
	struct executor_result res;
	char err[1024], ingest_problem[700];
};

struct loop {
	const struct config *cfg;
	struct store *st;
	struct synapse *syn;
	struct bootstrap boot;
	struct ingest ingest;
	pthread_t thread;
	int started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop, nudged;
	atomic_int aborting; /* loop_stop: cut the pass and its requests short */
	atomic_int shutting; /* loop_abort: aborting stays set */
	struct loop_hooks hooks;
	int standby;      /* under mu: may_write said no, so no pass ran */
	int synapse_seen; /* the last pass got through observe: skip /health */
	/* health, under mu */
	struct outcome last;
	int have_pass;
	int64_t last_end_ms; /* when the last pass finished (monotonic) */
	int64_t last_ok_ms, unreachable_since_ms;
	int64_t pass_started; /* clock_mono_ns() at the start of the running pass */
};

static int lock_passes(const struct config *cfg)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s.reconcile.lock", cfg->database_path);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd >= 0 && flock(fd, LOCK_EX) != 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Reads Synapse and plans against it; replaces *observed and *plan. With
 * ingest the space's other children are read too and the ingest bot planned. */
static int observe_and_plan(struct loop *l, json_t *rooms, json_t *desired, int ingest, json_t **observed,
			    json_t **plan, char *err, size_t errlen)
{
	json_t *input = NULL;
	int rc = -1;

	json_decref(*observed);
	json_decref(*plan);
	*observed = *plan = NULL;
	if (observe_synapse(l->syn, &l->boot, rooms, desired, observed, err, errlen) != 0)
		return -1;
	if (ingest && observe_children(l->syn, &l->boot, rooms, *observed, err, errlen) != 0)
		return -1;
	input = json_pack("{s:{s:s, s:s, s:s}, s:O, s:O, s:O}", "spec", "deployment", l->cfg->deployment, "domain",
			  l->cfg->server_domain, "bot", l->boot.bot_id, "rooms", rooms, "desired", desired, "observed",
			  *observed);
	if (input && ingest)
		json_object_set_new(input, "ingest", json_pack("{s:s}", "user", l->ingest.id));
	if (input)
		rc = planner_plan(input, plan, err, errlen);
	json_decref(input);
	return rc;
}

/* The interop ingest bot, while a grant exists: 1 when it has a valid token
 * and is to be planned; 0 when there is no grant or it is not ready (then
 * problem says why). */
static int pass_ingest(struct loop *l, int dry_run, char *problem, size_t problemlen)
{
	char err[512] = "";
	int grants = store_interop_count(l->st), rc;

	problem[0] = '\0';
	if (grants < 0) {
		snprintf(problem, problemlen, "interop bot: cannot read the grants");
		return 0;
	}
	if (grants == 0)
		return 0;
	rc = ingest_ensure(&l->ingest, &l->boot, dry_run, err, sizeof(err));
	if (rc != 0) {
		snprintf(problem, problemlen, "interop bot %s not ready: %s%s%s", l->ingest.id, ingest_strerror(rc),
			 err[0] ? ": " : "", err);
		log_warnx("reconcile: %s", problem);
		return 0;
	}
	return 1;
}

/* After a failure in a pass that skipped /health: check everything again
 * next pass, and 1 when /health now says Synapse is not reachable (the
 * summary says so). */
static int pass_failed_unreachable(struct loop *l, struct outcome *o)
{
	int skipped = l->synapse_seen;

	l->synapse_seen = 0;
	bootstrap_rooms_stale(&l->boot);
	if (!skipped || synapse_health(l->syn) == 0)
		return 0;
	o->reachable = 0;
	snprintf(o->summary, sizeof(o->summary), "Synapse at %s is not reachable", l->cfg->synapse_url_shown);
	return 1;
}

/* The pass failed at a step that asked Synapse: failed, or unreachable when
 * /health now says so. */
static void pass_failed(struct loop *l, struct outcome *o, const char *why)
{
	snprintf(o->summary, sizeof(o->summary), "%s", why);
	o->result = pass_failed_unreachable(l, o) ? PASS_UNREACHABLE : PASS_FAILED;
}

/* Applies the plan, then plans again to know what is left. 0 when the pass
 * goes on to its end, 1 when it ended here (o says how). */
static int pass_execute(struct loop *l, struct pass *p, struct outcome *o)
{
	struct executor_limits limits = {0};
	struct executor_result *res = &p->res;

	limits.deadline_ms =
		p->start_ns / 1000000 + PASS_DEADLINE_MS; /* from the pass's start, on the monotonic clock */
	limits.stop = &l->aborting;
	executor_apply(l->syn, p->ingest ? l->ingest.syn : NULL, l->st, l->boot.bot_id, p->rooms,
		       json_object_get(p->observed, "rooms"), p->plan, p->id, clock_real_ms(), &limits, res);
	o->planned = res->planned;
	o->applied = res->ok;
	o->failed = res->failed;
	if (res->unreachable || res->abandoned) {
		/* Synapse went away, the deadline passed or we are stopping:
		 * what is left waits for the next pass, sooner when Synapse is
		 * gone (the loop's retry schedule). */
		o->reachable = !res->unreachable;
		o->cut_short = !res->unreachable;
		if (res->unreachable) {
			l->synapse_seen = 0; /* the next pass asks /health first */
			bootstrap_rooms_stale(&l->boot);
		}
		o->remaining = res->abandoned + res->failed;
		snprintf(o->summary, sizeof(o->summary), "%s: %d actions applied, %d failed, %d left for the next pass",
			 res->unreachable            ? "Synapse stopped answering mid-pass"
			 : atomic_load(&l->aborting) ? "pass cut short by shutdown"
						     : "pass deadline reached",
			 res->ok, res->failed, res->abandoned);
		o->result = res->unreachable ? PASS_UNREACHABLE : PASS_FAILED;
		return 1;
	}
	/* See what is left: Synapse's answer is the truth, not our hopes. */
	if (json_array_size(p->plan) > 0 &&
	    observe_and_plan(l, p->rooms, p->desired, p->ingest, &p->observed, &p->plan, p->err, sizeof(p->err)) != 0) {
		snprintf(o->summary, sizeof(o->summary), "%s", p->err);
		pass_failed_unreachable(l, o);
		o->result = PASS_FAILED; /* it did apply: not an unreachable pass */
		return 1;
	}
	return 0;
}

/* The steps of a pass, each ending it early on failure; sets o->result and
 * o->summary, and nothing else records anything. */
static void pass_steps(struct loop *l, struct pass *p, struct outcome *o)
{
	if (!l->synapse_seen && synapse_health(l->syn) != 0) {
		snprintf(o->summary, sizeof(o->summary), "Synapse at %s is not reachable", l->cfg->synapse_url_shown);
		o->result = PASS_UNREACHABLE;
		return;
	}
	o->reachable = 1;
	if (bootstrap_run(&l->boot, &p->rooms, p->err, sizeof(p->err)) != 0) {
		pass_failed(l, o, p->err);
		return;
	}
	o->rooms_ready = 1;
	p->ingest = pass_ingest(l, p->dry_run, p->ingest_problem, sizeof(p->ingest_problem));
	o->ingest_ok = !p->ingest_problem[0];
	p->desired = store_desired_users(l->st);
	if (!p->desired ||
	    observe_and_plan(l, p->rooms, p->desired, p->ingest, &p->observed, &p->plan, p->err, sizeof(p->err)) != 0) {
		pass_failed(l, o, p->err[0] ? p->err : "cannot read desired state");
		if (o->result == PASS_UNREACHABLE)
			o->rooms_ready = 0;
		return;
	}
	l->synapse_seen = !p->dry_run;
	if (p->dry_run) {
		o->plan = json_incref(p->plan);
		o->remaining = o->planned = (int)json_array_size(p->plan);
		o->ok = 1;
		snprintf(o->summary, sizeof(o->summary), "dry run: %d actions planned", o->remaining);
		o->result = PASS_OK;
		return;
	}
	if (pass_execute(l, p, o))
		return;
	o->remaining = (int)json_array_size(p->plan);
	o->ok = p->res.failed == 0 && !p->ingest_problem[0];
	observe_record(l->st, p->desired, p->observed, p->plan, clock_real_ms());
	snprintf(o->summary, sizeof(o->summary),
		 "%s: %d users, %d actions applied, %d failed, %d deferred, %d differences left%s%s%s%s",
		 o->remaining == 0 && !p->ingest_problem[0] ? "converged" : "not converged",
		 (int)json_array_size(p->desired), p->res.ok, p->res.failed, p->res.deferred, o->remaining,
		 p->res.first_error[0] ? "; first failure: " : "", p->res.first_error, p->ingest_problem[0] ? "; " : "",
		 p->ingest_problem);
	o->result = o->ok ? PASS_OK : PASS_FAILED;
}

/* The one place a pass's end is recorded: the store's history (not in a dry
 * run), database failures, the metrics and one log line. */
static void pass_record(struct loop *l, struct pass *p, struct outcome *o, int db_failures_before)
{
	char dberr[256] = "";

	if (!p->dry_run)
		store_pass_end(l->st, p->id, clock_real_ms(), pass_result_names[o->result], o->planned, o->applied,
			       o->failed, o->summary);
	metrics_pass(pass_result_names[o->result], l->pass_started);
	if (!p->dry_run)
		store_prune(l->st, KEEP_PASSES);
	if (store_failures(l->st, dberr, sizeof(dberr)) != db_failures_before) {
		/* The pass's record, its backoff or the observed state is lost:
		 * health must say so, whatever Synapse did. */
		o->db_failed = 1;
		o->ok = 0;
		snprintf(o->summary + strlen(o->summary), sizeof(o->summary) - strlen(o->summary),
			 "; database writes failed: %s", dberr);
	}
	metrics_pass_state(o->rooms_ready ? (int)json_object_size(p->rooms) : 0,
			   p->desired ? (int)json_array_size(p->desired) : -1, o->remaining, o->ok && o->rooms_ready);
	/* One line per pass, whatever ended it: a converged pass that did
	 * nothing at debug (one every RECONCILE_INTERVAL), one that changed
	 * Synapse (or a dry run, asked for by a person) at info, a failed one
	 * at warning, one that could not record itself at error. */
	log_event(o->db_failed                   ? LOG_LVL_ERROR
		  : !o->ok                       ? LOG_LVL_WARN
		  : o->planned > 0 || p->dry_run ? LOG_LVL_INFO
						 : LOG_LVL_DEBUG,
		  &(struct log_fields){.action = "reconcile.pass",
				       .outcome = o->ok ? LOG_SUCCESS : LOG_FAILURE,
				       .has_duration = 1,
				       .duration_ns = clock_mono_ns() - p->start_ns},
		  "reconcile: pass %lld %s", (long long)p->id, o->summary);
}

/* The loop's code for a pass's outcome: 0 when Synapse matches. */
static int pass_code(const struct outcome *o)
{
	if (o->db_failed)
		return LOOP_ESTORE;
	if (o->result == PASS_UNREACHABLE)
		return LOOP_EUNREACHABLE;
	if (!o->ok)
		return LOOP_EFAILED;
	return o->remaining == 0 ? 0 : LOOP_EPENDING;
}

static int pass_run(struct loop *l, int dry_run, struct outcome *o)
{
	struct pass p = {.dry_run = dry_run, .start_ms = clock_real_ms(), .start_ns = clock_mono_ns()};
	int db_failures_before = store_failures(l->st, NULL, 0);
	int lockfd = lock_passes(l->cfg);

	memset(o, 0, sizeof(*o));
	o->remaining = -1;
	l->pass_started = clock_mono_ns();
	if (lockfd < 0) {
		snprintf(o->summary, sizeof(o->summary), "cannot take the pass lock beside %s", l->cfg->database_path);
		log_event(LOG_LVL_ERROR,
			  &(struct log_fields){.action = "reconcile.pass",
					       .outcome = LOG_FAILURE,
					       .has_duration = 1,
					       .duration_ns = clock_mono_ns() - p.start_ns},
			  "reconcile: pass not run: %s", o->summary);
		return LOOP_ELOCK;
	}
	if (!dry_run)
		store_pass_begin(l->st, p.start_ms, &p.id);
	pass_steps(l, &p, o);
	pass_record(l, &p, o, db_failures_before);
	close(lockfd);
	json_decref(p.rooms);
	json_decref(p.desired);
	json_decref(p.observed);
	json_decref(p.plan);
	/* A pass over thousands of members leaves megabytes free in this
	 * thread's malloc arena; give the pages back until the next pass
	 * instead of holding the peak between passes. A small pass leaves
	 * little, and then the trim's walk over the heap is not worth it. */
	if (mallinfo2().fordblks > TRIM_ABOVE_FREE)
		malloc_trim(0);
	return pass_code(o);
}

/* read_only (a dry run): the database is never created, migrated or
 * written; without one an empty in-memory database stands in. */
static int loop_init(struct loop *l, const struct config *cfg, int read_only, char *err, size_t errlen)
{
	char dberr[512];
	struct stat sb;
	int rc;

	memset(l, 0, sizeof(*l));
	l->cfg = cfg;
	pthread_mutex_init(&l->mu, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&l->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (!read_only)
		rc = store_open_serving(cfg->database_path, &l->st, dberr, sizeof(dberr)) < 0 ? LOOP_ESTORE : 0;
	else if (stat(cfg->database_path, &sb) == 0)
		rc = store_open_readonly(cfg->database_path, &l->st, dberr, sizeof(dberr));
	else
		rc = store_open(":memory:", &l->st, dberr, sizeof(dberr));
	if (rc != 0) {
		snprintf(err, errlen, "%s", dberr);
		return rc < 0 ? rc : LOOP_ESTORE;
	}
	if (synapse_new(cfg->synapse_url, REQUEST_TIMEOUT_MS, &l->syn) != 0) {
		snprintf(err, errlen, "reconcile: cannot create the Synapse client");
		return LOOP_ENOMEM;
	}
	synapse_set_abort(l->syn, &l->aborting);
	bootstrap_init(&l->boot, cfg, l->syn, l->st);
	if (ingest_init(&l->ingest, cfg) != 0) {
		snprintf(err, errlen, "reconcile: cannot create the ingest bot's Synapse client");
		return LOOP_ENOMEM;
	}
	synapse_set_abort(l->ingest.syn, &l->aborting);
	return 0;
}

static void loop_release(struct loop *l)
{
	bootstrap_release(&l->boot);
	ingest_release(&l->ingest);
	synapse_free(l->syn);
	store_close(l->st);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
}

static void *loop_main(void *arg)
{
	struct loop *l = arg;
	int retry_s = 1;

	for (;;) {
		struct outcome o;
		int64_t wait_ms;
		int nudged;
		struct timespec until;

		pthread_mutex_lock(&l->mu);
		if (l->stop) {
			pthread_mutex_unlock(&l->mu);
			break;
		}
		l->nudged = 0;
		pthread_mutex_unlock(&l->mu);

		if (l->hooks.may_write && !l->hooks.may_write(l->hooks.ctx)) {
			/* A follower: Synapse is the leader's. A nudge (the
			 * Lease won) or the interval looks again. */
			/* What another leader did meanwhile is read afresh. */
			l->synapse_seen = 0;
			bootstrap_rooms_stale(&l->boot);
			pthread_mutex_lock(&l->mu);
			l->standby = 1;
			wait_ms = clock_mono_ms() + 1000;
			until.tv_sec = wait_ms / 1000;
			until.tv_nsec = (wait_ms % 1000) * 1000000;
			while (!l->stop && !l->nudged && clock_mono_ms() < wait_ms)
				pthread_cond_timedwait(&l->cv, &l->mu, &until);
			pthread_mutex_unlock(&l->mu);
			continue;
		}
		/* A pass cut short by loop_interrupt does not cut this one. */
		if (!atomic_load(&l->shutting))
			atomic_store(&l->aborting, 0);
		pthread_mutex_lock(&l->mu);
		l->standby = 0;
		pthread_mutex_unlock(&l->mu);

		pass_run(l, 0, &o);
		if (l->hooks.pass_done)
			l->hooks.pass_done(l->hooks.ctx);

		pthread_mutex_lock(&l->mu);
		l->last = o;
		l->have_pass = 1;
		l->last_end_ms = clock_mono_ms();
		if (o.ok && o.rooms_ready)
			l->last_ok_ms = clock_mono_ms();
		if (o.reachable)
			l->unreachable_since_ms = 0;
		else if (!l->unreachable_since_ms)
			l->unreachable_since_ms = clock_mono_ms();
		if (o.reachable && o.rooms_ready && l->boot.token_ok) {
			retry_s = 1;
			/* a pass that hit its deadline goes on at once */
			wait_ms = o.cut_short ? 0 : (int64_t)l->cfg->reconcile_interval * 1000;
		} else {
			wait_ms = (int64_t)retry_s * 1000;
			retry_s = retry_s * 2 > MAX_RETRY_S ? MAX_RETRY_S : retry_s * 2;
			/* the pass's own line said why */
			log_info("reconcile: retrying in %lld s", (long long)wait_ms / 1000);
		}
		wait_ms += clock_mono_ms();
		until.tv_sec = wait_ms / 1000;
		until.tv_nsec = (wait_ms % 1000) * 1000000;
		while (!l->stop && !l->nudged && clock_mono_ms() < wait_ms)
			pthread_cond_timedwait(&l->cv, &l->mu, &until);
		nudged = l->nudged;
		pthread_mutex_unlock(&l->mu);
		if (nudged) {
			/* Let a burst of callbacks land before the pass reads them. */
			struct timespec ts = {0, COALESCE_MS * 1000000L};

			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

int loop_start(const struct config *cfg, const struct loop_hooks *hooks, struct loop **out, char *err, size_t errlen)
{
	struct loop *l = calloc(1, sizeof(*l));
	int rc = LOOP_ENOMEM;

	*out = NULL;
	if (!l) {
		snprintf(err, errlen, "reconcile: out of memory");
		return LOOP_ENOMEM;
	}
	if ((rc = loop_init(l, cfg, 0, err, errlen)) != 0)
		goto fail;
	if (hooks)
		l->hooks = *hooks;
	if (pthread_create(&l->thread, NULL, loop_main, l) != 0) {
		snprintf(err, errlen, "reconcile: cannot start the thread: %s", strerror(errno));
		rc = LOOP_ETHREAD;
		goto fail;
	}
	l->started = 1;
	*out = l;
	return 0;
fail:
	loop_release(l);
	free(l);
	return rc;
}

void loop_nudge(struct loop *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->mu);
	l->nudged = 1;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

/* The public healthcheck's extra is a short state text: no user IDs and no
 * Synapse messages (those stay in `status` and the logs). */
int loop_health(struct loop *l, char *extra, size_t extralen)
{
	int healthy = 0;
	int64_t now = clock_mono_ms(), grace = 3LL * l->cfg->reconcile_interval * 1000;

	pthread_mutex_lock(&l->mu);
	if (l->standby) {
		healthy = 1;
		snprintf(extra, extralen, "standby: another replica holds the lease");
	} else if (!l->have_pass)
		snprintf(extra, extralen, "starting: no reconcile pass yet");
	else if (now - l->last_end_ms > grace + MAX_RETRY_S * 1000LL)
		snprintf(extra, extralen, "no reconcile pass finished for %lld s",
			 (long long)(now - l->last_end_ms) / 1000);
	else if (!l->last.reachable)
		snprintf(extra, extralen, "Synapse not reachable%s",
			 l->unreachable_since_ms &&
					 now - l->unreachable_since_ms > (int64_t)l->cfg->synapse_wait_timeout * 1000
				 ? " (past SYNAPSE_WAIT_TIMEOUT)"
				 : "");
	else if (!l->last.rooms_ready)
		snprintf(extra, extralen, "rooms not ready: bootstrap failing");
	else if (l->last.db_failed)
		snprintf(extra, extralen, "database writes failing (disk full or read-only?)");
	else if (!l->last.ok && !(l->last_ok_ms && now - l->last_ok_ms < grace))
		snprintf(extra, extralen, "reconcile failing: %d actions failed in the last pass%s", l->last.failed,
			 l->last.ingest_ok ? "" : ", interop bot not ready");
	else {
		healthy = 1;
		if (l->last.remaining > 0)
			snprintf(extra, extralen, "Synapse reachable, rooms ready, %d differences pending",
				 l->last.remaining);
		else
			snprintf(extra, extralen, "Synapse reachable, rooms ready, converged");
	}
	pthread_mutex_unlock(&l->mu);
	return healthy;
}

int loop_ingest_token(struct loop *l, char *out, size_t outlen)
{
	return l ? ingest_token(&l->ingest, out, outlen) : 0;
}

void loop_abort(struct loop *l)
{
	if (l) {
		atomic_store(&l->shutting, 1);
		atomic_store(&l->aborting, 1);
	}
}

void loop_interrupt(struct loop *l)
{
	if (l)
		atomic_store(&l->aborting, 1);
}

void loop_stop(struct loop *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->mu);
	l->stop = 1;
	atomic_store(&l->shutting, 1);
	atomic_store(&l->aborting, 1);
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
	if (l->started)
		pthread_join(l->thread, NULL);
	loop_release(l);
	free(l);
}

int loop_run_once(const struct config *cfg, int dry_run, char *summary, size_t summarylen, char **plan)
{
	struct loop l;
	struct outcome o = {0};
	int64_t deadline = clock_mono_ms() + (int64_t)cfg->synapse_wait_timeout * 1000;
	int rc;

	if (plan)
		*plan = NULL;
	if ((rc = loop_init(&l, cfg, dry_run, summary, summarylen)) != 0) {
		loop_release(&l);
		return rc;
	}
	l.boot.dry_run = dry_run;
	for (;;) {
		rc = pass_run(&l, dry_run, &o);
		if (o.reachable || clock_mono_ms() >= deadline)
			break;
		json_decref(o.plan);
		sleep(1);
	}
	snprintf(summary, summarylen, "%s", o.summary);
	if (plan && o.plan)
		*plan = json_dumps(o.plan, JSON_INDENT(2));
	json_decref(o.plan);
	loop_release(&l);
	return rc;
}

static const struct errtext loop_errors[] = {
	{LOOP_ESTORE, "the database cannot be opened or written"}, {LOOP_ENOMEM, "out of memory in the reconciler"},
	{LOOP_ETHREAD, "the reconcile thread cannot be started"},  {LOOP_ELOCK, "the pass lock cannot be taken"},
	{LOOP_EUNREACHABLE, "Synapse is not reachable"},           {LOOP_EFAILED, "the pass failed"},
	{LOOP_EPENDING, "differences are left for the next pass"},
};

const char *loop_strerror(int code)
{
	return ERRTEXT_LOOKUP(loop_errors, code);
}
