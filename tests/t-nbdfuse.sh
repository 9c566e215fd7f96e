#!/usr/bin/env bash
# A kernel filesystem on an NBD export, with no nbd module: nbdfuse turns the
# export into a file, losetup turns that file into a block device, ext4 goes
# on top.  mkfs, mount, write, sync, umount, detach; then fsck is clean and
# the data is identical when read through a second path: the export's file
# read through the zerofs-fuse mount itself (fsck on it, a read-only loop
# device over it, and a byte comparison with what nbdfuse serves).
#
# Stack and teardown order, top first (the cleanup below follows it):
#   ext4 on $IN      -> umount it
#   loop device      -> losetup -d
#   nbdfuse on $NF   -> fusermount3 -u, wait for nbdfuse to exit
#   zerofs-fuse $M   -> unmount last (the NBD server is a thread of it)
# Taken the other way round, a layer's writeback has nowhere to go.  Both
# nbdfuse and zerofs-fuse are user-space daemons under a loop device: the
# kernel may reclaim memory by writing ext4's dirty pages through them, so
# nbdfuse(1) warns that loop mounting "may sometimes deadlock".  zerofs-fuse
# marks itself PR_SET_IO_FLUSHER; nbdfuse does not, which is one more reason
# this stack is for tests and tools, and a loop device directly on the file in
# .nbd/ (tests/t-loop.sh) for real use.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires nbdfuse losetup mkfs.ext4 e2fsck md5sum cmp
[ -e /dev/loop-control ] || { echo "$0: no loop devices: test skipped"; exit 77; }

t=$(mktemp -d /tmp/zerofs-nbdfuse.XXXXXX)
cleanup_fn rm -rf "$t"
M=$t/mnt
S=$t/store
C=$t/cache
NF=$t/nbdfuse
IN=$t/inner
mkdir -p "$NF" "$IN"
port=$(pick_port)
zerofs_mount "$S" "$C" "$M" "nbd_listen=127.0.0.1:$port"

nbdfuse_pid=
teardown()
{
	local dev
	if ! { umount "$IN" 2>/dev/null || umount -l "$IN" 2>/dev/null; }; then :; fi
	for dev in $(losetup -l -n -O NAME,BACK-FILE |
		awk -v t="$t" 'index($2, t) == 1 { print $1 }'); do
		if ! { losetup -d "$dev" 2>/dev/null; }; then :; fi
	done
	if [ -n "$nbdfuse_pid" ]; then
		if ! { fusermount3 -u "$NF" 2>/dev/null || fusermount3 -uz "$NF" 2>/dev/null; }; then :; fi
		if ! { kill "$nbdfuse_pid" 2>/dev/null; }; then :; fi
	fi
}
cleanup_fn teardown # registered after the mount: runs before its cleanup

"$ZEROFS" device create -m "$M" disk 256M
nbdfuse -P "$t/nbdfuse.pid" "$NF/disk" "nbd://127.0.0.1:$port/disk" >"$t/nbdfuse.log" 2>&1 &
nbdfuse_pid=$!
for ((i = 0; i < 100; i++)); do
	[ -s "$t/nbdfuse.pid" ] && break
	_alive "$nbdfuse_pid" || { cat "$t/nbdfuse.log"; fail "nbdfuse exited"; }
	sleep 0.1
done
[ -s "$t/nbdfuse.pid" ] || fail "nbdfuse did not start"
assert_eq 268435456 "$(stat -c %s "$NF/disk")" "size of the nbdfuse file"

dev=$(losetup -f --show "$NF/disk") || fail "losetup on the nbdfuse file failed"
echo "ext4 on $dev over nbdfuse over nbd://127.0.0.1:$port/disk"
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$dev" || fail "mkfs.ext4 failed"
mount "$dev" "$IN" || fail "mount of ext4 failed"
head -c 20M /dev/urandom >"$IN/big"
mkdir "$IN/d"
for i in $(seq 1 50); do echo "file $i $RANDOM" >"$IN/d/f$i"; done
(cd "$IN" && find . -type f -print0 | sort -z | xargs -0 md5sum) >"$t/sums"
sync
umount "$IN"
losetup -d "$dev"

# The second path: the same bytes through the zerofs-fuse mount.
cmp "$NF/disk" "$M/.nbd/disk" || fail "nbdfuse and the FUSE view of the export differ"
e2fsck -fn "$M/.nbd/disk" >"$t/fsck.out" 2>&1 || { cat "$t/fsck.out"; fail "ext4 not clean"; }
dev=$(losetup -f --show -r "$M/.nbd/disk") || fail "read-only losetup on the export failed"
mount -o ro,noload "$dev" "$IN" || fail "read-only mount through FUSE failed"
(cd "$IN" && md5sum --quiet -c "$t/sums") || fail "data differs through FUSE"
umount "$IN"
losetup -d "$dev"

# Teardown in order: nbdfuse, then zerofs-fuse.
fusermount3 -u "$NF" || fail "could not unmount nbdfuse"
wait "$nbdfuse_pid" || fail "nbdfuse exited with status $?"
nbdfuse_pid=
zerofs_umount "$M"
echo "t-nbdfuse: ok"
