/* stats_http.h: the statistics of a mount (fs_get_stats) as Prometheus text
 * exposition format, served over HTTP at GET /metrics on the stats_listen
 * address.
 *
 * One thread accepts and answers one request per connection, in turn.  A
 * request is read with a size bound and a deadline, so a slow or hostile
 * client delays the others by at most that deadline and cannot grow memory;
 * anything but GET /metrics gets a 404 or 400.
 *
 * Locking: stats_http_start and stats_http_stop are called by the one thread
 * that mounts and unmounts; the serving thread only reads the fs through
 * fs_get_stats, which takes the fs's own locks.  The fs must outlive the
 * server: stop it before fs_close. */
#ifndef ZEROFS_STATS_HTTP_H
#define ZEROFS_STATS_HTTP_H

#include <stddef.h>

struct fs;
struct stats_http;

/* Listen on "HOST:PORT" or "[V6]:PORT" and start the serving thread.
 * Returns NULL with errno set, after logging why. */
struct stats_http *stats_http_start(struct fs *fs, const char *listen);

/* Stop the thread, close the listener and free the server; NULL is a no-op. */
void stats_http_stop(struct stats_http *sh);

/* The metrics text of fs (malloc'd, NUL-terminated); NULL on ENOMEM. */
char *stats_http_metrics(struct fs *fs);

#endif
