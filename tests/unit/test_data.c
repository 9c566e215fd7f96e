/* Unit tests of the data layer (block arithmetic, and writes, reads, zeroing
 * and barriers against an in-memory model on a real directory store) and of
 * the journal (a barrier, then recovery of the index from the store alone). */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "codec/codec.h"
#include "common/util.h"
#include "data/bcache.h"
#include "data/data.h"
#include "index/idx.h"
#include "journal/journal.h"
#include "log.h"
#include "store/store.h"

#define FILE_MAX (4u << 20)

static char tmpdir[256];
static struct store *st;
static struct idx *ix;
static struct seal_key key;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void setup(void)
{
	log_init("test_data", 0, LOG_WARNING);
	cr_assert_eq(seal_init(), 0);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/zerofs-test-data.XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	char path[512];
	snprintf(path, sizeof(path), "%s/store", tmpdir);
	st = store_dir_open(path, 1);
	cr_assert_not_null(st);
	ix = idx_open(":memory:");
	cr_assert_not_null(ix);
	memset(key.k, 7, sizeof(key.k));
	key.cipher = SEAL_AES256GCM; /* the default where the CPU has AES */
}

static void teardown(void)
{
	idx_close(ix);
	store_close(st);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

static struct data *new_data(uint32_t epoch, uint64_t cache)
{
	struct data_params p = {
		.segment_size = 1 << 20,
		.cache_size = cache,
		.dirty_limit = 512 << 10,
		.epoch = epoch,
		.compress = 1,
		.upload_threads = 2,
		.store_wait_ms = 5000,
	};
	struct data *d = data_new(st, &key, ix, &lock, &p);
	cr_assert_not_null(d);
	return d;
}

Test(data, block_arithmetic)
{
	cr_assert_eq(data_first_blk(0), 0);
	cr_assert_eq(data_first_blk(65535), 0);
	cr_assert_eq(data_first_blk(65536), 1);
	cr_assert_eq(data_last_blk(0, 1), 0);
	cr_assert_eq(data_last_blk(0, 65536), 0);
	cr_assert_eq(data_last_blk(0, 65537), 1);
	cr_assert_eq(data_last_blk(65535, 2), 1);
	cr_assert_eq(data_blocks_for(0), 0);
	cr_assert_eq(data_blocks_for(1), 1);
	cr_assert_eq(data_blocks_for(65536), 1);
	cr_assert_eq(data_blocks_for(65537), 2);
	cr_assert_eq(data_last_blk(1ULL << 40, 1ULL << 40), (2ULL << 40) / 65536 - 1);
}

static uint64_t rnd_state = 42;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

static void fill(uint8_t *p, size_t n)
{
	/* Alternate compressible and random runs. */
	int kind = rnd() % 3;
	for (size_t i = 0; i < n; i++)
		p[i] = kind == 0 ? 0 : kind == 1 ? (uint8_t)(i / 100) : (uint8_t)rnd();
}

static void check_all(struct data *d, uint64_t ino, const uint8_t *model, uint8_t *buf)
{
	pthread_mutex_lock(&lock);
	ssize_t n = data_read(d, ino, 0, FILE_MAX, buf);
	pthread_mutex_unlock(&lock);
	cr_assert_eq(n, FILE_MAX);
	for (size_t i = 0; i < FILE_MAX; i++)
		if (buf[i] != model[i])
			cr_assert_fail("byte %zu differs: %u, model %u", i, buf[i], model[i]);
}

Test(data, model, .init = setup, .fini = teardown, .timeout = 120)
{
	uint8_t *model = calloc(1, FILE_MAX), *buf = malloc(FILE_MAX), *src = malloc(300000);
	struct data *d = new_data(1, 1 << 20);
	const uint64_t ino = 5;
	for (int op = 0; op < 1500; op++) {
		uint64_t off = rnd() % (FILE_MAX - 1);
		size_t len = 1 + rnd() % MIN(300000, FILE_MAX - off);
		if (rnd() % 3 == 0)
			len = 65536 * (1 + rnd() % 4), off = (rnd() % 60) * 65536; /* whole blocks */
		if (off + len > FILE_MAX)
			len = FILE_MAX - off;
		pthread_mutex_lock(&lock);
		int kind = rnd() % 10;
		int rc;
		if (kind < 7) {
			fill(src, len);
			rc = data_write(d, ino, off, src, len);
			memcpy(model + off, src, len);
		} else if (kind < 9) {
			rc = data_zero_range(d, ino, off, len);
			memset(model + off, 0, len);
		} else {
			uint64_t mark;
			rc = data_flush_all(d, &mark);
			if (rc == 0)
				rc = data_wait_stored(d, mark);
		}
		pthread_mutex_unlock(&lock);
		cr_assert_eq(rc, 0, "op %d kind %d: %d", op, kind, rc);
		if (op % 100 == 0) {
			/* Spot checks of short reads at odd places. */
			uint64_t o = rnd() % (FILE_MAX - 5000);
			pthread_mutex_lock(&lock);
			cr_assert_eq(data_read(d, ino, o, 4999, buf), 4999);
			pthread_mutex_unlock(&lock);
			cr_assert_eq(memcmp(buf, model + o, 4999), 0, "op %d: read at %lu", op,
				     (unsigned long)o);
		}
	}
	check_all(d, ino, model, buf);
	uint64_t mark;
	pthread_mutex_lock(&lock);
	cr_assert_eq(data_flush_all(d, &mark), 0);
	cr_assert_eq(data_wait_stored(d, mark), 0);
	pthread_mutex_unlock(&lock);
	data_free(d);

	/* A new instance (empty cache, nothing in memory) reads it all from the
	 * store, and the live byte counts add up. */
	d = new_data(2, 1 << 20);
	check_all(d, ino, model, buf);
	uint64_t live = 0;
	cr_assert_eq(idx_live_bytes(ix, &live), 0);
	cr_assert_gt(live, 0);
	cr_assert_lt(live, 2ull * FILE_MAX);
	/* Zeroing everything leaves no extent and no live byte. */
	pthread_mutex_lock(&lock);
	cr_assert_eq(data_zero_range(d, ino, 0, FILE_MAX), 0);
	cr_assert_eq(data_flush_all(d, &mark), 0);
	pthread_mutex_unlock(&lock);
	struct idx_extent e;
	cr_assert_eq(idx_extent_next(ix, ino, 0, &e), -ENOENT);
	cr_assert_eq(idx_live_bytes(ix, &live), 0);
	cr_assert_eq(live, 0);
	data_free(d);
	free(model);
	free(buf);
	free(src);
}

Test(data, tamper_gives_eio, .init = setup, .fini = teardown)
{
	struct data *d = new_data(3, 1 << 20);
	uint8_t blk[65536], out[65536];
	for (size_t i = 0; i < sizeof(blk); i++)
		blk[i] = (uint8_t)(i * 7 + 1);
	uint64_t mark;
	pthread_mutex_lock(&lock);
	cr_assert_eq(data_write(d, 9, 0, blk, sizeof(blk)), 0);
	cr_assert_eq(data_flush_all(d, &mark), 0);
	cr_assert_eq(data_wait_stored(d, mark), 0);
	pthread_mutex_unlock(&lock);
	data_free(d);
	struct idx_extent e;
	cr_assert_eq(idx_extent_get(ix, 9, 0, &e), 0);
	char path[512];
	snprintf(path, sizeof(path), "%s/store/segments/%016lx", tmpdir, (unsigned long)e.seg);
	FILE *f = fopen(path, "r+b");
	cr_assert_not_null(f);
	fseek(f, e.off + 30, SEEK_SET);
	int c = fgetc(f);
	fseek(f, e.off + 30, SEEK_SET);
	fputc(c ^ 1, f);
	fclose(f);
	d = new_data(4, 1 << 20);
	pthread_mutex_lock(&lock);
	cr_assert_eq(data_read(d, 9, 0, sizeof(out), out), -EIO);
	pthread_mutex_unlock(&lock);
	data_free(d);
}

/* jnl_recover, keeping what it says is missing for adopt_missing. */
static struct jnl_carried *missing;
static size_t nmissing;

static int recover(struct store *s, const char *db, const char *fsid, struct idx **out,
		   uint64_t *seq, uint64_t *ckpt)
{
	jnl_carried_free(missing, nmissing);
	missing = NULL;
	nmissing = 0;
	return jnl_recover(s, &key, db, fsid, out, seq, ckpt, &missing, &nmissing);
}

/* As a mount does: store again the carried segments the store lacks. */
static void adopt_missing(struct data *d)
{
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < nmissing; i++)
		cr_assert_eq(data_adopt(d, missing[i].id, missing[i].obj, missing[i].len, 1), 0);
	cr_assert_eq(data_wait_stored(d, data_sealno(d)), 0);
	pthread_mutex_unlock(&lock);
}

/* Format the store (a root directory only) and open it through s: *a is
 * its index in db, at *seq and *ckpt; db2 names a second database, for a
 * recovery. */
static void format_and_open(struct store *s, char db[512], char db2[512], struct idx **a,
			    uint64_t *seq, uint64_t *ckpt)
{
	struct idx_inode root = {.ino = 1, .mode = 040755, .nlink = 2};
	cr_assert_eq(idx_inode_insert(ix, &root), 0);
	cr_assert_eq(jnl_format(st, &key, ix), 0);
	snprintf(db, 512, "%s/a.db", tmpdir);
	snprintf(db2, 512, "%s/b.db", tmpdir);
	cr_assert_eq(recover(s, db, "fsid", a, seq, ckpt), 0);
}

/* As a crash does: drop the mount (j, d, a) and recover the index from the
 * store alone into db, the segments its logs carry stored again.  *b and
 * the data layer returned read what the store has. */
static struct data *crash_and_recover(struct jnl *j, struct data *d, struct idx *a,
				      const char *db, const char *fsid,
				      const struct data_params *p, struct idx **b)
{
	uint64_t seq, ckpt;
	jnl_free(j);
	data_free(d);
	idx_close(a);
	cr_assert_eq(recover(st, db, fsid, b, &seq, &ckpt), 0);
	d = data_new(st, &key, *b, &lock, p);
	adopt_missing(d);
	return d;
}

static int count_rows(struct idx *x)
{
	struct idx_inode in;
	int n = 0;
	for (uint64_t i = 1; i < 100; i++)
		n += idx_inode_get(x, i, &in) == 0;
	return n;
}

Test(journal, barrier_then_recover, .init = setup, .fini = teardown)
{
	struct idx_inode root = {.ino = 1, .mode = 040755, .nlink = 2};
	cr_assert_eq(idx_inode_insert(ix, &root), 0);
	cr_assert_eq(idx_super_set(ix, "next_ino", 2), 0);
	cr_assert_eq(jnl_format(st, &key, ix), 0);

	char db[512], db2[512];
	snprintf(db, sizeof(db), "%s/a.db", tmpdir);
	snprintf(db2, sizeof(db2), "%s/b.db", tmpdir);
	struct idx *a;
	uint64_t seq, ckpt;
	cr_assert_eq(recover(st, db, "fsid", &a, &seq, &ckpt), 0);
	cr_assert_eq(seq, 0);
	cr_assert_eq(count_rows(a), 1);

	struct jnl_params jp = {.checkpoint_interval = 3, .barrier_interval_ms = 0};
	/* The data layer writes into the recovered index, as a mount does. */
	struct data_params p = {.segment_size = 1 << 20, .cache_size = 1 << 20,
				.dirty_limit = 1 << 20, .epoch = 1, .compress = 1,
				.upload_threads = 1, .store_wait_ms = 5000};
	struct data *d = data_new(st, &key, a, &lock, &p);
	struct jnl *j = jnl_new(st, &key, a, d, &lock, &jp, seq, ckpt);
	cr_assert_not_null(j);
	uint8_t buf[100000];
	memset(buf, 0x5a, sizeof(buf));
	for (int round = 0; round < 5; round++) {
		pthread_mutex_lock(&lock);
		struct idx_inode in = {.mode = 0100644, .nlink = 1, .size = sizeof(buf)};
		cr_assert_eq(idx_inode_create(a, &in), 0);
		cr_assert_eq(data_write(d, in.ino, 0, buf, sizeof(buf)), 0);
		pthread_mutex_unlock(&lock);
		cr_assert_eq(jnl_sync(j), 0);
	}
	/* Not synced: must not appear after recovery. */
	pthread_mutex_lock(&lock);
	struct idx_inode lost = {.mode = 0100644, .nlink = 1};
	cr_assert_eq(idx_inode_create(a, &lost), 0);
	pthread_mutex_unlock(&lock);
	jnl_free(j);
	data_free(d);
	idx_close(a);

	struct idx *b;
	cr_assert_eq(recover(st, db2, "fsid", &b, &seq, &ckpt), 0);
	cr_assert_eq(seq, 5);
	cr_assert_geq(ckpt, 3, "a checkpoint was taken after 3 logs");
	cr_assert_eq(count_rows(b), 6);
	d = data_new(st, &key, b, &lock, &p);
	adopt_missing(d);
	uint8_t out[100000];
	pthread_mutex_lock(&lock);
	for (uint64_t ino = 2; ino < 7; ino++) {
		cr_assert_eq(data_read(d, ino, 0, sizeof(out), out), (ssize_t)sizeof(out));
		cr_assert_eq(memcmp(out, buf, sizeof(out)), 0, "inode %lu", (unsigned long)ino);
	}
	pthread_mutex_unlock(&lock);
	data_free(d);
	idx_close(b);
}

/* A store that fails every put while fail_puts is set: the barrier must
 * report the failure, keep everything, and succeed once the store heals. */
struct flaky {
	struct store base;
	struct store *inner;
	int fail_puts;
	int puts_failed;
	int hold_gets; /* ranged gets wait while set ... */
	int in_get;    /* ... and say that one is waiting */
	int gets;      /* ranged gets made */
	uint64_t get_bytes;
	int log_put_us;       /* index log puts take this long ... */
	int log_puts_late;    /* ... and count those that came out of order */
	uint64_t last_log;    /* newest log put so far */
};

static struct flaky *flaky_of(struct store *s)
{
	return (struct flaky *)s;
}
static ssize_t fl_get(struct store *s, const char *k, uint64_t off, size_t len, void *buf)
{
	struct flaky *fl = flaky_of(s);
	if (__atomic_load_n(&fl->hold_gets, __ATOMIC_SEQ_CST)) {
		__atomic_store_n(&fl->in_get, 1, __ATOMIC_SEQ_CST);
		while (__atomic_load_n(&fl->hold_gets, __ATOMIC_SEQ_CST))
			usleep(1000);
	}
	__atomic_add_fetch(&fl->gets, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&fl->get_bytes, len, __ATOMIC_SEQ_CST);
	return store_get(fl->inner, k, off, len, buf);
}
static int fl_get_all(struct store *s, const char *k, void **d, size_t *len)
{
	return store_get_all(flaky_of(s)->inner, k, d, len);
}
static int fl_put(struct store *s, const char *k, const void *d, size_t len, int flags)
{
	struct flaky *f = flaky_of(s);
	if (__atomic_load_n(&f->fail_puts, __ATOMIC_SEQ_CST)) {
		__atomic_add_fetch(&f->puts_failed, 1, __ATOMIC_SEQ_CST);
		return -EIO;
	}
	unsigned long long seq;
	if (sscanf(k, "meta/log/%llx", &seq) == 1) {
		if (seq <= __atomic_load_n(&f->last_log, __ATOMIC_SEQ_CST))
			__atomic_add_fetch(&f->log_puts_late, 1, __ATOMIC_SEQ_CST);
		__atomic_store_n(&f->last_log, seq, __ATOMIC_SEQ_CST);
		usleep((useconds_t)__atomic_load_n(&f->log_put_us, __ATOMIC_SEQ_CST));
	}
	return store_put(f->inner, k, d, len, flags);
}
static int fl_del(struct store *s, const char *k, int flags)
{
	return store_del_flags(flaky_of(s)->inner, k, flags);
}
static int fl_list(struct store *s, const char *p, store_list_cb cb, void *arg)
{
	return store_list(flaky_of(s)->inner, p, cb, arg);
}
static int fl_stat(struct store *s, const char *k, uint64_t *size)
{
	return store_stat(flaky_of(s)->inner, k, size);
}
static void fl_close(struct store *s)
{
}
static const struct store_ops flaky_ops = {
	.name = "flaky",
	.get = fl_get,
	.get_all = fl_get_all,
	.put = fl_put,
	.del = fl_del,
	.list = fl_list,
	.stat = fl_stat,
	.close = fl_close,
};

Test(journal, failed_barrier_loses_nothing, .init = setup, .fini = teardown, .timeout = 60)
{
	struct flaky fl = {.base = {.ops = &flaky_ops, .url = "flaky"}, .inner = st};
	struct store *fs_ = &fl.base;
	char db[512], db2[512];
	struct idx *a;
	uint64_t seq, ckpt;
	format_and_open(fs_, db, db2, &a, &seq, &ckpt);
	struct data_params p = {.segment_size = 1 << 20, .cache_size = 1 << 20,
				.dirty_limit = 1 << 20, .epoch = 1, .compress = 1,
				.upload_threads = 2, .store_wait_ms = 300};
	struct data *d = data_new(fs_, &key, a, &lock, &p);
	struct jnl_params jp = {.checkpoint_interval = 1000, .barrier_interval_ms = 0};
	struct jnl *j = jnl_new(fs_, &key, a, d, &lock, &jp, seq, ckpt);
	uint8_t buf[200000];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i % 251);

	/* Round 1 succeeds; round 2 meets a dead store and must fail. */
	uint64_t inos[2];
	for (int round = 0; round < 2; round++) {
		pthread_mutex_lock(&lock);
		struct idx_inode in = {.mode = 0100644, .nlink = 1, .size = sizeof(buf)};
		cr_assert_eq(idx_inode_create(a, &in), 0);
		inos[round] = in.ino;
		cr_assert_eq(data_write(d, in.ino, 0, buf, sizeof(buf)), 0);
		pthread_mutex_unlock(&lock);
		__atomic_store_n(&fl.fail_puts, round == 1, __ATOMIC_SEQ_CST);
		int rc = jnl_sync(j);
		if (round == 0)
			cr_assert_eq(rc, 0);
		else
			cr_assert_eq(rc, -EIO, "a barrier on a dead store must fail, got %d", rc);
	}
	cr_assert_gt(fl.puts_failed, 0);
	/* What the failed barrier did not store is not in the store yet. */
	struct idx *tmp;
	cr_assert_eq(recover(st, db2, "other", &tmp, &seq, &ckpt), 0);
	struct idx_inode probe;
	cr_assert_eq(idx_inode_get(tmp, inos[0], &probe), 0);
	cr_assert_eq(idx_inode_get(tmp, inos[1], &probe), -ENOENT);
	idx_close(tmp);

	/* The store heals: the next barrier stores everything, in order. */
	__atomic_store_n(&fl.fail_puts, 0, __ATOMIC_SEQ_CST);
	cr_assert_eq(jnl_sync(j), 0);
	unlink(db2);
	struct idx *b;
	d = crash_and_recover(j, d, a, db2, "other2", &p, &b);
	uint8_t out[200000];
	pthread_mutex_lock(&lock);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(idx_inode_get(b, inos[i], &probe), 0, "inode of round %d", i);
		cr_assert_eq(data_read(d, inos[i], 0, sizeof(out), out), (ssize_t)sizeof(out));
		cr_assert_eq(memcmp(out, buf, sizeof(out)), 0, "data of round %d", i);
	}
	pthread_mutex_unlock(&lock);
	data_free(d);
	idx_close(b);
}

/* Barriers from many threads at once, with index log puts slow enough that
 * callers pile up behind a running barrier and checkpoints are taken
 * meanwhile: every log is put once and in sequence order, every sync that
 * returned 0 is in the store, and recovery from the store alone reads
 * every file back. */
#define SYNC_THREADS 4
#define SYNC_FILES 24
struct syncer {
	struct jnl *j;
	struct data *d;
	struct idx *x;
	int id;
	uint64_t inos[SYNC_FILES];
	int failed;
};

static void fill_file(uint8_t *buf, size_t len, int id, int n)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(i * 7 + (size_t)id * 31 + (size_t)n * 131);
}

static void *syncer_main(void *arg)
{
	struct syncer *sy = arg;
	uint8_t buf[20000];
	for (int n = 0; n < SYNC_FILES; n++) {
		fill_file(buf, sizeof(buf), sy->id, n);
		pthread_mutex_lock(&lock);
		struct idx_inode in = {.mode = 0100644, .nlink = 1, .size = sizeof(buf)};
		int rc = idx_inode_create(sy->x, &in);
		if (rc == 0)
			rc = data_write(sy->d, in.ino, 0, buf, sizeof(buf));
		pthread_mutex_unlock(&lock);
		if (rc == 0)
			rc = jnl_sync(sy->j);
		if (rc != 0)
			sy->failed++;
		sy->inos[n] = in.ino;
	}
	return NULL;
}

Test(journal, concurrent_barriers_store_in_order, .init = setup, .fini = teardown,
     .timeout = 120)
{
	struct flaky fl = {.base = {.ops = &flaky_ops, .url = "flaky"}, .inner = st,
			   .log_put_us = 3000};
	char db[512], db2[512];
	struct idx *a;
	uint64_t seq, ckpt;
	format_and_open(&fl.base, db, db2, &a, &seq, &ckpt);
	struct data_params p = {.segment_size = 1 << 20, .cache_size = 1 << 20,
				.dirty_limit = 1 << 20, .epoch = 1, .compress = 1,
				.upload_threads = 2, .store_wait_ms = 5000};
	struct data *d = data_new(&fl.base, &key, a, &lock, &p);
	/* A checkpoint every few logs, stored beside the barriers. */
	struct jnl_params jp = {.checkpoint_interval = 5, .barrier_interval_ms = 0};
	struct jnl *j = jnl_new(&fl.base, &key, a, d, &lock, &jp, seq, ckpt);
	struct syncer sy[SYNC_THREADS];
	pthread_t tid[SYNC_THREADS];
	for (int t = 0; t < SYNC_THREADS; t++) {
		sy[t] = (struct syncer){.j = j, .d = d, .x = a, .id = t};
		cr_assert_eq(pthread_create(&tid[t], NULL, syncer_main, &sy[t]), 0);
	}
	for (int t = 0; t < SYNC_THREADS; t++) {
		pthread_join(tid[t], NULL);
		cr_assert_eq(sy[t].failed, 0, "thread %d: a barrier failed", t);
	}
	cr_assert_eq(fl.log_puts_late, 0, "an index log was put out of order or twice");
	struct jnl_stats js;
	jnl_get_stats(j, &js);
	cr_assert_geq(js.barriers, SYNC_FILES, "barriers: %llu", (unsigned long long)js.barriers);

	/* A crash now: the store alone has every synced file. */
	struct idx *b;
	d = crash_and_recover(j, d, a, db2, "other", &p, &b);
	uint8_t want[20000], got[20000];
	pthread_mutex_lock(&lock);
	for (int t = 0; t < SYNC_THREADS; t++)
		for (int n = 0; n < SYNC_FILES; n++) {
			struct idx_inode probe;
			cr_assert_eq(idx_inode_get(b, sy[t].inos[n], &probe), 0, "file %d.%d", t, n);
			fill_file(want, sizeof(want), t, n);
			cr_assert_eq(data_read(d, sy[t].inos[n], 0, sizeof(got), got),
				     (ssize_t)sizeof(got));
			cr_assert_eq(memcmp(got, want, sizeof(got)), 0, "data of file %d.%d", t, n);
		}
	pthread_mutex_unlock(&lock);
	data_free(d);
	idx_close(b);
}

/* A barrier with little data stores it inside its index log (one PUT); a
 * crash before the segment's own upload loses nothing: recovery names the
 * segment as missing, with its exact bytes, and storing them makes the
 * data readable again. */
Test(journal, log_carries_small_segments, .init = setup, .fini = teardown, .timeout = 60)
{
	char db[512], db2[512], path[512];
	struct idx *a, *b;
	uint64_t seq, ckpt;
	format_and_open(st, db, db2, &a, &seq, &ckpt);
	struct data_params p = {.segment_size = 1 << 20, .cache_size = 1 << 20,
				.dirty_limit = 1 << 20, .epoch = 1, .compress = 1,
				.upload_threads = 1, .store_wait_ms = 5000};
	struct data *d = data_new(st, &key, a, &lock, &p);
	struct jnl_params jp = {.checkpoint_interval = 1000, .barrier_interval_ms = 0};
	struct jnl *j = jnl_new(st, &key, a, d, &lock, &jp, seq, ckpt);
	uint8_t buf[3 * 65536];
	randombytes_buf(buf, sizeof(buf)); /* 192 KiB: carried, not compressed */
	pthread_mutex_lock(&lock);
	struct idx_inode in = {.mode = 0100644, .nlink = 1, .size = sizeof(buf)};
	cr_assert_eq(idx_inode_create(a, &in), 0);
	cr_assert_eq(data_write(d, in.ino, 0, buf, sizeof(buf)), 0);
	pthread_mutex_unlock(&lock);
	cr_assert_eq(jnl_sync(j), 0);
	/* Let the upload end, then lose the object, as if the upload had
	 * never happened. */
	pthread_mutex_lock(&lock);
	cr_assert_eq(data_wait_stored(d, data_sealno(d)), 0);
	pthread_mutex_unlock(&lock);
	struct idx_extent e;
	cr_assert_eq(idx_extent_get(a, in.ino, 0, &e), 0);
	snprintf(path, sizeof(path), "%s/store/segments/%016lx", tmpdir, (unsigned long)e.seg);
	struct stat sb;
	cr_assert_eq(stat(path, &sb), 0);
	off_t size = sb.st_size;
	cr_assert_eq(unlink(path), 0);
	jnl_free(j);
	data_free(d);
	idx_close(a);

	cr_assert_eq(recover(st, db2, "other", &b, &seq, &ckpt), 0);
	cr_assert_eq(nmissing, 1, "the log carries the lost segment");
	cr_assert_eq(missing[0].id, e.seg);
	cr_assert_eq(missing[0].len, (size_t)size);
	d = data_new(st, &key, b, &lock, &p);
	adopt_missing(d);
	cr_assert_eq(stat(path, &sb), 0, "the segment is stored again");
	cr_assert_eq(sb.st_size, size);
	data_free(d);
	d = data_new(st, &key, b, &lock, &p); /* nothing in memory: from the store */
	uint8_t out[sizeof(buf)];
	pthread_mutex_lock(&lock);
	cr_assert_eq(data_read(d, in.ino, 0, sizeof(out), out), (ssize_t)sizeof(out));
	pthread_mutex_unlock(&lock);
	cr_assert_eq(memcmp(out, buf, sizeof(out)), 0);
	data_free(d);
	idx_close(b);
	jnl_carried_free(missing, nmissing);
	missing = NULL;
	nmissing = 0;
}

/* A partial write reads the block first and waits for the store with the
 * lock dropped; a whole-block write that lands meanwhile must survive.  The
 * block was short (4 KiB): a buffer built with the old length would keep
 * only the first 4 KiB of the new content. */
struct partial_arg {
	struct data *d;
	int rc;
};

static void *partial_writer(void *arg)
{
	struct partial_arg *a = arg;
	pthread_mutex_lock(&lock);
	a->rc = data_write(a->d, 9, 100, "A", 1);
	pthread_mutex_unlock(&lock);
	return NULL;
}

Test(data, partial_write_does_not_undo_a_concurrent_write, .init = setup, .fini = teardown,
     .timeout = 60)
{
	struct flaky fl = {.base = {.ops = &flaky_ops, .url = "flaky"}, .inner = st};
	static uint8_t p1[65536], p2[65536], out[65536];
	memset(p1, 0x11, sizeof(p1));
	memset(p2, 0x22, sizeof(p2));
	struct data *d = new_data(5, 1 << 20);
	uint64_t mark;
	pthread_mutex_lock(&lock);
	/* A short block: its frame holds 4 KiB. */
	cr_assert_eq(data_write(d, 9, 0, p1, 4096), 0);
	cr_assert_eq(data_flush_all(d, &mark), 0);
	cr_assert_eq(data_wait_stored(d, mark), 0);
	pthread_mutex_unlock(&lock);
	data_free(d);

	/* Nothing in memory or cached: the partial write must read the store. */
	struct data_params p = {.segment_size = 1 << 20, .cache_size = 1 << 20,
				.dirty_limit = 512 << 10, .epoch = 6, .compress = 1,
				.upload_threads = 1, .store_wait_ms = 5000};
	d = data_new(&fl.base, &key, ix, &lock, &p);
	cr_assert_not_null(d);
	__atomic_store_n(&fl.hold_gets, 1, __ATOMIC_SEQ_CST);
	struct partial_arg a = {.d = d};
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, partial_writer, &a), 0);
	while (!__atomic_load_n(&fl.in_get, __ATOMIC_SEQ_CST))
		usleep(1000);
	/* The partial writer waits in the store without the lock: a whole
	 * block is written (no read needed) and packed meanwhile. */
	pthread_mutex_lock(&lock);
	cr_assert_eq(data_write(d, 9, 0, p2, sizeof(p2)), 0);
	cr_assert_eq(data_flush_all(d, &mark), 0);
	pthread_mutex_unlock(&lock);
	__atomic_store_n(&fl.hold_gets, 0, __ATOMIC_SEQ_CST);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(a.rc, 0);
	pthread_mutex_lock(&lock);
	cr_assert_eq(data_flush_all(d, &mark), 0); /* the buffer is packed: its length counts */
	cr_assert_eq(data_read(d, 9, 0, sizeof(out), out), (ssize_t)sizeof(out));
	pthread_mutex_unlock(&lock);
	p2[100] = 'A';
	cr_assert_eq(memcmp(out, p2, sizeof(out)), 0,
		     "the whole-block write was cut by the partial write that read before it "
		     "(byte 8192 is %#x)", out[8192]);
	data_free(d);
}

/* A file written in 1 MiB pieces out of order (0, 2, 1, 3, 4, 6, 5, 7...:
 * writeback by parallel threads does that) and read back in order: the
 * read-ahead reads each segment in few large ranged reads, not one per
 * piece.  Its chunks (4 MiB of the file) take along the frames of the next
 * chunk that lie in the same window, so the order within a segment costs
 * bytes, not requests. */
Test(data, read_ahead_reads_out_of_order_pieces_in_few_requests, .init = setup,
     .fini = teardown, .timeout = 60)
{
	enum { PIECE = 1 << 20, PIECES = 16 };
	struct flaky fl = {.base = {.ops = &flaky_ops, .url = "flaky"}, .inner = st};
	struct data_params p = {.segment_size = 8 << 20, .cache_size = 64 << 20,
				.dirty_limit = 32 << 20, .epoch = 7, .compress = 1,
				.upload_threads = 2, .store_wait_ms = 5000};
	uint8_t *file = malloc((size_t)PIECE * PIECES), *out = malloc(PIECE);
	uint64_t mark, x = 88172645463325252ULL;
	cr_assert(file && out);
	for (size_t i = 0; i < (size_t)PIECE * PIECES; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* incompressible */
		file[i] = (uint8_t)x;
	}
	struct data *d = data_new(st, &key, ix, &lock, &p);
	cr_assert_not_null(d);
	pthread_mutex_lock(&lock);
	for (int i = 0; i < PIECES; i++) {
		int piece = (i % 4 == 1) ? i + 1 : (i % 4 == 2) ? i - 1 : i;
		cr_assert_eq(data_write(d, 9, (uint64_t)piece * PIECE, file + (size_t)piece * PIECE,
					PIECE),
			     0);
	}
	cr_assert_eq(data_flush_all(d, &mark), 0);
	cr_assert_eq(data_wait_stored(d, mark), 0);
	pthread_mutex_unlock(&lock);
	data_free(d);

	d = data_new(&fl.base, &key, ix, &lock, &p); /* nothing in memory */
	cr_assert_not_null(d);
	for (int i = 0; i < PIECES; i++) {
		pthread_mutex_lock(&lock);
		cr_assert_eq(data_read(d, 9, (uint64_t)i * PIECE, PIECE, out), PIECE);
		pthread_mutex_unlock(&lock);
		cr_assert_eq(memcmp(out, file + (size_t)i * PIECE, PIECE), 0, "piece %d", i);
	}
	data_free(d);
	int gets = __atomic_load_n(&fl.gets, __ATOMIC_SEQ_CST);
	uint64_t bytes = __atomic_load_n(&fl.get_bytes, __ATOMIC_SEQ_CST);
	/* 16 MiB in two or three segments: a few reads by the reader before
	 * its stream is seen or while the read-ahead threads wait for the
	 * lock, 4 MiB windows after (7 here).  Reads of about one piece each
	 * (the 2 MiB runs of earlier releases made 18) fail this. */
	cr_assert_leq(gets, 10, "%d ranged reads for 16 MiB", gets);
	cr_assert_geq(bytes, (uint64_t)PIECE * PIECES, "%llu bytes read", (unsigned long long)bytes);
	free(file);
	free(out);
}

/* A pinned block keeps its bytes after it ages out of the cache, leaves
 * the cache's lookups, and its buffer is reused only after the unpin; at
 * most a quarter of the capacity is pinned. */
Test(bcache, pin_outlives_eviction)
{
	const size_t bs = 4096;
	struct bcache *c = bcache_new(8, bs);
	cr_assert_not_null(c);
	uint8_t blk[4096], got[4096];
	for (uint32_t i = 0; i < 8; i++) {
		memset(blk, (int)i + 1, bs);
		bcache_put(c, 1, i, blk, bs);
	}
	struct bcache_pin *p0, *p1, *p2;
	size_t plen;
	const uint8_t *b0 = bcache_pin(c, 1, 0, &plen, &p0);
	cr_assert_not_null(b0);
	cr_assert_eq(plen, bs);
	cr_assert_not_null(bcache_pin(c, 1, 1, &plen, &p1));
	cr_assert_null(bcache_pin(c, 1, 2, &plen, &p2), "a third pin of eight blocks");
	cr_assert_null(bcache_pin(c, 1, 99, &plen, &p2), "a miss");
	/* Sixteen new blocks push every old one out. */
	for (uint32_t i = 100; i < 116; i++) {
		memset(blk, 0xee, bs);
		bcache_put(c, 2, i, blk, bs);
	}
	cr_assert_not(bcache_has(c, 1, 0));
	cr_assert_eq(bcache_get(c, 1, 0, got, 0, bs), -ENOENT);
	for (size_t i = 0; i < bs; i++)
		cr_assert_eq(b0[i], 1, "byte %zu of the pinned block", i);
	bcache_unpin(c, p0);
	bcache_unpin(c, p1);
	/* Their buffers are back in use. */
	for (uint32_t i = 200; i < 216; i++) {
		memset(blk, (int)(i & 0xff), bs);
		bcache_put(c, 3, i, blk, bs);
	}
	cr_assert_eq(bcache_get(c, 3, 215, got, 0, bs), (ssize_t)bs);
	cr_assert_eq(got[0], 215);
	bcache_free(c);
}

struct map_rec {
	uint64_t off[64], len[64];
	int data[64], n;
};

static int map_rec(void *arg, uint64_t off, uint64_t len, int data)
{
	struct map_rec *m = arg;
	cr_assert_lt(m->n, 64);
	m->off[m->n] = off;
	m->len[m->n] = len;
	m->data[m->n++] = data;
	return 0;
}

/* data_read_map with pins: the bytes, wherever they are left, are those
 * data_read gives; holes and short blocks (copied, with their zeros) are
 * reported right; cached blocks are pinned, not copied. */
Test(data, read_map_pins, .init = setup, .fini = teardown)
{
	const uint64_t ino = 9, B = DATA_BLOCK_SIZE, len = 8 * B;
	uint8_t *model = calloc(1, len), *buf = malloc(len), *want = malloc(len);
	struct data *d = new_data(1, 1 << 20);
	fill(model, len);
	memset(model + 3 * B, 0, B);               /* block 3: a hole */
	memset(model + 5 * B + 1000, 0, B - 1000); /* block 5: 1000 bytes of data */
	pthread_mutex_lock(&lock);
	cr_assert_eq(data_write(d, ino, 0, model, len), 0);
	cr_assert_eq(data_zero_range(d, ino, 3 * B, B), 0);
	uint64_t mark;
	cr_assert_eq(data_flush_all(d, &mark), 0);
	cr_assert_eq(data_wait_stored(d, mark), 0);
	pthread_mutex_unlock(&lock);
	data_free(d);

	d = new_data(2, 1 << 20);
	const uint64_t off = B / 2 + 7, n = len - off - 100;
	pthread_mutex_lock(&lock);
	cr_assert_eq(data_read(d, ino, 0, len, want), (ssize_t)len); /* now cached */
	struct data_pin pins[9] = {0}; /* the caller zeroes them (data.h) */
	struct map_rec m = {0};
	memset(buf, 0xaa, len);
	cr_assert_eq(data_read_map(d, ino, off, n, buf, map_rec, &m, pins), (ssize_t)n);
	pthread_mutex_unlock(&lock);
	cr_assert_eq(memcmp(want, model, len), 0);
	int pinned = 0;
	for (uint64_t pos = off; pos < off + n;) {
		uint64_t blk = pos / B, from = MAX(off, blk * B), k = MIN(off + n, (blk + 1) * B) - pos;
		const struct data_pin *p = &pins[blk - off / B];
		const uint8_t *src = p->p ? p->p + (pos - from) : buf + (pos - off);
		cr_assert_eq(memcmp(src, model + pos, k), 0, "block %lu", (unsigned long)blk);
		cr_assert(!p->p || (blk != 3 && blk != 5), "block %lu pinned", (unsigned long)blk);
		pinned += p->p && pos == from;
		pos += k;
	}
	cr_assert_eq(pinned, 6, "blocks pinned: all but the hole and the short one");
	data_unpin(d, pins, 8);
	/* The map: data, then the hole of block 3, then data. */
	uint64_t at = off;
	for (int i = 0; i < m.n; i++) {
		cr_assert_eq(m.off[i], at);
		uint64_t blk = m.off[i] / B;
		cr_assert_eq(m.data[i], blk != 3, "range at %lu", (unsigned long)m.off[i]);
		at += m.len[i];
	}
	cr_assert_eq(at, off + n);
	data_free(d);
	free(model);
	free(buf);
	free(want);
}
