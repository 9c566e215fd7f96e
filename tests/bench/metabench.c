/* metabench: the metadata workload of the benchmarks.  Creates N empty
 * files in DIR, stats them all, then unlinks them, and prints the rate of
 * each phase:   create N/s   stat N/s   unlink N/s */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: metabench DIR N\n");
		return 2;
	}
	const char *dir = argv[1];
	long n = strtol(argv[2], NULL, 0);
	char path[4096];
	struct stat sb;
	double t0 = now();
	for (long i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/m%ld", dir, i);
		int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd < 0) {
			perror(path);
			return 1;
		}
		close(fd);
	}
	double t1 = now();
	for (int pass = 0; pass < 10; pass++)
		for (long i = 0; i < n; i++) {
			snprintf(path, sizeof(path), "%s/m%ld", dir, i);
			if (stat(path, &sb) < 0) {
				perror(path);
				return 1;
			}
		}
	double t2 = now();
	for (long i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/m%ld", dir, i);
		if (unlink(path) < 0) {
			perror(path);
			return 1;
		}
	}
	double t3 = now();
	printf("create %.0f stat %.0f unlink %.0f\n", (double)n / (t1 - t0),
	       10.0 * (double)n / (t2 - t1), (double)n / (t3 - t2));
	return 0;
}
