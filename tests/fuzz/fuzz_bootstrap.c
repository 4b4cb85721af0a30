/* fuzz_bootstrap: Synapse's answers as the bootstrap reads them: whoami (is
 * the stored token the bot's?), then either the list of recovery admins a
 * crash left (each retired) or a registration (M_USER_IN_USE leads to the
 * recovery: a recovery admin registered, its admin login as the bot, its
 * logout and retirement), the bot's override_ratelimit (GET, then POST when
 * it is not 0/0), and for each of the five rooms the alias lookup, the
 * createRoom that follows a 404 and the lookup again after M_ROOM_IN_USE.
 * The input is a JSON array; its k-th element answers the k-th request:
 * null is a 404 without a body, [status, "raw body"] that status with those
 * bytes, anything else a 200 with it as the body; past the end, no answer.
 * Every body goes through synapse_read_body, as the client reads it, so the
 * bootstrap also meets bodies that are not JSON and errcodes of any shape.
 * Linked with -Wl,--wrap=synapse_request and -Wl,--wrap=synapse_register
 * (which takes the next element too: an object with an access_token string
 * is a registration, else its errcode is the refusal): no HTTP is made. The
 * token file (rewritten before each input), its lock and the SQLite file the
 * rooms are stored in are real, in a temporary folder; the store is opened
 * once, as a running service keeps it. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "bootstrap.h"
#include "config.h"
#include "fuzz.h"
#include "log.h"
#include "secret.h"
#include "store.h"
#include "synapse.h"

/* NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): the name ld's --wrap gives */
int __wrap_synapse_request(struct synapse *s, const char *method, const char *path, json_t *body,
			   struct synapse_resp *resp);

/* NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): the name ld's --wrap gives */
int __wrap_synapse_register(struct synapse *s, const char *secret, const char *localpart, const char *password,
			    int admin, char **token_out, char *errcode_out, size_t errcode_len);

static json_t *replies; /* the current input, while it runs */
static size_t next_reply;
static struct store *store;
static struct synapse *syn;
static struct config cfg;
static char dir[] = "/tmp/matrixrmapi-fuzz-bootstrap-XXXXXX";
static char db_path[sizeof(dir) + 16], token_path[sizeof(dir) + 16];

/* NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): the name ld's --wrap gives */
int __wrap_synapse_request(struct synapse *s, const char *method, const char *path, json_t *body,
			   struct synapse_resp *resp)
{
	json_t *r;
	char *dumped = NULL;
	const char *raw;
	size_t len;

	(void)s;
	(void)method;
	(void)path;
	(void)body;
	memset(resp, 0, sizeof(*resp));
	if (next_reply >= json_array_size(replies))
		return SYNAPSE_ETRANSPORT;
	r = json_array_get(replies, next_reply++);
	if (json_is_null(r)) {
		resp->status = 404;
		return 0;
	}
	if (json_is_array(r) && json_array_size(r) == 2 && json_is_integer(json_array_get(r, 0)) &&
	    json_is_string(json_array_get(r, 1))) {
		resp->status = (long)json_integer_value(json_array_get(r, 0));
		raw = json_string_value(json_array_get(r, 1));
		len = json_string_length(json_array_get(r, 1));
	} else {
		if (!(dumped = json_dumps(r, JSON_COMPACT | JSON_ENCODE_ANY)))
			abort();
		resp->status = 200;
		raw = dumped;
		len = strlen(dumped);
	}
	synapse_read_body(raw, len, -1, resp);
	free(dumped);
	return 0;
}

/* The temporary folder goes when the fuzzer exits. */
static void cleanup(void)
{
	char path[sizeof(db_path) + 8];
	static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};

	store_close(store);
	store = NULL;
	synapse_free(syn);
	syn = NULL;
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		snprintf(path, sizeof(path), "%s%s", db_path, suffixes[i]);
		unlink(path);
	}
	unlink(token_path);
	snprintf(path, sizeof(path), "%s.lock", token_path);
	unlink(path);
	rmdir(dir);
}

/* NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): the name ld's --wrap gives */
int __wrap_synapse_register(struct synapse *s, const char *secret, const char *localpart, const char *password,
			    int admin, char **token_out, char *errcode_out, size_t errcode_len)
{
	json_t *r = json_array_get(replies, next_reply++);
	const char *token = json_string_value(json_object_get(r, "access_token"));
	const char *errcode = json_string_value(json_object_get(r, "errcode"));

	(void)s;
	(void)secret;
	(void)localpart;
	(void)password;
	(void)admin;
	*token_out = NULL;
	errcode_out[0] = '\0';
	if (r == NULL)
		return SYNAPSE_ETRANSPORT;
	if (token != NULL) {
		if (!(*token_out = strdup(token)))
			abort();
		return 0;
	}
	snprintf(errcode_out, errcode_len, "%s", errcode != NULL ? errcode : "");
	return SYNAPSE_EPROTOCOL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[256];

	log_init(50, 0);
	if (!mkdtemp(dir))
		abort();
	snprintf(db_path, sizeof(db_path), "%s/db.sqlite", dir);
	snprintf(token_path, sizeof(token_path), "%s/token", dir);
	if (store_open(db_path, &store, err, sizeof(err)) != 0 || synapse_new("http://127.0.0.1:9", 1000, &syn) != 0)
		abort();
	cfg.deployment = "dep";
	cfg.server_domain = "example.test";
	cfg.bot_username = "matrixrmapi-bot";
	cfg.token_file = token_path;
	if (atexit(cleanup) != 0)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bootstrap b;
	json_t *rooms = NULL;
	char err[512] = "";

	replies = json_loadb((const char *)data, size, 0, NULL);
	next_reply = 0;
	if (!json_is_array(replies))
		goto out;
	if (secret_file_write(token_path, "SYNAPSE_TOKEN_FILE", "syt_stored_token", err, sizeof(err)) != 0)
		abort();
	bootstrap_init(&b, &cfg, syn, store);
	if (bootstrap_run(&b, &rooms, err, sizeof(err)) == 0) {
		/* Whatever was resolved is a room id string for its key. */
		const char *key;
		json_t *v;

		if (!json_is_object(rooms))
			abort();
		json_object_foreach(rooms, key, v) {
			if (!json_is_string(v))
				abort();
		}
	} else if (err[0] == '\0' || rooms != NULL) {
		abort(); /* a failed bootstrap says why and hands back nothing */
	}
	bootstrap_release(&b);
out:
	json_decref(rooms);
	json_decref(replies);
	replies = NULL;
	return 0;
}
