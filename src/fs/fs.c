/* fs.c: the POSIX core on top of the index (metadata), the data layer
 * (file contents) and the journal (durability).  Also the mount life cycle:
 * unlock the key, recover the index, start the data and journal threads,
 * and on close run the last barrier. */
#include "config.h"

#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <sodium.h>

#include "codec/codec.h"
#include "common/crashpt.h"
#include "common/util.h"
#include "data/data.h"
#include "fs/fs.h"
#include "fs/fs-int.h"
#include "journal/journal.h"
#include "journal/lease.h"
#include "log.h"
#include "store/store.h"

#define FS_FORMAT 1
#define NAME_MAX_LEN 255
#define SYMLINK_MAX 4095
/* The attribute the kernel looks up before every write to a file (to drop
 * file capabilities): see no_caps in fs-int.h. */
#define CAPS_XATTR "security.capability"

static int64_t now(void)
{
	return (int64_t)util_wall_ns();
}

/* ---- lookup references ---- */

static struct ref **ref_slot(struct fs *fs, uint64_t ino)
{
	struct ref **pp = &fs->refs[(ino * 0x9e3779b97f4a7c15ULL) >> 48];
	while (*pp && (*pp)->ino != ino)
		pp = &(*pp)->next;
	return pp;
}

static void ref_get(struct fs *fs, uint64_t ino)
{
	struct ref **pp = ref_slot(fs, ino);
	if (*pp) {
		(*pp)->n++;
		return;
	}
	struct ref *r = calloc(1, sizeof(*r));
	if (!r) {
		/* Without the entry the inode may be deleted early on unlink;
		 * say so rather than fail a lookup that already succeeded. */
		log_error("out of memory tracking inode %" PRIu64, ino);
		return;
	}
	r->ino = ino;
	r->n = 1;
	*pp = r;
}

static uint64_t ref_count(struct fs *fs, uint64_t ino)
{
	struct ref *r = *ref_slot(fs, ino);
	return r ? r->n : 0;
}

/* Delete an inode that has neither names nor references. */
static int reap(struct fs *fs, uint64_t ino)
{
	data_forget_inode(fs->d, ino);
	return idx_inode_delete(fs->ix, ino);
}

void fs_ref(struct fs *fs, uint64_t ino)
{
	LOCK_GUARD(&fs->lock);
	ref_get(fs, ino);
}

void fs_forget(struct fs *fs, uint64_t ino, uint64_t n)
{
	LOCK_GUARD(&fs->lock);
	struct ref **pp = ref_slot(fs, ino);
	struct ref *r = *pp;
	if (!r)
		return;
	r->n = r->n > n ? r->n - n : 0;
	if (r->n)
		return;
	*pp = r->next;
	free(r);
	struct idx_inode in;
	if (idx_inode_get(fs->ix, ino, &in) == 0 && in.nlink == 0) {
		int rc = reap(fs, ino);
		if (rc < 0)
			log_error("could not delete unlinked inode %" PRIu64 ": %s", ino,
				  strerror(-rc));
	}
}

/* ---- transactions ---- */

static int tx_begin(struct fs *fs)
{
	return idx_begin(fs->ix);
}

static int tx_end(struct fs *fs, int rc)
{
	if (rc < 0) {
		idx_rollback(fs->ix);
		return rc;
	}
	int crc = idx_commit(fs->ix);
	return crc < 0 ? crc : rc;
}

/* ---- metadata ---- */

static int check_name(const char *name)
{
	size_t n = strlen(name);
	if (n == 0)
		return -ENOENT;
	if (n > NAME_MAX_LEN)
		return -ENAMETOOLONG;
	return 0;
}

int fs_lookup(struct fs *fs, uint64_t parent, const char *name, struct idx_inode *out)
{
	int rc = check_name(name);
	if (rc < 0)
		return rc;
	LOCK_GUARD(&fs->lock);
	uint64_t ino;
	rc = idx_dirent_lookup(fs->ix, parent, name, &ino);
	if (rc == 0)
		rc = idx_inode_get(fs->ix, ino, out);
	if (rc == 0)
		ref_get(fs, ino);
	return rc;
}

int fs_getattr(struct fs *fs, uint64_t ino, struct idx_inode *out)
{
	LOCK_GUARD(&fs->lock);
	return idx_inode_get(fs->ix, ino, out);
}

/* Change the size of a regular file: drop or zero what lies past it. */
static int resize(struct fs *fs, struct idx_inode *in, uint64_t size)
{
	if (size < in->size) {
		uint64_t tail = size & (DATA_BLOCK_SIZE - 1);
		int rc = 0;
		if (tail)
			rc = data_zero_range(fs->d, in->ino, size,
					     MIN(in->size, (size | (DATA_BLOCK_SIZE - 1)) + 1) - size);
		if (rc == 0)
			rc = data_drop_from(fs->d, in->ino, data_blocks_for(size));
		if (rc < 0)
			return rc;
	}
	in->size = size;
	return 0;
}

int fs_setattr(struct fs *fs, uint64_t ino, const struct idx_inode *a, int to_set,
	       struct idx_inode *out)
{
	LOCK_GUARD(&fs->lock);
	struct idx_inode in;
	int rc = idx_inode_get(fs->ix, ino, &in);
	if (rc < 0)
		return rc;
	int64_t t = now();
	if (to_set & FS_SET_SIZE) {
		if (S_ISDIR(in.mode))
			return -EISDIR;
		if (!S_ISREG(in.mode))
			return -EINVAL;
		rc = resize(fs, &in, a->size);
		if (rc < 0)
			return rc;
		/* Under the writeback cache the kernel keeps a written file's
		 * times and sends them itself (see fs_set_kernel_times). */
		if (!fs->kernel_times)
			in.mtime = t;
	}
	if (to_set & FS_SET_MODE)
		in.mode = (in.mode & S_IFMT) | (a->mode & 07777);
	if (to_set & FS_SET_UID)
		in.uid = a->uid;
	if (to_set & FS_SET_GID)
		in.gid = a->gid;
	if (to_set & FS_SET_ATIME)
		in.atime = a->atime;
	if (to_set & FS_SET_ATIME_NOW)
		in.atime = t;
	if (to_set & FS_SET_MTIME)
		in.mtime = a->mtime;
	if (to_set & FS_SET_MTIME_NOW)
		in.mtime = t;
	if (to_set & FS_SET_CTIME)
		in.ctime = a->ctime;
	else if (!(fs->kernel_times && to_set == FS_SET_SIZE))
		in.ctime = t;
	rc = idx_inode_update(fs->ix, &in);
	if (rc == 0)
		*out = in;
	return rc;
}

static int touch_dir(struct fs *fs, uint64_t dir, int nlink_delta, int64_t t)
{
	struct idx_inode d;
	int rc = idx_inode_get(fs->ix, dir, &d);
	if (rc < 0)
		return rc;
	d.mtime = d.ctime = t;
	d.nlink = (uint32_t)((int64_t)d.nlink + nlink_delta);
	return idx_inode_update(fs->ix, &d);
}

/* Make a new inode named name in parent.  Caller holds the lock and a
 * transaction. */
static int make_node(struct fs *fs, const struct fs_ctx *ctx, uint64_t parent, const char *name,
		     mode_t mode, dev_t rdev, const char *target, struct idx_inode *out)
{
	int rc = check_name(name);
	if (rc < 0)
		return rc;
	struct idx_inode dir;
	rc = idx_inode_get(fs->ix, parent, &dir);
	if (rc < 0)
		return rc;
	if (!S_ISDIR(dir.mode))
		return -ENOTDIR;
	if (dir.nlink == 0)
		return -ENOENT; /* a removed directory that is still open */
	uint64_t exists;
	rc = idx_dirent_lookup(fs->ix, parent, name, &exists);
	if (rc == 0)
		return -EEXIST;
	if (rc != -ENOENT)
		return rc;
	int64_t t = now();
	struct idx_inode in = {
		.mode = mode,
		.uid = ctx->uid,
		.gid = ctx->gid,
		.nlink = S_ISDIR(mode) ? 2 : 1,
		.size = target ? strlen(target) : 0,
		.rdev = rdev,
		.atime = t,
		.mtime = t,
		.ctime = t,
		.btime = t,
	};
	/* BSD group semantics under a setgid directory, as ext4 does. */
	if (dir.mode & S_ISGID) {
		in.gid = dir.gid;
		if (S_ISDIR(mode))
			in.mode |= S_ISGID;
	}
	rc = idx_inode_create(fs->ix, &in);
	if (rc == 0 && target)
		rc = idx_symlink_set(fs->ix, in.ino, target);
	if (rc == 0)
		rc = idx_dirent_insert(fs->ix, parent, name, in.ino);
	if (rc == 0)
		rc = touch_dir(fs, parent, S_ISDIR(mode) ? 1 : 0, t);
	if (rc == 0)
		*out = in;
	return rc;
}

static int create_common(struct fs *fs, const struct fs_ctx *ctx, uint64_t parent,
			 const char *name, mode_t mode, dev_t rdev, const char *target,
			 struct idx_inode *out)
{
	LOCK_GUARD(&fs->lock);
	int rc = tx_begin(fs);
	if (rc < 0)
		return rc;
	rc = tx_end(fs, make_node(fs, ctx, parent, name, mode, rdev, target, out));
	if (rc == 0)
		ref_get(fs, out->ino);
	return rc;
}

int fs_mknod(struct fs *fs, const struct fs_ctx *ctx, uint64_t parent, const char *name,
	     mode_t mode, dev_t rdev, struct idx_inode *out)
{
	mode_t type = mode & S_IFMT;
	if (type == 0)
		type = S_IFREG;
	if (type != S_IFREG && type != S_IFCHR && type != S_IFBLK && type != S_IFIFO &&
	    type != S_IFSOCK)
		return -EINVAL;
	mode_t perm = mode & 07777 & ~ctx->umask;
	return create_common(fs, ctx, parent, name, type | perm,
			     type == S_IFCHR || type == S_IFBLK ? rdev : 0, NULL, out);
}

int fs_mkdir(struct fs *fs, const struct fs_ctx *ctx, uint64_t parent, const char *name,
	     mode_t mode, struct idx_inode *out)
{
	return create_common(fs, ctx, parent, name, S_IFDIR | (mode & 07777 & ~ctx->umask), 0,
			     NULL, out);
}

int fs_symlink(struct fs *fs, const struct fs_ctx *ctx, uint64_t parent, const char *name,
	       const char *target, struct idx_inode *out)
{
	size_t n = strlen(target);
	if (n == 0)
		return -ENOENT;
	if (n > SYMLINK_MAX)
		return -ENAMETOOLONG;
	return create_common(fs, ctx, parent, name, S_IFLNK | 0777, 0, target, out);
}

int fs_link(struct fs *fs, uint64_t ino, uint64_t newparent, const char *newname,
	    struct idx_inode *out)
{
	int rc = check_name(newname);
	if (rc < 0)
		return rc;
	LOCK_GUARD(&fs->lock);
	struct idx_inode in, dir;
	uint64_t exists;
	rc = tx_begin(fs);
	if (rc < 0)
		return rc;
	rc = idx_inode_get(fs->ix, ino, &in);
	if (rc == 0 && S_ISDIR(in.mode))
		rc = -EPERM;
	if (rc == 0 && in.nlink >= 65000)
		rc = -EMLINK;
	if (rc == 0)
		rc = idx_inode_get(fs->ix, newparent, &dir);
	if (rc == 0 && !S_ISDIR(dir.mode))
		rc = -ENOTDIR;
	if (rc == 0) {
		rc = idx_dirent_lookup(fs->ix, newparent, newname, &exists);
		rc = rc == 0 ? -EEXIST : (rc == -ENOENT ? 0 : rc);
	}
	if (rc == 0)
		rc = idx_dirent_insert(fs->ix, newparent, newname, ino);
	int64_t t = now();
	if (rc == 0) {
		in.nlink++;
		in.ctime = t;
		rc = idx_inode_update(fs->ix, &in);
	}
	if (rc == 0)
		rc = touch_dir(fs, newparent, 0, t);
	rc = tx_end(fs, rc);
	if (rc == 0) {
		*out = in;
		ref_get(fs, ino);
	}
	return rc;
}

/* Drop one name of inode in (already removed from its directory). */
static int drop_link(struct fs *fs, struct idx_inode *in, int64_t t)
{
	in->nlink = S_ISDIR(in->mode) ? 0 : in->nlink - 1;
	in->ctime = t;
	if (in->nlink == 0 && ref_count(fs, in->ino) == 0)
		return reap(fs, in->ino);
	return idx_inode_update(fs->ix, in);
}

static int remove_entry(struct fs *fs, uint64_t parent, const char *name, int want_dir)
{
	int rc = check_name(name);
	if (rc < 0)
		return rc;
	LOCK_GUARD(&fs->lock);
	uint64_t ino;
	struct idx_inode in;
	rc = tx_begin(fs);
	if (rc < 0)
		return rc;
	rc = idx_dirent_lookup(fs->ix, parent, name, &ino);
	if (rc == 0)
		rc = idx_inode_get(fs->ix, ino, &in);
	if (rc == 0 && want_dir && !S_ISDIR(in.mode))
		rc = -ENOTDIR;
	if (rc == 0 && !want_dir && S_ISDIR(in.mode))
		rc = -EISDIR;
	if (rc == 0 && want_dir) {
		rc = idx_dir_is_empty(fs->ix, ino);
		rc = rc == 1 ? 0 : (rc == 0 ? -ENOTEMPTY : rc);
	}
	int64_t t = now();
	if (rc == 0)
		rc = idx_dirent_delete(fs->ix, parent, name);
	if (rc == 0)
		rc = touch_dir(fs, parent, want_dir ? -1 : 0, t);
	if (rc == 0)
		rc = drop_link(fs, &in, t);
	return tx_end(fs, rc);
}

int fs_unlink(struct fs *fs, uint64_t parent, const char *name)
{
	return remove_entry(fs, parent, name, 0);
}

int fs_rmdir(struct fs *fs, uint64_t parent, const char *name)
{
	return remove_entry(fs, parent, name, 1);
}

static int do_exchange(struct fs *fs, uint64_t parent, const char *name, uint64_t newparent,
		       const char *newname, const struct idx_inode *src,
		       const struct idx_inode *dst, int64_t t)
{
	int rc = idx_dirent_retarget(fs->ix, parent, name, dst->ino);
	if (rc == 0)
		rc = idx_dirent_retarget(fs->ix, newparent, newname, src->ino);
	if (rc == 0 && parent != newparent) {
		int delta = S_ISDIR(src->mode) - S_ISDIR(dst->mode);
		rc = touch_dir(fs, parent, -delta, t);
		if (rc == 0)
			rc = touch_dir(fs, newparent, delta, t);
	} else if (rc == 0) {
		rc = touch_dir(fs, parent, 0, t);
	}
	struct idx_inode a = *src, b = *dst;
	a.ctime = b.ctime = t;
	if (rc == 0)
		rc = idx_inode_update(fs->ix, &a);
	if (rc == 0)
		rc = idx_inode_update(fs->ix, &b);
	return rc;
}

static int do_rename(struct fs *fs, uint64_t parent, const char *name, uint64_t newparent,
		     const char *newname, unsigned int flags)
{
	uint64_t sino, dino;
	struct idx_inode src, dst, np;
	int rc = idx_dirent_lookup(fs->ix, parent, name, &sino);
	if (rc == 0)
		rc = idx_inode_get(fs->ix, sino, &src);
	if (rc == 0)
		rc = idx_inode_get(fs->ix, newparent, &np);
	if (rc < 0)
		return rc;
	if (!S_ISDIR(np.mode))
		return -ENOTDIR;
	int64_t t = now();
	rc = idx_dirent_lookup(fs->ix, newparent, newname, &dino);
	int have_dst = rc == 0;
	if (rc < 0 && rc != -ENOENT)
		return rc;
	if (have_dst) {
		rc = idx_inode_get(fs->ix, dino, &dst);
		if (rc < 0)
			return rc;
	}
	if (flags & RENAME_EXCHANGE) {
		if (!have_dst)
			return -ENOENT;
		return do_exchange(fs, parent, name, newparent, newname, &src, &dst, t);
	}
	if (have_dst && (flags & RENAME_NOREPLACE))
		return -EEXIST;
	if (have_dst && dino == sino)
		return 0; /* two names of one inode: POSIX says do nothing */
	if (have_dst) {
		if (S_ISDIR(src.mode) && !S_ISDIR(dst.mode))
			return -ENOTDIR;
		if (!S_ISDIR(src.mode) && S_ISDIR(dst.mode))
			return -EISDIR;
		if (S_ISDIR(dst.mode)) {
			rc = idx_dir_is_empty(fs->ix, dino);
			if (rc <= 0)
				return rc == 0 ? -ENOTEMPTY : rc;
		}
		rc = idx_dirent_retarget(fs->ix, newparent, newname, sino);
		if (rc == 0)
			rc = drop_link(fs, &dst, t);
		/* A replaced directory was a subdirectory of newparent. */
		if (rc == 0 && S_ISDIR(dst.mode))
			rc = touch_dir(fs, newparent, -1, t);
	} else {
		rc = idx_dirent_insert(fs->ix, newparent, newname, sino);
	}
	if (rc == 0)
		rc = idx_dirent_delete(fs->ix, parent, name);
	int isdir = S_ISDIR(src.mode) ? 1 : 0;
	if (rc == 0)
		rc = touch_dir(fs, parent, parent != newparent ? -isdir : 0, t);
	if (rc == 0 && parent != newparent)
		rc = touch_dir(fs, newparent, isdir, t);
	if (rc == 0) {
		src.ctime = t;
		rc = idx_inode_update(fs->ix, &src);
	}
	return rc;
}

int fs_rename(struct fs *fs, uint64_t parent, const char *name, uint64_t newparent,
	      const char *newname, unsigned int flags)
{
	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE))
		return -EINVAL;
	int rc = check_name(name);
	if (rc == 0)
		rc = check_name(newname);
	if (rc < 0)
		return rc;
	LOCK_GUARD(&fs->lock);
	rc = tx_begin(fs);
	if (rc < 0)
		return rc;
	return tx_end(fs, do_rename(fs, parent, name, newparent, newname, flags));
}

int fs_readlink(struct fs *fs, uint64_t ino, char **target)
{
	LOCK_GUARD(&fs->lock);
	struct idx_inode in;
	int rc = idx_inode_get(fs->ix, ino, &in);
	if (rc < 0)
		return rc;
	if (!S_ISLNK(in.mode))
		return -EINVAL;
	return idx_symlink_get(fs->ix, ino, target);
}

struct readdir_ctx {
	struct fs *fs;
	int plus;
	idx_readdir_cb cb;
	void *arg;
};

static int readdir_one(void *arg, const char *name, const struct idx_inode *child,
		       uint64_t cookie)
{
	struct readdir_ctx *c = arg;
	int rc = c->cb(c->arg, name, child, cookie);
	if (rc == 0 && c->plus)
		ref_get(c->fs, child->ino);
	return rc;
}

int fs_readdir(struct fs *fs, uint64_t dir, uint64_t cookie, int plus, idx_readdir_cb cb,
	       void *arg)
{
	LOCK_GUARD(&fs->lock);
	struct idx_inode in;
	int rc = idx_inode_get(fs->ix, dir, &in);
	if (rc < 0)
		return rc;
	if (!S_ISDIR(in.mode))
		return -ENOTDIR;
	struct readdir_ctx c = {fs, plus, cb, arg};
	rc = idx_readdir(fs->ix, dir, cookie, readdir_one, &c);
	return rc < 0 ? rc : 0;
}

/* ---- data ---- */

ssize_t fs_read(struct fs *fs, uint64_t ino, uint64_t off, size_t len, void *buf)
{
	return fs_read_map(fs, ino, off, len, buf, NULL, NULL, NULL);
}

ssize_t fs_read_map(struct fs *fs, uint64_t ino, uint64_t off, size_t len, void *buf,
		    fs_map_cb cb, void *arg, struct data_pin *pins)
{
	LOCK_GUARD(&fs->lock);
	struct idx_inode in;
	int rc = idx_inode_get(fs->ix, ino, &in);
	if (rc < 0)
		return rc;
	if (S_ISDIR(in.mode))
		return -EISDIR;
	if (off >= in.size)
		return 0;
	len = (size_t)MIN((uint64_t)len, in.size - off);
	ssize_t n = data_read_map(fs->d, ino, off, len, buf, cb, arg, pins);
	if (n > 0) {
		fs->reads++;
		fs->read_bytes += (uint64_t)n;
	}
	return n;
}

void fs_unpin(struct fs *fs, struct data_pin *pins, size_t n)
{
	data_unpin(fs->d, pins, n);
}

ssize_t fs_write(struct fs *fs, uint64_t ino, uint64_t off, const void *buf, size_t len)
{
	if (off + len < off || off + len > (1ULL << 50))
		return -EFBIG;
	LOCK_GUARD(&fs->lock);
	struct idx_inode in;
	int rc = idx_inode_get(fs->ix, ino, &in);
	if (rc < 0)
		return rc;
	if (!S_ISREG(in.mode))
		return -EINVAL;
	/* The size grows before the data lands, so a barrier taken while the
	 * write drops the lock never sees blocks beyond the file's end. */
	int changed = 0;
	if (!fs->kernel_times) {
		in.mtime = in.ctime = now();
		changed = 1;
	}
	if (off + len > in.size) {
		in.size = off + len;
		changed = 1;
	}
	if (changed)
		rc = idx_inode_update(fs->ix, &in);
	if (rc == 0)
		rc = data_write(fs->d, ino, off, buf, len);
	if (rc < 0)
		return rc;
	fs->writes++;
	fs->write_bytes += len;
	return (ssize_t)len;
}

/* The bits a write drops: set-user-ID, and set-group-ID on a
 * group-executable file (without that it marks mandatory locking). */
static mode_t sid_bits(mode_t mode)
{
	mode_t kill = mode & S_ISUID;
	if ((mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
		kill |= S_ISGID;
	return kill;
}

/* Whether ino has file capabilities.  Caller holds the lock. */
static int has_caps(struct fs *fs, uint64_t ino)
{
	if (atomic_load(&fs->no_caps))
		return 0;
	CLEANUP_FREE void *val = NULL;
	size_t len;
	int rc = idx_xattr_get(fs->ix, ino, CAPS_XATTR, &val, &len);
	return rc == -ENODATA ? 0 : rc < 0 ? rc : 1;
}

struct find_ino {
	uint64_t ino;
	int found;
};

static int find_ino_cb(void *arg, const char *name, const struct idx_inode *child, uint64_t cookie)
{
	struct find_ino *f = arg;
	(void)name;
	(void)cookie;
	f->found = child->ino == f->ino;
	return f->found;
}

/* Whether ino is linked in /.nbd: a walk of that directory's entries,
 * which are few.  1, 0 or -errno; caller holds the lock. */
static int in_device_dir(struct fs *fs, uint64_t ino)
{
	uint64_t dir;
	int rc = idx_dirent_lookup(fs->ix, IDX_ROOT_INO, FS_DEVICE_DIR, &dir);
	if (rc < 0)
		return rc == -ENOENT ? 0 : rc;
	struct find_ino f = {.ino = ino};
	rc = idx_readdir(fs->ix, dir, 0, find_ino_cb, &f);
	return rc < 0 ? rc : f.found;
}

int fs_direct_ok(struct fs *fs, uint64_t ino)
{
	LOCK_GUARD(&fs->lock);
	struct idx_inode in;
	int rc = idx_inode_get(fs->ix, ino, &in);
	if (rc < 0)
		return rc;
	if (!S_ISREG(in.mode) || sid_bits(in.mode))
		return 0;
	rc = in_device_dir(fs, ino);
	if (rc <= 0)
		return rc;
	rc = has_caps(fs, ino);
	return rc < 0 ? rc : !rc;
}

int fs_drop_privs(struct fs *fs, uint64_t ino, int keep_sid)
{
	if (keep_sid && atomic_load(&fs->no_caps))
		return 0; /* a loop device's writes: no lookup */
	LOCK_GUARD(&fs->lock);
	struct idx_inode in;
	int rc = idx_inode_get(fs->ix, ino, &in);
	if (rc < 0)
		return rc;
	mode_t kill = keep_sid ? 0 : sid_bits(in.mode);
	int caps = has_caps(fs, ino);
	if (caps < 0)
		return caps;
	if (!kill && !caps)
		return 0;
	rc = tx_begin(fs);
	if (rc < 0)
		return rc;
	if (caps)
		rc = idx_xattr_remove(fs->ix, ino, CAPS_XATTR);
	if (rc == 0) {
		in.mode &= ~kill;
		in.ctime = now();
		rc = idx_inode_update(fs->ix, &in);
	}
	rc = tx_end(fs, rc);
	return rc < 0 ? rc : 1;
}

int fs_sync(struct fs *fs)
{
	pthread_mutex_lock(&fs->lock);
	fs->syncs++;
	pthread_mutex_unlock(&fs->lock);
	return jnl_sync(fs->j);
}

int fs_fallocate(struct fs *fs, uint64_t ino, int mode, uint64_t off, uint64_t len)
{
	if (off + len < off || off + len > (1ULL << 50))
		return -EFBIG;
	int known = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
	if (mode & ~known)
		return -EOPNOTSUPP;
	if ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE))
		return -EOPNOTSUPP;
	LOCK_GUARD(&fs->lock);
	struct idx_inode in;
	int rc = idx_inode_get(fs->ix, ino, &in);
	if (rc < 0)
		return rc;
	if (!S_ISREG(in.mode))
		return S_ISDIR(in.mode) ? -EISDIR : -ENODEV;
	uint64_t end = off + len;
	if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
		uint64_t zend = MIN(end, in.size);
		if (zend > off) {
			rc = data_zero_range(fs->d, ino, off, zend - off);
			if (rc < 0)
				return rc;
		}
		in.mtime = in.ctime = now();
	}
	/* Plain allocation reserves nothing in an object store: space is
	 * taken when data is written; only the size changes. */
	if (!(mode & FALLOC_FL_KEEP_SIZE) && end > in.size) {
		in.size = end;
		in.ctime = now();
	}
	return idx_inode_update(fs->ix, &in);
}

int fs_lseek(struct fs *fs, uint64_t ino, uint64_t off, int whence, uint64_t *out)
{
	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return -EINVAL;
	LOCK_GUARD(&fs->lock);
	struct idx_inode in;
	int rc = idx_inode_get(fs->ix, ino, &in);
	if (rc < 0)
		return rc;
	if (off >= in.size)
		return -ENXIO;
	rc = data_flush_inode(fs->d, ino);
	if (rc < 0)
		return rc;
	uint64_t blk = off >> DATA_BLOCK_SHIFT;
	struct idx_extent e;
	if (whence == SEEK_DATA) {
		rc = idx_extent_next(fs->ix, ino, blk, &e);
		if (rc == -ENOENT)
			return -ENXIO;
		if (rc < 0)
			return rc;
		uint64_t pos = MAX(off, e.blk << DATA_BLOCK_SHIFT);
		if (pos >= in.size)
			return -ENXIO;
		*out = pos;
		return 0;
	}
	for (;;) {
		rc = idx_extent_next(fs->ix, ino, blk, &e);
		if (rc == -ENOENT || (rc == 0 && e.blk > blk))
			break;
		if (rc < 0)
			return rc;
		blk++;
	}
	*out = MIN(in.size, MAX(off, blk << DATA_BLOCK_SHIFT));
	return 0;
}

/* fs_map's walk: blocks are classified in order and merged into runs. */
struct map_walk {
	struct data *d;
	uint64_t ino, off;
	uint64_t next; /* first block not yet classified */
	uint64_t run_start;
	int run_data, have_run, stopped;
	fs_map_cb cb;
	void *arg;
};

/* Add block blk (data or hole) to the current run, handing the run to cb
 * when the kind changes.  Non-zero when cb asked to stop. */
static int map_block(struct map_walk *w, uint64_t blk, int data)
{
	uint64_t start = MAX(w->off, blk << DATA_BLOCK_SHIFT);
	if (w->have_run && w->run_data != data) {
		if (w->cb(w->arg, w->run_start, start - w->run_start, w->run_data))
			return w->stopped = 1;
		w->have_run = 0;
	}
	if (!w->have_run) {
		w->run_start = start;
		w->run_data = data;
		w->have_run = 1;
	}
	return 0;
}

/* Blocks [w->next, upto) have no extent: holes unless a dirty buffer holds
 * data not yet packed. */
static int map_gap(struct map_walk *w, uint64_t upto)
{
	for (; w->next < upto; w->next++)
		if (map_block(w, w->next, data_block_dirty(w->d, w->ino, w->next)))
			return 1;
	return 0;
}

static int map_extent(void *arg, const struct idx_extent *e)
{
	struct map_walk *w = arg;
	if (map_gap(w, e->blk) || map_block(w, e->blk, 1))
		return 1;
	w->next = e->blk + 1;
	return 0;
}

int fs_map(struct fs *fs, uint64_t ino, uint64_t off, uint64_t len, fs_map_cb cb, void *arg)
{
	LOCK_GUARD(&fs->lock);
	struct idx_inode in;
	int rc = idx_inode_get(fs->ix, ino, &in);
	if (rc < 0)
		return rc;
	uint64_t end = len > in.size - MIN(off, in.size) ? in.size : off + len;
	if (off >= end)
		return 0;
	struct map_walk w = {
		.d = fs->d,
		.ino = ino,
		.off = off,
		.next = data_first_blk(off),
		.cb = cb,
		.arg = arg,
	};
	uint64_t last = data_last_blk(off, end - off);
	rc = idx_extent_range(fs->ix, ino, w.next, last + 1, map_extent, &w);
	if (rc < 0)
		return rc;
	if (!w.stopped && map_gap(&w, last + 1) == 0 && w.have_run)
		cb(arg, w.run_start, end - w.run_start, w.run_data);
	return 0;
}

int fs_statfs(struct fs *fs, struct statvfs *out)
{
	LOCK_GUARD(&fs->lock);
	uint64_t live = 0, inodes = 0;
	int rc = idx_live_bytes(fs->ix, &live);
	if (rc == 0)
		rc = idx_inode_count(fs->ix, &inodes);
	if (rc < 0)
		return rc;
	/* An object store has no fixed size: report 1 PiB, less what is used. */
	const uint64_t bsize = 4096, total = (1ULL << 50) / bsize;
	const uint64_t files = 1ULL << 32;
	memset(out, 0, sizeof(*out));
	out->f_bsize = bsize;
	out->f_frsize = bsize;
	out->f_blocks = total;
	out->f_bfree = out->f_bavail = total - MIN(total, (live + bsize - 1) / bsize);
	out->f_files = files;
	out->f_ffree = out->f_favail = files - MIN(files, inodes);
	out->f_namemax = NAME_MAX_LEN;
	return 0;
}

/* ---- xattrs ---- */

int fs_setxattr(struct fs *fs, uint64_t ino, const char *name, const void *val, size_t len,
		int flags)
{
	if (strlen(name) == 0 || strlen(name) > 255)
		return -ERANGE;
	if (len > 65536)
		return -E2BIG;
	LOCK_GUARD(&fs->lock);
	int rc = tx_begin(fs);
	if (rc < 0)
		return rc;
	if (strcmp(name, CAPS_XATTR) == 0)
		atomic_store(&fs->no_caps, 0);
	struct idx_inode in;
	rc = idx_inode_get(fs->ix, ino, &in);
	if (rc == 0)
		rc = idx_xattr_set(fs->ix, ino, name, val, len, flags);
	if (rc == 0) {
		in.ctime = now();
		rc = idx_inode_update(fs->ix, &in);
	}
	return tx_end(fs, rc);
}

ssize_t fs_getxattr(struct fs *fs, uint64_t ino, const char *name, void *buf, size_t cap)
{
	if (atomic_load(&fs->no_caps) && strcmp(name, CAPS_XATTR) == 0)
		return -ENODATA;
	LOCK_GUARD(&fs->lock);
	CLEANUP_FREE void *val = NULL;
	size_t len;
	int rc = idx_xattr_get(fs->ix, ino, name, &val, &len);
	if (rc < 0)
		return rc;
	if (cap == 0)
		return (ssize_t)len;
	if (cap < len)
		return -ERANGE;
	memcpy(buf, val, len);
	return (ssize_t)len;
}

struct xlist {
	char *buf;
	size_t cap, len;
};

static int xlist_add(void *arg, const char *name)
{
	struct xlist *l = arg;
	size_t n = strlen(name) + 1;
	if (l->buf && l->len + n <= l->cap)
		memcpy(l->buf + l->len, name, n);
	l->len += n;
	return 0;
}

ssize_t fs_listxattr(struct fs *fs, uint64_t ino, char *buf, size_t cap)
{
	LOCK_GUARD(&fs->lock);
	struct idx_inode in;
	int rc = idx_inode_get(fs->ix, ino, &in);
	if (rc < 0)
		return rc;
	struct xlist l = {.buf = cap ? buf : NULL, .cap = cap};
	rc = idx_xattr_list(fs->ix, ino, xlist_add, &l);
	if (rc < 0)
		return rc;
	if (cap && l.len > cap)
		return -ERANGE;
	return (ssize_t)l.len;
}

int fs_removexattr(struct fs *fs, uint64_t ino, const char *name)
{
	LOCK_GUARD(&fs->lock);
	int rc = tx_begin(fs);
	if (rc < 0)
		return rc;
	struct idx_inode in;
	rc = idx_inode_get(fs->ix, ino, &in);
	if (rc == 0)
		rc = idx_xattr_remove(fs->ix, ino, name);
	if (rc == 0) {
		in.ctime = now();
		rc = idx_inode_update(fs->ix, &in);
	}
	return tx_end(fs, rc);
}

/* ---- life cycle ---- */

static int load_key(struct store *st, const char *password, struct seal_key *key,
		    uint8_t fsid[SEAL_FSID_BYTES])
{
	CLEANUP_FREE void *blob = NULL;
	size_t len;
	int rc = store_get_all(st, "zerofs.key", &blob, &len);
	if (rc < 0)
		return rc;
	rc = seal_keyfile_open(blob, len, password, strlen(password), key, fsid);
	if (rc == -EACCES)
		log_error("wrong password for the store at %s", st->url);
	else if (rc == -EPROTONOSUPPORT)
		log_error("the store at %s has a newer format than this zerofs-fuse supports "
			  "(key format %d); upgrade zerofs-fuse",
			  st->url, SEAL_KEYFILE_VERSION);
	else if (rc == -EINVAL)
		log_error("%s/zerofs.key is not a zerofs-fuse key object (damaged?)", st->url);
	return rc;
}

static int any_object(void *arg, const char *key, uint64_t size)
{
	return 1;
}

/* 1 when the store holds no object at all. */
static int store_is_empty(struct store *st)
{
	int rc = store_list(st, "", any_object, NULL);
	return rc < 0 ? rc : rc == 0;
}

static int kdf_from_cfg(const struct cfg *cfg, struct seal_kdf *kdf)
{
	*kdf = strcmp(cfg->kdf, "min") == 0 ? seal_kdf_min() : seal_kdf_default();
	return 0;
}

/* The cipher the configuration asks for; 0 for "auto" (cfg checked the
 * name). */
static enum seal_cipher cipher_from_cfg(const struct cfg *cfg)
{
	enum seal_cipher c;
	return seal_cipher_parse(cfg->cipher, &c) == 0 ? c : 0;
}

static int mkfs_store(struct store *st, const struct cfg *cfg, const char *password)
{
	struct seal_kdf kdf;
	kdf_from_cfg(cfg, &kdf);
	enum seal_cipher cipher = cipher_from_cfg(cfg);
	if (!cipher)
		cipher = seal_cipher_default();
	struct seal_key key;
	uint8_t fsid[SEAL_FSID_BYTES];
	uint8_t blob[SEAL_KEYFILE_BYTES];
	ssize_t blen = seal_keyfile_create(password, strlen(password), kdf, cipher, &key, fsid,
					   blob);
	if (blen < 0)
		return (int)blen;
	int rc = 0;
	struct idx *ix = idx_open(":memory:");
	if (!ix) {
		rc = -errno;
		goto out;
	}
	int64_t t = now();
	struct idx_inode root = {
		.ino = IDX_ROOT_INO,
		.mode = S_IFDIR | 0755,
		.uid = getuid(),
		.gid = getgid(),
		.nlink = 2,
		.atime = t,
		.mtime = t,
		.ctime = t,
		.btime = t,
	};
	rc = idx_inode_insert(ix, &root);
	if (rc == 0)
		rc = idx_super_set(ix, "format", FS_FORMAT);
	if (rc == 0)
		rc = idx_super_set(ix, "next_ino", IDX_ROOT_INO + 1);
	if (rc == 0)
		rc = idx_super_set(ix, "epoch", 0);
	/* The key goes first, exclusively: it claims the store. */
	if (rc == 0) {
		rc = store_put(st, "zerofs.key", blob, (size_t)blen, STORE_PUT_IF_ABSENT);
		if (rc == -EEXIST)
			log_error("the store at %s already holds a filesystem", st->url);
	}
	if (rc == 0)
		rc = jnl_format(st, &key, ix);
	idx_close(ix);
out:
	sodium_memzero(&key, sizeof(key));
	if (rc == 0) {
		char hex[2 * SEAL_FSID_BYTES + 1];
		sodium_bin2hex(hex, sizeof(hex), fsid, sizeof(fsid));
		log_info("created filesystem %s in %s (cipher %s)", hex, st->url,
			 seal_cipher_name(cipher));
	}
	return rc;
}

int fs_mkfs(const struct cfg *cfg, const char *password)
{
	int rc = seal_init();
	if (rc < 0)
		return rc;
	struct store *st = store_open_cfg(cfg, 1);
	if (!st)
		return -errno;
	uint64_t size;
	rc = store_is_empty(st);
	if (rc == 0 && store_stat(st, "zerofs.key", &size) == 0) {
		log_error("the store at %s already holds a zerofs-fuse filesystem; it is left "
			  "untouched",
			  st->url);
		rc = -EEXIST;
	} else if (rc == 0) {
		log_error("the store at %s is not empty; refusing to make a filesystem there",
			  st->url);
		rc = -EEXIST;
	} else if (rc == 1) {
		rc = mkfs_store(st, cfg, password);
	}
	store_close(st);
	return rc;
}

int fs_change_password(const struct cfg *cfg, const char *old, const char *new)
{
	int rc = seal_init();
	if (rc < 0)
		return rc;
	struct store *st = store_open_cfg(cfg, 0);
	if (!st)
		return -errno;
	CLEANUP_FREE void *blob = NULL;
	size_t len;
	uint8_t out[SEAL_KEYFILE_BYTES];
	ssize_t olen = 0;
	struct seal_kdf kdf;
	kdf_from_cfg(cfg, &kdf);
	rc = store_get_all(st, "zerofs.key", &blob, &len);
	if (rc == -ENOENT)
		log_error("%s holds no zerofs-fuse filesystem", st->url);
	if (rc == 0) {
		olen = seal_keyfile_rewrap(blob, len, old, strlen(old), new, strlen(new), kdf, out);
		rc = olen < 0 ? (int)olen : 0;
		if (rc == -EACCES)
			log_error("wrong password for the store at %s", st->url);
	}
	/* One atomic replacement of the key object: a crash leaves the old or
	 * the new password working, never neither. */
	if (rc == 0)
		rc = store_put(st, "zerofs.key", out, (size_t)olen, 0);
	if (rc == 0)
		log_info("the password of %s was changed", st->url);
	store_close(st);
	return rc;
}

/* Lock the cache directory of this filesystem against a second daemon. */
static int lock_cache(struct fs *fs)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/lock", fs->cache_path);
	fs->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fs->lock_fd < 0) {
		int rc = -errno;
		log_error("cannot open %s: %m", path);
		return rc;
	}
	if (flock(fs->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		int rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		log_error("filesystem %s is already mounted by another zerofs-fuse (cache %s is "
			  "locked)",
			  fs->fsid_hex, fs->cache_path);
		return rc;
	}
	return 0;
}

struct orphans {
	uint64_t *v;
	size_t n, cap;
};

static int orphan_add(void *arg, uint64_t ino)
{
	struct orphans *o = arg;
	if (o->n == o->cap) {
		size_t nc = o->cap ? 2 * o->cap : 16;
		uint64_t *nv = realloc(o->v, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		o->v = nv;
		o->cap = nc;
	}
	o->v[o->n++] = ino;
	return 0;
}

/* After recovery: delete inodes that were open but unlinked at a crash, and
 * start a new epoch (segment ids of this mount). */
static int start_epoch(struct fs *fs, uint32_t *epoch)
{
	struct orphans o = {0};
	int rc = idx_inode_orphans(fs->ix, orphan_add, &o);
	for (size_t i = 0; rc == 0 && i < o.n; i++)
		rc = idx_inode_delete(fs->ix, o.v[i]);
	if (o.n)
		log_info("deleted %zu unlinked inodes left by an unclean stop", o.n);
	free(o.v);
	int64_t e = 0;
	if (rc == 0) {
		rc = idx_super_get(fs->ix, "epoch", &e);
		if (rc == -ENOENT)
			rc = 0;
	}
	if (rc == 0 && e + 1 > (int64_t)UINT32_MAX) {
		log_error("mount epochs are exhausted");
		rc = -EOVERFLOW;
	}
	if (rc == 0)
		rc = idx_super_set(fs->ix, "epoch", e + 1);
	*epoch = (uint32_t)(e + 1);
	return rc;
}

static void fs_free(struct fs *fs)
{
	fs_gc_stop(fs);
	fs_replica_stop(fs);
	jnl_free(fs->j);
	data_free(fs->d);
	if (fs->ix && fs->clean_close) {
		if (idx_close_sealed(fs->ix) < 0)
			log_warn("the next mount rebuilds the local index from the store");
	} else if (fs->ix) {
		idx_close(fs->ix);
	}
	lease_free(fs->lease);
	store_close(fs->st);
	if (fs->lock_fd >= 0)
		close(fs->lock_fd);
	for (size_t i = 0; i < REF_BUCKETS; i++)
		for (struct ref *r = fs->refs[i], *n; r; r = n) {
			n = r->next;
			free(r);
		}
	if (fs->read_only && fs->db_path) {
		/* A read-only mount's index is its own: nothing to keep. */
		char p[4200];
		unlink(fs->db_path);
		snprintf(p, sizeof(p), "%s-wal", fs->db_path);
		unlink(p);
		snprintf(p, sizeof(p), "%s-shm", fs->db_path);
		unlink(p);
	}
	free(fs->db_path);
	fs_snap_free(fs);
	free(fs->cache_path);
	free(fs->doomed);
	sodium_memzero(&fs->key, sizeof(fs->key));
	pthread_cond_destroy(&fs->gc_cond);
	pthread_cond_destroy(&fs->replica_cond);
	pthread_mutex_destroy(&fs->gc_mutex);
	pthread_mutex_destroy(&fs->lock);
	free(fs);
}

static int open_key(struct fs *fs, const struct cfg *cfg, const char *password,
		    int create_missing)
{
	uint8_t fsid[SEAL_FSID_BYTES];
	int rc = load_key(fs->st, password, &fs->key, fsid);
	if (rc == -ENOENT) {
		rc = store_is_empty(fs->st);
		if (rc == 0) {
			log_error("%s is not a zerofs-fuse store (it has no zerofs.key)",
				  fs->st->url);
			return -ENOTDIR;
		}
		if (rc < 0)
			return rc;
		if (!create_missing) {
			log_error("%s holds no filesystem; run 'zerofs-fuse mkfs'", fs->st->url);
			return -ENOENT;
		}
		rc = mkfs_store(fs->st, cfg, password);
		if (rc == 0)
			rc = load_key(fs->st, password, &fs->key, fsid);
	}
	if (rc < 0)
		return rc;
	sodium_bin2hex(fs->fsid_hex, sizeof(fs->fsid_hex), fsid, sizeof(fsid));
	enum seal_cipher want = cipher_from_cfg(cfg);
	if (want && want != fs->key.cipher)
		log_warn("cipher = %s applies to new stores only: %s keeps %s", cfg->cipher,
			 fs->st->url, seal_cipher_name(fs->key.cipher));
	return 0;
}

struct fs *fs_open(const struct cfg *cfg, const char *password, int create_missing)
{
	struct jnl_carried *missing = NULL; /* before any goto fail */
	size_t nmissing = 0;
	crashpt_init();
	int rc = seal_init();
	if (rc < 0) {
		errno = -rc;
		return NULL;
	}
	struct fs *fs = calloc(1, sizeof(*fs));
	if (!fs)
		return NULL;
	fs->lock_fd = -1;
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->gc_mutex, NULL);
	pthread_cond_init(&fs->gc_cond, NULL);
	pthread_cond_init(&fs->replica_cond, NULL);
	fs->gc_interval_ms = (uint64_t)cfg->gc_interval_ms;
	fs->gc_grace_ms = (uint64_t)cfg->gc_grace_ms;
	fs->gc_repack_live = (int)cfg->gc_repack_live;
	fs->st = store_open_cfg(cfg, 1);
	if (!fs->st) {
		rc = -errno;
		goto fail;
	}
	rc = open_key(fs, cfg, password, create_missing);
	if (rc < 0)
		goto fail;
	if (asprintf(&fs->cache_path, "%s/%s", cfg->cache_dir, fs->fsid_hex) < 0) {
		fs->cache_path = NULL;
		rc = -ENOMEM;
		goto fail;
	}
	rc = util_mkdir_p(fs->cache_path, 0700);
	if (rc < 0) {
		log_error("cannot create the cache directory %s: %s", fs->cache_path,
			  strerror(-rc));
		goto fail;
	}
	fs->read_only = cfg->ro || (cfg->snapshot && *cfg->snapshot);
	fs->replica = fs->read_only && !(cfg->snapshot && *cfg->snapshot);
	fs->replica_poll_ms = (uint64_t)cfg->replica_poll_ms;
	uint64_t seq = 0, ckpt = 0;
	if (fs->read_only) {
		/* No lease and no lock: a read-only mount writes nothing to the
		 * store, and its index is its own file, removed at close. */
		if (asprintf(&fs->db_path, "%s/ro-%ld.db", fs->cache_path, (long)getpid()) < 0) {
			fs->db_path = NULL;
			rc = -ENOMEM;
			goto fail;
		}
		if (fs->replica)
			rc = jnl_recover(fs->st, &fs->key, fs->db_path, fs->fsid_hex, &fs->ix, &seq,
					 &ckpt, &missing, &nmissing);
		else
			rc = jnl_load_snapshot(fs->st, &fs->key, cfg->snapshot, fs->db_path, &fs->ix,
					       &seq);
		if (rc < 0)
			goto fail;
	} else {
		rc = lock_cache(fs);
		if (rc < 0)
			goto fail;
		/* The writer lease, before anything is read for writing: a second
		 * writer is refused here, and a fenced one can write nothing more
		 * through the guard store. */
		rc = lease_take(fs->st, cfg->force_takeover, &fs->lease);
		if (rc < 0)
			goto fail;
		struct store *guard = lease_guard(fs->lease, fs->st);
		if (!guard) {
			rc = -errno;
			goto fail;
		}
		fs->st = guard;
		if (asprintf(&fs->db_path, "%s/index.db", fs->cache_path) < 0) {
			fs->db_path = NULL;
			rc = -ENOMEM;
			goto fail;
		}
		rc = jnl_recover(fs->st, &fs->key, fs->db_path, fs->fsid_hex, &fs->ix, &seq, &ckpt,
				 &missing, &nmissing);
		if (rc < 0)
			goto fail;
	}
	int64_t format = 0;
	if (idx_super_get(fs->ix, "format", &format) < 0 || format > FS_FORMAT) {
		log_error("the index format %" PRId64 " is newer than this zerofs-fuse supports",
			  format);
		rc = -EPROTONOSUPPORT;
		goto fail;
	}
	struct data_params dp = {
		.segment_size = (uint64_t)cfg->segment_size,
		.cache_size = (uint64_t)cfg->cache_size,
		.dirty_limit = (uint64_t)cfg->dirty_limit,
		.compress = cfg->compress,
		.upload_threads = (int)cfg->store_parallel,
		.store_wait_ms = (uint64_t)cfg->store_timeout_ms,
	};
	if (!fs->read_only) {
		rc = start_epoch(fs, &dp.epoch);
		fs->epoch = dp.epoch;
		if (rc == 0)
			rc = lease_set_epoch(fs->lease, dp.epoch);
		if (rc < 0)
			goto fail;
	}
	fs->d = data_new(fs->st, &fs->key, fs->ix, &fs->lock, &dp);
	if (!fs->d) {
		rc = -errno;
		goto fail;
	}
	/* Segments that replayed logs carry and the store lacks: a writer
	 * stores them before it serves anything; a read-only mount keeps them
	 * in memory. */
	if (nmissing) {
		pthread_mutex_lock(&fs->lock);
		for (size_t i = 0; rc == 0 && i < nmissing; i++)
			rc = data_adopt(fs->d, missing[i].id, missing[i].obj, missing[i].len,
					!fs->read_only);
		if (rc == 0 && !fs->read_only)
			rc = data_wait_stored(fs->d, data_sealno(fs->d));
		pthread_mutex_unlock(&fs->lock);
		jnl_carried_free(missing, nmissing);
		missing = NULL;
		nmissing = 0;
		if (rc < 0)
			goto fail;
	}
	struct jnl_params jp = {
		.checkpoint_interval = (uint64_t)cfg->checkpoint_interval,
		.barrier_interval_ms =
			cfg->no_periodic_barrier ? 0 : (uint64_t)cfg->barrier_interval_ms,
		.lease = fs->lease,
		.read_only = fs->read_only,
	};
	if (fs->read_only)
		jp.barrier_interval_ms = 0;
	fs->j = jnl_new(fs->st, &fs->key, fs->ix, fs->d, &fs->lock, &jp, seq, ckpt);
	if (!fs->j) {
		rc = -errno;
		goto fail;
	}
	if (fs->read_only) {
		rc = fs->replica ? fs_replica_start(fs) : 0;
		if (rc < 0)
			goto fail;
		log_info("mounted filesystem %s from %s read-only (%s, barrier %016" PRIx64 ")",
			 fs->fsid_hex, fs->st->url,
			 fs->replica ? "replica" : cfg->snapshot, seq);
		return fs;
	}
	pthread_mutex_lock(&fs->lock);
	rc = jnl_mark_clean(fs->j, 0);
	int caps = rc == 0 ? idx_xattr_name_used(fs->ix, CAPS_XATTR) : 0;
	pthread_mutex_unlock(&fs->lock);
	if (caps < 0)
		rc = caps;
	atomic_store(&fs->no_caps, caps == 0);
	/* The new epoch must be durable before anything of it is uploaded. */
	if (rc == 0)
		rc = jnl_sync(fs->j);
	if (rc < 0)
		goto fail;
	rc = fs_gc_start(fs);
	if (rc < 0)
		goto fail;
	log_info("mounted filesystem %s from %s (epoch %u, barrier %016" PRIx64 ")",
		 fs->fsid_hex, fs->st->url, dp.epoch, seq + 1);
	return fs;
fail:
	jnl_carried_free(missing, nmissing);
	fs_free(fs);
	errno = -rc;
	return NULL;
}

void fs_abort(struct fs *fs)
{
	log_warn("closing without a last barrier: changes since the previous one are dropped");
	fs_free(fs);
}

int fs_read_only(struct fs *fs)
{
	return fs->read_only;
}

int fs_close(struct fs *fs)
{
	fs_gc_stop(fs);
	if (fs->read_only) {
		fs_replica_stop(fs);
		fs_free(fs);
		return 0;
	}
	int rc = jnl_sync_stored(fs->j);
	if (rc == 0) {
		pthread_mutex_lock(&fs->lock);
		rc = jnl_mark_clean(fs->j, 1);
		pthread_mutex_unlock(&fs->lock);
		fs->clean_close = rc == 0;
	} else {
		log_error("the last barrier failed (%s): changes since the previous barrier are "
			  "lost",
			  strerror(-rc));
	}
	/* fs_free releases the writer lease, once the uploaders have stopped. */
	fs_free(fs);
	return rc;
}

void fs_set_kernel_times(struct fs *fs, int on)
{
	LOCK_GUARD(&fs->lock);
	fs->kernel_times = on;
}

void fs_get_stats(struct fs *fs, struct fs_stats *out)
{
	struct data_stats ds;
	struct jnl_stats js;
	memset(out, 0, sizeof(*out));
	jnl_get_stats(fs->j, &js);
	store_get_counters(fs->st, &out->store);
	LOCK_GUARD(&fs->lock);
	out->gc = fs->gc_shown;
	out->gc_passes = fs->gc_passes_shown;
	if (fs->replica) {
		out->replica_lag_ms = (util_now_ns() - fs->replica_last_ok_ns) / 1000000;
		out->replica_applied = fs->replica_applied;
	}
	data_get_stats(fs->d, &ds);
	idx_inode_count(fs->ix, &out->inodes);
	idx_live_bytes(fs->ix, &out->live_bytes);
	out->reads = fs->reads;
	out->writes = fs->writes;
	out->read_bytes = fs->read_bytes;
	out->write_bytes = fs->write_bytes;
	out->syncs = fs->syncs;
	out->barriers = js.barriers;
	out->barriers_failed = js.failed;
	out->barrier_last_ns = js.last_ns;
	out->barrier_p50_us = js.p50_us;
	out->barrier_p90_us = js.p90_us;
	out->barrier_p99_us = js.p99_us;
	out->log_seq = js.seq;
	out->dirty_bytes = ds.dirty_bytes;
	out->pending_bytes = ds.pending_bytes;
	out->segments_stored = ds.segments_stored;
	out->upload_errors = ds.store_errors;
	out->cache_hits = ds.cache_hits;
	out->cache_misses = ds.cache_misses;
}

char *fs_stats_text(struct fs *fs)
{
	struct fs_stats s;
	fs_get_stats(fs, &s);
	const struct {
		const char *name;
		uint64_t v;
	} rows[] = {
		{"reads", s.reads},
		{"writes", s.writes},
		{"read_bytes", s.read_bytes},
		{"write_bytes", s.write_bytes},
		{"fsyncs", s.syncs},
		{"barriers", s.barriers},
		{"barriers_failed", s.barriers_failed},
		{"barrier_last_us", s.barrier_last_ns / 1000},
		{"barrier_p50_us", s.barrier_p50_us},
		{"barrier_p90_us", s.barrier_p90_us},
		{"barrier_p99_us", s.barrier_p99_us},
		{"index_log_seq", s.log_seq},
		{"dirty_bytes", s.dirty_bytes},
		{"pending_upload_bytes", s.pending_bytes},
		{"segments_stored", s.segments_stored},
		{"upload_errors", s.upload_errors},
		{"cache_hits", s.cache_hits},
		{"cache_misses", s.cache_misses},
		{"inodes", s.inodes},
		{"live_bytes", s.live_bytes},
		{"gc_passes", s.gc_passes},
		{"gc_segments_dropped", s.gc.dead_segments},
		{"gc_objects_deleted", s.gc.deleted_objects},
		{"gc_bytes_deleted", s.gc.deleted_bytes},
		{"gc_segments_repacked", s.gc.repacked_segments},
		{"gc_blocks_moved", s.gc.moved_blocks},
		{"gc_orphans_deleted", s.gc.orphans},
		{"gc_deletes_waiting", s.gc.waiting},
		{"replica_lag_ms", s.replica_lag_ms},
		{"replica_applied", s.replica_applied},
		{"store_gets", s.store.gets},
		{"store_puts", s.store.puts},
		{"store_deletes", s.store.dels},
		{"store_lists", s.store.lists},
		{"store_heads", s.store.stats},
		{"store_errors", s.store.errors},
		{"store_retries", s.store.retries},
		{"store_bytes_in", s.store.bytes_in},
		{"store_bytes_out", s.store.bytes_out},
	};
	size_t cap = ARRAY_SIZE(rows) * 48 + 1, len = 0;
	char *out = malloc(cap);
	if (!out)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
		len += (size_t)snprintf(out + len, cap - len, "%s %" PRIu64 "\n", rows[i].name,
					rows[i].v);
	return out;
}
