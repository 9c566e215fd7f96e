#!/usr/bin/env bash
# What fsync acknowledged survives kill -9 of the daemon: after a remount on
# the same cache, and after a remount with the cache directory deleted (the
# index rebuilt from the store alone).  Also: the periodic barrier makes
# unsynced writes durable on its own, and concurrent fsyncs share barriers.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse

t=$(mktemp -d /tmp/zerofs-dur.XXXXXX)
cleanup_fn rm -rf "$t"
M=$t/mnt
S=$t/store
C=$t/cache
# A long periodic interval, so only fsync makes things durable here.
zerofs_mount "$S" "$C" "$M" "barrier_interval_ms=3600000,checkpoint_interval=4"

declare -A want=()
for i in 1 2 3 4 5 6; do
	want[f$i]=$("$FSPROBE" writesync "$M/f$i" $((i * 300000 + 123)) "$i")
	mkdir -p "$M/dir$i"
	"$FSPROBE" pwrite "$M/dir$i/note" 0 "note $i"
done
mv "$M/f6" "$M/dir1/f6-renamed"
ln "$M/f5" "$M/dir2/f5-link"
setfattr -n user.k -v v1 "$M/f4"
rm "$M/f3"
"$FSPROBE" pwrite "$M/f2" 1000 "overwritten"   # fsyncs the file: a barrier
# Not fsynced: may or may not survive, and must not break anything.
head -c 1000000 /dev/urandom >"$M/unsynced"

check_tree()
{
	local what="$1"
	for i in 1 4 5; do
		assert_eq "${want[f$i]}" "$("$FSPROBE" sum "$M/f$i")" "f$i $what"
	done
	assert_eq "${want[f6]}" "$("$FSPROBE" sum "$M/dir1/f6-renamed")" "renamed f6 $what"
	[ ! -e "$M/f6" ] || fail "f6 still under its old name $what"
	[ ! -e "$M/f3" ] || fail "deleted f3 came back $what"
	assert_eq "$(stat -c %i "$M/f5")" "$(stat -c %i "$M/dir2/f5-link")" "hard link $what"
	assert_eq 2 "$(stat -c %h "$M/f5")" "nlink $what"
	assert_eq v1 "$(getfattr --only-values -n user.k "$M/f4")" "xattr $what"
	assert_eq overwritten "$(dd if="$M/f2" bs=1 skip=1000 count=11 status=none)" "overwrite $what"
	for i in 1 2 3 4 5 6; do
		assert_eq "note $i" "$(cat "$M/dir$i/note")" "note $i $what"
	done
}

check_tree "before the crash"
zerofs_kill9 "$M"
zerofs_mount "$S" "$C" "$M" "barrier_interval_ms=3600000,checkpoint_interval=4"
check_tree "after kill -9 and a remount"

# More fsynced work in the new mount, then a crash, then no cache at all.
want[f7]=$("$FSPROBE" writesync "$M/f7" 5000000 7)
zerofs_kill9 "$M"
rm -rf "$C"
zerofs_mount "$S" "$C" "$M" "barrier_interval_ms=3600000,checkpoint_interval=4"
check_tree "after kill -9 and a remount without the cache"
assert_eq "${want[f7]}" "$("$FSPROBE" sum "$M/f7")" "f7 without the cache"
ls "$S/meta/ckpt" | grep -q . || fail "no checkpoint in the store"

# The periodic barrier alone makes writes durable.
zerofs_umount "$M"
zerofs_mount "$S" "$C" "$M" "barrier_interval_ms=200"
head -c 777777 /dev/urandom >"$t/periodic"
cp "$t/periodic" "$M/periodic"
sleep 3
zerofs_kill9 "$M"
rm -rf "$C"
zerofs_mount "$S" "$C" "$M" "barrier_interval_ms=3600000"
cmp "$t/periodic" "$M/periodic" || fail "periodic barrier did not make the copy durable"
check_tree "after the periodic barrier test"

# Group commit: 8 writers, 25 fsyncs each; the barriers they share produce
# fewer log objects than there were fsyncs, and all their data is there.
zerofs_umount "$M"
logs_before=$(find "$S/meta/log" -type f | wc -l)
zerofs_mount "$S" "$C" "$M" "barrier_interval_ms=3600000,checkpoint_interval=100000"
writers=()
for w in 1 2 3 4 5 6 7 8; do
	(for k in $(seq 1 25); do "$FSPROBE" pwrite "$M/gc$w" $((k * 10)) "w${w}k$k"; done) &
	writers+=($!)
done
for p in "${writers[@]}"; do
	wait "$p" || fail "a group-commit writer failed"
done
logs=$(( $(find "$S/meta/log" -type f | wc -l) - logs_before ))
echo "200 fsyncs made $logs index log objects"
[ "$logs" -lt 200 ] || fail "concurrent fsyncs did not share barriers ($logs logs)"
zerofs_kill9 "$M"
rm -rf "$C"
zerofs_mount "$S" "$C" "$M"
for w in 1 2 3 4 5 6 7 8; do
	assert_eq "w${w}k25" "$(dd if="$M/gc$w" bs=1 skip=250 count=5 status=none)" "group-commit writer $w"
done
zerofs_umount "$M"

# SIGTERM (systemd's stop) hands over what the kernel still caches, runs the
# last barrier and exits 0: nothing written before it is lost, not even
# without fsync.
zerofs_mount "$S" "$C" "$M" "barrier_interval_ms=3600000"
head -c 3000000 /dev/urandom >"$t/term"
cp "$t/term" "$M/term"
zerofs_term "$M"
rm -rf "$C"
zerofs_mount "$S" "$C" "$M"
cmp "$t/term" "$M/term" || fail "data written before SIGTERM was lost"
zerofs_umount "$M"
# A segment that a barrier's index log carries is stored lazily (on a local
# directory store, not synced until the next checkpoint or unmount).  A
# crash can tear it; the next mount stores it again from the log.
zerofs_mount "$S" "$C" "$M" "barrier_interval_ms=3600000,checkpoint_interval=100000"
touch "$t/mark"
sleep 1.1 # past the mark's mtime
want_torn=$("$FSPROBE" writesync "$M/torn" 200000 9)
sleep 1 # its lazy upload lands
zerofs_kill9 "$M"
torn=0
while read -r f; do
	truncate -s $(($(stat -c %s "$f") / 2)) "$f"
	torn=$((torn + 1))
done < <(find "$S/segments" -type f -newer "$t/mark")
[ "$torn" -gt 0 ] || fail "the fsync stored no segment to tear"
zerofs_mount "$S" "$C" "$M"
grep -q "was stored lazily; the index log .* carries it: it is stored again" \
	"$M.log" || fail "the torn segment was not stored again at mount"
assert_eq "$want_torn" "$("$FSPROBE" sum "$M/torn")" "file whose segment was torn"
zerofs_umount "$M"
rm -rf "$C"
zerofs_mount "$S" "$C" "$M"
assert_eq "$want_torn" "$("$FSPROBE" sum "$M/torn")" "torn segment stored again"
zerofs_umount "$M"
echo "t-durability: ok"
