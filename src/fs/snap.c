/* snap.c: snapshots and read-only replicas (fs.h).
 *
 * A snapshot is the index image of one barrier, stored as meta/snap/<name>
 * (journal.h): O(index size) to make, sharing every segment with the live
 * filesystem.  Garbage collection keeps every segment a snapshot's extent
 * map uses: fs_snap_refresh reads each snapshot once (they are immutable)
 * and keeps its sorted segment list.  Creation and deletion hold gc_mutex,
 * so a pass never works from a list that misses a snapshot being made.
 *
 * A replica is a read-only mount that polls the store for the writer's new
 * index logs (jnl_follow) every replica_poll_ms and applies them under the
 * fs lock; the kernel's caches of a replica mount expire quickly (zfuse.c),
 * so readers see the new state within about one poll. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "fs/fs-int.h"
#include "log.h"

/* ---- snapshots ---- */

int fs_snapshot_create(struct fs *fs, const char *name)
{
	if (fs->read_only)
		return -EROFS;
	if (!jnl_snapshot_valid_name(name))
		return -EINVAL;
	pthread_mutex_lock(&fs->gc_mutex);
	int rc = jnl_snapshot_create(fs->j, name, NULL);
	pthread_mutex_unlock(&fs->gc_mutex);
	return rc;
}

int fs_snapshot_delete(struct fs *fs, const char *name)
{
	if (fs->read_only)
		return -EROFS;
	if (!jnl_snapshot_valid_name(name))
		return -EINVAL;
	pthread_mutex_lock(&fs->gc_mutex);
	int rc = jnl_snapshot_delete(fs->st, name);
	pthread_mutex_unlock(&fs->gc_mutex);
	if (rc == 0)
		log_info("snapshot %s deleted; garbage collection reclaims what only it used",
			 name);
	return rc;
}

struct text {
	char *buf;
	size_t len;
	FILE *f;
	struct fs *fs;
	int rc;
};

static int list_one(void *arg, const char *name)
{
	struct text *t = arg;
	struct jnl_snapshot sn;
	int rc = jnl_snapshot_get(t->fs->st, &t->fs->key, name, &sn);
	if (rc < 0) {
		fprintf(t->f, "%s damaged\n", name);
		return 0;
	}
	free(sn.image);
	time_t secs = (time_t)(sn.time_ns / 1000000000ULL);
	struct tm tm;
	char when[32] = "?";
	if (gmtime_r(&secs, &tm))
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(t->f, "%s %s barrier=%016" PRIx64 " index_bytes=%zu\n", name, when, sn.seq,
		sn.stored_len);
	return 0;
}

char *fs_snapshot_list_text(struct fs *fs)
{
	struct text t = {.fs = fs};
	t.f = open_memstream(&t.buf, &t.len);
	if (!t.f)
		return NULL;
	int rc = jnl_snapshot_list(fs->st, list_one, &t);
	if (fclose(t.f) != 0 || rc < 0) {
		free(t.buf);
		errno = rc < 0 ? -rc : ENOMEM;
		return NULL;
	}
	return t.buf;
}

/* ---- what snapshots keep alive ---- */

struct u64s {
	uint64_t *v;
	size_t n, cap;
};

static int add_seg(void *arg, const struct idx_seg_usage *u)
{
	struct u64s *l = arg;
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 256;
		uint64_t *nv = realloc(l->v, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = nc;
	}
	l->v[l->n++] = u->seg; /* in segment order already */
	return 0;
}

static int load_segs(struct fs *fs, const char *name, struct snap_segs *out)
{
	struct jnl_snapshot sn;
	int rc = jnl_snapshot_get(fs->st, &fs->key, name, &sn);
	if (rc < 0)
		return rc;
	char path[4300];
	snprintf(path, sizeof(path), "%s/gc-snap-%ld.db", fs->cache_path, (long)getpid());
	struct idx *ix = idx_open_image(path, sn.image, sn.image_len);
	free(sn.image);
	if (!ix)
		return -errno;
	struct u64s l = {0};
	rc = idx_extent_seg_stats(ix, add_seg, &l);
	idx_close(ix);
	unlink(path);
	char p2[4400];
	snprintf(p2, sizeof(p2), "%s-wal", path);
	unlink(p2);
	snprintf(p2, sizeof(p2), "%s-shm", path);
	unlink(p2);
	if (rc < 0) {
		free(l.v);
		return rc;
	}
	snprintf(out->name, sizeof(out->name), "%s", name);
	out->segs = l.v;
	out->n = l.n;
	return 0;
}

struct refresh_ctx {
	struct fs *fs;
	int rc;
};

static int refresh_one(void *arg, const char *name)
{
	struct refresh_ctx *c = arg;
	struct fs *fs = c->fs;
	for (size_t i = 0; i < fs->nsnaps; i++)
		if (strcmp(fs->snaps[i].name, name) == 0) {
			fs->snaps[i].seen = 1;
			return 0;
		}
	struct snap_segs *nv = realloc(fs->snaps, (fs->nsnaps + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	fs->snaps = nv;
	struct snap_segs *s = &fs->snaps[fs->nsnaps];
	memset(s, 0, sizeof(*s));
	int rc = load_segs(fs, name, s);
	if (rc < 0) {
		/* A snapshot that cannot be read cannot be trusted to say what it
		 * uses: nothing may be collected until it is fixed or deleted. */
		log_error("snapshot %s cannot be read (%s): garbage collection waits", name,
			  strerror(-rc));
		c->rc = rc;
		return 0;
	}
	s->seen = 1;
	fs->nsnaps++;
	return 0;
}

int fs_snap_refresh(struct fs *fs)
{
	for (size_t i = 0; i < fs->nsnaps; i++)
		fs->snaps[i].seen = 0;
	struct refresh_ctx c = {fs, 0};
	int rc = jnl_snapshot_list(fs->st, refresh_one, &c);
	if (rc == 0)
		rc = c.rc;
	if (rc < 0)
		return rc;
	size_t keep = 0;
	for (size_t i = 0; i < fs->nsnaps; i++) {
		if (fs->snaps[i].seen)
			fs->snaps[keep++] = fs->snaps[i];
		else
			free(fs->snaps[i].segs);
	}
	fs->nsnaps = keep;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int fs_snap_uses(struct fs *fs, uint64_t seg)
{
	for (size_t i = 0; i < fs->nsnaps; i++)
		if (fs->snaps[i].n &&
		    bsearch(&seg, fs->snaps[i].segs, fs->snaps[i].n, sizeof(uint64_t), cmp_u64))
			return 1;
	return 0;
}

void fs_snap_free(struct fs *fs)
{
	for (size_t i = 0; i < fs->nsnaps; i++)
		free(fs->snaps[i].segs);
	free(fs->snaps);
	fs->snaps = NULL;
	fs->nsnaps = 0;
}

/* ---- replicas ---- */

static void *replica_main(void *arg)
{
	struct fs *fs = arg;
	pthread_mutex_lock(&fs->gc_mutex);
	while (!fs->replica_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + fs->replica_poll_ms * 1000000ULL;
		ts.tv_sec += (time_t)(ns / 1000000000ULL);
		ts.tv_nsec = (long)(ns % 1000000000ULL);
		pthread_cond_timedwait(&fs->replica_cond, &fs->gc_mutex, &ts);
		if (fs->replica_stop)
			break;
		pthread_mutex_unlock(&fs->gc_mutex);
		uint64_t applied = 0;
		int rc = jnl_follow(fs->j, &applied);
		/* Drop what the apply recorded in the session. */
		if (rc == 0)
			rc = jnl_sync(fs->j);
		pthread_mutex_lock(&fs->lock);
		fs->replica_polls++;
		fs->replica_applied += applied;
		if (rc == 0)
			fs->replica_last_ok_ns = util_now_ns();
		pthread_mutex_unlock(&fs->lock);
		if (rc < 0)
			log_warn("replica: could not follow the writer: %s; will retry",
				 strerror(-rc));
		else if (applied)
			log_debug("replica: applied %" PRIu64 " index objects, now at %016" PRIx64,
				  applied, jnl_seq(fs->j));
		pthread_mutex_lock(&fs->gc_mutex);
	}
	pthread_mutex_unlock(&fs->gc_mutex);
	return NULL;
}

int fs_replica_start(struct fs *fs)
{
	fs->replica_last_ok_ns = util_now_ns();
	int err = pthread_create(&fs->replica_thread, NULL, replica_main, fs);
	if (err) {
		log_error("cannot start the replica thread: %s", strerror(err));
		return -err;
	}
	fs->replica_running = 1;
	return 0;
}

void fs_replica_stop(struct fs *fs)
{
	if (!fs->replica_running)
		return;
	pthread_mutex_lock(&fs->gc_mutex);
	fs->replica_stop = 1;
	pthread_cond_broadcast(&fs->replica_cond);
	pthread_mutex_unlock(&fs->gc_mutex);
	pthread_join(fs->replica_thread, NULL);
	fs->replica_running = 0;
}
