/* journal.h: the durability barrier, the index log and checkpoints, and
 * recovery of the index from the object store.
 *
 * Store layout (beside zerofs.key and segments/):
 *   meta/log/<seq>   the index changes (a SQLite changeset) of barrier seq
 *   meta/ckpt/<seq>  the whole index (a SQLite image) as of barrier seq
 * seq is 16 hex digits.  Each object is  plen u64 le | frame  where the
 * frame is sealed with seal_ad_meta('L' or 'C', seq).
 *
 * A barrier (jnl_sync):
 *   1. under the fs lock: pack dirty blocks, seal the open segment, take the
 *      index changeset (and, every checkpoint_interval logs, an image);
 *   2. wait until every segment sealed so far is stored, or, when they are
 *      small (and no older log waits), put them in the log instead: the log
 *      carries them and the barrier is one PUT (journal.c, LOG_MAGIC);
 *   3. store the changesets not yet stored, in sequence order, each with a
 *      conditional put (if absent): a sequence number already taken by other
 *      bytes means another writer took over, and this mount is fenced;
 *   4. return 0; a checkpoint image taken in step 1 goes to the
 *      checkpoint thread, which stores it and then deletes the logs and
 *      checkpoints it replaces (one image at a time, never waited for:
 *      the logs it replaces are already stored).
 * The lease is read before step 3 when the last check is over a second
 * old; what keeps a fenced writer out is step 3's conditional put.
 * Barriers run one at a time; callers that arrive while one runs wait for
 * the next one, which covers all of them (group commit).  A failed barrier
 * keeps its changeset queued: the next barrier stores it first, so the log
 * never has a gap.  A crash therefore leaves an atomic prefix of barriers.
 * The first log of each mount is marked (meta/fence/<seq>) and never pruned,
 * so a fenced writer cannot reuse its sequence number after a checkpoint.
 *
 * Recovery: the newest checkpoint, then the logs after it in order.  The
 * local database is reused only when it was closed cleanly at exactly the
 * store's newest sequence (local keys "fsid" and "clean_seq").
 *
 * Locking: jnl_sync and jnl_free are called without the fs lock; the
 * journal takes it itself for step 1.  The journal's own mutex orders
 * barriers. */
#ifndef ZEROFS_JOURNAL_H
#define ZEROFS_JOURNAL_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#include "codec/codec.h"
#include "data/data.h"
#include "index/idx.h"
#include "store/store.h"

struct jnl;
struct jnl_carried;
struct lease;

struct jnl_params {
	uint64_t checkpoint_interval; /* logs between checkpoints */
	uint64_t barrier_interval_ms; /* periodic barrier; 0: none */
	struct lease *lease; /* checked before index objects are written; NULL: none */
	int read_only; /* a replica or snapshot mount: nothing is ever stored */
};

/* Store the first checkpoint (seq 0) of a new filesystem from ix. */
int jnl_format(struct store *st, const struct seal_key *key, struct idx *ix);

/* Build or reuse the local index at db_path.  fsid_hex names the
 * filesystem (guards against a cache of another one).  On success *ix is
 * open, *seq is the newest barrier in the store and *ckpt the checkpoint
 * it was built from.  -EUCLEAN/-EIO with a logged message when the store's
 * index objects are missing or damaged. */
int jnl_recover(struct store *st, const struct seal_key *key, const char *db_path,
		const char *fsid_hex, struct idx **ix, uint64_t *seq, uint64_t *ckpt,
		struct jnl_carried **missing, size_t *nmissing);

/* A segment that a replayed log carries, that the index still names and
 * that the store does not have (the mount that wrote the log stopped before
 * its upload ended): jnl_recover hands these back; the caller gives them to
 * data_adopt.  obj is malloc'd. */
struct jnl_carried {
	uint64_t id;
	void *obj;
	size_t len;
};
void jnl_carried_free(struct jnl_carried *c, size_t n);

struct jnl *jnl_new(struct store *st, const struct seal_key *key, struct idx *ix,
		    struct data *d, pthread_mutex_t *fs_lock, const struct jnl_params *p,
		    uint64_t seq, uint64_t ckpt);
/* Stop the periodic barrier (without running a last one). */
void jnl_free(struct jnl *j);

/* Make everything written before the call durable.  0, or -EIO (logged)
 * when the store could not take it; nothing is lost then, and a later
 * barrier retries. */
int jnl_sync(struct jnl *j);
/* A barrier that also waits until every segment is stored (no log carries
 * one): for unmount, so the store alone holds everything. */
int jnl_sync_stored(struct jnl *j);

/* Mark the local index as clean at the current sequence (after the last
 * barrier of an unmount), or as dirty (at mount).  Caller holds the fs lock. */
int jnl_mark_clean(struct jnl *j, int clean);

#define JNL_LAT_BUCKETS 40

struct jnl_stats {
	uint64_t barriers;
	uint64_t failed;
	uint64_t seq;
	uint64_t last_ns; /* duration of the last barrier */
	/* Barrier durations: bucket i counts those under 2^i microseconds. */
	uint64_t lat_hist[JNL_LAT_BUCKETS];
	uint64_t p50_us, p90_us, p99_us; /* upper bounds, from the histogram */
};
void jnl_get_stats(struct jnl *j, struct jnl_stats *out);

/* Read and authenticate the checkpoints and the logs after the newest one;
 * one line on out per damaged object.  The number of damaged objects, or
 * -errno when the store could not be read. */
int jnl_scrub(struct jnl *j, FILE *out);

/* ---- snapshots: meta/snap/<name>, an index image sealed with the name in
 * its associated data ---- */

#define JNL_SNAP_NAME_MAX 64

/* Letters, digits, '.', '_', '-'; not starting with '.' or '-'; 1..64. */
int jnl_snapshot_valid_name(const char *name);

/* Run a barrier that captures the index image, and store it as snapshot
 * name (never replacing one: -EEXIST).  *seq (may be NULL) gets its
 * barrier. */
int jnl_snapshot_create(struct jnl *j, const char *name, uint64_t *seq);

struct jnl_snapshot {
	uint64_t seq;      /* the barrier it was taken at */
	uint64_t time_ns;  /* wall clock at creation */
	void *image;       /* malloc'd SQLite image */
	size_t image_len;
	size_t stored_len; /* bytes of its object */
};
/* Read and open snapshot name.  -ENOENT, -EUCLEAN (damaged, logged). */
int jnl_snapshot_get(struct store *st, const struct seal_key *key, const char *name,
		     struct jnl_snapshot *out);
/* -ENOENT when there is no such snapshot. */
int jnl_snapshot_delete(struct store *st, const char *name);
int jnl_snapshot_list(struct store *st, int (*cb)(void *arg, const char *name), void *arg);
/* Write snapshot name's index to db_path and open it. */
int jnl_load_snapshot(struct store *st, const struct seal_key *key, const char *name,
		      const char *db_path, struct idx **ix, uint64_t *seq);

/* A replica's poll: apply the writer's logs after ours, or reload from its
 * newest checkpoint when it pruned logs we had not applied.  *applied gets
 * the number of objects applied.  0 or -errno. */
int jnl_follow(struct jnl *j, uint64_t *applied);
/* The newest log taken (writer) or applied (replica). */
uint64_t jnl_seq(struct jnl *j);

#endif
