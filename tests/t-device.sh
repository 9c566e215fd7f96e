#!/usr/bin/env bash
# The "device" command: create a sparse device file in the mount's .nbd/,
# list it (size and allocated bytes), see it as an NBD export of that size
# with nbdinfo, grow it (a new connection sees the new size), refuse to
# shrink without --shrink, remove it; and its one-line errors (not a mount,
# a name with '/', an existing or a missing device, a bad size).
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires nbdinfo nbdcopy

t=$(mktemp -d /tmp/zerofs-device.XXXXXX)
cleanup_fn rm -rf "$t"
M=$t/mnt
S=$t/store
C=$t/cache
port=$(pick_port)
U=nbd://127.0.0.1:$port
zerofs_mount "$S" "$C" "$M" "nbd_listen=127.0.0.1:$port"

dev() { "$ZEROFS" device "$@"; }
# Field $2 (2: size, 3: allocated) of device $1 in "device list".
listed() { dev list -m "$M" | awk -v n="$1" -v f="$2" '$1 == n { print $f }'; }
# The command must fail with one line on stderr that matches $1.
fails()
{
	local want="$1"
	shift
	if dev "$@" 2>"$t/err"; then fail "device $* succeeded"; fi
	assert_eq 1 "$(wc -l <"$t/err")" "device $*: lines of error: $(cat "$t/err")"
	grep -q -- "$want" "$t/err" || fail "device $* said: $(cat "$t/err")"
}

# Whole outputs first: grep -q on a pipe would SIGPIPE the writer (pipefail).
help=$(dev --help)
grep -q 'zerofs-fuse device create -m MOUNTPOINT NAME SIZE' <<<"$help" || fail "device --help"
help=$("$ZEROFS" --help)
grep -q 'zerofs-fuse device' <<<"$help" || fail "--help does not mention device"

dev create -m "$M" disk1 64M
dev create disk2 1G -m "$M" # options may follow the arguments
assert_eq 67108864 "$(stat -c %s "$M/.nbd/disk1")" "size of the created file"
assert_eq 67108864 "$(listed disk1 2)" "listed size of disk1"
assert_eq 1073741824 "$(listed disk2 2)" "listed size of disk2"
assert_eq 0 "$(listed disk1 3)" "allocated bytes of a new device"
list=$(dev list -m "$M")
grep -q '^NAME  *SIZE  *ALLOCATED$' <<<"${list%%$'\n'*}" || fail "list header: $list"

# Written data shows as allocated; a directory in .nbd/ is not a device.
dd if=/dev/urandom of="$M/.nbd/disk1" bs=1M count=2 seek=4 conv=notrunc,fsync status=none
alloc=$(listed disk1 3)
{ [ "$alloc" -ge 2097152 ] && [ "$alloc" -lt 67108864 ]; } || fail "allocated after 2M written: $alloc"
mkdir "$M/.nbd/adir"
[ -z "$(listed adir 2)" ] || fail "a directory was listed as a device"

# The NBD server exports it at its size; a resize is seen by new connections.
assert_eq 67108864 "$(nbdinfo --size "$U/disk1")" "nbdinfo size of disk1"
dev resize -m "$M" disk1 128M
assert_eq 134217728 "$(listed disk1 2)" "listed size after the resize"
assert_eq 134217728 "$(nbdinfo --size "$U/disk1")" "nbdinfo size after the resize"
fails "use --shrink" resize -m "$M" disk1 1M
assert_eq 134217728 "$(listed disk1 2)" "size after a refused shrink"
dev resize -m "$M" --shrink disk1 8M
assert_eq 8388608 "$(nbdinfo --size "$U/disk1")" "nbdinfo size after --shrink"
cmp <(dd if="$M/.nbd/disk1" bs=1M skip=4 count=2 status=none) \
	<(nbdcopy "$U/disk1" - 2>/dev/null | dd bs=1M skip=4 count=2 iflag=fullblock status=none) ||
	fail "data below the new size"

# Remove: gone from the list, from the directory and from the server.
dev remove -m "$M" disk2
[ -z "$(listed disk2 2)" ] || fail "disk2 still listed after remove"
[ ! -e "$M/.nbd/disk2" ] || fail "disk2 still in .nbd after remove"
nbdinfo "$U/disk2" >/dev/null 2>&1 && fail "a removed device was exported"

# Errors, one line each.
fails "is not a mounted zerofs-fuse filesystem" create -m "$t" x 1M
fails "is not a mounted zerofs-fuse filesystem" list -m "$t/nothing"
fails "invalid device name 'a/b': it contains '/'" create -m "$M" a/b 1M
fails "invalid device name '..'" remove -m "$M" ..
fails "device disk1 already exists" create -m "$M" disk1 1M
fails "no device nope in" resize -m "$M" nope 1M
fails "no device nope in" remove -m "$M" nope
fails "adir is not a device file" remove -m "$M" adir
fails "invalid size '12X'" create -m "$M" x 12X
fails "invalid size '0'" create -m "$M" x 0
fails "invalid size '99999999T'" create -m "$M" x 99999999T
fails "no mountpoint given" list
fails "unknown device command 'grow'" grow -m "$M" disk1 1M
fails "too many arguments" remove -m "$M" a b
fails "for resize only" create --shrink -m "$M" y 1M
{ [ ! -e "$M/.nbd/x" ] && [ ! -e "$M/.nbd/y" ]; } || fail "a failed create left a file"

# A created device survives a clean unmount and remount.
zerofs_umount "$M"
zerofs_mount "$S" "$C" "$M" "nbd_listen=127.0.0.1:$port"
assert_eq 8388608 "$(listed disk1 2)" "disk1 after a remount"
zerofs_umount "$M"
echo "t-device: ok"
