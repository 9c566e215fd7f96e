/* idx.h: the SQLite index: inodes, directory entries, the extent map,
 * segments with their live-byte counts, extended attributes, and a few
 * counters.  It lives in one database file in the cache directory.
 *
 * Durability is not SQLite's job here (synchronous=OFF, WAL): the journal
 * makes the index durable in the object store.  Every change to the
 * replicated tables (all but "local") is recorded (changes.h); the journal
 * takes the recorded changes as a changeset, in the format of SQLite's
 * session extension, at each barrier (idx_changeset_take) and writes it to
 * the store; recovery applies
 * changesets in order to a checkpoint image (idx_serialize /
 * idx_open_image).
 *
 * Schema (all integers are SQLite INTEGER):
 *   super(k TEXT PRIMARY KEY, v INTEGER)            -- counters: next_ino, epoch, ...
 *   local(k TEXT PRIMARY KEY, v)                    -- this cache only; not replicated
 *   inode(ino INTEGER PRIMARY KEY, mode, uid, gid, nlink, size, rdev,
 *         atime, mtime, ctime, btime)              -- times in ns since the epoch
 *   symlink(ino INTEGER PRIMARY KEY, target BLOB)
 *   dirent(id INTEGER PRIMARY KEY AUTOINCREMENT, parent, name BLOB, ino,
 *          UNIQUE(parent, name))                   -- id is the readdir cookie
 *   extent(ino, blk, seg, off, len, plen, frame, PRIMARY KEY(ino, blk)) WITHOUT ROWID
 *   segment(seg INTEGER PRIMARY KEY, size, live, frames)
 *   xattr(ino, name BLOB, value BLOB, PRIMARY KEY(ino, name)) WITHOUT ROWID
 *
 * Live bytes: idx_extent_set and the extent deletions keep segment.live equal
 * to the sum of len over the extents that point into the segment (a segment
 * row must exist, made by idx_segment_create, before extents point into it).
 *
 * Errors: 0 (or a documented positive value) on success, negative errno
 * otherwise: -ENOENT missing row, -EEXIST duplicate, -EIO on any SQLite
 * failure (logged with SQLite's message).  If an error makes SQLite roll
 * back the whole batch transaction (a full disk at COMMIT), the changes since
 * the last barrier are gone: one log line names the database, and every
 * later call fails with -EIO (idx_flush too, so no barrier succeeds); the
 * next mount rebuilds the index from the store.
 *
 * Locking: one struct idx is one SQLite connection and is NOT thread-safe:
 * the caller serialises every call (the fs layer holds its index lock).
 * A listing's callback may call other idx functions, but not the listing
 * function that is calling it (each statement is prepared once). */
#ifndef ZEROFS_IDX_H
#define ZEROFS_IDX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define IDX_ROOT_INO 1

struct idx;

struct idx_inode {
	uint64_t ino;
	uint32_t mode; /* type and permission bits, as st_mode */
	uint32_t uid;
	uint32_t gid;
	uint32_t nlink;
	uint64_t size;
	uint64_t rdev;
	int64_t atime; /* ns since the epoch */
	int64_t mtime;
	int64_t ctime;
	int64_t btime;
};

struct idx_extent {
	uint64_t blk;  /* block number within the file (offset / block size) */
	uint64_t seg;  /* segment id */
	uint32_t off;  /* frame offset within the segment */
	uint32_t len;  /* frame length */
	uint32_t plen; /* plaintext length (<= block size) */
	uint32_t frame; /* frame number within the segment (part of its AD) */
};

/* Open (creating the schema if needed) the database at path, with
 * journal_mode=WAL and synchronous=OFF, and start recording changes.
 * ":memory:" works for tests.  Returns NULL with errno set. */
struct idx *idx_open(const char *path);
/* Replace whatever is at path (and its -wal/-shm) with a database image made
 * by idx_serialize, then idx_open it.  Returns NULL with errno set. */
struct idx *idx_open_image(const char *path, const void *image, size_t len);
void idx_close(struct idx *ix);

/* The clean-close seal: a database reused at mount must be exactly the
 * one a clean unmount left, or it could mount wrong data (a damaged disk,
 * a power loss while it was written: SQLite does not sync it here, a hand
 * edit).  idx_close_sealed commits, closes, syncs the file and writes its
 * BLAKE2b checksum to path.seal; 0 or a negative errno (logged; the next
 * mount then rebuilds).  ix is freed either way.  idx_check_seal, before
 * path is opened again, removes path.seal and returns 0 only if it matched
 * the file (and no -wal file appeared); otherwise -EUCLEAN or another
 * negative errno, with a log line that names the file. */
#define IDX_SEAL_BYTES 32
int idx_close_sealed(struct idx *ix);
int idx_check_seal(const char *path);

/* Transactions around each filesystem operation: savepoints inside one
 * batch transaction that every write opens and idx_flush commits
 * (idx_changeset_take when the batch is a quarter of a second old;
 * idx_serialize, the image calls and idx_close first).  idx_flush: -EBUSY
 * inside idx_begin. */
int idx_begin(struct idx *ix);
int idx_commit(struct idx *ix);
void idx_rollback(struct idx *ix);
int idx_flush(struct idx *ix);

/* Replicated counters (table super). idx_super_get: -ENOENT if unset. */
int idx_super_get(struct idx *ix, const char *k, int64_t *v);
int idx_super_set(struct idx *ix, const char *k, int64_t v);
/* Local, unreplicated state (table local); values are text. */
int idx_local_get(struct idx *ix, const char *k, char **v); /* malloc'd; -ENOENT */
int idx_local_set(struct idx *ix, const char *k, const char *v); /* v NULL deletes */

/* Inodes.  idx_inode_create allocates the number (counter next_ino, starting
 * at 2; the root is IDX_ROOT_INO) and stores it in in->ino. */
int idx_inode_get(struct idx *ix, uint64_t ino, struct idx_inode *out);
int idx_inode_create(struct idx *ix, struct idx_inode *in);
int idx_inode_update(struct idx *ix, const struct idx_inode *in); /* -ENOENT */
/* Insert with the given number (the root, at mkfs). */
int idx_inode_insert(struct idx *ix, const struct idx_inode *in);
/* Delete an inode with its extents (live counts adjusted), xattrs and symlink
 * target.  Directory entries pointing to it are the caller's business. */
int idx_inode_delete(struct idx *ix, uint64_t ino);
/* Call cb for every inode whose nlink is 0 (orphans after a crash); cb may
 * delete the inode it is given. */
int idx_inode_orphans(struct idx *ix, int (*cb)(void *arg, uint64_t ino), void *arg);
/* Count of inodes. */
int idx_inode_count(struct idx *ix, uint64_t *n);

int idx_symlink_set(struct idx *ix, uint64_t ino, const char *target);
int idx_symlink_get(struct idx *ix, uint64_t ino, char **target); /* malloc'd */

/* Directory entries.  Names are byte strings (no NUL, no '/'). */
int idx_dirent_lookup(struct idx *ix, uint64_t parent, const char *name, uint64_t *ino);
int idx_dirent_insert(struct idx *ix, uint64_t parent, const char *name, uint64_t ino);
int idx_dirent_delete(struct idx *ix, uint64_t parent, const char *name);
/* Point an existing entry at another inode (keeps its cookie). -ENOENT. */
int idx_dirent_retarget(struct idx *ix, uint64_t parent, const char *name, uint64_t ino);
/* 1 when dir has no entries, 0 when it has, -errno. */
int idx_dir_is_empty(struct idx *ix, uint64_t dir);
/* Entries of dir with cookie > after, in cookie order, with the child's
 * attributes.  cb returns non-zero to stop (that value is returned). */
typedef int (*idx_readdir_cb)(void *arg, const char *name, const struct idx_inode *child,
			      uint64_t cookie);
int idx_readdir(struct idx *ix, uint64_t dir, uint64_t after, idx_readdir_cb cb, void *arg);

/* Extent map.  idx_extent_get: -ENOENT for a hole. */
int idx_extent_get(struct idx *ix, uint64_t ino, uint64_t blk, struct idx_extent *out);
/* First extent with block >= blk: for SEEK_DATA/SEEK_HOLE.  -ENOENT if none. */
int idx_extent_next(struct idx *ix, uint64_t ino, uint64_t blk, struct idx_extent *out);
/* Extents with first <= blk < last, in block order; cb returns non-zero to stop. */
int idx_extent_range(struct idx *ix, uint64_t ino, uint64_t first, uint64_t last,
		     int (*cb)(void *arg, const struct idx_extent *e), void *arg);
/* Insert or replace the extent of (ino, e->blk), moving live bytes from the
 * old extent's segment to e->seg's. */
int idx_extent_set(struct idx *ix, uint64_t ino, const struct idx_extent *e);
/* Delete the extents with first <= blk < last (live bytes adjusted). */
int idx_extent_delete_range(struct idx *ix, uint64_t ino, uint64_t first, uint64_t last);

/* Segments. */
int idx_segment_create(struct idx *ix, uint64_t seg);
int idx_segment_seal(struct idx *ix, uint64_t seg, uint64_t size, uint32_t frames);
int idx_segment_get(struct idx *ix, uint64_t seg, uint64_t *size, uint64_t *live);
int idx_segment_delete(struct idx *ix, uint64_t seg);
int idx_segment_list(struct idx *ix,
		     int (*cb)(void *arg, uint64_t seg, uint64_t size, uint64_t live), void *arg);
/* Sum of live bytes over all segments. */
int idx_live_bytes(struct idx *ix, uint64_t *bytes);
/* Set seg's live bytes (fsck's repair of a wrong count).  -ENOENT. */
int idx_segment_set_live(struct idx *ix, uint64_t seg, uint64_t live);

/* What the extent map holds of one segment. */
struct idx_seg_usage {
	uint64_t seg;
	uint64_t extents; /* extents (frames) pointing into it */
	uint64_t bytes;   /* their stored bytes: what its live count must be */
	uint64_t end;     /* the largest off + len */
};
/* Every segment the extent map points into, in segment order (one scan). */
int idx_extent_seg_stats(struct idx *ix,
			 int (*cb)(void *arg, const struct idx_seg_usage *u), void *arg);
/* The inodes with extents in seg, with how many blocks each (one scan). */
int idx_extent_inos_of_seg(struct idx *ix, uint64_t seg,
			   int (*cb)(void *arg, uint64_t ino, uint64_t blocks), void *arg);
/* One name of ino: its parent directory and name (truncated to cap).
 * -ENOENT when it has none (the root, or an open unlinked file). */
int idx_dirent_parent(struct idx *ix, uint64_t ino, uint64_t *parent, char *name, size_t cap);
/* fsck's namespace checks: dangling for every name whose inode does not
 * exist, nlink for every non-directory whose link count differs from its
 * number of names. */
int idx_check_namespace(struct idx *ix,
			int (*dangling)(void *arg, uint64_t parent, const char *name, uint64_t ino),
			int (*nlink)(void *arg, uint64_t ino, uint64_t nlink, uint64_t names),
			void *arg);

/* Extended attributes.  flags: XATTR_CREATE (-EEXIST) / XATTR_REPLACE
 * (-ENODATA).  get/remove: -ENODATA when absent. */
int idx_xattr_get(struct idx *ix, uint64_t ino, const char *name, void **val, size_t *len);
int idx_xattr_set(struct idx *ix, uint64_t ino, const char *name, const void *val, size_t len,
		  int flags);
int idx_xattr_remove(struct idx *ix, uint64_t ino, const char *name);
int idx_xattr_list(struct idx *ix, uint64_t ino, int (*cb)(void *arg, const char *name),
		   void *arg);
/* Whether any inode has an attribute called name: 1, 0 or -errno. */
int idx_xattr_name_used(struct idx *ix, const char *name);

/* Durability hooks for the journal.
 * idx_changeset_take: the changes recorded since the previous take (or open)
 * as a changeset (malloc'd; *len 0 and *cs NULL when nothing changed); then
 * recording starts afresh.  -EBUSY inside idx_begin. */
int idx_changeset_take(struct idx *ix, void **cs, size_t *len);
/* Apply a changeset (recovery).  The changes are not recorded.  Any conflict
 * means the log does not fit this database: -EUCLEAN, nothing applied. */
int idx_changeset_apply(struct idx *ix, const void *cs, size_t len);
/* Replace every replicated table with the content of image (a checkpoint):
 * a replica catching up after the writer pruned its logs.  Not recorded. */
int idx_replace_from_image(struct idx *ix, const void *image, size_t len);

/* send: compare two index files (the base may be an empty schema).  *cs
 * (malloc'd) gets the changeset that turns the base's namespace tables
 * (inode, symlink, dirent, xattr) into the target's; changed is called for
 * every extent the target has that the base has not (or elsewhere), in
 * store order, dropped for every extent of the base the target has not. */
int idx_stream_diff(const char *base_path, const char *target_path, void **cs, size_t *len,
		    int (*changed)(void *arg, uint64_t ino, const struct idx_extent *e),
		    int (*dropped)(void *arg, uint64_t ino, uint64_t blk), void *arg);
/* receive: does the index differ from image (a snapshot of it) in any
 * inode, name, symlink, attribute or extent? */
int idx_differs_from_image(struct idx *ix, const void *image, size_t len, int *differs);
/* receive --force: make the namespace and extents those of image (a
 * snapshot of this index), recorded; live counts recounted. */
int idx_rollback_to_image(struct idx *ix, const void *image, size_t len);
/* receive: apply a stream's changeset, recorded (the
 * target's next log carries it); conflicts replace. */
int idx_changeset_apply_logged(struct idx *ix, const void *cs, size_t len);
/* The whole database as an image (malloc'd) for a checkpoint. */
int idx_serialize(struct idx *ix, void **image, size_t *len);

#endif
