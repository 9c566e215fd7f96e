/* test_idx.c: known-answer tests of the SQLite index (src/index/idx.c):
 * schema, inodes, directory entries and readdir cookies, the extent map and
 * its live-byte invariant (randomised against an independent model and an
 * independent SUM()), xattrs, symlinks, orphans, and the durability hooks:
 * changesets replayed on a checkpoint image must reproduce the same rows.
 *
 * Database contents are inspected through idx_serialize: the image is loaded
 * into a separate SQLite connection, so the tests never reach inside idx. */
#define _GNU_SOURCE /* nftw */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "index/idx.h"

/* Generous bounds: the same tests run under valgrind and the sanitizers. */
#define SLOW_SECONDS 20.0

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct idx *open_mem(void)
{
	struct idx *ix = idx_open(":memory:");

	cr_assert_not_null(ix, "idx_open: %s", strerror(errno));
	return ix;
}

static struct idx_inode mk_inode(uint32_t mode, uint32_t nlink)
{
	struct idx_inode in = {
		.mode = mode,
		.uid = 1000,
		.gid = 100,
		.nlink = nlink,
		.size = 0,
		.atime = 1,
		.mtime = 2,
		.ctime = 3,
		.btime = 4,
	};
	return in;
}

/* A separate connection holding a copy of ix's database. */
static sqlite3 *snapshot(struct idx *ix)
{
	void *img;
	size_t len;
	unsigned char *copy;
	sqlite3 *db;

	cr_assert_eq(idx_serialize(ix, &img, &len), 0);
	copy = sqlite3_malloc64(len);
	cr_assert_not_null(copy);
	memcpy(copy, img, len);
	free(img);
	/* An in-memory database cannot be in WAL mode: mark the copy legacy. */
	copy[18] = copy[19] = 1;
	cr_assert_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
	cr_assert_eq(
		sqlite3_deserialize(db, "main", copy, (sqlite3_int64)len, (sqlite3_int64)len,
				    SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE),
		SQLITE_OK);
	return db;
}

static int64_t query_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v;

	cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s: %s", sql,
		     sqlite3_errmsg(db));
	cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s", sql);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static int64_t snap_int(struct idx *ix, const char *sql)
{
	sqlite3 *db = snapshot(ix);
	int64_t v = query_int(db, sql);

	sqlite3_close(db);
	return v;
}

static void dump_table(sqlite3 *db, const char *table, FILE *out)
{
	char sql[128];
	sqlite3_stmt *st;

	snprintf(sql, sizeof(sql), "SELECT * FROM %s ORDER BY 1, 2", table);
	cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	fprintf(out, "[%s]\n", table);
	while (sqlite3_step(st) == SQLITE_ROW) {
		for (int i = 0; i < sqlite3_column_count(st); i++) {
			const unsigned char *b;

			switch (sqlite3_column_type(st, i)) {
			case SQLITE_INTEGER:
				fprintf(out, " i%lld", (long long)sqlite3_column_int64(st, i));
				break;
			case SQLITE_NULL:
				fprintf(out, " null");
				break;
			default:
				b = sqlite3_column_blob(st, i);
				fprintf(out, " %c:",
					sqlite3_column_type(st, i) == SQLITE_TEXT ? 't' : 'b');
				for (int j = 0; j < sqlite3_column_bytes(st, i); j++)
					fprintf(out, "%02x", b[j]);
			}
		}
		fputc('\n', out);
	}
	sqlite3_finalize(st);
}

/* Every replicated table, in primary key order, byte-exact (malloc'd). */
static char *dump(struct idx *ix)
{
	static const char *const tables[] = { "super",	"inode",   "symlink", "dirent",
					      "extent", "segment", "xattr" };
	sqlite3 *db = snapshot(ix);
	char *text;
	size_t len;
	FILE *out = open_memstream(&text, &len);

	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
		dump_table(db, tables[i], out);
	fclose(out);
	sqlite3_close(db);
	return text;
}

static void take(struct idx *ix, void **cs, size_t *len)
{
	cr_assert_eq(idx_changeset_take(ix, cs, len), 0);
}

static size_t take_len(struct idx *ix)
{
	void *cs;
	size_t len;

	take(ix, &cs, &len);
	free(cs);
	return len;
}

static uint64_t new_inode(struct idx *ix, uint32_t mode)
{
	struct idx_inode in = mk_inode(mode, 1);

	cr_assert_eq(idx_inode_create(ix, &in), 0);
	return in.ino;
}

static void mkroot(struct idx *ix)
{
	struct idx_inode root = mk_inode(S_IFDIR | 0755, 2);

	root.ino = IDX_ROOT_INO;
	cr_assert_eq(idx_inode_insert(ix, &root), 0);
}

/* A changeset made outside idx, of one insert into table (which has k, v). */
static void foreign_changeset(const char *table, void **cs, int *len)
{
	sqlite3 *db;
	sqlite3_session *s;
	char sql[128];

	cr_assert_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
	snprintf(sql, sizeof(sql), "CREATE TABLE %s(k TEXT PRIMARY KEY, v)", table);
	cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3session_create(db, "main", &s), SQLITE_OK);
	cr_assert_eq(sqlite3session_attach(s, NULL), SQLITE_OK);
	snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES('x', 1)", table);
	cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3session_changeset(s, len, cs), SQLITE_OK);
	sqlite3session_delete(s);
	sqlite3_close(db);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void rm_tree(const char *dir)
{
	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* ---- schema, counters ---- */

Test(idx, schema)
{
	struct idx *ix = open_mem();
	sqlite3 *db = snapshot(ix);
	uint64_t n = 99;
	int64_t v;

	cr_assert_eq(query_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND"
				   " name IN ('super', 'local', 'inode', 'symlink', 'dirent',"
				   " 'extent', 'segment', 'xattr')"),
		     8);
	cr_assert_eq(
		query_int(db,
			  "SELECT count(*) FROM pragma_table_info('extent')"
			  " WHERE name IN ('ino', 'blk', 'seg', 'off', 'len', 'plen', 'frame')"),
		7);
	cr_assert_eq(query_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND"
				   " name = 'dirent_parent'"),
		     1);
	sqlite3_close(db);
	cr_assert_eq(idx_inode_count(ix, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_eq(idx_super_get(ix, "next_ino", &v), -ENOENT);
	idx_close(ix);
}

Test(idx, super_and_local)
{
	struct idx *ix = open_mem();
	int64_t v;
	char *s;

	cr_assert_eq(idx_super_set(ix, "epoch", 7), 0);
	cr_assert_eq(idx_super_set(ix, "epoch", -3), 0);
	cr_assert_eq(idx_super_get(ix, "epoch", &v), 0);
	cr_assert_eq(v, -3);
	cr_assert_eq(idx_local_get(ix, "lease", &s), -ENOENT);
	cr_assert_eq(idx_local_set(ix, "lease", "abc"), 0);
	cr_assert_eq(idx_local_set(ix, "lease", "def"), 0);
	cr_assert_eq(idx_local_get(ix, "lease", &s), 0);
	cr_assert_str_eq(s, "def");
	free(s);
	cr_assert_eq(idx_local_set(ix, "lease", NULL), 0);
	cr_assert_eq(idx_local_get(ix, "lease", &s), -ENOENT);
	idx_close(ix);
}

/* ---- inodes ---- */

Test(idx, inodes)
{
	struct idx *ix = open_mem();
	struct idx_inode in = mk_inode(S_IFREG | 0644, 1), out;
	uint64_t n;
	int64_t v;

	mkroot(ix);
	cr_assert_eq(idx_inode_insert(ix, &(struct idx_inode){ .ino = IDX_ROOT_INO }), -EEXIST);
	cr_assert_eq(idx_inode_get(ix, IDX_ROOT_INO, &out), 0);
	cr_assert_eq(out.mode, S_IFDIR | 0755);
	cr_assert_eq(out.nlink, 2);

	in.size = 1ULL << 40;
	in.rdev = 0x0803;
	in.atime = -1000000001LL;
	in.btime = INT64_MAX;
	cr_assert_eq(idx_inode_create(ix, &in), 0);
	cr_assert_eq(in.ino, 2);
	cr_assert_eq(idx_inode_get(ix, 2, &out), 0);
	cr_assert_eq(memcmp(&in, &out, sizeof(in)), 0);
	cr_assert_eq(new_inode(ix, S_IFREG), 3);
	cr_assert_eq(idx_super_get(ix, "next_ino", &v), 0);
	cr_assert_eq(v, 4);

	/* A rolled back create gives its number back. */
	cr_assert_eq(idx_begin(ix), 0);
	cr_assert_eq(new_inode(ix, S_IFREG), 4);
	idx_rollback(ix);
	cr_assert_eq(idx_inode_get(ix, 4, &out), -ENOENT);
	cr_assert_eq(new_inode(ix, S_IFREG), 4);

	in.mode = S_IFREG | 0600;
	in.nlink = 3;
	in.mtime = 123456789;
	cr_assert_eq(idx_inode_update(ix, &in), 0);
	cr_assert_eq(idx_inode_get(ix, 2, &out), 0);
	cr_assert_eq(memcmp(&in, &out, sizeof(in)), 0);
	in.ino = 77;
	cr_assert_eq(idx_inode_update(ix, &in), -ENOENT);

	cr_assert_eq(idx_inode_count(ix, &n), 0);
	cr_assert_eq(n, 4);
	cr_assert_eq(idx_inode_delete(ix, 3), 0);
	cr_assert_eq(idx_inode_get(ix, 3, &out), -ENOENT);
	cr_assert_eq(idx_inode_delete(ix, 3), -ENOENT);
	cr_assert_eq(idx_inode_count(ix, &n), 0);
	cr_assert_eq(n, 3);
	idx_close(ix);
}

static int collect_ino(void *arg, uint64_t ino)
{
	uint64_t *seen = arg;

	seen[++seen[0]] = ino;
	return 0;
}

static int delete_orphan(void *arg, uint64_t ino)
{
	return idx_inode_delete(arg, ino);
}

static int stop_at_first(void *arg, uint64_t ino)
{
	return 42;
}

Test(idx, orphans)
{
	struct idx *ix = open_mem();
	struct idx_inode in = mk_inode(S_IFREG, 0);
	uint64_t seen[8] = { 0 }, n;

	mkroot(ix);
	cr_assert_eq(idx_inode_create(ix, &in), 0); /* 2: orphan */
	new_inode(ix, S_IFREG); /* 3 */
	cr_assert_eq(idx_inode_create(ix, &in), 0); /* 4: orphan */
	cr_assert_eq(idx_inode_orphans(ix, collect_ino, seen), 0);
	cr_assert_eq(seen[0], 2);
	cr_assert_eq(seen[1], 2);
	cr_assert_eq(seen[2], 4);
	cr_assert_eq(idx_inode_orphans(ix, stop_at_first, NULL), 42);
	/* The callback may delete what it is given. */
	cr_assert_eq(idx_inode_orphans(ix, delete_orphan, ix), 0);
	cr_assert_eq(idx_inode_count(ix, &n), 0);
	cr_assert_eq(n, 2);
	seen[0] = 0;
	cr_assert_eq(idx_inode_orphans(ix, collect_ino, seen), 0);
	cr_assert_eq(seen[0], 0);
	idx_close(ix);
}

Test(idx, symlink)
{
	struct idx *ix = open_mem();
	uint64_t ino;
	char *t;

	mkroot(ix);
	ino = new_inode(ix, S_IFLNK | 0777);
	cr_assert_eq(idx_symlink_get(ix, ino, &t), -ENOENT);
	cr_assert_eq(idx_symlink_set(ix, ino, "../a/b\xff"), 0);
	cr_assert_eq(idx_symlink_get(ix, ino, &t), 0);
	cr_assert_str_eq(t, "../a/b\xff");
	free(t);
	cr_assert_eq(idx_symlink_set(ix, ino, "/x"), 0);
	cr_assert_eq(idx_symlink_get(ix, ino, &t), 0);
	cr_assert_str_eq(t, "/x");
	free(t);
	cr_assert_eq(idx_inode_delete(ix, ino), 0);
	cr_assert_eq(idx_symlink_get(ix, ino, &t), -ENOENT);
	idx_close(ix);
}

/* ---- directory entries ---- */

Test(idx, dirents)
{
	struct idx *ix = open_mem();
	uint64_t a, b, ino;

	mkroot(ix);
	a = new_inode(ix, S_IFREG);
	b = new_inode(ix, S_IFDIR);
	cr_assert_eq(idx_dir_is_empty(ix, IDX_ROOT_INO), 1);
	cr_assert_eq(idx_dirent_insert(ix, IDX_ROOT_INO, "a", a), 0);
	cr_assert_eq(idx_dir_is_empty(ix, IDX_ROOT_INO), 0);
	cr_assert_eq(idx_dir_is_empty(ix, b), 1);
	cr_assert_eq(idx_dirent_insert(ix, IDX_ROOT_INO, "a", b), -EEXIST);
	/* Names are bytes: no case folding, no normalisation, no prefix match. */
	cr_assert_eq(idx_dirent_insert(ix, IDX_ROOT_INO, "A", b), 0);
	cr_assert_eq(idx_dirent_insert(ix, IDX_ROOT_INO, "\xc3\xa9", a), 0);
	cr_assert_eq(idx_dirent_insert(ix, IDX_ROOT_INO, "e\xcc\x81", b), 0);
	cr_assert_eq(idx_dirent_insert(ix, b, "a", a), 0);

	cr_assert_eq(idx_dirent_lookup(ix, IDX_ROOT_INO, "a", &ino), 0);
	cr_assert_eq(ino, a);
	cr_assert_eq(idx_dirent_lookup(ix, IDX_ROOT_INO, "A", &ino), 0);
	cr_assert_eq(ino, b);
	cr_assert_eq(idx_dirent_lookup(ix, IDX_ROOT_INO, "e\xcc\x81", &ino), 0);
	cr_assert_eq(ino, b);
	cr_assert_eq(idx_dirent_lookup(ix, IDX_ROOT_INO, "\xc3\xa9", &ino), 0);
	cr_assert_eq(ino, a);
	cr_assert_eq(idx_dirent_lookup(ix, IDX_ROOT_INO, "aa", &ino), -ENOENT);
	cr_assert_eq(idx_dirent_lookup(ix, IDX_ROOT_INO, "", &ino), -ENOENT);
	cr_assert_eq(idx_dirent_lookup(ix, b, "a", &ino), 0);
	cr_assert_eq(ino, a);

	cr_assert_eq(idx_dirent_retarget(ix, IDX_ROOT_INO, "a", b), 0);
	cr_assert_eq(idx_dirent_lookup(ix, IDX_ROOT_INO, "a", &ino), 0);
	cr_assert_eq(ino, b);
	cr_assert_eq(idx_dirent_retarget(ix, IDX_ROOT_INO, "zz", b), -ENOENT);

	cr_assert_eq(idx_dirent_delete(ix, IDX_ROOT_INO, "a"), 0);
	cr_assert_eq(idx_dirent_delete(ix, IDX_ROOT_INO, "a"), -ENOENT);
	cr_assert_eq(idx_dirent_lookup(ix, IDX_ROOT_INO, "a", &ino), -ENOENT);
	cr_assert_eq(idx_dirent_delete(ix, b, "a"), 0);
	cr_assert_eq(idx_dir_is_empty(ix, b), 1);
	idx_close(ix);
}

struct listing {
	size_t n, stop_after;
	uint64_t cookies[16];
	char names[16][8];
	uint64_t inos[16];
};

static int list_cb(void *arg, const char *name, const struct idx_inode *child, uint64_t cookie)
{
	struct listing *l = arg;

	cr_assert_lt(l->n, 16);
	l->cookies[l->n] = cookie;
	snprintf(l->names[l->n], sizeof(l->names[0]), "%s", name);
	l->inos[l->n] = child->ino;
	cr_assert_eq(child->mode, S_IFREG | 0644);
	cr_assert_eq(child->uid, 1000);
	l->n++;
	return l->stop_after && l->n == l->stop_after ? 7 : 0;
}

Test(idx, readdir_order_and_cookies)
{
	static const char *const names[] = { "zeta", "alpha", "mid", "b", "a" };
	struct idx *ix = open_mem();
	struct listing all = { 0 }, part = { 0 };
	uint64_t ino[5];

	mkroot(ix);
	for (int i = 0; i < 5; i++) {
		ino[i] = new_inode(ix, S_IFREG | 0644);
		cr_assert_eq(idx_dirent_insert(ix, IDX_ROOT_INO, names[i], ino[i]), 0);
	}
	/* Delete one and add one: the new entry goes last, cookies never reused. */
	cr_assert_eq(idx_dirent_delete(ix, IDX_ROOT_INO, "a"), 0);
	cr_assert_eq(idx_dirent_insert(ix, IDX_ROOT_INO, "a", ino[4]), 0);
	/* Retarget keeps the cookie (rename over an existing name). */
	cr_assert_eq(idx_dirent_retarget(ix, IDX_ROOT_INO, "mid", ino[0]), 0);

	cr_assert_eq(idx_readdir(ix, IDX_ROOT_INO, 0, list_cb, &all), 0);
	cr_assert_eq(all.n, 5);
	cr_assert_str_eq(all.names[0], "zeta");
	cr_assert_str_eq(all.names[1], "alpha");
	cr_assert_str_eq(all.names[2], "mid");
	cr_assert_eq(all.inos[2], ino[0]);
	cr_assert_str_eq(all.names[3], "b");
	cr_assert_str_eq(all.names[4], "a");
	cr_assert_eq(all.cookies[4], 6);
	for (size_t i = 1; i < all.n; i++)
		cr_assert_gt(all.cookies[i], all.cookies[i - 1]);

	/* Stop after two, then resume from the last cookie seen. */
	part.stop_after = 2;
	cr_assert_eq(idx_readdir(ix, IDX_ROOT_INO, 0, list_cb, &part), 7);
	cr_assert_eq(part.n, 2);
	part.stop_after = 0;
	cr_assert_eq(idx_readdir(ix, IDX_ROOT_INO, part.cookies[1], list_cb, &part), 0);
	cr_assert_eq(part.n, 5);
	for (size_t i = 0; i < 5; i++) {
		cr_assert_str_eq(part.names[i], all.names[i]);
		cr_assert_eq(part.cookies[i], all.cookies[i]);
	}
	/* Past the end, and an empty directory. */
	part.n = 0;
	cr_assert_eq(idx_readdir(ix, IDX_ROOT_INO, all.cookies[4], list_cb, &part), 0);
	cr_assert_eq(idx_readdir(ix, ino[0], 0, list_cb, &part), 0);
	cr_assert_eq(part.n, 0);
	idx_close(ix);
}

struct big_listing {
	uint64_t n, last, first_ino;
};

static int big_cb(void *arg, const char *name, const struct idx_inode *child, uint64_t cookie)
{
	struct big_listing *l = arg;
	char want[32];

	snprintf(want, sizeof(want), "file-%08llu", (unsigned long long)l->n);
	if (cookie <= l->last || strcmp(name, want) != 0 || child->ino != l->first_ino + l->n)
		return -1;
	l->last = cookie;
	l->n++;
	return 0;
}

Test(idx, readdir_100k)
{
	enum { N = 100000 };
	struct idx *ix = open_mem();
	struct big_listing l = { 0 };
	double t0, t1, t2, t3;
	char name[32];

	mkroot(ix);
	t0 = now_s();
	cr_assert_eq(idx_begin(ix), 0);
	l.first_ino = new_inode(ix, S_IFREG | 0644);
	for (int i = 1; i < N; i++)
		new_inode(ix, S_IFREG | 0644);
	cr_assert_eq(idx_commit(ix), 0);
	t1 = now_s();
	cr_assert_eq(idx_begin(ix), 0);
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "file-%08d", i);
		cr_assert_eq(idx_dirent_insert(ix, IDX_ROOT_INO, name, l.first_ino + i), 0);
	}
	cr_assert_eq(idx_commit(ix), 0);
	t2 = now_s();
	cr_assert_eq(idx_readdir(ix, IDX_ROOT_INO, 0, big_cb, &l), 0);
	t3 = now_s();
	cr_assert_eq(l.n, N);
	fprintf(stderr,
		"idx: %d inode creates %.3f s (%.0f/s), %d dirent inserts %.3f s (%.0f/s),"
		" readdir of %d entries %.3f s\n",
		N, t1 - t0, N / (t1 - t0), N, t2 - t1, N / (t2 - t1), N, t3 - t2);
	cr_assert_lt(t3 - t2, SLOW_SECONDS);
	idx_close(ix);
}

/* ---- extents and segments ---- */

static struct idx_extent mk_extent(uint64_t blk, uint64_t seg, uint32_t len)
{
	struct idx_extent e = {
		.blk = blk,
		.seg = seg,
		.off = (uint32_t)(blk * 3),
		.len = len,
		.plen = 65536,
		.frame = (uint32_t)blk + 1,
	};
	return e;
}

static uint64_t live_of(struct idx *ix, uint64_t seg)
{
	uint64_t size, live;

	cr_assert_eq(idx_segment_get(ix, seg, &size, &live), 0);
	return live;
}

struct ext_list {
	size_t n, stop_after;
	uint64_t blk[16];
};

static int ext_cb(void *arg, const struct idx_extent *e)
{
	struct ext_list *l = arg;

	l->blk[l->n++] = e->blk;
	return l->stop_after && l->n == l->stop_after ? 9 : 0;
}

Test(idx, extents)
{
	struct idx *ix = open_mem();
	struct idx_extent e = mk_extent(5, 10, 1000), out;
	struct ext_list l = { 0 };
	uint64_t ino, size, live;

	mkroot(ix);
	ino = new_inode(ix, S_IFREG);
	cr_assert_eq(idx_segment_create(ix, 10), 0);
	cr_assert_eq(idx_segment_create(ix, 10), -EEXIST);
	cr_assert_eq(idx_segment_create(ix, 11), 0);

	/* Into a segment that does not exist: refused, nothing changed. */
	cr_assert_eq(idx_extent_set(ix, ino, &(struct idx_extent){ .blk = 1, .seg = 99 }), -ENOENT);
	cr_assert_eq(idx_extent_get(ix, ino, 1, &out), -ENOENT);

	cr_assert_eq(idx_extent_set(ix, ino, &e), 0);
	cr_assert_eq(idx_extent_get(ix, ino, 5, &out), 0);
	cr_assert_eq(memcmp(&e, &out, sizeof(e)), 0);
	cr_assert_eq(idx_extent_get(ix, ino, 4, &out), -ENOENT);
	cr_assert_eq(live_of(ix, 10), 1000);

	/* Replace within the segment, then move to another segment. */
	e.len = 700;
	cr_assert_eq(idx_extent_set(ix, ino, &e), 0);
	cr_assert_eq(live_of(ix, 10), 700);
	e = mk_extent(5, 11, 300);
	cr_assert_eq(idx_extent_set(ix, ino, &e), 0);
	cr_assert_eq(live_of(ix, 10), 0);
	cr_assert_eq(live_of(ix, 11), 300);
	cr_assert_eq(idx_extent_get(ix, ino, 5, &out), 0);
	cr_assert_eq(memcmp(&e, &out, sizeof(e)), 0);

	for (uint64_t b = 6; b < 12; b++)
		cr_assert_eq(
			idx_extent_set(ix, ino,
				       &(struct idx_extent){ .blk = b * 2, .seg = 10, .len = 10 }),
			0);
	cr_assert_eq(live_of(ix, 10), 60);
	cr_assert_eq(idx_extent_next(ix, ino, 0, &out), 0);
	cr_assert_eq(out.blk, 5);
	cr_assert_eq(idx_extent_next(ix, ino, 6, &out), 0);
	cr_assert_eq(out.blk, 12);
	cr_assert_eq(idx_extent_next(ix, ino, 13, &out), 0);
	cr_assert_eq(out.blk, 14);
	cr_assert_eq(idx_extent_next(ix, ino, 23, &out), -ENOENT);
	cr_assert_eq(idx_extent_next(ix, ino + 1, 0, &out), -ENOENT);

	cr_assert_eq(idx_extent_range(ix, ino, 5, 16, ext_cb, &l), 0);
	cr_assert_eq(l.n, 3);
	cr_assert_eq(l.blk[0], 5);
	cr_assert_eq(l.blk[1], 12);
	cr_assert_eq(l.blk[2], 14);
	l = (struct ext_list){ .stop_after = 2 };
	cr_assert_eq(idx_extent_range(ix, ino, 0, UINT64_MAX, ext_cb, &l), 9);
	cr_assert_eq(l.n, 2);

	/* Delete [12, 20): 12, 14, 16, 18 go; 5, 20, 22 stay. */
	cr_assert_eq(idx_extent_delete_range(ix, ino, 12, 20), 0);
	cr_assert_eq(live_of(ix, 10), 20);
	cr_assert_eq(live_of(ix, 11), 300);
	l = (struct ext_list){ 0 };
	cr_assert_eq(idx_extent_range(ix, ino, 0, UINT64_MAX, ext_cb, &l), 0);
	cr_assert_eq(l.n, 3);
	cr_assert_eq(l.blk[1], 20);
	cr_assert_eq(idx_live_bytes(ix, &live), 0);
	cr_assert_eq(live, 320);

	cr_assert_eq(idx_segment_seal(ix, 11, 4096, 3), 0);
	cr_assert_eq(idx_segment_get(ix, 11, &size, &live), 0);
	cr_assert_eq(size, 4096);
	cr_assert_eq(live, 300);
	cr_assert_eq(idx_segment_seal(ix, 12, 1, 1), -ENOENT);

	cr_assert_eq(idx_inode_delete(ix, ino), 0);
	cr_assert_eq(idx_extent_next(ix, ino, 0, &out), -ENOENT);
	cr_assert_eq(idx_live_bytes(ix, &live), 0);
	cr_assert_eq(live, 0);
	cr_assert_eq(idx_segment_delete(ix, 10), 0);
	cr_assert_eq(idx_segment_delete(ix, 10), -ENOENT);
	cr_assert_eq(idx_segment_get(ix, 10, &size, &live), -ENOENT);
	idx_close(ix);
}

struct seg_list {
	uint64_t n, live;
};

static int seg_cb(void *arg, uint64_t seg, uint64_t size, uint64_t live)
{
	struct seg_list *l = arg;

	l->n++;
	l->live += live;
	return 0;
}

/* Random sets, range deletes and inode deletes against a model of the map;
 * the live counts are then checked against the model and against SUM(). */
Test(idx, extents_random_live_invariant)
{
	enum { INOS = 4, BLKS = 64, SEGS = 6, OPS = 4000 };
	static struct {
		uint64_t seg;
		uint32_t len;
	} model[INOS][BLKS];
	struct idx *ix = open_mem();
	uint64_t ino0, want[SEGS + 1] = { 0 }, total = 0, live;
	struct seg_list sl = { 0 };
	unsigned int seed = 12345;

	mkroot(ix);
	for (int i = 0; i < INOS; i++)
		new_inode(ix, S_IFREG);
	ino0 = 2;
	for (uint64_t s = 1; s <= SEGS; s++)
		cr_assert_eq(idx_segment_create(ix, s), 0);
	cr_assert_eq(idx_begin(ix), 0);
	for (int op = 0; op < OPS; op++) {
		int kind = rand_r(&seed) % 100, i = rand_r(&seed) % INOS;

		if (kind < 80) {
			struct idx_extent e = mk_extent((uint64_t)(rand_r(&seed) % BLKS),
							(uint64_t)(rand_r(&seed) % SEGS + 1),
							(uint32_t)(rand_r(&seed) % 65536 + 1));

			cr_assert_eq(idx_extent_set(ix, ino0 + i, &e), 0);
			model[i][e.blk].seg = e.seg;
			model[i][e.blk].len = e.len;
		} else if (kind < 98) {
			uint64_t first = (uint64_t)(rand_r(&seed) % BLKS);
			uint64_t last = first + (uint64_t)(rand_r(&seed) % 16);

			cr_assert_eq(idx_extent_delete_range(ix, ino0 + i, first, last), 0);
			for (uint64_t b = first; b < last && b < BLKS; b++)
				model[i][b].seg = 0;
		} else {
			struct idx_inode in = mk_inode(S_IFREG, 1);

			cr_assert_eq(idx_inode_delete(ix, ino0 + i), 0);
			in.ino = ino0 + i;
			cr_assert_eq(idx_inode_insert(ix, &in), 0);
			memset(model[i], 0, sizeof(model[i]));
		}
	}
	cr_assert_eq(idx_commit(ix), 0);

	for (int i = 0; i < INOS; i++) {
		for (uint64_t b = 0; b < BLKS; b++) {
			struct idx_extent out;
			int r = idx_extent_get(ix, ino0 + i, b, &out);

			if (!model[i][b].seg) {
				cr_assert_eq(r, -ENOENT);
				continue;
			}
			cr_assert_eq(r, 0);
			cr_assert_eq(out.seg, model[i][b].seg);
			cr_assert_eq(out.len, model[i][b].len);
			want[out.seg] += out.len;
			total += out.len;
		}
	}
	for (uint64_t s = 1; s <= SEGS; s++)
		cr_assert_eq(live_of(ix, s), want[s], "segment %llu", (unsigned long long)s);
	cr_assert_eq(idx_live_bytes(ix, &live), 0);
	cr_assert_eq(live, total);
	cr_assert_eq(idx_segment_list(ix, seg_cb, &sl), 0);
	cr_assert_eq(sl.n, SEGS);
	cr_assert_eq(sl.live, total);
	cr_assert_eq(
		snap_int(ix,
			 "SELECT count(*) FROM segment AS s WHERE live !="
			 " (SELECT coalesce(sum(len), 0) FROM extent AS e WHERE e.seg = s.seg)"),
		0);
	idx_close(ix);
}

/* Deleting a huge sparse file and a file with many extents stays cheap. */
Test(idx, extents_delete_speed)
{
	enum { BLK = 65536, MANY = 16384 };
	struct idx *ix = open_mem();
	uint64_t sparse, dense, live;
	double t0, t1, t2;

	mkroot(ix);
	sparse = new_inode(ix, S_IFREG);
	dense = new_inode(ix, S_IFREG);
	for (uint64_t s = 1; s <= 64; s++)
		cr_assert_eq(idx_segment_create(ix, s), 0);
	cr_assert_eq(idx_begin(ix), 0);
	for (uint64_t b = 0; b < 8; b++)
		cr_assert_eq(
			idx_extent_set(ix, sparse,
				       &(struct idx_extent){ .blk = b * ((1ULL << 40) / BLK / 8),
							     .seg = 1,
							     .len = 100 }),
			0);
	for (uint64_t b = 0; b < MANY; b++)
		cr_assert_eq(idx_extent_set(ix, dense,
					    &(struct idx_extent){
						    .blk = b, .seg = b % 64 + 1, .len = 1000 }),
			     0);
	cr_assert_eq(idx_commit(ix), 0);

	t0 = now_s();
	cr_assert_eq(idx_extent_delete_range(ix, sparse, 0, (1ULL << 40) / BLK), 0);
	t1 = now_s();
	cr_assert_eq(idx_inode_delete(ix, dense), 0);
	t2 = now_s();
	cr_assert_eq(idx_live_bytes(ix, &live), 0);
	cr_assert_eq(live, 0);
	fprintf(stderr, "idx: delete 1 TiB sparse file %.6f s, delete %d-extent file %.3f s\n",
		t1 - t0, MANY, t2 - t1);
	cr_assert_lt(t1 - t0, 1.0);
	cr_assert_lt(t2 - t1, SLOW_SECONDS / 4);
	idx_close(ix);
}

/* ---- extended attributes ---- */

struct name_list {
	size_t n;
	char names[4][16];
};

static int name_cb(void *arg, const char *name)
{
	struct name_list *l = arg;

	snprintf(l->names[l->n++], sizeof(l->names[0]), "%s", name);
	return 0;
}

Test(idx, xattrs)
{
	static const char bin[] = { 'a', 0, 'b', 0, (char)0xff };
	struct idx *ix = open_mem();
	struct name_list l = { 0 };
	uint64_t ino;
	void *v;
	size_t len;

	mkroot(ix);
	ino = new_inode(ix, S_IFREG);
	cr_assert_eq(idx_xattr_get(ix, ino, "user.a", &v, &len), -ENODATA);
	cr_assert_eq(idx_xattr_set(ix, ino, "user.a", "x", 1, XATTR_REPLACE), -ENODATA);
	cr_assert_eq(idx_xattr_set(ix, ino, "user.a", bin, sizeof(bin), XATTR_CREATE), 0);
	cr_assert_eq(idx_xattr_set(ix, ino, "user.a", "x", 1, XATTR_CREATE), -EEXIST);
	cr_assert_eq(idx_xattr_get(ix, ino, "user.a", &v, &len), 0);
	cr_assert_eq(len, sizeof(bin));
	cr_assert_eq(memcmp(v, bin, len), 0);
	free(v);
	cr_assert_eq(idx_xattr_set(ix, ino, "user.a", "yz", 2, XATTR_REPLACE), 0);
	cr_assert_eq(idx_xattr_get(ix, ino, "user.a", &v, &len), 0);
	cr_assert_eq(len, 2);
	cr_assert_eq(memcmp(v, "yz", 2), 0);
	free(v);
	/* No flag: create or replace; an empty value is a value. */
	cr_assert_eq(idx_xattr_set(ix, ino, "user.b", NULL, 0, 0), 0);
	cr_assert_eq(idx_xattr_get(ix, ino, "user.b", &v, &len), 0);
	cr_assert_eq(len, 0);
	free(v);
	cr_assert_eq(idx_xattr_set(ix, ino, "user.b", "q", 1, 0), 0);
	cr_assert_eq(idx_xattr_set(ix, ino, "trusted.c", "q", 1, 0), 0);
	cr_assert_eq(idx_xattr_list(ix, ino, name_cb, &l), 0);
	cr_assert_eq(l.n, 3);
	cr_assert_str_eq(l.names[0], "trusted.c");
	cr_assert_str_eq(l.names[1], "user.a");
	cr_assert_str_eq(l.names[2], "user.b");
	cr_assert_eq(idx_xattr_name_used(ix, "user.a"), 1);
	cr_assert_eq(idx_xattr_name_used(ix, "user"), 0, "a prefix is no name");
	cr_assert_eq(idx_xattr_remove(ix, ino, "user.a"), 0);
	cr_assert_eq(idx_xattr_remove(ix, ino, "user.a"), -ENODATA);
	cr_assert_eq(idx_xattr_name_used(ix, "user.a"), 0);
	cr_assert_eq(idx_xattr_name_used(ix, "user.b"), 1);
	cr_assert_eq(idx_inode_delete(ix, ino), 0);
	cr_assert_eq(idx_xattr_get(ix, ino, "user.b", &v, &len), -ENODATA);
	cr_assert_eq(idx_xattr_name_used(ix, "user.b"), 0, "gone with its inode");
	idx_close(ix);
}

/* ---- durability hooks ---- */

/* A mix of every kind of change on every replicated table. */
static void churn(struct idx *ix, int round)
{
	char name[32];
	uint64_t a, b;

	cr_assert_eq(idx_begin(ix), 0);
	a = new_inode(ix, S_IFREG | 0644);
	b = new_inode(ix, S_IFLNK | 0777);
	snprintf(name, sizeof(name), "f%d", round);
	cr_assert_eq(idx_dirent_insert(ix, IDX_ROOT_INO, name, a), 0);
	snprintf(name, sizeof(name), "l%d\xfe", round);
	cr_assert_eq(idx_dirent_insert(ix, IDX_ROOT_INO, name, b), 0);
	cr_assert_eq(idx_symlink_set(ix, b, "target"), 0);
	cr_assert_eq(idx_segment_create(ix, 100 + round), 0);
	for (uint64_t blk = 0; blk < 4; blk++)
		cr_assert_eq(idx_extent_set(ix, a,
					    &(struct idx_extent){ .blk = blk,
								  .seg = 100 + round,
								  .len = 10,
								  .frame = 1 }),
			     0);
	cr_assert_eq(idx_xattr_set(ix, a, "user.r", &round, sizeof(round), 0), 0);
	cr_assert_eq(idx_super_set(ix, "epoch", round), 0);
	cr_assert_eq(idx_commit(ix), 0);
	if (round == 0)
		return;
	/* Touch the previous round: rename over, overwrite, truncate, unlink. */
	cr_assert_eq(idx_begin(ix), 0);
	snprintf(name, sizeof(name), "f%d", round - 1);
	cr_assert_eq(idx_dirent_delete(ix, IDX_ROOT_INO, name), 0);
	cr_assert_eq(idx_dirent_insert(ix, IDX_ROOT_INO, name, a), 0);
	cr_assert_eq(
		idx_extent_set(ix, a - 2,
			       &(struct idx_extent){ .blk = 1, .seg = 100 + round, .len = 99 }),
		0);
	cr_assert_eq(idx_extent_delete_range(ix, a - 2, 2, UINT64_MAX), 0);
	snprintf(name, sizeof(name), "l%d\xfe", round - 1);
	cr_assert_eq(idx_dirent_retarget(ix, IDX_ROOT_INO, name, a), 0);
	cr_assert_eq(idx_inode_delete(ix, b - 2), 0);
	cr_assert_eq(idx_xattr_remove(ix, a - 2, "user.r"), 0);
	cr_assert_eq(idx_commit(ix), 0);
}

static int max_cookie(void *arg, const char *name, const struct idx_inode *child, uint64_t cookie)
{
	*(uint64_t *)arg = cookie;
	return 0;
}

static uint64_t last_cookie(struct idx *ix)
{
	uint64_t c = 0;

	cr_assert_eq(idx_readdir(ix, IDX_ROOT_INO, 0, max_cookie, &c), 0);
	return c;
}

Test(idx, changeset_replays_onto_image)
{
	struct idx *a = open_mem(), *b;
	void *img, *cs[4];
	size_t img_len, len[4];
	char *da, *db;
	char dir[] = "/tmp/test_idx.XXXXXX", path[64];

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/b.db", dir);
	mkroot(a);
	churn(a, 0);
	cr_assert_gt(take_len(a), 0);
	cr_assert_eq(idx_serialize(a, &img, &img_len), 0);

	for (int i = 0; i < 3; i++) {
		churn(a, 1 + 2 * i);
		churn(a, 2 + 2 * i);
		take(a, &cs[i], &len[i]);
		cr_assert_gt(len[i], 0);
	}
	/* The entry with the largest cookie is inserted then deleted between
	 * takes: the replica must still never hand that cookie out again. */
	cr_assert_eq(idx_dirent_insert(a, IDX_ROOT_INO, "tmp", IDX_ROOT_INO), 0);
	cr_assert_eq(idx_dirent_delete(a, IDX_ROOT_INO, "tmp"), 0);
	take(a, &cs[3], &len[3]);
	cr_assert_eq(len[3], 0);
	cr_assert_eq(idx_dirent_insert(a, IDX_ROOT_INO, "big", IDX_ROOT_INO), 0);
	cr_assert_eq(idx_dirent_delete(a, IDX_ROOT_INO, "big"), 0);
	take(a, &cs[3], &len[3]);
	cr_assert_eq(len[3], 0);

	b = idx_open_image(path, img, img_len);
	cr_assert_not_null(b, "idx_open_image: %s", strerror(errno));
	for (int i = 0; i < 3; i++)
		cr_assert_eq(idx_changeset_apply(b, cs[i], len[i]), 0);
	/* What recovery applies is already durable: it is not recorded again. */
	cr_assert_eq(take_len(b), 0);
	da = dump(a);
	db = dump(b);
	cr_assert_str_eq(da, db);
	free(db);

	/* Applying the last changeset again does not fit: nothing changes. */
	cr_assert_eq(idx_changeset_apply(b, cs[2], len[2]), -EUCLEAN);
	db = dump(b);
	cr_assert_str_eq(da, db);
	free(db);
	free(da);

	/* New cookies on the replica are above every cookie it has seen. */
	cr_assert_eq(idx_dirent_insert(b, IDX_ROOT_INO, "after", IDX_ROOT_INO), 0);
	cr_assert_eq(idx_dirent_insert(a, IDX_ROOT_INO, "after", IDX_ROOT_INO), 0);
	cr_assert_eq(snap_int(b, "SELECT count(*) FROM dirent WHERE id >"
				 " (SELECT id FROM dirent WHERE name = CAST('after' AS BLOB))"),
		     0);

	for (int i = 0; i < 3; i++)
		free(cs[i]);
	free(img);
	idx_close(a);
	idx_close(b);
	rm_tree(dir);
}

Test(idx, changeset_autoincrement_after_apply)
{
	struct idx *a = open_mem(), *b = open_mem();
	void *cs;
	size_t len;

	mkroot(a);
	mkroot(b);
	take(a, &cs, &len);
	cr_assert_eq(idx_changeset_apply(b, cs, len), -EUCLEAN); /* root exists in b */
	free(cs);
	idx_close(b);
	b = open_mem();
	mkroot(b); /* the same root as a's, made independently */

	cr_assert_eq(idx_dirent_insert(a, IDX_ROOT_INO, "x", IDX_ROOT_INO), 0); /* id 1 */
	cr_assert_eq(idx_dirent_insert(a, IDX_ROOT_INO, "y", IDX_ROOT_INO), 0); /* id 2 */
	cr_assert_eq(idx_dirent_insert(a, IDX_ROOT_INO, "z", IDX_ROOT_INO), 0); /* id 3 */
	take(a, &cs, &len);
	cr_assert_eq(idx_changeset_apply(b, cs, len), 0);
	free(cs);
	cr_assert_eq(idx_dirent_delete(a, IDX_ROOT_INO, "z"), 0);
	take(a, &cs, &len);
	cr_assert_eq(idx_changeset_apply(b, cs, len), 0);
	free(cs);
	/* z's cookie 3 is gone from both, but neither may reuse it. */
	cr_assert_eq(idx_dirent_insert(a, IDX_ROOT_INO, "w", IDX_ROOT_INO), 0);
	cr_assert_eq(idx_dirent_insert(b, IDX_ROOT_INO, "w", IDX_ROOT_INO), 0);
	cr_assert_eq(last_cookie(a), 4);
	cr_assert_eq(last_cookie(b), 4);
	idx_close(a);
	idx_close(b);
}

Test(idx, changeset_misfit_changes_nothing)
{
	struct idx *a = open_mem(), *b = open_mem();
	struct idx_inode in = mk_inode(S_IFREG, 1);
	void *cs;
	size_t len;
	char *before, *after;

	mkroot(a);
	mkroot(b);
	cr_assert_eq(take_len(a), take_len(b));
	/* a: a new inode and a change to the root; b: a different root. */
	cr_assert_eq(idx_inode_create(a, &in), 0);
	in = mk_inode(S_IFDIR | 0700, 3);
	in.ino = IDX_ROOT_INO;
	cr_assert_eq(idx_inode_update(a, &in), 0);
	take(a, &cs, &len);
	in.mtime = 999;
	cr_assert_eq(idx_inode_update(b, &in), 0);
	before = dump(b);
	cr_assert_eq(idx_changeset_apply(b, cs, len), -EUCLEAN);
	after = dump(b);
	cr_assert_str_eq(before, after);
	free(before);
	free(after);
	free(cs);
	idx_close(a);
	idx_close(b);
}

Test(idx, changeset_of_other_tables_does_not_fit)
{
	struct idx *ix = open_mem();
	void *cs;
	int len;
	int64_t v;
	char *val;

	foreign_changeset("local", &cs, &len);
	cr_assert_eq(idx_changeset_apply(ix, cs, (size_t)len), -EUCLEAN);
	cr_assert_eq(idx_local_get(ix, "x", &val), -ENOENT);
	sqlite3_free(cs);
	foreign_changeset("super", &cs, &len);
	cr_assert_eq(idx_changeset_apply(ix, cs, (size_t)len), 0);
	cr_assert_eq(idx_super_get(ix, "x", &v), 0);
	cr_assert_eq(v, 1);
	sqlite3_free(cs);
	idx_close(ix);
}

Test(idx, changeset_take_rules)
{
	struct idx *ix = open_mem();
	void *cs = (void *)1, *img;
	size_t len = 1;

	take(ix, &cs, &len);
	cr_assert_null(cs);
	cr_assert_eq(len, 0);
	mkroot(ix);
	cr_assert_gt(take_len(ix), 0);
	cr_assert_eq(take_len(ix), 0);

	/* Not inside a transaction; a rolled back one leaves nothing. */
	cr_assert_eq(idx_begin(ix), 0);
	new_inode(ix, S_IFREG);
	cr_assert_eq(idx_changeset_take(ix, &cs, &len), -EBUSY);
	cr_assert_eq(idx_serialize(ix, &img, &len), -EBUSY);
	idx_rollback(ix);
	cr_assert_eq(take_len(ix), 0);

	/* Local state is not replicated. */
	cr_assert_eq(idx_local_set(ix, "k", "v"), 0);
	cr_assert_eq(take_len(ix), 0);
	cr_assert_eq(idx_super_set(ix, "k", 1), 0);
	cr_assert_gt(take_len(ix), 0);
	cr_assert_eq(idx_changeset_apply(ix, NULL, 0), 0);
	idx_close(ix);
}

static void write_junk(const char *path)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	fputs("junk", f);
	fclose(f);
}

Test(idx, image_round_trip_on_files)
{
	char dir[] = "/tmp/test_idx.XXXXXX", pa[64], pb[64], pw[80];
	unsigned char hdr[20];
	struct idx *a, *b;
	void *img;
	size_t len;
	char *da, *db;
	int fd;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(pa, sizeof(pa), "%s/a.db", dir);
	snprintf(pb, sizeof(pb), "%s/b.db", dir);
	a = idx_open(pa);
	cr_assert_not_null(a);
	mkroot(a);
	for (int i = 0; i < 5; i++)
		churn(a, i);
	cr_assert_eq(idx_serialize(a, &img, &len), 0);

	/* Stale files at the destination, a -wal above all, must not survive. */
	write_junk(pb);
	snprintf(pw, sizeof(pw), "%s-wal", pb);
	write_junk(pw);
	snprintf(pw, sizeof(pw), "%s-shm", pb);
	write_junk(pw);
	b = idx_open_image(pb, img, len);
	cr_assert_not_null(b, "idx_open_image: %s", strerror(errno));
	da = dump(a);
	db = dump(b);
	cr_assert_str_eq(da, db);
	free(db);

	/* The image's file is in WAL mode and the new index records changes. */
	fd = open(pb, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(read(fd, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
	close(fd);
	cr_assert_eq(hdr[18], 2);
	cr_assert_eq(hdr[19], 2);
	cr_assert_eq(take_len(b), 0);
	cr_assert_eq(idx_super_set(b, "epoch", 77), 0);
	cr_assert_gt(take_len(b), 0);
	idx_close(b);

	/* Reopening the file finds everything. */
	idx_close(a);
	a = idx_open(pa);
	cr_assert_not_null(a);
	db = dump(a);
	cr_assert_str_eq(da, db);
	free(db);
	free(da);
	idx_close(a);

	cr_assert_null(idx_open_image(pb, "not a database", 15));
	cr_assert_eq(errno, EINVAL);
	free(img);
	rm_tree(dir);
}

/* The clean-close seal: a sealed file is accepted once; a changed byte, a
 * missing or damaged seal, or a -wal that appeared are refused. */
Test(idx, clean_close_seal)
{
	char dir[] = "/tmp/test_idx.XXXXXX", p[64], seal[80], wal[80];
	struct idx *ix;
	int fd;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(p, sizeof(p), "%s/index.db", dir);
	snprintf(seal, sizeof(seal), "%s.seal", p);
	snprintf(wal, sizeof(wal), "%s-wal", p);
	cr_assert_eq(idx_check_seal(p), -EUCLEAN, "no seal yet");

	/* Sealed, accepted once: the check consumes the seal. */
	ix = idx_open(p);
	cr_assert_not_null(ix);
	mkroot(ix);
	churn(ix, 0);
	churn(ix, 1);
	cr_assert_eq(idx_close_sealed(ix), 0);
	cr_assert_eq(access(seal, F_OK), 0);
	cr_assert_eq(access(wal, F_OK), -1, "the WAL was folded in at close");
	cr_assert_eq(idx_check_seal(p), 0);
	cr_assert_eq(access(seal, F_OK), -1);
	cr_assert_eq(idx_check_seal(p), -EUCLEAN, "a seal is good once");

	/* One byte changed after the seal. */
	ix = idx_open(p);
	cr_assert_not_null(ix);
	cr_assert_eq(idx_close_sealed(ix), 0);
	fd = open(p, O_WRONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, "\x5a", 1, 200), 1);
	close(fd);
	cr_assert_eq(idx_check_seal(p), -EUCLEAN);

	/* A damaged seal, and a -wal beside a sealed file. */
	ix = idx_open(p);
	cr_assert_not_null(ix);
	cr_assert_eq(idx_close_sealed(ix), 0);
	fd = open(seal, O_WRONLY | O_TRUNC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "0123\n", 5), 5);
	close(fd);
	cr_assert_eq(idx_check_seal(p), -EUCLEAN);
	ix = idx_open(p);
	cr_assert_not_null(ix);
	cr_assert_eq(idx_close_sealed(ix), 0);
	write_junk(wal);
	cr_assert_eq(idx_check_seal(p), -EUCLEAN);
	rm_tree(dir);
}
