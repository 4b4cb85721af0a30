/* auth: who is calling; see auth.h. Invariants:
 *  - An auth object is in exactly one mode. In native mode no header is ever
 *    believed (auth_proxy_cn fails); in proxy mode no chain is (the listener
 *    is plain HTTP, so there is none to check).
 *  - Native mode keeps the CA certificates and builds an X509_STORE from them
 *    plus the current CRLs. TLS_CRL_FILE is looked at (stat) at most once per
 *    AUTH_CRL_CHECK_MS, by whichever verification first finds the interval
 *    over; a changed file (device, inode, size or mtime) gives a new store,
 *    swapped in atomically. No verification takes a lock or waits for the
 *    check: each counts itself in `readers` while it loads the pointer and
 *    takes its own reference, and a replaced store is released only once
 *    `readers` was seen at zero after the swap, so a swap never frees a store
 *    in use. A CRL file that cannot be read or parsed leaves the previous
 *    store in place (its revocations still apply, and an expired CRL fails
 *    closed in OpenSSL) and is tried again when the file changes.
 *  - A leaf's CN is its most specific one (the last in the certificate, the
 *    first in an RFC 4514 string), so both modes name the same attribute. */
#include "auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "clock.h"
#include "config.h"
#include "dn.h"
#include "log.h"

/* More certificates than a client could sensibly send is an attack. */
#define AUTH_MAX_CHAIN 8

struct auth_net {
	int family; /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix;
};

struct auth_file_id {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	int valid;
};

struct auth {
	int native;
	/* native mode */
	STACK_OF(X509) * cas;
	char *crl_path;
	_Atomic(X509_STORE *) store; /* the current store; see the top comment */
	atomic_int readers;          /* verifications between loading and up_ref */
	atomic_llong next_check_ms;  /* monotonic time of the next CRL stat */
	atomic_ulong generation;     /* bumped at every store swap */
	pthread_mutex_t lock;        /* the checker: the fields below */
	X509_STORE **retired;        /* replaced, not yet released */
	size_t nretired, capretired;
	struct auth_file_id crl_id;  /* the file the store's CRLs came from */
	struct auth_file_id crl_bad; /* last version that failed to load */
	int crl_missing;             /* reported as missing; not again */
	/* proxy mode */
	struct auth_net *nets;
	size_t nnets;
};

static const struct errtext auth_errors[] = {
	{AUTH_ECONFIG, "the client-authentication settings are not usable"},
	{AUTH_EFILE, "a CA or CRL file cannot be read"},
	{AUTH_ENOMEM, "out of memory setting up client authentication"},
	{AUTH_ESTORE, "the certificate store cannot be built"},
	{AUTH_EREFUSED, "no verified client"},
};

const char *auth_strerror(int code)
{
	return ERRTEXT_LOOKUP(auth_errors, code);
}

/* Writes the particulars to err and returns code. */
static int auth_fail(char *err, size_t errlen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int auth_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

static void auth_file_id_of(const struct stat *st, struct auth_file_id *id)
{
	id->dev = st->st_dev;
	id->ino = st->st_ino;
	id->size = st->st_size;
	id->mtime = st->st_mtim;
	id->valid = 1;
}

static int auth_file_id_eq(const struct auth_file_id *a, const struct auth_file_id *b)
{
	return a->valid && b->valid && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* Reads every certificate (want_crls 0) or every CRL (want_crls 1) from a PEM
 * file. *id, when given, identifies the version of the file that was read. */
static int auth_read_pem(const char *path, const char *var, int want_crls, STACK_OF(X509) * *certs,
			 STACK_OF(X509_CRL) * *crls, struct auth_file_id *id, char *err, size_t errlen)
{
	STACK_OF(X509_INFO) *infos = NULL;
	FILE *fp = NULL;
	struct stat st;
	int rc = AUTH_EFILE, count = 0;

	fp = fopen(path, "r");
	if (fp == NULL) {
		rc = auth_fail(err, errlen, AUTH_EFILE, "%s: cannot open %s: %s", var, path, strerror(errno));
		goto done;
	}
	if (fstat(fileno(fp), &st) == -1) {
		rc = auth_fail(err, errlen, AUTH_EFILE, "%s: cannot stat %s: %s", var, path, strerror(errno));
		goto done;
	}
	infos = PEM_X509_INFO_read(fp, NULL, NULL, NULL);
	if (infos == NULL) {
		rc = auth_fail(err, errlen, AUTH_EFILE, "%s: %s is not a PEM file", var, path);
		goto done;
	}
	if (want_crls)
		*crls = sk_X509_CRL_new_null();
	else
		*certs = sk_X509_new_null();
	if (want_crls ? *crls == NULL : *certs == NULL) {
		rc = auth_fail(err, errlen, AUTH_ENOMEM, "%s: out of memory", var);
		goto done;
	}
	for (int i = 0; i < sk_X509_INFO_num(infos); i++) {
		X509_INFO *info = sk_X509_INFO_value(infos, i);

		if (want_crls && info->crl != NULL) {
			if (sk_X509_CRL_push(*crls, info->crl) <= 0) {
				rc = auth_fail(err, errlen, AUTH_ENOMEM, "%s: out of memory", var);
				goto done;
			}
			info->crl = NULL;
			count++;
		} else if (!want_crls && info->x509 != NULL) {
			if (sk_X509_push(*certs, info->x509) <= 0) {
				rc = auth_fail(err, errlen, AUTH_ENOMEM, "%s: out of memory", var);
				goto done;
			}
			info->x509 = NULL;
			count++;
		}
	}
	if (count == 0) {
		rc = auth_fail(err, errlen, AUTH_EFILE, "%s: no %s in %s", var, want_crls ? "CRL" : "certificate",
			       path);
		goto done;
	}
	if (id != NULL)
		auth_file_id_of(&st, id);
	rc = 0;
done:
	if (rc != 0) {
		if (want_crls && *crls != NULL) {
			sk_X509_CRL_pop_free(*crls, X509_CRL_free);
			*crls = NULL;
		} else if (!want_crls && *certs != NULL) {
			sk_X509_pop_free(*certs, X509_free);
			*certs = NULL;
		}
	}
	sk_X509_INFO_pop_free(infos, X509_INFO_free);
	if (fp != NULL)
		(void)fclose(fp); /* read only: nothing to lose */
	ERR_clear_error();
	return rc;
}

/* A store of the CA certificates and, when crls is given, those CRLs with
 * leaf revocation checking switched on. */
static int auth_build_store(STACK_OF(X509) * cas, STACK_OF(X509_CRL) * crls, X509_STORE **out)
{
	X509_STORE *store = NULL;
	int rc = -1;

	store = X509_STORE_new();
	if (store == NULL)
		goto done;
	for (int i = 0; i < sk_X509_num(cas); i++)
		if (X509_STORE_add_cert(store, sk_X509_value(cas, i)) != 1)
			goto done;
	if (crls != NULL) {
		for (int i = 0; i < sk_X509_CRL_num(crls); i++)
			if (X509_STORE_add_crl(store, sk_X509_CRL_value(crls, i)) != 1)
				goto done;
		/* Every certificate of the chain, not only the leaf (as nginx
		 * does with ssl_crl): an intermediate the root revoked is out. */
		if (X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL) != 1)
			goto done;
	}
	*out = store;
	store = NULL;
	rc = 0;
done:
	X509_STORE_free(store);
	ERR_clear_error();
	return rc;
}

/* Called with a->lock held: swaps in a new store when the CRL file changed. */
static void auth_refresh_crl_locked(struct auth *a)
{
	STACK_OF(X509_CRL) *crls = NULL;
	X509_STORE *store = NULL;
	struct auth_file_id now = {0}, read_id = {0};
	struct stat st;
	char err[512];

	if (a->crl_path == NULL)
		return;
	if (stat(a->crl_path, &st) == -1) {
		if (!a->crl_missing)
			log_warn("auth: TLS_CRL_FILE %s, keeping the CRL loaded before", a->crl_path);
		a->crl_missing = 1;
		return;
	}
	a->crl_missing = 0;
	auth_file_id_of(&st, &now);
	if (auth_file_id_eq(&now, &a->crl_id) || auth_file_id_eq(&now, &a->crl_bad))
		return;
	if (auth_read_pem(a->crl_path, "TLS_CRL_FILE", 1, NULL, &crls, &read_id, err, sizeof(err)) != 0 ||
	    auth_build_store(a->cas, crls, &store) == -1) {
		if (crls != NULL) /* the file read, the store did not build */
			snprintf(err, sizeof(err), "TLS_CRL_FILE: cannot use the CRLs in %s", a->crl_path);
		log_warnx("auth: %s; keeping the CRL loaded before", err);
		a->crl_bad = now;
		goto done;
	}
	if (a->nretired == a->capretired) {
		size_t ncap = a->capretired ? a->capretired * 2 : 4;
		/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers, sized by its element */
		X509_STORE **n = realloc(a->retired, ncap * sizeof(*n));

		if (n == NULL) {
			log_warnx("auth: out of memory reloading TLS_CRL_FILE %s; keeping the CRL "
				  "loaded before",
				  a->crl_path);
			goto done;
		}
		a->retired = n;
		a->capretired = ncap;
	}
	a->retired[a->nretired++] = atomic_exchange(&a->store, store);
	atomic_fetch_add(&a->generation, 1);
	store = NULL;
	a->crl_id = read_id;
	a->crl_bad.valid = 0;
	log_info("auth: reloaded TLS_CRL_FILE %s (%d CRL%s)", a->crl_path, sk_X509_CRL_num(crls),
		 sk_X509_CRL_num(crls) == 1 ? "" : "s");
done:
	X509_STORE_free(store);
	sk_X509_CRL_pop_free(crls, X509_CRL_free);
}

/* Called with a->lock held: releases replaced stores once no verification
 * can still be about to take a reference to one. */
static void auth_release_retired_locked(struct auth *a)
{
	if (a->nretired == 0 || atomic_load(&a->readers) != 0)
		return;
	while (a->nretired > 0)
		X509_STORE_free(a->retired[--a->nretired]);
}

/* At most once per AUTH_CRL_CHECK_MS, one caller looks at the CRL file;
 * the others go on with the current store. */
static void auth_maybe_check_crl(struct auth *a)
{
	int64_t now;

	if (a->crl_path == NULL)
		return;
	now = clock_mono_coarse_ms();
	if (now < atomic_load(&a->next_check_ms) || pthread_mutex_trylock(&a->lock) != 0)
		return;
	if (now >= atomic_load(&a->next_check_ms)) {
		auth_refresh_crl_locked(a);
		atomic_store(&a->next_check_ms, now + AUTH_CRL_CHECK_MS);
	}
	auth_release_retired_locked(a);
	pthread_mutex_unlock(&a->lock);
}

unsigned long auth_generation(struct auth *a)
{
	if (a == NULL || !a->native)
		return 0;
	auth_maybe_check_crl(a);
	return atomic_load(&a->generation);
}

/* The current store with a reference for the caller (X509_STORE_free it). */
static X509_STORE *auth_store_get(struct auth *a)
{
	X509_STORE *store;

	auth_maybe_check_crl(a);
	atomic_fetch_add(&a->readers, 1);
	store = atomic_load(&a->store);
	if (store != NULL && X509_STORE_up_ref(store) != 1)
		store = NULL;
	atomic_fetch_sub(&a->readers, 1);
	return store;
}

static int auth_new_native(const struct config *cfg, struct auth *a, char *err, size_t errlen)
{
	STACK_OF(X509_CRL) *crls = NULL;
	X509_STORE *store = NULL;
	int rc = AUTH_ECONFIG;

	a->native = 1;
	if (cfg->tls_client_ca_file == NULL || cfg->tls_client_ca_file[0] == '\0') {
		rc = auth_fail(err, errlen, AUTH_ECONFIG, "TLS_CLIENT_CA_FILE: required when TLS_CERT_FILE is set");
		goto done;
	}
	if ((rc = auth_read_pem(cfg->tls_client_ca_file, "TLS_CLIENT_CA_FILE", 0, &a->cas, NULL, NULL, err, errlen)) !=
	    0)
		goto done;
	if (cfg->tls_crl_file != NULL && cfg->tls_crl_file[0] != '\0') {
		a->crl_path = strdup(cfg->tls_crl_file);
		if (a->crl_path == NULL) {
			rc = auth_fail(err, errlen, AUTH_ENOMEM, "TLS_CRL_FILE: out of memory");
			goto done;
		}
		if ((rc = auth_read_pem(a->crl_path, "TLS_CRL_FILE", 1, NULL, &crls, &a->crl_id, err, errlen)) != 0)
			goto done;
	}
	if (auth_build_store(a->cas, crls, &store) == -1) {
		rc = auth_fail(err, errlen, AUTH_ESTORE, "%s: cannot build the certificate store",
			       crls ? "TLS_CRL_FILE" : "TLS_CLIENT_CA_FILE");
		goto done;
	}
	atomic_store(&a->store, store);
	atomic_store(&a->next_check_ms, clock_mono_coarse_ms() + AUTH_CRL_CHECK_MS);
	rc = 0;
done:
	sk_X509_CRL_pop_free(crls, X509_CRL_free);
	return rc;
}

/* One MTLS_TRUSTED_PROXIES entry: an address or address/prefix. An IPv4-mapped
 * IPv6 entry is stored as IPv4, as peers are. */
static int auth_parse_net(const char *s, size_t len, struct auth_net *out)
{
	char buf[INET6_ADDRSTRLEN + 8];
	struct in6_addr v6;
	char *slash;
	unsigned max;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	slash = strchr(buf, '/');
	if (slash != NULL)
		*slash++ = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		return -1;
	}
	out->prefix = max;
	if (slash != NULL) {
		unsigned long n = 0;

		if (*slash == '\0' || strlen(slash) > 3)
			return -1;
		for (const char *p = slash; *p; p++) {
			if (*p < '0' || *p > '9')
				return -1;
			n = n * 10 + (unsigned long)(*p - '0');
		}
		if (n > max)
			return -1;
		out->prefix = (unsigned)n;
	}
	memcpy(&v6, out->addr, sizeof(v6));
	if (out->family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&v6) && out->prefix >= 96) {
		memmove(out->addr, out->addr + 12, 4);
		memset(out->addr + 4, 0, 12);
		out->family = AF_INET;
		out->prefix -= 96;
	}
	return 0;
}

static int auth_new_proxy(const struct config *cfg, struct auth *a, char *err, size_t errlen)
{
	const char *list = cfg->mtls_trusted_proxies ? cfg->mtls_trusted_proxies : "";
	const char *p = list;
	size_t cap = 1;

	for (const char *q = list; *q; q++)
		if (*q == ',')
			cap++;
	a->nets = calloc(cap, sizeof(*a->nets));
	if (a->nets == NULL)
		return auth_fail(err, errlen, AUTH_ENOMEM, "MTLS_TRUSTED_PROXIES: out of memory");
	for (;;) {
		const char *end = strchr(p, ',');
		const char *stop = end ? end : p + strlen(p);

		while (p < stop && (*p == ' ' || *p == '\t'))
			p++;
		while (stop > p && (stop[-1] == ' ' || stop[-1] == '\t'))
			stop--;
		if (stop > p && auth_parse_net(p, (size_t)(stop - p), &a->nets[a->nnets++]) == -1)
			return auth_fail(err, errlen, AUTH_ECONFIG,
					 "MTLS_TRUSTED_PROXIES: \"%.*s\" is not an IP address or "
					 "address/prefix",
					 (int)(stop - p > 64 ? 64 : stop - p), p);
		if (end == NULL)
			break;
		p = end + 1;
	}
	if (a->nnets == 0)
		log_warnx("auth: MTLS_TRUSTED_PROXIES is empty; no client will be recognised");
	return 0;
}

int auth_new(const struct config *cfg, struct auth **out, char *err, size_t errlen)
{
	struct auth *a = NULL;
	int rc = AUTH_ECONFIG;

	if (out == NULL || cfg == NULL)
		return auth_fail(err, errlen, AUTH_ECONFIG, "auth: no configuration");
	*out = NULL;
	a = calloc(1, sizeof(*a));
	if (a == NULL) {
		rc = auth_fail(err, errlen, AUTH_ENOMEM, "auth: out of memory");
		goto done;
	}
	if (pthread_mutex_init(&a->lock, NULL) != 0) {
		free(a);
		a = NULL;
		rc = auth_fail(err, errlen, AUTH_ENOMEM, "auth: cannot create a mutex");
		goto done;
	}
	if (cfg->tls_cert_file != NULL && cfg->tls_cert_file[0] != '\0')
		rc = auth_new_native(cfg, a, err, errlen);
	else
		rc = auth_new_proxy(cfg, a, err, errlen);
	if (rc != 0)
		goto done;
	*out = a;
	a = NULL;
done:
	auth_free(a);
	return rc;
}

void auth_free(struct auth *a)
{
	if (a == NULL)
		return;
	X509_STORE_free(atomic_load(&a->store));
	while (a->nretired > 0)
		X509_STORE_free(a->retired[--a->nretired]);
	free(a->retired);
	sk_X509_pop_free(a->cas, X509_free);
	free(a->crl_path);
	free(a->nets);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

/* DER -> X509, refusing trailing bytes. */
static X509 *auth_d2i(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	X509 *x;

	if (der == NULL || len == 0 || len > 65536)
		return NULL;
	x = d2i_X509(NULL, &p, (long)len);
	if (x != NULL && p != der + len) {
		X509_free(x);
		x = NULL;
	}
	return x;
}

/* The leaf's most specific CN as a C string; -1 when absent, empty, or
 * containing a NUL byte. */
static int auth_leaf_cn(X509 *x, char **out)
{
	const X509_NAME *name = X509_get_subject_name(x);
	unsigned char *utf8 = NULL;
	int idx = -1, last = -1, len, rc = -1;

	while ((idx = X509_NAME_get_index_by_NID(name, NID_commonName, idx)) >= 0)
		last = idx;
	if (last < 0)
		goto done;
	len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, last)));
	if (len <= 0 || memchr(utf8, '\0', (size_t)len) != NULL)
		goto done;
	*out = strndup((const char *)utf8, (size_t)len);
	if (*out == NULL)
		goto done;
	rc = 0;
done:
	OPENSSL_free(utf8);
	return rc;
}

/* The subject as RFC 2253 text (non-ASCII escaped) for log lines. */
static void auth_subject_text(X509 *x, char *buf, size_t len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int n;

	snprintf(buf, len, "?");
	if (bio == NULL)
		return;
	if (X509_NAME_print_ex(bio, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0) {
		n = BIO_read(bio, buf, (int)len - 1);
		buf[n > 0 ? n : 0] = '\0';
	}
	BIO_free(bio);
}

#define AUTH_SECURITY_LEVEL 2

int auth_verify_chain(struct auth *a, const unsigned char *const *der, const size_t *der_len, size_t n, char **cn_out)
{
	STACK_OF(X509) *untrusted = NULL;
	X509_STORE_CTX *ctx = NULL;
	X509_STORE *store = NULL;
	X509 *leaf = NULL;
	const char *why = NULL;
	char subject[256];
	int rc = AUTH_EREFUSED;

	if (cn_out == NULL)
		return AUTH_EREFUSED;
	*cn_out = NULL;
	if (a == NULL || !a->native || der == NULL || der_len == NULL || n == 0 || n > AUTH_MAX_CHAIN)
		goto done;
	leaf = auth_d2i(der[0], der_len[0]);
	if (leaf == NULL) {
		log_info("auth: client certificate is not valid DER");
		goto done;
	}
	untrusted = sk_X509_new_null();
	if (untrusted == NULL)
		goto done;
	for (size_t i = 1; i < n; i++) {
		X509 *x = auth_d2i(der[i], der_len[i]);

		if (x == NULL || sk_X509_push(untrusted, x) <= 0) {
			X509_free(x);
			why = "an intermediate certificate is not valid DER";
			goto done;
		}
	}
	store = auth_store_get(a);
	ctx = X509_STORE_CTX_new();
	if (store == NULL || ctx == NULL || X509_STORE_CTX_init(ctx, store, leaf, untrusted) != 1 ||
	    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) != 1) {
		why = "cannot set up verification";
		goto done;
	}
	/* Security level 2 for the whole chain: 112-bit keys at least (RSA
	 * 2048, P-256), and no SHA-1 or MD5 signatures. */
	X509_VERIFY_PARAM_set_auth_level(X509_STORE_CTX_get0_param(ctx), AUTH_SECURITY_LEVEL);
	if (X509_verify_cert(ctx) != 1) {
		why = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
		goto done;
	}
	/* The purpose check above covers these; they are the rules, so say them. */
	if ((X509_get_extension_flags(leaf) & EXFLAG_XKUSAGE) &&
	    !(X509_get_extended_key_usage(leaf) & XKU_SSL_CLIENT)) {
		why = "extended key usage lacks clientAuth";
		goto done;
	}
	if (X509_check_ca(leaf) != 0) {
		why = "a CA certificate is not a client certificate";
		goto done;
	}
	if (auth_leaf_cn(leaf, cn_out) == -1) {
		why = "no usable subject CN";
		goto done;
	}
	rc = 0;
done:
	if (rc != 0 && why != NULL && leaf != NULL) {
		auth_subject_text(leaf, subject, sizeof(subject));
		log_info("auth: client certificate \"%s\" rejected: %s", subject, why);
	}
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	sk_X509_pop_free(untrusted, X509_free);
	X509_free(leaf);
	ERR_clear_error();
	return rc;
}

/* The peer's address, IPv4-mapped IPv6 turned into IPv4; -1 for other families. */
static int auth_peer_addr(const struct sockaddr *peer, int *family, unsigned char addr[16])
{
	if (peer->sa_family == AF_INET) {
		struct sockaddr_in sin;

		memcpy(&sin, peer, sizeof(sin));
		*family = AF_INET;
		memcpy(addr, &sin.sin_addr, 4);
		return 0;
	}
	if (peer->sa_family == AF_INET6) {
		struct sockaddr_in6 sin6;

		memcpy(&sin6, peer, sizeof(sin6));
		if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) {
			*family = AF_INET;
			memcpy(addr, sin6.sin6_addr.s6_addr + 12, 4);
		} else {
			*family = AF_INET6;
			memcpy(addr, sin6.sin6_addr.s6_addr, 16);
		}
		return 0;
	}
	return -1;
}

static int auth_prefix_match(const unsigned char *a, const unsigned char *b, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;

	if (memcmp(a, b, whole) != 0)
		return 0;
	if (rest == 0)
		return 1;
	return ((a[whole] ^ b[whole]) & (0xff << (8 - rest)) & 0xff) == 0;
}

int auth_trusted_proxy(const struct auth *a, const struct sockaddr *peer)
{
	unsigned char addr[16];
	int family;

	if (a == NULL || a->native || peer == NULL || auth_peer_addr(peer, &family, addr) == -1)
		return 0;
	for (size_t i = 0; i < a->nnets; i++)
		if (a->nets[i].family == family && auth_prefix_match(a->nets[i].addr, addr, a->nets[i].prefix))
			return 1;
	return 0;
}

int auth_proxy_cn(struct auth *a, const struct sockaddr *peer, const char *dn_header, char **cn_out)
{
	struct dn dn = {NULL, 0};
	const char *cn;
	int rc = AUTH_EREFUSED;

	if (cn_out == NULL)
		return AUTH_EREFUSED;
	*cn_out = NULL;
	if (a == NULL || a->native || dn_header == NULL || !auth_trusted_proxy(a, peer))
		goto done;
	if (dn_parse(dn_header, &dn) == -1) {
		log_info("auth: client DN header from a trusted proxy does not parse");
		goto done;
	}
	cn = dn_get(&dn, "CN");
	if (cn == NULL || cn[0] == '\0')
		goto done;
	*cn_out = strdup(cn);
	if (*cn_out == NULL)
		goto done;
	rc = 0;
done:
	dn_free(&dn);
	return rc;
}

int auth_decide(enum auth_need need, const char *cn, const char *certcn)
{
	switch (need) {
	case AUTH_PUBLIC:
		return 0;
	case AUTH_ANY_CLIENT:
		return cn != NULL ? 0 : 403;
	case AUTH_RASENMAEHER:
	case AUTH_RASENMAEHER_DIRECT:
		return cn != NULL && certcn != NULL && strcmp(cn, certcn) == 0 ? 0 : 403;
	}
	return 403;
}
