#!/usr/bin/env bash
# setup.sh: on a fresh Debian 12 machine, install the build dependencies,
# build and install zerofs-fuse, and mount the embedded local-directory store
# on /mnt/zerofs.  Run as root: sudo ./setup.sh
#
# The password is taken from $ZEROFS_PASSWORD when set (sudo drops it unless
# given as: sudo ZEROFS_PASSWORD=... ./setup.sh); otherwise zerofs-fuse asks
# for it on the terminal.
set -euo pipefail

store=/var/lib/zerofs-fuse/store
cache=/var/cache/zerofs-fuse
mnt=/mnt/zerofs

cd "$(dirname "$0")"
tests/deps.sh
# Build out of tree in build/, as tests/run-all does (automake refuses an
# out-of-tree build once the source directory is configured in place).
if [ -f config.status ]; then
	make distclean
fi
autoreconf -fi
mkdir -p build
(cd build && ../configure && make -j"$(nproc)" && make install)

mkdir -p "$store" "$cache" "$mnt"
if mountpoint -q "$mnt"; then
	echo "$mnt is already mounted"
	exit 0
fi
zerofs-fuse -o "store=file://$store,cache_dir=$cache" "$mnt"
echo "zerofs-fuse is mounted on $mnt; unmount with: fusermount3 -u $mnt"
