/* nbds.h: the NBD server inside the daemon.  It exports the regular files of
 * the mount's .nbd/ directory (export name = file name) over TCP and/or a
 * Unix socket, calling fs/ directly.  One thread accepts; each connection
 * has a reader thread that parses requests and a pool of workers that run
 * them and reply as they complete, so several requests are in flight.
 *
 * Locking: nbds_start and nbds_stop are called by one thread (the daemon's
 * main thread).  Internally a server lock guards the list of connections and
 * each connection has a queue lock and a reply lock (one reply on the wire at
 * a time); fs_* calls are made with none of them held.  The invalidate hook
 * is called from worker threads, never under any of these locks. */
#ifndef ZEROFS_NBDS_H
#define ZEROFS_NBDS_H

#include <stdint.h>

#include "fs/fs.h"

struct nbds;

/* Called after an NBD request changed bytes [off, off + len) of inode ino,
 * so that other views of the file (the kernel's FUSE page cache) drop them. */
typedef void (*nbds_invalidate_fn)(void *arg, uint64_t ino, uint64_t off, uint64_t len);

struct nbds_conf {
	const char *listen;    /* "HOST:PORT" ("[V6]:PORT"); NULL or "" for none */
	int listen_optional;   /* if listen's address is in use, warn and go on */
	const char *socket;    /* Unix socket path; NULL or "" for none */
	int threads;           /* workers per connection */
	nbds_invalidate_fn invalidate;
	void *invalidate_arg;
};

/* Create .nbd/ in the root if missing (always: it is where device files
 * live), bind the listeners and start accepting.  NULL with errno set and a
 * message logged.  With no listener configured (or an optional one that was
 * busy) returns a server that does nothing. */
struct nbds *nbds_start(struct fs *fs, const struct nbds_conf *conf);
/* Stop accepting, end every connection after its in-flight requests are
 * answered, and free the server.  NULL is allowed. */
void nbds_stop(struct nbds *s);

#endif
