/* test_store_dir.c: unit tests for the directory store backend and for
 * store_open's URL dispatch. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* nftw */
#endif
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "store/dir_wal.h"
#include "store/store.h"

static char root[64];
static struct store *st;

static void setup(void)
{
	strcpy(root, "/tmp/zerofs-store-XXXXXX");
	cr_assert_not_null(mkdtemp(root));
	st = store_dir_open(root, 0);
	cr_assert_not_null(st);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void teardown(void)
{
	store_close(st);
	nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(store_dir, .init = setup, .fini = teardown);

static void put_str(const char *key, const char *val)
{
	cr_assert_eq(store_put(st, key, val, strlen(val), 0), 0, "put %s", key);
}

static void assert_content(const char *key, const char *val)
{
	void *data = NULL;
	size_t len = 0;

	cr_assert_eq(store_get_all(st, key, &data, &len), 0, "get_all %s", key);
	cr_assert_eq(len, strlen(val));
	cr_assert_arr_eq(data, val, len);
	free(data);
}

/* Files (not directories) in dir under the store's root. */
static size_t count_files(const char *dir)
{
	char path[128];
	DIR *d;
	struct dirent *de;
	size_t n = 0;

	snprintf(path, sizeof(path), "%s/%s", root, dir);
	d = opendir(path);
	cr_assert_not_null(d);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' && de->d_type != DT_DIR)
			n++;
	closedir(d);
	return n;
}

/* Temp files, and files in the pool of recycled inodes. */
static size_t count_temps(void)
{
	return count_files(".tmp");
}

static size_t count_free(void)
{
	return count_files(".tmp/free");
}

static ino_t ino_of(const char *key)
{
	char path[256];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/%s", root, key);
	cr_assert_eq(stat(path, &sb), 0, "stat %s", key);
	return sb.st_ino;
}

Test(store_dir, put_get_stat)
{
	uint64_t size = 0;
	char buf[16];

	put_str("lease", "hello world");
	assert_content("lease", "hello world");
	cr_assert_eq(store_stat(st, "lease", &size), 0);
	cr_assert_eq(size, 11);
	cr_assert_eq(store_get(st, "lease", 0, sizeof(buf), buf), 11);
	cr_assert_arr_eq(buf, "hello world", 11);
	put_str("lease", "replaced");
	assert_content("lease", "replaced");
}

Test(store_dir, ranged_get)
{
	char buf[16];

	put_str("obj", "0123456789");
	cr_assert_eq(store_get(st, "obj", 3, 4, buf), 4);
	cr_assert_arr_eq(buf, "3456", 4);
	cr_assert_eq(store_get(st, "obj", 8, 10, buf), 2, "short only at the end");
	cr_assert_arr_eq(buf, "89", 2);
	cr_assert_eq(store_get(st, "obj", 10, 4, buf), 0);
	cr_assert_eq(store_get(st, "obj", 1000, 4, buf), 0);
}

Test(store_dir, empty_object)
{
	void *data = NULL;
	size_t len = 1;
	uint64_t size = 1;

	cr_assert_eq(store_put(st, "empty", NULL, 0, 0), 0);
	cr_assert_eq(store_get_all(st, "empty", &data, &len), 0);
	cr_assert_eq(len, 0);
	free(data);
	cr_assert_eq(store_stat(st, "empty", &size), 0);
	cr_assert_eq(size, 0);
}

Test(store_dir, missing_objects)
{
	void *data;
	size_t len;
	uint64_t size;
	char buf[4];

	cr_assert_eq(store_get(st, "nope", 0, 4, buf), -ENOENT);
	cr_assert_eq(store_get_all(st, "nope", &data, &len), -ENOENT);
	cr_assert_eq(store_stat(st, "nope", &size), -ENOENT);
	cr_assert_eq(store_get(st, "no/such/dir", 0, 4, buf), -ENOENT);
	cr_assert_eq(store_del(st, "nope"), 0);
	cr_assert_eq(store_del(st, "no/such/dir"), 0);
}

Test(store_dir, nested_keys)
{
	uint64_t size;
	char buf[4];
	void *data;
	size_t len;

	put_str("segments/00/0000000000000001", "seg1");
	put_str("segments/00/0000000000000002", "seg2");
	put_str("segments/01/0000000000000100", "seg100");
	assert_content("segments/00/0000000000000001", "seg1");
	assert_content("segments/01/0000000000000100", "seg100");
	/* Directories are not objects. */
	cr_assert_eq(store_stat(st, "segments", &size), -ENOENT);
	cr_assert_eq(store_get(st, "segments/00", 0, 4, buf), -ENOENT);
	cr_assert_eq(store_get_all(st, "segments", &data, &len), -ENOENT);
	/* A file in the way of a path component. */
	cr_assert_eq(store_get(st, "segments/00/0000000000000001/x", 0, 4, buf), -ENOENT);
	cr_assert_eq(store_del(st, "segments/00/0000000000000001"), 0);
	cr_assert_eq(store_stat(st, "segments/00/0000000000000001", &size), -ENOENT);
	assert_content("segments/00/0000000000000002", "seg2");
}

Test(store_dir, if_absent)
{
	cr_assert_eq(store_put(st, "zerofs.key", "one", 3, STORE_PUT_IF_ABSENT), 0);
	cr_assert_eq(store_put(st, "zerofs.key", "two", 3, STORE_PUT_IF_ABSENT), -EEXIST);
	assert_content("zerofs.key", "one");
	cr_assert_eq(store_put(st, "a/b/c", "x", 1, STORE_PUT_IF_ABSENT), 0);
	cr_assert_eq(store_put(st, "a/b/c", "y", 1, STORE_PUT_IF_ABSENT), -EEXIST);
	cr_assert_eq(store_del(st, "zerofs.key"), 0);
	cr_assert_eq(store_put(st, "zerofs.key", "three", 5, STORE_PUT_IF_ABSENT), 0);
	assert_content("zerofs.key", "three");
	cr_assert_eq(count_temps(), 0);
}

#define RACERS 8
#define ROUNDS 50

struct racer {
	pthread_barrier_t *start;
	int id;
	int wins[ROUNDS];
};

static void *race(void *arg)
{
	struct racer *r = arg;
	char key[32], val[8];

	pthread_barrier_wait(r->start);
	for (int i = 0; i < ROUNDS; i++) {
		snprintf(key, sizeof(key), "race/%03d", i);
		snprintf(val, sizeof(val), "%d", r->id);
		int ret = store_put(st, key, val, strlen(val), STORE_PUT_IF_ABSENT);

		cr_assert(ret == 0 || ret == -EEXIST, "put returned %d", ret);
		r->wins[i] = ret == 0;
	}
	return NULL;
}

Test(store_dir, if_absent_race_has_one_winner)
{
	pthread_barrier_t start;
	pthread_t th[RACERS];
	struct racer r[RACERS];

	pthread_barrier_init(&start, NULL, RACERS);
	for (int t = 0; t < RACERS; t++) {
		r[t] = (struct racer){ .start = &start, .id = t };
		cr_assert_eq(pthread_create(&th[t], NULL, race, &r[t]), 0);
	}
	for (int t = 0; t < RACERS; t++)
		pthread_join(th[t], NULL);
	for (int i = 0; i < ROUNDS; i++) {
		int winners = 0, winner = -1;
		char key[32], val[16];

		for (int t = 0; t < RACERS; t++) {
			winners += r[t].wins[i];
			if (r[t].wins[i])
				winner = t;
		}
		cr_assert_eq(winners, 1, "round %d had %d winners", i, winners);
		snprintf(key, sizeof(key), "race/%03d", i);
		snprintf(val, sizeof(val), "%d", winner);
		assert_content(key, val);
	}
	pthread_barrier_destroy(&start);
	cr_assert_eq(count_temps(), 0);
}

Test(store_dir, invalid_keys_rejected)
{
	static const char *const bad[] = {
		"",	 "/abs", "a//b", "a/../b", "..",   ".",	     "a/",
		"a/./b", "a b",	 "a\nb", "é",	   ".tmp", ".tmp/x", "a\\b",
	};
	char buf[4];
	void *data;
	size_t len;
	uint64_t size;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		cr_assert_eq(store_put(st, bad[i], "x", 1, 0), -EINVAL, "put '%s'", bad[i]);
		cr_assert_eq(store_get(st, bad[i], 0, 1, buf), -EINVAL, "get '%s'", bad[i]);
		cr_assert_eq(store_get_all(st, bad[i], &data, &len), -EINVAL);
		cr_assert_eq(store_stat(st, bad[i], &size), -EINVAL);
		cr_assert_eq(store_del(st, bad[i]), -EINVAL);
	}
	/* Dots inside a component are fine. */
	put_str("a/.hidden..name-1_x", "ok");
	assert_content("a/.hidden..name-1_x", "ok");
}

struct listing {
	char keys[16][64];
	uint64_t sizes[16];
	int n, stop_after;
};

static int collect(void *arg, const char *key, uint64_t size)
{
	struct listing *l = arg;

	cr_assert_lt(l->n, 16);
	strcpy(l->keys[l->n], key);
	l->sizes[l->n++] = size;
	return l->stop_after && l->n == l->stop_after ? 42 : 0;
}

static void assert_list(const char *prefix, const char *const *want, int nwant)
{
	struct listing l = { 0 };

	cr_assert_eq(store_list(st, prefix, collect, &l), 0);
	cr_assert_eq(l.n, nwant, "prefix '%s': %d keys, want %d", prefix, l.n, nwant);
	for (int i = 0; i < nwant; i++)
		cr_assert_str_eq(l.keys[i], want[i], "prefix '%s' key %d", prefix, i);
}

Test(store_dir, list_order_and_prefix)
{
	static const char *const all[] = {
		"a-b",
		"a.b",
		"a/b",
		"a0",
		"lease",
		"log/0000000000000002",
		"log/0000000000000010",
		"segments/00/0000000000000001",
		"segments/00/0000000000000002",
		"segments/01/0000000000000100",
		"segmentsx",
	};
	static const int order[] = { 9, 3, 7, 0, 10, 5, 1, 8, 4, 2, 6 };
	struct listing l = { .stop_after = 3 };

	for (size_t i = 0; i < ARRAY_SIZE(order); i++)
		put_str(all[order[i]], all[order[i]]);
	assert_list("", all, ARRAY_SIZE(all));
	assert_list("segments/00/", all + 7, 2);
	assert_list("segments/", all + 7, 3);
	assert_list("segments", all + 7, 4);
	assert_list("segments/00/0000000000000002", all + 8, 1);
	assert_list("log/00000000000000", all + 5, 2);
	assert_list("a", all, 4);
	assert_list("a/", all + 2, 1);
	assert_list("zzz", NULL, 0);
	assert_list("nodir/", NULL, 0);
	assert_list(".tmp/", NULL, 0);
	cr_assert_eq(store_list(st, "", collect, &l), 42, "callback's stop value returned");
	cr_assert_eq(l.n, 3);
	l = (struct listing){ 0 };
	cr_assert_eq(store_list(st, "log/", collect, &l), 0);
	cr_assert_eq(l.sizes[0], strlen("log/0000000000000002"));
}

Test(store_dir, no_temp_files_left)
{
	char big[100000];

	memset(big, 'z', sizeof(big));
	for (int i = 0; i < 20; i++) {
		char key[32];

		snprintf(key, sizeof(key), "k/%d", i);
		cr_assert_eq(store_put(st, key, big, sizeof(big), 0), 0);
		cr_assert_eq(store_put(st, key, big, 1, STORE_PUT_IF_ABSENT), -EEXIST);
	}
	cr_assert_eq(count_temps(), 0);
}

Test(store_dir, stale_temps_swept_on_open)
{
	char old[128], fresh[128];
	struct timespec ts[2] = { { .tv_sec = 1000000 }, { .tv_sec = 1000000 } };
	int fd;

	snprintf(old, sizeof(old), "%s/.tmp/old", root);
	snprintf(fresh, sizeof(fresh), "%s/.tmp/fresh", root);
	fd = open(old, O_CREAT | O_WRONLY, 0644);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(utimensat(AT_FDCWD, old, ts, 0), 0);
	fd = open(fresh, O_CREAT | O_WRONLY, 0644);
	cr_assert_geq(fd, 0);
	close(fd);
	store_close(st);
	st = store_dir_open(root, 0);
	cr_assert_not_null(st);
	cr_assert_eq(access(old, F_OK), -1, "stale temp file kept");
	cr_assert_eq(access(fresh, F_OK), 0, "recent temp file removed");
}

Test(store_dir, reopen_keeps_objects)
{
	put_str("segments/00/0000000000000001", "durable");
	store_close(st);
	st = store_dir_open(root, 0);
	cr_assert_not_null(st);
	assert_content("segments/00/0000000000000001", "durable");
}

Test(store_dir, open_by_url)
{
	char url[128], sub[128];
	struct store *s2;

	snprintf(url, sizeof(url), "file://%s", root);
	s2 = store_open(url, 0);
	cr_assert_not_null(s2);
	cr_assert_str_eq(s2->ops->name, "dir");
	cr_assert_eq(store_put(s2, "via-url", "1", 1, 0), 0);
	store_close(s2);
	assert_content("via-url", "1");

	snprintf(url, sizeof(url), "file://localhost%s", root);
	s2 = store_open(url, 0);
	cr_assert_not_null(s2);
	store_close(s2);

	snprintf(sub, sizeof(sub), "%s/new/deeper", root);
	errno = 0;
	cr_assert_null(store_open(sub, 0));
	cr_assert_eq(errno, ENOENT);
	s2 = store_open(sub, 1);
	cr_assert_not_null(s2);
	store_close(s2);

	errno = 0;
	cr_assert_null(store_open("s3://bucket/prefix", 1)); /* s3 needs store_open_cfg */
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_null(store_open("ftp://host/x", 1));
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_null(store_open("file://otherhost/x", 1));
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_null(store_open("", 1));
	cr_assert_eq(errno, EINVAL);
}

/* ---- the write-ahead log (dir_wal.h) ---- */

/* Run fn in a child that opens the store, does its puts and dies without
 * closing it: its records stay in the log, not retired, as after a crash
 * of the machine that had kept the objects in its page cache. */
/* The child's store, left open on purpose: reachable, not a leak. */
static struct store *volatile crashed;

static void in_crashing_child(void (*fn)(struct store *s))
{
	store_close(st);
	st = NULL;
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		crashed = store_dir_open(root, 0);
		if (!crashed)
			_exit(2);
		fn(crashed);
		_exit(0);
	}
	int status = 0;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: %d", status);
}

static void fill(char *buf, size_t len, char seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)(seed + i * 7);
}

static void assert_bytes(const char *key, const char *want, size_t len)
{
	void *data = NULL;
	size_t got = 0;

	cr_assert_eq(store_get_all(st, key, &data, &got), 0, "get_all %s", key);
	cr_assert_eq(got, len, "%s: %zu bytes, not %zu", key, got, len);
	cr_assert_arr_eq(data, want, len, "%s: other bytes", key);
	free(data);
}

static void path_of(char *out, size_t n, const char *key)
{
	snprintf(out, n, "%s/%s", root, key);
}

static char log_a[3000], seg_b[70000];

static void put_two(struct store *s)
{
	if (store_put(s, "meta/log/0000000000000001", log_a, sizeof(log_a), STORE_PUT_IF_ABSENT) !=
		    0 ||
	    store_put(s, "segments/00/0000000000000002", seg_b, sizeof(seg_b), 0) != 0)
		_exit(3);
}

Test(store_dir, wal_replays_lost_and_torn_objects)
{
	char p[256];

	fill(log_a, sizeof(log_a), 'a');
	fill(seg_b, sizeof(seg_b), 'b');
	in_crashing_child(put_two);
	snprintf(p, sizeof(p), "%s/.tmp/" DIR_WAL_NAME, root);
	cr_assert_eq(access(p, F_OK), 0, "no write-ahead log");
	/* What a crash of the machine may leave: a rename lost, and a rename
	 * kept whose data was not written. */
	path_of(p, sizeof(p), "meta/log/0000000000000001");
	cr_assert_eq(unlink(p), 0);
	path_of(p, sizeof(p), "segments/00/0000000000000002");
	cr_assert_eq(truncate(p, 100), 0);
	st = store_dir_open(root, 0);
	cr_assert_not_null(st);
	assert_bytes("meta/log/0000000000000001", log_a, sizeof(log_a));
	assert_bytes("segments/00/0000000000000002", seg_b, sizeof(seg_b));
}

Test(store_dir, wal_retired_records_are_not_replayed)
{
	char p[256];

	fill(log_a, sizeof(log_a), 'c');
	cr_assert_eq(store_put(st, "meta/log/0000000000000007", log_a, sizeof(log_a),
			       STORE_PUT_IF_ABSENT),
		     0);
	store_close(st); /* retires */
	path_of(p, sizeof(p), "meta/log/0000000000000007");
	cr_assert_eq(unlink(p), 0);
	st = store_dir_open(root, 0);
	cr_assert_not_null(st);
	uint64_t size;
	cr_assert_eq(store_stat(st, "meta/log/0000000000000007", &size), -ENOENT,
		     "a retired record came back");
}

static void put_then_delete(struct store *s)
{
	if (store_put(s, "meta/log/0000000000000003", log_a, sizeof(log_a), STORE_PUT_IF_ABSENT) !=
		    0 ||
	    store_del(s, "meta/log/0000000000000003") != 0)
		_exit(3);
}

Test(store_dir, wal_delete_retires_the_record_first)
{
	uint64_t size;

	fill(log_a, sizeof(log_a), 'd');
	in_crashing_child(put_then_delete);
	st = store_dir_open(root, 0);
	cr_assert_not_null(st);
	cr_assert_eq(store_stat(st, "meta/log/0000000000000003", &size), -ENOENT,
		     "a deleted object came back from the log");
}

static void put_two_logs(struct store *s)
{
	if (store_put(s, "meta/log/0000000000000001", log_a, sizeof(log_a), STORE_PUT_IF_ABSENT) !=
		    0 ||
	    store_put(s, "meta/log/0000000000000002", seg_b, 5000, STORE_PUT_IF_ABSENT) != 0)
		_exit(3);
}

Test(store_dir, wal_torn_record_is_not_replayed)
{
	char p[256];
	uint64_t size;

	fill(log_a, sizeof(log_a), 'e');
	fill(seg_b, sizeof(seg_b), 'f');
	in_crashing_child(put_two_logs);
	/* Tear the second record: one byte of its data changed. */
	snprintf(p, sizeof(p), "%s/.tmp/" DIR_WAL_NAME, root);
	int fd = open(p, O_RDWR);
	cr_assert_geq(fd, 0);
	static char wal[DIR_WAL_SIZE];
	cr_assert_eq(pread(fd, wal, sizeof(wal), 0), (ssize_t)sizeof(wal));
	char *at = memmem(wal, sizeof(wal), seg_b, 5000);
	cr_assert_not_null(at, "record not found in the log");
	at[100] ^= 1;
	cr_assert_eq(pwrite(fd, at + 100, 1, at + 100 - wal), 1);
	close(fd);
	path_of(p, sizeof(p), "meta/log/0000000000000001");
	cr_assert_eq(unlink(p), 0);
	path_of(p, sizeof(p), "meta/log/0000000000000002");
	cr_assert_eq(unlink(p), 0);
	st = store_dir_open(root, 0);
	cr_assert_not_null(st);
	assert_bytes("meta/log/0000000000000001", log_a, sizeof(log_a));
	cr_assert_eq(store_stat(st, "meta/log/0000000000000002", &size), -ENOENT,
		     "a torn record was replayed");
}

Test(store_dir, wal_second_process_puts_plainly)
{
	struct store *s2 = store_dir_open(root, 0);

	cr_assert_not_null(s2);
	fill(log_a, sizeof(log_a), 'g');
	/* st takes the log; s2 (its own descriptor, like another process)
	 * finds it locked and syncs its own files. */
	cr_assert_eq(store_put(st, "k/1", log_a, 100, 0), 0);
	cr_assert_eq(store_put(s2, "k/2", log_a, 200, 0), 0);
	cr_assert_eq(store_put(s2, "k/1", log_a, 1, STORE_PUT_IF_ABSENT), -EEXIST);
	store_close(s2);
	assert_bytes("k/1", log_a, 100);
	assert_bytes("k/2", log_a, 200);
}

/* ---- lazy puts and deletes (STORE_PUT_LAZY, STORE_DEL_LAZY) ---- */

Test(store_dir, lazy_put_is_read_at_once_and_synced_on_demand)
{
	cr_assert(st->caps & STORE_CAP_LAZY, "the dir store does not say its lazy puts tear");
	fill(seg_b, sizeof(seg_b), 'h');
	cr_assert_eq(
		store_put(st, "segments/00/0000000000000009", seg_b, sizeof(seg_b), STORE_PUT_LAZY),
		0);
	assert_bytes("segments/00/0000000000000009", seg_b, sizeof(seg_b));
	cr_assert_eq(store_put(st, "segments/00/000000000000000a", seg_b, 10, STORE_PUT_LAZY), 0);
	cr_assert_eq(store_del(st, "segments/00/000000000000000a"), 0);
	/* A lazy put deleted before the sync is skipped, not an error. */
	cr_assert_eq(store_sync(st), 0);
	cr_assert_eq(store_sync(st), 0, "a second sync with nothing to do");
	assert_bytes("segments/00/0000000000000009", seg_b, sizeof(seg_b));
}

static void put_lazy(struct store *s)
{
	if (store_put(s, "segments/00/0000000000000005", seg_b, sizeof(seg_b), STORE_PUT_LAZY) != 0)
		_exit(3);
}

Test(store_dir, lazy_put_takes_no_record)
{
	char p[256];

	fill(seg_b, sizeof(seg_b), 'i');
	in_crashing_child(put_lazy);
	/* Torn by a crash before any store_sync: the store does not mend it
	 * (its caller keeps the bytes; journal.c stores them again). */
	path_of(p, sizeof(p), "segments/00/0000000000000005");
	cr_assert_eq(truncate(p, 100), 0);
	st = store_dir_open(root, 0);
	cr_assert_not_null(st);
	uint64_t size = 0;
	cr_assert_eq(store_stat(st, "segments/00/0000000000000005", &size), 0);
	cr_assert_eq(size, 100, "a lazy put was replayed from the write-ahead log");
}

static void put_then_delete_lazily(struct store *s)
{
	if (store_put(s, "meta/log/0000000000000004", log_a, sizeof(log_a), STORE_PUT_IF_ABSENT) !=
		    0 ||
	    store_del_flags(s, "meta/log/0000000000000004", STORE_DEL_LAZY) != 0)
		_exit(3);
}

Test(store_dir, lazy_delete_may_come_back_whole)
{
	uint64_t size;

	fill(log_a, sizeof(log_a), 'j');
	in_crashing_child(put_then_delete_lazily);
	/* The delete did not retire the put's record: the crash undoes it, and
	 * the object comes back whole, never torn. */
	st = store_dir_open(root, 0);
	cr_assert_not_null(st);
	cr_assert_eq(store_stat(st, "meta/log/0000000000000004", &size), 0);
	assert_bytes("meta/log/0000000000000004", log_a, sizeof(log_a));
	cr_assert_eq(store_del_flags(st, "meta/log/0000000000000004", STORE_DEL_LAZY), 0);
	cr_assert_eq(store_stat(st, "meta/log/0000000000000004", &size), -ENOENT);
}

static void read_wal(char *buf)
{
	char p[256];

	snprintf(p, sizeof(p), "%s/.tmp/" DIR_WAL_NAME, root);
	int fd = open(p, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, buf, DIR_WAL_SIZE, 0), (ssize_t)DIR_WAL_SIZE);
	close(fd);
}

static void put_after_reopen(struct store *s)
{
	if (store_put(s, "meta/log/0000000000000012", seg_b, 4000, STORE_PUT_IF_ABSENT) != 0)
		_exit(3);
}

Test(store_dir, wal_open_with_nothing_to_replay_writes_nothing)
{
	static char before[DIR_WAL_SIZE], after[DIR_WAL_SIZE];
	char p[256];

	fill(log_a, sizeof(log_a), 'k');
	fill(seg_b, sizeof(seg_b), 'l');
	cr_assert_eq(store_put(st, "meta/log/0000000000000011", log_a, sizeof(log_a),
			       STORE_PUT_IF_ABSENT),
		     0);
	store_close(st); /* retires: the header points past the record */
	read_wal(before);
	st = store_dir_open(root, 0);
	cr_assert_not_null(st);
	store_close(st);
	st = NULL;
	read_wal(after);
	cr_assert(memcmp(before, after, DIR_WAL_SIZE) == 0, "an open without puts wrote the log");
	/* The next owner appends where the header points; a crash then
	 * replays that record. */
	in_crashing_child(put_after_reopen);
	path_of(p, sizeof(p), "meta/log/0000000000000012");
	cr_assert_eq(unlink(p), 0);
	st = store_dir_open(root, 0);
	cr_assert_not_null(st);
	assert_bytes("meta/log/0000000000000012", seg_b, 4000);
	assert_bytes("meta/log/0000000000000011", log_a, sizeof(log_a));
}

/* Make key's path fail to open (a symlink to itself: ELOOP), as an object
 * whose sync fails. */
static void break_object(const char *key)
{
	char p[256];

	path_of(p, sizeof(p), key);
	cr_assert_eq(unlink(p), 0);
	cr_assert_eq(symlink(p, p), 0);
}

Test(store_dir, failed_lazy_sync_is_final)
{
	fill(seg_b, sizeof(seg_b), 'm');
	cr_assert_eq(store_put(st, "segments/00/0000000000000021", seg_b, 1000, STORE_PUT_LAZY), 0);
	break_object("segments/00/0000000000000021");
	cr_assert_eq(store_sync(st), -EIO);
	/* Tried again the fsync could succeed with the data lost: it is not. */
	char p[256];
	path_of(p, sizeof(p), "segments/00/0000000000000021");
	cr_assert_eq(unlink(p), 0);
	cr_assert_eq(store_sync(st), -EIO, "a failed sync was forgotten");
	/* Later lazy puts sync their own files. */
	cr_assert_eq(store_put(st, "segments/00/0000000000000022", seg_b, 2000, STORE_PUT_LAZY), 0);
	assert_bytes("segments/00/0000000000000022", seg_b, 2000);
	cr_assert_eq(store_sync(st), -EIO);
}

Test(store_dir, failed_retirement_leaves_the_records_for_the_next_open)
{
	fill(log_a, sizeof(log_a), 'n');
	cr_assert_eq(store_put(st, "meta/log/0000000000000031", log_a, sizeof(log_a),
			       STORE_PUT_IF_ABSENT),
		     0);
	break_object("meta/log/0000000000000031");
	store_close(st); /* its retirement fails */
	st = store_dir_open(root, 0);
	cr_assert_not_null(st);
	assert_bytes("meta/log/0000000000000031", log_a, sizeof(log_a));
}

/* A deleted small object's inode goes to the pool and the next put fills
 * it, unless a reader holds it (flock LOCK_SH, as dir_get does while it
 * reads).  Large objects are unlinked.  Closing the store empties the
 * pool. */
Test(store_dir, recycles_small_objects)
{
	char path[256];
	uint64_t size;

	put_str("log/1", "first log");
	ino_t first = ino_of("log/1");
	cr_assert_eq(store_del(st, "log/1"), 0);
	cr_assert_eq(store_stat(st, "log/1", &size), -ENOENT);
	cr_assert_eq(count_free(), 1);
	put_str("log/2", "second, in a reused inode");
	cr_assert_eq(ino_of("log/2"), first, "the pool's inode was not reused");
	assert_content("log/2", "second, in a reused inode");
	cr_assert_eq(count_free(), 0);
	cr_assert_eq(count_temps(), 0);

	/* A reader holds log/2's inode: it is not reused until it lets go. */
	snprintf(path, sizeof(path), "%s/log/2", root);
	int rfd = open(path, O_RDONLY);
	cr_assert_geq(rfd, 0);
	cr_assert_eq(flock(rfd, LOCK_SH), 0);
	cr_assert_eq(store_del(st, "log/2"), 0);
	put_str("log/3", "third");
	cr_assert_neq(ino_of("log/3"), first, "an inode a reader holds was reused");
	char got[64] = "";
	cr_assert_eq(pread(rfd, got, sizeof(got) - 1, 0), 25);
	cr_assert_str_eq(got, "second, in a reused inode");
	close(rfd);
	put_str("log/4", "fourth");
	cr_assert_eq(ino_of("log/4"), first, "the inode stayed out of use");
	/* Overwritten in place, then cut: none of the longer object before. */
	assert_content("log/4", "fourth");

	static char big[(2u << 20) + 1];
	memset(big, 'b', sizeof(big));
	cr_assert_eq(store_put(st, "seg/big", big, sizeof(big), 0), 0);
	cr_assert_eq(store_del(st, "seg/big"), 0);
	cr_assert_eq(count_free(), 0, "a large object went to the pool");

	cr_assert_eq(store_del(st, "log/3"), 0);
	cr_assert_eq(count_free(), 1);
	store_close(st);
	st = NULL;
	cr_assert_eq(count_free(), 0, "the pool outlived the store");
}

/* Readers racing with deletes and puts that reuse the deleted inodes see
 * each key's own bytes or ENOENT, never another object's. */
struct churn {
	atomic_int stop;
	atomic_long reads, gone, bad; /* bad: checked by the test's thread */
};

static void fill_key(char *buf, size_t len, int k)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)('a' + (k + (int)i) % 26);
}

static void *churn_reader(void *arg)
{
	struct churn *c = arg;
	static char want[4096];
	char got[4096];

	while (!atomic_load(&c->stop)) {
		for (int k = 0; k < 32; k++) {
			char key[32];
			snprintf(key, sizeof(key), "r/%d", k);
			ssize_t n = store_get(st, key, 0, sizeof(got), got);
			if (n == -ENOENT) {
				atomic_fetch_add(&c->gone, 1);
				continue;
			}
			fill_key(want, sizeof(want), k);
			if (n != (ssize_t)sizeof(got) || memcmp(got, want, sizeof(got)) != 0)
				atomic_fetch_add(&c->bad, 1);
			else
				atomic_fetch_add(&c->reads, 1);
		}
	}
	return NULL;
}

Test(store_dir, readers_never_see_a_reused_inode, .timeout = 60)
{
	static char data[4096];
	struct churn c = { 0 };
	pthread_t t;

	cr_assert_eq(pthread_create(&t, NULL, churn_reader, &c), 0);
	uint64_t end = util_now_ns() + 1500000000ULL;
	for (int round = 0; util_now_ns() < end; round++) {
		for (int k = 0; k < 32; k++) {
			char key[32];
			snprintf(key, sizeof(key), "r/%d", k);
			if (round % 2 == 0) {
				fill_key(data, sizeof(data), k);
				cr_assert_eq(store_put(st, key, data, sizeof(data), 0), 0);
			} else {
				cr_assert_eq(store_del(st, key), 0);
			}
		}
	}
	atomic_store(&c.stop, 1);
	pthread_join(t, NULL);
	cr_assert_eq(atomic_load(&c.bad), 0, "reads that returned another object's bytes");
	cr_assert_gt(atomic_load(&c.reads), 0);
	cr_assert_gt(atomic_load(&c.gone), 0);
}

/* Opening a store removes the pool files of processes that are gone, and
 * keeps those of live ones (their files are taken without a check). */
Test(store_dir, sweeps_pools_of_gone_processes)
{
	char gone[256], live[256];

	snprintf(gone, sizeof(gone), "%s/.tmp/free/%d.7", root, INT_MAX);
	snprintf(live, sizeof(live), "%s/.tmp/free/%d.7", root, (int)getppid());
	for (int i = 0; i < 2; i++) {
		FILE *f = fopen(i ? live : gone, "w");
		cr_assert_not_null(f);
		fputs("old object", f);
		fclose(f);
	}
	store_close(st);
	st = store_dir_open(root, 0);
	cr_assert_not_null(st);
	cr_assert_eq(access(gone, F_OK), -1, "a gone process's pool file stayed");
	cr_assert_eq(access(live, F_OK), 0, "a live process's pool file was removed");
	unlink(live);
}
