/* lease.c: the single-writer lease; the protocol is described in lease.h.
 *
 * Why lease_check is a GET and not a renewing PUT with If-Match: both are
 * a check followed by a separate write of the index log, so neither closes
 * the window between them (a takeover that lands in it is caught by the
 * next barrier, and a log the fenced writer stores in it is one barrier of
 * its own that the new writer may overwrite); the GET writes nothing.
 * Measured by tests/t-lease.sh (it logs both): on the directory store a GET
 * took 32 us and a conditional PUT 1.6 ms (fsyncs); on the single-node
 * radosgw a GET 1.7 ms and a conditional PUT 6.6 ms (GETs took 45 ms
 * before store_s3.c acknowledged answers at once: see ack_now there).
 * A barrier checks at most once a second (journal.c, LEASE_RECHECK_NS). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "journal/lease.h"
#include "log.h"

#define LEASE_KEY "lease"
#define LEASE_FORMAT 1
#define BODY_MAX 1024
#define HOST_MAX 256

struct lease_info {
	int held;
	uint64_t gen;
	uint32_t epoch;
	char host[HOST_MAX];
	long pid;
	unsigned long long start; /* the pid's start time, clock ticks after boot */
	char boot[64];
	long long since;
	char token[40];
};

struct lease {
	struct store *st;
	pthread_mutex_t m; /* everything below */
	struct lease_info me;
	char etag[STORE_ETAG_MAX];
	char body[BODY_MAX];
	size_t len;
	int held, fenced;
};

struct lease_guard {
	struct store base;
	struct store *inner;
	struct lease *l;
};

static void read_line(const char *path, char *out, size_t len)
{
	FILE *f = fopen(path, "re");

	out[0] = '\0';
	if (f) {
		if (fgets(out, (int)len, f))
			out[strcspn(out, "\n")] = '\0';
		fclose(f);
	}
}

/* Start time of pid (field 22 of /proc/PID/stat), 0 if it is gone. */
static unsigned long long pid_start(long pid)
{
	char path[64], buf[1024];
	const char *p;
	unsigned long long v = 0;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	read_line(path, buf, sizeof(buf));
	p = strrchr(buf, ')');
	if (!p)
		return 0;
	/* After ") ", fields 3 onwards; the start time is field 22.  A process
	 * killed but not yet reaped (zombie, or dead) holds nothing: it reads
	 * as gone. */
	p += 2;
	if (*p == 'Z' || *p == 'X' || *p == 'x')
		return 0;
	for (int field = 3; field < 22 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (p)
		v = strtoull(p, NULL, 10);
	return v;
}

static void fill_me(struct lease_info *me)
{
	unsigned char rnd[16];

	memset(me, 0, sizeof(*me));
	if (gethostname(me->host, sizeof(me->host) - 1) < 0 || !me->host[0])
		snprintf(me->host, sizeof(me->host), "unknown-host");
	for (char *p = me->host; *p; p++)
		if (*p == ' ' || *p == '\n')
			*p = '_';
	me->pid = (long)getpid();
	me->start = pid_start(me->pid);
	read_line("/proc/sys/kernel/random/boot_id", me->boot, sizeof(me->boot));
	if (!me->boot[0])
		snprintf(me->boot, sizeof(me->boot), "unknown");
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
		uint64_t t = util_now_ns();

		memcpy(rnd, &t, sizeof(t));
		memcpy(rnd + 8, &me->pid, sizeof(me->pid) < 8 ? sizeof(me->pid) : 8);
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(me->token + 2 * i, 3, "%02x", rnd[i]);
}

static size_t format_body(char *buf, const struct lease_info *i)
{
	int n = snprintf(buf, BODY_MAX,
			 "zerofs-lease %d\nstate %s\ngen %" PRIu64 "\nepoch %" PRIu32
			 "\nhost %s\npid %ld\nstart %llu\nboot %s\nsince %lld\ntoken %s\n",
			 LEASE_FORMAT, i->held ? "held" : "released", i->gen, i->epoch, i->host,
			 i->pid, i->start, i->boot, i->since, i->token);

	return n < 0 || n >= BODY_MAX ? BODY_MAX - 1 : (size_t)n;
}

/* Parse a lease body.  0 or -EINVAL (damaged or of an unknown format). */
static int parse_body(const char *data, size_t len, struct lease_info *i)
{
	char buf[BODY_MAX];
	int format = 0;

	if (len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, data, len);
	buf[len] = '\0';
	memset(i, 0, sizeof(*i));
	for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save)) {
		char *v = strchr(l, ' ');

		if (!v)
			continue;
		*v++ = '\0';
		if (strcmp(l, "zerofs-lease") == 0)
			format = atoi(v);
		else if (strcmp(l, "state") == 0)
			i->held = strcmp(v, "held") == 0;
		else if (strcmp(l, "gen") == 0)
			i->gen = strtoull(v, NULL, 10);
		else if (strcmp(l, "epoch") == 0)
			i->epoch = (uint32_t)strtoul(v, NULL, 10);
		else if (strcmp(l, "host") == 0)
			snprintf(i->host, sizeof(i->host), "%s", v);
		else if (strcmp(l, "pid") == 0)
			i->pid = strtol(v, NULL, 10);
		else if (strcmp(l, "start") == 0)
			i->start = strtoull(v, NULL, 10);
		else if (strcmp(l, "boot") == 0)
			snprintf(i->boot, sizeof(i->boot), "%s", v);
		else if (strcmp(l, "since") == 0)
			i->since = strtoll(v, NULL, 10);
		else if (strcmp(l, "token") == 0)
			snprintf(i->token, sizeof(i->token), "%s", v);
	}
	return format == LEASE_FORMAT && i->host[0] && i->token[0] ? 0 : -EINVAL;
}

static void fmt_since(long long since, char *buf, size_t len)
{
	time_t t = (time_t)since;
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(buf, len, "%lld", since);
}

/* A conditional put that survives its own lost answer: on 412 (or 404 for
 * an If-Match put) the object is read back, and if it is byte for byte what
 * we put, the put was ours and succeeded (a retry after a lost answer). */
static int put_cond_own(struct store *st, const char *key, const char *body, size_t len,
			const char *if_match, char etag[STORE_ETAG_MAX])
{
	CLEANUP_FREE void *cur = NULL;
	size_t clen;
	int rc = store_put_cond(st, key, body, len, if_match, etag);
	int rr;

	if (rc != -EEXIST && !(rc == -ENOENT && if_match))
		return rc;
	rr = store_get_etag(st, key, &cur, &clen, etag);
	if (rr == 0 && clen == len && memcmp(cur, body, len) == 0) {
		log_debug("store %s: conditional put of %s: 412 for our own write (a retry after "
			  "a lost answer); it succeeded",
			  st->url, key);
		return 0;
	}
	return rr < 0 && rr != -ENOENT ? rr : rc;
}

/* Does st honour conditional puts?  Without them two writers could both
 * believe they hold the lease, and a fenced writer would not be stopped:
 * their index logs would interleave and corrupt the filesystem. */
static int probe_cond(struct store *st, const char *token)
{
	char key[80], body[3][96], e1[STORE_ETAG_MAX], e2[STORE_ETAG_MAX];
	const char *why = NULL;
	int rc;

	snprintf(key, sizeof(key), "lease-probe-%s", token);
	for (int i = 0; i < 3; i++)
		snprintf(body[i], sizeof(body[i]), "zerofs conditional put probe %d %s\n", i,
			 token);
	rc = put_cond_own(st, key, body[0], strlen(body[0]), NULL, e1);
	if (rc == -ENOTSUP)
		why = "this store backend has no conditional puts";
	else if (rc < 0)
		goto out;
	if (!why) {
		rc = put_cond_own(st, key, body[1], strlen(body[1]), NULL, e2);
		if (rc == 0)
			why = "a PUT with If-None-Match: * replaced an existing object";
	}
	if (!why && rc == -EEXIST) {
		rc = put_cond_own(st, key, body[1], strlen(body[1]), "0123456789abcdef", e2);
		if (rc == 0)
			why = "a PUT with a wrong If-Match etag replaced the object";
	}
	if (!why && rc == -EEXIST) {
		rc = put_cond_own(st, key, body[2], strlen(body[2]), e1, e2);
		if (rc == -EEXIST)
			why = "a PUT with the object's own etag in If-Match was refused";
	}
	store_del(st, key);
	if (why) {
		log_error(
			"store %s does not honour conditional PUT (%s): a read-write mount "
			"needs it for its writer lease, which keeps a second writer out and stops "
			"a fenced one; without it two mounts could write the same index and "
			"corrupt the filesystem",
			st->url, why);
		return -ENOTSUP;
	}
out:
	if (rc < 0)
		log_error("store %s: cannot check conditional PUT support: %s", st->url,
			  strerror(-rc));
	return rc;
}

/* A holder left behind by a crash on this very machine (same host and boot,
 * and its process is gone or is another one now). */
static int holder_is_dead(const struct lease_info *h, const struct lease_info *me)
{
	if (strcmp(h->host, me->host) != 0 || strcmp(h->boot, me->boot) != 0)
		return 0;
	if (h->pid == me->pid && h->start == me->start)
		return 0;
	if (kill((pid_t)h->pid, 0) < 0 && errno == ESRCH)
		return 1;
	return pid_start(h->pid) != h->start;
}

/* Decide whether the lease found in the store may be taken.  0, -EBUSY. */
static int may_take(struct store *st, const struct lease_info *h, const struct lease_info *me,
		    int force)
{
	char since[64];

	if (!h->held)
		return 0;
	fmt_since(h->since, since, sizeof(since));
	if (holder_is_dead(h, me)) {
		log_warn("store %s: taking over the lease of %s pid %ld (since %s), which is no "
			 "longer running",
			 st->url, h->host, h->pid, since);
		return 0;
	}
	if (force) {
		log_warn("store %s: force_takeover: taking the lease from %s pid %ld (held since "
			 "%s, epoch %" PRIu32 "); that writer is fenced",
			 st->url, h->host, h->pid, since, h->epoch);
		return 0;
	}
	log_error("store %s is in use: its writer lease is held by %s pid %ld since %s (epoch "
		  "%" PRIu32 "); a second read-write mount is refused (if that writer is gone for "
		  "good, mount with -o force_takeover)",
		  st->url, h->host, h->pid, since, h->epoch);
	return -EBUSY;
}

static int take(struct lease *l, int force)
{
	for (int tries = 0; tries < 4; tries++) {
		CLEANUP_FREE void *data = NULL;
		char etag[STORE_ETAG_MAX] = "";
		struct lease_info h;
		size_t len;
		int rc = store_get_etag(l->st, LEASE_KEY, &data, &len, etag);

		l->me.gen = 1;
		if (rc == 0) {
			if (parse_body(data, len, &h) < 0) {
				if (!force) {
					log_error("store %s: the lease object is damaged or of a "
						  "newer format; mount with -o force_takeover to "
						  "replace it",
						  l->st->url);
					return -EUCLEAN;
				}
				memset(&h, 0, sizeof(h));
			}
			rc = may_take(l->st, &h, &l->me, force);
			if (rc < 0)
				return rc;
			l->me.gen = h.gen + 1;
		} else if (rc != -ENOENT) {
			log_error("store %s: cannot read the lease: %s", l->st->url, strerror(-rc));
			return rc;
		}
		l->me.held = 1;
		l->me.since = (long long)time(NULL);
		l->len = format_body(l->body, &l->me);
		rc = put_cond_own(l->st, LEASE_KEY, l->body, l->len, etag[0] ? etag : NULL,
				  l->etag);
		if (rc == 0) {
			l->held = 1;
			log_info("store %s: took the writer lease (gen %" PRIu64 ")", l->st->url,
				 l->me.gen);
			return 0;
		}
		if (rc != -EEXIST && rc != -ENOENT) {
			log_error("store %s: cannot write the lease: %s", l->st->url,
				  strerror(-rc));
			return rc;
		}
		/* Someone else wrote it between our read and our put: look again. */
	}
	log_error("store %s: the lease keeps changing under us; another mount is starting",
		  l->st->url);
	return -EBUSY;
}

int lease_take(struct store *st, int force, struct lease **out)
{
	struct lease *l = calloc(1, sizeof(*l));
	int rc;

	if (!l)
		return -ENOMEM;
	l->st = st;
	pthread_mutex_init(&l->m, NULL);
	fill_me(&l->me);
	rc = probe_cond(st, l->me.token);
	if (rc == 0)
		rc = take(l, force);
	if (rc < 0) {
		pthread_mutex_destroy(&l->m);
		free(l);
		return rc;
	}
	*out = l;
	return 0;
}

/* Caller holds l->m.  Mark fenced and say by whom, once. */
/* Caller holds l->m.  why (or NULL) says how the fence was found. */
static void fence_why(struct lease *l, const void *data, size_t len, const char *why)
{
	struct lease_info h;
	char since[64];

	if (l->fenced)
		return;
	l->fenced = 1;
	if (data && parse_body(data, len, &h) == 0) {
		fmt_since(h.since, since, sizeof(since));
		log_error("store %s: fenced by %s/%ld: that mount took the writer lease at %s "
			  "(%s)%s%s; this mount writes nothing more and its barriers fail",
			  l->st->url, h.host, h.pid, since, h.held ? "held" : "released since",
			  why ? " and " : "", why ? why : "");
	} else if (why) {
		log_error("store %s: fenced: %s; this mount writes nothing more and its barriers "
			  "fail",
			  l->st->url, why);
	} else {
		log_error("store %s: fenced by an unknown writer: the lease object is %s; this "
			  "mount writes nothing more and its barriers fail",
			  l->st->url, data ? "damaged" : "gone");
	}
}

static void fence(struct lease *l, const void *data, size_t len)
{
	fence_why(l, data, len, NULL);
}

void lease_fence(struct lease *l, const char *why)
{
	CLEANUP_FREE void *data = NULL;
	char etag[STORE_ETAG_MAX];
	size_t len = 0;

	/* Name the mount that took over, when the lease says who. */
	int rc = store_get_etag(l->st, LEASE_KEY, &data, &len, etag);
	pthread_mutex_lock(&l->m);
	int other = rc == 0 && strcmp(etag, l->etag) != 0 &&
		    !(len == l->len && memcmp(data, l->body, len) == 0);
	fence_why(l, other ? data : NULL, other ? len : 0, why);
	pthread_mutex_unlock(&l->m);
}

int lease_check(struct lease *l)
{
	CLEANUP_FREE void *data = NULL;
	char etag[STORE_ETAG_MAX];
	uint64_t t0 = util_now_ns();
	size_t len;
	int rc;

	pthread_mutex_lock(&l->m);
	if (l->fenced) {
		pthread_mutex_unlock(&l->m);
		return -EIO;
	}
	pthread_mutex_unlock(&l->m);
	rc = store_get_etag(l->st, LEASE_KEY, &data, &len, etag);
	log_debug("lease check (GET) took %" PRIu64 " us", (util_now_ns() - t0) / 1000);
	if (rc < 0 && rc != -ENOENT) {
		log_error("store %s: cannot check the writer lease: %s", l->st->url, strerror(-rc));
		return rc;
	}
	pthread_mutex_lock(&l->m);
	if (rc == 0 && strcmp(etag, l->etag) == 0) {
		pthread_mutex_unlock(&l->m);
		return 0;
	}
	/* Our own renewal may have raced this read; the content decides. */
	if (rc == 0 && len == l->len && memcmp(data, l->body, len) == 0) {
		pthread_mutex_unlock(&l->m);
		return 0;
	}
	fence(l, rc == 0 ? data : NULL, rc == 0 ? len : 0);
	pthread_mutex_unlock(&l->m);
	return -EIO;
}

/* Rewrite our lease with new content (epoch, release).  Caller holds l->m. */
static int rewrite(struct lease *l, const struct lease_info *next)
{
	char body[BODY_MAX], etag[STORE_ETAG_MAX];
	size_t len = format_body(body, next);
	uint64_t t0 = util_now_ns();
	int rc;

	if (l->fenced)
		return -EIO;
	rc = put_cond_own(l->st, LEASE_KEY, body, len, l->etag, etag);
	log_debug("lease renewal (PUT If-Match) took %" PRIu64 " us", (util_now_ns() - t0) / 1000);
	if (rc == -EEXIST || rc == -ENOENT) {
		CLEANUP_FREE void *data = NULL;
		size_t dlen = 0;
		int rr = store_get_etag(l->st, LEASE_KEY, &data, &dlen, etag);

		fence(l, rr == 0 ? data : NULL, rr == 0 ? dlen : 0);
		return -EIO;
	}
	if (rc < 0) {
		log_error("store %s: cannot update the writer lease: %s", l->st->url,
			  strerror(-rc));
		return rc;
	}
	memcpy(l->body, body, len);
	l->len = len;
	memcpy(l->etag, etag, sizeof(etag));
	l->me = *next;
	return 0;
}

int lease_set_epoch(struct lease *l, uint32_t epoch)
{
	struct lease_info next;
	int rc;

	pthread_mutex_lock(&l->m);
	next = l->me;
	next.epoch = epoch;
	rc = rewrite(l, &next);
	pthread_mutex_unlock(&l->m);
	return rc;
}

int lease_release(struct lease *l)
{
	struct lease_info next;
	int rc = 0;

	pthread_mutex_lock(&l->m);
	if (l->held && !l->fenced) {
		next = l->me;
		next.held = 0;
		next.since = (long long)time(NULL);
		rc = rewrite(l, &next);
		if (rc == 0) {
			l->held = 0;
			log_info("store %s: released the writer lease", l->st->url);
		}
	}
	pthread_mutex_unlock(&l->m);
	return rc;
}

void lease_free(struct lease *l)
{
	if (!l)
		return;
	lease_release(l);
	pthread_mutex_destroy(&l->m);
	free(l);
}

/* ---- the guard store ---- */

static struct lease_guard *to_guard(struct store *st)
{
	return (struct lease_guard *)st;
}

static int fenced(struct lease_guard *g)
{
	int f;

	pthread_mutex_lock(&g->l->m);
	f = g->l->fenced;
	pthread_mutex_unlock(&g->l->m);
	return f;
}

static ssize_t guard_get(struct store *st, const char *key, uint64_t off, size_t len, void *buf)
{
	struct store *in = to_guard(st)->inner;

	return in->ops->get(in, key, off, len, buf);
}

static int guard_get_all(struct store *st, const char *key, void **data, size_t *len)
{
	struct store *in = to_guard(st)->inner;

	return in->ops->get_all(in, key, data, len);
}

static int guard_put(struct store *st, const char *key, const void *data, size_t len, int flags)
{
	struct lease_guard *g = to_guard(st);

	if (fenced(g))
		return -EIO;
	return g->inner->ops->put(g->inner, key, data, len, flags);
}

static int guard_del(struct store *st, const char *key, int flags)
{
	struct lease_guard *g = to_guard(st);

	if (fenced(g))
		return -EIO;
	return g->inner->ops->del(g->inner, key, flags);
}

static int guard_list(struct store *st, const char *prefix, store_list_cb cb, void *arg)
{
	struct store *in = to_guard(st)->inner;

	return in->ops->list(in, prefix, cb, arg);
}

static int guard_stat(struct store *st, const char *key, uint64_t *size)
{
	struct store *in = to_guard(st)->inner;

	return in->ops->stat(in, key, size);
}

static int guard_put_cond(struct store *st, const char *key, const void *data, size_t len,
			  const char *if_match, char etag[])
{
	struct lease_guard *g = to_guard(st);

	if (fenced(g))
		return -EIO;
	if (!g->inner->ops->put_cond)
		return -ENOTSUP;
	return g->inner->ops->put_cond(g->inner, key, data, len, if_match, etag);
}

static int guard_get_etag(struct store *st, const char *key, void **data, size_t *len, char etag[])
{
	struct store *in = to_guard(st)->inner;

	if (!in->ops->get_etag)
		return -ENOTSUP;
	return in->ops->get_etag(in, key, data, len, etag);
}

static int guard_sync(struct store *st)
{
	struct store *in = to_guard(st)->inner;

	return in->ops->sync ? in->ops->sync(in) : 0;
}

static void guard_close(struct store *st)
{
	struct lease_guard *g = to_guard(st);

	store_close(g->inner);
	free(st->url);
	free(g);
}

static const struct store_ops guard_ops = {
	.name = "lease-guard",
	.get = guard_get,
	.get_all = guard_get_all,
	.put = guard_put,
	.del = guard_del,
	.list = guard_list,
	.stat = guard_stat,
	.put_cond = guard_put_cond,
	.get_etag = guard_get_etag,
	.sync = guard_sync,
	.close = guard_close,
};

struct store *lease_guard(struct lease *l, struct store *inner)
{
	struct lease_guard *g = calloc(1, sizeof(*g));

	if (!g || !(g->base.url = strdup(inner->url))) {
		free(g);
		errno = ENOMEM;
		return NULL;
	}
	g->base.ops = &guard_ops;
	g->base.caps = inner->caps;
	g->inner = inner;
	g->l = l;
	return &g->base;
}
