/* api_product: what the Deploy App shows about the product and gives its
 * users: health, descriptions (v1, v2, admin), the OpenAPI document,
 * instructions, the client and admin fragments, info.md and the client data
 * the Matrix page renders. Answers are shaped exactly as the original
 * FastAPI service's (compact JSON, keys in the same order, the same literal
 * texts); x509cert is only ever zipped into a fragment, never logged. */
#include "api_product.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <zip.h>

#include "config.h"
#include "embedded.h"
#include "log.h"
#include "matrixid.h"
#include "respond.h"
#include "roomspec.h"
#include "store.h"

#define PRODUCT "matrix"
#define MXID_MAX 512

/* Characters other than RFC 3986 unreserved ones become %XX. Caller frees. */
static char *pct_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *o = malloc(3 * n + 1), *p = o;

	if (o == NULL)
		return NULL;
	for (const unsigned char *c = (const unsigned char *)s; *c != '\0'; c++) {
		if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
		    strchr("-._~", *c) != NULL) {
			*p++ = (char)*c;
		} else {
			*p++ = '%';
			*p++ = hex[*c >> 4];
			*p++ = hex[*c & 15];
		}
	}
	*p = '\0';
	return o;
}

/* &, <, >, " and ' become entities. Caller frees. */
static char *html_escape(const char *s)
{
	size_t n = 0;
	char *o, *p;

	for (const char *c = s; *c != '\0'; c++)
		n += strchr("&<>\"'", *c) != NULL ? 6 : 1;
	if ((o = malloc(n + 1)) == NULL)
		return NULL;
	p = o;
	for (const char *c = s; *c != '\0'; c++) {
		const char *e = NULL;

		switch (*c) {
		case '&':
			e = "&amp;";
			break;
		case '<':
			e = "&lt;";
			break;
		case '>':
			e = "&gt;";
			break;
		case '"':
			e = "&quot;";
			break;
		case '\'':
			e = "&#x27;";
			break;
		default:
			*p++ = *c;
			continue;
		}
		p = stpcpy(p, e);
	}
	*p = '\0';
	return o;
}

/* "#DEPLOYMENT-key:DOMAIN" of a roomspec room; caller frees. */
static char *room_alias(const struct config *cfg, int room)
{
	char buf[1024];

	roomspec_alias(cfg->deployment, cfg->server_domain, room, buf, sizeof(buf));
	return strdup(buf);
}

int api_product_health(const struct api_call *c, struct api_response *out)
{
	const struct api_env *env = c->env;
	char extra[256] = "";
	int healthy;

	if (env->hooks != NULL && env->hooks->health != NULL) {
		healthy = env->hooks->health(env->hooks->ctx, extra, sizeof(extra)) == 1;
	} else {
		api_store_lock(env);
		healthy = store_ping(env->st) == 0;
		api_store_unlock(env);
		snprintf(extra, sizeof(extra), "%s", healthy ? "database reachable" : "database unreachable");
	}
	return respond_json(out, 200, json_pack("{s:b,s:s}", "healthy", healthy, "extra", extra));
}

int api_product_desc_v1(const struct api_call *c, struct api_response *out)
{
	const char *description;

	if (strcmp(c->param, "fi") == 0)
		description = "\"tuote\" integraatioiden testaamiseen";
	else if (strcmp(c->param, "en") == 0)
		description = "Matrix messaging service";
	else
		return respond_detail(out, 404, "Not Found");
	return respond_json(out, 200,
			    json_pack("{s:s,s:s,s:n,s:s,s:s}", "shortname", PRODUCT, "title", "Matrix", "icon",
				      "description", description, "language", c->param));
}

/* The ProductDescriptionExtended shape shared by v2 and the admin variant. */
static int desc_ext_reply(const struct api_call *c, const char *description, struct api_response *out)
{
	char *docs = NULL;
	json_t *j = NULL;

	if (asprintf(&docs, "https://docs.pvarki.fi/%s/docs/guides/matrix-guide", c->param) < 0)
		return respond_oom(out);
	j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:{s:s,s:s}}", "shortname", PRODUCT, "title", "Matrix", "icon",
		      "ui/" PRODUCT "/matrixlogo.svg", "description", description, "language", c->param, "docs", docs,
		      "component", "type", "component", "ref", "/ui/" PRODUCT "/remoteEntry.js");
	free(docs);
	if (j == NULL) /* the language is not valid UTF-8 */
		return respond_detail(out, 404, "Not Found");
	return respond_json(out, 200, j);
}

int api_product_desc_v2(const struct api_call *c, struct api_response *out)
{
	if (strcmp(c->param, "fi") == 0)
		return desc_ext_reply(c, "Matrix viestipalvelu", out);
	if (strcmp(c->param, "sv") == 0)
		return desc_ext_reply(c, "Matrix meddelandetjänst", out);
	return desc_ext_reply(c, "Matrix messaging service", out);
}

int api_product_desc_admin(const struct api_call *c, struct api_response *out)
{
	const char *fmt = "Matrix messaging service: administrators' room %s";
	char *alias = NULL, *description = NULL;
	int rc;

	if (strcmp(c->param, "fi") == 0)
		fmt = "Matrix viestipalvelu: ylläpitäjien huone %s";
	else if (strcmp(c->param, "sv") == 0)
		fmt = "Matrix meddelandetjänst: administratörernas rum %s";
	if ((alias = room_alias(c->env->cfg, ROOM_ADMIN)) == NULL || asprintf(&description, fmt, alias) < 0) {
		description = NULL;
		rc = respond_oom(out);
		goto out;
	}
	rc = desc_ext_reply(c, description, out);
out:
	free(alias);
	free(description);
	return rc;
}

int api_product_openapi(const struct api_call *c, struct api_response *out)
{
	const struct embedded_file *f = embedded_find("openapi.json");
	char *copy;

	if (f == NULL) {
		log_error("api: openapi.json is not embedded in this binary");
		respond_detail(out, 500, "Internal Server Error");
		return API_ENOEMBED;
	}
	if ((copy = malloc(f->size + 1)) == NULL)
		return respond_oom(out);
	memcpy(copy, f->data, f->size + 1);
	return respond_raw(out, 200, RESPOND_JSON, copy, f->size);
}

int api_product_instructions(const struct api_call *c, struct api_response *out)
{
	return respond_json(out, 200,
			    json_pack("{s:s,s:s,s:s}", "callsign", c->user->callsign, "instructions",
				      "FIXME: Return something sane", "language", "en"));
}

/* A zip archive holding one deflated entry; *zbuf is malloc'd. */
static int zip_one(const char *entry, const char *data, size_t len, unsigned char **zbuf, size_t *zlen)
{
	zip_source_t *src = NULL, *fsrc = NULL;
	zip_t *za = NULL;
	zip_error_t ze;
	zip_int64_t idx, size;
	unsigned char *buf = NULL;
	int rc = -1, src_open = 0;

	*zbuf = NULL;
	*zlen = 0;
	zip_error_init(&ze);
	if ((src = zip_source_buffer_create(NULL, 0, 0, &ze)) == NULL)
		goto out;
	if ((za = zip_open_from_source(src, ZIP_TRUNCATE, &ze)) == NULL)
		goto out;
	zip_source_keep(src); /* the archive's close drops its reference, not ours */
	if ((fsrc = zip_source_buffer(za, data, len, 0)) == NULL)
		goto out;
	if ((idx = zip_file_add(za, entry, fsrc, ZIP_FL_ENC_UTF_8)) < 0)
		goto out;
	fsrc = NULL; /* owned by the archive now */
	if (zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_DEFLATE, 0) != 0)
		goto out;
	if (zip_close(za) != 0)
		goto out;
	za = NULL;
	if (zip_source_open(src) != 0)
		goto out;
	src_open = 1;
	if (zip_source_seek(src, 0, SEEK_END) != 0 || (size = zip_source_tell(src)) < 0 ||
	    zip_source_seek(src, 0, SEEK_SET) != 0)
		goto out;
	if ((buf = malloc(size > 0 ? (size_t)size : 1)) == NULL)
		goto out;
	if (zip_source_read(src, buf, (zip_uint64_t)size) != size)
		goto out;
	*zbuf = buf;
	*zlen = (size_t)size;
	buf = NULL;
	rc = 0;
out:
	if (rc != 0)
		log_warnx("api: building the zip for %s failed: %s", entry,
			  za != NULL ? zip_strerror(za) : zip_error_strerror(&ze));
	free(buf);
	if (src_open)
		zip_source_close(src);
	zip_source_free(fsrc);
	if (za != NULL)
		zip_discard(za);
	zip_source_free(src);
	zip_error_fini(&ze);
	return rc;
}

/* "data:application/zip;base64,..." for a zip of the certificate; caller frees. */
static char *cert_data_url(const char *entry, const char *pem)
{
	static const char prefix[] = "data:application/zip;base64,";
	unsigned char *zbuf = NULL;
	size_t zlen = 0;
	char *url = NULL;

	if (zip_one(entry, pem, strlen(pem), &zbuf, &zlen) != 0)
		goto out;
	if (zlen > INT32_MAX / 2 || (url = malloc(sizeof(prefix) + 4 * ((zlen + 2) / 3) + 1)) == NULL)
		goto out;
	memcpy(url, prefix, sizeof(prefix) - 1);
	EVP_EncodeBlock((unsigned char *)url + sizeof(prefix) - 1, zbuf, (int)zlen);
out:
	free(zbuf);
	return url;
}

/* The callsign as a file name: letters, digits, '-', '_' and inner dots
 * only (anything else becomes '_'), no leading dot, at most 64 bytes. */
static void safe_filename(const char *in, char *out, size_t outlen)
{
	size_t o = 0;

	for (const char *p = in; *p && o + 1 < outlen && o < 64; p++) {
		unsigned char ch = (unsigned char)*p;
		int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
			 ch == '-' || ch == '_' || (ch == '.' && o > 0);

		out[o++] = (char)(ok ? ch : '_');
	}
	out[o] = '\0';
	if (o == 0)
		snprintf(out, outlen, "user");
}

/* The callsign as literal Markdown text in the middle of a line: line
 * breaks and other control characters become spaces (so no heading, list or
 * quote can start), and every character inline Markdown or HTML could read
 * as syntax (emphasis, code, links, images, tags, entities, tables) is
 * backslash-escaped. Caller frees; NULL when memory runs out. */
static char *md_escape(const char *in)
{
	static const char special[] = "\\`*_[]<>!|~&";
	char *out = malloc(2 * strlen(in) + 1), *o = out;

	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			*o++ = ' ';
			continue;
		}
		if (strchr(special, *p))
			*o++ = '\\';
		*o++ = (char)*p;
	}
	*o = '\0';
	return out;
}

int api_product_client_fragment(const struct api_call *c, struct api_response *out)
{
	static const char *const titles[] = {"iMatrix", "aMatrix"};
	json_t *list = NULL;
	char *entry = NULL, *filename = NULL, *url = NULL, base[80];
	int rc = -1;

	safe_filename(c->user->callsign, base, sizeof(base));
	if ((list = json_array()) == NULL)
		goto out;
	for (int i = 0; i < 2; i++) {
		if (asprintf(&entry, "%s_%d.pem", base, i + 1) < 0) {
			entry = NULL;
			goto out;
		}
		if (asprintf(&filename, "%s_%d.zip", base, i + 1) < 0) {
			filename = NULL;
			goto out;
		}
		if ((url = cert_data_url(entry, c->user->x509cert)) == NULL)
			goto out;
		if (json_array_append_new(list, json_pack("{s:s,s:s,s:s}", "title", titles[i], "data", url, "filename",
							  filename)) != 0)
			goto out;
		free(entry);
		free(filename);
		free(url);
		entry = filename = url = NULL;
	}
	rc = 0;
out:
	free(entry);
	free(filename);
	free(url);
	if (rc != 0) {
		json_decref(list);
		return respond_oom(out);
	}
	return respond_json(out, 200, list);
}

int api_product_admin_fragment(const struct api_call *c, struct api_response *out)
{
	char *alias = NULL, *ealias = NULL, *html = NULL;
	int rc;

	if ((alias = room_alias(c->env->cfg, ROOM_ADMIN)) == NULL || (ealias = html_escape(alias)) == NULL ||
	    asprintf(&html,
		     "<p>Administrators have their own Matrix room, <code>%s</code>. "
		     "Promoted users are invited to it automatically and removed from it "
		     "when demoted. Use it to coordinate the deployment and to answer "
		     "questions from the helpdesk room.</p>",
		     ealias) < 0) {
		html = NULL;
		rc = respond_oom(out);
		goto out;
	}
	rc = respond_json(out, 200, json_pack("{s:s,s:n}", "html", html, "inject_css"));
out:
	free(alias);
	free(ealias);
	free(html);
	return rc;
}

int api_product_info_md(const struct api_call *c, struct api_response *out)
{
	const char *dep = c->env->cfg->deployment;
	char *md = NULL, *who = md_escape(c->user->callsign);
	int n;

	if (!who)
		return respond_oom(out);
	if (strcmp(c->param, "fi") == 0)
		n = asprintf(&md,
			     "\n## Matrix\n\nTerve %s! Tämä on käyttöliittymä matrix "
			     "viestintäpalvelua varten.\n\nPyörii deploymentissa \"%s\"\n\n        ",
			     who, dep);
	else
		n = asprintf(&md,
			     "\n## Matrix product\n\nHello %s! This is the UI for the matrix "
			     "messaging service.\n\nRunning on deployment \"%s\"\n",
			     who, dep);
	free(who);
	if (n < 0)
		return respond_oom(out);
	return respond_raw(out, 200, RESPOND_TEXT, md, (size_t)n);
}

/* {"data": {...}}: what a user needs to start using Matrix, and what the
 * Matrix page shows: the Matrix ID, the callsign as Rasenmaeher spells it,
 * the homeserver, the server name, the deployment, whether the rooms are the
 * administrators' set, and the rooms (public ones in roomspec order, then the
 * admin room for administrators), each with its display name and matrix.to
 * link. */
static int client_data_reply(const struct api_call *c, int admin, struct api_response *out)
{
	const struct config *cfg = c->env->cfg;
	char mxid[MXID_MAX], reason[256];
	char *alias = NULL, *link = NULL, *enc = NULL;
	json_t *rooms = NULL, *room_j;
	int rc = 0, built = 0;

	if (matrixid_from_callsign(c->user->callsign, cfg->server_domain, mxid, sizeof(mxid), reason, sizeof(reason)) !=
	    0)
		return respond_invalid(out, "callsign", reason, "value_error");
	if ((rooms = json_array()) == NULL)
		goto out;
	for (int i = 0; i < ROOM__COUNT + 1; i++) {
		int room = i < ROOM__COUNT ? i : ROOM_ADMIN;
		const char *key = roomspec_rooms[room].key;

		if (i < ROOM__COUNT ? !roomspec_rooms[room].is_public : !admin)
			continue;
		if ((alias = room_alias(cfg, room)) == NULL || (enc = pct_encode(alias)) == NULL ||
		    asprintf(&link, "https://matrix.to/#/%s", enc) < 0) {
			link = NULL;
			goto out;
		}
		room_j = json_pack("{s:s,s:s,s:s,s:s}", "key", key, "alias", alias, "link", link, "name",
				   roomspec_name(room, cfg->deployment));
		if (json_array_append_new(rooms, room_j) != 0)
			goto out;
		free(alias);
		free(enc);
		free(link);
		alias = enc = link = NULL;
	}
	rc = respond_json(out, 200,
			  json_pack("{s:{s:s,s:s,s:s,s:s,s:s,s:b,s:o}}", "data", "matrix_id", mxid, "callsign",
				    c->user->callsign, "homeserver", cfg->synapse_public_baseurl, "server_name",
				    cfg->server_domain, "deployment", cfg->deployment, "admin", admin, "rooms", rooms));
	rooms = NULL;
	built = 1;
out:
	free(alias);
	free(enc);
	free(link);
	json_decref(rooms);
	if (!built)
		return respond_oom(out);
	return rc;
}

int api_product_client_data(const struct api_call *c, struct api_response *out)
{
	return client_data_reply(c, 0, out);
}

int api_product_admin_client_data(const struct api_call *c, struct api_response *out)
{
	return client_data_reply(c, 1, out);
}
