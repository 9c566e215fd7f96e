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
/* Serve fs on mountpoint.  0 or -errno with a message logged. */
int zfuse_mount(struct zfuse *zf, struct fs *fs, const char *mountpoint);
/* Serve requests until unmounted or signalled; then unmount.  0 or -errno. */
int zfuse_loop(struct zfuse *zf, const struct cfg *cfg);
void zfuse_free(struct zfuse *zf);

/* Check that path can be mounted on: an existing directory that is not
 * already a mount point.  0 or -errno with a message logged. */
int zfuse_check_mountpoint(const char *path);

#endif
