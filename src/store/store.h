/* store.h: the object-store interface.  Everything above this layer sees
 * named, immutable objects (except "lease" and "zerofs.key", replaced only
 * through conditional puts) and never a backend's types.
 *
 * Backends: "dir" (a local directory: the embedded default; file:// URLs
 * or plain paths) and, later, "s3".  Wrappers (fault injection, caching)
 * implement the same vtable around another store.
 *
 * Keys are relative paths made of [A-Za-z0-9._-] and '/', never starting
 * with '/' and without ".." components.
 *
 * Return values: 0 or a byte count on success, a negative errno otherwise:
 *   -ENOENT   the object does not exist
 *   -EEXIST   a STORE_PUT_IF_ABSENT put found the object already there
 *   -EIO      the store failed (after the backend's own retries)
 *   -ETIMEDOUT the store did not answer within its bounds
 *   -EACCES   the store refused us (credentials, permissions)
 *   -ENOSPC   the store is full
 *   -EINVAL   the key is not a valid key
 *   -ENOMEM   out of memory
 *
 * Locking: a store is safe for concurrent use by any number of threads. */
#ifndef ZEROFS_STORE_H
#define ZEROFS_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct store;

/* Put flags. */
#define STORE_PUT_IF_ABSENT 0x1 /* fail with -EEXIST if the key exists */

typedef int (*store_list_cb)(void *arg, const char *key, uint64_t size);

struct store_ops {
	const char *name;
	/* Read up to len bytes at off of key into buf.  Returns the number of
	 * bytes read (short only at the end of the object), -ENOENT, -errno. */
	ssize_t (*get)(struct store *st, const char *key, uint64_t off, size_t len, void *buf);
	/* Read a whole object into a malloc'd buffer. 0 or -errno. */
	int (*get_all)(struct store *st, const char *key, void **data, size_t *len);
	/* Create or replace key atomically and durably: when put returns 0 the
	 * whole object is stored and a reader sees either the old or the new
	 * object, never a mix.  flags: STORE_PUT_IF_ABSENT. */
	int (*put)(struct store *st, const char *key, const void *data, size_t len, int flags);
	/* Delete key; deleting a missing key is not an error. */
	int (*del)(struct store *st, const char *key);
	/* Call cb for every key under prefix (a prefix of the key string), in
	 * lexicographic order.  A non-zero return from cb stops the listing and
	 * is returned.  0 or -errno. */
	int (*list)(struct store *st, const char *prefix, store_list_cb cb, void *arg);
	/* Size of an object: 0 with *size set, -ENOENT, -errno. */
	int (*stat)(struct store *st, const char *key, uint64_t *size);
	void (*close)(struct store *st);
};

struct store {
	const struct store_ops *ops;
	char *url; /* as given by the user, for messages */
};

/* Open the store named by url: "file:///abs/path", "/abs/path" or
 * "relative/path" for the directory backend.  When create is set, a missing
 * directory is created.  Returns NULL with errno set (and logs why). */
struct store *store_open(const char *url, int create);

/* The directory backend itself. */
struct store *store_dir_open(const char *path, int create);

static inline ssize_t store_get(struct store *st, const char *key, uint64_t off, size_t len,
				void *buf)
{
	return st->ops->get(st, key, off, len, buf);
}
static inline int store_get_all(struct store *st, const char *key, void **data, size_t *len)
{
	return st->ops->get_all(st, key, data, len);
}
static inline int store_put(struct store *st, const char *key, const void *data, size_t len,
			    int flags)
{
	return st->ops->put(st, key, data, len, flags);
}
static inline int store_del(struct store *st, const char *key)
{
	return st->ops->del(st, key);
}
static inline int store_list(struct store *st, const char *prefix, store_list_cb cb, void *arg)
{
	return st->ops->list(st, prefix, cb, arg);
}
static inline int store_stat(struct store *st, const char *key, uint64_t *size)
{
	return st->ops->stat(st, key, size);
}
static inline void store_close(struct store *st)
{
	if (st)
		st->ops->close(st);
}

#endif
