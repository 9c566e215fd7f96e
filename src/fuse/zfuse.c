/* zfuse.c: low-level FUSE operations.  Each one decodes its arguments,
 * calls the POSIX core in fs/, and replies exactly once. */
#include "config.h"

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#include "common/util.h"
#include "fuse/zfuse.h"
#include "journal/journal.h"
#include "log.h"

/* Only this daemon changes the tree (NBD writes invalidate explicitly), so
 * the kernel may cache names and attributes for long. */
/* How long the kernel may trust names and attributes: long for a writer
 * (only this daemon changes them), short for a replica, whose index changes
 * under it when it applies the writer's logs. */
#define ENTRY_TIMEOUT entry_timeout
#define ATTR_TIMEOUT attr_timeout
#define REPLICA_TIMEOUT 1.0
static double entry_timeout = 60.0, attr_timeout = 60.0;
static int keep_cache_ok = 1;
#define MAX_IO (1u << 20)
/* The kernel's read-ahead window for the mount, in KiB.  FUSE caps the
 * max_readahead of INIT at the bdi's read_ahead_kb, which starts at 128 KiB:
 * sequential reads then reach us as 128 KiB requests, one or two at a time.
 * A wider window makes them 1 MiB requests, several in flight. */
#define READAHEAD_KB 4096

/* The statistics file in the root directory: not in the index, never
 * listed, read-only, its text taken at open. */
#define STATS_NAME ".zerofs-stats"
#define STATS_INO ((fuse_ino_t)0xfffffffffffff000ULL)

/* A SEEK_DATA or SEEK_HOLE waiting for the seek thread. */
struct seek_req {
	fuse_req_t req;
	fuse_ino_t ino;
	off_t off;
	int whence;
	struct seek_req *next;
};

struct zfuse {
	struct fs *fs;
	struct fuse_session *se;
	char *mountpoint;
	int mounted;
	pthread_t sig_thread;
	int sig_running;
	int writeback; /* the kernel's writeback cache is on */

	/* Notifications write to the session's descriptor, which
	 * fuse_session_unmount closes: notify_lock (read) is held around every
	 * one, and taken (write) to set notify_closed before the unmount.
	 * Without it an NBD thread could write into a descriptor number the
	 * daemon had meanwhile reused for a store object. */
	pthread_rwlock_t notify_lock;
	int notify_closed;

	/* SEEK_DATA/SEEK_HOLE under the writeback cache (zf_lseek). */
	pthread_mutex_t seek_m;
	pthread_cond_t seek_cond;
	struct seek_req *seek_head, *seek_tail;
	pthread_t seek_thread;
	int seek_running, seek_stop;
	pthread_t ra_thread;
	int ra_running;
};

static struct fs *get_fs(fuse_req_t req)
{
	return ((struct zfuse *)fuse_req_userdata(req))->fs;
}

static void to_stat(const struct idx_inode *in, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = in->ino;
	st->st_mode = in->mode;
	st->st_nlink = in->nlink;
	st->st_uid = in->uid;
	st->st_gid = in->gid;
	st->st_rdev = in->rdev;
	st->st_size = (off_t)in->size;
	st->st_blksize = 65536;
	st->st_blocks = (blkcnt_t)((in->size + 511) / 512);
	st->st_atim.tv_sec = in->atime / 1000000000LL;
	st->st_atim.tv_nsec = in->atime % 1000000000LL;
	st->st_mtim.tv_sec = in->mtime / 1000000000LL;
	st->st_mtim.tv_nsec = in->mtime % 1000000000LL;
	st->st_ctim.tv_sec = in->ctime / 1000000000LL;
	st->st_ctim.tv_nsec = in->ctime % 1000000000LL;
}

static void to_entry(const struct idx_inode *in, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = in->ino;
	e->generation = 1;
	e->attr_timeout = ATTR_TIMEOUT;
	e->entry_timeout = ENTRY_TIMEOUT;
	to_stat(in, &e->attr);
}

static void reply_entry(fuse_req_t req, int rc, const struct idx_inode *in)
{
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	struct fuse_entry_param e;
	to_entry(in, &e);
	fuse_reply_entry(req, &e);
}

static void get_ctx(fuse_req_t req, struct fs_ctx *c)
{
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	c->uid = fc->uid;
	c->gid = fc->gid;
	/* The kernel applies the umask before it sends the mode. */
	c->umask = 0;
}

/* Widen the read-ahead window of the mount's bdi (after INIT, which would
 * cap it again).  The stat waits until the kernel has processed our INIT
 * reply, so this runs on its own thread.  Best effort: a failure (not
 * root, no sysfs) only costs speed. */
static void *readahead_main(void *arg)
{
	struct zfuse *zf = arg;
	struct stat sb;
	if (stat(zf->mountpoint, &sb) < 0)
		return NULL;
	char path[128];
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", major(sb.st_dev),
		 minor(sb.st_dev));
	FILE *f = fopen(path, "r+");
	unsigned long kb = 0;
	if (!f) {
		log_debug("cannot open %s: %m", path);
		return NULL;
	}
	if (fscanf(f, "%lu", &kb) == 1 && kb < READAHEAD_KB) {
		rewind(f);
		if (fprintf(f, "%d\n", READAHEAD_KB) < 0 || fflush(f) != 0)
			log_debug("cannot set %s: %m", path);
	}
	fclose(f);
	return NULL;
}

static void zf_init(void *userdata, struct fuse_conn_info *conn)
{
	struct zfuse *zf = userdata;
	/* Not on a read-only mount: with the writeback cache the kernel keeps
	 * its own file sizes, and a replica's change under it would not show. */
	if ((conn->capable & FUSE_CAP_WRITEBACK_CACHE) && !fs_read_only(zf->fs)) {
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
		fs_set_kernel_times(zf->fs, 1);
		zf->writeback = 1;
	} else {
		conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	}
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
	conn->max_write = MAX_IO;
	conn->max_readahead = MAX_IO;
	conn->time_gran = 1;
	if (zf->mountpoint && !zf->ra_running &&
	    pthread_create(&zf->ra_thread, NULL, readahead_main, zf) == 0)
		zf->ra_running = 1;
}

static void stats_attr(struct idx_inode *in)
{
	memset(in, 0, sizeof(*in));
	in->ino = STATS_INO;
	in->mode = S_IFREG | 0444;
	in->nlink = 1;
	in->mtime = in->ctime = in->atime = (int64_t)util_wall_ns();
}

static void zf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct idx_inode in;
	if (parent == FUSE_ROOT_ID && strcmp(name, STATS_NAME) == 0) {
		stats_attr(&in);
		struct fuse_entry_param e;
		to_entry(&in, &e);
		e.attr_timeout = e.entry_timeout = 0;
		fuse_reply_entry(req, &e);
		return;
	}
	int rc = fs_lookup(get_fs(req), parent, name, &in);
	if (rc == -ENOENT) {
		/* Negative entry: the kernel may remember the name is absent. */
		struct fuse_entry_param e = {.entry_timeout = ENTRY_TIMEOUT};
		fuse_reply_entry(req, &e);
		return;
	}
	reply_entry(req, rc, &in);
}

static void zf_forget(fuse_req_t req, fuse_ino_t ino, uint64_t n)
{
	fs_forget(get_fs(req), ino, n);
	fuse_reply_none(req);
}

static void zf_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	for (size_t i = 0; i < count; i++)
		fs_forget(get_fs(req), f[i].ino, f[i].nlookup);
	fuse_reply_none(req);
}

static void zf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct idx_inode in;
	int rc = 0;
	if (ino == STATS_INO)
		stats_attr(&in);
	else
		rc = fs_getattr(get_fs(req), ino, &in);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	struct stat st;
	to_stat(&in, &st);
	fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

static int64_t ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec;
}

static void zf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct idx_inode a = {
		.mode = attr->st_mode,
		.uid = attr->st_uid,
		.gid = attr->st_gid,
		.size = (uint64_t)attr->st_size,
		.atime = ts_ns(&attr->st_atim),
		.mtime = ts_ns(&attr->st_mtim),
		.ctime = ts_ns(&attr->st_ctim),
	};
	int set = 0;
	set |= (to_set & FUSE_SET_ATTR_MODE) ? FS_SET_MODE : 0;
	set |= (to_set & FUSE_SET_ATTR_UID) ? FS_SET_UID : 0;
	set |= (to_set & FUSE_SET_ATTR_GID) ? FS_SET_GID : 0;
	set |= (to_set & FUSE_SET_ATTR_SIZE) ? FS_SET_SIZE : 0;
	set |= (to_set & FUSE_SET_ATTR_ATIME) ? FS_SET_ATIME : 0;
	set |= (to_set & FUSE_SET_ATTR_MTIME) ? FS_SET_MTIME : 0;
	set |= (to_set & FUSE_SET_ATTR_ATIME_NOW) ? FS_SET_ATIME_NOW : 0;
	set |= (to_set & FUSE_SET_ATTR_MTIME_NOW) ? FS_SET_MTIME_NOW : 0;
	set |= (to_set & FUSE_SET_ATTR_CTIME) ? FS_SET_CTIME : 0;
	struct idx_inode out;
	int rc = fs_setattr(get_fs(req), ino, &a, set, &out);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	struct stat st;
	to_stat(&out, &st);
	fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

static void zf_readlink(fuse_req_t req, fuse_ino_t ino)
{
	CLEANUP_FREE char *target = NULL;
	int rc = fs_readlink(get_fs(req), ino, &target);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_readlink(req, target);
}

static void zf_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	struct fs_ctx c;
	struct idx_inode in;
	get_ctx(req, &c);
	reply_entry(req, fs_mknod(get_fs(req), &c, parent, name, mode, rdev, &in), &in);
}

static void zf_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fs_ctx c;
	struct idx_inode in;
	get_ctx(req, &c);
	reply_entry(req, fs_mkdir(get_fs(req), &c, parent, name, mode, &in), &in);
}

static void zf_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct fs_ctx c;
	struct idx_inode in;
	get_ctx(req, &c);
	reply_entry(req, fs_symlink(get_fs(req), &c, parent, name, link, &in), &in);
}

static void zf_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct idx_inode in;
	reply_entry(req, fs_link(get_fs(req), ino, newparent, newname, &in), &in);
}

static void zf_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -fs_unlink(get_fs(req), parent, name));
}

static void zf_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -fs_rmdir(get_fs(req), parent, name));
}

static void zf_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	fuse_reply_err(req, -fs_rename(get_fs(req), parent, name, newparent, newname, flags));
}

static void open_stats(fuse_req_t req, struct fuse_file_info *fi)
{
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EACCES);
		return;
	}
	char *text = fs_stats_text(get_fs(req));
	if (!text) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)text;
	fi->direct_io = 1; /* its size is not known before it is read */
	fuse_reply_open(req, fi);
}

/* Drop the kernel's cache of ino: its attributes, and its pages in
 * [off, off + len) (len 0: to the end) unless off is negative. */
static void notify_inval(struct zfuse *zf, uint64_t ino, off_t off, off_t len)
{
	if (!zf->se)
		return;
	int rc = 0;
	pthread_rwlock_rdlock(&zf->notify_lock);
	if (!zf->notify_closed)
		rc = fuse_lowlevel_notify_inval_inode(zf->se, ino, off, len);
	pthread_rwlock_unlock(&zf->notify_lock);
	/* -ENOENT: the kernel holds no such inode, so nothing is cached. */
	if (rc < 0 && rc != -ENOENT)
		log_debug("cannot invalidate the kernel's cache of inode %" PRIu64 ": %s", ino,
			  strerror(-rc));
}

/* A device file opened with O_DIRECT bypasses the kernel's page cache
 * (FOPEN_DIRECT_IO).  On the kernel's own O_DIRECT path each write costs
 * two more requests under the file's lock: a GETXATTR of
 * security.capability (file_remove_privs) and, under the writeback cache,
 * a SETATTR of the times at the next fsync.  A loop device with direct I/O
 * on opens its file so (losetup --direct-io=on), and its flushes and writes
 * queue behind that lock (zerofs-fuse(8), LOOP DEVICES).  The kernel then
 * keeps no times for those writes and drops no privileges before them:
 * only device files qualify, as NBD writes leave their times too, and
 * zf_write drops privileges that were set after the open.  Such a
 * descriptor cannot be mapped shared (ENODEV). */
#define FH_DIRECT 1

static void set_direct(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if ((fi->flags & O_DIRECT) && fs_direct_ok(get_fs(req), ino) == 1) {
		fi->direct_io = 1;
		fi->fh = FH_DIRECT;
	}
}

static void zf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino == STATS_INO) {
		open_stats(req, fi);
		return;
	}
	struct idx_inode in;
	int rc = fs_getattr(get_fs(req), ino, &in);
	if (rc == 0 && S_ISDIR(in.mode))
		rc = -EISDIR;
	/* libfuse negotiates atomic O_TRUNC: the truncation is ours to do. */
	if (rc == 0 && (fi->flags & O_TRUNC) && S_ISREG(in.mode) && in.size) {
		struct idx_inode zero = {.size = 0};
		rc = fs_setattr(get_fs(req), ino, &zero, FS_SET_SIZE, &in);
	}
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fi->keep_cache = keep_cache_ok && !(fi->flags & O_TRUNC);
	set_direct(req, ino, fi);
	fuse_reply_open(req, fi);
}

static void zf_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct fs_ctx c;
	struct idx_inode in;
	get_ctx(req, &c);
	int rc = fs_mknod(get_fs(req), &c, parent, name, S_IFREG | (mode & 07777), 0, &in);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	struct fuse_entry_param e;
	to_entry(&in, &e);
	fi->keep_cache = 1;
	set_direct(req, e.ino, fi);
	fuse_reply_create(req, &e, fi);
}

static __thread char *io_buf;

/* Frees a worker's io_buf when it exits (workers end with the session). */
static pthread_key_t io_buf_key;
static pthread_once_t io_buf_once = PTHREAD_ONCE_INIT;
static int io_buf_key_err;

static void io_buf_free(void *unused)
{
	free(io_buf);
	io_buf = NULL;
}

static void io_buf_key_create(void)
{
	io_buf_key_err = pthread_key_create(&io_buf_key, io_buf_free);
}

static void zf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	/* A non-NULL value for the key makes io_buf_free run at thread exit. */
	if (!io_buf && pthread_once(&io_buf_once, io_buf_key_create) == 0 && !io_buf_key_err &&
	    pthread_setspecific(io_buf_key, &io_buf_key) == 0)
		io_buf = malloc(MAX_IO);
	if (!io_buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size = MIN(size, (size_t)MAX_IO);
	if (ino == STATS_INO) {
		const char *text = (const char *)(uintptr_t)fi->fh;
		size_t len = strlen(text);
		size_t from = (size_t)MIN((uint64_t)off, (uint64_t)len);
		size_t n = MIN(size, len - from);
		/* Replied from this thread's buffer: the reader may close the
		 * file as soon as the reply is written, and the release of
		 * another thread frees the text while writev may still look
		 * at its vector (as AddressSanitizer's check of it does). */
		memcpy(io_buf, text + from, n);
		fuse_reply_buf(req, io_buf, n);
		return;
	}
	ssize_t n = fs_read(get_fs(req), ino, (uint64_t)off, size, io_buf);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, io_buf, (size_t)n);
}

static void zf_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	if (fi->fh == FH_DIRECT) {
		/* The writer's uid 0 stands for its CAP_FSETID, which keeps
		 * the set-ID bits: the daemon cannot see capabilities. */
		int rc = fs_drop_privs(get_fs(req), ino, fuse_req_ctx(req)->uid == 0);
		if (rc < 0) {
			fuse_reply_err(req, -rc);
			return;
		}
		if (rc > 0) /* its mode: the kernel keeps it for ATTR_TIMEOUT */
			notify_inval(fuse_req_userdata(req), ino, -1, 0);
	}
	ssize_t n = fs_write(get_fs(req), ino, (uint64_t)off, buf, size);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

static void zf_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	/* close() promises nothing about durability; fsync does. */
	fuse_reply_err(req, 0);
}

static void zf_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino == STATS_INO)
		free((void *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void zf_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	fuse_reply_err(req, -fs_sync(get_fs(req)));
}

static void zf_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct idx_inode in;
	int rc = fs_getattr(get_fs(req), ino, &in);
	if (rc == 0 && !S_ISDIR(in.mode))
		rc = -ENOTDIR;
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fi->cache_readdir = 1;
	fi->keep_cache = 0;
	fuse_reply_open(req, fi);
}

struct dirbuf {
	fuse_req_t req;
	char *buf;
	size_t size, len;
	int plus;
};

/* Offsets: 1 after ".", 2 after "..", 2 + cookie after an entry. */
static int dirbuf_add(struct dirbuf *b, const char *name, const struct idx_inode *in,
		      off_t next)
{
	size_t left = b->size - b->len;
	size_t n;
	if (b->plus) {
		struct fuse_entry_param e;
		to_entry(in, &e);
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			e.ino = 0; /* no lookup reference for the dot entries */
		n = fuse_add_direntry_plus(b->req, b->buf + b->len, left, name, &e, next);
	} else {
		struct stat st;
		to_stat(in, &st);
		n = fuse_add_direntry(b->req, b->buf + b->len, left, name, &st, next);
	}
	if (n > left)
		return 1;
	b->len += n;
	return 0;
}

static int dir_cb(void *arg, const char *name, const struct idx_inode *child, uint64_t cookie)
{
	return dirbuf_add(arg, name, child, (off_t)(cookie + 2));
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus)
{
	struct fs *fs = get_fs(req);
	struct dirbuf b = {.req = req, .size = size, .plus = plus};
	b.buf = malloc(size);
	if (!b.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	struct idx_inode self;
	int rc = fs_getattr(fs, ino, &self);
	if (rc == 0 && !S_ISDIR(self.mode))
		rc = -ENOTDIR;
	if (rc == 0 && off < 1 && dirbuf_add(&b, ".", &self, 1))
		goto full;
	if (rc == 0 && off < 2 && dirbuf_add(&b, "..", &self, 2))
		goto full;
	if (rc == 0)
		rc = fs_readdir(fs, ino, off > 2 ? (uint64_t)off - 2 : 0, plus, dir_cb, &b);
full:
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, b.buf, b.len);
	free(b.buf);
}

static void zf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, 0);
}

static void zf_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, 1);
}

static void zf_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void zf_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	fuse_reply_err(req, -fs_sync(get_fs(req)));
}

static void zf_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	int rc = fs_statfs(get_fs(req), &sv);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_statfs(req, &sv);
}

static void zf_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	/* The control attribute of "zerofs-fuse gc MOUNTPOINT": root only (the
	 * kernel allows trusted.* to CAP_SYS_ADMIN), never stored. */
	if (ino == FUSE_ROOT_ID && strncmp(name, "trusted.zerofs.snapshot.", 24) == 0) {
		char snap[JNL_SNAP_NAME_MAX + 1];
		if (size == 0 || size > JNL_SNAP_NAME_MAX) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		memcpy(snap, value, size);
		snap[size] = '\0';
		int rc = -EINVAL;
		if (strcmp(name + 24, "create") == 0)
			rc = fs_snapshot_create(get_fs(req), snap);
		else if (strcmp(name + 24, "delete") == 0)
			rc = fs_snapshot_delete(get_fs(req), snap);
		fuse_reply_err(req, -rc);
		return;
	}
	if (ino == FUSE_ROOT_ID && strcmp(name, "trusted.zerofs.gc") == 0) {
		if (size != 3 || memcmp(value, "run", 3) != 0) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		fuse_reply_err(req, -fs_gc(get_fs(req), 0, NULL));
		return;
	}
	fuse_reply_err(req, -fs_setxattr(get_fs(req), ino, name, value, size, flags));
}

static void reply_xattr(fuse_req_t req, ssize_t n, const char *buf, size_t size)
{
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

static void zf_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	/* The snapshot list of "zerofs-fuse snapshot list", never stored. */
	if (ino == FUSE_ROOT_ID && strcmp(name, "trusted.zerofs.snapshots") == 0) {
		CLEANUP_FREE char *text = fs_snapshot_list_text(get_fs(req));
		if (!text) {
			fuse_reply_err(req, errno ? errno : EIO);
			return;
		}
		size_t n = strlen(text);
		if (size == 0)
			fuse_reply_xattr(req, n);
		else if (size < n)
			fuse_reply_err(req, ERANGE);
		else
			fuse_reply_buf(req, text, n);
		return;
	}
	CLEANUP_FREE char *buf = size ? malloc(size) : NULL;
	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	reply_xattr(req, fs_getxattr(get_fs(req), ino, name, buf, size), buf, size);
}

static void zf_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	CLEANUP_FREE char *buf = size ? malloc(size) : NULL;
	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	reply_xattr(req, fs_listxattr(get_fs(req), ino, buf, size), buf, size);
}

static void zf_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, -fs_removexattr(get_fs(req), ino, name));
}

static void zf_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	if (off < 0 || len <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	fuse_reply_err(req, -fs_fallocate(get_fs(req), ino, mode, (uint64_t)off, (uint64_t)len));
}

static void answer_seek(struct fs *fs, fuse_req_t req, fuse_ino_t ino, off_t off, int whence)
{
	uint64_t pos;
	int rc = off < 0 ? -ENXIO : fs_lseek(fs, ino, (uint64_t)off, whence, &pos);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_lseek(req, (off_t)pos);
}

/* Under the writeback cache the kernel asks where the data is without
 * writing back its dirty pages first, so the daemon would report holes
 * where written data still sits in the page cache.  The seek thread first
 * has the kernel launder the inode's dirty pages (an invalidation writes
 * them back, through the FUSE workers), then answers.  It is not a worker
 * and the request is answered later from it, so no worker waits on the
 * laundering: no deadlock however many seeks arrive at once. */
static void *seek_main(void *arg)
{
	struct zfuse *zf = arg;
	pthread_mutex_lock(&zf->seek_m);
	for (;;) {
		while (!zf->seek_head && !zf->seek_stop)
			pthread_cond_wait(&zf->seek_cond, &zf->seek_m);
		struct seek_req *r = zf->seek_head;
		if (!r)
			break;
		zf->seek_head = r->next;
		if (!zf->seek_head)
			zf->seek_tail = NULL;
		pthread_mutex_unlock(&zf->seek_m);
		if (zf->seek_stop) {
			fuse_reply_err(r->req, EIO);
		} else {
			int rc = -ENOTCONN;
			pthread_rwlock_rdlock(&zf->notify_lock);
			if (!zf->notify_closed)
				rc = fuse_lowlevel_notify_inval_inode(zf->se, r->ino, 0, 0);
			pthread_rwlock_unlock(&zf->notify_lock);
			if (rc < 0 && rc != -ENOENT && rc != -ENOTCONN)
				log_debug("seek: cannot write back the kernel's pages of inode %" PRIu64
					  ": %s",
					  (uint64_t)r->ino, strerror(-rc));
			answer_seek(zf->fs, r->req, r->ino, r->off, r->whence);
		}
		free(r);
		pthread_mutex_lock(&zf->seek_m);
	}
	pthread_mutex_unlock(&zf->seek_m);
	return NULL;
}

static void zf_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	struct zfuse *zf = fuse_req_userdata(req);
	(void)fi;
	if (zf->writeback && zf->seek_running && (whence == SEEK_DATA || whence == SEEK_HOLE)) {
		struct seek_req *r = calloc(1, sizeof(*r));
		if (r) {
			*r = (struct seek_req){req, ino, off, whence, NULL};
			pthread_mutex_lock(&zf->seek_m);
			if (zf->seek_tail)
				zf->seek_tail->next = r;
			else
				zf->seek_head = r;
			zf->seek_tail = r;
			pthread_cond_signal(&zf->seek_cond);
			pthread_mutex_unlock(&zf->seek_m);
			return;
		}
	}
	answer_seek(get_fs(req), req, ino, off, whence);
}

static const struct fuse_lowlevel_ops zf_ops = {
	.init = zf_init,
	.lookup = zf_lookup,
	.forget = zf_forget,
	.forget_multi = zf_forget_multi,
	.getattr = zf_getattr,
	.setattr = zf_setattr,
	.readlink = zf_readlink,
	.mknod = zf_mknod,
	.mkdir = zf_mkdir,
	.symlink = zf_symlink,
	.link = zf_link,
	.unlink = zf_unlink,
	.rmdir = zf_rmdir,
	.rename = zf_rename,
	.open = zf_open,
	.create = zf_create,
	.read = zf_read,
	.write = zf_write,
	.flush = zf_flush,
	.release = zf_release,
	.fsync = zf_fsync,
	.opendir = zf_opendir,
	.readdir = zf_readdir,
	.readdirplus = zf_readdirplus,
	.releasedir = zf_releasedir,
	.fsyncdir = zf_fsyncdir,
	.statfs = zf_statfs,
	.setxattr = zf_setxattr,
	.getxattr = zf_getxattr,
	.listxattr = zf_listxattr,
	.removexattr = zf_removexattr,
	.fallocate = zf_fallocate,
	.lseek = zf_lseek,
};

int zfuse_check_mountpoint(const char *path)
{
	struct stat sb, parent;
	if (stat(path, &sb) < 0) {
		int rc = -errno;
		if (errno == ENOTCONN)
			log_error("mountpoint %s is a disconnected FUSE mount; run 'fusermount3 "
				  "-u %s' first",
				  path, path);
		else
			log_error("mountpoint %s: %m", path);
		return rc;
	}
	if (!S_ISDIR(sb.st_mode)) {
		log_error("mountpoint %s is not a directory", path);
		return -ENOTDIR;
	}
	CLEANUP_FREE char *copy = strdup(path);
	char *up = copy ? realpath(dirname(copy), NULL) : NULL;
	if (up) {
		CLEANUP_FREE char *real = realpath(path, NULL);
		int rc = stat(up, &parent);
		/* A directory on another device than its parent is a mount point
		 * (the root directory is its own parent). */
		if (rc == 0 && real && strcmp(real, "/") != 0 && parent.st_dev != sb.st_dev) {
			log_error("mountpoint %s is busy: something is mounted there already",
				  path);
			free(up);
			return -EBUSY;
		}
		free(up);
	}
	return 0;
}

struct zfuse *zfuse_new(const struct cfg *cfg, const char *extra_opts, int debug)
{
	struct zfuse *zf = calloc(1, sizeof(*zf));
	if (!zf)
		return NULL;
	pthread_mutex_init(&zf->seek_m, NULL);
	pthread_cond_init(&zf->seek_cond, NULL);
	pthread_rwlock_init(&zf->notify_lock, NULL);
	CLEANUP_FREE char *opts = NULL;
	if (asprintf(&opts, "fsname=zerofs-fuse,subtype=zerofs-fuse,default_permissions%s%s%s",
		     cfg->allow_other ? ",allow_other" : "", extra_opts && *extra_opts ? "," : "",
		     extra_opts ? extra_opts : "") < 0) {
		opts = NULL;
		free(zf);
		errno = ENOMEM;
		return NULL;
	}
	char *argv[] = {"zerofs-fuse", "-o", opts, debug ? "-d" : NULL, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(debug ? 4 : 3, argv);
	zf->se = fuse_session_new(&args, &zf_ops, sizeof(zf_ops), zf);
	/* fuse_session_new parsed args into a copy it allocated (and keeps no
	 * pointer to): free it. */
	fuse_opt_free_args(&args);
	if (!zf->se) {
		log_error("invalid mount options '%s' (see the message above)", opts);
		free(zf);
		errno = EINVAL;
		return NULL;
	}
	return zf;
}

static void stop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
}

void zfuse_block_signals(void)
{
	sigset_t set;
	stop_signals(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* Unmount as fusermount3 -u would; lazily when lazy is set.  0 or -errno. */
static int unmount_path(const char *mnt, int lazy)
{
	if (geteuid() == 0)
		return umount2(mnt, lazy ? MNT_DETACH : 0) < 0 ? -errno : 0;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", lazy ? "-uz" : "-u", "--", mnt, (char *)NULL);
		_exit(127);
	}
	int status;
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EBUSY;
}

/* SIGTERM, SIGINT, SIGHUP: unmount while the workers still serve requests,
 * so the kernel first hands over every dirty page, then the loop ends and
 * the last barrier runs.  A busy mount is detached lazily instead, which
 * loses what the kernel still holds for it: said in the log. */
static void *signal_main(void *arg)
{
	struct zfuse *zf = arg;
	sigset_t set;
	int sig;
	stop_signals(&set);
	if (sigwait(&set, &sig) != 0)
		return NULL;
	log_info("signal %d: unmounting %s", sig, zf->mountpoint);
	int rc = unmount_path(zf->mountpoint, 0);
	if (rc < 0) {
		log_warn("cannot unmount %s (%s): detaching it lazily; writes the kernel still "
			 "caches for it are lost",
			 zf->mountpoint, strerror(-rc));
		unmount_path(zf->mountpoint, 1);
		fuse_session_exit(zf->se);
	}
	return NULL;
}

int zfuse_mount(struct zfuse *zf, struct fs *fs, const char *mountpoint)
{
	zf->fs = fs;
	if (fs_read_only(fs)) {
		entry_timeout = attr_timeout = REPLICA_TIMEOUT;
		keep_cache_ok = 0;
	}
	zf->mountpoint = strdup(mountpoint);
	if (!zf->mountpoint)
		return -ENOMEM;
	if (fuse_session_mount(zf->se, mountpoint) < 0) {
		log_error("cannot mount on %s (see the message above; is /dev/fuse there?)",
			  mountpoint);
		return -EIO;
	}
	zf->mounted = 1;
	int err = pthread_create(&zf->sig_thread, NULL, signal_main, zf);
	if (err) {
		errno = err;
		log_error("cannot start the signal thread: %m");
		return -err;
	}
	zf->sig_running = 1;
	err = pthread_create(&zf->seek_thread, NULL, seek_main, zf);
	if (err) {
		errno = err;
		log_error("cannot start the seek thread: %m");
		return -err;
	}
	zf->seek_running = 1;
	return 0;
}

int zfuse_loop(struct zfuse *zf, const struct cfg *cfg)
{
	struct fuse_loop_config *lc = fuse_loop_cfg_create();
	if (!lc)
		return -ENOMEM;
	/* More workers than CPUs only add context switches: each request is
	 * short, and object-store waits happen on the data layer's threads. */
	long n = cfg->threads ? cfg->threads : MAX(sysconf(_SC_NPROCESSORS_ONLN), 2);
	fuse_loop_cfg_set_max_threads(lc, (unsigned int)n);
	fuse_loop_cfg_set_idle_threads(lc, (unsigned int)n);
	/* A /dev/fuse descriptor per worker: requests are not all woken on one
	 * wait queue. */
	fuse_loop_cfg_set_clone_fd(lc, 1);
	int rc = fuse_session_loop_mt(zf->se, lc);
	fuse_loop_cfg_destroy(lc);
	pthread_rwlock_wrlock(&zf->notify_lock);
	zf->notify_closed = 1;
	pthread_rwlock_unlock(&zf->notify_lock);
	fuse_session_unmount(zf->se);
	zf->mounted = 0;
	return rc < 0 ? rc : 0;
}

void zfuse_invalidate(void *arg, uint64_t ino, uint64_t off, uint64_t len)
{
	if (off <= INT64_MAX && len <= INT64_MAX)
		notify_inval(arg, ino, (off_t)off, (off_t)len);
}

void zfuse_free(struct zfuse *zf)
{
	if (!zf)
		return;
	if (zf->seek_running) {
		pthread_mutex_lock(&zf->seek_m);
		zf->seek_stop = 1;
		pthread_cond_broadcast(&zf->seek_cond);
		pthread_mutex_unlock(&zf->seek_m);
		pthread_join(zf->seek_thread, NULL);
		zf->seek_running = 0;
	}
	pthread_mutex_destroy(&zf->seek_m);
	pthread_cond_destroy(&zf->seek_cond);
	pthread_rwlock_destroy(&zf->notify_lock);
	if (zf->sig_running) {
		/* sigwait is a cancellation point: a thread still waiting there
		 * (the mount went away by fusermount3 -u) ends here. */
		pthread_cancel(zf->sig_thread);
		pthread_join(zf->sig_thread, NULL);
	}
	if (zf->ra_running)
		pthread_join(zf->ra_thread, NULL);
	if (zf->se) {
		if (zf->mounted)
			fuse_session_unmount(zf->se);
		fuse_session_destroy(zf->se);
	}
	free(zf->mountpoint);
	free(zf);
}
