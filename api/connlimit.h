/* connlimit: how many connections each client address holds, so that one
 * address (a scanner, a slowloris client) cannot take every slot of the
 * listener and lock Rasenmaeher out. An address at its limit has further
 * connections refused at accept, before any TLS or HTTP work; the trusted
 * proxies of header mode are exempt (every client comes through them).
 * IPv4-mapped IPv6 addresses count as their IPv4 address; other IPv6
 * addresses count by their /64 (one host commonly holds a whole /64, so per
 * address would be no limit at all).
 *
 * At its limit an address is not simply refused: a new connection takes the
 * place of that address's oldest connection that is still waiting (its TLS
 * handshake or its request's headers not complete; connlimit_busy /
 * connlimit_idle say when a connection leaves and rejoins that state), which
 * is shut down to make room, so that idle or trickling connections cannot
 * starve a real client behind the same address (NAT, one host). Only when
 * every connection of the address is past that point is the newcomer
 * refused. The count of an address never exceeds its limit: the eviction
 * and the newcomer's count happen under one lock. A connection serving a
 * request (a callback being committed included) is never evicted.
 *
 * Many addresses together could still fill the listener, so the last
 * `reserve` of its `capacity` slots go only to addresses that presented a
 * verified client certificate lately (connlimit_vouch: Rasenmaeher, the
 * products) and are refused to everyone else.
 * Thread-safe: the listener's pool threads call it concurrently. */
#pragma once
#include "errtext.h"
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct connlimit;

enum connlimit_error {
	CONNLIMIT_ENOMEM = ERRTEXT_CONNLIMIT - 1,   /* the table could not be made */
	CONNLIMIT_EADDRESS = ERRTEXT_CONNLIMIT - 2, /* the address holds its share already */
	CONNLIMIT_ERESERVED =
		ERRTEXT_CONNLIMIT - 3, /* the listener is nearly full; the rest is kept for vouched addresses */
};

/* per_address: connections one address may hold (0: no limit). Returns 0
 * or a negative code. */
int connlimit_new(unsigned int per_address, struct connlimit **out);
void connlimit_free(struct connlimit *cl); /* NULL is a no-op */

/* Keeps the last reserve of capacity connections for vouched addresses
 * (0, 0: no reserve, the default). */
void connlimit_set_reserve(struct connlimit *cl, unsigned int capacity, unsigned int reserve);

/* addr presented a verified client certificate at now_ms: it may use the
 * reserve for CONNLIMIT_VOUCH_MS. now_ms here and in connlimit_check is one
 * monotonic clock in ms (the listener passes clock_mono_coarse_ms()). */
#define CONNLIMIT_VOUCH_MS ((int64_t)3600 * 1000)
void connlimit_vouch(struct connlimit *cl, const struct sockaddr *addr, int64_t now_ms);

/* 0 when addr may open another connection at now_ms, else
 * CONNLIMIT_EADDRESS or CONNLIMIT_ERESERVED. */
int connlimit_check(struct connlimit *cl, const struct sockaddr *addr, int64_t now_ms);

/* Connections counted in all (every started one, from any address). */
unsigned int connlimit_total(struct connlimit *cl);

/* A connection of addr started (counted) / closed (released). started
 * counts it in every case and returns what connlimit_check would have said
 * just before, decided with the count under one lock: two listener threads
 * that both passed connlimit_check for the last slot learn here that one of
 * them took it (0, or CONNLIMIT_EADDRESS / CONNLIMIT_ERESERVED: close it). */
int connlimit_started(struct connlimit *cl, const struct sockaddr *addr, int64_t now_ms);
void connlimit_closed(struct connlimit *cl, const struct sockaddr *addr);

/* One connection as the table tracks it (embedded in the listener's
 * per-connection state; owned by the table between attach and detach). */
struct connlimit_conn {
	int fd;
	unsigned char key[16];
	int keyed;   /* counted under key */
	int waiting; /* on its address's waiting list */
	int evicted; /* shut down to make room: its count is released already */
	int exempt;  /* a trusted proxy's: never refused, never waiting, never evicted */
	struct connlimit_conn *prev, *next;
};

/* connlimit_started for a connection the table tracks: counted, and
 * waiting (its handshake and headers are to come). When the address is at
 * its limit, its oldest waiting connection is shut down (shutdown(2) of its
 * fd, never close) and its count given to c; *evicted says so. Returns what
 * connlimit_started returns (non-zero: close c, it is counted all the same
 * and released by connlimit_detach). An exempt connection (a trusted proxy's
 * in header mode, through which every client comes) is counted but never
 * refused and never evicted: the proxy's neighbours are its own business. */
int connlimit_attach(struct connlimit *cl, const struct sockaddr *addr, int64_t now_ms, struct connlimit_conn *c,
		     int fd, int exempt, int *evicted);
/* c's headers are complete (busy) / it waits for its next request (idle). */
void connlimit_busy(struct connlimit *cl, struct connlimit_conn *c);
void connlimit_idle(struct connlimit *cl, struct connlimit_conn *c);
/* c is closing (before its descriptor is closed): released, unless an
 * eviction released it already. */
void connlimit_detach(struct connlimit *cl, struct connlimit_conn *c);
/* 1 when addr is at its limit but holds a waiting connection that a
 * newcomer could take the place of (at accept: then the newcomer is let in). */
int connlimit_can_evict(struct connlimit *cl, const struct sockaddr *addr);

/* Connections counted for addr now (for tests and logs). */
unsigned int connlimit_count(struct connlimit *cl, const struct sockaddr *addr);

const char *connlimit_strerror(int code);
