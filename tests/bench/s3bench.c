/* s3bench.c: the raw ceiling of an object store, measured through
 * zerofs-fuse's own store layer (store_open_cfg): PUT then ranged GET of
 * COUNT objects of SIZE bytes by THREADS threads, each figure in MiB/s.
 * The objects are deleted afterwards.
 *
 *   s3bench -c CONFIG -s STORE_URL [-n COUNT] [-b SIZE] [-t THREADS]
 *
 * Exit status 0, or 1 when any request failed. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "cfg.h"
#include "common/util.h"
#include "log.h"
#include "store/store.h"

struct job {
	struct store *st;
	int64_t count, size;
	int threads, failed;
	const char *op;
	char *buf;
	pthread_mutex_t lock;
	int64_t next;
};

static void *worker(void *arg)
{
	struct job *j = arg;
	char *mine = malloc((size_t)j->size);
	char key[64];

	if (!mine)
		return NULL;
	memcpy(mine, j->buf, (size_t)j->size);
	for (;;) {
		int64_t i;
		int rc;

		pthread_mutex_lock(&j->lock);
		i = j->next++;
		pthread_mutex_unlock(&j->lock);
		if (i >= j->count)
			break;
		snprintf(key, sizeof(key), "s3bench/%08" PRId64, i);
		if (strcmp(j->op, "put") == 0) {
			rc = store_put(j->st, key, mine, (size_t)j->size, 0);
		} else if (strcmp(j->op, "get") == 0) {
			ssize_t n = store_get(j->st, key, 0, (size_t)j->size, mine);
			rc = n == j->size ? 0 : n < 0 ? (int)n : -EIO;
		} else {
			rc = store_del(j->st, key);
		}
		if (rc < 0) {
			fprintf(stderr, "s3bench: %s %s: %s\n", j->op, key, strerror(-rc));
			pthread_mutex_lock(&j->lock);
			j->failed = 1;
			pthread_mutex_unlock(&j->lock);
		}
	}
	free(mine);
	return NULL;
}

static double run(struct job *j, const char *op)
{
	pthread_t tid[256];
	uint64_t t0 = util_now_ns();

	j->op = op;
	j->next = 0;
	for (int i = 0; i < j->threads; i++)
		pthread_create(&tid[i], NULL, worker, j);
	for (int i = 0; i < j->threads; i++)
		pthread_join(tid[i], NULL);
	return (double)(util_now_ns() - t0) / 1e9;
}

int main(int argc, char **argv)
{
	struct job j = { .count = 64, .size = 8 << 20, .threads = 4 };
	const char *conf = NULL, *url = NULL;
	char err[256];
	struct cfg c;
	double secs, mib;
	int opt;

	while ((opt = getopt(argc, argv, "c:s:n:b:t:")) != -1) {
		switch (opt) {
		case 'c':
			conf = optarg;
			break;
		case 's':
			url = optarg;
			break;
		case 'n':
			j.count = atoll(optarg);
			break;
		case 'b':
			if (cfg_parse_size(optarg, &j.size) < 0 || j.size <= 0)
				return 2;
			break;
		case 't':
			j.threads = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: s3bench -c CONFIG -s STORE_URL [-n COUNT] "
					"[-b SIZE] [-t THREADS]\n");
			return 2;
		}
	}
	if (!url || j.threads < 1 || j.threads > 256 || j.count < 1)
		return 2;
	log_init("s3bench", 0, LOG_WARNING);
	if (cfg_init(&c) < 0 || (conf && cfg_load_file(&c, conf, err, sizeof(err)) < 0) ||
	    cfg_set(&c, "store", url, err, sizeof(err)) < 0) {
		fprintf(stderr, "s3bench: %s\n", err);
		return 2;
	}
	j.st = store_open_cfg(&c, 1);
	if (!j.st)
		return 1;
	j.buf = malloc((size_t)j.size);
	if (!j.buf)
		return 1;
	for (int64_t i = 0; i < j.size; i++)
		j.buf[i] = (char)(i * 2654435761u >> 13);
	pthread_mutex_init(&j.lock, NULL);
	mib = (double)j.count * (double)j.size / (1024.0 * 1024.0);
	secs = run(&j, "put");
	printf("put: %" PRId64 " x %" PRId64 " bytes, %d threads: %.1f MiB/s\n", j.count, j.size,
	       j.threads, mib / secs);
	secs = run(&j, "get");
	printf("get: %" PRId64 " x %" PRId64 " bytes, %d threads: %.1f MiB/s\n", j.count, j.size,
	       j.threads, mib / secs);
	run(&j, "del");
	store_close(j.st);
	free(j.buf);
	cfg_free(&c);
	return j.failed;
}
