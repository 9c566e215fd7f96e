/* fs-int.h: the fs object, shared by fs.c (the POSIX core and the mount
 * life cycle) and maint.c (garbage collection, fsck, scrub).  Not for
 * other modules: they use fs.h. */
#ifndef ZEROFS_FS_INT_H
#define ZEROFS_FS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "codec/codec.h"
#include "data/data.h"
#include "fs/fs.h"
#include "index/idx.h"
#include "journal/journal.h"
#include "store/store.h"

#define REF_BUCKETS 65536

/* A segment dropped from the index; its object is deleted once the
 * barrier that dropped it is durable and the grace period is over. */
struct gc_doomed {
	uint64_t seg;
	uint64_t size;
	uint64_t delete_after_ns; /* 0 while the drop is not durable */
};

struct ref {
	uint64_t ino, n;
	struct ref *next;
};

struct fs {
	pthread_mutex_t lock;
	struct store *st;
	struct seal_key key;
	char fsid_hex[2 * SEAL_FSID_BYTES + 1];
	char *cache_path;
	int lock_fd;
	int clean_close; /* fs_close marked the index clean: seal it at close */
	struct idx *ix;
	struct data *d;
	struct jnl *j;
	struct lease *lease; /* the store's writer lease (journal/lease.h) */
	struct ref *refs[REF_BUCKETS];
	uint64_t reads, writes, read_bytes, write_bytes, syncs;
	int kernel_times; /* the kernel keeps mtime/ctime of written files */
	/* No inode has a security.capability attribute (writable mounts
	 * only): fs_getxattr answers the kernel's lookup of it, made before
	 * every write, without the lock.  Cleared, for good, by the first
	 * fs_setxattr of that name. */
	atomic_int no_caps;
	uint32_t epoch;   /* of this mount: the high half of its segment ids */
	int read_only;    /* replica or snapshot mount: never writes to the store */
	int replica;      /* follows the writer (snap.c) */
	char *db_path;    /* the local index (per process for read-only mounts) */
	uint64_t replica_poll_ms;
	uint64_t replica_applied, replica_polls, replica_last_ok_ns;
	pthread_t replica_thread;
	int replica_running, replica_stop;
	pthread_cond_t replica_cond; /* with gc_mutex */

	/* Garbage collection (maint.c).  gc_mutex: one pass at a time, and
	 * everything below. */
	pthread_mutex_t gc_mutex;
	pthread_cond_t gc_cond;
	struct gc_doomed *doomed; /* segments dropped from the index */
	size_t ndoomed, doomed_cap;
	int orphans_swept;        /* this mount's one sweep of orphans is done */
	uint64_t gc_interval_ms, gc_grace_ms;
	int gc_repack_live;
	fs_progress_fn gc_progress; /* the offline command's, on a terminal */
	void *gc_progress_arg;
	struct fs_gc_report gc_total;
	uint64_t gc_passes;
	/* A copy for the statistics, under the fs lock: a pass holds gc_mutex
	 * for long, and reading the statistics must not wait for it. */
	struct fs_gc_report gc_shown;
	uint64_t gc_passes_shown;
	/* Segments the snapshots use (snap.c), under gc_mutex. */
	struct snap_segs *snaps;
	size_t nsnaps;
	pthread_t gc_thread;
	int gc_running, gc_stop;
};

/* Garbage collection thread (maint.c): started by fs_open after the mount's
 * first barrier when gc_interval_ms > 0; stopped before the last barrier. */
int fs_gc_start(struct fs *fs);
void fs_gc_stop(struct fs *fs);

/* snap.c */
struct snap_segs {
	char name[JNL_SNAP_NAME_MAX + 1];
	uint64_t *segs; /* sorted */
	size_t n;
	int seen;
};
/* Refresh fs->snaps from the store's snapshots.  Caller holds gc_mutex. */
int fs_snap_refresh(struct fs *fs);
/* Does a snapshot use seg?  Caller holds gc_mutex. */
int fs_snap_uses(struct fs *fs, uint64_t seg);
void fs_snap_free(struct fs *fs);
int fs_replica_start(struct fs *fs);
void fs_replica_stop(struct fs *fs);

#endif
