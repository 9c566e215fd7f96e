/* cli.c: command-line front end.
 *
 *   zerofs-fuse [mount] [-f] [-d] [-c CONFIG] [-o OPTIONS] MOUNTPOINT
 *   zerofs-fuse mkfs [-c CONFIG] [-o OPTIONS]
 *
 * Settings come from the option table (cfg.h): defaults, then the config
 * file, then -o.  Options that are not ours go to FUSE as mount options. */
#include "config.h"

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <termios.h>
#include <unistd.h>

#include "cfg.h"
#include "cli.h"
#include "common/util.h"
#include "device.h"
#include "fs/fs.h"
#include "fuse/zfuse.h"
#include "journal/journal.h"
#include "log.h"
#include "nbd/nbds.h"
#include "stats_http.h"

struct cli {
	struct cfg cfg;
	char *fuse_opts; /* options for FUSE, comma-separated */
	const char *mountpoint;
	int foreground;
	int debug;
	int repair; /* fsck --repair, receive --force */
	const char *from; /* send --from */
	int argc; /* the arguments from the command's name on */
	char **argv;
};

static void usage(FILE *f)
{
	fprintf(f, "Usage:\n"
		   "  zerofs-fuse [mount] [-f] [-d] [-c CONFIG] [-o OPTIONS] MOUNTPOINT\n"
		   "  zerofs-fuse mkfs [-c CONFIG] [-o OPTIONS]\n"
		   "  zerofs-fuse change-password [-c CONFIG] [-o OPTIONS]\n"
		   "  zerofs-fuse fsck [--repair] [-c CONFIG] [-o OPTIONS]\n"
		   "  zerofs-fuse scrub [-c CONFIG] [-o OPTIONS]\n"
		   "  zerofs-fuse gc MOUNTPOINT | gc [-c CONFIG] [-o OPTIONS]\n"
		   "  zerofs-fuse snapshot create|list|info|delete -m MOUNTPOINT [NAME]\n"
		   "  zerofs-fuse send [-c CONFIG] [-o OPTIONS] [--from SNAPSHOT] SNAPSHOT > STREAM\n"
		   "  zerofs-fuse receive [--force] [-c CONFIG] [-o OPTIONS] < STREAM\n"
		   "  zerofs-fuse flush MOUNTPOINT\n"
		   "  zerofs-fuse stats MOUNTPOINT\n"
		   "  zerofs-fuse device create|list|resize|remove -m MOUNTPOINT [ARGS]\n"
		   "\n"
		   "mount: mount an object store as a POSIX filesystem (the default).\n"
		   "mkfs: make a new filesystem in an empty store.\n"
		   "change-password: re-wrap the data key under a new password (from\n"
		   "  $ZEROFS_NEW_PASSWORD or the terminal); data is not rewritten.\n"
		   "fsck: check the index against the store's objects (store not mounted);\n"
		   "  --repair deletes orphan objects and fixes counts.\n"
		   "scrub: read and authenticate every object of the store (not mounted).\n"
		   "gc: collect garbage now: on a mounted filesystem, or on the store.\n"
		   "  fsck and scrub exit 0 when clean, 1 when problems are left, 2 when\n"
		   "  they could not check.\n"
		   "snapshot: named read-only point-in-time copies of the whole filesystem;\n"
		   "  mount one with -o snapshot=NAME.\n"
		   "send, receive: replicate snapshots incrementally to another store\n"
		   "  (stream key from $ZEROFS_STREAM_PASSWORD).\n"
		   "flush: run a barrier on a mounted filesystem: everything written\n"
		   "  before it is in the store when it returns 0.\n"
		   "stats: print the statistics of a mounted filesystem.\n"
		   "device: manage the device files of a mount's .nbd/ directory\n"
		   "  (\"zerofs-fuse device --help\" tells more).\n"
		   "\n"
		   "  -f           stay in the foreground\n"
		   "  -d           debug: foreground, FUSE requests logged\n"
		   "  -c CONFIG    read settings from a libconfig file\n"
		   "  -o OPTIONS   comma-separated settings (below) and mount options\n"
		   "  -h, --help   this text\n"
		   "  -V, --version\n"
		   "\nSettings (config file keys and -o options):\n");
	cfg_print_help(f);
	fprintf(f, "\nThe password comes from password_file, $ZEROFS_PASSWORD or the terminal.\n"
		   "See zerofs-fuse(8).\n");
}

static int append_opts(char **all, const char *more)
{
	if (!more || !*more)
		return 0;
	char *n = NULL;
	if (asprintf(&n, "%s%s%s", *all ? *all : "", *all && **all ? "," : "", more) < 0)
		return -ENOMEM;
	free(*all);
	*all = n;
	return 0;
}

/* Parse argv after the subcommand.  Returns 0, 1 (exit 0: help/version
 * printed) or -1 (error printed). */
static int parse_args(struct cli *c, int argc, char **argv, int want_mountpoint)
{
	static const struct option longopts[] = {
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *config = NULL;
	char *opts = NULL;
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "+fdc:o:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f':
			c->foreground = 1;
			break;
		case 'd':
			c->debug = c->foreground = 1;
			break;
		case 'c':
			config = optarg;
			break;
		case 'o':
			if (append_opts(&opts, optarg) < 0)
				return -1;
			break;
		case 'h':
			usage(stdout);
			free(opts);
			return 1;
		case 'V':
			printf("zerofs-fuse %s\n", PACKAGE_VERSION);
			free(opts);
			return 1;
		default:
			usage(stderr);
			free(opts);
			return -1;
		}
	}
	char err[512];
	if (config && cfg_load_file(&c->cfg, config, err, sizeof(err)) < 0) {
		fprintf(stderr, "zerofs-fuse: %s\n", err);
		free(opts);
		return -1;
	}
	if (opts && cfg_parse_opts(&c->cfg, opts, &c->fuse_opts, err, sizeof(err)) < 0) {
		fprintf(stderr, "zerofs-fuse: %s\n", err);
		free(opts);
		return -1;
	}
	free(opts);
	if (want_mountpoint == 2) {
		if (optind < argc - 1) {
			fprintf(stderr, "zerofs-fuse: too many arguments\n");
			return -1;
		}
		c->mountpoint = optind == argc - 1 ? argv[optind] : NULL;
	} else if (want_mountpoint) {
		if (optind != argc - 1) {
			fprintf(stderr, "zerofs-fuse: %s\n",
				optind >= argc ? "no mountpoint given" : "too many arguments");
			usage(stderr);
			return -1;
		}
		c->mountpoint = argv[optind];
	} else if (optind != argc) {
		fprintf(stderr, "zerofs-fuse: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	return 0;
}

static int log_level_of(const char *name)
{
	if (strcmp(name, "error") == 0)
		return LOG_ERR;
	if (strcmp(name, "warning") == 0)
		return LOG_WARNING;
	if (strcmp(name, "debug") == 0)
		return LOG_DEBUG;
	return LOG_INFO;
}

static char *prompt(const char *what)
{
	int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct termios old, noecho;
	int have_tty = tcgetattr(fd, &old) == 0;
	if (have_tty) {
		noecho = old;
		noecho.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(fd, TCSAFLUSH, &noecho);
	}
	dprintf(fd, "%s: ", what);
	char buf[1024];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (have_tty)
		tcsetattr(fd, TCSAFLUSH, &old);
	dprintf(fd, "\n");
	close(fd);
	if (n <= 0)
		return NULL;
	buf[n] = 0;
	buf[strcspn(buf, "\r\n")] = 0;
	return strdup(buf);
}

/* The password: password_file, $ZEROFS_PASSWORD, or the terminal (twice
 * when confirm is set).  NULL after printing why. */
static char *get_password(const struct cfg *cfg, int confirm)
{
	char *pw = NULL;
	if (cfg->password_file) {
		size_t len;
		int rc = util_read_file(cfg->password_file, (void **)&pw, &len);
		if (rc < 0) {
			fprintf(stderr, "zerofs-fuse: cannot read password_file %s: %s\n",
				cfg->password_file, strerror(-rc));
			return NULL;
		}
		pw[strcspn(pw, "\r\n")] = 0;
	} else if (getenv("ZEROFS_PASSWORD")) {
		pw = strdup(getenv("ZEROFS_PASSWORD"));
	} else {
		pw = prompt("Password");
		if (!pw) {
			fprintf(stderr, "zerofs-fuse: no password: set password_file or "
					"ZEROFS_PASSWORD, or run on a terminal\n");
			return NULL;
		}
		if (confirm) {
			CLEANUP_FREE char *again = prompt("Password again");
			if (!again || strcmp(again, pw) != 0) {
				fprintf(stderr, "zerofs-fuse: the passwords differ\n");
				free(pw);
				return NULL;
			}
		}
	}
	if (pw && !*pw) {
		fprintf(stderr, "zerofs-fuse: the password is empty\n");
		free(pw);
		return NULL;
	}
	return pw;
}

static void wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* Fork; the parent waits until the child reports that it has mounted (or
 * failed) and exits with that status, so "zerofs-fuse MNT" returns only
 * once the mount is usable, and errors reach the terminal. */
static int daemon_start(int *report_fd)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		perror("zerofs-fuse: pipe");
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("zerofs-fuse: fork");
		return -1;
	}
	if (pid > 0) {
		close(p[1]);
		char status = 1;
		if (read(p[0], &status, 1) != 1)
			status = 1;
		_exit(status);
	}
	close(p[0]);
	setsid();
	*report_fd = p[1];
	return 0;
}

static void daemon_ready(int fd, int status)
{
	if (fd < 0)
		return;
	char s = (char)status;
	if (write(fd, &s, 1) != 1)
		log_error("could not report to the parent process: %m");
	close(fd);
	if (status == 0) {
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDOUT_FILENO);
			dup2(null, STDERR_FILENO);
			if (null > STDERR_FILENO)
				close(null);
		}
	}
}

/* The NBD server over the mount's .nbd/ directory.  An explicitly set
 * nbd_listen that cannot be bound fails the mount; the default one, busy
 * with another mount's server, only costs this mount its TCP listener. */
static struct nbds *start_nbd(const struct cfg *cfg, struct fs *fs, struct zfuse *zf)
{
	const struct cfg_opt *def = cfg_find("nbd_listen");
	struct nbds_conf nc = {
		.listen = cfg->nbd_listen,
		.listen_optional = def && def->def && cfg->nbd_listen &&
				   strcmp(cfg->nbd_listen, def->def) == 0,
		.socket = cfg->nbd_socket,
		.threads = (int)cfg->nbd_threads,
		.invalidate = zfuse_invalidate,
		.invalidate_arg = zf,
	};
	return nbds_start(fs, &nc);
}

/* Tell systemd (Type=notify) how the service stands, if it asked: one
 * datagram to $NOTIFY_SOCKET, as sd_notify(3) sends without libsystemd. */
static void notify_systemd(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (!path || !*path || strlen(path) >= sizeof(sa.sun_path))
		return;
	size_t n = strlen(path);
	memcpy(sa.sun_path, path, n);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = 0; /* abstract namespace */
	CLEANUP_CLOSE int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
			     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
		log_warn("cannot notify systemd at %s: %m", path);
}

static int cmd_mount(struct cli *c)
{
	log_init("zerofs-fuse", 0, log_level_of(c->cfg.log_level));
	if (zfuse_check_mountpoint(c->mountpoint) < 0)
		return 1;
	int read_only = c->cfg.ro || (c->cfg.snapshot && *c->cfg.snapshot);
	/* The kernel refuses every write to a read-only mount (EROFS). */
	if (read_only && append_opts(&c->fuse_opts, "ro") < 0)
		return 1;
	struct zfuse *zf = zfuse_new(&c->cfg, c->fuse_opts, c->debug);
	if (!zf)
		return 1;
	char *pw = get_password(&c->cfg, 0);
	if (!pw) {
		zfuse_free(zf);
		return 1;
	}
	int report = -1;
	if (!c->foreground && daemon_start(&report) < 0) {
		wipe_free(pw);
		zfuse_free(zf);
		return 1;
	}
	/* Before the first thread: the signal thread of zfuse_mount takes them. */
	zfuse_block_signals();
	/* Loop devices on files of this mount write through this daemon: when
	 * the kernel reclaims memory by writing their dirty pages, the daemon's
	 * own allocations must not wait for that reclaim (every thread started
	 * from here on inherits the flag). */
	if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) < 0)
		log_info("cannot mark the daemon PR_SET_IO_FLUSHER (needs CAP_SYS_RESOURCE); loop "
			 "devices on this mount risk a memory-reclaim deadlock: %m");
	struct fs *fs = fs_open(&c->cfg, pw, 1);
	wipe_free(pw);
	if (!fs) {
		zfuse_free(zf);
		daemon_ready(report, 1);
		return 1;
	}
	struct nbds *nbd = NULL;
	struct stats_http *sh = NULL;
	if (zfuse_mount(zf, fs, c->mountpoint) < 0 ||
	    (!read_only && !(nbd = start_nbd(&c->cfg, fs, zf))) ||
	    (c->cfg.stats_listen && *c->cfg.stats_listen &&
	     !(sh = stats_http_start(fs, c->cfg.stats_listen)))) {
		nbds_stop(nbd);
		zfuse_free(zf);
		fs_close(fs);
		daemon_ready(report, 1);
		return 1;
	}
	log_info("mounted on %s", c->mountpoint);
	if (report >= 0) {
		daemon_ready(report, 0);
		log_init("zerofs-fuse", 1, log_level_of(c->cfg.log_level));
	}
	notify_systemd("READY=1\nSTATUS=mounted");
	int rc = zfuse_loop(zf, &c->cfg);
	notify_systemd("STOPPING=1\nSTATUS=running the last barrier");
	/* Before fs_close: in-flight NBD and stats requests still need the fs. */
	stats_http_stop(sh);
	nbds_stop(nbd);
	zfuse_free(zf);
	int crc = fs_close(fs);
	if (crc == 0)
		log_info("unmounted %s; all data is in the store", c->mountpoint);
	return rc < 0 || crc < 0 ? 1 : 0;
}

static int cmd_mkfs(struct cli *c)
{
	log_init("zerofs-fuse", 0, log_level_of(c->cfg.log_level));
	char *pw = get_password(&c->cfg, 1);
	if (!pw)
		return 1;
	int rc = fs_mkfs(&c->cfg, pw);
	wipe_free(pw);
	return rc < 0 ? 1 : 0;
}

static int cmd_change_password(struct cli *c)
{
	log_init("zerofs-fuse", 0, log_level_of(c->cfg.log_level));
	char *old = get_password(&c->cfg, 0);
	if (!old)
		return 1;
	char *new = NULL;
	if (getenv("ZEROFS_NEW_PASSWORD")) {
		new = strdup(getenv("ZEROFS_NEW_PASSWORD"));
	} else {
		new = prompt("New password");
		CLEANUP_FREE char *again = new ? prompt("New password again") : NULL;
		if (new && (!again || strcmp(again, new) != 0)) {
			fprintf(stderr, "zerofs-fuse: the new passwords differ\n");
			wipe_free(new);
			new = NULL;
		}
	}
	int rc = 1;
	if (!new || !*new)
		fprintf(stderr, "zerofs-fuse: no new password (set ZEROFS_NEW_PASSWORD or run on a "
				"terminal)\n");
	else
		rc = fs_change_password(&c->cfg, old, new) < 0;
	wipe_free(old);
	wipe_free(new);
	return rc;
}

static int cmd_flush(struct cli *c)
{
	CLEANUP_CLOSE int fd = open(c->mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "zerofs-fuse: %s: %s\n", c->mountpoint, strerror(errno));
		return 1;
	}
	/* fsync of a directory is a barrier of the whole filesystem. */
	if (fsync(fd) < 0) {
		fprintf(stderr, "zerofs-fuse: flush of %s failed: %s\n", c->mountpoint,
			strerror(errno));
		return 1;
	}
	return 0;
}

static int cmd_stats(struct cli *c)
{
	char path[4096], buf[4096];
	snprintf(path, sizeof(path), "%s/.zerofs-stats", c->mountpoint);
	/* Read to the end: the file's size is not known before it is read. */
	CLEANUP_CLOSE int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "zerofs-fuse: %s is not a mounted zerofs-fuse filesystem (%s)\n",
			c->mountpoint, strerror(errno));
		return 1;
	}
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)n, stdout);
	if (n < 0) {
		fprintf(stderr, "zerofs-fuse: reading %s: %s\n", path, strerror(errno));
		return 1;
	}
	return fflush(stdout) == 0 ? 0 : 1;
}

/* ---- maintenance commands ---- */

struct progress {
	const char *what;
	uint64_t last_ns;
};

/* Progress on a terminal only: one line rewritten at most 10 times a second. */
static void show_progress(void *arg, uint64_t done, uint64_t total)
{
	struct progress *p = arg;
	uint64_t now = util_now_ns();
	if ((total == 0 || done < total) && now - p->last_ns < 100000000ULL)
		return;
	p->last_ns = now;
	if (!total) {
		fprintf(stderr, "\r%s: %" PRIu64 " so far", p->what, done);
		return;
	}
	fprintf(stderr, "\r%s: %3u%% (%" PRIu64 " of %" PRIu64 ")%s", p->what,
		(unsigned)(done * 100 / total), done, total, done >= total ? "\n" : "");
}

/* Open the store for a maintenance command: no garbage collection thread,
 * no periodic barrier that would race the command's own.  NULL: exit 2. */
static struct fs *open_offline(struct cli *c)
{
	log_init("zerofs-fuse", 0, log_level_of(c->cfg.log_level));
	c->cfg.gc_interval_ms = 0;
	char *pw = get_password(&c->cfg, 0);
	if (!pw)
		return NULL;
	struct fs *fs = fs_open(&c->cfg, pw, 0);
	wipe_free(pw);
	if (!fs)
		fprintf(stderr, "zerofs-fuse: cannot open %s: %s\n", c->cfg.store,
			strerror(errno));
	return fs;
}

static int close_offline(struct fs *fs, int rc)
{
	if (fs_close(fs) < 0)
		return 2;
	return rc;
}

static int cmd_fsck(struct cli *c)
{
	struct fs *fs = open_offline(c);
	if (!fs)
		return 2;
	struct progress p = {"fsck", 0};
	int tty = isatty(STDERR_FILENO);
	int n = fs_fsck(fs, c->repair, stdout, tty ? show_progress : NULL, &p);
	fflush(stdout);
	if (n < 0)
		fprintf(stderr, "zerofs-fuse: fsck could not finish: %s\n", strerror(-n));
	return close_offline(fs, n < 0 ? 2 : n > 0);
}

static int cmd_scrub(struct cli *c)
{
	struct fs *fs = open_offline(c);
	if (!fs)
		return 2;
	struct progress p = {"scrub", 0};
	int tty = isatty(STDERR_FILENO);
	int n = fs_scrub(fs, stdout, tty ? show_progress : NULL, &p);
	fflush(stdout);
	if (n < 0)
		fprintf(stderr, "zerofs-fuse: scrub could not finish: %s\n", strerror(-n));
	return close_offline(fs, n < 0 ? 2 : n > 0);
}

static void print_gc(const struct fs_gc_report *r)
{
	printf("segments dropped %" PRIu64 "\nobjects deleted %" PRIu64 "\nbytes deleted %" PRIu64
	       "\nsegments repacked %" PRIu64 "\nblocks moved %" PRIu64 "\norphans deleted %" PRIu64
	       "\ndeletes waiting %" PRIu64 "\n",
	       r->dead_segments, r->deleted_objects, r->deleted_bytes + r->orphan_bytes,
	       r->repacked_segments, r->moved_blocks, r->orphans, r->waiting);
}

static int cmd_gc(struct cli *c)
{
	if (c->mountpoint) {
		/* A mounted filesystem runs the pass itself (zfuse.c). */
		if (setxattr(c->mountpoint, "trusted.zerofs.gc", "run", 3, 0) < 0) {
			fprintf(stderr, "zerofs-fuse: garbage collection on %s failed: %s\n",
				c->mountpoint,
				errno == ENOTSUP ? "not a mounted zerofs-fuse filesystem"
						 : strerror(errno));
			return 1;
		}
		return cmd_stats(c);
	}
	struct fs *fs = open_offline(c);
	if (!fs)
		return 2;
	struct fs_gc_report r = {0};
	struct progress p = {"gc: segments repacked", 0};
	if (isatty(STDERR_FILENO))
		fs_gc_set_progress(fs, show_progress, &p);
	int rc = fs_gc(fs, 1, &r);
	/* A second pass drops what the first one repacked. */
	if (rc == 0 && r.repacked_segments)
		rc = fs_gc(fs, 1, &r);
	print_gc(&r);
	fflush(stdout);
	if (rc < 0)
		fprintf(stderr, "zerofs-fuse: gc failed: %s\n", strerror(-rc));
	return close_offline(fs, rc < 0);
}

static void snapshot_usage(FILE *f)
{
	fprintf(f, "Usage:\n"
		   "  zerofs-fuse snapshot create -m MOUNTPOINT NAME\n"
		   "  zerofs-fuse snapshot list -m MOUNTPOINT\n"
		   "  zerofs-fuse snapshot info -m MOUNTPOINT NAME\n"
		   "  zerofs-fuse snapshot delete -m MOUNTPOINT NAME\n"
		   "\n"
		   "A snapshot is the whole filesystem as of a new barrier, read-only, sharing\n"
		   "its data with the live filesystem (made in time proportional to the\n"
		   "index, not the data).  Mount one with -o snapshot=NAME (read-only, beside\n"
		   "the writer) and copy files out of it to restore them.  NAME: letters,\n"
		   "digits, '.', '_', '-', up to 64, not starting with '.' or '-'.\n"
		   "create, delete: root only.  See zerofs-fuse(8).\n");
}

static int cmd_snapshot(struct cli *c)
{
	const char *mnt = NULL, *verb = c->argc > 1 ? c->argv[1] : NULL;
	int ch;
	if (verb && (strcmp(verb, "-h") == 0 || strcmp(verb, "--help") == 0)) {
		snapshot_usage(stdout);
		return 0;
	}
	if (!verb || (strcmp(verb, "create") && strcmp(verb, "list") && strcmp(verb, "info") &&
		      strcmp(verb, "delete"))) {
		snapshot_usage(stderr);
		return 1;
	}
	optind = 1;
	while ((ch = getopt(c->argc - 1, c->argv + 1, "+m:h")) != -1) {
		if (ch == 'm') {
			mnt = optarg;
		} else if (ch == 'h') {
			snapshot_usage(stdout);
			return 0;
		} else {
			snapshot_usage(stderr);
			return 1;
		}
	}
	int rest = c->argc - 1 - optind;
	char **args = c->argv + 1 + optind;
	int want = strcmp(verb, "list") ? 1 : 0;
	if (!mnt || rest != want) {
		fprintf(stderr, "zerofs-fuse snapshot %s: %s\n", verb,
			!mnt ? "-m MOUNTPOINT is required" : want ? "give one snapshot name"
								   : "no name is taken");
		return 1;
	}
	if (strcmp(verb, "create") == 0 || strcmp(verb, "delete") == 0) {
		char attr[64];
		snprintf(attr, sizeof(attr), "trusted.zerofs.snapshot.%s", verb);
		if (setxattr(mnt, attr, args[0], strlen(args[0]), 0) < 0) {
			int e = errno;
			fprintf(stderr, "zerofs-fuse snapshot %s %s: %s\n", verb, args[0],
				e == EEXIST   ? "a snapshot of that name exists"
				: e == ENOENT ? "no snapshot of that name"
				: e == EINVAL ? "not a valid snapshot name"
				: e == EROFS  ? "the mount is read-only"
				: e == ENOTSUP ? "not a mounted zerofs-fuse filesystem"
					       : strerror(e));
			return 1;
		}
		return 0;
	}
	char buf[65536];
	ssize_t n = getxattr(mnt, "trusted.zerofs.snapshots", buf, sizeof(buf) - 1);
	if (n < 0) {
		fprintf(stderr, "zerofs-fuse snapshot %s: %s: %s\n", verb, mnt,
			errno == ENOTSUP || errno == ENODATA ? "not a mounted zerofs-fuse filesystem"
							     : strerror(errno));
		return 1;
	}
	buf[n] = '\0';
	if (strcmp(verb, "list") == 0) {
		fputs(buf, stdout);
		return fflush(stdout) == 0 ? 0 : 1;
	}
	size_t nl = strlen(args[0]);
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
		if (strncmp(line, args[0], nl) == 0 && line[nl] == ' ') {
			printf("%s\n", line);
			return fflush(stdout) == 0 ? 0 : 1;
		}
	fprintf(stderr, "zerofs-fuse snapshot info %s: no snapshot of that name\n", args[0]);
	return 1;
}

static const char *stream_password(void)
{
	const char *p = getenv("ZEROFS_STREAM_PASSWORD");
	if (!p || !*p) {
		fprintf(stderr, "zerofs-fuse: set ZEROFS_STREAM_PASSWORD: the stream between send "
				"and receive is encrypted under a key from it\n");
		return NULL;
	}
	return p;
}

static int cmd_send(struct cli *c)
{
	const char *pw = stream_password();
	if (!pw)
		return 1;
	if (isatty(STDOUT_FILENO)) {
		fprintf(stderr, "zerofs-fuse send: standard output is a terminal; redirect the "
				"stream to a file or a pipe\n");
		return 1;
	}
	if (c->from && !jnl_snapshot_valid_name(c->from)) {
		fprintf(stderr, "zerofs-fuse send: '%s' is not a valid snapshot name\n", c->from);
		return 1;
	}
	/* The source is opened as a mount of the snapshot: read-only, no lease,
	 * beside its writer if it runs. */
	free(c->cfg.snapshot);
	c->cfg.snapshot = strdup(c->mountpoint);
	if (!c->cfg.snapshot)
		return 1;
	struct fs *fs = open_offline(c);
	if (!fs)
		return 1;
	struct progress p = {"send: blocks", 0};
	int rc = fs_send(fs, c->from, c->mountpoint, STDOUT_FILENO, pw,
			 strcmp(c->cfg.kdf, "min") == 0, stderr,
			 isatty(STDERR_FILENO) ? show_progress : NULL, &p);
	if (rc < 0)
		fprintf(stderr, "zerofs-fuse send: failed: %s\n", strerror(-rc));
	fs_close(fs);
	return rc < 0;
}

static int cmd_receive(struct cli *c)
{
	const char *pw = stream_password();
	if (!pw)
		return 1;
	/* One barrier at the end makes the whole stream durable, or nothing. */
	c->cfg.no_periodic_barrier = 1;
	struct fs *fs = open_offline(c);
	if (!fs)
		return 1;
	struct progress p = {"receive: bytes", 0};
	int applied = 0;
	int rc = fs_receive(fs, STDIN_FILENO, pw, c->repair, stderr,
			    isatty(STDERR_FILENO) ? show_progress : NULL, &p, &applied);
	if (rc < 0) {
		if (applied)
			fprintf(stderr, "zerofs-fuse receive: failed (%s) at its last step; the changes "
					"may be in the store without the snapshot: receive --force the "
					"same stream again\n",
				strerror(-rc));
		else
			fprintf(stderr, "zerofs-fuse receive: failed (%s); the target is unchanged\n",
				strerror(-rc));
		fs_abort(fs);
		return 1;
	}
	return fs_close(fs) < 0;
}

static int cmd_device(struct cli *c)
{
	return dev_main(c->argc, c->argv);
}

static const struct command {
	const char *name;
	int (*run)(struct cli *c);
	int wants_mountpoint; /* -1: run parses c->argc, c->argv itself */
} commands[] = {
	{"mount", cmd_mount, 1},
	{"mkfs", cmd_mkfs, 0},
	{"change-password", cmd_change_password, 0},
	{"fsck", cmd_fsck, 0},
	{"scrub", cmd_scrub, 0},
	{"gc", cmd_gc, 2},
	{"snapshot", cmd_snapshot, -1},
	{"send", cmd_send, 1},
	{"receive", cmd_receive, 0},
	{"flush", cmd_flush, 1},
	{"stats", cmd_stats, 1},
	{"device", cmd_device, -1},
};

int cli_main(int argc, char **argv)
{
	struct cli c = {0};
	if (cfg_init(&c.cfg) < 0) {
		fprintf(stderr, "zerofs-fuse: out of memory\n");
		return 1;
	}
	const struct command *cmd = &commands[0];
	for (size_t i = 0; argc > 1 && i < ARRAY_SIZE(commands); i++)
		if (strcmp(argv[1], commands[i].name) == 0) {
			cmd = &commands[i];
			argv++;
			argc--;
			break;
		}
	/* send's own option, taken out before the common options are parsed. */
	for (int i = 1; cmd->run == cmd_send && i + 1 < argc; i++)
		if (strcmp(argv[i], "--from") == 0) {
			c.from = argv[i + 1];
			memmove(&argv[i], &argv[i + 2], (size_t)(argc - i - 1) * sizeof(*argv));
			argc -= 2;
			i--;
		}
	/* fsck's own flag, taken out before the common options are parsed. */
	for (int i = 1; (cmd->run == cmd_fsck || cmd->run == cmd_receive) && i < argc; i++)
		if (strcmp(argv[i], cmd->run == cmd_fsck ? "--repair" : "--force") == 0) {
			c.repair = 1;
			memmove(&argv[i], &argv[i + 1], (size_t)(argc - i) * sizeof(*argv));
			argc--;
			i--;
		}
	c.argc = argc;
	c.argv = argv;
	int rc = cmd->wants_mountpoint < 0 ? 0 : parse_args(&c, argc, argv, cmd->wants_mountpoint);
	if (rc == 0)
		rc = cmd->run(&c);
	else
		rc = rc > 0 ? 0 : 1;
	free(c.fuse_opts);
	cfg_free(&c.cfg);
	return rc;
}
