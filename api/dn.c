/* dn: RFC 4514 distinguished-name strings, as a TLS-terminating proxy puts
 * them in a header. The parser is strict where a lax one could be tricked
 * into a different identity: a value may not contain a NUL byte (which would
 * cut "CN=rasenmaeher\00x" short) or invalid UTF-8, unescaped '"', '<', '>'
 * are refused, and any malformed input yields -1 with nothing returned.
 * Lenient where proxies differ harmlessly: spaces around separators, ';' as
 * an RDN separator (RFC 2253), RFC 1779 quoted values. #hex (BER) values are
 * checked for shape and kept as written, '#' included. */
#include "dn.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct dn_buf {
	char *s;
	size_t len, cap;
};

static int dn_buf_put(struct dn_buf *b, char c)
{
	if (b->len + 1 >= b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 32;
		char *s = realloc(b->s, cap);

		if (s == NULL)
			return -1;
		b->s = s;
		b->cap = cap;
	}
	b->s[b->len++] = c;
	b->s[b->len] = '\0';
	return 0;
}

static int is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void skip_spaces(const char **p)
{
	while (**p == ' ')
		(*p)++;
}

/* Characters that may follow a backslash as themselves (RFC 4514 "special"
 * plus ESC itself). */
static int is_escapable(char c)
{
	return c != '\0' && strchr("\"+,;<>\\ #=", c) != NULL;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static int utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		unsigned long cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return -1;
		}
		if (len - i <= n)
			return -1;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return -1;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return -1;
		i += n + 1;
	}
	return 0;
}

/* attributeType = descr / numericoid; descr = ALPHA *(ALPHA / DIGIT / "-");
 * numericoid = number 1*("." number), number without leading zeros. */
static int parse_type(const char **pp, struct dn_buf *out)
{
	const char *p = *pp, *start = p;

	if (is_alpha(*p)) {
		while (is_alpha(*p) || is_digit(*p) || *p == '-')
			p++;
	} else if (is_digit(*p)) {
		int parts = 0;

		for (;;) {
			if (!is_digit(*p))
				return -1;
			if (*p == '0' && is_digit(p[1]))
				return -1;
			while (is_digit(*p))
				p++;
			parts++;
			if (*p != '.')
				break;
			p++;
		}
		if (parts < 2)
			return -1;
	} else {
		return -1;
	}
	for (const char *q = start; q < p; q++)
		if (dn_buf_put(out, *q) == -1)
			return -1;
	*pp = p;
	return 0;
}

/* hexstring = "#" 1*hexpair, kept as written. */
static int parse_hex_value(const char **pp, struct dn_buf *out)
{
	const char *p = *pp;
	size_t digits = 0;

	if (dn_buf_put(out, *p++) == -1)
		return -1;
	while (hex_val(*p) >= 0) {
		if (dn_buf_put(out, *p++) == -1)
			return -1;
		digits++;
	}
	if (digits == 0 || digits % 2 != 0)
		return -1;
	*pp = p;
	return 0;
}

/* One escape after a backslash: a special character or a hex pair. */
static int parse_pair(const char **pp, struct dn_buf *out)
{
	const char *p = *pp;
	int hi, lo;

	if (is_escapable(*p)) {
		if (dn_buf_put(out, *p) == -1)
			return -1;
		*pp = p + 1;
		return 0;
	}
	hi = hex_val(p[0]);
	lo = hi < 0 ? -1 : hex_val(p[1]);
	if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
		return -1;
	if (dn_buf_put(out, (char)(hi << 4 | lo)) == -1)
		return -1;
	*pp = p + 2;
	return 0;
}

/* RFC 1779 quoted value: everything up to the closing quote, escapes allowed. */
static int parse_quoted_value(const char **pp, struct dn_buf *out)
{
	const char *p = *pp + 1;

	while (*p != '"') {
		if (*p == '\0')
			return -1;
		if (*p == '\\') {
			p++;
			if (parse_pair(&p, out) == -1)
				return -1;
		} else if (dn_buf_put(out, *p++) == -1) {
			return -1;
		}
	}
	*pp = p + 1;
	return 0;
}

/* Unquoted string: up to an unescaped separator; unescaped trailing spaces
 * belong to the separator, escaped ones to the value. */
static int parse_string_value(const char **pp, struct dn_buf *out)
{
	const char *p = *pp;
	size_t keep = out->len;

	while (*p != '\0' && *p != ',' && *p != '+' && *p != ';') {
		if (*p == '\\') {
			p++;
			if (parse_pair(&p, out) == -1)
				return -1;
			keep = out->len;
			continue;
		}
		if (*p == '"' || *p == '<' || *p == '>')
			return -1;
		if (dn_buf_put(out, *p) == -1)
			return -1;
		if (*p != ' ')
			keep = out->len;
		p++;
	}
	out->len = keep;
	if (out->s != NULL)
		out->s[keep] = '\0';
	*pp = p;
	return 0;
}

static int parse_value(const char **pp, struct dn_buf *out)
{
	if (**pp == '#')
		return parse_hex_value(pp, out);
	if (**pp == '"')
		return parse_quoted_value(pp, out);
	return parse_string_value(pp, out);
}

static int dn_append(struct dn *dn, size_t *cap, char *type, char *value, int rdn)
{
	if (dn->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4;
		struct dn_attr *a = realloc(dn->attrs, ncap * sizeof(*a));

		if (a == NULL)
			return -1;
		dn->attrs = a;
		*cap = ncap;
	}
	dn->attrs[dn->n].type = type;
	dn->attrs[dn->n].value = value;
	dn->attrs[dn->n].rdn = rdn;
	dn->n++;
	return 0;
}

int dn_parse(const char *s, struct dn *out)
{
	struct dn dn = {NULL, 0};
	struct dn_buf type = {NULL, 0, 0}, value = {NULL, 0, 0};
	size_t cap = 0;
	int rdn = 0, rc = -1;
	const char *p = s;

	if (out == NULL)
		return -1;
	out->attrs = NULL;
	out->n = 0;
	if (s == NULL)
		goto done;
	skip_spaces(&p);
	if (*p == '\0') {
		rc = 0; /* the empty DN */
		goto done;
	}
	for (;;) {
		if (parse_type(&p, &type) == -1)
			goto done;
		skip_spaces(&p);
		if (*p++ != '=')
			goto done;
		skip_spaces(&p);
		if (dn_buf_put(&value, 'x') == -1) /* so that "" is allocated too */
			goto done;
		value.len = 0;
		value.s[0] = '\0';
		if (parse_value(&p, &value) == -1)
			goto done;
		if (memchr(value.s, '\0', value.len) != NULL ||
		    utf8_valid((const unsigned char *)value.s, value.len) == -1)
			goto done;
		skip_spaces(&p);
		if (*p != '\0' && *p != ',' && *p != ';' && *p != '+')
			goto done;
		if (dn_append(&dn, &cap, type.s, value.s, rdn) == -1)
			goto done;
		type = (struct dn_buf){NULL, 0, 0};
		value = (struct dn_buf){NULL, 0, 0};
		if (*p == '\0')
			break;
		if (*p != '+')
			rdn++;
		p++;
		skip_spaces(&p);
	}
	*out = dn;
	dn = (struct dn){NULL, 0};
	rc = 0;
done:
	free(type.s);
	free(value.s);
	dn_free(&dn);
	return rc;
}

/* Short names and their OIDs, so that "CN" finds "2.5.4.3=..." too. */
static const struct {
	const char *name, *oid;
} dn_aliases[] = {
	{"CN", "2.5.4.3"},
	{"SN", "2.5.4.4"},
	{"serialNumber", "2.5.4.5"},
	{"C", "2.5.4.6"},
	{"L", "2.5.4.7"},
	{"ST", "2.5.4.8"},
	{"STREET", "2.5.4.9"},
	{"O", "2.5.4.10"},
	{"OU", "2.5.4.11"},
	{"title", "2.5.4.12"},
	{"GN", "2.5.4.42"},
	{"UID", "0.9.2342.19200300.100.1.1"},
	{"DC", "0.9.2342.19200300.100.1.25"},
	{"emailAddress", "1.2.840.113549.1.9.1"},
};

/* The OID for a short name, the OID itself, or NULL when unknown. */
static const char *dn_canonical_oid(const char *type)
{
	for (size_t i = 0; i < sizeof(dn_aliases) / sizeof(dn_aliases[0]); i++)
		if (strcasecmp(type, dn_aliases[i].name) == 0 || strcmp(type, dn_aliases[i].oid) == 0)
			return dn_aliases[i].oid;
	return NULL;
}

const char *dn_get(const struct dn *dn, const char *type)
{
	const char *want;

	if (dn == NULL || type == NULL)
		return NULL;
	want = dn_canonical_oid(type);
	for (size_t i = 0; i < dn->n; i++) {
		const char *t = dn->attrs[i].type;
		const char *have = dn_canonical_oid(t);

		if (strcasecmp(t, type) == 0 || (want != NULL && have != NULL && strcmp(want, have) == 0))
			return dn->attrs[i].value;
	}
	return NULL;
}

void dn_free(struct dn *dn)
{
	if (dn == NULL)
		return;
	for (size_t i = 0; i < dn->n; i++) {
		free(dn->attrs[i].type);
		free(dn->attrs[i].value);
	}
	free(dn->attrs);
	dn->attrs = NULL;
	dn->n = 0;
}
