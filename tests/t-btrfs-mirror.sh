#!/usr/bin/env bash
# The mirror setup on one machine: two zerofs-fuse instances (two stores,
# two mountpoints, no NBD listener), one device file each, a loop device
# (--direct-io=on) over each, btrfs raid1 (data and metadata) across the two
# loop devices.  mkfs, mount, write, sync, scrub clean.  Then one instance is
# killed (kill -9) after a sync with btrfs still mounted: the filesystem must
# stay readable and correct from the other mirror.  The instance is remounted
# (without its local cache: only the store), its loop device re-attached,
# btrfs mounted normally: data identical, a scrub repairs whatever the dead
# half missed, and a second scrub finds no errors.
#
# Teardown order (the cleanup below and every step here): unmount btrfs,
# detach the loop devices, only then unmount the zerofs-fuse instances.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires losetup mkfs.btrfs btrfs md5sum
[ -e /dev/loop-control ] || { echo "$0: no loop devices: test skipped"; exit 77; }
# Kernel modules cannot be loaded here: only a built-in btrfs will do.
if ! { modprobe btrfs 2>/dev/null; }; then :; fi
if ! grep -qw btrfs /proc/filesystems; then
	echo "$0: this kernel has no btrfs (built in or loadable): test skipped"
	exit 77
fi

t=$(mktemp -d /tmp/zerofs-btrfs.XXXXXX)
cleanup_fn rm -rf "$t"
IN=$t/inner
mkdir -p "$IN"
OPTS="nbd_listen="

teardown()
{
	local dev
	if ! { umount "$IN" 2>/dev/null || umount -l "$IN" 2>/dev/null; }; then :; fi
	loop_detach_all
	# Drop btrfs's record of the detached devices.
	if ! { btrfs device scan --forget >/dev/null 2>&1; }; then :; fi
}

for i in 1 2; do
	zerofs_mount "$t/store$i" "$t/cache$i" "$t/mnt$i" "$OPTS"
done
cleanup_fn teardown # registered after the mounts: runs before their cleanup

attach()
{
	loop_attach "$t/mnt$1/.nbd/disk" --direct-io=on || fail "losetup on mnt$1 failed"
}
mount_btrfs()
{
	mount -t btrfs -o "device=$1,device=$2" "$1" "$IN" || fail "mount of btrfs on $1 $2 failed"
}
scrub_clean()
{
	btrfs scrub start -B "$IN" >"$t/scrub.out" 2>&1 ||
		{ cat "$t/scrub.out"; fail "$1: scrub failed"; }
	grep -q 'no errors found' "$t/scrub.out" ||
		{ cat "$t/scrub.out"; fail "$1: scrub not clean"; }
}
check_files() { (cd "$IN" && md5sum --quiet -c "$t/sums") || fail "$1: data differs"; }

for i in 1 2; do
	"$ZEROFS" device create -m "$t/mnt$i" disk 512M
done
L1=$(attach 1)
L2=$(attach 2)
echo "btrfs raid1 on $L1 (mnt1) and $L2 (mnt2)"
mkfs.btrfs -q -f -d raid1 -m raid1 "$L1" "$L2" >"$t/mkfs.out" 2>&1 ||
	{ cat "$t/mkfs.out"; fail "mkfs.btrfs failed"; }
mount_btrfs "$L1" "$L2"
head -c 40M /dev/urandom >"$IN/big"
mkdir "$IN/d"
for i in $(seq 1 100); do echo "file $i $RANDOM" >"$IN/d/f$i"; done
(cd "$IN" && find . -type f -print0 | sort -z | xargs -0 md5sum) >"$t/sums"
sync
btrfs filesystem df "$IN" | grep -q '^Data, RAID1' || fail "data is not RAID1"
scrub_clean "after the first write"
umount "$IN"

# Kill instance 2 after a sync, with btrfs mounted: reads come from mirror 1.
mount_btrfs "$L1" "$L2"
head -c 8M /dev/urandom >"$IN/late"
(cd "$IN" && md5sum late) >>"$t/sums"
sync
zerofs_kill9 "$t/mnt2"
echo 3 >/proc/sys/vm/drop_caches
check_files "btrfs with instance 2 dead"
teardown

# Instance 2 back from its store alone; both halves re-attached.
rm -rf "$t/cache2"
zerofs_mount "$t/store2" "$t/cache2" "$t/mnt2" "$OPTS"
L1=$(attach 1)
L2=$(attach 2)
mount_btrfs "$L1" "$L2"
check_files "btrfs after instance 2 came back"
# The repairing scrub exits non-zero (3) if any error was uncorrectable.
btrfs scrub start -B "$IN" >"$t/scrub.out" 2>&1 ||
	{ cat "$t/scrub.out"; fail "repairing scrub failed"; }
echo "repairing scrub: $(grep -i 'error summary' "$t/scrub.out")"
scrub_clean "after the repairing scrub"
umount "$IN"
btrfs check --readonly "$L1" >"$t/check.out" 2>&1 ||
	{ cat "$t/check.out"; fail "btrfs check failed"; }
teardown

for i in 1 2; do
	zerofs_umount "$t/mnt$i"
done
echo "t-btrfs-mirror: ok"
