#!/usr/bin/env bash
# fstab: mount(8) runs the mount.zerofs-fuse helper for a line such as
#   CONFIG  MOUNTPOINT  zerofs-fuse  _netdev,allow_other  0 0
# and mount, mount -a and umount work; the daemon exits 0 after umount.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires mount umount

t=$(mktemp -d /tmp/zerofs-fstab.XXXXXX)
cleanup_fn rm -rf "$t"
M=$t/mnt
mkdir -p "$M"

# mount(8) looks for helpers in /sbin only: put ours there for the test,
# keeping whatever was installed before.
helper=/sbin/mount.zerofs-fuse
if [ -e "$helper" ]; then
	cp -a "$helper" "$t/helper.saved"
	cleanup_fn cp -a "$t/helper.saved" "$helper"
else
	cleanup_fn rm -f "$helper"
fi
install -m 755 "$abs_top_srcdir/contrib/mount.zerofs-fuse" "$helper"
export ZEROFS_FUSE="$ZEROFS"

echo "$ZEROFS_PASSWORD" >"$t/pw"
chmod 600 "$t/pw"
cat >"$t/zerofs.conf" <<CONF
store = "file://$t/store";
cache_dir = "$t/cache";
password_file = "$t/pw";
kdf = "min";
barrier_interval_ms = 1000;
CONF
echo "$t/zerofs.conf $M zerofs-fuse _netdev,nofail,allow_other 0 0" >"$t/fstab"

daemon_gone()
{
	local i
	for ((i = 0; i < 300; i++)); do
		pgrep -f "zerofs-fuse .*$M\$" >/dev/null || return 0
		sleep 0.1
	done
	fail "the daemon of $M did not exit after umount"
}
cleanup_fn fusermount3 -uz "$M"

mount -T "$t/fstab" "$M"
mountpoint -q "$M" || fail "mount MOUNTPOINT did not mount"
grep -q " $M fuse.zerofs-fuse " /proc/mounts || fail "not listed as fuse.zerofs-fuse in /proc/mounts"
grep " $M " /proc/mounts | grep -q allow_other || fail "allow_other was not passed on"
echo fstab >"$M/file"
umount "$M"
daemon_gone
mountpoint -q "$M" && fail "still mounted after umount"

mount -a -T "$t/fstab"
mountpoint -q "$M" || fail "mount -a did not mount"
assert_eq fstab "$(cat "$M/file")" "file after mount -a"
umount "$M"
daemon_gone

# A store URL as the first field, with options on the command line.
mount -t zerofs-fuse -o "cache_dir=$t/cache,password_file=$t/pw,kdf=min" "file://$t/store" "$M"
assert_eq fstab "$(cat "$M/file")" "file after mount -t zerofs-fuse URL"
umount "$M"
daemon_gone
echo "t-fstab: ok"
