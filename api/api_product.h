/* api_product: the product endpoints the Deploy App and its users read:
 * health, descriptions, the OpenAPI document, instructions, fragments,
 * info.md and clients/data. One handler per route (see api.c's table). */
#pragma once
#include "api_call.h"

int api_product_health(const struct api_call *c, struct api_response *out);
int api_product_desc_v1(const struct api_call *c, struct api_response *out);
int api_product_desc_v2(const struct api_call *c, struct api_response *out);
int api_product_desc_admin(const struct api_call *c, struct api_response *out);
int api_product_openapi(const struct api_call *c, struct api_response *out);
int api_product_instructions(const struct api_call *c, struct api_response *out);
int api_product_client_fragment(const struct api_call *c, struct api_response *out);
int api_product_admin_fragment(const struct api_call *c, struct api_response *out);
int api_product_info_md(const struct api_call *c, struct api_response *out);
/* {"data": {...}} for a user; the admin variant adds the admin room. */
int api_product_client_data(const struct api_call *c, struct api_response *out);
int api_product_admin_client_data(const struct api_call *c, struct api_response *out);
