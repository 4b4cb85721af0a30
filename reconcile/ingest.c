/* ingest: see ingest.h. */
#include "ingest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "bootstrap.h"
#include "config.h"
#include "errtext.h"
#include "log.h"
#include "secret.h"
#include "synapse.h"

static const struct errtext ingest_errors[] = {
	{INGEST_ENOANSWER, "Synapse did not answer the ingest bot's token check"},
	{INGEST_EREGISTER, "the ingest bot could be neither registered nor recovered"},
	{INGEST_ESAVE, "the ingest bot's token file could not be written"},
	{INGEST_ELOCK, "the token lock could not be taken"},
	{INGEST_EREADONLY, "no valid ingest bot token, and a read-only run registers nothing"},
};

const char *ingest_strerror(int code)
{
	return ERRTEXT_LOOKUP(ingest_errors, code);
}

int ingest_init(struct ingest *ig, const struct config *cfg)
{
	memset(ig, 0, sizeof(*ig));
	ig->cfg = cfg;
	pthread_mutex_init(&ig->mu, NULL);
	snprintf(ig->id, sizeof(ig->id), "@%s:%s", cfg->interop_bot_username, cfg->server_domain);
	return synapse_new(cfg->synapse_url, 30000, &ig->syn) == 0 ? 0 : -ENOMEM;
}

static void wipe_free(char **s)
{
	if (*s) {
		explicit_bzero(*s, strlen(*s));
		free(*s);
		*s = NULL;
	}
}

static void publish(struct ingest *ig, const char *token)
{
	pthread_mutex_lock(&ig->mu);
	wipe_free(&ig->published);
	ig->published = token ? strdup(token) : NULL;
	pthread_mutex_unlock(&ig->mu);
}

void ingest_release(struct ingest *ig)
{
	publish(ig, NULL);
	synapse_free(ig->syn);
	ig->syn = NULL;
	pthread_mutex_destroy(&ig->mu);
}

void ingest_token_rejected(struct ingest *ig)
{
	ig->token_ok = 0;
	publish(ig, NULL);
}

int ingest_token(struct ingest *ig, char *out, size_t outlen)
{
	int ready;

	pthread_mutex_lock(&ig->mu);
	ready = ig->published && strlen(ig->published) < outlen;
	if (ready)
		memcpy(out, ig->published, strlen(ig->published) + 1);
	pthread_mutex_unlock(&ig->mu);
	return ready;
}

/* The account exists but its token is lost: the admin bot logs in as it. */
static int recover(struct ingest *ig, struct bootstrap *boot, char **token)
{
	char *path = synapse_path("/_synapse/admin/v1/users/%s/login", ig->id);
	struct synapse_resp r = {0};
	json_t *body = json_object();
	int rc = INGEST_EREGISTER;

	if (path && body && synapse_request(boot->syn, "POST", path, body, &r) == 0 && r.status == 200 &&
	    json_is_string(json_object_get(r.body, "access_token"))) {
		*token = strdup(json_string_value(json_object_get(r.body, "access_token")));
		rc = *token ? 0 : -ENOMEM;
		log_info("ingest: recovered a token for %s through the admin bot", ig->id);
	} else {
		log_warnx("ingest: cannot recover a token for %s: HTTP %ld %s", ig->id, r.status, r.errcode);
	}
	free(path);
	json_decref(body);
	synapse_resp_free(&r);
	return rc;
}

/* A valid token in ig->syn, from the file or new. */
static int ensure_token(struct ingest *ig, struct bootstrap *boot, int read_only, char *err, size_t errlen)
{
	const char *var = "SYNAPSE_TOKEN_FILE (interop bot token)";
	char lockpath[4096], token[1024], pw[65], errcode[64] = "";
	char *newtoken = NULL;
	int lockfd, rc, valid;

	snprintf(lockpath, sizeof(lockpath), "%s.lock", ig->cfg->token_file);
	lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lockfd < 0 || flock(lockfd, LOCK_EX) != 0) {
		snprintf(err, errlen, "cannot lock %s: %s", lockpath, strerror(errno));
		rc = INGEST_ELOCK;
		goto out;
	}
	rc = -EIO;
	if (secret_file_read(ig->cfg->interop_token_file, var, token, sizeof(token), err, errlen) != 0)
		goto out;
	if (token[0]) {
		synapse_set_token(ig->syn, token);
		valid = bootstrap_whoami(ig->syn, ig->id);
		if (valid < 0) {
			rc = INGEST_ENOANSWER;
			goto out;
		}
		if (valid) {
			rc = 0;
			goto out;
		}
		log_warnx("ingest: the token in %s is not valid for %s; getting a new one", ig->cfg->interop_token_file,
			  ig->id);
	}
	synapse_set_token(ig->syn, NULL);
	rc = INGEST_EREADONLY;
	if (read_only)
		goto out;
	rc = INGEST_EREGISTER;
	if (secret_random_hex(pw, 32) != 0)
		goto out;
	if (synapse_register(ig->syn, ig->cfg->registration_secret, ig->cfg->interop_bot_username, pw, 0, &newtoken,
			     errcode, sizeof(errcode)) == 0) {
		log_info("ingest: registered %s (not an admin)", ig->id);
	} else if (strcmp(errcode, "M_USER_IN_USE") != 0 || (rc = recover(ig, boot, &newtoken)) != 0) {
		snprintf(err, errlen, "cannot register %s: %s", ig->id, errcode[0] ? errcode : "no answer");
		goto out;
	}
	synapse_set_token(ig->syn, newtoken);
	rc = 0;
	if (secret_file_write(ig->cfg->interop_token_file, var, newtoken, err, errlen) != 0) {
		/* Use it all the same; the next start registers nothing new
		 * either (recovery logs in again). */
		log_error("ingest: %s; the new token is kept in memory only", err);
		rc = INGEST_ESAVE;
	}
out:
	if (rc == 0 || rc == INGEST_ESAVE)
		publish(ig, newtoken ? newtoken : token);
	explicit_bzero(token, sizeof(token));
	explicit_bzero(pw, sizeof(pw));
	wipe_free(&newtoken);
	if (lockfd >= 0)
		close(lockfd);
	return rc;
}

int ingest_ensure(struct ingest *ig, struct bootstrap *boot, int read_only, char *err, size_t errlen)
{
	int rc;

	err[0] = '\0';
	if (ig->token_ok) {
		/* Checked on every use: a token revoked meanwhile is replaced. */
		int valid = bootstrap_whoami(ig->syn, ig->id);

		if (valid < 0)
			return INGEST_ENOANSWER;
		if (!valid)
			ingest_token_rejected(ig);
	}
	if (!ig->token_ok) {
		rc = ensure_token(ig, boot, read_only, err, errlen);
		if (rc != 0 && rc != INGEST_ESAVE)
			return rc;
		ig->token_ok = 1;
	}
	if (!ig->ratelimit_ok && !read_only) {
		if (bootstrap_ratelimit_off(boot, ig->id, err, errlen) != 0)
			return -EIO;
		ig->ratelimit_ok = 1;
	}
	return 0;
}
