/* respond: the answers of the product API, built into an api_response.
 * Every function replaces what *out held, takes ownership of what it is
 * given (the body string, the json_t), and leaves a complete answer in *out
 * even when memory runs out (then a fixed 500). They return 0, or API_ENOMEM
 * when the fixed 500 was all that could be sent. */
#pragma once
#include <stddef.h>

#include <jansson.h>

#include "api_call.h"

#define RESPOND_JSON "application/json"
#define RESPOND_TEXT "text/plain; charset=utf-8"

/* body (malloc'd, may be NULL when len is 0) becomes the answer. */
int respond_raw(struct api_response *out, int status, const char *ctype, char *body, size_t len);
/* The answer of last resort: {"detail":"Internal Server Error"}, 500. */
int respond_oom(struct api_response *out);
/* Serialises and consumes j (NULL: it could not be built, so a 500). */
int respond_json(struct api_response *out, int status, json_t *j);
/* {"detail": detail} */
int respond_detail(struct api_response *out, int status, const char *detail);
/* The original's OperationResultResponse {"success", "extra", "error"}. */
int respond_result(struct api_response *out, int status, int success, const char *error);
/* A FastAPI-style 422 with one error about body field `field`. */
int respond_invalid(struct api_response *out, const char *field, const char *msg, const char *type);
/* Appends one FastAPI validation error: loc is ["body", field],
 * ["body", position] or ["body"]. Returns 0 or -1. */
int respond_add_error(json_t *errors, const char *field, int position, const char *msg, const char *type);
