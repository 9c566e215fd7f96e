/* faultproxy: an HTTP/1.1 proxy for the S3 fault tests.  It sits between
 * zerofs-fuse and the S3 server and injects faults on command, so that the
 * S3 backend's own retries, timeouts and error handling are what is tested
 * (a store wrapper above the backend would bypass them).
 *
 *   faultproxy CONTROL UPSTREAM_PORT
 *
 * Listens on 127.0.0.1 at a free port, prints that port on stdout, and
 * forwards every request to 127.0.0.1:UPSTREAM_PORT.  CONTROL is re-read at
 * most every 100 ms and uses the syntax of the store_faults option:
 *
 *   fail=P%        answer 503 SlowDown without forwarding
 *   reset=P%       reset the connection: half before forwarding, half after
 *                  (the request was executed but its answer is lost)
 *   delay=MSms@P%  wait MS milliseconds before forwarding (delay=MSms: all)
 *   outage         reset every connection at its first request
 *
 * Each injected fault is logged on stderr as "faultproxy: KIND METHOD PATH".
 * Each request goes upstream on a connection of its own ("Connection:
 * close"); the client's connection is kept alive when the answer's framing
 * allows it. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX (64 * 1024)
#define PPM 1000000

struct spec {
	uint32_t fail, reset, delay;
	uint64_t delay_ms;
	int outage;
};

static const char *ctl_path;
static int upstream_port;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct spec cur;
static uint64_t checked_ns;
static uint64_t rng = 88172645463325252ULL;

struct buf {
	char *p;
	size_t len, cap;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int pct(const char *s, uint32_t *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || strcmp(end, "%") != 0)
		return -1;
	*out = (uint32_t)(v * (PPM / 100) + 0.5);
	return 0;
}

static void parse_word(const char *w, struct spec *sp)
{
	char *end;
	int bad = 0;

	if (strcmp(w, "outage") == 0) {
		sp->outage = 1;
	} else if (strncmp(w, "fail=", 5) == 0) {
		bad = pct(w + 5, &sp->fail);
	} else if (strncmp(w, "reset=", 6) == 0) {
		bad = pct(w + 6, &sp->reset);
	} else if (strncmp(w, "delay=", 6) == 0) {
		sp->delay_ms = strtoull(w + 6, &end, 10);
		sp->delay = PPM;
		if (strncmp(end, "ms", 2) != 0)
			bad = 1;
		else if (end[2] == '@')
			bad = pct(end + 3, &sp->delay);
		else if (end[2])
			bad = 1;
	} else {
		bad = 1;
	}
	if (bad)
		fprintf(stderr, "faultproxy: ignoring '%s'\n", w);
}

/* The spec in force; the caller holds the lock. */
static void refresh(void)
{
	char text[4096] = "";
	FILE *f;
	size_t n = 0;

	if (checked_ns && now_ns() - checked_ns < 100000000ULL)
		return;
	checked_ns = now_ns();
	f = fopen(ctl_path, "re");
	if (f) {
		n = fread(text, 1, sizeof(text) - 1, f);
		fclose(f);
	}
	text[n] = '\0';
	memset(&cur, 0, sizeof(cur));
	for (char *line = text, *next; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		line[strcspn(line, "#")] = '\0';
		for (char *save = NULL, *w = strtok_r(line, " \t\r,;", &save); w;
		     w = strtok_r(NULL, " \t\r,;", &save))
			parse_word(w, &cur);
	}
}

static int roll(uint32_t ppm)
{
	if (!ppm)
		return 0;
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng % PPM < ppm;
}

static int buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 65536;
		char *np;

		while (cap < b->len + n + 1)
			cap *= 2;
		np = realloc(b->p, cap);
		if (!np)
			return -1;
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read into b until it holds at least want bytes; -1 on EOF or error. */
static int fill(int fd, struct buf *b, size_t want)
{
	char tmp[65536];

	while (b->len < want) {
		ssize_t r = recv(fd, tmp, sizeof(tmp), 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || buf_add(b, tmp, (size_t)r) < 0)
			return -1;
	}
	return 0;
}

/* Value of header name in the head [p, p + len), or NULL. */
static const char *header(const char *p, size_t len, const char *name)
{
	size_t nl = strlen(name);

	for (const char *l = memmem(p, len, "\r\n", 2); l && l + 2 < p + len;
	     l = memmem(l + 2, (size_t)(p + len - l - 2), "\r\n", 2)) {
		if (strncasecmp(l + 2, name, nl) == 0 && l[2 + nl] == ':') {
			const char *v = l + 3 + nl;

			while (*v == ' ')
				v++;
			return v;
		}
	}
	return NULL;
}

/* Copy the head [p, p + len) (ending in CRLF CRLF) without its Connection
 * lines, adding extra before the blank line. */
static int rewrite_head(struct buf *out, const char *p, size_t len, const char *extra)
{
	const char *end = p + len - 2;
	const char *l = p;

	while (l < end) {
		const char *e = memmem(l, (size_t)(end - l), "\r\n", 2);

		if (!e)
			return -1;
		if (strncasecmp(l, "connection:", 11) != 0 && buf_add(out, l, (size_t)(e - l + 2)))
			return -1;
		l = e + 2;
	}
	return buf_add(out, extra, strlen(extra)) || buf_add(out, "\r\n", 2) ? -1 : 0;
}

static void reset_conn(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static int connect_upstream(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(upstream_port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Send one request upstream and read the whole answer into resp. */
static int forward(const char *req, size_t head_len, size_t total, struct buf *resp)
{
	struct buf out = { 0 };
	char tmp[65536];
	int fd = connect_upstream(), rc = -1;
	ssize_t r;

	if (fd < 0)
		return -1;
	if (rewrite_head(&out, req, head_len, "Connection: close\r\n") == 0 &&
	    buf_add(&out, req + head_len, total - head_len) == 0 &&
	    write_all(fd, out.p, out.len) == 0) {
		while ((r = recv(fd, tmp, sizeof(tmp), 0)) > 0 || (r < 0 && errno == EINTR))
			if (r > 0 && buf_add(resp, tmp, (size_t)r) < 0)
				break;
		rc = r == 0 ? 0 : -1;
	}
	free(out.p);
	close(fd);
	return rc;
}

/* Pass the answer on; 1 when the client's connection can stay open. */
static int reply(int c, const char *method, struct buf *resp)
{
	char *he = resp->len ? memmem(resp->p, resp->len, "\r\n\r\n", 4) : NULL;
	struct buf out = { 0 };
	size_t hl;
	long status;
	int framed, ok;

	if (!he)
		return -1;
	hl = (size_t)(he - resp->p) + 4;
	status = strtol(resp->p + 9, NULL, 10);
	framed = header(resp->p, hl, "content-length") ||
		 header(resp->p, hl, "transfer-encoding") || strcmp(method, "HEAD") == 0 ||
		 status == 204 || status == 304;
	ok = rewrite_head(&out, resp->p, hl, framed ? "" : "Connection: close\r\n") == 0 &&
	     buf_add(&out, resp->p + hl, resp->len - hl) == 0 && write_all(c, out.p, out.len) == 0;
	free(out.p);
	return ok ? framed : -1;
}

static void slow_down(int c)
{
	static const char body[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>"
		"<Message>injected by faultproxy</Message></Error>\n";
	char head[256];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
			 "Content-Length: %zu\r\n\r\n",
			 sizeof(body) - 1);

	write_all(c, head, (size_t)n);
	write_all(c, body, sizeof(body) - 1);
}

static void *serve(void *arg)
{
	int c = (int)(intptr_t)arg;
	struct buf in = { 0 };

	for (;;) {
		char method[16] = "", path[512] = "";
		struct spec sp;
		struct buf resp = { 0 };
		char *he;
		const char *cl;
		size_t hl, total;
		int keep, lose_reply = 0;

		while (!(he = in.len ? memmem(in.p, in.len, "\r\n\r\n", 4) : NULL))
			if (in.len > HEAD_MAX || fill(c, &in, in.len + 1) < 0)
				goto out;
		hl = (size_t)(he - in.p) + 4;
		cl = header(in.p, hl, "content-length");
		total = hl + (cl ? strtoull(cl, NULL, 10) : 0);
		if (fill(c, &in, total) < 0)
			goto out;
		sscanf(in.p, "%15s %511s", method, path);

		pthread_mutex_lock(&lock);
		refresh();
		sp = cur;
		int delay = roll(sp.delay), failing = sp.outage || roll(sp.fail);
		int reset = !failing && roll(sp.reset), half = roll(PPM / 2);
		pthread_mutex_unlock(&lock);

		if (delay && !sp.outage) {
			struct timespec ts = { .tv_sec = (time_t)(sp.delay_ms / 1000),
					       .tv_nsec = (long)(sp.delay_ms % 1000) * 1000000L };

			fprintf(stderr, "faultproxy: delay %s %s\n", method, path);
			nanosleep(&ts, NULL);
		}
		if (sp.outage) {
			fprintf(stderr, "faultproxy: outage %s %s\n", method, path);
			reset_conn(c);
			free(in.p);
			return NULL;
		}
		if (failing) {
			fprintf(stderr, "faultproxy: 503 %s %s\n", method, path);
			slow_down(c);
		} else if (reset && half) {
			fprintf(stderr, "faultproxy: reset-before %s %s\n", method, path);
			reset_conn(c);
			free(in.p);
			return NULL;
		} else {
			lose_reply = reset;
			if (forward(in.p, hl, total, &resp) < 0) {
				fprintf(stderr, "faultproxy: upstream failed for %s %s\n", method,
					path);
				free(resp.p);
				goto out;
			}
			if (lose_reply) {
				fprintf(stderr, "faultproxy: reset-after %s %s\n", method, path);
				free(resp.p);
				reset_conn(c);
				free(in.p);
				return NULL;
			}
			keep = reply(c, method, &resp);
			free(resp.p);
			if (keep <= 0)
				goto out;
		}
		memmove(in.p, in.p + total, in.len - total);
		in.len -= total;
	}
out:
	free(in.p);
	close(c);
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	int one = 1, s;

	if (argc != 3) {
		fprintf(stderr, "usage: faultproxy CONTROL UPSTREAM_PORT\n");
		return 2;
	}
	ctl_path = argv[1];
	upstream_port = atoi(argv[2]);
	rng ^= now_ns();
	signal(SIGPIPE, SIG_IGN);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 128) < 0 ||
	    getsockname(s, (struct sockaddr *)&a, &alen) < 0) {
		perror("faultproxy: listen");
		return 1;
	}
	printf("%d\n", ntohs(a.sin_port));
	fflush(stdout);
	for (;;) {
		int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
		pthread_t t;

		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			perror("faultproxy: accept");
			return 1;
		}
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (pthread_create(&t, NULL, serve, (void *)(intptr_t)c) != 0) {
			close(c);
			continue;
		}
		pthread_detach(t);
	}
}
