/* idx.c: the SQLite index (see idx.h).  One connection, every statement
 * prepared once at open and kept in ix->st[]; a recorder on the replicated
 * tables (changes.h) notes what the journal must make durable.
 *
 * Statements are borrowed with the STMT() macro, which resets the statement
 * and clears its bindings when the borrowing scope ends, so no path can leave
 * a statement half-stepped (and holding a read transaction open). */

#include "index/idx.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/util.h"
#include "index/changes.h"
#include "log.h"

static const char schema_sql[] =
	"CREATE TABLE IF NOT EXISTS super(k TEXT PRIMARY KEY, v INTEGER);"
	"CREATE TABLE IF NOT EXISTS local(k TEXT PRIMARY KEY, v);"
	"CREATE TABLE IF NOT EXISTS inode(ino INTEGER PRIMARY KEY, mode INTEGER, uid INTEGER,"
	" gid INTEGER, nlink INTEGER, size INTEGER, rdev INTEGER, atime INTEGER, mtime INTEGER,"
	" ctime INTEGER, btime INTEGER);"
	/* Orphans are rare; a partial index finds them at mount without a full scan. */
	"CREATE INDEX IF NOT EXISTS inode_orphan ON inode(ino) WHERE nlink = 0;"
	"CREATE TABLE IF NOT EXISTS symlink(ino INTEGER PRIMARY KEY, target BLOB);"
	"CREATE TABLE IF NOT EXISTS dirent(id INTEGER PRIMARY KEY AUTOINCREMENT, parent INTEGER,"
	" name BLOB, ino INTEGER, UNIQUE(parent, name));"
	"CREATE INDEX IF NOT EXISTS dirent_parent ON dirent(parent, id);"
	"CREATE TABLE IF NOT EXISTS extent(ino INTEGER, blk INTEGER, seg INTEGER, off INTEGER,"
	" len INTEGER, plen INTEGER, frame INTEGER, PRIMARY KEY(ino, blk)) WITHOUT ROWID;"
	/* Which files use a segment: garbage collection and fsck. */
	"CREATE INDEX IF NOT EXISTS extent_seg ON extent(seg);"
	"CREATE TABLE IF NOT EXISTS segment(seg INTEGER PRIMARY KEY, size INTEGER, live INTEGER,"
	" frames INTEGER);"
	"CREATE TABLE IF NOT EXISTS xattr(ino INTEGER, name BLOB, value BLOB,"
	" PRIMARY KEY(ino, name)) WITHOUT ROWID;";

/* Everything the journal replicates: all tables but local (and SQLite's own). */
static const char *const replicated[] = {
	"super", "inode", "symlink", "dirent", "extent", "segment", "xattr",
};

enum stmt_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_SUPER_GET,
	ST_SUPER_SET,
	ST_LOCAL_GET,
	ST_LOCAL_SET,
	ST_LOCAL_DEL,
	ST_INODE_GET,
	ST_INODE_INSERT,
	ST_INODE_UPDATE,
	ST_INODE_DELETE,
	ST_INODE_ORPHANS,
	ST_INODE_COUNT,
	ST_SYMLINK_SET,
	ST_SYMLINK_GET,
	ST_SYMLINK_DELETE,
	ST_DIRENT_LOOKUP,
	ST_DIRENT_INSERT,
	ST_DIRENT_DELETE,
	ST_DIRENT_RETARGET,
	ST_DIR_EMPTY,
	ST_READDIR,
	ST_EXTENT_GET,
	ST_EXTENT_NEXT,
	ST_EXTENT_RANGE,
	ST_EXTENT_UPSERT,
	ST_EXTENT_UNLIVE_RANGE,
	ST_EXTENT_DELETE_RANGE,
	ST_SEGMENT_CREATE,
	ST_SEGMENT_SEAL,
	ST_SEGMENT_GET,
	ST_SEGMENT_DELETE,
	ST_SEGMENT_LIST,
	ST_SEGMENT_LIVE_ADD,
	ST_LIVE_BYTES,
	ST_SEGMENT_SET_LIVE,
	ST_EXTENT_SEG_STATS,
	ST_EXTENT_INOS_OF_SEG,
	ST_DIRENT_PARENT,
	ST_CHECK_DANGLING,
	ST_CHECK_NLINK,
	ST_XATTR_GET,
	ST_XATTR_INSERT,
	ST_XATTR_REPLACE,
	ST_XATTR_UPSERT,
	ST_XATTR_DELETE,
	ST_XATTR_DELETE_INO,
	ST_XATTR_LIST,
	ST_XATTR_NAME_USED,
	ST_COUNT
};

/* How long a batch transaction may stay open across barriers. */
#define IDX_BATCH_NS (250 * 1000000ULL)

#define INODE_COLS "ino, mode, uid, gid, nlink, size, rdev, atime, mtime, ctime, btime"
#define NAME_BUF 256
#define EXTENT_COLS "blk, seg, off, len, plen, frame"

static const char *const stmt_sql[ST_COUNT] = {
	[ST_BEGIN] = "SAVEPOINT idx_op",
	[ST_COMMIT] = "RELEASE idx_op",
	[ST_ROLLBACK] = "ROLLBACK TO idx_op",
	[ST_SUPER_GET] = "SELECT v FROM super WHERE k = ?1",
	[ST_SUPER_SET] = "INSERT INTO super(k, v) VALUES(?1, ?2)"
			 " ON CONFLICT(k) DO UPDATE SET v = excluded.v",
	[ST_LOCAL_GET] = "SELECT v FROM local WHERE k = ?1",
	[ST_LOCAL_SET] = "INSERT INTO local(k, v) VALUES(?1, ?2)"
			 " ON CONFLICT(k) DO UPDATE SET v = excluded.v",
	[ST_LOCAL_DEL] = "DELETE FROM local WHERE k = ?1",
	[ST_INODE_GET] = "SELECT " INODE_COLS " FROM inode WHERE ino = ?1",
	[ST_INODE_INSERT] = "INSERT INTO inode(" INODE_COLS ")"
			    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
	[ST_INODE_UPDATE] = "UPDATE inode SET mode = ?2, uid = ?3, gid = ?4, nlink = ?5,"
			    " size = ?6, rdev = ?7, atime = ?8, mtime = ?9, ctime = ?10,"
			    " btime = ?11 WHERE ino = ?1",
	[ST_INODE_DELETE] = "DELETE FROM inode WHERE ino = ?1",
	[ST_INODE_ORPHANS] = "SELECT ino FROM inode WHERE nlink = 0",
	[ST_INODE_COUNT] = "SELECT count(*) FROM inode",
	[ST_SYMLINK_SET] = "INSERT INTO symlink(ino, target) VALUES(?1, ?2)"
			   " ON CONFLICT(ino) DO UPDATE SET target = excluded.target",
	[ST_SYMLINK_GET] = "SELECT target FROM symlink WHERE ino = ?1",
	[ST_SYMLINK_DELETE] = "DELETE FROM symlink WHERE ino = ?1",
	[ST_DIRENT_LOOKUP] = "SELECT ino FROM dirent WHERE parent = ?1 AND name = ?2",
	[ST_DIRENT_INSERT] = "INSERT INTO dirent(parent, name, ino) VALUES(?1, ?2, ?3)",
	[ST_DIRENT_DELETE] = "DELETE FROM dirent WHERE parent = ?1 AND name = ?2",
	[ST_DIRENT_RETARGET] = "UPDATE dirent SET ino = ?3 WHERE parent = ?1 AND name = ?2",
	[ST_DIR_EMPTY] = "SELECT 1 FROM dirent WHERE parent = ?1 LIMIT 1",
	[ST_READDIR] = "SELECT d.id, d.name, i.ino, i.mode, i.uid, i.gid, i.nlink, i.size,"
		       " i.rdev, i.atime, i.mtime, i.ctime, i.btime"
		       " FROM dirent AS d JOIN inode AS i ON i.ino = d.ino"
		       " WHERE d.parent = ?1 AND d.id > ?2 ORDER BY d.id",
	[ST_EXTENT_GET] = "SELECT " EXTENT_COLS " FROM extent WHERE ino = ?1 AND blk = ?2",
	[ST_EXTENT_NEXT] = "SELECT " EXTENT_COLS " FROM extent WHERE ino = ?1 AND blk >= ?2"
			   " ORDER BY blk LIMIT 1",
	[ST_EXTENT_RANGE] = "SELECT " EXTENT_COLS " FROM extent"
			    " WHERE ino = ?1 AND blk >= ?2 AND blk < ?3 ORDER BY blk",
	[ST_EXTENT_UPSERT] = "INSERT INTO extent(ino, " EXTENT_COLS ")"
			     " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(ino, blk) DO UPDATE"
			     " SET seg = excluded.seg, off = excluded.off, len = excluded.len,"
			     " plen = excluded.plen, frame = excluded.frame",
	/* One aggregate pass over the range, then one update per segment touched:
	 * linear in the extents deleted, whatever the range's size. */
	[ST_EXTENT_UNLIVE_RANGE] = "UPDATE segment SET live = live - d.n"
				   " FROM (SELECT seg, sum(len) AS n FROM extent"
				   " WHERE ino = ?1 AND blk >= ?2 AND blk < ?3 GROUP BY seg) AS d"
				   " WHERE segment.seg = d.seg",
	[ST_EXTENT_DELETE_RANGE] = "DELETE FROM extent WHERE ino = ?1 AND blk >= ?2 AND blk < ?3",
	[ST_SEGMENT_CREATE] = "INSERT INTO segment(seg, size, live, frames) VALUES(?1, 0, 0, 0)",
	[ST_SEGMENT_SEAL] = "UPDATE segment SET size = ?2, frames = ?3 WHERE seg = ?1",
	[ST_SEGMENT_GET] = "SELECT size, live FROM segment WHERE seg = ?1",
	[ST_SEGMENT_DELETE] = "DELETE FROM segment WHERE seg = ?1",
	[ST_SEGMENT_LIST] = "SELECT seg, size, live FROM segment ORDER BY seg",
	[ST_SEGMENT_LIVE_ADD] = "UPDATE segment SET live = live + ?2 WHERE seg = ?1",
	[ST_LIVE_BYTES] = "SELECT coalesce(sum(live), 0) FROM segment",
	[ST_SEGMENT_SET_LIVE] = "UPDATE segment SET live = ?2 WHERE seg = ?1",
	[ST_EXTENT_SEG_STATS] = "SELECT seg, count(*), coalesce(sum(len), 0), max(off + len)"
				" FROM extent GROUP BY seg ORDER BY seg",
	[ST_EXTENT_INOS_OF_SEG] = "SELECT ino, count(*) FROM extent WHERE seg = ?1 GROUP BY ino"
				  " ORDER BY ino",
	[ST_DIRENT_PARENT] = "SELECT parent, name FROM dirent WHERE ino = ?1 LIMIT 1",
	[ST_CHECK_DANGLING] = "SELECT d.parent, d.name, d.ino FROM dirent AS d"
			      " LEFT JOIN inode AS i ON i.ino = d.ino WHERE i.ino IS NULL",
	[ST_CHECK_NLINK] = "SELECT i.ino, i.nlink, count(d.ino) FROM inode AS i"
			   " LEFT JOIN dirent AS d ON d.ino = i.ino"
			   " WHERE (i.mode & 61440) != 16384 GROUP BY i.ino"
			   " HAVING i.nlink != count(d.ino)",
	[ST_XATTR_GET] = "SELECT value FROM xattr WHERE ino = ?1 AND name = ?2",
	[ST_XATTR_INSERT] = "INSERT INTO xattr(ino, name, value) VALUES(?1, ?2, ?3)",
	[ST_XATTR_REPLACE] = "UPDATE xattr SET value = ?3 WHERE ino = ?1 AND name = ?2",
	[ST_XATTR_UPSERT] = "INSERT INTO xattr(ino, name, value) VALUES(?1, ?2, ?3)"
			    " ON CONFLICT(ino, name) DO UPDATE SET value = excluded.value",
	[ST_XATTR_DELETE] = "DELETE FROM xattr WHERE ino = ?1 AND name = ?2",
	[ST_XATTR_DELETE_INO] = "DELETE FROM xattr WHERE ino = ?1",
	[ST_XATTR_LIST] = "SELECT name FROM xattr WHERE ino = ?1 ORDER BY name",
	[ST_XATTR_NAME_USED] = "SELECT 1 FROM xattr WHERE name = ?1 LIMIT 1",
};

struct idx {
	sqlite3 *db;
	struct chg *changes; /* what the journal's next barrier must carry */
	sqlite3_stmt *st[ST_COUNT];
	int depth; /* open idx_begin savepoints */
	int lost; /* the batch transaction was lost: every call fails (batch_lost) */
	uint64_t batch_ns; /* when the batch transaction began */
};

static void stmt_release(sqlite3_stmt **st)
{
	sqlite3_reset(*st);
	sqlite3_clear_bindings(*st);
}

/* Borrow statement id of ix as a local named var, reset when the scope ends. */
#define STMT(var, ix, id) sqlite3_stmt *var __attribute__((cleanup(stmt_release))) = (ix)->st[id]

/* Log SQLite's message for a failure once, and turn it into -EIO. */
static int db_error(struct idx *ix, const char *what)
{
	log_error("index: %s: %s", what, sqlite3_errmsg(ix->db));
	return -EIO;
}

/* SQLite rolled the whole batch transaction back after an error (a full
 * disk, an I/O error): operations that were acknowledged are gone from the
 * index, and inode numbers the kernel still holds may be handed out again.
 * Nothing may be served from that state.  The store still holds every
 * barrier, and a remount rebuilds the index from it. */
static int batch_lost(struct idx *ix, const char *what, const char *msg, int err)
{
	if (!ix->lost)
		log_error("index: %s failed (%s%s%s): %s lost the changes since its last commit; "
			  "every request now fails with EIO: free space in the cache directory, "
			  "then unmount and mount again",
			  what, msg, err ? ": " : "", err ? strerror(err) : "",
			  sqlite3_db_filename(ix->db, "main"));
	ix->lost = 1;
	return -EIO;
}

/* Step st: SQLITE_ROW or SQLITE_DONE, or -EIO (logged).  A constraint
 * violation is -EEXIST (not logged: the caller expects duplicates). */
/* Writes are batched: the first one opens a transaction that stays open
 * until idx_flush (the journal flushes at every barrier), so a filesystem
 * operation costs no commit of its own.  Durability is the journal's job,
 * and a crash makes the local database a stale cache anyway. */
static int batch(struct idx *ix)
{
	if (ix->lost)
		return -EIO;
	if (!sqlite3_get_autocommit(ix->db))
		return 0;
	if (sqlite3_exec(ix->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		log_error("index: BEGIN: %s", sqlite3_errmsg(ix->db));
		return -EIO;
	}
	ix->batch_ns = util_now_ns();
	return 0;
}

int idx_flush(struct idx *ix)
{
	if (ix->depth)
		return -EBUSY;
	if (ix->lost)
		return -EIO;
	if (sqlite3_get_autocommit(ix->db))
		return 0;
	if (sqlite3_exec(ix->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		/* Still open: the next flush tries again.  Rolled back: lost. */
		if (sqlite3_get_autocommit(ix->db))
			return batch_lost(ix, "COMMIT", sqlite3_errmsg(ix->db),
					  sqlite3_system_errno(ix->db));
		log_error("index: COMMIT: %s", sqlite3_errmsg(ix->db));
		return -EIO;
	}
	return 0;
}

static int step(struct idx *ix, sqlite3_stmt *st)
{
	if (!sqlite3_stmt_readonly(st)) {
		int b = batch(ix);
		if (b < 0)
			return b;
	}
	if (ix->lost)
		return -EIO;
	int open = !sqlite3_get_autocommit(ix->db);
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW || rc == SQLITE_DONE)
		return rc;
	if (open && sqlite3_get_autocommit(ix->db))
		return batch_lost(ix, sqlite3_sql(st), sqlite3_errmsg(ix->db),
				  sqlite3_system_errno(ix->db));
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return -EEXIST;
	log_error("index: %s: %s", sqlite3_sql(st), sqlite3_errmsg(ix->db));
	return -EIO;
}

/* Run a statement that returns no rows. */
static int exec_done(struct idx *ix, sqlite3_stmt *st)
{
	int r = step(ix, st);

	return r < 0 ? r : 0;
}

/* Run an UPDATE or DELETE that must touch a row; enoent when it touched none. */
static int exec_one(struct idx *ix, sqlite3_stmt *st, int enoent)
{
	int r = exec_done(ix, st);

	if (r < 0)
		return r;
	return sqlite3_changes(ix->db) ? 0 : enoent;
}

/* SQLite integers are signed; block numbers like UINT64_MAX mean "to the end". */
static void bind_u64(sqlite3_stmt *st, int i, uint64_t v)
{
	sqlite3_bind_int64(st, i, v > INT64_MAX ? INT64_MAX : (int64_t)v);
}

static void bind_name(sqlite3_stmt *st, int i, const char *name)
{
	sqlite3_bind_blob(st, i, name, (int)strlen(name), SQLITE_STATIC);
}

/* A copy of column i (BLOB or TEXT) as a NUL-terminated string. */
static int column_strdup(sqlite3_stmt *st, int i, char **out)
{
	const void *p = sqlite3_column_blob(st, i);
	size_t n = (size_t)sqlite3_column_bytes(st, i);
	char *s = malloc(n + 1);

	if (!s)
		return -ENOMEM;
	if (n)
		memcpy(s, p, n);
	s[n] = '\0';
	*out = s;
	return 0;
}

static void bind_inode(sqlite3_stmt *st, const struct idx_inode *in)
{
	bind_u64(st, 1, in->ino);
	sqlite3_bind_int64(st, 2, in->mode);
	sqlite3_bind_int64(st, 3, in->uid);
	sqlite3_bind_int64(st, 4, in->gid);
	sqlite3_bind_int64(st, 5, in->nlink);
	bind_u64(st, 6, in->size);
	bind_u64(st, 7, in->rdev);
	sqlite3_bind_int64(st, 8, in->atime);
	sqlite3_bind_int64(st, 9, in->mtime);
	sqlite3_bind_int64(st, 10, in->ctime);
	sqlite3_bind_int64(st, 11, in->btime);
}

/* Columns first..first+10 in INODE_COLS order. */
static void column_inode(sqlite3_stmt *st, int first, struct idx_inode *out)
{
	out->ino = (uint64_t)sqlite3_column_int64(st, first);
	out->mode = (uint32_t)sqlite3_column_int64(st, first + 1);
	out->uid = (uint32_t)sqlite3_column_int64(st, first + 2);
	out->gid = (uint32_t)sqlite3_column_int64(st, first + 3);
	out->nlink = (uint32_t)sqlite3_column_int64(st, first + 4);
	out->size = (uint64_t)sqlite3_column_int64(st, first + 5);
	out->rdev = (uint64_t)sqlite3_column_int64(st, first + 6);
	out->atime = sqlite3_column_int64(st, first + 7);
	out->mtime = sqlite3_column_int64(st, first + 8);
	out->ctime = sqlite3_column_int64(st, first + 9);
	out->btime = sqlite3_column_int64(st, first + 10);
}

/* Columns in EXTENT_COLS order. */
static void column_extent(sqlite3_stmt *st, struct idx_extent *out)
{
	out->blk = (uint64_t)sqlite3_column_int64(st, 0);
	out->seg = (uint64_t)sqlite3_column_int64(st, 1);
	out->off = (uint32_t)sqlite3_column_int64(st, 2);
	out->len = (uint32_t)sqlite3_column_int64(st, 3);
	out->plen = (uint32_t)sqlite3_column_int64(st, 4);
	out->frame = (uint32_t)sqlite3_column_int64(st, 5);
}

/* ---- open and close ---- */

static int journal_mode_cb(void *arg, int ncol, char **val, char **col)
{
	int *wal = arg;

	*wal = ncol == 1 && val[0] && (strcmp(val[0], "wal") == 0 || strcmp(val[0], "memory") == 0);
	return 0;
}

static int configure(struct idx *ix)
{
	int wal = 0;

	/* One daemon owns the database (it holds the cache directory's lock):
	 * exclusive locking spares a pair of fcntl locks per statement and keeps
	 * the WAL index in memory.  The journal, not SQLite, makes the index
	 * durable: no fsyncs here. */
	if (sqlite3_exec(ix->db, "PRAGMA locking_mode = EXCLUSIVE", NULL, NULL, NULL) != SQLITE_OK)
		return db_error(ix, "locking_mode");
	if (sqlite3_exec(ix->db, "PRAGMA journal_mode = WAL", journal_mode_cb, &wal, NULL) !=
	    SQLITE_OK)
		return db_error(ix, "journal_mode");
	if (!wal) {
		log_error("index: cannot switch the database to WAL mode");
		return -EIO;
	}
	if (sqlite3_exec(ix->db,
			 "PRAGMA synchronous = OFF; PRAGMA temp_store = MEMORY;"
			 "PRAGMA cache_size = -65536; PRAGMA foreign_keys = OFF;",
			 NULL, NULL, NULL) != SQLITE_OK)
		return db_error(ix, "pragmas");
	if (sqlite3_exec(ix->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return db_error(ix, "schema");
	if (sqlite3_exec(ix->db, schema_sql, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(ix->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		int r = db_error(ix, "schema");

		sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
		return r;
	}
	return 0;
}

static int prepare_all(struct idx *ix)
{
	for (int i = 0; i < ST_COUNT; i++) {
		if (sqlite3_prepare_v3(ix->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &ix->st[i], NULL) != SQLITE_OK) {
			log_error("index: prepare %s: %s", stmt_sql[i], sqlite3_errmsg(ix->db));
			return -EIO;
		}
	}
	return 0;
}

struct idx *idx_open(const char *path)
{
	struct idx *ix = calloc(1, sizeof(*ix));
	int r;

	if (!ix)
		return NULL;
	/* The caller serialises every call, so SQLite's own mutexes are waste. */
	if (sqlite3_open_v2(path, &ix->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		r = ix->db ? db_error(ix, path) : -ENOMEM;
		goto err_close;
	}
	r = configure(ix);
	if (r == 0)
		r = prepare_all(ix);
	if (r == 0) {
		ix->changes = chg_new(ix->db, replicated, ARRAY_SIZE(replicated));
		r = ix->changes ? 0 : -errno;
	}
	if (r == 0)
		return ix;
err_close:
	idx_close(ix);
	errno = -r;
	return NULL;
}

/* Commit and close; 0 only if everything was committed and the WAL was
 * folded into the database file (SQLite does that at the last close). */
static int close_db(struct idx *ix)
{
	int r = idx_flush(ix);

	chg_free(ix->changes);
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(ix->st[i]);
	if (sqlite3_close(ix->db) != SQLITE_OK && r == 0) {
		log_error("index: close: %s", sqlite3_errmsg(ix->db));
		r = -EIO;
	}
	free(ix);
	return r;
}

void idx_close(struct idx *ix)
{
	if (ix)
		close_db(ix);
}

static int write_file_synced(const char *path, const void *data, size_t len)
{
	CLEANUP_CLOSE int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	const char *p = data;

	if (fd < 0)
		return -errno;
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return fsync(fd) < 0 ? -errno : 0;
}

/* Remove path and the WAL files that belong to it: a stale -wal would be
 * replayed over the new image. */
static int remove_db_files(const char *path)
{
	static const char *const suffix[] = { "", "-wal", "-shm" };
	char name[PATH_MAX];

	for (size_t i = 0; i < ARRAY_SIZE(suffix); i++) {
		if ((size_t)snprintf(name, sizeof(name), "%s%s", path, suffix[i]) >= sizeof(name))
			return -ENAMETOOLONG;
		if (unlink(name) < 0 && errno != ENOENT)
			return -errno;
	}
	return 0;
}

struct idx *idx_open_image(const char *path, const void *image, size_t len)
{
	static const char magic[16] = "SQLite format 3";
	char tmp[PATH_MAX];
	int r;

	if (len < 100 || memcmp(image, magic, sizeof(magic)) != 0) {
		log_error("index: %s: checkpoint image is not a SQLite database", path);
		errno = EINVAL;
		return NULL;
	}
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	r = remove_db_files(path);
	if (r == 0)
		r = write_file_synced(tmp, image, len);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		log_error("index: writing the image to %s: %s", path, strerror(-r));
		unlink(tmp);
		errno = -r;
		return NULL;
	}
	return idx_open(path);
}

/* ---- the clean-close seal ---- */

/* BLAKE2b of the whole file at fd, which is also synced to disk. */
static int file_digest(int fd, unsigned char out[IDX_SEAL_BYTES])
{
	crypto_generichash_state h;
	unsigned char buf[65536];
	ssize_t n;

	crypto_generichash_init(&h, NULL, 0, IDX_SEAL_BYTES);
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		crypto_generichash_update(&h, buf, (size_t)n);
	}
	crypto_generichash_final(&h, out, IDX_SEAL_BYTES);
	return fsync(fd) < 0 ? -errno : 0;
}

static int seal_path(char *out, size_t n, const char *path, const char *suffix)
{
	return (size_t)snprintf(out, n, "%s%s", path, suffix) >= n ? -ENAMETOOLONG : 0;
}

int idx_close_sealed(struct idx *ix)
{
	char path[PATH_MAX], seal[PATH_MAX];
	unsigned char sum[IDX_SEAL_BYTES];
	char hex[2 * IDX_SEAL_BYTES + 2];
	const char *name = sqlite3_db_filename(ix->db, "main");
	int r;

	r = seal_path(path, sizeof(path), name ? name : "", "");
	if (r == 0 && !path[0])
		r = -EINVAL;
	if (r == 0)
		r = seal_path(seal, sizeof(seal), path, ".seal");
	if (r < 0) {
		idx_close(ix);
		return r;
	}
	r = close_db(ix);
	if (r < 0)
		return r;
	CLEANUP_CLOSE int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		r = -errno;
	if (r == 0)
		r = file_digest(fd, sum);
	if (r == 0) {
		sodium_bin2hex(hex, sizeof(hex) - 1, sum, sizeof(sum));
		strcat(hex, "\n");
		r = write_file_synced(seal, hex, strlen(hex));
	}
	if (r < 0)
		log_error("index: cannot seal %s after its clean close: %s", path, strerror(-r));
	return r;
}

int idx_check_seal(const char *path)
{
	char seal[PATH_MAX], wal[PATH_MAX], want[2 * IDX_SEAL_BYTES + 2] = "";
	unsigned char sum[IDX_SEAL_BYTES];
	char have[2 * IDX_SEAL_BYTES + 1];
	struct stat sb;
	ssize_t n = -1;
	int r;

	r = seal_path(seal, sizeof(seal), path, ".seal");
	if (r == 0)
		r = seal_path(wal, sizeof(wal), path, "-wal");
	if (r < 0)
		return r;
	{
		CLEANUP_CLOSE int fd = open(seal, O_RDONLY | O_CLOEXEC);
		if (fd >= 0)
			n = read(fd, want, sizeof(want) - 1);
	}
	/* A seal vouches for one state of the file: once the database is
	 * opened again it no longer does. */
	if (unlink(seal) < 0 && errno != ENOENT) {
		r = -errno;
		log_error("index: cannot remove %s: %s", seal, strerror(-r));
		return r;
	}
	if (n != 2 * IDX_SEAL_BYTES + 1 || want[n - 1] != '\n') {
		log_info("index: %s was not closed cleanly (no valid %s)", path, seal);
		return -EUCLEAN;
	}
	want[n - 1] = '\0';
	if (stat(wal, &sb) == 0 && sb.st_size > 0) {
		log_warn("index: %s has a write-ahead log (%s) it did not have when it was "
			 "closed cleanly",
			 path, wal);
		return -EUCLEAN;
	}
	CLEANUP_CLOSE int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		log_warn("index: cannot open %s: %s", path, strerror(-r));
		return r;
	}
	r = file_digest(fd, sum);
	if (r < 0) {
		log_warn("index: cannot read %s: %s", path, strerror(-r));
		return r;
	}
	sodium_bin2hex(have, sizeof(have), sum, sizeof(sum));
	if (strcmp(have, want) != 0) {
		log_warn("index: %s is damaged: it does not match the checksum written at its "
			 "clean close",
			 path);
		return -EUCLEAN;
	}
	return 0;
}

/* ---- transactions ---- */

/* An operation is a savepoint inside the batch transaction. */
int idx_begin(struct idx *ix)
{
	int r = batch(ix);
	if (r < 0)
		return r;
	STMT(st, ix, ST_BEGIN);
	r = exec_done(ix, st);
	if (r == 0)
		ix->depth++;
	return r;
}

int idx_commit(struct idx *ix)
{
	STMT(st, ix, ST_COMMIT);
	int r = exec_done(ix, st);
	if (r == 0)
		ix->depth--;
	return r;
}

void idx_rollback(struct idx *ix)
{
	STMT(st, ix, ST_ROLLBACK);

	ix->depth--;
	/* SQLite may already have rolled back the whole batch after an error. */
	if (!sqlite3_get_autocommit(ix->db)) {
		exec_done(ix, st);
		sqlite3_exec(ix->db, "RELEASE idx_op", NULL, NULL, NULL);
	}
}

/* ---- counters ---- */

int idx_super_get(struct idx *ix, const char *k, int64_t *v)
{
	STMT(st, ix, ST_SUPER_GET);
	int r;

	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	r = step(ix, st);
	if (r != SQLITE_ROW)
		return r < 0 ? r : -ENOENT;
	*v = sqlite3_column_int64(st, 0);
	return 0;
}

int idx_super_set(struct idx *ix, const char *k, int64_t v)
{
	STMT(st, ix, ST_SUPER_SET);

	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, v);
	return exec_done(ix, st);
}

int idx_local_get(struct idx *ix, const char *k, char **v)
{
	STMT(st, ix, ST_LOCAL_GET);
	int r;

	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	r = step(ix, st);
	if (r != SQLITE_ROW)
		return r < 0 ? r : -ENOENT;
	return column_strdup(st, 0, v);
}

int idx_local_set(struct idx *ix, const char *k, const char *v)
{
	STMT(st, ix, v ? ST_LOCAL_SET : ST_LOCAL_DEL);

	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	if (v)
		sqlite3_bind_text(st, 2, v, -1, SQLITE_STATIC);
	return exec_done(ix, st);
}

/* ---- inodes ---- */

int idx_inode_get(struct idx *ix, uint64_t ino, struct idx_inode *out)
{
	STMT(st, ix, ST_INODE_GET);
	int r;

	bind_u64(st, 1, ino);
	r = step(ix, st);
	if (r != SQLITE_ROW)
		return r < 0 ? r : -ENOENT;
	column_inode(st, 0, out);
	return 0;
}

int idx_inode_insert(struct idx *ix, const struct idx_inode *in)
{
	STMT(st, ix, ST_INODE_INSERT);

	bind_inode(st, in);
	return exec_done(ix, st);
}

int idx_inode_create(struct idx *ix, struct idx_inode *in)
{
	int64_t next;
	int r = idx_super_get(ix, "next_ino", &next);

	if (r == -ENOENT)
		next = IDX_ROOT_INO + 1;
	else if (r < 0)
		return r;
	in->ino = (uint64_t)next;
	r = idx_inode_insert(ix, in);
	if (r == 0)
		r = idx_super_set(ix, "next_ino", next + 1);
	return r;
}

int idx_inode_update(struct idx *ix, const struct idx_inode *in)
{
	STMT(st, ix, ST_INODE_UPDATE);

	bind_inode(st, in);
	return exec_one(ix, st, -ENOENT);
}

static int delete_by_ino(struct idx *ix, enum stmt_id id, uint64_t ino)
{
	STMT(st, ix, id);

	bind_u64(st, 1, ino);
	return exec_done(ix, st);
}

int idx_inode_delete(struct idx *ix, uint64_t ino)
{
	STMT(st, ix, ST_INODE_DELETE);
	int r;

	bind_u64(st, 1, ino);
	r = exec_one(ix, st, -ENOENT);
	if (r == 0)
		r = idx_extent_delete_range(ix, ino, 0, UINT64_MAX);
	if (r == 0)
		r = delete_by_ino(ix, ST_XATTR_DELETE_INO, ino);
	if (r == 0)
		r = delete_by_ino(ix, ST_SYMLINK_DELETE, ino);
	return r;
}

/* Read every orphan number into a malloc'd array. */
static int orphans_collect(struct idx *ix, uint64_t **out, size_t *n)
{
	STMT(st, ix, ST_INODE_ORPHANS);
	uint64_t *v = NULL;
	size_t cap = 0;
	int r;

	*n = 0;
	while ((r = step(ix, st)) == SQLITE_ROW) {
		if (*n == cap) {
			uint64_t *nv = realloc(v, (cap ? cap * 2 : 16) * sizeof(*v));

			if (!nv) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
			cap = cap ? cap * 2 : 16;
		}
		v[(*n)++] = (uint64_t)sqlite3_column_int64(st, 0);
	}
	if (r < 0) {
		free(v);
		return r;
	}
	*out = v;
	return 0;
}

int idx_inode_orphans(struct idx *ix, int (*cb)(void *arg, uint64_t ino), void *arg)
{
	/* Collected first so that cb may delete the orphans it is given. */
	CLEANUP_FREE uint64_t *v = NULL;
	size_t n;
	int r = orphans_collect(ix, &v, &n);

	for (size_t i = 0; r == 0 && i < n; i++)
		r = cb(arg, v[i]);
	return r;
}

int idx_inode_count(struct idx *ix, uint64_t *n)
{
	STMT(st, ix, ST_INODE_COUNT);
	int r = step(ix, st);

	if (r != SQLITE_ROW)
		return r < 0 ? r : db_error(ix, "inode count");
	*n = (uint64_t)sqlite3_column_int64(st, 0);
	return 0;
}

/* ---- symlinks ---- */

int idx_symlink_set(struct idx *ix, uint64_t ino, const char *target)
{
	STMT(st, ix, ST_SYMLINK_SET);

	bind_u64(st, 1, ino);
	bind_name(st, 2, target);
	return exec_done(ix, st);
}

int idx_symlink_get(struct idx *ix, uint64_t ino, char **target)
{
	STMT(st, ix, ST_SYMLINK_GET);
	int r;

	bind_u64(st, 1, ino);
	r = step(ix, st);
	if (r != SQLITE_ROW)
		return r < 0 ? r : -ENOENT;
	return column_strdup(st, 0, target);
}

/* ---- directory entries ---- */

int idx_dirent_lookup(struct idx *ix, uint64_t parent, const char *name, uint64_t *ino)
{
	STMT(st, ix, ST_DIRENT_LOOKUP);
	int r;

	bind_u64(st, 1, parent);
	bind_name(st, 2, name);
	r = step(ix, st);
	if (r != SQLITE_ROW)
		return r < 0 ? r : -ENOENT;
	*ino = (uint64_t)sqlite3_column_int64(st, 0);
	return 0;
}

int idx_dirent_insert(struct idx *ix, uint64_t parent, const char *name, uint64_t ino)
{
	STMT(st, ix, ST_DIRENT_INSERT);

	bind_u64(st, 1, parent);
	bind_name(st, 2, name);
	bind_u64(st, 3, ino);
	return exec_done(ix, st);
}

int idx_dirent_delete(struct idx *ix, uint64_t parent, const char *name)
{
	STMT(st, ix, ST_DIRENT_DELETE);

	bind_u64(st, 1, parent);
	bind_name(st, 2, name);
	return exec_one(ix, st, -ENOENT);
}

int idx_dirent_retarget(struct idx *ix, uint64_t parent, const char *name, uint64_t ino)
{
	STMT(st, ix, ST_DIRENT_RETARGET);

	bind_u64(st, 1, parent);
	bind_name(st, 2, name);
	bind_u64(st, 3, ino);
	return exec_one(ix, st, -ENOENT);
}

int idx_dir_is_empty(struct idx *ix, uint64_t dir)
{
	STMT(st, ix, ST_DIR_EMPTY);
	int r;

	bind_u64(st, 1, dir);
	r = step(ix, st);
	if (r < 0)
		return r;
	return r == SQLITE_DONE;
}

int idx_readdir(struct idx *ix, uint64_t dir, uint64_t after, idx_readdir_cb cb, void *arg)
{
	STMT(st, ix, ST_READDIR);
	struct idx_inode child;
	int r;

	bind_u64(st, 1, dir);
	bind_u64(st, 2, after);
	while ((r = step(ix, st)) == SQLITE_ROW) {
		/* A BLOB read as text is the same bytes, NUL-terminated by SQLite. */
		const char *name = (const char *)sqlite3_column_text(st, 1);

		if (!name)
			return -ENOMEM;
		column_inode(st, 2, &child);
		r = cb(arg, name, &child, (uint64_t)sqlite3_column_int64(st, 0));
		if (r)
			return r;
	}
	return r < 0 ? r : 0;
}

/* ---- extents and segments ---- */

static int extent_one(struct idx *ix, enum stmt_id id, uint64_t ino, uint64_t blk,
		      struct idx_extent *out)
{
	STMT(st, ix, id);
	int r;

	bind_u64(st, 1, ino);
	bind_u64(st, 2, blk);
	r = step(ix, st);
	if (r != SQLITE_ROW)
		return r < 0 ? r : -ENOENT;
	column_extent(st, out);
	return 0;
}

int idx_extent_get(struct idx *ix, uint64_t ino, uint64_t blk, struct idx_extent *out)
{
	return extent_one(ix, ST_EXTENT_GET, ino, blk, out);
}

int idx_extent_next(struct idx *ix, uint64_t ino, uint64_t blk, struct idx_extent *out)
{
	return extent_one(ix, ST_EXTENT_NEXT, ino, blk, out);
}

int idx_extent_range(struct idx *ix, uint64_t ino, uint64_t first, uint64_t last,
		     int (*cb)(void *arg, const struct idx_extent *e), void *arg)
{
	STMT(st, ix, ST_EXTENT_RANGE);
	struct idx_extent e;
	int r;

	bind_u64(st, 1, ino);
	bind_u64(st, 2, first);
	bind_u64(st, 3, last);
	while ((r = step(ix, st)) == SQLITE_ROW) {
		column_extent(st, &e);
		r = cb(arg, &e);
		if (r)
			return r;
	}
	return r < 0 ? r : 0;
}

/* Add delta to seg's live bytes; -ENOENT when the segment has no row. */
static int segment_live_add(struct idx *ix, uint64_t seg, int64_t delta)
{
	STMT(st, ix, ST_SEGMENT_LIVE_ADD);

	bind_u64(st, 1, seg);
	sqlite3_bind_int64(st, 2, delta);
	return exec_one(ix, st, -ENOENT);
}

static int extent_upsert(struct idx *ix, uint64_t ino, const struct idx_extent *e)
{
	STMT(st, ix, ST_EXTENT_UPSERT);

	bind_u64(st, 1, ino);
	bind_u64(st, 2, e->blk);
	bind_u64(st, 3, e->seg);
	sqlite3_bind_int64(st, 4, e->off);
	sqlite3_bind_int64(st, 5, e->len);
	sqlite3_bind_int64(st, 6, e->plen);
	sqlite3_bind_int64(st, 7, e->frame);
	return exec_done(ix, st);
}

int idx_extent_set(struct idx *ix, uint64_t ino, const struct idx_extent *e)
{
	struct idx_extent old;
	int r = idx_extent_get(ix, ino, e->blk, &old);

	if (r < 0 && r != -ENOENT)
		return r;
	if (r == 0 && old.seg == e->seg) {
		r = segment_live_add(ix, e->seg, (int64_t)e->len - old.len);
	} else {
		/* The new segment first: if it is missing nothing has changed yet. */
		int had_old = r == 0;

		r = segment_live_add(ix, e->seg, e->len);
		if (r == 0 && had_old)
			r = segment_live_add(ix, old.seg, -(int64_t)old.len);
	}
	return r ? r : extent_upsert(ix, ino, e);
}

static int extent_range_exec(struct idx *ix, enum stmt_id id, uint64_t ino, uint64_t first,
			     uint64_t last)
{
	STMT(st, ix, id);

	bind_u64(st, 1, ino);
	bind_u64(st, 2, first);
	bind_u64(st, 3, last);
	return exec_done(ix, st);
}

int idx_extent_delete_range(struct idx *ix, uint64_t ino, uint64_t first, uint64_t last)
{
	int r = extent_range_exec(ix, ST_EXTENT_UNLIVE_RANGE, ino, first, last);

	return r ? r : extent_range_exec(ix, ST_EXTENT_DELETE_RANGE, ino, first, last);
}

int idx_segment_create(struct idx *ix, uint64_t seg)
{
	STMT(st, ix, ST_SEGMENT_CREATE);

	bind_u64(st, 1, seg);
	return exec_done(ix, st);
}

int idx_segment_seal(struct idx *ix, uint64_t seg, uint64_t size, uint32_t frames)
{
	STMT(st, ix, ST_SEGMENT_SEAL);

	bind_u64(st, 1, seg);
	bind_u64(st, 2, size);
	sqlite3_bind_int64(st, 3, frames);
	return exec_one(ix, st, -ENOENT);
}

int idx_segment_get(struct idx *ix, uint64_t seg, uint64_t *size, uint64_t *live)
{
	STMT(st, ix, ST_SEGMENT_GET);
	int r;

	bind_u64(st, 1, seg);
	r = step(ix, st);
	if (r != SQLITE_ROW)
		return r < 0 ? r : -ENOENT;
	*size = (uint64_t)sqlite3_column_int64(st, 0);
	*live = (uint64_t)sqlite3_column_int64(st, 1);
	return 0;
}

int idx_segment_delete(struct idx *ix, uint64_t seg)
{
	STMT(st, ix, ST_SEGMENT_DELETE);

	bind_u64(st, 1, seg);
	return exec_one(ix, st, -ENOENT);
}

int idx_segment_list(struct idx *ix,
		     int (*cb)(void *arg, uint64_t seg, uint64_t size, uint64_t live), void *arg)
{
	STMT(st, ix, ST_SEGMENT_LIST);
	int r;

	while ((r = step(ix, st)) == SQLITE_ROW) {
		r = cb(arg, (uint64_t)sqlite3_column_int64(st, 0),
		       (uint64_t)sqlite3_column_int64(st, 1),
		       (uint64_t)sqlite3_column_int64(st, 2));
		if (r)
			return r;
	}
	return r < 0 ? r : 0;
}

int idx_live_bytes(struct idx *ix, uint64_t *bytes)
{
	STMT(st, ix, ST_LIVE_BYTES);
	int r = step(ix, st);

	if (r != SQLITE_ROW)
		return r < 0 ? r : db_error(ix, "live bytes");
	*bytes = (uint64_t)sqlite3_column_int64(st, 0);
	return 0;
}

int idx_segment_set_live(struct idx *ix, uint64_t seg, uint64_t live)
{
	STMT(st, ix, ST_SEGMENT_SET_LIVE);

	bind_u64(st, 1, seg);
	bind_u64(st, 2, live);
	return exec_one(ix, st, -ENOENT);
}

int idx_extent_seg_stats(struct idx *ix,
			 int (*cb)(void *arg, const struct idx_seg_usage *u), void *arg)
{
	STMT(st, ix, ST_EXTENT_SEG_STATS);
	int r;

	while ((r = step(ix, st)) == SQLITE_ROW) {
		struct idx_seg_usage u = {
			.seg = (uint64_t)sqlite3_column_int64(st, 0),
			.extents = (uint64_t)sqlite3_column_int64(st, 1),
			.bytes = (uint64_t)sqlite3_column_int64(st, 2),
			.end = (uint64_t)sqlite3_column_int64(st, 3),
		};
		r = cb(arg, &u);
		if (r)
			return r;
	}
	return r < 0 ? r : 0;
}

int idx_extent_inos_of_seg(struct idx *ix, uint64_t seg,
			   int (*cb)(void *arg, uint64_t ino, uint64_t blocks), void *arg)
{
	STMT(st, ix, ST_EXTENT_INOS_OF_SEG);
	int r;

	bind_u64(st, 1, seg);
	while ((r = step(ix, st)) == SQLITE_ROW) {
		r = cb(arg, (uint64_t)sqlite3_column_int64(st, 0),
		       (uint64_t)sqlite3_column_int64(st, 1));
		if (r)
			return r;
	}
	return r < 0 ? r : 0;
}

int idx_dirent_parent(struct idx *ix, uint64_t ino, uint64_t *parent, char *name, size_t cap)
{
	STMT(st, ix, ST_DIRENT_PARENT);
	int r;

	bind_u64(st, 1, ino);
	r = step(ix, st);
	if (r != SQLITE_ROW)
		return r < 0 ? r : -ENOENT;
	*parent = (uint64_t)sqlite3_column_int64(st, 0);
	size_t n = (size_t)sqlite3_column_bytes(st, 1);
	const void *p = sqlite3_column_blob(st, 1);
	if (n >= cap)
		n = cap - 1;
	if (n)
		memcpy(name, p, n);
	name[n] = '\0';
	return 0;
}

int idx_check_namespace(struct idx *ix,
			int (*dangling)(void *arg, uint64_t parent, const char *name, uint64_t ino),
			int (*nlink)(void *arg, uint64_t ino, uint64_t nlink, uint64_t names),
			void *arg)
{
	int r;
	{
		STMT(st, ix, ST_CHECK_DANGLING);
		while ((r = step(ix, st)) == SQLITE_ROW) {
			char name[NAME_BUF];
			size_t n = (size_t)sqlite3_column_bytes(st, 1);
			if (n >= sizeof(name))
				n = sizeof(name) - 1;
			if (n)
				memcpy(name, sqlite3_column_blob(st, 1), n);
			name[n] = '\0';
			r = dangling(arg, (uint64_t)sqlite3_column_int64(st, 0), name,
				     (uint64_t)sqlite3_column_int64(st, 2));
			if (r)
				return r;
		}
		if (r < 0)
			return r;
	}
	STMT(st, ix, ST_CHECK_NLINK);
	while ((r = step(ix, st)) == SQLITE_ROW) {
		r = nlink(arg, (uint64_t)sqlite3_column_int64(st, 0),
			  (uint64_t)sqlite3_column_int64(st, 1),
			  (uint64_t)sqlite3_column_int64(st, 2));
		if (r)
			return r;
	}
	return r < 0 ? r : 0;
}

/* ---- extended attributes ---- */

int idx_xattr_get(struct idx *ix, uint64_t ino, const char *name, void **val, size_t *len)
{
	STMT(st, ix, ST_XATTR_GET);
	int r;
	size_t n;

	bind_u64(st, 1, ino);
	bind_name(st, 2, name);
	r = step(ix, st);
	if (r != SQLITE_ROW)
		return r < 0 ? r : -ENODATA;
	n = (size_t)sqlite3_column_bytes(st, 0);
	*val = malloc(n ? n : 1);
	if (!*val)
		return -ENOMEM;
	if (n)
		memcpy(*val, sqlite3_column_blob(st, 0), n);
	*len = n;
	return 0;
}

/* XATTR_CREATE insists on a new name, XATTR_REPLACE on an existing one. */
static enum stmt_id xattr_set_stmt(int flags)
{
	if (flags & XATTR_CREATE)
		return ST_XATTR_INSERT;
	if (flags & XATTR_REPLACE)
		return ST_XATTR_REPLACE;
	return ST_XATTR_UPSERT;
}

int idx_xattr_set(struct idx *ix, uint64_t ino, const char *name, const void *val, size_t len,
		  int flags)
{
	enum stmt_id id = xattr_set_stmt(flags);
	STMT(st, ix, id);

	if (len > INT_MAX)
		return -E2BIG;
	bind_u64(st, 1, ino);
	bind_name(st, 2, name);
	/* An empty value is an empty BLOB, not NULL (val may be NULL then). */
	if (len)
		sqlite3_bind_blob(st, 3, val, (int)len, SQLITE_STATIC);
	else
		sqlite3_bind_zeroblob(st, 3, 0);
	if (id == ST_XATTR_REPLACE)
		return exec_one(ix, st, -ENODATA);
	return exec_done(ix, st);
}

int idx_xattr_remove(struct idx *ix, uint64_t ino, const char *name)
{
	STMT(st, ix, ST_XATTR_DELETE);

	bind_u64(st, 1, ino);
	bind_name(st, 2, name);
	return exec_one(ix, st, -ENODATA);
}

int idx_xattr_list(struct idx *ix, uint64_t ino, int (*cb)(void *arg, const char *name), void *arg)
{
	STMT(st, ix, ST_XATTR_LIST);
	int r;

	bind_u64(st, 1, ino);
	while ((r = step(ix, st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);

		if (!name)
			return -ENOMEM;
		r = cb(arg, name);
		if (r)
			return r;
	}
	return r < 0 ? r : 0;
}

int idx_xattr_name_used(struct idx *ix, const char *name)
{
	STMT(st, ix, ST_XATTR_NAME_USED);
	bind_name(st, 1, name);
	int r = step(ix, st);
	return r < 0 ? r : r == SQLITE_ROW;
}

/* ---- durability hooks ---- */

int idx_changeset_take(struct idx *ix, void **cs, size_t *len)
{
	int r = 0;

	*cs = NULL;
	*len = 0;
	/* Inside an operation the changeset would hold half of it. */
	if (ix->depth)
		return -EBUSY;
	if (ix->lost)
		return -EIO;
	/* Built inside the batch transaction: the rows are read in one
	 * transaction, not one each.  Idle barriers are common: nothing to
	 * build then. */
	if (!chg_isempty(ix->changes))
		r = chg_changeset(ix->changes, cs, len);
	/* The commit writes every page the batch changed into SQLite's WAL.
	 * Nothing needs it at a barrier (the journal makes the changes
	 * durable, and a crash leaves the database unused: it is rebuilt from
	 * the store), so a batch spans the barriers of IDX_BATCH_NS and a page
	 * changed by many of them is written once. */
	if (r == 0 && !sqlite3_get_autocommit(ix->db) &&
	    util_now_ns() - ix->batch_ns >= IDX_BATCH_NS)
		r = idx_flush(ix);
	if (r < 0) {
		/* The record still holds every change: the next take has them all. */
		free(*cs);
		*cs = NULL;
		*len = 0;
		return r;
	}
	chg_clear(ix->changes);
	return 0;
}

struct apply_ctx {
	int conflicts;
};

/* A changeset touching any other table (local above all) was not made by
 * idx_changeset_take: it does not fit either. */
static int apply_filter(void *arg, const char *table)
{
	struct apply_ctx *ctx = arg;

	for (size_t i = 0; i < ARRAY_SIZE(replicated); i++)
		if (strcmp(table, replicated[i]) == 0)
			return 1;
	if (ctx->conflicts++ == 0)
		log_error("index: changeset does not fit: it changes table %s", table);
	return 0;
}

static int apply_conflict(void *arg, int type, sqlite3_changeset_iter *it)
{
	struct apply_ctx *ctx = arg;
	const char *table = "?";
	int ncol, op, indirect;

	sqlite3changeset_op(it, &table, &ncol, &op, &indirect);
	if (ctx->conflicts++ == 0)
		log_error("index: changeset does not fit: conflict %d on table %s (op %d)", type,
			  table, op);
	return SQLITE_CHANGESET_ABORT;
}

int idx_changeset_apply(struct idx *ix, const void *cs, size_t len)
{
	struct apply_ctx ctx = { 0 };
	int rc;

	if (len == 0)
		return 0;
	if (len > INT_MAX)
		return -E2BIG;
	if (sqlite3_exec(ix->db, "SAVEPOINT idx_apply", NULL, NULL, NULL) != SQLITE_OK)
		return db_error(ix, "changeset apply");
	/* Recovery replays what is already durable: recording it again would
	 * write it to the journal twice. */
	chg_enable(ix->changes, 0);
	rc = sqlite3changeset_apply(ix->db, (int)len, (void *)cs, apply_filter, apply_conflict,
				    &ctx);
	chg_enable(ix->changes, 1);
	if (rc == SQLITE_OK && !ctx.conflicts) {
		if (sqlite3_exec(ix->db, "RELEASE idx_apply", NULL, NULL, NULL) == SQLITE_OK)
			return 0;
		rc = db_error(ix, "changeset apply");
	} else if (ctx.conflicts) {
		rc = -EUCLEAN;
	} else {
		rc = db_error(ix, "changeset apply");
	}
	sqlite3_exec(ix->db, "ROLLBACK TO idx_apply; RELEASE idx_apply", NULL, NULL, NULL);
	return rc;
}

static int attach_file(sqlite3 *db, const char *path, const char *as)
{
	char sql[64];
	snprintf(sql, sizeof(sql), "ATTACH DATABASE ?1 AS %s", as);
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(st, 1, path, -1, SQLITE_TRANSIENT);
	int r = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
	sqlite3_finalize(st);
	if (r < 0)
		log_error("index: cannot attach %s: %s", path, sqlite3_errmsg(db));
	return r;
}

/* Write image (a SQLite database: a checkpoint or a snapshot) beside the
 * index as <db>.<as> and attach it under the name as, the outer transaction
 * committed first (ATTACH cannot run inside one).  tmp gets the file's
 * path; detach_image undoes it.  -EINVAL when image is not a database. */
static int attach_image(struct idx *ix, const void *image, size_t len, const char *as,
			char tmp[PATH_MAX])
{
	static const char magic[16] = "SQLite format 3";
	if (len < 100 || memcmp(image, magic, sizeof(magic)) != 0)
		return -EINVAL;
	int r = idx_flush(ix);
	if (r < 0)
		return r;
	const char *main_path = sqlite3_db_filename(ix->db, "main");
	if ((size_t)snprintf(tmp, PATH_MAX, "%s.%s", main_path ? main_path : "/tmp/zerofs", as) >=
	    PATH_MAX)
		return -ENAMETOOLONG;
	r = write_file_synced(tmp, image, len);
	if (r == 0)
		r = attach_file(ix->db, tmp, as);
	if (r < 0)
		unlink(tmp);
	return r;
}

/* Detach and remove what attach_image attached; r is the caller's result so
 * far, returned unless it was 0 and the detach failed. */
static int detach_image(struct idx *ix, const char *as, const char *tmp, int r)
{
	char sql[64];
	snprintf(sql, sizeof(sql), "DETACH DATABASE %s", as);
	if (sqlite3_exec(ix->db, sql, NULL, NULL, NULL) != SQLITE_OK && r == 0)
		r = db_error(ix, "detach");
	unlink(tmp);
	return r;
}

int idx_replace_from_image(struct idx *ix, const void *image, size_t len)
{
	char tmp[PATH_MAX], sql[256];
	int r = attach_image(ix, image, len, "img", tmp);
	if (r < 0)
		return r;
	chg_enable(ix->changes, 0);
	if (sqlite3_exec(ix->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		r = db_error(ix, "replace from image");
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(replicated); i++) {
		snprintf(sql, sizeof(sql), "DELETE FROM main.%s; INSERT INTO main.%s SELECT * FROM img.%s;",
			 replicated[i], replicated[i], replicated[i]);
		if (sqlite3_exec(ix->db, sql, NULL, NULL, NULL) != SQLITE_OK)
			r = db_error(ix, "replace from image");
	}
	chg_enable(ix->changes, 1);
	if (r == 0)
		r = idx_flush(ix);
	else if (!sqlite3_get_autocommit(ix->db))
		sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
	return detach_image(ix, "img", tmp, r);
}

/* ---- send and receive ---- */

/* The namespace tables a stream carries as a changeset; extents travel as
 * blocks (the target has its own segments), super and segment not at all. */
static const char *const streamed[] = {"inode", "symlink", "dirent", "xattr"};

int idx_stream_diff(const char *base_path, const char *target_path, void **cs, size_t *len,
		    int (*changed)(void *arg, uint64_t ino, const struct idx_extent *e),
		    int (*dropped)(void *arg, uint64_t ino, uint64_t blk), void *arg)
{
	sqlite3 *db = NULL;
	sqlite3_session *se = NULL;
	sqlite3_stmt *st = NULL;
	int r = 0, n = 0;
	void *buf = NULL;

	/* The session records what turns the attached base into main: the
	 * target is main. */
	if (sqlite3_open_v2(target_path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		log_error("index: cannot open %s: %s", target_path, db ? sqlite3_errmsg(db) : "?");
		sqlite3_close(db);
		return -EIO;
	}
	r = attach_file(db, base_path, "base");
	if (r == 0 && sqlite3session_create(db, "main", &se) != SQLITE_OK)
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(streamed); i++) {
		char *err = NULL;
		if (sqlite3session_attach(se, streamed[i]) != SQLITE_OK ||
		    sqlite3session_diff(se, "base", streamed[i], &err) != SQLITE_OK) {
			log_error("index: diff of table %s: %s", streamed[i],
				  err ? err : sqlite3_errmsg(db));
			r = -EIO;
		}
		sqlite3_free(err);
	}
	if (r == 0 && sqlite3session_changeset(se, &n, &buf) != SQLITE_OK)
		r = -EIO;
	if (r == 0) {
		*cs = malloc(n > 0 ? (size_t)n : 1);
		if (!*cs)
			r = -ENOMEM;
		else if (n > 0)
			memcpy(*cs, buf, (size_t)n);
		*len = (size_t)(n > 0 ? n : 0);
	}
	sqlite3_free(buf);
	if (se)
		sqlite3session_delete(se);
	/* Extents of the target that the base does not have, in store order. */
	if (r == 0 &&
	    sqlite3_prepare_v2(db,
			       "SELECT b.ino, b.blk, b.seg, b.off, b.len, b.plen, b.frame"
			       " FROM main.extent AS b LEFT JOIN base.extent AS a"
			       " ON a.ino = b.ino AND a.blk = b.blk"
			       " WHERE a.ino IS NULL OR a.seg != b.seg OR a.frame != b.frame"
			       " ORDER BY b.seg, b.off",
			       -1, &st, NULL) != SQLITE_OK)
		r = -EIO;
	while (r == 0 && (n = sqlite3_step(st)) == SQLITE_ROW) {
		struct idx_extent e = {
			.blk = (uint64_t)sqlite3_column_int64(st, 1),
			.seg = (uint64_t)sqlite3_column_int64(st, 2),
			.off = (uint32_t)sqlite3_column_int64(st, 3),
			.len = (uint32_t)sqlite3_column_int64(st, 4),
			.plen = (uint32_t)sqlite3_column_int64(st, 5),
			.frame = (uint32_t)sqlite3_column_int64(st, 6),
		};
		r = changed(arg, (uint64_t)sqlite3_column_int64(st, 0), &e);
	}
	if (r == 0 && n != SQLITE_DONE)
		r = -EIO;
	sqlite3_finalize(st);
	st = NULL;
	/* Extents of the base that the target no longer has. */
	if (r == 0 &&
	    sqlite3_prepare_v2(db,
			       "SELECT a.ino, a.blk FROM base.extent AS a LEFT JOIN main.extent AS b"
			       " ON a.ino = b.ino AND a.blk = b.blk WHERE b.ino IS NULL",
			       -1, &st, NULL) != SQLITE_OK)
		r = -EIO;
	while (r == 0 && (n = sqlite3_step(st)) == SQLITE_ROW)
		r = dropped(arg, (uint64_t)sqlite3_column_int64(st, 0),
			    (uint64_t)sqlite3_column_int64(st, 1));
	if (r == 0 && n != SQLITE_DONE)
		r = -EIO;
	sqlite3_finalize(st);
	if (r == -EIO)
		log_error("index: stream diff: %s", sqlite3_errmsg(db));
	sqlite3_close(db);
	return r;
}

int idx_differs_from_image(struct idx *ix, const void *image, size_t len, int *differs)
{
	static const char *const tables[] = {"inode", "symlink", "dirent", "xattr", "extent"};
	char tmp[PATH_MAX], sql[256];
	*differs = 0;
	int r = attach_image(ix, image, len, "cmp", tmp);
	if (r < 0)
		return r;
	for (size_t i = 0; r == 0 && !*differs && i < ARRAY_SIZE(tables); i++) {
		snprintf(sql, sizeof(sql),
			 "SELECT (SELECT count(*) FROM (SELECT * FROM main.%s EXCEPT SELECT * FROM"
			 " cmp.%s)) + (SELECT count(*) FROM (SELECT * FROM cmp.%s EXCEPT SELECT *"
			 " FROM main.%s))",
			 tables[i], tables[i], tables[i], tables[i]);
		sqlite3_stmt *st = NULL;
		if (sqlite3_prepare_v2(ix->db, sql, -1, &st, NULL) != SQLITE_OK ||
		    sqlite3_step(st) != SQLITE_ROW)
			r = db_error(ix, "compare");
		else if (sqlite3_column_int64(st, 0) != 0)
			*differs = 1;
		sqlite3_finalize(st);
	}
	return detach_image(ix, "cmp", tmp, r);
}

int idx_rollback_to_image(struct idx *ix, const void *image, size_t len)
{
	static const char *const tables[] = {"inode", "symlink", "dirent", "xattr", "extent"};
	char tmp[PATH_MAX], sql[256];
	int r = attach_image(ix, image, len, "rb", tmp);
	if (r < 0)
		return r;
	r = batch(ix);
	/* Recorded: the next log carries the rollback.  Rows
	 * that did not change cancel out in the changeset. */
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(tables); i++) {
		snprintf(sql, sizeof(sql),
			 "DELETE FROM main.%s; INSERT INTO main.%s SELECT * FROM rb.%s;", tables[i],
			 tables[i], tables[i]);
		if (sqlite3_exec(ix->db, sql, NULL, NULL, NULL) != SQLITE_OK)
			r = db_error(ix, "rollback");
	}
	/* Live counts follow the extents now in place; segments only the
	 * dropped state used fall to 0 and garbage collection takes them. */
	if (r == 0 &&
	    sqlite3_exec(ix->db,
			 "UPDATE segment SET live = coalesce((SELECT sum(len) FROM main.extent AS e"
			 " WHERE e.seg = segment.seg), 0)",
			 NULL, NULL, NULL) != SQLITE_OK)
		r = db_error(ix, "rollback");
	if (r == 0)
		r = idx_flush(ix);
	return detach_image(ix, "rb", tmp, r);
}

static int stream_filter(void *arg, const char *table)
{
	(void)arg;
	for (size_t i = 0; i < ARRAY_SIZE(streamed); i++)
		if (strcmp(table, streamed[i]) == 0)
			return 1;
	return 0;
}

static int stream_conflict(void *arg, int type, sqlite3_changeset_iter *it)
{
	(void)arg;
	(void)it;
	/* The target was checked to equal the stream's base, or is new: its
	 * root directory's times are the only expected difference. */
	if (type == SQLITE_CHANGESET_DATA || type == SQLITE_CHANGESET_CONFLICT)
		return SQLITE_CHANGESET_REPLACE;
	return SQLITE_CHANGESET_OMIT;
}

int idx_changeset_apply_logged(struct idx *ix, const void *cs, size_t len)
{
	if (len == 0)
		return 0;
	if (len > INT_MAX)
		return -E2BIG;
	int b = batch(ix);
	if (b < 0)
		return b;
	/* Recorded: the target's own log carries it. */
	int rc = sqlite3changeset_apply(ix->db, (int)len, (void *)cs, stream_filter,
					stream_conflict, NULL);
	return rc == SQLITE_OK ? 0 : db_error(ix, "stream apply");
}

int idx_serialize(struct idx *ix, void **image, size_t *len)
{
	sqlite3_int64 n = 0;
	unsigned char *buf;

	/* Inside an operation the image would hold half of it. */
	int r = idx_flush(ix);
	if (r < 0)
		return r;
	buf = sqlite3_serialize(ix->db, "main", &n, 0);
	if (!buf)
		return db_error(ix, "serialize");
	*image = malloc((size_t)n);
	if (!*image) {
		sqlite3_free(buf);
		return -ENOMEM;
	}
	memcpy(*image, buf, (size_t)n);
	sqlite3_free(buf);
	*len = (size_t)n;
	return 0;
}
