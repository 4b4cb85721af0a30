/* connlimit: how many connections each client address holds, so that one
 * address (a scanner, a slowloris client) cannot take every slot of the
 * listener and lock Rasenmaeher out. An address at its limit has further
 * connections refused at accept, before any TLS or HTTP work; the trusted
 * proxies of header mode are exempt (every client comes through them).
 * IPv4-mapped IPv6 addresses count as their IPv4 address.
 * Thread-safe: the listener's pool threads call it concurrently. */
#pragma once
#include <stddef.h>
#include <sys/socket.h>

struct connlimit;

enum connlimit_error {
	CONNLIMIT_ENOMEM = -3101, /* the table could not be made */
};

/* per_address: connections one address may hold (0: no limit). Returns 0
 * or a negative code. */
int connlimit_new(unsigned int per_address, struct connlimit **out);
void connlimit_free(struct connlimit *cl); /* NULL is a no-op */

/* 1 when addr may open another connection now, 0 when it is at its limit. */
int connlimit_admit(struct connlimit *cl, const struct sockaddr *addr);

/* A connection of addr started (counted) / closed (released). */
void connlimit_started(struct connlimit *cl, const struct sockaddr *addr);
void connlimit_closed(struct connlimit *cl, const struct sockaddr *addr);

/* Connections counted for addr now (for tests and logs). */
unsigned int connlimit_count(struct connlimit *cl, const struct sockaddr *addr);

const char *connlimit_strerror(int code);
