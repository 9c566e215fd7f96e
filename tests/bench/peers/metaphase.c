/* metaphase: one phase of the metadata workload of bench-peers.sh, so that
 * the harness can make each phase durable and count its object-store
 * requests on its own (tests/bench/metabench.c runs them all in one go).
 *
 *   metaphase DIR N create|stat|readdir|unlink
 *
 * create: N empty files DIR/m0 .. DIR/m(N-1); stat: 10 passes of stat over
 * them; readdir: 10 full listings of DIR (entries counted); unlink: remove
 * them.  Prints the rate of the phase in operations (entries) per second.
 * Exit status 0, 1 on any failure, 2 on bad usage. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PASSES 10

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int one(const char *op, const char *dir, long i)
{
	char path[4096];
	struct stat sb;
	int fd;

	snprintf(path, sizeof(path), "%s/m%ld", dir, i);
	if (strcmp(op, "create") == 0) {
		fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd < 0 || close(fd) < 0)
			goto fail;
	} else if (strcmp(op, "stat") == 0) {
		if (stat(path, &sb) < 0)
			goto fail;
	} else if (unlink(path) < 0) {
		goto fail;
	}
	return 0;
fail:
	perror(path);
	return -1;
}

static long list(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	long n = 0;

	if (!d) {
		perror(dir);
		return -1;
	}
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

int main(int argc, char **argv)
{
	const char *dir, *op;
	double t0, ops;
	long n;

	if (argc != 4) {
		fprintf(stderr, "usage: metaphase DIR N create|stat|readdir|unlink\n");
		return 2;
	}
	dir = argv[1];
	n = strtol(argv[2], NULL, 0);
	op = argv[3];
	if (n < 1)
		return 2;
	t0 = now();
	if (strcmp(op, "readdir") == 0) {
		for (int pass = 0; pass < PASSES; pass++) {
			long got = list(dir);

			if (got != n) {
				fprintf(stderr, "metaphase: %s lists %ld entries, not %ld\n", dir,
					got, n);
				return 1;
			}
		}
		ops = (double)PASSES * (double)n;
	} else if (strcmp(op, "create") == 0 || strcmp(op, "stat") == 0 ||
		   strcmp(op, "unlink") == 0) {
		int passes = strcmp(op, "stat") == 0 ? PASSES : 1;

		for (int pass = 0; pass < passes; pass++)
			for (long i = 0; i < n; i++)
				if (one(op, dir, i) < 0)
					return 1;
		ops = (double)passes * (double)n;
	} else {
		fprintf(stderr, "metaphase: unknown phase %s\n", op);
		return 2;
	}
	printf("%.0f\n", ops / (now() - t0));
	return 0;
}
