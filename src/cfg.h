/* cfg.h: the one option table.  Every setting of zerofs-fuse is a row of
 * cfg_opts (name, type, default, bounds, help); the libconfig file, the -o
 * mount options, --help, the sample config and the man page section are all
 * made from it, so they cannot drift apart.
 *
 * Precedence: defaults < config file < -o options.
 *
 * Locking: none; a struct cfg is filled before threads start and then only
 * read. */
#ifndef ZEROFS_CFG_H
#define ZEROFS_CFG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum cfg_type {
	CFG_BOOL,   /* true/false, yes/no, on/off, 1/0; "-o name" alone sets true */
	CFG_INT,    /* integer within [min, max] */
	CFG_SIZE,   /* bytes, with optional K, M, G, T suffix (powers of 1024) */
	CFG_STRING, /* text; min/max unused */
};

struct cfg {
	char *store;         /* object store URL */
	char *cache_dir;     /* local cache (index database, disk cache) */
	char *password_file; /* file whose first line is the password */
	int64_t barrier_interval_ms;
	int64_t checkpoint_interval; /* log objects between checkpoints */
	int64_t segment_size;
	int64_t cache_size;  /* memory cache of decoded blocks */
	int64_t dirty_limit; /* dirty bytes before writers wait for the barrier */
	int64_t threads;     /* FUSE worker threads */
	int compress;
	int allow_other;
	char *kdf;           /* "interactive" or "min" (tests only) */
	char *cipher;        /* "auto", "aes-256-gcm" or "xchacha20-poly1305" */
	char *log_level;     /* error, warning, info, debug */
	char *nbd_listen;    /* NBD server TCP address; "" for none */
	char *nbd_socket;    /* NBD server Unix socket; NULL or "" for none */
	int64_t nbd_threads; /* NBD workers per connection */
	char *stats_listen;  /* Prometheus /metrics TCP address; NULL or "" for none */
	int64_t store_timeout_ms; /* how long a store request may keep failing */
	int64_t store_parallel;   /* segment upload threads */
	char *store_faults;       /* fault injection control file (tests); NULL: none */
	int64_t gc_interval_ms;   /* background GC passes; 0: none */
	int64_t gc_repack_live;   /* repack segments below this live percentage */
	int64_t gc_grace_ms;      /* keep dead segment objects this long */
	int ro;                   /* read-only replica */
	char *snapshot;           /* mount this snapshot (read-only) */
	int64_t replica_poll_ms;  /* replica's poll interval */
	int force_takeover;       /* take the writer lease from its holder */
	char *s3_endpoint;   /* NULL: AWS, https://s3.<region>.amazonaws.com */
	char *s3_region;
	char *s3_access_key;
	char *s3_secret_key;
	char *s3_secret_key_file;
	int s3_path_style;
	char *s3_storage_class;
	char *s3_ca_file;
	int s3_verify_tls;
	/* Not settings (no row in cfg_opts): set by commands for themselves. */
	int no_periodic_barrier; /* receive: one barrier at the end, none before */
};

struct cfg_opt {
	const char *name;
	enum cfg_type type;
	size_t offset; /* of the field in struct cfg */
	const char *def; /* default, as text; NULL for "unset" strings */
	int64_t min, max;
	const char *help; /* one sentence, for --help, the sample config and man */
	const char *const *choices; /* CFG_STRING: the allowed values, NULL-ended;
				     * NULL allows any text */
	int empty_ok; /* CFG_STRING: "" is a valid value (it turns the feature off) */
};

extern const struct cfg_opt cfg_opts[];
extern const size_t cfg_nopts;

/* Fill every field with its default.  0 or -ENOMEM. */
int cfg_init(struct cfg *c);
void cfg_free(struct cfg *c);

/* Find an option by name; NULL if unknown. */
const struct cfg_opt *cfg_find(const char *name);

/* Set one option from text (value NULL means "true" for a boolean).  On
 * error returns -EINVAL and writes a one-line message to err. */
int cfg_set(struct cfg *c, const char *name, const char *value, char *err, size_t errlen);

/* Read a libconfig file: top-level settings named as in the table.  Unknown
 * keys, wrong types and values out of bounds are errors naming the file and
 * line.  0 or -errno with a message in err. */
int cfg_load_file(struct cfg *c, const char *path, char *err, size_t errlen);

/* Parse a comma-separated -o string.  Options of the table are applied;
 * anything else (FUSE/mount options such as ro, allow_other handled by us,
 * default_permissions, ...) is appended to *rest (malloc'd, comma-separated,
 * maybe empty) for the caller to pass on.  0 or -EINVAL with err. */
int cfg_parse_opts(struct cfg *c, const char *opts, char **rest, char *err, size_t errlen);

/* Parse a size with optional K/M/G/T suffix.  0 or -EINVAL. */
int cfg_parse_size(const char *s, int64_t *out);

/* Writers for the generated documentation. */
void cfg_print_help(FILE *f);   /* indented "  -o name=VALUE  help (default: x)" lines */
void cfg_print_sample(FILE *f); /* a commented libconfig file with every key */
void cfg_print_man(FILE *f);    /* man(7) .TP entries for every option */
/* man(7) .TP entries for zerofs-fuse.conf(5): every setting with its help,
 * type, default (as written in the file) and range or choices. */
void cfg_print_conf_man(FILE *f);

#endif
