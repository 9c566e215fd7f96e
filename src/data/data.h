/* data.h: file data between the filesystem and the object store: the dirty
 * block buffer, the segment packer, the segment uploader and the read cache.
 *
 * Files are cut into fixed blocks of DATA_BLOCK_SIZE bytes; each stored block
 * is one sealed frame (lz4, then XChaCha20-Poly1305) in a segment.  Segments
 * are built in memory, sealed at segment_size or at a barrier, and uploaded
 * by background threads; they are never rewritten.  A block that is all zero
 * is not stored: it becomes a hole.
 *
 * Block states (one (inode, block) pair):
 *
 *   state      where the bytes are            index extent row
 *   ---------  -----------------------------  ------------------------------
 *   hole       nowhere (reads as zeros)       none
 *   dirty      a buffer in d->dirty           old row, or none (stale)
 *   packed     a frame in the open or a       points at the frame
 *              sealed, not yet uploaded
 *              segment (memory)
 *   stored     a frame in a stored segment    points at the frame
 *
 * write:  hole|packed|stored -> dirty (read-modify-write for partial writes;
 *         a whole-block write is packed at once, skipping dirty)
 * flush:  dirty -> packed (or hole when all zero); the extent row is updated
 * upload: packed -> stored (the segment's buffer is freed)
 *
 * Invariants: a dirty buffer always wins over the extent row; a frame
 * referenced by an extent row is in memory until its segment is stored;
 * segment ids are (epoch << 32 | counter) so a new mount never reuses the id
 * of an object a crashed one may have uploaded.
 *
 * Segment object: frames | trailer frame | footer (16 bytes: "ZSEG",
 * version u32, trailer offset u32, trailer length u32).  The trailer (sealed
 * with seal_ad_meta('T', seg)) lists every frame as ino u64, blk u64,
 * off u32, len u32, plen u32, after a u32 count; it lets fsck and scrub check
 * a segment without the index.
 *
 * Locking: every function is called with the fs lock (given to data_new)
 * held.  Functions that do object-store I/O drop and retake it; the lock
 * is held again when they return.  The read cache has its own lock. */
#ifndef ZEROFS_DATA_H
#define ZEROFS_DATA_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "codec/codec.h"
#include "index/idx.h"
#include "store/store.h"

#define DATA_BLOCK_SHIFT 16
#define DATA_BLOCK_SIZE (1u << DATA_BLOCK_SHIFT)
#define DATA_SEG_VERSION 1
#define DATA_FOOTER_BYTES 16

/* The blocks touched by the byte range [off, off + len), len > 0. */
static inline uint64_t data_first_blk(uint64_t off) { return off >> DATA_BLOCK_SHIFT; }
static inline uint64_t data_last_blk(uint64_t off, uint64_t len)
{
	return (off + len - 1) >> DATA_BLOCK_SHIFT;
}
/* Number of blocks needed for a file of size bytes. */
static inline uint64_t data_blocks_for(uint64_t size)
{
	return (size + DATA_BLOCK_SIZE - 1) >> DATA_BLOCK_SHIFT;
}

struct data_params {
	uint64_t segment_size;
	uint64_t cache_size;
	uint64_t dirty_limit;
	uint32_t epoch;
	int compress;
	int upload_threads;
	/* How long a barrier waits for a failing store before giving up with
	 * -EIO (the uploads go on; a later barrier may succeed). */
	uint64_t store_wait_ms;
};

struct data;

struct data *data_new(struct store *st, const struct seal_key *key, struct idx *ix,
		      pthread_mutex_t *lock, const struct data_params *p);
/* Stops the uploaders.  Data not yet stored is dropped: call
 * data_flush_all and data_wait_stored first. */
void data_free(struct data *d);

/* Write len bytes at off into inode ino.  0 or -errno. */
int data_write(struct data *d, uint64_t ino, uint64_t off, const void *buf, size_t len);
/* Read len bytes at off of ino (the caller clamps to the file size); holes
 * read as zeros.  Returns len or -errno (-EIO when a frame fails to
 * authenticate: logged with the object's name). */
ssize_t data_read(struct data *d, uint64_t ino, uint64_t off, size_t len, void *buf);
/* data_read that also tells cb, in order, which of the bytes it read were
 * data (data 1: stored, packed or dirty) and which a hole (0: no extent and
 * no dirty buffer; they read as zeros), from the same lookups that found
 * the bytes.  Adjacent ranges may be of the same kind; cb's return value is
 * ignored and it must not call data_*.  NULL cb: data_read.
 *
 * With pins, the bytes of a block found in the memory cache are left there,
 * pinned, instead of being copied into buf: pins[i], for the i-th block the
 * range touches (data_last_blk - data_first_blk + 1 of them), points at
 * that block's bytes from the range's position in it, or is NULL where they
 * were copied into buf as usual.  The caller zeroes pins; give them back
 * with data_unpin (with or without the lock) once done, whatever the
 * result. */
struct bcache_pin;
struct data_pin {
	const uint8_t *p;
	struct bcache_pin *pin;
};
typedef int (*data_map_cb)(void *arg, uint64_t off, uint64_t len, int data);
ssize_t data_read_map(struct data *d, uint64_t ino, uint64_t off, size_t len, void *buf,
		      data_map_cb cb, void *arg, struct data_pin *pins);
void data_unpin(struct data *d, struct data_pin *pins, size_t n);
/* Zero [off, off + len): whole blocks become holes, partial blocks are
 * rewritten.  Used by truncate, PUNCH_HOLE and ZERO_RANGE. */
int data_zero_range(struct data *d, uint64_t ino, uint64_t off, uint64_t len);
/* Drop the blocks at or after first (shrinking truncate, after zeroing the
 * tail of the partial block). */
int data_drop_from(struct data *d, uint64_t ino, uint64_t first);
/* The inode is gone: drop its dirty buffers (its extents go with the index
 * row). */
void data_forget_inode(struct data *d, uint64_t ino);
/* Does block blk of ino have a dirty buffer (data not yet in the index)?
 * Read-only. */
int data_block_dirty(struct data *d, uint64_t ino, uint64_t blk);
/* Pack the dirty buffers of one inode (so the index alone answers
 * SEEK_DATA / SEEK_HOLE). */
int data_flush_inode(struct data *d, uint64_t ino);

/* Barrier step 1: pack every dirty buffer and seal the open segment.
 * Returns the mark to pass to data_wait_stored. */
int data_flush_all(struct data *d, uint64_t *mark);
/* Wait until every segment sealed before mark is stored.  0, or -EIO when
 * the store kept failing for store_wait_ms. */
int data_wait_stored(struct data *d, uint64_t mark);

/* The newest seal number: data_wait_stored(d, data_sealno(d)) waits for
 * everything sealed so far. */
uint64_t data_sealno(struct data *d);
/* The sealed segments not yet stored, up to mark (a barrier's log may carry
 * them; journal.h).  When there are some and their objects together take at
 * most max bytes, calls cb (if not NULL) with each one's id and complete
 * object bytes, oldest first, and returns how many; returns 0 when there
 * are none, SIZE_MAX when they take more than max (or cb failed).  Caller
 * holds the fs lock, which keeps the bytes valid during cb. */
size_t data_unstored(struct data *d, uint64_t mark, size_t max,
		     int (*cb)(void *arg, uint64_t id, const void *obj, size_t len), void *arg);
/* The index log queued last carries the segments data_unstored(d, mark,
 * ...) just passed to its callback: their uploads may be STORE_PUT_LAZY
 * from now on (the log holds their bytes until a checkpoint replaces it,
 * and the checkpoint calls store_sync first).  Caller holds the fs lock
 * and has held it since data_unstored. */
void data_mark_carried(struct data *d, uint64_t mark);
/* Take the complete object of segment id (carried by an index log, missing
 * from the store) into memory as a sealed segment: reads find it there;
 * upload 1 queues it for upload like a new one (data_wait_stored covers
 * it), 0 keeps it in memory only (a read-only mount).  Caller holds the fs
 * lock. */
int data_adopt(struct data *d, uint64_t id, const void *obj, size_t len, int upload);

/* The ids of the segments adopted in memory only (up to max), and letting
 * one go once the store has it or the index no longer names it.  Caller
 * holds the fs lock. */
size_t data_kept(struct data *d, uint64_t *ids, size_t max);
void data_release_kept(struct data *d, uint64_t id);
/* The object name of segment id. */
void data_seg_key(char *out, size_t n, uint64_t id);

struct data_stats {
	uint64_t dirty_bytes;
	uint64_t pending_bytes; /* sealed, not yet stored */
	uint64_t segments_stored;
	uint64_t cache_hits;
	uint64_t cache_misses;
	uint64_t store_errors;
};
void data_get_stats(struct data *d, struct data_stats *out);

/* ---- garbage collection and checks ---- */

/* Is seg still in memory (open, sealed or uploading)?  Its object is then
 * not in the store yet, or not for long.  Caller holds the fs lock. */
int data_seg_busy(struct data *d, uint64_t seg);

/* Copy block (ino, e->blk), whose plaintext is plain, out of segment e->seg
 * into the open segment, if the extent map still points at frame e->frame
 * of it and the block is not being rewritten.  1 moved, 0 not needed,
 * -errno.  Caller holds the fs lock. */
int data_relocate(struct data *d, uint64_t ino, const struct idx_extent *e, const void *plain);

/* A frame as a segment's trailer lists it (frame number = its index). */
struct data_frame {
	uint64_t ino, blk;
	uint32_t off, len, plen;
};

/* Check the footer of segment object obj and open its trailer: *frames
 * (malloc'd) gets its *n frames.  -EUCLEAN (logged, naming the object) when
 * it is damaged, -ENOMEM when memory (or the cipher) fails.  Decoding works in place: the trailer bytes of obj are
 * overwritten (and each frame by data_open_frame). */
int data_parse_segment(const struct seal_key *key, uint64_t seg, uint8_t *obj,
		       size_t len, struct data_frame **frames, uint32_t *n);

/* Authenticate and decode frame number frame (f, from the trailer) of
 * segment seg into out (DATA_BLOCK_SIZE bytes).  -EIO, logged, naming the
 * object, when it fails authentication; -ENOMEM when the cipher cannot be set
 * up. */
int data_open_frame(const struct seal_key *key, uint64_t seg, uint32_t frame,
		    const struct data_frame *f, uint8_t *obj, uint8_t *out);

/* receive: store plen bytes of block (ino, blk) as they are (sealed into the
 * open segment, extent map updated).  Caller holds the fs lock. */
int data_put_block(struct data *d, uint64_t ino, uint64_t blk, const void *plain, uint32_t plen);

#endif
