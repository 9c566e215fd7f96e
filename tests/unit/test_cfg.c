/* test_cfg.c: unit tests of the option table (src/cfg.c): defaults, values
 * from text, -o strings and libconfig files, precedence, and that the
 * committed sample config and man page are what the table generates. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "cfg.h"
#include "common/util.h"

#define MIB (INT64_C(1) << 20)
#define GIB (INT64_C(1) << 30)

static struct cfg c;
static char err[512];

static void setup(void)
{
	cr_assert_eq(cfg_init(&c), 0);
	err[0] = '\0';
}

static void teardown(void)
{
	cfg_free(&c);
}

TestSuite(cfg, .init = setup, .fini = teardown);

/* Write text to a new temporary file; returns its malloc'd path. */
static char *write_temp(const char *text)
{
	char *path = strdup("/tmp/test_cfg.XXXXXX");
	int fd = mkstemp(path);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;

	cr_assert_not_null(f, "mkstemp: %s", strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
	return path;
}

/* Load text as a config file; returns cfg_load_file's result, with the
 * temporary file's path in *path for messages. */
static int load_text(const char *text, char **path)
{
	int r;

	*path = write_temp(text);
	r = cfg_load_file(&c, *path, err, sizeof(err));
	unlink(*path);
	return r;
}

static char *read_whole(const char *path)
{
	FILE *f = fopen(path, "r");
	char *data = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&data, &len);
	char buf[4096];
	size_t n;

	cr_assert_not_null(f, "cannot read %s: %s", path, strerror(errno));
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, out);
	fclose(f);
	fclose(out);
	return data;
}

static char *generated(void (*print)(FILE *))
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	cr_assert_not_null(f);
	print(f);
	fclose(f);
	return buf;
}

Test(cfg, defaults)
{
	cr_assert_str_eq(c.store, "file:///var/lib/zerofs-fuse/store");
	cr_assert_str_eq(c.cache_dir, "/var/cache/zerofs-fuse");
	cr_assert_null(c.password_file);
	cr_assert_eq(c.barrier_interval_ms, 5000);
	cr_assert_eq(c.checkpoint_interval, 64);
	cr_assert_eq(c.segment_size, 8 * MIB);
	cr_assert_eq(c.cache_size, 256 * MIB);
	cr_assert_eq(c.dirty_limit, 256 * MIB);
	cr_assert_eq(c.threads, 0);
	cr_assert_eq(c.compress, 1);
	cr_assert_eq(c.allow_other, 0);
	cr_assert_str_eq(c.kdf, "interactive");
	cr_assert_str_eq(c.log_level, "info");
}

Test(cfg, table_is_consistent)
{
	for (size_t i = 0; i < cfg_nopts; i++) {
		const struct cfg_opt *o = &cfg_opts[i];

		cr_assert(o->help && *o->help, "%s has no help", o->name);
		cr_assert_eq(cfg_find(o->name), o, "%s is not unique", o->name);
		if (o->type == CFG_INT || o->type == CFG_SIZE)
			cr_assert_leq(o->min, o->max, "%s: empty range", o->name);
		if (o->type != CFG_STRING)
			cr_assert_not_null(o->def, "%s: no default", o->name);
	}
	cr_assert_null(cfg_find("nonesuch"));
}

Test(cfg, set_int)
{
	cr_assert_eq(cfg_set(&c, "threads", "16", err, sizeof(err)), 0);
	cr_assert_eq(c.threads, 16);
	cr_assert_eq(cfg_set(&c, "threads", "1", err, sizeof(err)), 0);
	cr_assert_eq(cfg_set(&c, "threads", "256", err, sizeof(err)), 0);
	cr_assert_eq(c.threads, 256);
	cr_assert_eq(cfg_set(&c, "barrier_interval_ms", "3600000", err, sizeof(err)), 0);
	cr_assert_eq(c.barrier_interval_ms, 3600000);
}

Test(cfg, int_errors)
{
	cr_assert_eq(cfg_set(&c, "threads", "-1", err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "threads") && strstr(err, "out of range 0 to 256"), "%s", err);
	cr_assert_eq(cfg_set(&c, "threads", "257", err, sizeof(err)), -EINVAL);
	cr_assert_eq(cfg_set(&c, "threads", "4x", err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "not an integer"), "%s", err);
	cr_assert_eq(cfg_set(&c, "threads", "99999999999999999999", err, sizeof(err)), -EINVAL);
	cr_assert_eq(cfg_set(&c, "barrier_interval_ms", "99", err, sizeof(err)), -EINVAL);
	cr_assert_eq(cfg_set(&c, "threads", "", err, sizeof(err)), -EINVAL);
	cr_assert_eq(c.threads, 0, "a rejected value must not change the setting");
}

Test(cfg, parse_size)
{
	int64_t v;

	cr_assert_eq(cfg_parse_size("0", &v), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(cfg_parse_size("4096", &v), 0);
	cr_assert_eq(v, 4096);
	cr_assert_eq(cfg_parse_size("1K", &v), 0);
	cr_assert_eq(v, 1024);
	cr_assert_eq(cfg_parse_size("3k", &v), 0);
	cr_assert_eq(v, 3072);
	cr_assert_eq(cfg_parse_size("8M", &v), 0);
	cr_assert_eq(v, 8 * MIB);
	cr_assert_eq(cfg_parse_size("2g", &v), 0);
	cr_assert_eq(v, 2 * GIB);
	cr_assert_eq(cfg_parse_size("1T", &v), 0);
	cr_assert_eq(v, 1024 * GIB);
	cr_assert_eq(cfg_parse_size("", &v), -EINVAL);
	cr_assert_eq(cfg_parse_size("M", &v), -EINVAL);
	cr_assert_eq(cfg_parse_size("-1", &v), -EINVAL);
	cr_assert_eq(cfg_parse_size(" 1", &v), -EINVAL);
	cr_assert_eq(cfg_parse_size("1.5G", &v), -EINVAL);
	cr_assert_eq(cfg_parse_size("8MB", &v), -EINVAL);
	cr_assert_eq(cfg_parse_size("8X", &v), -EINVAL);
	cr_assert_eq(cfg_parse_size("9000000T", &v), -EINVAL, "overflow must be caught");
}

Test(cfg, set_size)
{
	cr_assert_eq(cfg_set(&c, "segment_size", "1M", err, sizeof(err)), 0);
	cr_assert_eq(c.segment_size, MIB);
	cr_assert_eq(cfg_set(&c, "segment_size", "2097152", err, sizeof(err)), 0);
	cr_assert_eq(c.segment_size, 2 * MIB);
	cr_assert_eq(cfg_set(&c, "cache_size", "64G", err, sizeof(err)), 0);
	cr_assert_eq(c.cache_size, 64 * GIB);
	cr_assert_eq(cfg_set(&c, "segment_size", "1023K", err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "out of range 1M to 256M"), "%s", err);
	cr_assert_eq(cfg_set(&c, "cache_size", "1T", err, sizeof(err)), -EINVAL);
	cr_assert_eq(cfg_set(&c, "dirty_limit", "lots", err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "dirty_limit") && strstr(err, "not a size"), "%s", err);
}

Test(cfg, set_bool)
{
	static const char *const on[] = { "true", "yes", "on", "1", "TRUE", "Yes" };
	static const char *const off[] = { "false", "no", "off", "0", "FALSE", "Off" };

	for (size_t i = 0; i < ARRAY_SIZE(on); i++) {
		c.compress = 0;
		cr_assert_eq(cfg_set(&c, "compress", on[i], err, sizeof(err)), 0, "%s", on[i]);
		cr_assert_eq(c.compress, 1, "%s", on[i]);
		cr_assert_eq(cfg_set(&c, "compress", off[i], err, sizeof(err)), 0, "%s", off[i]);
		cr_assert_eq(c.compress, 0, "%s", off[i]);
	}
	cr_assert_eq(cfg_set(&c, "allow_other", NULL, err, sizeof(err)), 0);
	cr_assert_eq(c.allow_other, 1, "a boolean alone means true");
	cr_assert_eq(cfg_set(&c, "compress", "maybe", err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "compress") && strstr(err, "boolean"), "%s", err);
}

Test(cfg, set_string)
{
	cr_assert_eq(cfg_set(&c, "store", "/srv/zerofs", err, sizeof(err)), 0);
	cr_assert_str_eq(c.store, "/srv/zerofs");
	cr_assert_eq(cfg_set(&c, "password_file", "/etc/pw", err, sizeof(err)), 0);
	cr_assert_str_eq(c.password_file, "/etc/pw");
	cr_assert_eq(cfg_set(&c, "store", NULL, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "needs a value"), "%s", err);
	cr_assert_eq(cfg_set(&c, "cache_dir", "", err, sizeof(err)), -EINVAL);
}

Test(cfg, choices)
{
	cr_assert_eq(cfg_set(&c, "kdf", "min", err, sizeof(err)), 0);
	cr_assert_str_eq(c.kdf, "min");
	cr_assert_eq(cfg_set(&c, "kdf", "fast", err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "interactive, min"), "%s", err);
	cr_assert_str_eq(c.kdf, "min");
	cr_assert_eq(cfg_set(&c, "log_level", "debug", err, sizeof(err)), 0);
	cr_assert_eq(cfg_set(&c, "log_level", "warning", err, sizeof(err)), 0);
	cr_assert_eq(cfg_set(&c, "log_level", "error", err, sizeof(err)), 0);
	cr_assert_eq(cfg_set(&c, "log_level", "verbose", err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(c.log_level, "error");
}

Test(cfg, unknown_option)
{
	cr_assert_eq(cfg_set(&c, "nonesuch", "1", err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "unknown option 'nonesuch'"), "%s", err);
}

Test(cfg, parse_opts)
{
	char *rest;

	cr_assert_eq(cfg_parse_opts(&c,
				    "store=/srv/x,ro,compress=no,default_permissions,,threads=2,"
				    "allow_other,fsname=a=b",
				    &rest, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_str_eq(c.store, "/srv/x");
	cr_assert_eq(c.compress, 0);
	cr_assert_eq(c.threads, 2);
	cr_assert_eq(c.allow_other, 1);
	/* ro is a setting (a read-only replica); the mount adds it back for FUSE. */
	cr_assert_eq(c.ro, 1);
	cr_assert_str_eq(rest, "default_permissions,fsname=a=b");
	free(rest);
}

Test(cfg, parse_opts_nothing_left)
{
	char *rest;

	cr_assert_eq(cfg_parse_opts(&c, "kdf=min,log_level=debug", &rest, err, sizeof(err)), 0);
	cr_assert_str_eq(rest, "");
	free(rest);
	cr_assert_eq(cfg_parse_opts(&c, "", &rest, err, sizeof(err)), 0);
	cr_assert_str_eq(rest, "");
	free(rest);
}

Test(cfg, parse_opts_error)
{
	char *rest = (char *)"unchanged";

	cr_assert_eq(cfg_parse_opts(&c, "ro,threads=-1,rw", &rest, err, sizeof(err)), -EINVAL);
	cr_assert_null(rest);
	cr_assert(strstr(err, "threads"), "%s", err);
	cr_assert_eq(cfg_parse_opts(&c, "segment_size", &rest, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "needs a value"), "%s", err);
}

Test(cfg, file_values)
{
	CLEANUP_FREE char *path = NULL;

	cr_assert_eq(load_text("# comment\n"
			       "store = \"/srv/z\";\n"
			       "password_file = \"/etc/zpw\";\n"
			       "threads = 8;\n"
			       "segment_size = 2097152;\n"
			       "cache_size = \"1G\";\n"
			       "dirty_limit = 68719476736L;\n"
			       "compress = false;\n"
			       "kdf = \"min\";\n",
			       &path),
		     0, "%s", err);
	cr_assert_str_eq(c.store, "/srv/z");
	cr_assert_str_eq(c.password_file, "/etc/zpw");
	cr_assert_eq(c.threads, 8);
	cr_assert_eq(c.segment_size, 2 * MIB);
	cr_assert_eq(c.cache_size, GIB);
	cr_assert_eq(c.dirty_limit, 64 * GIB);
	cr_assert_eq(c.compress, 0);
	cr_assert_str_eq(c.kdf, "min");
}

/* err must name the file and the line, as "FILE:LINE: ...". */
static void assert_at(const char *path, int line, const char *what)
{
	char where[256];

	snprintf(where, sizeof(where), "%s:%d: ", path, line);
	cr_assert(strncmp(err, where, strlen(where)) == 0, "'%s' does not start with '%s'", err,
		  where);
	cr_assert(strstr(err, what), "'%s' does not say '%s'", err, what);
}

Test(cfg, file_unknown_key)
{
	CLEANUP_FREE char *path = NULL;

	cr_assert_eq(load_text("store = \"/a\";\n\nbogus = 1;\n", &path), -EINVAL);
	assert_at(path, 3, "unknown setting 'bogus'");
}

Test(cfg, file_wrong_type)
{
	CLEANUP_FREE char *path = NULL;
	CLEANUP_FREE char *path2 = NULL;
	CLEANUP_FREE char *path3 = NULL;
	CLEANUP_FREE char *path4 = NULL;

	cr_assert_eq(load_text("threads = \"four\";\n", &path), -EINVAL);
	assert_at(path, 1, "'threads' must be an integer");
	cr_assert_eq(load_text("threads = 2;\ncompress = 1;\n", &path2), -EINVAL);
	assert_at(path2, 2, "'compress' must be a boolean");
	cr_assert_eq(load_text("store = 5;\n", &path3), -EINVAL);
	assert_at(path3, 1, "'store' must be a string");
	cr_assert_eq(load_text("cache_size = 1.5;\n", &path4), -EINVAL);
	assert_at(path4, 1, "'cache_size' must be a size");
}

Test(cfg, file_bad_values)
{
	CLEANUP_FREE char *path = NULL;
	CLEANUP_FREE char *path2 = NULL;
	CLEANUP_FREE char *path3 = NULL;

	cr_assert_eq(load_text("\nthreads = 1000;\n", &path), -EINVAL);
	assert_at(path, 2, "out of range");
	cr_assert_eq(load_text("segment_size = \"8Q\";\n", &path2), -EINVAL);
	assert_at(path2, 1, "not a size");
	cr_assert_eq(load_text("log_level = \"loud\";\n", &path3), -EINVAL);
	assert_at(path3, 1, "not one of");
}

Test(cfg, file_syntax_error)
{
	CLEANUP_FREE char *path = NULL;

	cr_assert_eq(load_text("threads = 4;\nstore = \"unterminated;\n", &path), -EINVAL);
	cr_assert(strncmp(err, path, strlen(path)) == 0 && err[strlen(path)] == ':', "%s", err);
}

Test(cfg, file_missing)
{
	cr_assert_eq(cfg_load_file(&c, "/nonexistent/zerofs.conf", err, sizeof(err)), -ENOENT);
	cr_assert(strstr(err, "/nonexistent/zerofs.conf"), "%s", err);
}

Test(cfg, precedence)
{
	CLEANUP_FREE char *path = NULL;
	char *rest;

	cr_assert_eq(load_text("threads = 8;\nstore = \"/from/file\";\n", &path), 0, "%s", err);
	cr_assert_eq(c.threads, 8);
	cr_assert_eq(cfg_parse_opts(&c, "threads=16", &rest, err, sizeof(err)), 0);
	free(rest);
	cr_assert_eq(c.threads, 16, "-o overrides the file");
	cr_assert_str_eq(c.store, "/from/file", "the file overrides the default");
	cr_assert_eq(c.segment_size, 8 * MIB, "untouched settings keep their default");
}

Test(cfg, sample_loads_back)
{
	CLEANUP_FREE char *sample = generated(cfg_print_sample);
	CLEANUP_FREE char *path = NULL;
	struct cfg def;

	cr_assert_eq(cfg_set(&c, "threads", "99", err, sizeof(err)), 0);
	cr_assert_eq(cfg_set(&c, "store", "/elsewhere", err, sizeof(err)), 0);
	cr_assert_eq(cfg_set(&c, "compress", "no", err, sizeof(err)), 0);
	cr_assert_eq(load_text(sample, &path), 0, "%s", err);

	cr_assert_eq(cfg_init(&def), 0);
	for (size_t i = 0; i < cfg_nopts; i++) {
		const struct cfg_opt *o = &cfg_opts[i];
		const char *p = (const char *)&c + o->offset;
		const char *d = (const char *)&def + o->offset;

		cr_assert(strstr(sample, o->name), "%s missing from the sample", o->name);
		switch (o->type) {
		case CFG_STRING:
			cr_assert_str_eq(*(char *const *)p ? *(char *const *)p : "(null)",
					 *(char *const *)d ? *(char *const *)d : "(null)", "%s",
					 o->name);
			break;
		case CFG_BOOL:
			cr_assert_eq(*(const int *)p, *(const int *)d, "%s", o->name);
			break;
		default:
			cr_assert_eq(*(const int64_t *)p, *(const int64_t *)d, "%s", o->name);
		}
	}
	cfg_free(&def);
}

Test(cfg, help_lists_every_option)
{
	CLEANUP_FREE char *help = generated(cfg_print_help);
	char needle[64];

	for (size_t i = 0; i < cfg_nopts; i++) {
		snprintf(needle, sizeof(needle), "-o %s=", cfg_opts[i].name);
		cr_assert(strstr(help, needle), "%s missing from --help", cfg_opts[i].name);
	}
}

Test(cfg, committed_sample_is_current)
{
	CLEANUP_FREE char *want = generated(cfg_print_sample);
	CLEANUP_FREE char *have = read_whole(SRCDIR "/etc/zerofs-fuse.conf");

	cr_assert_str_eq(
		have, want,
		"etc/zerofs-fuse.conf differs from the option table: run make update-docs");
}

/* The committed page must be its template with the @CFG_OPTIONS@ line
 * replaced by what print generates from the table. */
static void check_man_page(const char *name, void (*print)(FILE *))
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/man/%s.in", SRCDIR, name);
	CLEANUP_FREE char *template = read_whole(path);
	snprintf(path, sizeof(path), "%s/man/%s", SRCDIR, name);
	CLEANUP_FREE char *have = read_whole(path);
	CLEANUP_FREE char *opts = generated(print);
	CLEANUP_FREE char *want = NULL;
	char *at = strstr(template, "\n@CFG_OPTIONS@\n");

	cr_assert_not_null(at, "man/%s.in has no @CFG_OPTIONS@ line", name);
	at[1] = '\0';
	cr_assert(asprintf(&want, "%s%s%s", template, opts, at + strlen("\n@CFG_OPTIONS@\n")) > 0);
	cr_assert_str_eq(have, want,
			 "man/%s differs from its template and the option table: "
			 "run make update-docs",
			 name);
}

Test(cfg, committed_man_page_is_current)
{
	check_man_page("zerofs-fuse.8", cfg_print_man);
}

Test(cfg, committed_conf_man_page_is_current)
{
	check_man_page("zerofs-fuse.conf.5", cfg_print_conf_man);
}
