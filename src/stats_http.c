/* stats_http.c: a minimal HTTP server for Prometheus: GET /metrics answers
 * the mount's statistics in text exposition format 0.0.4; see stats_http.h
 * for its limits. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/util.h"
#include "fs/fs.h"
#include "log.h"
#include "stats_http.h"

/* A request larger than this is refused; GET /metrics needs a few hundred. */
#define REQ_MAX 4096
/* Time a client has to send its whole request, and to take the answer. */
#define REQ_TIMEOUT_MS 2000
/* How long and how much of a client's surplus is read after the answer. */
#define DRAIN_MS 500
#define DRAIN_MAX (256 * 1024)

struct stats_http {
	struct fs *fs;
	int lfd;
	int stop_pipe[2];
	pthread_t thread;
};

enum metric_type { COUNTER, GAUGE };

struct metric {
	const char *name; /* without the zerofs_ prefix */
	enum metric_type type;
	const char *help;
	const char *labels; /* NULL, or {name="value"} */
	uint64_t value;
	uint64_t scale; /* value / scale is printed: 1, or 1e6 for us -> s */
};

char *stats_http_metrics(struct fs *fs)
{
	struct fs_stats s;
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	fs_get_stats(fs, &s);
	const struct metric m[] = {
		{ "reads_total", COUNTER, "Read requests.", NULL, s.reads, 1 },
		{ "writes_total", COUNTER, "Write requests.", NULL, s.writes, 1 },
		{ "read_bytes_total", COUNTER, "Bytes read from files.", NULL, s.read_bytes, 1 },
		{ "write_bytes_total", COUNTER, "Bytes written to files.", NULL, s.write_bytes, 1 },
		{ "fsyncs_total", COUNTER, "fsync and fdatasync requests.", NULL, s.syncs, 1 },
		{ "barriers_total", COUNTER, "Barriers completed.", NULL, s.barriers, 1 },
		{ "barriers_failed_total", COUNTER, "Barriers that failed.", NULL,
		  s.barriers_failed, 1 },
		{ "barrier_last_seconds", GAUGE, "Duration of the last barrier.", NULL,
		  s.barrier_last_ns / 1000, 1000000 },
		{ "barrier_latency_seconds", GAUGE, "Barrier duration percentiles.",
		  "{quantile=\"0.5\"}", s.barrier_p50_us, 1000000 },
		{ "barrier_latency_seconds", GAUGE, NULL, "{quantile=\"0.9\"}", s.barrier_p90_us,
		  1000000 },
		{ "barrier_latency_seconds", GAUGE, NULL, "{quantile=\"0.99\"}", s.barrier_p99_us,
		  1000000 },
		{ "index_log_seq", GAUGE, "Sequence number of the last index log object.", NULL,
		  s.log_seq, 1 },
		{ "dirty_bytes", GAUGE, "Bytes written but not yet behind a barrier.", NULL,
		  s.dirty_bytes, 1 },
		{ "pending_upload_bytes", GAUGE, "Bytes of sealed segments waiting for upload.",
		  NULL, s.pending_bytes, 1 },
		{ "segments_stored_total", COUNTER, "Segments uploaded to the store.", NULL,
		  s.segments_stored, 1 },
		{ "upload_errors_total", COUNTER, "Segment uploads that failed.", NULL,
		  s.upload_errors, 1 },
		{ "cache_hits_total", COUNTER, "Block cache hits.", NULL, s.cache_hits, 1 },
		{ "cache_misses_total", COUNTER, "Block cache misses.", NULL, s.cache_misses, 1 },
		{ "inodes", GAUGE, "Inodes in the filesystem.", NULL, s.inodes, 1 },
		{ "live_bytes", GAUGE, "Bytes of file data in the filesystem.", NULL, s.live_bytes,
		  1 },
		{ "gc_passes_total", COUNTER, "Garbage collection passes.", NULL, s.gc_passes, 1 },
		{ "gc_segments_dropped_total", COUNTER, "Dead segments dropped from the index.",
		  NULL, s.gc.dead_segments, 1 },
		{ "gc_deleted_bytes_total", COUNTER, "Bytes of segment objects deleted.", NULL,
		  s.gc.deleted_bytes, 1 },
		{ "gc_segments_repacked_total", COUNTER, "Sparse segments repacked.", NULL,
		  s.gc.repacked_segments, 1 },
		{ "gc_orphans_deleted_total", COUNTER, "Orphan objects deleted.", NULL,
		  s.gc.orphans, 1 },
		{ "gc_deletes_waiting", GAUGE, "Dead segment objects waiting for the grace period.",
		  NULL, s.gc.waiting, 1 },
		{ "store_requests_total", COUNTER, "Object store requests by operation.",
		  "{op=\"get\"}", s.store.gets, 1 },
		{ "store_requests_total", COUNTER, NULL, "{op=\"put\"}", s.store.puts, 1 },
		{ "store_requests_total", COUNTER, NULL, "{op=\"delete\"}", s.store.dels, 1 },
		{ "store_requests_total", COUNTER, NULL, "{op=\"list\"}", s.store.lists, 1 },
		{ "store_requests_total", COUNTER, NULL, "{op=\"head\"}", s.store.stats, 1 },
		{ "store_errors_total", COUNTER, "Object store requests that failed.", NULL,
		  s.store.errors, 1 },
		{ "store_retries_total", COUNTER, "Object store requests retried.", NULL,
		  s.store.retries, 1 },
		{ "store_received_bytes_total", COUNTER, "Bytes read from the object store.", NULL,
		  s.store.bytes_in, 1 },
		{ "store_sent_bytes_total", COUNTER, "Bytes written to the object store.", NULL,
		  s.store.bytes_out, 1 },
	};

	f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(m); i++) {
		/* Rows without help continue the family of the row before. */
		if (m[i].help)
			fprintf(f, "# HELP zerofs_%s %s\n# TYPE zerofs_%s %s\n", m[i].name,
				m[i].help, m[i].name, m[i].type == COUNTER ? "counter" : "gauge");
		fprintf(f, "zerofs_%s%s ", m[i].name, m[i].labels ? m[i].labels : "");
		if (m[i].scale == 1)
			fprintf(f, "%" PRIu64 "\n", m[i].value);
		else
			fprintf(f, "%" PRIu64 ".%06" PRIu64 "\n", m[i].value / m[i].scale,
				m[i].value % m[i].scale);
	}
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* Milliseconds left until deadline (util_now_ns time), at least 0. */
static int ms_left(uint64_t deadline)
{
	uint64_t now = util_now_ns();

	return now >= deadline ? 0 : (int)((deadline - now) / 1000000 + 1);
}

/* Read the request head (up to an empty line) into buf.  Returns its length,
 * -E2BIG when it does not fit, -ETIMEDOUT, -ECANCELED when stopping, or
 * -errno; 0 when the client closed first. */
static ssize_t read_request(struct stats_http *sh, int fd, char *buf, size_t cap)
{
	uint64_t deadline = util_now_ns() + (uint64_t)REQ_TIMEOUT_MS * 1000000;
	size_t len = 0;

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = fd, .events = POLLIN },
			{ .fd = sh->stop_pipe[0], .events = POLLIN },
		};
		int t = ms_left(deadline);

		if (t == 0)
			return -ETIMEDOUT;
		if (poll(pfd, 2, t) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (pfd[1].revents)
			return -ECANCELED;
		if (!pfd[0].revents)
			continue;
		ssize_t n = recv(fd, buf + len, cap - 1 - len, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		if (n == 0)
			return 0;
		len += (size_t)n;
		buf[len] = '\0';
		if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
			return (ssize_t)len;
		if (len == cap - 1)
			return -E2BIG;
	}
}

static void send_response(int fd, const char *status, const char *type, const char *body)
{
	char head[256];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n",
			 status, type, strlen(body));
	struct iovec iov[2] = {
		{ .iov_base = head, .iov_len = (size_t)n },
		{ .iov_base = (void *)body, .iov_len = strlen(body) },
	};
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };

	/* The answer is small; a client that does not take it is dropped. */
	while (msg.msg_iovlen > 0) {
		ssize_t w = sendmsg(fd, &msg, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			log_debug("stats: cannot send the answer: %m");
			return;
		}
		while (msg.msg_iovlen > 0 && (size_t)w >= msg.msg_iov->iov_len) {
			w -= (ssize_t)msg.msg_iov->iov_len;
			msg.msg_iov++;
			msg.msg_iovlen--;
		}
		if (msg.msg_iovlen > 0) {
			msg.msg_iov->iov_base = (char *)msg.msg_iov->iov_base + w;
			msg.msg_iov->iov_len -= (size_t)w;
		}
	}
}

/* After the answer: read what the client still sends, for a short while,
 * so that closing with unread data does not reset the connection and
 * destroy the answer before the client has read it. */
static void drain(int fd)
{
	uint64_t deadline = util_now_ns() + (uint64_t)DRAIN_MS * 1000000;
	size_t total = 0;
	char buf[4096];

	shutdown(fd, SHUT_WR);
	while (total < DRAIN_MAX) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int t = ms_left(deadline);

		if (t == 0 || poll(&pfd, 1, t) <= 0)
			return;
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n <= 0 && !(n < 0 && (errno == EINTR || errno == EAGAIN)))
			return;
		if (n > 0)
			total += (size_t)n;
	}
}

static void serve(struct stats_http *sh, int fd)
{
	static const char text[] = "text/plain; charset=utf-8";
	struct timeval tv = { .tv_sec = REQ_TIMEOUT_MS / 1000,
			      .tv_usec = (REQ_TIMEOUT_MS % 1000) * 1000 };
	char req[REQ_MAX];
	char method[8], path[256];
	ssize_t n;

	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	n = read_request(sh, fd, req, sizeof(req));
	if (n == -E2BIG) {
		send_response(fd, "431 Request Header Fields Too Large", text, "too large\n");
		drain(fd);
		return;
	}
	if (n <= 0) {
		if (n < 0 && n != -ECANCELED)
			log_debug("stats: request not read: %s", strerror((int)-n));
		return;
	}
	if (sscanf(req, "%7s %255s", method, path) != 2) {
		send_response(fd, "400 Bad Request", text, "bad request\n");
		drain(fd);
		return;
	}
	path[strcspn(path, "?")] = '\0';
	if (strcmp(path, "/metrics") != 0) {
		send_response(fd, "404 Not Found", text, "not found; try /metrics\n");
		return;
	}
	if (strcmp(method, "GET") != 0) {
		send_response(fd, "405 Method Not Allowed", text, "only GET\n");
		return;
	}
	CLEANUP_FREE char *body = stats_http_metrics(sh->fs);
	if (!body) {
		log_error("stats: cannot format the metrics: %m");
		send_response(fd, "500 Internal Server Error", text, "out of memory\n");
		return;
	}
	send_response(fd, "200 OK", "text/plain; version=0.0.4; charset=utf-8", body);
}

static void *serve_thread(void *arg)
{
	struct stats_http *sh = arg;

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = sh->lfd, .events = POLLIN },
			{ .fd = sh->stop_pipe[0], .events = POLLIN },
		};
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("stats: poll: %m");
			return NULL;
		}
		if (pfd[1].revents)
			return NULL;
		if (!pfd[0].revents)
			continue;
		CLEANUP_CLOSE int fd = accept4(sh->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			/* Transient (the client left, out of descriptors): go on. */
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_warn("stats: accept: %m");
			continue;
		}
		serve(sh, fd);
	}
}

/* A listening socket on "HOST:PORT" or "[V6]:PORT"; -errno after logging. */
static int listen_addr(const char *addr)
{
	CLEANUP_FREE char *host = strdup(addr);
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	};
	struct addrinfo *res;
	const char *h;
	char *colon;
	int rc = -EADDRNOTAVAIL;

	if (!host)
		return -ENOMEM;
	colon = strrchr(host, ':');
	if (!colon || !colon[1] || colon == host) {
		log_error("stats_listen '%s': expected HOST:PORT", addr);
		return -EINVAL;
	}
	*colon = '\0';
	h = host;
	if (host[0] == '[' && colon[-1] == ']') {
		colon[-1] = '\0';
		h = host + 1;
	}
	int grc = getaddrinfo(h, colon + 1, &hints, &res);
	if (grc) {
		log_error("stats_listen '%s': %s", addr, gai_strerror(grc));
		return -EINVAL;
	}
	for (struct addrinfo *a = res; a; a = a->ai_next) {
		int one = 1;
		int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
				a->ai_protocol);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 16) == 0) {
			rc = fd;
			break;
		}
		rc = -errno;
		close(fd);
	}
	freeaddrinfo(res);
	if (rc < 0)
		log_error("stats: cannot listen on %s: %s", addr, strerror(-rc));
	return rc;
}

struct stats_http *stats_http_start(struct fs *fs, const char *listen)
{
	struct stats_http *sh = calloc(1, sizeof(*sh));
	int rc;

	if (!sh) {
		log_error("stats: out of memory");
		errno = ENOMEM;
		return NULL;
	}
	sh->fs = fs;
	sh->stop_pipe[0] = sh->stop_pipe[1] = -1;
	sh->lfd = listen_addr(listen);
	if (sh->lfd < 0) {
		rc = sh->lfd;
		goto free_sh;
	}
	if (pipe2(sh->stop_pipe, O_CLOEXEC) < 0) {
		rc = -errno;
		log_error("stats: pipe: %m");
		goto close_listener;
	}
	rc = -pthread_create(&sh->thread, NULL, serve_thread, sh);
	if (rc < 0) {
		log_error("stats: cannot start the thread: %s", strerror(-rc));
		goto close_pipe;
	}
	log_info("stats: serving /metrics on %s", listen);
	return sh;

close_pipe:
	close(sh->stop_pipe[0]);
	close(sh->stop_pipe[1]);
close_listener:
	close(sh->lfd);
free_sh:
	free(sh);
	errno = -rc;
	return NULL;
}

void stats_http_stop(struct stats_http *sh)
{
	if (!sh)
		return;
	if (write(sh->stop_pipe[1], "x", 1) != 1)
		log_warn("stats: cannot wake the thread: %m");
	pthread_join(sh->thread, NULL);
	close(sh->stop_pipe[0]);
	close(sh->stop_pipe[1]);
	close(sh->lfd);
	free(sh);
}
