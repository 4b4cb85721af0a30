/* auth: who is calling. One decision function (auth_decide) serves both modes:
 *  - native mutual TLS: the peer chain (DER, leaf first) from the GnuTLS
 *    session is verified with OpenSSL against TLS_CLIENT_CA_FILE and, when set,
 *    TLS_CRL_FILE (looked at no more than once per AUTH_CRL_CHECK_MS, re-read
 *    when its inode, mtime or size changed): dates, chain,
 *    revocation, and extended key usage clientAuth where the EKU is present.
 *    A certificate that does not verify counts as no certificate.
 *  - plain HTTP behind a proxy: the DN header is believed only when the peer
 *    address is in MTLS_TRUSTED_PROXIES (addresses or CIDRs, v4 and v6; an
 *    IPv4-mapped IPv6 peer counts as its IPv4 address).
 * An auth object serves one mode (native when cfg->tls_cert_file is set): in
 * native mode auth_proxy_cn always fails, in proxy mode auth_verify_chain does.
 * A client without a non-empty CN counts as no client. The CN is the most
 * specific one (the last in the certificate, the first in the DN string).
 * Thread-safe: HTTP worker threads call it concurrently, without a lock. */
#pragma once
#include <stddef.h>
#include <sys/socket.h>

#include "errtext.h"

struct config;
struct auth;

/* AUTH_RASENMAEHER_DIRECT: Rasenmaeher's CN, and not a request a user made
 * through RM's product proxy (api.c checks the proxy marker). */
enum auth_need { AUTH_PUBLIC, AUTH_ANY_CLIENT, AUTH_RASENMAEHER, AUTH_RASENMAEHER_DIRECT };

/* A changed TLS_CRL_FILE applies to verifications at most this much later. */
#define AUTH_CRL_CHECK_MS 1000

enum {
	AUTH_ECONFIG = ERRTEXT_AUTH - 1,  /* a setting is missing or does not parse */
	AUTH_EFILE = ERRTEXT_AUTH - 2,    /* a CA or CRL file cannot be read, or holds none */
	AUTH_ENOMEM = ERRTEXT_AUTH - 3,   /* out of memory (or no mutex) */
	AUTH_ESTORE = ERRTEXT_AUTH - 4,   /* OpenSSL would not build the certificate store */
	AUTH_EREFUSED = ERRTEXT_AUTH - 5, /* no verified client: the chain or the proxy's DN is not believed */
};

/* The text for an AUTH_E* code. */
const char *auth_strerror(int code);

/* Loads CA/CRL (native mode) or parses the trusted proxy list. Returns 0 or
 * an AUTH_E* code with a one-line reason in err naming the variable. */
int auth_new(const struct config *cfg, struct auth **out, char *err, size_t errlen);
void auth_free(struct auth *a);

/* Native mode: verifies the chain; on success *cn_out is the leaf's subject CN
 * (malloc'd, caller frees) and 0 is returned; otherwise AUTH_EREFUSED, *cn_out
 * NULL. */
int auth_verify_chain(struct auth *a, const unsigned char *const *der, const size_t *der_len, size_t n, char **cn_out);

/* Native mode: a number that changes whenever the CA/CRL store changes (it
 * looks at the CRL file as auth_verify_chain does), so a caller may keep a
 * verified chain's CN for as long as the number stays the same. */
unsigned long auth_generation(struct auth *a);

/* Proxy mode: if peer is a trusted proxy and dn_header parses, *cn_out is its
 * CN (malloc'd) and 0 is returned; otherwise AUTH_EREFUSED, *cn_out NULL. */
int auth_proxy_cn(struct auth *a, const struct sockaddr *peer, const char *dn_header, char **cn_out);

/* 1 when peer is one of MTLS_TRUSTED_PROXIES (header mode), else 0. */
int auth_trusted_proxy(const struct auth *a, const struct sockaddr *peer);

/* The rule table: 0 if a client with cn (NULL: no verified client) may call an
 * endpoint needing `need`, else 403. certcn is the manifest's Rasenmaeher CN. */
int auth_decide(enum auth_need need, const char *cn, const char *certcn);
