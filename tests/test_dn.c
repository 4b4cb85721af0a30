/* test_dn: RFC 4514 DN parsing, table-driven. Each parse case renders the
 * result as "rdn:type=value;..." and compares it with the expected text, so a
 * wrong value, type, RDN grouping or attribute count shows up as
 * "have X, want Y". Malformed input must give -1 and an empty result. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "dn.h"

struct parse_case {
	const char *name;
	const char *in;
	const char *want; /* rendering, or NULL: must be rejected */
};

static const struct parse_case parse_cases[] = {
	/* plain */
	{"simple", "CN=rasenmaeher,O=Example", "0:CN=rasenmaeher;1:O=Example"},
	{"empty DN", "", ""},
	{"only spaces", "   ", ""},
	{"empty value", "CN=,O=x", "0:CN=;1:O=x"},
	{"unescaped equals in value", "CN=a=b", "0:CN=a=b"},
	{"descr with digit and hyphen", "x-Attr1=v", "0:x-Attr1=v"},
	{"semicolon separates RDNs", "CN=a;O=b", "0:CN=a;1:O=b"},
	/* escapes */
	{"escaped comma", "CN=Doe\\, John,O=X", "0:CN=Doe, John;1:O=X"},
	{"escaped plus", "CN=a\\+b", "0:CN=a+b"},
	{"escaped quote", "CN=say \\\"hi\\\"", "0:CN=say \"hi\""},
	{"escaped backslash", "CN=back\\\\slash", "0:CN=back\\slash"},
	{"escaped semicolon and angles", "CN=a\\;b\\<c\\>", "0:CN=a;b<c>"},
	{"escaped equals", "CN=a\\=b", "0:CN=a=b"},
	{"hex pair ASCII", "CN=\\41BC", "0:CN=ABC"},
	{"hex pair lower case", "CN=\\2c", "0:CN=,"},
	{"hex pairs 2-byte UTF-8", "CN=M\\C3\\BCller", "0:CN=M\xc3\xbcller"},
	{"hex pairs 3-byte UTF-8", "CN=\\E2\\82\\AC", "0:CN=\xe2\x82\xac"},
	{"hex pairs 4-byte UTF-8", "CN=\\F0\\9F\\98\\80", "0:CN=\xf0\x9f\x98\x80"},
	{"raw UTF-8", "CN=M\xc3\xbcller", "0:CN=M\xc3\xbcller"},
	{"escaped leading space", "CN=\\ lead", "0:CN= lead"},
	{"escaped trailing space", "CN=trail\\ ", "0:CN=trail "},
	{"escaped trailing space then spaces", "CN=trail\\  ,O=x", "0:CN=trail ;1:O=x"},
	{"escaped leading hash is text", "CN=\\#notHex", "0:CN=#notHex"},
	{"inner spaces kept", "CN=a  b", "0:CN=a  b"},
	/* quoted values */
	{"quoted with specials", "CN=\"Doe, John + Co; <x>\",O=X", "0:CN=Doe, John + Co; <x>;1:O=X"},
	{"quoted keeps spaces", "CN=\" padded \"", "0:CN= padded "},
	{"quoted with escapes", "CN=\"say \\\"hi\\\" \\41\"", "0:CN=say \"hi\" A"},
	{"quoted then spaces", "CN=\"a\"  ,O=b", "0:CN=a;1:O=b"},
	/* multi-valued RDNs */
	{"multi-valued RDN", "CN=a+UID=b,O=c", "0:CN=a;0:UID=b;1:O=c"},
	{"multi-valued with spaces", "CN=a + UID=b , O=c+OU=d", "0:CN=a;0:UID=b;1:O=c;1:OU=d"},
	{"three RDNs", "CN=a,OU=b,O=c", "0:CN=a;1:OU=b;2:O=c"},
	/* whitespace */
	{"spaces around everything", "  CN = rasenmaeher ,  O = Example  ", "0:CN=rasenmaeher;1:O=Example"},
	/* OIDs and BER */
	{"OID type", "2.5.4.3=rasenmaeher", "0:2.5.4.3=rasenmaeher"},
	{"long OID type", "0.9.2342.19200300.100.1.25=com", "0:0.9.2342.19200300.100.1.25=com"},
	{"hex BER value kept", "1.3.6.1.4.1.1466.0=#04024869,O=x", "0:1.3.6.1.4.1.1466.0=#04024869;1:O=x"},
	{"hex BER value then space", "CN=#0c0161 ", "0:CN=#0c0161"},

	/* garbage */
	{"unterminated quote", "CN=\"abc", NULL},
	{"unterminated quote after escape", "CN=\"abc\\\"", NULL},
	{"trailing backslash", "CN=abc\\", NULL},
	{"bad hex letter", "CN=\\4G", NULL},
	{"half a hex pair at end", "CN=\\4", NULL},
	{"not escapable", "CN=\\zz", NULL},
	{"escaped NUL", "CN=rasenmaeher\\00x", NULL},
	{"escape makes invalid UTF-8", "CN=\\C3", NULL},
	{"escape makes overlong UTF-8", "CN=\\C0\\AF", NULL},
	{"escape makes a surrogate", "CN=\\ED\\A0\\80", NULL},
	{"raw invalid UTF-8", "CN=\xff", NULL},
	{"empty type", "=abc", NULL},
	{"empty type later", "CN=a,=b", NULL},
	{"missing equals", "CN", NULL},
	{"missing equals later", "CN=a,O", NULL},
	{"trailing comma", "CN=a,", NULL},
	{"trailing plus", "CN=a+", NULL},
	{"leading comma", ",CN=a", NULL},
	{"double comma", "CN=a,,O=b", NULL},
	{"unescaped quote inside", "CN=a\"b", NULL},
	{"unescaped angle", "CN=a<b", NULL},
	{"text after quoted value", "CN=\"a\"b", NULL},
	{"space inside type", "C N=a", NULL},
	{"type starts with hyphen", "-CN=a", NULL},
	{"OID with leading zero", "2.05.4.3=x", NULL},
	{"OID with one arc", "2=x", NULL},
	{"OID with trailing dot", "2.5.=x", NULL},
	{"digit then letters", "1a=x", NULL},
	{"hex value odd length", "CN=#abc", NULL},
	{"hex value empty", "CN=#", NULL},
	{"hex value not hex", "CN=#zz", NULL},
	{"hex value then text", "CN=#0161 x", NULL},
};

/* "rdn:type=value;..." */
static void render(const struct dn *dn, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < dn->n && used < len; i++) {
		int w = snprintf(buf + used, len - used, "%s%d:%s=%s", i ? ";" : "", dn->attrs[i].rdn,
				 dn->attrs[i].type, dn->attrs[i].value);
		if (w < 0)
			break;
		used += (size_t)w;
	}
}

static void test_parse_table(void **state)
{
	int failures = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const struct parse_case *c = &parse_cases[i];
		struct dn dn = {(struct dn_attr *)&dn, 99}; /* garbage the parser must overwrite */
		char have[512];
		int rc = dn_parse(c->in, &dn);

		if (c->want == NULL) {
			if (rc != -1 || dn.n != 0 || dn.attrs != NULL) {
				if (rc == 0)
					render(&dn, have, sizeof(have));
				print_error("%s: dn_parse(\"%s\"): have rc %d \"%s\", want -1 and "
					    "an empty result\n",
					    c->name, c->in, rc, rc == 0 ? have : "");
				failures++;
			}
		} else if (rc != 0) {
			print_error("%s: dn_parse(\"%s\"): have rc %d, want 0 \"%s\"\n", c->name, c->in, rc, c->want);
			failures++;
		} else {
			render(&dn, have, sizeof(have));
			if (strcmp(have, c->want) != 0) {
				print_error("%s: dn_parse(\"%s\"): have \"%s\", want \"%s\"\n", c->name, c->in, have,
					    c->want);
				failures++;
			}
		}
		if (rc == 0)
			dn_free(&dn);
	}
	assert_int_equal(failures, 0);
}

struct get_case {
	const char *in, *type, *want; /* want NULL: no such attribute */
};

static const struct get_case get_cases[] = {
	{"O=X,CN=a", "CN", "a"},
	{"O=X,CN=a", "cn", "a"},
	{"O=X,cn=a", "CN", "a"},
	{"2.5.4.3=a", "CN", "a"},
	{"CN=a", "2.5.4.3", "a"},
	{"O=X,2.5.4.10=Y", "O", "X"},
	{"2.5.4.10=Y", "o", "Y"},
	{"0.9.2342.19200300.100.1.25=com", "DC", "com"},
	{"CN=first,CN=second", "CN", "first"},
	{"CN=a+UID=b", "UID", "b"},
	{"OU=unit", "O", NULL},
	{"O=X", "CN", NULL},
	{"2.5.4.11=unit", "CN", NULL},
	{"foo=bar", "FOO", "bar"},
	{"", "CN", NULL},
};

static void test_get_table(void **state)
{
	int failures = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(get_cases) / sizeof(get_cases[0]); i++) {
		const struct get_case *c = &get_cases[i];
		struct dn dn;
		const char *have;

		if (dn_parse(c->in, &dn) != 0) {
			print_error("dn_parse(\"%s\") failed\n", c->in);
			failures++;
			continue;
		}
		have = dn_get(&dn, c->type);
		if ((have == NULL) != (c->want == NULL) || (have != NULL && strcmp(have, c->want) != 0)) {
			print_error("dn_get(\"%s\", \"%s\"): have %s%s%s, want %s%s%s\n", c->in, c->type,
				    have ? "\"" : "", have ? have : "NULL", have ? "\"" : "", c->want ? "\"" : "",
				    c->want ? c->want : "NULL", c->want ? "\"" : "");
			failures++;
		}
		dn_free(&dn);
	}
	assert_int_equal(failures, 0);
}

static void test_null_and_free(void **state)
{
	struct dn dn = {NULL, 0};

	(void)state;
	assert_int_equal(dn_parse(NULL, &dn), -1);
	assert_int_equal(dn_parse("CN=a", NULL), -1);
	assert_null(dn_get(NULL, "CN"));
	dn_free(NULL);
	dn_free(&dn);
	assert_int_equal(dn_parse("CN=a,O=b", &dn), 0);
	dn_free(&dn);
	assert_null(dn.attrs);
	assert_int_equal(dn.n, 0);
	dn_free(&dn); /* twice is harmless */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_table),
		cmocka_unit_test(test_get_table),
		cmocka_unit_test(test_null_and_free),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
