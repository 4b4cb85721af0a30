/* fuzz_reply: how the Synapse client reads any answer (lib/synapse.c,
 * synapse_retry_after and synapse_read_body, the one place every request's
 * answer goes through: user lists, whoami, registration, errors, 429s). The
 * input's first line is a response header line, the rest the body. Checked:
 * no crash, leak or overflow; the 429 wait is within 0..30 s; errcode and
 * error are NUL-terminated within their buffers and, where the body is an
 * object with a short string errcode, equal to it. Seeds: answers of a real
 * Synapse 1.160 (../shared/synapse-facts.md) in tests/fuzz/corpus/reply/. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "synapse.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	const char *nl = memchr(in, '\n', size);
	size_t hlen = nl != NULL ? (size_t)(nl - in) : size;
	const char *body = nl != NULL ? nl + 1 : in + size;
	size_t blen = size - (size_t)(body - in);
	struct synapse_resp resp;
	long after, wait;
	const char *want;

	memset(&resp, 0, sizeof(resp));
	after = synapse_retry_after(in, hlen);
	if (after < -1 || after > 999999999L)
		abort();
	wait = synapse_read_body(body, blen, after, &resp);
	if (wait < 0 || wait > 30000)
		abort();
	if (memchr(resp.errcode, '\0', sizeof(resp.errcode)) == NULL ||
	    memchr(resp.error, '\0', sizeof(resp.error)) == NULL)
		abort();
	want = json_string_value(json_object_get(resp.body, "errcode"));
	if (want != NULL && strlen(want) < sizeof(resp.errcode) && strcmp(want, resp.errcode) != 0)
		abort();
	synapse_resp_free(&resp);
	return 0;
}
