/* device.c: the "device" command (see device.h): device files in the .nbd/
 * directory of a mounted zerofs-fuse filesystem, made, listed, resized and
 * removed with ordinary system calls on the mount. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "device.h"
#include "fs/fs.h"

#define STATS_FILE ".zerofs-stats"

int dev_parse_size(const char *s, uint64_t *out)
{
	static const char suffixes[] = "KMGT";
	char *end;
	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	unsigned int shift = 0;
	if (*end) {
		const char *p = end[1] ? NULL : strchr(suffixes, *end & ~0x20);
		if (!p || !*p)
			return -EINVAL;
		shift = 10 * (unsigned int)(p - suffixes + 1);
	}
	if (v == 0)
		return -EINVAL;
	/* off_t is signed: the largest file is INT64_MAX bytes. */
	if (v > (unsigned long long)INT64_MAX >> shift)
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

/* The .nbd/ directory of mountpoint, opened; a negative errno after a
 * message if mountpoint is not a zerofs-fuse mount. */
static int open_nbd_dir(const char *mountpoint)
{
	char path[PATH_MAX];
	struct stat st;
	if (snprintf(path, sizeof(path), "%s/" STATS_FILE, mountpoint) >= (int)sizeof(path)) {
		fprintf(stderr, "zerofs-fuse: %s: %s\n", mountpoint, strerror(ENAMETOOLONG));
		return -ENAMETOOLONG;
	}
	if (stat(path, &st) < 0) {
		int rc = -errno;
		fprintf(stderr, "zerofs-fuse: %s is not a mounted zerofs-fuse filesystem (%s)\n",
			mountpoint, strerror(-rc));
		return rc;
	}
	snprintf(path, sizeof(path), "%s/" FS_DEVICE_DIR, mountpoint);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		int rc = -errno;
		fprintf(stderr, "zerofs-fuse: %s: %s\n", path, strerror(-rc));
		return rc;
	}
	return fd;
}

/* A device name is one file name: not empty, no '/', not "." or "..". */
static int check_name(const char *name)
{
	const char *why = NULL;
	if (!*name)
		why = "it is empty";
	else if (strchr(name, '/'))
		why = "it contains '/'";
	else if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		why = "it is a directory entry";
	if (!why)
		return 0;
	fprintf(stderr, "zerofs-fuse: invalid device name '%s': %s\n", name, why);
	return -EINVAL;
}

int dev_create(const char *mountpoint, const char *name, uint64_t size)
{
	int rc = check_name(name);
	if (rc < 0)
		return rc;
	CLEANUP_CLOSE int dir = open_nbd_dir(mountpoint);
	if (dir < 0)
		return dir;
	int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		rc = -errno;
		if (rc == -EEXIST)
			fprintf(stderr,
				"zerofs-fuse: device %s already exists in %s/" FS_DEVICE_DIR "\n",
				name, mountpoint);
		else
			fprintf(stderr,
				"zerofs-fuse: cannot create device %s in %s/" FS_DEVICE_DIR
				": %s\n",
				name, mountpoint, strerror(-rc));
		return rc;
	}
	const char *what = "set the size of";
	rc = ftruncate(fd, (off_t)size);
	if (rc == 0) {
		what = "fsync";
		rc = fsync(fd);
	}
	if (rc < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0) {
		what = "close";
		rc = -errno;
	}
	if (rc < 0) {
		fprintf(stderr, "zerofs-fuse: cannot %s device %s: %s\n", what, name,
			strerror(-rc));
		unlinkat(dir, name, 0);
	}
	return rc;
}

/* Bytes of fd's data ranges below size, as SEEK_DATA/SEEK_HOLE see them. */
static int allocated_bytes(int fd, uint64_t size, uint64_t *out)
{
	uint64_t off = 0, n = 0;
	while (off < size) {
		off_t data = lseek(fd, (off_t)off, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0)
			return -errno;
		off_t hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		if (hole <= data)
			break;
		n += (uint64_t)(hole - data);
		off = (uint64_t)hole;
	}
	*out = n;
	return 0;
}

static int list_one(int dir, const char *name, FILE *out)
{
	struct stat st;
	if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return 0; /* removed while we listed */
		int rc = -errno;
		fprintf(stderr, "zerofs-fuse: device %s: %s\n", name, strerror(-rc));
		return rc;
	}
	if (!S_ISREG(st.st_mode))
		return 0;
	CLEANUP_CLOSE int fd = openat(dir, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	uint64_t alloc = 0;
	int rc = fd < 0 ? -errno : allocated_bytes(fd, (uint64_t)st.st_size, &alloc);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "zerofs-fuse: device %s: %s\n", name, strerror(-rc));
		return rc;
	}
	fprintf(out, "%-32s %20" PRIu64 " %20" PRIu64 "\n", name, (uint64_t)st.st_size, alloc);
	return 0;
}

int dev_list(const char *mountpoint, FILE *out)
{
	CLEANUP_CLOSE int dir = open_nbd_dir(mountpoint);
	if (dir < 0)
		return dir;
	struct dirent **names = NULL;
	int n = scandirat(dir, ".", &names, NULL, alphasort);
	if (n < 0) {
		int rc = -errno;
		fprintf(stderr, "zerofs-fuse: cannot read %s/" FS_DEVICE_DIR ": %s\n", mountpoint,
			strerror(-rc));
		return rc;
	}
	int rc = 0;
	fprintf(out, "%-32s %20s %20s\n", "NAME", "SIZE", "ALLOCATED");
	for (int i = 0; i < n; i++) {
		if (rc == 0)
			rc = list_one(dir, names[i]->d_name, out);
		free(names[i]);
	}
	free(names);
	if (rc == 0 && fflush(out) != 0) {
		rc = -errno;
		fprintf(stderr, "zerofs-fuse: writing the list: %s\n", strerror(-rc));
	}
	return rc;
}

/* Open device name of the .nbd/ directory dir for writing; a negative errno
 * after a message if it is missing or not a regular file. */
static int open_device(int dir, const char *mountpoint, const char *name)
{
	int fd = openat(dir, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	int rc = fd < 0 ? -errno : 0;
	struct stat st;
	if (rc == 0 && fstat(fd, &st) < 0)
		rc = -errno;
	else if (rc == 0 && !S_ISREG(st.st_mode))
		rc = -EISDIR;
	if (rc == 0)
		return fd;
	if (fd >= 0)
		close(fd);
	if (rc == -ENOENT)
		fprintf(stderr, "zerofs-fuse: no device %s in %s/" FS_DEVICE_DIR "\n", name,
			mountpoint);
	else if (rc == -EISDIR || rc == -ELOOP)
		fprintf(stderr, "zerofs-fuse: %s/" FS_DEVICE_DIR "/%s is not a device file\n",
			mountpoint, name);
	else
		fprintf(stderr, "zerofs-fuse: device %s: %s\n", name, strerror(-rc));
	return rc;
}

int dev_resize(const char *mountpoint, const char *name, uint64_t size, int shrink)
{
	int rc = check_name(name);
	if (rc < 0)
		return rc;
	CLEANUP_CLOSE int dir = open_nbd_dir(mountpoint);
	if (dir < 0)
		return dir;
	CLEANUP_CLOSE int fd = open_device(dir, mountpoint, name);
	if (fd < 0)
		return fd;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		fprintf(stderr, "zerofs-fuse: device %s: %s\n", name, strerror(-rc));
		return rc;
	}
	if (size < (uint64_t)st.st_size && !shrink) {
		fprintf(stderr,
			"zerofs-fuse: device %s is %" PRIu64 " bytes; shrinking it to %" PRIu64
			" loses data: use --shrink\n",
			name, (uint64_t)st.st_size, size);
		return -EINVAL;
	}
	if (ftruncate(fd, (off_t)size) < 0 || fsync(fd) < 0) {
		rc = -errno;
		fprintf(stderr, "zerofs-fuse: cannot resize device %s: %s\n", name, strerror(-rc));
		return rc;
	}
	return 0;
}

int dev_remove(const char *mountpoint, const char *name)
{
	int rc = check_name(name);
	if (rc < 0)
		return rc;
	CLEANUP_CLOSE int dir = open_nbd_dir(mountpoint);
	if (dir < 0)
		return dir;
	struct stat st;
	if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		rc = -errno;
		if (rc == -ENOENT)
			fprintf(stderr, "zerofs-fuse: no device %s in %s/" FS_DEVICE_DIR "\n", name,
				mountpoint);
		else
			fprintf(stderr, "zerofs-fuse: device %s: %s\n", name, strerror(-rc));
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		fprintf(stderr, "zerofs-fuse: %s/" FS_DEVICE_DIR "/%s is not a device file\n",
			mountpoint, name);
		return -EISDIR;
	}
	if (unlinkat(dir, name, 0) < 0) {
		rc = -errno;
		fprintf(stderr, "zerofs-fuse: cannot remove device %s: %s\n", name, strerror(-rc));
		return rc;
	}
	return 0;
}

static void dev_usage(FILE *f)
{
	fprintf(f, "Usage:\n"
		   "  zerofs-fuse device create -m MOUNTPOINT NAME SIZE\n"
		   "  zerofs-fuse device list -m MOUNTPOINT\n"
		   "  zerofs-fuse device resize -m MOUNTPOINT [--shrink] NAME SIZE\n"
		   "  zerofs-fuse device remove -m MOUNTPOINT NAME\n"
		   "\n"
		   "Device files are the regular files of MOUNTPOINT/.nbd/: the NBD server\n"
		   "exports them by name and losetup(8) attaches to them.  SIZE is in bytes\n"
		   "with an optional K, M, G or T suffix (powers of 1024).\n"
		   "\n"
		   "  -m, --mountpoint MOUNTPOINT  the mounted zerofs-fuse filesystem\n"
		   "  --shrink     let resize make the device smaller (data past SIZE is lost)\n"
		   "  -h, --help   this text\n");
}

enum dev_action { DEV_CREATE, DEV_LIST, DEV_RESIZE, DEV_REMOVE };

static const struct dev_cmd {
	const char *name;
	enum dev_action action;
	int nargs;
} dev_cmds[] = {
	{ "create", DEV_CREATE, 2 },
	{ "list", DEV_LIST, 0 },
	{ "resize", DEV_RESIZE, 2 },
	{ "remove", DEV_REMOVE, 1 },
};

static int size_arg(const char *s, uint64_t *out)
{
	int rc = dev_parse_size(s, out);
	if (rc < 0)
		fprintf(stderr, "zerofs-fuse: invalid size '%s': %s\n", s,
			rc == -ERANGE ? "too large" :
					"want a positive number with an optional K, M, G or T");
	return rc;
}

int dev_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mountpoint", required_argument, NULL, 'm' },
		{ "shrink", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const struct dev_cmd *cmd = NULL;
	for (size_t i = 0; argc > 1 && i < ARRAY_SIZE(dev_cmds); i++)
		if (strcmp(argv[1], dev_cmds[i].name) == 0)
			cmd = &dev_cmds[i];
	if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		dev_usage(stdout);
		return 0;
	}
	if (!cmd) {
		if (argc > 1)
			fprintf(stderr,
				"zerofs-fuse: unknown device command '%s' (see "
				"zerofs-fuse device --help)\n",
				argv[1]);
		else
			fprintf(stderr, "zerofs-fuse: device: no command given (see zerofs-fuse "
					"device --help)\n");
		return 1;
	}
	const char *mountpoint = NULL;
	int shrink = 0, ch;
	argc--;
	argv++;
	optind = 0; /* reinitialise getopt: 0, not 1, also resets its permutation */
	while ((ch = getopt_long(argc, argv, "m:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'm':
			mountpoint = optarg;
			break;
		case 's':
			shrink = 1;
			break;
		case 'h':
			dev_usage(stdout);
			return 0;
		default:
			return 1; /* getopt printed why */
		}
	}
	if (!mountpoint) {
		fprintf(stderr, "zerofs-fuse: device %s: no mountpoint given (-m MOUNTPOINT)\n",
			cmd->name);
		return 1;
	}
	if (shrink && cmd->action != DEV_RESIZE) {
		fprintf(stderr, "zerofs-fuse: device %s: --shrink is for resize only\n", cmd->name);
		return 1;
	}
	if (argc - optind != cmd->nargs) {
		fprintf(stderr, "zerofs-fuse: device %s: %s\n", cmd->name,
			argc - optind < cmd->nargs ? "missing arguments" : "too many arguments");
		return 1;
	}
	char **args = argv + optind;
	uint64_t size = 0;
	int rc;
	switch (cmd->action) {
	case DEV_CREATE:
		rc = size_arg(args[1], &size);
		if (rc == 0)
			rc = dev_create(mountpoint, args[0], size);
		break;
	case DEV_LIST:
		rc = dev_list(mountpoint, stdout);
		break;
	case DEV_RESIZE:
		rc = size_arg(args[1], &size);
		if (rc == 0)
			rc = dev_resize(mountpoint, args[0], size, shrink);
		break;
	case DEV_REMOVE:
		rc = dev_remove(mountpoint, args[0]);
		break;
	default:
		rc = -EINVAL;
	}
	return rc < 0 ? 1 : 0;
}
