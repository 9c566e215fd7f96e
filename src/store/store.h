/* store.h: the object-store interface.  Everything above this layer sees
 * named, immutable objects (except "lease" and "zerofs.key", replaced only
 * through conditional puts) and never a backend's types.
 *
 * Backends: "dir" (a local directory: the embedded default; file:// URLs
 * or plain paths) and "s3" (s3://bucket/prefix, store_s3.c).  Wrappers
 * (fault injection: store_fault.c; the lease guard: journal/lease.c)
 * implement the same vtable around another store.
 *
 * Keys are relative paths made of [A-Za-z0-9._-] and '/', never starting
 * with '/' and without ".." components.
 *
 * Return values: 0 or a byte count on success, a negative errno otherwise:
 *   -ENOENT   the object does not exist
 *   -EEXIST   a STORE_PUT_IF_ABSENT put found the object already there, or a
 *             conditional put's precondition failed (HTTP 412)
 *   -ENOTSUP  the store cannot do this (a backend without conditional puts)
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

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct store;

/* Put flags. */
#define STORE_PUT_IF_ABSENT 0x1 /* fail with -EEXIST if the key exists */
/* The caller keeps the object's bytes durable elsewhere until it calls
 * store_sync (an index log carries the segment: journal.c): the put may
 * return before the object is durable, and a crash before store_sync may
 * leave it missing or torn.  Readers see it complete at once.  Backends
 * whose puts are always durable ignore it. */
#define STORE_PUT_LAZY 0x2

/* Delete flags. */
/* The caller does not mind the object coming back whole after a crash (an
 * index log a checkpoint replaced): the delete need not be durable. */
#define STORE_DEL_LAZY 0x1

/* Store capabilities (struct store's caps). */
#define STORE_CAP_LAZY 0x1 /* STORE_PUT_LAZY puts can be torn by a crash */

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
	 * object, never a mix.  flags: STORE_PUT_IF_ABSENT, STORE_PUT_LAZY
	 * (durable only after the next sync). */
	int (*put)(struct store *st, const char *key, const void *data, size_t len, int flags);
	/* Delete key; deleting a missing key is not an error.  flags:
	 * STORE_DEL_LAZY. */
	int (*del)(struct store *st, const char *key, int flags);
	/* Call cb for every key under prefix (a prefix of the key string), in
	 * lexicographic order.  A non-zero return from cb stops the listing and
	 * is returned.  0 or -errno. */
	int (*list)(struct store *st, const char *prefix, store_list_cb cb, void *arg);
	/* Size of an object: 0 with *size set, -ENOENT, -errno. */
	int (*stat)(struct store *st, const char *key, uint64_t *size);
	/* Conditional put, for the few objects that are replaced (the lease):
	 * with if_match NULL, create key only if it is absent (If-None-Match: *);
	 * otherwise replace it only if its current etag is if_match (If-Match).
	 * On success the new object's etag is copied to etag.  -EEXIST when the
	 * precondition failed, -ENOENT when if_match is set and key is absent.
	 * NULL in backends without it (the helper returns -ENOTSUP). */
	int (*put_cond)(struct store *st, const char *key, const void *data, size_t len,
			const char *if_match, char etag[]);
	/* get_all that also returns the object's etag (STORE_ETAG_MAX bytes). */
	int (*get_etag)(struct store *st, const char *key, void **data, size_t *len, char etag[]);
	/* Make every STORE_PUT_LAZY put that returned so far durable.  0 or
	 * -errno.  NULL in backends whose puts are always durable. */
	int (*sync)(struct store *st);
	void (*close)(struct store *st);
};

/* Room for an etag: opaque text without quotes, NUL-terminated. */
#define STORE_ETAG_MAX 80

/* Request counters, kept by the wrappers below (retries by the backends
 * that retry).  Updated atomically; read them with store_get_counters. */
struct store_counters {
	uint64_t gets, puts, dels, lists, stats;
	uint64_t errors;  /* requests that returned an error (not -ENOENT) */
	uint64_t retries; /* attempts repeated by the backend */
	uint64_t bytes_in, bytes_out;
};

struct store {
	const struct store_ops *ops;
	char *url; /* as given by the user, for messages */
	unsigned caps; /* STORE_CAP_*; wrappers copy their inner store's */
	struct store_counters n;
};

#define STORE_COUNT(st, field, v) __atomic_add_fetch(&(st)->n.field, (v), __ATOMIC_RELAXED)

static inline void store_count_result(struct store *st, long long rc)
{
	if (rc < 0 && rc != -ENOENT && rc != -EEXIST)
		STORE_COUNT(st, errors, 1);
}

static inline void store_get_counters(struct store *st, struct store_counters *out)
{
	out->gets = __atomic_load_n(&st->n.gets, __ATOMIC_RELAXED);
	out->puts = __atomic_load_n(&st->n.puts, __ATOMIC_RELAXED);
	out->dels = __atomic_load_n(&st->n.dels, __ATOMIC_RELAXED);
	out->lists = __atomic_load_n(&st->n.lists, __ATOMIC_RELAXED);
	out->stats = __atomic_load_n(&st->n.stats, __ATOMIC_RELAXED);
	out->errors = __atomic_load_n(&st->n.errors, __ATOMIC_RELAXED);
	out->retries = __atomic_load_n(&st->n.retries, __ATOMIC_RELAXED);
	out->bytes_in = __atomic_load_n(&st->n.bytes_in, __ATOMIC_RELAXED);
	out->bytes_out = __atomic_load_n(&st->n.bytes_out, __ATOMIC_RELAXED);
}

/* Longest key a store accepts. */
#define STORE_KEY_MAX 1024

/* 1 when key is a valid key (see above: relative, [A-Za-z0-9._-]
 * components, none empty, "." or "..", at most STORE_KEY_MAX bytes), else 0.
 * Every backend applies this one rule, so a store can move between them. */
int store_key_valid(const char *key);

/* Open the store named by url: "file:///abs/path", "/abs/path" or
 * "relative/path" for the directory backend.  When create is set, a missing
 * directory is created.  Returns NULL with errno set (and logs why). */
struct store *store_open(const char *url, int create);

/* Open the store named by cfg->store with the backend settings of cfg (the
 * s3_* options and store_timeout_ms); the only way to open an s3:// store,
 * whose bucket must exist and answer (checked here).  NULL with errno set
 * (and logged). */
struct cfg;
struct store *store_open_cfg(const struct cfg *cfg, int create);

/* The directory backend itself. */
struct store *store_dir_open(const char *path, int create);

/* The S3 backend itself: url is "s3://bucket[/prefix]". */
struct store *store_s3_open(const char *url, const struct cfg *cfg);

/* The fault-injecting wrapper (store_fault.c): every request to inner first
 * consults the control file ctl (syntax in the store_faults option's help).
 * Takes ownership of inner (closed with the wrapper, or on failure).  NULL
 * with errno set. */
struct store *store_fault_open(struct store *inner, const char *ctl);

static inline ssize_t store_get(struct store *st, const char *key, uint64_t off, size_t len,
				void *buf)
{
	ssize_t n = st->ops->get(st, key, off, len, buf);
	STORE_COUNT(st, gets, 1);
	if (n > 0)
		STORE_COUNT(st, bytes_in, (uint64_t)n);
	store_count_result(st, n);
	return n;
}
static inline int store_get_all(struct store *st, const char *key, void **data, size_t *len)
{
	int rc = st->ops->get_all(st, key, data, len);
	STORE_COUNT(st, gets, 1);
	if (rc == 0)
		STORE_COUNT(st, bytes_in, *len);
	store_count_result(st, rc);
	return rc;
}
static inline int store_put(struct store *st, const char *key, const void *data, size_t len,
			    int flags)
{
	int rc = st->ops->put(st, key, data, len, flags);
	STORE_COUNT(st, puts, 1);
	if (rc == 0)
		STORE_COUNT(st, bytes_out, len);
	store_count_result(st, rc);
	return rc;
}
static inline int store_del_flags(struct store *st, const char *key, int flags)
{
	int rc = st->ops->del(st, key, flags);
	STORE_COUNT(st, dels, 1);
	store_count_result(st, rc);
	return rc;
}
static inline int store_del(struct store *st, const char *key)
{
	return store_del_flags(st, key, 0);
}
static inline int store_list(struct store *st, const char *prefix, store_list_cb cb, void *arg)
{
	int rc = st->ops->list(st, prefix, cb, arg);
	STORE_COUNT(st, lists, 1);
	store_count_result(st, rc);
	return rc;
}
static inline int store_stat(struct store *st, const char *key, uint64_t *size)
{
	int rc = st->ops->stat(st, key, size);
	STORE_COUNT(st, stats, 1);
	store_count_result(st, rc);
	return rc;
}
static inline int store_put_cond(struct store *st, const char *key, const void *data,
				 size_t len, const char *if_match, char etag[STORE_ETAG_MAX])
{
	int rc = st->ops->put_cond ? st->ops->put_cond(st, key, data, len, if_match, etag) :
				     -ENOTSUP;
	STORE_COUNT(st, puts, 1);
	if (rc == 0)
		STORE_COUNT(st, bytes_out, len);
	store_count_result(st, rc);
	return rc;
}
static inline int store_get_etag(struct store *st, const char *key, void **data, size_t *len,
				 char etag[STORE_ETAG_MAX])
{
	int rc = st->ops->get_etag ? st->ops->get_etag(st, key, data, len, etag) : -ENOTSUP;
	STORE_COUNT(st, gets, 1);
	if (rc == 0)
		STORE_COUNT(st, bytes_in, *len);
	store_count_result(st, rc);
	return rc;
}
static inline int store_sync(struct store *st)
{
	int rc = st->ops->sync ? st->ops->sync(st) : 0;
	store_count_result(st, rc);
	return rc;
}
static inline void store_close(struct store *st)
{
	if (st)
		st->ops->close(st);
}

#endif
