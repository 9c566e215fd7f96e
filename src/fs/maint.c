/* maint.c: garbage collection, fsck and scrub (fs.h).
 *
 * Garbage collection.  A segment whose live count is 0 is used by no file:
 * its row is dropped from the index, and its object is deleted only after
 * the barrier that dropped the row is durable (a crash before that leaves
 * the row, and the segment is still there for the index that names it) and
 * after gc_grace_ms more, for reads that looked up an extent in it before it
 * died and are still fetching.  A segment whose live share is low is
 * repacked: its live frames are decoded and sealed again into the open
 * segment (only if the extent map still points at them), so the old one
 * dies at the next barrier and the pass after drops it.  Objects that no
 * index row names and that belong to an earlier mount (a crash between an
 * upload and its barrier, or between a durable drop and the delete) are
 * orphans: the first pass of a mount deletes them.  Segment ids carry the
 * mount's epoch, so an orphan's id is never reused and a fenced writer of an
 * earlier epoch can never make it live again (its index logs are refused).
 *
 * Locking: gc_mutex serialises passes and guards the doomed list; the fs
 * lock is taken for every index access and released around store requests
 * and barriers. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/crashpt.h"
#include "common/util.h"
#include "fs/fs-int.h"
#include "log.h"

#define REPACK_BATCH 8 /* segments repacked between barriers */

static void seg_name(char *out, size_t n, uint64_t seg)
{
	snprintf(out, n, "segments/%016" PRIx64, seg);
}

/* ---- object listings ---- */

struct obj {
	uint64_t seg, size;
};

struct objlist {
	struct obj *v;
	size_t n, cap;
};

static int collect_obj(void *arg, const char *key, uint64_t size)
{
	struct objlist *l = arg;
	const char *base = strrchr(key, '/');
	base = base ? base + 1 : key;
	char *end;
	uint64_t id = strtoull(base, &end, 16);
	if (*end || end == base || strlen(base) != 16) {
		log_warn("unexpected object %s under segments/; left alone", key);
		return 0;
	}
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 256;
		struct obj *nv = realloc(l->v, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = nc;
	}
	l->v[l->n++] = (struct obj){id, size};
	return 0;
}

/* Orders anything whose first field is a uint64_t segment id (struct obj,
 * struct segrow, struct idx_seg_usage; or a bare id as the key). */
static int cmp_obj(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int list_objects(struct fs *fs, struct objlist *l)
{
	int rc = store_list(fs->st, "segments/", collect_obj, l);
	if (rc < 0) {
		log_error("could not list the segments of %s: %s", fs->st->url, strerror(-rc));
		return rc;
	}
	if (l->n)
		qsort(l->v, l->n, sizeof(*l->v), cmp_obj);
	return 0;
}

/* ---- segment rows ---- */

struct segrow {
	uint64_t seg, size, live;
};

struct seglist {
	struct segrow *v;
	size_t n, cap;
};

static int collect_seg(void *arg, uint64_t seg, uint64_t size, uint64_t live)
{
	struct seglist *l = arg;
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 256;
		struct segrow *nv = realloc(l->v, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = nc;
	}
	l->v[l->n++] = (struct segrow){seg, size, live};
	return 0;
}

/* Caller holds the fs lock. */
static int list_rows(struct fs *fs, struct seglist *l)
{
	return idx_segment_list(fs->ix, collect_seg, l);
}

/* ---- garbage collection ---- */

static int doom(struct fs *fs, uint64_t seg, uint64_t size)
{
	if (fs->ndoomed == fs->doomed_cap) {
		size_t nc = fs->doomed_cap ? fs->doomed_cap * 2 : 64;
		struct gc_doomed *nv = realloc(fs->doomed, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		fs->doomed = nv;
		fs->doomed_cap = nc;
	}
	fs->doomed[fs->ndoomed++] = (struct gc_doomed){seg, size, 0};
	return 0;
}

/* Does any extent still point into seg?  Caller holds the fs lock. */
static int seg_referenced(void *arg, uint64_t ino, uint64_t blocks)
{
	(void)ino;
	*(uint64_t *)arg += blocks;
	return 1; /* one is enough */
}

/* Drop the rows of dead segments (under the fs lock), and list the sparse
 * ones in *repack.  Caller holds gc_mutex. */
static int collect(struct fs *fs, struct fs_gc_report *r, struct seglist *repack)
{
	struct seglist rows = {0};
	size_t dropped = 0;
	pthread_mutex_lock(&fs->lock);
	int rc = list_rows(fs, &rows);
	for (size_t i = 0; rc == 0 && i < rows.n; i++) {
		const struct segrow *s = &rows.v[i];
		if (data_seg_busy(fs->d, s->seg) || fs_snap_uses(fs, s->seg))
			continue; /* not stored yet, or a snapshot uses it */
		if (s->live == 0) {
			/* The live count says dead; the extent map must agree
			 * before anything is deleted. */
			uint64_t refs = 0;
			rc = idx_extent_inos_of_seg(fs->ix, s->seg, seg_referenced, &refs);
			if (rc < 0)
				break;
			rc = 0;
			if (refs) {
				char name[64];
				seg_name(name, sizeof(name), s->seg);
				log_error("%s: its live count is 0 but files use it; kept (run "
					  "'zerofs-fuse fsck --repair' to fix the count)",
					  name);
				continue;
			}
			rc = idx_begin(fs->ix);
			if (rc == 0) {
				rc = idx_segment_delete(fs->ix, s->seg);
				if (rc == 0)
					rc = idx_commit(fs->ix);
				else
					idx_rollback(fs->ix);
			}
			if (rc == 0)
				rc = doom(fs, s->seg, s->size);
			if (rc == 0) {
				dropped++;
				r->dead_segments++;
			}
		} else if (repack && fs->gc_repack_live > 0 && s->size > 0 &&
			   s->live * 100 < s->size * (uint64_t)fs->gc_repack_live) {
			rc = collect_seg(repack, s->seg, s->size, s->live);
		}
	}
	pthread_mutex_unlock(&fs->lock);
	free(rows.v);
	if (rc == 0 && dropped)
		CRASHPT("gc.after_unlink");
	return rc;
}

/* Move the live frames of segment seg into the open segment. */
static int repack_one(struct fs *fs, uint64_t seg, struct fs_gc_report *r)
{
	char name[64];
	seg_name(name, sizeof(name), seg);
	CLEANUP_FREE uint8_t *obj = NULL;
	CLEANUP_FREE struct data_frame *fr = NULL;
	CLEANUP_FREE uint8_t *plain = malloc(DATA_BLOCK_SIZE);
	size_t len;
	uint32_t n;
	if (!plain)
		return -ENOMEM;
	int rc = store_get_all(fs->st, name, (void **)&obj, &len);
	if (rc < 0) {
		log_error("garbage collection: could not read %s: %s", name, strerror(-rc));
		return rc;
	}
	rc = data_parse_segment(&fs->key, seg, obj, len, &fr, &n);
	if (rc < 0)
		return rc;
	uint64_t moved = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct idx_extent cur;
		pthread_mutex_lock(&fs->lock);
		rc = idx_extent_get(fs->ix, fr[i].ino, fr[i].blk, &cur);
		pthread_mutex_unlock(&fs->lock);
		if (rc == -ENOENT || (rc == 0 && (cur.seg != seg || cur.frame != i)))
			continue; /* dead frame */
		if (rc < 0)
			return rc;
		rc = data_open_frame(&fs->key, seg, i, &fr[i], obj, plain);
		if (rc < 0)
			return rc; /* logged; the segment stays as it is */
		pthread_mutex_lock(&fs->lock);
		rc = idx_begin(fs->ix);
		if (rc == 0) {
			rc = data_relocate(fs->d, fr[i].ino, &cur, plain);
			if (rc >= 0) {
				int c = idx_commit(fs->ix);
				rc = c < 0 ? c : rc;
			} else {
				idx_rollback(fs->ix);
			}
		}
		pthread_mutex_unlock(&fs->lock);
		if (rc < 0)
			return rc;
		if (rc > 0) {
			moved++;
			r->moved_blocks++;
			r->moved_bytes += cur.plen;
		}
	}
	r->repacked_segments++;
	log_debug("garbage collection: %" PRIu64 " live blocks of %s moved", moved, name);
	return 0;
}

/* Delete the objects of segments whose drop is durable and whose grace is
 * over.  Caller holds gc_mutex. */
static int delete_due(struct fs *fs, int now_ok, struct fs_gc_report *r)
{
	uint64_t now = util_now_ns();
	size_t keep = 0;
	int first = 1, rc = 0;
	for (size_t i = 0; i < fs->ndoomed; i++) {
		struct gc_doomed *g = &fs->doomed[i];
		if (rc < 0 || !g->delete_after_ns || (!now_ok && now < g->delete_after_ns)) {
			fs->doomed[keep++] = *g;
			continue;
		}
		char name[64];
		seg_name(name, sizeof(name), g->seg);
		if (first)
			CRASHPT("gc.before_delete");
		int d = store_del(fs->st, name);
		if (d < 0 && d != -ENOENT) {
			log_warn("garbage collection: could not delete %s: %s; will retry", name,
				 strerror(-d));
			fs->doomed[keep++] = *g;
			rc = d;
			continue;
		}
		if (first)
			CRASHPT("gc.mid_delete");
		first = 0;
		r->deleted_objects++;
		r->deleted_bytes += g->size;
	}
	fs->ndoomed = keep;
	return rc;
}

/* The barrier that makes the drops so far durable: start their grace. */
static int make_durable(struct fs *fs)
{
	int rc = jnl_sync(fs->j);
	if (rc < 0)
		return rc;
	uint64_t due = util_now_ns() + fs->gc_grace_ms * 1000000ULL;
	for (size_t i = 0; i < fs->ndoomed; i++)
		if (!fs->doomed[i].delete_after_ns)
			fs->doomed[i].delete_after_ns = due;
	return 0;
}

/* Delete the objects of earlier mounts that no index row names. */
static int sweep_orphans(struct fs *fs, struct fs_gc_report *r)
{
	struct objlist objs = {0};
	int rc = list_objects(fs, &objs);
	for (size_t i = 0; rc == 0 && i < objs.n; i++) {
		uint64_t seg = objs.v[i].seg, size, live;
		if ((seg >> 32) >= fs->epoch)
			continue; /* this mount's: maybe not in the index yet */
		pthread_mutex_lock(&fs->lock);
		int g = idx_segment_get(fs->ix, seg, &size, &live);
		pthread_mutex_unlock(&fs->lock);
		if (g != -ENOENT) {
			rc = g < 0 ? g : 0;
			continue;
		}
		/* A segment dropped by this mount but not yet deleted is not an
		 * orphan: it waits for its grace period. */
		int doomed = 0;
		for (size_t k = 0; k < fs->ndoomed && !doomed; k++)
			doomed = fs->doomed[k].seg == seg;
		if (doomed)
			continue;
		char name[64];
		seg_name(name, sizeof(name), seg);
		int d = store_del(fs->st, name);
		if (d < 0 && d != -ENOENT) {
			log_warn("garbage collection: could not delete orphan %s: %s", name,
				 strerror(-d));
			continue;
		}
		log_info("garbage collection: deleted orphan object %s (%" PRIu64 " bytes)",
			 name, objs.v[i].size);
		r->orphans++;
		r->orphan_bytes += objs.v[i].size;
	}
	free(objs.v);
	return rc;
}

static void add_report(struct fs_gc_report *t, const struct fs_gc_report *r)
{
	t->dead_segments += r->dead_segments;
	t->deleted_objects += r->deleted_objects;
	t->deleted_bytes += r->deleted_bytes;
	t->repacked_segments += r->repacked_segments;
	t->moved_blocks += r->moved_blocks;
	t->moved_bytes += r->moved_bytes;
	t->orphans += r->orphans;
	t->orphan_bytes += r->orphan_bytes;
}

int fs_gc(struct fs *fs, int now_ok, struct fs_gc_report *out)
{
	struct fs_gc_report r = {0};
	struct seglist repack = {0};
	pthread_mutex_lock(&fs->gc_mutex);
	/* Every snapshot's segments are kept: a snapshot that cannot be read
	 * stops the pass. */
	int rc = fs_snap_refresh(fs);
	if (rc == 0 && !fs->orphans_swept) {
		rc = sweep_orphans(fs, &r);
		if (rc == 0)
			fs->orphans_swept = 1;
	}
	/* Drops of earlier passes whose barrier failed get another one here. */
	if (rc == 0)
		rc = collect(fs, &r, &repack);
	for (size_t i = 0; rc == 0 && i < repack.n; i++) {
		rc = repack_one(fs, repack.v[i].seg, &r);
		/* A segment that cannot be read or is damaged stays as it is
		 * (logged; scrub reports it): the others are still repacked. */
		if (rc == -EUCLEAN || rc == -EIO || rc == -ENOENT)
			rc = 0;
		if (rc == 0 && (i + 1) % REPACK_BATCH == 0)
			rc = jnl_sync(fs->j); /* bounds the memory of sealed copies */
		if (fs->gc_progress)
			fs->gc_progress(fs->gc_progress_arg, i + 1, repack.n);
	}
	if (rc == 0 && repack.n) {
		CRASHPT("gc.after_relocate");
		/* The copies durable, the repacked segments are dead: drop them. */
		rc = jnl_sync(fs->j);
		if (rc == 0)
			rc = collect(fs, &r, NULL);
	}
	if (rc == 0)
		rc = make_durable(fs);
	if (rc == 0)
		rc = delete_due(fs, now_ok, &r);
	add_report(&fs->gc_total, &r);
	fs->gc_passes++;
	r.waiting = fs->ndoomed;
	pthread_mutex_lock(&fs->lock);
	fs->gc_shown = fs->gc_total;
	fs->gc_shown.waiting = r.waiting;
	fs->gc_passes_shown = fs->gc_passes;
	pthread_mutex_unlock(&fs->lock);
	pthread_mutex_unlock(&fs->gc_mutex);
	free(repack.v);
	if (r.dead_segments || r.deleted_objects || r.repacked_segments || r.orphans)
		log_info("garbage collection: %" PRIu64 " segments dropped, %" PRIu64
			 " objects deleted (%" PRIu64 " bytes), %" PRIu64
			 " repacked (%" PRIu64 " blocks moved), %" PRIu64
			 " orphans deleted, %" PRIu64 " waiting",
			 r.dead_segments, r.deleted_objects, r.deleted_bytes, r.repacked_segments,
			 r.moved_blocks, r.orphans, r.waiting);
	if (rc < 0)
		log_warn("garbage collection pass failed: %s", strerror(-rc));
	if (out) {
		add_report(out, &r);
		out->waiting = r.waiting;
	}
	return rc;
}

void fs_gc_set_progress(struct fs *fs, fs_progress_fn fn, void *arg)
{
	pthread_mutex_lock(&fs->gc_mutex);
	fs->gc_progress = fn;
	fs->gc_progress_arg = arg;
	pthread_mutex_unlock(&fs->gc_mutex);
}

static void *gc_main(void *arg)
{
	struct fs *fs = arg;
	pthread_mutex_lock(&fs->gc_mutex);
	while (!fs->gc_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + fs->gc_interval_ms * 1000000ULL;
		ts.tv_sec += (time_t)(ns / 1000000000ULL);
		ts.tv_nsec = (long)(ns % 1000000000ULL);
		pthread_cond_timedwait(&fs->gc_cond, &fs->gc_mutex, &ts);
		if (fs->gc_stop)
			break;
		pthread_mutex_unlock(&fs->gc_mutex);
		fs_gc(fs, 0, NULL);
		pthread_mutex_lock(&fs->gc_mutex);
	}
	pthread_mutex_unlock(&fs->gc_mutex);
	return NULL;
}

int fs_gc_start(struct fs *fs)
{
	if (!fs->gc_interval_ms)
		return 0;
	int err = pthread_create(&fs->gc_thread, NULL, gc_main, fs);
	if (err) {
		log_error("cannot start the garbage collection thread: %s", strerror(err));
		return -err;
	}
	fs->gc_running = 1;
	return 0;
}

void fs_gc_stop(struct fs *fs)
{
	if (!fs->gc_running)
		return;
	pthread_mutex_lock(&fs->gc_mutex);
	fs->gc_stop = 1;
	pthread_cond_broadcast(&fs->gc_cond);
	pthread_mutex_unlock(&fs->gc_mutex);
	pthread_join(fs->gc_thread, NULL);
	fs->gc_running = 0;
}

/* ---- reporting damage ---- */

/* The path of ino (one of its names), or "(inode N, no name)". */
static void ino_path(struct fs *fs, uint64_t ino, char *out, size_t cap)
{
	char buf[4096], name[256];
	size_t pos = sizeof(buf) - 1;
	buf[pos] = '\0';
	uint64_t cur = ino;
	int depth = 0;
	while (cur != 1 && depth++ < 256) {
		uint64_t parent;
		if (idx_dirent_parent(fs->ix, cur, &parent, name, sizeof(name)) < 0) {
			snprintf(out, cap, "(inode %" PRIu64 ", no name)", ino);
			return;
		}
		size_t n = strlen(name);
		if (n + 1 > pos)
			break;
		pos -= n;
		memcpy(buf + pos, name, n);
		buf[--pos] = '/';
		cur = parent;
	}
	snprintf(out, cap, "%s", buf[pos] ? buf + pos : "/");
}

struct affected {
	struct fs *fs;
	FILE *out;
	const char *what;
};

static int print_affected(void *arg, uint64_t ino, uint64_t blocks)
{
	struct affected *a = arg;
	char path[4096];
	ino_path(a->fs, ino, path, sizeof(path));
	fprintf(a->out, "  %s: %" PRIu64 " blocks %s (inode %" PRIu64 ")\n", path, blocks,
		a->what, ino);
	return 0;
}

/* List the files with data in seg.  Caller holds the fs lock. */
static void list_affected(struct fs *fs, FILE *out, uint64_t seg, const char *what)
{
	struct affected a = {fs, out, what};
	if (idx_extent_inos_of_seg(fs->ix, seg, print_affected, &a) < 0)
		fprintf(out, "  (the files affected could not be listed)\n");
}

/* ---- fsck ---- */

struct usage_list {
	struct idx_seg_usage *v;
	size_t n, cap;
};

static int collect_usage(void *arg, const struct idx_seg_usage *u)
{
	struct usage_list *l = arg;
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 256;
		struct idx_seg_usage *nv = realloc(l->v, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = nc;
	}
	l->v[l->n++] = *u;
	return 0;
}

static const struct obj *find_obj(const struct objlist *l, uint64_t seg)
{
	struct obj key = {seg, 0};
	return l->n ? bsearch(&key, l->v, l->n, sizeof(*l->v), cmp_obj) : NULL;
}

/* The rows of usage and seglist are sorted by segment, their first field. */
static const struct idx_seg_usage *find_usage(const struct usage_list *l, uint64_t seg)
{
	return l->n ? bsearch(&seg, l->v, l->n, sizeof(*l->v), cmp_obj) : NULL;
}

static const struct segrow *find_row(const struct seglist *l, uint64_t seg)
{
	return l->n ? bsearch(&seg, l->v, l->n, sizeof(*l->v), cmp_obj) : NULL;
}

struct ns_ctx {
	struct fs *fs;
	FILE *out;
	uint64_t problems;
};

static int print_dangling(void *arg, uint64_t parent, const char *name, uint64_t ino)
{
	struct ns_ctx *c = arg;
	char path[4096];
	ino_path(c->fs, parent, path, sizeof(path));
	fprintf(c->out, "fsck: %s/%s names inode %" PRIu64 ", which does not exist\n",
		strcmp(path, "/") ? path : "", name, ino);
	c->problems++;
	return 0;
}

static int print_nlink(void *arg, uint64_t ino, uint64_t nlink, uint64_t names)
{
	struct ns_ctx *c = arg;
	char path[4096];
	ino_path(c->fs, ino, path, sizeof(path));
	fprintf(c->out, "fsck: %s (inode %" PRIu64 ") has link count %" PRIu64 " but %" PRIu64
		" names\n", path, ino, nlink, names);
	c->problems++;
	return 0;
}

int fs_fsck(struct fs *fs, int repair, FILE *out, fs_progress_fn progress, void *arg)
{
	struct objlist objs = {0};
	struct seglist rows = {0};
	struct usage_list use = {0};
	uint64_t problems = 0, fixed = 0;
	pthread_mutex_lock(&fs->gc_mutex); /* no garbage collection meanwhile */
	int rc = jnl_sync_stored(fs->j); /* nothing of this mount in memory */
	if (rc == 0)
		rc = list_objects(fs, &objs);
	if (rc == 0) {
		pthread_mutex_lock(&fs->lock);
		rc = list_rows(fs, &rows);
		if (rc == 0)
			rc = idx_extent_seg_stats(fs->ix, collect_usage, &use);
		pthread_mutex_unlock(&fs->lock);
	}
	if (rc < 0)
		goto out;
	uint64_t total = rows.n + objs.n, done = 0;
	char name[64];

	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < rows.n; i++, done++) {
		const struct segrow *s = &rows.v[i];
		const struct obj *o = find_obj(&objs, s->seg);
		const struct idx_seg_usage *u = find_usage(&use, s->seg);
		uint64_t bytes = u ? u->bytes : 0;
		seg_name(name, sizeof(name), s->seg);
		if (progress && done % 64 == 0)
			progress(arg, done, total);
		if (data_seg_busy(fs->d, s->seg))
			continue;
		if (!o && u) {
			fprintf(out, "fsck: %s is missing from the store; data lost:\n", name);
			list_affected(fs, out, s->seg, "lost");
			problems++;
			continue;
		}
		if (!o) {
			/* A row no extent uses, without an object: drop it. */
			if (repair && idx_segment_delete(fs->ix, s->seg) == 0) {
				fprintf(out, "fsck: %s: unused index row without object: dropped\n",
					name);
				fixed++;
			} else {
				fprintf(out, "fsck: %s: unused index row without object\n", name);
				problems++;
			}
			continue;
		}
		if (o->size != s->size) {
			fprintf(out,
				"fsck: %s has %" PRIu64 " bytes but the index says %" PRIu64
				" (truncated or replaced):\n",
				name, o->size, s->size);
			list_affected(fs, out, s->seg, "in it");
			problems++;
		}
		if (u && u->end > s->size) {
			fprintf(out, "fsck: %s: extents reach byte %" PRIu64 " of a %" PRIu64
				     "-byte segment:\n", name, u->end, s->size);
			list_affected(fs, out, s->seg, "in it");
			problems++;
		}
		if (s->live != bytes) {
			if (repair && idx_segment_set_live(fs->ix, s->seg, bytes) == 0) {
				fprintf(out, "fsck: %s: live count %" PRIu64 ", extents hold %" PRIu64
					     ": fixed\n", name, s->live, bytes);
				fixed++;
			} else {
				fprintf(out, "fsck: %s: live count %" PRIu64 ", extents hold %" PRIu64
					     "\n", name, s->live, bytes);
				problems++;
			}
		}
	}
	/* Extents pointing at segments the index does not know. */
	for (size_t i = 0; i < use.n; i++) {
		if (find_row(&rows, use.v[i].seg))
			continue;
		seg_name(name, sizeof(name), use.v[i].seg);
		fprintf(out, "fsck: extents point into %s, which the index does not list:\n", name);
		list_affected(fs, out, use.v[i].seg, "in it");
		problems++;
	}
	struct ns_ctx ns = {fs, out, 0};
	rc = idx_check_namespace(fs->ix, print_dangling, print_nlink, &ns);
	problems += ns.problems;
	pthread_mutex_unlock(&fs->lock);
	if (rc < 0)
		goto out;

	/* Objects the index does not know. */
	for (size_t i = 0; i < objs.n; i++, done++) {
		uint64_t seg = objs.v[i].seg;
		if (progress && done % 64 == 0)
			progress(arg, done, total);
		if (find_row(&rows, seg) || (seg >> 32) >= fs->epoch)
			continue;
		seg_name(name, sizeof(name), seg);
		if (repair) {
			int d = store_del(fs->st, name);
			if (d == 0 || d == -ENOENT) {
				fprintf(out, "fsck: %s: orphan object (%" PRIu64
					     " bytes, in no index): deleted\n", name, objs.v[i].size);
				fixed++;
				continue;
			}
		}
		fprintf(out, "fsck: %s: orphan object (%" PRIu64 " bytes, in no index)\n", name,
			objs.v[i].size);
		problems++;
	}
	if (progress)
		progress(arg, total, total);
	if (fixed)
		rc = jnl_sync(fs->j);
	fprintf(out, "fsck: %zu segments, %zu objects; %" PRIu64 " problems%s, %" PRIu64
		     " fixed\n", rows.n, objs.n, problems, problems && !repair ? "" : " left", fixed);
out:
	pthread_mutex_unlock(&fs->gc_mutex);
	free(objs.v);
	free(rows.v);
	free(use.v);
	if (rc < 0)
		return rc;
	return problems > INT32_MAX ? INT32_MAX : (int)problems;
}

/* ---- scrub ---- */

int fs_scrub(struct fs *fs, FILE *out, fs_progress_fn progress, void *arg)
{
	struct seglist rows = {0};
	uint64_t problems = 0, total = 0, done = 0, frames = 0;
	CLEANUP_FREE uint8_t *plain = malloc(DATA_BLOCK_SIZE);
	if (!plain)
		return -ENOMEM;
	int rc = jnl_sync_stored(fs->j);
	if (rc == 0) {
		int m = jnl_scrub(fs->j, out);
		if (m < 0)
			rc = m;
		else
			problems += (uint64_t)m;
	}
	if (rc == 0) {
		pthread_mutex_lock(&fs->lock);
		rc = list_rows(fs, &rows);
		pthread_mutex_unlock(&fs->lock);
	}
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < rows.n; i++)
		total += rows.v[i].size;
	for (size_t i = 0; i < rows.n; i++) {
		const struct segrow *s = &rows.v[i];
		char name[64];
		seg_name(name, sizeof(name), s->seg);
		if (progress)
			progress(arg, done, total);
		done += s->size;
		pthread_mutex_lock(&fs->lock);
		int busy = data_seg_busy(fs->d, s->seg);
		pthread_mutex_unlock(&fs->lock);
		if (busy || s->size == 0)
			continue;
		CLEANUP_FREE uint8_t *obj = NULL;
		CLEANUP_FREE struct data_frame *fr = NULL;
		size_t len;
		uint32_t n;
		int g = store_get_all(fs->st, name, (void **)&obj, &len);
		if (g == 0)
			g = data_parse_segment(&fs->key, s->seg, obj, len, &fr, &n);
		if (g < 0) {
			fprintf(out, "scrub: %s is %s:\n", name,
				g == -ENOENT ? "missing" : g == -EUCLEAN ? "damaged" : strerror(-g));
			if (g != -ENOENT && g != -EUCLEAN) {
				rc = g; /* the store failed: not a finding */
				goto out;
			}
			pthread_mutex_lock(&fs->lock);
			list_affected(fs, out, s->seg, "lost");
			pthread_mutex_unlock(&fs->lock);
			problems++;
			continue;
		}
		for (uint32_t k = 0; k < n; k++) {
			struct idx_extent cur;
			pthread_mutex_lock(&fs->lock);
			int e = idx_extent_get(fs->ix, fr[k].ino, fr[k].blk, &cur);
			pthread_mutex_unlock(&fs->lock);
			int live = e == 0 && cur.seg == s->seg && cur.frame == k;
			frames++;
			if (live && (cur.off != fr[k].off || cur.len != fr[k].len ||
				     cur.plen != fr[k].plen)) {
				fprintf(out, "scrub: %s frame %u: the index and the trailer disagree\n",
					name, k);
				problems++;
				continue;
			}
			int o = data_open_frame(&fs->key, s->seg, k, &fr[k], obj, plain);
			if (o == 0)
				continue;
			if (o == -ENOMEM) {
				rc = o; /* not a finding */
				goto out;
			}
			if (!live) {
				fprintf(out, "scrub: %s frame %u is damaged (unused data; harmless)\n",
					name, k);
				continue;
			}
			char path[4096];
			pthread_mutex_lock(&fs->lock);
			ino_path(fs, fr[k].ino, path, sizeof(path));
			pthread_mutex_unlock(&fs->lock);
			fprintf(out, "scrub: %s frame %u is damaged: %s (inode %" PRIu64
				     ") block %" PRIu64 " lost\n",
				name, k, path, fr[k].ino, fr[k].blk);
			problems++;
		}
	}
	if (progress)
		progress(arg, total, total);
	fprintf(out, "scrub: %zu segments, %" PRIu64 " frames, %" PRIu64 " bytes read; %" PRIu64
		     " problems\n", rows.n, frames, total, problems);
out:
	free(rows.v);
	if (rc < 0)
		return rc;
	return problems > INT32_MAX ? INT32_MAX : (int)problems;
}
