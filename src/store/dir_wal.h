/* dir_wal.h: the write-ahead log of the directory store.
 *
 * A put to the directory store is durable when it returns.  Done plainly
 * (store_dir.c) that is two fsyncs of a new file and of its directory,
 * each a round of metadata writes and a flush.  For small puts (at most
 * DIR_WAL_PUT_MAX bytes: index logs, and the small segments a barrier
 * seals) the store instead writes the temp file and renames it into place
 * without syncing, then appends a record of the put (key and bytes) to
 * "<root>/.tmp/.wal", a file of DIR_WAL_SIZE bytes written with zeros when
 * it was made, and fdatasyncs it: one flush of blocks already allocated,
 * shared by the puts that run at the same time (group commit).  A fsync on
 * the mount costs one flush of the disk instead of four.
 *
 * Retiring: a record stays until the object it describes is durable by
 * itself.  A thread of the log fsyncs the objects of the records written so
 * far and their directories, then moves the log's header past them, when a
 * quarter of the log is in use, RETIRE_NS after the oldest record, and when
 * asked: before anything else changes a key that has a record not yet
 * retired (dir_wal_settle), so a record is never older than the object's
 * last change.  (Not syncfs: on a host with other busy writers it would
 * wait for all their dirty data while the log fills.)
 *
 * Replay: after a crash, the next open of the store by a process that can
 * lock the log writes again, durably, the object of each record not
 * retired: it may be missing or torn (its rename outlived its data), or
 * look whole only from the page cache.  Objects are written once
 * (store.h), so the record's bytes are the object's.  A retirement that
 * fails leaves its records for this replay: the log then takes no more
 * puts, and the fsync is not tried again (after a writeback error a
 * second fsync can succeed with the data lost).
 *
 * Ownership: one process appends at a time, the one holding an exclusive
 * flock on the log; it takes it at its first small put.  A process that
 * finds it taken puts the plain way (and tries again every few seconds).
 * The log assumes a local filesystem, where flock and fsync mean what
 * they say.
 *
 * Layout, little-endian.  Two header slots, at 0 and HDR_SLOT, written in
 * turn (the valid one of the later generation counts): "ZWALHDR1" | u64
 * generation | u64 retired (the last retired record's sequence number) |
 * u64 tail (offset of the first record to replay) | 16-byte BLAKE2b of the
 * 32 bytes before it.
 * Records from DIR_WAL_HDR on, each 8-byte aligned: "ZWR1" | u16 key
 * length | u16 0 | u32 data length | u64 sequence number | key | data |
 * 16-byte BLAKE2b of all before it.  A record that would cross the end of
 * the file goes to DIR_WAL_HDR instead; replay looks there when the next
 * record is not where the last one ended.
 *
 * Locking: every function is thread-safe (the log has its own mutex). */
#ifndef ZEROFS_DIR_WAL_H
#define ZEROFS_DIR_WAL_H

#include <stddef.h>
#include <stdint.h>

#define DIR_WAL_NAME ".wal" /* in the store's temp directory */
#define DIR_WAL_SIZE (16u << 20)
#define DIR_WAL_HDR 4096u
#define DIR_WAL_PUT_MAX (2u << 20)

struct dir_wal;

/* Write object key of len bytes again, durably (replay). 0 or -errno. */
typedef int (*dir_wal_apply_fn)(void *arg, const char *key, const void *data, size_t len);

/* The log of a store whose temp directory is tmpfd, on the filesystem of
 * syncfd (both stay the caller's).  Nothing is opened yet.  NULL, errno
 * set, on failure. */
struct dir_wal *dir_wal_new(int tmpfd, int syncfd, const char *url);
/* Replay the log if no live process owns it, through apply; then the
 * records are retired.  0 (also when there is no log, or another process
 * owns it), or -errno: objects acknowledged as stored may be missing. */
int dir_wal_recover(struct dir_wal *w, dir_wal_apply_fn apply, void *arg);
/* Whether a put of len bytes can go through the log: it is small enough
 * and this process owns the log (the first call takes it). */
int dir_wal_usable(struct dir_wal *w, size_t len, dir_wal_apply_fn apply, void *arg);
/* Record durably a put of key that is already renamed into place.  0, or
 * -errno when the record may not be durable: the caller makes the object
 * durable itself. */
int dir_wal_append(struct dir_wal *w, const char *key, const void *data, size_t len);
/* Before key changes other than by dir_wal_append (a plain put, a delete):
 * retire the records of key not yet retired.  0 or -errno. */
int dir_wal_settle(struct dir_wal *w, const char *key);
/* fsync each object of keys[0..n) and each directory holding one (once),
 * relative to rootfd.  An object deleted since is skipped.  0 or -errno. */
int dir_sync_objects(int rootfd, char **keys, size_t n);
/* Retire what is left, release the log and free w. */
void dir_wal_free(struct dir_wal *w);

#endif
