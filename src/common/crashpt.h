/* crashpt.h: named crash points for the crash tests.
 *
 * CRASHPT("name") does nothing unless the environment variable
 * ZEROFS_CRASH_AT names that point when the process starts:
 *
 *   ZEROFS_CRASH_AT=barrier.before_log      crash there the first time
 *   ZEROFS_CRASH_AT=barrier.before_log:3    crash there the third time
 *   ZEROFS_CRASH_AT=barrier.before_log:1:stop   SIGSTOP instead: the
 *                                           process freezes there until
 *                                           SIGCONT (the fencing tests)
 *
 * Crashing means SIGKILL sent to the whole process at once, the same as
 * "kill -9" from outside at that moment: nothing is flushed, no handler
 * runs.  A line is logged first, so a test can tell the point was reached.
 * The points (their names are part of the test interface, see
 * zerofs-fuse(8), ENVIRONMENT):
 *
 *   barrier.before_log   segments of the barrier stored, its index log not
 *   barrier.after_log    index log stored, the checkpoint (if due) not
 *   ckpt.after_put       checkpoint stored, the objects it replaces kept
 *   ckpt.mid_prune       one object the checkpoint replaces deleted
 *   gc.after_unlink      dead segments dropped from the index, not durable
 *   gc.before_delete     dropping durable, segment objects not deleted
 *   gc.mid_delete        one dead segment object deleted
 *   gc.after_relocate    live blocks copied out of sparse segments, the
 *                        barrier that makes the copies durable not run */
#ifndef ZEROFS_CRASHPT_H
#define ZEROFS_CRASHPT_H

extern int crashpt_armed;

void crashpt_init(void);
void crashpt_hit(const char *name);

#define CRASHPT(name)                                                                              \
	do {                                                                                       \
		if (crashpt_armed)                                                                 \
			crashpt_hit(name);                                                         \
	} while (0)

#endif
