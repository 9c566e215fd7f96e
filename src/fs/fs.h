/* fs.h: the POSIX core.  Inodes, directories, files, symlinks, xattrs and
 * the mount's life cycle, in terms of inode numbers; no FUSE or NBD types,
 * so the FUSE layer, the NBD server and the command-line tools share it.
 *
 * Every function returns 0 (or a count) on success and a negative errno on
 * failure, as POSIX would report it for the same request.
 *
 * Lookup counts: every function that hands out an inode (fs_lookup,
 * fs_mknod, fs_mkdir, fs_symlink, fs_link, and fs_ref) takes a reference;
 * fs_forget drops them.  An inode whose last name is gone lives on while it
 * is referenced (open-but-unlinked files) and is deleted at the last
 * fs_forget, or at the next mount after a crash.
 *
 * Locking: thread-safe.  One fs lock serialises the index and the data
 * buffers; object-store I/O happens outside it (see data.h). */
#ifndef ZEROFS_FS_H
#define ZEROFS_FS_H

#include <stdint.h>
#include <stdio.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include "cfg.h"
#include "data/data.h"
#include "index/idx.h"
#include "store/store.h"

struct fs;

/* Who is asking: for the owner of new inodes. */
struct fs_ctx {
	uid_t uid;
	gid_t gid;
	mode_t umask;
};

/* fs_setattr: which fields of the given attributes to apply. */
#define FS_SET_MODE 0x01
#define FS_SET_UID 0x02
#define FS_SET_GID 0x04
#define FS_SET_SIZE 0x08
#define FS_SET_ATIME 0x10
#define FS_SET_MTIME 0x20
#define FS_SET_ATIME_NOW 0x40
#define FS_SET_MTIME_NOW 0x80
#define FS_SET_CTIME 0x100

/* Create a new filesystem in the store named by cfg (fails with -EEXIST if
 * the store already holds one).  0 or -errno with a message logged. */
int fs_mkfs(const struct cfg *cfg, const char *password);

/* Re-wrap the data key of the store named by cfg under a new password (the
 * data is not rewritten).  -EACCES when the old password is wrong. */
int fs_change_password(const struct cfg *cfg, const char *old, const char *new);

/* Open (recover) the filesystem for a read-write mount.  When the store is
 * empty and create_missing is set, make the filesystem first.  NULL with
 * errno set and a message logged (wrong password: EACCES; not a store:
 * ENOTDIR... see the man page). */
struct fs *fs_open(const struct cfg *cfg, const char *password, int create_missing);
/* Final barrier, mark the local index clean, free everything.  Returns the
 * barrier's result: non-zero means some data could not be made durable. */
int fs_close(struct fs *fs);

int fs_lookup(struct fs *fs, uint64_t parent, const char *name, struct idx_inode *out);
void fs_forget(struct fs *fs, uint64_t ino, uint64_t n);
void fs_ref(struct fs *fs, uint64_t ino);
int fs_getattr(struct fs *fs, uint64_t ino, struct idx_inode *out);
int fs_setattr(struct fs *fs, uint64_t ino, const struct idx_inode *attr, int to_set,
	       struct idx_inode *out);

int fs_mknod(struct fs *fs, const struct fs_ctx *ctx, uint64_t parent, const char *name,
	     mode_t mode, dev_t rdev, struct idx_inode *out);
int fs_mkdir(struct fs *fs, const struct fs_ctx *ctx, uint64_t parent, const char *name,
	     mode_t mode, struct idx_inode *out);
int fs_symlink(struct fs *fs, const struct fs_ctx *ctx, uint64_t parent, const char *name,
	       const char *target, struct idx_inode *out);
int fs_link(struct fs *fs, uint64_t ino, uint64_t newparent, const char *newname,
	    struct idx_inode *out);
int fs_unlink(struct fs *fs, uint64_t parent, const char *name);
int fs_rmdir(struct fs *fs, uint64_t parent, const char *name);
/* flags: 0, RENAME_NOREPLACE or RENAME_EXCHANGE. */
int fs_rename(struct fs *fs, uint64_t parent, const char *name, uint64_t newparent,
	      const char *newname, unsigned int flags);
int fs_readlink(struct fs *fs, uint64_t ino, char **target);

/* Data.  fs_read returns the bytes read (short at end of file). */
ssize_t fs_read(struct fs *fs, uint64_t ino, uint64_t off, size_t len, void *buf);
ssize_t fs_write(struct fs *fs, uint64_t ino, uint64_t off, const void *buf, size_t len);
/* The directory of device files, in the root (zerofs-fuse(8), DEVICES). */
#define FS_DEVICE_DIR ".nbd"

/* Whether a descriptor of ino opened with O_DIRECT may bypass the kernel's
 * page cache (zfuse.c): ino is a device file (a regular file in /.nbd)
 * without set-user-ID, set-group-ID or file capabilities.  1, 0 or -errno. */
int fs_direct_ok(struct fs *fs, uint64_t ino);
/* For a write the kernel passes on without looking at the file (one
 * through such a descriptor): drop the file's capabilities and, unless
 * keep_sid, its set-user-ID bit and its set-group-ID bit if group-executable,
 * as the kernel drops them before its own writes.  1 when something was
 * dropped (the kernel's cached mode is then stale), 0, or -errno. */
int fs_drop_privs(struct fs *fs, uint64_t ino, int keep_sid);
/* A barrier: everything written so far is in the store when it returns 0. */
int fs_sync(struct fs *fs);
int fs_fallocate(struct fs *fs, uint64_t ino, int mode, uint64_t off, uint64_t len);
/* SEEK_DATA / SEEK_HOLE (other whence values: -EINVAL). */
int fs_lseek(struct fs *fs, uint64_t ino, uint64_t off, int whence, uint64_t *out);
/* The allocation of [off, off + len) of ino, clamped to the file's size:
 * cb gets its maximal runs in order, data 1 for blocks that hold data
 * (stored, packed or dirty) and 0 for holes (no extent, no dirty buffer:
 * they read as zeros).  cb runs under the fs lock, so it must not call fs_*;
 * it returns non-zero to stop the walk.  Nothing is flushed.  0 or -errno. */
typedef int (*fs_map_cb)(void *arg, uint64_t off, uint64_t len, int data);
int fs_map(struct fs *fs, uint64_t ino, uint64_t off, uint64_t len, fs_map_cb cb, void *arg);
/* fs_read that also gives cb the allocation of the bytes it read, as
 * fs_map would, but taken from the same lookups that found the bytes (a
 * hole is exactly a range that read as zeros), in one call: ranges in
 * order, adjacent ones possibly of the same kind, nothing past what was
 * read.  cb runs under the fs lock; its return value is ignored.  With
 * pins (zeroed, one per block of the range), blocks in the memory cache
 * stay there, pinned, instead of being copied into buf: see data_read_map;
 * fs_unpin gives them back. */
ssize_t fs_read_map(struct fs *fs, uint64_t ino, uint64_t off, size_t len, void *buf,
		    fs_map_cb cb, void *arg, struct data_pin *pins);
void fs_unpin(struct fs *fs, struct data_pin *pins, size_t n);

/* Entries of dir after cookie (0: from the start; "." and ".." are the
 * caller's).  cb returns 0 when it took the entry and non-zero to stop
 * without taking it.  With plus set, every entry taken gets a lookup
 * reference (readdirplus). */
int fs_readdir(struct fs *fs, uint64_t dir, uint64_t cookie, int plus, idx_readdir_cb cb,
	       void *arg);
int fs_statfs(struct fs *fs, struct statvfs *out);

int fs_setxattr(struct fs *fs, uint64_t ino, const char *name, const void *val, size_t len,
		int flags);
/* Returns the value's length; copies it when cap >= length (cap 0: size
 * probe); -ERANGE when cap is too small. */
ssize_t fs_getxattr(struct fs *fs, uint64_t ino, const char *name, void *buf, size_t cap);
/* NUL-separated names, same size-probe convention. */
ssize_t fs_listxattr(struct fs *fs, uint64_t ino, char *buf, size_t cap);
int fs_removexattr(struct fs *fs, uint64_t ino, const char *name);

/* With FUSE's writeback cache the kernel keeps the times of the files it
 * writes and sends them as setattr: writes then leave mtime/ctime alone. */
void fs_set_kernel_times(struct fs *fs, int on);

struct fs_gc_report {
	uint64_t dead_segments;     /* dropped from the index: no file uses them */
	uint64_t deleted_objects;   /* segment objects deleted from the store */
	uint64_t deleted_bytes;
	uint64_t repacked_segments; /* sparse segments whose live blocks were moved */
	uint64_t moved_blocks, moved_bytes;
	uint64_t orphans, orphan_bytes; /* objects no index ever used (crashes) */
	uint64_t waiting;           /* dropped, deletion waiting for the grace period */
};

struct fs_stats {
	uint64_t reads, writes, read_bytes, write_bytes, syncs;
	uint64_t barriers, barriers_failed, barrier_last_ns, log_seq;
	uint64_t barrier_p50_us, barrier_p90_us, barrier_p99_us;
	uint64_t dirty_bytes, pending_bytes, segments_stored, upload_errors;
	uint64_t cache_hits, cache_misses;
	uint64_t inodes, live_bytes;
	struct store_counters store;
	struct fs_gc_report gc;
	uint64_t gc_passes;
	uint64_t replica_lag_ms; /* since a replica's last successful poll */
	uint64_t replica_applied;
};
void fs_get_stats(struct fs *fs, struct fs_stats *out);
/* The statistics as text, one "name value" line each (malloc'd). */
char *fs_stats_text(struct fs *fs);

/* Progress of a long operation: done of total units so far (total 0:
 * not known yet). */
typedef void (*fs_progress_fn)(void *arg, uint64_t done, uint64_t total);

/* ---- snapshots and replicas (snap.c) ---- */

/* Close without the last barrier: what was not behind a barrier is
 * dropped (an interrupted receive).  The next mount rebuilds its index. */
void fs_abort(struct fs *fs);

/* send: write to fd the stream of the changes from snapshot from (NULL: a
 * full stream) to snapshot to, encrypted and authenticated under a key
 * from password.  fs is a mount of snapshot to (-o snapshot=). */
int fs_send(struct fs *fs, const char *from, const char *to, int fd, const char *password,
	    int kdf_min, FILE *report, fs_progress_fn progress, void *parg);
/* receive: apply a stream from fd to fs (a read-write mount of the target
 * store, opened for this), ending with the stream's snapshot there.  On
 * error the caller must fs_abort; nothing was made durable unless *applied
 * is set (the last barrier or the snapshot object failed: the changes may
 * be in the store without the snapshot; receiving again with force mends
 * it).  With force, a
 * target changed since the stream's base is rolled back to it first. */
int fs_receive(struct fs *fs, int fd, const char *password, int force, FILE *report,
	       fs_progress_fn progress, void *parg, int *applied);

/* Is this a read-only mount (a replica or a snapshot)? */
int fs_read_only(struct fs *fs);
/* Make snapshot name of the state at a new barrier.  -EINVAL (bad name),
 * -EEXIST, -EROFS (read-only mount), -errno. */
int fs_snapshot_create(struct fs *fs, const char *name);
/* -ENOENT when there is no such snapshot. */
int fs_snapshot_delete(struct fs *fs, const char *name);
/* One line a snapshot: "NAME TIME barrier=SEQ index_bytes=N" (malloc'd). */
char *fs_snapshot_list_text(struct fs *fs);

/* ---- maintenance (maint.c) ---- */


/* One garbage collection pass: drop segments no file uses, repack those
 * whose live share is below gc_repack_live, run the barriers that make
 * that durable, and delete the objects of segments dropped durably at
 * least gc_grace_ms ago (all of them at once when now_ok: no reader can
 * still be using them, as in the offline command).  Never deletes an object
 * that a durable index refers to.  Adds to *r.  0 or -errno. */
int fs_gc(struct fs *fs, int now_ok, struct fs_gc_report *r);
/* Progress of the passes (segments repacked of those to repack). */
void fs_gc_set_progress(struct fs *fs, fs_progress_fn fn, void *arg);


/* fsck: check the index against the store's objects (every segment object
 * present with its size, no object unknown to the index, live counts equal
 * to what the extent map holds, every extent within its segment, every
 * name pointing at an inode, link counts); one line per problem on out,
 * naming the object and the files affected.  With repair, fix what can be
 * fixed without data (delete orphan objects, fix counts, drop unused
 * rows).  Returns the number of problems left (0: clean), or -errno. */
int fs_fsck(struct fs *fs, int repair, FILE *out, fs_progress_fn progress, void *arg);

/* scrub: read every segment object and authenticate every frame and the
 * index objects the mount was recovered from; one line per damaged object
 * or frame on out, naming the files whose data is lost.  Returns the number
 * of problems (0: clean), or -errno. */
int fs_scrub(struct fs *fs, FILE *out, fs_progress_fn progress, void *arg);

#endif
