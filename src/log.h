/* log.h: the daemon's one logging interface: leveled messages to stderr
 * (foreground) or syslog (daemon), one line each.
 *
 * Locking: thread-safe; log_init must run before other threads start. */
#ifndef ZEROFS_LOG_H
#define ZEROFS_LOG_H

#include <syslog.h>

/* level is a syslog level (LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG). */
void log_init(const char *ident, int use_syslog, int max_level);
void log_set_level(int max_level);
/* Message at level; "%m" works as in syslog (errno at the call). */
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
