/* util.h: small helpers shared by every module: scope cleanup, little-endian
 * encoding, full reads and writes, time.
 *
 * Locking: none; every function here is thread-safe and keeps no state. */
#ifndef ZEROFS_UTIL_H
#define ZEROFS_UTIL_H

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define UNUSED __attribute__((unused))

static inline void cleanup_free(void *p) { free(*(void **)p); }
static inline void cleanup_close(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}
static inline void cleanup_unlock(pthread_mutex_t **m)
{
	if (*m)
		pthread_mutex_unlock(*m);
}

/* Frees the pointer when it goes out of scope. */
#define CLEANUP_FREE __attribute__((cleanup(cleanup_free)))
/* Closes the descriptor (if >= 0) when it goes out of scope. */
#define CLEANUP_CLOSE __attribute__((cleanup(cleanup_close)))
#define UTIL_CAT2(a, b) a##b
#define UTIL_CAT(a, b) UTIL_CAT2(a, b)
/* Locks m until the end of the enclosing scope. */
#define LOCK_GUARD(m)                                                              \
	pthread_mutex_t *UTIL_CAT(lock_guard_, __LINE__)                              \
		__attribute__((cleanup(cleanup_unlock))) = (pthread_mutex_lock(m), (m))

static inline void put_le16(void *p, uint16_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
}
static inline void put_le32(void *p, uint32_t v)
{
	uint8_t *b = p;
	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}
static inline void put_le64(void *p, uint64_t v)
{
	uint8_t *b = p;
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t get_le16(const void *p)
{
	const uint8_t *b = p;
	return (uint16_t)(b[0] | (b[1] << 8));
}
static inline uint32_t get_le32(const void *p)
{
	const uint8_t *b = p;
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | b[i];
	return v;
}
static inline uint64_t get_le64(const void *p)
{
	const uint8_t *b = p;
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | b[i];
	return v;
}

/* Monotonic clock in nanoseconds. */
uint64_t util_now_ns(void);
/* Wall clock in nanoseconds since the epoch. */
uint64_t util_wall_ns(void);

/* Write all of buf (retrying on EINTR and short writes). 0 or -errno. */
int util_write_full(int fd, const void *buf, size_t len);
/* pwrite all of buf at off. 0 or -errno. */
int util_pwrite_full(int fd, const void *buf, size_t len, off_t off);
/* pread up to len bytes at off; returns bytes read (short only at EOF) or -errno. */
ssize_t util_pread_full(int fd, void *buf, size_t len, off_t off);
/* Read a whole file into a malloc'd buffer (NUL-terminated for convenience;
 * *len excludes the NUL). 0 or -errno. */
int util_read_file(const char *path, void **data, size_t *len);
/* mkdir -p with mode; 0 or -errno. */
int util_mkdir_p(const char *path, mode_t mode);
/* fsync a directory by path; 0 or -errno. */
int util_fsync_dir(const char *path);

#endif
