/* store_dir.c: the directory backend: each object is a file under a root
 * directory, its key the relative path.
 *
 * A put writes the object to a unique file in "<root>/.tmp", fsyncs it, then
 * renames it into place (for STORE_PUT_IF_ABSENT with RENAME_NOREPLACE, or
 * link(2) where the filesystem lacks it, so an existing object is never
 * replaced) and fsyncs the directory that holds it.
 * Parent directories are created when the rename finds one missing, and each
 * new one is made durable in its own parent before the object is moved in.  Readers therefore see
 * the old or the new object, never a partial one, and a put that returned 0
 * survives a crash.
 *
 * Small puts skip both fsyncs and are made durable by a record in the
 * store's write-ahead log instead (dir_wal.h): one flush, shared by the
 * puts of the moment.  Opening a store replays what a crash left there.
 *
 * Small objects' inodes are recycled (struct recycler): a delete moves the
 * file into "<root>/.tmp/free" and a later put fills it again, so a store
 * that creates and deletes objects at the rate of barriers allocates and
 * frees no inodes.  Readers and reuse meet on a flock of the inode
 * (see RECYCLE_MAX).
 *
 * Conditional puts (the lease) compare etags: an object's etag is a hash of
 * its content.  Check and replace run under an exclusive flock(2) of
 * "<root>/.tmp/.cond.lock", which orders them against other threads and
 * other processes using the same directory.
 *
 * All calls are *at() relative to a descriptor of the root held open for the
 * store's life; there is no other shared state, so every op is thread-safe. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* renameat2 */
#endif
#include "store/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>

#include "common/util.h"
#include "log.h"
#include "store/dir_wal.h"

#define TMP_DIR ".tmp"
#define KEY_MAX STORE_KEY_MAX
/* A temp file this old belongs to a put that crashed, not one in flight. */
#define TMP_STALE_SECS 3600
/* Objects put lazily that wait for a store_sync at most. */
#define LAZY_MAX 4096

/* Recycling.  ext4 without a journal allocates an inode by skipping, one
 * by one, the free inodes of the block group deleted in the last 60 s (360 s
 * while their inode table block is dirty).  With objects put and deleted
 * at the rate of barriers (index logs, the small segments they carry),
 * every create walked thousands of them: 100-300 us of each put, a fifth
 * of the daemon's CPU under pgbench TPC-B.  So a deleted object of at most
 * RECYCLE_MAX bytes is renamed into FREE_DIR instead of unlinked, and a
 * put fills the oldest such file instead of creating one; at most
 * RECYCLE_POOL wait, the others are unlinked.
 *
 * A reader that opened an object before it was deleted must never read
 * another object's bytes from its reused inode.  Readers and reuse meet on
 * flock(2) of the inode:
 *   - a reader takes LOCK_SH (without waiting) on what it opened, then
 *     checks that the key still names that inode, reads, and closes;
 *   - a put takes LOCK_EX (without waiting) on a pool file before it
 *     truncates it, and holds it until the file is written and closed.
 * A reader that holds LOCK_SH passed its check while the key named the
 * inode, so the inode is not reused until the read ends (the put's LOCK_EX
 * fails and it takes another file).  A reader that finds LOCK_EX held, or
 * takes LOCK_SH after a reuse, sees that the key no longer names the inode
 * (a deleted key leads to the pool or nowhere: keys are written once) and
 * opens the key again, which gives ENOENT or the key's new object.
 * Object files take no other flocks (the conditional puts lock a file of
 * their own).  A pool file belongs to the process that put it there (its
 * name starts with the pid), which removes it at close; once that process
 * is gone, the next open of the store does. */
#define FREE_DIR ".tmp/free"
#define RECYCLE_MAX (2u << 20)
#define RECYCLE_POOL 2048
#define FREE_NAME_MAX 48

struct recycled {
	char name[FREE_NAME_MAX]; /* relative to the root */
};

struct recycler {
	pthread_mutex_t lock;
	struct recycled *pool; /* a ring of RECYCLE_POOL, oldest at head */
	size_t head, n;
	int dirfd; /* FREE_DIR, -1 when it could not be made: no recycling */
};

struct store_dir {
	struct store base;
	int rootfd;
	int tmpfd;
	struct dir_wal *wal;

	pthread_mutex_t lazy_lock; /* the keys put lazily and not synced yet */
	char **lazy;
	size_t nlazy, caplazy;
	int lazy_failed; /* a sync of them failed: dir_sync fails from then on */

	struct recycler rc;
};

static struct store_dir *to_dir(struct store *st)
{
	return (struct store_dir *)st;
}

/* Map a failed syscall's errno onto the store's error contract; unexpected
 * failures are logged here, where the key is known. */
static int dir_err(struct store *st, const char *op, const char *key, int err)
{
	switch (err) {
	case ENOENT:
	case ENOTDIR:
	case EISDIR:
		return -ENOENT;
	case ENOSPC:
	case EDQUOT:
		return -ENOSPC;
	case EACCES:
	case EPERM:
	case EROFS:
		return -EACCES;
	case ENOMEM:
		return -ENOMEM;
	}
	errno = err;
	log_error("store %s: %s %s: %m", st->url, op, key);
	return -EIO;
}

/* The store's key rule, and our own temp directory is no key. */
static int key_valid(const char *key)
{
	return store_key_valid(key) && strcmp(key, TMP_DIR) != 0 &&
	       strncmp(key, TMP_DIR "/", strlen(TMP_DIR "/")) != 0;
}

static int fsync_dir_at(int rootfd, const char *dir)
{
	CLEANUP_CLOSE int fd = openat(rootfd, *dir ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || fsync(fd) < 0)
		return -errno;
	return 0;
}

/* Copy the directory part of key ("" for the root) into dir. */
static void key_dirname(const char *key, char dir[KEY_MAX + 1])
{
	const char *slash = strrchr(key, '/');
	size_t n = slash ? (size_t)(slash - key) : 0;

	memcpy(dir, key, n);
	dir[n] = '\0';
}

/* Create the missing parent directories of key, each made durable in its
 * parent.  Returns 0 or -errno. */
static int make_parents(int rootfd, const char *key)
{
	char path[KEY_MAX + 1];
	char parent[KEY_MAX + 1];
	int r;

	for (const char *p = strchr(key, '/'); p; p = strchr(p + 1, '/')) {
		size_t n = (size_t)(p - key);

		memcpy(path, key, n);
		path[n] = '\0';
		if (mkdirat(rootfd, path, 0755) < 0) {
			if (errno == EEXIST)
				continue;
			return -errno;
		}
		key_dirname(path, parent);
		r = fsync_dir_at(rootfd, parent);
		if (r < 0)
			return r;
	}
	return 0;
}

/* A pool file no reader holds, locked (LOCK_EX) and open for writing, its
 * name (relative to the root) in name and its size in *size: its descriptor
 * (the lock goes with its close), or -1 when there is none.  It is not
 * emptied: the writer overwrites it and cuts what is left (see
 * write_temp). */
static int recycled_take(struct store_dir *d, char name[FREE_NAME_MAX], off_t *size)
{
	struct recycler *rc = &d->rc;

	for (size_t tries = 0; tries < 4; tries++) {
		struct recycled r;
		pthread_mutex_lock(&rc->lock);
		if (rc->n == 0) {
			pthread_mutex_unlock(&rc->lock);
			return -1;
		}
		r = rc->pool[rc->head];
		rc->head = (rc->head + 1) % RECYCLE_POOL;
		rc->n--;
		pthread_mutex_unlock(&rc->lock);
		int fd = openat(d->rootfd, r.name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue; /* gone (a sweep): try the next */
		struct stat sb;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &sb) == 0) {
			memcpy(name, r.name, FREE_NAME_MAX);
			*size = sb.st_size;
			return fd;
		}
		close(fd);
		/* A reader still holds it: back to the pool's end. */
		pthread_mutex_lock(&rc->lock);
		int room = rc->n < RECYCLE_POOL;
		if (room)
			rc->pool[(rc->head + rc->n++) % RECYCLE_POOL] = r;
		pthread_mutex_unlock(&rc->lock);
		if (!room)
			unlinkat(d->rootfd, r.name, 0);
	}
	return -1;
}

/* A temp file holding data, durable on return when durable is set: a
 * recycled one, or a new uniquely named file in TMP_DIR.  Its name,
 * relative to the root, goes to name. */
static int write_temp(struct store_dir *d, const void *data, size_t len, int durable,
		      char name[FREE_NAME_MAX])
{
	static atomic_uint_fast64_t seq;
	off_t old = 0;
	CLEANUP_CLOSE int fd = recycled_take(d, name, &old);
	uint64_t rnd;
	int r;

	while (fd < 0) {
		if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
			rnd = util_now_ns();
		snprintf(name, FREE_NAME_MAX, TMP_DIR "/%016llx.%llu", (unsigned long long)rnd,
			 (unsigned long long)atomic_fetch_add(&seq, 1));
		fd = openat(d->rootfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0 && errno != EEXIST)
			return -errno;
	}
	/* A recycled file is overwritten in place and then cut to length, not
	 * emptied first: its blocks are reused, and ext4 does not write back a
	 * file truncated to zero when it is closed (auto_da_alloc), all on the
	 * barrier's path.  Until the object is synced a crash may leave old
	 * bytes in it where it could leave a short file before; neither is
	 * trusted: the write-ahead log's replay writes a logged put's object
	 * again, and recovery stores a lazily put segment again from the index
	 * log that carries it (STORE_CAP_LAZY), whatever the file holds. */
	r = util_write_full(fd, data, len);
	if (r == 0 && old > (off_t)len && ftruncate(fd, (off_t)len) < 0)
		r = -errno;
	if (r == 0 && durable && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	fd = -1;
	if (r < 0)
		unlinkat(d->rootfd, name, 0);
	return r;
}

/* Delete key by moving it into the pool when it is small enough and the
 * pool has room; else unlink it.  0 or -errno (-ENOENT: no such object). */
static int recycle_or_unlink(struct store_dir *d, const char *key)
{
	static atomic_uint_fast64_t seq;
	struct recycler *rc = &d->rc;
	struct recycled r;
	struct stat sb;

	if (rc->dirfd < 0 || fstatat(d->rootfd, key, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !S_ISREG(sb.st_mode) || sb.st_size > RECYCLE_MAX || sb.st_nlink != 1)
		return unlinkat(d->rootfd, key, 0) < 0 ? -errno : 0;
	pthread_mutex_lock(&rc->lock);
	int room = rc->n < RECYCLE_POOL;
	pthread_mutex_unlock(&rc->lock);
	if (!room)
		return unlinkat(d->rootfd, key, 0) < 0 ? -errno : 0;
	snprintf(r.name, sizeof(r.name), FREE_DIR "/%d.%llu", (int)getpid(),
		 (unsigned long long)atomic_fetch_add(&seq, 1));
	if (renameat(d->rootfd, key, d->rootfd, r.name) < 0)
		return -errno;
	/* Checked again on the file moved, which nothing changes any more. */
	room = fstatat(d->rootfd, r.name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode) &&
	       sb.st_size <= RECYCLE_MAX && sb.st_nlink == 1;
	pthread_mutex_lock(&rc->lock);
	if (room && rc->n < RECYCLE_POOL) {
		rc->pool[(rc->head + rc->n++) % RECYCLE_POOL] = r;
		room = 1;
	} else {
		room = 0;
	}
	pthread_mutex_unlock(&rc->lock);
	if (!room)
		unlinkat(d->rootfd, r.name, 0);
	return 0;
}

/* Remove the pool's files (close). */
static void recycler_free(struct store_dir *d)
{
	struct recycler *rc = &d->rc;

	for (; rc->n > 0; rc->n--, rc->head = (rc->head + 1) % RECYCLE_POOL)
		unlinkat(d->rootfd, rc->pool[rc->head].name, 0);
	free(rc->pool);
	rc->pool = NULL;
	if (rc->dirfd >= 0)
		close(rc->dirfd);
	rc->dirfd = -1;
	pthread_mutex_destroy(&rc->lock);
}

/* Move the temp file name (relative to the root) to key.  IF_ABSENT uses
 * RENAME_NOREPLACE, or link(2) on filesystems without it: both fail with
 * EEXIST rather than replace.  The temp file stays on failure. */
static int publish(struct store_dir *d, const char *name, const char *key, int flags)
{
	int r;

	if (!(flags & STORE_PUT_IF_ABSENT)) {
		r = renameat(d->rootfd, name, d->rootfd, key);
	} else {
		r = renameat2(d->rootfd, name, d->rootfd, key, RENAME_NOREPLACE);
		if (r < 0 && (errno == EINVAL || errno == ENOSYS)) {
			r = linkat(d->rootfd, name, d->rootfd, key, 0);
			if (r == 0)
				unlinkat(d->rootfd, name, 0);
		}
	}
	return r < 0 ? -errno : 0;
}

/* Make object key, renamed into place without syncing, durable. */
static int sync_object(struct store_dir *d, const char *key)
{
	return dir_sync_objects(d->rootfd, (char **)&key, 1);
}

/* Remember key, put lazily, for dir_sync: 0, or 1 when LAZY_MAX keys wait
 * (the caller syncs them rather than let the list grow without bound when
 * store_sync is rare), or -errno: no memory, or a sync failed before (see
 * dir_sync); the caller syncs the object itself. */
static int lazy_note(struct store_dir *d, const char *key)
{
	char *k = strdup(key);
	if (!k)
		return -ENOMEM;
	LOCK_GUARD(&d->lazy_lock);
	if (d->lazy_failed) {
		free(k);
		return -EIO;
	}
	if (d->nlazy == d->caplazy) {
		size_t cap = d->caplazy ? d->caplazy * 2 : 64;
		char **nv = realloc(d->lazy, cap * sizeof(*nv));
		if (!nv) {
			free(k);
			return -ENOMEM;
		}
		d->lazy = nv;
		d->caplazy = cap;
	}
	d->lazy[d->nlazy++] = k;
	return d->nlazy >= LAZY_MAX;
}

/* fsync what was put lazily so far, and its directories.  A failure is
 * final: an fsync tried again after a writeback error can succeed with the
 * data lost, so from then on every call fails, and the callers keep the
 * bytes where they are (the index logs that carry them). */
static int dir_sync(struct store *st)
{
	struct store_dir *d = to_dir(st);
	char **keys;
	size_t n;

	pthread_mutex_lock(&d->lazy_lock);
	if (d->lazy_failed) {
		pthread_mutex_unlock(&d->lazy_lock);
		return -EIO;
	}
	keys = d->lazy;
	n = d->nlazy;
	d->lazy = NULL;
	d->nlazy = d->caplazy = 0;
	pthread_mutex_unlock(&d->lazy_lock);
	int r = n ? dir_sync_objects(d->rootfd, keys, n) : 0;
	if (r < 0) {
		dir_err(st, "fsync objects put before", keys[n - 1], -r);
		log_error("store %s: objects put lately cannot be made durable; the index logs "
			  "that carry them are kept",
			  st->url);
		pthread_mutex_lock(&d->lazy_lock);
		d->lazy_failed = 1;
		pthread_mutex_unlock(&d->lazy_lock);
	}
	for (size_t i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
	return r < 0 ? -EIO : 0;
}

static int replay_object(void *arg, const char *key, const void *data, size_t len);

enum put_mode {
	PUT_LAZY, /* STORE_PUT_LAZY: no sync until dir_sync */
	PUT_LOGGED, /* through the write-ahead log when it takes the put */
	PUT_SYNCED, /* fsyncs (conditional puts) */
	PUT_REPLAYED /* fsyncs, from the log's own replay (which holds it) */
};

static int put_object(struct store_dir *d, const char *key, const void *data, size_t len, int flags,
		      enum put_mode mode)
{
	struct store *st = &d->base;
	char name[FREE_NAME_MAX];
	char dir[KEY_MAX + 1];
	int r;

	if (!key_valid(key))
		return -EINVAL;
	int wal = mode == PUT_LOGGED && dir_wal_usable(d->wal, len, replay_object, d);
	int lazy = mode == PUT_LAZY;
	if (!wal && mode != PUT_REPLAYED) {
		r = dir_wal_settle(d->wal, key);
		if (r < 0)
			return dir_err(st, "retire the write-ahead log before", key, -r);
	}
	r = write_temp(d, data, len, !wal && !lazy, name);
	if (r < 0)
		return dir_err(st, "write temp for", key, -r);
	/* Parents are made when the rename finds one missing: a mkdir per
	 * level on every put would cost more than the rename. */
	r = publish(d, name, key, flags);
	if (r == -ENOENT) {
		r = make_parents(d->rootfd, key);
		if (r < 0) {
			unlinkat(d->rootfd, name, 0);
			return dir_err(st, "create parents of", key, -r);
		}
		r = publish(d, name, key, flags);
	}
	if (r < 0)
		unlinkat(d->rootfd, name, 0);
	if (r == -EEXIST)
		return r;
	if (r < 0)
		return dir_err(st, "rename into", key, -r);
	if (lazy) {
		r = lazy_note(d, key);
		if (r > 0)
			dir_sync(st); /* enough waiting: a failure is final, and
					 the next store_sync reports it */
		if (r >= 0)
			return 0;
		r = sync_object(d, key); /* not noted: sync it now */
		return r < 0 ? dir_err(st, "fsync", key, -r) : 0;
	}
	if (wal) {
		if (dir_wal_append(d->wal, key, data, len) == 0)
			return 0;
		/* The record may not be durable: the object must be. */
		r = sync_object(d, key);
		return r < 0 ? dir_err(st, "fsync", key, -r) : 0;
	}
	key_dirname(key, dir);
	r = fsync_dir_at(d->rootfd, dir);
	if (r < 0)
		return dir_err(st, "fsync directory of", key, -r);
	return 0;
}

/* Replay of a write-ahead log record: write key again, durably and without
 * the log.  Always, even when the file seems to hold these bytes: they may
 * be only in the page cache, over blocks whose writeback failed. */
static int replay_object(void *arg, const char *key, const void *data, size_t len)
{
	struct store_dir *d = arg;

	if (!key_valid(key))
		return -EINVAL;
	return put_object(d, key, data, len, 0, PUT_REPLAYED);
}

static int dir_put(struct store *st, const char *key, const void *data, size_t len, int flags)
{
	return put_object(to_dir(st), key, data, len, flags & ~STORE_PUT_LAZY,
			  flags & STORE_PUT_LAZY ? PUT_LAZY : PUT_LOGGED);
}

static int open_object(struct store *st, const char *key)
{
	int fd;

	if (!key_valid(key))
		return -EINVAL;
	fd = openat(to_dir(st)->rootfd, key, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return dir_err(st, "open", key, errno);
	return fd;
}

/* Open key for reading, with the inode locked against reuse (see
 * RECYCLE_MAX) and sb its fstat: the descriptor, or -errno. */
static int open_locked(struct store *st, const char *key, struct stat *sb)
{
	struct store_dir *d = to_dir(st);

	for (int tries = 0; tries < 16; tries++) {
		struct stat now;
		int fd = open_object(st, key);
		if (fd < 0)
			return fd;
		int locked = flock(fd, LOCK_SH | LOCK_NB) == 0;
		int err = locked || errno == EWOULDBLOCK ? 0 : errno;
		if (!err && fstat(fd, sb) < 0)
			err = errno;
		if (err) {
			close(fd);
			return dir_err(st, "lock or stat", key, err);
		}
		/* Without the lock (a put is reusing the inode), or when the key
		 * names another inode by now, the key was deleted meanwhile. */
		if (locked && fstatat(d->rootfd, key, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
		    now.st_ino == sb->st_ino && now.st_dev == sb->st_dev)
			return fd;
		close(fd);
	}
	log_error("store %s: %s changed under every one of 16 reads", st->url, key);
	return -EIO;
}

static ssize_t dir_get(struct store *st, const char *key, uint64_t off, size_t len, void *buf)
{
	struct stat sb;
	CLEANUP_CLOSE int fd = open_locked(st, key, &sb);
	ssize_t n;

	if (fd < 0)
		return fd;
	if (off > INT64_MAX)
		return 0;
	n = util_pread_full(fd, buf, len, (off_t)off);
	if (n < 0)
		return dir_err(st, "read", key, (int)-n);
	return n;
}

static int dir_get_all(struct store *st, const char *key, void **data, size_t *len)
{
	struct stat sb;
	CLEANUP_CLOSE int fd = open_locked(st, key, &sb);
	char *buf;
	ssize_t n;

	if (fd < 0)
		return fd;
	if (!S_ISREG(sb.st_mode))
		return -ENOENT;
	/* One spare byte so an empty object still gets a non-NULL buffer. */
	buf = malloc((size_t)sb.st_size + 1);
	if (!buf)
		return -ENOMEM;
	n = util_pread_full(fd, buf, (size_t)sb.st_size, 0);
	if (n < 0) {
		free(buf);
		return dir_err(st, "read", key, (int)-n);
	}
	*data = buf;
	*len = (size_t)n;
	return 0;
}

/* A lazy delete neither retires the key's records in the write-ahead log
 * nor syncs the directory: a crash may bring the object back, from the
 * directory or from the log. */
static int dir_del(struct store *st, const char *key, int flags)
{
	struct store_dir *d = to_dir(st);
	char dir[KEY_MAX + 1];
	int r;

	if (!key_valid(key))
		return -EINVAL;
	if (!(flags & STORE_DEL_LAZY)) {
		r = dir_wal_settle(d->wal, key);
		if (r < 0)
			return dir_err(st, "retire the write-ahead log before deleting", key, -r);
	}
	r = recycle_or_unlink(d, key);
	if (r < 0) {
		r = dir_err(st, "delete", key, -r);
		return r == -ENOENT ? 0 : r;
	}
	if (flags & STORE_DEL_LAZY)
		return 0;
	key_dirname(key, dir);
	r = fsync_dir_at(d->rootfd, dir);
	return r < 0 ? dir_err(st, "fsync directory of", key, -r) : 0;
}

static int dir_stat(struct store *st, const char *key, uint64_t *size)
{
	struct stat sb;

	if (!key_valid(key))
		return -EINVAL;
	if (fstatat(to_dir(st)->rootfd, key, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return dir_err(st, "stat", key, errno);
	if (!S_ISREG(sb.st_mode))
		return -ENOENT;
	*size = (uint64_t)sb.st_size;
	return 0;
}

struct list_ent {
	char *key;
	uint64_t size;
};

struct list_acc {
	struct list_ent *ents;
	size_t n, cap;
	const char *prefix;
	size_t plen;
};

static int list_add(struct list_acc *acc, const char *key, uint64_t size)
{
	if (acc->n == acc->cap) {
		size_t cap = acc->cap ? acc->cap * 2 : 64;
		struct list_ent *e = realloc(acc->ents, cap * sizeof(*e));

		if (!e)
			return -ENOMEM;
		acc->ents = e;
		acc->cap = cap;
	}
	acc->ents[acc->n].key = strdup(key);
	if (!acc->ents[acc->n].key)
		return -ENOMEM;
	acc->ents[acc->n++].size = size;
	return 0;
}

/* Can keys below directory path (ending in '/') match the prefix? */
static int dir_may_match(const struct list_acc *acc, const char *path, size_t len)
{
	return strncmp(path, acc->prefix, MIN(len, acc->plen)) == 0;
}

static int list_walk(struct store *st, struct list_acc *acc, const char *rel);

/* Add entry name of directory dfd (at rel) to the listing, or descend. */
static int list_entry(struct store *st, struct list_acc *acc, int dfd, const char *rel,
		      const char *name)
{
	char path[KEY_MAX + 2];
	struct stat sb;
	int n = snprintf(path, sizeof(path), "%s%s", rel, name);

	/* Stray files that are not valid keys are not objects. */
	if (n >= KEY_MAX || !key_valid(path))
		return 0;
	if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return 0; /* deleted while we listed */
	if (S_ISREG(sb.st_mode)) {
		if (strncmp(path, acc->prefix, acc->plen) != 0)
			return 0;
		return list_add(acc, path, (uint64_t)sb.st_size);
	}
	if (!S_ISDIR(sb.st_mode))
		return 0;
	path[n] = '/';
	path[n + 1] = '\0';
	if (!dir_may_match(acc, path, (size_t)n + 1))
		return 0;
	return list_walk(st, acc, path);
}

/* Collect the objects under directory rel ("" or ending in '/') that match
 * the prefix. */
static int list_walk(struct store *st, struct list_acc *acc, const char *rel)
{
	int dfd = openat(to_dir(st)->rootfd, *rel ? rel : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	DIR *dir;
	int r = 0;

	if (dfd < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 0; /* nothing stored under this prefix */
		return dir_err(st, "list", *rel ? rel : "/", errno);
	}
	dir = fdopendir(dfd);
	if (!dir) {
		close(dfd);
		return -ENOMEM;
	}
	while (r == 0) {
		errno = 0;
		de = readdir(dir);
		if (!de) {
			if (errno)
				r = dir_err(st, "list", *rel ? rel : "/", errno);
			break;
		}
		r = list_entry(st, acc, dfd, rel, de->d_name);
	}
	closedir(dir);
	return r;
}

static int ent_cmp(const void *a, const void *b)
{
	return strcmp(((const struct list_ent *)a)->key, ((const struct list_ent *)b)->key);
}

static int dir_list(struct store *st, const char *prefix, store_list_cb cb, void *arg)
{
	struct list_acc acc = { .prefix = prefix, .plen = strlen(prefix) };
	char start[KEY_MAX + 2];
	const char *slash = strrchr(prefix, '/');
	size_t n = slash ? (size_t)(slash - prefix) + 1 : 0;
	int r;

	if (acc.plen > KEY_MAX)
		return -EINVAL;
	/* Start at the deepest directory the prefix names in full. */
	memcpy(start, prefix, n);
	start[n] = '\0';
	r = list_walk(st, &acc, start);
	if (r == 0 && acc.n > 0)
		qsort(acc.ents, acc.n, sizeof(*acc.ents), ent_cmp);
	for (size_t i = 0; i < acc.n; i++) {
		if (r == 0)
			r = cb(arg, acc.ents[i].key, acc.ents[i].size);
		free(acc.ents[i].key);
	}
	free(acc.ents);
	return r;
}

/* The etag of an object's content: 16 bytes of BLAKE2b, in hex. */
static void content_etag(const void *data, size_t len, char etag[STORE_ETAG_MAX])
{
	unsigned char h[16];

	crypto_generichash(h, sizeof(h), data, len, NULL, 0);
	sodium_bin2hex(etag, STORE_ETAG_MAX, h, sizeof(h));
}

static int dir_get_etag(struct store *st, const char *key, void **data, size_t *len, char etag[])
{
	int r = dir_get_all(st, key, data, len);

	if (r == 0)
		content_etag(*data, *len, etag);
	return r;
}

/* Is key's current etag want?  0 yes, -EEXIST no, -ENOENT absent, -errno. */
static int etag_matches(struct store *st, const char *key, const char *want)
{
	CLEANUP_FREE void *cur = NULL;
	char etag[STORE_ETAG_MAX];
	size_t len;
	int r = dir_get_etag(st, key, &cur, &len, etag);

	if (r < 0)
		return r;
	return strcmp(etag, want) == 0 ? 0 : -EEXIST;
}

static int dir_put_cond(struct store *st, const char *key, const void *data, size_t len,
			const char *if_match, char etag[])
{
	struct store_dir *d = to_dir(st);
	CLEANUP_CLOSE int lockfd = -1;
	int r;

	if (!key_valid(key))
		return -EINVAL;
	lockfd = openat(d->tmpfd, ".cond.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (lockfd < 0 || flock(lockfd, LOCK_EX) < 0)
		return dir_err(st, "lock for", key, errno);
	if (if_match) {
		r = etag_matches(st, key, if_match);
		if (r < 0)
			return r;
	}
	r = put_object(to_dir(st), key, data, len, if_match ? 0 : STORE_PUT_IF_ABSENT, PUT_SYNCED);
	if (r == 0)
		content_etag(data, len, etag);
	return r;
}

static void dir_close(struct store *st)
{
	struct store_dir *d = to_dir(st);

	if (dir_sync(st) < 0)
		log_error("store %s: objects put lately may not be durable", st->url);
	pthread_mutex_destroy(&d->lazy_lock);
	dir_wal_free(d->wal);
	recycler_free(d);
	close(d->tmpfd);
	close(d->rootfd);
	free(st->url);
	free(d);
}

static const struct store_ops dir_ops = {
	.name = "dir",
	.get = dir_get,
	.get_all = dir_get_all,
	.put = dir_put,
	.del = dir_del,
	.list = dir_list,
	.stat = dir_stat,
	.put_cond = dir_put_cond,
	.get_etag = dir_get_etag,
	.sync = dir_sync,
	.close = dir_close,
};

/* Remove the files of dfd left by puts that crashed long ago (TMP_DIR:
 * recent ones may belong to another process putting into the same
 * directory right now), or (FREE_DIR, by_owner) those of pools whose
 * process is gone: a live process's pool file may be old, and is taken
 * without a check. */
static void sweep_dir(int dfd, int by_owner)
{
	time_t cutoff = time(NULL) - TMP_STALE_SECS;
	int fd = dup(dfd);
	struct dirent *de;
	DIR *dir;

	if (fd < 0)
		return;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return;
	}
	while ((de = readdir(dir))) {
		struct stat sb;

		if (de->d_name[0] == '.')
			continue;
		if (by_owner) {
			long pid = strtol(de->d_name, NULL, 10);
			if (pid > 0 && pid <= INT_MAX &&
			    (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
				continue;
		} else if (fstatat(dfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
			   !S_ISREG(sb.st_mode) || sb.st_mtime >= cutoff) {
			continue;
		}
		unlinkat(dfd, de->d_name, 0);
	}
	closedir(dir);
}

/* Create the root (and make its entry durable) when asked to. */
static int create_root(const char *path)
{
	CLEANUP_FREE char *parent = strdup(path);
	char *slash;
	int r;

	if (!parent)
		return -ENOMEM;
	r = util_mkdir_p(path, 0755);
	if (r < 0)
		return r;
	slash = strrchr(parent, '/');
	if (!slash)
		return util_fsync_dir(".");
	if (slash == parent)
		return util_fsync_dir("/");
	*slash = '\0';
	return util_fsync_dir(parent);
}

static int open_dirs(struct store_dir *d, const char *path, int create)
{
	if (create) {
		int r = create_root(path);

		if (r < 0) {
			errno = -r;
			log_error("cannot create store directory %s: %m", path);
			return -1;
		}
	}
	d->rootfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->rootfd < 0) {
		log_error("cannot open store directory %s: %m", path);
		return -1;
	}
	if (mkdirat(d->rootfd, TMP_DIR, 0755) < 0 && errno != EEXIST) {
		log_error("cannot create %s/" TMP_DIR ": %m", path);
		return -1;
	}
	d->tmpfd = openat(d->rootfd, TMP_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->tmpfd < 0) {
		log_error("cannot open %s/" TMP_DIR ": %m", path);
		return -1;
	}
	return 0;
}

struct store *store_dir_open(const char *path, int create)
{
	struct store_dir *d = calloc(1, sizeof(*d));
	int saved;

	if (!d)
		return NULL;
	d->rootfd = d->tmpfd = -1;
	d->base.ops = &dir_ops;
	d->base.caps = STORE_CAP_LAZY;
	pthread_mutex_init(&d->lazy_lock, NULL);
	pthread_mutex_init(&d->rc.lock, NULL);
	d->rc.dirfd = -1;
	d->rc.pool = calloc(RECYCLE_POOL, sizeof(*d->rc.pool));
	d->base.url = strdup(path);
	if (!d->base.url || !d->rc.pool || open_dirs(d, path, create) < 0)
		goto err_free;
	sweep_dir(d->tmpfd, 0);
	if (mkdirat(d->rootfd, FREE_DIR, 0755) == 0 || errno == EEXIST)
		d->rc.dirfd = openat(d->rootfd, FREE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->rc.dirfd < 0)
		log_warn("store %s: cannot use %s/" FREE_DIR " (%m): deleted objects are unlinked",
			 path, path);
	else
		sweep_dir(d->rc.dirfd, 1);
	d->wal = dir_wal_new(d->tmpfd, d->rootfd, path);
	if (!d->wal)
		goto err_free;
	int r = dir_wal_recover(d->wal, replay_object, d);
	if (r < 0) {
		log_error("cannot open store directory %s: its write-ahead log cannot be "
			  "replayed: %s",
			  path, strerror(-r));
		errno = -r;
		goto err_free;
	}
	return &d->base;

err_free:
	saved = errno;
	dir_wal_free(d->wal);
	recycler_free(d);
	if (d->tmpfd >= 0)
		close(d->tmpfd);
	if (d->rootfd >= 0)
		close(d->rootfd);
	free(d->base.url);
	free(d);
	errno = saved;
	return NULL;
}
