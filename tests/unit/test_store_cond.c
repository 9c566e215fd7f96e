/* test_store_cond.c: unit tests for conditional puts and etags of the
 * directory store, and for the fault-injecting wrapper (store_fault.c). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* nftw */
#endif
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"

static char root[64];
static char ctl[128];
static struct store *st;

static void setup(void)
{
	strcpy(root, "/tmp/zerofs-cond-XXXXXX");
	cr_assert_not_null(mkdtemp(root));
	snprintf(ctl, sizeof(ctl), "%s.ctl", root);
	st = store_dir_open(root, 0);
	cr_assert_not_null(st);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void teardown(void)
{
	store_close(st);
	nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	unlink(ctl);
}

static void write_ctl(const char *text)
{
	FILE *f = fopen(ctl, "w");

	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	usleep(150 * 1000); /* the wrapper re-reads at most every 100 ms */
}

TestSuite(cond, .init = setup, .fini = teardown);

Test(cond, create_only_if_absent)
{
	char e1[STORE_ETAG_MAX], e2[STORE_ETAG_MAX];

	cr_assert_eq(store_put_cond(st, "lease", "one", 3, NULL, e1), 0);
	cr_assert_eq(store_put_cond(st, "lease", "two", 3, NULL, e2), -EEXIST);
}

Test(cond, if_match_replaces_only_the_version_read)
{
	char e1[STORE_ETAG_MAX], e2[STORE_ETAG_MAX], e3[STORE_ETAG_MAX];
	void *data;
	size_t len;

	cr_assert_eq(store_put_cond(st, "lease", "one", 3, NULL, e1), 0);
	cr_assert_eq(store_get_etag(st, "lease", &data, &len, e2), 0);
	cr_assert_str_eq(e1, e2);
	free(data);
	cr_assert_eq(store_put_cond(st, "lease", "two", 3, "not-the-etag", e3), -EEXIST);
	cr_assert_eq(store_put_cond(st, "lease", "two", 3, e1, e2), 0);
	cr_assert_str_neq(e1, e2);
	/* The old etag no longer matches. */
	cr_assert_eq(store_put_cond(st, "lease", "three", 5, e1, e3), -EEXIST);
	cr_assert_eq(store_get_all(st, "lease", &data, &len), 0);
	cr_assert_eq(len, 3);
	cr_assert_eq(memcmp(data, "two", 3), 0);
	free(data);
	cr_assert_eq(store_put_cond(st, "absent", "x", 1, e2, e3), -ENOENT);
}

Test(cond, fault_wrapper_follows_its_control_file)
{
	char etag[STORE_ETAG_MAX];
	void *data;
	size_t len;
	struct store *f;

	write_ctl("");
	f = store_fault_open(st, ctl);
	st = f;
	cr_assert_not_null(f);
	cr_assert_eq(store_put(f, "a", "x", 1, 0), 0);
	write_ctl("outage # the store is down\n");
	cr_assert_eq(store_put(f, "b", "x", 1, 0), -EIO);
	cr_assert_eq(store_get_all(f, "a", &data, &len), -EIO);
	write_ctl("fail=100%");
	cr_assert_eq(store_put(f, "b", "x", 1, 0), -EIO);
	cr_assert_eq(store_stat(f, "b", &(uint64_t){ 0 }), -EIO);
	write_ctl("reset=100%, bogus=1");
	/* Executed, but the answer is lost. */
	cr_assert_eq(store_put(f, "b", "x", 1, 0), -EIO);
	cr_assert_eq(store_get_etag(f, "a", &data, &len, etag), -EIO);
	write_ctl("\n");
	cr_assert_eq(store_stat(f, "b", &(uint64_t){ 0 }), 0);
	write_ctl("delay=200ms");
	cr_assert_eq(store_put_cond(f, "c", "x", 1, NULL, etag), 0);
}
