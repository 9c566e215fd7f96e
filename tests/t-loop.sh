#!/usr/bin/env bash
# Loop devices on files in the mount, with --direct-io off and on, carrying
# ext4 and xfs: mkfs, mount, write, sync, umount, detach, re-attach, fsck
# clean, data identical.  Then the barrier: sync inside the loop filesystem
# must reach the daemon as fsync, so after kill -9 of zerofs-fuse and a
# remount without its cache, the synced files are there and fsck is clean.
#
# Teardown order (the cleanup below and every step here): unmount the inner
# filesystem, detach the loop device, only then unmount zerofs-fuse.  The
# other way round the loop device keeps the FUSE file open over a mount that
# is going away, and the inner filesystem's writeback has nowhere to go.
# The daemon itself must never be the one to wait for that writeback: the
# kernel may reclaim memory by writing dirty inner-filesystem pages through
# the loop device into FUSE, i.e. into this daemon, so the daemon marks
# itself PR_SET_IO_FLUSHER (its allocations do not recurse into I/O reclaim).
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires losetup mkfs.ext4 e2fsck mkfs.xfs xfs_repair md5sum
[ -e /dev/loop-control ] || { echo "$0: no loop devices: test skipped"; exit 77; }

t=$(mktemp -d /tmp/zerofs-loop.XXXXXX)
cleanup_fn rm -rf "$t"
M=$t/mnt
S=$t/store
C=$t/cache
IN=$t/inner
mkdir -p "$IN"
OPTS="nbd_listen="

# Inner filesystem and loop devices first, whatever state the test is in.
teardown_inner()
{
	local dev
	if ! { umount "$IN" 2>/dev/null || umount -l "$IN" 2>/dev/null; }; then :; fi
	for dev in $(losetup -j "$M/.nbd/$1" -O NAME -n 2>/dev/null); do
		if ! { losetup -d "$dev" 2>/dev/null; }; then :; fi
	done
}
cleanup_loops()
{
	local dev
	if ! { umount "$IN" 2>/dev/null || umount -l "$IN" 2>/dev/null; }; then :; fi
	loop_detach_all
}

zerofs_mount "$S" "$C" "$M" "$OPTS"
cleanup_fn cleanup_loops # registered after the mount: runs before its cleanup

attach()
{
	local dev
	dev=$(loop_attach "$M/.nbd/$1" --direct-io="$2") || fail "losetup $1 failed"
	echo "$dev"
}

mkfs_of() { case $1 in ext4) mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$2" ;; xfs) mkfs.xfs -q -f "$2" ;; esac; }
fsck_of() { case $1 in ext4) e2fsck -fn "$2" ;; xfs) xfs_repair -n "$2" ;; esac; }

write_files()
{
	head -c 20M /dev/urandom >"$IN/big"
	mkdir -p "$IN/d"
	for i in $(seq 1 50); do echo "file $i $RANDOM" >"$IN/d/f$i"; done
	(cd "$IN" && find . -type f -print0 | sort -z | xargs -0 md5sum) >"$t/sums"
}

check_files()
{
	(cd "$IN" && md5sum --quiet -c "$t/sums") || fail "$1: data differs"
}

for fs in ext4 xfs; do
	for dio in off on; do
		img="$fs-dio-$dio.img"
		truncate -s 512M "$M/.nbd/$img"
		dev=$(attach "$img" "$dio")
		echo "$fs on $dev, direct-io=$dio (loop dio: $(cat /sys/block/${dev#/dev/}/loop/dio))"
		mkfs_of "$fs" "$dev" || fail "mkfs.$fs on $dev failed"
		mount "$dev" "$IN" || fail "mount of $fs failed"
		write_files
		sync
		umount "$IN"
		losetup -d "$dev"
		dev=$(attach "$img" "$dio")
		fsck_of "$fs" "$dev" >"$t/fsck.out" 2>&1 || { cat "$t/fsck.out"; fail "$fs ($dio) not clean"; }
		mount "$dev" "$IN"
		check_files "$fs direct-io=$dio after re-attach"
		umount "$IN"
		losetup -d "$dev"
	done
done

# The loop's flush is a barrier: sync inside ext4 and xfs, then kill -9.
for fs in ext4 xfs; do
	img="crash-$fs.img"
	truncate -s 512M "$M/.nbd/$img"
	dev=$(attach "$img" on)
	mkfs_of "$fs" "$dev"
	mount "$dev" "$IN"
	write_files
	sync -f "$IN/big"
	cp "$t/sums" "$t/sums-$fs"
	# Not synced: may be lost, must not break anything.
	head -c 5M /dev/urandom >"$IN/unsynced"
	zerofs_kill9 "$M"
	teardown_inner "$img"
	rm -rf "$C"
	zerofs_mount "$S" "$C" "$M" "$OPTS"
	dev=$(attach "$img" on)
	# The crash left the journal/log to replay: mount once, then check.
	mount "$dev" "$IN" || fail "$fs after kill -9: mount failed"
	cp "$t/sums-$fs" "$t/sums"
	check_files "$fs after kill -9 of zerofs-fuse"
	umount "$IN"
	fsck_of "$fs" "$dev" >"$t/fsck.out" 2>&1 || { cat "$t/fsck.out"; fail "$fs not clean after kill -9"; }
	losetup -d "$dev"
done

zerofs_umount "$M"
echo "t-loop: ok"
