/* bcache.c: an LRU cache of decoded blocks keyed by (segment, frame offset).
 * A hash table with chaining finds entries; a doubly linked list orders
 * them by use.  Buffers are allocated once per slot and reused, since first
 * touch of memory is slow on the machines we run on. */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "data/bcache.h"

struct bentry {
	uint64_t seg;
	uint32_t foff;
	uint32_t plen;
	struct bentry *hnext;
	struct bentry *prev, *next; /* LRU: head is most recent */
	uint8_t *buf;
	uint32_t pins; /* readers holding buf (bcache_pin) */
	int gone;      /* pinned when it aged out: in neither the hash nor the LRU */
};

struct bcache {
	pthread_mutex_t lock;
	size_t capacity, count, block_size;
	size_t nbuckets;
	struct bentry **buckets;
	struct bentry *head, *tail;
	struct bentry *spare; /* taken by bcache_slot and given back, or not yet used */
	size_t pinned;        /* entries with pins */
	uint64_t hits, misses;
};

static size_t bucket_of(const struct bcache *c, uint64_t seg, uint32_t foff)
{
	uint64_t h = seg * 0x9e3779b97f4a7c15ULL ^ (foff * 0xc2b2ae3d27d4eb4fULL);
	return (size_t)(h ^ (h >> 29)) & (c->nbuckets - 1);
}

struct bcache *bcache_new(size_t capacity, size_t block_size)
{
	struct bcache *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->capacity = capacity ? capacity : 1;
	c->block_size = block_size;
	c->nbuckets = 64;
	while (c->nbuckets < c->capacity * 2)
		c->nbuckets <<= 1;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	if (!c->buckets) {
		free(c);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

void bcache_free(struct bcache *c)
{
	if (!c)
		return;
	struct bentry *e = c->head;
	while (e) {
		struct bentry *n = e->next;
		free(e->buf - BCACHE_HEADROOM);
		free(e);
		e = n;
	}
	for (e = c->spare; e;) {
		struct bentry *n = e->next;
		free(e->buf - BCACHE_HEADROOM);
		free(e);
		e = n;
	}
	free(c->buckets);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static struct bentry *find(struct bcache *c, uint64_t seg, uint32_t foff)
{
	struct bentry *e = c->buckets[bucket_of(c, seg, foff)];
	while (e && (e->seg != seg || e->foff != foff))
		e = e->hnext;
	return e;
}

static void lru_unlink(struct bcache *c, struct bentry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push(struct bcache *c, struct bentry *e)
{
	e->prev = NULL;
	e->next = c->head;
	if (c->head)
		c->head->prev = e;
	c->head = e;
	if (!c->tail)
		c->tail = e;
}

static void hash_remove(struct bcache *c, struct bentry *e)
{
	struct bentry **pp = &c->buckets[bucket_of(c, e->seg, e->foff)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
}

ssize_t bcache_get(struct bcache *c, uint64_t seg, uint32_t foff, void *out, size_t off,
		   size_t len)
{
	LOCK_GUARD(&c->lock);
	struct bentry *e = find(c, seg, foff);
	if (!e) {
		c->misses++;
		return -ENOENT;
	}
	c->hits++;
	lru_unlink(c, e);
	lru_push(c, e);
	/* Bytes past the frame's plaintext are zeros (a short last block). */
	size_t have = off < e->plen ? MIN(len, e->plen - off) : 0;
	memcpy(out, e->buf + off, have);
	memset((uint8_t *)out + have, 0, len - have);
	return e->plen;
}

int bcache_has(struct bcache *c, uint64_t seg, uint32_t foff)
{
	LOCK_GUARD(&c->lock);
	return find(c, seg, foff) != NULL;
}

/* An entry that is in neither the hash nor the LRU list: a spare one, a new
 * one (counted) while below capacity, else the LRU one taken out.  Called
 * with the lock held. */
static struct bentry *take_entry(struct bcache *c)
{
	struct bentry *e = c->spare;
	if (e) {
		c->spare = e->next;
		e->next = NULL;
		return e;
	}
	if (c->count < c->capacity) {
		e = calloc(1, sizeof(*e));
		if (!e)
			return NULL;
		uint8_t *mem = malloc(BCACHE_HEADROOM + c->block_size);
		if (!mem) {
			free(e);
			return NULL;
		}
		e->buf = mem + BCACHE_HEADROOM;
		c->count++;
		return e;
	}
	/* A pinned entry leaves the cache but keeps its buffer for its
	 * readers; the last unpin spares it. */
	while ((e = c->tail) && e->pins) {
		lru_unlink(c, e);
		hash_remove(c, e);
		e->gone = 1;
	}
	if (e) {
		lru_unlink(c, e);
		hash_remove(c, e);
	}
	return e;
}

void bcache_put(struct bcache *c, uint64_t seg, uint32_t foff, const void *plain, size_t plen)
{
	LOCK_GUARD(&c->lock);
	struct bentry *e = find(c, seg, foff);
	if (e) {
		lru_unlink(c, e);
	} else {
		e = take_entry(c);
		if (!e)
			return;
		size_t b = bucket_of(c, seg, foff);
		e->hnext = c->buckets[b];
		c->buckets[b] = e;
	}
	e->seg = seg;
	e->foff = foff;
	e->plen = (uint32_t)MIN(plen, c->block_size);
	/* A pinned buffer is being read: it holds these bytes already (a frame
	 * never changes). */
	if (!e->pins)
		memcpy(e->buf, plain, e->plen);
	lru_push(c, e);
}

struct bcache_slot *bcache_slot(struct bcache *c)
{
	LOCK_GUARD(&c->lock);
	return (struct bcache_slot *)take_entry(c);
}

void *bcache_slot_buf(struct bcache_slot *s)
{
	return ((struct bentry *)s)->buf;
}

static void spare(struct bcache *c, struct bentry *e)
{
	e->prev = NULL;
	e->next = c->spare;
	c->spare = e;
}

void bcache_fill(struct bcache *c, struct bcache_slot *s, uint64_t seg, uint32_t foff,
		 size_t plen)
{
	struct bentry *e = (struct bentry *)s;
	LOCK_GUARD(&c->lock);
	if (find(c, seg, foff)) {
		spare(c, e);
		return;
	}
	e->seg = seg;
	e->foff = foff;
	e->plen = (uint32_t)MIN(plen, c->block_size);
	size_t b = bucket_of(c, seg, foff);
	e->hnext = c->buckets[b];
	c->buckets[b] = e;
	lru_push(c, e);
}

void bcache_drop(struct bcache *c, struct bcache_slot *s)
{
	LOCK_GUARD(&c->lock);
	spare(c, (struct bentry *)s);
}

const void *bcache_pin(struct bcache *c, uint64_t seg, uint32_t foff, size_t *plen,
		       struct bcache_pin **pin)
{
	LOCK_GUARD(&c->lock);
	struct bentry *e = find(c, seg, foff);
	if (!e || (!e->pins && c->pinned >= c->capacity / 4))
		return NULL; /* the caller's bcache_get counts it */
	c->hits++;
	lru_unlink(c, e);
	lru_push(c, e);
	if (e->pins++ == 0)
		c->pinned++;
	*plen = e->plen;
	*pin = (struct bcache_pin *)e;
	return e->buf;
}

void bcache_unpin(struct bcache *c, struct bcache_pin *pin)
{
	struct bentry *e = (struct bentry *)pin;
	LOCK_GUARD(&c->lock);
	if (--e->pins > 0)
		return;
	c->pinned--;
	if (e->gone) {
		e->gone = 0;
		spare(c, e);
	}
}

void bcache_counts(struct bcache *c, uint64_t *hits, uint64_t *misses)
{
	LOCK_GUARD(&c->lock);
	*hits = c->hits;
	*misses = c->misses;
}
