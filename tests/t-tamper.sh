#!/usr/bin/env bash
# Tampering with the store (the directory store: its objects are files).
#  - A bit flipped in a segment object: reading the file whose block it
#    holds fails with EIO and the log names the object; the other file
#    reads back identical; scrub (exit 1) names the object, frame and path.
#  - A segment object truncated: reads fail with EIO; fsck names the object
#    ("has N bytes but the index says M") and the file.
#  - A segment object deleted: fsck says it is missing and which file lost
#    data.
#  - Two segment objects swapped: each fails authentication (the segment id
#    is part of every frame's associated data): EIO, scrub names both.
#  - An index log object damaged, with no local copy of the index: the mount
#    is refused with a message naming the object; it never mounts wrong data.
# Objects of a (the victim) and b (the bystander) are told apart by
# writing each, with a barrier, in its own mount epoch (segment ids carry
# the epoch).
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires md5sum dd cmp

t=$(mktemp -d /tmp/zerofs-tamper.XXXXXX)
cleanup_fn rm -rf "$t"
S=$t/store
OPTS="segment_size=1M,barrier_interval_ms=3600000,gc_interval_ms=0"
ALL="store=$S,cache_dir=$t/cache,$ZEROFS_TEST_OPTS,$OPTS"

offline()
{
	"$ZEROFS" "$@" -o "$ALL"
}

# Segment objects of epoch $1 (hex, 8 digits).
segs_of_epoch()
{
	find "$S/segments" -type f -name "$(printf %08x "$1")*" | sort
}

flip_byte()
{
	local f="$1" off="$2" b
	b=$(od -An -tu1 -j "$off" -N1 "$f" | tr -d ' ')
	printf "$(printf '\\%03o' $((b ^ 0x55)))" |
		dd of="$f" bs=1 seek="$off" conv=notrunc status=none
}

zerofs_mount "$S" "$t/cache" "$t/m" "$OPTS"
dd if=/dev/urandom of="$t/a" bs=1M count=3 status=none
cp "$t/a" "$t/m/a"
"$ZEROFS" flush "$t/m"
zerofs_umount "$t/m"
ea=$(awk '/mounted filesystem/ { e = $0 } END { sub(/.*epoch /, "", e); print e + 0 }' "$t/m.log")
zerofs_mount "$S" "$t/cache" "$t/m" "$OPTS"
dd if=/dev/urandom of="$t/b" bs=1M count=2 status=none
cp "$t/b" "$t/m/b"
"$ZEROFS" flush "$t/m"
zerofs_umount "$t/m"
mapfile -t A < <(segs_of_epoch "$ea")
[ "${#A[@]}" -ge 2 ] || fail "a should span at least 2 segments (epoch $ea): ${A[*]}"
echo "a's segments: ${A[*]##*/}"
offline scrub >"$t/scrub.out" || fail "scrub of the untouched store: $(cat "$t/scrub.out")"

# Reads go to the store, not to a cache of the daemon: a fresh mount each time.
check_reads()
{
	local what="$1"
	rm -rf "$t/cache"
	: >"$t/m.log"
	zerofs_mount "$S" "$t/cache" "$t/m" "$OPTS"
	if cat "$t/m/a" >/dev/null 2>"$t/read.err"; then
		fail "$what: a read back without an error"
	fi
	grep -q "Input/output error" "$t/read.err" || fail "$what: a failed, not with EIO: $(cat "$t/read.err")"
	cmp "$t/m/b" "$t/b" || fail "$what: b, untouched, does not read back identical"
	zerofs_umount "$t/m"
}

# ---- a flipped bit ----
cp "${A[0]}" "$t/saved0"
flip_byte "${A[0]}" 5000
check_reads "bit flip"
grep -q "object segments/${A[0]##*/}: frame .* failed authentication" "$t/m.log" ||
	fail "bit flip: the log does not name the object"
rc=0
offline scrub >"$t/scrub.out" || rc=$?
cat "$t/scrub.out"
[ "$rc" -eq 1 ] || fail "scrub exited $rc after a bit flip (want 1)"
grep -q "segments/${A[0]##*/} frame 0 is damaged: /a (inode" "$t/scrub.out" ||
	fail "scrub does not name the object, frame and file"
cp "$t/saved0" "${A[0]}"

# ---- a truncated object ----
truncate -s 100000 "${A[0]}"
check_reads "truncation"
rc=0
offline fsck >"$t/fsck.out" || rc=$?
cat "$t/fsck.out"
[ "$rc" -eq 1 ] || fail "fsck exited $rc after a truncation (want 1)"
grep -q "segments/${A[0]##*/} has 100000 bytes but the index says" "$t/fsck.out" ||
	fail "fsck does not report the truncated object"
grep -q "/a: .* blocks in it" "$t/fsck.out" || fail "fsck does not name the file of the truncated object"
cp "$t/saved0" "${A[0]}"

# ---- a deleted object ----
rm "${A[0]}"
rc=0
offline fsck >"$t/fsck.out" || rc=$?
cat "$t/fsck.out"
[ "$rc" -eq 1 ] || fail "fsck exited $rc after a deletion (want 1)"
grep -q "segments/${A[0]##*/} is missing from the store; data lost" "$t/fsck.out" ||
	fail "fsck does not report the missing object"
grep -q "/a: .* blocks lost" "$t/fsck.out" || fail "fsck does not name the file that lost data"
cp "$t/saved0" "${A[0]}"

# ---- two objects swapped ----
mv "${A[0]}" "$t/x" && mv "${A[1]}" "${A[0]}" && mv "$t/x" "${A[1]}"
check_reads "swap"
rc=0
offline scrub >"$t/scrub.out" || rc=$?
[ "$rc" -eq 1 ] || fail "scrub exited $rc after a swap (want 1)"
for o in "${A[0]##*/}" "${A[1]##*/}"; do
	grep -q "segments/$o is damaged\|segments/$o frame" "$t/scrub.out" ||
		fail "scrub does not name swapped object $o"
done
mv "${A[0]}" "$t/x" && mv "${A[1]}" "${A[0]}" && mv "$t/x" "${A[1]}"
offline scrub >"$t/scrub.out" || fail "scrub after the swap was undone: $(cat "$t/scrub.out")"

# ---- a damaged index log, no local index ----
log=$(find "$S/meta/log" -type f | sort | tail -n 1)
flip_byte "$log" 60
rm -rf "$t/cache"
mkdir -p "$t/m2"
rc=0
timeout 60 "$ZEROFS" -f -o "$ALL" "$t/m2" >"$t/m2.log" 2>&1 || rc=$?
cat "$t/m2.log"
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "the mount with a damaged index log exited $rc"
grep -q "meta/log/${log##*/} is damaged" "$t/m2.log" ||
	fail "the refusal does not name the damaged log object"
if mountpoint -q "$t/m2"; then
	fail "a store with a damaged index log was mounted"
fi
echo "all tampering detected"
