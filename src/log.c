/* log.c: leveled, one-line log messages to stderr (with a level prefix) or to
 * syslog.  "%m" is expanded here from the errno saved on entry, so it works
 * with any printf and is not disturbed by what the formatting itself does to
 * errno.  A message is written with a single call, so lines of concurrent
 * threads never interleave. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "log.h"

#define LOG_LINE_MAX 2048

static const char *log_ident = "zerofs-fuse";
static int log_to_syslog;
static int log_max_level = LOG_INFO;

void log_init(const char *ident, int use_syslog, int max_level)
{
	if (ident)
		log_ident = ident;
	log_to_syslog = use_syslog;
	log_set_level(max_level);
	if (use_syslog)
		openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void log_set_level(int max_level)
{
	__atomic_store_n(&log_max_level, max_level, __ATOMIC_RELAXED);
}

static const char *level_name(int level)
{
	switch (level) {
	case LOG_EMERG:
	case LOG_ALERT:
	case LOG_CRIT:
	case LOG_ERR:
		return "error";
	case LOG_WARNING:
		return "warning";
	case LOG_NOTICE:
	case LOG_INFO:
		return "info";
	default:
		return "debug";
	}
}

/* Copy fmt to out with every "%m" replaced by the text of err, with any '%'
 * in that text doubled so that it is printed literally.  "%%" is copied as is
 * so that "%%m" stays a literal "%m". */
static void expand_m(char *out, size_t outlen, const char *fmt, int err)
{
	char ebuf[128];
	const char *etext = strerror_r(err, ebuf, sizeof(ebuf));
	size_t o = 0;

	for (const char *p = fmt; *p && o + 1 < outlen; p++) {
		if (p[0] == '%' && p[1] == 'm') {
			for (const char *e = etext; *e && o + 2 < outlen; e++) {
				if (*e == '%')
					out[o++] = '%';
				out[o++] = *e;
			}
			p++;
			continue;
		}
		if (p[0] == '%' && p[1] == '%' && o + 2 < outlen) {
			out[o++] = *p++;
			out[o++] = *p;
			continue;
		}
		out[o++] = *p;
	}
	out[o] = '\0';
}

/* A log record is one line: newlines inside it become spaces and a trailing
 * one is dropped. */
static void one_line(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
	for (char *p = s; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

void log_msg(int level, const char *fmt, ...)
{
	int saved_errno = errno;
	char xfmt[LOG_LINE_MAX];
	char msg[LOG_LINE_MAX];
	va_list ap;

	if (level > __atomic_load_n(&log_max_level, __ATOMIC_RELAXED))
		return;

	expand_m(xfmt, sizeof(xfmt), fmt, saved_errno);
	va_start(ap, fmt);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	vsnprintf(msg, sizeof(msg), xfmt, ap);
#pragma GCC diagnostic pop
	va_end(ap);
	one_line(msg);

	if (log_to_syslog)
		syslog(level, "%s", msg);
	else
		fprintf(stderr, "%s: %s: %s\n", log_ident, level_name(level), msg);
	errno = saved_errno;
}
