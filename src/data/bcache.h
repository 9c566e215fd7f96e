/* bcache.h: the memory cache of decoded blocks, keyed by where their frame
 * is stored (segment id, frame offset).  Frames are immutable, so an entry
 * never goes stale and nothing is ever invalidated: entries only age out
 * (LRU) when the cache is full.
 *
 * Locking: the cache has its own mutex; every function is thread-safe and
 * may be called with or without the fs lock held. */
#ifndef ZEROFS_BCACHE_H
#define ZEROFS_BCACHE_H

#include <stddef.h>
#include <stdint.h>

struct bcache;

/* capacity: how many blocks of block_size bytes it may hold (>= 1). */
struct bcache *bcache_new(size_t capacity, size_t block_size);
void bcache_free(struct bcache *c);
/* Copy len bytes at off of the cached block into out.  Returns the block's
 * plaintext length, or -ENOENT on a miss. */
ssize_t bcache_get(struct bcache *c, uint64_t seg, uint32_t foff, void *out, size_t off,
		   size_t len);
/* Insert (or refresh) a block of plen bytes. */
void bcache_put(struct bcache *c, uint64_t seg, uint32_t foff, const void *plain, size_t plen);
/* Decoding straight into the cache, without a copy: bcache_slot takes a
 * buffer of block_size bytes that no lookup sees (a spare one, a new one
 * while the cache is not full, else the least recently used entry's), or
 * NULL when none can be had; bcache_fill makes it the block (seg, foff) of
 * plen bytes (or spares it when another thread cached that block first);
 * bcache_drop spares it unused.  A slot's buffer has BCACHE_HEADROOM
 * writable bytes before it (room for a frame header decrypted in place). */
#define BCACHE_HEADROOM 16
struct bcache_slot;
struct bcache_slot *bcache_slot(struct bcache *c);
void *bcache_slot_buf(struct bcache_slot *s);
void bcache_fill(struct bcache *c, struct bcache_slot *s, uint64_t seg, uint32_t foff,
		 size_t plen);
void bcache_drop(struct bcache *c, struct bcache_slot *s);
/* Pinning, for a reader that sends a block's bytes from the cache instead
 * of copying them out: bcache_pin finds block (seg, foff) as bcache_get
 * does and returns its buffer (*plen bytes of plaintext; what follows up
 * to block_size is not zeroed) with the entry kept: it is not reused until
 * bcache_unpin, even if it ages out meanwhile (then it is out of the cache
 * already, and its buffer goes back to the spares at the unpin).  NULL on a
 * miss, or when a quarter of the capacity is pinned already: the caller
 * copies instead. */
struct bcache_pin;
const void *bcache_pin(struct bcache *c, uint64_t seg, uint32_t foff, size_t *plen,
		       struct bcache_pin **pin);
void bcache_unpin(struct bcache *c, struct bcache_pin *pin);
/* Whether a block is cached (no LRU update). */
int bcache_has(struct bcache *c, uint64_t seg, uint32_t foff);
void bcache_counts(struct bcache *c, uint64_t *hits, uint64_t *misses);

#endif
