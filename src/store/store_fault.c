/* store_fault.c: a store wrapper that injects faults on demand, for tests of
 * the layers above the store (upload retries, barriers that wait and then
 * fail, recovery when the store comes back, the lease's handling of lost
 * replies).  Enabled by the store_faults option, which names a control file.
 *
 * The control file is re-read at most every CHECK_NS, so a test changes the
 * store's health by rewriting it.  It holds words separated by white space,
 * commas or semicolons ('#' starts a comment to the end of the line):
 *
 *   fail=P%          that share of requests fail with -EIO, not executed
 *   reset=P%         that share is executed but the answer is lost: -EIO
 *                    (what a connection reset after the request looks like)
 *   delay=MSms@P%    that share first waits MS milliseconds (delay=MSms: all)
 *   outage           every request fails with -EIO, not executed
 *
 * P is a percentage, with a fraction if wanted ("0.5%").  An empty or
 * missing file means healthy; an unknown word is logged and ignored.
 *
 * Where it sits: right above a backend, so for the directory store (which
 * has no retries of its own) it is the store as the upper layers see it.
 * For S3 the HTTP-level proxy of the tests (tests/helpers/faultproxy.c) is
 * the better place: there the S3 backend's own retries, timeouts and error
 * parsing are exercised too; this wrapper around S3 tests only what is
 * above it.
 *
 * Locking: the current fault settings are guarded by a mutex; requests run
 * in parallel outside it. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "log.h"
#include "store/store.h"

#define CHECK_NS (100 * 1000000ULL)
#define CTL_MAX 4096
#define PPM 1000000 /* probabilities are in parts per million */

struct fault_spec {
	uint32_t fail_ppm, reset_ppm, delay_ppm;
	uint64_t delay_ms;
	int outage;
};

struct store_fault {
	struct store base;
	struct store *inner;
	char *ctl;

	pthread_mutex_t lock; /* everything below */
	uint64_t checked_ns;
	char text[CTL_MAX]; /* the control file as last read */
	struct fault_spec spec;
	uint64_t rng;
};

enum fault { NONE, FAIL, RESET };

static struct store_fault *to_fault(struct store *st)
{
	return (struct store_fault *)st;
}

/* "P%" (P with an optional fraction) into parts per million. */
static int parse_pct(const char *s, uint32_t *ppm)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || strcmp(end, "%") != 0 || v < 0 || v > 100)
		return -EINVAL;
	*ppm = (uint32_t)(v * (PPM / 100) + 0.5);
	return 0;
}

static int parse_word(const char *w, struct fault_spec *sp)
{
	char *end;

	if (strcmp(w, "outage") == 0) {
		sp->outage = 1;
		return 0;
	}
	if (strncmp(w, "fail=", 5) == 0)
		return parse_pct(w + 5, &sp->fail_ppm);
	if (strncmp(w, "reset=", 6) == 0)
		return parse_pct(w + 6, &sp->reset_ppm);
	if (strncmp(w, "delay=", 6) == 0) {
		sp->delay_ms = strtoull(w + 6, &end, 10);
		if (end == w + 6 || strncmp(end, "ms", 2) != 0)
			return -EINVAL;
		if (end[2] == '\0') {
			sp->delay_ppm = PPM;
			return 0;
		}
		return end[2] == '@' ? parse_pct(end + 3, &sp->delay_ppm) : -EINVAL;
	}
	return -EINVAL;
}

/* Parse the control text; unknown words are logged and skipped. */
static void parse_spec(struct store_fault *f, char *text, struct fault_spec *sp)
{
	memset(sp, 0, sizeof(*sp));
	for (char *line = text, *next; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		line[strcspn(line, "#")] = '\0';
		for (char *save = NULL, *w = strtok_r(line, " \t\r,;", &save); w;
		     w = strtok_r(NULL, " \t\r,;", &save))
			if (parse_word(w, sp) < 0)
				log_warn("store_faults %s: ignoring '%s' (expected fail=P%%, "
					 "reset=P%%, delay=MSms@P%% or outage)",
					 f->ctl, w);
	}
}

/* The spec in force now, re-reading the control file when it is due.
 * Called with f->lock held. */
static void refresh(struct store_fault *f)
{
	char text[CTL_MAX] = "";
	uint64_t now = util_now_ns();
	FILE *fp;
	size_t n = 0;

	if (f->checked_ns && now - f->checked_ns < CHECK_NS)
		return;
	f->checked_ns = now;
	fp = fopen(f->ctl, "re");
	if (fp) {
		n = fread(text, 1, sizeof(text) - 1, fp);
		fclose(fp);
	}
	text[n] = '\0';
	if (strcmp(text, f->text) == 0)
		return;
	memcpy(f->text, text, n + 1);
	parse_spec(f, text, &f->spec);
	log_info("store_faults %s: now fail %.2f%%, reset %.2f%%, delay %" PRIu64
		 " ms for %.2f%%%s",
		 f->ctl, f->spec.fail_ppm / 1e4, f->spec.reset_ppm / 1e4, f->spec.delay_ms,
		 f->spec.delay_ppm / 1e4, f->spec.outage ? ", outage" : "");
}

static uint32_t roll(struct store_fault *f)
{
	f->rng ^= f->rng << 13;
	f->rng ^= f->rng >> 7;
	f->rng ^= f->rng << 17;
	return (uint32_t)(f->rng % PPM);
}

/* Decide the fate of one request: wait out an injected delay, then say
 * whether it fails before or after being executed. */
static enum fault decide(struct store_fault *f, const char *op, const char *key)
{
	uint64_t delay = 0;
	enum fault v = NONE;

	pthread_mutex_lock(&f->lock);
	refresh(f);
	if (f->spec.delay_ppm && roll(f) < f->spec.delay_ppm)
		delay = f->spec.delay_ms;
	if (f->spec.outage || (f->spec.fail_ppm && roll(f) < f->spec.fail_ppm))
		v = FAIL;
	else if (f->spec.reset_ppm && roll(f) < f->spec.reset_ppm)
		v = RESET;
	pthread_mutex_unlock(&f->lock);
	if (delay) {
		struct timespec ts = { .tv_sec = (time_t)(delay / 1000),
				       .tv_nsec = (long)(delay % 1000) * 1000000L };

		log_debug("store_faults: %s %s: delayed %" PRIu64 " ms", op, key, delay);
		nanosleep(&ts, NULL);
	}
	if (v == FAIL)
		log_debug("store_faults: %s %s: injected failure", op, key);
	else if (v == RESET)
		log_debug("store_faults: %s %s: injected reset (executed, answer lost)", op, key);
	return v;
}

/* A request's result after its injected fault. */
static long long outcome(enum fault v, long long rc)
{
	return v == RESET ? -EIO : rc;
}

static ssize_t fault_get(struct store *st, const char *key, uint64_t off, size_t len, void *buf)
{
	struct store_fault *f = to_fault(st);
	enum fault v = decide(f, "get", key);

	if (v == FAIL)
		return -EIO;
	return (ssize_t)outcome(v, f->inner->ops->get(f->inner, key, off, len, buf));
}

static int fault_get_all(struct store *st, const char *key, void **data, size_t *len)
{
	struct store_fault *f = to_fault(st);
	enum fault v = decide(f, "get", key);
	int rc;

	if (v == FAIL)
		return -EIO;
	rc = f->inner->ops->get_all(f->inner, key, data, len);
	if (rc == 0 && v == RESET) {
		free(*data);
		*data = NULL;
	}
	return (int)outcome(v, rc);
}

static int fault_put(struct store *st, const char *key, const void *data, size_t len, int flags)
{
	struct store_fault *f = to_fault(st);
	enum fault v = decide(f, "put", key);

	if (v == FAIL)
		return -EIO;
	return (int)outcome(v, f->inner->ops->put(f->inner, key, data, len, flags));
}

static int fault_del(struct store *st, const char *key, int flags)
{
	struct store_fault *f = to_fault(st);
	enum fault v = decide(f, "delete", key);

	if (v == FAIL)
		return -EIO;
	return (int)outcome(v, f->inner->ops->del(f->inner, key, flags));
}

static int fault_list(struct store *st, const char *prefix, store_list_cb cb, void *arg)
{
	struct store_fault *f = to_fault(st);
	enum fault v = decide(f, "list", prefix);

	/* A listing's answer cannot be lost after its callbacks ran. */
	if (v != NONE)
		return -EIO;
	return f->inner->ops->list(f->inner, prefix, cb, arg);
}

static int fault_stat(struct store *st, const char *key, uint64_t *size)
{
	struct store_fault *f = to_fault(st);
	enum fault v = decide(f, "stat", key);

	if (v == FAIL)
		return -EIO;
	return (int)outcome(v, f->inner->ops->stat(f->inner, key, size));
}

static int fault_put_cond(struct store *st, const char *key, const void *data, size_t len,
			  const char *if_match, char etag[])
{
	struct store_fault *f = to_fault(st);
	enum fault v;

	if (!f->inner->ops->put_cond)
		return -ENOTSUP;
	v = decide(f, "conditional put", key);
	if (v == FAIL)
		return -EIO;
	return (int)outcome(v, f->inner->ops->put_cond(f->inner, key, data, len, if_match, etag));
}

static int fault_get_etag(struct store *st, const char *key, void **data, size_t *len, char etag[])
{
	struct store_fault *f = to_fault(st);
	enum fault v;
	int rc;

	if (!f->inner->ops->get_etag)
		return -ENOTSUP;
	v = decide(f, "get", key);
	if (v == FAIL)
		return -EIO;
	rc = f->inner->ops->get_etag(f->inner, key, data, len, etag);
	if (rc == 0 && v == RESET) {
		free(*data);
		*data = NULL;
	}
	return (int)outcome(v, rc);
}

static void fault_close(struct store *st)
{
	struct store_fault *f = to_fault(st);

	store_close(f->inner);
	pthread_mutex_destroy(&f->lock);
	free(f->ctl);
	free(st->url);
	free(f);
}

static int fault_sync(struct store *st)
{
	struct store_fault *f = to_fault(st);
	enum fault v = decide(f, "sync", "");

	if (v == FAIL)
		return -EIO;
	return (int)outcome(v, f->inner->ops->sync ? f->inner->ops->sync(f->inner) : 0);
}

static const struct store_ops fault_ops = {
	.name = "fault",
	.get = fault_get,
	.get_all = fault_get_all,
	.put = fault_put,
	.del = fault_del,
	.list = fault_list,
	.stat = fault_stat,
	.put_cond = fault_put_cond,
	.get_etag = fault_get_etag,
	.sync = fault_sync,
	.close = fault_close,
};

struct store *store_fault_open(struct store *inner, const char *ctl)
{
	struct store_fault *f = calloc(1, sizeof(*f));

	if (!f || !(f->ctl = strdup(ctl)) || !(f->base.url = strdup(inner->url))) {
		if (f)
			free(f->ctl);
		free(f);
		store_close(inner);
		errno = ENOMEM;
		return NULL;
	}
	f->base.ops = &fault_ops;
	f->base.caps = inner->caps;
	f->inner = inner;
	f->rng = util_now_ns() | 1;
	pthread_mutex_init(&f->lock, NULL);
	log_warn("store %s: injecting faults as %s says (store_faults: for tests only)", inner->url,
		 ctl);
	return &f->base;
}
