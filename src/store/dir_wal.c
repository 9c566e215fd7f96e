/* dir_wal.c: the write-ahead log of the directory store (dir_wal.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* renameat2 */
#endif
#include "store/dir_wal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "common/util.h"
#include "log.h"

#define HDR_SLOT 2048u
#define HDR_MAGIC "ZWALHDR1"
#define HDR_LEN 48 /* magic, generation, retired, tail, hash */
#define REC_MAGIC "ZWR1"
#define REC_HEAD 20 /* magic, key length, 0, data length, sequence number */
#define HASH_LEN 16
#define CAP (DIR_WAL_SIZE - DIR_WAL_HDR) /* bytes for records */
#define RETIRE_AT (CAP / 4)
#define RETIRE_NS (2 * 1000000000ULL)
#define RETRY_NS (5 * 1000000000ULL) /* retake a log another process held */
#define SYNC_THREADS 8 /* fsyncs at once in dir_sync_objects */

struct pend {
	uint64_t seq, keyhash, at;
	char *key;
};

struct dir_wal {
	int tmpfd, syncfd;
	char *url;

	pthread_mutex_t m;   /* everything below */
	pthread_cond_t cond; /* a sync or a retirement ended, or the state changed */
	pthread_cond_t work; /* the retirer is wanted */
	int state;           /* 0 not tried, 1 ours, -1 not ours (see retry_at) */
	uint64_t retry_at;
	int fd;
	int slot;                 /* header slot written last */
	uint64_t gen;             /* its generation */
	uint64_t seq;             /* last record written */
	uint64_t synced;          /* last record known durable */
	uint64_t retired;         /* last record retired */
	uint64_t head, tail;      /* logical offsets: next record; oldest record not retired */
	int syncing;
	int sync_failed;          /* an fdatasync of the log failed: no more appends */
	int retire_failed;        /* a retirement failed: no more appends or retiring */
	uint64_t want;            /* retire at least up to this record */
	int want_space;
	struct pend *pend;        /* records not retired, oldest first */
	size_t npend, cappend;
	int stop;
	pthread_t retirer;
	int retirer_running;
};

static uint64_t key_hash(const char *key)
{
	uint8_t h[8];
	crypto_generichash(h, sizeof(h), (const uint8_t *)key, strlen(key), NULL, 0);
	return get_le64(h);
}

/* Offset in the file of logical offset l. */
static uint64_t phys(uint64_t l)
{
	return DIR_WAL_HDR + l % CAP;
}

static size_t rec_len(size_t klen, size_t dlen)
{
	return (REC_HEAD + klen + dlen + HASH_LEN + 7) & ~(size_t)7;
}

/* ---- headers ---- */

static void hdr_build(uint8_t h[HDR_LEN], uint64_t gen, uint64_t retired, uint64_t tail)
{
	memcpy(h, HDR_MAGIC, 8);
	put_le64(h + 8, gen);
	put_le64(h + 16, retired);
	put_le64(h + 24, tail);
	crypto_generichash(h + 32, HASH_LEN, h, 32, NULL, 0);
}

/* Read the valid header slot of the later generation into w.  0, or
 * -EUCLEAN when neither slot is valid. */
static int hdr_read(struct dir_wal *w, int fd, uint64_t *retired, uint64_t *tail)
{
	int found = 0;
	for (int s = 0; s < 2; s++) {
		uint8_t h[HDR_LEN], sum[HASH_LEN];
		if (util_pread_full(fd, h, sizeof(h), (off_t)s * HDR_SLOT) != (ssize_t)sizeof(h))
			continue;
		crypto_generichash(sum, sizeof(sum), h, 32, NULL, 0);
		if (memcmp(h, HDR_MAGIC, 8) != 0 || sodium_memcmp(sum, h + 32, HASH_LEN) != 0)
			continue;
		uint64_t t = get_le64(h + 24);
		if (t < DIR_WAL_HDR || t >= DIR_WAL_SIZE || (t & 7))
			continue;
		if (!found || get_le64(h + 8) > w->gen) {
			w->gen = get_le64(h + 8);
			w->slot = s;
			*retired = get_le64(h + 16);
			*tail = t;
		}
		found = 1;
	}
	return found ? 0 : -EUCLEAN;
}

/* Write a header of the next generation to the slot not written last,
 * durably.  Called by one thread at a time; w->gen and w->slot change only
 * on success. */
static int hdr_write(struct dir_wal *w, int fd, uint64_t retired, uint64_t tail)
{
	uint8_t h[HDR_LEN];
	int s = !w->slot;
	hdr_build(h, w->gen + 1, retired, tail);
	if (pwrite(fd, h, sizeof(h), (off_t)s * HDR_SLOT) != (ssize_t)sizeof(h))
		return errno ? -errno : -EIO;
	if (fdatasync(fd) < 0)
		return -errno;
	w->gen++;
	w->slot = s;
	return 0;
}

/* Wait on cond for at most ns. */
static void timed_wait(pthread_cond_t *cond, pthread_mutex_t *m, uint64_t ns)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ns += (uint64_t)ts.tv_nsec;
	ts.tv_sec += (time_t)(ns / 1000000000ULL);
	ts.tv_nsec = (long)(ns % 1000000000ULL);
	pthread_cond_timedwait(cond, m, &ts);
}

/* ---- replay ---- */

/* Read the record at off into *buf if it is valid and numbered seq: its
 * length, or 0. */
static size_t rec_read(int fd, uint64_t off, uint64_t seq, uint8_t **buf, size_t *cap)
{
	uint8_t head[REC_HEAD], sum[HASH_LEN];
	if (off + REC_HEAD > DIR_WAL_SIZE ||
	    util_pread_full(fd, head, sizeof(head), (off_t)off) != (ssize_t)sizeof(head))
		return 0;
	size_t klen = head[4] | (size_t)head[5] << 8, dlen = get_le32(head + 8);
	if (memcmp(head, REC_MAGIC, 4) != 0 || get_le64(head + 12) != seq || klen == 0 ||
	    klen > 1024 || dlen > DIR_WAL_PUT_MAX)
		return 0;
	size_t len = rec_len(klen, dlen);
	if (off + len > DIR_WAL_SIZE)
		return 0;
	if (len > *cap) {
		uint8_t *nb = realloc(*buf, len);
		if (!nb)
			return 0;
		*buf = nb;
		*cap = len;
	}
	if (util_pread_full(fd, *buf, len, (off_t)off) != (ssize_t)len)
		return 0;
	size_t body = REC_HEAD + klen + dlen;
	crypto_generichash(sum, sizeof(sum), *buf, body, NULL, 0);
	if (sodium_memcmp(sum, *buf + body, HASH_LEN) != 0)
		return 0;
	return len;
}

/* Apply the records after the header's, then retire them all: the header
 * then says "nothing to replay" from the start of the record area. */
static int replay(struct dir_wal *w, int fd, dir_wal_apply_fn apply, void *arg)
{
	uint64_t retired = 0, off = DIR_WAL_HDR;
	int rc = hdr_read(w, fd, &retired, &off);
	if (rc < 0) {
		log_error("store %s: the write-ahead log %s has no valid header; objects it "
			  "recorded may be missing",
			  w->url, DIR_WAL_NAME);
		return rc;
	}
	CLEANUP_FREE uint8_t *buf = NULL;
	size_t cap = 0;
	uint64_t seq = retired, hdr_tail = off;
	for (;;) {
		size_t len = rec_read(fd, off, seq + 1, &buf, &cap);
		if (!len && off != DIR_WAL_HDR) {
			off = DIR_WAL_HDR; /* the writer went back to the start */
			len = rec_read(fd, off, seq + 1, &buf, &cap);
		}
		if (!len)
			break;
		size_t klen = buf[4] | (size_t)buf[5] << 8, dlen = get_le32(buf + 8);
		char key[1025];
		memcpy(key, buf + REC_HEAD, klen);
		key[klen] = '\0';
		rc = apply(arg, key, buf + REC_HEAD + klen, dlen);
		if (rc < 0) {
			log_error("store %s: cannot replay %s from the write-ahead log: %s", w->url,
				  key, strerror(-rc));
			return rc;
		}
		seq++;
		off += len;
	}
	w->seq = w->synced = w->retired = seq;
	if (seq == retired) {
		/* Nothing to replay: the header stays as it is (an open that
		 * fails later, a wrong password say, writes nothing), and the
		 * next record goes where it points. */
		w->head = w->tail = hdr_tail - DIR_WAL_HDR;
		return 0;
	}
	/* apply wrote each object durably: the records can go. */
	log_info("store %s: replayed %" PRIu64 " records of the write-ahead log", w->url,
		 seq - retired);
	rc = hdr_write(w, fd, seq, DIR_WAL_HDR);
	if (rc < 0)
		return rc;
	w->head = w->tail = 0;
	return 0;
}

/* Lock the log (LOCK_NB): 0, -EWOULDBLOCK when another process holds it. */
static int lock_log(int fd)
{
	return flock(fd, LOCK_EX | LOCK_NB) < 0 ? -errno : 0;
}

int dir_wal_recover(struct dir_wal *w, dir_wal_apply_fn apply, void *arg)
{
	CLEANUP_CLOSE int fd = openat(w->tmpfd, DIR_WAL_NAME, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		if (errno == EACCES || errno == EROFS) {
			log_warn("store %s: cannot open its write-ahead log for writing (%m): "
				    "not replayed",
				    w->url);
			return 0;
		}
		return -errno;
	}
	int rc = lock_log(fd);
	if (rc == -EWOULDBLOCK)
		return 0; /* its owner is alive */
	if (rc < 0)
		return rc;
	LOCK_GUARD(&w->m);
	return replay(w, fd, apply, arg);
}

/* ---- the owner's side ---- */

/* Make the log file: zeros throughout (so that records overwrite allocated
 * blocks), an empty header, durable, then in place. */
static int create_log(struct dir_wal *w)
{
	char name[64];
	snprintf(name, sizeof(name), DIR_WAL_NAME ".new.%ld", (long)getpid());
	CLEANUP_CLOSE int fd = openat(w->tmpfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
				      0600);
	if (fd < 0)
		return -errno;
	CLEANUP_FREE uint8_t *zeros = calloc(1, 1 << 20);
	if (!zeros)
		return -ENOMEM;
	int rc = 0;
	for (uint32_t off = 0; rc == 0 && off < DIR_WAL_SIZE; off += 1 << 20)
		if (pwrite(fd, zeros, 1 << 20, off) != 1 << 20)
			rc = errno ? -errno : -EIO;
	uint8_t h[HDR_LEN];
	hdr_build(h, 1, 0, DIR_WAL_HDR);
	if (rc == 0 && pwrite(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h))
		rc = errno ? -errno : -EIO;
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (rc == 0 && renameat2(w->tmpfd, name, w->tmpfd, DIR_WAL_NAME, RENAME_NOREPLACE) < 0 &&
	    errno != EEXIST)
		rc = -errno;
	unlinkat(w->tmpfd, name, 0); /* left when another process made it first */
	if (rc == 0 && fsync(w->tmpfd) < 0)
		rc = -errno;
	return rc;
}

static void *retirer_main(void *arg);

/* Take the log: create it if needed, lock it, replay what a dead owner
 * left, start the retirer.  Called with w->m held. */
static void take_log(struct dir_wal *w, dir_wal_apply_fn apply, void *arg)
{
	uint64_t now = util_now_ns();
	int fd = openat(w->tmpfd, DIR_WAL_NAME, O_RDWR | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		int rc = create_log(w);
		if (rc < 0)
			log_warn("store %s: cannot make its write-ahead log: %s; puts sync "
				    "their own files",
				    w->url, strerror(-rc));
		else
			fd = openat(w->tmpfd, DIR_WAL_NAME, O_RDWR | O_CLOEXEC);
	}
	if (fd >= 0 && lock_log(fd) == 0 && replay(w, fd, apply, arg) == 0 &&
	    pthread_create(&w->retirer, NULL, retirer_main, w) == 0) {
		w->fd = fd;
		w->retirer_running = 1;
		w->state = 1;
		return;
	}
	if (fd >= 0)
		close(fd);
	w->state = -1;
	w->retry_at = now + RETRY_NS;
}

int dir_wal_usable(struct dir_wal *w, size_t len, dir_wal_apply_fn apply, void *arg)
{
	if (len > DIR_WAL_PUT_MAX)
		return 0;
	LOCK_GUARD(&w->m);
	if (w->stop || w->sync_failed)
		return 0;
	if (w->state == 0 || (w->state < 0 && util_now_ns() >= w->retry_at))
		take_log(w, apply, arg);
	return w->state == 1;
}

static int pend_push(struct dir_wal *w, uint64_t seq, const char *key, uint64_t now)
{
	if (w->npend == w->cappend) {
		size_t cap = w->cappend ? w->cappend * 2 : 256;
		struct pend *np = realloc(w->pend, cap * sizeof(*np));
		if (!np)
			return -ENOMEM;
		w->pend = np;
		w->cappend = cap;
	}
	char *k = strdup(key);
	if (!k)
		return -ENOMEM;
	w->pend[w->npend++] =
		(struct pend){ .seq = seq, .keyhash = key_hash(key), .at = now, .key = k };
	return 0;
}

int dir_wal_append(struct dir_wal *w, const char *key, const void *data, size_t len)
{
	size_t klen = strlen(key);
	size_t rlen = rec_len(klen, len);
	if (klen == 0 || klen > 1024 || len > DIR_WAL_PUT_MAX)
		return -EINVAL;
	LOCK_GUARD(&w->m);
	for (;;) {
		if (w->state != 1 || w->sync_failed || w->stop)
			return -EIO;
		/* A record that would cross the end starts the next lap. */
		uint64_t at = w->head;
		if (phys(at) + rlen > DIR_WAL_SIZE)
			at += CAP - at % CAP;
		if (at + rlen - w->tail <= CAP) {
			w->head = at;
			break;
		}
		w->want_space = 1;
		pthread_cond_signal(&w->work);
		pthread_cond_wait(&w->cond, &w->m);
	}
	uint64_t now = util_now_ns(), seq = w->seq + 1;
	uint8_t head[REC_HEAD], sum[HASH_LEN], pad[8] = {0};
	memcpy(head, REC_MAGIC, 4);
	put_le16(head + 4, (uint16_t)klen);
	put_le16(head + 6, 0);
	put_le32(head + 8, (uint32_t)len);
	put_le64(head + 12, seq);
	crypto_generichash_state hs;
	crypto_generichash_init(&hs, NULL, 0, HASH_LEN);
	crypto_generichash_update(&hs, head, sizeof(head));
	crypto_generichash_update(&hs, (const uint8_t *)key, klen);
	crypto_generichash_update(&hs, data, len);
	crypto_generichash_final(&hs, sum, sizeof(sum));
	struct iovec iov[5] = {
		{ head, sizeof(head) },
		{ (void *)key, klen },
		{ (void *)data, len },
		{ sum, sizeof(sum) },
		{ pad, rlen - (REC_HEAD + klen + len + HASH_LEN) },
	};
	size_t want = rlen;
	ssize_t n = pwritev(w->fd, iov, 5, (off_t)phys(w->head));
	if (n != (ssize_t)want || pend_push(w, seq, key, now) < 0) {
		log_error("store %s: cannot write to its write-ahead log: %s", w->url,
			  n < 0 ? strerror(errno) : "short write or no memory");
		w->sync_failed = 1; /* the file may hold half a record: no more */
		pthread_cond_broadcast(&w->cond);
		return -EIO;
	}
	w->seq = seq;
	w->head += rlen;
	/* Group commit: one thread syncs everything written so far, the others
	 * wait for it. */
	while (w->synced < seq) {
		if (w->sync_failed)
			return -EIO;
		if (w->syncing) {
			pthread_cond_wait(&w->cond, &w->m);
			continue;
		}
		uint64_t upto = w->seq;
		w->syncing = 1;
		pthread_mutex_unlock(&w->m);
		int rc = fdatasync(w->fd) < 0 ? -errno : 0;
		pthread_mutex_lock(&w->m);
		w->syncing = 0;
		if (rc < 0) {
			log_error("store %s: cannot sync its write-ahead log: %s", w->url,
				  strerror(-rc));
			w->sync_failed = 1;
		} else if (upto > w->synced) {
			w->synced = upto;
		}
		pthread_cond_broadcast(&w->cond);
	}
	return 0;
}

int dir_wal_settle(struct dir_wal *w, const char *key)
{
	uint64_t h = key_hash(key), need = 0;
	LOCK_GUARD(&w->m);
	for (size_t i = 0; i < w->npend; i++)
		if (w->pend[i].keyhash == h)
			need = w->pend[i].seq;
	if (!need || w->retired >= need)
		return 0;
	if (need > w->want)
		w->want = need;
	pthread_cond_signal(&w->work);
	while (w->retired < need && w->retirer_running && !w->retire_failed)
		pthread_cond_wait(&w->cond, &w->m);
	return w->retired >= need ? 0 : -EIO;
}

/* ---- retiring ---- */

static int retire_due(struct dir_wal *w, uint64_t now)
{
	if (w->retired >= w->seq || w->retire_failed)
		return 0;
	return w->want > w->retired || w->want_space || w->head - w->tail >= RETIRE_AT ||
	       (w->npend && now - w->pend[0].at >= RETIRE_NS) || w->stop;
}

/* The objects of a dir_sync_objects call, fsynced by several threads. */
struct sync_job {
	int rootfd;
	char **keys;
	size_t n;
	atomic_size_t next;
	atomic_int rc;
};

static void *sync_worker(void *arg)
{
	struct sync_job *job = arg;

	for (;;) {
		size_t i = atomic_fetch_add(&job->next, 1);
		if (i >= job->n || atomic_load(&job->rc))
			return NULL;
		int fd = openat(job->rootfd, job->keys[i], O_RDONLY | O_CLOEXEC);
		int rc = 0;
		if (fd < 0 && errno != ENOENT)
			rc = -errno;
		if (fd >= 0 && fsync(fd) < 0)
			rc = -errno;
		if (fd >= 0)
			close(fd);
		if (rc) {
			int zero = 0;
			atomic_compare_exchange_strong(&job->rc, &zero, rc);
		}
	}
}

int dir_sync_objects(int rootfd, char **keys, size_t n)
{
	char last_dir[1025] = "";
	struct sync_job job = { .rootfd = rootfd, .keys = keys, .n = n };
	pthread_t tid[SYNC_THREADS - 1];
	size_t started = 0;

	/* Each fsync ends with a flush of the disk's cache.  Flushes that
	 * wait together are merged by the block layer into one, so the
	 * objects are synced by up to SYNC_THREADS threads at once: a
	 * checkpoint's few hundred small segments cost a few flushes, not
	 * one each.  Too few threads is no error: fewer flushes merge. */
	while (started < SYNC_THREADS - 1 && started + 1 < n &&
	       pthread_create(&tid[started], NULL, sync_worker, &job) == 0)
		started++;
	sync_worker(&job);
	for (size_t i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	int rc = atomic_load(&job.rc);
	/* The directories: keys of one kind share theirs, so consecutive
	 * duplicates are the common case. */
	for (size_t i = 0; i < n && rc == 0; i++) {
		char dir[1025];
		const char *slash = strrchr(keys[i], '/');
		size_t len = slash ? (size_t)(slash - keys[i]) : 0;
		if (len >= sizeof(dir))
			continue;
		memcpy(dir, keys[i], len);
		dir[len] = '\0';
		if (strcmp(dir, last_dir) == 0)
			continue;
		int fd = openat(rootfd, len ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || fsync(fd) < 0)
			rc = -errno;
		if (fd >= 0)
			close(fd);
		memcpy(last_dir, dir, len + 1);
	}
	return rc;
}

/* Retire every record written so far.  Called and returns with w->m held.
 * -ENOMEM when it could not try (it can be tried again), else 0. */
static int retire(struct dir_wal *w)
{
	uint64_t upto = w->seq, head = w->head;
	if (upto <= w->retired)
		return 0;
	/* Every record up to upto is written, and its object was renamed
	 * before: syncing those objects makes the records useless, whether
	 * their own fdatasync has run yet or not. */
	size_t n = 0;
	while (n < w->npend && w->pend[n].seq <= upto)
		n++;
	char **keys = malloc((n ? n : 1) * sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		keys[i] = w->pend[i].key;
	/* Only this thread writes the header, and frees the keys of the
	 * records it retires, while the log is ours. */
	pthread_mutex_unlock(&w->m);
	int rc = dir_sync_objects(w->syncfd, keys, n);
	if (rc == 0)
		rc = hdr_write(w, w->fd, upto, phys(head));
	pthread_mutex_lock(&w->m);
	free(keys);
	if (rc < 0) {
		/* An fsync that failed once may succeed when tried again with
		 * the data lost (the kernel reports a writeback error once).
		 * So no retry: the records stay for the next open, which writes
		 * every object again, and the puts sync their own files. */
		log_error("store %s: cannot retire its write-ahead log: %s; its records stay "
			  "until the store is opened again",
			  w->url, strerror(-rc));
		w->retire_failed = 1;
		w->sync_failed = 1;
	} else {
		w->retired = upto;
		w->tail = head;
		w->want_space = 0;
		for (size_t i = 0; i < n; i++)
			free(w->pend[i].key);
		memmove(w->pend, w->pend + n, (w->npend - n) * sizeof(*w->pend));
		w->npend -= n;
	}
	pthread_cond_broadcast(&w->cond);
	return 0;
}

static void *retirer_main(void *arg)
{
	struct dir_wal *w = arg;
	LOCK_GUARD(&w->m);
	for (;;) {
		uint64_t now = util_now_ns();
		if (retire_due(w, now)) {
			if (retire(w) < 0) /* no memory: wait before trying again */
				timed_wait(&w->work, &w->m, 1000000000ULL);
			continue;
		}
		if (w->stop)
			return NULL;
		timed_wait(&w->work, &w->m, 200000000ULL);
	}
}

struct dir_wal *dir_wal_new(int tmpfd, int syncfd, const char *url)
{
	struct dir_wal *w = calloc(1, sizeof(*w));
	if (!w || !(w->url = strdup(url))) {
		free(w);
		errno = ENOMEM;
		return NULL;
	}
	w->tmpfd = tmpfd;
	w->syncfd = syncfd;
	w->fd = -1;
	pthread_mutex_init(&w->m, NULL);
	pthread_cond_init(&w->cond, NULL);
	pthread_cond_init(&w->work, NULL);
	return w;
}

void dir_wal_free(struct dir_wal *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->m);
	w->stop = 1;
	pthread_cond_broadcast(&w->work);
	pthread_mutex_unlock(&w->m);
	if (w->retirer_running)
		pthread_join(w->retirer, NULL);
	if (w->fd >= 0)
		close(w->fd);
	pthread_cond_destroy(&w->work);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->m);
	for (size_t i = 0; i < w->npend; i++)
		free(w->pend[i].key);
	free(w->pend);
	free(w->url);
	free(w);
}
