/* data.c: the dirty block buffer, the segment packer and uploader, and the
 * read path.  See data.h for the block state machine and the locking rule
 * (the caller holds the fs lock; store I/O drops it). */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "data/bcache.h"
#include "data/data.h"
#include "log.h"

#include <sodium.h>

/* A block being modified in memory. */
struct dbuf {
	uint64_t ino, blk;
	uint32_t len; /* bytes of the block that hold data; the rest is zero */
	struct dbuf *hnext;
	struct dbuf *prev, *next; /* all dirty buffers, oldest first */
	uint8_t *buf;
};

struct trailer_ent {
	uint64_t ino, blk;
	uint32_t off, len, plen;
};

/* A segment that is not yet stored: the open one, or sealed and waiting for
 * (or in) upload. */
struct seg {
	uint64_t id;
	uint64_t sealno; /* order of sealing; 0 while open */
	uint8_t *buf;
	size_t len, cap;
	struct trailer_ent *ents;
	uint32_t nents, entcap;
	int uploading;
	int keep; /* adopted by a read-only mount: in memory only, never uploaded */
	int carried; /* a queued index log carries it: its upload is STORE_PUT_LAZY */
	int failures;
	uint64_t fail_since_ns; /* first failure of the current run, 0 if none */
	uint64_t retry_at_ns;   /* no new attempt before this */
	struct seg *next;
};

#define DIRTY_BUCKETS 4096
/* Ranged reads: a reader's miss fetches the frames of its block's aligned
 * group of MISS_BLOCKS blocks (2 MiB) that lie together in one segment; a
 * read-ahead task fetches those of RA_CHUNK blocks (4 MiB), taking along the
 * next chunk's frames that lie in the same window, up to RUN_MAX frames in
 * one request.  radosgw spends about 4.9 s of CPU per GiB served in 1 MiB
 * requests, 3.6 in 2 MiB ones and 3.0 in 4 MiB ones (s3bench -r), on a
 * machine it shares with the daemon. */
#define RUN_MAX 64     /* frames fetched in one ranged read (4 MiB) */
#define MISS_BLOCKS 32 /* a reader's miss: one aligned group (2 MiB) */
#define RA_CHUNK 64    /* one read-ahead task: one aligned chunk (4 MiB) */
#define CAND_MAX (2 * RA_CHUNK)
#define RA_SLOTS 32    /* read-ahead tasks queued; ranged reads in flight */
#define RA_RUNS 16     /* chunks read ahead of a sequential reader (64 MiB) */
#define RA_NEAR 32     /* blocks around a stream's head that continue it */
#define RA_STREAMS 64  /* sequential readers tracked */
#define RA_PER_FILE 4  /* ... at most this many in one file */
#define RA_THREADS 10 /* mostly waiting on the store */
_Static_assert(BCACHE_HEADROOM >= SEAL_HDR_BYTES,
	       "a cache slot takes a frame header before its buffer");

struct ra_task {
	uint64_t ino, blk, end; /* blocks [blk, end) */
};

struct inflight {
	uint64_t seg;
	uint32_t start, end;
	int used;
};

struct ra_stream {
	uint64_t ino, last, next;
	int hits;      /* reads that continued the stream */
	uint64_t used; /* when it was last read (ns; 0: free): the oldest is replaced */
};

struct data {
	struct store *st;
	struct seal_key key;
	struct idx *ix;
	pthread_mutex_t *lock;
	struct data_params p;

	struct dbuf *dirty_hash[DIRTY_BUCKETS];
	struct dbuf *dirty_head, *dirty_tail;
	struct dbuf *dbuf_pool;
	uint64_t dirty_bytes;

	struct seg *open;
	struct seg *sealed_head, *sealed_tail; /* in sealing order */
	struct seg *seg_pool;
	uint32_t next_seg;
	uint64_t sealno;
	uint64_t pending_bytes, pending_limit;

	pthread_cond_t work;  /* sealed segments to upload, or stop */
	pthread_cond_t done;  /* a segment was stored or failed */
	pthread_cond_t space; /* pending bytes fell */
	pthread_t *uploaders;
	int nuploaders;
	int stop;

	struct bcache *cache;
	uint64_t segments_stored, store_errors;

	struct ra_task raq[RA_SLOTS];
	int raq_head, raq_n;
	struct inflight infl[RA_SLOTS];
	struct ra_stream streams[RA_STREAMS];
	pthread_cond_t ra_work; /* read-ahead queued, or stop */
	pthread_cond_t ra_done; /* a ranged read finished */
	pthread_t ra_threads[RA_THREADS];
	int nra;
};

static __thread uint8_t *tls_frame;   /* one frame of scratch */
static __thread uint8_t *tls_run;     /* RUN_MAX frames of scratch */
static __thread uint8_t *tls_block;   /* one decoded block */
static __thread uint8_t *tls_rmw;     /* a block being read for modification */

static size_t frame_cap(void)
{
	return seal_frame_bound(DATA_BLOCK_SIZE);
}

/* Frees the calling thread's scratch buffers when it exits: FUSE workers
 * end with the session, and their buffers must not leak. */
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_key_err;

static void tls_free(void *unused)
{
	free(tls_frame);
	free(tls_run);
	free(tls_block);
	free(tls_rmw);
	tls_frame = tls_run = tls_block = tls_rmw = NULL;
}

static void tls_key_create(void)
{
	tls_key_err = pthread_key_create(&tls_key, tls_free);
}

static int tls_buffers(void)
{
	if (tls_frame && tls_run && tls_block && tls_rmw)
		return 0;
	int err = pthread_once(&tls_once, tls_key_create);
	if (!err)
		err = tls_key_err;
	/* Any non-NULL value: it makes tls_free run at the thread's exit. */
	if (!err)
		err = pthread_setspecific(tls_key, &tls_key);
	if (err)
		return -err;
	if (!tls_frame)
		tls_frame = malloc(frame_cap());
	if (!tls_run)
		tls_run = malloc(frame_cap() * RUN_MAX);
	if (!tls_block)
		tls_block = malloc(DATA_BLOCK_SIZE);
	if (!tls_rmw)
		tls_rmw = malloc(DATA_BLOCK_SIZE);
	return tls_frame && tls_run && tls_block && tls_rmw ? 0 : -ENOMEM;
}

void data_seg_key(char *out, size_t n, uint64_t id)
{
	snprintf(out, n, "segments/%016" PRIx64, id);
}

static void seg_key(char *out, size_t n, uint64_t id)
{
	data_seg_key(out, n, id);
}

/* ---- dirty buffers ---- */

static size_t dirty_bucket(uint64_t ino, uint64_t blk)
{
	uint64_t h = ino * 0x9e3779b97f4a7c15ULL + blk * 0xc2b2ae3d27d4eb4fULL;
	return (size_t)(h ^ (h >> 31)) % DIRTY_BUCKETS;
}

static struct dbuf *dirty_find(struct data *d, uint64_t ino, uint64_t blk)
{
	struct dbuf *b = d->dirty_hash[dirty_bucket(ino, blk)];
	while (b && (b->ino != ino || b->blk != blk))
		b = b->hnext;
	return b;
}

static struct dbuf *dirty_new(struct data *d, uint64_t ino, uint64_t blk)
{
	struct dbuf *b = d->dbuf_pool;
	if (b) {
		d->dbuf_pool = b->next;
	} else {
		b = calloc(1, sizeof(*b));
		if (!b)
			return NULL;
		b->buf = malloc(DATA_BLOCK_SIZE);
		if (!b->buf) {
			free(b);
			return NULL;
		}
	}
	b->ino = ino;
	b->blk = blk;
	b->len = 0;
	size_t h = dirty_bucket(ino, blk);
	b->hnext = d->dirty_hash[h];
	d->dirty_hash[h] = b;
	b->next = NULL;
	b->prev = d->dirty_tail;
	if (d->dirty_tail)
		d->dirty_tail->next = b;
	else
		d->dirty_head = b;
	d->dirty_tail = b;
	d->dirty_bytes += DATA_BLOCK_SIZE;
	return b;
}

static void dirty_release(struct data *d, struct dbuf *b)
{
	struct dbuf **pp = &d->dirty_hash[dirty_bucket(b->ino, b->blk)];
	while (*pp != b)
		pp = &(*pp)->hnext;
	*pp = b->hnext;
	if (b->prev)
		b->prev->next = b->next;
	else
		d->dirty_head = b->next;
	if (b->next)
		b->next->prev = b->prev;
	else
		d->dirty_tail = b->prev;
	d->dirty_bytes -= DATA_BLOCK_SIZE;
	b->next = d->dbuf_pool;
	d->dbuf_pool = b;
}

/* ---- segments ---- */

static struct seg *seg_alloc(struct data *d)
{
	struct seg *s = d->seg_pool;
	if (s) {
		d->seg_pool = s->next;
	} else {
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
		s->cap = d->p.segment_size + frame_cap() + 4096;
		s->buf = malloc(s->cap);
		if (!s->buf) {
			free(s);
			return NULL;
		}
	}
	s->len = 0;
	s->nents = 0;
	s->sealno = 0;
	s->uploading = 0;
	s->keep = 0;
	s->carried = 0;
	s->failures = 0;
	s->fail_since_ns = 0;
	s->retry_at_ns = 0;
	s->next = NULL;
	return s;
}

static void seg_recycle(struct data *d, struct seg *s)
{
	s->next = d->seg_pool;
	d->seg_pool = s;
}

static int seg_open(struct data *d)
{
	if (d->next_seg == UINT32_MAX) {
		log_error("segment numbers of this mount are exhausted; remount");
		return -ENOSPC;
	}
	struct seg *s = seg_alloc(d);
	if (!s)
		return -ENOMEM;
	s->id = ((uint64_t)d->p.epoch << 32) | d->next_seg++;
	int rc = idx_segment_create(d->ix, s->id);
	if (rc < 0) {
		seg_recycle(d, s);
		return rc;
	}
	d->open = s;
	return 0;
}

static void seg_unlink_sealed(struct data *d, struct seg *s);

/* Append s to the sealed segments with the next seal number; queue it for
 * upload unless it is kept in memory only. */
static void seg_enqueue_sealed(struct data *d, struct seg *s)
{
	s->sealno = ++d->sealno;
	if (d->sealed_tail)
		d->sealed_tail->next = s;
	else
		d->sealed_head = s;
	d->sealed_tail = s;
	if (!s->keep) {
		d->pending_bytes += s->len;
		pthread_cond_signal(&d->work);
	}
}

static struct seg *seg_in_memory(struct data *d, uint64_t id)
{
	if (d->open && d->open->id == id)
		return d->open;
	for (struct seg *s = d->sealed_head; s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

/* Append the trailer and footer, record the size, queue for upload. */
static int seg_seal(struct data *d)
{
	struct seg *s = d->open;
	if (!s)
		return 0;
	if (s->nents == 0) {
		/* Nothing in it: keep it open rather than store an empty object. */
		return 0;
	}
	size_t tlen = 4 + (size_t)s->nents * 28;
	CLEANUP_FREE uint8_t *t = malloc(tlen);
	if (!t)
		return -ENOMEM;
	put_le32(t, s->nents);
	for (uint32_t i = 0; i < s->nents; i++) {
		uint8_t *p = t + 4 + (size_t)i * 28;
		put_le64(p, s->ents[i].ino);
		put_le64(p + 8, s->ents[i].blk);
		put_le32(p + 16, s->ents[i].off);
		put_le32(p + 20, s->ents[i].len);
		put_le32(p + 24, s->ents[i].plen);
	}
	size_t need = s->len + seal_frame_bound(tlen) + DATA_FOOTER_BYTES;
	if (need > s->cap) {
		uint8_t *nb = realloc(s->buf, need);
		if (!nb)
			return -ENOMEM;
		s->buf = nb;
		s->cap = need;
	}
	uint8_t ad[SEAL_AD_BYTES];
	seal_ad_meta(ad, 'T', s->id);
	ssize_t n = seal_frame_encode(&d->key, ad, sizeof(ad), t, tlen, s->buf + s->len,
				      s->cap - s->len, 1);
	if (n < 0)
		return (int)n;
	uint8_t *f = s->buf + s->len + n;
	memcpy(f, "ZSEG", 4);
	put_le32(f + 4, DATA_SEG_VERSION);
	put_le32(f + 8, (uint32_t)s->len);
	put_le32(f + 12, (uint32_t)n);
	s->len += (size_t)n + DATA_FOOTER_BYTES;

	int rc = idx_segment_seal(d->ix, s->id, s->len, s->nents);
	if (rc < 0)
		return rc;
	d->open = NULL;
	seg_enqueue_sealed(d, s);
	return 0;
}

/* Seal plen bytes of block (ino, blk) into the open segment and point the
 * extent map at it.  An all-zero block becomes a hole.  With cache set, the
 * block also goes into the memory cache under its new frame: a block
 * written in part (a database page, a log being appended to) is likely to
 * be written in part again soon, and reading it back for that would mean
 * fetching and opening the frame just made. */
static int pack_block(struct data *d, uint64_t ino, uint64_t blk, const uint8_t *plain,
		      uint32_t plen, int cache)
{
	while (plen > 0 && plain[plen - 1] == 0)
		plen--;
	if (plen == 0)
		return idx_extent_delete_range(d->ix, ino, blk, blk + 1);

	if (d->open && d->open->len + frame_cap() > d->p.segment_size) {
		int rc = seg_seal(d);
		if (rc < 0)
			return rc;
	}
	if (!d->open) {
		int rc = seg_open(d);
		if (rc < 0)
			return rc;
	}
	struct seg *s = d->open;
	if (s->nents == s->entcap) {
		uint32_t nc = s->entcap ? s->entcap * 2 : 256;
		struct trailer_ent *ne = realloc(s->ents, nc * sizeof(*ne));
		if (!ne)
			return -ENOMEM;
		s->ents = ne;
		s->entcap = nc;
	}
	uint8_t ad[SEAL_AD_BYTES];
	seal_ad_data(ad, s->id, s->nents, ino, blk);
	ssize_t n = seal_frame_encode(&d->key, ad, sizeof(ad), plain, plen, s->buf + s->len,
				      s->cap - s->len, d->p.compress);
	if (n < 0)
		return (int)n;
	struct idx_extent e = {
		.blk = blk,
		.seg = s->id,
		.off = (uint32_t)s->len,
		.len = (uint32_t)n,
		.plen = plen,
		.frame = s->nents,
	};
	int rc = idx_extent_set(d->ix, ino, &e);
	if (rc < 0)
		return rc;
	s->ents[s->nents++] = (struct trailer_ent){ino, blk, e.off, e.len, plen};
	s->len += (size_t)n;
	if (cache)
		bcache_put(d->cache, e.seg, e.off, plain, plen);
	return 0;
}

static int dirty_pack(struct data *d, struct dbuf *b)
{
	int rc = pack_block(d, b->ino, b->blk, b->buf, b->len, 1);
	if (rc == 0)
		dirty_release(d, b);
	return rc;
}

/* ---- reading frames ---- */

/* Open frame (clobbered) into out.  direct: out has SEAL_HDR_BYTES of
 * room before it, and a frame stored raw is decrypted in place there. */
static int decode_frame_at(struct data *d, uint64_t ino, const struct idx_extent *e,
			   uint8_t *frame, uint8_t *out, int direct)
{
	uint8_t ad[SEAL_AD_BYTES];
	seal_ad_data(ad, e->seg, e->frame, ino, e->blk);
	ssize_t n = direct ? seal_frame_decode_direct(&d->key, ad, sizeof(ad), frame, e->len,
						      out, DATA_BLOCK_SIZE)
			   : seal_frame_decode(&d->key, ad, sizeof(ad), frame, e->len, out,
					       DATA_BLOCK_SIZE);
	if (n == -ENOMEM)
		return -ENOMEM;
	if (n < 0 || (uint32_t)n != e->plen) {
		char key[64];
		seg_key(key, sizeof(key), e->seg);
		log_error("object %s: frame %u at offset %u (inode %" PRIu64 ", block %" PRIu64
			  ") failed authentication",
			  key, e->frame, e->off, ino, e->blk);
		return -EIO;
	}
	return 0;
}

static int decode_frame(struct data *d, uint64_t ino, const struct idx_extent *e,
			uint8_t *frame, uint8_t *out)
{
	return decode_frame_at(d, ino, e, frame, out, 0);
}

/* The frames of one ranged read: extents of one segment within a window
 * of bytes [lo, hi) no larger than the read buffer.  Frames of a file
 * written sequentially lie close together but not always in block order
 * (the kernel writes back in parallel), so the window may hold a few frames
 * that are not wanted: they cost bytes, not requests. */
struct run {
	struct idx_extent e[RUN_MAX];
	int n;
	uint64_t lo, hi;
};

/* The extents a run is chosen from, in block order. */
struct cands {
	struct idx_extent e[CAND_MAX];
	int n;
};

static int cand_collect(void *arg, const struct idx_extent *e)
{
	struct cands *c = arg;
	c->e[c->n++] = *e;
	return c->n == CAND_MAX;
}

/* Is a ranged read of this frame under way (by a reader or the read-ahead)? */
static int in_flight(struct data *d, uint64_t seg, uint32_t off)
{
	for (int i = 0; i < RA_SLOTS; i++)
		if (d->infl[i].used && d->infl[i].seg == seg && off >= d->infl[i].start &&
		    off < d->infl[i].end)
			return 1;
	return 0;
}

/* Read the frames of run r (its first n) in one ranged read, open them and
 * put them in the cache.  Called with the lock held; drops it for the I/O.
 * Returns the result for the first frame. */
static int load_run(struct data *d, uint64_t ino, struct run *r)
{
	int slot = -1;
	for (int i = 0; i < RA_SLOTS && slot < 0; i++)
		if (!d->infl[i].used)
			slot = i;
	uint64_t off = r->lo;
	size_t len = (size_t)(r->hi - r->lo);
	if (slot >= 0)
		d->infl[slot] = (struct inflight){r->e[0].seg, (uint32_t)r->lo, (uint32_t)r->hi, 1};
	char key[64];
	seg_key(key, sizeof(key), r->e[0].seg);

	pthread_mutex_unlock(d->lock);
	ssize_t got = store_get(d->st, key, off, len, tls_run);
	int rc = 0;
	if (got < 0) {
		log_error("object %s: read of %zu bytes at %" PRIu64 " failed: %s", key, len, off,
			  strerror((int)-got));
		rc = got == -ENOENT ? -EIO : (int)got;
	} else if ((size_t)got < len) {
		log_error("object %s: truncated (wanted %zu bytes at %" PRIu64 ", got %zd)", key,
			  len, off, got);
		rc = -EIO;
	}
	for (int i = 0; rc == 0 && i < r->n; i++) {
		uint8_t *frame = tls_run + (r->e[i].off - off);
		/* Decoded straight into a cache entry when one can be had. */
		struct bcache_slot *bs = bcache_slot(d->cache);
		uint8_t *out = bs ? bcache_slot_buf(bs) : tls_block;
		int drc = decode_frame_at(d, ino, &r->e[i], frame, out, bs != NULL);
		if (drc < 0) {
			if (bs)
				bcache_drop(d->cache, bs);
			/* Only the frame asked for decides the result. */
			if (i == 0)
				rc = drc;
			continue;
		}
		if (bs)
			bcache_fill(d->cache, bs, r->e[i].seg, r->e[i].off, r->e[i].plen);
		else
			bcache_put(d->cache, r->e[i].seg, r->e[i].off, tls_block, r->e[i].plen);
	}
	pthread_mutex_lock(d->lock);
	if (slot >= 0)
		d->infl[slot].used = 0;
	pthread_cond_broadcast(&d->ra_done);
	if (rc < 0)
		d->store_errors++;
	return rc;
}

/* The run of extent all->e[first]: it, and the other extents of all in the
 * same segment that are neither cached nor being read, as long as the
 * window stays within max_frames frames (at most RUN_MAX, the read
 * buffer). */
static void build_run(struct data *d, const struct cands *all, int first, int max_frames,
		      struct run *r)
{
	const struct idx_extent *f = &all->e[first];
	const uint64_t cap = frame_cap() * (uint64_t)max_frames;
	r->e[0] = *f;
	r->n = 1;
	r->lo = f->off;
	r->hi = (uint64_t)f->off + f->len;
	for (int i = 0; i < all->n && r->n < max_frames; i++) {
		const struct idx_extent *e = &all->e[i];
		if (i == first || e->seg != f->seg || bcache_has(d->cache, e->seg, e->off) ||
		    in_flight(d, e->seg, e->off))
			continue;
		uint64_t lo = MIN(r->lo, (uint64_t)e->off);
		uint64_t hi = MAX(r->hi, (uint64_t)e->off + e->len);
		if (hi - lo > cap)
			continue;
		r->e[r->n++] = *e;
		r->lo = lo;
		r->hi = hi;
	}
}

/* The extents of ino's blocks [blk, end), at most CAND_MAX. */
static int block_extents(struct data *d, uint64_t ino, uint64_t blk, uint64_t end,
			 struct cands *all)
{
	all->n = 0;
	return idx_extent_range(d->ix, ino, blk, end, cand_collect, all);
}

static int fetch_run(struct data *d, uint64_t ino, const struct idx_extent *first)
{
	struct cands all;
	struct run r;
	int rc = block_extents(d, ino, first->blk, (first->blk / MISS_BLOCKS + 1) * MISS_BLOCKS,
			       &all);
	if (rc < 0)
		return rc;
	/* all->e[0] is first itself (the lock is held since it was looked up),
	 * unless the map changed under a caller that dropped it: then first
	 * alone. */
	if (all.n == 0 || all.e[0].blk != first->blk || all.e[0].seg != first->seg ||
	    all.e[0].off != first->off) {
		all.e[0] = *first;
		all.n = 1;
	}
	build_run(d, &all, 0, MISS_BLOCKS, &r);
	return load_run(d, ino, &r);
}

/* ---- read-ahead ----
 * A reader that goes block after block through a file is a stream; the
 * read-ahead threads fetch the next RA_RUNS chunks of a stream before it
 * asks, so store latency overlaps with the reader and decoding runs on
 * another core. */

/* Queue the read-ahead of blocks [blk, end) of ino: at the back, or at the
 * front for the rest of a chunk under way, which the reader needs first. */
static void ra_queue(struct data *d, uint64_t ino, uint64_t blk, uint64_t end, int front)
{
	if (d->raq_n == RA_SLOTS)
		return; /* read-ahead is a hint: drop it when busy */
	if (front) {
		d->raq_head = (d->raq_head + RA_SLOTS - 1) % RA_SLOTS;
		d->raq[d->raq_head] = (struct ra_task){ino, blk, end};
		d->raq_n++;
	} else {
		d->raq[(d->raq_head + d->raq_n++) % RA_SLOTS] = (struct ra_task){ino, blk, end};
	}
	pthread_cond_signal(&d->ra_work);
}

/* A read of blocks [blk, last] of ino.  A read that starts right after the
 * previous one makes a stream.  Reads of a stream may arrive out of order
 * (the kernel's read-ahead goes to several FUSE workers), so a read a
 * little behind the stream's head or just past it continues the stream,
 * but such reads alone start one only after two in a row: a random reader
 * must not start read-ahead. */
static void ra_note(struct data *d, uint64_t ino, uint64_t blk, uint64_t last)
{
	/* Several readers may go through one file at different places (NBD
	 * clients with several connections do): a stream is found by inode
	 * and position, and a read that continues none replaces the stream
	 * used least recently; of the same file's once it has RA_PER_FILE,
	 * so that a random reader cannot spread near-misses over many streams
	 * and start read-ahead by chance. */
	struct ra_stream *s = NULL, *oldest = &d->streams[0], *oldest_mine = NULL;
	int exact = 0, near = 0, mine = 0;
	for (int i = 0; i < RA_STREAMS && !exact; i++) {
		struct ra_stream *c = &d->streams[i];
		if (c->used < oldest->used)
			oldest = c;
		if (c->ino != ino || !c->used)
			continue;
		mine++;
		if (!oldest_mine || c->used < oldest_mine->used)
			oldest_mine = c;
		if (blk == c->last + 1) {
			s = c;
			exact = 1;
		} else if (!near && blk <= c->last + RA_NEAR && blk + 2 * RA_NEAR >= c->last) {
			s = c;
			near = 1;
		}
	}
	uint64_t now = util_now_ns();
	if (!s) {
		struct ra_stream *v = mine >= RA_PER_FILE ? oldest_mine : oldest;
		*v = (struct ra_stream){.ino = ino, .last = last, .used = now};
		return;
	}
	s->used = now;
	s->hits = exact ? MAX(s->hits, 2) : s->hits + 1;
	s->last = MAX(s->last, last);
	if (s->hits < 2)
		return;
	/* What is read ahead must still be cached when its reader comes: the
	 * streams read in the last second share half of the cache (a small
	 * cache_size, or many readers, shrink each one's window). */
	uint64_t active = 0;
	for (int i = 0; i < RA_STREAMS; i++)
		active += d->streams[i].hits >= 2 && now - d->streams[i].used < 1000000000ULL;
	const uint64_t window =
		MAX((uint64_t)RA_CHUNK, MIN((uint64_t)RA_CHUNK * RA_RUNS,
					    d->p.cache_size / DATA_BLOCK_SIZE / 2 / MAX(active, 1)));
	uint64_t horizon = s->last + window;
	if (s->next <= s->last)
		s->next = s->last + 1;
	/* The rest of the chunk the reader is in, then whole aligned chunks. */
	while (s->next < horizon && d->raq_n < RA_SLOTS) {
		uint64_t end = (s->next / RA_CHUNK + 1) * RA_CHUNK;
		ra_queue(d, ino, s->next, end, 0);
		s->next = end;
	}
}

/* Fetch what is missing of blocks [blk, end) of ino (a chunk, or the rest of
 * one): one ranged read.  The next chunk's extents are candidates too, so
 * that a run takes along its frames that lie in the same window of the
 * segment (writeback does not always pack a file in block order): fewer,
 * larger requests.  What the run leaves of [blk, end) is queued at the front
 * for another thread, so the parts of a chunk are read in parallel. */
static void ra_fetch(struct data *d, uint64_t ino, uint64_t blk, uint64_t end)
{
	struct cands all;
	struct run r;
	if (d->stop || block_extents(d, ino, blk, end + RA_CHUNK, &all) < 0)
		return;
	int first = -1;
	for (int i = 0; i < all.n && first < 0 && all.e[i].blk < end; i++) {
		const struct idx_extent *e = &all.e[i];
		if (!dirty_find(d, ino, e->blk) && !seg_in_memory(d, e->seg) &&
		    !bcache_has(d->cache, e->seg, e->off) && !in_flight(d, e->seg, e->off))
			first = i;
	}
	if (first < 0)
		return;
	build_run(d, &all, first, RUN_MAX, &r);
	/* The next block of [blk, end) the run leaves out, if any. */
	for (int i = first + 1; i < all.n && all.e[i].blk < end; i++) {
		int taken = 0;
		for (int k = 1; k < r.n && !taken; k++)
			taken = r.e[k].blk == all.e[i].blk;
		if (!taken) {
			ra_queue(d, ino, all.e[i].blk, end, 1);
			break;
		}
	}
	/* The lock is dropped for the read; the queued rest looks at the map
	 * again, and skips what is cached or being read by then. */
	load_run(d, ino, &r);
}

static void *ra_main(void *arg)
{
	struct data *d = arg;
	if (tls_buffers() < 0)
		return NULL;
	pthread_mutex_lock(d->lock);
	while (!d->stop) {
		if (d->raq_n == 0) {
			pthread_cond_wait(&d->ra_work, d->lock);
			continue;
		}
		struct ra_task t = d->raq[d->raq_head];
		d->raq_head = (d->raq_head + 1) % RA_SLOTS;
		d->raq_n--;
		ra_fetch(d, t.ino, t.blk, t.end);
	}
	pthread_mutex_unlock(d->lock);
	return NULL;
}

/* Copy len bytes at boff of block (ino, blk) into out, or with pin, if the
 * block is in the memory cache, pin them there; *hole tells whether the
 * block is a hole.  Holds the lock on entry and exit; may drop it to read
 * the store. */
static int read_block(struct data *d, uint64_t ino, uint64_t blk, size_t boff, size_t len,
		      uint8_t *out, int *hole, struct data_pin *pin)
{
	*hole = 0;
	if (pin)
		pin->p = NULL;
	for (int tries = 0; tries < 8; tries++) {
		struct dbuf *b = dirty_find(d, ino, blk);
		if (b) {
			memcpy(out, b->buf + boff, len);
			return 0;
		}
		struct idx_extent e;
		int rc = idx_extent_get(d->ix, ino, blk, &e);
		if (rc == -ENOENT) {
			memset(out, 0, len);
			*hole = 1;
			return 0;
		}
		if (rc < 0)
			return rc;
		if (pin) {
			size_t plen;
			const uint8_t *p = bcache_pin(d->cache, e.seg, e.off, &plen, &pin->pin);
			if (p && boff + len <= plen) {
				pin->p = p + boff;
				return 0;
			}
			if (p) /* a short block: the zeros after it are copied */
				bcache_unpin(d->cache, pin->pin);
		}
		if (bcache_get(d->cache, e.seg, e.off, out, boff, len) >= 0)
			return 0;
		struct seg *s = seg_in_memory(d, e.seg);
		if (!s && in_flight(d, e.seg, e.off)) {
			/* Someone is reading it already: wait for them. */
			pthread_cond_wait(&d->ra_done, d->lock);
			tries--;
			continue;
		}
		if (s) {
			memcpy(tls_frame, s->buf + e.off, e.len);
			rc = decode_frame(d, ino, &e, tls_frame, tls_block);
			if (rc < 0)
				return rc;
			bcache_put(d->cache, e.seg, e.off, tls_block, e.plen);
			size_t have = boff < e.plen ? MIN(len, e.plen - boff) : 0;
			memcpy(out, tls_block + boff, have);
			memset(out + have, 0, len - have);
			return 0;
		}
		rc = fetch_run(d, ino, &e);
		if (rc < 0)
			return rc;
		/* The lock was dropped: look again (the block may have changed, or
		 * the cache may have evicted it already under pressure). */
	}
	log_error("inode %" PRIu64 " block %" PRIu64 ": could not be read (cache too small?)",
		  ino, blk);
	return -EIO;
}

ssize_t data_read(struct data *d, uint64_t ino, uint64_t off, size_t len, void *buf)
{
	return data_read_map(d, ino, off, len, buf, NULL, NULL, NULL);
}

ssize_t data_read_map(struct data *d, uint64_t ino, uint64_t off, size_t len, void *buf,
		      data_map_cb cb, void *arg, struct data_pin *pins)
{
	if (len == 0)
		return 0;
	ra_note(d, ino, off >> DATA_BLOCK_SHIFT, (off + len - 1) >> DATA_BLOCK_SHIFT);
	int rc = tls_buffers();
	if (rc < 0)
		return rc;
	uint8_t *out = buf;
	size_t done = 0;
	while (done < len) {
		uint64_t pos = off + done;
		uint64_t blk = pos >> DATA_BLOCK_SHIFT;
		size_t boff = (size_t)(pos & (DATA_BLOCK_SIZE - 1));
		size_t n = MIN(len - done, DATA_BLOCK_SIZE - boff);
		int hole;
		rc = read_block(d, ino, blk, boff, n, out + done, &hole,
				pins ? &pins[blk - data_first_blk(off)] : NULL);
		if (rc < 0)
			return rc;
		if (cb)
			cb(arg, pos, n, !hole);
		done += n;
	}
	return (ssize_t)len;
}

void data_unpin(struct data *d, struct data_pin *pins, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (pins[i].p) {
			bcache_unpin(d->cache, pins[i].pin);
			pins[i].p = NULL;
		}
}

/* ---- writing ---- */

/* The dirty buffer of (ino, blk), made from the block's current content
 * when there is none.  NULL with *rc set on failure. */
static struct dbuf *dirty_get(struct data *d, uint64_t ino, uint64_t blk, int *rc)
{
	for (int tries = 0;; tries++) {
		struct dbuf *b = dirty_find(d, ino, blk);
		if (b)
			return b;
		struct idx_extent e, now;
		*rc = idx_extent_get(d->ix, ino, blk, &e);
		uint32_t plen = 0;
		if (*rc == 0) {
			int hole;
			*rc = read_block(d, ino, blk, 0, DATA_BLOCK_SIZE, tls_rmw, &hole, NULL);
			if (*rc < 0)
				return NULL;
			/* read_block may have dropped the lock: another writer
			 * may have made the buffer meanwhile, and that one is
			 * newer; or made it, written and packed it already, and
			 * then what was read is stale: read again.  Frames are
			 * never reused, so an unchanged extent means what was
			 * read is the block's content. */
			b = dirty_find(d, ino, blk);
			if (b)
				return b;
			*rc = idx_extent_get(d->ix, ino, blk, &now);
			if (*rc < 0 && *rc != -ENOENT)
				return NULL;
			if (*rc == -ENOENT || now.seg != e.seg || now.off != e.off) {
				if (tries < 64)
					continue;
				log_error("inode %" PRIu64 " block %" PRIu64
					  ": changed under every read for modification", ino, blk);
				*rc = -EIO;
				return NULL;
			}
			plen = e.plen;
		} else if (*rc != -ENOENT) {
			return NULL;
		}
		b = dirty_new(d, ino, blk);
		if (!b) {
			*rc = -ENOMEM;
			return NULL;
		}
		if (plen)
			memcpy(b->buf, tls_rmw, DATA_BLOCK_SIZE);
		else
			memset(b->buf, 0, DATA_BLOCK_SIZE);
		b->len = plen;
		*rc = 0;
		return b;
	}
}

/* Pack the oldest dirty buffers while over the dirty limit. */
static int dirty_trim(struct data *d)
{
	while (d->dirty_bytes > d->p.dirty_limit && d->dirty_head) {
		int rc = dirty_pack(d, d->dirty_head);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Writers wait here, before touching any block, while too much is sealed
 * but not stored (back-pressure from a slow store). */
static void wait_for_space(struct data *d)
{
	while (d->pending_bytes > d->pending_limit && !d->stop)
		pthread_cond_wait(&d->space, d->lock);
}

int data_write(struct data *d, uint64_t ino, uint64_t off, const void *buf, size_t len)
{
	int rc = tls_buffers();
	if (rc < 0)
		return rc;
	wait_for_space(d);
	const uint8_t *in = buf;
	size_t done = 0;
	while (done < len) {
		uint64_t pos = off + done;
		uint64_t blk = pos >> DATA_BLOCK_SHIFT;
		size_t boff = (size_t)(pos & (DATA_BLOCK_SIZE - 1));
		size_t n = MIN(len - done, DATA_BLOCK_SIZE - boff);
		if (n == DATA_BLOCK_SIZE) {
			struct dbuf *b = dirty_find(d, ino, blk);
			if (b)
				dirty_release(d, b);
			rc = pack_block(d, ino, blk, in + done, DATA_BLOCK_SIZE, 0);
		} else {
			struct dbuf *b = dirty_get(d, ino, blk, &rc);
			if (b) {
				memcpy(b->buf + boff, in + done, n);
				b->len = MAX(b->len, (uint32_t)(boff + n));
			}
		}
		if (rc < 0)
			return rc;
		done += n;
	}
	return dirty_trim(d);
}

/* Zero [boff, bend) of one block, unless it is a hole already. */
static int zero_part(struct data *d, uint64_t ino, uint64_t blk, size_t boff, size_t bend)
{
	struct idx_extent e;
	if (!dirty_find(d, ino, blk)) {
		int rc = idx_extent_get(d->ix, ino, blk, &e);
		if (rc == -ENOENT || (rc == 0 && e.plen <= boff))
			return 0;
		if (rc < 0)
			return rc;
	}
	int rc;
	struct dbuf *b = dirty_get(d, ino, blk, &rc);
	if (!b)
		return rc;
	memset(b->buf + boff, 0, bend - boff);
	return 0;
}

int data_zero_range(struct data *d, uint64_t ino, uint64_t off, uint64_t len)
{
	if (len == 0)
		return 0;
	int rc = tls_buffers();
	if (rc < 0)
		return rc;
	uint64_t end = off + len;
	uint64_t first = data_first_blk(off), last = data_last_blk(off, len);
	uint64_t full_from = first, full_to = last + 1; /* whole blocks: [from, to) */
	size_t head = off & (DATA_BLOCK_SIZE - 1);
	size_t tail = end & (DATA_BLOCK_SIZE - 1);
	if (head) {
		size_t hend = first == last && tail ? tail : DATA_BLOCK_SIZE;
		rc = zero_part(d, ino, first, head, hend);
		if (rc < 0)
			return rc;
		full_from = first + 1;
	}
	if (tail && (last != first || !head)) {
		rc = zero_part(d, ino, last, 0, tail);
		if (rc < 0)
			return rc;
		full_to = last;
	} else if (tail) {
		full_to = last;
	}
	if (full_to > full_from) {
		for (struct dbuf *b = d->dirty_head, *n; b; b = n) {
			n = b->next;
			if (b->ino == ino && b->blk >= full_from && b->blk < full_to)
				dirty_release(d, b);
		}
		rc = idx_extent_delete_range(d->ix, ino, full_from, full_to);
		if (rc < 0)
			return rc;
	}
	return dirty_trim(d);
}

int data_drop_from(struct data *d, uint64_t ino, uint64_t first)
{
	for (struct dbuf *b = d->dirty_head, *n; b; b = n) {
		n = b->next;
		if (b->ino == ino && b->blk >= first)
			dirty_release(d, b);
	}
	return idx_extent_delete_range(d->ix, ino, first, UINT64_MAX);
}

void data_forget_inode(struct data *d, uint64_t ino)
{
	for (struct dbuf *b = d->dirty_head, *n; b; b = n) {
		n = b->next;
		if (b->ino == ino)
			dirty_release(d, b);
	}
}

int data_block_dirty(struct data *d, uint64_t ino, uint64_t blk)
{
	return dirty_find(d, ino, blk) != NULL;
}

int data_flush_inode(struct data *d, uint64_t ino)
{
	for (struct dbuf *b = d->dirty_head, *n; b; b = n) {
		n = b->next;
		if (b->ino == ino) {
			int rc = dirty_pack(d, b);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

/* ---- barrier and upload ---- */

int data_flush_all(struct data *d, uint64_t *mark)
{
	while (d->dirty_head) {
		int rc = dirty_pack(d, d->dirty_head);
		if (rc < 0)
			return rc;
	}
	int rc = seg_seal(d);
	if (rc < 0)
		return rc;
	*mark = d->sealno;
	return 0;
}

int data_wait_stored(struct data *d, uint64_t mark)
{
	uint64_t t0 = util_now_ns();
	/* A waiting barrier is worth a retry now rather than at the end of a
	 * backoff: the store may have come back. */
	for (struct seg *t = d->sealed_head; t && t->sealno <= mark; t = t->next)
		t->retry_at_ns = 0;
	pthread_cond_broadcast(&d->work);
	for (;;) {
		struct seg *s = d->sealed_head;
		if (!s || s->sealno > mark)
			return 0;
		/* Give up only when this barrier has waited store_wait_ms and a
		 * segment it needs is still failing (a slow store is waited for). */
		if (util_now_ns() - t0 > d->p.store_wait_ms * 1000000ULL) {
			for (struct seg *t = s; t && t->sealno <= mark; t = t->next) {
				if (!t->fail_since_ns)
					continue;
				char key[64];
				seg_key(key, sizeof(key), t->id);
				log_error("barrier failed: %s could not be stored for %" PRIu64
					  " ms; it stays queued and is retried",
					  key, d->p.store_wait_ms);
				return -EIO;
			}
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&d->done, d->lock, &ts);
	}
}

uint64_t data_sealno(struct data *d)
{
	return d->sealno;
}

size_t data_unstored(struct data *d, uint64_t mark, size_t max,
		     int (*cb)(void *arg, uint64_t id, const void *obj, size_t len), void *arg)
{
	size_t n = 0, total = 0;
	for (struct seg *s = d->sealed_head; s && s->sealno <= mark; s = s->next) {
		if (s->keep)
			continue;
		n++;
		total += s->len;
	}
	if (n == 0 || total > max || !cb)
		return n == 0 ? 0 : total > max ? SIZE_MAX : n;
	for (struct seg *s = d->sealed_head; s && s->sealno <= mark; s = s->next)
		if (!s->keep && cb(arg, s->id, s->buf, s->len) < 0)
			return SIZE_MAX;
	return n;
}

void data_mark_carried(struct data *d, uint64_t mark)
{
	for (struct seg *s = d->sealed_head; s && s->sealno <= mark; s = s->next)
		if (!s->keep)
			s->carried = 1;
}

int data_adopt(struct data *d, uint64_t id, const void *obj, size_t len, int upload)
{
	if (seg_in_memory(d, id))
		return 0;
	struct seg *s = seg_alloc(d);
	if (!s)
		return -ENOMEM;
	if (len > s->cap) {
		uint8_t *nb = realloc(s->buf, len);
		if (!nb) {
			seg_recycle(d, s);
			return -ENOMEM;
		}
		s->buf = nb;
		s->cap = len;
	}
	memcpy(s->buf, obj, len);
	s->len = len;
	s->id = id;
	s->keep = !upload;
	seg_enqueue_sealed(d, s);
	return 0;
}

size_t data_kept(struct data *d, uint64_t *ids, size_t max)
{
	size_t n = 0;
	for (struct seg *s = d->sealed_head; s && n < max; s = s->next)
		if (s->keep)
			ids[n++] = s->id;
	return n;
}

void data_release_kept(struct data *d, uint64_t id)
{
	for (struct seg *s = d->sealed_head; s; s = s->next)
		if (s->keep && s->id == id) {
			seg_unlink_sealed(d, s);
			seg_recycle(d, s);
			return;
		}
}

static struct seg *next_to_upload(struct data *d)
{
	for (struct seg *s = d->sealed_head; s; s = s->next)
		if (!s->uploading && !s->keep && util_now_ns() >= s->retry_at_ns)
			return s;
	return NULL;
}

static void seg_unlink_sealed(struct data *d, struct seg *s)
{
	struct seg **pp = &d->sealed_head;
	struct seg *prev = NULL;
	while (*pp != s) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	*pp = s->next;
	if (d->sealed_tail == s)
		d->sealed_tail = prev;
	s->next = NULL;
}

static void *uploader(void *arg)
{
	struct data *d = arg;
	pthread_mutex_lock(d->lock);
	while (!d->stop) {
		struct seg *s = next_to_upload(d);
		if (!s) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 100 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&d->work, d->lock, &ts);
			continue;
		}
		s->uploading = 1;
		char key[64];
		seg_key(key, sizeof(key), s->id);
		int flags = s->carried ? STORE_PUT_LAZY : 0;
		pthread_mutex_unlock(d->lock);
		int rc = store_put(d->st, key, s->buf, s->len, flags);
		pthread_mutex_lock(d->lock);
		s->uploading = 0;
		if (rc == 0) {
			seg_unlink_sealed(d, s);
			d->pending_bytes -= s->len;
			d->segments_stored++;
			seg_recycle(d, s);
			pthread_cond_broadcast(&d->space);
		} else {
			if (!s->fail_since_ns)
				s->fail_since_ns = util_now_ns();
			s->failures++;
			/* Capped exponential backoff: 0.2 s, 0.4 s, ... 6.4 s. */
			s->retry_at_ns = util_now_ns() +
					 (100000000ULL << MIN(s->failures, 6));
			d->store_errors++;
			log_warn("upload of %s failed (%s), attempt %d; will retry", key,
				 strerror(-rc), s->failures);
		}
		pthread_cond_broadcast(&d->done);
	}
	pthread_mutex_unlock(d->lock);
	return NULL;
}

struct data *data_new(struct store *st, const struct seal_key *key, struct idx *ix,
		      pthread_mutex_t *lock, const struct data_params *p)
{
	struct data *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->st = st;
	d->key = *key;
	d->ix = ix;
	d->lock = lock;
	d->p = *p;
	if (d->p.upload_threads < 1)
		d->p.upload_threads = 1;
	d->pending_limit = MAX(4 * d->p.segment_size, 64ULL << 20);
	d->cache = bcache_new(MAX(d->p.cache_size / DATA_BLOCK_SIZE, 64), DATA_BLOCK_SIZE);
	d->uploaders = calloc((size_t)d->p.upload_threads, sizeof(pthread_t));
	if (!d->cache || !d->uploaders)
		goto fail_alloc;
	pthread_cond_init(&d->work, NULL);
	pthread_cond_init(&d->done, NULL);
	pthread_cond_init(&d->space, NULL);
	pthread_cond_init(&d->ra_work, NULL);
	pthread_cond_init(&d->ra_done, NULL);
	for (int i = 0; i < RA_THREADS; i++) {
		int err = pthread_create(&d->ra_threads[i], NULL, ra_main, d);
		if (err) {
			errno = err;
			log_error("cannot start a read-ahead thread: %m");
			data_free(d);
			errno = err;
			return NULL;
		}
		d->nra++;
	}
	for (int i = 0; i < d->p.upload_threads; i++) {
		int err = pthread_create(&d->uploaders[i], NULL, uploader, d);
		if (err) {
			errno = err;
			log_error("cannot start an upload thread: %m");
			data_free(d);
			errno = err;
			return NULL;
		}
		d->nuploaders++;
	}
	return d;

fail_alloc:
	bcache_free(d->cache);
	free(d->uploaders);
	free(d);
	errno = ENOMEM;
	return NULL;
}

static void free_seg(struct seg *s)
{
	free(s->buf);
	free(s->ents);
	free(s);
}

void data_free(struct data *d)
{
	if (!d)
		return;
	pthread_mutex_lock(d->lock);
	d->stop = 1;
	pthread_cond_broadcast(&d->work);
	pthread_cond_broadcast(&d->space);
	pthread_cond_broadcast(&d->ra_work);
	pthread_mutex_unlock(d->lock);
	for (int i = 0; i < d->nuploaders; i++)
		pthread_join(d->uploaders[i], NULL);
	for (int i = 0; i < d->nra; i++)
		pthread_join(d->ra_threads[i], NULL);
	while (d->dirty_head)
		dirty_release(d, d->dirty_head);
	for (struct dbuf *b = d->dbuf_pool, *n; b; b = n) {
		n = b->next;
		free(b->buf);
		free(b);
	}
	if (d->open)
		free_seg(d->open);
	for (struct seg *s = d->sealed_head, *n; s; s = n) {
		n = s->next;
		free_seg(s);
	}
	for (struct seg *s = d->seg_pool, *n; s; s = n) {
		n = s->next;
		free_seg(s);
	}
	bcache_free(d->cache);
	pthread_cond_destroy(&d->work);
	pthread_cond_destroy(&d->done);
	pthread_cond_destroy(&d->space);
	pthread_cond_destroy(&d->ra_work);
	pthread_cond_destroy(&d->ra_done);
	free(d->uploaders);
	sodium_memzero(&d->key, sizeof(d->key));
	free(d);
}

void data_get_stats(struct data *d, struct data_stats *out)
{
	out->dirty_bytes = d->dirty_bytes;
	out->pending_bytes = d->pending_bytes;
	out->segments_stored = d->segments_stored;
	out->store_errors = d->store_errors;
	bcache_counts(d->cache, &out->cache_hits, &out->cache_misses);
}

/* ---- garbage collection and checks ---- */

int data_seg_busy(struct data *d, uint64_t seg)
{
	return seg_in_memory(d, seg) != NULL;
}

int data_relocate(struct data *d, uint64_t ino, const struct idx_extent *e, const void *plain)
{
	struct idx_extent cur;
	if (dirty_find(d, ino, e->blk))
		return 0; /* being rewritten: the old frame dies at the next pack */
	int rc = idx_extent_get(d->ix, ino, e->blk, &cur);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	if (cur.seg != e->seg || cur.frame != e->frame)
		return 0; /* rewritten or punched since the caller looked */
	rc = pack_block(d, ino, e->blk, plain, e->plen, 0);
	return rc < 0 ? rc : 1;
}

int data_parse_segment(const struct seal_key *key, uint64_t seg, uint8_t *obj,
		       size_t len, struct data_frame **framesp, uint32_t *np)
{
	char name[64];
	seg_key(name, sizeof(name), seg);
	if (len < DATA_FOOTER_BYTES || memcmp(obj + len - DATA_FOOTER_BYTES, "ZSEG", 4) != 0) {
		log_error("object %s: no segment footer (truncated or not a segment)", name);
		return -EUCLEAN;
	}
	const uint8_t *f = obj + len - DATA_FOOTER_BYTES;
	uint32_t version = get_le32(f + 4), toff = get_le32(f + 8), tlen = get_le32(f + 12);
	if (version != DATA_SEG_VERSION || (uint64_t)toff + tlen + DATA_FOOTER_BYTES != len) {
		log_error("object %s: bad segment footer (version %u, trailer %u+%u, size %zu)",
			  name, version, toff, tlen, len);
		return -EUCLEAN;
	}
	/* The trailer may be compressed: size its plaintext by the most frames
	 * the segment can hold (a frame is at least a nonce and a tag). */
	size_t cap = 4 + 28 * ((size_t)toff / (SEAL_NONCE_BYTES + SEAL_TAG_BYTES) + 1);
	CLEANUP_FREE uint8_t *t = malloc(cap);
	if (!t)
		return -ENOMEM;
	uint8_t ad[SEAL_AD_BYTES];
	seal_ad_meta(ad, 'T', seg);
	ssize_t n = seal_frame_decode(key, ad, sizeof(ad), obj + toff, tlen, t, cap);
	if (n == -ENOMEM)
		return -ENOMEM;
	if (n < 4 || (size_t)n != 4 + (size_t)get_le32(t) * 28) {
		log_error("object %s: its trailer failed authentication", name);
		return -EUCLEAN;
	}
	uint32_t nf = get_le32(t);
	struct data_frame *fr = calloc(nf ? nf : 1, sizeof(*fr));
	if (!fr)
		return -ENOMEM;
	for (uint32_t i = 0; i < nf; i++) {
		const uint8_t *p = t + 4 + (size_t)i * 28;
		fr[i] = (struct data_frame){
			.ino = get_le64(p),
			.blk = get_le64(p + 8),
			.off = get_le32(p + 16),
			.len = get_le32(p + 20),
			.plen = get_le32(p + 24),
		};
		if ((uint64_t)fr[i].off + fr[i].len > toff || fr[i].plen > DATA_BLOCK_SIZE) {
			log_error("object %s: trailer entry %u out of range", name, i);
			free(fr);
			return -EUCLEAN;
		}
	}
	*framesp = fr;
	*np = nf;
	return 0;
}

int data_open_frame(const struct seal_key *key, uint64_t seg, uint32_t frame,
		    const struct data_frame *f, uint8_t *obj, uint8_t *out)
{
	uint8_t ad[SEAL_AD_BYTES];
	seal_ad_data(ad, seg, frame, f->ino, f->blk);
	ssize_t n = seal_frame_decode(key, ad, sizeof(ad), obj + f->off, f->len, out,
				      DATA_BLOCK_SIZE);
	if (n == -ENOMEM)
		return -ENOMEM;
	if (n < 0 || (uint32_t)n != f->plen) {
		char name[64];
		seg_key(name, sizeof(name), seg);
		log_error("object %s: frame %u at offset %u (inode %" PRIu64 ", block %" PRIu64
			  ") failed authentication",
			  name, frame, f->off, f->ino, f->blk);
		return -EIO;
	}
	return 0;
}

int data_put_block(struct data *d, uint64_t ino, uint64_t blk, const void *plain, uint32_t plen)
{
	struct dbuf *b = dirty_find(d, ino, blk);
	if (b)
		dirty_release(d, b); /* the stream's block replaces it */
	return pack_block(d, ino, blk, plain, plen, 0);
}
