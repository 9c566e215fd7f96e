/* cfg.c: the option table and everything made from it: defaults, parsing of
 * values from -o strings and libconfig files (with bounds and type checks),
 * and the generated --help text, sample config file and man page entries. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libconfig.h>

#include "cfg.h"
#include "common/util.h"

#define KIB INT64_C(1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

static const char *const kdf_choices[] = { "interactive", "min", NULL };
static const char *const cipher_choices[] = { "auto", "aes-256-gcm", "xchacha20-poly1305",
					      NULL };
static const char *const log_level_choices[] = { "error", "warning", "info", "debug", NULL };

/* Each row is one setting; rows appear in this order in every generated
 * document. */
#define OPT(n, t, ...)                                                                \
	{                                                                             \
		.name = #n, .type = t, .offset = offsetof(struct cfg, n), __VA_ARGS__ \
	}

const struct cfg_opt cfg_opts[] = {
	OPT(store, CFG_STRING, .def = "file:///var/lib/zerofs-fuse/store",
	    .help = "object store URL: s3://bucket/prefix for S3 (see the s3_ settings), "
		    "file:///path or a plain path for a local directory store"),
	OPT(cache_dir, CFG_STRING, .def = "/var/cache/zerofs-fuse",
	    .help = "local directory for the index database and the disk cache"),
	OPT(password_file, CFG_STRING, .def = NULL,
	    .help = "file whose first line is the password; otherwise $ZEROFS_PASSWORD, "
		    "otherwise a prompt on the terminal"),
	OPT(barrier_interval_ms, CFG_INT, .def = "5000", .min = 100, .max = 3600000,
	    .help = "milliseconds between periodic barriers that make all writes durable"),
	OPT(checkpoint_interval, CFG_INT, .def = "64", .min = 1, .max = 1000000,
	    .help = "index log objects written between full index checkpoints"),
	OPT(segment_size, CFG_SIZE, .def = "8M", .min = 1 * MIB, .max = 256 * MIB,
	    .help = "size at which the open segment is sealed and uploaded"),
	OPT(cache_size, CFG_SIZE, .def = "256M", .min = 16 * MIB, .max = 64 * GIB,
	    .help = "memory cache of decoded blocks"),
	OPT(dirty_limit, CFG_SIZE, .def = "256M", .min = 16 * MIB, .max = 64 * GIB,
	    .help = "bytes written but not yet behind a barrier before writers wait for one"),
	OPT(threads, CFG_INT, .def = "0", .min = 0, .max = 256,
	    .help = "FUSE worker threads; 0 means one per online CPU (at least 2)"),
	OPT(compress, CFG_BOOL, .def = "true",
	    .help = "compress extents with lz4 before encryption; incompressible ones are "
		    "stored raw"),
	OPT(allow_other, CFG_BOOL, .def = "false",
	    .help = "let users other than the one who mounted access the files; a non-root "
		    "mount also needs user_allow_other in /etc/fuse.conf"),
	OPT(kdf, CFG_STRING, .def = "interactive", .choices = kdf_choices,
	    .help = "cost of the Argon2id password key of a new store; "
		    "min is weak and for tests only"),
	OPT(cipher, CFG_STRING, .def = "auto", .choices = cipher_choices,
	    .help = "AEAD that seals the data and index of a new store; auto means "
		    "aes-256-gcm when the CPU has AES instructions (about 3 times faster "
		    "there), xchacha20-poly1305 otherwise; an existing store keeps the one "
		    "it was made with"),
	OPT(log_level, CFG_STRING, .def = "info", .choices = log_level_choices,
	    .help = "least important messages logged"),
	OPT(nbd_listen, CFG_STRING, .def = "127.0.0.1:10809", .empty_ok = 1,
	    .help = "HOST:PORT where the NBD server exports the files of the mount's .nbd/ "
		    "directory; empty turns TCP off; if the default address is taken (another "
		    "mount) the mount goes on without it"),
	OPT(nbd_socket, CFG_STRING, .def = NULL, .empty_ok = 1,
	    .help = "path of a Unix socket where the NBD server also listens; unset means none"),
	OPT(nbd_threads, CFG_INT, .def = "4", .min = 1, .max = 64,
	    .help = "NBD requests served in parallel on each connection"),
	OPT(stats_listen, CFG_STRING, .def = NULL, .empty_ok = 1,
	    .help = "HOST:PORT where the statistics are served as Prometheus text at "
		    "/metrics, such as 127.0.0.1:9580; unset or empty means none; anyone who "
		    "can connect may read them, so keep it on localhost"),
	OPT(store_timeout_ms, CFG_INT, .def = "60000", .min = 1000, .max = 86400000,
	    .help = "milliseconds a store request may keep failing (retried with backoff) "
		    "before the operation fails with EIO"),
	OPT(store_parallel, CFG_INT, .def = "4", .min = 1, .max = 64,
	    .help = "segments uploaded to the store in parallel"),
	OPT(store_faults, CFG_STRING, .def = NULL,
	    .help = "for tests: inject store faults as a control file says; the file is re-read "
		    "at most every 100 ms and holds words separated by spaces, commas or lines: "
		    "fail=P% (that share of requests fail with EIO, not executed), reset=P% (the "
		    "request is executed but its answer is lost: EIO), delay=MSms@P% (that share "
		    "waits MS milliseconds first), outage (every request fails); P may have a "
		    "fraction, # starts a comment, an empty or missing file means healthy"),
	OPT(gc_interval_ms, CFG_INT, .def = "60000", .min = 0, .max = 86400000,
	    .help = "milliseconds between background garbage collection passes, which delete "
		    "segment objects no file uses and repack sparse ones; 0 turns them off "
		    "('zerofs-fuse gc' still runs one)"),
	OPT(gc_repack_live, CFG_INT, .def = "50", .min = 0, .max = 100,
	    .help = "a segment whose live data is below this percentage of its size is "
		    "repacked: its live blocks are copied to a new segment and it is deleted; "
		    "0 never repacks"),
	OPT(gc_grace_ms, CFG_INT, .def = "120000", .min = 0, .max = 86400000,
	    .help = "milliseconds a dead segment object is kept after the barrier that "
		    "dropped it, for reads that looked it up before; keep it above "
		    "store_timeout_ms"),
	OPT(ro, CFG_BOOL, .def = "false",
	    .help = "mount read-only as a replica: take no lease, never write to the store, "
		    "follow the writer's barriers every replica_poll_ms (any number of replicas "
		    "may mount the store while one writer runs); no NBD server"),
	OPT(snapshot, CFG_STRING, .def = NULL,
	    .help = "mount this snapshot (see 'zerofs-fuse snapshot') read-only, beside a "
		    "running writer if need be; implies ro, without following"),
	OPT(replica_poll_ms, CFG_INT, .def = "2000", .min = 100, .max = 3600000,
	    .help = "milliseconds between a replica's polls for the writer's new index logs: "
		    "its lag behind the writer's barriers is about this much; keep it well "
		    "below the writer's gc_grace_ms"),
	OPT(force_takeover, CFG_BOOL, .def = "false",
	    .help = "take the store's writer lease even when another mount holds it; the other "
		    "mount is fenced: its next barrier fails with EIO and it writes nothing more"),
	OPT(s3_endpoint, CFG_STRING, .def = NULL,
	    .help = "URL of the S3 service for s3:// stores, such as http://127.0.0.1:7480; "
		    "unset means AWS, https://s3.REGION.amazonaws.com"),
	OPT(s3_region, CFG_STRING, .def = "us-east-1",
	    .help = "region that S3 requests are signed for"),
	OPT(s3_access_key, CFG_STRING, .def = NULL,
	    .help = "S3 access key id; unset means $AWS_ACCESS_KEY_ID, otherwise "
		    "~/.aws/credentials (profile $AWS_PROFILE or default)"),
	OPT(s3_secret_key, CFG_STRING, .def = NULL,
	    .help = "S3 secret key; keep it in the config file (mode 0600) or use "
		    "s3_secret_key_file, never the command line"),
	OPT(s3_secret_key_file, CFG_STRING, .def = NULL,
	    .help = "file whose first line is the S3 secret key"),
	OPT(s3_path_style, CFG_BOOL, .def = "false",
	    .help = "address buckets as ENDPOINT/BUCKET (most self-hosted servers) instead "
		    "of BUCKET.ENDPOINT-HOST"),
	OPT(s3_storage_class, CFG_STRING, .def = NULL,
	    .help = "storage class sent with every upload, such as STANDARD_IA; unset "
		    "means the bucket's default"),
	OPT(s3_ca_file, CFG_STRING, .def = NULL,
	    .help = "PEM file of the certificate authorities trusted for https endpoints; "
		    "unset means the system's"),
	OPT(s3_verify_tls, CFG_BOOL, .def = "true",
	    .help = "verify the certificate and host name of https endpoints"),
};

const size_t cfg_nopts = ARRAY_SIZE(cfg_opts);

static int64_t *int_field(struct cfg *c, const struct cfg_opt *o)
{
	return (int64_t *)((char *)c + o->offset);
}

static int *bool_field(struct cfg *c, const struct cfg_opt *o)
{
	return (int *)((char *)c + o->offset);
}

static char **str_field(struct cfg *c, const struct cfg_opt *o)
{
	return (char **)((char *)c + o->offset);
}

const struct cfg_opt *cfg_find(const char *name)
{
	for (size_t i = 0; i < cfg_nopts; i++)
		if (strcmp(cfg_opts[i].name, name) == 0)
			return &cfg_opts[i];
	return NULL;
}

int cfg_parse_size(const char *s, int64_t *out)
{
	static const char suffixes[] = "KMGT";
	char *end;
	uint64_t v, mult = 1;
	const char *p;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	if (*end) {
		p = strchr(suffixes, toupper((unsigned char)*end));
		if (!p || end[1])
			return -EINVAL;
		mult = (uint64_t)1 << (10 * (p - suffixes + 1));
	}
	if (v > (uint64_t)INT64_MAX / mult)
		return -EINVAL;
	*out = (int64_t)(v * mult);
	return 0;
}

/* Render a size with the largest suffix that divides it exactly, as the
 * table's defaults are written ("8M", not "8388608"). */
static void fmt_size(char *buf, size_t len, int64_t v)
{
	static const char suffixes[] = "TGMK";
	int shift = 40;

	for (const char *s = suffixes; *s; s++, shift -= 10) {
		if (v != 0 && v % ((int64_t)1 << shift) == 0) {
			snprintf(buf, len, "%" PRId64 "%c", v >> shift, *s);
			return;
		}
	}
	snprintf(buf, len, "%" PRId64, v);
}

static void fmt_bound(char *buf, size_t len, const struct cfg_opt *o, int64_t v)
{
	if (o->type == CFG_SIZE)
		fmt_size(buf, len, v);
	else
		snprintf(buf, len, "%" PRId64, v);
}

static int set_number(struct cfg *c, const struct cfg_opt *o, int64_t v, char *err, size_t errlen)
{
	char lo[32], hi[32];

	if (v < o->min || v > o->max) {
		fmt_bound(lo, sizeof(lo), o, o->min);
		fmt_bound(hi, sizeof(hi), o, o->max);
		snprintf(err, errlen, "option '%s': %" PRId64 " is out of range %s to %s", o->name,
			 v, lo, hi);
		return -EINVAL;
	}
	*int_field(c, o) = v;
	return 0;
}

static int parse_bool(const char *s, int *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -EINVAL;
}

static bool is_choice(const struct cfg_opt *o, const char *s)
{
	if (!o->choices)
		return true;
	for (const char *const *ch = o->choices; *ch; ch++)
		if (strcmp(*ch, s) == 0)
			return true;
	return false;
}

static void fmt_choices(char *buf, size_t len, const struct cfg_opt *o, const char *sep)
{
	size_t n = 0;

	buf[0] = '\0';
	for (const char *const *ch = o->choices; *ch && n < len; ch++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s", ch == o->choices ? "" : sep, *ch);
}

static int set_string(struct cfg *c, const struct cfg_opt *o, const char *s, char *err,
		      size_t errlen)
{
	char list[128];
	char *dup;

	if (!is_choice(o, s)) {
		fmt_choices(list, sizeof(list), o, ", ");
		snprintf(err, errlen, "option '%s': '%s' is not one of %s", o->name, s, list);
		return -EINVAL;
	}
	dup = strdup(s);
	if (!dup) {
		snprintf(err, errlen, "option '%s': out of memory", o->name);
		return -ENOMEM;
	}
	free(*str_field(c, o));
	*str_field(c, o) = dup;
	return 0;
}

static int set_text(struct cfg *c, const struct cfg_opt *o, const char *value, char *err,
		    size_t errlen)
{
	int64_t v;
	char *end;
	int b;

	switch (o->type) {
	case CFG_BOOL:
		if (parse_bool(value, &b) < 0) {
			snprintf(err, errlen, "option '%s': '%s' is not a boolean (true or false)",
				 o->name, value);
			return -EINVAL;
		}
		*bool_field(c, o) = b;
		return 0;
	case CFG_INT:
		errno = 0;
		v = strtoll(value, &end, 10);
		if (errno || end == value || *end) {
			snprintf(err, errlen, "option '%s': '%s' is not an integer", o->name,
				 value);
			return -EINVAL;
		}
		return set_number(c, o, v, err, errlen);
	case CFG_SIZE:
		if (cfg_parse_size(value, &v) < 0) {
			snprintf(
				err, errlen,
				"option '%s': '%s' is not a size (bytes, or a number with K, M, G or T)",
				o->name, value);
			return -EINVAL;
		}
		return set_number(c, o, v, err, errlen);
	case CFG_STRING:
		return set_string(c, o, value, err, errlen);
	}
	return -EINVAL;
}

int cfg_set(struct cfg *c, const char *name, const char *value, char *err, size_t errlen)
{
	const struct cfg_opt *o = cfg_find(name);

	if (!o) {
		snprintf(err, errlen, "unknown option '%s'", name);
		return -EINVAL;
	}
	if (!value && o->type == CFG_BOOL)
		value = "true";
	if (!value || (!*value && !(o->type == CFG_STRING && o->empty_ok))) {
		snprintf(err, errlen, "option '%s' needs a value", name);
		return -EINVAL;
	}
	return set_text(c, o, value, err, errlen);
}

int cfg_init(struct cfg *c)
{
	char err[256];
	int r;

	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < cfg_nopts; i++) {
		if (!cfg_opts[i].def)
			continue;
		r = set_text(c, &cfg_opts[i], cfg_opts[i].def, err, sizeof(err));
		if (r < 0) {
			cfg_free(c);
			return r;
		}
	}
	return 0;
}

void cfg_free(struct cfg *c)
{
	for (size_t i = 0; i < cfg_nopts; i++) {
		if (cfg_opts[i].type != CFG_STRING)
			continue;
		free(*str_field(c, &cfg_opts[i]));
		*str_field(c, &cfg_opts[i]) = NULL;
	}
}

static const char *type_name(const struct cfg_opt *o)
{
	switch (o->type) {
	case CFG_BOOL:
		return "a boolean (true or false)";
	case CFG_INT:
		return "an integer";
	case CFG_SIZE:
		return "a size (an integer, or a string such as \"8M\")";
	case CFG_STRING:
		return "a string";
	}
	return "?";
}

/* Apply one libconfig setting; on error err holds a message without the
 * file and line, which the caller adds. */
static int load_setting(struct cfg *c, const struct cfg_opt *o, const config_setting_t *s,
			char *err, size_t errlen)
{
	int t = config_setting_type(s);

	switch (o->type) {
	case CFG_BOOL:
		if (t != CONFIG_TYPE_BOOL)
			break;
		*bool_field(c, o) = config_setting_get_bool(s);
		return 0;
	case CFG_INT:
		if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
			break;
		return set_number(c, o, config_setting_get_int64(s), err, errlen);
	case CFG_SIZE:
		if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)
			return set_number(c, o, config_setting_get_int64(s), err, errlen);
		if (t != CONFIG_TYPE_STRING)
			break;
		return set_text(c, o, config_setting_get_string(s), err, errlen);
	case CFG_STRING:
		if (t != CONFIG_TYPE_STRING)
			break;
		return set_string(c, o, config_setting_get_string(s), err, errlen);
	}
	snprintf(err, errlen, "setting '%s' must be %s", o->name, type_name(o));
	return -EINVAL;
}

static int load_root(struct cfg *c, const config_t *lc, const char *path, char *err, size_t errlen)
{
	const config_setting_t *root = config_root_setting(lc);
	char msg[256];

	for (int i = 0; i < config_setting_length(root); i++) {
		const config_setting_t *s = config_setting_get_elem(root, (unsigned int)i);
		const char *file = config_setting_source_file(s);
		const struct cfg_opt *o = cfg_find(config_setting_name(s));
		int r;

		if (!o) {
			snprintf(msg, sizeof(msg), "unknown setting '%s'", config_setting_name(s));
			r = -EINVAL;
		} else {
			r = load_setting(c, o, s, msg, sizeof(msg));
		}
		if (r < 0) {
			snprintf(err, errlen, "%s:%d: %s", file ? file : path,
				 config_setting_source_line(s), msg);
			return r;
		}
	}
	return 0;
}

int cfg_load_file(struct cfg *c, const char *path, char *err, size_t errlen)
{
	config_t lc;
	int r;

	config_init(&lc);
	if (config_read_file(&lc, path) == CONFIG_TRUE) {
		r = load_root(c, &lc, path, err, errlen);
	} else if (config_error_type(&lc) == CONFIG_ERR_FILE_IO) {
		r = errno ? -errno : -EIO;
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(-r));
	} else {
		r = -EINVAL;
		snprintf(err, errlen, "%s:%d: %s",
			 config_error_file(&lc) ? config_error_file(&lc) : path,
			 config_error_line(&lc), config_error_text(&lc));
	}
	config_destroy(&lc);
	return r;
}

/* Append item to the comma-separated list *list (malloc'd). */
static int append_item(char **list, const char *item)
{
	size_t old = *list ? strlen(*list) : 0;
	char *n = realloc(*list, old + strlen(item) + 2);

	if (!n)
		return -ENOMEM;
	if (old)
		n[old++] = ',';
	strcpy(n + old, item);
	*list = n;
	return 0;
}

static int apply_opt(struct cfg *c, char *item, char **rest, char *err, size_t errlen)
{
	char *eq = strchr(item, '=');
	char *value = NULL;
	const struct cfg_opt *o;
	int r;

	if (eq) {
		*eq = '\0';
		value = eq + 1;
	}
	o = cfg_find(item);
	if (o)
		return cfg_set(c, item, value, err, errlen);
	if (eq)
		*eq = '=';
	r = append_item(rest, item);
	if (r < 0)
		snprintf(err, errlen, "out of memory");
	return r;
}

int cfg_parse_opts(struct cfg *c, const char *opts, char **rest, char *err, size_t errlen)
{
	CLEANUP_FREE char *copy = strdup(opts);
	char *save = NULL;
	int r = 0;

	*rest = calloc(1, 1);
	if (!copy || !*rest) {
		free(*rest);
		*rest = NULL;
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (char *item = strtok_r(copy, ",", &save); item && r == 0;
	     item = strtok_r(NULL, ",", &save))
		r = apply_opt(c, item, rest, err, errlen);
	if (r < 0) {
		free(*rest);
		*rest = NULL;
	}
	return r;
}

/* The placeholder for an option's value in --help and the man page. */
static const char *value_name(const struct cfg_opt *o)
{
	switch (o->type) {
	case CFG_BOOL:
		return "BOOL";
	case CFG_INT:
		return "N";
	case CFG_SIZE:
		return "SIZE";
	case CFG_STRING:
		return o->choices ? "WORD" : "TEXT";
	}
	return "?";
}

/* "(default: x, range a-b)" or "(default: x; one of: a, b)", with dash as the
 * range separator so the man page can use an en dash. */
static void fmt_details(char *buf, size_t len, const struct cfg_opt *o, const char *dash)
{
	char lo[32], hi[32], list[128];
	const char *def = o->def ? o->def : "unset";

	if (o->type == CFG_INT || o->type == CFG_SIZE) {
		fmt_bound(lo, sizeof(lo), o, o->min);
		fmt_bound(hi, sizeof(hi), o, o->max);
		snprintf(buf, len, "(default: %s, range %s%s%s)", def, lo, dash, hi);
	} else if (o->choices) {
		fmt_choices(list, sizeof(list), o, ", ");
		snprintf(buf, len, "(default: %s; one of: %s)", def, list);
	} else {
		snprintf(buf, len, "(default: %s)", def);
	}
}

/* Print text word-wrapped to DOC_WIDTH columns: its first line continues
 * the current one, now at column col; the others start with indent. */
#define DOC_WIDTH 79

static void print_wrapped(FILE *f, size_t col, const char *indent, const char *text)
{
	bool line_start = true;

	text += strspn(text, " ");
	while (*text) {
		size_t word = strcspn(text, " ");

		if (!line_start && col + 1 + word > DOC_WIDTH) {
			fprintf(f, "\n%s", indent);
			col = strlen(indent);
		} else if (!line_start) {
			fputc(' ', f);
			col++;
		}
		fwrite(text, 1, word, f);
		col += word;
		line_start = false;
		text += word;
		text += strspn(text, " ");
	}
	fputc('\n', f);
}

static void help_text(char *buf, size_t len, const struct cfg_opt *o, const char *dash)
{
	char details[256];

	fmt_details(details, sizeof(details), o, dash);
	snprintf(buf, len, "%s %s", o->help, details);
}

void cfg_print_help(FILE *f)
{
	char lhs[64], text[512], indent[64];
	int width = 0;

	for (size_t i = 0; i < cfg_nopts; i++) {
		int n = snprintf(lhs, sizeof(lhs), "-o %s=%s", cfg_opts[i].name,
				 value_name(&cfg_opts[i]));
		width = MAX(width, n);
	}
	snprintf(indent, sizeof(indent), "%*s", width + 4, "");
	for (size_t i = 0; i < cfg_nopts; i++) {
		const struct cfg_opt *o = &cfg_opts[i];

		snprintf(lhs, sizeof(lhs), "-o %s=%s", o->name, value_name(o));
		help_text(text, sizeof(text), o, "-");
		fprintf(f, "  %-*s  ", width, lhs);
		print_wrapped(f, (size_t)width + 4, indent, text);
	}
}

/* Print s as a libconfig string literal. */
static void print_quoted(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

static void print_sample_value(FILE *f, const struct cfg_opt *o)
{
	if (o->type == CFG_INT || o->type == CFG_BOOL)
		fputs(o->def, f);
	else
		print_quoted(f, o->def);
}

void cfg_print_sample(FILE *f)
{
	char text[512];

	fputs("# zerofs-fuse.conf: configuration of zerofs-fuse (libconfig syntax).\n"
	      "#\n"
	      "# Every setting is listed with its default value.  Sizes are bytes, or a\n"
	      "# string with a K, M, G or T suffix (powers of 1024).  Any setting can also\n"
	      "# be given as a mount option (-o name=value), which overrides this file.\n"
	      "# This file is generated from the option table: see zerofs-fuse(8).\n",
	      f);
	for (size_t i = 0; i < cfg_nopts; i++) {
		const struct cfg_opt *o = &cfg_opts[i];

		help_text(text, sizeof(text), o, " to ");
		fputs("\n# ", f);
		print_wrapped(f, 2, "# ", text);
		if (!o->def) {
			fprintf(f, "#%s = \"\";\n", o->name);
			continue;
		}
		fprintf(f, "%s = ", o->name);
		print_sample_value(f, o);
		fputs(";\n", f);
	}
}

/* Stands for the en dash of ranges until roff_escape writes it as roff. */
#define MAN_DASH '\x01'

/* Escape text for roff: backslashes, the range dash, and a dot or quote at
 * the start of a word, which could become the start of an output line where
 * roff would take it for a request. */
static void roff_escape(char *out, size_t len, const char *s)
{
	size_t o = 0;

	for (const char *p = s; *p && o + 5 < len; p++) {
		if ((p == s || p[-1] == ' ') && (*p == '.' || *p == '\''))
			o += (size_t)snprintf(out + o, len - o, "\\&");
		if (*p == '\\')
			o += (size_t)snprintf(out + o, len - o, "\\e");
		else if (*p == MAN_DASH)
			o += (size_t)snprintf(out + o, len - o, "\\(en");
		else
			out[o++] = *p;
	}
	out[o] = '\0';
}

void cfg_print_man(FILE *f)
{
	static const char dash[] = { MAN_DASH, '\0' };
	char text[512], roff[1024];

	for (size_t i = 0; i < cfg_nopts; i++) {
		const struct cfg_opt *o = &cfg_opts[i];

		fprintf(f, ".TP\n.B %s = \\fI%s\\fR\n", o->name, value_name(o));
		help_text(text, sizeof(text), o, dash);
		roff_escape(roff, sizeof(roff), text);
		print_wrapped(f, 0, "", roff);
	}
}

/* A default as written in a libconfig file: 5000, "8M", true; or "unset". */
static void man_conf_value(char *buf, size_t len, const struct cfg_opt *o)
{
	if (!o->def)
		snprintf(buf, len, "unset");
	else if (o->type == CFG_INT || o->type == CFG_BOOL)
		snprintf(buf, len, "%s", o->def);
	else
		snprintf(buf, len, "\"%s\"", o->def);
}

void cfg_print_conf_man(FILE *f)
{
	static const char dash[] = { MAN_DASH, '\0' };
	char lo[32], hi[32], list[128], def[160], text[1024], roff[2048];

	for (size_t i = 0; i < cfg_nopts; i++) {
		const struct cfg_opt *o = &cfg_opts[i];
		int n;

		fprintf(f, ".TP\n.B %s\n", o->name);
		/* The help is a sentence without its capital and full stop. */
		snprintf(text, sizeof(text), "%s.", o->help);
		text[0] = (char)toupper((unsigned char)text[0]);
		roff_escape(roff, sizeof(roff), text);
		print_wrapped(f, 0, "", roff);

		fprintf(f, "Type: %s.\n", type_name(o));
		man_conf_value(def, sizeof(def), o);
		n = snprintf(text, sizeof(text), "Default: %s", def);
		if (o->type == CFG_INT || o->type == CFG_SIZE) {
			fmt_bound(lo, sizeof(lo), o, o->min);
			fmt_bound(hi, sizeof(hi), o, o->max);
			n += snprintf(text + n, sizeof(text) - (size_t)n, "; range %s%s%s", lo,
				      dash, hi);
		} else if (o->choices) {
			fmt_choices(list, sizeof(list), o, ", ");
			n += snprintf(text + n, sizeof(text) - (size_t)n, "; one of: %s", list);
		}
		snprintf(text + n, sizeof(text) - (size_t)n, ".");
		roff_escape(roff, sizeof(roff), text);
		print_wrapped(f, 0, "", roff);
	}
}
