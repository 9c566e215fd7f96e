/* fsprobe: system calls the shell cannot make, for the shell tests.
 *
 *   fsprobe rename FROM TO noreplace|exchange
 *   fsprobe seek FILE OFFSET data|hole        prints the offset or ENXIO
 *   fsprobe seekdirty FILE                     SEEK_DATA/SEEK_HOLE before fsync
 *   fsprobe falloc FILE punch|zero|keep|plain OFFSET LEN
 *   fsprobe mkfiles DIR N                      creates N empty files f0..f(N-1)
 *   fsprobe unlinked FILE                      writes, unlinks, reads back via the fd
 *   fsprobe pwrite FILE OFFSET STRING          writes STRING at OFFSET and fsyncs
 *   fsprobe writesync FILE SIZE SEED           writes SIZE bytes of a seeded
 *                                              pattern, fsync, prints a checksum
 *   fsprobe sum FILE                            prints the checksum of FILE
 *   fsprobe direct FILE                         an O_DIRECT descriptor beside a
 *                                              buffered one: prints what each
 *                                              read back, and the errno name of
 *                                              a shared mapping of the O_DIRECT
 *                                              one (or "mapped")
 *
 * Exit status 0 on success; errors are printed with the errno name. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int die(const char *what)
{
	fprintf(stderr, "fsprobe: %s: %s\n", what, strerror(errno));
	return 1;
}

/* FNV-1a over the bytes: enough to tell contents apart in tests. */
static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static int do_rename(char **a)
{
	unsigned int flags = strcmp(a[2], "exchange") == 0 ? RENAME_EXCHANGE : RENAME_NOREPLACE;
	if (renameat2(AT_FDCWD, a[0], AT_FDCWD, a[1], flags) < 0)
		return die("renameat2");
	return 0;
}

static int do_seek(char **a)
{
	int fd = open(a[0], O_RDONLY);
	if (fd < 0)
		return die("open");
	off_t r = lseek(fd, strtoll(a[1], NULL, 0), strcmp(a[2], "data") == 0 ? SEEK_DATA : SEEK_HOLE);
	if (r < 0) {
		if (errno == ENXIO) {
			printf("ENXIO\n");
			return 0;
		}
		return die("lseek");
	}
	printf("%lld\n", (long long)r);
	return 0;
}

/* Write 1 MiB at 1 MiB (a hole before it) without fsync, then ask where
 * the data and the next hole are while the pages may still be dirty in
 * the kernel: prints "DATA HOLE" (1048576 2097152 when right). */
static int do_seekdirty(char **a)
{
	static char buf[1 << 20];
	int fd = open(a[0], O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return die("open");
	memset(buf, 'x', sizeof(buf));
	if (pwrite(fd, buf, sizeof(buf), 1 << 20) != (ssize_t)sizeof(buf))
		return die("pwrite");
	off_t d = lseek(fd, 0, SEEK_DATA);
	off_t h = d < 0 ? -1 : lseek(fd, d, SEEK_HOLE);
	if (d < 0 || h < 0)
		return die("lseek");
	printf("%lld %lld\n", (long long)d, (long long)h);
	return close(fd) < 0 ? die("close") : 0;
}

static int do_falloc(char **a)
{
	int mode = 0;
	if (strcmp(a[1], "punch") == 0)
		mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	else if (strcmp(a[1], "zero") == 0)
		mode = FALLOC_FL_ZERO_RANGE;
	else if (strcmp(a[1], "keep") == 0)
		mode = FALLOC_FL_KEEP_SIZE;
	int fd = open(a[0], O_RDWR);
	if (fd < 0)
		return die("open");
	if (fallocate(fd, mode, strtoll(a[2], NULL, 0), strtoll(a[3], NULL, 0)) < 0)
		return die("fallocate");
	return close(fd) < 0 ? die("close") : 0;
}

static int do_mkfiles(char **a)
{
	long n = strtol(a[1], NULL, 0);
	char path[4096];
	for (long i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/f%ld", a[0], i);
		int fd = open(path, O_CREAT | O_WRONLY | O_EXCL, 0644);
		if (fd < 0)
			return die(path);
		close(fd);
	}
	return 0;
}

static int do_unlinked(char **a)
{
	const char msg[] = "still here after unlink";
	int fd = open(a[0], O_CREAT | O_RDWR | O_TRUNC, 0644);
	if (fd < 0)
		return die("open");
	if (write(fd, msg, sizeof(msg)) != (ssize_t)sizeof(msg))
		return die("write");
	if (unlink(a[0]) < 0)
		return die("unlink");
	struct stat sb;
	if (stat(a[0], &sb) == 0 || errno != ENOENT) {
		fprintf(stderr, "fsprobe: name still there after unlink\n");
		return 1;
	}
	if (fstat(fd, &sb) < 0)
		return die("fstat");
	if (sb.st_nlink != 0) {
		fprintf(stderr, "fsprobe: nlink %lu after unlink\n", (unsigned long)sb.st_nlink);
		return 1;
	}
	/* Write more after the unlink, then read everything back. */
	if (pwrite(fd, "X", 1, 100000) != 1)
		return die("pwrite");
	char buf[sizeof(msg)];
	if (pread(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf) || memcmp(buf, msg, sizeof(msg)))
		return die("pread");
	if (pread(fd, buf, 1, 100000) != 1 || buf[0] != 'X')
		return die("pread 100000");
	if (fsync(fd) < 0)
		return die("fsync");
	return close(fd) < 0 ? die("close") : 0;
}

static int do_pwrite(char **a)
{
	int fd = open(a[0], O_CREAT | O_WRONLY, 0644);
	if (fd < 0)
		return die("open");
	size_t n = strlen(a[2]);
	if (pwrite(fd, a[2], n, strtoll(a[1], NULL, 0)) != (ssize_t)n)
		return die("pwrite");
	if (fsync(fd) < 0)
		return die("fsync");
	return close(fd) < 0 ? die("close") : 0;
}

static int do_writesync(char **a)
{
	long long size = strtoll(a[1], NULL, 0);
	uint64_t x = strtoull(a[2], NULL, 0) * 0x9e3779b97f4a7c15ULL + 1;
	int fd = open(a[0], O_CREAT | O_WRONLY | O_TRUNC, 0644);
	if (fd < 0)
		return die("open");
	static unsigned char buf[1 << 20];
	uint64_t h = 0xcbf29ce484222325ULL;
	for (long long done = 0; done < size;) {
		size_t n = (size_t)(size - done < (long long)sizeof(buf) ? size - done : (long long)sizeof(buf));
		for (size_t i = 0; i < n; i++) {
			/* half compressible, half not */
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = (i / 4096) % 2 ? (unsigned char)x : (unsigned char)(i / 64);
		}
		if (write(fd, buf, n) != (ssize_t)n)
			return die("write");
		h = fnv(h, buf, n);
		done += (long long)n;
	}
	if (fsync(fd) < 0)
		return die("fsync");
	if (close(fd) < 0)
		return die("close");
	printf("%016" PRIx64 "\n", h);
	return 0;
}

static int do_sum(char **a)
{
	int fd = open(a[0], O_RDONLY);
	if (fd < 0)
		return die("open");
	static unsigned char buf[1 << 20];
	uint64_t h = 0xcbf29ce484222325ULL;
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		h = fnv(h, buf, (size_t)n);
	if (n < 0)
		return die("read");
	close(fd);
	printf("%016" PRIx64 "\n", h);
	return 0;
}

/* Writes through a buffered descriptor (left dirty), reads them through an
 * O_DIRECT one; writes through that, reads back through the first. */
static int do_direct(char **a)
{
	int fd = open(a[0], O_CREAT | O_RDWR, 0644);
	if (fd < 0)
		return die("open");
	char got[2][5] = {"", ""};
	static char dirty[8192];
	memset(dirty, 'A', sizeof(dirty));
	if (pwrite(fd, dirty, sizeof(dirty), 0) != (ssize_t)sizeof(dirty))
		return die("pwrite");
	int dfd = open(a[0], O_RDWR | O_DIRECT);
	if (dfd < 0)
		return die("open O_DIRECT");
	void *buf = NULL;
	if (posix_memalign(&buf, 4096, 4096) != 0)
		return die("posix_memalign");
	if (pread(dfd, buf, 4096, 4096) != 4096)
		return die("pread O_DIRECT");
	memcpy(got[0], buf, 4);
	memset(buf, 'B', 4096);
	if (pwrite(dfd, buf, 4096, 0) != 4096)
		return die("pwrite O_DIRECT");
	if (pread(fd, got[1], 4, 0) != 4)
		return die("pread");
	void *map = mmap(NULL, 4096, PROT_READ, MAP_SHARED, dfd, 0);
	const char *mapped = map == MAP_FAILED ? strerrorname_np(errno) : "mapped";
	if (map != MAP_FAILED)
		munmap(map, 4096);
	printf("%s %s %s\n", got[0], got[1], mapped ? mapped : "?");
	free(buf);
	close(dfd);
	return close(fd) < 0 ? die("close") : 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int nargs;
		int (*fn)(char **);
	} cmds[] = {
		{"rename", 3, do_rename},   {"seek", 3, do_seek}, {"seekdirty", 1, do_seekdirty},
		{"falloc", 4, do_falloc},   {"mkfiles", 2, do_mkfiles},
		{"unlinked", 1, do_unlinked}, {"pwrite", 3, do_pwrite},
		{"writesync", 3, do_writesync}, {"sum", 1, do_sum},
		{"direct", 1, do_direct},
	};
	for (size_t i = 0; argc > 1 && i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[1], cmds[i].name) == 0) {
			if (argc - 2 != cmds[i].nargs) {
				fprintf(stderr, "fsprobe %s: wants %d arguments\n", cmds[i].name,
					cmds[i].nargs);
				return 2;
			}
			return cmds[i].fn(argv + 2);
		}
	fprintf(stderr, "usage: see the comment at the top of tests/helpers/fsprobe.c\n");
	return 2;
}
