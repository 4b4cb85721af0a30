/* test_auth: client authentication in both modes against a real test PKI made
 * by deploy/mkpki.sh in a temporary directory. Where a certificate should be
 * refused for one reason (expiry, revocation, EKU, CA), a fixture check first
 * shows with OpenSSL directly that the certificate is otherwise good, so a
 * pass cannot come from a broken fixture. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "auth.h"
#include "config.h"

#define MAX_CERTS 4

static char g_dir[256];

/* A chain as auth_verify_chain takes it. */
struct chain {
	unsigned char *der[MAX_CERTS];
	size_t len[MAX_CERTS];
	size_t n;
};

static void path_of(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", g_dir, name);
}

static void chain_free(struct chain *c)
{
	for (size_t i = 0; i < c->n; i++)
		OPENSSL_free(c->der[i]);
	c->n = 0;
}

/* Every certificate in DIR/name, as DER. */
static void chain_load(const char *name, struct chain *c)
{
	char path[512];
	FILE *fp;
	X509 *x;

	memset(c, 0, sizeof(*c));
	path_of(path, sizeof(path), name);
	fp = fopen(path, "r");
	if (fp == NULL)
		fail_msg("open %s: %s", path, strerror(errno));
	while (c->n < MAX_CERTS && (x = PEM_read_X509(fp, NULL, NULL, NULL)) != NULL) {
		unsigned char *der = NULL;
		int len = i2d_X509(x, &der);

		X509_free(x);
		assert_true(len > 0);
		c->der[c->n] = der;
		c->len[c->n] = (size_t)len;
		c->n++;
	}
	assert_int_equal(fclose(fp), 0);
	assert_true(c->n > 0);
}

/* auth_verify_chain on DIR/name; the CN goes to cn (or "" on failure). */
static int verify_file(struct auth *a, const char *name, char *cn, size_t cnlen)
{
	struct chain c;
	char *have = (char *)"not touched";
	int rc;

	chain_load(name, &c);
	rc = auth_verify_chain(a, (const unsigned char *const *)c.der, c.len, c.n, &have);
	chain_free(&c);
	if (rc != 0 && have != NULL)
		fail_msg("%s: auth_verify_chain failed but left cn_out set", name);
	if (rc == 0 && have == NULL)
		fail_msg("%s: auth_verify_chain succeeded without a CN", name);
	snprintf(cn, cnlen, "%s", rc == 0 ? have : "");
	free(rc == 0 ? have : NULL);
	return rc;
}

static void expect_verify(struct auth *a, const char *name, int want_rc, const char *want_cn)
{
	char cn[256];
	int rc = verify_file(a, name, cn, sizeof(cn));

	if (rc != want_rc)
		fail_msg("auth_verify_chain(%s): have rc %d, want %d", name, rc, want_rc);
	if (want_cn != NULL && strcmp(cn, want_cn) != 0)
		fail_msg("auth_verify_chain(%s): have CN \"%s\", want \"%s\"", name, cn, want_cn);
}

/* OpenSSL's own verdict on DIR/leaf against DIR/cafile (extra certificates
 * in untrusted_file), independent of the code under test: X509_V_OK or the
 * error code. */
static int fixture_verify(const char *leaf, const char *cafile, const char *untrusted_file, unsigned long flags,
			  int purpose)
{
	char path[512];
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	STACK_OF(X509) *untrusted = sk_X509_new_null();
	X509 *x = NULL;
	FILE *fp;
	int err;

	assert_non_null(store);
	assert_non_null(ctx);
	assert_non_null(untrusted);
	path_of(path, sizeof(path), cafile);
	assert_int_equal(X509_STORE_load_file(store, path), 1);
	if (untrusted_file != NULL) {
		X509 *u;

		path_of(path, sizeof(path), untrusted_file);
		fp = fopen(path, "r");
		assert_non_null(fp);
		while ((u = PEM_read_X509(fp, NULL, NULL, NULL)) != NULL)
			sk_X509_push(untrusted, u);
		assert_int_equal(fclose(fp), 0);
	}
	path_of(path, sizeof(path), leaf);
	fp = fopen(path, "r");
	assert_non_null(fp);
	x = PEM_read_X509(fp, NULL, NULL, NULL);
	assert_int_equal(fclose(fp), 0);
	assert_non_null(x);
	X509_STORE_set_flags(store, flags);
	assert_int_equal(X509_STORE_CTX_init(ctx, store, x, untrusted), 1);
	if (purpose != 0)
		X509_STORE_CTX_set_purpose(ctx, purpose);
	err = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	sk_X509_pop_free(untrusted, X509_free);
	X509_free(x);
	return err;
}

static struct auth *native_auth(const char *crl_name)
{
	char cert[512], ca[512], crl[512], err[512] = "";
	struct config cfg;
	struct auth *a = NULL;

	memset(&cfg, 0, sizeof(cfg));
	path_of(cert, sizeof(cert), "server.pem");
	path_of(ca, sizeof(ca), "ca.pem");
	cfg.tls_cert_file = cert;
	cfg.tls_client_ca_file = ca;
	cfg.mtls_trusted_proxies = (char *)"127.0.0.1,::1"; /* the default; unused here */
	if (crl_name != NULL) {
		path_of(crl, sizeof(crl), crl_name);
		cfg.tls_crl_file = crl;
	}
	if (auth_new(&cfg, &a, err, sizeof(err)) != 0)
		fail_msg("auth_new (native): %s", err);
	assert_non_null(a);
	return a;
}

static struct auth *proxy_auth(const char *proxies)
{
	char err[512] = "";
	struct config cfg;
	struct auth *a = NULL;

	memset(&cfg, 0, sizeof(cfg));
	cfg.mtls_header_name = (char *)"X-ClientCert-DN";
	cfg.mtls_trusted_proxies = (char *)proxies;
	if (auth_new(&cfg, &a, err, sizeof(err)) != 0)
		fail_msg("auth_new (proxy %s): %s", proxies, err);
	assert_non_null(a);
	return a;
}

/* Copies DIR/from over DIR/to: by rename (new inode) or in place. Either way
 * the mtime is moved to a second that differs from the old one, so that the
 * change is visible even on file systems with coarse timestamps. */
static void replace_file(const char *from, const char *to, int in_place)
{
	char src[512], dst[512], tmp[sizeof(dst) + 8], buf[65536];
	struct timespec times[2];
	struct stat st;
	time_t old = 0;
	ssize_t n;
	int in, out;

	path_of(src, sizeof(src), from);
	path_of(dst, sizeof(dst), to);
	snprintf(tmp, sizeof(tmp), "%s.tmp", dst);
	if (stat(dst, &st) == 0)
		old = st.st_mtim.tv_sec;
	in = open(src, O_RDONLY);
	assert_true(in >= 0);
	out = open(in_place ? dst : tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	close(in);
	times[0].tv_sec = times[1].tv_sec = old + 10;
	times[0].tv_nsec = times[1].tv_nsec = 0;
	assert_int_equal(futimens(out, times), 0);
	assert_int_equal(close(out), 0);
	if (!in_place)
		assert_int_equal(rename(tmp, dst), 0);
	assert_int_equal(stat(dst, &st), 0);
	assert_true(st.st_mtim.tv_sec != old);
}

static void write_file(const char *name, const char *text)
{
	char path[512];
	FILE *fp;

	path_of(path, sizeof(path), name);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
}

/* A changed CRL file applies from the first verification after the check
 * interval (auth.h); wait that long. */
static void crl_settle(void)
{
	usleep((AUTH_CRL_CHECK_MS + 150) * 1000);
}

/* ---- native mode ---- */

static void test_native_good_certificates(void **state)
{
	struct auth *a = native_auth(NULL);

	(void)state;
	expect_verify(a, "rasenmaeher.pem", 0, "rasenmaeher");
	expect_verify(a, "user.pem", 0, "someuser");
	/* a leaf that sends its root along is fine too */
	expect_verify(a, "rasenmaeher-chain.pem", 0, "rasenmaeher");
	auth_free(a);
}

static void test_native_intermediate_must_be_sent(void **state)
{
	struct auth *a = native_auth(NULL);

	(void)state;
	assert_int_equal(fixture_verify("intclient.pem", "ca.pem", "int-ca.pem", 0, 0), X509_V_OK);
	expect_verify(a, "intclient-chain.pem", 0, "rasenmaeher");
	expect_verify(a, "intclient.pem", AUTH_EREFUSED, NULL); /* without its intermediate: no chain */
	auth_free(a);
}

static void test_native_other_ca_refused(void **state)
{
	struct auth *a = native_auth(NULL);

	(void)state;
	assert_int_equal(fixture_verify("othercarasenmaeher.pem", "other-ca.pem", NULL, 0, X509_PURPOSE_SSL_CLIENT),
			 X509_V_OK);
	expect_verify(a, "othercarasenmaeher.pem", AUTH_EREFUSED, NULL);
	auth_free(a);
}

static void test_native_expired_refused(void **state)
{
	struct auth *a = native_auth(NULL);

	(void)state;
	assert_int_equal(
		fixture_verify("expired.pem", "ca.pem", NULL, X509_V_FLAG_NO_CHECK_TIME, X509_PURPOSE_SSL_CLIENT),
		X509_V_OK);
	assert_int_equal(fixture_verify("expired.pem", "ca.pem", NULL, 0, X509_PURPOSE_SSL_CLIENT),
			 X509_V_ERR_CERT_HAS_EXPIRED);
	expect_verify(a, "expired.pem", AUTH_EREFUSED, NULL);
	auth_free(a);
}

static void test_native_eku_rules(void **state)
{
	struct auth *a = native_auth(NULL);

	(void)state;
	/* serveronly is good apart from its purpose */
	assert_int_equal(fixture_verify("serveronly.pem", "ca.pem", NULL, 0, 0), X509_V_OK);
	expect_verify(a, "serveronly.pem", AUTH_EREFUSED, NULL);
	/* no EKU at all is accepted */
	expect_verify(a, "noeku.pem", 0, "rasenmaeher");
	auth_free(a);
}

static void test_native_ca_certificate_refused(void **state)
{
	struct auth *a = native_auth(NULL);

	(void)state;
	/* OpenSSL's client purpose alone would accept it */
	assert_int_equal(fixture_verify("caclient.pem", "ca.pem", NULL, 0, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
	expect_verify(a, "caclient.pem", AUTH_EREFUSED, NULL);
	auth_free(a);
}

static void test_native_revoked_and_crl_reload(void **state)
{
	struct auth *plain = native_auth(NULL), *a;

	(void)state;
	/* without a CRL the revoked certificate is a good one */
	expect_verify(plain, "revoked.pem", 0, "rasenmaeher");
	auth_free(plain);

	replace_file("crl.pem", "current-crl.pem", 0);
	a = native_auth("current-crl.pem");
	expect_verify(a, "revoked.pem", AUTH_EREFUSED, NULL);
	expect_verify(a, "rasenmaeher.pem", 0, "rasenmaeher");
	expect_verify(a, "intclient-chain.pem", 0, "rasenmaeher"); /* the intermediate's CRL */

	/* swapped for the empty CRL (new inode): picked up without a restart */
	replace_file("crl-empty.pem", "current-crl.pem", 0);
	crl_settle();
	expect_verify(a, "revoked.pem", 0, "rasenmaeher");

	/* and back, rewritten in place (same inode): revoked again */
	replace_file("crl.pem", "current-crl.pem", 1);
	crl_settle();
	expect_verify(a, "revoked.pem", AUTH_EREFUSED, NULL);

	/* a broken CRL file keeps the revocations loaded before */
	write_file("current-crl.pem", "-----BEGIN X509 CRL-----\ngarbage\n");
	crl_settle();
	expect_verify(a, "revoked.pem", AUTH_EREFUSED, NULL);
	expect_verify(a, "rasenmaeher.pem", 0, "rasenmaeher");
	/* ... and a fixed file is read again */
	replace_file("crl-empty.pem", "current-crl.pem", 0);
	crl_settle();
	expect_verify(a, "revoked.pem", 0, "rasenmaeher");
	auth_free(a);
}

struct hammer {
	struct auth *a;
	struct chain c;
	int failures, runs;
};

static atomic_int g_hammer_stop;

static void *hammer_run(void *arg)
{
	struct hammer *h = arg;

	for (h->runs = 0; h->runs < 50 || !atomic_load(&g_hammer_stop); h->runs++) {
		char *cn = NULL;

		if (auth_verify_chain(h->a, (const unsigned char *const *)h->c.der, h->c.len, h->c.n, &cn) != 0 ||
		    cn == NULL || strcmp(cn, "rasenmaeher") != 0)
			h->failures++;
		free(cn);
	}
	return NULL;
}

/* Verifications in several threads while the CRL keeps changing (about
 * three swaps in 3 s, given the check interval): every good certificate
 * verifies (and, under ASan, no store is freed while in use). */
static void test_native_concurrent_reload(void **state)
{
	struct hammer h[4];
	pthread_t t[4];
	struct auth *a;

	(void)state;
	replace_file("crl.pem", "hammer-crl.pem", 0);
	a = native_auth("hammer-crl.pem");
	atomic_store(&g_hammer_stop, 0);
	for (int i = 0; i < 4; i++) {
		h[i].a = a;
		h[i].failures = 0;
		chain_load("rasenmaeher.pem", &h[i].c);
		assert_int_equal(pthread_create(&t[i], NULL, hammer_run, &h[i]), 0);
	}
	for (int i = 0; i < 40; i++) {
		replace_file(i % 2 ? "crl.pem" : "crl-empty.pem", "hammer-crl.pem", 0);
		usleep(AUTH_CRL_CHECK_MS * 1000 / 13);
	}
	atomic_store(&g_hammer_stop, 1);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		chain_free(&h[i].c);
		if (h[i].failures != 0)
			fail_msg("thread %d: have %d failed verifications, want 0", i, h[i].failures);
	}
	auth_free(a);
}

static void test_native_bad_input(void **state)
{
	struct auth *a = native_auth(NULL);
	struct chain c;
	unsigned char junk[] = {0x30, 0x03, 0x02, 0x01, 0x01};
	unsigned char *padded;
	const unsigned char *one[1];
	size_t one_len[1];
	char *cn = (char *)"x";

	(void)state;
	one[0] = junk;
	one_len[0] = sizeof(junk);
	assert_int_equal(auth_verify_chain(a, one, one_len, 1, &cn), AUTH_EREFUSED);
	assert_null(cn);

	chain_load("rasenmaeher.pem", &c);
	/* the good certificate with a byte after it */
	padded = malloc(c.len[0] + 1);
	assert_non_null(padded);
	memcpy(padded, c.der[0], c.len[0]);
	padded[c.len[0]] = 0;
	one[0] = padded;
	one_len[0] = c.len[0] + 1;
	cn = (char *)"x";
	assert_int_equal(auth_verify_chain(a, one, one_len, 1, &cn), AUTH_EREFUSED);
	assert_null(cn);
	/* ... and exactly as it is: accepted, so the refusals above are about the bytes */
	one_len[0] = c.len[0];
	assert_int_equal(auth_verify_chain(a, one, one_len, 1, &cn), 0);
	assert_string_equal(cn, "rasenmaeher");
	free(cn);
	free(padded);

	cn = (char *)"x";
	assert_int_equal(auth_verify_chain(a, (const unsigned char *const *)c.der, c.len, 0, &cn), AUTH_EREFUSED);
	assert_null(cn);
	assert_int_equal(auth_verify_chain(NULL, (const unsigned char *const *)c.der, c.len, 1, &cn), AUTH_EREFUSED);
	chain_free(&c);
	auth_free(a);
}

static void test_native_new_errors(void **state)
{
	char cert[512], ca[512], crl[512], missing[512], err[512];
	struct config cfg;
	struct auth *a = (struct auth *)&cfg;

	(void)state;
	path_of(cert, sizeof(cert), "server.pem");
	path_of(ca, sizeof(ca), "ca.pem");
	path_of(crl, sizeof(crl), "crl.pem");
	path_of(missing, sizeof(missing), "no-such-file.pem");
	memset(&cfg, 0, sizeof(cfg));
	cfg.tls_cert_file = cert;

	err[0] = '\0';
	assert_int_equal(auth_new(&cfg, &a, err, sizeof(err)), AUTH_ECONFIG);
	assert_null(a);
	if (strstr(err, "TLS_CLIENT_CA_FILE") == NULL)
		fail_msg("no CA: have \"%s\", want a line naming TLS_CLIENT_CA_FILE", err);

	cfg.tls_client_ca_file = missing;
	err[0] = '\0';
	assert_int_equal(auth_new(&cfg, &a, err, sizeof(err)), AUTH_EFILE);
	if (strstr(err, "TLS_CLIENT_CA_FILE") == NULL || strstr(err, missing) == NULL)
		fail_msg("missing CA: have \"%s\", want TLS_CLIENT_CA_FILE and the path", err);

	cfg.tls_client_ca_file = crl; /* a PEM file without certificates */
	err[0] = '\0';
	assert_int_equal(auth_new(&cfg, &a, err, sizeof(err)), AUTH_EFILE);
	if (strstr(err, "TLS_CLIENT_CA_FILE") == NULL)
		fail_msg("CA file without certificates: have \"%s\"", err);

	cfg.tls_client_ca_file = ca;
	cfg.tls_crl_file = missing;
	err[0] = '\0';
	assert_int_equal(auth_new(&cfg, &a, err, sizeof(err)), AUTH_EFILE);
	if (strstr(err, "TLS_CRL_FILE") == NULL)
		fail_msg("missing CRL: have \"%s\", want a line naming TLS_CRL_FILE", err);

	cfg.tls_crl_file = ca; /* a PEM file without CRLs */
	err[0] = '\0';
	assert_int_equal(auth_new(&cfg, &a, err, sizeof(err)), AUTH_EFILE);
	if (strstr(err, "TLS_CRL_FILE") == NULL)
		fail_msg("CRL file without CRLs: have \"%s\"", err);

	cfg.tls_crl_file = crl;
	assert_int_equal(auth_new(&cfg, &a, err, sizeof(err)), 0);
	auth_free(a);
	auth_free(NULL);
}

/* ---- proxy mode ---- */

static void sa_from(const char *addr, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(addr, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(40000);
		if (inet_pton(AF_INET6, addr, &s6->sin6_addr) != 1)
			fail_msg("bad test address %s", addr);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(40000);
		if (inet_pton(AF_INET, addr, &s4->sin_addr) != 1)
			fail_msg("bad test address %s", addr);
	}
}

struct proxy_case {
	const char *proxies, *peer, *header;
	const char *want; /* CN, or NULL: AUTH_EREFUSED */
};

static const struct proxy_case proxy_cases[] = {
	/* the default list */
	{"127.0.0.1,::1", "127.0.0.1", "CN=rasenmaeher,O=Example", "rasenmaeher"},
	{"127.0.0.1,::1", "::1", "CN=rasenmaeher,O=Example", "rasenmaeher"},
	{"127.0.0.1,::1", "::ffff:127.0.0.1", "CN=rasenmaeher,O=Example", "rasenmaeher"},
	{"127.0.0.1,::1", "192.0.2.1", "CN=rasenmaeher,O=Example", NULL},
	{"127.0.0.1,::1", "::ffff:192.0.2.1", "CN=rasenmaeher,O=Example", NULL},
	{"127.0.0.1,::1", "127.0.0.2", "CN=rasenmaeher", NULL},
	{"127.0.0.1,::1", "::2", "CN=rasenmaeher", NULL},
	{"127.0.0.1,::1", "::", "CN=rasenmaeher", NULL},
	/* the DN itself, from a trusted peer */
	{"127.0.0.1,::1", "127.0.0.1", "O=Example,CN=someuser", "someuser"},
	{"127.0.0.1,::1", "127.0.0.1", "CN=Doe\\, John+UID=7,O=X", "Doe, John"},
	{"127.0.0.1,::1", "127.0.0.1", "2.5.4.3=rasenmaeher", "rasenmaeher"},
	{"127.0.0.1,::1", "127.0.0.1", "CN=\"rasen maeher\"", "rasen maeher"},
	{"127.0.0.1,::1", "127.0.0.1", "CN=rasenmaeher\\00x", NULL},
	{"127.0.0.1,::1", "127.0.0.1", "CN=\"rasenmaeher", NULL},
	{"127.0.0.1,::1", "127.0.0.1", "O=Example", NULL},
	{"127.0.0.1,::1", "127.0.0.1", "CN=", NULL},
	{"127.0.0.1,::1", "127.0.0.1", "", NULL},
	{"127.0.0.1,::1", "127.0.0.1", NULL, NULL},
	/* CIDRs, spaces in the list, v6 ranges */
	{" 10.0.0.0/8 , fd00::/8 ", "10.200.3.4", "CN=rasenmaeher", "rasenmaeher"},
	{" 10.0.0.0/8 , fd00::/8 ", "10.0.0.0", "CN=rasenmaeher", "rasenmaeher"},
	{" 10.0.0.0/8 , fd00::/8 ", "10.255.255.255", "CN=rasenmaeher", "rasenmaeher"},
	{" 10.0.0.0/8 , fd00::/8 ", "::ffff:10.1.2.3", "CN=rasenmaeher", "rasenmaeher"},
	{" 10.0.0.0/8 , fd00::/8 ", "11.0.0.1", "CN=rasenmaeher", NULL},
	{" 10.0.0.0/8 , fd00::/8 ", "9.255.255.255", "CN=rasenmaeher", NULL},
	{" 10.0.0.0/8 , fd00::/8 ", "127.0.0.1", "CN=rasenmaeher", NULL},
	{" 10.0.0.0/8 , fd00::/8 ", "fd12:3456::1", "CN=rasenmaeher", "rasenmaeher"},
	{" 10.0.0.0/8 , fd00::/8 ", "fe80::1", "CN=rasenmaeher", NULL},
	{" 10.0.0.0/8 , fd00::/8 ", "::a00:1", "CN=rasenmaeher", NULL}, /* not v4-mapped */
	{"172.16.0.0/12", "172.31.255.1", "CN=rasenmaeher", "rasenmaeher"},
	{"172.16.0.0/12", "172.32.0.1", "CN=rasenmaeher", NULL},
	{"172.16.0.0/12", "172.15.255.255", "CN=rasenmaeher", NULL},
	{"192.0.2.128/25", "192.0.2.200", "CN=rasenmaeher", "rasenmaeher"},
	{"192.0.2.128/25", "192.0.2.1", "CN=rasenmaeher", NULL},
	{"2001:db8::/33", "2001:db8:7fff::1", "CN=rasenmaeher", "rasenmaeher"},
	{"2001:db8::/33", "2001:db8:8000::1", "CN=rasenmaeher", NULL},
	{"0.0.0.0/0", "203.0.113.9", "CN=rasenmaeher", "rasenmaeher"},
	{"0.0.0.0/0", "2001:db8::1", "CN=rasenmaeher", NULL},
	/* an IPv4-mapped entry means the IPv4 range */
	{"::ffff:10.0.0.0/104", "10.9.8.7", "CN=rasenmaeher", "rasenmaeher"},
	{"::ffff:10.0.0.0/104", "11.9.8.7", "CN=rasenmaeher", NULL},
	/* nobody */
	{"", "127.0.0.1", "CN=rasenmaeher", NULL},
};

static void test_proxy_table(void **state)
{
	int failures = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(proxy_cases) / sizeof(proxy_cases[0]); i++) {
		const struct proxy_case *c = &proxy_cases[i];
		struct sockaddr_storage ss;
		struct auth *a = proxy_auth(c->proxies);
		char *cn = (char *)"not touched";
		int rc;

		sa_from(c->peer, &ss);
		rc = auth_proxy_cn(a, (struct sockaddr *)&ss, c->header, &cn);
		if (c->want == NULL && (rc != AUTH_EREFUSED || cn != NULL)) {
			print_error("proxies \"%s\", peer %s, header \"%s\": have rc %d cn \"%s\", "
				    "want AUTH_EREFUSED and no CN\n",
				    c->proxies, c->peer, c->header ? c->header : "(none)", rc, cn ? cn : "(null)");
			failures++;
		} else if (c->want != NULL && (rc != 0 || cn == NULL || strcmp(cn, c->want) != 0)) {
			print_error("proxies \"%s\", peer %s, header \"%s\": have rc %d cn \"%s\", "
				    "want 0 \"%s\"\n",
				    c->proxies, c->peer, c->header ? c->header : "(none)", rc, cn ? cn : "(null)",
				    c->want);
			failures++;
		}
		if (rc == 0)
			free(cn);
		auth_free(a);
	}
	assert_int_equal(failures, 0);
}

static void test_proxy_other_peers(void **state)
{
	struct auth *a = proxy_auth("127.0.0.1,::1");
	struct sockaddr_un su;
	struct sockaddr_storage ss;
	struct chain c;
	char *cn = (char *)"x";

	(void)state;
	memset(&su, 0, sizeof(su));
	su.sun_family = AF_UNIX;
	assert_int_equal(auth_proxy_cn(a, (struct sockaddr *)&su, "CN=rasenmaeher", &cn), AUTH_EREFUSED);
	assert_null(cn);
	assert_int_equal(auth_proxy_cn(a, NULL, "CN=rasenmaeher", &cn), AUTH_EREFUSED);
	/* a plain-HTTP listener has no chain to believe */
	chain_load("rasenmaeher.pem", &c);
	assert_int_equal(auth_verify_chain(a, (const unsigned char *const *)c.der, c.len, c.n, &cn), AUTH_EREFUSED);
	assert_null(cn);
	chain_free(&c);
	auth_free(a);

	/* in native mode the header is never believed, even from loopback */
	a = native_auth(NULL);
	sa_from("127.0.0.1", &ss);
	assert_int_equal(auth_proxy_cn(a, (struct sockaddr *)&ss, "CN=rasenmaeher", &cn), AUTH_EREFUSED);
	assert_null(cn);
	auth_free(a);
}

static void test_proxy_new_errors(void **state)
{
	static const char *bad[] = {
		"10.0.0.0/33",      "::1/129",       "1.2.3.4/", "1.2.3.4/-1", "1.2.3.4/8x", "not-an-ip",
		"127.0.0.1,,bogus", "127.0.0.1/8/8", "1.2.3",    "[::1]",      "1.2.3.4 5",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char err[512] = "";
		struct config cfg;
		struct auth *a = NULL;

		memset(&cfg, 0, sizeof(cfg));
		cfg.mtls_trusted_proxies = (char *)bad[i];
		if (auth_new(&cfg, &a, err, sizeof(err)) != AUTH_ECONFIG || a != NULL)
			fail_msg("MTLS_TRUSTED_PROXIES=\"%s\": have success, want AUTH_ECONFIG", bad[i]);
		if (strstr(err, "MTLS_TRUSTED_PROXIES") == NULL)
			fail_msg("MTLS_TRUSTED_PROXIES=\"%s\": have \"%s\", want a line naming "
				 "the variable",
				 bad[i], err);
	}
}

/* ---- the rule table ---- */

struct decide_case {
	enum auth_need need;
	const char *cn, *certcn;
	int want;
};

static const struct decide_case decide_cases[] = {
	{AUTH_PUBLIC, NULL, "rasenmaeher", 0},
	{AUTH_PUBLIC, "someuser", "rasenmaeher", 0},
	{AUTH_PUBLIC, NULL, NULL, 0},
	{AUTH_ANY_CLIENT, NULL, "rasenmaeher", 403},
	{AUTH_ANY_CLIENT, "someuser", "rasenmaeher", 0},
	{AUTH_ANY_CLIENT, "rasenmaeher", "rasenmaeher", 0},
	{AUTH_RASENMAEHER, "rasenmaeher", "rasenmaeher", 0},
	{AUTH_RASENMAEHER, "rm.example.org", "rm.example.org", 0},
	{AUTH_RASENMAEHER, NULL, "rasenmaeher", 403},
	{AUTH_RASENMAEHER, "someuser", "rasenmaeher", 403},
	{AUTH_RASENMAEHER, "Rasenmaeher", "rasenmaeher", 403},
	{AUTH_RASENMAEHER, "rasenmaeher ", "rasenmaeher", 403},
	{AUTH_RASENMAEHER, "rasenmaeherx", "rasenmaeher", 403},
	{AUTH_RASENMAEHER, "rasen", "rasenmaeher", 403},
	{AUTH_RASENMAEHER, "rasenmaeher", NULL, 403},
	{AUTH_RASENMAEHER, "rasenmaeher", "rm.example.org", 403},
	{(enum auth_need)42, "rasenmaeher", "rasenmaeher", 403},
};

static void test_decide_table(void **state)
{
	static const char *names[] = {"AUTH_PUBLIC", "AUTH_ANY_CLIENT", "AUTH_RASENMAEHER"};
	int failures = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(decide_cases) / sizeof(decide_cases[0]); i++) {
		const struct decide_case *c = &decide_cases[i];
		int have = auth_decide(c->need, c->cn, c->certcn);

		if (have != c->want) {
			print_error("auth_decide(%s, %s, %s): have %d, want %d\n",
				    (unsigned)c->need < 3 ? names[c->need] : "unknown", c->cn ? c->cn : "NULL",
				    c->certcn ? c->certcn : "NULL", have, c->want);
			failures++;
		}
	}
	assert_int_equal(failures, 0);
}

/* ---- fixture ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int make_pki(void **state)
{
	const char *src = getenv("MATRIXRMAPI_SRC");
	char script[512];
	pid_t pid;
	int status;

	(void)state;
	snprintf(script, sizeof(script), "%s/deploy/mkpki.sh", src ? src : "..");
	snprintf(g_dir, sizeof(g_dir), "%s/matrixrmapi-auth-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(g_dir) == NULL) {
		fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid == -1)
		return -1;
	if (pid == 0) {
		execlp("bash", "bash", script, g_dir, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "%s %s failed\n", script, g_dir);
		return -1;
	}
	return 0;
}

static int remove_pki(void **state)
{
	(void)state;
	if (g_dir[0] != '\0')
		nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_native_good_certificates),
		cmocka_unit_test(test_native_intermediate_must_be_sent),
		cmocka_unit_test(test_native_other_ca_refused),
		cmocka_unit_test(test_native_expired_refused),
		cmocka_unit_test(test_native_eku_rules),
		cmocka_unit_test(test_native_ca_certificate_refused),
		cmocka_unit_test(test_native_revoked_and_crl_reload),
		cmocka_unit_test(test_native_concurrent_reload),
		cmocka_unit_test(test_native_bad_input),
		cmocka_unit_test(test_native_new_errors),
		cmocka_unit_test(test_proxy_table),
		cmocka_unit_test(test_proxy_other_peers),
		cmocka_unit_test(test_proxy_new_errors),
		cmocka_unit_test(test_decide_table),
	};

	return cmocka_run_group_tests(tests, make_pki, remove_pki);
}
