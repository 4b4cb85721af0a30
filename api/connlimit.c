/* connlimit: see connlimit.h. A small open-addressing table of address ->
 * count under one mutex; an entry whose count drops to zero is kept as a
 * reusable zero (the table holds at most CONNLIMIT_SLOTS addresses at once;
 * past that, new addresses are admitted uncounted rather than refused, so a
 * full table never locks anyone out). */
#include "connlimit.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "errtext.h"

#define CONNLIMIT_SLOTS 4096

struct slot {
	unsigned char key[16]; /* IPv6 bytes; IPv4 as ::ffff:a.b.c.d */
	unsigned int count;
	int used;
	/* Its waiting connections, oldest first (each is counted in count, so
	 * a slot whose count is zero has none). */
	struct connlimit_conn *oldest, *newest;
};

/* Addresses that presented a verified certificate lately; the oldest
 * entry makes room for a new one (Rasenmaeher and a few products). */
#define VOUCHED_SLOTS 64
struct vouched {
	unsigned char key[16];
	int64_t at_ms;
	int used;
};

struct connlimit {
	pthread_mutex_t mu;
	unsigned int per_address;
	unsigned int capacity, reserve;
	unsigned int total;
	struct slot slots[CONNLIMIT_SLOTS];
	struct vouched vouched[VOUCHED_SLOTS];
};

static const struct errtext err_texts[] = {
	{CONNLIMIT_ENOMEM, "out of memory for the connection table"},
	{CONNLIMIT_EADDRESS, "the address holds MAX_CONNECTIONS_PER_ADDRESS connections already"},
	{CONNLIMIT_ERESERVED,
	 "the listener is nearly full and the rest is kept for addresses that presented a verified "
	 "client certificate"},
};

const char *connlimit_strerror(int code)
{
	return ERRTEXT_LOOKUP(err_texts, code);
}

int connlimit_new(unsigned int per_address, struct connlimit **out)
{
	struct connlimit *cl = calloc(1, sizeof(*cl));

	*out = NULL;
	if (cl == NULL)
		return CONNLIMIT_ENOMEM;
	pthread_mutex_init(&cl->mu, NULL);
	cl->per_address = per_address;
	*out = cl;
	return 0;
}

void connlimit_free(struct connlimit *cl)
{
	if (cl == NULL)
		return;
	pthread_mutex_destroy(&cl->mu);
	free(cl);
}

/* The address as 16 bytes; 0 when it is neither IPv4 nor IPv6. */
static int key_of(const struct sockaddr *addr, unsigned char key[16])
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (addr == NULL)
		return 0;
	if (addr->sa_family == AF_INET) {
		memcpy(key, mapped, 12);
		memcpy(key + 12, &((const struct sockaddr_in *)(const void *)addr)->sin_addr, 4);
		return 1;
	}
	if (addr->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr, 16);
		if (memcmp(key, mapped, 12) != 0)
			memset(key + 8, 0, 8); /* by /64 */
		return 1;
	}
	return 0;
}

/* The slot of key (made when create and there is room), or NULL. Under mu.
 * The probe goes on to the first unused slot, so a key is never in two
 * slots; a slot whose count fell to zero is taken for a new key. */
static struct slot *find(struct connlimit *cl, const unsigned char key[16], int create)
{
	struct slot *spare = NULL;
	uint32_t h = 2166136261U;

	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619U;
	for (unsigned int n = 0; n < CONNLIMIT_SLOTS; n++) {
		struct slot *s = &cl->slots[(h + n) % CONNLIMIT_SLOTS];

		if (s->used && memcmp(s->key, key, 16) == 0)
			return s;
		if (s->used && s->count == 0 && spare == NULL)
			spare = s;
		if (!s->used) {
			if (spare == NULL)
				spare = s;
			break;
		}
	}
	if (!create || spare == NULL)
		return NULL;
	memcpy(spare->key, key, 16);
	spare->count = 0;
	spare->used = 1;
	spare->oldest = spare->newest = NULL;
	return spare;
}

void connlimit_set_reserve(struct connlimit *cl, unsigned int capacity, unsigned int reserve)
{
	pthread_mutex_lock(&cl->mu);
	cl->capacity = capacity;
	cl->reserve = reserve < capacity ? reserve : capacity;
	pthread_mutex_unlock(&cl->mu);
}

/* The entry vouching for key now, or NULL. Under mu. */
static struct vouched *vouched_find(struct connlimit *cl, const unsigned char key[16], int64_t now_ms)
{
	for (unsigned int i = 0; i < VOUCHED_SLOTS; i++) {
		struct vouched *v = &cl->vouched[i];

		if (v->used && memcmp(v->key, key, 16) == 0)
			return now_ms - v->at_ms < CONNLIMIT_VOUCH_MS ? v : NULL;
	}
	return NULL;
}

void connlimit_vouch(struct connlimit *cl, const struct sockaddr *addr, int64_t now_ms)
{
	unsigned char key[16];
	struct vouched *v = NULL;

	if (cl == NULL || !key_of(addr, key))
		return;
	pthread_mutex_lock(&cl->mu);
	for (unsigned int i = 0; i < VOUCHED_SLOTS && v == NULL; i++)
		if (cl->vouched[i].used && memcmp(cl->vouched[i].key, key, 16) == 0)
			v = &cl->vouched[i];
	for (unsigned int i = 0; i < VOUCHED_SLOTS && v == NULL; i++)
		if (!cl->vouched[i].used)
			v = &cl->vouched[i];
	if (v == NULL) { /* all taken: the oldest goes */
		v = &cl->vouched[0];
		for (unsigned int i = 1; i < VOUCHED_SLOTS; i++)
			if (cl->vouched[i].at_ms < v->at_ms)
				v = &cl->vouched[i];
	}
	memcpy(v->key, key, 16);
	v->at_ms = now_ms;
	v->used = 1;
	pthread_mutex_unlock(&cl->mu);
}

/* Why one more connection of key (its slot s, or NULL) must be refused, or
 * 0; under cl->mu. */
static int refusal(struct connlimit *cl, const struct slot *s, const unsigned char *key, int64_t now_ms)
{
	if (cl->per_address != 0 && s != NULL && s->count >= cl->per_address)
		return CONNLIMIT_EADDRESS;
	if (cl->reserve != 0 && cl->total + cl->reserve >= cl->capacity && vouched_find(cl, key, now_ms) == NULL)
		return CONNLIMIT_ERESERVED;
	return 0;
}

int connlimit_check(struct connlimit *cl, const struct sockaddr *addr, int64_t now_ms)
{
	unsigned char key[16];
	int rc;

	if (cl == NULL || !key_of(addr, key))
		return 0;
	pthread_mutex_lock(&cl->mu);
	rc = refusal(cl, find(cl, key, 0), key, now_ms);
	pthread_mutex_unlock(&cl->mu);
	return rc;
}

unsigned int connlimit_total(struct connlimit *cl)
{
	unsigned int n;

	if (cl == NULL)
		return 0;
	pthread_mutex_lock(&cl->mu);
	n = cl->total;
	pthread_mutex_unlock(&cl->mu);
	return n;
}

int connlimit_started(struct connlimit *cl, const struct sockaddr *addr, int64_t now_ms)
{
	unsigned char key[16];
	struct slot *s = NULL;
	int rc = 0;

	if (cl == NULL)
		return 0;
	pthread_mutex_lock(&cl->mu);
	if (key_of(addr, key)) {
		s = find(cl, key, 1);
		rc = refusal(cl, s, key, now_ms);
	}
	cl->total++;
	if (s != NULL)
		s->count++;
	pthread_mutex_unlock(&cl->mu);
	return rc;
}

void connlimit_closed(struct connlimit *cl, const struct sockaddr *addr)
{
	unsigned char key[16];
	struct slot *s;

	if (cl == NULL)
		return;
	pthread_mutex_lock(&cl->mu);
	if (cl->total > 0)
		cl->total--;
	if (key_of(addr, key) && (s = find(cl, key, 0)) != NULL && s->count > 0)
		s->count--;
	pthread_mutex_unlock(&cl->mu);
}

unsigned int connlimit_count(struct connlimit *cl, const struct sockaddr *addr)
{
	unsigned char key[16];
	struct slot *s;
	unsigned int n = 0;

	if (cl == NULL || !key_of(addr, key))
		return 0;
	pthread_mutex_lock(&cl->mu);
	if ((s = find(cl, key, 0)) != NULL)
		n = s->count;
	pthread_mutex_unlock(&cl->mu);
	return n;
}

/* The waiting list of slot s; under mu. */
static void unwait(struct slot *s, struct connlimit_conn *c)
{
	if (!c->waiting)
		return;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		s->oldest = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	else
		s->newest = c->prev;
	c->prev = c->next = NULL;
	c->waiting = 0;
}

static void enwait(struct slot *s, struct connlimit_conn *c)
{
	if (c->waiting || c->exempt)
		return;
	c->prev = s->newest;
	c->next = NULL;
	if (s->newest != NULL)
		s->newest->next = c;
	else
		s->oldest = c;
	s->newest = c;
	c->waiting = 1;
}

/* The slot c is counted under, or NULL; under mu. */
static struct slot *slot_of(struct connlimit *cl, const struct connlimit_conn *c)
{
	return c->keyed ? find(cl, c->key, 0) : NULL;
}

int connlimit_can_evict(struct connlimit *cl, const struct sockaddr *addr)
{
	unsigned char key[16];
	struct slot *s;
	int yes = 0;

	if (cl == NULL || !key_of(addr, key))
		return 0;
	pthread_mutex_lock(&cl->mu);
	s = find(cl, key, 0);
	yes = s != NULL && s->oldest != NULL;
	pthread_mutex_unlock(&cl->mu);
	return yes;
}

int connlimit_attach(struct connlimit *cl, const struct sockaddr *addr, int64_t now_ms, struct connlimit_conn *c,
		     int fd, int exempt, int *evicted)
{
	struct slot *s = NULL;
	int rc = 0;

	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->exempt = exempt != 0;
	*evicted = 0;
	if (cl == NULL)
		return 0;
	pthread_mutex_lock(&cl->mu);
	if (key_of(addr, c->key)) {
		s = find(cl, c->key, 1);
		rc = c->exempt ? 0 : refusal(cl, s, c->key, now_ms);
		if (rc == CONNLIMIT_EADDRESS && s->oldest != NULL) {
			struct connlimit_conn *victim = s->oldest;

			unwait(s, victim);
			victim->evicted = 1;
			s->count--;
			cl->total--;
			/* Still registered, so its descriptor is still open. */
			shutdown(victim->fd, SHUT_RDWR);
			*evicted = 1;
			rc = refusal(cl, s, c->key, now_ms);
		}
	}
	cl->total++;
	if (s != NULL) {
		s->count++;
		c->keyed = 1;
		enwait(s, c);
	}
	pthread_mutex_unlock(&cl->mu);
	return rc;
}

/* c on (waiting) or off its address's waiting list, unless it was evicted
 * or is exempt (never a victim). */
static void set_waiting(struct connlimit *cl, struct connlimit_conn *c, int waiting)
{
	struct slot *s;

	if (cl == NULL)
		return;
	pthread_mutex_lock(&cl->mu);
	if (!c->evicted && (s = slot_of(cl, c)) != NULL)
		(waiting ? enwait : unwait)(s, c);
	pthread_mutex_unlock(&cl->mu);
}

void connlimit_busy(struct connlimit *cl, struct connlimit_conn *c)
{
	set_waiting(cl, c, 0);
}

void connlimit_idle(struct connlimit *cl, struct connlimit_conn *c)
{
	set_waiting(cl, c, 1);
}

void connlimit_detach(struct connlimit *cl, struct connlimit_conn *c)
{
	struct slot *s;

	if (cl == NULL)
		return;
	pthread_mutex_lock(&cl->mu);
	if (!c->evicted) {
		s = slot_of(cl, c);
		if (s != NULL) {
			unwait(s, c);
			if (s->count > 0)
				s->count--;
		}
		if (cl->total > 0)
			cl->total--;
	}
	c->evicted = 1; /* released: a second detach is a no-op */
	pthread_mutex_unlock(&cl->mu);
}
