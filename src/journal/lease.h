/* lease.h: the single-writer lease of a store (DESIGN.md, "lease").
 *
 * The object "lease" names the mount that may write: a few "key value"
 * lines (format, state held|released, gen, epoch, host, pid, the pid's start
 * time and the boot id, since, and a random token).  It is only ever written
 * with conditional puts: If-None-Match: * when absent, If-Match: ETAG of the
 * version we read (to take a released or stale lease, to take one over with
 * force_takeover, to record the epoch, to release it).  gen grows by one at
 * each take.
 *
 *   state     how it is taken                    by whom
 *   --------  ---------------------------------  --------------------------
 *   absent    If-None-Match: *                    anyone
 *   released  If-Match: its etag                  anyone
 *   held      If-Match, when the holder is this   the next mount on this host
 *             host and boot and its process is    (a crash left it)
 *             gone
 *   held      If-Match, with force_takeover       anyone: the holder is fenced
 *
 * Fencing: a writer calls lease_check before a barrier writes its index
 * log.  It reads the lease (a GET: no write load on the store, see lease.c)
 * and compares the etag with its own; another etag means another mount took
 * the lease: the check fails with -EIO, the log says "fenced by HOST/PID",
 * and from then on every write through lease_guard's store fails.
 *
 * A conditional put retried after its answer was lost sees 412 for its own
 * write; every conditional put here re-reads the lease on 412 and counts a
 * byte-identical object as its own success (each body holds a new token).
 *
 * Locking: lease_check, the guard store and lease_set_epoch may run on any
 * threads; the lease's mutex guards its etag, body and fenced state.  Take,
 * release and free run alone (mount and unmount). */
#ifndef ZEROFS_LEASE_H
#define ZEROFS_LEASE_H

#include <stdint.h>

#include "store/store.h"

struct lease;

/* Check that st honours conditional puts, then take its lease (force: even
 * from a live holder).  0 with *out set; -EBUSY when another mount holds it
 * (logged with the holder's host, pid and since when); -ENOTSUP when the
 * store ignores conditional puts (logged, with why that matters); -errno.
 * The lease keeps st, which must outlive it. */
int lease_take(struct store *st, int force, struct lease **out);

/* Record the mount's epoch in the lease (a conditional renewal).  0, -EIO
 * when fenced, -errno. */
int lease_set_epoch(struct lease *l, uint32_t epoch);

/* Is the lease still ours?  0; -EIO once fenced (logged once); -errno when
 * the store could not be asked (not fenced: a later check asks again). */
int lease_check(struct lease *l);

/* Mark this mount fenced (another writer's index object was found where
 * ours was to go), saying why.  From then on lease_check fails and every
 * write through the guard store fails. */
void lease_fence(struct lease *l, const char *why);

/* A store that passes everything to inner (which it owns and closes) but
 * fails writes with -EIO once l is fenced.  NULL with errno set; inner is
 * then still the caller's. */
struct store *lease_guard(struct lease *l, struct store *inner);

/* Mark the lease released (clean unmount).  0, or -errno (logged). */
int lease_release(struct lease *l);

/* Release if still held and not fenced, then free.  NULL is allowed. */
void lease_free(struct lease *l);

#endif
