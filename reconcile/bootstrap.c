/* bootstrap: see bootstrap.h.
 *
 * Token recovery: when the bot exists but no valid token is at hand, a
 * one-off recovery admin is registered with the shared secret and obtains a
 * token for the bot through the admin login API. Synapse makes that token
 * owned by the recovery admin (puppets_user_id = the bot), and deactivating
 * an account deletes every token it owns, so the recovery admin is retired
 * by demoting and locking it instead (its own session is logged out): it
 * can neither log in nor act, and the bot's token stays valid. */
#include "bootstrap.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "matrixid.h"
#include "roomspec.h"
#include "secret.h"
#include "store.h"
#include "synapse.h"

static const struct errtext bootstrap_errors[] = {
	{BOOTSTRAP_ELOCK, "the bot token's lock cannot be taken"},
	{BOOTSTRAP_ETOKENFILE, "the bot token file cannot be read"},
	{BOOTSTRAP_ENOANSWER, "Synapse did not answer the token check"},
	{BOOTSTRAP_EREADONLY, "no valid bot token, and this run may not register one"},
	{BOOTSTRAP_EREGISTER, "the bot cannot be registered nor its token recovered"},
	{BOOTSTRAP_EBACKOFF, "no valid bot token; the next recovery is not due yet"},
	{BOOTSTRAP_ERATELIMIT, "the bot's rate limit cannot be removed"},
	{BOOTSTRAP_ESTORE, "the rooms cannot be read from the database"},
	{BOOTSTRAP_EROOM, "a managed room cannot be resolved or created"},
};

const char *bootstrap_strerror(int code)
{
	return ERRTEXT_LOOKUP(bootstrap_errors, code);
}

void bootstrap_init(struct bootstrap *b, const struct config *cfg, struct synapse *syn, struct store *st)
{
	memset(b, 0, sizeof(*b));
	b->cfg = cfg;
	b->syn = syn;
	b->st = st;
	snprintf(b->bot_id, sizeof(b->bot_id), "@%s:%s", cfg->bot_username, cfg->server_domain);
}

void bootstrap_token_rejected(struct bootstrap *b)
{
	b->token_ok = 0;
}

void bootstrap_rooms_stale(struct bootstrap *b)
{
	b->rooms_ok = 0;
}

void bootstrap_release(struct bootstrap *b)
{
	if (b->unsaved_token) {
		explicit_bzero(b->unsaved_token, strlen(b->unsaved_token));
		free(b->unsaved_token);
		b->unsaved_token = NULL;
	}
}

int bootstrap_whoami(struct synapse *syn, const char *user_id)
{
	struct synapse_resp r = {0};
	int rc = BOOTSTRAP_ENOANSWER;

	if (synapse_request(syn, "GET", "/_matrix/client/v3/account/whoami", NULL, &r) != 0)
		goto out;
	if (r.status == 200) {
		const char *uid = json_string_value(json_object_get(r.body, "user_id"));

		rc = uid && strcmp(uid, user_id) == 0;
		if (!rc)
			log_warnx("bootstrap: the stored token belongs to %s, not %s", uid ? uid : "?", user_id);
	} else if (r.status == 401 || r.status == 403) {
		rc = 0;
	}
out:
	synapse_resp_free(&r);
	return rc;
}

static int token_check(struct bootstrap *b)
{
	return bootstrap_whoami(b->syn, b->bot_id);
}

static int simple_call(struct synapse *syn, const char *method, const char *fmt, const char *arg, json_t *body,
		       long *status)
{
	char *path = synapse_path(fmt, arg);
	struct synapse_resp r = {0};
	int rc = path ? synapse_request(syn, method, path, body, &r) : -1;

	*status = r.status;
	free(path);
	synapse_resp_free(&r);
	return rc;
}

/* The bot exists but we have no valid token for it. See the file comment. */
static int token_recover(struct bootstrap *b, char **token, char *err, size_t errlen)
{
	char local[80] = MATRIXID_RECOVERY_PREFIX, pw[65], errcode[64] = "", recovery_id[400];
	char *rtoken = NULL, *path = NULL;
	struct synapse_resp r = {0};
	json_t *body = NULL;
	long status;
	int rc = BOOTSTRAP_EREGISTER;

	if (secret_random_hex(local + strlen(local), 6) != 0 || secret_random_hex(pw, 32) != 0) {
		snprintf(err, errlen, "bootstrap: %s", secret_strerror(SECRET_ERANDOM));
		goto out;
	}
	snprintf(recovery_id, sizeof(recovery_id), "@%s:%s", local, b->cfg->server_domain);
	if (synapse_register(b->syn, b->cfg->registration_secret, local, pw, 1, &rtoken, errcode, sizeof(errcode)) !=
	    0) {
		snprintf(err, errlen, "bootstrap: cannot register a recovery admin: %s",
			 errcode[0] ? errcode : "no answer");
		goto out;
	}
	synapse_set_token(b->syn, rtoken);
	path = synapse_path("/_synapse/admin/v1/users/%s/login", b->bot_id);
	body = json_object();
	if (!path || synapse_request(b->syn, "POST", path, body, &r) != 0 || r.status != 200 ||
	    !json_is_string(json_object_get(r.body, "access_token"))) {
		snprintf(err, errlen, "bootstrap: recovery admin could not log in as the bot: HTTP %ld %s", r.status,
			 r.errcode);
		/* No bot token to protect: the recovery admin removes itself
		 * rather than stay a live server admin. */
		json_decref(body);
		body = json_pack("{s:b}", "erase", 1);
		simple_call(b->syn, "POST", "/_synapse/admin/v1/deactivate/%s", recovery_id, body, &status);
		synapse_set_token(b->syn, NULL);
		goto out;
	}
	*token = strdup(json_string_value(json_object_get(r.body, "access_token")));
	/* Retire the recovery admin: its own session first, then, as the bot,
	 * demote and lock it. */
	simple_call(b->syn, "POST", "/_matrix/client/v3/logout", NULL, NULL, &status);
	synapse_set_token(b->syn, *token);
	json_decref(body);
	body = json_pack("{s:b, s:b}", "admin", 0, "locked", 1);
	if (simple_call(b->syn, "PUT", "/_synapse/admin/v2/users/%s", recovery_id, body, &status) != 0 || status != 200)
		log_warnx("bootstrap: could not retire recovery admin %s (HTTP %ld)", recovery_id, status);
	log_info("bootstrap: recovered a token for %s through recovery admin %s (now demoted and locked)", b->bot_id,
		 recovery_id);
	rc = 0;
out:
	if (rtoken)
		explicit_bzero(rtoken, strlen(rtoken));
	explicit_bzero(pw, sizeof(pw));
	free(rtoken);
	free(path);
	json_decref(body);
	synapse_resp_free(&r);
	return rc;
}

#define RECOVERY_FIRST_WAIT_MS 30000LL
#define RECOVERY_MAX_WAIT_MS (15LL * 60 * 1000)

/* Recovery admins a crash left with their power (registered, not yet
 * demoted and locked) are retired now: demoted and locked, as a finished
 * recovery leaves them. Not deactivated: a token the bot uses may be
 * theirs. Runs under the token lock, so no recovery is in flight. */
static void retire_leftovers(struct bootstrap *b)
{
	char path[256];
	struct synapse_resp r = {0};
	json_t *u, *body = json_pack("{s:b, s:b}", "admin", 0, "locked", 1);
	size_t i;

	snprintf(path, sizeof(path), "/_synapse/admin/v2/users?from=0&limit=500&guests=false&name=%s",
		 MATRIXID_RECOVERY_PREFIX);
	if (body && synapse_request(b->syn, "GET", path, NULL, &r) == 0 && r.status == 200) {
		json_array_foreach(json_object_get(r.body, "users"), i, u) {
			const char *name = json_string_value(json_object_get(u, "name"));
			long status = 0;

			if (!name ||
			    strncmp(name + 1, MATRIXID_RECOVERY_PREFIX, strlen(MATRIXID_RECOVERY_PREFIX)) != 0 ||
			    !json_is_true(json_object_get(u, "admin")) ||
			    json_is_true(json_object_get(u, "deactivated")))
				continue;
			if (simple_call(b->syn, "PUT", "/_synapse/admin/v2/users/%s", name, body, &status) == 0 &&
			    status == 200)
				log_warnx("bootstrap: retired recovery admin %s left over from an interrupted recovery",
					  name);
			else
				log_warnx("bootstrap: cannot retire leftover recovery admin %s (HTTP %ld)", name,
					  status);
		}
		b->leftovers_checked = 1;
	}
	synapse_resp_free(&r);
	json_decref(body);
}

static int ensure_token(struct bootstrap *b, char *err, size_t errlen)
{
	char lockpath[4096], token[1024], pw[65], errcode[64] = "";
	char *newtoken = NULL;
	int lockfd, rc = BOOTSTRAP_EREGISTER, valid;

	snprintf(lockpath, sizeof(lockpath), "%s.lock", b->cfg->token_file);
	lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lockfd < 0 || flock(lockfd, LOCK_EX) != 0) {
		snprintf(err, errlen, "SYNAPSE_TOKEN_FILE: cannot lock %s: %s", lockpath, strerror(errno));
		rc = BOOTSTRAP_ELOCK;
		goto out;
	}
	if (secret_file_read(b->cfg->token_file, "SYNAPSE_TOKEN_FILE", token, sizeof(token), err, errlen) != 0) {
		rc = BOOTSTRAP_ETOKENFILE;
		goto out;
	}
	if (token[0]) {
		synapse_set_token(b->syn, token);
		valid = token_check(b);
		if (valid < 0) {
			snprintf(err, errlen, "bootstrap: Synapse did not answer the token check");
			rc = BOOTSTRAP_ENOANSWER;
			goto out;
		}
		if (valid) {
			/* Once at start (a crash may have left some), and after any
			 * recovery: its retirement may have failed (a locked bot's
			 * token cannot demote anyone). Locking a puppet token's
			 * owner leaves the token working: Synapse checks the bot. */
			if ((!b->leftovers_checked || b->recovery_attempts > 0) && !b->dry_run)
				retire_leftovers(b);
			b->recovery_attempts = 0;
			rc = 0;
			goto out;
		}
		log_warnx("bootstrap: the token in %s is not valid for %s; getting a new one", b->cfg->token_file,
			  b->bot_id);
	}
	synapse_set_token(b->syn, NULL);
	if (b->dry_run) {
		snprintf(
			err, errlen,
			"no valid bot token in %s, and a read-only run (dry run, adopt) registers nothing: start the service first",
			b->cfg->token_file);
		rc = BOOTSTRAP_EREADONLY;
		goto out;
	}
	if (secret_random_hex(pw, 32) != 0) {
		snprintf(err, errlen, "bootstrap: %s", secret_strerror(SECRET_ERANDOM));
		goto out;
	}
	if (synapse_register(b->syn, b->cfg->registration_secret, b->cfg->bot_username, pw, 1, &newtoken, errcode,
			     sizeof(errcode)) == 0) {
		log_info("bootstrap: registered %s as a server admin", b->bot_id);
	} else if (strcmp(errcode, "M_USER_IN_USE") == 0) {
		/* Each recovery registers a server admin: a bot whose tokens keep
		 * failing (locked, deactivated) must not make one per retry. */
		int64_t now = clock_mono_ms(), wait;

		if (b->recovery_attempts > 0 && now < b->recovery_next_ms) {
			snprintf(err, errlen,
				 "bootstrap: no valid token for %s; the next token recovery in %lld s, after %d "
				 "(is the bot locked or deactivated?)",
				 b->bot_id, (long long)(b->recovery_next_ms - now + 999) / 1000, b->recovery_attempts);
			rc = BOOTSTRAP_EBACKOFF;
			goto out;
		}
		b->recovery_attempts++;
		wait = RECOVERY_FIRST_WAIT_MS << (b->recovery_attempts > 6 ? 5 : b->recovery_attempts - 1);
		b->recovery_next_ms = now + (wait > RECOVERY_MAX_WAIT_MS ? RECOVERY_MAX_WAIT_MS : wait);
		if ((rc = token_recover(b, &newtoken, err, errlen)) != 0)
			goto out;
	} else {
		snprintf(err, errlen, "bootstrap: cannot register %s: %s", b->bot_id,
			 errcode[0] ? errcode : "Synapse did not answer");
		goto out;
	}
	synapse_set_token(b->syn, newtoken);
	if (secret_file_write(b->cfg->token_file, "SYNAPSE_TOKEN_FILE", newtoken, err, errlen) != 0) {
		/* Keep using it: registering or recovering again every pass
		 * would pile up accounts. Saving is retried each pass. */
		log_error("bootstrap: %s; keeping the new token in memory only", err);
		free(b->unsaved_token);
		b->unsaved_token = strdup(newtoken);
	}
	rc = 0;
out:
	explicit_bzero(token, sizeof(token));
	explicit_bzero(pw, sizeof(pw));
	if (newtoken) {
		explicit_bzero(newtoken, strlen(newtoken));
		free(newtoken);
	}
	if (lockfd >= 0)
		close(lockfd); /* releases the flock */
	return rc;
}

int bootstrap_ratelimit_off(struct bootstrap *b, const char *user_id, char *err, size_t errlen)
{
	char *path = synapse_path("/_synapse/admin/v1/users/%s/override_ratelimit", user_id);
	struct synapse_resp r = {0};
	json_t *body = NULL;
	int rc = BOOTSTRAP_ERATELIMIT;

	if (!path || synapse_request(b->syn, "GET", path, NULL, &r) != 0 || r.status != 200)
		goto fail;
	if (json_is_integer(json_object_get(r.body, "messages_per_second")) &&
	    json_integer_value(json_object_get(r.body, "messages_per_second")) == 0 &&
	    json_integer_value(json_object_get(r.body, "burst_count")) == 0) {
		rc = 0;
		goto out;
	}
	synapse_resp_free(&r);
	body = json_pack("{s:i, s:i}", "messages_per_second", 0, "burst_count", 0);
	if (synapse_request(b->syn, "POST", path, body, &r) != 0 || r.status != 200)
		goto fail;
	log_info("bootstrap: rate limiting removed for %s", user_id);
	rc = 0;
	goto out;
fail:
	snprintf(err, errlen, "bootstrap: cannot set override_ratelimit for %s: HTTP %ld %s", user_id, r.status,
		 r.errcode);
out:
	free(path);
	json_decref(body);
	synapse_resp_free(&r);
	return rc;
}

/* room id for alias into out: 1 found, 0 unknown alias, -1 error. */
static int resolve_alias(struct bootstrap *b, const char *alias, char *out, size_t outlen)
{
	char *path = synapse_path("/_matrix/client/v3/directory/room/%s", alias);
	struct synapse_resp r = {0};
	int rc = -1;

	if (path && synapse_request(b->syn, "GET", path, NULL, &r) == 0) {
		if (r.status == 200 && json_is_string(json_object_get(r.body, "room_id"))) {
			snprintf(out, outlen, "%s", json_string_value(json_object_get(r.body, "room_id")));
			rc = 1;
		} else if (r.status == 404) {
			rc = 0;
		}
	}
	free(path);
	synapse_resp_free(&r);
	return rc;
}

static int ensure_room(struct bootstrap *b, int room, json_t *rooms, char *err, size_t errlen)
{
	const struct config *cfg = b->cfg;
	char alias[512], id[512];
	struct synapse_resp r = {0};
	json_t *body = NULL;
	int found, rc = BOOTSTRAP_EROOM;

	roomspec_alias(cfg->deployment, cfg->server_domain, room, alias, sizeof(alias));
	found = resolve_alias(b, alias, id, sizeof(id));
	if (found == 0 && b->dry_run) {
		log_info("dry run: %s is missing and would be created", alias);
		rc = 0;
		goto out;
	}
	if (found == 0) {
		body = roomspec_create_body(room, cfg->deployment, cfg->server_domain, b->bot_id,
					    json_string_value(json_object_get(rooms, "space")));
		if (synapse_request(b->syn, "POST", "/_matrix/client/v3/createRoom", body, &r) != 0) {
			found = -1;
		} else if (r.status == 200 && json_is_string(json_object_get(r.body, "room_id"))) {
			snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(r.body, "room_id")));
			log_info("bootstrap: created %s as %s", alias, id);
			found = 1;
		} else if (r.status == 400 && strcmp(r.errcode, "M_ROOM_IN_USE") == 0) {
			log_info("bootstrap: %s was created by another process meanwhile", alias);
			found = resolve_alias(b, alias, id, sizeof(id));
		} else {
			snprintf(err, errlen, "bootstrap: cannot create %s: HTTP %ld %s %s", alias, r.status, r.errcode,
				 r.error);
			goto out;
		}
	}
	if (found != 1) {
		snprintf(err, errlen, "bootstrap: cannot resolve %s", alias);
		goto out;
	}
	{
		json_t *s = json_string(id);

		if (!b->dry_run && !json_equal(json_object_get(rooms, roomspec_rooms[room].key), s))
			store_set_room(b->st, roomspec_rooms[room].key, alias, id);
		json_object_set_new(rooms, roomspec_rooms[room].key, s);
	}
	rc = 0;
out:
	json_decref(body);
	synapse_resp_free(&r);
	return rc;
}

int bootstrap_run(struct bootstrap *b, json_t **rooms, char *err, size_t errlen)
{
	int rc;

	*rooms = NULL;
	if (!b->token_ok) {
		if ((rc = ensure_token(b, err, errlen)) != 0)
			return rc;
		b->token_ok = 1;
	}
	if (b->unsaved_token) {
		char werr[512];

		if (secret_file_write(b->cfg->token_file, "SYNAPSE_TOKEN_FILE", b->unsaved_token, werr, sizeof(werr)) ==
		    0) {
			explicit_bzero(b->unsaved_token, strlen(b->unsaved_token));
			free(b->unsaved_token);
			b->unsaved_token = NULL;
			log_info("bootstrap: token saved to %s", b->cfg->token_file);
		}
	}
	if (!b->ratelimit_ok && !b->dry_run) {
		if ((rc = bootstrap_ratelimit_off(b, b->bot_id, err, errlen)) != 0)
			return rc;
		b->ratelimit_ok = 1;
	}
	*rooms = store_rooms(b->st);
	if (!*rooms) {
		snprintf(err, errlen, "bootstrap: cannot read rooms from the database");
		return BOOTSTRAP_ESTORE;
	}
	if (b->rooms_ok) {
		int all = 1;

		for (int r = 0; r < ROOM__COUNT; r++)
			all &= json_is_string(json_object_get(*rooms, roomspec_rooms[r].key));
		if (all)
			return 0;
	}
	for (int r = 0; r < ROOM__COUNT; r++)
		if ((rc = ensure_room(b, r, *rooms, err, errlen)) != 0) {
			json_decref(*rooms);
			*rooms = NULL;
			return rc;
		}
	b->rooms_ok = !b->dry_run;
	return 0;
}
