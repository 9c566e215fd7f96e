/* journal.c: barriers (group commit), the index log and checkpoints, and
 * recovery.  The protocol is described in journal.h. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>

#include "common/crashpt.h"
#include "common/util.h"
#include "journal/journal.h"
#include "journal/lease.h"
#include "log.h"

/* An index log sealed and waiting to be stored.  It is sealed once, so a
 * retried put sends the same bytes and a 412 can be told apart: our own
 * earlier attempt (same bytes) or another writer's log (fenced). */
struct pending_log {
	uint64_t seq;
	void *obj;
	size_t len;
	struct pending_log *next;
};

struct jnl {
	struct store *st;
	struct seal_key key;
	struct idx *ix;
	struct data *d;
	pthread_mutex_t *fs_lock;
	struct jnl_params p;

	pthread_mutex_t m; /* everything below */
	pthread_cond_t cond;       /* a barrier completed */
	pthread_cond_t timer_cond; /* stop the periodic barrier */
	uint64_t started, completed, ok; /* barrier numbers */
	int running;
	uint64_t seq, ckpt;             /* newest log taken; newest checkpoint */
	uint64_t fence_seq;             /* first log of this mount: marked, never pruned */
	int fence_marked;
	uint64_t stored;                /* newest log stored */
	int snap_want;                  /* the next barrier captures an image */
	int want_stored;                /* barriers wait for all data (jnl_sync_stored) */
	void *snap_image;               /* ... here, as of barrier snap_seq */
	size_t snap_len;
	uint64_t snap_seq;
	struct pending_log *pending, *pending_tail;
	int last_rc;
	struct jnl_stats stats;
	uint64_t lease_checked_ns;      /* start of the last good lease check */

	/* The checkpoint writer: one image at a time, stored and pruned off the
	 * barrier's path (ck_busy from hand-over to the end of its prune). */
	pthread_cond_t ck_cond;
	void *ck_image;
	size_t ck_len;
	uint64_t ck_seq;
	uint64_t ck_mark; /* data seal mark of barrier ck_seq */
	int ck_busy;
	pthread_t ck_thread;
	int ck_running;

	pthread_t timer;
	int timer_running;
	int stop;
};

/* A barrier reads the lease again when its last check is older than this.
 * Safety does not rest on the check: index objects are written if absent
 * and a fenced writer finds its sequence number taken (store_fence_mark).
 * The check makes a writer that was taken over stop at its next barrier
 * instead of when it next collides, at one GET a second under load. */
#define LEASE_RECHECK_NS (1000 * 1000000ULL)

/* A log that carries segments: its plaintext is
 *   "ZLG2" | u32 count | count x (u64 segment id | u32 length | object) |
 *   changeset
 * (a plain changeset starts with 'T' or 'P', never 'Z').  A barrier whose
 * unstored segments take at most LOG_CARRY_MAX bytes puts them in its log
 * instead of waiting for their upload, so the barrier is one PUT (the
 * segments' own uploads go on beside it).  Recovery stores a carried
 * segment again when the index still names it and the store lacks it. */
#define LOG_MAGIC "ZLG2"
#define LOG_CARRY_MAX (1024 * 1024)

struct carry_buf {
	uint8_t *p;
	size_t len, cap;
	uint32_t n;
};

static int carry_reserve(struct carry_buf *c, size_t more)
{
	if (c->len + more <= c->cap)
		return 0;
	size_t cap = MAX(c->cap * 2, c->len + more);
	uint8_t *np = realloc(c->p, cap);
	if (!np)
		return -ENOMEM;
	c->p = np;
	c->cap = cap;
	return 0;
}

static int carry_one(void *arg, uint64_t id, const void *obj, size_t len)
{
	struct carry_buf *c = arg;
	if (len > UINT32_MAX || carry_reserve(c, 12 + len) < 0)
		return -ENOMEM;
	put_le64(c->p + c->len, id);
	put_le32(c->p + c->len + 8, (uint32_t)len);
	memcpy(c->p + c->len + 12, obj, len);
	c->len += 12 + len;
	c->n++;
	return 0;
}

/* Prefix changeset *cs with the segments up to mark that are not stored,
 * when they fit in LOG_CARRY_MAX: *carried = 1 then, and *cs is the new
 * payload (the old one freed).  Caller holds the fs lock. */
static int carry_segments(struct jnl *j, uint64_t mark, void **cs, size_t *len, int *carried)
{
	struct carry_buf c = {0};
	*carried = 0;
	if (carry_reserve(&c, 8 + *len + 64 * 1024) < 0)
		return -ENOMEM;
	memcpy(c.p, LOG_MAGIC, 4);
	c.len = 8;
	size_t n = data_unstored(j->d, mark, LOG_CARRY_MAX, carry_one, &c);
	if (n == 0 || n == SIZE_MAX || c.n != n) {
		free(c.p);
		return 0; /* nothing to carry, or too much: the barrier waits */
	}
	put_le32(c.p + 4, c.n);
	if (carry_reserve(&c, *len) < 0) {
		free(c.p);
		return -ENOMEM;
	}
	memcpy(c.p + c.len, *cs, *len);
	c.len += *len;
	free(*cs);
	*cs = c.p;
	*len = c.len;
	*carried = 1;
	return 0;
}

/* Split a log's plaintext into its changeset and the segments it carries
 * (cb, if not NULL, gets each).  -EUCLEAN when the layout is broken. */
static int log_parse(const uint8_t *p, size_t len, const uint8_t **cs, size_t *cslen,
		     int (*cb)(void *arg, uint64_t id, const uint8_t *obj, size_t len),
		     void *arg)
{
	if (len < 8 || memcmp(p, LOG_MAGIC, 4) != 0) {
		*cs = p;
		*cslen = len;
		return 0;
	}
	uint32_t n = get_le32(p + 4);
	size_t off = 8;
	for (uint32_t i = 0; i < n; i++) {
		if (len - off < 12)
			return -EUCLEAN;
		uint64_t id = get_le64(p + off);
		uint32_t olen = get_le32(p + off + 8);
		if (len - off - 12 < olen)
			return -EUCLEAN;
		if (cb) {
			int rc = cb(arg, id, p + off + 12, olen);
			if (rc < 0)
				return rc;
		}
		off += 12 + (size_t)olen;
	}
	*cs = p + off;
	*cslen = len - off;
	return 0;
}

static void meta_key(char *out, size_t n, char kind, uint64_t seq)
{
	snprintf(out, n, "meta/%s/%016" PRIx64, kind == 'L' ? "log" : "ckpt", seq);
}

/* Seal a metadata object: plen u64 | frame, lz4-compressed when compress
 * is set.  *obj is malloc'd. */
static int meta_seal(const struct seal_key *key, char kind, uint64_t seq, const void *data,
		     size_t len, int compress, void **objp, size_t *objlen)
{
	size_t cap = 8 + seal_frame_bound(len);
	uint8_t *obj = malloc(cap);
	if (!obj)
		return -ENOMEM;
	uint8_t ad[SEAL_AD_BYTES];
	seal_ad_meta(ad, kind, seq);
	put_le64(obj, len);
	ssize_t n = seal_frame_encode(key, ad, sizeof(ad), data, len, obj + 8, cap - 8,
				       compress);
	if (n < 0) {
		free(obj);
		return (int)n;
	}
	*objp = obj;
	*objlen = 8 + (size_t)n;
	return 0;
}

/* Store a sealed metadata object if its key is free.  Index objects are
 * never replaced: a key taken by different bytes means another writer has
 * written this sequence number, and this mount is fenced (-ESTALE).  The
 * same bytes mean our own earlier attempt whose answer was lost. */
static int meta_store_named(struct store *st, const char *name, const void *obj, size_t len)
{
	int rc = store_put(st, name, obj, len, STORE_PUT_IF_ABSENT);
	if (rc == -EEXIST) {
		CLEANUP_FREE void *cur = NULL;
		size_t clen = 0;
		int rr = store_get_all(st, name, &cur, &clen);
		if (rr == 0 && clen == len && memcmp(cur, obj, len) == 0)
			return 0;
		if (rr < 0 && rr != -ENOENT) {
			log_error("could not store %s: it exists and cannot be read back: %s", name,
				  strerror(-rr));
			return rr;
		}
		log_error("%s was written by another writer: this mount has been fenced and "
			  "writes nothing more",
			  name);
		return -ESTALE;
	}
	if (rc < 0)
		log_error("could not store %s: %s", name, strerror(-rc));
	return rc;
}

static int meta_store(struct store *st, char kind, uint64_t seq, const void *obj, size_t len)
{
	char name[64];
	meta_key(name, sizeof(name), kind, seq);
	return meta_store_named(st, name, obj, len);
}

static int meta_put(struct store *st, const struct seal_key *key, char kind, uint64_t seq,
		    const void *data, size_t len)
{
	CLEANUP_FREE void *obj = NULL;
	size_t olen;
	int rc = meta_seal(key, kind, seq, data, len, 1, &obj, &olen);
	if (rc == 0)
		rc = meta_store(st, kind, seq, obj, olen);
	return rc;
}

/* Fetch and open a metadata object.  *out is malloc'd. */
static int meta_get(struct store *st, const struct seal_key *key, char kind, uint64_t seq,
		    void **out, size_t *outlen)
{
	char name[64];
	meta_key(name, sizeof(name), kind, seq);
	CLEANUP_FREE uint8_t *obj = NULL;
	size_t len;
	int rc = store_get_all(st, name, (void **)&obj, &len);
	if (rc < 0) {
		log_error("could not read %s: %s", name, strerror(-rc));
		return rc == -ENOENT ? -EUCLEAN : rc;
	}
	uint64_t plen = len >= 8 ? get_le64(obj) : 0;
	if (len < 8 || plen > (uint64_t)1 << 36) {
		log_error("%s is damaged (bad length header)", name);
		return -EUCLEAN;
	}
	uint8_t *plain = malloc(plen ? plen : 1);
	if (!plain)
		return -ENOMEM;
	uint8_t ad[SEAL_AD_BYTES];
	seal_ad_meta(ad, kind, seq);
	ssize_t n = seal_frame_decode(key, ad, sizeof(ad), obj + 8, len - 8, plain, plen);
	if (n == -ENOMEM) {
		free(plain);
		return -ENOMEM;
	}
	if (n < 0 || (uint64_t)n != plen) {
		log_error("%s is damaged: it failed authentication", name);
		free(plain);
		return -EUCLEAN;
	}
	*out = plain;
	*outlen = plen;
	return 0;
}

int jnl_format(struct store *st, const struct seal_key *key, struct idx *ix)
{
	CLEANUP_FREE void *image = NULL;
	size_t len;
	int rc = idx_serialize(ix, &image, &len);
	if (rc < 0)
		return rc;
	return meta_put(st, key, 'C', 0, image, len);
}

/* ---- recovery ---- */

struct seqlist {
	uint64_t *v;
	size_t n, cap;
	int bad;
};

static int collect_seq(void *arg, const char *key, uint64_t size)
{
	struct seqlist *l = arg;
	const char *slash = strrchr(key, '/');
	char *end;
	uint64_t v = strtoull(slash ? slash + 1 : key, &end, 16);
	if (*end || end == (slash ? slash + 1 : key)) {
		log_warn("ignoring unexpected object %s", key);
		return 0;
	}
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 64;
		uint64_t *nv = realloc(l->v, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = nc;
	}
	l->v[l->n++] = v;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int list_seqs(struct store *st, const char *prefix, struct seqlist *l)
{
	int rc = store_list(st, prefix, collect_seq, l);
	if (rc < 0) {
		log_error("could not list %s in the store: %s", prefix, strerror(-rc));
		return rc;
	}
	if (l->n)
		qsort(l->v, l->n, sizeof(*l->v), cmp_u64);
	return 0;
}

/* Is the local database a clean copy of exactly this state? */
static struct idx *try_local(const char *db_path, const char *fsid_hex, uint64_t seq)
{
	struct stat sb;
	if (stat(db_path, &sb) < 0)
		return NULL;
	/* Only the file a clean unmount sealed: a damaged one could mount
	 * wrong data (idx_check_seal logs why it is not reused). */
	if (idx_check_seal(db_path) < 0) {
		log_info("rebuilding the local index %s from the store", db_path);
		return NULL;
	}
	struct idx *ix = idx_open(db_path);
	if (!ix) {
		log_warn("local index %s cannot be opened; rebuilding it from the store", db_path);
		return NULL;
	}
	CLEANUP_FREE char *fsid = NULL;
	CLEANUP_FREE char *clean = NULL;
	char want[32];
	snprintf(want, sizeof(want), "%016" PRIx64, seq);
	if (idx_local_get(ix, "fsid", &fsid) == 0 && strcmp(fsid, fsid_hex) == 0 &&
	    idx_local_get(ix, "clean_seq", &clean) == 0 && strcmp(clean, want) == 0)
		return ix;
	log_info("local index is not a clean copy of barrier %s; rebuilding it from the store",
		 want);
	idx_close(ix);
	return NULL;
}

void jnl_carried_free(struct jnl_carried *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(c[i].obj);
	free(c);
}

/* The segments carried by the replayed logs: id and the newest log that
 * carries it. */
struct carried_set {
	struct carried_ref {
		uint64_t id, seq;
	} *v;
	size_t n, cap;
	uint64_t seq; /* the log being parsed */
};

static int note_carried(void *arg, uint64_t id, const uint8_t *obj, size_t len)
{
	struct carried_set *cs = arg;
	(void)obj;
	(void)len;
	for (size_t i = 0; i < cs->n; i++)
		if (cs->v[i].id == id) {
			cs->v[i].seq = cs->seq;
			return 0;
		}
	if (cs->n == cs->cap) {
		size_t cap = cs->cap ? cs->cap * 2 : 16;
		struct carried_ref *nv = realloc(cs->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		cs->v = nv;
		cs->cap = cap;
	}
	cs->v[cs->n].id = id;
	cs->v[cs->n].seq = cs->seq;
	cs->n++;
	return 0;
}

struct carried_pick {
	uint64_t id;
	struct jnl_carried *out;
};

static int pick_carried(void *arg, uint64_t id, const uint8_t *obj, size_t len)
{
	struct carried_pick *p = arg;
	if (id != p->id || p->out->obj)
		return 0;
	p->out->obj = malloc(len ? len : 1);
	if (!p->out->obj)
		return -ENOMEM;
	memcpy(p->out->obj, obj, len);
	p->out->id = id;
	p->out->len = len;
	return 0;
}

/* The bytes of segment id as log seq carries them, into *out (malloc'd).
 * The log's plaintext is kept in *plain across calls for the same seq. */
static int carried_copy(struct store *st, const struct seal_key *key, uint64_t seq, uint64_t id,
			void **plain, size_t *plen, uint64_t *plain_seq, struct jnl_carried *out)
{
	if (!*plain || *plain_seq != seq) {
		free(*plain);
		*plain = NULL;
		int rc = meta_get(st, key, 'L', seq, plain, plen);
		if (rc < 0)
			return rc;
		*plain_seq = seq;
	}
	const uint8_t *c;
	size_t clen;
	struct carried_pick pk = {.id = id, .out = out};
	int rc = log_parse(*plain, *plen, &c, &clen, pick_carried, &pk);
	if (rc == 0 && !out->obj)
		rc = -EUCLEAN;
	return rc;
}

/* Of the carried segments, those the index names and the store lacks, with
 * their bytes read again from the log that carries them.  In a store whose
 * lazy puts a crash can tear (STORE_CAP_LAZY), all of them: such an object
 * may be torn, or look whole only from the page cache over blocks whose
 * writeback failed, so reading it back proves nothing. */
static int find_missing(struct store *st, const struct seal_key *key, struct idx *ix,
			const struct carried_set *cs, struct jnl_carried **out, size_t *nout)
{
	struct jnl_carried *v = NULL;
	size_t n = 0, slots = 0;
	CLEANUP_FREE void *plain = NULL;
	size_t plen = 0;
	uint64_t plain_seq = 0;
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < cs->n; i++) {
		uint64_t size, live;
		if (idx_segment_get(ix, cs->v[i].id, &size, &live) == -ENOENT)
			continue; /* dropped since: nothing needs it */
		char name[64];
		data_seg_key(name, sizeof(name), cs->v[i].id);
		uint64_t have;
		rc = store_stat(st, name, &have);
		if (rc == 0 && !(st->caps & STORE_CAP_LAZY))
			continue;
		if (rc < 0 && rc != -ENOENT) {
			log_error("could not check %s: %s", name, strerror(-rc));
			break;
		}
		int present = rc == 0;
		struct jnl_carried *nv = realloc(v, (n + 1) * sizeof(*nv));
		if (!nv) {
			rc = -ENOMEM;
			break;
		}
		v = nv;
		memset(&v[n], 0, sizeof(v[n]));
		slots = n + 1;
		rc = carried_copy(st, key, cs->v[i].seq, cs->v[i].id, &plain, &plen, &plain_seq,
				  &v[n]);
		if (rc < 0)
			break;
		n++;
		if (present)
			log_info("%s was stored lazily; the index log %016" PRIx64
				 " carries it: it is stored again, durably",
				 name, cs->v[i].seq);
		else
			log_warn("%s is not in the store; the index log %016" PRIx64
				 " carries it: it is stored again",
				 name, cs->v[i].seq);
	}
	if (rc < 0) {
		jnl_carried_free(v, slots);
		return rc;
	}
	*out = v;
	*nout = n;
	return 0;
}

int jnl_recover(struct store *st, const struct seal_key *key, const char *db_path,
		const char *fsid_hex, struct idx **ixp, uint64_t *seqp, uint64_t *ckptp,
		struct jnl_carried **missing, size_t *nmissing)
{
	struct seqlist ck = {0}, lg = {0};
	struct carried_set carried = {0};
	*missing = NULL;
	*nmissing = 0;
	int rc = list_seqs(st, "meta/ckpt/", &ck);
	if (rc == 0)
		rc = list_seqs(st, "meta/log/", &lg);
	if (rc < 0)
		goto out;
	if (ck.n == 0) {
		log_error("the store has no index checkpoint (meta/ckpt/): it is damaged");
		rc = -EUCLEAN;
		goto out;
	}
	uint64_t ckpt = ck.v[ck.n - 1];
	/* The logs after the checkpoint, which must follow it without a gap. */
	size_t first = 0;
	while (first < lg.n && lg.v[first] <= ckpt)
		first++;
	size_t last = first;
	while (last < lg.n && lg.v[last] == ckpt + 1 + (last - first))
		last++;
	if (last < lg.n)
		log_warn("index log has a gap after %016" PRIx64 "; later logs ignored",
			 last > first ? lg.v[last - 1] : ckpt);
	uint64_t seq = last > first ? lg.v[last - 1] : ckpt;

	struct idx *ix = try_local(db_path, fsid_hex, seq);
	if (!ix) {
		CLEANUP_FREE void *image = NULL;
		size_t len;
		rc = meta_get(st, key, 'C', ckpt, &image, &len);
		if (rc < 0)
			goto out;
		ix = idx_open_image(db_path, image, len);
		if (!ix) {
			rc = -errno;
			log_error("could not write the local index %s: %m", db_path);
			goto out;
		}
		for (size_t i = first; i < last; i++) {
			CLEANUP_FREE void *plain = NULL;
			const uint8_t *cs;
			size_t cslen;
			carried.seq = lg.v[i];
			rc = meta_get(st, key, 'L', lg.v[i], &plain, &len);
			if (rc == 0)
				rc = log_parse(plain, len, &cs, &cslen, note_carried, &carried);
			if (rc == 0)
				rc = idx_changeset_apply(ix, cs, cslen);
			if (rc < 0) {
				log_error("index log %016" PRIx64 " cannot be applied", lg.v[i]);
				idx_close(ix);
				goto out;
			}
		}
		rc = idx_local_set(ix, "fsid", fsid_hex);
		if (rc < 0) {
			idx_close(ix);
			goto out;
		}
		log_info("index rebuilt from checkpoint %016" PRIx64 " and %zu log objects", ckpt,
			 last - first);
		rc = find_missing(st, key, ix, &carried, missing, nmissing);
		if (rc < 0) {
			idx_close(ix);
			goto out;
		}
	}
	*ixp = ix;
	*seqp = seq;
	*ckptp = ckpt;
	rc = 0;
out:
	free(ck.v);
	free(lg.v);
	free(carried.v);
	return rc;
}

int jnl_scrub(struct jnl *j, FILE *out)
{
	struct seqlist ck = {0}, lg = {0};
	int problems = 0;
	int rc = list_seqs(j->st, "meta/ckpt/", &ck);
	if (rc == 0)
		rc = list_seqs(j->st, "meta/log/", &lg);
	if (rc == 0 && ck.n == 0) {
		fprintf(out, "scrub: the store has no checkpoint (meta/ckpt/)\n");
		problems++;
	}
	for (size_t i = 0; rc == 0 && i < ck.n + lg.n; i++) {
		int is_ck = i < ck.n;
		uint64_t seq = is_ck ? ck.v[i] : lg.v[i - ck.n];
		if (!is_ck && ck.n && seq <= ck.v[ck.n - 1])
			continue; /* kept only as a fence mark */
		CLEANUP_FREE void *obj = NULL;
		size_t len;
		int g = meta_get(j->st, &j->key, is_ck ? 'C' : 'L', seq, &obj, &len);
		if (g == -EUCLEAN) {
			char name[64];
			meta_key(name, sizeof(name), is_ck ? 'C' : 'L', seq);
			fprintf(out, "scrub: %s is damaged%s\n", name,
				is_ck && i + 1 < ck.n ? " (an older checkpoint, not used)" : "");
			problems++;
		} else if (g < 0) {
			rc = g;
		}
	}
	free(ck.v);
	free(lg.v);
	return rc < 0 ? rc : problems;
}

/* ---- barriers ---- */

/* The first index log of a mount is marked (meta/fence/<seq>) before it is
 * stored, and prune never deletes a marked log.  A writer that was fenced
 * while a log of sequence s was on its way (frozen, say, after its lease
 * check) later finds s taken: either by the new writer's first log, which
 * stays forever, or by one of its own logs that the new writer recovered.
 * Without the mark, a checkpoint of the new writer could have pruned s and
 * let the old writer's put succeed (and its garbage collection delete
 * segments that only it believes dead).  Markers are a few bytes, one per
 * mount. */
static int store_fence_mark(struct jnl *j, uint64_t seq)
{
	static const char body[] = "zerofs-fence 1\n";
	char name[64];
	snprintf(name, sizeof(name), "meta/fence/%016" PRIx64, seq);
	int rc = store_put(j->st, name, body, sizeof(body) - 1, 0);
	if (rc < 0)
		log_error("could not store %s: %s", name, strerror(-rc));
	return rc;
}

static int store_pending(struct jnl *j)
{
	for (;;) {
		pthread_mutex_lock(&j->m);
		struct pending_log *pl = j->pending;
		pthread_mutex_unlock(&j->m);
		if (!pl)
			return 0;
		int rc = 0;
		if (j->p.lease && pl->seq == j->fence_seq && !j->fence_marked) {
			rc = store_fence_mark(j, pl->seq);
			if (rc < 0)
				return rc;
			j->fence_marked = 1;
		}
		CRASHPT("barrier.before_log");
		rc = meta_store(j->st, 'L', pl->seq, pl->obj, pl->len);
		if (rc == -ESTALE) {
			/* The fsync that waits on this barrier sees EIO. */
			if (j->p.lease)
				lease_fence(j->p.lease,
					    "another writer stored an index log in its place");
			rc = -EIO;
		}
		if (rc < 0)
			return rc;
		pthread_mutex_lock(&j->m);
		j->pending = pl->next;
		if (!j->pending)
			j->pending_tail = NULL;
		j->stored = pl->seq;
		pthread_mutex_unlock(&j->m);
		free(pl->obj);
		free(pl);
	}
}

/* Seal changeset cs (freed here) as the next log and queue it.  A log
 * that carries segments is not compressed: they are sealed frames already,
 * and lz4 would spend the barrier's time failing on them. */
static int queue_log(struct jnl *j, void *cs, size_t len, int carried)
{
	struct pending_log *pl = calloc(1, sizeof(*pl));
	if (!pl) {
		free(cs);
		return -ENOMEM;
	}
	pl->seq = j->seq + 1;
	int rc = meta_seal(&j->key, 'L', pl->seq, cs, len, !carried, &pl->obj, &pl->len);
	free(cs);
	if (rc < 0) {
		free(pl);
		return rc;
	}
	pthread_mutex_lock(&j->m);
	j->seq = pl->seq;
	if (j->pending_tail)
		j->pending_tail->next = pl;
	else
		j->pending = pl;
	j->pending_tail = pl;
	pthread_mutex_unlock(&j->m);
	return 0;
}

static int seq_in(const struct seqlist *l, uint64_t v)
{
	return l->n && bsearch(&v, l->v, l->n, sizeof(*l->v), cmp_u64) != NULL;
}

/* Delete what checkpoint ckpt replaces, except marked logs (see
 * store_fence_mark).  Failures only leave garbage, and so does a delete
 * that a crash undoes (recovery starts from the newest checkpoint): the
 * deletes are lazy. */
static void prune(struct jnl *j, uint64_t ckpt)
{
	struct seqlist l = {0}, marks = {0};
	char name[64];
	int first = 1;
	if (list_seqs(j->st, "meta/fence/", &marks) < 0)
		return;
	if (list_seqs(j->st, "meta/log/", &l) == 0)
		for (size_t i = 0; i < l.n && l.v[i] <= ckpt; i++) {
			if (seq_in(&marks, l.v[i]))
				continue;
			meta_key(name, sizeof(name), 'L', l.v[i]);
			store_del_flags(j->st, name, STORE_DEL_LAZY);
			if (first)
				CRASHPT("ckpt.mid_prune");
			first = 0;
		}
	free(l.v);
	free(marks.v);
	memset(&l, 0, sizeof(l));
	if (list_seqs(j->st, "meta/ckpt/", &l) == 0)
		for (size_t i = 0; i < l.n && l.v[i] < ckpt; i++) {
			meta_key(name, sizeof(name), 'C', l.v[i]);
			store_del_flags(j->st, name, STORE_DEL_LAZY);
		}
	free(l.v);
}

static int barrier(struct jnl *j)
{
	uint64_t mark;
	CLEANUP_FREE void *image = NULL;
	size_t ilen = 0;
	uint64_t ckseq = 0;

	uint64_t t_start = util_now_ns();
	pthread_mutex_lock(j->fs_lock);
	int rc = data_flush_all(j->d, &mark);
	int carried = 0;
	if (rc == 0) {
		void *cs = NULL;
		size_t len = 0;
		rc = idx_changeset_take(j->ix, &cs, &len);
		/* Carry only when this log is the next to store (an older one
		 * waiting would need the segments first) and nobody asked for
		 * the data to be stored. */
		pthread_mutex_lock(&j->m);
		int may_carry = !j->pending && !j->snap_want && !j->want_stored;
		pthread_mutex_unlock(&j->m);
		if (rc == 0 && len > 0 && may_carry)
			rc = carry_segments(j, mark, &cs, &len, &carried);
		if (rc == 0 && len > 0) {
			rc = queue_log(j, cs, len, carried);
			if (rc == 0 && carried)
				data_mark_carried(j->d, mark);
		} else {
			free(cs);
		}
	}
	if (rc == 0) {
		pthread_mutex_lock(&j->m);
		int want = j->snap_want;
		pthread_mutex_unlock(&j->m);
		void *snap = NULL;
		size_t slen = 0;
		if (want)
			rc = idx_serialize(j->ix, &snap, &slen);
		if (rc == 0 && want) {
			pthread_mutex_lock(&j->m);
			free(j->snap_image);
			j->snap_image = snap;
			j->snap_len = slen;
			j->snap_seq = j->seq;
			j->snap_want = 0;
			pthread_mutex_unlock(&j->m);
		}
	}
	pthread_mutex_lock(&j->m);
	int ck_due = !j->ck_busy && j->seq >= j->ckpt + j->p.checkpoint_interval;
	pthread_mutex_unlock(&j->m);
	if (rc == 0 && ck_due) {
		ckseq = j->seq;
		rc = idx_serialize(j->ix, &image, &ilen);
	}
	uint64_t t_packed = util_now_ns();
	if (rc == 0 && !carried)
		rc = data_wait_stored(j->d, mark);
	pthread_mutex_unlock(j->fs_lock);
	if (rc < 0)
		return rc;
	uint64_t t_data = util_now_ns();

	/* Fencing: before index objects are written, check that no other mount
	 * has taken the writer lease from us (journal/lease.h). */
	pthread_mutex_lock(&j->m);
	int writes = j->pending != NULL || image != NULL;
	pthread_mutex_unlock(&j->m);
	uint64_t now = util_now_ns();
	if (j->p.lease && writes && now - j->lease_checked_ns >= LEASE_RECHECK_NS) {
		rc = lease_check(j->p.lease);
		if (rc < 0)
			return rc;
		j->lease_checked_ns = now;
	}
	uint64_t t_lease = util_now_ns();
	rc = store_pending(j);
	if (rc < 0)
		return rc;
	CRASHPT("barrier.after_log");
	uint64_t t_log = util_now_ns();
	log_debug("barrier: pack %" PRIu64 " us, data %" PRIu64 " us, lease %" PRIu64
		  " us, log %" PRIu64 " us%s%s", (t_packed - t_start) / 1000,
		  (t_data - t_packed) / 1000, (t_lease - t_data) / 1000, (t_log - t_lease) / 1000,
		  carried ? ", segments carried" : "", image ? ", checkpoint handed over" : "");
	if (image) {
		/* The logs up to ckseq are stored: the checkpoint only makes
		 * recovery shorter, so the barrier does not wait for it. */
		pthread_mutex_lock(&j->m);
		j->ck_image = image;
		j->ck_len = ilen;
		j->ck_seq = ckseq;
		j->ck_mark = mark;
		j->ck_busy = 1;
		image = NULL;
		pthread_cond_broadcast(&j->ck_cond);
		pthread_mutex_unlock(&j->m);
	}
	return 0;
}

/* Store checkpoint seq, then delete what it replaces.  A failure is logged
 * and leaves the logs in place; a later barrier makes a new image. */
static void store_checkpoint(struct jnl *j, uint64_t seq, uint64_t mark, const void *image,
			     size_t len)
{
	/* The logs it replaces may carry segments: those must be stored
	 * before the logs can go. */
	pthread_mutex_lock(j->fs_lock);
	int rc = data_wait_stored(j->d, mark);
	pthread_mutex_unlock(j->fs_lock);
	if (rc < 0) {
		log_warn("index checkpoint %016" PRIx64 " not stored: its data is not stored yet",
			 seq);
		return;
	}
	/* Stored lazily, some only while those logs hold their bytes. */
	rc = store_sync(j->st);
	if (rc < 0) {
		log_warn("index checkpoint %016" PRIx64 " not stored: the store could not sync "
			 "its segments (%s)", seq, strerror(-rc));
		return;
	}
	rc = meta_put(j->st, &j->key, 'C', seq, image, len);
	if (rc == -ESTALE && j->p.lease)
		lease_fence(j->p.lease, "another writer stored a checkpoint in its place");
	if (rc < 0) {
		log_warn("index checkpoint %016" PRIx64 " could not be stored (%s); the logs "
			 "stay until a later one is", seq, strerror(-rc));
		return;
	}
	pthread_mutex_lock(&j->m);
	j->ckpt = seq;
	pthread_mutex_unlock(&j->m);
	CRASHPT("ckpt.after_put");
	prune(j, seq);
}

static void *ckpt_main(void *arg)
{
	struct jnl *j = arg;
	pthread_mutex_lock(&j->m);
	for (;;) {
		while (!j->ck_image && !j->stop)
			pthread_cond_wait(&j->ck_cond, &j->m);
		if (!j->ck_image)
			break; /* stopping, and nothing handed over */
		void *image = j->ck_image;
		size_t len = j->ck_len;
		uint64_t seq = j->ck_seq, mark = j->ck_mark;
		j->ck_image = NULL;
		pthread_mutex_unlock(&j->m);
		store_checkpoint(j, seq, mark, image, len);
		free(image);
		pthread_mutex_lock(&j->m);
		j->ck_busy = 0;
		pthread_cond_broadcast(&j->ck_cond);
	}
	pthread_mutex_unlock(&j->m);
	return NULL;
}

/* A read-only mount stores nothing: what a replica applied from the
 * writer's logs is dropped from the session, not logged again. */
static int sync_read_only(struct jnl *j)
{
	void *cs = NULL;
	size_t len = 0;
	pthread_mutex_lock(j->fs_lock);
	int rc = idx_changeset_take(j->ix, &cs, &len);
	pthread_mutex_unlock(j->fs_lock);
	free(cs);
	return rc;
}

int jnl_sync(struct jnl *j)
{
	if (j->p.read_only)
		return sync_read_only(j);
	pthread_mutex_lock(&j->m);
	/* Any barrier that starts from now on covers what the caller wrote. */
	uint64_t want = j->started + 1;
	while (j->completed < want) {
		if (j->running) {
			pthread_cond_wait(&j->cond, &j->m);
			continue;
		}
		j->running = 1;
		uint64_t n = ++j->started;
		pthread_mutex_unlock(&j->m);
		uint64_t t0 = util_now_ns();
		int rc = barrier(j);
		uint64_t dt = util_now_ns() - t0;
		pthread_mutex_lock(&j->m);
		j->running = 0;
		j->completed = n;
		j->last_rc = rc;
		j->stats.barriers++;
		j->stats.last_ns = dt;
		int b = 0;
		while (b < JNL_LAT_BUCKETS - 1 && (1ULL << b) * 1000 <= dt)
			b++;
		j->stats.lat_hist[b]++;
		if (rc == 0)
			j->ok = n;
		else
			j->stats.failed++;
		pthread_cond_broadcast(&j->cond);
	}
	/* Success if any barrier that covers the caller succeeded; otherwise the
	 * newest one failed, and its error is the answer. */
	int rc = j->ok >= want ? 0 : j->last_rc;
	pthread_mutex_unlock(&j->m);
	return rc;
}

int jnl_sync_stored(struct jnl *j)
{
	pthread_mutex_lock(&j->m);
	j->want_stored++;
	pthread_mutex_unlock(&j->m);
	int rc = jnl_sync(j);
	pthread_mutex_lock(&j->m);
	j->want_stored--;
	pthread_mutex_unlock(&j->m);
	if (rc == 0 && !j->p.read_only) {
		pthread_mutex_lock(j->fs_lock);
		rc = data_wait_stored(j->d, data_sealno(j->d));
		pthread_mutex_unlock(j->fs_lock);
	}
	/* The caller wants the data in the store by itself, not in logs. */
	if (rc == 0 && !j->p.read_only)
		rc = store_sync(j->st);
	return rc;
}

static void *timer_main(void *arg)
{
	struct jnl *j = arg;
	pthread_mutex_lock(&j->m);
	while (!j->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + j->p.barrier_interval_ms * 1000000ULL;
		ts.tv_sec += (time_t)(ns / 1000000000ULL);
		ts.tv_nsec = (long)(ns % 1000000000ULL);
		pthread_cond_timedwait(&j->timer_cond, &j->m, &ts);
		if (j->stop)
			break;
		pthread_mutex_unlock(&j->m);
		int rc = jnl_sync(j);
		if (rc < 0)
			log_warn("periodic barrier failed: %s", strerror(-rc));
		pthread_mutex_lock(&j->m);
	}
	pthread_mutex_unlock(&j->m);
	return NULL;
}

struct jnl *jnl_new(struct store *st, const struct seal_key *key, struct idx *ix,
		    struct data *d, pthread_mutex_t *fs_lock, const struct jnl_params *p,
		    uint64_t seq, uint64_t ckpt)
{
	struct jnl *j = calloc(1, sizeof(*j));
	if (!j)
		return NULL;
	j->st = st;
	j->key = *key;
	j->ix = ix;
	j->d = d;
	j->fs_lock = fs_lock;
	j->p = *p;
	j->seq = seq;
	j->stored = seq;
	j->ckpt = ckpt;
	j->fence_seq = seq + 1;
	pthread_mutex_init(&j->m, NULL);
	pthread_cond_init(&j->cond, NULL);
	pthread_cond_init(&j->timer_cond, NULL);
	pthread_cond_init(&j->ck_cond, NULL);
	if (!p->read_only) {
		int err = pthread_create(&j->ck_thread, NULL, ckpt_main, j);
		if (err) {
			errno = err;
			log_error("cannot start the checkpoint thread: %m");
			jnl_free(j);
			errno = err;
			return NULL;
		}
		j->ck_running = 1;
	}
	if (p->barrier_interval_ms) {
		int err = pthread_create(&j->timer, NULL, timer_main, j);
		if (err) {
			errno = err;
			log_error("cannot start the barrier thread: %m");
			jnl_free(j);
			errno = err;
			return NULL;
		}
		j->timer_running = 1;
	}
	return j;
}

void jnl_free(struct jnl *j)
{
	if (!j)
		return;
	pthread_mutex_lock(&j->m);
	j->stop = 1;
	pthread_cond_broadcast(&j->timer_cond);
	pthread_cond_broadcast(&j->ck_cond);
	pthread_mutex_unlock(&j->m);
	if (j->timer_running)
		pthread_join(j->timer, NULL);
	if (j->ck_running)
		pthread_join(j->ck_thread, NULL); /* stores a checkpoint handed over */
	for (struct pending_log *pl = j->pending, *n; pl; pl = n) {
		n = pl->next;
		log_error("index log %016" PRIx64 " was never stored: its changes are lost",
			  pl->seq);
		free(pl->obj);
		free(pl);
	}
	free(j->snap_image);
	free(j->ck_image);
	pthread_cond_destroy(&j->ck_cond);
	pthread_cond_destroy(&j->cond);
	pthread_cond_destroy(&j->timer_cond);
	pthread_mutex_destroy(&j->m);
	free(j);
}

int jnl_mark_clean(struct jnl *j, int clean)
{
	char v[32];
	snprintf(v, sizeof(v), "%016" PRIx64, j->seq);
	return idx_local_set(j->ix, "clean_seq", clean ? v : NULL);
}

/* Upper bound (us) of the bucket holding the q-th quantile (q in 1/1000). */
static uint64_t quantile(const struct jnl_stats *s, unsigned q)
{
	uint64_t total = 0, seen = 0;
	for (int i = 0; i < JNL_LAT_BUCKETS; i++)
		total += s->lat_hist[i];
	if (!total)
		return 0;
	for (int i = 0; i < JNL_LAT_BUCKETS; i++) {
		seen += s->lat_hist[i];
		if (seen * 1000 >= total * q)
			return 1ULL << i;
	}
	return 1ULL << (JNL_LAT_BUCKETS - 1);
}

void jnl_get_stats(struct jnl *j, struct jnl_stats *out)
{
	pthread_mutex_lock(&j->m);
	*out = j->stats;
	out->seq = j->seq;
	pthread_mutex_unlock(&j->m);
	out->p50_us = quantile(out, 500);
	out->p90_us = quantile(out, 900);
	out->p99_us = quantile(out, 990);
}

/* ---- snapshots ---- */

#define SNAP_MAGIC "ZSNP"
#define SNAP_VERSION 1
#define SNAP_HEADER 24 /* magic, version, seq, time */

/* The name is bound to the object through its associated data: a snapshot
 * object renamed or copied under another name fails authentication. */
static uint64_t snap_ad_seq(const char *name)
{
	uint8_t h[8];
	crypto_generichash(h, sizeof(h), (const unsigned char *)name, strlen(name), NULL, 0);
	return get_le64(h);
}

int jnl_snapshot_valid_name(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > JNL_SNAP_NAME_MAX || name[0] == '.' || name[0] == '-')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

static void snap_key(char *out, size_t n, const char *name)
{
	snprintf(out, n, "meta/snap/%s", name);
}

int jnl_snapshot_create(struct jnl *j, const char *name, uint64_t *seqp)
{
	if (j->p.read_only)
		return -EROFS;
	pthread_mutex_lock(&j->m);
	j->snap_want = 1;
	free(j->snap_image);
	j->snap_image = NULL;
	pthread_mutex_unlock(&j->m);
	int rc = jnl_sync(j);
	pthread_mutex_lock(&j->m);
	void *image = j->snap_image;
	size_t ilen = j->snap_len;
	uint64_t seq = j->snap_seq;
	j->snap_image = NULL;
	j->snap_want = 0;
	pthread_mutex_unlock(&j->m);
	if (rc == 0 && !image)
		rc = -EAGAIN;
	/* The snapshot outlives the logs that carry some of its segments. */
	if (rc == 0)
		rc = store_sync(j->st);
	if (rc < 0) {
		free(image);
		return rc;
	}
	size_t plen = SNAP_HEADER + ilen;
	uint8_t *plain = malloc(plen);
	if (!plain) {
		free(image);
		return -ENOMEM;
	}
	memcpy(plain, SNAP_MAGIC, 4);
	put_le32(plain + 4, SNAP_VERSION);
	put_le64(plain + 8, seq);
	put_le64(plain + 16, util_wall_ns());
	memcpy(plain + SNAP_HEADER, image, ilen);
	free(image);
	CLEANUP_FREE void *obj = NULL;
	size_t olen;
	rc = meta_seal(&j->key, 'S', snap_ad_seq(name), plain, plen, 1, &obj, &olen);
	free(plain);
	if (rc < 0)
		return rc;
	char key[64 + JNL_SNAP_NAME_MAX];
	snap_key(key, sizeof(key), name);
	rc = store_put(j->st, key, obj, olen, STORE_PUT_IF_ABSENT);
	if (rc == -EEXIST)
		return -EEXIST;
	if (rc < 0) {
		log_error("could not store %s: %s", key, strerror(-rc));
		return rc;
	}
	log_info("snapshot %s created at barrier %016" PRIx64 " (%zu bytes of index)", name, seq,
		 ilen);
	if (seqp)
		*seqp = seq;
	return 0;
}

int jnl_snapshot_get(struct store *st, const struct seal_key *key, const char *name,
		     struct jnl_snapshot *out)
{
	char okey[64 + JNL_SNAP_NAME_MAX];
	snap_key(okey, sizeof(okey), name);
	CLEANUP_FREE uint8_t *obj = NULL;
	size_t len;
	int rc = store_get_all(st, okey, (void **)&obj, &len);
	if (rc < 0)
		return rc;
	uint64_t plen = len >= 8 ? get_le64(obj) : 0;
	if (len < 8 || plen < SNAP_HEADER || plen > (uint64_t)1 << 36) {
		log_error("%s is damaged (bad length header)", okey);
		return -EUCLEAN;
	}
	uint8_t *plain = malloc(plen);
	if (!plain)
		return -ENOMEM;
	uint8_t ad[SEAL_AD_BYTES];
	seal_ad_meta(ad, 'S', snap_ad_seq(name));
	ssize_t n = seal_frame_decode(key, ad, sizeof(ad), obj + 8, len - 8, plain, plen);
	if (n == -ENOMEM) {
		free(plain);
		return -ENOMEM;
	}
	if (n < 0 || (uint64_t)n != plen || memcmp(plain, SNAP_MAGIC, 4) != 0 ||
	    get_le32(plain + 4) != SNAP_VERSION) {
		log_error("%s is damaged: it failed authentication", okey);
		free(plain);
		return -EUCLEAN;
	}
	out->seq = get_le64(plain + 8);
	out->time_ns = get_le64(plain + 16);
	out->image_len = plen - SNAP_HEADER;
	out->stored_len = len;
	memmove(plain, plain + SNAP_HEADER, out->image_len);
	out->image = plain;
	return 0;
}

int jnl_snapshot_delete(struct store *st, const char *name)
{
	char key[64 + JNL_SNAP_NAME_MAX];
	snap_key(key, sizeof(key), name);
	uint64_t size;
	int rc = store_stat(st, key, &size);
	if (rc == 0)
		rc = store_del(st, key);
	return rc;
}

struct name_list_ctx {
	int (*cb)(void *arg, const char *name);
	void *arg;
};

static int snap_name_cb(void *arg, const char *key, uint64_t size)
{
	struct name_list_ctx *c = arg;
	(void)size;
	const char *base = strrchr(key, '/');
	base = base ? base + 1 : key;
	if (!jnl_snapshot_valid_name(base))
		return 0;
	return c->cb(c->arg, base);
}

int jnl_snapshot_list(struct store *st, int (*cb)(void *arg, const char *name), void *arg)
{
	struct name_list_ctx c = {cb, arg};
	return store_list(st, "meta/snap/", snap_name_cb, &c);
}

int jnl_load_snapshot(struct store *st, const struct seal_key *key, const char *name,
		      const char *db_path, struct idx **ixp, uint64_t *seqp)
{
	struct jnl_snapshot sn;
	int rc = jnl_snapshot_get(st, key, name, &sn);
	if (rc == -ENOENT) {
		log_error("the store has no snapshot named %s", name);
		return rc;
	}
	if (rc < 0)
		return rc;
	struct idx *ix = idx_open_image(db_path, sn.image, sn.image_len);
	free(sn.image);
	if (!ix) {
		rc = -errno;
		log_error("could not write the local index %s: %m", db_path);
		return rc;
	}
	*ixp = ix;
	*seqp = sn.seq;
	return 0;
}

/* ---- read-only replicas ---- */

/* A replica applying a log that carries a segment the store does not have
 * yet (its upload is on its way) keeps the segment in memory meanwhile. */
static int follow_carried(void *arg, uint64_t id, const uint8_t *obj, size_t len)
{
	struct jnl *j = arg;
	char name[64];
	uint64_t have;
	data_seg_key(name, sizeof(name), id);
	int rc = store_stat(j->st, name, &have);
	if (rc != -ENOENT)
		return rc;
	pthread_mutex_lock(j->fs_lock);
	rc = data_adopt(j->d, id, obj, len, 0);
	pthread_mutex_unlock(j->fs_lock);
	return rc;
}

/* Let go of the segments kept in memory that the store has now, or that
 * the index no longer names. */
static void release_kept(struct jnl *j)
{
	uint64_t ids[64];
	pthread_mutex_lock(j->fs_lock);
	size_t n = data_kept(j->d, ids, 64);
	pthread_mutex_unlock(j->fs_lock);
	for (size_t i = 0; i < n; i++) {
		char name[64];
		uint64_t have, size, live;
		data_seg_key(name, sizeof(name), ids[i]);
		int stored = store_stat(j->st, name, &have) == 0;
		pthread_mutex_lock(j->fs_lock);
		if (stored || idx_segment_get(j->ix, ids[i], &size, &live) == -ENOENT)
			data_release_kept(j->d, ids[i]);
		pthread_mutex_unlock(j->fs_lock);
	}
}

int jnl_follow(struct jnl *j, uint64_t *applied)
{
	release_kept(j);
	struct seqlist ck = {0}, lg = {0};
	int rc = list_seqs(j->st, "meta/ckpt/", &ck);
	if (rc == 0)
		rc = list_seqs(j->st, "meta/log/", &lg);
	*applied = 0;
	for (int round = 0; rc == 0 && round < 2; round++) {
		/* Apply the logs that follow what we have, in order. */
		size_t i = 0;
		while (i < lg.n && lg.v[i] <= j->seq)
			i++;
		for (; rc == 0 && i < lg.n && lg.v[i] == j->seq + 1; i++) {
			CLEANUP_FREE void *plain = NULL;
			size_t len;
			const uint8_t *cs;
			size_t cslen;
			rc = meta_get(j->st, &j->key, 'L', lg.v[i], &plain, &len);
			if (rc == -EUCLEAN && ck.n && ck.v[ck.n - 1] > j->seq)
				rc = 0; /* pruned under us: the checkpoint below has it */
			if (rc < 0)
				break;
			if (!plain)
				break;
			rc = log_parse(plain, len, &cs, &cslen, follow_carried, j);
			if (rc < 0)
				break;
			pthread_mutex_lock(j->fs_lock);
			rc = idx_changeset_apply(j->ix, cs, cslen);
			if (rc == 0)
				rc = idx_flush(j->ix);
			if (rc == 0)
				j->seq = lg.v[i];
			pthread_mutex_unlock(j->fs_lock);
			if (rc == 0)
				(*applied)++;
		}
		/* The writer checkpointed and pruned logs we had not applied yet:
		 * start again from its newest checkpoint. */
		if (rc < 0 || round > 0 || !ck.n || ck.v[ck.n - 1] <= j->seq ||
		    (i < lg.n && lg.v[i] == j->seq + 1))
			break;
		CLEANUP_FREE void *image = NULL;
		size_t ilen;
		rc = meta_get(j->st, &j->key, 'C', ck.v[ck.n - 1], &image, &ilen);
		if (rc < 0)
			break;
		pthread_mutex_lock(j->fs_lock);
		rc = idx_replace_from_image(j->ix, image, ilen);
		if (rc == 0) {
			j->seq = ck.v[ck.n - 1];
			(*applied)++;
		}
		pthread_mutex_unlock(j->fs_lock);
		log_info("replica: reloaded the index from checkpoint %016" PRIx64, j->seq);
	}
	free(ck.v);
	free(lg.v);
	return rc;
}

uint64_t jnl_seq(struct jnl *j)
{
	pthread_mutex_lock(&j->m);
	uint64_t s = j->seq;
	pthread_mutex_unlock(&j->m);
	return s;
}
