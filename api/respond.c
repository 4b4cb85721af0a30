/* respond: building the product API's answers (see respond.h). The JSON is
 * compact, keys in the order given, as the original FastAPI service sent it. */
#include "respond.h"

#include <stdlib.h>
#include <string.h>

int respond_raw(struct api_response *out, int status, const char *ctype, char *body, size_t len)
{
	api_response_clear(out);
	out->status = status;
	out->content_type = ctype;
	out->body = body;
	out->body_len = len;
	return 0;
}

int respond_oom(struct api_response *out)
{
	static const char text[] = "{\"detail\":\"Internal Server Error\"}";
	char *copy = strdup(text);

	respond_raw(out, 500, RESPOND_JSON, copy, copy != NULL ? strlen(copy) : 0);
	return API_ENOMEM;
}

int respond_json(struct api_response *out, int status, json_t *j)
{
	char *s = NULL;
	int rc = API_ENOMEM;

	if (j == NULL)
		goto out;
	if ((s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
		goto out;
	respond_raw(out, status, RESPOND_JSON, s, strlen(s));
	rc = 0;
out:
	json_decref(j);
	if (rc != 0)
		return respond_oom(out);
	return 0;
}

int respond_detail(struct api_response *out, int status, const char *detail)
{
	return respond_json(out, status, json_pack("{s:s}", "detail", detail));
}

int respond_result(struct api_response *out, int status, int success, const char *error)
{
	return respond_json(out, status, json_pack("{s:b,s:n,s:s?}", "success", success, "extra", "error", error));
}

int respond_add_error(json_t *errors, const char *field, int position, const char *msg, const char *type)
{
	json_t *loc = json_pack("[s]", "body");

	if (loc == NULL)
		return -1;
	if (field != NULL)
		json_array_append_new(loc, json_string(field));
	else if (position >= 0)
		json_array_append_new(loc, json_integer(position));
	return json_array_append_new(errors, json_pack("{s:o,s:s,s:s}", "loc", loc, "msg", msg, "type", type));
}

int respond_invalid(struct api_response *out, const char *field, const char *msg, const char *type)
{
	json_t *errors = json_array();

	if (errors == NULL || respond_add_error(errors, field, -1, msg, type) != 0) {
		json_decref(errors);
		return respond_oom(out);
	}
	return respond_json(out, 422, json_pack("{s:o}", "detail", errors));
}
