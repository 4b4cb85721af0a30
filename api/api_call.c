#include "api_call.h"

#include <stdlib.h>
#include <string.h>

#include "errtext.h"

static const struct errtext err_texts[] = {
	{API_ENOMEM, "out of memory building the answer"},
	{API_ESTORE, "the store refused the write"},
	{API_EBADPATH, "not a path that may be served"},
	{API_ENOTFILE, "not a regular file"},
	{API_ETOOBIG, "file larger than the limit for UI files"},
	{API_ENOEMBED, "a file that should be embedded in the binary is missing"},
};

const char *api_strerror(int code)
{
	return ERRTEXT_LOOKUP(err_texts, code);
}

void api_store_lock(const struct api_env *env)
{
	if (env->store_lock != NULL)
		pthread_mutex_lock(env->store_lock);
}

void api_store_unlock(const struct api_env *env)
{
	if (env->store_lock != NULL)
		pthread_mutex_unlock(env->store_lock);
}

void api_response_clear(struct api_response *out)
{
	if (out == NULL)
		return;
	free(out->body);
	memset(out, 0, sizeof(*out));
}
