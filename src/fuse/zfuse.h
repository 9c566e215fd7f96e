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

/* Create the session and mount it.  extra_opts are mount options passed
 * on to FUSE (comma-separated, may be empty).  NULL with errno set and a
 * message logged (missing or busy mountpoint, no /dev/fuse, ...). */
struct zfuse *zfuse_mount(struct fs *fs, const struct cfg *cfg, const char *mountpoint,
			  const char *extra_opts, int debug);
/* Serve requests until unmounted or signalled; then unmount.  0 or -errno. */
int zfuse_loop(struct zfuse *zf, const struct cfg *cfg);
void zfuse_free(struct zfuse *zf);

/* Check that path can be mounted on: an existing directory that is not
 * already a mount point.  0 or -errno with a message logged. */
int zfuse_check_mountpoint(const char *path);

#endif
