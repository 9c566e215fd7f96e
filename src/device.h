/* device.h: the "device" command: create, list, resize and remove the device
 * files of a mounted zerofs-fuse filesystem (the regular files of its .nbd/
 * directory, which the NBD server exports and loop devices attach to).
 *
 * It runs outside the daemon and uses ordinary system calls on the mount, so
 * a device file made here is the same as one made with truncate(1) in .nbd/.
 * Every function prints one message to stderr on failure and returns a
 * negative errno.
 *
 * Locking: none; nothing here keeps state. */
#ifndef ZEROFS_DEVICE_H
#define ZEROFS_DEVICE_H

#include <stdint.h>
#include <stdio.h>

/* Parse a size: decimal bytes with an optional K, M, G or T suffix (powers
 * of 1024, either case).  0, -EINVAL (not a size, or zero) or -ERANGE. */
int dev_parse_size(const char *s, uint64_t *out);

/* Make the sparse device file MOUNTPOINT/.nbd/NAME of size bytes and fsync
 * it.  -EEXIST if it exists. */
int dev_create(const char *mountpoint, const char *name, uint64_t size);

/* Print one line per device file, sorted by name: name, size and allocated
 * bytes (the data ranges SEEK_DATA/SEEK_HOLE report). */
int dev_list(const char *mountpoint, FILE *out);

/* Set the size of device NAME and fsync it.  A size below the current one
 * is refused (-EINVAL) unless shrink is set. */
int dev_resize(const char *mountpoint, const char *name, uint64_t size, int shrink);

/* Remove device NAME.  A connected NBD client or an attached loop device
 * keeps its open file until it lets go. */
int dev_remove(const char *mountpoint, const char *name);

/* The command line: argv[0] is "device", argv[1] the action.  Returns the
 * exit status. */
int dev_main(int argc, char **argv);

#endif
