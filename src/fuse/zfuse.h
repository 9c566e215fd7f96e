/* zfuse.h: the FUSE front end: the low-level operations table over fs/,
 * and the session's life (mount, loop, unmount).
 *
 * Locking: the operations run on libfuse's worker threads and call only
 * the thread-safe fs_* functions. */
#ifndef ZEROFS_ZFUSE_H
#define ZEROFS_ZFUSE_H

#include "cfg.h"
#include "fs/fs.h"

struct zfuse;

/* Create the session: parses the mount options (extra_opts: passed on to
 * FUSE, comma-separated, may be empty) so that a bad one is reported before
 * the store is touched.  NULL with errno set and a message logged. */
struct zfuse *zfuse_new(const struct cfg *cfg, const char *extra_opts, int debug);
/* Block SIGTERM, SIGINT and SIGHUP in the calling thread and the threads it
 * starts afterwards: call before any thread exists.  zfuse_mount's signal
 * thread then takes them and unmounts cleanly. */
void zfuse_block_signals(void);
/* Serve fs on mountpoint.  0 or -errno with a message logged. */
int zfuse_mount(struct zfuse *zf, struct fs *fs, const char *mountpoint);
/* Serve requests until unmounted or signalled; then unmount.  0 or -errno. */
int zfuse_loop(struct zfuse *zf, const struct cfg *cfg);
void zfuse_free(struct zfuse *zf);

/* Drop the kernel's cached pages of inode ino in [off, off + len), after
 * something other than FUSE (the NBD server) changed them.  Safe from any
 * thread except a FUSE request handler (the kernel may wait on that very
 * request); a no-op before the kernel's INIT and after unmounting.  zf is the
 * struct zfuse, typed void * so that this serves as an NBD server hook. */
void zfuse_invalidate(void *zf, uint64_t ino, uint64_t off, uint64_t len);

/* Check that path can be mounted on: an existing directory that is not
 * already a mount point.  0 or -errno with a message logged. */
int zfuse_check_mountpoint(const char *path);

#endif
