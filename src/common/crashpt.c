/* crashpt.c: named crash points (crashpt.h). */
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/crashpt.h"
#include "log.h"

int crashpt_armed;

static char point[64];
static long countdown;
static int stop_only; /* SIGSTOP instead of SIGKILL */

void crashpt_init(void)
{
	const char *v = getenv("ZEROFS_CRASH_AT");
	if (!v || !*v)
		return;
	size_t n = strcspn(v, ":");
	if (n >= sizeof(point)) {
		log_warn("ZEROFS_CRASH_AT: point name too long; ignored");
		return;
	}
	memcpy(point, v, n);
	point[n] = '\0';
	char *end = (char *)v + n;
	countdown = *end == ':' ? strtol(end + 1, &end, 10) : 1;
	if (countdown < 1)
		countdown = 1;
	stop_only = strcmp(end, ":stop") == 0;
	crashpt_armed = 1;
	log_warn("crash point armed: %s (hit %ld, %s)", point, countdown,
		 stop_only ? "SIGSTOP" : "SIGKILL");
}

void crashpt_hit(const char *name)
{
	if (strcmp(name, point) != 0)
		return;
	if (__atomic_sub_fetch(&countdown, 1, __ATOMIC_SEQ_CST) != 0)
		return;
	if (stop_only) {
		log_warn("crash point %s reached: stopping the daemon (SIGSTOP)", name);
		/* To this thread (tgkill): it stops before its next instruction.
		 * Sent to the process, the signal may be taken by another thread
		 * while this one runs on and, say, stores the very log the test
		 * wants held back. */
		pthread_kill(pthread_self(), SIGSTOP);
		return;
	}
	log_warn("crash point %s reached: killing the daemon (SIGKILL)", name);
	pthread_kill(pthread_self(), SIGKILL);
	/* SIGKILL cannot be caught; this is never reached. */
	_exit(137);
}
