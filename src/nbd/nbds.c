/* nbds.c: the NBD server thread and its connections.
 *
 * Threads:
 *   acceptor      polls the listeners and a stop pipe; starts a connection
 *                 thread per accepted socket.
 *   connection    runs the handshake (nbdproto.c decides the replies), then
 *                 becomes the reader of the transmission phase: it parses
 *                 each request, reads a write's payload and queues the job.
 *   workers       (conf->threads per connection) run the jobs against fs/
 *                 and send each reply as soon as it is done, one at a time
 *                 under the connection's reply lock (all the chunks of a
 *                 structured reply together).
 *
 * Structured replies, once negotiated: a READ is answered with OFFSET_HOLE
 * chunks for the ranges fs_map reports as holes (and that read back as
 * zeros) and OFFSET_DATA chunks for the rest; BLOCK_STATUS with one
 * base:allocation chunk; every error with an ERROR chunk.  Other successes
 * keep the simple reply, which the protocol allows.
 *
 * Shutdown: nbds_stop stops the acceptor, then shuts the read side of every
 * connection: the reader sees end of file, the workers answer what is
 * already queued, and the connection ends.  A client that stops reading its
 * replies gets its socket shut down completely after STOP_GRACE_S. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/falloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "log.h"
#include "nbd/nbdproto.h"
#include "nbd/nbds.h"

#define MAX_LISTEN 4
#define STOP_GRACE_S 10
/* Bytes of queued write payloads and reads in flight per connection before
 * the reader waits (one request is always let through). */
#define MAX_INFLIGHT_BYTES (64u << 20)
/* CACHE reads the range in pieces of this size. */
#define CACHE_CHUNK (1u << 20)

/* BLOCK_STATUS describes at most this much of a request (the protocol lets
 * the reply fall short; clients ask again for the rest), which bounds the
 * time the walk holds the fs lock. */
#define STATUS_MAX_LEN (256u << 20)

#define CLEANUP_EXTENTS __attribute__((cleanup(nbds_extents_free)))

struct job {
	struct job *next;
	struct nbds_req req;
	void *payload; /* a WRITE's data */
	size_t cap;    /* its size */
};

/* A buffer a thread keeps for its requests: fresh memory is dear to touch
 * (on VMs whose host takes freed pages back, several times a copy), so the
 * data of READs and WRITEs goes through reused buffers. */
struct buf {
	uint8_t *p;
	size_t cap;
};

static uint8_t *buf_get(struct buf *b, size_t len)
{
	if (len > b->cap) {
		uint8_t *np = malloc(len ? len : 1);
		if (!np)
			return NULL;
		free(b->p);
		b->p = np;
		b->cap = len;
	}
	return b->p;
}

#define SPARE_PAYLOADS 8 /* WRITE buffers a connection keeps for reuse */
/* Larger buffers (a request may take NBDS_MAX_PAYLOAD) are not kept: a
 * connection's workers and spares would hold them for its whole life. */
#define BUF_KEEP_MAX (4u << 20)

struct conn {
	struct nbds *s;
	struct conn *prev, *next; /* in s->conns, under s->lock */
	int fd;                   /* under s->lock once listed */
	char peer[64];
	struct nbds_session ss; /* set by the handshake, then read-only */

	/* The export, once selected (fixed for the transmission phase). */
	int have_ino;
	uint64_t ino, size;

	pthread_mutex_t reply_lock; /* one reply on the wire at a time */
	int broken;                 /* under reply_lock: a send failed */

	pthread_mutex_t qlock;
	pthread_cond_t qwork;  /* a job queued, or the reader is done */
	pthread_cond_t qspace; /* a job finished */
	struct job *head, *tail;
	unsigned inflight; /* queued or running */
	uint64_t inflight_bytes;
	int reader_done;
	struct buf spare[SPARE_PAYLOADS]; /* WRITE buffers back from the workers */
	int nspare;
};

struct nbds {
	struct fs *fs;
	int threads;
	nbds_invalidate_fn invalidate;
	void *invalidate_arg;
	char *socket_path; /* to unlink at stop; NULL if none */

	int lfd[MAX_LISTEN];
	int nlfd;
	int stop_pipe[2];
	pthread_t acceptor;
	int have_acceptor;

	pthread_mutex_t lock;
	pthread_cond_t cond; /* nconns dropped */
	struct conn *conns;
	unsigned nconns;
	int stopping;
};

static int stopping(struct nbds *s)
{
	return __atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE);
}

/* ---- socket I/O ---- */

/* Read exactly len bytes.  0, -EPIPE at end of file, or -errno. */
static int recv_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = recv(fd, p, len, 0);
		if (n == 0)
			return -EPIPE;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Send all of buf (never raising SIGPIPE).  0 or -errno. */
static int send_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Send the bytes of iov[0, n) in as few sendmsg calls as the socket takes
 * (one while its buffer has room): a reply's header and data leave in one
 * system call.  The parts sent are consumed from iov.  0 or -errno. */
static int send_iov(int fd, struct iovec *iov, size_t n)
{
	while (n > 0) {
		if (iov->iov_len == 0) {
			iov++;
			n--;
			continue;
		}
		struct msghdr m = {.msg_iov = iov, .msg_iovlen = MIN(n, (size_t)IOV_MAX)};
		ssize_t k = sendmsg(fd, &m, MSG_NOSIGNAL | (n > IOV_MAX ? MSG_MORE : 0));
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (size_t done = (size_t)k; done > 0;) {
			size_t part = MIN(done, iov->iov_len);
			iov->iov_base = (uint8_t *)iov->iov_base + part;
			iov->iov_len -= part;
			done -= part;
			if (iov->iov_len == 0) {
				iov++;
				n--;
			}
		}
	}
	return 0;
}

/* Send the n parts of one reply in a row (consuming iov).  A failed send
 * marks the connection broken and shuts the socket, which ends the
 * reader. */
static void send_parts(struct conn *c, struct iovec *iov, size_t n)
{
	LOCK_GUARD(&c->reply_lock);
	if (c->broken)
		return;
	int rc = send_iov(c->fd, iov, n);
	if (rc < 0) {
		log_debug("nbd: %s: cannot send a reply: %s; closing", c->peer, strerror(-rc));
		c->broken = 1;
		shutdown(c->fd, SHUT_RDWR);
	}
}

/* Send a simple reply without data (a READ's: read_simple). */
static void send_reply(struct conn *c, uint32_t error, uint64_t cookie)
{
	uint8_t hdr[NBDS_REPLY_LEN];
	nbds_simple_reply(hdr, error, cookie);
	struct iovec iov = {hdr, sizeof(hdr)};
	send_parts(c, &iov, 1);
}

/* Send an error reply: an ERROR chunk once structured replies are
 * negotiated (a READ must not get a simple reply then), else a simple
 * reply.  NBD error numbers are Linux errno values, hence strerror. */
static void send_error(struct conn *c, uint32_t error, uint64_t cookie)
{
	if (!c->ss.structured) {
		send_reply(c, error, cookie);
		return;
	}
	uint8_t buf[NBDS_ERROR_CHUNK_MAX];
	struct iovec iov = {buf, nbds_error_chunk(buf, cookie, error, strerror((int)error))};
	send_parts(c, &iov, 1);
}

/* ---- exports: the regular files of /.nbd ---- */

static int ex_lookup(void *arg, const char *name, int select, uint64_t *size)
{
	struct conn *c = arg;
	struct fs *fs = c->s->fs;
	struct idx_inode dir, in;

	if (stopping(c->s))
		return -ESHUTDOWN;
	int rc = fs_lookup(fs, IDX_ROOT_INO, FS_DEVICE_DIR, &dir);
	if (rc < 0)
		return rc;
	rc = fs_lookup(fs, dir.ino, name, &in);
	fs_forget(fs, dir.ino, 1);
	if (rc == -ENOTDIR)
		rc = -ENOENT;
	if (rc < 0)
		return rc;
	if (!S_ISREG(in.mode)) {
		fs_forget(fs, in.ino, 1);
		return -ENOENT;
	}
	*size = in.size;
	if (!select || c->have_ino) {
		fs_forget(fs, in.ino, 1);
		return 0;
	}
	/* The reference keeps the inode alive while the connection uses it,
	 * even if the file is removed meanwhile. */
	c->have_ino = 1;
	c->ino = in.ino;
	c->size = in.size;
	return 0;
}

struct list_ctx {
	int (*emit)(void *ctx, const char *name);
	void *ctx;
	int rc;
};

static int list_one(void *arg, const char *name, const struct idx_inode *child, uint64_t cookie)
{
	struct list_ctx *l = arg;
	if (!S_ISREG(child->mode) || !nbds_valid_name(name))
		return 0;
	l->rc = l->emit(l->ctx, name);
	return l->rc < 0;
}

static int ex_list(void *arg, int (*emit)(void *ctx, const char *name), void *ctx)
{
	struct conn *c = arg;
	struct fs *fs = c->s->fs;
	struct idx_inode dir;
	int rc = fs_lookup(fs, IDX_ROOT_INO, FS_DEVICE_DIR, &dir);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	struct list_ctx l = {emit, ctx, 0};
	rc = S_ISDIR(dir.mode) ? fs_readdir(fs, dir.ino, 0, 0, list_one, &l) : 0;
	fs_forget(fs, dir.ino, 1);
	return rc < 0 ? rc : l.rc;
}

/* ---- handshake ---- */

/* 0 when an export is selected, -1 when the connection is to be closed. */
static int handshake(struct conn *c)
{
	uint8_t greeting[NBDS_GREETING_LEN], cflags[4], hdr[NBDS_OPT_HDR_LEN];
	uint8_t data[NBDS_MAX_OPTLEN];
	struct nbds_exports ex = {ex_lookup, ex_list, c};
	int rc;

	nbds_greeting(greeting);
	if (send_full(c->fd, greeting, sizeof(greeting)) < 0 ||
	    recv_full(c->fd, cflags, sizeof(cflags)) < 0)
		return -1;
	if (nbds_parse_client_flags(cflags, &c->ss.no_zeroes) < 0) {
		log_warn("nbd: %s: unknown client flags; closing", c->peer);
		return -1;
	}
	for (;;) {
		uint32_t option, len;
		if (recv_full(c->fd, hdr, sizeof(hdr)) < 0)
			return -1;
		rc = nbds_parse_option(hdr, &option, &len);
		if (rc < 0) {
			log_warn("nbd: %s: %s; closing", c->peer,
				 rc == -EPROTO ? "bad option magic" : "option data too long");
			return -1;
		}
		if (recv_full(c->fd, data, len) < 0)
			return -1;
		struct nbds_out out = {0};
		enum nbds_next next;
		rc = nbds_handle_option(option, data, len, &c->ss, &ex, &out, &next);
		if (rc == 0)
			rc = send_full(c->fd, out.buf, out.len);
		nbds_out_free(&out);
		if (rc < 0 || next == NBDS_NEXT_CLOSE)
			return -1;
		if (next == NBDS_NEXT_TRANSMIT)
			return 0;
	}
}

/* ---- transmission: the workers ---- */

static int cache_range(struct fs *fs, uint64_t ino, uint64_t off, uint64_t len)
{
	CLEANUP_FREE void *buf = malloc(MIN(len, (uint64_t)CACHE_CHUNK));
	if (!buf)
		return -ENOMEM;
	while (len) {
		size_t n = (size_t)MIN(len, (uint64_t)CACHE_CHUNK);
		ssize_t r = fs_read(fs, ino, off, n, buf);
		if (r < 0)
			return (int)r;
		if ((size_t)r < n)
			break;
		off += n;
		len -= n;
	}
	return 0;
}

struct map_ctx {
	struct nbds_extents *x;
	int one; /* stop after the first run */
	int rc;
};

static int map_run(void *arg, uint64_t off, uint64_t len, int data)
{
	struct map_ctx *m = arg;
	if (m->rc == 0)
		m->rc = nbds_extents_add(m->x, off, (uint32_t)len, !data);
	return m->rc < 0 || m->one;
}

/* The allocation of [off, off + len) as extents in *x (only the first with
 * one set).  What lies past the end of the file is a hole.  0 or -errno. */
static int map_range(struct conn *c, uint64_t off, uint32_t len, int one,
		     struct nbds_extents *x)
{
	struct map_ctx m = {.x = x, .one = one};
	int rc = fs_map(c->s->fs, c->ino, off, len, map_run, &m);
	if (rc == 0)
		rc = m.rc;
	uint64_t end = x->n ? x->e[x->n - 1].off + x->e[x->n - 1].len : off;
	if (rc == 0 && end < off + len && !(one && x->n))
		rc = nbds_extents_add(x, end, (uint32_t)(off + len - end), 1);
	return rc;
}

/* What a READ read: its bytes, in buf or, block by block, pinned in the
 * memory cache (the data is sent from there, not copied first), and their
 * allocation, taken from the read itself: a hole is exactly a range that
 * read as zeros.  What lies past the end of the file (it shrank since the
 * export was selected) reads as zeros, a hole. */
struct rd {
	uint64_t off;
	uint32_t len;
	uint8_t *buf;
	struct data_pin *pins; /* one per block of the range */
	size_t npins;
	struct nbds_extents map;
};

static int rd_read(struct conn *c, uint64_t off, uint32_t len, struct buf *rb, struct rd *d)
{
	*d = (struct rd){.off = off, .len = len};
	d->buf = buf_get(rb, len);
	d->npins = (size_t)(data_last_blk(off, len) - data_first_blk(off) + 1);
	d->pins = calloc(d->npins, sizeof(*d->pins));
	if (!d->buf || !d->pins)
		return -ENOMEM;
	struct map_ctx m = {.x = &d->map};
	ssize_t n = fs_read_map(c->s->fs, c->ino, off, len, d->buf, map_run, &m, d->pins);
	if (n < 0)
		return (int)n;
	if (m.rc < 0)
		return m.rc;
	if ((size_t)n == len)
		return 0;
	memset(d->buf + n, 0, len - (size_t)n);
	return nbds_extents_add(&d->map, off + (uint64_t)n, len - (uint32_t)n, 1);
}

/* Give back what rd_read pinned and took (once the reply is sent). */
static void rd_release(struct conn *c, struct rd *d)
{
	if (d->pins)
		fs_unpin(c->s->fs, d->pins, d->npins);
	free(d->pins);
	nbds_extents_free(&d->map);
}

/* The bytes [off, off + len) of what d read as iovecs at iov (at most one
 * per block), where they lie.  Returns how many. */
static size_t rd_iov(const struct rd *d, uint64_t off, uint64_t len, struct iovec *iov)
{
	size_t n = 0;
	while (len > 0) {
		uint64_t blk = off >> DATA_BLOCK_SHIFT;
		size_t k = (size_t)MIN(len, ((blk + 1) << DATA_BLOCK_SHIFT) - off);
		const struct data_pin *pin = &d->pins[blk - data_first_blk(d->off)];
		/* a pin points at the block's bytes from the read's start in it */
		uint64_t from = MAX(d->off, blk << DATA_BLOCK_SHIFT);
		const uint8_t *p = pin->p ? pin->p + (off - from) : d->buf + (off - d->off);
		if (n && (const uint8_t *)iov[n - 1].iov_base + iov[n - 1].iov_len == p)
			iov[n - 1].iov_len += k;
		else
			iov[n++] = (struct iovec){(void *)p, k};
		off += k;
		len -= k;
	}
	return n;
}

/* A READ with simple replies: the header, then the data. */
static int read_simple(struct conn *c, const struct nbds_req *r, struct buf *rb)
{
	struct rd d;
	int rc = rd_read(c, r->offset, r->count, rb, &d);
	struct iovec *iov = rc == 0 ? calloc(1 + d.npins, sizeof(*iov)) : NULL;
	if (rc == 0 && !iov)
		rc = -ENOMEM;
	if (rc == 0) {
		uint8_t hdr[NBDS_REPLY_LEN];
		nbds_simple_reply(hdr, 0, r->cookie);
		iov[0] = (struct iovec){hdr, sizeof(hdr)};
		send_parts(c, iov, 1 + rd_iov(&d, r->offset, r->count, iov + 1));
	}
	free(iov);
	rd_release(c, &d);
	return rc;
}

/* The chunks of a structured READ reply for the extents x of d: a chunk
 * header each, followed by its bytes for data.  0 or -ENOMEM. */
static int send_chunks(struct conn *c, uint64_t cookie, const struct rd *d,
		       const struct nbds_extents *x)
{
	CLEANUP_FREE uint8_t *hdrs = malloc(x->n * NBDS_CONTENT_HDR_MAX);
	CLEANUP_FREE struct iovec *iov = calloc(2 * x->n + d->npins, sizeof(*iov));
	if (!hdrs || !iov)
		return -ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < x->n; i++) {
		const struct nbds_extent *e = &x->e[i];
		uint8_t *h = hdrs + i * NBDS_CONTENT_HDR_MAX;
		iov[n++] = (struct iovec){h, nbds_content_header(h, cookie, e, i + 1 == x->n)};
		if (!e->hole)
			n += rd_iov(d, e->off, e->len, iov + n);
	}
	send_parts(c, iov, n);
	return 0;
}

/* A READ with structured replies: OFFSET_HOLE chunks for the ranges that
 * read as holes, OFFSET_DATA chunks for the rest (one, with DF). */
static int read_structured(struct conn *c, const struct nbds_req *r, struct buf *rb)
{
	CLEANUP_EXTENTS struct nbds_extents one = {0};
	struct rd d;
	int rc = rd_read(c, r->offset, r->count, rb, &d);
	if (rc == 0 && (r->flags & NBD_CMD_FLAG_DF))
		rc = nbds_extents_add(&one, r->offset, r->count, 0);
	if (rc == 0)
		rc = send_chunks(c, r->cookie, &d, (r->flags & NBD_CMD_FLAG_DF) ? &one : &d.map);
	rd_release(c, &d);
	return rc;
}

/* BLOCK_STATUS for base:allocation (the only context there is). */
static int block_status(struct conn *c, const struct nbds_req *r)
{
	CLEANUP_EXTENTS struct nbds_extents x = {0};
	int rc = map_range(c, r->offset, MIN(r->count, STATUS_MAX_LEN),
			   !!(r->flags & NBD_CMD_FLAG_REQ_ONE), &x);
	if (rc < 0)
		return rc;
	struct nbds_out out = {0};
	rc = nbds_put_block_status(&out, r->cookie, x.e, x.n);
	if (rc == 0) {
		struct iovec iov = {out.buf, out.len};
		send_parts(c, &iov, 1);
	}
	nbds_out_free(&out);
	return rc;
}

static void run_job(struct conn *c, struct job *j, struct buf *rb)
{
	struct nbds *s = c->s;
	const struct nbds_req *r = &j->req;
	int rc = 0, changed = 0, replied = 0;
	ssize_t n;

	switch (r->type) {
	case NBD_CMD_READ:
		rc = c->ss.structured ? read_structured(c, r, rb) : read_simple(c, r, rb);
		replied = rc == 0;
		break;
	case NBD_CMD_BLOCK_STATUS:
		rc = block_status(c, r);
		replied = rc == 0;
		break;
	case NBD_CMD_WRITE:
		changed = 1;
		n = fs_write(s->fs, c->ino, r->offset, j->payload, r->count);
		rc = n < 0 ? (int)n : (size_t)n == r->count ? 0 : -EIO;
		break;
	case NBD_CMD_FLUSH:
		rc = fs_sync(s->fs);
		break;
	case NBD_CMD_TRIM:
		changed = 1;
		rc = fs_fallocate(s->fs, c->ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				  r->offset, r->count);
		break;
	case NBD_CMD_WRITE_ZEROES:
		/* Both modes only drop extents, so FAST_ZERO is always honoured. */
		changed = 1;
		rc = fs_fallocate(s->fs, c->ino,
				  ((r->flags & NBD_CMD_FLAG_NO_HOLE) ? FALLOC_FL_ZERO_RANGE
								     : FALLOC_FL_PUNCH_HOLE) |
					  FALLOC_FL_KEEP_SIZE,
				  r->offset, r->count);
		break;
	case NBD_CMD_CACHE:
		rc = cache_range(s->fs, c->ino, r->offset, r->count);
		break;
	default:
		rc = -EINVAL; /* nbds_check_request lets no other type through */
		break;
	}
	if (rc == 0 && changed && (r->flags & NBD_CMD_FLAG_FUA))
		rc = fs_sync(s->fs);
	/* Before the reply: once the client hears back, FUSE readers must see
	 * the new bytes. */
	if (changed && s->invalidate)
		s->invalidate(s->invalidate_arg, c->ino, r->offset, r->count);
	if (rc < 0)
		log_debug("nbd: %s: command %u at %" PRIu64 "+%" PRIu32 ": %s", c->peer, r->type,
			  r->offset, r->count, strerror(-rc));
	if (rc < 0)
		send_error(c, nbds_errno(-rc), r->cookie);
	else if (!replied)
		send_reply(c, 0, r->cookie);
}

static uint64_t job_bytes(const struct nbds_req *r)
{
	return r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE ? r->count : 0;
}

/* Keep a WRITE's buffer for the reader's next one, or free it. */
static void payload_put(struct conn *c, struct job *j)
{
	pthread_mutex_lock(&c->qlock);
	if (j->payload && j->cap <= BUF_KEEP_MAX && c->nspare < SPARE_PAYLOADS) {
		c->spare[c->nspare++] = (struct buf){j->payload, j->cap};
		j->payload = NULL;
	}
	pthread_mutex_unlock(&c->qlock);
	free(j->payload);
}

/* A buffer of at least len bytes for a WRITE's data: one the workers gave
 * back if one is large enough, else a new one. */
static struct buf payload_get(struct conn *c, size_t len)
{
	struct buf b = {0};
	pthread_mutex_lock(&c->qlock);
	for (int i = 0; i < c->nspare; i++)
		if (c->spare[i].cap >= len) {
			b = c->spare[i];
			c->spare[i] = c->spare[--c->nspare];
			break;
		}
	pthread_mutex_unlock(&c->qlock);
	if (!b.p && (b.p = malloc(len ? len : 1)))
		b.cap = len;
	return b;
}

static void *worker(void *arg)
{
	struct conn *c = arg;
	struct buf rb = {0};
	for (;;) {
		pthread_mutex_lock(&c->qlock);
		while (!c->head && !c->reader_done)
			pthread_cond_wait(&c->qwork, &c->qlock);
		struct job *j = c->head;
		if (j) {
			c->head = j->next;
			if (!c->head)
				c->tail = NULL;
		}
		pthread_mutex_unlock(&c->qlock);
		if (!j) {
			free(rb.p);
			return NULL;
		}
		run_job(c, j, &rb);
		if (rb.cap > BUF_KEEP_MAX) {
			free(rb.p);
			rb = (struct buf){0};
		}
		payload_put(c, j);
		pthread_mutex_lock(&c->qlock);
		c->inflight--;
		c->inflight_bytes -= job_bytes(&j->req);
		pthread_cond_signal(&c->qspace);
		pthread_mutex_unlock(&c->qlock);
		free(j);
	}
}

static void enqueue(struct conn *c, struct job *j)
{
	uint64_t bytes = job_bytes(&j->req);
	unsigned max_jobs = (unsigned)c->s->threads * 2;
	LOCK_GUARD(&c->qlock);
	while (c->inflight >= max_jobs ||
	       (c->inflight > 0 && c->inflight_bytes + bytes > MAX_INFLIGHT_BYTES))
		pthread_cond_wait(&c->qspace, &c->qlock);
	c->inflight++;
	c->inflight_bytes += bytes;
	if (c->tail)
		c->tail->next = j;
	else
		c->head = j;
	c->tail = j;
	pthread_cond_signal(&c->qwork);
}

/* ---- transmission: the reader ---- */

/* Read and check one request and queue it.  0 to go on, -1 to close. */
static int read_request(struct conn *c)
{
	uint8_t hdr[NBDS_REQ_LEN];
	struct nbds_req r;
	int close_now;

	if (recv_full(c->fd, hdr, sizeof(hdr)) < 0)
		return -1;
	if (nbds_parse_request(hdr, &r) < 0) {
		log_warn("nbd: %s: bad request magic; closing", c->peer);
		return -1;
	}
	uint32_t err = nbds_check_request(&r, c->size, &c->ss, &close_now);
	if (close_now) {
		log_warn("nbd: %s: write of %" PRIu32 " bytes exceeds the %u byte limit; closing",
			 c->peer, r.count, NBDS_MAX_PAYLOAD);
		return -1;
	}
	if (r.type == NBD_CMD_DISC)
		return -1;
	struct buf pb = {0};
	void *payload = NULL;
	if (r.type == NBD_CMD_WRITE) {
		pb = payload_get(c, r.count);
		payload = pb.p;
		if (!payload) {
			log_error("nbd: %s: no memory for a %" PRIu32 " byte write; closing",
				  c->peer, r.count);
			return -1;
		}
		if (recv_full(c->fd, payload, r.count) < 0) {
			free(payload);
			return -1;
		}
	}
	if (err) {
		free(payload);
		send_error(c, err, r.cookie);
		return 0;
	}
	struct job *j = calloc(1, sizeof(*j));
	if (!j) {
		free(payload);
		send_error(c, NBD_ENOMEM, r.cookie);
		return 0;
	}
	j->req = r;
	j->payload = payload;
	j->cap = pb.cap;
	enqueue(c, j);
	return 0;
}

static void transmission(struct conn *c)
{
	int nw = c->s->threads, started = 0;
	CLEANUP_FREE pthread_t *workers = calloc((size_t)nw, sizeof(*workers));
	if (!workers) {
		log_error("nbd: %s: no memory for the workers", c->peer);
		return;
	}
	for (; started < nw; started++) {
		int rc = pthread_create(&workers[started], NULL, worker, c);
		if (rc) {
			log_error("nbd: %s: cannot start a worker: %s", c->peer, strerror(rc));
			break;
		}
	}
	if (started > 0)
		while (read_request(c) == 0)
			;
	pthread_mutex_lock(&c->qlock);
	c->reader_done = 1;
	pthread_cond_broadcast(&c->qwork);
	pthread_mutex_unlock(&c->qlock);
	for (int i = 0; i < started; i++)
		pthread_join(workers[i], NULL);
}

/* ---- connections ---- */

static void conn_free(struct conn *c)
{
	for (int i = 0; i < c->nspare; i++)
		free(c->spare[i].p);
	pthread_mutex_destroy(&c->reply_lock);
	pthread_mutex_destroy(&c->qlock);
	pthread_cond_destroy(&c->qwork);
	pthread_cond_destroy(&c->qspace);
	free(c);
}

static void *conn_thread(void *arg)
{
	struct conn *c = arg;
	struct nbds *s = c->s;

	log_debug("nbd: %s: connected", c->peer);
	if (handshake(c) == 0) {
		log_debug("nbd: %s: serving inode %" PRIu64 " (%" PRIu64 " bytes)", c->peer,
			  c->ino, c->size);
		transmission(c);
	}
	if (c->have_ino)
		fs_forget(s->fs, c->ino, 1);
	log_debug("nbd: %s: disconnected", c->peer);

	pthread_mutex_lock(&s->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	close(c->fd);
	s->nconns--;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	conn_free(c);
	return NULL;
}

static void peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?", port[8] = "";

	snprintf(buf, len, "unix socket");
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0 ||
	    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
		return;
	getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port, sizeof(port),
		    NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(buf, len, "%s:%s", host, port);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void start_conn(struct nbds *s, int fd)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (!c) {
		log_error("nbd: no memory for a connection");
		close(fd);
		return;
	}
	c->s = s;
	c->fd = fd;
	peer_name(fd, c->peer, sizeof(c->peer));
	pthread_mutex_init(&c->reply_lock, NULL);
	pthread_mutex_init(&c->qlock, NULL);
	pthread_cond_init(&c->qwork, NULL);
	pthread_cond_init(&c->qspace, NULL);

	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	LOCK_GUARD(&s->lock);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	int rc = pthread_create(&t, &attr, conn_thread, c);
	pthread_attr_destroy(&attr);
	if (rc) {
		log_error("nbd: cannot start a connection thread: %s", strerror(rc));
		s->conns = c->next;
		if (c->next)
			c->next->prev = NULL;
		s->nconns--;
		close(fd);
		conn_free(c);
	}
}

static void *acceptor(void *arg)
{
	struct nbds *s = arg;
	struct pollfd pfd[MAX_LISTEN + 1];

	pfd[0] = (struct pollfd){.fd = s->stop_pipe[0], .events = POLLIN};
	for (int i = 0; i < s->nlfd; i++)
		pfd[i + 1] = (struct pollfd){.fd = s->lfd[i], .events = POLLIN};
	for (;;) {
		if (poll(pfd, (nfds_t)s->nlfd + 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("nbd: poll: %m");
			return NULL;
		}
		if (pfd[0].revents)
			return NULL;
		for (int i = 1; i <= s->nlfd; i++) {
			if (!pfd[i].revents)
				continue;
			int fd = accept4(pfd[i].fd, NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0) {
				if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
					log_warn("nbd: accept: %m");
					/* Out of descriptors: let some close first. */
					poll(NULL, 0, 100);
				}
				continue;
			}
			start_conn(s, fd);
		}
	}
}

/* ---- listeners ---- */

/* Bind and listen on one address.  The descriptor or -errno (not logged). */
static int listen_on(const struct sockaddr *sa, socklen_t len)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, sa, len) < 0 || listen(fd, 64) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

/* Listen on "HOST:PORT" or "[V6]:PORT".  0 or -errno with a message logged
 * (a busy optional address: a warning, and 0). */
static int listen_tcp(struct nbds *s, const char *addr, int optional)
{
	CLEANUP_FREE char *host = strdup(addr);
	if (!host)
		return -ENOMEM;
	char *colon = strrchr(host, ':');
	if (!colon || !colon[1] || colon == host) {
		log_error("nbd_listen '%s': expected HOST:PORT", addr);
		return -EINVAL;
	}
	*colon = '\0';
	const char *port = colon + 1, *h = host;
	if (host[0] == '[' && colon[-1] == ']') {
		colon[-1] = '\0';
		h = host + 1;
	}
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	};
	struct addrinfo *res;
	int grc = getaddrinfo(h, port, &hints, &res);
	if (grc) {
		log_error("nbd_listen '%s': %s", addr, gai_strerror(grc));
		return -EINVAL;
	}
	int rc = 0;
	for (struct addrinfo *a = res; a && s->nlfd < MAX_LISTEN; a = a->ai_next) {
		int fd = listen_on(a->ai_addr, a->ai_addrlen);
		if (fd < 0) {
			rc = fd;
			break;
		}
		s->lfd[s->nlfd++] = fd;
	}
	freeaddrinfo(res);
	if (rc == -EADDRINUSE && optional) {
		log_warn("nbd: %s is in use (another mount?); NBD over TCP is off for this "
			 "mount (set nbd_listen to another address)",
			 addr);
		while (s->nlfd > 0)
			close(s->lfd[--s->nlfd]);
		return 0;
	}
	if (rc < 0)
		log_error("nbd: cannot listen on %s: %s", addr, strerror(-rc));
	else
		log_info("nbd: listening on %s", addr);
	return rc;
}

static int listen_unix(struct nbds *s, const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sun.sun_path)) {
		log_error("nbd_socket %s: path too long", path);
		return -ENAMETOOLONG;
	}
	strcpy(sun.sun_path, path);
	/* A socket left by a daemon that died: remove it if nobody answers. */
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		CLEANUP_CLOSE int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
			log_error("nbd_socket %s: another server is listening there", path);
			return -EADDRINUSE;
		}
		unlink(path);
	}
	int fd = listen_on((struct sockaddr *)&sun, sizeof(sun));
	if (fd < 0) {
		log_error("nbd: cannot listen on %s: %s", path, strerror(-fd));
		return fd;
	}
	s->lfd[s->nlfd++] = fd;
	s->socket_path = strdup(path);
	if (!s->socket_path)
		return -ENOMEM;
	log_info("nbd: listening on %s", path);
	return 0;
}

/* ---- start and stop ---- */

static int make_nbd_dir(struct fs *fs)
{
	struct idx_inode in;
	int rc = fs_lookup(fs, IDX_ROOT_INO, FS_DEVICE_DIR, &in);
	if (rc == -ENOENT) {
		struct fs_ctx ctx = {.uid = getuid(), .gid = getgid(), .umask = 0};
		rc = fs_mkdir(fs, &ctx, IDX_ROOT_INO, FS_DEVICE_DIR, S_IFDIR | 0755, &in);
	}
	if (rc < 0) {
		log_error("nbd: cannot create /.nbd: %s", strerror(-rc));
		return rc;
	}
	fs_forget(fs, in.ino, 1);
	return 0;
}

struct nbds *nbds_start(struct fs *fs, const struct nbds_conf *conf)
{
	struct nbds *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->fs = fs;
	s->threads = conf->threads > 0 ? conf->threads : 1;
	s->invalidate = conf->invalidate;
	s->invalidate_arg = conf->invalidate_arg;
	s->stop_pipe[0] = s->stop_pipe[1] = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);

	int rc = make_nbd_dir(fs);
	if (rc == 0 && conf->listen && *conf->listen)
		rc = listen_tcp(s, conf->listen, conf->listen_optional);
	if (rc == 0 && conf->socket && *conf->socket)
		rc = listen_unix(s, conf->socket);
	if (rc == 0 && s->nlfd > 0 && pipe2(s->stop_pipe, O_CLOEXEC) < 0) {
		rc = -errno;
		log_error("nbd: pipe: %m");
	}
	if (rc == 0 && s->nlfd > 0) {
		rc = -pthread_create(&s->acceptor, NULL, acceptor, s);
		if (rc < 0)
			log_error("nbd: cannot start the server thread: %s", strerror(-rc));
		s->have_acceptor = rc == 0;
	}
	if (rc < 0) {
		nbds_stop(s);
		errno = -rc;
		return NULL;
	}
	return s;
}

void nbds_stop(struct nbds *s)
{
	if (!s)
		return;
	if (s->have_acceptor) {
		if (write(s->stop_pipe[1], "x", 1) != 1)
			log_error("nbd: cannot wake the server thread: %m");
		pthread_join(s->acceptor, NULL);
	}
	for (int i = 0; i < s->nlfd; i++)
		close(s->lfd[i]);
	if (s->socket_path)
		unlink(s->socket_path);

	pthread_mutex_lock(&s->lock);
	__atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
	for (struct conn *c = s->conns; c; c = c->next)
		shutdown(c->fd, SHUT_RD);
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += STOP_GRACE_S;
	while (s->nconns > 0) {
		if (pthread_cond_timedwait(&s->cond, &s->lock, &deadline) == ETIMEDOUT) {
			log_warn("nbd: %u connections still busy after %d s; cutting them off",
				 s->nconns, STOP_GRACE_S);
			for (struct conn *c = s->conns; c; c = c->next)
				shutdown(c->fd, SHUT_RDWR);
			while (s->nconns > 0)
				pthread_cond_wait(&s->cond, &s->lock);
		}
	}
	pthread_mutex_unlock(&s->lock);

	if (s->stop_pipe[0] >= 0)
		close(s->stop_pipe[0]);
	if (s->stop_pipe[1] >= 0)
		close(s->stop_pipe[1]);
	free(s->socket_path);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}
