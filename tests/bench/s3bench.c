/* s3bench.c: the raw ceiling of an object store, measured through
 * zerofs-fuse's own store layer (store_open_cfg): PUT then ranged GET of
 * COUNT objects of SIZE bytes by THREADS threads, each figure in MiB/s.
 * The objects are deleted afterwards.
 *
 *   s3bench -c CONFIG -s STORE_URL [-n COUNT] [-b SIZE] [-t THREADS] [-P PIDS]
 *           [-r RANGE] [-m]
 *
 * With -r, a third phase reads the same objects in ranged GETs of RANGE
 * bytes (the read-ahead of zerofs-fuse reads runs of frames within its
 * segments), reported as "rget".
 *
 * With -m, the objects are made of real frames (zerofs-fuse's codec, 64 KiB
 * of random data each, sealed with the default cipher) and a last phase
 * ("mget") models the least that a reader through a filesystem's page cache
 * must do with each object it GETs whole: open every frame with the codec
 * (seal_frame_decode_direct, as the read path does) into memory of its own
 * that no earlier object used, as a cold read fills new page-cache pages (on
 * VMs that hand freed pages back to the host, the first touch of a page
 * costs several times a copy).  Its ratio to "get" bounds the cold-read
 * ratio of any such reader on the machine.
 *
 * Each phase also prints its request latencies ("put-latency: p50 ... ms")
 * and, with -P (comma-separated pids of the server's processes), the CPU
 * time the server and this client spent per GiB moved ("put-cpu: ..."):
 * on a machine that the server and a client share, that bounds what any
 * client can reach.
 *
 * Exit status 0, or 1 when any request failed. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <syslog.h>
#include <unistd.h>

#include <sodium.h>

#include "cfg.h"
#include "codec/codec.h"
#include "common/util.h"
#include "log.h"
#include "store/store.h"

struct job {
	struct store *st;
	int64_t count, size;
	int64_t range, items; /* ranged GET size; requests in this phase */
	int threads, failed;
	const char *op;
	char *buf;
	pthread_mutex_t lock;
	int64_t next;
	double *lat; /* seconds, one per request of the current phase */
	unsigned char *fresh; /* mget: count x size bytes, mapped for the phase */
	/* -m: the frames every object holds. */
	struct seal_key key;
	size_t nframes;
	uint32_t *foff, *flen;
};

#define MODEL_BLOCK 65536 /* zerofs-fuse's DATA_BLOCK_SIZE */

/* Fill buf (size bytes) with frames of MODEL_BLOCK random bytes sealed
 * under j->key, random bytes after the last one.  0 or -errno. */
static int make_frames(struct job *j, uint8_t *buf, size_t size)
{
	uint8_t plain[MODEL_BLOCK], ad[SEAL_AD_BYTES];
	size_t bound = seal_frame_bound(MODEL_BLOCK), off = 0, cap = size / bound;

	j->foff = calloc(cap ? cap : 1, sizeof(*j->foff));
	j->flen = calloc(cap ? cap : 1, sizeof(*j->flen));
	if (!j->foff || !j->flen)
		return -ENOMEM;
	while (off + bound <= size) {
		randombytes_buf(plain, sizeof(plain));
		seal_ad_data(ad, 1, (uint32_t)j->nframes, 1, j->nframes);
		ssize_t n = seal_frame_encode(&j->key, ad, sizeof(ad), plain, sizeof(plain),
					      buf + off, bound, 1);
		if (n < 0)
			return (int)n;
		j->foff[j->nframes] = (uint32_t)off;
		j->flen[j->nframes++] = (uint32_t)n;
		off += (size_t)n;
	}
	randombytes_buf(buf + off, size - off);
	return 0;
}

/* The "mget" model's work on an object in obj (clobbered): open each frame
 * into out, memory not touched before, each block with the SEAL_HDR_BYTES of
 * room before it that the direct decode needs.  0 or -errno. */
static int model_reader(struct job *j, uint8_t *obj, uint8_t *out)
{
	uint8_t ad[SEAL_AD_BYTES];

	for (size_t f = 0; f < j->nframes; f++) {
		seal_ad_data(ad, 1, (uint32_t)f, 1, f);
		uint8_t *dst = out + f * (MODEL_BLOCK + 16) + 16;
		ssize_t n = seal_frame_decode_direct(&j->key, ad, sizeof(ad), obj + j->foff[f],
						     j->flen[f], dst, MODEL_BLOCK);
		if (n != MODEL_BLOCK)
			return n < 0 ? (int)n : -EIO;
	}
	return 0;
}

static void *worker(void *arg)
{
	struct job *j = arg;
	char *mine = malloc((size_t)j->size);
	char key[64];

	if (!mine) {
		pthread_mutex_lock(&j->lock);
		j->failed = 1;
		pthread_mutex_unlock(&j->lock);
		return NULL;
	}
	memcpy(mine, j->buf, (size_t)j->size);
	for (;;) {
		int64_t i;
		int rc;

		pthread_mutex_lock(&j->lock);
		i = j->next++;
		pthread_mutex_unlock(&j->lock);
		if (i >= j->items)
			break;
		int64_t per = j->range ? j->size / j->range : 1;
		snprintf(key, sizeof(key), "s3bench/%08" PRId64,
			 strcmp(j->op, "rget") == 0 ? i / per : i);
		uint64_t t0 = util_now_ns();
		if (strcmp(j->op, "put") == 0) {
			rc = store_put(j->st, key, mine, (size_t)j->size, 0);
		} else if (strcmp(j->op, "get") == 0 || strcmp(j->op, "mget") == 0) {
			ssize_t n = store_get(j->st, key, 0, (size_t)j->size, mine);
			rc = n == j->size ? 0 : n < 0 ? (int)n : -EIO;
			if (rc == 0 && j->op[0] == 'm')
				rc = model_reader(j, (uint8_t *)mine, j->fresh + i * j->size);
		} else if (strcmp(j->op, "rget") == 0) {
			ssize_t n = store_get(j->st, key, (uint64_t)((i % per) * j->range),
					      (size_t)j->range, mine);
			rc = n == j->range ? 0 : n < 0 ? (int)n : -EIO;
		} else {
			rc = store_del(j->st, key);
		}
		j->lat[i] = (double)(util_now_ns() - t0) / 1e9;
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

/* CPU seconds (user + system) of process pid, or of this one (0). */
static double cpu_of(long pid)
{
	char path[64], buf[1024];
	unsigned long ut = 0, st = 0;
	snprintf(path, sizeof(path), pid ? "/proc/%ld/stat" : "/proc/self/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')'); /* the name may hold spaces */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
			 &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long server_pids[64];
static int nserver;

static double server_cpu(void)
{
	double t = 0;
	for (int i = 0; i < nserver; i++)
		t += cpu_of(server_pids[i]);
	return t;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double run(struct job *j, const char *op)
{
	pthread_t tid[256];
	uint64_t t0 = util_now_ns();

	j->op = op;
	j->next = 0;
	j->items = strcmp(op, "rget") == 0 ? j->count * (j->size / j->range) : j->count;
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
	int opt, model = 0;

	while ((opt = getopt(argc, argv, "c:s:n:b:t:P:r:m")) != -1) {
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
		case 'r':
			if (cfg_parse_size(optarg, &j.range) < 0 || j.range <= 0)
				return 2;
			break;
		case 'm':
			model = 1;
			break;
		case 'P':
			for (char *tok = strtok(optarg, ","); tok && nserver < 64;
			     tok = strtok(NULL, ","))
				server_pids[nserver++] = atol(tok);
			break;
		default:
			fprintf(stderr, "usage: s3bench -c CONFIG -s STORE_URL [-n COUNT] "
					"[-b SIZE] [-t THREADS] [-P PIDS] [-r RANGE] [-m]\n");
			return 2;
		}
	}
	if (!url || j.threads < 1 || j.threads > 256 || j.count < 1 ||
	    (j.range && (j.range > j.size || j.size % j.range))) {
		fprintf(stderr, "s3bench: RANGE must divide SIZE\n");
		return 2;
	}
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
	if (model) {
		/* Frames of 64 KiB each with 16 bytes of room before it must fit
		 * in an object's share of the fresh memory: they do, as each
		 * frame is larger than that. */
		j.key.cipher = seal_cipher_default();
		randombytes_buf(j.key.k, sizeof(j.key.k));
		if (seal_init() < 0 || make_frames(&j, (uint8_t *)j.buf, (size_t)j.size) < 0 ||
		    j.nframes == 0) {
			fprintf(stderr, "s3bench: -m: cannot make frames (SIZE >= 64 KiB?)\n");
			return 1;
		}
	} else {
		for (int64_t i = 0; i < j.size; i++)
			j.buf[i] = (char)(i * 2654435761u >> 13);
	}
	pthread_mutex_init(&j.lock, NULL);
	mib = (double)j.count * (double)j.size / (1024.0 * 1024.0);
	j.lat = calloc((size_t)(j.range ? j.count * (j.size / j.range) : j.count),
		       sizeof(*j.lat));
	if (!j.lat)
		return 1;
	const char *phases[4] = { "put", "get" };
	int nph = 2;
	double get_mibs = 0;
	if (j.range)
		phases[nph++] = "rget";
	if (model)
		phases[nph++] = "mget";
	for (int ph = 0; ph < nph; ph++) {
		const char *op = phases[ph];
		size_t flen = (size_t)(j.count * j.size);
		if (strcmp(op, "mget") == 0) {
			j.fresh = mmap(NULL, flen, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (j.fresh == MAP_FAILED) {
				perror("s3bench: mmap");
				return 1;
			}
		}
		double s0 = server_cpu(), c0 = cpu_of(0);
		secs = run(&j, op);
		double s1 = server_cpu(), c1 = cpu_of(0), gib = mib / 1024.0;
		int64_t n = j.items;
		printf("%s: %" PRId64 " x %" PRId64 " bytes, %d threads: %.1f MiB/s\n", op, n,
		       j.size * j.count / n, j.threads, mib / secs);
		if (strcmp(op, "get") == 0)
			get_mibs = mib / secs;
		if (strcmp(op, "mget") == 0) {
			printf("mget/get: %.2f\n", mib / secs / get_mibs);
			munmap(j.fresh, flen);
		}
		qsort(j.lat, (size_t)n, sizeof(*j.lat), cmp_double);
		printf("%s-latency: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms\n", op, j.lat[n / 2] * 1e3,
		       j.lat[n * 9 / 10] * 1e3, j.lat[n * 99 / 100] * 1e3);
		if (nserver)
			printf("%s-cpu: server %.2f s/GiB, client %.2f s/GiB\n", op,
			       (s1 - s0) / gib, (c1 - c0) / gib);
	}
	run(&j, "del");
	free(j.lat);
	free(j.foff);
	free(j.flen);
	store_close(j.st);
	free(j.buf);
	cfg_free(&c);
	return j.failed;
}
