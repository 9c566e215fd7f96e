#!/usr/bin/env bash
# Garbage collection, fsck and orphans on the directory store.
#  - Overwritten data: "zerofs-fuse gc MOUNTPOINT" drops the dead segments and
#    deletes their objects (gc_grace_ms=0), repacks sparse ones; the store
#    shrinks, every file reads back identical, before and after a remount
#    from the store alone; fsck and scrub find nothing wrong.
#  - Crash points inside a pass (after the drop, before and in the middle of
#    the deletes, after the relocation): the daemon is killed there; the
#    next mount has every byte, and fsck --repair (or the mount's own
#    orphan sweep) leaves a clean store.
#  - An orphan object (a copy of a segment under an unused id of an old
#    epoch): fsck reports it and exits 1; fsck --repair deletes it.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires md5sum dd

t=$(mktemp -d /tmp/zerofs-gc.XXXXXX)
cleanup_fn rm -rf "$t"
S=$t/store
OPTS="segment_size=1M,barrier_interval_ms=3600000,gc_interval_ms=0,gc_grace_ms=0"
ALL="store=$S,cache_dir=$t/cache,$ZEROFS_TEST_OPTS,$OPTS"

seg_bytes()
{
	du -sb "$S/segments" | cut -f1
}

seg_count()
{
	find "$S/segments" -type f | wc -l
}

stat_of()
{
	local out
	out=$("$ZEROFS" stats "$1")
	awk -v k="$2" '$1 == k { print $2 }' <<<"$out"
}

sums()
{
	(cd "$1" && find . -path ./.nbd -prune -o -type f -print0 | sort -z | xargs -0 md5sum)
}

offline()
{
	"$ZEROFS" "$@" -o "$ALL"
}

# ---- overwrite, collect, check ----
zerofs_mount "$S" "$t/cache" "$t/m" "$OPTS"
dd if=/dev/urandom of="$t/m/a" bs=1M count=6 conv=fsync status=none
dd if=/dev/urandom of="$t/m/b" bs=1M count=4 conv=fsync status=none
# Overwrite all of a (its old segments die) and every other MiB of b (its
# segments become sparse: repacked).
dd if=/dev/urandom of="$t/m/a" bs=1M count=6 conv=fsync,notrunc status=none
for i in 0 2; do
	dd if=/dev/urandom of="$t/m/b" bs=1M count=1 seek=$i conv=fsync,notrunc status=none
done
"$ZEROFS" flush "$t/m"
sums "$t/m" >"$t/sums"
before=$(seg_bytes)
"$ZEROFS" gc "$t/m" >"$t/gc.out"
cat "$t/gc.out"
after=$(seg_bytes)
echo "segment bytes: $before before gc, $after after"
dropped=$(stat_of "$t/m" gc_segments_dropped)
deleted=$(stat_of "$t/m" gc_objects_deleted)
[ "$dropped" -gt 0 ] || fail "gc dropped no segment after overwrites"
[ "$deleted" -gt 0 ] || fail "gc deleted no object (grace 0)"
[ "$after" -lt "$before" ] || fail "the store did not shrink ($before -> $after bytes)"
# 10 MiB of live data: at most ~50% slack may be left in sparse segments.
[ "$after" -lt $((16 * 1024 * 1024)) ] ||
	fail "the store still holds $after bytes for 10 MiB of data"
sums "$t/m" | diff - "$t/sums" || fail "files changed across gc"
# A second pass right away finds nothing to do and deletes nothing.
"$ZEROFS" gc "$t/m" >/dev/null
n1=$(stat_of "$t/m" gc_objects_deleted)
"$ZEROFS" gc "$t/m" >/dev/null
[ "$(stat_of "$t/m" gc_objects_deleted)" -eq "$n1" ] || fail "an idle gc pass deleted objects"
zerofs_umount "$t/m"
rm -rf "$t/cache"
zerofs_mount "$S" "$t/cache" "$t/m" "$OPTS"
sums "$t/m" | diff - "$t/sums" || fail "files changed after a remount from the store"
zerofs_umount "$t/m"
offline fsck >"$t/fsck.out" || fail "fsck after gc: $(cat "$t/fsck.out")"
grep -q "0 problems" "$t/fsck.out" || fail "fsck output: $(cat "$t/fsck.out")"
offline scrub >"$t/scrub.out" || fail "scrub after gc: $(cat "$t/scrub.out")"

# ---- crash points inside a pass ----
reached=0
for point in gc.after_unlink gc.before_delete gc.mid_delete gc.after_relocate; do
	ZEROFS_CRASH_AT=$point zerofs_mount "$S" "$t/cache" "$t/m" "$OPTS"
	dd if=/dev/urandom of="$t/m/a" bs=1M count=6 conv=fsync,notrunc status=none
	# A segment of its own for c (the barrier seals it), then 12 of its 15
	# blocks rewritten: a sparse segment to repack.
	dd if=/dev/urandom of="$t/m/c" bs=64K count=15 conv=fsync status=none
	dd if=/dev/urandom of="$t/m/c" bs=64K count=12 conv=fsync,notrunc status=none
	"$ZEROFS" flush "$t/m"
	sums "$t/m" >"$t/sums"
	if "$ZEROFS" gc "$t/m" >/dev/null 2>&1; then
		: # the point may not be reached in this pass (nothing to relocate)
	fi
	if grep -q "crash point $point reached" "$t/m.log"; then
		echo "$point: reached"
		reached=$((reached + 1))
		zerofs_kill9 "$t/m"
	else
		echo "$point: not reached in this pass"
		zerofs_umount "$t/m"
	fi
	zerofs_mount "$S" "$t/cache" "$t/m" "$OPTS"
	sums "$t/m" | diff - "$t/sums" || fail "$point: fsynced data lost or changed"
	# The first pass of a mount sweeps the orphans a crash left.
	"$ZEROFS" gc "$t/m" >/dev/null
	sums "$t/m" | diff - "$t/sums" || fail "$point: data changed by the gc after the crash"
	zerofs_umount "$t/m"
	offline fsck >"$t/fsck.out" || fail "$point: fsck: $(cat "$t/fsck.out")"
	rm -f "$t/m.log"
done
[ "$reached" -eq 4 ] || fail "only $reached of the 4 gc crash points were reached"

# ---- an orphan object ----
one=$(find "$S/segments" -type f | head -n 1)
cp "$one" "$S/segments/00000000000000aa"
rc=0
offline fsck >"$t/fsck.out" || rc=$?
cat "$t/fsck.out"
[ "$rc" -eq 1 ] || fail "fsck exited $rc with an orphan object (want 1)"
grep -q "segments/00000000000000aa: orphan object" "$t/fsck.out" ||
	fail "fsck did not name the orphan object"
offline fsck --repair >"$t/fsck.out" || fail "fsck --repair exited non-zero: $(cat "$t/fsck.out")"
grep -q "deleted" "$t/fsck.out" || fail "fsck --repair did not delete the orphan"
[ ! -e "$S/segments/00000000000000aa" ] || fail "the orphan object is still there"
offline fsck >"$t/fsck.out" || fail "fsck after repair: $(cat "$t/fsck.out")"
offline gc >"$t/gc.out" || fail "offline gc failed: $(cat "$t/gc.out")"
zerofs_mount "$S" "$t/cache" "$t/m" "$OPTS"
sums "$t/m" | diff - "$t/sums" || fail "files changed by fsck --repair and offline gc"
zerofs_umount "$t/m"
echo "segment objects at the end: $(seg_count), $(seg_bytes) bytes"
