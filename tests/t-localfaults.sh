#!/usr/bin/env bash
# Local faults: the cache directory deleted, the local index damaged, the
# cache directory unwritable or on a full filesystem.  The daemon rebuilds
# the index from the store or refuses with a clear message; it never mounts
# wrong data and never loses what fsync acknowledged.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires mount umount timeout dd

t=$(mktemp -d /tmp/zerofs-lf.XXXXXX)
cleanup_fn rm -rf "$t"
M=$t/mnt
S=$t/store
C=$t/cache
# No NBD over TCP (nothing here uses it), only fsync makes things durable.
OPTS="nbd_listen=,barrier_interval_ms=3600000"
LOG=$t/mnt.log
# Unmount what this test mounted over a directory, if it still is.  When a
# failure left a daemon with its index open there, detach it lazily: the
# daemons are killed after this runs.
unmount_dir()
{
	if mountpoint -q "$1" && ! umount "$1" 2>/dev/null; then
		umount -l "$1"
	fi
}

# What was fsynced, and a check of all of it.
declare -A want=()
zerofs_mount "$S" "$C" "$M" "$OPTS"
for i in 1 2 3 4; do
	mkdir "$M/dir$i"
	want[dir$i/f]=$("$FSPROBE" writesync "$M/dir$i/f" $((i * 150000 + 17)) "$i")
done
want[bigfile]=$("$FSPROBE" writesync "$M/bigfile" 3000000 9)
mv "$M/dir4/f" "$M/dir3/moved"
want[dir3/moved]=${want[dir4/f]}
unset 'want[dir4/f]'
"$FSPROBE" mkfiles "$M/dir2" 200
"$FSPROBE" pwrite "$M/dir1/f" 4096 "overwritten"
want[dir1/f]=$("$FSPROBE" sum "$M/dir1/f")
zerofs_umount "$M"

check_tree()
{
	local f
	for f in "${!want[@]}"; do
		assert_eq "${want[$f]}" "$("$FSPROBE" sum "$M/$f")" "$f $1"
	done
	[ ! -e "$M/dir4/f" ] || fail "dir4/f is back under its old name $1"
	assert_eq 201 "$(find "$M/dir2" -mindepth 1 | wc -l)" "entries of dir2 $1"
	assert_eq overwritten "$(dd if="$M/dir1/f" bs=1 skip=4096 count=11 status=none)" \
		"overwrite $1"
}

# mount_checked WHAT: mount, check the whole tree, keep the log apart.
mount_checked()
{
	: >"$LOG"
	zerofs_mount "$S" "$C" "$M" "$OPTS"
	check_tree "$1"
}

# --- the cache reused: the clean unmount's index is used as it is ---
mount_checked "after a clean remount"
if grep -q "index rebuilt" "$LOG"; then
	fail "a cleanly closed local index was rebuilt instead of reused"
fi
zerofs_umount "$M"
db=$(echo "$C"/*/index.db)
[ -f "$db" ] || fail "no local index in $C"
[ -f "$db.seal" ] || fail "a clean unmount left no $db.seal"

# --- (a) the cache directory deleted (unmounted, then mounted) ---
rm -rf "$C"
mount_checked "after the cache directory was deleted"
grep -q "index rebuilt from checkpoint" "$LOG" || fail "no rebuild logged without a cache"
want[after-a]=$("$FSPROBE" writesync "$M/after-a" 200000 21)
# Deleted while mounted: the open database goes on; the unmount cannot
# seal it, says so, and the next mount rebuilds.
rm -rf "$C"
want[cache-gone]=$("$FSPROBE" writesync "$M/cache-gone" 200000 22)
zerofs_umount "$M"
grep -q "cannot seal" "$LOG" || fail "no message about the index deleted while mounted"
mount_checked "after the cache directory was deleted while mounted"
grep -q "index rebuilt from checkpoint" "$LOG" || fail "no rebuild after the cache was deleted"
zerofs_umount "$M"

# --- (b) the local index damaged while unmounted ---
# Each kind of damage is done to the index of a clean unmount (the one that
# would otherwise be reused).  The mount must name the file, rebuild it
# from the store and show exactly what was fsynced.
damage()
{
	local what="$1"
	shift
	"$@"
	mount_checked "after $what"
	grep -qF "$db" "$LOG" || fail "the log does not name $db after $what"
	grep -q "index rebuilt from checkpoint" "$LOG" || fail "no rebuild after $what"
	zerofs_umount "$M"
	[ -f "$db.seal" ] || fail "no seal after the clean unmount that followed $what"
}
size=$(stat -c %s "$db")
overwrite_page() { dd if=/dev/urandom of="$db" bs=4096 seek=$((size / 8192)) count=1 \
	conv=notrunc status=none; }
# One byte of a file name, wherever it is stored (the table and its
# index): a well-formed database that SQLite cannot tell from the real
# one, and which would show a wrong tree.
rename_in_db()
{
	local off offs
	offs=$(grep -obUa bigfile "$db" | cut -d: -f1)
	[ -n "$offs" ] || fail "the name bigfile is not in $db"
	for off in $offs; do
		printf X | dd of="$db" bs=1 seek="$off" conv=notrunc status=none
	done
}
garbage() { head -c "$2" /dev/urandom >"$1"; }
damage "a page overwritten in the middle" overwrite_page
damage "one byte of a name changed" rename_in_db
damage "the index truncated" truncate -s $((size / 2)) "$db"
damage "the index emptied" truncate -s 0 "$db"
damage "the index replaced by garbage" garbage "$db" "$size"
damage "a stray write-ahead log" garbage "$db-wal" 32768
damage "the seal removed" rm -f "$db.seal"
damage "the seal damaged" garbage "$db.seal" 65
# A crash (no seal) is the same case as a damaged index: rebuilt.
zerofs_mount "$S" "$C" "$M" "$OPTS"
want[before-crash]=$("$FSPROBE" writesync "$M/before-crash" 100000 33)
zerofs_kill9 "$M"
[ ! -e "$db.seal" ] || fail "a seal survived a crash of the mount"
mount_checked "after kill -9"
zerofs_umount "$M"

# run_refused CACHE WHAT: the daemon must exit non-zero without mounting,
# with a message that names WHAT.
run_refused()
{
	local cache="$1" what="$2" rc=0
	timeout 60 "$ZEROFS" -f -o "store=$S,cache_dir=$cache,$ZEROFS_TEST_OPTS,$OPTS" "$M" \
		>"$t/refused.log" 2>&1 || rc=$?
	if mountpoint -q "$M"; then
		fusermount3 -u "$M"
		fail "mounted with $what"
	fi
	[ "$rc" -ne 0 ] || fail "exit status 0 with $what"
	[ "$rc" -ne 124 ] || fail "the daemon hung with $what"
	grep -q "error: .*$cache" "$t/refused.log" ||
		fail "no error naming $cache with $what: $(cat "$t/refused.log")"
}

# --- (c) the cache directory unwritable (read-only bind mounts: root
# ignores permission bits) ---
RO=$t/ro-cache
mkdir -p "$RO"
mount --bind -o ro "$RO" "$RO"
cleanup_fn unmount_dir "$RO"
run_refused "$RO" "an empty read-only cache directory"
grep -q "Read-only file system" "$t/refused.log" || fail "EROFS not reported"
umount "$RO"
cp -a "$C/." "$RO/"
mount --bind -o ro "$RO" "$RO"
run_refused "$RO" "a read-only cache directory holding the index"
grep -q "Read-only file system" "$t/refused.log" || fail "EROFS not reported"
umount "$RO"

# --- (d) the cache on a full filesystem ---
F=$t/full
mkdir -p "$F"
mount -t tmpfs -o size=4m tmpfs "$F"
cleanup_fn unmount_dir "$F"
# fill DIR: dd stops with ENOSPC, which is the point: its status is ignored.
fill()
{
	if dd if=/dev/zero of="$1" bs=64k status=none 2>/dev/null; then
		fail "$1 filled a 4 MiB tmpfs without ENOSPC"
	fi
}
# A rebuild that does not fit refuses the mount.
fill "$F/filler"
run_refused "$F" "a full cache filesystem"
grep -q "No space left on device" "$t/refused.log" || fail "ENOSPC not reported at mount"
rm -f "$F/filler"
rm -rf "${F:?}"/*

# Full while mounted: the index cannot take the changes since the last
# barrier.  fsync fails, the log says why and names the file, and the mount
# fails every request from then on instead of serving a state that lost
# acknowledged operations.
: >"$LOG"
zerofs_mount "$S" "$F" "$M" "$OPTS"
check_tree "with a cache on a small tmpfs"
want[before-full]=$("$FSPROBE" writesync "$M/before-full" 300000 44)
fill "$F/filler"
mkdir "$M/many"
# Enough rows that the commit needs new space in the database files.
"$FSPROBE" mkfiles "$M/many" 3000
if "$FSPROBE" writesync "$M/many/synced" 100000 55 >/dev/null 2>"$t/fsync.err"; then
	fail "fsync succeeded with the cache filesystem full"
fi
grep -q "Input/output error" "$t/fsync.err" || fail "fsync failed without EIO: $(cat "$t/fsync.err")"
grep -q "error: index: .*${F}/.*index.db lost the changes since its last commit" "$LOG" ||
	fail "no log line naming the index after ENOSPC"
if "$FSPROBE" writesync "$M/after-full" 1000 66 >/dev/null 2>&1; then
	fail "a write succeeded after the index lost its changes"
fi
rm -f "$F/filler"
# The unmount reports that its last barrier failed.
fusermount3 -u "$M"
_zerofs_wait "$(_zerofs_key "$M")"
[ "$_zerofs_status" -ne 0 ] || fail "exit status 0 after a failed last barrier"
grep -q "the last barrier failed" "$LOG" || fail "the failed last barrier was not logged"
# With space again the next mount rebuilds, with everything fsynced.
mount_checked "after the cache filesystem was full"
grep -q "index rebuilt from checkpoint" "$LOG" || fail "no rebuild after the full cache"
[ ! -e "$M/many/synced" ] || fail "a file whose fsync failed is there"
want[after-full]=$("$FSPROBE" writesync "$M/after-full" 200000 77)
zerofs_umount "$M"
mount_checked "after a clean remount on the freed cache"
zerofs_umount "$M"
echo "$0: all local faults handled"
