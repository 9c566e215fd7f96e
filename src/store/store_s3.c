/* store_s3.c: the S3 backend: objects of a bucket (below an optional key
 * prefix) of any S3-compatible service, through libcurl, signed with AWS
 * Signature V4 (s3_sign.c), listings and errors parsed with expat
 * (s3_xml.c).
 *
 * Connections: a pool of curl easy handles.  A request takes an idle handle
 * (or makes one), and gives it back afterwards with its connection kept
 * alive, so steady traffic opens no new connections and allocates no big
 * buffers.  Parallelism is bounded by the callers' threads (the uploaders and
 * readers), each holding at most one handle.
 *
 * Faults: every attempt has a connect timeout, a low-speed abort and a total
 * timeout.  Retryable failures (connection errors and timeouts, 5xx, 429,
 * SlowDown, RequestTimeout) are retried with capped exponential backoff and
 * full jitter until store_timeout_ms has passed since the first attempt;
 * then -EIO (or -ETIMEDOUT when the service never answered).  Other errors
 * (403, NoSuchBucket, malformed requests) fail at once with one log line
 * naming the bucket, the key and S3's error code.
 *
 * Payloads are signed with their real SHA-256 (the empty hash for requests
 * without a body), never UNSIGNED-PAYLOAD, so a corrupted upload is refused
 * by the server.
 *
 * Locking: the handle pool has its own mutex; everything else is read-only
 * after open, so every op is thread-safe. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "cfg.h"
#include "common/util.h"
#include "log.h"
#include "store/s3_sign.h"
#include "store/s3_xml.h"
#include "store/store.h"

#define KEY_MAX STORE_KEY_MAX
#define URL_MAX 4096
#define ERROR_BODY_MAX (64 * 1024)
#define LIST_BODY_MAX (32 * 1024 * 1024)
#define BACKOFF_FIRST_MS 100
#define BACKOFF_CAP_MS 5000
#define CONNECT_TIMEOUT_MS 10000
#define LOW_SPEED_BYTES 1024 /* an attempt slower than this ... */
#define LOW_SPEED_SECS 15 /* ... for this long is aborted and retried */
#define IO_BUFFER (256 * 1024)

struct s3_conn {
	CURL *h;
	struct s3_conn *next;
};

struct store_s3 {
	struct store base;
	char *bucket;
	char *prefix; /* "" or "some/prefix/" */
	char *origin; /* "scheme://host[:port]" that requests go to */
	char *host; /* the Host header: host[:port] of origin */
	char *path_base; /* "/bucket" (path style) or "" */
	char *access_key, *secret_key, *token, *region;
	char *storage_class, *ca_file;
	int verify_tls;
	uint64_t timeout_ms;

	pthread_mutex_t lock; /* protects idle */
	struct s3_conn *idle;
};

/* A growable response body. */
struct dbuf {
	char *p;
	size_t len, cap, max;
};

/* One logical request, retried as a whole. */
struct s3_req {
	const char *method;
	const char *key; /* object key below the prefix; NULL for the bucket itself */
	const char *query; /* encoded query string or NULL */
	const void *body;
	size_t body_len;
	const char *body_hash;
	int if_none_match;
	const char *if_match; /* etag without quotes, or NULL */
	char *etag; /* STORE_ETAG_MAX bytes for the answer's ETag, or NULL */
	int ranged;
	uint64_t range_off;
	void *out; /* fixed destination of a GET (ranged reads) */
	size_t out_cap;
	struct dbuf *dyn; /* growable destination (get_all, listings) */

	/* state of the current attempt */
	CURL *h;
	size_t read_pos;
	int started;
	uint64_t skip;
	size_t got;
	long status;
	int64_t length; /* Content-Length of a successful answer, -1 if none */
	struct dbuf err;
	char curl_err[CURL_ERROR_SIZE];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static struct store_s3 *to_s3(struct store *st)
{
	return (struct store_s3 *)st;
}


/* ---- connection pool ---- */

/* The socket of a pooled handle's connection (each handle has its own
 * connection cache and one connection at a time to the one endpoint),
 * recorded when curl opens it: CURLINFO_ACTIVESOCKET only answers after a
 * transfer, and ack_now needs it in the middle of one. */
struct conn_sock {
	curl_socket_t fd;
};

static int on_sockopt(void *arg, curl_socket_t fd, curlsocktype purpose)
{
	struct conn_sock *cs = arg;

	if (purpose == CURLSOCKTYPE_IPCXN)
		cs->fd = fd;
	return CURL_SOCKOPT_OK;
}

static int on_closesocket(void *arg, curl_socket_t fd)
{
	struct conn_sock *cs = arg;

	if (cs->fd == fd)
		cs->fd = CURL_SOCKET_BAD;
	return close(fd);
}

/* Acknowledge the answer's header now.  A server that writes the header
 * and a small body in two sends without TCP_NODELAY (radosgw's beast
 * front-end does) holds the body back by Nagle's rule until the header is
 * acknowledged, and on a reused connection Linux delays that ACK by 40 ms:
 * every small GET took 43 ms instead of under 1 ms here.  TCP_QUICKACK
 * sends the pending ACK at once; it is not sticky, hence once per answer. */
static void ack_now(CURL *h)
{
	struct conn_sock *cs = NULL;
	int one = 1;

	if (curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&cs) == CURLE_OK && cs &&
	    cs->fd != CURL_SOCKET_BAD)
		(void)setsockopt(cs->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

static void conn_free(CURL *h)
{
	struct conn_sock *cs = NULL;

	curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&cs);
	curl_easy_cleanup(h); /* closes the connection: on_closesocket uses cs */
	free(cs);
}

static CURL *conn_new(struct store_s3 *s)
{
	struct conn_sock *cs = malloc(sizeof(*cs));
	CURL *h = cs ? curl_easy_init() : NULL;

	if (!h) {
		free(cs);
		return NULL;
	}
	cs->fd = CURL_SOCKET_BAD;
	curl_easy_setopt(h, CURLOPT_PRIVATE, cs);
	curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, on_sockopt);
	curl_easy_setopt(h, CURLOPT_SOCKOPTDATA, cs);
	curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, on_closesocket);
	curl_easy_setopt(h, CURLOPT_CLOSESOCKETDATA, cs);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_BUFFERSIZE, (long)IO_BUFFER);
	curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, (long)IO_BUFFER);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, (long)LOW_SPEED_BYTES);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)LOW_SPEED_SECS);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, s->verify_tls ? 1L : 0L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, s->verify_tls ? 2L : 0L);
	if (s->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, s->ca_file);
	return h;
}

static CURL *conn_get(struct store_s3 *s)
{
	struct s3_conn *c;
	CURL *h;

	pthread_mutex_lock(&s->lock);
	c = s->idle;
	if (c)
		s->idle = c->next;
	pthread_mutex_unlock(&s->lock);
	if (!c)
		return conn_new(s);
	h = c->h;
	free(c);
	return h;
}

static void conn_put(struct store_s3 *s, CURL *h)
{
	struct s3_conn *c = malloc(sizeof(*c));

	if (!c) {
		conn_free(h);
		return;
	}
	c->h = h;
	pthread_mutex_lock(&s->lock);
	c->next = s->idle;
	s->idle = c;
	pthread_mutex_unlock(&s->lock);
}

/* ---- transfer callbacks ---- */

static int dbuf_add(struct dbuf *b, const char *p, size_t n)
{
	if (b->len + n > b->max)
		return -EFBIG;
	if (b->len + n + 1 > b->cap) {
		size_t cap = MAX(b->cap * 2, b->len + n + 1);
		char *np = realloc(b->p, cap);

		if (!np)
			return -ENOMEM;
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

/* The first bytes of the body: learn the status, and where a server ignored
 * our Range (200 instead of 206), skip to the offset ourselves. */
static void body_start(struct s3_req *r)
{
	curl_off_t clen = -1;

	r->started = 1;
	curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &r->status);
	if (r->ranged && r->status == 200)
		r->skip = r->range_off;
	curl_easy_getinfo(r->h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
	if (r->dyn && r->status / 100 == 2 && clen > 0 && (uint64_t)clen < r->dyn->max &&
	    r->dyn->cap < (size_t)clen + 1) {
		char *np = realloc(r->dyn->p, (size_t)clen + 1);

		if (np) {
			r->dyn->p = np;
			r->dyn->cap = (size_t)clen + 1;
		}
	}
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
	struct s3_req *r = arg;
	size_t n = size * nmemb, len = n;

	if (!r->started)
		body_start(r);
	if (r->status / 100 != 2) {
		/* An error document: keep its start for the message. */
		dbuf_add(&r->err, p, MIN(n, r->err.max - MIN(r->err.len, r->err.max)));
		return n;
	}
	if (r->dyn)
		return dbuf_add(r->dyn, p, n) == 0 ? n : 0;
	if (r->skip) {
		size_t k = (size_t)MIN((uint64_t)len, r->skip);

		r->skip -= k;
		p += k;
		len -= k;
	}
	if (r->out && r->got < r->out_cap) {
		size_t k = MIN(len, r->out_cap - r->got);

		memcpy((char *)r->out + r->got, p, k);
		r->got += k;
	}
	return n;
}

/* Keep the ETag of the answer, without its quotes. */
static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
	struct s3_req *r = arg;
	size_t n = size * nmemb, len = n;

	if (n <= 2 && (p[0] == '\r' || p[0] == '\n')) {
		ack_now(r->h);
		return n;
	}
	if (!r->etag || n < 5 || strncasecmp(p, "etag:", 5) != 0)
		return n;
	p += 5;
	len -= 5;
	while (len && (*p == ' ' || *p == '"')) {
		p++;
		len--;
	}
	while (len && strchr("\r\n \"", p[len - 1]))
		len--;
	if (len < STORE_ETAG_MAX) {
		memcpy(r->etag, p, len);
		r->etag[len] = '\0';
	}
	return n;
}

static size_t on_read(char *p, size_t size, size_t nmemb, void *arg)
{
	struct s3_req *r = arg;
	size_t n = MIN(size * nmemb, r->body_len - r->read_pos);

	memcpy(p, (const char *)r->body + r->read_pos, n);
	r->read_pos += n;
	return n;
}

static int on_seek(void *arg, curl_off_t off, int origin)
{
	struct s3_req *r = arg;

	if (origin != SEEK_SET || off < 0 || (uint64_t)off > r->body_len)
		return CURL_SEEKFUNC_FAIL;
	r->read_pos = (size_t)off;
	return CURL_SEEKFUNC_OK;
}

/* ---- one attempt ---- */

/* The URI-encoded path of r: "/bucket/prefix/key" or "/prefix/key". */
static int req_path(struct store_s3 *s, const struct s3_req *r, char *out, size_t len)
{
	char full[KEY_MAX * 2 + 2];

	snprintf(out, len, "%s", s->path_base);
	if (!r->key)
		return s->path_base[0] ? 0 : s3_uri_encode("/", 1, out, len);
	if ((size_t)snprintf(full, sizeof(full), "/%s%s", s->prefix, r->key) >= sizeof(full))
		return -ENAMETOOLONG;
	return s3_uri_encode(full, 1, out, len);
}

static struct curl_slist *add_header(struct curl_slist *l, const char *name, const char *value,
				     int *failed)
{
	char line[4096];
	struct curl_slist *n = NULL;
	int len = snprintf(line, sizeof(line), "%s: %s", name, value);

	if (len >= 0 && (size_t)len < sizeof(line))
		n = curl_slist_append(l, line);
	if (!n)
		*failed = 1;
	return n ? n : l;
}

/* Sign r and set up its headers on h.  0 or -errno. */
static int req_headers(struct store_s3 *s, struct s3_req *r, const char *path,
		       struct curl_slist **list)
{
	struct s3_hdr hdrs[10];
	size_t n = 0;
	char date[S3_AMZ_DATE], range[64], auth[1024];
	struct s3_sign_key k = { .access_key = s->access_key,
				 .secret_key = s->secret_key,
				 .region = s->region,
				 .service = "s3" };
	struct s3_sign_req sr = { .method = r->method,
				  .path = path,
				  .query = r->query,
				  .hdrs = hdrs,
				  .payload_hash = r->body_hash };
	int failed = 0, rc;

	s3_amz_date((long long)time(NULL), date);
	hdrs[n++] = (struct s3_hdr){ "host", s->host };
	hdrs[n++] = (struct s3_hdr){ "x-amz-date", date };
	hdrs[n++] = (struct s3_hdr){ "x-amz-content-sha256", r->body_hash };
	if (r->ranged) {
		snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, r->range_off,
			 r->range_off + r->out_cap - 1);
		hdrs[n++] = (struct s3_hdr){ "range", range };
	}
	if (r->if_none_match)
		hdrs[n++] = (struct s3_hdr){ "if-none-match", "*" };
	/* The etag goes without its quotes: Debian's radosgw 16.2 matches
	 * If-Match only then (AWS accepts both forms). */
	if (r->if_match)
		hdrs[n++] = (struct s3_hdr){ "if-match", r->if_match };
	if (s->token)
		hdrs[n++] = (struct s3_hdr){ "x-amz-security-token", s->token };
	if (s->storage_class && strcmp(r->method, "PUT") == 0)
		hdrs[n++] = (struct s3_hdr){ "x-amz-storage-class", s->storage_class };
	sr.nhdrs = n;
	rc = s3_sign(&sr, date, &k, auth, sizeof(auth));
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n; i++)
		*list = add_header(*list, hdrs[i].name, hdrs[i].value, &failed);
	*list = add_header(*list, "authorization", auth, &failed);
	/* No 100-continue round trip before each upload. */
	*list = curl_slist_append(*list, "Expect:");
	return failed || !*list ? -ENOMEM : 0;
}

static void req_setup(struct s3_req *r, const char *url, struct curl_slist *hdrs,
		      uint64_t remaining_ms)
{
	CURL *h = r->h;

	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->curl_err);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)MAX(MIN(remaining_ms, CONNECT_TIMEOUT_MS), 500));
	/* A stalled transfer is caught by the low-speed limit; the total bound
	 * keeps an attempt within the request's time, but lets a big object
	 * finish. */
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
			 (long)MAX(remaining_ms, 10000 + r->body_len / 1024));
	if (strcmp(r->method, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(r->method, "PUT") == 0) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, r);
		curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(h, CURLOPT_SEEKDATA, r);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
	} else if (strcmp(r->method, "GET") != 0) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
	}
}

enum verdict { OK, RETRY, FAIL };

static int retryable_curl(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SEND_FAIL_REWIND:
		return 1;
	default:
		return 0;
	}
}

static int retryable_code(long status, const char *code)
{
	if (status >= 500 || status == 429 || status == 408)
		return 1;
	return strcmp(code, "SlowDown") == 0 || strcmp(code, "RequestTimeout") == 0 ||
	       strcmp(code, "OperationAborted") == 0 ||
	       strcmp(code, "ConditionalRequestConflict") == 0;
}

/* What failed last, for the message when we give up. */
struct attempt {
	enum verdict v;
	int err;
	char why[512];
};

static void describe_http(struct s3_req *r, char *code, size_t codelen, char *why, size_t len)
{
	char msg[256];

	if (r->err.len && s3_xml_error(r->err.p, r->err.len, code, codelen, msg, sizeof(msg)) == 0)
		snprintf(why, len, "HTTP %ld %s%s%s", r->status, code, msg[0] ? ": " : "", msg);
	else
		snprintf(why, len, "HTTP %ld", r->status);
}

/* Map a finished attempt onto the store's contract. */
static void judge(struct s3_req *r, CURLcode cc, struct attempt *a)
{
	char code[64] = "";

	a->err = 0;
	if (cc != CURLE_OK) {
		snprintf(a->why, sizeof(a->why), "%s",
			 r->curl_err[0] ? r->curl_err : curl_easy_strerror(cc));
		a->v = retryable_curl(cc) ? RETRY : FAIL;
		a->err = cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_COULDNT_CONNECT ||
					 cc == CURLE_COULDNT_RESOLVE_HOST ?
				 -ETIMEDOUT :
				 -EIO;
		if (cc == CURLE_WRITE_ERROR)
			a->err = -ENOMEM;
		return;
	}
	curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &r->status);
	if (r->status / 100 == 2) {
		curl_off_t clen = -1;

		curl_easy_getinfo(r->h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
		r->length = clen;
		a->v = OK;
		return;
	}
	describe_http(r, code, sizeof(code), a->why, sizeof(a->why));
	a->v = FAIL;
	if (r->status == 404 && strcmp(code, "NoSuchBucket") != 0) {
		a->err = -ENOENT;
	} else if (r->status == 412) {
		a->err = -EEXIST;
	} else if (r->status == 416 && r->ranged) {
		a->v = OK; /* a read at or past the end: no bytes */
	} else if (r->status == 403) {
		a->err = -EACCES;
	} else if (r->status == 507) {
		a->err = -ENOSPC;
	} else {
		a->err = -EIO;
		if (retryable_code(r->status, code))
			a->v = RETRY;
	}
}

static void attempt_once(struct store_s3 *s, struct s3_req *r, uint64_t remaining_ms,
			 struct attempt *a)
{
	char path[URL_MAX], url[URL_MAX + 512];
	struct curl_slist *hdrs = NULL;
	CURLcode cc;
	int rc;

	r->read_pos = 0;
	r->started = 0;
	r->skip = 0;
	r->got = 0;
	r->status = 0;
	r->length = -1;
	r->err.len = 0;
	r->curl_err[0] = '\0';
	if (r->etag)
		r->etag[0] = '\0';
	if (r->dyn)
		r->dyn->len = 0;

	rc = req_path(s, r, path, sizeof(path));
	if (rc == 0)
		rc = snprintf(url, sizeof(url), "%s%s%s%s", s->origin, path, r->query ? "?" : "",
			      r->query ? r->query : "") >= (int)sizeof(url) ?
			     -ENAMETOOLONG :
			     0;
	if (rc == 0)
		rc = req_headers(s, r, path, &hdrs);
	if (rc < 0) {
		curl_slist_free_all(hdrs);
		a->v = FAIL;
		a->err = rc;
		snprintf(a->why, sizeof(a->why), "%s", strerror(-rc));
		return;
	}
	req_setup(r, url, hdrs, remaining_ms);
	cc = curl_easy_perform(r->h);
	judge(r, cc, a);
	curl_easy_setopt(r->h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdrs);
}

static uint64_t jitter(uint64_t max_ms)
{
	static _Thread_local uint64_t x;

	if (!x)
		x = util_now_ns() | 1;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return max_ms / 2 + x % (max_ms / 2 + 1);
}

static const char *req_what(const struct s3_req *r)
{
	return r->key ? r->key : r->query ? "(bucket listing)" : "(bucket)";
}

/* Run r until it succeeds, fails for good, or has kept failing for the
 * store's timeout.  0 or -errno; failures other than -ENOENT and -EEXIST
 * are logged here. */
static int perform(struct store_s3 *s, struct s3_req *r)
{
	uint64_t start = util_now_ns(), limit = s->timeout_ms * 1000000ULL, backoff = 0;
	struct attempt a = { 0 };
	int tries = 0;

	r->err.max = ERROR_BODY_MAX;
	r->h = conn_get(s);
	if (!r->h) {
		log_error("store %s: cannot make a curl handle", s->base.url);
		return -ENOMEM;
	}
	for (;;) {
		uint64_t spent = util_now_ns() - start;

		tries++;
		attempt_once(s, r, (limit - MIN(spent, limit)) / 1000000, &a);
		if (a.v != RETRY)
			break;
		backoff = backoff ? MIN(backoff * 2, BACKOFF_CAP_MS) : BACKOFF_FIRST_MS;
		uint64_t wait = jitter(backoff);
		spent = util_now_ns() - start;
		if (spent + wait * 1000000ULL >= limit) {
			log_error("store %s: %s %s: still failing after %d attempts in %" PRIu64
				  " ms (%s); giving up",
				  s->base.url, r->method, req_what(r), tries, spent / 1000000,
				  a.why);
			if (a.err == 0 || a.err == -EACCES)
				a.err = -EIO;
			break;
		}
		if (tries == 1)
			log_warn("store %s: %s %s: %s; retrying", s->base.url, r->method,
				 req_what(r), a.why);
		STORE_COUNT(&s->base, retries, 1);
		struct timespec ts = { .tv_sec = (time_t)(wait / 1000),
				       .tv_nsec = (long)(wait % 1000) * 1000000L };
		nanosleep(&ts, NULL);
	}
	conn_put(s, r->h);
	free(r->err.p);
	r->err.p = NULL;
	if (a.v == OK)
		return 0;
	if (a.v == FAIL && a.err != -ENOENT && a.err != -EEXIST) {
		log_error("store %s: %s %s in bucket %s: %s%s", s->base.url, r->method, req_what(r),
			  s->bucket, a.why,
			  a.err == -EACCES ? " (check the S3 credentials and the bucket's policy)" :
					     "");
	}
	return a.err ? a.err : -EIO;
}

/* ---- the store ops ---- */

static ssize_t s3_get(struct store *st, const char *key, uint64_t off, size_t len, void *buf)
{
	struct s3_req r = { .method = "GET",
			    .key = key,
			    .body_hash = S3_EMPTY_SHA256,
			    .ranged = 1,
			    .range_off = off,
			    .out = buf,
			    .out_cap = len };
	int rc;

	if (!store_key_valid(key))
		return -EINVAL;
	if (len == 0)
		return 0;
	rc = perform(to_s3(st), &r);
	if (rc < 0)
		return rc;
	return (ssize_t)r.got;
}

static int s3_get_all(struct store *st, const char *key, void **data, size_t *len)
{
	struct dbuf body = { .max = SIZE_MAX / 2 };
	struct s3_req r = {
		.method = "GET", .key = key, .body_hash = S3_EMPTY_SHA256, .dyn = &body
	};
	int rc;

	if (!store_key_valid(key))
		return -EINVAL;
	rc = perform(to_s3(st), &r);
	if (rc < 0) {
		free(body.p);
		return rc;
	}
	if (!body.p)
		body.p = malloc(1);
	if (!body.p)
		return -ENOMEM;
	*data = body.p;
	*len = body.len;
	return 0;
}

static int s3_put(struct store *st, const char *key, const void *data, size_t len, int flags)
{
	char hash[S3_SHA256_HEX];
	struct s3_req r = { .method = "PUT",
			    .key = key,
			    .body = data,
			    .body_len = len,
			    .body_hash = hash,
			    .if_none_match = !!(flags & STORE_PUT_IF_ABSENT) };

	if (!store_key_valid(key))
		return -EINVAL;
	s3_sha256_hex(data, len, hash);
	return perform(to_s3(st), &r);
}

static int s3_put_cond(struct store *st, const char *key, const void *data, size_t len,
		       const char *if_match, char etag[])
{
	char hash[S3_SHA256_HEX];
	struct s3_req r = { .method = "PUT",
			    .key = key,
			    .body = data,
			    .body_len = len,
			    .body_hash = hash,
			    .if_none_match = !if_match,
			    .if_match = if_match,
			    .etag = etag };
	int rc;

	if (!store_key_valid(key))
		return -EINVAL;
	s3_sha256_hex(data, len, hash);
	rc = perform(to_s3(st), &r);
	if (rc == 0 && !etag[0]) {
		log_error("store %s: PUT %s: the answer has no ETag", st->url, key);
		return -EIO;
	}
	return rc;
}

static int s3_get_etag(struct store *st, const char *key, void **data, size_t *len, char etag[])
{
	struct dbuf body = { .max = SIZE_MAX / 2 };
	struct s3_req r = { .method = "GET",
			    .key = key,
			    .body_hash = S3_EMPTY_SHA256,
			    .dyn = &body,
			    .etag = etag };
	int rc;

	if (!store_key_valid(key))
		return -EINVAL;
	rc = perform(to_s3(st), &r);
	if (rc == 0 && !etag[0]) {
		log_error("store %s: GET %s: the answer has no ETag", st->url, key);
		rc = -EIO;
	}
	if (rc == 0 && !body.p)
		body.p = malloc(1);
	if (rc == 0 && !body.p)
		rc = -ENOMEM;
	if (rc < 0) {
		free(body.p);
		return rc;
	}
	*data = body.p;
	*len = body.len;
	return 0;
}

static int s3_del(struct store *st, const char *key, int flags)
{
	(void)flags; /* a delete is durable when S3 answers */
	struct s3_req r = { .method = "DELETE", .key = key, .body_hash = S3_EMPTY_SHA256 };
	int rc;

	if (!store_key_valid(key))
		return -EINVAL;
	rc = perform(to_s3(st), &r);
	return rc == -ENOENT ? 0 : rc;
}

static int s3_stat(struct store *st, const char *key, uint64_t *size)
{
	struct s3_req r = { .method = "HEAD", .key = key, .body_hash = S3_EMPTY_SHA256 };
	int rc;

	if (!store_key_valid(key))
		return -EINVAL;
	rc = perform(to_s3(st), &r);
	if (rc < 0)
		return rc;
	if (r.length < 0) {
		log_error("store %s: HEAD %s: the answer has no Content-Length", st->url, key);
		return -EIO;
	}
	*size = (uint64_t)r.length;
	return 0;
}

struct list_ctx {
	size_t strip; /* length of the store's prefix */
	store_list_cb cb;
	void *arg;
};

static int list_one(void *arg, const char *key, uint64_t size)
{
	struct list_ctx *c = arg;

	return c->cb(c->arg, key + c->strip, size);
}

/* One page of a listing: fetch and parse it. */
static int list_page(struct store_s3 *s, const char *full_prefix, char *token, struct list_ctx *ctx,
		     struct dbuf *body, int *truncated)
{
	char query[URL_MAX] = "list-type=2&prefix=";
	struct s3_req r = {
		.method = "GET", .query = query, .body_hash = S3_EMPTY_SHA256, .dyn = body
	};
	int rc = s3_uri_encode(full_prefix, 0, query, sizeof(query));

	if (rc == 0 && token[0]) {
		if (strlen(query) + strlen("&continuation-token=") >= sizeof(query))
			return -ENAMETOOLONG;
		strcat(query, "&continuation-token=");
		rc = s3_uri_encode(token, 0, query, sizeof(query));
	}
	if (rc < 0)
		return rc;
	rc = perform(s, &r);
	if (rc < 0)
		return rc;
	rc = s3_xml_list(body->p ? body->p : "", body->len, list_one, ctx, truncated, token);
	if (rc == -EPROTO) {
		log_error("store %s: the listing of %s is not a valid ListObjectsV2 answer",
			  s->base.url, full_prefix);
		return -EIO;
	}
	return rc;
}

static int s3_list(struct store *st, const char *prefix, store_list_cb cb, void *arg)
{
	struct store_s3 *s = to_s3(st);
	struct list_ctx ctx = { .strip = strlen(s->prefix), .cb = cb, .arg = arg };
	struct dbuf body = { .max = LIST_BODY_MAX };
	CLEANUP_FREE char *full = NULL;
	CLEANUP_FREE char *token = calloc(1, S3_XML_TOKEN_MAX);
	int truncated = 1, rc = 0;

	if (!token || asprintf(&full, "%s%s", s->prefix, prefix) < 0) {
		full = NULL;
		return -ENOMEM;
	}
	while (truncated && rc == 0)
		rc = list_page(s, full, token, &ctx, &body, &truncated);
	free(body.p);
	return rc;
}

static void s3_close(struct store *st)
{
	struct store_s3 *s = to_s3(st);

	while (s->idle) {
		struct s3_conn *c = s->idle;

		s->idle = c->next;
		conn_free(c->h);
		free(c);
	}
	pthread_mutex_destroy(&s->lock);
	free(s->bucket);
	free(s->prefix);
	free(s->origin);
	free(s->host);
	free(s->path_base);
	free(s->access_key);
	if (s->secret_key)
		explicit_bzero(s->secret_key, strlen(s->secret_key));
	free(s->secret_key);
	free(s->token);
	free(s->region);
	free(s->storage_class);
	free(s->ca_file);
	free(s->base.url);
	free(s);
}

static const struct store_ops s3_ops = {
	.name = "s3",
	.get = s3_get,
	.get_all = s3_get_all,
	.put = s3_put,
	.del = s3_del,
	.list = s3_list,
	.stat = s3_stat,
	.put_cond = s3_put_cond,
	.get_etag = s3_get_etag,
	.close = s3_close,
};

/* ---- open: URL, endpoint, credentials, and a first request ---- */

/* "s3://bucket[/prefix]": bucket names as S3 allows them, the prefix a
 * valid key (it becomes "prefix/"). */
static int parse_url(struct store_s3 *s, const char *url)
{
	const char *b = url + strlen("s3://");
	size_t blen = strcspn(b, "/");
	const char *p = b + blen;

	for (size_t i = 0; i < blen; i++)
		if (!islower((unsigned char)b[i]) && !isdigit((unsigned char)b[i]) &&
		    !strchr(".-_", b[i]))
			blen = 0;
	if (blen < 3 || blen > 63) {
		log_error("store URL %s: expected s3://bucket/prefix with a valid bucket name",
			  url);
		return -EINVAL;
	}
	while (*p == '/')
		p++;
	s->bucket = strndup(b, blen);
	s->prefix = malloc(strlen(p) + 2);
	if (!s->bucket || !s->prefix)
		return -ENOMEM;
	strcpy(s->prefix, p);
	while (*s->prefix && s->prefix[strlen(s->prefix) - 1] == '/')
		s->prefix[strlen(s->prefix) - 1] = '\0';
	if (*s->prefix && !store_key_valid(s->prefix)) {
		log_error("store URL %s: the prefix may hold only A-Z a-z 0-9 . _ - and /", url);
		return -EINVAL;
	}
	if (*s->prefix)
		strcat(s->prefix, "/");
	return 0;
}

static int parse_endpoint(struct store_s3 *s, const struct cfg *cfg)
{
	CLEANUP_FREE char *aws = NULL;
	const char *ep = cfg->s3_endpoint;
	const char *auth, *scheme_end;
	size_t alen;

	if (!ep) {
		if (asprintf(&aws, "https://s3.%s.amazonaws.com", cfg->s3_region) < 0) {
			aws = NULL;
			return -ENOMEM;
		}
		ep = aws;
	}
	scheme_end = strstr(ep, "://");
	if (!scheme_end || (strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0)) {
		log_error("s3_endpoint %s: expected http://host[:port] or https://host[:port]", ep);
		return -EINVAL;
	}
	auth = scheme_end + 3;
	alen = strcspn(auth, "/");
	if (alen == 0 || auth[alen + strspn(auth + alen, "/")] != '\0') {
		log_error("s3_endpoint %s: expected a host and port only, without a path", ep);
		return -EINVAL;
	}
	if (cfg->s3_path_style) {
		if (asprintf(&s->origin, "%.*s%.*s", (int)(auth - ep), ep, (int)alen, auth) < 0 ||
		    asprintf(&s->host, "%.*s", (int)alen, auth) < 0 ||
		    asprintf(&s->path_base, "/%s", s->bucket) < 0)
			return -ENOMEM;
	} else {
		if (asprintf(&s->origin, "%.*s%s.%.*s", (int)(auth - ep), ep, s->bucket, (int)alen,
			     auth) < 0 ||
		    asprintf(&s->host, "%s.%.*s", s->bucket, (int)alen, auth) < 0 ||
		    !(s->path_base = strdup("")))
			return -ENOMEM;
	}
	return 0;
}

/* The first line of path, without its line end. */
static int read_first_line(const char *path, char **out)
{
	CLEANUP_FREE void *data = NULL;
	size_t len;
	int rc = util_read_file(path, &data, &len);

	if (rc < 0)
		return rc;
	*out = strndup(data, strcspn(data, "\r\n"));
	if (data)
		explicit_bzero(data, len);
	return *out ? 0 : -ENOMEM;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Read one profile of an AWS shared credentials file (INI).  0 when it had
 * both keys, -ENOENT otherwise, -errno on other errors. */
static int read_aws_credentials(struct store_s3 *s, const char *path, const char *profile)
{
	FILE *f = fopen(path, "re");
	char line[1024];
	int in = 0;

	if (!f)
		return errno == ENOENT ? -ENOENT : -errno;
	while (fgets(line, sizeof(line), f)) {
		char *l = trim(line), *eq, **dst = NULL;

		if (*l == '[') {
			l[strcspn(l, "]")] = '\0';
			in = strcmp(trim(l + 1), profile) == 0;
			continue;
		}
		eq = strchr(l, '=');
		if (!in || !eq)
			continue;
		*eq = '\0';
		if (strcmp(trim(l), "aws_access_key_id") == 0)
			dst = &s->access_key;
		else if (strcmp(trim(l), "aws_secret_access_key") == 0)
			dst = &s->secret_key;
		else if (strcmp(trim(l), "aws_session_token") == 0)
			dst = &s->token;
		if (dst) {
			free(*dst);
			*dst = strdup(trim(eq + 1));
		}
	}
	explicit_bzero(line, sizeof(line));
	fclose(f);
	return s->access_key && s->secret_key ? 0 : -ENOENT;
}

static int env_dup(char **dst, const char *name)
{
	const char *v = getenv(name);

	if (!v || !*v)
		return 0;
	*dst = strdup(v);
	return *dst ? 1 : -ENOMEM;
}

/* Credentials: the config, else the environment, else ~/.aws/credentials. */
static int load_credentials(struct store_s3 *s, const struct cfg *cfg)
{
	CLEANUP_FREE char *path = NULL;
	const char *profile = getenv("AWS_PROFILE");
	const char *file = getenv("AWS_SHARED_CREDENTIALS_FILE");
	int rc;

	if (cfg->s3_access_key) {
		s->access_key = strdup(cfg->s3_access_key);
		if (cfg->s3_secret_key) {
			s->secret_key = strdup(cfg->s3_secret_key);
		} else if (cfg->s3_secret_key_file) {
			rc = read_first_line(cfg->s3_secret_key_file, &s->secret_key);
			if (rc < 0) {
				log_error("s3_secret_key_file %s: cannot read: %s",
					  cfg->s3_secret_key_file, strerror(-rc));
				return rc;
			}
		} else {
			log_error("s3_access_key is set but neither s3_secret_key nor "
				  "s3_secret_key_file is");
			return -EINVAL;
		}
		return s->access_key && s->secret_key ? 0 : -ENOMEM;
	}
	if (env_dup(&s->access_key, "AWS_ACCESS_KEY_ID") > 0) {
		if (env_dup(&s->secret_key, "AWS_SECRET_ACCESS_KEY") <= 0) {
			log_error("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
			return -EINVAL;
		}
		return env_dup(&s->token, "AWS_SESSION_TOKEN") < 0 ? -ENOMEM : 0;
	}
	if (!file) {
		if (!getenv("HOME") || asprintf(&path, "%s/.aws/credentials", getenv("HOME")) < 0)
			path = NULL;
		file = path;
	}
	rc = file ? read_aws_credentials(s, file, profile ? profile : "default") : -ENOENT;
	if (rc == -ENOENT)
		log_error("no S3 credentials: set s3_access_key and s3_secret_key (or "
			  "s3_secret_key_file) in the config file, or AWS_ACCESS_KEY_ID and "
			  "AWS_SECRET_ACCESS_KEY, or a [%s] profile in ~/.aws/credentials",
			  profile ? profile : "default");
	else if (rc < 0)
		log_error("%s: cannot read: %s", file, strerror(-rc));
	return rc;
}

/* A first request: the bucket exists, answers, and takes our signature. */
static int probe_bucket(struct store_s3 *s)
{
	char query[URL_MAX] = "list-type=2&max-keys=1&prefix=";
	struct dbuf body = { .max = LIST_BODY_MAX };
	struct s3_req r = {
		.method = "GET", .query = query, .body_hash = S3_EMPTY_SHA256, .dyn = &body
	};
	int rc = s3_uri_encode(s->prefix, 0, query, sizeof(query));

	if (rc == 0)
		rc = perform(s, &r);
	free(body.p);
	if (rc == -ENOENT) {
		log_error("store %s: bucket %s not found at %s", s->base.url, s->bucket, s->origin);
	}
	return rc;
}

struct store *store_s3_open(const char *url, const struct cfg *cfg)
{
	struct store_s3 *s;
	int rc;

	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		log_error("cannot initialise libcurl: %s", curl_easy_strerror(curl_init_rc));
		errno = EIO;
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		errno = ENOMEM;
		return NULL;
	}
	s->base.ops = &s3_ops;
	pthread_mutex_init(&s->lock, NULL);
	s->base.url = strdup(url);
	s->region = strdup(cfg->s3_region);
	s->verify_tls = cfg->s3_verify_tls;
	s->timeout_ms = (uint64_t)cfg->store_timeout_ms;
	rc = !s->base.url || !s->region ? -ENOMEM : 0;
	if (rc == 0 && cfg->s3_storage_class && !(s->storage_class = strdup(cfg->s3_storage_class)))
		rc = -ENOMEM;
	if (rc == 0 && cfg->s3_ca_file && !(s->ca_file = strdup(cfg->s3_ca_file)))
		rc = -ENOMEM;
	if (rc == 0)
		rc = parse_url(s, url);
	if (rc == 0)
		rc = parse_endpoint(s, cfg);
	if (rc == 0)
		rc = load_credentials(s, cfg);
	if (rc == 0)
		rc = probe_bucket(s);
	if (rc < 0) {
		if (rc == -ENOMEM)
			log_error("store %s: out of memory", url);
		s3_close(&s->base);
		errno = -rc;
		return NULL;
	}
	log_info("store %s: bucket %s at %s%s, region %s", url, s->bucket, s->origin, s->path_base,
		 s->region);
	return &s->base;
}
