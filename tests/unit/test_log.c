/* test_log.c: unit tests of src/log.c: the level prefix and filter, "%m"
 * expansion from the errno at the call, one line per message, and errno left
 * as it was. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "log.h"

static char path[] = "/tmp/test_log.XXXXXX";

/* Send stderr to a temporary file, read back by captured(). */
static void setup(void)
{
	int fd = mkstemp(path);

	cr_assert(fd >= 0);
	cr_assert(dup2(fd, STDERR_FILENO) >= 0);
	close(fd);
	log_init("t", 0, LOG_INFO);
}

static void teardown(void)
{
	unlink(path);
}

TestSuite(log, .init = setup, .fini = teardown);

static char *captured(void)
{
	static char buf[4096];
	FILE *f = fopen(path, "r");
	size_t n;

	cr_assert_not_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

Test(log, prefix_and_level)
{
	log_error("e%d", 1);
	log_warn("w");
	log_info("i");
	log_debug("hidden");
	cr_assert_str_eq(captured(), "t: error: e1\nt: warning: w\nt: info: i\n");
	log_set_level(LOG_DEBUG);
	log_debug("shown");
	cr_assert(strstr(captured(), "t: debug: shown\n"));
}

Test(log, percent_m)
{
	errno = ENOENT;
	log_error("open %s: %m (%d)", "x", 7);
	cr_assert_eq(errno, ENOENT, "logging must not change errno");
	errno = EACCES;
	log_error("100%% sure: %%m is literal, %m is not");
	cr_assert_str_eq(captured(),
			 "t: error: open x: No such file or directory (7)\n"
			 "t: error: 100% sure: %m is literal, Permission denied is not\n");
}

Test(log, one_line)
{
	log_info("a\nb\n");
	cr_assert_str_eq(captured(), "t: info: a b\n");
}
